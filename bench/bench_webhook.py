"""The webhook: DynamoDB calls per Stripe event, counted in process (moto + the Stripe
stand-in). `payment_intent.succeeded` of a two-ticket order reads the order once."""

from __future__ import annotations

import os

from bench.common import calls_text, count_aws_calls, table


def run() -> str:
    import json

    import boto3
    import stripe
    from moto import mock_aws

    from bench.common import create_table_and_secrets
    from local.stack import _new_qr_keys, stripe_standin
    from tests.conftest import load_function
    from tests.unit.conftest import ADMIN, Invoker

    rows = []
    sender = "tickets@bench.example"
    with stripe_standin() as stripe_url, mock_aws():
        os.environ.update({"STRIPE_API_BASE": stripe_url, "QR_SIGNING_SECRET_NAME": "bench/qr", "SENDER_EMAIL": sender})
        from ticketing import config, mail, webhooks

        config.settings.cache_clear()
        mail.reset_client()
        create_table_and_secrets()
        boto3.client("secretsmanager").create_secret(Name="bench/qr", SecretString=json.dumps(_new_qr_keys()))
        boto3.client("ses").verify_email_identity(EmailAddress=sender)
        catalogue, buy = Invoker(load_function("catalogue")), Invoker(load_function("checkout"))
        _, event, _ = catalogue("POST", "/api/events/", {
            "name": "Bench webhook", "venue": "Hall", "currency": "usd", "starts_at": "2030-01-01T18:00:00Z",
            "ends_at": "2030-01-01T22:00:00Z"}, claims=ADMIN)
        _, kind, _ = catalogue("POST", f"/api/events/{event['id']}/ticket-types/",
                               {"name": "GA", "price_cents": 2500, "capacity": 1000}, claims=ADMIN)
        client = stripe.StripeClient("sk_test_bench", base_addresses={"api": stripe_url})

        def paid_order(n: int) -> str:
            claims = {"sub": f"bench-payer-{n}", "email": f"payer{n}@example.com", "name": "Payer", "email_verified": "true"}
            status, order, _ = buy("POST", "/api/tickets/stripe/checkout/",
                                   {"event_id": event["id"], "items": [{"ticket_type_id": kind["id"], "qty": 2}]}, claims=claims)
            assert status == 201, order
            client.v1.payment_intents.confirm(order["payment_intent_id"], params={"payment_method": "pm_card_visa"})
            return order["payment_intent_id"]

        def deliver(intent_id: str, n: int) -> str:
            stripe_event = {"id": f"evt_bench_{n}", "type": "payment_intent.succeeded", "data": {"object": {"id": intent_id}}}
            return webhooks.handle(stripe_event).outcome

        deliver(paid_order(0), 0)  # warm: secrets, clients
        intent = paid_order(1)
        with count_aws_calls() as calls:
            outcome = deliver(intent, 1)
        rows.append((f"payment_intent.succeeded, 2 tickets ({outcome}): DynamoDB calls", calls_text(calls, "dynamodb")))
        with count_aws_calls() as again:
            deliver(intent, 1)  # the same event delivered again
        rows.append(("the same event again (a duplicate delivery)", calls_text(again, "dynamodb")))
        config.settings.cache_clear()
        mail.reset_client()
    return table(rows, "Webhook (DynamoDB calls per Stripe event)")


if __name__ == "__main__":
    from bench.common import setup

    setup()
    print(run())
