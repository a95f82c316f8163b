"""Wallet passes (issue 19): a .pkpass whose manifest and detached PKCS #7 signature verify
against the (test) certificate, a Google Wallet JWT that verifies with the (test) key, the
barcode being the ticket's signed code, and who may have which pass."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import shutil
import subprocess
import zipfile

import boto3
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7

from local.stack import new_wallet_secrets
from tests.conftest import load_function
from tests.unit.conftest import ADMIN, Invoker
from tests.unit.test_races import _customer, _hold, _paid, _ticket, shop  # noqa: F401 - the fixture
from ticketing import config, wallet
from ticketing.auth import Caller

APPLE_SECRET, GOOGLE_SECRET = "ticketing/test/apple-wallet", "ticketing/test/google-wallet"


@pytest.fixture(scope="module")
def secrets():
    return new_wallet_secrets()


@pytest.fixture
def passes(shop, secrets, monkeypatch):
    apple, google = secrets
    client = boto3.client("secretsmanager")
    client.create_secret(Name=APPLE_SECRET, SecretString=json.dumps(apple))
    client.create_secret(Name=GOOGLE_SECRET, SecretString=json.dumps(google))
    monkeypatch.setenv("APPLE_WALLET_SECRET_NAME", APPLE_SECRET)
    monkeypatch.setenv("GOOGLE_WALLET_SECRET_NAME", GOOGLE_SECRET)
    config.settings.cache_clear()
    from aws_lambda_powertools.utilities import parameters

    parameters.clear_caches()
    yield {**shop, "wallet": Invoker(load_function("wallet"))}
    config.settings.cache_clear()


def _claims(who: Caller) -> dict:
    return {"sub": who.sub, "email": who.email, "name": who.name, "email_verified": "true"}


def _unzip(body: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _openssl_verifies(signature: bytes, content: bytes, ca_pem: str, tmp_path) -> bool:
    (tmp_path / "signature").write_bytes(signature)
    (tmp_path / "content").write_bytes(content)
    (tmp_path / "ca.pem").write_text(ca_pem)
    done = subprocess.run(
        ["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", str(tmp_path / "signature"),
         "-content", str(tmp_path / "content"), "-CAfile", str(tmp_path / "ca.pem"), "-purpose", "any", "-out", "/dev/null"],
        capture_output=True, timeout=30,
    )
    return done.returncode == 0


def _check_pkpass(body: bytes, apple: dict, payload: str, tmp_path) -> dict:
    files = _unzip(body)
    assert {"pass.json", "manifest.json", "signature", "icon.png", "icon@2x.png"} <= set(files)
    listed = json.loads(files["manifest.json"])
    assert set(listed) == set(files) - {"manifest.json", "signature"}
    for name, digest in listed.items():
        assert hashlib.sha1(files[name]).hexdigest() == digest, name  # noqa: S324 - Apple's manifest is SHA-1
    # the signature is detached, made by the pass certificate, and carries the WWDR certificate
    carried = pkcs7.load_der_pkcs7_certificates(files["signature"])
    subjects = {c.subject for c in carried}
    assert x509.load_pem_x509_certificate(apple["certificate_pem"].encode()).subject in subjects
    assert x509.load_pem_x509_certificate(apple["wwdr_certificate_pem"].encode()).subject in subjects
    assert _openssl_verifies(files["signature"], files["manifest.json"], apple["wwdr_certificate_pem"], tmp_path)
    assert not _openssl_verifies(files["signature"], files["manifest.json"].replace(b"0", b"1", 1), apple["wwdr_certificate_pem"], tmp_path)
    document = json.loads(files["pass.json"])
    assert document["barcodes"][0]["message"] == payload and document["barcodes"][0]["format"] == "PKBarcodeFormatQR"
    assert document["passTypeIdentifier"] == apple["pass_type_identifier"] and document["teamIdentifier"] == apple["team_identifier"]
    return document


pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl verifies the PKCS #7 signature independently")


def test_the_holders_pkpass_verifies_against_the_test_certificate_and_carries_the_ticket_code(passes, secrets, tmp_path):
    apple, _ = secrets
    buyer, order = _paid(passes)
    ticket_id = order["tickets"][0]["id"]
    status, body, headers = passes["wallet"]("GET", f"/api/tickets/{ticket_id}/wallet/apple/", claims=_claims(buyer))
    assert status == 200, body
    assert headers["Content-Type"] == wallet.APPLE_CONTENT_TYPE
    raw = base64.b64decode(body)  # Powertools hands API Gateway bytes as base64 (isBase64Encoded)
    document = _check_pkpass(raw, apple, _ticket(ticket_id).qr_payload, tmp_path)
    assert document["serialNumber"] == f"{ticket_id}-v0"
    assert document["eventTicket"]["primaryFields"][0]["value"] == "Race Night"


def test_the_google_save_link_is_a_jwt_that_verifies_with_the_test_key(passes, secrets):
    _, google = secrets
    buyer, order = _paid(passes)
    ticket_id = order["tickets"][0]["id"]
    status, answer, _ = passes["wallet"]("GET", f"/api/tickets/{ticket_id}/wallet/google/", claims=_claims(buyer))
    assert status == 200, answer
    assert answer["save_url"].startswith(wallet.GOOGLE_SAVE_URL)
    token = answer["save_url"][len(wallet.GOOGLE_SAVE_URL):]
    public = serialization.load_pem_private_key(google["private_key"].encode(), password=None).public_key()
    claims = jwt.decode(token, public, algorithms=["RS256"], audience="google")
    assert claims["iss"] == google["client_email"] and claims["typ"] == "savetowallet"
    assert jwt.get_unverified_header(token)["kid"] == google["private_key_id"]
    (ticket_object,) = claims["payload"]["eventTicketObjects"]
    assert ticket_object["barcode"] == {"type": "QR_CODE", "value": _ticket(ticket_id).qr_payload, "alternateText": order["tickets"][0]["serial"]}
    assert ticket_object["id"] == f"{google['issuer_id']}.{ticket_id}-v0"
    assert ticket_object["classId"] == claims["payload"]["eventTicketClasses"][0]["id"]
    other = serialization.load_pem_private_key(new_wallet_secrets()[1]["private_key"].encode(), password=None).public_key()
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, other, algorithms=["RS256"], audience="google")


def test_a_transferred_ticket_has_no_pass_for_its_old_holder_and_a_new_one_for_the_new(passes, secrets, tmp_path):
    from ticketing import transfers

    apple, google = secrets
    assert passes["catalogue"]("PATCH", f"/api/events/{passes['event']['id']}/", {"transfers": {"enabled": True}}, claims=ADMIN)[0] == 200
    buyer, order = _paid(passes)
    ticket_id = order["tickets"][0]["id"]
    friend = Caller(sub="friend-wallet", email="friend-wallet@example.com", name="F", email_verified=True)
    transfers.transfer(ticket_id, transfers.TransferIn(to_email=friend.email, to_name="F"), buyer)
    for kind in ("apple", "google"):
        status, answer, _ = passes["wallet"]("GET", f"/api/tickets/{ticket_id}/wallet/{kind}/", claims=_claims(buyer))
        assert status == 404, (kind, answer)
    status, body, _ = passes["wallet"]("GET", f"/api/tickets/{ticket_id}/wallet/apple/", claims=_claims(friend))
    assert status == 200
    document = _check_pkpass(base64.b64decode(body), apple, _ticket(ticket_id).qr_payload, tmp_path)
    assert document["serialNumber"] == f"{ticket_id}-v1" and document["barcodes"][0]["message"].startswith("TKT2:")


def test_pending_void_and_other_customers_tickets_have_no_pass(passes):
    from ticketing import refunds

    buyer, order = _paid(passes)
    ticket_id = order["tickets"][0]["id"]
    stranger = _customer()
    assert passes["wallet"]("GET", f"/api/tickets/{ticket_id}/wallet/apple/", claims=_claims(stranger))[0] == 404
    assert passes["wallet"]("GET", "/api/tickets/tk_nosuchticket000000000/wallet/google/", claims=_claims(stranger))[0] == 404
    refunds.refund(order["order_id"], refunds.RefundIn(ticket_ids=[ticket_id]), Caller(sub="admin-1", groups=frozenset({"admin"})))
    for kind in ("apple", "google"):
        status, answer, _ = passes["wallet"]("GET", f"/api/tickets/{ticket_id}/wallet/{kind}/", claims=_claims(buyer))
        assert (status, answer["code"]) == (409, "ticket_void"), answer
    holder = _customer()
    pending = _hold(passes, holder)["tickets"][0]["id"]
    status, answer, _ = passes["wallet"]("GET", f"/api/tickets/{pending}/wallet/apple/", claims=_claims(holder))
    assert (status, answer["code"]) == (409, "ticket_pending"), answer


def test_the_templates_placeholder_secret_is_503_not_a_500(passes):
    boto3.client("secretsmanager").put_secret_value(SecretId=APPLE_SECRET, SecretString="{}")
    from aws_lambda_powertools.utilities import parameters

    parameters.clear_caches()
    buyer, order = _paid(passes)
    status, answer, _ = passes["wallet"]("GET", f"/api/tickets/{order['tickets'][0]['id']}/wallet/apple/", claims=_claims(buyer))
    assert (status, answer["code"]) == (503, "wallet_unavailable"), answer


def test_the_gate_never_loads_the_wallet_or_transfer_code():
    import os
    import sys

    from tests.conftest import ROOT

    probe = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('app', {str(ROOT / 'functions/verify/app.py')!r})\n"
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
        "print(sorted(m for m in sys.modules if m in ('ticketing.wallet', 'ticketing.transfers', 'ticketing.mail')\n"
        "             or m.startswith(('cryptography.x509', 'cryptography.hazmat.primitives.serialization.pkcs7'))))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "layers/common/python"), "TABLE_NAME": "t", "QR_PUBLIC_KEYS_PARAMETER": "p",
           "POWERTOOLS_METRICS_NAMESPACE": "Ticketing"}
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd=ROOT / "functions/verify")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
