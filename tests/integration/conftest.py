"""Integration tests: HTTP against the real local stack (moto server, localstripe, the
gateway), started once per test session on free ports so a running `make dev` does
not clash, and stopped at the end."""

from __future__ import annotations

import uuid

import pytest
import requests

from local.ports import free_port
from local.stack import Stack


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    instance = Stack(
        api_port=free_port(), stripe_port=free_port(), aws_port=free_port(),
        state_dir=tmp_path_factory.mktemp("stack"), quiet=True, workers=2, schedule_seconds=2,
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


@pytest.fixture(scope="session")
def api(stack):
    return Api(stack)
