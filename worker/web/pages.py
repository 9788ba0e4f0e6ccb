"""The pages and their assets, shipped as package data in ``assets/``: served by name from a
list made when the module loads, so no URL can name any other file."""

from __future__ import annotations

import mimetypes
from pathlib import Path

from worker.web.server import Request, Response, Router, not_found

__all__ = ["ASSETS", "asset_routes", "page"]

ASSETS = Path(__file__).parent / "assets"
_FILES = {p.name: p for p in ASSETS.iterdir() if p.is_file() and not p.name.startswith(".")}
_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html; charset=utf-8"}


def _read(name: str) -> Response:
    path = _FILES.get(name)
    if path is None:
        return not_found()
    ctype = _TYPES.get(path.suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"
    if ctype.startswith("text/") and "charset" not in ctype:
        ctype += "; charset=utf-8"
    return Response(200, path.read_bytes(), ctype)


def page(name: str) -> Response:
    """An HTML page from the assets."""
    return _read(name)


def asset_routes(router: Router) -> None:
    """``/assets/<name>``: the pages' scripts and styles."""

    def asset(req: Request) -> Response:
        if len(req.segments) != 1:
            return not_found()
        return _read(req.segments[0])

    router.add("/assets/", asset)
