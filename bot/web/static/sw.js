// Doppel's service worker: the app itself always opens (network first, the cached copy
// without a connection), and what the person reads of their own (who they are,
// favourites, stories, their pictures) is kept for reading offline. Nothing else is
// cached, and sign-out and "forget me" delete what was kept.

const SHELL = "doppel-shell-v5";
const DATA = "doppel-data";
const SHELL_FILES = ["/", "/static/app.js", "/static/call.js", "/static/capture-worklet.js",
  "/static/voices.js", "/static/recorder.js",
  "/static/style.css", "/manifest.webmanifest",
  "/static/icon.svg", "/static/icon-192.png", "/static/icon-512.png"];
const KEPT = [/^\/web\/api\/me$/, /^\/web\/api\/favourites$/, /^\/web\/api\/stories\/\d+$/,
  /^\/web\/api\/stories\/\d+\/pictures\/\d+$/, /^\/web\/api\/avatar\/[^/]+$/];

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(SHELL).then((c) => c.addAll(SHELL_FILES)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(caches.keys()
    .then((keys) => Promise.all(keys.filter((k) => k.startsWith("doppel-shell") && k !== SHELL)
      .map((k) => caches.delete(k))))
    .then(() => self.clients.claim()));
});

async function networkFirst(request, cacheName) {
  const cache = await caches.open(cacheName);
  try {
    const response = await fetch(request);
    if (response.ok) await cache.put(request, response.clone());
    else if (response.status === 401) await caches.delete(DATA);  // signed out elsewhere
    return response;
  } catch (error) {
    const kept = await cache.match(request, { ignoreSearch: cacheName === SHELL });
    if (!kept) throw error;
    // Marked, so that the page says it is offline while it shows what was kept.
    const headers = new Headers(kept.headers);
    headers.set("X-Doppel-Offline", "1");
    return new Response(kept.body, { status: kept.status, statusText: kept.statusText, headers });
  }
}

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== "GET" || url.origin !== self.location.origin) return;
  if (event.request.mode === "navigate" && url.pathname === "/") {
    event.respondWith(networkFirst(new Request("/"), SHELL));
  } else if (SHELL_FILES.includes(url.pathname)) {
    event.respondWith(networkFirst(event.request, SHELL));
  } else if (KEPT.some((re) => re.test(url.pathname))) {
    event.respondWith(networkFirst(event.request, DATA));
  }
});
