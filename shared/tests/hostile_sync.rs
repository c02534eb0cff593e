//! Sync messages a hostile peer could craft. Automerge trusts the Bloom
//! filter parameters a message carries; the engine must refuse bad ones
//! with an error instead of panicking or allocating without bound.

#![allow(clippy::unwrap_used)] // a test panics to fail

use automerge::sync::{BloomFilter, Have, Message, MessageVersion};
use automerge::{AutoCommit, transaction::Transactable};
use twinsync_shared::protocol::{DocSync, SyncError};
use twinsync_shared::{DocumentId, PeerId};

/// A sync message whose only `have` entry holds a filter with the given
/// header (entries, bits per entry, probes) followed by `bits`.
fn message_with_bloom(entries: u8, bits_per_entry: u8, probes: &[u8], bits: &[u8]) -> Vec<u8> {
    let mut raw = vec![entries, bits_per_entry];
    raw.extend_from_slice(probes);
    raw.extend_from_slice(bits);
    let bloom = BloomFilter::try_from(raw.as_slice()).unwrap();
    Message {
        heads: Vec::new(),
        need: Vec::new(),
        have: vec![Have {
            last_sync: Vec::new(),
            bloom,
        }],
        changes: Vec::<Vec<u8>>::new().into(),
        flags: None,
        version: MessageVersion::V1,
    }
    .encode()
}

/// A document with a few changes, so that Automerge consults the filter.
fn doc_with_changes() -> automerge::Automerge {
    let mut doc = AutoCommit::new();
    for i in 0..3i64 {
        doc.put(automerge::ROOT, "n", i).unwrap();
        doc.commit();
    }
    doc.document().clone()
}

fn receive(data: &[u8]) -> (Result<(), SyncError>, automerge::Automerge) {
    let mut doc = doc_with_changes();
    let mut sync = DocSync::new(DocumentId::random());
    let result = sync
        .receive(&mut doc, &PeerId::new("hostile"), data)
        .map(|_| ());
    // Generating the answer is where Automerge walks the filter.
    let _ = sync.generate(&doc, &PeerId::new("server"));
    (result, doc)
}

#[test]
fn a_filter_with_entries_but_no_bits_is_refused() {
    let (result, doc) = receive(&message_with_bloom(5, 0, &[7], &[]));
    let err = result.unwrap_err();
    assert!(
        matches!(&err, SyncError::Malformed(m) if m.contains("Bloom") && m.contains("no bits")),
        "{err}"
    );
    assert_eq!(doc.get_changes(&[]).len(), 3, "the document is untouched");
}

#[test]
fn a_filter_asking_for_billions_of_probes_is_refused() {
    // LEB128 for 4_000_000_000.
    let probes = [0x80, 0xd0, 0xac, 0xf3, 0x0e];
    let (result, _) = receive(&message_with_bloom(1, 10, &probes, &[0xff, 0xff]));
    let err = result.unwrap_err();
    assert!(
        matches!(&err, SyncError::Malformed(m) if m.contains("4000000000 probes")),
        "{err}"
    );
}

#[test]
fn an_ordinary_filter_is_accepted() {
    let (result, doc) = receive(&message_with_bloom(1, 10, &[7], &[0x12, 0x34]));
    result.unwrap();
    assert_eq!(doc.get_changes(&[]).len(), 3);
}
