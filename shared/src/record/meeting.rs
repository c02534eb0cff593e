//! `Meeting`: a meeting with its agenda, minutes and decisions.

use serde::{Deserialize, Serialize};

use super::Multilingual;
use super::schema::{Field, FieldType::*, ITEM_ID, ITEM_REMOVED, Members, field, required};

pub(crate) const AGENDA_ITEM: &[Field] = &[
    ITEM_ID,
    ITEM_REMOVED,
    required("title", Str),
    field("presenter", Ref),
];

pub(crate) const DECISION: &[Field] = &[
    ITEM_ID,
    ITEM_REMOVED,
    required("text", Text),
    field("outcome", Enum(&["adopted", "rejected", "deferred"])),
];

pub(crate) const FIELDS: &[Field] = &[
    required("title", Multilingual),
    required("date", Date),
    field("time", Str),
    field("place", Multilingual),
    field("city", Ref),
    field("chair", Ref),
    field("attendees", Set(Members::Links)),
    field("guests", Text),
    field("agenda", List(AGENDA_ITEM)),
    field("minutes", Text),
    field("decisions", List(DECISION)),
    field("adopted", Bool),
];

/// A meeting of the club or of a commune.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Meeting {
    pub title: Multilingual,
    pub date: String,
    /// Local time, `HH:MM`, or a part of the day.
    pub time: Option<String>,
    pub place: Multilingual,
    pub city: Option<String>,
    pub chair: Option<String>,
    /// `Person` records present.
    pub attendees: Vec<String>,
    /// Those present without a `Person` record, as written by the secretary.
    pub guests: Option<String>,
    pub agenda: Vec<AgendaItem>,
    pub minutes: String,
    pub decisions: Vec<Decision>,
    /// Adopted minutes are read-only except to coordinators.
    pub adopted: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct AgendaItem {
    pub id: String,
    pub title: String,
    pub presenter: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Decision {
    pub id: String,
    pub text: String,
    pub outcome: Option<String>,
}
