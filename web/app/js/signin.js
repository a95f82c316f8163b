// Sign-in. On AWS the Cognito hosted UI sends the browser back here with an authorization code
// (PKCE), exchanged here for the ID token; on the local stack a small form asks /_local/token.
import { $, config, el, failure, header, setToken, show, signInUrl } from './core.js';

const main = $('#main');
const params = new URLSearchParams(location.search);

function done(next) {
  const target = next && next.startsWith('/') && !next.startsWith('//') ? next : 'index.html';
  location.replace(target);
}

const cfg = await config();
if (params.get('code') && cfg.cognito) {
  // Back from the hosted UI: the code for an ID token, with the PKCE verifier kept for it.
  header('signin.html');
  const pkce = JSON.parse(sessionStorage.getItem('pkce') || 'null');
  sessionStorage.removeItem('pkce');
  try {
    if (!pkce || pkce.state !== params.get('state')) throw new Error('This sign-in was not started here: try again.');
    const response = await fetch(`https://${cfg.cognito.domain}/oauth2/token`, {
      method: 'POST',
      body: new URLSearchParams({ grant_type: 'authorization_code', client_id: cfg.cognito.client_id,
        code: params.get('code'), redirect_uri: signInUrl(), code_verifier: pkce.verifier }),
    });
    const body = await response.json();
    if (!response.ok || !body.id_token) throw new Error(body.error_description || body.error || `HTTP ${response.status}`);
    setToken(body.id_token);
    done(pkce.next);
  } catch (error) {
    show(main, el('h1', {}, 'Sign in'), el('p', { class: 'status error' }, failure(error)));
  }
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
