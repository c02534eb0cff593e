//! The shape of every record kind, as data: what the reader validates,
//! what the writer accepts, and what conflicts and history walk.

use std::fmt;
use std::str::FromStr;

/// The schema version this build writes. The server migrates older
/// documents when it loads them (see `record::migrate`).
pub const SCHEMA_VERSION: u64 = 2;

/// The seven kinds of record; one Automerge document per record.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Club,
    City,
    Agreement,
    Project,
    Meeting,
    Person,
    Report,
}

impl Kind {
    pub const ALL: [Kind; 7] = [
        Kind::Club,
        Kind::City,
        Kind::Agreement,
        Kind::Project,
        Kind::Meeting,
        Kind::Person,
        Kind::Report,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Club => "club",
            Kind::City => "city",
            Kind::Agreement => "agreement",
            Kind::Project => "project",
            Kind::Meeting => "meeting",
            Kind::Person => "person",
            Kind::Report => "report",
        }
    }

    /// The fields of this kind's document, besides `schema` and `kind`.
    pub fn fields(self) -> &'static [Field] {
        match self {
            Kind::Club => super::club::FIELDS,
            Kind::City => super::city::FIELDS,
            Kind::Agreement => super::agreement::FIELDS,
            Kind::Project => super::project::FIELDS,
            Kind::Meeting => super::meeting::FIELDS,
            Kind::Person => super::person::FIELDS,
            Kind::Report => super::report::FIELDS,
        }
    }

    /// The field that names a record of this kind in lists.
    pub fn title_field(self) -> &'static str {
        match self {
            Kind::Club | Kind::City | Kind::Person => "name",
            _ => "title",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Not one of the seven record kinds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown record kind `{0}`")]
pub struct UnknownKind(pub String);

impl FromStr for Kind {
    type Err = UnknownKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Kind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownKind(s.to_owned()))
    }
}

/// One field of a record or of an item in a keyed list.
#[derive(Debug)]
pub struct Field {
    pub name: &'static str,
    pub ty: FieldType,
    /// A required field must hold a value for the record to be valid.
    pub required: bool,
}

/// How a field is stored, and so how concurrent edits to it merge.
#[derive(Debug)]
pub enum FieldType {
    /// A short string; concurrent writes are a conflict, the last writer wins
    /// until someone resolves it.
    Str,
    /// A short string in Arabic, French and English: a map `{ar, fr, en}`
    /// whose languages are edited independently.
    Multilingual,
    /// Prose (minutes, reports, a decision's wording, a meeting's guests),
    /// merged character by character.
    Text,
    /// A calendar date, `YYYY-MM-DD`.
    Date,
    /// One of a fixed set of values.
    Enum(&'static [&'static str]),
    Bool,
    /// An integer within bounds.
    Int {
        min: i64,
        max: i64,
    },
    /// An `automerge:` URL of another record.
    Ref,
    /// A set of strings stored as a map `member -> true`, so two writers
    /// adding members concurrently both win.
    Set(Members),
    /// An ordered list of items with a stable `id`; edits address items by
    /// id, never by position alone.
    List(&'static [Field]),
    /// A map of items keyed by a stable key (the club index, by record id).
    Map(&'static [Field]),
}

/// What a set's members may be.
#[derive(Debug)]
pub enum Members {
    /// Any short string (a person's roles).
    Any,
    /// One of these values.
    OneOf(&'static [&'static str]),
    /// `automerge:` URLs of other records (an agreement's parties, a
    /// meeting's attendees, a report's links), each stored as the record's
    /// bare URL.
    Links,
}

impl FieldType {
    /// Whether the field holds an Automerge object created with its parent.
    pub fn is_container(&self) -> bool {
        matches!(
            self,
            FieldType::Multilingual
                | FieldType::Text
                | FieldType::Set(_)
                | FieldType::List(_)
                | FieldType::Map(_)
        )
    }
}

/// Shorthand for the field tables.
pub(crate) const fn field(name: &'static str, ty: FieldType) -> Field {
    Field {
        name,
        ty,
        required: false,
    }
}

pub(crate) const fn required(name: &'static str, ty: FieldType) -> Field {
    Field {
        name,
        ty,
        required: true,
    }
}

/// The three languages of the club.
pub const LANGUAGES: [&str; 3] = ["ar", "fr", "en"];

/// The twinning domains named in the agreements.
pub const DOMAINS: &[&str] = &[
    "economic",
    "cultural",
    "scientific",
    "environmental",
    "governance",
    "youth",
    "sustainable_development",
    "health",
    "education",
    "other",
];

/// The stable key every list item carries.
pub const ITEM_ID: Field = required("id", FieldType::Str);

/// Whether a list item was removed (schema 2). An item is never deleted
/// from its list: a device writing in it at the same moment would lose its
/// words unseen. Removing writes `true`, and every change inside the item
/// writes `false`, so a removal and a write made at once are two values of
/// this field: the item stays shown, and the disagreement listed, until
/// someone settles it. Readers leave removed items out and never show the
/// field itself.
pub const ITEM_REMOVED: Field = field("removed", FieldType::Bool);

/// The schema as data for user interfaces: `{kind: [field…]}`, where each
/// field is `{name, type, required, values?, fields?}`. Forms are built
/// from it, so a field added to a table appears in every form.
pub fn describe() -> serde_json::Value {
    let kinds = Kind::ALL
        .into_iter()
        .map(|k| (k.as_str().to_owned(), describe_fields(k.fields())))
        .collect();
    serde_json::Value::Object(kinds)
}

fn describe_fields(fields: &[Field]) -> serde_json::Value {
    use serde_json::json;
    fields
        .iter()
        .map(|f| {
            let mut out = json!({ "name": f.name, "required": f.required });
            let (ty, values, items) = match &f.ty {
                FieldType::Str => ("str", None, None),
                FieldType::Multilingual => ("multilingual", None, None),
                FieldType::Text => ("text", None, None),
                FieldType::Date => ("date", None, None),
                FieldType::Enum(values) => ("enum", Some(*values), None),
                FieldType::Bool => ("bool", None, None),
                FieldType::Int { min, max } => {
                    out["min"] = json!(min);
                    out["max"] = json!(max);
                    ("int", None, None)
                }
                FieldType::Ref => ("ref", None, None),
                FieldType::Set(Members::OneOf(values)) => ("set", Some(*values), None),
                FieldType::Set(Members::Links) => {
                    out["links"] = json!(true);
                    ("set", None, None)
                }
                FieldType::Set(Members::Any) => ("set", None, None),
                FieldType::List(items) => ("list", None, Some(*items)),
                FieldType::Map(items) => ("map", None, Some(*items)),
            };
            out["type"] = json!(ty);
            if let Some(values) = values {
                out["values"] = json!(values);
            }
            if let Some(items) = items {
                out["fields"] = describe_fields(items);
            }
            out
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `LinkMembers` looks for link sets among a record's own fields
    /// only: one inside list or map items would go unchecked.
    #[test]
    fn sets_of_record_links_are_fields_of_the_record_itself() {
        fn inside(fields: &[Field], within: bool) -> Vec<&'static str> {
            fields
                .iter()
                .flat_map(|f| match &f.ty {
                    FieldType::Set(Members::Links) if within => vec![f.name],
                    FieldType::List(items) | FieldType::Map(items) => inside(items, true),
                    _ => Vec::new(),
                })
                .collect()
        }
        for kind in Kind::ALL {
            assert_eq!(inside(kind.fields(), false), Vec::<&str>::new(), "{kind}");
        }
    }

    #[test]
    fn the_description_follows_the_tables() {
        let schema = describe();
        for kind in Kind::ALL {
            let fields = schema[kind.as_str()].as_array().expect("an array per kind");
            let names: Vec<&str> = fields.iter().filter_map(|f| f["name"].as_str()).collect();
            let expected: Vec<&str> = kind.fields().iter().map(|f| f.name).collect();
            assert_eq!(names, expected, "{kind}");
        }
        let project = schema["project"].as_array().expect("project");
        let milestones = project
            .iter()
            .find(|f| f["name"] == "milestones")
            .expect("milestones");
        assert_eq!(milestones["type"], "list");
        let status = milestones["fields"]
            .as_array()
            .expect("item fields")
            .iter()
            .find(|f| f["name"] == "status")
            .expect("status");
        assert_eq!(status["type"], "enum");
        assert_eq!(status["required"], true);
        assert!(
            status["values"]
                .as_array()
                .expect("values")
                .contains(&"done".into())
        );
        let agreement = schema["agreement"].as_array().expect("agreement");
        let domains = agreement
            .iter()
            .find(|f| f["name"] == "domains")
            .expect("domains");
        assert_eq!(domains["type"], "set");
        assert_eq!(
            domains["values"].as_array().map(Vec::len),
            Some(DOMAINS.len())
        );
    }
}
