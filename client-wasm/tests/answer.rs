//! Which frames the server owes an answer to. The app gives a socket up
//! when such a frame goes a minute unanswered, and asks whether the
//! server is there after 30 s of silence only while none is owed: a frame
//! owed an answer and not counted as such leaves a dead socket to the
//! silence rule, given up after 45 s, and one counted wrongly gives a
//! live socket up.

#![allow(clippy::unwrap_used)] // a test panics to fail

mod common;

use common::{NOW, demo_record, exchange, joined};
use twinsync_client::replica::Replica;
use twinsync_shared::DocumentId;
use twinsync_shared::demo;
use twinsync_shared::protocol::{FrameLimit, Message};
use twinsync_shared::record::{Commit, Edit, Kind, new_document};

/// The changes each sync message in `frames` carries.
fn changes_sent(frames: &[Vec<u8>]) -> Vec<usize> {
    frames
        .iter()
        .filter_map(
            |f| match Message::decode(f, FrameLimit::default()).unwrap() {
                Message::Sync { data, .. } | Message::Request { data, .. } => Some(
                    automerge::sync::Message::decode(&data)
                        .unwrap()
                        .changes
                        .len(),
                ),
                _ => None,
            },
        )
        .collect()
}

fn key(phone: &mut Replica, id: DocumentId) {
    let typed = Edit::SpliceText {
        path: "/minutes".into(),
        index: 0,
        delete: 0,
        insert: "ك".into(),
    };
    phone
        .edit(id, vec![typed], &Commit::new("key", NOW))
        .unwrap();
}

#[test]
fn changes_and_heads_the_server_lacks_are_owed_an_answer_and_nothing_else_is() {
    let records = demo::build().unwrap();
    let club = demo_record(&records, Kind::Club);
    let meeting = demo_record(&records, Kind::Meeting);
    let (mut server, mut phone) = joined(club.id);
    let me = phone.peer_id().clone();
    server.hold(&me, club.id, club.doc.doc().clone());
    let mut held = new_document();
    held.apply_changes(meeting.doc.doc().get_changes(&[]))
        .unwrap();
    server.hold(&me, meeting.id, held);
    exchange(&mut server, &mut phone, |_, p| {
        p.read(meeting.id).is_ok() && p.unconfirmed() == 0
    });
    let _ = phone.outgoing();
    let _ = phone.answer_owed();

    // A key typed on a live socket goes with its change.
    key(&mut phone, meeting.id);
    let sent = phone.outgoing();
    assert_eq!(changes_sent(&sent), vec![1]);
    assert!(phone.answer_owed());
    assert!(!phone.answer_owed(), "owed once per frame sent");
    for reply in server.take(&me, sent) {
        phone.receive(&reply, NOW).unwrap();
    }
    // What the phone says once answered is owed nothing.
    let said = phone.outgoing();
    assert!(changes_sent(&said).iter().all(|&n| n == 0), "{said:?}");
    assert!(!phone.answer_owed());
    assert_eq!(phone.unconfirmed(), 0);

    // A new socket: the phone names each record's heads, which the server
    // confirmed on the last one, and owes nothing.
    let _ = phone.disconnected();
    server.accept(&mut phone);
    let rejoined = phone.outgoing();
    assert!(!rejoined.is_empty());
    assert!(!phone.answer_owed());
    // A key typed before the server's first answer is announced by its
    // heads alone, the change to follow once asked for; the server answers
    // that announcement.
    key(&mut phone, meeting.id);
    let announced = phone.outgoing();
    assert_eq!(changes_sent(&announced), vec![0]);
    assert!(phone.answer_owed());
    let mut frames = rejoined;
    frames.extend(announced);
    let replies = server.take(&me, frames);
    assert!(!replies.is_empty(), "the announcement went unanswered");
    for reply in replies {
        phone.receive(&reply, NOW).unwrap();
    }
    exchange(&mut server, &mut phone, |_, p| p.unconfirmed() == 0);
}
