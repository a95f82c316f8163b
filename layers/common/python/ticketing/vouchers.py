"""Vouchers (issue 19): an event's codes that take a percentage or an amount off, or only
reveal hidden ticket types; the organiser's routes and the rules checkout applies.

- **Codes**: given by the organiser (3-32 of A-Z 0-9 - _, compared in upper case) or
  generated: `GENERATED_LENGTH` (10) characters from `ALPHABET`, the 31 upper-case letters
  and digits left when the easily confused I, L, O, 0 and 1 are taken out, drawn with
  `secrets`: 31**10 = about 8.2e14 codes (49.5 bits). Wrong guesses are limited per
  customer (`GUESS_LIMIT` a `GUESS_WINDOW`, then 429 with Retry-After).
- **Discount** (`discount`): on the ticket types the voucher applies to, before any fee:
  percent: `round_half_up(subtotal * value / 100)`; amount: `min(value, subtotal)` off the
  order (one use per order); reveal: 0. Never more than the subtotal it applies to, never
  below zero. `shares` spreads it over the tickets (each ticket's `price_cents` is what was
  paid for it, so refunds by ticket add up to the order's total).
- **Uses**: taken in the hold's own transaction, conditional on `uses < max_uses`, and given
  back by the release transaction (a lapsed hold, a canceled order): the lifecycle writes
  both (`ticketing.lifecycle.orders`). A refund does not give a use back.
- A voucher is never deleted: DELETE retires it (`retired_at`), so orders made with it keep
  their discount and a release can still give its use back.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, Field, StrictInt, StringConstraints

from ticketing import clock, money
from ticketing.auth import Caller
from ticketing.errors import Conflict, InvalidInput, NotFound, TooManyRequests, Unprocessable
from ticketing.ids import MAX_LENGTH as MAX_ID_LENGTH, new_id
from ticketing.lifecycle.writes import condition_failed
from ticketing.pages import decode_key, encode_cursor
from ticketing.table import EventItem, TicketTypeItem, VoucherGuessItem, VoucherItem

ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # 31: no I, L, O, 0, 1
GENERATED_LENGTH = 10
CODE = re.compile(r"[A-Z0-9_-]{3,32}")
MAX_USES = 1_000_000
GUESS_LIMIT = 10  # wrong codes a customer may try per window
GUESS_WINDOW = timedelta(minutes=15)

Kind = Literal["percent", "amount", "reveal"]
TypeId = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_ID_LENGTH)] | StrictInt
CodeIn = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]


# ------------------------------------------------------------------ inputs
class VoucherIn(BaseModel):
    code: CodeIn | None = None
    kind: Kind
    value: StrictInt = 0
    ticket_type_ids: list[TypeId] = Field(default_factory=list, max_length=100)
    max_uses: StrictInt = Field(ge=1, le=MAX_USES)
    valid_from: AwareDatetime | None = None
    valid_until: AwareDatetime | None = None


class VoucherPatch(BaseModel):
    """Only what is sent changes; the code and the kind cannot (orders name them)."""

    value: StrictInt | None = None
    ticket_type_ids: list[TypeId] | None = Field(default=None, max_length=100)
    max_uses: StrictInt | None = Field(default=None, ge=1, le=MAX_USES)
    valid_from: AwareDatetime | None = None
    valid_until: AwareDatetime | None = None


class VoucherOut(BaseModel):
    id: str
    event_id: str
    code: str
    kind: str
    value: int
    ticket_type_ids: list[str]
    max_uses: int
    uses: int
    valid_from: str | None
    valid_until: str | None
    created_at: str
    retired_at: str | None


class VoucherPage(BaseModel):
    vouchers: list[VoucherOut]
    count: int
    next_cursor: str | None = None


def _out(item: VoucherItem) -> VoucherOut:
    return VoucherOut(
        id=item.voucher_id, event_id=item.event_id, code=item.code, kind=item.kind, value=int(item.value),
        ticket_type_ids=list(item.ticket_type_ids or []), max_uses=int(item.max_uses), uses=int(item.uses or 0),
        valid_from=item.valid_from, valid_until=item.valid_until, created_at=item.created_at, retired_at=item.retired_at,
    )


# ------------------------------------------------------------------ rules
def generate_code() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(GENERATED_LENGTH))


def normalise(code: str) -> str:
    return code.strip().upper()


def _check_value(kind: str, value: int) -> None:
    if value < 0:
        raise InvalidInput("value", "A discount cannot be below zero.")
    if kind == "percent" and value > 100:
        raise InvalidInput("value", "A percentage discount is at most 100 (whole percent).")
    if kind == "amount" and value > money.MAX_AMOUNT:
        raise InvalidInput("value", f"An amount off is at most {money.MAX_AMOUNT} minor units.")
    if kind == "reveal" and value != 0:
        raise InvalidInput("value", "A reveal voucher takes nothing off: value must be 0.")


def _check_window(valid_from: str | None, valid_until: str | None) -> None:
    if valid_from and valid_until and valid_until <= valid_from:
        raise InvalidInput("valid_until", "The validity window must end after it starts.")


def _check_types(ids: list, types: list[TicketTypeItem]) -> list[str]:
    known = {t.type_id for t in types}
    chosen: list[str] = []
    for index, raw in enumerate(ids):
        type_id = str(raw)
        if type_id not in known:
            raise InvalidInput(f"ticket_type_ids.{index}", f"The event has no ticket type {type_id}.")
        if type_id not in chosen:
            chosen.append(type_id)
    return chosen


def round_half_up(numerator: int, denominator: int) -> int:
    """numerator / denominator to the nearest whole number, halves up (non-negative only)."""
    return (2 * numerator + denominator) // (2 * denominator)


def discount(kind: str, value: int, subtotal: int) -> int:
    """The one rounding rule: what a voucher takes off `subtotal` (the price of the tickets
    it applies to, before fees), between 0 and `subtotal`."""
    if subtotal <= 0 or kind == "reveal":
        return 0
    if kind == "percent":
        off = round_half_up(subtotal * int(value), 100)
    else:
        off = int(value)
    return max(0, min(off, subtotal))


def shares(prices: list[int], off: int) -> list[int]:
    """`off` spread over tickets priced `prices` (in proportion, rounded down, the cents left
    one each to the first tickets with room): each share is at most its price and they add
    up to `off` exactly (which is at most the sum of the prices)."""
    total = sum(prices)
    if off <= 0 or total <= 0:
        return [0] * len(prices)
    parts = [off * price // total for price in prices]
    left = off - sum(parts)
    for index, price in enumerate(prices):
        if left == 0:
            break
        if parts[index] < price:
            parts[index] += 1
            left -= 1
    return parts


# ------------------------------------------------------------------ admin
def _event(event_id: str) -> tuple[EventItem, list[TicketTypeItem]]:
    from ticketing import catalogue

    return catalogue.load_event(event_id)


def create(event_id: str, data: VoucherIn) -> VoucherOut:
    from pynamodb.exceptions import PutError

    event, types = _event(event_id)
    if event.status != "on_sale":
        raise Conflict(f"Event {event_id} is {event.status}; it takes no new vouchers.", code=f"event_{event.status}")
    _check_value(data.kind, data.value)
    valid_from = clock.iso(data.valid_from) if data.valid_from else None
    valid_until = clock.iso(data.valid_until) if data.valid_until else None
    _check_window(valid_from, valid_until)
    type_ids = _check_types(data.ticket_type_ids, types)
    given = data.code is not None
    if given:
        code = normalise(data.code)
        if not CODE.fullmatch(code):
            raise InvalidInput("code", "A code is 3-32 characters of A-Z, 0-9, - and _.")
    voucher_id = new_id("vc")
    for _attempt in range(1 if given else 5):
        if not given:
            code = generate_code()
        item = VoucherItem(
            *VoucherItem.key(code), GSI1PK=VoucherItem.event_index(event_id), GSI1SK=voucher_id,
            voucher_id=voucher_id, event_id=event_id, code=code, kind=data.kind, value=data.value,
            ticket_type_ids=type_ids, max_uses=data.max_uses, uses=0, valid_from=valid_from, valid_until=valid_until,
            created_at=clock.iso(clock.now()),
        )
        try:
            item.save(condition=VoucherItem.PK.does_not_exist())
            return _out(item)
        except PutError as exc:
            if not condition_failed(exc):
                raise
    raise Conflict(f"The code {code} is already in use; choose another.", code="code_taken", field="code")


def _find(event_id: str, voucher_id: str) -> VoucherItem:
    for item in VoucherItem.gsi1.query(VoucherItem.event_index(event_id), VoucherItem.GSI1SK == voucher_id):
        return VoucherItem.get(*VoucherItem.key(item.code), consistent_read=True)
    raise NotFound(f"Event {event_id} has no voucher {voucher_id}.")


def list_vouchers(event_id: str, limit: int, cursor: str | None) -> VoucherPage:
    _event(event_id)  # 404 for an unknown event
    pattern = {"PK": "VOUCHER#[A-Z0-9_-]{3,32}", "SK": "META", "GSI1PK": re.escape(VoucherItem.event_index(event_id)),
               "GSI1SK": "vc_[a-z0-9]{20}"}
    results = VoucherItem.gsi1.query(
        VoucherItem.event_index(event_id), limit=limit, page_size=limit,
        last_evaluated_key=decode_key(cursor, pattern),
    )
    found = [_out(item) for item in results]
    return VoucherPage(vouchers=found, count=len(found), next_cursor=encode_cursor(results.last_evaluated_key))


def update(event_id: str, voucher_id: str, data: VoucherPatch) -> VoucherOut:
    from pynamodb.exceptions import UpdateError

    _, types = _event(event_id)
    item = _find(event_id, voucher_id)
    changes = data.model_dump(exclude_unset=True)
    for field in ("value", "max_uses", "ticket_type_ids"):
        if field in changes and changes[field] is None:
            raise InvalidInput(field, f"{field} cannot be removed.")
    actions = []
    if "value" in changes:
        _check_value(item.kind, data.value)
        actions.append(VoucherItem.value.set(data.value))
    if "ticket_type_ids" in changes:
        actions.append(VoucherItem.ticket_type_ids.set(_check_types(data.ticket_type_ids, types)))
    valid_from = item.valid_from
    valid_until = item.valid_until
    if "valid_from" in changes:
        valid_from = clock.iso(data.valid_from) if data.valid_from else None
        actions.append(VoucherItem.valid_from.set(valid_from) if valid_from else VoucherItem.valid_from.remove())
    if "valid_until" in changes:
        valid_until = clock.iso(data.valid_until) if data.valid_until else None
        actions.append(VoucherItem.valid_until.set(valid_until) if valid_until else VoucherItem.valid_until.remove())
    _check_window(valid_from, valid_until)
    condition = VoucherItem.PK.exists()
    if "max_uses" in changes:
        if data.max_uses < int(item.uses or 0):
            raise InvalidInput("max_uses", f"{int(item.uses)} uses are already taken; max_uses cannot go below that.")
        actions.append(VoucherItem.max_uses.set(data.max_uses))
        condition &= VoucherItem.uses <= data.max_uses  # a checkout may take a use meanwhile
    if not actions:
        return _out(item)
    try:
        item.update(actions=actions, condition=condition)
    except UpdateError as exc:
        if not condition_failed(exc):
            raise
        raise InvalidInput("max_uses", "More uses were taken meanwhile than the new max_uses allows.") from None
    return _out(item)


def retire(event_id: str, voucher_id: str) -> VoucherOut:
    item = _find(event_id, voucher_id)
    if not item.retired_at:
        item.update(actions=[VoucherItem.retired_at.set(clock.iso(clock.now()))])
    return _out(item)


# ---------------------------------------------------------------- checkout
@dataclass(frozen=True)
class Applied:
    """A voucher as checkout applies it: the code, the discount and each ticket's share
    (by line: a list per chosen line, one share per ticket)."""

    code: str
    discount_cents: int
    shares: list[list[int]]


def _refuse(code: str, detail: str) -> Unprocessable:
    return Unprocessable(detail, error="Voucher not accepted", field="voucher_code", code=code)


def _guess_window(now: datetime) -> tuple[str, int]:
    """The current guess window's start, and seconds until it ends."""
    seconds = int(GUESS_WINDOW.total_seconds())
    epoch = int(now.timestamp())
    start = epoch - epoch % seconds
    return str(start), start + seconds - epoch


def _check_guesses(who: Caller) -> None:
    window, left = _guess_window(clock.now())
    try:
        item = VoucherGuessItem.get(*VoucherGuessItem.key(who.sub))
    except VoucherGuessItem.DoesNotExist:
        return
    if item.window == window and int(item.count or 0) >= GUESS_LIMIT:
        raise TooManyRequests(
            f"Too many wrong voucher codes; try again in {left} seconds.", retry_after=max(1, left),
            code="too_many_voucher_guesses",
        )


def _count_guess(who: Caller) -> None:
    from pynamodb.exceptions import UpdateError

    now = clock.now()
    window, left = _guess_window(now)
    item = VoucherGuessItem(*VoucherGuessItem.key(who.sub))
    try:
        item.update(actions=[VoucherGuessItem.count.add(1)], condition=VoucherGuessItem.window == window)
        return
    except UpdateError as exc:
        if not condition_failed(exc):
            raise
    try:  # a new window (or the first guess): start counting again
        item.update(
            actions=[VoucherGuessItem.window.set(window), VoucherGuessItem.count.set(1),
                     VoucherGuessItem.ttl.set(int(now.timestamp()) + left + 3600)],
            condition=VoucherGuessItem.window.does_not_exist() | (VoucherGuessItem.window != window),
        )
    except UpdateError as exc:
        if not condition_failed(exc):
            raise
        item.update(actions=[VoucherGuessItem.count.add(1)])  # another guess started it meanwhile


def used_up() -> Unprocessable:
    return _refuse("used_up", "This voucher has been used as often as it may be.")


def hidden_refused(index: int, type_id: str, event_id: str) -> InvalidInput:
    """A hidden type without a voucher that reveals it: as if it did not exist."""
    return InvalidInput(f"items.{index}.ticket_type_id", f"Event {event_id} has no ticket type {type_id}.")


def apply(event: EventItem, chosen: list[tuple[TicketTypeItem, int]], code: str | None, who: Caller) -> Applied | None:
    """The voucher `code` applied to checkout's chosen lines, or None without a code.
    Refuses hidden types the voucher does not reveal; 422 `voucher_code` with a `code`:
    unknown, wrong_event, retired, not_yet_valid, expired, used_up, not_applicable; 429
    past the wrong-guess limit. The use itself is taken by the hold's transaction."""
    if code is None:
        for index, (ticket_type, _) in enumerate(chosen):
            if ticket_type.hidden:
                raise hidden_refused(index, ticket_type.type_id, event.event_id)
        return None
    _check_guesses(who)
    code = normalise(code)
    try:
        voucher = VoucherItem.get(*VoucherItem.key(code)) if CODE.fullmatch(code) else None
    except VoucherItem.DoesNotExist:
        voucher = None
    if voucher is None or voucher.event_id != event.event_id:
        _count_guess(who)
        if voucher is None:
            raise _refuse("unknown", "There is no such voucher code.")
        raise _refuse("wrong_event", "This voucher is for another event.")
    now = clock.iso(clock.now())
    if voucher.retired_at:
        raise _refuse("retired", "This voucher has been withdrawn.")
    if voucher.valid_from and now < voucher.valid_from:
        raise _refuse("not_yet_valid", f"This voucher is valid from {voucher.valid_from}.")
    if voucher.valid_until and now >= voucher.valid_until:
        raise _refuse("expired", f"This voucher expired at {voucher.valid_until}.")
    if int(voucher.uses or 0) >= int(voucher.max_uses):
        raise used_up()
    named = set(voucher.ticket_type_ids or [])
    applies = []
    for index, (ticket_type, _) in enumerate(chosen):
        covered = ticket_type.type_id in named if named else not ticket_type.hidden
        if ticket_type.hidden and not covered:
            raise hidden_refused(index, ticket_type.type_id, event.event_id)
        applies.append(covered)
    if not any(applies):
        raise _refuse("not_applicable", "This voucher does not apply to the tickets chosen.")
    prices = [int(t.price_cents) for (t, qty), on in zip(chosen, applies, strict=True) if on for _ in range(qty)]
    off = discount(voucher.kind, int(voucher.value), sum(prices))
    spread = iter(shares(prices, off))
    by_line = [[next(spread) for _ in range(qty)] if on else [0] * qty for (_, qty), on in zip(chosen, applies, strict=True)]
    return Applied(code=voucher.code, discount_cents=off, shares=by_line)
