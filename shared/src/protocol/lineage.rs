//! What every Automerge writer's changes satisfy, and Automerge 0.12 takes
//! on trust from a peer: how a change's op counters and sequence number
//! follow from the changes it depends on. A change that breaks these
//! applies without an error, and then the record cannot be saved whole
//! (its saved form does not load), or saving it panics. The engine checks
//! the changes a payload brings on the scratch copy, before the copy
//! replaces the record.
//!
//! Automerge writes a change's ops with counters from one past the highest
//! counter the document held (`start_op`), so past every op of every change
//! it depends on. Its sequence number is one past its author's previous
//! change, which it depends on. A change made at older heads
//! (`isolate`, JavaScript's `changeAt`) starts past the whole document, not
//! just its dependencies, and under a fresh author, so it passes too.

use std::collections::{HashMap, HashSet, VecDeque};

use automerge::{Automerge, ChangeHash, ChangeMetadata};

/// The most changes the search for authors' previous changes visits for
/// one payload. An author's previous change is normally one of its
/// dependencies (Automerge 0.12 makes it one); older writers reach it
/// through the changes since, which in this club's records are hundreds.
const MAX_VISITS: usize = 100_000;

/// Checks `new`, the changes `doc` holds past the heads `before`, in the
/// order Automerge lists them (each after its dependencies). Says which
/// change breaks which rule.
pub fn check_lineage(
    doc: &Automerge,
    before: &[ChangeHash],
    new: &[ChangeMetadata<'_>],
) -> Result<(), String> {
    let by_hash: HashMap<ChangeHash, usize> =
        new.iter().enumerate().map(|(i, c)| (c.hash, i)).collect();
    // What the search needs of a change: its author, sequence number,
    // highest op counter and dependencies.
    let meta = |hash: &ChangeHash| -> Option<Lineage> {
        match by_hash.get(hash) {
            Some(&i) => Some(Lineage::of(&new[i])),
            None => doc.get_change_meta_by_hash(hash).map(|c| Lineage::of(&c)),
        }
    };
    // The highest op counter held: the document's before (its heads'
    // highest, as counters only grow from a change to those after it),
    // then with each new change in turn.
    let mut highest = before
        .iter()
        .filter_map(|h| doc.get_change_meta_by_hash(h))
        .map(|c| c.max_op)
        .max()
        .unwrap_or(0);
    let mut visits = 0;
    for change in new {
        // Automerge keeps op counters in 32 bits.
        if change.max_op >= u64::from(u32::MAX) {
            return Err(format!(
                "change {} has op counters up to {}, past what Automerge can keep",
                change.hash, change.max_op
            ));
        }
        // A writer starts past the highest counter it holds, so one it
        // could have held: the record's, or one from this same payload.
        // Further on, a peer could use up the counters and leave the
        // record unable to take another op.
        if change.start_op > highest.saturating_add(1) {
            return Err(format!(
                "change {} starts at op {}, past any op counter it could have seen (the highest is {highest})",
                change.hash, change.start_op
            ));
        }
        highest = highest.max(change.max_op);
        // The author's previous change, if it is a dependency itself.
        let mut previous = None;
        for dep in &change.deps {
            let Some(dep_meta) = meta(dep) else { continue };
            if dep_meta.max_op >= change.start_op {
                return Err(format!(
                    "change {} starts at op {}, but the change {dep} it depends on reached op {}",
                    change.hash, change.start_op, dep_meta.max_op
                ));
            }
            if dep_meta.actor == *change.actor && dep_meta.seq + 1 == change.seq {
                previous = Some(dep_meta);
            }
        }
        if change.seq <= 1 {
            continue;
        }
        let previous = previous.or_else(|| previous_change(change, &meta, &mut visits));
        let previous = previous.ok_or_else(|| {
            if visits >= MAX_VISITS {
                format!(
                    "change {} is too far from its author's previous change to check (over {MAX_VISITS} changes)",
                    change.hash
                )
            } else {
                format!(
                    "change {} is its author's change {}, but does not depend on the author's change {}",
                    change.hash,
                    change.seq,
                    change.seq - 1
                )
            }
        })?;
        if previous.max_op >= change.start_op {
            return Err(format!(
                "change {} starts at op {}, but its author's previous change reached op {}",
                change.hash, change.start_op, previous.max_op
            ));
        }
    }
    Ok(())
}

/// A change's place in its author's line, and its dependencies.
struct Lineage {
    actor: automerge::ActorId,
    seq: u64,
    max_op: u64,
    deps: Vec<ChangeHash>,
}

impl Lineage {
    fn of(change: &ChangeMetadata<'_>) -> Self {
        Self {
            actor: change.actor.clone().into_owned(),
            seq: change.seq,
            max_op: change.max_op,
            deps: change.deps.clone(),
        }
    }
}

/// The author's change before `change`, found among its ancestors nearest
/// first; `None` if it is not one of them, or if the search has spent its
/// visits. A change by the same author with a lower sequence number ends
/// its branch of the search: the one sought comes after it.
fn previous_change(
    change: &ChangeMetadata<'_>,
    meta: &impl Fn(&ChangeHash) -> Option<Lineage>,
    visits: &mut usize,
) -> Option<Lineage> {
    let mut queue: VecDeque<ChangeHash> = change.deps.iter().copied().collect();
    let mut seen: HashSet<ChangeHash> = queue.iter().copied().collect();
    while let Some(hash) = queue.pop_front() {
        if *visits >= MAX_VISITS {
            return None;
        }
        *visits += 1;
        let Some(found) = meta(&hash) else { continue };
        if found.actor == *change.actor {
            if found.seq + 1 == change.seq {
                return Some(found);
            }
            if found.seq < change.seq {
                continue;
            }
        }
        for dep in &found.deps {
            if seen.insert(*dep) {
                queue.push_back(*dep);
            }
        }
    }
    None
}
