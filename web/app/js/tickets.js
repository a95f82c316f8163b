// My tickets: grouped by event, each with its QR code drawn here from qr_payload (the signed
// image URLs last 15 minutes; the payload does not), kept on this device for offline use.
// A valid ticket has wallet buttons (hidden once the API says that wallet is not set up)
// and, where the event allows transfers, "give" (POST .../transfer/); a ticket given to
// this account is claimed by the API when the list is read.
import { $, api, ApiError, claims, el, failure, header, money, requireUser, say, show, when } from './core.js';
import { qrImage } from './qr.js';

header('tickets.html');
const main = $('#main');
// Kept per account (another account signed in on this device never sees them), each code
// with its version (a ticket given away and back has a new code: the old one is void).
const CACHE = `my-tickets:${claims()?.sub || ''}`;
localStorage.removeItem('my-tickets');  // the one list every account on the device shared, before
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
  const code = (t) => `${t.id}:${t.code_version || 0}`;
  const payloads = Object.fromEntries(known.tickets.map((t) => [code(t), t.qr_payload]));
  await Promise.all(tickets.map(async (t) => {
    if (t.status === 'pending' || t.status === 'void') return;
    t.qr_payload = payloads[code(t)] || (await api(`/api/tickets/${t.id}/qr/data/`)).qr_payload;
  }));
  const events = Object.fromEntries(await Promise.all([...new Set(tickets.map((t) => t.event_id))].map(async (id) => {
    try {
      const { transfers, starts_at: startsAt } = await api(`/api/events/${id}/`, { auth: false });
      return [id, { transfers, starts_at: startsAt }];
    } catch { return [id, null]; }
  })));
  const saved = { saved_at: new Date().toISOString(), tickets, events };
  localStorage.setItem(CACHE, JSON.stringify(saved));
  return saved;
}

/** May this ticket be given away now (the event's policy; the API has the last word)? */
function transferable(t, event) {
  if (!event || !event.transfers?.enabled || t.status !== 'valid' || t.order_status !== 'paid') return false;
  return new Date(event.transfers.until || event.starts_at).getTime() > Date.now();
}

function render({ tickets, saved_at: savedAt, events = {} }, offline) {
  const byEvent = new Map();
  for (const t of tickets) {
    if (!byEvent.has(t.event_id)) byEvent.set(t.event_id, []);
    byEvent.get(t.event_id).push(t);
  }
  const hiddenWallets = JSON.parse(sessionStorage.getItem('wallets-off') || '[]');
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
        offline || t.status !== 'valid' ? null : el('p', { class: 'row wallets' },
          hiddenWallets.includes('apple') ? null : el('button', { type: 'button', class: 'secondary', 'data-wallet': 'apple',
            onclick: () => appleWallet(t) }, 'Add to Apple Wallet'),
          hiddenWallets.includes('google') ? null : el('button', { type: 'button', class: 'secondary', 'data-wallet': 'google',
            onclick: () => googleWallet(t) }, 'Save to Google Wallet')),
        offline ? null : el('p', { class: 'row' },
          el('button', { type: 'button', class: 'secondary', onclick: () => resend(t.order_id) }, 'Resend receipt'),
          ['valid'].includes(t.status) && t.order_status === 'paid'
            ? el('button', { type: 'button', class: 'secondary', onclick: () => refund(t.order_id) }, 'Request a refund') : null,
          transferable(t, events[t.event_id])
            ? el('button', { type: 'button', class: 'secondary', 'aria-expanded': 'false', 'aria-controls': `give-${t.id}`,
              onclick: (e) => toggleGive(e.currentTarget, t) }, `Give ticket ${t.serial}`) : null),
        offline ? null : el('form', { id: `give-${t.id}`, class: 'give', hidden: true, onsubmit: (e) => give(e, t) },
          el('label', { for: `to-name-${t.id}` }, 'Their name'),
          el('input', { id: `to-name-${t.id}`, name: 'to_name', required: true, maxlength: 200, autocomplete: 'off' }),
          el('label', { for: `to-email-${t.id}` }, 'Their email'),
          el('input', { id: `to-email-${t.id}`, name: 'to_email', type: 'email', required: true, autocomplete: 'off' }),
          el('p', { class: 'muted' }, 'They get a new code and sign in with this address to see the ticket; yours stops working.'),
          el('p', {}, el('button', { type: 'submit' }, `Give ticket ${t.serial} away`))))))),
    offline ? null : el('p', { class: 'muted' }, 'A ticket someone gives you appears here once you sign in with the address '
      + 'they sent it to.'));
}

function toggleGive(button, t) {
  const form = $(`#give-${t.id}`);
  form.hidden = !form.hidden;
  button.setAttribute('aria-expanded', String(!form.hidden));
  if (!form.hidden) form.querySelector('input').focus();
}

async function give(e, t) {
  e.preventDefault();
  const form = e.currentTarget;
  const body = { to_name: form.elements.to_name.value.trim(), to_email: form.elements.to_email.value.trim() };
  if (!window.confirm(`Give ticket ${t.serial} to ${body.to_name} <${body.to_email}>? You cannot undo this.`)) return;
  form.querySelector('button[type=submit]').disabled = true;
  try {
    const done = await api(`/api/tickets/${t.id}/transfer/`, { method: 'POST', body });
    await start();
    say(`Ticket ${t.serial} is now ${done.holder.name}'s` + (done.email_sent ? ': we have emailed them.' : '; the email to them failed, '
      + 'so tell them to sign in with that address.'), 'ok');
  } catch (error) {
    form.querySelector('button[type=submit]').disabled = false;
    say(failure(error), 'error');
  }
}

/** A wallet the API has no certificate or key for (503 wallet_unavailable): its buttons go. */
function walletOff(kind, error) {
  if (!(error instanceof ApiError && error.status === 503)) return false;
  const off = new Set(JSON.parse(sessionStorage.getItem('wallets-off') || '[]')).add(kind);
  sessionStorage.setItem('wallets-off', JSON.stringify([...off]));
  main.querySelectorAll(`[data-wallet="${kind}"]`).forEach((b) => b.remove());
  say(`${kind === 'apple' ? 'Apple' : 'Google'} Wallet passes are not available yet: show the QR code instead.`, 'warn');
  return true;
}

async function appleWallet(t) {
  try {
    const response = await api(`/api/tickets/${t.id}/wallet/apple/`, { raw: true });
    const url = URL.createObjectURL(await response.blob());
    const link = el('a', { href: url, download: `ticket-${t.serial}.pkpass` });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (error) { if (!walletOff('apple', error)) say(failure(error), 'error'); }
}

async function googleWallet(t) {
  const tab = window.open('', '_blank');  // opened on the tap, before the answer, so it is not blocked
  try {
    const { save_url: saveUrl } = await api(`/api/tickets/${t.id}/wallet/google/`);
    if (tab) { tab.opener = null; tab.location.href = saveUrl; } else location.assign(saveUrl);
  } catch (error) {
    if (tab) tab.close();
    if (!walletOff('google', error)) say(failure(error), 'error');
  }
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
