"""Waiting-room places: admitted (the first poll at or past the front), spent (by the hold
transaction of a checkout answered 201), given back (the PaymentIntent could not be
created, so the checkout was not answered 201). Each a conditional write on the place."""

from __future__ import annotations

from dataclasses import dataclass

from ticketing import clock
from ticketing.lifecycle.writes import Tx, update_one
from ticketing.table import QueuePlaceItem, queue_index


@dataclass(frozen=True)
class Admission:
    """A verified admission token: who may check out for which event, from which place."""

    event_id: str
    sub: str
    round: int
    expires_at: int


def admit(place: QueuePlaceItem, expires_at: int) -> bool:
    """Waiting -> admitted: stamp the place (its token's expiry) once; False if another poll
    did it first (the caller reads the place again)."""
    now = int(clock.now().timestamp())
    return update_one(
        QueuePlaceItem(*QueuePlaceItem.key(place.event_id, place.sub)),
        [QueuePlaceItem.admitted_at.set(now), QueuePlaceItem.expires_at.set(expires_at),
         QueuePlaceItem.GSI2PK.set(queue_index(place.event_id, place.sub, "QADMIT")),
         QueuePlaceItem.GSI2SK.set(f"{expires_at:012d}")],
        QueuePlaceItem.admitted_at.does_not_exist() & (QueuePlaceItem.round == int(place.round)),
        what="Admission",
    )


def spend(tx: Tx, admission: Admission, order_id: str) -> None:
    """Admitted -> spent, inside the hold's transaction: only an unspent admission of this
    round (a refusal names the part `admission`)."""
    tx.update(
        "admission", QueuePlaceItem(*QueuePlaceItem.key(admission.event_id, admission.sub)),
        actions=[QueuePlaceItem.spent_at.set(clock.iso(clock.now())), QueuePlaceItem.spent_order.set(order_id),
                 QueuePlaceItem.GSI2PK.set(queue_index(admission.event_id, admission.sub, "QSPENT"))],
        condition=(QueuePlaceItem.round == admission.round) & QueuePlaceItem.admitted_at.exists()
        & QueuePlaceItem.spent_at.does_not_exist(),
    )


def give_back(admission: Admission, order_id: str) -> bool:
    """Spent -> admitted again, when the checkout that spent it was not answered 201."""
    return update_one(
        QueuePlaceItem(*QueuePlaceItem.key(admission.event_id, admission.sub)),
        [QueuePlaceItem.spent_at.remove(), QueuePlaceItem.spent_order.remove(),
         QueuePlaceItem.GSI2PK.set(queue_index(admission.event_id, admission.sub, "QADMIT"))],
        QueuePlaceItem.spent_order == order_id,
        what="Giving the admission back",
    )
