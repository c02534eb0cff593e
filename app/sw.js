// The offline shell: after the first visit the app starts with no network.
// The page, its modules and the browser client are cached together, one
// cache per version of them (`/sw-version.js`, a digest the server takes of
// the files it serves), so a phone never runs the client's JavaScript of one
// build with the `.wasm` of another. A new version is fetched whole in the
// background, and the next start uses it. The API and /sync always go to the
// network: the records themselves live in IndexedDB.

importScripts("/sw-version.js");
const CACHE = `twinsync-shell-${self.SHELL_VERSION}`;
const SHELL = [
  "/",
  "/app.js",
  "/fields.js",
  "/history.js",
  "/i18n.js",
  "/search.js",
  "/text.js",
  "/style.css",
  "/manifest.webmanifest",
  "/icons/icon.svg",
  "/icons/icon-192.png",
  "/icons/icon-512.png",
  "/pkg/twinsync_client.js",
  "/pkg/twinsync_client_bg.wasm",
];

self.addEventListener("install", (event) => {
  // All or nothing: a version with a file missing is never used.
  event.waitUntil(
    caches.open(CACHE)
      // Checked with the server, not fetched again: on a poor link a file
      // the page has just loaded costs a "not modified", not its bytes.
      .then((c) => c.addAll(SHELL.map((url) => new Request(url, { cache: "no-cache" }))))
      .then(() => self.skipWaiting()),
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches.keys()
      .then((keys) => Promise.all(keys.filter((k) => k.startsWith("twinsync-shell-") && k !== CACHE).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== "GET" || url.origin !== location.origin) return;
  // Every page of the app is the one shell; the hash picks the view.
  const key = event.request.mode === "navigate" ? "/" : url.pathname;
  if (!SHELL.includes(key)) return;
  event.respondWith(
    caches.open(CACHE).then(async (cache) => (await cache.match(key)) ?? fetch(event.request)),
  );
});
