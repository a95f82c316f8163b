"""Ticket transitions at the gate and in event cancellation.

A check-in stays one conditional UpdateItem (`states.CHECK_IN`: valid, no refund on it);
its audit record (`ScanItem`, written by the gate) is its log. When the condition fails
DynamoDB hands back the item as it was (`ReturnValuesOnConditionCheckFailure=ALL_OLD`),
so the gate says why without another read."""

from __future__ import annotations

from typing import Any

from ticketing import clock
from ticketing.lifecycle import states as S
from ticketing.lifecycle.writes import checkpoint, condition_failed, retrying, update_one
from ticketing.table import OrderItem, TicketItem

ONLINE, OFFLINE = "online", "offline"


def _update(ticket_id: str, actions: list, condition: Any) -> tuple[bool, TicketItem | None]:
    """One conditional UpdateItem, retried on conflict. (True, the ticket after) when it
    applied; (False, the ticket as it was, None if absent) when the condition failed."""
    from botocore.exceptions import ClientError

    connection = TicketItem._get_connection().connection
    request = connection.get_operation_kwargs(
        TicketItem.Meta.table_name, *TicketItem.key(ticket_id), actions=actions, condition=condition,
        return_values="ALL_NEW", return_values_on_condition_failure="ALL_OLD",
    )

    def once() -> tuple[bool, TicketItem | None]:
        checkpoint("commit", kinds=("ticket",))
        try:
            answer = connection.client.update_item(**request)
        except ClientError as exc:
            if not condition_failed(exc):
                raise
            item = exc.response.get("Item")
            return False, TicketItem.from_raw_data(item) if item else None
        return True, TicketItem.from_raw_data(answer["Attributes"])

    return retrying(once, what="The check-in")


def check_in(ticket_id: str, *, at: str, gate: str, scanner: str, event_id: str | None = None,
             copy_not_over: bool = False, code_version: int | None = None) -> tuple[bool, TicketItem | None]:
    """valid -> used (online), unless a refund holds the ticket. `copy_not_over`: also
    require the ticket's copy of its event's end not to have passed (the gate's hint; the
    gate decides on the event's current end when only that part refuses). `code_version`:
    the scanned code's; the ticket's code must still be that one (a transfer re-issues it)."""
    condition = S.CHECK_IN.condition()
    if code_version is not None:
        condition &= S._code_version_is(code_version=code_version)
    if event_id:
        condition &= TicketItem.event_id == event_id
    if copy_not_over:
        condition &= TicketItem.event_ends_at.does_not_exist() | (TicketItem.event_ends_at >= at)
    actions = [TicketItem.status.set(S.CHECK_IN.target), TicketItem.used_at.set(at), TicketItem.gate.set(gate),
               TicketItem.scanner.set(scanner), TicketItem.admission.set(ONLINE)]
    return _update(ticket_id, actions, condition)


def admit_offline(ticket_id: str, *, at: str, gate: str, scanner: str, earlier_than: str | None = None,
                  code_version: int | None = None) -> tuple[bool, TicketItem | None]:
    """valid -> used from an offline upload; or, when `earlier_than` is the time of an
    earlier *offline* admission, move that admission to this earlier scan. An online
    admission is never rewritten (`states.ADMIT_EARLIER` requires admission == offline).
    `code_version`: the scanned code's, which must still be the ticket's."""
    if earlier_than is None:
        condition = S.ADMIT_OFFLINE.condition()
    else:
        condition = S.ADMIT_EARLIER.condition(used_at=earlier_than)
    if code_version is not None:
        condition &= S._code_version_is(code_version=code_version)
    actions = [TicketItem.status.set(S.TicketStatus.USED), TicketItem.used_at.set(at), TicketItem.gate.set(gate),
               TicketItem.scanner.set(scanner), TicketItem.admission.set(OFFLINE)]
    return _update(ticket_id, actions, condition)


def void_left(order: OrderItem, tickets: list[TicketItem]) -> None:
    """Event canceled: void whatever ticket of the order is still standing (a refund that
    Stripe made but whose completion waits for the webhook, a free order). Each is its own
    conditional write; one that changed meanwhile is left as it is now."""
    from ticketing.lifecycle.orders import void_actions
    from ticketing.lifecycle.writes import log_record

    now = clock.iso(clock.now())
    voided = []
    for ticket in tickets:
        if ticket.status in S.ISSUED:
            transition, actions = S.CANCEL_VOID, void_actions(ticket, now)
        elif ticket.status == S.TicketStatus.PENDING and order.status != S.OrderStatus.PENDING:
            transition, actions = S.CANCEL_RELEASE, [TicketItem.status.set(S.CANCEL_RELEASE.target)]
        else:
            continue
        condition = transition.condition() & (TicketItem.status == ticket.status)
        if update_one(TicketItem(*TicketItem.key(ticket.ticket_id)), actions, condition, what="Voiding the ticket"):
            voided.append(ticket.ticket_id)
    if voided:
        retrying(lambda: log_record(order.order_id, S.CANCEL_VOID, by="event-cancel", why="event canceled", ids=voided,
                                    from_status="standing", to_status=S.TicketStatus.VOID).save())


def restamp_event_end(ticket_id: str, ends_at: str, version: int) -> bool:
    """The event's end changed (`ticketing.event_changes`): the ticket's copy of it
    (`event_ends_at`, the gate's hint) follows, once per change and never back to an older
    change's end (the condition on `times_version`). Not a status change: any status. True
    if written."""
    condition = TicketItem.PK.exists() & (TicketItem.times_version.does_not_exist() | (TicketItem.times_version < version))
    applied, _ = _update(ticket_id, [TicketItem.event_ends_at.set(ends_at), TicketItem.times_version.set(version)], condition)
    return applied


# ---------------------------------------------------------------- transfer
def holding_partition(email: str) -> str:
    """GSI1 partition of tickets given to `email` and not yet claimed by an account."""
    return f"HOLDING#{email}"


def transfer(ticket: TicketItem, *, to_email: str, to_name: str, payload: str, version: int, by: str) -> str:
    """valid -> valid with a new holder and a new code (`version`, signed as `payload`):
    the old code stops admitting at once (the gate compares versions, and the ticket goes
    on its event's voided list, with its current version, for offline scanners). The
    ticket waits unclaimed under `to_email` until that address signs in (`claim`). The
    order keeps the record (`TransferItem`: from whom to whom, when) and the log, in the
    same transaction. Raises Refused when the ticket changed since it was read (used,
    voided, refund reserved, or transferred by another request)."""
    from ticketing.lifecycle.writes import transact
    from ticketing.table import TransferItem

    now = clock.iso(clock.now())
    condition = S.TRANSFER.condition(code_version=int(ticket.code_version or 0), holder_sub=ticket.customer_sub)
    actions = [
        TicketItem.customer_sub.set(S.UNCLAIMED), TicketItem.holder_email.set(to_email), TicketItem.holder_name.set(to_name),
        TicketItem.code_version.set(version), TicketItem.qr_payload.set(payload), TicketItem.transferred_at.set(now),
        TicketItem.GSI1PK.set(holding_partition(to_email)),
        TicketItem.GSI2PK.set(f"VOIDED#{ticket.event_id}"), TicketItem.GSI2SK.set(f"{now}#{ticket.ticket_id}"),
        TicketItem.voided_at.set(now),
    ]
    record = TransferItem(
        *TransferItem.key(ticket.order_id, now, ticket.ticket_id, version), order_id=ticket.order_id, ticket_id=ticket.ticket_id,
        from_sub=ticket.customer_sub, from_email=ticket.holder_email, from_name=ticket.holder_name, to_email=to_email,
        to_name=to_name, code_version=version, at=now, by=by,
    )

    def build(tx) -> None:
        tx.update("ticket", TicketItem(*TicketItem.key(ticket.ticket_id)), actions, condition)
        tx.save("record", record, TransferItem.PK.does_not_exist())
        tx.log(ticket.order_id, S.TRANSFER, by=by, why="transferred to another holder", ids=[ticket.ticket_id],
               from_status=S.TicketStatus.VALID)

    transact(build, what="The transfer")
    return now


def claim(ticket: TicketItem, *, sub: str, email: str) -> TicketItem | None:
    """A transferred ticket joins the account that signed in with the address it was given
    to (`states.CLAIM`): it is listed as theirs from now on, as their newest ticket. The
    ticket as claimed; None when it was claimed (or transferred on) meanwhile."""
    from ticketing.lifecycle.writes import Refused, transact
    from ticketing.table import customer_partition

    condition = S.CLAIM.condition(email=email)
    listed = f"TICKET#{clock.iso(clock.now())}#{ticket.ticket_id}"
    actions = [TicketItem.customer_sub.set(sub), TicketItem.GSI1PK.set(customer_partition(sub)), TicketItem.GSI1SK.set(listed)]

    def build(tx) -> None:
        tx.update("ticket", TicketItem(*TicketItem.key(ticket.ticket_id)), actions, condition)
        tx.log(ticket.order_id, S.CLAIM, by=sub, why="claimed by the address it was given to", ids=[ticket.ticket_id],
               from_status=ticket.status)

    try:
        transact(build, what="Claiming the ticket")
    except Refused:
        return None
    ticket.customer_sub, ticket.GSI1PK, ticket.GSI1SK = sub, customer_partition(sub), listed
    return ticket
