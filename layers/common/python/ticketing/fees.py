"""Service fees: the one place their arithmetic lives (pure: no I/O).

An event's fees (`Fees`) are a percentage in basis points of each paid ticket's price
plus a fixed amount, either per paid ticket or once per order (spread over the order's
paid tickets, so each ticket carries its own share), passed on to the buyer or absorbed
by the organiser. Free tickets (price 0) carry no fee, so a free order stays free.

Rounding, defined once: a ticket's percentage fee is `price * bps / 10000` rounded half
up to a whole minor unit (`percent_of`); a per-order fixed fee of F over n paid tickets
gives each F // n and the first F % n tickets one more (`_spread`). Every fee is a whole
minor unit of the event's currency (cents, or yen for JPY: Stripe's amounts for
zero-decimal currencies are whole units, which ours are), so the lines always sum to what
is charged: `total = sum(price + buyer fee)` over the tickets.

Refunds: a ticket refunded gives back its price, plus its fee when the fee comes back
(`fee_returned`: the event's fees are `refundable`, or the organiser refunds, e.g. the
event is canceled). An absorbed fee was never the buyer's: it comes back to the organiser,
not the buyer. The organiser's net is `gross - refunded - fees kept` (`organiser_net`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, Field, StrictBool, StrictInt

BPS = 10_000
MAX_FIXED = 100_000  # minor units


class FeesIn(BaseModel):
    """`fees` on an event, as the API takes and shows it."""

    percent_bps: StrictInt = Field(default=0, ge=0, le=BPS)
    fixed_cents: StrictInt = Field(default=0, ge=0, le=MAX_FIXED)
    per: Literal["ticket", "order"] = "ticket"
    passed_on: StrictBool = True
    refundable: StrictBool = False


@dataclass(frozen=True)
class Fees:
    percent_bps: int = 0
    fixed_cents: int = 0
    per: str = "ticket"
    passed_on: bool = True
    refundable: bool = False

    @classmethod
    def of(cls, data: FeesIn | dict | None) -> Fees | None:
        if data is None:
            return None
        values = data.model_dump() if isinstance(data, FeesIn) else dict(data)
        return cls(
            percent_bps=int(values.get("percent_bps") or 0), fixed_cents=int(values.get("fixed_cents") or 0),
            per=str(values.get("per") or "ticket"), passed_on=bool(values.get("passed_on", True)),
            refundable=bool(values.get("refundable", False)),
        )

    def as_dict(self) -> dict:
        return {"percent_bps": self.percent_bps, "fixed_cents": self.fixed_cents, "per": self.per,
                "passed_on": self.passed_on, "refundable": self.refundable}


NO_FEES = Fees()


def percent_of(price_cents: int, bps: int) -> int:
    """`price * bps / 10000`, rounded half up to a whole minor unit (integers only)."""
    return (price_cents * bps * 2 + BPS) // (2 * BPS)


@dataclass(frozen=True)
class PricedTicket:
    price_cents: int
    fee_cents: int  # the fee on this ticket, whoever pays it

    def paid_cents(self, fees: Fees | None) -> int:
        """What the buyer paid for this ticket."""
        return self.price_cents + (self.fee_cents if fees is not None and fees.passed_on else 0)


@dataclass(frozen=True)
class Priced:
    tickets: tuple[PricedTicket, ...]
    subtotal_cents: int
    fees_cents: int  # every fee of the order (what the platform takes)
    buyer_fees_cents: int  # the part the buyer pays (0 when absorbed)
    total_cents: int  # charged: subtotal + buyer fees


def _spread(amount: int, count: int) -> list[int]:
    return [amount // count + (1 if i < amount % count else 0) for i in range(count)] if count else []


def price_order(prices: list[int], fees: Fees | None) -> Priced:
    """Each ticket's fee for an order of tickets at `prices` (one entry a ticket, in order)."""
    fees = fees or NO_FEES
    own = [percent_of(p, fees.percent_bps) + (fees.fixed_cents if fees.per == "ticket" else 0) if p > 0 else 0 for p in prices]
    if fees.per == "order":
        paid = [i for i, p in enumerate(prices) if p > 0]
        for i, share in zip(paid, _spread(fees.fixed_cents, len(paid)), strict=True):
            own[i] += share
    tickets = tuple(PricedTicket(p, f) for p, f in zip(prices, own, strict=True))
    subtotal, all_fees = sum(prices), sum(own)
    buyer = all_fees if fees.passed_on else 0
    return Priced(tickets, subtotal, all_fees, buyer, subtotal + buyer)


def one_ticket_fee(price_cents: int, fees: Fees | None) -> int:
    """The fee a buyer pays on one ticket bought alone (the event page's all-in price)."""
    if fees is None or not fees.passed_on:
        return 0
    return price_order([price_cents], fees).fees_cents


def fee_returned(fees: Fees | None, *, organiser: bool) -> bool:
    """Whether a refund gives the fee back: the event's fees are refundable, or the
    organiser refunds (an event's cancellation always does)."""
    return fees is not None and (fees.refundable or organiser)


def refund_of(ticket: PricedTicket, fees: Fees | None, *, organiser: bool) -> tuple[int, int]:
    """(money back to the buyer, fee the platform gives up) for refunding one ticket."""
    back = fee_returned(fees, organiser=organiser)
    fee = ticket.fee_cents if back else 0
    to_buyer = ticket.price_cents + (fee if fees is not None and fees.passed_on else 0)
    return to_buyer, fee


def organiser_net(gross_cents: int, refunded_cents: int, fees_cents: int, fees_returned_cents: int) -> int:
    """What the organiser keeps: what buyers paid, less what went back to them and the fees
    the platform kept (absorbed fees come out of the organiser's share)."""
    return gross_cents - refunded_cents - (fees_cents - fees_returned_cents)
