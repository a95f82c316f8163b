"""The local stack end to end, as a newcomer meets it: `make dev`'s servers, the demo
event, tokens, roles, API Gateway's own answers, CORS and provisioning."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import requests

from local import stack as stack_module
from local.ports import free_port, is_free
from tests.conftest import ROOT
from tests.integration.support import alive, descendants, wait_for


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _all_events(api):
    events, cursor = [], None
    while True:
        page = api.get("/api/events/", params={"limit": 100, **({"cursor": cursor} if cursor else {})}).json()
        events += page["events"]
        cursor = page["next_cursor"]
        if not cursor:
            return events


def test_demo_event_is_seeded_and_readable_with_and_without_the_slash(api, stack):
    demo = next(e for e in _all_events(api) if e["id"] == stack.demo_event_id)
    assert demo["name"] == "Championship Final"
    for path in (f"/api/events/{demo['id']}/", f"/api/events/{demo['id']}"):
        answer = api.get(path)
        assert answer.status_code == 200
        event = answer.json()
        assert [t["name"] for t in event["ticket_types"]] == ["General Admission", "VIP", "Final only"]
        assert [t["available"] for t in event["ticket_types"]] == [500, 50, 200]
        assert all(t["currency"] == "usd" for t in event["ticket_types"])
    assert api.get("/api/events").status_code == 200


def test_admin_creates_an_event_and_a_ticket_type(api):
    token = api.token(["admin"])
    start = datetime.now(timezone.utc) + timedelta(days=3)
    created = api.post(
        "/api/events/", token=token,
        json={"name": "Gig", "venue": "Hall", "currency": "EUR", "starts_at": iso(start), "ends_at": iso(start + timedelta(hours=3))},
    )
    assert created.status_code == 201, created.text
    event_id = created.json()["id"]
    ticket_type = api.post(f"/api/events/{event_id}/ticket-types", token=token, json={"name": "Standing", "price_cents": 1500, "capacity": 120})
    assert ticket_type.status_code == 201, ticket_type.text
    shown = api.get(f"/api/events/{event_id}/").json()
    assert shown["currency"] == "eur"
    assert shown["ticket_types"][0] | {} == ticket_type.json()


def test_customer_gets_403_in_the_error_format_and_nothing_changes(api):
    before = len(_all_events(api))
    answer = api.post("/api/events/", token=api.token([]), json={"name": "x"})
    assert answer.status_code == 403
    assert answer.json()["error"] == "Permission denied" and answer.json()["detail"]
    assert len(_all_events(api)) == before


def test_missing_expired_and_forged_tokens_get_api_gateways_401(api):
    expired = api.token(["admin"], ttl_seconds=-60)
    forged = api.token(["admin"])[:-4] + "AAAA"
    for headers in ({}, {"Authorization": f"Bearer {expired}"}, {"Authorization": f"Bearer {forged}"}):
        answer = api.post("/api/events/", headers=headers, json={})
        assert answer.status_code == 401
        assert answer.json() == {"message": "Unauthorized"}


def test_undeclared_route_gets_api_gateways_404(api):
    answer = api.get("/api/nothing-here/")
    assert answer.status_code == 404 and answer.json() == {"message": "Not Found"}


def test_unknown_event_is_404_in_our_format(api):
    answer = api.get("/api/events/ev_unknown/")
    assert answer.status_code == 404 and answer.json()["error"] == "Not found"


def test_validation_errors_name_the_field(api):
    answer = api.post("/api/events/", token=api.token(["admin"]), json={"name": "x", "venue": "y", "currency": "usd"})
    assert answer.status_code == 422
    assert answer.json()["field"] in {"starts_at", "ends_at"}
    malformed = api.post("/api/events/", token=api.token(["admin"]), data="{", headers={"Content-Type": "application/json"})
    assert malformed.status_code == 400 and malformed.json()["error"] == "Malformed JSON"


def test_cors_preflight_and_headers_for_the_front_end(api, stack):
    origin = stack.frontend_url
    preflight = api.request(
        "OPTIONS", "/api/tickets/stripe/checkout/",
        headers={"Origin": origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization,content-type"},
    )
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == origin
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    assert api.get("/api/events/", headers={"Origin": origin}).headers["Access-Control-Allow-Origin"] == origin
    assert "Access-Control-Allow-Origin" not in api.get("/api/events/", headers={"Origin": "https://evil.example"}).headers


def test_payment_config_and_docs(api):
    assert api.get("/api/payment/config/").json() == {"publishable_key": stack_module.STRIPE_KEYS["publishable_key"]}
    docs = api.get("/api/docs/")
    assert docs.status_code == 200 and "text/html" in docs.headers["Content-Type"] and "swagger-ui" in docs.text
    spec = api.get("/api/docs/?format=json").json()
    assert spec["paths"]["/api/events/"]["post"]["security"] == [{"bearerAuth": []}]


def test_everything_the_template_declares_is_provisioned(stack):
    table = stack.client("dynamodb").describe_table(TableName=stack_module.TABLE)["Table"]
    assert {i["IndexName"] for i in table["GlobalSecondaryIndexes"]} == {"GSI1", "GSI2", "GSI3"}
    stack.client("s3").head_bucket(Bucket=stack_module.BUCKET)
    secret = stack.client("secretsmanager").get_secret_value(SecretId=stack_module.QR_SECRET)
    keys = json.loads(secret["SecretString"])
    assert keys["active"] in keys["keys"]
    identities = stack.client("ses").list_identities()["Identities"]
    assert stack_module.SENDER in identities
    stack.client("sesv2").get_configuration_set(ConfigurationSetName=stack_module.MAIL_CONFIGURATION_SET)
    published = json.loads(stack.client("ssm").get_parameter(Name=stack_module.QR_PUBLIC_KEYS)["Parameter"]["Value"])
    assert set(published["keys"]) == set(keys["keys"])
    stripe = json.loads(stack.client("secretsmanager").get_secret_value(SecretId=stack_module.STRIPE_SECRET)["SecretString"])
    assert "publishable_key" not in stripe  # served from a setting, by a function without access to the secret


def test_env_file_for_sam_local_covers_every_template_variable(stack):
    from local.template import load_template

    env = json.loads((stack.state_dir / "env.json").read_text())["Parameters"]
    template = load_template(ROOT / "template.yaml")
    for function in template.functions.values():
        for name, value in function.environment.items():
            if not isinstance(value, str):  # an intrinsic: needs a local value
                assert name in env, f"{function.logical_id}.{name} has no local value in env.json"


def _run_stack(ports: dict[str, int], sigint_ignored: bool = False) -> subprocess.Popen:
    env = {**os.environ, **{k: str(v) for k, v in ports.items()}, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "local.stack"], cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if sigint_ignored else None,
    )


def _started(proc: subprocess.Popen) -> str:
    """What `make dev` printed up to its banner's last line."""
    lines: list[str] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("`sam local start-api"):
            break
    return "".join(lines)


def test_make_dev_prints_next_steps_and_ctrl_c_stops_every_process_with_requests_in_flight():
    ports = {"API_PORT": free_port(), "STRIPE_PORT": free_port(), "AWS_PORT": free_port()}
    # Started with SIGINT ignored, as a shell without job control starts a background job
    # (and this suite, when it is started so, passes it on): Python leaves it ignored, and
    # this test failed on such runs until local.stack handled SIGINT itself.
    proc = _run_stack(ports, sigint_ignored=True)
    api = f"http://127.0.0.1:{ports['API_PORT']}"
    children: list[int] = []
    try:
        output = _started(proc)
        assert "Local stack is up" in output, output[-3000:]
        assert f"curl -s {api}/api/events/" in output
        assert requests.get(f"{api}/api/events/", timeout=10).status_code == 200
        # A rush is under way when Ctrl-C comes.
        with ThreadPoolExecutor(max_workers=32) as clients:
            calls = [clients.submit(_get_quietly, f"{api}/api/events/") for _ in range(64)]
            assert wait_for(lambda: any(c.done() for c in calls), timeout=30)
            children = descendants(proc.pid)
            assert len(children) >= 5  # moto, localstripe, the gateway, its functions' processes
            os.killpg(proc.pid, signal.SIGINT)
            assert proc.wait(timeout=30) == 0
        # The gateway stops first: requests in flight get its 503, not functions failing against
        # stand-ins already gone (a screen of tracebacks after every Ctrl-C).
        after = proc.stdout.read()
        assert "stopping the local stack" in after
        assert "Traceback" not in after and "AWS dependency unavailable" not in after, after[-3000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert wait_for(lambda: not [pid for pid in children if alive(pid)], timeout=10), [p for p in children if alive(p)]
    assert all(is_free("127.0.0.1", port) for port in ports.values()), "a server is still listening"


def test_when_make_dev_is_killed_outright_every_process_it_started_exits():
    ports = {"API_PORT": free_port(), "STRIPE_PORT": free_port(), "AWS_PORT": free_port()}
    proc = _run_stack(ports)
    children: list[int] = []
    try:
        assert "Local stack is up" in _started(proc)
        children = descendants(proc.pid)
        assert len(children) >= 5
        proc.kill()  # SIGKILL: no chance to stop anything itself
        proc.wait(timeout=10)
        assert wait_for(lambda: not [pid for pid in children if alive(pid)], timeout=20), [p for p in children if alive(p)]
    finally:
        for pid in children:  # whatever happens, nothing of this test is left behind
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
    assert all(is_free("127.0.0.1", port) for port in ports.values()), "a server is still listening"


def _get_quietly(url: str) -> int | str:
    try:
        return requests.get(url, timeout=30).status_code
    except requests.RequestException as exc:  # the stack stopping under it
        return type(exc).__name__


def test_make_dev_with_a_taken_port_says_so_clearly():
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = _run_stack({"API_PORT": port, "STRIPE_PORT": free_port(), "AWS_PORT": free_port()})
        output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert f"API gateway: port {port} on 127.0.0.1 is already in use (set API_PORT to use another)" in output
    assert "Traceback" not in output
