// Buying: the event's ticket types with availability and fees, quantities, checkout (which
// holds the seats until expires_at, shown counting down), then the card. On AWS the card is
// Stripe Elements (Stripe.js from Stripe); on the local stack web/local/card.js, which the
// local gateway serves and a deploy never uploads, pays through the Stripe stand-in.
// An event with a waiting room is bought once admitted (js/room.js: the Admission-Token
// header); a sold-out type offers its waiting list, and an open offer is bought here too.
import { $, api, ApiError, config, el, failure, header, money, param, say, show, signIn, timeOnly, user, when } from './core.js';
import { admission, follow, forget, gone, join, mine } from './room.js';

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
  const listed = !!event.waiting_list?.enabled;
  const selling = (t) => new Date(t.sales_start).getTime() <= Date.now() && Date.now() < new Date(t.sales_end).getTime();
  const rows = types.map((t) => {
    const max = Math.max(0, Math.min(t.available, t.max_per_order));
    const soldOut = t.available <= 0 && selling(t);  // on_sale is false for a sold-out type too
    const fee = t.fees_cents ? ` + ${money(t.fees_cents, t.currency)} fees` : '';
    return el('div', { class: 'card', 'data-card': t.id },
      el('h2', {}, t.name),
      el('p', {}, `${money(t.price_cents, t.currency)}${fee}`),
      el('p', { class: 'muted' }, soldOut ? 'Sold out' : t.on_sale === false ? 'Not on sale now' : `${t.available} available`),
      el('label', { for: `qty-${t.id}` }, `Quantity of ${t.name}`),
      el('input', { id: `qty-${t.id}`, type: 'number', inputmode: 'numeric', min: 0, max, value: 0, 'data-type': t.id,
        'data-price': t.price_cents + (t.fees_cents || 0), disabled: !max || t.on_sale === false }),
      listed && soldOut ? el('div', { class: 'waitlist', 'data-waitlist': t.id }) : null);
  });
  const total = el('p', { id: 'total', 'aria-live': 'polite' });
  const voucher = el('div', {}, el('label', { for: 'voucher' }, 'Voucher code (optional)'),
    el('input', { id: 'voucher', autocomplete: 'off', maxlength: 64, autocapitalize: 'characters' }));
  const form = el('form', { id: 'buy' }, rows, total, voucher,
    fees ? el('p', { class: 'muted' }, `Fees: ${fees.percent_bps / 100}% + ${money(fees.fixed_cents, event.currency)} per ${fees.per}`
      + (fees.passed_on === false ? ' (paid by the organiser)' : '') + (fees.refundable ? '' : ', not refundable')) : null,
    roomBox(event),
    el('p', { id: 'status', role: 'status', hidden: true }),
    el('p', {}, el('button', { type: 'submit', id: 'buy-button' }, user() ? 'Buy' : 'Sign in to buy')));
  show(main, el('h1', {}, event.name),
    el('p', { class: 'muted' }, `${event.venue} · ${when(event.starts_at)} – ${when(event.ends_at)}`),
    event.description ? el('p', {}, event.description) : null, form);
  const update = () => {
    const sum = [...form.querySelectorAll('input[data-type]')].reduce((s, i) => s + Number(i.value || 0) * Number(i.dataset.price), 0);
    total.textContent = sum ? `Total ${money(sum, event.currency)}` : '';
  };
  form.addEventListener('input', update);
  form.addEventListener('submit', (e) => { e.preventDefault(); buy(event, form); });
  if (listed) waitlist(event);
  if (event.waiting_room?.enabled) resumeRoom(event);
}

// ---------------------------------------------------------------- the waiting room
let unfollow = () => {};

function roomBox(event) {
  if (!event.waiting_room?.enabled) return null;
  return el('section', { class: 'card room', 'aria-labelledby': 'room-title' },
    el('h2', { id: 'room-title' }, 'Waiting room'),
    el('div', { id: 'room', role: 'status', 'aria-live': 'polite' },
      el('p', {}, `Tickets for this event are sold through a waiting room: buying first takes a place in line `
        + `(it opens ${when(event.waiting_room.opens_at)}).`)));
}

const buyButton = () => $('#buy-button');
const seconds = (n) => (n >= 90 ? `about ${Math.round(n / 60)} minutes` : `about ${Math.max(1, Math.round(n))} seconds`);

function showPlace(event, place) {
  const box = $('#room');
  if (!box) return;
  const { status } = place;
  box.dataset.state = status;
  const lines = {
    waiting: place.position === null
      ? [`You are in the waiting room. Places in line are drawn at random when it opens at ${timeOnly(place.opens_at)}.`]
      : [el('strong', {}, `You are number ${Math.max(1, place.position - place.serving)} in line.`),
        ` Your place: ${place.position}; now serving: ${place.serving}.`,
        place.estimated_wait_seconds !== null ? ` Estimated wait: ${seconds(place.estimated_wait_seconds)}.` : '',
        ' Keep this page open: it moves on by itself.'],
    admitted: [el('strong', {}, "It's your turn."), ` Buy before ${timeOnly(place.admission_expires_at)}.`],
    expired: ['Your turn passed before you bought. Join the line again to buy.'],
    spent: ['You have bought with your turn. Join the line again to buy more.'],
    sold_out: [el('strong', {}, 'Sold out:'), ' no tickets are left.'],
  }[status] || [status];
  show(box, el('p', { class: `status ${status === 'admitted' ? 'ok' : status === 'waiting' ? 'info' : 'warn'}` }, lines));
  const button = buyButton();
  button.disabled = status === 'waiting' || status === 'sold_out';
  button.textContent = status === 'admitted' ? 'Buy' : status === 'waiting' ? 'Waiting for your turn…' : 'Join the line';
  if (status === 'admitted') admissionTimer(event, place.admission_expires_at);
}

let admissionTimeout;
function admissionTimer(event, expiresAt) {
  clearTimeout(admissionTimeout);
  admissionTimeout = setTimeout(() => {
    forget(event.id);
    showPlace(event, { status: 'expired' });
  }, Math.max(0, new Date(expiresAt).getTime() - Date.now()));
}

/** A signed-in buyer back on the page: their place (or admission) is picked up again. */
async function resumeRoom(event) {
  const kept = admission(event.id);
  if (kept) return showPlace(event, { status: 'admitted', admission_expires_at: kept.expires_at });
  if (!user() || user().expired) return null;
  buyButton().textContent = 'Join the line';
  try {
    const place = await mine(event.id);
    if (place && place.place.status !== 'spent') followPlace(event, place);
  } catch { /* nothing kept: joining will tell */ }
  return null;
}

function followPlace(event, answer) {
  unfollow();
  unfollow = follow(event.id, answer, (place) => showPlace(event, place), roomFailed);
}

/** A poll or a join refused: a room turned off or removed while in line shows the event
 *  again, now bought directly; a canceled event shows it no longer on sale. */
async function roomFailed(error) {
  if (!gone(error)) return say(failure(error), 'error');
  unfollow();
  forget(eventId);
  await showEvent();
  return error.body.code === 'no_waiting_room'
    ? say('The waiting room has closed: tickets are now sold directly.', 'info')
    : say(failure(error), 'error');
}

async function joinRoom(event) {
  say('');
  buyButton().disabled = true;
  try {
    followPlace(event, await join(event.id));
  } catch (error) {
    buyButton().disabled = false;
    if (error instanceof ApiError && error.status === 401) return signIn();
    if (gone(error)) return roomFailed(error);
    const why = {
      queue_not_open: `The waiting room opens for joining an hour before sales start (${when(event.waiting_room.opens_at)}).`,
      sold_out: 'Sold out: no tickets are left.',
      email_unverified: 'Verify your email address first: the tickets are sent to it.',
    }[error.body?.code];
    say(why || failure(error), 'error');
  }
  return null;
}

// ---------------------------------------------------------------- the waiting list
async function waitlist(event) {
  const boxes = [...main.querySelectorAll('[data-waitlist]')];
  let entries = [];
  if (user() && !user().expired) {
    try { entries = (await api('/api/me/waitlist/')).entries.filter((e) => e.event_id === event.id); } catch { /* shown as not joined */ }
  }
  const offers = entries.filter((e) => e.state === 'offered' && e.offer);
  for (const entry of offers) {
    const type = (event.ticket_types || []).find((t) => t.id === entry.ticket_type_id);
    const card = main.querySelector(`[data-card="${entry.ticket_type_id}"]`);
    if (!card || main.querySelector(`[data-offer="${entry.id}"]`)) continue;
    card.append(el('div', { class: 'status ok', 'data-offer': entry.id },
      el('p', {}, el('strong', {}, `${entry.offer.qty} × ${type ? type.name : 'ticket'} held for you`),
        ` from the waiting list until ${when(entry.offer.expires_at)}.`),
      el('button', { type: 'button', onclick: () => buy(event, null, entry.offer, entry.ticket_type_id) },
        `Buy the ${entry.offer.qty} offered`)));
  }
  for (const box of boxes) {
    const typeId = box.dataset.waitlist;
    const type = event.ticket_types.find((t) => t.id === typeId);
    const entry = entries.find((e) => e.ticket_type_id === typeId && e.state === 'waiting');
    if (entry) {
      show(box, el('p', { role: 'status' }, `You are on the waiting list for ${entry.qty}`
        + (entry.position ? ` (number ${entry.position} in line)` : '') + '.'),
      el('button', { type: 'button', class: 'secondary', onclick: () => leave(event, typeId) }, `Leave the waiting list for ${type.name}`));
    } else if (offers.some((e) => e.ticket_type_id === typeId)) {
      show(box);
    } else {
      const joinIt = () => joinList(event, typeId, Number(qty.value));
      // Enter here joins the list (inside the buy form it would otherwise submit a purchase).
      const qty = el('input', { id: `wl-${typeId}`, type: 'number', inputmode: 'numeric', min: 1, max: type.max_per_order, value: 1,
        onkeydown: (e) => { if (e.key === 'Enter') { e.preventDefault(); joinIt(); } } });
      show(box, el('label', { for: `wl-${typeId}` }, `Tickets wanted from the waiting list for ${type.name}`), qty,
        el('p', {}, el('button', { type: 'button', class: 'secondary', onclick: joinIt }, `Join the waiting list for ${type.name}`)));
    }
  }
}

async function joinList(event, typeId, qty) {
  if (!user() || user().expired) return signIn();
  try {
    const entry = await api(`/api/events/${event.id}/ticket-types/${typeId}/waitlist/`, { method: 'POST', body: { qty } });
    say(`You are on the waiting list${entry.position ? `, number ${entry.position}` : ''}: we email you when tickets are held for you.`, 'ok');
  } catch (error) { say(failure(error), 'error'); }
  return waitlist(event);
}

async function leave(event, typeId) {
  try {
    await api(`/api/events/${event.id}/ticket-types/${typeId}/waitlist/`, { method: 'DELETE' });
    say('You have left the waiting list.', 'ok');
  } catch (error) { say(failure(error), 'error'); }
  return waitlist(event);
}

// ---------------------------------------------------------------- checkout
async function buy(event, form, offer = null, offerType = null) {
  if (!user() || user().expired) return signIn();
  const items = offer ? [{ ticket_type_id: offerType, qty: offer.qty }]
    : [...form.querySelectorAll('input[data-type]')]
      .map((i) => ({ ticket_type_id: i.dataset.type, qty: Number(i.value || 0) })).filter((i) => i.qty > 0);
  if (!items.length) return say('Choose how many tickets you want.', 'error');
  const pass = event.waiting_room?.enabled ? admission(event.id) : null;
  if (event.waiting_room?.enabled && !pass) return joinRoom(event);
  buyButton().disabled = true;
  say('Holding your seats…');
  let order;
  try {
    const voucherCode = $('#voucher').value.trim();
    order = await api('/api/tickets/stripe/checkout/', { method: 'POST', headers: pass ? { 'Admission-Token': pass.token } : {},
      body: { event_id: event.id, items, ...(voucherCode ? { voucher_code: voucherCode } : {}),
        ...(offer ? { offer_code: offer.offer_code } : {}) } });
  } catch (error) {
    buyButton().disabled = false;
    if (error instanceof ApiError && error.status === 401) return signIn();
    if (error instanceof ApiError && String(error.body?.code || '').startsWith('admission_')) {
      forget(event.id);
      showPlace(event, { status: 'expired' });
    }
    return say(failure(error), 'error');
  }
  if (pass) forget(event.id);
  unfollow();
  clearTimeout(admissionTimeout);
  sessionStorage.setItem(`order:${order.order_id}`, JSON.stringify(order));
  if (!order.client_secret || order.status === 'succeeded') return location.assign(`order.html?id=${order.order_id}`);
  return showPayment(event, order);
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
