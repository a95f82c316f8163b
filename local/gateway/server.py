"""The gateway's HTTP side: one thread per connection, a listen backlog sized for a rush,
each request answered as API Gateway (HTTP API) answers it."""

from __future__ import annotations

import json
import sys
import time
import traceback
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import jwt

from local.gateway.authorizer import KEY_ID
from local.gateway.events import (
    BAD_GATEWAY,
    INTERNAL_ERROR,
    NOT_FOUND,
    TOO_LARGE,
    UNAUTHORIZED,
    UNAVAILABLE,
    build_event,
    build_response,
)
from local.gateway.routes import match_route

if TYPE_CHECKING:
    from local.gateway.gateway import Gateway

# What each way an invocation can fail answers (API Gateway's own bodies).
FAILURES = {
    "error": INTERNAL_ERROR,  # the handler raised, or its answer broke a Lambda limit (6 MB)
    "crash": BAD_GATEWAY,
    "init_error": BAD_GATEWAY,
    "timeout": UNAVAILABLE,
    "integration_timeout": UNAVAILABLE,  # no answer within 30 s
}


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # the listen backlog: ThreadingHTTPServer's 5 resets a rush
    gateway: "Gateway"

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up on a kept-alive connection is not an error worth a traceback."""
        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            return
        super().handle_error(request, client_address)


class RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out as two writes: with Nagle's algorithm the body waited for the
    # client's delayed ACK of the headers, 40 ms on every answer.
    disable_nagle_algorithm = True
    server_version = "local-apigw"
    sys_version = ""
    server: Server

    def __getattr__(self, name: str) -> Any:
        if name.startswith("do_"):
            return self._handle
        raise AttributeError(name)

    def setup(self) -> None:
        super().setup()
        self.server.gateway.connections.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.gateway.connections.discard(self.connection)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        gw = self.server.gateway
        if gw.access_log:
            gw.log(format % args)

    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        gw = self.server.gateway
        if gw.access_log:
            elapsed = (time.monotonic() - getattr(self, "_started", time.monotonic())) * 1000
            gw.log(f"{self.command} {self.path} {code} ({elapsed:.0f} ms)")

    # -- body

    def _discard(self, size: int) -> None:
        while size > 0:
            chunk = self.rfile.read(min(size, 1 << 16))
            if not chunk:
                return
            size -= len(chunk)

    def _read_body(self, limit: int) -> bytes | None:
        """The request body, or None when it is over ``limit`` (connection then closes)."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts: list[bytes] = []
            total = 0
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                total += size
                if total > limit:
                    self.close_connection = True
                    return None
                parts.append(self.rfile.read(size))
                self.rfile.readline(65537)
            return b"".join(parts)
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0:
            raise ValueError("negative Content-Length")
        if length > limit:
            self.close_connection = True
            if length <= 4 * limit:
                self._discard(length)  # so the client sees our answer, not a reset
            return None
        return self.rfile.read(length) if length else b""

    # -- responses

    def version_string(self) -> str:
        return self.server_version

    def _send(
        self,
        status: int,
        headers: list[tuple[str, str]],
        body: bytes,
        origin: str | None,
        request_id: str,
        preflight: bool = False,
    ) -> None:
        gw = self.server.gateway
        if gw.cors is not None and not preflight:
            headers = [(k, v) for k, v in headers if not k.lower().startswith("access-control-")]
            headers += gw.cors.response_headers(origin)
        self.send_response(status)
        names = {k.lower() for k, _ in headers}
        for key, value in headers:
            if key.lower() not in ("content-length", "connection", "transfer-encoding", "date", "server"):
                self.send_header(key, value)
        if "apigw-requestid" not in names:
            self.send_header("Apigw-Requestid", request_id)
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _invoke_directly(self, function_id: str, body: bytes, origin: str | None, request_id: str) -> None:
        """`POST /_local/invoke/<FunctionLogicalId>` with an event as the body: what
        `aws lambda invoke` does, for scheduled and queue functions (local only)."""
        try:
            event = json.loads(body or b"{}")
        except ValueError:
            return self._send_json((400, {"message": "the body must be the event, as JSON"}), origin, request_id)
        if function_id not in self.server.gateway.pools:
            return self._send_json((404, {"message": f"no function {function_id}"}), origin, request_id)
        result = self.server.gateway.invoke(function_id, event, request_id)
        if result.status != "ok":
            return self._send_json((502, {"message": result.status, "error": result.value}), origin, request_id)
        return self._send_json((200, result.value), origin, request_id)

    def _send_json(self, answer: tuple[int, Any], origin: str | None, request_id: str) -> None:
        status, payload = answer
        body = json.dumps(payload, separators=(",", ":")).encode()
        self._send(status, [("Content-Type", "application/json")], body, origin, request_id)

    # -- dispatch

    def _handle(self) -> None:
        self._started = time.monotonic()
        request_id = str(uuid.uuid4())
        try:
            self._dispatch(request_id)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception:  # noqa: BLE001 - answer 500 rather than drop the connection
            self.server.gateway.log("unexpected error:\n" + traceback.format_exc().rstrip())
            self.close_connection = True
            try:
                self._send_json(INTERNAL_ERROR, None, request_id)
            except OSError:
                pass

    def _dispatch(self, request_id: str) -> None:
        gw = self.server.gateway
        target = self.path
        if target.startswith(("http://", "https://")):
            parts = urlsplit(target)
            target = parts.path + ("?" + parts.query if parts.query else "")
        raw_path, _, raw_query = target.partition("?")
        header_pairs = list(self.headers.items())
        lower = {k.lower(): v for k, v in header_pairs}
        origin = lower.get("origin")
        method = self.command.upper()

        try:
            body = self._read_body(gw.max_body_bytes)
        except ValueError:
            self.close_connection = True
            return self._send_json((400, {"message": "Bad Request"}), origin, request_id)
        if body is None:
            return self._send_json(TOO_LARGE, origin, request_id)

        if gw.cors is not None and method == "OPTIONS" and origin and "access-control-request-method" in lower:
            headers = gw.cors.preflight_headers(origin, lower["access-control-request-method"])
            return self._send(204, headers, b"", origin, request_id, preflight=True)

        if raw_path == "/_local/token" and method == "POST":
            return self._issue_token(body, origin, request_id)
        if raw_path == "/_local/.well-known/jwks.json" and method == "GET":
            jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(gw.private_key.public_key()))
            jwk.update({"kid": KEY_ID, "alg": "RS256", "use": "sig"})
            return self._send_json((200, {"keys": [jwk]}), origin, request_id)

        if raw_path == "/_local/ready" and method == "GET":
            waiting = sorted(name for name, pool in gw.pools.items() if not pool.initialised())
            return self._send_json((503 if waiting else 200, {"ready": not waiting, "initialising": waiting}), origin, request_id)
        if raw_path.startswith("/_local/invoke/") and method == "POST":
            return self._invoke_directly(raw_path.rsplit("/", 1)[1], body, origin, request_id)

        if gw.site is not None and gw.site.handles(raw_path):
            status, headers, data = gw.site.answer(method, raw_path, lower.get("accept-encoding", ""))
            return self._send(status, headers, data, origin, request_id)

        matched = match_route(gw.routes, method, raw_path)
        if matched is None:
            return self._send_json(NOT_FOUND, origin, request_id)
        route, path_params = matched

        claims = None
        if route.authorizer:
            claims = gw.authorize(route, lower)
            if claims is None:
                return self._send_json(UNAUTHORIZED, origin, request_id)

        source_ip = self.client_address[0]
        extra = [
            ("x-forwarded-for", f"{lower['x-forwarded-for']}, {source_ip}" if "x-forwarded-for" in lower else source_ip),
            ("x-forwarded-port", str(gw.port)),
            ("x-forwarded-proto", "http"),
        ]
        if "x-amzn-trace-id" not in lower:
            extra.append(("x-amzn-trace-id", f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]}"))
        forwarded = {name for name, _ in extra}
        header_pairs = [(k, v) for k, v in header_pairs if k.lower() not in forwarded] + extra

        event = build_event(
            method=method,
            raw_path=raw_path,
            raw_query=raw_query,
            headers=header_pairs,
            body=body,
            route_key=route.route_key,
            path_parameters=path_params,
            source_ip=source_ip,
            domain_name=lower.get("host") or f"{gw.host}:{gw.port}",
            claims=claims,
            request_id=request_id,
        )
        result = gw.invoke(route.function, event, request_id, within=gw.integration_timeout)
        if result.status == "ok":
            try:
                status, headers, data = build_response(result.value)
            except ValueError as exc:
                gw.log(f"{route.function}: malformed response: {exc}")
                return self._send_json(INTERNAL_ERROR, origin, request_id)
            return self._send(status, headers, data, origin, request_id)
        return self._send_json(FAILURES.get(result.status, UNAVAILABLE), origin, request_id)

    def _issue_token(self, body: bytes, origin: str | None, request_id: str) -> None:
        gw = self.server.gateway
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            return self._send_json((400, {"message": "body must be JSON"}), origin, request_id)
        if not isinstance(data, dict) or not data.get("sub"):
            return self._send_json((400, {"message": "sub is required"}), origin, request_id)
        try:
            token = gw.issue_token(
                str(data["sub"]),
                email=data.get("email"),
                name=data.get("name"),
                groups=data.get("groups") or [],
                ttl_seconds=int(data.get("ttl_seconds", 3600)),
                email_verified=_flag(data.get("email_verified", True)),
            )
        except (TypeError, ValueError) as exc:
            return self._send_json((400, {"message": str(exc)}), origin, request_id)
        return self._send_json((200, {"token": token}), origin, request_id)


def _flag(value: Any) -> bool:
    """`email_verified` as JSON true/false (or "true"/"false"); anything else is a 400."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ValueError("email_verified must be true or false")
