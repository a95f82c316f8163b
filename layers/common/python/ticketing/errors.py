"""Domain errors. They say what went wrong; `ticketing.http` alone decides the HTTP status."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """Base of every error the API reports in its `{"error", "detail"}` format."""

    error = "Request failed"

    def __init__(self, detail: str, *, error: str | None = None, **fields: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        if error is not None:
            self.error = error
        self.fields = fields  # extra machine fields (code, field, ...)


class InvalidInput(DomainError):
    error = "Invalid input"

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(detail, field=field, code="invalid")


class Unprocessable(DomainError):
    """Well-formed, but refused as it stands (its `code` says why), e.g. an unverified email."""

    error = "Cannot be processed"


class MalformedRequest(DomainError):
    error = "Malformed request"


class NotFound(DomainError):
    error = "Not found"


class Forbidden(DomainError):
    error = "Permission denied"


class Unauthenticated(DomainError):
    error = "Unauthorized"


class Conflict(DomainError):
    error = "Conflict"


class TooLarge(DomainError):
    error = "Request too large"


class TooManyRequests(DomainError):
    error = "Too many requests"

    def __init__(self, detail: str, *, retry_after: int | None = None, **fields: Any) -> None:
        super().__init__(detail, **fields)
        self.retry_after = retry_after  # seconds, sent as Retry-After


class PaymentProviderError(DomainError):
    error = "Payment processing error"


class DependencyUnavailable(DomainError):
    error = "Service unavailable"

    def __init__(self, detail: str, *, retry_after: int | None = None, **fields: Any) -> None:
        super().__init__(detail, **fields)
        self.retry_after = retry_after


class ConfigurationError(RuntimeError):
    """A setting is missing or wrong: raised at cold start, never mid-request."""
