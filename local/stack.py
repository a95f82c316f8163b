"""The local stack: real servers on loopback, started and provisioned by this module.

    python -m local.stack            (what `make dev` runs; Ctrl-C stops everything)

Starts, each in its own process group:
  - the AWS stand-in (moto server: DynamoDB, S3, SES, SQS, Secrets Manager), `local.aws`
  - the Stripe stand-in (localstripe with its gaps filled), `local.stripe_server`
  - the API gateway serving template.yaml's routes as HTTP API v2 events, `local.gateway`
then creates what template.yaml declares (the table with its keys and indexes, the
bucket, queues, secrets, the SES sender), registers the Stripe webhook, seeds a demo
event through the API and prints what to do next.

Ports default to API.md's and can be changed with API_PORT, STRIPE_PORT, AWS_PORT.
Tests use `Stack(...)` directly on free ports.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from local.lifeline import exit_with_parent
from local.ports import free_port, is_free, wait_http

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
REGION = "us-east-1"

# Local physical names for the template's resources.
TABLE = "ticketing-local"
BUCKET = "ticketing-qr-local"
STRIPE_SECRET = "ticketing/local/stripe"
QR_SECRET = "ticketing/local/qr-signing"
ADMISSION_SECRET = "ticketing/local/admission"
QR_PUBLIC_KEYS = "/ticketing/local/qr-public-keys"
APPLE_WALLET_SECRET = "ticketing/local/apple-wallet"
GOOGLE_WALLET_SECRET = "ticketing/local/google-wallet"
SENDER = "tickets@ticketing.local"
MAIL_CONFIGURATION_SET = "ticketing-local"
STRIPE_KEYS = {
    "secret_key": "sk_test_local_ticketing",
    "publishable_key": "pk_test_local_ticketing",
    "webhook_secret": "whsec_local_ticketing",
}
WEBHOOK_PATH = "/api/tickets/webhook/"
WEBHOOK_EVENTS = [
    "payment_intent.succeeded",
    "payment_intent.payment_failed",
    "payment_intent.canceled",
    "payment_intent.requires_action",
    "charge.refunded",
    "refund.created",
    "charge.dispute.created",
    "charge.dispute.closed",
]


class StackError(RuntimeError):
    """A part of the stack could not start; the message says which and why."""


@contextmanager
def stripe_standin(port: int | None = None) -> Iterator[str]:
    """The Stripe stand-in alone, in a child process on a free loopback port, for unit tests
    and benchmarks: yields its URL once it answers, stops it afterwards."""
    port = port or free_port()
    url = f"http://{HOST}:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "local.stripe_server", "--host", HOST, "--port", str(port), "--quiet"], cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )

    def alive() -> None:
        if proc.poll() is not None:
            raise StackError(f"Stripe stand-in exited with code {proc.returncode}")

    try:
        if not wait_http(f"{url}/_local/health", timeout=30, check=alive):
            raise StackError(f"Stripe stand-in did not answer at {url} within 30 s")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@dataclass
class Stack:
    api_port: int = 3000
    stripe_port: int = 8420
    aws_port: int = 5000
    frontend_url: str = "http://localhost:5173"
    concurrency: int | None = None  # workers per function at most; None: the gateway's default
    schedule_seconds: int = 10
    state_dir: Path = ROOT / ".local"
    seed_demo: bool = True
    quiet: bool = False
    extra_env: dict[str, str] = field(default_factory=dict)
    _procs: list[tuple[str, subprocess.Popen]] = field(default_factory=list, init=False)

    # ---------------------------------------------------------------- urls
    @property
    def api_url(self) -> str:
        return f"http://{HOST}:{self.api_port}"

    @property
    def stripe_url(self) -> str:
        return f"http://{HOST}:{self.stripe_port}"

    @property
    def aws_url(self) -> str:
        return f"http://{HOST}:{self.aws_port}"

    def aws_env(self) -> dict[str, str]:
        """What a client needs in its environment to talk to the local AWS."""
        return {
            "AWS_ENDPOINT_URL": self.aws_url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
        }

    def function_env(self) -> dict[str, str]:
        """The values template.yaml's variables take locally (SAM env-vars "Parameters")."""
        return {
            "STAGE": "local",
            "TABLE_NAME": TABLE,
            "FRONTEND_URL": self.frontend_url,
            "STRIPE_SECRET_NAME": STRIPE_SECRET,
            "QR_SIGNING_SECRET_NAME": QR_SECRET,
            "ADMISSION_SECRET_NAME": ADMISSION_SECRET,
            "QR_PUBLIC_KEYS_PARAMETER": QR_PUBLIC_KEYS,
            "APPLE_WALLET_SECRET_NAME": APPLE_WALLET_SECRET,
            "GOOGLE_WALLET_SECRET_NAME": GOOGLE_WALLET_SECRET,
            "QR_BUCKET": BUCKET,
            "SENDER_EMAIL": SENDER,
            "SES_CONFIGURATION_SET": MAIL_CONFIGURATION_SET,
            "STRIPE_PUBLISHABLE_KEY": STRIPE_KEYS["publishable_key"],
            "STRIPE_API_BASE": self.stripe_url,
            "POWERTOOLS_LOG_LEVEL": os.environ.get("LOG_LEVEL", "INFO"),
            "POWERTOOLS_METRICS_DISABLED": "true",
            "HOLD_MINUTES": "15",
            "RECEIPT_QUEUE_URL": getattr(self, "queue_urls", {}).get("ReceiptQueue", ""),
            "CANCEL_QUEUE_URL": getattr(self, "queue_urls", {}).get("EventCancelQueue", ""),
            "MAX_HELD_PER_CUSTOMER": "20",
            "EVENT_CHANGE_BATCH": "5",  # (default 100) small, so an event change's notices cross batches locally too
            "REFUND_CUTOFF_HOURS": "48",
            # Stripe's test-mode rate (the stand-in plays a test-mode account)
            "STRIPE_RATE_TOTAL": "25",
            "STRIPE_RATE_PER_ENDPOINT": "25",
            "STRIPE_RATE_BACKGROUND_PERCENT": "50",
            **self.extra_env,
        }

    # ------------------------------------------------------------- running
    def start(self) -> Stack:
        taken = [
            (what, var, port)
            for what, var, port in (
                ("API gateway", "API_PORT", self.api_port),
                ("Stripe stand-in", "STRIPE_PORT", self.stripe_port),
                ("AWS stand-in", "AWS_PORT", self.aws_port),
            )
            if not is_free(HOST, port)
        ]
        if taken:
            raise StackError(
                "; ".join(f"{what}: port {port} on {HOST} is already in use (set {var} to use another)" for what, var, port in taken)
            )
        self.state_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._spawn("aws", ["-m", "local.aws", "--host", HOST, "--port", str(self.aws_port)])
            self._spawn("stripe", ["-m", "local.stripe_server", "--host", HOST, "--port", str(self.stripe_port)])
            self._wait_http("AWS stand-in", f"{self.aws_url}/moto-api/data.json", timeout=90)
            self._wait_http("Stripe stand-in", f"{self.stripe_url}/_local/health", timeout=90)
            self.provision()
            env_file = self.write_env_file()
            self._spawn(
                "gateway",
                [
                    "-m", "local.gateway", "--template", str(ROOT / "template.yaml"),
                    "--host", HOST, "--port", str(self.api_port), "--env-file", str(env_file),
                    "--parameter", f"FrontendUrl={self.frontend_url}",
                    "--schedule-seconds", str(self.schedule_seconds),
                    "--key-file", str(self.state_dir / "local-jwt-key.pem"),
                    "--web", str(ROOT / "web"),
                    *(["--concurrency", str(self.concurrency)] if self.concurrency else []),
                ],
            )
            # Every function's handler imported (cold starts on a loaded machine take a while).
            self._wait_http("API gateway", f"{self.api_url}/_local/ready", timeout=180)
            if self.seed_demo:
                self.seed()
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn(self, name: str, args: list[str]) -> None:
        env = {**os.environ, **self.aws_env(), "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
        log = open(self.state_dir / f"{name}.log", "ab") if self.quiet else None  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, *args], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT if log else None,
            start_new_session=True,
        )
        if log:
            log.close()  # the child holds its own copy
        self._procs.append((name, proc))

    def log_tail(self, name: str, limit: int = 2000) -> str:
        path = self.state_dir / f"{name}.log"
        return path.read_text(errors="replace")[-limit:] if path.exists() else ""

    def _wait_http(self, what: str, url: str, timeout: float = 30.0, any_status: bool = False) -> None:
        def alive() -> None:
            for name, proc in self._procs:
                if proc.poll() is not None:
                    detail = self.log_tail(name)
                    raise StackError(f"{what}: process '{name}' exited with code {proc.returncode}. {detail}".strip())

        if not wait_http(url, timeout, any_status, check=alive):
            raise StackError(f"{what} did not answer at {url} within {timeout:.0f} s")

    def stop(self, grace: float = 5.0) -> None:
        """The gateway first, so that requests in flight get its 503 rather than their functions
        failing against stand-ins already gone; then the stand-ins. Each step: SIGTERM, then
        SIGKILL to what is left after `grace` seconds."""
        _terminate([proc for name, proc in self._procs if name == "gateway"], grace)
        _terminate([proc for name, proc in self._procs if name != "gateway"], grace)
        self._procs.clear()

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ----------------------------------------------------------- provision
    def client(self, service: str):
        import boto3

        env = self.aws_env()
        return boto3.client(
            service,
            endpoint_url=env["AWS_ENDPOINT_URL"],
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def shards(self, type_id: str) -> list[dict[str, int]]:
        """A ticket type's seat shards as the table holds them now (`shard`, `remaining`,
        `held`, `sold`, `capacity`), in shard order: one consistent BatchGetItem."""
        keys = [{"PK": {"S": f"INV#{type_id}#{n}"}, "SK": {"S": "INV"}} for n in range(100)]
        items = self.client("dynamodb").batch_get_item(RequestItems={TABLE: {"Keys": keys, "ConsistentRead": True}})
        fields = ("shard", "remaining", "held", "sold", "capacity")
        return sorted(({k: int(item[k]["N"]) for k in fields} for item in items["Responses"][TABLE]), key=lambda s: s["shard"])

    def provision(self) -> None:
        """Create what template.yaml declares, under the local names above."""
        from local.template import load_template

        template = load_template(ROOT / "template.yaml")
        self._create_table(template)
        s3 = self.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        sqs = self.client("sqs")
        # Locally a failed message comes back after 1 s, not the template's minutes (one poller
        # per queue handles a batch at a time, so a slow batch is never delivered twice at once).
        self.queue_urls = {
            logical_id: sqs.create_queue(QueueName=queue.local_name, Attributes={"VisibilityTimeout": "1"})["QueueUrl"]
            for logical_id, queue in template.queues.items()
        }
        self.client("ses").verify_email_identity(EmailAddress=SENDER)
        self.client("sesv2").create_configuration_set(ConfigurationSetName=MAIL_CONFIGURATION_SET)
        secrets = self.client("secretsmanager")
        # The publishable key is not in the secret: the catalogue serves it from a setting.
        stripe_secret = {name: value for name, value in STRIPE_KEYS.items() if name != "publishable_key"}
        secrets.create_secret(Name=STRIPE_SECRET, SecretString=json.dumps(stripe_secret))
        secrets.create_secret(Name=QR_SECRET, SecretString=json.dumps(_new_qr_keys()))
        secrets.create_secret(Name=ADMISSION_SECRET, SecretString=json.dumps(
            {"key": base64.urlsafe_b64encode(os.urandom(32)).decode()}))  # the waiting room's token key
        apple, google = new_wallet_secrets()
        secrets.create_secret(Name=APPLE_WALLET_SECRET, SecretString=json.dumps(apple))
        secrets.create_secret(Name=GOOGLE_WALLET_SECRET, SecretString=json.dumps(google))
        self.publish_qr_keys()
        self._register_webhook()

    def publish_qr_keys(self) -> None:
        """Publish the QR public keys where the gate reads them, with the command the README
        gives for AWS (`python -m ticketing.qr publish`)."""
        subprocess.run(
            [sys.executable, "-m", "ticketing.qr", "publish", "--secret-id", QR_SECRET, "--public-parameter", QR_PUBLIC_KEYS],
            cwd=ROOT, env={**os.environ, **self.aws_env(), "PYTHONPATH": str(ROOT / "layers/common/python")},
            check=True, capture_output=True, timeout=60,
        )

    def _create_table(self, template: Any) -> None:
        ddb = self.client("dynamodb")
        ddb.create_table(TableName=TABLE, **template.table_definition())
        ttl = template.resources["Table"]["Properties"].get("TimeToLiveSpecification")
        if ttl:
            ddb.update_time_to_live(TableName=TABLE, TimeToLiveSpecification=ttl)

    def _register_webhook(self) -> None:
        import urllib.parse
        import urllib.request

        fields = [("url", self.api_url + WEBHOOK_PATH), ("secret", STRIPE_KEYS["webhook_secret"])]
        fields += [("events[]", name) for name in WEBHOOK_EVENTS]
        request = urllib.request.Request(
            f"{self.stripe_url}/_config/webhooks/ticketing",
            data=urllib.parse.urlencode(fields).encode(),
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=5):
            pass

    def write_env_file(self) -> Path:
        """The SAM `--env-vars` file: the gateway reads it, and so can `sam local start-api`."""
        path = self.state_dir / "env.json"
        path.write_text(json.dumps({"Parameters": self.function_env()}, indent=2) + "\n")
        return path

    # ---------------------------------------------------------------- seed
    def token(self, sub: str, groups: list[str] | None = None, email: str | None = None, name: str | None = None,
              ttl_seconds: int = 3600, email_verified: bool = True) -> str:
        body = {"sub": sub, "groups": groups or [], "ttl_seconds": ttl_seconds, "email_verified": email_verified}
        body["email"] = email or f"{sub}@example.com"
        body["name"] = name or sub.replace("-", " ").title()
        return self._call("POST", "/_local/token", body)["token"]

    def _call(self, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
        import urllib.request

        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.api_url + path, data=data, method=method, headers=headers)
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"null")

    def seed(self) -> dict[str, Any]:
        """A demo event with two fixtures and three ticket types, created through the API."""
        admin = self.token("demo-admin", ["admin"], name="Demo Organiser")
        start = (datetime.now(timezone.utc) + timedelta(days=30)).replace(hour=18, minute=0, second=0, microsecond=0)
        iso = lambda moment: moment.strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: E731
        event = self._call(
            "POST", "/api/events/",
            {
                "name": "Championship Final", "venue": "Riverside Stadium",
                "description": "Demo event seeded by the local stack.",
                "starts_at": iso(start), "ends_at": iso(start + timedelta(days=1, hours=4)), "currency": "usd",
                "fixtures": [
                    {"name": "Semi-final", "starts_at": iso(start), "ends_at": iso(start + timedelta(hours=2))},
                    {"name": "Final", "starts_at": iso(start + timedelta(days=1)), "ends_at": iso(start + timedelta(days=1, hours=2))},
                ],
            },
            admin,
        )
        types = [
            {"name": "General Admission", "price_cents": 2500, "capacity": 500, "max_per_order": 10},
            {"name": "VIP", "price_cents": 12000, "capacity": 50, "max_per_order": 4},
            {"name": "Final only", "price_cents": 1800, "capacity": 200, "fixture_id": event["fixtures"][1]["id"]},
        ]
        for body in types:
            self._call("POST", f"/api/events/{event['id']}/ticket-types/", body, admin)
        self.demo_event_id = event["id"]
        return event

    def banner(self) -> str:
        event = getattr(self, "demo_event_id", "<event_id>")
        return f"""
Local stack is up (Ctrl-C stops everything):
  API            {self.api_url}      (routes from template.yaml; docs at {self.api_url}/api/docs/)
  Stripe         {self.stripe_url}      (localstripe; webhooks go to {self.api_url}{WEBHOOK_PATH})
  AWS            {self.aws_url}      (moto: DynamoDB table {TABLE}, bucket {BUCKET})
  Pages          {self.api_url}/app/      (sign in with any email; tick admin for the desk, scanner for the gate)

Try it:
  curl -s {self.api_url}/api/events/ | python3 -m json.tool
  curl -s {self.api_url}/api/events/{event}/ | python3 -m json.tool
  curl -s {self.api_url}/api/payment/config/
  TOKEN=$(curl -s -X POST {self.api_url}/_local/token -d '{{"sub": "me", "groups": ["admin"]}}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
  curl -s -X POST {self.api_url}/api/events/ -H "Authorization: Bearer $TOKEN" \\
       -d '{{"name": "My gig", "venue": "The Hall", "starts_at": "2030-01-01T19:00:00Z", "ends_at": "2030-01-01T23:00:00Z", "currency": "eur"}}'

`sam local start-api --env-vars {self.state_dir / 'env.json'}` uses the same servers where Docker exists (README).
"""


def _terminate(procs: list[subprocess.Popen], grace: float) -> None:
    for proc in procs:
        _signal_group(proc, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:  # not reaped yet: nothing more to send it
                pass


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    """Signal a part and everything in its process group (a part runs in a group of its own)."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass


def _new_qr_keys() -> dict[str, Any]:
    """A fresh Ed25519 signing key in the QR secret's shape (README, "Key rotation")."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    raw = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    kid = "k" + datetime.now(timezone.utc).strftime("%Y%m%d")
    return {"active": kid, "keys": {kid: base64.urlsafe_b64encode(raw).decode()}}


def new_wallet_secrets() -> tuple[dict[str, str], dict[str, str]]:
    """Test stand-ins for the wallet secrets (ticketing.wallet), made at start-up: a
    self-signed "WWDR" CA and a pass certificate it issued, with the pass certificate's key;
    and a service account key for Google Wallet. Nothing Apple or Google would accept, but
    the same shapes, so the signing code is exercised exactly as in AWS."""
    from datetime import timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    def pem_key(key: rsa.RSAPrivateKey) -> str:
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Ticketing local")])

    now = datetime.now(timezone.utc)
    ca_key, pass_key, google_key = (rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(3))
    ca = (
        x509.CertificateBuilder().subject_name(name("Local test WWDR")).issuer_name(name("Local test WWDR"))
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True).sign(ca_key, hashes.SHA256())
    )
    certificate = (
        x509.CertificateBuilder().subject_name(name("Pass Type ID: pass.local.ticketing")).issuer_name(ca.subject)
        .public_key(pass_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True).sign(ca_key, hashes.SHA256())
    )
    apple = {
        "pass_type_identifier": "pass.local.ticketing", "team_identifier": "LOCAL12345", "organization_name": "Ticketing (local)",
        "certificate_pem": certificate.public_bytes(serialization.Encoding.PEM).decode(), "private_key_pem": pem_key(pass_key),
        "wwdr_certificate_pem": ca.public_bytes(serialization.Encoding.PEM).decode(),
    }
    google = {
        "issuer_id": "3388000000000000001", "client_email": "wallet@ticketing-local.iam.gserviceaccount.com",
        "private_key": pem_key(google_key), "private_key_id": "local-1",
    }
    return apple, google


def main() -> int:
    stack = Stack(
        api_port=int(os.environ.get("API_PORT", 3000)),
        stripe_port=int(os.environ.get("STRIPE_PORT", 8420)),
        aws_port=int(os.environ.get("AWS_PORT", 5000)),
        frontend_url=os.environ.get("FRONTEND_URL", "http://localhost:5173"),
        concurrency=int(os.environ["LOCAL_CONCURRENCY"]) if os.environ.get("LOCAL_CONCURRENCY") else None,
    )
    stopping = False

    def _stop(*_: Any) -> None:
        nonlocal stopping
        if not stopping:
            stopping = True
            raise KeyboardInterrupt

    # SIGINT too: Python keeps it ignored in a process started with it ignored (`make dev &`
    # in a script: a shell without job control starts background jobs so), and Ctrl-C or
    # `kill -INT` then did nothing.
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    exit_with_parent()
    try:
        stack.start()
        print(stack.banner(), flush=True)
        while all(proc.poll() is None for _name, proc in stack._procs):
            time.sleep(0.5)
        dead = [name for name, proc in stack._procs if proc.poll() is not None]
        print(f"local stack: {', '.join(dead)} stopped unexpectedly; shutting down", file=sys.stderr)
        return 1
    except StackError as exc:
        print(f"local stack: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nstopping the local stack...", file=sys.stderr)
        return 0
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the stop short
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
