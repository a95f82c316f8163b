"""What integration tests share besides fixtures: the HTTP client, the stand-ins' switches,
waiting for what can be observed, and reading the stack's table as it is."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

from local import stack as stack_module
from local.stack import Stack
from tests.shop import stripe_events  # noqa: F401 - for the modules that import it from here


class Api:
    """A small client: `api.get(path, token=...)` answers the `requests.Response`."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.session = requests.Session()
        self.session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=64))

    def request(self, method: str, path: str, token: str | None = None, **kwargs) -> requests.Response:
        headers = kwargs.pop("headers", {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return self.session.request(method, self.stack.api_url + path, headers=headers, timeout=30, **kwargs)

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs) -> requests.Response:
        return self.request("POST", path, **kwargs)

    def patch(self, path: str, **kwargs) -> requests.Response:
        return self.request("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs) -> requests.Response:
        return self.request("DELETE", path, **kwargs)

    def token(self, groups: list[str] | None = None, **claims) -> str:
        sub = claims.pop("sub", f"user-{uuid.uuid4().hex[:8]}")
        return self.stack.token(sub, groups, **claims)


class StackUnderTest(Stack):
    """The local stack with what tests/shop.py asks of a stack besides its own (the unit
    world, tests/unit/world.py, answers the same questions in process)."""

    table = stack_module.TABLE
    stripe_keys = stack_module.STRIPE_KEYS

    def payment_confirmed(self, order: dict, confirmed: requests.Response) -> None:
        """Nothing to do: the Stripe stand-in delivers the signed webhook to the gateway itself."""

    def eventually(self, check: Callable[[], Any]) -> Any:
        """Webhooks, queues and schedules finish in the background here: `wait_for(check)`."""
        return wait_for(check)

    @classmethod
    @contextmanager
    def running(cls, state_dir: Path, **settings: Any) -> Iterator[StackUnderTest]:
        """A stack on free ports with `settings`, started for the block and stopped after it
        whatever happens."""
        from local.ports import free_port

        instance = cls(api_port=free_port(), stripe_port=free_port(), aws_port=free_port(), state_dir=state_dir, **settings)
        try:
            instance.start()
            yield instance
        finally:
            instance.stop()

    def mail(self) -> list[dict[str, Any]]:
        """Every email SES accepted (the AWS stand-in's `/_local/mail`), those with a body."""
        messages = requests.get(f"{self.aws_url}/_local/mail", timeout=10).json()["messages"]
        return [message for message in messages if message["raw"]]


class StandIn:
    """A stand-in's switch: call it to switch something on, `clear()` to switch all off,
    `hits()` for how often each rule has been met so far (a marker that something tried)."""

    def __init__(self, inject: Callable[..., None], url: str) -> None:
        self._inject, self.url = inject, url

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        self._inject(*args, **kwargs)

    def clear(self) -> None:
        requests.delete(self.url, timeout=5).raise_for_status()

    def hits(self) -> int:
        return sum(rule.get("hits", 0) for rule in requests.get(self.url, timeout=5).json()["faults"])


def wait_for(check: Callable[[], Any], timeout: float = 30.0, interval: float = 0.2) -> Any:
    """Call `check` until it answers something true, or `timeout` seconds pass; its last answer."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def queue_drained(stack: Stack, logical_id: str) -> bool:
    """True when a queue holds no message, visible or in flight."""
    sqs = stack.client("sqs")
    url = sqs.get_queue_url(QueueName=logical_id)["QueueUrl"]
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"]) == 0


def descendants(root: int) -> list[int]:
    """The process ids of everything `root` started, and what they started, and so on."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError):
            continue
    found, frontier = [], [root]
    while frontier:
        current = frontier.pop()
        kids = [pid for pid, parent in parents.items() if parent == current]
        found += kids
        frontier += kids
    return found


def alive(pid: int) -> bool:
    """True while the process runs (a zombie has finished)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
