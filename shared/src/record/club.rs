//! `Club`: the root record, with the council and an index of every record.

use serde::{Deserialize, Serialize};

use super::schema::{Field, FieldType::*, ITEM_ID, ITEM_REMOVED, field, required};
use super::{Kind, Multilingual};

pub(crate) const COUNCIL_MEMBER: &[Field] = &[
    ITEM_ID,
    ITEM_REMOVED,
    required("person", Ref),
    field("role", Str),
    field("city", Ref),
    field("since", Date),
];

pub(crate) const INDEX_ENTRY: &[Field] = &[
    required(
        "kind",
        Enum(&[
            "city",
            "agreement",
            "project",
            "meeting",
            "person",
            "report",
        ]),
    ),
    field("title", Multilingual),
    field("city", Ref),
    field("status", Str),
    field("archived", Bool),
];

pub(crate) const FIELDS: &[Field] = &[
    required("name", Multilingual),
    field("founded_on", Date),
    field("seat", Ref),
    field("purpose", Text),
    field("council", List(COUNCIL_MEMBER)),
    field("index", Map(INDEX_ENTRY)),
];

/// The club itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Club {
    pub name: Multilingual,
    pub founded_on: Option<String>,
    /// The city hosting the secretariat.
    pub seat: Option<String>,
    pub purpose: String,
    pub council: Vec<CouncilMember>,
    /// Every record of the club, keyed by document id.
    pub index: std::collections::BTreeMap<String, IndexEntry>,
}

/// A seat on the International Coordination Council.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct CouncilMember {
    pub id: String,
    pub person: String,
    pub role: Option<String>,
    pub city: Option<String>,
    pub since: Option<String>,
}

/// One line of the club's index of records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexEntry {
    pub kind: Kind,
    #[serde(default)]
    pub title: Multilingual,
    #[serde(default)]
    pub city: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub archived: bool,
}
