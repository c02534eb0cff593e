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
//! inflate under a byte budget, and keeps nothing else.

use std::io::Read;

use crate::record::{chunks, read_leb128};

/// What bytes hold: ops, and bytes Automerge would inflate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Weight {
    pub ops: u64,
    pub inflated: u64,
}

/// The op columns' action column (column 4, integers), and the bit a
/// saved document sets on a column it deflated.
const ACTION_COLUMN: u64 = 4 << 4 | 2;
const DEFLATE_BIT: u64 = 8;

const DOCUMENT: u8 = 0;
const CHANGE: u8 = 1;
const COMPRESSED_CHANGE: u8 = 2;

/// Weighs Automerge bytes (any run of chunks), refusing them as soon as
/// they hold more than `max_ops` ops or would inflate to more than
/// `max_inflated` bytes. Bytes that do not read as chunks end the walk,
/// as they end Automerge's; a chunk whose insides do not read is an error.
pub fn weigh(bytes: &[u8], max_ops: u64, max_inflated: u64) -> Result<Weight, String> {
    let mut weight = Weight::default();
    for (kind, chunk) in chunks(bytes) {
        let Some(chunk) = chunk else { break };
        let mut body = chunk.get(9..).ok_or("a chunk cut short")?;
        read_leb128(&mut body).ok_or("a chunk cut short")?;
        match kind {
            DOCUMENT => weight.ops += document_ops(body, &mut weight, max_inflated)?,
            CHANGE => weight.ops += change_ops(body)?,
            COMPRESSED_CHANGE => {
                let inflated = inflate(body, &mut weight, max_inflated)?;
                weight.ops += change_ops(&inflated)?;
            }
            // Bundles are refused before this; Automerge refuses the rest.
            _ => {}
        }
        if weight.ops > max_ops {
            return Err(format!(
                "it holds over {max_ops} operations, the most one message may carry"
            ));
        }
    }
    Ok(weight)
}

/// Inflates DEFLATE `data`, counting what it yields against the budget.
fn inflate(data: &[u8], weight: &mut Weight, max_inflated: u64) -> Result<Vec<u8>, String> {
    let budget = max_inflated.saturating_sub(weight.inflated);
    let mut out = Vec::new();
    flate2::bufread::DeflateDecoder::new(data)
        .take(budget.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| format!("a compressed chunk that does not inflate: {e}"))?;
    weight.inflated += out.len() as u64;
    if weight.inflated > max_inflated {
        return Err(format!(
            "it inflates to over {max_inflated} bytes, the most one message may"
        ));
    }
    Ok(out)
}

/// The ops of a change chunk's body: its header (dependencies, author,
/// sequence number, first op, time, message, other actors), the op
/// columns' specs and lengths, then their data.
fn change_ops(body: &[u8]) -> Result<u64, String> {
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
    let mut columns = Vec::new();
    for _ in 0..read(&mut rest)? {
        columns.push((read(&mut rest)?, read(&mut rest)?));
    }
    let mut ops = 0;
    for (spec, len) in columns {
        let len = usize::try_from(len).map_err(|_| unreadable())?;
        let data = rest.get(..len).ok_or_else(unreadable)?;
        if spec == ACTION_COLUMN {
            ops = run_length(data)?;
        }
        rest = &rest[len..];
    }
    Ok(ops)
}

/// The ops of a saved document's body: actors, heads, the change and op
/// columns' specs and lengths, their data, the heads' indices. Every
/// deflated column is inflated against the budget, as Automerge would
/// inflate it; only the action column is read.
fn document_ops(body: &[u8], weight: &mut Weight, max_inflated: u64) -> Result<u64, String> {
    let unreadable = || "a saved document whose header does not read".to_owned();
    let mut rest = body;
    let read = |rest: &mut &[u8]| read_leb128(rest).ok_or_else(unreadable);
    for _ in 0..read(&mut rest)? {
        let actor = usize::try_from(read(&mut rest)?).map_err(|_| unreadable())?;
        rest = rest.get(actor..).ok_or_else(unreadable)?;
    }
    let heads = usize::try_from(read(&mut rest)?).map_err(|_| unreadable())?;
    rest = rest
        .get(heads.checked_mul(32).ok_or_else(unreadable)?..)
        .ok_or_else(unreadable)?;
    let mut columns = Vec::new();
    for list in ["change", "op"] {
        for _ in 0..read(&mut rest)? {
            columns.push((list, read(&mut rest)?, read(&mut rest)?));
        }
    }
    let mut ops = 0;
    for (list, spec, len) in columns {
        let len = usize::try_from(len).map_err(|_| unreadable())?;
        let data = rest.get(..len).ok_or_else(unreadable)?;
        rest = &rest[len..];
        let is_action = list == "op" && spec & !DEFLATE_BIT == ACTION_COLUMN;
        if spec & DEFLATE_BIT != 0 {
            let inflated = inflate(data, weight, max_inflated)?;
            if is_action {
                ops = run_length(&inflated)?;
            }
        } else if is_action {
            ops = run_length(data)?;
        }
    }
    Ok(ops)
}

/// How many entries a run-length encoded column holds: runs of a signed
/// count and then one value (repeated), minus a count of literal values,
/// or zero and a count of nulls.
fn run_length(mut data: &[u8]) -> Result<u64, String> {
    let unreadable = || "an op column that does not read".to_owned();
    let mut entries: u64 = 0;
    while !data.is_empty() {
        let count = read_sleb128(&mut data).ok_or_else(unreadable)?;
        let run = match count {
            0 => read_leb128(&mut data).ok_or_else(unreadable)?,
            n if n > 0 => {
                read_leb128(&mut data).ok_or_else(unreadable)?;
                n.unsigned_abs()
            }
            n => {
                for _ in 0..n.unsigned_abs() {
                    read_leb128(&mut data).ok_or_else(unreadable)?;
                }
                n.unsigned_abs()
            }
        };
        entries = entries.saturating_add(run);
    }
    Ok(entries)
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
        assert!(error.contains("over 100000 operations"), "{error}");
        let error = weigh(&compressed, u64::MAX, 64 * 1024).unwrap_err();
        assert!(error.contains("inflates to over 65536 bytes"), "{error}");
        let saved = doc.save();
        assert!(saved.len() < 10_000, "{} bytes", saved.len());
        let error = weigh(&saved, 100_000, u64::MAX).unwrap_err();
        assert!(error.contains("over 100000 operations"), "{error}");
        assert_eq!(doc.length(&text), 1_000_000);
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
