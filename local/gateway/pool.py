"""Each function's execution environments, as Lambda scales them.

A function has one parent process that imports its handler once (``worker.py``), and
workers forked from it on demand: an invocation takes an idle worker, or forks a new
one while fewer than the function's concurrency exist, or waits for one to come free.
A worker runs one invocation at a time; a crash or a timeout ends that worker only.
"""

from __future__ import annotations

import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from local.gateway.processes import Parent, Timeout, Worker
from local.template import Function

INIT_TIMEOUT = 30.0  # Lambda allows 10 s of init; a loaded laptop needs more
# How long an invocation may wait for an execution environment when all `concurrency` are
# busy. Lambda would start another at once (a thousand and more, each on CPU of its own);
# here a rush queues for the ones there are, on the same few cores. The wait stands in for
# that scale-out, so API Gateway's integration timeout counts from when a worker takes the
# invocation, as it counts from when Lambda runs it; past this wait the answer is the 503
# of a timeout all the same.
QUEUE_WAIT = 120.0


@dataclass
class InvokeResult:
    """Outcome of one invocation.

    ``status``: ``ok`` (``value`` is the handler's return value), ``error`` (the handler
    raised, or its answer broke a Lambda limit; ``value`` has errorType/errorMessage),
    ``crash`` (the worker died), ``init_error`` (the module failed to import),
    ``timeout`` (the function's own timeout), ``integration_timeout`` (no answer within
    API Gateway's limit; the function runs on), or ``unavailable`` (stopping).
    """

    status: str
    value: Any = None
    pid: int | None = None


class FunctionPool:
    """Execution environments of one function: up to ``concurrency`` workers at once."""

    def __init__(self, function: Function, env: dict[str, str], concurrency: int, log: Callable[[str], None],
                 pump: Callable[[str, Any], None]):
        self.function, self.env, self.log, self.pump = function, env, log, pump
        self.concurrency = max(1, concurrency)
        self.cond = threading.Condition()
        self.idle: list[Worker] = []
        self.workers: set[Worker] = set()  # idle and busy
        self.starting = 0  # workers being forked
        self.closed = False
        self._parent: Parent | None = None
        self._parent_lock = threading.Lock()
        self._warmed = False  # the parent has imported what the first worker imported

    @property
    def name(self) -> str:
        return self.function.logical_id

    def start(self) -> None:
        """Start the parent process now, so the first request finds the handler imported."""
        self._parent_process()

    def initialised(self) -> bool:
        """True when the function's init has ended (its handler imported, or failing to)."""
        parent = self._parent
        return parent is None or parent.initialised()

    def _parent_process(self) -> Parent:
        with self._parent_lock:
            parent = self._parent
            if parent is None or not parent.alive() or parent.error is not None:
                if parent is not None:
                    parent.kill()
                parent = self._parent = Parent(self.function, self.env, self.pump)
                self._warmed = False
            return parent

    # -- taking and giving back workers

    def _acquire(self, deadline: float) -> Worker | InvokeResult:
        with self.cond:
            while True:
                if self.closed:
                    return InvokeResult("unavailable")
                while self.idle:
                    worker = self.idle.pop()
                    if worker.alive():
                        return worker
                    self.log(f"{self.name}: worker {worker.pid} exited while idle; replacing it")
                    self._forget(worker)
                if len(self.workers) + self.starting < self.concurrency:
                    self.starting += 1
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    return InvokeResult("integration_timeout")
                self.cond.wait(left)
        try:
            return self._new_worker(deadline)
        finally:
            with self.cond:
                self.starting -= 1
                self.cond.notify()

    def _new_worker(self, deadline: float) -> Worker | InvokeResult:
        for _attempt in range(2):  # a parent killed from outside is replaced once
            try:
                parent = self._parent_process()
            except OSError as exc:
                return InvokeResult("init_error", f"could not start the function: {exc}")
            error = parent.wait_ready(min(INIT_TIMEOUT, max(1.0, deadline - time.monotonic())))
            if error is not None:
                self.log(f"{self.name}: handler {self.function.handler} failed to initialise: {error}")
                with self._parent_lock:
                    if self._parent is parent:
                        self._parent = None
                parent.kill()
                return InvokeResult("init_error", error)
            try:
                worker = parent.fork()
            except OSError as exc:
                self.log(f"{self.name}: {exc}; starting it again")
                continue
            with self.cond:
                if self.closed:
                    worker.kill()
                    return InvokeResult("unavailable")
                self.workers.add(worker)
            return worker
        return InvokeResult("crash", "could not fork a worker")

    def _warm(self, learned: dict[str, list[str]]) -> None:
        with self._parent_lock:
            parent = self._parent
        if parent is not None and not self._warmed:
            self._warmed = True
            threading.Thread(target=parent.warm, args=(learned,), daemon=True).start()

    def _forget(self, worker: Worker) -> None:
        worker.kill()
        with self.cond:
            self.workers.discard(worker)
            self.cond.notify()

    def _release(self, worker: Worker) -> None:
        with self.cond:
            if self.closed or worker not in self.workers:
                worker.kill()
                return
            self.idle.append(worker)
            self.cond.notify()

    # -- invoking

    def invoke(self, event: dict[str, Any], request_id: str | None = None, within: float | None = None) -> InvokeResult:
        """Run ``event`` on a worker. ``within``: seconds the caller waits for the answer once
        a worker has it (API Gateway's integration timeout; waiting for a worker is bounded by
        ``QUEUE_WAIT``); the invocation itself runs to the function's own timeout, as in
        Lambda, and its worker is then reused."""
        timeout = float(self.function.timeout)
        worker = self._acquire(time.monotonic() + (QUEUE_WAIT if within is not None else timeout + INIT_TIMEOUT))
        if isinstance(worker, InvokeResult):
            return worker
        answer_by = time.monotonic() + (within if within is not None else timeout + INIT_TIMEOUT)
        function_deadline = time.monotonic() + timeout
        try:
            worker.send({"event": event, "request_id": request_id or str(uuid.uuid4()), "timeout_ms": int(timeout * 1000)})
        except OSError:
            self._forget(worker)
            return InvokeResult("crash", pid=worker.pid)
        if answer_by < function_deadline:
            try:
                return self._answer(worker, answer_by, final=False)
            except Timeout:
                threading.Thread(target=self._answer, args=(worker, function_deadline), daemon=True).start()
                return InvokeResult("integration_timeout", pid=worker.pid)
        return self._answer(worker, function_deadline)

    def _answer(self, worker: Worker, deadline: float, final: bool = True) -> InvokeResult:
        try:
            message = worker.receive(deadline)
        except Timeout:
            if not final:
                raise
            self.log(f"{self.name}: task timed out after {self.function.timeout} seconds; killing worker {worker.pid}")
            self._forget(worker)
            return InvokeResult("timeout", pid=worker.pid)
        except (EOFError, OSError, ValueError):
            if self.closed:
                return InvokeResult("unavailable", pid=worker.pid)
            self.log(f"{self.name}: worker {worker.pid} exited")
            self._forget(worker)
            return InvokeResult("crash", pid=worker.pid)
        self._release(worker)
        if message.get("learned"):
            self._warm(message["learned"])
        if message.get("ok"):
            return InvokeResult("ok", message.get("result"), pid=worker.pid)
        return InvokeResult("error", {k: message.get(k) for k in ("errorType", "errorMessage")}, pid=worker.pid)

    def pids(self) -> set[int]:
        """The workers' process ids."""
        with self.cond:
            return {w.pid for w in self.workers}

    def processes(self) -> set[int]:
        """Every process of the function: its parent and its workers."""
        parent = self._parent
        return self.pids() | ({parent.proc.pid} if parent is not None else set())

    def close(self) -> None:
        """Kill every worker and the parent; waiting invocations answer ``unavailable``."""
        with self.cond:
            self.closed = True
            workers = list(self.workers)
            self.workers.clear()
            self.idle.clear()
            self.cond.notify_all()
        for worker in workers:
            worker.kill()
        with self._parent_lock:
            parent, self._parent = self._parent, None
        if parent is not None:
            parent.kill()
            try:
                parent.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
