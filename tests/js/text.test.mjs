// Unit tests for the field app's text edits (app/text.js): where a
// keystroke made on the text a screen showed lands on a newer text.
// Run from the repository root: node --test tests/js/text.test.mjs
import { test } from "node:test";
import assert from "node:assert/strict";
import { diff, spans, splice, rebaseOnto, shown, toStored, follow, moved } from "../../app/text.js";

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

test("two people writing at one place, key by key, each keep their words together", () => {
  // Each key reaches the other screen before the next is typed: the other
  // caret follows the text around it.
  let doc = "Ordre du jour adopté.";
  const carets = [doc.length, doc.length];
  const words = [[..."Bonjour"], [..."مرحبا بكم"]];
  for (let i = 0; i < 9; i++) {
    for (const who of [0, 1]) {
      const key = words[who][i];
      if (!key) continue;
      const before = doc;
      doc = splice(doc, { index: carets[who], delete: 0, insert: key });
      carets[who] += key.length;
      [carets[1 - who]] = follow(before, doc, carets[1 - who]);
    }
  }
  assert.ok(doc.includes("Bonjour") && doc.includes("مرحبا بكم"), doc);
  assert.equal(doc.length, "Ordre du jour adopté.Bonjourمرحبا بكم".length);
  // A key typed before the screen showed what others wrote at the caret
  // goes next to the person's last key, before their words.
  assert.equal(apply("abcXY", rebaseOnto({ index: 3, delete: 0, insert: "d" }, spans("abc", "abcXY"))), "abcdXY");
  // A selection deleted where others wrote at its start: their words stay,
  // and what is typed over it goes before them.
  assert.equal(apply("abc XYdef", rebaseOnto({ index: 4, delete: 3, insert: "" }, spans("abc def", "abc XYdef"))), "abc XY");
  assert.equal(apply("abc XYdef", rebaseOnto({ index: 4, delete: 3, insert: "z" }, spans("abc def", "abc XYdef"))), "abc zXY");
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

/** Whether offset `i` of `text` falls between the two halves of a surrogate pair. */
const inPair = (text, i) => i > 0 && i < text.length && /[\uD800-\uDBFF]/.test(text[i - 1]) && /[\uDC00-\uDFFF]/.test(text[i]);

test("a keystroke typed next to copies of itself is where the caret says", () => {
  // "la " typed at the start of "la la": the caret is after it.
  assert.deepEqual(diff("la la", "la la la", 3), { index: 0, delete: 0, insert: "la " });
  assert.deepEqual(diff("la la", "la la la", 8), { index: 5, delete: 0, insert: " la" });
  // Without a caret, as early as the common start allows: the end.
  assert.deepEqual(diff("la la", "la la la"), { index: 5, delete: 0, insert: " la" });
  // Enter between two line breaks: the new one is the middle one.
  assert.deepEqual(diff("Ordre\n\nFin", "Ordre\n\n\nFin", 7), { index: 6, delete: 0, insert: "\n" });
  // A backspace leaves the caret where the deleted unit was.
  assert.deepEqual(diff("aaa", "aa", 1), { index: 1, delete: 1, insert: "" });
  assert.deepEqual(diff("aaa", "aa", 0), { index: 0, delete: 1, insert: "" });
  // Arabic: "ال" typed at the start of "الال".
  assert.deepEqual(diff("الال", "الالال", 2), { index: 0, delete: 0, insert: "ال" });
  // An emoji typed before the same emoji, and one deleted after it.
  assert.deepEqual(diff("a😀", "a😀😀", 3), { index: 1, delete: 0, insert: "😀" });
  assert.deepEqual(diff("😀😀b", "😀b", 2), { index: 2, delete: 2, insert: "" });
  // A caret the text cannot have had: still a splice from one to the other.
  for (const caret of [-4, 1, 2, 99, 1.5, NaN, undefined, null]) {
    const d = diff("la la", "la la la", caret);
    assert.equal(splice("la la", d), "la la la", String(caret));
    assert.equal(d.delete + d.insert.length, 3, String(caret));
  }
  // A caret inside an emoji: the splice widens rather than cutting it.
  const d = diff("😀", "😀😀", 3);
  assert.equal(splice("😀", d), "😀😀");
  assert.ok(!inPair("😀", d.index) && !inPair("😀", d.index + d.delete), JSON.stringify(d));
});

test("any one keystroke is found where it was made, and any caret gives a splice from one text to the other", () => {
  const rand = seeded(20260611);
  const chars = ["l", "a", " ", "ا", "ل", "\n", "😀"];
  const text = (n) => Array.from({ length: n }, () => chars[rand(chars.length)]).join("");
  let ambiguous = 0;
  for (let round = 0; round < 5000; round++) {
    const cps = [...text(rand(12))];
    const at = rand(cps.length + 1);
    const pos = cps.slice(0, at).join("").length;
    let edit;
    let caret;
    if (rand(2) || !cps.length || at === cps.length) {
      const insert = text(1 + rand(3));
      edit = { index: pos, delete: 0, insert };
      caret = pos + insert.length;
    } else {
      const gone = cps.slice(at, at + 1 + rand(3)).join("");
      edit = { index: pos, delete: gone.length, insert: "" };
      caret = pos;
    }
    const a = cps.join("");
    const b = splice(a, edit);
    if (a === b) continue;
    const why = JSON.stringify({ a, b, edit });
    if (diff(a, b).index !== pos) ambiguous++;
    // With the true caret: the keystroke itself.
    assert.deepEqual(diff(a, b, caret), edit, why);
    // With any caret at all: a splice from `a` to `b` that cuts no character.
    for (const hint of [rand(b.length + 1), rand(40) - 20, undefined]) {
      const d = diff(a, b, hint);
      assert.equal(splice(a, d), b, `${why} ${hint}`);
      assert.ok(!inPair(a, d.index) && !inPair(a, d.index + d.delete), `${why} ${hint} ${JSON.stringify(d)}`);
    }
  }
  // Rounds where the caret made a difference.
  assert.ok(ambiguous > 300, String(ambiguous));
});

test("a frame from others changing text before and after the caret leaves it between the same words", () => {
  const before = "Ordre du jour.\nLe maire ouvre la séance.\nالبند الأول: الميزانية.\nFin.";
  const after = "L'ordre du jour.\nLe maire ouvre la séance.\nالبند الأول: الميزانية.\nFin de séance.";
  const caret = before.indexOf("الميزانية");
  const [at] = follow(before, after, caret);
  assert.equal(after.slice(at, at + "الميزانية".length), "الميزانية");
  assert.equal(after.slice(at - "الأول: ".length, at), "الأول: ");
  // A selection of "la séance" keeps both ends.
  const [s, e] = follow(before, after, before.indexOf("la séance"), before.indexOf("la séance") + "la séance".length);
  assert.equal(after.slice(s, e), "la séance");
  // Changed on one side only: kept by the side that did not change.
  assert.deepEqual(follow("abc def", "abc XYdef", 2), [2]);
  assert.deepEqual(follow("abc def", "Xabc def", 5), [6]);
  // Others writing at the caret: it stays before their text, where a key
  // typed there lands too, so the person's next key follows their last.
  assert.deepEqual(follow("abc def", "abc XY def", 4), [4]);
  assert.deepEqual(follow("ab cd ef", "Zab XYcd ef!", 3), [4]);
  assert.deepEqual(follow("fin", "fin. Merci", 3), [3]);
  // Text after the caret that also ends what others added is no reason
  // to move it: "Fin." ends with the "." after it.
  assert.deepEqual(follow("Ordre du jour adopté.", "Ordre du jour adopté. Fin.", 20), [20]);
  // Inside a word others rewrote, with text changed on both sides: after
  // their word.
  assert.deepEqual(follow("ab cdef gh", "Xab WXYZ ghX", 5), [8]);
  // A selection takes in none of what others wrote at either of its ends.
  assert.deepEqual(follow("ab cd ef", "ab XcdY ef!", 3, 5), [4, 6]);
  // A selection whose ends the changes could otherwise order backwards.
  const [from, to] = follow("xyxy", "xy", 1, 2);
  assert.ok(from <= to, JSON.stringify([from, to]));
});

test("the caret follows others' edits as a keystroke at it would, and away from them keeps its place", () => {
  const rand = seeded(4111);
  const chars = [..."abcdefghijklmnopqrstuvwxyzابتثجحخدذرزسشصضé😀 \n"];
  const word = (n) => Array.from({ length: n }, () => chars[rand(chars.length)]).join("");
  let checked = 0;
  let bothSides = 0;
  for (let round = 0; round < 2000; round++) {
    const a = word(20 + rand(150));
    const cps = [...a];
    // Others edit at two to four places, far apart, from the end back, in
    // one frame.
    const places = [...new Set(Array.from({ length: 2 + rand(3) }, () => rand(cps.length)))].sort((p, q) => q - p);
    const edited = [];
    for (const p of places) {
      if (edited.some((q) => Math.abs(q - p) < 12)) continue;
      edited.push(p);
      cps.splice(p, rand(3), ...word(rand(4)));
    }
    const b = cps.join("");
    const remote = spans(a, b);
    // Any caret goes where a keystroke at it lands.
    const p = rand(a.length + 1);
    if (!inPair(a, p)) {
      const typed = rebaseOnto({ index: p, delete: 0, insert: "✓" }, remote);
      assert.equal(moved(p, remote), typed.at(-1).index, JSON.stringify({ a, b, p }));
    }
    // A caret 6 units from any change keeps the text around it.
    const starts = [...a].reduce((o, c) => [...o, o.at(-1) + c.length], [0]);
    const far = starts.filter((i) => remote.every((s) => i <= s.index - 6 || i >= s.index + s.delete + 6));
    if (!far.length) continue;
    const caret = far[rand(far.length)];
    const [now] = follow(a, b, caret);
    const why = JSON.stringify({ a, b, caret, remote });
    assert.equal(b.slice(now - 6, now + 6), a.slice(caret - 6, caret + 6), why);
    assert.equal(now, caret + remote.filter((s) => s.index < caret).reduce((n, s) => n + s.insert.length - s.delete, 0), why);
    if (remote.some((s) => s.index < caret) && remote.some((s) => s.index > caret)) bothSides++;
    checked++;
  }
  assert.ok(checked > 1000 && bothSides > 500, JSON.stringify({ checked, bothSides }));
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

/** Minutes of `lines` lines, in French, Arabic and English. */
const minutes = (lines) => Array.from({ length: lines }, (_, i) => `Ligne ${i + 1}: vote ${i + 1} — تصويت ${i + 1}, item ${i + 1}.\n`).join("");

test("past a thousand units written by others, a keystroke still lands where it was typed", () => {
  const before = minutes(40);
  assert.ok(before.length > 1500 && before.length < 1700, String(before.length));
  // A catch-up from another phone: 1,100 units pasted at the top, and
  // " (adopté)" at the end.
  const pasted = Array.from({ length: 40 }, (_, i) => `Point ${i + 1}: البند ${i + 1}, agenda ${i + 1}.\n`).join("").slice(0, 1100);
  assert.equal(pasted.length, 1100);
  const now = pasted + before + " (adopté)";
  const remote = spans(before, now);
  assert.equal(apply(before, [...remote].reverse()), now);
  const merged = (e) => pasted + splice(before, e) + " (adopté)";
  const at = before.indexOf("Ligne 20:") + "Ligne 20:".length;
  // "X" typed after "Ligne 20:" before the screen showed the catch-up.
  const typed = { index: at, delete: 0, insert: "X" };
  assert.equal(apply(now, rebaseOnto(typed, remote)), merged(typed));
  // A backspace there: the ":" stays deleted.
  const backspace = { index: at - 1, delete: 1, insert: "" };
  assert.equal(apply(now, rebaseOnto(backspace, remote)), merged(backspace));
  // "Ligne 20" selected and typed over: the new words in its place, the old gone.
  const replaced = { index: at - "Ligne 20:".length, delete: "Ligne 20".length, insert: "Point vingt — البند" };
  assert.equal(apply(now, rebaseOnto(replaced, remote)), merged(replaced));
  // The caret, and a selection of "Ligne 20", stay by the same words.
  assert.deepEqual(follow(before, now, at), [at + pasted.length]);
  assert.deepEqual(follow(before, now, replaced.index, at - 1), [replaced.index + pasted.length, at - 1 + pasted.length]);
});

test("large changes by others in several places leave a keystroke elsewhere where it was made", () => {
  const rand = seeded(20260714);
  const chars = [..."abcdefghijklmnopqrstuvwxyzابتثجحخدذرزسشصضéà😀 \n"];
  const word = (n) => Array.from({ length: n }, () => chars[rand(chars.length)]).join("");
  // `text` with splices (in its offsets, apart) applied, from the last back.
  const all = (text, splices) => apply(text, [...splices].sort((p, q) => q.index - p.index));
  const MARGIN = 32;
  let between = 0;
  let rounds = 0;
  for (let round = 0; round < 100; round++) {
    const a = word(1500 + rand(4000));
    // Others write at two to five places, at whole characters, apart.
    const starts = [0];
    for (const c of a) starts.push(starts.at(-1) + c.length);
    const remote = [];
    for (let tries = 0; remote.length < 2 + rand(4) && tries < 50; tries++) {
      const i = rand(starts.length);
      const j = Math.min(starts.length - 1, i + (rand(3) ? rand(400) : 0));
      const s = { index: starts[i], delete: starts[j] - starts[i], insert: word(rand(4) ? 100 + rand(900) : 0) };
      if (s.delete + s.insert.length === 0) continue;
      if (remote.some((r) => s.index < r.index + r.delete + 3 * MARGIN && r.index < s.index + s.delete + 3 * MARGIN)) continue;
      remote.push(s);
    }
    const size = remote.reduce((n, s) => n + s.delete + s.insert.length, 0);
    if (size <= 1000) continue;
    const b = all(a, remote);
    const found = spans(a, b);
    assert.equal(apply(a, [...found].reverse()), b);
    for (const s of found) assert.ok(!inPair(a, s.index) && !inPair(a, s.index + s.delete), JSON.stringify(s));
    // The person types, deletes or types over a selection, MARGIN units
    // or more from anything others changed.
    const free = starts.filter((p) => remote.every((s) => p <= s.index - MARGIN || p >= s.index + s.delete + MARGIN));
    if (!free.length) continue;
    const i = starts.indexOf(free[rand(free.length)]);
    const j = Math.min(i + rand(4), starts.length - 1);
    const local = { index: starts[i], delete: starts[j] - starts[i], insert: rand(3) ? word(rand(3)) : "" };
    if (remote.some((s) => local.index + local.delete > s.index - MARGIN && local.index < s.index + s.delete + MARGIN)) continue;
    if (local.delete + local.insert.length === 0) continue;
    const why = JSON.stringify({ round, remote: remote.map((s) => [s.index, s.delete, s.insert.length]), local });
    assert.equal(apply(b, rebaseOnto(local, found)), all(a, [...remote, local]), why);
    // The caret there keeps its place too.
    const shift = remote.filter((s) => s.index < local.index).reduce((n, s) => n + s.insert.length - s.delete, 0);
    assert.deepEqual(follow(a, b, local.index), [local.index + shift], why);
    if (remote.some((s) => s.index < local.index) && remote.some((s) => s.index > local.index)) between++;
    rounds++;
  }
  // Rounds checked, and those with others' changes on both sides.
  assert.ok(rounds > 50 && between > 30, JSON.stringify({ rounds, between }));
});

test("changes scattered all over a long text come back as a bounded number of places, which still make the one text from the other", () => {
  const rand = seeded(77);
  const chars = [..."abcdefghij ابتثجح😀\n"];
  const a = Array.from({ length: 100_000 }, () => chars[rand(chars.length)]).join("");
  // Another device changed every 20th character or so.
  const cps = [...a];
  for (let i = cps.length - 1; i > 0; i -= 15 + rand(10)) cps[i] = "X";
  const b = cps.join("");
  const found = spans(a, b);
  assert.ok(found.length <= 256, String(found.length));
  assert.equal(apply(a, [...found].reverse()), b);
  for (let i = 1; i < found.length; i++) assert.ok(found[i - 1].index + found[i - 1].delete < found[i].index);
  // A keystroke rebased through them still makes the text it should.
  const at = a.length >> 1;
  const typed = rebaseOnto({ index: at, delete: 0, insert: "✓" }, found);
  assert.equal(apply(b, [...typed].reverse()).replace("✓", ""), b);
});
