"""Integration tests: HTTP against the real local stack (moto server, localstripe, the
gateway), started once per test module on free ports so a running `make dev` does not
clash, and stopped at the end of the module. (One stack per module keeps each table
small: moto answers an index query by scanning the whole table.)"""

from __future__ import annotations

import uuid

import pytest
import requests

from local.ports import free_port
from local.stack import Stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    instance = Stack(
        api_port=free_port(), stripe_port=free_port(), aws_port=free_port(),
        state_dir=tmp_path_factory.mktemp("stack"), quiet=True, workers=2, schedule_seconds=15,
        # Small shards so small test capacities spread over several; a low hold cap to reach it.
        extra_env={"INVENTORY_SHARD_SIZE": "10", "MAX_HELD_PER_CUSTOMER": "12"},
    )
    instance.start()
    yield instance
    instance.stop()


class Api:
    """A small client: `api.get(path, token=...)` answers the `requests.Response`."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.session = requests.Session()

    def request(self, method: str, path: str, token: str | None = None, **kwargs) -> requests.Response:
        headers = kwargs.pop("headers", {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return self.session.request(method, self.stack.api_url + path, headers=headers, timeout=30, **kwargs)

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs) -> requests.Response:
        return self.request("POST", path, **kwargs)

    def token(self, groups: list[str] | None = None, **claims) -> str:
        sub = claims.pop("sub", f"user-{uuid.uuid4().hex[:8]}")
        return self.stack.token(sub, groups, **claims)


@pytest.fixture(scope="module")
def api(stack):
    return Api(stack)


@pytest.fixture
def make_event(api):
    """An event on sale with the given ticket types: `make_event({"GA": (2500, 40)})`."""
    from datetime import datetime, timedelta, timezone

    admin = api.token(["admin"])

    def make(types: dict[str, tuple[int, int]], **event_fields):
        start = datetime.now(timezone.utc) + timedelta(days=7)
        body = {
            "name": f"Test {uuid.uuid4().hex[:6]}", "venue": "Hall", "currency": "usd",
            "starts_at": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "ends_at": (start + timedelta(hours=4)).strftime("%Y-%m-%dT%H:%M:%SZ"), **event_fields,
        }
        event = api.post("/api/events/", token=admin, json=body)
        assert event.status_code == 201, event.text
        event_id = event.json()["id"]
        made = {}
        for name, (price, capacity) in types.items():
            answer = api.post(f"/api/events/{event_id}/ticket-types/", token=admin,
                              json={"name": name, "price_cents": price, "capacity": capacity, "max_per_order": 10})
            assert answer.status_code == 201, answer.text
            made[name] = answer.json()["id"]
        return event_id, made

    return make
