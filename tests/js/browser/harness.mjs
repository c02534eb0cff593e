// Shared pieces of the browser tests: the real `twinsync` binary on a
// loopback port with a fresh data directory, and Debian's Chromium driven
// by playwright-core. Every wait is bounded.

import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
export const root = resolve(here, "../../..");
const target = process.env.CARGO_TARGET_DIR ?? join(root, "target");
export const binary = join(target, "debug", "twinsync");

export const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
export const LIMIT_MS = 20_000;

/** A fresh data directory, removed by `cleanup`. */
export function dataDir() {
  return mkdtempSync(join(tmpdir(), "twinsync-browser-"));
}

/** Provisions a device with `twinsync device add`; returns its token (the last line). */
export function addDevice(dir, role = "coordinator", extra = []) {
  const out = execFileSync(binary, ["device", "add", "--data-dir", dir, "--name", `browser ${role}`, "--role", role, ...extra], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
  });
  return out.trim().split("\n").pop().trim();
}

/**
 * Starts `twinsync serve`; resolves once it says where it listens. The
 * server object carries a coordinator's `token` and `api(path)`, a fetch
 * signed in with it.
 */
export function startServer({ dir, port = 0, args = [], appDir = join(root, "app") }) {
  const token = addDevice(dir);
  const child = spawn(
    binary,
    [
      "serve",
      "--listen", `127.0.0.1:${port}`,
      "--data-dir", dir,
      "--app-dir", appDir,
      "--client-dir", join(root, "client-wasm/pkg"),
      ...args,
    ],
    { env: { ...process.env, RUST_LOG: "info", NO_COLOR: "1" }, stdio: ["ignore", "ignore", "pipe"] },
  );
  let log = "";
  return new Promise((resolvePromise, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`the server did not start in time:\n${log}`));
    }, LIMIT_MS);
    child.stderr.on("data", (data) => {
      log += data;
      if (process.env.TEST_LOG) process.stderr.write(`[server] ${data}`);
      // The whole line: a chunk may end within the port.
      const m = log.match(/serving on (http:\/\/[0-9.:]+)\n/);
      if (m && timer) {
        clearTimeout(timer);
        const url = m[1];
        resolvePromise({
          url,
          token,
          api: (path, init = {}) => fetch(`${url}${path}`, {
            ...init,
            headers: { ...(init.headers ?? {}), authorization: `Bearer ${token}` },
          }),
          port: Number(new URL(url).port),
          child,
          log: () => log,
          async stop(signal = "SIGTERM") {
            if (child.exitCode !== null) return;
            const exited = new Promise((r) => child.once("exit", r));
            child.kill(signal);
            await exited;
          },
        });
      }
    });
    child.once("exit", (code) => reject(new Error(`the server exited (${code}):\n${log}`)));
  });
}

/**
 * Runs `body(server, dir)` against a fresh server on a fresh data
 * directory, started with `args`; stops it and removes the directory
 * whatever happens.
 */
export async function withServer(body, { args = [], appDir } = {}) {
  const dir = dataDir();
  const server = await startServer({ dir, args, appDir });
  try {
    return await body(server, dir);
  } finally {
    await server.stop();
    cleanup(dir);
  }
}

const ARGS = [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
];

/**
 * A phone whose browser keeps a profile on disk (as a real one does), so
 * quotas apply as on a device. Close it with `context.close()`.
 */
export async function persistentPhone(profileDir) {
  const context = await chromium.launchPersistentContext(profileDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: ARGS,
    viewport: { width: 360, height: 640 },
  });
  const page = context.pages()[0] ?? (await context.newPage());
  page.on("pageerror", (e) => console.error(`[page] ${e}`));
  return { context, page };
}

export async function launch() {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}

/** A phone: its own browser context (own IndexedDB), 360×640; `options` go to the context. */
export async function phone(browser, options = {}) {
  const context = await browser.newContext({ viewport: { width: 360, height: 640 }, ...options });
  const page = await context.newPage();
  page.on("pageerror", (e) => console.error(`[page] ${e}`));
  if (process.env.TEST_LOG) page.on("console", (m) => console.error(`[console] ${m.text()}`));
  return { context, page };
}

/**
 * Opens an invite link (or reloads a page whose address still holds one)
 * and presses Join, as the person does: the app sends the invite only
 * then.
 */
export async function openInvite(page, link) {
  if (link) await page.goto(link);
  else await page.reload();
  await page.click("button.join");
}

/**
 * Loads the client in `page` from `server` and opens it as `window.tw`.
 * The page is the server's health check: same origin, no app code.
 */
export async function openClient(page, server, options = {}) {
  options = { token: server.token, ...options };
  await page.goto(`${server.url}/healthz`);
  await page.evaluate(async (options) => {
    const mod = await import("/pkg/twinsync_client.js");
    await mod.default();
    window.tw = await mod.Client.open(options);
  }, options);
}

/** Polls `fn` in the page until it returns a truthy value. */
export async function until(page, fn, arg, what, limitMs = LIMIT_MS) {
  const start = Date.now();
  let last;
  while (Date.now() - start < limitMs) {
    try {
      last = await page.evaluate(fn, arg);
    } catch (e) {
      // The page is navigating (a reload, a redeemed invite): ask again.
      if (!/context was destroyed|navigat/i.test(String(e))) throw e;
      last = null;
    }
    if (last) return last;
    await new Promise((r) => setTimeout(r, 100));
  }
  const status = await page.evaluate(() => {
    const client = window.tw ?? window.twinsync;
    return client ? client.status() : null;
  }).catch(() => null);
  // What the page showed, to tell a wait that was too short from a screen
  // that went wrong.
  const screen = await page.evaluate(() => ({
    hash: location.hash,
    notice: document.querySelector("#notice")?.textContent ?? null,
    view: document.querySelector("#view")?.textContent?.slice(0, 300) ?? null,
    focus: document.activeElement?.outerHTML?.slice(0, 120) ?? null,
  })).catch(() => null);
  throw new Error(`timed out waiting for ${what}; status ${JSON.stringify(status)}; screen ${JSON.stringify(screen)}`);
}

export function cleanup(dir) {
  rmSync(dir, { recursive: true, force: true });
}
