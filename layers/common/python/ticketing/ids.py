"""Identifiers: short, URL-safe, unguessable, roughly time-ordered."""

from __future__ import annotations

import secrets
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case


def _encode(number: int, length: int) -> str:
    chars = []
    for _ in range(length):
        number, digit = divmod(number, 32)
        chars.append(_ALPHABET[digit])
    return "".join(reversed(chars))


def new_id(prefix: str) -> str:
    """`prefix_` + 8 characters of milliseconds + 12 random characters (60 bits)."""
    return f"{prefix}_{_encode(int(time.time() * 1000), 8)}{_encode(secrets.randbits(60), 12)}"
