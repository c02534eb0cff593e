//! What a list of records shows of each: the same on the server's list and
//! in the browser.

use automerge::Automerge;
use serde::Serialize;

use super::read::{kind_of, read, read_leniently};
use super::schema::Kind;

/// A record's kind, title, city, status and date, and whether it is valid.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    pub kind: Option<String>,
    /// The record's title field (`name` for cities, people and the club),
    /// multilingual where the kind has it so.
    pub title: serde_json::Value,
    pub city: Option<String>,
    pub status: Option<String>,
    /// A meeting's or a report's date, `YYYY-MM-DD`: what tells apart
    /// the many meetings of one title, and orders them.
    pub date: Option<String>,
    pub valid: bool,
}

/// Summarises any document; an invalid one keeps its kind if it says one.
pub fn summarise(doc: &Automerge) -> Summary {
    summarise_read(doc, &read(doc))
}

/// As [`summarise`], from a read of `doc` the caller already holds. A
/// record that does not read whole (one field an older or another app
/// wrote) is summed up from the fields that do: it keeps its title, city
/// and status in lists, counts and links, marked not valid.
pub fn summarise_read(
    doc: &Automerge,
    read: &Result<serde_json::Value, Vec<super::ValidationError>>,
) -> Summary {
    match read {
        Ok(json) => from_fields(json),
        Err(_) => match read_leniently(doc) {
            Ok((partial, _)) => Summary {
                valid: false,
                ..from_fields(&partial)
            },
            Err(_) => Summary {
                kind: kind_of(doc).ok().map(|k| k.as_str().to_owned()),
                valid: false,
                ..Summary::default()
            },
        },
    }
}

fn from_fields(json: &serde_json::Value) -> Summary {
    let kind = json
        .get("kind")
        .and_then(|k| k.as_str())
        .and_then(|k| k.parse::<Kind>().ok());
    let title = kind
        .and_then(|k| json.get(k.title_field()))
        .cloned()
        .unwrap_or_default();
    let text = |key: &str| json.get(key).and_then(|v| v.as_str()).map(str::to_owned);
    Summary {
        kind: kind.map(|k| k.as_str().to_owned()),
        title,
        city: text("city").or_else(|| text("owner_city")),
        status: text("status").or_else(|| text("twinning_status")),
        date: text("date"),
        valid: true,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a test panics to fail

    use serde_json::json;

    use super::*;
    use crate::record::{Commit, RecordDoc};

    #[test]
    fn a_meeting_is_summed_up_with_its_date_and_a_city_without_one() {
        let commit = Commit::new("New", 1);
        let meeting = RecordDoc::create(
            Kind::Meeting,
            &json!({"title": {"fr": "Conseil", "ar": "المجلس"}, "date": "2026-10-18"}),
            &commit,
        )
        .unwrap();
        let summary = summarise(meeting.doc());
        assert_eq!(summary.kind.as_deref(), Some("meeting"));
        assert_eq!(summary.date.as_deref(), Some("2026-10-18"));
        assert_eq!(json!(summary)["date"], "2026-10-18");
        let city = RecordDoc::create(
            Kind::City,
            &json!({"name": {"fr": "Smara"}, "country": "Maroc"}),
            &commit,
        )
        .unwrap();
        assert_eq!(summarise(city.doc()).date, None);
    }

    #[test]
    fn a_record_with_one_field_that_does_not_read_keeps_its_title_city_and_status() {
        use automerge::transaction::Transactable;
        let smara = crate::DocumentId::random().url().to_string();
        let project = RecordDoc::create(
            Kind::Project,
            &json!({"title": {"fr": "Puits", "ar": "بئر"}, "status": "active", "owner_city": smara}),
            &Commit::new("New", 1),
        )
        .unwrap();
        let mut doc = project.doc().fork();
        let mut tx = doc.transaction();
        tx.put(automerge::ROOT, "budget_note", 42).unwrap();
        tx.commit();
        let summary = summarise(&doc);
        assert!(!summary.valid);
        assert_eq!(summary.kind.as_deref(), Some("project"));
        assert_eq!(summary.title["fr"], "Puits");
        assert_eq!(summary.status.as_deref(), Some("active"));
        assert_eq!(summary.city, Some(smara));
    }
}
