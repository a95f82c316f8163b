"""Wallet passes (issue 19): a ticket in Apple Wallet (a signed `.pkpass`) and Google
Wallet (a "save" link carrying a signed JWT).

The barcode in both is the ticket's signed QR payload, the very code the gate verifies,
so a pass admits exactly while the ticket's code does: a ticket given away since
(`ticketing.transfers`) has a new code and the old pass's barcode is refused at the gate.
Who may fetch a pass: the ticket's holder (or an admin), as for its QR code; another
customer's ticket, or one given away, is 404. A pending or void ticket has no pass (409
`ticket_pending` / `ticket_void`).

**Apple** (`apple_pass`): a zip of `pass.json`, the icons, `manifest.json` (the SHA-1 hex
digest of every other file, as Apple specifies) and `signature`, a detached PKCS #7
(CMS) signature of the manifest made with the pass type certificate and its key, and
carrying Apple's WWDR intermediate certificate (`cryptography`'s PKCS7 builder). The
certificate, its key and the WWDR certificate are a secret (`APPLE_WALLET_SECRET_NAME`)::

    {"pass_type_identifier": "pass.com.example.tickets", "team_identifier": "ABCDE12345",
     "organization_name": "Example Tickets", "certificate_pem": "...", "private_key_pem": "...",
     "wwdr_certificate_pem": "..."}

**Google** (`google_save_url`): `https://pay.google.com/gp/v/save/<JWT>`, the JWT signed
RS256 with the service account's key (`GOOGLE_WALLET_SECRET_NAME`)::

    {"issuer_id": "3388000000012345678", "client_email": "...@....iam.gserviceaccount.com",
     "private_key": "-----BEGIN PRIVATE KEY-----...", "private_key_id": "..."}

carrying the event's ticket class and the ticket's object inline (`typ: savetowallet`), so
nothing is created at Google before the holder saves it. A pass's identity includes the
code version (`<ticket_id>-v<n>`): the new holder's pass is a new one, never the old
holder's pass updated.

The local stack makes a self-signed test certificate (a test "WWDR" CA and a pass
certificate it issued) and a test service account key at start-up (local/stack.py). This
module is imported only by the wallet function: the gate never loads it.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from typing import Any

from ticketing import clock, tickets
from ticketing.auth import Caller
from ticketing.config import settings
from ticketing.errors import ConfigurationError, DependencyUnavailable
from ticketing.table import EventItem, TicketItem

APPLE_CONTENT_TYPE = "application/vnd.apple.pkpass"
GOOGLE_SAVE_URL = "https://pay.google.com/gp/v/save/"
PASS_COLOURS = {"backgroundColor": "rgb(24,24,32)", "foregroundColor": "rgb(255,255,255)", "labelColor": "rgb(190,190,200)"}


@dataclass(frozen=True)
class AppleSigner:
    pass_type_identifier: str
    team_identifier: str
    organization_name: str
    certificate_pem: str
    private_key_pem: str = field(repr=False)
    wwdr_certificate_pem: str = ""


@dataclass(frozen=True)
class GoogleSigner:
    issuer_id: str
    client_email: str
    private_key: str = field(repr=False)
    private_key_id: str = ""


# ------------------------------------------------------------------ secrets
def _secret(name: str, variable: str, what: str) -> dict[str, Any]:
    from aws_lambda_powertools.utilities.parameters import get_secret
    from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError, TransformParameterError

    if not name:
        raise ConfigurationError(f"{variable} is not set")
    try:
        value = get_secret(name, transform="json")
    except TransformParameterError as exc:
        raise ConfigurationError(f"secret {name} is not JSON") from exc
    except GetParameterError as exc:
        raise DependencyUnavailable(f"The {what} keys could not be read; try again shortly.", retry_after=1) from exc
    return value if isinstance(value, dict) else {}


def _unconfigured(what: str) -> DependencyUnavailable:
    return DependencyUnavailable(f"{what} passes are not set up for this service yet.", code="wallet_unavailable")


def apple_signer() -> AppleSigner:
    value = _secret(settings().apple_wallet_secret_name, "APPLE_WALLET_SECRET_NAME", "Apple Wallet")
    names = ("pass_type_identifier", "team_identifier", "organization_name", "certificate_pem", "private_key_pem")
    if not all(isinstance(value.get(name), str) and value[name] for name in names):
        raise _unconfigured("Apple Wallet")  # the template's placeholder, until the certificate is put in
    return AppleSigner(**{name: value[name] for name in names}, wwdr_certificate_pem=str(value.get("wwdr_certificate_pem") or ""))


def google_signer() -> GoogleSigner:
    value = _secret(settings().google_wallet_secret_name, "GOOGLE_WALLET_SECRET_NAME", "Google Wallet")
    names = ("issuer_id", "client_email", "private_key")
    if not all(isinstance(value.get(name), str) and value[name] for name in names):
        raise _unconfigured("Google Wallet")
    return GoogleSigner(**{name: value[name] for name in names}, private_key_id=str(value.get("private_key_id") or ""))


# ------------------------------------------------------------------ tickets
def _passable(ticket_id: str, who: Caller) -> tuple[TicketItem, EventItem | None, str, int]:
    """The ticket (its holder's or an admin's, else 404), its event, its current code and
    the code's version; 409 while pending or once void (`tickets._showable_payload`)."""
    ticket = tickets.get_for(ticket_id, who)
    payload = tickets._showable_payload(ticket)
    try:
        event = EventItem.get(*EventItem.key(ticket.event_id))
    except EventItem.DoesNotExist:
        event = None
    return ticket, event, payload, int(ticket.code_version or 0)


def pass_serial(ticket: TicketItem) -> str:
    return f"{ticket.ticket_id}-v{int(ticket.code_version or 0)}"


# -------------------------------------------------------------------- Apple
def pass_json(ticket: TicketItem, event: EventItem | None, payload: str, signer: AppleSigner) -> dict[str, Any]:
    """The pass's `pass.json` (an event ticket whose QR barcode is the signed payload)."""
    event_name = (event.name if event else None) or ticket.event_name or "Event"
    starts_at = ticket.fixture_starts_at or (event.starts_at if event else None)
    ends_at = ticket.event_ends_at or (event.ends_at if event else None)
    barcode = {"format": "PKBarcodeFormatQR", "message": payload, "messageEncoding": "iso-8859-1", "altText": ticket.serial}
    document: dict[str, Any] = {
        "formatVersion": 1,
        "passTypeIdentifier": signer.pass_type_identifier,
        "teamIdentifier": signer.team_identifier,
        "organizationName": signer.organization_name,
        "serialNumber": pass_serial(ticket),
        "description": f"Ticket for {event_name}",
        **PASS_COLOURS,
        "barcodes": [barcode],
        "barcode": barcode,  # iOS 8 and older read this one
        "eventTicket": {
            "primaryFields": [{"key": "event", "label": "EVENT", "value": event_name}],
            "secondaryFields": [
                {"key": "type", "label": "TICKET", "value": ticket.type_name},
                {"key": "holder", "label": "HOLDER", "value": ticket.holder_name or ""},
            ],
            "auxiliaryFields": [{"key": "serial", "label": "SERIAL", "value": ticket.serial}],
            "backFields": [{"key": "venue", "label": "Venue", "value": (event.venue if event else "") or ""}],
        },
    }
    if starts_at:
        document["relevantDate"] = starts_at
        document["eventTicket"]["auxiliaryFields"].append(
            {"key": "starts", "label": "STARTS", "value": starts_at, "dateStyle": "PKDateStyleMedium", "timeStyle": "PKTimeStyleShort"})
    if ends_at:
        document["expirationDate"] = ends_at
    return document


def _png(size: int, rgb: tuple[int, int, int]) -> bytes:
    """A plain square PNG of one colour (the pass's icon), with the standard library alone."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\x00" + bytes(rgb) * size
    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(row * size, 9)) + chunk(b"IEND", b"")


ICONS = {"icon.png": _png(29, (24, 24, 32)), "icon@2x.png": _png(58, (24, 24, 32)), "icon@3x.png": _png(87, (24, 24, 32))}


def manifest(files: dict[str, bytes]) -> bytes:
    """`manifest.json`: every file's SHA-1 hex digest, as Apple specifies (not our choice)."""
    return json.dumps({name: hashlib.sha1(body).hexdigest() for name, body in sorted(files.items())}, indent=1).encode()  # noqa: S324


def sign_manifest(manifest_bytes: bytes, signer: AppleSigner) -> bytes:
    """A detached PKCS #7 signature (DER) of the manifest by the pass certificate, carrying
    the WWDR intermediate certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.serialization import pkcs7

    try:
        certificate = x509.load_pem_x509_certificate(signer.certificate_pem.encode())
        key = serialization.load_pem_private_key(signer.private_key_pem.encode(), password=None)
        chain = [x509.load_pem_x509_certificate(signer.wwdr_certificate_pem.encode())] if signer.wwdr_certificate_pem else []
    except ValueError:
        raise ConfigurationError("the Apple Wallet secret's certificate or key is not PEM") from None
    builder = pkcs7.PKCS7SignatureBuilder().set_data(manifest_bytes).add_signer(certificate, key, hashes.SHA256())
    for extra in chain:
        builder = builder.add_certificate(extra)
    return builder.sign(serialization.Encoding.DER, [pkcs7.PKCS7Options.DetachedSignature, pkcs7.PKCS7Options.Binary])


def build_pkpass(document: dict[str, Any], signer: AppleSigner) -> bytes:
    """The `.pkpass` zip: pass.json, icons, manifest.json, signature."""
    files = {"pass.json": json.dumps(document, ensure_ascii=False, indent=1).encode("utf-8"), **ICONS}
    listed = manifest(files)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, body in files.items():
            archive.writestr(name, body)
        archive.writestr("manifest.json", listed)
        archive.writestr("signature", sign_manifest(listed, signer))
    return out.getvalue()


def apple_pass(ticket_id: str, who: Caller) -> tuple[bytes, str]:
    """(the `.pkpass` bytes, a file name) for the holder's ticket."""
    ticket, event, payload, _ = _passable(ticket_id, who)
    signer = apple_signer()
    return build_pkpass(pass_json(ticket, event, payload, signer), signer), f"{ticket.serial}.pkpass"


# ------------------------------------------------------------------- Google
def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def sign_jwt(claims: dict[str, Any], signer: GoogleSigner) -> str:
    """An RS256 JWT of `claims` signed with the service account's key (RSASSA-PKCS1-v1_5, SHA-256)."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    try:
        key = serialization.load_pem_private_key(signer.private_key.encode(), password=None)
    except ValueError:
        raise ConfigurationError("the Google Wallet secret's private_key is not a PEM key") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigurationError("the Google Wallet secret's private_key must be an RSA key")
    header = {"alg": "RS256", "typ": "JWT", **({"kid": signer.private_key_id} if signer.private_key_id else {})}
    signing_input = f"{_b64url(json.dumps(header, separators=(',', ':')).encode())}.{_b64url(json.dumps(claims, separators=(',', ':')).encode())}"
    signature = key.sign(signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{_b64url(signature)}"


def _text(value: str) -> dict[str, Any]:
    return {"defaultValue": {"language": "en-US", "value": value}}


def save_claims(ticket: TicketItem, event: EventItem | None, payload: str, signer: GoogleSigner) -> dict[str, Any]:
    """The "save to Google Wallet" JWT's claims: the event's class and the ticket's object, inline."""
    event_name = (event.name if event else None) or ticket.event_name or "Event"
    class_id = f"{signer.issuer_id}.{ticket.event_id}"
    ticket_class: dict[str, Any] = {"id": class_id, "issuerName": event_name, "eventName": _text(event_name), "reviewStatus": "UNDER_REVIEW"}
    if event is not None:
        ticket_class["venue"] = {"name": _text(event.venue or ""), "address": _text(event.venue or "")}
        ticket_class["dateTime"] = {"start": ticket.fixture_starts_at or event.starts_at, "end": ticket.event_ends_at or event.ends_at}
    ticket_object = {
        "id": f"{signer.issuer_id}.{pass_serial(ticket)}",
        "classId": class_id,
        "state": "ACTIVE",
        "ticketHolderName": ticket.holder_name or "",
        "ticketNumber": ticket.serial,
        "ticketType": _text(ticket.type_name),
        "barcode": {"type": "QR_CODE", "value": payload, "alternateText": ticket.serial},
    }
    return {
        "iss": signer.client_email, "aud": "google", "typ": "savetowallet", "iat": int(clock.now().timestamp()),
        "origins": [settings().frontend_url],
        "payload": {"eventTicketClasses": [ticket_class], "eventTicketObjects": [ticket_object]},
    }


def google_save_url(ticket_id: str, who: Caller) -> str:
    ticket, event, payload, _ = _passable(ticket_id, who)
    signer = google_signer()
    return GOOGLE_SAVE_URL + sign_jwt(save_claims(ticket, event, payload, signer), signer)
