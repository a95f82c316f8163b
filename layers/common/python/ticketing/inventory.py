"""Seats: how a ticket type's capacity is split into shards, and how much is left.

Every read of availability and every hold goes through the shard items defined in
`ticketing.table.InventoryShard`, so what the catalogue shows is what checkout sells.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable
from dataclasses import dataclass

from ticketing.lifecycle.writes import checkpoint, condition_failed, update_one
from ticketing.table import InventoryShard


def shard_capacities(capacity: int, shard_size: int, max_shards: int) -> list[int]:
    """Split `capacity` into between 1 and `max_shards` near-equal shards of about
    `shard_size` seats. The parts always add up to `capacity` exactly."""
    if capacity < 1:
        raise ValueError("capacity must be at least 1")
    count = max(1, min(max_shards, capacity // max(1, shard_size)))
    base, extra = divmod(capacity, count)
    return [base + (1 if index < extra else 0) for index in range(count)]


def new_shards(event_id: str, type_id: str, capacities: list[int]) -> list[InventoryShard]:
    shards = []
    for index, seats in enumerate(capacities):
        pk, sk = InventoryShard.key(type_id, index)
        shards.append(
            InventoryShard(
                pk, sk, event_id=event_id, type_id=type_id, shard=index,
                capacity=seats, remaining=seats, held=0, sold=0,
            )
        )
    return shards


@dataclass(frozen=True)
class Availability:
    capacity: int
    remaining: int
    held: int
    sold: int


def availability(types: Iterable[tuple[str, int]]) -> dict[str, Availability]:
    """Seats per ticket type, from one BatchGetItem over all shards of all `types`
    (pairs of type id and shard count)."""
    keys = [InventoryShard.key(type_id, n) for type_id, count in types for n in range(count)]
    totals: dict[str, list[int]] = {}
    for shard in InventoryShard.batch_get(keys):
        total = totals.setdefault(shard.type_id, [0, 0, 0, 0])
        total[0] += int(shard.capacity)
        total[1] += int(shard.remaining)
        total[2] += int(shard.held)
        total[3] += int(shard.sold)
    return {type_id: Availability(*values) for type_id, values in totals.items()}


class SoldOut(Exception):
    """Not enough seats for one ticket type: the domain turns it into a 409."""

    def __init__(self, type_id: str, remaining: int) -> None:
        super().__init__(f"only {remaining} left of {type_id}")
        self.type_id = type_id
        self.remaining = remaining


def close(type_shards: dict[str, int]) -> None:
    """Close the sales of every shard of these types (type id -> shard count), for good: no
    seat of theirs can be taken after this returns, whatever a writer read before. Safe to
    repeat; a shard in another transaction at that moment is tried again."""
    for type_id, count in type_shards.items():
        for index in range(count):
            update_one(InventoryShard(*InventoryShard.key(type_id, index)), [InventoryShard.closed.set(True)],
                       InventoryShard.PK.exists(), what="Closing the sales")


SAMPLE_SHARDS = 4  # shards a checkout reads first (of up to 16): the hold's conditional write is the guard


def read_shards(type_shards: dict[str, int], consistent: bool = True, sample: int | None = None) -> dict[str, dict[int, int]]:
    """`remaining` per shard for each type (type id -> shard count), one BatchGetItem;
    with `sample`, only that many shards of each type, chosen at random. A closed shard has
    none to sell."""
    keys = []
    for type_id, count in type_shards.items():
        chosen = range(count) if sample is None or sample >= count else random.sample(range(count), sample)
        keys += [InventoryShard.key(type_id, n) for n in chosen]
    remaining: dict[str, dict[int, int]] = {type_id: {} for type_id in type_shards}
    for shard in InventoryShard.batch_get(keys, consistent_read=consistent):
        remaining[shard.type_id][int(shard.shard)] = 0 if shard.closed else int(shard.remaining)
    return remaining


def read_for_hold(wanted: dict[str, tuple[int, int]], final: bool = False) -> dict[str, dict[int, int]]:
    """`remaining` per shard to plan a hold (type id -> (shard count, seats wanted)): a
    random SAMPLE_SHARDS of each type, eventually consistent, so a rush spreads its reads and
    pays half; every shard of a type whose sample has too few seats; with `final` (before
    answering sold out) every shard, strongly consistent. A stale figure costs at most a
    retry: the hold's conditional write refuses seats that are gone."""
    counts = {type_id: count for type_id, (count, _) in wanted.items()}
    if final:
        return read_shards(counts)
    remaining = read_shards(counts, consistent=False, sample=SAMPLE_SHARDS)
    short = {type_id: counts[type_id] for type_id, (count, qty) in wanted.items()
             if len(remaining[type_id]) < count and sum(remaining[type_id].values()) < qty}
    if short:
        remaining.update(read_shards(short, consistent=False))
    return remaining


def plan(remaining: dict[int, int], qty: int, rng: random.Random | None = None) -> dict[int, int]:
    """Which shards to take `qty` seats from: one random shard that has them all if any
    (spreading writes), else the fullest shards first (fewest items in the transaction).
    Raises SoldOut with the true total when the shards together have fewer than `qty`."""
    total = sum(remaining.values())
    if qty > total:
        raise SoldOut("", total)
    rng = rng or random
    whole = [index for index, left in remaining.items() if left >= qty]
    if whole:
        return {rng.choice(whole): qty}
    taken: dict[int, int] = {}
    needed = qty
    for index, left in sorted(remaining.items(), key=lambda item: (-item[1], item[0])):
        if needed == 0:
            break
        take = min(left, needed)
        if take:
            taken[index] = take
            needed -= take
    return taken


# ---------------------------------------------------------------- resizing
RESIZE_ATTEMPTS = 8


class BelowCommitted(Exception):
    """A new capacity below the seats already sold or held: the domain makes it a 409."""

    def __init__(self, committed: int) -> None:
        super().__init__(f"{committed} seats are sold or held")
        self.committed = committed


def resize_plan(remaining: dict[int, int], current: int, target: int, shard_size: int, max_shards: int) -> dict[int, int]:
    """Seats to add (+) or remove (-) per shard to take a type from `current` to `target`
    seats. Lowering takes only free seats (`remaining`), fullest shards first, and raises
    BelowCommitted if there are not enough; raising fills new shards (up to what
    `shard_capacities` would give `target`, at most `max_shards`) or else spreads over the
    existing ones. The deltas always add up to `target - current`."""
    if target < current:
        cut = current - target
        free = sum(remaining.values())
        if free < cut:
            raise BelowCommitted(current - free)
        deltas: dict[int, int] = {}
        for index, left in sorted(remaining.items(), key=lambda item: (-item[1], item[0])):
            if cut == 0:
                break
            take = min(left, cut)
            if take:
                deltas[index] = -take
                cut -= take
        return deltas
    added = target - current
    if added == 0:
        return {}
    count = len(remaining)
    wanted = len(shard_capacities(target, shard_size, max_shards))
    new = min(max(0, wanted - count), added)
    targets = list(range(count, count + new)) if new else sorted(remaining)
    base, extra = divmod(added, len(targets))
    return {index: base + (1 if i < extra else 0) for i, index in enumerate(targets) if base or i < extra}


def resize(event_id: str, type_id: str, target: int, shard_size: int, max_shards: int, also: list | None = None) -> None:
    """Change a ticket type's capacity to `target`, keeping sum(remaining + held + sold)
    equal to it. One transaction moves the type item (conditional on the capacity and
    shard count we read) and every shard it touches (a cut conditional on the shard
    still having those seats free), so a checkout that takes seats meanwhile makes it
    fail whole; then we read again and retry. The event must still be on sale, checked in
    the same transaction (SalesClosed if not), so no shard is added after a cancel closed
    the sales. `also`: more actions on the type item (price, window), applied in the same
    transaction."""
    from pynamodb.exceptions import TransactWriteError
    from pynamodb.transactions import TransactWrite

    from ticketing.lifecycle.writes import failed_parts
    from ticketing.table import EventItem, TicketTypeItem, connection

    for _attempt in range(RESIZE_ATTEMPTS):
        item = TicketTypeItem.get(*TicketTypeItem.key(event_id, type_id), consistent_read=True)
        current, count = int(item.capacity), int(item.shards)
        remaining = read_shards({type_id: count})[type_id]
        deltas = resize_plan(remaining, current, target, shard_size, max_shards)
        grown = max([count, *[index + 1 for index in deltas]])
        checkpoint("commit", kinds=("resize",))
        try:
            with TransactWrite(connection=connection()) as transaction:
                transaction.condition_check(EventItem, *EventItem.key(event_id), condition=EventItem.status == "on_sale")
                transaction.update(
                    item,
                    actions=[TicketTypeItem.capacity.set(target), TicketTypeItem.shards.set(grown), *(also or [])],
                    condition=(TicketTypeItem.capacity == current) & (TicketTypeItem.shards == count),
                )
                for index, delta in sorted(deltas.items()):
                    if index >= count:
                        shard = InventoryShard(
                            *InventoryShard.key(type_id, index), event_id=event_id, type_id=type_id, shard=index,
                            capacity=delta, remaining=delta, held=0, sold=0,
                        )
                        transaction.save(shard, condition=InventoryShard.PK.does_not_exist())
                    elif delta < 0:
                        transaction.update(
                            InventoryShard(*InventoryShard.key(type_id, index)),
                            actions=[InventoryShard.remaining.add(delta), InventoryShard.capacity.add(delta)],
                            condition=InventoryShard.remaining >= -delta,
                        )
                    else:
                        transaction.update(
                            InventoryShard(*InventoryShard.key(type_id, index)),
                            actions=[InventoryShard.remaining.add(delta), InventoryShard.capacity.add(delta)],
                        )
            return
        except TransactWriteError as exc:
            if not condition_failed(exc):
                raise
            if "event" in failed_parts(exc, ["event"]):  # the condition check comes first
                raise SalesClosed() from exc
            time.sleep(random.uniform(0.005, 0.03))  # a checkout won: nothing changed, read again
    raise CapacityContention()


class SalesClosed(Exception):
    """The event stopped being on sale (canceled) while its capacity was being changed."""


class CapacityContention(Exception):
    """Checkouts kept changing the shards faster than a resize could read them."""
