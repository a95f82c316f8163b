"""Saved cards' Customer claim and SetupIntent limit, the inbox, and the card details of a
payment (issue 17): domain rules against moto in process, Stripe replaced where a rule
is about our side only."""

from __future__ import annotations

import email.policy
from datetime import datetime, timezone

import boto3
import pytest

from ticketing import cards, clock, inbox, mail, payments
from ticketing.auth import Caller
from ticketing.config import settings
from ticketing.errors import DependencyUnavailable, NotFound, TooManyRequests
from ticketing.table import AccountItem, OrderItem

WHO = Caller(sub="unit-sub", email="u@example.com", name="U")


@pytest.fixture
def stripe_calls(monkeypatch):
    made: list[str] = []

    def create_customer(*, idempotency_key, email, name, metadata):
        made.append(idempotency_key)
        return "cus_unit"

    monkeypatch.setattr(payments, "create_customer", create_customer)
    monkeypatch.setattr(payments, "create_setup_intent",
                        lambda *, customer_id, idempotency_key, metadata: (f"seti_{idempotency_key}", "secret"))
    return made


@pytest.fixture
def frozen():
    clock.freeze(datetime(2026, 12, 2, 10, 0, 5, tzinfo=timezone.utc))
    yield
    clock.freeze(None)


def test_the_customer_is_created_once_and_kept(aws, stripe_calls):
    assert cards.customer_of(WHO.sub) is None
    assert cards.ensure_customer(WHO) == "cus_unit"
    assert cards.ensure_customer(WHO) == "cus_unit"
    assert stripe_calls == [f"customer-{cards.account_key(WHO.sub)}"]  # derived from the account


def test_concurrent_first_requests_all_past_the_same_empty_read_create_one_customer(aws, monkeypatch):
    """The race that matters: every request has read "no Customer yet" (a barrier holds them
    there) before any of them claims; the claim lets one create it and the others get its id."""
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    made: list[str] = []

    def create_customer(*, idempotency_key, email, name, metadata):
        made.append(idempotency_key)
        time.sleep(0.2)  # Stripe answering while the others wait
        return "cus_once"

    monkeypatch.setattr(payments, "create_customer", create_customer)
    racers = 4
    barrier, first_read, real_read = threading.Barrier(racers), threading.local(), cards.customer_of

    def read_then_meet(sub):
        found = real_read(sub)
        if not getattr(first_read, "done", False):
            first_read.done = True
            barrier.wait(timeout=30)
        return found

    monkeypatch.setattr(cards, "customer_of", read_then_meet)
    lock, real_update = threading.Lock(), AccountItem.update

    def serialised(self, *args, **kwargs):  # moto does not serialise concurrent writes; DynamoDB does
        with lock:
            return real_update(self, *args, **kwargs)

    monkeypatch.setattr(AccountItem, "update", serialised)
    with ThreadPoolExecutor(racers) as pool:
        answers = list(pool.map(lambda _: cards.ensure_customer(WHO), range(racers)))
    assert answers == ["cus_once"] * racers
    assert made == [f"customer-{cards.account_key(WHO.sub)}"]  # created once
    assert real_read(WHO.sub) == "cus_once"


def test_a_live_claim_by_another_request_is_waited_for_then_503(aws, stripe_calls, monkeypatch):
    monkeypatch.setattr(cards, "WAIT_SECONDS", 0.3)
    assert cards._claim(WHO.sub)  # another request is creating the Customer
    with pytest.raises(DependencyUnavailable) as raised:
        cards.ensure_customer(WHO)
    assert raised.value.retry_after == 1 and stripe_calls == []


def test_a_claim_whose_lease_ran_out_is_taken_over(aws, stripe_calls, frozen):
    assert cards._claim(WHO.sub)
    clock.freeze(datetime(2026, 12, 2, 10, 5, tzinfo=timezone.utc))  # the claimant died
    assert cards.ensure_customer(WHO) == "cus_unit" and len(stripe_calls) == 1


def test_stripe_failing_releases_the_claim(aws, monkeypatch):
    def down(**_):
        raise payments.PaymentProviderError("down")

    monkeypatch.setattr(payments, "create_customer", down)
    with pytest.raises(payments.PaymentProviderError):
        cards.ensure_customer(WHO)
    assert AccountItem.get(*AccountItem.key(WHO.sub)).customer_claimed_until is None
    assert cards._claim(WHO.sub)  # the next request may try at once


def test_setup_intents_are_limited_per_window_with_retry_after(aws, stripe_calls, frozen):
    made = [cards.setup(WHO).setup_intent_id for _ in range(cards.SETUP_LIMIT)]
    assert len(set(made)) == cards.SETUP_LIMIT  # each its own idempotency key
    with pytest.raises(TooManyRequests) as raised:
        cards.setup(WHO)
    assert raised.value.retry_after == cards.SETUP_WINDOW_SECONDS - 5 + 1
    clock.freeze(datetime(2026, 12, 2, 10, 10, 1, tzinfo=timezone.utc))  # the next window
    assert cards.setup(WHO).setup_intent_id


def test_someone_elses_or_a_malformed_card_is_not_found(aws, stripe_calls, monkeypatch):
    cards.ensure_customer(WHO)
    monkeypatch.setattr(payments, "card", lambda pm_id: payments.Card(pm_id, "visa", "4242", 1, 2030, "cus_other"))
    for pm_id in ("pm_123", "card_123", "pm_" + "x" * 80):
        with pytest.raises(NotFound):
            cards.remove(WHO, pm_id)
    stranger = Caller(sub="nobody")
    with pytest.raises(NotFound):
        cards.make_default(stranger, "pm_123")


def test_card_details_are_read_from_either_api_shape():
    base = {"id": "pi_1", "status": "succeeded", "amount": 100, "currency": "usd"}
    old = payments.as_intent({**base, "charges": {"data": [
        {"id": "ch_1", "status": "succeeded", "payment_method_details": {"card": {"brand": "visa", "last4": "4242"}}}]}})
    new = payments.as_intent({**base, "latest_charge": {"id": "ch_2", "payment_method_details": {"card": {"brand": "amex", "last4": "0005"}}}})
    bare = payments.as_intent({**base, "latest_charge": "ch_3"})
    assert (old.card_brand, old.card_last4) == ("visa", "4242")
    assert (new.card_brand, new.card_last4, new.charge_id) == ("amex", "0005", "ch_2")
    assert (bare.card_brand, bare.card_last4) == (None, None)


def test_the_webhook_reads_the_card_of_todays_payment_intent_in_its_one_retrieve(aws, monkeypatch):
    """Today's API sends `latest_charge` as an id: the webhook's retrieve expands the
    payment method, so the payment history shows the card in production too, no call more."""
    from types import SimpleNamespace

    from ticketing import fulfilment, stripe_budget, webhooks

    asked: list = []

    class Intents:
        def retrieve(self, intent_id, params=None):
            asked.append(params)
            expanded = bool(params) and "payment_method" in params.get("expand", [])
            method = {"id": "pm_1", "type": "card", "card": {"brand": "visa", "last4": "4242"}} if expanded else "pm_1"
            return {"id": intent_id, "status": "succeeded", "amount": 100, "currency": "usd", "metadata": {},
                    "latest_charge": "ch_1", "payment_method": method}

    monkeypatch.setattr(payments, "client", lambda: SimpleNamespace(v1=SimpleNamespace(payment_intents=Intents())))
    monkeypatch.setattr(stripe_budget, "take", lambda *args, **kwargs: None)
    settled: list = []
    monkeypatch.setattr(fulfilment, "settle", lambda intent: settled.append(intent) or ("paid", None))
    webhooks._dispatch("payment_intent.succeeded", {"id": "pi_1"})
    assert asked == [{"expand": ["payment_method"]}]  # one call
    assert (settled[0].card_brand, settled[0].card_last4, settled[0].charge_id) == ("visa", "4242", "ch_1")


# ------------------------------------------------------------------ the inbox
def _order(order_id: str, sub: str) -> None:
    OrderItem(*OrderItem.key(order_id), GSI1PK=f"CUSTOMER#{sub}", GSI1SK=f"ORDER#x#{order_id}", order_id=order_id,
              event_id="evt_1", customer_sub=sub, status="paid", total_cents=2500, currency="usd", lines=[],
              ticket_ids=[], created_at="2026-12-01T00:00:00Z", expires_at="2026-12-01T00:15:00Z",
              updated_at="2026-12-01T00:00:00Z").save()


@pytest.fixture
def notice_mail(monkeypatch):
    monkeypatch.setenv("SENDER_EMAIL", "tickets@example.com")
    settings.cache_clear()
    yield mail.build_refund_notice(mail.RefundNotice(
        order_id="ord_1", to_email="jo@example.com", to_name="Jo", event_name="Gig", currency="usd",
        amount_cents=2500, reason="You asked for a refund."))
    settings.cache_clear()


def test_a_sent_customer_email_is_filed_once_in_its_customers_inbox(aws, notice_mail):
    _order("ord_1", "jo")
    first = inbox.record_mail(notice_mail, "ses-1")
    assert inbox.record_mail(notice_mail, "ses-1") == first  # the same email: one entry
    assert inbox.record_mail(notice_mail, "ses-2") != first  # another refund notice: another
    page = inbox.my_notifications(Caller(sub="jo"))
    assert page.unread == 2 and page.count == 2
    entry = page.notifications[0]
    assert (entry.kind, entry.order_id, entry.event_id) == ("refund", "ord_1", "evt_1")
    assert entry.title == "Refund for order ord_1" and entry.body.startswith("We have refunded $25.00")
    assert inbox.my_notifications(Caller(sub="someone")).notifications == []


def test_a_receipt_sent_again_is_one_notification_and_unknown_mail_none(aws, notice_mail):
    _order("ord_1", "jo")
    del notice_mail["X-Ticketing-Kind"]
    notice_mail["X-Ticketing-Kind"] = "receipt"
    assert inbox.record_mail(notice_mail, "ses-1") == inbox.record_mail(notice_mail, "ses-2")
    del notice_mail["X-Ticketing-Order"]
    notice_mail["X-Ticketing-Order"] = "ord_gone"
    assert inbox.record_mail(notice_mail, "ses-3") is None


def test_read_marks_once_and_another_customers_id_is_not_found(aws):
    note = inbox.record("jo", "refund", "t", "b", dedupe="x")
    with pytest.raises(NotFound):
        inbox.mark_read(Caller(sub="other"), note)
    first = inbox.mark_read(Caller(sub="jo"), note).read_at
    assert first and inbox.mark_read(Caller(sub="jo"), note).read_at == first
    assert inbox.unread_count("jo") == 0
    for n in range(3):
        inbox.record("jo", "receipt", "t", "b", dedupe=str(n))
    assert inbox.my_notifications(Caller(sub="jo"), unread=True).unread == 3
    assert inbox.mark_all_read(Caller(sub="jo")).unread == 0


def test_the_mail_hook_never_fails_a_send(aws, notice_mail, monkeypatch):
    boto3.client("ses", region_name="us-east-1").verify_email_identity(EmailAddress="tickets@example.com")
    mail.reset_client()

    def broken(message, message_id):
        raise RuntimeError("table down")

    monkeypatch.setattr(inbox, "record_mail", broken)
    assert mail.send(notice_mail)  # sent; the inbox failure is only logged
    mail.reset_client()


def test_built_customer_mail_says_what_it_is():
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SENDER_EMAIL", "tickets@example.com")
        settings.cache_clear()
        notice = mail.build_refund_notice(mail.RefundNotice(
            order_id="o", to_email="a@example.com", to_name=None, event_name="E", currency="usd",
            amount_cents=1, reason="r"))
        settings.cache_clear()
    assert notice["X-Ticketing-Kind"] == "refund"
    assert email.message_from_bytes(notice.as_bytes(), policy=email.policy.default)["X-Ticketing-Kind"] == "refund"


def test_a_cancellation_refund_is_filed_as_event_canceled(aws, notice_mail, monkeypatch):
    from ticketing import refunds

    sent: list = []
    monkeypatch.setattr(mail, "send", lambda message, **owner: sent.append(message) or "ses-1")
    order = OrderItem(order_id="o1", customer_email="a@example.com", customer_name=None, currency="usd")
    refunds.notify(order, 100, "event_canceled", event_name="Gig")
    refunds.notify(order, 100, "requested_by_customer", event_name="Gig")
    assert [m["X-Ticketing-Kind"] for m in sent] == ["event_canceled", "refund"]


def test_an_undeliverable_receipt_is_filed_once(aws):
    _order("ord_2", "jo")
    order = OrderItem.get(*OrderItem.key("ord_2"))
    inbox.receipt_undeliverable(order)
    inbox.receipt_undeliverable(order)
    [entry] = inbox.my_notifications(Caller(sub="jo")).notifications
    assert (entry.kind, entry.order_id) == ("receipt_undeliverable", "ord_2")
