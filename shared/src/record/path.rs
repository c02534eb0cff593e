//! Paths into a record: `/field`, `/field/lang`, `/list/<item id>/field`,
//! `/map/<key>/field`. A list item is found by its stable id wherever
//! concurrent inserts have moved it.

use automerge::{ObjId, ObjType, ROOT, ReadDoc, ScalarValue, Value};

use super::edit::EditError;
use super::schema::{Field, FieldType, Kind, LANGUAGES};

/// What a path names in the document.
#[derive(Debug)]
pub(crate) enum Located {
    /// A field of the record or of a list item or map entry.
    Field { obj: ObjId, field: &'static Field },
    /// One language of a multilingual field; `obj` is its map.
    Lang { obj: ObjId, lang: &'static str },
    /// A whole list item.
    Item { list: ObjId, index: usize },
    /// A whole map entry.
    Entry { map: ObjId, key: String },
}

pub(crate) fn locate<D: ReadDoc>(doc: &D, kind: Kind, path: &str) -> Result<Located, EditError> {
    let fail = |reason: &str| EditError::Path {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    let mut segments = path.strip_prefix('/').unwrap_or(path).split('/').peekable();
    let mut obj = ROOT;
    let mut fields: &'static [Field] = kind.fields();
    loop {
        let name = segments
            .next()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| fail("empty path"))?;
        let field = fields
            .iter()
            .find(|f| f.name == name)
            .ok_or_else(|| fail(&format!("no field `{name}` here")))?;
        let Some(next) = segments.next() else {
            return Ok(Located::Field { obj, field });
        };
        let container =
            container(doc, &obj, field.name).ok_or_else(|| fail("the field is missing"))?;
        match &field.ty {
            FieldType::Multilingual => {
                let lang = LANGUAGES
                    .into_iter()
                    .find(|l| *l == next)
                    .ok_or_else(|| fail(&format!("`{next}` is not one of ar, fr, en")))?;
                if segments.peek().is_some() {
                    return Err(fail("a language has no parts"));
                }
                return Ok(Located::Lang {
                    obj: container,
                    lang,
                });
            }
            FieldType::List(item) => {
                let index = find_item(doc, &container, next)
                    .ok_or_else(|| fail(&format!("no item `{next}` (it may have been removed)")))?;
                let item_obj = container_at(doc, &container, index)
                    .ok_or_else(|| fail("item is not a map"))?;
                if segments.peek().is_none() {
                    return Ok(Located::Item {
                        list: container,
                        index,
                    });
                }
                obj = item_obj;
                fields = item;
            }
            FieldType::Map(item) => {
                if segments.peek().is_none() {
                    return Ok(Located::Entry {
                        map: container,
                        key: next.to_owned(),
                    });
                }
                obj = container_at_key(doc, &container, next)
                    .ok_or_else(|| fail(&format!("no entry `{next}`")))?;
                fields = item;
            }
            _ => return Err(fail(&format!("`{name}` has no parts"))),
        }
    }
}

/// How a text field is stored: a text object, as this build writes it, or
/// a plain string, as schema 1 stored a meeting's guests and the text of
/// decisions and commitments (and as other clients may write any text).
pub(crate) enum Stored {
    Text(ObjId),
    Plain(String),
    Absent,
}

/// The text field at `path` and how it is stored, or why `path` names none.
pub(crate) fn locate_text<D: ReadDoc>(
    doc: &D,
    kind: Kind,
    path: &str,
) -> Result<(ObjId, &'static Field, Stored), EditError> {
    let wrong = |what: &str| EditError::not_a(path, what);
    let Located::Field { obj, field } = locate(doc, kind, path)? else {
        return Err(wrong("a text field"));
    };
    if !matches!(field.ty, FieldType::Text) {
        return Err(wrong("a text field"));
    }
    let stored = match doc.get(&obj, field.name)? {
        Some((Value::Object(ObjType::Text), text)) => Stored::Text(text),
        Some((Value::Scalar(s), _)) => match s.as_ref() {
            ScalarValue::Str(s) => Stored::Plain(s.to_string()),
            _ => return Err(wrong("a text")),
        },
        Some(_) => return Err(wrong("a text object")),
        None => Stored::Absent,
    };
    Ok((obj, field, stored))
}

/// The list item a path goes inside, and the item's field it names next:
/// `/decisions/<id>/text` gives that decision and `text`. `None` for a
/// path outside any item, or naming a whole item.
pub(crate) fn item_under<'p, D: ReadDoc>(
    doc: &D,
    kind: Kind,
    path: &'p str,
) -> Option<(ObjId, &'p str)> {
    let mut segments = path.strip_prefix('/')?.split('/');
    let (name, id, field) = (segments.next()?, segments.next()?, segments.next()?);
    kind.fields()
        .iter()
        .find(|f| f.name == name && matches!(f.ty, FieldType::List(_)))?;
    let list = container(doc, &ROOT, name)?;
    let item = container_at(doc, &list, find_item(doc, &list, id)?)?;
    Some((item, field))
}

/// Whether a list item was removed (`ITEM_REMOVED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Removal {
    Kept,
    Removed,
    /// Removed on one device while another wrote in it: both values stand
    /// until someone settles them, and the item is shown meanwhile.
    Disputed,
}

/// Whether one value of an item's removal mark says removed.
pub(crate) fn says_removed(value: &Value<'_>) -> bool {
    matches!(value, Value::Scalar(s) if s.as_ref() == &ScalarValue::Boolean(true))
}

pub(crate) fn removal<D: ReadDoc>(doc: &D, item: &ObjId) -> Removal {
    let values = doc.get_all(item, "removed").unwrap_or_default();
    let removed = values.iter().filter(|(v, _)| says_removed(v)).count();
    // Two devices removing an item at once agree.
    match removed {
        0 => Removal::Kept,
        n if n == values.len() => Removal::Removed,
        _ => Removal::Disputed,
    }
}

/// The object stored at `key` of `obj`, whatever its type.
pub(crate) fn container<D: ReadDoc>(doc: &D, obj: &ObjId, key: &str) -> Option<ObjId> {
    match doc.get(obj, key).ok()?? {
        (Value::Object(_), id) => Some(id),
        _ => None,
    }
}

fn container_at<D: ReadDoc>(doc: &D, list: &ObjId, index: usize) -> Option<ObjId> {
    match doc.get(list, index).ok()?? {
        (Value::Object(ObjType::Map), id) => Some(id),
        _ => None,
    }
}

fn container_at_key<D: ReadDoc>(doc: &D, map: &ObjId, key: &str) -> Option<ObjId> {
    match doc.get(map, key).ok()?? {
        (Value::Object(ObjType::Map), id) => Some(id),
        _ => None,
    }
}

/// The current index of the item whose `id` is `id`.
pub(crate) fn find_item<D: ReadDoc>(doc: &D, list: &ObjId, id: &str) -> Option<usize> {
    (0..doc.length(list)).find(|&i| {
        container_at(doc, list, i).is_some_and(|item| match doc.get(&item, "id") {
            Ok(Some((Value::Scalar(s), _))) => {
                matches!(s.as_ref(), ScalarValue::Str(s) if s.as_str() == id)
            }
            Ok(Some((Value::Object(ObjType::Text), t))) => doc.text(&t).is_ok_and(|t| t == id),
            _ => false,
        })
    })
}
