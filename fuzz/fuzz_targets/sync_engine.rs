//! A hostile peer's sync payloads against the sync engine, on a real
//! record: nothing may panic, a refused payload leaves the document as it
//! was, and the document always saves and loads whole.

#![no_main]

use std::sync::OnceLock;

use automerge::{Automerge, ReadDoc, sync};
use libfuzzer_sys::fuzz_target;
use twinsync_fuzz::{StepFlags, sync_steps};
use twinsync_shared::protocol::DocSync;
use twinsync_shared::record::{load_document, read_document};
use twinsync_shared::{DocumentId, PeerId};

/// A fixed document rather than `demo::build()`, whose actors and times are
/// random: a crash must replay against the same record.
fn base() -> &'static Automerge {
    static BASE: OnceLock<Automerge> = OnceLock::new();
    BASE.get_or_init(|| {
        load_document(include_bytes!("../fixtures/record.automerge")).expect("the fixture loads")
    })
}

fuzz_target!(|data: &[u8]| {
    let mut doc = base().clone();
    let us = PeerId::from("server");
    let hostile = PeerId::from("hostile");
    let mut engine = DocSync::new(DocumentId::from_bytes([7; 16]));
    engine.add_peer(hostile.clone(), sync::State::new());
    // A second peer, so `generate` also serves someone who did nothing wrong.
    engine.add_peer(PeerId::from("honest"), sync::State::new());
    engine.generate(&doc, &us);

    for (flags, payload) in sync_steps(data) {
        if flags.has(StepFlags::RESET) {
            engine.reset_peer(&hostile);
        }
        let strict = flags.has(StepFlags::STRICT);
        let before = doc.get_heads();
        let held_before = doc.clone();
        let result = engine.receive_checked(
            &mut doc,
            &hostile,
            payload,
            flags.has(StepFlags::REQUEST),
            |scratch, _new| match read_document(scratch) {
                Err(errors) if strict => Err(errors),
                _ => Ok(()),
            },
        );
        if twinsync_fuzz::tracing() {
            eprintln!("{flags:?} {} bytes -> {result:?}", payload.len());
        }
        match result {
            Ok(received) => {
                for hash in &received.new_changes {
                    assert!(
                        doc.get_change_meta_by_hash(hash).is_some(),
                        "{hash} reported new but absent"
                    );
                }
                // What the server stores brings the record from before to now.
                let mut stored = held_before;
                stored
                    .load_incremental(&received.saved)
                    .expect("the stored changes load");
                assert_eq!(
                    stored.get_heads(),
                    doc.get_heads(),
                    "the stored changes are all"
                );
                if strict && !received.new_changes.is_empty() {
                    assert!(
                        read_document(&doc).is_ok(),
                        "the strict check let an invalid record in"
                    );
                }
            }
            Err(_) => assert_eq!(
                doc.get_heads(),
                before,
                "a refused payload changed the document"
            ),
        }
        assert!(
            doc.get_missing_deps(&[]).is_empty(),
            "the document holds changes waiting for their dependencies"
        );
        let saved = doc.save();
        let loaded = load_document(&saved).expect("the document loads from its own save()");
        assert_eq!(loaded.get_heads(), doc.get_heads());
        engine.generate(&doc, &us);
    }
});
