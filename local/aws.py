"""The AWS stand-in: moto in server mode on loopback, with DynamoDB writes serialized.

    python -m local.aws --host 127.0.0.1 --port 5000

moto does not serialize concurrent writes (TOOLCHAIN.md: 20 threads doing a
conditional decrement on one item lost an update in about 3 % of runs), so every
DynamoDB operation here runs under one lock, as DynamoDB itself applies
conditional writes to an item one at a time. Without it a concurrency test would
test moto's race, not ours.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from local.ports import ensure_free

_lock = threading.RLock()


def serialize_dynamodb() -> None:
    """Run each DynamoDB request to completion before the next one starts."""
    from moto.dynamodb.responses import DynamoHandler

    if getattr(DynamoHandler.call_action, "_serialized", False):
        return
    original = DynamoHandler.call_action

    def call_action(self):  # type: ignore[no-untyped-def]
        with _lock:
            return original(self)

    call_action._serialized = True  # type: ignore[attr-defined]
    DynamoHandler.call_action = call_action  # type: ignore[method-assign]


def serve(host: str, port: int):
    """Start moto on host:port in this process (background thread); returns the server."""
    from moto.server import ThreadedMotoServer

    serialize_dynamodb()
    server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
    server.start()
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="moto server for the local stack")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    args = parser.parse_args(argv)
    if not ensure_free(args.host, args.port, "AWS stand-in", "AWS_PORT"):
        return 2
    server = serve(args.host, args.port)
    print(f"AWS stand-in (moto) listening on http://{args.host}:{args.port}", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
