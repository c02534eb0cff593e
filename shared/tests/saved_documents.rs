//! A peer that lacks over a third of a record is sent the whole record
//! saved. `apply_received` loads such a document in place of the copy it
//! holds, or merges into it, rather than taking it apart into changes; and
//! `receive_applied` then does the sync bookkeeping. For well-formed
//! messages both must leave the copy and the sync state as Automerge's own
//! way would; a damaged saved document is refused.

#![allow(clippy::unwrap_used)] // a test panics to fail

use automerge::sync::{State, SyncDoc};
use automerge::transaction::Transactable;
use automerge::{ActorId, AutoCommit, Automerge, ObjType, ReadDoc};
use proptest::prelude::*;
use twinsync_shared::protocol::{DocSync, Incoming, Message, Trim, receive_applied};
use twinsync_shared::record::{apply_received, chunks, new_document, only_documents};
use twinsync_shared::{DocumentId, PeerId};

const WORDS: [&str; 6] = [
    "مجلس ",
    "jumelage ",
    "Smara ",
    "محضر الاجتماع ",
    "réunion ",
    "twinning ",
];

/// A record with a text, and `copies` forks of it, each with its own
/// `edits[i]` edits to the text; `seed` fixes actors and positions.
fn forks(seed: u8, edits: &[usize]) -> (Automerge, Vec<Automerge>) {
    let mut base = AutoCommit::new_with_encoding(twinsync_shared::text::TEXT_ENCODING)
        .with_actor(ActorId::from([seed, 0, 0, 0]));
    let text = base
        .put_object(automerge::ROOT, "text", ObjType::Text)
        .unwrap();
    base.splice_text(&text, 0, 0, "Procès-verbal — محضر. ")
        .unwrap();
    base.commit();
    let mut out = Vec::new();
    let mut x = u64::from(seed) + 1;
    for (i, &n) in edits.iter().enumerate() {
        let mut fork = base
            .fork()
            .with_actor(ActorId::from([seed, i as u8 + 1, 0, 0]));
        for _ in 0..n {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1442695040888963407);
            let len = fork.length(&text);
            let pos = (x >> 33) as usize % (len + 1);
            fork.splice_text(&text, pos, 0, WORDS[(x >> 20) as usize % WORDS.len()])
                .unwrap();
            fork.commit();
        }
        out.push(fork.document().clone());
    }
    (base.document().clone(), out)
}

/// Everything a copy shows: heads, actor, and the text.
fn state(doc: &Automerge) -> (Vec<automerge::ChangeHash>, ActorId, String) {
    let text = doc.get(automerge::ROOT, "text").unwrap().unwrap().1;
    (
        doc.get_heads(),
        doc.get_actor().clone(),
        doc.text(&text).unwrap(),
    )
}

/// The changes a message carries, by hash.
fn carried(message: &automerge::sync::Message) -> Vec<automerge::ChangeHash> {
    let mut hashes = Vec::new();
    for entry in message.changes.iter() {
        for (kind, chunk) in chunks(entry) {
            let chunk = chunk.unwrap();
            if kind == 0 {
                let doc = Automerge::load(chunk).unwrap();
                hashes.extend(doc.get_changes_meta(&[]).iter().map(|c| c.hash));
            } else {
                hashes.push(
                    automerge::Change::from_bytes(chunk.to_vec())
                        .unwrap()
                        .hash(),
                );
            }
        }
    }
    hashes.sort();
    hashes
}

fn merged(docs: &[&Automerge]) -> Automerge {
    let mut out = docs[0].clone();
    for d in &docs[1..] {
        out.merge(&mut (*d).clone()).unwrap();
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Whatever each side lacks of the other, loading the saved document
    /// leaves the copy as `load_incremental` does; with changes around it
    /// in the same bytes too.
    #[test]
    fn a_saved_document_applies_as_automerge_applies_it(
        seed in 1u8..200,
        edits in proptest::collection::vec(0usize..30, 2..5),
        held in proptest::collection::vec(any::<bool>(), 4),
        sent in proptest::collection::vec(any::<bool>(), 4),
        around in any::<bool>(),
    ) {
        let (base, forks) = forks(seed, &edits);
        // The copy holds the base and some forks; the saved document
        // some others, or the same.
        let pick = |mask: &[bool]| -> Automerge {
            let mut chosen = vec![&base];
            chosen.extend(forks.iter().zip(mask).filter(|(_, m)| **m).map(|(f, _)| f));
            merged(&chosen)
        };
        let copy = pick(&held).with_actor(ActorId::from([seed, 99, 0, 0]));
        let saved = pick(&sent);
        let mut bytes = Vec::new();
        let extra = forks.last().unwrap();
        if around {
            // Changes before and after the document, as a message may join.
            for c in extra.get_changes(&base.get_heads()).iter().take(2) {
                bytes.extend_from_slice(c.raw_bytes());
            }
        }
        bytes.extend_from_slice(&saved.save());
        if around {
            for c in extra.get_changes(&base.get_heads()).iter().skip(2) {
                bytes.extend_from_slice(c.raw_bytes());
            }
        }
        let mut expected = copy.clone();
        expected.load_incremental(&bytes).unwrap();
        let mut got = copy.clone();
        apply_received(&mut got, &bytes).unwrap();
        prop_assert_eq!(state(&got), state(&expected));
        prop_assert!(got.get_missing_deps(&[]).is_empty());
    }

    /// The delegate receives the whole record the way the engine and the
    /// bench take it; its copy, its sync state, and the message it sends
    /// next are those Automerge's own `receive_sync_message` gives.
    #[test]
    fn the_sync_state_is_automerges(
        seed in 1u8..200,
        edits in proptest::collection::vec(1usize..20, 3..5),
        server_has_ours in any::<bool>(),
    ) {
        let (base, forks) = forks(seed, &edits);
        // The delegate holds the first fork; the server every other, and
        // the first too if the delegate sent it before (then the delegate
        // ends with the server's heads, and must still say it has them).
        let skip = usize::from(!server_has_ours);
        let others: Vec<&Automerge> = std::iter::once(&base).chain(&forks[skip..]).collect();
        let server = merged(&others);
        let delegate = forks[0].clone();
        let (mut to_server, mut to_delegate) = (State::new(), State::new());
        let first = delegate.generate_sync_message(&mut to_server).unwrap();
        let mut server = server;
        server.receive_sync_message(&mut to_delegate, first).unwrap();
        let reply = server.generate_sync_message(&mut to_delegate).unwrap();
        // The server sends its whole record to a delegate lacking over a
        // third of it; the other cases are Automerge's own.
        prop_assume!(reply.changes.iter().any(only_documents));

        let (mut expected, mut expected_state) = (delegate.clone(), to_server.clone());
        expected.receive_sync_message(&mut expected_state, reply.clone()).unwrap();
        let (mut got, mut got_state) = (delegate.clone(), to_server.clone());
        apply_received(&mut got, &reply.changes.iter().collect::<Vec<_>>().concat()).unwrap();
        receive_applied(&mut got, &mut got_state, reply, &mut Trim::every_message()).unwrap();

        prop_assert_eq!(state(&got), state(&expected));
        prop_assert_eq!(&got_state.shared_heads, &expected_state.shared_heads);
        prop_assert_eq!(&got_state.last_sent_heads, &expected_state.last_sent_heads);
        prop_assert_eq!(&got_state.their_heads, &expected_state.their_heads);
        prop_assert_eq!(&got_state.their_need, &expected_state.their_need);
        prop_assert_eq!(&got_state.sent_hashes, &expected_state.sent_hashes);
        prop_assert_eq!(got_state.in_flight, expected_state.in_flight);
        let next = got.generate_sync_message(&mut got_state);
        let expected_next = expected.generate_sync_message(&mut expected_state);
        prop_assert!(next.is_some(), "the delegate still answers, with its own changes");
        let (next, expected_next) = (next.unwrap(), expected_next.unwrap());
        prop_assert_eq!(&next.heads, &expected_next.heads);
        prop_assert_eq!(&next.need, &expected_next.need);
        prop_assert_eq!(&next.have, &expected_next.have);
        // A saved document's bytes depend on the order its changes were
        // taken in; what it holds must not.
        prop_assert_eq!(carried(&next), carried(&expected_next));
    }
}

/// A damaged saved document is refused with an error, where
/// `load_incremental` would keep what it could read and say nothing.
#[test]
fn a_damaged_saved_document_is_refused() {
    let (_, forks) = forks(7, &[5, 5]);
    let mut saved = forks[1].save();
    let last = saved.len() - 3;
    saved[last] ^= 0xff;
    let mut copy = forks[0].clone();
    let before = copy.get_heads();
    assert!(apply_received(&mut copy, &saved).is_err());
    assert_eq!(copy.get_heads(), before);
}

/// So is one whose heads the copy holds already, which Automerge would
/// skip unread: damage is not taken for a document that brings nothing.
#[test]
fn a_damaged_saved_document_bringing_nothing_is_refused_too() {
    let (_, forks) = forks(8, &[5, 5]);
    let mut saved = forks[1].save();
    let middle = saved.len() / 2;
    saved[middle] ^= 0xff;
    let mut copy = forks[0].clone();
    copy.merge(&mut forks[1].clone()).unwrap();
    let before = copy.get_heads();
    assert!(apply_received(&mut copy, &saved).is_err());
    assert_eq!(copy.get_heads(), before);
}

/// An empty copy takes the saved document as Automerge would load it.
#[test]
fn an_empty_copy_loads_the_document() {
    let (_, forks) = forks(9, &[4]);
    let mut copy = new_document();
    apply_received(&mut copy, &forks[0].save()).unwrap();
    assert_eq!(copy.get_heads(), forks[0].get_heads());
}

/// What a delegate's sync with the engine ends in.
struct Synced {
    /// Whether the delegate sent its whole copy saved.
    saved_sent: bool,
    /// How many of its messages a batch refused, to be taken alone.
    refused: usize,
    record: Automerge,
    delegate: Automerge,
    /// The base and every fork merged: what both should end with.
    all: Automerge,
}

/// The record holds the base and every fork but the first; a delegate
/// holding the first syncs with it, its messages taken by the engine in a
/// batch of one (`batch`) or alone. A batch is all or nothing: it refuses
/// a message whose changes lack a dependency (a bloom filter's false
/// positive made the delegate skip one), and the caller then takes the
/// message alone, as the server does.
fn sync_a_delegate(seed: u8, edits: &[usize], batch: bool) -> Synced {
    let (base, forks) = forks(seed, edits);
    let others: Vec<&Automerge> = std::iter::once(&base).chain(&forks[1..]).collect();
    let mut record = merged(&others).with_actor(ActorId::from([seed, 200, 0, 0]));
    let mut delegate = forks[0].clone();
    let (server_id, delegate_id) = (PeerId::new("server"), PeerId::new("delegate"));
    let mut sync = DocSync::new(DocumentId::random());
    sync.add_peer(delegate_id.clone(), State::new());
    let mut theirs = State::new();
    let (mut saved_sent, mut refused) = (false, 0);
    for _ in 0..20 {
        let mut said = 0;
        for message in sync.generate(&record, &server_id) {
            if let Message::Sync { data, .. } = message {
                said += 1;
                let m = automerge::sync::Message::decode(&data).unwrap();
                delegate.receive_sync_message(&mut theirs, m).unwrap();
            }
        }
        if let Some(m) = delegate.generate_sync_message(&mut theirs) {
            said += 1;
            saved_sent |= m.changes.iter().any(only_documents);
            let data = m.encode();
            let one = [Incoming {
                from: &delegate_id,
                data: &data,
                is_request: false,
            }];
            let taken = batch
                && sync
                    .receive_batch(&mut record, &one, |_| true, |_, _, _| true)
                    .is_some();
            if batch && !taken {
                refused += 1;
            }
            if !taken {
                sync.receive(&mut record, &delegate_id, &data).unwrap();
            }
        }
        if said == 0 {
            break;
        }
    }
    let all = merged(&std::iter::once(&base).chain(&forks).collect::<Vec<_>>());
    Synced {
        saved_sent,
        refused,
        record,
        delegate,
        all,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// The engine, by either way in, takes a delegate's whole saved copy
    /// into the record it holds, and both end with every change.
    #[test]
    fn the_engine_takes_a_saved_copy(
        seed in 1u8..200,
        edits in proptest::collection::vec(1usize..20, 2..5),
        batch in any::<bool>(),
    ) {
        let synced = sync_a_delegate(seed, &edits, batch);
        prop_assume!(synced.saved_sent);
        prop_assert_eq!(synced.record.get_heads(), synced.all.get_heads());
        prop_assert_eq!(synced.delegate.get_heads(), synced.all.get_heads());
        prop_assert_eq!(state(&synced.record).2, state(&synced.all).2);
        prop_assert_eq!(synced.record.get_actor(), &ActorId::from([seed, 200, 0, 0]));
    }
}

/// Found by the property above: here the record's bloom filter claims a
/// change it lacks, so the delegate's next message brings changes without
/// their dependency. The batch refuses that message whole, and taken alone
/// it asks for what is missing; nothing is lost.
#[test]
fn a_batch_lacking_a_dependency_is_taken_alone() {
    let synced = sync_a_delegate(61, &[2, 16, 4], true);
    assert!(synced.saved_sent);
    assert!(synced.refused > 0, "the batch took every message");
    assert_eq!(synced.record.get_heads(), synced.all.get_heads());
    assert_eq!(synced.delegate.get_heads(), synced.all.get_heads());
    assert_eq!(state(&synced.record).2, state(&synced.all).2);
}

/// Bytes that cannot be read end Automerge's load of everything joined
/// after them. In a batch, another peer's saved copy after them must not be
/// taken as applied: the batch is refused (the engine then takes each
/// payload alone) or the copy is in.
#[test]
fn unreadable_bytes_in_a_batch_do_not_swallow_a_saved_copy() {
    let (base, forks) = forks(11, &[12, 3]);
    let mut record = merged(&[&base, &forks[1]]);
    let (a, b) = (PeerId::new("a"), PeerId::new("b"));
    let mut sync = DocSync::new(DocumentId::random());
    // B, holding the first fork, has heard the record's filter: its next
    // message carries its whole copy.
    let mut theirs = State::new();
    let mut delegate = forks[0].clone();
    let hello = delegate
        .generate_sync_message(&mut theirs)
        .unwrap()
        .encode();
    sync.receive(&mut record, &b, &hello).unwrap();
    for m in sync.generate(&record, &PeerId::new("server")) {
        if let Message::Sync {
            target_id, data, ..
        } = m
            && target_id == b
        {
            delegate
                .receive_sync_message(
                    &mut theirs,
                    automerge::sync::Message::decode(&data).unwrap(),
                )
                .unwrap();
        }
    }
    let from_b = delegate.generate_sync_message(&mut theirs).unwrap();
    assert!(
        from_b.changes.iter().any(only_documents),
        "B sends its whole copy"
    );
    let mut junk = automerge::sync::Message::decode(&hello).unwrap();
    junk.changes = vec![b"not a chunk".to_vec()].into();
    let (junk, from_b) = (junk.encode(), from_b.encode());
    let batch = [
        Incoming {
            from: &a,
            data: &junk,
            is_request: false,
        },
        Incoming {
            from: &b,
            data: &from_b,
            is_request: false,
        },
    ];
    let before = record.get_heads();
    match sync.receive_batch(&mut record, &batch, |_| true, |_, _, _| true) {
        None => assert_eq!(
            record.get_heads(),
            before,
            "a refused batch changes nothing"
        ),
        Some(_) => assert!(
            delegate
                .get_heads()
                .iter()
                .all(|h| record.get_change_meta_by_hash(h).is_some()),
            "the batch was taken without B's copy"
        ),
    }
}

/// A saved document's chunk taken apart (Automerge's binary format, for
/// an uncompressed save): actors, heads, the change and the op columns,
/// and the heads' indices after them.
struct DocumentChunk {
    actors: Vec<Vec<u8>>,
    heads: Vec<[u8; 32]>,
    columns: [Vec<(u64, Vec<u8>)>; 2],
    head_indices: Vec<u8>,
}

fn uleb(input: &mut &[u8]) -> u64 {
    let mut value = 0;
    for (i, &byte) in input.iter().enumerate() {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            *input = &input[i + 1..];
            return value;
        }
    }
    panic!("an unfinished LEB128 number")
}

fn put_uleb(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value & 0x7f) as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

impl DocumentChunk {
    fn parse(chunk: &[u8]) -> Self {
        let mut body = &chunk[9..];
        let len = uleb(&mut body) as usize;
        let mut body = &body[..len];
        let actors = (0..uleb(&mut body))
            .map(|_| {
                let len = uleb(&mut body) as usize;
                let (actor, rest) = body.split_at(len);
                body = rest;
                actor.to_vec()
            })
            .collect();
        let heads = (0..uleb(&mut body))
            .map(|_| {
                let (head, rest) = body.split_at(32);
                body = rest;
                head.try_into().unwrap()
            })
            .collect();
        let specs: Vec<Vec<(u64, usize)>> = (0..2)
            .map(|_| {
                (0..uleb(&mut body))
                    .map(|_| (uleb(&mut body), uleb(&mut body) as usize))
                    .collect()
            })
            .collect();
        let columns = [0, 1].map(|i| {
            specs[i]
                .iter()
                .map(|&(spec, len)| {
                    let (data, rest) = body.split_at(len);
                    body = rest;
                    (spec, data.to_vec())
                })
                .collect()
        });
        Self {
            actors,
            heads,
            columns,
            head_indices: body.to_vec(),
        }
    }

    /// The chunk again, with its checksum made to match.
    fn encode(&self) -> Vec<u8> {
        use sha2::Digest;
        let mut body = Vec::new();
        put_uleb(&mut body, self.actors.len() as u64);
        for actor in &self.actors {
            put_uleb(&mut body, actor.len() as u64);
            body.extend_from_slice(actor);
        }
        put_uleb(&mut body, self.heads.len() as u64);
        for head in &self.heads {
            body.extend_from_slice(head);
        }
        for columns in &self.columns {
            put_uleb(&mut body, columns.len() as u64);
            for (spec, data) in columns {
                put_uleb(&mut body, *spec);
                put_uleb(&mut body, data.len() as u64);
            }
        }
        for (_, data) in self.columns.iter().flatten() {
            body.extend_from_slice(data);
        }
        body.extend_from_slice(&self.head_indices);
        let mut typed = vec![0]; // a document chunk
        put_uleb(&mut typed, body.len() as u64);
        typed.extend_from_slice(&body);
        let checksum = sha2::Sha256::digest(&typed);
        [&[0x85, 0x6f, 0x4a, 0x83], &checksum[..4], &typed[..]].concat()
    }
}

/// A record whose author's two changes both name that author, saved: no
/// Automerge API writes that (an author is named by its first change
/// only), but a hostile client can write the bytes. Also the record's
/// first change alone, and the record as honestly saved.
fn second_change_naming_its_author() -> (Automerge, Vec<u8>, Vec<u8>) {
    let mut doc = new_document().with_author(Some(automerge::Author::from(b"delegate".to_vec())));
    doc.transact(|tx| tx.put(automerge::ROOT, "title", "اتفاقية توأمة"))
        .unwrap();
    let first = doc.clone();
    doc.transact(|tx| tx.put(automerge::ROOT, "status", "signée"))
        .unwrap();
    let honest = doc.save_nocompress();
    let footer = doc.get_changes_meta(&[])[0].extra.to_vec();
    let mut chunk = DocumentChunk::parse(&honest);
    assert_eq!(chunk.encode(), honest, "the chunk is taken apart whole");
    let meta = u64::try_from(footer.len()).unwrap() << 4 | 7; // that many raw bytes
    for (spec, data) in &mut chunk.columns[0] {
        match *spec {
            // The extra bytes' lengths: a run of two of the footer's.
            0x56 => {
                *data = vec![2];
                put_uleb(data, meta);
            }
            0x57 => *data = [&footer[..], &footer[..]].concat(),
            _ => {}
        }
    }
    // The second change's hash changed with it; so does the head.
    let unchecked = Automerge::load_with_options(
        &chunk.encode(),
        automerge::LoadOptions::new().verification_mode(automerge::VerificationMode::DontCheck),
    )
    .unwrap();
    let changes = unchecked.get_changes_meta(&[]);
    assert_eq!(
        changes[1].extra, footer,
        "the second change names the author"
    );
    chunk.heads = vec![changes[1].hash.0];
    (first, chunk.encode(), honest)
}

/// Applying a change that names its author past the author's first fails,
/// and loading a saved document does not check it: accepted, the record
/// would be stored and then fail to load. It is refused, whichever way it
/// comes in, and the copy is left as it was.
#[test]
fn a_saved_document_naming_an_author_past_the_first_change_is_refused() {
    let (first, crafted, honest) = second_change_naming_its_author();
    assert!(Automerge::load(&crafted).is_ok(), "Automerge loads it");

    let mut copy = first.clone();
    let error = apply_received(&mut copy, &crafted).unwrap_err().to_string();
    assert!(error.contains("names an author"), "{error}");
    assert_eq!(copy.get_heads(), first.get_heads());

    let mut empty = new_document();
    let error = apply_received(&mut empty, &crafted)
        .unwrap_err()
        .to_string();
    assert!(error.contains("names an author"), "{error}");
    assert!(empty.is_empty());

    // The engine, which an empty copy reaches by Automerge's own way in.
    for start in [first.clone(), new_document()] {
        let message = automerge::sync::Message {
            heads: Automerge::load(&crafted).unwrap().get_heads(),
            need: Vec::new(),
            have: Vec::new(),
            changes: vec![crafted.clone()].into(),
            flags: None,
            version: automerge::sync::MessageVersion::V1,
        };
        let mut doc = start.clone();
        let mut sync = DocSync::new(DocumentId::random());
        let error = sync
            .receive(&mut doc, &PeerId::new("hostile"), &message.encode())
            .unwrap_err()
            .to_string();
        assert!(error.contains("names an author"), "{error}");
        assert_eq!(doc.get_heads(), start.get_heads());
    }

    // The honest save, its author named once, is taken, and what would
    // be stored of it loads again.
    for start in [first.clone(), new_document()] {
        let mut copy = start.clone();
        apply_received(&mut copy, &honest).unwrap();
        let stored = [start.save(), copy.save_after(&start.get_heads())];
        let stored: Vec<Vec<u8>> = stored.into_iter().filter(|c| !c.is_empty()).collect();
        let reloaded = twinsync_shared::record::load_chunks(&stored).unwrap();
        assert_eq!(reloaded.get_heads(), copy.get_heads());
    }
}
