//! What a quarantined batch would change, for the coordinator who judges
//! it: each field it touches, as it reads now and as it would read with
//! the batch, and for text the passages added and removed.
//!
//! The batch is applied to a copy of the record as stored; nothing is
//! kept. The refused changes are untrusted: bundles and changes Automerge
//! panics on are refused, and a batch nesting values deeper than the
//! server reads is not diffed (Automerge's diff costs the square of the
//! depth).

use std::time::Duration;

use automerge::{Automerge, ReadDoc};
use serde::Serialize;
use serde_json::Value as Json;
pub use twinsync_shared::record::{CONTEXT, FieldChange, Passage};
use twinsync_shared::record::{
    MAX_NESTING, check_chunk, field_changes, nested_beyond, read_document_leniently, refuse_panics,
    summarise_read,
};

/// The time each text diff of a batch may take; past it, the diff is
/// coarser (whole runs replaced).
const DIFF_BUDGET: Duration = Duration::from_secs(1);

/// What a batch would do to its record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Preview {
    /// The record's kind with the batch applied, so that a record the
    /// server never kept (a refused new record) is still named as one.
    pub kind: Option<String>,
    /// Its title with the batch applied (a map of languages; a city's, a
    /// person's or the club's name), or `null`.
    pub title: Json,
    /// Each field the batch changes.
    pub changes: Vec<FieldChange>,
}

/// Why a quarantined batch does not apply to its record.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BatchError {
    #[error("the changes do not load: {0}")]
    Unreadable(String),
    #[error("the changes build on {0} changes the server does not have")]
    MissingDeps(usize),
    #[error("values nest deeper than {MAX_NESTING} at {0}, which the server does not read")]
    TooDeep(String),
}

/// Why a batch's changes cannot be shown.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PreviewError {
    #[error(transparent)]
    Batch(#[from] BatchError),
    #[error("the batch adds nothing to the record as it is now")]
    NothingNew,
    /// What it builds on waits for review in these other batches; the
    /// store knows this, not the preview (see `Quarantined::builds_on`).
    #[error(
        "the batch builds on changes still waiting for review in {}; it can be shown once they are accepted",
        batches(.0)
    )]
    BuildsOnPending(Vec<i64>),
    /// The record as stored does not load: nothing to show the batch
    /// against until an operator salvages or restores it.
    #[error("the record is damaged on the server ({0}); an operator can salvage it")]
    RecordDamaged(String),
}

/// Batch ids as a message says them: `batch #4`, `batches #4 and #7`.
pub fn batches(ids: &[i64]) -> String {
    let named: Vec<String> = ids.iter().map(|id| format!("#{id}")).collect();
    match named.split_last() {
        Some((last, [])) => format!("batch {last}"),
        Some((last, rest)) => format!("batches {} and {last}", rest.join(", ")),
        None => "no batch".into(),
    }
}

impl PreviewError {
    /// A stable word for why, which the app says in the coordinator's
    /// language (`notShown.<code>` in `app/i18n.js`).
    pub fn code(&self) -> &'static str {
        match self {
            PreviewError::Batch(BatchError::Unreadable(_)) => "unreadable",
            PreviewError::Batch(BatchError::MissingDeps(_)) => "missing-deps",
            PreviewError::Batch(BatchError::TooDeep(_)) => "too-deep",
            PreviewError::NothingNew => "nothing-new",
            PreviewError::BuildsOnPending(_) => "builds-on-pending",
            PreviewError::RecordDamaged(_) => "record-damaged",
        }
    }

    /// Every code, for the test that the app says each.
    pub const CODES: [&'static str; 6] = [
        "unreadable",
        "missing-deps",
        "too-deep",
        "nothing-new",
        "builds-on-pending",
        "record-damaged",
    ];
}

/// `current` with a quarantined batch applied, as a coordinator's accept
/// and the preview both take it: bundles refused, a change Automerge
/// panics on refused, every dependency present, values no deeper than
/// the server reads.
pub fn load_batch(current: &Automerge, changes: &[u8]) -> Result<Automerge, BatchError> {
    let unreadable = |e: automerge::AutomergeError| BatchError::Unreadable(e.to_string());
    // Damage found first: `load_incremental` would skip it, and an accept
    // would then take part of the batch and call the rest decided.
    let mut after = current.clone();
    refuse_panics(|| {
        check_chunk(changes)?;
        after.load_incremental(changes)
    })
    .map_err(unreadable)?;
    let missing = after.get_missing_deps(&[]).len();
    if missing > 0 {
        return Err(BatchError::MissingDeps(missing));
    }
    if let Some(path) = nested_beyond(&after, MAX_NESTING) {
        return Err(BatchError::TooDeep(path));
    }
    Ok(after)
}

/// The fields `changes` would change in `current`.
pub fn preview(current: &Automerge, changes: &[u8]) -> Result<Preview, PreviewError> {
    let after = load_batch(current, changes)?;
    if after.get_heads() == current.get_heads() {
        return Err(PreviewError::NothingNew);
    }
    let read = |doc: &Automerge| read_document_leniently(doc).map_or(Json::Null, |(json, _)| json);
    let (old, new) = (read(current), read(&after));
    let mut changes = field_changes(
        &after,
        &current.get_heads(),
        &after.get_heads(),
        &old,
        &new,
        DIFF_BUDGET,
    );
    // A record the server holds made another kind: the fields list hides
    // the kind as bookkeeping, and the coordinator whose accept would make
    // a meeting a person must see that first.
    let (was, is) = (stored_kind(current), stored_kind(&after));
    if let (Some(was), Some(is)) = (&was, &is)
        && was != is
    {
        changes.insert(
            0,
            FieldChange {
                path: "/kind".into(),
                before: Json::String(was.clone()),
                after: Json::String(is.clone()),
                text: None,
            },
        );
    }
    // Named as the records list names it: a city, a person or the club by
    // its name.
    let summary = summarise_read(&after, &Ok(new));
    Ok(Preview {
        kind: summary.kind,
        title: summary.title,
        changes,
    })
}

/// The kind a document says it is, as written, cut to `MAX_KIND_CHARS`.
fn stored_kind(doc: &Automerge) -> Option<String> {
    twinsync_shared::record::kind_as_written(doc).map(|k| k.chars().take(MAX_KIND_CHARS).collect())
}

/// The most of a kind the preview shows: the known ones are a word.
const MAX_KIND_CHARS: usize = 100;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a test panics to fail

    use serde_json::json;
    use twinsync_shared::record::{Commit, Edit, Kind, RecordDoc};

    use super::*;

    #[test]
    fn the_app_says_why_a_batch_cannot_be_shown_in_each_of_its_three_languages() {
        let strings = include_str!("../../app/i18n.js");
        let errors = [
            PreviewError::Batch(BatchError::Unreadable(String::new())),
            PreviewError::Batch(BatchError::MissingDeps(1)),
            PreviewError::Batch(BatchError::TooDeep(String::new())),
            PreviewError::NothingNew,
            PreviewError::BuildsOnPending(vec![4]),
            PreviewError::RecordDamaged(String::new()),
        ];
        let codes: Vec<&str> = errors.iter().map(PreviewError::code).collect();
        assert_eq!(codes, PreviewError::CODES);
        for code in codes {
            let key = format!("\"notShown.{code}\":");
            assert_eq!(strings.matches(&key).count(), 3, "{key} in app/i18n.js");
        }
    }

    fn meeting(minutes: &str) -> RecordDoc {
        let fields = json!({
            "title": {"ar": "اجتماع المجلس", "fr": "Réunion du conseil"},
            "date": "2026-11-23",
            "minutes": minutes,
            "adopted": false,
        });
        RecordDoc::create(Kind::Meeting, &fields, &Commit::new("new", 1)).unwrap()
    }

    /// The bytes of `edits` made on a fork of `doc`.
    fn batch(doc: &RecordDoc, edits: Vec<Edit>) -> Vec<u8> {
        let before = doc.heads();
        let mut forked = RecordDoc::from_automerge(doc.doc().fork());
        forked.edit(&Commit::new("offline", 2), &edits).unwrap();
        forked.doc().save_after(&before)
    }

    #[test]
    fn a_refused_new_record_is_named_by_its_kind_and_title() {
        // The server never kept it: the preview applies it to nothing.
        let doc = meeting("Ordre du jour");
        let shown = preview(&twinsync_shared::record::new_document(), &doc.doc().save()).unwrap();
        assert_eq!(shown.kind.as_deref(), Some("meeting"));
        assert_eq!(shown.title["ar"], "اجتماع المجلس");
        let kind_row = shown.changes.iter().find(|c| c.path == "/kind");
        assert_eq!(kind_row, None, "the kind is said once, not as a field");
        // A person goes by their name, not their title (an office).
        let person = RecordDoc::create(
            Kind::Person,
            &json!({"name": {"fr": "Awa Diop"}, "title": {"fr": "Maire adjointe"}}),
            &Commit::new("new", 1),
        )
        .unwrap();
        let shown = preview(
            &twinsync_shared::record::new_document(),
            &person.doc().save(),
        )
        .unwrap();
        assert_eq!(shown.kind.as_deref(), Some("person"));
        assert_eq!(shown.title["fr"], "Awa Diop");
        // A change to a record the server holds names its kind too.
        let changes = batch(
            &doc,
            vec![Edit::Set {
                path: "/adopted".into(),
                value: json!(true),
            }],
        );
        assert_eq!(
            preview(doc.doc(), &changes).unwrap().kind.as_deref(),
            Some("meeting")
        );
    }

    #[test]
    fn a_batch_that_makes_a_record_another_kind_says_so_before_its_fields() {
        use automerge::transaction::Transactable;
        let doc = meeting("Ordre du jour");
        let before = doc.heads();
        let mut forked = doc.doc().fork();
        let mut tx = forked.transaction();
        // As the official JavaScript client writes a string: as a text.
        let kind = tx
            .put_object(automerge::ROOT, "kind", automerge::ObjType::Text)
            .unwrap();
        tx.splice_text(&kind, 0, 0, "person").unwrap();
        tx.put(automerge::ROOT, "minutes", "Awa Diop").unwrap();
        tx.commit();
        let shown = preview(doc.doc(), &forked.save_after(&before)).unwrap();
        assert_eq!(shown.kind.as_deref(), Some("person"));
        let first = &shown.changes[0];
        assert_eq!(
            (first.path.as_str(), &first.before, &first.after),
            ("/kind", &json!("meeting"), &json!("person")),
            "{:?}",
            shown.changes
        );
        assert_eq!(
            shown.changes.iter().filter(|c| c.path == "/kind").count(),
            1
        );
        // A batch that keeps the kind has no such row.
        let changes = batch(
            &doc,
            vec![Edit::Set {
                path: "/adopted".into(),
                value: json!(true),
            }],
        );
        let shown = preview(doc.doc(), &changes).unwrap();
        assert!(
            shown.changes.iter().all(|c| c.path != "/kind"),
            "{:?}",
            shown.changes
        );
    }

    #[test]
    fn a_word_typed_into_long_minutes_shows_with_its_context_and_the_rest_cut() {
        let long = format!(
            "{}اعتمد المجلس البرنامج. {}",
            "أ ".repeat(200),
            "Fin de séance. ".repeat(20)
        );
        let doc = meeting(&long);
        let at = long.encode_utf16().count() - "Fin de séance. ".repeat(20).encode_utf16().count();
        let changes = batch(
            &doc,
            vec![
                Edit::SpliceText {
                    path: "/minutes".into(),
                    index: at,
                    delete: 0,
                    insert: "Vote unanime. ".into(),
                },
                Edit::Set {
                    path: "/adopted".into(),
                    value: json!(true),
                },
            ],
        );
        let shown = preview(doc.doc(), &changes).unwrap().changes;
        let minutes = shown.iter().find(|c| c.path == "/minutes").unwrap();
        let text = minutes.text.as_ref().unwrap();
        let kinds: Vec<&str> = text.iter().map(|p| p.kind).collect();
        assert_eq!(kinds, ["same", "added", "same"], "{text:?}");
        assert_eq!(text[1].text.trim(), "Vote unanime.");
        assert!(
            text[0].text.starts_with('…') && text[0].text.ends_with("البرنامج. "),
            "{:?}",
            text[0]
        );
        assert_eq!(text[0].text.chars().count(), CONTEXT + 1);
        assert!(text[2].text.ends_with('…'), "{:?}", text[2]);
        assert_eq!(minutes.before, json!(long));
        let adopted = shown.iter().find(|c| c.path == "/adopted").unwrap();
        assert_eq!(
            (&adopted.before, &adopted.after),
            (&json!(false), &json!(true))
        );
        assert_eq!(adopted.text, None);
    }

    #[test]
    fn a_batch_leaving_the_record_invalid_shows_what_still_reads() {
        use automerge::transaction::Transactable;
        let doc = meeting("");
        let mut fork = doc.doc().fork();
        let mut tx = fork.transaction();
        tx.delete(automerge::ROOT, "date").unwrap();
        tx.put(automerge::ROOT, "adopted", true).unwrap();
        tx.commit();
        let changes = fork.save_after(&doc.heads());
        let shown = preview(doc.doc(), &changes).unwrap().changes;
        let at = |path: &str| shown.iter().find(|c| c.path == path).unwrap();
        assert_eq!(
            (&at("/date").before, &at("/date").after),
            (&json!("2026-11-23"), &Json::Null)
        );
        assert_eq!(
            (&at("/adopted").before, &at("/adopted").after),
            (&json!(false), &json!(true))
        );
    }

    #[test]
    fn a_replaced_word_is_removed_then_added() {
        let doc = meeting("Le projet est suspendu.");
        let changes = batch(
            &doc,
            vec![Edit::Set {
                path: "/minutes".into(),
                value: json!("Le projet est relancé."),
            }],
        );
        let shown = preview(doc.doc(), &changes).unwrap().changes;
        let text = shown[0].text.as_ref().unwrap();
        let removed: String = text
            .iter()
            .filter(|p| p.kind == "removed")
            .map(|p| p.text.as_str())
            .collect();
        let added: String = text
            .iter()
            .filter(|p| p.kind == "added")
            .map(|p| p.text.as_str())
            .collect();
        assert_eq!(
            (removed.as_str(), added.as_str()),
            ("suspendu.", "relancé.")
        );
    }

    #[test]
    fn a_batch_missing_its_dependencies_or_adding_nothing_is_not_shown() {
        let doc = meeting("");
        let first = batch(
            &doc,
            vec![Edit::Set {
                path: "/adopted".into(),
                value: json!(true),
            }],
        );
        let mut forked = RecordDoc::from_automerge(doc.doc().clone());
        forked.doc_mut().load_incremental(&first).unwrap();
        let second = batch(
            &forked,
            vec![Edit::Set {
                path: "/date".into(),
                value: json!("2026-12-01"),
            }],
        );
        assert_eq!(
            preview(doc.doc(), &second),
            Err(PreviewError::Batch(BatchError::MissingDeps(1)))
        );
        let mut bundle = first.clone();
        bundle[8] = 3; // the chunk type of a bundle, which the server refuses
        assert!(matches!(
            preview(doc.doc(), &bundle),
            Err(PreviewError::Batch(BatchError::Unreadable(_)))
        ));
        assert_eq!(preview(forked.doc(), &first), Err(PreviewError::NothingNew));
        assert!(matches!(
            preview(doc.doc(), b"not automerge"),
            Err(PreviewError::Batch(BatchError::Unreadable(_)))
        ));
        let mut damaged = first.clone();
        let last = damaged.len() - 1;
        damaged[last] ^= 0xff;
        assert!(matches!(
            preview(doc.doc(), &damaged),
            Err(PreviewError::Batch(BatchError::Unreadable(_)))
        ));
        // Nor is a damaged batch accepted in part: the whole of it is
        // refused, and stays pending.
        let mut whole_then_damaged = second.clone();
        whole_then_damaged.extend_from_slice(&damaged);
        assert!(matches!(
            load_batch(forked.doc(), &whole_then_damaged),
            Err(BatchError::Unreadable(_))
        ));
    }

    #[test]
    fn a_member_added_to_a_set_shows_the_whole_set() {
        let doc = meeting("");
        let (a, b) = (
            "automerge:2akY1Hi4giHvoBBjVFVRkNhtBM2m",
            "automerge:3WeMzkLDTuRZHFqxReP4NhSamPJH",
        );
        let add = |member: &str| {
            vec![Edit::AddMember {
                path: "/attendees".into(),
                member: member.into(),
            }]
        };
        let mut base = RecordDoc::from_automerge(doc.doc().clone());
        base.doc_mut()
            .load_incremental(&batch(&doc, add(a)))
            .unwrap();
        let shown = preview(base.doc(), &batch(&base, add(b))).unwrap().changes;
        assert_eq!(shown.len(), 1, "{shown:?}");
        assert_eq!(shown[0].path, "/attendees");
        assert_eq!(shown[0].before, json!([a]));
        let mut after: Vec<String> = serde_json::from_value(shown[0].after.clone()).unwrap();
        after.sort();
        assert_eq!(after, [a, b]);
    }

    /// A meeting with one decision, `d1`.
    fn meeting_with_a_decision() -> RecordDoc {
        let mut doc = meeting("");
        doc.edit(
            &Commit::new("decision", 2),
            &[Edit::InsertItem {
                path: "/decisions".into(),
                after: None,
                item: json!({"id": "d1", "text": "Jumeler les bibliothèques"}),
            }],
        )
        .unwrap();
        doc
    }

    #[test]
    fn a_removed_item_is_shown_as_the_item_gone() {
        let doc = meeting_with_a_decision();
        let changes = batch(
            &doc,
            vec![Edit::RemoveItem {
                path: "/decisions/d1".into(),
            }],
        );
        let shown = preview(doc.doc(), &changes).unwrap().changes;
        assert_eq!(shown.len(), 1, "{shown:?}");
        assert_eq!(shown[0].path, "/decisions/d1");
        assert_eq!(shown[0].before["text"], "Jumeler les bibliothèques");
        assert_eq!(shown[0].after, Json::Null);
    }

    /// An item added is one change, the item itself: not each of its
    /// fields, its id among them, nor its whole list again.
    #[test]
    fn an_added_item_is_shown_as_the_item_come() {
        let doc = meeting_with_a_decision();
        let changes = batch(
            &doc,
            vec![Edit::InsertItem {
                path: "/decisions".into(),
                after: Some("d1".into()),
                item: json!({"id": "d2", "text": "تبادل الطلاب", "outcome": "adopted"}),
            }],
        );
        let shown = preview(doc.doc(), &changes).unwrap().changes;
        let paths: Vec<&str> = shown.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(paths, ["/decisions/d2"], "{shown:?}");
        assert_eq!(shown[0].before, Json::Null);
        assert_eq!(shown[0].after["text"], "تبادل الطلاب");
        // Added with a field of another item changed: both, each once.
        let changes = batch(
            &doc,
            vec![
                Edit::InsertItem {
                    path: "/decisions".into(),
                    after: None,
                    item: json!({"id": "d0", "text": "Ouvrir la séance"}),
                },
                Edit::Set {
                    path: "/decisions/d1/outcome".into(),
                    value: json!("adopted"),
                },
            ],
        );
        let shown = preview(doc.doc(), &changes).unwrap().changes;
        let mut paths: Vec<&str> = shown.iter().map(|c| c.path.as_str()).collect();
        paths.sort_unstable();
        assert_eq!(
            paths,
            ["/decisions/d0", "/decisions/d1/outcome"],
            "{shown:?}"
        );
    }

    #[test]
    fn a_value_that_loses_the_merge_shows_no_passages() {
        let doc = meeting("");
        // A one-line field holds one value: two written at once conflict.
        let set = |text: &str| {
            vec![Edit::Set {
                path: "/time".into(),
                value: json!(text),
            }]
        };
        // Written offline while another device wrote the time: the merge
        // shows one of the two values, the record's or the batch's, by
        // the devices' actor ids; either way, passages only for a change.
        let mut other = RecordDoc::from_automerge(doc.doc().fork());
        other
            .edit(&Commit::new("online", 3), &set("10:00"))
            .unwrap();
        let changes = batch(&doc, set("matin"));
        let shown = preview(other.doc(), &changes).unwrap().changes;
        assert_eq!(shown.len(), 1, "{shown:?}");
        for c in &shown {
            if c.before == c.after {
                assert_eq!(c.text, None, "{c:?}");
            } else {
                let text = c.text.as_ref().expect("passages");
                assert!(text.iter().any(|p| p.kind != "same"), "{c:?}");
            }
        }
    }
}
