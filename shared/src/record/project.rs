//! `Project`: work carried out under an agreement, with milestones.

use serde::{Deserialize, Serialize};

use super::Multilingual;
use super::schema::{DOMAINS, Field, FieldType::*, ITEM_ID, ITEM_REMOVED, field, required};

pub const STATUSES: &[&str] = &["planned", "active", "on_hold", "done", "cancelled"];
pub const MILESTONE_STATUSES: &[&str] = &["pending", "in_progress", "done", "cancelled"];

pub(crate) const MILESTONE: &[Field] = &[
    ITEM_ID,
    ITEM_REMOVED,
    required("title", Str),
    field("due", Date),
    required("status", Enum(MILESTONE_STATUSES)),
    field("owner", Ref),
    field("done_on", Date),
];

pub(crate) const PROGRESS_NOTE: &[Field] = &[
    ITEM_ID,
    ITEM_REMOVED,
    field("date", Date),
    field("author", Ref),
    required("text", Text),
];

pub(crate) const FIELDS: &[Field] = &[
    required("title", Multilingual),
    field("agreement", Ref),
    field("domain", Enum(DOMAINS)),
    field("owner_city", Ref),
    required("status", Enum(STATUSES)),
    field("starts_on", Date),
    field("ends_on", Date),
    field("budget_note", Str),
    field("objectives", Text),
    field("milestones", List(MILESTONE)),
    field("progress_notes", List(PROGRESS_NOTE)),
];

/// A project and its milestones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Project {
    pub title: Multilingual,
    pub agreement: Option<String>,
    pub domain: Option<String>,
    pub owner_city: Option<String>,
    pub status: String,
    pub starts_on: Option<String>,
    pub ends_on: Option<String>,
    pub budget_note: Option<String>,
    pub objectives: String,
    pub milestones: Vec<Milestone>,
    pub progress_notes: Vec<ProgressNote>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Milestone {
    pub id: String,
    pub title: String,
    pub due: Option<String>,
    pub status: String,
    pub owner: Option<String>,
    pub done_on: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ProgressNote {
    pub id: String,
    pub date: Option<String>,
    pub author: Option<String>,
    pub text: String,
}
