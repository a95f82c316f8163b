"""A small soak on the worker's stack: 64 buyers at once for fewer seats, every checkout
answered 201 or 409 within API Gateway's 30 s, and the whole sale's invariants hold
(bench/soak.py runs the full one: `make soak`)."""

from __future__ import annotations

import pytest

from bench import soak

# The rush and the soak load the machine: on one test worker, one after the other.
pytestmark = pytest.mark.xdist_group("load")


def test_a_small_sale_keeps_every_invariant(stack):
    report = soak.run(stack, buyers=64, seats=40)
    print(report.render())
    assert report.invariants and report.ok, report.render()
    assert report.counts["orders paid"] > 0 and any(k.startswith("checkout 409") for k in report.counts), report.render()
