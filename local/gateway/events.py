"""API Gateway HTTP API payload 2.0: the event a function receives and what its answer
becomes, and the answers API Gateway gives itself."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qsl

from local.template import ACCOUNT_ID

NOT_FOUND = (404, {"message": "Not Found"})
UNAUTHORIZED = (401, {"message": "Unauthorized"})
TOO_LARGE = (413, {"message": "Request Entity Too Large"})
INTERNAL_ERROR = (500, {"message": "Internal Server Error"})
BAD_GATEWAY = (502, {"message": "Internal Server Error"})
UNAVAILABLE = (503, {"message": "Service Unavailable"})

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def is_text_content_type(content_type: str | None) -> bool:
    """True for content types API Gateway passes as text (text/*, JSON, XML, form, JavaScript)."""
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return (
        media.startswith("text/")
        or media in ("application/json", "application/xml", "application/x-www-form-urlencoded", "application/javascript")
        or (media.startswith("application/") and media.endswith("+json"))
    )



def _claim_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(_claim_text(v) for v in value) + "]"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{_claim_text(value[k])}" for k in sorted(value)) + "]"
    return str(value)


def flatten_claims(claims: Mapping[str, Any]) -> dict[str, str]:
    """Claims as API Gateway hands them on: every value a string.

    Numbers become decimal strings, booleans ``"true"``/``"false"``, lists
    ``"[a b]"`` (``"cognito:groups": "[admin scanner]"``).
    """
    return {str(k): _claim_text(v) for k, v in claims.items()}


def _format_time(now: float) -> str:
    dt = datetime.fromtimestamp(now, timezone.utc)
    return f"{dt.day:02d}/{_MONTHS[dt.month - 1]}/{dt.year}:{dt:%H:%M:%S} +0000"


def build_event(
    *,
    method: str,
    raw_path: str,
    raw_query: str = "",
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
    route_key: str,
    path_parameters: Mapping[str, str] | None = None,
    source_ip: str = "127.0.0.1",
    domain_name: str = "localhost",
    claims: Mapping[str, Any] | None = None,
    request_id: str | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """Build an API Gateway HTTP API payload 2.0 event.

    ``headers`` are (name, value) pairs as received (repeats allowed);
    ``claims`` are the verified JWT claims (None for a public route: no
    ``authorizer`` key). Optional keys (cookies, queryStringParameters,
    pathParameters, body) are omitted when empty.
    """
    now = time.time() if now is None else now
    request_id = request_id or str(uuid.uuid4())
    hdrs: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in headers:
        lname = name.lower()
        if lname == "cookie":
            cookies.extend(c.strip() for c in value.split(";") if c.strip())
            continue
        hdrs[lname] = f"{hdrs[lname]},{value}" if lname in hdrs else value

    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": raw_path,
        "rawQueryString": raw_query,
    }
    if cookies:
        event["cookies"] = cookies
    event["headers"] = hdrs
    if raw_query:
        query: dict[str, str] = {}
        for key, value in parse_qsl(raw_query, keep_blank_values=True):
            query[key] = f"{query[key]},{value}" if key in query else value
        if query:
            event["queryStringParameters"] = query
    host = domain_name.split(":", 1)[0]
    context: dict[str, Any] = {
        "accountId": ACCOUNT_ID,
        "apiId": "local",
    }
    if claims is not None:
        scope = claims.get("scope")
        context["authorizer"] = {
            "jwt": {
                "claims": flatten_claims(claims),
                "scopes": scope.split() if isinstance(scope, str) else None,
            }
        }
    context.update(
        {
            "domainName": domain_name,
            "domainPrefix": host.split(".", 1)[0],
            "http": {
                "method": method.upper(),
                "path": raw_path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": hdrs.get("user-agent", ""),
            },
            "requestId": request_id,
            "routeKey": route_key,
            "stage": "$default",
            "time": _format_time(now),
            "timeEpoch": int(now * 1000),
        }
    )
    event["requestContext"] = context
    is_base64 = False
    if body:
        text = None
        if is_text_content_type(hdrs.get("content-type")):
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                text = None
        if text is None:
            text, is_base64 = base64.b64encode(body).decode("ascii"), True
        event["body"] = text
    if path_parameters:
        event["pathParameters"] = dict(path_parameters)
    event["isBase64Encoded"] = is_base64
    return event


def _header_text(value: Any) -> str:
    if isinstance(value, bool):
        value = "true" if value else "false"
    return str(value).replace("\r", " ").replace("\n", " ")


def build_response(result: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    """Turn a handler's return value into ``(status, headers, body)`` by the payload 2.0 rules.

    A dict with ``statusCode`` is used as is (headers, cookies -> Set-Cookie,
    body, isBase64Encoded); anything else is answered 200 as JSON.
    Raises ValueError for a malformed response.
    """
    if isinstance(result, dict) and "statusCode" in result:
        try:
            status = int(result["statusCode"])
        except (TypeError, ValueError):
            raise ValueError(f"bad statusCode {result['statusCode']!r}") from None
        if not 100 <= status <= 599:
            raise ValueError(f"bad statusCode {status}")
        headers_in = result.get("headers") or {}
        if not isinstance(headers_in, dict):
            raise ValueError("headers must be an object")
        headers = [(str(k), _header_text(v)) for k, v in headers_in.items()]
        cookies = result.get("cookies") or []
        if not isinstance(cookies, list):
            raise ValueError("cookies must be a list")
        headers += [("Set-Cookie", _header_text(c)) for c in cookies]
        body = result.get("body")
        if body is None:
            data = b""
        elif isinstance(body, str):
            if result.get("isBase64Encoded"):
                try:
                    data = base64.b64decode(body, validate=False)
                except ValueError:
                    raise ValueError("body is not base64") from None
            else:
                data = body.encode("utf-8")
        else:
            data = json.dumps(body).encode("utf-8")
        return status, headers, data
    return 200, [("Content-Type", "application/json")], json.dumps(result).encode("utf-8")

