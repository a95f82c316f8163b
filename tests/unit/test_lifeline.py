"""A stand-in whose parent dies exits, even when its own clean shutdown hangs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from tests.conftest import ROOT
from tests.integration.support import alive, wait_for

# A parent that starts a child and prints its pid; the child ignores SIGTERM (a clean
# shutdown that never finishes) and would otherwise sleep for a minute.
PARENT = """
import subprocess, sys
child = subprocess.Popen([sys.executable, "-c", CHILD])
print(child.pid, flush=True)
sys.stdin.read()
"""
CHILD = """
import signal, time
from local.lifeline import exit_with_parent
signal.signal(signal.SIGTERM, lambda *_: None)
exit_with_parent(interval=0.1)  # SIGKILL after the default grace
print("ready", flush=True)  # to the parent's stdout, which it shares
time.sleep(60)
"""


def test_a_process_whose_parent_died_exits_even_if_it_ignores_sigterm():
    parent = subprocess.Popen(
        [sys.executable, "-c", f"CHILD = {CHILD!r}\n{PARENT}"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, text=True,
    )
    child = int(parent.stdout.readline())
    try:
        assert parent.stdout.readline().strip() == "ready"  # the child's lifeline is watching
        assert alive(child)
        parent.kill()
        parent.wait(timeout=10)
        assert wait_for(lambda: not alive(child), timeout=10)
    finally:
        if alive(child):
            os.kill(child, signal.SIGKILL)
