//! A record rebuilt from what the device stored. A change stored without
//! one it builds on (a phone that could not keep the record whole, closed
//! before it could) cannot be read back: that is said, not hidden.

#![allow(clippy::unwrap_used)] // a test panics to fail

use automerge::ReadDoc;
use serde_json::json;
use twinsync_client::replica::Replica;
use twinsync_shared::record::{Commit, Edit, Kind, load_document};
use twinsync_shared::{PeerId, StorageId};

fn device(name: &str) -> Replica {
    Replica::new(PeerId::new(name), StorageId::new(format!("{name}-storage")))
}

fn typed(insert: &str) -> Vec<Edit> {
    vec![Edit::SpliceText {
        path: "/minutes".into(),
        index: 0,
        delete: 0,
        insert: insert.into(),
    }]
}

#[test]
fn a_change_stored_without_the_one_it_builds_on_is_named_as_damage() {
    let mut phone = device("phone");
    let commit = Commit::new("typing", 1_790_000_000);
    let (meeting, created) = phone
        .create(
            Kind::Meeting,
            &json!({"title": {"ar": "اجتماع"}, "date": "2026-12-05", "minutes": ""}),
            &commit,
        )
        .unwrap();
    let created = created.chunks[0].bytes.clone();
    // The first word was never stored; the second was.
    let first = phone.edit(meeting, typed("أول "), &commit).unwrap();
    let first = first.chunks[0].bytes.clone();
    let second = phone.edit(meeting, typed("ثاني "), &commit).unwrap();
    let second = second.chunks[0].bytes.clone();

    // After the record whole, and alone: both times said.
    for stored in [vec![created.clone(), second.clone()], vec![second.clone()]] {
        let mut again = device("phone");
        let err = again
            .restore(meeting, &stored, Some(b"state".to_vec()))
            .unwrap_err();
        assert_eq!(err.doc, meeting);
        let named: Vec<usize> = err.chunks.iter().map(|(i, _)| *i).collect();
        assert_eq!(named, vec![stored.len() - 1], "{err}");
        assert!(err.chunks[0].1.contains("does not hold"), "{err}");
        assert_eq!(err.waiting, named, "whole, it waits rather than goes");
        // What loaded is kept, and nothing waits inside Automerge.
        if let Some(bytes) = again.snapshot(meeting) {
            assert!(
                load_document(&bytes)
                    .unwrap()
                    .get_missing_deps(&[])
                    .is_empty()
            );
        }
        if stored.len() == 2 {
            assert_eq!(again.read(meeting).unwrap()["record"]["minutes"], json!(""));
        }
    }

    // What it builds on comes back (the server sends it again, or another
    // tab stored it): at the next start the waiting chunk loads.
    let mut later = device("phone");
    later
        .restore(
            meeting,
            &[created.clone(), second.clone(), first.clone()],
            None,
        )
        .unwrap();
    assert_eq!(
        later.read(meeting).unwrap()["record"]["minutes"],
        json!("ثاني أول ")
    );

    // A second tab reading it back leaves it out alike, with nothing
    // waiting inside Automerge, and takes it in once it holds the first.
    let mut tab = device("tab");
    tab.restore(meeting, std::slice::from_ref(&created), None)
        .unwrap();
    let (out, damaged) = tab.merge_stored(meeting, std::slice::from_ref(&second));
    assert!(out.changed.is_empty());
    assert_eq!(damaged.unwrap().waiting, vec![0]);
    assert!(
        load_document(&tab.snapshot(meeting).unwrap())
            .unwrap()
            .get_missing_deps(&[])
            .is_empty(),
        "a change waits inside Automerge"
    );
    let (out, damaged) = tab.merge_stored(meeting, &[first.clone(), second.clone()]);
    assert!(damaged.is_none());
    assert_eq!(out.changed.len(), 1);
    assert_eq!(
        tab.read(meeting).unwrap()["record"]["minutes"],
        json!("ثاني أول ")
    );

    // Stored in full, the record reads back whole.
    let mut whole = device("phone");
    whole
        .restore(meeting, &[phone.snapshot(meeting).unwrap()], None)
        .unwrap();
    assert_eq!(
        whole.read(meeting).unwrap()["record"]["minutes"],
        json!("ثاني أول ")
    );
}
