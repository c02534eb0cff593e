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
    fn nfc_composes_alef_with_hamza() {
        assert_eq!(nfc("\u{0627}\u{0654}"), "\u{0623}");
        assert_eq!(nfc("e\u{0301}"), "é");
    }
}
