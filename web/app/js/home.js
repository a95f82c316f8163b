import { $, api, el, failure, header, money, show, when } from './core.js';

header('index.html');
const main = $('#main');
if ('serviceWorker' in navigator) navigator.serviceWorker.register('sw.js').catch(() => {});

try {
  const answer = await api('/api/events/', { auth: false });
  const events = Array.isArray(answer) ? answer : answer.events || [];
  show(main, el('h1', {}, 'Events on sale'),
    events.length ? el('ul', { class: 'plain' }, events.map((e) => el('li', { class: 'card' },
      el('h2', {}, el('a', { href: `event.html?id=${encodeURIComponent(e.id)}` }, e.name)),
      el('p', { class: 'muted' }, `${e.venue || ''} · ${when(e.starts_at)}`),
      e.min_price_cents != null ? el('p', {}, `From ${money(e.min_price_cents, e.currency)}`) : null)))
      : el('p', {}, 'Nothing on sale right now.'));
} catch (error) {
  show(main, el('h1', {}, 'Events on sale'), el('p', { class: 'status error' }, failure(error)));
}
