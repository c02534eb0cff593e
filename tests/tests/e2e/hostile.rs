//! Bad input: each gets a protocol `error` naming the problem, the socket
//! closes where going on makes no sense, nothing is stored or relayed, and
//! other peers keep being served.

use std::time::Duration;

use tokio_tungstenite::tungstenite::Message as WsMessage;
use twinsync_shared::protocol::Message;
use twinsync_shared::record::{Edit, Record};
use twinsync_shared::{DocumentId, PeerId};
use twinsync_tests::{TestApp, TestPeer, spawn_app, spawn_app_with};

const LIMIT: Duration = Duration::from_secs(10);

/// Sends `frame` from a fresh peer (joined first if `join`) and returns the
/// errors it got and whether the server closed the socket.
async fn answer_to(app: &TestApp, join: bool, frame: WsMessage) -> (Vec<String>, bool) {
    let mut p = TestPeer::new("hostile");
    if join {
        p.connect(app).await;
    } else {
        p.connect_raw(app).await;
    }
    p.send_raw(frame).await;
    p.sync(Duration::from_millis(300), LIMIT).await;
    (p.seen.errors.clone(), p.seen.closed)
}

fn sync_frame(sender: &str, doc: DocumentId, data: Vec<u8>) -> WsMessage {
    let msg = Message::Sync {
        sender_id: PeerId::new(sender),
        target_id: PeerId::new("server"),
        document_id: doc,
        data,
    };
    WsMessage::Binary(msg.encode().into())
}

#[tokio::test]
async fn malformed_frames_are_refused_and_the_socket_closed() {
    let app = spawn_app().await;
    let (errors, closed) =
        answer_to(&app, true, WsMessage::Binary(vec![0xff, 0x00, 0x13].into())).await;
    assert!(closed);
    assert!(errors[0].starts_with("malformed frame"), "{errors:?}");

    let (errors, closed) = answer_to(
        &app,
        true,
        WsMessage::Binary(vec![0xa1, 0x64, b't', b'y', b'p', b'e', 0x01].into()),
    )
    .await;
    assert!(closed);
    assert!(errors[0].contains("`type`"), "{errors:?}");

    let (errors, closed) =
        answer_to(&app, true, WsMessage::Text("{\"type\":\"sync\"}".into())).await;
    assert!(closed);
    assert!(errors[0].contains("text frames"), "{errors:?}");
}

#[tokio::test]
async fn a_message_before_join_is_refused() {
    let app = spawn_app().await;
    let doc = app.first("meeting").await;
    let (errors, closed) = answer_to(&app, false, sync_frame("hostile", doc, vec![0x42])).await;
    assert!(closed);
    assert!(errors[0].contains("expected `join` first"), "{errors:?}");
}

#[tokio::test]
async fn a_sender_id_that_did_not_join_is_refused() {
    let app = spawn_app().await;
    let doc = app.first("meeting").await;
    let (errors, closed) = answer_to(&app, true, sync_frame("someone-else", doc, vec![0x42])).await;
    assert!(closed);
    assert!(
        errors[0].contains("is not the peer that joined"),
        "{errors:?}"
    );
}

#[tokio::test]
async fn a_sync_message_automerge_refuses_changes_nothing() {
    let app = spawn_app().await;
    let doc = app.first("meeting").await;
    let before = app.get_json(&format!("/api/records/{doc}")).await["heads"].clone();
    let (errors, closed) = answer_to(
        &app,
        true,
        sync_frame("hostile", doc, b"not a sync message".to_vec()),
    )
    .await;
    assert!(closed);
    assert!(errors[0].contains("refused"), "{errors:?}");
    assert_eq!(
        app.get_json(&format!("/api/records/{doc}")).await["heads"],
        before
    );
}

#[tokio::test]
async fn an_oversized_frame_is_refused_naming_the_limit() {
    let app = spawn_app_with(|s| s.max_frame_bytes = 64 * 1024).await;
    let doc = app.first("meeting").await;
    let (errors, closed) = answer_to(
        &app,
        true,
        sync_frame("hostile", doc, vec![0x42; 100 * 1024]),
    )
    .await;
    assert!(closed);
    assert!(
        errors[0].contains("exceeds the limit of 65536 bytes"),
        "{errors:?}"
    );
}

#[tokio::test]
async fn other_peers_are_served_while_one_misbehaves() {
    let app = spawn_app().await;
    let meeting = app.first("meeting").await;
    let mut good = TestPeer::new("good");
    good.connect(&app).await;
    good.open(meeting);
    good.sync_until(LIMIT, |p| p.kind_of(meeting).is_some())
        .await;

    for _ in 0..5 {
        answer_to(&app, true, WsMessage::Binary(vec![0xff; 32].into())).await;
    }
    good.edit(
        meeting,
        "still here",
        &[Edit::Set {
            path: "/time".into(),
            value: "16:00".into(),
        }],
    );
    let heads = good.heads(meeting);
    good.sync_until(LIMIT, |p| {
        p.acked.get(&meeting).is_some_and(|h| *h == heads)
    })
    .await;
    let Record::Meeting(m) = good.record(meeting) else {
        panic!()
    };
    assert_eq!(m.time.as_deref(), Some("16:00"));
    assert!(good.seen.errors.is_empty());
}

/// Automerge 0.12 divides by the bit count and allocates by the probe
/// count that a peer's Bloom filter claims; both come from the wire.
#[tokio::test]
async fn a_hostile_bloom_filter_gets_an_error_and_the_record_stays_served() {
    use automerge::sync::{BloomFilter, Have, Message as SyncMessage, MessageVersion};

    let app = spawn_app().await;
    let meeting = app.first("meeting").await;
    // Five entries, zero bits per entry, seven probes, no bits.
    let bloom = BloomFilter::try_from(&[5u8, 0, 7][..]).unwrap();
    let data = SyncMessage {
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
    .encode();
    let (errors, _) = answer_to(&app, true, sync_frame("hostile", meeting, data)).await;
    assert!(errors[0].contains("Bloom filter"), "{errors:?}");

    let mut good = TestPeer::new("good");
    good.connect(&app).await;
    good.open(meeting);
    good.sync_until(LIMIT, |p| p.kind_of(meeting).is_some())
        .await;
    assert!(matches!(good.record(meeting), Record::Meeting(_)));
}
