//! Bad input: each gets a protocol `error` naming the problem, the socket
//! closes where going on makes no sense, nothing is stored or relayed, and
//! other peers keep being served.

use std::time::Duration;

use tokio_tungstenite::tungstenite::Message as WsMessage;
use twinsync_shared::protocol::{Message, Refusal};
use twinsync_shared::record::{Edit, Record};
use twinsync_shared::{DocumentId, PeerId};
use twinsync_tests::{TestApp, TestPeer, eventually, noise, spawn_app, spawn_app_with, tally};

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
    // Every frame sent here is answered with an error or a close.
    p.settle(LIMIT, Duration::from_millis(300), |p| {
        p.seen.closed || !p.seen.errors.is_empty()
    })
    .await;
    (p.seen.errors.clone(), p.seen.closed)
}

/// A peer named `name`, signed in, holding `record` as the server has it.
async fn holding(app: &TestApp, name: &str, record: DocumentId) -> TestPeer {
    fetched(app, TestPeer::new(name), record).await
}

/// `peer`, signed in, holding `record` as the server has it.
async fn fetched(app: &TestApp, mut peer: TestPeer, record: DocumentId) -> TestPeer {
    peer.connect(app).await;
    peer.fetch(record, LIMIT).await;
    peer
}

/// `peer` sets `meeting`'s time to 16:00 and waits until the server has
/// acknowledged it; the heads it then holds.
async fn time_acknowledged(
    peer: &mut TestPeer,
    meeting: DocumentId,
    message: &str,
) -> Vec<automerge::ChangeHash> {
    peer.edit(
        meeting,
        message,
        &[Edit::Set {
            path: "/time".into(),
            value: "16:00".into(),
        }],
    );
    let heads = peer.heads(meeting);
    peer.sync_until_acked(LIMIT, meeting, &heads).await;
    heads
}

/// A sync payload carrying one change's `bytes`, naming it as the head.
fn carrying(change: automerge::ChangeHash, bytes: Vec<u8>) -> Vec<u8> {
    automerge::sync::Message {
        heads: vec![change],
        need: Vec::new(),
        have: Vec::new(),
        changes: vec![bytes].into(),
        flags: None,
        version: automerge::sync::MessageVersion::V1,
    }
    .encode()
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
async fn messages_of_a_type_this_server_does_not_know_are_let_pass_once_joined() {
    let app = spawn_app().await;
    let doc = app.first("meeting").await;
    // Before `join`, a message of an unknown type is refused like any
    // message that is not a join.
    let leave = |sender: &str| {
        let mut frame = vec![0xa2];
        frame.extend([0x64].iter().chain(b"type"));
        frame.extend([0x65].iter().chain(b"leave"));
        frame.extend([0x68].iter().chain(b"senderId"));
        frame.push(0x60 + sender.len() as u8);
        frame.extend(sender.as_bytes());
        WsMessage::Binary(frame.into())
    };
    let (errors, closed) = answer_to(&app, false, leave("hostile")).await;
    assert!(closed);
    assert!(
        errors[0].contains("unknown message type `leave`"),
        "{errors:?}"
    );
    // Once joined, `leave` (which automerge-repo's description of the
    // protocol names as advisory) and types from later versions pass: the
    // socket stays open and the peer is served.
    let mut p = TestPeer::new("polite");
    p.connect(&app).await;
    p.send_raw(leave("polite")).await;
    let mut later = vec![0xa3];
    later.extend([0x64].iter().chain(b"type"));
    later.extend([0x6b].iter().chain(b"frobnicate2"));
    later.extend([0x68].iter().chain(b"senderId"));
    later.extend([0x66].iter().chain(b"polite"));
    later.extend([0x63].iter().chain(b"foo"));
    later.extend([0x43, 1, 2, 3]);
    p.send_raw(WsMessage::Binary(later.into())).await;
    p.fetch(doc, LIMIT).await;
    assert!(!p.seen.closed);
    assert_eq!(p.seen.errors, Vec::<String>::new());
    assert!(matches!(p.record(doc), Record::Meeting(_)));
}

/// The official client may make a document id of another length than
/// twinsync's 16 bytes, and sends every peer of a document it has open,
/// the server too, presence on it, even once told it is unavailable, and
/// passes on other peers' presence on it (a second server's, another
/// tab's) under their ids: such messages pass, unanswered, and the socket
/// serves the peer on.
#[tokio::test]
async fn messages_about_a_document_id_of_another_length_pass_unanswered() {
    let app = spawn_app().await;
    let doc = app.first("meeting").await;
    // 32 bytes, bs58check.
    let long = "SkB92YpWm4Q2ijQHH34cqbKkCZWszsiQgHVjtNeFF2DxnLV9";
    let text = |s: &str| {
        let mut out = if s.len() < 24 {
            vec![0x60 + s.len() as u8]
        } else {
            vec![0x78, s.len() as u8]
        };
        out.extend(s.as_bytes());
        out
    };
    let message = |fields: &[(&str, Vec<u8>)]| {
        let mut frame = vec![0xa0 + fields.len() as u8];
        for (key, value) in fields {
            frame.extend(text(key));
            frame.extend(value);
        }
        WsMessage::Binary(frame.into())
    };
    let about = |kind: &str| {
        vec![
            ("type", text(kind)),
            ("senderId", text("polite")),
            ("targetId", text("server")),
            ("documentId", text(long)),
        ]
    };
    let mut ephemeral = about("ephemeral");
    ephemeral.extend([
        ("sessionId", text("s1")),
        ("count", vec![0x01]),
        ("data", vec![0x43, 1, 2, 3]),
    ]);
    let mut heads = about("remote-heads-changed");
    heads.push(("newHeads", vec![0xa0]));
    let mut p = TestPeer::new("polite");
    p.connect(&app).await;
    p.send_raw(message(&ephemeral)).await;
    let passed_on: Vec<(&str, Vec<u8>)> = ephemeral
        .iter()
        .map(|(key, value)| match *key {
            "senderId" => (*key, text("another-tab")),
            _ => (*key, value.clone()),
        })
        .collect();
    p.send_raw(message(&passed_on)).await;
    p.send_raw(message(&about("doc-unavailable"))).await;
    p.send_raw(message(&heads)).await;
    p.fetch(doc, LIMIT).await;
    assert!(!p.seen.closed);
    assert_eq!(p.seen.errors, Vec::<String>::new());
    assert!(p.seen.unavailable.is_empty(), "{:?}", p.seen.unavailable);
    assert!(matches!(p.record(doc), Record::Meeting(_)));
}

type RawSocket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A socket signed in as the app's coordinator, that has not joined.
async fn raw_socket(app: &TestApp) -> RawSocket {
    use twinsync_tests::Server;
    let url = format!("ws://{}/sync?token={}", app.addr(), app.token());
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

/// Sends `join` as `sender` offering `versions`; the server's first answer.
async fn join_and_hear(ws: &mut RawSocket, sender: &str, versions: &[&str]) -> Option<Message> {
    use futures_util::{SinkExt, StreamExt};
    let join = Message::Join {
        sender_id: PeerId::new(sender),
        peer_metadata: Default::default(),
        supported_protocol_versions: versions.iter().map(|v| (*v).to_owned()).collect(),
    };
    ws.send(WsMessage::Binary(join.encode().into()))
        .await
        .unwrap();
    while let Ok(Some(Ok(frame))) = tokio::time::timeout(LIMIT, ws.next()).await {
        if let WsMessage::Binary(bytes) = frame {
            return Some(Message::decode(&bytes, Default::default()).unwrap());
        }
    }
    None
}

#[tokio::test]
async fn a_join_offering_no_version_we_speak_is_refused_to_its_sender() {
    let app = spawn_app().await;
    // A later version alone, and an empty list, which the official server
    // refuses too (only a join without the key speaks version 1).
    for offered in [vec!["2"], vec![]] {
        let mut ws = raw_socket(&app).await;
        match join_and_hear(&mut ws, "phone-from-the-future", &offered).await {
            Some(Message::Error {
                target_id, message, ..
            }) => {
                assert_eq!(target_id, PeerId::new("phone-from-the-future"));
                assert!(message.contains("protocol version"), "{message}");
            }
            other => panic!("{offered:?}: expected an error, got {other:?}"),
        }
    }
}

/// The device read again at `join` fails (here its table gone): the
/// peer is told to come back, and the operator sees a storage error, not
/// a misbehaving peer.
#[tokio::test]
async fn a_device_that_cannot_be_read_again_at_join_is_a_storage_error() {
    let app = spawn_app().await;
    let mut ws = raw_socket(&app).await;
    rusqlite::Connection::open(app.data_dir.join("twinsync.db"))
        .unwrap()
        .execute_batch("ALTER TABLE devices RENAME TO devices_away")
        .unwrap();
    // Answered `peer` first (an official client gives up on records it
    // asks for before that), then told, before any other frame is read.
    let first = join_and_hear(&mut ws, "phone", &["1"]).await;
    assert!(matches!(first, Some(Message::Peer { .. })), "{first:?}");
    let next = {
        use futures_util::StreamExt;
        let mut said = None;
        while let Ok(Some(Ok(frame))) = tokio::time::timeout(LIMIT, ws.next()).await {
            if let WsMessage::Binary(bytes) = frame {
                said = Some(Message::decode(&bytes, Default::default()).unwrap());
                break;
            }
        }
        said
    };
    match next {
        Some(Message::Error { message, .. }) => {
            assert!(message.contains("cannot check this device"), "{message}");
        }
        other => panic!("expected an error, got {other:?}"),
    }
    assert_eq!(app.hub.metrics.storage_errors.get(), 1);
    assert_eq!(app.hub.metrics.protocol_errors.get(), 0);
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
    // Changes to one record over the limit: that record is refused, the
    // socket stays, and the peer's other records still sync.
    let mut p = TestPeer::new("hostile");
    p.connect(&app).await;
    p.send_raw(sync_frame("hostile", doc, vec![0x42; 100 * 1024]))
        .await;
    p.settle(LIMIT, Duration::from_millis(300), |p| {
        !p.seen.errors.is_empty()
    })
    .await;
    assert!(!p.seen.closed);
    assert!(
        p.seen.errors[0].contains("exceeds the limit of 65536 bytes"),
        "{:?}",
        p.seen.errors
    );
    assert_eq!(p.seen.refusals.len(), 1);
    assert_eq!(p.seen.refusals[0].document_id, doc);
    assert_eq!(p.seen.refusals[0].code, "too-large");
    // Counted as a message too large, not a record.
    assert_eq!(app.hub.metrics.messages_too_large.get(), 1);
    assert_eq!(app.hub.metrics.records_too_large.get(), 0);
    let city = app.first("city").await;
    p.fetch(city, LIMIT).await;
    assert!(matches!(p.record(city), Record::City(_)));
    assert!(!p.seen.closed);

    // Any other frame that large ends the socket, naming the limit.
    let mut garbage = vec![0xa1, 0x64];
    garbage.extend(b"type");
    garbage.extend(vec![0x78; 100 * 1024]);
    let (errors, closed) = answer_to(&app, true, WsMessage::Binary(garbage.into())).await;
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
    let mut good = holding(&app, "good", meeting).await;

    for _ in 0..5 {
        answer_to(&app, true, WsMessage::Binary(vec![0xff; 32].into())).await;
    }
    time_acknowledged(&mut good, meeting, "still here").await;
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

    let good = holding(&app, "good", meeting).await;
    assert!(matches!(good.record(meeting), Record::Meeting(_)));
}

/// Sockets that hold a connection slot without a request: one that says
/// nothing, one that opens HTTP/2 and goes quiet, and one whose body
/// trickles in. Each is cut once the header timeout passes (twice it, for
/// a body), so no address can keep its slots, nor all addresses every slot.
#[tokio::test]
async fn silent_sockets_and_trickled_bodies_are_cut() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app_with(|s| s.header_timeout_secs = 1).await;
    let connect = || tokio::net::TcpStream::connect(app.addr);
    let silent = connect().await.unwrap();
    let mut preface = connect().await.unwrap();
    preface
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    let mut trickle = connect().await.unwrap();
    trickle
        .write_all(
            b"POST /api/invites/redeem HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 65536\r\n\r\n{\"code\":\"",
        )
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut sockets = [
        ("silent", silent),
        ("HTTP/2 preface", preface),
        ("trickled body", trickle),
    ];
    let mut cut = [false; 3];
    while !cut.iter().all(|c| *c) && started.elapsed() < Duration::from_secs(6) {
        for (i, (_, s)) in sockets.iter_mut().enumerate() {
            if cut[i] {
                continue;
            }
            let mut buf = [0u8; 512];
            cut[i] = match tokio::time::timeout(Duration::from_millis(5), s.read(&mut buf)).await {
                // Closed, or answered (a 408 or 400 ends it too).
                Ok(_) => true,
                // Still open: the trickle goes on, a byte at a time.
                Err(_) => i == 2 && s.write_all(b"x").await.is_err(),
            };
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for (i, (what, _)) in sockets.iter().enumerate() {
        assert!(
            cut[i],
            "the {what} socket still open after {:?}",
            started.elapsed()
        );
    }
}

/// A body is read whole before any route signs its sender in, so its
/// size is held to what the API takes (a few fields), not axum's 2 MiB:
/// over 64 KiB it is answered 413, whoever sends it.
#[tokio::test]
async fn a_body_over_64_kib_is_refused_before_sign_in() {
    let app = spawn_app().await;
    let client = reqwest::Client::new();
    let code = "x".repeat(100 << 10);
    let answer = client
        .post(app.url("/api/invites/redeem"))
        .json(&serde_json::json!({ "code": code }))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), reqwest::StatusCode::PAYLOAD_TOO_LARGE);
    let body: serde_json::Value = answer.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("over 64 KiB"),
        "{body}"
    );
    // One within it reaches the route, which answers for itself.
    let answer = client
        .post(app.url("/api/invites/redeem"))
        .json(&serde_json::json!({ "code": "x".repeat(60 << 10) }))
        .send()
        .await
        .unwrap();
    assert_ne!(answer.status(), reqwest::StatusCode::PAYLOAD_TOO_LARGE);
}

/// Slowloris: sockets that dribble a request head never finish it. Past
/// the per-address limit they are closed at once; the rest are cut when
/// the header timeout passes. Another address is served all along.
#[tokio::test]
async fn slowloris_sockets_are_cut_and_other_clients_are_served() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app_with(|s| {
        s.header_timeout_secs = 1;
        s.max_http_connections_per_address = 16;
    })
    .await;
    let started = std::time::Instant::now();
    let mut slow = Vec::new();
    for _ in 0..100 {
        // From 127.0.0.3: loopback answers on all of 127/8.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.3:0".parse().unwrap()).unwrap();
        let mut s = socket.connect(app.addr).await.unwrap();
        let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await;
        slow.push(s);
    }
    // While they hang on, another address is served: the API and sync.
    let health = reqwest::get(app.url("/healthz")).await.unwrap();
    assert!(health.status().is_success());
    let meeting = app.first("meeting").await;
    let _good = holding(&app, "good", meeting).await;
    // Keep dribbling, a byte at a time, and count the sockets cut.
    let mut open = slow.len();
    while open > 0 && started.elapsed() < Duration::from_secs(5) {
        open = 0;
        for s in &mut slow {
            let mut buf = [0u8; 256];
            let cut = match tokio::time::timeout(Duration::from_millis(5), s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => true,
                Ok(Ok(_)) => true, // an answer (408 or 400) ends it too
                Err(_) => s.write_all(b"X").await.is_err(),
            };
            if !cut {
                open += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        open,
        0,
        "slow sockets still open after {:?}",
        started.elapsed()
    );
    assert!(
        app.hub.metrics.connections_refused.get() >= 84,
        "{} closed at accept",
        app.hub.metrics.connections_refused.get()
    );
}

/// A flood of `request` messages for random ids: the device is told to
/// wait past its limit, and no more documents are loaded than it allows.
#[tokio::test]
async fn a_flood_of_requests_for_random_ids_is_limited_and_memory_stays_bounded() {
    use twinsync_server::auth::Role;
    let app = spawn_app_with(|s| s.device_docs_per_minute = 200).await;
    let flooder_token = app.device(Role::Coordinator, &[], None);
    let mut flooder = TestPeer::new("flooder").with_token(&flooder_token);
    flooder.connect(&app).await;
    for i in 0..5000 {
        if i % 250 == 0 {
            // Read the answers as a client would, or the server's queue
            // for this peer fills and drops it as too slow.
            flooder.sync(Duration::from_millis(20), LIMIT).await;
        }
        let request = Message::Request {
            sender_id: PeerId::new("flooder"),
            target_id: PeerId::new("server"),
            document_id: DocumentId::random(),
            data: automerge::sync::Message {
                heads: Vec::new(),
                need: Vec::new(),
                have: Vec::new(),
                changes: Vec::<Vec<u8>>::new().into(),
                flags: None,
                version: automerge::sync::MessageVersion::V1,
            }
            .encode(),
        };
        flooder
            .send_raw(WsMessage::Binary(request.encode().into()))
            .await;
    }
    let told = "more than 200 documents";
    flooder
        .settle(LIMIT, Duration::from_millis(300), |p| {
            p.seen.closed || p.seen.errors_with(told) >= 4800
        })
        .await;
    let limited = flooder.seen.errors_with(told);
    assert!(
        !flooder.seen.closed,
        "the flooder was dropped rather than told"
    );
    assert_eq!(limited, 4800, "requests told to wait");
    let loaded = app.hub.metrics.loaded_documents.get();
    assert!(
        loaded <= 200 + 50,
        "{loaded} documents loaded for a limit of 200"
    );

    // Another device is served at once.
    let meeting = app.first("meeting").await;
    let _good = holding(&app, "good", meeting).await;
}

/// A peer that subscribes and then never reads: it stops answering pings
/// and its queue fills; it is dropped by whichever comes first, while the
/// peer typing into the same record is answered throughout.
#[tokio::test]
async fn a_peer_that_never_reads_is_dropped_and_others_are_served() {
    let app = spawn_app_with(|s| {
        s.peer_queue = 8;
        s.ping_secs = 1;
        s.peer_timeout_secs = 3;
    })
    .await;
    let meeting = app.first("meeting").await;
    let mut sloth = TestPeer::new("sloth");
    sloth.connect(&app).await;
    sloth.fetch(meeting, LIMIT).await;
    // From here on the sloth never reads its socket.

    let mut typist = TestPeer::new("typist");
    typist.connect(&app).await;
    typist.fetch(meeting, LIMIT).await;
    assert_eq!(app.hub.metrics.connected_peers.get(), 2);
    let page: String = "محضر الاجتماع compte rendu ".repeat(200);
    let started = std::time::Instant::now();
    let mut round = 0;
    while app.hub.metrics.connected_peers.get() > 1 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the peer that never reads is still connected"
        );
        typist.edit(
            meeting,
            "a page",
            &[Edit::SpliceText {
                path: "/minutes".into(),
                index: 0,
                delete: 0,
                insert: format!("{round}: {page}"),
            }],
        );
        round += 1;
        let heads = typist.heads(meeting);
        typist.sync_until_acked(LIMIT, meeting, &heads).await;
    }
    assert!(typist.seen.errors.is_empty(), "{:?}", typist.seen.errors);
    assert!(typist.is_connected());
    drop(sloth);
}

/// `writer` attaches 256 KiB that do not compress to `meeting`, under keys
/// the schema does not read, one change at a time, each acknowledged, until
/// `done`; fails saying `what` past `within`. The bytes attached.
async fn attach_until(
    writer: &mut TestPeer,
    meeting: DocumentId,
    within: Duration,
    done: impl Fn() -> bool,
    what: &str,
) -> usize {
    use automerge::ROOT;
    use automerge::transaction::Transactable;
    let started = std::time::Instant::now();
    let mut sent = 0usize;
    while !done() {
        assert!(
            started.elapsed() < within,
            "{what} after {} MiB were relayed",
            sent >> 20
        );
        let blob = noise(sent as u64, 256 * 1024);
        sent += blob.len();
        let mut tx = writer.doc_mut(meeting).transaction();
        tx.put(ROOT, format!("attachment-{sent}"), blob).unwrap();
        tx.commit();
        let heads = writer.heads(meeting);
        writer.sync_until_acked(LIMIT, meeting, &heads).await;
    }
    sent
}

/// A peer that never reads while large changes are relayed to it is cut
/// off once its queue holds `peer_queue_mib` of frames, long before the
/// frame count or its timeout would: one socket cannot hold a thousand
/// large frames in the server's memory. The writer is served throughout.
#[tokio::test]
async fn a_peer_that_never_reads_large_frames_is_cut_off_by_their_bytes() {
    let app = spawn_app_with(|s| {
        s.peer_queue_mib = 1;
        s.max_record_mib = 128;
        s.ping_secs = 60;
        s.peer_timeout_secs = 120;
    })
    .await;
    let meeting = app.first("meeting").await;
    let sloth = holding(&app, "sloth", meeting).await;
    // From here on the sloth never reads its socket.
    let mut writer = holding(&app, "writer", meeting).await;
    let sent = attach_until(
        &mut writer,
        meeting,
        Duration::from_secs(30),
        || app.hub.metrics.connected_peers.get() <= 1,
        "the peer that never reads is still connected",
    )
    .await;
    assert_eq!(app.hub.metrics.slow_peers_dropped.get(), 1);
    // Far fewer frames than the queue's 1,024: the bytes cut it off.
    assert!(sent < 64 << 20, "{} MiB relayed before the cut", sent >> 20);
    assert!(writer.seen.errors.is_empty(), "{:?}", writer.seen.errors);
    assert!(writer.is_connected());
    drop(sloth);
}

/// A device's sockets are bounded together as well as each: three that
/// never read, each far under its own `peer_queue_mib`, are cut off once
/// together they hold `device_queue_mib`, as a device's 64 sockets could
/// otherwise pin 64 such budgets. Another device's writer is served
/// throughout.
#[tokio::test]
async fn a_devices_sockets_that_never_read_are_cut_off_by_their_bytes_together() {
    use twinsync_server::auth::Role;
    let app = spawn_app_with(|s| {
        s.peer_queue_mib = 64;
        s.device_queue_mib = 2;
        s.max_record_mib = 128;
        s.ping_secs = 60;
        s.peer_timeout_secs = 120;
    })
    .await;
    let meeting = app.first("meeting").await;
    let mut sloths = Vec::new();
    for i in 0..3 {
        sloths.push(holding(&app, &format!("sloth-{i}"), meeting).await);
    }
    // From here on the sloths never read their sockets.
    let token = app.device(Role::Coordinator, &[], None);
    let mut writer = fetched(&app, TestPeer::new("writer").with_token(&token), meeting).await;
    let sent = attach_until(
        &mut writer,
        meeting,
        Duration::from_secs(60),
        || app.hub.metrics.slow_peers_dropped.get() > 0,
        "no socket of the device that never reads was cut",
    )
    .await;
    // Each socket's own budget would have let it hold 64 MiB.
    assert!(sent < 32 << 20, "{} MiB relayed before the cut", sent >> 20);
    assert!(writer.seen.errors.is_empty(), "{:?}", writer.seen.errors);
    assert!(writer.is_connected());
    drop(sloths);
}

/// The refusal of a change past a record's size limit, in bytes or in
/// ops: not kept for review, so no quarantine number.
fn too_large(document_id: DocumentId) -> Refusal {
    Refusal {
        document_id,
        code: "too-large".into(),
        path: "/".into(),
        quarantine: None,
        discarded: false,
        retry_after: None,
    }
}

/// A record that would hold more Automerge operations than its limit is
/// refused: compressed ops cost a few bytes each, so the byte limit does
/// not stop a device that sends op after op until every edit to the record
/// takes seconds to apply. Nothing is stored or quarantined, the device is
/// told with the figures, writes that stay under the limit go on, and a
/// coordinator cannot let such changes in from the quarantine either.
/// Ops compress to a few bytes each, so the bytes a device may send in a
/// minute do not bound the work its messages cost the server: past its
/// operations a minute, counted before Automerge applies any, the socket
/// closes with the wait, what came before stays, and others are served.
#[tokio::test]
async fn a_device_past_its_operations_a_minute_is_cut_off_before_they_are_applied() {
    const BUDGET: u64 = 50_000;
    let app = spawn_app_with(|s| s.device_ops_per_minute = BUDGET).await;
    let meeting = app.first("meeting").await;
    let mut p = holding(&app, "piler", meeting).await;
    tally(p.doc_mut(meeting), "first", 30_000);
    let first = p.heads(meeting);
    p.sync_until_acked(LIMIT, meeting, &first).await;
    assert!(p.seen.errors.is_empty(), "{:?}", p.seen.errors);
    // Another 30,000 in the same minute: 60,000 in all.
    tally(p.doc_mut(meeting), "second", 30_000);
    let second = p.heads(meeting);
    p.sync_until(LIMIT, |p| p.seen.closed).await;
    assert!(
        p.seen.errors.iter().any(|e| e.contains(&format!(
            "sent more than {BUDGET} operations in a minute; reconnect in"
        ))),
        "{:?}",
        p.seen.errors
    );
    let stored = app.hub.store.load(meeting).unwrap().unwrap();
    assert!(
        first
            .iter()
            .all(|h| stored.get_change_meta_by_hash(h).is_some())
    );
    assert!(
        second
            .iter()
            .all(|h| stored.get_change_meta_by_hash(h).is_none()),
        "the changes past the budget were applied"
    );
    // Another device is served meanwhile.
    let other = app.device(twinsync_server::auth::Role::Coordinator, &[], None);
    let mut o = TestPeer::new("other").with_token(&other);
    o.connect(&app).await;
    o.fetch(meeting, LIMIT).await;
    assert!(o.has_changes(meeting, &first));
}

/// Judging a change that is then refused takes a pass over the whole
/// record, which the few operations the message carries do not count. A
/// device that sends change after change to be refused, each from the
/// server's state so that none waits behind another, pays for each pass
/// in its operations a minute, up to an eighth of them for a record as
/// large as this one: past them its socket closes with the wait.
#[tokio::test]
async fn a_device_sending_change_after_change_to_be_refused_pays_for_each_check() {
    use twinsync_server::auth::Role;
    const BUDGET: u64 = 200_000;
    let app = spawn_app_with(|s| s.device_ops_per_minute = BUDGET).await;
    let meeting = app.first("meeting").await;
    // A coordinator's long minutes: over 60,000 operations.
    let mut writer = holding(&app, "writer", meeting).await;
    tally(writer.doc_mut(meeting), "long", 60_000);
    let heads = writer.heads(meeting);
    writer.sync_until_acked(LIMIT, meeting, &heads).await;
    let observer = app.device(Role::Observer, &[], None);
    let mut cut = None;
    for i in 0..12 {
        let peer = TestPeer::new(&format!("observer-{i}")).with_token(&observer);
        let mut o = fetched(&app, peer, meeting).await;
        o.edit(
            meeting,
            "not mine to write",
            &[Edit::Set {
                path: "/time".into(),
                value: "09:00".into(),
            }],
        );
        o.sync_until(LIMIT, |p| p.seen.closed || !p.seen.refusals.is_empty())
            .await;
        if o.seen.errors_with("operations in a minute; reconnect in") > 0 {
            cut = Some(i);
            break;
        }
        assert!(
            o.seen.refusals.iter().any(|r| r.code == "observer"),
            "{:?}",
            o.seen.errors
        );
    }
    // Eight passes, each charged an eighth of the budget, are judged; the
    // ninth change is not.
    assert_eq!(cut, Some(8));
    // The coordinator is served meanwhile.
    time_acknowledged(&mut writer, meeting, "still served").await;
}

#[tokio::test]
async fn a_record_growing_past_its_op_limit_is_refused_and_cannot_be_accepted() {
    use automerge::ReadDoc;
    use twinsync_server::auth::Role;
    const LIMIT_OPS: u64 = 20_000;
    let app = spawn_app_with(|s| s.max_record_ops = LIMIT_OPS).await;
    let meeting = app.first("meeting").await;
    let mut p = holding(&app, "counter", meeting).await;
    let held = p.doc(meeting).doc().stats().num_ops;
    assert!(held < LIMIT_OPS / 2, "the demo meeting holds {held} ops");
    // A third of the room left each: two thirds and a few more are taken.
    let third = ((LIMIT_OPS - held) / 3) as usize;

    // Under the limit: taken.
    tally(p.doc_mut(meeting), "first", third);
    let heads = p.heads(meeting);
    p.sync_until_acked(LIMIT, meeting, &heads).await;
    assert!(p.seen.errors.is_empty(), "{:?}", p.seen.errors);

    // An observer's changes under the limit go to the quarantine.
    let observer = app.device(Role::Observer, &[], None);
    let mut o = fetched(
        &app,
        TestPeer::new("observer").with_token(&observer),
        meeting,
    )
    .await;
    tally(o.doc_mut(meeting), "watched", third);
    o.sync_until(LIMIT, |o| !o.seen.refusals.is_empty()).await;
    let Some(quarantined) = o.seen.refusals[0].quarantine else {
        panic!("{:?}", o.seen.refusals);
    };

    tally(p.doc_mut(meeting), "second", third + 10);
    let heads = p.heads(meeting);
    p.sync_until_acked(LIMIT, meeting, &heads).await;
    assert!(p.seen.errors.is_empty(), "{:?}", p.seen.errors);
    let holds = held + 2 * third as u64 + 10;
    let before = app.get_json(&format!("/api/records/{meeting}")).await["heads"].clone();

    // Past it, in a message of a few KiB: refused, with the figures.
    tally(p.doc_mut(meeting), "large", LIMIT_OPS as usize);
    p.sync_until(LIMIT, |p| !p.seen.errors.is_empty()).await;
    let error = &p.seen.errors[0];
    assert!(
        error.contains(&format!("from {holds} to "))
            && error.contains("past the limit of 20000 operations per record")
            && error.contains("stays on your device"),
        "{error}"
    );
    assert_eq!(p.seen.refusals, vec![too_large(meeting)]);
    assert_eq!(app.hub.metrics.records_too_large.get(), 1);
    assert_eq!(
        app.get_json(&format!("/api/records/{meeting}")).await["heads"],
        before
    );
    let quarantine = app.get_json("/api/quarantine").await;
    assert_eq!(quarantine.as_array().map(Vec::len), Some(1), "{quarantine}");

    // The observer's third would take the record past the limit now: a
    // coordinator accepting it is told so, and nothing changes.
    let res = app.accept(quarantined).await;
    assert!(!res.status().is_success(), "{}", res.status());
    let body = res.text().await.unwrap();
    assert!(
        body.contains(&format!("from {holds} to "))
            && body.contains("past the limit of 20000 operations per record"),
        "{body}"
    );
    assert_eq!(
        app.get_json(&format!("/api/records/{meeting}")).await["heads"],
        before
    );
}

/// A record that would grow past its size limit is refused with an error
/// that names the limit; it is neither stored nor quarantined, and the
/// device goes on syncing its other records.
#[tokio::test]
async fn a_record_growing_past_its_size_limit_is_refused_with_a_clear_error() {
    use automerge::ROOT;
    use automerge::transaction::Transactable;
    let app = spawn_app_with(|s| s.max_record_mib = 1).await;
    let meeting = app.first("meeting").await;
    let mut p = holding(&app, "hoarder", meeting).await;
    // Bytes that do not compress, under keys the schema does not read: the
    // size limit is what stops them.
    for (n, key) in (1..).zip(["attachment-1", "attachment-2"]) {
        let blob = noise(n, 400 * 1024);
        let mut tx = p.doc_mut(meeting).transaction();
        tx.put(ROOT, key, blob).unwrap();
        tx.commit();
        let heads = p.heads(meeting);
        p.sync_until_acked(LIMIT, meeting, &heads).await;
        assert!(p.seen.errors.is_empty(), "{:?}", p.seen.errors);
    }
    let before = app.get_json(&format!("/api/records/{meeting}")).await["heads"].clone();

    // The third takes it past 1 MiB.
    let blob = noise(3, 400 * 1024);
    let mut tx = p.doc_mut(meeting).transaction();
    tx.put(ROOT, "attachment-3", blob).unwrap();
    tx.commit();
    p.sync_until(LIMIT, |p| !p.seen.errors.is_empty()).await;
    assert!(
        p.seen.errors[0].contains("past the limit of 1 MiB per record"),
        "{:?}",
        p.seen.errors
    );
    // With what the app needs to say it in the person's language. Nothing
    // was kept for review: keeping it would fill the disk just the same.
    assert_eq!(p.seen.refusals, vec![too_large(meeting)]);
    assert_eq!(app.hub.metrics.records_too_large.get(), 1);
    assert_eq!(
        app.get_json(&format!("/api/records/{meeting}")).await["heads"],
        before
    );
    let quarantine = app.get_json("/api/quarantine").await;
    assert_eq!(quarantine.as_array().map(Vec::len), Some(0), "{quarantine}");

    // The same device goes on with another record.
    let other = app.first("project").await;
    p.fetch(other, LIMIT).await;
    assert!(!p.seen.closed);
}

/// Changes kept for review while the record had room, accepted once it
/// has none: the coordinator is told the size limit, and nothing changes.
#[tokio::test]
async fn a_coordinator_cannot_accept_changes_that_would_take_a_record_past_its_size_limit() {
    use automerge::ROOT;
    use automerge::transaction::Transactable;
    use twinsync_server::auth::Role;
    let app = spawn_app_with(|s| s.max_record_mib = 1).await;
    let meeting = app.first("meeting").await;
    let put = |p: &mut TestPeer, n: u64, kib: usize| {
        let mut tx = p.doc_mut(meeting).transaction();
        tx.put(ROOT, format!("attachment-{n}"), noise(n, kib * 1024))
            .unwrap();
        tx.commit();
    };
    let mut p = holding(&app, "hoarder", meeting).await;
    put(&mut p, 1, 800);
    let heads = p.heads(meeting);
    p.sync_until_acked(LIMIT, meeting, &heads).await;
    assert!(p.seen.errors.is_empty(), "{:?}", p.seen.errors);

    // An observer's 150 KiB fit, and wait for review.
    let observer = app.device(Role::Observer, &[], None);
    let mut o = fetched(
        &app,
        TestPeer::new("observer").with_token(&observer),
        meeting,
    )
    .await;
    put(&mut o, 2, 150);
    o.sync_until(LIMIT, |o| !o.seen.refusals.is_empty()).await;
    let Some(quarantined) = o.seen.refusals[0].quarantine else {
        panic!("{:?}", o.seen.refusals);
    };
    // Then 150 KiB more from the writer: the record has no room left for
    // the observer's.
    put(&mut p, 3, 150);
    let heads = p.heads(meeting);
    p.sync_until_acked(LIMIT, meeting, &heads).await;
    assert!(p.seen.errors.is_empty(), "{:?}", p.seen.errors);
    let before = app.get_json(&format!("/api/records/{meeting}")).await["heads"].clone();

    let res = app.accept(quarantined).await;
    assert!(!res.status().is_success(), "{}", res.status());
    let body = res.text().await.unwrap();
    assert!(
        body.contains("past the limit of 1 MiB per record"),
        "{body}"
    );
    assert_eq!(
        app.get_json(&format!("/api/records/{meeting}")).await["heads"],
        before
    );
}

/// Maps nested ten thousand deep, under a key the schema does not read.
/// Automerge's diff costs the square of the depth (minutes of CPU here), so
/// the server measures depth first, stopping at its limit, and refuses.
#[tokio::test]
async fn deeply_nested_values_are_refused_quickly_and_the_server_goes_on() {
    use automerge::transaction::Transactable;
    use automerge::{ObjType, ROOT};
    let app = spawn_app().await;
    let meeting = app.first("meeting").await;
    let mut p = TestPeer::new("nester");
    p.connect(&app).await;
    p.fetch(meeting, LIMIT).await;
    let before = app.get_json(&format!("/api/records/{meeting}")).await["heads"].clone();
    {
        let mut tx = p.doc_mut(meeting).transaction();
        let mut obj = tx.put_object(ROOT, "nest", ObjType::Map).unwrap();
        for _ in 0..10_000 {
            obj = tx.put_object(&obj, "deeper", ObjType::Map).unwrap();
        }
        tx.put(&obj, "bottom", "القاع").unwrap();
        tx.commit();
    }
    p.sync_until(LIMIT, |p| !p.seen.errors.is_empty()).await;
    assert!(
        p.seen.errors[0].contains("refused at /nest/deeper/")
            && p.seen.errors[0].contains("values may nest at most 16 deep"),
        "{:?}",
        p.seen.errors
    );
    assert_eq!(
        app.get_json(&format!("/api/records/{meeting}")).await["heads"],
        before
    );
    // A coordinator cannot let it in from the quarantine either.
    let quarantine = app.get_json("/api/quarantine").await;
    let id = quarantine[0]["id"].as_i64().unwrap();
    assert_eq!(quarantine[0]["code"], "too-deep", "{quarantine}");
    // Nor is it diffed to show the coordinator what it would change.
    let shown = app.get_json(&format!("/api/quarantine/{id}")).await;
    assert!(shown["changes"].is_null(), "{shown}");
    assert!(
        shown["not_shown"]
            .as_str()
            .unwrap()
            .contains("nest deeper than 16"),
        "{shown}"
    );
    assert_eq!(shown["not_shown_code"], "too-deep", "{shown}");
    let [refusal] = &p.seen.refusals[..] else {
        panic!("{:?}", p.seen.refusals);
    };
    assert_eq!(
        (
            refusal.document_id,
            refusal.code.as_str(),
            refusal.quarantine
        ),
        (meeting, "too-deep", Some(id as u64))
    );
    assert!(
        refusal.path.starts_with("/nest/deeper/"),
        "{}",
        refusal.path
    );
    let res = app.accept(id).await;
    assert!(!res.status().is_success());
    let body = res.text().await.unwrap();
    assert!(body.contains("nest at most 16 deep"), "{body}");
    for view in ["", "/history", "/conflicts"] {
        let res = app.get(&format!("/api/records/{meeting}{view}")).await;
        assert!(res.status().is_success(), "{view}: {}", res.status());
    }
}

/// Well-formed changes no Automerge writer makes, sent by a signed-in
/// device: one whose sequence number skips past its author's last change
/// (Automerge 0.12 asserts on it, rather than refusing it), and one that
/// reuses its author's op counters (Automerge applies it, and the record
/// then cannot be saved). The server answers each with an error, keeps
/// the record as it was, and goes on serving it.
#[tokio::test]
async fn changes_automerge_cannot_keep_are_refused_and_the_record_stays_served() {
    use automerge::transaction::Transactable;

    let app = spawn_app().await;
    let meeting = app.first("meeting").await;
    let before = app.get_json(&format!("/api/records/{meeting}")).await["heads"].clone();
    type Rewrite = fn(&mut automerge::ExpandedChange);
    let rewrites: [(&str, Rewrite); 2] = [
        ("cannot apply", |change| change.seq += 1),
        ("does not follow from its dependencies", |change| {
            change.start_op = std::num::NonZeroU64::MIN;
        }),
    ];
    for (expected, rewrite) in rewrites {
        let mut hostile = holding(&app, "hostile", meeting).await;
        // The author of a head writes its next change, then it is rewritten.
        let doc = hostile.doc_mut(meeting);
        let head = doc.get_heads()[0];
        let author = doc
            .get_change_meta_by_hash(&head)
            .unwrap()
            .actor
            .into_owned();
        let mut fork = doc.fork().with_actor(author);
        fork.transact(|tx| tx.put(automerge::ROOT, "notes", "محضر"))
            .unwrap();
        let mut change = fork.get_last_local_change().unwrap().decode();
        rewrite(&mut change);
        change.hash = None;
        let change = automerge::Change::from(change);
        let data = carrying(change.hash(), change.raw_bytes().to_vec());
        hostile.send_raw(sync_frame("hostile", meeting, data)).await;
        hostile.sync(Duration::from_millis(300), LIMIT).await;
        assert!(
            hostile.seen.errors.iter().any(|e| e.contains(expected)),
            "{expected}: {:?}",
            hostile.seen.errors
        );
        assert_eq!(
            app.get_json(&format!("/api/records/{meeting}")).await["heads"],
            before,
            "{expected}"
        );
    }

    // The record is still served, and still takes honest edits.
    let mut good = holding(&app, "good", meeting).await;
    let heads = time_acknowledged(&mut good, meeting, "still served").await;
    assert_eq!(
        app.get_json(&format!("/api/records/{meeting}")).await["heads"],
        serde_json::json!(heads.iter().map(ToString::to_string).collect::<Vec<_>>())
    );
}

/// A few hundred bytes can hold a hundred thousand ops, which Automerge
/// would inflate and apply without a bound. Past the server's
/// `max_ops_per_message` the message is refused unread, as too large, and
/// the record goes on being served. The socket stays: cut, a device would
/// send the same message again at each reconnection.
#[tokio::test]
async fn a_message_packing_too_many_ops_is_refused_before_it_is_applied() {
    use automerge::transaction::Transactable;

    let app = spawn_app_with(|s| s.max_ops_per_message = 20_000).await;
    let meeting = app.first("meeting").await;
    let before = app.get_json(&format!("/api/records/{meeting}")).await["heads"].clone();
    let mut hostile = holding(&app, "hostile", meeting).await;
    let mut fork = hostile.doc_mut(meeting).fork();
    fork.transact(|tx| {
        let text = tx.put_object(automerge::ROOT, "packed", automerge::ObjType::Text)?;
        tx.splice_text(&text, 0, 0, &"ا".repeat(100_000))
    })
    .unwrap();
    let mut change = fork.get_last_local_change().unwrap();
    let packed = change.bytes().to_vec();
    assert!(packed.len() < 2_000, "{} bytes", packed.len());
    let data = carrying(change.hash(), packed);
    hostile.send_raw(sync_frame("hostile", meeting, data)).await;
    hostile.sync(Duration::from_millis(300), LIMIT).await;
    assert!(
        hostile
            .seen
            .errors
            .iter()
            .any(|e| e.contains("too much to take in at once")
                && e.contains("over 20000 operations")),
        "{:?}",
        hostile.seen.errors
    );
    assert_eq!(
        hostile.seen.refusals.first().map(|r| r.code.as_str()),
        Some("too-large"),
        "{:?}",
        hostile.seen.refusals
    );
    assert!(!hostile.seen.closed);
    assert_eq!(app.hub.metrics.messages_too_large.get(), 1);
    assert_eq!(app.hub.metrics.records_too_large.get(), 0);
    assert_eq!(
        app.get_json(&format!("/api/records/{meeting}")).await["heads"],
        before
    );
    let city = app.first("city").await;
    hostile.fetch(city, LIMIT).await;

    let good = holding(&app, "good", meeting).await;
    assert!(matches!(good.record(meeting), Record::Meeting(_)));
}

#[tokio::test]
async fn a_join_with_an_overlong_peer_or_storage_id_is_refused_naming_the_limit() {
    use twinsync_shared::StorageId;
    use twinsync_shared::protocol::{PeerMetadata, handshake};

    let app = spawn_app().await;
    let join = |sender: String, storage: Option<String>| {
        let msg = handshake::join(
            PeerId::new(sender),
            PeerMetadata {
                storage_id: storage.map(StorageId::new),
                is_ephemeral: false,
                answers_pings: false,
                hears_coming: false,
            },
        );
        WsMessage::Binary(msg.encode().into())
    };
    let (errors, closed) = answer_to(&app, false, join("p".repeat(257), None)).await;
    assert!(closed);
    assert!(
        errors[0].contains("`senderId` is 257 bytes long; at most 256"),
        "{errors:?}"
    );
    let (errors, closed) =
        answer_to(&app, false, join("phone".into(), Some("s".repeat(4096)))).await;
    assert!(closed);
    assert!(
        errors[0].contains("`peerMetadata.storageId` is 4096 bytes long"),
        "{errors:?}"
    );
    // At the limit, a peer joins and is served.
    let mut peer = TestPeer::new(&"p".repeat(256));
    peer.connect(&app).await;
    let doc = app.first("meeting").await;
    peer.fetch(doc, LIMIT).await;
    assert!(peer.seen.errors.is_empty(), "{:?}", peer.seen.errors);
}

#[tokio::test]
async fn refused_changes_past_a_devices_quarantine_limit_are_not_kept_and_the_device_is_told() {
    use automerge::ROOT;
    use automerge::transaction::Transactable;
    use twinsync_server::auth::Role;

    let app = spawn_app_with(|s| s.max_quarantine_mib = 1).await;
    let meeting = app.first("meeting").await;
    // An observer writes nothing: everything it sends is refused and kept
    // for review, until its share of the quarantine is full. Each of its
    // tabs (a peer of its own) adds 300 KiB to the record it was sent.
    let token = app.device(Role::Observer, &[], None);
    let mut errors = Vec::new();
    for n in 1..=4 {
        let mut p = TestPeer::new(&format!("observer-tab-{n}")).with_token(&token);
        p.connect(&app).await;
        p.fetch(meeting, LIMIT).await;
        let blob = noise(10 + n as u64, 300 * 1024);
        let mut tx = p.doc_mut(meeting).transaction();
        tx.put(ROOT, format!("attachment-{n}"), blob).unwrap();
        tx.commit();
        p.sync_until(LIMIT, |p| !p.seen.errors.is_empty()).await;
        assert!(!p.seen.closed);
        errors.extend(p.seen.errors.clone());
    }
    for kept in &errors[..3] {
        assert!(kept.contains("quarantine #"), "{errors:?}");
    }
    assert!(
        errors[3].contains("could not keep it for review (this device already has as many refused changes waiting for a coordinator's review as the server keeps)"),
        "{errors:?}"
    );
    let pending = app.get_json("/api/quarantine?status=pending").await;
    assert_eq!(pending.as_array().map(Vec::len), Some(3), "{pending}");
    // Others are served as before.
    let mut other = TestPeer::new("coordinator-phone");
    other.connect(&app).await;
    other.fetch(meeting, LIMIT).await;
    assert!(other.seen.errors.is_empty());
}

/// A holder's first sync message for a record: its heads, no changes yet.
fn holders_first_message() -> Vec<u8> {
    use automerge::transaction::Transactable;
    let mut holder = automerge::Automerge::new();
    let mut tx = holder.transaction();
    tx.put(automerge::ROOT, "kind", "report").unwrap();
    tx.commit();
    let first = automerge::sync::SyncDoc::generate_sync_message(
        &holder,
        &mut automerge::sync::State::new(),
    )
    .unwrap();
    assert!(first.changes.is_empty());
    first.encode()
}

#[tokio::test]
async fn syncs_without_changes_for_records_nobody_holds_start_no_task() {
    let app = spawn_app().await;
    let before = app.hub.metrics.loaded_documents.get();
    let mut flooder = TestPeer::new("flooder");
    flooder.connect(&app).await;
    let data = holders_first_message();
    for _ in 0..500 {
        flooder
            .send_raw(sync_frame("flooder", DocumentId::random(), data.clone()))
            .await;
    }
    // A socket's frames are handled in order: once this request is
    // answered, so are the 500 syncs.
    let sentinel = DocumentId::random();
    flooder.open(sentinel);
    flooder
        .sync_until(LIMIT, |p| p.seen.unavailable.contains(&sentinel))
        .await;
    assert!(flooder.seen.errors.is_empty(), "{:?}", flooder.seen.errors);
    assert!(!flooder.seen.closed);
    let loaded = app.hub.metrics.loaded_documents.get();
    assert!(
        loaded <= before,
        "{loaded} documents loaded after 500 syncs for unknown records ({before} before)"
    );
    // The server remembers the socket as waiting for the first 256 only
    // (the sentinel is not one).
    assert_eq!(app.hub.metrics.waiting_peers.get(), 256);
    flooder.disconnect().await;

    // A record created offline still reaches the server: its changes
    // follow the first message.
    let mut phone = TestPeer::new("field-phone");
    phone.connect(&app).await;
    let report = phone.create(
        twinsync_shared::record::Kind::Report,
        serde_json::json!({"title": {"fr": "Visite à Niamey"}, "report_type": "field", "date": "2026-11-20", "text": "Rencontre avec la mairie."}),
    );
    let heads = phone.heads(report);
    phone.sync_until_acked(LIMIT, report, &heads).await;
    let stored = app.get_json(&format!("/api/records/{report}")).await;
    assert_eq!(stored["record"]["title"]["fr"], "Visite à Niamey");
    // The flooder's socket closed: nobody waits any more.
    eventually(LIMIT, "no peer waits", || {
        app.hub.metrics.waiting_peers.get() == 0
    })
    .await;
}

#[tokio::test]
async fn naming_records_it_already_waits_for_again_does_not_ask_the_store() {
    let app = spawn_app().await;
    let mut phone = TestPeer::new("field-phone");
    phone.connect(&app).await;
    let request = |doc: DocumentId| {
        let msg = Message::Request {
            sender_id: PeerId::new("field-phone"),
            target_id: PeerId::new("server"),
            document_id: doc,
            data: holders_first_message(),
        };
        WsMessage::Binary(msg.encode().into())
    };
    let lacking: Vec<DocumentId> = (0..3).map(|_| DocumentId::random()).collect();
    for doc in &lacking {
        phone.send_raw(request(*doc)).await;
    }
    phone
        .sync_until(LIMIT, |p| {
            lacking.iter().all(|d| p.seen.unavailable.contains(d))
        })
        .await;
    let looked_up = app.hub.metrics.record_lookups.get();
    // The same three, 100 times over: each still answered, and the store
    // not asked; then one more id, which is looked up (the store is asked
    // once, and again once the wait is recorded).
    for _ in 0..100 {
        for doc in &lacking {
            phone.send_raw(request(*doc)).await;
        }
    }
    let last = DocumentId::random();
    phone.send_raw(request(last)).await;
    phone
        .sync_until(LIMIT, |p| p.seen.unavailable.contains(&last))
        .await;
    assert_eq!(app.hub.metrics.record_lookups.get(), looked_up + 2);
    assert_eq!(app.hub.metrics.waiting_peers.get(), 4);
    assert!(phone.seen.errors.is_empty(), "{:?}", phone.seen.errors);
    assert!(!phone.seen.closed);
}

/// A socket's waits end as the records arrive, so a phone that stays
/// connected for weeks can go on waiting for new ones.
#[tokio::test]
async fn a_wait_ends_when_the_record_arrives_and_frees_its_place() {
    let app = spawn_app().await;
    let mut phone = TestPeer::new("field-phone");
    phone.connect(&app).await;
    // 255 records the server lacks, and one the phone created offline:
    // its first message carries no changes either, and waits too.
    let data = holders_first_message();
    for _ in 0..255 {
        phone
            .send_raw(sync_frame(
                "field-phone",
                DocumentId::random(),
                data.clone(),
            ))
            .await;
    }
    let report = phone.create(
        twinsync_shared::record::Kind::Report,
        serde_json::json!({"title": {"ar": "تقرير ميداني"}, "report_type": "field", "date": "2026-12-02"}),
    );
    let heads = phone.heads(report);
    phone.sync_until_acked(LIMIT, report, &heads).await;
    // The report's wait went with its task; its place is free again.
    let later = DocumentId::random();
    phone.open(later);
    phone
        .sync_until(LIMIT, |p| p.seen.unavailable.contains(&later))
        .await;
    assert_eq!(app.hub.metrics.waiting_peers.get(), 256);
    assert!(phone.seen.errors.is_empty(), "{:?}", phone.seen.errors);
}

/// One device's token cannot hold sockets without end: past
/// `max_peers_per_device`, its oldest peer is closed (a phone's socket it
/// gave up on, most often), and its newest are served.
#[tokio::test]
async fn a_device_past_its_peers_cap_loses_its_oldest_peer_and_the_newest_are_served() {
    let app = spawn_app_with(|s| s.max_peers_per_device = 2).await;
    let meeting = app.first("meeting").await;
    let mut peers = Vec::new();
    for i in 0..3 {
        let mut p = TestPeer::new(&format!("tab-{i}"));
        p.connect(&app).await;
        peers.push(p);
    }
    peers[0].sync_until(LIMIT, |p| p.seen.closed).await;
    for p in &mut peers[1..] {
        p.fetch(meeting, LIMIT).await;
        assert!(!p.seen.closed, "{} was closed too", p.id);
    }
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l == "twinsync_peers_displaced_total 1"),
        "{metrics}"
    );
    // The closed one comes back, and the oldest of the others makes way.
    peers[0].connect(&app).await;
    peers[1].sync_until(LIMIT, |p| p.seen.closed).await;
    peers[2].sync(Duration::from_millis(300), LIMIT).await;
    assert!(!peers[2].seen.closed);
}

/// The records `p` was refused as its device holds too many open.
fn not_opened(p: &TestPeer) -> Vec<DocumentId> {
    use twinsync_server::permissions::TOO_MANY_OPEN;
    p.seen
        .refusals
        .iter()
        .filter(|r| r.code == TOO_MANY_OPEN)
        .map(|r| r.document_id)
        .collect()
}

/// A sync payload naming a record's second change and carrying it alone:
/// its ancestor never comes, so a server that lacks the record takes in
/// nothing of it.
fn orphan_change() -> Vec<u8> {
    use automerge::ReadDoc;
    use automerge::transaction::Transactable;
    let mut doc = automerge::Automerge::new();
    for n in 0..2i64 {
        let mut tx = doc.transaction();
        tx.put(automerge::ROOT, "n", n).unwrap();
        tx.commit();
    }
    let second = doc.get_heads()[0];
    let bytes = doc
        .get_change_by_hash(&second)
        .unwrap()
        .raw_bytes()
        .to_vec();
    carrying(second, bytes)
}

/// Every record a socket names keeps a task loaded while the socket
/// stays, even one the server holds nothing of: changes whose ancestors
/// never come leave it empty, so the documents a minute alone would let a
/// socket grow the server's memory for as long as it stays. A device
/// holds at most so many records open over all its sockets, each counted
/// once however many of them hold it, and what a closed socket held
/// counts no more.
#[tokio::test]
async fn a_device_holds_at_most_its_open_documents_over_all_its_sockets() {
    use twinsync_server::auth::Role;
    const CAP: usize = 10;
    let app = spawn_app_with(|s| s.max_open_docs_per_device = CAP).await;
    let meeting = app.first("meeting").await;
    let agreement = app.first("agreement").await;
    let token = app.device(Role::Coordinator, &[], None);
    let before = app.hub.metrics.loaded_documents.get();
    let mut scatter = TestPeer::new("scatter").with_token(&token);
    scatter.connect(&app).await;
    // Records the server lacks are answered as unavailable and not held
    // open, however many are asked for: the socket waits for them.
    let waited: Vec<DocumentId> = (0..2 * CAP).map(|_| DocumentId::random()).collect();
    for id in &waited {
        scatter.open(*id);
    }
    scatter
        .sync_until(LIMIT, |p| p.seen.unavailable.len() == 2 * CAP)
        .await;
    scatter.fetch(meeting, LIMIT).await;
    // Changes for those it waits for, and for new ids, open as many as
    // the cap leaves.
    let data = orphan_change();
    let fresh = (0..CAP).map(|_| DocumentId::random());
    for id in waited.iter().copied().chain(fresh) {
        scatter
            .send_raw(sync_frame("scatter", id, data.clone()))
            .await;
    }
    scatter.sync(Duration::from_millis(500), LIMIT).await;
    assert!(!scatter.seen.closed, "{:?}", scatter.seen.errors);
    assert_eq!(
        not_opened(&scatter).len(),
        2 * CAP + 1,
        "{:?}",
        scatter.seen.errors
    );
    assert!(
        scatter
            .seen
            .errors
            .iter()
            .any(|e| e.contains(&format!("holds {CAP} documents open"))),
        "{:?}",
        scatter.seen.errors
    );
    let loaded = app.hub.metrics.loaded_documents.get();
    assert!(
        loaded <= before + CAP as i64,
        "{loaded} documents loaded for a device allowed {CAP} ({before} before)"
    );

    // The device's next socket opens what the device holds open already,
    // and nothing more.
    let mut tab = TestPeer::new("tab").with_token(&token);
    tab.connect(&app).await;
    tab.fetch(meeting, LIMIT).await;
    tab.open(agreement);
    tab.sync_until(LIMIT, |p| !not_opened(p).is_empty()).await;
    assert_eq!(tab.seen.refusals[0].document_id, agreement);
    assert!(tab.kind_of(agreement).is_none());
    // Another device is served meanwhile.
    let _other = holding(&app, "other", agreement).await;

    // Once the first socket closes, the device opens records again.
    scatter.disconnect().await;
    let mut served = false;
    for _ in 0..50 {
        // A fresh socket sends the record again, as a phone reconnecting.
        tab.disconnect().await;
        tab.seen.refusals.clear();
        tab.connect(&app).await;
        tab.sync_until(LIMIT, |p| {
            p.kind_of(agreement).is_some() || !not_opened(p).is_empty()
        })
        .await;
        if tab.kind_of(agreement).is_some() {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(served, "the closed socket's documents are still counted");
}

/// A revoked device's hand-in keeps a copy of each record it hands in
/// while its socket stays: no more than the documents a device may hold
/// open, per socket. A copy that took in nothing makes way, so a phone
/// that only names records is never refused.
#[tokio::test]
async fn a_revoked_devices_hand_in_holds_at_most_its_open_documents() {
    use twinsync_server::auth::Role;
    const CAP: usize = 5;
    let app = spawn_app_with(|s| s.max_open_docs_per_device = CAP).await;
    let token = app.device(Role::Coordinator, &[], None);
    let mut lost = TestPeer::new("lost-phone").with_token(&token);
    for n in 0..3 * CAP {
        lost.create(
            twinsync_shared::record::Kind::Report,
            serde_json::json!({"title": {"fr": format!("Rapport {n}")}, "report_type": "field", "date": "2026-12-05"}),
        );
    }
    app.revoke(&token).await;
    lost.connect(&app).await;
    // Each record the socket takes costs a load and a quarantine write
    // first: wait for the refusals, then check no more come.
    lost.settle(LIMIT, Duration::from_millis(500), |p| {
        p.seen.closed || not_opened(p).len() >= 2 * CAP
    })
    .await;
    assert!(!lost.seen.closed, "{:?}", lost.seen.errors);
    assert_eq!(not_opened(&lost).len(), 2 * CAP, "{:?}", lost.seen.errors);
    assert!(
        lost.seen
            .errors
            .iter()
            .any(|e| e.contains(&format!("holds {CAP} documents handed in"))),
        "{:?}",
        lost.seen.errors
    );
    // Naming records without changes takes no place for good.
    let mut asking = TestPeer::new("asking-phone").with_token(&token);
    asking.connect(&app).await;
    for _ in 0..3 * CAP {
        asking.open(DocumentId::random());
    }
    asking.sync(Duration::from_millis(500), LIMIT).await;
    assert_eq!(not_opened(&asking).len(), 0, "{:?}", asking.seen.errors);
}

/// A socket that waited for a record the server lacked is taken in by
/// the record's task when another device brings it. If its device then
/// holds as many records open as it may, its answer is refused and it
/// leaves the task: it gets none of the record, then or later, and does
/// not keep the task loaded.
#[tokio::test]
async fn a_waited_record_a_device_may_not_open_is_refused_and_left() {
    use twinsync_server::auth::Role;
    const CAP: usize = 2;
    let app = spawn_app_with(|s| {
        s.max_open_docs_per_device = CAP;
        s.idle_evict_secs = 1;
    })
    .await;
    let token = app.device(Role::Coordinator, &[], None);
    let mut writer = TestPeer::new("writer");
    let report = writer.create(
        twinsync_shared::record::Kind::Report,
        serde_json::json!({"title": {"fr": "Visite à Pune"}, "report_type": "field", "date": "2026-12-05"}),
    );
    let mut waiting = TestPeer::new("waiting").with_token(&token);
    waiting.connect(&app).await;
    waiting.open(report);
    waiting
        .sync_until(LIMIT, |p| p.seen.unavailable.contains(&report))
        .await;
    waiting.fetch(app.first("meeting").await, LIMIT).await;
    waiting.fetch(app.first("agreement").await, LIMIT).await;
    // The report arrives; its task offers it to the waiting socket, whose
    // answer is refused: the device holds two records open.
    writer.connect(&app).await;
    let heads = writer.heads(report);
    writer.sync_until_acked(LIMIT, report, &heads).await;
    waiting
        .sync_until(LIMIT, |p| not_opened(p).contains(&report))
        .await;
    // The writer goes on; the waiting socket gets none of it.
    writer.edit(
        report,
        "title",
        &[Edit::Set {
            path: "/title/fr".into(),
            value: "Visite à Pune, suite".into(),
        }],
    );
    let later = writer.heads(report);
    writer.sync_until_acked(LIMIT, report, &later).await;
    waiting.sync(Duration::from_millis(500), LIMIT).await;
    assert!(waiting.kind_of(report).is_none());
    assert!(!waiting.seen.closed, "{:?}", waiting.seen.errors);
    // Nor does it keep the record's task: once the writer goes, nothing
    // holds the report, which is let go of while the other two stay.
    let loaded = || app.hub.metrics.loaded_documents.get();
    let before = loaded();
    writer.disconnect().await;
    twinsync_tests::eventually(LIMIT, "the report's task let go of", || loaded() < before).await;
    assert_eq!(loaded(), before - 1);
}

/// `from`'s presence message number `count` on record `doc`, as a frame.
fn cursor(from: &TestPeer, doc: DocumentId, count: u64) -> WsMessage {
    let msg = Message::Ephemeral {
        sender_id: from.id.clone(),
        target_id: PeerId::new("server"),
        document_id: doc,
        session_id: "cursor".into(),
        count,
        data: vec![0xa0],
    };
    WsMessage::Binary(msg.encode().into())
}

/// The official client announces its presence on a record as soon as it
/// opens it, before its first sync reaches the server: relayed all the
/// same to the record's peers, not dropped until its next heartbeat.
#[tokio::test]
async fn presence_sent_before_a_socket_syncs_its_record_is_relayed() {
    let app = spawn_app().await;
    let doc = app.first("meeting").await;
    let mut watcher = TestPeer::new("watcher");
    watcher.connect(&app).await;
    watcher.fetch(doc, LIMIT).await;
    let mut newcomer = TestPeer::new("newcomer");
    newcomer.connect(&app).await;
    newcomer.send_raw(cursor(&newcomer, doc, 1)).await;
    watcher.sync(Duration::from_millis(500), LIMIT).await;
    assert_eq!(
        watcher.seen.ephemeral.get(&doc),
        Some(&1),
        "{:?}",
        watcher.seen
    );
    assert!(!newcomer.seen.closed);
}

/// Ephemeral messages go to every other peer of their record: a socket
/// streaming them is relayed its share of each second and told once
/// that the rest are not, and stays connected.
#[tokio::test]
async fn a_stream_of_ephemeral_messages_is_relayed_only_its_share_of_each_second() {
    let app = spawn_app().await;
    let doc = app.first("meeting").await;
    let mut p = TestPeer::new("chatty");
    p.connect(&app).await;
    p.fetch(doc, LIMIT).await;
    for count in 0..80 {
        p.send_raw(cursor(&p, doc, count)).await;
    }
    p.sync(Duration::from_millis(500), LIMIT).await;
    assert!(!p.seen.closed);
    assert_eq!(
        p.seen.errors_with("ephemeral messages past 50"),
        1,
        "{:?}",
        p.seen.errors
    );
}
