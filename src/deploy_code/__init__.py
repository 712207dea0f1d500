"""deploy-code: one YAML file to validated, placed, supervised, healthy processes.

The package is layered (see DESIGN.md): ``config`` → ``graph`` → ``scheduling`` (with ``resources`` and
``ports``) → ``runtime`` / ``health`` / ``state`` → ``supervisor`` → ``api`` → ``cli`` | ``client``.

``Client`` and ``AsyncClient`` (the Python API, :mod:`deploy_code.client`) load on first use: importing
``deploy_code`` stays as cheap as the CLI needs (no httpx, no pydantic).
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["AsyncClient", "Client", "__version__"]

__version__ = "0.1.0"

# Served by deploy_code.client. Not imported here even for type checkers: lower layers import this
# package (``__version__``), and the import contract would see them reach the top layer through it.
# Type checkers see Any here; ``from deploy_code.client import Client`` is fully typed.
_LAZY = {"Client", "AsyncClient"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module("deploy_code.client"), name)
    raise AttributeError(f"module 'deploy_code' has no attribute {name!r}")
