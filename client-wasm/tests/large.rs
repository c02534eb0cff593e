//! A record larger than the protocol's default frame limit (16 MiB). The
//! server keeps records up to `--max-record-mib` (32 MiB by default) and
//! sends a phone that lacks one the whole of it in one frame: the phone
//! must take it, or that record never syncs there.

#![allow(clippy::unwrap_used)] // a test panics to fail

mod common;

use automerge::transaction::Transactable;
use automerge::{Automerge, ROOT, ScalarValue};
use common::{NOW, demo_record, exchange, joined};
use twinsync_shared::demo;
use twinsync_shared::record::Kind;

#[test]
fn a_record_sent_in_a_frame_over_16_mib_reaches_the_phone() {
    let records = demo::build().unwrap();
    let club = demo_record(&records, Kind::Club);
    let mut doc = club.doc.doc().clone();
    // 20 MiB that no compression shrinks: a scan of a signed agreement.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let scan: Vec<u8> = (0..20 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect();
    let mut tx = doc.transaction();
    tx.put(ROOT, "scan", ScalarValue::Bytes(scan)).unwrap();
    tx.commit();

    let heads = doc.get_heads();
    let (mut server, mut phone) = joined(club.id);
    let me = phone.peer_id().clone();
    server.hold(&me, club.id, doc);
    let sent = server.take(&me, phone.outgoing());
    assert!(
        sent.iter().any(|f| f.len() > 16 << 20),
        "no frame over 16 MiB: {:?}",
        sent.iter().map(Vec::len).collect::<Vec<_>>()
    );
    for frame in sent {
        phone.receive(&frame, NOW).unwrap();
    }
    exchange(&mut server, &mut phone, |_, p| {
        p.snapshot(club.id)
            .is_some_and(|saved| Automerge::load(&saved).unwrap().get_heads() == heads)
    });
}
