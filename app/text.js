// Text edits at UTF-16 offsets, as a textarea counts them: what one keystroke
// changed, what changed between two versions of a text, and where a keystroke
// (or the caret) on one version lands on another. No DOM here, so node tests it.

const isHigh = (c) => c >= 0xd800 && c <= 0xdbff;
const isLow = (c) => c >= 0xdc00 && c <= 0xdfff;

/**
 * The one splice `{ index, delete, insert }` that turns `a` into `b`, from
 * their common start and end, or null when they are equal. Never splits a
 * surrogate pair. `caret`, where the caret is in `b` (a textarea's
 * `selectionEnd` once a key is typed), says where text typed or deleted
 * next to copies of itself was: "la " typed before "la la" reads as "la "
 * typed at its start or " la" at its end, and only the first is what the
 * person did, to be merged with what others write there.
 */
export function diff(a, b, caret) {
  if (a === b) return null;
  const max = Math.min(a.length, b.length);
  let head = 0;
  while (head < max && a.charCodeAt(head) === b.charCodeAt(head)) head++;
  let tail = 0;
  while (tail < max && a.charCodeAt(a.length - 1 - tail) === b.charCodeAt(b.length - 1 - tail)) tail++;
  // Where the common start and end overlap, the splice may start anywhere
  // from `max - tail` to `head`: where it ends at the caret (after what was
  // typed, where a deletion was), else after the whole common start. A
  // caret outside that range is brought into it, so the splice still
  // turns `a` into `b` whatever the caret says.
  const wanted = Number.isInteger(caret) ? caret - (b.length - max) : head;
  let start = Math.min(head, Math.max(max - tail, wanted));
  let end = Math.min(tail, max - start);
  // Never split a surrogate pair: back off to the pair's start.
  if (start > 0 && isHigh(a.charCodeAt(start - 1))) start--;
  if (end > 0 && isLow(a.charCodeAt(a.length - end))) end--;
  return { index: start, delete: a.length - start - end, insert: b.slice(start, b.length - end) };
}

/** `text` with splice `d` applied. */
export const splice = (text, d) => text.slice(0, d.index) + d.insert + text.slice(d.index + d.delete);

/**
 * Myers' diff runs on a range only up to this many differing units, and
 * only within `WORK` steps for one `spans` call in all: past either, the
 * range is aligned on the text it shares with the other version instead
 * (`anchors`), and the parts between are diffed in turn.
 */
const MAX_EDITS = 1000;
const WORK = 1_500_000;

/**
 * Blocks of this many UTF-16 units align a range Myers' diff gave up on;
 * half as many within the parts between, and no further than that.
 */
const BLOCK = 16;
const PASSES = 2;

/**
 * Every separate place where `b` differs from `a`: splices in `a`'s offsets,
 * in order, not touching one another (Myers' O(ND) difference over UTF-16
 * units, between the common start and end). Text written in two places
 * comes back as two splices, not one spanning both. Past `MAX_EDITS`
 * differing units (a page pasted in), the text both share still keeps its
 * place: the range is cut at stretches found unchanged in both (`anchors`)
 * and each part between them diffed on its own, so a keystroke made away
 * from what others wrote lands where it was made, however much they wrote.
 * A part that still differs too much, with nothing found in common, is one
 * splice.
 */
export function spans(a, b) {
  const whole = diff(a, b);
  if (!whole) return [];
  const found = [];
  const x0 = whole.index;
  align(a, x0, x0 + whole.delete, b, x0, x0 + whole.insert.length, found, { left: WORK }, 0);
  const result = [];
  for (const s of found) {
    let index = s.index;
    let end = index + s.delete;
    let insert = s.insert;
    // Whole characters only: widen a splice that cuts a surrogate pair.
    if (index > 0 && isHigh(a.charCodeAt(index - 1)) && isLow(a.charCodeAt(index))) {
      insert = a[index - 1] + insert;
      index--;
    }
    if (end > 0 && end < a.length && isHigh(a.charCodeAt(end - 1)) && isLow(a.charCodeAt(end))) {
      insert += a[end];
      end++;
    }
    const last = result.at(-1);
    if (last && last.index + last.delete >= index) {
      // Widened up to the one before: one splice.
      last.insert += a.slice(last.index + last.delete, index) + insert;
      last.delete = end - last.index;
    } else {
      result.push({ index, delete: end - index, insert });
    }
  }
  return fewer(a, result);
}

/**
 * At most this many places: each keystroke is rebased through every one of
 * them, at a cost that grows with their number times the text's length.
 */
const MAX_SPLICES = 256;

/**
 * `splices` (of `a`, in order, apart) as at most `MAX_SPLICES`, those past
 * it joined to the one before across the shortest stretches of unchanged
 * text between them (which then count as rewritten): the same text comes
 * out of them.
 */
function fewer(a, splices) {
  let need = splices.length - MAX_SPLICES;
  if (need <= 0) return splices;
  const gap = (i) => splices[i].index - (splices[i - 1].index + splices[i - 1].delete);
  const gaps = splices.slice(1).map((_, i) => gap(i + 1)).sort((x, y) => x - y);
  const cut = gaps[need - 1];
  const out = [{ ...splices[0] }];
  for (let i = 1; i < splices.length; i++) {
    const s = splices[i];
    const last = out.at(-1);
    if (need > 0 && gap(i) <= cut) {
      last.insert += a.slice(last.index + last.delete, s.index) + s.insert;
      last.delete = s.index + s.delete - last.index;
      need--;
    } else {
      out.push({ ...s });
    }
  }
  return out;
}

/**
 * Pushes onto `out`, in order, the splices (in `a`'s offsets, not touching)
 * that turn `a[ax..ae]` into `b[bx..be]`: Myers' diff where it is cheap
 * enough, else the parts between stretches both share (`anchors`), each in
 * turn; else one splice over the range. `budget.left`: Myers' steps left.
 */
function align(a, ax, ae, b, bx, be, out, budget, pass) {
  while (ax < ae && bx < be && a.charCodeAt(ax) === b.charCodeAt(bx)) { ax++; bx++; }
  while (ae > ax && be > bx && a.charCodeAt(ae - 1) === b.charCodeAt(be - 1)) { ae--; be--; }
  if (ax === ae && bx === be) return;
  const one = () => out.push({ index: ax, delete: ae - ax, insert: b.slice(bx, be) });
  if (ax === ae || bx === be) return one();
  // Myers needs at least the difference in length in edits.
  if (Math.abs(ae - ax - (be - bx)) <= MAX_EDITS) {
    const b1 = b.slice(bx, be);
    const script = shortestEdit(a.slice(ax, ae), b1, MAX_EDITS, budget);
    if (script) {
      // Runs of deletions and insertions between kept units: one splice each.
      let cur = null;
      let ai = ax;
      for (const op of script) {
        if (op === "=") {
          if (cur) out.push(cur);
          cur = null;
          ai++;
          continue;
        }
        cur ??= { index: ai, delete: 0, insert: "" };
        if (op === "-") {
          cur.delete++;
          ai++;
        } else {
          cur.insert += b1[op];
        }
      }
      if (cur) out.push(cur);
      return;
    }
  }
  const kept = pass < PASSES ? anchors(a, ax, ae, b, bx, be, BLOCK >> pass) : [];
  if (!kept.length) return one();
  let pa = ax;
  let pb = bx;
  for (const [p, q, len] of kept) {
    align(a, pa, p, b, pb, q, out, budget, pass + 1);
    pa = p + len;
    pb = q + len;
  }
  align(a, pa, ae, b, pb, be, out, budget, pass + 1);
}

/**
 * Stretches `[p, q, length]` equal in `a[ax..ae]` (from `p`) and
 * `b[bx..be]` (from `q`), in order in both and apart: where `a`'s blocks of
 * `k` units (from `ax`, every `k` units) are found once in `b`, the most
 * such blocks that keep their order, each widened as far as both agree.
 * A stretch both share `2k - 1` units long holds a whole block, so is
 * found unless its text is repeated. Linear in the length of the range.
 */
function anchors(a, ax, ae, b, bx, be, k) {
  if (ae - ax < k || be - bx < k) return [];
  // Polynomial hashes mod 2^32, rolled over `b`.
  const B = 0x01000193;
  let top = 1;
  for (let i = 1; i < k; i++) top = Math.imul(top, B);
  // Block hash -> the block's start, or -1 when blocks share it.
  const blocks = new Map();
  for (let p = ax; p + k <= ae; p += k) {
    let h = 0;
    for (let i = p; i < p + k; i++) h = (Math.imul(h, B) + a.charCodeAt(i)) | 0;
    blocks.set(h, blocks.has(h) ? -1 : p);
  }
  // Block start -> where it is in `b`, or -1 when found there twice.
  const at = new Map();
  let h = 0;
  for (let j = bx; j < be; j++) {
    if (j - bx >= k) h = (h - Math.imul(b.charCodeAt(j - k), top)) | 0;
    h = (Math.imul(h, B) + b.charCodeAt(j)) | 0;
    if (j - bx + 1 < k) continue;
    const p = blocks.get(h);
    if (p === undefined || p < 0) continue;
    const q = j - k + 1;
    let i = 0;
    while (i < k && a.charCodeAt(p + i) === b.charCodeAt(q + i)) i++;
    if (i === k) at.set(p, at.has(p) ? -1 : q);
  }
  const pairs = [];
  for (let p = ax; p + k <= ae; p += k) {
    const q = at.get(p);
    if (q !== undefined && q >= 0) pairs.push([p, q]);
  }
  if (!pairs.length) return [];
  // The longest run of pairs in order in `b` too (patience sorting).
  const tails = [];
  const before = new Int32Array(pairs.length);
  for (let i = 0; i < pairs.length; i++) {
    let lo = 0;
    let hi = tails.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (pairs[tails[mid]][1] < pairs[i][1]) lo = mid + 1; else hi = mid;
    }
    before[i] = lo > 0 ? tails[lo - 1] : -1;
    tails[lo] = i;
  }
  const chain = [];
  for (let i = tails.at(-1); i >= 0; i = before[i]) chain.push(pairs[i]);
  chain.reverse();
  // Each widened as far as both texts agree, short of the one before.
  const kept = [];
  let ca = ax;
  let cb = bx;
  for (let [p, q] of chain) {
    let len = k;
    const skip = Math.max(ca - p, cb - q, 0);
    if (skip >= len) continue;
    p += skip;
    q += skip;
    len -= skip;
    while (p > ca && q > cb && a.charCodeAt(p - 1) === b.charCodeAt(q - 1)) { p--; q--; len++; }
    while (p + len < ae && q + len < be && a.charCodeAt(p + len) === b.charCodeAt(q + len)) len++;
    kept.push([p, q, len]);
    ca = p + len;
    cb = q + len;
  }
  return kept;
}

/**
 * Myers' shortest edit script from `a` to `b`: for each step "=" (keep a
 * unit), "-" (delete a unit of `a`) or the index in `b` of a unit inserted;
 * null past `max` edits, or past `budget.left` steps (diagonals tried and
 * units compared), which it takes from.
 */
function shortestEdit(a, b, max, budget) {
  const n = a.length;
  const m = b.length;
  const limit = Math.min(max, n + m);
  const offset = limit + 1;
  const v = new Int32Array(2 * limit + 3);
  const trace = [];
  for (let d = 0; d <= limit; d++) {
    let work = 2 * d + 1;
    trace.push(v.slice(offset - d - 1, offset + d + 2));
    for (let k = -d; k <= d; k += 2) {
      let x = k === -d || (k !== d && v[offset + k - 1] < v[offset + k + 1]) ? v[offset + k + 1] : v[offset + k - 1] + 1;
      let y = x - k;
      const from = x;
      while (x < n && y < m && a.charCodeAt(x) === b.charCodeAt(y)) { x++; y++; }
      work += x - from;
      v[offset + k] = x;
      if (x >= n && y >= m) {
        budget.left -= work;
        return backtrack(trace, n, m);
      }
    }
    if ((budget.left -= work) < 0) return null;
  }
  return null;
}

function backtrack(trace, n, m) {
  const ops = [];
  let x = n;
  let y = m;
  for (let d = trace.length - 1; d >= 0; d--) {
    const v = trace[d];
    // `v` holds k from -d-1 to d+1.
    const at = (k) => v[k + d + 1];
    const k = x - y;
    const prevK = k === -d || (k !== d && at(k - 1) < at(k + 1)) ? k + 1 : k - 1;
    const prevX = at(prevK);
    const prevY = prevX - prevK;
    while (x > prevX && y > prevY) { ops.push("="); x--; y--; }
    if (d > 0) {
      if (x === prevX) ops.push(y - 1); else ops.push("-");
    }
    x = prevX;
    y = prevY;
  }
  return ops.reverse();
}

/**
 * Where splice `local`, made on a text, lands once `remote` (the splices
 * `spans` found between that text and a newer one, in its offsets) is
 * applied: the splices to make on the newer text, in the order to make
 * them. What the person deleted and others had deleted already stays
 * deleted; what others wrote inside what the person deleted stays; what
 * the person writes at a place where others wrote goes before their text,
 * so that two people writing at one place each keep their words together
 * rather than one letter in turn (the caret stays there too: `follow`).
 */
export function rebaseOnto(local, remote) {
  const map = (p) => moved(p, remote);
  // What the person deleted that is still there, in runs others did not
  // write inside.
  const cuts = new Set([local.index, local.index + local.delete]);
  for (const s of remote) { cuts.add(s.index); cuts.add(s.index + s.delete); }
  const bounds = [...cuts].filter((c) => c >= local.index && c <= local.index + local.delete).sort((p, q) => p - q);
  const deletes = [];
  for (let i = 0; i + 1 < bounds.length; i++) {
    const [from, to] = [bounds[i], bounds[i + 1]];
    const gone = remote.some((s) => s.index <= from && to <= s.index + s.delete && s.delete > 0);
    // After what others wrote at its start: that stays.
    if (!gone && to > from) deletes.push({ index: moved(from, remote, true), delete: to - from, insert: "" });
  }
  const out = deletes.reverse();
  if (local.insert) out.push({ index: map(local.index), delete: 0, insert: local.insert });
  return out;
}

/**
 * Where offset `p` of a text goes once `remote` (the splices `spans` found
 * between it and a newer text) is applied: before what others inserted at
 * it (after, with `after`), and after what they wrote in place of text
 * around it. A keystroke made at `p` lands there (`rebaseOnto`), and so
 * does the caret (`follow`): the next key goes next to the last one, not
 * past a word another phone wrote at the same place meanwhile.
 */
export function moved(p, remote, after = false) {
  let shift = 0;
  for (const s of remote) {
    const end = s.index + s.delete;
    if (end < p || (end === p && (after || s.delete > 0))) { shift += s.insert.length - s.delete; continue; }
    // Inside what others deleted: after what they wrote there.
    if (s.index < p) return s.index + shift + s.insert.length;
    break;
  }
  return p + shift;
}

/**
 * Where offsets `at` of text `a` (a caret, a selection's two ends) go when
 * the text around them changes to `b`. One frame from others may change
 * text on both sides of the caret: each place changed moves it in turn,
 * so it stays where it was in the text around it rather than going to the
 * end of one splice spanning both. Inside a place others rewrote, it goes
 * after what they wrote (`moved`).
 */
export function follow(a, b, ...at) {
  // Whichever side of them did not change keeps them in place: the common
  // case, and it keeps them next to the same text where copies of it
  // leave `spans` a choice. One rule for all, so a selection's ends stay
  // in order. The text before them first: where others wrote exactly at
  // the caret, both sides are unchanged, and the caret stays before their
  // words, as a key typed there does (`moved`); and at the end of the text
  // the text after it is always unchanged.
  if (b.startsWith(a.slice(0, Math.max(...at)))) return at;
  if (b.endsWith(a.slice(Math.min(...at)))) return at.map((p) => p + b.length - a.length);
  const remote = spans(a, b);
  // A selection's start goes after what others inserted exactly at it, as
  // its end stays before what they inserted there: their words are never
  // taken into what the person selected, and typed over.
  const from = Math.min(...at);
  const selected = at.some((p) => p !== from);
  return at.map((p) => moved(p, remote, selected && p === from));
}

/**
 * `text` as a textarea shows it and reads it back: every line break as
 * "\n". Text written by other clients may break lines with "\r\n" or "\r".
 */
export const shown = (text) => text.replace(/\r\n?/g, "\n");

/**
 * Splice `e`, made on `shown(stored)`, as a splice of `stored` itself: a
 * line break shown as one "\n" is the whole "\r\n" stored. So deleting a
 * line break deletes both, and text typed at a line break goes before it.
 * Where a lone "\r" would join a "\n" after it into one "\r\n", it is
 * completed as "\r\n" first, so the screen and the document still agree
 * and nothing before the splice is written again.
 */
export function toStored(stored, e) {
  // Where the shown unit at `k` starts in `stored`, walking on from (s, d).
  let s = 0;
  let d = 0;
  const at = (k) => {
    while (d < k) {
      s += stored[s] === "\r" && stored[s + 1] === "\n" ? 2 : 1;
      d++;
    }
    return s;
  };
  const index = at(e.index);
  const end = at(e.index + e.delete);
  let insert = e.insert;
  if (stored[index - 1] === "\r" && (insert || stored[end] || "").startsWith("\n")) {
    // A lone "\r" would join the "\n" after it into one line break:
    // complete it as "\r\n" first, the one break it is on the screen.
    // Nothing before the splice is rewritten, so no one else's line
    // breaks are deleted and written again.
    insert = "\n" + insert;
  }
  return { index, delete: end - index, insert };
}
