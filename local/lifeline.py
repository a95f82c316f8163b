"""Processes of the local stack end when whatever started them ends.

A stand-in whose parent died (a test runner killed, a terminal closed) would otherwise
run on, holding its port and its children, until someone finds it."""

from __future__ import annotations

import os
import signal
import threading
import time


GRACE_SECONDS = 5.0  # a clean shutdown that takes longer than this (a request in flight, a hung thread) is cut short


def exit_with_parent(interval: float = 0.5, grace: float = GRACE_SECONDS) -> None:
    """Send this process SIGTERM (its own clean shutdown) once its parent has gone, and
    SIGKILL if it is still running `grace` seconds later (its own children die with it:
    the gateway's function processes ask the kernel for that)."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(grace)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="lifeline", daemon=True).start()
