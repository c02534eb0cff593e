//! Writing JSON values into a record document, checked against the schema.

use automerge::transaction::Transactable;
use automerge::{Automerge, ObjId, ObjType, ROOT, ReadDoc, ScalarValue};
use serde_json::Value as Json;

use super::edit::{Commit, EditError};
use super::read::check_date;
use super::schema::{Field, FieldType, ITEM_REMOVED, Kind, LANGUAGES, Members, SCHEMA_VERSION};
use crate::AutomergeUrl;
use crate::text::nfc;

/// The longest short string a field takes, in characters.
pub const MAX_SHORT_STRING: usize = 2_000;

pub(crate) fn create(
    doc: &mut Automerge,
    kind: Kind,
    fields: &Json,
    commit: &Commit,
) -> Result<(), EditError> {
    let fields = fields
        .as_object()
        .ok_or_else(|| EditError::invalid("/", "record fields must be an object"))?;
    if let Some(unknown) = fields
        .keys()
        .find(|k| !kind.fields().iter().any(|f| f.name == *k))
    {
        return Err(EditError::invalid(
            format!("/{unknown}"),
            format!("a {kind} has no such field"),
        ));
    }
    doc.transact_with(
        |_| commit.options(),
        |tx| {
            // An Int, as JavaScript writes numbers: a Uint reads as a BigInt there.
            tx.put(ROOT, "schema", SCHEMA_VERSION as i64)?;
            tx.put(ROOT, "kind", kind.as_str())?;
            write_fields(tx, &ROOT, kind.fields(), fields, "")
        },
    )
    .map_err(|f| f.error)?;
    Ok(())
}

/// Writes every field of a record or item: containers always, scalars where given.
pub(crate) fn write_fields<T: Transactable>(
    tx: &mut T,
    obj: &ObjId,
    fields: &'static [Field],
    values: &serde_json::Map<String, Json>,
    path: &str,
) -> Result<(), EditError> {
    for field in fields {
        let here = format!("{path}/{}", field.name);
        write_field(tx, obj, field, values.get(field.name), &here)?;
    }
    Ok(())
}

fn write_field<T: Transactable>(
    tx: &mut T,
    obj: &ObjId,
    field: &'static Field,
    value: Option<&Json>,
    path: &str,
) -> Result<(), EditError> {
    let value = value.filter(|v| !v.is_null());
    match &field.ty {
        FieldType::Multilingual => {
            let map = tx.put_object(obj, field.name, ObjType::Map)?;
            if let Some(v) = value {
                set_languages(tx, &map, v, path)?;
            }
            if field.required && tx.length(&map) == 0 {
                return Err(EditError::invalid(
                    path,
                    "required: give it in at least one language",
                ));
            }
        }
        FieldType::Text => {
            let s = match value {
                Some(v) => nfc(v
                    .as_str()
                    .ok_or_else(|| EditError::invalid(path, "must be a string"))?),
                None => String::new(),
            };
            put_text(tx, obj, field.name, &s)?;
        }
        FieldType::Set(members) => {
            let set = tx.put_object(obj, field.name, ObjType::Map)?;
            if let Some(v) = value {
                for member in v
                    .as_array()
                    .ok_or_else(|| EditError::invalid(path, "must be an array"))?
                {
                    add_member(tx, &set, members, member, path)?;
                }
            }
        }
        FieldType::List(item) => {
            let list = tx.put_object(obj, field.name, ObjType::List)?;
            if let Some(v) = value {
                let items = v
                    .as_array()
                    .ok_or_else(|| EditError::invalid(path, "must be an array"))?;
                for (index, value) in items.iter().enumerate() {
                    insert_item(tx, &list, index, item, value, path)?;
                }
            }
        }
        FieldType::Map(item) => {
            let map = tx.put_object(obj, field.name, ObjType::Map)?;
            if let Some(v) = value {
                let entries = v
                    .as_object()
                    .ok_or_else(|| EditError::invalid(path, "must be an object"))?;
                for (key, value) in entries {
                    put_entry(tx, &map, key, item, value, &format!("{path}/{key}"))?;
                }
            }
        }
        ty => match value {
            Some(v) => {
                tx.put(obj, field.name, scalar(ty, v, path)?)?;
            }
            None if field.required => return Err(EditError::invalid(path, "required, missing")),
            None => {}
        },
    }
    Ok(())
}

/// The plain string every value at a key holds, when they hold the same
/// one and one at least is a plain string: devices that wrote the same
/// words at once do not disagree (a text object counts as the characters
/// it holds, as `conflicts` reads it), and nothing is settled by turning
/// them into one text. `None` for text objects alone, which are not to be
/// replaced.
pub(crate) fn one_plain_string<R: ReadDoc>(
    doc: &R,
    values: &[(automerge::Value<'_>, ObjId)],
) -> Option<String> {
    if !values
        .iter()
        .any(|(v, _)| matches!(v, automerge::Value::Scalar(s) if matches!(s.as_ref(), ScalarValue::Str(_))))
    {
        return None;
    }
    let mut strings = values.iter().map(|(v, id)| match v {
        automerge::Value::Scalar(s) => match s.as_ref() {
            ScalarValue::Str(s) => Some(s.to_string()),
            _ => None,
        },
        automerge::Value::Object(ObjType::Text) => doc.text(id).ok(),
        automerge::Value::Object(_) => None,
    });
    let first = strings.next()??;
    strings
        .all(|s| s.as_deref() == Some(first.as_str()))
        .then_some(first)
}

/// Puts a new text object at `key` of `obj`, holding `chars` as given.
pub(crate) fn put_text<T: Transactable>(
    tx: &mut T,
    obj: &ObjId,
    key: &str,
    chars: &str,
) -> Result<ObjId, EditError> {
    let text = tx.put_object(obj, key, ObjType::Text)?;
    if !chars.is_empty() {
        tx.splice_text(&text, 0, 0, chars)?;
    }
    Ok(text)
}

/// Sets the languages present in `value` (an object); `null` removes one.
pub(crate) fn set_languages<T: Transactable>(
    tx: &mut T,
    map: &ObjId,
    value: &Json,
    path: &str,
) -> Result<(), EditError> {
    let langs = value
        .as_object()
        .ok_or_else(|| EditError::invalid(path, "must be an object of languages (ar, fr, en)"))?;
    for (lang, text) in langs {
        let here = format!("{path}/{lang}");
        if !LANGUAGES.contains(&lang.as_str()) {
            return Err(EditError::invalid(
                here,
                "not one of the languages ar, fr, en",
            ));
        }
        set_language(tx, map, lang, text, &here)?;
    }
    Ok(())
}

pub(crate) fn set_language<T: Transactable>(
    tx: &mut T,
    map: &ObjId,
    lang: &str,
    text: &Json,
    path: &str,
) -> Result<(), EditError> {
    match text {
        Json::Null => super::edit::clear(tx, map, lang)?,
        Json::String(s) if s.is_empty() => super::edit::clear(tx, map, lang)?,
        _ => tx.put(map, lang, scalar(&FieldType::Str, text, path)?)?,
    }
    Ok(())
}

pub(crate) fn add_member<T: Transactable>(
    tx: &mut T,
    set: &ObjId,
    members: &Members,
    member: &Json,
    path: &str,
) -> Result<(), EditError> {
    let m = member
        .as_str()
        .ok_or_else(|| EditError::invalid(path, "a member must be a string"))?;
    tx.put(set, member_key(members, m, path)?.as_str(), true)?;
    Ok(())
}

/// A record link as a record keeps it, in a field or a set: the record's
/// bare URL, whatever version of it `link` names.
pub(crate) fn bare_link(link: &str) -> Result<String, crate::IdError> {
    let url: AutomergeUrl = link.parse()?;
    Ok(url.document_id.url().to_string())
}

/// `member` as a set of `members` keeps it: a link as its record's bare
/// URL, anything else in NFC; refused if it may not be a member.
pub(crate) fn member_key(members: &Members, member: &str, path: &str) -> Result<String, EditError> {
    let m = nfc(member);
    match members {
        Members::OneOf(allowed) if !allowed.contains(&m.as_str()) => {
            return Err(EditError::invalid(
                path,
                format!("`{m}` is not one of {}", allowed.join(", ")),
            ));
        }
        Members::Links => {
            return bare_link(&m)
                .map_err(|e| EditError::invalid(path, format!("`{m}` is not a record link: {e}")));
        }
        Members::Any | Members::OneOf(_) => {}
    }
    if m.is_empty() || m.chars().count() > MAX_SHORT_STRING {
        return Err(EditError::invalid(
            path,
            "a member must be a non-empty short string",
        ));
    }
    Ok(m)
}

/// Inserts a list item at `index`; it gets a fresh id unless it has one.
pub(crate) fn insert_item<T: Transactable>(
    tx: &mut T,
    list: &ObjId,
    index: usize,
    fields: &'static [Field],
    value: &Json,
    path: &str,
) -> Result<String, EditError> {
    let mut values = value
        .as_object()
        .cloned()
        .ok_or_else(|| EditError::invalid(path, "a list item must be an object"))?;
    if values.contains_key(ITEM_REMOVED.name) {
        return Err(EditError::invalid(
            path,
            "a new item cannot say whether it is removed",
        ));
    }
    let id = match values.get("id") {
        Some(Json::String(id)) if !id.is_empty() && !id.contains('/') => id.clone(),
        Some(_) => {
            return Err(EditError::invalid(
                path,
                "an item id must be a non-empty string without `/`",
            ));
        }
        None => super::new_item_id(),
    };
    values.insert("id".into(), Json::String(id.clone()));
    check_known(fields, &values, path)?;
    let item = tx.insert_object(list, index, ObjType::Map)?;
    write_fields(tx, &item, fields, &values, &format!("{path}/{id}"))?;
    Ok(id)
}

pub(crate) fn put_entry<T: Transactable>(
    tx: &mut T,
    map: &ObjId,
    key: &str,
    fields: &'static [Field],
    value: &Json,
    path: &str,
) -> Result<(), EditError> {
    let values = value
        .as_object()
        .ok_or_else(|| EditError::invalid(path, "an entry must be an object"))?;
    if key.is_empty() || key.contains('/') {
        return Err(EditError::invalid(
            path,
            "a key must be non-empty, without `/`",
        ));
    }
    check_known(fields, values, path)?;
    let entry = tx.put_object(map, key, ObjType::Map)?;
    write_fields(tx, &entry, fields, values, path)
}

fn check_known(
    fields: &[Field],
    values: &serde_json::Map<String, Json>,
    path: &str,
) -> Result<(), EditError> {
    match values.keys().find(|k| !fields.iter().any(|f| f.name == *k)) {
        Some(unknown) => Err(EditError::invalid(
            format!("{path}/{unknown}"),
            "no such field",
        )),
        None => Ok(()),
    }
}

/// A JSON value as the scalar a field of type `ty` stores.
pub(crate) fn scalar(ty: &FieldType, v: &Json, path: &str) -> Result<ScalarValue, EditError> {
    let string = || -> Result<String, EditError> {
        let s = v
            .as_str()
            .ok_or_else(|| EditError::invalid(path, "must be a string"))?;
        if s.chars().count() > MAX_SHORT_STRING {
            return Err(EditError::invalid(
                path,
                format!("longer than {MAX_SHORT_STRING} characters"),
            ));
        }
        Ok(nfc(s))
    };
    Ok(match ty {
        FieldType::Str => ScalarValue::Str(string()?.into()),
        FieldType::Date => {
            let s = string()?;
            check_date(&s).map_err(|reason| EditError::invalid(path, reason))?;
            ScalarValue::Str(s.into())
        }
        FieldType::Enum(allowed) => {
            let s = string()?;
            if !allowed.contains(&s.as_str()) {
                return Err(EditError::invalid(
                    path,
                    format!("`{s}` is not one of {}", allowed.join(", ")),
                ));
            }
            ScalarValue::Str(s.into())
        }
        FieldType::Ref => {
            let s = string()?;
            let bare = bare_link(&s)
                .map_err(|e| EditError::invalid(path, format!("not a record link: {e}")))?;
            ScalarValue::Str(bare.into())
        }
        FieldType::Bool => ScalarValue::Boolean(
            v.as_bool()
                .ok_or_else(|| EditError::invalid(path, "must be true or false"))?,
        ),
        FieldType::Int { min, max } => {
            let i = v.as_i64().filter(|i| (*min..=*max).contains(i));
            ScalarValue::Int(i.ok_or_else(|| {
                EditError::invalid(path, format!("must be a whole number from {min} to {max}"))
            })?)
        }
        other => {
            return Err(EditError::invalid(
                path,
                format!("{} is not set as one value", super::read::describe(other)),
            ));
        }
    })
}
