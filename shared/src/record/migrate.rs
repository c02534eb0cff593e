//! Schema migrations: a record written under an older schema is brought up
//! to [`SCHEMA_VERSION`] by a chain of steps, all in one change.
//!
//! Migrations run on the server only, one writer per document: two replicas
//! migrating the same record concurrently could each create the same new
//! container, and Automerge would show only one of them. Clients read older
//! schemas as they are until the server's migration reaches them; the one
//! thing a phone does itself is turn a text it edits that is still a plain
//! string into a text object (`text_to_splice` in `edit.rs`), which two
//! devices doing at once leaves as a disagreement, both texts listed.

use automerge::transaction::{Transactable, Transaction};
use automerge::{Automerge, ObjId, ObjType, ROOT, ReadDoc, Value};

use super::edit::{Commit, EditError};
use super::read::{ValidationError, kind_of, schema_version};
use super::schema::{Field, FieldType, Kind, SCHEMA_VERSION};
use super::write::{one_plain_string, put_text};

/// One step: from schema `n` to `n + 1`, for `n` = its index + 1, given
/// the record's kind if it says a known one.
type Step = fn(&mut Transaction<'_>, Option<Kind>) -> Result<(), EditError>;

/// Schema 1 is the first; a step is added here with each new schema.
const STEPS: &[Step] = &[texts_become_text_objects];

/// Schema 2: a meeting's guests and the wording of decisions and of
/// commitments were plain strings, so two delegates editing one at once
/// left a disagreement for a coordinator to settle, one version winning
/// whole. Every text field now holds a text object, merged character by
/// character. A plain string becomes a text object with the same
/// characters, an absent text an empty one (no device then has to create
/// it, which two could do at once). A plain string with concurrent values
/// that differ is left as it is: replacing it would settle the
/// disagreement unseen.
fn texts_become_text_objects(
    tx: &mut Transaction<'_>,
    kind: Option<Kind>,
) -> Result<(), EditError> {
    match kind {
        Some(kind) => texts_in(tx, &ROOT, kind.fields()),
        None => Ok(()),
    }
}

fn texts_in(tx: &mut Transaction<'_>, obj: &ObjId, fields: &[Field]) -> Result<(), EditError> {
    for field in fields {
        let values = tx.get_all(obj, field.name)?;
        match (&field.ty, values.as_slice()) {
            (FieldType::Text, []) => {
                put_text(tx, obj, field.name, "")?;
            }
            (FieldType::Text, [_, ..]) => {
                if let Some(plain) = one_plain_string(tx, &values) {
                    put_text(tx, obj, field.name, &plain)?;
                }
            }
            // A list or map with concurrent values: the one every replica shows.
            (FieldType::List(item), [.., _]) => {
                let Some((Value::Object(ObjType::List), list)) = tx.get(obj, field.name)? else {
                    continue;
                };
                for index in 0..tx.length(&list) {
                    if let Some((Value::Object(ObjType::Map), entry)) = tx.get(&list, index)? {
                        texts_in(tx, &entry, item)?;
                    }
                }
            }
            (FieldType::Map(item), [.., _]) => {
                let Some((Value::Object(ObjType::Map), map)) = tx.get(obj, field.name)? else {
                    continue;
                };
                for key in tx.keys(&map).collect::<Vec<_>>() {
                    if let Some((Value::Object(ObjType::Map), entry)) =
                        tx.get(&map, key.as_str())?
                    {
                        texts_in(tx, &entry, item)?;
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Why a record could not be migrated.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("the record's schema version cannot be read: {0:?}")]
    Unreadable(Vec<ValidationError>),
    #[error("schema {0} is newer than this build's {SCHEMA_VERSION}")]
    TooNew(u64),
    #[error(transparent)]
    Edit(#[from] EditError),
}

/// Migrates `doc` in place; returns whether it changed anything.
pub fn migrate(doc: &mut Automerge, commit: &Commit) -> Result<bool, MigrateError> {
    let version = schema_version(doc).map_err(MigrateError::Unreadable)?;
    if version > SCHEMA_VERSION {
        return Err(MigrateError::TooNew(version));
    }
    if version == SCHEMA_VERSION {
        return Ok(false);
    }
    debug_assert_eq!(
        STEPS.len() as u64,
        SCHEMA_VERSION - 1,
        "one step per schema after the first"
    );
    // Read as the reader reads it: another client may store the kind as text.
    let kind = kind_of(doc).ok();
    doc.transact_with(
        |_| commit.options(),
        |tx| {
            for step in &STEPS[(version - 1) as usize..] {
                step(tx, kind)?;
            }
            tx.put(ROOT, "schema", SCHEMA_VERSION as i64)
                .map_err(EditError::from)?;
            Ok::<_, MigrateError>(())
        },
    )
    .map_err(|f| f.error)?;
    Ok(true)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::record::{Kind, RecordDoc};

    #[test]
    fn a_current_record_needs_no_migration() {
        let fields = serde_json::json!({"name": {"fr": "Smara"}, "country": "Morocco"});
        let mut doc = RecordDoc::create(Kind::City, &fields, &Commit::new("new", 1)).unwrap();
        let heads = doc.heads();
        assert!(!migrate(doc.doc_mut(), &Commit::new("migrate", 2)).unwrap());
        assert_eq!(doc.heads(), heads);
    }

    #[test]
    fn a_newer_record_is_left_alone() {
        let mut doc = crate::record::new_document();
        doc.transact(|tx| tx.put(ROOT, "schema", 7i64)).unwrap();
        assert!(matches!(
            migrate(&mut doc, &Commit::new("m", 1)),
            Err(MigrateError::TooNew(7))
        ));
    }
}
