"""``python -m local.gateway``: the gateway on its own, until SIGINT or SIGTERM (or until
the process that started it has gone)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from local.gateway.gateway import DEFAULT_CONCURRENCY, DEFAULT_MAX_BODY_BYTES, INTEGRATION_TIMEOUT, Gateway, PortInUseError
from local.lifeline import exit_with_parent


def _parse_parameter(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.gateway", description="A local API Gateway (HTTP API) for template.yaml.")
    parser.add_argument("--template", default="template.yaml")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3000)
    parser.add_argument("--env-file", default=None, help="sam local --env-vars style JSON")
    parser.add_argument("--parameter", action="append", type=_parse_parameter, default=[], metavar="NAME=VALUE", help="template parameter override (repeatable)")
    parser.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY, help="execution environments per function at most")
    parser.add_argument("--key-file", default=None, help="RSA key for local tokens (created if missing)")
    parser.add_argument("--schedule-seconds", type=float, default=10.0, help="interval for Schedule events")
    parser.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES)
    parser.add_argument("--integration-timeout", type=float, default=INTEGRATION_TIMEOUT, help="seconds before a 503 (API Gateway: 30)")
    parser.add_argument("--no-background", action="store_true", help="do not run Schedule/SQS events")
    parser.add_argument("--web", default=None, help="serve web/app (and web/local) of this folder at /app/")
    parser.add_argument("--quiet", action="store_true", help="no access log")
    args = parser.parse_args(argv)

    if args.env_file and not Path(args.env_file).exists():
        print(f"gateway: env file {args.env_file} not found; using template values", file=sys.stderr)
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    exit_with_parent()
    try:
        gateway = Gateway(
            args.template, args.host, args.port, env_file=args.env_file, parameters=dict(args.parameter),
            concurrency=args.concurrency, key_file=args.key_file, schedule_seconds=args.schedule_seconds,
            max_body_bytes=args.max_body_bytes, integration_timeout=args.integration_timeout,
            background=not args.no_background, access_log=not args.quiet,
            web_root=args.web,
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
        stop.wait()
    finally:
        gateway.stop()
    return 0
