//! What changed in a record between two sets of heads, field by field: each
//! field as it read before and after, and for text the passages added and
//! removed. The server shows a quarantined batch this way, and the app a
//! run of changes in a record's history.

use std::time::Duration;

use automerge::{Automerge, ChangeHash};
use serde::Serialize;
use serde_json::Value as Json;
use similar::{ChangeTag, TextDiff};

use super::changed_paths;

/// Characters of unchanged text kept on each side of a change.
pub const CONTEXT: usize = 60;

/// One field that changed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldChange {
    /// The record path, such as `/status` or `/milestones/<id>/due`; a
    /// set, or a list whose items have no id, is shown whole (`/attendees`).
    pub path: String,
    /// The value before and after; `null` where there is none.
    pub before: Json,
    pub after: Json,
    /// For a text before and after that differ: the passages, unchanged
    /// ones cut to their ends (`…` marks a cut).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<Vec<Passage>>,
}

/// A run of text, as it stands in the diff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Passage {
    /// `same`, `added` or `removed`.
    pub kind: &'static str,
    pub text: String,
}

/// The fields that differ between `before` and `after` (heads both in
/// `doc`), whose records read as `old` and `new` (`null` where a side
/// does not read). Each text diff stops refining after `timeout`: past it,
/// whole runs are shown replaced. (In the browser `similar` reads the time
/// through JavaScript: its `wasm32_web_time` feature.)
pub fn field_changes(
    doc: &Automerge,
    before: &[ChangeHash],
    after: &[ChangeHash],
    old: &Json,
    new: &Json,
    timeout: Duration,
) -> Vec<FieldChange> {
    let mut paths: Vec<String> = Vec::new();
    for path in changed_paths(doc, before, after) {
        // An item's removal mark, which readers never show, is shown as
        // the item itself, there or gone.
        let path = match path.strip_suffix("/removed") {
            Some(item) if item.matches('/').count() == 2 => item.to_owned(),
            _ => path,
        };
        // As far as either side names it: an item added or removed is
        // named by the side that holds it.
        let shown = [shown_path(new, &path), shown_path(old, &path)]
            .into_iter()
            .flatten()
            .max_by_key(String::len)
            .unwrap_or(path);
        let shown = item_come_or_gone(old, new, &shown).unwrap_or(shown);
        if !paths.contains(&shown) {
            paths.push(shown);
        }
    }
    // A list that only gained or lost items is shown by those items.
    let lists: Vec<String> = paths
        .iter()
        .filter(|p| only_items_come_or_gone(old, new, p, &paths))
        .cloned()
        .collect();
    paths.retain(|p| !lists.contains(p));
    paths
        .into_iter()
        .map(|path| {
            let before = value_at(old, &path).cloned().unwrap_or(Json::Null);
            let after = value_at(new, &path).cloned().unwrap_or(Json::Null);
            let text = match (&before, &after) {
                (Json::String(a), Json::String(b)) if a != b => Some(passages(a, b, timeout)),
                _ => None,
            };
            FieldChange {
                path,
                before,
                after,
                text,
            }
        })
        .collect()
}

/// `/<list>/<id>` for a path inside an item only one side holds: an item
/// added or gone is one change, not one for each of its fields.
fn item_come_or_gone(old: &Json, new: &Json, path: &str) -> Option<String> {
    let mut parts = path.split('/').skip(1);
    let (list, id) = (parts.next()?, parts.next()?);
    parts.next()?;
    let item_path = format!("/{list}/{id}");
    let held = |record: &Json| value_at(record, &item_path).is_some();
    let is_list = |record: &Json| matches!(record.get(list), Some(Json::Array(_)));
    ((is_list(old) || is_list(new)) && held(old) != held(new)).then_some(item_path)
}

/// Whether `path` names a list whose change `paths` shows as items come
/// or gone, the others standing in the order they stood.
fn only_items_come_or_gone(old: &Json, new: &Json, path: &str, paths: &[String]) -> bool {
    let Some(list) = path.strip_prefix('/').filter(|l| !l.contains('/')) else {
        return false;
    };
    let ids = |record: &Json| -> Option<Vec<String>> {
        match record.get(list) {
            Some(Json::Array(items)) => items
                .iter()
                .map(|i| i.get("id")?.as_str().map(str::to_owned))
                .collect(),
            None | Some(Json::Null) => Some(Vec::new()),
            Some(_) => None,
        }
    };
    let (Some(before), Some(after)) = (ids(old), ids(new)) else {
        return false;
    };
    let prefix = format!("/{list}/");
    let shown: Vec<&str> = paths
        .iter()
        .filter_map(|p| p.strip_prefix(&prefix))
        .filter(|id| !id.contains('/'))
        .collect();
    let stayed = |ids: &[String], other: &[String]| -> Vec<String> {
        ids.iter().filter(|i| other.contains(i)).cloned().collect()
    };
    let changed_by_items = before
        .iter()
        .chain(&after)
        .filter(|i| !(before.contains(i) && after.contains(i)))
        .all(|i| shown.contains(&i.as_str()));
    !shown.is_empty() && changed_by_items && stayed(&before, &after) == stayed(&after, &before)
}

/// The value at a record path: map keys by name, list items by their id.
fn value_at<'a>(record: &'a Json, path: &str) -> Option<&'a Json> {
    path.split('/')
        .skip(1)
        .try_fold(record, |value, part| match value {
            Json::Object(map) => map.get(part),
            Json::Array(items) => item(items, part),
            _ => None,
        })
}

/// The list item whose `id` is `id`.
fn item<'a>(items: &'a [Json], id: &str) -> Option<&'a Json> {
    items
        .iter()
        .find(|i| i.get("id").and_then(Json::as_str) == Some(id))
}

/// `path` as far as `record` names it by keys and item ids: a member of a
/// set (`/attendees/<link>`, read as a list of strings) or an item named
/// by its index (`/agenda/#2`) stops at the field. `None` if the path
/// leaves the record.
fn shown_path(record: &Json, path: &str) -> Option<String> {
    let mut value = record;
    let mut shown = String::new();
    for part in path.split('/').skip(1) {
        value = match value {
            Json::Object(map) => map.get(part)?,
            Json::Array(items) => match item(items, part) {
                Some(item) => item,
                None => return Some(shown),
            },
            _ => return Some(shown),
        };
        shown.push('/');
        shown.push_str(part);
    }
    Some(shown)
}

/// The word diff of two texts, unchanged runs cut to `CONTEXT` characters
/// at each end that meets a change.
fn passages(before: &str, after: &str, timeout: Duration) -> Vec<Passage> {
    let diff = TextDiff::configure()
        .timeout(timeout)
        .diff_words(before, after);
    let mut out: Vec<Passage> = Vec::new();
    for change in diff.iter_all_changes() {
        let kind = match change.tag() {
            ChangeTag::Equal => "same",
            ChangeTag::Insert => "added",
            ChangeTag::Delete => "removed",
        };
        match out.last_mut() {
            Some(last) if last.kind == kind => last.text.push_str(change.value()),
            _ => out.push(Passage {
                kind,
                text: change.value().to_owned(),
            }),
        }
    }
    let count = out.len();
    for (i, p) in out.iter_mut().enumerate() {
        if p.kind == "same" {
            p.text = cut(&p.text, i > 0, i + 1 < count);
        }
    }
    out
}

/// `text` with only `CONTEXT` characters kept at the end after a change
/// (`head`) and at the start before one (`tail`). Characters as a person
/// counts them (grapheme clusters): a voweled Arabic letter is never parted
/// from its vowel, which would show alone on a dotted circle.
fn cut(text: &str, head: bool, tail: bool) -> String {
    use unicode_segmentation::UnicodeSegmentation;
    let chars: Vec<&str> = text.graphemes(true).collect();
    let keep = CONTEXT * (usize::from(head) + usize::from(tail));
    if chars.len() <= keep + 1 {
        return text.to_owned();
    }
    let mut out = String::new();
    if head {
        out.extend(chars[..CONTEXT].iter().copied());
    }
    out.push('…');
    if tail {
        out.extend(chars[chars.len() - CONTEXT..].iter().copied());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_never_parts_a_letter_from_its_vowel() {
        // Each ب carries a fatha: two chars, one character, between two
        // bare alefs, so that a cut by chars falls inside a letter.
        let voweled = format!("ا{}ا", "بَ".repeat(CONTEXT * 3));
        for (head, tail) in [(true, true), (false, true), (true, false)] {
            let kept = cut(&voweled, head, tail);
            for part in kept.split('…').filter(|p| !p.is_empty()) {
                assert!(!part.starts_with('\u{064e}'), "{part:?}");
                assert_eq!(
                    part.matches('ب').count(),
                    part.matches('\u{064e}').count(),
                    "{part:?}"
                );
            }
        }
    }

    #[test]
    fn a_short_unchanged_run_between_two_changes_is_kept_whole_and_a_long_one_cut() {
        let short = "b".repeat(2 * CONTEXT + 1);
        assert_eq!(cut(&short, true, true), short);
        let (a, c) = ("a".repeat(CONTEXT), "c".repeat(CONTEXT));
        let long = format!("{a}xx{c}");
        assert_eq!(cut(&long, true, true), format!("{a}…{c}"));
        assert_eq!(cut(&long, false, true), format!("…{c}"));
        assert_eq!(cut(&long, true, false), format!("{a}…"));
    }
}
