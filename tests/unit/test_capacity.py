"""The capacity model and its call recorder (counts, not timings): DynamoDB's unit rules
on known items, and the scripted on-sale scaled to 5,000 checkouts and 1,000 scans a second
keeping every partition key under DynamoDB's per-partition limits."""

from __future__ import annotations

import boto3
import pytest

from bench import capacity
from bench.recorder import PARTITION_RCU, PARTITION_WCU, Recorder, item_size, recording
from tests.unit.conftest import TEMPLATE

TABLE = "ticketing-test"

# Its module fixture (the scripted on-sale, about 20 s) runs once: every test of the module on one worker.
pytestmark = pytest.mark.xdist_group("capacity")


def _item(pk: str, size: int, **extra) -> dict:
    item = {"PK": {"S": pk}, "SK": {"S": "META"}, **extra}
    item["pad"] = {"S": "x" * (size - item_size(item) - len("pad"))}
    assert item_size(item) == size
    return item


def test_units_follow_dynamodbs_rules(aws):
    ddb = boto3.client("dynamodb")
    with recording() as rec:
        with rec.phase("put"):
            ddb.put_item(TableName=TABLE, Item=_item("A", 1500, GSI1PK={"S": "G#1"}, GSI1SK={"S": "s"}))
        with rec.phase("move"):  # the index key changes: a delete under the old key, a put under the new
            ddb.update_item(TableName=TABLE, Key={"PK": {"S": "A"}, "SK": {"S": "META"}},
                            UpdateExpression="SET GSI1PK = :g", ExpressionAttributeValues={":g": {"S": "G#2"}})
        with rec.phase("refused"):  # a failed conditional write still costs its units
            with pytest.raises(ddb.exceptions.ConditionalCheckFailedException):
                ddb.put_item(TableName=TABLE, Item=_item("A", 100), ConditionExpression="attribute_not_exists(PK)")
        with rec.phase("transaction"):
            ddb.transact_write_items(TransactItems=[{"Put": {"TableName": TABLE, "Item": _item("B", 900)}}])
        with rec.phase("reads"):
            ddb.get_item(TableName=TABLE, Key={"PK": {"S": "A"}, "SK": {"S": "META"}})
            ddb.get_item(TableName=TABLE, Key={"PK": {"S": "A"}, "SK": {"S": "META"}}, ConsistentRead=True)
            ddb.query(TableName=TABLE, IndexName="GSI1", KeyConditionExpression="GSI1PK = :g",
                      ExpressionAttributeValues={":g": {"S": "G#2"}})

    def units(phase):
        return {key: (used.wcu, used.rcu) for key, used in rec.units(phase).items()}

    assert units("put") == {(TABLE, "A"): (2, 0), (f"{TABLE}/GSI1", "G#1"): (2, 0)}
    assert units("move") == {(TABLE, "A"): (2, 0), (f"{TABLE}/GSI1", "G#1"): (2, 0), (f"{TABLE}/GSI1", "G#2"): (2, 0)}
    assert units("refused") == {(TABLE, "A"): (2, 0)}
    assert units("transaction") == {(TABLE, "B"): (2, 0)}
    assert units("reads") == {(TABLE, "A"): (0, 1.5), (f"{TABLE}/GSI1", "G#2"): (0, 0.5)}
    assert rec.calls("reads") == {"dynamodb.GetItem": 2, "dynamodb.Query": 1}


def test_a_recorder_counting_calls_only_reads_no_item_images(aws):
    ddb = boto3.client("dynamodb")
    with recording(Recorder(units=False)) as rec:
        ddb.put_item(TableName=TABLE, Item=_item("C", 200))
    assert rec.calls() == {"dynamodb.PutItem": 1} and rec.accesses == []


def test_the_template_spreads_what_the_model_found_hot():
    indexes = {index["IndexName"] for index in TEMPLATE.table_definition()["GlobalSecondaryIndexes"]}
    assert indexes == {"GSI1", "GSI2", "GSI3"}
    assert all("WarmThroughput" in index for index in TEMPLATE.resources["Table"]["Properties"]["GlobalSecondaryIndexes"])
    assert "WarmThroughput" in TEMPLATE.resources["Table"]["Properties"]


@pytest.fixture(scope="module")
def model():
    return capacity.run_model(checkouts=12, over_budget=120, lapses=6, scans=20)


def test_the_on_sale_keeps_every_key_under_the_partition_limits(model):
    assert model.admitted_per_second == 25  # Stripe's PaymentIntent rate, from template.yaml's defaults
    on_sale = model.load(model.on_sale(capacity.CHECKOUTS_PER_SECOND, model.admitted_per_second))
    doors = model.load(model.doors_open(capacity.SCANS_PER_SECOND))
    for load in (on_sale, doors):
        wcu, rcu = capacity.worst(load)
        assert wcu < PARTITION_WCU and rcu < PARTITION_RCU, capacity.report(model)
        assert capacity.table_total(load) < capacity.TABLE_WCU_QUOTA
    # The keys that used to be one partition are spread now.
    keys = {key for phase in model.phases.values() for (_, key) in phase.units}
    assert not {"STRIPE_EVENTS", "idempotency#", "idempotency#unit"} & keys
    assert not [key for key in keys if key.startswith("SCANS#") and key.count("#") < 3]


def test_with_stripe_admitting_1000_a_second_every_key_stays_within_half_the_limits(model):
    """What the keys of orders, holds and indexes carry if Stripe raises its limit. The sample
    is too small for its busiest key (a few orders over 32 GSI3 partitions), so each family of
    keys is averaged (`capacity.averaged`), and each average must leave room for a partition
    twice as busy: at 1,000 a second a partition's count a second varies by a few tenths."""
    on_sale = model.load(model.on_sale(capacity.CHECKOUTS_PER_SECOND, capacity.STRESS_ADMITTED))
    at_scale = capacity.averaged(model, on_sale, capacity.STRESS_ADMITTED)
    over = {name: (round(used.wcu), round(used.rcu)) for name, used in at_scale.items()
            if used.wcu > PARTITION_WCU / 2 or used.rcu > PARTITION_RCU / 2}
    assert not over, over
    families = {family.split("#", 1)[0] + ("#<k>" if family.endswith("#<k>") else "") for _, family in at_scale}
    # the hottest families the full model finds are there, each averaged over its partitions
    assert {"INV#<k>", "RATE#<k>", "HOLDS#<k>", "EVENT#<k>", "STRIPE_EVENTS#<k>"} <= families, families
    assert model.inventory_shards == 16
    gsi3 = {family: used.wcu for (target, family), used in at_scale.items() if target.endswith("/GSI3")}
    assert len(gsi3) == 2 and all(wcu > 0 for wcu in gsi3.values()), gsi3  # orders' and tickets' partitions


def test_over_budget_checkouts_hold_nothing_and_call_no_stripe(model):
    refused = model.phases["checkout_over_budget"]
    assert model.statuses[503] >= refused.requests
    writes = {name for name in refused.calls if name in ("dynamodb.TransactWriteItems", "dynamodb.UpdateItem")}
    assert not writes, refused.calls  # no hold, no counter spent: the refusal only read the budget
    # every PaymentIntent created belongs to a checkout answered 201, but for the fault
    # phases' (Stripe answering 429: asked, refused, answered 503)
    in_faults = sum(round(f["stripe"].get("payment_intents.create", 0) * capacity.FAULT_REQUESTS) for f in model.faults.values())
    assert model.stripe_requests["payment_intents.create"] - in_faults == model.statuses[201]
