// The result page: the order's state, followed until the payment is settled.
import { $, api, el, failure, header, money, param, requireUser, show, when } from './core.js';

header('');
const main = $('#main');
const orderId = param('id');

async function load() {
  let order;
  try {
    order = await api(`/api/orders/${encodeURIComponent(orderId)}/`);
  } catch (error) {
    show(main, el('h1', {}, 'Your order'), el('p', { class: 'status error' }, failure(error)));
    return;
  }
  const pay = order.payment || {};
  const settled = order.status !== 'pending';
  const headline = {
    paid: 'Payment received: your tickets are ready.',
    pending: pay.error_message ? `The payment failed: ${pay.error_message}` : 'Confirming your payment…',
    expired: 'This order expired before it was paid; the seats were released.',
    canceled: 'This order was canceled.',
    refunded: 'This order was refunded.',
    partially_refunded: 'Part of this order was refunded.',
  }[order.status] || `Order ${order.status}.`;
  show(main, 
    el('h1', {}, 'Your order'),
    el('p', { class: `status ${order.status === 'paid' ? 'ok' : pay.error_message ? 'error' : 'info'}`, role: 'status', id: 'order-status' }, headline),
    el('dl', {},
      el('dt', {}, 'Order'), el('dd', {}, order.id || orderId),
      el('dt', {}, 'Total'), el('dd', {}, money(order.total_cents, order.currency)),
      order.fees_cents ? [el('dt', {}, 'Fees'), el('dd', {}, money(order.fees_cents, order.currency))] : null,
      el('dt', {}, 'Tickets'), el('dd', {}, (order.tickets || []).map((t) => `${t.serial} (${t.ticket_type_name || ''} ${t.status})`).join(', ')),
      order.status === 'pending' && order.expires_at ? [el('dt', {}, 'Seats held until'), el('dd', {}, when(order.expires_at))] : null),
    order.status === 'paid' ? el('p', {}, el('a', { class: 'button', href: 'tickets.html' }, 'Show my tickets')) : null);
  if (!settled && !pay.error_message) setTimeout(load, 1500);
}

if (!orderId) location.replace('tickets.html');
else if (requireUser(main)) load();
