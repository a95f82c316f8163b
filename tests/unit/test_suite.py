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


def test_the_environments_packages_have_their_bytecode():
    """`make` installs with `uv pip install --compile-bytecode`. Without it, where
    PYTHONDONTWRITEBYTECODE is set, every process the suite starts compiled its imports from
    source: 44 % of the local functions' CPU. An environment made before that: `rm -rf .venvs`."""
    import importlib.util
    from pathlib import Path

    import aws_lambda_powertools.event_handler.api_gateway as resolver
    import botocore.client
    import moto.dynamodb.models
    import pydantic.main

    missing = [module.__name__ for module in (resolver, botocore.client, moto.dynamodb.models, pydantic.main)
               if not Path(importlib.util.cache_from_source(module.__file__)).exists()]
    assert not missing, f"no bytecode for {missing}: the environment was installed without --compile-bytecode"
