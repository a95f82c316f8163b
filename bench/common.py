"""Helpers the benchmarks share: timing, fresh-interpreter import costs, AWS call counts."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def median_ms(run: Callable[[], object], repeat: int = 50, warmup: int = 3) -> float:
    for _ in range(warmup):
        run()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def import_ms(code: str, paths: list[Path], repeat: int = 5, env: dict[str, str] | None = None) -> float:
    """Median wall time of `python -c code` in a fresh interpreter, minus an empty one."""

    def once(source: str) -> float:
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c", source], check=True,
            env={**os.environ, **(env or {}), "PYTHONPATH": os.pathsep.join(map(str, paths))},
        )
        return (time.perf_counter() - start) * 1000

    empty = statistics.median(once("pass") for _ in range(repeat))
    return statistics.median(once(code) for _ in range(repeat)) - empty


@contextmanager
def count_aws_calls() -> Iterator[Counter]:
    """Count every AWS API call botocore makes (service.Operation) inside the block."""
    from botocore.session import Session

    calls: Counter = Counter()

    def hook(model, **_kwargs):
        calls[f"{model.service_model.service_name}.{model.name}"] += 1

    original = Session.create_client

    def create_client(self, *args, **kwargs):
        client = original(self, *args, **kwargs)
        client.meta.events.register("before-call", hook)
        return client

    Session.create_client = create_client
    try:
        yield calls
    finally:
        Session.create_client = original


def table(rows: list[tuple[str, str]], title: str) -> str:
    width = max(len(name) for name, _ in rows)
    lines = [f"\n{title}", f"| {'measure'.ljust(width)} | value |", f"|{'-' * (width + 2)}|-------|"]
    lines += [f"| {name.ljust(width)} | {value} |" for name, value in rows]
    return "\n".join(lines)
