"""Integration tests for the local Stripe stand-in (local/stripe_server.py).

Each test exercises one gap that local/stripe_server.py fills on top of
localstripe; each would fail against plain localstripe.
"""

import collections
import errno
import http.server
import json
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests
import stripe

REPO_ROOT = Path(__file__).resolve().parents[2]
PICKLE = Path('/tmp/localstripe.pickle')
SK = 'sk_test_standin'
PK = 'pk_test_standin'
WEBHOOK_SECRET = 'whsec_standin_test'
HOST = '127.0.0.1'


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------
# Webhook receiver
# --------------------------------------------------------------------------
class _Receiver:
    def __init__(self):
        self.events = []  # (raw body bytes, Stripe-Signature header)
        self.attempts = collections.Counter()  # object id -> deliveries
        self.fail = collections.Counter()  # object id -> deliveries to answer 500
        self.cond = threading.Condition()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers['Content-Length']))
                object_id = json.loads(body)['data']['object']['id']
                with receiver.cond:
                    receiver.attempts[object_id] += 1
                    failing = receiver.fail[object_id] > 0
                    if failing:
                        receiver.fail[object_id] -= 1
                    else:
                        receiver.events.append(
                            (body, self.headers.get('Stripe-Signature')))
                    receiver.cond.notify_all()
                self.send_response(500 if failing else 200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer((HOST, 0), Handler)
        self.url = 'http://%s:%d/webhook' % (HOST, self.server.server_port)
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       daemon=True)
        self.thread.start()

    def wait_for(self, event_type, object_id, timeout=10):
        """Return the verified event of that type for that object."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for body, sig in self.events:
                    event = stripe.Webhook.construct_event(
                        body, sig, WEBHOOK_SECRET)  # raises if bad signature
                    if event['type'] == event_type and \
                            event['data']['object']['id'] == object_id:
                        return event
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = [json.loads(b)['type'] for b, _ in self.events]
                    pytest.fail('no %s webhook for %s within %ss (got %s)'
                                % (event_type, object_id, timeout, seen))
                self.cond.wait(remaining)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


# --------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------
@pytest.fixture(scope='module')
def standin():
    try:
        PICKLE.unlink()
    except FileNotFoundError:
        pass
    except OSError:
        pass  # not ours to delete; the pickle test will say so

    port = _free_port()
    base = 'http://%s:%d' % (HOST, port)
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(
        [sys.executable, '-m', 'local.stripe_server',
         '--host', HOST, '--port', str(port)],
        cwd=str(REPO_ROOT), stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True)

    def output():
        log.seek(0)
        return log.read().decode('utf-8', 'replace')

    receiver = None
    try:
        deadline = time.monotonic() + 15
        while True:
            if proc.poll() is not None:
                pytest.fail('stand-in exited early (%s):\n%s'
                            % (proc.returncode, output()))
            try:
                r = requests.get(base + '/_local/health', timeout=1)
                if r.status_code == 200 and r.json() == {'status': 'ok'}:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                pytest.fail('stand-in not ready within 15 s:\n' + output())
            time.sleep(0.1)

        receiver = _Receiver()
        r = requests.post(base + '/_config/webhooks/tests',
                          data={'url': receiver.url,
                                'secret': WEBHOOK_SECRET})
        assert r.status_code == 200, r.text

        yield {'base': base, 'port': port, 'proc': proc,
               'receiver': receiver, 'output': output}
    finally:
        if receiver is not None:
            receiver.close()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        log.close()


@pytest.fixture(scope='module')
def client(standin):
    return stripe.StripeClient(SK, base_addresses={'api': standin['base']},
                               max_network_retries=0)


def _pm(client, number):
    return client.v1.payment_methods.create(params={
        'type': 'card',
        'card': {'number': number, 'exp_month': 12, 'exp_year': 2030,
                 'cvc': '123'}})


def _pi(client, amount=1500, **params):
    return client.v1.payment_intents.create(
        params=dict({'amount': amount, 'currency': 'eur'}, **params))


def _pk_post(standin, path, data, auth_header=False):
    url = standin['base'] + path
    if auth_header:
        return requests.post(url, data=data,
                             headers={'Authorization': 'Bearer ' + PK})
    return requests.post(url, data=dict(data, key=PK))  # as Stripe.js does


CARD_FORM = {'type': 'card', 'card[number]': '4242424242424242',
             'card[exp_month]': '12', 'card[exp_year]': '2030',
             'card[cvc]': '123'}


def _charge_id(pi):
    # localstripe returns latest_charge expanded; Stripe returns the id.
    charge = pi.latest_charge
    return charge if isinstance(charge, str) else charge.id


def _succeeded_pi(client, amount):
    # create+confirm in one call: plain localstripe supports this already,
    # so the refund/webhook tests depend only on their own gap.
    pm = _pm(client, '4242424242424242')
    pi = _pi(client, amount, payment_method=pm.id, confirm=True)
    assert pi.status == 'succeeded'
    return pi


# --------------------------------------------------------------------------
# 1. publishable key on POST /v1/payment_methods; refused elsewhere
# --------------------------------------------------------------------------
def test_publishable_key_creates_payment_method_only(standin, client):
    for auth_header in (False, True):
        r = _pk_post(standin, '/v1/payment_methods', CARD_FORM, auth_header)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body['id'].startswith('pm_')
        assert body['card']['last4'] == '4242'

    pi = _pi(client)
    for method, path in (('POST', '/v1/payment_intents'),
                         ('GET', '/v1/payment_intents/' + pi.id),
                         ('POST', '/v1/refunds'),
                         ('GET', '/v1/balance'),
                         ('POST', '/v1/payment_intents/%s/cancel' % pi.id)):
        r = requests.request(method, standin['base'] + path,
                             data={'amount': '100', 'currency': 'eur'}
                             if method == 'POST' else None,
                             headers={'Authorization': 'Bearer ' + PK})
        assert r.status_code == 401, (method, path, r.text)
    r = _pk_post(standin, '/v1/payment_intents',
                 {'amount': '100', 'currency': 'eur'})
    assert r.status_code == 401
    assert client.v1.payment_intents.retrieve(pi.id).status == \
        'requires_payment_method'


# --------------------------------------------------------------------------
# 2. confirm with publishable key + client_secret
# --------------------------------------------------------------------------
def test_publishable_key_confirm_needs_matching_client_secret(standin,
                                                              client):
    pi = _pi(client)
    pm = _pm(client, '4242424242424242')
    path = '/v1/payment_intents/%s/confirm' % pi.id

    r = _pk_post(standin, path, {'payment_method': pm.id,
                                 'client_secret': pi.id + '_secret_wrong'})
    assert r.status_code == 400, r.text
    assert r.json()['error']['type'] == 'invalid_request_error'
    assert r.json()['error']['param'] == 'client_secret'

    r = _pk_post(standin, path, {'payment_method': pm.id})
    assert r.status_code == 400, r.text

    other = _pi(client)
    r = _pk_post(standin, path, {'payment_method': pm.id,
                                 'client_secret': other.client_secret})
    assert r.status_code == 400, r.text
    assert client.v1.payment_intents.retrieve(pi.id).status == \
        'requires_payment_method'

    r = _pk_post(standin, path, {'payment_method': pm.id,
                                 'client_secret': pi.client_secret},
                 auth_header=True)
    assert r.status_code == 200, r.text
    assert r.json()['status'] == 'succeeded'
    assert client.v1.payment_intents.retrieve(pi.id).status == 'succeeded'


# --------------------------------------------------------------------------
# 3. confirm(payment_method=...) with the secret key
# --------------------------------------------------------------------------
def test_confirm_with_payment_method(client):
    pi = _pi(client)
    pm = _pm(client, '4242424242424242')
    pi = client.v1.payment_intents.confirm(
        pi.id, params={'payment_method': pm.id})
    assert pi.status == 'succeeded'
    assert pi.payment_method == pm.id
    assert pi.latest_charge

    declined = _pi(client)
    bad_pm = _pm(client, '4000000000000341')
    with pytest.raises(stripe.CardError) as exc:
        client.v1.payment_intents.confirm(
            declined.id, params={'payment_method': bad_pm.id})
    assert exc.value.code == 'card_declined'
    declined = client.v1.payment_intents.retrieve(declined.id)
    assert declined.status == 'requires_payment_method'
    assert declined.last_payment_error.code == 'card_declined'

    # A new payment method can then be supplied, as on Stripe.
    declined = client.v1.payment_intents.confirm(
        declined.id, params={'payment_method': pm.id})
    assert declined.status == 'succeeded'

    three_ds = _pi(client)
    three_ds = client.v1.payment_intents.confirm(
        three_ds.id,
        params={'payment_method': _pm(client, '4000002500003155').id})
    assert three_ds.status == 'requires_action'


# --------------------------------------------------------------------------
# 4. automatic_payment_methods accepted
# --------------------------------------------------------------------------
def test_automatic_payment_methods_accepted(client):
    pi = _pi(client, automatic_payment_methods={'enabled': True})
    assert pi.status == 'requires_payment_method'
    assert pi.automatic_payment_methods.enabled is True
    assert pi.payment_method_types == ['card']
    pi = client.v1.payment_intents.confirm(
        pi.id, params={'payment_method': _pm(client, '4242424242424242').id})
    assert pi.status == 'succeeded'


# --------------------------------------------------------------------------
# 5. Idempotency-Key replay
# --------------------------------------------------------------------------
def test_idempotency_key_replay(standin, client):
    key = 'idem-' + uuid.uuid4().hex
    marker = uuid.uuid4().hex
    params = {'amount': 4321, 'currency': 'eur',
              'metadata': {'marker': marker}}
    first = client.v1.payment_intents.create(
        params=params, options={'idempotency_key': key})
    second = client.v1.payment_intents.create(
        params=params, options={'idempotency_key': key})
    assert first.id == second.id
    assert second.last_response.headers.get('Idempotent-Replayed') == 'true'

    listed = client.v1.payment_intents.list(params={'limit': 100})
    mine = [p for p in listed.auto_paging_iter()
            if p.to_dict().get('metadata', {}).get('marker') == marker]
    assert len(mine) == 1

    with pytest.raises(stripe.IdempotencyError):
        client.v1.payment_intents.create(
            params=dict(params, amount=9999),
            options={'idempotency_key': key})
    r = requests.post(standin['base'] + '/v1/payment_intents',
                      data={'amount': '9999', 'currency': 'eur'},
                      headers={'Authorization': 'Bearer ' + SK,
                               'Idempotency-Key': key})
    assert r.status_code == 400
    assert r.json()['error']['type'] == 'idempotency_error'

    # Scoped to the API key: another key may reuse the idempotency key.
    other = stripe.StripeClient('sk_test_other', max_network_retries=0,
                                base_addresses={'api': standin['base']})
    third = other.v1.payment_intents.create(
        params=params, options={'idempotency_key': key})
    assert third.id != first.id


# --------------------------------------------------------------------------
# 6. Over-refunds refused
# --------------------------------------------------------------------------
def test_over_refund_refused(client):
    pi = _succeeded_pi(client, 1000)
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.refunds.create(params={'payment_intent': pi.id,
                                         'amount': 1001})
    assert exc.value.http_status == 400
    assert 'greater than unrefunded amount' in exc.value.user_message

    client.v1.refunds.create(params={'payment_intent': pi.id, 'amount': 600})
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.refunds.create(params={'payment_intent': pi.id,
                                         'amount': 401})
    client.v1.refunds.create(params={'charge': _charge_id(pi),
                                     'amount': 400})
    charge = client.v1.charges.retrieve(_charge_id(pi))
    assert charge.amount_refunded == 1000 and charge.refunded

    for params in ({'payment_intent': pi.id, 'amount': 1},
                   {'payment_intent': pi.id},
                   {'charge': _charge_id(pi)}):
        with pytest.raises(stripe.InvalidRequestError) as exc:
            client.v1.refunds.create(params=params)
        assert exc.value.code == 'charge_already_refunded'

    # A refund without amount refunds only what is left.
    pi2 = _succeeded_pi(client, 700)
    client.v1.refunds.create(params={'payment_intent': pi2.id,
                                     'amount': 200})
    rest = client.v1.refunds.create(params={'payment_intent': pi2.id})
    assert rest.amount == 500


# --------------------------------------------------------------------------
# 7. payment_intent.canceled, charge.refunded, refund.created webhooks
# --------------------------------------------------------------------------
def test_cancel_and_refund_webhooks(standin, client):
    receiver = standin['receiver']
    to_cancel = _pi(client)
    canceled = client.v1.payment_intents.cancel(to_cancel.id)
    assert canceled.status == 'canceled'

    paid = _succeeded_pi(client, 2500)
    refund = client.v1.refunds.create(params={'payment_intent': paid.id,
                                              'amount': 1000})

    event = receiver.wait_for('payment_intent.canceled', to_cancel.id)
    assert event['data']['object']['status'] == 'canceled'
    event = receiver.wait_for('charge.refunded', _charge_id(paid))
    assert event['data']['object']['amount_refunded'] == 1000
    event = receiver.wait_for('refund.created', refund.id)
    assert event['data']['object']['amount'] == 1000

    # Signatures are real: a wrong secret is rejected.
    body, sig = receiver.events[0]
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(body, sig, 'whsec_wrong')


def test_a_failed_webhook_is_retried_and_signed_afresh_until_delivered(standin, client):
    receiver = standin['receiver']
    retries = standin['base'] + '/_config/webhook-retries'
    assert requests.post(retries, json={'retry_delays': [0.2, 0.2, 0.2]}).status_code == 200
    try:
        retried = _pi(client)
        receiver.fail[retried.id] = 2
        client.v1.payment_intents.cancel(retried.id)
        event = receiver.wait_for('payment_intent.canceled', retried.id)  # verifies the signature
        assert event['data']['object']['id'] == retried.id
        assert receiver.attempts[retried.id] == 3

        assert requests.post(retries, json={'retry_delays': []}).status_code == 200
        given_up = lambda: standin['output']().count('"payment_intent.canceled" evt_')  # noqa: E731
        before = given_up()
        lost = _pi(client)
        receiver.fail[lost.id] = 1
        client.v1.payment_intents.cancel(lost.id)
        # the delivery (after 1 s) fails, and the stand-in gives up on it at once
        deadline = time.monotonic() + 15
        while given_up() == before and time.monotonic() < deadline:
            time.sleep(0.1)
        assert given_up() == before + 1, standin['output']()[-2000:]
        assert receiver.attempts[lost.id] == 1
        assert requests.post(retries, json={'retry_delays': 'soon'}).status_code == 400
    finally:
        requests.post(retries, json={})  # back to the default schedule


# --------------------------------------------------------------------------
# 8. In-memory only, loopback only
# --------------------------------------------------------------------------
def _other_addresses():
    try:
        out = subprocess.run(['hostname', '-I'], capture_output=True,
                             text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [a for a in out.split()
            if not a.startswith('127.') and a != '::1'
            and not a.startswith('fe80')]


def test_no_pickle_and_loopback_only(standin, client):
    _succeeded_pi(client, 900)  # several writes
    assert not PICKLE.exists(), '%s was written' % PICKLE

    with socket.create_connection((HOST, standin['port']), timeout=2):
        pass
    others = _other_addresses()
    if not others:
        pytest.skip('no non-loopback interface to probe')
    for addr in others:
        family = socket.AF_INET6 if ':' in addr else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.settimeout(2)
            err = s.connect_ex((addr, standin['port']))
        assert err in (errno.ECONNREFUSED, errno.ETIMEDOUT,
                       errno.EHOSTUNREACH, errno.ENETUNREACH,
                       errno.EADDRNOTAVAIL, errno.EAGAIN), (addr, err)
        assert err != 0, 'stand-in reachable on %s' % addr


def test_port_in_use_exits_2(standin):
    r = subprocess.run(
        [sys.executable, '-m', 'local.stripe_server',
         '--host', HOST, '--port', str(standin['port'])],
        cwd=str(REPO_ROOT), capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert 'already in use' in r.stderr
    assert 'Traceback' not in r.stderr


# --------------------------------------------------------------------------
# 9. refunds take Stripe's reasons (localstripe refused the parameter)
# --------------------------------------------------------------------------
def test_refund_reason_accepted_and_checked(client):
    pi = _succeeded_pi(client, 1000)
    refund = client.v1.refunds.create(
        params={'payment_intent': pi.id, 'amount': 400, 'reason': 'requested_by_customer'})
    assert refund.reason == 'requested_by_customer'
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.refunds.create(params={'payment_intent': pi.id, 'amount': 100, 'reason': 'event_canceled'})


# --------------------------------------------------------------------------
# 10. canceling a PaymentIntent that succeeded answers Stripe's error code
# --------------------------------------------------------------------------
def test_cancel_after_success_answers_unexpected_state(client):
    pi = _succeeded_pi(client, 1000)
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.payment_intents.cancel(pi.id)
    assert caught.value.code == 'payment_intent_unexpected_state'
    assert client.v1.payment_intents.retrieve(pi.id).status == 'succeeded'


# --------------------------------------------------------------------------
# disputes: opened and closed by a test, read back with GET /v1/disputes/{id},
# events sent as Stripe sends them
# --------------------------------------------------------------------------
def test_a_dispute_is_opened_read_and_closed(standin, client):
    receiver = standin['receiver']
    paid = _succeeded_pi(client, 6000)
    charge = _charge_id(paid)
    opened = requests.post(standin['base'] + '/_config/disputes', json={
        'charge': charge, 'payment_intent': paid.id, 'amount': 6000, 'status': 'needs_response', 'webhook': True})
    assert opened.status_code == 200, opened.text
    dispute_id = opened.json()['id']
    assert dispute_id.startswith('dp_')
    read = client.v1.disputes.retrieve(dispute_id)
    assert (read.status, read.charge, read.amount) == ('needs_response', charge, 6000)
    assert receiver.wait_for('charge.dispute.created', dispute_id)['data']['object']['status'] == 'needs_response'

    closed = requests.post(standin['base'] + '/_config/disputes', json={'id': dispute_id, 'status': 'won', 'webhook': True})
    assert closed.json()['status'] == 'won'
    assert client.v1.disputes.retrieve(dispute_id).status == 'won'
    assert receiver.wait_for('charge.dispute.closed', dispute_id)['data']['object']['status'] == 'won'

    # Quiet (no event) unless asked; unknown ids and statuses are refused as Stripe would.
    quiet = requests.post(standin['base'] + '/_config/disputes', json={'charge': charge, 'status': 'under_review'})
    assert quiet.json()['status'] == 'under_review'
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.disputes.retrieve('dp_missing')
    assert missing.value.http_status == 404
    assert requests.post(standin['base'] + '/_config/disputes', json={'charge': charge, 'status': 'open'}).status_code == 400
    assert requests.get(standin['base'] + '/v1/disputes/' + dispute_id).status_code == 401  # the secret key is needed
