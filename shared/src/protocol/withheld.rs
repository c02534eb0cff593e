//! Changes the engine will not take from one peer: those its check refused
//! (the server quarantined them), and those the peer sent since that build
//! on them.
//!
//! A delegate whose change was refused goes on typing, and each change
//! after it depends on it. Without this, the engine lacked a dependency of
//! every such change, asked for it with a fresh exchange, and the phone sent
//! the refused change and everything since again, to be refused and
//! quarantined again: traffic and quarantine rows grew with the square of
//! the edits made after one refusal. Now a change that builds on a withheld
//! one is withheld as it arrives, without a check, and the peer's heads are
//! read as the nearest changes we hold below them, so no message of ours
//! asks for what we will not take.

use std::collections::BTreeMap;

use automerge::sync;
use automerge::{Automerge, Change, ChangeHash};

use crate::record::{DOCUMENT_CHUNK, chunks, holds_all};

/// The most changes withheld from one peer; past it, a change that builds
/// on one is checked (and refused) as before. About 100 bytes each.
pub const MAX_WITHHELD: usize = 4096;

/// Each withheld change with its frontier: the changes we hold that it
/// reaches through withheld ones alone.
#[derive(Debug, Default, Clone)]
pub(super) struct Withheld(BTreeMap<ChangeHash, Vec<ChangeHash>>);

impl Withheld {
    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(super) fn clear(&mut self) {
        self.0.clear();
    }

    /// Whether `doc` now holds one of them: the refused change came in by
    /// another way (a coordinator accepted it).
    pub(super) fn any_held(&self, doc: &Automerge) -> bool {
        self.0.keys().any(|h| crate::record::holds(doc, h))
    }

    /// Withholds `changes`, refused together, in the order applied (each
    /// after its dependencies); `deps` gives a change's dependencies. All
    /// or none: past [`MAX_WITHHELD`], none.
    pub(super) fn refuse(
        &mut self,
        changes: &[ChangeHash],
        deps: impl Fn(&ChangeHash) -> Vec<ChangeHash>,
    ) {
        if self.0.len() + changes.len() > MAX_WITHHELD {
            return;
        }
        for hash in changes {
            let frontier = self.frontier(&deps(hash));
            self.0.insert(*hash, frontier);
        }
    }

    /// The changes we hold that `hashes` reach through withheld ones alone.
    fn frontier(&self, hashes: &[ChangeHash]) -> Vec<ChangeHash> {
        let mut out: Vec<ChangeHash> = hashes
            .iter()
            .flat_map(|h| self.0.get(h).cloned().unwrap_or_else(|| vec![*h]))
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Takes out of `message` the changes already withheld, and those that
    /// build on them, which are withheld from now on; returns the latter.
    /// Then reads its heads through the withheld changes (see
    /// [`Withheld::masked_heads`]). Entries it cannot read whole (a saved
    /// document, a chunk that does not parse) are left as they are.
    pub(super) fn filter(
        &mut self,
        doc: &Automerge,
        message: &mut sync::Message,
    ) -> Vec<ChangeHash> {
        if self.0.is_empty() {
            return Vec::new();
        }
        let mut fresh = Vec::new();
        if !message.changes.is_empty() {
            // Each entry with its changes, or `None` if it stays as it is.
            let mut entries: Vec<(Vec<u8>, Option<Slots>)> = message
                .changes
                .iter()
                .map(|entry| (entry.to_vec(), read_changes(entry)))
                .collect();
            // Until nothing more is withheld, so the order of the changes
            // in the message does not matter.
            loop {
                let before = fresh.len();
                for change in entries
                    .iter_mut()
                    .filter_map(|(_, changes)| changes.as_mut())
                    .flatten()
                {
                    let Some(c) = change.as_ref() else { continue };
                    if self.0.contains_key(&c.hash()) {
                        *change = None;
                    } else if self.0.len() < MAX_WITHHELD
                        && c.deps().iter().any(|d| self.0.contains_key(d))
                    {
                        let frontier = self.frontier(c.deps());
                        self.0.insert(c.hash(), frontier);
                        fresh.push(c.hash());
                        *change = None;
                    }
                }
                if fresh.len() == before {
                    break;
                }
            }
            let kept: Vec<Vec<u8>> = entries
                .into_iter()
                .filter_map(|(bytes, changes)| match changes {
                    None => Some(bytes),
                    Some(changes) if changes.iter().all(Option::is_some) => Some(bytes),
                    Some(changes) => {
                        let joined: Vec<u8> = changes
                            .iter()
                            .flatten()
                            .flat_map(|c| c.raw_bytes().iter().copied())
                            .collect();
                        (!joined.is_empty()).then_some(joined)
                    }
                })
                .collect();
            message.changes = kept.into();
        }
        message.heads = self.masked_heads(doc, &message.heads);
        fresh
    }

    /// A peer's heads as seen through the changes withheld from it: each
    /// withheld head is replaced by its frontier. If what remains reaches
    /// all of our changes, our heads, so that Automerge finds the two of
    /// us level and stops.
    pub(super) fn masked_heads(&self, doc: &Automerge, heads: &[ChangeHash]) -> Vec<ChangeHash> {
        if !heads.iter().any(|h| self.0.contains_key(h)) {
            return heads.to_vec();
        }
        let seen = self.frontier(heads);
        let ours = doc.get_heads();
        if seen == ours || (holds_all(doc, &seen) && doc.get_changes_meta(&seen).is_empty()) {
            return ours;
        }
        seen
    }
}

/// The changes of one entry of a sync message, each in a slot it can be
/// taken out of.
type Slots = Vec<Option<Change>>;

/// The changes one entry of a sync message holds, if it holds changes
/// alone and each parses.
fn read_changes(entry: &[u8]) -> Option<Slots> {
    let mut out = Vec::new();
    let mut length = 0;
    for (kind, chunk) in chunks(entry) {
        let chunk = chunk?;
        if kind == DOCUMENT_CHUNK {
            return None;
        }
        length += chunk.len();
        out.push(Some(Change::from_bytes(chunk.to_vec()).ok()?));
    }
    (length == entry.len() && !out.is_empty()).then_some(out)
}
