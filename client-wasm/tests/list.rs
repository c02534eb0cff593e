//! The list of records the app draws after every change, typing included:
//! each record as it now reads, though only the records that changed are
//! read again.

#![allow(clippy::unwrap_used)] // a test panics to fail

use serde_json::json;
use twinsync_client::replica::Replica;
use twinsync_shared::record::{Commit, Edit, Kind};
use twinsync_shared::{PeerId, StorageId};

const NOW: i64 = 1_790_000_000;

#[test]
fn the_list_shows_each_record_as_it_now_reads() {
    let mut phone = Replica::new(PeerId::new("phone"), StorageId::new("phone-storage"));
    let commit = Commit::new("edit", NOW);
    let fields = json!({"title": {"fr": "Conseil"}, "date": "2026-11-30", "minutes": ""});
    let (meeting, _) = phone.create(Kind::Meeting, &fields, &commit).unwrap();
    let (other, _) = phone
        .create(
            Kind::Meeting,
            &json!({"title": {"en": "Youth committee"}, "date": "2026-12-01"}),
            &commit,
        )
        .unwrap();
    let listed = |p: &Replica, id: twinsync_shared::DocumentId| {
        p.list()
            .into_iter()
            .find(|s| s["id"] == id.to_string())
            .unwrap()
    };
    assert_eq!(listed(&phone, meeting)["title"], json!({"fr": "Conseil"}));
    phone
        .edit(
            meeting,
            vec![Edit::SpliceText {
                path: "/minutes".into(),
                index: 0,
                delete: 0,
                insert: "افتتاح الجلسة".into(),
            }],
            &commit,
        )
        .unwrap();
    assert_eq!(listed(&phone, meeting)["title"], json!({"fr": "Conseil"}));
    phone
        .edit(
            meeting,
            vec![Edit::Set {
                path: "/title/ar".into(),
                value: json!("مجلس التنسيق"),
            }],
            &commit,
        )
        .unwrap();
    assert_eq!(
        listed(&phone, meeting)["title"],
        json!({"fr": "Conseil", "ar": "مجلس التنسيق"})
    );
    phone
        .edit(
            other,
            vec![Edit::Set {
                path: "/title/fr".into(),
                value: json!("Comité jeunesse"),
            }],
            &commit,
        )
        .unwrap();
    assert_eq!(
        listed(&phone, other)["title"],
        json!({"en": "Youth committee", "fr": "Comité jeunesse"})
    );
    assert_eq!(
        listed(&phone, meeting)["title"],
        json!({"fr": "Conseil", "ar": "مجلس التنسيق"})
    );
    // A keystroke keeps the summary it had, without reading the record
    // again; one typed with a title change in the same batch does not.
    let splice = |at: usize| Edit::SpliceText {
        path: "/minutes".into(),
        index: at,
        delete: 0,
        insert: "،".into(),
    };
    phone.edit(meeting, vec![splice(13)], &commit).unwrap();
    assert_eq!(listed(&phone, meeting)["valid"], json!(true));
    phone
        .edit(
            meeting,
            vec![
                splice(14),
                Edit::Set {
                    path: "/title/en".into(),
                    value: json!("Coordination council"),
                },
            ],
            &commit,
        )
        .unwrap();
    assert_eq!(
        listed(&phone, meeting)["title"],
        json!({"fr": "Conseil", "ar": "مجلس التنسيق", "en": "Coordination council"})
    );
    assert_eq!(
        phone.read(meeting).unwrap()["record"]["minutes"],
        json!("افتتاح الجلسة،،")
    );
}

/// Once a newer app has written the club's record, this one cannot list a
/// new record in its index: the record is not created at all, rather than
/// synced without being stored on the phone or listed for anyone.
#[test]
fn a_record_the_club_index_cannot_list_is_not_created() {
    let mut phone = Replica::new(PeerId::new("phone"), StorageId::new("phone-storage"));
    let mut club = twinsync_shared::record::new_document();
    club.transact::<_, _, automerge::AutomergeError>(|tx| {
        use automerge::transaction::Transactable;
        tx.put(automerge::ROOT, "schema", 99i64)?;
        tx.put(automerge::ROOT, "kind", "club")
    })
    .unwrap();
    let id = twinsync_shared::DocumentId::random();
    phone.restore(id, &[club.save()], None).unwrap();
    phone.set_club(id);
    let before = phone.list().len();
    let fields = json!({"title": {"fr": "Conseil"}, "date": "2026-11-30"});
    let err = phone
        .create(Kind::Meeting, &fields, &Commit::new("new", NOW))
        .unwrap_err();
    assert!(err.to_string().contains("newer"), "{err}");
    assert_eq!(phone.list().len(), before, "nothing was created");
}
