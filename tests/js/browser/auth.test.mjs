// Signing in and permissions as a person in a browser sees them: an invite
// link opens the app signed in, and a delegate's edit to another city's
// agreement is shown refused with its reason while the edit stays on the
// device, and a revoked phone hands in its edits past the device's budget.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { addDevice, launch, openClient, openInvite, phone, until, withServer } from "./harness.mjs";
import { STRINGS } from "../../../app/i18n.js";

let browser;
before(async () => {
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

test("an invite link signs the browser in once, and it stays signed in", async () => {
  await withServer(async (server) => {
    const res = await server.api("/api/invites", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ name: "Delegate of Smara", role: "delegate", cities: ["Smara"] }),
    });
    assert.equal(res.status, 201);
    const { link } = await res.json();
    const { page, context } = await phone(browser);
    // A first try cut off before the server answers keeps the code in the
    // address, says why in the app's language, and a reload tries again.
    await page.route("**/api/invites/redeem", (r) => r.abort("internetdisconnected"));
    await openInvite(page, link);
    const lang = await page.evaluate(() => document.documentElement.lang);
    const told = (joining) => {
      const text = document.querySelector("#view .note")?.textContent;
      return text && text !== joining ? text : null;
    };
    const cut = await until(page, told, STRINGS[lang].joining, "the cut-off sign-in message");
    assert.ok(cut.includes(STRINGS[lang].signinUnreached), `${cut} says the server did not answer, in ${lang}`);
    // Said again whole in the language chosen next, not half in the first.
    const other = lang === "fr" ? "en" : "fr";
    await page.click(`[data-lang="${other}"]`);
    const again = await until(page, (want) => {
      const text = document.querySelector("#view .note")?.textContent;
      return text?.includes(want) ? text : null;
    }, STRINGS[other].signinUnreached, `the cut-off sign-in message in ${other}`);
    assert.ok(again.startsWith(STRINGS[other].signinFailed), again);
    await page.click(`[data-lang="${lang}"]`);
    assert.match(new URL(page.url()).hash, /invite=/, "the code stays in the address bar");
    await page.unroute("**/api/invites/redeem");
    // A hotel's login page answers in the server's place, with a success:
    // no token came, so the invite was not used and its code stays.
    await page.route("**/api/invites/redeem", (r) => r.fulfill({ status: 200, contentType: "text/html", body: "<h1>Welcome to the hotel</h1>" }));
    await openInvite(page);
    const portal = await until(page, told, STRINGS[lang].joining, "the message after the login page answered");
    assert.equal(portal, cut, "told as a server that did not answer");
    assert.match(new URL(page.url()).hash, /invite=/, "the code stays in the address bar after the login page");
    await page.unroute("**/api/invites/redeem");
    // Every socket the app opens.
    const sockets = [];
    page.on("websocket", (ws) => sockets.push(ws.url()));
    await openInvite(page);
    const listed = () => document.querySelectorAll("#records li").length;
    await until(page, listed, undefined, "the records listed");
    await until(page, () => document.querySelector("#sync")?.dataset.state === "up-to-date" || null, undefined, "synced");
    // The token never rides in a socket's address, which proxies log.
    assert.ok(sockets.length > 0, "a socket opened");
    const token = await page.evaluate(() => localStorage.getItem("token"));
    assert.ok(token, "a token kept");
    for (const url of sockets) assert.ok(!url.includes("token") && !url.includes(token.split(".")[1]), url);
    assert.equal(new URL(page.url()).hash, "", "the code leaves the address bar");
    // A reload, without the link, is still signed in.
    await page.reload();
    await until(page, listed, undefined, "the records listed after a reload");
    // Opening the used link again on this phone keeps it signed in, with a
    // note that the invite is spent.
    await page.goto("about:blank");
    await openInvite(page, link);
    await until(page, listed, undefined, "the records listed after opening the used link");
    const noted = await until(page, () => document.querySelector("#notice")?.textContent || null, undefined, "the spent-invite note");
    assert.ok(noted.includes(STRINGS[lang].inviteSpent), `${noted} says the invite is spent, in ${lang}`);
    assert.equal(new URL(page.url()).hash, "", "the used code leaves the address bar");
    // The invite was used up: a second browser opening it is told so, in
    // its language, with the server's words in the title.
    const second = await phone(browser);
    await openInvite(second.page, link);
    // Said in its language alone; the server's English is in the title.
    // Past "Joining…", which the Join button shows while the server is asked.
    const said = (joining) => {
      const note = document.querySelector("#view .note");
      return note?.textContent && note.textContent !== joining ? { text: note.textContent, title: note.querySelector("[title]")?.title ?? "" } : null;
    };
    const note = await until(second.page, said, STRINGS[lang].joining, "the used-invite message");
    assert.equal(note.text, STRINGS[lang].inviteSpent, `says the invite is spent, in ${lang}`);
    assert.match(note.title, /already used/);
    // A link cut short is not an invite at all, and is told apart.
    const cutShort = new URL(link);
    cutShort.hash = cutShort.hash.slice(0, -6);
    await second.page.goto("about:blank");
    await openInvite(second.page, cutShort.href);
    const unknown = await until(second.page, () => {
      const n = document.querySelector("#view .note [title]");
      return n?.title.includes("not valid") ? { text: n.parentElement.textContent, title: n.title } : null;
    }, undefined, "the unknown-invite message");
    assert.equal(unknown.text, STRINGS[lang].inviteUnknown, `says the link is not valid, in ${lang}`);
    // Too many tries from one address: a fresh invite is refused for now,
    // said so, and its code stays in the address for a reload later.
    const fresh = await server.api("/api/invites", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ name: "Second delegate", role: "delegate", cities: ["Smara"] }),
    });
    const { link: freshLink } = await fresh.json();
    let limited = false;
    for (let i = 0; i < 20 && !limited; i++) {
      const res = await fetch(`${server.url}/api/invites/redeem`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ code: "not-a-code" }),
      });
      limited = res.status === 429;
    }
    assert.ok(limited, "the server limits redemptions from one address");
    await second.page.goto("about:blank");
    await openInvite(second.page, freshLink);
    const tooMany = await until(second.page, (said) => {
      const text = document.querySelector("#view .note")?.textContent ?? "";
      return text === said[document.documentElement.lang] ? document.querySelector("#view .note [title]").title : null;
    }, Object.fromEntries(Object.entries(STRINGS).map(([l, s]) => [l, s.inviteTooMany])), "the too-many-tries message");
    assert.match(tooMany, /too many/);
    assert.match(new URL(second.page.url()).hash, /invite=/, "the unused code stays in the address bar");
    await second.context.close();
    await context.close();
  });
});

test("a delegate's edit to another city's agreement is shown refused and stays on the device", async () => {
  await withServer(async (server, dir) => {
    const agreements = await (await server.api("/api/records?kind=agreement")).json();
    const agreement = agreements[0].id;
    const { record } = await (await server.api(`/api/records/${agreement}`)).json();
    const cities = await (await server.api("/api/records?kind=city")).json();
    const outsider = cities.find((c) => !JSON.stringify(record.parties).includes(c.id));
    const token = addDevice(dir, "delegate", ["--city", outsider.id]);

    const { page, context } = await phone(browser);
    await openClient(page, server, { token });
    await until(page, (id) => { try { return window.tw.read(id); } catch { return null; } }, agreement, "the agreement");
    await page.evaluate(
      (id) => window.tw.edit(id, [{ op: "set", path: "/status", value: "suspended" }], "suspend"),
      agreement,
    );
    const status = await until(page, () => {
      const s = window.tw.status();
      return s.refused ? s : null;
    }, undefined, "the refusal");
    assert.match(status.refused, new RegExp(`refused at /status: .*party`));
    assert.ok(status.unconfirmed >= 1, "the refused edit still waits on the device");
    assert.equal(await page.evaluate((id) => window.tw.read(id).record.status, agreement), "suspended");
    const stored = await (await server.api(`/api/records/${agreement}`)).json();
    assert.equal(stored.record.status, record.status, "the server kept the agreement as it was");
    const queue = await (await server.api("/api/quarantine?status=pending")).json();
    assert.equal(queue.length, 1);
    assert.equal(queue[0].doc_id, agreement);
    // Beside the English, what an app needs to say it in any language.
    assert.deepEqual(status.refusal, { documentId: agreement, code: "not-yours", path: "/status", quarantine: queue[0].id });
    assert.equal(queue[0].code, "not-yours");
    await page.evaluate(() => window.tw.close());
    await context.close();
  });
});

// A phone revoked while it held edits hands them in. Its hand-in starts
// from nothing on every socket, so it sends all it holds; past the device's
// operations a minute its frames wait for the next minute, unread. The
// window here (70 s) is longer than the app waits for an answer to its
// changes (60 s): the server pings it meanwhile, and the phone hands in
// everything on the one socket.
test("a revoked phone's hand-in past its operations a minute waits on one socket and finishes", async () => {
  const args = ["--device-ops-per-minute", "20000", "--rate-window-secs", "70"];
  await withServer(async (server, dir) => {
    const token = addDevice(dir, "coordinator");
    const deviceId = token.split(".")[0];
    // Three records of the demo club with free text, and where it is.
    const texts = [];
    for (const [kind, path] of [["meeting", "/minutes"], ["report", "/text"], ["project", "/objectives"]]) {
      const [first] = await (await server.api(`/api/records?kind=${kind}`)).json();
      texts.push([first.id, path]);
    }
    const ids = texts.map(([id]) => id);

    const { page, context } = await phone(browser);
    await openClient(page, server, { token });
    await until(page, (ids) => {
      const s = window.tw.status();
      if (s.state !== "up-to-date") return null;
      try { return ids.every((id) => window.tw.read(id)); } catch { return null; }
    }, ids, "the records on the phone");

    // Offline, 8,000 characters of notes to each: 24,000 operations with
    // the club's history, past the 20,000 a minute.
    await page.evaluate(() => window.tw.disconnect());
    const insert = `${"مذكرة ".repeat(800)}${"note de séance ".repeat(213)}`.slice(0, 8000);
    for (const [id, path] of texts) {
      await page.evaluate(
        ([id, path, insert]) => window.tw.edit(id, [{ op: "set", path, value: insert }], "notes"),
        [id, path, insert],
      );
    }
    const revoked = await server.api(`/api/devices/${deviceId}/revoke`, { method: "POST" });
    assert.equal(revoked.status, 200, await revoked.text());
    const joins = await page.evaluate(() => window.tw.status().joins);
    await page.evaluate(() => window.tw.connect());

    const start = Date.now();
    const pending = async () => (await (await server.api("/api/quarantine?status=pending")).json())
      .map((q) => q.doc_id);
    let held = [];
    while (Date.now() - start < 150_000) {
      held = await pending();
      if (ids.every((id) => held.includes(id))) break;
      await new Promise((r) => setTimeout(r, 1_000));
    }
    assert.deepEqual([...held].sort(), [...ids].sort(), "every record's notes handed in");
    assert.ok(Date.now() - start > 60_000, "the budget was reached, and waited out");
    const status = await page.evaluate(() => window.tw.status());
    assert.equal(status.joins, joins + 1, `the hand-in ran on one socket: ${JSON.stringify(status)}`);
    await page.evaluate(() => window.tw.close());
    await context.close();
  }, { args });
});
