//! Changes the engine will not take from one peer: those the server
//! refused and kept for review ([`DocSync::withhold`]), and those the peer
//! sent since that build on them.
//!
//! A delegate whose change was refused goes on typing, and each change
//! after it depends on it. Without this, the engine lacked a dependency of
//! every such change, asked for it with a fresh exchange, and the phone sent
//! the refused change and everything since again, to be refused and
//! quarantined again: traffic grew with the square of the edits made after
//! one refusal. Now a change that builds on a withheld one is withheld as it
//! arrives, without a check, and the peer's heads are read as the nearest
//! changes below them that are not withheld, so no message asks for what we
//! will not take.
//!
//! [`DocSync::withhold`]: super::DocSync::withhold

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use automerge::sync;
use automerge::{Automerge, Change, ChangeHash};

use crate::record::{changes_in, holds, holds_all};

/// The most changes withheld from one peer. Past it, or for a change whose
/// place cannot be told in a few hashes, the set is dropped and the peer's
/// changes are all checked (and refused) again, as before there was one.
pub const MAX_WITHHELD: usize = 16_384;

/// The most hashes a withheld change's frontier may hold: a phone's change
/// depends on its heads, one or a few.
const MAX_FRONTIER: usize = 16;

/// The most hashes the frontiers withheld from one peer may hold, those
/// shared along a chain counted once: a withheld change is only parsed, so
/// a hostile peer could give each of many changes a wide one.
const MAX_FRONTIER_HASHES: usize = 16_384;

/// A frontier, shared along a chain of changes: each of a phone's changes
/// depends on the one before, and has the same.
type Frontier = Arc<[ChangeHash]>;

/// Each withheld change with its frontier: the changes, not withheld when
/// it was, that it reaches through withheld ones alone; and how many
/// hashes the frontiers hold (see [`MAX_FRONTIER_HASHES`]).
#[derive(Debug, Default, Clone)]
pub(super) struct Withheld(BTreeMap<ChangeHash, Frontier>, usize);

impl Withheld {
    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(super) fn clear(&mut self) {
        self.0.clear();
        self.1 = 0;
    }

    /// Whether `doc` now holds one of them: the refused change came in by
    /// another way (a coordinator accepted it).
    pub(super) fn any_held(&self, doc: &Automerge) -> bool {
        self.0.keys().any(|h| holds(doc, h))
    }

    /// Withholds refused `changes`, each with its dependencies, in the
    /// order applied (each after those it depends on). All or none; false
    /// if none (past [`MAX_WITHHELD`], or a frontier too wide).
    pub(super) fn refuse(&mut self, changes: &[(ChangeHash, Vec<ChangeHash>)]) -> bool {
        if self.0.len() + changes.len() > MAX_WITHHELD {
            return false;
        }
        let (mut added, mut spent) = (BTreeMap::new(), 0);
        for (hash, deps) in changes {
            let Some(frontier) = self.frontier(deps, &added, &mut spent) else {
                return false;
            };
            added.insert(*hash, frontier);
        }
        self.0.extend(added);
        self.1 += spent;
        true
    }

    /// The frontier of a change with one dependency, withheld: the same.
    fn shared(
        &self,
        deps: &[ChangeHash],
        added: &BTreeMap<ChangeHash, Frontier>,
    ) -> Option<Frontier> {
        match deps {
            [dep] => added.get(dep).or_else(|| self.0.get(dep)).cloned(),
            _ => None,
        }
    }

    /// `hashes` with every withheld one replaced by its frontier, until
    /// none is withheld (a frontier can name a change withheld since),
    /// sorted. Each withheld change is looked at once.
    fn resolve(
        &self,
        hashes: impl IntoIterator<Item = ChangeHash>,
        added: &BTreeMap<ChangeHash, Frontier>,
    ) -> Vec<ChangeHash> {
        let mut todo: Vec<ChangeHash> = hashes.into_iter().collect();
        let (mut seen, mut out) = (BTreeSet::new(), BTreeSet::new());
        while let Some(h) = todo.pop() {
            if !seen.insert(h) {
                continue;
            }
            match added.get(&h).or_else(|| self.0.get(&h)) {
                Some(frontier) => todo.extend(frontier.iter().copied()),
                None => {
                    out.insert(h);
                }
            }
        }
        out.into_iter().collect()
    }

    /// A frontier for a change with `deps`: shared with its one withheld
    /// dependency, or resolved and counted in `spent`; `None` if wider than
    /// [`MAX_FRONTIER`], or past [`MAX_FRONTIER_HASHES`] in all.
    fn frontier(
        &self,
        deps: &[ChangeHash],
        added: &BTreeMap<ChangeHash, Frontier>,
        spent: &mut usize,
    ) -> Option<Frontier> {
        if let Some(shared) = self.shared(deps, added) {
            return Some(shared);
        }
        let resolved = self.resolve(deps.iter().copied(), added);
        let total = self.1 + *spent + resolved.len();
        if resolved.len() > MAX_FRONTIER || total > MAX_FRONTIER_HASHES {
            return None;
        }
        *spent += resolved.len();
        Some(resolved.into())
    }

    /// Takes out of `message` the changes already withheld, and those that
    /// build on them, which are withheld from now on; returns the latter.
    /// Then reads its heads through the withheld changes (see
    /// [`Withheld::masked_heads`]). Entries it cannot read whole (a saved
    /// document, a chunk that does not parse) are left as they are. If a
    /// change builds on a withheld one but cannot be withheld (no room, or
    /// it depends on changes neither held, withheld nor in the message),
    /// the set is dropped and the message left whole: all of it is then
    /// checked, as before there was a set.
    pub(super) fn filter(
        &mut self,
        doc: &Automerge,
        message: &mut sync::Message,
    ) -> Vec<ChangeHash> {
        if self.0.is_empty() {
            return Vec::new();
        }
        let fresh = if message.changes.is_empty() {
            Vec::new()
        } else {
            match self.take_out(doc, message) {
                Some(fresh) => fresh,
                None => {
                    self.0.clear();
                    return Vec::new();
                }
            }
        };
        message.heads = self.masked_heads(doc, &message.heads);
        fresh
    }

    /// [`Withheld::filter`]'s changes; `None` if one cannot be withheld.
    fn take_out(
        &mut self,
        doc: &Automerge,
        message: &mut sync::Message,
    ) -> Option<Vec<ChangeHash>> {
        let entries: Vec<(&[u8], Option<Vec<Change>>)> = message
            .changes
            .iter()
            .map(|entry| (entry, read_changes(entry)))
            .collect();
        let changes: HashMap<ChangeHash, &Change> = entries
            .iter()
            .filter_map(|(_, c)| c.as_ref())
            .flatten()
            .map(|c| (c.hash(), c))
            .collect();
        // The message's changes that build on withheld ones, found in one
        // walk from those withheld outwards.
        let mut dependents: HashMap<ChangeHash, Vec<ChangeHash>> = HashMap::new();
        let mut todo = Vec::new();
        for c in changes.values() {
            for dep in c.deps() {
                if self.0.contains_key(dep) {
                    todo.push(c.hash());
                } else if changes.contains_key(dep) {
                    dependents.entry(*dep).or_default().push(c.hash());
                }
            }
            if self.0.contains_key(&c.hash()) {
                todo.push(c.hash());
            }
        }
        let mut out: BTreeSet<ChangeHash> = BTreeSet::new();
        while let Some(h) = todo.pop() {
            if out.insert(h) {
                todo.extend(dependents.get(&h).into_iter().flatten().copied());
            }
        }
        if out.is_empty() {
            return Some(Vec::new());
        }
        let fresh: Vec<ChangeHash> = out
            .iter()
            .filter(|h| !self.0.contains_key(h))
            .copied()
            .collect();
        if self.0.len() + fresh.len() > MAX_WITHHELD {
            return None;
        }
        // Their frontiers, each after those it depends on (Kahn's order):
        // a change is ready once every fresh change it depends on is done.
        let fresh_set: BTreeSet<ChangeHash> = fresh.iter().copied().collect();
        let mut blocking: HashMap<ChangeHash, usize> = HashMap::new();
        let mut ready = Vec::new();
        for h in &fresh {
            let deps = changes[h].deps();
            // Every other dependency must be held or on its way in.
            if !deps.iter().all(|d| {
                self.0.contains_key(d)
                    || out.contains(d)
                    || holds(doc, d)
                    || changes.contains_key(d)
            }) {
                return None;
            }
            let n = deps.iter().filter(|d| fresh_set.contains(d)).count();
            if n == 0 {
                ready.push(*h);
            } else {
                blocking.insert(*h, n);
            }
        }
        let (mut added, mut spent) = (BTreeMap::new(), 0);
        while let Some(h) = ready.pop() {
            let frontier = self.frontier(changes[&h].deps(), &added, &mut spent)?;
            added.insert(h, frontier);
            for next in dependents.get(&h).into_iter().flatten() {
                if let Some(n) = blocking.get_mut(next) {
                    *n -= 1;
                    if *n == 0 {
                        blocking.remove(next);
                        ready.push(*next);
                    }
                }
            }
        }
        if added.len() != fresh.len() {
            return None;
        }
        self.0.extend(added);
        self.1 += spent;
        let kept: Vec<Vec<u8>> = entries
            .into_iter()
            .filter_map(|(bytes, changes)| match changes {
                Some(changes) if changes.iter().any(|c| out.contains(&c.hash())) => {
                    let joined: Vec<u8> = changes
                        .iter()
                        .filter(|c| !out.contains(&c.hash()))
                        .flat_map(|c| c.raw_bytes().iter().copied())
                        .collect();
                    (!joined.is_empty()).then_some(joined)
                }
                _ => Some(bytes.to_vec()),
            })
            .collect();
        message.changes = kept.into();
        Some(fresh)
    }

    /// A peer's heads as seen through the changes withheld from it: each
    /// withheld head is replaced by its frontier. If what remains reaches
    /// all of our changes, our heads, so that Automerge finds the two of
    /// us level and stops.
    pub(super) fn masked_heads(&self, doc: &Automerge, heads: &[ChangeHash]) -> Vec<ChangeHash> {
        if !heads.iter().any(|h| self.0.contains_key(h)) {
            return heads.to_vec();
        }
        let seen = self.resolve(heads.iter().copied(), &BTreeMap::new());
        let ours = doc.get_heads();
        if seen == ours || (holds_all(doc, &seen) && doc.get_changes_meta(&seen).is_empty()) {
            return ours;
        }
        seen
    }
}

/// The changes one entry of a sync message holds, if it holds changes
/// alone and each parses.
fn read_changes(entry: &[u8]) -> Option<Vec<Change>> {
    changes_in(entry).filter(|changes| !changes.is_empty())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a test panics to fail

    use automerge::sync::{Message, MessageVersion};
    use automerge::transaction::Transactable;
    use automerge::{ActorId, AutoCommit, ROOT};

    use super::*;

    /// A record the server holds, and a phone's copy of it.
    fn server_and_phone() -> (Automerge, AutoCommit) {
        let mut base = AutoCommit::new().with_actor(ActorId::from([1u8]));
        base.put(ROOT, "status", "draft").unwrap();
        base.commit();
        let phone = base.fork().with_actor(ActorId::from([2u8]));
        (base.document().clone(), phone)
    }

    fn put(doc: &mut AutoCommit, key: &str, value: i64) -> Change {
        doc.put(ROOT, key, value).unwrap();
        let hash = doc.commit().unwrap();
        doc.get_change_by_hash(&hash).unwrap()
    }

    fn message(heads: Vec<ChangeHash>, changes: &[&Change]) -> Message {
        Message {
            heads,
            need: Vec::new(),
            have: Vec::new(),
            changes: changes
                .iter()
                .map(|c| c.raw_bytes().to_vec())
                .collect::<Vec<_>>()
                .into(),
            flags: None,
            version: MessageVersion::V1,
        }
    }

    fn refused(w: &mut Withheld, change: &Change) {
        assert!(w.refuse(&[(change.hash(), change.deps().to_vec())]));
    }

    /// A chain typed on a refused change, sent in any order, is all taken
    /// out, and the phone's heads read as the server's.
    #[test]
    fn a_chain_on_a_refused_change_is_taken_out_whatever_its_order() {
        let (server, mut phone) = server_and_phone();
        let mut w = Withheld::default();
        let q = put(&mut phone, "status", 1);
        refused(&mut w, &q);
        let chain: Vec<Change> = (2..202).map(|i| put(&mut phone, "status", i)).collect();
        // In the order of their hashes, which is no order of the chain's.
        let mut shuffled: Vec<&Change> = chain.iter().collect();
        shuffled.sort_by_key(|c| std::cmp::Reverse(c.hash()));
        let mut m = message(phone.get_heads(), &shuffled);
        let fresh = w.filter(&server, &mut m);
        assert_eq!(fresh.len(), 200);
        assert!(m.changes.is_empty());
        assert_eq!(m.heads, server.get_heads());
        // Each shares one frontier: a chain costs a pointer a change.
        let first = &w.0[&q.hash()];
        assert!(chain.iter().all(|c| Arc::ptr_eq(&w.0[&c.hash()], first)));
        // Sent again, they are dropped and not counted twice.
        let mut again = message(phone.get_heads(), &[&chain[0]]);
        assert!(w.filter(&server, &mut again).is_empty());
        assert!(again.changes.is_empty());
    }

    /// A change of the phone's own beside the chain goes through; the heads
    /// keep it.
    #[test]
    fn a_change_that_does_not_build_on_a_refused_one_stays() {
        let (server, mut phone) = server_and_phone();
        let mut w = Withheld::default();
        let mut tab = phone.fork().with_actor(ActorId::from([3u8]));
        let q = put(&mut phone, "status", 1);
        refused(&mut w, &q);
        let own = put(&mut tab, "notes", 1);
        phone.merge(&mut tab).unwrap();
        let r = put(&mut phone, "status", 2);
        let mut m = message(phone.get_heads(), &[&own, &r]);
        assert_eq!(w.filter(&server, &mut m), vec![r.hash()]);
        let kept: Vec<&[u8]> = m.changes.iter().collect();
        assert_eq!(kept, vec![own.raw_bytes()]);
        let mut expected = server.get_heads();
        expected.push(own.hash());
        expected.sort();
        assert_eq!(m.heads, expected);
    }

    /// A change whose place takes more hashes than a phone's heads ever do
    /// ends the set: the message stays whole, to be checked as before.
    #[test]
    fn a_change_too_wide_to_place_drops_the_set_and_is_checked() {
        let (server, mut phone) = server_and_phone();
        let mut w = Withheld::default();
        let q = put(&mut phone, "status", 1);
        refused(&mut w, &q);
        let mut branches = Vec::new();
        for i in 0..(MAX_FRONTIER as u8 + 2) {
            let mut tab = AutoCommit::load(&server.save()).unwrap();
            tab.set_actor(ActorId::from([10 + i]));
            branches.push(put(&mut tab, &format!("b{i}"), 1));
            phone.merge(&mut tab).unwrap();
        }
        let wide = put(&mut phone, "status", 2);
        assert!(wide.deps().len() > MAX_FRONTIER);
        let mut all: Vec<&Change> = branches.iter().collect();
        all.push(&wide);
        let mut m = message(phone.get_heads(), &all);
        let sent = m.changes.len();
        assert!(w.filter(&server, &mut m).is_empty());
        assert!(w.is_empty());
        assert_eq!(m.changes.len(), sent);
    }

    /// A frontier that names a change refused later is read through it.
    #[test]
    fn heads_are_read_through_changes_refused_after_them() {
        let (server, mut phone) = server_and_phone();
        let mut w = Withheld::default();
        let mut tab = phone.fork().with_actor(ActorId::from([3u8]));
        let q = put(&mut phone, "status", 1);
        refused(&mut w, &q);
        let y = put(&mut tab, "notes", 1);
        phone.merge(&mut tab).unwrap();
        let c = put(&mut phone, "status", 2);
        let mut m = message(phone.get_heads(), &[&y, &c]);
        assert_eq!(w.filter(&server, &mut m), vec![c.hash()]);
        // y was then checked and refused too.
        refused(&mut w, &y);
        assert_eq!(w.masked_heads(&server, &[c.hash()]), server.get_heads());
    }
}
