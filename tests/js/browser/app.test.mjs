// The field app as delegates and coordinators use it, in real headless
// Chromium against the real server: installable and offline after one
// visit, minutes merged from two phones, a disagreement resolved by a
// coordinator and received by the phones, and the app in Arabic and French.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync, statSync } from "node:fs";
import { execFile } from "node:child_process";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as Automerge from "@automerge/automerge";
import { generateAutomergeUrl, parseAutomergeUrl } from "@automerge/automerge-repo";
import { launch, openInvite, phone, root, until, withServer } from "./harness.mjs";
import { STRINGS, formatId, plural } from "../../../app/i18n.js";

const ARTEFACTS = join(process.env.CARGO_TARGET_DIR ?? join(root, "target"), "test-artefacts");

let browser;
before(async () => {
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

/** A device signed in through the app with a one-time invite, as a person would. */
async function signIn(server, invite, options = {}) {
  const res = await server.api("/api/invites", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(invite),
  });
  assert.equal(res.status, 201, await res.clone().text());
  const { link } = await res.json();
  const device = await phone(browser, options);
  await openInvite(device.page, link);
  await until(device.page, () => document.querySelectorAll("#records li").length > 0, undefined, "the records listed");
  return device;
}

const upToDate = (page) =>
  until(page, () => document.querySelector("#sync")?.dataset.state === "up-to-date", undefined, "up to date");

/** Waits until the phone has learnt from the server that it is a device of `role`. */
const knownAs = (page, role) =>
  until(page, (role) => JSON.parse(localStorage.getItem("me") ?? "null")?.role === role || null, role, "who this device is");

/** Each phone, once it shows `selector` and is up to date, goes offline. */
async function offlineAt(phones, selector) {
  for (const p of phones) {
    await p.page.waitForSelector(selector);
    await upToDate(p.page);
    await p.context.setOffline(true);
  }
}

/** Types `text` into the field at `selector`, after pressing `key` (where the caret goes) in it. */
async function typeAt(page, selector, key, text) {
  await page.click(selector);
  await page.keyboard.press(key);
  await page.keyboard.type(text);
}

/** The phone hides the page (another app comes up), without a blur. */
async function hidePage(page) {
  await page.evaluate(() => {
    Object.defineProperty(document, "visibilityState", { value: "hidden", configurable: true });
    document.dispatchEvent(new Event("visibilitychange", { bubbles: true }));
  });
}

/** The page is shown again, as `hidePage` found it. */
async function showPage(page) {
  await page.evaluate(() => { delete document.visibilityState; });
}

async function show(page, hash) {
  await page.evaluate((hash) => { location.hash = hash; }, hash);
}

/** Two people of the demo club, and the city of the first. */
async function twoPeople(server) {
  const people = await (await server.api("/api/records?kind=person")).json();
  const [a, b] = people.filter((p) => p.city).slice(0, 2);
  return { a: a.url, b: b.url, city: a.city };
}

/**
 * Phone `a` creates a meeting through the app's form, attended by both
 * phones' people (so both may write it), and both phones open it.
 */
async function newMeeting(a, b, people) {
  await upToDate(a.page);
  await show(a.page, "#/new/meeting");
  await a.page.fill('input[name="title.ar"]', "اجتماع لجنة الشباب");
  await a.page.fill('input[name="title.fr"]', "Réunion du comité jeunesse");
  await a.page.selectOption('select[name="city"]', people.city);
  await a.page.check(`input[type="checkbox"][value="${people.a}"]`);
  await a.page.check(`input[type="checkbox"][value="${people.b}"]`);
  await a.page.fill('textarea[name="minutes"]', "Ordre du jour adopté.");
  await a.page.click('form.new button[type="submit"]');
  await until(a.page, () => location.hash.startsWith("#/r/"), undefined, "the new meeting shown");
  const id = await a.page.evaluate(() => location.hash.split("/")[2]);
  await upToDate(a.page);
  await until(b.page, (id) => document.querySelector(`#records li[data-id="${id}"]`), id, "the meeting on the other phone");
  await show(b.page, `#/r/${id}`);
  return id;
}

async function twoPhones(server) {
  const people = await twoPeople(server);
  const [a, b] = await Promise.all([people.a, people.b].map((person, n) =>
    signIn(server, { name: `Phone ${n}`, role: "delegate", person, cities: [people.city] })));
  const id = await newMeeting(a, b, people);
  return { a, b, id };
}

test("GET / is an Arabic right-to-left app with a manifest and a service worker, loading nothing from elsewhere", async () => {
  await withServer(async (server, dir) => {
    const html = await (await fetch(`${server.url}/`)).text();
    assert.match(html, /<html lang="ar" dir="rtl">/);
    assert.match(html, /<link rel="manifest" href="\/manifest.webmanifest">/);
    assert.doesNotMatch(html, /(src|href)="(https?:)?\/\//, "no address outside the server");
    const app = await (await fetch(`${server.url}/app.js`)).text();
    assert.match(app, /serviceWorker\.register\("\/sw.js"/);
    const manifest = await (await fetch(`${server.url}/manifest.webmanifest`)).json();
    assert.equal(manifest.start_url, "/");
    assert.equal(manifest.display, "standalone");
    for (const icon of manifest.icons) {
      const res = await fetch(new URL(icon.src, server.url));
      assert.equal(res.status, 200, icon.src);
      assert.equal(res.headers.get("content-type"), icon.type, icon.src);
    }

    const { page, context } = await phone(browser);
    const requested = [];
    context.on("request", (r) => requested.push(r.url()));
    await page.goto(server.url);
    await until(page, () => document.querySelector("#view .note")?.textContent.length > 0, undefined, "the sign-in note");
    const state = await page.evaluate(async () => (await navigator.serviceWorker.ready).active.state);
    assert.match(state, /activat/);
    // Signed in, the whole app runs: the client, the records, the sync socket.
    const res = await server.api("/api/invites", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ name: "Coordinator", role: "coordinator" }),
    });
    await openInvite(page, (await res.json()).link);
    await until(page, () => document.querySelectorAll("#records li").length > 0, undefined, "the records listed");
    await upToDate(page);
    const origin = new URL(server.url).origin;
    const socket = origin.replace(/^http/, "ws");
    const elsewhere = requested.filter((u) => ![origin, socket, "data:", "blob:"].some((o) => u.startsWith(o)));
    assert.deepEqual(elsewhere, []);
    assert.ok(requested.some((u) => u.endsWith("/pkg/twinsync_client_bg.wasm")), "the client was loaded");
    await context.close();
  });
});

test("work waiting to be sent, in storage the browser may clear, says to add the app to the home screen; kept storage does not", async () => {
  await withServer(async (server) => {
    const [project] = await (await server.api("/api/records?kind=project")).json();
    const waitingEdit = async (page, note) => {
      await upToDate(page);
      await page.context().setOffline(true);
      await page.evaluate(([id, note]) => window.twinsync.edit(id, [{ op: "set", path: "/budget_note", value: note }], "note"), [project.id, note]);
      await until(page, () => window.twinsync.status().unconfirmed > 0 || null, undefined, "the edit waiting");
    };
    // Headless Chromium, as a browser the app was not added to, refuses.
    const a = await signIn(server, { name: "Phone in the browser", role: "coordinator" });
    await waitingEdit(a.page, "Hors ligne");
    const said = await until(a.page, () => document.querySelector("#sync-kept:not([hidden])")?.textContent || null, undefined, "the note");
    assert.equal(said, STRINGS.ar.notPersisted);
    // Screen readers hear it with the state.
    const heard = await a.page.textContent("#sync-said");
    assert.ok(heard.includes(STRINGS.ar.notPersisted), heard);
    assert.equal(await a.page.evaluate(() => window.twinsync.status().persisted), false);
    // Sent, nothing is at risk: the note goes.
    await a.context.setOffline(false);
    await until(a.page, () => document.querySelector("#sync-kept")?.hidden || null, undefined, "the note gone once sent");
    await a.context.close();

    // A browser that keeps the storage (an installed app) says nothing.
    const res = await server.api("/api/invites", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ name: "Installed app", role: "coordinator" }) });
    const b = await phone(browser);
    await b.page.addInitScript(() => { navigator.storage.persist = async () => true; });
    await openInvite(b.page, (await res.json()).link);
    await until(b.page, () => document.querySelectorAll("#records li").length > 0, undefined, "the records listed");
    await waitingEdit(b.page, "Hors ligne, installée");
    await until(b.page, () => window.twinsync.status().persisted === true || null, undefined, "kept storage");
    assert.equal(await b.page.evaluate(() => document.querySelector("#sync-kept").hidden), true);
    await b.context.close();
  });
});

test("after one online visit, the app reloads with no network at all and shows every record", async () => {
  await withServer(async (server) => {
    const all = (await (await server.api("/api/records")).json()).map((r) => r.id).sort();
    const city = (await (await server.api("/api/records?kind=city")).json())[0].id;
    const { page, context } = await signIn(server, { name: "Delegate", role: "delegate", cities: [city] });
    await upToDate(page);
    await until(page, (n) => document.querySelectorAll("#records li").length === n, all.length, "every record listed");
    await until(page, () => navigator.serviceWorker.controller !== null, undefined, "the service worker in control");

    await server.stop();
    await context.setOffline(true);
    await page.reload();
    await until(page, (n) => document.querySelectorAll("#records li").length === n, all.length, "every record listed offline");
    const listed = await page.$$eval("#records li", (items) => items.map((li) => li.dataset.id).sort());
    assert.deepEqual(listed, all);
    const state = await page.$eval("#sync", (bar) => bar.dataset.state);
    assert.notEqual(state, "up-to-date");
    // A record opens, with its fields, from IndexedDB.
    await show(page, `#/r/${all[0]}`);
    await until(page, () => document.querySelectorAll("form.record .field").length > 0, undefined, "a record's fields offline");
    await context.close();
  });
});

test("an offline shell that failed to install is said in the sync bar and installed once the phone is online again", async () => {
  // The app as served, one file of the shell missing: its install fails,
  // as one cut off on a poor link would.
  const appDir = mkdtempSync(join(tmpdir(), "twinsync-app-"));
  cpSync(join(root, "app"), appDir, { recursive: true });
  const icon = join(appDir, "icons/icon-512.png");
  const iconBytes = (await import("node:fs")).readFileSync(icon);
  rmSync(icon);
  try {
    await withServer(async (server) => {
      const { page, context } = await signIn(server, { name: "Delegate", role: "coordinator" });
      await upToDate(page);
      const said = await until(page, () => (document.querySelector("#sync-shell:not([hidden])")?.textContent || null), undefined, "the shell said not ready");
      assert.equal(said, STRINGS.ar.shellNotReady);
      assert.equal(await page.evaluate(() => navigator.serviceWorker.controller), null);
      // The file is back; the phone comes online again.
      writeFileSync(icon, iconBytes);
      await page.evaluate(() => window.dispatchEvent(new Event("online")));
      await until(page, () => navigator.serviceWorker.controller !== null, undefined, "the service worker in control");
      await until(page, () => document.querySelector("#sync-shell")?.hidden || null, undefined, "the note gone");
      await context.close();
    }, { appDir });
  } finally {
    rmSync(appDir, { recursive: true, force: true });
  }
});

test("meetings are listed newest first with their dates, in the person's language, as the server lists them", async () => {
  await withServer(async (server) => {
    const { page, context } = await signIn(server, { name: "Coordinator", role: "coordinator" });
    await upToDate(page);
    // Two more meetings, one before and one after the demo's.
    for (const [fr, date] of [["Conseil de janvier", "2025-01-15"], ["Conseil de décembre", "2026-12-01"]]) {
      await page.evaluate(([fr, date]) => window.twinsync.create("meeting", { title: { fr }, date }, "new"), [fr, date]);
    }
    await upToDate(page);
    const meetings = await (await server.api("/api/records?kind=meeting")).json();
    assert.ok(meetings.length >= 3, JSON.stringify(meetings));
    assert.ok(meetings.every((m) => /^\d{4}-\d{2}-\d{2}$/.test(m.date)), JSON.stringify(meetings));
    await show(page, "#/k/meeting");
    const listed = await until(page, (n) => {
      const items = [...document.querySelectorAll('#records li[data-kind="meeting"]')];
      return items.length === n
        ? items.map((li) => ({ date: li.querySelector("time")?.getAttribute("datetime"), shown: li.querySelector("time")?.textContent }))
        : null;
    }, meetings.length, "the meetings listed");
    assert.deepEqual(listed.map((l) => l.date), meetings.map((m) => m.date).sort().reverse());
    // Said as the person reads dates (Arabic here), not as stored.
    for (const l of listed) assert.ok(l.shown && l.shown !== l.date, JSON.stringify(l));
    await context.close();
  });
});

test("a newer version of the app taking the storage over is said in the sync bar, in the person's language", async () => {
  await withServer(async (server) => {
    const { page, context } = await signIn(server, { name: "Awa", role: "coordinator" });
    await upToDate(page);
    const newer = await context.newPage();
    await newer.goto(`${server.url}/healthz`);
    const opened = await newer.evaluate(() => new Promise((resolve) => {
      const request = indexedDB.open("twinsync", 2);
      request.onsuccess = () => { request.result.close(); resolve(true); };
      request.onerror = () => resolve(false);
    }));
    assert.ok(opened);
    const said = await until(page, () => {
      const bar = document.querySelector("#sync");
      return bar.dataset.state === "error" ? document.querySelector("#sync-state").textContent : null;
    }, undefined, "the sync bar");
    const lang = await page.evaluate(() => document.documentElement.lang);
    const reload = { ar: "أعد تحميل هذه الصفحة", fr: "rechargez cette page", en: "reload this page" }[lang];
    assert.ok(reload && said.includes(reload), `${lang}: ${said}`);
    // The client's English beside it is marked so, for a screen reader,
    // who hears the whole of it.
    assert.equal(await page.getAttribute("#sync-state bdi.detail", "lang"), "en");
    const heard = await page.textContent("#sync-said");
    assert.ok(heard.includes(reload) && !heard.includes("undefined"), heard);
    // A paragraph pasted into the minutes then cannot be kept: it stays
    // on screen to be copied, the box takes no more, and why is said.
    const [meeting] = await (await server.api("/api/records?kind=meeting")).json();
    await show(page, `#/r/${meeting.id}`);
    const minutes = '[data-path="/minutes"] textarea';
    await page.waitForSelector(minutes);
    const before = await page.inputValue(minutes);
    await page.fill(minutes, `${before}\nLe conseil remercie la délégation d’Oakland.`);
    await until(page, () => document.querySelector("#notice").textContent.length > 0 || null, undefined, "the notice");
    assert.ok((await page.textContent("#notice")).includes(reload));
    assert.equal(await page.inputValue(minutes), `${before}\nLe conseil remercie la délégation d’Oakland.`);
    assert.equal(await page.$eval(minutes, (a) => a.readOnly), true);
    await context.close();
  });
});

test("a delegate's change the server refuses is shown in the sync bar with its reason, and stays on the phone", async () => {
  await withServer(async (server) => {
    // A report belongs to its author, or to the device that created it:
    // the app locks one the server says another device created, but a
    // change made before it could ask (offline, or through the client) is
    // the server's to judge.
    const [report] = await (await server.api("/api/records?kind=report")).json();
    const { record } = await (await server.api(`/api/records/${report.id}`)).json();
    const cities = await (await server.api("/api/records?kind=city")).json();
    const { page, context } = await signIn(server, { name: "Delegate elsewhere", role: "delegate", cities: [cities[0].id] });
    await upToDate(page);
    await knownAs(page, "delegate");
    await show(page, `#/r/${report.id}`);
    const lang = await page.evaluate(() => document.documentElement.lang);
    assert.equal(await until(page, () => document.querySelector("#view p.locked")?.textContent, undefined, "the report locked"), STRINGS[lang].lockedNotAuthor);
    const other = ["visit", "field", "progress", "other"].find((v) => v !== record.report_type);
    await page.evaluate(([id, value]) => window.twinsync.edit(id, [{ op: "set", path: "/report_type", value }], "retype"), [report.id, other]);
    const refused = await until(page, () => document.querySelector("#sync-refused")?.textContent || null, undefined, "the refusal in the sync bar");
    assert.equal(await page.$eval("#sync", (bar) => bar.dataset.state), "error");
    // Said in the app's language: the field, the record (a link to it),
    // the rule, and the number under which a coordinator can review it.
    const [held] = await (await server.api("/api/quarantine")).json();
    const words = STRINGS[lang];
    assert.ok(refused.includes(words["field.report_type"]), refused);
    assert.ok(refused.includes(words["refusal.not-yours"]), refused);
    const kept = words.refusalKept.replace("{n}", formatId(lang, held.id));
    assert.ok(refused.includes(kept), `${refused} (expected ${kept})`);
    assert.doesNotMatch(refused, /did not write|\/report_type/);
    assert.equal(await page.$eval("#sync-refused a", (a) => a.getAttribute("href")), `#/r/${report.id}`);
    // The server's English stays at hand.
    assert.match(await page.$eval("#sync-refused", (e) => e.title), /report you did not write/);
    // The bar's state says what happened in the app's language too, after
    // the connection, which the refusal does not hide.
    const sep = STRINGS[lang].listSeparator;
    const problemSaid = STRINGS[lang]["problem.server"];
    // The record the server lacks a change of is syncing: said with its
    // count (a count of none is said without one).
    const { syncing } = await page.evaluate(() => window.twinsync.status());
    const connection = syncing > 0 ? plural(lang, "syncing", syncing) : STRINGS[lang].syncingNow;
    const stateSaid = await until(page, (want) => {
      const text = document.querySelector("#sync-state").textContent;
      return text === want ? text : null;
    }, `${connection}${sep}${problemSaid}`, "the connection beside the problem");
    assert.ok(stateSaid.endsWith(`${sep}${problemSaid}`), stateSaid);
    // Screen readers hear it once, with what was refused, from a status
    // that no count changes.
    const connected = await page.evaluate(() => window.twinsync.status().unconfirmed > 0) ? STRINGS[lang].syncingNow : STRINGS[lang].upToDate;
    // With the note that the change waits in storage the browser may clear.
    const note = await page.textContent("#sync-kept");
    assert.equal(await page.textContent("#sync-said"), [`${connected}${sep}${problemSaid}`, refused, note].filter(Boolean).join(" "));
    assert.equal(await page.$eval("#sync", (bar) => bar.getAttribute("aria-live")), null);
    assert.ok((await page.$eval("#sync-waiting", (e) => e.textContent)).length > 0, "the change still waits on the phone");
    assert.equal(await page.evaluate((id) => window.twinsync.read(id).record.report_type, report.id), other);
    const stored = await (await server.api(`/api/records/${report.id}`)).json();
    assert.equal(stored.record.report_type, record.report_type);
    // With the refusal shown, the person can still go offline and come
    // back: the toggle follows the connection, not the bar's state.
    assert.equal(await page.textContent("#sync-toggle"), words.goOffline);
    await page.click("#sync-toggle");
    assert.equal(await page.textContent("#sync-toggle"), words.goOnline);
    assert.equal(await page.evaluate(() => window.twinsync.status().paused), true);
    // Offline, with the refusal still standing: the bar says both.
    assert.equal(await page.textContent("#sync-state"), `${words.offline}${sep}${problemSaid}`);
    const joins = await page.evaluate(() => window.twinsync.status().joins);
    await page.click("#sync-toggle");
    await until(page, (n) => window.twinsync.status().joins > n, joins, "online again");
    assert.equal(await page.textContent("#sync-toggle"), words.goOffline);
    // The bar, taller with the refusal, leaves a new record's Create
    // button clear of it once the page is scrolled to its end.
    await show(page, "#/new/report");
    await page.waitForSelector('form.new button[type="submit"]');
    await page.evaluate(() => window.scrollTo(0, document.documentElement.scrollHeight));
    const [button, bar] = await page.evaluate(() => [
      document.querySelector('form.new button[type="submit"]').getBoundingClientRect().bottom,
      document.querySelector("#sync").getBoundingClientRect().top,
    ]);
    assert.ok(button <= bar, `the button ends at ${button}px, the bar starts at ${bar}px`);
    // A coordinator discards it. The change still waits on the phone, which
    // sends it again when it next connects: the server says it will never
    // take it, and does not put it back in front of the coordinators.
    assert.equal((await server.api(`/api/quarantine/${held.id}/discard`, { method: "POST" })).status, 200);
    await page.click("#sync-toggle");
    await page.click("#sync-toggle");
    const discarded = words.refusalDiscarded.replace("{n}", formatId(lang, held.id));
    await until(page, (text) => document.querySelector("#sync-refused")?.textContent.includes(text) || null, discarded, "the refusal of a discarded change");
    assert.deepEqual(await (await server.api("/api/quarantine?status=pending")).json(), []);
    await context.close();
  });
});

test("two phones write the same minutes offline and both show the merged text", async () => {
  await withServer(async (server) => {
    const { a, b, id } = await twoPhones(server);
    // Adopted minutes are shown read-only to a delegate, with why.
    const adopted = (await (await server.api("/api/records?kind=meeting")).json()).find((m) => m.id !== id);
    await show(a.page, `#/r/${adopted.id}`);
    await a.page.waitForSelector("#view .locked");
    assert.equal(await a.page.$$eval("form.record textarea, form.record input", (e) => e.length), 0);
    await show(a.page, `#/r/${id}`);
    const area = '[data-path="/minutes"] textarea';
    await offlineAt([a, b], area);
    await until(a.page, () => document.querySelector("#sync").dataset.state !== "up-to-date", undefined, "phone A offline");
    // Phone A writes Arabic at the start, phone B French at the end.
    await typeAt(a.page, area, "Control+Home", "افتتح الرئيس الجلسة. ");
    await typeAt(b.page, area, "Control+End", " Séance levée à 18 h.");
    for (const p of [a, b]) {
      const waiting = await p.page.$eval("#sync-waiting", (e) => e.textContent);
      assert.ok(waiting.length > 0, "the sync bar counts changes waiting for the server");
    }

    for (const p of [a, b]) await p.context.setOffline(false);
    const merged = (page) => until(page, () => {
      const text = document.querySelector('[data-path="/minutes"] textarea').value;
      return text.startsWith("افتتح الرئيس الجلسة. ") && text.endsWith(" Séance levée à 18 h.") ? text : null;
    }, undefined, "the merged minutes");
    const [textA, textB] = [await merged(a.page), await merged(b.page)];
    assert.equal(textA, textB);
    assert.equal(textA, "افتتح الرئيس الجلسة. Ordre du jour adopté. Séance levée à 18 h.");
    await upToDate(a.page);
    await upToDate(b.page);
    const stored = await (await server.api(`/api/records/${id}`)).json();
    assert.equal(stored.record.minutes, textA, "the server holds the merged minutes");
    await a.context.close();
    await b.context.close();
  });
});

test("two phones reword the same decision offline: both phones' words are kept, and no disagreement is left", async () => {
  await withServer(async (server) => {
    const { a, b, id } = await twoPhones(server);
    await a.page.evaluate((id) => window.twinsync.edit(id, [{ op: "insert_item", path: "/decisions", after: "$end", item: { id: "d1", text: "Jumeler les bibliothèques", outcome: "adopted" } }], "add a decision"), id);
    const area = '[data-path="/decisions/d1/text"] textarea';
    await offlineAt([a, b], area);
    await until(a.page, () => document.querySelector("#sync").dataset.state !== "up-to-date", undefined, "phone A offline");
    // Phone A heads the decision in Arabic, phone B completes it in French.
    await typeAt(a.page, area, "Control+Home", "قرار المجلس: ");
    await typeAt(b.page, area, "Control+End", " de Smara et de Pune");
    for (const p of [a, b]) await p.context.setOffline(false);
    const want = "قرار المجلس: Jumeler les bibliothèques de Smara et de Pune";
    for (const p of [a, b]) {
      await until(p.page, ([sel, want]) => document.querySelector(sel)?.value === want || null, [area, want], "the merged decision");
      await upToDate(p.page);
    }
    const stored = await (await server.api(`/api/records/${id}`)).json();
    assert.equal(stored.record.decisions[0].text, want, "the server holds the merged decision");
    const conflicts = await (await server.api(`/api/records/${id}/conflicts`)).json();
    assert.deepEqual(conflicts, [], "nothing for a coordinator to settle");
    await a.context.close();
    await b.context.close();
  });
});

test("a decision removed on one phone while another wrote in it stays, words and all, until a coordinator settles it", async () => {
  await withServer(async (server) => {
    const { a, b, id } = await twoPhones(server);
    await a.page.evaluate((id) => window.twinsync.edit(id, [{ op: "insert_item", path: "/decisions", after: "$end", item: { id: "d1", text: "Jumeler les bibliothèques", outcome: "adopted" } }], "add a decision"), id);
    const item = 'li[data-item="d1"]';
    const area = '[data-path="/decisions/d1/text"] textarea';
    await offlineAt([a, b], area);
    // Offline, phone A removes the decision while phone B completes it.
    a.page.once("dialog", (d) => d.accept());
    await a.page.click(`${item} button.remove`);
    await until(a.page, (sel) => !document.querySelector(sel) || null, item, "the decision gone on phone A");
    await typeAt(b.page, area, "Control+End", " de Smara");
    for (const p of [a, b]) await p.context.setOffline(false);
    // Each leaves the form (the screen is not redrawn under a person in it).
    for (const p of [a, b]) await p.page.evaluate(() => document.activeElement?.blur());
    const want = "Jumeler les bibliothèques de Smara";
    for (const p of [a, b]) {
      await until(p.page, ([sel, want]) => document.querySelector(sel)?.value === want || null, [area, want], "the decision back, with B's words");
      await p.page.waitForSelector(`${item} p.note.disputed`);
      await upToDate(p.page);
    }
    const stored = await (await server.api(`/api/records/${id}`)).json();
    assert.deepEqual(stored.record.decisions.map((d) => d.text), [want], "the server shows it too");

    // The coordinator sees the removal against the words, and removes it.
    const coordinator = await signIn(server, { name: "Coordinator", role: "coordinator" });
    await show(coordinator.page, "#/dashboard");
    const row = `.conflicts li[data-path="/decisions/d1/removed"][data-id="${id}"]`;
    await until(coordinator.page, (sel) => document.querySelectorAll(`${sel} button.keep`).length === 2 || null, row, "the removal on the dashboard");
    const ar = STRINGS.ar;
    const label = await coordinator.page.textContent(`${row} .label`);
    assert.equal(label, `${ar["field.decisions"]} › ${ar.quoted.replace("{text}", want)} › ${ar["field.removed"]}`);
    const choices = await coordinator.page.$$eval(`${row} button.keep`, (bs) => bs.map((b) => b.textContent));
    assert.ok(choices.some((c) => c.startsWith(ar.itemRemoved)) && choices.some((c) => c.startsWith(ar.itemKept)), JSON.stringify(choices));
    await coordinator.page.click(`${row} button.keep[data-value="true"]`);
    for (const p of [a, b]) await until(p.page, (sel) => !document.querySelector(sel) || null, item, "the decision removed on both phones");
    const conflicts = await (await server.api(`/api/records/${id}/conflicts`)).json();
    assert.deepEqual(conflicts, []);
    for (const p of [a, b, coordinator]) await p.context.close();
  });
});

test("a title typed while a coordinator adopts the minutes is kept, not taken away with the form", async () => {
  await withServer(async (server) => {
    const { a, b, id } = await twoPhones(server);
    const coordinator = await signIn(server, { name: "Secretariat", role: "coordinator" });
    await until(coordinator.page, (id) => window.twinsync.list().some((r) => r.id === id) || null, id, "the meeting on the coordinator's phone");
    const title = 'div.field[data-path="/title"] input[lang="fr"]';
    await a.page.waitForSelector(title);
    const changes = () => a.page.evaluate((id) => window.twinsync.history(id).map((e) => e.message), id);
    const before = await changes();
    await a.page.click(title, { clickCount: 3 });
    await a.page.keyboard.type("Séance du conseil (projet)");
    await coordinator.page.evaluate((id) => window.twinsync.edit(id, [{ op: "set", path: "/adopted", value: true }], "adopted"), id);
    // Phone A draws the meeting read-only, with why, and keeps the title.
    await a.page.waitForSelector("#view .locked");
    assert.equal(await a.page.evaluate((id) => window.twinsync.read(id).record.title.fr, id), "Séance du conseil (projet)");
    // Written once, not again by the browser's own change as the field
    // goes: the title and the coordinator's adoption are all that is new.
    await a.page.waitForTimeout(300);
    const after = await changes();
    assert.equal(after.length, before.length + 2, JSON.stringify(after.slice(before.length)));
    for (const p of [a, b, coordinator]) await p.context.close();
  });
});

test("typing in minutes while another phone writes in them live keeps both people's words whole", async () => {
  await withServer(async (server) => {
    const { a, b, id } = await twoPhones(server);
    const area = '[data-path="/minutes"] textarea';
    for (const p of [a, b]) await p.page.waitForSelector(area);
    await a.page.click(area);
    await a.page.keyboard.press("Control+Home");
    await b.page.click(area);
    await b.page.keyboard.press("Control+End");
    // Both type at once: A at the start, B at the end, key by key.
    const mine = "الرئيس افتتح الجلسة ";
    const theirs = " Le secrétaire lit l'ordre du jour.";
    await Promise.all([
      a.page.keyboard.type(mine, { delay: 40 }),
      b.page.keyboard.type(theirs, { delay: 35 }),
    ]);
    const expected = `${mine}Ordre du jour adopté.${theirs}`;
    for (const p of [a, b]) {
      await until(p.page, ([sel, want]) => document.querySelector(sel).value === want, [area, expected], "both people's words, whole")
        .catch(async (e) => {
          // Say where the words went: on each screen and on the server.
          const shown = await Promise.all([a, b].map((q) => q.page.evaluate(([sel, id]) => {
            const client = window.tw ?? window.twinsync;
            return { screen: document.querySelector(sel)?.value, device: client?.read(id).record.minutes, status: client?.status() };
          }, [area, id])));
          const stored = await (await server.api(`/api/records/${id}`)).json();
          throw new Error(`${e.message}; phone A shows ${JSON.stringify(shown[0])}, phone B ${JSON.stringify(shown[1])}, the server holds ${JSON.stringify(stored.record?.minutes)}`);
        });
    }
    await upToDate(a.page);
    await upToDate(b.page);
    const stored = await (await server.api(`/api/records/${id}`)).json();
    assert.equal(stored.record.minutes, expected);
    await a.context.close();
    await b.context.close();
  });
});

test("two phones typing at the same place in the minutes each keep their words together, not one letter in turn", async () => {
  await withServer(async (server) => {
    const { a, b, id } = await twoPhones(server);
    const area = '[data-path="/minutes"] textarea';
    for (const p of [a, b]) {
      await p.page.waitForSelector(area);
      await p.page.click(area);
      await p.page.keyboard.press("Control+End");
    }
    // Both write at the end at once, each key reaching the other screen
    // while the person types on. (Their first keys differ: two equal keys
    // typed at one place at once read the same on both screens, and which
    // is whose the screen cannot tell from the text alone.)
    const mine = " الرئيس افتتح الجلسة";
    const theirs = "\nLe secrétaire lit l'ordre du jour.";
    await Promise.all([
      a.page.keyboard.type(mine, { delay: 60 }),
      b.page.keyboard.type(theirs, { delay: 50 }),
    ]);
    const whole = `Ordre du jour adopté.${mine}${theirs}`.length;
    const shown = await Promise.all([a, b].map((p) => until(p.page, ([sel, n]) => {
      const v = document.querySelector(sel).value;
      return v.length === n ? v : null;
    }, [area, whole], "both people's keys on the screen")));
    assert.equal(shown[0], shown[1]);
    assert.ok(shown[0].includes(mine) && shown[0].includes(theirs), shown[0]);
    await upToDate(a.page);
    await upToDate(b.page);
    const stored = await (await server.api(`/api/records/${id}`)).json();
    assert.equal(stored.record.minutes, shown[0]);
    await a.context.close();
    await b.context.close();
  });
});

test("a word composed with an input method is written when done, not torn by text arriving meanwhile, and kept if the page is hidden mid-word", async () => {
  await withServer(async (server) => {
    const { a, b, id } = await twoPhones(server);
    const area = '[data-path="/minutes"] textarea';
    for (const p of [a, b]) await p.page.waitForSelector(area);
    const ime = await a.context.newCDPSession(a.page);
    const compose = (text) => ime.send("Input.imeSetComposition", { text, selectionStart: text.length, selectionEnd: text.length });
    const commit = (text) => ime.send("Input.insertText", { text });
    const minutes = (page) => page.evaluate((id) => window.twinsync.read(id).record.minutes, id);
    const screen = (page) => page.$eval(area, (e) => e.value);
    await a.page.click(area);
    await a.page.keyboard.press("Control+End");
    await b.page.click(area);
    await b.page.keyboard.press("Control+Home");

    // A composes a word; B writes at the start meanwhile. B's words reach
    // A's device, but A's screen waits: the word under way stays as typed.
    await compose(" مر");
    await compose(" مرحب");
    await b.page.keyboard.type("Ouverture. ");
    await until(a.page, (id) => window.twinsync.read(id).record.minutes.startsWith("Ouverture. ") || null, id, "B's words on A's device");
    assert.equal(await screen(a.page), "Ordre du jour adopté. مرحب", "the screen left alone mid-word");
    assert.equal(await minutes(a.page), "Ouverture. Ordre du jour adopté.", "the unfinished word not written yet");

    // Done: the word is written, and B's words are shown around it. The
    // next word may start at once.
    await commit(" مرحبا");
    await compose(" بكم");
    await commit(" بكم");
    const both = "Ouverture. Ordre du jour adopté. مرحبا بكم";
    await until(a.page, ([sel, want]) => document.querySelector(sel).value === want || null, [area, both], "both words and B's, whole, on A's screen");

    // The page is hidden in the middle of a word: the word as it stands is
    // written, and finishing it later adds only what is new.
    await compose(" شكر");
    await hidePage(a.page);
    await until(a.page, ([id, want]) => window.twinsync.read(id).record.minutes === want || null, [id, `${both} شكر`], "the word under way written when hidden");
    await showPage(a.page);
    await commit(" شكرا");
    const all = `${both} شكرا`;
    await until(a.page, ([id, want]) => window.twinsync.read(id).record.minutes === want || null, [id, all], "the finished word, once");
    await until(b.page, ([sel, want]) => document.querySelector(sel).value === want || null, [area, all], "every word on B's screen");
    await upToDate(a.page);
    const stored = await (await server.api(`/api/records/${id}`)).json();
    assert.equal(stored.record.minutes, all);
    for (const p of [a, b]) await p.context.close();
  });
});

test("a one-line field another phone changed while this one typed over it shows their value, one tap from being kept", async () => {
  await withServer(async (server) => {
    const { a, b, id } = await twoPhones(server);
    const title = 'div.field[data-path="/title"] input[lang="fr"]';
    for (const p of [a, b]) await p.page.waitForSelector(title);
    // A is in the field, typing, when B's title arrives.
    await a.page.click(title, { clickCount: 3 });
    await a.page.keyboard.type("Comité jeunesse (A)");
    await b.page.click(title, { clickCount: 3 });
    await b.page.keyboard.type("Comité de la jeunesse");
    await b.page.keyboard.press("Tab");
    const read = (id) => window.twinsync.read(id).record.title.fr;
    await until(a.page, ([id, want]) => window.twinsync.read(id).record.title.fr === want, [id, "Comité de la jeunesse"], "B's title on phone A");
    assert.equal(await a.page.inputValue(title), "Comité jeunesse (A)", "what A types is not replaced");
    // A leaves the field: A's title is written, and B's is shown beside it.
    await a.page.keyboard.press("Tab");
    assert.equal(await a.page.evaluate(read, id), "Comité jeunesse (A)");
    const note = await until(a.page, () => document.querySelector('div.field[data-path="/title"] .meanwhile')?.textContent || null, undefined, "B's title beside the field");
    assert.match(note, /Comité de la jeunesse/);
    await a.page.click('div.field[data-path="/title"] .meanwhile button');
    assert.equal(await a.page.evaluate(read, id), "Comité de la jeunesse");
    assert.equal(await a.page.inputValue(title), "Comité de la jeunesse");
    assert.equal(await a.page.$('div.field[data-path="/title"] .meanwhile'), null);
    // The value kept reaches the server (the bar may still show the state
    // from before the tap).
    await until(a.page, async ([id, want]) => {
      const res = await fetch(`/api/records/${id}`, { headers: { authorization: `Bearer ${localStorage.getItem("token")}` } });
      return (await res.json()).record.title.fr === want;
    }, [id, "Comité de la jeunesse"], "the title kept, on the server");
    await a.context.close();
    await b.context.close();
  });
});

test("a coordinator resolves two phones' disagreement in one tap and the phones receive it", async () => {
  await withServer(async (server) => {
    const { a, b, id } = await twoPhones(server);
    const time = '[data-path="/time"] input';
    // A decision both phones will mark differently.
    await a.page.evaluate((id) => window.twinsync.edit(id, [{ op: "insert_item", path: "/decisions", after: "$end", item: { id: "d1", text: "Jumeler les bibliothèques", outcome: "deferred" } }], "add a decision"), id);
    await until(b.page, (id) => window.twinsync.read(id).record.decisions?.length === 1, id, "the decision on the other phone");
    await offlineAt([a, b], time);
    await a.page.fill(time, "09:30");
    await a.page.press(time, "Tab");
    await b.page.fill(time, "10:00");
    await b.page.press(time, "Tab");
    await a.page.evaluate((id) => window.twinsync.edit(id, [{ op: "set", path: "/decisions/d1/outcome", value: "adopted" }], "adopted"), id);
    await b.page.evaluate((id) => window.twinsync.edit(id, [{ op: "set", path: "/decisions/d1/outcome", value: "rejected" }], "rejected"), id);
    // Both move the meeting to the same day: they agree, nothing to settle.
    for (const p of [a, b]) await p.page.evaluate((id) => window.twinsync.edit(id, [{ op: "set", path: "/date", value: "2025-12-01" }], "moved"), id);
    for (const p of [a, b]) await p.context.setOffline(false);
    for (const p of [a, b]) await upToDate(p.page);
    const conflicts = await until(a.page, async (id) => {
      const res = await fetch(`/api/records/${id}/conflicts`, { headers: { authorization: `Bearer ${localStorage.getItem("token")}` } });
      const list = await res.json();
      return list.some((c) => c.path === "/time") ? list : null;
    }, id, "the disagreement on the server");
    assert.deepEqual(conflicts.find((c) => c.path === "/time").values.map((v) => v.value).sort(), ["09:30", "10:00"]);
    assert.ok(!conflicts.some((c) => c.path === "/date"), JSON.stringify(conflicts));

    const coordinator = await signIn(server, { name: "Coordinator", role: "coordinator" });
    await show(coordinator.page, "#/dashboard");
    const button = `.conflicts li[data-path="/time"][data-id="${id}"] button.keep`;
    await until(coordinator.page, (sel) => document.querySelectorAll(sel).length === 2, button, "the disagreement on the dashboard");
    // A field of a list item says which list and which item: the decision
    // by its own words, quoted, in the coordinator's language.
    const nested = await coordinator.page.textContent(`.conflicts li[data-path="/decisions/d1/outcome"][data-id="${id}"] .label`);
    const ar = STRINGS.ar;
    assert.equal(nested, `${ar["field.decisions"]} › ${ar.quoted.replace("{text}", "Jumeler les bibliothèques")} › ${ar["field.outcome"]}`);
    assert.equal(await coordinator.page.textContent(`.conflicts li[data-path="/time"][data-id="${id}"] .label`), ar["field.time"]);
    // Each value says which phone it came from.
    const from = (who) => ar.valueFrom.replace("{who}", who);
    await until(coordinator.page, ([sel, said]) => document.querySelector(sel)?.textContent.trim() === said,
      [`${button}[data-value='"09:30"'] .by`, from("Phone 0")], "the first phone named");
    await until(coordinator.page, ([sel, said]) => document.querySelector(sel)?.textContent.trim() === said,
      [`${button}[data-value='"10:00"'] .by`, from("Phone 1")], "the second phone named");
    // The meetings' CSV says it, in its last column: a time in a cell is
    // only the one shown until someone keeps one.
    // Columns split at semicolons, as the club's spreadsheets in French
    // split them (chosen here: the test browser speaks English).
    await coordinator.page.selectOption("#csv-separator", ";");
    const disputedCell = async () => {
      const [csv] = await Promise.all([coordinator.page.waitForEvent("download"), coordinator.page.click('#export button[data-kind="meeting"]')]);
      const lines = (await streamBytes(await csv.createReadStream())).subarray(3).toString("utf8").trim().split("\r\n");
      const cells = (line) => line.slice(1, -1).split('";"');
      assert.equal(cells(lines[0]).at(-1), ar.conflicts, lines[0]);
      const row = lines.find((l) => cells(l)[0] === id);
      assert.ok(row, `the meeting's row in ${lines.length} lines`);
      return cells(row).at(-1);
    };
    const disputed = await disputedCell();
    const timeLine = disputed.split("\n").find((l) => l.startsWith(`${ar["field.time"]}: `));
    assert.ok(timeLine?.includes("09:30") && timeLine.includes("10:00"), disputed);
    assert.ok(disputed.includes(ar["field.outcome"]), disputed);
    // So does the meeting printed.
    await show(coordinator.page, `#/r/${id}`);
    await coordinator.page.evaluate(() => { window.print = () => {}; });
    await coordinator.page.click("button.print");
    const printed = await coordinator.page.$$eval("#print section.disputed li", (items) => items.map((li) => li.textContent));
    assert.ok(printed.some((l) => l.startsWith(`${ar["field.time"]}: `) && l.includes("09:30") && l.includes("10:00")), printed.join(" | "));
    await show(coordinator.page, "#/dashboard");
    await until(coordinator.page, (sel) => document.querySelectorAll(sel).length === 2, button, "the disagreement on the dashboard again");
    const chosen = JSON.parse(await coordinator.page.$eval(`${button}[data-value='"09:30"']`, (e) => e.dataset.value));
    // By keyboard: the focus then goes on to the disagreement left, the
    // decision's outcome, and what was kept is said.
    await coordinator.page.focus(`${button}[data-value='"09:30"']`);
    await coordinator.page.keyboard.press("Enter");
    await until(coordinator.page, (sel) => document.querySelectorAll(sel).length === 0, button, "the disagreement gone");
    const after = await until(coordinator.page, (id) => {
      const focused = document.activeElement;
      return focused?.matches("button.keep") ? {
        row: focused.closest("li").dataset.path, id: focused.closest("li").dataset.id,
        said: document.querySelector("#view-said").textContent,
      } : null;
    }, id, "the focus on the disagreement left");
    assert.equal(after.row, "/decisions/d1/outcome", JSON.stringify(after));
    assert.equal(after.id, id);
    assert.equal(after.said, ar.resolvedSaid.replace("{field}", ar["field.time"]).replace("{value}", "09:30"));
    // The last one kept too: the focus stays in the section (its heading,
    // or another record's disagreement), past the dashboard's redraw.
    await coordinator.page.keyboard.press("Enter");
    await until(coordinator.page, (id) => !document.querySelector(`.conflicts li[data-path="/decisions/d1/outcome"][data-id="${id}"]`) || null, id, "the outcome settled");
    await coordinator.page.waitForTimeout(800);
    assert.equal(await coordinator.page.evaluate(() => document.activeElement?.closest("section.conflicts") !== null), true,
      await coordinator.page.evaluate(() => document.activeElement?.outerHTML.slice(0, 80)));
    const settled = await disputedCell();
    assert.ok(!settled.includes(ar["field.time"]), settled);

    for (const p of [a, b]) {
      await until(p.page, ([sel, chosen]) => {
        const input = document.querySelector(sel);
        const open = document.querySelectorAll('.conflicts li[data-path="/time"]').length;
        return input?.value === chosen && open === 0;
      }, [time, chosen], "the resolution on the phone");
    }
    const res = await server.api(`/api/records/${id}/conflicts`);
    assert.ok(!(await res.json()).some((c) => c.path === "/time"), "resolved on the server too");
    for (const p of [a, b, coordinator]) await p.context.close();
  });
});

test("a title typed and not left is written when the window is closed, which asks first, and is there when the app opens again", async () => {
  await withServer(async (server) => {
    const { page, context } = await signIn(server, { name: "Coordinator", role: "coordinator" });
    await upToDate(page);
    const [meeting] = await (await server.api("/api/records?kind=meeting")).json();
    await show(page, `#/r/${meeting.id}`);
    const title = 'div.field[data-path="/title"] input[lang="fr"]';
    await page.waitForSelector(title);
    await page.click(title, { clickCount: 3 });
    await page.keyboard.type("Conseil de coordination (clos)");
    // Closed as a desktop window is, with no blur and no page hidden first.
    const asked = new Promise((ok) => page.once("dialog", async (d) => { ok(d.type()); await d.accept(); }));
    await page.close({ runBeforeUnload: true });
    const said = await Promise.race([asked, new Promise((ok) => setTimeout(() => ok("nothing"), 5_000))]);
    assert.equal(said, "beforeunload");
    const again = await context.newPage();
    await again.goto(`${server.url}/`);
    await until(again, (id) => window.twinsync?.read(id).record?.title?.fr === "Conseil de coordination (clos)", meeting.id, "the title typed before the window closed");
    await context.close();
  });
});

test("Arabic minutes on a French screen are marked Arabic, as typed and as set by the app, and French ones are not", async () => {
  await withServer(async (server) => {
    const { page, context } = await signIn(server, { name: "Coordinator", role: "coordinator" });
    await upToDate(page);
    await page.click('[data-lang="fr"]');
    const [meeting] = await (await server.api("/api/records?kind=meeting")).json();
    await show(page, `#/r/${meeting.id}`);
    const minutes = 'div.field[data-path="/minutes"] textarea';
    await page.waitForSelector(minutes);
    await page.fill(minutes, "Procès-verbal. محضر");
    assert.equal(await page.getAttribute(minutes, "lang"), null, "French first: the screen's language");
    await page.fill(minutes, "محضر الجلسة. Procès-verbal.");
    assert.equal(await page.getAttribute(minutes, "lang"), "ar", "typed in Arabic");
    // Set by the app, as another phone's edit or "keep theirs" sets it.
    await page.$eval(minutes, (a) => { a.value = "Ordre du jour"; });
    assert.equal(await page.getAttribute(minutes, "lang"), null);
    await page.$eval(minutes, (a) => { a.value = "جدول الأعمال"; });
    assert.equal(await page.getAttribute(minutes, "lang"), "ar");
    assert.equal(await page.$eval(minutes, (a) => a.value), "جدول الأعمال", "the value itself is set");
    await context.close();
  });
});

test("what a person types is kept: a field when the phone hides the page, a new record's form across a language switch, and leaving it asks first; dates are the phone's own", async () => {
  await withServer(async (server) => {
    // In Oakland, at 22:30 on 19 November: already the 20th in UTC.
    const { page, context } = await signIn(server, { name: "Coordinator", role: "coordinator" }, { timezoneId: "America/Los_Angeles" });
    await context.clock.setFixedTime(new Date("2026-11-20T06:30:00Z"));
    await upToDate(page);
    const [meeting] = await (await server.api("/api/records?kind=meeting")).json();
    await show(page, `#/r/${meeting.id}`);
    // Typed, not left: a phone hides the page without a blur.
    const title = 'div.field[data-path="/title"] input[lang="fr"]';
    await page.waitForSelector(title);
    await page.click(title, { clickCount: 3 });
    await page.keyboard.type("Réunion consultative (compte rendu)");
    await hidePage(page);
    await until(page, (id) => window.twinsync.read(id).record?.title?.fr === "Réunion consultative (compte rendu)",
      meeting.id, "the title written when the page was hidden");
    await showPage(page);

    // The record as it was on the 19th, on the phone's calendar: the
    // evening's change is in it, though UTC had moved on to the 20th.
    // (In French, so that the title shown is the one typed.)
    await page.click('[data-lang="fr"]');
    await show(page, `#/r/${meeting.id}/at/2026-11-19`);
    await until(page, () => document.querySelector(".asof-banner") && document.querySelector('#view form.record [data-path="/title"]')?.textContent.includes("Réunion consultative (compte rendu)"),
      undefined, "the evening's change in the record as it was that day");
    // The day before, it had its first title, in the heading and printed
    // as in the field below it.
    await show(page, `#/r/${meeting.id}/at/2026-11-18`);
    const before = await until(page, () => (document.querySelector(".asof-banner") && document.querySelector('#view form.record [data-path="/title"]')?.textContent) || null,
      undefined, "the record as it was the day before");
    assert.ok(!before.includes("Réunion consultative (compte rendu)"), before);
    const heading = await page.textContent("#view h2.record-title");
    assert.ok(!heading.includes("Réunion consultative (compte rendu)") && heading.includes(meeting.title.fr), heading);
    await page.evaluate(() => { window.print = () => {}; });
    await page.click("#view button.print");
    assert.ok((await page.textContent("#print h1")).includes(meeting.title.fr), await page.textContent("#print h1"));
    await page.click('[data-lang="ar"]');

    // A new record's date is today on the phone's calendar, not in UTC.
    await show(page, "#/new/report");
    await page.waitForSelector('form.new input[name="date"]');
    assert.equal(await page.inputValue('form.new input[name="date"]'), "2026-11-19");

    // A new record's form keeps what was typed when the language changes.
    await show(page, "#/new/report");
    const fr = 'form.new input[name="title.fr"]';
    await page.waitForSelector(fr);
    await page.fill(fr, "Visite à Dakar");
    await page.click('[data-lang="fr"]');
    assert.equal(await page.inputValue(fr), "Visite à Dakar");
    // Leaving it asks first; staying keeps the form as it was.
    const asked = [];
    page.once("dialog", (d) => { asked.push(d.message()); d.dismiss(); });
    await page.fill("#search", "Dakar");
    assert.equal(asked.length, 1, "no question before leaving the form");
    assert.match(asked[0], /nouvelle fiche/);
    assert.equal(await page.evaluate(() => location.hash), "#/new/report");
    assert.equal(await page.inputValue(fr), "Visite à Dakar");
    page.once("dialog", (d) => { asked.push(d.message()); d.accept(); });
    await show(page, "#/");
    await until(page, () => document.querySelectorAll("#records li").length > 0, undefined, "the list after leaving");
    assert.equal(asked.length, 2);
    await context.close();
  });
});

test("a new record's form is kept on the phone as it is typed: a tab the phone closed comes back with it, and creating clears it", async () => {
  await withServer(async (server) => {
    const { page, context } = await signIn(server, { name: "Coordinator", role: "coordinator" });
    await upToDate(page);
    const people = await twoPeople(server);
    await show(page, "#/new/meeting");
    await page.waitForSelector('form.new input[name="title.ar"]');
    await page.fill('form.new input[name="title.ar"]', "مجلس التنسيق");
    await page.fill('form.new input[name="title.fr"]', "Conseil de coordination");
    await page.selectOption('form.new select[name="city"]', people.city);
    await page.check(`form.new input[type="checkbox"][value="${people.a}"]`);
    await page.fill('form.new textarea[name="minutes"]', "Ouverture à 10 h.\nافتتاح الجلسة.");
    // The phone closes the hidden tab: no question, no blur, nothing sent.
    const again = await context.newPage();
    await page.close();
    await again.goto(`${server.url}/#/new/meeting`);
    await again.waitForSelector("p.note.draft");
    assert.equal(await again.inputValue('form.new input[name="title.ar"]'), "مجلس التنسيق");
    assert.equal(await again.inputValue('form.new input[name="title.fr"]'), "Conseil de coordination");
    // A city and a person are chosen again once the phone's records are read.
    await until(again, (city) => document.querySelector('form.new select[name="city"]').value === city, people.city, "the city chosen again");
    await until(again, (person) => document.querySelector(`form.new input[type="checkbox"][value="${person}"]`)?.checked, people.a, "the person checked again");
    assert.equal(await again.inputValue('form.new textarea[name="minutes"]'), "Ouverture à 10 h.\nافتتاح الجلسة.");
    // A thumb's size, though it stands in a line of text.
    assert.ok(await again.$eval("p.note.draft button", (b) => b.getBoundingClientRect().height) >= 36);
    // "Start again", tapped by mistake and taken back: the form stays.
    const asked = [];
    again.once("dialog", (d) => { asked.push(d.message()); d.dismiss(); });
    await again.click("p.note.draft button");
    assert.deepEqual(asked, [STRINGS.ar.discardRestored]);
    assert.equal(await again.inputValue('form.new input[name="title.ar"]'), "مجلس التنسيق");
    assert.ok(await again.$("p.note.draft"));
    // Another kind's form starts empty.
    const report = await context.newPage();
    await report.goto(`${server.url}/#/new/report`);
    await report.waitForSelector('form.new input[name="title.fr"]');
    assert.equal(await report.inputValue('form.new input[name="title.fr"]'), "");
    assert.equal(await report.$("p.note.draft"), null);
    await report.close();
    // Created, the record holds what was kept, and the form starts afresh.
    await again.click('form.new button[type="submit"]');
    await until(again, () => location.hash.startsWith("#/r/"), undefined, "the new meeting shown");
    const id = await again.evaluate(() => location.hash.split("/")[2]);
    const record = await again.evaluate((id) => window.twinsync.read(id).record, id);
    assert.equal(record.title.ar, "مجلس التنسيق");
    assert.equal(record.minutes, "Ouverture à 10 h.\nافتتاح الجلسة.");
    await show(again, "#/new/meeting");
    await again.waitForSelector('form.new input[name="title.fr"]');
    assert.equal(await again.inputValue('form.new input[name="title.fr"]'), "");
    assert.equal(await again.$("p.note.draft"), null);
    await context.close();
  });
});

test("a new invite opened on a signed-in phone with no network is tried again by reloading once online", async () => {
  await withServer(async (server) => {
    const { page, context } = await signIn(server, { name: "Old phone", role: "observer" });
    await until(page, () => navigator.serviceWorker.controller !== null, undefined, "the service worker in control");
    const old = await page.evaluate(() => localStorage.getItem("token"));
    const res = await server.api("/api/invites", {
      method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ name: "New phone", role: "coordinator" }),
    });
    const { link } = await res.json();
    await context.setOffline(true);
    await openInvite(page, link);
    await until(page, () => document.querySelector("#notice")?.textContent || null, undefined, "the note that the server did not answer");
    assert.ok(await page.evaluate(() => location.hash.includes("invite=")), "the invite stays in the address");
    await context.setOffline(false);
    await openInvite(page);
    const now = await until(page, (old) => {
      const t = localStorage.getItem("token");
      return t && t !== old ? t : null;
    }, old, "signed in with the new invite");
    assert.notEqual(now, old);
    assert.ok(!(await page.evaluate(() => location.hash.includes("invite="))), "the invite, used, leaves the address");
    await context.close();
  });
});

test("a delegate's draft of a new record outlives every start until it is created", async () => {
  await withServer(async (server) => {
    const city = (await (await server.api("/api/records?kind=city")).json())[0].id;
    const { page, context } = await signIn(server, { name: "Delegate", role: "delegate", cities: [city] });
    await knownAs(page, "delegate");
    await show(page, "#/new/report");
    await page.waitForSelector('form.new input[name="title.fr"]');
    await page.fill('form.new input[name="title.fr"]', "Visite à Dakar");
    // The phone closes the tab, twice: the second start brings the draft
    // back as the first did, though nothing was typed in between.
    let tab = page;
    for (const start of [1, 2]) {
      const again = await context.newPage();
      await tab.close();
      tab = again;
      // Who this device is is asked again, as at every start.
      const asked = tab.waitForResponse((r) => r.url().endsWith("/api/me"));
      await tab.goto(`${server.url}/#/new/report`);
      await tab.waitForSelector("p.note.draft");
      assert.equal(await tab.inputValue('form.new input[name="title.fr"]'), "Visite à Dakar", `start ${start}`);
      await asked;
      await tab.waitForTimeout(300);
    }
    await context.close();
  });
});

test("a record changed offline days ago shows among the dashboard's recent changes when it arrives after a long typing session", async () => {
  await withServer(async (server) => {
    const all = await (await server.api("/api/records")).json();
    const project = all.find((r) => r.kind === "project").id;
    const meeting = all.find((r) => r.kind === "meeting").id;
    // A travelling phone, offline, its clock twelve days back: it changes
    // the project then.
    const phone = await signIn(server, { name: "Travelling phone", role: "coordinator" });
    await upToDate(phone.page);
    await phone.context.setOffline(true);
    const now = Date.now();
    await phone.context.clock.setFixedTime(new Date(now - 12 * 86_400_000));
    await phone.page.evaluate((id) => window.twinsync.edit(id, [{ op: "set", path: "/status", value: "on_hold" }], "on hold"), project);
    await phone.context.clock.setFixedTime(new Date(now));
    // Meanwhile the secretariat changes every other record.
    const { page, context } = await signIn(server, { name: "Secretariat", role: "coordinator" });
    await upToDate(page);
    for (const r of all.filter((r) => ![project, meeting].includes(r.id) && r.kind !== "club")) {
      const path = ["city", "person"].includes(r.kind) ? "/name/en" : "/title/en";
      await page.evaluate(([id, path]) => window.twinsync.edit(id, [{ op: "set", path, value: "Checked" }], "checked"), [r.id, path]);
    }
    await upToDate(page);
    // The server notes arrivals to the second: the phone's come later.
    await page.waitForTimeout(2_000);
    // The phone comes back, its project change arrives, and it types 40
    // keys of minutes at once: the last 30 changes are all keys.
    await phone.context.setOffline(false);
    await upToDate(phone.page);
    for (let i = 0; i < 40; i++) {
      await phone.page.evaluate(([id, i]) => window.twinsync.edit(id, [{ op: "splice_text", path: "/minutes", index: i, delete: 0, insert: "k" }], "key"), [meeting, i]);
    }
    await upToDate(phone.page);
    await until(phone.page, () => window.twinsync.status().unconfirmed === 0 || null, undefined, "every key on the server");
    await show(page, "#/dashboard");
    const line = await until(page, (id) => document.querySelector(`ol.recent a[href="#/r/${id}"]`)?.closest("li").textContent, project, "the project among the recent changes");
    // Placed by its arrival, and saying so beside when it was written.
    const received = STRINGS.ar.receivedAt.split("{")[0].trim();
    assert.ok(line.includes(received), line);
    for (const p of [phone, { context }]) await p.context.close();
  });
});

test("a draft outlives a new invite for the same person, and not one for another", async () => {
  await withServer(async (server) => {
    const people = await twoPeople(server);
    const { page, context } = await signIn(server, { name: "Aïcha's phone", role: "delegate", person: people.a, cities: [people.city] });
    await knownAs(page, "delegate");
    await show(page, "#/new/report");
    await page.waitForSelector('form.new input[name="title.fr"]');
    await page.fill('form.new input[name="title.fr"]', "Visite à Dakar");
    // Signed in again with a new invite, as the app says to when a token
    // lapsed: the same person's, then another's.
    const reinvite = async (person) => {
      const res = await server.api("/api/invites", {
        method: "POST", headers: { "content-type": "application/json" },
        body: JSON.stringify({ name: "Phone", role: "delegate", person, cities: [people.city] }),
      });
      const { link } = await res.json();
      const old = await page.evaluate(() => localStorage.getItem("token"));
      const asked = page.waitForResponse((r) => r.url().endsWith("/api/me"));
      await openInvite(page, link);
      await until(page, (old) => { const t = localStorage.getItem("token"); return t && t !== old ? t : null; }, old, "signed in again");
      await asked;
      await until(page, () => localStorage.getItem("draftsOf") === null || null, undefined, "the drafts settled");
      await show(page, "#/new/report");
      await page.waitForSelector('form.new input[name="title.fr"]');
    };
    await reinvite(people.a);
    await page.waitForSelector("p.note.draft");
    assert.equal(await page.inputValue('form.new input[name="title.fr"]'), "Visite à Dakar");
    await reinvite(people.b);
    assert.equal(await page.$("p.note.draft"), null);
    assert.equal(await page.inputValue('form.new input[name="title.fr"]'), "");
    await context.close();
  });
});

test("a new record's form is not drawn again by records arriving, and Create goes to the record", async () => {
  await withServer(async (server) => {
    const { page, context } = await signIn(server, { name: "Coordinator", role: "coordinator" });
    await upToDate(page);
    // A change lands while the list is on screen, which redraws lists
    // 300 ms later; the person opens a new form before then.
    await page.evaluate(async () => {
      await window.twinsync.create("person", { name: { fr: "Awa Diop" } }, "create person");
      location.hash = "#/new/person";
    });
    await page.waitForSelector('form.new input[name="name.fr"]');
    // A name in no language: the browser says so at the field, in the
    // person's language, and nothing is created.
    const before = await page.evaluate(() => window.twinsync.list().length);
    await page.click('form.new button[type="submit"]');
    assert.equal(await page.$eval('form.new input[name="name.ar"]', (i) => i.validationMessage), STRINGS.ar.needOneLanguage);
    assert.equal(await page.evaluate(() => window.twinsync.list().length), before);
    assert.equal(await page.evaluate(() => location.hash), "#/new/person");
    assert.equal(await page.textContent("#notice"), "", "the client was asked");
    await page.fill('form.new input[name="name.fr"]', "Salma Benali");
    assert.equal(await page.$eval('form.new input[name="name.ar"]', (i) => i.validationMessage), "");
    // Create disables its button, which takes the focus off the form.
    await page.evaluate(() => {
      document.querySelector("form.new").dataset.drawn = "first";
      document.activeElement.blur();
    });
    await page.waitForTimeout(600);
    assert.equal(await page.$eval("form.new", (f) => f.dataset.drawn ?? null), "first", "the form was not drawn again");
    await page.click('form.new button[type="submit"]');
    await until(page, () => location.hash.startsWith("#/r/"), undefined, "the new person shown");
    await context.close();
  });
});

test("a French name ending in a number in parentheses, listed in an Arabic line, keeps them around it", async () => {
  await withServer(async (server) => {
    const coordinator = await signIn(server, { name: "Coordinator", role: "coordinator" });
    await upToDate(coordinator.page);
    // Two attendees, listed in the order of their addresses: an Arabic
    // name first, which sets the line's direction, then a French one.
    const meeting = await coordinator.page.evaluate(async () => {
      const create = async (name) => `automerge:${await window.twinsync.create("person", { name }, "new person")}`;
      // Addresses are random: the lower of the Arabic names made, the
      // higher of the French ones, made in turn until they are in order.
      let amina = await create({ ar: "أمينة العلوي" });
      let awa = await create({ fr: "Awa Diop (2)" });
      for (let i = 0; i < 32 && awa < amina; i++) {
        if (i % 2) {
          const other = await create({ ar: "أمينة العلوي" });
          if (other < amina) amina = other;
        } else {
          const other = await create({ fr: "Awa Diop (2)" });
          if (other > awa) awa = other;
        }
      }
      return window.twinsync.create("meeting",
        { title: { ar: "اجتماع المجلس" }, date: "2026-11-30", attendees: [amina, awa] }, "new meeting");
    });
    await until(coordinator.page, async (id) => (await fetch(`/api/records/${id}`, { headers: { authorization: `Bearer ${localStorage.getItem("token")}` } })).ok || null, meeting, "the meeting on the server");
    // In a list to choose from, typing a name's first letters picks it.
    await show(coordinator.page, "#/new/report");
    await coordinator.page.waitForSelector('form.new select[name="author"] option[value^="automerge:"]', { state: "attached" });
    await coordinator.page.focus('form.new select[name="author"]');
    await coordinator.page.keyboard.type("Awa");
    const picked = await coordinator.page.$eval('form.new select[name="author"]', (s) => s.selectedOptions[0]?.textContent);
    assert.equal(picked, "Awa Diop (2)");
    await coordinator.context.close();
    // An observer reads the meeting in Arabic: the attendees are one line.
    const { page, context } = await signIn(server, { name: "Observer", role: "observer" });
    await upToDate(page);
    await show(page, `#/r/${meeting}`);
    const at = await until(page, () => {
      const value = document.querySelector('div.field[data-path="/attendees"] .value');
      const walker = value && document.createTreeWalker(value, NodeFilter.SHOW_TEXT);
      for (let node; walker && (node = walker.nextNode());) {
        if (!node.data.includes("Awa")) continue;
        const left = (i) => {
          const range = document.createRange();
          range.setStart(node, i);
          range.setEnd(node, i + 1);
          return range.getBoundingClientRect().left;
        };
        const name = node.data.indexOf("Awa");
        return {
          text: node.data, dir: getComputedStyle(value).direction,
          name: left(name), open: left(node.data.indexOf("(")), close: left(node.data.lastIndexOf(")")),
        };
      }
      return null;
    }, undefined, "the attendees shown");
    assert.equal(at.dir, "rtl");
    assert.ok(at.text.replace(/\u2068/g, "").startsWith("أمينة"), at.text);
    // Read left to right, as its words run: "Awa Diop (2)", with its
    // parentheses around the number, not taking the Arabic line's direction.
    assert.ok(at.name < at.open && at.open < at.close, JSON.stringify(at));
    await context.close();
  });
});

test("the export says when this device is offline, and that an export then holds the records as last synced", async () => {
  await withServer(async (server) => {
    const { page, context } = await signIn(server, { name: "Coordinator", role: "coordinator" });
    await upToDate(page);
    const lang = await page.evaluate(() => document.documentElement.lang);
    const words = STRINGS[lang];
    await show(page, "#/dashboard");
    await page.waitForSelector("#export-json");
    const note = () => page.textContent("#export-partial");
    assert.equal(await note(), "");
    // Offline: the records as of the last sync.
    await page.click("#sync-toggle");
    await until(page, (said) => document.querySelector("#export-partial")?.textContent === said || null, words.exportOffline, "the offline note");
    assert.equal(await page.isVisible("#export-partial"), true);
    // A record changed here meanwhile changes nothing to that.
    const [project] = await (await server.api("/api/records?kind=project")).json();
    await page.evaluate((id) => window.twinsync.edit(id, [{ op: "set", path: "/budget_note", value: "Révisé hors ligne" }], "note"), project.id);
    await page.waitForTimeout(300);
    assert.equal(await note(), words.exportOffline);
    // Online again, up to date: nothing to say.
    await page.click("#sync-toggle");
    await upToDate(page);
    await until(page, () => document.querySelector("#export-partial")?.textContent === "" || null, undefined, "the note gone");
    assert.equal(await page.isVisible("#export-partial"), false);
    await context.close();
  });
});

test("a delegate sees which records are not theirs to change before typing into one", async () => {
  await withServer(async (server) => {
    const cities = await (await server.api("/api/records?kind=city")).json();
    const dakar = cities.find((c) => c.title?.fr === "Dakar");
    assert.ok(dakar, JSON.stringify(cities.map((c) => c.title)));
    const agreements = await (await server.api("/api/records?kind=agreement")).json();
    const ours = agreements.find((a) => a.title.fr.endsWith("– Dakar"));
    const theirs = agreements.find((a) => a.title.fr.endsWith("– Niamey"));
    const { page, context } = await signIn(server, { name: "Dakar phone", role: "delegate", cities: [dakar.url] });
    await upToDate(page);
    await knownAs(page, "delegate");
    // Niamey's agreement: read only, with the reason, and no choice in a disagreement.
    await show(page, `#/r/${theirs.id}`);
    const note = await until(page, () => document.querySelector("p.note.locked")?.textContent, undefined, "the lock note");
    assert.match(note, /لا يخص مدنك/);
    assert.equal(await page.$$eval("form.record input, form.record textarea, form.record select", (e) => e.length), 0);
    // Read only, a title shows each language it is written in, the
    // reader's first.
    const title = await page.$eval('div.field[data-path="/title"] .value', (v) => ({
      text: v.textContent, fr: v.querySelector('.also bdi[lang="fr"]')?.textContent,
    }));
    assert.ok(title.text.startsWith(theirs.title.ar), title.text);
    assert.equal(title.fr, theirs.title.fr);
    // Dakar's own: editable.
    await show(page, `#/r/${ours.id}`);
    await page.waitForSelector('form.record div.field[data-path="/title"] input[lang="fr"]');
    assert.equal(await page.$("p.note.locked"), null);

    // A new city is never one of a delegate's: no button for it, and the
    // form's address says who adds cities.
    await show(page, "#/k/project");
    await page.waitForSelector('a.button[href="#/new/project"]');
    await show(page, "#/k/city");
    await until(page, () => document.querySelector('nav.kinds a[aria-current="page"]')?.getAttribute("href") === "#/k/city" || null, undefined, "the cities listed");
    assert.equal(await page.$('a.button[href="#/new/city"]'), null, "a button to add a city");
    await show(page, "#/new/city");
    assert.equal(await until(page, () => document.querySelector("#view p.locked")?.textContent, undefined, "why not"), STRINGS.ar.newCityCoordinators);
    assert.equal(await page.$("form.new"), null);

    // A new project starts as Dakar's. Taken away, Create says at the
    // field that it must be one of the delegate's cities, and nothing is made.
    const projects = async () => (await (await server.api("/api/records?kind=project")).json()).length;
    const before = await projects();
    await show(page, "#/new/project");
    await page.waitForSelector('form.new select[name="owner_city"]');
    assert.equal(await page.inputValue('form.new select[name="owner_city"]'), dakar.url);
    await page.fill('input[name="title.fr"]', "Bibliothèque de Dakar");
    await page.selectOption('form.new select[name="owner_city"]', "");
    await page.click('form.new button[type="submit"]');
    assert.equal(await page.$eval('form.new select[name="owner_city"]', (s) => s.validationMessage), STRINGS.ar.newNotOurs);
    assert.equal(await page.evaluate(() => location.hash), "#/new/project");
    await page.selectOption('form.new select[name="owner_city"]', dakar.url);
    await page.click('form.new button[type="submit"]');
    await until(page, () => location.hash.startsWith("#/r/"), undefined, "the new project shown");
    const id = await page.evaluate(() => location.hash.split("/")[2]);
    await upToDate(page);
    assert.equal(await projects(), before + 1);
    const made = await (await server.api(`/api/records/${id}`)).json();
    assert.equal(made.record.owner_city, dakar.url);
    assert.equal(await page.textContent("#sync-refused"), "", "the server took it");

    // A report this phone created is its own to write, though nobody wrote
    // it as its author; the demo club's report is not.
    const [demo] = await (await server.api("/api/records?kind=report")).json();
    await show(page, `#/r/${demo.id}`);
    assert.equal(await until(page, () => document.querySelector("#view p.locked")?.textContent, undefined, "the demo report locked"), STRINGS.ar.lockedNotAuthor);
    const report = await page.evaluate(() => window.twinsync.create("report",
      { title: { fr: "Visite à Dakar" }, report_type: "visit", date: "2026-11-20", text: "" }, "new report"));
    await until(page, async (id) => (await fetch(`/api/records/${id}`, { headers: { authorization: `Bearer ${localStorage.getItem("token")}` } })).ok || null, report, "the report on the server");
    await show(page, `#/r/${report}`);
    await page.waitForSelector('form.record div.field[data-path="/title"] input[lang="fr"]');
    await page.waitForTimeout(500);
    assert.equal(await page.$("#view p.locked"), null, "its own report locked");
    await context.close();
  });
});

test("a device whose token the server no longer takes says so and stops retrying, its records still on the phone", async () => {
  await withServer(async (server) => {
    const { page, context } = await signIn(server, { name: "Old phone", role: "coordinator" });
    await upToDate(page);
    const records = await page.evaluate(() => window.twinsync.list().length);
    // The server's database was replaced, say: it knows this device no more.
    await page.evaluate(() => localStorage.setItem("token", "gone.0000"));
    await page.reload();
    const said = await until(page, () => {
      const bar = document.querySelector("#sync");
      const state = document.querySelector("#sync-state");
      return bar?.dataset.state === "error" ? { text: state.textContent, title: state.title } : null;
    }, undefined, "the refused sign-in in the sync bar");
    // In the page's language only; the server's English is the title.
    assert.equal(said.text, STRINGS.ar.signedOut);
    assert.match(said.title, /not valid/);
    assert.equal(await page.evaluate(() => window.twinsync.status().state), "offline", "still retrying");
    assert.equal(await page.evaluate(() => window.twinsync.list().length), records);
    await context.close();
  });
});

test("a phone whose network used up its sign-in tries says so, and syncs again once the server takes them", async () => {
  await withServer(async (server) => {
    const { page, context } = await signIn(server, { name: "Phone", role: "coordinator" });
    await upToDate(page);
    // Someone on the same network (loopback here) tries wrong tokens.
    for (let i = 0; i < 3; i++) {
      const res = await fetch(`${server.url}/api/records`, { headers: { authorization: `Bearer wrong.${i}` } });
      assert.equal(res.status, 401);
    }
    await page.reload();
    const said = await until(page, () => {
      const bar = document.querySelector("#sync");
      return bar?.dataset.state === "error" ? document.querySelector("#sync-state").textContent : null;
    }, undefined, "the used-up sign-in tries in the sync bar");
    assert.equal(said, STRINGS.ar.signInTooMany);
    // Once the window has passed, it joins by itself and says it is up to date.
    await until(page, () => document.querySelector("#sync")?.dataset.state === "up-to-date" || null,
      undefined, "up to date once the tries are back", 45_000);
    assert.equal(await page.evaluate(() => document.querySelector("#sync-state").textContent), STRINGS.ar.upToDate);
    await context.close();
  }, { args: ["--auth-failures-per-minute", "3", "--rate-window-secs", "15"] });
});

test("records the server did not take yet wait their turn in the sync bar and arrive on the same connection", async () => {
  // Ten records a window of three seconds, for a club of more than twenty.
  await withServer(async (server) => {
    const total = (await (await server.api("/api/records")).json()).length;
    assert.ok(total > 20, `only ${total} records`);
    const { page, context } = await signIn(server, { name: "New phone", role: "coordinator" });
    // On the dashboard, whose export says what an export made now may lack.
    await show(page, "#/dashboard");
    const waiting = await until(page, () => {
      const s = window.twinsync.status();
      const partial = document.querySelector("#export-partial")?.textContent;
      return s.deferred > 0 && partial
        ? { deferred: s.deferred, state: document.querySelector("#sync").dataset.state, text: document.querySelector("#sync-waiting").textContent, partial, said: document.querySelector("#sync-said").textContent }
        : null;
    }, undefined, "records waiting their turn");
    // Not an error: the phone is still syncing, and says why in its language.
    assert.equal(waiting.state, "syncing");
    assert.match(waiting.text, /تنتظر دورها/);
    // A screen reader hears it too, without the count, which changes at
    // every record taken.
    assert.ok(waiting.said.includes(STRINGS.ar.deferredSaid), waiting.said);
    assert.ok(!/\d/.test(waiting.said), waiting.said);
    const [head, tail] = STRINGS.ar.exportPartial.split("{n}");
    assert.ok(waiting.partial.startsWith(head) && waiting.partial.endsWith(tail), waiting.partial);
    await until(page, (total) => {
      const s = window.twinsync.status();
      return s.state === "up-to-date" && s.deferred === 0 && window.twinsync.list().length === total;
    }, total, "every record on the phone", 60_000);
    const after = await page.evaluate(() => window.twinsync.status());
    assert.equal(after.joins, 1, "the records came without a reconnection");
    assert.equal(after.refused, undefined);
    assert.equal(await page.evaluate(() => document.querySelector("#sync-waiting").textContent), "");
    assert.ok(!(await page.textContent("#sync-said")).includes(STRINGS.ar.deferredSaid));
    await until(page, () => document.querySelector("#export-partial")?.textContent === "" || null, undefined, "the export's note gone");
    await context.close();
  }, { args: ["--device-docs-per-minute", "10", "--rate-window-secs", "3"] });
});

test("typing in the minutes changes only what was typed: text others wrote in another Unicode form stays as it is", async () => {
  await withServer(async (server) => {
    const { page, context } = await signIn(server, { name: "Coordinator", role: "coordinator" });
    await upToDate(page);
    const [meeting] = await (await server.api("/api/records?kind=meeting")).json();
    // Another writer's "é" as "e" and a combining accent, two inserts.
    await page.evaluate(async (id) => {
      const minutes = window.twinsync.read(id).record.minutes;
      const end = minutes.length;
      await window.twinsync.edit(id, [{ op: "splice_text", path: "/minutes", index: end, delete: 0, insert: " Cafe" }], "others");
      await window.twinsync.edit(id, [{ op: "splice_text", path: "/minutes", index: end + 5, delete: 0, insert: "\u0301" }], "others");
    }, meeting.id);
    await show(page, `#/r/${meeting.id}`);
    const area = '[data-path="/minutes"] textarea';
    await page.waitForSelector(area);
    assert.ok((await page.inputValue(area)).endsWith("Cafe\u0301"));
    // The person types at the start, then at the end.
    await page.focus(area);
    await page.evaluate((sel) => document.querySelector(sel).setSelectionRange(0, 0), area);
    await page.keyboard.type("أ");
    await page.evaluate((sel) => { const a = document.querySelector(sel); a.setSelectionRange(a.value.length, a.value.length); }, area);
    await page.keyboard.type("!");
    const minutes = await until(page, (id) => {
      const m = window.twinsync.read(id).record.minutes;
      return m.endsWith("!") ? m : null;
    }, meeting.id, "both keystrokes in the document");
    assert.ok(minutes.startsWith("أ"), minutes.slice(0, 20));
    assert.ok(minutes.endsWith(" Cafe\u0301!"), JSON.stringify(minutes.slice(-12)));
    assert.equal(await page.inputValue(area), minutes);
    await context.close();
  });
});

test("minutes whose line breaks another phone wrote as CRLF: a keystroke changes only what was typed, a backspace removes the whole line break", async () => {
  await withServer(async (server) => {
    const { a, b, id } = await twoPhones(server);
    const area = '[data-path="/minutes"] textarea';
    await a.page.waitForSelector(area);
    // The other phone's lines, as Windows ends them, while A's page is open.
    const before = await b.page.evaluate(async (id) => {
      const minutes = window.twinsync.read(id).record.minutes;
      await window.twinsync.edit(id, [{ op: "splice_text", path: "/minutes", index: minutes.length, delete: 0, insert: "\r\nالبند 1\r\nPoint 2" }], "others");
      return minutes;
    }, id);
    await until(a.page, (sel) => document.querySelector(sel).value.endsWith("Point 2"), area, "the other phone's lines on screen");
    assert.equal(await a.page.inputValue(area), `${before}\nالبند 1\nPoint 2`);
    // A word typed at the end of the first new line, then a backspace at
    // the start of the second.
    await a.page.focus(area);
    const caret = (at) => a.page.evaluate(([sel, at]) => document.querySelector(sel).setSelectionRange(at, at), [area, at]);
    await caret(before.length + "\nالبند 1".length);
    await a.page.keyboard.type("٢");
    await caret(before.length + "\nالبند 1٢\n".length);
    await a.page.keyboard.press("Backspace");
    const minutes = await until(a.page, (id) => {
      const m = window.twinsync.read(id).record.minutes;
      return m.endsWith("1٢Point 2") ? m : null;
    }, id, "the keystroke and the backspace in the document");
    assert.equal(minutes, `${before}\r\nالبند 1٢Point 2`);
    assert.equal(await a.page.inputValue(area), `${before}\nالبند 1٢Point 2`);
    for (const p of [a, b]) await p.context.close();
  });
});

/**
 * Puts Automerge documents in the phone's IndexedDB as if it had synced
 * them, and opens the app again with them; resolves with their new ids.
 */
async function storeOnPhone(page, docs) {
  const ids = docs.map(() => parseAutomergeUrl(generateAutomergeUrl()).documentId);
  await page.evaluate((records) => new Promise((resolve, reject) => {
    const open = indexedDB.open("twinsync");
    open.onerror = () => reject(open.error);
    open.onsuccess = () => {
      const tx = open.result.transaction("chunks", "readwrite");
      for (const [id, bytes] of records) tx.objectStore("chunks").add({ doc: id, bytes: new Uint8Array(bytes) });
      tx.oncomplete = () => { open.result.close(); resolve(); };
      tx.onerror = () => reject(tx.error);
    };
  }), docs.map((doc, i) => [ids[i], Array.from(Automerge.save(doc))]));
  await page.reload();
  await until(page, (ids) => { try { return ids.every((id) => window.twinsync.read(id)); } catch { return false; } }, ids, "the records loaded");
  return ids;
}

test("a record the app cannot read is shown as stored, with why, and no form to type into; a coordinator may still settle its disagreements", async () => {
  await withServer(async (server) => {
    const { page, context } = await signIn(server, { name: "Coordinator", role: "coordinator" });
    await upToDate(page);
    // Records on the phone as if it had synced them: one written by a newer
    // version of the app (schema 99), one whose minutes another program
    // wrote as a number and whose date two writers set at once.
    const newer = Automerge.from({
      schema: 99, kind: "meeting", title: { fr: "Séance de janvier", ar: "جلسة يناير" },
      date: "2027-01-15", minutes: "Ordre du jour adopté.", agenda_v2: [{ item: "Budget" }],
    });
    const base = Automerge.from({
      schema: 1, kind: "meeting", title: { fr: "Séance de février" }, date: "2027-02-15", minutes: 42, agenda: [],
    });
    const fork = (date) => Automerge.change(Automerge.load(Automerge.save(base)), (d) => { d.date = date; });
    const damaged = Automerge.merge(fork("2027-02-16"), fork("2027-02-17"));
    const ids = await storeOnPhone(page, [newer, damaged]);

    await show(page, `#/r/${ids[0]}`);
    await page.waitForSelector("pre.stored");
    const stored = await page.textContent("pre.stored");
    assert.match(stored, /جلسة يناير/);
    assert.match(stored, /agenda_v2/);
    const words = STRINGS[await page.evaluate(() => document.documentElement.lang)];
    // Why, in the page's language: the server's English is not shown.
    const said = await page.textContent("#view p.warning");
    assert.ok(said.includes(words["invalid.newer-schema"]), said);
    assert.doesNotMatch(said, /\(schema 99\)/, said);
    assert.ok((await page.textContent("#view .note.locked")).length > 0, "says why it cannot be changed");
    assert.equal(await page.locator("form.record input, form.record textarea, form.record select").count(), 0, "nothing to type into");

    await show(page, `#/r/${ids[1]}`);
    await until(page, () => /"minutes": 42/.test(document.querySelector("pre.stored")?.textContent ?? ""), undefined, "the damaged record as stored");
    const damage = await page.textContent("#view p.warning");
    assert.ok(damage.includes(`${words["field.minutes"]}${words.labelSeparator}${words["invalid.wrong-type"]}`), damage);
    await page.click('[data-lang="fr"]');
    await until(page, (said) => document.querySelector("#view p.warning")?.textContent.includes(said),
      `${STRINGS.fr["field.minutes"]}${STRINGS.fr.labelSeparator}${STRINGS.fr["invalid.wrong-type"]}`, "the problem said in French");
    // As it stood today: invalid then too, and said why, not "did not exist yet".
    await show(page, `#/r/${ids[1]}/at/${new Date().toISOString().slice(0, 10)}`);
    const then = await until(page, () => document.querySelector("form.record p.warning")?.textContent || null, undefined, "the record as it stood, with why");
    assert.ok(then.includes(`${STRINGS.fr["field.minutes"]}${STRINGS.fr.labelSeparator}${STRINGS.fr["invalid.wrong-type"]}`), then);
    assert.ok(!then.includes(STRINGS.fr.notYet), then);
    await show(page, `#/r/${ids[1]}`);
    await until(page, () => (document.querySelector("pre.stored") && !document.querySelector(".asof-banner")) || null, undefined, "the record as it is");
    assert.equal(await page.locator("form.record input, form.record textarea, form.record select").count(), 0, "nothing to type into");
    assert.equal(await page.locator('section.conflicts li[data-path="/date"] button.keep').count(), 2, "the coordinator may settle the disagreement");
    // The JSON export keeps both as stored, beside why, and the disagreement.
    await show(page, "#/dashboard");
    await page.waitForSelector("#export-json");
    // The dashboard names the damaged record's disagreement by its title.
    assert.equal(await page.textContent(`section.conflicts li[data-id="${ids[1]}"] a`), "Séance de février");
    const [json] = await Promise.all([page.waitForEvent("download"), page.click("#export-json")]);
    const exported = JSON.parse((await streamBytes(await json.createReadStream())).toString("utf8"));
    const [a, b] = ids.map((id) => exported.find((r) => r.id === id));
    assert.equal(a.record, null);
    assert.equal(a.stored?.title?.ar, "جلسة يناير", JSON.stringify(a));
    assert.ok(a.errors.length > 0, JSON.stringify(a));
    assert.equal(b.stored?.minutes, 42, JSON.stringify(b));
    assert.deepEqual(b.conflicts.find((c) => c.path === "/date")?.values.map((v) => v.value).sort(), ["2027-02-16", "2027-02-17"]);
    // The meetings' CSV cannot show the damaged meeting's fields: it leaves
    // it out, and says so, rather than writing a row of empty cells (the
    // newer version's record is of no kind this version knows).
    assert.equal(await page.locator("#export-unread").isVisible(), false);
    const [csv] = await Promise.all([page.waitForEvent("download"), page.click('#export button[data-kind="meeting"]')]);
    const lines = (await streamBytes(await csv.createReadStream())).subarray(3).toString("utf8").trim().split("\r\n");
    const meetings = (await (await server.api("/api/records?kind=meeting")).json()).length;
    assert.equal(lines.length, meetings + 1, lines.join("\n"));
    assert.ok(!ids.some((id) => lines.some((line) => line.includes(id))), lines.join("\n"));
    const lang = await page.evaluate(() => document.documentElement.lang);
    assert.equal(await page.textContent("#export-unread"), plural(lang, "exportUnread", 1));
    // Newest first, as the list shows meetings, for a council file.
    await page.evaluate(async () => {
      for (const [fr, date] of [["Séance de janvier", "2026-01-15"], ["Séance de mars", "2027-03-01"], ["Séance d'été", "2026-07-04"]]) {
        await window.twinsync.create("meeting", { title: { fr }, date }, "new");
      }
    });
    const [again] = await Promise.all([page.waitForEvent("download"), page.click('#export button[data-kind="meeting"]')]);
    const text = (await streamBytes(await again.createReadStream())).toString("utf8");
    const dates = (await page.evaluate(() => window.twinsync.list().filter((s) => s.kind === "meeting")))
      .map((m) => ({ at: text.indexOf(m.id), date: m.date ?? "" }))
      .filter((m) => m.at >= 0)
      .sort((a, b) => a.at - b.at)
      .map((m) => m.date);
    assert.ok(dates.length > 3, JSON.stringify(dates));
    assert.deepEqual(dates, [...dates].sort().reverse(), JSON.stringify(dates));
    await context.close();
  });
});

test("a record an older app made is brought up to the current schema by the server, and the dashboard says the server did it", async () => {
  await withServer(async (server) => {
    const { page, context } = await signIn(server, { name: "Coordinator", role: "coordinator" });
    await upToDate(page);
    // A report as the first version of the app wrote it, an hour ago, on
    // this phone and not yet sent.
    const old = Automerge.change(Automerge.init(), { message: "New report", time: Math.floor(Date.now() / 1000) - 3600 }, (d) => {
      Object.assign(d, {
        schema: 1, kind: "report", title: { fr: "Rapport de l’ancienne application", ar: "تقرير التطبيق القديم" },
        report_type: "field", date: "2026-11-20", text: "Écrit avant la mise à jour.", links: {},
      });
    });
    const id = parseAutomergeUrl(generateAutomergeUrl()).documentId;
    await page.evaluate(([id, bytes]) => new Promise((resolve, reject) => {
      const open = indexedDB.open("twinsync");
      open.onerror = () => reject(open.error);
      open.onsuccess = () => {
        const tx = open.result.transaction("chunks", "readwrite");
        tx.objectStore("chunks").add({ doc: id, bytes: new Uint8Array(bytes) });
        tx.oncomplete = () => { open.result.close(); resolve(); };
        tx.onerror = () => reject(tx.error);
      };
    }), [id, Array.from(Automerge.save(old))]);
    await page.reload();
    // The server takes it, brings it up to date, and the phone gets that.
    await until(page, (id) => {
      try { return window.twinsync.history(id).length === 2 || null; } catch { return null; }
    }, id, "the server's upgrade on the phone");
    const res = await server.api(`/api/records/${id}/history`);
    const history = await res.json();
    const upgrade = history.find((e) => e.message === "bring the record up to the current schema");
    assert.ok(upgrade, JSON.stringify(history));
    assert.equal(upgrade.delivered_by?.device ?? null, null, JSON.stringify(upgrade));

    // The dashboard names the server for it, not an unknown device.
    await show(page, "#/dashboard");
    const lang = await page.evaluate(() => document.documentElement.lang);
    const who = await until(page, (id) => {
      const row = [...document.querySelectorAll("ol.recent li")].find((li) => li.querySelector(`a[href="#/r/${id}"]`));
      return row?.querySelector(".who")?.textContent || null;
    }, id, "the upgraded report among the recent changes");
    await until(page, ([id, said]) => {
      const row = [...document.querySelectorAll("ol.recent li")].find((li) => li.querySelector(`a[href="#/r/${id}"]`));
      return row?.querySelector(".who")?.textContent === said || null;
    }, [id, STRINGS[lang].byServer], `the server named for the upgrade (first said: ${who})`);
    const row = await page.$$eval("ol.recent li", (items, id) => items.find((li) => li.querySelector(`a[href="#/r/${id}"]`))?.textContent, id);
    assert.ok(!row.includes(STRINGS[lang].unknownAuthor), row);
    await context.close();
  });
});

test("a coordinator withdraws an invite sent to the wrong group, and its link then signs no one in", async () => {
  await withServer(async (server) => {
    const { page, context } = await signIn(server, { name: "Coordinator", role: "coordinator" });
    await upToDate(page);
    await show(page, "#/devices");
    await until(page, () => document.querySelector("ul.invites li.note") || null, undefined, "no invite waiting");
    for (const name of ["Groupe des délégués", "هاتف الأمانة"]) {
      await page.fill('form.invite input[name="name"]', name);
      await page.selectOption('form.invite select[name="role"]', "observer");
      await page.click('form.invite button[type="submit"]');
      await until(page, (name) => document.querySelector(".invite-made")?.textContent.includes(name) || null, name, "the invite made");
    }
    const wrong = await page.inputValue("input.invite-link");
    const listed = await until(page, () => {
      const rows = [...document.querySelectorAll("ul.invites li[data-invite]")].map((li) => li.textContent);
      return rows.length === 2 ? rows : null;
    }, undefined, "both invites waiting");
    assert.ok(listed[0].includes("هاتف الأمانة") && listed[1].includes("Groupe des délégués"), listed.join(" | "));
    assert.ok(!listed.join(" ").includes(wrong.split("#invite=")[1]), "no code shown");
    // The newest one went to the wrong group: withdrawn, after a question.
    page.once("dialog", (d) => d.accept());
    await page.click("ul.invites li[data-invite]:first-child button.withdraw");
    await until(page, () => {
      const rows = [...document.querySelectorAll("ul.invites li[data-invite]")];
      return rows.length === 1 && rows[0].textContent.includes("Groupe des délégués") ? true : null;
    }, undefined, "one invite left");
    const res = await fetch(`${server.url}/api/invites/redeem`, {
      method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ code: wrong.split("#invite=")[1] }),
    });
    assert.equal(res.status, 410);
    await context.close();
  });
});

test("a refused batch that makes a meeting another kind shows that first, in the coordinator's words", async () => {
  await withServer(async (server) => {
    const { page, context } = await signIn(server, { name: "Coordinator", role: "coordinator" });
    await upToDate(page);
    // A delegate's official automerge-repo client, which may change any key.
    const city = (await (await server.api("/api/records?kind=city")).json())[0].id;
    const invite = await (await server.api("/api/invites", {
      method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ name: "Client JS", role: "delegate", cities: [city] }),
    })).json();
    const { token } = await (await fetch(`${server.url}/api/invites/redeem`, {
      method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ code: invite.link.split("#invite=")[1] }),
    })).json();
    const [meeting] = await (await server.api("/api/records?kind=meeting")).json();
    const out = await new Promise((resolve) => execFile("node", [join(root, "tests/js/peer.mjs"),
      `${server.url.replace("http", "ws")}/sync?token=${token}`, "kind", meeting.url, "person"],
    { timeout: 30_000 }, (_, stdout, stderr) => resolve(stdout + stderr)));
    const refused = JSON.parse(out.split("REFUSED ")[1]?.split("\n")[0] ?? "null");
    // Refused (a person's fields it does not have), and kept for review.
    assert.ok(refused?.refusal?.quarantine, out);
    // The coordinator opens it: the kind's change is the first row.
    await show(page, "#/devices");
    await page.click("ul.quarantine li[data-quarantine] details summary");
    const row = await until(page, () => {
      const dt = document.querySelector("ul.quarantine details dl > dt");
      return dt && { path: dt.dataset.path, label: dt.textContent, before: dt.nextElementSibling.textContent, after: dt.nextElementSibling.nextElementSibling.textContent };
    }, undefined, "the batch's changes");
    const words = STRINGS[await page.evaluate(() => document.documentElement.lang)];
    assert.equal(row.path, "/kind", JSON.stringify(row));
    assert.equal(row.label, words["field.kind"]);
    assert.ok(row.before.includes(words["kind.meeting"]) && row.after.includes(words["kind.person"]), JSON.stringify(row));
    await context.close();
  });
});

test("a record link cut short says it names no record", async () => {
  await withServer(async (server) => {
    const { page, context } = await signIn(server, { name: "Phone", role: "observer" });
    await upToDate(page);
    await show(page, "#/r/3HEWQUkma");
    const lang = await page.evaluate(() => document.documentElement.lang);
    await until(page, (said) => document.querySelector("#view p.note")?.textContent === said || null, STRINGS[lang].notARecordLink, "the link said to name no record");
    await context.close();
  });
});

test("the first screen, before any sign-in, takes the language the person picks", async () => {
  await withServer(async (server) => {
    const { page, context } = await phone(browser);
    await page.goto(`${server.url}/`);
    await until(page, (said) => document.querySelector("#view")?.textContent.includes(said) || null, STRINGS.ar.signin, "the invite asked for");
    for (const lang of ["fr", "en"]) {
      await page.click(`[data-lang="${lang}"]`);
      await until(page, (said) => document.querySelector("#view")?.textContent.includes(said) || null, STRINGS[lang].signin, `the invite asked for in ${lang}`);
    }
    // An invite the server refuses says why in the language picked too.
    await context.close();
    const other = await phone(browser);
    await other.page.goto(`${server.url}/#invite=not-a-code`);
    await other.page.click("button.join");
    const refused = await until(other.page, (asked) => {
      const text = document.querySelector("#view")?.textContent;
      return text && !text.includes(asked) && !document.querySelector("button.join") ? text : null;
    }, STRINGS.ar.joining, "the refused invite");
    await other.page.click('[data-lang="en"]');
    const again = await until(other.page, (before) => {
      const now = document.querySelector("#view")?.textContent;
      return now && now !== before ? now : null;
    }, refused, "the refused invite said again in English");
    assert.ok(again.includes(STRINGS.en.inviteUnknown), again);
    assert.ok(refused.includes(STRINGS.ar.inviteUnknown), refused);
    await other.context.close();
  });
});

test("the devices screen with the server out of reach and no list kept yet says so in the person's words", async () => {
  await withServer(async (server) => {
    const { page, context } = await signIn(server, { name: "Secrétariat", role: "coordinator" });
    await upToDate(page);
    await page.route("**/api/devices", (r) => r.abort("internetdisconnected"));
    await show(page, "#/devices");
    const lang = await page.evaluate(() => document.documentElement.lang);
    const said = await until(page, (want) => {
      const text = document.querySelector('#view p.warning[role="alert"]')?.textContent ?? "";
      return text.includes(want) ? text : null;
    }, STRINGS[lang].requestUnreached, "the unreached server said");
    assert.doesNotMatch(said, /fetch|failed to/i, said);
    await context.close();
  });
});

test("a coordinator invites a delegate's phone from the app, judges its refused change and revokes it", async () => {
  await withServer(async (server) => {
    const coordinator = await signIn(server, { name: "Coordinator", role: "coordinator" });
    const { page } = coordinator;
    await upToDate(page);
    const [city] = await (await server.api("/api/records?kind=city")).json();
    await show(page, "#/devices");
    await page.waitForSelector("form.invite");
    await page.fill('form.invite input[name="name"]', "هاتف حسن");
    await page.selectOption('form.invite select[name="role"]', "delegate");
    // A look at the French words and back keeps the invite being filled in.
    for (const lang of ["fr", "ar"]) {
      await page.click(`[data-lang="${lang}"]`);
      assert.equal(await page.inputValue('form.invite input[name="name"]'), "هاتف حسن", lang);
      assert.equal(await page.inputValue('form.invite select[name="role"]'), "delegate", lang);
    }
    // A delegate with no city is told so in the coordinator's language,
    // before the server is asked.
    await page.click('form.invite button[type="submit"]');
    const lang = await page.evaluate(() => document.documentElement.lang);
    await until(page, (said) => document.querySelector('#view p.warning[role="alert"]')?.textContent === said || null,
      STRINGS[lang].delegateNeedsCity, "the missing city said");
    assert.equal(await page.locator("input.invite-link").count(), 0, "no invite made");
    // The person is taken to the cities, which say what is wrong with them.
    const at = await page.evaluate(() => {
      const set = document.activeElement?.closest("fieldset");
      return {
        focused: document.activeElement?.matches('form.invite fieldset input[type="checkbox"]') ?? false,
        invalid: set?.getAttribute("aria-invalid"),
        described: document.getElementById(set?.getAttribute("aria-describedby") ?? "")?.textContent,
      };
    });
    assert.deepEqual(at, { focused: true, invalid: "true", described: STRINGS[lang].delegateNeedsCity });
    await page.check(`form.invite input[type="checkbox"][value="${city.id}"]`);
    // The server out of reach: said in words, not the browser's "Failed to fetch".
    await page.route("**/api/invites", (r) => r.abort("internetdisconnected"));
    await page.click('form.invite button[type="submit"]');
    const unreached = await until(page, (said) => {
      const text = document.querySelector('#view p.warning[role="alert"]')?.textContent ?? "";
      return text.includes(said) ? text : null;
    }, STRINGS[lang].requestUnreached, "the unreached server said");
    assert.doesNotMatch(unreached, /fetch/i, unreached);
    await page.unroute("**/api/invites");
    await page.click('form.invite button[type="submit"]');
    await page.waitForSelector("input.invite-link");
    const link = await page.inputValue("input.invite-link");
    assert.match(link, /#invite=/);
    // The server cannot show the link again: a language switch keeps it.
    await page.click('[data-lang="fr"]');
    await until(page, () => document.querySelector("form.invite button[type=submit]")?.textContent === "Créer l’invitation", undefined, "the screen in French");
    assert.equal(await page.inputValue("input.invite-link"), link);

    // The link signs a new phone in as that delegate.
    const delegate = await phone(browser);
    await openInvite(delegate.page, link);
    await until(delegate.page, () => document.querySelectorAll("#records li").length > 0, undefined, "the records listed on the new phone");
    await upToDate(delegate.page);
    assert.match(await delegate.page.textContent("#me"), /هاتف حسن/);

    // It changes a report that is not its own: refused, kept for review.
    const [report] = await (await server.api("/api/records?kind=report")).json();
    const { record } = await (await server.api(`/api/records/${report.id}`)).json();
    const other = ["visit", "field", "progress", "other"].find((v) => v !== record.report_type);
    await delegate.page.evaluate(([id, value]) => window.twinsync.edit(id, [
      { op: "set", path: "/report_type", value },
      { op: "splice_text", path: "/text", index: 0, delete: 0, insert: "ملاحظة الهاتف: " },
    ], "retype"), [report.id, other]);
    await until(delegate.page, () => document.querySelector("#sync-refused")?.textContent || null, undefined, "the refusal on the phone");

    // The coordinator sees it with who sent it and why, and discards it.
    await page.click("button.refresh");
    const item = await until(page, () => document.querySelector("ul.quarantine li[data-quarantine]")?.textContent || null, undefined, "the refused change for review");
    assert.match(item, /هاتف حسن/);
    // Why, in the coordinator's language: the field and the rule.
    const words = STRINGS[await page.evaluate(() => document.documentElement.lang)];
    // The name is the phone's own choice; beside it, the role it was given.
    assert.equal(await page.textContent("ul.quarantine li[data-quarantine] span.who + span.role"), words.delegate);
    assert.ok(item.includes(words["field.report_type"]) && item.includes(words["refusal.not-yours"]), item);
    // Under the number the delegate's phone gives for it.
    const number = await page.getAttribute("ul.quarantine li[data-quarantine]", "data-quarantine");
    const given = words.quarantineNumber.replace("{n}", formatId(lang, Number(number)));
    assert.equal(await page.textContent("ul.quarantine li[data-quarantine] span.number"), given);
    const phoneLang = await delegate.page.evaluate(() => document.documentElement.lang);
    const onPhone = await delegate.page.textContent("#sync-refused");
    assert.ok(onPhone.includes(formatId(phoneLang, Number(number))), onPhone);
    // Opened, it shows what the change would do: the type of the report,
    // as it is and as the delegate set it, in the coordinator's words.
    await page.click("ul.quarantine li[data-quarantine] details summary");
    const change = await until(page, () => {
      const row = document.querySelector('ul.quarantine details dt[data-path="/report_type"]');
      return row && [row.textContent, row.nextElementSibling.textContent, row.nextElementSibling.nextElementSibling.textContent];
    }, undefined, "what the refused change would do");
    assert.equal(change[0], words["field.report_type"]);
    assert.ok(change[1].includes(words[`value.${record.report_type}`]), change[1]);
    assert.ok(change[2].includes(words[`value.${other}`]), change[2]);
    // And the words it adds to the report's text, marked as added.
    assert.equal(await page.textContent('ul.quarantine details dt[data-path="/text"] + dd ins'), "ملاحظة الهاتف: ");
    // A record changing meanwhile does not redraw the screen from under
    // the coordinator reading it, focus or none.
    const [project] = await (await server.api("/api/records?kind=project")).json();
    await page.evaluate((id) => { document.activeElement?.blur(); return window.twinsync.edit(id, [{ op: "set", path: "/budget_note", value: "Révisé" }], "note"); }, project.id);
    await page.waitForTimeout(1000);
    assert.equal(await page.$eval("ul.quarantine li[data-quarantine] details", (d) => d.open), true, "the preview still open");
    // The phone types on in the refused report and connects again: what it
    // typed waits as a second batch, which builds on the first. Its entry
    // names who sent the first and when, its preview waits for it, and
    // accepting it first is refused, in the coordinator's words.
    const batch = await page.getAttribute("ul.quarantine li[data-quarantine]", "data-quarantine");
    await delegate.page.evaluate((id) => window.twinsync.edit(id, [{ op: "splice_text", path: "/text", index: 0, delete: 0, insert: "ثم " }], "more"), report.id);
    const joins = await delegate.page.evaluate(() => window.twinsync.status().joins);
    await delegate.page.click("#sync-toggle");
    await delegate.page.click("#sync-toggle");
    await until(delegate.page, (n) => window.twinsync.status().joins > n, joins, "the phone online again");
    for (let i = 0; i < 200 && (await (await server.api("/api/quarantine?status=pending")).json()).length < 2; i++) {
      await new Promise((r) => setTimeout(r, 100));
    }
    await page.click("button.refresh");
    const second = 'ul.quarantine li:has(p.builds-on)';
    const note = await until(page, () => document.querySelector("ul.quarantine p.builds-on")?.textContent || null, undefined, "the second batch, building on the first");
    assert.ok(note.includes("هاتف حسن"), note);
    assert.equal(await page.getAttribute("ul.quarantine p.builds-on", "data-builds-on"), batch);
    await page.click(`${second} details summary`);
    assert.equal(await until(page, () => document.querySelector("ul.quarantine li:has(p.builds-on) .batch-changes p")?.textContent || null, undefined, "why the second cannot be shown"), words["notShown.builds-on-pending"]);
    // (The list is drawn again once the request ends: the old one marked.)
    await page.$$eval("ul.quarantine li", (all) => { for (const li of all) li.dataset.stale = "1"; });
    await page.click(`${second} button.accept`);
    const waits = await until(page, (said) => {
      const p = document.querySelector('#view p.warning[role="alert"] span');
      return p?.textContent.includes(said) ? p.title : null;
    }, words["api.batch-builds-on-pending"], "accepting the second first, refused");
    assert.ok(waits.includes(`batch #${batch}`), waits);
    await until(page, () => (document.querySelector("ul.quarantine li[data-quarantine]") && !document.querySelector("ul.quarantine li[data-stale]")) || null, undefined, "the list drawn again");
    // Another coordinator discards the first: this one's click is told so
    // in their language, with the server's English in the title, and the
    // list empties, as the second, typed on the first, goes with it.
    assert.equal((await server.api(`/api/quarantine/${batch}/discard`, { method: "POST" })).status, 200);
    await page.click(`ul.quarantine li[data-quarantine="${batch}"] button.discard`);
    const told = await until(page, (said) => {
      const p = document.querySelector('#view p.warning[role="alert"] span');
      return p?.textContent.includes(said) ? { text: p.textContent, title: p.title } : null;
    }, words["api.batch-decided"], "the batch another coordinator decided");
    assert.match(told.title, /was already discarded/);
    await until(page, () => !document.querySelector("ul.quarantine li[data-quarantine]"), undefined, "the list emptied");
    const judged = await (await server.api("/api/quarantine")).json();
    assert.equal(judged.find((q) => q.device_name === "هاتف حسن")?.status, "discarded");

    // A new project for a city that is not the delegate's: the server never
    // keeps it, so the coordinator's phone does not hold it, yet its
    // preview says what it is and reads its fields as a project's.
    const cities = await (await server.api("/api/records?kind=city")).json();
    const elsewhere = cities.find((c) => c.id !== city.id);
    await delegate.page.evaluate((owner) => window.twinsync.create("project",
      { title: { ar: "مشروع مرفوض", fr: "Projet refusé" }, status: "planned", owner_city: owner }, "new project"), `automerge:${elsewhere.id}`);
    await page.click("button.refresh");
    await until(page, () => document.querySelector("ul.quarantine li[data-quarantine]") || null, undefined, "the refused new record for review");
    await page.click("ul.quarantine li[data-quarantine] details summary");
    const preview = await until(page, () => {
      const status = document.querySelector('ul.quarantine details dt[data-path="/status"]');
      const said = document.querySelector("ul.quarantine details p.new-record")?.textContent;
      return status && said && { said, status: status.nextElementSibling.nextElementSibling.textContent, all: document.querySelector("ul.quarantine details").textContent };
    }, undefined, "the refused new record's preview");
    assert.ok(preview.said.includes(words["kind.project"]) && preview.said.includes(words === STRINGS.fr ? "Projet refusé" : "مشروع مرفوض"), preview.said);
    assert.ok(preview.status.includes(words["value.planned"]), preview.status);
    assert.ok(!preview.all.includes('{"'), preview.all);
    assert.equal((await server.api(`/api/quarantine/${await page.getAttribute("ul.quarantine li[data-quarantine]", "data-quarantine")}/discard`, { method: "POST" })).status, 200);

    // And revokes the phone: listed as revoked, refused by the server.
    page.once("dialog", (d) => d.accept());
    const row = 'table.devices tr:has-text("هاتف حسن")';
    await page.click(`${row} button.revoke`);
    await until(page, () => [...document.querySelectorAll("table.devices tr.revoked")].some((tr) => tr.textContent.includes("هاتف حسن")), undefined, "the device shown revoked");
    // On the phone's screen each device is a card, and still a table row
    // with its cells to a screen reader: roles said outright, as Safari and
    // Firefox drop a table's own once its rows are blocks.
    const cards = await page.evaluate(() => {
      const table = document.querySelector("table.devices");
      const rows = [...table.querySelectorAll("tbody tr")];
      return {
        block: getComputedStyle(rows[0]).display,
        table: table.getAttribute("role"),
        rows: rows.length,
        asRows: rows.filter((tr) => tr.getAttribute("role") === "row").length,
        cells: table.querySelectorAll("tbody td").length,
        asCells: table.querySelectorAll('tbody td[role="cell"]').length,
        groups: [...table.children].map((g) => g.getAttribute("role")),
      };
    });
    assert.deepEqual(cards, { ...cards, block: "block", table: "table", asRows: cards.rows, asCells: cards.cells, groups: ["rowgroup", "rowgroup"] });
    assert.ok(cards.rows >= 2 && cards.cells >= 10, JSON.stringify(cards));
    assert.equal(await page.getByRole("row").filter({ hasText: "هاتف حسن" }).getByRole("cell").count(), 5);
    const devices = await (await server.api("/api/devices")).json();
    assert.ok(devices.find((d) => d.name === "هاتف حسن").revoked_at > 0);
    // The revoked phone says so for as long as it lasts, not "up to date",
    // and its records are read, not written.
    await until(delegate.page, (said) => document.querySelector("#sync-state")?.textContent === said
      && document.querySelector("#sync")?.dataset.state === "error", STRINGS.ar.deviceRevoked, "the phone told it was revoked");
    await show(delegate.page, `#/r/${report.id}`);
    await until(delegate.page, (said) => document.querySelector("#view p.locked")?.textContent === said, STRINGS.ar.lockedRevoked, "the record locked on the revoked phone");
    assert.equal(await delegate.page.locator("#view form.record :is(input, textarea, select, button):not([disabled])").count(), 0, "a control left to change the record with");
    for (const d of [coordinator, delegate]) await d.context.close();
  });
});

test("a coordinator changes a delegate's phone into a coordinator's: the phone signs in again and shows what coordinators see; offline, the lists as last fetched", async () => {
  await withServer(async (server) => {
    const [city] = await (await server.api("/api/records?kind=city")).json();
    const coordinator = await signIn(server, { name: "Coordinator", role: "coordinator" });
    const delegate = await signIn(server, { name: "Phone of Youssef", role: "delegate", cities: [city.id] });
    await upToDate(delegate.page);
    assert.equal(await delegate.page.isHidden('nav.views a[href="#/devices"]'), true, "a delegate has no devices screen");
    const signedInAs = await delegate.page.textContent("#me");

    const { page } = coordinator;
    await upToDate(page);
    await show(page, "#/devices");
    const row = 'table.devices tr:has-text("Phone of Youssef")';
    await page.waitForSelector(`${row} button.edit`);
    // Half an invite typed, a device's form opened and closed: records
    // arriving then do not redraw the screen over what was typed.
    await page.fill('form.invite input[name="name"]', "Phone of Ibrahim");
    await page.click(`${row} button.edit`);
    await page.click("form.edit-device button[type=button]");
    await delegate.page.evaluate((id) => window.twinsync.edit(id, [{ op: "set", path: "/name/fr", value: "Ville jumelée" }], "rename"), city.id);
    await until(page, (id) => window.twinsync.read(id).record?.name?.fr === "Ville jumelée", city.id, "the delegate's change on the coordinator's laptop");
    await page.waitForTimeout(600);
    assert.equal(await page.inputValue('form.invite input[name="name"]'), "Phone of Ibrahim", "the invite being typed was wiped");
    // On a phone's screen, the list fits its width.
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    assert.ok(overflow <= 0, `the devices screen is ${overflow} px wider than the phone`);
    // Its own row says so, and offers no revocation.
    const mine = (await (await server.api("/api/devices")).json()).find((d) => d.name === "Coordinator");
    const own = `table.devices tr[data-device="${mine.id}"]`;
    assert.equal(await page.locator(`${own} span.this-device`).count(), 1);
    assert.equal(await page.locator(`${own} button.revoke`).count(), 0);
    const was = await page.textContent(`${row} td:nth-child(2)`);
    await page.click(`${row} button.edit`);
    // The form shows the device as it is.
    await page.waitForSelector("form.edit-device");
    assert.equal(await page.inputValue('form.edit-device input[name="name"]'), "Phone of Youssef");
    assert.equal(await page.inputValue('form.edit-device select[name="role"]'), "delegate");
    assert.equal(await page.isChecked(`form.edit-device input[type="checkbox"][value="${city.id}"]`), true);
    await page.selectOption('form.edit-device select[name="role"]', "coordinator");
    await page.click('form.edit-device button[type="submit"]');
    await until(page, (was) => {
      const role = [...document.querySelectorAll("table.devices tr[data-device]")].find((tr) => tr.textContent.includes("Phone of Youssef"))?.children[1].textContent;
      return !document.querySelector("form.edit-device") && role && role !== was;
    }, was, "the list showing the new role", 10_000).catch(async (e) => { throw new Error(`${e.message}; the screen says: ${await page.textContent("#view")}`); });
    const devices = await (await server.api("/api/devices")).json();
    const changed = devices.find((d) => d.name === "Phone of Youssef");
    assert.equal(changed.role, "coordinator");
    assert.deepEqual(changed.cities.map((c) => c.replace(/^automerge:/, "")), [city.id.replace(/^automerge:/, "")]);

    // The phone's socket was closed; it signs in again with the same token,
    // asks who it is, and shows the coordinators' screens without a reload.
    await until(delegate.page, () => !document.querySelector('nav.views a[href="#/devices"]').hidden, undefined, "the devices screen offered on the phone");
    const now = await delegate.page.textContent("#me");
    assert.notEqual(now, signedInAs, "the phone says who it is now");
    assert.match(now, /Phone of Youssef/);
    await show(delegate.page, "#/devices");
    await delegate.page.waitForSelector("form.invite");

    // Offline, the coordinator's screen shows the lists as last fetched,
    // says so, and offers nothing that needs the server.
    await coordinator.context.setOffline(true);
    await page.click("button.refresh");
    const note = await until(page, () => document.querySelector("p.stale")?.textContent || null, undefined, "the lists said to be old");
    assert.match(note, /2\d{3}|٢/, "says when they were fetched");
    assert.equal(await page.locator(row).count(), 1, "the device list is still shown");
    assert.equal(await page.isDisabled(`${row} button.edit`), true);
    assert.equal(await page.isDisabled(`${row} button.revoke`), true);
    await coordinator.context.setOffline(false);
    await page.click("button.refresh");
    await until(page, () => document.querySelector("p.stale")?.textContent === "" && !document.querySelector("table.devices button.edit[disabled]"), undefined, "the lists fresh again");
    // A proxy's error page is not the server's answer: the lists as kept.
    await page.route("**/api/devices", (r) => r.fulfill({ status: 502, contentType: "text/html", body: "<h1>Bad gateway</h1>" }));
    await page.click("button.refresh");
    await until(page, () => document.querySelector("p.stale")?.textContent || null, undefined, "the kept list behind a proxy's error page");
    assert.equal(await page.locator(row).count(), 1);
    // The server's own refusal is said as it is.
    await page.unroute("**/api/devices");
    await page.route("**/api/devices", (r) => r.fulfill({ status: 403, contentType: "application/json", body: JSON.stringify({ error: "only coordinators manage devices" }) }));
    await page.click("button.refresh");
    await until(page, () => document.querySelector('#view p.warning[role="alert"]')?.textContent.includes("only coordinators") || null, undefined, "the server's refusal shown");
    await page.unroute("**/api/devices");
    for (const d of [coordinator, delegate]) await d.context.close();
  });
});

test("a phone holding a refused change learns its new role once the server closes its socket", async () => {
  await withServer(async (server) => {
    const [city] = await (await server.api("/api/records?kind=city")).json();
    const delegate = await signIn(server, { name: "Phone of Mariam", role: "delegate", cities: [city.id] });
    const { page } = delegate;
    await upToDate(page);
    // A change to a report it did not write: refused, kept on the phone,
    // and the status shows the refusal from now on.
    const [report] = await (await server.api("/api/records?kind=report")).json();
    const { record } = await (await server.api(`/api/records/${report.id}`)).json();
    const other = ["visit", "field", "progress", "other"].find((v) => v !== record.report_type);
    await page.evaluate(([id, value]) => window.twinsync.edit(id, [{ op: "set", path: "/report_type", value }], "retype"), [report.id, other]);
    await until(page, () => document.querySelector("#sync-refused")?.textContent || null, undefined, "the refusal on the phone");
    const signedInAs = await page.textContent("#me");

    // The device becomes an observer's, which refuses the change too.
    const mine = (await (await server.api("/api/devices")).json()).find((d) => d.name === "Phone of Mariam");
    const res = await server.api(`/api/devices/${mine.id}`, {
      method: "PATCH",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ role: "observer" }),
    });
    assert.equal(res.status, 200, await res.clone().text());
    assert.equal((await res.json()).sockets_closed, 1);
    await until(page, () => document.querySelector("#me").textContent, undefined, "the phone's name shown");
    const now = await until(page, (before) => {
      const text = document.querySelector("#me").textContent;
      return text !== before && text;
    }, signedInAs, "the phone saying it is an observer's now");
    assert.match(now, /Phone of Mariam/);
    // Sent again on the new socket, the change is refused as an observer's.
    const lang = await page.evaluate(() => document.documentElement.lang);
    await until(page, (why) => document.querySelector("#sync-refused")?.textContent.includes(why), STRINGS[lang]["refusal.observer"], "the refusal for an observer");
    await delegate.context.close();
  });
});

test("every screen fits a phone's width, in the three languages", async () => {
  await withServer(async (server) => {
    const { page, context } = await signIn(server, { name: "Coordinator", role: "coordinator" });
    await upToDate(page);
    const kinds = ["city", "person", "agreement", "project", "meeting", "report"];
    const screens = ["#/", "#/dashboard", "#/devices", ...kinds.flatMap((k) => [`#/k/${k}`, `#/new/${k}`])];
    for (const k of kinds) {
      const [r] = await (await server.api(`/api/records?kind=${k}`)).json();
      assert.ok(r, `the demo club has a ${k}`);
      screens.push(`#/r/${r.id}`, `#/r/${r.id}/at/2025-11-01`);
    }
    // Words longer than a phone is wide: an e-mail address, a web address
    // in the minutes, a compound name; read-only as they are at a date.
    const long = await page.evaluate(async () => {
      const person = await window.twinsync.create("person", {
        name: { fr: "Secrétariat-de-la-coopération-décentralisée-de-la-commune-urbaine-de-Smara" },
        contacts: [{ id: "c1", kind: "email", value: "secretariat.cooperation-decentralisee@commune-urbaine-smara.ma" }],
      }, "new person");
      const meeting = await window.twinsync.create("meeting", {
        title: { fr: "Réunion-de-coordination-des-partenaires-de-jumelage" }, date: "2026-11-30",
        minutes: "Compte rendu : https://commune-urbaine-smara.ma/cooperation/jumelages/2026/novembre/compte-rendu-reunion-coordination",
      }, "new meeting");
      return [person, meeting];
    });
    const day = new Date().toISOString().slice(0, 10);
    for (const id of long) screens.push(`#/r/${id}`, `#/r/${id}/at/${day}`);
    screens.push("#/k/person", "#/k/meeting");
    // What each screen draws once its data is in, so the width is taken then.
    const drawn = { "#/dashboard": "#view table", "#/devices": "table.devices tr[data-device]" };
    const wide = [];
    for (const lang of ["ar", "fr", "en"]) {
      await page.click(`[data-lang="${lang}"]`);
      for (const screen of screens) {
        await show(page, screen);
        if (drawn[screen]) await page.waitForSelector(drawn[screen]);
        await page.waitForTimeout(250);
        const over = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
        if (over > 0) wide.push(`${lang} ${screen}: ${over} px`);
      }
    }
    assert.deepEqual(wide, [], "screens wider than the phone");
    await context.close();
  });
});

test("a report's links show the records by title, and any record can be linked", async () => {
  await withServer(async (server) => {
    const { page, context } = await signIn(server, { name: "Coordinator", role: "coordinator" });
    await upToDate(page);
    await page.click('[data-lang="en"]');
    const reports = await (await server.api("/api/records?kind=report")).json();
    let linked;
    for (const r of reports) {
      const { record } = await (await server.api(`/api/records/${r.id}`)).json();
      if (record.links?.length) { linked = { id: r.id, links: record.links }; break; }
    }
    assert.ok(linked, "the demo club has a report with links");
    await show(page, `#/r/${linked.id}`);
    await page.waitForSelector(".chips.links .chip a");
    const titles = await page.$$eval(".chips.links .chip a", (as) => as.map((a) => a.textContent));
    assert.equal(titles.length, linked.links.length);
    for (const title of titles) assert.doesNotMatch(title, /automerge:/, "a link shown as its address");
    // A link opens the record it names.
    const hrefs = await page.$$eval(".chips.links .chip a", (as) => as.map((a) => a.getAttribute("href")));
    assert.deepEqual(hrefs.sort(), linked.links.map((l) => `#/r/${l.replace(/^automerge:/, "")}`).sort());

    // A project, chosen from the list grouped by kind, joins the links once
    // added: choosing alone (as a keyboard's arrow keys do) writes nothing.
    const [project] = await (await server.api("/api/records?kind=project")).json();
    await page.selectOption(".chips.links select", `automerge:${project.id}`);
    await page.waitForTimeout(300);
    assert.equal(await page.evaluate((id) => window.twinsync.read(id).record.links.length, linked.id), linked.links.length, "choosing wrote a link");
    await page.click(".chips.links button.add-link");
    await until(page, ([id, url]) => window.twinsync.read(id).record.links.includes(url), [linked.id, `automerge:${project.id}`], "the project linked");
    await until(page, (n) => document.querySelectorAll(".chips.links .chip").length === n, linked.links.length + 1, "the new link shown");
    assert.ok(await page.evaluate(() => document.activeElement?.matches(".chips.links select")), "the focus is back on the list of records");

    // Read-only, as the report stood on a day, its links still open records.
    await show(page, `#/r/${linked.id}/at/2030-01-01`);
    await until(page, (n) => document.querySelectorAll(".chips.links .chip a").length === n || null, linked.links.length + 1, "the links of the report as it stood");
    assert.equal(await page.locator(".chips.links button").count(), 0, "nothing to remove in a read-only view");
    await context.close();
  });
});

test("the app in Arabic and in French: one tap switches, the layout mirrors, search ignores Arabic diacritics", async () => {
  await withServer(async (server, dir) => {
    const { page, context } = await signIn(server, { name: "Coordinator", role: "coordinator" });
    await upToDate(page);
    // Lists redraw at most every 300 ms: the picture waits for every record.
    await until(page, () => document.querySelectorAll("#records li").length === window.twinsync.list().length, undefined, "every record listed");
    assert.equal(await page.evaluate(() => document.documentElement.dir), "rtl");
    mkdirSync(ARTEFACTS, { recursive: true });
    const ar = await page.screenshot({ path: join(ARTEFACTS, "app-ar.png"), fullPage: true });

    await page.click('[data-lang="fr"]');
    assert.equal(await page.evaluate(() => document.documentElement.dir), "ltr");
    assert.equal(await page.evaluate(() => document.documentElement.lang), "fr");
    const heading = await page.$eval('section[data-kind="city"] h2', (e) => e.textContent);
    assert.match(heading, /^Villes \(\d+\)$/);
    const fr = await page.screenshot({ path: join(ARTEFACTS, "app-fr.png"), fullPage: true });
    for (const [name, shot] of [["app-ar.png", ar], ["app-fr.png", fr]]) {
      assert.ok(statSync(join(ARTEFACTS, name)).size > 1000, `${name} is not empty`);
      assert.ok(shot.length > 1000);
    }
    assert.ok(!ar.equals(fr), "the two screenshots differ");
    // The side of the kind tabs mirrors: in French they start from the left.
    const left = await page.$eval("nav.kinds a", (a) => a.getBoundingClientRect().left);
    assert.ok(left < 60, `French tabs start on the left (at ${left})`);

    // Search: tatweel, harakat and a hamza variant still find Smara.
    await page.click('[data-lang="ar"]');
    await page.fill("#search", "السَّـمارة");
    const found = await until(page, () => {
      const items = [...document.querySelectorAll('#records section[data-kind="city"] li')].map((li) => li.textContent);
      return items.length ? items : null;
    }, undefined, "the search results");
    assert.ok(found.some((t) => t.includes("السمارة")), JSON.stringify(found));
    assert.ok(found.length < 4, "other cities are filtered out");
    // A choice is found by its words in any of the three languages, and a
    // field's name finds nothing.
    const [agreement] = (await (await server.api("/api/records?kind=agreement")).json()).filter((a) => a.status);
    // (In Arabic: the French word for a status may be inside its stored code.)
    await page.fill("#search", STRINGS.ar[`value.${agreement.status}`]);
    await until(page, (id) => document.querySelector(`#records li[data-id="${id}"]`), agreement.id, "an agreement found by its status in Arabic");
    await page.fill("#search", "report_type");
    await until(page, () => document.querySelector("#records p.note") && !document.querySelector("#records li"), undefined, "nothing found by a field's name");
    // Said to a screen reader, from a region the redraw does not replace.
    assert.ok((await page.textContent("#view-said")).startsWith(STRINGS.ar.found.split("{n}")[0]), await page.textContent("#view-said"));
    await page.fill("#search", "");
    await until(page, () => document.querySelector("#view-said").textContent === "", undefined, "nothing said without a search");
    writeFileSync(join(ARTEFACTS, "README.txt"), "Screenshots of the field app saved by tests/js/browser/app.test.mjs.\n");
    await context.close();
  });
});

test("a coordinator creates a record with a form, marks a milestone done, reads its history and the record at a date, and exports", async () => {
  await withServer(async (server) => {
    const { page, context } = await signIn(server, { name: "Coordinator Amina", role: "coordinator" });
    await upToDate(page);
    // Create a person through the form.
    await show(page, "#/new/person");
    await page.fill('input[name="name.ar"]', "سلمى بنعلي");
    await page.fill('input[name="name.fr"]', "Salma Benali");
    await page.click('form.new button[type="submit"]');
    await until(page, () => location.hash.startsWith("#/r/"), undefined, "the new record shown");
    const id = await page.evaluate(() => location.hash.split("/")[2]);
    await until(page, () => document.querySelector("#sync").dataset.state === "up-to-date", undefined, "the new record synced");
    const created = await (await server.api(`/api/records/${id}`)).json();
    assert.deepEqual(created.record.name, { ar: "سلمى بنعلي", fr: "Salma Benali" });

    // Mark a milestone done on a project.
    const projects = await (await server.api("/api/records?kind=project")).json();
    let target;
    for (const p of projects) {
      const { record } = await (await server.api(`/api/records/${p.id}`)).json();
      const m = record.milestones.find((m) => m.status !== "done");
      if (m) { target = { id: p.id, m }; break; }
    }
    assert.ok(target, "a project with an open milestone");
    await show(page, `#/r/${target.id}`);
    await page.click(`li[data-item="${target.m.id}"] button.done`);
    await until(page, () => document.querySelector("#sync").dataset.state === "up-to-date", undefined, "the milestone synced");
    const done = await until(page, async ([id, item]) => {
      const res = await fetch(`/api/records/${id}`, { headers: { authorization: `Bearer ${localStorage.getItem("token")}` } });
      const m = (await res.json()).record.milestones.find((m) => m.id === item);
      return m.status === "done" ? m : null;
    }, [target.id, target.m.id], "the milestone done on the server");
    assert.match(done.done_on, /^\d{4}-\d{2}-\d{2}$/);
    // The redrawn screen keeps the focus on the item marked done.
    assert.equal(await page.evaluate((item) => document.activeElement?.matches(`li[data-item="${item}"] button.remove`), target.m.id), true);
    // Removing another milestone asks first, naming it; dismissed, it stays.
    const { record: project } = await (await server.api(`/api/records/${target.id}`)).json();
    const other = project.milestones.find((m) => m.id !== target.m.id);
    assert.ok(other, "a second milestone");
    const asked = [];
    page.once("dialog", (d) => { asked.push(d.message()); d.dismiss(); });
    await page.click(`li[data-item="${other.id}"] button.remove`);
    assert.equal(asked.length, 1, "no question before removing");
    assert.ok(await page.$(`li[data-item="${other.id}"]`), "kept when the question is dismissed");
    page.once("dialog", (d) => { asked.push(d.message()); d.accept(); });
    await page.click(`li[data-item="${other.id}"] button.remove`);
    await until(page, (item) => !document.querySelector(`li[data-item="${item}"]`), other.id, "the milestone removed");
    assert.equal(await page.evaluate(() => document.activeElement?.matches('[data-path="/milestones"] button.add')), true, "the focus on the list's Add button");
    // Adding one puts the focus in its first field.
    const before = await page.$$eval('[data-path="/milestones"] ol.items > li', (items) => items.length);
    await page.click('[data-path="/milestones"] button.add');
    await until(page, (n) => document.querySelectorAll('[data-path="/milestones"] ol.items > li').length === n + 1, before, "the new milestone");
    assert.equal(await page.evaluate(() => !!document.activeElement?.closest('[data-path="/milestones"] ol.items > li:last-child')), true, "the focus in the new milestone");
    assert.ok(asked[1].includes(other.title), `${asked[1]} names ${other.title}`);
    await until(page, async ([id, item]) => {
      const res = await fetch(`/api/records/${id}`, { headers: { authorization: `Bearer ${localStorage.getItem("token")}` } });
      return !(await res.json()).record.milestones.some((m) => m.id === item);
    }, [target.id, other.id], "the milestone removed on the server");
    // The history names the device that made the change, and what it touched.
    await page.reload();
    await show(page, `#/r/${target.id}`);
    const entry = await until(page, () => {
      const li = [...document.querySelectorAll("ol.history li")].find((li) => li.textContent.includes("Coordinator Amina"));
      return li?.textContent;
    }, undefined, "the change in the history");
    assert.match(entry, /الإنجاز|المراحل|milestones/);

    // The new person as it stood before it existed, then today.
    await show(page, `#/r/${id}/at/2020-01-01`);
    await page.waitForSelector(".asof-banner");
    assert.ok(await page.$eval("#view", (v) => v.textContent.includes("لم يكن هذا السجل موجودا")));
    await show(page, `#/r/${id}/at/${new Date().toISOString().slice(0, 10)}`);
    await until(page, () => document.querySelector("#view")?.textContent.includes("سلمى بنعلي"), undefined, "the record today");

    // The name typed offline on a phone whose clock says three hours ago,
    // a change a keystroke.
    await page.context().setOffline(true);
    await page.clock.setFixedTime(Date.now() - 3 * 3600_000);
    for (const name of ["Salma B.", "Salma Be.", "Salma Ben.", "Salma Benali."]) {
      await page.evaluate(([id, value]) => window.twinsync.edit(id, [{ op: "set", path: "/name/fr", value }], "typing"), [id, name]);
    }
    await page.clock.setFixedTime(Date.now());
    // Times are whole seconds: the typing arrives a second after the
    // milestones' last change was written.
    await page.waitForTimeout(1100);
    await page.context().setOffline(false);
    await until(page, async (id) => {
      const res = await fetch(`/api/records/${id}`, { headers: { authorization: `Bearer ${localStorage.getItem("token")}` } });
      return (await res.json()).record.name.fr === "Salma Benali." || null;
    }, id, "the name typed offline on the server");

    // The dashboard's recent changes name who delivered each: the device
    // for the milestone, the server for the demo club it made itself.
    await show(page, "#/dashboard");
    const recent = await until(page, (said) => {
      const rows = [...document.querySelectorAll("ol.recent li .who")].map((w) => w.textContent);
      return rows.includes("Coordinator Amina") && rows.includes(said) ? rows : null;
    }, STRINGS.ar.byServer, "the recent changes named");
    assert.ok(!recent.includes(STRINGS.ar.unknownAuthor), `no change left to an unknown device: ${recent.join(" | ")}`);
    // The four keystrokes are one line, first as they arrived now, saying
    // when they were written and when they arrived.
    const typed = await page.$$eval("ol.recent li", (items, id) => items
      .filter((li) => li.querySelector(`a[href="#/r/${id}"]`))
      .map((li) => li.textContent), id);
    assert.equal(typed.length, 2, `the creation and the typing: ${typed.join(" | ")}`);
    assert.ok(typed[0].includes("×٤") || typed[0].includes("×4"), typed[0]);
    assert.ok(typed[0].includes(STRINGS.ar.receivedAt.replace(" {time}", "")), typed[0]);
    assert.equal(await page.$eval("ol.recent li", (li) => li.querySelector("a")?.getAttribute("href")), `#/r/${id}`, `the typing first, as it arrived last: ${await page.$$eval("ol.recent li", (l) => l.slice(0, 4).map((li) => li.textContent).join(" | "))}`);

    // Exports: every record as JSON, and agreements as CSV.
    await page.waitForSelector("#export-json");
    const [json] = await Promise.all([page.waitForEvent("download"), page.click("#export-json")]);
    const records = JSON.parse((await streamBytes(await json.createReadStream())).toString("utf8"));
    const all = await (await server.api("/api/records")).json();
    assert.equal(records.length, all.length);
    assert.ok(records.some((r) => r.id === id && r.record.name.fr === "Salma Benali."));
    await page.selectOption("#csv-separator", ";");
    const heights = await page.$$eval("#export button", (all) => all.map((b) => b.getBoundingClientRect().height));
    assert.ok(heights.every((h) => h >= 36), `export buttons a thumb's size: ${heights}`);
    const [csv] = await Promise.all([page.waitForEvent("download"), page.click('#export button[data-kind="agreement"]')]);
    const bytes = await streamBytes(await csv.createReadStream());
    assert.deepEqual([...bytes.subarray(0, 3)], [0xef, 0xbb, 0xbf], "a byte-order mark, so spreadsheets read Arabic as UTF-8");
    const lines = bytes.subarray(3).toString("utf8").trim().split("\r\n");
    const agreements = all.filter((r) => r.kind === "agreement");
    assert.equal(lines.length, agreements.length + 1);
    // Semicolons, as chosen; headers in the coordinator's language.
    const ar = STRINGS.ar;
    assert.ok(lines[0].startsWith(`"${ar.exportId}";"${ar["field.title"]} (العربية)";"${ar["field.title"]} (Français)";"${ar["field.title"]} (English)"`), lines[0]);
    // The parties by name, not by their record's address; the status and
    // domains as the forms say them.
    const cells = (line) => line.slice(1, -1).split('";"');
    const column = (name) => cells(lines[0]).indexOf(ar[`field.${name}`]);
    const [parties, status, domains] = ["parties", "status", "domains"].map(column);
    assert.ok(parties > 0 && status > 0 && domains > 0, lines[0]);
    const statuses = ["draft", "approved", "signed", "in_force", "suspended", "ended"].map((s) => ar[`value.${s}`]);
    for (const line of lines.slice(1)) {
      // Two names, Smara one of them.
      assert.equal(cells(line)[parties].split(" | ").length, 2, line);
      assert.ok(cells(line)[parties].split(" | ").includes("السمارة"), line);
      assert.ok(!line.includes("automerge:"), line);
      assert.ok(statuses.includes(cells(line)[status]), `${cells(line)[status]} in ${line}`);
      for (const d of cells(line)[domains].split(" | ").filter(Boolean)) assert.ok(/\p{Script=Arabic}/u.test(d), `${d} in ${line}`);
    }
    // A list is one cell, an item a line, each by its fields' labels and
    // values: the milestone marked done is there, done.
    const [projectCsv] = await Promise.all([page.waitForEvent("download"), page.click('#export button[data-kind="project"]')]);
    const projectLines = (await streamBytes(await projectCsv.createReadStream())).subarray(3).toString("utf8").trim().split("\r\n");
    const milestones = cells(projectLines[0]).indexOf(ar["field.milestones"]);
    assert.ok(milestones > 0, projectLines[0]);
    const row = projectLines.find((line) => line.startsWith(`"${target.id}"`));
    assert.ok(row, projectLines.join("\n"));
    const items = cells(row)[milestones].split("\n");
    const item = items.find((i) => i.includes(target.m.title));
    assert.ok(item?.includes(`${ar["field.status"]}${ar.labelSeparator}${ar["value.done"]}`), items.join("\n"));
    // Dates in a list's cell as in a date's: ISO, as spreadsheets sort.
    const dated = projectLines.slice(1).flatMap((line) => cells(line)[milestones].split("\n"))
      .flatMap((i) => [...i.matchAll(new RegExp(`(?:${ar["field.due"]}|${ar["field.done_on"]})${ar.labelSeparator}([^·]*)`, "g"))].map((m) => m[1].trim()));
    assert.ok(dated.length > 0, "the milestones' dates");
    for (const d of dated) assert.match(d, /^\d{4}-\d{2}-\d{2}$/, dated.join(" | "));
    await context.close();
  });
});

test("a CSV export splits its columns as the computer's spreadsheet does, whatever the app's language, and as the coordinator chose", async () => {
  await withServer(async (server) => {
    const firstLine = async (page) => {
      const [csv] = await Promise.all([page.waitForEvent("download"), page.click('#export button[data-kind="city"]')]);
      return (await streamBytes(await csv.createReadStream())).subarray(3).toString("utf8").split("\r\n")[0];
    };
    const between = (line) => line.match(/^"[^"]*"(.)"/)?.[1];
    // A computer set to French, the app in English: Excel there splits at
    // semicolons. One set to American English, the app in Arabic: commas.
    // A browser set to Arabic as written in Saudi Arabia writes decimals
    // with Arabic's own mark, where others write a comma: semicolons too.
    for (const [locale, lang, sep] of [["fr-MA", "en", ";"], ["en-US", "ar", ","], ["ar-SA", "fr", ";"]]) {
      const { page, context } = await signIn(server, { name: `Coordinator ${locale}`, role: "coordinator" }, { locale });
      await upToDate(page);
      await page.click(`[data-lang="${lang}"]`);
      await show(page, "#/dashboard");
      await page.waitForSelector("#csv-separator");
      assert.equal(await page.inputValue("#csv-separator"), sep, locale);
      assert.equal(between(await firstLine(page)), sep, locale);
      // Chosen otherwise, it stays chosen on this computer.
      const other = sep === ";" ? "," : ";";
      await page.selectOption("#csv-separator", other);
      await page.reload();
      await show(page, "#/dashboard");
      await page.waitForSelector("#csv-separator");
      assert.equal(await page.inputValue("#csv-separator"), other, `${locale} after a reload`);
      assert.equal(between(await firstLine(page)), other, `${locale} after a reload`);
      await context.close();
    }
  });
});

test("a sign-in refused for a reason the app has no words for shows the server's English set apart in the Arabic line", async () => {
  await withServer(async (server) => {
    const { page, context } = await phone(browser);
    await page.route("**/api/invites/redeem", (route) => route.fulfill({
      status: 400, contentType: "application/json", body: JSON.stringify({ error: "the code is malformed." }),
    }));
    await openInvite(page, `${server.url}/#invite=abc`);
    const said = await until(page, () => {
      const note = document.querySelector("#view p.note");
      return note?.textContent.includes("malformed") ? {
        text: note.textContent, isolated: note.querySelector("bdi")?.textContent ?? null,
      } : null;
    }, undefined, "the refusal said");
    assert.ok(said.text.startsWith(STRINGS.ar.signinFailed), JSON.stringify(said));
    assert.equal(said.isolated, "the code is malformed.");
    await context.close();
  });
});

test("a title in one language says so, for a screen reader's voice: an Arabic title in the French app, a French one in the Arabic app", async () => {
  await withServer(async (server) => {
    const { page, context } = await signIn(server, { name: "Coordinator", role: "coordinator" });
    await upToDate(page);
    const [arabic, french] = await page.evaluate(async () => [
      await window.twinsync.create("meeting", { title: { ar: "مجلس دجنبر" }, date: "2026-12-05" }, "new meeting"),
      await window.twinsync.create("meeting", { title: { fr: "Conseil de décembre" }, date: "2026-12-06" }, "new meeting"),
    ]);
    await page.click('[data-lang="fr"]');
    await show(page, "#/k/meeting");
    assert.deepEqual(await until(page, (id) => (document.querySelector(`#records li a[href="#/r/${id}"]`) ? { listed: document.querySelector(`#records li a[href="#/r/${id}"] bdi`)?.lang } : null), arabic, "the Arabic meeting listed"), { listed: "ar" });
    await show(page, `#/r/${arabic}`);
    assert.equal(await until(page, () => document.querySelector("h2.record-title bdi")?.lang || null, undefined, "the heading"), "ar");
    await page.click('[data-lang="ar"]');
    await show(page, "#/k/meeting");
    assert.deepEqual(await until(page, (id) => (document.querySelector(`#records li a[href="#/r/${id}"]`) ? { listed: document.querySelector(`#records li a[href="#/r/${id}"] bdi`)?.lang } : null), french, "the French meeting listed"), { listed: "fr" });
    await context.close();
  });
});

test("a required field left empty is said in the app's language, not the browser's", async () => {
  await withServer(async (server) => {
    // A computer set to French; the app in Arabic.
    const { page, context } = await signIn(server, { name: "Coordinator", role: "coordinator" }, { locale: "fr-FR" });
    await upToDate(page);
    await show(page, "#/new/city");
    await page.waitForSelector('form.new input[name="name.ar"]');
    await page.fill('form.new input[name="name.ar"]', "الداخلة");
    await page.click('form.new button[type="submit"]');
    const country = 'form.new input[name="country"]';
    assert.equal(await page.$eval(country, (i) => i.validationMessage), STRINGS.ar.fillThis);
    assert.equal(await page.evaluate(() => location.hash), "#/new/city", "not created");
    // Typed in, the field is valid again, and the city is made.
    await page.fill(country, "المغرب");
    assert.equal(await page.$eval(country, (i) => i.validity.valid), true);
    await page.click('form.new button[type="submit"]');
    await until(page, () => location.hash.startsWith("#/r/") || null, undefined, "the new city shown");
    await context.close();
  });
});

test("an invite is used only when the person presses Join: a page a mail filter opens spends nothing, and a signed-in phone is told what joining does", async () => {
  await withServer(async (server) => {
    const invite = async (name) => {
      const res = await server.api("/api/invites", {
        method: "POST", headers: { "content-type": "application/json" },
        body: JSON.stringify({ name, role: "observer" }),
      });
      return (await res.json()).link;
    };
    const first = await invite("Bureau de Smara");
    const { page, context } = await phone(browser);
    const redeemed = [];
    page.on("request", (r) => { if (r.url().endsWith("/api/invites/redeem")) redeemed.push(r.url()); });
    // Opened, as a mail filter's browser would open it: nothing is sent.
    await page.goto(first);
    await page.waitForSelector("button.join");
    await page.waitForTimeout(500);
    assert.equal(redeemed.length, 0, "the invite is not sent before Join");
    assert.equal(await page.evaluate(() => localStorage.getItem("token")), null);
    assert.equal(await page.$(".join p.warning"), null, "nothing to warn a phone not signed in of");
    await page.click("button.join");
    await until(page, () => document.querySelectorAll("#records li").length > 0 || null, undefined, "the records listed");
    assert.equal(redeemed.length, 1);
    const token = await page.evaluate(() => localStorage.getItem("token"));
    // Another invite opened on this signed-in phone says what joining
    // would do, and sends nothing until pressed.
    await page.goto(await invite("Téléphone prêté"));
    await page.waitForSelector("button.join");
    assert.equal(await page.textContent(".join p.warning"), STRINGS.ar.joinReplaces);
    // Said in the language the person switches to.
    await page.click('[data-lang="fr"]');
    assert.equal(await page.textContent(".join p.warning"), STRINGS.fr.joinReplaces);
    await page.waitForTimeout(300);
    assert.equal(redeemed.length, 1);
    assert.equal(await page.evaluate(() => localStorage.getItem("token")), token);
    // Not now: the phone goes on as it was, the invite left unused.
    await page.click("button.not-now");
    await until(page, () => document.querySelectorAll("#records li").length > 0 || null, undefined, "the records listed again");
    assert.equal(await page.evaluate(() => location.hash.includes("invite=")), false);
    assert.equal(redeemed.length, 1);
    assert.equal(await page.evaluate(() => localStorage.getItem("token")), token);
    await context.close();
  });
});

async function streamBytes(stream) {
  const chunks = [];
  for await (const c of stream) chunks.push(c);
  return Buffer.concat(chunks);
}

test("a change arriving while a coordinator reads a record's history is named by the device that sent it", async () => {
  await withServer(async (server) => {
    const [meeting] = await (await server.api("/api/records?kind=meeting")).json();
    const [amina, bachir] = await Promise.all(["Coordinator Amina", "Coordinator Bachir"].map((name) =>
      signIn(server, { name, role: "coordinator" })));
    await upToDate(bachir.page);
    await show(bachir.page, `#/r/${meeting.id}`);
    // The history is drawn, with who delivered each change as the server said.
    await until(bachir.page, (said) => document.querySelector("ol.history li .who")?.textContent === said || null,
      STRINGS.ar.byServer, "the history with the demo data's author");
    await amina.page.evaluate((id) => window.twinsync.edit(id, [{ op: "set", path: "/title/fr", value: "Réunion du conseil (reportée)" }], "title"), meeting.id);
    await until(bachir.page, () => document.querySelector("ol.history li .who")?.textContent === "Coordinator Amina" || null,
      undefined, "the new change named by Amina's phone, not as this one's");
    for (const p of [amina, bachir]) await p.context.close();
  });
});

test("a record made while the sync is paused names this device in its history, then the device's name once the server has it", async () => {
  await withServer(async (server) => {
    const { page, context } = await signIn(server, { name: "Secrétariat de Smara", role: "coordinator" });
    await upToDate(page);
    const lang = await page.evaluate(() => document.documentElement.lang);
    await page.click("#sync-toggle");
    await until(page, () => window.twinsync.status().link === "offline" || null, undefined, "the sync paused");
    const id = await page.evaluate(() => window.twinsync.create("meeting", { title: { fr: "Réunion du bureau" }, date: "2026-12-08" }, "new"));
    await show(page, `#/r/${id}`);
    // The server answers, but does not have the record yet.
    await until(page, (said) => document.querySelector("ol.history li .who")?.textContent === said || null,
      STRINGS[lang].byThisDevice, "this device, not sent yet");
    await page.click("#sync-toggle");
    await until(page, () => document.querySelector("ol.history li .who")?.textContent === "Secrétariat de Smara" || null,
      undefined, "the device's name once the server has the record, with no redraw asked");
    await context.close();
  });
});

test("a run of changes in the history shows each field before and after, and the words of the minutes added and removed", async () => {
  await withServer(async (server) => {
    const { page, context } = await signIn(server, { name: "Coordinator Amina", role: "coordinator" });
    await upToDate(page);
    const minutes = "Le conseil a décidé : قرر المجلس تمويل البئر في طانطان. Suite au prochain conseil.";
    const id = await page.evaluate((minutes) => window.twinsync.create("meeting",
      { title: { fr: "Conseil", ar: "المجلس" }, date: "2026-11-20", minutes }, "new meeting"), minutes);
    // One change: a word of the Arabic minutes replaced, the French title lengthened.
    await page.evaluate(async (id) => {
      const text = window.twinsync.read(id).record.minutes;
      const at = text.indexOf("البئر");
      await window.twinsync.edit(id, [
        { op: "splice_text", path: "/minutes", index: at, delete: "البئر".length, insert: "المدرسة" },
        { op: "set", path: "/title/fr", value: "Conseil élargi" },
      ], "after the vote");
    }, id);
    await show(page, `#/r/${id}`);
    await until(page, () => document.querySelector("ol.history li details.changes"), undefined, "the history");
    // The newest run first; its changes are worked out when it is opened.
    assert.equal(await page.$("ol.history li:first-child details.changes dl"), null);
    await page.click("ol.history li:first-child details.changes summary");
    const shown = await until(page, () => {
      const dl = document.querySelector("ol.history li:first-child details.changes dl");
      if (!dl) return null;
      const rows = [...dl.querySelectorAll("dt")].map((dt) => ({
        path: dt.dataset.path,
        added: [...dt.nextElementSibling.querySelectorAll("ins")].map((e) => e.textContent),
        removed: [...dt.nextElementSibling.querySelectorAll("del")].map((e) => e.textContent),
        text: dt.nextElementSibling.textContent,
      }));
      return rows.length === 2 ? rows : null;
    }, undefined, "the run's two fields");
    const byPath = Object.fromEntries(shown.map((r) => [r.path, r]));
    assert.deepEqual(Object.keys(byPath).sort(), ["/minutes", "/title/fr"]);
    assert.ok(byPath["/minutes"].removed.join("").includes("البئر"), JSON.stringify(byPath));
    assert.ok(byPath["/minutes"].added.join("").includes("المدرسة"), JSON.stringify(byPath));
    assert.ok(byPath["/minutes"].text.includes("تمويل"), "the words around the change");
    assert.ok(!byPath["/minutes"].removed.join("").includes("تمويل"), "only the word replaced is removed");
    assert.ok(byPath["/title/fr"].added.join("").includes("élargi"), JSON.stringify(byPath));
    // The creation: everything added, nothing removed.
    await page.click("ol.history li:last-child details.changes summary");
    const created = await until(page, () => {
      const dl = document.querySelector("ol.history li:last-child details.changes dl");
      return dl ? { removed: dl.querySelectorAll("del").length, text: dl.textContent } : null;
    }, undefined, "the creation's fields");
    assert.equal(created.removed, 0);
    assert.ok(created.text.includes("طانطان"), created.text);
    await context.close();
  });
});

test("two people typing in turn in the same minutes are each their own line, and each line shows its writer's words alone", async () => {
  await withServer(async (server) => {
    const [meeting] = await (await server.api("/api/records?kind=meeting")).json();
    const [amina, bachir] = await Promise.all(["Coordinator Amina", "Coordinator Bachir"].map((name) =>
      signIn(server, { name, role: "coordinator" })));
    for (const p of [amina, bachir]) await upToDate(p.page);
    // Each appends a word, waits until the other phone has it, in turn.
    const append = async (p, word) => {
      await p.page.evaluate(async ([id, word]) => {
        const text = window.twinsync.read(id).record.minutes ?? "";
        await window.twinsync.edit(id, [{ op: "splice_text", path: "/minutes", index: text.length, delete: 0, insert: ` ${word}` }], "type");
      }, [meeting.id, word]);
      for (const q of [amina, bachir]) {
        await until(q.page, ([id, word]) => (window.twinsync.read(id).record.minutes ?? "").endsWith(` ${word}`) || null,
          [meeting.id, word], `${word} on both phones`);
      }
    };
    await append(amina, "alpha");
    await append(bachir, "بيتا");
    await append(amina, "gamma");
    await show(amina.page, `#/r/${meeting.id}`);
    await until(amina.page, () => document.querySelectorAll("ol.history li details.changes").length >= 3 || null, undefined, "the history");
    // Newest first: Amina's gamma, Bachir's word, Amina's alpha, each alone.
    const lines = [];
    for (let i = 1; i <= 3; i++) {
      await amina.page.click(`ol.history li:nth-child(${i}) details.changes summary`);
      lines.push(await until(amina.page, (i) => {
        const details = document.querySelector(`ol.history li:nth-child(${i}) details.changes`);
        const added = [...details.querySelectorAll("ins")].map((e) => e.textContent).join("");
        return details.querySelector("dl") ? { added, others: !!details.querySelector(".others") } : null;
      }, i, `line ${i} opened`));
    }
    assert.deepEqual(lines.map((l) => l.added.trim()), ["gamma", "بيتا", "alpha"]);
    assert.deepEqual(lines.map((l) => l.others), [false, false, false]);
    for (const p of [amina, bachir]) await p.context.close();
  });
});

test("read-only minutes in Arabic and French: each paragraph runs and sits as its own language does, on screen and printed", async () => {
  await withServer(async (server) => {
    const coordinator = await signIn(server, { name: "Coordinator", role: "coordinator" });
    await upToDate(coordinator.page);
    const id = await coordinator.page.evaluate(() => window.twinsync.create("meeting",
      { title: { ar: "مجلس دجنبر" }, date: "2026-12-04", minutes: "محضر الاجتماع\nLe conseil décide." }, "new meeting"));
    await until(coordinator.page, async (id) => (await fetch(`/api/records/${id}`, { headers: { authorization: `Bearer ${localStorage.getItem("token")}` } })).ok || null, id, "the meeting on the server");
    await coordinator.context.close();
    // An observer reads it in the Arabic app: nothing to type into.
    const { page, context } = await signIn(server, { name: "Observer", role: "observer" });
    await upToDate(page);
    await show(page, `#/r/${id}`);
    // Where each word lies in its value's box: the Arabic paragraph flush
    // right, the French one flush left and read left to right.
    const placed = (sheet) => {
      const at = (path, word) => {
        const value = document.querySelector(`${sheet} .field[data-path="${path}"] .value`);
        if (!value || !value.getClientRects().length) return null;
        const walker = document.createTreeWalker(value, NodeFilter.SHOW_TEXT);
        for (let node; (node = walker.nextNode());) {
          const i = node.data.indexOf(word);
          if (i < 0) continue;
          const range = document.createRange();
          range.setStart(node, i);
          range.setEnd(node, i + word.length);
          const box = value.getBoundingClientRect();
          const r = range.getBoundingClientRect();
          return { fromLeft: r.left - box.left, fromRight: box.right - r.right, left: r.left };
        }
        return null;
      };
      const minutes = [at("/minutes", "محضر الاجتماع"), at("/minutes", "Le"), at("/minutes", "décide.")];
      const title = at("/title", "مجلس دجنبر");
      return minutes.every(Boolean) && title ? { arabic: minutes[0], le: minutes[1], end: minutes[2], title } : null;
    };
    for (const [sheet, media] of [["#view", "screen"], ["#print", "print"]]) {
      if (media === "print") {
        await page.evaluate(() => { window.print = () => {}; });
        await page.click("button.print");
        await page.emulateMedia({ media: "print" });
      }
      const at = await until(page, placed, sheet, `the minutes shown in ${sheet}`);
      const why = `${sheet}: ${JSON.stringify(at)}`;
      assert.ok(at.arabic.fromRight < 8 && at.arabic.fromLeft > 40, why);
      assert.ok(at.title.fromRight < 8 && at.title.fromLeft > 40, why);
      assert.ok(at.le.fromLeft < 8 && at.le.fromRight > 40, why);
      assert.ok(at.le.left < at.end.left, why);
    }
    await page.emulateMedia({ media: "screen" });
    await context.close();
  });
});

test("a meeting prints on its own: the club, its title and every line of its minutes, without the app around it", async () => {
  await withServer(async (server) => {
    const { page, context } = await signIn(server, { name: "Coordinator Amina", role: "coordinator" });
    await upToDate(page);
    // Minutes longer than the form's text box shows, in two languages.
    const lines = Array.from({ length: 40 }, (_, i) => `${i + 1}. قرر المجلس — le conseil décide, point ${i + 1}.`);
    const id = await page.evaluate((minutes) => window.twinsync.create("meeting",
      { title: { fr: "Conseil de novembre", ar: "مجلس نونبر" }, date: "2026-11-20", minutes,
        decisions: [{ id: "d1", text: "تمويل البئر" }] }, "new meeting"), lines.join("\n"));
    await show(page, `#/r/${id}`);
    // A last line typed into the form, then Print at once: it is printed.
    await page.click('[data-path="/minutes"] textarea');
    await page.keyboard.press("Control+End");
    await page.keyboard.type("\n41. Fin.");
    lines.push("41. Fin.");
    await page.evaluate(() => { window.__printed = 0; window.print = () => { window.__printed++; }; });
    await page.click("button.print");
    assert.equal(await page.evaluate(() => window.__printed), 1);
    await page.emulateMedia({ media: "print" });
    const printed = await page.evaluate(() => ({
      view: getComputedStyle(document.querySelector("#view")).display,
      header: getComputedStyle(document.querySelector("header")).display,
      sheet: getComputedStyle(document.querySelector("#print")).display,
      text: document.querySelector("#print").innerText,
      buttons: [...document.querySelectorAll("#print button, #print textarea, #print input")].length,
      nones: [...document.querySelectorAll("#print .value")].filter((v) => v.textContent.trim() === "—").length,
    }));
    assert.equal(printed.view, "none");
    assert.equal(printed.header, "none");
    assert.equal(printed.sheet, "block");
    assert.equal(printed.buttons, 0, "read-only, no controls");
    assert.ok(printed.text.includes("مجلس نونبر"), printed.text.slice(0, 200));
    // Fields left empty (the place, the chair) are left out.
    assert.ok(!printed.text.includes(STRINGS.ar["field.place"]), printed.text.slice(0, 300));
    for (const line of [lines[0], lines[39], lines[40]]) assert.ok(printed.text.includes(line), `${line} printed`);
    // A decision's empty field (its outcome) is left out too: no value
    // printed as none.
    assert.ok(printed.text.includes("تمويل البئر"), printed.text.slice(-300));
    assert.equal(printed.nones, 0, printed.text.slice(-300));
    // A PDF of it, to look at.
    const dir = join(root, "target/test-artefacts");
    mkdirSync(dir, { recursive: true });
    const pdf = await page.pdf({ path: join(dir, "meeting-printed.pdf"), format: "A4" });
    assert.equal(pdf.subarray(0, 4).toString(), "%PDF");
    // Back on screen, the app as it was.
    await page.emulateMedia({ media: "screen" });
    // A print from the browser's menu afterwards prints the screen, not the sheet.
    await page.evaluate(() => window.dispatchEvent(new Event("afterprint")));
    await page.evaluate(() => window.dispatchEvent(new Event("beforeprint")));
    assert.equal(await page.evaluate(() => document.body.classList.contains("printing")), false);
    assert.notEqual(await page.evaluate(() => getComputedStyle(document.querySelector("#view")).display), "none");
    await context.close();
  });
});

test("a record's history shows its newest 50 runs of changes, and older ones a tap at a time", async () => {
  await withServer(async (server) => {
    const { page, context } = await signIn(server, { name: "Coordinator", role: "coordinator" });
    await upToDate(page);
    const base = Date.parse("2026-10-01T08:00:00Z");
    await context.clock.setFixedTime(base);
    const id = await page.evaluate(() => window.twinsync.create("person", { name: { ar: "سلمى", fr: "Salma", en: "Salma" } }, "new person"));
    // 60 edits ten minutes apart: each its own run, 61 with the creation.
    for (let i = 1; i <= 60; i++) {
      await context.clock.setFixedTime(base + i * 600_000);
      await page.evaluate(([id, i]) => window.twinsync.edit(id, [{ op: "set", path: "/name/fr", value: `Salma ${i}` }], "rename"), [id, i]);
    }
    await show(page, `#/r/${id}`);
    const count = () => document.querySelectorAll("ol.history li").length;
    await until(page, count, undefined, "the history");
    assert.equal(await page.evaluate(count), 50);
    assert.equal(await page.isVisible("section.history button.older"), true, "older changes to show");
    await page.click("section.history button.older");
    await until(page, (n) => document.querySelectorAll("ol.history li").length === n, 61, "every run");
    assert.equal(await page.isVisible("section.history button.older"), false, "nothing older");
    // The oldest shown is the record's creation.
    const [last, created] = await page.evaluate((id) =>
      [document.querySelector("ol.history li:last-child").dataset.hash, window.twinsync.history(id)[0].hash], id);
    assert.equal(last, created);
    await context.close();
  });
});

test("the dashboard lists what is late: no milestone of a cancelled project, an agreement's open commitments past due, projects and agreements past their end", async () => {
  await withServer(async (server) => {
    const { page, context } = await signIn(server, { name: "Coordinator", role: "coordinator" });
    await upToDate(page);
    const [project] = await (await server.api("/api/records?kind=project")).json();
    const overdue = (id) => document.querySelectorAll(`#overdue a[href="#/r/${id}"]`).length;
    // A record changed on this phone, and the dashboard drawn again.
    const change = async (id, edits) => {
      await page.evaluate(([id, edits]) => window.twinsync.edit(id, edits, "changed"), [id, edits]);
      await show(page, "#/");
      await show(page, "#/dashboard");
    };
    await show(page, "#/dashboard");
    // The demo project's milestones are past due.
    assert.ok(await until(page, overdue, project.id, "the overdue milestones") > 0);
    await change(project.id, [{ op: "set", path: "/status", value: "cancelled" }]);
    await until(page, (id) => document.querySelector("#overdue") && document.querySelectorAll(`#overdue a[href="#/r/${id}"]`).length === 0, project.id, "no overdue milestone left");
    const counts = await page.$$eval("#by-city tbody tr", (rows) => rows.map((r) => r.lastElementChild.textContent));
    assert.ok(counts.every((c) => /^[0٠]$/.test(c)), counts.join(" | "));
    // An agreement's commitment past due and still open is listed; kept, it is not.
    const [agreement] = await (await server.api("/api/records?kind=agreement")).json();
    await change(agreement.id, [{ op: "insert_item", path: "/commitments", after: "$end",
      item: { id: "c1", text: "Échange de bibliothécaires", due: "2026-01-15", status: "open" } }]);
    const late = await until(page, () => document.querySelector("#late-commitments li")?.textContent, undefined, "the late commitment");
    assert.ok(late.includes("Échange de bibliothécaires") && late.includes(agreement.title.ar), late);
    await change(agreement.id, [{ op: "set", path: "/commitments/c1/status", value: "done" }]);
    await until(page, () => (document.querySelector("#late-commitments") && !document.querySelector("#late-commitments li")) || null, undefined, "no late commitment");
    // A project still active past its end date is listed; cancelled, it was not.
    await page.waitForSelector("#past-end");
    assert.equal(await page.$(`#past-end a[href="#/r/${project.id}"]`), null);
    await change(project.id, [{ op: "set", path: "/status", value: "active" }, { op: "set", path: "/ends_on", value: "2026-01-31" }]);
    const ended = await until(page, (id) => document.querySelector(`#past-end a[href="#/r/${id}"]`)?.parentElement.textContent, project.id, "the project past its end");
    assert.ok(ended.includes(STRINGS.ar["value.active"]), ended);
    // An agreement in force past the day it was to end is listed; said
    // ended, it is not.
    assert.equal(await page.$(`#agreements-past-end a[href="#/r/${agreement.id}"]`), null);
    await change(agreement.id, [{ op: "set", path: "/status", value: "in_force" }, { op: "set", path: "/ends_on", value: "2026-02-28" }]);
    const over = await until(page, (id) => document.querySelector(`#agreements-past-end a[href="#/r/${id}"]`)?.parentElement.textContent, agreement.id, "the agreement past its end");
    assert.ok(over.includes(STRINGS.ar["value.in_force"]), over);
    await change(agreement.id, [{ op: "set", path: "/status", value: "ended" }]);
    await until(page, (id) => (document.querySelector("#agreements-past-end") && !document.querySelector(`#agreements-past-end a[href="#/r/${id}"]`)) || null, agreement.id, "no agreement past its end");
    await context.close();
  });
});

test("the dashboard lists what is late in a record with one field it cannot read", async () => {
  await withServer(async (server) => {
    const { page, context } = await signIn(server, { name: "Coordinator", role: "coordinator" });
    await upToDate(page);
    // Another program wrote the budget note as a number.
    const [city] = await (await server.api("/api/records?kind=city")).json();
    const [id] = await storeOnPhone(page, [Automerge.from({
      schema: 2, kind: "project", title: { fr: "Puits de Tifariti" }, status: "active", ends_on: "2026-02-01", budget_note: 42,
      owner_city: new Automerge.RawString(city.url),
      milestones: [{ id: "m1", title: "Forage du puits", due: "2026-01-10", status: "pending" }],
    })]);
    const view = await page.evaluate((id) => window.twinsync.read(id), id);
    assert.equal(view.record, undefined, JSON.stringify(view.errors));
    assert.equal(view.errors[0].path, "/budget_note");
    await show(page, "#/dashboard");
    const milestone = await until(page, (id) => document.querySelector(`#overdue a[href="#/r/${id}"]`)?.parentElement.textContent, id, "its milestone past due");
    assert.ok(milestone.includes("Puits de Tifariti") && milestone.includes("Forage du puits"), milestone);
    const ended = await until(page, (id) => document.querySelector(`#past-end a[href="#/r/${id}"]`)?.parentElement.textContent, id, "the project past its end");
    assert.ok(ended.includes(STRINGS.ar["value.active"]), ended);
    // Counted in its city's row, not in one of projects without a city.
    const rows = await page.$$eval("#by-city tbody tr", (trs) => trs.map((tr) => tr.textContent));
    assert.ok(!rows.some((r) => r.includes(STRINGS.ar.noCity)), rows.join(" | "));
    await context.close();
  });
});

test("a report's links an older app wrote as text export and search as written, and a record not on the phone by its whole address", async () => {
  await withServer(async (server) => {
    const { page, context } = await signIn(server, { name: "Coordinator", role: "coordinator" });
    await upToDate(page);
    const absent = generateAutomergeUrl();
    const presenter = generateAutomergeUrl();
    const [id, meeting] = await storeOnPhone(page, [Automerge.from({
      schema: 2, kind: "report", title: { fr: "Visite à Dakhla" }, report_type: "visit", date: "2026-10-02", text: "Compte rendu.",
      links: { "Rapport annuel 2025": true, [absent]: true },
    }), Automerge.from({
      schema: 2, kind: "meeting", title: { fr: "Séance de Dakhla" }, date: "2026-10-03",
      agenda: [{ id: "a1", title: new Automerge.RawString("Budget"), presenter: new Automerge.RawString(presenter) }],
    })]);
    await show(page, "#/dashboard");
    await page.waitForSelector("#export-json");
    const [csv] = await Promise.all([page.waitForEvent("download"), page.click('#export button[data-kind="report"]')]);
    const lines = (await streamBytes(await csv.createReadStream())).subarray(3).toString("utf8").trim().split("\r\n");
    const row = lines.find((l) => l.includes(id));
    assert.ok(row, lines.join("\n"));
    assert.ok(row.includes("Rapport annuel 2025"), row);
    assert.ok(row.includes(absent), row);
    assert.ok(!/[\u2066-\u2069]/.test(row), `no isolates: ${JSON.stringify(row)}`);
    // So is a list item's link to a record not on this phone.
    const [meetings] = await Promise.all([page.waitForEvent("download"), page.click('#export button[data-kind="meeting"]')]);
    const meetingRow = (await streamBytes(await meetings.createReadStream())).toString("utf8").split("\r\n").find((l) => l.includes(meeting));
    assert.ok(meetingRow?.includes(presenter), meetingRow);
    // Found by those words too.
    await show(page, "#/");
    await page.fill("#search", "annuel 2025");
    await until(page, (id) => document.querySelector(`#records li[data-id="${id}"]`), id, "the report found by its link's text");
    await context.close();
  });
});

test("an export whose minutes pass what a spreadsheet cell takes says so, and one that does not says nothing", async () => {
  await withServer(async (server) => {
    const { page, context } = await signIn(server, { name: "Coordinator", role: "coordinator" });
    await upToDate(page);
    await show(page, "#/dashboard");
    await page.waitForSelector("#export-json");
    const exported = async () => {
      const [csv] = await Promise.all([page.waitForEvent("download"), page.click('#export button[data-kind="meeting"]')]);
      return (await streamBytes(await csv.createReadStream())).toString("utf8");
    };
    await exported();
    assert.equal(await page.isVisible("#export-long"), false);
    // A long day's minutes, in Arabic and French.
    const minutes = "البند الأول: الميزانية. Le budget est adopté. ".repeat(800);
    assert.ok(minutes.length > 32_767);
    const id = await page.evaluate((minutes) => window.twinsync.create("meeting", { title: { fr: "Longue séance" }, date: "2026-11-30", minutes }, "new"), minutes);
    const text = await exported();
    assert.ok(text.includes(id) && text.includes(minutes), "the file holds the minutes whole");
    const lang = await page.evaluate(() => document.documentElement.lang);
    assert.equal(await page.textContent("#export-long"), plural(lang, "exportLong", 1));
    assert.equal(await page.isVisible("#export-long"), true);
    await context.close();
  });
});

test("a server started without the demo still has its club: a record one phone makes reaches another", async () => {
  await withServer(async (server) => {
    const clubs = await (await server.api("/api/records?kind=club")).json();
    assert.equal(clubs.length, 1, JSON.stringify(clubs));
    assert.equal((await (await server.api("/api/records")).json()).length, 1, "nothing but the club");
    const a = await signIn(server, { name: "Secretariat", role: "coordinator" });
    await upToDate(a.page);
    // Its dashboard says there are no agreements and no projects yet,
    // rather than drawing tables of no rows.
    await show(a.page, "#/dashboard");
    await a.page.waitForSelector("#export-json");
    const lang = await a.page.evaluate(() => document.documentElement.lang);
    for (const section of ["#by-status", "#by-city"]) {
      assert.equal(await a.page.locator(`${section} table`).count(), 0, section);
      assert.equal(await a.page.textContent(`${section} p.note`), STRINGS[lang].none, section);
    }
    const id = await a.page.evaluate(() => window.twinsync.create("city", { name: { fr: "Laâyoune", ar: "العيون" }, country: "Morocco" }, "new city"));
    await upToDate(a.page);
    const b = await signIn(server, { name: "Second phone", role: "coordinator" });
    await until(b.page, (id) => window.twinsync.list().some((r) => r.id === id) || null, id, "the city on the other phone");
    for (const p of [a, b]) await p.context.close();
  }, { args: ["--no-demo"] });
});

test("the dashboard takes in another phone's change while a button of it holds the focus, and the button keeps it", async () => {
  await withServer(async (server) => {
    const { page, context } = await signIn(server, { name: "Coordinator", role: "coordinator" });
    await upToDate(page);
    const [project] = await (await server.api("/api/records?kind=project")).json();
    const overdue = (id) => document.querySelectorAll(`#overdue a[href="#/r/${id}"]`).length;
    await show(page, "#/dashboard");
    assert.ok(await until(page, overdue, project.id, "the overdue milestones") > 0);
    // The coordinator has just pressed an export: the focus stays there.
    await page.focus("#export-json");
    const other = await signIn(server, { name: "Other coordinator", role: "coordinator" });
    await upToDate(other.page);
    await other.page.evaluate((id) => window.twinsync.edit(id, [{ op: "set", path: "/status", value: "cancelled" }], "cancelled"), project.id);
    await upToDate(other.page);
    await until(page, (id) => (document.querySelector("#overdue") && document.querySelectorAll(`#overdue a[href="#/r/${id}"]`).length === 0) || null,
      project.id, "the cancelled project's milestones gone from the dashboard");
    assert.equal(await page.evaluate(() => document.activeElement?.id), "export-json");
    await other.context.close();
    await context.close();
  });
});

test("a record drawn anew for another phone's new item while this one typed keeps the focus on Print, where the person went", async () => {
  await withServer(async (server) => {
    const { a, b, id } = await twoPhones(server);
    const minutes = '[data-path="/minutes"] textarea';
    await a.page.click(minutes);
    await a.page.keyboard.type("Ouverture. ");
    // A decision added on the other phone: a new item cannot be drawn into
    // the form in place, so the record waits to be drawn anew.
    await b.page.evaluate((id) => window.twinsync.edit(id, [{ op: "insert_item", path: "/decisions", after: "$end", item: { id: "d9", text: "Jumelage scolaire" } }], "add a decision"), id);
    await until(a.page, (id) => window.twinsync.read(id).record.decisions?.some((d) => d.id === "d9") || null, id, "the decision on this phone");
    assert.equal(await a.page.evaluate(() => document.querySelectorAll('[data-path="/decisions"] [data-item="d9"]').length), 0, "not drawn while typing");
    // The person goes to Print: the record is drawn anew, the focus kept.
    await a.page.focus("button.print");
    await until(a.page, () => document.querySelectorAll('[data-path="/decisions"] [data-item="d9"]').length > 0 || null, undefined, "the decision drawn");
    assert.equal(await a.page.evaluate(() => document.activeElement?.matches("button.print") ?? false), true,
      await a.page.evaluate(() => document.activeElement?.outerHTML.slice(0, 80)));
    // Another item arriving while the person is already at Print (the
    // change landing after they left the minutes) is drawn at once, and
    // the focus stays on Print.
    await b.page.evaluate((id) => window.twinsync.edit(id, [{ op: "insert_item", path: "/decisions", after: "$end", item: { id: "d10", text: "Bourse d'études" } }], "add a decision"), id);
    await until(a.page, () => document.querySelectorAll('[data-path="/decisions"] [data-item="d10"]').length > 0 || null, undefined, "the second decision drawn");
    assert.equal(await a.page.evaluate(() => document.activeElement?.matches("button.print") ?? false), true,
      await a.page.evaluate(() => document.activeElement?.outerHTML.slice(0, 80)));
    for (const p of [a, b]) await p.context.close();
  });
});

test("Tab goes from the header to the screen, and a field reached under the sync bar is scrolled clear of it", async () => {
  await withServer(async (server) => {
    const { page, context } = await signIn(server, { name: "Coordinator", role: "coordinator" });
    await upToDate(page);
    // After the languages, the screen's links: not the bar at the foot.
    await page.focus('nav.language button[data-lang="en"]');
    await page.keyboard.press("Tab");
    assert.equal(await page.evaluate(() => document.activeElement?.closest("nav.views") !== null), true,
      await page.evaluate(() => document.activeElement?.outerHTML.slice(0, 80)));
    const [meeting] = await (await server.api("/api/records?kind=meeting")).json();
    await show(page, `#/r/${meeting.id}`);
    const time = '[data-path="/time"] input';
    await page.waitForSelector(time);
    // The field lies under the bar, the control before it in sight; Tab.
    const at = await page.evaluate((time) => {
      const input = document.querySelector(time);
      const controls = [...document.querySelectorAll("#view input, #view select, #view textarea, #view button, #view a[href]")]
        .filter((c) => !c.disabled && c.getClientRects().length);
      const before = controls[controls.indexOf(input) - 1];
      const bar = document.querySelector("#sync").getBoundingClientRect();
      window.scrollBy(0, input.getBoundingClientRect().top - (bar.top + 4));
      before.focus({ preventScroll: true });
      return { under: input.getBoundingClientRect().top >= bar.top, before: before.outerHTML.slice(0, 60) };
    }, time);
    assert.ok(at.under, JSON.stringify(at));
    // A date field takes a Tab for each of its parts before the next.
    for (let i = 0; i < 4 && !(await page.evaluate((time) => document.activeElement === document.querySelector(time), time)); i++) {
      await page.keyboard.press("Tab");
    }
    const seen = await page.evaluate((time) => ({
      focused: document.activeElement === document.querySelector(time),
      bottom: document.querySelector(time).getBoundingClientRect().bottom,
      bar: document.querySelector("#sync").getBoundingClientRect().top,
    }), time);
    assert.ok(seen.focused, JSON.stringify({ ...at, ...seen }));
    assert.ok(seen.bottom <= seen.bar, JSON.stringify(seen));
    await context.close();
  });
});

test("a record on screen names a linked record renamed elsewhere without being opened again", async () => {
  await withServer(async (server) => {
    const people = await twoPeople(server);
    const { page, context } = await signIn(server, { name: "Coordinator", role: "coordinator" });
    await upToDate(page);
    const [meeting] = await (await server.api("/api/records?kind=meeting")).json();
    await page.evaluate(([id, chair]) => window.twinsync.edit(id, [{ op: "set", path: "/chair", value: chair }], "chair"), [meeting.id, people.a]);
    await show(page, `#/r/${meeting.id}`);
    const chair = '[data-path="/chair"] select';
    await page.waitForSelector(chair);
    const options = () => page.$$eval(`${chair} option`, (os) => os.map((o) => o.textContent));
    const other = await signIn(server, { name: "Other coordinator", role: "coordinator" });
    await upToDate(other.page);
    const person = people.a.replace("automerge:", "");
    await other.page.evaluate((id) => window.twinsync.edit(id, [{ op: "set", path: "/name/ar", value: "سلمى الجديدة" }], "renamed"), person);
    await upToDate(other.page);
    await until(page, (chair) => {
      const said = [...document.querySelectorAll(`${chair} option`)].map((o) => o.textContent);
      return said.some((t) => t.includes("سلمى الجديدة")) || null;
    }, chair, "the chair renamed");
    assert.equal(await page.$eval(chair, (s) => s.value), people.a, `the chair still chosen: ${(await options()).join(" | ")}`);
    await other.context.close();
    await context.close();
  });
});

test("a person's roles are added by keyboard, one after another: the field's name is said, and the focus stays in it", async () => {
  await withServer(async (server) => {
    const people = await twoPeople(server);
    const { page, context } = await signIn(server, { name: "Coordinator", role: "coordinator" });
    await upToDate(page);
    await show(page, `#/r/${people.a.replace("automerge:", "")}`);
    const input = '[data-path="/roles"] .chips > input';
    await page.waitForSelector(input);
    const lang = await page.evaluate(() => document.documentElement.lang);
    const words = STRINGS[lang];
    assert.equal(await page.$eval(input, (i) => i.getAttribute("aria-label")), `${words.add}${words.labelSeparator}${words["field.roles"]}`);
    await page.focus(input);
    await page.keyboard.type("Trésorière");
    await page.keyboard.press("Enter");
    await until(page, () => [...document.querySelectorAll('[data-path="/roles"] .chip')].some((c) => c.textContent.includes("Trésorière")) || null, undefined, "the role added");
    assert.ok(await page.$eval(input, (i) => i === document.activeElement), "the focus back in the field");
    await page.keyboard.type("Secrétaire");
    await page.keyboard.press("Enter");
    await until(page, () => [...document.querySelectorAll('[data-path="/roles"] .chip')].some((c) => c.textContent.includes("Secrétaire")) || null, undefined, "the second role added");
    const roles = await page.evaluate((id) => window.twinsync.read(id).record.roles, people.a.replace("automerge:", ""));
    assert.ok(roles.includes("Trésorière") && roles.includes("Secrétaire"), JSON.stringify(roles));
    await context.close();
  });
});

test("what a delegate cannot take back is asked first or refused: adopting minutes, moving a record out of their cities; a required date emptied shows the record's", async () => {
  await withServer(async (server) => {
    const people = await twoPeople(server);
    // An agreement, and the city of its parties this delegate writes for.
    const [ours] = await (await server.api("/api/records?kind=agreement")).json();
    const { record } = await (await server.api(`/api/records/${ours.id}`)).json();
    const city = record.parties.at(-1);
    const { page, context } = await signIn(server, { name: "Secretary", role: "delegate", person: people.a, cities: [city] });
    await upToDate(page);
    await knownAs(page, "delegate");
    const ar = STRINGS.ar;

    // A new meeting's form has no "adopted" box: minutes are adopted once written.
    await show(page, "#/new/meeting");
    await page.waitForSelector('input[name="title.fr"]');
    assert.equal(await page.$('form.new input[name="adopted"]'), null);
    await page.fill('input[name="title.fr"]', "Réunion du bureau");
    await page.check(`form.new input[type="checkbox"][value="${people.a}"]`);
    await page.click('form.new button[type="submit"]');
    await until(page, () => location.hash.startsWith("#/r/"), undefined, "the new meeting shown");
    const id = await page.evaluate(() => location.hash.split("/")[2]);
    const stored = () => page.evaluate((id) => window.twinsync.read(id).record, id);

    // The date moved, then emptied by mistake: the moved date comes back.
    const date = '[data-path="/date"] input';
    await page.fill(date, "2025-11-05");
    await page.press(date, "Tab");
    await until(page, (id) => window.twinsync.read(id).record.date === "2025-11-05" || null, id, "the date moved");
    await page.fill(date, "");
    await page.press(date, "Tab");
    assert.equal(await page.inputValue(date), "2025-11-05");
    assert.equal((await stored()).date, "2025-11-05");

    // Adopting asks first; dismissed, nothing changes.
    const adopted = '[data-path="/adopted"] input[type="checkbox"]';
    const asked = [];
    page.once("dialog", (d) => { asked.push(d.message()); d.dismiss(); });
    await page.click(adopted);
    assert.deepEqual(asked, [ar.adoptConfirm]);
    await until(page, (sel) => document.querySelector(sel)?.checked === false || null, adopted, "the box unticked again");
    assert.equal((await stored()).adopted, false);
    // The person is still at the box, not sent to the page's top.
    assert.equal(await page.evaluate((sel) => document.activeElement === document.querySelector(sel), adopted), true);
    // Accepted, the minutes are adopted and the form is locked at once;
    // the focus goes to the note that says so.
    page.once("dialog", (d) => d.accept());
    await page.click(adopted);
    assert.equal(await until(page, () => document.querySelector("#view p.locked")?.textContent, undefined, "the meeting locked"), ar.lockedAdopted);
    assert.equal(await page.evaluate(() => document.activeElement?.matches("#view p.locked[role=status]") ?? false), true);
    assert.equal((await stored()).adopted, true);
    assert.equal(await page.locator("#view form.record :is(input, textarea, select):not([disabled])").count(), 0);

    // Unticking the delegate's only city from an agreement would give it
    // to none of theirs: refused here, the box ticked again, nothing written.
    await show(page, `#/r/${ours.id}`);
    const box = `[data-path="/parties"] input[type="checkbox"][value="${city}"]`;
    await page.waitForSelector(box);
    // In force, and no date for it yet: its date's field says so, until given.
    assert.equal(record.in_force_from ?? null, null, "the demo agreement has no date in force");
    assert.equal(await page.$("p.needs-date"), null, "signed, on its date");
    await page.selectOption('[data-path="/status"] select', "in_force");
    const next = await until(page, () => document.querySelector('[data-path="/in_force_from"] p.needs-date')?.textContent, undefined, "the date in force asked for");
    assert.equal(next, ar.dateForStatus.replace("{status}", ar["value.in_force"]));
    await page.fill('[data-path="/in_force_from"] input', "2026-02-01");
    await page.press('[data-path="/in_force_from"] input', "Tab");
    await until(page, (id) => window.twinsync.read(id).record.in_force_from === "2026-02-01" || null, ours.id, "the date in force kept");
    await until(page, () => !document.querySelector("p.needs-date") || null, undefined, "the note gone");
    await page.click(box);
    assert.equal(await until(page, () => document.querySelector("#notice")?.textContent || null, undefined, "why not"), ar.moveNotOurs);
    await until(page, (sel) => document.querySelector(sel)?.checked === true || null, box, "the box ticked again");
    assert.deepEqual(await page.evaluate((id) => window.twinsync.read(id).record.parties, ours.id), record.parties);
    // Ended by the delegate, once asked: dated today, as they cannot date it after.
    page.once("dialog", (d) => d.accept());
    await page.selectOption('[data-path="/status"] select', "ended");
    assert.equal(await until(page, () => document.querySelector("#view p.locked")?.textContent, undefined, "the agreement locked"), ar.lockedEnded);
    const ended = await page.evaluate((id) => window.twinsync.read(id).record, ours.id);
    assert.equal(ended.status, "ended");
    assert.equal(ended.ends_on, await page.evaluate(() => { const d = new Date(); return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}-${String(d.getDate()).padStart(2, "0")}`; }));
    await context.close();
  });
});

test("a delegate attending a meeting another device created cannot drop themselves from it, which they could not take back", async () => {
  await withServer(async (server) => {
    const people = await twoPeople(server);
    const me = people.a;
    // A coordinator's phone makes the meeting, the delegate among those attending.
    const coordinator = await signIn(server, { name: "Coordinator", role: "coordinator" });
    await upToDate(coordinator.page);
    const id = await coordinator.page.evaluate((me) => window.twinsync.create("meeting",
      { title: { fr: "Réunion du comité" }, date: "2026-11-30", attendees: [me] }, "new meeting"), me);
    const meeting = await until(coordinator.page, async (id) => {
      const res = await fetch(`/api/records/${id}`, { headers: { authorization: `Bearer ${localStorage.getItem("token")}` } });
      return res.ok ? { id, ...(await res.json()) } : null;
    }, id, "the meeting on the server");
    const coordinatorId = await coordinator.page.evaluate(() => JSON.parse(localStorage.getItem("me")).id);
    assert.equal(meeting.created_by, coordinatorId);
    const record = meeting.record;
    await coordinator.context.close();
    const { page, context } = await signIn(server, { name: "Attendee", role: "delegate", person: me, cities: [people.city] });
    await upToDate(page);
    await knownAs(page, "delegate");
    // Theirs while they attend: the app asks who created it.
    const asked = page.waitForResponse((r) => r.url().endsWith(`/api/records/${meeting.id}`));
    await show(page, `#/r/${meeting.id}`);
    await (await asked).finished();
    // The answer read (a moment after it arrived).
    await page.waitForTimeout(300);
    const box = `[data-path="/attendees"] input[type="checkbox"][value="${me}"]`;
    await page.waitForSelector(box);
    assert.equal(await page.$("#view p.locked"), null);
    await page.click(box);
    assert.equal(await until(page, () => document.querySelector("#notice")?.textContent || null, undefined, "why not"), STRINGS.ar.moveNotYours);
    await until(page, (sel) => document.querySelector(sel)?.checked === true || null, box, "the box ticked again");
    assert.deepEqual(await page.evaluate((id) => window.twinsync.read(id).record.attendees, meeting.id), record.attendees);
    // Days later, offline, the app started again: who made the meeting is
    // still known, with no server to ask.
    await context.setOffline(true);
    await page.reload();
    await until(page, (id) => { try { return window.twinsync.read(id); } catch { return null; } }, meeting.id, "the meeting on the phone");
    await show(page, `#/r/${meeting.id}`);
    await page.waitForSelector(box);
    await page.click(box);
    assert.equal(await until(page, () => document.querySelector("#notice")?.textContent || null, undefined, "why not, offline"), STRINGS.ar.moveNotYours);
    await until(page, (sel) => document.querySelector(sel)?.checked === true || null, box, "the box ticked again, offline");
    assert.deepEqual(await page.evaluate((id) => window.twinsync.read(id).record.attendees, meeting.id), record.attendees);
    await context.close();
  });
});
