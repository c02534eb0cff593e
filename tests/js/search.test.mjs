// Unit tests for the field app's search folding and interface strings.
// Run from the repository root: node --test tests/js/search.test.mjs
import { test } from "node:test";
import assert from "node:assert/strict";
import { fold, matches } from "../../app/search.js";
import { LANGS, STRINGS, PLURAL_CATEGORIES, t, plural, formatDate, formatDateTime, formatNumber, locale } from "../../app/i18n.js";

test("Arabic harakat are ignored", () => {
  assert.equal(fold("مُحَمَّد"), "محمد");
  assert.ok(matches("مُحَمَّد الأمين", "محمد"));
  assert.ok(matches("محمد الأمين", "مُحَمَّد"));
  assert.ok(matches("اتفاقيةٌ", "اتفاقية"));
  assert.ok(matches("رَحْمٰن", "رحمن"), "superscript alef");
});

test("tatweel is ignored", () => {
  assert.ok(matches("اتـــفاقية التوأمة", "اتفاقية"));
  assert.ok(matches("اتفاقية التوأمة", "اتـــفاقية"));
});

test("alef and hamza variants are unified", () => {
  assert.ok(matches("مدينة أكادير", "اكادير"));
  assert.ok(matches("إفريقيا", "افريقيا"));
  assert.ok(matches("آسيا", "اسيا"));
  assert.ok(matches("ٱلسمارة", "السمارة"));
  assert.ok(matches("اكادير", "أكادير"), "the other way round");
  assert.equal(fold("أإآٱ"), "اااا");
  assert.equal(fold("مؤتمر"), "موتمر");
  assert.equal(fold("رئيس"), "رييس");
  assert.ok(matches("رئيس المجلس", "رييس"));
  assert.ok(matches("مسؤول", "مسوول"));
});

test("a hamza matches whichever seat it is written on", () => {
  assert.ok(matches("مسؤول المشروع", "مسئول"));
  assert.ok(matches("مسئول المشروع", "مسؤول"));
  assert.ok(matches("الشؤون الخارجية", "الشئون"));
  assert.ok(matches("الشئون الخارجية", "شؤون الخارجيه"));
  // Typed without a hamza, or with the plain letter, still found.
  assert.ok(matches("مسئول", "مسيول"));
  assert.ok(matches("مسؤول", "مسوول"));
  // A word that differs otherwise is not found.
  assert.ok(!matches("مسؤول", "مسئولة"));
  assert.ok(!matches("شؤون", "شيون الخارجية"));
});

test("a hamza on an alef is a seat too, and a seat pasted decomposed is the same seat", () => {
  assert.ok(matches("هيأة المحامين", "هيئة"));
  assert.ok(matches("هيئة المحامين", "هيأة"));
  // Yeh or waw followed by a combining hamza above, as some PDFs give it.
  assert.ok(matches("\u0645\u0633\u0648\u0654\u0648\u0644", "مسئول"));
  assert.ok(matches("مسئول", "\u0645\u0633\u064a\u0654\u0648\u0644"));
  assert.ok(!matches("هيأة", "هيئات"));
});

test("the Arabic letter mark inside a pasted word does not hide it", () => {
  assert.ok(matches("\u0633\u0645\u0627\u061c\u0631\u0629", "سمارة"));
  assert.equal(fold("\u061c"), "");
});

test("Latin letters with a stroke are found by the letter typed for them", () => {
  assert.ok(matches("Łódź", "lodz"));
  assert.ok(matches("Tromsø", "tromso"));
  assert.ok(matches("Đà Nẵng", "da nang"));
  assert.ok(matches("Diyarbakır", "diyarbakir"));
});

test("taa marbuta and alef maqsura", () => {
  assert.ok(matches("مدينة السمارة", "مدينه السماره"));
  assert.ok(matches("مدينه", "مدينة"));
  assert.ok(matches("مصطفى", "مصطفي"));
  assert.ok(matches("مستشفي", "مستشفى"));
});

test("Arabic presentation forms and digits", () => {
  assert.equal(fold("\ufef7"), "لا", "lam-alef with hamza ligature");
  assert.equal(fold("٢٠٢٥"), "2025");
  assert.equal(fold("۱۹۸۴"), "1984");
  assert.ok(matches("الاجتماع 2025", "٢٠٢٥"));
});

test("French accents both ways and case", () => {
  assert.ok(matches("Sénégal", "senegal"));
  assert.ok(matches("Senegal", "Sénégal"));
  assert.ok(matches("Procès-verbal de la réunion", "PROCES"));
  assert.ok(matches("Développement durable", "developpement"));
  assert.ok(matches("Ça va à Saint-Étienne", "ca etienne"));
  assert.ok(matches("Cœur de ville", "coeur"));
  assert.equal(fold("Éducation"), "education");
});

test("whitespace is collapsed", () => {
  assert.equal(fold("  Smara \t\n  Agadir  "), "smara agadir");
  assert.equal(fold("ﺍﻟﺴﻤﺎﺭﺓ"), "السماره", "presentation forms fold to base letters");
});

test("apostrophes as phones curl them, and hyphens, do not stand between a name and its search", () => {
  assert.ok(matches("N'Djamena", "N’Djamena"), "a curled apostrophe finds a straight one");
  assert.ok(matches("N’Djamena", "N'Djamena"), "and the other way round");
  assert.ok(matches("N’Djamena", "ndjamena"), "no apostrophe at all");
  assert.ok(matches("Porto-Novo", "porto novo"));
  assert.ok(matches("Porto Novo", "Porto-Novo"));
  assert.ok(matches("Smara – Dakar", "smara‑dakar"), "an en dash and a non-breaking hyphen");
  assert.ok(matches("Procès-verbal", "proces"));
  assert.ok(!matches("N’Djamena", "n djamena x"));
});

test("Arabic letters most keyboards lack are found by the letter typed for them", () => {
  assert.ok(matches("أمگالة", "امكالة"), "gaf");
  assert.ok(matches("أمڭالة", "امكالة"), "Maghrebi ng");
  assert.ok(matches("أمگالة", "أمڭالة"), "the two spellings of Amgala");
  assert.ok(matches("ڤيجاياوادا", "فيجاياوادا"), "veh");
  assert.ok(matches("پونه", "بونه"), "peh");
  assert.ok(matches("چاد", "جاد"), "tcheh");
  assert.ok(!matches("أمگالة", "امقالة"), "qaf stays another letter");
});

test("multi-term queries need every term", () => {
  const hay = "Accord de jumelage entre Smara et Dakar — اتفاقية التوأمة بين السمارة وداكار";
  assert.ok(matches(hay, "smara dakar"));
  assert.ok(matches(hay, "  dakar   accord "));
  assert.ok(matches(hay, "السماره اتفاقيه"));
  assert.ok(matches(hay, "jumelage داكار"));
  assert.ok(!matches(hay, "smara agadir"));
  assert.ok(!matches(hay, "أكادير"));
  assert.ok(!matches(hay, "pune"));
});

test("empty query matches everything; missing haystack is empty", () => {
  assert.ok(matches("anything", ""));
  assert.ok(matches("anything", "   "));
  assert.ok(matches("", ""));
  assert.ok(matches(undefined, undefined));
  assert.ok(!matches(undefined, "x"));
  assert.equal(fold(null), "");
  assert.ok(matches(["Smara", "Pune"], "pune"));
});

// A plural variant (`waiting.one`) exists only in the languages whose
// grammar needs it; every other key is in every language.
const VARIANT = new RegExp(`^(.+)\\.(${PLURAL_CATEGORIES.join("|")})$`);
const isVariant = (key) => VARIANT.test(key) && VARIANT.exec(key)[1] in STRINGS.en;

test("i18n languages have identical key sets and no empty value", () => {
  assert.deepEqual(LANGS, ["ar", "fr", "en"]);
  const reference = Object.keys(STRINGS.en).filter((k) => !isVariant(k)).sort();
  for (const lang of LANGS) {
    assert.deepEqual(Object.keys(STRINGS[lang]).filter((k) => !isVariant(k)).sort(), reference, `keys of ${lang}`);
    for (const [key, value] of Object.entries(STRINGS[lang])) {
      assert.equal(typeof value, "string", `${lang}.${key}`);
      assert.ok(value.trim().length > 0, `${lang}.${key} is empty`);
    }
  }
  for (const kind of ["club", "city", "agreement", "project", "meeting", "person", "report"]) {
    assert.ok(`kind.${kind}` in STRINGS.en && `kinds.${kind}` in STRINGS.en, kind);
  }
});

test("placeholders are the same in every language", () => {
  const placeholders = (s) => (s.match(/\{\w+\}/g) ?? []).sort().join(",");
  for (const key of Object.keys(STRINGS.en).filter((k) => !isVariant(k))) {
    for (const lang of LANGS) {
      assert.equal(placeholders(STRINGS[lang][key]), placeholders(STRINGS.en[key]), `${lang}.${key}`);
    }
  }
});

test("plural variants are of categories their language has, and use no placeholder their key lacks", () => {
  let variants = 0;
  for (const lang of LANGS) {
    const categories = new Intl.PluralRules(locale(lang)).resolvedOptions().pluralCategories;
    for (const key of Object.keys(STRINGS[lang]).filter(isVariant)) {
      const [, base, category] = VARIANT.exec(key);
      assert.ok(categories.includes(category), `${lang}.${key}: ${lang} has no '${category}'`);
      for (const p of STRINGS[lang][key].match(/\{\w+\}/g) ?? []) {
        assert.ok(STRINGS.en[base].includes(p), `${lang}.${key}: ${p}`);
      }
      variants++;
    }
  }
  assert.ok(variants > 0, "no plural variant checked");
});

test("counts take the plural form of the reader's language", () => {
  assert.equal(plural("en", "waiting", 1), "1 change waiting for the server");
  assert.equal(plural("en", "waiting", 2), "2 changes waiting for the server");
  assert.equal(plural("en", "waiting", 0), "0 changes waiting for the server");
  assert.equal(plural("fr", "changesCount", 0), "0 modification", "French counts zero as one");
  assert.equal(plural("fr", "changesCount", 1), "1 modification");
  assert.equal(plural("fr", "changesCount", 1500), "1\u202f500 modifications");
  // Arabic: one, two, three to ten, eleven to ninety-nine, a hundred.
  assert.equal(plural("ar", "changesCount", 1), "تعديل واحد");
  assert.equal(plural("ar", "changesCount", 2), "تعديلان");
  assert.equal(plural("ar", "changesCount", 3), "3 تعديلات");
  assert.equal(plural("ar", "changesCount", 11), "11 تعديلا");
  assert.equal(plural("ar", "changesCount", 100), "100 تعديل");
  // A language without variants for a key uses the key itself.
  assert.equal(plural("ar", "waiting", 1), t("ar", "waiting", { n: formatNumber("ar", 1) }));
});

test("t() substitutes placeholders and falls back", () => {
  assert.equal(t("en", "syncing", { n: 3 }), "Syncing 3 records");
  assert.equal(t("en", "signedInAs", { name: "Amina", role: "delegate" }), "Signed in as Amina (delegate)");
  assert.ok(t("ar", "signedInAs", { name: "أمينة", role: t("ar", "delegate") }).includes("أمينة"));
  assert.ok(t("fr", "syncError", { reason: "réseau" }).endsWith("réseau"));
  assert.equal(t("en", "newRecord", { kind: t("en", "kind.agreement") }), "New Agreement");
  assert.equal(t("en", "waiting", { n: 0 }), "0 changes waiting for the server");
  assert.equal(t("xx", "save"), "Save", "unknown language falls back to English");
  assert.equal(t("fr", "no.such.key"), "no.such.key", "unknown key falls back to itself");
  assert.equal(t("en", "due"), "due {date}", "missing variable leaves the placeholder");
  assert.equal(t("ar", "save"), "حفظ");
});

test("dates and numbers", () => {
  const fr = formatDate("fr", "2025-10-15");
  assert.ok(fr.includes("2025") && fr.includes("oct"), fr);
  assert.ok(fr.includes("15"), fr);
  assert.ok(formatDate("en", "2025-01-01").includes("1 Jan 2025"), "UTC, no shift to the previous day");
  assert.ok(formatDate("ar", "2025-10-15").includes("2025"), "ar-MA prints Latin digits");
  assert.equal(formatDate("en", ""), "");
  assert.equal(formatDate("en", null), "");
  assert.equal(formatDate("en", "not a date"), "not a date");
  assert.equal(formatDate("en", "2025-02-30"), "2025-02-30");
  assert.equal(formatDateTime("en", 0), "");
  assert.equal(formatDateTime("en", null), "");
  assert.ok(formatDateTime("en", 1760000000).includes("2025"));
  assert.equal(formatNumber("en", 1234), "1,234");
  assert.match(formatNumber("ar", 1234), /1.?234/);
  assert.deepEqual(LANGS.map(locale), ["ar-MA", "fr-FR", "en-GB"]);
});

test("fieldAt finds the schema field a record path names, through list items and languages", async () => {
  const { fieldAt } = await import("../../app/fields.js");
  const status = { name: "status", type: "enum", required: true, values: ["pending", "done"] };
  const schema = {
    project: [
      { name: "title", type: "multilingual", required: true },
      { name: "milestones", type: "list", required: false, fields: [{ name: "id", type: "str", required: true }, status] },
    ],
  };
  assert.deepEqual(fieldAt(schema, "project", "/milestones/a1b2/status"), { field: status, lang: null });
  const title = fieldAt(schema, "project", "/title/fr");
  assert.equal(title.field.name, "title");
  assert.equal(title.lang, "fr");
  assert.deepEqual(fieldAt(schema, "project", "/unknown"), { field: { name: "unknown", type: "str" }, lang: null });
});

test("a list item reads as its fields' labels and values, in the reader's language, its id left out", async () => {
  const { showItem } = await import("../../app/fields.js");
  const fields = [
    { name: "id", type: "str" },
    { name: "title", type: "str" },
    { name: "status", type: "enum" },
    { name: "owner", type: "ref" },
    { name: "due", type: "date" },
  ];
  const item = { id: "m1", title: "Pompe installée", status: "pending", owner: "automerge:4NK39wkqzpfSYwwdfuJ8", due: null };
  const ctx = (lang) => ({ lang, byUrl: new Map([["automerge:4NK39wkqzpfSYwwdfuJ8", { id: "4NK39wkqzpfSYwwdfuJ8", title: { fr: "Awa Diop", ar: "عوا ديوب" } }]]) });
  // For a file, as it reads; on screen, each value isolated from the
  // labels around it (U+2068 … U+2069).
  const fr = showItem(ctx("fr"), fields, item, { plain: true });
  assert.equal(fr, `${STRINGS.fr["field.title"]}\u00a0: Pompe installée · ${STRINGS.fr["field.status"]}\u00a0: ${STRINGS.fr["value.pending"]} · ${STRINGS.fr["field.owner"]}\u00a0: Awa Diop`);
  assert.equal(showItem(ctx("fr"), fields, item), `${STRINGS.fr["field.title"]}\u00a0: \u2068Pompe installée\u2069 · ${STRINGS.fr["field.status"]}\u00a0: \u2068${STRINGS.fr["value.pending"]}\u2069 · ${STRINGS.fr["field.owner"]}\u00a0: \u2068Awa Diop\u2069`);
  const ar = showItem(ctx("ar"), fields, item);
  assert.ok(ar.includes(`${STRINGS.ar["field.status"]}: \u2068${STRINGS.ar["value.pending"]}\u2069`), ar);
  assert.ok(ar.includes("عوا ديوب") && !ar.includes("m1") && !ar.includes("automerge:"), ar);
  assert.equal(showItem(ctx("en"), fields, { id: "m2" }), STRINGS.en.none);
});
