// Unit tests for the field app's text edits (app/text.js): where a
// keystroke made on the text a screen showed lands on a newer text.
// Run from the repository root: node --test tests/js/text.test.mjs
import { test } from "node:test";
import assert from "node:assert/strict";
import { diff, spans, splice, rebaseOnto, shown, toStored } from "../../app/text.js";

const apply = (text, splices) => splices.reduce(splice, text);

/** A seeded source of integers below `n` (mulberry32: 32-bit arithmetic throughout, so every value is as likely). */
function seeded(seed) {
  return (n) => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return Math.floor((((t ^ (t >>> 14)) >>> 0) / 4294967296) * n);
  };
}

test("two places written are two splices, not one spanning both", () => {
  assert.deepEqual(spans("abc def ghi", "ABC def GHI"), [
    { index: 0, delete: 3, insert: "ABC" },
    { index: 8, delete: 3, insert: "GHI" },
  ]);
  assert.deepEqual(spans("same", "same"), []);
  assert.deepEqual(spans("", "نص"), [{ index: 0, delete: 0, insert: "نص" }]);
});

test("a keystroke between two places others wrote stays where it was typed", () => {
  // Another phone changed "abc" and "ghi"; the person typed X after "def"
  // on the text before, and deleted the "e" of "def".
  const before = "abc def ghi";
  const now = "ABC def GHI";
  const typed = { index: 7, delete: 0, insert: "X" };
  assert.equal(apply(now, rebaseOnto(typed, spans(before, now))), "ABC defX GHI");
  const backspace = { index: 5, delete: 1, insert: "" };
  assert.equal(apply(now, rebaseOnto(backspace, spans(before, now))), "ABC df GHI");
});

test("what others deleted stays deleted, what they wrote inside the person's selection stays", () => {
  const before = "0123456789";
  // Others deleted "34" and wrote "ab" before "8".
  const now = "012567ab89";
  // The person selected "234567" and typed "Z".
  const typed = { index: 2, delete: 6, insert: "Z" };
  assert.equal(apply(now, rebaseOnto(typed, spans(before, now))), "01Zab89");
  // Others wrote "ab" inside the selection: it stays.
  const inside = "01234ab56789";
  assert.equal(apply(inside, rebaseOnto(typed, spans(before, inside))), "01Zab89");
  // Typed inside what others deleted: where it was.
  const gone = { index: 4, delete: 0, insert: "!" };
  assert.equal(apply(now, rebaseOnto(gone, spans(before, now))), "012!567ab89");
});

test("Arabic, emoji and mixed scripts are never cut inside a character", () => {
  const before = "اجتماع 😀 réunion";
  const now = "اجتماع 😁 réunion مهم";
  for (const s of spans(before, now)) {
    const cut = (t, i) => i > 0 && i < t.length && /[\uDC00-\uDFFF]/.test(t[i]) && /[\uD800-\uDBFF]/.test(t[i - 1]);
    assert.ok(!cut(before, s.index) && !cut(before, s.index + s.delete), JSON.stringify(s));
  }
  assert.equal(apply(before, spans(before, now).reverse()), now);
  const typed = { index: 0, delete: 0, insert: "محضر: " };
  assert.equal(apply(now, rebaseOnto(typed, spans(before, now))), "محضر: " + now);
});

test("spans rebuild the newer text, and a keystroke away from others' edits commutes with them", () => {
  const rand = seeded(20261202);
  const alphabet = "abcdefghijklmnopqrstuvwxyzابتثجحخدذرزسشصضé😀 ";
  const chars = [...alphabet];
  const word = (n) => Array.from({ length: n }, () => chars[rand(chars.length)]).join("");
  let typed = 0;
  let inserted = 0;
  let emoji = 0;
  for (let round = 0; round < 2000; round++) {
    const before = word(20 + rand(200));
    // Others edit at up to three places, far apart, from the end back.
    const cps = [...before];
    const places = [...new Set(Array.from({ length: 1 + rand(3) }, () => rand(cps.length)))].sort((p, q) => q - p);
    const edited = [];
    for (const p of places) {
      if (edited.some((q) => Math.abs(q - p) < 12)) continue;
      edited.push(p);
      const added = word(rand(4));
      if (added) inserted++;
      cps.splice(p, rand(3), ...added);
    }
    const now = cps.join("");
    if (/\p{Extended_Pictographic}/u.test(before + now)) emoji++;
    const found = spans(before, now);
    assert.equal(apply(before, [...found].reverse()), now, JSON.stringify({ before, now, found }));
    const cut = (i) => i > 0 && i < before.length && /[\uDC00-\uDFFF]/.test(before[i]) && /[\uD800-\uDBFF]/.test(before[i - 1]);
    for (const s of found) assert.ok(!cut(s.index) && !cut(s.index + s.delete), JSON.stringify({ before, now, s }));
    // The person types at a place at least 6 characters from any of them.
    const units = before.length;
    const at = rand(units + 1);
    const near = found.some((s) => at > s.index - 6 && at < s.index + s.delete + 6);
    const cutsPair = at > 0 && at < units && /[\uDC00-\uDFFF]/.test(before[at]);
    if (near || cutsPair) continue;
    const keystroke = { index: at, delete: 0, insert: "✓" };
    const expected = apply(splice(before, keystroke), [...spans(before, now)].reverse().map((s) => (s.index >= at ? { ...s, index: s.index + 1 } : s)));
    assert.equal(apply(now, rebaseOnto(keystroke, found)), expected, JSON.stringify({ before, now, at }));
    typed++;
  }
  // What the rounds covered: others' insertions, emoji, keystrokes checked.
  assert.ok(inserted > 1000 && emoji > 1000 && typed > 500, JSON.stringify({ inserted, emoji, typed }));
});

test("diff is the one splice between two texts", () => {
  assert.deepEqual(diff("abc", "abXc"), { index: 2, delete: 0, insert: "X" });
  assert.equal(diff("abc", "abc"), null);
  assert.deepEqual(diff("a😀", "a😁"), { index: 1, delete: 2, insert: "😁" });
});

test("a line break stored as CRLF is one unit on the screen", () => {
  const stored = "Séance ouverte.\r\nالنقطة الأولى\r\nPoint two.";
  assert.equal(shown(stored), "Séance ouverte.\nالنقطة الأولى\nPoint two.");
  // Backspace over the first line break deletes "\r\n", not "\n" alone.
  const back = toStored(stored, { index: 15, delete: 1, insert: "" });
  assert.deepEqual(back, { index: 15, delete: 2, insert: "" });
  assert.equal(splice(stored, back), "Séance ouverte.النقطة الأولى\r\nPoint two.");
  // A word typed at the end of the second line goes before its "\r\n".
  const typed = toStored(stored, { index: 29, delete: 0, insert: " ✓" });
  assert.equal(splice(stored, typed), "Séance ouverte.\r\nالنقطة الأولى ✓\r\nPoint two.");
  // Typed after the last line break: every offset moved by the "\r" before.
  assert.equal(toStored(stored, { index: 30, delete: 0, insert: "X" }).index, 32);
});

test("a lone CR before a typed line break is completed as CRLF, not joined to it", () => {
  const stored = "a\rb";
  const e = { index: 2, delete: 1, insert: "" }; // delete "b": "a\r" then end
  assert.equal(shown(splice(stored, toStored(stored, e))), splice(shown(stored), e));
  const joined = { index: 2, delete: 1, insert: "\nc" }; // "\r" then "\n" typed
  assert.equal(shown(splice(stored, toStored(stored, joined))), "a\n\nc");
  // The "\r" and what comes before it stay as they were stored.
  assert.equal(splice(stored, toStored(stored, joined)), "a\r\n\nc");
  const breaks = "x\n\r\r\ny";
  const typed = toStored(breaks, { index: 3, delete: 0, insert: "\n" });
  assert.deepEqual(typed, { index: 3, delete: 0, insert: "\n\n" });
  assert.equal(shown(splice(breaks, typed)), "x\n\n\n\ny");
});

test("any splice on the screen makes the same change to the stored text", () => {
  const rand = seeded(7);
  const pick = (s) => s[rand(s.length)];
  for (let round = 0; round < 3000; round++) {
    let stored = "";
    const len = rand(14);
    for (let i = 0; i < len; i++) stored += pick(["a", "ب", "\n", "\r\n", "\r", "é", "😀"]);
    const screen = shown(stored);
    const index = rand(screen.length + 1);
    const del = rand(screen.length - index + 1);
    let insert = "";
    const n = rand(3);
    for (let i = 0; i < n; i++) insert += pick(["x", "\n", "ع"]);
    const e = { index, delete: del, insert };
    const s = toStored(stored, e);
    assert.equal(shown(splice(stored, s)), splice(screen, e), JSON.stringify({ stored, e, s }));
    // What comes before the splice on the screen is left as stored.
    assert.equal(shown(stored.slice(0, s.index)), screen.slice(0, e.index), JSON.stringify({ stored, e, s }));
  }
});
