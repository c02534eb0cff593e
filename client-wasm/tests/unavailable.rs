//! A record the server first says it does not have, then serves: the
//! race seen in the browser when one phone opens a meeting another phone
//! has just created, and its `request` reaches the server's document task
//! before the creator's changes do. The server answers `doc-unavailable`,
//! then syncs the meeting once the changes land. The replica must take the
//! record as available again, or it never sends its own edits to it.
//!
//! The server's side is the shared sync engine itself, with no network.

#![allow(clippy::unwrap_used)] // a test panics to fail

mod common;

use common::{NOW, Server, demo_record, exchange, joined};
use twinsync_client::replica::Replica;
use twinsync_shared::demo::{self, DemoRecord};
use twinsync_shared::record::{Commit, Edit, Kind, new_document};

#[test]
fn a_record_the_server_first_lacked_then_served_takes_the_phones_edits() {
    let records = demo::build().unwrap();
    let (mut server, mut phone, club, meeting) = at_the_club(&records);
    let phone_id = phone.peer_id().clone();

    // The club arrives; the phone asks for the meeting it lists, which the
    // server does not hold yet.
    exchange(&mut server, &mut phone, |_, p| {
        p.unavailable().contains(&meeting.id)
    });
    assert!(phone.read(club.id).is_ok());

    // The creator's changes land: the server's document task, which the
    // phone's request joined, syncs the meeting to the phone.
    server.hold(&phone_id, meeting.id, arrived(meeting));
    exchange(&mut server, &mut phone, |_, p| p.read(meeting.id).is_ok());
    assert!(
        !phone.unavailable().contains(&meeting.id),
        "the server serves the meeting, yet the phone still counts it unavailable"
    );

    // The phone's edit reaches the server.
    let out = phone
        .edit(
            meeting.id,
            vec![Edit::Set {
                path: "/time".into(),
                value: serde_json::json!("10:30"),
            }],
            &Commit::new("time", NOW),
        )
        .unwrap();
    assert!(!out.chunks.is_empty());
    exchange(&mut server, &mut phone, |s, p| {
        let on_server: Vec<String> = s.docs[&meeting.id]
            .0
            .get_heads()
            .iter()
            .map(ToString::to_string)
            .collect();
        p.unconfirmed() == 0 && p.read(meeting.id).unwrap()["heads"] == serde_json::json!(on_server)
    });
    let (doc, _) = &server.docs[&meeting.id];
    let time = automerge::ReadDoc::get(doc, automerge::ROOT, "time")
        .unwrap()
        .unwrap()
        .0;
    assert_eq!(
        time.as_str(),
        Some("10:30"),
        "the server holds the phone's edit"
    );
}

/// A record the club lists that the server still lacks (its maker's
/// phone has not sent it) is asked for again when the club changes, and
/// counted unavailable again, not left counted as syncing for good.
#[test]
fn a_listed_record_still_missing_is_asked_for_again_when_the_club_changes() {
    let records = demo::build().unwrap();
    let (mut server, mut phone, club, meeting) = at_the_club(&records);
    exchange(&mut server, &mut phone, |_, p| {
        p.unavailable().contains(&meeting.id)
    });
    assert_eq!(phone.syncing(), 0);
    // Another device renames the club.
    let (doc, _) = server.docs.get_mut(&club.id).unwrap();
    let mut renamed = twinsync_shared::record::RecordDoc::from_automerge(doc.clone());
    renamed
        .edit(
            &Commit::new("rename", NOW),
            &[Edit::Set {
                path: "/name/en".into(),
                value: serde_json::json!("Twinned cities"),
            }],
        )
        .unwrap();
    *doc = renamed.into_automerge();
    exchange(&mut server, &mut phone, |_, p| {
        p.read(club.id).unwrap()["record"]["name"]["en"] == "Twinned cities"
            && p.unavailable().contains(&meeting.id)
    });
    assert_eq!(phone.syncing(), 0, "the missing record counted as syncing");
}

/// The changes not yet confirmed, counted after each keystroke as the
/// status is: each new key adds one, and what the server confirms leaves.
#[test]
fn the_unconfirmed_count_follows_each_key_and_each_confirmation() {
    let records = demo::build().unwrap();
    let (mut server, mut phone, _, meeting) = at_the_club(&records);
    let phone_id = phone.peer_id().clone();
    server.hold(&phone_id, meeting.id, arrived(meeting));
    exchange(&mut server, &mut phone, |_, p| {
        p.read(meeting.id).is_ok() && p.unconfirmed() == 0
    });
    let key = |phone: &mut Replica, at: usize| {
        phone
            .edit(
                meeting.id,
                vec![Edit::SpliceText {
                    path: "/minutes".into(),
                    index: at,
                    delete: 0,
                    insert: "ك".into(),
                }],
                &Commit::new("key", NOW),
            )
            .unwrap();
    };
    for typed in 1..=5 {
        key(&mut phone, 0);
        assert_eq!(phone.unconfirmed(), typed);
        assert_eq!(phone.unconfirmed_by_record().get(&meeting.id), Some(&typed));
    }
    exchange(&mut server, &mut phone, |_, p| p.unconfirmed() == 0);
    for typed in 1..=3 {
        key(&mut phone, 1);
        assert_eq!(phone.unconfirmed(), typed);
    }
}

/// A phone joined to a server that holds the demo club of `records`; the
/// club, and a meeting it lists that the server does not hold yet.
fn at_the_club(records: &[DemoRecord]) -> (Server, Replica, &DemoRecord, &DemoRecord) {
    let club = demo_record(records, Kind::Club);
    let meeting = demo_record(records, Kind::Meeting);
    let (mut server, phone) = joined(club.id);
    server.hold(&phone.peer_id().clone(), club.id, club.doc.doc().clone());
    (server, phone, club, meeting)
}

/// `record`'s changes, as they land on the server from the device that
/// made them.
fn arrived(record: &DemoRecord) -> automerge::Automerge {
    let mut doc = new_document();
    doc.apply_changes(record.doc.doc().get_changes(&[]))
        .unwrap();
    doc
}
