// Sign-in. On AWS the Cognito hosted UI sends the browser back here with the ID token in
// the fragment; on the local stack a small form asks the gateway's /_local/token for one.
import { $, config, el, failure, header, setToken, show } from './core.js';

const main = $('#main');
const params = new URLSearchParams(location.search);
const fragment = new URLSearchParams(location.hash.slice(1));

function done(next) {
  const target = next && next.startsWith('/') && !next.startsWith('//') ? next : 'index.html';
  location.replace(target);
}

const cfg = await config();
if (fragment.get('id_token')) {
  setToken(fragment.get('id_token'));
  done(fragment.get('state'));
} else if (cfg.mode !== 'local') {
  header('signin.html');
  show(main, el('h1', {}, 'Sign in'), el('p', {}, 'Use the button at the top of the page to sign in.'));
} else {
  header('signin.html');
  const roles = ['admin', 'scanner'];
  const form = el('form', {},
    el('p', { class: 'muted' }, 'Local stack: the gateway issues a token for whoever you say you are.'),
    el('label', { for: 'email' }, 'Email'),
    el('input', { id: 'email', type: 'email', required: true, autocomplete: 'email', value: localStorage.getItem('local-email') || '' }),
    el('label', { for: 'name' }, 'Name'),
    el('input', { id: 'name', autocomplete: 'name', value: localStorage.getItem('local-name') || '' }),
    el('fieldset', {}, el('legend', {}, 'Roles'),
      roles.map((r) => el('label', { class: 'check' }, el('input', { type: 'checkbox', name: 'role', value: r }), r))),
    el('p', { id: 'status', role: 'status', hidden: true }),
    el('p', {}, el('button', { type: 'submit' }, 'Sign in')));
  show(main, el('h1', {}, 'Sign in'), form);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const email = $('#email').value.trim();
    const name = $('#name').value.trim();
    const groups = [...form.querySelectorAll('input[name=role]:checked')].map((i) => i.value);
    localStorage.setItem('local-email', email);
    localStorage.setItem('local-name', name);
    try {
      const response = await fetch(`${cfg.api || ''}/_local/token`, {
        method: 'POST', body: JSON.stringify({ sub: `local-${email}`, email, name: name || email, groups, ttl_seconds: 8 * 3600 }),
      });
      const body = await response.json();
      if (!response.ok) throw new Error(body.message || `HTTP ${response.status}`);
      setToken(body.token);
      done(params.get('next'));
    } catch (error) {
      const box = $('#status');
      box.hidden = false; box.className = 'status error'; box.textContent = failure(error);
    }
  });
}
