"""Ticket QR codes: the signed payload, key rotation, rendering that scanners can decode."""

from __future__ import annotations

import io
import json
import os
import string
import subprocess
import sys
import xml.etree.ElementTree as ET
from datetime import datetime, timezone

import boto3
import pytest
from hypothesis import given, settings as hsettings
from hypothesis import strategies as st

from tests.conftest import ROOT
from tests.shop import decode_qr
from ticketing import clock, config, qr
from ticketing.errors import ConfigurationError

SECRET = "ticketing/test/qr-signing"
PUBLIC = "/ticketing/test/qr-public-keys"
ALLOWED = set(string.ascii_letters + string.digits + "-_.:~")  # URL-safe, unencoded in ?code=
B32 = "0123456789abcdefghjkmnpqrstvwxyz"
TICKET = "tk_m81yryynw8s0yewh4x84"
EVENT = "ev_m81yryynw8s0yewh4x84"
KEY_A = qr.new_private_key()
KEYS_A = {"kA": qr.public_key_of(KEY_A)}
TYPICAL_LENGTH = 149  # with a 9-character kid such as k20261122


def _id(prefix: str) -> st.SearchStrategy[str]:
    return st.text(alphabet=B32, min_size=20, max_size=20).map(lambda tail: f"{prefix}_{tail}")


def _reason(payload, keys=KEYS_A) -> str:
    """The reason verify_with gives; any exception but BadSignature fails the test."""
    with pytest.raises(qr.BadSignature) as info:
        qr.verify_with(payload, keys)
    return info.value.reason


@pytest.fixture
def qr_secret(aws, monkeypatch):
    """A QR signing secret in moto with one key, kid k20261122, and the setting naming it."""
    from aws_lambda_powertools.utilities import parameters

    clock.freeze(datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc))
    value = qr.rotate({"active": "k0", "keys": {"k0": qr.new_private_key()}})
    value = qr.retire(value, "k0")
    assert value["active"] == "k20261122"
    boto3.client("secretsmanager").create_secret(Name=SECRET, SecretString=json.dumps(value))
    _publish(value)
    monkeypatch.setenv("QR_SIGNING_SECRET_NAME", SECRET)
    monkeypatch.setenv("QR_PUBLIC_KEYS_PARAMETER", PUBLIC)
    config.settings.cache_clear()
    parameters.clear_caches()
    yield value
    config.settings.cache_clear()
    parameters.clear_caches()
    clock.freeze(None)


def _stored() -> dict:
    return json.loads(boto3.client("secretsmanager").get_secret_value(SecretId=SECRET)["SecretString"])


def _store(value: dict) -> None:
    """The secret, and its public keys published, as the CLI leaves them."""
    boto3.client("secretsmanager").put_secret_value(SecretId=SECRET, SecretString=json.dumps(value))
    _publish(value)


def _publish(value: dict) -> None:
    from aws_lambda_powertools.utilities import parameters

    boto3.client("ssm").put_parameter(Name=PUBLIC, Value=json.dumps(qr.public_document(value)), Type="String", Overwrite=True)
    parameters.clear_caches()


def _published() -> dict:
    return json.loads(boto3.client("ssm").get_parameter(Name=PUBLIC)["Parameter"]["Value"])


# -- payload -----------------------------------------------------------------------------


@given(ticket_id=_id("tk"), event_id=_id("ev"), kid=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,11}", fullmatch=True))
@hsettings(max_examples=200)
def test_pure_round_trip_uses_only_url_safe_characters_and_stays_short(ticket_id, event_id, kid):
    payload = qr.sign_with(KEY_A, kid, ticket_id, event_id)
    assert set(payload) <= ALLOWED
    assert len(payload) == TYPICAL_LENGTH - 9 + len(kid) <= qr.MAX_V1_LENGTH == 152  # a version-8 QR code at M
    assert qr.verify_with(payload, {kid: KEYS_A["kA"]}) == qr.Verified(ticket_id, event_id, kid)


def test_payload_format_is_documented_shape():
    payload = qr.sign_with(KEY_A, "k20261122", TICKET, EVENT)
    tag, kid, ticket_id, event_id, signature = payload.split(":")
    assert (tag, kid, ticket_id, event_id) == ("TKT1", "k20261122", TICKET, EVENT)
    assert len(signature) == 86 and len(payload) == TYPICAL_LENGTH


def test_sign_refuses_ids_and_kids_that_would_break_the_format():
    for bad in ("tk_short", "ev_m81yryynw8s0yewh4x84", "tk_M81YRYYNW8S0YEWH4X84", "tk_m81yryynw8s0yewh4x8:", ""):
        with pytest.raises(ValueError):
            qr.sign_with(KEY_A, "kA", bad, EVENT)
    for bad in ("", "k:1", "-k", "k" * 13, "ké"):
        with pytest.raises(ValueError):
            qr.sign_with(KEY_A, bad, TICKET, EVENT)


def test_round_trip_through_secrets_manager(qr_secret):
    payload = qr.sign(TICKET, EVENT)
    assert payload.startswith("TKT1:k20261122:")
    assert qr.verify(payload) == qr.Verified(TICKET, EVENT, "k20261122")
    keys = qr.public_keys()
    assert keys == {"k20261122": qr.public_key_of(qr_secret["keys"]["k20261122"])}
    assert qr.verify(payload, keys).ticket_id == TICKET
    assert qr_secret["keys"]["k20261122"] not in json.dumps(keys)


def test_verifying_reads_only_the_published_public_keys_never_the_secret(qr_secret):
    payload = qr.sign(TICKET, EVENT)
    boto3.client("secretsmanager").delete_secret(SecretId=SECRET, ForceDeleteWithoutRecovery=True)
    assert qr.verify(payload).ticket_id == TICKET  # the gate has no access to the private keys
    assert "k20261122" in qr.public_keys()


@pytest.mark.parametrize(
    "document",
    [{}, {"keys": []}, {"keys": {"bad:kid": "AAAA"}}, {"keys": {"k1": "not base64!"}}, {"keys": {"k1": 5}}],
)
def test_a_misshapen_public_document_is_a_configuration_error(qr_secret, document):
    from aws_lambda_powertools.utilities import parameters

    boto3.client("ssm").put_parameter(Name=PUBLIC, Value=json.dumps(document), Type="String", Overwrite=True)
    parameters.clear_caches()
    with pytest.raises(ConfigurationError, match=PUBLIC):
        qr.public_keys()


def test_altering_any_single_character_fails():
    payload = qr.sign_with(KEY_A, "kA", TICKET, EVENT)
    substitutes = sorted(ALLOWED)
    reasons = set()
    for position, original in enumerate(payload):
        for char in substitutes:
            if char == original:
                continue
            altered = payload[:position] + char + payload[position + 1:]
            reasons.add(_reason(altered))
    assert reasons == {"malformed", "unknown_key", "bad_signature"}


def test_a_non_canonical_signature_spelling_is_refused():
    # The last of 86 base64 characters carries 2 signature bits and 4 padding bits;
    # flipping a padding bit must not give a second valid spelling of the same signature.
    payload = qr.sign_with(KEY_A, "kA", TICKET, EVENT)
    alphabet = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"
    last = alphabet.index(payload[-1])
    twin = payload[:-1] + alphabet[last ^ 0b0001]
    assert _reason(twin) == "malformed"


def test_unknown_key_and_spliced_signatures_fail():
    payload = qr.sign_with(KEY_A, "kA", TICKET, EVENT)
    assert _reason(payload, {"kB": KEYS_A["kA"]}) == "unknown_key"
    assert _reason(payload, {}) == "unknown_key"
    other_key = qr.new_private_key()
    assert _reason(qr.sign_with(other_key, "kA", TICKET, EVENT)) == "bad_signature"
    # Another ticket's signature on this ticket's fields; the same key under another kid.
    other = qr.sign_with(KEY_A, "kA", "tk_0000000000000000000a", EVENT)
    assert _reason(payload.rsplit(":", 1)[0] + ":" + other.rsplit(":", 1)[1]) == "bad_signature"
    relabelled = payload.replace(":kA:", ":kB:")
    assert _reason(relabelled, {"kA": KEYS_A["kA"], "kB": KEYS_A["kA"]}) == "bad_signature"


@pytest.mark.parametrize(
    "garbage",
    [
        "", "TKT1", "TKT1:kA", "TKT1::::", "hello world", None, b"TKT1:kA", 42,
        "TKT2" + qr.sign_with(KEY_A, "kA", TICKET, EVENT)[4:],
        "tkt1" + qr.sign_with(KEY_A, "kA", TICKET, EVENT)[4:],
        qr.sign_with(KEY_A, "kA", TICKET, EVENT) + ":extra",
        qr.sign_with(KEY_A, "kA", TICKET, EVENT) + "\n",
        " " + qr.sign_with(KEY_A, "kA", TICKET, EVENT),
        qr.sign_with(KEY_A, "kA", TICKET, EVENT)[:-1],
        qr.sign_with(KEY_A, "kA", TICKET, EVENT) + "A",
        qr.sign_with(KEY_A, "kA", TICKET, EVENT)[:-1] + "é",
        qr.sign_with(KEY_A, "kA", TICKET, EVENT)[:-1] + "=",
        qr.sign_with(KEY_A, "kA", TICKET, EVENT).replace(TICKET, "tk_m81yryynw8s0yewh4x8４"),
        "TKT1:kA:" + EVENT + ":" + TICKET + ":" + "A" * 86,
    ],
    ids=lambda value: repr(value)[:40],
)
def test_garbage_is_malformed(garbage):
    assert _reason(garbage) == "malformed"


def test_huge_input_is_malformed_at_once():
    assert _reason("TKT1:" + "x" * 10_000_000) == "malformed"


@given(st.text(max_size=300))
def test_arbitrary_text_only_ever_raises_bad_signature(text):
    with pytest.raises(qr.BadSignature):
        qr.verify_with(text, KEYS_A)


# -- rotation ----------------------------------------------------------------------------


def test_rotation_keeps_old_tickets_valid_until_their_key_is_retired(qr_secret):
    old = qr.sign(TICKET, EVENT)
    clock.freeze(datetime(2027, 1, 5, tzinfo=timezone.utc))
    rotated = qr.rotate(_stored())
    assert rotated["active"] == "k20270105"
    assert set(rotated["keys"]) == {"k20261122", "k20270105"}
    assert rotated["keys"]["k20261122"] == qr_secret["keys"]["k20261122"]
    _store(rotated)

    new = qr.sign(TICKET, EVENT)
    assert new.split(":")[1] == "k20270105"
    assert qr.verify(old).kid == "k20261122"
    assert qr.verify(new).kid == "k20270105"

    with pytest.raises(ValueError, match="active"):
        qr.retire(rotated, "k20270105")
    _store(qr.retire(rotated, "k20261122"))
    with pytest.raises(qr.BadSignature) as info:
        qr.verify(old)
    assert info.value.reason == "unknown_key"
    assert qr.verify(new).kid == "k20270105"


def test_rotate_and_retire_are_pure_and_check_their_input():
    clock.freeze(datetime(2026, 11, 22, tzinfo=timezone.utc))
    try:
        start = {"active": "k20261122", "keys": {"k20261122": KEY_A}}
        snapshot = json.dumps(start)
        second = qr.rotate(start)
        assert second["active"] == "k20261122-2"  # same day: the kid stays unique
        assert qr.rotate(second)["active"] == "k20261122-3"
        assert qr.rotate(start, "k2")["active"] == "k2"
        assert json.dumps(start) == snapshot
        for bad_kid in ("k20261122", "has:colon", "x" * 13):
            with pytest.raises(ValueError):
                qr.rotate(start, bad_kid)
        with pytest.raises(ValueError, match="no key"):
            qr.retire(second, "nope")
        for broken in ({}, {"active": "a", "keys": {}}, {"active": "a", "keys": {"a": "not base64!"}},
                       {"active": "a", "keys": {"a": "AAAA"}}, {"active": "b", "keys": {"a": KEY_A}}, []):
            with pytest.raises(ValueError):
                qr.rotate(broken)
    finally:
        clock.freeze(None)


def test_a_misshapen_secret_is_a_configuration_error(qr_secret):
    boto3.client("secretsmanager").put_secret_value(SecretId=SECRET, SecretString=json.dumps({"active": "k1", "keys": {}}))
    with pytest.raises(ConfigurationError):
        qr.sign(TICKET, EVENT)


def test_cli_rotates_retires_and_never_prints_a_private_key(qr_secret, capsys):
    original_private = qr_secret["keys"]["k20261122"]
    clock.freeze(datetime(2027, 1, 5, tzinfo=timezone.utc))
    both = ["--secret-id", SECRET, "--public-parameter", PUBLIC]

    assert qr.main(["rotate", *both]) == 0
    out, err = capsys.readouterr()
    assert out == "k20270105\n"
    stored = _stored()
    assert stored["active"] == "k20270105" and stored["keys"]["k20261122"] == original_private
    assert _published() == qr.public_document(stored)  # the new key can be verified as soon as it signs
    assert original_private not in json.dumps(_published())

    assert qr.main(["public-keys", "--secret-id", SECRET]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["keys"] == {kid: qr.public_key_of(key) for kid, key in stored["keys"].items()}

    assert qr.main(["retire", *both, "--kid", "k20270105"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and "active" in err

    assert qr.main(["retire", *both, "--kid", "k20261122"]) == 0
    out, err = capsys.readouterr()
    assert out == "k20270105\n"
    assert set(_stored()["keys"]) == {"k20270105"}
    assert set(_published()["keys"]) == {"k20270105"}

    boto3.client("ssm").put_parameter(Name=PUBLIC, Value='{"keys": {}}', Type="String", Overwrite=True)
    assert qr.main(["publish", *both]) == 0  # rewrites the document from the secret
    assert capsys.readouterr().out == "k20270105\n"
    assert _published() == qr.public_document(_stored())

    with pytest.raises(SystemExit):
        qr.main(["rotate", "--secret-id", SECRET])  # the public keys would be left behind
    capsys.readouterr()

    assert qr.main(["rotate", *both, "--kid", "manual1"]) == 0
    out, err = capsys.readouterr()
    for private in list(stored["keys"].values()) + list(_stored()["keys"].values()):
        assert private not in out + err
        assert private.rstrip("=") not in out + err


def test_cli_reports_a_missing_secret_without_a_traceback(aws, capsys):
    assert qr.main(["rotate", "--secret-id", "ticketing/test/no-such-secret", "--public-parameter", PUBLIC]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("error:")


def test_the_setting_names_the_secret():
    assert config.load({"TABLE_NAME": "t"}).qr_signing_secret_name == ""
    assert config.load({"TABLE_NAME": "t", "QR_SIGNING_SECRET_NAME": SECRET}).qr_signing_secret_name == SECRET


# -- rendering ---------------------------------------------------------------------------


def test_every_code_decodes_at_the_smallest_size():
    """Signatures differ per key and ticket, and so do the codes: 150 of them at MIN_SIZE
    (fractional scaling failed about 1 in 70 here)."""
    for _ in range(150):
        payload = qr.sign_with(qr.new_private_key(), "k20261122", TICKET, EVENT)
        assert decode_qr(qr.render_png(payload, qr.MIN_SIZE)) == payload


@pytest.mark.parametrize("size", [qr.MIN_SIZE, 200, 333, qr.MAX_SIZE])
def test_png_is_exactly_the_size_asked_and_decodes_to_the_payload(size):
    from PIL import Image

    payload = qr.sign_with(KEY_A, "k20261122", TICKET, EVENT)
    png = qr.render_png(payload, size)
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG"
    assert image.size == (size, size)
    assert decode_qr(png) == payload


def test_svg_has_the_size_asked():
    payload = qr.sign_with(KEY_A, "k20261122", TICKET, EVENT)
    root = ET.fromstring(qr.render_svg(payload, 200))
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert (root.get("width"), root.get("height")) == ("200", "200")
    assert root.get("viewBox") == "0 0 57 57"  # 49 modules (version 8) + 2 × 4 quiet zone
    assert root.find("{http://www.w3.org/2000/svg}path") is not None
    assert ET.fromstring(qr.render_svg(payload, 1024)).get("width") == "1024"


@pytest.mark.parametrize("size", [0, -1, qr.MIN_SIZE - 1, qr.MAX_SIZE + 1, 10**9, 200.0, "200", True])
def test_sizes_out_of_range_are_refused(size):
    with pytest.raises(ValueError):
        qr.render_png("TKT1:x", size)
    with pytest.raises(ValueError):
        qr.render_svg("TKT1:x", size)


def test_verifying_loads_neither_pillow_nor_qrcode():
    payload = qr.sign_with(KEY_A, "kA", TICKET, EVENT)
    script = f"""
import sys
sys.path[:0] = [{str(ROOT / 'layers/common/python')!r}]
import ticketing.qr as q
assert q.verify_with({payload!r}, {KEYS_A!r}).ticket_id == {TICKET!r}
try:
    q.verify_with("garbage", {KEYS_A!r})
except q.BadSignature:
    pass
loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('PIL', 'qrcode', 'boto3', 'aws_lambda_powertools'))
assert not loaded, loaded
"""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
