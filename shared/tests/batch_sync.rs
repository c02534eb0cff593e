//! `DocSync::receive_batch`: sync messages from several peers applied with
//! one pass over the document. It must leave every side where taking the
//! messages one at a time would, name the peer that brought each change,
//! and change nothing at all when it gives up.

#![allow(clippy::unwrap_used)] // a test panics to fail

mod common;

use automerge::sync::{State, SyncDoc};
use automerge::transaction::Transactable;
use automerge::{ActorId, AutoCommit, Automerge, ChangeHash, ReadDoc};
use twinsync_shared::protocol::{DocSync, Incoming, Message};
use twinsync_shared::{DocumentId, PeerId};

struct Replica {
    id: PeerId,
    doc: AutoCommit,
    state: State,
}

struct Server {
    id: PeerId,
    doc: Automerge,
    sync: DocSync,
}

fn minutes(doc: &AutoCommit) -> automerge::ObjId {
    doc.get(automerge::ROOT, "minutes").unwrap().unwrap().1
}

/// Inserts `text` at the start of the minutes, as one change.
fn type_in(r: &mut Replica, text: &str) -> ChangeHash {
    let m = minutes(&r.doc);
    r.doc.splice_text(&m, 0, 0, text).unwrap();
    r.doc.commit().unwrap()
}

fn setup(names: &[&str]) -> (Server, Vec<Replica>) {
    let mut origin = common::meeting();
    let server = Server {
        id: PeerId::new("server"),
        doc: origin.document().clone(),
        sync: DocSync::new(DocumentId::random()),
    };
    // Fixed actors too: with random ones, a replica's new change is a false
    // positive of the server's Bloom filter in about 1 run in 250, and is
    // held back for a later round than a test expects.
    let replicas = (2u8..)
        .zip(names)
        .map(|(actor, n)| Replica {
            id: PeerId::new(*n),
            doc: origin.fork().with_actor(ActorId::from([actor, 0, 0, 0])),
            state: State::new(),
        })
        .collect();
    (server, replicas)
}

/// Delivers the server's pending messages to the replicas.
fn deliver(server: &mut Server, replicas: &mut [Replica]) -> usize {
    let out = server.sync.generate(&server.doc, &server.id);
    let n = out.len();
    for msg in out {
        if let Message::Sync {
            target_id, data, ..
        } = msg
        {
            let r = replicas.iter_mut().find(|r| r.id == target_id).unwrap();
            let m = automerge::sync::Message::decode(&data).unwrap();
            r.doc.sync().receive_sync_message(&mut r.state, m).unwrap();
        }
    }
    n
}

/// Plain one-at-a-time sync until nobody has anything to say.
fn settle(server: &mut Server, replicas: &mut [Replica]) {
    for _ in 0..20 {
        let mut said = deliver(server, replicas);
        for r in replicas.iter_mut() {
            if let Some(m) = r.doc.sync().generate_sync_message(&mut r.state) {
                said += 1;
                server
                    .sync
                    .receive(&mut server.doc, &r.id, &m.encode())
                    .unwrap();
            }
        }
        if said == 0 {
            return;
        }
    }
    panic!("the exchange never went quiet");
}

/// Each replica's next message, encoded.
fn next_messages(replicas: &mut [Replica]) -> Vec<(PeerId, Vec<u8>)> {
    replicas
        .iter_mut()
        .filter_map(|r| {
            let m = r.doc.sync().generate_sync_message(&mut r.state)?;
            Some((r.id.clone(), m.encode()))
        })
        .collect()
}

fn incoming(messages: &[(PeerId, Vec<u8>)]) -> Vec<Incoming<'_>> {
    messages
        .iter()
        .map(|(from, data)| Incoming {
            from,
            data,
            is_request: false,
        })
        .collect()
}

#[test]
fn a_batch_applies_every_peers_changes_and_names_who_brought_each() {
    let (mut server, mut replicas) = setup(&["amina", "pierre", "sara"]);
    settle(&mut server, &mut replicas);
    let typed = [
        type_in(&mut replicas[0], "اجتماع المجلس. "),
        type_in(&mut replicas[1], "Séance ouverte. "),
        type_in(&mut replicas[2], "Quorum reached. "),
    ];
    let messages = next_messages(&mut replicas);
    assert_eq!(messages.len(), 3);
    assert!(
        messages
            .iter()
            .all(|(_, data)| !automerge::sync::Message::decode(data)
                .unwrap()
                .changes
                .is_empty()),
        "each message carries its sender's change"
    );
    let mut seen_by_check = None;
    let held_before = server.doc.clone();
    let batch = server
        .sync
        .receive_batch(
            &mut server.doc,
            &incoming(&messages),
            |_| true,
            |doc, brought, carried| {
                assert_eq!(carried, [true, true, true]);
                seen_by_check = Some((doc.get_heads().len(), brought.to_vec()));
                true
            },
        )
        .expect("the batch applies");
    // What the caller stores: the new changes, which bring the record as
    // held before to the record now.
    let mut stored = held_before;
    stored.load_incremental(&batch.saved).unwrap();
    assert_eq!(stored.get_heads(), server.doc.get_heads());
    let brought = batch.brought;
    assert_eq!(
        brought,
        vec![vec![typed[0]], vec![typed[1]], vec![typed[2]]]
    );
    assert_eq!(seen_by_check, Some((3, brought.clone())));
    for h in typed {
        assert!(server.doc.get_change_by_hash(&h).is_some());
    }
    // One message to each replica now carries the other two's changes, and
    // everyone ends with the same minutes.
    settle(&mut server, &mut replicas);
    let text = server
        .doc
        .text(
            server
                .doc
                .get(automerge::ROOT, "minutes")
                .unwrap()
                .unwrap()
                .1,
        )
        .unwrap();
    for phrase in ["اجتماع المجلس. ", "Séance ouverte. ", "Quorum reached. "] {
        assert!(text.contains(phrase), "{phrase:?} is missing from {text:?}");
    }
    for r in &mut replicas {
        assert_eq!(r.doc.get_heads(), server.doc.get_heads(), "{}", r.id);
    }
}

#[test]
fn a_change_two_peers_send_is_credited_to_the_first_only() {
    let (mut server, mut replicas) = setup(&["amina", "pierre"]);
    settle(&mut server, &mut replicas);
    let hash = type_in(&mut replicas[0], "Ordre du jour. ");
    // Pierre has Amina's change from her directly, not from the server.
    let (left, right) = replicas.split_at_mut(1);
    right[0].doc.merge(&mut left[0].doc).unwrap();
    let messages = next_messages(&mut replicas);
    assert_eq!(messages.len(), 2);
    let brought = server
        .sync
        .receive_batch(
            &mut server.doc,
            &incoming(&messages),
            |_| true,
            |_, _, _| true,
        )
        .unwrap()
        .brought;
    assert_eq!(brought, vec![vec![hash], vec![]]);
}

#[test]
fn a_refused_batch_changes_neither_the_document_nor_any_state() {
    let (mut server, mut replicas) = setup(&["amina", "pierre"]);
    settle(&mut server, &mut replicas);
    type_in(&mut replicas[0], "Point 1. ");
    type_in(&mut replicas[1], "Point 2. ");
    let messages = next_messages(&mut replicas);
    let heads = server.doc.get_heads();
    let states: Vec<Vec<u8>> = replicas
        .iter()
        .map(|r| server.sync.peer_state(&r.id).unwrap().encode())
        .collect();
    let mut asked = 0;
    let result = server.sync.receive_batch(
        &mut server.doc,
        &incoming(&messages),
        |_| true,
        |_, _, _| {
            asked += 1;
            false
        },
    );
    assert_eq!(result, None);
    assert_eq!(asked, 1);
    assert_eq!(server.doc.get_heads(), heads);
    for (r, before) in replicas.iter().zip(&states) {
        assert_eq!(
            &server.sync.peer_state(&r.id).unwrap().encode(),
            before,
            "{}'s sync state moved",
            r.id
        );
    }
    // The same messages, one at a time, still apply.
    for (from, data) in &messages {
        let got = server.sync.receive(&mut server.doc, from, data).unwrap();
        assert_eq!(got.new_changes.len(), 1);
    }
}

#[test]
fn a_change_ahead_of_its_dependency_sends_the_batch_back_whole() {
    let (mut server, mut replicas) = setup(&["amina", "pierre"]);
    settle(&mut server, &mut replicas);
    type_in(&mut replicas[0], "un ");
    let second = type_in(&mut replicas[0], "deux ");
    type_in(&mut replicas[1], "trois ");
    let mut messages = next_messages(&mut replicas);
    // Amina's message, doctored to carry only her second change.
    let mut m = automerge::sync::Message::decode(&messages[0].1).unwrap();
    let only_second = replicas[0]
        .doc
        .get_change_by_hash(&second)
        .unwrap()
        .raw_bytes()
        .to_vec();
    m.changes = vec![only_second].into();
    messages[0].1 = m.encode();
    let heads = server.doc.get_heads();
    let result = server.sync.receive_batch(
        &mut server.doc,
        &incoming(&messages),
        |_| true,
        |_, _, _| true,
    );
    assert_eq!(result, None);
    assert_eq!(server.doc.get_heads(), heads, "Pierre's change rode in");
    assert!(server.doc.get_missing_deps(&[]).is_empty());
}

#[test]
fn a_malformed_message_in_a_batch_sends_it_back_whole() {
    let (mut server, mut replicas) = setup(&["amina", "pierre"]);
    settle(&mut server, &mut replicas);
    type_in(&mut replicas[0], "Point 1. ");
    let mut messages = next_messages(&mut replicas);
    messages.push((replicas[1].id.clone(), vec![0x42, 0x00, 0x13]));
    let heads = server.doc.get_heads();
    let result = server.sync.receive_batch(
        &mut server.doc,
        &incoming(&messages),
        |_| true,
        |_, _, _| true,
    );
    assert_eq!(result, None);
    assert_eq!(server.doc.get_heads(), heads);
}

#[test]
fn a_batch_of_acknowledgements_moves_the_states_and_leaves_the_document() {
    let (mut server, mut replicas) = setup(&["amina", "pierre"]);
    settle(&mut server, &mut replicas);
    // Fixed actors give the same hashes every run: with random ones, a
    // Bloom filter false positive (about one run in fifty) would leave a
    // change for a later round than this test looks at.
    for (i, r) in replicas.iter_mut().enumerate() {
        r.doc.set_actor(ActorId::from([2, i as u8, 0, 0]));
    }
    type_in(&mut replicas[0], "Point 1. ");
    type_in(&mut replicas[1], "Point 2. ");
    for (from, data) in next_messages(&mut replicas) {
        server.sync.receive(&mut server.doc, &from, &data).unwrap();
    }
    // Each hears of the other's change and says it holds it now.
    deliver(&mut server, &mut replicas);
    let acks = next_messages(&mut replicas);
    assert_eq!(acks.len(), 2);
    assert!(acks.iter().all(|(_, data)| {
        automerge::sync::Message::decode(data)
            .unwrap()
            .changes
            .is_empty()
    }));
    let heads = server.doc.get_heads();
    let brought = server
        .sync
        .receive_batch(
            &mut server.doc,
            &incoming(&acks),
            |_| true,
            |_, _, _| panic!("nothing new to check"),
        )
        .expect("acknowledgements apply");
    assert!(brought.saved.is_empty(), "nothing new to store");
    let brought = brought.brought;
    assert_eq!(brought, vec![Vec::<ChangeHash>::new(), Vec::new()]);
    assert_eq!(server.doc.get_heads(), heads);
    for r in &replicas {
        assert_eq!(
            server.sync.peer_state(&r.id).unwrap().shared_heads,
            heads,
            "{}",
            r.id
        );
    }
    // Both are known to hold everything: nothing is left to send.
    assert_eq!(server.sync.generate(&server.doc, &server.id), Vec::new());
}
