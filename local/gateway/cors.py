"""CORS as an HTTP API's CorsConfiguration answers it: preflights, and the headers on
every answer (replacing whatever the function set)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from local.template import Cors, Unresolved, resolve


class CorsPolicy:
    def __init__(self, cors: Cors, context: Mapping[str, Any]):
        origins: list[str] = []
        for origin in cors.allow_origins:
            try:
                value = resolve(origin, context)
            except Unresolved:
                continue
            origins.extend(str(v) for v in (value if isinstance(value, list) else [value]))
        self.origins = origins
        self.cors = cors

    def allowed(self, origin: str | None) -> bool:
        return bool(origin) and ("*" in self.origins or origin in self.origins)

    def _origin_value(self, origin: str) -> str:
        if "*" in self.origins and not self.cors.allow_credentials:
            return "*"
        return origin

    def preflight_headers(self, origin: str, method: str) -> list[tuple[str, str]]:
        methods = self.cors.allow_methods
        if not self.allowed(origin) or (methods and "*" not in methods and method.upper() not in methods):
            return []
        headers = [("Access-Control-Allow-Origin", self._origin_value(origin))]
        if methods:
            headers.append(("Access-Control-Allow-Methods", ",".join(methods)))
        if self.cors.allow_headers:
            headers.append(("Access-Control-Allow-Headers", ",".join(self.cors.allow_headers)))
        if self.cors.max_age is not None:
            headers.append(("Access-Control-Max-Age", str(self.cors.max_age)))
        if self.cors.allow_credentials:
            headers.append(("Access-Control-Allow-Credentials", "true"))
        return headers

    def response_headers(self, origin: str | None) -> list[tuple[str, str]]:
        if not origin or not self.allowed(origin):
            return []
        headers = [("Access-Control-Allow-Origin", self._origin_value(origin))]
        if self.cors.expose_headers:
            headers.append(("Access-Control-Expose-Headers", ",".join(self.cors.expose_headers)))
        if self.cors.allow_credentials:
            headers.append(("Access-Control-Allow-Credentials", "true"))
        return headers


