"""Settings, read from the environment and checked once per cold start.

A function calls `settings()` at import time, so a missing or malformed setting
fails the cold start loudly instead of failing halfway through a payment.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache

from ticketing.errors import ConfigurationError


@dataclass(frozen=True)
class Settings:
    table_name: str
    stage: str
    region: str
    frontend_url: str
    stripe_secret_name: str
    qr_signing_secret_name: str
    max_body_bytes: int
    page_size_max: int
    inventory_shard_size: int
    inventory_max_shards: int
    hold_minutes: int
    max_held_per_customer: int
    refund_cutoff_hours: int
    sender_email: str = ""  # the From of every email (SES-verified); empty where no mail is sent
    qr_bucket: str = ""  # the private bucket of rendered QR images; empty where none are served
    cancel_queue_url: str = ""  # the queue of event-cancellation batches; empty where none are started
    qr_public_keys_parameter: str = ""  # the SSM parameter of the QR public keys; set where tickets are verified
    stripe_publishable_key: str = ""  # pk_...: set where the payment config is served
    ses_configuration_set: str = ""  # the SES configuration set every email is sent with (bounces, complaints)
    admission_secret_name: str = ""  # the waiting room's admission-token key; set where tokens are signed or checked
    apple_wallet_secret_name: str = ""  # the Apple pass certificate and key (ticketing.wallet); set where passes are made
    google_wallet_secret_name: str = ""  # the Google Wallet service account key (ticketing.wallet)
    # Stripe's rate as a budget (ticketing.stripe_budget): requests a second, every instance together
    stripe_rate_total: int = 100  # Stripe's live-mode account limit (25 in test mode)
    stripe_rate_per_endpoint: int = 25  # Stripe's per-endpoint limit (PaymentIntent creation, ...)
    stripe_rate_background_percent: int = 50  # of the total, kept for cancels, refunds, webhook reads
    event_change_batch: int = 100  # tickets a queue message of an event change's notices covers (ticketing.event_changes)


def _int(env: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name, "")
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be a whole number, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigurationError(f"{name} must be between {low} and {high}, got {value}")
    return value


def load(env: dict[str, str] | None = None) -> Settings:
    env = dict(os.environ if env is None else env)
    missing = [name for name in ("TABLE_NAME",) if not env.get(name)]
    if missing:
        raise ConfigurationError(f"missing required settings: {', '.join(missing)}")
    return Settings(
        table_name=env["TABLE_NAME"],
        stage=env.get("STAGE", "dev"),
        region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
        frontend_url=env.get("FRONTEND_URL", "http://localhost:5173").rstrip("/"),
        stripe_secret_name=env.get("STRIPE_SECRET_NAME", ""),
        qr_signing_secret_name=env.get("QR_SIGNING_SECRET_NAME", ""),
        max_body_bytes=_int(env, "MAX_BODY_BYTES", 64 * 1024, 1024, 6 * 1024 * 1024),
        page_size_max=_int(env, "PAGE_SIZE_MAX", 100, 1, 1000),
        inventory_shard_size=_int(env, "INVENTORY_SHARD_SIZE", 50, 1, 1_000_000),
        inventory_max_shards=_int(env, "INVENTORY_MAX_SHARDS", 16, 1, 100),
        hold_minutes=_int(env, "HOLD_MINUTES", 15, 1, 24 * 60),
        max_held_per_customer=_int(env, "MAX_HELD_PER_CUSTOMER", 20, 1, 10_000),
        refund_cutoff_hours=_int(env, "REFUND_CUTOFF_HOURS", 48, 0, 24 * 365),
        sender_email=env.get("SENDER_EMAIL", "").strip(),
        qr_bucket=env.get("QR_BUCKET", "").strip(),
        cancel_queue_url=env.get("CANCEL_QUEUE_URL", "").strip(),
        qr_public_keys_parameter=env.get("QR_PUBLIC_KEYS_PARAMETER", "").strip(),
        stripe_publishable_key=env.get("STRIPE_PUBLISHABLE_KEY", "").strip(),
        ses_configuration_set=env.get("SES_CONFIGURATION_SET", "").strip(),
        admission_secret_name=env.get("ADMISSION_SECRET_NAME", "").strip(),
        apple_wallet_secret_name=env.get("APPLE_WALLET_SECRET_NAME", "").strip(),
        google_wallet_secret_name=env.get("GOOGLE_WALLET_SECRET_NAME", "").strip(),
        stripe_rate_total=_int(env, "STRIPE_RATE_TOTAL", 100, 1, 100_000),
        stripe_rate_per_endpoint=_int(env, "STRIPE_RATE_PER_ENDPOINT", 25, 1, 100_000),
        stripe_rate_background_percent=_int(env, "STRIPE_RATE_BACKGROUND_PERCENT", 50, 1, 99),
        event_change_batch=_int(env, "EVENT_CHANGE_BATCH", 100, 1, 1000),
    )


@lru_cache(maxsize=1)
def settings() -> Settings:
    return load()
