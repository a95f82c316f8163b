"""The on-sale waiting room: buyers join an event's queue, are admitted at the rate the sale
can serve, and check out with a signed admission token (README, "Waiting room").

Positions. A join takes the next number from one shard of a counter (`QueueCounterItem`):
before the room opens from one of EARLY_SHARDS `E` shards, after it from one of LATE_SHARDS
`L` shards, so no counter key takes more than its share of a rush. At opening the admission
job closes the `E` shards (a conditional write each: a join that comes after takes an `L`
number) and draws a key; a pre-opening arrival's position is then a keyed permutation
(`Draw`, a Feistel network) of its index among them: a random order no arrival time can
influence. Later arrivals follow in arrival order: `L` number n of shard k is position
E + n * LATE_SHARDS + k + 1, and a join reads the shards' counts (one eventually consistent
BatchGetItem) and takes a number from the emptiest, so the shards stay level and the
interleaving follows the order of arrival (to within the joins in flight at once).

Admission. The admission job (`tick`, every second) advances `admitted` by the rate
(`admit_per_minute`, default ADMIT_SHARE of the Stripe budget's PaymentIntent rate), never
past the buyers there are or the seats left to sell (minus the buyers admitted in the last
token lifetime), slowed while the Stripe budget runs full and recovering after, stopped
while paused; `serving` is the position of the last admitted buyer (`Layout`). It writes the
state to STATE_REPLICAS keys (joins and polls read one at random, cached CACHE_SECONDS in a
container) and publishes `queue/<event_id>.json` ({"serving", ...}) to the bucket a CDN
serves, so clients far from the front read that instead of the API.

Tokens. The first poll at or past the front stamps the place admitted (`admission_expires_at`
= then + `admission_ttl_seconds`); the token is `AT1.<event_id>.<sub>.<round>.<expires_at>.<mac>`,
HMAC-SHA256 under a key from Secrets Manager, so checkout checks it without reading the table
and the hold transaction spends it (`lifecycle.admissions`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import random
import secrets as _secrets
import time
from dataclasses import dataclass, field
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, Field, StrictBool, StrictInt

from ticketing import clock
from ticketing.auth import Caller
from ticketing.errors import Conflict, Forbidden, NotFound, Unprocessable
from ticketing.lifecycle import admissions
from ticketing.lifecycle.admissions import Admission
from ticketing.table import (
    QUEUE_INDEX_PARTITIONS,
    EventItem,
    QueueCounterItem,
    QueuePlaceItem,
    QueueRoomItem,
    QueueStateItem,
    WaitingRoom,
)

EARLY_SHARDS = 8
LATE_SHARDS = 8
STATE_REPLICAS = 4
CACHE_SECONDS = 1.0  # a container reuses a state (and a checkout a room's setting) this long
SETTING_CACHE_SECONDS = 5.0
PRE_QUEUE_SECONDS = 3600  # joining opens this long before `opens_at`
ADMIT_SHARE = 0.8  # the default rate: this share of the Stripe budget's PaymentIntents a minute
DEFAULT_TTL_SECONDS = 600
MAX_CATCH_UP_SECONDS = 5.0  # a late tick admits at most this many seconds' worth
MARK_SECONDS = 10
PRESSURE_SHARE = 0.9  # the budget this full in a recent second is pressure
SLOW_DOWN = 0.7  # the rate's factor under pressure, each tick
RECOVER = 0.05  # and back up, each tick without
MIN_FACTOR = 0.1
MIN_RETRY_AFTER = 2
MAX_RETRY_AFTER = 120
TOKEN_TAG = "AT1"


# ----------------------------------------------------------------- settings
class WaitingRoomIn(BaseModel):
    enabled: StrictBool = True
    opens_at: AwareDatetime
    admit_per_minute: StrictInt | None = Field(default=None, ge=1, le=1_000_000)
    admission_ttl_seconds: StrictInt = Field(default=DEFAULT_TTL_SECONDS, ge=60, le=3600)
    paused: StrictBool = False


class WaitingRoomPatch(BaseModel):
    enabled: StrictBool | None = None
    opens_at: AwareDatetime | None = None
    admit_per_minute: StrictInt | None = Field(default=None, ge=1, le=1_000_000)
    admission_ttl_seconds: StrictInt | None = Field(default=None, ge=60, le=3600)
    paused: StrictBool | None = None


class WaitingRoomOut(BaseModel):
    enabled: bool
    opens_at: str
    admit_per_minute: int
    admission_ttl_seconds: int
    paused: bool


def default_rate() -> int:
    """Buyers a minute by default: ADMIT_SHARE of the PaymentIntents the Stripe budget allows."""
    from ticketing import stripe_budget

    return max(1, int(stripe_budget.allowance("payment_intents.create") * 60 * ADMIT_SHARE))


def rate_of(room: WaitingRoom) -> int:
    return int(room.admit_per_minute) if room.admit_per_minute else default_rate()


def room_out(room: WaitingRoom | None) -> WaitingRoomOut | None:
    if room is None:
        return None
    return WaitingRoomOut(enabled=bool(room.enabled), opens_at=room.opens_at, admit_per_minute=rate_of(room),
                          admission_ttl_seconds=int(room.admission_ttl_seconds or DEFAULT_TTL_SECONDS),
                          paused=bool(room.paused))


def configure(event: EventItem, data: WaitingRoomIn | WaitingRoomPatch) -> tuple[WaitingRoom, list]:
    """The event's waiting room with `data` applied, and the writes that list it for the
    admission job (the catalogue saves the event itself). A new room needs `opens_at`."""
    from ticketing.errors import InvalidInput

    changes = data.model_dump(exclude_unset=True)
    current = event.waiting_room
    if current is None and "opens_at" not in changes:
        raise InvalidInput("waiting_room.opens_at", "A new waiting room needs opens_at.")
    room = WaitingRoom(
        enabled=current.enabled if current is not None else True, opens_at=current.opens_at if current is not None else "",
        admit_per_minute=current.admit_per_minute if current is not None else None,
        admission_ttl_seconds=current.admission_ttl_seconds if current is not None else DEFAULT_TTL_SECONDS,
        paused=current.paused if current is not None else False,
    )
    for name, value in changes.items():
        if value is None and name != "admit_per_minute":
            raise InvalidInput(f"waiting_room.{name}", f"waiting_room.{name} cannot be removed.")
        setattr(room, name, clock.iso(value) if name == "opens_at" else value)
    if room.opens_at >= event.ends_at:
        raise InvalidInput("waiting_room.opens_at", f"The waiting room must open before the event ends ({event.ends_at}).")
    listing = QueueRoomItem(*QueueRoomItem.key(event.event_id), event_id=event.event_id, ends_at=event.ends_at,
                            listed=_secrets.token_hex(8))
    return room, [listing] if room.enabled else []


# --------------------------------------------------------------- positions
class Draw:
    """A keyed permutation of range(size): a 4-round Feistel network over the smallest even
    power of two that holds it, cycle-walking back into range."""

    def __init__(self, seed: str, size: int) -> None:
        self.size = size
        self.key = bytes.fromhex(seed)
        bits = max(2, math.ceil(math.log2(max(size, 2))))
        self.half = (bits + 1) // 2
        self.mask = (1 << self.half) - 1

    def _round(self, r: int, value: int) -> int:
        digest = hmac.new(self.key, bytes([r]) + value.to_bytes(8, "big"), hashlib.sha256).digest()
        return int.from_bytes(digest[:8], "big") & self.mask

    def _once(self, x: int) -> int:
        left, right = x >> self.half, x & self.mask
        for r in range(4):
            left, right = right, left ^ self._round(r, right)
        return (left << self.half) | right

    def __call__(self, index: int) -> int:
        x = self._once(index)
        while x >= self.size:
            x = self._once(x)
        return x


@dataclass
class Layout:
    """Who holds which position, from the counters: `early` pre-opening arrivals per shard
    (frozen at opening), `late` arrivals since per shard."""

    early: list[int]
    late: list[int]
    seed: str | None = None
    _draw: Draw | None = field(default=None, repr=False)

    @property
    def early_total(self) -> int:
        return sum(self.early)

    @property
    def total(self) -> int:
        return self.early_total + sum(self.late)

    def position(self, phase: str, shard: int, number: int) -> int | None:
        """1-based; None for a pre-opening arrival before the draw."""
        if phase == "E":
            if self.seed is None or number >= (self.early[shard] if shard < len(self.early) else 0):
                return None
            if self._draw is None:
                self._draw = Draw(self.seed, self.early_total)
            return 1 + self._draw(sum(self.early[:shard]) + number)
        return self.early_total + number * LATE_SHARDS + shard + 1

    def people(self, serving: int) -> int:
        """Buyers at positions 1..serving."""
        early = self.early_total
        if serving <= early:
            return max(0, serving)
        beyond = serving - early
        return early + sum(min(count, max(0, (beyond - k - 1) // LATE_SHARDS + 1)) for k, count in enumerate(self.late))

    def serving_for(self, people: int) -> int:
        """The smallest position through which `people` buyers stand."""
        early = self.early_total
        if people <= early:
            return max(0, people)
        low, high = early, early + max(self.late or [0]) * LATE_SHARDS + LATE_SHARDS
        while low < high:
            middle = (low + high) // 2
            if self.people(middle) >= people:
                high = middle
            else:
                low = middle + 1
        return low


def layout_of(state: QueueStateItem) -> Layout:
    return Layout([int(n) for n in state.early or []], [int(n) for n in state.late or []] or [0] * LATE_SHARDS,
                  state.seed if state.opened else None)


def retry_after(wait: float | None) -> int:
    """Seconds before the next poll: a fifth of the wait, 2 s near the front, 2 min far back."""
    if wait is None:
        return 30
    return int(min(MAX_RETRY_AFTER, max(MIN_RETRY_AFTER, math.ceil(wait / 5))))


def advance(admitted: int, carry: float, rate: float, elapsed: float, waiting: int, room_for: int) -> tuple[int, float]:
    """Buyers to admit now and the fraction carried on: `rate` a minute over `elapsed`
    seconds (at most MAX_CATCH_UP_SECONDS), never more than are waiting or than `room_for`."""
    owed = carry + rate * min(max(elapsed, 0.0), MAX_CATCH_UP_SECONDS) / 60
    whole = int(owed)
    taken = max(0, min(whole, waiting, room_for))
    left = owed - taken if taken == whole else 0.0  # nobody (or no seat) to admit: nothing is owed
    return admitted + taken, min(left, 1.0)


# ----------------------------------------------------------------- reading
_cache: dict[tuple[str, str], tuple[float, object]] = {}


def _cached(kind: str, key: str, ttl: float, load):
    hit = _cache.get((kind, key))
    now = time.monotonic()
    if hit is not None and now - hit[0] < ttl:
        return hit[1]
    value = load()
    _cache[(kind, key)] = (now, value)
    return value


def clear_cache() -> None:
    _cache.clear()


def read_state(event_id: str, consistent: bool = False) -> QueueStateItem:
    def load() -> QueueStateItem:
        replica = 0 if consistent else random.randrange(STATE_REPLICAS)
        try:
            return QueueStateItem.get(*QueueStateItem.key(event_id, replica), consistent_read=consistent)
        except QueueStateItem.DoesNotExist:
            return QueueStateItem(*QueueStateItem.key(event_id, replica), late=[0] * LATE_SHARDS)

    if consistent:
        return load()
    return _cached("state", event_id, CACHE_SECONDS, load)


def _event(event_id: str) -> EventItem:
    try:
        return EventItem.get(*EventItem.key(event_id))
    except EventItem.DoesNotExist:
        raise NotFound(f"There is no event {event_id}.") from None


def _room(event: EventItem) -> WaitingRoom:
    room = event.waiting_room
    if room is None or not room.enabled:
        raise Conflict(f"Event {event.event_id} has no waiting room; buy directly.", code="no_waiting_room")
    if event.status != "on_sale":
        raise Conflict(f"Event {event.event_id} is {event.status}; its tickets are not on sale.", code="event_not_on_sale")
    return room


def _place(event_id: str, sub: str, consistent: bool = False) -> QueuePlaceItem | None:
    try:
        return QueuePlaceItem.get(*QueuePlaceItem.key(event_id, sub), consistent_read=consistent)
    except QueuePlaceItem.DoesNotExist:
        return None


# ------------------------------------------------------------------- answers
class PlaceOut(BaseModel):
    position: int | None = Field(description="1-based; null before the pre-opening draw")
    serving: int
    estimated_wait_seconds: int | None
    admission_token: str | None = None
    admission_expires_at: str | None = None
    status: str = Field(description="waiting, admitted, spent, expired or sold_out")
    opens_at: str


class RoomView(BaseModel):
    waiting: int
    admitted: int
    spent: int
    expired: int
    abandoned: int
    admit_per_minute: int
    estimated_clear_seconds: int | None
    serving: int
    paused: bool
    sold_out: bool
    opened: bool


def _finished(place: QueuePlaceItem, now: float) -> bool:
    """Spent, or admitted and lapsed: joining again takes a new place at the back."""
    return place.spent_at is not None or (place.expires_at is not None and int(place.expires_at) <= now)


def _answer(place: QueuePlaceItem, state: QueueStateItem, room: WaitingRoom, now: float,
            mint: bool) -> tuple[PlaceOut, int | None]:
    layout = layout_of(state)
    position = layout.position(place.phase, int(place.shard), int(place.number))
    serving = int(state.serving or 0)
    rate = float(state.rate or 0) if state.opened else float(rate_of(room))
    base = {"position": position, "serving": serving, "opens_at": room.opens_at}
    if place.spent_at is not None:
        return PlaceOut(**base, estimated_wait_seconds=0, status="spent"), None
    if place.admitted_at is not None:
        expires = int(place.expires_at)
        if expires <= now:
            return PlaceOut(**base, estimated_wait_seconds=None, status="expired",
                            admission_expires_at=_iso(expires)), None
        return PlaceOut(**base, estimated_wait_seconds=0, status="admitted", admission_token=sign(place, expires),
                        admission_expires_at=_iso(expires)), None
    if position is not None and position <= serving:
        if not mint:
            return PlaceOut(**base, estimated_wait_seconds=0, status="admitted"), 0
        expires = int(now) + int(room.admission_ttl_seconds or DEFAULT_TTL_SECONDS)
        if admissions.admit(place, expires):
            place.admitted_at, place.expires_at = int(now), expires
        else:
            place = _place(place.event_id, place.sub, consistent=True) or place
        return _answer(place, state, room, now, mint=False)
    if state.sold_out:
        return PlaceOut(**base, estimated_wait_seconds=None, status="sold_out"), None
    opens = clock.parse_iso(room.opens_at).timestamp()
    if position is None:  # before the draw: at least until opening (the draw then places it); the
        # polls after opening are spread over half a minute, not all at once
        until = max(0.0, opens - now)
        return PlaceOut(**base, estimated_wait_seconds=int(math.ceil(until)), status="waiting"), int(
            min(MAX_RETRY_AFTER, max(MIN_RETRY_AFTER, math.ceil(until))) + random.randint(0, 30))
    ahead = max(0, layout.people(position - 1) - int(state.admitted or 0))
    wait = ahead / rate * 60 if rate > 0 else None
    return PlaceOut(**base, estimated_wait_seconds=None if wait is None else int(math.ceil(wait)),
                    status="waiting"), retry_after(wait)


def _iso(epoch: int) -> str:
    from datetime import datetime, timezone

    return clock.iso(datetime.fromtimestamp(epoch, timezone.utc))


# ------------------------------------------------------------------- joining
def pick_shard(counts: dict[int, int]) -> int:
    """The late shard a join draws from: the emptiest (the lowest first), so joins one after
    another fill positions E+1, E+2, ... in order, and joins at the same moment (reading the
    same counts) land at most a few positions apart."""
    return min(range(LATE_SHARDS), key=lambda k: (counts.get(k, 0), k))


def _take_number(event_id: str, phase: str) -> tuple[int, int] | None:
    """(shard, number) from the `phase` counter: early from a random shard (None once the
    room has opened), late from the emptiest (`pick_shard`, counts read eventually consistent)."""
    from pynamodb.exceptions import UpdateError

    from ticketing.lifecycle.writes import condition_failed, retrying

    if phase == "E":
        shard = random.randrange(EARLY_SHARDS)
        condition = QueueCounterItem.closed.does_not_exist()
    else:
        counts = {int(item.PK.rsplit("#", 1)[1]): int(item.count or 0) for item in QueueCounterItem.batch_get(
            [QueueCounterItem.key(event_id, "L", k) for k in range(LATE_SHARDS)], consistent_read=False)}
        shard = pick_shard(counts)
        condition = None
    counter = QueueCounterItem(*QueueCounterItem.key(event_id, phase, shard))

    def once() -> tuple[int, int] | None:
        try:
            counter.update(actions=[QueueCounterItem.count.add(1)], condition=condition)
        except UpdateError as exc:
            if condition_failed(exc):
                return None
            raise
        return shard, int(counter.count) - 1

    return retrying(once, what="Joining the queue")


def join(event_id: str, who: Caller) -> tuple[PlaceOut, int, int | None]:
    """The caller's place (answer, status 201 new / 200 already there, Retry-After)."""
    from pynamodb.exceptions import PutError

    from ticketing.lifecycle.writes import condition_failed

    if not who.email_verified:
        raise Unprocessable("Verify your email address before joining the queue: one place per person.",
                            code="email_unverified")
    event = _event(event_id)
    room = _room(event)
    now = clock.now().timestamp()
    opens = clock.parse_iso(room.opens_at).timestamp()
    if now < opens - PRE_QUEUE_SECONDS:
        raise Conflict(f"The queue opens an hour before the sale ({room.opens_at}).", code="queue_not_open",
                       opens_at=room.opens_at)
    state = read_state(event_id)
    place = _place(event_id, who.sub, consistent=True)
    if place is not None and not _finished(place, now):
        answer, wait = _answer(place, state, room, now, mint=False)
        return answer, 200, wait
    if state.sold_out:
        raise Conflict("The sale has sold out.", code="sold_out")
    drawn = None if state.opened else _take_number(event_id, "E")
    phase = "E" if drawn is not None else "L"
    shard, number = drawn or _take_number(event_id, "L")
    fresh = QueuePlaceItem(
        *QueuePlaceItem.key(event_id, who.sub), event_id=event_id, sub=who.sub, phase=phase, shard=shard,
        number=number, joined_at=now, round=int(place.round) + 1 if place is not None else 0,
    )
    condition = QueuePlaceItem.PK.does_not_exist() if place is None else (QueuePlaceItem.round == int(place.round))
    try:
        fresh.save(condition=condition)
    except PutError as exc:
        if not condition_failed(exc):
            raise
        fresh = _place(event_id, who.sub, consistent=True) or fresh  # a join at the same moment won: its place
    if phase == "L" and not state.opened:
        state = read_state(event_id, consistent=True)  # our number sits after the draw: its size
    answer, wait = _answer(fresh, state, room, now, mint=False)
    return answer, 201, wait


def me(event_id: str, who: Caller) -> tuple[PlaceOut, int | None]:
    place = _place(event_id, who.sub)
    if place is None:
        raise NotFound(f"You have no place in the queue of event {event_id}; join it first.")
    room = _room(_event(event_id))  # turned off or removed, or the event canceled: 409, and the page stops polling
    return _answer(place, read_state(event_id), room, clock.now().timestamp(), mint=True)


# ------------------------------------------------------------------- tokens
def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, body: str) -> str:
    return _b64(hmac.new(key, b"ticketing-admission\0" + body.encode("ascii"), hashlib.sha256).digest())


def sign(place: QueuePlaceItem, expires_at: int, key: bytes | None = None) -> str:
    from ticketing import secrets

    body = ".".join((TOKEN_TAG, place.event_id, _b64(place.sub.encode()), str(int(place.round)), str(int(expires_at))))
    return f"{body}.{_mac(key or secrets.admission_key(), body)}"


def verify(token: str, key: bytes | None = None) -> Admission:
    """The admission a token carries, or Forbidden (`admission_invalid`) for anything we did
    not sign. No table read."""
    from ticketing import secrets

    forged = Forbidden("This admission token is not valid; poll the queue for yours.", code="admission_invalid")
    parts = token.strip().split(".") if isinstance(token, str) and len(token) <= 512 else []
    if len(parts) != 6 or parts[0] != TOKEN_TAG:
        raise forged
    body, mac = ".".join(parts[:5]), parts[5]
    if not hmac.compare_digest(_mac(key or secrets.admission_key(), body).encode(), mac.encode("ascii", "replace")):
        raise forged
    try:
        return Admission(event_id=parts[1], sub=_unb64(parts[2]).decode(), round=int(parts[3]), expires_at=int(parts[4]))
    except (ValueError, UnicodeDecodeError):
        raise forged from None


def _required(event_id: str) -> bool:
    def load() -> bool:
        try:
            event = EventItem.get(*EventItem.key(event_id), attributes_to_get=["waiting_room"])
        except EventItem.DoesNotExist:
            return False
        return bool(event.waiting_room and event.waiting_room.enabled)

    return _cached("required", event_id, SETTING_CACHE_SECONDS, load)


def admission_for(event_id: str, who: Caller, token: str | None) -> Admission | None:
    """Checkout's check, before anything is spent: a token must be ours, for this event and
    caller, unexpired (no table read); without one, an event with a waiting room (its
    setting cached SETTING_CACHE_SECONDS) is 403 `admission_required`."""
    if not token:
        if _required(event_id):
            raise Forbidden(f"Event {event_id} sells through its waiting room: join the queue at "
                            f"/api/events/{event_id}/queue/ and send the Admission-Token it gives you.",
                            code="admission_required")
        return None
    admission = verify(token)
    if admission.event_id != event_id:
        raise Forbidden("This admission token is for another event.", code="admission_wrong_event")
    if admission.sub != who.sub:
        raise Forbidden("This admission token belongs to another account.", code="admission_wrong_account")
    if admission.expires_at <= clock.now().timestamp():
        raise Forbidden("This admission token has expired; join the queue again.", code="admission_expired")
    return admission


def give_back(admission: Admission | None, order_id: str) -> None:
    """The checkout that spent `admission` was not answered 201: the buyer may use it again."""
    if admission is not None:
        admissions.give_back(admission, order_id)


# -------------------------------------------------------------- the organiser
def _count(partition: str, below: str | None = None) -> int:
    condition = QueuePlaceItem.GSI2SK < below if below is not None else None
    return QueuePlaceItem.gsi2.count(partition, range_key_condition=condition)


def view(event_id: str) -> RoomView:
    event = _event(event_id)
    if event.waiting_room is None:
        raise Conflict(f"Event {event_id} has no waiting room.", code="no_waiting_room")
    state = read_state(event_id, consistent=True)
    layout = layout_of(state)
    now = f"{int(clock.now().timestamp()):012d}"
    spent = sum(_count(f"QSPENT#{event_id}#{k}") for k in range(QUEUE_INDEX_PARTITIONS))
    holding = expired = 0
    for k in range(QUEUE_INDEX_PARTITIONS):
        holding += _count(f"QADMIT#{event_id}#{k}")
        expired += _count(f"QADMIT#{event_id}#{k}", below=now)
    admitted = int(state.admitted or 0)
    waiting = max(0, layout.total - admitted)
    rate = int(state.rate or 0) if state.opened else rate_of(event.waiting_room)
    return RoomView(
        waiting=waiting, admitted=admitted, spent=spent, expired=expired, abandoned=max(0, admitted - spent - holding),
        admit_per_minute=rate, estimated_clear_seconds=int(math.ceil(waiting / rate * 60)) if rate else None,
        serving=int(state.serving or 0), paused=bool(event.waiting_room.paused), sold_out=bool(state.sold_out),
        opened=bool(state.opened),
    )


# -------------------------------------------------------------- admission job
def _open(event_id: str) -> list[int]:
    """Close the pre-opening counters; their counts are the draw's size per shard."""
    counts = []
    for k in range(EARLY_SHARDS):
        counter = QueueCounterItem(*QueueCounterItem.key(event_id, "E", k))
        counter.update(actions=[QueueCounterItem.closed.set(True)])
        counts.append(int(counter.count or 0))
    return counts


def _seats_left(event_id: str) -> int:
    from ticketing import catalogue, inventory

    _event_item, types = catalogue.load_event(event_id)
    seats = inventory.availability((t.type_id, int(t.shards)) for t in types)
    return sum(a.remaining for a in seats.values())


def stripe_pressure(now: float) -> bool:
    """Whether checkouts are being turned away by the Stripe budget: a recent second's
    PaymentIntent budget PRESSURE_SHARE full (one eventually consistent BatchGetItem)."""
    from ticketing import stripe_budget
    from ticketing.config import settings
    from ticketing.table import RateCounterItem

    limit = settings().stripe_rate_per_endpoint
    caps = stripe_budget.shard_caps(limit)
    seconds = [int(now) - 1, int(now) - 2]
    keys = [RateCounterItem.key("ep#payment_intents.create", s, k) for s in seconds for k in range(len(caps))]
    used = {s: 0 for s in seconds}
    for item in RateCounterItem.batch_get(keys, consistent_read=False):
        used[int(item.PK.split("#")[-2])] += int(item.used or 0)
    return max(used.values()) >= PRESSURE_SHARE * limit


def tick(event_id: str, listing: QueueRoomItem | None = None) -> QueueStateItem | None:
    """One step of the admission job for one room: open it at `opens_at`, admit what the
    rate owes since the last step, write the state, publish it. A room that is over (turned
    off or removed, its event canceled or ended) is published once more, as it now stands,
    and its `listing` taken off the job's list."""
    from pynamodb.exceptions import PutError

    from ticketing.lifecycle.writes import condition_failed

    try:
        event = EventItem.get(*EventItem.key(event_id), consistent_read=True)
    except EventItem.DoesNotExist:
        event = None
    room = event.waiting_room if event is not None else None
    if room is None:
        if event is not None:
            publish(event_id, read_state(event_id, consistent=True), closed=True)
        _delist(listing)
        return None
    now = clock.now().timestamp()
    on = room.enabled and event.status == "on_sale" and now < clock.parse_iso(event.ends_at).timestamp()
    state = read_state(event_id, consistent=True)
    version = int(state.version or 0)
    if not state.opened and room.enabled and now >= clock.parse_iso(room.opens_at).timestamp():
        state.early = _open(event_id)
        state.seed = _secrets.token_hex(16)
        state.opened = True
        state.at = now
    if state.opened:
        found = {int(c.PK.rsplit("#", 1)[1]): int(c.count or 0) for c in QueueCounterItem.batch_get(
            [QueueCounterItem.key(event_id, "L", k) for k in range(LATE_SHARDS)])}  # a shard nobody drew from has no item
        state.late = [found.get(k, 0) for k in range(LATE_SHARDS)]
        layout = layout_of(state)
        seats = _seats_left(event_id)
        factor = float(state.factor if state.factor is not None else 1)
        factor = max(MIN_FACTOR, factor * SLOW_DOWN) if stripe_pressure(now) else min(1.0, factor + RECOVER)
        active = on and not room.paused
        rate = rate_of(room) * factor if active else 0.0
        admitted = int(state.admitted or 0)
        ttl = int(room.admission_ttl_seconds or DEFAULT_TTL_SECONDS)
        marks = [m for m in (state.marks or []) if float(m[0]) >= now - ttl - MARK_SECONDS]
        recent = admitted - min((int(m[1]) for m in marks), default=admitted)
        admitted, carry = advance(admitted, float(state.carry or 0), rate, now - float(state.at or now),
                                  layout.total - admitted, max(0, seats - recent))
        if not marks or now - float(marks[-1][0]) >= MARK_SECONDS:
            marks.append([int(now), admitted])
        state.admitted, state.carry, state.factor, state.marks = admitted, carry, factor, marks
        state.serving = layout.serving_for(admitted)
        state.rate = int(round(rate))
        state.sold_out = seats == 0
        state.at = now
    state.paused = bool(room.paused)
    state.version = version + 1
    first = QueueStateItem(*QueueStateItem.key(event_id, 0), **_fields(state))
    try:
        first.save(condition=QueueStateItem.version.does_not_exist() | (QueueStateItem.version == version))
    except PutError as exc:
        if condition_failed(exc):
            return None  # another run ticked this room meanwhile
        raise
    for replica in range(1, STATE_REPLICAS):
        QueueStateItem(*QueueStateItem.key(event_id, replica), **_fields(state)).save()
    publish(event_id, state, closed=not on)
    if not on:
        _delist(listing)
    return first


def _delist(listing: QueueRoomItem | None) -> None:
    """Take a room that is over off the admission job's list, which would otherwise read and
    write it every second for good. Only the listing that was read: a room turned on again
    meanwhile was listed afresh (a new `listed`), and that listing stays."""
    from pynamodb.exceptions import DeleteError

    from ticketing.lifecycle.writes import condition_failed

    if listing is None:
        return
    same = QueueRoomItem.listed == listing.listed if listing.listed else QueueRoomItem.listed.does_not_exist()
    try:
        listing.delete(condition=same)
    except DeleteError as exc:
        if not condition_failed(exc):
            raise
        return
    from ticketing.observability import logger

    logger.info("waiting room delisted", extra={"event_id": listing.event_id})


def _fields(state: QueueStateItem) -> dict:
    names = ("version", "opened", "seed", "early", "late", "serving", "admitted", "at", "carry", "rate", "factor",
             "sold_out", "paused", "marks")
    return {name: getattr(state, name) for name in names}


def status_document(event_id: str, state: QueueStateItem, closed: bool = False) -> dict:
    return {"event_id": event_id, "serving": int(state.serving or 0), "admit_per_minute": int(state.rate or 0),
            "opened": bool(state.opened), "paused": bool(state.paused), "sold_out": bool(state.sold_out),
            "closed": closed, "updated_at": clock.iso(clock.now())}


def publish(event_id: str, state: QueueStateItem, closed: bool = False) -> None:
    """`queue/<event_id>.json` in the public-status bucket (a CDN serves it, max-age 1);
    `closed`: the room is over (its last document)."""
    from ticketing.config import settings

    bucket = settings().qr_bucket
    if not bucket:
        return
    import boto3

    boto3.client("s3", region_name=settings().region).put_object(
        Bucket=bucket, Key=f"queue/{event_id}.json", Body=json.dumps(status_document(event_id, state, closed)).encode(),
        ContentType="application/json", CacheControl="public, max-age=1",
    )


def rooms() -> list[QueueRoomItem]:
    """The admission job's list: a listing per room that is on."""
    return list(QueueRoomItem.query("QUEUE_ROOMS"))


def tick_all() -> int:
    """Tick every listed room; returns how many were ticked."""
    done = 0
    for listing in rooms():
        if tick(listing.event_id, listing) is not None:
            done += 1
    return done
