// The offline shell: after the first visit the app starts with no network.
// App files are served from the cache at once and refreshed in the
// background (stale-while-revalidate); the API and /sync always go to the
// network, since the records themselves live in IndexedDB.

const CACHE = "twinsync-shell-v1";
const SHELL = [
  "/",
  "/app.js",
  "/fields.js",
  "/i18n.js",
  "/search.js",
  "/style.css",
  "/manifest.webmanifest",
  "/icons/icon.svg",
  "/icons/icon-192.png",
  "/icons/icon-512.png",
  "/pkg/twinsync_client.js",
  "/pkg/twinsync_client_bg.wasm",
];

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(CACHE).then((c) => c.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches.keys()
      .then((keys) => Promise.all(keys.filter((k) => k !== CACHE).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== "GET" || url.origin !== location.origin) return;
  if (url.pathname.startsWith("/api/") || url.pathname === "/sync" || url.pathname === "/healthz" || url.pathname === "/metrics") return;
  // Every page of the app is the one shell; the hash picks the view.
  const key = event.request.mode === "navigate" ? "/" : url.pathname;
  event.respondWith(
    caches.open(CACHE).then(async (cache) => {
      const cached = await cache.match(key);
      const fresh = fetch(event.request)
        .then((res) => {
          if (res.ok) cache.put(key, res.clone());
          return res;
        });
      if (cached) {
        event.waitUntil(fresh.catch(() => {}));
        return cached;
      }
      return fresh;
    }),
  );
});
