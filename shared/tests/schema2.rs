//! Schema 2: a meeting's guests and the wording of decisions and of an
//! agreement's commitments are text merged character by character, as the
//! minutes are. Records stored under schema 1 held them as plain strings:
//! the server migrates them, and a phone that edits one before the
//! migration reaches it turns it into text itself.

#![allow(clippy::unwrap_used)] // a test panics to fail

mod phones;

use phones::{commit, fork, merge};

use automerge::transaction::Transactable;
use automerge::{Automerge, ObjId, ObjType, ROOT, ReadDoc, ScalarValue, Value};
use serde_json::json;
use twinsync_shared::record::{
    Edit, Kind, RecordDoc, SCHEMA_VERSION, document_text, migrate, new_document,
};

fn splice(path: &str, index: usize, insert: &str) -> Edit {
    Edit::SpliceText {
        path: path.into(),
        index,
        delete: 0,
        insert: insert.into(),
    }
}

/// A meeting as schema 1 stored it: guests and a decision's text as plain
/// strings, written the way the build before this one wrote them.
fn schema_1_meeting() -> Automerge {
    let mut doc = new_document();
    doc.transact::<_, _, automerge::AutomergeError>(|tx| {
        tx.put(ROOT, "schema", 1i64)?;
        tx.put(ROOT, "kind", "meeting")?;
        let title = tx.put_object(ROOT, "title", ObjType::Map)?;
        tx.put(&title, "fr", "Conseil de coordination")?;
        tx.put(ROOT, "date", "2025-10-30")?;
        tx.put(ROOT, "guests", "Le maire de Dakar, رئيس جماعة السمارة")?;
        let minutes = tx.put_object(ROOT, "minutes", ObjType::Text)?;
        tx.splice_text(&minutes, 0, 0, "بداية")?;
        let decisions = tx.put_object(ROOT, "decisions", ObjType::List)?;
        let d1 = tx.insert_object(&decisions, 0, ObjType::Map)?;
        tx.put(&d1, "id", "d1")?;
        tx.put(&d1, "text", "Jumeler les bibliothèques")?;
        tx.put(&d1, "outcome", "adopted")?;
        Ok(())
    })
    .unwrap();
    doc
}

fn value_at(doc: &Automerge, obj: &ObjId, key: &str) -> Value<'static> {
    let (value, _) = doc.get(obj, key).unwrap().expect("a value");
    value.to_owned()
}

fn decision(doc: &Automerge) -> ObjId {
    let (_, decisions) = doc.get(ROOT, "decisions").unwrap().unwrap();
    let (_, d1) = doc.get(&decisions, 0).unwrap().unwrap();
    d1
}

#[test]
fn two_delegates_editing_one_decision_at_once_keep_both_words() {
    let mut a = RecordDoc::create(
        Kind::Meeting,
        &json!({
            "title": {"fr": "Conseil de coordination"},
            "date": "2025-10-30",
            "guests": "Le maire de Dakar",
            "decisions": [{"id": "d1", "text": "Jumeler les bibliothèques", "outcome": "adopted"}],
        }),
        &commit("New meeting", 100),
    )
    .unwrap();
    let mut b = fork(&a);
    // Offline, one delegate prefixes the decision in Arabic, the other
    // completes it in French; both also add a guest.
    a.edit(
        &commit("Smara", 1),
        &[
            splice("/decisions/d1/text", 0, "قرار: "),
            splice("/guests", 17, ", رئيس جماعة السمارة"),
        ],
    )
    .unwrap();
    b.edit(
        &commit("Pune", 2),
        &[
            splice("/decisions/d1/text", 25, " de Smara et de Pune"),
            splice("/guests", 0, "La maire de Pune, "),
        ],
    )
    .unwrap();
    merge(&mut a, &mut b);
    for doc in [&a, &b] {
        let record = doc.read().unwrap();
        assert_eq!(
            record["decisions"][0]["text"],
            "قرار: Jumeler les bibliothèques de Smara et de Pune"
        );
        assert_eq!(
            record["guests"],
            "La maire de Pune, Le maire de Dakar, رئيس جماعة السمارة"
        );
        assert!(doc.conflicts().is_empty(), "{:?}", doc.conflicts());
    }
}

#[test]
fn two_delegates_editing_one_commitment_at_once_keep_both_words() {
    let mut a = RecordDoc::create(
        Kind::Agreement,
        &json!({
            "title": {"fr": "Jumelage Smara–Pune"},
            "status": "signed",
            "commitments": [{"id": "c1", "text": "Échange d'étudiants"}],
        }),
        &commit("New agreement", 100),
    )
    .unwrap();
    let mut b = fork(&a);
    a.edit(
        &commit("a", 1),
        &[splice("/commitments/c1/text", 19, " en 2026")],
    )
    .unwrap();
    b.edit(
        &commit("b", 2),
        &[splice("/commitments/c1/text", 0, "تبادل — ")],
    )
    .unwrap();
    merge(&mut a, &mut b);
    assert_eq!(
        a.read().unwrap()["commitments"][0]["text"],
        "تبادل — Échange d'étudiants en 2026"
    );
    assert_eq!(a.read().unwrap(), b.read().unwrap());
}

#[test]
fn migration_turns_plain_strings_into_text_with_the_same_characters() {
    let mut doc = schema_1_meeting();
    let before = RecordDoc::from_automerge(doc.clone()).read().unwrap();
    assert!(migrate(&mut doc, &commit("migrate", 5)).unwrap());
    assert!(matches!(
        value_at(&doc, &ROOT, "guests"),
        Value::Object(ObjType::Text)
    ));
    assert!(matches!(
        value_at(&doc, &decision(&doc), "text"),
        Value::Object(ObjType::Text)
    ));
    assert!(matches!(
        value_at(&doc, &ROOT, "schema"),
        Value::Scalar(s) if s.as_ref() == &ScalarValue::Int(SCHEMA_VERSION as i64)
    ));
    let after = RecordDoc::from_automerge(doc.clone());
    assert_eq!(after.read().unwrap(), before, "nothing a reader sees moved");
    // Migrated once, left alone after.
    let heads = doc.get_heads();
    assert!(!migrate(&mut doc, &commit("again", 6)).unwrap());
    assert_eq!(doc.get_heads(), heads);
}

#[test]
fn migration_gives_an_absent_text_an_empty_one_so_no_phone_creates_it() {
    let mut doc = schema_1_meeting();
    doc.transact::<_, _, automerge::AutomergeError>(|tx| tx.delete(ROOT, "guests"))
        .unwrap();
    migrate(&mut doc, &commit("migrate", 5)).unwrap();
    let mut a = RecordDoc::from_automerge(doc);
    let mut b = fork(&a);
    a.edit(&commit("a", 1), &[splice("/guests", 0, "Orel")])
        .unwrap();
    b.edit(&commit("b", 2), &[splice("/guests", 0, "Smara ")])
        .unwrap();
    merge(&mut a, &mut b);
    let guests = a.read().unwrap()["guests"].as_str().unwrap().to_owned();
    // Both words, in an order Automerge picks the same on every replica.
    assert!(guests == "OrelSmara " || guests == "Smara Orel", "{guests}");
    assert_eq!(a.read().unwrap(), b.read().unwrap());
}

#[test]
fn a_phone_splicing_an_unmigrated_plain_string_turns_it_into_text() {
    let mut doc = RecordDoc::from_automerge(schema_1_meeting());
    let text = document_text(doc.doc(), "/decisions/d1/text").unwrap();
    assert_eq!(text, "Jumeler les bibliothèques");
    // Code-point offsets, as the client converts the browser's: after "Jumeler".
    doc.edit(
        &commit("offline", 7),
        &[splice("/decisions/d1/text", 7, " à jamais")],
    )
    .unwrap();
    let d1 = decision(doc.doc());
    assert!(matches!(
        value_at(doc.doc(), &d1, "text"),
        Value::Object(ObjType::Text)
    ));
    assert_eq!(
        doc.read().unwrap()["decisions"][0]["text"],
        "Jumeler à jamais les bibliothèques"
    );
    // A plain guests string read for a splice, and an Arabic one spliced.
    assert_eq!(
        document_text(doc.doc(), "/guests").unwrap(),
        "Le maire de Dakar, رئيس جماعة السمارة"
    );
    doc.edit(&commit("offline", 8), &[splice("/guests", 24, "ال")])
        .unwrap();
    assert_eq!(
        doc.read().unwrap()["guests"],
        "Le maire de Dakar, رئيس الجماعة السمارة"
    );
}

#[test]
fn a_plain_string_with_concurrent_values_is_left_for_a_coordinator() {
    let mut a = RecordDoc::from_automerge(schema_1_meeting());
    let mut b = fork(&a);
    for (doc, guests) in [(&mut a, "Le maire de Dakar"), (&mut b, "La maire de Pune")] {
        doc.doc_mut()
            .transact::<_, _, automerge::AutomergeError>(|tx| tx.put(ROOT, "guests", guests))
            .unwrap();
    }
    merge(&mut a, &mut b);
    let mut doc = a.into_automerge();
    migrate(&mut doc, &commit("migrate", 5)).unwrap();
    let mut doc = RecordDoc::from_automerge(doc);
    let conflicts = doc.conflicts();
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    assert_eq!(conflicts[0].path, "/guests");
    // Typing into the value shown would settle it unseen: refused, with why.
    let err = doc
        .edit(&commit("typing", 6), &[splice("/guests", 0, "x")])
        .unwrap_err();
    assert!(err.to_string().contains("settle"), "{err}");
    // Settling it writes a text object, which merges from then on.
    doc.resolve(&commit("settled", 7), "/guests", json!("La maire de Pune"))
        .unwrap();
    assert!(doc.conflicts().is_empty());
    assert!(matches!(
        value_at(doc.doc(), &ROOT, "guests"),
        Value::Object(ObjType::Text)
    ));
    assert_eq!(doc.read().unwrap()["guests"], "La maire de Pune");
}

/// Two phones under schema 1 that wrote the same guests at once do not
/// disagree: nothing is listed to settle, so the field must take keys.
#[test]
fn a_plain_string_two_phones_wrote_alike_becomes_text_and_takes_keys() {
    let mut a = RecordDoc::from_automerge(schema_1_meeting());
    let mut b = fork(&a);
    let mut c = fork(&a);
    for doc in [&mut a, &mut b] {
        doc.doc_mut()
            .transact::<_, _, automerge::AutomergeError>(|tx| {
                tx.put(ROOT, "guests", "Le maire de Dakar, عمدة داكار")
            })
            .unwrap();
    }
    merge(&mut a, &mut b);
    assert_eq!(a.doc().get_all(ROOT, "guests").unwrap().len(), 2);
    assert!(a.conflicts().is_empty(), "{:?}", a.conflicts());
    c.doc_mut().apply_changes(a.doc().get_changes(&[])).unwrap();

    // A phone types in it before the migration reaches it ...
    a.edit(&commit("typing", 6), &[splice("/guests", 0, "M. ")])
        .unwrap();
    assert_eq!(
        a.read().unwrap()["guests"],
        "M. Le maire de Dakar, عمدة داكار"
    );
    // ... and the server's migration makes it text too.
    let mut migrated = c.into_automerge();
    migrate(&mut migrated, &commit("migrate", 5)).unwrap();
    assert!(matches!(
        value_at(&migrated, &ROOT, "guests"),
        Value::Object(ObjType::Text)
    ));
}

/// A phone's conversion to text concurrent with an older app writing the
/// same words as a plain string, which wins the merge: the same words,
/// no disagreement, and the field takes keys.
#[test]
fn a_plain_string_beside_a_text_of_the_same_words_takes_keys() {
    let mut a = RecordDoc::from_automerge(schema_1_meeting());
    let mut b = fork(&a);
    let guests = "Le maire de Dakar, عمدة داكار";
    b.doc_mut()
        .transact::<_, _, automerge::AutomergeError>(|tx| {
            let text = tx.put_object(ROOT, "guests", ObjType::Text)?;
            tx.splice_text(&text, 0, 0, guests)
        })
        .unwrap();
    // More ops first, so that the plain string's op wins the merge.
    a.doc_mut()
        .transact::<_, _, automerge::AutomergeError>(|tx| {
            for i in 0..50i64 {
                tx.put(ROOT, "date", format!("2025-10-{:02}", 1 + i % 28))?;
            }
            tx.put(ROOT, "date", "2025-10-30")?;
            tx.put(ROOT, "guests", guests)
        })
        .unwrap();
    merge(&mut a, &mut b);
    assert_eq!(a.doc().get_all(ROOT, "guests").unwrap().len(), 2);
    assert!(matches!(
        value_at(a.doc(), &ROOT, "guests"),
        Value::Scalar(_)
    ));
    assert!(a.conflicts().is_empty(), "{:?}", a.conflicts());
    a.edit(&commit("typing", 6), &[splice("/guests", 0, "M. ")])
        .unwrap();
    assert_eq!(a.read().unwrap()["guests"], format!("M. {guests}"));
}

fn meeting_with_a_decision() -> RecordDoc {
    RecordDoc::create(
        Kind::Meeting,
        &json!({
            "title": {"fr": "Conseil de coordination"},
            "date": "2025-10-30",
            "decisions": [
                {"id": "d1", "text": "Jumeler les bibliothèques", "outcome": "adopted"},
                {"id": "d2", "text": "Reporter le budget", "outcome": "deferred"},
            ],
        }),
        &commit("New meeting", 100),
    )
    .unwrap()
}

fn remove(path: &str) -> Edit {
    Edit::RemoveItem { path: path.into() }
}

fn decision_ids(doc: &RecordDoc) -> Vec<String> {
    doc.read().unwrap()["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn an_item_removed_while_another_phone_writes_in_it_stays_with_its_words_until_settled() {
    let mut a = meeting_with_a_decision();
    let mut b = fork(&a);
    a.edit(&commit("remove", 1), &[remove("/decisions/d1")])
        .unwrap();
    b.edit(
        &commit("reword", 2),
        &[splice("/decisions/d1/text", 25, " de Smara")],
    )
    .unwrap();
    merge(&mut a, &mut b);
    for doc in [&a, &b] {
        let record = doc.read().unwrap();
        assert_eq!(record["decisions"][0]["id"], "d1");
        assert_eq!(
            record["decisions"][0]["text"],
            "Jumeler les bibliothèques de Smara"
        );
        assert!(
            record["decisions"][0].get("removed").is_none(),
            "the field itself is never shown"
        );
        let conflicts = doc.conflicts();
        assert_eq!(conflicts.len(), 1, "{conflicts:?}");
        assert_eq!(conflicts[0].path, "/decisions/d1/removed");
        let mut values: Vec<_> = conflicts[0]
            .values
            .iter()
            .map(|v| v.value.clone())
            .collect();
        values.sort_by_key(|v| v.to_string());
        assert_eq!(values, [json!(false), json!(true)]);
    }
    // A coordinator settles it as removed while b, who saw the dispute,
    // writes on in it: the write keeps the item with a fresh mark, so the
    // two dispute it again rather than hide b's words.
    let mut coordinator = fork(&b);
    coordinator
        .resolve(&commit("settled", 4), "/decisions/d1/removed", json!(true))
        .unwrap();
    assert_eq!(decision_ids(&coordinator), ["d2"]);
    b.edit(
        &commit("more", 5),
        &[splice("/decisions/d1/text", 0, "قرار: ")],
    )
    .unwrap();
    assert!(b.conflicts().is_empty(), "writing in it kept it");
    merge(&mut coordinator, &mut b);
    assert_eq!(
        coordinator.read().unwrap()["decisions"][0]["text"],
        "قرار: Jumeler les bibliothèques de Smara"
    );
    assert_eq!(coordinator.conflicts().len(), 1);
    // Kept, words and all.
    let mut other = fork(&b);
    other
        .resolve(&commit("kept", 6), "/decisions/d1/removed", json!(false))
        .unwrap();
    assert_eq!(decision_ids(&other), ["d1", "d2"]);
    assert!(other.conflicts().is_empty());
    // Or removed, with nothing written meanwhile: gone on every phone.
    coordinator
        .resolve(&commit("settled", 7), "/decisions/d1/removed", json!(true))
        .unwrap();
    merge(&mut coordinator, &mut a);
    assert_eq!(decision_ids(&a), ["d2"]);
    assert!(a.conflicts().is_empty(), "{:?}", a.conflicts());
}

#[test]
fn a_removed_item_is_gone_everywhere_and_takes_no_more_writes() {
    let mut a = meeting_with_a_decision();
    let mut b = fork(&a);
    // b's words reached a before a removed the item: a saw them, no dispute.
    b.edit(
        &commit("reword", 1),
        &[splice("/decisions/d1/text", 0, "Vu: ")],
    )
    .unwrap();
    merge(&mut a, &mut b);
    a.edit(&commit("remove", 2), &[remove("/decisions/d1")])
        .unwrap();
    merge(&mut a, &mut b);
    for doc in [&a, &b] {
        assert_eq!(decision_ids(doc), ["d2"]);
        assert!(doc.conflicts().is_empty(), "{:?}", doc.conflicts());
    }
    let err = b
        .edit(&commit("late", 3), &[splice("/decisions/d1/text", 0, "x")])
        .unwrap_err();
    assert!(err.to_string().contains("removed"), "{err}");
    // Its id stays taken, so a new item cannot be mistaken for it.
    let err = b
        .edit(
            &commit("again", 4),
            &[Edit::InsertItem {
                path: "/decisions".into(),
                after: None,
                item: json!({"id": "d1", "text": "x"}),
            }],
        )
        .unwrap_err();
    assert!(err.to_string().contains("exists already"), "{err}");
    // The log says what was removed; writing in an item is not a change of
    // its `removed` field.
    let touched: Vec<Vec<String>> = a.history().into_iter().map(|h| h.fields).collect();
    assert!(
        touched.contains(&vec!["/decisions/d1/removed".to_owned()]),
        "{touched:?}"
    );
    assert!(
        touched.contains(&vec!["/decisions/d1/text".to_owned()]),
        "{touched:?}"
    );
}

#[test]
fn two_phones_removing_one_item_at_once_agree() {
    let mut a = meeting_with_a_decision();
    let mut b = fork(&a);
    a.edit(&commit("a", 1), &[remove("/decisions/d2")]).unwrap();
    b.edit(&commit("b", 2), &[remove("/decisions/d2")]).unwrap();
    merge(&mut a, &mut b);
    assert_eq!(decision_ids(&a), ["d1"]);
    assert!(a.conflicts().is_empty(), "{:?}", a.conflicts());
}

#[test]
fn migration_reads_a_kind_stored_as_text_and_walks_the_list_every_replica_shows() {
    // An agreement as another client might have written it under schema 1:
    // its kind a text object, its commitments put by two devices at once.
    let mut doc = new_document();
    doc.transact::<_, _, automerge::AutomergeError>(|tx| {
        tx.put(ROOT, "schema", 1i64)?;
        let kind = tx.put_object(ROOT, "kind", ObjType::Text)?;
        tx.splice_text(&kind, 0, 0, "agreement")?;
        let title = tx.put_object(ROOT, "title", ObjType::Map)?;
        tx.put(&title, "fr", "Jumelage Smara–Pune")?;
        tx.put(ROOT, "status", "signed")
    })
    .unwrap();
    let mut a = RecordDoc::from_automerge(doc);
    let mut b = fork(&a);
    for (replica, text) in [(&mut a, "Échange d'étudiants"), (&mut b, "تبادل الطلاب")]
    {
        replica
            .doc_mut()
            .transact::<_, _, automerge::AutomergeError>(|tx| {
                let list = tx.put_object(ROOT, "commitments", ObjType::List)?;
                let c = tx.insert_object(&list, 0, ObjType::Map)?;
                tx.put(&c, "id", "c1")?;
                tx.put(&c, "text", text)
            })
            .unwrap();
    }
    merge(&mut a, &mut b);
    let shown = a.read().unwrap()["commitments"][0]["text"].clone();
    let mut doc = a.into_automerge();
    assert!(migrate(&mut doc, &commit("migrate", 5)).unwrap());
    let (_, list) = doc.get(ROOT, "commitments").unwrap().unwrap();
    let (_, c1) = doc.get(&list, 0).unwrap().unwrap();
    assert!(matches!(
        value_at(&doc, &c1, "text"),
        Value::Object(ObjType::Text)
    ));
    let doc = RecordDoc::from_automerge(doc);
    assert_eq!(doc.read().unwrap()["commitments"][0]["text"], shown);
}

#[test]
fn clearing_a_text_empties_it() {
    let mut doc = RecordDoc::from_automerge(schema_1_meeting());
    doc.edit(
        &commit("clear", 1),
        &[Edit::Set {
            path: "/guests".into(),
            value: json!(null),
        }],
    )
    .unwrap();
    assert_eq!(doc.read().unwrap()["guests"], "");
}

#[test]
fn an_item_written_in_before_still_keeps_a_later_writes_words_from_a_concurrent_removal() {
    let mut a = meeting_with_a_decision();
    // Written in and synced: the item already says it is kept.
    a.edit(
        &commit("first", 1),
        &[splice("/decisions/d1/text", 0, "Vu: ")],
    )
    .unwrap();
    let mut b = fork(&a);
    a.edit(&commit("remove", 2), &[remove("/decisions/d1")])
        .unwrap();
    b.edit(
        &commit("second", 3),
        &[splice("/decisions/d1/text", 0, "Acté. ")],
    )
    .unwrap();
    merge(&mut a, &mut b);
    for doc in [&a, &b] {
        assert_eq!(
            doc.read().unwrap()["decisions"][0]["text"],
            "Acté. Vu: Jumeler les bibliothèques"
        );
        assert_eq!(doc.conflicts()[0].path, "/decisions/d1/removed");
    }
    // And again after a coordinator kept it.
    a.resolve(&commit("kept", 4), "/decisions/d1/removed", json!(false))
        .unwrap();
    merge(&mut a, &mut b);
    a.edit(&commit("remove again", 5), &[remove("/decisions/d1")])
        .unwrap();
    b.edit(
        &commit("third", 6),
        &[splice("/decisions/d1/text", 0, "3. ")],
    )
    .unwrap();
    merge(&mut a, &mut b);
    assert!(decision_ids(&a).contains(&"d1".to_owned()));
    assert_eq!(a.conflicts().len(), 1, "{:?}", a.conflicts());
}

#[test]
fn one_batch_that_writes_in_an_item_then_removes_it_removes_it() {
    let mut doc = meeting_with_a_decision();
    doc.edit(
        &commit("both", 1),
        &[
            splice("/decisions/d1/text", 0, "x"),
            remove("/decisions/d1"),
        ],
    )
    .unwrap();
    assert_eq!(decision_ids(&doc), ["d2"]);
    // The other way round, the write is refused: the item is removed.
    let err = doc
        .edit(
            &commit("both", 2),
            &[
                remove("/decisions/d2"),
                splice("/decisions/d2/text", 0, "x"),
            ],
        )
        .unwrap_err();
    assert!(err.to_string().contains("removed"), "{err}");
    assert_eq!(decision_ids(&doc), ["d2"], "nothing of a refused batch");
    // A new item cannot arrive already removed, or marked kept.
    let err = doc
        .edit(
            &commit("new", 3),
            &[Edit::InsertItem {
                path: "/decisions".into(),
                after: None,
                item: json!({"id": "d3", "text": "x", "removed": true}),
            }],
        )
        .unwrap_err();
    assert!(err.to_string().contains("removed"), "{err}");
}

#[test]
fn bringing_an_item_back_is_a_change_write_rules_see_and_keeping_one_is_not() {
    let mut doc = meeting_with_a_decision();
    let start = doc.heads();
    doc.edit(
        &commit("write", 1),
        &[splice("/decisions/d1/text", 0, "Vu: ")],
    )
    .unwrap();
    let written = doc.heads();
    assert_eq!(
        twinsync_shared::record::changed_paths(doc.doc(), &start, &written),
        ["/decisions/d1/text"]
    );
    doc.edit(&commit("remove", 2), &[remove("/decisions/d1")])
        .unwrap();
    let removed = doc.heads();
    doc.edit(
        &commit("back", 3),
        &[Edit::Set {
            path: "/decisions/d1/removed".into(),
            value: json!(false),
        }],
    )
    .unwrap();
    assert_eq!(
        twinsync_shared::record::changed_paths(doc.doc(), &removed, &doc.heads()),
        ["/decisions/d1/removed"]
    );
    assert_eq!(decision_ids(&doc), ["d1", "d2"]);

    // Two phones writing in one item at once: their marks are bookkeeping,
    // whichever wins the merge.
    let mut a = meeting_with_a_decision();
    a.edit(
        &commit("first", 1),
        &[splice("/decisions/d2/text", 0, "1 ")],
    )
    .unwrap();
    for round in 0..8 {
        let start = a.heads();
        let mut b = fork(&a);
        a.edit(&commit("a", 2), &[splice("/decisions/d2/text", 0, "a")])
            .unwrap();
        b.edit(&commit("b", 3), &[splice("/decisions/d2/text", 0, "b")])
            .unwrap();
        let (before_b, after_a) = (b.heads(), a.heads());
        merge(&mut a, &mut b);
        for (from, what) in [(&start, "both"), (&after_a, "b's"), (&before_b, "a's")] {
            assert_eq!(
                twinsync_shared::record::changed_paths(a.doc(), from, &a.heads()),
                ["/decisions/d2/text"],
                "round {round}, {what}"
            );
        }
    }
    // A removal and a write arriving together: the dispute they begin is a change.
    let start = a.heads();
    let mut b = fork(&a);
    a.edit(&commit("remove", 4), &[remove("/decisions/d2")])
        .unwrap();
    b.edit(&commit("write", 5), &[splice("/decisions/d2/text", 0, "w")])
        .unwrap();
    merge(&mut a, &mut b);
    let paths = twinsync_shared::record::changed_paths(a.doc(), &start, &a.heads());
    assert!(
        paths.contains(&"/decisions/d2/removed".to_owned()),
        "{paths:?}"
    );
}
