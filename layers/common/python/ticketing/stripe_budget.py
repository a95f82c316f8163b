"""Stripe's rate as a budget every function instance shares.

Stripe answers 429 past its limits (100 requests a second per account in live mode, 25 in test
mode, and about 25 a second on some endpoints such as PaymentIntent creation). Instances
cannot see each other, so the budget lives in the table: one counter per second for each
endpoint and one for each pool, each split into up to SHARDS items (`shard_caps`). A request
reads SAMPLE of them (one eventually consistent BatchGetItem) and spends from the one with
the most room with a conditional write, so a rush of refused requests costs reads spread over
several partitions, and never a request past the limit.

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
from ticketing.lifecycle.writes import condition_failed
from ticketing.table import RateCounterItem

SHARDS = 8  # at most; a counter with a smaller limit has one shard per request it allows
SAMPLE = 4  # shards read (eventually consistent, one BatchGetItem) before spending from one
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


def shard_caps(limit: int) -> list[int]:
    """How a counter's `limit` a second is split over its shards (adding up to it exactly)."""
    count = max(1, min(SHARDS, limit))
    base, extra = divmod(limit, count)
    return [base + (1 if k < extra else 0) for k in range(count)]


def _spend(counter: str, limit: int, second: int) -> bool:
    """One request from a shard of `counter` that has room, or False when none of those read
    has. A refused request only reads (half a unit per shard); a stale read costs at most a
    failed conditional write, never a request past the limit."""
    caps = shard_caps(limit)
    sampled = random.sample(range(len(caps)), min(SAMPLE, len(caps)))
    keys = {RateCounterItem.key(counter, second, k): k for k in sampled}
    used = {keys[(item.PK, item.SK)]: int(item.used or 0) for item in RateCounterItem.batch_get(list(keys), consistent_read=False)}
    room = sorted((caps[k] - used.get(k, 0), k) for k in sampled)
    for free, shard in reversed(room[-2:]):
        if free <= 0:
            break
        try:
            RateCounterItem(*RateCounterItem.key(counter, second, shard)).update(
                actions=[RateCounterItem.used.add(1), RateCounterItem.ttl.set(second + TTL_SECONDS)],
                condition=RateCounterItem.used.does_not_exist() | (RateCounterItem.used < caps[shard]),
            )
            return True
        except UpdateError as exc:
            if not condition_failed(exc):
                raise DependencyUnavailable("The payment budget could not be checked; try again.", retry_after=1,
                                            code="stripe_budget_unavailable") from exc
    return False


EDGE_SECONDS = 0.5  # a call made this close to a second's end may reach Stripe in the next (0.2 s was too little at 200 checkouts at once on 2 cores)


def _now() -> int:
    return int(clock.now().timestamp())


def _take_at(second: int, endpoint: str, pool: str) -> None:
    if not (_spend(f"ep#{endpoint}", settings().stripe_rate_per_endpoint, second)
            and _spend(f"pool#{pool}", pool_limit(pool), second)):
        raise DependencyUnavailable(
            "Too many payments are being started right now; try again in a moment.", retry_after=1, code="stripe_budget",
        )


def take(endpoint: str, pool: str = FOREGROUND) -> int:
    """Spend one Stripe request of this second on `endpoint` from `pool`, or raise
    DependencyUnavailable (503, Retry-After: 1) when the budget is spent. Returns the second
    spent (for `still`)."""
    second = _now()
    _take_at(second, endpoint, pool)
    return second


def still(second: int, endpoint: str, pool: str = FOREGROUND) -> None:
    """Right before calling Stripe with a request taken at `second`: if the clock has moved
    on to another second, spend one of the new second too; and if the call is within
    EDGE_SECONDS of its second's end, spend one of the next second as well, since Stripe may
    stamp it there. So the calls Stripe sees in any second were all counted in that second
    (raises as `take` does; the caller gives back what it held)."""
    now = clock.now().timestamp()
    current = int(now)
    if current != second:
        _take_at(current, endpoint, pool)
    if now - current >= 1 - EDGE_SECONDS:
        _take_at(current + 1, endpoint, pool)


def exhaust(endpoint: str) -> None:
    """Stripe answered 429 on `endpoint`: it counts more than this budget did (the account's
    other clients, its own second boundaries). Spend what is left of this second's and the
    next one's budget for it, so no instance calls Stripe again before then and the waiting
    room, which watches how full the budget runs, slows its admissions. Only the shards a
    read shows with room are written, so a burst of 429s costs reads after the first."""
    caps = shard_caps(settings().stripe_rate_per_endpoint)
    now = _now()
    keys = [RateCounterItem.key(f"ep#{endpoint}", second, k) for second in (now, now + 1) for k in range(len(caps))]
    used = {(item.PK, item.SK): int(item.used or 0) for item in RateCounterItem.batch_get(keys, consistent_read=False)}
    for second in (now, now + 1):
        for shard, cap in enumerate(caps):
            key = RateCounterItem.key(f"ep#{endpoint}", second, shard)
            if used.get(key, 0) < cap:
                RateCounterItem(*key).update(actions=[RateCounterItem.used.set(cap), RateCounterItem.ttl.set(second + TTL_SECONDS)])
