"""The pages in headless Chromium against the local stack, as people use them: an organiser
creates an event and a ticket type, a customer buys two tickets with 4242 4242 4242 4242
through the Stripe stand-in and sees their QR codes, and the gate scanner, shown the QR
image by Chromium's fake camera, admits the ticket once and answers the second scan with the
first gate and time. Then the scanner offline: reloaded with no network, scans kept in
IndexedDB through another reload, uploaded when the network returns, a conflict with
another gate shown. The desk cancels an event and follows the refunds. axe-core checks every page on the way (no serious or critical
violations); SCREENSHOTS=1 writes phone-size screenshots to docs/screenshots/."""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import requests
from playwright.sync_api import expect

from tests.integration.browser.pages import check_page, launch, phone, shown_code, sign_in, y4m
from tests.integration.support import wait_for
from tests.integration.test_checkout import buy
from tests.integration.test_webhook import order_of, pay

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("browser")]
SCANNER_BUDGET = 200 * 1024
SLOW = 30_000  # ms: a payment's webhook, or a camera frame decoded, on a loaded machine


def qr_png(base: str, token: str, ticket_id: str) -> bytes:
    answer = requests.get(f"{base}/api/tickets/{ticket_id}/qr/image/?size=400", headers={"Authorization": f"Bearer {token}"},
                          timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.content


def test_organiser_customer_and_gate_journey(playwright, base, api, tmp_path):
    browser = launch(playwright)
    try:
        # The organiser creates an event and a ticket type at the desk.
        desk = phone(browser).new_page()
        sign_in(desk, base, f"org-{uuid.uuid4().hex[:6]}@example.com", ("admin",), "/app/desk.html")
        expect(desk.locator("#events li").first).not_to_have_text("Loading…")
        check_page(desk, "desk")
        name = f"Browser gig {uuid.uuid4().hex[:6]}"
        desk.get_by_label("Name").fill(name)
        desk.get_by_label("Venue").fill("The Hall")
        desk.get_by_role("button", name="Create event").click()
        desk.wait_for_url(re.compile(r"desk\.html\?event=ev_"))
        event_id = desk.url.rsplit("=", 1)[1]
        desk.locator("#tt-name").fill("General admission")
        desk.locator("#tt-price").fill("2500")
        desk.locator("#tt-capacity").fill("50")
        desk.get_by_role("button", name="Add ticket type").click()
        expect(desk.locator("#status")).to_have_text("Ticket type added.")
        expect(desk.locator("#types")).to_contain_text("General admission")

        # A customer buys two tickets and pays with a card through the Stripe stand-in.
        shop = phone(browser).new_page()
        shop.goto(f"{base}/app/index.html")
        expect(shop.get_by_role("link", name=name)).to_be_visible()
        check_page(shop, "events")
        shop.goto(f"{base}/app/signin.html")
        check_page(shop, "signin")
        sign_in(shop, base, f"fan-{uuid.uuid4().hex[:6]}@example.com", (), f"/app/event.html?id={event_id}")
        shop.get_by_label("Quantity of General admission").fill("2")
        expect(shop.locator("#total")).to_contain_text("50.00")
        check_page(shop, "event")
        shop.get_by_role("button", name="Buy").click()
        expect(shop.locator(".countdown")).to_have_text(re.compile(r"^1[45]:\d\d$"))
        # A declined card first: the reason is shown and the same form takes another card.
        shop.get_by_label("Card number").fill("4000 0000 0000 0341")
        shop.get_by_label("Expiry (MM/YY)").fill("12/30")
        shop.get_by_label("CVC").fill("123")
        shop.get_by_role("button", name="Pay").click()
        expect(shop.locator("#status")).to_contain_text("declined", ignore_case=True, timeout=SLOW)
        shop.get_by_label("Card number").fill("4242 4242 4242 4242")
        check_page(shop, "pay")
        shop.get_by_role("button", name="Pay").click()
        expect(shop.locator("#order-status")).to_contain_text("Payment received", timeout=SLOW)
        check_page(shop, "order")
        shop.get_by_role("link", name="Show my tickets").click()
        expect(shop.locator("article.ticket img.qr")).to_have_count(2, timeout=SLOW)
        check_page(shop, "tickets", full_page=True)
        ticket_ids = shop.locator("article.ticket").evaluate_all("nodes => nodes.map(n => n.dataset.ticket)")
        token = shop.evaluate("localStorage.getItem('id_token')")
        # Their account shows the payment and the card it was made with.
        shop.get_by_role("link", name="Account").click()
        expect(shop.locator("li.payment", has_text=name)).to_contain_text("4242")
        check_page(shop, "account", full_page=True)

        # The organiser sees the sale.
        desk.reload()
        expect(desk.locator("#fig-sold")).to_have_text("2")
        expect(desk.locator("#attendees tbody tr")).to_have_count(2)
        check_page(desk, "desk-event", full_page=True)
        with desk.expect_download() as download:
            desk.get_by_role("button", name="Export CSV").click()
        csv = Path(download.value.path()).read_text()
        assert all(ticket_id in csv for ticket_id in ticket_ids), csv
    finally:
        browser.close()

    # The gate: the fake camera shows the first ticket's QR image, then nothing, in a loop.
    camera = y4m(tmp_path / "ticket.y4m", [qr_png(base, token, ticket_ids[0]), None])
    browser = launch(playwright, camera)
    try:
        gate = f"North {uuid.uuid4().hex[:4]}"
        context = phone(browser)  # signed in as gate staff (the form is exercised above)
        context.add_init_script(f"localStorage.setItem('id_token', {api.token(['scanner'], name='Gate')!r})")
        scanner = context.new_page()
        scanner.goto(f"{base}/app/scanner.html?event={event_id}&gate={gate}")
        expect(scanner.locator("#keys")).to_have_attribute("data-ready", "yes")
        check_page(scanner, "scanner")
        scanner.get_by_role("button", name="Start camera").click()
        verdict = scanner.locator("#verdict")
        expect(verdict).to_contain_text("Admitted", timeout=SLOW)
        expect(verdict).to_have_class(re.compile(r"\bok\b"))
        check_page(scanner, "scanner-admitted")
        # The code stays in view: it counts once. It leaves the frame and comes back: refused.
        expect(verdict).to_contain_text(f"First scan: {gate} at", timeout=SLOW)
        expect(verdict).to_have_class(re.compile(r"\bbad\b"))
        check_page(scanner, "scanner-refused")
        expect(scanner.locator("#n-admitted")).to_have_text("1")
        # The rule behind it, frame by frame (ms): in view, answered slowly, gone 0.7 s, back.
        fresh = scanner.evaluate("""async () => {
            const {newScans} = await import('./js/frames.js');
            const s = newScans(700);
            const out = [s.frame('A', 0), s.frame('A', 100), s.frame(null, 200)];
            s.stillSeen('A', 1500);  // the answer to the first frame came at 1.5 s
            out.push(s.frame('A', 2000), s.frame('B', 2100), s.frame('A', 2200), s.frame('B', 2300), s.frame('A', 3000));
            return out;
        }""")
        assert fresh == [True, False, False, False, True, False, False, True]
    finally:
        browser.close()
    attendees = api.get(f"/api/events/{event_id}/attendees/", token=api.token(["admin"])).json()["attendees"]
    used = {a["ticket_id"]: a for a in attendees}
    assert used[ticket_ids[0]]["status"] == "used" and used[ticket_ids[0]]["gate"] == gate
    assert used[ticket_ids[1]]["status"] == "valid"


def test_scanner_page_transfers_at_most_200_kb(playwright, base, api, make_event, tmp_path, capsys):
    """Everything the scanner page loads to scan on a browser without BarcodeDetector (the
    vendored decoder included), compressed as served; printed for the README."""
    event_id, _ = make_event({"GA": (1000, 5)})
    camera = y4m(tmp_path / "blank.y4m", [None], frames_each=2)
    browser = launch(playwright, camera)
    try:
        context = browser.new_context(service_workers="block", viewport={"width": 390, "height": 844})
        context.add_init_script(f"localStorage.setItem('id_token', {api.token(['scanner'])!r})")
        page = context.new_page()
        loaded = []
        page.on("requestfinished", lambda r: loaded.append((r.url, r.sizes())))
        page.goto(f"{base}/app/scanner.html?event={event_id}&gate=Main")
        expect(page.locator("#keys")).to_have_attribute("data-ready", "yes")
        page.get_by_role("button", name="Start camera").click()
        page.wait_for_function("() => typeof window.jsQR === 'function'")
        page.wait_for_load_state("networkidle")
    finally:
        browser.close()
    pages = [(u, s) for u, s in loaded if "/api/" not in u]
    total = sum(s["responseBodySize"] + s["responseHeadersSize"] for _, s in pages)
    api_bytes = sum(s["responseBodySize"] + s["responseHeadersSize"] for u, s in loaded if "/api/" in u)
    with capsys.disabled():
        print(f"\nscanner page: {total / 1024:.1f} KB transferred in {len(pages)} responses "
              f"(+ {api_bytes / 1024:.1f} KB of API answers); budget {SCANNER_BUDGET // 1024} KB")
    assert any(u.endswith("/vendor/jsQR.js") for u, _ in pages)
    assert total <= SCANNER_BUDGET, pages


def test_scanner_offline_keeps_scans_through_reloads_and_uploads_them_with_conflicts(playwright, base, api, stack, make_event,
                                                                                      tmp_path):
    event_id, types = make_event({"GA": (1500, 10)})
    fan = api.token([], sub=f"fan-{uuid.uuid4().hex[:6]}", email="fan@example.com", name="Fan")
    order = buy(api, fan, event_id, [(types["GA"], 2)]).json()
    assert pay(stack, order).json()["status"] == "succeeded"
    assert wait_for(lambda: order_of(api, fan, order["order_id"])["status"] == "paid"), "not paid"
    first, second = (t["id"] for t in order["tickets"])
    codes = {t: api.get(f"/api/tickets/{t}/qr/data/", token=fan).json()["qr_payload"] for t in (first, second)}
    camera = y4m(tmp_path / "two.y4m", [qr_png(base, fan, first), None, qr_png(base, fan, second), None])
    scanner_token = api.token(["scanner"], sub=f"gate-{uuid.uuid4().hex[:6]}", name="Gate")

    browser = launch(playwright, camera)
    try:
        context = phone(browser)
        context.add_init_script(f"localStorage.getItem('id_token') || localStorage.setItem('id_token', {scanner_token!r})")
        page = context.new_page()
        # Online once: the service worker caches the pages, the keys document is downloaded.
        page.goto(f"{base}/app/scanner.html?event={event_id}&gate=East")
        expect(page.locator("#keys")).to_have_attribute("data-ready", "yes")
        page.wait_for_function("async () => !!(await navigator.serviceWorker.ready).active")
        page.reload()
        page.wait_for_function("() => !!navigator.serviceWorker.controller")

        # The network goes; the page still loads, and checks codes with the keys it kept.
        context.set_offline(True)
        page.reload()
        expect(page.locator("#network")).to_contain_text("Offline")
        expect(page.locator("#keys")).to_have_attribute("data-ready", "yes")
        check_page(page, "scanner-offline")
        page.get_by_role("button", name="Start camera").click()
        expect(page.locator("#n-waiting")).to_have_text("2", timeout=SLOW)
        expect(page.locator("#n-admitted")).to_have_text("2")
        # Meanwhile another gate, online, admits the first ticket.
        west = api.post("/api/tickets/checkin/", token=api.token(["scanner"]), json={"code": codes[first], "gate": "West"})
        assert west.status_code == 200, west.text

        # Reloaded while still offline, and the sign-in expired meanwhile: the queue is still there.
        expired = api.token(["scanner"], sub=f"gate-{uuid.uuid4().hex[:6]}", ttl_seconds=-60)
        page.evaluate("token => localStorage.setItem('id_token', token)", expired)
        page.reload()
        expect(page.locator("#network")).to_contain_text("Offline")
        expect(page.locator("#n-waiting")).to_have_text("2")
        expect(page.locator("#status")).to_contain_text("sign-in has expired")

        # The network returns: once signed in again, the scans are uploaded and the conflict
        # with West is shown.
        context.set_offline(False)
        page.get_by_role("button", name="Sign in again").click()
        page.get_by_label("Email").fill("gate@example.com")
        page.get_by_label("scanner").check()
        page.locator("#main").get_by_role("button", name="Sign in").click()
        page.wait_for_url(re.compile(r"/app/scanner\.html"))
        expect(page.locator("#n-waiting")).to_have_text("0", timeout=SLOW)
        conflict = page.locator("#conflicts li", has_text=first)
        expect(conflict).to_contain_text("conflict")
        expect(conflict).to_contain_text("East at")
        expect(conflict).to_contain_text("West at")
        expect(page.locator("#conflicts li")).to_have_count(1)
        check_page(page, "scanner-conflict", full_page=True)

        # The Ed25519 fallback (for browsers without it in WebCrypto) agrees with WebCrypto.
        verdicts = page.evaluate("""async ([eventId, code]) => {
            const {verifyOffline} = await import('./js/verify.js');
            const {get} = await import('./js/gatedb.js');
            const doc = await get('keys', eventId);
            const forged = code.slice(0, -2) + (code.endsWith('AA') ? 'BA' : 'AA');
            const out = {};
            for (const engine of ['webcrypto', 'noble']) {
              out[engine] = [(await verifyOffline(doc, code, {engine})).reason, (await verifyOffline(doc, forged, {engine})).reason];
            }
            return out;
        }""", [event_id, codes[second]])
        assert verdicts == {"webcrypto": ["ok", "bad_signature"], "noble": ["ok", "bad_signature"]}
    finally:
        browser.close()
    attendees = {a["ticket_id"]: a for a in api.get(f"/api/events/{event_id}/attendees/", token=api.token(["admin"])).json()["attendees"]}
    assert attendees[second]["status"] == "used" and attendees[second]["gate"] == "East"
    assert attendees[first]["status"] == "used"


def test_the_desk_cancels_an_event_and_follows_the_refunds(playwright, base, api, stack, make_event):
    event_id, types = make_event({"GA": (2000, 10)})
    fan = api.token([], sub=f"fan-{uuid.uuid4().hex[:6]}", email="fan@example.com", name="Fan")
    order = buy(api, fan, event_id, [(types["GA"], 1)]).json()
    assert pay(stack, order).json()["status"] == "succeeded"
    assert wait_for(lambda: order_of(api, fan, order["order_id"])["status"] == "paid"), "not paid"
    browser = launch(playwright)
    try:
        context = phone(browser)
        context.add_init_script(f"localStorage.setItem('id_token', {api.token(['admin'])!r})")
        page = context.new_page()
        page.on("dialog", lambda dialog: dialog.accept())
        page.goto(f"{base}/app/desk.html?event={event_id}")
        expect(page.locator("#fig-sold")).to_have_text("1")
        page.get_by_role("button", name="Cancel this event").click()
        expect(page.locator("#cancel")).to_contain_text("Cancellation completed: 1 of 1 orders done (1 refunded), 0 left, 0 failed",
                                                        timeout=SLOW)
        expect(page.get_by_role("button", name="Cancel this event")).to_be_disabled()
        check_page(page, "desk-canceled")
    finally:
        browser.close()
    assert order_of(api, fan, order["order_id"])["status"] == "refunded"


def test_sign_in_through_the_hosted_ui_with_pkce_as_on_aws(playwright, base, api):
    """The pages as deployed (config.json in "aws" mode) sign in through Cognito's hosted UI:
    authorization code with PKCE. Cognito is played here by two routes in the browser."""
    import base64
    import hashlib
    from urllib.parse import parse_qs, urlencode, urlsplit

    seen: dict[str, dict[str, str]] = {}
    id_token = api.token([], sub=f"hosted-{uuid.uuid4().hex[:6]}", email="hosted@example.com", name="Hosted")

    def authorize(route):
        query = {k: v[0] for k, v in parse_qs(urlsplit(route.request.url).query).items()}
        seen["authorize"] = query
        back = f"{query['redirect_uri']}?{urlencode({'code': 'the-code', 'state': query['state']})}"
        route.fulfill(status=302, headers={"Location": back})

    def token(route):
        if route.request.method == "OPTIONS":
            return route.fulfill(status=204, headers={"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Headers": "*"})
        seen["token"] = {k: v[0] for k, v in parse_qs(route.request.post_data or "").items()}
        route.fulfill(status=200, json={"id_token": id_token, "token_type": "Bearer"}, headers={"Access-Control-Allow-Origin": "*"})

    browser = launch(playwright)
    try:
        context = browser.new_context(service_workers="block", viewport={"width": 390, "height": 844})
        context.route("**/app/config.json", lambda route: route.fulfill(json={
            "mode": "aws", "api": "", "cognito": {"domain": "cognito.test", "client_id": "the-client"}}))
        context.route("https://cognito.test/oauth2/authorize*", authorize)
        context.route("https://cognito.test/oauth2/token", token)
        page = context.new_page()
        page.goto(f"{base}/app/tickets.html")
        page.locator("#main").get_by_role("button", name="Sign in").click()
        page.wait_for_url(re.compile(r"/app/tickets\.html$"))
        expect(page.locator("#main")).to_contain_text("No tickets yet")
        expect(page.locator("header.top")).to_contain_text("Hosted")
    finally:
        browser.close()
    asked, exchanged = seen["authorize"], seen["token"]
    assert (asked["response_type"], asked["client_id"], asked["code_challenge_method"]) == ("code", "the-client", "S256")
    assert asked["redirect_uri"] == exchanged["redirect_uri"] == f"{base}/app/signin.html"
    assert (exchanged["grant_type"], exchanged["code"], exchanged["client_id"]) == ("authorization_code", "the-code", "the-client")
    digest = base64.urlsafe_b64encode(hashlib.sha256(exchanged["code_verifier"].encode()).digest()).rstrip(b"=").decode()
    assert digest == asked["code_challenge"]


def test_my_tickets_show_their_qr_codes_offline(playwright, base, api, stack, make_event):
    event_id, types = make_event({"GA": (1200, 10)})
    fan = api.token([], sub=f"fan-{uuid.uuid4().hex[:6]}", email="fan@example.com", name="Fan")
    order = buy(api, fan, event_id, [(types["GA"], 2)]).json()
    assert pay(stack, order).json()["status"] == "succeeded"
    assert wait_for(lambda: order_of(api, fan, order["order_id"])["status"] == "paid"), "not paid"
    browser = launch(playwright)
    try:
        context = phone(browser)
        context.add_init_script(f"localStorage.setItem('id_token', {fan!r})")
        page = context.new_page()
        page.goto(f"{base}/app/tickets.html")
        expect(page.locator("article.ticket img.qr")).to_have_count(2, timeout=SLOW)
        page.wait_for_function("async () => !!(await navigator.serviceWorker.ready).active")
        page.reload()
        page.wait_for_function("() => !!navigator.serviceWorker.controller")
        expect(page.locator("article.ticket img.qr")).to_have_count(2, timeout=SLOW)
        context.set_offline(True)
        page.reload()
        expect(page.locator("#status")).to_contain_text("Offline: showing the tickets saved on this device")
        expect(page.locator("article.ticket img.qr")).to_have_count(2)
        assert page.locator("article.ticket img.qr").evaluate_all("imgs => imgs.every(i => i.complete && i.naturalWidth > 0)")
        check_page(page, "tickets-offline")
    finally:
        browser.close()


def test_a_voucher_at_checkout_lowers_the_total(playwright, base, api, make_event):
    event_id, types = make_event({"GA": (4000, 10)})
    made = api.post(f"/api/events/{event_id}/vouchers/", token=api.token(["admin"]),
                    json={"code": "HALF", "kind": "percent", "value": 50, "max_uses": 5})
    assert made.status_code == 201, made.text
    browser = launch(playwright)
    try:
        context = phone(browser)
        context.add_init_script(f"localStorage.setItem('id_token', {api.token([], email='v@example.com')!r})")
        page = context.new_page()
        page.goto(f"{base}/app/event.html?id={event_id}")
        page.get_by_label("Quantity of GA").fill("1")
        page.get_by_label("Voucher code (optional)").fill("NOPE")
        page.get_by_role("button", name="Buy").click()
        expect(page.locator("#status")).to_contain_text("voucher", ignore_case=True)
        page.get_by_label("Voucher code (optional)").fill("HALF")
        page.get_by_role("button", name="Buy").click()
        expect(page.locator("#main")).to_contain_text("1 ticket: $20.00 (voucher: $20.00 off)")
    finally:
        browser.close()


def test_the_waiting_room_queues_admits_and_the_checkout_carries_the_admission(playwright, base, api, stack, make_event):
    """An event sold through a waiting room: buying first takes a place in line (the room is
    paused, so the place waits: the page polls only when Retry-After says), the organiser
    resumes admission, the page finds itself admitted and the checkout sends the admission
    token; paid with 4242 4242 4242 4242."""
    admin = api.token(["admin"])
    opens = datetime.now(timezone.utc) - timedelta(seconds=1)
    event_id, types = make_event({"GA": (1800, 20)}, waiting_room={
        "opens_at": opens.strftime("%Y-%m-%dT%H:%M:%SZ"), "admit_per_minute": 600, "paused": True})
    tick = lambda: requests.post(f"{base}/_local/invoke/QueueTickFunction", json={"steps": 1}, timeout=60)  # noqa: E731
    tick()  # opens the room (the draw), admitting nobody while paused
    fan = api.token([], sub=f"wr-{uuid.uuid4().hex[:6]}", email="wr@example.com", name="Queued", email_verified=True)
    browser = launch(playwright)
    try:
        context = phone(browser)
        context.add_init_script(f"localStorage.setItem('id_token', {fan!r})")
        context.clock.install()  # the page's own clock, running as usual until moved on below
        page = context.new_page()
        polls, checkouts = [], []
        page.on("request", lambda r: polls.append(r.url) if "/queue/me/" in r.url else None)
        page.on("request", lambda r: checkouts.append(r.headers) if r.url.endswith("/stripe/checkout/") else None)
        page.goto(f"{base}/app/event.html?id={event_id}")
        expect(page.locator("#room")).to_contain_text("waiting room")
        page.get_by_label("Quantity of GA").fill("1")
        page.get_by_role("button", name="Join the line").click()
        room = page.locator("#room")
        expect(room).to_have_attribute("data-state", "waiting")
        expect(room).to_contain_text("You are number 1 in line")
        polls.clear()  # the page's look for a place kept from before (none: 404) came before the join
        expect(page.get_by_role("button", name="Waiting for your turn…")).to_be_disabled()
        check_page(page, "event-waiting-room")
        assert api.request("PATCH", f"/api/events/{event_id}/", token=admin,
                           json={"waiting_room": {"paused": False}}).status_code == 200
        # Admitted as any poll now sees it: the queue function's containers reuse the room's
        # state for a second (CACHE_SECONDS), so a poll right after the tick may still answer
        # "waiting" from the state read at the join.
        assert wait_for(lambda: tick() and api.get(f"/api/events/{event_id}/queue/me/", token=fan).json()["status"] == "admitted")
        # Paused, the API said to come back in 30 s: the page's one poll after that finds it
        # admitted. The page's clock is moved on the 30 s instead of waiting them out.
        page.clock.fast_forward(30_000)
        expect(room).to_have_attribute("data-state", "admitted", timeout=60_000)
        assert len(polls) == 1, polls
        expect(room).to_contain_text("It's your turn. Buy before")
        check_page(page, "event-admitted")
        page.get_by_role("button", name="Buy").click()
        expect(page.locator(".countdown")).to_have_text(re.compile(r"^1[45]:\d\d$"))
        assert len(checkouts) == 1 and checkouts[0].get("admission-token", "").startswith("AT1."), checkouts
        page.get_by_label("Card number").fill("4242 4242 4242 4242")
        page.get_by_label("Expiry (MM/YY)").fill("12/30")
        page.get_by_label("CVC").fill("123")
        page.get_by_role("button", name="Pay").click()
        expect(page.locator("#order-status")).to_contain_text("Payment received", timeout=SLOW)
        order_id = page.url.rsplit("=", 1)[1]
    finally:
        browser.close()
    assert order_of(api, fan, order_id)["status"] == "paid"
    place = api.get(f"/api/events/{event_id}/queue/me/", token=fan).json()
    assert place["status"] == "spent"


def test_a_room_turned_off_while_in_line_stops_the_polls_and_sells_directly(playwright, base, api, make_event):
    """The organiser turns the waiting room off while a buyer waits in line: the page's next
    poll is refused (409 `no_waiting_room`), it stops polling, shows the event again without
    the room, and Buy goes straight to checkout, without an admission token."""
    admin = api.token(["admin"])
    opens = datetime.now(timezone.utc) - timedelta(seconds=1)
    event_id, types = make_event({"GA": (1800, 20)}, waiting_room={
        "opens_at": opens.strftime("%Y-%m-%dT%H:%M:%SZ"), "admit_per_minute": 600, "paused": True})
    requests.post(f"{base}/_local/invoke/QueueTickFunction", json={"steps": 1}, timeout=60).raise_for_status()
    fan = api.token([], sub=f"wr-{uuid.uuid4().hex[:6]}", email="off@example.com", name="Queued", email_verified=True)
    browser = launch(playwright)
    try:
        context = phone(browser)
        context.add_init_script(f"localStorage.setItem('id_token', {fan!r})")
        context.clock.install()
        page = context.new_page()
        polls, checkouts = [], []
        page.on("response", lambda r: polls.append(r.status) if "/queue/me/" in r.url else None)
        page.on("request", lambda r: checkouts.append(r.headers) if r.url.endswith("/stripe/checkout/") else None)
        page.goto(f"{base}/app/event.html?id={event_id}")
        page.get_by_label("Quantity of GA").fill("1")
        page.get_by_role("button", name="Join the line").click()
        expect(page.locator("#room")).to_have_attribute("data-state", "waiting")
        assert api.request("PATCH", f"/api/events/{event_id}/", token=admin,
                           json={"waiting_room": {"enabled": False}}).status_code == 200

        def next_poll_refused() -> bool:
            """The page's clock moved on by the paused room's Retry-After: its poll is refused
            once the queue function no longer holds the room's setting (kept up to 5 s)."""
            with page.expect_response(lambda r: "/queue/me/" in r.url) as answer:
                page.clock.fast_forward(30_000)
            return answer.value.status == 409

        assert wait_for(next_poll_refused)
        expect(page.locator("#status")).to_contain_text("The waiting room has closed")
        expect(page.locator("#room")).to_have_count(0)
        refused = len(polls)
        assert polls[-1] == 409, polls
        page.clock.fast_forward(120_000)  # a page still following would poll every 5 s
        page.get_by_label("Quantity of GA").fill("1")
        page.get_by_role("button", name="Buy").click()
        expect(page.get_by_role("heading", name=re.compile("^Pay for"))).to_be_visible()
        assert len(polls) == refused, polls
        assert len(checkouts) == 1 and "admission-token" not in checkouts[0], checkouts
    finally:
        browser.close()


def test_a_ticket_is_given_away_and_claimed_and_wallet_buttons_come_and_go(playwright, base, api, stack, make_event):
    event_id, types = make_event({"GA": (1600, 10)})
    admin = api.token(["admin"])
    assert api.request("PATCH", f"/api/events/{event_id}/", token=admin, json={"transfers": {"enabled": True}}).status_code == 200
    giver_email = f"giver-{uuid.uuid4().hex[:6]}@example.com"
    giver = api.token([], sub=f"giver-{uuid.uuid4().hex[:6]}", email=giver_email, name="Giver", email_verified=True)
    friend_email = f"friend-{uuid.uuid4().hex[:6]}@example.com"
    friend = api.token([], sub=f"friend-{uuid.uuid4().hex[:6]}", email=friend_email, name="Friend", email_verified=True)
    order = buy(api, giver, event_id, [(types["GA"], 1)]).json()
    assert pay(stack, order).json()["status"] == "succeeded"
    assert wait_for(lambda: order_of(api, giver, order["order_id"])["status"] == "paid"), "not paid"
    ticket_id = order["tickets"][0]["id"]
    serial = order["tickets"][0]["serial"]
    old_code = api.get(f"/api/tickets/{ticket_id}/qr/data/", token=giver).json()["qr_payload"]
    browser = launch(playwright)
    try:
        context = phone(browser)
        context.add_init_script(f"localStorage.setItem('id_token', {giver!r})")
        context.route("https://pay.google.com/**", lambda route: route.fulfill(body="<title>Google Wallet</title>",
                                                                               content_type="text/html"))
        # The giver's other device keeps the ticket's code from before the gift.
        other_device = phone(browser)
        other_device.add_init_script(f"localStorage.setItem('id_token', {giver!r})")
        kept = other_device.new_page()
        kept.goto(f"{base}/app/tickets.html")
        expect(kept.locator(f'article[data-ticket="{ticket_id}"] img.qr')).to_have_count(1, timeout=SLOW)
        page = context.new_page()
        page.on("dialog", lambda dialog: dialog.accept())
        page.goto(f"{base}/app/tickets.html")
        ticket = page.locator(f'article[data-ticket="{ticket_id}"]')
        expect(ticket.locator("img.qr")).to_have_count(1, timeout=SLOW)
        # The wallet buttons: Apple's pass downloads with the bearer token, Google's opens its save URL.
        with page.expect_download() as download:
            ticket.get_by_role("button", name="Add to Apple Wallet").click()
        assert download.value.suggested_filename == f"ticket-{serial}.pkpass"
        assert Path(download.value.path()).read_bytes()[:2] == b"PK"  # a zip: pass.json, manifest, signature
        with context.expect_page() as google:
            ticket.get_by_role("button", name="Save to Google Wallet").click()
        google.value.wait_for_url(re.compile(r"^https://pay\.google\.com/gp/v/save/"))
        google.value.close()
        # Give it away.
        ticket.get_by_role("button", name=f"Give ticket {serial}").click()
        ticket.get_by_label("Their name").fill("Friend")
        ticket.get_by_label("Their email").fill(friend_email)
        check_page(page, "tickets-give", full_page=True)
        ticket.get_by_role("button", name=f"Give ticket {serial} away").click()
        expect(page.locator("#status")).to_contain_text(f"Ticket {serial} is now Friend's")
        expect(page.locator("article.ticket")).to_have_count(0)

        # The friend signs in with that address: the ticket is theirs, with a new code.
        context2 = phone(browser)
        context2.add_init_script(f"localStorage.setItem('id_token', {friend!r})")
        # A wallet without its certificate answers 503: its buttons go, the other stays.
        context2.route("**/wallet/apple/", lambda route: route.fulfill(
            status=503, json={"error": "Service unavailable", "code": "wallet_unavailable", "detail": "Not configured."}))
        mine = context2.new_page()
        mine.goto(f"{base}/app/tickets.html")
        claimed = mine.locator(f'article[data-ticket="{ticket_id}"]')
        expect(claimed.locator("img.qr")).to_have_count(1, timeout=SLOW)
        claimed.get_by_role("button", name="Add to Apple Wallet").click()
        expect(mine.locator("#status")).to_contain_text("Apple Wallet passes are not available")
        expect(mine.get_by_role("button", name="Add to Apple Wallet")).to_have_count(0)
        expect(claimed.get_by_role("button", name="Save to Google Wallet")).to_be_visible()
        check_page(mine, "tickets-claimed")
        new_code = api.get(f"/api/tickets/{ticket_id}/qr/data/", token=friend).json()["qr_payload"]
        assert new_code.startswith("TKT2:") and new_code != old_code
        assert api.get(f"/api/tickets/{ticket_id}/qr/data/", token=giver).status_code == 404

        # The friend gives it back: the giver's other device shows the newest code, not the one it kept.
        back = api.post(f"/api/tickets/{ticket_id}/transfer/", token=friend, json={"to_email": giver_email, "to_name": "Giver"})
        assert back.status_code == 200, back.text
        kept.reload()
        expect(kept.locator(f'article[data-ticket="{ticket_id}"] img.qr')).to_have_count(1, timeout=SLOW)
        third_code = api.get(f"/api/tickets/{ticket_id}/qr/data/", token=giver).json()["qr_payload"]
        assert third_code not in (old_code, new_code)
        assert shown_code(kept.locator(f'article[data-ticket="{ticket_id}"] img.qr')) == third_code
        # Another account on that device, offline, is not shown the giver's tickets.
        other_device.add_init_script(f"localStorage.setItem('id_token', {friend!r})")
        other_device.set_offline(True)
        kept.reload()
        expect(kept.locator("#main")).to_contain_text("No network")
        expect(kept.locator("article.ticket")).to_have_count(0)
    finally:
        browser.close()


def test_the_waiting_list_of_a_sold_out_type_is_joined_offered_and_bought_or_left(playwright, base, api, stack, make_event):
    event_id, types = make_event({"GA": (2200, 1)})
    admin = api.token(["admin"])
    assert api.request("PATCH", f"/api/events/{event_id}/", token=admin,
                       json={"waiting_list": {"enabled": True, "offer_minutes": 10}}).status_code == 200
    holder = api.token([], sub=f"holder-{uuid.uuid4().hex[:6]}")
    held = buy(api, holder, event_id, [(types["GA"], 1)])
    assert held.status_code == 201, held.text  # the only seat, held: sold out
    fan = api.token([], sub=f"wl-{uuid.uuid4().hex[:6]}", email="wl@example.com", name="Listed")
    other = api.token([], sub=f"wl2-{uuid.uuid4().hex[:6]}", email="wl2@example.com", name="Other")
    browser = launch(playwright)
    try:
        context = phone(browser)
        context.add_init_script(f"localStorage.setItem('id_token', {fan!r})")
        page = context.new_page()
        page.goto(f"{base}/app/event.html?id={event_id}")
        wanted = page.get_by_label("Tickets wanted from the waiting list for GA")
        wanted.fill("1")
        wanted.press("Enter")  # joins the list; it does not submit the purchase form around it
        expect(page.locator("#status")).to_contain_text("You are on the waiting list, number 1")
        expect(page.get_by_role("button", name="Leave the waiting list for GA")).to_be_visible()
        check_page(page, "event-waiting-list")
        # Someone else joins after, then leaves from the event page.
        assert api.post(f"/api/events/{event_id}/ticket-types/{types['GA']}/waitlist/", token=other, json={"qty": 1}).status_code == 201
        second = phone(browser)
        second.add_init_script(f"localStorage.setItem('id_token', {other!r})")
        leaving = second.new_page()
        leaving.goto(f"{base}/app/event.html?id={event_id}")
        expect(leaving.locator("[data-waitlist]")).to_contain_text("You are on the waiting list for 1 (number 2 in line)")
        leaving.get_by_role("button", name="Leave the waiting list for GA").click()
        expect(leaving.locator("#status")).to_contain_text("You have left the waiting list")
        expect(leaving.get_by_role("button", name="Join the waiting list for GA")).to_be_visible()
        assert api.get("/api/me/waitlist/", token=other).json()["entries"] == []

        # The held seat comes back: the offer run offers it to the first in line.
        assert api.post(f"/api/orders/{held.json()['order_id']}/cancel/", token=holder).status_code == 200
        assert requests.post(f"{base}/_local/invoke/ExpireHoldsFunction", json={}, timeout=60).status_code == 200
        assert wait_for(lambda: api.get("/api/me/waitlist/", token=fan).json()["entries"][0]["offer"], timeout=60)
        page.goto(f"{base}/app/account.html")
        entry = page.locator("#waitlist li")
        expect(entry).to_contain_text("1 × GA held for you until")
        check_page(page, "account-waitlist-offer", full_page=True)
        entry.get_by_role("link", name="Buy them").click()
        page.get_by_role("button", name="Buy the 1 offered").click()
        expect(page.locator(".countdown")).to_have_text(re.compile(r"^1[45]:\d\d$"))
        page.get_by_label("Card number").fill("4242 4242 4242 4242")
        page.get_by_label("Expiry (MM/YY)").fill("12/30")
        page.get_by_label("CVC").fill("123")
        page.get_by_role("button", name="Pay").click()
        expect(page.locator("#order-status")).to_contain_text("Payment received", timeout=SLOW)
        order_id = page.url.rsplit("=", 1)[1]
    finally:
        browser.close()
    assert order_of(api, fan, order_id)["status"] == "paid"
    assert api.get("/api/me/waitlist/", token=fan).json()["entries"] == []
