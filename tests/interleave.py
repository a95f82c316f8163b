"""Deterministic interleavings: run operations in threads, one at a time, switching only
at the lifecycle's checkpoints (`ticketing.lifecycle.writes.checkpoint`, a no-op in
production), in every order their reads and writes can take.

    runner = Interleaver()
    for plan in runner.plans({"refund": 5, "checkin": 2}):   # segments per operation
        ...fresh state...
        results = runner.run({"refund": do_refund, "checkin": do_checkin}, plan)

A plan like "AABAB" lets the first operation run to its next checkpoint twice, then the
second once, and so on; an operation that finished is skipped; after the plan every
operation still running is finished in turn.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from typing import Any

from ticketing.lifecycle import writes


class Outcome:
    def __init__(self, value: Any = None, error: BaseException | None = None) -> None:
        self.value, self.error = value, error

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def code(self) -> str | None:
        return (getattr(self.error, "fields", None) or {}).get("code") if self.error is not None else None

    def __repr__(self) -> str:
        return f"ok({self.value!r})" if self.ok else f"error({type(self.error).__name__}: {self.code})"


class Interleaver:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._running: str | None = None
        self._done: set[str] = set()
        self._local = threading.local()
        self.trace: list[tuple[str, str]] = []

    def _hook(self, name: str, **_: Any) -> None:
        me = getattr(self._local, "name", None)
        if me is None:
            return
        with self._cond:
            self.trace.append((me, name))
            self._running = None
            self._cond.notify_all()
            self._cond.wait_for(lambda: self._running == me)

    def segments(self, operation: Callable[[], Any]) -> int:
        """How many pieces `operation` runs in, alone (its checkpoints + 1)."""
        self.run({"solo": operation}, "")
        return len(self.trace) + 1

    @staticmethod
    def plans(segments: dict[str, int]) -> Iterator[str]:
        """Every interleaving of the operations' segments (as strings of their names' order)."""
        names = list(segments)
        total = sum(segments.values())
        slots = list(range(total))
        if len(names) != 2:
            raise ValueError("two operations at a time")
        a, b = names
        for chosen in itertools.combinations(slots, segments[a]):
            yield "".join(a[0] if i in chosen else b[0] for i in slots)

    def run(self, operations: dict[str, Callable[[], Any]], plan: str, timeout: float = 60) -> dict[str, Outcome]:
        self.trace, self._done, self._running = [], set(), None
        results: dict[str, Outcome] = {}
        by_letter = {name[0]: name for name in operations}

        def body(name: str, operation: Callable[[], Any]) -> None:
            self._local.name = name
            with self._cond:
                self._cond.wait_for(lambda: self._running == name)
            try:
                results[name] = Outcome(operation())
            except Exception as exc:  # noqa: BLE001 - the outcome is the point
                results[name] = Outcome(error=exc)
            finally:
                with self._cond:
                    self._done.add(name)
                    self._running = None
                    self._cond.notify_all()

        threads = [threading.Thread(target=body, args=(name, op), daemon=True) for name, op in operations.items()]
        writes.set_hook(self._hook)
        try:
            for thread in threads:
                thread.start()
            order = [by_letter[letter] for letter in plan] + list(operations) * 1000
            for name in order:
                if len(self._done) == len(operations):
                    break
                if name in self._done:
                    continue
                with self._cond:
                    self._running = name
                    self._cond.notify_all()
                    if not self._cond.wait_for(lambda: self._running is None, timeout=timeout):
                        raise TimeoutError(f"{name} did not reach a checkpoint within {timeout} s")
        finally:
            writes.set_hook(None)
        for thread in threads:
            thread.join(timeout)
        return results
