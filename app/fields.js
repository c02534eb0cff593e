// Editors for a record's fields, built from the schema the client exports
// (`schema()`), so a field added to a kind's table appears in every form.
// Each editor writes through `ctx.edit(edits)` as soon as the person
// changes it; text fields splice character by character, so two people
// writing the same minutes offline both keep every word.

import { LANGS, t, formatDate, formatNumber, listOf } from "./i18n.js";
import { diff, spans, splice, rebaseOnto, shown, toStored, follow } from "./text.js";

/** What kind of record a reference field points to. */
export const REF_KIND = {
  seat: "city", city: "city", owner_city: "city", party: "city", parties: "city",
  representative: "person", chair: "person", author: "person", presenter: "person",
  owner: "person", person: "person", attendees: "person", agreement: "agreement",
  // A report's links name records of any kind.
  links: "*",
};

/** The kinds a record of any kind (`"*"`) is chosen among, in this order. */
const ANY_KINDS = ["city", "agreement", "project", "meeting", "person", "report"];

/** `h("tag", {attr: value, onclick: f}, ...children)`: a DOM element. */
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "class") node.className = v;
    else if (k in node && typeof v !== "string") node[k] = v;
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

/** Replaces `node`'s children, skipping absent ones. */
export function fill(node, ...children) {
  node.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
}

// The letters of the Arabic script's blocks and presentation forms.
const ARABIC_LETTER = /[\u0600-\u06ff\u0750-\u077f\u08a0-\u08ff\ufb50-\ufdff\ufe70-\ufeff]/;

/**
 * "ar" when `text`'s first letter is Arabic, else null: a value's language
 * where the record does not say it (minutes, notes, names), so that a
 * screen reader reads Arabic minutes with an Arabic voice on a French
 * screen, and a browser checks their spelling as Arabic. Latin letters do
 * not say whether French or English: they keep the screen's language.
 */
export function scriptLang(text) {
  const first = /\p{L}/u.exec(String(text ?? ""));
  return first && ARABIC_LETTER.test(first[0]) ? "ar" : null;
}

/** `{ lang: "ar" }` for Arabic words, else nothing, to spread into attributes. */
const langOf = (text) => (typeof text === "string" && scriptLang(text) ? { lang: "ar" } : {});

/**
 * Keeps a text box's `lang` on its first letter's script ([`scriptLang`]),
 * as the person types and whenever its value is set (another device's
 * edit, "keep theirs", a draft put back): Arabic in a French form is
 * checked and read as Arabic. Marked `data-follows-lang`, as its `lang`
 * names no variant of a multilingual value.
 */
export function followLang(field) {
  const follow = () => {
    const lang = scriptLang(field.value);
    if (lang) field.setAttribute("lang", lang);
    else field.removeAttribute("lang");
  };
  const value = Object.getOwnPropertyDescriptor(Object.getPrototypeOf(field), "value");
  if (value?.set) {
    Object.defineProperty(field, "value", {
      configurable: true,
      get() { return value.get.call(this); },
      set(v) { value.set.call(this, v); follow(); },
    });
  }
  field.dataset.followsLang = "";
  follow();
  field.addEventListener("input", follow);
  return field;
}

/** A user's words, isolated so Arabic and Latin runs keep their order. */
export const words = (text) => h("bdi", langOf(text), text ?? "");

/**
 * A value shown as a block of its own. Each paragraph takes the direction
 * of its first letter (`unicode-bidi: plaintext` in style.css) and sits on
 * that side: Arabic minutes flush right, a French paragraph in them flush
 * left. An isolate around the whole, as `words` makes, would hide those
 * letters, and every paragraph would run left to right on the left.
 */
export const valueBlock = (...children) => h("div", {
  class: "value",
  ...(children.length === 1 ? langOf(children[0]) : {}),
}, ...children);

/**
 * `text` cut to its first `n` characters as a person counts them, with "…"
 * if it went on: an emoji of several code points, a flag, a letter with its
 * marks are one character each, never split into loose pieces.
 */
export function cut(text, n) {
  const chars = typeof Intl.Segmenter === "function"
    ? Array.from(new Intl.Segmenter(undefined, { granularity: "grapheme" }).segment(text), (s) => s.segment)
    : Array.from(text);
  return chars.length > n ? `${chars.slice(0, n - 1).join("").trimEnd()}…` : text;
}

/**
 * `text` between first-strong isolates (U+2068, U+2069), for one value set
 * in a line of others: in an Arabic line, the parentheses of a French
 * title ending in a number would otherwise take the line's direction and
 * show at the wrong ends of "Réunion (2)". Not in a list to choose from:
 * typing a name's first letters selects its option only if the label
 * starts with them, so options take their own direction (`dir="auto"`).
 */
export const isolate = (text) => `\u2068${text}\u2069`;

/** A multilingual value in the reader's language, else any language. */
export function pick(value, lang) {
  if (value == null) return "";
  if (typeof value === "string") return value;
  return value[lang] || value.ar || value.fr || value.en || "";
}

/** The language [`pick`] takes a multilingual `value` in; none for plain text. */
export function pickedLang(value, lang) {
  if (value == null || typeof value !== "object") return undefined;
  return [lang, "ar", "fr", "en"].find((l) => value[l]);
}

/**
 * A multilingual value's words as `pick` chooses them (`fallback` if it has
 * none), isolated and marked with their language: a screen reader reads an
 * Arabic title in an Arabic voice in the French app, and the reverse.
 */
export const wordsOf = (value, lang, fallback = "") => {
  const text = pick(value, lang);
  return h("bdi", { lang: text ? pickedLang(value, lang) : undefined }, text || fallback);
};

/**
 * A linked record's title in the reader's language; one not on this phone
 * yet says so, with the start of its id to tell two such apart.
 */
export function titleOf(ctx, url) {
  const s = ctx.byUrl.get(url);
  if (s) return pick(s.title, ctx.lang) || s.id;
  if (!String(url).startsWith("automerge:")) return url;
  // The id's start and its "…" kept together, in their own direction: in
  // an Arabic line the "…" would otherwise lead, and the id look cut.
  return `${t(ctx.lang, "notOnPhone")} (${isolate(`${url.slice("automerge:".length, "automerge:".length + 6)}…`)})`;
}

function options(ctx, kind) {
  return ctx.summaries
    .filter((s) => (kind === "*" ? ANY_KINDS.includes(s.kind) : s.kind === kind))
    .map((s) => ({ value: s.url, label: pick(s.title, ctx.lang) || s.id, kind: s.kind }))
    .sort((a, b) => ANY_KINDS.indexOf(a.kind) - ANY_KINDS.indexOf(b.kind) || a.label.localeCompare(b.label, ctx.lang));
}

/**
 * The schema field a record path names, and the language when the path
 * ends inside a multilingual field: `/milestones/<item>/status` is the
 * milestone's `status`, `/title/fr` is `title` in French.
 */
export function fieldAt(schema, kind, path) {
  let fields = schema[kind] ?? [];
  let field = null;
  const parts = path.split("/").filter(Boolean);
  for (let i = 0; i < parts.length; i++) {
    field = fields.find((f) => f.name === parts[i]);
    if (!field) return { field: { name: parts.at(-1), type: "str" }, lang: null };
    if (field.type === "multilingual" && i + 1 < parts.length) return { field, lang: parts[i + 1] };
    if (field.type === "list" || field.type === "map") {
      fields = field.fields;
      i++; // the item's key
    }
  }
  return { field, lang: null };
}

/**
 * A multilingual value read only: in the reader's language, and beside it
 * each other language it is written in, marked with its language. A name
 * whose transliteration is uncertain ("Orel (?)") keeps its Arabic form in
 * sight.
 */
function multilingualShown(ctx, value) {
  const main = pick(value, ctx.lang);
  const others = value && typeof value === "object"
    ? LANGS.filter((l) => value[l] && value[l] !== main)
    : [];
  const block = valueBlock(main || t(ctx.lang, "none"),
    others.length ? h("span", { class: "also" }, others.flatMap((l) => [" · ", h("bdi", { lang: l, dir: l === "ar" ? "rtl" : "ltr" }, value[l])])) : null);
  const used = main && pickedLang(value, ctx.lang);
  if (used) block.lang = used;
  return block;
}

/** A field's value as read-only text. */
export function show(ctx, field, value) {
  const lang = ctx.lang;
  if (value === null || value === undefined || value === "") return t(lang, "none");
  switch (field.type) {
    case "multilingual": return pick(value, lang);
    case "date": return formatDate(lang, value);
    case "enum": return t(lang, `value.${value}`);
    case "bool": return t(lang, value ? "yes" : "no");
    case "int": return formatNumber(lang, value);
    case "ref": return titleOf(ctx, value);
    case "set": return value.length
      ? listOf(lang, value.map((m) => isolate(field.values ? t(lang, `value.${m}`) : REF_KIND[field.name] ? titleOf(ctx, m) : m)))
      : t(lang, "none");
    case "list": return formatNumber(lang, value.length);
    case "map": return formatNumber(lang, Object.keys(value).length);
    default: return String(value);
  }
}

/**
 * A list item as one line of read-only text: each field it has, by its
 * label and value, its id left out (`Title: Pump · Status: Pending`). On
 * screen each value is isolated from the labels around it; `plain` is for
 * a file: no isolates, dates in ISO and numbers in ASCII digits as a
 * spreadsheet sorts them, and one line indeed (a value's own line breaks
 * become " / ", as a file's cell puts one item on each line).
 */
export function showItem(ctx, fields, item, { plain = false } = {}) {
  if (item === null || typeof item !== "object") return show(ctx, { type: "str" }, item);
  // A linked record not on this device, by its whole address, to look up.
  const linked = (url) => (ctx.byUrl.has(String(url)) ? titleOf(ctx, url) : String(url));
  const filed = (f) => (["date", "int"].includes(f.type) ? String(item[f.name])
    : f.type === "ref" ? linked(item[f.name]) : show(ctx, f, item[f.name]));
  const value = (f) => (plain
    ? filed(f).replace(/[\u2068\u2069]/g, "").replace(/\s*(\r\n|\r|\n)\s*/g, " / ")
    : isolate(show(ctx, f, item[f.name])));
  return fields
    .filter((f) => f.name !== "id" && !["", null, undefined].includes(item[f.name]))
    .map((f) => `${t(ctx.lang, `field.${f.name}`)}${t(ctx.lang, "labelSeparator")}${value(f)}`)
    .join(" · ") || t(ctx.lang, "none");
}

/**
 * The rows of `fields` for `value` (a record or a list item) under `prefix`.
 * `ctx`: { lang, summaries, byUrl, writable, edit(edits), editors: Map(path → update) }.
 */
export function fieldRows(ctx, fields, value, prefix = "") {
  const rows = [];
  for (const field of fields) {
    // An item's id and its removal mark (schema 2) are bookkeeping.
    if (field.name === "id" || field.name === "removed") continue;
    const path = `${prefix}/${field.name}`;
    const v = value?.[field.name];
    // On paper, a field with nothing in it is left out.
    if (ctx.omitBlank && blank(v)) continue;
    const id = `f${++serial}`;
    const label = h("span", { class: "label", id }, t(ctx.lang, `field.${field.name}`), field.required ? h("abbr", { title: t(ctx.lang, "required") }, " *") : null);
    let body;
    if (ctx.writable) body = editor(ctx, field, v, path);
    else if (field.type === "list") body = h("ol", { class: "items" }, (v ?? []).map((item) => h("li", { "data-item": item.id }, disputed(ctx, `${path}/${item.id}`), fieldRows(ctx, field.fields, item, `${path}/${item.id}`))));
    else if (REF_KIND[field.name] === "*") body = linksShown(ctx, v);
    else if (field.type === "multilingual") body = multilingualShown(ctx, v);
    else body = valueBlock(show(ctx, field, v));
    // Every control of the row is named by its caption, for screen readers.
    const controls = body.matches?.("input, select, textarea") ? [body] : [...body.querySelectorAll(":scope > input, :scope > select, :scope > textarea")];
    for (const c of controls) if (!c.hasAttribute("aria-label")) c.setAttribute("aria-labelledby", id);
    rows.push(h("div", { class: `field ${field.type}`, "data-path": path, role: controls.length ? null : "group", "aria-labelledby": controls.length ? null : id }, label, body));
  }
  return rows;
}
let serial = 0;

/** A value with nothing in it: none, empty, or a map of empty values (`false` and 0 are values). */
export const blank = (v) => v === null || v === undefined || v === ""
  || (Array.isArray(v) ? v.length === 0 : typeof v === "object" && Object.values(v).every(blank));

function editor(ctx, field, value, path) {
  const lang = ctx.lang;
  const set = (v) => ctx.edit([{ op: "set", path, value: v }]);
  const plain = (input, read) => remoteAware(input, path, ctx, () => set(read()));
  switch (field.type) {
    case "str": {
      const input = followLang(h("input", { type: "text", dir: "auto", value: value ?? "" }));
      return plain(input, () => (input.value === "" && !field.required ? null : input.value));
    }
    case "date": {
      const input = h("input", { type: "date", value: value ?? "" });
      // A required date emptied is not written: it shows the record's
      // date again (the latest, whoever set it), not the one first drawn.
      let stored = value ?? "";
      const control = remoteAware(input, path, ctx, () => {
        if (input.value || !field.required) {
          stored = input.value;
          set(input.value || null);
        } else input.value = stored;
      });
      const update = ctx.editors.get(path);
      ctx.editors.set(path, (v) => { stored = v ?? ""; update(v); });
      return control;
    }
    case "int": {
      const input = h("input", { type: "number", min: field.min, max: field.max, value: value ?? "" });
      return plain(input, () => (input.value === "" ? null : Number(input.value)));
    }
    case "enum": {
      const select = h("select", {},
        field.required ? null : h("option", { value: "" }, t(lang, "none")),
        field.values.map((v) => h("option", { value: v, selected: v === value }, t(lang, `value.${v}`))));
      select.value = value ?? "";
      return plain(select, () => select.value || null);
    }
    case "ref": {
      const kind = REF_KIND[field.name];
      const select = h("select", {},
        field.required ? null : h("option", { value: "" }, t(lang, "none")),
        options(ctx, kind).map((o) => h("option", { value: o.value, dir: "auto" }, o.label)));
      if (value && !ctx.byUrl.has(value)) select.append(h("option", { value, dir: "auto" }, titleOf(ctx, value)));
      select.value = value ?? "";
      return plain(select, () => select.value || null);
    }
    case "bool": {
      const box = h("input", { type: "checkbox", checked: Boolean(value) });
      box.addEventListener("change", () => set(box.checked));
      ctx.editors.set(path, (v) => { box.checked = Boolean(v); });
      return box;
    }
    case "multilingual": {
      const group = h("div", { class: "langs" });
      for (const l of LANGS) {
        const input = h("input", { type: "text", lang: l, dir: l === "ar" ? "rtl" : "ltr", value: value?.[l] ?? "", "aria-label": `${t(lang, `field.${field.name}`)} (${LANGUAGE_NAMES[l]})`, placeholder: LANGUAGE_NAMES[l] });
        group.append(remoteAware(input, `${path}/${l}`, ctx, () => ctx.edit([{ op: "set", path: `${path}/${l}`, value: input.value || null }])));
      }
      ctx.editors.set(path, (v) => { for (const l of LANGS) ctx.editors.get(`${path}/${l}`)(v?.[l]); });
      return group;
    }
    case "text": return textArea(ctx, path, value);
    case "set": return setEditor(ctx, field, value ?? [], path);
    case "list": return listEditor(ctx, field, value ?? [], path);
    default:
      return valueBlock(show(ctx, field, value));
  }
}

/**
 * Today (or the moment `d`) on this phone's calendar, `YYYY-MM-DD`: a
 * delegate in Oakland who marks a milestone done in the evening did it
 * today, not on UTC's morrow.
 */
export function today(d = new Date()) {
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
}

export const LANGUAGE_NAMES = { ar: "العربية", fr: "Français", en: "English" };

/** The focused one-line control's pending write, by control. */
const unsent = new WeakMap();

/**
 * Writes what is typed in the focused one-line control, if anything. A
 * phone may freeze or kill a hidden page without the control losing
 * focus, so without this the text would never be written.
 */
export function writeFocused() {
  return unsent.get(document.activeElement)?.() ?? false;
}

/**
 * A one-line control that writes on `change`. A value arriving from others
 * while the person is in the control waits until they leave it without
 * changing it, so it never overwrites what they are typing.
 */
function remoteAware(input, path, ctx, write) {
  let waiting;
  let typed = false;
  // The value the document last gave this control: a redraw of a whole
  // multilingual field hands every language its value again, changed or not.
  let known = input.value;
  input.addEventListener("input", () => { typed = true; });
  input.addEventListener("change", () => {
    const theirs = waiting;
    typed = false;
    waiting = undefined;
    known = input.value;
    write();
    // What another device wrote meanwhile is not lost without a word: it
    // is shown beside the field, one tap from being kept instead.
    if (theirs !== undefined && String(theirs ?? "") !== input.value) offerTheirs(input, theirs, ctx, write);
  });
  unsent.set(input, () => typed && input.dispatchEvent(new Event("change")));
  input.addEventListener("blur", () => {
    if (waiting !== undefined) input.value = waiting ?? "";
    waiting = undefined;
  });
  ctx.editors.set(path, (v) => {
    const now = String(v ?? "");
    if (document.activeElement !== input) input.value = now;
    else if (now !== known) waiting = v ?? null;
    known = now;
  });
  return input;
}

/**
 * Says beside `input` that another device had set it to `theirs` while the
 * person typed over it, with a button that puts their value back.
 */
function offerTheirs(input, theirs, ctx, write) {
  // A multilingual value's boxes are told apart by their language; one
  // that follows its text's script has one language-free note.
  const variant = "followsLang" in input.dataset ? "" : input.lang || "";
  input.parentElement?.querySelector(`.meanwhile[data-for="${CSS.escape(variant)}"]`)?.remove();
  const label = input.matches("select")
    ? [...input.options].find((o) => o.value === String(theirs ?? ""))?.textContent ?? String(theirs ?? "")
    : String(theirs ?? "");
  const note = h("p", { class: "note meanwhile", role: "status", "data-for": variant },
    t(ctx.lang, "changedMeanwhile"), " ", words(label || "—"), " ",
    h("button", { type: "button", onclick: () => {
      // A choice this phone does not list (a record not here yet) is
      // added, as the editor adds it, rather than read back as none.
      if (input.matches("select") && ![...input.options].some((o) => o.value === String(theirs ?? ""))) {
        input.append(h("option", { value: String(theirs ?? "") }, label));
      }
      input.value = String(theirs ?? "");
      write();
      note.remove();
    } }, t(ctx.lang, "keepTheirs")));
  input.after(note);
}

/** Texts of a line or two: a meeting's guests, and every text of a list item (a decision, a commitment). */
const SHORT_TEXTS = new Set(["guests"]);
const rowsFor = (path) => (path.split("/").length > 2 || SHORT_TEXTS.has(path.split("/").pop()) ? 3 : 8);

/**
 * Long text, merged character by character: every keystroke becomes a splice
 * at UTF-16 offsets, and text arriving from others is spliced in around the
 * caret instead of replacing what the person is typing.
 */
function textArea(ctx, path, value) {
  const area = h("textarea", { dir: "auto", rows: rowsFor(path) });
  area.value = value ?? "";
  followLang(area);
  // The text as this screen last saw it in the document, as shown: a
  // textarea reads every line break back as "\n", whatever the document
  // holds (`toStored` maps the screen's splices back).
  let last = area.value;
  let composing = false;
  let arrived;
  // Shows `text` instead, the caret and selection kept in the text around
  // them (`follow`).
  const redraw = (text) => {
    const [s, e] = follow(area.value, text, area.selectionStart, area.selectionEnd);
    area.value = text;
    if (document.activeElement === area) area.setSelectionRange(s, e);
  };
  const send = async () => {
    // Read with the text: the caret says where a key was typed next to
    // copies of what it typed.
    let local = diff(last, area.value, area.selectionEnd);
    if (!local) return;
    // The document keeps each insert in NFC, as the splice stores it, and
    // never renormalises the rest: others' text stays as they wrote it.
    // The screen does the same, or every later offset would be off.
    const nfc = local.insert.normalize("NFC");
    if (nfc !== local.insert) {
      local = { ...local, insert: nfc };
      redraw(splice(last, local));
    }
    let edits = [local];
    // Text from others may be merged on the device but not yet announced:
    // place this keystroke relative to the document as it is now, through
    // each place they wrote (`rebaseOnto`).
    const stored = ctx.text(path);
    if (stored === undefined) {
      // The record cannot be read here any more (another device's change
      // merged, not yet announced): this keystroke has nothing to count
      // from. The screen is redrawn when that change is announced.
      area.value = last;
      return;
    }
    const base = shown(stored);
    if (base !== last) {
      edits = rebaseOnto(local, spans(last, base));
      redraw(edits.reduce(splice, base));
    }
    last = area.value;
    if (!edits.length) return;
    // Each splice in the document's own offsets, in turn.
    let doc = stored;
    const splices = edits.map((e) => {
      const s = toStored(doc, e);
      doc = splice(doc, s);
      return { op: "splice_text", path, ...s };
    });
    if (!(await ctx.edit(splices))) {
      // A word being composed meanwhile is left alone: the document is
      // shown once it is done (`arrived`).
      if (composing) { arrived = null; return; }
      // A tab that can write no more (a newer version of the app took the
      // storage over) keeps what was typed on screen, to be copied before
      // the reload the app asks for, and takes no more.
      if (ctx.superseded?.()) { area.readOnly = true; return; }
      // Not saved: show what the document holds, so nothing unsaved looks saved.
      const now = shown(ctx.text(path) ?? "");
      redraw(now);
      last = now;
    }
  };
  const receive = (stored) => {
    const remote = shown(stored ?? "");
    if (remote === area.value) { last = remote; return; }
    redraw(remote);
    last = remote;
  };
  area.addEventListener("compositionstart", () => { composing = true; });
  area.addEventListener("compositionend", () => {
    composing = false;
    send().then(() => {
      // The next word may be under way already: what came meanwhile waits
      // for that one too.
      if (composing) return;
      if (arrived !== undefined) receive(ctx.text(path));
      arrived = undefined;
    });
  });
  area.addEventListener("input", (e) => { if (!e.isComposing && !composing) send(); });
  // A page hidden mid-word may never come back: the word as it stands is
  // written (`writeFocused`).
  unsent.set(area, () => {
    if (!composing) return false;
    send();
    return true;
  });
  // A word being composed is not in the document yet: text from others
  // waits until it is.
  ctx.editors.set(path, (remote) => { if (composing) arrived = remote; else receive(remote); });
  return area;
}

function setEditor(ctx, field, members, path) {
  const lang = ctx.lang;
  const toggle = (member, on) => ctx.edit([{ op: on ? "add_member" : "remove_member", path, member }]);
  const kind = REF_KIND[field.name];
  if (kind === "*") return linksEditor(ctx, members, path);
  if (field.values || kind) {
    const choices = field.values
      ? field.values.map((v) => ({ value: v, label: t(lang, `value.${v}`) }))
      : options(ctx, kind);
    for (const m of members) if (!choices.some((c) => c.value === m)) choices.push({ value: m, label: field.values ? m : titleOf(ctx, m) });
    return h("div", { class: "choices" }, choices.map((c) => {
      const box = h("input", { type: "checkbox", value: c.value, checked: members.includes(c.value), onchange: () => toggle(c.value, box.checked) });
      return h("label", {}, box, " ", words(c.label));
    }));
  }
  // Named by its field, as a row's other controls are, and where the
  // focus comes back once a member added or removed redraws the record.
  const input = h("input", { type: "text", dir: "auto", "aria-label": `${t(lang, "add")}${t(lang, "labelSeparator")}${t(lang, `field.${field.name}`)}` });
  const change = (member, on) => ctx.edit([{ op: on ? "add_member" : "remove_member", path, member }],
    { rerender: true, focus: `[data-path="${path}"] .chips > input` });
  const add = () => { const m = input.value.trim(); if (m) { input.value = ""; change(m, true); } };
  input.addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); add(); } });
  return h("div", { class: "chips" },
    members.map((m) => h("span", { class: "chip" }, words(m), h("button", { type: "button", "aria-label": `${t(lang, "remove")} ${m}`, onclick: () => change(m, false) }, "×"))),
    input,
    h("button", { type: "button", onclick: add }, t(lang, "add")));
}

/**
 * One link of a report: a record's address opens it, by its title (or,
 * before it reaches this phone, says so); anything else, such as text an
 * older client wrote, is shown as written.
 */
function linkTo(ctx, member) {
  if (!member.startsWith("automerge:")) return words(member);
  return h("a", { href: `#/r/${member.slice("automerge:".length)}` }, words(titleOf(ctx, member)));
}

/** A report's links, read-only: each opens its record. */
function linksShown(ctx, members) {
  if (!members?.length) return h("div", { class: "value" }, t(ctx.lang, "none"));
  return h("div", { class: "chips links" }, members.map((m) => h("span", { class: "chip" }, linkTo(ctx, m))));
}

/**
 * Links to records of any kind: each shown by its title, opening it, with
 * a button to remove it; a list of records, by kind, and a button to add
 * the one chosen (a list that wrote as soon as it changed would write the
 * first record a keyboard's arrow key passes).
 */
function linksEditor(ctx, members, path) {
  const lang = ctx.lang;
  const change = (member, on) => ctx.edit([{ op: on ? "add_member" : "remove_member", path, member }], { rerender: true, focus: `[data-path="${path}"] select` });
  const here = ctx.id ? `automerge:${ctx.id}` : null;
  const choices = options(ctx, "*").filter((o) => !members.includes(o.value) && o.value !== here);
  const choose = h("select", { "aria-label": t(lang, "addLink") },
    h("option", { value: "" }, t(lang, "addLink")),
    ANY_KINDS.map((k) => {
      const of = choices.filter((o) => o.kind === k);
      return of.length ? h("optgroup", { label: t(lang, `kinds.${k}`) }, of.map((o) => h("option", { value: o.value, dir: "auto" }, o.label))) : null;
    }));
  const add = h("button", { type: "button", class: "add-link", onclick: () => {
    const chosen = choose.value;
    choose.value = "";
    if (chosen) change(chosen, true);
  } }, t(lang, "add"));
  return h("div", { class: "chips links" },
    members.map((m) => h("span", { class: "chip" },
      linkTo(ctx, m),
      h("button", { type: "button", "aria-label": `${t(lang, "remove")} ${titleOf(ctx, m)}`, onclick: () => change(m, false) }, "×"))),
    choose, add);
}

/** Runs `action` once at a time from `button`: a double tap does it once. */
export async function once(button, action) {
  if (button.disabled) return;
  button.disabled = true;
  try { await action(); } finally { button.disabled = false; }
}

/** A note on an item removed on one phone while another wrote in it. */
function disputed(ctx, at) {
  return ctx.disputed?.has(at) ? h("p", { class: "note disputed" }, t(ctx.lang, "removalDisputed")) : null;
}

/** A value for each required field of a new list item. */
function blankItem(ctx, fields) {
  const item = {};
  for (const f of fields) {
    if (!f.required || f.name === "id") continue;
    if (f.type === "enum") item[f.name] = f.values[0];
    else if (f.type === "ref") item[f.name] = options(ctx, REF_KIND[f.name])[0]?.value ?? null;
    else if (f.type === "date") item[f.name] = today();
    else if (f.type === "bool") item[f.name] = false;
    else item[f.name] = "";
  }
  return item;
}

function listEditor(ctx, field, items, path) {
  const lang = ctx.lang;
  const list = h("ol", { class: "items" });
  for (const item of items) {
    const at = `${path}/${item.id}`;
    const actions = h("div", { class: "actions" });
    // The item's own words name its buttons, for a screen reader going
    // through a list of "Mark done" and "Remove".
    const named = pick(item.title, lang) || pick(item.name, lang) || cut(String(item.text ?? item.note ?? ""), 60) || `${list.children.length + 1}`;
    if (field.name === "milestones" && item.status !== "done") {
      actions.append(h("button", {
        type: "button", class: "done", "aria-label": `${t(lang, "markDone")}${t(lang, "labelSeparator")}${named}`,
        onclick: (e) => once(e.currentTarget, () => ctx.edit([
          { op: "set", path: `${at}/status`, value: "done" },
          { op: "set", path: `${at}/done_on`, value: today() },
        ], { rerender: true, focus: `li[data-item="${CSS.escape(item.id)}"] button.remove` })),
      }, t(lang, "markDone")));
    }
    // Removing takes the item's words with it, one tap from "Mark done":
    // it asks first, naming the item.
    actions.append(h("button", {
      type: "button", class: "remove", "aria-label": `${t(lang, "remove")}${t(lang, "labelSeparator")}${named}`,
      onclick: (e) => {
        if (!confirm(t(lang, "removeConfirm", { item: `\u2068${named}\u2069` }))) return;
        once(e.currentTarget, () => ctx.edit([{ op: "remove_item", path: at }], { rerender: true, focus: `[data-path="${CSS.escape(path)}"] button.add` }));
      },
    }, t(lang, "remove")));
    list.append(h("li", { "data-item": item.id }, disputed(ctx, at), fieldRows(ctx, field.fields, item, at), actions));
  }
  const add = h("button", {
    type: "button", class: "add",
    // The redrawn screen keeps the person where they were: on the new
    // item's first field, as on the item or list they acted on above.
    onclick: (e) => once(e.currentTarget, () => ctx.edit([{ op: "insert_item", path, after: "$end", item: blankItem(ctx, field.fields) }], { rerender: true, focus: `[data-path="${CSS.escape(path)}"] ol.items > li:last-child :is(input, select, textarea)` })),
  }, t(lang, "addItem"));
  return h("div", {}, list, add);
}

/** The initial fields of a new record, from a creation form. */
export function creationRows(ctx, fields) {
  const rows = [];
  const read = [];
  // Records arriving while the form is open join its choices; nothing typed is touched.
  const refresh = [];
  // Each field's state as typed, by name, for a draft kept on the phone.
  const kept = new Map();
  for (const field of fields) {
    // Lists are added to once the record exists; minutes are adopted once
    // they are written, which locks them for delegates.
    if (["list", "map"].includes(field.type) || field.name === "adopted") continue;
    const name = field.name;
    const label = h("span", { class: "label" }, t(ctx.lang, `field.${name}`), field.required ? h("abbr", { title: t(ctx.lang, "required") }, " *") : null);
    let input;
    if (field.type === "multilingual") {
      const inputs = LANGS.map((l) => h("input", { type: "text", name: `${name}.${l}`, lang: l, dir: l === "ar" ? "rtl" : "ltr", placeholder: LANGUAGE_NAMES[l], "aria-label": `${t(ctx.lang, `field.${name}`)} (${LANGUAGE_NAMES[l]})` }));
      input = h("div", { class: "langs" }, inputs);
      read.push((out) => {
        const v = Object.fromEntries(inputs.map((i, k) => [LANGS[k], i.value.trim()]).filter(([, s]) => s));
        if (Object.keys(v).length) out[name] = v;
      });
      // Required in at least one language: the browser says so on Create,
      // at the field, before the client is asked.
      const check = () => inputs[0].setCustomValidity(
        !field.required || inputs.some((i) => i.value.trim()) ? "" : t(ctx.lang, "needOneLanguage"));
      for (const i of inputs) i.addEventListener("input", check);
      check();
      kept.set(name, {
        get: () => Object.fromEntries(inputs.map((i, k) => [LANGS[k], i.value])),
        set: (v) => { inputs.forEach((i, k) => { i.value = v?.[LANGS[k]] ?? ""; }); check(); },
      });
    } else if (field.type === "text") {
      input = followLang(h("textarea", { name, dir: "auto", rows: SHORT_TEXTS.has(name) ? 3 : 5 }));
      read.push((out) => { if (input.value) out[name] = input.value; });
      kept.set(name, { get: () => input.value, set: (v) => { input.value = v ?? ""; } });
    } else if (field.type === "enum" || field.type === "ref") {
      const choices = field.type === "enum"
        ? field.values.map((v) => ({ value: v, label: t(ctx.lang, `value.${v}`) }))
        : options(ctx, REF_KIND[name]);
      // Required where there is something to choose: a draft's record not
      // on the phone yet (`wanted`) is chosen without an option.
      const select = h("select", { name, required: field.required && choices.length > 0 }, field.required ? null : h("option", { value: "" }, t(ctx.lang, "none")),
        choices.map((c) => h("option", { value: c.value, dir: "auto" }, c.label)));
      input = select;
      // A record chosen that is not on the phone yet is chosen once it
      // arrives, and is what the form gives meanwhile.
      let wanted;
      read.push((out) => { const v = wanted ?? select.value; if (v) out[name] = v; });
      const offered = (v) => [...select.options].some((o) => o.value === v);
      select.addEventListener("change", () => { wanted = undefined; });
      kept.set(name, {
        get: () => wanted ?? select.value,
        set: (v) => { wanted = undefined; if (offered(v)) select.value = v; else if (typeof v === "string" && v) wanted = v; },
      });
      if (field.type === "ref") {
        refresh.push(() => {
          const known = new Set([...select.options].map((o) => o.value));
          for (const c of options(ctx, REF_KIND[name])) if (!known.has(c.value)) select.append(h("option", { value: c.value, dir: "auto" }, c.label));
          if (wanted !== undefined && offered(wanted)) { select.value = wanted; wanted = undefined; }
        });
      }
    } else if (field.type === "set") {
      const choices = field.values
        ? field.values.map((v) => ({ value: v, label: t(ctx.lang, `value.${v}`) }))
        : REF_KIND[name] && REF_KIND[name] !== "*" ? options(ctx, REF_KIND[name]) : null;
      // Links to any record are added once the record exists.
      if (!choices) continue;
      const boxes = choices.map((c) => h("input", { type: "checkbox", name, value: c.value }));
      const group = h("div", { class: "choices" }, boxes.map((b, k) => h("label", {}, b, " ", words(choices[k].label))));
      input = group;
      // Records chosen that are not on the phone yet are checked once they
      // arrive, and are what the form gives meanwhile.
      let wanted = [];
      const chosen = () => [...boxes.filter((b) => b.checked).map((b) => b.value), ...wanted];
      read.push((out) => { const m = chosen(); if (m.length) out[name] = m; });
      kept.set(name, {
        get: chosen,
        set: (v) => {
          const given = Array.isArray(v) ? v.filter((x) => typeof x === "string") : [];
          for (const b of boxes) b.checked = given.includes(b.value);
          wanted = given.filter((x) => !boxes.some((b) => b.value === x));
        },
      });
      if (!field.values) {
        refresh.push(() => {
          for (const c of options(ctx, REF_KIND[name])) {
            if (boxes.some((b) => b.value === c.value)) continue;
            const box = h("input", { type: "checkbox", name, value: c.value, checked: wanted.includes(c.value) });
            wanted = wanted.filter((x) => x !== c.value);
            boxes.push(box);
            group.append(h("label", {}, box, " ", words(c.label)));
          }
        });
      }
    } else if (field.type === "bool") {
      input = h("input", { type: "checkbox", name });
      read.push((out) => { out[name] = input.checked; });
      kept.set(name, { get: () => input.checked, set: (v) => { input.checked = v === true; } });
    } else {
      const type = field.type === "date" ? "date" : field.type === "int" ? "number" : "text";
      input = type === "text"
        ? followLang(h("input", { type, name, dir: "auto", required: field.required }))
        : h("input", { type, name, dir: "auto", required: field.required });
      if (field.type === "date" && field.required) input.value = today();
      read.push((out) => { if (input.value !== "") out[name] = type === "number" ? Number(input.value) : input.value; });
      kept.set(name, { get: () => input.value, set: (v) => { input.value = typeof v === "string" ? v : ""; } });
    }
    const single = input.matches("input, select, textarea");
    rows.push(single
      ? h("label", { class: `field ${field.type}` }, label, input)
      : h("div", { class: `field ${field.type}`, role: "group", "aria-label": t(ctx.lang, `field.${name}`) }, label, input));
  }
  return {
    rows,
    read: () => { const out = {}; for (const r of read) r(out); return out; },
    refresh: (summaries) => { ctx.summaries = summaries; for (const r of refresh) r(); },
    /** What is typed, as plain data to keep. */
    draft: () => Object.fromEntries([...kept].map(([name, k]) => [name, k.get()])),
    /** Puts back what `draft` gave; fields it does not name are left as they are. */
    restore: (draft) => {
      for (const [name, k] of kept) if (draft && Object.hasOwn(draft, name)) k.set(draft[name]);
    },
  };
}
