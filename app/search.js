// Search normalisation for Arabic, French and English text.
// fold() turns text into a comparable form; matches() checks that every
// query term occurs in the haystack once both are folded.

// Combining marks left by NFKD on Latin (and other) letters: accents, cedilla…
const COMBINING = /[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]/g;
// Arabic harakat/tashkeel (includes the hamza/madda marks U+0653–U+0655 that NFKD
// splits off أ إ آ ؤ ئ), superscript alef, Quranic annotation marks, tatweel.
const ARABIC_MARKS = /[\u064b-\u065f\u0670\u06d6-\u06ed\u0640]/g;
// Invisible formatting characters that often travel with RTL text (the
// Arabic letter mark U+061C among them).
const INVISIBLE = /[\u00ad\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]/g;

const LETTERS = {
  "\u0622": "\u0627", // آ → ا
  "\u0623": "\u0627", // أ → ا
  "\u0625": "\u0627", // إ → ا
  "\u0671": "\u0627", // ٱ → ا
  "\u0672": "\u0627", // ٲ → ا
  "\u0673": "\u0627", // ٳ → ا
  "\u0675": "\u0627", // ٵ → ا
  "\u0649": "\u064a", // ى → ي
  "\u06cc": "\u064a", // ی (Persian yeh) → ي
  "\u0624": "\u0648", // ؤ → و
  "\u0626": "\u064a", // ئ → ي
  "\u0629": "\u0647", // ة → ه
  "\u06a9": "\u0643", // ک (keheh) → ك
  // Letters for sounds Arabic spells otherwise, which most keyboards lack:
  // Amgala is written أمگالة or أمڭالة, and typed امكالة.
  "\u06af": "\u0643", // گ (gaf) → ك
  "\u06ad": "\u0643", // ڭ (ng, Maghrebi g) → ك
  "\u06a4": "\u0641", // ڤ (veh) → ف
  "\u067e": "\u0628", // پ (peh) → ب
  "\u0686": "\u062c", // چ (tcheh) → ج
  // Latin letters NFKD does not take apart: typed without their stroke.
  "\u0142": "l", // ł
  "\u00f8": "o", // ø
  "\u0111": "d", // đ
  "\u0131": "i", // dotless ı
  "\u0153": "oe", // œ
  "\u00e6": "ae", // æ
  "\u00df": "ss", // ß
};
const LETTER_RE = new RegExp(`[${Object.keys(LETTERS).join("")}]`, "g");
// Arabic-Indic (U+0660–U+0669) and Extended Arabic-Indic (U+06F0–U+06F9) digits.
const DIGITS = /[\u0660-\u0669\u06f0-\u06f9]/g;
// Apostrophes, which phones curl as they are typed (N'Djamena, N’Djamena):
// left out, so "ndjamena" finds both.
const APOSTROPHES = /['\u2018\u2019\u02bc\u02b9\u0060]/g;
// Hyphens and dashes part words, as spaces do (Porto-Novo, Smara – Dakar).
const DASHES = /[-\u2010-\u2015\u2212]/g;

export function fold(text) {
  if (text === null || text === undefined) return "";
  return String(text)
    .normalize("NFKD")
    .replace(COMBINING, "")
    .replace(ARABIC_MARKS, "")
    .replace(INVISIBLE, "")
    .toLowerCase()
    .replace(LETTER_RE, (c) => LETTERS[c])
    .replace(DIGITS, (d) => String(d.charCodeAt(0) & 0x0f))
    .replace(APOSTROPHES, "")
    .replace(DASHES, " ")
    .replace(/\s+/g, " ")
    .trim();
}

// A hamza written on a waw, a yeh or an alef, or alone: one word is spelt
// with either seat across the Arab world (مسؤول, مسئول; شؤون, شئون; هيئة,
// and هيأة as Moroccan offices write it).
const SEATS = /[\u0623\u0624\u0626]/g;

/** `fold`, with every hamza on one seat, whichever it was written on. */
function foldSeats(text) {
  if (text === null || text === undefined) return fold(text);
  // Composed first: a seat pasted as its letter and a combining hamza
  // (from a PDF, say) is the same seat.
  return fold(String(text).normalize("NFC").replace(SEATS, "\u0621"));
}

/**
 * Whether every term of `query` occurs in `haystack`, both folded: a term
 * matches with its hamza read as its seat's letter (مسؤول as مسوول, as it
 * is typed without one), or on any seat (مسؤول as مسئول).
 */
export function matches(haystack, query) {
  const terms = fold(query).split(" ").filter(Boolean);
  if (terms.length === 0) return true;
  const text = Array.isArray(haystack) ? haystack.join(" ") : haystack;
  const hay = fold(text);
  const seated = foldSeats(query).split(" ").filter(Boolean);
  // Folding changes no spacing, so the two lists of terms pair up.
  let seatHay;
  return terms.every((term, i) => hay.includes(term)
    || (seated.length === terms.length && (seatHay ??= foldSeats(text)).includes(seated[i])));
}
