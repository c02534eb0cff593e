//! What a list of records shows of each: the same on the server's list and
//! in the browser.

use automerge::Automerge;
use serde::Serialize;

use super::read::{kind_of, read};
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

/// As [`summarise`], from a read of `doc` the caller already holds.
pub fn summarise_read(
    doc: &Automerge,
    read: &Result<serde_json::Value, Vec<super::ValidationError>>,
) -> Summary {
    match read {
        Ok(json) => {
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
        Err(_) => Summary {
            kind: kind_of(doc).ok().map(|k| k.as_str().to_owned()),
            valid: false,
            ..Summary::default()
        },
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
}
