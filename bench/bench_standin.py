"""The AWS stand-in (`python -m local.aws`, moto in server mode): its CPU and the client's wait
per DynamoDB request, a conditional update and a consistent read at a time. Every test
through the local stack waits on this one process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from bench.common import table

ROOT = Path(__file__).resolve().parent.parent
REQUESTS = 2000  # of each kind


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run() -> str:
    import boto3

    from local.ports import free_port, wait_http

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "local.aws", "--host", "127.0.0.1", "--port", str(port)], cwd=ROOT,
                              env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_http(f"{url}/moto-api/data.json", 60), "the AWS stand-in did not start"
        ddb = boto3.client("dynamodb", endpoint_url=url, region_name="us-east-1", aws_access_key_id="bench", aws_secret_access_key="bench")
        ddb.create_table(TableName="bench", BillingMode="PAY_PER_REQUEST", KeySchema=[{"AttributeName": "PK", "KeyType": "HASH"}],
                         AttributeDefinitions=[{"AttributeName": "PK", "AttributeType": "S"}])
        for i in range(200):
            ddb.put_item(TableName="bench", Item={"PK": {"S": f"k{i}"}, "n": {"N": "0"}})
        cpu, started = _cpu_seconds(server.pid), time.monotonic()
        for i in range(REQUESTS):
            key = {"PK": {"S": f"k{i % 200}"}}
            ddb.update_item(TableName="bench", Key=key, UpdateExpression="SET n = n + :one", ConditionExpression="n >= :zero",
                            ExpressionAttributeValues={":one": {"N": "1"}, ":zero": {"N": "0"}})
            ddb.get_item(TableName="bench", Key=key, ConsistentRead=True)
        per = 1000 / (2 * REQUESTS)
        cpu_ms, wall_ms = (_cpu_seconds(server.pid) - cpu) * per, (time.monotonic() - started) * per
    finally:
        server.kill()
        server.wait()
    return table([("stand-in CPU per request", f"{cpu_ms:.2f} ms"), ("client's wait per request", f"{wall_ms:.2f} ms")],
                 f"AWS stand-in ({2 * REQUESTS} DynamoDB requests, one at a time)")


if __name__ == "__main__":
    print(run())
