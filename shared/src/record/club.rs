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

/// The keys `changes` put in the club's index.
fn indexed_by(club: &Automerge, changes: &[automerge::Change]) -> BTreeSet<String> {
    let indexes: Vec<(u64, ActorId)> = club
        .get_all(ROOT, "index")
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(value, id)| match (value, id) {
            (Value::Object(ObjType::Map), ObjId::Id(counter, actor, _)) => Some((counter, actor)),
            _ => None,
        })
        .collect();
    if indexes.is_empty() {
        return BTreeSet::new();
    }
    let in_index = |obj: &ObjectId| match obj {
        ObjectId::Id(OpId(counter, actor)) => {
            indexes.iter().any(|(c, a)| c == counter && a == actor)
        }
        ObjectId::Root => false,
    };
    changes
        .iter()
        .flat_map(|change| change.decode().operations)
        .filter(|op| !matches!(op.action, OpType::Delete) && in_index(&op.obj))
        .filter_map(|op| match op.key {
            Key::Map(key) => Some(key.to_string()),
            Key::Seq(_) => None,
        })
        .collect()
}
