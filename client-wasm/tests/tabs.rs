//! Two tabs of one browser share its IndexedDB: each takes in the chunks
//! the other stored (`Replica::merge_stored`), as read back from it.

#![allow(clippy::unwrap_used)] // a test panics to fail

use serde_json::json;
use twinsync_client::replica::{Chunk, Replica};
use twinsync_shared::record::{Commit, Edit, Kind};
use twinsync_shared::{DocumentId, PeerId, StorageId};

const NOW: i64 = 1_790_000_000;

fn tab(name: &str) -> Replica {
    Replica::new(PeerId::new(name), StorageId::new("one-browser"))
}

fn of(chunks: &[Chunk], id: DocumentId) -> Vec<Vec<u8>> {
    chunks
        .iter()
        .filter(|c| c.doc == id)
        .map(|c| c.bytes.clone())
        .collect()
}

#[test]
fn a_tab_takes_in_what_another_stored_and_says_what_changed() {
    let (mut a, mut b) = (tab("tab-a"), tab("tab-b"));
    let commit = Commit::new("edit", NOW);
    let fields = json!({"title": {"fr": "Visite"}, "report_type": "visit", "date": "2026-11-20", "text": "لقاء"});
    let (report, created) = a.create(Kind::Report, &fields, &commit).unwrap();
    let edit = Edit::Set {
        path: "/title/fr".into(),
        value: json!("Visite à Dakar"),
    };
    let edited = a.edit(report, vec![edit], &commit).unwrap();

    // Tab B reads both writes back, the first one damaged on the way.
    let mut first = of(&created.chunks, report);
    let damaged = first[0][..first[0].len() / 2].to_vec();
    let (out, bad) = b.merge_stored(report, &[damaged]);
    assert!(out.changed.is_empty(), "{:?}", out.changed);
    assert_eq!(
        bad.map(|d| d.chunks.len()),
        Some(1),
        "the damaged chunk is named"
    );
    first.extend(of(&edited.chunks, report));
    let (out, bad) = b.merge_stored(report, &first);
    assert!(bad.is_none());
    assert!(
        out.chunks.is_empty() && out.sync_states.is_empty(),
        "nothing to write"
    );
    assert_eq!(out.changed.len(), 1);
    assert_eq!(out.changed[0].id, report.to_string());
    assert!(
        out.changed[0].paths.contains(&"/title/fr".to_owned()),
        "{:?}",
        out.changed[0].paths
    );
    assert_eq!(b.read(report).unwrap(), a.read(report).unwrap());
    // The server has none of it: B sends it too, as its own.
    assert_eq!(b.unconfirmed(), a.unconfirmed());
    assert!(b.unconfirmed() > 0);
    // Read back again, nothing is new.
    assert!(b.merge_stored(report, &first).0.changed.is_empty());

    // B writes on top; A takes it in: one title, no disagreement.
    let edit = Edit::Set {
        path: "/title/fr".into(),
        value: json!("Visite à Dakar et Thiès"),
    };
    let on_top = b.edit(report, vec![edit], &commit).unwrap();
    let (out, _) = a.merge_stored(report, &of(&on_top.chunks, report));
    assert_eq!(out.changed.len(), 1);
    let view = a.read(report).unwrap();
    assert_eq!(view["record"]["title"]["fr"], "Visite à Dakar et Thiès");
    assert_eq!(view["conflicts"], json!([]));
}
