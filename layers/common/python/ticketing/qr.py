"""Ticket QR codes, the one module for them: sign, verify, render, rotate keys.

A ticket's QR code carries a signed payload, so a gate scanner can check a ticket with
no database read, even offline, holding only the public keys document.

Payload (version 1), ASCII, only the URL-safe characters ``A-Z a-z 0-9 - _ :`` (a
scanner can put it in ``?code=`` unencoded)::

    TKT1:<kid>:<ticket_id>:<event_id>:<signature>
    TKT1:k20261122:tk_m81yryynw8s0yewh4x84:ev_m81yryynw8s0yewh4x84:<86 characters>

- ``TKT1`` names the format and its version; any other tag is malformed.
- ``kid`` names the signing key: 1 to 12 of ``A-Z a-z 0-9 - _``, starting alphanumeric
  (``k`` + UTC date, as `rotate` and local/stack.py make them).
- ids are ``tk_`` / ``ev_`` + 20 Crockford base32 characters (`ticketing.ids`).
- ``signature`` is Ed25519 (64 bytes), URL-safe base64 without padding: exactly 86
  characters, in canonical form (the 4 unused low bits of the last character are zero,
  so no two spellings verify).

The signature covers ``b"ticketing-qr\\0v1\\0kid\\0<kid>\\0ticket\\0<ticket_id>\\0event\\0<event_id>"``:
labelled, NUL-separated fields under a version tag, so a signature made for one field
order, format version or purpose cannot be replayed as another. The kid is signed too.

Code versions (version 2 of the format): a ticket's code is re-issued when the ticket is
transferred (`ticketing.transfers`), and the new code must differ from the old one, which
stops admitting at once. Its *code version* (1 to `MAX_CODE_VERSION`; a TKT1 code is
version 0) is signed into it::

    TKT2:<kid>:<ticket_id>:<event_id>:<code version>:<signature>

over ``b"ticketing-qr\\0v2\\0kid\\0<kid>\\0ticket\\0<ticket_id>\\0event\\0<event_id>\\0version\\0<n>"``.
The ticket item keeps its current version (`code_version`); the gate refuses any other
(`void`), and the scanners' voided list names the ticket with its current version, so an
offline scanner refuses the older codes and admits the current one (`ticketing.offline`).
A TKT2 code is 2 to 4 characters longer: at most `MAX_PAYLOAD_LENGTH` (156), 151 with a
9-character kid and a one-digit version, still a version-8 QR code up to 152 (a version-9
one, 53 modules, beyond).

Length: 149 characters with a 9-character kid, at most `MAX_PAYLOAD_LENGTH` (152) with
a 12-character one, so every payload fits a version-8 QR code at error correction M
(49×49 modules, 57 with the quiet zone: 3.5 pixels a module at 200 pixels).

Private keys live in Secrets Manager (``QR_SIGNING_SECRET_NAME``) as
``{"active": "<kid>", "keys": {"<kid>": "<URL-safe base64 raw 32-byte Ed25519 private key>"}}``,
readable only where tickets are signed (`sign`: the webhook's fulfilment, and a transfer). Their public
keys are published apart, in an SSM parameter (``QR_PUBLIC_KEYS_PARAMETER``) as
``{"keys": {"<kid>": "<URL-safe base64 raw public key>"}}``: the gate reads that one alone
(`public_keys`, `verify`), so nothing that verifies can sign. Rotation adds a key and makes
it active; old kids stay so the tickets they signed keep verifying until the kid is
retired. `python -m ticketing.qr --help` rotates, retires and publishes, keeping the two in
step (a new key is published before it signs; a retired one unpublished after).

verify never loads qrcode or Pillow (the gate function imports this module); only the
render functions do. `cryptography` is imported on first use, not at import time.
"""

from __future__ import annotations

import base64
import binascii
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, TypeVar

from ticketing.errors import ConfigurationError, DependencyUnavailable

VERSION_TAG = "TKT1"
VERSIONED_TAG = "TKT2"  # a re-issued code: carries its code version
MAX_KID_LENGTH = 12
MAX_CODE_VERSION = 999  # re-issues of one ticket's code (transfers)
MAX_V1_LENGTH = len(VERSION_TAG) + 1 + MAX_KID_LENGTH + 1 + 23 + 1 + 23 + 1 + 86  # 152
MAX_PAYLOAD_LENGTH = MAX_V1_LENGTH + 1 + len(str(MAX_CODE_VERSION))  # 156
MIN_SIZE = 100
MAX_SIZE = 1024
QUIET_ZONE = 4  # modules, as the QR specification asks

_B32 = "0-9abcdefghjkmnpqrstvwxyz"  # ticketing.ids alphabet
_KID = rf"[A-Za-z0-9][A-Za-z0-9_-]{{0,{MAX_KID_LENGTH - 1}}}"
_KID_RE = re.compile(_KID)
_TICKET_RE = re.compile(rf"tk_[{_B32}]{{20}}")
_EVENT_RE = re.compile(rf"ev_[{_B32}]{{20}}")
_PAYLOAD_RE = re.compile(
    rf"{VERSION_TAG}:({_KID}):(tk_[{_B32}]{{20}}):(ev_[{_B32}]{{20}}):()([A-Za-z0-9_-]{{86}})"
)
_VERSIONED_RE = re.compile(
    rf"{VERSIONED_TAG}:({_KID}):(tk_[{_B32}]{{20}}):(ev_[{_B32}]{{20}}):([1-9][0-9]{{0,2}}):([A-Za-z0-9_-]{{86}})"
)

REASONS = ("malformed", "unknown_key", "bad_signature")
T = TypeVar("T")


class BadSignature(Exception):
    """The payload is not a ticket we signed. `reason` is one of `REASONS`.

    The only exception verify raises for a bad payload, so a caller answers every
    forgery, typo and scanner glitch the same way.
    """

    def __init__(self, reason: str) -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown reason {reason!r}")
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Verified:
    ticket_id: str
    event_id: str
    kid: str
    version: int = 0  # the code version (TKT1: 0)


# -- signing and verifying with explicit keys (no AWS) ---------------------------------


def _message(kid: str, ticket_id: str, event_id: str, version: int = 0) -> bytes:
    if version == 0:
        return "\0".join(("ticketing-qr", "v1", "kid", kid, "ticket", ticket_id, "event", event_id)).encode("ascii")
    fields = ("ticketing-qr", "v2", "kid", kid, "ticket", ticket_id, "event", event_id, "version", str(version))
    return "\0".join(fields).encode("ascii")


def _b64decode(text: str) -> bytes:
    """URL-safe base64, padded or not; strict (no stray characters)."""
    text = text.strip()
    return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii")


def _key_bytes(b64: str, what: str) -> bytes:
    try:
        raw = _b64decode(b64)
    except (binascii.Error, ValueError, TypeError, AttributeError):
        raise ValueError(f"{what} is not URL-safe base64") from None
    if len(raw) != 32:
        raise ValueError(f"{what} must be 32 raw bytes, got {len(raw)}")
    return raw


@lru_cache(maxsize=32)
def _private_key(private_b64: str) -> Any:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.from_private_bytes(_key_bytes(private_b64, "private key"))


@lru_cache(maxsize=64)
def _public_key(public_b64: str) -> Any:
    """Loaded once per key (and so per kid) per container: verify stays cheap."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    return Ed25519PublicKey.from_public_bytes(_key_bytes(public_b64, "public key"))


@lru_cache(maxsize=32)
def public_key_of(private_b64: str) -> str:
    """The URL-safe base64 raw public key of a private key, as the keys document holds it."""
    from cryptography.hazmat.primitives import serialization

    raw = _private_key(private_b64).public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return _b64encode(raw)


def sign_with(private_b64: str, kid: str, ticket_id: str, event_id: str, version: int = 0) -> str:
    """The payload for a ticket, signed with the given key: TKT1 for code version 0, TKT2
    with the version for a re-issued code. ValueError for a bad id, kid or version."""
    if not isinstance(kid, str) or not _KID_RE.fullmatch(kid):
        raise ValueError(f"kid must be 1 to {MAX_KID_LENGTH} of A-Z a-z 0-9 - _, got {kid!r}")
    if not isinstance(ticket_id, str) or not _TICKET_RE.fullmatch(ticket_id):
        raise ValueError(f"not a ticket id: {ticket_id!r}")
    if not isinstance(event_id, str) or not _EVENT_RE.fullmatch(event_id):
        raise ValueError(f"not an event id: {event_id!r}")
    if not isinstance(version, int) or isinstance(version, bool) or not 0 <= version <= MAX_CODE_VERSION:
        raise ValueError(f"code version must be 0 to {MAX_CODE_VERSION}, got {version!r}")
    signature = _b64encode(_private_key(private_b64).sign(_message(kid, ticket_id, event_id, version))).rstrip("=")
    if version == 0:
        return f"{VERSION_TAG}:{kid}:{ticket_id}:{event_id}:{signature}"
    return f"{VERSIONED_TAG}:{kid}:{ticket_id}:{event_id}:{version}:{signature}"


def verify_with(payload: str, keys: dict[str, str]) -> Verified:
    """Check a payload against `keys` (kid -> URL-safe base64 public key).

    Raises BadSignature for any payload that is not exactly one we signed. A key in
    `keys` that is not a valid public key is a configuration bug: ValueError.
    """
    from cryptography.exceptions import InvalidSignature

    if not isinstance(payload, str) or len(payload) > MAX_PAYLOAD_LENGTH or not payload.isascii():
        raise BadSignature("malformed")
    match = _PAYLOAD_RE.fullmatch(payload) or _VERSIONED_RE.fullmatch(payload)
    if match is None:
        raise BadSignature("malformed")
    kid, ticket_id, event_id, version_text, signature_text = match.groups()
    version = int(version_text or 0)
    signature = _b64decode(signature_text)  # the pattern admits only valid base64 characters
    if _b64encode(signature).rstrip("=") != signature_text:
        raise BadSignature("malformed")  # non-canonical spelling of a signature
    public_b64 = keys.get(kid)
    if public_b64 is None:
        raise BadSignature("unknown_key")
    try:
        _public_key(public_b64).verify(signature, _message(kid, ticket_id, event_id, version))
    except InvalidSignature:
        raise BadSignature("bad_signature") from None
    return Verified(ticket_id=ticket_id, event_id=event_id, kid=kid, version=version)


# -- the keys in Secrets Manager --------------------------------------------------------


def check_secret(value: Any) -> tuple[str, dict[str, str]]:
    """(active kid, kid -> private key) of a secret value; ValueError when it is misshapen."""
    if not isinstance(value, dict) or not isinstance(value.get("keys"), dict):
        raise ValueError('the QR signing secret must be JSON {"active": "<kid>", "keys": {"<kid>": "<key>"}}')
    keys = value["keys"]
    for kid, private_b64 in keys.items():
        if not isinstance(kid, str) or not _KID_RE.fullmatch(kid):
            raise ValueError(f"bad kid {kid!r} in the QR signing secret")
        if not isinstance(private_b64, str):
            raise ValueError(f"the key of {kid} must be a string")
        _key_bytes(private_b64, f"the key of {kid}")
    active = value.get("active")
    if active not in keys:
        raise ValueError(f"the active kid {active!r} is not among the keys")
    return active, dict(keys)


def _load(kind: str, name: str, variable: str, check: Callable[[Any], T]) -> T:
    """`check` of the JSON value of a secret or an SSM parameter, read through Powertools
    (cached per container). A missing setting or a misshapen value is a ConfigurationError."""
    from aws_lambda_powertools.utilities.parameters import get_parameter, get_secret
    from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError, TransformParameterError

    if not name:
        raise ConfigurationError(f"{variable} is not set")
    try:
        value = (get_secret if kind == "secret" else get_parameter)(name, transform="json")
    except TransformParameterError as exc:
        raise ConfigurationError(f"{kind} {name} is not JSON") from exc
    except GetParameterError as exc:
        raise DependencyUnavailable("The ticket signing keys could not be read; try again shortly.", retry_after=1) from exc
    try:
        return check(value)
    except ValueError as exc:
        raise ConfigurationError(f"{kind} {name}: {exc}") from None


def _secret() -> tuple[str, dict[str, str]]:
    from ticketing.config import settings

    return _load("secret", settings().qr_signing_secret_name, "QR_SIGNING_SECRET_NAME", check_secret)


def public_document(secret_value: Any) -> dict[str, dict[str, str]]:
    """The published keys document of a secret value: kid -> public key, never a private one."""
    _, keys = check_secret(secret_value)
    return {"keys": {kid: public_key_of(private_b64) for kid, private_b64 in keys.items()}}


def check_public_document(value: Any) -> dict[str, str]:
    """kid -> public key of a published document; ValueError when it is misshapen."""
    if not isinstance(value, dict) or not isinstance(value.get("keys"), dict):
        raise ValueError('the QR public keys must be JSON {"keys": {"<kid>": "<public key>"}}')
    for kid, public_b64 in value["keys"].items():
        if not isinstance(kid, str) or not _KID_RE.fullmatch(kid) or not isinstance(public_b64, str):
            raise ValueError(f"bad entry {kid!r} in the QR public keys")
        _key_bytes(public_b64, f"the public key of {kid}")
    return dict(value["keys"])


def public_keys() -> dict[str, str]:
    """kid -> URL-safe base64 raw public key, every key not yet retired: the scanners'
    document, read from the published parameter (never from the private keys)."""
    from ticketing.config import settings

    return _load("parameter", settings().qr_public_keys_parameter, "QR_PUBLIC_KEYS_PARAMETER", check_public_document)


def sign(ticket_id: str, event_id: str, version: int = 0) -> str:
    """The payload for a ticket (its code `version`), signed with the active key."""
    active, keys = _secret()
    return sign_with(keys[active], active, ticket_id, event_id, version)


def verify(payload: str, keys: dict[str, str] | None = None) -> Verified:
    """verify_with the given public keys, or the published ones."""
    return verify_with(payload, public_keys() if keys is None else keys)


# -- rotation (pure: secret value in, secret value out) ---------------------------------


def new_private_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    raw = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return _b64encode(raw)


def _next_kid(taken: dict[str, str]) -> str:
    from ticketing import clock

    base = "k" + clock.now().strftime("%Y%m%d")
    kid, n = base, 1
    while kid in taken:
        n += 1
        kid = f"{base}-{n}"
    return kid


def rotate(secret_value: dict, new_kid: str | None = None) -> dict:
    """The secret with a fresh key made active; every old key is kept, so old tickets verify.

    The template's placeholder, ``{"active": null, "keys": {}}``, is accepted too: the
    first rotation after the first deploy makes the first key."""
    placeholder = isinstance(secret_value, dict) and secret_value.get("active") is None and secret_value.get("keys") == {}
    keys = {} if placeholder else check_secret(secret_value)[1]
    kid = _next_kid(keys) if new_kid is None else new_kid
    if not _KID_RE.fullmatch(kid):
        raise ValueError(f"kid must be 1 to {MAX_KID_LENGTH} of A-Z a-z 0-9 - _, got {kid!r}")
    if kid in keys:
        raise ValueError(f"kid {kid} already exists")
    return {"active": kid, "keys": {**keys, kid: new_private_key()}}


def retire(secret_value: dict, kid: str) -> dict:
    """The secret without `kid`: tickets it signed stop verifying. The active key can't be retired."""
    active, keys = check_secret(secret_value)
    if kid not in keys:
        raise ValueError(f"no key {kid!r}; keys are {', '.join(sorted(keys))}")
    if kid == active:
        raise ValueError(f"{kid} is the active key: rotate first, then retire it")
    return {"active": active, "keys": {k: v for k, v in keys.items() if k != kid}}


# -- rendering (the only code that loads qrcode and Pillow) -----------------------------


def _qr(payload: str, size: int, box_size: int) -> Any:
    if not isinstance(size, int) or isinstance(size, bool) or not MIN_SIZE <= size <= MAX_SIZE:
        raise ValueError(f"size must be a whole number from {MIN_SIZE} to {MAX_SIZE}, got {size!r}")
    import qrcode
    from qrcode.constants import ERROR_CORRECT_M

    code = qrcode.QRCode(error_correction=ERROR_CORRECT_M, border=QUIET_ZONE, box_size=box_size)
    code.add_data(payload)
    code.make(fit=True)
    return code


def render_png(payload: str, size: int = 200) -> bytes:
    """A size×size PNG of the payload's QR code (black on white, 1 bit a pixel).

    Drawn at one pixel a module, scaled by the largest whole number of pixels a module
    that fits, and centred on a white square of exactly `size` (the rest widens the quiet
    zone): every module the same size. Scaling by a fraction instead (1.9 pixels a module
    at 100 px) left modules of one and two pixels, and about 1 code in 70 did not decode.
    """
    import io

    from PIL import Image
    from qrcode.image.pil import PilImage

    drawn = _qr(payload, size, box_size=1).make_image(image_factory=PilImage).get_image().convert("1")
    scale = size // drawn.width
    if scale < 1:  # more modules than pixels: cannot happen within MIN_SIZE..MAX_SIZE for our payloads
        raise ValueError(f"a {size} px image cannot hold this code ({drawn.width} modules)")
    scaled = drawn.resize((drawn.width * scale, drawn.height * scale), Image.Resampling.NEAREST)
    image = Image.new("1", (size, size), 1)
    offset = (size - scaled.width) // 2
    image.paste(scaled, (offset, offset))
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


def render_svg(payload: str, size: int = 200) -> bytes:
    """An SVG of the payload's QR code, width and height `size` (user units, i.e. pixels).

    One path on a white background; the viewBox counts modules, so it scales crisply.
    """
    import io

    from qrcode.image.svg import SvgPathFillImage

    code = _qr(payload, size, box_size=10)  # qrcode's SVG unit: box_size 10 = 1 unit a module
    image = code.make_image(image_factory=SvgPathFillImage)
    root = image.get_image()
    root.set("width", str(size))
    root.set("height", str(size))
    root.set("shape-rendering", "crispEdges")
    out = io.BytesIO()
    image.save(out)
    return out.getvalue()


# -- command line: python -m ticketing.qr ------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Rotate, retire or publish keys. Prints kids and public keys, never a private key.

    Rotate publishes the new public key before the secret makes it active (so no ticket is
    signed with a key the gates do not know); retire removes the key from the secret before
    unpublishing it; publish rewrites the public document from the secret. boto3 reads the
    usual AWS settings, AWS_ENDPOINT_URL included (the local stack). Read-modify-write:
    don't run two at once against the same secret.
    """
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="python -m ticketing.qr", description="Manage the QR signing keys.")
    commands = parser.add_subparsers(dest="command", required=True)
    rotate_cmd = commands.add_parser("rotate", help="add a fresh key, publish it, make it active; print its kid")
    rotate_cmd.add_argument("--kid", help=f"the new key's id (default k<YYYYMMDD>; at most {MAX_KID_LENGTH} characters)")
    retire_cmd = commands.add_parser("retire", help="remove a key that is not active, then unpublish it; print the active kid")
    retire_cmd.add_argument("--kid", required=True)
    commands.add_parser("publish", help="write the public keys document from the secret (after a restore, say)")
    commands.add_parser("public-keys", help="print the public keys document (JSON)")
    for command in commands.choices.values():
        command.add_argument("--secret-id", required=True, help="the private keys' secret (ticketing/<stage>/qr-signing)")
        command.add_argument("--public-parameter", help="the SSM parameter of the public keys (/ticketing/<stage>/qr-public-keys)")
    args = parser.parse_args(argv)
    if args.command in ("rotate", "retire", "publish") and not args.public_parameter:
        parser.error(f"{args.command} needs --public-parameter")

    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    secrets, ssm = boto3.client("secretsmanager"), boto3.client("ssm")

    def publish(value: dict) -> None:
        ssm.put_parameter(Name=args.public_parameter, Value=json.dumps(public_document(value), sort_keys=True),
                          Type="String", Overwrite=True)

    try:
        current = json.loads(secrets.get_secret_value(SecretId=args.secret_id)["SecretString"])
        if args.command == "public-keys":
            print(json.dumps({"active": check_secret(current)[0], **public_document(current)}, indent=2, sort_keys=True))
            return 0
        if args.command == "publish":
            publish(current)
            print(check_secret(current)[0])
            return 0
        if args.command == "rotate":
            updated = rotate(current, args.kid)
            publish(updated)
            secrets.put_secret_value(SecretId=args.secret_id, SecretString=json.dumps(updated))
        else:
            updated = retire(current, args.kid)
            secrets.put_secret_value(SecretId=args.secret_id, SecretString=json.dumps(updated))
            publish(updated)
    except (ValueError, ClientError, BotoCoreError) as exc:  # json.JSONDecodeError is a ValueError too
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(updated["active"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
