// The service worker: the pages, their scripts and the vendored libraries kept in a cache,
// so the scanner (and my tickets) load through a reload with no network. Network first
// (a changed page is seen at once), the cache when the network fails or takes over 3 s.
// The API is never cached here: the pages keep what they need themselves.
const CACHE = 'app-v2';
const SHELL = [
  './', 'index.html', 'scanner.html', 'tickets.html', 'signin.html', 'config.json', 'manifest.webmanifest',
  'css/app.css', 'js/core.js', 'js/scanner.js', 'js/frames.js', 'js/gatedb.js', 'js/verify.js', 'js/tickets.js', 'js/qr.js',
  'js/home.js', 'js/signin.js', 'vendor/jsQR.js', 'vendor/noble-ed25519.js', 'vendor/uqr.js', 'icon.svg',
];

self.addEventListener('install', (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener('activate', (event) => {
  event.waitUntil(caches.keys()
    .then((names) => Promise.all(names.filter((n) => n !== CACHE).map((n) => caches.delete(n))))
    .then(() => self.clients.claim()));
});

self.addEventListener('fetch', (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== 'GET' || url.origin !== location.origin || !url.pathname.startsWith(new URL('./', location).pathname)) return;
  event.respondWith(fromNetworkOrCache(event.request));
});

async function fromNetworkOrCache(request) {
  const cache = await caches.open(CACHE);
  const network = fetch(request).then((response) => {
    if (response.ok) cache.put(request, response.clone());
    return response;
  });
  const late = new Promise((resolve) => { setTimeout(resolve, 3000); });
  try {
    const first = await Promise.race([network, late]);
    if (first) return first;
  } catch { /* offline */ }
  const cached = await cache.match(request, { ignoreSearch: true });
  if (cached) return cached;
  return network; // nothing cached: wait for the network after all
}
