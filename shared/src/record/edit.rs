//! Edits: the typed operations every writer (server tools, the WASM client,
//! tests) uses to change a record, each addressed by a path.

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{Automerge, ChangeHash, ObjId, ObjType, Value};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::path::{
    Located, Removal, Stored, container, find_item, item_under, locate, locate_text, removal,
};
use super::read::{ValidationError, kind_of, summarise};
use super::schema::{FieldType, ITEM_REMOVED};
use super::write::{
    add_member, insert_item, member_key, one_plain_string, put_entry, put_text, scalar,
    set_language, set_languages,
};
use crate::text::nfc;

/// What every commit carries: a short human-readable message and the time
/// (seconds since the epoch) the writer made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commit {
    pub message: String,
    pub time: i64,
}

impl Commit {
    pub fn new(message: impl Into<String>, time: i64) -> Self {
        Self {
            message: message.into(),
            time,
        }
    }

    pub(crate) fn options(&self) -> CommitOptions {
        CommitOptions::default()
            .with_message(self.message.clone())
            .with_time(self.time)
    }
}

/// One change to a record. Serialises as `{"op": "set", "path": ..., ...}`
/// so the browser can send edits as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Edit {
    /// Sets a scalar field, one language (`/title/fr`), all given languages
    /// of a multilingual field, a whole text (as a minimal diff), or the
    /// members of a set. `null` clears an optional value.
    Set { path: String, value: Json },
    /// Splices a text field at a code-point index.
    SpliceText {
        path: String,
        index: usize,
        delete: usize,
        insert: String,
    },
    /// Inserts an item into a list after the item `after` (at the start when
    /// `None`, at the end when `after` is `"$end"`).
    InsertItem {
        path: String,
        after: Option<String>,
        item: Json,
    },
    /// Removes a list item: `/milestones/<id>`. The item is marked removed,
    /// not deleted (`ITEM_REMOVED`), so that words another device wrote in
    /// it meanwhile are not lost.
    RemoveItem { path: String },
    /// Adds a member to a set field.
    AddMember { path: String, member: String },
    /// Removes a member from a set field.
    RemoveMember { path: String, member: String },
    /// Creates or replaces a map entry: `/index/<key>`.
    PutEntry { path: String, value: Json },
    /// Removes a map entry: `/index/<key>`.
    RemoveEntry { path: String },
}

impl Edit {
    /// The path the edit is addressed to.
    pub fn path(&self) -> &str {
        match self {
            Edit::Set { path, .. }
            | Edit::SpliceText { path, .. }
            | Edit::InsertItem { path, .. }
            | Edit::RemoveItem { path }
            | Edit::AddMember { path, .. }
            | Edit::RemoveMember { path, .. }
            | Edit::PutEntry { path, .. }
            | Edit::RemoveEntry { path } => path,
        }
    }
}

/// Inserting with `after: Some(END)` appends.
pub const END: &str = "$end";

/// Why an edit was refused. Nothing of a refused batch is written.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    #[error("{path}: {reason}")]
    Path { path: String, reason: String },
    #[error("{path}: {reason}")]
    Invalid { path: String, reason: String },
    #[error("the document is not a valid record: {}", summarise(.0))]
    NotARecord(Vec<ValidationError>),
    #[error("automerge refused the edit: {0}")]
    Automerge(#[from] automerge::AutomergeError),
}

impl EditError {
    /// `path` does not name `what` (a text field, a list, ...).
    pub(crate) fn not_a(path: &str, what: &str) -> Self {
        EditError::Path {
            path: path.to_owned(),
            reason: format!("not {what}"),
        }
    }

    pub(crate) fn invalid(path: impl Into<String>, reason: impl ToString) -> Self {
        EditError::Invalid {
            path: path.into(),
            reason: reason.to_string(),
        }
    }
}

pub(crate) fn apply(
    doc: &mut Automerge,
    commit: &Commit,
    edits: &[Edit],
) -> Result<Option<ChangeHash>, EditError> {
    let kind = kind_of(doc).map_err(EditError::NotARecord)?;
    let done = doc
        .transact_with(
            |_| commit.options(),
            |tx| {
                // The items this batch wrote in, each marked kept once, as
                // it is first written in: a removal later in the batch
                // then stands.
                let mut kept: Vec<ObjId> = Vec::new();
                for edit in edits {
                    let item = inside_item(tx, kind, edit.path())?;
                    let before = tx.pending_ops();
                    apply_one(tx, kind, edit)?;
                    if let Some(item) = item
                        && tx.pending_ops() > before
                        && !kept.contains(&item)
                    {
                        mark_kept(tx, &item)?;
                        kept.push(item);
                    }
                }
                Ok::<_, EditError>(())
            },
        )
        .map_err(|f| f.error)?;
    Ok(done.hash)
}

fn apply_one<T: Transactable>(tx: &mut T, kind: super::Kind, edit: &Edit) -> Result<(), EditError> {
    let wrong = EditError::not_a;
    match edit {
        Edit::Set { path, value } => match locate(tx, kind, path)? {
            Located::Lang { obj, lang } => set_language(tx, &obj, lang, value, path)?,
            Located::Field { obj, field } => match &field.ty {
                FieldType::Multilingual => {
                    let map = container(tx, &obj, field.name)
                        .ok_or_else(|| wrong(path, "a multilingual field"))?;
                    set_languages(tx, &map, value, path)?;
                }
                FieldType::Text => {
                    // `null` empties a text, as deleting all of it would.
                    let s = match value {
                        Json::Null => "",
                        v => v
                            .as_str()
                            .ok_or_else(|| EditError::invalid(path, "must be a string"))?,
                    };
                    // One text object takes the least diff. Anything else (a
                    // plain string, nothing, or values written concurrently,
                    // which writing one settles) becomes a new text object.
                    let sole = match tx.get_all(&obj, field.name)?.as_slice() {
                        [(Value::Object(ObjType::Text), text)] => Some(text.clone()),
                        _ => None,
                    };
                    match sole {
                        Some(text) => tx.update_text(&text, nfc(s))?,
                        None => {
                            put_text(tx, &obj, field.name, &nfc(s))?;
                        }
                    }
                }
                FieldType::Set(kind_of_members) => {
                    let set =
                        container(tx, &obj, field.name).ok_or_else(|| wrong(path, "a set"))?;
                    let members = value
                        .as_array()
                        .ok_or_else(|| EditError::invalid(path, "must be an array"))?;
                    let wanted: Vec<String> = members
                        .iter()
                        .filter_map(|m| member_key(kind_of_members, m.as_str()?, path).ok())
                        .collect();
                    for old in tx.keys(&set).collect::<Vec<_>>() {
                        if !wanted.contains(&old) {
                            tx.delete(&set, old.as_str())?;
                        }
                    }
                    for m in members {
                        add_member(tx, &set, kind_of_members, m, path)?;
                    }
                }
                FieldType::List(_) | FieldType::Map(_) => {
                    return Err(EditError::invalid(path, "edit a list or map item by item"));
                }
                _ if value.is_null() => {
                    if field.required {
                        return Err(EditError::invalid(path, "required, cannot be cleared"));
                    }
                    clear(tx, &obj, field.name)?;
                }
                ty => tx.put(&obj, field.name, scalar(ty, value, path)?)?,
            },
            _ => return Err(wrong(path, "a field")),
        },
        Edit::SpliceText {
            path,
            index,
            delete,
            insert,
        } => {
            let text = text_to_splice(tx, kind, path)?;
            let len = tx.length(&text);
            if *index > len || index + delete > len {
                return Err(EditError::invalid(
                    path,
                    format!(
                        "range {index}..{} is outside the text (length {len})",
                        index + delete
                    ),
                ));
            }
            tx.splice_text(&text, *index, *delete as isize, &nfc(insert))?;
        }
        Edit::InsertItem { path, after, item } => {
            let Located::Field { obj, field } = locate(tx, kind, path)? else {
                return Err(wrong(path, "a list field"));
            };
            let FieldType::List(fields) = &field.ty else {
                return Err(wrong(path, "a list field"));
            };
            let list = container(tx, &obj, field.name).ok_or_else(|| wrong(path, "a list"))?;
            let index = match after.as_deref() {
                None => 0,
                Some(END) => tx.length(&list),
                Some(id) => {
                    find_item(tx, &list, id).ok_or_else(|| {
                        EditError::invalid(path, format!("no item `{id}` to insert after"))
                    })? + 1
                }
            };
            if let Some(id) = item.get("id").and_then(Json::as_str)
                && find_item(tx, &list, id).is_some()
            {
                return Err(EditError::invalid(
                    path,
                    format!("an item `{id}` exists already"),
                ));
            }
            insert_item(tx, &list, index, fields, item, path)?;
        }
        Edit::RemoveItem { path } => match locate(tx, kind, path)? {
            Located::Item { list, index } => match tx.get(&list, index)? {
                Some((Value::Object(ObjType::Map), item)) => {
                    tx.put(&item, ITEM_REMOVED.name, true)?
                }
                _ => tx.delete(&list, index)?,
            },
            _ => return Err(wrong(path, "a list item")),
        },
        Edit::AddMember { path, member } | Edit::RemoveMember { path, member } => {
            let Located::Field { obj, field } = locate(tx, kind, path)? else {
                return Err(wrong(path, "a set field"));
            };
            let FieldType::Set(members) = &field.ty else {
                return Err(wrong(path, "a set field"));
            };
            let set = container(tx, &obj, field.name).ok_or_else(|| wrong(path, "a set"))?;
            if matches!(edit, Edit::AddMember { .. }) {
                add_member(tx, &set, members, &Json::String(member.clone()), path)?;
            } else {
                // The member as stored, if it is: one that could not be
                // added now (written before members were checked, or
                // another form of a link) can still be removed.
                let as_given = nfc(member);
                let key = if tx.get(&set, as_given.as_str())?.is_some() {
                    as_given
                } else {
                    member_key(members, member, path).unwrap_or(as_given)
                };
                tx.delete(&set, key.as_str())?;
            }
        }
        Edit::PutEntry { path, value } => match locate(tx, kind, path)? {
            Located::Entry { map, key } => {
                let fields = entry_fields(kind, path)?;
                put_entry(tx, &map, &key, fields, value, path)?;
            }
            _ => return Err(wrong(path, "a map entry")),
        },
        Edit::RemoveEntry { path } => match locate(tx, kind, path)? {
            Located::Entry { map, key } => tx.delete(&map, key.as_str())?,
            _ => return Err(wrong(path, "a map entry")),
        },
    }
    Ok(())
}

/// Writes `removed: false` on `item` as a new value, one that any removal
/// made meanwhile on another device does not replace. Automerge writes
/// nothing when a key already holds the value put, so the values there (a
/// `false`, or both sides of a dispute) are deleted first: the new one then
/// replaces nothing, and stands beside a concurrent `true` as a
/// disagreement.
/// Clears `key` of `obj`: a null where a value stands (or several, in a
/// disagreement, which this settles), nothing where none does. Not a
/// delete: a delete removes only the values its writer saw, so a value
/// another delegate wrote meanwhile would stand alone, and the one clearing
/// it would never be shown to disagree. A null is a value: the two are
/// listed side by side (`conflicts`), and a null reads as no value.
pub(crate) fn clear<T: Transactable>(tx: &mut T, obj: &ObjId, key: &str) -> Result<(), EditError> {
    if !tx.get_all(obj, key)?.is_empty() {
        tx.put(obj, key, automerge::ScalarValue::Null)?;
    }
    Ok(())
}

fn mark_kept<T: Transactable>(tx: &mut T, item: &ObjId) -> Result<(), EditError> {
    if tx.get(item, ITEM_REMOVED.name)?.is_some() {
        tx.delete(item, ITEM_REMOVED.name)?;
    }
    tx.put(item, ITEM_REMOVED.name, false)?;
    Ok(())
}

/// The list item an edit at `path` writes in, to be marked kept after it
/// (`ITEM_REMOVED`); `None` outside items and for the `removed` field
/// itself, which settling a removal writes. Writing in a removed item is
/// refused: the item is no longer shown, and writing would bring it back.
/// Writing in an item whose removal is disputed keeps it, settling the
/// dispute with a fresh mark: a removal made at the same moment disputes
/// it again rather than hide what was written.
fn inside_item<T: Transactable>(
    tx: &T,
    kind: super::Kind,
    path: &str,
) -> Result<Option<ObjId>, EditError> {
    let Some((item, field)) = item_under(tx, kind, path) else {
        return Ok(None);
    };
    if field == ITEM_REMOVED.name {
        return Ok(None);
    }
    match removal(tx, &item) {
        Removal::Kept | Removal::Disputed => Ok(Some(item)),
        Removal::Removed => Err(EditError::invalid(path, "this item is removed")),
    }
}

/// The text object of the text field at `path`, to splice into. A text
/// stored as a plain string (a record not yet brought to schema 2, or
/// written so by another client) or not at all becomes a text object
/// holding the same characters, so that splices merge from then on. A
/// plain string with concurrent values that differ is refused: splicing
/// the one shown would silently settle the disagreement.
fn text_to_splice<T: Transactable>(
    tx: &mut T,
    kind: super::Kind,
    path: &str,
) -> Result<ObjId, EditError> {
    let (obj, field, stored) = locate_text(tx, kind, path)?;
    let plain = match stored {
        Stored::Text(text) => return Ok(text),
        Stored::Plain(s) => s,
        Stored::Absent => String::new(),
    };
    let values = tx.get_all(&obj, field.name)?;
    if values.len() > 1 && one_plain_string(tx, &values).is_none() {
        return Err(EditError::invalid(
            path,
            "devices wrote different values here: settle that before typing in it",
        ));
    }
    put_text(tx, &obj, field.name, &plain)
}

/// The item fields of the map field a `/map/<key>` path names.
fn entry_fields(kind: super::Kind, path: &str) -> Result<&'static [super::Field], EditError> {
    let name = path
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or_default();
    kind.fields()
        .iter()
        .find_map(|f| match &f.ty {
            FieldType::Map(item) if f.name == name => Some(*item),
            _ => None,
        })
        .ok_or_else(|| EditError::invalid(path, "not a map field"))
}
