// The WASM client in real headless Chromium against the real server:
// IndexedDB across reloads, offline edits from two browser contexts,
// UTF-16 offsets in Arabic text, and a server restart while offline.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { binary, cleanup, dataDir, launch, openClient, phone, startServer, until, withServer } from "./harness.mjs";

let browser;
before(async () => {
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

async function firstOf(server, kind) {
  const res = await server.api(`/api/records?kind=${kind}`);
  const list = await res.json();
  return list[0].url.replace("automerge:", "");
}

const upToDate = () => {
  const s = window.tw.status();
  return s.state === "up-to-date" && s.unconfirmed === 0 ? s : null;
};

test("data persists across a page reload", async () => {
  await withServer(async (server) => {
    const { page, context } = await phone(browser);
    await openClient(page, server, { offline: true });
    const id = await page.evaluate(() =>
      window.tw.create(
        "report",
        {
          title: { ar: "زيارة ميدانية", fr: "Visite de terrain" },
          report_type: "visit",
          date: "2026-11-20",
          text: "Rencontre — لقاء",
        },
        "new report",
      ),
    );
    await page.evaluate(
      (id) => window.tw.edit(id, [{ op: "splice_text", path: "/text", index: 0, delete: 0, insert: "Compte rendu: " }], "type"),
      id,
    );
    await page.reload();
    await openClient(page, server, { offline: true });
    const view = await page.evaluate((id) => window.tw.read(id), id);
    assert.equal(view.record.title.fr, "Visite de terrain");
    assert.equal(view.record.text, "Compte rendu: Rencontre — لقاء");
    const listed = await page.evaluate(() => window.tw.list().map((r) => r.id));
    assert.ok(listed.includes(id));
    const status = await page.evaluate(() => window.tw.status());
    assert.equal(status.state, "offline");
    assert.equal(status.unconfirmed, 2, "both changes wait for the server");
    await context.close();
  });
});

test("an edit is reported saved only by a write the browser flushes to disk", async () => {
  await withServer(async (server) => {
    const { page, context } = await phone(browser);
    // Every transaction the page opens, with the durability the browser
    // gave it.
    await page.addInitScript(() => {
      const opened = (window.transactions = []);
      const transaction = IDBDatabase.prototype.transaction;
      IDBDatabase.prototype.transaction = function (...args) {
        const tx = transaction.apply(this, args);
        opened.push({ stores: [...tx.objectStoreNames], mode: tx.mode, durability: tx.durability });
        return tx;
      };
    });
    await openClient(page, server, { offline: true });
    const id = await page.evaluate(() =>
      window.tw.create("report", { title: { ar: "زيارة", fr: "Visite" }, report_type: "visit", date: "2026-11-20", text: "" }, "new report"),
    );
    await page.evaluate((id) => window.tw.edit(id, [{ op: "splice_text", path: "/text", index: 0, delete: 0, insert: "لقاء" }], "type"), id);
    const writes = await page.evaluate(() => window.transactions.filter((t) => t.mode === "readwrite" && t.stores.includes("sync")));
    assert.ok(writes.length >= 2, JSON.stringify(writes));
    assert.deepEqual([...new Set(writes.map((t) => t.durability))], ["strict"], JSON.stringify(writes));
    await context.close();
  });
});

test("an edit made by a listener as a remote change arrives is stored before it is sent", async () => {
  await withServer(async (server) => {
    const meeting = await firstOf(server, "meeting");
    const { page, context } = await phone(browser);
    // What the page adds to IndexedDB and sends on its socket, in order.
    await page.addInitScript(() => {
      const log = (window.events = []);
      const add = IDBObjectStore.prototype.add;
      IDBObjectStore.prototype.add = function (...args) {
        if (this.name === "chunks") log.push("stored");
        return add.apply(this, args);
      };
      const send = WebSocket.prototype.send;
      WebSocket.prototype.send = function (...args) {
        log.push("sent");
        return send.apply(this, args);
      };
    });
    await openClient(page, server, {});
    await until(page, (id) => { try { return window.tw.read(id); } catch { return null; } }, meeting, "the meeting");
    await until(page, upToDate, undefined, "up to date");
    // A listener that answers a remote change with an edit of its own.
    await page.evaluate((id) => {
      window.tw.subscribe((changes) => {
        if (window.answered || !changes.some((c) => c.id === id && c.origin === "remote")) return;
        window.answered = true;
        window.events.push("edit");
        window.tw.edit(id, [{ op: "set", path: "/time", value: "18:30" }], "answer");
      });
    }, meeting);
    const other = await phone(browser);
    await openClient(other.page, server, {});
    await until(other.page, (id) => { try { return window.tw.read(id); } catch { return null; } }, meeting, "the meeting elsewhere");
    await other.page.evaluate((id) => window.tw.edit(id, [{ op: "set", path: "/place/fr", value: "Dakar" }], "elsewhere"), meeting);
    await until(page, (id) => window.tw.read(id).record.place?.fr === "Dakar" && window.answered || null, meeting, "the remote change and the answer");
    await until(page, upToDate, undefined, "the answer sent");
    const events = await page.evaluate(() => window.events);
    const after = events.slice(events.indexOf("edit") + 1);
    assert.ok(after.includes("sent"), events.join(" "));
    assert.ok(after.indexOf("stored") !== -1 && after.indexOf("stored") < after.indexOf("sent"), events.join(" "));
    const stored = await (await server.api(`/api/records/${meeting}`)).json();
    assert.equal(stored.record.time, "18:30");
    await other.context.close();
    await context.close();
  });
});

test("two tabs of one browser, offline, each see what the other writes and write on top of it", async () => {
  await withServer(async (server) => {
    const { page: a, context } = await phone(browser);
    const b = await context.newPage();
    for (const tab of [a, b]) await openClient(tab, server, { offline: true });
    const id = await a.evaluate(() =>
      window.tw.create("report", { title: { ar: "زيارة", fr: "Visite" }, report_type: "visit", date: "2026-11-20", text: "لقاء" }, "new report"),
    );
    // Tab B is told, as when the server sends a change.
    await b.evaluate((id) => {
      window.heard = [];
      window.tw.subscribe((changes) => window.heard.push(...changes.filter((c) => c.id === id)));
    }, id);
    await a.evaluate((id) => window.tw.edit(id, [{ op: "set", path: "/title/fr", value: "Visite à Dakar" }], "title in A"), id);
    const seen = await until(b, (id) => {
      try {
        const view = window.tw.read(id);
        return view.record.title.fr === "Visite à Dakar" ? { view, heard: window.heard } : null;
      } catch {
        return null;
      }
    }, id, "A's record and edit in tab B");
    assert.ok(seen.heard.some((c) => c.paths.includes("/title/fr")), JSON.stringify(seen.heard));
    assert.ok(await b.evaluate((id) => window.tw.list().some((r) => r.id === id), id), "listed in tab B");
    // B writes on top of A's title: one title, no disagreement.
    await b.evaluate((id) => window.tw.edit(id, [{ op: "set", path: "/title/fr", value: "Visite à Dakar et Thiès" }], "title in B"), id);
    const inA = await until(a, (id) => {
      const view = window.tw.read(id);
      return view.record.title.fr === "Visite à Dakar et Thiès" ? view : null;
    }, id, "B's edit in tab A");
    assert.deepEqual(inA.conflicts, [], JSON.stringify(inA.conflicts));
    // Reopened, the device holds everything both tabs wrote.
    await a.reload();
    await openClient(a, server, { offline: true });
    const reopened = await a.evaluate((id) => window.tw.read(id), id);
    assert.equal(reopened.record.title.fr, "Visite à Dakar et Thiès");
    assert.equal(reopened.record.text, "لقاء");
    await context.close();
  });
});

test("a newer version of the app opening the storage in another tab is not held up: this tab stops, refuses edits and says to reload", async () => {
  await withServer(async (server) => {
    const { page: a, context } = await phone(browser);
    await openClient(a, server);
    const id = await a.evaluate(() =>
      window.tw.create("report", { title: { fr: "Visite" }, report_type: "visit", date: "2026-11-20", text: "" }, "new report"),
    );
    await until(a, () => window.tw.status().link === "joined" || null, undefined, "joined");
    // Tab B runs a version whose database is one version up: it upgrades.
    const b = await context.newPage();
    await b.goto(`${server.url}/healthz`);
    const upgrade = await b.evaluate(() => new Promise((resolve) => {
      let blocked = false;
      const request = indexedDB.open("twinsync", 2);
      request.onblocked = () => { blocked = true; };
      request.onupgradeneeded = () => request.result.createObjectStore("new_in_v2");
      request.onsuccess = () => { request.result.close(); resolve({ opened: true, blocked }); };
      request.onerror = () => resolve({ opened: false, blocked, error: String(request.error) });
      setTimeout(() => resolve({ opened: false, blocked }), 5000);
    }));
    assert.deepEqual(upgrade, { opened: true, blocked: false }, JSON.stringify(upgrade));
    const status = await until(a, () => {
      const s = window.tw.status();
      return s.errorKind === "superseded" ? s : null;
    }, undefined, "tab A told");
    assert.equal(status.link, "offline", JSON.stringify(status));
    assert.match(status.error, /newer version of the app.*reload/);
    // An edit is refused before it is made, and going online does nothing.
    const refused = await a.evaluate((id) =>
      window.tw.edit(id, [{ op: "set", path: "/title/fr", value: "Visite à Dakar" }], "title").then(() => null, (e) => e.name), id);
    assert.equal(refused, "SupersededError");
    assert.equal(await a.evaluate((id) => window.tw.read(id).record.title.fr, id), "Visite");
    await a.evaluate(() => window.tw.connect());
    await a.waitForTimeout(1000);
    assert.equal(await a.evaluate(() => window.tw.status().link), "offline");
    // This version, opened again, cannot read the upgraded database: it says so.
    await a.reload();
    const opened = await a.evaluate(async () => {
      const mod = await import("/pkg/twinsync_client.js");
      await mod.default();
      return mod.Client.open({ offline: true }).then(() => null, (e) => ({ name: e.name, message: e.message }));
    });
    assert.equal(opened?.name, "SupersededError", JSON.stringify(opened));
    assert.match(opened.message, /reload/);
    await context.close();
  });
});

/**
 * Retitles report `id` on a page whose storage was cleared: the edit is
 * refused as not kept, saying the storage was cleared, and the status says
 * not saved; returns the status.
 */
async function refusedAsCleared(page, id) {
  const refused = await page.evaluate((id) =>
    window.tw.edit(id, [{ op: "set", path: "/title/fr", value: "Visite à Dakar" }], "title").then(() => null, (e) => ({ name: e.name, message: e.message })), id);
  assert.equal(refused?.name, "StorageError", JSON.stringify(refused));
  assert.match(refused.message, /cleared/);
  const status = await page.evaluate(() => window.tw.status());
  assert.equal(status.errorKind, "not-saved", JSON.stringify(status));
  return status;
}

/** Chunks the page's IndexedDB database holds now (none in a database made afresh). */
function chunkCount(page) {
  return page.evaluate(() => new Promise((resolve, reject) => {
    const open = indexedDB.open("twinsync");
    open.onerror = () => reject(open.error);
    open.onsuccess = () => {
      const db = open.result;
      if (!db.objectStoreNames.contains("chunks")) { db.close(); resolve(0); return; }
      const count = db.transaction("chunks").objectStore("chunks").count();
      count.onsuccess = () => { db.close(); resolve(count.result); };
      count.onerror = () => reject(count.error);
    };
  }));
}

test("the browser's storage for the app cleared under an open tab: the deletion is not held up, and the tab's edits still reach the server", async () => {
  await withServer(async (server) => {
    const { page: a, context } = await phone(browser);
    await openClient(a, server);
    const id = await a.evaluate(() =>
      window.tw.create("report", { title: { fr: "Visite" }, report_type: "visit", date: "2026-11-20", text: "" }, "new report"),
    );
    await until(a, () => window.tw.status().link === "joined" && window.tw.status().unconfirmed === 0 || null, undefined, "the report on the server");
    // Site data cleared from another tab (or the browser's settings).
    const b = await context.newPage();
    await b.goto(`${server.url}/healthz`);
    const deleted = await b.evaluate(() => new Promise((resolve) => {
      const request = indexedDB.deleteDatabase("twinsync");
      request.onsuccess = () => resolve("deleted");
      request.onblocked = () => resolve("blocked");
      request.onerror = () => resolve(String(request.error));
    }));
    assert.equal(deleted, "deleted");
    // The edit cannot be kept here, says so, and reaches the server all the same.
    await refusedAsCleared(a, id);
    await until(a, () => window.tw.status().unconfirmed === 0 || null, undefined, "the edit confirmed by the server");
    const stored = await (await server.api(`/api/records/${id}`)).json();
    assert.equal(stored.record.title.fr, "Visite à Dakar");
    await context.close();
  });
});

test("site data cleared from the browser's settings, which closes the storage without a word, is the storage cleared: no change is kept on what it lost", async () => {
  await withServer(async (server) => {
    const { page, context } = await phone(browser);
    await openClient(page, server, { offline: true });
    const id = await page.evaluate(() =>
      window.tw.create("report", { title: { fr: "Visite" }, report_type: "visit", date: "2026-11-20", text: "" }, "new report"));
    // As the settings' "clear site data" does: the connection is closed by
    // the browser (a close event), not asked to close (versionchange).
    const cdp = await context.newCDPSession(page);
    await cdp.send("Storage.clearDataForOrigin", { origin: server.url, storageTypes: "indexeddb" });
    // The command may answer before the deletion is done: done, the
    // database is listed no more, its connections closed.
    await until(page, async () => !(await indexedDB.databases()).some((d) => d.name === "twinsync") || null, undefined, "the database deleted");
    const status = await refusedAsCleared(page, id);
    assert.equal(status.storageReopened, 0, JSON.stringify(status));
    // Nothing was written into the database opened afresh.
    assert.equal(await chunkCount(page), 0);
    await context.close();
  });
});

test("site data cleared under two open tabs: the second to write finds the database made afresh by the first, and keeps nothing in it either", async () => {
  await withServer(async (server) => {
    const { page: a, context } = await phone(browser);
    await openClient(a, server, { offline: true });
    const id = await a.evaluate(() =>
      window.tw.create("report", { title: { fr: "Visite" }, report_type: "visit", date: "2026-11-20", text: "" }, "new report"));
    const b = await context.newPage();
    await openClient(b, server, { offline: true });
    await until(b, (id) => { try { return window.tw.read(id); } catch { return null; } }, id, "the report in the second tab");
    const cdp = await context.newCDPSession(a);
    await cdp.send("Storage.clearDataForOrigin", { origin: server.url, storageTypes: "indexeddb" });
    await until(a, async () => !(await indexedDB.databases()).some((d) => d.name === "twinsync") || null, undefined, "the database deleted");
    // The first tab to write opens the database again, empty: cleared.
    await refusedAsCleared(a, id);
    // The second finds that database there, made by the first, without
    // the storage id it read: cleared too, not a connection lost.
    await refusedAsCleared(b, id);
    assert.equal(await chunkCount(b), 0);
    await context.close();
  });
});

test("two browser contexts edit one record offline, go online, and converge", async () => {
  await withServer(async (server) => {
    const meeting = await firstOf(server, "meeting");
    const phones = [await phone(browser), await phone(browser)];
    for (const { page } of phones) {
      await openClient(page, server, {});
      await until(page, (id) => { try { return window.tw.read(id); } catch { return null; } }, meeting, "the meeting");
      await until(page, upToDate, undefined, "up to date");
    }
    for (const { context, page } of phones) {
      await context.setOffline(true);
      await until(page, () => window.tw.status().state !== "up-to-date", undefined, "offline");
    }
    const [a, b] = phones.map((p) => p.page);
    await a.evaluate(async (id) => {
      const text = window.tw.read(id).record.minutes;
      await window.tw.edit(id, [{ op: "splice_text", path: "/minutes", index: text.length, delete: 0, insert: " [A: تمت الموافقة]" }], "A");
    }, meeting);
    await b.evaluate((id) =>
      window.tw.edit(id, [{ op: "splice_text", path: "/minutes", index: 0, delete: 0, insert: "[B: approuvé] " }], "B"),
      meeting,
    );
    assert.ok((await a.evaluate(() => window.tw.status())).unconfirmed > 0);
    await a.evaluate(() => {
      window.heard = [];
      window.tw.subscribe((changes) => window.heard.push(...changes));
    });
    for (const { context } of phones) await context.setOffline(false);
    const merged = (id) => {
      const m = window.tw.read(id).record.minutes;
      const s = window.tw.status();
      return m.startsWith("[B: approuvé] ") && m.endsWith(" [A: تمت الموافقة]") && s.unconfirmed === 0 ? m : null;
    };
    const ma = await until(a, merged, meeting, "A merged");
    const mb = await until(b, merged, meeting, "B merged");
    assert.equal(ma, mb);
    // Subscribers hear which record and which field came from elsewhere.
    const heard = await a.evaluate(() => window.heard);
    assert.ok(
      heard.some((c) => c.id === meeting && c.origin === "remote" && c.paths.includes("/minutes")),
      JSON.stringify(heard),
    );
    const stored = await (await server.api(`/api/records/${meeting}`)).json();
    assert.equal(stored.record.minutes, ma);
    for (const { context } of phones) await context.close();
  });
});

test("Arabic text edits at UTF-16 offsets land where intended", async () => {
  await withServer(async (server) => {
    const { page, context } = await phone(browser);
    await openClient(page, server, { offline: true });
    const result = await page.evaluate(async () => {
      const tw = window.tw;
      // Shadda and fatha on the mim; the emoji is a surrogate pair.
      let expected = "مُحَمَّد 🌍 السمارة — réunion";
      const id = await tw.create(
        "report",
        { title: { ar: "تقرير" }, report_type: "field", date: "2026-11-20", text: expected },
        "new",
      );
      const splice = async (index, del, insert) => {
        await tw.edit(id, [{ op: "splice_text", path: "/text", index, delete: del, insert }], "edit");
        expected = expected.slice(0, index) + insert + expected.slice(index + del);
      };
      await splice(expected.indexOf("🌍"), 0, "ـ");
      await splice(expected.indexOf("🌍") + 2, 0, " و");
      await splice(expected.indexOf("السمارة") + 2, 5, "مارة!");
      await splice(3, 0, "\u0651"); // a shadda inside the first word
      let refused = null;
      try {
        await splice(expected.indexOf("🌍") + 1, 0, "x"); // inside the pair
      } catch (e) {
        refused = `${e.name}: ${e.message}`;
      }
      return { got: tw.read(id).record.text, expected, refused };
    });
    assert.equal(result.got, result.expected);
    assert.match(result.refused, /^EditError: text offsets at \/text/);
    await context.close();
  });
});

test("a client that stays offline while the server restarts catches up", async () => {
  const dir = dataDir();
  let server = await startServer({ dir });
  try {
    const meeting = await firstOf(server, "meeting");
    const [pa, pb] = [await phone(browser), await phone(browser)];
    for (const { page } of [pa, pb]) {
      await openClient(page, server, {});
      await until(page, (id) => { try { return window.tw.read(id); } catch { return null; } }, meeting, "the meeting");
      await until(page, upToDate, undefined, "up to date");
    }
    await pa.context.setOffline(true);
    await pa.page.evaluate((id) =>
      window.tw.edit(id, [{ op: "splice_text", path: "/minutes", index: 0, delete: 0, insert: "[A hors ligne] " }], "A"),
      meeting,
    );
    const port = server.port;
    await server.stop("SIGTERM");
    server = await startServer({ dir, port });
    // B reconnects by itself and edits through the restarted server.
    await until(pb.page, upToDate, undefined, "B back");
    await pb.page.evaluate(async (id) => {
      const text = window.tw.read(id).record.minutes;
      await window.tw.edit(id, [{ op: "splice_text", path: "/minutes", index: text.length, delete: 0, insert: " [B après redémarrage]" }], "B");
    }, meeting);
    await until(pb.page, upToDate, undefined, "B confirmed");
    await pa.context.setOffline(false);
    const caught = (id) => {
      const m = window.tw.read(id).record.minutes;
      return m.startsWith("[A hors ligne] ") && m.endsWith(" [B après redémarrage]") && window.tw.status().unconfirmed === 0 ? m : null;
    };
    const minutes = await until(pa.page, caught, meeting, "A caught up");
    const stored = await (await server.api(`/api/records/${meeting}`)).json();
    assert.equal(stored.record.minutes, minutes);
    await pa.context.close();
    await pb.context.close();
  } finally {
    await server.stop();
    cleanup(dir);
  }
});

test("a server restored from an older backup gets back from the phone what it lost", async () => {
  const dir = dataDir();
  let server = await startServer({ dir });
  try {
    const meeting = await firstOf(server, "meeting");
    const { page, context } = await phone(browser);
    await openClient(page, server, {});
    await until(page, (id) => { try { return window.tw.read(id); } catch { return null; } }, meeting, "the meeting");
    const type = (text) => page.evaluate(async ({ id, text }) => {
      const minutes = window.tw.read(id).record.minutes;
      await window.tw.edit(id, [{ op: "splice_text", path: "/minutes", index: minutes.length, delete: 0, insert: text }], "type");
    }, { id: meeting, text });
    await type(" [قبل النسخة الاحتياطية]");
    await until(page, upToDate, undefined, "the first words confirmed");
    const backup = join(dir, "backup.db");
    execFileSync(binary, ["backup", "--data-dir", dir, backup], { stdio: "ignore" });
    await type(" [after the backup]");
    await until(page, upToDate, undefined, "the later words confirmed");
    const minutes = await page.evaluate((id) => window.tw.read(id).record.minutes, meeting);

    // The server's disk dies; the operator restores last night's backup.
    await context.setOffline(true);
    const port = server.port;
    await server.stop("SIGKILL");
    execFileSync(binary, ["restore", "--data-dir", dir, backup], { stdio: "ignore" });
    server = await startServer({ dir, port });
    const stored = async () => (await (await server.api(`/api/records/${meeting}`)).json()).record.minutes;
    const restored = await stored();
    assert.ok(restored.endsWith(" [قبل النسخة الاحتياطية]"), restored);

    // The phone, which kept its sync state with the server, sends back
    // what the backup lacks.
    await context.setOffline(false);
    const started = Date.now();
    let now = restored;
    while (now !== minutes && Date.now() - started < 20_000) {
      await new Promise((r) => setTimeout(r, 200));
      now = await stored();
    }
    assert.equal(now, minutes);
    await until(page, upToDate, undefined, "up to date with the restored server");
    await context.close();
  } finally {
    await server.stop();
    cleanup(dir);
  }
});

test("a tab closed in the middle of typing loses nothing the API said was saved", async () => {
  await withServer(async (server) => {
    const { page, context } = await phone(browser);
    await openClient(page, server, { offline: true });
    const id = await page.evaluate(() =>
      window.tw.create(
        "report",
        { title: { fr: "Notes" }, report_type: "field", date: "2026-11-30", text: "" },
        "new report",
      ),
    );
    // Every edit whose promise resolved is reported to the test at once;
    // the page is closed while edits are still being made.
    let saved = -1;
    page.on("console", (msg) => {
      const m = /^saved (\d+)$/.exec(msg.text());
      if (m) saved = Math.max(saved, Number(m[1]));
    });
    page.evaluate(async (id) => {
      for (let n = 0; n < 10000; n++) {
        const text = window.tw.read(id).record.text ?? "";
        await window.tw.edit(id, [{ op: "splice_text", path: "/text", index: text.length, delete: 0, insert: `<${n}>` }], "type");
        console.log(`saved ${n}`);
      }
    }, id).catch(() => {});
    const started = Date.now();
    while (saved < 20 && Date.now() - started < 20000) await new Promise((r) => setTimeout(r, 20));
    assert.ok(saved >= 20, "the page saved edits before it was closed");
    await page.close();
    const said = saved;

    const reopened = await context.newPage();
    await openClient(reopened, server, { offline: true });
    const text = await reopened.evaluate((id) => window.tw.read(id).record.text, id);
    for (let n = 0; n <= said; n++) assert.ok(text.includes(`<${n}>`), `edit ${n} was said to be saved but is gone`);
    await context.close();
  });
});

test("a storage connection the browser drops under the page is opened again, and edits go on being kept", async () => {
  await withServer(async (server) => {
    const { page, context } = await phone(browser);
    // Each connection the page opens, so that the test can close it as
    // Safari does to a page left in the background: the page lives on,
    // and every transaction on that connection then fails.
    await page.addInitScript(() => {
      window.__connections = [];
      const open = IDBFactory.prototype.open;
      IDBFactory.prototype.open = function (...args) {
        const request = open.apply(this, args);
        request.addEventListener("success", () => window.__connections.push(request.result));
        return request;
      };
    });
    await openClient(page, server, { offline: true });
    const id = await page.evaluate(() =>
      window.tw.create("report", { title: { fr: "Visite à Tombouctou" }, report_type: "visit", date: "2026-11-30", text: "" }, "new report"));
    const text = "Arrivée le matin. وصلنا صباحا.";
    for (const [i, piece] of ["Arrivée le matin. ", "وصلنا صباحا."].entries()) {
      // Lost, with its close event the first time (Chromium sends one),
      // without the second (Safari may not).
      await page.evaluate((fire) => {
        for (const db of window.__connections) {
          db.close();
          if (fire) db.dispatchEvent(new Event("close"));
        }
      }, i === 0);
      await page.evaluate(([id, piece]) => {
        const at = window.tw.read(id).record.text.length;
        return window.tw.edit(id, [{ op: "splice_text", path: "/text", index: at, delete: 0, insert: piece }], "type");
      }, [id, piece]);
    }
    const status = await page.evaluate(() => window.tw.status());
    assert.equal(status.storageReopened, 2, JSON.stringify(status));
    assert.deepEqual(status.unsaved, [], JSON.stringify(status));
    assert.equal(status.error, undefined, JSON.stringify(status));
    // Kept on the phone: a new page, still offline, reads it back.
    await page.close();
    const again = await context.newPage();
    await openClient(again, server, { offline: true });
    assert.equal(await again.evaluate((id) => window.tw.read(id).record.text, id), text);
    await context.close();
  });
});

test("two edits made at once are stored in the order they were made, though a whole record's write holds up the first", async () => {
  await withServer(async (server) => {
    const { page, context } = await phone(browser);
    // What is added, in order: a whole record, or the change holding a word.
    await page.addInitScript(() => {
      window.__fault = false;
      window.__adds = [];
      const add = IDBObjectStore.prototype.add;
      IDBObjectStore.prototype.add = function (value, key) {
        if (value?.bytes instanceof Uint8Array) {
          const text = String.fromCharCode(...value.bytes);
          window.__adds.push(value.bytes[8] === 0 ? "whole" : ["ALPHA", "BRAVO"].find((w) => text.includes(w)) ?? "change");
        }
        if (window.__fault) throw new DOMException("the disk failed", "UnknownError");
        return add.call(this, value, key);
      };
      // The client's 10 s timer that writes the record whole is held: the
      // next edit's write does it.
      const setTimeout = window.setTimeout;
      window.setTimeout = function (f, ms, ...rest) {
        return ms === 10_000 ? -1 : setTimeout.call(this, f, ms, ...rest);
      };
    });
    await openClient(page, server, { offline: true });
    const [person, report] = await page.evaluate(async () => [
      await window.tw.create("person", { name: { fr: "Awa Diop" } }, "new person"),
      await window.tw.create("report", { title: { fr: "Notes" }, report_type: "field", date: "2026-11-30", text: "" }, "new report"),
    ]);
    // A record the disk failed to keep, to be written whole by the next
    // write once 10 s have passed.
    await page.evaluate(() => { window.__fault = true; });
    await assert.rejects(page.evaluate((id) => window.tw.edit(id, [{ op: "set", path: "/name/en", value: "Awa Diop" }], "name"), person));
    await page.evaluate(() => { window.__fault = false; });
    assert.deepEqual(await page.evaluate(() => window.tw.status().unsaved), [person]);
    await page.waitForTimeout(10_500);
    await page.evaluate(() => { window.__adds.length = 0; });
    const settled = await page.evaluate((id) => Promise.allSettled(["ALPHA", "BRAVO"].map((word, i) =>
      window.tw.edit(id, [{ op: "splice_text", path: "/text", index: 5 * i, delete: 0, insert: word }], word))).then((all) => all.map((r) => r.status)), report);
    assert.deepEqual(settled, ["fulfilled", "fulfilled"]);
    const adds = await page.evaluate(() => window.__adds);
    assert.equal(adds[0], "whole", JSON.stringify(adds));
    assert.ok(adds.indexOf("ALPHA") < adds.indexOf("BRAVO"), JSON.stringify(adds));
    assert.deepEqual(await page.evaluate(() => window.tw.status().unsaved), []);
    await context.close();
  });
});

test("IndexedDB missing from the browser is a clear error; a deleted database comes back from the server", async () => {
  await withServer(async (server) => {
    const { page, context } = await phone(browser);
    // A browser without IndexedDB (some private modes): opening says so.
    await page.goto(`${server.url}/healthz`);
    const refused = await page.evaluate(async (token) => {
      Object.defineProperty(window, "indexedDB", { value: undefined, configurable: true });
      const mod = await import("/pkg/twinsync_client.js");
      await mod.default();
      try {
        await mod.Client.open({ token });
        return null;
      } catch (e) {
        return String(e.message ?? e);
      }
    }, server.token);
    assert.match(refused ?? "", /IndexedDB is not available/);

    // With IndexedDB: a delegate's record reaches the server, then the
    // browser's site data is cleared. Reopening recovers it from the server.
    await page.reload();
    await openClient(page, server, {});
    // Once the club's index has arrived, so the new record is listed in it.
    await until(page, upToDate, undefined, "the club's records");
    const id = await page.evaluate(() =>
      window.tw.create("report", { title: { fr: "Avant l'effacement" }, report_type: "visit", date: "2026-11-30", text: "سجل" }, "new"),
    );
    await until(page, upToDate, undefined, "the report on the server");
    await page.evaluate(async () => {
      await window.tw.close?.();
      await new Promise((resolve, reject) => {
        const r = indexedDB.deleteDatabase("twinsync");
        r.onsuccess = resolve;
        r.onerror = () => reject(r.error);
        r.onblocked = () => resolve();
      });
    });
    // The database really went: opened without connecting, the report is
    // not on the device.
    await page.reload();
    await openClient(page, server, { offline: true });
    const gone = await page.evaluate((id) => { try { return window.tw.read(id).record.text ?? "?"; } catch { return null; } }, id);
    assert.equal(gone, null, "the report was still on the device");
    await page.reload();
    await openClient(page, server, {});
    const back = await until(page, (id) => { try { return window.tw.read(id).record; } catch { return null; } }, id, "the report back from the server");
    assert.equal(back.title.fr, "Avant l'effacement");
    assert.equal(back.text, "سجل");
    await context.close();
  });
});
