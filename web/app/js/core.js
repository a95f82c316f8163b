// What every page shares: the configuration, the signed-in user, calls to the public API,
// money and time formatting, the page header. No framework; ES modules only.

let configPromise;
/** `config.json`: {"mode": "local"|"aws", "api": base URL ("" = same origin), "stripe_api"?,
 *  "cognito": {"domain", "client_id"}?}. The local gateway makes it; a deploy uploads it. */
export function config() {
  configPromise ??= fetch(new URL('../config.json', import.meta.url))
    .then((r) => (r.ok ? r.json() : { mode: 'local', api: '' }))
    .catch(() => JSON.parse(localStorage.getItem('config') || '{"mode":"local","api":""}'))
    .then((c) => { localStorage.setItem('config', JSON.stringify(c)); return c; });
  return configPromise;
}

// ---------------------------------------------------------------- who is signed in
const TOKEN = 'id_token';

export function claims(token = localStorage.getItem(TOKEN)) {
  if (!token) return null;
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(decodeURIComponent(escape(atob(part))));
  } catch { return null; }
}

export function token() { return localStorage.getItem(TOKEN); }
export function setToken(value) { localStorage.setItem(TOKEN, value); }
export function signOut() { localStorage.removeItem(TOKEN); }

export function user() {
  const c = claims();
  if (!c) return null;
  let groups = c['cognito:groups'] || [];
  if (typeof groups === 'string') groups = groups.replace(/^\[|\]$/g, '').split(/[\s,]+/).filter(Boolean);
  return { sub: c.sub, email: c.email, name: c.name, groups, expired: c.exp * 1000 < Date.now() };
}

export function hasRole(...roles) {
  const u = user();
  return !!u && !u.expired && roles.some((r) => u.groups.includes(r));
}

const b64url = (bytes) => btoa(String.fromCharCode(...bytes)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
export const signInUrl = () => new URL('../signin.html', import.meta.url).href;

/** Send the browser to sign in, then back here. */
export async function signIn() {
  const next = location.pathname + location.search;
  const cfg = await config();
  if (cfg.mode === 'aws' && cfg.cognito) {
    // The hosted UI's authorization code flow with PKCE; signin.html exchanges the code.
    const verifier = b64url(crypto.getRandomValues(new Uint8Array(32)));
    const challenge = b64url(new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier))));
    const state = b64url(crypto.getRandomValues(new Uint8Array(16)));
    sessionStorage.setItem('pkce', JSON.stringify({ verifier, state, next }));
    const url = new URL(`https://${cfg.cognito.domain}/oauth2/authorize`);
    url.search = new URLSearchParams({
      response_type: 'code', client_id: cfg.cognito.client_id, redirect_uri: signInUrl(),
      scope: 'openid email profile', state, code_challenge: challenge, code_challenge_method: 'S256',
    });
    location.assign(url.href);
  } else {
    location.assign(`signin.html?next=${encodeURIComponent(next)}`);
  }
}

// ---------------------------------------------------------------- the API
export class ApiError extends Error {
  constructor(status, body) {
    super((body && (body.detail || body.error || body.message)) || `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
  }
}

/** Call the public API. Throws ApiError for an answer that is not 2xx, TypeError when offline. */
export async function api(path, { method = 'GET', body, auth = true, headers = {}, raw = false, timeout = 0 } = {}) {
  const cfg = await config();
  const h = { ...headers };
  if (body !== undefined) h['Content-Type'] = 'application/json';
  if (auth && token()) h.Authorization = `Bearer ${token()}`;
  if (method === 'POST' && !h['Idempotency-Key']) h['Idempotency-Key'] = crypto.randomUUID();
  const response = await fetch(`${cfg.api || ''}${path}`, {
    method, headers: h, body: body === undefined ? undefined : JSON.stringify(body),
    signal: timeout ? AbortSignal.timeout(timeout) : undefined,
  });
  if (raw && response.ok) return response;
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = { detail: text }; }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

// ---------------------------------------------------------------- formatting
export function money(cents, currency) {
  const code = (currency || 'usd').toUpperCase();
  const digits = new Intl.NumberFormat('en', { style: 'currency', currency: code }).resolvedOptions().maximumFractionDigits;
  return new Intl.NumberFormat(undefined, { style: 'currency', currency: code }).format(cents / 10 ** digits);
}

export function when(iso) {
  if (!iso) return '';
  return new Date(iso).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
}

export function timeOnly(iso) {
  return new Date(iso).toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

// ---------------------------------------------------------------- the DOM
/** el('p', {class: 'x', onclick}, 'text', child...) */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else if (key === 'class') node.className = value;
    else node.setAttribute(key, value === true ? '' : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export const $ = (selector, root = document) => root.querySelector(selector);

/** A status line read out by screen readers. */
export function say(text, kind = 'info', where = $('#status')) {
  if (!where) return;
  where.textContent = text;
  where.className = `status ${kind}`;
  where.hidden = !text;
}

export function failure(error) {
  if (error instanceof ApiError) return error.message;
  if (error instanceof TypeError) return 'No network: check the connection and try again.';
  return String(error && error.message ? error.message : error);
}

/** The header every page shows: where to go and who is signed in. */
export function header(current) {
  const u = user();
  const links = [['index.html', 'Events'], ['tickets.html', 'My tickets']];
  if (u) links.push(['account.html', 'Account']);
  if (u && u.groups.includes('scanner') || u && u.groups.includes('admin')) links.push(['scanner.html', 'Scanner']);
  if (u && u.groups.includes('admin')) links.push(['desk.html', 'Organiser']);
  const nav = el('nav', { 'aria-label': 'Main' },
    el('ul', {}, links.map(([href, label]) => el('li', {},
      el('a', { href, 'aria-current': href === current ? 'page' : null }, label)))));
  const who = u && !u.expired
    ? el('p', { class: 'who' }, `${u.name || u.email || u.sub} `,
      el('button', { type: 'button', class: 'link', onclick: () => { signOut(); location.reload(); } }, 'Sign out'))
    : el('p', { class: 'who' }, el('button', { type: 'button', class: 'link', onclick: signIn }, 'Sign in'));
  const top = $('header.top');
  show(top, el('a', { class: 'brand', href: 'index.html' }, 'Tickets'), nav, who);
}

/** A page that needs a signed-in user (of one of `roles`, when given): false after showing
 *  why, with a sign-in button. */
export function requireUser(main, ...roles) {
  const u = user();
  if (u && !u.expired && (!roles.length || roles.some((r) => u.groups.includes(r)))) return true;
  const why = !u || u.expired ? 'Please sign in to see this page.' : `This page is for ${roles.join(' or ')} staff.`;
  show(main, el('h1', {}, document.title.split(' · ')[0]), el('p', {}, why),
    el('button', { type: 'button', onclick: signIn }, 'Sign in'));
  return false;
}

export function param(name) { return new URLSearchParams(location.search).get(name); }

/** Replace a node's children: arrays flattened, null/false/'' skipped. */
export function show(node, ...children) {
  node.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false && c !== ''));
}
