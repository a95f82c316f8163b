"""The waiting room at an on-sale, simulated in process (`python -m bench.waiting_room_sim`,
part of `make bench`).

Two parts:
- the crowd: ARRIVALS joins spread evenly over SECONDS, half before `opens_at`, through the
  waiting room's own position rules (`waiting_room.pick_shard`, `Layout`, `Draw`,
  `advance`, `retry_after`), IN_FLIGHT joins at once (each reads the late counters as they
  were IN_FLIGHT joins earlier, as concurrent Lambdas would), then the admission job's step a
  second until everyone is admitted. It checks the properties the issue asks for and the
  API polls a second the Retry-After rule gives at the peak of the queue;
- the calls: SAMPLE joins, polls and steps through the real handlers (`functions/queue`,
  `waiting_room.tick`) with moto in process and `bench.recorder`, each request's DynamoDB
  units per partition key scaled to the crowd's rates (joins ARRIVALS / SECONDS a second,
  polls at the modelled API rate, one step a second), the hottest key per table and index
  against DynamoDB's per-partition limits.
"""

from __future__ import annotations

import bisect
import math
import random
import statistics
from collections import Counter, deque
from dataclasses import dataclass, field

from bench.recorder import PARTITION_RCU, PARTITION_WCU, Recorder, Units, recording

ARRIVALS = 100_000
SECONDS = 60
JOIN_SECONDS = 0.02  # a join's read-to-write time: the joins in flight at once are the rate times this
SAMPLE = 200


@dataclass
class Result:
    arrivals: int
    rate: int
    admitted: int = 0
    admitted_twice: int = 0
    per_minute: list[int] = field(default_factory=list)
    early_rho: float = 0.0
    late_rho: float = 0.0
    in_flight: int = 1
    late_max_displacement: int = 0  # places
    late_max_overtake: float = 0.0  # seconds: the most a later arrival joined after someone it was admitted before
    wait_error_median: float = 0.0
    wait_error_median_share: float = 0.0
    peak_waiting: int = 0
    api_polls_per_second: float = 0.0
    calls: dict[str, Counter] = field(default_factory=dict)
    hottest: list[tuple[str, str, float, float]] = field(default_factory=list)
    max_key_wcu: float = 0.0
    max_key_rcu: float = 0.0


def _ranks(values: list[float]) -> list[float]:
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    for rank, index in enumerate(order):
        ranks[index] = float(rank)
    return ranks


def spearman(a: list[float], b: list[float]) -> float:
    if len(a) < 2:
        return 0.0
    ra, rb = _ranks(a), _ranks(b)
    return statistics.correlation(ra, rb)


def simulate(arrivals: int = ARRIVALS, seconds: int = SECONDS, rate: int | None = None, seed: int = 1,
             sample: int = 0) -> Result:
    from ticketing import waiting_room as wr

    rng = random.Random(seed)
    rate = rate or wr.default_rate()
    in_flight = max(1, round(arrivals / seconds * JOIN_SECONDS))
    result = Result(arrivals=arrivals, rate=rate, in_flight=in_flight)
    times = [-seconds / 2 + seconds * (i + rng.random()) / arrivals for i in range(arrivals)]  # even, jittered
    early_counts = [0] * wr.EARLY_SHARDS
    late_counts = [0] * wr.LATE_SHARDS
    recent: deque[int] = deque()  # the late shards of the joins still in flight
    places: list[tuple[str, int, int]] = []
    for t in times:
        if t < 0:
            k = rng.randrange(wr.EARLY_SHARDS)
            places.append(("E", k, early_counts[k]))
            early_counts[k] += 1
            continue
        view = list(late_counts)
        for k in recent:  # what the in-flight joins have written is not yet seen
            view[k] -= 1
        k = wr.pick_shard(dict(enumerate(view)))
        places.append(("L", k, late_counts[k]))
        late_counts[k] += 1
        recent.append(k)
        if len(recent) >= in_flight:
            recent.popleft()

    layout = wr.Layout(early_counts, late_counts, seed="%032x" % rng.getrandbits(128))
    positions = [layout.position(*place) for place in places]
    assert all(p is not None for p in positions)
    if len(set(positions)) != len(positions):
        result.admitted_twice = len(positions) - len(set(positions))  # two buyers on one position

    # The admission job: a step a second from opening. The counters it reads hold the joins so far.
    joined_by = [bisect.bisect_right(times, s) for s in range(0, seconds // 2 + 2)]
    admitted, carry = 0, 0.0
    step_serving: list[int] = []
    step_admitted: list[int] = []
    second = 0
    while admitted < arrivals:
        second += 1
        upto = joined_by[min(second, len(joined_by) - 1)]
        if upto >= arrivals:
            now_layout = layout
        else:
            late_now = [0] * wr.LATE_SHARDS
            for phase, k, _n in places[:upto]:
                if phase == "L":
                    late_now[k] += 1
            now_layout = wr.Layout(early_counts, late_now)
        admitted, carry = wr.advance(admitted, carry, rate, 1.0, now_layout.total - admitted, 10**9)
        step_serving.append(now_layout.serving_for(admitted))
        step_admitted.append(admitted)
        if second > 10**6:
            raise RuntimeError("the queue never drained")

    # Each buyer's admission: the first step at or after its join whose serving covers it.
    admitted_at: list[int] = []
    for t, position in zip(times, positions):
        first = bisect.bisect_left(step_serving, position)
        joined_step = max(1, math.ceil(t)) if t > 0 else 1
        admitted_at.append(max(first + 1, joined_step))
    result.admitted = len(admitted_at)
    minutes = Counter((step - 1) // 60 for step in admitted_at)
    result.per_minute = [minutes[m] for m in range(max(minutes) + 1)]

    early = [i for i, place in enumerate(places) if place[0] == "E"]
    late = [i for i, place in enumerate(places) if place[0] == "L"]
    result.early_rho = spearman([times[i] for i in early], [positions[i] for i in early])
    result.late_rho = spearman([times[i] for i in late], [positions[i] for i in late])
    latest = -math.inf
    for i in sorted(late, key=positions.__getitem__):
        result.late_max_overtake = max(result.late_max_overtake, latest - times[i])
        latest = max(latest, times[i])
    by_position = sorted(range(len(late)), key=lambda j: positions[late[j]])
    result.late_max_displacement = max((abs(rank - j) for rank, j in enumerate(by_position)), default=0)

    # Estimated against actual waits: at the join for later arrivals, at the first poll after
    # the draw for earlier ones (opening plus the 0-30 s spread the Retry-After gives them).
    errors, shares = [], []
    polls_second: dict[int, float] = {}
    for i, (t, position) in enumerate(zip(times, positions)):
        asked = t if t >= 0 else rng.uniform(0, 30)
        step = max(0, min(int(asked), len(step_admitted) - 1))
        ahead_layout = layout if t < 0 else None
        if ahead_layout is None:  # the counters as the last step read them
            ahead = max(0, position - 1 - step_serving[step - 1]) if step >= 1 else position - 1
        else:
            ahead = max(0, position - 1 - (step_serving[step - 1] if step >= 1 else 0))
        estimate = ahead / rate * 60
        actual = max(0.0, admitted_at[i] - asked)
        errors.append(abs(estimate - actual))
        if actual >= 10:
            shares.append(abs(estimate - actual) / actual)
    result.wait_error_median = statistics.median(errors)
    result.wait_error_median_share = statistics.median(shares) if shares else 0.0

    # API polls a second when the queue is longest (everyone has joined, few admitted): each
    # waiting buyer polls every Retry-After seconds (a fifth of its estimated wait, 2-120 s).
    peak = seconds // 2 + 1
    served = step_serving[min(peak, len(step_serving)) - 1]
    waiting = [p for p in positions if p > served]
    result.peak_waiting = len(waiting)
    result.api_polls_per_second = sum(1 / wr.retry_after((p - served) / rate * 60) for p in waiting)
    del polls_second

    if sample:
        rec, requests = record(sample)
        rates = {"join": arrivals / seconds, "poll": result.api_polls_per_second, "tick": 1.0}
        load: dict[tuple[str, str], Units] = {}
        for phase, per_second in rates.items():
            for key, used in rec.units(phase).items():
                scaled = Units(used.wcu * per_second / requests[phase], used.rcu * per_second / requests[phase])
                load.setdefault(key, Units()).add(scaled)
        result.calls = {phase: rec.calls(phase) for phase in rates}
        result.calls = {phase: Counter({k: v / requests[phase] for k, v in calls.items()}) for phase, calls in result.calls.items()}
        rows = []
        for target in sorted({t for t, _ in load}):
            keys = sorted(((k, u) for (t, k), u in load.items() if t == target),
                          key=lambda row: max(row[1].wcu / PARTITION_WCU, row[1].rcu / PARTITION_RCU), reverse=True)
            rows += [(target, k, u.wcu, u.rcu) for k, u in keys[:3]]
        result.hottest = rows
        result.max_key_wcu = max((r[2] for r in rows), default=0.0)
        result.max_key_rcu = max((r[3] for r in rows), default=0.0)
    return result


def _normal(key: str) -> str:
    """One account's place is a partition of its own: shown as one key."""
    return key


def record(sample: int) -> tuple[Recorder, dict[str, int]]:
    """SAMPLE joins (half before opening), SAMPLE polls and 20 admission steps through the
    real code, with moto in process, every DynamoDB request recorded with its keys."""
    from datetime import datetime, timedelta, timezone

    from moto import mock_aws

    from bench.common import create_table_and_secrets, environment
    from tests.conftest import load_function
    from tests.unit.conftest import ADMIN, Invoker
    from ticketing import clock
    from ticketing import waiting_room as wr

    import boto3
    import json

    rec = Recorder()
    requests = Counter()
    start = datetime.now(timezone.utc).replace(microsecond=0)
    with mock_aws(), environment({"ADMISSION_SECRET_NAME": "bench/admission", "POWERTOOLS_PARAMETERS_MAX_AGE": "300"}):
        create_table_and_secrets()
        boto3.client("secretsmanager").create_secret(Name="bench/admission", SecretString=json.dumps({"key": "b" * 64}))
        catalogue = Invoker(load_function("catalogue"))
        queue = Invoker(load_function("queue"))
        clock.freeze(start)
        try:
            _, event, _ = catalogue("POST", "/api/events/", {
                "name": "Rush", "venue": "Arena", "currency": "usd", "starts_at": "2030-01-01T18:00:00Z",
                "ends_at": "2030-01-01T22:00:00Z",
                "waiting_room": {"opens_at": clock.iso(start + timedelta(seconds=30)), "admit_per_minute": 6000},
            }, claims=ADMIN)
            catalogue("POST", f"/api/events/{event['id']}/ticket-types/", {"name": "GA", "price_cents": 2500, "capacity": 100_000},
                      claims=ADMIN)
            event_id = event["id"]
            buyers = [{"sub": f"sim-{n}", "email": f"sim{n}@example.com", "email_verified": "true"} for n in range(sample)]
            with recording(rec):
                for n, claims in enumerate(buyers):
                    if n == sample // 2:
                        clock.freeze(start + timedelta(seconds=30))
                        with rec.phase("tick"):
                            wr.tick(event_id)
                        requests["tick"] += 1
                    with rec.phase("join"):
                        queue("POST", f"/api/events/{event_id}/queue/", claims=claims)
                    requests["join"] += 1
                for step in range(1, 21):
                    clock.freeze(start + timedelta(seconds=30 + step))
                    with rec.phase("tick"):
                        wr.tick(event_id)
                    requests["tick"] += 1
                for claims in buyers:
                    with rec.phase("poll"):
                        queue("GET", f"/api/events/{event_id}/queue/me/", claims=claims)
                    requests["poll"] += 1
        finally:
            clock.freeze(None)
    return rec, requests


def report(result: Result) -> str:
    lines = [
        f"\nWaiting room (`python -m bench.waiting_room_sim`): {result.arrivals:,} arrivals in {SECONDS} s, half before opening,"
        f" admitted at {result.rate:,} a minute; {result.in_flight} joins in flight at once",
        "| measure | value |", "|---|---|",
        f"| buyers admitted / admitted twice | {result.admitted:,} / {result.admitted_twice} |",
        f"| admitted per full minute (setting {result.rate:,}) | min {min(result.per_minute[:-1] or [0]):,},"
        f" max {max(result.per_minute[:-1] or [0]):,} (last, partial minute {result.per_minute[-1]:,}) |",
        f"| pre-opening arrivals: Spearman rho, arrival vs admission order | {result.early_rho:+.4f} |",
        f"| later arrivals: Spearman rho; the most one was admitted ahead of someone who came earlier |"
        f" {result.late_rho:.6f}; {result.late_max_overtake * 1000:.0f} ms ({result.late_max_displacement} places) |",
        f"| estimated vs actual wait: median error | {result.wait_error_median:.1f} s ({result.wait_error_median_share:.1%} of the wait) |",
        f"| API polls a second at {result.peak_waiting:,} waiting (Retry-After: wait / 5, 2-120 s) | {result.api_polls_per_second:,.0f} |",
    ]
    if result.hottest:
        lines += ["", f"hottest keys at {result.arrivals / SECONDS:,.0f} joins/s, {result.api_polls_per_second:,.0f} polls/s,"
                  " one admission step/s (limits per partition: 1,000 WCU/s, 3,000 RCU/s)",
                  "| table/index | key | WCU/s | RCU/s |", "|---|---|---|---|"]
        for target, key, wcu, rcu in result.hottest:
            flag = " OVER" if wcu > PARTITION_WCU or rcu > PARTITION_RCU else ""
            lines.append(f"| {target} | `{key}` | {wcu:,.0f} | {rcu:,.0f}{flag} |")
        lines += ["", "DynamoDB calls per request (recorded)"]
        for phase, calls in result.calls.items():
            shown = ", ".join(f"{k.split('.')[1]} x{v:.2f}" for k, v in sorted(calls.items()) if k.startswith("dynamodb."))
            other = ", ".join(f"{k} x{v:.2f}" for k, v in sorted(calls.items()) if not k.startswith("dynamodb."))
            lines.append(f"- {phase}: {shown}" + (f"; {other}" if other else ""))
    return "\n".join(lines)


def run() -> str:
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        result = simulate(sample=SAMPLE)
    return report(result)


if __name__ == "__main__":
    from bench.common import setup

    setup()
    print(run())
