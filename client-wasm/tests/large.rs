//! A record larger than the protocol's default frame limit (16 MiB). The
//! server keeps records up to `--max-record-mib` (32 MiB by default) and
//! sends a phone that lacks one the whole of it in one frame: the phone
//! must take it, or that record never syncs there.

#![allow(clippy::unwrap_used)] // a test panics to fail

mod common;

use std::collections::HashMap;

use automerge::transaction::Transactable;
use automerge::{Automerge, ROOT, ScalarValue};
use common::{NOW, Server, exchange};
use twinsync_client::replica::Replica;
use twinsync_shared::protocol::{DocSync, Message, PROTOCOL_VERSION, PeerMetadata};
use twinsync_shared::record::Kind;
use twinsync_shared::{PeerId, StorageId, demo};

#[test]
fn a_record_sent_in_a_frame_over_16_mib_reaches_the_phone() {
    let records = demo::build().unwrap();
    let club = records
        .iter()
        .find(|r| r.doc.kind() == Some(Kind::Club))
        .unwrap();
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

    let (server_id, phone_id) = (PeerId::new("server"), PeerId::new("phone"));
    let mut sync = DocSync::new(club.id);
    sync.add_peer(phone_id.clone(), Default::default());
    let heads = doc.get_heads();
    let mut server = Server {
        me: server_id.clone(),
        docs: HashMap::from([(club.id, (doc, sync))]),
    };
    let mut phone = Replica::new(phone_id.clone(), StorageId::new("phone-storage"));
    phone.set_club(club.id);
    let accept = Message::Peer {
        sender_id: server_id,
        target_id: phone_id,
        peer_metadata: PeerMetadata::default(),
        selected_protocol_version: PROTOCOL_VERSION.into(),
    };
    phone.receive(&accept.encode(), NOW).unwrap();
    let me = phone.peer_id().clone();
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
