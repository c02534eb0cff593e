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
    #[error(
        "offset {0} falls inside characters an earlier insert of this batch wrote that the record keeps composed (NFC); splice whole characters"
    )]
    InsideComposed(usize),
}

/// NFC form of a string.
pub fn nfc(s: &str) -> String {
    s.nfc().collect()
}

/// For each character position of `written` (its end left out), the
/// position in `nfc(written)` that holds the same text, where there is
/// one. NFC never joins a character that is a normalisation boundary (a
/// starter whose NFC quick check is Yes) to what precedes it, so a
/// position before one keeps its place exactly; inside a run between two
/// boundaries, a position has one only if the run normalised on either
/// side of it is the run normalised whole (such runs are a character and
/// its marks; past [`MAX_RUN`] characters, none inside is given, unless
/// the run is in NFC already).
pub fn nfc_positions(written: &str) -> Vec<Option<usize>> {
    use unicode_normalization::char::canonical_combining_class;
    use unicode_normalization::{IsNormalized, is_nfc_quick};
    let boundary = |c: char| {
        canonical_combining_class(c) == 0 && is_nfc_quick(std::iter::once(c)) == IsNormalized::Yes
    };
    let mut runs: Vec<&str> = Vec::new();
    let mut start = 0;
    for (b, c) in written.char_indices() {
        if b > start && boundary(c) {
            runs.push(&written[start..b]);
            start = b;
        }
    }
    runs.push(&written[start..]);
    let mut positions = Vec::with_capacity(written.len());
    let mut base = 0;
    for run in runs {
        let whole = nfc(run);
        let same = whole == run;
        let long = run.chars().nth(MAX_RUN).is_some();
        for (j, (b, _)) in run.char_indices().enumerate() {
            positions.push(if j == 0 || same {
                Some(base + j)
            } else if long {
                None
            } else {
                let (before, after) = (nfc(&run[..b]), nfc(&run[b..]));
                (before.len() + after.len() == whole.len()
                    && whole.starts_with(&before)
                    && whole.ends_with(&after))
                .then(|| base + before.chars().count())
            });
        }
        base += whole.chars().count();
    }
    if base != nfc(written).chars().count() {
        // Runs that normalise apart differently from together: no place
        // but the start is sure.
        positions.iter_mut().skip(1).for_each(|p| *p = None);
    }
    positions
}

/// The longest run between two normalisation boundaries whose positions
/// [`nfc_positions`] works out one by one (each costs the run normalised
/// twice).
pub const MAX_RUN: usize = 32;

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
    let end = start.checked_add(len).ok_or(OffsetError::PastEnd {
        offset: start,
        len: text.encode_utf16().count(),
    })?;
    let end = utf16_to_index(text, end)?;
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
        // e, its mark, t, e, its mark, space, x: between a letter and its
        // mark there is no place in the composed text.
        let (y, n) = (Some, None::<usize>);
        assert_eq!(nfc_positions(written), [y(0), n, y(1), y(2), n, y(3), y(4)]);
        // Alef and hamza above, then a space: "أ ب".
        let arabic = "\u{0627}\u{0654} \u{0628}";
        assert_eq!(nfc_positions(arabic), [y(0), n, y(1), y(2)]);
        // Tamil o written as its two vowel signs, both starters: they
        // compose into one letter, then a space and x.
        let tamil = "\u{0BC6}\u{0BBE} x";
        assert_eq!(nfc(tamil), "\u{0BCA} x");
        assert_eq!(nfc_positions(tamil), [y(0), n, y(1), y(2)]);
        // Hangul jamo compose into a syllable.
        let hangul = "\u{1100}\u{1161}\u{11A8}a";
        assert_eq!(nfc(hangul), "\u{AC01}a");
        assert_eq!(nfc_positions(hangul), [y(0), n, n, y(1)]);
        // Nothing to normalise: every position is its own.
        let plain = "مُحَمَّد et café";
        let count = plain.chars().count();
        assert_eq!(
            nfc_positions(plain),
            (0..count).map(Some).collect::<Vec<_>>()
        );
        // A letter under a hundred marks: no place inside is worked out.
        let piled = format!("a{}b", "\u{0301}".repeat(100));
        let positions = nfc_positions(&piled);
        assert_eq!(positions[0], Some(0));
        assert!(positions[1..=100].iter().all(Option::is_none));
        assert_eq!(positions[101], Some(nfc(&piled).chars().count() - 1));
        // The same run once in NFC: every place is its own.
        let composed = nfc(&piled);
        let count = composed.chars().count();
        assert_eq!(
            nfc_positions(&composed),
            (0..count).map(Some).collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_range_past_every_offset_is_past_the_end() {
        assert!(matches!(
            utf16_range("abc", 1, usize::MAX),
            Err(OffsetError::PastEnd { .. })
        ));
    }

    #[test]
    fn nfc_composes_alef_with_hamza() {
        assert_eq!(nfc("\u{0627}\u{0654}"), "\u{0623}");
        assert_eq!(nfc("e\u{0301}"), "é");
    }
}
