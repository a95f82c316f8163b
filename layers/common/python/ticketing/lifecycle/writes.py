"""How the lifecycle writes: one helper recognises a failed condition, one a conflict;
transactions and single writes are retried on conflict (bounded, with jitter), then
answered 503 with Retry-After; a transition's log record rides in its own transaction;
checkpoints let the race tests stop a writer between its reads and its writes.
"""

from __future__ import annotations

import random
import secrets
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from ticketing import clock
from ticketing.errors import DependencyUnavailable

T = TypeVar("T")

CONDITION_CODES = frozenset({"ConditionalCheckFailed", "ConditionalCheckFailedException"})
# Another writer or the table's capacity, never our own data: worth a retry.
CONFLICT_CODES = frozenset({
    "TransactionConflict", "TransactionConflictException", "TransactionInProgressException",
    "ThrottlingError", "ThrottlingException", "ProvisionedThroughputExceededException", "RequestLimitExceeded",
})
ATTEMPTS = 5  # then 503: the caller (or Stripe, or SQS) tries again later
PAUSE_SECONDS = 0.02  # first pause; doubles per attempt, jittered ("full jitter")
RETRY_AFTER = 1


# --------------------------------------------------------------- recognising
def _response(exc: BaseException) -> dict[str, Any]:
    for candidate in (exc, getattr(exc, "cause", None), exc.__cause__):
        response = getattr(candidate, "response", None)
        if isinstance(response, dict):
            return response
    return {}


def error_code(exc: BaseException) -> str | None:
    return _response(exc).get("Error", {}).get("Code")


def reason_codes(exc: BaseException) -> list[str | None]:
    """The transaction's CancellationReasons codes, one per item in request order."""
    reasons = getattr(exc, "cancellation_reasons", None)
    if reasons:
        return [reason.code if reason else None for reason in reasons]
    return [reason.get("Code") for reason in _response(exc).get("CancellationReasons") or []]


def condition_failed(exc: BaseException) -> bool:
    """Whether a write (single or transaction) failed because a condition did."""
    return error_code(exc) in CONDITION_CODES or any(code in CONDITION_CODES for code in reason_codes(exc))


def is_conflict(exc: BaseException) -> bool:
    """Whether a write failed on another writer or on throttling only (no condition failed):
    the same write may succeed if sent again."""
    if condition_failed(exc):
        return False
    return error_code(exc) in CONFLICT_CODES or any(code in CONFLICT_CODES for code in reason_codes(exc))


def failed_parts(exc: BaseException, kinds: list[str]) -> set[str]:
    """The kinds (as the transaction was built) whose condition failed."""
    return {kinds[i] for i, code in enumerate(reason_codes(exc)) if code in CONDITION_CODES and i < len(kinds)}


# ----------------------------------------------------------------- retrying
def _pause(attempt: int) -> None:
    time.sleep(random.uniform(0, PAUSE_SECONDS * 2**attempt))


def retrying(write: Callable[[], T], *, attempts: int = ATTEMPTS, what: str = "This change") -> T:
    """`write()`, again after a jittered pause each time it hits a conflict or throttling;
    DependencyUnavailable (503, Retry-After) once `attempts` have conflicted."""
    last: BaseException | None = None
    for attempt in range(attempts):
        try:
            return write()
        except Exception as exc:  # noqa: BLE001 - anything not a conflict goes straight up
            if not is_conflict(exc):
                raise
            last = exc
            checkpoint("conflict", attempt=attempt)
            if attempt + 1 < attempts:
                _pause(attempt)
    raise DependencyUnavailable(
        f"{what} kept meeting other changes to the same items; try again in a moment.",
        retry_after=RETRY_AFTER, code="contention",
    ) from last


# ---------------------------------------------------------------- transactions
class Refused(Exception):
    """A transition's condition failed: `failed` names the parts (as built) that failed."""

    def __init__(self, failed: set[str]) -> None:
        super().__init__(", ".join(sorted(failed)) or "condition failed")
        self.failed = failed


class Tx:
    """A TransactWrite whose items carry a kind, so a refusal says which part failed.
    PynamoDB sends deletes, then puts, then updates (whatever order they were added in),
    and DynamoDB's CancellationReasons follow the request: `kinds` follows it too."""

    def __init__(self, transaction: Any) -> None:
        self.transaction = transaction
        self._kinds: dict[str, list[str]] = {"delete": [], "put": [], "update": []}

    @property
    def kinds(self) -> list[str]:
        return self._kinds["delete"] + self._kinds["put"] + self._kinds["update"]

    def save(self, kind: str, model: Any, condition: Any = None) -> None:
        self.transaction.save(model, condition=condition)
        self._kinds["put"].append(kind)

    def update(self, kind: str, model: Any, actions: list, condition: Any = None) -> None:
        self.transaction.update(model, actions=actions, condition=condition)
        self._kinds["update"].append(kind)

    def delete(self, kind: str, model: Any, condition: Any = None) -> None:
        self.transaction.delete(model, condition=condition)
        self._kinds["delete"].append(kind)

    def log(self, order_id: str, transition: Any, *, by: str, why: str, from_status: str | None = None,
            ids: Iterable[str] = (), to_status: str | None = None) -> None:
        """The transition's log record, in this transaction: who, when, from, to, why."""
        self.save("log", log_record(order_id, transition, by=by, why=why, from_status=from_status, ids=ids, to_status=to_status))


def log_record(order_id: str, transition: Any, *, by: str, why: str, from_status: str | None = None,
               ids: Iterable[str] = (), to_status: str | None = None):
    from ticketing.table import TransitionLogItem

    at = clock.iso(clock.now())
    target = to_status or (from_status if transition.target == "=" else str(transition.target))
    return TransitionLogItem(
        *TransitionLogItem.key(order_id, at, secrets.token_hex(4)), order_id=order_id, entity=transition.entity,
        transition=transition.name, from_status=from_status, to_status=target, by=by or "system", why=why[:300],
        ids=list(ids), at=at,
    )


def transact(build: Callable[[Tx], None], *, what: str = "This change") -> None:
    """Run the transaction `build` describes (built afresh per attempt). Raises Refused when
    a condition failed; retries conflicts, then DependencyUnavailable."""
    from pynamodb.exceptions import TransactWriteError
    from pynamodb.transactions import TransactWrite

    from ticketing.table import connection

    def once() -> None:
        tx: Tx | None = None
        try:
            with TransactWrite(connection=connection()) as transaction:
                tx = Tx(transaction)
                build(tx)
                checkpoint("commit", kinds=tuple(tx.kinds))
        except TransactWriteError as exc:
            if condition_failed(exc):
                raise Refused(failed_parts(exc, tx.kinds if tx else [])) from exc
            raise

    retrying(once, what=what)


def update_one(model: Any, actions: list, condition: Any = None, *, what: str = "This change") -> bool:
    """One conditional UpdateItem, retried on conflict: False if the condition failed."""
    from pynamodb.exceptions import UpdateError

    def once() -> bool:
        try:
            checkpoint("commit", kinds=("single",))
            model.update(actions=actions, condition=condition)
            return True
        except UpdateError as exc:
            if condition_failed(exc):
                return False
            raise

    return retrying(once, what=what)


# ---------------------------------------------------------------- checkpoints
_hook: Callable[..., None] | None = None


def checkpoint(name: str, **info: Any) -> None:
    """A point between a writer's reads and its writes. A no-op in production; the race
    tests install a scheduler here (`set_hook`) to run every interleaving."""
    if _hook is not None:
        _hook(name, **info)


def set_hook(hook: Callable[..., None] | None) -> None:
    global _hook
    _hook = hook
