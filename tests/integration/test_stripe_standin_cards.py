"""The Stripe stand-in's saved-card patches (issue 17), one test per gap filled in
local/stripe_server.py (`patch_saved_cards` and the publishable-key route for SetupIntent
confirmation): each fails against plain localstripe."""

import requests
import stripe

from tests.integration.test_stripe_standin import (  # noqa: F401 - fixtures
    CARD_FORM, PK, _pk_post, _pm, client, standin,
)

ALWAYS_3DS = '4000002760003184'
DECLINE_CHARGE = '4000000000000341'
DECLINE_ATTACH = '4000000000000002'


def _customer(client):
    return client.v1.customers.create(params={'metadata': {'sub': 'test'}})


def _setup(client, customer):
    return client.v1.setup_intents.create(params={
        'customer': customer.id, 'usage': 'on_session',
        'payment_method_types': ['card']})


def _browser_pm(standin, number='4242424242424242'):
    r = _pk_post(standin, '/v1/payment_methods', dict(CARD_FORM, **{'card[number]': number}))
    assert r.status_code == 200, r.text
    return r.json()['id']


def _browser_confirm(standin, si, pm_id, secret=None):
    # As Stripe.js's confirmCardSetup: the publishable key, the client_secret, a
    # return_url and its telemetry fields.
    return _pk_post(standin, '/v1/setup_intents/%s/confirm' % si.id, {
        'payment_method': pm_id, 'client_secret': secret or si.client_secret,
        'return_url': 'http://localhost:5173/cards', 'muid': 'x', 'guid': 'y'})


def _saved(standin, client, number='4242424242424242'):
    customer = _customer(client)
    si = _setup(client, customer)
    pm_id = _browser_pm(standin, number)
    r = _browser_confirm(standin, si, pm_id)
    assert r.status_code == 200 and r.json()['status'] == 'succeeded', r.text
    return customer, pm_id


def _cards(client, customer):
    return [pm.id for pm in client.v1.payment_methods.list(
        params={'customer': customer.id, 'type': 'card'}).data]


def test_setup_intent_confirmed_with_publishable_key_attaches_card_and_emits_event(standin, client):
    customer = _customer(client)
    si = _setup(client, customer)
    pm_id = _browser_pm(standin)
    wrong = _browser_confirm(standin, si, pm_id, secret=si.client_secret + 'x')
    assert wrong.status_code == 400 and wrong.json()['error']['param'] == 'client_secret'
    assert _cards(client, customer) == []

    r = _browser_confirm(standin, si, pm_id)
    assert r.status_code == 200, r.text
    assert r.json()['status'] == 'succeeded'
    assert client.v1.payment_methods.retrieve(pm_id).customer == customer.id
    assert _cards(client, customer) == [pm_id]
    event = standin['receiver'].wait_for('setup_intent.succeeded', si.id)
    assert event['data']['object']['payment_method'] == pm_id
    again = _browser_confirm(standin, si, pm_id)  # a succeeded SetupIntent is final
    assert again.status_code == 400


def test_setup_intent_declined_card_stays_retryable_and_unattached(standin, client):
    customer = _customer(client)
    si = _setup(client, customer)
    r = _browser_confirm(standin, si, _browser_pm(standin, DECLINE_ATTACH))
    assert r.status_code == 402, r.text
    error = r.json()['error']
    assert error['type'] == 'card_error' and error['code'] == 'card_declined'
    assert error['setup_intent']['status'] == 'requires_payment_method'
    assert _cards(client, customer) == []
    ok = _browser_confirm(standin, si, _browser_pm(standin))  # another card: the same intent
    assert ok.status_code == 200 and ok.json()['status'] == 'succeeded', ok.text


def test_setup_intent_needing_authentication_finishes_after_it(standin, client):
    customer = _customer(client)
    si = _setup(client, customer)
    pm_id = _browser_pm(standin, ALWAYS_3DS)
    r = _browser_confirm(standin, si, pm_id)
    assert r.status_code == 200 and r.json()['status'] == 'requires_action', r.text
    assert _cards(client, customer) == []
    done = requests.post(standin['base'] + '/v1/setup_intents/%s/_authenticate' % si.id,
                         data={'client_secret': si.client_secret, 'success': 'true'},
                         headers={'Authorization': 'Bearer sk_test_standin'})
    assert done.status_code == 200 and done.json()['status'] == 'succeeded', done.text
    assert _cards(client, customer) == [pm_id]


def test_detach_and_default_card_as_stripe(standin, client):
    customer, pm_id = _saved(standin, client)
    other, other_pm = _saved(standin, client)
    try:
        client.v1.customers.update(customer.id, params={'invoice_settings': {'default_payment_method': other_pm}})
        raise AssertionError('another customer\'s card became the default')
    except stripe.InvalidRequestError as exc:
        assert exc.param == 'invoice_settings[default_payment_method]'
    updated = client.v1.customers.update(customer.id, params={'invoice_settings': {'default_payment_method': pm_id}})
    assert updated.invoice_settings.default_payment_method == pm_id

    detached = client.v1.payment_methods.detach(pm_id)
    assert detached.customer is None
    assert _cards(client, customer) == []
    assert client.v1.customers.retrieve(customer.id).invoice_settings.default_payment_method is None
    try:
        client.v1.payment_methods.detach(pm_id)
        raise AssertionError('a detached card detached again')
    except stripe.InvalidRequestError as exc:
        assert exc.code == 'payment_method_unexpected_state'


def _confirm_now(client, customer, pm_id, **params):
    return client.v1.payment_intents.create(params=dict({
        'amount': 2500, 'currency': 'usd', 'customer': customer.id, 'payment_method': pm_id,
        'confirm': True, 'automatic_payment_methods': {'enabled': True}}, **params))


def test_server_confirmation_with_a_saved_card(standin, client):
    customer, pm_id = _saved(standin, client)
    try:
        _confirm_now(client, customer, pm_id)
        raise AssertionError('confirmed with automatic payment methods and no return_url')
    except stripe.InvalidRequestError as exc:
        assert exc.param == 'return_url'
    pi = _confirm_now(client, customer, pm_id, return_url='http://localhost:5173/done')
    assert pi.status == 'succeeded'
    standin['receiver'].wait_for('payment_intent.succeeded', pi.id)
    off = _confirm_now(client, customer, pm_id, off_session=True)
    assert off.status == 'succeeded'


def test_server_confirmation_refuses_another_customers_or_a_detached_card(standin, client):
    customer, pm_id = _saved(standin, client)
    other, other_pm = _saved(standin, client)
    for card in (other_pm,):
        try:
            _confirm_now(client, customer, card, return_url='http://x/')
            raise AssertionError('charged another customer\'s card')
        except stripe.InvalidRequestError as exc:
            assert exc.param == 'payment_method'
    client.v1.payment_methods.detach(pm_id)
    try:
        _confirm_now(client, customer, pm_id, return_url='http://x/')
        raise AssertionError('charged a detached card')
    except stripe.InvalidRequestError as exc:
        assert exc.code == 'payment_method_unexpected_state'


def test_authentication_card_requires_action_on_session_and_fails_off_session(standin, client):
    customer = _customer(client)
    si = _setup(client, customer)
    pm_id = _browser_pm(standin, ALWAYS_3DS)
    assert _browser_confirm(standin, si, pm_id).json()['status'] == 'requires_action'
    requests.post(standin['base'] + '/v1/setup_intents/%s/_authenticate' % si.id,
                  data={'client_secret': si.client_secret, 'success': 'true'},
                  headers={'Authorization': 'Bearer sk_test_standin'}).raise_for_status()
    for _ in range(2):  # every on-session payment, not only the first
        pi = _confirm_now(client, customer, pm_id, return_url='http://x/')
        assert pi.status == 'requires_action' and pi.client_secret
    try:
        _confirm_now(client, customer, pm_id, off_session=True)
        raise AssertionError('an off-session payment with 3184 succeeded')
    except stripe.CardError as exc:
        assert exc.code == 'authentication_required'
        assert exc.error.payment_intent.status == 'requires_payment_method'


def test_declined_saved_card_answers_the_payment_intent(standin, client):
    customer = _customer(client)
    si = _setup(client, customer)
    pm_id = _browser_pm(standin, DECLINE_CHARGE)  # attaches fine, declines charges
    assert _browser_confirm(standin, si, pm_id).json()['status'] == 'succeeded'
    try:
        _confirm_now(client, customer, pm_id, return_url='http://x/')
        raise AssertionError('a declining card was charged')
    except stripe.CardError as exc:
        pi = exc.error.payment_intent
        assert pi.status == 'requires_payment_method' and pi.last_payment_error.message


def test_setup_future_usage_saves_the_card_on_success(standin, client):
    customer = _customer(client)
    pm_id = _pm(client, '4242424242424242').id
    pi = client.v1.payment_intents.create(params={
        'amount': 1200, 'currency': 'usd', 'customer': customer.id, 'payment_method': pm_id,
        'confirm': True, 'setup_future_usage': 'on_session', 'return_url': 'http://x/',
        'automatic_payment_methods': {'enabled': True}})
    assert pi.status == 'succeeded'
    assert _cards(client, customer) == [pm_id]


def test_a_card_set_up_with_authentication_pays_off_session_without_it(standin, client):
    customer = _customer(client)
    si = _setup(client, customer)
    pm_id = _browser_pm(standin, '4000002500003155')
    assert _browser_confirm(standin, si, pm_id).json()['status'] == 'requires_action'
    requests.post(standin['base'] + '/v1/setup_intents/%s/_authenticate' % si.id,
                  data={'client_secret': si.client_secret, 'success': 'true'},
                  headers={'Authorization': 'Bearer sk_test_standin'}).raise_for_status()
    assert _confirm_now(client, customer, pm_id, off_session=True).status == 'succeeded'
    assert _confirm_now(client, customer, pm_id, return_url='http://x/').status == 'requires_action'
