"""Shared test set-up: the environment a function sees, helpers to load functions, and the
fixtures unit and integration tests both use (over each side's own `api` and `stack`; the
helpers behind them are in tests/shop.py).

Every test makes its own ids, so tests can run in any order."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# The environment every function gets (template.yaml's Globals), before any import.
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SECURITY_TOKEN": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "TABLE_NAME": "ticketing-test",
        "STRIPE_SECRET_NAME": "ticketing/test/stripe",
        "ADMISSION_SECRET_NAME": "ticketing/test/admission",
        "STRIPE_PUBLISHABLE_KEY": "pk_test_unit",
        "POWERTOOLS_SERVICE_NAME": "ticketing",
        "POWERTOOLS_METRICS_NAMESPACE": "Ticketing",
        "POWERTOOLS_METRICS_DISABLED": "true",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        "POWERTOOLS_PARAMETERS_MAX_AGE": "0",
    }
)
os.environ.pop("AWS_ENDPOINT_URL", None)
for extra in (ROOT, ROOT / "layers/common/python"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

# moto's `mock_aws` gives every test a new default boto3 session, and each new session parsed
# botocore's JSON again (the endpoints, each service's model): a quarter of the unit tests'
# CPU. Parsed once per test process instead, as the local Lambda workers do.
from local.gateway.worker import share_botocore_data  # noqa: E402

share_botocore_data()


def load_function(name: str):
    """Import functions/<name>/app.py under a unique module name (they are all `app`)."""
    path = ROOT / "functions" / name / "app.py"
    spec = importlib.util.spec_from_file_location(f"function_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def make_event(api):
    """An event on sale with the given ticket types, made by one organiser:
    `make_event({"GA": (2500, 40)})` answers (event_id, {"GA": type_id}) (tests/shop.py).
    `api` is each side's own: tests/unit/conftest.py's or tests/integration/conftest.py's.
    A waiting room made with one is turned off when the test ends: the admission job
    steps every room that is on, every second, for as long as the stack runs."""
    from tests import shop

    admin = api.token(["admin"])
    rooms = []

    def make(types, **event_fields):
        made = shop.make_event(api, types, admin=admin, **event_fields)
        if event_fields.get("waiting_room"):
            rooms.append(made[0])
        return made

    yield make
    for event_id in rooms:
        answer = api.patch(f"/api/events/{event_id}/", token=admin, json={"waiting_room": {"enabled": False}})
        assert answer.status_code in (200, 409), answer.text  # 409: canceled, and so taken off already


@pytest.fixture
def scanner(api):
    """A token for gate staff (the `scanner` group)."""
    import uuid

    return api.token(["scanner"], sub=f"scanner-{uuid.uuid4().hex[:6]}")


@pytest.fixture
def event_and_order(api, make_event):
    """A fresh event with two types and a pending order for 2 + 1 tickets by a customer
    whose name needs quoting in a mail header: {event_id, types, sub, token, order}."""
    import uuid

    from tests import shop

    event_id, types = make_event({"GA": (2500, 30), "VIP": (9000, 5)})
    sub = f"payer-{uuid.uuid4().hex[:6]}"
    token = api.token([], sub=sub, email=f"{sub}@example.com", name="O'Brien, \"Jo\" Ünïcode")
    order = shop.buy(api, token, event_id, [(types["GA"], 2), (types["VIP"], 1)]).json()
    return {"event_id": event_id, "types": types, "sub": sub, "token": token, "order": order}


def pytest_terminal_summary(terminalreporter, config):
    """The random order's seed, even under -q, so a failing order can be run again."""
    seed = getattr(config.option, "randomly_seed", None)
    if seed is not None:
        terminalreporter.write_line(f"random order: --randomly-seed={seed}")
