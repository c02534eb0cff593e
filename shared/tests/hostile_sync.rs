//! Sync messages a hostile peer could craft. Automerge trusts the Bloom
//! filter parameters a message carries; the engine must refuse bad ones
//! with an error instead of panicking or allocating without bound.

#![allow(clippy::unwrap_used)] // a test panics to fail

use automerge::sync::{BloomFilter, Have, Message, MessageVersion};
use automerge::{AutoCommit, transaction::Transactable};
use twinsync_shared::protocol::{DocSync, SyncError};
use twinsync_shared::{DocumentId, PeerId};

/// A sync message whose only `have` entry holds a filter with the given
/// header (entries, bits per entry, probes) followed by `bits`.
fn message_with_bloom(entries: u8, bits_per_entry: u8, probes: &[u8], bits: &[u8]) -> Vec<u8> {
    let mut raw = vec![entries, bits_per_entry];
    raw.extend_from_slice(probes);
    raw.extend_from_slice(bits);
    let bloom = BloomFilter::try_from(raw.as_slice()).unwrap();
    Message {
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
    .encode()
}

/// A document with a few changes, so that Automerge consults the filter.
fn doc_with_changes() -> automerge::Automerge {
    let mut doc = AutoCommit::new();
    for i in 0..3i64 {
        doc.put(automerge::ROOT, "n", i).unwrap();
        doc.commit();
    }
    doc.document().clone()
}

fn receive(data: &[u8]) -> (Result<(), SyncError>, automerge::Automerge) {
    let mut doc = doc_with_changes();
    let mut sync = DocSync::new(DocumentId::random());
    let result = sync
        .receive(&mut doc, &PeerId::new("hostile"), data)
        .map(|_| ());
    // Generating the answer is where Automerge walks the filter.
    let _ = sync.generate(&doc, &PeerId::new("server"));
    (result, doc)
}

#[test]
fn a_filter_with_entries_but_no_bits_is_refused() {
    let (result, doc) = receive(&message_with_bloom(5, 0, &[7], &[]));
    let err = result.unwrap_err();
    assert!(
        matches!(&err, SyncError::Malformed(m) if m.contains("Bloom") && m.contains("no bits")),
        "{err}"
    );
    assert_eq!(doc.get_changes(&[]).len(), 3, "the document is untouched");
}

#[test]
fn a_filter_asking_for_billions_of_probes_is_refused() {
    // LEB128 for 4_000_000_000.
    let probes = [0x80, 0xd0, 0xac, 0xf3, 0x0e];
    let (result, _) = receive(&message_with_bloom(1, 10, &probes, &[0xff, 0xff]));
    let err = result.unwrap_err();
    assert!(
        matches!(&err, SyncError::Malformed(m) if m.contains("4000000000 probes")),
        "{err}"
    );
}

#[test]
fn an_ordinary_filter_is_accepted() {
    let (result, doc) = receive(&message_with_bloom(1, 10, &[7], &[0x12, 0x34]));
    result.unwrap();
    assert_eq!(doc.get_changes(&[]).len(), 3);
}

/// A message that carries only `changes`, as raw change bytes.
fn message_with_changes(changes: Vec<Vec<u8>>) -> Vec<u8> {
    message(Vec::new(), changes)
}

/// A message with `heads` and `changes`, and no need or filter.
fn message(heads: Vec<automerge::ChangeHash>, changes: Vec<Vec<u8>>) -> Vec<u8> {
    Message {
        heads,
        need: Vec::new(),
        have: Vec::new(),
        changes: changes.into(),
        flags: None,
        version: MessageVersion::V1,
    }
    .encode()
}

#[test]
fn a_change_sent_ahead_of_its_dependency_is_not_kept_to_apply_unchecked_later() {
    use automerge::ReadDoc;
    let mut theirs = AutoCommit::new();
    theirs.put(automerge::ROOT, "n", 0i64).unwrap();
    theirs.commit();
    let mut ours = theirs.document().clone();
    theirs.put(automerge::ROOT, "n", 1i64).unwrap();
    let first = theirs.commit().unwrap();
    theirs.put(automerge::ROOT, "n", 2i64).unwrap();
    let second = theirs.commit().unwrap();
    let done = theirs.document().clone();
    let bytes = |h| done.get_change_by_hash(&h).unwrap().raw_bytes().to_vec();
    let (first_bytes, second_bytes) = (bytes(first), bytes(second));

    let peer = PeerId::new("ahead");
    let mut sync = DocSync::new(DocumentId::random());
    // The second change alone: it cannot apply, and must not wait inside.
    let received = sync
        .receive(&mut ours, &peer, &message_with_changes(vec![second_bytes]))
        .unwrap();
    assert!(received.new_changes.is_empty());
    assert!(
        ours.get_missing_deps(&[]).is_empty(),
        "a change waits in the queue"
    );
    // Its dependency arrives, checked on its own; the second does not ride in.
    let received = sync
        .receive(&mut ours, &peer, &message_with_changes(vec![first_bytes]))
        .unwrap();
    assert_eq!(received.new_changes, vec![first]);
    assert!(ours.get_change_by_hash(&second).is_none());
}

#[test]
fn after_dropping_a_change_ahead_of_its_dependency_the_two_sides_still_converge() {
    use automerge::ReadDoc;
    use automerge::sync::SyncDoc;
    // A sender whose first message skips a change, as after a Bloom filter
    // false positive: the receiver drops the orphan, asks for a reset, and
    // the exchange that follows brings both changes.
    let mut theirs = AutoCommit::new();
    theirs.put(automerge::ROOT, "n", 0i64).unwrap();
    theirs.commit();
    let mut ours = theirs.document().clone();
    theirs.put(automerge::ROOT, "n", 1i64).unwrap();
    theirs.commit();
    theirs.put(automerge::ROOT, "n", 2i64).unwrap();
    let second = theirs.commit().unwrap();
    let mut theirs = theirs.document().clone();
    let (us, them) = (PeerId::new("us"), PeerId::new("them"));
    let mut our_sync = DocSync::new(DocumentId::random());
    our_sync.add_peer(them.clone(), automerge::sync::State::new());
    let mut their_state = automerge::sync::State::new();
    // Their first message, doctored to carry only the second change, and
    // recorded as sent on their side.
    let mut first = theirs.generate_sync_message(&mut their_state).unwrap();
    let only_second = theirs
        .get_change_by_hash(&second)
        .unwrap()
        .raw_bytes()
        .to_vec();
    first.changes = vec![only_second].into();
    their_state.sent_hashes.insert(second);
    our_sync.receive(&mut ours, &them, &first.encode()).unwrap();
    for _ in 0..10 {
        for msg in our_sync.generate(&ours, &us) {
            if let twinsync_shared::protocol::Message::Sync { data, .. } = msg {
                let m = automerge::sync::Message::decode(&data).unwrap();
                theirs.receive_sync_message(&mut their_state, m).unwrap();
            }
        }
        if let Some(m) = theirs.generate_sync_message(&mut their_state) {
            our_sync.receive(&mut ours, &them, &m.encode()).unwrap();
        }
    }
    assert_eq!(ours.get_heads(), theirs.get_heads(), "the exchange stalled");
}

/// A change that names hundreds of dependencies we lack: the engine asks
/// for a bounded number of them, a bounded number of times, rather than
/// carrying every name a peer can invent in every message it sends.
#[test]
fn a_change_naming_hundreds_of_missing_dependencies_is_asked_for_within_bounds() {
    use automerge::ReadDoc;
    let mut base = AutoCommit::new();
    base.put(automerge::ROOT, "n", 0i64).unwrap();
    base.commit();
    let mut ours = base.document().clone();
    // 300 concurrent branches, then one change on top of all of them.
    let mut merged = base.fork();
    for i in 0..300i64 {
        let mut branch = base.fork();
        branch.put(automerge::ROOT, "n", i + 1).unwrap();
        branch.commit();
        merged.merge(&mut branch).unwrap();
    }
    merged.put(automerge::ROOT, "top", 1i64).unwrap();
    let top = merged.commit().unwrap();
    assert_eq!(merged.get_change_by_hash(&top).unwrap().deps().len(), 300);
    let top_bytes = merged
        .get_change_by_hash(&top)
        .unwrap()
        .raw_bytes()
        .to_vec();

    let (us, them) = (PeerId::new("server"), PeerId::new("hostile"));
    let mut sync = DocSync::new(DocumentId::random());
    let received = sync
        .receive(&mut ours, &them, &message_with_changes(vec![top_bytes]))
        .unwrap();
    assert!(received.new_changes.is_empty());
    let needs = |out: Vec<twinsync_shared::protocol::Message>| {
        out.into_iter()
            .find_map(|m| match m {
                twinsync_shared::protocol::Message::Sync { data, .. } => {
                    Some(Message::decode(&data).unwrap().need.len())
                }
                _ => None,
            })
            .expect("a message to the peer")
    };
    let first = needs(sync.generate(&ours, &us));
    // At most 256 it skipped, and the change itself.
    assert!(first > 1 && first <= 257, "first message asks for {first}");
    // The peer keeps talking without sending them; the asking stops.
    let heads_only = message(vec![top], Vec::new());
    let mut last = first;
    for _ in 0..8 {
        sync.receive(&mut ours, &them, &heads_only).unwrap();
        last = needs(sync.generate(&ours, &us));
    }
    assert!(last <= 1, "still asking for {last} hashes");
}

/// Regressions from the `sync_engine` fuzz target: sync messages carrying
/// damaged "bundle" chunks made Automerge 0.12 panic while parsing them.
/// They are refused before Automerge sees them, and the document is
/// unchanged.
#[test]
fn damaged_bundle_chunks_in_a_sync_message_are_refused_not_a_panic() {
    for name in ["bundle-in-sync-1.msg", "bundle-in-sync-2.msg"] {
        let data = std::fs::read(format!(
            "{}/tests/fixtures/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .expect("the fixture");
        let (result, doc) = receive(&data);
        let error = result.expect_err(name).to_string();
        assert!(
            error.contains("bundle chunks are not accepted"),
            "{name}: {error}"
        );
        // Still the three changes it started with.
        assert_eq!(doc.get_changes_meta(&[]).len(), 3, "{name}");
    }
}

/// Regressions from the `document_load` fuzz target: the same damaged
/// bundles as stored bytes. Every entry point that parses stored bytes
/// refuses them with an error.
#[test]
fn damaged_bundle_chunks_in_storage_are_refused_not_a_panic() {
    use twinsync_shared::record::{RecordDoc, check_chunk, load_chunks, load_document};
    for name in ["damaged-bundle.chunk", "damaged-bundle-2.chunk"] {
        let bytes = std::fs::read(format!(
            "{}/tests/fixtures/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .expect("the fixture");
        for error in [
            check_chunk(&bytes).expect_err(name).to_string(),
            load_document(&bytes).expect_err(name).to_string(),
            load_chunks(std::slice::from_ref(&bytes))
                .expect_err(name)
                .to_string(),
            RecordDoc::load(&bytes).expect_err(name).to_string(),
        ] {
            assert!(
                error.contains("bundle chunks are not accepted"),
                "{name}: {error}"
            );
        }
    }
}

/// The damaged bundle of a fixture, split after its first 8 bytes (magic
/// and checksum) into two chunks: neither is a bundle alone, but Automerge
/// loads a message's chunks joined, and joined they are the bundle again.
fn split_bundle() -> (Vec<u8>, Vec<u8>) {
    let data = std::fs::read(format!(
        "{}/tests/fixtures/bundle-in-sync-1.msg",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("the fixture");
    let m = automerge::sync::Message::decode(&data).unwrap();
    let joined: Vec<u8> = m.changes.iter().collect::<Vec<_>>().concat();
    let (start, tail) = joined.split_at(8);
    // A whole change, then the bundle's first eight bytes: each piece is
    // long enough to be a chunk, and only joined do they show the bundle's
    // type.
    let mut other = automerge::Automerge::new();
    other
        .transact(|tx| tx.put(automerge::ROOT, "x", 1i64))
        .unwrap();
    let mut head = other.get_last_local_change().unwrap().raw_bytes().to_vec();
    head.extend_from_slice(start);
    (head, tail.to_vec())
}

#[test]
fn a_bundle_split_across_two_chunks_of_a_message_is_refused_not_a_panic() {
    let (head, tail) = split_bundle();
    let (result, doc) = receive(&message_with_changes(vec![head, tail]));
    let error = result.expect_err("a split bundle").to_string();
    assert!(error.contains("bundle chunks are not accepted"), "{error}");
    assert_eq!(doc.get_changes_meta(&[]).len(), 3);
}

#[test]
fn a_bundle_split_across_two_messages_of_a_batch_is_turned_away_not_a_panic() {
    use twinsync_shared::protocol::Incoming;
    let (head, tail) = split_bundle();
    let (first, second) = (
        message_with_changes(vec![head]),
        message_with_changes(vec![tail]),
    );
    let (a, b) = (PeerId::new("hostile-a"), PeerId::new("hostile-b"));
    let mut doc = doc_with_changes();
    let heads = doc.get_heads();
    let mut sync = DocSync::new(DocumentId::random());
    let batch = [
        Incoming {
            from: &a,
            data: &first,
            is_request: false,
        },
        Incoming {
            from: &b,
            data: &second,
            is_request: false,
        },
    ];
    let result = sync.receive_batch(&mut doc, &batch, |_| true, |_, _, _| true);
    assert_eq!(result, None);
    assert_eq!(doc.get_heads(), heads);
}

/// What `sync` answers `data` from a hostile peer, received into a copy of
/// `doc`: the error, once the copy is checked to be as it was and to save
/// and load.
fn refusal(sync: &mut DocSync, doc: &automerge::Automerge, data: &[u8]) -> String {
    let mut copy = doc.clone();
    let error = sync
        .receive(&mut copy, &PeerId::new("hostile"), data)
        .expect_err("refused")
        .to_string();
    assert_eq!(copy.get_heads(), doc.get_heads(), "refused: {error}");
    assert!(saves_and_loads(&copy), "refused: {error}");
    error
}

/// Asserts that `sync` turns away a batch of `data` alone, `doc` as it was.
fn turned_away(sync: &mut DocSync, doc: &automerge::Automerge, data: &[u8]) {
    let peer = PeerId::new("hostile");
    let batch = [twinsync_shared::protocol::Incoming {
        from: &peer,
        data,
        is_request: false,
    }];
    let mut copy = doc.clone();
    assert_eq!(
        sync.receive_batch(&mut copy, &batch, |_| true, |_, _, _| true),
        None
    );
    assert_eq!(copy.get_heads(), doc.get_heads());
}

/// A change by the author of `doc`'s only change, its dependencies met,
/// rewritten to claim sequence number `seq` and, if given, to carry an
/// author: well-formed bytes that Automerge 0.12 asserts on rather than
/// refuses, whatever client sends them.
fn change_claiming(doc: &automerge::Automerge, seq: u64, author: Option<&[u8]>) -> Vec<u8> {
    let mut fork = doc.fork().with_actor(doc.get_actor().clone());
    let mut tx = fork.transaction();
    tx.put(automerge::ROOT, "claimed", "ادعاء").unwrap();
    tx.commit();
    let mut expanded = fork.get_last_local_change().unwrap().decode();
    expanded.seq = seq;
    expanded.hash = None;
    if let Some(author) = author {
        // Automerge carries an author in a change's extra bytes.
        let mut by =
            automerge::Automerge::new().with_author(Some(automerge::Author::from(author.to_vec())));
        by.transact(|tx| tx.put(automerge::ROOT, "by", 1i64))
            .unwrap();
        let footer = by.get_last_local_change().unwrap().decode().extra_bytes;
        assert!(!footer.is_empty());
        expanded.extra_bytes = footer;
    }
    automerge::Change::from(expanded).raw_bytes().to_vec()
}

/// A one-change document, from one author.
fn one_change() -> automerge::Automerge {
    let mut doc = automerge::Automerge::new();
    let mut tx = doc.transaction();
    tx.put(automerge::ROOT, "n", 1i64).unwrap();
    tx.commit();
    doc
}

#[test]
fn changes_automerge_asserts_on_are_refused_and_the_peer_goes_on() {
    use automerge::ReadDoc;
    // A sequence number that skips one; a second one past the first; an
    // author on a second change.
    for (seq, author) in [(3, None), (2, Some(&b"author"[..])), (1, None)] {
        let mut doc = one_change();
        let heads = doc.get_heads();
        let crafted = change_claiming(&doc, seq, author);
        let peer = PeerId::new("hostile");
        let mut sync = DocSync::new(DocumentId::random());
        let result = sync.receive(&mut doc, &peer, &message_with_changes(vec![crafted]));
        let error = result
            .expect_err("a change Automerge cannot apply")
            .to_string();
        let expected = if seq == 1 {
            "duplicate seq" // Automerge refuses this one itself
        } else {
            "changes Automerge cannot apply"
        };
        assert!(error.contains(expected), "seq {seq}: {error}");
        assert_eq!(
            doc.get_heads(),
            heads,
            "seq {seq}: the document is untouched"
        );
        assert_eq!(doc.get(automerge::ROOT, "claimed").unwrap(), None);
        // The same peer's honest change is taken after.
        let mut theirs = doc.fork();
        theirs
            .transact(|tx| tx.put(automerge::ROOT, "n", 2i64))
            .unwrap();
        let honest = theirs.get_last_local_change().unwrap().raw_bytes().to_vec();
        let received = sync
            .receive(&mut doc, &peer, &message_with_changes(vec![honest]))
            .unwrap();
        assert_eq!(received.new_changes, theirs.get_heads(), "seq {seq}");
    }
}

#[test]
fn a_change_automerge_asserts_on_turns_a_batch_away() {
    let doc = one_change();
    let crafted = message_with_changes(vec![change_claiming(&doc, 3, None)]);
    turned_away(&mut DocSync::new(DocumentId::random()), &doc, &crafted);
}

/// `base`'s last change rewritten as a peer could: by `actor`, with its
/// sequence number moved by `seq_delta`, its ops' counters from
/// `start_op`, and, if given, other dependencies. Its one op overwrites
/// the value `base`'s author wrote at "b".
fn rewritten(
    base: &automerge::Automerge,
    actor: &[u8],
    seq_delta: u64,
    start_op: u64,
    deps: Option<Vec<automerge::ChangeHash>>,
) -> automerge::Change {
    let mut fork = base
        .fork()
        .with_actor(automerge::ActorId::from(actor.to_vec()));
    fork.transact(|tx| tx.put(automerge::ROOT, "b", "réécrit"))
        .unwrap();
    let mut change = fork.get_last_local_change().unwrap().decode();
    change.seq += seq_delta;
    change.start_op = std::num::NonZeroU64::new(start_op).unwrap();
    if let Some(deps) = deps {
        change.deps = deps;
    }
    change.hash = None;
    automerge::Change::from(change)
}

/// A record of one change by "aaaa": two ops, counters 1 and 2, the
/// second the value at "b" that `rewritten` overwrites.
fn two_ops_by_aaaa() -> automerge::Automerge {
    let mut base =
        automerge::Automerge::new().with_actor(automerge::ActorId::from(b"aaaa".to_vec()));
    base.transact(|tx| {
        tx.put(automerge::ROOT, "a", 1i64)?;
        tx.put(automerge::ROOT, "b", "مسودة")
    })
    .unwrap();
    base
}

/// Whether `doc` can be saved whole (as compaction does) and as its
/// changes (as storing and relaying do), and loaded again from either; a
/// panic counts as no.
fn saves_and_loads(doc: &automerge::Automerge) -> bool {
    std::panic::catch_unwind(|| {
        automerge::Automerge::load(&doc.save()).is_ok()
            && automerge::Automerge::load(&doc.save_after(&[])).is_ok()
    })
    .unwrap_or(false)
}

/// Changes whose op counters or sequence number do not follow from their
/// dependencies, as no Automerge writer makes them. Automerge 0.12 applies
/// each without a word, and the record can then not be saved and loaded
/// again (or saving it panics). The engine refuses each, saying why.
#[test]
fn changes_that_do_not_follow_from_their_dependencies_are_refused() {
    let base = two_ops_by_aaaa();
    let cases = [
        (
            "its author's next change, reusing the author's counters",
            rewritten(&base, b"aaaa", 0, 1, None),
            "starts at op 1, but the change",
        ),
        (
            "a new author's change, below what it depends on",
            rewritten(&base, b"bbbb", 0, 2, None),
            "starts at op 2, but the change",
        ),
        (
            "its author's next change, not depending on the author's last",
            rewritten(&base, b"aaaa", 0, 3, Some(Vec::new())),
            "does not depend on the author's change 1",
        ),
        (
            "counters past 32 bits",
            rewritten(&base, b"cccc", 0, u64::from(u32::MAX), None),
            "past what Automerge can keep",
        ),
        (
            "a value overwriting an op its change does not depend on",
            rewritten(&base, b"dddd", 0, 1, Some(Vec::new())),
            "cannot be saved again",
        ),
    ];
    for (what, change, expected) in cases {
        let mut plain = base.clone();
        plain.apply_changes([change.clone()]).unwrap();
        assert!(
            plain.get_change_meta_by_hash(&change.hash()).is_some() && !saves_and_loads(&plain),
            "{what}: Automerge takes it, and the record no longer saves and loads"
        );

        let data = message(vec![change.hash()], vec![change.raw_bytes().to_vec()]);
        let error = refusal(&mut DocSync::new(DocumentId::random()), &base, &data);
        assert!(error.contains(expected), "{what}: {error}");
    }
}

#[test]
fn a_change_that_does_not_follow_from_its_dependencies_turns_a_batch_away() {
    let doc = one_change();
    let actor = doc.get_actor().to_bytes().to_vec();
    let change = rewritten(&doc, &actor, 0, 1, None);
    let data = message(vec![change.hash()], vec![change.raw_bytes().to_vec()]);
    turned_away(&mut DocSync::new(DocumentId::random()), &doc, &data);
}

/// A change whose op counters jump far past any the record holds. Automerge
/// takes it, and then the record cannot take another change of a few
/// hundred ops: the counters are used up.
#[test]
fn a_change_jumping_the_op_counters_ahead_is_refused() {
    let base = one_change();
    let actor = b"jumper";
    let change = rewritten(&base, actor, 0, u64::from(u32::MAX) - 100, None);

    let mut plain = base.clone();
    plain.apply_changes([change.clone()]).unwrap();
    let typed = std::panic::catch_unwind(move || {
        plain
            .transact(|tx| {
                for n in 0..200i64 {
                    tx.put(automerge::ROOT, format!("mot {n}"), n)?;
                }
                Ok::<_, automerge::AutomergeError>(())
            })
            .is_ok()
    });
    assert!(
        !matches!(typed, Ok(true)),
        "Automerge takes it, and then a change of 200 ops fails"
    );

    let data = message(vec![change.hash()], vec![change.raw_bytes().to_vec()]);
    let error = refusal(&mut DocSync::new(DocumentId::random()), &base, &data);
    assert!(
        error.contains("past any op counter it could have seen"),
        "{error}"
    );
}

/// A change whose rebuilding panics, sent beside one whose dependency has
/// not arrived: the engine then rebuilds what applied to apply it again,
/// and that too is guarded.
#[test]
fn a_change_that_panics_when_rebuilt_beside_one_ahead_of_its_dependency_is_refused() {
    let base = two_ops_by_aaaa();
    let panicking = rewritten(&base, b"dddd", 0, 1, Some(Vec::new()));
    let waiting = rewritten(
        &base,
        b"eeee",
        0,
        3,
        Some(vec![automerge::ChangeHash([7; 32])]),
    );
    let mut heads = vec![panicking.hash(), waiting.hash()];
    heads.sort();
    let data = message(
        heads,
        vec![panicking.raw_bytes().to_vec(), waiting.raw_bytes().to_vec()],
    );
    let error = refusal(&mut DocSync::new(DocumentId::random()), &base, &data);
    assert!(error.contains("cannot apply"), "{error}");
}

/// A change inserting `chars` equal characters, compressed as Automerge
/// compresses a large change: a few hundred bytes.
fn packed_change(base: &automerge::Automerge, chars: usize) -> automerge::Change {
    let mut fork = base.fork();
    fork.transact(|tx| {
        let text = tx.put_object(automerge::ROOT, "packed", automerge::ObjType::Text)?;
        tx.splice_text(&text, 0, 0, &"ا".repeat(chars))
    })
    .unwrap();
    let mut change = fork.get_last_local_change().unwrap();
    change.bytes();
    change
}

/// Automerge inflates a compressed change without a bound and applies
/// every op. The engine weighs a payload first and refuses one holding
/// more ops than it was told to take, without applying any.
#[test]
fn a_payload_packing_more_ops_than_allowed_is_refused_unapplied() {
    let base = one_change();
    let mut change = packed_change(&base, 200_000);
    let packed = change.bytes().to_vec();
    assert!(packed.len() < 2_000, "{} bytes", packed.len());
    let data = message(vec![change.hash()], vec![packed]);

    let mut sync = DocSync::new(DocumentId::random()).with_max_ops(50_000);
    let error = refusal(&mut sync, &base, &data);
    assert!(error.contains("over 50000 operations"), "{error}");
    turned_away(&mut sync, &base, &data);

    // Under the bound it is taken, whole.
    let mut doc = base.clone();
    let mut sync = DocSync::new(DocumentId::random()).with_max_ops(250_000);
    let received = sync
        .receive(&mut doc, &PeerId::new("hostile"), &data)
        .unwrap();
    assert_eq!(received.new_changes, vec![change.hash()]);
}

/// A batch is taken in with one pass: a chunk Automerge stops at (its
/// checksum is wrong) leaves the next message's change unapplied until that
/// message's own bookkeeping, where Automerge would assert on it.
#[test]
fn a_change_automerge_asserts_on_behind_a_damaged_chunk_turns_a_batch_away() {
    let doc = one_change();
    let heads = doc.get_heads();
    let mut theirs = doc.fork();
    theirs
        .transact(|tx| tx.put(automerge::ROOT, "n", 2i64))
        .unwrap();
    let mut damaged = theirs.get_last_local_change().unwrap().raw_bytes().to_vec();
    // The checksum follows the four magic bytes.
    damaged[4] ^= 0xff;
    let crafted = change_claiming(&doc, 3, None);
    let hash = automerge::Change::try_from(crafted.as_slice())
        .unwrap()
        .hash();
    let (first, second) = (
        message(heads.clone(), vec![damaged]),
        message(vec![hash], vec![crafted]),
    );
    let (a, b) = (PeerId::new("a"), PeerId::new("b"));
    let batch = [
        twinsync_shared::protocol::Incoming {
            from: &a,
            data: &first,
            is_request: false,
        },
        twinsync_shared::protocol::Incoming {
            from: &b,
            data: &second,
            is_request: false,
        },
    ];
    let mut sync = DocSync::new(DocumentId::random());
    let mut copy = doc.clone();
    assert_eq!(
        sync.receive_batch(&mut copy, &batch, |_| true, |_, _, _| true),
        None
    );
    assert_eq!(copy.get_heads(), heads);
}

/// Millions of two-byte `have` entries would each decode into 64 bytes,
/// kept in the peer's state and tested against every change on every
/// answer: more than a few are refused before Automerge decodes them.
#[test]
fn a_message_with_more_have_entries_than_automerge_writes_is_refused() {
    let many = |n: usize| {
        Message {
            heads: Vec::new(),
            need: Vec::new(),
            have: vec![Have::default(); n],
            changes: Vec::<Vec<u8>>::new().into(),
            flags: None,
            version: MessageVersion::V1,
        }
        .encode()
    };
    let allowed = usize::try_from(twinsync_shared::protocol::MAX_HAVES).unwrap();
    let (result, _) = receive(&many(allowed));
    result.unwrap();
    let (result, doc) = receive(&many(100_000));
    let err = result.unwrap_err();
    assert!(
        matches!(&err, SyncError::Malformed(m) if m.contains("100000 `have` entries")),
        "{err}"
    );
    assert_eq!(
        doc.get_changes_meta(&[]).len(),
        3,
        "the document is untouched"
    );
    turned_away(
        &mut DocSync::new(DocumentId::random()),
        &doc,
        &many(100_000),
    );
    // Counting a message's ops for a sender's budget checks the same
    // counts before Automerge decodes anything.
    let counted = twinsync_shared::protocol::ops_in_sync(&many(100_000), 1_000_000);
    assert!(
        matches!(&counted, Err(SyncError::Malformed(m)) if m.contains("`have` entries")),
        "{counted:?}"
    );
}

/// An empty change would decode into a 24-byte vector from one byte.
#[test]
fn a_change_shorter_than_any_change_is_refused() {
    let (result, _) = receive(&message_with_changes(vec![Vec::new(); 1000]));
    let err = result.unwrap_err();
    assert!(
        matches!(&err, SyncError::Malformed(m) if m.contains("change 0 is 0 bytes")),
        "{err}"
    );
}

/// The counts read before decoding agree with Automerge's own decoding for
/// every message two peers exchange, Bloom filters, needs and whole
/// documents included.
#[test]
fn the_counts_read_before_decoding_agree_with_automerge() {
    use automerge::sync::SyncDoc;
    let mut a = doc_with_changes();
    let mut b = automerge::Automerge::new();
    b.transact(|tx| tx.put(automerge::ROOT, "b", "ب")).unwrap();
    let (mut sa, mut sb) = (automerge::sync::State::new(), automerge::sync::State::new());
    let mut seen = 0;
    for round in 0..10 {
        if round == 4 {
            a.transact(|tx| tx.put(automerge::ROOT, "later", round))
                .unwrap();
        }
        let from_a = a.generate_sync_message(&mut sa);
        let from_b = b.generate_sync_message(&mut sb);
        for (m, to, state) in [(from_a, &mut b, &mut sb), (from_b, &mut a, &mut sa)] {
            let Some(m) = m else { continue };
            let changes = m.changes.len();
            let bytes = m.encode();
            assert_eq!(
                twinsync_shared::protocol::sync_shape(&bytes).unwrap(),
                changes
            );
            seen += usize::from(changes > 0);
            to.receive_sync_message(state, Message::decode(&bytes).unwrap())
                .unwrap();
        }
    }
    assert!(seen >= 2, "messages carrying changes were checked");
    assert_eq!(a.get_heads(), b.get_heads());
}

/// A peer that names one change twice in `need`, with no filter: Automerge
/// would build the change once per name and panic on the second. The
/// engine answers with the change once.
#[test]
fn a_change_needed_twice_is_sent_once() {
    let doc = doc_with_changes();
    let last = doc.get_heads()[0];
    let peer = PeerId::new("twice");
    let mut sync = DocSync::new(DocumentId::random());
    let asks = Message {
        heads: vec![last],
        need: vec![last, last, last],
        have: Vec::new(),
        changes: Vec::<Vec<u8>>::new().into(),
        flags: None,
        version: MessageVersion::V1,
    }
    .encode();
    let mut doc = doc;
    sync.receive(&mut doc, &peer, &asks).unwrap();
    let sent: Vec<automerge::ChangeHash> = sync
        .generate(&doc, &PeerId::new("server"))
        .into_iter()
        .filter_map(|m| match m {
            twinsync_shared::protocol::Message::Sync { data, .. } => Some(data),
            _ => None,
        })
        .flat_map(|data| {
            let m = Message::decode(&data).unwrap();
            m.changes
                .iter()
                .map(|c| automerge::Change::from_bytes(c.to_vec()).unwrap().hash())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(sent, vec![last]);
}
