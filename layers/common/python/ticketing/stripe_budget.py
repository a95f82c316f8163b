"""Stripe's rate as a budget every function instance shares.

Stripe answers 429 past its limits (100 requests a second per account in live mode, 25 in test
mode, and about 25 a second on some endpoints such as PaymentIntent creation). Instances
cannot see each other, so the budget lives in the table: one counter per second for each
endpoint and one for each pool, each split into shards so that a rush of refused requests
(each a failed conditional write) spreads its writes over several partitions.

Two pools share the total: `foreground` (checkout, a customer's cancel) and `background`
(expiry's cancels, refunds, the webhook's reads), which keeps
`STRIPE_RATE_BACKGROUND_PERCENT` of it, so a rush cannot starve background work and
background work cannot take checkout's share. An endpoint's counter is shared by both pools.

`take(endpoint)` spends one request of the current second or raises DependencyUnavailable
(503, Retry-After: 1) without calling Stripe. Checkout takes its token before it holds a seat.
"""

from __future__ import annotations

import random

from pynamodb.exceptions import UpdateError

from ticketing import clock
from ticketing.config import settings
from ticketing.errors import DependencyUnavailable
from ticketing.table import RateCounterItem

SHARDS = 16  # at most; a counter with a smaller limit has one shard per request it allows
TRIES = 2  # shards tried before refusing
TTL_SECONDS = 60

FOREGROUND = "foreground"
BACKGROUND = "background"


def pool_limit(pool: str) -> int:
    conf = settings()
    background = max(1, conf.stripe_rate_total * conf.stripe_rate_background_percent // 100)
    return background if pool == BACKGROUND else max(1, conf.stripe_rate_total - background)


def allowance(endpoint: str, pool: str = FOREGROUND) -> int:
    """Requests a second `endpoint` may make from `pool` at most."""
    return min(settings().stripe_rate_per_endpoint, pool_limit(pool))


def _shard_caps(limit: int) -> list[int]:
    count = max(1, min(SHARDS, limit))
    base, extra = divmod(limit, count)
    return [base + (1 if k < extra else 0) for k in range(count)]


def _spend(counter: str, limit: int, second: int) -> bool:
    caps = _shard_caps(limit)
    for shard in random.sample(range(len(caps)), min(TRIES, len(caps))):
        try:
            RateCounterItem(*RateCounterItem.key(counter, second, shard)).update(
                actions=[RateCounterItem.used.add(1), RateCounterItem.ttl.set(second + TTL_SECONDS)],
                condition=RateCounterItem.used.does_not_exist() | (RateCounterItem.used < caps[shard]),
            )
            return True
        except UpdateError as exc:
            if exc.cause_response_code != "ConditionalCheckFailedException":
                raise DependencyUnavailable("The payment budget could not be checked; try again.", retry_after=1,
                                            code="stripe_budget_unavailable") from exc
    return False


def _now() -> int:
    return int(clock.now().timestamp())


def take(endpoint: str, pool: str = FOREGROUND) -> None:
    """Spend one Stripe request of this second on `endpoint` from `pool`, or raise
    DependencyUnavailable (503, Retry-After: 1) when the budget is spent."""
    second = _now()
    if not (_spend(f"ep#{endpoint}", settings().stripe_rate_per_endpoint, second)
            and _spend(f"pool#{pool}", pool_limit(pool), second)):
        raise DependencyUnavailable(
            "Too many payments are being started right now; try again in a moment.", retry_after=1, code="stripe_budget",
        )
