// Buying: the event's ticket types with availability and fees, quantities, checkout (which
// holds the seats until expires_at, shown counting down), then the card. On AWS the card is
// Stripe Elements (Stripe.js from Stripe); on the local stack web/local/card.js, which the
// local gateway serves and a deploy never uploads, pays through the Stripe stand-in.
import { $, api, ApiError, config, el, failure, header, money, param, say, show, signIn, user, when } from './core.js';

header('');
const main = $('#main');
const eventId = param('id');

function countdown(expiresAt, node) {
  const tick = () => {
    const left = Math.max(0, Math.round((new Date(expiresAt) - Date.now()) / 1000));
    node.textContent = `${Math.floor(left / 60)}:${String(left % 60).padStart(2, '0')}`;
    if (left === 0) { clearInterval(timer); say('Your hold has expired: the seats were released. Start again.', 'error'); }
  };
  const timer = setInterval(tick, 1000);
  tick();
  return timer;
}

async function showEvent() {
  let event;
  try {
    event = await api(`/api/events/${encodeURIComponent(eventId)}/`, { auth: false });
  } catch (error) {
    show(main, el('h1', {}, 'Event'), el('p', { class: 'status error' }, failure(error)));
    return;
  }
  document.title = `${event.name} · Tickets`;
  const types = event.ticket_types || [];
  const fees = event.fees;
  const rows = types.map((t) => {
    const max = Math.max(0, Math.min(t.available, t.max_per_order));
    const fee = t.fees_cents ? ` + ${money(t.fees_cents, t.currency)} fees` : '';
    return el('div', { class: 'card' },
      el('h2', {}, t.name),
      el('p', {}, `${money(t.price_cents, t.currency)}${fee}`),
      el('p', { class: 'muted' }, t.on_sale === false ? 'Not on sale now' : max ? `${t.available} available` : 'Sold out'),
      el('label', { for: `qty-${t.id}` }, `Quantity of ${t.name}`),
      el('input', { id: `qty-${t.id}`, type: 'number', inputmode: 'numeric', min: 0, max, value: 0, 'data-type': t.id,
        'data-price': t.price_cents + (t.fees_cents || 0), disabled: !max || t.on_sale === false }));
  });
  const total = el('p', { id: 'total', 'aria-live': 'polite' });
  const voucher = el('div', {}, el('label', { for: 'voucher' }, 'Voucher code (optional)'),
    el('input', { id: 'voucher', autocomplete: 'off', maxlength: 64, autocapitalize: 'characters' }));
  const form = el('form', { id: 'buy' }, rows, total, voucher,
    fees ? el('p', { class: 'muted' }, `Fees: ${fees.percent_bps / 100}% + ${money(fees.fixed_cents, event.currency)} per ${fees.per}`
      + (fees.passed_on === false ? ' (paid by the organiser)' : '') + (fees.refundable ? '' : ', not refundable')) : null,
    el('p', { id: 'status', role: 'status', hidden: true }),
    el('p', {}, el('button', { type: 'submit' }, user() ? 'Buy' : 'Sign in to buy')));
  show(main, el('h1', {}, event.name),
    el('p', { class: 'muted' }, `${event.venue} · ${when(event.starts_at)} – ${when(event.ends_at)}`),
    event.description ? el('p', {}, event.description) : null, form);
  const update = () => {
    const sum = [...form.querySelectorAll('input[data-type]')].reduce((s, i) => s + Number(i.value || 0) * Number(i.dataset.price), 0);
    total.textContent = sum ? `Total ${money(sum, event.currency)}` : '';
  };
  form.addEventListener('input', update);
  form.addEventListener('submit', (e) => { e.preventDefault(); checkout(event, form); });
}

async function checkout(event, form) {
  if (!user() || user().expired) return signIn();
  const items = [...form.querySelectorAll('input[data-type]')]
    .map((i) => ({ ticket_type_id: i.dataset.type, qty: Number(i.value || 0) })).filter((i) => i.qty > 0);
  if (!items.length) return say('Choose how many tickets you want.', 'error');
  form.querySelector('button[type=submit]').disabled = true;
  say('Holding your seats…');
  let order;
  try {
    const voucherCode = form.querySelector('#voucher').value.trim();
    order = await api('/api/tickets/stripe/checkout/', { method: 'POST',
      body: { event_id: event.id, items, ...(voucherCode ? { voucher_code: voucherCode } : {}) } });
  } catch (error) {
    form.querySelector('button[type=submit]').disabled = false;
    if (error instanceof ApiError && error.status === 401) return signIn();
    return say(failure(error), 'error');
  }
  sessionStorage.setItem(`order:${order.order_id}`, JSON.stringify(order));
  if (!order.client_secret || order.status === 'succeeded') return location.assign(`order.html?id=${order.order_id}`);
  showPayment(event, order);
}

export async function showPayment(event, order) {
  const left = el('span', { class: 'countdown' });
  const box = el('div', { id: 'card' });
  show(main, el('h1', {}, `Pay for ${event.name}`),
    el('p', {}, `${order.tickets.length} ticket${order.tickets.length === 1 ? '' : 's'}: `, el('strong', {}, money(order.total_cents, order.currency)),
      order.discount_cents ? ` (voucher: ${money(order.discount_cents, order.currency)} off)` : ''),
    el('p', {}, 'Seats held for ', left, '.'),
    el('p', { id: 'status', role: 'status', hidden: true }), box);
  const timer = countdown(order.expires_at, left);
  const cfg = await config();
  const { publishable_key: publishableKey } = await api('/api/payment/config/', { auth: false });
  const pay = cfg.mode === 'local'
    ? (await import('../local/card.js')).mount(box, { stripeApi: cfg.stripe_api, publishableKey, order })
    : stripeElements(box, publishableKey, order);
  try {
    await pay;
    clearInterval(timer);
    location.assign(`order.html?id=${order.order_id}`);
  } catch (error) {
    say(failure(error), 'error');
  }
}

/** Stripe Elements (AWS): Stripe.js loads from Stripe, never from us. */
async function stripeElements(box, publishableKey, order) {
  await new Promise((resolve, reject) => {
    document.head.append(el('script', { src: 'https://js.stripe.com/v3/', onload: resolve, onerror: reject }));
  });
  const stripe = window.Stripe(publishableKey);
  const elements = stripe.elements();
  const card = elements.create('card');
  const button = el('button', { type: 'submit' }, 'Pay');
  const form = el('form', {}, el('div', { class: 'card', id: 'card-element' }), el('p', {}, button));
  show(box, form);
  card.mount('#card-element');
  return new Promise((resolve) => {
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      button.disabled = true;
      const { error } = await stripe.confirmCardPayment(order.client_secret, { payment_method: { card } });
      button.disabled = false;
      if (error) say(error.message, 'error'); else resolve();
    });
  });
}

if (eventId) showEvent(); else location.replace('index.html');
