"""Waiting-list transitions (issue 19), each one conditional transaction:

    (none) -join-> waiting -offer-> offered -take (checkout, in the hold's transaction)-> taken
                                    offered -lapse (offer run, after offer_expires_at)-> lapsed
           waiting/offered -leave-> left

Seats: an offer holds its seats on their shards (remaining -> held, conditional on them
being free) and takes its seats out of `waiting`; a lapse or a leave of an offer puts them
back (held -> remaining); a checkout with the offer moves them into the order's hold (they
stay held, so the shards are not written). Offer and take/lapse are conditional on the
entry's state, so an offer is taken or lapses, never both.
"""

from __future__ import annotations

from dataclasses import dataclass

from ticketing.lifecycle.writes import Refused, Tx, transact
from ticketing.table import (
    InventoryShard,
    OfferCodeItem,
    ShardTake,
    WaitEntryItem,
    WaitHeadItem,
    WaitMemberItem,
    offer_partition,
)

WAITING, OFFERED, TAKEN, LAPSED, LEFT = "waiting", "offered", "taken", "lapsed", "left"


@dataclass(frozen=True)
class OfferClaim:
    """A checkout with an offer: the entry whose held seats the order takes over."""

    type_id: str
    seq: int
    code: str


class OfferRefused(Exception):
    """The offer lapsed, was taken or left between our read and our hold."""


def _entry(type_id: str, seq: int) -> WaitEntryItem:
    return WaitEntryItem(*WaitEntryItem.key(type_id, seq))


def _shards(tx: Tx, type_id: str, takes, *, hold: bool) -> None:
    for take in takes:
        qty = int(take.qty)
        shard = InventoryShard(*InventoryShard.key(type_id, int(take.shard)))
        if hold:
            tx.update("shard", shard, actions=[InventoryShard.remaining.add(-qty), InventoryShard.held.add(qty)],
                      condition=InventoryShard.can_take(qty))
        else:
            tx.update("shard", shard, actions=[InventoryShard.remaining.add(qty), InventoryShard.held.add(-qty)],
                      condition=InventoryShard.held >= qty)


def join(entry: WaitEntryItem) -> bool:
    """Put `entry` on its list (its member item, its place, `waiting` raised). False if
    the customer is on the list already (their member item exists)."""
    def build(tx: Tx) -> None:
        tx.save("member", WaitMemberItem(*WaitMemberItem.key(entry.type_id, entry.sub), seq=int(entry.seq)),
                condition=WaitMemberItem.PK.does_not_exist())
        tx.save("entry", entry, condition=WaitEntryItem.PK.does_not_exist())
        tx.update("head", WaitHeadItem(*WaitHeadItem.key(entry.type_id)), actions=[WaitHeadItem.waiting.add(int(entry.qty))])

    try:
        transact(build, what="Joining the waiting list")
    except Refused:
        return False
    return True


def offer(entry: WaitEntryItem, code: str, now: str, expires_at: str, takes: dict[int, int], ttl: int) -> bool:
    """waiting -> offered: hold `takes` (shard -> seats) for it, take its seats out of
    `waiting`, file its code. False (nothing changed) if the entry is no longer waiting or
    the seats are gone."""
    listed = [ShardTake(shard=shard, qty=qty) for shard, qty in sorted(takes.items())]
    qty = int(entry.qty)

    def build(tx: Tx) -> None:
        tx.update(
            "entry", _entry(entry.type_id, entry.seq),
            actions=[WaitEntryItem.state.set(OFFERED), WaitEntryItem.offer_code.set(code), WaitEntryItem.offered_at.set(now),
                     WaitEntryItem.offer_expires_at.set(expires_at), WaitEntryItem.offer_takes.set(listed),
                     WaitEntryItem.GSI2PK.set(offer_partition(entry.entry_id)),
                     WaitEntryItem.GSI2SK.set(f"{expires_at}#{entry.entry_id}")],
            condition=WaitEntryItem.state == WAITING,
        )
        tx.update("head", WaitHeadItem(*WaitHeadItem.key(entry.type_id)), actions=[WaitHeadItem.waiting.add(-qty)],
                  condition=WaitHeadItem.waiting >= qty)
        _shards(tx, entry.type_id, listed, hold=True)
        tx.save("code", OfferCodeItem(*OfferCodeItem.key(code), type_id=entry.type_id, seq=int(entry.seq), sub=entry.sub, ttl=ttl),
                condition=OfferCodeItem.PK.does_not_exist())

    try:
        transact(build, what="Offering seats")
    except Refused:
        return False
    return True


def lapse(entry: WaitEntryItem, now: str) -> bool:
    """offered -> lapsed once its time is up: its seats back on their shards (the offer run
    then offers them to the next in line), its member item gone (they may join again)."""
    def build(tx: Tx) -> None:
        tx.update(
            "entry", _entry(entry.type_id, entry.seq),
            actions=[WaitEntryItem.state.set(LAPSED), WaitEntryItem.ended_at.set(now),
                     WaitEntryItem.GSI2PK.remove(), WaitEntryItem.GSI2SK.remove()],
            condition=(WaitEntryItem.state == OFFERED) & (WaitEntryItem.offer_expires_at <= now),
        )
        _shards(tx, entry.type_id, entry.offer_takes or [], hold=False)
        tx.delete("member", WaitMemberItem(*WaitMemberItem.key(entry.type_id, entry.sub)))

    try:
        transact(build, what="Passing on a lapsed offer")
    except Refused:
        return False
    return True


def leave(entry: WaitEntryItem, now: str) -> bool:
    """waiting/offered -> left: out of `waiting`, or an offer's seats back on their shards."""
    def build(tx: Tx) -> None:
        tx.update(
            "entry", _entry(entry.type_id, entry.seq),
            actions=[WaitEntryItem.state.set(LEFT), WaitEntryItem.ended_at.set(now),
                     WaitEntryItem.GSI2PK.remove(), WaitEntryItem.GSI2SK.remove()],
            condition=WaitEntryItem.state == entry.state,
        )
        if entry.state == WAITING:
            tx.update("head", WaitHeadItem(*WaitHeadItem.key(entry.type_id)), actions=[WaitHeadItem.waiting.add(-int(entry.qty))])
        else:
            _shards(tx, entry.type_id, entry.offer_takes or [], hold=False)
        tx.delete("member", WaitMemberItem(*WaitMemberItem.key(entry.type_id, entry.sub)))

    try:
        transact(build, what="Leaving the waiting list")
    except Refused:
        return False
    return True


def take(tx: Tx, claim: OfferClaim, sub: str, order_id: str, now: str) -> None:
    """In the hold's transaction: offered -> taken, conditional on the offer being open and
    this customer's; the order takes over the offer's held seats."""
    tx.update(
        "offer", _entry(claim.type_id, claim.seq),
        actions=[WaitEntryItem.state.set(TAKEN), WaitEntryItem.order_id.set(order_id), WaitEntryItem.ended_at.set(now),
                 WaitEntryItem.GSI2PK.remove(), WaitEntryItem.GSI2SK.remove()],
        condition=(WaitEntryItem.state == OFFERED) & (WaitEntryItem.offer_expires_at > now) & (WaitEntryItem.sub == sub)
        & (WaitEntryItem.offer_code == claim.code),
    )
    tx.delete("member", WaitMemberItem(*WaitMemberItem.key(claim.type_id, sub)))
