//! A record's history: who changed what and when, and the record as it
//! stood at a moment.

use std::collections::{HashMap, HashSet};

use automerge::patches::PatchAction;
use automerge::{Automerge, ChangeHash, ObjType, Prop, ReadDoc, Value};
use serde::Serialize;

use super::path::says_removed;
use super::schema::ITEM_REMOVED;

/// One change in a record's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HistoryEntry {
    /// The change hash, hex.
    pub hash: String,
    /// The writer's actor id, hex.
    pub actor: String,
    pub seq: u64,
    /// Seconds since the epoch, as the writer's clock said.
    pub time: i64,
    pub message: Option<String>,
    pub deps: Vec<String>,
    /// The paths the change touched, e.g. `/status`, `/milestones/<id>/status`.
    pub fields: Vec<String>,
}

/// The fields each change touched, kept from one reading of a log to the
/// next: a change never changes, and finding what it touched is a diff
/// over the record, which a log read again after each keystroke someone
/// typed (a coordinator watching minutes being taken) would pay for every
/// change each time.
#[derive(Debug, Default)]
pub struct TouchedFields(HashMap<ChangeHash, Vec<String>>);

impl TouchedFields {
    /// How many changes' fields are kept.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Keeps `fields` as what the change `hash` touched.
    pub fn insert(&mut self, hash: ChangeHash, fields: Vec<String>) {
        self.0.insert(hash, fields);
    }
}

pub(crate) fn log(doc: &Automerge, known: &mut TouchedFields) -> Vec<HistoryEntry> {
    let metas = doc.get_changes_meta(&[]);
    let unknown = metas
        .iter()
        .filter(|c| !known.0.contains_key(&c.hash))
        .count();
    if unknown >= TEXT_ONLY_AFTER {
        for (hash, fields) in text_only(doc, known) {
            known.0.insert(hash, fields);
        }
    }
    metas
        .into_iter()
        .map(|change| {
            let fields = known
                .0
                .entry(change.hash)
                .or_insert_with(|| touched(doc, &change.deps, change.hash))
                .clone();
            HistoryEntry {
                hash: change.hash.to_string(),
                actor: change.actor.to_hex_string(),
                seq: change.seq,
                time: change.timestamp,
                message: change.message.map(|m| m.into_owned()),
                deps: change.deps.iter().map(ToString::to_string).collect(),
                fields,
            }
        })
        .collect()
}

/// How many changes of a log, whose fields are not known yet, make it worth
/// one pass over the whole record to find those that only type text.
const TEXT_ONLY_AFTER: usize = 16;

/// The fields of the changes `known` does not hold that only insert and
/// delete characters of one text: that text's path. Typing makes a change
/// a keystroke, thousands for one meeting's minutes, and a diff for each
/// (`touched`) is a pass over the record: a log read afresh (a phone
/// restarted, a server asked) was quadratic in them. Here all changes are
/// rebuilt in one pass, and each text's path is found once. A keystroke in
/// a list item's text also marks the item kept (`removed: false`, the old
/// values deleted first): that is no field either, unless the item was
/// removed before, which is looked up for it. Any other change is left
/// out, for `touched`.
fn text_only(doc: &Automerge, known: &TouchedFields) -> Vec<(ChangeHash, Vec<String>)> {
    use automerge::ScalarValue;
    use automerge::legacy::{Key, ObjectId, OpType};
    let mut places: HashMap<ObjectId, Option<TextPlace>> = HashMap::new();
    let mut out = Vec::new();
    for change in doc.get_changes(&[]) {
        let hash = change.hash();
        if known.0.contains_key(&hash) {
            continue;
        }
        let ops = change.decode().operations;
        // The one text typed in, and the one item marked kept, if any.
        let (mut text, mut item): (Option<&ObjectId>, Option<&ObjectId>) = (None, None);
        fn same<'a>(slot: &mut Option<&'a ObjectId>, obj: &'a ObjectId) -> bool {
            *slot.get_or_insert(obj) == obj
        }
        let kept_mark = |key: &Key| matches!(key, Key::Map(k) if k == ITEM_REMOVED.name);
        let typing = ops.iter().all(|op| match &op.action {
            OpType::Put(ScalarValue::Str(_)) if op.insert => same(&mut text, &op.obj),
            OpType::Delete if matches!(op.key, Key::Seq(_)) => same(&mut text, &op.obj),
            OpType::Delete | OpType::Put(ScalarValue::Boolean(false))
                if !op.insert && kept_mark(&op.key) =>
            {
                same(&mut item, &op.obj)
            }
            _ => false,
        });
        let Some(text) = text.filter(|_| typing) else {
            continue;
        };
        let Some(place) = places
            .entry(text.clone())
            .or_insert_with(|| text_place(doc, &text.to_string()))
        else {
            continue;
        };
        if let Some(item) = item {
            // The item marked must be the one holding the text, and not
            // removed before the change: else a diff says what it did.
            let kept_as_typed = doc
                .import_obj(&item.to_string())
                .ok()
                .filter(|marked| place.parent.as_ref() == Some(marked))
                .is_some_and(|marked| !removed_at(doc, &marked, change.deps()));
            if !kept_as_typed {
                continue;
            }
        }
        out.push((hash, vec![place.path.clone()]));
    }
    out
}

/// Where a text object is in the record: its path, as `changed_paths`
/// names it, and the map holding it when that is a list item.
struct TextPlace {
    path: String,
    parent: Option<automerge::ObjId>,
}

/// The place of the text object `obj` (`counter@actor`) as the record
/// shows it now: none if it is no text, or is no longer shown (deleted, or
/// losing a conflict), which `touched` then judges.
fn text_place(doc: &Automerge, obj: &str) -> Option<TextPlace> {
    let (id, ObjType::Text) = doc.import(obj).ok()? else {
        return None;
    };
    let heads = doc.get_heads();
    let mut parts = Vec::new();
    let mut parent = None;
    for (depth, above) in doc.parents(&id).ok()?.enumerate() {
        if !above.visible {
            return None;
        }
        // The map right above the text, unless it is the record itself:
        // the list item the text is in, if any.
        if depth == 0 && above.typ == ObjType::Map && above.obj != automerge::ROOT {
            parent = Some(above.obj.clone());
        }
        parts.push(segment(doc, &above.obj, &above.prop, &heads));
    }
    parts.reverse();
    let path: String = parts.iter().map(|p| format!("/{p}")).collect();
    (!is_bookkeeping(&path)).then_some(TextPlace { path, parent })
}

/// One step of a record path: a map's key, or a list item's stable id.
fn segment(doc: &Automerge, obj: &automerge::ObjId, prop: &Prop, heads: &[ChangeHash]) -> String {
    match prop {
        Prop::Map(key) => key.clone(),
        Prop::Seq(index) => item_name(doc, obj, *index, heads),
    }
}

/// The document's own bookkeeping, which is no field.
fn is_bookkeeping(path: &str) -> bool {
    path == "/schema" || path == "/kind" || path.is_empty()
}

/// The fields a change touched: the paths of the patches from its deps to it.
fn touched(doc: &Automerge, deps: &[ChangeHash], hash: ChangeHash) -> Vec<String> {
    changed_paths(doc, deps, &[hash])
}

/// The record paths that differ between two sets of heads, such as
/// `/status`, `/title/fr` or `/milestones/<item id>/status`.
pub fn changed_paths(doc: &Automerge, before: &[ChangeHash], after: &[ChangeHash]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for patch in doc.diff(before, after) {
        let mut path = String::new();
        for (obj, prop) in &patch.path {
            path.push('/');
            path.push_str(&segment(doc, obj, prop, after));
        }
        match &patch.action {
            // Every change inside a list item marks it kept: bookkeeping
            // (`ITEM_REMOVED`), not a field anyone changed, unless some
            // value says removed before or after (a removal, bringing an
            // item back, a dispute begun or settled: changes that write
            // rules weigh and screens redraw).
            PatchAction::PutMap { key, .. }
            | PatchAction::Conflict {
                prop: Prop::Map(key),
            } if key == ITEM_REMOVED.name
                && !removed_at(doc, &patch.obj, before)
                && !removed_at(doc, &patch.obj, after) =>
            {
                continue;
            }
            PatchAction::PutMap { key, .. } | PatchAction::DeleteMap { key } => {
                path.push('/');
                path.push_str(key);
            }
            PatchAction::Conflict {
                prop: Prop::Map(key),
            } => {
                path.push('/');
                path.push_str(key);
            }
            _ => {}
        }
        // The document's own bookkeeping is not a field.
        if is_bookkeeping(&path) {
            continue;
        }
        if !out.contains(&path) {
            out.push(path);
        }
    }
    out
}

/// Whether any value of `item`'s `removed` mark at `heads` says removed.
fn removed_at(doc: &Automerge, item: &automerge::ObjId, heads: &[ChangeHash]) -> bool {
    doc.get_all_at(item, ITEM_REMOVED.name, heads)
        .unwrap_or_default()
        .iter()
        .any(|(v, _)| says_removed(v))
}

/// A list item's stable id if it has one, else its index.
fn item_name(
    doc: &Automerge,
    list: &automerge::ObjId,
    index: usize,
    heads: &[ChangeHash],
) -> String {
    if let Ok(Some((Value::Object(ObjType::Map), item))) = doc.get_at(list, index, heads)
        && let Ok(Some((Value::Scalar(s), _))) = doc.get_at(&item, "id", heads)
        && let Some(id) = s.as_str()
    {
        return id.to_owned();
    }
    format!("#{index}")
}

/// The heads of the record as it stood at `time`: every change stamped at or
/// before it whose every dependency is too. A change counts as made no
/// earlier than what it builds on: a phone whose clock was behind stamps
/// its edit of 20 November with a date of last year, and that edit must
/// not bring the record as of 20 November into a view of last year. (A
/// clock ahead holds its change, and what builds on it, out of the views
/// of days before its stamp: the view shows less, never later words
/// under an earlier date.)
pub(crate) fn heads_at_time(doc: &Automerge, time: i64) -> Vec<ChangeHash> {
    // Automerge keeps its changes in causal order: each after its deps.
    let changes = doc.get_changes_meta(&[]);
    let mut made: HashMap<ChangeHash, i64> = HashMap::with_capacity(changes.len());
    for c in &changes {
        let after = c.deps.iter().filter_map(|d| made.get(d)).copied();
        made.insert(c.hash, after.fold(c.timestamp, i64::max));
    }
    let deps: HashMap<ChangeHash, &[ChangeHash]> = changes
        .iter()
        .map(|c| (c.hash, c.deps.as_slice()))
        .collect();
    let included: HashSet<ChangeHash> = made
        .iter()
        .filter(|(_, t)| **t <= time)
        .map(|(h, _)| *h)
        .collect();
    let depended: HashSet<ChangeHash> = included
        .iter()
        .flat_map(|h| deps.get(h).copied().unwrap_or_default().iter().copied())
        .collect();
    let mut heads: Vec<ChangeHash> = included.difference(&depended).copied().collect();
    heads.sort();
    heads
}
