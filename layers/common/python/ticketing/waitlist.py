"""Waiting lists (issue 19): per ticket type, opt-in per event (`waiting_list` on the event).

- **Joining**: only while the type is sold out to the public (else 409 `not_sold_out`), with
  a quantity; once per customer and type (joining again answers the same place).
- **Seats kept for the list**: while people wait, the public sees `waiting` fewer seats
  (`public_free`, on the event page and in checkout), so seats that come back by any path (a
  refund, a lapsed hold, a canceled order, more capacity: each just puts seats back on the
  shards) wait for the offer run instead of being sold, as pretix counts its waiting list
  against the quota. No seat-return path has to know about the list: the offer run looks
  at the free seats themselves, so each seat that comes back is offered once.
- **The offer run** (`run`, every minute in the expiry job): first lapses offers whose time
  is up (their seats back on the shards), then, for each list with people waiting, offers
  free seats to the first in line, in order (it stops at the first who wants more seats
  than are free: nobody overtakes). An offer holds its seats (remaining -> held), so the
  public never sees them while it is open; the customer is told by email and in the inbox
  and checks out with `offer_code` until `offer_expires_at` (the event's `offer_minutes`).
- **Races**: every step is a conditional transition (`ticketing.lifecycle.waitlist`): two
  runs offering at once give each place one offer and each seat to one offer; a checkout
  with the offer and its lapse are both conditional on the entry being `offered`, so one
  of them wins.
"""

from __future__ import annotations

from datetime import timedelta
from pydantic import BaseModel, Field, StrictBool, StrictInt

from ticketing import clock, inventory
from ticketing.auth import Caller
from ticketing.errors import Conflict, InvalidInput, NotFound, Unprocessable
from ticketing.ids import new_id
from ticketing.lifecycle import waitlist as lifecycle
from ticketing.observability import logger
from ticketing.table import (
    OFFER_PARTITIONS,
    EventItem,
    OfferCodeItem,
    TicketTypeItem,
    WaitEntryItem,
    WaitHeadItem,
    WaitingListSettings,
    WaitMemberItem,
    customer_partition,
)

MAX_QTY = 50
OFFER_CODE_LENGTH = 12
OFFERS_PER_LIST = 50  # places a run looks at per list (the next run goes on)


class WaitingListIn(BaseModel):
    enabled: StrictBool
    offer_minutes: StrictInt = Field(default=60, ge=5, le=7 * 24 * 60)


class WaitingListOut(BaseModel):
    enabled: bool
    offer_minutes: int


class JoinIn(BaseModel):
    qty: StrictInt = Field(ge=1, le=MAX_QTY)


class OfferOut(BaseModel):
    offer_code: str
    qty: int
    expires_at: str


class EntryOut(BaseModel):
    id: str
    event_id: str
    ticket_type_id: str
    qty: int
    position: int | None  # 1 = first in line; None once offered or ended
    state: str
    offer: OfferOut | None


class WaitlistPage(BaseModel):
    entries: list[EntryOut]


# ------------------------------------------------------------------ settings
def settings_of(event: EventItem) -> WaitingListOut | None:
    wl = event.waiting_list
    if wl is None:
        return None
    return WaitingListOut(enabled=bool(wl.enabled), offer_minutes=int(wl.offer_minutes or 60))


def settings_action(data: WaitingListIn | None):
    """The event update action for `waiting_list` (catalogue.update_event)."""
    if data is None:
        return EventItem.waiting_list.remove()
    return EventItem.waiting_list.set(WaitingListSettings(enabled=data.enabled, offer_minutes=data.offer_minutes))


def enabled(event: EventItem) -> bool:
    return bool(event.waiting_list is not None and event.waiting_list.enabled)


def waiting_for(event: EventItem, type_ids) -> dict[str, int]:
    """Seats wanted by those waiting, per type (one BatchGetItem; empty if the event has no
    waiting list)."""
    if not enabled(event):
        return {}
    keys = [WaitHeadItem.key(type_id) for type_id in dict.fromkeys(type_ids)]
    return {head.type_id: int(head.waiting or 0) for head in WaitHeadItem.batch_get(keys) if int(head.waiting or 0) > 0}


def public_free(remaining: int, waiting: int) -> int:
    """Seats the public may buy: those free, less those kept for the waiting list."""
    return max(0, remaining - waiting)


def keep_for_waiting(remaining: dict[str, dict[int, int]], waiting: dict[str, int]) -> dict[str, dict[int, int]]:
    """Checkout's shard figures with the seats kept for the waiting list taken out (from
    the emptiest shards first), so a public hold cannot plan them."""
    out = {}
    for type_id, shards in remaining.items():
        keep = waiting.get(type_id, 0)
        shards = dict(shards)
        for index in sorted(shards, key=lambda n: (shards[n], n)):
            if keep <= 0:
                break
            cut = min(keep, shards[index])
            shards[index] -= cut
            keep -= cut
        out[type_id] = shards
    return out


def adjust_page(event: EventItem, page) -> None:
    """The event page's `available` (and `on_sale`) as the public may buy."""
    waiting = waiting_for(event, [t.id for t in page.ticket_types or []])
    for shown in page.ticket_types or []:
        if shown.id in waiting:
            shown.available = public_free(shown.available, waiting[shown.id])
            shown.on_sale = shown.on_sale and shown.available > 0


# ------------------------------------------------------------------ the customer
def _type(event_id: str, type_id: str) -> tuple[EventItem, TicketTypeItem]:
    from ticketing import catalogue

    event, types = catalogue.load_event(event_id)
    found = next((t for t in types if t.type_id == type_id and not t.hidden), None)
    if found is None:
        raise NotFound(f"Event {event_id} has no ticket type {type_id}.")
    return event, found


def _position(entry: WaitEntryItem) -> int | None:
    if entry.state != lifecycle.WAITING:
        return None
    ahead = WaitEntryItem.count(
        entry.PK, WaitEntryItem.SK.between("ENTRY#", entry.SK), filter_condition=WaitEntryItem.state == lifecycle.WAITING,
        consistent_read=True,
    )
    return max(1, ahead)


def _out(entry: WaitEntryItem) -> EntryOut:
    offer = None
    if entry.state == lifecycle.OFFERED:
        offer = OfferOut(offer_code=entry.offer_code, qty=int(entry.qty), expires_at=entry.offer_expires_at)
    return EntryOut(id=entry.entry_id, event_id=entry.event_id, ticket_type_id=entry.type_id, qty=int(entry.qty),
                    position=_position(entry), state=entry.state, offer=offer)


def _member_entry(type_id: str, sub: str) -> WaitEntryItem | None:
    try:
        member = WaitMemberItem.get(*WaitMemberItem.key(type_id, sub), consistent_read=True)
    except WaitMemberItem.DoesNotExist:
        return None
    try:
        return WaitEntryItem.get(*WaitEntryItem.key(type_id, int(member.seq)), consistent_read=True)
    except WaitEntryItem.DoesNotExist:
        return None


def join(event_id: str, type_id: str, data: JoinIn, who: Caller) -> tuple[EntryOut, bool]:
    """Join a sold-out type's waiting list: (the place, whether it is new). Joining again
    answers the place already held."""
    event, ticket_type = _type(event_id, type_id)
    if not enabled(event):
        raise Conflict(f"Event {event_id} has no waiting list.", code="waiting_list_disabled")
    if event.status != "on_sale":
        raise Conflict(f"Event {event_id} is {event.status}.", code=f"event_{event.status}")
    if data.qty > int(ticket_type.max_per_order):
        raise InvalidInput("qty", f"At most {int(ticket_type.max_per_order)} {ticket_type.name} tickets per order.")
    existing = _member_entry(type_id, who.sub)
    if existing is not None:
        return _out(existing), False
    seats = inventory.availability([(type_id, int(ticket_type.shards))]).get(type_id)
    waiting = waiting_for(event, [type_id]).get(type_id, 0)
    if seats is not None and public_free(seats.remaining, waiting) > 0:
        raise Conflict(f"{ticket_type.name} is on sale: buy instead of waiting.", code="not_sold_out",
                       available=public_free(seats.remaining, waiting))
    head = WaitHeadItem(*WaitHeadItem.key(type_id), GSI2SK=type_id, event_id=event_id, type_id=type_id)
    head.update(actions=[WaitHeadItem.next_seq.add(1), WaitHeadItem.event_id.set(event_id), WaitHeadItem.type_id.set(type_id),
                         WaitHeadItem.GSI2PK.set("WAITLISTS"), WaitHeadItem.GSI2SK.set(type_id)])
    seq = int(head.next_seq)
    now = clock.iso(clock.now())
    entry_id = new_id("wl")
    entry = WaitEntryItem(
        *WaitEntryItem.key(type_id, seq), GSI1PK=customer_partition(who.sub), GSI1SK=f"WAIT#{now}#{entry_id}",
        entry_id=entry_id, event_id=event_id, type_id=type_id, seq=seq, sub=who.sub, email=who.email, name=who.name,
        qty=data.qty, state=lifecycle.WAITING, joined_at=now,
    )
    if not lifecycle.join(entry):  # joined meanwhile (a double click): that place
        existing = _member_entry(type_id, who.sub)
        if existing is None:
            raise Conflict("Your place changed meanwhile; try again.", code="waitlist_changed")
        return _out(existing), False
    return _out(entry), True


def leave(event_id: str, type_id: str, who: Caller) -> EntryOut:
    _type(event_id, type_id)
    entry = _member_entry(type_id, who.sub)
    if entry is None or entry.state not in (lifecycle.WAITING, lifecycle.OFFERED):
        raise NotFound("You are not on this waiting list.")
    if not lifecycle.leave(entry, clock.iso(clock.now())):
        raise Conflict("Your place changed meanwhile (an offer was made or lapsed); look again.", code="waitlist_changed")
    entry.state = lifecycle.LEFT
    return _out(entry)


def mine(who: Caller) -> WaitlistPage:
    """The caller's places still waiting or offered, oldest first."""
    found = WaitEntryItem.gsi1.query(
        customer_partition(who.sub), WaitEntryItem.GSI1SK.startswith("WAIT#"),
        filter_condition=WaitEntryItem.state.is_in(lifecycle.WAITING, lifecycle.OFFERED),
    )
    return WaitlistPage(entries=[_out(entry) for entry in found])


# ------------------------------------------------------------------ checkout
def _refuse(code: str, detail: str) -> Unprocessable:
    return Unprocessable(detail, error="Offer not accepted", field="offer_code", code=code)


def for_checkout(event: EventItem, chosen: list[tuple[TicketTypeItem, int]], code: str | None,
                 who: Caller) -> tuple[lifecycle.OfferClaim, dict[int, int]] | None:
    """The offer `code` as checkout uses it: the claim for the hold's transaction and the
    seats it holds (shard -> seats), or None without a code. 422 `offer_code`: unknown (or
    another customer's), offer_expired, offer_taken, not_applicable; 422 naming the line's
    qty when it is not the offer's."""
    if code is None:
        return None
    code = code.strip().upper()
    try:
        pointer = OfferCodeItem.get(*OfferCodeItem.key(code)) if code.isalnum() and len(code) <= 32 else None
    except OfferCodeItem.DoesNotExist:
        pointer = None
    if pointer is None or pointer.sub != who.sub:
        raise _refuse("unknown", "There is no such offer of yours.")
    try:
        entry = WaitEntryItem.get(*WaitEntryItem.key(pointer.type_id, int(pointer.seq)), consistent_read=True)
    except WaitEntryItem.DoesNotExist:
        raise _refuse("unknown", "There is no such offer of yours.") from None
    if entry.event_id != event.event_id:
        raise _refuse("not_applicable", "This offer is for another event.")
    if entry.state == lifecycle.TAKEN:
        raise _refuse("offer_taken", "This offer has been used for an order already.")
    if entry.state != lifecycle.OFFERED or entry.offer_code != code or clock.iso(clock.now()) >= entry.offer_expires_at:
        raise _refuse("offer_expired", "This offer has lapsed and passed to the next in line.")
    for index, (ticket_type, qty) in enumerate(chosen):
        if ticket_type.type_id == entry.type_id:
            if qty != int(entry.qty):
                raise InvalidInput(f"items.{index}.qty", f"The offer holds {int(entry.qty)} {ticket_type.name} tickets.")
            takes = {int(t.shard): int(t.qty) for t in entry.offer_takes or []}
            return lifecycle.OfferClaim(type_id=entry.type_id, seq=int(entry.seq), code=code), takes
    raise _refuse("not_applicable", "The offer is for a ticket type not in this order.")


def offer_refused() -> Unprocessable:
    return _refuse("offer_expired", "This offer lapsed (or was used) while the order was placed.")


# ------------------------------------------------------------------ the offer run
def _new_code() -> str:
    import secrets

    from ticketing.vouchers import ALPHABET

    return "".join(secrets.choice(ALPHABET) for _ in range(OFFER_CODE_LENGTH))


def lapse_offers(limit: int = 200) -> int:
    """Lapse the offers whose time is up: their seats go back for the next in line."""
    now = clock.iso(clock.now())
    done = 0
    for k in range(OFFER_PARTITIONS):
        for entry in WaitEntryItem.gsi2.query(f"OFFERS#{k}", WaitEntryItem.GSI2SK < f"{now}#", limit=limit):
            done += lifecycle.lapse(entry, now)
    return done


def make_offers(type_id: str | None = None) -> int:
    """Offer free seats to the first in line of each list with people waiting (or of one
    type's list): in order, each place its whole quantity, stopping at the first that does
    not fit. Answers the offers made."""
    from ticketing import catalogue

    heads = (
        [WaitHeadItem.get(*WaitHeadItem.key(type_id), consistent_read=True)] if type_id
        else WaitHeadItem.gsi2.query("WAITLISTS", filter_condition=WaitHeadItem.waiting > 0)
    )
    made = 0
    loaded: dict[str, tuple[EventItem, list[TicketTypeItem]]] = {}
    for head in heads:
        if int(head.waiting or 0) <= 0:
            continue
        if head.event_id not in loaded:
            loaded[head.event_id] = catalogue.load_event(head.event_id)
        event, types = loaded[head.event_id]
        ticket_type = next((t for t in types if t.type_id == head.type_id), None)
        if ticket_type is None or not enabled(event) or event.status != "on_sale":
            continue
        made += _offer_list(event, ticket_type)
    return made


def _offer_list(event: EventItem, ticket_type: TicketTypeItem) -> int:
    remaining = inventory.read_shards({ticket_type.type_id: int(ticket_type.shards)})[ticket_type.type_id]
    minutes = settings_of(event).offer_minutes
    made = 0
    entries = WaitEntryItem.query(
        f"WAIT#{ticket_type.type_id}", WaitEntryItem.SK.startswith("ENTRY#"),
        filter_condition=WaitEntryItem.state == lifecycle.WAITING, consistent_read=True, limit=OFFERS_PER_LIST,
    )
    for entry in entries:
        qty = int(entry.qty)
        if qty > sum(remaining.values()):
            break  # in order: nobody overtakes the first in line
        takes = inventory.plan(remaining, qty)
        now = clock.now()
        expires = clock.iso(now + timedelta(minutes=minutes))
        code = _new_code()
        ttl = int((now + timedelta(minutes=minutes, days=7)).timestamp())
        if not lifecycle.offer(entry, code, clock.iso(now), expires, takes, ttl):
            break  # another run got there first, or the seats went: the next run looks again
        for shard, seats in takes.items():
            remaining[shard] -= seats
        made += 1
        _tell(entry, event, ticket_type, code, expires)
    return made


def _tell(entry: WaitEntryItem, event: EventItem, ticket_type: TicketTypeItem, code: str, expires: str) -> None:
    """Email and inbox: the offer stands whether or not the email goes (it is in the inbox
    and in GET /api/me/waitlist/)."""
    from ticketing import inbox, mail
    from ticketing.config import settings

    title = f"{int(entry.qty)} ticket(s) for {event.name} are held for you"
    body = (f"Seats came back for {event.name}: {int(entry.qty)} x {ticket_type.name} are held for you until {expires} "
            f"(UTC). Check out with the offer code {code} before then; after that they pass to the next in line.")
    try:
        inbox.record(entry.sub, "waitlist_offer", title, body, dedupe=f"waitlist_offer\n{code}", event_id=event.event_id)
    except Exception:  # noqa: BLE001 - the offer stands; the email still goes
        logger.warning("waiting-list offer not filed in the inbox", extra={"entry_id": entry.entry_id})
    if not entry.email:
        return
    try:
        message = mail.build_waitlist_offer(
            entry.email, entry.name, event_name=event.name, type_name=ticket_type.name, qty=int(entry.qty),
            offer_code=code, expires_at=expires, checkout_url=f"{settings().frontend_url}/events/{event.event_id}",
        )
        mail.send(message)
    except Exception:  # noqa: BLE001 - see above
        logger.warning("waiting-list offer email not sent", extra={"entry_id": entry.entry_id})


def run() -> dict[str, int]:
    """The offer run (the expiry job, every minute): lapse offers, then make new ones."""
    lapsed = lapse_offers()
    offered = make_offers()
    return {"offers_lapsed": lapsed, "offers_made": offered}
