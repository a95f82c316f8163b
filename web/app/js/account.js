// My account: the inbox, payment history and saved cards (GET /api/me/...).
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

if (requireUser(main)) {
  show(main, el('h1', {}, 'My account'), el('p', { id: 'status', role: 'status', hidden: true }),
    el('h2', {}, 'Inbox'), el('div', { id: 'inbox', 'aria-live': 'polite' }, 'Loading…'),
    el('h2', {}, 'Payments'), el('div', { id: 'payments' }, 'Loading…'),
    el('h2', {}, 'Saved cards'), el('div', { id: 'cards' }, 'Loading…'));
  inbox(); payments(); cards();
}
