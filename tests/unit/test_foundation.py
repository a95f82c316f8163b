"""Pure rules of the common layer: shards, claims, cursors, settings, ids, money."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ticketing import config, ids, money
from ticketing.auth import caller_from_claims, parse_groups
from ticketing.errors import ConfigurationError, Forbidden, InvalidInput
from ticketing.inventory import shard_capacities
from ticketing.pages import ID, STAMP, BadCursor, decode_cursor, decode_key, encode_cursor


@given(
    capacity=st.integers(min_value=1, max_value=1_000_000),
    shard_size=st.integers(min_value=1, max_value=10_000),
    max_shards=st.integers(min_value=1, max_value=100),
)
def test_shards_add_up_to_capacity_exactly_and_are_balanced(capacity, shard_size, max_shards):
    parts = shard_capacities(capacity, shard_size, max_shards)
    assert sum(parts) == capacity
    assert 1 <= len(parts) <= max_shards
    assert max(parts) - min(parts) <= 1
    assert min(parts) >= 1


def test_shard_count_follows_the_shard_size():
    assert shard_capacities(10, 50, 16) == [10]
    assert len(shard_capacities(500, 50, 16)) == 10
    assert len(shard_capacities(100_000, 50, 16)) == 16
    with pytest.raises(ValueError):
        shard_capacities(0, 50, 16)


@pytest.mark.parametrize(
    ("raw", "groups"),
    [
        ("[admin scanner]", {"admin", "scanner"}),
        ("[admin]", {"admin"}),
        ("[]", set()),
        ("", set()),
        (None, set()),
        (["scanner"], {"scanner"}),
        ("admin,scanner", {"admin", "scanner"}),
    ],
)
def test_groups_are_read_in_api_gateways_flattened_form(raw, groups):
    assert parse_groups(raw) == groups


def test_caller_roles():
    admin = caller_from_claims({"sub": "a", "cognito:groups": "[admin scanner]", "email": "a@x.org"})
    assert admin.is_admin and admin.email == "a@x.org"
    admin.require("admin")
    customer = caller_from_claims({"sub": "c"})
    with pytest.raises(Forbidden):
        customer.require("admin", "scanner")
    assert caller_from_claims({}) is None and caller_from_claims(None) is None


@given(st.dictionaries(st.text(min_size=1, max_size=10), st.dictionaries(st.just("S"), st.text(max_size=20)), min_size=1, max_size=4))
def test_cursors_round_trip(key):
    assert decode_cursor(encode_cursor(key)) == key


DEEP = base64.urlsafe_b64encode(b"[" * 1_400).decode()
EVENTS_KEY = {"PK": "EVENT#" + ID, "SK": "META", "GSI1PK": "EVENTS", "GSI1SK": STAMP + "#" + ID}


@pytest.mark.parametrize("bad", ["%%%", "bm90IGpzb24", "WzFd", DEEP, "_w"])  # not base64, not JSON, a list, nesting, not UTF-8
def test_forged_cursors_are_bad_requests(bad):
    with pytest.raises(BadCursor) as caught:
        decode_cursor(bad)
    assert caught.value.fields == {"field": "cursor", "code": "bad_cursor"}


def test_a_key_cursor_must_be_this_listings_key():
    good = {"PK": {"S": "EVENT#ev_1"}, "SK": {"S": "META"}, "GSI1PK": {"S": "EVENTS"}, "GSI1SK": {"S": "2031-01-01T00:00:00Z#ev_1"}}
    assert decode_key(encode_cursor(good), EVENTS_KEY) == good
    foreign = [
        {**good, "GSI1PK": {"S": "CUSTOMER#someone"}},  # another listing's partition
        {**good, "PK": {"S": "ORDER#o_1"}},
        {**good, "PK": {"S": "EVENT#" + "e" * 3_000}},  # a key DynamoDB would refuse
        {**good, "SK": {"N": "1"}},
        {**good, "extra": {"S": "x"}},
        {k: v for k, v in good.items() if k != "SK"},
        {**good, "GSI1SK": "2031#ev_1"},
    ]
    for key in foreign:
        with pytest.raises(BadCursor):
            decode_key(encode_cursor(key), EVENTS_KEY)


def test_settings_fail_loudly_at_cold_start():
    with pytest.raises(ConfigurationError, match="TABLE_NAME"):
        config.load({})
    with pytest.raises(ConfigurationError, match="MAX_BODY_BYTES"):
        config.load({"TABLE_NAME": "t", "MAX_BODY_BYTES": "lots"})
    with pytest.raises(ConfigurationError, match="between"):
        config.load({"TABLE_NAME": "t", "INVENTORY_MAX_SHARDS": "0"})
    loaded = config.load({"TABLE_NAME": "t", "FRONTEND_URL": "https://shop.example/"})
    assert loaded.frontend_url == "https://shop.example" and loaded.max_body_bytes == 65536


def test_ids_are_prefixed_url_safe_and_unique():
    made = {ids.new_id("ev") for _ in range(2000)}
    assert len(made) == 2000
    assert all(i.startswith("ev_") and len(i) == 23 and i[3:].isalnum() and i[3:].islower() for i in made)


def test_currencies():
    assert money.normalise_currency(" USD ") == "usd"
    with pytest.raises(ValueError):
        money.normalise_currency("ABC")


def test_stripe_keys_never_show_secrets_in_repr():
    from ticketing.secrets import StripeKeys

    keys = StripeKeys(secret_key="sk_test_SECRET", webhook_secret="whsec_SECRET")
    assert "SECRET" not in repr(keys)


def test_refund_reasons_by_role():
    from ticketing.refunds import check_reason

    customer, admin = caller_from_claims({"sub": "c"}), caller_from_claims({"sub": "a", "cognito:groups": "[admin]"})
    check_reason("requested_by_customer", customer)
    for reason in ("duplicate", "fraudulent", "other"):
        check_reason(reason, admin)
        with pytest.raises(Forbidden) as caught:
            check_reason(reason, customer)
        assert caught.value.fields["code"] == "reason_for_organisers"
    for who in (customer, admin):
        with pytest.raises(Forbidden) as caught:
            check_reason("event_canceled", who)
        assert caught.value.fields["code"] == "reason_event_canceled"
    check_reason("event_canceled", admin, by_cancellation=True)
