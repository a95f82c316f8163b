"""The JWT authorizer: tokens from the gateway's own local issuer (never Cognito), minted
by ``POST /_local/token`` and checked as API Gateway checks a Cognito ID token."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

AUDIENCE = "local-client"
KEY_ID = "local"


def load_or_create_key(path: str | os.PathLike[str] | None = None) -> rsa.RSAPrivateKey:
    """The gateway's RSA signing key: loaded from ``path`` (PEM) if it exists, else generated
    (and written to ``path``, mode 0600, when a path is given)."""
    if path and Path(path).exists():
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError(f"{path}: not an RSA private key")
        return key
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if path:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        tmp = target.with_name(target.name + f".{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
        os.replace(tmp, target)
    return key


def make_token(
    private_key: Any,
    *,
    issuer: str,
    sub: str,
    audience: str = AUDIENCE,
    email: str | None = None,
    name: str | None = None,
    groups: Iterable[str] | None = None,
    ttl_seconds: int = 3600,
    extra_claims: Mapping[str, Any] | None = None,
    now: int | None = None,
    email_verified: bool = True,
) -> str:
    """An RS256 Cognito-ID-token-shaped JWT. ``extra_claims`` override/add claims (e.g. ``aud``)."""
    now = int(time.time()) if now is None else now
    claims: dict[str, Any] = {"sub": sub}
    if email:
        claims["email"] = email
    claims["email_verified"] = bool(email_verified)
    if name:
        claims["name"] = name
    groups = [str(g) for g in (groups or [])]
    if groups:
        claims["cognito:groups"] = groups
    claims.update(
        {
            "iss": issuer,
            "cognito:username": sub,
            "aud": audience,
            "token_use": "id",
            "auth_time": now,
            "iat": now,
            "exp": now + int(ttl_seconds),
            "jti": str(uuid.uuid4()),
        }
    )
    claims.update(extra_claims or {})
    return jwt.encode(claims, private_key, algorithm="RS256", headers={"kid": KEY_ID})


def verify_token(token: str, public_key: Any, *, issuer: str, audience: str = AUDIENCE) -> dict[str, Any]:
    """Verify signature, issuer, audience and expiry; return the claims or raise ``jwt.InvalidTokenError``."""
    return jwt.decode(
        token,
        public_key,
        algorithms=["RS256"],
        audience=audience,
        issuer=issuer,
        options={"require": ["exp", "iss", "sub"]},
    )



def claims_from(headers: Mapping[str, str], header: str, public_key: Any, *, issuer: str, audience: str = AUDIENCE) -> dict[str, Any] | None:
    """The verified claims of the token in ``header`` (``Bearer `` optional), or None: no
    token, or one this issuer did not sign, expired, or for another audience."""
    token = (headers.get(header) or "").strip()
    if token[:7].lower() == "bearer ":
        token = token[7:].strip()
    if not token:
        return None
    try:
        return verify_token(token, public_key, issuer=issuer, audience=audience)
    except jwt.InvalidTokenError:
        return None
