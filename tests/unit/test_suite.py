"""The suite's own set-up holds: `make test` runs with `--dist loadgroup`, and the tests that
must not share a worker's time with each other (the load group, the least-privilege scenario,
the hostile corpus, the browser journeys) rely on `xdist_group` keeping each group on one worker."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.xdist_group("suite")


def test_xdist_groups_keep_their_tests_on_one_worker(request):
    """pytest 9.2 with xdist 3.8 dropped the group from the node id, and with it the grouping
    (pytest-dev/pytest-xdist#1386): every group's module fixture started on both workers and
    the load tests ran at the same time as each other. requirements-dev.txt pins pytest 9.1.1."""
    if not getattr(request.config.option, "loadgroup", False):
        pytest.skip("not run with --dist loadgroup")
    assert request.node.nodeid.endswith("@suite"), request.node.nodeid
