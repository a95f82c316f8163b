"""The event catalogue: events, their fixtures and ticket types, and what is left to sell."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, Field, StrictBool, StrictInt, StringConstraints, field_validator
from pynamodb.exceptions import TransactWriteError
from pynamodb.transactions import TransactWrite

from ticketing import clock, fees as fee_rules, inventory, money, waitlist
from ticketing import waiting_room as rooms
from ticketing.waiting_room import WaitingRoomIn, WaitingRoomOut, WaitingRoomPatch
from ticketing.auth import Caller
from ticketing.config import settings
from ticketing.errors import ConfigurationError, Conflict, DependencyUnavailable, InvalidInput, NotFound, Unprocessable
from ticketing.ids import MAX_LENGTH as MAX_ID_LENGTH, new_id
from ticketing.lifecycle.writes import condition_failed, failed_parts
from ticketing.pages import ID, STAMP, decode_key, encode_cursor
from ticketing.table import EventItem, FeesMap, Fixture, TicketTypeItem, TransferPolicy, connection, event_partition
from ticketing.waitlist import WaitingListIn, WaitingListOut

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]

MAX_EVENT_LENGTH = timedelta(days=366)
MAX_SALES_LEAD = timedelta(days=2 * 366)
MAX_CAPACITY = 1_000_000
MAX_PER_ORDER = 50
MAX_PER_CUSTOMER = 1000


# ------------------------------------------------------------------ inputs
class FixtureIn(BaseModel):
    name: Name | None = None
    starts_at: AwareDatetime
    ends_at: AwareDatetime


class EventIn(BaseModel):
    name: Name
    venue: Name
    description: Annotated[str, StringConstraints(max_length=5000)] | None = None
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    currency: Annotated[str, StringConstraints(min_length=3, max_length=3)]
    fixtures: list[FixtureIn] = Field(default_factory=list, max_length=100)
    waiting_room: WaitingRoomIn | None = None
    fees: fee_rules.FeesIn | None = None  # service fees (ticketing.fees)
    max_per_customer: StrictInt | None = Field(default=None, ge=1, le=MAX_PER_CUSTOMER)  # tickets per customer, paid + held

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        return money.normalise_currency(value)


class TicketTypeIn(BaseModel):
    name: Name
    price_cents: StrictInt = Field(ge=0, le=money.MAX_AMOUNT)
    capacity: StrictInt = Field(ge=1, le=MAX_CAPACITY)
    fixture_id: Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_LENGTH)] | int | None = None
    max_per_order: StrictInt = Field(default=10, ge=1, le=MAX_PER_ORDER)
    sales_start: AwareDatetime | None = None
    sales_end: AwareDatetime | None = None
    hidden: StrictBool = False  # off the event page; sold only with a voucher that reveals it (ticketing.vouchers)


class TransfersIn(BaseModel):
    """Whether holders may transfer their tickets to someone else, and until when (null:
    until the event starts)."""

    enabled: StrictBool
    until: AwareDatetime | None = None


class EventPatch(BaseModel):
    """An event's details; only what is sent changes. The currency cannot change (orders
    are in it), nor the fixtures."""

    name: Name | None = None
    venue: Name | None = None
    description: Annotated[str, StringConstraints(max_length=5000)] | None = None
    starts_at: AwareDatetime | None = None
    ends_at: AwareDatetime | None = None
    waiting_room: WaitingRoomPatch | None = None
    fees: fee_rules.FeesIn | None = None  # null removes them; new orders only
    max_per_customer: StrictInt | None = Field(default=None, ge=1, le=MAX_PER_CUSTOMER)  # null removes the limit
    transfers: TransfersIn | None = None
    waiting_list: WaitingListIn | None = None  # issue 19: null turns it off


class TicketTypePatch(BaseModel):
    """A ticket type's sale; only what is sent changes. A new price applies to new orders
    only (an order keeps the price it was placed at)."""

    name: Name | None = None
    price_cents: StrictInt | None = Field(default=None, ge=0, le=money.MAX_AMOUNT)
    capacity: StrictInt | None = Field(default=None, ge=1, le=MAX_CAPACITY)
    max_per_order: StrictInt | None = Field(default=None, ge=1, le=MAX_PER_ORDER)
    sales_start: AwareDatetime | None = None
    sales_end: AwareDatetime | None = None
    hidden: StrictBool | None = None


# ----------------------------------------------------------------- outputs
class FixtureOut(BaseModel):
    id: str
    name: str | None = None
    starts_at: str
    ends_at: str


class TicketTypeOut(BaseModel):
    id: str
    event_id: str
    fixture_id: str | None
    name: str
    price_cents: int
    fees_cents: int = 0  # the fee a buyer pays on one ticket (all-in price: price_cents + fees_cents)
    currency: str
    capacity: int
    available: int
    max_per_order: int
    sales_start: str
    sales_end: str
    on_sale: bool
    hidden: bool = False


class TransfersOut(BaseModel):
    enabled: bool
    until: str | None = None  # null: until the event starts


class EventOut(BaseModel):
    id: str
    name: str
    venue: str
    description: str | None = None
    starts_at: str
    ends_at: str
    currency: str
    status: str
    fees: fee_rules.FeesIn | None = None
    max_per_customer: int | None = None
    fixtures: list[FixtureOut]
    ticket_types: list[TicketTypeOut] | None = None
    waiting_room: WaitingRoomOut | None = None
    transfers: TransfersOut = TransfersOut(enabled=False)
    waiting_list: WaitingListOut | None = None


class EventPage(BaseModel):
    events: list[EventOut]
    count: int
    next_cursor: str | None = None


# ------------------------------------------------------------------ rules
def _check_window(field: str, start: datetime, end: datetime, what: str) -> None:
    if start >= end:
        raise InvalidInput(field, f"{what} must end after it starts.")


def _check_event(starts_at: datetime, ends_at: datetime, fixtures: list[tuple[datetime, datetime]], now: datetime) -> None:
    """The rules an event's times follow, on create and on edit."""
    _check_window("ends_at", starts_at, ends_at, "The event")
    if ends_at <= now:
        raise InvalidInput("ends_at", "The event has already ended; tickets cannot be sold for it.")
    if ends_at - starts_at > MAX_EVENT_LENGTH:
        raise InvalidInput("ends_at", "An event may last at most a year; create one event per season instead.")
    for index, (fixture_starts, fixture_ends) in enumerate(fixtures):
        field = f"fixtures.{index}"
        _check_window(f"{field}.ends_at", fixture_starts, fixture_ends, "A fixture")
        if fixture_starts < starts_at or fixture_ends > ends_at:
            raise InvalidInput(field, "A fixture must take place within the event's starts_at and ends_at.")


def _check_sales(start: datetime, end: datetime, closes: datetime, now: datetime) -> None:
    """The rules a sales window follows, on create and on edit: it opens before it
    closes, closes by `closes` (the end of the event or fixture) and not in the past."""
    _check_window("sales_end", start, end, "The sales window")
    if end > closes:
        raise InvalidInput("sales_end", "Sales must close by the time the event (or fixture) ends.")
    if end <= now:
        raise InvalidInput("sales_end", "The sales window has already closed.")
    if start < now - MAX_SALES_LEAD or start > closes:
        raise InvalidInput("sales_start", "Sales must open within two years and before the event ends.")


def event_fees(event: EventItem) -> fee_rules.Fees | None:
    return fee_rules.Fees.of(event.fees.as_dict()) if event.fees is not None else None


def fees_map(fees: fee_rules.FeesIn | fee_rules.Fees | None) -> FeesMap | None:
    if fees is None:
        return None
    return FeesMap(**(fees.model_dump() if isinstance(fees, fee_rules.FeesIn) else fees.as_dict()))


def check_minimum(price_cents: int, currency: str, fees: fee_rules.Fees | None, field: str) -> None:
    """A paid price (with the fee the buyer pays) under Stripe's minimum charge for the
    currency would never be charged: refused when the price or the fees are set."""
    all_in = price_cents + fee_rules.one_ticket_fee(price_cents, fees)
    if money.below_minimum(all_in, currency):
        least = money.minimum_charge(currency)
        raise Unprocessable(
            f"A ticket at {all_in} {currency.upper()} minor units (fees included) is under Stripe's minimum charge of "
            f"{least}; make it free (0) or at least {least}.",
            error="Below the minimum charge", code="below_minimum_charge", field=field, minimum_cents=least,
        )


def publishable_key() -> str:
    """Stripe's publishable key for the front end: a setting, so serving it needs no access
    to the Stripe secret."""
    key = settings().stripe_publishable_key
    if not key.startswith("pk_"):
        raise ConfigurationError("STRIPE_PUBLISHABLE_KEY must be a Stripe publishable key (pk_...)")
    return key


def create_event(data: EventIn, by: Caller) -> EventOut:
    now = clock.now()
    _check_event(data.starts_at, data.ends_at, [(f.starts_at, f.ends_at) for f in data.fixtures], now)
    fixtures = []
    for fixture in data.fixtures:
        fixtures.append(
            Fixture(
                fixture_id=new_id("fx"), name=fixture.name,
                starts_at=clock.iso(fixture.starts_at), ends_at=clock.iso(fixture.ends_at),
            )
        )
    event_id = new_id("ev")
    starts_at = clock.iso(data.starts_at)
    pk, sk = EventItem.key(event_id)
    item = EventItem(
        pk, sk,
        GSI1SK=f"{starts_at}#{event_id}",
        event_id=event_id, name=data.name, venue=data.venue, description=data.description,
        starts_at=starts_at, ends_at=clock.iso(data.ends_at), currency=data.currency,
        status="on_sale", fixtures=fixtures, created_at=clock.iso(now), created_by=by.sub,
        fees=fees_map(data.fees), max_per_customer=data.max_per_customer,
    )
    if data.waiting_room is None:
        item.save(condition=EventItem.PK.does_not_exist())
        return _event_out(item, None)
    item.waiting_room, listing = rooms.configure(item, data.waiting_room)
    with TransactWrite(connection=connection()) as tx:
        tx.save(item, condition=EventItem.PK.does_not_exist())
        for extra in listing:
            tx.save(extra)
    return _event_out(item, None)


def list_events(limit: int, cursor: str | None) -> EventPage:
    """Events that have not ended, soonest first."""
    limit = max(1, min(limit, settings().page_size_max))
    now = clock.iso(clock.now())
    results = EventItem.gsi1.query(
        "EVENTS",
        filter_condition=(EventItem.ends_at > now) & (EventItem.status == "on_sale"),
        limit=limit,
        last_evaluated_key=decode_key(cursor, {"PK": "EVENT#" + ID, "SK": "META", "GSI1PK": "EVENTS", "GSI1SK": STAMP + "#" + ID}),
        page_size=limit,
    )
    events = [_event_out(item, None) for item in results]
    return EventPage(events=events, count=len(events), next_cursor=encode_cursor(results.last_evaluated_key))


def list_all_events(limit: int, cursor: str | None) -> EventPage:
    """Every event for the organiser's desk, over and canceled ones included, latest start
    first (the public list above leaves those out)."""
    limit = max(1, min(limit, settings().page_size_max))
    results = EventItem.gsi1.query(
        "EVENTS",
        scan_index_forward=False,
        limit=limit,
        last_evaluated_key=decode_key(cursor, {"PK": "EVENT#" + ID, "SK": "META", "GSI1PK": "EVENTS", "GSI1SK": STAMP + "#" + ID}),
        page_size=limit,
    )
    events = [_event_out(item, None) for item in results]
    return EventPage(events=events, count=len(events), next_cursor=encode_cursor(results.last_evaluated_key))


def load_event(event_id: str, consistent: bool = False) -> tuple[EventItem, list[TicketTypeItem]]:
    """The event and its ticket types, in one Query over the event's partition."""
    event: EventItem | None = None
    types: list[TicketTypeItem] = []
    for raw in EventItem._get_connection().query(event_partition(event_id), consistent_read=consistent)["Items"]:
        kind = raw["SK"]["S"]
        if kind == "META":
            event = EventItem.from_raw_data(raw)
        elif kind.startswith("TYPE#"):
            types.append(TicketTypeItem.from_raw_data(raw))
    if event is None:
        raise NotFound(f"There is no event {event_id}.")
    types.sort(key=lambda t: (t.created_at, t.type_id))
    return event, types


def get_event(event_id: str) -> EventOut:
    """The public event page: hidden ticket types are left out (a revealing voucher sells them)."""
    event, types = load_event(event_id)
    page = _with_types(event, [t for t in types if not t.hidden])
    waitlist.adjust_page(event, page)  # seats kept for those waiting are not the public's
    return page


def _with_types(event: EventItem, types: list[TicketTypeItem]) -> EventOut:
    seats = inventory.availability((t.type_id, int(t.shards)) for t in types)
    fees = event_fees(event)
    return _event_out(event, [_type_out(t, event.currency, seats.get(t.type_id), fees) for t in types])


def create_ticket_type(event_id: str, data: TicketTypeIn) -> TicketTypeOut:
    event, _ = load_event(event_id)
    fixture = None
    if data.fixture_id is not None:
        fixture = next((f for f in event.fixtures if f.fixture_id == str(data.fixture_id)), None)
        if fixture is None:
            raise InvalidInput("fixture_id", f"Event {event_id} has no fixture {data.fixture_id}.")
    check_minimum(data.price_cents, event.currency, event_fees(event), "price_cents")
    now = clock.now()
    closes = clock.parse_iso(fixture.ends_at if fixture else event.ends_at)
    sales_start = data.sales_start or now
    sales_end = data.sales_end or closes
    _check_sales(sales_start, sales_end, closes, now)

    cfg = settings()
    capacities = inventory.shard_capacities(data.capacity, cfg.inventory_shard_size, cfg.inventory_max_shards)
    type_id = new_id("tt")
    pk, sk = TicketTypeItem.key(event_id, type_id)
    item = TicketTypeItem(
        pk, sk,
        type_id=type_id, event_id=event_id, name=data.name, price_cents=data.price_cents,
        capacity=data.capacity, max_per_order=data.max_per_order,
        fixture_id=fixture.fixture_id if fixture else None,
        sales_start=clock.iso(sales_start), sales_end=clock.iso(sales_end),
        shards=len(capacities), created_at=clock.iso(now), hidden=data.hidden or None,
    )
    shards = inventory.new_shards(event_id, type_id, capacities)
    try:
        with TransactWrite(connection=connection()) as transaction:
            transaction.condition_check(EventItem, *EventItem.key(event_id), condition=EventItem.status == "on_sale")
            transaction.save(item, condition=TicketTypeItem.PK.does_not_exist())
            for shard in shards:
                transaction.save(shard, condition=shard.__class__.PK.does_not_exist())
    except TransactWriteError as exc:
        if "event" in failed_parts(exc, ["event"]):  # the condition check comes first
            raise InvalidInput("event_id", f"Event {event_id} is not on sale any more.") from exc
        raise
    return _type_out(item, event.currency, inventory.Availability(data.capacity, data.capacity, 0, 0), event_fees(event))


# ---------------------------------------------------------------- editing
def _on_sale(event: EventItem) -> None:
    if event.status != "on_sale":
        raise Conflict(f"Event {event.event_id} is {event.status}; it can no longer be edited.", code=f"event_{event.status}")


def update_event(event_id: str, data: EventPatch) -> EventOut:
    """Edit an event's details with the same rules as creating it. Its ticket types'
    sales must still close by its end. A change of its times or venue is told to every
    ticket holder, once, and re-stamps the tickets' copy of its end (ticketing.event_changes);
    tickets keep the event name copied onto them at checkout."""
    event, types = load_event(event_id)
    _on_sale(event)
    changes = data.model_dump(exclude_unset=True)
    if not changes:
        return _with_types(event, types)
    for field in ("name", "venue", "starts_at", "ends_at", "transfers"):
        if field in changes and changes[field] is None:
            raise InvalidInput(field, f"{field} cannot be removed.")
    if "fees" in changes:  # every ticket type must stay chargeable with the new fees
        new_fees = fee_rules.Fees.of(data.fees)
        for ticket_type in types:
            check_minimum(int(ticket_type.price_cents), event.currency, new_fees, "fees")
    starts_at = data.starts_at or clock.parse_iso(event.starts_at)
    ends_at = data.ends_at or clock.parse_iso(event.ends_at)
    if "starts_at" in changes or "ends_at" in changes:
        fixtures = [(clock.parse_iso(f.starts_at), clock.parse_iso(f.ends_at)) for f in event.fixtures or []]
        _check_event(starts_at, ends_at, fixtures, clock.now())
        late = [t for t in types if t.fixture_id is None and clock.parse_iso(t.sales_end) > ends_at]
        if late:
            raise InvalidInput("ends_at", f"Ticket type {late[0].name} sells until {late[0].sales_end}; move its sales_end first.")
    actions = [getattr(EventItem, field).set(getattr(data, field)) for field in ("name", "venue") if field in changes]
    listing = []
    if changes.get("waiting_room") is not None:
        room, listing = rooms.configure(event, data.waiting_room)
        actions.append(EventItem.waiting_room.set(room))
    elif "waiting_room" in changes:
        actions.append(EventItem.waiting_room.remove())
    if "description" in changes:
        actions.append(EventItem.description.set(data.description) if data.description else EventItem.description.remove())
    if "fees" in changes:  # orders already made keep the fees they were sold with
        actions.append(EventItem.fees.set(fees_map(data.fees)) if data.fees is not None else EventItem.fees.remove())
    if "max_per_customer" in changes:
        actions.append(EventItem.max_per_customer.set(data.max_per_customer) if data.max_per_customer is not None
                       else EventItem.max_per_customer.remove())
    if "transfers" in changes:
        until = data.transfers.until
        if until is not None and until > ends_at:
            raise InvalidInput("transfers.until", "transfers.until must not be after the event ends.")
        actions.append(EventItem.transfers.set(TransferPolicy(
            enabled=data.transfers.enabled, until=clock.iso(until) if until else None)))
    if "waiting_list" in changes:
        actions.append(waitlist.settings_action(data.waiting_list))
    if "starts_at" in changes or "ends_at" in changes:
        starts = clock.iso(starts_at)
        actions += [EventItem.starts_at.set(starts), EventItem.ends_at.set(clock.iso(ends_at)),
                    EventItem.GSI1SK.set(f"{starts}#{event_id}")]
    from ticketing import event_changes

    new = {"venue": data.venue} if "venue" in changes else {}
    if "starts_at" in changes or "ends_at" in changes:
        new.update(starts_at=clock.iso(starts_at), ends_at=clock.iso(ends_at))
    if event_changes.changes(event, new):  # ticket holders are told, once (off the request path)
        event_changes.record_change(event, actions, new)
        event, types = load_event(event_id)
        return _with_types(event, types)
    from pynamodb.exceptions import UpdateError

    try:
        event.update(actions=actions, condition=EventItem.status == "on_sale")
    except UpdateError as exc:
        if condition_failed(exc):
            raise Conflict(f"Event {event_id} was canceled meanwhile; it can no longer be edited.", code="event_canceled") from exc
        raise
    if new:  # sent again unchanged: perhaps a retry of a change whose queueing failed
        event_changes.resume(event_id)
    for extra in listing:  # the admission job's list of rooms (an item per event: saving again changes nothing)
        extra.save()
    return _with_types(event, types)  # `update` refreshed `event` from what DynamoDB wrote


def update_ticket_type(event_id: str, type_id: str, data: TicketTypePatch) -> TicketTypeOut:
    """Change a ticket type's price (new orders only), capacity (never below what is sold
    or held, safe against concurrent checkouts: `inventory.resize`), sales window or
    name, all in one write."""
    event, types = load_event(event_id)
    _on_sale(event)
    item = next((t for t in types if t.type_id == type_id), None)
    if item is None:
        raise NotFound(f"Event {event_id} has no ticket type {type_id}.")
    changes = data.model_dump(exclude_unset=True)
    for field, value in changes.items():
        if value is None:
            raise InvalidInput(field, f"{field} cannot be removed.")
    if "price_cents" in changes:
        check_minimum(changes["price_cents"], event.currency, event_fees(event), "price_cents")
    actions = [getattr(TicketTypeItem, field).set(changes[field]) for field in ("name", "price_cents", "max_per_order", "hidden")
               if field in changes]
    if "sales_start" in changes or "sales_end" in changes:
        now = clock.now()
        fixture = next((f for f in event.fixtures or [] if f.fixture_id == item.fixture_id), None)
        closes = clock.parse_iso(fixture.ends_at if fixture else event.ends_at)
        start = data.sales_start or clock.parse_iso(item.sales_start)
        end = data.sales_end or clock.parse_iso(item.sales_end)
        _check_sales(start, end, closes, now)
        actions += [TicketTypeItem.sales_start.set(clock.iso(start)), TicketTypeItem.sales_end.set(clock.iso(end))]
    cfg = settings()
    if "capacity" in changes and changes["capacity"] != int(item.capacity):
        try:
            inventory.resize(event_id, type_id, changes["capacity"], cfg.inventory_shard_size, cfg.inventory_max_shards, actions)
        except inventory.BelowCommitted as below:
            raise Conflict(
                f"{below.committed} {item.name} tickets are sold or held; capacity cannot go below {below.committed}.",
                error="Capacity below tickets sold", code="capacity_below_sold", sold_and_held=below.committed,
            ) from None
        except inventory.CapacityContention:
            raise DependencyUnavailable("Checkouts kept taking these seats; try again.", retry_after=1, code="contention") from None
        except inventory.SalesClosed:
            raise Conflict(f"Event {event_id} was canceled meanwhile; it can no longer be edited.", code="event_canceled") from None
    elif actions:
        item.update(actions=actions, condition=TicketTypeItem.PK.exists())
    fresh = TicketTypeItem.get(*TicketTypeItem.key(event_id, type_id), consistent_read=True)
    seats = inventory.availability([(fresh.type_id, int(fresh.shards))])
    return _type_out(fresh, event.currency, seats.get(type_id), event_fees(event))


# ---------------------------------------------------------------- shaping
def _event_out(item: EventItem, types: list[TicketTypeOut] | None) -> EventOut:
    return EventOut(
        id=item.event_id, name=item.name, venue=item.venue, description=item.description,
        starts_at=item.starts_at, ends_at=item.ends_at, currency=item.currency, status=item.status,
        fees=fee_rules.FeesIn(**event_fees(item).as_dict()) if item.fees is not None else None,
        max_per_customer=int(item.max_per_customer) if item.max_per_customer is not None else None,
        fixtures=[
            FixtureOut(id=f.fixture_id, name=f.name, starts_at=f.starts_at, ends_at=f.ends_at)
            for f in item.fixtures or []
        ],
        ticket_types=types, waiting_list=waitlist.settings_of(item),
        waiting_room=rooms.room_out(item.waiting_room),
        transfers=TransfersOut(enabled=bool(item.transfers and item.transfers.enabled),
                               until=item.transfers.until if item.transfers else None),
    )


def _type_out(item: TicketTypeItem, currency: str, seats: inventory.Availability | None,
              fees: fee_rules.Fees | None = None) -> TicketTypeOut:
    now = clock.iso(clock.now())
    available = seats.remaining if seats else 0
    return TicketTypeOut(
        id=item.type_id, event_id=item.event_id, fixture_id=item.fixture_id, name=item.name,
        price_cents=int(item.price_cents), fees_cents=fee_rules.one_ticket_fee(int(item.price_cents), fees),
        currency=currency, capacity=int(item.capacity),
        available=available, max_per_order=int(item.max_per_order),
        sales_start=item.sales_start, sales_end=item.sales_end,
        on_sale=item.sales_start <= now < item.sales_end and available > 0, hidden=bool(item.hidden),
    )


def find_event(event_id: str) -> EventItem | None:
    """The event item, or None (a reader that can do without it: a receipt, a notice)."""
    try:
        return EventItem.get(*EventItem.key(event_id))
    except EventItem.DoesNotExist:
        return None
