// The gate scanner: camera -> QR decoder -> verdict, online through the API, offline with
// the keys document and a queue in IndexedDB uploaded in batches when the network returns.
import { $, api, ApiError, el, failure, header, requireUser, show, signIn, timeOnly, user } from './core.js';
import * as db from './gatedb.js';
import { newScans } from './frames.js';
import { verifyOffline } from './verify.js';

const BATCH = 200; // the API takes at most 200 scans an upload
const GONE_MS = 700; // a code unseen this long has left the frame: it may count again
const SETUP = 'scanner-setup';
const main = $('#main');
header('scanner.html');

const state = {
  setup: JSON.parse(localStorage.getItem(SETUP) || 'null'),
  scans: newScans(GONE_MS), stream: null, uploading: false, needsSignIn: false,
  // Reachability as the last call to the API found it (navigator.onLine says nothing of a
  // venue's Wi-Fi that has lost its uplink).
  online: navigator.onLine,
};
const ONLINE_WAIT_MS = 2500; // a scan answered offline rather than keep a queue at the door waiting

/** What a call to the API just showed: reachable or not. */
function reachable(yes) {
  if (state.online !== yes) {
    state.online = yes;
    networkChanged();
  }
}
const isNetworkFailure = (error) => !(error instanceof ApiError) || error.status >= 500;

if ('serviceWorker' in navigator) navigator.serviceWorker.register('sw.js').catch(() => {});

function counters() {
  const key = `scanner-counts:${state.setup && state.setup.event_id}`;
  return {
    read: () => JSON.parse(localStorage.getItem(key) || '{"admitted":0,"refused":0}'),
    bump(name) { const c = this.read(); c[name] += 1; localStorage.setItem(key, JSON.stringify(c)); },
  };
}

// ---------------------------------------------------------------- set-up
async function showSetup() {
  const form = el('form', { id: 'setup' },
    el('label', { for: 'event' }, 'Event'),
    el('select', { id: 'event', required: true }, el('option', { value: '' }, 'Loading events…')),
    el('label', { for: 'gate' }, 'Gate'),
    el('input', { id: 'gate', required: true, maxlength: 64, value: localStorage.getItem('scanner-gate') || 'Main gate', autocomplete: 'off' }),
    el('p', {}, el('button', { type: 'submit' }, 'Start scanning')));
  show(main, el('h1', {}, 'Gate scanner'), el('p', { id: 'status', role: 'status', hidden: true }), form);
  try {
    const answer = await api('/api/events/', { auth: false });
    const events = Array.isArray(answer) ? answer : answer.events || [];
    show($('#event'), el('option', { value: '' }, 'Choose the event'),
      ...events.map((e) => el('option', { value: e.id }, e.name)));
  } catch (error) {
    show($('#event'), el('option', { value: '' }, 'No events: ' + failure(error)));
  }
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const select = $('#event');
    begin({ event_id: select.value, event_name: select.selectedOptions[0].textContent, gate: $('#gate').value.trim() });
  });
}

function begin(setup) {
  state.setup = setup;
  localStorage.setItem(SETUP, JSON.stringify(setup));
  localStorage.setItem('scanner-gate', setup.gate);
  showScanner();
}

// ---------------------------------------------------------------- the keys document
async function refreshKeys() {
  const eventId = state.setup.event_id;
  let doc = null;
  let cursor = null;
  do {
    const query = new URLSearchParams({ event_id: eventId });
    if (cursor) query.set('cursor', cursor);
    let page;
    try {
      page = await api(`/api/scanner/keys/?${query}`, { timeout: 10000 });
    } catch (error) {
      if (isNetworkFailure(error)) reachable(false);
      throw error;
    }
    reachable(true);
    if (doc) doc.voided.push(...page.voided); else doc = page;
    cursor = page.next_cursor;
  } while (cursor);
  const kept = { ...doc, event_id: eventId, fetched_at: new Date().toISOString() };
  await db.put('keys', kept);
  return kept;
}

// ---------------------------------------------------------------- the scanning view
async function showScanner() {
  const { event_name: eventName, gate } = state.setup;
  show(main, 
    el('h1', {}, 'Gate scanner'),
    el('p', { class: 'muted', id: 'where' }, `${eventName} · ${gate} `,
      el('button', { type: 'button', class: 'link', onclick: stopAndSetup }, 'Change')),
    el('p', { id: 'status', role: 'status', hidden: true }),
    el('ul', { class: 'figures', 'aria-label': 'Counters' },
      el('li', {}, el('strong', { id: 'n-admitted' }, '0'), 'admitted'),
      el('li', {}, el('strong', { id: 'n-refused' }, '0'), 'refused'),
      el('li', {}, el('strong', { id: 'n-waiting' }, '0'), 'waiting to upload')),
    el('p', { id: 'network', class: 'muted', 'aria-live': 'polite' }),
    el('p', { id: 'keys', class: 'muted' }),
    el('div', { class: 'viewfinder' }, el('video', { id: 'video', muted: true, playsinline: true, 'aria-label': 'Camera view' })),
    el('p', {}, el('button', { type: 'button', id: 'camera', onclick: startCamera }, 'Start camera')),
    el('form', { id: 'manual', class: 'row' },
      el('div', {}, el('label', { for: 'code' }, 'Or type the code'), el('input', { id: 'code', autocomplete: 'off' })),
      el('div', { style: 'flex:0 0 auto' }, el('button', { type: 'submit', class: 'secondary' }, 'Check'))),
    el('h2', {}, 'Conflicts from uploads'),
    el('ul', { id: 'conflicts', class: 'conflicts' }),
  );
  $('#manual').addEventListener('submit', (event) => {
    event.preventDefault();
    const code = $('#code').value.trim();
    if (code) handle(code);
    $('#code').value = '';
  });
  await render();
  if (state.needsSignIn) askSignIn();
  networkChanged();
  showKeys(await db.get('keys', state.setup.event_id));
  refreshKeys().then(showKeys).catch((error) => { if (!isNetworkFailure(error)) report(error); });
}

function showKeys(doc) {
  if (doc && doc.event_name && state.setup.event_name !== doc.event_name) {
    state.setup.event_name = doc.event_name;
    localStorage.setItem(SETUP, JSON.stringify(state.setup));
    $('#where').firstChild.textContent = `${doc.event_name} · ${state.setup.gate} `;
  }
  const line = $('#keys');
  if (!line) return;
  line.textContent = doc ? `Ready for offline: keys and ${doc.voided.length} voided tickets as of ${timeOnly(doc.fetched_at)}.`
    : 'Keys not downloaded yet: this device cannot check tickets offline until it has been online.';
  line.dataset.ready = doc ? 'yes' : 'no';
}

function stopAndSetup() {
  if (state.stream) state.stream.getTracks().forEach((t) => t.stop());
  state.stream = null;
  localStorage.removeItem(SETUP);
  showSetup();
}

async function render() {
  const c = counters().read();
  $('#n-admitted').textContent = c.admitted;
  $('#n-refused').textContent = c.refused;
  $('#n-waiting').textContent = await db.count('queue');
  const conflicts = await db.all('conflicts');
  show($('#conflicts'), ...(conflicts.length ? conflicts.map((item) => el('li', {},
    el('strong', {}, item.ticket_id), ` ${item.result}: `,
    (item.admissions || []).map((a) => `${a.gate} at ${timeOnly(a.used_at)}`).join(' and ') || item.reason))
    : [el('li', { class: 'muted' }, 'None')]));
}

function report(error) {
  if (error instanceof ApiError && error.status === 401) return askSignIn();
  const box = $('#status');
  if (box) { box.textContent = failure(error); box.className = 'status error'; box.hidden = false; }
}

function askSignIn() {
  state.needsSignIn = true;
  const box = $('#status');
  if (!box) return;
  box.className = 'status warn';
  box.hidden = false;
  show(box, 'Your sign-in has expired. Scans are kept on this device; sign in again to upload them. ',
    el('button', { type: 'button', onclick: signIn }, 'Sign in again'));
}

// ---------------------------------------------------------------- camera and decoding
let detector = null;
let decoderReady = null;

function loadDecoder() {
  decoderReady ??= (async () => {
    if ('BarcodeDetector' in window) {
      try {
        if ((await BarcodeDetector.getSupportedFormats()).includes('qr_code')) {
          detector = new BarcodeDetector({ formats: ['qr_code'] });
          return;
        }
      } catch { /* fall through to the vendored decoder */ }
    }
    await new Promise((resolve, reject) => {
      document.head.append(el('script', { src: 'vendor/jsQR.js', onload: resolve, onerror: reject }));
    });
  })();
  return decoderReady;
}

async function startCamera() {
  const button = $('#camera');
  try {
    const [stream] = await Promise.all([
      navigator.mediaDevices.getUserMedia({ video: { facingMode: 'environment', width: { ideal: 640 } }, audio: false }),
      loadDecoder(),
    ]);
    state.stream = stream;
    const video = $('#video');
    video.srcObject = stream;
    await video.play();
    if (button) button.hidden = true;
    loop();
  } catch (error) {
    report(new Error(`The camera could not start (${error.name || error}); type codes instead.`));
  }
}

const canvas = document.createElement('canvas');
const context = canvas.getContext('2d', { willReadFrequently: true });

async function decode(video) {
  if (!video.videoWidth) return null;
  if (detector) {
    const found = await detector.detect(video);
    return found.length ? found[0].rawValue : null;
  }
  const scale = Math.min(1, 640 / Math.max(video.videoWidth, video.videoHeight));
  canvas.width = Math.round(video.videoWidth * scale);
  canvas.height = Math.round(video.videoHeight * scale);
  context.drawImage(video, 0, 0, canvas.width, canvas.height);
  const image = context.getImageData(0, 0, canvas.width, canvas.height);
  const found = window.jsQR(image.data, image.width, image.height, { inversionAttempts: 'dontInvert' });
  return found ? found.data : null;
}

async function loop() {
  const video = $('#video');
  if (!video || !state.stream) return;
  try {
    const code = await decode(video);
    if (state.scans.frame(code, performance.now())) {
      await handle(code);
      state.scans.stillSeen(code, performance.now()); // the answer took a while: the code was in view all along
    }
  } catch { /* a frame that cannot be read */ }
  setTimeout(loop, 100);
}

// ---------------------------------------------------------------- a scan
async function handle(code) {
  const { event_id: eventId, gate } = state.setup;
  if (state.online && !state.needsSignIn) {
    try {
      const answer = await api('/api/tickets/checkin/', {
        method: 'POST', body: { code, gate, event_id: eventId }, timeout: ONLINE_WAIT_MS });
      reachable(true);
      const t = answer.ticket;
      await db.put('admitted', { ticket_id: t.id, gate: t.gate, at: t.used_at });
      return verdict(true, 'Admitted', `${t.ticket_type_name} · ${t.serial}`);
    } catch (error) {
      if (error instanceof ApiError && error.status !== 401 && error.status < 500) {
        reachable(true);
        const b = error.body;
        const first = b.first_used_at ? `First scan: ${b.gate} at ${timeOnly(b.first_used_at)}` : '';
        return verdict(false, b.error || 'Refused', b.detail || error.message, first);
      }
      if (error instanceof ApiError && error.status === 401) askSignIn();
      else reachable(false);
      // no network, a 5xx or an expired sign-in: decide offline and queue the admission
    }
  }
  return handleOffline(code);
}

async function handleOffline(code) {
  const { event_id: eventId, gate } = state.setup;
  const doc = await db.get('keys', eventId);
  if (!doc) return verdict(false, 'Cannot check', 'No keys on this device yet: connect once to download them.');
  const result = await verifyOffline(doc, code, { eventId });
  if (!result.valid) return verdict(false, 'Refused', REASONS[result.reason] || result.reason);
  const before = await db.get('admitted', result.ticket_id);
  if (before) {
    return verdict(false, 'Already used', 'This ticket was admitted already.', `First scan: ${before.gate} at ${timeOnly(before.at)}`);
  }
  await db.admitOffline({ code, gate, scanned_at: new Date().toISOString(), ticket_id: result.ticket_id });
  verdict(true, 'Admitted', 'Offline: will upload when the network returns.');
  upload();
}

const REASONS = {
  bad_signature: 'Not one of our tickets (or misread): refuse entry.',
  void: 'This ticket was voided (refunded or canceled) or this code replaced by a transfer: refuse entry.',
  wrong_event: 'This ticket is for another event.',
  event_over: 'The event is over.',
};

// ---------------------------------------------------------------- the answer
let hideTimer;
let audio;

function verdict(ok, title, detail, first = '') {
  counters().bump(ok ? 'admitted' : 'refused');
  const box = $('#verdict');
  box.className = `verdict ${ok ? 'ok' : 'bad'}`;
  show(box, 
    el('p', { class: 'big' }, ok ? '✓ ' + title : '✗ ' + title),
    el('p', {}, detail),
    first ? el('p', { class: 'first' }, first) : '',
    el('button', { type: 'button', onclick: () => { box.hidden = true; } }, 'Next'));
  box.hidden = false;
  clearTimeout(hideTimer);
  hideTimer = setTimeout(() => { box.hidden = true; }, ok ? 2000 : 4000);
  try { navigator.vibrate?.(ok ? 120 : [120, 80, 120, 80, 120]); } catch { /* no vibration */ }
  beep(ok);
  render();
}

function beep(ok) {
  try {
    audio ??= new AudioContext();
    const tone = (freq, at, length) => {
      const osc = audio.createOscillator();
      const gain = audio.createGain();
      osc.frequency.value = freq;
      gain.gain.value = 0.2;
      osc.connect(gain).connect(audio.destination);
      osc.start(audio.currentTime + at);
      osc.stop(audio.currentTime + at + length);
    };
    if (ok) tone(1320, 0, 0.15); else { tone(220, 0, 0.2); tone(220, 0.3, 0.2); }
  } catch { /* no sound */ }
}

// ---------------------------------------------------------------- uploading
function networkChanged() {
  const line = $('#network');
  if (line) line.textContent = state.online ? 'Online' : 'Offline: scans are checked on this device and kept for upload.';
  if (state.online) upload();
}

async function upload() {
  if (state.uploading || state.needsSignIn) return;
  state.uploading = true;
  try {
    for (;;) {
      const batch = (await db.all('queue')).slice(0, BATCH);
      if (!batch.length) break;
      const key = `gate-upload-${user().sub}-${batch[0].id}-${batch[batch.length - 1].id}-${batch.length}`;
      const answer = await api('/api/scanner/checkins/', {
        method: 'POST', headers: { 'Idempotency-Key': key }, timeout: 15000,
        body: batch.map(({ code, scanned_at: scannedAt, gate }) => ({ code, scanned_at: scannedAt, gate })),
      });
      reachable(true);
      const done = [];
      for (const result of answer.results) {
        const scan = batch[result.index];
        if (result.result === 'retry') continue;
        done.push(scan.id);
        if (!['accepted', 'duplicate'].includes(result.result)) {
          await db.put('conflicts', { ticket_id: result.ticket_id || scan.code.slice(0, 40), result: result.result,
            reason: result.reason, admissions: result.admissions || null, scanned_at: result.scanned_at });
        }
      }
      await db.remove('queue', done);
      if (!done.length) break; // every scan asked for a retry: try again on the next tick
    }
  } catch (error) {
    if (isNetworkFailure(error)) reachable(false); else report(error);
  } finally {
    state.uploading = false;
    if ($('#n-waiting')) render();
  }
}

window.addEventListener('online', () => { state.online = true; networkChanged(); });
window.addEventListener('offline', () => reachable(false));
// Offline, the queue's upload (or, with nothing queued, the keys) probes for the network.
setInterval(async () => {
  if (!state.setup || !$('#n-waiting')) return;
  if (await db.count('queue')) upload();
  else if (!state.online) refreshKeys().then(showKeys).catch(() => {});
}, 5000);
setInterval(() => { if (state.setup && $('#keys') && state.online) refreshKeys().then(showKeys).catch(() => {}); }, 60000);

// ---------------------------------------------------------------- start
const me = user();
// An expired sign-in still scans (offline rules) and keeps its queue; uploads wait for a new one.
if (me && ['scanner', 'admin'].some((r) => me.groups.includes(r)) ? (state.needsSignIn = me.expired, true)
  : requireUser(main, 'scanner', 'admin')) {
  const event = new URLSearchParams(location.search).get('event');
  const gate = new URLSearchParams(location.search).get('gate');
  if (event && gate && (!state.setup || state.setup.event_id !== event || state.setup.gate !== gate)) {
    begin({ event_id: event, event_name: new URLSearchParams(location.search).get('name') || event, gate });
  } else if (state.setup) showScanner(); else showSetup();
}
