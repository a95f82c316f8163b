"""Statuses and every allowed transition of orders, tickets and refunds, declared once.

A transition names where it may start (`sources`), where it ends (`target`) and the
DynamoDB condition that makes it safe (`condition()`: the status is one of `sources`,
and the transition's own guard). The writes in `ticketing.lifecycle` build their
conditions from here and nowhere else; `diagram()` draws the README's state diagram from
the same declarations (a test keeps the two equal).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class OrderStatus(StrEnum):
    PENDING = "pending"
    PAID = "paid"
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"
    CANCELED = "canceled"
    EXPIRED = "expired"
    DISPUTED = "disputed"


class TicketStatus(StrEnum):
    PENDING = "pending"
    VALID = "valid"
    USED = "used"
    VOID = "void"


class RefundStatus(StrEnum):
    PENDING = "pending"  # reserved (ours) or seen (Stripe's), Stripe's answer not recorded yet
    SUCCEEDED = "succeeded"


class DisputeStatus(StrEnum):
    """Stripe's dispute statuses, as the order keeps them in `dispute_status`."""

    WARNING_NEEDS_RESPONSE = "warning_needs_response"
    WARNING_UNDER_REVIEW = "warning_under_review"
    WARNING_CLOSED = "warning_closed"
    NEEDS_RESPONSE = "needs_response"
    UNDER_REVIEW = "under_review"
    WON = "won"
    LOST = "lost"


OPEN_DISPUTES = frozenset({
    DisputeStatus.WARNING_NEEDS_RESPONSE, DisputeStatus.WARNING_UNDER_REVIEW, DisputeStatus.NEEDS_RESPONSE,
    DisputeStatus.UNDER_REVIEW,
})
# An inquiry closed without a chargeback is as good as won: nothing was taken back.
RESTORING_DISPUTES = frozenset({DisputeStatus.WON, DisputeStatus.WARNING_CLOSED})

REFUNDABLE = (OrderStatus.PAID, OrderStatus.PARTIALLY_REFUNDED)
LATE = (OrderStatus.EXPIRED, OrderStatus.CANCELED)  # closed unpaid: a payment arriving now is late
EVER_PAID = (OrderStatus.PAID, OrderStatus.PARTIALLY_REFUNDED, OrderStatus.REFUNDED, OrderStatus.DISPUTED)
ISSUED = (TicketStatus.VALID, TicketStatus.USED)  # a ticket with a signed code
# A transferred ticket's `customer_sub` until its new holder signs in with the address it
# was sent to (not a Cognito sub, which is a UUID).
UNCLAIMED = "unclaimed#"


# ----------------------------------------------------------------- guards
def _no_refund_reserved(**_: Any):
    from ticketing.table import TicketItem

    return TicketItem.refund_id.does_not_exist()


def _held_by_refund(*, refund_id: str, **_: Any):
    from ticketing.table import TicketItem

    return TicketItem.refund_id == refund_id


def _voided_by_dispute(*, dispute_id: str, **_: Any):
    from ticketing.table import TicketItem

    return TicketItem.voided_by_dispute == dispute_id


def _later_offline_admission(*, used_at: str, **_: Any):
    from ticketing.table import TicketItem

    return (TicketItem.admission == "offline") & (TicketItem.used_at == used_at)


def _code_version_is(*, code_version: int, **_: Any):
    """The ticket's code is still the version read (absent on the item: version 0)."""
    from ticketing.table import TicketItem

    if code_version == 0:
        return TicketItem.code_version.does_not_exist() | (TicketItem.code_version == 0)
    return TicketItem.code_version == code_version


def _transferable(*, code_version: int, holder_sub: str, **_: Any):
    """No refund reserved, the holder and the code still those read."""
    from ticketing.table import TicketItem

    return _no_refund_reserved() & _code_version_is(code_version=code_version) & (TicketItem.customer_sub == holder_sub)


def _unclaimed_for(*, email: str, **_: Any):
    from ticketing.table import TicketItem

    return (TicketItem.customer_sub == UNCLAIMED) & (TicketItem.holder_email == email)


def _refunded_total_unchanged(*, before: int, total: int, amount: int, **_: Any):
    from ticketing.table import OrderItem

    return (OrderItem.refunded_cents == before) & (OrderItem.refunded_cents <= total - amount)


def _is_pending_refund(**_: Any):
    from ticketing.table import RefundItem

    return RefundItem.status == RefundStatus.PENDING


# ------------------------------------------------------------ transitions
@dataclass(frozen=True)
class Transition:
    name: str
    entity: str  # order, ticket, refund
    sources: tuple[str, ...]  # () : the item is created by this transition
    target: str
    why: str  # what makes it happen, as the diagram labels it
    guard: Callable[..., Any] | None = None  # more of the condition, besides the status
    guard_text: str = ""

    def condition(self, **values: Any):
        """The DynamoDB condition of this transition's write (`values` feed its guard)."""
        from ticketing.table import OrderItem, RefundItem, TicketItem

        model = {"order": OrderItem, "ticket": TicketItem, "refund": RefundItem}[self.entity]
        if not self.sources:
            condition = model.PK.does_not_exist()
        elif len(self.sources) == 1:
            condition = model.status == self.sources[0]
        else:
            condition = model.status.is_in(*self.sources)
        if self.guard is not None:
            condition &= self.guard(**values)
        return condition


O, T, R = OrderStatus, TicketStatus, RefundStatus

# Orders
HOLD = Transition("hold", "order", (), O.PENDING, "checkout (seats free, holder under the cap)")
PAY = Transition("pay", "order", (O.PENDING,), O.PAID, "payment succeeded")
CANCEL = Transition("cancel", "order", (O.PENDING,), O.CANCELED, "customer cancels, payment canceled or failed to start")
EXPIRE = Transition("expire", "order", (O.PENDING,), O.EXPIRED, "hold lapsed (expiry run)")
PAY_LATE = Transition("pay_late", "order", LATE, O.PAID, "payment after the hold lapsed, seats still free")
REFUND_LATE = Transition("refund_late", "order", LATE, O.REFUNDED, "payment after the hold lapsed, seats gone: refunded")
REFUND_RESERVE = Transition(
    "refund_reserve", "order", REFUNDABLE, "=", "refund reserved (refunded_cents raised)",
    _refunded_total_unchanged, "refunded_cents unchanged since read and within the total",
)
REFUND_PART = Transition("refund_part", "order", REFUNDABLE, O.PARTIALLY_REFUNDED, "refund done, money left")
REFUND_FULL = Transition(
    "refund_full", "order", (*REFUNDABLE, O.REFUNDED), O.REFUNDED, "refund done, nothing left (or another refund's, done first)")
DISPUTE_OPEN = Transition("dispute_open", "order", REFUNDABLE, O.DISPUTED, "dispute open at Stripe")
DISPUTE_LOST = Transition("dispute_lost", "order", (O.DISPUTED,), "=", "dispute lost (tickets stay void)")
DISPUTE_WON = Transition("dispute_won", "order", (O.DISPUTED,), O.PAID, "dispute won (was paid)")
DISPUTE_WON_PART = Transition(
    "dispute_won_partial", "order", (O.DISPUTED,), O.PARTIALLY_REFUNDED, "dispute won (was partially refunded)")

# Tickets
T_HOLD = Transition("hold", "ticket", (), T.PENDING, "checkout")
ISSUE = Transition("issue", "ticket", (T.PENDING,), T.VALID, "order paid (code signed)")
RELEASE = Transition("release", "ticket", (T.PENDING,), T.VOID, "order canceled or expired")
REISSUE = Transition("reissue", "ticket", (T.VOID,), T.VALID, "late payment, seats taken again")
def _still_the_buyers(**_: Any):
    from ticketing.table import TicketItem

    return _no_refund_reserved() & TicketItem.transferred_at.does_not_exist()


RESERVE_CUSTOMER = Transition(
    "refund_reserve", "ticket", (T.VALID,), "=", "customer's refund reserved (refund_id set)", _still_the_buyers,
    "no refund reserved, never given to someone else",
)
RESERVE_ORGANISER = Transition(
    "refund_reserve_organiser", "ticket", ISSUED, "=", "organiser's refund reserved (refund_id set)", _no_refund_reserved,
    "no refund reserved",
)
CHECK_IN = Transition("check_in", "ticket", (T.VALID,), T.USED, "scanned at a gate", _no_refund_reserved, "no refund reserved")
ADMIT_OFFLINE = Transition(
    "admit_offline", "ticket", (T.VALID,), T.USED, "offline scanner's upload", _no_refund_reserved, "no refund reserved",
)
ADMIT_EARLIER = Transition(
    "admit_earlier", "ticket", (T.USED,), T.USED, "offline upload with an earlier scan of an offline admission",
    _later_offline_admission, "admitted offline, at the time read",
)
REFUND_VOID = Transition("refund_void", "ticket", ISSUED, T.VOID, "refund done", _held_by_refund, "held by this refund")
REFUND_VOID_REST = Transition(
    "refund_void_rest", "ticket", ISSUED, T.VOID, "refund in full done: tickets no refund named", _no_refund_reserved,
    "no refund reserved",
)
DISPUTE_VOID = Transition("dispute_void", "ticket", ISSUED, T.VOID, "dispute opened")
DISPUTE_RESTORE = Transition(
    "dispute_restore", "ticket", (T.VOID,), T.VALID, "dispute won (used if it had been admitted)", _voided_by_dispute,
    "voided by this dispute",
)
CANCEL_VOID = Transition("cancel_void", "ticket", ISSUED, T.VOID, "event canceled, left standing after its refund")
CANCEL_RELEASE = Transition("cancel_release", "ticket", (T.PENDING,), T.VOID, "event canceled, order closed")

TRANSFER = Transition(
    "transfer", "ticket", (T.VALID,), "=", "holder gives it to someone else (new code, the old one voided)",
    _transferable, "no refund reserved, holder and code version unchanged since read",
)
CLAIM = Transition(
    "claim", "ticket", ISSUED, "=", "new holder signs in with the address it was given to", _unclaimed_for,
    "unclaimed, for this verified address",
)

# Refunds
REFUND_CREATE = Transition("reserve", "refund", (), R.PENDING, "refund requested (ours) or seen at Stripe")
REFUND_COMPLETE = Transition("complete", "refund", (R.PENDING,), R.SUCCEEDED, "Stripe refunded", _is_pending_refund)
REFUND_UNDO = Transition("undo", "refund", (R.PENDING,), "deleted", "Stripe refused, or never received it")

TRANSITIONS: tuple[Transition, ...] = tuple(v for v in list(globals().values()) if isinstance(v, Transition))


def _node(entity: str, state: str) -> str:
    return "[*]" if state in ("", "deleted") else f"{entity}_{state}"


def diagram() -> str:
    """The state diagram of every declared transition (mermaid `stateDiagram-v2` lines), as
    the README shows it."""
    lines = ["stateDiagram-v2"]
    for entity in ("order", "ticket", "refund"):
        for t in TRANSITIONS:
            if t.entity != entity:
                continue
            for source in t.sources or ("",):
                target = source if t.target == "=" else t.target
                guard = f" [{t.guard_text}]" if t.guard_text else ""
                lines.append(f"    {_node(entity, source)} --> {_node(entity, target)} : {t.name}, {t.why}{guard}")
    return "\n".join(lines)
