"""The event catalogue: events, their fixtures and ticket types, and what is left to sell."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, Field, StrictInt, StringConstraints, field_validator
from pynamodb.exceptions import TransactWriteError
from pynamodb.transactions import TransactWrite

from ticketing import clock, inventory, money
from ticketing.auth import Caller
from ticketing.config import settings
from ticketing.errors import InvalidInput, NotFound
from ticketing.ids import new_id
from ticketing.pages import decode_cursor, encode_cursor
from ticketing.table import EventItem, Fixture, TicketTypeItem, connection, event_partition

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]

MAX_EVENT_LENGTH = timedelta(days=366)
MAX_SALES_LEAD = timedelta(days=2 * 366)
MAX_CAPACITY = 1_000_000
MAX_PER_ORDER = 50


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

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        return money.normalise_currency(value)


class TicketTypeIn(BaseModel):
    name: Name
    price_cents: StrictInt = Field(ge=0, le=money.MAX_AMOUNT)
    capacity: StrictInt = Field(ge=1, le=MAX_CAPACITY)
    fixture_id: str | int | None = None
    max_per_order: StrictInt = Field(default=10, ge=1, le=MAX_PER_ORDER)
    sales_start: AwareDatetime | None = None
    sales_end: AwareDatetime | None = None


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
    currency: str
    capacity: int
    available: int
    max_per_order: int
    sales_start: str
    sales_end: str
    on_sale: bool


class EventOut(BaseModel):
    id: str
    name: str
    venue: str
    description: str | None = None
    starts_at: str
    ends_at: str
    currency: str
    status: str
    fixtures: list[FixtureOut]
    ticket_types: list[TicketTypeOut] | None = None


class EventPage(BaseModel):
    events: list[EventOut]
    count: int
    next_cursor: str | None = None


# ------------------------------------------------------------------ rules
def _check_window(field: str, start: datetime, end: datetime, what: str) -> None:
    if start >= end:
        raise InvalidInput(field, f"{what} must end after it starts.")


def create_event(data: EventIn, by: Caller) -> EventOut:
    now = clock.now()
    _check_window("ends_at", data.starts_at, data.ends_at, "The event")
    if data.ends_at <= now:
        raise InvalidInput("ends_at", "The event has already ended; tickets cannot be sold for it.")
    if data.ends_at - data.starts_at > MAX_EVENT_LENGTH:
        raise InvalidInput("ends_at", "An event may last at most a year; create one event per season instead.")
    fixtures = []
    for index, fixture in enumerate(data.fixtures):
        field = f"fixtures.{index}"
        _check_window(f"{field}.ends_at", fixture.starts_at, fixture.ends_at, "A fixture")
        if fixture.starts_at < data.starts_at or fixture.ends_at > data.ends_at:
            raise InvalidInput(field, "A fixture must take place within the event's starts_at and ends_at.")
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
    )
    item.save(condition=EventItem.PK.does_not_exist())
    return _event_out(item, None)


def list_events(limit: int, cursor: str | None) -> EventPage:
    """Events that have not ended, soonest first."""
    limit = max(1, min(limit, settings().page_size_max))
    now = clock.iso(clock.now())
    results = EventItem.gsi1.query(
        "EVENTS",
        filter_condition=(EventItem.ends_at > now) & (EventItem.status == "on_sale"),
        limit=limit,
        last_evaluated_key=decode_cursor(cursor),
        page_size=limit,
    )
    events = [_event_out(item, None) for item in results]
    return EventPage(events=events, count=len(events), next_cursor=encode_cursor(results.last_evaluated_key))


def load_event(event_id: str) -> tuple[EventItem, list[TicketTypeItem]]:
    """The event and its ticket types, in one Query over the event's partition."""
    event: EventItem | None = None
    types: list[TicketTypeItem] = []
    for raw in EventItem._get_connection().query(event_partition(event_id))["Items"]:
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
    event, types = load_event(event_id)
    seats = inventory.availability((t.type_id, int(t.shards)) for t in types)
    return _event_out(event, [_type_out(t, event.currency, seats.get(t.type_id)) for t in types])


def create_ticket_type(event_id: str, data: TicketTypeIn) -> TicketTypeOut:
    event, _ = load_event(event_id)
    fixture = None
    if data.fixture_id is not None:
        fixture = next((f for f in event.fixtures if f.fixture_id == str(data.fixture_id)), None)
        if fixture is None:
            raise InvalidInput("fixture_id", f"Event {event_id} has no fixture {data.fixture_id}.")
    now = clock.now()
    closes = clock.parse_iso(fixture.ends_at if fixture else event.ends_at)
    sales_start = data.sales_start or now
    sales_end = data.sales_end or closes
    _check_window("sales_end", sales_start, sales_end, "The sales window")
    if sales_end > closes:
        raise InvalidInput("sales_end", "Sales must close by the time the event (or fixture) ends.")
    if sales_end <= now:
        raise InvalidInput("sales_end", "The sales window has already closed.")
    if sales_start < now - MAX_SALES_LEAD or sales_start > closes:
        raise InvalidInput("sales_start", "Sales must open within two years and before the event ends.")

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
        shards=len(capacities), created_at=clock.iso(now),
    )
    shards = inventory.new_shards(event_id, type_id, capacities)
    try:
        with TransactWrite(connection=connection()) as transaction:
            transaction.condition_check(EventItem, *EventItem.key(event_id), condition=EventItem.status == "on_sale")
            transaction.save(item, condition=TicketTypeItem.PK.does_not_exist())
            for shard in shards:
                transaction.save(shard, condition=shard.__class__.PK.does_not_exist())
    except TransactWriteError as exc:
        reasons = [r.code for r in (exc.cancellation_reasons or []) if r is not None]
        if reasons and reasons[0] == "ConditionalCheckFailed":
            raise InvalidInput("event_id", f"Event {event_id} is not on sale any more.") from exc
        raise
    return _type_out(item, event.currency, inventory.Availability(data.capacity, data.capacity, 0, 0))


# ---------------------------------------------------------------- shaping
def _event_out(item: EventItem, types: list[TicketTypeOut] | None) -> EventOut:
    return EventOut(
        id=item.event_id, name=item.name, venue=item.venue, description=item.description,
        starts_at=item.starts_at, ends_at=item.ends_at, currency=item.currency, status=item.status,
        fixtures=[
            FixtureOut(id=f.fixture_id, name=f.name, starts_at=f.starts_at, ends_at=f.ends_at)
            for f in item.fixtures or []
        ],
        ticket_types=types,
    )


def _type_out(item: TicketTypeItem, currency: str, seats: inventory.Availability | None) -> TicketTypeOut:
    now = clock.iso(clock.now())
    available = seats.remaining if seats else 0
    return TicketTypeOut(
        id=item.type_id, event_id=item.event_id, fixture_id=item.fixture_id, name=item.name,
        price_cents=int(item.price_cents), currency=currency, capacity=int(item.capacity),
        available=available, max_per_order=int(item.max_per_order),
        sales_start=item.sales_start, sales_end=item.sales_end,
        on_sale=item.sales_start <= now < item.sales_end and available > 0,
    )


def as_json(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="json")
