// The organiser's desk (admin): events and ticket types (create, edit), live sales and
// check-in figures, attendees and their CSV export, cancellation and its progress.
import { $, api, el, failure, header, money, param, requireUser, say, show, when } from './core.js';

header('desk.html');
const main = $('#main');
let refresh;

const isoFromLocal = (value) => new Date(value).toISOString().replace(/\.\d{3}Z$/, 'Z');
const localFromIso = (iso) => {
  const d = new Date(iso);
  return new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
};
const field = (id, label, attrs = {}) => [el('label', { for: id }, label), el('input', { id, name: id, ...attrs })];

function eventForm(event) {
  const soon = new Date(Date.now() + 7 * 864e5);
  return el('form', { id: 'event-form' },
    field('ev-name', 'Name', { required: true, maxlength: 200, value: event?.name || '' }),
    field('ev-venue', 'Venue', { required: true, maxlength: 200, value: event?.venue || '' }),
    el('div', { class: 'row' },
      el('div', {}, field('ev-starts', 'Starts', { type: 'datetime-local', required: true, value: localFromIso(event?.starts_at || soon) })),
      el('div', {}, field('ev-ends', 'Ends', { type: 'datetime-local', required: true,
        value: localFromIso(event?.ends_at || new Date(soon.getTime() + 4 * 36e5)) }))),
    event ? null : field('ev-currency', 'Currency (ISO code)', { required: true, value: 'usd', maxlength: 3, pattern: '[A-Za-z]{3}' }),
    el('p', {}, el('button', { type: 'submit' }, event ? 'Save event' : 'Create event')));
}

async function listEvents() {
  clearInterval(refresh);
  show(main, el('h1', {}, "Organiser's desk"), el('p', { id: 'status', role: 'status', hidden: true }),
    el('h2', {}, 'Events'), el('ul', { id: 'events' }, el('li', {}, 'Loading…')),
    el('h2', {}, 'Past events'), el('ul', { id: 'past-events' }, el('li', {}, 'Loading…')),
    el('h2', {}, 'New event'), eventForm(null));
  $('#event-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    try {
      const created = await api('/api/events/', { method: 'POST', body: {
        name: $('#ev-name').value.trim(), venue: $('#ev-venue').value.trim(), starts_at: isoFromLocal($('#ev-starts').value),
        ends_at: isoFromLocal($('#ev-ends').value), currency: $('#ev-currency').value.trim().toLowerCase() } });
      location.assign(`desk.html?event=${created.id}`);
    } catch (error) { say(failure(error), 'error'); }
  });
  try {
    // Every event, over and canceled ones too (the public list has only those to come).
    const events = [];
    let cursor = null;
    do {
      const page = await api(`/api/organiser/events/?limit=100${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
      events.push(...page.events);
      cursor = page.next_cursor;
    } while (cursor);
    const over = (ev) => new Date(ev.ends_at).getTime() <= Date.now();
    const item = (ev) => el('li', {}, el('a', { href: `desk.html?event=${ev.id}` }, ev.name),
      ` · ${when(ev.starts_at)} · ${over(ev) ? 'over' : ev.status.replace('_', ' ')}`);
    const coming = events.filter((ev) => !over(ev)).reverse();  // soonest first
    const past = events.filter(over);  // latest first
    show($('#events'), ...(coming.length ? coming.map(item) : [el('li', {}, 'No events to come.')]));
    show($('#past-events'), ...(past.length ? past.map(item) : [el('li', {}, 'None yet.')]));
  } catch (error) { say(failure(error), 'error'); }
}

async function showEvent(eventId) {
  let event;
  try { event = await api(`/api/events/${eventId}/`); } catch (error) {
    show(main, el('h1', {}, "Organiser's desk"), el('p', { class: 'status error' }, failure(error)));
    return;
  }
  show(main, 
    el('p', {}, el('a', { href: 'desk.html' }, '← All events')),
    el('h1', {}, event.name),
    el('p', { class: 'muted' }, `${event.venue} · ${when(event.starts_at)} · ${event.status} · `,
      el('a', { href: `event.html?id=${event.id}` }, 'public page'), ' · ',
      el('a', { href: `scanner.html?event=${event.id}&gate=Main%20gate&name=${encodeURIComponent(event.name)}` }, 'scan at the door')),
    el('p', { id: 'status', role: 'status', hidden: true }),
    el('h2', {}, 'Sales and check-in'), el('div', { id: 'stats', 'aria-live': 'polite' }, 'Loading…'),
    el('h2', {}, 'Ticket types'), el('div', { id: 'types' }),
    el('h3', {}, 'New ticket type'),
    el('form', { id: 'type-form' },
      field('tt-name', 'Name', { required: true, maxlength: 100 }),
      el('div', { class: 'row' },
        el('div', {}, field('tt-price', 'Price (cents)', { type: 'number', min: 0, required: true, inputmode: 'numeric' })),
        el('div', {}, field('tt-capacity', 'Capacity', { type: 'number', min: 1, required: true, inputmode: 'numeric' })),
        el('div', {}, field('tt-max', 'Most per order', { type: 'number', min: 1, value: 10, inputmode: 'numeric' }))),
      el('p', {}, el('button', { type: 'submit' }, 'Add ticket type'))),
    el('h2', {}, 'Edit the event'), eventForm(event),
    el('h2', {}, 'Attendees'),
    el('p', {}, el('button', { type: 'button', class: 'secondary', id: 'csv' }, 'Export CSV')),
    el('div', { class: 'table-wrap', tabindex: 0, role: 'region', 'aria-label': 'Attendees' }, el('table', { id: 'attendees' })),
    el('h2', {}, 'Cancel the event'),
    el('p', {}, 'Refunds every paid order, voids every ticket and emails the holders.'),
    el('div', { id: 'cancel', 'aria-live': 'polite' }),
    el('p', {}, el('button', { type: 'button', class: 'danger', id: 'cancel-button' }, 'Cancel this event')));

  renderTypes(event);
  $('#type-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    try {
      await api(`/api/events/${eventId}/ticket-types/`, { method: 'POST', body: {
        name: $('#tt-name').value.trim(), price_cents: Number($('#tt-price').value),
        capacity: Number($('#tt-capacity').value), max_per_order: Number($('#tt-max').value || 10) } });
      say('Ticket type added.', 'ok');
      e.target.reset();
      renderTypes(await api(`/api/events/${eventId}/`));
      stats(eventId);
    } catch (error) { say(failure(error), 'error'); }
  });
  $('#event-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    try {
      await api(`/api/events/${eventId}/`, { method: 'PATCH', body: {
        name: $('#ev-name').value.trim(), venue: $('#ev-venue').value.trim(),
        starts_at: isoFromLocal($('#ev-starts').value), ends_at: isoFromLocal($('#ev-ends').value) } });
      say('Event saved.', 'ok');
    } catch (error) { say(failure(error), 'error'); }
  });
  $('#csv').addEventListener('click', () => exportCsv(eventId));
  $('#cancel-button').addEventListener('click', () => cancel(eventId));
  stats(eventId);
  attendees(eventId);
  cancelProgress(eventId);
  refresh = setInterval(() => { stats(eventId); attendees(eventId); }, 10000);
}

function renderTypes(event) {
  const types = event.ticket_types || [];
  show($('#types'), ...(types.length ? types.map((t) => {
    const form = el('form', { class: 'card', 'data-type': t.id },
      el('h3', {}, t.name),
      el('div', { class: 'row' },
        el('div', {}, field(`price-${t.id}`, 'Price (cents)', { type: 'number', min: 0, value: t.price_cents })),
        el('div', {}, field(`cap-${t.id}`, 'Capacity', { type: 'number', min: 0, value: t.capacity }))),
      el('p', {}, el('button', { type: 'submit', class: 'secondary' }, `Save ${t.name}`)));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      try {
        await api(`/api/events/${event.id}/ticket-types/${t.id}/`, { method: 'PATCH', body: {
          price_cents: Number($(`#price-${t.id}`).value), capacity: Number($(`#cap-${t.id}`).value) } });
        say(`${t.name} saved.`, 'ok');
        stats(event.id);
      } catch (error) { say(failure(error), 'error'); }
    });
    return form;
  }) : [el('p', {}, 'No ticket types yet.')]));
}

async function stats(eventId) {
  try {
    const s = await api(`/api/events/${eventId}/stats/`);
    const sum = (k) => s.ticket_types.reduce((n, t) => n + t[k], 0);
    show($('#stats'), 
      el('ul', { class: 'figures' },
        el('li', {}, el('strong', { id: 'fig-sold' }, sum('sold')), 'sold'),
        el('li', {}, el('strong', {}, sum('held')), 'held'),
        el('li', {}, el('strong', {}, sum('available')), 'available'),
        el('li', {}, el('strong', { id: 'fig-checked-in' }, sum('checked_in')), 'checked in'),
        el('li', {}, el('strong', {}, money(s.money.gross_cents, s.money.currency)), 'taken'),
        el('li', {}, el('strong', {}, money(s.money.refunded_cents, s.money.currency)), 'refunded')),
      el('div', { class: 'table-wrap', tabindex: 0, role: 'region', 'aria-label': 'Figures by ticket type' }, el('table', {},
        el('caption', { class: 'muted' }, `By ticket type, at ${when(s.computed_at)}`),
        el('thead', {}, el('tr', {}, ['Type', 'Capacity', 'Sold', 'Held', 'Available', 'Checked in'].map((h) => el('th', { scope: 'col' }, h)))),
        el('tbody', {}, s.ticket_types.map((t) => el('tr', {},
          el('th', { scope: 'row' }, t.name), [t.capacity, t.sold, t.held, t.available, t.checked_in].map((v) => el('td', {}, v))))))));
  } catch (error) { $('#stats').textContent = failure(error); }
}

async function attendees(eventId) {
  try {
    const page = await api(`/api/events/${eventId}/attendees/?limit=100`);
    show($('#attendees'), 
      el('thead', {}, el('tr', {}, ['Serial', 'Holder', 'Type', 'Status', 'Checked in'].map((h) => el('th', { scope: 'col' }, h)))),
      el('tbody', {}, page.attendees.map((a) => el('tr', {},
        el('td', {}, a.serial), el('td', {}, a.holder_name || a.holder_email || ''), el('td', {}, a.ticket_type_name),
        el('td', {}, a.status), el('td', {}, a.checked_in_at ? `${when(a.checked_in_at)} · ${a.gate}` : '')))));
  } catch (error) { show($('#attendees'), el('caption', {}, failure(error))); }
}

async function exportCsv(eventId) {
  try {
    const response = await api(`/api/events/${eventId}/attendees/?format=csv`, { raw: true });
    const url = URL.createObjectURL(await response.blob());
    const link = el('a', { href: url, download: `attendees-${eventId}.csv` });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (error) { say(failure(error), 'error'); }
}

async function cancel(eventId) {
  if (!window.confirm('Cancel this event? Every paid order is refunded and every ticket voided.')) return;
  try {
    await api(`/api/events/${eventId}/cancel/`, { method: 'POST', body: {} });
    cancelProgress(eventId);
  } catch (error) { say(failure(error), 'error'); }
}

async function cancelProgress(eventId) {
  try {
    const p = await api(`/api/events/${eventId}/cancel/`);
    show($('#cancel'), el('p', { class: 'status info' },
      `Cancellation ${p.state}: ${p.done} of ${p.orders_total} orders done (${p.refunded} refunded), ${p.left} left, `
      + `${p.failed} failed.`));
    $('#cancel-button').disabled = true;
    if (p.state !== 'completed') setTimeout(() => cancelProgress(eventId), 3000);
  } catch { /* not canceled: nothing to show */ }
}

if (requireUser(main, 'admin')) {
  const eventId = param('event');
  if (eventId) showEvent(eventId); else listEvents();
}
