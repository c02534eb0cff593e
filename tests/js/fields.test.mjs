// Unit tests for how the field app writes a list item into a file
// (app/fields.js `showItem` with `plain`), as the CSV export does.
// Run from the repository root: node --test tests/js/fields.test.mjs
import { test } from "node:test";
import assert from "node:assert/strict";
import { showItem } from "../../app/fields.js";

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
