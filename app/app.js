// The field app: delegates browse and edit the club's records offline, and
// coordinators see them merged. Every record lives in the browser client's
// IndexedDB store (`/pkg/twinsync_client.js`) and syncs whenever a
// connection allows; nothing here is loaded from outside the server.

import init, { Client, schema as loadSchema } from "/pkg/twinsync_client.js";
import { LANGS, STRINGS, t, pieces, plural, formatDate, formatDateTime, formatNumber, formatId, listOf } from "./i18n.js";
import { matches } from "./search.js";
import { runsOf, othersWithin } from "./history.js";
import { h, fill, words, wordsOf, cut, pick, show, showItem, fieldAt, fieldRows, creationRows, once, writeFocused, today, REF_KIND, LANGUAGE_NAMES, titleOf as linkedTitle } from "./fields.js";

// The WebAssembly is fetched now, beside the code just loaded that speaks
// to it: fetched after a wait (a signed-in phone's Join screen), it could
// come from a newer version the service worker took in meanwhile.
const wasmLoaded = init();
// A failure is said where the client opens, not as an unhandled rejection.
wasmLoaded.catch(() => {});

const KINDS = ["club", "city", "agreement", "project", "meeting", "person", "report"];
const $ = (sel) => document.querySelector(sel);

const app = {
  lang: LANGS.includes(localStorage.getItem("lang")) ? localStorage.getItem("lang") : "ar",
  token: null,
  me: JSON.parse(localStorage.getItem("me") ?? "null"),
  client: null,
  schema: null,
  summaries: [],
  byUrl: new Map(),
  /** Search text per record id, built on first search and kept fresh. */
  texts: new Map(),
  /**
   * The device that created a meeting or report, by record id, as the
   * server said (`creatorOf`) or as made here: kept on the phone, as a
   * record's creator never changes and the server is asked only online.
   */
  creators: keptCreators(),
  query: "",
  /** The record view on screen: its id and its field editors by path. */
  view: null,
};
const tr = (key, vars) => t(app.lang, key, vars);
// A button's name for a screen reader: what it does, and to what, with the
// language's own separator (an Arabic colon is spaced as French is not).
const labelled = (label, value) => `${label}${tr("labelSeparator")}${value}`;
// The sign-in's trouble said after "Could not sign in: ", in whatever
// language the screen is in when it is drawn.
const unreached = () => Object.assign(new Error(tr("signinUnreached")), { after: "signinUnreached" });

/** The creators kept on the phone (`noteCreator`). */
function keptCreators() {
  try {
    return new Map(Object.entries(JSON.parse(localStorage.getItem("creators") ?? "{}") ?? {}));
  } catch {
    return new Map();
  }
}

/**
 * Notes that device `creator` made record `id`, here and on the phone,
 * beside what other tabs noted since this one started.
 */
function noteCreator(id, creator) {
  app.creators.set(bare(id), creator);
  for (const [kept, by] of keptCreators()) if (!app.creators.has(kept)) app.creators.set(kept, by);
  try { localStorage.setItem("creators", JSON.stringify(Object.fromEntries(app.creators))); } catch { /* full: kept for this page */ }
}

/**
 * `tr` as nodes, each value in a `<bdi>`: what the server or the browser
 * said is English, and an Arabic sentence around it keeps its order.
 */
const trIsolated = (key, vars) => pieces(app.lang, key, vars, (value) => h("bdi", {}, String(value)));

/**
 * What went wrong in the person's language, then what was said, isolated:
 * the client's and the browser's own words, in English, read so by a
 * screen reader.
 */
const explained = (said, detail) => [said, " ", h("bdi", { class: "detail", lang: "en" }, `(${detail})`)];

/**
 * The offline shell (`sw.js`): until a version of it is installed whole,
 * the app does not open without a network, though every record is on the
 * phone. An install that failed (a file cut off on a poor link) is said in
 * the sync bar, and tried again whenever the phone comes online or the app
 * is shown again. `app.shell`: "ready", "failed", or undefined meanwhile.
 */
function installShell() {
  if (!("serviceWorker" in navigator)) return;
  navigator.serviceWorker.register("/sw.js", { updateViaCache: "none" }).then((reg) => {
    if (reg.active) return shellIs("ready");
    const worker = reg.installing ?? reg.waiting;
    worker?.addEventListener("statechange", () => {
      if (worker.state === "activated") shellIs("ready");
      else if (worker.state === "redundant" && !reg.active) shellIs("failed");
    });
  }).catch((e) => {
    console.warn("no offline shell:", e);
    shellIs("failed");
  });
}

function shellIs(state) {
  app.shell = state;
  try { if (app.client) syncBar(app.client.status()); } catch { /* no client yet */ }
}

installShell();
const retryShell = () => { if (app.shell === "failed" && navigator.onLine) installShell(); };
window.addEventListener("online", retryShell);
document.addEventListener("visibilitychange", () => { if (!document.hidden) retryShell(); });

// ----- Signing in ----------------------------------------------------------

// An invite link (`/#invite=CODE`) is redeemed once for a device token, kept
// in this browser so the device stays signed in offline.
async function signIn() {
  const code = new URLSearchParams(location.hash.slice(1)).get("invite");
  // An invite is used only by a person's tap: a mail filter or a link
  // preview that opens the page must not spend it, and a phone already
  // signed in is told what joining does to it, and may go on as it was.
  if (code && !(await joinPressed())) {
    history.replaceState(null, "", location.pathname);
    return localStorage.getItem("token");
  }
  if (code) {
    // The code stays in the address until the server has answered: a
    // sign-in cut off (no network, a hotel's login page answering instead)
    // is tried again by reloading.
    let res;
    let body;
    try {
      res = await fetch("/api/invites/redeem", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ code }),
      });
    } catch {
      throw unreached();
    }
    // A proxy's error page is not JSON: its status still says what happened.
    body = await res.json().catch(() => ({}));
    // A success without a token came from something else than the club's
    // server (a hotel's login page): the invite was not used.
    if (res.ok && typeof body?.token !== "string") throw unreached();
    // Too many tries, or the server in trouble, leave the invite unused:
    // the code stays for a reload. Otherwise it has been answered for.
    if (res.status !== 429 && res.status < 500) history.replaceState(null, "", location.pathname);
    if (!res.ok) {
      // Said in the person's language; the server's words (English) only
      // where the app has no sentence of its own.
      const key = { 401: "inviteUnknown", 410: "inviteSpent", 429: "inviteTooMany" }[res.status]
        ?? (res.status >= 500 ? "signinServer" : undefined);
      throw Object.assign(new Error(body?.error ?? `${res.status} ${res.statusText}`), { key });
    }
    // The lists of the last sign-in go. Its drafts wait for who this
    // device now is (`settleDrafts`): a delegate whose token lapsed, told
    // to ask for a new invite, keeps what they were typing.
    const before = JSON.parse(localStorage.getItem("me") ?? "null");
    localStorage.setItem("token", body.token);
    localStorage.removeItem("me");
    forgetKept({ drafts: false });
    localStorage.setItem("draftsOf", JSON.stringify(before?.person ?? null));
    app.me = null;
  }
  return localStorage.getItem("token");
}

/** Who this device is; asked of the server when it answers, else as last known. */
async function whoAmI() {
  try {
    const res = await api("/api/me", { signal: AbortSignal.timeout(5000) });
    if (res.ok) {
      app.me = await res.json();
      localStorage.setItem("me", JSON.stringify(app.me));
      settleDrafts();
    }
  } catch { /* offline: keep the last known answer */ }
}

/**
 * After a new invite, keeps the drafts of new records if this device is
 * the same person's as before, and forgets them otherwise (a phone passed
 * on; or a sign-in with no person to tell by).
 */
function settleDrafts() {
  const of = localStorage.getItem("draftsOf");
  if (of === null || !app.me) return;
  localStorage.removeItem("draftsOf");
  let person = null;
  try { person = JSON.parse(of); } catch { /* unreadable: another's */ }
  if (!person || bare(person) !== bare(app.me.person)) forgetKept({ lists: false });
}

/**
 * Asks the server who this device is again, and redraws what depends on it:
 * always at start, else only when its name, role, cities or person changed
 * (a coordinator changed them, and the server closed the socket).
 */
async function meChanged({ always = false } = {}) {
  const rights = () => JSON.stringify([app.me?.name, app.me?.role, app.me?.cities, app.me?.person, app.me?.revoked_at]);
  const before = rights();
  await whoAmI();
  if (!always && rights() === before) return;
  // Only a coordinator keeps a coordinator's lists; a revoked phone may be
  // lost, and keeps no draft either. A delegate's drafts stay: this runs at
  // every start, and a draft is what the last start brought back.
  if (!isCoordinator()) forgetKept({ drafts: revoked() });
  chrome();
  // What is being typed, chosen or read on screen is left alone; the
  // screen takes the new rights when next drawn.
  if (!always && heldOnScreen()) return;
  // What this device may change shows once the server has said who it is.
  if (!app.view || (app.view.screen && !app.view.touched)) route();
  else if (app.view.id && !$("#view form.record")?.contains(document.activeElement)) recordView(app.view.id, app.view.at);
}

/**
 * After each new connection (the client's backoff spaces them): the device
 * may have changed meanwhile, which is why the server closed its socket,
 * or between the start's question and the first connection. `joins`
 * counts connections even while `state` shows a refused change.
 */
function onReconnect(s) {
  if (s.joins > (app.joins ?? 0)) meChanged();
  app.joins = s.joins;
}

const api = (path, init = {}) => fetch(path, { ...init, headers: { authorization: `Bearer ${app.token}`, ...init.headers } });
const role = () => app.me?.role ?? "delegate";
const isCoordinator = () => role() === "coordinator" && !revoked();
/** A coordinator revoked this device: it reads what it holds and hands in what it had not sent. */
const revoked = () => !!app.me?.revoked_at;
const writable = () => role() !== "observer" && !revoked();

// ----- Chrome: language, navigation, sync bar -------------------------------

function chrome() {
  const root = document.documentElement;
  root.lang = app.lang;
  root.dir = app.lang === "ar" ? "rtl" : "ltr";
  document.title = `${tr("club")} — twinsync`;
  for (const el of document.querySelectorAll("[data-t]")) el.textContent = tr(el.dataset.t);
  for (const b of document.querySelectorAll("[data-lang]")) b.setAttribute("aria-pressed", String(b.dataset.lang === app.lang));
  $("#search").placeholder = tr("searchPlaceholder");
  $("#search").setAttribute("aria-label", tr("search"));
  $("nav.language").setAttribute("aria-label", tr("language"));
  $("#search").value = app.query;
  $('nav.views a[href="#/dashboard"]').hidden = role() === "delegate" || revoked();
  $('nav.views a[href="#/devices"]').hidden = !isCoordinator();
  // The device's name may be in another script than the sentence.
  fill($("#me"), app.me ? pieces(app.lang, "signedInAs", { name: words(app.me.name), role: tr(app.me.role) }, (v) => v) : null);
  syncBar(app.client?.status());
}

for (const b of document.querySelectorAll("[data-lang]")) {
  b.addEventListener("click", () => {
    app.lang = b.dataset.lang;
    localStorage.setItem("lang", app.lang);
    chrome();
    // A new record's form being filled in keeps what was typed, and so do
    // an invite or a device being edited on the Devices screen; they take
    // the new language when next drawn.
    if (!app.client && app.redrawStart) app.redrawStart();
    else if (!app.view?.dirty && !app.view?.touched) route();
  });
}

/**
 * Whether the person is at a control on the screen (typing, choosing), which
 * a redraw would take from them; a heading focused after navigation is not.
 */
function busyOnScreen() {
  const a = document.activeElement;
  return !!a && $("#view").contains(a) && a.matches("input, textarea, select, button, a, summary, [contenteditable]");
}

/**
 * Whether the screen is in use in a way a redraw would undo: a control the
 * person is at, or something opened to read (a refused batch's changes).
 * A redraw held for something opened happens once it is closed.
 */
function heldOnScreen() {
  const opened = !!$("#view details[open]");
  if (opened) app.redrawHeld = true;
  return busyOnScreen() || opened;
}
/** Whether the record on screen waits to be drawn again (see `refreshRecordView`). */
const recordStale = () => !!(app.view?.id && app.view.at === null && app.view.stale);

document.addEventListener("toggle", (e) => {
  if (e.target.open || !app.redrawHeld || $("#view details[open]")) return;
  // A history line closed by its own summary, which keeps the focus: the
  // record is drawn again, the focus put back on that line's summary.
  const summary = e.target.querySelector?.(":scope > summary");
  if (busyOnScreen() && !(recordStale() && document.activeElement === summary)) return;
  app.redrawHeld = false;
  if (app.view?.screen && !app.view.touched) route();
  else if (recordStale()) {
    const hash = e.target.closest("li")?.dataset.hash;
    recordView(app.view.id);
    if (hash) $(`#view li[data-hash="${hash}"] details.changes summary`)?.focus();
  }
}, true);
document.addEventListener("focusout", () => {
  if (!app.redrawHeld) return;
  // Where the focus goes is known once the event is over.
  setTimeout(() => {
    if (!app.redrawHeld || heldOnScreen() || app.view?.touched) return;
    if (app.view?.screen) {
      app.redrawHeld = false;
      route();
    } else if (recordStale()) {
      app.redrawHeld = false;
      recordView(app.view.id);
    }
  });
}, true);

/**
 * When the focus is on a button or a link of the screen that the screen
 * drawn again has too (the same id, target or `data-kind`; with `alike`,
 * also the one button of its class, as Print is, or a disagreement's
 * value, by its record, path and value: for a record drawn at once, as
 * `redrawWhenLeft` draws it, not a screen whose lists arrive later), or on
 * a section's heading the app itself focused, and nothing is opened to
 * read: a function that puts the focus back on it. A button known only by
 * its words (one "Accept" of many) is not guessed at: the redraw waits
 * until the focus leaves it.
 */
function pressedOnScreen({ alike = false } = {}) {
  const a = document.activeElement;
  if (!a || !$("#view").contains(a) || $("#view details[open]")) return null;
  if (a.matches("h2[tabindex='-1'], h3[tabindex='-1']")) {
    // A heading focused after a value was kept (`afterKeeping`): the same
    // section's heading is focused again.
    const section = a.closest("section")?.className;
    return () => {
      const same = section && $("#view").querySelector(`section.${CSS.escape(section)} > ${a.tagName.toLowerCase()}`);
      if (same) { same.tabIndex = -1; same.focus({ preventScroll: true }); }
    };
  }
  if (!a.matches("button, a")) return null;
  const [tag, id, href, kind] = [a.tagName, a.id, a.getAttribute("href"), a.dataset.kind];
  const row = a.closest("li[data-path]");
  const key = (b) => [b.className, b.dataset.value, b.closest("li[data-path]")?.dataset.path, b.closest("li[data-path]")?.dataset.id].join("\u0000");
  const was = key(a);
  const known = alike && !!a.className && [...$("#view").querySelectorAll(tag)].filter((b) => key(b) === was).length === 1
    && (row ? a.dataset.value !== undefined : !a.dataset.value);
  if (!id && !href && !kind && !known) return null;
  return () => {
    const same = [...$("#view").querySelectorAll(tag)].find((b) => (id ? b.id === id
      : href ? b.getAttribute("href") === href
      : kind ? b.dataset.kind === kind
      : key(b) === was));
    same?.focus({ preventScroll: true });
  };
}

/** Whether the screen may be left: a new record's form with input asks first. */
function mayLeave() {
  if (!app.view?.dirty) return true;
  if (!confirm(tr("discardDraft"))) return false;
  app.view.dirty = false;
  if (app.view.new) localStorage.removeItem(draftKey(app.view.new));
  return true;
}

// A phone freezes or kills a hidden page without warning.
document.addEventListener("visibilitychange", () => { if (document.visibilityState === "hidden") writeFocused(); });
addEventListener("pagehide", writeFocused);
// A required field left empty is said in the app's language, not the
// browser's: a phone set to French says "Veuillez renseigner ce champ" to
// a delegate using the app in Arabic. Said only for a field the app has
// not given its own words (a title in no language has its own).
document.addEventListener("invalid", (e) => {
  const field = e.target;
  if (!field.validity?.valueMissing || (field.validity.customError && !field.dataset.emptySaid)) return;
  field.setCustomValidity(tr(field.matches("select") ? "chooseThis" : "fillThis"));
  field.dataset.emptySaid = "1";
}, true);
for (const type of ["input", "change"]) {
  document.addEventListener(type, (e) => {
    if (!e.target.dataset?.emptySaid) return;
    e.target.setCustomValidity("");
    delete e.target.dataset.emptySaid;
  }, true);
}
// Leaving asks first while a form holds what was typed, or while the phone
// could not keep some record, or its storage stopped answering, and holds
// changes the server has not confirmed: they may be in this page's memory
// only. A field still being
// typed in is written first, and leaving asks too: a window closed at once
// would end the page before the device has kept it.
addEventListener("beforeunload", (e) => {
  const writing = writeFocused();
  let held = false;
  try {
    const s = app.client?.status();
    held = (s?.unsaved?.length > 0 || s?.storageStuck) && s.unconfirmed > 0;
  } catch { /* no client yet */ }
  if (app.view?.dirty || held || writing) e.preventDefault();
});

function syncBar(s) {
  const bar = $("#sync");
  if (!s) { bar.hidden = true; return; }
  bar.hidden = false;
  checkSignedIn(s);
  // A token the server no longer takes stops syncing, with why.
  const signedOut = app.signedOut && s.link === "offline";
  // Said for as long as it lasts: the bar would otherwise say "up to date".
  const gone = !signedOut && revoked();
  if (s.link === "joined" || s.paused) app.signInWait = 0;
  const held = !signedOut && !gone && app.signInWait > Date.now();
  bar.dataset.state = signedOut || gone || held ? "error" : s.state;
  const connection = {
    offline: tr("offline"),
    connecting: tr("connecting"),
    // Changes waiting for the server's word, with no record to sync (a
    // refused change, kept until a coordinator decides): no count of none.
    syncing: s.syncing > 0 ? plural(app.lang, "syncing", s.syncing) : tr("syncingNow"),
    "up-to-date": tr("upToDate"),
  };
  // A refusal stands until a coordinator decides, for days maybe: the
  // connection is said beside it, as a storage trouble's "stay online"
  // needs to be, from the link itself.
  const linked = s.paused || s.link === "offline" ? "offline"
    : s.link === "connecting" ? "connecting"
    : s.syncing > 0 || s.unconfirmed > 0 ? "syncing" : "up-to-date";
  const trouble = s.state !== "error" ? null
    : s.errorKind === "server" ? tr("problem.server")
    : s.errorKind ? problem({ name: s.errorKind, message: s.error })
    : trIsolated("syncError", { reason: s.error ?? "" });
  const state = signedOut ? tr("signedOut") : gone ? tr("deviceRevoked") : held ? tr("signInTooMany")
    : trouble ? [connection[linked], tr("listSeparator"), trouble]
    : connection[s.state];
  fill($("#sync-state"), state);
  // The server's own words (English), for whoever asks why: a refusal
  // keeps them on the refused change, beside.
  $("#sync-state").title = signedOut ? app.signedOut
    : trouble && s.errorKind === "server" && s.error !== s.refused ? s.error ?? "" : "";
  $("#sync-waiting").textContent = [
    s.unconfirmed ? plural(app.lang, "waiting", s.unconfirmed) : "",
    s.deferred ? plural(app.lang, "deferred", s.deferred) : "",
  ].filter(Boolean).join(tr("listSeparator"));
  const shell = $("#sync-shell");
  shell.hidden = app.shell !== "failed";
  shell.textContent = shell.hidden ? "" : tr("shellNotReady");
  // Work waiting to be sent, in storage the browser may clear when the
  // phone runs short of space: said while there is some.
  const kept = $("#sync-kept");
  kept.hidden = !(s.persisted === false && s.unconfirmed > 0);
  kept.textContent = kept.hidden ? "" : tr("notPersisted");
  fill($("#sync-refused"), s.refused ? refusedChange(s) : null);
  // Screen readers hear the state, not every record counted while syncing,
  // and what the server refused, which the bar shows beside the state.
  const spoken = (st) => (st === "syncing" ? tr("syncingNow") : connection[st]);
  const said = [
    signedOut || gone || held ? $("#sync-state").textContent
      : trouble ? `${spoken(linked)}${tr("listSeparator")}${textOf(trouble)}`
      : spoken(s.state),
    $("#sync-refused").textContent,
    // Records waiting their turn, said once as they start and end to, not
    // at every record the count goes down by.
    s.deferred ? tr("deferredSaid") : "",
    // The notes that ask something of the person: heard too.
    kept.textContent,
    shell.textContent,
  ].filter(Boolean).join(" ");
  if ($("#sync-said").textContent !== said) $("#sync-said").textContent = said;
  const exportPartial = document.querySelector("#export-partial");
  const exportSaid = exportNote(s);
  if (exportPartial && exportPartial.textContent !== exportSaid) {
    exportPartial.textContent = exportSaid;
    exportPartial.hidden = !exportSaid;
  }
  $("#sync-refused").title = s.refused ?? "";
  // By the connection, not the state: a refusal shown over it must not
  // leave the person unable to come back online.
  const offline = (s) => s.paused || s.link === "offline";
  const toggle = $("#sync-toggle");
  toggle.textContent = offline(s) ? tr("goOnline") : tr("goOffline");
  toggle.onclick = () => {
    app.signedOut = null;
    if (offline(app.client.status())) app.client.connect();
    else app.client.disconnect();
    syncBar(app.client.status());
  };
}

/**
 * A change the server refused, in the person's language when the server
 * said why in words the app knows (`s.refusal`): which record, which
 * field, why, and whether a coordinator can review it. Otherwise the
 * server's own English, isolated. The English stays in the title.
 */
function refusedChange(s) {
  const r = s.refusal;
  if (!r || !STRINGS.en[`refusal.${r.code}`]) return trIsolated("refused", { reason: s.refused });
  const record = h("a", { href: `#/r/${bare(r.documentId)}` }, words(titleOf(r.documentId)));
  // Not a refusal of what was written: the record cannot be synced now.
  if (r.code === "unreadable") return pieces(app.lang, "recordUnreadable", { record }, (v) => v);
  const top = r.path.split("/")[1];
  const field = pathLabel(kindOf(r.documentId), r.path, recordOf(r.documentId));
  const n = r.quarantine !== undefined ? formatId(app.lang, r.quarantine) : undefined;
  const kept = n === undefined ? tr("refusalNotKept") : tr(r.discarded ? "refusalDiscarded" : "refusalKept", { n });
  const vars = { record, field, why: tr(`refusal.${r.code}`), kept };
  return pieces(app.lang, top ? "refusedChange" : "refusedRecord", vars, (v) => v);
}

/**
 * The text of pieces as `fill` draws them: nodes already on the screen are
 * read, not moved.
 */
const textOf = (pieces) => [pieces].flat(Infinity)
  .filter((c) => c !== null && c !== undefined && c !== false)
  .map((c) => (c instanceof Node ? c.textContent : String(c))).join("");

/** A field's label by its name; `null` for a name the app does not know. */
function fieldName(name) {
  return STRINGS.en[`field.${name}`] ? tr(`field.${name}`) : null;
}

/** A language's own name (`العربية`, `Français`), or its code when the club does not use it. */
const langName = (lang) => LANGUAGE_NAMES[lang] ?? lang;

/** The kind of a record on this phone, by its id; `undefined` for one not here. */
const kindOf = (id) => app.byUrl.get(`automerge:${bare(id)}`)?.kind;

/** Problems that concern the whole record, said without a field. */
const WHOLE_RECORD = new Set(["not-a-record", "newer-schema", "unknown-kind"]);

/**
 * What is wrong with a record, each problem in the person's language after
 * its field's label (`Commitments › Party`, `Name (de)`). A problem whose
 * code the app does not know keeps the English it came with, isolated.
 */
function recordProblems(kind, errors) {
  const said = errors.map((e) => {
    const key = `invalid.${e.code}`;
    if (!e.code || !STRINGS.en[key]) return words(`${e.path}: ${e.reason}`);
    if (WHOLE_RECORD.has(e.code)) return h("span", { class: "problem" }, tr(key));
    return h("span", { class: "problem" }, pathLabel(kind, e.path), tr("labelSeparator"), tr(key));
  });
  const reason = said.flatMap((s, i) => (i ? [tr("listSeparator"), s] : [s]));
  return pieces(app.lang, "invalid", { reason: h("span", {}, reason) }, (v) => v);
}

/**
 * A record path as the labels of the fields it goes through, with the
 * language of a multilingual value: `Milestones › “Pump installed” ›
 * Status (Français)`. An item is named by its own title or text when
 * `record` (the record as read) holds it, and left out when not; the path
 * as written when it names no field the app knows.
 */
function pathLabel(kind, path, record) {
  const labels = [];
  let value = record;
  for (const part of path.split("/").filter(Boolean)) {
    const name = fieldName(part);
    if (name) {
      labels.push(name);
      value = value?.[part];
      continue;
    }
    // An item's id (or index, in a validation error's path), or a language.
    const item = Array.isArray(value)
      ? value.find((i) => i?.id === part) ?? (/^\d+$/.test(part) ? value[Number(part)] : undefined)
      : value?.[part];
    const named = itemName(item);
    if (named) labels.push(h("span", { class: "item" }, pieces(app.lang, "quoted", { text: words(named) }, (v) => v)));
    value = item;
  }
  if (!labels.some((l) => typeof l === "string")) return words(path);
  const { lang } = fieldAt(app.schema, kind, path);
  const said = labels.flatMap((l, i) => (i ? [" › ", l] : [l]));
  return h("span", { class: "path" }, said, lang ? ` (${langName(lang)})` : "");
}

/** An item's own words, to tell it from the others of its list: its title or text, cut short. */
function itemName(item) {
  const name = [item?.title, item?.text].find((v) => typeof v === "string" && v.trim());
  if (!name) return null;
  return cut(name.trim(), 40);
}

/** The record `id` as this phone reads it now; `undefined` when it cannot. */
function recordOf(id) {
  try { return app.client.read(bare(id))?.record; } catch { return undefined; }
}

/**
 * Why a batch waits for review, in the coordinator's language when the
 * server gave a code the app knows; else the server's English, isolated.
 */
function refusalReason(q) {
  if (!q.code || !STRINGS.en[`refusal.${q.code}`]) return words(q.path ? `${q.path}: ${q.reason}` : q.reason);
  const why = tr(`refusal.${q.code}`);
  if (q.path?.split("/")[1]) return pieces(app.lang, "refusalAt", { field: pathLabel(kindOf(q.doc_id), q.path, recordOf(q.doc_id)), why }, (v) => v);
  return why.charAt(0).toUpperCase() + why.slice(1);
}

/**
 * What a quarantined batch would change, fetched when first opened: each
 * field's value now and with the batch, and for text the words added and
 * removed.
 */
function batchChanges(q) {
  const body = h("div", { class: "batch-changes" });
  const details = h("details", {}, h("summary", {}, tr("reviewChanges")), body);
  details.addEventListener("toggle", async () => {
    if (!details.open || details.dataset.loaded) return;
    details.dataset.loaded = "1";
    try {
      const batch = await call(`/api/quarantine/${q.id}`);
      if (!batch.changes) {
        // Why, in the coordinator's language when the server gave a code the app knows.
        const key = `notShown.${batch.not_shown_code}`;
        fill(body, STRINGS.en[key] ? h("p", { title: batch.not_shown ?? "" }, tr(key)) : trIsolated("notShown", { reason: batch.not_shown ?? "" }));
        return;
      }
      const record = recordOf(q.doc_id);
      // A refused new record was never kept: the server says what it is.
      const here = kindOf(q.doc_id);
      const kind = here ?? batch.kind;
      const unknown = !here && STRINGS.en[`kind.${batch.kind}`];
      fill(body,
        unknown ? h("p", { class: "new-record" }, pieces(app.lang, "batchNewRecord", { kind: tr(`kind.${batch.kind}`), title: wordsOf(batch.title, app.lang, "—") }, (v) => v)) : null,
        h("dl", {}, batch.changes.flatMap((c) => fieldChange(kind, c, record))));
    } catch (e) {
      delete details.dataset.loaded;
      fill(body, requestProblem(e));
    }
  });
  return details;
}

/**
 * For a batch that builds on another still waiting in `rows`: which one,
 * by who sent it and when, to be judged first (the server refuses to
 * accept this one before it).
 */
function buildsOn(q, rows) {
  // One that builds on no other batch waiting here: the chain's start,
  // usually its oldest (a batch sent again can be newer than those on it).
  const named = rows.filter((r) => q.builds_on?.includes(r.id));
  const first = named.findLast((r) => !r.builds_on?.length) ?? named.at(-1);
  if (!first) return null;
  return h("p", { class: "builds-on", "data-builds-on": first.id },
    pieces(app.lang, "buildsOnPending", { who: words(first.device_name ?? first.device_id), when: formatDateTime(app.lang, first.received_at) }, (v) => v));
}

/**
 * One changed field, of a batch or of a run in the history: its label, then
 * the text's passages or the two values, each after its caption (`labels`).
 */
function fieldChange(kind, c, record, labels = ["valueNow", "valueProposed"]) {
  const { field } = fieldAt(app.schema, kind, c.path);
  // An item's field says which list and which item it is in:
  // "Milestones › “Pump installed” › Due".
  const label = h("dt", { "data-path": c.path }, pathLabel(kind, c.path, record));
  // Words added and removed, for free text; an enum or a date reads
  // better as the two values.
  if (c.text && ["str", "text", "multilingual"].includes(field.type)) {
    const tag = { same: "span", added: "ins", removed: "del" };
    return [label, h("dd", { class: "passages", dir: "auto" }, c.text.map((p) => h(tag[p.kind] ?? "span", {}, p.text)))];
  }
  const ctx = { lang: app.lang, byUrl: app.byUrl };
  const shown = (v) => {
    // A record made another kind (a batch only a coordinator may let in).
    if (c.path === "/kind") return STRINGS.en[`kind.${v}`] ? tr(`kind.${v}`) : words(v ?? "—");
    // An item (its id ends the path) or a whole list: each item by its
    // fields' labels and values, not as stored.
    if (field.type === "list" && v !== null && typeof v === "object") {
      const items = Array.isArray(v) ? v : [v];
      if (!items.length) return tr("none");
      return items.flatMap((item, i) => [i ? tr("listSeparator") : null, words(showItem(ctx, field.fields, item))]);
    }
    return words(v !== null && typeof v === "object" && field.type !== "multilingual" && field.type !== "set" ? JSON.stringify(v) : show(ctx, field, v));
  };
  return [label,
    h("dd", { class: "before" }, tr(labels[0]), " ", shown(c.before)),
    h("dd", { class: "after" }, tr(labels[1]), " ", shown(c.after))];
}

// The network back: ask at once why the server may refuse this device,
// not 30 s after the last time it was asked; gone, the bar says offline,
// not a wait for sign-in tries.
window.addEventListener("online", () => { app.probedAt = 0; });
window.addEventListener("offline", () => { app.signInWait = 0; });

/**
 * A socket refused at sign-in looks to the browser like any lost
 * connection. While the client cannot connect, ask the API why, at most
 * every 30 s: a token it refuses (expired, or unknown to the server) stops
 * the retries, which would count against the address's sign-in limit,
 * and the bar says what to do. Edits go on being kept on the phone.
 */
async function checkSignedIn(s) {
  if (!["offline", "connecting"].includes(s.link) || app.signedOut) return;
  if (Date.now() - (app.probedAt ?? 0) < 30_000) return;
  app.probedAt = Date.now();
  try {
    const res = await api("/api/me", { signal: AbortSignal.timeout(5000) });
    if (res.status === 429) {
      // The address has used up its sign-in tries (a mistyped token on
      // the same network, often): the bar says so until the client joins.
      const wait = Number(res.headers.get("retry-after")) || 60;
      app.signInWait = Date.now() + wait * 1000;
      syncBar(app.client.status());
      return;
    }
    if (res.status !== 401) return;
    const body = await res.json().catch(() => ({}));
    app.signedOut = body.error ?? res.statusText;
    app.client.disconnect();
    syncBar(app.client.status());
  } catch { /* the server cannot be reached: offline indeed */ }
}

/**
 * An error from the client as the person reads it: what it means, in their
 * language, then what it said, isolated (it is in English).
 */
function problem(e) {
  const key = `problem.${e?.name}`;
  const said = t(app.lang, key);
  if (said === key) return explained(tr("problem.other"), `${e?.name ?? "Error"}: ${e?.message ?? e}`);
  return explained(said, e?.message ?? e);
}

function say(text) {
  fill($("#view"), h("p", { class: "note" }, text));
}

// ----- Records ----------------------------------------------------------------

function refreshSummaries() {
  app.summaries = app.client.list();
  app.byUrl = new Map(app.summaries.map((s) => [s.url, s]));
}

/**
 * Everything a record says, in every language, for search: its values,
 * not its field names; a choice in the three languages' words ("actif",
 * "نشط"); a linked record by its title.
 */
function searchText(id) {
  let text = app.texts.get(id);
  if (text === undefined) {
    try {
      const view = app.client.read(id);
      text = view.record
        ? recordWords(app.schema[view.kind] ?? [], view.record).join("\n")
        : JSON.stringify(view.stored ?? view.title ?? "").replace(/automerge:[1-9A-HJ-NP-Za-km-z]+/g, " ");
    } catch { text = ""; }
    app.texts.set(id, text);
  }
  return text;
}

/** The words of `value` (a record or an item) under `fields`, for search. */
function recordWords(fields, value, out = []) {
  const choice = (v) => LANGS.map((l) => t(l, `value.${v}`));
  // Text an older app wrote in place of a link is found as written.
  const linked = (url) => {
    if (!String(url).startsWith("automerge:")) return [String(url)];
    const title = app.byUrl.get(url)?.title;
    return title === undefined ? [] : typeof title === "string" ? [title] : Object.values(title);
  };
  for (const f of fields) {
    const v = value?.[f.name];
    if (v === null || v === undefined || v === "" || f.name === "id") continue;
    switch (f.type) {
      case "multilingual": out.push(...Object.values(v)); break;
      case "enum": out.push(...choice(v)); break;
      case "ref": out.push(...linked(v)); break;
      case "set": for (const m of v) out.push(...(f.values ? choice(m) : REF_KIND[f.name] ? linked(m) : [m])); break;
      case "list": for (const item of v) recordWords(f.fields ?? [], item, out); break;
      case "map": case "bool": break;
      default: out.push(String(v));
    }
  }
  return out;
}

function recordItem(s) {
  const status = s.status ? tr(`value.${s.status}`) : "";
  return h("li", { "data-id": s.id, "data-kind": s.kind ?? "" },
    h("a", { href: `#/r/${s.id}` }, wordsOf(s.title, app.lang, s.id)),
    s.date ? h("time", { class: "date", datetime: s.date }, formatDate(app.lang, s.date)) : null,
    status ? h("span", { class: "status" }, status) : null,
    s.valid ? null : h("span", { class: "invalid", title: tr("invalidMark"), "aria-label": tr("invalidMark"), role: "img" }, "!"));
}

/**
 * Meetings and reports newest first, as a delegate looks for last week's
 * (those without a date after them); then by title, as every other kind.
 */
function byDateThenTitle(a, b) {
  if ((a.date ?? "") !== (b.date ?? "")) return (b.date ?? "").localeCompare(a.date ?? "");
  return pick(a.title, app.lang).localeCompare(pick(b.title, app.lang), app.lang);
}

function listView(kind) {
  const shown = app.summaries.filter((s) => (!kind || s.kind === kind) && (!app.query || matches(searchText(s.id), app.query)));
  const tabs = h("nav", { class: "kinds", "aria-label": tr("records") },
    h("a", { href: "#/", "aria-current": kind ? null : "page" }, tr("records")),
    KINDS.filter((k) => k !== "club").map((k) => h("a", { href: `#/k/${k}`, "aria-current": k === kind ? "page" : null }, tr(`kinds.${k}`))));
  const sections = [];
  for (const k of KINDS) {
    const items = shown.filter((s) => s.kind === k).sort(byDateThenTitle);
    if (!items.length) continue;
    sections.push(h("section", { "data-kind": k },
      h("h2", {}, `${tr(`kinds.${k}`)} (${formatNumber(app.lang, items.length)})`),
      h("ul", {}, items.map(recordItem))));
  }
  const actions = kind && kind !== "club" && writable() && mayCreate(kind)
    ? h("p", {}, h("a", { class: "button", href: `#/new/${kind}` }, tr("newRecord", { kind: tr(`kind.${kind}`) })))
    : null;
  fill($("#view"), tabs, actions, h("div", { id: "records" },
    sections.length ? sections : h("p", { class: "note" }, tr("noResults"))));
  // The list is drawn anew at each keystroke, so a region of its own would
  // say nothing: one outside it says how many were found.
  const said = app.query ? plural(app.lang, "found", shown.length) : "";
  if ($("#view-said").textContent !== said) $("#view-said").textContent = said;
}

$("#search").addEventListener("input", (e) => {
  if (!mayLeave()) { e.target.value = app.query; return; }
  app.query = e.target.value;
  if (!location.hash.startsWith("#/k/")) { if (location.hash !== "#/" && location.hash !== "") location.hash = "#/"; }
  route();
});

/** Says what went wrong above the screen, and brings it into view: on a phone the button pressed may be far below. */
function tell(said) {
  const notice = $("#notice");
  const before = notice.textContent;
  fill(notice, said);
  // Brought into view when it says something new: the same problem again,
  // at every keystroke on a full phone, must not pull the page away from
  // where the person types.
  if (notice.textContent !== before) notice.scrollIntoView({ block: "nearest" });
}

/** Writes `edits` to the record on screen; the change is on the device when this resolves. */
async function edit(id, edits, opts = {}) {
  const check = mayWrite(id, edits);
  if (!check.go) {
    // The controls go back to the record as it is, the person still at
    // the one they changed (a confirm they cancelled, say).
    const path = focusedPath();
    recordView(id);
    focusPath(path);
    return false;
  }
  const drawn = () => {
    // A record now locked is drawn locked (its date notes with it).
    if (opts.rerender || check.locks) recordView(id);
    else if (edits.some((e) => DATED.has(e.path))) dateHints(id);
    // The control that made the change, redrawn, keeps the focus; a
    // record it locked takes it to the note that says so.
    if (check.locks) {
      const note = $("#view p.note.locked");
      if (note) { note.tabIndex = -1; note.focus(); }
    } else if (opts.rerender && opts.focus) $(opts.focus)?.focus();
  };
  try {
    edits = [...edits, ...(check.extra ?? [])];
    await app.client.edit(id, edits, opts.message ?? edits.map((e) => `${e.op} ${e.path}`).join(", "));
    $("#notice").textContent = "";
    drawn();
    return true;
  } catch (e) {
    // This tab can write no more: a newer version of the app took the
    // storage over (`superseded`, which a text box asks).
    if (e?.name === "SupersededError") app.superseded = true;
    tell(problem(e));
    // Made, but not kept on the phone: the record holds the change, which
    // syncs once online. Drawn as it now is, or the person, seeing nothing
    // happen, adds the item again.
    if (MADE_NOT_KEPT.has(e?.name)) drawn();
    return false;
  }
}

/** The path of the record's field holding the focus, if one does. */
function focusedPath() {
  return document.activeElement?.closest?.("#view [data-path]")?.dataset.path ?? null;
}

/** Puts the focus on the first control of the field at `path`, if it is on screen. */
function focusPath(path) {
  if (!path) return;
  $("#view")?.querySelector(`[data-path="${CSS.escape(path)}"]`)?.querySelector("input, select, textarea, button")?.focus({ preventScroll: true });
}

/** The errors of an edit the client made and then could not store. */
const MADE_NOT_KEPT = new Set(["QuotaExceededError", "StorageError", "StorageStuckError"]);

/** The date an agreement's status has: signed, on `signed_on`. */
const STATUS_DATE = { approved: "approved_on", signed: "signed_on", in_force: "in_force_from", ended: "ends_on" };
/** The paths whose change may add or remove such a note (`dateHints`). */
const DATED = new Set(["/status", ...Object.values(STATUS_DATE).map((f) => `/${f}`)]);

/**
 * An agreement whose status has a date (signed, on `signed_on`) and whose
 * date is empty says so at that date's field, so that it does not read
 * "signed" without when; the note goes once the date is given.
 */
function dateHints(id) {
  if (app.view?.id !== id || app.view.at !== null || app.view.locked) return;
  $("#view")?.querySelectorAll("p.needs-date").forEach((p) => p.remove());
  let view;
  try { view = app.client.read(id); } catch { return; }
  const status = view.record?.status;
  const field = STATUS_DATE[status];
  if (view.kind !== "agreement" || !field || view.record[field]) return;
  $(`#view form.record [data-path="/${field}"]`)?.append(
    h("p", { class: "note needs-date", role: "status" }, tr("dateForStatus", { status: tr(`value.${status}`) })));
}

/** Top-level fields whose change is weighed before it is written (`mayWrite`). */
const WEIGHED = /^\/(owner_city|city|parties|attendees|chair|author|adopted|status)$/;

/**
 * Whether `edits` go ahead, as the person means them. Adopting minutes or
 * ending an agreement locks the record for delegates, and no delegate may
 * take it back: it is asked first. A delegate's change that would leave a
 * record to none of their cities is refused here, as the server would
 * refuse it, leaving the phone unable to take it back.
 */
function mayWrite(id, edits) {
  if (!edits.some((e) => WEIGHED.test(e.path))) return { go: true };
  let view;
  try { view = app.client.read(id); } catch { return { go: true }; }
  if (!view.record) return { go: true };
  const after = { ...view.record };
  for (const e of edits) {
    const key = e.path.slice(1);
    if (!WEIGHED.test(e.path)) continue;
    if (e.op === "set") after[key] = e.value;
    else if (e.op === "add_member") after[key] = [...membersOf(after[key]), e.member];
    else if (e.op === "remove_member") after[key] = membersOf(after[key]).filter((m) => m !== e.member);
  }
  if (!notOurs(view, id) && notOurs({ kind: view.kind, record: after }, id)) {
    tell(tr(["meeting", "report"].includes(view.kind) ? "moveNotYours" : "moveNotOurs"));
    return { go: false };
  }
  // A coordinator can take it back: only others are asked.
  const locks = !isCoordinator() && ((view.kind === "meeting" && view.record.adopted !== true && after.adopted === true)
    || (view.kind === "agreement" && view.record.status !== "ended" && after.status === "ended"));
  if (locks && !confirm(tr(view.kind === "meeting" ? "adoptConfirm" : "endConfirm"))) return { go: false };
  // Ended, an agreement is no longer theirs to date: it ends today unless
  // it had its end date.
  const extra = locks && view.kind === "agreement" && !view.record.ends_on ? [{ op: "set", path: "/ends_on", value: today() }] : [];
  return { go: true, locks, extra };
}

/** Why this device may not change the record, if it may not: the server would refuse it. */
function lockOf(view, id) {
  if (revoked()) return tr("lockedRevoked");
  if (isCoordinator()) return null;
  if (!writable()) return tr("readOnly");
  if (view.kind === "meeting" && view.record?.adopted) return tr("lockedAdopted");
  if (view.kind === "agreement" && view.record?.status === "ended") return tr("lockedEnded");
  if (!notOurs(view, id)) return null;
  return tr({ meeting: "lockedNotAttended", report: "lockedNotAuthor" }[view.kind] ?? "lockedNotOurs");
}

/**
 * Why the record's form cannot be changed, if it cannot. A record that does
 * not read (a newer version's, or damaged) has no form, and is shown as
 * stored; a coordinator may still settle its disagreements (`lockOf`).
 */
function formLock(view, id) {
  return view.record ? lockOf(view, id) : tr("unreadable");
}

const bare = (link) => (link ?? "").replace(/^automerge:/, "");

/** A set field's members, whether read as an array or as a map. */
const membersOf = (v) => (Array.isArray(v) ? v : Object.keys(v ?? {}));

/** Whether `person` is this device's person record. */
const isMyPerson = (person) => !!app.me?.person && !!person && bare(app.me.person) === bare(person);

/**
 * Whether a record is none of this delegate's, as the server judges it
 * (`permissions::owns`): a city, agreement, project or person of none of
 * their cities; a meeting they neither chair nor attend, or a report they
 * did not write, that another device created (once the server has said
 * which, `creatorOf`; until then the server alone judges). Unknown until
 * `/api/me` has answered once.
 */
function notOurs(view, id) {
  // A record that does not read (an invalid one) is left to the server,
  // which judges who may mend it.
  if (role() !== "delegate" || !app.me || !view.record) return false;
  const mine = (city) => city != null && (app.me.cities ?? []).some((c) => bare(c) === bare(city));
  const r = view.record ?? {};
  const createdElsewhere = () => id != null && app.creators.has(bare(id)) && app.creators.get(bare(id)) !== app.me.id;
  switch (view.kind) {
    case "city": return !mine(id);
    case "agreement": return !membersOf(r.parties).some(mine);
    case "project": return !mine(r.owner_city);
    case "person": return !mine(r.city) && !isMyPerson(id);
    case "meeting":
    case "report": return !theirsInPerson(view.kind, view.record) && createdElsewhere();
    default: return false;
  }
}

/** Whether this device's person chairs or attends a meeting, or wrote a report. */
function theirsInPerson(kind, record) {
  const r = record ?? {};
  if (kind === "report") return isMyPerson(r.author);
  return isMyPerson(r.chair) || membersOf(r.attendees).some(isMyPerson);
}

/**
 * Asks the server which device created a meeting or report a delegate
 * opens, as such a record is also the creator's to write (and one they
 * chair, attend or wrote stays theirs only while they do, `mayWrite`);
 * redraws the record at once if that locks it, as a lock arriving from
 * elsewhere does. Offline, or for a record not on the server yet, nothing
 * is known and nothing is locked.
 */
async function creatorOf(id, view) {
  const key = bare(id);
  if (role() !== "delegate" || !app.me || app.creators.has(key)) return;
  if (!["meeting", "report"].includes(view.kind) || !view.record) return;
  // Asked at most every 30 s (a record not on the server yet is not found).
  const asked = (app.asked ??= new Map()).get(key);
  if (asked && Date.now() - asked < 30_000) return;
  app.asked.set(key, Date.now());
  try {
    const res = await api(`/api/records/${key}`, { signal: AbortSignal.timeout(5000) });
    if (!res.ok) return;
    noteCreator(key, (await res.json()).created_by ?? null);
  } catch { return; }
  if (app.view?.id !== id || app.view.at !== null) return;
  let now;
  try { now = app.client.read(id); } catch { return; }
  if (formLock(now, id) !== app.view.locked) recordView(id);
}

/**
 * Whether this device may add a record of `kind`: a city is a coordinator's
 * to add, as a new city is none of a delegate's (`permissions::owns`).
 */
const mayCreate = (kind) => writable() && (kind !== "city" || isCoordinator());

/**
 * The field that makes a delegate's new record one of their cities', as
 * the server judges it: the record belongs to the city chosen there.
 */
const OWNING_FIELD = { project: "owner_city", person: "city", agreement: "parties" };
/** The kinds that go by their `name` (a person's `title` is their office). */
const NAMED_KINDS = new Set(["club", "city", "person"]);

function recordView(id, at = null) {
  let view;
  try {
    view = app.client.read(id);
  } catch (e) {
    // A link cut short, or mistyped, names no record at all.
    const badLink = e.name === "TypeError" && e.message.startsWith("not a record id");
    fill($("#view"), h("p", { class: "note" }, badLink ? tr("notARecordLink") : problem(e)));
    return;
  }
  const kind = view.kind;
  creatorOf(id, view);
  const locked = at === null ? formLock(view, id) : lockOf(view, id);
  const ctx = {
    id,
    lang: app.lang,
    summaries: app.summaries,
    byUrl: app.byUrl,
    writable: !locked && at === null,
    editors: new Map(),
    // Items removed on one phone while another wrote in them, by path:
    // now, not in the record as it stood at a date.
    disputed: new Set(at !== null ? [] : (view.conflicts ?? []).filter((c) => c.path.endsWith("/removed")).map((c) => c.path.slice(0, -"/removed".length))),
    edit: (edits, opts) => edit(id, edits, opts),
    superseded: () => !!app.superseded,
    read: (path) => { try { return valueAt(app.client.read(id).record, path); } catch { return undefined; } },
    // A text field alone, as each keystroke needs it: not the whole record.
    text: (path) => { try { return app.client.text(id, path); } catch { return undefined; } },
  };
  app.view = { id, ctx, at, locked, title: view.title };
  const fields = app.schema[kind] ?? [];
  let record = view.record;
  let body;
  if (at !== null) {
    let past;
    try { past = app.client.readAt(id, at); } catch (e) { past = { failed: e }; }
    record = past.record;
    // Named as it was then, on screen and printed: an agreement renamed
    // since is headed by the title its fields below show.
    if (record) app.view.title = record[NAMED_KINDS.has(kind) ? "name" : "title"] ?? null;
    // Not yet written, or written but not valid then (it is said why).
    body = record ? fieldRows(ctx, fields, record)
      : past.failed ? [h("p", { class: "note" }, problem(past.failed))]
      : past.errors?.length ? [h("p", { class: "warning" }, recordProblems(kind, past.errors))]
      : [h("p", { class: "note" }, tr("notYet"))];
  } else if (record) {
    body = fieldRows(ctx, fields, record);
  } else {
    body = [h("pre", { class: "stored", dir: "auto" }, JSON.stringify(view.stored ?? {}, null, 2))];
  }
  const problems = view.errors?.length ? h("p", { class: "warning" }, recordProblems(kind, view.errors)) : null;
  // Said as it appears: a record locked under the person's hands (they
  // adopted the minutes) no longer takes keys, and they hear why.
  const readOnly = locked ? h("p", { class: "note locked", role: "status" }, locked) : null;
  fill($("#view"), 
    h("p", {}, h("a", { href: kind ? `#/k/${kind}` : "#/" }, tr("back"))),
    h("h2", { class: "record-title" }, h("small", {}, kind ? tr(`kind.${kind}`) : ""), " ", wordsOf(app.view.title, app.lang)),
    record && kind ? h("p", { class: "actions" }, h("button", { type: "button", class: "print", onclick: () => printRecord(id, kind, at === null ? null : record, at) }, tr("print"))) : null,
    problems, readOnly,
    at !== null ? h("p", { class: "asof-banner" }, `${tr("asOf")} ${formatDate(app.lang, today(new Date(at)))} — `, h("a", { href: `#/r/${id}` }, tr("current"))) : null,
    h("form", { class: "record", onsubmit: (e) => e.preventDefault() }, body),
    at === null ? conflictList([{ id, view }]) : null,
    historySection(id, kind),
  );
  dateHints(id);
}

/**
 * When the record on screen changed elsewhere: update its editors in place
 * while the person is in the form, and redraw what cannot be updated once
 * they leave it, so nothing they are typing is replaced.
 */
function refreshRecordView(paths) {
  const { id, ctx, at } = app.view;
  if (at !== null) return;
  const view = app.client.read(id);
  const form = $("#view form.record");
  const typing = form?.contains(document.activeElement);
  // Something opened to read (a history line's changes) stays open: the
  // form is brought up to date in place, the rest drawn once it is closed.
  const reading = !typing && !!$("#view details[open]");
  if ((!typing && !reading) || formLock(view, id) !== app.view.locked) {
    // A record locked while the person types in it (minutes adopted, a
    // meeting no longer theirs) is drawn again at once: what they typed is
    // written first, not taken away with the form. Refused by the server,
    // it waits for a coordinator's review, as an edit made offline does.
    if (typing) writeFocused();
    // Drawn at once. A button the person is at (Print, reached before
    // this change arrived) keeps the focus, as `redrawWhenLeft` keeps it.
    const pressed = typing ? null : pressedOnScreen({ alike: true });
    recordView(id);
    pressed?.();
    return;
  }
  const parent = (p) => p.split("/").slice(0, -1).join("/");
  for (const p of paths) {
    const path = ctx.editors.has(p) ? p : ctx.editors.has(parent(p)) ? parent(p) : null;
    if (path) ctx.editors.get(path)(valueAt(view.record, path));
    else app.view.stale = true;
  }
  $("#view section.conflicts")?.replaceWith(conflictList([{ id, view }]));
  dateHints(id);
  if (reading) {
    app.view.stale = true;
    app.redrawHeld = true;
  } else if (app.view.stale) {
    redrawWhenLeft(form, id);
  }
}

/**
 * Prints a record on its own (minutes for the council's file, a report to
 * hand over): the club, the kind and title, every field read-only and whole
 * (a form's text boxes would cut long minutes off) and the empty ones left
 * out, and when it was printed or the date it stood at. The record as it is
 * now, what was just typed included; `past`, the record at a date. The
 * page's other parts are left out by the print style sheet while the body
 * is marked `printing`.
 */
function printRecord(id, kind, past, at) {
  // A one-line field typed in and not left yet is written first.
  writeFocused();
  let record = past;
  let title = app.view.title;
  if (at === null) {
    const view = app.client.read(id);
    record = view.record;
    title = view.title;
  }
  if (!record) return;
  const ctx = { ...app.view.ctx, writable: false, editors: new Map(), omitBlank: true };
  let sheet = $("#print");
  if (!sheet) {
    sheet = h("article", { id: "print" });
    document.body.append(sheet);
  }
  const now = Math.floor(Date.now() / 1000);
  // The record as it is now says what is still disputed in it.
  let disputed = [];
  if (at === null) {
    try { disputed = disagreementLines(app.client.read(id)); } catch { /* none said */ }
  }
  fill(sheet,
    h("p", { class: "club" }, tr("club")),
    h("h1", {}, h("small", {}, tr(`kind.${kind}`)), " ", wordsOf(title, app.lang)),
    h("div", { class: "record" }, fieldRows(ctx, app.schema[kind] ?? [], record)),
    disputed.length ? h("section", { class: "disputed" }, h("h2", {}, tr("conflicts")), h("ul", {}, disputed.map((l) => h("li", {}, words(l))))) : null,
    h("p", { class: "printed" }, at !== null
      ? `${tr("asOf")} ${formatDate(app.lang, today(new Date(at)))}`
      : tr("printedOn", { date: formatDateTime(app.lang, now) })));
  app.printRequested = true;
  document.body.classList.add("printing");
  window.print();
}
// A print from the browser's own menu prints the screen, not a sheet left
// from an earlier Print; some browsers fire `afterprint` before printing,
// so the sheet goes when the next print or screen begins.
window.addEventListener("beforeprint", () => {
  if (!app.printRequested) endPrinting();
  app.printRequested = false;
});
window.addEventListener("afterprint", () => { app.printRequested = false; });

function endPrinting() {
  document.body.classList.remove("printing");
  $("#print")?.replaceChildren();
}

/** Draws record `id` again once the person leaves `form` (or the screen). */
function redrawWhenLeft(form, id) {
  if (form.dataset.deferred) return;
  form.dataset.deferred = "1";
  form.addEventListener("focusout", function later(e) {
    if (form.contains(e.relatedTarget)) return;
    // The page left for another app, not the field: the person comes back
    // to it as it was, caret, keyboard and all.
    if (!e.relatedTarget && !document.hasFocus()) return;
    form.removeEventListener("focusout", later);
    delete form.dataset.deferred;
    // Let a pending `change` write first.
    setTimeout(() => {
      if (app.view?.id !== id || !app.view.stale) return;
      // Where the person went (Print, a value to keep) is drawn anew and
      // keeps the focus; a field they went to type in (the date to read
      // the record at) holds the redraw until they leave it too.
      const pressed = pressedOnScreen({ alike: true });
      if (!pressed && busyOnScreen()) {
        redrawWhenLeft($("#view"), id);
        return;
      }
      recordView(id);
      pressed?.();
    });
  });
}

/**
 * Records the record on screen names (its chair, its parties) arrived on
 * the phone or were renamed: it is drawn again, once the person is not at
 * a field of the screen (its form, the date to read it at).
 */
function relinkRecordView() {
  clearTimeout(app.relink);
  app.relink = setTimeout(() => {
    const { id, at } = app.view ?? {};
    if (!id || at !== null) return;
    // Something opened to read (a history line's changes) stays open:
    // drawn again once it is closed.
    if ($("#view details[open]")) {
      app.view.stale = true;
      app.redrawHeld = true;
      return;
    }
    const pressed = pressedOnScreen();
    if (!pressed && busyOnScreen()) {
      app.view.stale = true;
      const form = $("#view form.record");
      redrawWhenLeft(form?.contains(document.activeElement) ? form : $("#view"), id);
      return;
    }
    recordView(id);
    pressed?.();
  }, 300);
}

function valueAt(record, path) {
  let v = record;
  for (const part of path.split("/").slice(1)) {
    if (v == null) return undefined;
    v = Array.isArray(v) ? v.find((item) => item.id === part) : v[part];
  }
  return v;
}

function conflictList(records) {
  const rows = [];
  // Each value says which device it came from, once the server has said
  // who delivered the writer's changes: by record, the spans to fill.
  const writers = new Map();
  for (const { id, view } of records) {
    // Who may not write the record sees the values, without a choice.
    const decides = !lockOf(view, id);
    for (const c of view.conflicts ?? []) {
      const { field } = fieldAt(app.schema, view.kind, c.path);
      const from = (v) => {
        const span = h("span", { class: "by", "data-actor": v.actor });
        writers.set(id, [...(writers.get(id) ?? []), span]);
        return span;
      };
      const removal = field?.name === "removed";
      const shown = (v) => [words(valueSaid(field, v)), from(v)];
      rows.push(h("li", { "data-path": c.path, "data-id": id },
        records.length > 1 ? h("a", { href: `#/r/${id}` }, wordsOf(view.title, app.lang)) : null,
        h("span", { class: "label" }, pathLabel(view.kind, c.path, view.record)),
        h("div", { class: "values" }, c.values.map((v) => decides ? h("button", {
          type: "button", class: "keep", "data-value": JSON.stringify(v.value),
          onclick: async (e) => {
            // Keeping a value is writing it: weighed as any other change.
            if (!mayWrite(id, [{ op: "set", path: c.path, value: v.value }]).go) return;
            const row = e.currentTarget.closest("li");
            const place = [...row.parentNode.children].indexOf(row);
            let said = null;
            try {
              await app.client.resolve(id, c.path, v.value, `resolve ${c.path}`);
              $("#notice").textContent = "";
              said = tr("resolvedSaid", { field: row.querySelector(".label").textContent, value: valueSaid(field, v) });
            } catch (e) {
              tell(problem(e));
            }
            route();
            afterKeeping(place, said);
          },
        }, shown(v), removal ? null : [" · ", tr("keep")]) : h("span", { class: "value" }, shown(v))))));
    }
  }
  for (const [id, spans] of writers) nameWriters(id, spans);
  return h("section", { class: "conflicts" }, h("h3", {}, tr("conflicts")),
    rows.length ? [h("p", { class: "note" }, tr("conflictHelp")), h("ul", {}, rows)] : h("p", { class: "note" }, tr("noConflicts")));
}

/**
 * After a tap on Keep has drawn the screen anew: the focus goes to the
 * first value of the disagreement now in the place of the one settled
 * (else the last left, else the section's heading), so a keyboard or a
 * screen reader goes on from there rather than from the page's top, and
 * `said`, what was kept, is said.
 */
function afterKeeping(place, said) {
  const section = $("#view section.conflicts");
  if (!section) return;
  const rows = section.querySelectorAll(":scope > ul > li");
  const heading = section.querySelector("h3");
  const next = rows[Math.min(place, rows.length - 1)]?.querySelector("button.keep");
  if (!next) heading.tabIndex = -1;
  // A value not kept is said above the screen, which `tell` scrolled to:
  // the focus goes back without pulling the page away from it.
  (next ?? heading).focus({ preventScroll: !said });
  if (said) $("#view-said").textContent = said;
}

/** One of a disagreement's values, as the person reads it, for `field` (the field at its path). */
function valueSaid(field, v, { plain = false } = {}) {
  if (field?.name === "removed") return tr(v.value ? "itemRemoved" : "itemKept");
  if (!plain || v.value === null || v.value === undefined || v.value === "") {
    return typeof v.value === "object" && v.value !== null ? JSON.stringify(v.value) : show({ lang: app.lang, byUrl: app.byUrl }, field, v.value);
  }
  // For a file, as its other cells.
  if (typeof v.value === "object" && !Array.isArray(v.value)) return JSON.stringify(v.value);
  return String(plainValue(field, v.value));
}

/**
 * A value as a file's cell says it (the CSV export, for people to read):
 * people and cities by name, chosen values in the person's words, yes or
 * no; dates in ISO and numbers in ASCII digits, which spreadsheets sort;
 * a set's members joined by " | ", with no isolates. A linked record not
 * on this device is its whole address, to look up; text an older app
 * wrote in place of a link, as written.
 */
function plainValue(field, v) {
  const linked = (x) => {
    const s = app.byUrl.get(String(x));
    return s ? pick(s.title, app.lang) || s.id : String(x);
  };
  const one = (x) => (field?.type === "ref" || REF_KIND[field?.name] ? linked(x) : field?.values ? tr(`value.${x}`) : x);
  if (field?.type === "bool") return tr(v ? "yes" : "no");
  if (Array.isArray(v)) return v.map(one).join(" | ");
  return one(v);
}

/**
 * A record's standing disagreements as lines of text, for a file or a
 * printed sheet: each field by its label, then every value
 * (`Status: In force · Suspended`).
 */
function disagreementLines(view, { plain = false } = {}) {
  return (view.conflicts ?? []).map((c) => {
    const { field } = fieldAt(app.schema, view.kind, c.path);
    const label = pathLabel(view.kind, c.path, view.record);
    // On the sheet each value is isolated: two Arabic values on a French
    // line would otherwise run as one right-to-left block, their order
    // reversed. Not in a file, which a spreadsheet reads as written.
    const said = (v) => (plain ? valueSaid(field, v, { plain }) : `\u2068${valueSaid(field, v, { plain })}\u2069`);
    return `${label.textContent}${tr("labelSeparator")}${c.values.map(said).join(" · ")}`;
  });
}

/**
 * Names the device each disagreeing value came from: the writer's latest
 * change in the record's log, and who delivered it as the server knows.
 * Left blank while the server cannot be asked.
 */
function nameWriters(id, spans) {
  const latest = new Map();
  try {
    for (const e of app.client.history(id)) latest.set(e.actor, e.hash);
  } catch { return; }
  deliverers(id).then((named) => {
    if (!named) return;
    for (const span of spans) {
      const hash = latest.get(span.dataset.actor);
      if (hash) fill(span, " ", trIsolated("valueFrom", { who: named(hash) }));
    }
  }).catch(() => {});
}

function historySection(id, kind) {
  const list = h("ol", { class: "history", reversed: true });
  const section = h("section", { class: "history" }, h("h3", {}, tr("history")));
  const date = h("input", { type: "date", "aria-label": tr("asOf") });
  section.append(h("form", {
    class: "asof",
    onsubmit: (e) => {
      e.preventDefault();
      if (date.value) location.hash = `#/r/${id}/at/${date.value}`;
    },
  }, h("label", {}, tr("asOf"), " ", date), h("button", {}, tr("show"))));
  section.append(list);
  let entries = [];
  try { entries = app.client.history(id).slice().reverse(); } catch { /* shown empty */ }
  const names = new Map();
  // The newest 50 runs, and 50 more for each press of the button below.
  let shown = 50;
  const older = h("button", { type: "button", class: "older", onclick: () => { shown += 50; draw(); } }, tr("olderChanges"));
  // One "what changed" per run, kept across redraws (names arriving, older
  // runs shown), so one opened stays open.
  const opened = new Map();
  const changesOf = (r) => {
    const key = `${r.newest.hash} ${r.count}`;
    if (!opened.has(key)) opened.set(key, runChanges(id, kind, r, () => entries));
    return opened.get(key);
  };
  const draw = () => {
    const runs = runsOf(entries);
    // A line's summary that has the focus keeps it, its details moved
    // into the line drawn again.
    const focused = list.contains(document.activeElement) ? document.activeElement : null;
    fill(list, runs.slice(0, shown).map((r) => h("li", { "data-hash": r.newest.hash },
      h("time", {}, r.newest.time ? formatDateTime(app.lang, r.newest.time) : ""), " · ",
      h("span", { class: "who" }, words(r.hashes.map((x) => names.get(x)).find(Boolean) ?? tr("unknownAuthor"))), " · ",
      h("span", { class: "what" }, listOf(app.lang, r.fields.split(",").filter(Boolean).map((f) => tr(`field.${f}`)))),
      r.count > 1 ? h("span", { class: "count" }, ` ×${formatNumber(app.lang, r.count)}`) : null,
      changesOf(r))));
    if (focused?.isConnected) focused.focus();
    older.hidden = runs.length <= shown;
    // Numbered from the oldest, however many are shown.
    list.start = runs.length;
  };
  section.append(older);
  draw();
  // Who delivered each change is known to the server; ask when it answers.
  // Changes it did not have yet are this device's, not sent: once it has
  // everything this device sent, it is asked again, a few times at most
  // (a change it refused it never has).
  let asks = 0;
  const ask = () => deliverers(id).then((named) => {
    if (!named) return;
    for (const e of entries) names.set(e.hash, named(e.hash));
    draw();
    if (entries.some((e) => !named.held(e.hash)) && ++asks < 4) {
      whenSent(() => {
        if (!section.isConnected) return;
        app.deliverers?.delete(id);
        ask();
      });
    }
  }).catch(() => {});
  ask();
  return section;
}

/** Runs `then` once the server has confirmed every change this device sent. */
function whenSent(then) {
  (app.whenSent ??= []).push(then);
}

/**
 * What a run of changes in the history changed, worked out on this device
 * when first opened: each field it touched, from before its first change to
 * its last, and for text the words added and removed; only the run's own
 * fields. `log()` gives the record's history entries: a change by someone
 * else to those fields that the run built on in between (made offline at
 * the same time, say) is in what it shows, and a note says so.
 */
function runChanges(id, kind, run, log) {
  const body = h("div", { class: "run-changes" });
  const details = h("details", { class: "changes" }, h("summary", {}, tr("whatChanged")), body);
  details.addEventListener("toggle", () => {
    if (!details.open || details.dataset.loaded) return;
    details.dataset.loaded = "1";
    try {
      const changes = app.client.changesBetween(id, run.first.deps ?? [], [run.newest.hash]);
      const shown = changes.filter((c) => run.named.has(c.path.split("/")[1]));
      let record = null;
      try { record = app.client.read(id).record; } catch { /* items named by id */ }
      fill(body,
        othersWithin(log(), run) ? h("p", { class: "note others" }, tr("othersInBetween")) : null,
        shown.length
          ? h("dl", {}, shown.flatMap((c) => fieldChange(kind, c, record, ["valueBefore", "valueAfter"])))
          : h("p", { class: "note" }, tr("noFieldChanged")));
    } catch (e) {
      delete details.dataset.loaded;
      fill(body, h("p", { class: "note" }, problem(e)));
    }
  });
  return details;
}

/**
 * Who delivered each change of a record, as the server knows it: a
 * function from a change's hash to the device's name, the server (the
 * initial data it made itself) or this device (a change not sent yet).
 * Resolves with null when the server cannot be asked.
 */
function deliverers(id) {
  // Asked again at most every 10 s: screens with disagreements ask on
  // every redraw.
  const kept = app.deliverers?.get(id);
  if (kept && Date.now() - kept.at < 10_000) return kept.answer;
  const answer = askDeliverers(id);
  (app.deliverers ??= new Map()).set(id, { at: Date.now(), answer });
  answer.then((named) => { if (!named) app.deliverers.delete(id); }, () => app.deliverers.delete(id));
  return answer;
}

/**
 * Who delivered each change of record `id`, as the server's history says.
 * At most `HISTORY_ASKS` asked at once from this tab: the dashboard asks
 * for every record with a disagreement, and the server answers 429 past a
 * device's share of reads (`API_READS_PER_DEVICE`, 8, over all its tabs).
 */
async function askDeliverers(id) {
  await historyTurn();
  let res;
  try {
    res = await api(`/api/records/${id}/history`);
  } finally {
    historyTurnDone();
  }
  // A record the server does not have yet: every change is this device's.
  if (!res.ok && res.status !== 404) return null;
  const known = new Map(res.ok ? (await res.json()).map((e) => [e.hash, e.delivered_by]) : []);
  const named = (hash) => {
    const by = known.get(hash);
    // The server's own changes name no device: the initial data, and a
    // record it brought up to a newer schema.
    return !known.has(hash) ? tr("byThisDevice") : by?.device ? by.device_name ?? by.device : tr("byServer");
  };
  named.held = (hash) => known.has(hash);
  return named;
}

const HISTORY_ASKS = 3;
let historyAsking = 0;
const historyWaiting = [];
/** Resolves once fewer than `HISTORY_ASKS` history requests are under way. */
function historyTurn() {
  if (historyAsking < HISTORY_ASKS) {
    historyAsking++;
    return Promise.resolve();
  }
  return new Promise((resolve) => historyWaiting.push(resolve));
}
/** Hands a finished request's turn to the next one waiting. */
function historyTurnDone() {
  const next = historyWaiting.shift();
  if (next) next();
  else historyAsking--;
}

/** Where a new record's form is kept as typed, until it is created or left. */
const draftKey = (kind) => `draft:new:${kind}`;
/** Where the draft of a record created but not kept on the phone waits. */
const createdPrefix = (kind) => `draft:created:${kind}:`;

/**
 * The drafts of records of `kind` created on this phone but not kept on it
 * (its storage failed): each is dropped once the phone keeps its record,
 * and one whose record was lost with the page (a tab the phone killed)
 * becomes the form's draft again, unless another is being typed.
 */
function settleCreatedDrafts(kind) {
  const prefix = createdPrefix(kind);
  const keys = Array.from({ length: localStorage.length }, (_, i) => localStorage.key(i)).filter((k) => k?.startsWith(prefix));
  for (const key of keys) {
    const id = key.slice(prefix.length);
    let held = false;
    try { app.client.read(id); held = true; } catch { /* not here, or still arriving */ }
    let s = null;
    try { s = app.client.status(); } catch { /* no client: ask again later */ }
    // Lost only if the phone, joined, up to date and holding the club's
    // index, does not hold it: a record that reached the server before the
    // page was lost comes back from it, and its draft made again would be
    // a second record.
    const lost = !held && s?.link === "joined" && s.syncing === 0 && app.summaries?.some((r) => r.kind === "club");
    if (held && s && !s.unsaved.includes(id)) localStorage.removeItem(key);
    else if (lost && localStorage.getItem(draftKey(kind)) === null) {
      try {
        localStorage.setItem(draftKey(kind), localStorage.getItem(key));
        localStorage.removeItem(key);
      } catch { /* storage full: kept where it is */ }
    }
  }
}

function newView(kind) {
  if (!mayCreate(kind)) {
    app.view = { screen: "new-refused" };
    fill($("#view"), h("h2", {}, tr("newRecord", { kind: tr(`kind.${kind}`) })),
      h("p", { class: "note locked" }, tr(revoked() ? "lockedRevoked" : writable() ? "newCityCoordinators" : "newObserver")),
      h("p", {}, h("a", { href: `#/k/${kind}` }, tr("back"))));
    return;
  }
  const ctx = { lang: app.lang, summaries: app.summaries, byUrl: app.byUrl };
  const { rows, read, refresh, draft, restore } = creationRows(ctx, app.schema[kind] ?? []);
  // A form being filled in is never redrawn by sync; only its choices grow.
  // Once something is typed in it (`dirty`), leaving it asks first.
  // (Choices arriving may bring the delegate's own city: Create is weighed again.)
  const view = { new: kind, refresh: (summaries) => { refresh(summaries); guard(); }, dirty: false };
  app.view = view;
  // What is typed is kept on the phone as it is typed: a phone may close a
  // hidden tab without a word, and the form comes back as it was.
  const keep = () => {
    view.dirty = true;
    try { localStorage.setItem(draftKey(kind), JSON.stringify(draft())); } catch { /* storage full: the form still holds it */ }
  };
  settleCreatedDrafts(kind);
  let kept = null;
  try { kept = JSON.parse(localStorage.getItem(draftKey(kind))); } catch { /* not a draft: start afresh */ }
  const restored = kept && typeof kept === "object"
    ? h("p", { class: "note draft", role: "status" }, tr("draftRestored"), " ",
      h("button", { type: "button", onclick: () => {
        // What was typed is gone once this is pressed: asked first, as
        // leaving the form is.
        if (!confirm(tr("discardRestored"))) return;
        localStorage.removeItem(draftKey(kind));
        view.dirty = false;
        newView(kind);
      } }, tr("startAgain")))
    : null;
  // A delegate's new project, agreement or person must be one of their
  // cities', or the server refuses it weeks later and the phone cannot mend
  // it: their cities are chosen to start with, and Create says so at the
  // field while none is.
  const owning = role() === "delegate" ? OWNING_FIELD[kind] : undefined;
  const owner = () => owning && $(`#view form.new [name="${owning}"]`);
  const guard = () => {
    if (!owning) return true;
    const theirs = notOurs({ kind, record: read() }, null);
    owner()?.setCustomValidity(theirs ? tr("newNotOurs") : "");
    return !theirs;
  };
  const form = h("form", {
    class: "record new",
    oninput: () => { guard(); keep(); },
    onchange: () => { guard(); keep(); },
    onsubmit: (e) => {
      e.preventDefault();
      // Who this device is may have been learnt since the last keystroke.
      if (!guard()) {
        // No city on the phone yet to choose: said above the form.
        if (owner()) owner().reportValidity();
        else tell(tr("newNotOurs"));
        return;
      }
      // An agreement made already ended is locked for delegates at once.
      if (!isCoordinator() && kind === "agreement" && read().status === "ended" && !confirm(tr("endConfirm"))) return;
      // The record exists: the form, and whichever copy of it may have
      // been drawn since, hold nothing left to lose.
      const goTo = (id, keptOnPhone = true) => {
        // This device made it, and may write it wherever it goes.
        if (app.me) noteCreator(id, app.me.id);
        view.dirty = false;
        if (app.view?.new === kind) app.view.dirty = false;
        // Not kept on the phone, the record lives in this page alone: its
        // draft waits until the phone keeps it (`settleCreatedDrafts`).
        if (!keptOnPhone) {
          try { localStorage.setItem(`${createdPrefix(kind)}${id}`, JSON.stringify(draft())); } catch { /* storage full */ }
        }
        localStorage.removeItem(draftKey(kind));
        location.hash = `#/r/${id}`;
      };
      once(e.submitter ?? form.querySelector("button[type=submit]"), async () => {
        try {
          goTo(await app.client.create(kind, read(), `create ${kind}`));
        } catch (err) {
          // Created, but not kept on the phone (its storage failed): the
          // record is shown, and the form not kept to be created again;
          // the notice is said once the new screen has cleared the old one's.
          if (typeof err?.recordId === "string") {
            addEventListener("hashchange", () => tell(problem(err)), { once: true });
            goTo(err.recordId, false);
          } else tell(problem(err));
        }
      });
    },
  }, rows, h("div", { class: "actions" }, h("button", { type: "submit" }, tr("create")), h("a", { href: `#/k/${kind}` }, tr("cancel"))));
  if (restored) {
    restore(kept);
    view.dirty = true;
  } else if (owning) {
    const mine = (app.me?.cities ?? []).map((c) => `automerge:${bare(c)}`);
    if (mine.length) restore({ [owning]: owning === "parties" ? mine : mine[0] });
  }
  fill($("#view"), h("h2", {}, tr("newRecord", { kind: tr(`kind.${kind}`) })), restored, form);
  guard();
}

// ----- The coordinators' dashboard ------------------------------------------

function dashboardView() {
  const view = { screen: "dashboard" };
  app.view = view;
  const count = (items, key) => {
    const m = new Map();
    for (const i of items) m.set(key(i), (m.get(key(i)) ?? 0) + 1);
    return [...m.entries()].sort((a, b) => b[1] - a[1]);
  };
  // A table of no rows says "none", as the lists below do, rather than
  // a header a screen reader reads out over nothing.
  const table = (head, rows) => (rows.length
    ? h("table", {}, h("thead", {}, h("tr", {}, head.map((c) => h("th", {}, c)))),
      h("tbody", {}, rows.map((r) => h("tr", {}, r.map((c) => h("td", {}, c))))))
    : h("p", { class: "note" }, tr("none")));
  const cityName = (url) => (url ? titleOf(url) : tr("noCity"));

  const agreements = app.summaries.filter((s) => s.kind === "agreement");
  const projects = app.summaries.filter((s) => s.kind === "project");
  const read = app.summaries.map((s) => { try { return { id: s.id, view: app.client.read(s.id) }; } catch { return null; } }).filter(Boolean);
  // What is late in a record that does not read whole (one field an older
  // app wrote, say) is late all the same: its fields that do read count.
  const fieldsOf = (view) => view.record ?? view.partial;
  // A status that did not read is none.
  const statusSaid = (status) => (status ? tr(`value.${status}`) : tr("none"));
  // The items of `list` in records of `kind` still open (`closed` lists
  // the records' statuses that close them) past their `due` date and not
  // `done` themselves, soonest due first.
  const pastDue = (kind, list, closed, done) => read
    .filter(({ view }) => view.kind === kind && !closed.includes(fieldsOf(view)?.status))
    .flatMap(({ id, view }) => (fieldsOf(view)?.[list] ?? [])
      .filter((item) => item.due && item.due < today() && !done.includes(item.status))
      .map((item) => ({ id, view, item })))
    .sort((a, b) => a.item.due.localeCompare(b.item.due));
  // A project done or cancelled has nothing left to be late for, though
  // nobody closed its milestones.
  const overdue = pastDue("project", "milestones", ["done", "cancelled"], ["done", "cancelled"]);
  // Commitments of agreements in force or on their way, past due and not
  // kept or dropped: how the agreements are carried out on the ground.
  const late = pastDue("agreement", "commitments", ["ended"], ["done", "dropped"]);
  // Records of `kind` past the day they were to end (`ends_on`) whose
  // status does not close them (`closed`), the longest over first.
  const pastTheirEnd = (kind, closed) => read
    .filter(({ view }) => {
      const r = fieldsOf(view);
      return view.kind === kind && r?.ends_on && r.ends_on < today() && !closed.includes(r.status);
    })
    .sort((a, b) => fieldsOf(a.view).ends_on.localeCompare(fieldsOf(b.view).ends_on));
  // Projects still planned, active or on hold past the day they were to end.
  const pastEnd = pastTheirEnd("project", ["done", "cancelled"]);
  // Agreements not yet said ended past the day they were to end: still
  // counted as in force, say, though their term is over.
  const agreementsPastEnd = pastTheirEnd("agreement", ["ended"]);
  // Such a record's line: its status and the day it was to end.
  const endedLine = ({ view }) => [" · ", statusSaid(fieldsOf(view).status), " · ",
    tr("endedOn", { date: formatDate(app.lang, fieldsOf(view).ends_on) })];

  const recent = h("ol", { class: "recent" });
  const noneRecent = h("p", { class: "note", hidden: true }, tr("none"));
  // Typing makes a change a keystroke: a line per run, as in a record's
  // history. A change written offline long before it reached the server is
  // news when it arrives: it is placed by its arrival, and says both times.
  // The runs shown: the 30 that arrived last, by the server's clock where
  // it has said (a phone's clock may run fast), else as written.
  const latest = (runs, arrived) => runs
    .map((r) => ({ r, at: r.hashes.reduce((t, x) => Math.max(t, arrived.get(x) ?? 0), 0) || r.newest.time }))
    .sort((a, b) => b.at - a.at).slice(0, 30);
  // As in a record's history: one "what changed" per run, kept across
  // redraws (names and arrivals from the server), so one opened stays open.
  const opened = new Map();
  const changesOf = (r) => {
    const key = `${r.id} ${r.newest.hash} ${r.count}`;
    if (!opened.has(key)) opened.set(key, runChanges(r.id, kindOf(r.id), r, () => local.filter((e) => e.id === r.id)));
    return opened.get(key);
  };
  const drawRecent = (shown, names = new Map()) => {
    noneRecent.hidden = shown.length > 0;
    fill(recent, shown.map(({ r, at }) => h("li", {},
      h("time", {}, formatDateTime(app.lang, r.newest.time)), " · ",
      at - r.newest.time > 3600 ? [...trIsolated("receivedAt", { time: formatDateTime(app.lang, at) }), " · "] : null,
      h("span", { class: "who" }, words(r.hashes.map((x) => names.get(x)).find(Boolean) ?? tr("unknownAuthor"))), " · ",
      h("a", { href: `#/r/${r.id}` }, words(titleOf(r.id))),
      r.fields ? [" · ", h("span", { class: "what" }, listOf(app.lang, r.fields.split(",").map((f) => tr(`field.${f}`))))] : null,
      r.count > 1 ? h("span", { class: "count" }, ` ×${formatNumber(app.lang, r.count)}`) : null,
      // Only a run held here can be shown: the server lists changes
      // not yet on this device by their hash alone.
      r.newest.deps && kindOf(r.id) ? changesOf(r) : null)));
  };
  // On this device: every record's log.
  const local = [];
  for (const s of app.summaries) {
    let log = [];
    try { log = app.client.history(s.id); } catch { /* skipped */ }
    for (const e of log) local.push({ ...e, id: s.id });
  }
  local.sort((a, b) => b.time - a.time);
  // Drawn at once with what the server said last time, so that a redraw
  // (records arriving) does not flash every line's device as unknown
  // while the server is asked again.
  drawRecent(latest(runsOf(local), app.recentArrived ?? new Map()), app.recentNames ?? new Map());
  // With the server: who delivered each change, when it arrived, and
  // changes not yet here. The last 30 changes, and the newest of each
  // record by each device: a phone back online after days sends a change
  // a keystroke, and the last 30 would all be the minutes typed last,
  // leaving the other records it changed placed by when they were
  // written, days down the list.
  const asked = (query) => api(`/api/changes?${query}`).then((res) => (res.ok ? res.json() : null));
  Promise.all([asked("limit=30"), asked("limit=30&per=writer")]).then(async ([last, perWriter]) => {
    // A dashboard drawn since, or another screen, does not wait on this one.
    if (!last || !perWriter || app.view !== view) return;
    const byHash = new Map([...last, ...perWriter].map((c) => [c.hash, c]));
    const delivered = [...byHash.values()];
    // A change with no device is the server's own (the initial data, a
    // record brought up to a newer schema).
    const names = new Map(delivered.map((c) => [c.hash, c.device ? c.device_name ?? c.device : tr("byServer")]));
    const arrived = new Map(delivered.map((c) => [c.hash, c.received_at]));
    app.recentNames = names;
    app.recentArrived = arrived;
    const here = new Set(local.map((e) => e.hash));
    const elsewhere = delivered.filter((c) => !here.has(c.hash))
      .map((c) => ({ id: c.record, hash: c.hash, time: c.received_at, actor: `device:${c.device}`, fields: [] }));
    const entries = [...local, ...elsewhere].sort((a, b) => b.time - a.time);
    const shown = latest(runsOf(entries), arrived);
    drawRecent(shown, names);
    // The server's newest deliveries leave out changes it made itself (the
    // initial data), older ones, and those this device has not sent: each
    // record's history names those.
    const nameless = (r) => !r.hashes.some((x) => names.has(x));
    const unnamed = app.view === view ? [...new Set(shown.map(({ r }) => r).filter(nameless).map((r) => r.id))] : [];
    const named = await Promise.all(unnamed.map((id) => deliverers(id).catch(() => null)));
    named.forEach((name, i) => {
      if (!name) return;
      for (const { r } of shown) if (r.id === unnamed[i] && nameless(r)) names.set(r.newest.hash, name(r.newest.hash));
    });
    if (unnamed.length && app.view === view) drawRecent(shown, names);
  }).catch(() => {});

  const byCity = new Map();
  for (const p of projects) {
    const key = p.city ?? "";
    const row = byCity.get(key) ?? { total: 0, active: 0, overdue: 0 };
    row.total++;
    if (p.status === "active") row.active++;
    byCity.set(key, row);
  }
  for (const o of overdue) {
    const key = o.view.city ?? "";
    const row = byCity.get(key) ?? { total: 0, active: 0, overdue: 0 };
    row.overdue++;
    byCity.set(key, row);
  }
  const n = (x) => formatNumber(app.lang, x);
  fill($("#view"), 
    h("section", { id: "by-status" }, h("h3", {}, tr("agreementsByStatus")),
      table([tr("field.status"), tr("count")], count(agreements, (a) => a.status ?? "").map(([s, c]) => [s ? tr(`value.${s}`) : tr("none"), n(c)]))),
    h("section", { id: "by-city" }, h("h3", {}, tr("projectsByCity")),
      table([tr("city"), tr("kinds.project"), tr("value.active"), tr("overdueMilestones")],
        [...byCity.entries()].map(([city, r]) => [words(cityName(city)), n(r.total), n(r.active), n(r.overdue)]))),
    lateSection("overdue", tr("overdueMilestones"), overdue, (o) => [" — ", words(o.item.title), " · ",
      tr("due", { date: formatDate(app.lang, o.item.due) })]),
    lateSection("past-end", tr("projectsPastEnd"), pastEnd, endedLine),
    lateSection("agreements-past-end", tr("agreementsPastEnd"), agreementsPastEnd, endedLine),
    lateSection("late-commitments", tr("overdueCommitments"), late, (o) => [" — ", words(o.item.text),
      o.item.party ? [" · ", words(titleOf(o.item.party))] : null, " · ",
      tr("due", { date: formatDate(app.lang, o.item.due) })]),
    h("section", { id: "recent" }, h("h3", {}, tr("recentChanges")), recent, noneRecent),
    conflictList(read),
    exportSection(),
  );
}

/**
 * A dashboard list of what is late: each `{id, view}` as a link to its
 * record (by its title, else its id) followed by `rest(entry)`; "none"
 * when nothing is.
 */
function lateSection(id, heading, entries, rest) {
  return h("section", { id }, h("h3", {}, heading),
    entries.length
      ? h("ul", {}, entries.map((e) => h("li", {}, h("a", { href: `#/r/${e.id}` }, wordsOf(e.view.title ?? e.view.partial?.title, app.lang, e.id)), rest(e).flat())))
      : h("p", { class: "note" }, tr("none")));
}

/**
 * What an export made now would lack, from the sync bar's status: records
 * not yet in step with the server, or, away from it, whatever changed
 * since this device last synced. Nothing when it is up to date.
 */
function exportNote(s) {
  if (!s || s.state === "up-to-date") return "";
  if (s.link !== "joined") return tr("exportOffline");
  return s.syncing > 0 ? plural(app.lang, "exportPartial", s.syncing) : "";
}

/**
 * The character a spreadsheet on this computer splits a CSV file's columns
 * at: the one chosen on the dashboard, else as the computer's own language
 * says numbers. Excel splits at semicolons where the decimal mark is a
 * comma (French, Arabic as written in Morocco), else at commas; the app's
 * language says nothing of the spreadsheet's.
 */
function csvSeparator() {
  const chosen = localStorage.getItem("csvSeparator");
  if (chosen === ";" || chosen === ",") return chosen;
  // A tag Intl refuses ("en_US" from some web views) counts as none.
  let format;
  try { format = new Intl.NumberFormat(navigator.language); } catch { format = new Intl.NumberFormat(); }
  const mark = format.formatToParts(1.5).find((p) => p.type === "decimal")?.value;
  // Arabic's own decimal mark (U+066B) stands where others write a comma.
  return mark === "," || mark === "\u066b" ? ";" : ",";
}

/** The most characters an Excel cell holds (Microsoft's documented limit); a longer one is cut. */
const SPREADSHEET_CELL = 32_767;

function exportSection() {
  // Read when the button is pressed: records keep arriving while the
  // dashboard is open. In the lists' order: meetings and reports newest
  // first, the rest by title, as a council file reads them.
  const readAll = () => app.client.list().sort(byDateThenTitle)
    .map((s) => { try { return { id: s.id, view: app.client.read(s.id) }; } catch { return null; } })
    .filter(Boolean);
  const download = (name, type, text) => {
    const a = h("a", { href: URL.createObjectURL(new Blob([text], { type })), download: name });
    document.body.append(a);
    a.click();
    a.remove();
  };
  const csv = (kind) => {
    // A record this version cannot read has no fields to show: it is left
    // out, and said so; the JSON export keeps it as stored.
    const all = readAll().filter((r) => r.view.kind === kind);
    const rows = all.filter((r) => r.view.record);
    unread.hidden = rows.length === all.length;
    unread.textContent = unread.hidden ? "" : plural(app.lang, "exportUnread", all.length - rows.length);
    // A day's minutes may pass what a spreadsheet's cell takes, which it
    // cuts short without a word: said here.
    let long = 0;
    // A list (milestones, contacts, decisions) is one cell, an item a line.
    const fields = (app.schema[kind] ?? []).filter((f) => f.type !== "map");
    const ctx = { lang: app.lang, byUrl: app.byUrl };
    const sep = csvSeparator();
    // A cell a spreadsheet would run as a formula is kept as text.
    const cell = (v) => {
      const text = String(v ?? "");
      if (text.length > SPREADSHEET_CELL) long++;
      return `"${(/^[=+\-@\t\r]/.test(text) ? `'${text}` : text).replaceAll('"', '""')}"`;
    };
    // For people to read, in the coordinator's language: the fields'
    // labels, chosen values as the forms say them, people and cities by
    // name, not by their record's address. Dates stay ISO, which
    // spreadsheets sort; the JSON export keeps every code.
    const label = (f) => fieldName(f.name) ?? f.name;
    // Last, what two delegates disagree on: a value in a cell is only the
    // one shown until someone keeps one.
    const head = [tr("exportId"), ...fields.flatMap((f) => (f.type === "multilingual" ? LANGS.map((l) => `${label(f)} (${LANGUAGE_NAMES[l]})`) : [label(f)])), tr("conflicts")];
    const lines = rows.map(({ id, view }) => [id, ...fields.flatMap((f) => {
      const v = view.record?.[f.name];
      if (f.type === "multilingual") return LANGS.map((l) => v?.[l] ?? "");
      if (v === null || v === undefined || v === "") return [""];
      if (f.type === "list") return [v.map((item) => showItem(ctx, f.fields, item, { plain: true })).join("\n")];
      return [plainValue(f, v)];
    }), disagreementLines(view, { plain: true }).join("\n")].map(cell).join(sep));
    longCells.hidden = long === 0;
    longCells.textContent = long ? plural(app.lang, "exportLong", long) : "";
    // A byte-order mark so spreadsheets read Arabic as UTF-8.
    return "\ufeff" + [head.map(cell).join(sep), ...lines].join("\r\n") + "\r\n";
  };
  const note = exportNote(app.client.status());
  const unread = h("p", { id: "export-unread", class: "note", role: "status", hidden: true });
  const longCells = h("p", { id: "export-long", class: "note", role: "status", hidden: true });
  return h("section", { id: "export" }, h("h3", {}, tr("export")),
    h("p", { id: "export-partial", class: "note", role: "status", hidden: !note }, note), unread, longCells,
    h("label", { class: "separator" }, tr("csvSeparator"), " ",
      h("select", { id: "csv-separator", onchange: (e) => localStorage.setItem("csvSeparator", e.target.value) },
        [";", ","].map((c) => h("option", { value: c, selected: c === csvSeparator() }, tr(c === ";" ? "csvSemicolon" : "csvComma"))))),
    h("button", { type: "button", id: "export-json", onclick: () => download("twinsync-records.json", "application/json",
      // A record the app cannot read goes as stored, beside why; every
      // record with its standing disagreements.
      JSON.stringify(readAll().map(({ id, view }) => ({
        id, kind: view.kind, record: view.record ?? null, ...(view.record ? {} : { stored: view.stored ?? null }),
        errors: view.errors ?? [], conflicts: view.conflicts ?? [],
      })), null, 2)) }, tr("exportJson")),
    KINDS.filter((k) => k !== "club").map((k) => h("button", { type: "button", "data-kind": k, onclick: () => download(`twinsync-${k}.csv`, "text/csv", csv(k)) },
      tr("exportCsv", { kind: tr(`kinds.${k}`) }))));
}

// ----- Devices, invites and refused changes (coordinators) ------------------

/**
 * The server's error: its English as the message and, for the failures a
 * coordinator meets, its `code`, which `requestProblem` says in the
 * person's language.
 */
function apiError(res, body) {
  return Object.assign(new Error(body.error ?? res.statusText), { code: body.code });
}

/** Why a request failed, as the person reads it; the server's English, if any, in the title. */
function requestProblem(e) {
  if (e.code && STRINGS.en[`api.${e.code}`]) {
    return h("span", { title: e.message }, tr("requestFailed", { reason: tr(`api.${e.code}`) }));
  }
  return trIsolated("requestFailed", { reason: e.message });
}

/** Calls the API; resolves with its JSON body, or rejects with its error. */
async function call(path, init = {}) {
  let res;
  try {
    res = await api(path, init.body ? { ...init, headers: { "content-type": "application/json" } } : init);
  } catch {
    // The browser's own words ("Failed to fetch") say nothing to a coordinator.
    throw new Error(tr("requestUnreached"));
  }
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw apiError(res, body);
  return body;
}

/**
 * A GET of the API that answers a list, whose last answer is kept on the
 * device: when the server cannot be reached, or what answers is not the
 * server (a proxy's error page, a captive portal), that answer, with when
 * it was fetched (`at`). The server's own errors are thrown.
 */
async function kept(path) {
  const key = `kept:${path}`;
  // The last answer, else `error`.
  const keptOr = (error) => {
    const k = JSON.parse(localStorage.getItem(key) ?? "null");
    if (!k) throw error;
    return { body: k.body, at: k.at };
  };
  // Nothing kept yet (the first visit since signing in): said as `call`
  // says it, not in the browser's or a gateway's English.
  const unreached = () => new Error(tr("requestUnreached"));
  let res;
  try {
    res = await api(path);
  } catch {
    // fetch rejects when there is no answer at all.
    return keptOr(unreached());
  }
  if (!(res.headers.get("content-type") ?? "").startsWith("application/json")) {
    return keptOr(unreached());
  }
  const body = await res.json();
  // A gateway's own JSON error (the server's always says `error`).
  if (res.status >= 500 && !body.error) return keptOr(unreached());
  if (!res.ok) throw apiError(res, body);
  // Not the server's answer (a proxy's JSON): as when none came.
  if (!Array.isArray(body)) return keptOr(unreached());
  try { localStorage.setItem(key, JSON.stringify({ at: Date.now(), body })); } catch { /* full: shown, not kept */ }
  return { body };
}

/**
 * Forgets the lists `kept` holds (a coordinator's, of this sign-in) and,
 * unless told not to, the drafts of new records (the last person's typing,
 * on a phone passed on).
 */
function forgetKept({ lists = true, drafts = true } = {}) {
  for (const key of Object.keys(localStorage)) {
    if ((lists && key.startsWith("kept:")) || (drafts && key.startsWith("draft:"))) localStorage.removeItem(key);
  }
}

const titleOf = (id) => linkedTitle({ byUrl: app.byUrl, lang: app.lang }, `automerge:${bare(id)}`);

/**
 * A device's name, role, cities and person as form fields, filled in from
 * `d` (an invite starts empty); `value()` is the body the API takes.
 */
function deviceFields(d, byTitle) {
  const name = h("input", { type: "text", name: "name", dir: "auto", required: true, maxlength: 200, value: d.name ?? "" });
  const role = h("select", { name: "role" }, ["delegate", "coordinator", "observer"]
    .map((r) => h("option", { value: r, selected: r === (d.role ?? "delegate") }, tr(r))));
  // A city or person this phone does not hold yet is offered too, so that
  // saving keeps it.
  const known = (kind, ids) => {
    const all = byTitle(kind);
    const held = new Set(all.map((r) => bare(r.id)));
    return [...all, ...ids.filter((id) => !held.has(bare(id))).map((id) => ({ id: bare(id), title: titleOf(id) }))];
  };
  const mine = new Set((d.cities ?? []).map(bare));
  const cities = known("city", d.cities ?? []).map((c) => ({ id: c.id, title: c.title, box: h("input", { type: "checkbox", value: c.id, checked: mine.has(bare(c.id)) }) }));
  const person = h("select", { name: "person" }, h("option", { value: "" }, tr("noPerson")),
    known("person", d.person ? [d.person] : []).map((p) => h("option", { value: p.id, dir: "auto", selected: !!d.person && bare(d.person) === bare(p.id) }, p.title)));
  const citiesSet = h("fieldset", { class: "field choices" }, h("legend", {}, tr("cities")),
    cities.map((c) => h("label", {}, c.box, " ", words(c.title))));
  // A city ticked after the form was refused for lacking one mends it, and
  // so does a role that needs none.
  const mended = () => { citiesSet.removeAttribute("aria-invalid"); citiesSet.removeAttribute("aria-describedby"); };
  citiesSet.addEventListener("change", mended);
  role.addEventListener("change", () => { if (role.value !== "delegate") mended(); });
  return {
    elements: [
      h("label", { class: "field" }, h("span", { class: "label" }, tr("deviceName")), name),
      h("label", { class: "field" }, h("span", { class: "label" }, tr("role")), role),
      citiesSet,
      h("label", { class: "field" }, h("span", { class: "label" }, tr("person")), person),
    ],
    value: () => ({
      name: name.value,
      role: role.value,
      cities: cities.filter((c) => c.box.checked).map((c) => c.id),
      person: person.value || null,
    }),
    // What the server would refuse, said before asking it.
    missing: () => (role.value === "delegate" && !cities.some((c) => c.box.checked) ? tr("delegateNeedsCity") : null),
    /**
     * Says what is missing in `problem` and takes the person to it: on a
     * phone the message at the screen's top is out of sight of Save.
     */
    tellMissing: (problem, said) => {
      fill(problem, said);
      if (!problem.id) problem.id = `problem-${++deviceFieldsSerial}`;
      citiesSet.setAttribute("aria-invalid", "true");
      citiesSet.setAttribute("aria-describedby", problem.id);
      problem.scrollIntoView({ block: "nearest" });
      (cities[0]?.box ?? name).focus();
    },
    focus: () => name.focus(),
  };
}
let deviceFieldsSerial = 0;

/** A device's or an invite's cities by title, each isolated in a mixed-direction line. */
const citiesShown = (cities) => listOf(app.lang, cities.map((c) => `\u2068${titleOf(c)}\u2069`));

function devicesView() {
  // Redrawn as records arrive (the cities and people to choose from), and
  // once the server has said who this device is; not once something is
  // typed in the invite form.
  const view = { screen: "devices" };
  app.view = view;
  if (!isCoordinator()) {
    fill($("#view"), h("p", { class: "note" }, tr("coordinatorsOnly")));
    return;
  }
  const problem = h("p", { class: "warning", role: "alert" });
  // Offline, the lists as last fetched, said so, with nothing to press.
  const stale = h("p", { class: "note stale", role: "status" });
  const staleness = {};
  const asOf = (what, at) => {
    staleness[what] = at;
    const oldest = Math.min(...Object.values(staleness).filter(Boolean));
    stale.textContent = Number.isFinite(oldest) ? tr("shownAsOf", { when: formatDateTime(app.lang, Math.floor(oldest / 1000)) }) : "";
  };
  view.problem = problem;
  // This screen as it is when an answer comes: a redraw held while a
  // preview was open may have drawn it again meanwhile, and what the
  // answer says, or the lists it changed, belong on the one shown.
  const shown = () => (app.view?.screen === "devices" && app.view.problem ? app.view : view);
  const failed = (e) => { fill(shown().problem, requestProblem(e)); };
  // Runs one request at a time from `button`, with the error, if any, shown.
  const act = async (button, work) => {
    problem.textContent = "";
    button.disabled = true;
    try { await work(); } catch (err) { failed(err); } finally { button.disabled = false; }
  };
  const byTitle = (kind) => app.summaries.filter((s) => s.kind === kind)
    .map((s) => ({ id: s.id, title: titleOf(s.id) }))
    .sort((a, b) => a.title.localeCompare(b.title, app.lang));

  // A new device: the link it opens signs it in once.
  const fields = deviceFields({}, byTitle);
  // The last invite's link, kept across redraws: the server cannot show it again.
  const made = h("div", { class: "invite-made", role: "status" });
  const drawMade = (created) => {
    if (!created) return;
    const said = tr("inviteLink", { until: formatDateTime(app.lang, created.expires_at) });
    const link = h("input", { type: "text", readonly: true, class: "invite-link", value: created.link, dir: "ltr", "aria-label": said });
    const copy = h("button", { type: "button", class: "copy", onclick: async () => {
      link.select();
      try { await navigator.clipboard.writeText(created.link); copy.textContent = tr("copied"); } catch { /* selected, to copy by hand */ }
    } }, tr("copy"));
    fill(made, h("p", {}, words(created.name), " · ", said), link, copy);
  };
  drawMade(app.lastInvite);
  // The screen is not redrawn by arriving records while the invite form
  // has input or a device's form is open.
  let inviting = false;
  // The roles are said outright: on a phone the table is drawn as cards
  // (`display: block`), which Safari and Firefox take as the end of a
  // table, so that a screen reader no longer reads a row as a row.
  const devices = h("tbody", { role: "rowgroup" });
  // (This screen's own view: an answer arriving after the person left
  // for another screen must not hold that one.)
  const touched = () => { view.touched = inviting || !!devices.querySelector("tr.editing"); };
  const submit = h("button", { type: "submit" }, tr("createInvite"));
  const invite = h("form", {
    class: "invite",
    oninput: () => { inviting = true; touched(); },
    onsubmit: (e) => {
      e.preventDefault();
      const missing = fields.missing();
      if (missing) { fields.tellMissing(problem, missing); return; }
      act(submit, async () => {
        app.lastInvite = await call("/api/invites", { method: "POST", body: JSON.stringify(fields.value()) });
        drawMade(app.lastInvite);
        invite.reset();
        inviting = false;
        touched();
        shown().drawDevices();
        shown().drawInvites();
      });
    },
  },
  ...fields.elements,
  submit);

  // Every device, a way to change what it may do, and a way to cut it off.
  // The row under a device with the form that changes it, one at a time.
  const edit = (d, row) => {
    devices.querySelector("tr.editing")?.remove();
    const changed = deviceFields(d, byTitle);
    const save = h("button", { type: "submit" }, tr("saveDevice"));
    const cancel = h("button", { type: "button", onclick: () => { under.remove(); touched(); } }, tr("cancel"));
    const form = h("form", {
      class: "edit-device",
      "aria-label": labelled(tr("editDevice"), d.name),
      onsubmit: (e) => {
        e.preventDefault();
        const missing = changed.missing();
        if (missing) { changed.tellMissing(problem, missing); return; }
        act(save, async () => {
          await call(`/api/devices/${encodeURIComponent(d.id)}`, { method: "PATCH", body: JSON.stringify(changed.value()) });
          under.remove();
          touched();
          // The server says who this device is now, if it was this one.
          if (d.id === app.me?.id) await meChanged();
          await shown().drawDevices();
        });
      },
    }, ...changed.elements, save, cancel);
    const under = h("tr", { class: "editing", role: "row" }, h("td", { colspan: 5, role: "cell" }, form));
    row.after(under);
    touched();
    changed.focus();
  };
  const drawDevices = () => kept("/api/devices").then(({ body: list, at }) => {
    asOf("devices", at);
    fill(devices, list
    .sort((a, b) => (a.revoked_at ? 1 : 0) - (b.revoked_at ? 1 : 0) || b.created_at - a.created_at)
    .map((d) => {
      const row = h("tr", { "data-device": d.id, class: d.revoked_at ? "revoked" : "", role: "row" },
        h("td", { role: "cell" }, words(d.name)),
        h("td", { role: "cell", "data-label": tr("role") }, tr(d.role)),
        h("td", { role: "cell", "data-label": tr("cities") }, d.cities?.length ? citiesShown(d.cities) : "—"),
        h("td", { role: "cell", "data-label": tr("lastSeen") }, d.last_seen_at ? formatDateTime(app.lang, d.last_seen_at) : tr("never")),
        h("td", { role: "cell" }, d.revoked_at ? tr("revokedOn", { when: formatDateTime(app.lang, d.revoked_at) }) : [
          h("button", { type: "button", class: "edit", disabled: !!at, "aria-label": labelled(tr("editDevice"), d.name), onclick: () => edit(d, row) }, tr("editDevice")),
          d.id === app.me?.id ? h("span", { class: "this-device" }, tr("thisDevice"))
            : h("button", { type: "button", class: "revoke", disabled: !!at, "aria-label": labelled(tr("revoke"), d.name), onclick: (e) => {
              if (!confirm(tr("revokeConfirm", { name: `\u2068${d.name}\u2069` }))) return;
              act(e.currentTarget, () => call(`/api/devices/${encodeURIComponent(d.id)}/revoke`, { method: "POST" })).then(() => shown().drawDevices());
            } }, tr("revoke"))]));
      return row;
    }));
    // A device's form open before went with the old rows.
    touched();
  }).catch(failed);

  // Invites nobody has used yet, which a coordinator may withdraw (a link
  // sent to the wrong group), never with their links.
  const waiting = h("ul", { class: "invites" });
  const drawInvites = () => kept("/api/invites").then(({ body: rows, at }) => {
    asOf("invites", at);
    fill(waiting, rows.length
    ? rows.map((i) => h("li", { "data-invite": i.id },
      words(i.name), " · ", tr(i.role),
      i.cities?.length ? [" · ", citiesShown(i.cities)] : null,
      " · ", tr("inviteUntil", { until: formatDateTime(app.lang, i.expires_at) }), " ",
      h("button", { type: "button", class: "withdraw", disabled: !!at, "aria-label": labelled(tr("withdrawInvite"), i.name), onclick: (e) => {
        if (!confirm(tr("withdrawConfirm", { name: `\u2068${i.name}\u2069` }))) return;
        act(e.currentTarget, () => call(`/api/invites/${encodeURIComponent(i.id)}/cancel`, { method: "POST" })).then(() => shown().drawInvites());
      } }, tr("withdrawInvite"))))
    : h("li", { class: "note" }, tr("invitesNone")));
  }).catch(failed);

  // Changes the server refused, kept for a coordinator to judge.
  const pending = h("ul", { class: "quarantine" });
  const drawPending = () => kept("/api/quarantine?status=pending").then(({ body: rows, at }) => {
    asOf("pending", at);
    fill(pending, rows.length
    ? rows.map((q) => h("li", { "data-quarantine": q.id },
      // The number the delegate's phone gives, as it gives it.
      h("span", { class: "number" }, tr("quarantineNumber", { n: formatId(app.lang, q.id) })), " · ",
      h("a", { href: `#/r/${q.doc_id}` }, words(titleOf(q.doc_id))), " · ",
      // The name is the device's own choice; the role, the coordinator's.
      h("span", { class: "who" }, words(q.device_name ?? q.device_id)), q.device_role ? [" (", h("span", { class: "role" }, tr(q.device_role)), ")"] : null, " · ",
      h("time", {}, formatDateTime(app.lang, q.received_at)), " · ",
      plural(app.lang, "changesCount", q.hashes.length),
      h("p", { class: "reason" }, refusalReason(q)),
      buildsOn(q, rows),
      batchChanges(q),
      ["accept", "discard"].map((decision) => h("button", { type: "button", class: decision, disabled: !!at, "aria-label": labelled(tr(decision), listOf(app.lang, [titleOf(q.doc_id), q.device_name ?? q.device_id])), onclick: (e) => {
        act(e.currentTarget, () => call(`/api/quarantine/${q.id}/${decision}`, { method: "POST" })).then(() => shown().drawPending());
      } }, tr(decision)))))
    : h("li", { class: "note" }, tr("quarantineEmpty")));
  }).catch(failed);

  fill($("#view"),
    h("h2", {}, tr("devices")), problem, stale,
    h("section", { class: "invite-section" }, h("h3", {}, tr("inviteTitle")), invite, made),
    h("section", {}, h("h3", {}, tr("invitesWaiting")), waiting),
    h("section", {}, h("h3", {}, tr("deviceList")),
      h("button", { type: "button", class: "refresh", onclick: () => { problem.textContent = ""; drawDevices(); drawInvites(); drawPending(); } }, tr("refresh")),
      h("table", { class: "devices", role: "table", "aria-label": tr("deviceList") },
      h("thead", { role: "rowgroup" }, h("tr", { role: "row" }, [tr("deviceName"), tr("role"), tr("cities"), tr("lastSeen"), tr("status")].map((c) => h("th", { role: "columnheader" }, c)))), devices)),
    h("section", {}, h("h3", {}, tr("quarantineTitle")), pending));
  Object.assign(view, { drawDevices, drawInvites, drawPending });
  drawDevices();
  drawInvites();
  drawPending();
}

// ----- Routing ---------------------------------------------------------------

function route() {
  if (!app.client) return;
  // A redraw held for the screen left is moot, and so is a printed sheet.
  app.redrawHeld = false;
  endPrinting();
  // Safari and Firefox fire no `change` for a focused field the redraw
  // removes: what is typed in it is written first.
  writeFocused();
  app.hash = location.hash;
  const parts = location.hash.replace(/^#\/?/, "").split("/");
  const screens = ["dashboard", "devices"];
  for (const a of document.querySelectorAll("nav.views a")) {
    const screen = a.getAttribute("href").slice(2);
    a.setAttribute("aria-current", String(screens.includes(screen) ? parts[0] === screen : !screens.includes(parts[0])));
  }
  app.view = null;
  if (parts[0] === "r" && parts[1]) {
    // The end of the chosen day on this phone's calendar, not UTC's: in
    // Oakland that evening's changes are in it.
    const day = parts[2] === "at" && /^\d{4}-\d{2}-\d{2}$/.test(parts[3] ?? "") ? parts[3] : null;
    const at = day ? new Date(`${day}T23:59:59.999`).getTime() : null;
    recordView(parts[1], Number.isNaN(at) ? null : at);
  } else if (parts[0] === "new" && KINDS.includes(parts[1])) newView(parts[1]);
  else if (parts[0] === "dashboard") dashboardView();
  else if (parts[0] === "devices") devicesView();
  else listView(parts[0] === "k" && KINDS.includes(parts[1]) ? parts[1] : null);
}
addEventListener("hashchange", () => {
  // An invite link opened in a tab that already shows the app.
  if (location.hash.includes("invite=")) location.reload();
  else if (!mayLeave()) history.replaceState(null, "", app.hash);
  else {
    // What went wrong on the screen left does not follow to the next.
    $("#notice").textContent = "";
    route();
    // The link followed is gone with the screen it was on: a screen
    // reader starts again from the new screen's heading, not the page's top.
    const heading = $("#view h2");
    if (heading && (!document.activeElement || document.activeElement === document.body)) {
      heading.tabIndex = -1;
      heading.focus({ preventScroll: true });
    }
  }
});

function onChanges(changes) {
  // A record's search words hold the titles of those it links to.
  if (changes.some((c) => c.paths.some((p) => /^\/(title|name)(\/|$)/.test(p)))) app.texts.clear();
  else for (const c of changes) app.texts.delete(c.id);
  // Who delivered a change that just arrived is new to the server's
  // answer kept for the record: ask again, or it is said to be this phone's.
  for (const c of changes) if (c.origin === "remote") app.deliverers?.delete(c.id);
  const known = app.byUrl;
  refreshSummaries();
  if (app.view?.new) {
    app.view.refresh(app.summaries);
    return;
  }
  const current = app.view?.id && changes.find((c) => c.id === app.view.id);
  if (app.view?.id) {
    if (current && current.origin === "remote") refreshRecordView(current.paths);
    else if (current && current.paths.some((p) => !app.view.ctx.editors.has(p))) {
      // A local change this screen did not draw (a new item, a resolved conflict).
      if (!$("#view form.record")?.contains(document.activeElement)) recordView(app.view.id);
    }
    // Records it names that arrived or were renamed: the record on screen
    // is read only when some record did either.
    const linked = current ? [] : changes
      .filter((c) => !known?.has(`automerge:${bare(c.id)}`) || c.paths.some((p) => /^\/(title|name)(\/|$)/.test(p)))
      .map((c) => `automerge:${bare(c.id)}`);
    let named = "";
    if (linked.length) try { named = JSON.stringify(app.client.read(app.view.id).record ?? {}); } catch { /* not readable: nothing named */ }
    if (linked.some((url) => named.includes(url))) relinkRecordView();
  } else if (!app.redraw) {
    // Lists redraw at most every 300 ms while records pour in; the
    // dashboard, which reads every record and asks the server, 5 s after
    // records arrive (at once for what the person did on it).
    app.redraw = setTimeout(() => {
      app.redraw = null;
      // A new record's form is never redrawn by sync (it refreshes its
      // choices), nor a screen the person changed.
      if (app.view?.id || app.view?.new || app.view?.touched) return;
      // A button or link the person pressed last keeps the focus through
      // the redraw; a screen with something typed or chosen in it, or
      // opened to read (a refused batch's changes), is redrawn once the
      // person leaves it (`focusout`, `toggle`).
      const pressed = pressedOnScreen();
      if (!pressed && heldOnScreen()) {
        app.redrawHeld = true;
        return;
      }
      route();
      pressed?.();
    }, app.view?.screen === "dashboard" && changes.some((c) => c.origin === "remote") ? 5000 : 300);
  }
}

/**
 * Shows what opening an invite does, and resolves `true` once the person
 * presses Join: until then the invite is not sent to the server. A phone
 * already signed in says so first, since joining signs it in as the
 * invite's holder instead, and offers to go on as it was (`false`). Drawn
 * again in the language the person switches to.
 */
function joinPressed() {
  return new Promise((resolve) => {
    const signedIn = !!localStorage.getItem("token");
    const done = (joined) => {
      app.redrawStart = null;
      if (joined) sayAgain(() => tr("joining"));
      resolve(joined);
    };
    app.redrawStart = () => {
      const join = h("button", { type: "button", class: "join", onclick: () => done(true) }, tr("join"));
      fill($("#view"), h("section", { class: "join" },
        h("h2", {}, tr("joinTitle")),
        h("p", {}, tr("joinHelp")),
        signedIn ? h("p", { class: "warning" }, tr("joinReplaces")) : null,
        h("p", {}, join, signedIn ? [" ", h("button", { type: "button", class: "not-now", onclick: () => done(false) }, tr("notNow"))] : null)));
      join.focus();
    };
    app.redrawStart();
  });
}

/**
 * Says what `draw` makes, before the client is open (a sign-in prompt, an
 * invite refused, storage that failed): drawn again in the language the
 * person switches to, as nothing else on the screen is yet.
 */
function sayAgain(draw) {
  app.redrawStart = () => say(draw());
  app.redrawStart();
}

// ----- Start -----------------------------------------------------------------

async function start() {
  chrome();
  // The sync bar stays over the foot of the page, and grows to several
  // lines with a refused change, in Arabic on a narrow phone: the page
  // ends that much lower, so its last button can be scrolled clear of it,
  // and a field reached by Tab is scrolled above it (style.css).
  new ResizeObserver(() => {
    document.documentElement.style.setProperty("--sync-height", `${$("#sync").offsetHeight}px`);
  }).observe($("#sync"));
  let refused = null;
  try {
    app.token = await signIn();
  } catch (e) {
    // The server's words, in English, isolated in a line of the person's language.
    refused = () => (e.key ? h("span", { title: e.message }, tr(e.key))
      : h("span", {}, tr("signinFailed"), e.after ? tr(e.after) : words(e.message)));
    // A device already signed in that opens an invite link again stays
    // signed in; the refusal is only a note. An invite the server did not
    // answer stays in the address (`signIn`), so that reloading once online
    // tries it again: it may be what signs in a device the server no
    // longer takes.
    app.token = localStorage.getItem("token");
    if (!app.token) {
      sayAgain(refused);
      return;
    }
  }
  if (!app.token) {
    sayAgain(() => tr("signin"));
    return;
  }
  try {
    await wasmLoaded;
    app.schema = loadSchema();
    app.client = await Client.open({ token: app.token });
  } catch (e) {
    // A newer version took the storage over: reloading runs that version.
    sayAgain(() => (e.name === "SupersededError" ? problem(e)
      : trIsolated("storageError", { reason: `${e.name}: ${e.message}` })));
    return;
  }
  app.redrawStart = null;
  window.twinsync = app.client;
  // Who this device is matters for what it shows; the records do not wait for it.
  meChanged({ always: true });
  refreshSummaries();
  app.client.onStatus((s) => {
    syncBar(s);
    onReconnect(s);
    if (s.link === "joined" && s.unconfirmed === 0 && app.whenSent?.length) {
      for (const then of app.whenSent.splice(0)) then();
    }
    // Once up to date with the server, the drafts of records created
    // here and lost with their page are known lost: they wait as their
    // forms' drafts, whenever those are next opened.
    if (!app.draftsSettled && s.link === "joined" && s.syncing === 0) {
      app.draftsSettled = true;
      // Not the kind whose form is open: it would never show the draft,
      // and its first key would write over it.
      for (const kind of KINDS) if (app.view?.new !== kind) settleCreatedDrafts(kind);
    }
  });
  app.client.subscribe(onChanges);
  chrome();
  route();
  if (refused) fill($("#notice"), refused());
}

start();
