//! `Agreement`: a twinning or partnership agreement between communes.

use serde::{Deserialize, Serialize};

use super::Multilingual;
use super::schema::{
    DOMAINS, Field, FieldType::*, ITEM_ID, ITEM_REMOVED, Members, field, required,
};

pub const STATUSES: &[&str] = &[
    "draft",
    "approved",
    "signed",
    "in_force",
    "suspended",
    "ended",
];

pub(crate) const COMMITMENT: &[Field] = &[
    ITEM_ID,
    ITEM_REMOVED,
    required("text", Text),
    field("party", Ref),
    field("due", Date),
    field("status", Enum(&["open", "done", "dropped"])),
];

pub(crate) const FIELDS: &[Field] = &[
    required("title", Multilingual),
    field("parties", Set(Members::Links)),
    field("domains", Set(Members::OneOf(DOMAINS))),
    field("approved_on", Date),
    field("signed_on", Date),
    field("in_force_from", Date),
    field("ends_on", Date),
    required("status", Enum(STATUSES)),
    field("commitments", List(COMMITMENT)),
    field("notes", Text),
];

/// An agreement and where it stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Agreement {
    pub title: Multilingual,
    /// `City` records that are party to it.
    pub parties: Vec<String>,
    pub domains: Vec<String>,
    pub approved_on: Option<String>,
    pub signed_on: Option<String>,
    pub in_force_from: Option<String>,
    pub ends_on: Option<String>,
    pub status: String,
    pub commitments: Vec<Commitment>,
    pub notes: String,
}

/// Something a party undertook to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Commitment {
    pub id: String,
    pub text: String,
    pub party: Option<String>,
    pub due: Option<String>,
    pub status: Option<String>,
}
