//! `Person`: someone the club deals with.

use serde::{Deserialize, Serialize};

use super::schema::{Field, FieldType::*, Members, field, required};
use super::{Contact, Multilingual};

pub(crate) const FIELDS: &[Field] = &[
    required("name", Multilingual),
    field("title", Multilingual),
    field("roles", Set(Members::Any)),
    field("city", Ref),
    field("organisation", Str),
    field("contacts", List(super::city::CONTACT)),
    field("notes", Text),
];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Person {
    pub name: Multilingual,
    /// Their office, e.g. "president of the urban commune of Smara".
    pub title: Multilingual,
    pub roles: Vec<String>,
    pub city: Option<String>,
    pub organisation: Option<String>,
    pub contacts: Vec<Contact>,
    pub notes: String,
}
