// My tickets: grouped by event, each with its QR code drawn here from qr_payload (the signed
// image URLs last 15 minutes; the payload does not), kept on this device for offline use.
import { $, api, ApiError, el, failure, header, money, requireUser, say, show, when } from './core.js';
import { qrImage } from './qr.js';

header('tickets.html');
const main = $('#main');
const CACHE = 'my-tickets';
if ('serviceWorker' in navigator) navigator.serviceWorker.register('sw.js').catch(() => {});

async function load() {
  const tickets = [];
  let cursor = null;
  do {
    const page = await api(`/api/me/tickets/?limit=100${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
    tickets.push(...page.tickets);
    cursor = page.next_cursor;
  } while (cursor);
  const known = JSON.parse(localStorage.getItem(CACHE) || '{"tickets":[]}');
  const payloads = Object.fromEntries(known.tickets.map((t) => [t.id, t.qr_payload]));
  await Promise.all(tickets.map(async (t) => {
    if (t.status === 'pending' || t.status === 'void') return;
    t.qr_payload = payloads[t.id] || (await api(`/api/tickets/${t.id}/qr/data/`)).qr_payload;
  }));
  const saved = { saved_at: new Date().toISOString(), tickets };
  localStorage.setItem(CACHE, JSON.stringify(saved));
  return saved;
}

function render({ tickets, saved_at: savedAt }, offline) {
  const byEvent = new Map();
  for (const t of tickets) {
    if (!byEvent.has(t.event_id)) byEvent.set(t.event_id, []);
    byEvent.get(t.event_id).push(t);
  }
  show(main, el('h1', {}, 'My tickets'),
    el('p', { id: 'status', role: 'status', class: offline ? 'status warn' : 'status', hidden: !offline },
      offline ? `Offline: showing the tickets saved on this device at ${when(savedAt)}.` : ''),
    tickets.length ? null : el('p', {}, 'No tickets yet. ', el('a', { href: 'index.html' }, 'See what is on sale.')),
    [...byEvent.values()].map((group) => el('section', { class: 'event', 'aria-label': group[0].event_name || group[0].event_id },
      el('h2', {}, group[0].event_name || group[0].event_id),
      group[0].fixture_info ? el('p', { class: 'muted' }, when(group[0].fixture_info.starts_at)) : null,
      group.map((t) => el('article', { class: 'card ticket', 'data-ticket': t.id },
        el('h3', {}, `${t.ticket_type_name} · ${t.serial}`),
        el('p', {}, `Ticket ${t.status}`, t.used_at ? ` (checked in ${when(t.used_at)})` : '',
          ` · order ${t.order_status || ''} · ${money(t.price_cents, t.currency)}`),
        t.qr_payload ? qrImage(t.qr_payload, `QR code of ticket ${t.serial}`) : el('p', { class: 'muted' },
          t.status === 'pending' ? 'The QR code appears once the payment is confirmed.' : 'No QR code: this ticket is void.'),
        offline ? null : el('p', { class: 'row' },
          el('button', { type: 'button', class: 'secondary', onclick: () => resend(t.order_id) }, 'Resend receipt'),
          ['valid'].includes(t.status) && t.order_status === 'paid'
            ? el('button', { type: 'button', class: 'secondary', onclick: () => refund(t.order_id) }, 'Request a refund') : null))))));
}

async function resend(orderId) {
  try {
    await api(`/api/orders/${orderId}/resend-receipt/`, { method: 'POST' });
    say('The receipt is on its way to your email.', 'ok');
  } catch (error) { say(failure(error), 'error'); }
}

async function refund(orderId) {
  if (!window.confirm('Refund this whole order? Its tickets stop working.')) return;
  try {
    const r = await api(`/api/orders/${orderId}/refund/`, { method: 'POST', body: { reason: 'requested_by_customer' } });
    say(`Refund of ${money(r.amount_cents, r.currency || 'usd')} requested (${r.status}).`, 'ok');
    start();
  } catch (error) { say(failure(error), 'error'); }
}

async function start() {
  try {
    render(await load(), false);
  } catch (error) {
    const saved = localStorage.getItem(CACHE);
    if (error instanceof TypeError && saved) render(JSON.parse(saved), true);
    else show(main, el('h1', {}, 'My tickets'), el('p', { class: 'status error' },
      error instanceof ApiError && error.status === 401 ? 'Please sign in again.' : failure(error)));
  }
}

if (requireUser(main)) start();
