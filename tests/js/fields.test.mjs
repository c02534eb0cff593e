// Unit tests for how the field app writes a list item into a file
// (app/fields.js `showItem` with `plain`), as the CSV export does.
// Run from the repository root: node --test tests/js/fields.test.mjs
import { test } from "node:test";
import assert from "node:assert/strict";
import { showItem, cut, scriptLang } from "../../app/fields.js";

const fields = [
  { name: "id", type: "str" },
  { name: "title", type: "str" },
  { name: "due", type: "date" },
  { name: "count", type: "int" },
];
const item = { id: "m1", title: "Puits\r\nحفر البئر\n\n(Awa)", due: "2026-01-31", count: 1234 };

test("an item written for a file is one line, dates in ISO and numbers in ASCII digits, in every language", () => {
  for (const lang of ["ar", "fr", "en"]) {
    const line = showItem({ lang, byUrl: new Map() }, fields, item, { plain: true });
    assert.ok(!/[\r\n]/.test(line), `${lang}: ${JSON.stringify(line)}`);
    assert.ok(!/[\u2068\u2069]/.test(line), `${lang}: no isolates in a file`);
    assert.ok(line.includes("Puits / حفر البئر / (Awa)"), `${lang}: ${line}`);
    assert.ok(line.includes("2026-01-31"), `${lang}: ${line}`);
    assert.ok(line.includes("1234"), `${lang}: ${line}`);
    assert.ok(!line.includes("m1"), `${lang}: the id is bookkeeping`);
  }
});

test("an item shown on screen keeps its isolates and the reader's own date", () => {
  const line = showItem({ lang: "fr", byUrl: new Map() }, fields, item);
  assert.ok(line.includes("\u2068"), line);
  assert.ok(!line.includes("2026-01-31"), `a date as the reader writes it: ${line}`);
});

test("a name cut short is cut between characters as people count them, never inside one", () => {
  const family = "\u{1F468}\u200D\u{1F469}\u200D\u{1F467}";
  // 38 letters, then a family of five code points, then more.
  const title = `${"م".repeat(38)}${family}${"ب".repeat(10)}`;
  const short = cut(title, 40);
  assert.ok(short.endsWith(`${family}…`), JSON.stringify(short));
  assert.equal([...new Intl.Segmenter(undefined, { granularity: "grapheme" }).segment(short)].length, 40);
  // A letter with its vowel marks stays whole.
  const marked = `${"a".repeat(8)}\u0628\u064E\u0651${"c".repeat(5)}`;
  assert.equal(cut(marked, 10), `${"a".repeat(8)}\u0628\u064E\u0651…`);
  // Short enough, it is left as it is.
  assert.equal(cut("Puits de Smara", 40), "Puits de Smara");
});

test("a value or field a newer schema added, which the app has no words for, is shown as written, not as its key", async () => {
  const { t, STRINGS } = await import("../../app/i18n.js");
  for (const lang of ["ar", "fr", "en"]) {
    assert.equal(t(lang, "value.dormant"), "dormant");
    assert.equal(t(lang, "field.budget_line"), "budget_line");
    // One it knows is said in the language.
    assert.equal(t(lang, "value.active"), STRINGS[lang]["value.active"]);
  }
  // Other keys the app has no words for stay as they are, for a check.
  assert.equal(t("en", "problem.Frobnicated"), "problem.Frobnicated");
});

test("a value's language is Arabic when its first letter is, whatever comes before it", () => {
  assert.equal(scriptLang("محضر الاجتماع"), "ar");
  assert.equal(scriptLang("  12. «محضر» Dakar"), "ar", "digits and punctuation are no letters");
  assert.equal(scriptLang("\ufefbجتماع"), "ar", "presentation forms");
  // Latin letters say neither French nor English: the screen's stays.
  assert.equal(scriptLang("Procès-verbal, محضر"), null);
  assert.equal(scriptLang("2026"), null);
  assert.equal(scriptLang(null), null);
});
