//! `twinsync-ping` in both directions. The app says in its `join` that it
//! answers pings: the server pings a socket whose frames wait for the
//! device's budget, which it does not read meanwhile, and a browser hears
//! no WebSocket ping. Answered with a pong, the ping is also a frame the
//! app hears, so it does not give the socket up as silent.

#![allow(clippy::unwrap_used)] // a test panics to fail

mod common;

use common::{NOW, Server, joined};
use twinsync_client::replica::Replica;
use twinsync_shared::protocol::{FrameLimit, Message};
use twinsync_shared::{DocumentId, PeerId, StorageId};

fn decoded(frames: &[Vec<u8>]) -> Vec<Message> {
    frames
        .iter()
        .map(|f| Message::decode(f, FrameLimit::default()).unwrap())
        .collect()
}

/// A joined phone that has said what it had to on joining, then was
/// pinged by its server.
fn pinged() -> (Server, Replica) {
    let (server, mut phone) = joined(DocumentId::random());
    let _ = phone.outgoing();
    let ping = Message::Ping {
        sender_id: server.me.clone(),
        target_id: phone.peer_id().clone(),
    };
    phone.receive(&ping.encode(), NOW).unwrap();
    (server, phone)
}

#[test]
fn the_app_says_in_its_join_that_it_answers_pings() {
    let phone = Replica::new(PeerId::new("phone"), StorageId::new("phone-storage"));
    let Message::Join { peer_metadata, .. } = phone.join() else {
        panic!("not a join");
    };
    assert!(peer_metadata.answers_pings);
}

#[test]
fn a_ping_from_the_server_is_answered_once_with_a_pong() {
    let (server, mut phone) = pinged();
    let sent = decoded(&phone.outgoing());
    assert_eq!(
        sent,
        vec![Message::Pong {
            sender_id: phone.peer_id().clone(),
            target_id: server.me.clone(),
        }]
    );
    assert!(phone.outgoing().is_empty(), "answered twice");

    // A ping from anyone but the server it joined is not answered.
    let stranger = Message::Ping {
        sender_id: PeerId::new("stranger"),
        target_id: phone.peer_id().clone(),
    };
    phone.receive(&stranger.encode(), NOW).unwrap();
    assert!(phone.outgoing().is_empty());
}

#[test]
fn a_ping_is_answered_on_its_own_socket_or_not_at_all() {
    let (server, mut phone) = pinged();
    // The socket drops before the answer goes; the next one owes none.
    phone.disconnected();
    server.accept(&mut phone);
    let sent = decoded(&phone.outgoing());
    assert!(
        !sent.iter().any(|m| matches!(m, Message::Pong { .. })),
        "{sent:?}"
    );
}
