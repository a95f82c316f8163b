"""Secrets from Secrets Manager, through Powertools parameters (cached per container).

Values never reach logs: the holder's repr names the keys, not their values. The Stripe
publishable key is not a secret and is not read from here: the catalogue function, which
serves it, has no access to this secret (`STRIPE_PUBLISHABLE_KEY`, `catalogue.publishable_key`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ticketing.config import settings
from ticketing.errors import ConfigurationError, DependencyUnavailable


@dataclass(frozen=True)
class StripeKeys:
    secret_key: str = field(repr=False)
    webhook_secret: str = field(repr=False)


def stripe_keys() -> StripeKeys:
    from aws_lambda_powertools.utilities.parameters import get_secret
    from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

    name = settings().stripe_secret_name
    if not name:
        raise ConfigurationError("STRIPE_SECRET_NAME is not set")
    try:
        value = get_secret(name, transform="json")
    except GetParameterError as exc:
        raise DependencyUnavailable("The payment configuration could not be read; try again shortly.", retry_after=1) from exc
    if not isinstance(value, dict) or not str(value.get("secret_key", "")).startswith(("sk_", "rk_")):
        raise ConfigurationError(f"secret {name} must be JSON with secret_key (sk_... or rk_...) and webhook_secret")
    return StripeKeys(secret_key=value["secret_key"], webhook_secret=str(value.get("webhook_secret", "")))


def admission_key() -> bytes:
    """The waiting room's admission-token key (`ADMISSION_SECRET_NAME`: JSON {"key": "<URL-safe
    base64 of at least 32 random bytes>"}), cached per container by Powertools."""
    import base64
    import binascii

    from aws_lambda_powertools.utilities.parameters import get_secret
    from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

    name = settings().admission_secret_name
    if not name:
        raise ConfigurationError("ADMISSION_SECRET_NAME is not set")
    try:
        value = get_secret(name, transform="json")
    except GetParameterError as exc:
        raise DependencyUnavailable("The waiting room's key could not be read; try again shortly.", retry_after=1) from exc
    try:
        text = str(value.get("key", "")) if isinstance(value, dict) else ""
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) < 32:
        raise ConfigurationError(f"secret {name} must be JSON with key: URL-safe base64 of at least 32 bytes")
    return raw
