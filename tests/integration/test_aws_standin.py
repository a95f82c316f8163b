"""The AWS stand-in serializes DynamoDB writes, so concurrency tests test our code, not moto."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import boto3
import pytest
from botocore.config import Config

from local.aws import serve
from local.ports import free_port


@pytest.fixture(scope="module")
def dynamodb():
    port = free_port()
    server = serve("127.0.0.1", port)
    client = boto3.client(
        "dynamodb", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
        aws_access_key_id="testing", aws_secret_access_key="testing",
        config=Config(max_pool_connections=50, retries={"total_max_attempts": 1, "mode": "standard"}),
    )
    yield client
    server.stop()


def test_concurrent_conditional_decrements_never_oversell(dynamodb):
    dynamodb.create_table(
        TableName="race", BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "PK", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "PK", "KeyType": "HASH"}],
    )
    dynamodb.put_item(TableName="race", Item={"PK": {"S": "seat"}, "remaining": {"N": "50"}})

    def take(_: int) -> bool:
        try:
            dynamodb.update_item(
                TableName="race", Key={"PK": {"S": "seat"}},
                UpdateExpression="SET remaining = remaining - :one",
                ConditionExpression="remaining >= :one",
                ExpressionAttributeValues={":one": {"N": "1"}},
            )
            return True
        except dynamodb.exceptions.ConditionalCheckFailedException:
            return False

    with ThreadPoolExecutor(max_workers=24) as pool:
        results = list(pool.map(take, range(120)))
    item = dynamodb.get_item(TableName="race", Key={"PK": {"S": "seat"}}, ConsistentRead=True)["Item"]
    assert sum(results) == 50
    assert item["remaining"]["N"] == "0"


def test_port_in_use_gets_one_clear_line(tmp_path):
    import socket
    import subprocess
    import sys

    from tests.conftest import ROOT

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "local.aws", "--port", str(port)], cwd=ROOT, capture_output=True, text=True, timeout=60,
        )
    assert result.returncode == 2
    assert f"port {port} on 127.0.0.1 is already in use (set AWS_PORT" in result.stderr
    assert "Traceback" not in result.stderr


def test_injected_faults_fail_matching_requests_then_clear(dynamodb):
    import requests
    from botocore.exceptions import ClientError

    base = dynamodb.meta.endpoint_url
    dynamodb.create_table(
        TableName="faulty", BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "PK", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "PK", "KeyType": "HASH"}],
    )
    requests.post(f"{base}/_local/faults", json={"service": "dynamodb", "operation": "PutItem", "status": 400,
                                                 "code": "ProvisionedThroughputExceededException", "count": 2}, timeout=5)
    for _ in range(2):
        with pytest.raises(ClientError) as caught:
            dynamodb.put_item(TableName="faulty", Item={"PK": {"S": "a"}})
        assert caught.value.response["Error"]["Code"] == "ProvisionedThroughputExceededException"
    dynamodb.get_item(TableName="faulty", Key={"PK": {"S": "a"}})  # other operations are untouched
    dynamodb.put_item(TableName="faulty", Item={"PK": {"S": "a"}})  # the count is used up
    requests.post(f"{base}/_local/faults", json={"service": "dynamodb", "status": 500, "code": "InternalServerError", "count": -1}, timeout=5)
    with pytest.raises(ClientError):
        dynamodb.get_item(TableName="faulty", Key={"PK": {"S": "a"}})
    assert requests.delete(f"{base}/_local/faults", timeout=5).json() == {"faults": []}
    assert "Item" in dynamodb.get_item(TableName="faulty", Key={"PK": {"S": "a"}})


def test_a_cancelled_transaction_changes_nothing(dynamodb):
    """The stand-in backs up only the items a transaction names (moto copies whole tables):
    a transaction cancelled by its last condition leaves its earlier writes undone."""
    dynamodb.create_table(
        TableName="tx", BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "PK", "AttributeType": "S"}, {"AttributeName": "SK", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "PK", "KeyType": "HASH"}, {"AttributeName": "SK", "KeyType": "RANGE"}],
    )
    for n in range(3):
        dynamodb.put_item(TableName="tx", Item={"PK": {"S": "seat"}, "SK": {"S": f"{n}"}, "left": {"N": "5"}})

    def transaction(left_needed: int) -> None:
        dynamodb.transact_write_items(TransactItems=[
            {"Put": {"TableName": "tx", "Item": {"PK": {"S": "order"}, "SK": {"S": "new"}}}},
            {"Update": {"TableName": "tx", "Key": {"PK": {"S": "seat"}, "SK": {"S": "0"}},
                        "UpdateExpression": "SET #l = #l - :one", "ExpressionAttributeNames": {"#l": "left"},
                        "ExpressionAttributeValues": {":one": {"N": "1"}}}},
            {"Delete": {"TableName": "tx", "Key": {"PK": {"S": "seat"}, "SK": {"S": "1"}}}},
            {"ConditionCheck": {"TableName": "tx", "Key": {"PK": {"S": "seat"}, "SK": {"S": "2"}},
                                "ConditionExpression": "#l >= :n", "ExpressionAttributeNames": {"#l": "left"},
                                "ExpressionAttributeValues": {":n": {"N": str(left_needed)}}}},
        ])

    def everything():
        return sorted((i["SK"]["S"], i.get("left", {}).get("N")) for i in dynamodb.scan(TableName="tx", ConsistentRead=True)["Items"])

    before = everything()
    with pytest.raises(dynamodb.exceptions.TransactionCanceledException):
        transaction(left_needed=6)
    assert everything() == before
    transaction(left_needed=5)
    assert everything() == [("0", "4"), ("2", "5"), ("new", None)]
