//! The club index lists every record; a phone lists there the records it
//! created, but not one a coordinator has taken out.
//!
//! The server's side is the shared sync engine itself, with no network.

#![allow(clippy::unwrap_used)] // a test panics to fail

mod common;

use common::{NOW, demo_record, exchange, joined};
use serde_json::json;
use twinsync_shared::demo;
use twinsync_shared::record::{Commit, Edit, Kind, RecordDoc, new_document};

#[test]
fn a_record_a_coordinator_took_out_of_the_index_stays_out() {
    let records = demo::build().unwrap();
    let (club, meeting) = (
        demo_record(&records, Kind::Club),
        demo_record(&records, Kind::Meeting),
    );
    let (mut server, mut phone) = joined(club.id);
    let me = phone.peer_id().clone();
    let copy = |doc: &automerge::Automerge| {
        let mut fresh = new_document();
        fresh.apply_changes(doc.get_changes(&[])).unwrap();
        fresh
    };
    server.hold(&me, club.id, copy(club.doc.doc()));
    server.hold(&me, meeting.id, copy(meeting.doc.doc()));
    exchange(&mut server, &mut phone, |_, p| p.read(meeting.id).is_ok());
    let key = meeting.id.to_string();
    let indexed = |doc: &automerge::Automerge| {
        RecordDoc::from_automerge(doc.clone()).read().unwrap()["index"]
            .get(&key)
            .is_some()
    };
    assert!(indexed(&server.docs[&club.id].0));

    // A coordinator takes the meeting out of the index; the phone, which
    // holds the meeting, takes the change in.
    let mut taken = RecordDoc::from_automerge(server.docs[&club.id].0.clone());
    taken
        .edit(
            &Commit::new("Take out a meeting entered twice", NOW),
            &[Edit::RemoveEntry {
                path: format!("/index/{key}"),
            }],
        )
        .unwrap();
    server.docs.get_mut(&club.id).unwrap().0 = taken.into_automerge();
    let agreed = |s: &common::Server, p: &twinsync_client::replica::Replica| {
        let heads: Vec<String> = s.docs[&club.id]
            .0
            .get_heads()
            .iter()
            .map(ToString::to_string)
            .collect();
        // A listing the phone makes as the club's change arrives is in
        // its copy at once, so equal heads mean the server has it too.
        p.read(club.id).unwrap()["heads"] == json!(heads)
    };
    exchange(&mut server, &mut phone, agreed);
    assert!(
        !indexed(&server.docs[&club.id].0),
        "the phone listed the meeting again"
    );

    // A record the phone creates is listed, and the meeting still is not.
    let (created, _) = phone
        .create(
            Kind::Meeting,
            &json!({"title": {"fr": "Comité jeunesse"}, "date": "2026-12-07"}),
            &Commit::new("new", NOW),
        )
        .unwrap();
    exchange(&mut server, &mut phone, agreed);
    let index = RecordDoc::from_automerge(server.docs[&club.id].0.clone())
        .read()
        .unwrap()["index"]
        .clone();
    assert!(index.get(created.to_string()).is_some(), "{index}");
    assert!(index.get(&key).is_none(), "{index}");
}

/// A record made on a fresh phone before the club record reached it is
/// listed once the club record arrives.
#[test]
fn a_record_created_before_the_club_arrived_is_listed_when_it_does() {
    let records = demo::build().unwrap();
    let club = demo_record(&records, Kind::Club);
    let (mut server, mut phone) = joined(club.id);
    let (created, _) = phone
        .create(
            Kind::Meeting,
            &json!({"title": {"ar": "لجنة الشباب"}, "date": "2026-12-07"}),
            &Commit::new("new", NOW),
        )
        .unwrap();
    let me = phone.peer_id().clone();
    let mut doc = new_document();
    doc.apply_changes(club.doc.doc().get_changes(&[])).unwrap();
    server.hold(&me, club.id, doc);
    exchange(&mut server, &mut phone, |s, _| {
        RecordDoc::from_automerge(s.docs[&club.id].0.clone())
            .read()
            .unwrap()["index"]
            .get(created.to_string())
            .is_some()
    });
}
