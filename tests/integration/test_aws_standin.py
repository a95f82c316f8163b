"""The AWS stand-in: DynamoDB writes serialized (so concurrency tests test our code, not
moto), each caller's calls recorded as the IAM authorizations AWS would check, and what
moto lets through but AWS refuses (oversized keys on reads, an unknown configuration set)
refused."""

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


def test_a_transaction_conflict_is_injected_with_cancellation_reasons_as_dynamodb_gives_them(dynamodb):
    import requests
    from botocore.exceptions import ClientError
    from pynamodb.exceptions import TransactWriteError

    base = dynamodb.meta.endpoint_url
    dynamodb.create_table(
        TableName="conflicts", BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "PK", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "PK", "KeyType": "HASH"}],
    )
    items = [{"Put": {"TableName": "conflicts", "Item": {"PK": {"S": key}}}} for key in ("ORDER#1", "TICKET#2", "TICKET#3")]
    requests.post(f"{base}/_local/faults", json={"service": "dynamodb", "operation": "TransactWriteItems",
                                                 "code": "TransactionConflict", "item": "TICKET#3", "count": 1}, timeout=5)
    dynamodb.put_item(TableName="conflicts", Item={"PK": {"S": "TICKET#3"}})  # another operation: untouched
    with pytest.raises(ClientError) as caught:
        dynamodb.transact_write_items(TransactItems=items)
    response = caught.value.response
    assert response["Error"]["Code"] == "TransactionCanceledException"
    assert [r["Code"] for r in response["CancellationReasons"]] == ["None", "None", "TransactionConflict"]
    assert "Item" not in dynamodb.get_item(TableName="conflicts", Key={"PK": {"S": "ORDER#1"}})  # nothing written
    dynamodb.transact_write_items(TransactItems=items)  # the count is used up

    # Targeted at an item the transaction does not hold: no fault.
    requests.post(f"{base}/_local/faults", json={"service": "dynamodb", "operation": "TransactWriteItems",
                                                 "code": "TransactionConflict", "item": "TICKET#9", "count": 1}, timeout=5)
    dynamodb.transact_write_items(TransactItems=[{"Put": {"TableName": "conflicts", "Item": {"PK": {"S": "ORDER#5"}}}}])
    requests.delete(f"{base}/_local/faults", timeout=5)

    # The lifecycle's helpers read them as PynamoDB and botocore hand them over.
    from ticketing.lifecycle.writes import condition_failed, is_conflict

    wrapped = TransactWriteError("Failed to write transaction items", caught.value)
    assert is_conflict(caught.value) and is_conflict(wrapped)
    assert not condition_failed(caught.value) and not condition_failed(wrapped)


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


# ------------------------------------------------------- what each caller needed
@pytest.fixture(scope="module")
def standin():
    port = free_port()
    server = serve("127.0.0.1", port)
    yield f"http://127.0.0.1:{port}"
    server.stop()


def _client(url: str, service: str, key: str = "testing"):
    return boto3.client(service, endpoint_url=url, region_name="us-east-1", aws_access_key_id=key,
                        aws_secret_access_key="testing", config=Config(retries={"total_max_attempts": 1, "mode": "standard"}))


def _needed(url: str, key: str) -> set[tuple[str, str]]:
    import requests

    calls = requests.get(f"{url}/_local/calls", timeout=10).json()["calls"]
    return {(c["action"], c["resource"]) for c in calls if c["access_key"] == key}


def _table(url: str, name: str) -> str:
    _client(url, "dynamodb").create_table(
        TableName=name, BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"} for n in ("PK", "SK", "G")],
        KeySchema=[{"AttributeName": "PK", "KeyType": "HASH"}, {"AttributeName": "SK", "KeyType": "RANGE"}],
        GlobalSecondaryIndexes=[{"IndexName": "GSI1", "KeySchema": [{"AttributeName": "G", "KeyType": "HASH"}],
                                 "Projection": {"ProjectionType": "ALL"}}],
    )
    return f"arn:aws:dynamodb:us-east-1:123456789012:table/{name}"


def test_calls_are_recorded_as_the_iam_authorizations_aws_checks(standin):
    arn, key = _table(standin, "iam"), "AKLOCALProbe"
    ddb = _client(standin, "dynamodb", key)
    item = lambda pk: {"PK": {"S": pk}, "SK": {"S": "x"}}  # noqa: E731
    ddb.put_item(TableName="iam", Item=item("a"))
    ddb.put_item(TableName="iam", Item=item("d"))
    ddb.transact_write_items(TransactItems=[
        {"Put": {"TableName": "iam", "Item": item("b")}},
        {"Update": {"TableName": "iam", "Key": item("a"), "UpdateExpression": "SET n = :n", "ExpressionAttributeValues": {":n": {"N": "1"}}}},
        {"ConditionCheck": {"TableName": "iam", "Key": item("d"), "ConditionExpression": "attribute_exists(PK)"}},
        {"Delete": {"TableName": "iam", "Key": item("c")}},
    ])
    ddb.query(TableName="iam", IndexName="GSI1", KeyConditionExpression="G = :g", ExpressionAttributeValues={":g": {"S": "g"}})
    ddb.batch_get_item(RequestItems={"iam": {"Keys": [item("a")]}})
    s3 = _client(standin, "s3", key)
    _client(standin, "s3").create_bucket(Bucket="iam-bucket")
    with pytest.raises(s3.exceptions.ClientError):
        s3.head_object(Bucket="iam-bucket", Key="qr/missing.png")  # a 404 needs s3:ListBucket too
    assert _needed(standin, key) == {
        ("dynamodb:PutItem", arn), ("dynamodb:UpdateItem", arn), ("dynamodb:ConditionCheckItem", arn),
        ("dynamodb:DeleteItem", arn), ("dynamodb:Query", f"{arn}/index/GSI1"), ("dynamodb:BatchGetItem", arn),
        ("s3:GetObject", "arn:aws:s3:::iam-bucket/qr/missing.png"), ("s3:ListBucket", "arn:aws:s3:::iam-bucket"),
    }
    assert not any(action == "dynamodb:TransactWriteItems" for action, _ in _needed(standin, key))  # no IAM action


def test_ses_sends_need_the_identity_and_the_configuration_set_which_must_exist(standin):
    _client(standin, "ses").verify_email_identity(EmailAddress="from@iam.test")
    _client(standin, "sesv2").create_configuration_set(ConfigurationSetName="known")
    ses, key = _client(standin, "sesv2", "AKLOCALMailer"), "AKLOCALMailer"
    raw = b"From: from@iam.test\r\nTo: to@iam.test\r\nSubject: hi\r\n\r\nhello\r\n"
    request = {"FromEmailAddress": "from@iam.test", "Destination": {"ToAddresses": ["to@iam.test"]}, "Content": {"Raw": {"Data": raw}}}
    ses.send_email(**request, ConfigurationSetName="known")
    assert _needed(standin, key) == {
        ("ses:SendEmail", "arn:aws:ses:us-east-1:123456789012:identity/from@iam.test"),
        ("ses:SendEmail", "arn:aws:ses:us-east-1:123456789012:configuration-set/known"),
    }
    with pytest.raises(ses.exceptions.NotFoundException):
        ses.send_email(**request, ConfigurationSetName="nowhere")  # SES refuses it; moto alone would not


@pytest.mark.parametrize(
    ("key", "refused"),
    [({"PK": "p" * 2048, "SK": "s"}, False), ({"PK": "p" * 2049, "SK": "s"}, True),
     ({"PK": "p", "SK": "s" * 1024}, False), ({"PK": "p", "SK": "s" * 1025}, True), ({"PK": "é" * 1025, "SK": "s"}, True)],
)
def test_oversized_keys_are_refused_on_reads_as_dynamodb_does(standin, key, refused):
    ddb = _client(standin, "dynamodb")
    if "iam-keys" not in ddb.list_tables()["TableNames"]:
        _table(standin, "iam-keys")
    reads = [
        lambda: ddb.get_item(TableName="iam-keys", Key={k: {"S": v} for k, v in key.items()}),
        lambda: ddb.query(TableName="iam-keys", KeyConditionExpression="PK = :p AND SK = :s",
                          ExpressionAttributeValues={":p": {"S": key["PK"]}, ":s": {"S": key["SK"]}}),
        lambda: ddb.batch_get_item(RequestItems={"iam-keys": {"Keys": [{k: {"S": v} for k, v in key.items()}]}}),
    ]
    for read in reads:
        if refused:
            with pytest.raises(ddb.exceptions.ClientError, match="ValidationException"):
                read()
        else:
            read()
