"""Ports for the local stack: free ones for tests, a clear message when one is taken."""

from __future__ import annotations

import socket
import sys


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
