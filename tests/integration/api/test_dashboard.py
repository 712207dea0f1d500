"""The web dashboard in real headless Chromium against a real deployment over loopback TCP.

Two services (``web`` with 2 replicas, ``worker`` with 1), a viewer token given to the page in the URL
fragment. The history is sampled once a second only while someone watches, so the test calls
``/v1/top`` first and waits (on the API, not on a sleep) until every replica's CPU series holds a few
points; Chromium's ``--virtual-time-budget`` then lets the page's 2 s / 5 s polls run. The DOM is read
with ``--dump-dom``; the screenshot is kept as ``test-artifacts/dashboard.png`` (CI keeps that folder).

Skipped only when no Chromium is installed (``.ci/run`` installs Debian's ``chromium``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import struct
import subprocess
import textwrap
import time
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest
from tests.helpers import PY, Deployment
from tests.integration.api.support import new_tokens, tcp_url, up

pytestmark = pytest.mark.slow

ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
REPLICAS = ("web.0", "web.1", "worker.0")
# A little CPU (and a little memory churn) so the plots have a shape; ~5 % of a core.
WORKER = "import time\nwhile True:\n    x = [i * i for i in range(20000)]\n    time.sleep(0.05)\n"
TICKER = "import itertools, time\nfor i in itertools.count():\n    print('tick', i, flush=True)\n    time.sleep(0.2)\n"


def _config(root: Path, viewer: str) -> None:
    (root / "ticker.py").write_text(TICKER)
    (root / "worker.py").write_text(WORKER)
    digest = hashlib.sha256(viewer.encode()).hexdigest()
    (root / "deploy-code.yaml").write_text(
        textwrap.dedent(
            f"""\
            name: dashdemo
            services:
              web:
                command: [{PY}, -u, {root / "ticker.py"}]
                replicas: 2
              worker:
                command: [{PY}, -u, {root / "worker.py"}]
            api:
              listen: 127.0.0.1:0
              tokens:
                - {{name: dashboard, role: viewer, sha256: {digest}}}
            """
        )
    )


def _chromium(*args: str, profile: Path, timeout: float = 90.0) -> str:
    """Run headless Chromium once; its whole process group is killed if it hangs."""
    assert CHROMIUM is not None
    cmd = [
        CHROMIUM,
        *("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"),
        *("--disable-background-networking", "--disable-component-update", "--disable-sync"),
        *("--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio"),
        f"--user-data-dir={profile}",
        "--window-size=1280,900",
        "--virtual-time-budget=8000",
        *args,
    ]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"chromium did not finish in {timeout} s:\n{err[-2000:]}") from None
    assert proc.returncode == 0, f"chromium exited {proc.returncode}:\n{err[-2000:]}"
    return out


class _Node:
    def __init__(self, tag: str, attrs: dict[str, str], parent: _Node | None) -> None:
        self.tag, self.attrs, self.parent = tag, attrs, parent
        self.children: list[_Node] = []
        self.text: list[str] = []

    def all_text(self) -> str:
        return "".join(self.text) + "".join(c.all_text() for c in self.children)

    def find_all(self, tag: str, **attrs: str) -> list[_Node]:
        found = [self] if self.tag == tag and all(self.attrs.get(k) == v for k, v in attrs.items()) else []
        for c in self.children:
            found.extend(c.find_all(tag, **attrs))
        return found

    def cls(self, name: str) -> _Node:
        """The first descendant whose class list holds ``name``."""
        for c in self.children:
            if name in c.attrs.get("class", "").split():
                return c
            try:
                return c.cls(name)
            except LookupError:
                pass
        raise LookupError(name)


class _Tree(HTMLParser):
    """Just enough of a DOM for the assertions (stdlib only)."""

    VOID = frozenset({"meta", "link", "input", "br", "img", "line", "circle", "polyline", "polygon", "hr"})

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.root = _Node("#root", {}, None)
        self.cur = self.root
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = _Node(tag, {k: v or "" for k, v in attrs}, self.cur)
        self.cur.children.append(node)
        if tag not in self.VOID:
            self.cur = node

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.cur.children.append(_Node(tag, {k: v or "" for k, v in attrs}, self.cur))

    def handle_endtag(self, tag: str) -> None:
        node: _Node | None = self.cur
        while node is not None and node.tag != tag:
            node = node.parent
        if node is not None and node.parent is not None:
            self.cur = node.parent

    def handle_data(self, data: str) -> None:
        self.cur.text.append(data)


def _wait_for_history(client: httpx.Client, points: int, timeout: float = 30.0) -> None:
    """Until every replica's CPU and memory series hold ``points`` points (sampled once a second)."""
    keys = [f"{r}/{m}" for r in REPLICAS for m in ("cpu_percent", "memory_bytes")]
    deadline = time.monotonic() + timeout
    while True:
        doc = client.get("/v1/history", params={"keys": keys}).json()
        counts = {k: len(v) for k, v in doc["series"].items()}
        if min(counts.values()) >= points:
            return
        assert time.monotonic() < deadline, f"history did not fill: {counts}"
        time.sleep(0.5)


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium binary on PATH (.ci/run installs Debian's chromium)"
)
def test_dashboard_in_headless_chromium(
    deployment: Deployment, tmp_path_factory: pytest.TempPathFactory
) -> None:
    tokens = new_tokens()
    viewer = tokens["viewer"]
    _config(deployment.root, viewer)
    res = up(deployment, tokens)
    assert res.returncode == 0, f"{res.stdout}\n{res.stderr}"
    url = tcp_url(deployment)

    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {viewer}"}, timeout=30) as client:
        report = client.get("/v1/health/report").json()
        assert report["healthy"] is True, report
        assert client.get("/v1/top").status_code == 200  # turns the history sampler on
        _wait_for_history(client, points=8)
        page = httpx.get(f"{url}/dashboard", timeout=30)  # the page itself needs no token
        assert page.status_code == 200 and "dashboard.js" in page.text

    target = f"{url}/dashboard#token={viewer}"
    dom = _chromium("--dump-dom", target, profile=tmp_path_factory.mktemp("chromium-dom"))
    tree = _Tree(dom).root

    assert viewer not in dom  # the fragment was read and dropped; the page never shows the token
    assert not [p for p in tree.find_all("p", id="error") if "hidden" not in p.attrs], dom[-3000:]
    assert [f for f in tree.find_all("form", id="token-form") if "hidden" in f.attrs], "asked for a token"

    rows = {tr.attrs["data-service"]: tr for tr in tree.find_all("tr") if "data-service" in tr.attrs}
    assert set(rows) == {"web", "worker"}
    for name, ready in (("web", "2/2"), ("worker", "1/1")):
        assert rows[name].cls("state").all_text().strip() == "ready"
        assert rows[name].cls("ready").all_text().strip() == ready
        assert rows[name].cls("restarts").all_text().strip() == "0"
        assert rows[name].cls("health").all_text().strip() == "healthy"

    cards = {a.attrs["data-replica"]: a for a in tree.find_all("article") if "data-replica" in a.attrs}
    assert set(cards) == set(REPLICAS)
    for rid, card in cards.items():
        for metric in ("cpu_percent", "memory_bytes", "restarts"):
            (fig,) = card.find_all("figure", **{"data-metric": metric})
            lines = fig.find_all("polyline")
            assert lines, f"{rid} {metric}: no line drawn"
            longest = max(len(pl.attrs["points"].split()) for pl in lines)
            assert longest >= 2, f"{rid} {metric}: {[pl.attrs['points'] for pl in lines]}"
        cpu_points = int(card.find_all("figure", **{"data-metric": "cpu_percent"})[0].attrs["data-points"])
        assert cpu_points >= 4, f"{rid}: {cpu_points} CPU points"
        mem = card.find_all("figure", **{"data-metric": "memory_bytes"})[0].cls("value").all_text()
        assert mem.endswith("MiB"), mem

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "dashboard.png"
    shot.unlink(missing_ok=True)
    _chromium(f"--screenshot={shot}", target, profile=tmp_path_factory.mktemp("chromium-shot"))
    data = shot.read_bytes()
    assert _png_size(data) == (1280, 900)
    assert len(data) > 20_000, f"a {len(data)}-byte screenshot is too small to show the page"

    # The token travelled only in Authorization headers: nothing the orchestrator wrote holds it.
    for path in deployment.state_dir.rglob("*"):
        if path.is_file() and not path.is_socket():
            assert viewer.encode() not in path.read_bytes(), f"the token is in {path}"
