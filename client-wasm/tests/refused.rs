//! What the phone does when a message for one record cannot go on: the
//! sync engine refuses what the server sent for it, or the server drops
//! what the phone sent unread. The other records go on syncing on the same
//! socket, and the one held back starts afresh on it after a backoff, not
//! only when the phone happens to reconnect.
//!
//! The server's side is the shared sync engine itself, with no network.

#![allow(clippy::unwrap_used)] // a test panics to fail

mod common;

use automerge::{ReadDoc, sync};
use common::{NOW, Server, demo_record, exchange, joined};
use twinsync_client::replica::Replica;
use twinsync_shared::demo::{self, DemoRecord};
use twinsync_shared::protocol::{DocSync, FrameLimit, Message, Refusal, UNREADABLE, sync_shape};
use twinsync_shared::record::{Commit, Edit, Kind, RecordDoc, new_document, read_document};
use twinsync_shared::{DocumentId, PeerId};

#[test]
fn a_record_whose_message_the_engine_refuses_is_asked_for_again_and_the_others_sync() {
    let records = demo::build().unwrap();
    let (mut server, mut phone, meeting, project) = holding_two(&records);
    let me = phone.peer_id().clone();

    let time_before = phone.read(meeting.id).unwrap()["record"]["time"].clone();
    // Another device moves the meeting; the server's message carrying
    // that change reaches the phone garbled.
    elsewhere(&mut server, meeting.id, "14:00");
    let mut garbled = 0;
    for frame in server.take(&me, Vec::new()) {
        let frame = match Message::decode(&frame, FrameLimit::default()).unwrap() {
            Message::Sync {
                sender_id,
                target_id,
                document_id,
                ..
            } if document_id == meeting.id => {
                garbled += 1;
                Message::Sync {
                    sender_id,
                    target_id,
                    document_id,
                    data: b"not a sync message".to_vec(),
                }
                .encode()
            }
            _ => frame,
        };
        let out = phone
            .receive(&frame, NOW)
            .expect("one record's message is no reason to drop the socket");
        if !out.refused_here.is_empty() {
            assert!(out.refused_here[0].contains(&meeting.id.to_string()));
            assert_eq!(out.retry_after, Some(60), "asked for again after a minute");
        }
    }
    assert_eq!(garbled, 1);
    assert_eq!(phone.held_back(), 1);

    // The delegate goes on editing both records.
    set(&mut phone, meeting.id, "/place/en", "Town hall");
    set(
        &mut phone,
        project.id,
        "/title/en",
        "Follow-up, second year",
    );
    let frames = phone.outgoing();
    let sent: Vec<DocumentId> = frames.iter().filter_map(|f| record_of(f)).collect();
    assert!(sent.contains(&project.id), "{sent:?}");
    assert!(!sent.contains(&meeting.id), "the meeting waits: {sent:?}");
    let replies = server.take(&me, frames);
    for frame in replies {
        phone.receive(&frame, NOW).unwrap();
    }
    exchange(&mut server, &mut phone, |s, _| {
        read(s, project.id, "title")["en"] == "Follow-up, second year"
    });
    // Only the meeting's own edit waits, not its whole history.
    assert_eq!(phone.unconfirmed(), 1);

    // A later message for the meeting, whose change the phone could take
    // in (made beside the refused one, not after it), is not taken in
    // meanwhile.
    beside(&mut server, meeting.id, "/place/fr", "Salle des fêtes");
    for frame in server.take(&me, Vec::new()) {
        phone.receive(&frame, NOW).unwrap();
    }
    assert_eq!(
        phone.read(meeting.id).unwrap()["record"]["time"],
        time_before
    );
    assert_ne!(
        phone.read(meeting.id).unwrap()["record"]["place"]["fr"],
        "Salle des fêtes"
    );
    assert_eq!(phone.retry_deferred(NOW + 30), Some(30), "not due yet");
    assert!(
        phone
            .outgoing()
            .iter()
            .all(|f| record_of(f) != Some(meeting.id))
    );

    // A minute on, on the same socket, the meeting starts afresh: the
    // server sends again what it had sent, and takes the phone's edit.
    assert_eq!(phone.retry_deferred(NOW + 60), None);
    exchange(&mut server, &mut phone, |_, p| {
        let record = &p.read(meeting.id).unwrap()["record"];
        p.unconfirmed() == 0
            && record["time"] == "14:00"
            && record["place"]["fr"] == "Salle des fêtes"
    });
    assert_eq!(phone.held_back(), 0);
    assert_eq!(read(&server, meeting.id, "place")["en"], "Town hall");
}

/// A message refused though it brought nothing the phone lacked: after
/// the reset flag the server answers with its heads, though it has nothing
/// to send, and the record counts as in step again, said so.
#[test]
fn a_refused_record_the_server_has_nothing_more_for_is_in_step_again() {
    let records = demo::build().unwrap();
    let (mut server, mut phone, meeting, _) = holding_two(&records);
    let me = phone.peer_id().clone();
    let bad = Message::Sync {
        sender_id: server.me.clone(),
        target_id: me.clone(),
        document_id: meeting.id,
        data: b"not a sync message".to_vec(),
    };
    let out = phone.receive(&bad.encode(), NOW).unwrap();
    assert_eq!(out.refused_here.len(), 1);
    assert_eq!(phone.held_back(), 1);
    assert_eq!(phone.retry_deferred(NOW + 60), None);
    exchange(&mut server, &mut phone, |_, p| {
        p.held_back() == 0 && p.syncing() == 0
    });
    // Refused again later, it waits a minute again, not two: the way out
    // of the backoff was taken.
    let out = phone.receive(&bad.encode(), NOW + 100).unwrap();
    assert_eq!(out.retry_after, Some(60));
}

/// A message for a refused record that only brings what builds on the
/// refused one (relayed before the server heard the reset) takes nothing
/// in: it is no way out of the backoff, and the next refusal waits twice
/// as long.
#[test]
fn a_message_that_only_waits_for_the_refused_one_keeps_the_backoff() {
    let records = demo::build().unwrap();
    let (mut server, mut phone, meeting, _) = holding_two(&records);
    let me = phone.peer_id().clone();
    let garbled = |frames: Vec<Vec<u8>>| -> Vec<Vec<u8>> {
        frames
            .into_iter()
            .map(
                |frame| match Message::decode(&frame, FrameLimit::default()).unwrap() {
                    Message::Sync {
                        sender_id,
                        target_id,
                        document_id,
                        ..
                    } if document_id == meeting.id => Message::Sync {
                        sender_id,
                        target_id,
                        document_id,
                        data: b"not a sync message".to_vec(),
                    }
                    .encode(),
                    _ => frame,
                },
            )
            .collect()
    };
    elsewhere(&mut server, meeting.id, "14:00");
    for frame in garbled(server.take(&me, Vec::new())) {
        phone.receive(&frame, NOW).unwrap();
    }
    assert_eq!(phone.held_back(), 1);
    // The next change, relayed as the server relays: alone, with its heads.
    elsewhere(&mut server, meeting.id, "15:00");
    let relayed = {
        let (doc, _) = &server.docs[&meeting.id];
        let heads = doc.get_heads();
        let change = doc
            .get_change_by_hash(&heads[0])
            .unwrap()
            .raw_bytes()
            .to_vec();
        let mut flags = sync::MessageFlags::new();
        flags.set(sync::MessageFlags::SUPPORTS_SYNC_RESET);
        let message = sync::Message {
            heads: heads.clone(),
            need: Vec::new(),
            have: vec![sync::Have {
                last_sync: heads,
                bloom: sync::BloomFilter::default(),
            }],
            changes: vec![change].into(),
            flags: Some(flags),
            version: sync::MessageVersion::V1,
        };
        Message::Sync {
            sender_id: server.me.clone(),
            target_id: me.clone(),
            document_id: meeting.id,
            data: message.encode(),
        }
        .encode()
    };
    assert_eq!(phone.retry_deferred(NOW + 60), None);
    let out = phone.receive(&relayed, NOW + 60).unwrap();
    assert!(out.changed.is_empty(), "nothing taken in");
    assert_eq!(phone.held_back(), 1, "still not through");
    let out = phone.receive(&garbled(vec![relayed])[0], NOW + 61).unwrap();
    assert_eq!(out.retry_after, Some(120));
}

/// Two messages the phone sent before the server's first refusal came back
/// are refused one by one: one try, one minute's wait.
#[test]
fn refusals_of_messages_sent_together_count_as_one_try() {
    let records = demo::build().unwrap();
    let (server, mut phone, meeting, _) = holding_two(&records);
    let me = phone.peer_id().clone();
    set(&mut phone, meeting.id, "/time", "08:15");
    assert!(!phone.outgoing().is_empty());
    set(&mut phone, meeting.id, "/time", "08:30");
    assert!(!phone.outgoing().is_empty());
    let first = phone
        .receive(&unreadable(&server, &me, meeting.id), NOW)
        .unwrap();
    assert_eq!(first.retry_after, Some(60));
    let second = phone
        .receive(&unreadable(&server, &me, meeting.id), NOW + 1)
        .unwrap();
    assert_eq!(second.retry_after, None, "no wait of its own");
    assert_eq!(phone.retry_deferred(NOW + 1), Some(59));
    // The phone's clock set back a day: the wait is at most an hour.
    assert_eq!(phone.retry_deferred(NOW - 86_400), Some(3600));
    assert_eq!(phone.retry_deferred(NOW - 86_400 + 3600), None);
}

#[test]
fn a_record_the_server_dropped_unread_is_sent_again_on_the_same_socket() {
    let records = demo::build().unwrap();
    let (mut server, mut phone, meeting, _) = holding_two(&records);
    let me = phone.peer_id().clone();

    // The phone's edit reaches a server that cannot read its copy now,
    // twice in a row: the second wait is twice the first.
    set(&mut phone, meeting.id, "/time", "08:15");
    for wait in [60, 120] {
        let frames = phone.outgoing();
        assert!(frames.iter().any(|f| record_of(f) == Some(meeting.id)));
        let out = phone
            .receive(&unreadable(&server, &me, meeting.id), NOW)
            .unwrap();
        assert_eq!(out.retry_after, Some(wait));
        assert_eq!(phone.deferred(), 0, "not counted as waiting its turn");
        assert!(phone.outgoing().is_empty(), "nothing sent until then");
        assert_eq!(phone.retry_deferred(NOW), Some(wait));
        assert!(phone.outgoing().is_empty());
        assert_eq!(phone.retry_deferred(NOW + wait as i64), None);
    }

    // The server reads its copy again: the edit goes through.
    exchange(&mut server, &mut phone, |_, p| p.unconfirmed() == 0);
    assert_eq!(read(&server, meeting.id, "time"), "08:15");
}

/// The server's `unreadable` refusal of the phone's message for `id`.
fn unreadable(server: &Server, to: &PeerId, id: DocumentId) -> Vec<u8> {
    Message::Error {
        sender_id: server.me.clone(),
        target_id: to.clone(),
        message: format!("document {id} cannot be read on the server"),
        refusal: Some(Refusal {
            document_id: id,
            code: UNREADABLE.into(),
            path: "/".into(),
            quarantine: None,
            discarded: false,
            retry_after: None,
        }),
    }
    .encode()
}

/// Another device sets `path` of the server's copy of `id`, from the
/// copy's heads before its last change: a change beside that one.
fn beside(server: &mut Server, id: DocumentId, path: &str, value: &str) {
    let (doc, _) = server.docs.get_mut(&id).unwrap();
    let heads = doc.get_heads();
    let last = doc
        .get_change_meta_by_hash(&heads[0])
        .unwrap()
        .deps
        .to_vec();
    let mut before = RecordDoc::from_automerge(doc.fork_at(&last).unwrap());
    before
        .edit(
            &Commit::new("another device", NOW),
            &[Edit::Set {
                path: path.into(),
                value: serde_json::json!(value),
            }],
        )
        .unwrap();
    doc.merge(&mut before.into_automerge()).unwrap();
}

/// Another device sets the server's copy of meeting `id` to `time`.
fn elsewhere(server: &mut Server, id: DocumentId, time: &str) {
    let (doc, _) = server.docs.get_mut(&id).unwrap();
    let mut record = RecordDoc::from_automerge(doc.clone());
    record
        .edit(
            &Commit::new("another device", NOW),
            &[Edit::Set {
                path: "/time".into(),
                value: serde_json::json!(time),
            }],
        )
        .unwrap();
    *doc = record.into_automerge();
}

/// Sync frames come from the server the phone joined, under its peer id;
/// one under another id is no exchange of the phone's and is not taken in.
#[test]
fn a_sync_frame_from_another_sender_is_not_taken_in() {
    let records = demo::build().unwrap();
    let (_, mut phone, _, _) = holding_two(&records);
    let agreement = demo_record(&records, Kind::Agreement);
    let frames = carrying_changes(agreement, phone.peer_id());
    for frame in &frames {
        let out = phone.receive(&frame.encode(), NOW).unwrap();
        assert!(out.chunks.is_empty() && out.changed.is_empty());
    }
    assert!(
        phone.read(agreement.id).is_err(),
        "taken in from an intruder"
    );
}

/// Sync frames from a peer named "intruder" that carry all of `record`'s
/// changes to `to`, as the exchange with a copy holding nothing leads to.
fn carrying_changes(record: &DemoRecord, to: &PeerId) -> Vec<Message> {
    let intruder = PeerId::new("intruder");
    let mut doc = record.doc.doc().clone();
    let mut theirs = DocSync::new(record.id);
    theirs.add_peer(to.clone(), Default::default());
    let mut empty = new_document();
    let mut ours = DocSync::new(record.id);
    ours.add_peer(intruder.clone(), Default::default());
    for _ in 0..4 {
        let sent = theirs.generate(&doc, &intruder);
        if sent.iter().any(
            |m| matches!(m, Message::Sync { data, .. } if sync_shape(data).is_ok_and(|n| n > 0)),
        ) {
            return sent;
        }
        for m in sent {
            if let Message::Sync { data, .. } | Message::Request { data, .. } = m {
                ours.receive(&mut empty, &intruder, &data).unwrap();
            }
        }
        for m in ours.generate(&empty, to) {
            if let Message::Sync { data, .. } | Message::Request { data, .. } = m {
                theirs.receive(&mut doc, to, &data).unwrap();
            }
        }
    }
    panic!("no message carried the record's changes");
}

/// A phone joined to a server that holds the demo club, a meeting and a
/// project, each synced to the phone.
fn holding_two(records: &[DemoRecord]) -> (Server, Replica, &DemoRecord, &DemoRecord) {
    let club = demo_record(records, Kind::Club);
    let meeting = demo_record(records, Kind::Meeting);
    let project = demo_record(records, Kind::Project);
    let (mut server, mut phone) = joined(club.id);
    let me = phone.peer_id().clone();
    for r in [club, meeting, project] {
        server.hold(&me, r.id, r.doc.doc().clone());
    }
    exchange(&mut server, &mut phone, |_, p| {
        p.read(meeting.id).is_ok() && p.read(project.id).is_ok() && p.unconfirmed() == 0
    });
    (server, phone, meeting, project)
}

fn set(phone: &mut Replica, id: DocumentId, path: &str, value: &str) {
    phone
        .edit(
            id,
            vec![Edit::Set {
                path: path.into(),
                value: serde_json::json!(value),
            }],
            &Commit::new("edit", NOW),
        )
        .unwrap();
}

/// The record a sync frame is for.
fn record_of(frame: &[u8]) -> Option<DocumentId> {
    match Message::decode(frame, FrameLimit::default()).unwrap() {
        Message::Sync { document_id, .. } | Message::Request { document_id, .. } => {
            Some(document_id)
        }
        _ => None,
    }
}

/// A top-level field of the server's copy of `id`, as JSON.
fn read(server: &Server, id: DocumentId, field: &str) -> serde_json::Value {
    let (doc, _) = &server.docs[&id];
    read_document(doc).unwrap()[field].clone()
}

/// A reconnecting phone is told the server's heads before the changes it
/// lacks: heads naming another device's change, which the phone does not
/// hold yet, confirm no less than the phone knew the server held.
#[test]
fn heads_naming_a_change_the_phone_lacks_confirm_what_both_shared() {
    let records = demo::build().unwrap();
    let (mut server, mut phone, meeting, _) = holding_two(&records);
    let me = phone.peer_id().clone();
    server.reconnect(&mut phone);
    elsewhere(&mut server, meeting.id, "14:00");
    set(&mut phone, meeting.id, "/place/en", "Town hall");
    assert_eq!(phone.unconfirmed(), 1);
    for frame in server.take(&me, Vec::new()) {
        phone.receive(&frame, NOW).unwrap();
        assert_eq!(
            phone.unconfirmed(),
            1,
            "the server's heads name a change the phone lacks"
        );
    }
    exchange(&mut server, &mut phone, |_, p| p.unconfirmed() == 0);
    assert_eq!(read(&server, meeting.id, "place")["en"], "Town hall");
}
