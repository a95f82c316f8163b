"""Ports for the local stack: free ones for tests, a clear message when one is taken, and
waiting for a server on one to answer."""

from __future__ import annotations

import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def ensure_free(host: str, port: int, what: str, variable: str) -> bool:
    """True if host:port can be bound; otherwise print one clear line and return False."""
    if is_free(host, port):
        return True
    print(f"{what}: port {port} on {host} is already in use (set {variable} to use another)", file=sys.stderr)
    return False


def wait_http(url: str, timeout: float = 30.0, any_status: bool = False, check: Callable[[], None] = lambda: None) -> bool:
    """Poll `url` until it answers 2xx (or any HTTP status, with `any_status`); True if it did
    within `timeout`. `check` runs before each try and may raise (a server that died)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        check()
        try:
            with urllib.request.urlopen(url, timeout=2):
                return True
        except urllib.error.HTTPError:
            if any_status:
                return True
        except OSError:
            pass
        time.sleep(0.1)
    return False
