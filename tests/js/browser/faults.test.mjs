// Bad input around the WASM client: damaged IndexedDB contents, a server
// that sends garbage, a server that refuses a change, a full quota, and
// compaction of many small chunks. Each gives a clear error through the
// API and the local data stays. And a server that closes every socket,
// which the phone must not hammer however often its network comes back.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { connect, createServer } from "node:net";
import { decode, encode } from "cbor-x";
import { WebSocketServer } from "ws";
import {
  cleanup, dataDir, launch, openClient, openInvite, persistentPhone, phone, startServer, until, withServer,
} from "./harness.mjs";

let browser;
before(async () => {
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

async function firstOf(server, kind) {
  const list = await (await server.api(`/api/records?kind=${kind}`)).json();
  return list[0].url.replace("automerge:", "");
}

const upToDate = () => {
  const s = window.tw.status();
  return s.state === "up-to-date" && s.unconfirmed === 0 ? s : null;
};
const readable = (id) => {
  try {
    return window.tw.read(id);
  } catch {
    return null;
  }
};

test("damaged IndexedDB contents give a clear error, keep what loads, and recover from the server", async () => {
  await withServer(async (server) => {
    const meeting = await firstOf(server, "meeting");
    const { page, context } = await phone(browser);
    await openClient(page, server, {});
    await until(page, readable, meeting, "the meeting");
    await until(page, upToDate, undefined, "up to date");
    const before = await page.evaluate((id) => window.tw.read(id).record, meeting);
    await page.evaluate(() => window.tw.close());
    // Garbage where a chunk of the meeting should be, and a stray entry.
    await page.evaluate(async (id) => {
      const db = await new Promise((ok, fail) => {
        const r = indexedDB.open("twinsync");
        r.onsuccess = () => ok(r.result);
        r.onerror = () => fail(r.error);
      });
      const tx = db.transaction("chunks", "readwrite");
      tx.objectStore("chunks").add({ doc: id, bytes: new TextEncoder().encode("not automerge") });
      tx.objectStore("chunks").add("not a chunk at all");
      await new Promise((ok, fail) => {
        tx.oncomplete = ok;
        tx.onerror = () => fail(tx.error);
      });
      db.close();
    }, meeting);
    await page.reload();
    await openClient(page, server, { offline: true });
    const status = await page.evaluate(() => window.tw.status());
    assert.equal(status.state, "error");
    assert.match(status.error, /damaged local data/);
    assert.equal(status.errorKind, "damaged");
    assert.match(status.error, new RegExp(`record ${meeting} is damaged`));
    assert.match(status.error, /is not a record chunk/);
    assert.deepEqual(await page.evaluate((id) => window.tw.read(id).record, meeting), before);
    await page.evaluate(() => window.tw.connect());
    await until(page, upToDate, undefined, "recovered");
    await context.close();
  });
});

test("a server that sends garbage is an error and the local data stays", async () => {
  const dir = dataDir();
  const server = await startServer({ dir });
  const garbage = new WebSocketServer({ host: "127.0.0.1", port: 0 });
  garbage.on("connection", (ws) => ws.on("message", () => ws.send(Buffer.from([0xa1, 0x01, 0xff]))));
  await new Promise((r) => garbage.once("listening", r));
  try {
    const { page, context } = await phone(browser);
    await openClient(page, server, { offline: true, server: `ws://127.0.0.1:${garbage.address().port}/sync` });
    const id = await page.evaluate(() =>
      window.tw.create("person", { name: { ar: "سلمى", fr: "Salma", en: "Salma" } }, "new person"),
    );
    await page.evaluate(() => window.tw.connect());
    const status = await until(page, () => {
      const s = window.tw.status();
      return s.state === "error" ? s : null;
    }, undefined, "an error");
    assert.match(status.error, /the server sent something unreadable/);
    assert.equal(await page.evaluate((id) => window.tw.read(id).record.name.fr, id), "Salma");
    assert.equal(status.unconfirmed, 1);
    await page.evaluate(() => window.tw.close());
    await context.close();
  } finally {
    garbage.close();
    await server.stop();
    cleanup(dir);
  }
});

test("a change the server refuses is shown with its reason and kept on the device", async () => {
  await withServer(async (server) => {
    const { page, context } = await phone(browser);
    await openClient(page, server, {});
    await until(page, upToDate, undefined, "up to date");
    // Random letters, so that Automerge's compression cannot fit them
    // under the 1 MiB cap: about 1.2 MB once compressed.
    const id = await page.evaluate(() => {
      const bytes = new Uint8Array(2_000_000);
      for (let i = 0; i < bytes.length; i += 65_536) crypto.getRandomValues(bytes.subarray(i, i + 65_536));
      const text = Array.from(bytes, (b) => String.fromCharCode(0x621 + (b % 26))).join("");
      return window.tw.create("report", { title: { fr: "Rapport long" }, report_type: "field", date: "2026-11-20", text }, "a long report");
    });
    const status = await until(page, () => {
      const s = window.tw.status();
      return s.refused ? s : null;
    }, undefined, "the refusal", 60_000);
    assert.equal(status.state, "error");
    assert.match(status.refused, /could not store your changes to .* \(the server's storage is full\)/);
    // With what an app needs to say it in the person's language.
    assert.deepEqual(status.refusal, { documentId: id, code: "not-stored", path: "/" });
    assert.ok(status.unconfirmed >= 1);
    assert.equal(await page.evaluate((id) => window.tw.read(id).record.title.fr, id), "Rapport long");
    const res = await server.api(`/api/records/${id}`);
    assert.equal(res.status, 404, "the server did not keep it");
    await page.evaluate(() => window.tw.close());
    await context.close();
    // Two million letters are two million operations: past the server's
    // default bounds on one message and on one record, which are not what
    // this test is about.
  }, { args: ["--max-db-mib", "1", "--max-ops-per-message", "4000000", "--max-record-ops", "4000000"] });
});

/**
 * A phone whose storage for the server's origin holds 64 KiB, with the
 * client open offline. Quotas apply to on-disk profiles; a test context
 * keeps storage in memory.
 */
async function phoneWithSmallQuota(server, options = {}) {
  const profile = dataDir();
  const { page, context } = await persistentPhone(profile);
  // Chromium reads an origin's quota when it first stores anything.
  const cdp = await context.newCDPSession(page);
  await cdp.send("Storage.overrideQuotaForOrigin", { origin: server.url, quotaSize: 64 * 1024 });
  await openClient(page, server, { offline: true, ...options });
  return { page, context, profile };
}

/** 300,000 random Arabic letters: Automerge compresses repetitive text to little. */
function randomLetters() {
  const bytes = new Uint8Array(300_000);
  for (let i = 0; i < bytes.length; i += 65_536) crypto.getRandomValues(bytes.subarray(i, i + 65_536));
  return Array.from(bytes, (b) => String.fromCharCode(0x621 + (b % 26))).join("");
}

test("a full storage quota rejects the edit with QuotaExceededError", async () => {
  await withServer(async (server) => {
    const { page, context, profile } = await phoneWithSmallQuota(server);
    const id = await page.evaluate(() =>
      window.tw.create("report", { title: { fr: "Petit" }, report_type: "field", date: "2026-11-20", text: "" }, "new"),
    );
    const error = await page.evaluate(async ([id, insert]) => {
      try {
        await window.tw.edit(id, [{ op: "splice_text", path: "/text", index: 0, delete: 0, insert }], "big");
        return null;
      } catch (e) {
        return { name: e.name, message: e.message };
      }
    }, [id, randomLetters()]);
    assert.ok(error, "the edit was refused");
    assert.equal(error.name, "QuotaExceededError", JSON.stringify(error));
    const status = await page.evaluate(() => window.tw.status());
    assert.equal(status.state, "error", JSON.stringify({ status, error }));
    assert.match(status.error, /not saved on this device: the device's storage is full/);
    assert.equal(status.errorKind, "storage-full", "the app says so in the person's language");
    // A record created while the storage is full exists all the same (in
    // memory, syncing): the error names it, so the app shows it rather than
    // creating it again.
    const created = await page.evaluate(async (text) => {
      try {
        await window.tw.create("report", { title: { fr: "Rapport" }, report_type: "field", date: "2026-11-20", text }, "new");
        return null;
      } catch (e) {
        return { name: e.name, recordId: e.recordId, title: e.recordId ? window.tw.read(e.recordId).record.title.fr : null };
      }
    }, randomLetters());
    assert.equal(created?.name, "QuotaExceededError", JSON.stringify(created));
    assert.equal(created.title, "Rapport", JSON.stringify(created));
    // A small edit to it would fit, but builds on the record the phone
    // could not keep: it is not kept either, and says so.
    const next = await page.evaluate((id) => window.tw.edit(id, [{ op: "set", path: "/report_type", value: "visit" }], "small")
      .then(() => "ok", (e) => e.name), created.recordId);
    assert.equal(next, "QuotaExceededError");
    assert.ok((await page.evaluate(() => window.tw.status())).unsaved.includes(created.recordId));
    await context.close();
    cleanup(profile);
  });
});

test("a write that fails while another succeeds leaves its record unsaved, not claimed as stored", async () => {
  await withServer(async (server) => {
    const { page, context, profile } = await phoneWithSmallQuota(server);
    const outcome = await page.evaluate(async (insert) => {
      const report = (title) => window.tw.create("report", { title: { fr: title }, report_type: "field", date: "2026-11-20", text: "" }, "new");
      const big = await report("Grand");
      const small = await report("Petit");
      const edit = (id, text) => window.tw.edit(id, [{ op: "splice_text", path: "/text", index: 0, delete: 0, insert: text }], "edit");
      // The small write starts before the big one has failed, and ends after.
      const both = await Promise.allSettled([edit(big, insert), edit(small, "a")]);
      // The big record is still unsaved, and the storage as full as it was:
      // the next small edit is kept all the same, and the big record is
      // still named as not kept.
      const next = await edit(small, "b").then(() => "ok", (e) => e.name);
      return { big, both: both.map((r) => r.status === "rejected" ? r.reason.name : "ok"), next, status: window.tw.status() };
    }, randomLetters());
    assert.deepEqual(outcome.both, ["QuotaExceededError", "ok"], JSON.stringify(outcome));
    assert.equal(outcome.next, "ok", JSON.stringify(outcome));
    assert.deepEqual(outcome.status.unsaved, [outcome.big], JSON.stringify(outcome.status));
    assert.equal(outcome.status.state, "error");
    assert.equal(outcome.status.errorKind, "storage-full");
    await context.close();
    cleanup(profile);
  });
});

test("an edit a full phone cannot keep still reaches the server once online", async () => {
  await withServer(async (server) => {
    const { page, context, profile } = await phoneWithSmallQuota(server);
    const id = await page.evaluate(() =>
      window.tw.create("report", { title: { fr: "Rapport" }, report_type: "field", date: "2026-11-20", text: "" }, "new"),
    );
    const letters = randomLetters();
    const refused = await page.evaluate(([id, insert]) =>
      window.tw.edit(id, [{ op: "splice_text", path: "/text", index: 0, delete: 0, insert }], "big").then(() => null, (e) => e.name),
    [id, letters]);
    assert.equal(refused, "QuotaExceededError");
    await page.evaluate(() => window.tw.connect());
    // Joined, and the server confirmed holding every change made here,
    // although each write still fails to take the big record.
    const status = await until(page, () => {
      const s = window.tw.status();
      return s.joins > 0 && s.unconfirmed === 0 && s.syncing === 0 ? s : null;
    }, undefined, "the server holding the edit", 60_000);
    // The records the server sent a full phone are in memory but not kept
    // either; the status lists them all, the edited one among them.
    assert.ok(status.unsaved.includes(id), `the phone still says it does not keep the record: ${JSON.stringify(status)}`);
    assert.equal(status.errorKind, "storage-full", JSON.stringify(status));
    const stored = await (await server.api(`/api/records/${id}`)).json();
    assert.equal(stored.record.text, letters, "the server holds every letter");
    await context.close();
    cleanup(profile);
  });
});

test("a write the phone's storage never finishes holds nothing back from the server, and is kept once it does", async () => {
  await withServer(async (server) => {
    const meeting = await firstOf(server, "meeting");
    const { page, context } = await phone(browser);
    await openClient(page, server, {});
    await until(page, readable, meeting, "the meeting");
    await until(page, upToDate, undefined, "up to date");
    // Another connection holds the chunks in a write that does not end,
    // as WebKit has left transactions hanging: every write of the client
    // waits behind it.
    await page.evaluate(() => new Promise((resolve, reject) => {
      const open = indexedDB.open("twinsync");
      open.onerror = () => reject(open.error);
      open.onsuccess = () => {
        const db = open.result;
        const tx = db.transaction("chunks", "readwrite");
        const chunks = tx.objectStore("chunks");
        window.__hold = { release: false };
        const spin = () => { if (!window.__hold.release) chunks.count().onsuccess = spin; };
        spin();
        tx.oncomplete = () => db.close();
        resolve();
      };
    }));
    const edit = (word) => page.evaluate(([id, word]) => {
      (window.__edits ??= []).push(window.tw.edit(id, [{ op: "splice_text", path: "/minutes", index: 0, delete: 0, insert: word }], "typed")
        .then(() => "kept", (e) => e.name));
    }, [meeting, word]);
    const sent = () => {
      const s = window.tw.status();
      return s.storageStuck && s.unconfirmed === 0 ? s : null;
    };
    const minutes = async () => (await (await server.api(`/api/records/${meeting}`)).json()).record.minutes;
    await edit("كلمة عالقة ");
    // A slow write is waited for: nothing is sent before it is stored.
    await new Promise((resolve) => setTimeout(resolve, 5_000));
    const waiting = await page.evaluate(() => window.tw.status());
    assert.equal(waiting.unconfirmed, 1, JSON.stringify(waiting));
    assert.equal(waiting.storageStuck, false);
    assert.equal(waiting.errorKind, undefined);
    // Said stuck, and sent all the same: the server holds the edit.
    const status = await until(page, sent, undefined, "the edit sent while its write is stuck", 40_000);
    assert.equal(status.state, "error");
    assert.equal(status.errorKind, "storage-stuck");
    assert.match(status.error, /has not finished a write in 15 s/);
    assert.ok((await minutes()).startsWith("كلمة عالقة "), "the server holds the edit");
    // A key typed behind the stuck write goes at once, and another
    // phone's edit is taken in: the write holds back neither.
    await edit("mot ");
    await until(page, sent, undefined, "the next key sent");
    assert.ok((await minutes()).startsWith("mot كلمة عالقة "), await minutes());
    const other = await phone(browser);
    await openClient(other.page, server, {});
    await until(other.page, readable, meeting, "the meeting on the other phone");
    await other.page.evaluate((id) => window.tw.edit(id, [{ op: "splice_text", path: "/minutes", index: 0, delete: 0, insert: "word " }], "other"), meeting);
    await until(page, (id) => window.tw.read(id).record.minutes.startsWith("word mot ") || null, meeting, "the other phone's edit taken in");
    // Neither edit is said kept: each is made, and not kept yet.
    assert.deepEqual(await page.evaluate(() => Promise.all(window.__edits)), ["StorageStuckError", "StorageStuckError"]);
    // The storage answers again: every write goes through, in turn, and
    // the error is gone.
    await page.evaluate(() => { window.__hold.release = true; });
    await until(page, () => { const s = window.tw.status(); return !s.storageStuck && !s.errorKind && s.state === "up-to-date" ? s : null; },
      undefined, "up to date once the storage answers");
    // Kept on the phone: it opens offline with all three edits.
    await page.evaluate(() => window.tw.close());
    await page.reload();
    await openClient(page, server, { offline: true });
    const kept = await page.evaluate((id) => window.tw.read(id).record.minutes, meeting);
    assert.ok(kept.startsWith("word mot كلمة عالقة "), kept.slice(0, 40));
    await other.context.close();
    await context.close();
  });
});

test("a phone over its storage quota still opens with what it holds", async () => {
  await withServer(async (server) => {
    const profile = dataDir();
    const { page, context } = await persistentPhone(profile);
    await openClient(page, server);
    // Joined once: the device has learnt and kept which club it is in.
    await until(page, upToDate, undefined, "up to date");
    const id = await page.evaluate(() =>
      window.tw.create("report", { title: { fr: "Petit" }, report_type: "field", date: "2026-11-20", text: "" }, "new"),
    );
    await until(page, upToDate, undefined, "the report on the server");
    await context.close();
    // Other apps fill the phone: its quota falls below what it holds. The
    // app starts again, offline, and opens with every record it holds.
    const again = await persistentPhone(profile);
    const cdp = await again.context.newCDPSession(again.page);
    await cdp.send("Storage.overrideQuotaForOrigin", { origin: server.url, quotaSize: 1 });
    await openClient(again.page, server, { offline: true });
    const refused = await again.page.evaluate((id) =>
      window.tw.edit(id, [{ op: "splice_text", path: "/text", index: 0, delete: 0, insert: "x" }], "small").then(() => null, (e) => e.name),
    id);
    assert.equal(refused, "QuotaExceededError", "the phone is full");
    const record = await again.page.evaluate((id) => window.tw.read(id).record, id);
    assert.equal(record.title.fr, "Petit");
    const status = await again.page.evaluate(() => window.tw.status());
    assert.equal(status.errorKind, "storage-full", JSON.stringify(status));
    assert.deepEqual(status.unsaved, [id], JSON.stringify(status));
    await again.context.close();
    cleanup(profile);
  });
});

/**
 * A coordinator's phone that holds every record, opened again once other
 * apps have filled it (quota 1 byte; unless `full` is false), offline, with
 * the focus in a meeting's minutes. `before` runs, given `arg`, in every
 * page of the phone before its scripts.
 */
async function fullPhoneOnMinutes(server, profile, before = () => {}, { full = true, arg } = {}) {
  const first = await persistentPhone(profile);
  try {
    const res = await server.api("/api/invites", {
      method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ name: "Full phone", role: "coordinator" }),
    });
    await openInvite(first.page, (await res.json()).link);
    const total = (await (await server.api("/api/records")).json()).length;
    await until(first.page, (total) => (document.querySelector("#sync")?.dataset.state === "up-to-date" && window.twinsync.list().length === total) || null,
      total, "every record on the phone");
  } finally {
    await first.context.close();
  }
  // Other apps fill the phone; the app opens again, and goes offline.
  const { page, context } = await persistentPhone(profile);
  await context.addInitScript(before, arg);
  const cdp = await context.newCDPSession(page);
  if (full) await cdp.send("Storage.overrideQuotaForOrigin", { origin: server.url, quotaSize: 1 });
  await page.goto(server.url);
  await until(page, () => document.querySelectorAll("#records li").length > 0 || null, undefined, "the records listed");
  await page.click("#sync-toggle");
  await until(page, () => window.twinsync.status().link === "offline" || null, undefined, "offline");
  const meeting = await until(page, () => window.twinsync.list().find((r) => r.kind === "meeting")?.id, undefined, "a meeting on the phone");
  await page.evaluate((id) => { location.hash = `#/r/${id}`; }, meeting);
  const area = '[data-path="/minutes"] textarea';
  await page.waitForSelector(area);
  await page.focus(area);
  return { page, context, cdp, meeting, area };
}

/**
 * Runs `body(phone, server)` on a full phone on the minutes
 * (`fullPhoneOnMinutes`, given `before`, `full` and `arg`), in a server and
 * a profile of its own, both cleaned up after. `phone.reopen({ offline })`
 * closes the phone's page and opens the app again on the same profile, its
 * records listed; `phone.context` is then the new one.
 */
async function withFullPhone({ before, ...options }, body) {
  await withServer(async (server) => {
    const profile = dataDir();
    let phone;
    try {
      phone = await fullPhoneOnMinutes(server, profile, before, options);
      phone.reopen = async ({ offline = false } = {}) => {
        await phone.context.close();
        const again = await persistentPhone(profile);
        phone.context = again.context;
        if (offline) await again.context.setOffline(true);
        await again.page.goto(server.url);
        await until(again.page, () => document.querySelectorAll("#records li").length > 0 || null, undefined, "the records listed");
        return again;
      };
      await body(phone, server);
    } finally {
      // A persistent context left open would keep the test run alive.
      await phone?.context.close();
      cleanup(profile);
    }
  });
}

test("typing on a full phone keeps the page where the person types", () =>
  withFullPhone({}, async ({ page, meeting, area }) => {
    await page.keyboard.type("a");
    const notice = await until(page, () => document.querySelector("#notice")?.textContent || null, undefined, "the notice");
    // The person scrolls back to the minutes and types on.
    await page.$eval(area, (a) => a.scrollIntoView({ block: "end" }));
    const before = await page.evaluate(() => ({ y: scrollY, noticeTop: document.querySelector("#notice").getBoundingClientRect().top }));
    assert.ok(before.noticeTop < 0, `the notice is out of view: ${JSON.stringify(before)}`);
    await page.keyboard.type("bcd");
    await until(page, (id) => window.twinsync.read(id).record.minutes.endsWith("abcd") || null, meeting, "every key in the minutes");
    await page.waitForTimeout(300);
    const after = await page.evaluate(() => ({ y: scrollY, notice: document.querySelector("#notice").textContent }));
    assert.equal(after.y, before.y, "the page stayed where the person types");
    assert.equal(after.notice, notice, "the notice still says why");
  }));

test("an item added on a full phone shows at once, so it is not added twice", () =>
  withFullPhone({}, async ({ page, meeting }) => {
    const items = '[data-path="/agenda"] ol.items > li';
    const before = await page.$$eval(items, (li) => li.length);
    const held = await page.evaluate((id) => window.twinsync.read(id).record.agenda.length, meeting);
    await page.click('[data-path="/agenda"] button.add');
    await until(page, () => document.querySelector("#notice")?.textContent || null, undefined, "the notice");
    assert.equal(await page.evaluate((id) => window.twinsync.read(id).record.agenda.length, meeting), held + 1,
      "the phone holds the new item, though it could not keep it");
    await until(page, ([sel, n]) => document.querySelectorAll(sel).length === n || null, [items, before + 1], "the new item on screen");
    const notice = await page.$eval("#notice", (n) => n.textContent);
    assert.match(notice, /storage is full|stockage est plein|ممتلئة/, notice);
  }));

test("a record created on a full phone and lost with its tab comes back as the form's draft", () =>
  withFullPhone({}, async (phone) => {
    const { page } = phone;
    await page.evaluate(() => { location.hash = "#/new/meeting"; });
    await page.waitForSelector('form.new input[name="title.fr"]');
    await page.fill('form.new input[name="title.fr"]', "Comité jeunesse");
    await page.fill('form.new input[name="title.ar"]', "لجنة الشباب");
    await page.fill('form.new input[name="date"]', "2026-12-07");
    await page.click('form.new button[type="submit"]');
    await until(page, () => (location.hash.startsWith("#/r/") && document.querySelector("#notice")?.textContent) || null, undefined, "the record shown, not kept");
    const id = await page.evaluate(() => location.hash.split("/")[2]);
    assert.ok(await page.evaluate((id) => window.twinsync.status().unsaved.includes(id), id));
    // While the record is in the page, a new form starts empty.
    await page.evaluate(() => { location.hash = "#/new/meeting"; });
    await page.waitForSelector('form.new input[name="title.fr"]');
    assert.equal(await page.inputValue('form.new input[name="title.fr"]'), "");
    assert.equal(await page.$("p.note.draft"), null);
    // The phone kills the tab: the record, never kept nor sent, is gone.
    const again = await phone.reopen();
    // Once the phone is up to date with the server, which never had it:
    // the record is lost, and its draft comes back.
    await until(again.page, () => {
      const s = window.twinsync.status();
      return (s.link === "joined" && s.syncing === 0) || null;
    }, undefined, "up to date with the server");
    assert.equal(await again.page.evaluate((id) => { try { window.twinsync.read(id); return true; } catch { return false; } }, id), false);
    await again.page.evaluate(() => { location.hash = "#/new/meeting"; });
    await again.page.waitForSelector("p.note.draft");
    assert.equal(await again.page.inputValue('form.new input[name="title.fr"]'), "Comité jeunesse");
    assert.equal(await again.page.inputValue('form.new input[name="title.ar"]'), "لجنة الشباب");
  }));

test("leaving the app while a full phone holds unsent changes in memory only asks first", () =>
  withFullPhone({}, async ({ page }) => {
    await page.keyboard.type("a");
    await until(page, () => document.querySelector("#notice")?.textContent || null, undefined, "the notice");
    const asked = new Promise((ok) => page.once("dialog", async (d) => { ok(d.type()); await d.dismiss(); }));
    await page.close({ runBeforeUnload: true });
    const said = await Promise.race([asked, new Promise((ok) => setTimeout(() => ok("nothing"), 5_000))]);
    assert.equal(said, "beforeunload");
  }));

/**
 * An init script that watches what the app asks IndexedDB to add: every
 * chunk by its Automerge chunk type (`__chunks`: 0 is a whole document,
 * "whole"; 1 and 2 one change), and each whole record's time (`__wholeAt`),
 * record and size (`__wholes`). `window.__diskFault` (from `fault`) makes
 * an add throw `UnknownError` at once: `true` every add, `{ wholeOver }`
 * those of whole records larger than that many bytes, and with
 * `changesOver` too, those of changes larger than that. The client's timers
 * of the delays in `held` are held in `__held`, to be run when the test
 * says (a negative id: clearing it clears no real timer).
 */
function watchWrites({ fault, held }) {
  window.__chunks = [];
  window.__wholeAt = [];
  window.__wholes = [];
  window.__diskFault = fault;
  const add = IDBObjectStore.prototype.add;
  IDBObjectStore.prototype.add = function (value, key) {
    const whole = value?.bytes instanceof Uint8Array && value.bytes[8] === 0;
    if (value?.bytes instanceof Uint8Array) {
      window.__chunks.push(whole ? "whole" : "change");
      if (whole) {
        window.__wholeAt.push(performance.now());
        window.__wholes.push({ doc: value.doc, size: value.bytes.length });
      }
    }
    const f = window.__diskFault;
    const over = (limit) => limit !== undefined && value.bytes.length > limit;
    if (f === true || (whole ? over(f?.wholeOver) : value?.bytes && over(f?.changesOver))) {
      throw new DOMException("the disk failed", "UnknownError");
    }
    return add.call(this, value, key);
  };
  window.__held = [];
  const setTimeout = window.setTimeout;
  window.setTimeout = function (f, ms, ...rest) {
    if (held.includes(ms)) return -window.__held.push(f);
    return setTimeout.call(this, f, ms, ...rest);
  };
}

/**
 * A phone that cannot write, because it is full (`fault` false) or because
 * its disk fails (`fault` true: IndexedDB's `add` throws `UnknownError` at
 * once, for every chunk), has the record it could not keep written whole
 * once per 10 s at most, not at every key. Once it can write again, the
 * record is written whole as soon as a key's change goes through
 * (`recover` "key"), by the client's timer when no key is typed ("timer"),
 * or at once when the person comes back to the app ("shown"). `keys` are
 * typed after the first key, while it cannot write.
 *
 * The client's 10 s timers are held, and run when the test says, so that
 * none fires early on a slow machine and each check sees one way in.
 */
async function unsavedRecord({ fault, keys, recover }) {
  await withFullPhone({ before: watchWrites, full: !fault, arg: { fault, held: [10_000] } }, async (phone, server) => {
    const { page, cdp, meeting } = phone;
    // Nothing else waits to be written whole: the first try is this record's.
    assert.deepEqual(await page.evaluate(() => window.twinsync.status().unsaved), []);
    await page.keyboard.type("a");
    await until(page, (id) => window.twinsync.status().unsaved.includes(id) || null, meeting, "the meeting named as not kept");
    assert.equal(await page.evaluate(() => window.__held.length), 1, "a timer set for the record");
    let typed = "a";
    if (keys) {
      await page.evaluate(() => { window.__chunks.length = 0; window.__wholeAt.length = 0; });
      await page.keyboard.type(keys, { delay: 200 });
      typed += keys;
      await until(page, ([id, typed]) => window.twinsync.read(id).record.minutes.endsWith(typed) || null, [meeting, typed], "every key in the minutes");
      // The first key's change is tried once the whole record was refused,
      // which on a busy machine can take longer than the keys after it.
      await until(page, (n) => window.__chunks.filter((c) => c === "change").length >= n || null, keys.length, "every key's change tried");
      await page.waitForTimeout(300);
      const { full, wholeAt } = await page.evaluate(() => ({ full: window.__chunks.slice(), wholeAt: window.__wholeAt.slice() }));
      // Each key's change is tried on its own; the whole record once, and
      // not again for 10 s while nothing goes through (a slow machine may
      // have typed for longer: 10 s apart or more). Each whole try that
      // failed is followed by one of the changes not kept, together.
      assert.ok(wholeAt.length >= 1, JSON.stringify(full));
      assert.equal(full.filter((c) => c === "change").length, keys.length + wholeAt.length, JSON.stringify(full));
      const gaps = wholeAt.slice(1).map((t, i) => t - wholeAt[i]);
      assert.ok(gaps.every((g) => g >= 9_900), `whole writes ${JSON.stringify(gaps)} ms apart: ${JSON.stringify(full)}`);
      assert.equal(await page.evaluate(() => window.__held.length), 1, "one timer at a time");
    }
    // The person makes room, or the disk recovers.
    if (fault) await page.evaluate(() => { window.__diskFault = false; });
    else await cdp.send("Storage.overrideQuotaForOrigin", { origin: server.url });
    await page.evaluate(() => { window.__chunks.length = 0; });
    if (recover === "key") {
      // The next key's change goes through, and the record is written
      // whole right after it, not when the timer comes.
      await page.keyboard.type("g");
      typed += "g";
    } else if (recover === "shown") {
      // Back from another app: the page is shown again (headless, it
      // never stopped being visible; the browser's event is sent as it
      // would be).
      await page.evaluate(() => document.dispatchEvent(new Event("visibilitychange")));
    } else {
      // Nothing typed: the timer writes the record whole.
      await page.evaluate(() => { for (const f of window.__held.splice(0)) f(); });
    }
    const status = await until(page, () => {
      const s = window.twinsync.status();
      return s.unsaved.length === 0 ? s : null;
    }, undefined, "every record kept");
    assert.ok(!["storage-full", "not-saved"].includes(status.errorKind), JSON.stringify(status));
    const after = await page.evaluate(() => window.__chunks.slice());
    // A compaction may add a whole record after it.
    assert.deepEqual(after.slice(0, recover === "key" ? 2 : 1), recover === "key" ? ["change", "whole"] : ["whole"]);
    if (recover === "timer") {
      // A timer that comes within 10 s of a whole write's failure (here,
      // as soon as the test runs it) waits out the rest.
      const wholeAt = await page.evaluate(() => window.__wholeAt.slice());
      const [failed, kept] = wholeAt.slice(-2);
      if (wholeAt.length >= 2) assert.ok(kept - failed >= 9_900, `${kept - failed} ms after the last failure`);
    }
    await phone.context.close();
    // Asked before the phone opens again, online, and may send them.
    const stored = await (await server.api(`/api/records/${meeting}`)).json();
    assert.ok(!stored.record.minutes.endsWith(typed), "the server never had these keys");
    // Kept on the phone: it opens again with every key, although the
    // server never had them.
    const again = await phone.reopen();
    const minutes = await again.page.evaluate((id) => window.twinsync.read(id).record.minutes, meeting);
    assert.ok(minutes.endsWith(typed), minutes.slice(-40));
  });
}

test("a full phone tries its unsaved record whole once per 10 s, not at every key, and as soon as a write goes through", () =>
  unsavedRecord({ fault: false, keys: "bcdef", recover: "key" }));

test("a failing disk, like a full phone, has the unsaved record tried whole once per 10 s, and by a timer once it works again with no key typed", () =>
  unsavedRecord({ fault: true, keys: "bcdef", recover: "timer" }));

test("one key a failing disk could not keep is written whole by the timer once the disk works again, with nothing typed since", () =>
  unsavedRecord({ fault: true, keys: "", recover: "timer" }));

test("a person who made room on a full phone and comes back to the app has the record written whole at once", () =>
  unsavedRecord({ fault: false, keys: "", recover: "shown" }));

test("keys typed offline after a server's change the phone could not keep load once the server sends it again", async () => {
  let other;
  try {
    await withFullPhone({ before: watchWrites, full: false, arg: { fault: false, held: [10_000] } }, async (phone, server) => {
      const { page, meeting } = phone;
      await page.click("#sync-toggle");
      await until(page, () => window.twinsync.status().link === "joined" || null, undefined, "online");
      // The phone's disk fails as another phone's words arrive.
      await page.evaluate(() => { window.__diskFault = true; });
      other = await phone_(server);
      await until(other.page, readable, meeting, "the meeting on the second phone");
      // Many words: more than the room left, where a key's change fits.
      await other.page.evaluate((id) => window.tw.edit(id, [{ op: "splice_text", path: "/minutes", index: 0, delete: 0, insert: "كلمة أخرى ".repeat(40) }], "other phone"), meeting);
      await until(page, (id) => (window.twinsync.read(id).record.minutes.startsWith("كلمة أخرى") && window.twinsync.status().unsaved.includes(id)) || null,
        meeting, "the other phone's words held in memory only");
      // Offline, the disk takes each key's change but no whole record,
      // nor the other phone's words: the keys are stored, each alone, on
      // words the phone could not keep.
      await page.click("#sync-toggle");
      await until(page, () => window.twinsync.status().link === "offline" || null, undefined, "offline");
      await page.evaluate(() => { window.__diskFault = { wholeOver: 0, changesOver: 300 }; });
      await page.focus('[data-path="/minutes"] textarea');
      await page.keyboard.press("End");
      await page.keyboard.type("xyz");
      await until(page, (id) => window.twinsync.read(id).record.minutes.endsWith("xyz") || null, meeting, "the keys typed");
      // Each key's write has reached IndexedDB before the page is lost: a
      // read begun after them waits for them.
      await page.evaluate((id) => new Promise((ok, fail) => {
        const open = indexedDB.open("twinsync");
        open.onerror = () => fail(open.error);
        open.onsuccess = () => {
          const db = open.result;
          const count = db.transaction("chunks").objectStore("chunks").index("doc").count(id);
          count.onsuccess = () => { db.close(); ok(count.result); };
          count.onerror = () => fail(count.error);
        };
      }), meeting);
      // The page is lost; the phone opens again, online.
      const again = await phone.reopen();
      const minutes = await until(again.page, (id) => {
        try {
          const m = window.twinsync.read(id).record.minutes;
          return m.startsWith("كلمة أخرى") && m.endsWith("xyz") ? m : null;
        } catch { return null; }
      }, meeting, "the other phone's words, and the keys typed offline");
      assert.ok(minutes.endsWith("xyz"));
      // And the keys reach the server.
      await until(again.page, async (id) => {
        const res = await fetch(`/api/records/${id}`, { headers: { authorization: `Bearer ${localStorage.getItem("token")}` } });
        return (await res.json()).record.minutes.endsWith("xyz") || null;
      }, meeting, "the keys on the server");
    });
  } finally {
    await other?.context.close();
  }
});

/** A second phone on the demo club, its client open as `window.tw`, every record on it. */
async function phone_(server) {
  const p = await phone(browser);
  await openClient(p.page, server, {});
  await until(p.page, upToDate, undefined, "the second phone up to date");
  return p;
}

test("a key typed while an unsaved record is being written whole leaves it kept, not said unsaved for good", () =>
  withFullPhone({ before: watchWrites, full: false, arg: { fault: true, held: [10_000] } }, async (phone) => {
    const { page, meeting } = phone;
    await page.keyboard.type("a");
    await until(page, (id) => window.twinsync.status().unsaved.includes(id) || null, meeting, "the record unsaved");
    // The disk works again. The record's whole write, once it starts,
    // has a key typed into the record before it commits.
    const wholesBefore = await page.evaluate((id) => {
      window.__diskFault = false;
      const add = IDBObjectStore.prototype.add;
      IDBObjectStore.prototype.add = function (value, key) {
        if (value?.bytes instanceof Uint8Array && value.bytes[8] === 0 && !window.__typedDuring) {
          window.__typedDuring = true;
          queueMicrotask(() => window.twinsync.edit(id, [{ op: "splice_text", path: "/minutes", index: 0, delete: 0, insert: "z" }], "typed meanwhile")
            .catch((e) => { window.__typedError = e.name; }));
        }
        return add.call(this, value, key);
      };
      return window.__wholes.length;
    }, meeting);
    await page.keyboard.type("b");
    await until(page, () => window.__typedDuring || null, undefined, "a key typed during the whole write");
    const status = await until(page, () => {
      const s = window.twinsync.status();
      return s.unsaved.length === 0 ? s : null;
    }, undefined, "the record kept");
    assert.ok(!["storage-full", "not-saved"].includes(status.errorKind), JSON.stringify(status));
    // Written whole once: the key typed meanwhile is written by its own
    // write, after, and is not said unkept. (Each key typed during a whole
    // write made it start over, up to three times a key.)
    await page.waitForTimeout(300);
    const wholes = await page.evaluate(([n, id]) => window.__wholes.slice(n).filter((w) => w.doc === id).length, [wholesBefore, meeting]);
    assert.equal(wholes, 1);
    assert.equal(await page.evaluate(() => window.__typedError), undefined);
    const again = await phone.reopen();
    const minutes = await again.page.evaluate((id) => window.twinsync.read(id).record.minutes, meeting);
    assert.ok(minutes.startsWith("z") && minutes.endsWith("ab"), minutes.slice(0, 20) + "…" + minutes.slice(-20));
  }));

test("a record too big for the room left is kept by writing the key the disk refused with the next whose change fits, and not whole at each key", () =>
  withFullPhone({ before: watchWrites, full: false, arg: { fault: true, held: [10_000] } }, async (phone) => {
    const { page, meeting } = phone;
    await page.keyboard.type("a");
    await until(page, (id) => window.twinsync.status().unsaved.includes(id) || null, meeting, "the record unsaved");
    // Room for a key's change, not for the whole record.
    await page.evaluate(() => {
      window.__diskFault = { wholeOver: 0 };
      window.__chunks.length = 0;
    });
    await page.keyboard.type("bcdef", { delay: 200 });
    await until(page, (id) => window.twinsync.read(id).record.minutes.endsWith("abcdef") || null, meeting, "every key in the minutes");
    const status = await until(page, () => {
      const s = window.twinsync.status();
      return s.unsaved.length === 0 ? s : null;
    }, undefined, "the record kept");
    assert.ok(!["storage-full", "not-saved"].includes(status.errorKind), JSON.stringify(status));
    await page.waitForTimeout(300);
    // Tried whole once, at the next key; the refused key's change then
    // went with it, and each later key's change on its own.
    const writes = await page.evaluate(() => window.__chunks.slice());
    assert.equal(writes.filter((c) => c === "whole").length, 1, JSON.stringify(writes));
    assert.equal(writes.filter((c) => c === "change").length, 1 + "bcdef".length, JSON.stringify(writes));
    // The page is lost before there is room for the whole record: the
    // phone opens again offline with every key, the first included.
    const again = await phone.reopen({ offline: true });
    const minutes = await again.page.evaluate((id) => window.twinsync.read(id).record.minutes, meeting);
    assert.ok(minutes.endsWith("abcdef"), minutes.slice(-40));
  }));

test("keys stored while a record is unsaved go with what failed, should another tab compact their chunks away", () =>
  withFullPhone({ before: watchWrites, full: false, arg: { fault: true, held: [10_000] } }, async (phone) => {
    const { page, meeting } = phone;
    const append = (text) => page.evaluate(([id, text]) => {
      const minutes = window.twinsync.read(id).record.minutes;
      return window.twinsync.edit(id, [{ op: "splice_text", path: "/minutes", index: minutes.length, delete: 0, insert: text }], "typed")
        .then(() => "kept", () => "not kept");
    }, [meeting, text]);
    // The record's keys in IndexedDB, as another tab reads them.
    const keys = () => page.evaluate((id) => new Promise((resolve, reject) => {
      const open = indexedDB.open("twinsync");
      open.onerror = () => reject(open.error);
      open.onsuccess = () => {
        const db = open.result;
        const all = db.transaction("chunks").objectStore("chunks").index("doc").getAllKeys(id);
        all.onsuccess = () => { db.close(); resolve(all.result); };
        all.onerror = () => reject(all.error);
      };
    }), meeting);
    // A paste the disk refuses: the record is not kept.
    let seed = 7;
    const paste = Array.from({ length: 6000 }, () => String.fromCharCode(97 + ((seed = (seed * 1103515245 + 12345) % 2147483648) % 26))).join("");
    assert.equal(await append(paste), "not kept");
    await until(page, (id) => window.twinsync.status().unsaved.includes(id) || null, meeting, "the record unsaved");
    // Room for a key's change, not for the paste, nor the whole record:
    // each key is stored on its own, and the record stays unsaved.
    const before = await keys();
    await page.evaluate(() => { window.__diskFault = { wholeOver: 0, changesOver: 1000 }; });
    for (const key of "bcd") assert.equal(await append(key), "not kept");
    const typed = (await keys()).filter((k) => !before.includes(k));
    assert.equal(typed.length, 3, JSON.stringify(typed));
    // Another tab, holding all the server has, gives those chunks up as
    // waiting for a change no one holds, and compacts them away.
    await page.evaluate((gone) => new Promise((resolve, reject) => {
      const open = indexedDB.open("twinsync");
      open.onerror = () => reject(open.error);
      open.onsuccess = () => {
        const db = open.result;
        const tx = db.transaction("chunks", "readwrite");
        for (const key of gone) tx.objectStore("chunks").delete(key);
        tx.oncomplete = () => { db.close(); resolve(); };
        tx.onerror = () => reject(tx.error);
      };
    }), typed);
    // Room for the paste, not the whole record: the next try writes what
    // failed as one chunk, and the record is kept.
    await page.evaluate(() => { window.__diskFault = { wholeOver: 0 }; for (const f of window.__held.splice(0)) f(); });
    await until(page, () => window.twinsync.status().unsaved.length === 0 || null, undefined, "the record kept", 30_000);
    // The page is lost: the phone opens again offline with every key.
    const again = await phone.reopen({ offline: true });
    const minutes = await until(again.page, (id) => { try { return window.twinsync.read(id).record.minutes; } catch { return null; } }, meeting, "the minutes");
    assert.ok(minutes.endsWith(paste + "bcd"), minutes.slice(-40));
  }));

test("a record too big for the room left does not keep a small one unsaved with it", () =>
  // The client's timers for unsaved records, run when the test says.
  withFullPhone({ before: watchWrites, full: false, arg: { fault: false, held: [10_000, 20_000] } }, async (phone) => {
    const { page, meeting } = phone;
    const person = await page.evaluate(() => window.twinsync.list().find((r) => r.kind === "person").id);
    // The disk fails: a key in the minutes, and a person's name, are
    // not kept.
    await page.evaluate(() => { window.__diskFault = true; });
    await page.keyboard.type("a");
    await page.evaluate((id) => window.twinsync.edit(id, [{ op: "set", path: "/name/en", value: "Awa" }], "name").catch(() => null), person);
    await until(page, (ids) => ids.every((id) => window.twinsync.status().unsaved.includes(id)) || null, [meeting, person], "both named as not kept");
    // Tried whole (the timer, run now, waits out what is left of the
    // pause after the last such try), together then alone: the sizes
    // of each.
    await page.evaluate(() => { for (const f of window.__held.splice(0)) f(); });
    const sizes = await until(page, (ids) => {
      const of = (id) => window.__wholes.find((w) => w.doc === id)?.size;
      return ids.every(of) ? ids.map(of) : null;
    }, [meeting, person], "each record tried whole", 30_000);
    assert.ok(sizes[1] < sizes[0], `the person (${sizes[1]} bytes) is smaller than the minutes (${sizes[0]})`);
    // Room enough for the person, not for the minutes, nor for the key
    // refused in them.
    await page.evaluate((limit) => { window.__diskFault = { wholeOver: limit, changesOver: 0 }; }, Math.floor((sizes[0] + sizes[1]) / 2));
    await until(page, () => window.__held.length > 0 || null, undefined, "the next try set");
    await page.evaluate(() => { for (const f of window.__held.splice(0)) f(); });
    const unsaved = await until(page, (person) => {
      const u = window.twinsync.status().unsaved;
      return u.includes(person) ? null : u;
    }, person, "the person kept", 30_000);
    assert.deepEqual(unsaved, [meeting]);
    // Kept: the phone opens again, offline, with the person's new name.
    const again = await phone.reopen({ offline: true });
    const name = await again.page.evaluate((id) => window.twinsync.read(id).record.name.en, person);
    assert.equal(name, "Awa");
  }));

test("many small edits are compacted in IndexedDB and reload intact", async () => {
  await withServer(async (server) => {
    const { page, context } = await phone(browser);
    await openClient(page, server, { offline: true });
    const id = await page.evaluate(async () => {
      const id = await window.tw.create("report", { title: { fr: "Notes" }, report_type: "field", date: "2026-11-20", text: "" }, "new");
      for (let i = 0; i < 80; i++) {
        const text = window.tw.read(id).record.text;
        await window.tw.edit(id, [{ op: "splice_text", path: "/text", index: text.length, delete: 0, insert: `${i % 10}` }], "type");
      }
      return id;
    });
    const chunks = await page.evaluate(async (id) => {
      const db = await new Promise((ok) => {
        const r = indexedDB.open("twinsync");
        r.onsuccess = () => ok(r.result);
      });
      const n = await new Promise((ok) => {
        const r = db.transaction("chunks").objectStore("chunks").index("doc").count(id);
        r.onsuccess = () => ok(r.result);
      });
      db.close();
      return n;
    }, id);
    assert.ok(chunks <= 33, `81 writes left ${chunks} chunks`);
    await page.evaluate(() => window.tw.close());
    await page.reload();
    await openClient(page, server, { offline: true });
    const text = await page.evaluate((id) => window.tw.read(id).record.text, id);
    assert.equal(text, "0123456789".repeat(8));
    await context.close();
  });
});

test("a compaction whose snapshot the disk refuses at once keeps every chunk it was to replace", async () => {
  await withServer(async (server) => {
    const { page, context } = await phone(browser);
    await openClient(page, server, { offline: true });
    const id = await page.evaluate(async () => {
      const id = await window.tw.create("report", { title: { fr: "Notes" }, report_type: "field", date: "2026-11-20", text: "" }, "new");
      // From now on the disk throws at once on a whole record (Automerge's
      // chunk type 0 at byte 8), as for one too big for the room left;
      // each key's change still goes through.
      const add = IDBObjectStore.prototype.add;
      window.__refused = 0;
      IDBObjectStore.prototype.add = function (value, key) {
        if (value?.bytes instanceof Uint8Array && value.bytes[8] === 0) {
          window.__refused++;
          throw new DOMException("the disk failed", "UnknownError");
        }
        return add.call(this, value, key);
      };
      for (let i = 0; i < 40; i++) {
        const text = window.tw.read(id).record.text;
        await window.tw.edit(id, [{ op: "splice_text", path: "/text", index: text.length, delete: 0, insert: `${i % 10}` }], "type");
      }
      return id;
    });
    // Tried once past 32 chunks, and not again at each key after it.
    assert.equal(await page.evaluate(() => window.__refused), 1, "compactions tried");
    await page.evaluate(() => window.tw.close());
    await page.reload();
    await openClient(page, server, { offline: true });
    const text = await page.evaluate((id) => window.tw.read(id).record.text, id);
    assert.equal(text, "0123456789".repeat(4));
    await context.close();
  });
});

/**
 * A phone whose page runs on a clock the test moves (minutes of backoff
 * pass in a moment), counting each socket it opens until it closes, so
 * the test can wait for a try to be over.
 */
async function phoneOnAClock() {
  const { page, context } = await phone(browser);
  await page.clock.install();
  await page.addInitScript(() => {
    const Real = window.WebSocket;
    window.sockets = { opened: 0, open: 0 };
    window.WebSocket = class extends Real {
      constructor(...args) {
        super(...args);
        window.sockets.opened++;
        window.sockets.open++;
        this.addEventListener("close", () => window.sockets.open--);
      }
      // A test may say how many bytes wait to leave: a slow uplink cannot
      // be made on loopback without sending megabytes to fill its buffers.
      get bufferedAmount() { return window.queuedBytes ?? super.bufferedAmount; }
    };
  });
  return { page, context };
}

/** Moves `page`'s clock `seconds` on, a second at a time, letting each try end. */
async function runFor(page, seconds) {
  for (let s = 0; s < seconds; s++) {
    await page.clock.runFor(1_000);
    await until(page, () => (window.sockets.open === 0 ? true : null), undefined, "the tries to end");
  }
}

/** A WebSocket server on loopback that hands each socket to `onSocket`; counts them. */
async function fakeServer(onSocket) {
  const server = new WebSocketServer({ host: "127.0.0.1", port: 0 });
  const counted = { sockets: 0, url: "" };
  server.on("connection", (ws) => {
    counted.sockets++;
    onSocket(ws);
  });
  await new Promise((r) => server.once("listening", r));
  counted.url = `ws://127.0.0.1:${server.address().port}/sync`;
  counted.clients = () => [...server.clients];
  counted.close = () => new Promise((r) => {
    for (const ws of server.clients) ws.terminate();
    server.close(r);
  });
  return counted;
}

test("a phone on a flapping network runs one series of reconnection tries, however often it comes online", async () => {
  // A server that takes each socket and closes it at once, as one going
  // down for maintenance might. (A port with nothing behind it would do
  // too, but Chromium then holds each new try back for up to 5 s.)
  const down = await fakeServer((ws) => ws.close(1013, "try again later"));
  try {
    await withServer(async (server) => {
      const { page, context } = await phoneOnAClock();
      const over = (n) => {
        const s = window.sockets;
        return s.opened > n && s.open === 0 ? s.opened : null;
      };
      await openClient(page, server, { server: down.url });
      let opened = await until(page, over, 0, "the first try to end");
      // The network comes back eight times, and each time the socket is lost.
      for (let i = 0; i < 8; i++) {
        await page.evaluate(() => window.dispatchEvent(new Event("online")));
        opened = await until(page, over, opened, `the try after online event ${i + 1} to end`);
      }
      // Five minutes with the server still down: one series of tries backs
      // off to one every 15 to 30 s (at most 25 tries; 16 or 17 in trials).
      // With a series started by each online event, which ends only when
      // its timer fires while another try is under way, trials made 50 to 69.
      const start = down.sockets;
      await runFor(page, 300);
      const made = down.sockets - start;
      assert.ok(made <= 25, `${made} tries in five minutes`);
      assert.ok(made >= 9, `the phone gave up: ${made} tries in five minutes`);
      // Between tries the phone says it is offline.
      assert.equal(await page.evaluate(() => window.tw.status().state), "offline");
      await context.close();
    });
  } finally {
    await down.close();
  }
});

/**
 * A server that joins each socket, then, on its first `sockets` sockets,
 * says it cannot check the device (an `error` with no refusal) and closes
 * the socket `closeMs` later.
 */
function troubledServer({ sockets, closeMs }) {
  let seen = 0;
  const why = "the server cannot check this device right now";
  return fakeServer((ws) => {
    const troubled = ++seen <= sockets;
    ws.on("message", (data) => {
      const m = decode(data);
      if (m.type !== "join") return;
      ws.send(encode({
        type: "peer",
        senderId: "troubled-server",
        targetId: m.senderId,
        peerMetadata: { isEphemeral: false },
        selectedProtocolVersion: "1",
      }));
      if (!troubled) return;
      ws.send(encode({ type: "error", senderId: "troubled-server", targetId: m.senderId, message: why }));
      if (closeMs) setTimeout(() => ws.close(1011, why), closeMs);
      else ws.close(1011, why);
    });
  });
}

test("a server's error that refuses no change is said as the server's trouble, not as a refused change", async () => {
  // As the server says "no `join` received in time", or that it cannot
  // check the device, before it closes the socket; the next socket goes on.
  const troubled = await troubledServer({ sockets: 1, closeMs: 1_000 });
  try {
    await withServer(async (server) => {
      const { page, context } = await phone(browser);
      await openClient(page, server, { offline: true, server: troubled.url });
      await page.evaluate(() => window.tw.create("person", { name: { fr: "Salma" } }, "new person"));
      await page.evaluate(() => window.tw.connect());
      const status = await until(page, () => {
        const s = window.tw.status();
        return s.state === "error" ? s : null;
      }, undefined, "the error");
      assert.equal(status.errorKind, "server");
      assert.match(status.error, /cannot check this device/);
      assert.equal(status.refused, undefined, "no change was refused");
      assert.equal(status.unconfirmed, 1);
      // It lasts until the next join, not until every change is confirmed.
      const after = await until(page, () => {
        const s = window.tw.status();
        return s.joins >= 2 && s.link === "joined" ? s : null;
      }, undefined, "joined again");
      assert.notEqual(after.state, "error", JSON.stringify(after));
      assert.equal(after.unconfirmed, 1);
      await context.close();
    });
  } finally {
    await troubled.close();
  }
});

test("a server's trouble said after the phone's storage filled up does not hide that the phone kept nothing", async () => {
  // The server says it cannot check the device and closes the socket, as
  // the app's own test of the server's trouble has it; the phone's full
  // storage is what the person must act on, and stays said.
  const troubled = await troubledServer({ sockets: Infinity, closeMs: 0 });
  try {
    await withServer(async (server) => {
      const { page, context, profile } = await phoneWithSmallQuota(server, { server: troubled.url });
      const id = await page.evaluate(() =>
        window.tw.create("report", { title: { fr: "Petit" }, report_type: "field", date: "2026-11-20", text: "" }, "new"),
      );
      const refused = await page.evaluate(([id, insert]) =>
        window.tw.edit(id, [{ op: "splice_text", path: "/text", index: 0, delete: 0, insert }], "big")
          .then(() => "kept", (e) => e.name), [id, randomLetters()]);
      assert.equal(refused, "QuotaExceededError");
      await page.evaluate(() => window.tw.connect());
      // The socket's close is handled after the error that came before it.
      const status = await until(page, () => {
        const s = window.tw.status();
        return s.joins >= 1 && s.link !== "joined" ? s : null;
      }, undefined, "joined and closed");
      assert.equal(status.errorKind, "storage-full", JSON.stringify(status));
      assert.match(status.error, /storage is full/);
      assert.ok(status.unsaved.includes(id), JSON.stringify(status));
      await context.close();
      cleanup(profile);
    });
  } finally {
    await troubled.close();
  }
});

test("a server that closes each socket as soon as it is joined is tried ever more slowly, not twice a second", async () => {
  // As a server whose storage fails does: it answers `join`, then cuts
  // the socket on the first sync message it cannot store.
  const failing = await fakeServer((ws) => ws.on("message", (data) => {
    const join = decode(data);
    ws.send(encode({
      type: "peer",
      senderId: "failing-server",
      targetId: join.senderId,
      peerMetadata: { isEphemeral: false },
      selectedProtocolVersion: "1",
    }));
    setTimeout(() => ws.close(1011, "changes not stored"), 20);
  }));
  try {
    await withServer(async (server) => {
      const { page, context } = await phoneOnAClock();
      await openClient(page, server, { server: failing.url });
      await until(page, () => window.tw.status().joins > 0 && window.sockets.open === 0, undefined, "joined, then cut");
      // A join that lasts a moment is no working connection: the backoff
      // goes on growing, to one try every 15 to 30 s (at most 25 tries in
      // five minutes). Starting over at each join made one every 250 to
      // 500 ms.
      const start = failing.sockets;
      await runFor(page, 300);
      const made = failing.sockets - start;
      assert.ok(made <= 25, `${made} tries in five minutes`);
      assert.ok(made >= 9, `the phone gave up: ${made} tries in five minutes`);
      assert.ok((await page.evaluate(() => window.tw.status().joins)) >= 9);
      await context.close();
    });
  } finally {
    await failing.close();
  }
});

test("a connection that stayed up 30 s starts the backoff over, even with the phone's clock set back meanwhile", async () => {
  // A server that refuses every socket until it is told to hold them,
  // then answers `join` and keeps each until the test cuts it.
  const mode = { hold: false };
  const flaky = await fakeServer((ws) => {
    if (!mode.hold) {
      ws.close(1013, "try again later");
      return;
    }
    ws.on("message", (data) => {
      const join = decode(data);
      if (join.type !== "join") return;
      ws.send(encode({
        type: "peer",
        senderId: "flaky-server",
        targetId: join.senderId,
        peerMetadata: { isEphemeral: false },
        selectedProtocolVersion: "1",
      }));
    });
  });
  try {
    await withServer(async (server) => {
      const { page, context } = await phoneOnAClock();
      await openClient(page, server, { server: flaky.url });
      // Two minutes down: the phone backs off to one try every 15 to 30 s.
      await runFor(page, 120);
      mode.hold = true;
      for (let s = 0; s < 40 && !(await page.evaluate(() => window.tw.status().joins > 0)); s++) {
        await page.clock.runFor(1_000);
      }
      assert.equal(await page.evaluate(() => window.tw.status().link), "joined");
      // The phone's wall clock is set back an hour (a time zone or a
      // network time fix) while the socket stays up 31 s.
      const wall = await page.evaluate(() => Date.now());
      await page.clock.setSystemTime(wall - 3_600_000);
      await page.clock.runFor(31_000);
      assert.equal(await page.evaluate(() => window.tw.status().link), "joined");
      // From here the page's time moves only as the test moves it.
      await page.clock.pauseAt(await page.evaluate(() => Date.now() + 10));
      const before = flaky.sockets;
      for (const ws of flaky.clients()) ws.close(1001, "going away");
      await until(page, () => window.tw.status().link !== "joined" || null, undefined, "the cut seen");
      // A working connection ended: the next try comes within a second,
      // not after the 15 to 30 s the backoff had reached.
      for (let s = 0; s < 2 && flaky.sockets === before; s++) {
        await page.clock.runFor(1_000);
        await new Promise((r) => setTimeout(r, 200));
      }
      // A try made in those 2 s may take a while in real time to reach the
      // server; the page's clock stands still meanwhile, so no later try
      // can come.
      for (let i = 0; i < 50 && flaky.sockets === before; i++) {
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.equal(flaky.sockets, before + 1, "no new try within 2 s of the cut");
      await context.close();
    });
  } finally {
    await flaky.close();
  }
});

test("a socket the server never answers is given up after 20 s and tried again", async () => {
  // A network that drops packets without a word: the upgrade goes
  // through, then nothing comes back.
  const silent = await fakeServer(() => {});
  try {
    await withServer(async (server) => {
      const { page, context } = await phoneOnAClock();
      await openClient(page, server, { server: silent.url });
      await until(page, () => window.sockets.opened > 0, undefined, "the first try");
      await page.clock.runFor(21_000);
      const status = await until(page, () => {
        const s = window.tw.status();
        return s.link === "offline" ? s : null;
      }, undefined, "the silent socket given up");
      assert.match(status.error, /the server did not answer in 20 s/);
      // Given up each time, and tried again: five minutes make several
      // tries, where a socket held for ever made one.
      for (let s = 0; s < 300; s += 5) {
        await page.clock.runFor(5_000);
        // A moment in real time for a try to reach the server.
        await new Promise((r) => setTimeout(r, 50));
      }
      assert.ok(silent.sockets >= 5, `${silent.sockets} tries in five minutes`);
      await context.close();
    });
  } finally {
    await silent.close();
  }
});

/**
 * The payload length and whole length of the WebSocket frame at the start
 * of `buf`, or null while its header is incomplete.
 */
function wsFrame(buf) {
  if (buf.length < 2) return null;
  const short = buf[1] & 0x7f;
  const mask = buf[1] & 0x80 ? 4 : 0;
  const [at, payload] = short === 126
    ? [4, buf.length >= 4 ? buf.readUInt16BE(2) : null]
    : short === 127
      ? [10, buf.length >= 10 ? Number(buf.readBigUInt64BE(2)) : null]
      : [2, short];
  return payload === null ? null : { payload, whole: at + mask + payload };
}

/**
 * A TCP relay to `port` on loopback. `cut()` makes every connection open
 * now carry nothing more either way, without closing it: the network
 * changed under the phone. Connections made later are carried.
 *
 * With `holdOver` set, a frame from the server whose payload is larger
 * holds everything from it on until `release()`: a slow link, as the
 * phone sees it, which hears a WebSocket message only once all of it has
 * arrived. `held` counts the connections holding one.
 */
async function relay(port) {
  const open = new Set();
  // `up` and `down`: when bytes last went to the server and to the phone.
  const state = { connections: 0, up: 0, down: 0, holdOver: null, held: 0 };
  const server = createServer((client) => {
    state.connections++;
    const link = { dead: false, waiting: Buffer.alloc(0), holding: false };
    const upstream = connect(port, "127.0.0.1");
    client.on("data", (d) => {
      if (link.dead) return;
      state.up = performance.now();
      upstream.write(d);
    });
    upstream.on("data", (d) => {
      if (link.dead) return;
      state.down = performance.now();
      if (state.holdOver === null && !link.holding) {
        client.write(d);
        return;
      }
      link.waiting = Buffer.concat([link.waiting, d]);
      for (let frame = wsFrame(link.waiting); frame && !link.holding; frame = wsFrame(link.waiting)) {
        if (frame.payload > state.holdOver) {
          link.holding = true;
          state.held++;
        } else if (link.waiting.length >= frame.whole) {
          client.write(link.waiting.subarray(0, frame.whole));
          link.waiting = link.waiting.subarray(frame.whole);
        } else {
          break;
        }
      }
    });
    link.release = () => {
      if (link.holding) state.held--;
      link.holding = false;
      client.write(link.waiting);
      link.waiting = Buffer.alloc(0);
    };
    const end = () => {
      client.destroy();
      upstream.destroy();
      open.delete(link);
    };
    for (const s of [client, upstream]) {
      s.on("error", end);
      s.on("close", end);
    }
    link.end = end;
    open.add(link);
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  state.url = `ws://127.0.0.1:${server.address().port}/sync`;
  state.cut = () => { for (const link of open) link.dead = true; };
  state.release = () => {
    state.holdOver = null;
    for (const link of open) link.release();
  };
  state.close = () => new Promise((r) => {
    for (const link of open) link.end();
    server.close(r);
  });
  return state;
}

/**
 * A phone on a clock, connected to `server` through a TCP relay (see
 * `relay`), holding the demo meeting and up to date; the relay is the
 * caller's to close.
 */
async function phoneThroughRelay(server) {
  const meeting = await firstOf(server, "meeting");
  const club = await firstOf(server, "club");
  const path = await relay(server.port);
  try {
    const { page, context } = await phoneOnAClock();
    await openClient(page, server, { server: path.url, club });
    await until(page, readable, meeting, "the meeting");
    await until(page, upToDate, undefined, "up to date");
    // Nothing from the server still on its way: a frame the relay passed
    // on just before a test cuts the path would reach the phone after the
    // cut, and any frame heard counts as the server's answer.
    for (let i = 0; i < 50 && performance.now() - path.down < 500; i++) {
      await new Promise((r) => setTimeout(r, 100));
    }
    return { page, context, path, meeting, club };
  } catch (e) {
    await path.close();
    throw e;
  }
}

test("a socket whose network went away without a word is given up 60 s after its changes go unanswered, and they arrive on the next", async () => {
  await withServer(async (server) => {
    const { page, context, path, meeting } = await phoneThroughRelay(server);
    try {
        // From here the page's time moves only as the test moves it: left
        // to flow with real time, a loaded machine's second between the
        // edit and the look at 59 s brought the page past 60 s.
        await page.clock.pauseAt(await page.evaluate(() => Date.now() + 1_000));
        path.cut();
        await page.evaluate((id) => window.tw.edit(id, [{ op: "splice_text", path: "/minutes", index: 0, delete: 0, insert: "نقطة أولى. " }], "minutes"), meeting);
        // The server never hears of it on this socket, and the phone never
        // hears back: still joined as far as the browser knows.
        await page.clock.runFor(59_000);
        const kept = await page.evaluate(() => window.tw.status());
        assert.equal(kept.link, "joined", `at 59 s: ${JSON.stringify(kept)}`);
        // The phone looks at its socket's queued bytes each second: the
        // 60 s start once the edit's bytes are seen gone, at most 1 s in.
        await page.clock.runFor(3_000);
        const given = await until(page, () => {
          const s = window.tw.status();
          return s.link !== "joined" ? s : null;
        }, undefined, "the silent socket given up");
        assert.match(given.error ?? "", /the server did not answer in 60 s/);
        // The next socket carries the edit.
        for (let s = 0; s < 12 && (await page.evaluate(() => window.tw.status().state)) !== "up-to-date"; s++) {
          await page.clock.runFor(5_000);
          await new Promise((r) => setTimeout(r, 100));
        }
        await until(page, upToDate, undefined, "up to date again");
        const stored = await (await server.api(`/api/records/${meeting}`)).json();
        assert.ok(stored.record.minutes.startsWith("نقطة أولى. "), stored.record.minutes.slice(0, 40));
        assert.ok(path.connections >= 2);
        await context.close();
    } finally {
      await path.close();
    }
  });
});

test("a record arriving for a minute on a slow link is waited for, with an edit made meanwhile, not given up", async () => {
  await withServer(async (server) => {
    const { page, context, path, meeting, club } = await phoneThroughRelay(server);
    try {
      // From here the page's time moves only as the test moves it.
      await page.clock.pauseAt(await page.evaluate(() => Date.now() + 1_000));
      await page.evaluate(() => {
        window.errors = [];
        window.tw.onStatus((s) => { if (s.error) window.errors.push(s.error); });
      });
      path.holdOver = 100_000;
      // Another phone writes a long text: random letters, so that it stays
      // a frame of some 350 kB, which takes 20 s at mobile speeds.
      const writer = await phone(browser);
      await openClient(writer.page, server, { club });
      await until(writer.page, readable, meeting, "the meeting on the writer");
      const start = await writer.page.evaluate((id) => {
        const bytes = new Uint8Array(600_000);
        for (let i = 0; i < bytes.length; i += 65_536) crypto.getRandomValues(bytes.subarray(i, i + 65_536));
        const text = Array.from(bytes, (b) => String.fromCharCode(0x621 + (b % 26))).join("");
        window.tw.edit(id, [{ op: "splice_text", path: "/minutes", index: 0, delete: 0, insert: text }], "writer");
        return text.slice(0, 30);
      }, meeting);
      await until(writer.page, upToDate, undefined, "the writer up to date", 60_000);
      await writer.context.close();
      for (let i = 0; i < 300 && path.held === 0; i++) await new Promise((r) => setTimeout(r, 100));
      assert.equal(path.held, 1, "the long frame never came down the path");
      // 75 s with the frame on its way: a socket silent 45 s is given up,
      // unless the server said what is coming; and an edit made 5 s in,
      // whose answer waits behind the frame, 60 s after its bytes left,
      // unless the phone counts from when the frame is due.
      const seconds = async (n) => {
        for (let s = 0; s < n; s++) {
          await page.clock.runFor(1_000);
          await new Promise((r) => setTimeout(r, 20));
        }
      };
      await seconds(5);
      const note = "ملاحظة أثناء الانتظار. ";
      await page.evaluate(([id, note]) => window.tw.edit(id, [{ op: "splice_text", path: "/minutes", index: 0, delete: 0, insert: note }], "minutes"), [meeting, note]);
      await seconds(70);
      const waiting = await page.evaluate(() => window.tw.status());
      assert.equal(waiting.link, "joined", JSON.stringify(waiting));
      assert.deepEqual(await page.evaluate(() => window.errors), []);
      path.release();
      await until(page, ([id, start]) => window.tw.read(id).record.minutes.includes(start) || null, [meeting, start], "the long text", 60_000);
      await until(page, upToDate, undefined, "the edit confirmed", 60_000);
      const stored = await (await server.api(`/api/records/${meeting}`)).json();
      assert.ok(stored.record.minutes.includes(note), "the edit made meanwhile reached the server");
      assert.equal(await page.evaluate(() => window.tw.status().joins), 1);
      assert.equal(path.connections, 1);
      await context.close();
    } finally {
      await path.close();
    }
  });
});

test("a large upload on a slow link is not given up while its bytes are still leaving, and is 60 s after they have left", async () => {
  await withServer(async (server) => {
    const { page, context, path, meeting } = await phoneThroughRelay(server);
    try {
      // The server hears nothing more on this socket, while the browser
      // still has bytes of the edit to send, fewer every 5 s.
      path.cut();
      await page.evaluate(() => { window.queuedBytes = 400_000; });
      await page.evaluate((id) => window.tw.edit(id, [{ op: "splice_text", path: "/minutes", index: 0, delete: 0, insert: "أسبوع من المحاضر. " }], "minutes"), meeting);
      for (let s = 5; s <= 50; s += 5) {
        await page.clock.runFor(5_000);
        await page.evaluate((left) => { window.queuedBytes = left; }, Math.max(0, 400_000 - s * 8_000));
      }
      // 65 s after the edit, its last bytes left 15 s ago: still waiting.
      await page.clock.runFor(15_000);
      assert.equal(await page.evaluate(() => window.tw.status().link), "joined");
      // 60 s after they left, with no answer, the socket is given up.
      await page.clock.runFor(50_000);
      const given = await until(page, () => {
        const s = window.tw.status();
        return s.link !== "joined" ? s : null;
      }, undefined, "the unanswered socket given up");
      assert.match(given.error ?? "", /the server did not answer in 60 s/);
      await context.close();
    } finally {
      await path.close();
    }
  });
});

test("a phone that only listens asks after 30 s of silence, gives up a dead socket, and hears what was written meanwhile", async () => {
  await withServer(async (server) => {
    const { page, context, path, meeting, club } = await phoneThroughRelay(server);
    try {
        // From here the page's time moves only as the test moves it, a
        // second at a time, with a moment for the frames between.
        await page.clock.pauseAt(await page.evaluate(() => Date.now() + 1_000));
        await page.evaluate(() => {
          window.errors = [];
          window.tw.onStatus((s) => { if (s.error) window.errors.push(s.error); });
          window.sent = 0;
          const send = WebSocket.prototype.send;
          WebSocket.prototype.send = function (data) {
            window.sent++;
            return send.call(this, data);
          };
        });
        const seconds = async (n, stop = async () => false) => {
          for (let s = 1; s <= n; s++) {
            await page.clock.runFor(1_000);
            await new Promise((r) => setTimeout(r, 50));
            if (await stop()) return s;
          }
          return null;
        };
        // A live socket silent for a minute is asked, answers, and stays.
        await seconds(60);
        const asked = await page.evaluate(() => window.sent);
        assert.ok(asked >= 1, "no ping in a minute of silence");
        assert.ok(asked <= 3, `${asked} frames sent in a minute of silence`);
        assert.equal(await page.evaluate(() => window.tw.status().joins), 1);
        assert.deepEqual(await page.evaluate(() => window.errors), []);
        assert.equal(path.connections, 1);
        // The last ask's answer may still be on its way, in real time: let
        // it arrive, or the phone counts its silence from the ask before and
        // gives up 30 s early.
        for (let i = 0; i < 100 && path.down <= path.up; i++) {
          await new Promise((r) => setTimeout(r, 50));
        }
        // The network drops the socket without a word; the phone edits
        // nothing, so no answer is owed. Another phone writes meanwhile.
        path.cut();
        const writer = await phone(browser);
        await openClient(writer.page, server, { club });
        await until(writer.page, readable, meeting, "the meeting on the writer");
        await writer.page.evaluate((id) => window.tw.edit(id, [{ op: "splice_text", path: "/minutes", index: 0, delete: 0, insert: "Point ajouté. " }], "writer"), meeting);
        await until(writer.page, upToDate, undefined, "the writer up to date");
        await writer.context.close();
        // At most 30 s of silence, then 15 s for the answer that cannot come.
        const given = await seconds(60, async () => (await page.evaluate(() => window.errors.length)) > 0);
        assert.ok(given !== null, "the dead socket was kept a minute");
        assert.ok(given >= 15 && given <= 46, `given up after ${given} s`);
        const errors = await page.evaluate(() => window.errors);
        assert.match(errors[0], /the server did not answer in 15 s/);
        // The next socket brings the other phone's words.
        const heard = (id) => window.tw.read(id).record.minutes.startsWith("Point ajouté. ");
        assert.ok(await seconds(30, () => page.evaluate(heard, meeting)), "the edit never arrived");
        assert.ok(path.connections >= 2);
        await context.close();
    } finally {
      await path.close();
    }
  });
});
