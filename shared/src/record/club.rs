//! `Club`: the root record, with the council and an index of every record.

use std::collections::{BTreeSet, HashSet};

use automerge::legacy::{Key, ObjectId, OpId, OpType};
use automerge::{ActorId, Automerge, ChangeHash, ObjId, ObjType, ROOT, ReadDoc, Value};
use serde::{Deserialize, Serialize};

use super::schema::{Field, FieldType::*, ITEM_ID, ITEM_REMOVED, field, required};
use super::{Kind, Multilingual};

pub(crate) const COUNCIL_MEMBER: &[Field] = &[
    ITEM_ID,
    ITEM_REMOVED,
    required("person", Ref),
    field("role", Str),
    field("city", Ref),
    field("since", Date),
];

pub(crate) const INDEX_ENTRY: &[Field] = &[
    required(
        "kind",
        Enum(&[
            "city",
            "agreement",
            "project",
            "meeting",
            "person",
            "report",
        ]),
    ),
    field("title", Multilingual),
    field("city", Ref),
    field("status", Str),
    field("archived", Bool),
];

pub(crate) const FIELDS: &[Field] = &[
    required("name", Multilingual),
    field("founded_on", Date),
    field("seat", Ref),
    field("purpose", Text),
    field("council", List(COUNCIL_MEMBER)),
    field("index", Map(INDEX_ENTRY)),
];

/// The club itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Club {
    pub name: Multilingual,
    pub founded_on: Option<String>,
    /// The city hosting the secretariat.
    pub seat: Option<String>,
    pub purpose: String,
    pub council: Vec<CouncilMember>,
    /// Every record of the club, keyed by document id.
    pub index: std::collections::BTreeMap<String, IndexEntry>,
}

/// A seat on the International Coordination Council.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct CouncilMember {
    pub id: String,
    pub person: String,
    pub role: Option<String>,
    pub city: Option<String>,
    pub since: Option<String>,
}

/// One line of the club's index of records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexEntry {
    pub kind: Kind,
    #[serde(default)]
    pub title: Multilingual,
    #[serde(default)]
    pub city: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub archived: bool,
}

/// The keys the index of `club`, a club record's document, has held at any
/// time in its history, whether or not it holds them now. A key it no
/// longer holds was taken out, which only a coordinator may do: a device
/// that holds the record must not list it again. Goes over every change of
/// the club, so a caller asks only when a record it holds is not listed.
pub fn ever_indexed(club: &Automerge) -> BTreeSet<String> {
    indexed_by(club, &club.get_changes(&[]))
}

/// [`ever_indexed`] as the club stood at `heads`: what a change since
/// then would list anew.
pub fn ever_indexed_before(club: &Automerge, heads: &[ChangeHash]) -> BTreeSet<String> {
    let since: HashSet<ChangeHash> = club.get_changes(heads).iter().map(|c| c.hash()).collect();
    let until: Vec<_> = club
        .get_changes(&[])
        .into_iter()
        .filter(|c| !since.contains(&c.hash()))
        .collect();
    indexed_by(club, &until)
}

/// The club's index maps (several when written concurrently), each as a
/// change's ops name it and as the document does.
fn index_objects(club: &Automerge) -> Vec<(ObjectId, ObjId)> {
    club.get_all(ROOT, "index")
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(value, id)| match (value, &id) {
            (Value::Object(ObjType::Map), ObjId::Id(counter, actor, _)) => {
                Some((ObjectId::Id(OpId(*counter, actor.clone())), id))
            }
            _ => None,
        })
        .collect()
}

/// The keys `changes` put in the club's index.
fn indexed_by(club: &Automerge, changes: &[automerge::Change]) -> BTreeSet<String> {
    puts_in_index(club, changes)
        .into_iter()
        .map(|(key, _)| key)
        .collect()
}

/// Each key of the club's index with each change that put a value there,
/// over the club's whole history: who listed a record, as the server
/// notes it for records listed before it kept listings.
pub fn index_puts(club: &Automerge) -> Vec<(String, ChangeHash)> {
    puts_in_index(club, &club.get_changes(&[]))
}

/// Each key `changes` put in the club's index, with the change.
fn puts_in_index(club: &Automerge, changes: &[automerge::Change]) -> Vec<(String, ChangeHash)> {
    let indexes = index_objects(club);
    if indexes.is_empty() {
        return Vec::new();
    }
    let in_index = |obj: &ObjectId| indexes.iter().any(|(legacy, _)| legacy == obj);
    changes
        .iter()
        .flat_map(|change| {
            let hash = change.hash();
            change
                .decode()
                .operations
                .into_iter()
                .map(move |op| (op, hash))
        })
        .filter(|(op, _)| !matches!(op.action, OpType::Delete) && in_index(&op.obj))
        .filter_map(|(op, hash)| match op.key {
            Key::Map(key) => Some((key.to_string(), hash)),
            Key::Seq(_) => None,
        })
        .collect()
}

/// How changes to the club record go beyond listing records in its index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unlisted {
    /// Outside the index, or inside an entry they did not make.
    Beyond,
    /// An entry written over one its writer had seen, or listed again at a
    /// key beside another of a different kind or archived.
    Changed(String),
    /// An entry deleted.
    Removed(String),
}

/// Whether the changes `club` holds since `before` only list records in
/// its index: each a new map put at a key of the index over no value its
/// writer had seen, with what they write inside the maps they made. A
/// listing beside one already there (two phones listing one record at
/// once) must be of the same kind, and not archived. Judged op by op, so
/// that a value that loses the merge, which no read of the record shows,
/// is judged too.
pub fn only_listings(club: &Automerge, before: &[ChangeHash]) -> Result<(), Unlisted> {
    let index = index_objects(club);
    let changes: Vec<(u64, ActorId, Vec<automerge::legacy::Op>)> = club
        .get_changes(before)
        .iter()
        .map(|c| {
            (
                c.start_op().get(),
                c.actor_id().clone(),
                c.decode().operations,
            )
        })
        .collect();
    let id_of = |start: u64, actor: &ActorId, i: usize| OpId(start + i as u64, actor.clone());
    let made: HashSet<ObjectId> = changes
        .iter()
        .flat_map(|(start, actor, ops)| {
            ops.iter()
                .enumerate()
                .filter(|(_, op)| matches!(op.action, OpType::Make(_)))
                .map(move |(i, _)| ObjectId::Id(id_of(*start, actor, i)))
        })
        .collect();
    for (start, actor, ops) in &changes {
        for (i, op) in ops.iter().enumerate() {
            if made.contains(&op.obj) {
                continue;
            }
            let Some((_, index)) = index.iter().find(|(legacy, _)| *legacy == op.obj) else {
                return Err(
                    inside_entry(club, &op.obj, &index).map_or(Unlisted::Beyond, Unlisted::Changed)
                );
            };
            let Key::Map(key) = &op.key else {
                return Err(Unlisted::Beyond);
            };
            let key = key.to_string();
            match op.action {
                OpType::Make(ObjType::Map) if op.pred.is_empty() => {}
                OpType::Delete => return Err(Unlisted::Removed(key)),
                _ => return Err(Unlisted::Changed(key)),
            }
            // Beside an entry already there: the same kind, not archived.
            let Ok(Some((Value::Object(ObjType::Map), was))) =
                club.get_at(index, key.as_str(), before)
            else {
                continue;
            };
            let OpId(counter, actor_id) = id_of(*start, actor, i);
            let listed = ObjId::Id(counter, actor_id, 0);
            let text = |obj: &ObjId, at: Option<&[ChangeHash]>, field: &str| {
                let got = match at {
                    Some(heads) => club.get_at(obj, field, heads),
                    None => club.get(obj, field),
                };
                match got {
                    Ok(Some((Value::Scalar(v), _))) => Some(v.to_string()),
                    _ => None,
                }
            };
            let archived = matches!(
                club.get(&listed, "archived"),
                Ok(Some((Value::Scalar(v), _))) if v.as_bool() != Some(false)
            );
            if archived || text(&listed, None, "kind") != text(&was, Some(before), "kind") {
                return Err(Unlisted::Changed(key));
            }
        }
    }
    Ok(())
}

/// The index key of the entry `obj` lies in, if it lies in one.
fn inside_entry(club: &Automerge, obj: &ObjectId, index: &[(ObjectId, ObjId)]) -> Option<String> {
    let ObjectId::Id(OpId(counter, actor)) = obj else {
        return None;
    };
    let parents = club.parents(ObjId::Id(*counter, actor.clone(), 0)).ok()?;
    parents
        .into_iter()
        .find(|p| index.iter().any(|(_, id)| *id == p.obj))
        .and_then(|p| match p.prop {
            automerge::Prop::Map(key) => Some(key),
            automerge::Prop::Seq(_) => None,
        })
}
