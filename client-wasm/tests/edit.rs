//! Typing: each keystroke is one splice, whose offsets the browser counts
//! in UTF-16, and whose changed paths the app reads to know what it must
//! redraw. Those paths come from the splices themselves, not from
//! Automerge's diff; they must say what the diff would.

#![allow(clippy::unwrap_used)] // a test panics to fail

use automerge::ChangeHash;
use serde_json::{Value as Json, json};
use twinsync_client::replica::{Outcome, Replica};
use twinsync_shared::DocumentId;
use twinsync_shared::record::{Commit, Edit, Kind, changed_paths, load_document};
use twinsync_shared::{PeerId, StorageId};

const NOW: i64 = 1_790_000_000;

/// A device with nothing on it yet.
fn device(name: &str) -> Replica {
    Replica::new(PeerId::new(name), StorageId::new(format!("{name}-storage")))
}

fn heads(phone: &Replica, id: DocumentId) -> Vec<ChangeHash> {
    phone.read(id).unwrap()["heads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap().parse().unwrap())
        .collect()
}

/// Applies `edits` and returns the paths the edit reported beside the
/// paths Automerge's diff finds between the heads before and after.
fn reported_and_diffed(
    phone: &mut Replica,
    id: DocumentId,
    edits: Vec<Edit>,
) -> (Vec<String>, Vec<String>) {
    let before = heads(phone, id);
    let out: Outcome = phone.edit(id, edits, &Commit::new("typing", NOW)).unwrap();
    let after = heads(phone, id);
    let doc = load_document(&phone.snapshot(id).unwrap()).unwrap();
    let mut diffed = changed_paths(&doc, &before, &after);
    let mut reported = out.changed.into_iter().next().unwrap().paths;
    reported.sort();
    diffed.sort();
    (reported, diffed)
}

/// A device holding one meeting made of `fields`, and the meeting's id.
fn phone_with_meeting(fields: Json) -> (Replica, DocumentId) {
    let mut phone = device("phone");
    let (meeting, _) = phone
        .create(Kind::Meeting, &fields, &Commit::new("create", NOW))
        .unwrap();
    (phone, meeting)
}

fn splice(path: &str, index: usize, delete: usize, insert: &str) -> Edit {
    Edit::SpliceText {
        path: path.into(),
        index,
        delete,
        insert: insert.into(),
    }
}

#[test]
fn keystrokes_report_the_paths_automerges_diff_finds() {
    let mut phone = device("phone");
    let commit = Commit::new("create", NOW);
    let (project, _) = phone
        .create(
            Kind::Project,
            &json!({
                "title": {"fr": "Jumelage scolaire"},
                "status": "active",
                "objectives": "تبادل الطلاب — échange d'élèves",
                "progress_notes": [{"text": "Première visite 🇲🇦"}],
            }),
            &commit,
        )
        .unwrap();
    let record = phone.read(project).unwrap();
    let note = record["record"]["progress_notes"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let notes = format!("/progress_notes/{note}/text");

    // One Arabic letter typed after "تبادل " (UTF-16 offset 6).
    let (reported, diffed) =
        reported_and_diffed(&mut phone, project, vec![splice("/objectives", 6, 0, "ا")]);
    assert_eq!(reported, vec!["/objectives".to_owned()]);
    assert_eq!(reported, diffed);

    // Several splices in one change, over two texts: typed after the flag,
    // whose two code points take four UTF-16 units; the first word
    // replaced, then its first letter again.
    let (reported, diffed) = reported_and_diffed(
        &mut phone,
        project,
        vec![
            splice(&notes, 20, 0, " — زيارة أولى"),
            splice("/objectives", 0, 5, "Échange"),
            splice("/objectives", 0, 1, "É"),
        ],
    );
    let mut both = vec![notes.clone(), "/objectives".to_owned()];
    both.sort();
    assert_eq!(reported, both);
    assert_eq!(reported, diffed);

    let read = phone.read(project).unwrap();
    assert_eq!(
        read["record"]["progress_notes"][0]["text"],
        json!("Première visite 🇲🇦 — زيارة أولى")
    );
    assert_eq!(
        read["record"]["objectives"],
        json!("Échange االطلاب — échange d'élèves")
    );

    // Anything but splices is left to the diff, which names the language.
    let (reported, diffed) = reported_and_diffed(
        &mut phone,
        project,
        vec![
            splice("/objectives", 0, 0, "« "),
            Edit::Set {
                path: "/title/ar".into(),
                value: Json::from("توأمة مدرسية"),
            },
        ],
    );
    assert_eq!(reported, diffed);
    assert!(reported.contains(&"/title/ar".to_owned()), "{reported:?}");
}

#[test]
fn a_splice_outside_a_text_field_is_refused_by_name() {
    let (mut phone, meeting) = phone_with_meeting(
        json!({"title": {"ar": "مجلس"}, "date": "2026-12-03", "minutes": "بداية"}),
    );
    let commit = Commit::new("edit", NOW);
    for path in ["/title", "/date", "/nothing", "/minutes/x"] {
        let err = phone
            .edit(meeting, vec![splice(path, 0, 0, "x")], &commit)
            .unwrap_err()
            .to_string();
        assert!(err.contains(path), "{path}: {err}");
        assert!(err.contains("not a text field"), "{path}: {err}");
    }
    // Past the end of the text, counted in UTF-16 units.
    let err = phone
        .edit(meeting, vec![splice("/minutes", 6, 0, "x")], &commit)
        .unwrap_err()
        .to_string();
    assert!(err.contains("/minutes"), "{err}");
    phone
        .edit(meeting, vec![splice("/minutes", 5, 0, "!")], &commit)
        .unwrap();
    assert_eq!(
        phone.read(meeting).unwrap()["record"]["minutes"],
        json!("بداية!")
    );
}

#[test]
fn a_record_left_unreadable_here_takes_no_keystroke() {
    use automerge::ROOT;
    use automerge::transaction::Transactable;

    let (mut phone, meeting) = phone_with_meeting(
        json!({"title": {"fr": "Conseil"}, "date": "2026-12-03", "minutes": "ordre du jour"}),
    );
    let commit = Commit::new("edit", NOW);
    assert_eq!(
        phone.text(meeting, "/minutes").unwrap().as_deref(),
        Some("ordre du jour")
    );
    // Only paths as the app writes them: a path without its leading slash
    // would be a second name for the same text within one batch.
    assert_eq!(phone.text(meeting, "minutes").unwrap(), None);
    assert!(
        phone
            .edit(meeting, vec![splice("minutes", 0, 0, "x")], &commit)
            .is_err()
    );

    // Another device wrote a date this version cannot read: the record is
    // shown as invalid, and its minutes take no keystroke.
    let mut doc = load_document(&phone.snapshot(meeting).unwrap()).unwrap();
    let mut tx = doc.transaction();
    tx.put(ROOT, "date", "next week").unwrap();
    tx.commit();
    let mut other = device("other");
    other.restore(meeting, &[doc.save()], None).unwrap();
    let errors = &other.read(meeting).unwrap()["errors"];
    assert_eq!(errors[0]["path"], "/date", "{errors}");
    assert_eq!(errors[0]["code"], "not-a-date", "{errors}");
    assert_eq!(other.text(meeting, "/minutes").unwrap(), None);
    let err = other
        .edit(meeting, vec![splice("/minutes", 0, 0, "x")], &commit)
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot be read on this device"), "{err}");
    let view = other.read(meeting).unwrap();
    assert!(view["stored"]["minutes"] == json!("ordre du jour"));
    // The fields that do read, for what counts them: not the date.
    assert_eq!(view["partial"]["minutes"], "ordre du jour", "{view}");
    assert_eq!(view["partial"]["title"]["fr"], "Conseil", "{view}");
    assert!(view["partial"]["date"].is_null(), "{view}");
    assert!(view.get("record").is_none(), "{view}");
}

#[test]
fn a_record_as_it_stood_is_absent_before_its_first_change_and_says_why_when_it_was_invalid() {
    use automerge::ROOT;
    use automerge::transaction::{CommitOptions, Transactable};

    let mut phone = device("phone");
    let (meeting, _) = phone
        .create(
            Kind::Meeting,
            &json!({"title": {"fr": "Conseil"}, "date": "2026-12-03"}),
            &Commit::new("create", 1_000),
        )
        .unwrap();
    // Another program writes a date this version cannot read, later.
    let mut doc = load_document(&phone.snapshot(meeting).unwrap()).unwrap();
    let mut tx = doc.transaction();
    tx.put(ROOT, "date", "next week").unwrap();
    tx.commit_with(CommitOptions::default().with_time(2_000));
    let mut other = device("other");
    other.restore(meeting, &[doc.save()], None).unwrap();

    assert_eq!(
        other.read_at(meeting, 500).unwrap(),
        json!({}),
        "not yet written"
    );
    let then = other.read_at(meeting, 1_500).unwrap();
    assert_eq!(then["record"]["date"], "2026-12-03", "{then}");
    let later = other.read_at(meeting, 2_500).unwrap();
    assert_eq!(later["errors"][0]["path"], "/date", "{later}");
    assert_eq!(later["errors"][0]["code"], "not-a-date", "{later}");
    assert!(later.get("record").is_none(), "{later}");
}

/// The record keeps each insert in NFC, which may be shorter than what the
/// caller wrote; the later splices of the same batch count from the text
/// as the caller wrote it, and land where the caller meant.
#[test]
fn splices_after_an_insert_normalised_shorter_land_where_the_caller_meant() {
    let (mut phone, meeting) = phone_with_meeting(
        json!({"title": {"fr": "Conseil"}, "date": "2026-12-05", "minutes": "Compte rendu"}),
    );
    let commit = Commit::new("edit", NOW);
    let minutes = |phone: &Replica| phone.read(meeting).unwrap()["record"]["minutes"].clone();
    // "été " with its accents as separate marks (6 UTF-16 units, 4 once
    // composed), then "X" after it, then its "té" replaced with "T".
    phone
        .edit(
            meeting,
            vec![
                splice("/minutes", 0, 0, "e\u{301}te\u{301} "),
                splice("/minutes", 6, 0, "X"),
                splice("/minutes", 2, 3, "T"),
            ],
            &commit,
        )
        .unwrap();
    assert_eq!(minutes(&phone), json!("éT XCompte rendu"));
    // Arabic: alef and hamza above compose into one letter; a mark typed
    // after the word, in the same batch, lands after it.
    phone
        .edit(
            meeting,
            vec![
                splice("/minutes", 0, 0, "\u{0627}\u{0654}\u{0645}\u{0644} "),
                splice("/minutes", 4, 0, "\u{064B}"),
            ],
            &commit,
        )
        .unwrap();
    assert_eq!(
        minutes(&phone),
        json!("\u{0623}\u{0645}\u{0644}\u{064B} éT XCompte rendu")
    );
    // A whole text set in the batch counts the same way.
    phone
        .edit(
            meeting,
            vec![
                Edit::Set {
                    path: "/minutes".into(),
                    value: json!("Re\u{301}union — اجتماع"),
                },
                splice("/minutes", 8, 0, " du conseil"),
            ],
            &commit,
        )
        .unwrap();
    assert_eq!(minutes(&phone), json!("Réunion du conseil — اجتماع"));
    // A splice between a letter and the mark the record composed with it
    // has no place there: refused, and nothing of the batch applied.
    let err = phone
        .edit(
            meeting,
            vec![
                splice("/minutes", 0, 0, "Ne\u{301} "),
                splice("/minutes", 2, 1, ""),
            ],
            &commit,
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("composed (NFC)"), "{err}");
    assert_eq!(minutes(&phone), json!("Réunion du conseil — اجتماع"));
    // A text emptied in the batch counts from nothing.
    phone
        .edit(
            meeting,
            vec![
                Edit::Set {
                    path: "/minutes".into(),
                    value: Json::Null,
                },
                splice("/minutes", 0, 0, "Ordre du jour"),
            ],
            &commit,
        )
        .unwrap();
    assert_eq!(minutes(&phone), json!("Ordre du jour"));
}

/// A keystroke in an item whose removal another device made meanwhile
/// settles the disagreement (the item is kept): that is reported too, so
/// the screen stops offering to keep it removed.
#[test]
fn a_keystroke_that_settles_a_disputed_removal_reports_it() {
    let mut a = device("a");
    let commit = Commit::new("create", NOW);
    let (project, _) = a
        .create(
            Kind::Project,
            &json!({
                "title": {"fr": "Jumelage scolaire"},
                "status": "active",
                "progress_notes": [{"text": "Première visite"}],
            }),
            &commit,
        )
        .unwrap();
    let note = a.read(project).unwrap()["record"]["progress_notes"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut b = device("b");
    b.restore(project, &[a.snapshot(project).unwrap()], None)
        .unwrap();
    let item = format!("/progress_notes/{note}");
    let text = format!("{item}/text");
    a.edit(
        project,
        vec![Edit::RemoveItem { path: item.clone() }],
        &commit,
    )
    .unwrap();
    b.edit(project, vec![splice(&text, 0, 0, "« ")], &commit)
        .unwrap();
    let _ = b.merge_stored(project, &[a.snapshot(project).unwrap()]);

    let (reported, diffed) = reported_and_diffed(&mut b, project, vec![splice(&text, 0, 0, "»")]);
    assert_eq!(reported, diffed);
    assert!(
        reported.contains(&format!("{item}/removed")),
        "{reported:?}"
    );
}
