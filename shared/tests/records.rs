//! Records: creating, reading, editing by path, validation, conflicts and
//! history, with Arabic, French and English text.

#![allow(clippy::unwrap_used)] // a test panics to fail

mod phones;

use phones::{commit, fork, merge};

use serde_json::{Value as Json, json};
use twinsync_shared::record::{
    Commit, Conflict, Edit, EditError, Kind, LinkMembers, LoadError, Problem, Record, RecordDoc,
    ValidationError, new_document,
};
use twinsync_shared::text::utf16_to_index;

fn meeting() -> RecordDoc {
    RecordDoc::create(
        Kind::Meeting,
        &json!({
            "title": {"ar": "اجتماع المجلس", "fr": "Réunion du conseil"},
            "date": "2025-10-30",
            "agenda": [{"id": "a1", "title": "Ouverture"}, {"id": "a2", "title": "Accords"}],
            "minutes": "بداية",
        }),
        &commit("New meeting", 100),
    )
    .unwrap()
}

fn set(path: &str, value: serde_json::Value) -> Edit {
    Edit::Set {
        path: path.into(),
        value,
    }
}

#[test]
fn a_record_reads_back_typed() {
    let Record::Meeting(m) = meeting().record().unwrap() else {
        panic!("not a meeting")
    };
    assert_eq!(m.title.ar.as_deref(), Some("اجتماع المجلس"));
    assert_eq!(
        m.agenda.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(),
        ["a1", "a2"]
    );
    assert_eq!(m.minutes, "بداية");
    assert!(!m.adopted);
}

#[test]
fn typed_records_round_trip_through_documents() {
    for record in twinsync_shared::demo::build().unwrap() {
        let typed = record.doc.record().unwrap();
        let again = RecordDoc::from_record(&typed, &commit("copy", 1)).unwrap();
        assert_eq!(again.record().unwrap(), typed);
    }
}

#[test]
fn edits_address_fields_languages_and_items_by_path() {
    let mut doc = meeting();
    doc.edit(
        &commit("Edit", 200),
        &[
            set("/title/en", json!("Council meeting")),
            set("/agenda/a2/title", json!("Les accords de jumelage")),
            set("/adopted", json!(true)),
            Edit::InsertItem {
                path: "/agenda".into(),
                after: Some("a1".into()),
                item: json!({"id": "a3", "title": "Budget"}),
            },
            Edit::AddMember {
                path: "/attendees".into(),
                member: twinsync_shared::DocumentId::random().url().to_string(),
            },
        ],
    )
    .unwrap();
    let Record::Meeting(m) = doc.record().unwrap() else {
        panic!()
    };
    assert_eq!(m.title.en.as_deref(), Some("Council meeting"));
    assert_eq!(
        m.agenda.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(),
        ["a1", "a3", "a2"]
    );
    assert_eq!(m.agenda[2].title, "Les accords de jumelage");
    assert!(m.adopted);
    assert_eq!(m.attendees.len(), 1);
}

#[test]
fn a_refused_edit_writes_nothing() {
    let mut doc = meeting();
    let before = doc.heads();
    let err = doc
        .edit(
            &commit("Bad", 1),
            &[
                set("/adopted", json!(true)),
                set("/date", json!("31/10/2025")),
            ],
        )
        .unwrap_err();
    assert!(
        matches!(&err, EditError::Invalid { path, .. } if path == "/date"),
        "{err}"
    );
    assert_eq!(doc.heads(), before);
    // A year with a sign or a fifth digit is not a date of the club's.
    for date in ["-2025-10-30", "+2025-10-30", "12025-10-30", "2025-1-30"] {
        let err = doc
            .edit(&commit("Bad", 1), &[set("/date", json!(date))])
            .unwrap_err();
        assert!(
            matches!(&err, EditError::Invalid { path, .. } if path == "/date"),
            "{date}: {err}"
        );
        assert_eq!(doc.heads(), before, "{date} wrote nothing");
    }
    doc.edit(&commit("Good", 1), &[set("/date", json!("2025-10-31"))])
        .unwrap();
    assert_ne!(doc.heads(), before, "a date of four digits is taken");
    let err = doc
        .edit(&commit("Bad", 1), &[set("/agenda/zz/title", json!("x"))])
        .unwrap_err();
    assert!(matches!(err, EditError::Path { .. }), "{err}");
    let err = doc
        .edit(&commit("Bad", 1), &[set("/nope", json!(1))])
        .unwrap_err();
    assert!(err.to_string().contains("no field `nope`"), "{err}");
}

#[test]
fn short_fields_are_stored_in_nfc() {
    let mut doc = meeting();
    // Alef followed by a combining hamza above composes to U+0623.
    doc.edit(
        &commit("Title", 1),
        &[set("/title/ar", json!("\u{0627}\u{0654}جتماع"))],
    )
    .unwrap();
    let Record::Meeting(m) = doc.record().unwrap() else {
        panic!()
    };
    assert_eq!(m.title.ar.as_deref(), Some("\u{0623}جتماع"));
}

#[test]
fn arabic_edits_at_browser_utf16_offsets_land_where_intended() {
    let mut doc = meeting();
    let word = "محمد رسول"; // no marks yet
    doc.edit(&commit("Minutes", 1), &[set("/minutes", json!(word))])
        .unwrap();
    // The browser reports the caret after "مح" (UTF-16 offset 2) and types a shadda.
    let index = utf16_to_index(word, 2).unwrap();
    doc.edit(
        &commit("Shadda", 2),
        &[Edit::SpliceText {
            path: "/minutes".into(),
            index,
            delete: 0,
            insert: "\u{0651}".into(),
        }],
    )
    .unwrap();
    let Record::Meeting(m) = doc.record().unwrap() else {
        panic!()
    };
    assert_eq!(m.minutes, "مح\u{0651}مد رسول");
    // After an emoji (two UTF-16 units), offsets still map to the right character.
    let text = format!("🌍 {}", m.minutes);
    doc.edit(&commit("Emoji", 3), &[set("/minutes", json!(text))])
        .unwrap();
    // "🌍" is 2 UTF-16 units, the space 1, "محّم" 4: offset 7 is before the final dal.
    let index = utf16_to_index(&text, 7).unwrap();
    assert_eq!(index, 6);
    doc.edit(
        &commit("Insert", 4),
        &[Edit::SpliceText {
            path: "/minutes".into(),
            index,
            delete: 0,
            insert: "ـ".into(),
        }],
    )
    .unwrap();
    let Record::Meeting(m) = doc.record().unwrap() else {
        panic!()
    };
    assert_eq!(m.minutes, "🌍 مح\u{0651}مـد رسول");
}

#[test]
fn a_splice_outside_the_text_is_refused() {
    let mut doc = meeting();
    let err = doc
        .edit(
            &commit("x", 1),
            &[Edit::SpliceText {
                path: "/minutes".into(),
                index: 6,
                delete: 0,
                insert: "x".into(),
            }],
        )
        .unwrap_err();
    assert!(err.to_string().contains("outside the text"), "{err}");
}

#[test]
fn concurrent_list_inserts_after_the_same_item_both_survive() {
    let mut a = meeting();
    let mut b = fork(&a);
    let insert = |id: &str| Edit::InsertItem {
        path: "/agenda".into(),
        after: Some("a1".into()),
        item: json!({"id": id, "title": id}),
    };
    a.edit(&commit("a", 1), &[insert("from-a")]).unwrap();
    b.edit(
        &commit("b", 1),
        &[
            insert("from-b"),
            Edit::RemoveItem {
                path: "/agenda/a2".into(),
            },
        ],
    )
    .unwrap();
    merge(&mut a, &mut b);
    let Record::Meeting(m) = a.record().unwrap() else {
        panic!()
    };
    let mut ids: Vec<_> = m.agenda.iter().map(|i| i.id.clone()).collect();
    assert_eq!(ids.remove(0), "a1");
    ids.sort();
    assert_eq!(ids, ["from-a", "from-b"]);
    assert_eq!(a.read().unwrap(), b.read().unwrap());
}

#[test]
fn concurrent_text_edits_merge_character_by_character() {
    let mut a = meeting();
    let mut b = fork(&a);
    a.edit(
        &commit("a", 1),
        &[Edit::SpliceText {
            path: "/minutes".into(),
            index: 0,
            delete: 0,
            insert: "Ouverture. ".into(),
        }],
    )
    .unwrap();
    b.edit(
        &commit("b", 1),
        &[Edit::SpliceText {
            path: "/minutes".into(),
            index: 5,
            delete: 0,
            insert: " الاجتماع".into(),
        }],
    )
    .unwrap();
    merge(&mut a, &mut b);
    let Record::Meeting(m) = b.record().unwrap() else {
        panic!()
    };
    assert_eq!(m.minutes, "Ouverture. بداية الاجتماع");
}

/// A conflict's values, each a string, sorted.
fn sorted_values(conflict: &Conflict) -> Vec<String> {
    let mut values: Vec<_> = conflict
        .values
        .iter()
        .map(|v| v.value.as_str().unwrap().to_owned())
        .collect();
    values.sort();
    values
}

#[test]
fn writers_who_set_the_same_value_do_not_disagree() {
    use automerge::ReadDoc;
    let mut a = meeting();
    let mut b = fork(&a);
    let mut c = fork(&a);
    for (replica, name) in [(&mut a, "a"), (&mut b, "b")] {
        replica
            .edit(&commit(name, 1), &[set("/date", json!("2025-11-02"))])
            .unwrap();
    }
    merge(&mut a, &mut b);
    // Automerge keeps both writes; they say the same.
    assert_eq!(a.doc().get_all(automerge::ROOT, "date").unwrap().len(), 2);
    assert!(a.conflicts().is_empty(), "{:?}", a.conflicts());
    // A third writer with another value: two values, each listed once.
    c.edit(&commit("c", 1), &[set("/date", json!("2025-11-09"))])
        .unwrap();
    merge(&mut a, &mut c);
    let conflicts = a.conflicts();
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    assert_eq!(sorted_values(&conflicts[0]), ["2025-11-02", "2025-11-09"]);
}

#[test]
fn two_lists_set_at_once_are_a_disagreement_whatever_they_hold() {
    use automerge::transaction::Transactable;
    use automerge::{ObjType, ROOT};
    // Lists are shown by their type alone: two alike in that are not one value.
    let base = meeting();
    let lists = ["a", "b"].map(|who| {
        let mut doc = base
            .doc()
            .fork()
            .with_actor(automerge::ActorId::from(who.as_bytes()));
        let mut tx = doc.transaction();
        let agenda = tx.put_object(ROOT, "agenda", ObjType::List).unwrap();
        tx.insert(&agenda, 0, who).unwrap();
        tx.commit();
        doc
    });
    let [mut a, mut b] = lists;
    a.merge(&mut b).unwrap();
    let conflicts = twinsync_shared::record::document_conflicts(&a);
    let agenda = conflicts.iter().find(|c| c.path == "/agenda");
    assert_eq!(agenda.map(|c| c.values.len()), Some(2), "{conflicts:?}");
}

#[test]
fn conflicts_list_every_value_and_resolve_everywhere() {
    let mut a = meeting();
    let mut b = fork(&a);
    a.edit(
        &commit("a", 1),
        &[
            set("/title/fr", json!("Réunion A")),
            set("/date", json!("2025-10-30")),
        ],
    )
    .unwrap();
    b.edit(&commit("b", 1), &[set("/title/fr", json!("Réunion B"))])
        .unwrap();
    merge(&mut a, &mut b);
    let conflicts = a.conflicts();
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    assert_eq!(conflicts[0].path, "/title/fr");
    assert_eq!(sorted_values(&conflicts[0]), ["Réunion A", "Réunion B"]);
    let actors: Vec<_> = conflicts[0]
        .values
        .iter()
        .map(|v| v.actor.clone())
        .collect();
    assert!(actors.contains(&a.doc().get_actor().to_hex_string()));
    assert!(actors.contains(&b.doc().get_actor().to_hex_string()));
    // The shown value is listed first.
    let Record::Meeting(m) = a.record().unwrap() else {
        panic!()
    };
    assert_eq!(conflicts[0].values[0].value.as_str(), m.title.fr.as_deref());

    a.resolve(&commit("Resolve", 2), "/title/fr", json!("Réunion B"))
        .unwrap();
    merge(&mut a, &mut b);
    assert!(b.conflicts().is_empty());
    let Record::Meeting(m) = b.record().unwrap() else {
        panic!()
    };
    assert_eq!(m.title.fr.as_deref(), Some("Réunion B"));
}

/// A delegate clearing a field while another changes it disagrees with
/// them: a clear is a value (a null), so both are listed, where a delete
/// would have left the other's value standing alone, unshown. A null reads
/// as no value, and keeping it settles the field everywhere.
#[test]
fn a_field_cleared_while_another_changes_it_is_a_disagreement() {
    let mut a = meeting();
    a.edit(
        &commit("a", 1),
        &[
            set("/time", json!("10:00")),
            set("/title/en", json!("Council")),
        ],
    )
    .unwrap();
    let mut b = fork(&a);
    a.edit(
        &commit("a", 2),
        &[set("/time", json!(null)), set("/title/en", json!(""))],
    )
    .unwrap();
    // Cleared, it reads as never set, with nothing wrong in the record.
    let Record::Meeting(m) = a.record().unwrap() else {
        panic!()
    };
    assert_eq!((m.time, m.title.en), (None, None));
    b.edit(
        &commit("b", 2),
        &[
            set("/time", json!("11:30")),
            set("/title/en", json!("Council meeting")),
        ],
    )
    .unwrap();
    merge(&mut a, &mut b);
    let mut said: Vec<(String, Vec<Json>)> = a
        .conflicts()
        .iter()
        .map(|c| {
            let mut values: Vec<Json> = c.values.iter().map(|v| v.value.clone()).collect();
            values.sort_by_key(|v| v.to_string());
            (c.path.clone(), values)
        })
        .collect();
    said.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(
        said,
        [
            ("/time".to_owned(), vec![json!("11:30"), Json::Null]),
            (
                "/title/en".to_owned(),
                vec![json!("Council meeting"), Json::Null]
            ),
        ]
    );
    // Whichever value every copy shows reads without a problem.
    assert!(a.record().is_ok(), "{:?}", a.record().err());
    // Keeping the clear settles it everywhere, and so does keeping the
    // value every copy shows, whichever it is.
    a.resolve(&commit("Resolve", 3), "/time", json!(null))
        .unwrap();
    let shown = a.conflicts()[0].values[0].value.clone();
    a.resolve(&commit("Resolve", 4), "/title/en", shown.clone())
        .unwrap();
    merge(&mut a, &mut b);
    assert!(b.conflicts().is_empty(), "{:?}", b.conflicts());
    let Record::Meeting(m) = b.record().unwrap() else {
        panic!()
    };
    assert_eq!(m.title.en.map(Json::String).unwrap_or(Json::Null), shown);
    let Record::Meeting(m) = b.record().unwrap() else {
        panic!()
    };
    assert_eq!(m.time, None);
}

#[test]
fn history_names_writer_time_message_and_fields() {
    let mut doc = meeting();
    doc.edit(
        &commit("Adopt the minutes", 500),
        &[set("/adopted", json!(true))],
    )
    .unwrap();
    doc.edit(
        &commit("Rename agenda item", 600),
        &[set("/agenda/a2/title", json!("Accords signés"))],
    )
    .unwrap();
    let log = doc.history();
    assert_eq!(log.len(), 3);
    assert_eq!(log[1].message.as_deref(), Some("Adopt the minutes"));
    assert_eq!(log[1].time, 500);
    assert_eq!(log[1].fields, ["/adopted"]);
    assert_eq!(log[2].fields, ["/agenda/a2/title"]);
    assert_eq!(log[2].actor, doc.doc().get_actor().to_hex_string());

    let Record::Meeting(then) = doc.at_time(550).unwrap().record().unwrap() else {
        panic!()
    };
    assert!(then.adopted);
    assert_eq!(then.agenda[1].title, "Accords");
    let Record::Meeting(first) = doc.at_time(100).unwrap().record().unwrap() else {
        panic!()
    };
    assert!(!first.adopted);
}

/// A phone whose clock was behind stamps its edit with a date before
/// the changes it builds on: the record as of that date is not the record
/// with all of them.
#[test]
fn a_change_stamped_before_what_it_builds_on_counts_as_made_after_it() {
    let mut doc = meeting();
    doc.edit(&commit("Adopt", 600), &[set("/adopted", json!(true))])
        .unwrap();
    let mut phone = RecordDoc::from_automerge(doc.doc().fork());
    phone
        .edit(&commit("Time", 50), &[set("/time", json!("10:00"))])
        .unwrap();
    let Record::Meeting(then) = phone.at_time(300).unwrap().record().unwrap() else {
        panic!()
    };
    assert!(
        !then.adopted,
        "the adoption at 600 is not in the record at 300"
    );
    assert_ne!(then.time.as_deref(), Some("10:00"));
    // From the adoption on, both are.
    let Record::Meeting(later) = phone.at_time(600).unwrap().record().unwrap() else {
        panic!()
    };
    assert!(later.adopted);
    assert_eq!(later.time.as_deref(), Some("10:00"));
}

/// The fields a change touched are found once: a log read again (a screen
/// redrawn at each key someone types) takes them from what it kept, and
/// finds them only for the changes new since.
#[test]
fn a_log_read_again_finds_only_the_new_changes_fields() {
    use twinsync_shared::record::{TouchedFields, document_history_known};

    let mut doc = meeting();
    let mut known = TouchedFields::default();
    let first = document_history_known(doc.doc(), &mut known);
    assert_eq!(first, doc.history());
    doc.edit(
        &commit("Adopt the minutes", 500),
        &[set("/adopted", json!(true))],
    )
    .unwrap();
    // What was kept stands for the first changes: a field no change here
    // touched, put in their place, is what the log reads back.
    let kept = known.len();
    assert_eq!(kept, first.len());
    let oldest = first[0].hash.parse().unwrap();
    known.insert(oldest, vec!["/kept".to_owned()]);
    let again = document_history_known(doc.doc(), &mut known);
    assert_eq!(again.len(), first.len() + 1);
    assert_eq!(again[0].fields, ["/kept"]);
    assert_eq!(again.last().unwrap().fields, ["/adopted"]);
    assert_eq!(known.len(), kept + 1);
    assert_eq!(again[1..], doc.history()[1..]);
}

/// A log read afresh names what each change touched as a diff of it would,
/// however many keystrokes it holds: those that only type into one text
/// (found in one pass over the record) and every other change alike.
#[test]
fn a_log_of_keystrokes_names_the_fields_each_change_touched() {
    use twinsync_shared::record::changed_paths;

    let splice = |path: &str, index: usize, delete: usize, insert: &str| Edit::SpliceText {
        path: path.into(),
        index,
        delete,
        insert: insert.into(),
    };
    let mut a = meeting();
    a.edit(
        &commit("A decision", 200),
        &[Edit::InsertItem {
            path: "/decisions".into(),
            after: Some("$end".into()),
            item: json!({"id": "d1", "text": "Jumeler"}),
        }],
    )
    .unwrap();
    let mut b = fork(&a);
    // Two phones type at once: one in the minutes, key by key, with a
    // backspace, the other in the decision's words, and a status.
    for (i, key) in "Ordre du jour، النقطة".chars().enumerate() {
        a.edit(
            &commit("key", 300),
            &[splice("/minutes", i, 0, &key.to_string())],
        )
        .unwrap();
    }
    a.edit(&commit("backspace", 301), &[splice("/minutes", 3, 1, "")])
        .unwrap();
    for (i, key) in " les bibliothèques".chars().enumerate() {
        b.edit(
            &commit("key", 300),
            &[splice("/decisions/d1/text", 7 + i, 0, &key.to_string())],
        )
        .unwrap();
    }
    // Meanwhile the first phone removes the decision.
    a.edit(
        &commit("remove", 301),
        &[Edit::RemoveItem {
            path: "/decisions/d1".into(),
        }],
    )
    .unwrap();
    b.edit(&commit("adopted", 302), &[set("/adopted", json!(true))])
        .unwrap();
    b.edit(&commit("title", 303), &[set("/title/fr", json!("Conseil"))])
        .unwrap();
    merge(&mut a, &mut b);
    a.edit(
        &commit("after the merge", 400),
        &[splice("/minutes", 0, 0, "- ")],
    )
    .unwrap();
    // The other phone, having seen the removal, types in the decision
    // again: the change keeps it against the removal, which a diff names.
    b.edit(
        &commit("kept", 402),
        &[splice("/decisions/d1/text", 0, 0, "« ")],
    )
    .unwrap();
    merge(&mut a, &mut b);

    let log = a.history();
    assert!(log.len() > 40, "{}", log.len());
    for entry in &log {
        let hash = entry.hash.parse().unwrap();
        let deps: Vec<automerge::ChangeHash> =
            entry.deps.iter().map(|d| d.parse().unwrap()).collect();
        assert_eq!(
            entry.fields,
            changed_paths(a.doc(), &deps, &[hash]),
            "{} ({:?})",
            entry.hash,
            entry.message
        );
    }
    let fields: std::collections::BTreeSet<&str> = log
        .iter()
        .flat_map(|e| e.fields.iter().map(String::as_str))
        .collect();
    assert!(
        log.last()
            .unwrap()
            .fields
            .contains(&"/decisions/d1/removed".to_owned()),
        "{:?}",
        log.last()
    );
    for field in ["/minutes", "/decisions/d1/text", "/adopted", "/title/fr"] {
        assert!(fields.contains(field), "{fields:?}");
    }
}

/// A delegate's changes to the club are judged op by op: a listing is a
/// new map at a key of the index over nothing its writer had seen. What
/// loses the merge, which no read of the record shows, is judged too.
#[test]
fn only_listings_tells_a_listing_from_every_other_write_to_the_club() {
    use automerge::transaction::Transactable;
    use automerge::{AutoCommit, ObjType, ROOT, ReadDoc};
    use twinsync_shared::record::{Unlisted, only_listings};

    let mut club = AutoCommit::new();
    let index = club.put_object(ROOT, "index", ObjType::Map).unwrap();
    club.commit();
    let unlisted = club.get_heads();
    let listed = club.put_object(&index, "x", ObjType::Map).unwrap();
    club.put(&listed, "kind", "report").unwrap();
    club.commit();
    let before = club.get_heads();
    let mut judge = |write: &dyn Fn(&mut AutoCommit, &automerge::ObjId)| {
        let mut phone = club.fork();
        write(&mut phone, &index);
        phone.commit();
        only_listings(phone.document(), &before)
    };
    // A listing, with what it writes inside the map it made.
    let ok = judge(&|p, index| {
        let y = p.put_object(index, "y", ObjType::Map).unwrap();
        p.put(&y, "kind", "meeting").unwrap();
        let title = p.put_object(&y, "title", ObjType::Map).unwrap();
        p.put(&title, "fr", "Réunion").unwrap();
    });
    assert_eq!(ok, Ok(()));
    // Outside the index; inside another's entry; over it; deleting it.
    let outside = judge(&|p, _| p.put(ROOT, "name", "x").unwrap());
    assert_eq!(outside, Err(Unlisted::Beyond));
    let inside = judge(&|p, index| {
        let x = p.get(index, "x").unwrap().unwrap().1;
        p.put(&x, "archived", true).unwrap();
    });
    assert_eq!(inside, Err(Unlisted::Changed("x".into())));
    let over = judge(&|p, index| {
        let x = p.put_object(index, "x", ObjType::Map).unwrap();
        p.put(&x, "kind", "report").unwrap();
    });
    assert_eq!(over, Err(Unlisted::Changed("x".into())));
    let gone = judge(&|p, index| p.delete(index, "x").unwrap());
    assert_eq!(gone, Err(Unlisted::Removed("x".into())));
    // Listed beside the entry by a phone that never saw it (two phones
    // holding one record list it): of its kind, taken; archived or of
    // another kind, refused, whether or not it wins the merge.
    let mut beside = |kind: &str, archived: bool| {
        let mut writer = club.fork_at(&unlisted).unwrap();
        let x = writer.put_object(&index, "x", ObjType::Map).unwrap();
        writer.put(&x, "kind", kind).unwrap();
        if archived {
            writer.put(&x, "archived", true).unwrap();
        }
        writer.commit();
        let mut doc = club.fork();
        doc.merge(&mut writer).unwrap();
        assert_eq!(doc.get_all(&index, "x").unwrap().len(), 2);
        only_listings(doc.document(), &before)
    };
    assert_eq!(beside("report", false), Ok(()));
    assert_eq!(beside("report", true), Err(Unlisted::Changed("x".into())));
    assert_eq!(beside("meeting", false), Err(Unlisted::Changed("x".into())));
}

#[test]
fn garbage_bytes_are_not_a_document() {
    for bytes in [&b""[..], b"\x85\x6f\x4a\x83", b"hello world", &[0xff; 64]] {
        match RecordDoc::load(bytes) {
            Err(LoadError::Automerge(_)) | Err(LoadError::Invalid(_)) => {}
            other => panic!("{bytes:?} loaded as {other:?}"),
        }
    }
}

/// Puts `member` into the meeting's attendees as a raw Automerge change
/// would, past the edit API's check.
fn raw_attendee(doc: &mut RecordDoc, member: &str) {
    use automerge::ReadDoc;
    use automerge::transaction::Transactable;
    let raw = doc.doc_mut();
    let mut tx = raw.transaction();
    let (_, attendees) = tx.get(automerge::ROOT, "attendees").unwrap().unwrap();
    tx.put(&attendees, member, true).unwrap();
    tx.commit();
}

/// What the edit API refuses in a set of record links, a raw change may
/// not add either: the server compares the sets' members before and after
/// a sync message. Members an older app wrote as text stay, and a write
/// beside them passes, even in a record that does not read as valid.
#[test]
fn a_member_added_to_a_set_of_record_links_past_the_edit_api_is_named() {
    let mut doc = meeting();
    let hassan = twinsync_shared::DocumentId::random().url().to_string();
    let versioned = twinsync_shared::AutomergeUrl {
        document_id: hassan
            .parse::<twinsync_shared::AutomergeUrl>()
            .unwrap()
            .document_id,
        heads: Some(doc.heads()),
    }
    .to_string();
    // Text, and a link to one version of a record, each added alone.
    for (member, says) in [
        ("Hassan", "not a record link"),
        (versioned.as_str(), "bare URL"),
    ] {
        let mut doc = fork(&doc);
        let before = LinkMembers::of(doc.doc());
        raw_attendee(&mut doc, member);
        assert!(doc.read().is_ok(), "read as written: {:?}", doc.read());
        let problem = before.first_added_non_link(doc.doc()).expect("named");
        assert_eq!(problem.path, format!("/attendees/{member}"));
        assert_eq!(problem.code, Problem::NotALink);
        assert!(problem.reason.contains(says), "{}", problem.reason);
        // A record new to the server: every member is added.
        let new = LinkMembers::of(&new_document());
        assert!(new.first_added_non_link(doc.doc()).is_some());
    }
    // A bare link is a link.
    let before = LinkMembers::of(doc.doc());
    raw_attendee(&mut doc, &hassan);
    assert_eq!(before.first_added_non_link(doc.doc()), None);
    // Text already there is not added by a write beside it...
    raw_attendee(&mut doc, "Hassan");
    let before = LinkMembers::of(doc.doc());
    doc.edit(&commit("Date", 1), &[set("/date", json!("2025-11-02"))])
        .unwrap();
    assert_eq!(before.first_added_non_link(doc.doc()), None);
    // Removed, then added again: added.
    let mut again = fork(&doc);
    let removed = {
        use automerge::ReadDoc;
        use automerge::transaction::Transactable;
        let mut tx = again.doc_mut().transaction();
        let (_, attendees) = tx.get(automerge::ROOT, "attendees").unwrap().unwrap();
        tx.delete(&attendees, "Hassan").unwrap();
        tx.commit();
        LinkMembers::of(again.doc())
    };
    raw_attendee(&mut again, "Hassan");
    let problem = removed.first_added_non_link(again.doc()).expect("named");
    assert_eq!(problem.path, "/attendees/Hassan");
    // A record that does not read as valid: a write beside its text
    // members passes, and it lets no text in either.
    raw_put(&mut doc, "date", "someday");
    assert!(doc.read().is_err(), "made invalid");
    let before = LinkMembers::of(doc.doc());
    raw_put(&mut doc, "date", "later");
    assert_eq!(before.first_added_non_link(doc.doc()), None);
    raw_attendee(&mut doc, "Fatima");
    let problem = before.first_added_non_link(doc.doc()).expect("named");
    assert_eq!(problem.path, "/attendees/Fatima");
    // Nor one whose kind does not read: a write that mends it adds none of
    // the text members already there.
    raw_put(&mut doc, "kind", "gathering");
    let before = LinkMembers::of(doc.doc());
    raw_put(&mut doc, "kind", "meeting");
    assert_eq!(before.first_added_non_link(doc.doc()), None);
    // Nor does a change of kind (a coordinator's) count a set kept under
    // the same name as added; a member added with it is named.
    let mut report = RecordDoc::create(
        Kind::Report,
        &json!({"title": {"fr": "Visite"}, "report_type": "field", "date": "2026-11-20", "text": ""}),
        &commit("Report", 1),
    )
    .unwrap();
    {
        use automerge::transaction::Transactable;
        let mut tx = report.doc_mut().transaction();
        let links = tx
            .put_object(automerge::ROOT, "attendees", automerge::ObjType::Map)
            .unwrap();
        tx.put(&links, "Hassan", true).unwrap();
        tx.commit();
    }
    let before = LinkMembers::of(report.doc());
    raw_put(&mut report, "kind", "meeting");
    assert_eq!(before.first_added_non_link(report.doc()), None);
    raw_attendee(&mut report, "Fatima");
    assert_eq!(
        before.first_added_non_link(report.doc()).map(|p| p.path),
        Some("/attendees/Fatima".to_owned())
    );
}

/// Writes `value` at the record's `key` as a raw change would.
fn raw_put(doc: &mut RecordDoc, key: &str, value: &str) {
    use automerge::transaction::Transactable;
    let mut tx = doc.doc_mut().transaction();
    tx.put(automerge::ROOT, key, value).unwrap();
    tx.commit();
}

/// An agreement's parties, a meeting's attendees and a report's links are
/// records: a member that is no record link is refused, one written before
/// members were checked still reads and can be removed, a link added in
/// another form is kept bare, and a role is any string.
#[test]
fn members_of_a_set_of_records_are_record_links() {
    let mut doc = meeting();
    let hassan = twinsync_shared::DocumentId::random().url().to_string();
    for edit in [
        Edit::AddMember {
            path: "/attendees".into(),
            member: "Hassan".into(),
        },
        set("/attendees", json!([hassan, "automerge:"])),
    ] {
        let before = doc.heads();
        let err = doc.edit(&commit("Bad", 1), &[edit]).unwrap_err();
        assert!(
            matches!(&err, EditError::Invalid { path, .. } if path == "/attendees"),
            "{err}"
        );
        assert!(err.to_string().contains("not a record link"), "{err}");
        assert_eq!(doc.heads(), before);
    }
    doc.edit(
        &commit("Good", 1),
        &[Edit::AddMember {
            path: "/attendees".into(),
            member: hassan.clone(),
        }],
    )
    .unwrap();
    assert_eq!(doc.read().unwrap()["attendees"], json!([hassan]));
    // A link to one version of a record names the record.
    let version = twinsync_shared::AutomergeUrl {
        document_id: hassan
            .parse::<twinsync_shared::AutomergeUrl>()
            .unwrap()
            .document_id,
        heads: Some(doc.heads()),
    };
    doc.edit(
        &commit("Again", 1),
        &[Edit::AddMember {
            path: "/attendees".into(),
            member: version.to_string(),
        }],
    )
    .unwrap();
    assert_eq!(doc.read().unwrap()["attendees"], json!([hassan]));

    // Written by an app from before the check: read as written (the
    // record stays valid, and writable), and removable.
    raw_attendee(&mut doc, "Hassan");
    let mut read = doc.read().unwrap()["attendees"].clone();
    read.as_array_mut().unwrap().sort_by_key(|m| m.to_string());
    let mut expected = json!([hassan, "Hassan"]);
    expected
        .as_array_mut()
        .unwrap()
        .sort_by_key(|m| m.to_string());
    assert_eq!(read, expected);
    doc.edit(&commit("Date", 1), &[set("/date", json!("2025-11-02"))])
        .unwrap();
    doc.edit(
        &commit("Tidy", 1),
        &[Edit::RemoveMember {
            path: "/attendees".into(),
            member: "Hassan".into(),
        }],
    )
    .unwrap();
    assert_eq!(doc.read().unwrap()["attendees"], json!([hassan]));

    let mut person = RecordDoc::create(
        Kind::Person,
        &json!({"name": {"fr": "Hassan"}, "roles": ["délégué", "مندوب"]}),
        &commit("New person", 1),
    )
    .unwrap();
    person
        .edit(
            &commit("Role", 1),
            &[Edit::AddMember {
                path: "/roles".into(),
                member: "treasurer".into(),
            }],
        )
        .unwrap();
}

/// What loading `doc` finds wrong with it; fails the test if it loads.
fn problems(doc: &automerge::Automerge) -> Vec<ValidationError> {
    match RecordDoc::load(&doc.save()) {
        Err(LoadError::Invalid(errors)) => errors,
        other => panic!("loaded as {other:?}"),
    }
}

/// Each problem as its path and the code the app translates.
fn paths_and_codes(errors: &[ValidationError]) -> Vec<(&str, &str)> {
    errors
        .iter()
        .map(|e| (e.path.as_str(), e.code.code()))
        .collect()
}

#[test]
fn a_document_of_the_wrong_shape_gives_every_error_with_its_path() {
    use automerge::transaction::Transactable;
    let mut doc = new_document();
    let mut tx = doc.transaction();
    tx.put(automerge::ROOT, "schema", 1u64).unwrap();
    tx.put(automerge::ROOT, "kind", "agreement").unwrap();
    tx.put(automerge::ROOT, "status", "maybe").unwrap();
    tx.put(automerge::ROOT, "signed_on", "yesterday").unwrap();
    let list = tx
        .put_object(automerge::ROOT, "commitments", automerge::ObjType::List)
        .unwrap();
    tx.insert(&list, 0, 42).unwrap();
    for (index, party) in [None, Some("automerge:not-a-link")].into_iter().enumerate() {
        let item = tx
            .insert_object(&list, index + 1, automerge::ObjType::Map)
            .unwrap();
        tx.put(&item, "id", "c1").unwrap();
        tx.put(&item, "text", "Échange d’étudiants").unwrap();
        if let Some(party) = party {
            tx.put(&item, "party", party).unwrap();
        }
    }
    let domains = tx
        .put_object(automerge::ROOT, "domains", automerge::ObjType::Map)
        .unwrap();
    tx.put(&domains, "cooking", true).unwrap();
    tx.put(&domains, "education", 1).unwrap();
    let parties = tx
        .put_object(automerge::ROOT, "parties", automerge::ObjType::Map)
        .unwrap();
    // Read as written, whatever it holds: an older app's text included.
    tx.put(&parties, "Dakar", true).unwrap();
    let notes = tx
        .put_object(automerge::ROOT, "notes", automerge::ObjType::Map)
        .unwrap();
    tx.put(&notes, "x", "y").unwrap();
    tx.commit();
    let errors = problems(&doc);
    let found = paths_and_codes(&errors);
    for expected in [
        ("/title", "missing"),
        ("/status", "not-an-option"),
        ("/signed_on", "not-a-date"),
        ("/commitments/#0", "wrong-type"),
        ("/commitments/c1", "duplicate-id"),
        ("/commitments/c1/party", "not-a-link"),
        ("/domains/cooking", "not-an-option"),
        ("/domains/education", "wrong-type"),
        ("/notes", "wrong-type"),
    ] {
        assert!(found.contains(&expected), "{expected:?} in {found:?}");
    }
    assert_eq!(found.len(), 9, "{found:?}");
    // The code goes to the app with the path and the English reason.
    let shown = serde_json::to_value(&errors[0]).unwrap();
    assert_eq!(shown["code"], errors[0].code.code(), "{shown}");
    assert!(shown["reason"].is_string(), "{shown}");
}

#[test]
fn a_title_in_a_language_the_club_does_not_use_is_named_as_such() {
    use automerge::transaction::Transactable;
    let mut doc = new_document();
    let mut tx = doc.transaction();
    tx.put(automerge::ROOT, "schema", 1u64).unwrap();
    tx.put(automerge::ROOT, "kind", "city").unwrap();
    let name = tx
        .put_object(automerge::ROOT, "name", automerge::ObjType::Map)
        .unwrap();
    tx.put(&name, "ar", "السمارة").unwrap();
    tx.put(&name, "de", "Smara").unwrap();
    tx.put(automerge::ROOT, "country", "Maroc").unwrap();
    tx.commit();
    assert_eq!(
        paths_and_codes(&problems(&doc)),
        [("/name/de", "not-a-language")]
    );
}

#[test]
fn a_document_that_is_no_record_says_so() {
    use automerge::transaction::Transactable;
    // The root key written (a value, or none: deleted), then the problem.
    let cases = [
        ("schema", None, "/schema", "not-a-record"),
        ("schema", Some("one"), "/schema", "not-a-record"),
        ("kind", Some("festival"), "/kind", "unknown-kind"),
    ];
    for (key, value, path, code) in cases {
        let mut doc = new_document();
        let mut tx = doc.transaction();
        tx.put(automerge::ROOT, "schema", 1u64).unwrap();
        match value {
            Some(value) => tx.put(automerge::ROOT, key, value).unwrap(),
            None => tx.delete(automerge::ROOT, key).unwrap(),
        }
        tx.commit();
        let errors = problems(&doc);
        let found = paths_and_codes(&errors);
        assert_eq!(found[0], (path, code), "{key} = {value:?}: {errors:?}");
    }
}

#[test]
fn a_record_from_a_newer_schema_is_refused_clearly() {
    use automerge::transaction::Transactable;
    // We write the schema as Int (JavaScript reads a Uint as a BigInt);
    // a newer build may have written either.
    for schema in [
        automerge::ScalarValue::Int(99),
        automerge::ScalarValue::Uint(99),
    ] {
        let mut doc = new_document();
        let mut tx = doc.transaction();
        tx.put(automerge::ROOT, "schema", schema).unwrap();
        tx.put(automerge::ROOT, "kind", "city").unwrap();
        tx.commit();
        let errors = problems(&doc);
        assert_eq!(errors[0].code.code(), "newer-schema", "{errors:?}");
        assert!(errors[0].reason.contains("newer"), "{errors:?}");
        assert!(errors[0].reason.contains("99"), "{errors:?}");
    }
}

#[test]
fn strings_written_as_text_by_the_javascript_library_are_read() {
    use automerge::transaction::Transactable;
    let mut doc = new_document();
    let mut tx = doc.transaction();
    tx.put(automerge::ROOT, "schema", 1u64).unwrap();
    let kind = tx
        .put_object(automerge::ROOT, "kind", automerge::ObjType::Text)
        .unwrap();
    tx.splice_text(&kind, 0, 0, "person").unwrap();
    let name = tx
        .put_object(automerge::ROOT, "name", automerge::ObjType::Map)
        .unwrap();
    let fr = tx
        .put_object(&name, "fr", automerge::ObjType::Text)
        .unwrap();
    tx.splice_text(&fr, 0, 0, "Fatima Saida").unwrap();
    tx.commit();
    let Record::Person(p) = RecordDoc::load(&doc.save()).unwrap().record().unwrap() else {
        panic!()
    };
    assert_eq!(p.name.fr.as_deref(), Some("Fatima Saida"));
}

mod any_bytes {
    use proptest::prelude::*;
    use twinsync_shared::record::{LoadError, RecordDoc};

    proptest! {
        /// Whatever the bytes, loading gives a record or precise errors, never a panic.
        #[test]
        fn random_bytes_load_or_fail_cleanly(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            match RecordDoc::load(&bytes) {
                Ok(doc) => prop_assert!(doc.record().is_ok()),
                Err(LoadError::Invalid(errors)) => prop_assert!(!errors.is_empty()),
                Err(LoadError::Automerge(_)) => {}
            }
        }

        /// A valid record with bytes flipped in its saved form.
        #[test]
        fn corrupted_saves_load_or_fail_cleanly(flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
            let mut bytes = super::meeting().save();
            for (at, value) in flips {
                let i = at.index(bytes.len());
                bytes[i] ^= value | 1;
            }
            match RecordDoc::load(&bytes) {
                Ok(doc) => prop_assert!(doc.record().is_ok()),
                Err(LoadError::Invalid(errors)) => prop_assert!(errors.iter().all(|e| e.path.starts_with('/'))),
                Err(LoadError::Automerge(_)) => {}
            }
        }
    }
}

#[test]
fn check_chunk_tells_damaged_bytes_from_changes_stored_apart() {
    use twinsync_shared::record::check_chunk;
    let mut doc = RecordDoc::create(
        Kind::Person,
        &json!({"name": {"fr": "Salma"}}),
        &Commit::new("new", 1),
    )
    .unwrap();
    let first = doc.heads();
    doc.edit(
        &Commit::new("edit", 2),
        &[Edit::Set {
            path: "/name/ar".into(),
            value: json!("سلمى"),
        }],
    )
    .unwrap();
    let later = doc.doc().save_after(&first);
    // A chunk whose changes depend on another chunk is whole.
    check_chunk(&later).unwrap();
    check_chunk(&doc.save()).unwrap();
    let mut truncated = later.clone();
    truncated.truncate(later.len() - 3);
    let mut flipped = later.clone();
    let n = flipped.len();
    flipped[n - 2] ^= 0xff;
    for bad in [b"not automerge".to_vec(), truncated, flipped] {
        assert!(check_chunk(&bad).is_err(), "{bad:?} passed");
    }
}

#[test]
fn nesting_is_measured_to_the_limit_whatever_the_keys() {
    use automerge::transaction::Transactable;
    use automerge::{ObjType, ROOT};
    use twinsync_shared::record::{MAX_NESTING, nested_beyond};
    let nest = |depth: usize, in_list: bool| {
        let mut doc = automerge::Automerge::new();
        let mut tx = doc.transaction();
        let mut obj = if in_list {
            let list = tx.put_object(ROOT, "items", ObjType::List).unwrap();
            tx.insert_object(&list, 0, ObjType::Map).unwrap()
        } else {
            tx.put_object(ROOT, "a", ObjType::Map).unwrap()
        };
        let start = if in_list { 2 } else { 1 };
        for _ in start..depth {
            obj = tx.put_object(&obj, "b", ObjType::Map).unwrap();
        }
        tx.commit();
        doc
    };
    assert_eq!(nested_beyond(&nest(MAX_NESTING, false), MAX_NESTING), None);
    let deep = nested_beyond(&nest(MAX_NESTING + 1, false), MAX_NESTING).unwrap();
    assert_eq!(deep.matches('/').count(), MAX_NESTING + 1, "{deep}");
    assert!(deep.starts_with("/a/b/"), "{deep}");
    assert_eq!(nested_beyond(&nest(MAX_NESTING, true), MAX_NESTING), None);
    let deep = nested_beyond(&nest(MAX_NESTING + 1, true), MAX_NESTING).unwrap();
    assert!(deep.starts_with("/items/#0/b"), "{deep}");
    // The demo records are well within it.
    for record in twinsync_shared::demo::build().unwrap() {
        assert_eq!(nested_beyond(record.doc.doc(), MAX_NESTING), None);
    }
}

#[test]
fn the_app_says_every_problem_in_each_of_its_three_languages() {
    use twinsync_shared::record::Problem;
    let strings = include_str!("../../app/i18n.js");
    let codes: std::collections::HashSet<&str> = Problem::ALL.iter().map(|p| p.code()).collect();
    assert_eq!(codes.len(), Problem::ALL.len(), "two problems share a code");
    for problem in Problem::ALL {
        // The code the app receives is the one it looks up.
        let sent = serde_json::to_value(problem).unwrap();
        assert_eq!(sent, problem.code());
        let key = format!("\"invalid.{}\":", problem.code());
        assert_eq!(strings.matches(&key).count(), 3, "{key} in app/i18n.js");
    }
    // And the app knows no problem the list lacks: a variant left out of
    // `Problem::ALL` but given strings is caught here.
    for said in strings.split("\"invalid.").skip(1) {
        let code = said.split('"').next().unwrap();
        assert!(
            codes.contains(code),
            "invalid.{code} is not in Problem::ALL"
        );
    }
}
