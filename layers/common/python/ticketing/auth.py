"""Who is calling: the verified JWT claims, parsed once, in API Gateway's string form."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ticketing.errors import Forbidden

ADMIN = "admin"
SCANNER = "scanner"


@dataclass(frozen=True)
class Caller:
    sub: str
    email: str | None = None
    name: str | None = None
    groups: frozenset[str] = field(default_factory=frozenset)
    email_verified: bool = False  # the `email_verified` claim is "true": the pool checked the address

    @property
    def is_admin(self) -> bool:
        return ADMIN in self.groups

    def require(self, *roles: str, detail: str = "You do not have permission to do this") -> None:
        """Raise Forbidden unless the caller is in one of `roles`."""
        if not self.groups.intersection(roles):
            raise Forbidden(detail)


def parse_groups(raw: Any) -> frozenset[str]:
    """`cognito:groups` as the HTTP API JWT authorizer hands it on: a string such as
    "[admin scanner]"; a real list is accepted too."""
    if raw is None:
        return frozenset()
    if isinstance(raw, (list, tuple)):
        return frozenset(str(item) for item in raw if str(item))
    return frozenset(part for part in re.split(r"[\s,]+", str(raw).strip().strip("[]")) if part)


def caller_from_claims(claims: dict[str, Any] | None) -> Caller | None:
    if not claims or not claims.get("sub"):
        return None
    return Caller(
        sub=str(claims["sub"]),
        email=claims.get("email") or None,
        name=claims.get("name") or None,
        groups=parse_groups(claims.get("cognito:groups")),
        email_verified=str(claims.get("email_verified", "")).strip().lower() == "true",
    )
