"""A small soak on the session's stack: the whole sale's invariants hold (bench/soak.py
runs the full one: `make soak`)."""

from __future__ import annotations

from bench import soak


def test_a_small_sale_keeps_every_invariant(stack):
    report = soak.run(stack, buyers=40, seats=30, workers=8)
    print(report.render())
    assert report.invariants and report.ok, report.render()
    assert report.counts["orders paid"] > 0 and any(k.startswith("checkout 409") for k in report.counts), report.render()
