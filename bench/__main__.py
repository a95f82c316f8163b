"""`make bench`: run every benchmark and print its table (README, "Performance")."""

from __future__ import annotations

import os
import platform

from bench import (
    bench_catalogue, bench_checkout, bench_coldstart, bench_gate, bench_standin, bench_tickets, bench_webhook, capacity, waiting_room_sim,
)
from bench.common import setup


def main() -> None:
    setup()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    for module in (bench_catalogue, bench_checkout, bench_tickets, bench_gate, bench_webhook, capacity, waiting_room_sim,
                   bench_standin, bench_coldstart):
        print(module.run())


if __name__ == "__main__":
    main()
