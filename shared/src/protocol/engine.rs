//! The sync engine: Automerge's sync protocol for one document with any
//! number of peers.
//!
//! The engine holds one [`sync::State`] per peer; the caller holds the
//! document and passes it in, so it can persist new changes between
//! [`DocSync::receive`] and [`DocSync::generate`]: a server must have a
//! change on disk before any message it sends reflects it.

use std::collections::{BTreeMap, BTreeSet};

use automerge::sync::{self, BloomFilter, Capability, Have, MessageFlags, MessageVersion, SyncDoc};
use automerge::{Automerge, Change, ChangeHash, ChangeMetadata, ReadDoc};

use super::Message;
use super::lineage::check_lineage;
use super::withheld::Withheld;
use crate::record::{
    apply_received, holds, holds_all, loads_a_document_with_authors, read_leb128,
    refuse_late_authors, refuse_panics,
};
use crate::{DocumentId, PeerId};

/// Why an incoming sync message was refused. The document is unchanged.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("not an Automerge sync message: {0}")]
    Malformed(String),
    #[error("Automerge refused the sync message: {0}")]
    Refused(#[from] automerge::AutomergeError),
    /// A change that applies, but that no Automerge writer makes and that
    /// would leave the record unsavable (see `lineage`).
    #[error("a change in the sync message does not follow from its dependencies: {0}")]
    Lineage(String),
    /// More ops than the engine takes in one payload (see `weight`).
    #[error("the sync message is too much to take in at once: {0}")]
    TooHeavy(String),
}

impl From<super::weight::WeighError> for SyncError {
    /// Past a bound, too heavy; bytes that do not read, malformed.
    fn from(e: super::weight::WeighError) -> Self {
        match e {
            super::weight::WeighError::Heavy(reason) => SyncError::TooHeavy(reason),
            super::weight::WeighError::Unreadable(reason) => SyncError::Malformed(reason),
        }
    }
}

/// What applying a sync message did to the document.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Received {
    /// The changes that were new to us, in the order applied.
    pub new_changes: Vec<ChangeHash>,
    /// Those changes as Automerge stores them (`save_after` the heads
    /// before), for the caller to keep: empty if there were none.
    pub saved: Vec<u8>,
    /// Changes the message brought that build on changes refused from
    /// this peer: withheld with them, neither applied nor checked.
    pub withheld: Vec<ChangeHash>,
}

/// What [`DocSync::receive_batch`] took in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// For each payload, the changes it was first to bring.
    pub brought: Vec<Vec<ChangeHash>>,
    /// All the new changes as Automerge stores them, as in [`Received`].
    pub saved: Vec<u8>,
}

/// The changes `scratch` holds past `before`, once they pass
/// [`check_lineage`], and those changes rebuilt as Automerge stores them.
/// Rebuilding is where Automerge 0.12 panics on ops a peer made up (a value
/// overwriting an op outside what its change depends on, with a higher
/// counter): better here, on the scratch copy, than when the record is
/// stored, relayed or saved whole. For every way changes from a peer come
/// in: the engine's, and a coordinator's accepting quarantined changes.
pub fn admit_new_changes(
    scratch: &Automerge,
    before: &[ChangeHash],
) -> Result<(Vec<ChangeHash>, Vec<u8>), SyncError> {
    let (hashes, changes) = admit_changes(scratch, before)?;
    Ok((hashes, concatenated(&changes)))
}

/// [`admit_new_changes`], with the changes rebuilt rather than joined.
fn admit_changes(
    scratch: &Automerge,
    before: &[ChangeHash],
) -> Result<(Vec<ChangeHash>, Vec<Change>), SyncError> {
    let new = scratch.get_changes_meta(before);
    let changes = admit_listed(scratch, before, &new)?;
    Ok((new.iter().map(|c| c.hash).collect(), changes))
}

/// Changes as Automerge stores them: their bytes one after the other.
fn concatenated(changes: &[Change]) -> Vec<u8> {
    changes
        .iter()
        .flat_map(|c| c.raw_bytes())
        .copied()
        .collect()
}

/// [`admit_new_changes`] for the new changes already listed (`new`, as
/// `get_changes_meta(before)` lists them): the changes, rebuilt.
fn admit_listed(
    scratch: &Automerge,
    before: &[ChangeHash],
    new: &[ChangeMetadata<'_>],
) -> Result<Vec<Change>, SyncError> {
    check_lineage(scratch, before, new).map_err(SyncError::Lineage)?;
    if new.is_empty() {
        return Ok(Vec::new());
    }
    // `save_after`, keeping the changes to compare: Automerge rebuilds
    // each from the op set, and what is stored must be what was received.
    let changes = refuse_panics(|| Ok(scratch.get_changes(before)))
        .map_err(|e| SyncError::Lineage(format!("its changes cannot be saved again: {e}")))?;
    if changes.len() != new.len() || changes.iter().zip(new).any(|(c, m)| c.hash() != m.hash) {
        return Err(SyncError::Lineage(
            "its changes, saved again, are not the changes received".into(),
        ));
    }
    Ok(changes)
}

#[derive(Debug, Default)]
struct Peer {
    state: sync::State,
    /// The peer asked for the document without having it.
    requested: bool,
    /// We told it we do not have the document; say so only once.
    told_unavailable: bool,
    /// Changes it sent descendants of but not the changes themselves, as
    /// after a Bloom filter false positive: our next messages ask for them
    /// by hash. A fresh exchange alone would not bring them, since our
    /// filter, built from the same changes, would claim them again. Each
    /// with the number of messages that asked for it; at most
    /// [`MAX_WANTED`] hashes, each asked for at most [`MAX_ASKS`] times, as
    /// a hostile peer can name dependencies that do not exist.
    wanted: BTreeMap<ChangeHash, u8>,
    /// The heads our last message to it carried. Automerge also counts as
    /// told the heads a peer reports back equal to ours; but a peer that
    /// sent changes and then spoke again before we answered has not heard
    /// that we hold them, and waits to.
    heads_told: Vec<ChangeHash>,
    /// Our last message to it was Automerge's own answer to what it said,
    /// and it has said nothing unusual since (see [`unusual`]): new changes
    /// may be relayed to it as they are (see [`DocSync::relaying`]).
    relay_ready: bool,
    /// When the hashes sent to it are next trimmed exactly.
    trim: Trim,
    /// The heads of a reset answered as if the peer held the shared heads
    /// its sync state names: the same reset again says it does not (a
    /// stored state it outlived), and is answered as Automerge would.
    reset_from_shared: Option<Vec<ChangeHash>>,
    /// Changes refused from it and kept for review ([`DocSync::withhold`]),
    /// and those it sent since that build on them (see `withheld`): not
    /// taken in again, nor asked for. Kept through [`DocSync::reset_peer`];
    /// cleared, with a fresh exchange, once the document holds one of them.
    withheld: Withheld,
}

/// What a batch changes of one [`Peer`], kept aside until the whole batch
/// is in: the fields of the same names.
#[derive(Default)]
struct PeerDraft {
    state: sync::State,
    requested: bool,
    trim: Trim,
    reset_from_shared: Option<Vec<ChangeHash>>,
}

/// The changes a document took in through the engine since the last
/// [`DocSync::generate`], for relaying them as they came.
#[derive(Debug)]
struct RelayLog {
    /// The document's heads at the last `generate`.
    from: Vec<ChangeHash>,
    /// Its heads after the last change logged.
    to: Vec<ChangeHash>,
    /// The changes in between, in the order applied.
    changes: Vec<Relayed>,
}

/// A change in a [`RelayLog`]: its bytes alone, as a whole `Change` holds
/// more while the change is being stored.
#[derive(Debug)]
struct Relayed {
    hash: ChangeHash,
    bytes: Vec<u8>,
    /// The peer that brought it.
    from: PeerId,
}

impl Relayed {
    fn new(change: &Change, from: PeerId) -> Self {
        Self {
            hash: change.hash(),
            bytes: change.raw_bytes().to_vec(),
            from,
        }
    }
}

/// Sync of one document with every peer it is shared with.
#[derive(Debug)]
pub struct DocSync {
    document_id: DocumentId,
    peers: BTreeMap<PeerId, Peer>,
    /// Peers whose state changed since the last `generate`.
    dirty: BTreeSet<PeerId>,
    /// The document's heads at the last `generate`. While they stay, a peer
    /// whose state did not change has nothing new to hear, and Automerge's
    /// `generate_sync_message` (which builds a Bloom filter before it
    /// decides) is not asked.
    generated_at: Option<Vec<ChangeHash>>,
    /// The most ops one payload may hold, if bounded (see `weight`).
    max_ops: Option<u64>,
    /// Relaying new changes as they came, if turned on: the changes
    /// taken in since the last `generate`, while they are all there is
    /// between its heads and the document's.
    relay: Option<RelayLog>,
    relaying: bool,
    /// Messages sent by relaying, not by Automerge's `generate_sync_message`.
    relayed: u64,
    /// How many changes the document held at these heads, when last
    /// counted: Automerge 0.12 counts them only by listing every change's
    /// metadata, and the relay log says how many came since.
    counted: Option<(Vec<ChangeHash>, usize)>,
}

/// Bytes a payload may inflate to, per op it may hold: a record's columns
/// take a few bytes an op, and an attachment is one op.
const INFLATED_PER_OP: u64 = 64;

impl DocSync {
    pub fn new(document_id: DocumentId) -> Self {
        Self {
            document_id,
            peers: BTreeMap::new(),
            dirty: BTreeSet::new(),
            generated_at: None,
            max_ops: None,
            relay: None,
            relaying: false,
            relayed: 0,
            counted: None,
        }
    }

    /// Relays the changes taken in since the last [`DocSync::generate`]
    /// to each peer that was up to date, as they came, instead of asking
    /// Automerge what it lacks. Automerge 0.12 answers that by listing
    /// every change since the heads the peer last shared and rebuilding
    /// each one it sends from the op set, a pass over the whole document
    /// per peer: a busy record (fifty delegates typing in one meeting's
    /// minutes) cannot afford that fifty times over for every batch.
    ///
    /// A peer is up to date when our last message to it was Automerge's
    /// own answer to what it said, carrying the heads of the last
    /// `generate`, and it has since said nothing but its heads, one
    /// summary of what it has and its own changes: no need, no reset, no
    /// summary we cannot read. It then lacks at most the changes since,
    /// less those it brought itself, and gets exactly those, with our
    /// heads as the point it has reached and an empty filter, so that it
    /// answers with what only it holds. A change it still lacks (one an
    /// earlier filter of its claimed by mistake) leaves it unable to find
    /// our heads: it sends Automerge's reset, which is answered from the
    /// heads it holds (see [`answer_from_their_heads`]). For a server; a
    /// client has one peer and nothing to relay.
    pub fn relaying(mut self) -> Self {
        self.relaying = true;
        self
    }

    /// How many messages were relayed (see [`DocSync::relaying`]) rather
    /// than generated by Automerge.
    pub fn relayed(&self) -> u64 {
        self.relayed
    }

    /// Notes changes just taken in, which moved the document from `before`
    /// to `after`; a gap (changes made outside the engine) ends relaying
    /// until the next `generate`.
    fn log(
        &mut self,
        before: &[ChangeHash],
        after: Vec<ChangeHash>,
        changes: impl IntoIterator<Item = Relayed>,
    ) {
        match &mut self.relay {
            Some(log) if log.to == before => {
                log.to = after;
                log.changes.extend(changes);
            }
            _ => self.relay = None,
        }
    }

    /// Refuses, before Automerge reads them, payloads holding more than
    /// `max_ops` ops or inflating to more than 64 bytes an op: a peer
    /// could otherwise pack millions of ops into a few kilobytes.
    pub fn with_max_ops(mut self, max_ops: u64) -> Self {
        self.max_ops = Some(max_ops);
        self
    }

    /// Weighs the chunks of a payload (or of several, joined) against
    /// the bound, if there is one.
    fn weigh(&self, chunks: &[u8]) -> Result<(), SyncError> {
        match self.max_ops {
            Some(max) => weigh_bounded(chunks, max).map(|_| ()),
            None => Ok(()),
        }
    }

    pub fn document_id(&self) -> DocumentId {
        self.document_id
    }

    /// Starts syncing with `peer` from `state` (fresh, or as stored after an
    /// earlier connection).
    pub fn add_peer(&mut self, peer: PeerId, state: sync::State) {
        self.dirty.insert(peer.clone());
        self.peers.insert(
            peer,
            Peer {
                heads_told: state.last_sent_heads.clone(),
                state,
                ..Peer::default()
            },
        );
    }

    /// `peer`, which said it takes Automerge's reset flag, may believe it
    /// sent changes that never arrived (they were lost with the server's
    /// task for the document, which failed): the next message carries the
    /// flag, with our heads, and the peer forgets what it sent and sends
    /// whatever we lack, as a peer switching from read-only is asked to.
    /// (Told to a peer Automerge does not know takes the flag, Automerge
    /// would send empty heads instead, and the peer its whole copy.)
    pub fn ask_to_resend(&mut self, peer: &PeerId) {
        if let Some(p) = self.peers.get_mut(peer) {
            p.state.their_capabilities = Some(vec![
                sync::Capability::MessageV2,
                sync::Capability::SyncReset,
            ]);
            p.state.needs_reset = true;
            p.relay_ready = false;
            self.dirty.insert(peer.clone());
        }
    }

    /// `peer` was answered outside this engine for the document as the
    /// server lacked it (`doc-unavailable`, or an empty record's heads):
    /// while the document stays empty, nothing more is said to it; its
    /// first changes are offered as to any peer.
    pub fn told_unavailable(&mut self, peer: &PeerId) {
        if let Some(p) = self.peers.get_mut(peer) {
            p.requested = true;
            p.told_unavailable = true;
        }
    }

    /// The caller refused `changes` from `peer` (as stored: changes one
    /// after the other, each after those it depends on) and keeps them for
    /// review: they are not taken from it again, nor what it sends that
    /// builds on them, until the document holds one of them (see
    /// `withheld`). False if they could not be withheld (too many, or
    /// bytes that are not changes): they and what follows are then checked
    /// again as they come.
    pub fn withhold(&mut self, peer: &PeerId, changes: &[u8]) -> bool {
        let Some(listed) = crate::record::changes_in(changes) else {
            return false;
        };
        let listed: Vec<(ChangeHash, Vec<ChangeHash>)> = listed
            .iter()
            .map(|c| (c.hash(), c.deps().to_vec()))
            .collect();
        self.peers
            .get_mut(peer)
            .is_some_and(|p| p.withheld.refuse(&listed))
    }

    /// Stops syncing with `peer`, handing back its state to store.
    pub fn remove_peer(&mut self, peer: &PeerId) -> Option<sync::State> {
        self.dirty.remove(peer);
        self.peers.remove(peer).map(|p| p.state)
    }

    pub fn has_peer(&self, peer: &PeerId) -> bool {
        self.peers.contains_key(peer)
    }

    pub fn peers(&self) -> impl Iterator<Item = &PeerId> {
        self.peers.keys()
    }

    pub fn peer_state(&self, peer: &PeerId) -> Option<&sync::State> {
        self.peers.get(peer).map(|p| &p.state)
    }

    /// After a lost connection: keep only what survives a reconnection (the
    /// heads both sides are known to share), as a stored state would.
    pub fn reset_peer(&mut self, peer: &PeerId) {
        if let Some(p) = self.peers.get_mut(peer) {
            self.dirty.insert(peer.clone());
            p.state = sync::State::decode(&p.state.encode()).unwrap_or_default();
            p.heads_told.clear();
            p.wanted.clear();
            p.requested = false;
            p.told_unavailable = false;
            p.relay_ready = false;
            p.trim = Trim::default();
        }
    }

    /// Applies a `sync` (or `request`) payload from `from` to `doc`.
    pub fn receive(
        &mut self,
        doc: &mut Automerge,
        from: &PeerId,
        data: &[u8],
    ) -> Result<Received, SyncError> {
        self.receive_checked(doc, from, data, false, |_, _| {
            Ok::<(), std::convert::Infallible>(())
        })
        .map_err(|e| match e {
            Checked::Sync(e) => e,
            Checked::Rejected(never) => match never {},
        })
    }

    /// Applies a payload, but only if `check` accepts the document it would
    /// produce. Changes are applied to a scratch copy first; when `check`
    /// refuses, `doc` and the peer's state are left as they were.
    pub fn receive_checked<E>(
        &mut self,
        doc: &mut Automerge,
        from: &PeerId,
        data: &[u8],
        is_request: bool,
        check: impl FnOnce(&Automerge, &[ChangeHash]) -> Result<(), E>,
    ) -> Result<Received, Checked<E>> {
        sync_shape(data).map_err(Checked::Sync)?;
        let mut message = sync::Message::decode(data)
            .map(tidied)
            .map_err(|e| Checked::Sync(SyncError::Malformed(e.to_string())))?;
        // Automerge loads the chunks joined, so they are checked joined: a
        // chunk can end in the start of a header the next one completes.
        let joined = joined_changes(&message);
        crate::record::refuse_bundles(&joined)
            .map_err(|e| Checked::Sync(SyncError::Malformed(e.to_string())))?;
        self.weigh(&joined).map_err(Checked::Sync)?;
        drop(joined);
        check_blooms(&message).map_err(Checked::Sync)?;
        self.dirty.insert(from.clone());
        let peer = self.peers.entry(from.clone()).or_default();
        if is_request {
            peer.requested = true;
        }
        let withheld = peer.withheld.filter(doc, &mut message);
        let before = doc.get_heads();
        let unusual = unusual(&message);
        if message.changes.is_empty() {
            // Nothing to check: only heads, needs and bloom filters.
            let reset = is_reset(&message);
            receive_applied(doc, &mut peer.state, message, &mut peer.trim)
                .map_err(|e| Checked::Sync(e.into()))?;
            if reset && self.relaying {
                peer.reset_from_shared =
                    answer_from_their_heads(doc, &mut peer.state, &peer.reset_from_shared);
            }
            peer.relay_ready &= !unusual;
            return Ok(Received {
                withheld,
                ..Received::default()
            });
        }
        let mut scratch = doc.clone();
        let mut state = peer.state.clone();
        let mut wanted = peer.wanted.clone();
        let mut trim = peer.trim;
        refuse_panics(|| receive_loading_saved(&mut scratch, &mut state, message, &mut trim))
            .map_err(|e| Checked::Sync(e.into()))?;
        if !scratch.get_missing_deps(&[]).is_empty() {
            // Changes whose dependencies have not arrived wait in
            // Automerge's queue (which `save` keeps too), and would be
            // applied unchecked by whatever later supplies them, under
            // another sender's name. Keep only what applied, and start a
            // fresh exchange with this peer: the reset flag of our next
            // message makes it forget what it sent and send again what we
            // lack, dependencies first, so all of it is checked. `doc`
            // itself never holds a queue. The changes it skipped are asked
            // for by hash: the sender skipped them because our filter
            // claimed them, and would again.
            for hash in scratch.get_missing_deps(&[]) {
                if wanted.len() >= MAX_WANTED {
                    break;
                }
                wanted.entry(hash).or_insert(0);
            }
            // Rebuilding and applying them again can panic as in
            // `admit_new_changes`, so both are guarded too.
            let applied = refuse_panics(|| Ok(scratch.get_changes(&before)))
                .map_err(|e| Checked::Sync(e.into()))?;
            scratch = doc.clone();
            refuse_panics(|| scratch.apply_changes(applied))
                .map_err(|e| Checked::Sync(e.into()))?;
            state = sync::State {
                their_capabilities: state.their_capabilities.take(),
                needs_reset: true,
                ..sync::State::default()
            };
            trim = Trim::default();
        }
        let (new_changes, changes) = admit_changes(&scratch, &before).map_err(Checked::Sync)?;
        if !new_changes.is_empty() {
            check(&scratch, &new_changes).map_err(Checked::Rejected)?;
        }
        *doc = scratch;
        peer.relay_ready &= !unusual && !state.needs_reset;
        peer.state = state;
        peer.trim = trim;
        wanted.retain(|h, _| !holds(doc, h));
        peer.wanted = wanted;
        if !new_changes.is_empty() {
            peer.requested = false;
        }
        let saved = concatenated(&changes);
        if !changes.is_empty() && self.relaying {
            let after = doc.get_heads();
            self.log(
                &before,
                after,
                changes.iter().map(|c| Relayed::new(c, from.clone())),
            );
        }
        Ok(Received {
            new_changes,
            saved,
            withheld,
        })
    }

    /// Applies several payloads, from any peers, with one pass over the
    /// document: Automerge 0.12 walks every op of an object each time it
    /// applies changes to it, however few, so a busy record (fifty
    /// delegates typing in one meeting's minutes) cannot afford a pass per
    /// message. `check` sees the document all of them would produce, for
    /// each payload the changes it was first to bring, and whether it
    /// carried changes at all (new or not), so that every sender of changes
    /// can be checked.
    ///
    /// `admit` sees, once the payloads are read and before any is applied,
    /// which of them carry changes; it can turn the batch away at no cost.
    ///
    /// All or nothing: if any payload is malformed, lacks a dependency,
    /// or `admit` or `check` refuses, `None` is returned and `doc` and every peer's
    /// state are left as they were; the caller then takes the payloads
    /// one at a time with [`DocSync::receive_checked`], which says which
    /// one fails and why. On success, returns the changes each payload was
    /// first to bring, as `check` saw them, and all of them as stored.
    pub fn receive_batch(
        &mut self,
        doc: &mut Automerge,
        batch: &[Incoming<'_>],
        admit: impl FnOnce(&[bool]) -> bool,
        check: impl FnOnce(&Automerge, &[Vec<ChangeHash>], &[bool]) -> bool,
    ) -> Option<Batch> {
        let mut messages = Vec::with_capacity(batch.len());
        let mut chunks = Vec::new();
        for incoming in batch {
            sync_shape(incoming.data).ok()?;
            let mut message = sync::Message::decode(incoming.data).map(tidied).ok()?;
            check_blooms(&message).ok()?;
            if let Some(withheld) = self
                .peers
                .get(incoming.from)
                .map(|p| &p.withheld)
                .filter(|w| !w.is_empty())
            {
                // Changes from a peer with withheld ones are sorted out
                // one message at a time; its heads are read through them.
                if !message.changes.is_empty() {
                    return None;
                }
                message.heads = withheld.masked_heads(doc, &message.heads);
            }
            for chunk in message.changes.iter() {
                chunks.extend_from_slice(chunk);
            }
            messages.push(message);
        }
        // Checked joined, as loaded: one payload's last chunk can end in
        // the start of a header the next payload's first chunk completes.
        crate::record::refuse_bundles(&chunks).ok()?;
        self.weigh(&chunks).ok()?;
        let carried: Vec<bool> = messages.iter().map(|m| !m.changes.is_empty()).collect();
        let odd: Vec<bool> = messages.iter().map(unusual).collect();
        if !admit(&carried) {
            return None;
        }
        let before = doc.get_heads();
        // Heads, needs and filters alone change no document: no copy.
        let mut copy = None;
        let mut changes = Vec::new();
        if !chunks.is_empty() {
            // Automerge applies nothing for a read-only state; the engine
            // makes none, but would take such payloads one at a time.
            if batch
                .iter()
                .any(|i| self.peers.get(i.from).is_some_and(|p| p.state.read_only))
            {
                return None;
            }
            let mut scratch = doc.clone();
            refuse_panics(|| apply_received(&mut scratch, &chunks)).ok()?;
            copy = Some(scratch);
        }
        let states = {
            let scratch: &mut Automerge = copy.as_mut().unwrap_or(doc);
            if !scratch.get_missing_deps(&[]).is_empty() {
                return None;
            }
            let brought = {
                // One listing serves the credits and the admission.
                let listed = scratch.get_changes_meta(&before);
                let brought = credit(&listed, &messages)?;
                if !listed.is_empty() {
                    changes = admit_listed(scratch, &before, &listed).ok()?;
                }
                brought
            };
            let new = brought.iter().any(|b| !b.is_empty());
            if new && !check(scratch, &brought, &carried) {
                return None;
            }
            // Each message in turn, for the sync states: its changes are all
            // in `scratch` already, so Automerge skips them without a pass.
            let heads = scratch.get_heads();
            let mut states: BTreeMap<&PeerId, PeerDraft> = BTreeMap::new();
            for ((incoming, message), brought) in batch.iter().zip(messages).zip(&brought) {
                let PeerDraft {
                    state,
                    requested,
                    trim,
                    reset_from_shared,
                } = states.entry(incoming.from).or_insert_with(|| {
                    self.peers
                        .get(incoming.from)
                        .map(|p| PeerDraft {
                            state: p.state.clone(),
                            requested: p.requested,
                            trim: p.trim,
                            reset_from_shared: p.reset_from_shared.clone(),
                        })
                        .unwrap_or_default()
                });
                if incoming.is_request {
                    *requested = true;
                }
                if !brought.is_empty() {
                    *requested = false;
                }
                let reset = is_reset(&message);
                // A message whose heads are not all held goes through
                // Automerge, which loads its changes: those a damaged chunk
                // before them kept out of the pass above, unchecked, and
                // some of which Automerge 0.12 asserts on.
                refuse_panics(|| receive_applied(scratch, state, message, trim)).ok()?;
                if reset && self.relaying {
                    *reset_from_shared = answer_from_their_heads(scratch, state, reset_from_shared);
                }
            }
            // A chunk that fails to parse ends Automerge's load quietly, so
            // the changes after it were left out above and came in just
            // now: not checked, or waiting in Automerge's queue. Neither
            // may stay.
            if scratch.get_heads() != heads || !scratch.get_missing_deps(&[]).is_empty() {
                return None;
            }
            (states, brought)
        };
        let (states, brought) = states;
        if let Some(scratch) = copy {
            *doc = scratch;
        }
        for (peer_id, draft) in states {
            let peer = self.peers.entry(peer_id.clone()).or_default();
            peer.state = draft.state;
            peer.requested = draft.requested;
            peer.trim = draft.trim;
            peer.reset_from_shared = draft.reset_from_shared;
            peer.wanted.retain(|h, _| !holds(doc, h));
            self.dirty.insert(peer_id.clone());
        }
        for (incoming, odd) in batch.iter().zip(odd) {
            if let Some(peer) = self.peers.get_mut(incoming.from) {
                peer.relay_ready &= !odd;
            }
        }
        let saved = concatenated(&changes);
        if !changes.is_empty() && self.relaying {
            let by: BTreeMap<ChangeHash, &PeerId> = batch
                .iter()
                .zip(&brought)
                .flat_map(|(incoming, hashes)| hashes.iter().map(|h| (*h, incoming.from)))
                .collect();
            let logged: Option<Vec<Relayed>> = changes
                .iter()
                .map(|c| {
                    by.get(&c.hash())
                        .map(|from| Relayed::new(c, (*from).clone()))
                })
                .collect();
            match logged {
                Some(logged) => {
                    let after = doc.get_heads();
                    self.log(&before, after, logged);
                }
                None => self.relay = None,
            }
        }
        Some(Batch { brought, saved })
    }

    /// The messages to send now: at most one per peer.
    pub fn generate(&mut self, doc: &Automerge, our_id: &PeerId) -> Vec<Message> {
        let heads = doc.get_heads();
        let empty = heads.is_empty();
        let everyone = self.generated_at.as_ref() != Some(&heads);
        let dirty = std::mem::take(&mut self.dirty);
        // The changes since the last `generate`, if the log holds them all.
        let log = match self.relay.take() {
            Some(log)
                if everyone && self.generated_at.as_ref() == Some(&log.from) && log.to == heads =>
            {
                Some(log)
            }
            _ => None,
        };
        let previous = self.generated_at.replace(heads.clone());
        if self.relaying {
            self.relay = Some(RelayLog {
                from: heads.clone(),
                to: heads.clone(),
                changes: Vec::new(),
            });
        }
        let mut out = Vec::new();
        // How many changes the document holds: from the last count and the
        // log, or once asked.
        let mut changes = match (&log, &self.counted) {
            (Some(log), Some((at, n))) if *at == log.from => Some(n + log.changes.len()),
            _ => None,
        };
        for (peer_id, peer) in &mut self.peers {
            if !everyone && !dirty.contains(peer_id) {
                continue;
            }
            if everyone && !peer.withheld.is_empty() && peer.withheld.any_held(doc) {
                // A refused change came in another way (a coordinator
                // accepted it): what was withheld behind it may apply now.
                // The fresh exchange has the peer send it again, checked
                // as any change is.
                peer.withheld.clear();
                peer.state.needs_reset = true;
                peer.relay_ready = false;
            }
            if let (Some(log), Some(previous)) = (&log, &previous)
                && up_to_date(peer, doc, previous)
            {
                let owed: Vec<&Relayed> = log
                    .changes
                    .iter()
                    .filter(|c| c.from != *peer_id && !peer.state.sent_hashes.contains(&c.hash))
                    .collect();
                // Automerge sends a peer lacking over a third of the
                // document the whole of it, which loads faster than its
                // changes applied one by one: a reconnecting delegate's
                // catching up is left to it.
                let most = owed.len() > FEW
                    && owed.len() * 3
                        > *changes.get_or_insert_with(|| doc.get_changes_meta(&[]).len());
                if !most {
                    self.relayed += 1;
                    out.push(Message::Sync {
                        sender_id: our_id.clone(),
                        target_id: peer_id.clone(),
                        document_id: self.document_id,
                        data: relay(peer, &heads, &owed).encode(),
                    });
                    continue;
                }
            }
            if empty && peer.requested {
                // They asked for a document we do not have.
                if !peer.told_unavailable {
                    peer.told_unavailable = true;
                    out.push(Message::DocUnavailable {
                        sender_id: our_id.clone(),
                        target_id: peer_id.clone(),
                        document_id: self.document_id,
                    });
                }
                continue;
            }
            peer.state.last_sent_heads.clone_from(&peer.heads_told);
            // Our answer covers what the peer lacks only if it said what
            // it has; Automerge answers a peer that has not yet spoken with
            // our heads alone.
            let heard = peer.state.their_need.is_some()
                && peer
                    .state
                    .their_have
                    .as_ref()
                    .is_some_and(|have| !have.is_empty());
            if let Some(mut msg) = doc.generate_sync_message(&mut peer.state) {
                peer.heads_told.clone_from(&peer.state.last_sent_heads);
                peer.relay_ready = heard && !is_reset(&msg);
                if !peer.wanted.is_empty() {
                    for (hash, asks) in &mut peer.wanted {
                        *asks += 1;
                        if !msg.need.contains(hash) {
                            msg.need.push(*hash);
                        }
                    }
                    peer.wanted.retain(|_, asks| *asks < MAX_ASKS);
                    msg.need.sort();
                }
                let data = msg.encode();
                let (sender_id, target_id, document_id) =
                    (our_id.clone(), peer_id.clone(), self.document_id);
                out.push(if empty {
                    Message::Request {
                        sender_id,
                        target_id,
                        document_id,
                        data,
                    }
                } else {
                    Message::Sync {
                        sender_id,
                        target_id,
                        document_id,
                        data,
                    }
                });
            }
        }
        if let Some(n) = changes {
            self.counted = Some((heads, n));
        }
        out
    }
}

/// Whether `peer` may be relayed the changes logged since the last
/// `generate`, whose heads were `previous` (see [`DocSync::relaying`]).
fn up_to_date(peer: &Peer, doc: &Automerge, previous: &[ChangeHash]) -> bool {
    let state = &peer.state;
    peer.relay_ready
        && peer.wanted.is_empty()
        && peer.heads_told == previous
        && !state.read_only
        && !state.peer_read_only
        && !state.needs_reset
        && state.their_need.as_ref().is_some_and(Vec::is_empty)
        // Heads we lack are changes on their way to us, or refused ones
        // (quarantined): Automerge would ask for them again, which a
        // relayed message does not, and the peer sends them anyway.
        && state.their_heads.as_ref().is_some_and(|h| !h.is_empty())
        && state
            .their_have
            .as_ref()
            .and_then(|have| have.first())
            .is_some_and(|have| holds_all(doc, &have.last_sync))
}

/// Relayed changes that always go as they are, however small the document.
const FEW: usize = 16;

/// The message relaying to `peer` the changes it is `owed` (those logged
/// that it did not bring and was not sent already), with our heads and a
/// summary saying we hold all they reach; its state moves as Automerge's
/// own message would move it.
fn relay(peer: &mut Peer, heads: &[ChangeHash], owed: &[&Relayed]) -> sync::Message {
    let state = &mut peer.state;
    state.sent_hashes.extend(owed.iter().map(|c| c.hash));
    let changes: Vec<Vec<u8>> = owed.iter().map(|c| c.bytes.clone()).collect();
    state.last_sent_heads = heads.to_vec();
    state.have_responded = true;
    state.in_flight = true;
    peer.heads_told = heads.to_vec();
    let mut flags = MessageFlags::new();
    flags.set(MessageFlags::SUPPORTS_SYNC_RESET);
    sync::Message {
        heads: heads.to_vec(),
        need: Vec::new(),
        have: vec![Have {
            last_sync: heads.to_vec(),
            bloom: BloomFilter::default(),
        }],
        changes: changes.into(),
        flags: Some(flags),
        version: MessageVersion::V1,
    }
}

/// Automerge's `Message::reset`: a peer that does not hold the heads our
/// last summary named sends its heads and a summary from nothing.
fn is_reset(message: &sync::Message) -> bool {
    !message.heads.is_empty()
        && matches!(message.have.as_slice(), [have] if have.last_sync.is_empty() && have.bloom.to_bytes().is_empty())
}

/// After a reset, Automerge would send the peer every change not sent to
/// it yet, most often the whole document, once for every reset it sends
/// before that answer arrives. But a peer holds everything its heads
/// reach: answered from those we know, it gets what it lacks alone (a
/// relayed change it missed after an earlier filter of its claimed it by
/// mistake), and a second reset finds that sent.
///
/// With heads we lack (it typed since), the shared heads Automerge kept are
/// taken to say what it holds, unless this same reset was answered so
/// before (`tried`): then the peer lacks them, and Automerge answers. The
/// heads of a reset answered from the shared heads, for the next `tried`.
fn answer_from_their_heads(
    doc: &Automerge,
    state: &mut sync::State,
    tried: &Option<Vec<ChangeHash>>,
) -> Option<Vec<ChangeHash>> {
    let theirs: Vec<ChangeHash> = state.their_heads.clone().unwrap_or_default();
    let lacking = theirs.iter().any(|h| !holds(doc, h));
    let trust_shared = lacking && tried.as_ref() != Some(&theirs);
    if lacking && !trust_shared {
        return None;
    }
    let shared: &[ChangeHash] = if trust_shared {
        &state.shared_heads
    } else {
        &[]
    };
    let mut held: Vec<ChangeHash> = theirs
        .iter()
        .chain(shared)
        .filter(|h| holds(doc, h))
        .copied()
        .collect();
    held.sort();
    held.dedup();
    if !held.is_empty() {
        state.their_have = Some(vec![Have {
            last_sync: held,
            bloom: BloomFilter::default(),
        }]);
    }
    trust_shared.then_some(theirs)
}

/// A message after which a peer is answered by Automerge again, not
/// relayed to: it asks for changes, starts afresh (no heads, a summary
/// from nothing, or Automerge's reset flag), or withholds its summary.
fn unusual(message: &sync::Message) -> bool {
    message.heads.is_empty()
        || !message.need.is_empty()
        || message
            .have
            .first()
            .is_none_or(|have| have.last_sync.is_empty())
        || asks_to_resend(message)
}

/// The most hashes a peer is asked for after it skipped them.
const MAX_WANTED: usize = 256;
/// How many messages ask for a skipped hash before we give up on it: an
/// honest peer sends it in answer to the first.
const MAX_ASKS: u8 = 4;

/// One payload of a batch for [`DocSync::receive_batch`].
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'a> {
    pub from: &'a PeerId,
    pub data: &'a [u8],
    /// It came as a `request`, not a `sync`.
    pub is_request: bool,
}

/// Why a checked receive did not apply.
#[derive(Debug, thiserror::Error)]
pub enum Checked<E> {
    #[error(transparent)]
    Sync(SyncError),
    #[error("the changes were refused")]
    Rejected(E),
}

/// The most `have` entries a sync message may carry. Automerge writes none
/// or one; each is decoded into 64 bytes from as few as two, and every
/// answer to the peer tests every change of the record against each.
pub const MAX_HAVES: u64 = 8;

/// The fewest bytes a change (or a whole document) takes: four magic
/// bytes, a checksum of four, the chunk's type and its length.
const MIN_CHUNK_BYTES: u64 = 10;

/// `message` with its heads and needed changes sorted and each named once.
/// Automerge builds a change once for each time `need` names it, and
/// panics building the same change twice (0.12, `ChangeCollector`): a peer
/// naming a change twice would bring down the document's task.
fn tidied(mut message: sync::Message) -> sync::Message {
    for hashes in [&mut message.heads, &mut message.need] {
        hashes.sort_unstable();
        hashes.dedup();
    }
    message
}

/// The Automerge ops the changes of sync message `data` hold, counted
/// before Automerge reads them, as [`DocSync::with_max_ops`] counts them:
/// past `max_ops`, or inflating to more than 64 bytes an op, the message
/// is refused. For a budget of work per sender, which bytes cannot be:
/// runs of equal ops compress to a few bytes each.
pub fn ops_in_sync(data: &[u8], max_ops: u64) -> Result<u64, SyncError> {
    // The counts Automerge's decoder would trust are checked first, as
    // `receive_checked` checks them; a message without changes holds none.
    if sync_shape(data)? == 0 {
        return Ok(0);
    }
    let message = sync::Message::decode(data).map_err(|e| SyncError::Malformed(e.to_string()))?;
    weigh_bounded(&joined_changes(&message), max_ops)
}

/// The ops `chunks` hold, refused past `max_ops` or inflating to more than
/// `INFLATED_PER_OP` bytes an op.
fn weigh_bounded(chunks: &[u8], max_ops: u64) -> Result<u64, SyncError> {
    super::weight::weigh(chunks, max_ops, max_ops.saturating_mul(INFLATED_PER_OP))
        .map(|w| w.ops)
        .map_err(SyncError::from)
}

/// A sync message's changes joined, as Automerge loads them.
fn joined_changes(message: &sync::Message) -> Vec<u8> {
    message.changes.iter().collect::<Vec<_>>().concat()
}

/// A sync message's counts, read before Automerge decodes it: the number
/// of changes it carries. Refuses what would cost far more to decode and
/// keep than the message's own bytes (many `have` entries, changes too
/// short to be changes) and counts that run past the end. Automerge 0.12
/// decodes whatever counts a peer writes.
pub fn sync_shape(data: &[u8]) -> Result<usize, SyncError> {
    let mut rest = match data.split_first() {
        Some((0x42 | 0x43, rest)) => rest,
        Some((first, _)) => {
            return Err(SyncError::Malformed(format!(
                "it starts with byte {first:#04x}, not a sync message's 0x42 or 0x43"
            )));
        }
        None => return Err(SyncError::Malformed("it is empty".into())),
    };
    let rest = &mut rest;
    let hashes = |rest: &mut &[u8], what: &str| -> Result<u64, SyncError> {
        let n = count(rest, what)?;
        skip(rest, n.saturating_mul(32), what)?;
        Ok(n)
    };
    hashes(rest, "heads")?;
    hashes(rest, "changes needed")?;
    let haves = count(rest, "`have` entries")?;
    if haves > MAX_HAVES {
        return Err(SyncError::Malformed(format!(
            "it has {haves} `have` entries (at most {MAX_HAVES})"
        )));
    }
    for _ in 0..haves {
        hashes(rest, "a `have` entry's heads")?;
        let n = count(rest, "a Bloom filter's bytes")?;
        skip(rest, n, "a Bloom filter")?;
    }
    let changes = count(rest, "changes")?;
    for i in 0..changes {
        let n = count(rest, "a change's bytes")?;
        if n < MIN_CHUNK_BYTES {
            return Err(SyncError::Malformed(format!(
                "change {i} is {n} bytes long, shorter than any change"
            )));
        }
        skip(rest, n, "a change")?;
    }
    // What follows is the message's flags, which Automerge reads.
    usize::try_from(changes).map_err(|_| SyncError::Malformed("too many changes".into()))
}

/// A LEB128 count at the start of `rest`, for [`sync_shape`].
fn count(rest: &mut &[u8], what: &str) -> Result<u64, SyncError> {
    read_leb128(rest)
        .ok_or_else(|| SyncError::Malformed(format!("the number of {what} cannot be read")))
}

/// Moves `rest` on by `n` bytes, for [`sync_shape`].
fn skip(rest: &mut &[u8], n: u64, what: &str) -> Result<(), SyncError> {
    match usize::try_from(n).ok().and_then(|n| rest.get(n..)) {
        Some(after) => {
            *rest = after;
            Ok(())
        }
        None => Err(SyncError::Malformed(format!(
            "{what} run past the end of the message"
        ))),
    }
}

/// The most probes a Bloom filter may ask for. Automerge writes 7; the
/// parameters travel with each filter, so a peer could ask for billions.
const MAX_BLOOM_PROBES: u64 = 64;
/// The most bits per entry a filter may use. Automerge writes 10.
const MAX_BLOOM_BITS_PER_ENTRY: u64 = 64;

/// Which message of a batch brought each new change (`new`, as listed past
/// the heads before the batch): the first, in order,
/// whose sender's heads reach it and that carried changes at all. Version 2
/// sync messages carry their changes as one compressed chunk that Automerge
/// 0.12 cannot split without applying it, so a message's changes are read
/// from its heads instead. `None` if some new change is reached by no
/// message's heads: then the batch is taken one message at a time.
fn credit(new: &[ChangeMetadata<'_>], messages: &[sync::Message]) -> Option<Vec<Vec<ChangeHash>>> {
    let order: BTreeMap<ChangeHash, usize> =
        new.iter().enumerate().map(|(i, c)| (c.hash, i)).collect();
    let deps: BTreeMap<ChangeHash, &[ChangeHash]> =
        new.iter().map(|c| (c.hash, c.deps.as_slice())).collect();
    let mut credited = BTreeSet::new();
    let mut out = Vec::with_capacity(messages.len());
    for message in messages {
        let mut brought = Vec::new();
        if !message.changes.is_empty() {
            let mut stack: Vec<ChangeHash> = message.heads.clone();
            while let Some(h) = stack.pop() {
                if let Some(d) = deps.get(&h)
                    && credited.insert(h)
                {
                    brought.push(h);
                    stack.extend_from_slice(d);
                }
            }
            brought.sort_by_key(|h| order[h]);
        }
        out.push(brought);
    }
    (credited.len() == new.len()).then_some(out)
}

/// Refuses Bloom filters that Automerge would divide by zero on (entries
/// but no bits) or allocate without bound for (a huge probe count).
/// Automerge 0.12 trusts the parameters a peer sends; we do not.
fn check_blooms(message: &sync::Message) -> Result<(), SyncError> {
    for (i, have) in message.have.iter().enumerate() {
        let bytes = have.bloom.to_bytes();
        let mut rest = bytes.as_slice();
        let mut field = || read_leb128(&mut rest);
        let (entries, bits_per_entry, probes) = match (field(), field(), field()) {
            (Some(e), Some(b), Some(p)) => (e, b, p),
            // An empty filter (no entries) is written as no bytes at all.
            _ if bytes.is_empty() => continue,
            _ => {
                return Err(SyncError::Malformed(format!(
                    "have[{i}]: unreadable Bloom filter"
                )));
            }
        };
        let refuse = |why: String| {
            Err(SyncError::Malformed(format!(
                "have[{i}]: Bloom filter {why}"
            )))
        };
        if entries > 0 && (bits_per_entry == 0 || rest.is_empty()) {
            return refuse(format!("has {entries} entries but no bits"));
        }
        if bits_per_entry > MAX_BLOOM_BITS_PER_ENTRY {
            return refuse(format!(
                "uses {bits_per_entry} bits per entry (at most {MAX_BLOOM_BITS_PER_ENTRY})"
            ));
        }
        if probes > MAX_BLOOM_PROBES {
            return refuse(format!(
                "asks for {probes} probes (at most {MAX_BLOOM_PROBES})"
            ));
        }
    }
    Ok(())
}

/// Receives `message` into `doc` as Automerge's `receive_sync_message`
/// does, but a saved document that brings something to a non-empty copy is
/// loaded ([`apply_received`]), not taken apart into changes by Automerge.
/// A saved document with a change Automerge should not have loaded (see
/// [`refuse_late_authors`]) is an error, and `doc` may have changed by
/// then: receive into a copy.
pub fn receive_loading_saved(
    doc: &mut Automerge,
    state: &mut sync::State,
    message: sync::Message,
    trim: &mut Trim,
) -> Result<(), automerge::AutomergeError> {
    let brings_saved = !doc.is_empty()
        && !state.read_only
        && message.changes.iter().any(crate::record::only_documents)
        && !holds_all(doc, &message.heads);
    if !brings_saved {
        // Into an empty copy, Automerge loads a saved document whole,
        // without the check applying its changes would make.
        let check = doc.is_empty()
            && !message.changes.is_empty()
            && loads_a_document_with_authors(&joined_changes(&message));
        automerge_receives(doc, state, message)?;
        trim.walked(state);
        if check {
            refuse_late_authors(doc)?;
        }
        return Ok(());
    }
    apply_received(doc, &joined_changes(&message))?;
    receive_applied(doc, state, message, trim)
}

/// Automerge's `receive_sync_message`, but a peer that sent the reset flag
/// (it forgot what we sent it) is answered even when our heads are its
/// own and nothing is to be sent: Automerge would say nothing, and the
/// peer, which dropped what it knew of our heads, would wait for them.
fn automerge_receives(
    doc: &mut Automerge,
    state: &mut sync::State,
    message: sync::Message,
) -> Result<(), automerge::AutomergeError> {
    let reset = asks_to_resend(&message);
    doc.receive_sync_message(state, message)?;
    if reset {
        state.have_responded = false;
    }
    Ok(())
}

/// Whether `message` carries Automerge's reset flag.
fn asks_to_resend(message: &sync::Message) -> bool {
    message
        .flags
        .is_some_and(|f| f.contains(MessageFlags::SYNC_RESET))
}

/// Receives `message` into `doc`, whose changes [`apply_received`] has
/// applied to `doc` already: as Automerge's `receive_sync_message` would,
/// but without what only costs when the changes are there already.
///
/// - **Every head the sender named is held** (nearly every message: an
///   acknowledgement, or changes applied already): nothing is loaded, and
///   the sync state moves as Automerge would move it ([`receive_held`]).
///   The hashes we sent are trimmed of what the heads reach only once they
///   have grown enough ([`Trim`]).
/// - **Otherwise** Automerge receives it. Entries that are nothing but
///   saved documents are left out of what it sees only once `doc` holds
///   every head the sender named, so none are here: if they did not apply
///   (bytes before them that could not be read end a load), Automerge gets
///   them back and the caller sees its heads move.
///
/// Not for a read-only state (Automerge would not apply the changes at
/// all); the engine makes none.
pub fn receive_applied(
    doc: &mut Automerge,
    state: &mut sync::State,
    message: sync::Message,
    trim: &mut Trim,
) -> Result<(), automerge::AutomergeError> {
    if state.read_only || !holds_all(doc, &message.heads) {
        automerge_receives(doc, state, message)?;
        trim.walked(state);
        return Ok(());
    }
    receive_held(doc, state, message);
    if state.sent_hashes.is_empty() {
        // Emptied (heads equal to ours, a reset): nothing left to walk for.
        trim.walked(state);
    } else if trim.due(state) {
        // Automerge's walk, alone: a message of the heads, need and
        // summary the state holds already changes nothing else.
        let again = sync::Message {
            heads: state.their_heads.clone().unwrap_or_default(),
            need: state.their_need.clone().unwrap_or_default(),
            have: state.their_have.clone().unwrap_or_default(),
            changes: sync::ChunkList::empty(),
            flags: None,
            version: MessageVersion::V1,
        };
        let kept = (state.last_sent_heads.clone(), state.in_flight);
        doc.receive_sync_message(state, again)?;
        (state.last_sent_heads, state.in_flight) = kept;
        trim.walked(state);
    }
    Ok(())
}

/// How often the hashes a sync state sent are trimmed of those the peer
/// holds. Automerge's `receive_sync_message` trims them for every message
/// it receives, by walking every ancestor of the heads the peer names:
/// the whole change graph, message after message (for fifty delegates
/// typing in one meeting's minutes, most of the time the server spent
/// taking in their acknowledgements). Keeping a hash the peer holds only
/// spares it that change again, which it does not lack (Automerge sends a
/// peer only what its summary says it lacks, and drops from that what it
/// sent already). So [`receive_applied`] drops at once only what it is
/// sure of without a walk (the heads themselves; everything, when the
/// heads are ours), and walks once the hashes have grown to twice what the
/// last walk left, plus [`TRIM_SLACK`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Trim {
    /// Hashes the last walk left.
    left: usize,
    /// Walk for every message, as Automerge does.
    always: bool,
}

/// Hashes a sync state may gain past twice what the last walk left.
pub const TRIM_SLACK: usize = 64;

impl Trim {
    /// Walking for every message, as Automerge does.
    pub fn every_message() -> Self {
        Self {
            left: 0,
            always: true,
        }
    }

    fn due(&self, state: &sync::State) -> bool {
        self.always || state.sent_hashes.len() > self.left.saturating_mul(2) + TRIM_SLACK
    }

    fn walked(&mut self, state: &sync::State) {
        self.left = state.sent_hashes.len();
    }
}

/// Automerge's `receive_sync_message` for a message whose heads `doc`
/// holds, as are its changes, if any, but for the walk trimming the
/// hashes sent: those are trimmed of the heads named, or emptied when the
/// heads are ours (a peer holding our heads holds every change we sent).
/// Each step follows Automerge 0.12's own, in its order.
fn receive_held(doc: &Automerge, state: &mut sync::State, message: sync::Message) {
    state.in_flight = false;
    let ours = doc.get_heads();
    let sync::Message {
        heads,
        changes,
        need,
        have,
        flags,
        ..
    } = message;
    if let Some(flags) = flags {
        let mut capabilities = vec![Capability::MessageV2];
        if flags.contains(MessageFlags::SUPPORTS_SYNC_RESET) {
            capabilities.push(Capability::SyncReset);
        }
        state.their_capabilities = Some(capabilities);
        if flags.contains(MessageFlags::SYNC_RESET) {
            state.sent_hashes.clear();
            // Answered whatever there is to send, as `automerge_receives`.
            state.have_responded = false;
        }
        state.peer_read_only = flags.contains(MessageFlags::READ_ONLY);
    }
    if heads == ours {
        state.sent_hashes.clear();
    } else {
        for head in &heads {
            state.sent_hashes.remove(head);
        }
    }
    if changes.is_empty() && heads == ours {
        state.last_sent_heads.clone_from(&heads);
    }
    // Every head is held: they are what both sides have.
    state.shared_heads.clone_from(&heads);
    if heads.is_empty() {
        // The peer lost everything: Automerge starts over with it.
        state.last_sent_heads = Vec::new();
        state.sent_hashes = BTreeSet::new();
    }
    state.their_have = Some(have);
    state.their_heads = Some(heads);
    state.their_need = Some(need);
}
