"""The local API Gateway put together: the template's routes, authorizer and CORS, a pool
of execution environments per function, background event sources, start and stop."""

from __future__ import annotations

import errno
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from local.gateway.authorizer import AUDIENCE, claims_from, load_or_create_key, make_token
from local.gateway.background import Background
from local.gateway.cors import CorsPolicy
from local.gateway.pool import FunctionPool, InvokeResult
from local.gateway.server import RequestHandler, Server
from local.gateway.static import StaticSite
from local.packages import only_its_packages
from local.template import Function, Route, Template, build_context, load_template, resolve_environment

DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit
INTEGRATION_TIMEOUT = 30.0  # API Gateway's limit for an HTTP API integration
# Execution environments per function at most. Lambda scales out to a thousand, each on
# CPU of its own; here every new one is a cold start on the same few cores, so a rush
# queues for the warm ones instead (the integration timeout counts from when a worker takes
# the request: `local.gateway.pool.QUEUE_WAIT`).
DEFAULT_CONCURRENCY = 8


class PortInUseError(OSError):
    """The gateway's port is taken."""

    def __init__(self, host: str, port: int):
        super().__init__(errno.EADDRINUSE, f"port {port} on {host} is already in use")
        self.host, self.port = host, port


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


class Gateway:
    """The local API Gateway. ``start()`` returns once listening; ``stop()`` ends everything.

    ``env_file``: ``sam local --env-vars`` JSON (``Parameters`` section for all
    functions, a section per function logical id, and ``Queues``:
    ``{LogicalId: name}`` for SQS queue names). Unlike ``sam local``, names
    the template does not declare are passed to the functions as well. ``parameters``: template
    parameter overrides. ``environ``: base environment for workers and SQS
    polling (default ``os.environ``). ``concurrency``: execution environments per
    function at most. ``integration_timeout``: seconds a client waits for a function
    before the 503. ``background=False`` disables Schedule and SQS pollers.
    """

    audience = AUDIENCE

    def __init__(
        self,
        template_path: str | os.PathLike[str],
        host: str = "127.0.0.1",
        port: int = 3000,
        *,
        env_file: str | os.PathLike[str] | None = None,
        parameters: Mapping[str, Any] | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
        key_file: str | os.PathLike[str] | None = None,
        schedule_seconds: float = 10.0,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        integration_timeout: float = INTEGRATION_TIMEOUT,
        environ: Mapping[str, str] | None = None,
        physical_names: Mapping[str, str] | None = None,
        background: bool = True,
        access_log: bool = True,
        web_root: str | os.PathLike[str] | None = None,
    ):
        self.template: Template = load_template(template_path)
        self.host, self.port = host, port
        self.concurrency = concurrency
        self.key_file = key_file
        self.schedule_seconds = float(schedule_seconds)
        self.max_body_bytes = int(max_body_bytes)
        self.integration_timeout = float(integration_timeout)
        self.access_log = access_log
        self.env_sections = load_env_file(env_file)
        self.site = (
            StaticSite(web_root, self.env_sections.get("Parameters", {}).get("STRIPE_API_BASE")) if web_root else None
        )
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
        self.cors = CorsPolicy(cors, self.context) if cors else None
        self.private_key: Any = None
        self.pools: dict[str, FunctionPool] = {}
        self.background = Background(self) if background else None
        self.stopping = threading.Event()
        self.connections: set[socket.socket] = set()
        self._server: Server | None = None
        self._serve_thread: threading.Thread | None = None
        self._log_lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def issuer(self) -> str:
        return f"{self.url}/_local"

    # -- logging

    def log(self, message: str) -> None:
        self._write(f"gateway: {message}")

    def _write(self, line: str) -> None:
        with self._log_lock:
            try:
                sys.stderr.write(line + "\n")
                sys.stderr.flush()
            except (ValueError, OSError):
                pass

    def pump(self, name: str, stream: Any) -> None:
        """Copy a function's output into the gateway's, line by line, prefixed with its name."""
        try:
            for line in iter(stream.readline, b""):
                self._write(f"[{name}] {line.decode('utf-8', 'replace').rstrip()}")
        except (ValueError, OSError):
            pass
        finally:
            try:
                stream.close()
            except OSError:
                pass

    # -- environment (the one place a function's environment is built)

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

    # -- tokens and the authorizer

    def issue_token(
        self,
        sub: str,
        *,
        email: str | None = None,
        name: str | None = None,
        groups: Iterable[str] | None = None,
        ttl_seconds: int = 3600,
        extra_claims: Mapping[str, Any] | None = None,
        email_verified: bool = True,
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
            email_verified=email_verified,
        )

    def authorize(self, route: Route, headers: Mapping[str, str]) -> dict[str, Any] | None:
        """The claims the route's JWT authorizer accepts from ``headers``, or None (a 401)."""
        api = self.template.apis.get(route.api_id)
        spec = api.authorizers.get(route.authorizer or "") if api else None
        return claims_from(headers, spec.header if spec else "authorization", self.private_key.public_key(),
                           issuer=self.issuer, audience=self.audience)

    # -- invoking

    def invoke(self, function_id: str, event: dict[str, Any], request_id: str | None = None,
               within: float | None = None) -> InvokeResult:
        """Invoke a function by logical id; ``within`` bounds the wait for its answer."""
        pool = self.pools.get(function_id)
        if pool is None or self.stopping.is_set():
            return InvokeResult("unavailable")
        return pool.invoke(event, request_id, within)

    # -- lifecycle

    def start(self) -> "Gateway":
        """Bind, start each function's parent process and the event sources; return once
        listening. Raises PortInUseError."""
        server = Server((self.host, self.port), RequestHandler, bind_and_activate=False)
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
                pool = FunctionPool(function, self.function_environment(function), self.concurrency, self.log, self.pump)
                self.pools[logical_id] = pool
                pool.start()
            self._serve_thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                                                  name="gateway-http", daemon=True)
            self._serve_thread.start()
            if self.background is not None:
                self.background.start()
        except BaseException:
            self.stop()
            raise
        print(f"gateway listening on {self.url}", flush=True)
        return self

    def stop(self) -> None:
        """Stop serving and polling, kill every function process. Safe to call twice; quick
        even with requests in flight (they get 503)."""
        if self.stopping.is_set():
            return
        self.stopping.set()
        if self._server is not None:
            if self._serve_thread is not None:
                self._server.shutdown()
            self._server.server_close()
        for pool in self.pools.values():
            pool.close()
        for conn in list(self.connections):
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self.background is not None:
            self.background.join(timeout=3)

    def __enter__(self) -> "Gateway":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
