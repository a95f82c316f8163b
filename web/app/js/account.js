// My account: the inbox, waiting lists (an open offer links to the event page, which buys
// it), payment history and saved cards (GET /api/me/...).
import { $, api, el, failure, header, money, requireUser, say, show, when } from './core.js';

header('account.html');
const main = $('#main');

async function inbox() {
  const box = $('#inbox');
  try {
    const page = await api('/api/me/notifications/?limit=20');
    show(box, el('p', {}, `${page.unread} unread `,
      page.unread ? el('button', { type: 'button', class: 'link', onclick: readAll }, 'Mark all as read') : null),
    page.notifications.length ? el('ul', {}, page.notifications.map((n) => el('li', { class: 'card' },
      el('h3', {}, n.read_at ? n.title : `● ${n.title}`), el('p', {}, n.body), el('p', { class: 'muted' }, when(n.created_at)),
      n.read_at ? null : el('button', { type: 'button', class: 'secondary', onclick: () => read(n.id) }, 'Mark as read'))))
      : el('p', {}, 'Nothing yet.'));
  } catch (error) { show(box, el('p', { class: 'status error' }, failure(error))); }
}

async function read(id) {
  try { await api(`/api/me/notifications/${id}/read/`, { method: 'POST' }); inbox(); } catch (error) { say(failure(error), 'error'); }
}

async function readAll() {
  try { await api('/api/me/notifications/read-all/', { method: 'POST' }); inbox(); } catch (error) { say(failure(error), 'error'); }
}

async function payments() {
  const box = $('#payments');
  try {
    const page = await api('/api/me/payments/?limit=20');
    show(box, page.payments.length ? el('ul', {}, page.payments.map((p) => el('li', { class: 'card payment' },
      el('h3', {}, p.event_name || p.event_id),
      el('p', {}, `${money(p.amount_cents, p.currency)} · ${p.status}`, p.card ? ` · ${p.card.brand} ····${p.card.last4}` : ''),
      el('p', { class: 'muted' }, when(p.created_at)),
      p.refunds.map((r) => el('p', {}, `Refund ${money(r.amount_cents, p.currency)} (${r.status}) ${when(r.created_at)}`)))))
      : el('p', {}, 'No payments yet.'));
  } catch (error) { show(box, el('p', { class: 'status error' }, failure(error))); }
}

async function cards() {
  const box = $('#cards');
  try {
    const { payment_methods: saved } = await api('/api/me/payment-methods/');
    show(box, saved.length ? el('ul', {}, saved.map((c) => el('li', { class: 'card' },
      el('p', {}, `${c.brand} ····${c.last4}, expires ${String(c.exp_month).padStart(2, '0')}/${c.exp_year}`, c.is_default ? ' · default' : ''),
      el('p', { class: 'row' },
        c.is_default ? null : el('button', { type: 'button', class: 'secondary', onclick: () => cardAction(c, 'default') }, 'Make default'),
        el('button', { type: 'button', class: 'secondary', onclick: () => cardAction(c, 'remove') }, `Remove ····${c.last4}`)))))
      : el('p', {}, 'No saved cards.'));
  } catch (error) { show(box, el('p', { class: 'status error' }, failure(error))); }
}

async function cardAction(card, what) {
  try {
    if (what === 'default') await api(`/api/me/payment-methods/${card.id}/default/`, { method: 'POST' });
    else await api(`/api/me/payment-methods/${card.id}/`, { method: 'DELETE' });
    cards();
  } catch (error) { say(failure(error), 'error'); }
}

async function waitlists() {
  const box = $('#waitlist');
  try {
    const { entries } = await api('/api/me/waitlist/');
    const open = entries.filter((e) => e.state === 'waiting' || e.state === 'offered');
    const events = Object.fromEntries(await Promise.all([...new Set(open.map((e) => e.event_id))].map(async (id) => {
      try { return [id, await api(`/api/events/${id}/`, { auth: false })]; } catch { return [id, null]; }
    })));
    show(box, open.length ? el('ul', {}, open.map((e) => {
      const event = events[e.event_id];
      const type = event?.ticket_types?.find((t) => t.id === e.ticket_type_id);
      const what = `${e.qty} × ${type ? type.name : e.ticket_type_id}`;
      return el('li', { class: 'card', 'data-entry': e.id },
        el('h3', {}, event ? event.name : e.event_id),
        e.offer
          ? el('p', { class: 'status ok' }, `${e.offer.qty} × ${type ? type.name : 'ticket'} held for you until ${when(e.offer.expires_at)}. `,
            el('a', { href: `event.html?id=${e.event_id}` }, 'Buy them'))
          : el('p', {}, `Waiting for ${what}`, e.position ? `, number ${e.position} in line.` : '.'),
        el('button', { type: 'button', class: 'secondary', onclick: () => leave(e) }, `Leave the waiting list for ${what}`));
    })) : el('p', {}, 'You are on no waiting list.'));
  } catch (error) { show(box, el('p', { class: 'status error' }, failure(error))); }
}

async function leave(entry) {
  try {
    await api(`/api/events/${entry.event_id}/ticket-types/${entry.ticket_type_id}/waitlist/`, { method: 'DELETE' });
    say('You have left the waiting list.', 'ok');
    waitlists();
  } catch (error) { say(failure(error), 'error'); }
}

if (requireUser(main)) {
  show(main, el('h1', {}, 'My account'), el('p', { id: 'status', role: 'status', hidden: true }),
    el('h2', {}, 'Inbox'), el('div', { id: 'inbox', 'aria-live': 'polite' }, 'Loading…'),
    el('h2', {}, 'Waiting lists'), el('div', { id: 'waitlist' }, 'Loading…'),
    el('h2', {}, 'Payments'), el('div', { id: 'payments' }, 'Loading…'),
    el('h2', {}, 'Saved cards'), el('div', { id: 'cards' }, 'Loading…'));
  inbox(); waitlists(); payments(); cards();
}
