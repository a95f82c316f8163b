"""Everything HTTP that every function shares, in one place.

- `create_app()`: a Powertools HTTP API resolver with request validation (OpenAPI)
  and the one mapping from domain errors to the API's `{"error", "detail"}` format.
- `handler(app)`: the Lambda entry point around `app.resolve`: Logger with the
  request's correlation id, Metrics, trailing-slash normalisation, and the one place a
  request body is read (`read_body`) and the path's ids are bounded.
- `caller(app)` / `require_caller(app)`: the verified JWT claims as a `Caller`.

Domain modules never import this one.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.logging import correlation_paths

from ticketing import errors, ids
from ticketing.auth import Caller, caller_from_claims
from ticketing.config import settings
from ticketing.observability import logger, metrics

# The one mapping from domain errors to HTTP statuses.
STATUS: dict[type[errors.DomainError], int] = {
    errors.MalformedRequest: 400,
    errors.InvalidInput: 422,
    errors.Unprocessable: 422,
    errors.Unauthenticated: 401,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.TooLarge: 413,
    errors.TooManyRequests: 429,
    errors.PaymentProviderError: 502,
    errors.DependencyUnavailable: 503,
}

# DynamoDB / AWS error codes after which a retry may succeed: answered 503, not 500.
RETRYABLE_AWS_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
        "TransactionConflictException",
    }
)


def error_response(status: int, error: str, detail: str, headers: dict[str, str] | None = None, **fields: Any) -> Response:
    body = {"error": error, "detail": detail, **{k: v for k, v in fields.items() if v is not None}}
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body=json.dumps(body),
        headers=headers,
    )


def _status_of(exc: errors.DomainError) -> int:
    for klass in type(exc).__mro__:
        if klass in STATUS:
            return STATUS[klass]
    return 400


def _field_of(location: tuple[Any, ...]) -> str:
    parts = [str(part) for part in location if part not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def create_app() -> APIGatewayHttpResolver:
    app = APIGatewayHttpResolver(enable_validation=True)
    app._roles = {}  # "METHOD /path/{param}" -> (roles, message): see `route`

    @app.exception_handler(errors.DomainError)
    def _domain(exc: errors.DomainError) -> Response:
        status = _status_of(exc)
        headers = None
        if retry_after := getattr(exc, "retry_after", None):  # DependencyUnavailable, TooManyRequests
            headers = {"Retry-After": str(retry_after)}
        if status >= 500:
            logger.warning("dependency error", extra={"error": exc.error, "detail": exc.detail})
        return error_response(status, exc.error, exc.detail, headers, **exc.fields)

    @app.exception_handler(RequestValidationError)
    def _invalid(exc: RequestValidationError) -> Response:
        problems = exc.errors()
        if any(problem.get("type") == "json_invalid" for problem in problems):
            return error_response(400, "Malformed JSON", "The request body is not valid JSON.", code="malformed_json")
        first = problems[0] if problems else {"loc": ("body",), "msg": "Invalid input"}
        field = _field_of(tuple(first.get("loc", ())))
        detail = f"{field}: {first.get('msg', 'invalid value')}"
        fields = [
            {"field": _field_of(tuple(p.get("loc", ()))), "message": p.get("msg", "")} for p in problems[:20]
        ]
        return error_response(422, "Invalid input", detail, field=field, code="invalid", errors=fields)

    @app.not_found
    def _not_found(_exc: NotFoundError) -> Response:
        return error_response(404, "Not found", "No such route; see /api/docs/ for the routes that exist.")

    @app.exception_handler(Exception)
    def _unexpected(exc: Exception) -> Response:
        code = _aws_error_code(exc)
        if code is not None:
            logger.warning("AWS dependency unavailable", extra={"aws_error": code})
            return error_response(
                503, "Service unavailable", "A storage service is busy; try again shortly.",
                {"Retry-After": "1"}, code="dependency_unavailable",
            )
        logger.exception("unhandled error")
        return error_response(500, "Internal error", "Something went wrong on our side; it has been logged.")

    return app


def _aws_error_code(exc: BaseException) -> str | None:
    """The AWS error code if `exc` (or what caused it) is a retryable AWS failure."""
    from botocore.exceptions import BotoCoreError, ClientError

    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 5:
        if isinstance(current, ClientError):
            code = current.response.get("Error", {}).get("Code", "")
            return code if code in RETRYABLE_AWS_CODES else None
        if isinstance(current, BotoCoreError):
            return type(current).__name__
        current = current.__cause__ or current.__context__
        seen += 1
    return None


def route(app: APIGatewayHttpResolver, method: str, path: str, *, roles: tuple[str, ...] = (), denied: str = "", **kwargs: Any):
    """`app.route` for a route only some roles may call. The roles are checked before the
    request is validated, so a caller without them learns nothing about the input rules."""
    if roles:
        app._roles[f"{method} {_template_path(path)}"] = (roles, denied or "You do not have permission to do this")
    return app.route(path, method, **kwargs)


def _template_path(path: str) -> str:
    """Powertools' `/x/<id>` as API Gateway's route key path `/x/{id}`, no trailing slash."""
    return re.sub(r"<(\w+)>", r"{\1}", path).rstrip("/") or "/"


def _route_key(event: dict[str, Any]) -> str:
    method, _, path = str(event.get("routeKey", "")).partition(" ")
    return f"{method} {path.rstrip('/') or '/'}"


@lru_cache(maxsize=None)
def _key_pattern(route_key: str) -> re.Pattern[str]:
    return re.compile(re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(route_key)))


def _rule(app: APIGatewayHttpResolver, event: dict[str, Any]) -> tuple[tuple[str, ...], str] | None:
    """The roles guarding this request: by API Gateway's route key, or, where the route key
    names no guarded route (`$default`, a direct invocation), by the path itself, so that
    nothing guarded is let through unchecked."""
    rule = app._roles.get(_route_key(event))
    if rule is not None:
        return rule
    method = (((event.get("requestContext") or {}).get("http") or {}).get("method") or "").upper()
    requested = f"{method} {str(event.get('rawPath') or '/').rstrip('/') or '/'}"
    return next((found for key, found in app._roles.items() if _key_pattern(key).fullmatch(requested)), None)


def _check_roles(app: APIGatewayHttpResolver, event: dict[str, Any]) -> Response | None:
    rule = _rule(app, event)
    if rule is None:
        return None
    roles, denied = rule
    claims = (((event.get("requestContext") or {}).get("authorizer") or {}).get("jwt") or {}).get("claims")
    who = caller_from_claims(claims)
    if who is None:
        return error_response(401, "Unauthorized", "Sign in and send your ID token as a Bearer token.")
    if not who.groups.intersection(roles):
        return error_response(403, errors.Forbidden.error, denied)
    return None


def _normalise(event: dict[str, Any]) -> None:
    """`/x/` and `/x` reach the same route: Powertools' HTTP resolver matches paths
    exactly, so strip the trailing slash before it looks."""
    raw_path = event.get("rawPath") or "/"
    if len(raw_path) > 1 and raw_path.endswith("/"):
        event["rawPath"] = raw_path.rstrip("/") or "/"
        http = event.get("requestContext", {}).get("http")
        if isinstance(http, dict) and "path" in http:
            http["path"] = event["rawPath"]


# JSON within these bounds is parsed; beyond them the body is refused as malformed, never
# handed to a parser or validator that could fail on it (recursion, Python's 4,300-digit
# limit on int conversion). No request of this API comes near either.
MAX_JSON_DEPTH = 32
MAX_NUMBER_DIGITS = 100


class _Malformed(ValueError):
    pass


def _number(text: str) -> Any:
    if len(text) > MAX_NUMBER_DIGITS:
        raise _Malformed(f"numbers are limited to {MAX_NUMBER_DIGITS} characters")
    return float(text) if any(c in text for c in ".eE") else int(text)


def _constant(name: str) -> Any:
    raise _Malformed(f"{name} is not JSON")


def _depth_within(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        current, depth = stack.pop()
        if isinstance(current, (dict, list)):
            if depth > limit:
                return False
            children = current.values() if isinstance(current, dict) else current
            stack.extend((child, depth + 1) for child in children)
    return True


def parse_json(text: str) -> Any:
    """`text` as JSON (RFC 8259: no NaN or Infinity), nested at most MAX_JSON_DEPTH deep,
    numbers of at most MAX_NUMBER_DIGITS characters. ValueError says what is wrong."""
    try:
        value = json.loads(text, parse_int=_number, parse_float=_number, parse_constant=_constant)
    except _Malformed:
        raise
    except RecursionError:
        raise _Malformed(f"nested deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError as exc:  # JSONDecodeError, and any conversion limit
        raise _Malformed(str(exc).split(":")[0]) from None
    if not _depth_within(value, MAX_JSON_DEPTH):
        raise _Malformed(f"nested deeper than {MAX_JSON_DEPTH} levels")
    return value


def _malformed(why: str) -> Response:
    return error_response(400, "Malformed JSON", f"The request body must be UTF-8 JSON: {why}.", code="malformed_json")


def read_body(event: dict[str, Any], limit: int) -> Response | None:
    """The one place a request body is read. A body that is UTF-8 JSON is accepted whatever
    its Content-Type says (browsers' `fetch` sends `text/plain` for a string body): the
    event is rewritten to carry it as text with `Content-Type: application/json`, which is
    all the resolver and the routes then see. Anything else is answered here: over `limit`
    bytes 413, otherwise 400 `Malformed JSON` (not base64 when it claims to be, not UTF-8,
    not JSON, nested too deep, numbers too long)."""
    body = event.get("body") or ""
    headers = event.get("headers")
    if not isinstance(headers, dict):
        headers = event["headers"] = {}
    for name in [name for name in headers if name.lower() == "content-type"]:
        del headers[name]
    headers["content-type"] = content_types.APPLICATION_JSON
    encoded, event["isBase64Encoded"] = bool(event.get("isBase64Encoded")), False
    if not isinstance(body, str) or not body:
        event["body"] = None
        return None
    try:
        raw = base64.b64decode(body, validate=True) if encoded else body.encode("utf-8")
    except (binascii.Error, ValueError):  # bad base64; a str holding lone surrogates
        return _malformed("the body could not be decoded")
    if len(raw) > limit:
        return error_response(413, "Request too large", f"The request body is larger than {limit} bytes.")
    try:
        text = raw.decode("utf-8")
        parse_json(text)
    except UnicodeDecodeError:
        return _malformed("it is not valid UTF-8")
    except ValueError as exc:
        return _malformed(str(exc))
    event["body"] = text
    return None


def _path_ids_ok(event: dict[str, Any]) -> bool:
    """Every segment of the path (and every path parameter) could be an id or a route's
    word: so an id DynamoDB would refuse as a key (over 2,048 bytes), or one we could never
    have made, is answered 404 before any read."""
    segments = str(event.get("rawPath") or "/").strip("/").split("/")
    params = (event.get("pathParameters") or {}).values()
    return all(ids.plausible(part) for part in (*segments, *params) if part)


def _as_lambda_response(response: Response) -> dict[str, Any]:
    return {
        "statusCode": response.status_code,
        "headers": {"Content-Type": content_types.APPLICATION_JSON, **(response.headers or {})},
        "body": response.body,
        "isBase64Encoded": False,
    }


def handler(app: APIGatewayHttpResolver) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    """The Lambda entry point for `app`."""
    limit = settings().max_body_bytes

    @logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, log_event=False)
    @metrics.log_metrics
    def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        _normalise(event)
        refused = read_body(event, limit) or _check_roles(app, event)
        if refused is None and not _path_ids_ok(event):
            refused = error_response(404, "Not found", f"No resource has this id: ids are at most {ids.MAX_LENGTH} "
                                     "letters, digits, '-' or '_'.", code="unknown_id")
        if refused is not None:
            return _as_lambda_response(refused)
        return app.resolve(event, context)

    return lambda_handler


def caller(app: APIGatewayHttpResolver) -> Caller | None:
    context = app.current_event.raw_event.get("requestContext") or {}
    claims = ((context.get("authorizer") or {}).get("jwt") or {}).get("claims")
    return caller_from_claims(claims)


def require_caller(app: APIGatewayHttpResolver) -> Caller:
    """The signed-in caller. API Gateway's authorizer guarantees one on protected routes;
    this is the second line of defence if a route is ever declared without it."""
    who = caller(app)
    if who is None:
        raise errors.Unauthenticated("Sign in and send your ID token as a Bearer token.")
    return who
