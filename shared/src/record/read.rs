//! Reading a document as a record: every value checked against the schema,
//! every problem collected with its path. Never panics, whatever the bytes.

use std::collections::BTreeSet;

use automerge::{Automerge, ObjId, ObjType, Prop, ROOT, ReadDoc, ScalarValue, Value};
use serde_json::{Map, Value as Json};

use super::path::{Removal, removal};
use super::schema::{Field, FieldType, ITEM_REMOVED, Kind, LANGUAGES, Members, SCHEMA_VERSION};
use crate::AutomergeUrl;

/// One reason a document is not a valid record.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ValidationError {
    /// Where: `/title/fr`, `/milestones/<id>/due`.
    pub path: String,
    /// What is wrong, as a code the app says in the person's language.
    pub code: Problem,
    /// What is wrong, in English, with the value at fault.
    pub reason: String,
}

/// What is wrong with a value, whatever the field: the app pairs it with
/// the field's label (`app/i18n.js`, `invalid.<code>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Problem {
    /// No schema version or kind: not a twinsync record at all.
    NotARecord,
    /// Written by a newer twinsync than this one.
    NewerSchema,
    /// A kind this twinsync does not know.
    UnknownKind,
    /// A required field is absent.
    Missing,
    /// A value of the wrong type (a number where a string belongs, ...).
    WrongType,
    NotADate,
    /// Not one of the field's allowed values.
    NotAnOption,
    NotALink,
    /// Not a whole number within the field's bounds.
    OutOfRange,
    /// A key of a multilingual field that is not `ar`, `fr` or `en`.
    NotALanguage,
    /// Two items of a list share their id.
    DuplicateId,
}

impl Problem {
    /// Every problem, for the test that the app says each one.
    pub const ALL: [Problem; 11] = [
        Problem::NotARecord,
        Problem::NewerSchema,
        Problem::UnknownKind,
        Problem::Missing,
        Problem::WrongType,
        Problem::NotADate,
        Problem::NotAnOption,
        Problem::NotALink,
        Problem::OutOfRange,
        Problem::NotALanguage,
        Problem::DuplicateId,
    ];

    /// The code as the app and the API know it.
    pub fn code(self) -> &'static str {
        match self {
            Problem::NotARecord => "not-a-record",
            Problem::NewerSchema => "newer-schema",
            Problem::UnknownKind => "unknown-kind",
            Problem::Missing => "missing",
            Problem::WrongType => "wrong-type",
            Problem::NotADate => "not-a-date",
            Problem::NotAnOption => "not-an-option",
            Problem::NotALink => "not-a-link",
            Problem::OutOfRange => "out-of-range",
            Problem::NotALanguage => "not-a-language",
            Problem::DuplicateId => "duplicate-id",
        }
    }
}

/// Sent as its code: `code` is the one place the words are written.
impl serde::Serialize for Problem {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.code())
    }
}

impl std::fmt::Display for ValidationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.reason)
    }
}

pub(crate) fn summarise(errors: &[ValidationError]) -> String {
    let shown: Vec<String> = errors.iter().take(5).map(ToString::to_string).collect();
    let more = errors.len().saturating_sub(5);
    if more > 0 {
        format!("{} (and {more} more)", shown.join("; "))
    } else {
        shown.join("; ")
    }
}

/// The schema version a document says it has (any version, even a newer one).
pub fn schema_version(doc: &Automerge) -> Result<u64, Vec<ValidationError>> {
    match doc.get(&ROOT, "schema").ok().flatten() {
        Some((Value::Scalar(s), _)) => match s.as_ref() {
            ScalarValue::Uint(v) if *v >= 1 => Ok(*v),
            ScalarValue::Int(v) if *v >= 1 => Ok(*v as u64),
            _ => Err(vec![not_a_schema()]),
        },
        Some(_) => Err(vec![not_a_schema()]),
        None => Err(vec![error(
            "/schema",
            Problem::NotARecord,
            "missing: not a twinsync record",
        )]),
    }
}

fn not_a_schema() -> ValidationError {
    error(
        "/schema",
        Problem::NotARecord,
        "must be a schema version number",
    )
}

/// The kind a document says it is, as written: a string or a text (the
/// official JavaScript client writes a string as a text), one no version
/// knows included; `None` where it says none.
pub(crate) fn kind_as_written(doc: &Automerge) -> Option<String> {
    Reader {
        doc,
        errors: &mut Vec::new(),
    }
    .string(&ROOT, "kind")
}

/// The record's kind and schema version, checked.
pub(crate) fn kind_of(doc: &Automerge) -> Result<Kind, Vec<ValidationError>> {
    let mut errors = Vec::new();
    let r = Reader {
        doc,
        errors: &mut errors,
    };
    match schema_version(doc) {
        Ok(v) if v > SCHEMA_VERSION => r.errors.push(error(
            "/schema",
            Problem::NewerSchema,
            format!("written by a newer twinsync (schema {v}); update the app"),
        )),
        Ok(_) => {}
        Err(found) => r.errors.extend(found),
    }
    let kind = match r.string(&ROOT, "kind") {
        Some(s) => match s.parse::<Kind>() {
            Ok(k) => Some(k),
            Err(e) => {
                errors.push(error("/kind", Problem::UnknownKind, e.to_string()));
                None
            }
        },
        None => {
            errors.push(error(
                "/kind",
                Problem::NotARecord,
                "missing or not a string",
            ));
            None
        }
    };
    match kind {
        Some(k) if errors.is_empty() => Ok(k),
        _ => Err(errors),
    }
}

pub(crate) fn read(doc: &Automerge) -> Result<Json, Vec<ValidationError>> {
    let (out, errors) = read_leniently(doc)?;
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// The record's fields as far as they read, with what is wrong with the
/// rest; an error only when its kind or schema cannot be read.
pub(crate) fn read_leniently(
    doc: &Automerge,
) -> Result<(Json, Vec<ValidationError>), Vec<ValidationError>> {
    let kind = kind_of(doc)?;
    let mut errors = Vec::new();
    let mut r = Reader {
        doc,
        errors: &mut errors,
    };
    let mut out = r.fields(&ROOT, kind.fields(), "");
    out.insert("kind".into(), Json::String(kind.as_str().into()));
    Ok((Json::Object(out), errors))
}

pub(crate) fn error(
    path: impl Into<String>,
    code: Problem,
    reason: impl Into<String>,
) -> ValidationError {
    ValidationError {
        path: path.into(),
        code,
        reason: reason.into(),
    }
}

struct Reader<'a> {
    doc: &'a Automerge,
    errors: &'a mut Vec<ValidationError>,
}

impl Reader<'_> {
    /// The value at `prop`; a null reads as no value, as a field cleared
    /// is written (`edit::clear`).
    fn get(&self, obj: &ObjId, prop: impl Into<Prop>) -> Option<(Value<'_>, ObjId)> {
        self.doc
            .get(obj, prop)
            .ok()
            .flatten()
            .filter(|(value, _)| !matches!(value, Value::Scalar(s) if s.is_null()))
    }

    fn scalar(&self, obj: &ObjId, prop: impl Into<Prop>) -> Option<ScalarValue> {
        match self.get(obj, prop)? {
            (Value::Scalar(s), _) => Some(s.into_owned()),
            _ => None,
        }
    }

    /// A string stored either as a scalar (as twinsync writes it) or as a
    /// text object (as the JavaScript library writes plain strings).
    fn string(&self, obj: &ObjId, prop: impl Into<Prop>) -> Option<String> {
        self.as_string(self.get(obj, prop)?)
    }

    /// A value found ([`Self::get`]) as a string, as [`Self::string`] reads it.
    fn as_string(&self, found: (Value<'_>, ObjId)) -> Option<String> {
        match found {
            (Value::Scalar(s), _) => match s.as_ref() {
                ScalarValue::Str(s) => Some(s.to_string()),
                _ => None,
            },
            (Value::Object(ObjType::Text), id) => self.doc.text(&id).ok(),
            _ => None,
        }
    }

    fn fields(&mut self, obj: &ObjId, fields: &[Field], path: &str) -> Map<String, Json> {
        let mut out = Map::new();
        for field in fields {
            let here = format!("{path}/{}", field.name);
            let value = self.field(obj, field, &here);
            out.insert(field.name.to_owned(), value);
        }
        out
    }

    fn field(&mut self, obj: &ObjId, field: &Field, path: &str) -> Json {
        let Some((value, id)) = self.get(obj, field.name) else {
            if field.required {
                self.errors
                    .push(error(path, Problem::Missing, "required, missing"));
            }
            return empty(&field.ty);
        };
        let value = value.into_owned();
        match (&field.ty, value) {
            (FieldType::Str, _) => self.str_like(obj, field.name, path, |_| Ok(())),
            (FieldType::Date, _) => self.str_like(obj, field.name, path, |s| {
                check_date(s).map_err(|reason| (Problem::NotADate, reason))
            }),
            (FieldType::Enum(allowed), _) => self.str_like(obj, field.name, path, |s| {
                if allowed.contains(&s) {
                    Ok(())
                } else {
                    let reason = format!("`{s}` is not one of {}", allowed.join(", "));
                    Err((Problem::NotAnOption, reason))
                }
            }),
            (FieldType::Ref, _) => self.str_like(obj, field.name, path, |s| {
                s.parse::<AutomergeUrl>()
                    .map(|_| ())
                    .map_err(|e| (Problem::NotALink, format!("not a record link: {e}")))
            }),
            (FieldType::Text, Value::Object(ObjType::Text)) => {
                Json::String(self.doc.text(&id).unwrap_or_default())
            }
            (FieldType::Text, Value::Scalar(s)) if s.is_str() => {
                self.str_like(obj, field.name, path, |_| Ok(()))
            }
            (FieldType::Bool, Value::Scalar(s)) => match s.as_ref() {
                ScalarValue::Boolean(b) => Json::Bool(*b),
                _ => self.wrong(path, Problem::WrongType, "must be true or false", &field.ty),
            },
            (FieldType::Int { min, max }, Value::Scalar(s)) => match s.as_ref() {
                ScalarValue::Int(i) if (*min..=*max).contains(i) => Json::from(*i),
                ScalarValue::Uint(u)
                    if i64::try_from(*u).is_ok_and(|i| (*min..=*max).contains(&i)) =>
                {
                    Json::from(*u)
                }
                _ => self.wrong(
                    path,
                    Problem::OutOfRange,
                    &format!("must be a whole number from {min} to {max}"),
                    &field.ty,
                ),
            },
            (FieldType::Multilingual, Value::Object(ObjType::Map)) => self.multilingual(&id, path),
            (FieldType::Set(members), Value::Object(ObjType::Map)) => self.set(&id, members, path),
            (FieldType::List(item), Value::Object(ObjType::List)) => self.list(&id, item, path),
            (FieldType::Map(item), Value::Object(ObjType::Map)) => self.map(&id, item, path),
            (ty, _) => self.wrong(
                path,
                Problem::WrongType,
                &format!("must be {}", describe(ty)),
                ty,
            ),
        }
    }

    fn wrong(&mut self, path: &str, code: Problem, reason: &str, ty: &FieldType) -> Json {
        self.errors.push(error(path, code, reason));
        empty(ty)
    }

    fn str_like(
        &mut self,
        obj: &ObjId,
        prop: &str,
        path: &str,
        check: impl Fn(&str) -> Result<(), (Problem, String)>,
    ) -> Json {
        match self.string(obj, prop) {
            Some(s) => match check(&s) {
                Ok(()) => Json::String(s),
                Err((code, reason)) => {
                    self.errors.push(error(path, code, reason));
                    Json::Null
                }
            },
            None => {
                self.errors
                    .push(error(path, Problem::WrongType, "must be a string"));
                Json::Null
            }
        }
    }

    fn multilingual(&mut self, obj: &ObjId, path: &str) -> Json {
        let mut out = Map::new();
        for key in self.doc.keys(obj) {
            let here = format!("{path}/{key}");
            if !LANGUAGES.contains(&key.as_str()) {
                self.errors.push(error(
                    here,
                    Problem::NotALanguage,
                    "not one of the languages ar, fr, en",
                ));
                continue;
            }
            // A language cleared.
            let Some(found) = self.get(obj, key.as_str()) else {
                continue;
            };
            match self.as_string(found) {
                Some(s) => {
                    out.insert(key, Json::String(s));
                }
                None => self
                    .errors
                    .push(error(here, Problem::WrongType, "must be a string")),
            }
        }
        Json::Object(out)
    }

    fn set(&mut self, obj: &ObjId, kind: &Members, path: &str) -> Json {
        let mut members = Vec::new();
        for key in self.doc.keys(obj) {
            // A link set's members are checked when written, not here:
            // apps before that check wrote text in them (a report's links
            // as free chips), and such a record must stay readable and
            // writable; the app shows such a member as written.
            if let Members::OneOf(allowed) = kind
                && !allowed.contains(&key.as_str())
            {
                self.errors.push(error(
                    format!("{path}/{key}"),
                    Problem::NotAnOption,
                    "not an allowed value",
                ));
                continue;
            }
            match self.scalar(obj, key.as_str()) {
                Some(ScalarValue::Boolean(true)) => members.push(Json::String(key)),
                Some(ScalarValue::Boolean(false)) => {}
                _ => self.errors.push(error(
                    format!("{path}/{key}"),
                    Problem::WrongType,
                    "a set member must be true",
                )),
            }
        }
        Json::Array(members)
    }

    fn list(&mut self, obj: &ObjId, item: &[Field], path: &str) -> Json {
        let mut out = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for index in 0..self.doc.length(obj) {
            let Some((Value::Object(ObjType::Map), item_obj)) = self.get(obj, index) else {
                self.errors.push(error(
                    format!("{path}/#{index}"),
                    Problem::WrongType,
                    "a list item must be a map",
                ));
                continue;
            };
            if removal(self.doc, &item_obj) == Removal::Removed {
                continue;
            }
            let id = self.string(&item_obj, "id");
            let here = match &id {
                Some(id) => format!("{path}/{id}"),
                None => format!("{path}/#{index}"),
            };
            if let Some(id) = id
                && !seen.insert(id)
            {
                self.errors.push(error(
                    &here,
                    Problem::DuplicateId,
                    "two items share this id",
                ));
            }
            let mut fields = self.fields(&item_obj, item, &here);
            fields.remove(ITEM_REMOVED.name);
            out.push(Json::Object(fields));
        }
        Json::Array(out)
    }

    fn map(&mut self, obj: &ObjId, item: &[Field], path: &str) -> Json {
        let mut out = Map::new();
        for key in self.doc.keys(obj) {
            let here = format!("{path}/{key}");
            match self.get(obj, key.as_str()) {
                Some((Value::Object(ObjType::Map), entry)) => {
                    let fields = self.fields(&entry, item, &here);
                    out.insert(key, Json::Object(fields));
                }
                _ => self
                    .errors
                    .push(error(here, Problem::WrongType, "an entry must be a map")),
            }
        }
        Json::Object(out)
    }
}

/// What an absent field reads as.
fn empty(ty: &FieldType) -> Json {
    match ty {
        FieldType::Text => Json::String(String::new()),
        FieldType::Multilingual | FieldType::Map(_) => Json::Object(Map::new()),
        FieldType::Set(_) | FieldType::List(_) => Json::Array(Vec::new()),
        FieldType::Bool => Json::Bool(false),
        _ => Json::Null,
    }
}

pub(crate) fn describe(ty: &FieldType) -> &'static str {
    match ty {
        FieldType::Str => "a string",
        FieldType::Multilingual => "a map of languages",
        FieldType::Text => "text",
        FieldType::Date => "a date",
        FieldType::Enum(_) => "one of its allowed values",
        FieldType::Bool => "true or false",
        FieldType::Int { .. } => "a whole number",
        FieldType::Ref => "a record link",
        FieldType::Set(_) => "a set",
        FieldType::List(_) => "a list",
        FieldType::Map(_) => "a map",
    }
}

/// `YYYY-MM-DD`, a real calendar date.
pub(crate) fn check_date(s: &str) -> Result<(), String> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let not_a_date = || format!("`{s}` is not a date (YYYY-MM-DD)");
    // `[year]` also takes a sign and more digits (`-2025-03-01`, which a
    // spreadsheet reads as a sum): four digits and no sign.
    if s.len() != 10 || !s.as_bytes()[..4].iter().all(u8::is_ascii_digit) {
        return Err(not_a_date());
    }
    time::Date::parse(s, format)
        .map(|_| ())
        .map_err(|_| not_a_date())
}

/// How deep a record's values may nest. The schema's deepest value is four
/// levels down (`/milestones/<id>/title/fr`); this leaves room for growth.
pub const MAX_NESTING: usize = 16;

/// The members of a record's sets of record links (an agreement's parties,
/// a meeting's attendees, a report's links) as stored: each key whose value
/// is `true`, whether or not the record reads as valid.
///
/// Members that are not record links are not validation errors: reading
/// takes what older apps wrote there (a report's links as free text), so
/// that such records stay valid and writable. The edit API refuses them;
/// the server refuses a sync message that adds one by comparing these
/// before and after it ([`LinkMembers::first_added_non_link`]).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct LinkMembers(Vec<(&'static str, BTreeSet<String>)>);

impl LinkMembers {
    /// Those of `doc`, in the link sets of every kind, by name: a write
    /// that mends a kind that did not read, or that a coordinator makes to
    /// change the kind, must not count the members already there as added.
    pub fn of(doc: &Automerge) -> Self {
        Self::read(doc, &Kind::ALL)
    }

    /// Those of `doc` in the link sets of `kinds`.
    fn read(doc: &Automerge, kinds: &[Kind]) -> Self {
        // Link sets are the record's own fields (a test holds every kind
        // to that): no list or map item is looked into.
        let mut names: Vec<&'static str> = kinds
            .iter()
            .flat_map(|k| k.fields())
            .filter(|f| matches!(f.ty, FieldType::Set(Members::Links)))
            .map(|f| f.name)
            .collect();
        names.sort_unstable();
        names.dedup();
        let sets = names
            .into_iter()
            .map(|name| {
                let members = match doc.get(ROOT, name) {
                    Ok(Some((Value::Object(ObjType::Map), set))) => doc
                        .keys(&set)
                        .filter(|key| {
                            matches!(
                                doc.get(&set, key.as_str()),
                                Ok(Some((Value::Scalar(v), _))) if *v == ScalarValue::Boolean(true)
                            )
                        })
                        .collect(),
                    _ => BTreeSet::new(),
                };
                (name, members)
            })
            .collect();
        Self(sets)
    }

    /// The first member `after` holds in a set of record links of its kind
    /// (of every kind, if its kind does not read) that these lacked and
    /// that is not a record's bare URL, as a problem at its path; `None`
    /// if there is none.
    pub fn first_added_non_link(&self, after: &Automerge) -> Option<ValidationError> {
        let now = match kind_of(after) {
            Ok(kind) => Self::read(after, &[kind]),
            Err(_) => Self::of(after),
        };
        now.0.iter().find_map(|(field, members)| {
            let had = self.0.iter().find(|(f, _)| f == field).map(|(_, m)| m);
            members
                .iter()
                .filter(|m| !had.is_some_and(|h| h.contains(*m)))
                .find_map(|m| not_a_bare_link(m, &format!("/{field}")))
        })
    }
}

fn not_a_bare_link(member: &str, path: &str) -> Option<ValidationError> {
    let reason = match super::write::bare_link(member) {
        Ok(bare) if bare == member => return None,
        Ok(bare) => format!(
            "`{member}` links to one version of a record: a set keeps the record's bare URL, `{bare}`"
        ),
        Err(e) => format!("`{member}` is not a record link: {e}"),
    };
    Some(error(format!("{path}/{member}"), Problem::NotALink, reason))
}

/// The path of the first object nested deeper than `limit`, if any, with
/// every value looked at, known to the schema or not (conflicting values
/// too). Walks iteratively and stops at the limit, so a hostile document
/// nested thousands deep costs no more than one `limit` deep; Automerge's
/// own diff costs the square of the depth, which is why this runs first.
pub fn nested_beyond(doc: &Automerge, limit: usize) -> Option<String> {
    let mut stack: Vec<(ObjId, String, usize)> = vec![(ROOT, String::new(), 0)];
    while let Some((obj, path, depth)) = stack.pop() {
        let children: Vec<(Prop, ObjId)> = match doc.object_type(&obj) {
            Ok(ObjType::Map | ObjType::Table) => doc
                .keys(&obj)
                .flat_map(|key| {
                    let values = doc.get_all(&obj, key.as_str()).unwrap_or_default();
                    values.into_iter().filter_map(move |(v, id)| {
                        v.is_object().then(|| (Prop::Map(key.clone()), id))
                    })
                })
                .collect(),
            Ok(ObjType::List) => (0..doc.length(&obj))
                .flat_map(|i| {
                    let values = doc.get_all(&obj, i).unwrap_or_default();
                    values
                        .into_iter()
                        .filter_map(move |(v, id)| v.is_object().then_some((Prop::Seq(i), id)))
                })
                .collect(),
            // Text holds characters (and marks), not values.
            _ => Vec::new(),
        };
        for (prop, child) in children {
            let path = match prop {
                Prop::Map(key) => format!("{path}/{key}"),
                Prop::Seq(i) => format!("{path}/#{i}"),
            };
            if depth + 1 > limit {
                return Some(path);
            }
            stack.push((child, path, depth + 1));
        }
    }
    None
}
