"""The pages at `/app/`: files of `web/app/` (what is deployed to S3), the local-only files
of `web/local/` at `/app/local/` (the card form that pays through the Stripe stand-in,
never deployed), and `/app/config.json` saying where the Stripe stand-in is. GET and HEAD
only; gzip when the browser accepts it, as CloudFront compresses; `no-cache`, so a
changed page or service worker is picked up at once."""

from __future__ import annotations

import gzip
import json
import mimetypes
from pathlib import Path

PREFIX = "/app"
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".webmanifest": "application/manifest+json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
COMPRESSIBLE = (".html", ".js", ".mjs", ".css", ".json", ".webmanifest", ".svg")
Answer = tuple[int, list[tuple[str, str]], bytes]


class StaticSite:
    def __init__(self, root: str | Path, stripe_url: str | None = None):
        self.app = Path(root, "app").resolve()
        self.local = Path(root, "local").resolve()
        self.config = {"mode": "local", "api": "", "stripe_api": stripe_url}

    @staticmethod
    def handles(raw_path: str) -> bool:
        return raw_path == PREFIX or raw_path.startswith(PREFIX + "/")

    def answer(self, method: str, raw_path: str, accept_encoding: str) -> Answer:
        if method not in ("GET", "HEAD"):
            return _plain(405, "Method Not Allowed", [("Allow", "GET, HEAD")])
        if raw_path == PREFIX:
            return 308, [("Location", PREFIX + "/")], b""
        rest = raw_path[len(PREFIX) + 1:]
        if rest == "config.json":
            return self._bytes(json.dumps(self.config).encode(), ".json", accept_encoding)
        base, relative = (self.local, rest[len("local/"):]) if rest.startswith("local/") else (self.app, rest)
        if relative == "" or relative.endswith("/"):
            relative += "index.html"
        path = (base / relative).resolve()
        if not path.is_relative_to(base) or not path.is_file():
            return _plain(404, "Not Found")
        return self._bytes(path.read_bytes(), path.suffix, accept_encoding)

    @staticmethod
    def _bytes(body: bytes, suffix: str, accept_encoding: str) -> Answer:
        kind = TYPES.get(suffix) or mimetypes.guess_type("x" + suffix)[0] or "application/octet-stream"
        headers = [("Content-Type", kind), ("Cache-Control", "no-cache"), ("X-Content-Type-Options", "nosniff")]
        if suffix in COMPRESSIBLE:
            headers.append(("Vary", "Accept-Encoding"))
            if "gzip" in accept_encoding.lower():
                body = gzip.compress(body, 6, mtime=0)
                headers.append(("Content-Encoding", "gzip"))
        return 200, headers, body


def _plain(status: int, text: str, extra: list[tuple[str, str]] | None = None) -> Answer:
    return status, [("Content-Type", "text/plain; charset=utf-8"), *(extra or [])], text.encode()
