"""Saved cards (issue 17): one Stripe Customer per account, SetupIntents to save a card,
listing, removing and choosing the default card.

One Customer per account, never two, concurrent first requests included: the account item
(`AccountItem`) is claimed with a conditional write (a lease) before the Customer is
created, and the creation itself carries an idempotency key derived from the account, so
even a claimant whose lease ran out while Stripe answered gets the same Customer back.
Whoever loses the claim waits briefly for the winner's id, then answers 503 + Retry-After.

A card belongs to the caller only if Stripe says it is attached to the caller's Customer:
anyone else's card, a detached card and an unknown id are all 404 (nothing is revealed).

SetupIntents are limited per account (card testing: trying stolen numbers one SetupIntent
at a time) to SETUP_LIMIT per SETUP_WINDOW_SECONDS, counted in a fixed window on the
account item by conditional writes; over it: 429 with Retry-After.

Every Stripe call goes through `ticketing.payments`, the one adapter, imported on first
use: the account function's other routes (history, inbox) and the OpenAPI build load these
models without the Stripe SDK.
"""

from __future__ import annotations

import hashlib
import re
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from pynamodb.exceptions import UpdateError

from ticketing import clock
from ticketing.auth import Caller
from ticketing.errors import DependencyUnavailable, NotFound, TooManyRequests
from ticketing.lifecycle.writes import condition_failed
from ticketing.table import AccountItem

if TYPE_CHECKING:
    from ticketing.payments import Card

CLAIM_SECONDS = 20  # a claimant's lease on creating the Customer (Stripe's timeout x2 fits)
WAIT_SECONDS = 3.0  # how long a request that lost the claim waits for the winner's id
SETUP_LIMIT = 5  # SetupIntents per account per window
SETUP_WINDOW_SECONDS = 600
_PM_ID = re.compile(r"pm_[A-Za-z0-9]{1,60}")


class CardOut(BaseModel):
    id: str
    brand: str | None
    last4: str | None
    exp_month: int | None
    exp_year: int | None
    is_default: bool


class CardList(BaseModel):
    payment_methods: list[CardOut]


class SetupOut(BaseModel):
    setup_intent_id: str
    client_secret: str


def _payments() -> Any:
    from ticketing import payments  # imports stripe

    return payments


def account_key(sub: str) -> str:
    """A stable, opaque name of the account for Stripe (idempotency keys, metadata)."""
    return hashlib.sha256(sub.encode()).hexdigest()[:32]


def _out(card: Card, default_id: str | None) -> CardOut:
    return CardOut(id=card.id, brand=card.brand, last4=card.last4, exp_month=card.exp_month,
                   exp_year=card.exp_year, is_default=card.id == default_id)


# ------------------------------------------------------------------ the Customer
def customer_of(sub: str) -> str | None:
    """The account's Stripe Customer id, if it has one yet (a consistent read)."""
    try:
        return AccountItem.get(*AccountItem.key(sub), consistent_read=True).stripe_customer_id
    except AccountItem.DoesNotExist:
        return None


def _claim(sub: str) -> bool:
    now = clock.now()
    try:
        AccountItem(*AccountItem.key(sub)).update(
            actions=[AccountItem.sub.set(sub),
                     AccountItem.customer_claimed_until.set(clock.iso(now + timedelta(seconds=CLAIM_SECONDS)))],
            condition=AccountItem.stripe_customer_id.does_not_exist()
            & (AccountItem.customer_claimed_until.does_not_exist() | (AccountItem.customer_claimed_until < clock.iso(now))),
        )
        return True
    except UpdateError as exc:
        if condition_failed(exc):
            return False
        raise


def _release(sub: str) -> None:
    AccountItem(*AccountItem.key(sub)).update(actions=[AccountItem.customer_claimed_until.remove()],
                                              condition=AccountItem.stripe_customer_id.does_not_exist())


def _record(sub: str, customer_id: str) -> str:
    """Store the Customer id once; if another claimant stored one first, theirs stands
    (the same Customer, thanks to the idempotency key)."""
    try:
        AccountItem(*AccountItem.key(sub)).update(
            actions=[AccountItem.stripe_customer_id.set(customer_id),
                     AccountItem.customer_created_at.set(clock.iso(clock.now())),
                     AccountItem.customer_claimed_until.remove()],
            condition=AccountItem.stripe_customer_id.does_not_exist(),
        )
        return customer_id
    except UpdateError as exc:
        if not condition_failed(exc):
            raise
    return customer_of(sub) or customer_id


def ensure_customer(who: Caller) -> str:
    """The caller's Stripe Customer, created on first need, once."""
    existing = customer_of(who.sub)
    if existing:
        return existing
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        if _claim(who.sub):
            try:
                made = _payments().create_customer(
                    idempotency_key=f"customer-{account_key(who.sub)}", email=who.email, name=who.name,
                    metadata={"account": account_key(who.sub)},
                )
            except Exception:
                try:
                    _release(who.sub)  # the next request may try at once
                except Exception:  # noqa: BLE001 - the lease runs out anyway; keep Stripe's error
                    pass
                raise
            return _record(who.sub, made)
        found = customer_of(who.sub)
        if found:
            return found
        if time.monotonic() >= deadline:
            raise DependencyUnavailable("Your payment profile is being set up; try again in a moment.",
                                        retry_after=1, code="customer_being_created")
        time.sleep(0.1)


# ------------------------------------------------------------------ rate limit
def _window(now_epoch: float) -> str:
    return str(int(now_epoch // SETUP_WINDOW_SECONDS))


def _take_setup_slot(sub: str) -> int:
    """Count one SetupIntent in the current window; answers its number in the window
    (1-based, so an idempotency key can be derived from it). TooManyRequests over the limit."""
    now = clock.now().timestamp()
    window = _window(now)
    item = AccountItem(*AccountItem.key(sub))
    for _ in range(5):
        try:  # the window is current and has room
            item.update(actions=[AccountItem.setup_count.add(1)],
                        condition=(AccountItem.setup_window == window) & (AccountItem.setup_count < SETUP_LIMIT))
            return int(item.setup_count)
        except UpdateError as exc:
            if not condition_failed(exc):
                raise
        try:  # a new window
            item.update(actions=[AccountItem.setup_window.set(window), AccountItem.setup_count.set(1)],
                        condition=AccountItem.setup_window.does_not_exist() | (AccountItem.setup_window != window))
            return 1
        except UpdateError as exc:
            if not condition_failed(exc):
                raise
        current = AccountItem.get(*AccountItem.key(sub), consistent_read=True)
        if current.setup_window == window and int(current.setup_count or 0) >= SETUP_LIMIT:
            retry = int(SETUP_WINDOW_SECONDS - now % SETUP_WINDOW_SECONDS) + 1
            raise TooManyRequests(
                f"At most {SETUP_LIMIT} cards may be set up every {SETUP_WINDOW_SECONDS // 60} minutes; "
                f"try again in {retry} seconds.", code="setup_rate_limited", retry_after=retry,
            )
    raise DependencyUnavailable("Too many requests at once; try again in a moment.", retry_after=1)


# ------------------------------------------------------------------ routes
def setup(who: Caller) -> SetupOut:
    """A SetupIntent to save a card: confirm it in the browser with the publishable key."""
    customer_id = ensure_customer(who)
    number = _take_setup_slot(who.sub)
    window = _window(clock.now().timestamp())
    intent_id, secret = _payments().create_setup_intent(
        customer_id=customer_id, metadata={"account": account_key(who.sub)},
        idempotency_key=f"setup-{account_key(who.sub)}-{window}-{number}",
    )
    return SetupOut(setup_intent_id=intent_id, client_secret=secret)


def list_cards(who: Caller) -> CardList:
    customer_id = customer_of(who.sub)
    if not customer_id:
        return CardList(payment_methods=[])  # no Customer is created just to list nothing
    found, default_id = _payments().cards_of(customer_id)
    return CardList(payment_methods=[_out(card, default_id) for card in found])


def own_card(who: Caller, payment_method_id: str) -> tuple[str, Card]:
    """(customer id, card) if the card is attached to the caller's Customer; else NotFound."""
    missing = NotFound("No saved card of yours has this id.", code="unknown_payment_method")
    if not _PM_ID.fullmatch(payment_method_id or ""):
        raise missing
    customer_id = customer_of(who.sub)
    if not customer_id:
        raise missing
    found = _payments().card(payment_method_id)
    if found is None or found.customer != customer_id:
        raise missing
    return customer_id, found


def remove(who: Caller, payment_method_id: str) -> CardOut:
    _customer_id, found = own_card(who, payment_method_id)
    detached = _payments().detach_card(found.id)
    return _out(detached, None)


def make_default(who: Caller, payment_method_id: str) -> CardOut:
    customer_id, found = own_card(who, payment_method_id)
    _payments().set_default_card(customer_id, found.id)
    return _out(found, found.id)
