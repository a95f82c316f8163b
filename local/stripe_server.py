"""Local Stripe stand-in: localstripe, in-process, loopback only, gaps filled.

Run from the repository root::

    python -m local.stripe_server --host 127.0.0.1 --port 8420

Readiness: ``GET /_local/health`` answers 200 ``{"status": "ok"}`` without
any API key.

localstripe (1.15.10) is used as-is from site-packages; everything it lacks
for our flows is filled here by small, named patches applied at import time
(see ``apply_patches``).  Each patch says which gap it fills.
"""

import argparse
import asyncio
import base64
import collections
import errno
import hashlib
import hmac
import json
import logging
import os
import re
import signal
import socket
import sys
import time

import aiohttp
from aiohttp import web

from localstripe import server as ls_server
from localstripe import resources as ls_res
from localstripe import webhooks as ls_webhooks
from localstripe.errors import UserError

from local.lifeline import exit_with_parent

HEALTH_PATH = '/_local/health'
DEFAULT_HOST = '127.0.0.1'
DEFAULT_PORT = 8420

# Fields Stripe.js adds to its requests (telemetry); Stripe ignores them.
_STRIPE_JS_FIELDS = ('guid', 'muid', 'sid', 'time_on_page', 'pasted_fields',
                     'payment_user_agent', 'referrer', 'key')

_PK_PAYMENT_METHODS_RE = re.compile(r'^/v1/payment_methods$')
_PK_CONFIRM_RE = re.compile(r'^/v1/payment_intents/([^/]+)/confirm$')

# (METHOD, canonical route) -> replacement aiohttp handler.  localstripe binds
# its "extra" API functions when it is imported, so replacing the class
# methods is not enough for those routes; route_override_middleware calls the
# replacement instead.
_ROUTE_OVERRIDES = {}


def _stripe_error(status, message, type_='invalid_request_error', **fields):
    body = {'error': dict(fields, type=type_, message=message)}
    return web.json_response(body, status=status)


def _invalid(status, message, **fields):
    """A UserError carrying Stripe-shaped extra fields (code, param, ...)."""
    return UserError(status, message, dict(fields))


def _drop_stripe_js_fields(data):
    for name in _STRIPE_JS_FIELDS:
        data.pop(name, None)
    return data


# --------------------------------------------------------------------------
# Gap: localstripe pickles its whole store to /tmp/localstripe.pickle on
# every write (slow, shared between runs).  We keep the store in memory only.
# --------------------------------------------------------------------------
def patch_in_memory_store():
    ls_res.Store.dump_to_disk = lambda self: None
    ls_res.Store.try_load_from_disk = lambda self: None


# --------------------------------------------------------------------------
# Gap: the stack needs a cheap, unauthenticated readiness URL.
# --------------------------------------------------------------------------
async def health(request):
    return web.json_response({'status': 'ok'})


def patch_health_route():
    ls_server.app.router.add_get(HEALTH_PATH, health)


# --------------------------------------------------------------------------
# Gap: Stripe.js calls POST /v1/payment_methods and
# POST /v1/payment_intents/{id}/confirm with the *publishable* key (in the
# Authorization header or as `key` in the body); localstripe answers 401.
# Allow exactly those two routes with pk_ keys (confirm only with the
# PaymentIntent's own client_secret); everything else keeps localstripe's
# original auth.  Also answers CORS preflights so a browser front end can
# send Authorization / Idempotency-Key headers.
# --------------------------------------------------------------------------
def _header_api_key(request):
    parts = request.headers.get('Authorization', '').split(' ')
    if len(parts) != 2:
        return None
    if parts[0] == 'Bearer':
        return parts[1]
    if parts[0] == 'Basic':
        try:
            return base64.b64decode(parts[1]).decode('utf-8').split(':')[0]
        except Exception:
            return None
    return None


async def _request_api_key(request):
    key = _header_api_key(request)
    if key:
        return key
    if request.method == 'POST':
        data = await ls_server.get_post_data(request, remove_auth=False)
        if isinstance(data, dict) and isinstance(data.get('key'), str):
            return data['key']
    return None


async def _check_client_secret(request, pi_id):
    data = await ls_server.get_post_data(request, remove_auth=False)
    secret = data.get('client_secret') if isinstance(data, dict) else None
    pi = ls_res.store.get('payment_intent:' + pi_id)
    if pi is None:
        raise _invalid(404, "No such payment_intent: '%s'" % pi_id,
                       code='resource_missing', param='intent')
    if not isinstance(secret, str) or not secret:
        raise _invalid(400, 'Missing required param: client_secret.',
                       code='parameter_missing', param='client_secret')
    if secret != pi.client_secret:
        raise _client_secret_mismatch()


async def _check_setup_client_secret(request, si_id):
    data = await ls_server.get_post_data(request, remove_auth=False)
    secret = data.get('client_secret') if isinstance(data, dict) else None
    si = _setup_intent_or_404(si_id)
    if not isinstance(secret, str) or not secret:
        raise _invalid(400, 'Missing required param: client_secret.',
                       code='parameter_missing', param='client_secret')
    if secret != si.client_secret:
        raise _invalid(
            400, 'The client_secret provided does not match the '
            'client_secret associated with the SetupIntent.',
            code='setup_intent_invalid_parameter', param='client_secret')


def _client_secret_mismatch():
    return _invalid(
        400, 'The client_secret provided does not match the client_secret '
        'associated with the PaymentIntent.',
        code='payment_intent_invalid_parameter', param='client_secret')


def make_auth_middleware(original_auth):
    @web.middleware
    async def auth_middleware(request, handler):
        if request.path == HEALTH_PATH:
            return await handler(request)
        if request.method == 'OPTIONS':  # CORS preflight
            return web.Response(status=204)
        key = await _request_api_key(request)
        if (request.method == 'POST' and isinstance(key, str)
                and key.startswith('pk_') and len(key) > 5):
            if _PK_PAYMENT_METHODS_RE.match(request.path):
                return await handler(request)
            m = _PK_CONFIRM_RE.match(request.path)
            if m:
                await _check_client_secret(request, m.group(1))
                return await handler(request)
            m = _PK_SETUP_CONFIRM_RE.match(request.path)
            if m:  # saving a card, as Stripe.js does (issue 17)
                await _check_setup_client_secret(request, m.group(1))
                return await handler(request)
        return await original_auth(request, handler)
    return auth_middleware


async def _cors_allow_more_headers(request, response):
    if request.headers.get('Origin'):
        response.headers['Access-Control-Allow-Headers'] = (
            'Authorization, Content-Type, Accept, Idempotency-Key, '
            'Stripe-Version')


def patch_publishable_key_routes():
    app = ls_server.app
    mws = app.middlewares
    idx = mws.index(ls_server.auth_middleware)
    mws[idx] = make_auth_middleware(ls_server.auth_middleware)
    app.on_response_prepare.append(_cors_allow_more_headers)

    # Stripe.js sends telemetry fields that localstripe rejects as
    # "Unexpected"; drop them on PaymentMethod creation.
    orig_create = ls_res.PaymentMethod._api_create.__func__

    def _pm_api_create(cls, **data):
        return orig_create(cls, **_drop_stripe_js_fields(data))
    ls_res.PaymentMethod._api_create = classmethod(_pm_api_create)


# --------------------------------------------------------------------------
# Gap: `confirm(payment_method=...)` answers 500 "Not implemented", and
# confirm refuses `client_secret` (sent by Stripe.js).  Attach the payment
# method, then confirm, as Stripe does.  A card decline answers 402 with the
# PaymentIntent in the error, and the PI is left in requires_payment_method
# with last_payment_error.
# --------------------------------------------------------------------------
def _unexpected_state(pi, action='confirm'):
    return _invalid(
        400, "You cannot %s this PaymentIntent because it has a status of "
        "%s." % (action, pi.status),
        code='payment_intent_unexpected_state')


def confirm_payment_intent(id=None, payment_method=None, client_secret=None,
                           return_url=None, use_stripe_sdk=None,
                           expected_payment_method_type=None, **kwargs):
    _drop_stripe_js_fields(kwargs)
    if kwargs:
        raise UserError(400, 'Unexpected ' + ', '.join(kwargs.keys()))
    if not (isinstance(id, str) and id.startswith('pi_')):
        raise UserError(400, 'Bad request')

    pi = ls_res.PaymentIntent._api_retrieve(id)
    if client_secret is not None and client_secret != pi.client_secret:
        raise _client_secret_mismatch()

    if payment_method is not None:
        if not (isinstance(payment_method, str) and
                payment_method.startswith(('pm_', 'src_', 'card_'))):
            raise _invalid(400, 'Invalid payment_method.',
                           param='payment_method')
        if pi.status not in ('requires_payment_method',
                             'requires_confirmation'):
            raise _unexpected_state(pi)
        pm = ls_res.PaymentMethod._api_retrieve(payment_method)  # 404
        pi.payment_method = pm.id
        pi._authentication_failed = False
        if pi.latest_charge is not None and \
                pi.latest_charge.status == 'failed':
            pi.latest_charge = None  # a new attempt starts

    if pi.status != 'requires_confirmation':
        raise _unexpected_state(pi)

    _declines_with_intent(
        pi, lambda: pi._confirm(on_failure_now=pi._report_failure))
    return pi


def _declines_with_intent(pi, attempt):
    """Run a charge attempt; a card decline (402) carries the PaymentIntent, as
    Stripe's does."""
    try:
        attempt()
    except UserError as e:
        if e.code == 402:
            e.body['error'].setdefault('decline_code', 'generic_decline')
            e.body['error']['payment_intent'] = pi._export()
        raise


def patch_confirm_payment_method():
    url = '/v1/payment_intents/{id}/confirm'
    _ROUTE_OVERRIDES[('POST', url)] = ls_server.api_extra(
        confirm_payment_intent, url)


# --------------------------------------------------------------------------
# Gap: `automatic_payment_methods[enabled]=true` on PaymentIntent create is
# rejected ("Unexpected").  Accept and record it; record
# payment_method_types too (default ['card']).
# --------------------------------------------------------------------------
def patch_automatic_payment_methods():
    orig_init = ls_res.PaymentIntent.__init__

    def __init__(self, *args, automatic_payment_methods=None, **kwargs):
        apm = None
        if automatic_payment_methods is not None:
            if not isinstance(automatic_payment_methods, dict):
                raise _invalid(400, 'Invalid automatic_payment_methods.',
                               param='automatic_payment_methods')
            enabled = ls_res.try_convert_to_bool(
                automatic_payment_methods.get('enabled'))
            allow = automatic_payment_methods.get('allow_redirects')
            if type(enabled) is not bool or \
                    allow not in (None, 'always', 'never') or \
                    set(automatic_payment_methods) - {'enabled',
                                                      'allow_redirects'}:
                raise _invalid(400, 'Invalid automatic_payment_methods.',
                               param='automatic_payment_methods')
            apm = {'enabled': enabled}
            if allow is not None:
                apm['allow_redirects'] = allow
            if enabled and kwargs.get('payment_method_types'):
                raise _invalid(
                    400, 'You may only specify one of these parameters: '
                    'automatic_payment_methods, payment_method_types.',
                    param='automatic_payment_methods')
        pmt = kwargs.get('payment_method_types')
        orig_init(self, *args, **kwargs)
        self.automatic_payment_methods = apm
        self.payment_method_types = list(pmt) if pmt else ['card']

    ls_res.PaymentIntent.__init__ = __init__


# --------------------------------------------------------------------------
# Gap: localstripe accepts refunds beyond the charge amount.  Refuse them as
# Stripe does; a refund without amount refunds what is left.
# --------------------------------------------------------------------------
_ZERO_DECIMAL = {'bif', 'clp', 'djf', 'gnf', 'jpy', 'kmf', 'krw', 'mga',
                 'pyg', 'rwf', 'ugx', 'vnd', 'vuv', 'xaf', 'xof', 'xpf'}
_SYMBOLS = {'usd': '$', 'eur': '€', 'gbp': '£', 'jpy': '¥', 'aud': 'A$',
            'cad': 'CA$', 'nzd': 'NZ$'}


def _money(amount, currency):
    currency = (currency or '').lower()
    symbol = _SYMBOLS.get(currency, currency.upper() + ' ')
    if currency in _ZERO_DECIMAL:
        return '%s%d' % (symbol, amount)
    return '%s%.2f' % (symbol, amount / 100)


def _refund_target_charge(charge, payment_intent):
    if isinstance(charge, str):
        return ls_res.store.get('charge:' + charge)
    if isinstance(payment_intent, str):
        pi = ls_res.store.get('payment_intent:' + payment_intent)
        if pi is not None:
            return pi.latest_charge
    return None


def patch_refund_limits():
    orig_init = ls_res.Refund.__init__

    def __init__(self, charge=None, payment_intent=None, amount=None,
                 metadata=None, reason=None, **kwargs):
        # Gap: localstripe refuses `reason`; Stripe takes one of three.
        if reason is not None and reason not in ('duplicate', 'fraudulent', 'requested_by_customer'):
            raise _invalid(400, 'Invalid reason: must be one of duplicate, '
                           'fraudulent, or requested_by_customer', param='reason')
        ch = _refund_target_charge(charge, payment_intent)
        if ch is not None and ch.status != 'failed' and not kwargs:
            remaining = ch.amount - ch.amount_refunded
            wanted = ls_res.try_convert_to_int(amount)
            if remaining <= 0:
                raise _invalid(400, 'Charge %s has already been refunded.'
                               % ch.id, code='charge_already_refunded',
                               charge=ch.id)
            if amount is None:
                amount = remaining
            elif type(wanted) is int and wanted > remaining:
                raise _invalid(
                    400, 'Refund amount (%s) is greater than unrefunded '
                    'amount on charge (%s)' % (
                        _money(wanted, ch.currency),
                        _money(remaining, ch.currency)),
                    param='amount')
        orig_init(self, charge=charge, payment_intent=payment_intent,
                  amount=amount, metadata=metadata, **kwargs)
        self.reason = reason

    ls_res.Refund.__init__ = __init__


# --------------------------------------------------------------------------
# Gap: localstripe never emits payment_intent.canceled, charge.refunded or
# refund.created.  Emit them through localstripe's own webhook scheduler
# (resources.schedule_webhook(Event(...)), as it does for
# payment_intent.succeeded) so they carry real Stripe-Signature headers.
# --------------------------------------------------------------------------
def cancel_payment_intent(id=None, cancellation_reason=None, **kwargs):
    _drop_stripe_js_fields(kwargs)
    kwargs.pop('client_secret', None)
    # Gap: localstripe answers a bare 400 for a PaymentIntent that can no longer be
    # canceled; Stripe answers code payment_intent_unexpected_state.
    current = ls_res.PaymentIntent._api_retrieve(id)
    if current.status in ('succeeded', 'canceled', 'processing'):
        raise _unexpected_state(current, 'cancel')
    pi = ls_res.PaymentIntent._api_cancel(id, **kwargs)
    pi.cancellation_reason = cancellation_reason
    pi.canceled_at = int(time.time())
    ls_res.schedule_webhook(ls_res.Event('payment_intent.canceled', pi))
    return pi


def patch_cancel_and_refund_webhooks():
    url = '/v1/payment_intents/{id}/cancel'
    _ROUTE_OVERRIDES[('POST', url)] = ls_server.api_extra(
        cancel_payment_intent, url)

    orig_create = ls_res.Refund._api_create.__func__

    def _refund_api_create(cls, **data):
        refund = orig_create(cls, **data)
        charge = ls_res.Charge._api_retrieve(refund.charge)
        ls_res.schedule_webhook(ls_res.Event('charge.refunded', charge))
        ls_res.schedule_webhook(ls_res.Event('refund.created', refund))
        return refund

    ls_res.Refund._api_create = classmethod(_refund_api_create)


# --------------------------------------------------------------------------
# Gap: localstripe posts each webhook once and forgets it.  Stripe retries a
# delivery that gets no 2xx (for up to three days, backing off), signing each
# attempt afresh; our exactly-once handling relies on those retries (a
# delivery killed mid-way is finished by the next one once its lease ends).
# Here the schedule is compressed to minutes.  POST /_config/webhook-retries
# {"retry_delays": [...]} changes it ([] = deliver once: a lost webhook).
# --------------------------------------------------------------------------
WEBHOOK_RETRY_DELAYS = [2, 5, 15, 30, 60, 120]  # seconds after the previous attempt
_webhook_config = {'retry_delays': list(WEBHOOK_RETRY_DELAYS)}


async def _post_webhook(webhook, event, payload):
    """One signed attempt; True on a 2xx."""
    logger = logging.getLogger('aiohttp.access')
    now = int(time.time())
    signature = hmac.new(webhook.secret.encode('utf-8'), b'%d.%s' % (now, payload), hashlib.sha256).hexdigest()
    headers = {'Content-Type': 'application/json; charset=utf-8', 'Stripe-Signature': 't=%d,v1=%s' % (now, signature)}
    try:
        async with aiohttp.ClientSession() as session:
            async with session.post(webhook.url, data=payload, headers=headers) as response:
                logger.info('webhook "%s" answered %d', event.type, response.status)
                return 200 <= response.status < 300
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        logger.info('webhook "%s" failed: %s', event.type, exc)
        return False


async def _deliver(webhook, event, payload):
    delays = list(_webhook_config['retry_delays'])
    if await _post_webhook(webhook, event, payload):
        return
    for delay in delays:
        await asyncio.sleep(delay)
        if await _post_webhook(webhook, event, payload):
            return
    logging.getLogger('aiohttp.access').info('webhook "%s" %s: gave up', event.type, event.id)


async def _send_webhook_with_retries(event):
    payload = json.dumps(event._export(), indent=2, sort_keys=True).encode('utf-8')
    await asyncio.sleep(1)  # as localstripe: the API answer goes out first
    for webhook in list(ls_webhooks._webhooks.values()):
        if webhook.events is None or event.type in webhook.events:
            asyncio.ensure_future(_deliver(webhook, event, payload))


def _schedule_webhook(event):
    asyncio.ensure_future(_send_webhook_with_retries(event))


async def set_webhook_config(request):
    body = await request.json()
    delays = body.get('retry_delays', WEBHOOK_RETRY_DELAYS)
    if not isinstance(delays, list) or not all(isinstance(d, (int, float)) and d >= 0 for d in delays):
        return web.json_response({'error': 'retry_delays: a list of seconds'}, status=400)
    _webhook_config['retry_delays'] = list(delays)
    return web.json_response(_webhook_config)


def patch_webhook_retries():
    ls_res.schedule_webhook = _schedule_webhook  # resources.py calls it by this name
    ls_webhooks.schedule_webhook = _schedule_webhook
    ls_server.app.router.add_post('/_config/webhook-retries', set_webhook_config)


@web.middleware
async def route_override_middleware(request, handler):
    route = request.match_info.route
    resource = getattr(route, 'resource', None)
    canonical = getattr(resource, 'canonical', None)
    override = _ROUTE_OVERRIDES.get((request.method, canonical))
    return await (override or handler)(request)


# --------------------------------------------------------------------------
# Gap: the Idempotency-Key header is ignored.  Replay: same key (scoped to
# the API key) + same method/path/parameters returns the stored response
# without re-running the operation; the same key with other parameters is
# refused with a 400 idempotency_error.  Successful results and card errors
# (402) are stored, as Stripe does; other errors are not, so a retry runs
# again.  Keys live in memory for 24 h.
# --------------------------------------------------------------------------
_IDEMPOTENCY_TTL = 24 * 3600
_idempotency = collections.OrderedDict()  # (api_key, idem_key) -> entry
_IN_FLIGHT = object()


def _prune_idempotency(now):
    while _idempotency:
        _, entry = next(iter(_idempotency.items()))
        if entry['at'] > now - _IDEMPOTENCY_TTL:
            break
        _idempotency.popitem(last=False)


@web.middleware
async def idempotency_middleware(request, handler):
    idem_key = request.headers.get('Idempotency-Key')
    if request.method != 'POST' or not idem_key:
        return await handler(request)

    api_key = await _request_api_key(request)
    data = await ls_server.get_post_data(request, remove_auth=False)
    params = json.dumps(data if isinstance(data, (dict, list)) and data
                        else {}, sort_keys=True, default=str)
    fingerprint = (request.method, request.path, request.query_string,
                   params)
    scope = (api_key, idem_key)
    now = time.time()
    _prune_idempotency(now)

    entry = _idempotency.get(scope)
    if entry is not None:
        if entry['fingerprint'] != fingerprint:
            return _stripe_error(
                400, 'Keys for idempotent requests can only be used with the '
                'same parameters they were first used with. Try using a key '
                "other than '%s' if you meant to execute a different "
                'request.' % idem_key, type_='idempotency_error')
        if entry['response'] is _IN_FLIGHT:
            return _stripe_error(
                409, 'There is currently another in-progress request using '
                "this Stripe API key and idempotency key '%s'. Please try "
                'again later.' % idem_key, type_='idempotency_error')
        status, body, content_type = entry['response']
        resp = web.Response(status=status, body=body,
                            content_type=content_type)
        resp.headers['Idempotency-Key'] = idem_key
        resp.headers['Idempotent-Replayed'] = 'true'
        return resp

    _idempotency[scope] = {'fingerprint': fingerprint, 'at': now,
                           'response': _IN_FLIGHT}
    stored = False
    try:
        try:
            response = await handler(request)
        except UserError as e:
            response = e.to_response()
        if (200 <= response.status < 300 or response.status == 402) and \
                isinstance(response, web.Response):
            _idempotency[scope]['response'] = (
                response.status, response.body or b'',
                response.content_type)
            stored = True
        response.headers['Idempotency-Key'] = idem_key
        return response
    finally:
        if not stored:
            _idempotency.pop(scope, None)


def patch_idempotency():
    mws = ls_server.app.middlewares
    # After auth (so the scope is an authenticated key), before the handler.
    mws.append(idempotency_middleware)


def patch_route_overrides():
    ls_server.app.middlewares.append(route_override_middleware)


# --------------------------------------------------------------------------
# Fault injection (for tests of Stripe outages): `POST /_config/faults` with JSON
# {"path": "/v1/payment_intents", "method": "POST", "status": 429 | 500 | "drop" | "slow",
#  "count": N, "delay": seconds} makes the next N matching requests fail that way;
# `DELETE /_config/faults` clears them. "drop" closes the connection without an answer;
# "slow" waits `delay` seconds before answering normally.
_faults: list[dict] = []


async def set_fault(request):
    body = await request.json()
    _faults.append(
        {
            "path": str(body.get("path", "/v1/")),
            "method": str(body.get("method", "")).upper(),
            "status": body.get("status", 500),
            "count": int(body.get("count", 1)),
            "delay": float(body.get("delay", 0)),
        }
    )
    return web.json_response({"faults": _faults})


async def clear_faults(request):
    _faults.clear()
    return web.json_response({"faults": _faults})


@web.middleware
async def fault_middleware(request, handler):
    for fault in _faults:
        if fault["count"] > 0 and request.path.startswith(fault["path"]) and fault["method"] in ("", request.method):
            fault["count"] -= 1
            status = fault["status"]
            if status == "drop":
                request.transport.close()
                raise web.HTTPServiceUnavailable()
            if status == "slow":
                await asyncio.sleep(fault["delay"])
                break
            kind = "rate_limit_error" if status == 429 else "api_error"
            return web.json_response(
                {"error": {"type": kind, "message": f"Injected fault ({status})"}}, status=int(status)
            )
    return await handler(request)


def patch_fault_injection():
    ls_server.app.router.add_post("/_config/faults", set_fault)
    ls_server.app.router.add_delete("/_config/faults", clear_faults)
    ls_server.app.middlewares.insert(0, fault_middleware)  # outermost: before auth


# --------------------------------------------------------------------------
# Gap: localstripe has no disputes.  Stripe opens one when a test card
# (4000000000000259) is charged and closes it after evidence; here a test opens,
# moves or closes one directly: `POST /_config/disputes` with JSON
#   {"charge": "ch_...", "status": "needs_response", "id": "dp_..." (optional),
#    "reason": "fraudulent", "amount": 6000, "payment_intent": "pi_...", "webhook": false}
# creates the dispute (or, for a known id, moves it to `status`) and answers it;
# with "webhook": true it also sends charge.dispute.created (new), .closed (won,
# lost, warning_closed) or .updated, as Stripe does.  `GET /v1/disputes/{id}`
# answers the dispute's current state (secret key needed, as at Stripe).
# --------------------------------------------------------------------------
DISPUTE_STATUSES = ('warning_needs_response', 'warning_under_review', 'warning_closed', 'needs_response',
                    'under_review', 'won', 'lost')
_disputes = {}


class _Exported:
    """What localstripe's Event needs of its object: `_export()`."""

    def __init__(self, data):
        self._data = data

    def _export(self, expand=None):
        return dict(self._data)


async def set_dispute(request):
    body = await request.json()
    status = body.get('status', 'needs_response')
    if status not in DISPUTE_STATUSES:
        return _stripe_error(400, 'status: one of ' + ', '.join(DISPUTE_STATUSES), param='status')
    dispute_id = body.get('id') or 'dp_' + base64.b32encode(os.urandom(10)).decode().lower().rstrip('=')
    known = _disputes.get(dispute_id)
    if known is None:
        if not body.get('charge'):
            return _stripe_error(400, 'charge is required to open a dispute', param='charge')
        known = {
            'id': dispute_id, 'object': 'dispute', 'charge': body['charge'],
            'payment_intent': body.get('payment_intent'), 'amount': int(body.get('amount', 0)),
            'currency': body.get('currency', 'usd'), 'reason': body.get('reason', 'fraudulent'),
            'created': int(time.time()), 'livemode': False, 'is_charge_refundable': False, 'metadata': {},
        }
        kind = 'charge.dispute.created'
    else:
        kind = 'charge.dispute.closed' if status in ('won', 'lost', 'warning_closed') else 'charge.dispute.updated'
    known['status'] = status
    _disputes[dispute_id] = known
    if body.get('webhook'):
        ls_res.schedule_webhook(ls_res.Event(kind, _Exported(known)))
    return web.json_response(known)


async def get_dispute(request):
    dispute = _disputes.get(request.match_info['id'])
    if dispute is None:
        return _stripe_error(404, "No such dispute: '%s'" % request.match_info['id'], code='resource_missing', param='id')
    return web.json_response(dispute)


def patch_disputes():
    ls_server.app.router.add_post('/_config/disputes', set_dispute)
    ls_server.app.router.add_get('/v1/disputes/{id}', get_dispute)


# --------------------------------------------------------------------------
# Saved cards (issue 17).  localstripe has Customers, PaymentMethods
# (attach, detach, list by customer) and SetupIntents, but:
# - a SetupIntent's confirm refuses the publishable key, Stripe.js's extra
#   fields and `return_url`; it never attaches the card to the intent's
#   customer and sends no setup_intent.succeeded (Stripe does both); a
#   declined card leaves it `canceled` (Stripe: requires_payment_method with
#   last_setup_error); a card that needs authentication cannot finish it;
# - detaching a card that is not attached succeeds (Stripe: 400), and does not
#   clear the customer's default card;
# - a customer's default card may be any id (Stripe: only one of its cards);
# - a PaymentIntent created with `confirm=true` refuses `return_url` and
#   `setup_future_usage`, accepts a card that belongs to another customer (or
#   was detached), does not ask for `return_url` with automatic payment
#   methods on, answers a decline without the PaymentIntent, and off-session
#   asks for authentication even for a card saved with a SetupIntent.
# Authentication test cards as Stripe documents them: 4000 0027 6000 3184
# needs authentication on every payment, on- or off-session (off-session: a
# 402 `authentication_required`); 4000 0025 0000 3155 needs it on-session
# only once set up with a SetupIntent.
# --------------------------------------------------------------------------
ALWAYS_AUTHENTICATE = frozenset({'4000002760003184'})
_PK_SETUP_CONFIRM_RE = re.compile(r'^/v1/setup_intents/([^/]+)/confirm$')


def _card_error(message, **fields):
    error = UserError(402, message, dict(fields))
    error.body['error']['type'] = 'card_error'
    return error


def _setup_intent_or_404(si_id):
    si = ls_res.store.get('setup_intent:' + str(si_id))
    if si is None:
        raise _invalid(404, "No such setupintent: '%s'" % si_id,
                       code='resource_missing', param='intent')
    return si


def _attach_to_customer(pm, customer):
    """Attach as Stripe does: a card attached elsewhere cannot move."""
    if pm.customer not in (None, customer):
        raise _invalid(
            400, 'The payment method you provided has already been attached '
            'to a customer.', code='payment_method_unexpected_state',
            param='payment_method')
    pm.customer = customer
    pm._was_attached = True


def confirm_setup_intent(id=None, payment_method=None, client_secret=None,
                         return_url=None, use_stripe_sdk=None,
                         mandate_data=None, **kwargs):
    _drop_stripe_js_fields(kwargs)
    if kwargs:
        raise UserError(400, 'Unexpected ' + ', '.join(kwargs.keys()))
    si = _setup_intent_or_404(id)
    if client_secret is not None and client_secret != si.client_secret:
        raise _invalid(
            400, 'The client_secret provided does not match the '
            'client_secret associated with the SetupIntent.',
            code='setup_intent_invalid_parameter', param='client_secret')
    if si.status not in ('requires_payment_method', 'requires_confirmation'):
        raise _invalid(
            400, 'You cannot confirm this SetupIntent because it has a '
            'status of %s.' % si.status,
            code='setup_intent_unexpected_state')
    if payment_method is None and si.payment_method is None:
        raise _invalid(400, 'Missing required param: payment_method.',
                       code='parameter_missing', param='payment_method')
    pm = ls_res.PaymentMethod._api_retrieve(payment_method or
                                            si.payment_method)  # 404
    si.payment_method = pm.id
    si.last_setup_error = None
    if pm._attaching_is_declined():
        si.status = 'requires_payment_method'
        si.last_setup_error = {'code': 'card_declined',
                               'decline_code': 'generic_decline',
                               'message': 'Your card was declined.'}
        raise _card_error('Your card was declined.', code='card_declined',
                          decline_code='generic_decline',
                          setup_intent=si._export())
    if pm._requires_authentication():
        si.status = 'requires_action'
        si.next_action = {'type': 'use_stripe_sdk',
                          'use_stripe_sdk': {
                              'type': 'three_d_secure_redirect',
                              'stripe_js': ''}}
        return si
    _setup_succeeded(si, pm)
    return si


def _setup_succeeded(si, pm):
    if si.customer:
        _attach_to_customer(pm, si.customer)
    pm._set_up = True
    si.status = 'succeeded'
    si.next_action = None
    ls_res.schedule_webhook(ls_res.Event('setup_intent.succeeded', si))


def authenticate_setup_intent(id=None, client_secret=None, success=False,
                              **kwargs):
    """Stand-in for the 3-D Secure page (as localstripe's PaymentIntent
    `_authenticate`): finish or fail a SetupIntent in requires_action."""
    if kwargs:
        raise UserError(400, 'Unexpected ' + ', '.join(kwargs.keys()))
    si = _setup_intent_or_404(id)
    if client_secret != si.client_secret:
        raise UserError(401, 'Unauthorized')
    if si.status != 'requires_action':
        raise _invalid(400, 'This SetupIntent is not awaiting '
                       'authentication.', code='setup_intent_unexpected_state')
    pm = ls_res.PaymentMethod._api_retrieve(si.payment_method)
    if ls_res.try_convert_to_bool(success) is True:
        _setup_succeeded(si, pm)
    else:
        si.status = 'requires_payment_method'
        si.next_action = None
        si.last_setup_error = {
            'code': 'setup_intent_authentication_failure',
            'message': 'The provided PaymentMethod has failed '
                       'authentication.'}
    return si


def detach_payment_method(id=None, **kwargs):
    _drop_stripe_js_fields(kwargs)
    if kwargs:
        raise UserError(400, 'Unexpected ' + ', '.join(kwargs.keys()))
    pm = ls_res.PaymentMethod._api_retrieve(id)
    if pm.customer is None:
        raise _invalid(
            400, 'The payment method you provided is not attached to a '
            'customer so detachment is impossible.',
            code='payment_method_unexpected_state', param='payment_method')
    customer = ls_res.store.get('customer:' + pm.customer)
    if customer is not None and (customer.invoice_settings or {}).get(
            'default_payment_method') == pm.id:
        customer.invoice_settings['default_payment_method'] = None
    pm.customer = None
    return pm


def _customer_update(cls, id, **data):
    settings = data.get('invoice_settings')
    if isinstance(settings, dict) and settings.get('default_payment_method'):
        wanted = settings['default_payment_method']
        pm = ls_res.store.get('payment_method:' + str(wanted))
        if pm is None or pm.customer != id:
            raise _invalid(
                400, "No such PaymentMethod: '%s'; It's possible this "
                'PaymentMethod exists on one of your connected accounts' %
                wanted, code='resource_missing',
                param='invoice_settings[default_payment_method]')
        current = ls_res.Customer._api_retrieve(id)
        data['invoice_settings'] = dict(current.invoice_settings or {},
                                        **settings)
    return _original_customer_update(id, **data)


_original_customer_update = None


def _card_number(pm):
    return getattr(pm, '_card_number', None)


def _pi_create(cls, confirm=None, off_session=None, return_url=None,
               setup_future_usage=None, **data):
    confirm = ls_res.try_convert_to_bool(confirm)
    off_session = ls_res.try_convert_to_bool(off_session)
    if setup_future_usage not in (None, '', 'on_session', 'off_session'):
        raise _invalid(400, 'Invalid setup_future_usage.',
                       param='setup_future_usage')
    if setup_future_usage and not data.get('customer'):
        raise _invalid(400, 'A customer is required to save a payment '
                       'method for future usage.', param='customer')
    customer = data.get('customer')
    pm_id = data.get('payment_method')
    if isinstance(pm_id, str) and pm_id.startswith('pm_') and \
            not pm_id.startswith(('pm_card_',)):
        pm = ls_res.store.get('payment_method:' + pm_id)
        if pm is not None and pm.customer is None and \
                getattr(pm, '_was_attached', False):
            raise _invalid(
                400, 'The provided PaymentMethod was previously used with a '
                'PaymentIntent without Customer attachment, shared with a '
                'connected account without Customer attachment, or was '
                'detached from a Customer. It may not be used again.',
                code='payment_method_unexpected_state',
                param='payment_method')
        if pm is not None and pm.customer is not None and \
                pm.customer != customer:
            raise _invalid(
                400, 'The provided PaymentMethod belongs to a different '
                'Customer (or none was given).',
                code='payment_method_invalid_parameter',
                param='payment_method')
    apm = data.get('automatic_payment_methods')
    if confirm and not off_session and not return_url and \
            isinstance(apm, dict) and \
            ls_res.try_convert_to_bool(apm.get('enabled')) is True and \
            apm.get('allow_redirects') != 'never':
        raise _invalid(
            400, 'This PaymentIntent is configured to accept payment methods '
            'enabled in your Dashboard, some of which may require a full '
            'page redirect to succeed. To confirm it, provide a return_url '
            'or set automatic_payment_methods[allow_redirects] to never.',
            code='payment_intent_invalid_parameter', param='return_url')
    obj = ls_res.StripeObject._api_create.__func__(cls, **data)
    obj.setup_future_usage = setup_future_usage or None
    obj.off_session = bool(off_session) if confirm else None
    if not confirm:
        return obj
    pm = ls_res.PaymentMethod._api_retrieve(obj.payment_method) \
        if obj.payment_method else None
    if pm is None:
        raise _invalid(400, 'You cannot confirm this PaymentIntent because '
                       "it's missing a payment method.",
                       code='payment_intent_unexpected_state')
    if off_session and pm._requires_authentication() and (
            _card_number(pm) in ALWAYS_AUTHENTICATE or
            not getattr(pm, '_set_up', False)):
        # Stripe: off-session, nobody can authenticate; the payment fails.
        obj._authentication_failed = True
        obj.payment_method = None
        ls_res.schedule_webhook(ls_res.Event('payment_intent.payment_failed',
                                             obj))
        raise _card_error('Your card was declined. This transaction '
                          'requires authentication.',
                          code='authentication_required',
                          decline_code='authentication_required',
                          payment_intent=obj._export())
    if off_session and pm._requires_authentication():  # set up before: no challenge
        _declines_with_intent(
            obj, lambda: obj._create_charge(on_failure_now=obj._report_failure))
    else:
        _declines_with_intent(
            obj, lambda: obj._confirm(on_failure_now=obj._report_failure))
    return obj


def patch_saved_cards():
    global _original_customer_update
    for url, func in (
            ('/v1/setup_intents/{id}/confirm', confirm_setup_intent),
            ('/v1/payment_methods/{id}/detach', detach_payment_method)):
        _ROUTE_OVERRIDES[('POST', url)] = ls_server.api_extra(func, url)
    ls_server.app.router.add_post(
        '/v1/setup_intents/{id}/_authenticate',
        ls_server.api_extra(authenticate_setup_intent,
                            '/v1/setup_intents/{id}/_authenticate'))
    _original_customer_update = ls_res.Customer._api_update
    ls_res.Customer._api_update = classmethod(_customer_update)
    ls_res.PaymentIntent._api_create = classmethod(_pi_create)

    # SetupIntents show last_setup_error, as Stripe's do.
    orig_si_init = ls_res.SetupIntent.__init__

    def si_init(self, *args, automatic_payment_methods=None, **kwargs):
        orig_si_init(self, *args, **kwargs)
        self.last_setup_error = None

    ls_res.SetupIntent.__init__ = si_init

    # A successful payment with setup_future_usage saves the card to the
    # PaymentIntent's customer, as Stripe does.
    orig_on_success = ls_res.PaymentIntent._on_success

    def on_success(self):
        if getattr(self, 'setup_future_usage', None) and self.customer and \
                self.payment_method:
            pm = ls_res.store.get('payment_method:' + self.payment_method)
            if pm is not None and pm.customer in (None, self.customer):
                pm.customer = self.customer
                pm._was_attached = True
                pm._set_up = True
        return orig_on_success(self)

    ls_res.PaymentIntent._on_success = on_success

    # Stripe's charges show the card paid with (payment_method_details.card);
    # localstripe's show only the PaymentMethod's id.
    def payment_method_details(self):
        pm = ls_res.store.get('payment_method:' + str(self.payment_method))
        card = getattr(pm, 'card', None) if pm is not None else None
        if not isinstance(card, dict):
            return None
        return {'type': 'card', 'card': {
            name: card.get(name) for name in
            ('brand', 'last4', 'exp_month', 'exp_year', 'country', 'funding',
             'fingerprint')}}

    ls_res.Charge.payment_method_details = property(payment_method_details)

    # A card attached through /attach counts as attached once (so a later
    # detach makes it unusable, as at Stripe).
    orig_attach = ls_res.PaymentMethod._api_attach.__func__

    def attach(cls, id, **kwargs):
        pm = orig_attach(cls, id, **kwargs)
        pm._was_attached = True
        return pm
    _ROUTE_OVERRIDES[('POST', '/v1/payment_methods/{id}/attach')] = \
        ls_server.api_extra(lambda **kw: attach(ls_res.PaymentMethod, **kw),
                            '/v1/payment_methods/{id}/attach')


_patched = False


def apply_patches():
    """Apply every patch once (safe to call repeatedly)."""
    global _patched
    if _patched:
        return ls_server.app
    patch_in_memory_store()
    patch_health_route()
    patch_publishable_key_routes()
    patch_confirm_payment_method()
    patch_automatic_payment_methods()
    patch_refund_limits()
    patch_saved_cards()
    patch_cancel_and_refund_webhooks()
    patch_webhook_retries()
    patch_disputes()
    patch_idempotency()
    patch_route_overrides()  # innermost, so auth/idempotency apply first
    patch_fault_injection()
    _patched = True
    return ls_server.app


apply_patches()
app = ls_server.app


# --------------------------------------------------------------------------
# Serving: bind ONLY the given host (localstripe binds '::'), foreground,
# clean exit on SIGINT/SIGTERM.
# --------------------------------------------------------------------------
class PortInUse(Exception):
    pass


def bind_socket(host, port):
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    family, _, _, _, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise PortInUse() from e
        raise
    return sock


async def serve(sock, host, access_log=True):
    logger = logging.getLogger('aiohttp.access')
    if access_log:
        logger.setLevel(logging.INFO)
        if not logger.handlers:
            logger.addHandler(logging.StreamHandler(sys.stderr))
    runner = web.AppRunner(app, access_log=logger if access_log else None,
                           handle_signals=False)
    await runner.setup()
    try:
        site = web.SockSite(runner, sock)
        await site.start()
        port = sock.getsockname()[1]
        shown = '[%s]' % host if ':' in host else host
        print('stripe stand-in listening on http://%s:%d' % (shown, port),
              flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        exit_with_parent()
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog='python -m local.stripe_server',
        description='Local Stripe stand-in (patched localstripe).')
    parser.add_argument('--host', default=os.environ.get('STRIPE_HOST',
                                                         DEFAULT_HOST))
    parser.add_argument('--port', type=int,
                        default=int(os.environ.get('STRIPE_PORT',
                                                   DEFAULT_PORT)))
    parser.add_argument('--quiet', action='store_true',
                        help='no access log on stderr')
    args = parser.parse_args(argv)

    try:
        sock = bind_socket(args.host, args.port)
    except PortInUse:
        print('stripe stand-in: port %d on %s is already in use (set '
              'STRIPE_PORT to use another)' % (args.port, args.host),
              file=sys.stderr)
        return 2
    except OSError as e:
        print('stripe stand-in: cannot listen on %s:%d: %s'
              % (args.host, args.port, e.strerror or e), file=sys.stderr)
        return 2

    try:
        asyncio.run(serve(sock, args.host, access_log=not args.quiet))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == '__main__':
    sys.exit(main())
