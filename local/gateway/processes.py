"""A function's processes, seen from the gateway: the parent that imported the handler
(``worker.py`` run as a script) and the workers forked from it, and the frames that go
to and from them."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from local.template import ACCOUNT_ID, Function

WORKER_PROGRAM = str(Path(__file__).with_name("worker.py"))


class Timeout(Exception):
    """No (whole) answer by the deadline."""

    pass


def _read_exact(sock: socket.socket, size: int, deadline: float) -> bytes:
    chunks, remaining = [], size
    while remaining:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([sock], [], [], left)[0]:
            raise Timeout()
        chunk = sock.recv(min(remaining, 1 << 20))
        if not chunk:
            raise EOFError()
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


class Worker:
    """One forked worker and the gateway's end of its socket."""

    def __init__(self, pid: int, sock: socket.socket):
        self.pid, self.sock = pid, sock

    def send(self, message: dict[str, Any]) -> None:
        payload = json.dumps(message).encode()
        self.sock.sendall(struct.pack(">I", len(payload)) + payload)

    def receive(self, deadline: float) -> dict[str, Any]:
        (size,) = struct.unpack(">I", _read_exact(self.sock, 4, deadline))
        return json.loads(_read_exact(self.sock, size, deadline + 30))

    def alive(self) -> bool:
        """False once the process has gone (its socket reads end-of-file)."""
        try:
            if not select.select([self.sock], [], [], 0)[0]:
                return True
            return self.sock.recv(1, socket.MSG_PEEK) != b""
        except OSError:
            return False

    def kill(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.sock.close()


class Parent:
    """The process that imports the handler and forks workers."""

    def __init__(self, function: Function, env: dict[str, str], pump: Callable[[str, Any], None]):
        config = {"path": [function.code_uri, *function.layers], "module": function.module,
                  "function": function.function, "account": ACCOUNT_ID}
        self.control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-u", WORKER_PROGRAM, str(theirs.fileno()), json.dumps(config)],
                env=env, cwd=function.code_uri if os.path.isdir(function.code_uri) else None,
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                pass_fds=(theirs.fileno(),), start_new_session=True,
            )
        except BaseException:
            self.control.close()
            raise
        finally:
            theirs.close()
        for stream in (self.proc.stdout, self.proc.stderr):
            threading.Thread(target=pump, args=(function.logical_id, stream), daemon=True).start()
        self.lock = threading.Lock()
        self.error: str | None = None
        self.ready = False

    def wait_ready(self, timeout: float) -> str | None:
        """None once the handler has imported; else why not."""
        if not self.initialised(timeout):
            with self.lock:
                self.error = self.error or f"init did not finish within {timeout:g}s"
        return self.error

    def initialised(self, timeout: float = 0) -> bool:
        """True once init has ended, well (``ready``) or not (``error``); waits up to ``timeout``."""
        with self.lock:
            if not self.ready and self.error is None:
                try:
                    if not select.select([self.control], [], [], timeout)[0]:
                        return False
                    message = json.loads(self.control.recv(1 << 16) or b'{"error": "exited during init"}')
                except (OSError, ValueError):
                    message = {"error": "exited during init"}
                self.ready = bool(message.get("ready"))
                self.error = None if self.ready else str(message.get("error"))
        return True

    def fork(self) -> Worker:
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with self.lock:
                self.control.settimeout(10)
                socket.send_fds(self.control, [b"w"], [theirs.fileno()])
                answer = json.loads(self.control.recv(1 << 16) or b"{}")
        except (OSError, ValueError) as exc:
            mine.close()
            raise OSError(f"the function's parent process is gone ({exc})") from None
        finally:
            theirs.close()
        if "pid" not in answer:
            mine.close()
            raise OSError(answer.get("error") or "the function's parent process is gone")
        return Worker(int(answer["pid"]), mine)

    def warm(self, learned: dict[str, list[str]]) -> None:
        """Have the parent import and read what a worker imported and read while running."""
        try:
            with self.lock:
                self.control.settimeout(30)
                self.control.send(json.dumps({"learned": learned}).encode())
                self.control.recv(1 << 16)
        except OSError:
            pass  # a parent gone is replaced on the next fork

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        self.control.close()  # the parent exits on this; its workers die with it
        if self.proc.poll() is None:
            self.proc.kill()
