"""Helpers the benchmarks share: timing, AWS call counts, settings, tables."""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TABLE = "bench"
STRIPE_SECRET = "bench/stripe"


def setup() -> None:
    """One environment for every benchmark in this process (settings are read once)."""
    sys.path[:0] = [str(ROOT), str(ROOT / "layers/common/python")]
    import tests.conftest  # noqa: F401  (the unit-test environment; ours goes on top)

    os.environ.update(
        {
            "TABLE_NAME": TABLE, "STRIPE_SECRET_NAME": STRIPE_SECRET, "POWERTOOLS_LOG_LEVEL": "ERROR",
            "POWERTOOLS_METRICS_DISABLED": "true", "MAX_HELD_PER_CUSTOMER": "10000",
        }
    )


def create_table_and_secrets() -> None:
    """Inside `mock_aws`: the table from template.yaml's key schema and the Stripe secret,
    under the names the environment gives (`setup`'s, or the unit tests' under pytest)."""
    import json

    import boto3

    from local.template import load_template

    table = os.environ.get("TABLE_NAME", TABLE)
    boto3.client("dynamodb").create_table(TableName=table, **load_template(ROOT / "template.yaml").table_definition())
    boto3.client("secretsmanager").create_secret(
        Name=os.environ.get("STRIPE_SECRET_NAME", STRIPE_SECRET),
        SecretString=json.dumps({"publishable_key": "pk_test_b", "secret_key": "sk_test_bench", "webhook_secret": "whsec_b"}),
    )


def median_ms(run: Callable[[], object], repeat: int = 50, warmup: int = 3) -> float:
    for _ in range(warmup):
        run()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


@contextmanager
def count_aws_calls() -> Iterator[Counter]:
    """Count every AWS API call any botocore client makes (service.Operation) in the block
    (`bench.recorder`, calls only)."""
    from bench.recorder import Recorder, recording

    with recording(Recorder(units=False)) as rec:
        yield rec.counts


def calls_text(calls: Counter, service: str | None = None) -> str:
    """"GetItem x1, PutItem x2" for the counted calls (of one service, if given)."""
    shown = [(key.split(".")[1], n) for key, n in sorted(calls.items()) if service is None or key.startswith(f"{service}.")]
    return ", ".join(f"{operation} x{n}" for operation, n in shown) or "none"


def moto_item(table: str, key: dict[str, Any]) -> dict[str, Any] | None:
    """An item as moto in process holds it, in DynamoDB JSON (what a consistent GetItem
    answers), read from moto's backend without a request: the recorder's item images
    (`Recorder(read_item=moto_item)`), which otherwise are most of a model's requests."""
    import copy

    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.dynamodb.models import dynamodb_backends

    region = os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or "us-east-1"
    item = dynamodb_backends[DEFAULT_ACCOUNT_ID][region].get_item(table, key)
    return copy.deepcopy(item.to_json()["Attributes"]) if item is not None else None


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """One benchmark's own settings, read afresh; the shared environment comes back after."""
    from aws_lambda_powertools.utilities import parameters

    from local.environment import overriding
    from ticketing import config, tickets

    def reread() -> None:
        config.settings.cache_clear()
        parameters.clear_caches()
        tickets.reset_client()

    with overriding(values, reread):
        yield


def table(rows: list[tuple[str, str]], title: str) -> str:
    width = max(len(name) for name, _ in rows)
    lines = [f"\n{title}", f"| {'measure'.ljust(width)} | value |", f"|{'-' * (width + 2)}|-------|"]
    lines += [f"| {name.ljust(width)} | {value} |" for name, value in rows]
    return "\n".join(lines)
