"""Seats: how a ticket type's capacity is split into shards, and how much is left.

Every read of availability and every hold goes through the shard items defined in
`ticketing.table.InventoryShard`, so what the catalogue shows is what checkout sells.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

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
