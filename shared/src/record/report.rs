//! `Report`: a delegate's visit or field report.

use serde::{Deserialize, Serialize};

use super::Multilingual;
use super::schema::{Field, FieldType::*, Members, field, required};

pub(crate) const FIELDS: &[Field] = &[
    required("title", Multilingual),
    required(
        "report_type",
        Enum(&["visit", "field", "progress", "other"]),
    ),
    field("author", Ref),
    field("city", Ref),
    required("date", Date),
    field("text", Text),
    field("links", Set(Members::Links)),
];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Report {
    pub title: Multilingual,
    pub report_type: String,
    pub author: Option<String>,
    pub city: Option<String>,
    pub date: String,
    pub text: String,
    /// Records the report is about.
    pub links: Vec<String>,
}
