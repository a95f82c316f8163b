"""The waiting room through the local gateway: 200 buyers join, the admission job admits them
at 20 a second (each step's count checked against the rate and the times the job recorded),
each polls for its token and checks out with it; a reused token, another account's and an
expired one are refused."""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import requests

from local import stack as stack_module
from tests.integration.test_webhook import table_item

BUYERS = 200
RATE = 1200  # a minute: 20 a second


def _state(stack, event_id: str) -> dict:
    return table_item(stack, f"QUEUE#{event_id}#STATE#0", "STATE")


def test_two_hundred_buyers_are_admitted_at_the_rate_and_check_out_with_their_tokens(stack, api, make_event):
    opens = datetime.now(timezone.utc) - timedelta(seconds=1)
    event_id, types = make_event({"GA": (1500, 400)}, waiting_room={
        "opens_at": opens.strftime("%Y-%m-%dT%H:%M:%SZ"), "admit_per_minute": RATE, "admission_ttl_seconds": 600})
    buyers = [api.token(sub=f"wr-{n}-{uuid.uuid4().hex[:6]}", email=f"wr{n}@example.com", email_verified=True)
              for n in range(BUYERS)]

    def join(token: str) -> dict:
        answer = api.post(f"/api/events/{event_id}/queue/", token=token)
        assert answer.status_code == 201, answer.text
        assert int(answer.headers["Retry-After"]) >= 0  # 0: a place the front has passed (a gap another join left): poll now
        return answer.json()

    requests.post(f"{stack.api_url}/_local/invoke/QueueTickFunction", json={"steps": 1}, timeout=60)  # opens the room
    # The admission job's states, sampled from now until everyone is admitted (it runs on its
    # schedule and is stepped here too): never faster than the rate, by the job's own clock.
    seen: dict[int, dict] = {}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            state = _state(stack, event_id)
            if state:
                seen[int(state["version"])] = state
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    with ThreadPoolExecutor(8) as pool:
        places = list(pool.map(join, buyers))
    positions = [place["position"] for place in places]
    assert len(set(positions)) == BUYERS and min(positions) >= 1  # a place each
    again = api.post(f"/api/events/{event_id}/queue/", token=buyers[0])
    assert again.status_code == 200 and again.json()["position"] == positions[0]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and int(_state(stack, event_id)["admitted"]) < BUYERS:
        requests.post(f"{stack.api_url}/_local/invoke/QueueTickFunction", json={"steps": 1}, timeout=60)
    done.set()
    sampler.join()
    final = _state(stack, event_id)
    seen[int(final["version"])] = final
    assert int(final["admitted"]) == BUYERS
    states = [seen[v] for v in sorted(seen)]
    assert len(states) >= 3
    for before, after in zip(states, states[1:]):
        owed = float(before["carry"]) + RATE * (float(after["at"]) - float(before["at"])) / 60
        assert int(after["admitted"]) - int(before["admitted"]) <= owed + 1e-6, (before, after)
    first_full = next(s for s in states if int(s["admitted"]) >= 1)
    assert float(final["at"]) - float(first_full["at"]) >= (BUYERS - int(first_full["admitted"]) - 1) / (RATE / 60)

    def checkout(token: str) -> tuple[str, int]:
        while True:
            me = api.get(f"/api/events/{event_id}/queue/me/", token=token)
            assert me.status_code == 200, me.text
            if me.json()["admission_token"]:
                break
            time.sleep(0.5)
        admission = me.json()["admission_token"]
        for _ in range(30):
            answer = api.post("/api/tickets/stripe/checkout/", token=token, headers={"Admission-Token": admission},
                              json={"event_id": event_id, "items": [{"ticket_type_id": types["GA"], "qty": 1}]})
            if answer.status_code != 503:
                break
            time.sleep(float(answer.headers.get("Retry-After", "1")))
        assert answer.status_code == 201, answer.text
        return admission, answer.status_code

    with ThreadPoolExecutor(8) as pool:
        spent = list(pool.map(checkout, buyers))
    assert len(spent) == BUYERS

    body = {"event_id": event_id, "items": [{"ticket_type_id": types["GA"], "qty": 1}]}
    reused = api.post("/api/tickets/stripe/checkout/", token=buyers[0], headers={"Admission-Token": spent[0][0]}, json=body)
    assert reused.status_code == 403 and reused.json()["code"] == "admission_spent"
    theirs = api.post("/api/tickets/stripe/checkout/", token=buyers[1], headers={"Admission-Token": spent[0][0]}, json=body)
    assert theirs.status_code == 403 and theirs.json()["code"] == "admission_wrong_account"
    none = api.post("/api/tickets/stripe/checkout/", token=buyers[1], json=body)
    assert none.status_code == 403 and none.json()["code"] == "admission_required"

    # An expired token, signed with the real key: refused for its age, not its signature.
    secret = json.loads(stack.client("secretsmanager").get_secret_value(SecretId=stack_module.ADMISSION_SECRET)["SecretString"])
    key = base64.urlsafe_b64decode(secret["key"] + "=" * (-len(secret["key"]) % 4))
    sub = f"wr-late-{uuid.uuid4().hex[:6]}"
    late = api.token(sub=sub, email="late@example.com", email_verified=True)
    from ticketing import waiting_room
    from ticketing.table import QueuePlaceItem

    place = QueuePlaceItem(event_id=event_id, sub=sub, round=0)
    expired = waiting_room.sign(place, int(time.time()) - 5, key=key)
    answer = api.post("/api/tickets/stripe/checkout/", token=late, headers={"Admission-Token": expired}, json=body)
    assert answer.status_code == 403 and answer.json()["code"] == "admission_expired"
    forged = expired[:-4] + ("AAAA" if not expired.endswith("AAAA") else "BBBB")
    answer = api.post("/api/tickets/stripe/checkout/", token=late, headers={"Admission-Token": forged}, json=body)
    assert answer.status_code == 403 and answer.json()["code"] == "admission_invalid"

    view = api.get(f"/api/events/{event_id}/queue/", token=api.token(["admin"]))
    assert view.status_code == 200
    assert (view.json()["admitted"], view.json()["spent"], view.json()["waiting"]) == (BUYERS, BUYERS, 0)
    status = requests.options(f"{stack.api_url}/api/tickets/stripe/checkout/", headers={
        "Origin": stack.frontend_url, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "admission-token,content-type"}, timeout=10)
    assert "admission-token" in status.headers.get("Access-Control-Allow-Headers", "").lower()
