"""HTML pages from Jinja templates, and the static files, both shipped inside the package.

Every page is sent with a strict Content-Security-Policy (scripts and styles from /ui/static
only, no inline code), not framed, and never cached; static files are read once at start.
"""

from __future__ import annotations

import mimetypes
from importlib import resources
from typing import Any

import jinja2

from llm_gateway.errors import NotFound
from llm_gateway.web.responses import BytesResponse

_SECURITY = [
    (b"content-security-policy",
     b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
     b"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
]

_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
          ".svg": "image/svg+xml", ".txt": "text/plain; charset=utf-8"}


class Renderer:
    def __init__(self) -> None:
        self.env = jinja2.Environment(
            loader=jinja2.PackageLoader("llm_gateway.console", "templates"),
            autoescape=True, trim_blocks=True, lstrip_blocks=True)
        folder = resources.files("llm_gateway.console") / "static"
        self.static: dict[str, tuple[bytes, str]] = {}
        for item in folder.iterdir():
            if item.is_file():
                suffix = "." + item.name.rsplit(".", 1)[-1]
                kind = _TYPES.get(suffix) or mimetypes.guess_type(item.name)[0] or "text/plain"
                self.static[item.name] = (item.read_bytes(), kind)

    def page(self, template: str, status: int = 200,
             headers: list[tuple[str, str]] | None = None, **values: Any) -> BytesResponse:
        body = self.env.get_template(template).render(**values).encode()
        raw = [(b"content-type", b"text/html; charset=utf-8"), (b"cache-control", b"no-store"),
               *_SECURITY]
        raw += [(k.encode(), v.encode()) for k, v in headers or []]
        return BytesResponse(status, body, raw)

    def asset(self, name: str) -> BytesResponse:
        found = self.static.get(name)
        if found is None:
            raise NotFound(f"Unknown console file: {name[:64]}.")
        body, kind = found
        return BytesResponse(200, body, [(b"content-type", kind.encode()),
                                         (b"cache-control", b"no-cache"),
                                         (b"x-content-type-options", b"nosniff")])


def redirect(location: str, headers: list[tuple[str, str]] | None = None,
             status: int = 303) -> BytesResponse:
    raw = [(b"location", location.encode()), (b"cache-control", b"no-store")]
    raw += [(k.encode(), v.encode()) for k, v in headers or []]
    return BytesResponse(status, b"", raw)
