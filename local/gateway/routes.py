"""Which route API Gateway (HTTP API) picks for a request, from the routes template.yaml declares."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote

from local.template import Route


def _match_path(declared: str, segments: list[str]) -> tuple[dict[str, str], tuple[int, ...]] | None:
    params: dict[str, str] = {}
    kinds: list[int] = []
    parts = declared.split("/")
    for i, part in enumerate(parts):
        if part.startswith("{") and part.endswith("+}"):
            value = "/".join(segments[i:])
            if not value:
                return None
            params[part[1:-2]] = unquote(value)
            kinds.append(2)
            return params, tuple(kinds)
        if i >= len(segments):
            return None
        if part.startswith("{") and part.endswith("}"):
            if segments[i] == "":
                return None
            params[part[1:-1]] = unquote(segments[i])
            kinds.append(1)
        else:
            if segments[i] != part and unquote(segments[i]) != part:
                return None
            kinds.append(0)
    if len(parts) != len(segments):
        return None
    return params, tuple(kinds)


def match_route(routes: Iterable[Route], method: str, raw_path: str) -> tuple[Route, dict[str, str]] | None:
    """Find the route API Gateway would pick for ``method raw_path``.

    Returns ``(route, path_parameters)`` or None. Literal segments beat
    ``{param}``, which beats ``{proxy+}``; an exact method beats ``ANY``;
    ``$default`` only when nothing else matches. ``/x`` and ``/x/`` are distinct.
    """
    method = method.upper()
    segments = raw_path.split("/")
    best: tuple[Any, Route, dict[str, str]] | None = None
    default: Route | None = None
    for route in routes:
        if route.path == "$default":
            default = default or route
            continue
        if route.method not in (method, "ANY"):
            continue
        matched = _match_path(route.path, segments)
        if matched is None:
            continue
        params, kinds = matched
        key = (2 in kinds, kinds, route.method == "ANY")
        if best is None or key < best[0]:
            best = (key, route, params)
    if best is not None:
        return best[1], best[2]
    if default is not None:
        return default, {}
    return None

