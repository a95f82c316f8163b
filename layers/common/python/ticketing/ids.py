"""Identifiers: short, URL-safe, unguessable, roughly time-ordered."""

from __future__ import annotations

import re
import secrets
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case

# The longest id any input may carry (ours are 23 characters): far inside DynamoDB's key
# limits (2,048 bytes for a partition key, 1,024 for a sort key), so a longer one is
# refused as input before any read.
MAX_LENGTH = 64
_PLAUSIBLE = re.compile(rf"[A-Za-z0-9_-]{{1,{MAX_LENGTH}}}")


def plausible(text: str) -> bool:
    """Could `text` be an id (ours, or a route's word)? At most MAX_LENGTH of A-Z a-z 0-9 - _."""
    return bool(_PLAUSIBLE.fullmatch(text))


def _encode(number: int, length: int) -> str:
    chars = []
    for _ in range(length):
        number, digit = divmod(number, 32)
        chars.append(_ALPHABET[digit])
    return "".join(reversed(chars))


def new_id(prefix: str) -> str:
    """`prefix_` + 8 characters of milliseconds + 12 random characters (60 bits)."""
    return f"{prefix}_{_encode(int(time.time() * 1000), 8)}{_encode(secrets.randbits(60), 12)}"
