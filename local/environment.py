"""Environment variables set for a block, for the tools and benchmarks that load functions
in their own process (tests use pytest's monkeypatch)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def overriding(values: dict[str, str], reread: Callable[[], None] = lambda: None) -> Iterator[None]:
    """`values` in os.environ for the block, the previous values (or their absence) after
    it; `reread` runs after each change (to drop caches of what was read from it)."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    reread()
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        reread()
