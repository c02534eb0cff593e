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

/** Edit distances past this fall back to one splice over the changed span. */
const MAX_EDITS = 1000;

/**
 * Every separate place where `b` differs from `a`: splices in `a`'s offsets,
 * in order, not touching one another (Myers' O(ND) difference over UTF-16
 * units, between the common start and end). Text written in two places
 * comes back as two splices, not one spanning both. Past `MAX_EDITS`
 * differing units, the one splice of `diff`.
 */
export function spans(a, b) {
  const whole = diff(a, b);
  if (!whole) return [];
  const x0 = whole.index;
  const a1 = a.slice(x0, x0 + whole.delete);
  const b1 = whole.insert;
  const script = shortestEdit(a1, b1, MAX_EDITS);
  if (!script) return [whole];
  // Group the script's runs of deletions and insertions into splices.
  const found = [];
  let cur = null;
  let ai = 0;
  for (const op of script) {
    if (op === "=") {
      if (cur) found.push(cur);
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
  if (cur) found.push(cur);
  const result = [];
  for (const s of found) {
    let index = x0 + s.index;
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
  return result;
}

/**
 * Myers' shortest edit script from `a` to `b`: for each step "=" (keep a
 * unit), "-" (delete a unit of `a`) or the index in `b` of a unit inserted;
 * null past `max` edits.
 */
function shortestEdit(a, b, max) {
  const n = a.length;
  const m = b.length;
  const limit = Math.min(max, n + m);
  const offset = limit + 1;
  const v = new Int32Array(2 * limit + 3);
  const trace = [];
  for (let d = 0; d <= limit; d++) {
    trace.push(v.slice(offset - d - 1, offset + d + 2));
    for (let k = -d; k <= d; k += 2) {
      let x = k === -d || (k !== d && v[offset + k - 1] < v[offset + k + 1]) ? v[offset + k + 1] : v[offset + k - 1] + 1;
      let y = x - k;
      while (x < n && y < m && a.charCodeAt(x) === b.charCodeAt(y)) { x++; y++; }
      v[offset + k] = x;
      if (x >= n && y >= m) return backtrack(trace, n, m);
    }
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
 * the person writes where others wrote goes after their text.
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
    if (!gone && to > from) deletes.push({ index: map(from), delete: to - from, insert: "" });
  }
  const out = deletes.reverse();
  if (local.insert) out.push({ index: map(local.index), delete: 0, insert: local.insert });
  return out;
}

/**
 * Where offset `p` of a text goes once `remote` (the splices `spans` found
 * between it and a newer text) is applied: after what others wrote at it,
 * and after what they wrote in place of text around it. A keystroke made
 * at `p` lands there (`rebaseOnto`), and so does the caret (`follow`).
 */
export function moved(p, remote) {
  let shift = 0;
  for (const s of remote) {
    const end = s.index + s.delete;
    if (end <= p) { shift += s.insert.length - s.delete; continue; }
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
  // in order.
  if (b.endsWith(a.slice(Math.min(...at)))) return at.map((p) => p + b.length - a.length);
  if (b.startsWith(a.slice(0, Math.max(...at)))) return at;
  const remote = spans(a, b);
  return at.map((p) => moved(p, remote));
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
