"""A local API Gateway (HTTP API, payload format 2.0) for the routes of template.yaml.

``sam local start-api`` needs Docker; this serves the same routes with plain
Python processes instead:

    python -m local.gateway --template template.yaml --host 127.0.0.1 --port 3000 \\
        --env-file .local/env.json [--parameter FrontendUrl=http://localhost:5173 ...] \\
        [--workers 2] [--key-file .local/jwt-key.pem] [--schedule-seconds 10]

In-process (tests)::

    gw = Gateway("template.yaml", "127.0.0.1", 3000, env_file=..., parameters={...}).start()
    token = gw.issue_token("user-1", groups=["admin"])
    ...
    gw.stop()

What it does, as API Gateway + Lambda would:

* routes: exact route keys, ``{param}`` (one non-empty segment), ``{proxy+}``
  (greedy), most specific wins, ``ANY`` and ``$default``; no match -> 404.
* JWT authorizer: only the gateway's own issuer (``http://HOST:PORT/_local``,
  audience ``local-client``) is trusted; ``POST /_local/token`` mints tokens.
  The public key is at ``GET /_local/.well-known/jwks.json``.
* payload 2.0 events and responses, CORS preflight and response headers,
  413 for bodies over ``max_body_bytes``.
* each function has a pool of worker processes (same interpreter) that import
  the handler once and handle one event at a time; exceptions -> 500,
  crashes -> 502, timeouts -> 503 (the worker is killed and replaced).
* Schedule events are invoked every ``schedule_seconds``; SQS events are
  polled from SQS (boto3, honouring ``AWS_ENDPOINT_URL``).
"""

from __future__ import annotations

import argparse
import base64
import errno
import json
import os
import queue
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterable, Mapping
from urllib.parse import parse_qsl, unquote, urlsplit

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from local.packages import only_its_packages
from local.template import (
    ACCOUNT_ID,
    Cors,
    Function,
    Route,
    Template,
    Unresolved,
    build_context,
    load_template,
    resolve,
    resolve_environment,
)

__all__ = [
    "AUDIENCE",
    "DEFAULT_MAX_BODY_BYTES",
    "Gateway",
    "InvokeResult",
    "PortInUseError",
    "build_event",
    "build_response",
    "flatten_claims",
    "is_text_content_type",
    "load_env_file",
    "load_or_create_key",
    "main",
    "make_token",
    "match_route",
    "verify_token",
]

AUDIENCE = "local-client"
DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024
KEY_ID = "local"

NOT_FOUND = (404, {"message": "Not Found"})
UNAUTHORIZED = (401, {"message": "Unauthorized"})
TOO_LARGE = (413, {"message": "Request Entity Too Large"})
INTERNAL_ERROR = (500, {"message": "Internal Server Error"})
BAD_GATEWAY = (502, {"message": "Internal Server Error"})
UNAVAILABLE = (503, {"message": "Service Unavailable"})

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class PortInUseError(OSError):
    """The gateway's port is taken."""

    def __init__(self, host: str, port: int):
        super().__init__(errno.EADDRINUSE, f"port {port} on {host} is already in use")
        self.host, self.port = host, port


# ============================================================ pure functions


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


def load_env_file(path: str | os.PathLike[str] | None) -> dict[str, dict[str, Any]]:
    """Read a ``sam local --env-vars`` file: ``{"Parameters": {...}, "<FunctionId>": {...}, "Queues": {...}}``.

    A missing path gives ``{}``.
    """
    if not path or not Path(path).exists():
        return {}
    data = json.loads(Path(path).read_text() or "{}")
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return {k: dict(v) for k, v in data.items() if isinstance(v, dict)}


# ================================================================= tokens


def load_or_create_key(path: str | os.PathLike[str] | None = None) -> rsa.RSAPrivateKey:
    """The gateway's RSA signing key: loaded from ``path`` (PEM) if it exists, else generated
    (and written to ``path``, mode 0600, when a path is given)."""
    if path and Path(path).exists():
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError(f"{path}: not an RSA private key")
        return key
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if path:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        tmp = target.with_name(target.name + f".{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
        os.replace(tmp, target)
    return key


def make_token(
    private_key: Any,
    *,
    issuer: str,
    sub: str,
    audience: str = AUDIENCE,
    email: str | None = None,
    name: str | None = None,
    groups: Iterable[str] | None = None,
    ttl_seconds: int = 3600,
    extra_claims: Mapping[str, Any] | None = None,
    now: int | None = None,
) -> str:
    """An RS256 Cognito-ID-token-shaped JWT. ``extra_claims`` override/add claims (e.g. ``aud``)."""
    now = int(time.time()) if now is None else now
    claims: dict[str, Any] = {"sub": sub}
    if email:
        claims["email"] = email
    claims["email_verified"] = True
    if name:
        claims["name"] = name
    groups = [str(g) for g in (groups or [])]
    if groups:
        claims["cognito:groups"] = groups
    claims.update(
        {
            "iss": issuer,
            "cognito:username": sub,
            "aud": audience,
            "token_use": "id",
            "auth_time": now,
            "iat": now,
            "exp": now + int(ttl_seconds),
            "jti": str(uuid.uuid4()),
        }
    )
    claims.update(extra_claims or {})
    return jwt.encode(claims, private_key, algorithm="RS256", headers={"kid": KEY_ID})


def verify_token(token: str, public_key: Any, *, issuer: str, audience: str = AUDIENCE) -> dict[str, Any]:
    """Verify signature, issuer, audience and expiry; return the claims or raise ``jwt.InvalidTokenError``."""
    return jwt.decode(
        token,
        public_key,
        algorithms=["RS256"],
        audience=audience,
        issuer=issuer,
        options={"require": ["exp", "iss", "sub"]},
    )


# ================================================================ workers

# Runs in each worker process (``python -u -c WORKER_SOURCE REQ_FD RESP_FD CONFIG``).
# Stdlib only, so the worker's sys.modules holds nothing of the gateway's.
WORKER_SOURCE = r'''
import importlib, json, os, struct, sys, time, traceback

req_fd, resp_fd, cfg = int(sys.argv[1]), int(sys.argv[2]), json.loads(sys.argv[3])
req = os.fdopen(req_fd, "rb")
resp = os.fdopen(resp_fd, "wb")
sys.argv = ["lambda"]
sys.path[:] = cfg["path"] + [p for p in sys.path if p and p not in cfg["path"]]


def send(payload):
    resp.write(struct.pack(">I", len(payload)) + payload)
    resp.flush()


def receive():
    head = req.read(4)
    if len(head) < 4:
        return None
    (size,) = struct.unpack(">I", head)
    data = req.read(size)
    return json.loads(data) if len(data) == size else None


class LambdaContext:
    def __init__(self, request_id, timeout_ms):
        name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
        region = os.environ.get("AWS_REGION", "us-east-1")
        self.function_name = name
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.invoked_function_arn = "arn:aws:lambda:%s:%s:function:%s" % (region, cfg["account"], name)
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        self.aws_request_id = request_id
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME")
        self.identity = None
        self.client_context = None
        self._deadline = time.monotonic() + timeout_ms / 1000.0

    def get_remaining_time_in_millis(self):
        return max(0, int((self._deadline - time.monotonic()) * 1000))

    def __repr__(self):
        return "LambdaContext(%s, %s)" % (self.function_name, self.aws_request_id)


try:
    handler = getattr(importlib.import_module(cfg["module"]), cfg["function"])
except BaseException as exc:
    text = traceback.format_exc()
    sys.stderr.write("init error: " + text)
    sys.stderr.flush()
    send(json.dumps({"ready": False, "error": "%s: %s" % (type(exc).__name__, exc)}).encode())
    sys.exit(1)
send(json.dumps({"ready": True, "pid": os.getpid()}).encode())

while True:
    message = receive()
    if message is None:
        break
    context = LambdaContext(message["request_id"], message["timeout_ms"])
    try:
        result = handler(message["event"], context)
        try:
            payload = json.dumps({"ok": True, "result": result}).encode()
        except (TypeError, ValueError) as exc:
            sys.stderr.write("Runtime.MarshalError: %s\n" % exc)
            payload = json.dumps({"ok": False, "errorType": "Runtime.MarshalError", "errorMessage": str(exc)}).encode()
    except Exception as exc:
        sys.stderr.write("[ERROR] %s\n" % traceback.format_exc())
        payload = json.dumps({"ok": False, "errorType": type(exc).__name__, "errorMessage": str(exc)}).encode()
    sys.stdout.flush()
    sys.stderr.flush()
    send(payload)
'''


class _WorkerTimeout(Exception):
    pass


def _read_exact(fd: int, size: int, deadline: float | None) -> bytes:
    chunks: list[bytes] = []
    remaining = size
    while remaining:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise _WorkerTimeout()
            readable, _, _ = select.select([fd], [], [], left)
            if not readable:
                raise _WorkerTimeout()
        chunk = os.read(fd, min(remaining, 1 << 20))
        if not chunk:
            raise EOFError()
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _read_message(fd: int, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    (size,) = struct.unpack(">I", _read_exact(fd, 4, deadline))
    return json.loads(_read_exact(fd, size, deadline + 30))


@dataclass
class InvokeResult:
    """Outcome of one invocation.

    ``status``: ``ok`` (``value`` is the handler's return value), ``error``
    (handler raised; ``value`` has errorType/errorMessage), ``crash`` (worker
    died), ``init_error`` (module failed to import), ``timeout``, or
    ``unavailable`` (gateway stopping).
    """

    status: str
    value: Any = None
    pid: int | None = None


@dataclass
class _FunctionSpec:
    function: Function
    env: dict[str, str]


class _Worker:
    """One worker process and the pipes to it."""

    def __init__(self, spec: _FunctionSpec, gateway: "Gateway"):
        fn = spec.function
        config = {
            "path": [fn.code_uri, *fn.layers],
            "module": fn.module,
            "function": fn.function,
            "account": ACCOUNT_ID,
        }
        req_r, req_w = os.pipe()
        resp_r, resp_w = os.pipe()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-u", "-c", WORKER_SOURCE, str(req_r), str(resp_w), json.dumps(config)],
                env=spec.env,
                cwd=fn.code_uri if os.path.isdir(fn.code_uri) else None,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=(req_r, resp_w),
                start_new_session=True,
            )
        except BaseException:
            for fd in (req_r, req_w, resp_r, resp_w):
                os.close(fd)
            raise
        os.close(req_r)
        os.close(resp_w)
        self.req_w, self.resp_r = req_w, resp_r
        self.pid = self.proc.pid
        self.ready: bool | None = None
        self.init_error: str | None = None
        self.closed = False
        for stream in (self.proc.stdout, self.proc.stderr):
            threading.Thread(target=gateway._pump, args=(fn.logical_id, stream), daemon=True).start()

    def wait_ready(self, timeout: float) -> str | None:
        """None when the handler imported; else the error text."""
        if self.ready is None:
            try:
                message = _read_message(self.resp_r, timeout)
            except _WorkerTimeout:
                self.ready, self.init_error = False, f"init did not finish within {timeout:g}s"
            except (EOFError, OSError, ValueError):
                self.ready, self.init_error = False, "worker exited during init"
            else:
                self.ready = bool(message.get("ready"))
                self.init_error = None if self.ready else str(message.get("error"))
        return self.init_error

    def invoke(self, event: dict[str, Any], request_id: str, timeout: float) -> InvokeResult:
        payload = json.dumps({"event": event, "request_id": request_id, "timeout_ms": int(timeout * 1000)}).encode()
        try:
            data = memoryview(struct.pack(">I", len(payload)) + payload)
            while data:
                written = os.write(self.req_w, data)
                data = data[written:]
            message = _read_message(self.resp_r, timeout)
        except _WorkerTimeout:
            return InvokeResult("timeout", pid=self.pid)
        except (EOFError, OSError, ValueError):
            return InvokeResult("crash", pid=self.pid)
        if message.get("ok"):
            return InvokeResult("ok", message.get("result"), pid=self.pid)
        return InvokeResult("error", {k: message.get(k) for k in ("errorType", "errorMessage")}, pid=self.pid)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                self.proc.kill()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        for fd in (self.req_w, self.resp_r):
            try:
                os.close(fd)
            except OSError:
                pass


class _BrokenWorker:
    """Stands in for a worker that could not even be started (e.g. missing CodeUri)."""

    def __init__(self, error: str):
        self.pid = None
        self.ready = False
        self.init_error = error

    def wait_ready(self, timeout: float) -> str | None:
        return self.init_error

    def alive(self) -> bool:
        return False

    def kill(self) -> None:
        pass


class _FunctionPool:
    """``size`` worker processes for one function; a request waits for a free one."""

    def __init__(self, spec: _FunctionSpec, size: int, gateway: "Gateway"):
        self.spec = spec
        self.gateway = gateway
        self.idle: queue.Queue[Any] = queue.Queue()
        self.workers: set[Any] = set()
        self.lock = threading.Lock()
        self.closed = False
        for _ in range(max(1, size)):
            self._spawn()

    @property
    def name(self) -> str:
        return self.spec.function.logical_id

    def _spawn(self) -> None:
        with self.lock:
            if self.closed:
                return
            try:
                worker: Any = _Worker(self.spec, self.gateway)
            except OSError as exc:
                worker = _BrokenWorker(f"could not start worker: {exc}")
                self.gateway._log(f"{self.name}: {worker.init_error}")
            self.workers.add(worker)
        self.idle.put(worker)

    def _retire(self, worker: Any) -> None:
        worker.kill()
        with self.lock:
            self.workers.discard(worker)

    def _acquire(self) -> Any | None:
        while not self.closed:
            try:
                worker = self.idle.get(timeout=0.2)
            except queue.Empty:
                continue
            if self.closed:
                self.idle.put(worker)
                return None
            if worker.ready and not worker.alive():
                # died while idle (killed from outside): replace it quietly
                self.gateway._log(f"{self.name}: worker {worker.pid} exited while idle; replacing it")
                self._retire(worker)
                self._spawn()
                continue
            return worker
        return None

    def invoke(self, event: dict[str, Any], request_id: str | None = None) -> InvokeResult:
        """Run ``event`` on a free worker (waiting for one)."""
        fn = self.spec.function
        worker = self._acquire()
        if worker is None:
            return InvokeResult("unavailable")
        healthy = False
        try:
            error = worker.wait_ready(max(10.0, fn.timeout + 10.0))
            if error is not None:
                self.gateway._log(f"{self.name}: handler {fn.handler} failed to initialise: {error}")
                return InvokeResult("init_error", error, pid=worker.pid)
            result = worker.invoke(event, request_id or str(uuid.uuid4()), float(fn.timeout))
            if result.status == "timeout":
                self.gateway._log(f"{self.name}: task timed out after {fn.timeout} seconds; killing worker {worker.pid}")
            elif result.status == "crash":
                self.gateway._log(f"{self.name}: worker {worker.pid} exited (code {worker.proc.poll()})")
            healthy = result.status in ("ok", "error")
            return result
        finally:
            if healthy and not self.closed:
                self.idle.put(worker)
            else:
                self._retire(worker)
                self._spawn()

    def close(self) -> None:
        with self.lock:
            self.closed = True
            workers = list(self.workers)
            self.workers.clear()
        for worker in workers:
            worker.kill()


# ================================================================== CORS


class _CorsPolicy:
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


# ============================================================ HTTP server


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    gateway: "Gateway"

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up on a kept-alive connection is not an error worth a traceback."""
        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            return
        super().handle_error(request, client_address)


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "local-apigw"
    sys_version = ""
    server: _Server

    def __getattr__(self, name: str) -> Any:
        if name.startswith("do_"):
            return self._handle
        raise AttributeError(name)

    def setup(self) -> None:
        super().setup()
        self.server.gateway._connections.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.gateway._connections.discard(self.connection)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        gw = self.server.gateway
        if gw.access_log:
            gw._log(format % args)

    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        gw = self.server.gateway
        if gw.access_log:
            elapsed = (time.monotonic() - getattr(self, "_started", time.monotonic())) * 1000
            gw._log(f"{self.command} {self.path} {code} ({elapsed:.0f} ms)")

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
            import traceback

            self.server.gateway._log("unexpected error:\n" + traceback.format_exc().rstrip())
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

        if raw_path.startswith("/_local/invoke/") and method == "POST":
            return self._invoke_directly(raw_path.rsplit("/", 1)[1], body, origin, request_id)

        matched = match_route(gw.routes, method, raw_path)
        if matched is None:
            return self._send_json(NOT_FOUND, origin, request_id)
        route, path_params = matched

        claims = None
        if route.authorizer:
            claims = gw._authorize(route, lower)
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
        result = gw.invoke(route.function, event, request_id)
        if result.status == "ok":
            try:
                status, headers, data = build_response(result.value)
            except ValueError as exc:
                gw._log(f"{route.function}: malformed response: {exc}")
                return self._send_json(INTERNAL_ERROR, origin, request_id)
            return self._send(status, headers, data, origin, request_id)
        answer = {
            "error": INTERNAL_ERROR,
            "crash": BAD_GATEWAY,
            "init_error": BAD_GATEWAY,
            "timeout": UNAVAILABLE,
        }.get(result.status, UNAVAILABLE)
        return self._send_json(answer, origin, request_id)

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
            )
        except (TypeError, ValueError) as exc:
            return self._send_json((400, {"message": str(exc)}), origin, request_id)
        return self._send_json((200, {"token": token}), origin, request_id)


# ================================================================ gateway


class Gateway:
    """The local API Gateway. ``start()`` returns once listening; ``stop()`` ends everything.

    ``env_file``: ``sam local --env-vars`` JSON (``Parameters`` section for all
    functions, a section per function logical id, and ``Queues``:
    ``{LogicalId: name}`` for SQS queue names). Unlike ``sam local``, names
    the template does not declare are passed to the functions as well. ``parameters``: template
    parameter overrides. ``environ``: base environment for workers and SQS
    polling (default ``os.environ``). ``background=False`` disables Schedule
    and SQS pollers.
    """

    def __init__(
        self,
        template_path: str | os.PathLike[str],
        host: str = "127.0.0.1",
        port: int = 3000,
        *,
        env_file: str | os.PathLike[str] | None = None,
        parameters: Mapping[str, Any] | None = None,
        workers: int = 2,
        key_file: str | os.PathLike[str] | None = None,
        schedule_seconds: float = 10.0,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        environ: Mapping[str, str] | None = None,
        physical_names: Mapping[str, str] | None = None,
        background: bool = True,
        access_log: bool = True,
    ):
        self.template: Template = load_template(template_path)
        self.host = host
        self.port = port
        self.workers = workers
        self.key_file = key_file
        self.schedule_seconds = float(schedule_seconds)
        self.max_body_bytes = int(max_body_bytes)
        self.background = background
        self.access_log = access_log
        self.env_sections = load_env_file(env_file)
        self.base_env = dict(os.environ if environ is None else environ)
        self.region = self.base_env.get("AWS_REGION") or self.base_env.get("AWS_DEFAULT_REGION") or "us-east-1"
        names = dict(self.env_sections.get("Queues", {}))
        names.update(physical_names or {})
        self.context = build_context(
            self.template,
            parameters,
            physical_names=names,
            region=self.region,
            endpoint_url=self.base_env.get("AWS_ENDPOINT_URL_SQS") or self.base_env.get("AWS_ENDPOINT_URL"),
        )
        self.routes: list[Route] = list(self.template.routes)
        cors = self.template.cors
        self.cors = _CorsPolicy(cors, self.context) if cors else None
        self.private_key: Any = None
        self.pools: dict[str, _FunctionPool] = {}
        self._server: _Server | None = None
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._log_lock = threading.Lock()
        self._stopped = False

    # -- properties

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def issuer(self) -> str:
        return f"{self.url}/_local"

    audience = AUDIENCE

    # -- logging

    def _log(self, message: str) -> None:
        with self._log_lock:
            try:
                sys.stderr.write(f"gateway: {message}\n")
                sys.stderr.flush()
            except (ValueError, OSError):
                pass

    def _pump(self, name: str, stream: Any) -> None:
        try:
            for line in iter(stream.readline, b""):
                text = line.decode("utf-8", "replace").rstrip("\n")
                with self._log_lock:
                    try:
                        sys.stderr.write(f"[{name}] {text}\n")
                        sys.stderr.flush()
                    except (ValueError, OSError):
                        pass
        except (ValueError, OSError):
            pass
        finally:
            try:
                stream.close()
            except OSError:
                pass

    # -- environment

    def function_environment(self, function: Function) -> dict[str, str]:
        """The full environment a worker of ``function`` runs with."""
        overrides = {**self.env_sections.get("Parameters", {}), **self.env_sections.get(function.logical_id, {})}
        env = dict(self.base_env)
        env.update(resolve_environment(function.environment, self.context, overrides))
        # Unlike `sam local`, env-file names the template does not declare are passed
        # on too, so the local stack can point functions at local stand-ins.
        for key, value in overrides.items():
            if key not in function.environment and value is not None:
                env[key] = value if isinstance(value, str) else json.dumps(value)
        name = function.logical_id
        env.update(
            {
                "AWS_LAMBDA_FUNCTION_NAME": name,
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory),
                "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
                "AWS_LAMBDA_FUNCTION_TIMEOUT": str(function.timeout),
                "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{name}",
                "AWS_LAMBDA_LOG_STREAM_NAME": f"{time.strftime('%Y/%m/%d')}/[$LATEST]local",
                "AWS_EXECUTION_ENV": f"AWS_Lambda_{function.runtime or 'python3'}",
                "LAMBDA_TASK_ROOT": function.code_uri,
                "_HANDLER": function.handler,
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.setdefault("AWS_REGION", self.region)
        env.setdefault("AWS_DEFAULT_REGION", env["AWS_REGION"])
        if env.get("AWS_ENDPOINT_URL"):
            # A key of its own against the local AWS stand-in, which records what each key
            # was allowed to do (local.aws), as each function's role would be in AWS.
            env["AWS_ACCESS_KEY_ID"] = f"AKLOCAL{name}"
        env.update(only_its_packages(function.code_uri, env.get("PYTHONPATH")))  # as its package in Lambda
        return env

    # -- tokens

    def issue_token(
        self,
        sub: str,
        *,
        email: str | None = None,
        name: str | None = None,
        groups: Iterable[str] | None = None,
        ttl_seconds: int = 3600,
        extra_claims: Mapping[str, Any] | None = None,
    ) -> str:
        """A token this gateway accepts (``extra_claims`` can break it on purpose, e.g. ``{"aud": "x"}``)."""
        if self.private_key is None:
            raise RuntimeError("gateway not started")
        return make_token(
            self.private_key,
            issuer=self.issuer,
            sub=sub,
            email=email,
            name=name,
            groups=groups,
            ttl_seconds=ttl_seconds,
            extra_claims=extra_claims,
        )

    def _authorize(self, route: Route, headers: Mapping[str, str]) -> dict[str, Any] | None:
        authorizer = self.template.apis.get(route.api_id)
        spec = authorizer.authorizers.get(route.authorizer or "") if authorizer else None
        header = spec.header if spec else "authorization"
        token = (headers.get(header) or "").strip()
        if token[:7].lower() == "bearer ":
            token = token[7:].strip()
        if not token:
            return None
        try:
            return verify_token(token, self.private_key.public_key(), issuer=self.issuer, audience=self.audience)
        except jwt.InvalidTokenError:
            return None

    # -- invoking

    def invoke(self, function_id: str, event: dict[str, Any], request_id: str | None = None) -> InvokeResult:
        """Invoke a function by logical id on one of its workers."""
        pool = self.pools.get(function_id)
        if pool is None or self._stopping.is_set():
            return InvokeResult("unavailable")
        return pool.invoke(event, request_id)

    # -- lifecycle

    def start(self) -> "Gateway":
        """Bind, start workers and pollers; return once listening. Raises PortInUseError."""
        server = _Server((self.host, self.port), _RequestHandler, bind_and_activate=False)
        try:
            server.server_bind()
            server.server_activate()
        except OSError as exc:
            server.server_close()
            if exc.errno == errno.EADDRINUSE:
                raise PortInUseError(self.host, self.port) from None
            raise
        server.gateway = self
        self.port = server.server_address[1]
        self._server = server
        try:
            self.private_key = load_or_create_key(self.key_file)
            for logical_id, function in self.template.functions.items():
                spec = _FunctionSpec(function, self.function_environment(function))
                self.pools[logical_id] = _FunctionPool(spec, self.workers, self)
            thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="gateway-http", daemon=True)
            thread.start()
            self._serve_thread = thread
            if self.background:
                for schedule in self.template.schedules:
                    if schedule.enabled and schedule.function in self.pools:
                        self._background(self._schedule_loop, schedule, f"schedule-{schedule.function}")
                for sqs in self.template.sqs_events:
                    if sqs.enabled and sqs.function in self.pools:
                        self._background(self._sqs_loop, sqs, f"sqs-{sqs.function}")
        except BaseException:
            self.stop()
            raise
        print(f"gateway listening on {self.url}", flush=True)
        return self

    def _background(self, target: Any, arg: Any, name: str) -> None:
        thread = threading.Thread(target=target, args=(arg,), name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self) -> None:
        """Stop serving, stop pollers, kill every worker process. Safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        self._stopping.set()
        if self._server is not None:
            if getattr(self, "_serve_thread", None) is not None:
                self._server.shutdown()
            self._server.server_close()
        for conn in list(self._connections):
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for pool in self.pools.values():
            pool.close()
        for thread in self._threads:
            thread.join(timeout=10)

    def __enter__(self) -> "Gateway":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- background events

    def _schedule_loop(self, schedule: Any) -> None:
        rule = f"arn:aws:events:{self.region}:{ACCOUNT_ID}:rule/{schedule.function}-{schedule.name}"
        while not self._stopping.wait(self.schedule_seconds):
            event = {
                "version": "0",
                "id": str(uuid.uuid4()),
                "detail-type": "Scheduled Event",
                "source": "aws.events",
                "account": ACCOUNT_ID,
                "time": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "region": self.region,
                "resources": [rule],
                "detail": {},
            }
            result = self.invoke(schedule.function, event)
            if result.status not in ("ok", "unavailable"):
                self._log(f"{schedule.function}: scheduled invocation ({schedule.name}) failed: {result.status} {result.value or ''}")

    def _sqs_client(self) -> Any:
        import boto3

        env = self.base_env
        session = boto3.session.Session(
            aws_access_key_id=env.get("AWS_ACCESS_KEY_ID"),
            aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY"),
            aws_session_token=env.get("AWS_SESSION_TOKEN"),
            region_name=self.region,
        )
        endpoint = env.get("AWS_ENDPOINT_URL_SQS") or env.get("AWS_ENDPOINT_URL") or None
        return session.client("sqs", endpoint_url=endpoint)

    def _sqs_loop(self, sqs: Any) -> None:
        name = str(self.context.get(f"{sqs.queue}.QueueName", sqs.queue))
        arn = f"arn:aws:sqs:{self.region}:{ACCOUNT_ID}:{name}"
        batch = max(1, int(sqs.batch_size))
        client = None
        url = None
        last_error = None
        while not self._stopping.is_set():
            try:
                if client is None:
                    client = self._sqs_client()
                if url is None:
                    url = client.get_queue_url(QueueName=name)["QueueUrl"]
                    last_error = None
                messages: list[dict[str, Any]] = []
                wait = 1
                while len(messages) < batch and not self._stopping.is_set():
                    want = min(10, batch - len(messages))
                    got = client.receive_message(
                        QueueUrl=url,
                        MaxNumberOfMessages=want,
                        WaitTimeSeconds=wait,
                        AttributeNames=["All"],
                        MessageAttributeNames=["All"],
                    ).get("Messages", [])
                    messages += got
                    if len(got) < want:
                        break
                    wait = 0
            except Exception as exc:  # noqa: BLE001 - keep polling whatever happens
                text = f"{type(exc).__name__}: {exc}"
                if text != last_error:
                    self._log(f"{sqs.function}: polling queue {name!r} failed ({text}); retrying")
                    last_error = text
                if "NonExistentQueue" in text or "QueueDoesNotExist" in text:
                    url = None
                self._stopping.wait(2)
                continue
            if not messages:
                continue
            records = [self._sqs_record(m, arn) for m in messages]
            result = self.invoke(sqs.function, {"Records": records})
            if result.status != "ok":
                if result.status != "unavailable":
                    self._log(f"{sqs.function}: SQS batch of {len(records)} failed ({result.status}); messages will reappear")
                continue
            keep: set[str] = set()
            if sqs.report_batch_item_failures and isinstance(result.value, dict):
                failures = result.value.get("batchItemFailures") or []
                ids = {r["messageId"] for r in records}
                try:
                    keep = {str(f["itemIdentifier"]) for f in failures}
                except (KeyError, TypeError):
                    keep = ids
                if not keep <= ids:
                    keep = ids  # an unknown identifier fails the whole batch, as Lambda does
            entries = [
                {"Id": str(i), "ReceiptHandle": r["receiptHandle"]}
                for i, r in enumerate(records)
                if r["messageId"] not in keep
            ]
            try:
                for start in range(0, len(entries), 10):
                    client.delete_message_batch(QueueUrl=url, Entries=entries[start : start + 10])
            except Exception as exc:  # noqa: BLE001
                self._log(f"{sqs.function}: deleting messages from {name!r} failed: {exc}")

    def _sqs_record(self, message: dict[str, Any], arn: str) -> dict[str, Any]:
        attributes = {}
        for key, value in (message.get("MessageAttributes") or {}).items():
            binary = value.get("BinaryValue")
            attributes[key] = {
                "stringValue": value.get("StringValue"),
                "binaryValue": base64.b64encode(binary).decode() if isinstance(binary, bytes) else binary,
                "stringListValues": value.get("StringListValues", []),
                "binaryListValues": value.get("BinaryListValues", []),
                "dataType": value.get("DataType"),
            }
            if attributes[key]["stringValue"] is None:
                del attributes[key]["stringValue"]
            if attributes[key]["binaryValue"] is None:
                del attributes[key]["binaryValue"]
        record = {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message.get("Body", ""),
            "attributes": dict(message.get("Attributes") or {}),
            "messageAttributes": attributes,
            "md5OfBody": message.get("MD5OfBody"),
            "eventSource": "aws:sqs",
            "eventSourceARN": arn,
            "awsRegion": self.region,
        }
        if message.get("MD5OfMessageAttributes"):
            record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
        return record


# =================================================================== CLI


def _parse_parameter(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def main(argv: list[str] | None = None) -> int:
    """``python -m local.gateway``: run until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m local.gateway", description=__doc__.split("\n\n")[0])
    parser.add_argument("--template", default="template.yaml")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3000)
    parser.add_argument("--env-file", default=None, help="sam local --env-vars style JSON")
    parser.add_argument("--parameter", action="append", type=_parse_parameter, default=[], metavar="NAME=VALUE", help="template parameter override (repeatable)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes per function")
    parser.add_argument("--key-file", default=None, help="RSA key for local tokens (created if missing)")
    parser.add_argument("--schedule-seconds", type=float, default=10.0, help="interval for Schedule events")
    parser.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES)
    parser.add_argument("--no-background", action="store_true", help="do not run Schedule/SQS events")
    parser.add_argument("--quiet", action="store_true", help="no access log")
    args = parser.parse_args(argv)

    if args.env_file and not Path(args.env_file).exists():
        print(f"gateway: env file {args.env_file} not found; using template values", file=sys.stderr)
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    try:
        gateway = Gateway(
            args.template,
            args.host,
            args.port,
            env_file=args.env_file,
            parameters=dict(args.parameter),
            workers=args.workers,
            key_file=args.key_file,
            schedule_seconds=args.schedule_seconds,
            max_body_bytes=args.max_body_bytes,
            background=not args.no_background,
            access_log=not args.quiet,
        )
    except (OSError, ValueError) as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 2
    try:
        gateway.start()
    except PortInUseError as exc:
        print(f"gateway: port {exc.port} on {exc.host} is already in use (set API_PORT to use another)", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"gateway: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    try:
        while not stop.wait(0.5):
            pass
    finally:
        gateway.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
