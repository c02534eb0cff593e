//! Peers with divergent offline edits converge through the server.

use std::time::Duration;

use serde_json::json;
use twinsync_shared::record::{Edit, Kind, Record};
use twinsync_tests::{TestPeer, eventually, spawn_app};

const QUIET: Duration = Duration::from_millis(150);
const LIMIT: Duration = Duration::from_secs(10);

/// The note delegate `i` adds to the minutes offline, in French and Arabic.
fn note(i: usize) -> String {
    format!("[note {i}: ملاحظة {i}]")
}

fn minutes(peer: &TestPeer, id: twinsync_shared::DocumentId) -> String {
    match peer.record(id) {
        Record::Meeting(m) => m.minutes,
        other => panic!("not a meeting: {other:?}"),
    }
}

#[tokio::test]
async fn divergent_offline_edits_converge_through_the_server() {
    let app = spawn_app().await;
    let meeting = app.first("meeting").await;
    let mut peers: Vec<TestPeer> = ["dakar", "niamey", "oakland"]
        .iter()
        .map(|n| TestPeer::new(n))
        .collect();
    for p in &mut peers {
        p.connect(&app).await;
        p.open(meeting);
        p.sync_until(LIMIT, |p| p.kind_of(meeting) == Some(Kind::Meeting))
            .await;
        p.disconnect().await;
    }
    // Offline, each delegate edits the minutes and the agenda.
    for (i, p) in peers.iter_mut().enumerate() {
        let added = format!(" {}", note(i));
        let len = minutes(p, meeting).chars().count();
        p.edit(
            meeting,
            "offline notes",
            &[
                Edit::SpliceText {
                    path: "/minutes".into(),
                    index: len,
                    delete: 0,
                    insert: added,
                },
                Edit::InsertItem {
                    path: "/agenda".into(),
                    after: None,
                    item: json!({"id": format!("item-{i}"), "title": "Point"}),
                },
            ],
        );
    }
    for p in &mut peers {
        p.connect(&app).await;
        p.sync(QUIET, LIMIT).await;
    }
    for p in &mut peers {
        p.sync_until(LIMIT, |p| {
            let text = minutes(p, meeting);
            (0..3).all(|i| text.contains(&note(i)))
        })
        .await;
    }
    let expected = peers[0].doc(meeting).read().unwrap();
    for p in &peers {
        assert_eq!(p.doc(meeting).read().unwrap(), expected, "{} differs", p.id);
        let text = minutes(p, meeting);
        for i in 0..3 {
            assert!(text.contains(&note(i)), "note {i} lost: {text}");
        }
    }
    // The server's stored record has all of it.
    let stored = app.get_json(&format!("/api/records/{meeting}")).await;
    let agenda = stored["record"]["agenda"].as_array().unwrap();
    for i in 0..3 {
        assert!(
            agenda.iter().any(|a| a["id"] == format!("item-{i}")),
            "agenda item {i} missing on the server"
        );
    }
}

#[tokio::test]
async fn a_peer_that_connects_later_receives_everything() {
    let app = spawn_app().await;
    let mut early = TestPeer::new("early");
    early.connect(&app).await;
    let report = early.create(Kind::Report, json!({"title": {"fr": "Visite à Dakar"}, "report_type": "visit", "date": "2026-11-20", "text": "Rencontre avec la mairie."}));
    early.edit(
        report,
        "more",
        &[Edit::SpliceText {
            path: "/text".into(),
            index: 0,
            delete: 0,
            insert: "زيارة. ".into(),
        }],
    );
    let heads = early.heads(report);
    early.sync_until_acked(LIMIT, report, &heads).await;
    early.disconnect().await;

    let mut late = TestPeer::new("late");
    late.connect(&app).await;
    late.open(report);
    late.sync_until(LIMIT, |p| p.has_changes(report, &heads))
        .await;
    let Record::Report(r) = late.record(report) else {
        panic!()
    };
    assert_eq!(r.text, "زيارة. Rencontre avec la mairie.");
}

#[tokio::test]
async fn live_edits_reach_other_connected_peers() {
    let app = spawn_app().await;
    let meeting = app.first("meeting").await;
    let mut a = TestPeer::new("a");
    let mut b = TestPeer::new("b");
    for p in [&mut a, &mut b] {
        p.connect(&app).await;
        p.fetch(meeting, LIMIT).await;
    }
    a.edit(
        meeting,
        "live",
        &[Edit::SpliceText {
            path: "/minutes".into(),
            index: 0,
            delete: 0,
            insert: "LIVE ".into(),
        }],
    );
    a.sync_until(LIMIT, |p| p.unacknowledged(meeting) == 0)
        .await;
    b.sync_until(LIMIT, |p| minutes(p, meeting).starts_with("LIVE "))
        .await;
}

/// The peer waits for it, and stops waiting when its socket closes.
#[tokio::test]
async fn a_request_for_an_unknown_record_is_answered_unavailable() {
    let app = spawn_app().await;
    let mut p = TestPeer::new("curious");
    p.connect(&app).await;
    let unknown = twinsync_shared::DocumentId::random();
    p.open(unknown);
    p.sync_until(LIMIT, |p| p.seen.unavailable.contains(&unknown))
        .await;
    assert!(p.seen.errors.is_empty(), "{:?}", p.seen.errors);
    let listed = app.get_json("/api/records").await;
    assert!(
        !listed
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == unknown.to_string())
    );
    assert_eq!(app.hub.metrics.waiting_peers.get(), 1);
    p.disconnect().await;
    eventually(LIMIT, "the closed socket's wait forgotten", || {
        app.hub.metrics.waiting_peers.get() == 0
    })
    .await;
}

/// A phone learns of a record (from the club index, or a link) before its
/// creator's changes reach the server: it is told the record is
/// unavailable, and is offered it once they arrive, without asking again.
#[tokio::test]
async fn a_peer_told_a_record_is_unavailable_receives_it_once_its_creator_syncs() {
    let app = spawn_app().await;
    let mut creator = TestPeer::new("niamey-phone");
    let report = creator.create(
        Kind::Report,
        json!({"title": {"fr": "Visite à Smara", "ar": "زيارة إلى السمارة"}, "report_type": "visit", "date": "2026-11-30", "text": "Accueil à la mairie."}),
    );
    let mut reader = TestPeer::new("coordinator-phone");
    reader.connect(&app).await;
    reader.open(report);
    reader
        .sync_until(LIMIT, |p| p.seen.unavailable.contains(&report))
        .await;
    assert_eq!(app.hub.metrics.waiting_peers.get(), 1);

    creator.connect(&app).await;
    let heads = creator.heads(report);
    creator.sync_until_acked(LIMIT, report, &heads).await;
    reader
        .sync_until(LIMIT, |p| p.kind_of(report) == Some(Kind::Report))
        .await;
    match reader.record(report) {
        Record::Report(r) => assert_eq!(r.title.ar.as_deref(), Some("زيارة إلى السمارة")),
        other => panic!("not a report: {other:?}"),
    }
    assert_eq!(app.hub.metrics.waiting_peers.get(), 0);
}

/// A socket that reads at most `per_sec` bytes a second from a receive
/// buffer kept small: a phone on a slow mobile link, as the server sees it.
struct SlowLink {
    inner: tokio::net::TcpStream,
    per_sec: usize,
    budget: usize,
    refill: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl tokio::io::AsyncRead for SlowLink {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::future::Future;
        use std::task::{Poll, ready};
        // A tenth of a second's bytes at a time.
        if self.budget == 0 {
            ready!(self.refill.as_mut().poll(cx));
            self.budget = self.per_sec / 10;
            let next = tokio::time::Instant::now() + Duration::from_millis(100);
            self.refill.as_mut().reset(next);
        }
        let mut tmp = vec![0u8; self.budget.min(buf.remaining())];
        let mut read = tokio::io::ReadBuf::new(&mut tmp);
        ready!(std::pin::Pin::new(&mut self.inner).poll_read(cx, &mut read))?;
        let n = read.filled().len();
        buf.put_slice(read.filled());
        self.budget -= n;
        Poll::Ready(Ok(()))
    }
}

impl tokio::io::AsyncWrite for SlowLink {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A report stored with an attachment of `bytes` bytes of noise, as it
/// would be after a delegate's upload.
fn stored_report(app: &twinsync_tests::TestApp, bytes: usize) -> twinsync_shared::DocumentId {
    use automerge::transaction::Transactable;
    let id = twinsync_shared::DocumentId::random();
    let mut doc = twinsync_shared::record::RecordDoc::create(
        Kind::Report,
        &json!({"title": {"fr": "Rapport avec pièce jointe"}, "report_type": "visit", "date": "2026-11-30"}),
        &twinsync_shared::record::Commit::new("new", 1),
    )
    .unwrap()
    .into_automerge();
    let mut tx = doc.transaction();
    tx.put(
        automerge::ROOT,
        "attachment",
        twinsync_tests::noise(7, bytes),
    )
    .unwrap();
    tx.commit();
    let summary = twinsync_server::document::summarise(&doc);
    app.hub
        .store
        .append(id, &doc.save(), &summary, &[], 1)
        .unwrap();
    id
}

/// Joins on `ws` as `me` with `peer_metadata`, asks for record `id`, and
/// returns each message heard, with its frame's length, until the record
/// comes whole (a sync frame of over `whole` bytes), and how long that
/// took. Panics if the socket fails; stops after a minute.
async fn read_whole<S>(
    ws: &mut tokio_tungstenite::WebSocketStream<S>,
    me: &twinsync_shared::PeerId,
    peer_metadata: twinsync_shared::protocol::PeerMetadata,
    id: twinsync_shared::DocumentId,
    whole: usize,
) -> (Vec<(usize, twinsync_shared::protocol::Message)>, Duration)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message as WsMessage;
    use twinsync_shared::protocol::Message;
    let join = Message::Join {
        sender_id: me.clone(),
        peer_metadata,
        supported_protocol_versions: vec!["1".into()],
    };
    ws.send(WsMessage::Binary(join.encode().into()))
        .await
        .unwrap();
    let empty = twinsync_shared::record::new_document();
    let mut state = automerge::sync::State::new();
    let first = automerge::sync::SyncDoc::generate_sync_message(&empty, &mut state).unwrap();
    let started = std::time::Instant::now();
    let mut heard = Vec::new();
    while started.elapsed() < Duration::from_secs(60) {
        let Ok(Some(frame)) = tokio::time::timeout(Duration::from_secs(60), ws.next()).await else {
            break;
        };
        let bytes = match frame {
            Ok(WsMessage::Binary(bytes)) => bytes,
            Ok(_) => continue,
            Err(e) => panic!("the socket failed after {:?}: {e}", started.elapsed()),
        };
        let msg = Message::decode(&bytes, Default::default()).unwrap();
        let done = matches!(&msg, Message::Sync { data, .. } if data.len() > whole);
        if let Message::Peer { sender_id, .. } = &msg {
            let request = Message::Request {
                sender_id: me.clone(),
                target_id: sender_id.clone(),
                document_id: id,
                data: first.clone().encode(),
            };
            ws.send(WsMessage::Binary(request.encode().into()))
                .await
                .unwrap();
        }
        heard.push((bytes.len(), msg));
        if done {
            break;
        }
    }
    (heard, started.elapsed())
}

/// A record of 6 MiB, sent whole on a first sync, reaches a phone reading
/// at 1 MiB/s though the peer timeout is 1 s: the frame takes longer than
/// the timeout to send, and the phone's pong waits behind it.
#[tokio::test]
async fn a_large_record_reaches_a_phone_on_a_slow_link() {
    use twinsync_tests::Server;
    let app = twinsync_tests::spawn_app_with(|s| {
        s.peer_timeout_secs = 1;
        s.ping_secs = 1;
    })
    .await;
    let id = stored_report(&app, 6 << 20);
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(32 * 1024).unwrap();
    let inner = socket.connect(app.addr()).await.unwrap();
    let slow = SlowLink {
        inner,
        per_sec: 1 << 20,
        budget: 0,
        refill: Box::pin(tokio::time::sleep(Duration::ZERO)),
    };
    let url = format!("ws://{}/sync?token={}", app.addr(), app.token());
    let (mut ws, _) = tokio_tungstenite::client_async(url, slow).await.unwrap();
    let me = twinsync_shared::PeerId::new("slow-phone");
    let (heard, took) = read_whole(&mut ws, &me, Default::default(), id, 6 << 20).await;
    assert!(
        matches!(
            heard.first(),
            Some((_, twinsync_shared::protocol::Message::Peer { .. }))
        ),
        "not joined: {:?}",
        heard.first()
    );
    let Some((got, twinsync_shared::protocol::Message::Sync { data, .. })) = heard.last() else {
        panic!("no whole record after {took:?}");
    };
    assert!(data.len() > 6 << 20, "no whole record after {took:?}");
    assert!(
        took > Duration::from_secs(2),
        "the link was slow: {took:?} for {got} bytes"
    );
}

/// The app hears a frame only once it is whole, and gives a socket up
/// after 45 s without one: the server tells a peer that reads
/// `twinsync-coming` (the app, which says so in its join) how large a
/// large frame is just before it, and tells no other peer: an official
/// client, or an app installed before it knew the message, which offers
/// pings all the same, would refuse it.
#[tokio::test]
async fn a_large_frame_is_announced_to_the_app_and_to_no_other_client() {
    use twinsync_shared::protocol::{ANNOUNCED_FRAME_BYTES, Message, PeerMetadata};
    use twinsync_tests::Server;
    let app = twinsync_tests::spawn_app().await;
    let id = stored_report(&app, ANNOUNCED_FRAME_BYTES + 1024);
    let url = format!("ws://{}/sync?token={}", app.addr(), app.token());
    for (n, (answers_pings, hears_coming)) in [(true, true), (true, false), (false, false)]
        .into_iter()
        .enumerate()
    {
        let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .unwrap();
        let me = twinsync_shared::PeerId::new(format!("phone-{n}"));
        let metadata = PeerMetadata {
            answers_pings,
            hears_coming,
            ..PeerMetadata::default()
        };
        let (heard, took) = read_whole(&mut ws, &me, metadata, id, ANNOUNCED_FRAME_BYTES).await;
        let Some((whole, Message::Sync { .. })) = heard.last() else {
            panic!("no whole record after {took:?}: {heard:?}");
        };
        let announced: Vec<u64> = heard
            .iter()
            .filter_map(|(_, m)| match m {
                Message::Coming { bytes, .. } => Some(*bytes),
                _ => None,
            })
            .collect();
        if hears_coming {
            assert_eq!(
                announced,
                vec![*whole as u64],
                "heard {} frames",
                heard.len()
            );
            let before = &heard[heard.len() - 2].1;
            assert!(
                matches!(before, Message::Coming { target_id, .. } if *target_id == me),
                "{before:?}"
            );
        } else {
            assert!(announced.is_empty(), "{announced:?}");
        }
    }
}
