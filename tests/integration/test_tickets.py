"""QR key rotation with the command line the README gives (`python -m ticketing.qr rotate`)
against the local stack's secret and parameter: old tickets still decode and verify.
Listings, QR images and who may see them are tested in process:
tests/unit/test_tickets_api.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest
import requests

from local import stack as stack_module
from tests.conftest import ROOT
from tests.shop import decode_qr, ticket_holder
from ticketing import qr


@pytest.fixture
def customer(api, stack):
    """A customer with a paid order of 2 GA tickets and, newer, a pending order of 1 VIP (tests/shop.py)."""
    return ticket_holder(api, stack)


@pytest.fixture
def qr_keys_put_back(stack):
    """A rotation changes the stack's QR signing secret for every test after it: put it back."""
    secrets, ssm = stack.client("secretsmanager"), stack.client("ssm")
    saved = secrets.get_secret_value(SecretId=stack_module.QR_SECRET)["SecretString"]
    published = ssm.get_parameter(Name=stack_module.QR_PUBLIC_KEYS)["Parameter"]["Value"]
    yield
    secrets.put_secret_value(SecretId=stack_module.QR_SECRET, SecretString=saved)
    # and the public keys it published, which test_stack compares with the secret
    ssm.put_parameter(Name=stack_module.QR_PUBLIC_KEYS, Value=published, Type="String", Overwrite=True)


def test_after_a_key_rotation_old_tickets_still_decode_and_verify(api, stack, customer, qr_keys_put_back):
    ticket_id = customer["paid"]["tickets"][1]["id"]
    before = api.get(f"/api/tickets/{ticket_id}/qr/data/", token=customer["token"]).json()
    env = {**os.environ, **stack.aws_env(), "PYTHONPATH": str(ROOT / "layers/common/python")}

    def cli(*args):
        done = subprocess.run([sys.executable, "-m", "ticketing.qr", *args, "--secret-id", stack_module.QR_SECRET,
                               "--public-parameter", stack_module.QR_PUBLIC_KEYS],
                              capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    kid = f"rot{uuid.uuid4().hex[:8]}"
    assert cli("rotate", "--kid", kid).strip() == kid
    keys = json.loads(cli("public-keys"))
    assert keys["active"] == kid and before["qr_payload"].split(":")[1] in keys["keys"]
    published = json.loads(stack.client("ssm").get_parameter(Name=stack_module.QR_PUBLIC_KEYS)["Parameter"]["Value"])
    assert published == {"keys": keys["keys"]}  # where the gate reads them

    after = api.get(f"/api/tickets/{ticket_id}/qr/data/", token=customer["token"]).json()
    assert after["qr_payload"] == before["qr_payload"]
    png = requests.get(after["qr_png_url"], timeout=10).content
    verified = qr.verify_with(decode_qr(png), keys["keys"])
    assert (verified.ticket_id, verified.event_id) == (ticket_id, customer["event_id"])
