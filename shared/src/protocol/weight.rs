//! How much work bytes from a peer would give Automerge, read before
//! Automerge sees them. Automerge compresses well: a change inserting a
//! million equal characters takes 1,135 bytes as a compressed change chunk
//! (chunk type 2, DEFLATE over the whole change), and a saved document
//! deflates each large column. Automerge 0.12 inflates both without a
//! bound and then applies every op (3.4 s and half a GiB for that
//! million, on the machine the benchmarks ran on), so a few kilobytes in
//! one sync message could hold a record's task for minutes and exhaust
//! memory. Runs of equal ops cost a few bytes even uncompressed.
//!
//! [`weigh`] counts the ops in each chunk from its action column (one
//! entry per op, run-length encoded), inflating what Automerge would
//! inflate under a byte budget, and keeps nothing else. Automerge also
//! builds something for every entry of every column, and for every
//! predecessor or successor a group column counts, before it checks that
//! the columns agree: so every column's entries, and the counts group
//! columns hold, are bounded too (at [`ENTRIES_PER_OP`] an op), as is
//! the number of columns a chunk declares.

use std::io::Read;

use crate::record::{DEFLATE_BIT, chunk_body, chunks, column_specs, document_layout, read_leb128};

/// Why [`weigh`] refused bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WeighError {
    /// More than a message may hold: ops, column entries or inflated bytes.
    #[error("{0}")]
    Heavy(String),
    /// Bytes that do not read as Automerge chunks.
    #[error("{0}")]
    Unreadable(String),
}

impl From<String> for WeighError {
    fn from(reason: String) -> Self {
        WeighError::Unreadable(reason)
    }
}

impl From<&str> for WeighError {
    fn from(reason: &str) -> Self {
        WeighError::Unreadable(reason.to_owned())
    }
}

/// What bytes hold: ops, column entries (with the counts in group
/// columns), and bytes Automerge would inflate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Weight {
    pub ops: u64,
    pub entries: u64,
    pub inflated: u64,
}

/// Column entries a payload may hold per op it may hold. An op fills
/// about a dozen columns, and a saved change a dozen more: a record typed
/// one character a change holds about 25 entries an op.
pub const ENTRIES_PER_OP: u64 = 64;

/// What a column's spec says of its encoding (its low three bits).
const GROUP: u64 = 0;
const DELTA: u64 = 3;
const BOOLEAN: u64 = 4;
const STRING: u64 = 5;
const RAW_VALUES: u64 = 7;

/// The op columns' action column (column 4, integers).
const ACTION_COLUMN: u64 = 4 << 4 | 2;

const DOCUMENT: u8 = 0;
const CHANGE: u8 = 1;
const COMPRESSED_CHANGE: u8 = 2;

/// Weighs Automerge bytes (any run of chunks), refusing them as soon as
/// they hold more than `max_ops` ops or would inflate to more than
/// `max_inflated` bytes. Bytes that do not read as chunks end the walk,
/// as they end Automerge's; a chunk whose insides do not read is an error.
pub fn weigh(bytes: &[u8], max_ops: u64, max_inflated: u64) -> Result<Weight, WeighError> {
    let mut weight = Weight::default();
    let max_entries = max_ops.saturating_mul(ENTRIES_PER_OP);
    for (kind, chunk) in chunks(bytes) {
        let Some(chunk) = chunk else { break };
        let body = chunk_body(chunk).ok_or("a chunk cut short")?;
        let counted = match kind {
            DOCUMENT => document_columns(body, &mut weight, max_inflated)?,
            CHANGE => change_columns(body)?,
            COMPRESSED_CHANGE => {
                let inflated = inflate(body, &mut weight, max_inflated)?;
                change_columns(&inflated)?
            }
            // Bundles are refused before this; Automerge refuses the rest.
            _ => Weight::default(),
        };
        weight.ops = weight.ops.saturating_add(counted.ops);
        weight.entries = weight.entries.saturating_add(counted.entries);
        if weight.ops > max_ops {
            return Err(WeighError::Heavy(format!(
                "it holds over {max_ops} operations, the most one message may carry"
            )));
        }
        if weight.entries > max_entries {
            return Err(WeighError::Heavy(format!(
                "its columns hold over {max_entries} entries, {ENTRIES_PER_OP} for each of the {max_ops} operations one message may carry"
            )));
        }
    }
    Ok(weight)
}

/// Inflates DEFLATE `data`, counting what it yields against the budget.
fn inflate(data: &[u8], weight: &mut Weight, max_inflated: u64) -> Result<Vec<u8>, WeighError> {
    let budget = max_inflated.saturating_sub(weight.inflated);
    let mut out = Vec::new();
    flate2::bufread::DeflateDecoder::new(data)
        .take(budget.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| format!("a compressed chunk that does not inflate: {e}"))?;
    weight.inflated += out.len() as u64;
    if weight.inflated > max_inflated {
        return Err(WeighError::Heavy(format!(
            "it inflates to over {max_inflated} bytes, the most one message may"
        )));
    }
    Ok(out)
}

/// The ops and column entries of a change chunk's body: its header
/// (dependencies, author, sequence number, first op, time, message, other
/// actors), the op columns' specs and lengths, then their data.
fn change_columns(body: &[u8]) -> Result<Weight, String> {
    let unreadable = || "a change whose header does not read".to_owned();
    let mut rest = body;
    let read = |rest: &mut &[u8]| read_leb128(rest).ok_or_else(unreadable);
    let skip = |rest: &mut &[u8], n: u64| -> Result<(), String> {
        let n = usize::try_from(n).map_err(|_| unreadable())?;
        *rest = rest.get(n..).ok_or_else(unreadable)?;
        Ok(())
    };
    let deps = read(&mut rest)?;
    skip(&mut rest, deps.checked_mul(32).ok_or_else(unreadable)?)?;
    let actor = read(&mut rest)?;
    skip(&mut rest, actor)?;
    for _field in ["seq", "start op", "time"] {
        read(&mut rest)?;
    }
    let message = read(&mut rest)?;
    skip(&mut rest, message)?;
    for _ in 0..read(&mut rest)? {
        let actor = read(&mut rest)?;
        skip(&mut rest, actor)?;
    }
    let columns = column_specs(&mut rest, 1)?;
    let mut weight = Weight::default();
    for (_, spec, len) in columns {
        let len = usize::try_from(len).map_err(|_| unreadable())?;
        let data = rest.get(..len).ok_or_else(unreadable)?;
        rest = &rest[len..];
        count_column(spec, data, spec == ACTION_COLUMN, &mut weight)?;
    }
    Ok(weight)
}

/// Adds a column's entries (and, for a group column, the counts it holds)
/// to `weight`, and its entries to the ops if it is the action column.
fn count_column(
    spec: u64,
    data: &[u8],
    is_action: bool,
    weight: &mut Weight,
) -> Result<(), String> {
    let (entries, counts) = column_entries(spec & 7, data)?;
    weight.entries = weight
        .entries
        .saturating_add(entries)
        .saturating_add(counts);
    if is_action {
        weight.ops = weight.ops.saturating_add(entries);
    }
    Ok(())
}

/// The ops and column entries of a saved document's body: actors, heads,
/// the change and op columns' specs and lengths, their data, the heads'
/// indices. Every deflated column is inflated against the budget, as
/// Automerge would inflate it.
fn document_columns(
    body: &[u8],
    budget: &mut Weight,
    max_inflated: u64,
) -> Result<Weight, WeighError> {
    let mut weight = Weight::default();
    for (op, spec, data) in document_layout(body)?.columns {
        let is_action = op && spec & !DEFLATE_BIT == ACTION_COLUMN;
        if spec & DEFLATE_BIT != 0 {
            let inflated = inflate(data, budget, max_inflated)?;
            count_column(spec, &inflated, is_action, &mut weight)?;
        } else {
            count_column(spec, data, is_action, &mut weight)?;
        }
    }
    Ok(weight)
}

/// How many entries a column holds, by its encoding, and for a group
/// column the sum of the counts it holds (entries of the columns it
/// groups). Raw values count none: other columns give their lengths.
fn column_entries(encoding: u64, mut data: &[u8]) -> Result<(u64, u64), String> {
    let unreadable = || "a column that does not read".to_owned();
    let mut entries: u64 = 0;
    let mut counts: u64 = 0;
    match encoding {
        RAW_VALUES => {}
        BOOLEAN => {
            // Counts of false, true, false, ... in turn.
            while !data.is_empty() {
                let run = read_leb128(&mut data).ok_or_else(unreadable)?;
                entries = entries.saturating_add(run);
            }
        }
        _ => {
            // Run-length encoded: a positive count and one value, a
            // negative count and that many values, or zero and a count of
            // nulls. Values: signed for delta columns, length-prefixed
            // for strings, unsigned for the rest.
            let value = |data: &mut &[u8]| -> Result<u64, String> {
                match encoding {
                    DELTA => read_sleb128(data).map(|_| 0).ok_or_else(unreadable),
                    STRING => {
                        let len = read_leb128(data).ok_or_else(unreadable)?;
                        let len = usize::try_from(len).map_err(|_| unreadable())?;
                        *data = data.get(len..).ok_or_else(unreadable)?;
                        Ok(0)
                    }
                    _ => read_leb128(data).ok_or_else(unreadable),
                }
            };
            while !data.is_empty() {
                let count = read_sleb128(&mut data).ok_or_else(unreadable)?;
                let run = count.unsigned_abs();
                match count {
                    0 => {
                        let nulls = read_leb128(&mut data).ok_or_else(unreadable)?;
                        entries = entries.saturating_add(nulls);
                        continue;
                    }
                    n if n > 0 => {
                        let v = value(&mut data)?;
                        counts = counts.saturating_add(v.saturating_mul(run));
                    }
                    _ => {
                        for _ in 0..run {
                            let v = value(&mut data)?;
                            counts = counts.saturating_add(v);
                        }
                    }
                }
                entries = entries.saturating_add(run);
            }
        }
    }
    Ok((entries, if encoding == GROUP { counts } else { 0 }))
}

/// Reads one signed LEB128 number (at most ten bytes).
fn read_sleb128(input: &mut &[u8]) -> Option<i64> {
    let mut value: i64 = 0;
    for (i, &byte) in input.iter().enumerate().take(10) {
        let shift = 7 * i as u32;
        value |= i64::from(byte & 0x7f).checked_shl(shift).unwrap_or(0);
        if byte & 0x80 == 0 {
            if shift + 7 < 64 && byte & 0x40 != 0 {
                value |= -1i64 << (shift + 7);
            }
            *input = &input[i + 1..];
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use automerge::{ReadDoc, transaction::Transactable};

    /// A record with a text typed, partly deleted, map values overwritten
    /// and a list: ops of every kind, by two authors.
    fn record(chars: usize) -> automerge::Automerge {
        let mut doc = crate::record::new_document();
        let text = doc
            .transact(|tx| tx.put_object(automerge::ROOT, "minutes", automerge::ObjType::Text))
            .unwrap()
            .result;
        let words = "محضر الاجتماع — compte rendu ".repeat(chars / 20 + 1);
        let words: String = words.chars().take(chars).collect();
        doc.transact(|tx| tx.splice_text(&text, 0, 0, &words))
            .unwrap();
        let mut other = doc.fork();
        other
            .transact(|tx| tx.splice_text(&text, 0, chars as isize / 3, ""))
            .unwrap();
        for n in 0..20i64 {
            doc.transact(|tx| tx.put(automerge::ROOT, "status", n))
                .unwrap();
        }
        doc.merge(&mut other).unwrap();
        doc
    }

    #[test]
    fn a_change_weighs_its_ops_compressed_or_not() {
        for chars in [0, 5, 300, 4000] {
            let doc = record(chars);
            for mut change in doc.get_changes(&[]) {
                let ops = change.len() as u64;
                let raw = weigh(change.raw_bytes(), u64::MAX, u64::MAX).unwrap();
                assert_eq!(raw.ops, ops);
                assert_eq!(raw.inflated, 0);
                let compressed = change.bytes().to_vec();
                assert_eq!(weigh(&compressed, u64::MAX, u64::MAX).unwrap().ops, ops);
            }
        }
    }

    #[test]
    fn a_saved_document_weighs_the_ops_it_holds() {
        for chars in [0, 5, 300, 4000] {
            let doc = record(chars);
            let saved = doc.save();
            let weight = weigh(&saved, u64::MAX, u64::MAX).unwrap();
            assert_eq!(weight.ops, doc.stats().num_ops, "{chars} characters");
            // Each change's bytes after the save: the same walk over both.
            let both = [saved.clone(), doc.save_after(&[])].concat();
            let changes: u64 = doc.get_changes(&[]).iter().map(|c| c.len() as u64).sum();
            assert_eq!(
                weigh(&both, u64::MAX, u64::MAX).unwrap().ops,
                weight.ops + changes
            );
        }
    }

    #[test]
    fn a_million_equal_characters_in_a_kilobyte_are_refused_unread() {
        let mut doc = crate::record::new_document();
        let text = doc
            .transact(|tx| tx.put_object(automerge::ROOT, "t", automerge::ObjType::Text))
            .unwrap()
            .result;
        doc.transact(|tx| tx.splice_text(&text, 0, 0, &"a".repeat(1_000_000)))
            .unwrap();
        let mut change = doc.get_last_local_change().unwrap();
        let compressed = change.bytes().to_vec();
        assert!(compressed.len() < 2_000, "{} bytes", compressed.len());
        let error = weigh(&compressed, 100_000, u64::MAX).unwrap_err();
        assert!(
            matches!(&error, WeighError::Heavy(m) if m.contains("over 100000 operations")),
            "{error}"
        );
        let error = weigh(&compressed, u64::MAX, 64 * 1024).unwrap_err();
        assert!(
            matches!(&error, WeighError::Heavy(m) if m.contains("inflates to over 65536 bytes")),
            "{error}"
        );
        let saved = doc.save();
        assert!(saved.len() < 10_000, "{} bytes", saved.len());
        let error = weigh(&saved, 100_000, u64::MAX).unwrap_err();
        assert!(
            matches!(&error, WeighError::Heavy(m) if m.contains("over 100000 operations")),
            "{error}"
        );
        assert_eq!(doc.length(&text), 1_000_000);
    }

    /// A change chunk with one column, `spec`, holding `data` (the
    /// checksum is not read here).
    fn change_with_column(spec: u8, data: &[u8]) -> Vec<u8> {
        // No dependencies, author "a", seq 1, first op 1, time 0, no
        // message, no other actors, one column.
        let mut body = vec![0, 1, b'a', 1, 1, 0, 0, 0, 1, spec, data.len() as u8];
        body.extend_from_slice(data);
        let mut chunk = vec![0x85, 0x6f, 0x4a, 0x83, 0, 0, 0, 0, CHANGE, body.len() as u8];
        chunk.extend_from_slice(&body);
        chunk
    }

    /// Bytes that do not read are malformed, not too heavy: a peer is not
    /// told its changes were too large when they were never changes.
    #[test]
    fn a_compressed_chunk_that_does_not_inflate_is_unreadable_not_heavy() {
        // DEFLATE's reserved block type.
        let body = [0xff; 16];
        let mut chunk = vec![0x85, 0x6f, 0x4a, 0x83, 0, 0, 0, 0, COMPRESSED_CHANGE, 16];
        chunk.extend_from_slice(&body);
        let error = weigh(&chunk, 1_000_000, u64::MAX).unwrap_err();
        assert!(
            matches!(&error, WeighError::Unreadable(m) if m.contains("does not inflate")),
            "{error:?}"
        );
    }

    #[test]
    fn a_column_packing_a_billion_entries_is_refused() {
        // One op, whose predecessor count says a billion: a run of one
        // count of 1,000,000,000 (0x80 0x94 0xeb 0xdc 0x03).
        let preds = change_with_column(0x70, &[0x01, 0x80, 0x94, 0xeb, 0xdc, 0x03]);
        let error = weigh(&preds, 1_000_000, u64::MAX).unwrap_err();
        assert!(
            matches!(&error, WeighError::Heavy(m) if m.contains("over 64000000 entries")),
            "{error}"
        );
        // A billion nulls in any column.
        let nulls = change_with_column(0x11, &[0x00, 0x80, 0x94, 0xeb, 0xdc, 0x03]);
        assert!(weigh(&nulls, 1_000_000, u64::MAX).is_err());
        // A billion falses.
        let falses = change_with_column(0x54, &[0x80, 0x94, 0xeb, 0xdc, 0x03]);
        assert!(weigh(&falses, 1_000_000, u64::MAX).is_err());
        // Runs that would add past 2^64 stay counted as too many.
        let huge = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x3f, 0x01];
        let runs = change_with_column(0x42, &[&huge[..], &huge[..]].concat());
        assert!(weigh(&runs, 1_000_000, u64::MAX).is_err());
        // The same shapes, small, are counted as they are.
        let small = change_with_column(0x42, &[0x03, 0x01]);
        let weight = weigh(&small, 1_000_000, u64::MAX).unwrap();
        assert_eq!((weight.ops, weight.entries), (3, 3));
    }

    #[test]
    fn a_chunk_declaring_thousands_of_columns_is_refused() {
        let mut body = vec![0, 1, b'a', 1, 1, 0, 0, 0];
        body.extend_from_slice(&[0x90, 0x4e]); // 10,000 columns
        body.extend(std::iter::repeat_n([0x01, 0x00], 10_000).flatten());
        let mut chunk = vec![0x85, 0x6f, 0x4a, 0x83, 0, 0, 0, 0, CHANGE];
        let mut len = body.len() as u64;
        while len >= 0x80 {
            chunk.push((len & 0x7f) as u8 | 0x80);
            len >>= 7;
        }
        chunk.push(len as u8);
        chunk.extend_from_slice(&body);
        let error = weigh(&chunk, 1_000_000, u64::MAX).unwrap_err();
        // Automerge writes fewer than 30: not a change it wrote.
        assert!(
            matches!(&error, WeighError::Unreadable(m) if m.contains("over 64 columns")),
            "{error}"
        );
    }

    #[test]
    fn a_records_columns_stay_far_below_the_entries_bound() {
        for chars in [5, 300, 4000] {
            let doc = record(chars);
            // Twenty changes of one op each, and a few large ones.
            let weight = weigh(&doc.save(), u64::MAX, u64::MAX).unwrap();
            assert!(
                weight.entries <= weight.ops * ENTRIES_PER_OP / 2,
                "{weight:?}"
            );
            for change in doc.get_changes(&[]) {
                let weight = weigh(change.raw_bytes(), u64::MAX, u64::MAX).unwrap();
                assert!(weight.entries <= weight.ops * 16, "{weight:?}");
            }
        }
    }

    #[test]
    fn signed_numbers_read_as_written() {
        for n in [
            0i64,
            1,
            -1,
            63,
            64,
            -64,
            -65,
            1000,
            -1000,
            i64::MAX,
            i64::MIN,
        ] {
            let mut bytes = Vec::new();
            let mut v = n;
            loop {
                let byte = (v & 0x7f) as u8;
                v >>= 7;
                let done = (v == 0 && byte & 0x40 == 0) || (v == -1 && byte & 0x40 != 0);
                bytes.push(if done { byte } else { byte | 0x80 });
                if done {
                    break;
                }
            }
            let mut input = bytes.as_slice();
            assert_eq!(read_sleb128(&mut input), Some(n));
            assert!(input.is_empty());
        }
    }
}
