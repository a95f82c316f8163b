"""Cold start per function: its handler imported in a fresh interpreter that holds only
that function's dependencies (its requirements.txt, the layer, and the boto3 the Lambda
runtime provides), then invoked once; reported against a bare `import boto3` plus
`boto3.client("dynamodb")`, with each function's deployment size.

The first run installs each function's requirements into .bench/cold/<function> (pip,
from PyPI); later runs reuse them.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import statistics
import subprocess
import sys
from pathlib import Path

from bench.common import ROOT, table

CACHE = ROOT / ".bench" / "cold"
RUNTIME_BOTO3 = "boto3==1.44.5"  # what the python3.12 Lambda runtime provides, roughly
REPEAT = 9

# A request each HTTP function answers without any AWS call (so the figure is the
# function's own start-up: imports, settings, route table, the first validation).
FIRST_REQUEST = {
    "CatalogueFunction": ("POST", "/api/events/", {"name": 1}, "[admin]"),
    "CheckoutFunction": ("POST", "/api/tickets/stripe/checkout/", {"items": "x"}, "[]"),
    "WebhookFunction": ("POST", "/api/tickets/webhook/", None, None),
    "RefundFunction": ("POST", "/api/orders/or_x/refund/", {"amount_cents": -1}, "[]"),
    "TicketsFunction": ("GET", "/api/tickets/tk_x/qr/image/", None, "[]", {"size": "huge"}),
    "VerifyFunction": ("GET", "/api/tickets/verify/", None, "[scanner]", {"code": "x", "event_id": "e" * 65}),
    "OrganiserFunction": ("GET", "/api/events/ev_x/stats/", None, "[]"),
}


def _install(target: Path, requirements: list[str]) -> None:
    digest = hashlib.sha256("\n".join(requirements).encode()).hexdigest()[:16]
    marker = target / f".installed-{digest}"
    if marker.exists():
        return
    subprocess.run(["rm", "-rf", str(target)], check=True)
    target.mkdir(parents=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--target", str(target), *requirements],
        check=True, stderr=subprocess.DEVNULL,
    )
    marker.touch()


def _requirements(path: Path) -> list[str]:
    lines = [line.split("#")[0].strip() for line in path.read_text().splitlines()]
    return [line for line in lines if line]


def _size_mb(*paths: Path) -> float:
    total = 0
    for path in paths:
        for file in path.rglob("*"):
            if file.is_file() and "__pycache__" not in file.parts and ".installed-" not in file.name:
                total += file.stat().st_size
    return total / 1e6


def _event(spec: tuple) -> dict:
    method, path, body, groups, *query = spec
    event = {
        "version": "2.0", "routeKey": f"{method} {path}", "rawPath": path, "rawQueryString": "",
        "headers": {"content-type": "application/json"},
        "requestContext": {"http": {"method": method, "path": path}, "requestId": "cold", "routeKey": f"{method} {path}", "stage": "$default"},
        "isBase64Encoded": False,
    }
    if query:
        event["queryStringParameters"] = query[0]
        event["rawQueryString"] = "&".join(f"{k}={v}" for k, v in query[0].items())
    if body is not None:
        event["body"] = json.dumps(body)
    if groups is not None:
        event["requestContext"]["authorizer"] = {"jwt": {"claims": {"sub": "cold", "cognito:groups": groups}}}
    return event


def _cpu_ms(code: str, path: list[Path], env: dict[str, str]) -> float:
    """CPU time (user + system, ms) of one `python -S -c code` with only `path` importable:
    steadier than wall time on a shared machine."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(
        [sys.executable, "-S", "-c", code], capture_output=True, text=True,
        env={**env, "PYTHONPATH": os.pathsep.join(map(str, path))},
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode:
        raise RuntimeError(f"cold start failed for {path[0]}:\n{done.stderr[-3000:]}")
    return (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000


def _medians(runs: dict[str, tuple[str, list[Path]]], env: dict[str, str]) -> dict[str, float]:
    """Each run's median over REPEAT rounds, the runs interleaved in every round so that a
    noisy neighbour slows them all alike rather than whichever ran at the time."""
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(REPEAT):
        for name, (code, path) in runs.items():
            samples[name].append(_cpu_ms(code, path, env))
    return {name: statistics.median(values) for name, values in samples.items()}


def run() -> str:
    from local.template import load_template

    template = load_template(ROOT / "template.yaml")
    runtime = CACHE / "_runtime"
    _install(runtime, [RUNTIME_BOTO3])
    layer = ROOT / "layers/common/python"
    env = {
        "PATH": os.environ.get("PATH", ""), "TABLE_NAME": "cold", "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y", "POWERTOOLS_METRICS_DISABLED": "true",
        "POWERTOOLS_LOG_LEVEL": "ERROR", "POWERTOOLS_SERVICE_NAME": "ticketing", "STRIPE_SECRET_NAME": "cold",
        "QR_BUCKET": "cold", "QR_SIGNING_SECRET_NAME": "cold", "SENDER_EMAIL": "cold@example.com",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",  # nothing listens: a stray AWS call would fail loudly
    }
    runs = {"empty": ("pass", [runtime]), "boto3": ("import boto3; boto3.client('dynamodb')", [runtime])}
    described = {}
    for logical_id, function in sorted(template.functions.items()):
        code_dir = Path(function.code_uri)
        target = CACHE / logical_id
        _install(target, _requirements(code_dir / "requirements.txt"))
        spec = FIRST_REQUEST.get(logical_id)
        code = f"import {function.module} as m"
        if spec:
            code += (
                "\nimport json\nclass Context:\n    function_name = 'cold'\n    memory_limit_in_mb = 512\n"
                "    invoked_function_arn = 'arn:aws:lambda:us-east-1:123456789012:function:cold'\n    aws_request_id = 'cold'\n"
                "from botocore.client import BaseClient\n"
                "def stray(self, operation, params):\n    raise SystemExit(f'the first request called AWS: {operation}')\n"
                "BaseClient._make_api_call = stray\n"
                f"m.{function.function}(json.loads({json.dumps(json.dumps(_event(spec)))}), Context())"
            )
        runs[logical_id] = (code, [code_dir, layer, target, runtime])
        what = "import + first request" if spec else "import"
        described[logical_id] = (f"{logical_id} ({_size_mb(code_dir, layer, target):.0f} MB deployed)", what)
    medians = _medians(runs, env)
    empty = medians["empty"]
    baseline = medians["boto3"] - empty
    rows = [("bare import boto3 + DynamoDB client", f"{baseline:.0f} ms (1.00x)")]
    for logical_id, (label, what) in described.items():
        elapsed = medians[logical_id] - empty
        rows.append((label, f"{elapsed:.0f} ms {what} ({elapsed / baseline:.2f}x)"))
    return table(rows, "Cold start (CPU time of a fresh interpreter with only the function's own dependencies)")
