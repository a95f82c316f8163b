"""Processes of the local stack end when whatever started them ends.

A stand-in whose parent died (a test runner killed, a terminal closed) would otherwise
run on, holding its port and its children, until someone finds it."""

from __future__ import annotations

import os
import signal
import threading
import time


def exit_with_parent(interval: float = 0.5) -> None:
    """Send this process SIGTERM (its own clean shutdown) once its parent has gone."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="lifeline", daemon=True).start()
