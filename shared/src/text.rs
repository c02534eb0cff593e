//! Text in one encoding for the whole system.
//!
//! Every Automerge document in twinsync indexes text by Unicode code point
//! ([`TEXT_ENCODING`]), on the server, in tests and in the browser. The
//! browser counts in UTF-16 code units, so the client converts its offsets
//! with [`utf16_to_index`] at the boundary and nowhere else.
//!
//! Short fields are normalised to NFC as a whole. Long collaborative text is
//! normalised insert by insert: normalising the whole text would move other
//! writers' offsets under their feet.

use automerge::TextEncoding;
use unicode_normalization::UnicodeNormalization;

/// The text indexing of every document twinsync creates or loads.
pub const TEXT_ENCODING: TextEncoding = TextEncoding::UnicodeCodePoint;

/// Why a browser offset does not fall on a character boundary of the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OffsetError {
    #[error("offset {offset} is past the end of the text ({len} UTF-16 units)")]
    PastEnd { offset: usize, len: usize },
    #[error("offset {0} falls inside a surrogate pair")]
    InsideSurrogatePair(usize),
}

/// NFC form of a string.
pub fn nfc(s: &str) -> String {
    s.nfc().collect()
}

/// For each character position of `written` (its end left out), the
/// position in `nfc(written)` that holds the same text. Normalisation only
/// changes a character with the marks that follow it, so a position before
/// a character that starts anew (an ASCII character, or any whose
/// combining class is 0 outside the Hangul jamo, which compose with one
/// another) keeps its text's place exactly; one inside such a run falls
/// where the run's start, normalised alone, ends.
pub fn nfc_positions(written: &str) -> Vec<usize> {
    use unicode_normalization::char::canonical_combining_class;
    let hangul = |c: char| matches!(c, '\u{1100}'..='\u{11FF}' | '\u{A960}'..='\u{A97F}' | '\u{D7B0}'..='\u{D7FF}' | '\u{AC00}'..='\u{D7A3}');
    let fresh = |c: char| c.is_ascii() || (canonical_combining_class(c) == 0 && !hangul(c));
    let mut runs: Vec<&str> = Vec::new();
    let mut start = 0;
    for (b, c) in written.char_indices() {
        if b > start && fresh(c) {
            runs.push(&written[start..b]);
            start = b;
        }
    }
    runs.push(&written[start..]);
    let whole = nfc(written).chars().count();
    let mut positions = Vec::with_capacity(written.len());
    let mut base = 0;
    for run in runs {
        let kept = nfc(run).chars().count();
        let mut last = 0;
        for (j, (b, _)) in run.char_indices().enumerate() {
            let here = if j == 0 {
                0
            } else {
                nfc(&run[..b]).chars().count()
            };
            last = here.clamp(last, kept);
            positions.push(base + last);
        }
        base += kept;
    }
    if base != whole {
        // A composition across runs this split did not foresee: keep the
        // positions in order, within the text.
        for p in &mut positions {
            *p = (*p).min(whole);
        }
    }
    positions
}

/// The code-point index of a UTF-16 offset into `text`.
pub fn utf16_to_index(text: &str, offset: usize) -> Result<usize, OffsetError> {
    let mut units = 0;
    for (index, c) in text.chars().enumerate() {
        if units == offset {
            return Ok(index);
        }
        units += c.len_utf16();
        if units > offset {
            return Err(OffsetError::InsideSurrogatePair(offset));
        }
    }
    if units == offset {
        Ok(text.chars().count())
    } else {
        Err(OffsetError::PastEnd { offset, len: units })
    }
}

/// The UTF-16 offset of a code-point index into `text` (clamped to its end).
pub fn index_to_utf16(text: &str, index: usize) -> usize {
    text.chars().take(index).map(char::len_utf16).sum()
}

/// A UTF-16 range (`start`, `len`) of `text` as a code-point index and count.
pub fn utf16_range(text: &str, start: usize, len: usize) -> Result<(usize, usize), OffsetError> {
    let index = utf16_to_index(text, start)?;
    let end = utf16_to_index(text, start + len)?;
    Ok((index, end - index))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn arabic_with_marks_is_one_unit_per_code_point() {
        // "مُحَمَّد": letters carrying damma, fatha and shadda.
        let word = "مُحَمَّد";
        assert_eq!(word.chars().count(), 8);
        for i in 0..=8 {
            assert_eq!(utf16_to_index(word, i), Ok(i));
        }
    }

    #[test]
    fn emoji_outside_the_bmp_count_twice_in_utf16() {
        let s = "a🌍b";
        assert_eq!(utf16_to_index(s, 3), Ok(2));
        assert_eq!(
            utf16_to_index(s, 2),
            Err(OffsetError::InsideSurrogatePair(2))
        );
        assert_eq!(
            utf16_to_index(s, 5),
            Err(OffsetError::PastEnd { offset: 5, len: 4 })
        );
        assert_eq!(index_to_utf16(s, 2), 3);
    }

    #[test]
    fn positions_after_normalised_marks_keep_their_text() {
        // "été " typed with its accents as separate marks.
        let written = "e\u{301}te\u{301} x";
        assert_eq!(nfc(written), "été x");
        // e, its mark, t, e, its mark, space, x.
        assert_eq!(nfc_positions(written), [0, 1, 1, 2, 3, 3, 4]);
        // Alef and hamza above, then a space: "أ ب".
        let arabic = "\u{0627}\u{0654} \u{0628}";
        assert_eq!(nfc_positions(arabic), [0, 1, 1, 2]);
        // Nothing to normalise: every position is its own.
        let plain = "مُحَمَّد et café";
        let n = plain.chars().count();
        assert_eq!(nfc_positions(plain), (0..n).collect::<Vec<_>>());
    }

    #[test]
    fn nfc_composes_alef_with_hamza() {
        assert_eq!(nfc("\u{0627}\u{0654}"), "\u{0623}");
        assert_eq!(nfc("e\u{0301}"), "é");
    }
}
