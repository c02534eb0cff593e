//! Conflicts: fields where concurrent writers left different values.
//! Concurrent writes of one value are no conflict.
//!
//! Automerge keeps every concurrent value of a map key and shows one of them
//! (the same one on every replica). A conflict lists them all, with the actor
//! that wrote each, so a coordinator can pick one; writing it resolves the
//! conflict everywhere.

use automerge::{Automerge, ObjId, ObjType, ROOT, ReadDoc, Value};
use serde::Serialize;
use serde_json::Value as Json;

use super::path::{Removal, removal};
use super::read::kind_of;
use super::schema::{Field, FieldType};

/// One field with concurrent values.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Conflict {
    /// The path to write the chosen value to, e.g. `/status` or `/title/fr`.
    pub path: String,
    /// Every concurrent value; the first is the one currently shown.
    pub values: Vec<ConflictValue>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConflictValue {
    pub value: Json,
    /// The hex actor id of the replica that wrote it.
    pub actor: String,
}

pub(crate) fn find(doc: &Automerge) -> Vec<Conflict> {
    let mut out = Vec::new();
    if let Ok(kind) = kind_of(doc) {
        walk(doc, &ROOT, kind.fields(), "", &mut out);
    }
    out
}

fn walk(doc: &Automerge, obj: &ObjId, fields: &[Field], path: &str, out: &mut Vec<Conflict>) {
    for field in fields {
        let here = format!("{path}/{}", field.name);
        check(doc, obj, field.name, &here, out);
        let Ok(Some((Value::Object(_), child))) = doc.get(obj, field.name) else {
            continue;
        };
        match &field.ty {
            FieldType::Multilingual => {
                for lang in doc.keys(&child) {
                    check(doc, &child, &lang, &format!("{here}/{lang}"), out);
                }
            }
            FieldType::List(item) => {
                for index in 0..doc.length(&child) {
                    if let Ok(Some((Value::Object(ObjType::Map), item_obj))) =
                        doc.get(&child, index)
                        && removal(doc, &item_obj) != Removal::Removed
                    {
                        let id = match doc.get(&item_obj, "id") {
                            Ok(Some((Value::Scalar(s), _))) => s.as_str().map(str::to_owned),
                            _ => None,
                        };
                        let item_path =
                            format!("{here}/{}", id.unwrap_or_else(|| format!("#{index}")));
                        walk(doc, &item_obj, item, &item_path, out);
                    }
                }
            }
            FieldType::Map(item) => {
                for key in doc.keys(&child) {
                    if let Ok(Some((Value::Object(ObjType::Map), entry))) =
                        doc.get(&child, key.as_str())
                    {
                        walk(doc, &entry, item, &format!("{here}/{key}"), out);
                    }
                }
            }
            _ => {}
        }
    }
}

fn check(doc: &Automerge, obj: &ObjId, key: &str, path: &str, out: &mut Vec<Conflict>) {
    let Ok(all) = doc.get_all(obj, key) else {
        return;
    };
    if all.len() < 2 {
        return;
    }
    let winner = doc.get(obj, key).ok().flatten().map(|(_, id)| id);
    // Each value, and whether it is a map or a list, which `to_json` shows
    // by its type alone.
    let mut values: Vec<(ConflictValue, bool)> = all
        .into_iter()
        .map(|(value, id)| {
            let container = matches!(value, Value::Object(t) if t != ObjType::Text);
            let value = ConflictValue {
                value: to_json(doc, &value, &id),
                actor: actor_of(&id),
            };
            (value, container)
        })
        .collect();
    // Put the value every replica shows first.
    if let Some(winner) = winner {
        let winner_actor = actor_of(&winner);
        if let Some(pos) = values.iter().position(|(v, _)| v.actor == winner_actor) {
            values.swap(0, pos);
        }
    }
    // Writers who set the same value (two delegates marking one milestone
    // done) agree: each value is listed once, by its first writer, and a
    // field with one value left has nothing to settle. Two maps or lists
    // are never taken for the same.
    let mut distinct: Vec<ConflictValue> = Vec::with_capacity(values.len());
    for (v, container) in values {
        if container || !distinct.iter().any(|d| d.value == v.value) {
            distinct.push(v);
        }
    }
    let values = distinct;
    if values.len() < 2 {
        return;
    }
    out.push(Conflict {
        path: path.to_owned(),
        values,
    });
}

fn to_json(doc: &Automerge, value: &Value<'_>, id: &ObjId) -> Json {
    match value {
        Value::Scalar(s) => match s.as_ref() {
            automerge::ScalarValue::Str(s) => Json::String(s.to_string()),
            automerge::ScalarValue::Boolean(b) => Json::Bool(*b),
            automerge::ScalarValue::Int(i) => Json::from(*i),
            automerge::ScalarValue::Uint(u) => Json::from(*u),
            automerge::ScalarValue::F64(f) => Json::from(*f),
            automerge::ScalarValue::Null => Json::Null,
            other => Json::String(other.to_string()),
        },
        Value::Object(ObjType::Text) => Json::String(doc.text(id).unwrap_or_default()),
        Value::Object(t) => Json::String(format!("({t:?} object)")),
    }
}

/// The actor that created an operation, in hex.
pub(crate) fn actor_of(id: &ObjId) -> String {
    match id {
        ObjId::Id(_, actor, _) => actor.to_hex_string(),
        ObjId::Root => String::new(),
    }
}
