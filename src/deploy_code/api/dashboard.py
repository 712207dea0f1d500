"""The web dashboard's page and files: ``GET /dashboard`` and ``GET /dashboard/static/{name}``.

These two routes need no token: they carry no data. The page (``static/dashboard.js``) reads the
viewer token from the URL fragment (``/dashboard#token=...``, which a browser never sends to a server)
or from a form, keeps it in ``sessionStorage`` and sends it as ``Authorization: Bearer`` to the data
routes (``/v1/status``, ``/v1/health/report``, ``/v1/top``, ``/v1/history``), which keep requiring
viewer. Only the files named in :data:`STATIC_FILES` are served, looked up by name in a table (never
joined to a path), so no request can reach another file. No build step and no CDN: the plots are SVG
drawn by the script, and a Content-Security-Policy allows nothing but this origin.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from starlette.exceptions import HTTPException

__all__ = ["PAGE", "STATIC_DIR", "STATIC_FILES", "add_dashboard"]

STATIC_DIR = Path(__file__).parent / "static"
PAGE = "dashboard.html"
# Every file the dashboard serves, with its media type (a test checks this against STATIC_DIR).
STATIC_FILES: dict[str, str] = {
    PAGE: "text/html; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}

# Same-origin only: the page may fetch this API and load its own script and style, nothing else.
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_HEADERS = {
    "Content-Security-Policy": _CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",  # revalidated (ETag), so an upgraded orchestrator serves its own files
}


def _file(name: str) -> FileResponse:
    media_type = STATIC_FILES.get(name)
    if media_type is None:  # answered like any unknown path: 404, problem+json E002
        raise HTTPException(404)
    return FileResponse(STATIC_DIR / name, media_type=media_type, headers=_HEADERS)


def add_dashboard(app: FastAPI) -> None:
    """Register the page and its files on ``app`` (left out of the OpenAPI document: not API)."""

    @app.get("/dashboard", include_in_schema=False)
    async def dashboard() -> FileResponse:
        return _file(PAGE)

    @app.get("/dashboard/static/{name}", include_in_schema=False)
    async def dashboard_static(name: str) -> FileResponse:
        return _file(name)
