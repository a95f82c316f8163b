"""Secrets from Secrets Manager, through Powertools parameters (cached per container).

Values never reach logs: the holder's repr names the keys, not their values.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ticketing.config import settings
from ticketing.errors import ConfigurationError, DependencyUnavailable


@dataclass(frozen=True)
class StripeKeys:
    publishable_key: str
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
    if not isinstance(value, dict) or not str(value.get("publishable_key", "")).startswith("pk_"):
        raise ConfigurationError(f"secret {name} must be JSON with publishable_key, secret_key and webhook_secret")
    return StripeKeys(
        publishable_key=value["publishable_key"],
        secret_key=value.get("secret_key", ""),
        webhook_secret=value.get("webhook_secret", ""),
    )
