//! `City`: a member commune and the state of its twinning with Smara.

use serde::{Deserialize, Serialize};

use super::schema::{Field, FieldType::*, ITEM_ID, ITEM_REMOVED, field, required};
use super::{Contact, Multilingual};

pub const TWINNING_STATUSES: &[&str] = &[
    "prospect",
    "approved",
    "signed",
    "active",
    "suspended",
    "ended",
];

pub(crate) const CONTACT: &[Field] = &[
    ITEM_ID,
    ITEM_REMOVED,
    required("kind", Enum(&["phone", "email", "address", "web", "other"])),
    required("value", Str),
    field("label", Str),
];

pub(crate) const FIELDS: &[Field] = &[
    required("name", Multilingual),
    required("country", Str),
    field("country_code", Str),
    field("region", Str),
    field("representative", Ref),
    field("representative_title", Multilingual),
    field("twinning_status", Enum(TWINNING_STATUSES)),
    field("contacts", List(CONTACT)),
    field("notes", Text),
];

/// A member commune.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct City {
    pub name: Multilingual,
    pub country: String,
    /// ISO 3166-1 alpha-2.
    pub country_code: Option<String>,
    pub region: Option<String>,
    /// The mayor or representative, a `Person` record.
    pub representative: Option<String>,
    pub representative_title: Multilingual,
    pub twinning_status: Option<String>,
    pub contacts: Vec<Contact>,
    pub notes: String,
}
