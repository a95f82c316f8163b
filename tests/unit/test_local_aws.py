"""The AWS stand-in's shortcut through moto's response serializer (`local.aws.attribute_values_as_they_are`)
answers exactly what moto's own serializer answers, byte for byte once parsed, for every kind of attribute value."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws
from moto.core import serialize

from local.aws import attribute_values_as_they_are

KEY = {"pk": {"S": "ORDER#1"}, "sk": {"S": "META"}}
ITEM = {
    **KEY,
    "text": {"S": "héllo"}, "empty": {"S": ""}, "cents": {"N": "1500"}, "ratio": {"N": "-0.25"},
    "blob": {"B": b"\x00\xffqr"}, "names": {"SS": ["a", "b"]}, "numbers": {"NS": ["1", "2.5"]}, "blobs": {"BS": [b"x", b"\x01"]},
    "paid": {"BOOL": True}, "refunded": {"BOOL": False}, "nothing": {"NULL": True},
    "lines": {"L": [{"M": {"qty": {"N": "2"}, "type": {"S": "GA"}, "tags": {"L": []}}}, {"NULL": True}, {"B": b"\x02"}]},
    "nested": {"M": {"deep": {"M": {"deeper": {"L": [{"SS": ["z"]}, {"BOOL": False}]}}}, "empty": {"M": {}}}},
}


def responses() -> list[dict]:
    """The raw JSON bodies moto answers to each read and write that returns items."""
    bodies: list[dict] = []
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(
            TableName="t", BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"}],
        )
        client.meta.events.register("after-call.dynamodb", lambda http_response, **_: bodies.append(json.loads(http_response.content)))
        client.put_item(TableName="t", Item=ITEM)
        client.put_item(TableName="t", Item=ITEM, ReturnValues="ALL_OLD")
        client.get_item(TableName="t", Key=KEY, ConsistentRead=True, ReturnConsumedCapacity="TOTAL")
        client.get_item(TableName="t", Key=KEY, ProjectionExpression="lines[0].qty, nested.deep, #b", ExpressionAttributeNames={"#b": "blob"})
        client.query(TableName="t", KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "ORDER#1"}}, Limit=1)
        client.scan(TableName="t")
        client.update_item(TableName="t", Key=KEY, UpdateExpression="SET cents = cents + :one", ExpressionAttributeValues={":one": {"N": "1"}},
                           ReturnValues="ALL_NEW")
        client.batch_get_item(RequestItems={"t": {"Keys": [KEY]}})
        client.transact_get_items(TransactItems=[{"Get": {"TableName": "t", "Key": KEY}}])
        with pytest.raises(client.exceptions.ConditionalCheckFailedException):
            client.put_item(TableName="t", Item=ITEM, ConditionExpression="attribute_not_exists(pk)", ReturnValuesOnConditionCheckFailure="ALL_OLD")
        with pytest.raises(client.exceptions.TransactionCanceledException):
            client.transact_write_items(TransactItems=[{"Put": {"TableName": "t", "Item": ITEM, "ConditionExpression": "attribute_not_exists(pk)",
                                                                "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}}])
        client.delete_item(TableName="t", Key=KEY, ReturnValues="ALL_OLD")
    return bodies


def test_the_shortcut_answers_what_motos_serializer_answers(monkeypatch):
    dynamodb = serialize.SERVICE_SPECIFIC_SERIALIZERS.get("dynamodb", {})
    monkeypatch.setitem(serialize.SERVICE_SPECIFIC_SERIALIZERS, "dynamodb", {k: v for k, v in dynamodb.items() if k != "json"})
    assert serialize.get_serializer_class("dynamodb", "json") is serialize.JSONSerializer
    theirs = responses()
    attribute_values_as_they_are()
    assert serialize.get_serializer_class("dynamodb", "json") is not serialize.JSONSerializer  # the shortcut is what answers next
    ours = responses()
    assert len(ours) == len(theirs) == 12
    assert ours == theirs
    assert theirs[2]["Item"]["blob"] == {"B": "AP9xcg=="}  # binary goes out as base64


def test_the_stand_ins_dispatcher_finds_a_hosts_backend_once_and_runs_moto_out_of_debug_mode(monkeypatch):
    """moto lists and stats its own package directory to find a request's backend; the stand-in
    does that once per Host header, not on every request, and turns moto's Flask debug mode off
    (together with the method lists made once, a quarter of its CPU a request: bench/bench_standin.py)."""
    from moto import backends

    from local.aws import _dispatcher

    listed: list[int] = []
    original = backends.list_of_moto_modules
    monkeypatch.setattr(backends, "list_of_moto_modules", lambda: listed.append(1) or original())
    dispatcher = _dispatcher()
    environ = {
        "REQUEST_METHOD": "POST", "PATH_INFO": "/", "HTTP_HOST": "127.0.0.1:5000", "CONTENT_TYPE": "application/x-amz-json-1.0",
        "HTTP_X_AMZ_TARGET": "DynamoDB_20120810.GetItem",
        "HTTP_AUTHORIZATION": "AWS4-HMAC-SHA256 Credential=AKLOCAL/20261203/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0",
    }
    apps = {id(dispatcher.get_application(dict(environ))) for _ in range(20)}
    assert len(apps) == 1
    assert len(listed) <= 2  # the request's own host (none), then the one its signature names
    assert dispatcher.get_application(dict(environ)).debug is False
