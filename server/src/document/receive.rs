//! Taking in sync messages: checking what they bring against the
//! record's schema, the sender's permissions and the record's size,
//! storing it, and only then letting it be relayed. Refused changes go to
//! quarantine; a coordinator can accept them later.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use automerge::ReadDoc;
use tracing::{error, warn};
use twinsync_shared::protocol::engine::Checked;
use twinsync_shared::protocol::{Batch, Incoming, SyncError};
use twinsync_shared::record::{
    LinkMembers, MAX_NESTING, Unlisted, changed_paths, ever_indexed_before, nested_beyond,
    only_listings, read_document,
};

use super::{DocTask, PeerLink, SyncIn, blocking, lock, now};
use crate::auth::Role;
use crate::permissions::{
    IndexHistory, NOT_STORED, Read, Refusal, TOO_LARGE, Why, Write, check_write, listed_by_another,
};
use crate::review::{BatchError, load_batch};
use crate::store::{Append, Kept, Origin, Refused, StoreError};

/// A refusal costs its device the record's operations, the pass that judged
/// it, and at most this fraction of its operations a minute.
const REFUSALS_PER_BUDGET: u64 = 8;

/// Why the document task turned new changes away.
enum Denied {
    /// Permissions: the refusal, the changes to quarantine, their hashes.
    Refused(Refusal, Vec<u8>, Vec<String>),
    /// The record would pass `max_record_mib`; `stored` bytes it holds.
    TooLarge { stored: u64 },
    /// The record would pass `max_record_ops`: the ops it holds, and would.
    TooManyOps { held: u64, after: u64 },
}

impl Denied {
    /// `refusal` of the changes `new` that `scratch` holds past `before`.
    fn refused(
        refusal: Refusal,
        scratch: &automerge::Automerge,
        before: &[automerge::ChangeHash],
        new: &[automerge::ChangeHash],
    ) -> Self {
        let hashes = new.iter().map(ToString::to_string).collect();
        Denied::Refused(refusal, scratch.save_after(before), hashes)
    }
}

/// What a record holds against its size limits, read before a receive
/// borrows the document: every way in checks the same two.
#[derive(Clone, Copy)]
struct Room {
    /// Bytes of its stored chunks, against `max_record_mib`.
    stored: u64,
    max_bytes: u64,
    /// Automerge ops it holds, against `max_record_ops`.
    ops: u64,
    max_ops: u64,
}

impl Room {
    /// Whether `growth` more bytes pass the byte limit.
    fn bytes_past(self, growth: u64) -> bool {
        self.stored.saturating_add(growth) > self.max_bytes
    }

    /// Whether a copy holding `after` ops passes the op limit. Only growth
    /// counts: a record over a limit since lowered still takes changes
    /// that add no op (deletions, which Automerge marks on the ops they
    /// delete).
    fn ops_past(self, after: u64) -> bool {
        after > self.max_ops && after > self.ops
    }
}

impl DocTask {
    /// What the record holds now against its size limits.
    fn room(&self) -> Room {
        Room {
            stored: self.stored_bytes.load(Ordering::Relaxed),
            max_bytes: self.hub.settings.max_record_bytes(),
            ops: self.doc.stats().num_ops,
            max_ops: self.hub.settings.max_record_ops,
        }
    }

    /// Sync messages that queued up while the task was busy: applied with
    /// one pass over the document, checked as one write, stored in one
    /// transaction, and answered with one message per peer. A lone writer
    /// among acknowledgements is judged as `on_sync` would judge it (but
    /// the size limit counts every message of the batch); several writers
    /// go together only if all are coordinators (known before anything is
    /// applied) and the record stays valid. If
    /// anything else is in the batch, or applying it fails, the messages
    /// are taken one at a time instead, so each refusal or error reaches
    /// the peer it concerns exactly as if no other message had been
    /// waiting. A failed store is told to every peer whose message carried
    /// changes.
    pub(super) async fn on_sync_batch(&mut self, mut batch: Vec<SyncIn>) {
        // A socket killed since it sent (its device revoked or its rights
        // changed, or cut off) is closing: what it sent is not taken in
        // under the rights it signed in with.
        batch.retain(|sync| !sync.peer.kill.is_cancelled());
        let unsure: Vec<PeerLink> = batch
            .iter()
            .filter(|s| !s.peer.resets.load(Ordering::Relaxed))
            .map(|s| s.peer.clone())
            .collect();
        self.take_batch(batch).await;
        // What its messages said of the peer, should this task fail.
        for peer in unsure {
            let resets = self.sync.peer_state(&peer.key).is_some_and(|s| {
                s.their_capabilities
                    .as_ref()
                    .is_some_and(|c| c.contains(&automerge::sync::Capability::SyncReset))
            });
            if resets {
                peer.resets.store(true, Ordering::Relaxed);
            }
        }
    }

    async fn take_batch(&mut self, batch: Vec<SyncIn>) {
        // A record's first change names its creator: taken alone.
        if batch.len() > 1 && self.broken.is_none() && !self.doc.get_heads().is_empty() {
            for sync in &batch {
                self.join(&sync.peer).await;
            }
            // Killed while the joins loaded sync states: out before the
            // batch is judged, as `on_sync_batch` leaves those killed first.
            if batch.iter().all(|sync| !sync.peer.kill.is_cancelled())
                && self.try_batch(&batch).await
            {
                return;
            }
        }
        for sync in batch {
            self.on_sync(sync.peer, &sync.data, sync.is_request).await;
        }
    }

    /// [`Self::on_sync_batch`]'s one pass; false if it changed nothing and
    /// the messages must be taken one at a time.
    async fn try_batch(&mut self, batch: &[SyncIn]) -> bool {
        let before = self.doc.get_heads();
        let (current, creator, doc_id) =
            (&self.current, self.creator.as_deref(), self.id.to_string());
        let room = self.room();
        let growth: u64 = batch.iter().map(|s| s.data.len() as u64).sum();
        let links = LinkMembers::of(&self.doc);
        let mut checked: Option<Read> = None;
        let incoming: Vec<Incoming<'_>> = batch
            .iter()
            .map(|s| Incoming {
                from: &s.peer.key,
                data: &s.data,
                is_request: s.is_request,
            })
            .collect();
        let brought = self.sync.receive_batch(
            &mut self.doc,
            &incoming,
            |carried| {
                // Delegates' writes go one at a time (see `check`
                // below): no pass over the document for a batch that
                // would be turned away.
                let writers = batch.iter().zip(carried).filter(|(_, c)| **c);
                writers.clone().count() <= 1
                    || writers.into_iter().all(|(sync, _)| {
                        sync.peer.device.role == Role::Coordinator && !sync.peer.device.is_revoked()
                    })
            },
            |scratch, _, carried| {
                if room.bytes_past(growth)
                    || room.ops_past(scratch.stats().num_ops)
                    || nested_beyond(scratch, MAX_NESTING).is_some()
                    || links.first_added_non_link(scratch).is_some()
                {
                    return false;
                }
                let after = read_document(scratch);
                // The write `device` made, touching `paths`, as the rules see it.
                let allowed = |device, paths: &[String]| {
                    let index = ClubIndex::for_write(current, device, scratch, &before);
                    check_write(&Write {
                        device,
                        doc_id: &doc_id,
                        creator,
                        before: Some(current),
                        after: &after,
                        paths,
                        index: index.as_ref().map(|i| i as &dyn IndexHistory),
                        // Only a record with heads is taken in batches.
                        listed_by_another: false,
                    })
                    .is_ok()
                };
                let senders: Vec<&SyncIn> = batch
                    .iter()
                    .zip(carried)
                    .filter_map(|(sync, carried)| carried.then_some(sync))
                    .collect();
                if let [only] = senders.as_slice() {
                    // One message brought changes, the rest only heads: it
                    // is judged exactly as it would be alone.
                    let device = &only.peer.device;
                    let paths = if device.role == Role::Coordinator
                        && after.is_ok()
                        && !device.is_revoked()
                    {
                        Vec::new()
                    } else {
                        changed_paths(scratch, &before, &scratch.get_heads())
                    };
                    if !allowed(device, &paths) {
                        return false;
                    }
                    checked = Some(after);
                    return true;
                }
                // Otherwise only coordinators' writes go together. A
                // coordinator passes every role rule, so what is judged is
                // the merged record's validity, as for one message carrying
                // several changes. Delegates' rules read the record as it
                // was before each write (adopted, ended, ...), which a batch
                // has no single answer to: their messages go one at a time.
                if after.is_err() {
                    return false;
                }
                for (sync, carried) in batch.iter().zip(carried) {
                    let device = &sync.peer.device;
                    if !carried {
                        continue;
                    }
                    if device.role != Role::Coordinator || device.is_revoked() {
                        return false;
                    }
                    if !allowed(device, &[]) {
                        return false;
                    }
                }
                checked = Some(after);
                true
            },
        );
        let Some(Batch { brought, saved }) = brought else {
            return false;
        };
        let at = now();
        let origins: Vec<(String, Origin)> = batch
            .iter()
            .zip(&brought)
            .flat_map(|(sync, hashes)| {
                hashes.iter().map(move |h| {
                    (
                        h.to_string(),
                        Origin {
                            peer_id: sync.peer.peer_id.to_string(),
                            device: Some(sync.peer.device.id.clone()),
                            device_name: None,
                            received_at: at,
                        },
                    )
                })
            })
            .collect();
        if !origins.is_empty() {
            let new = origins.len();
            if let Err(e) = self
                .persist_origins(&before, saved, origins, None, checked)
                .await
            {
                self.hub.metrics.storage_errors.inc();
                // Every sender of changes, not only the one each change was
                // credited to: a second peer that sent the same change (the
                // phone's other tab) would otherwise wait, untold, for an
                // answer about a change it believes sent.
                let mut told = std::collections::HashSet::new();
                for (sync, hashes) in batch.iter().zip(&brought) {
                    let carried = !hashes.is_empty()
                        || twinsync_shared::protocol::sync_shape(&sync.data)
                            .is_ok_and(|changes| changes > 0);
                    if !carried || !told.insert(sync.peer.key.clone()) {
                        continue;
                    }
                    self.drop_unstored(&sync.peer, &e);
                }
                self.reload().await;
                return true;
            }
            self.hub.metrics.changes_applied.inc_by(new as u64);
            self.maybe_compact();
        }
        true
    }

    /// Tells `peer` its changes were not stored, and closes its socket: the
    /// client reconnects and resends from a fresh sync state, so nothing is
    /// lost while storage recovers.
    fn drop_unstored(&mut self, peer: &PeerLink, e: &StoreError) {
        error!(doc_id = %self.id, peer_id = %peer.peer_id, device = %peer.device.id, error = %e, "changes not stored");
        let message = format!(
            "the server could not store your changes to {} ({}) and did not accept them; they stay on your device and are sent again on reconnecting",
            self.id,
            e.public_reason()
        );
        self.refusal_to(peer, message, NOT_STORED, "/", None);
        peer.kill.cancel();
        self.remove_peer(&peer.key);
    }

    /// Applies one peer's sync message. The answers wait for [`super::run`]'s
    /// next flush, once no message is queued.
    async fn on_sync(&mut self, peer: PeerLink, data: &[u8], is_request: bool) {
        // A socket killed while this task awaited something else (a store,
        // a sync state, a message before this one that could not be stored
        // and cut it off) takes nothing in: not under the rights it signed
        // in with, nor onto the record's peers again.
        if peer.kill.is_cancelled() {
            return;
        }
        self.retry_broken().await;
        if let Some(reason) = &self.broken {
            self.unreadable_to(&peer, reason);
            // An official client only logs an `error`: its `find` would
            // wait out its own timeout for the record.
            if is_request && !peer.app {
                let unavailable = twinsync_shared::protocol::Message::DocUnavailable {
                    sender_id: self.hub.server_id.clone(),
                    target_id: peer.peer_id.clone(),
                    document_id: self.id,
                };
                self.send(&peer, &unavailable);
            }
            return;
        }
        self.join(&peer).await;
        let before = self.doc.get_heads();
        let listed_by_another = if before.is_empty()
            && self.creator.is_none()
            && peer.device.role == Role::Delegate
            && !peer.device.is_revoked()
            && twinsync_shared::protocol::sync_shape(data).is_ok_and(|changes| changes > 0)
        {
            // A delegate's phone delivers a record new to the server: one
            // lookup tells whether another person's device listed it.
            let (store, id) = (self.hub.store.clone(), self.id);
            match blocking(move || store.lister(id)).await {
                Ok(lister) => lister.is_some_and(|l| {
                    listed_by_another(&peer.device, &l.device, l.person.as_deref())
                }),
                Err(e) => {
                    // Not judged, so not taken: the phone sends it again.
                    self.drop_unstored(&peer, &e);
                    return;
                }
            }
        } else {
            false
        };
        let (current, creator, doc_id) =
            (&self.current, self.creator.as_deref(), self.id.to_string());
        let device = Arc::clone(&peer.device);
        // The check's read of the merged record, kept for `persist`.
        let mut checked: Option<Read> = None;
        // The message's size stands for what its changes add to storage:
        // both are Automerge's compressed change encoding.
        let room = self.room();
        let growth = data.len() as u64;
        // What the record's link sets hold, for the check that none gains a
        // member that is not a record link.
        let links = LinkMembers::of(&self.doc);
        let received = self.sync.receive_checked(
            &mut self.doc,
            &peer.key,
            data,
            is_request,
            |scratch, new| {
                if room.bytes_past(growth) {
                    return Err(Denied::TooLarge {
                        stored: room.stored,
                    });
                }
                let after = scratch.stats().num_ops;
                if room.ops_past(after) {
                    return Err(Denied::TooManyOps {
                        held: room.ops,
                        after,
                    });
                }
                if let Some(path) = nested_beyond(scratch, MAX_NESTING) {
                    let refusal = Refusal {
                        path,
                        why: Why::TooDeep(MAX_NESTING),
                    };
                    return Err(Denied::refused(refusal, scratch, &before, new));
                }
                let after = read_document(scratch);
                // Paths cost a diff: skip them for a valid coordinator write.
                let paths =
                    if device.role == Role::Coordinator && after.is_ok() && !device.is_revoked() {
                        Vec::new()
                    } else {
                        changed_paths(scratch, &before, &scratch.get_heads())
                    };
                let index = ClubIndex::for_write(current, &device, scratch, &before);
                check_write(&Write {
                    device: &device,
                    doc_id: &doc_id,
                    creator,
                    before: (!before.is_empty()).then_some(current),
                    after: &after,
                    paths: &paths,
                    index: index.as_ref().map(|i| i as &dyn IndexHistory),
                    listed_by_another,
                })
                .map_err(|refusal| Denied::refused(refusal, scratch, &before, new))?;
                if let Some(e) = links.first_added_non_link(scratch) {
                    let refusal = Refusal {
                        path: e.path,
                        why: Why::Invalid(e.reason),
                    };
                    return Err(Denied::refused(refusal, scratch, &before, new));
                }
                checked = Some(after);
                Ok(())
            },
        );
        let received = match received {
            Ok(r) => {
                if !r.withheld.is_empty() {
                    // They wait on the phone with the refused change, and
                    // come in once a coordinator accepts it.
                    tracing::info!(doc_id = %self.id, peer_id = %peer.peer_id, device = %peer.device.id, withheld = r.withheld.len(), "changes building on refused ones withheld");
                }
                r
            }
            // Well formed, but more ops than one message may carry: refused
            // unread, as a change past the record's limits is, and the
            // socket stays. Cut, the device would send it again at each
            // reconnection, for ever.
            Err(Checked::Sync(e @ SyncError::TooHeavy(_))) => {
                self.hub.metrics.messages_too_large.inc();
                warn!(doc_id = %self.id, peer_id = %peer.peer_id, device = %peer.device.id, error = %e, "sync message too heavy; changes refused");
                self.refusal_to(
                    &peer,
                    format!(
                        "your changes to record {} were refused: {e}; they were not stored or relayed and stay on your device",
                        self.id
                    ),
                    TOO_LARGE,
                    "/",
                    None,
                );
                return;
            }
            Err(Checked::Sync(e)) => {
                self.hub.metrics.protocol_errors.inc();
                warn!(doc_id = %self.id, peer_id = %peer.peer_id, device = %peer.device.id, error = %e, "refused sync message");
                self.error_to(
                    &peer,
                    format!("sync message for document {} refused: {e}", self.id),
                );
                peer.kill.cancel();
                self.remove_peer(&peer.key);
                return;
            }
            Err(Checked::Rejected(Denied::Refused(refusal, changes, hashes))) => {
                self.refuse(&peer, &refusal, &changes, &hashes).await;
                return;
            }
            Err(Checked::Rejected(Denied::TooLarge { stored })) => {
                // Not quarantined either: keeping it would grow the disk
                // just the same. A compaction owed (two snapshots found at
                // load, with no slot free then) may make room: no append
                // will start it now.
                self.maybe_compact();
                self.hub.metrics.records_too_large.inc();
                warn!(doc_id = %self.id, peer_id = %peer.peer_id, device = %peer.device.id, stored, "record too large; changes refused");
                self.refusal_to(
                    &peer,
                    format!(
                        "your change to record {} was refused: the record holds {:.1} MiB and this change would take it past the limit of {} MiB per record; it was not stored or relayed and stays on your device",
                        self.id,
                        stored as f64 / (1024.0 * 1024.0),
                        self.hub.settings.max_record_mib
                    ),
                    TOO_LARGE,
                    "/",
                    None,
                );
                return;
            }
            Err(Checked::Rejected(Denied::TooManyOps { held, after })) => {
                self.hub.metrics.records_too_large.inc();
                warn!(doc_id = %self.id, peer_id = %peer.peer_id, device = %peer.device.id, held, after, "record would hold too many operations; changes refused");
                self.refusal_to(
                    &peer,
                    format!(
                        "your change to record {} was refused: it would take the record from {held} to {after} operations, past the limit of {} operations per record; it was not stored or relayed and stays on your device",
                        self.id, self.hub.settings.max_record_ops
                    ),
                    TOO_LARGE,
                    "/",
                    None,
                );
                return;
            }
        };
        if !received.new_changes.is_empty() {
            if let Err(e) = self
                .persist(
                    &before,
                    received.saved,
                    &received.new_changes,
                    peer.peer_id.as_str(),
                    Some(&peer.device.id),
                    checked,
                )
                .await
            {
                self.hub.metrics.storage_errors.inc();
                self.drop_unstored(&peer, &e);
                self.reload().await;
                return;
            }
            self.hub
                .metrics
                .changes_applied
                .inc_by(received.new_changes.len() as u64);
            self.maybe_compact();
        }
    }

    /// Keeps refused changes in quarantine and tells the sender why. The
    /// changes are neither stored in the record nor relayed.
    async fn refuse(
        &mut self,
        peer: &PeerLink,
        refusal: &Refusal,
        changes: &[u8],
        hashes: &[String],
    ) {
        self.hub.metrics.changes_refused.inc();
        // Judging the message took a pass over the whole record, which the
        // ops a message carries do not count: a device that sends change
        // after change to be refused pays for each pass in its operations
        // a minute, and past them its socket is closed with the wait. An
        // eighth of them at most: a phone holding a refused change sends it
        // again at each reconnection and from each tab, and one refused
        // change to a large record must not cut it off. (Several to large
        // records, sent again from several tabs, can: it then waits out
        // the minute.)
        let limit = self.hub.settings.device_ops_per_minute;
        self.hub.guards.device_ops.charge(
            &peer.device.id,
            self.doc
                .stats()
                .num_ops
                .min((limit / REFUSALS_PER_BUDGET).max(1)),
            limit,
        );
        let kind = self
            .current
            .as_ref()
            .ok()
            .and_then(|r| r.get("kind")?.as_str().map(str::to_owned))
            .unwrap_or_else(|| "record".to_owned());
        warn!(doc_id = %self.id, peer_id = %peer.peer_id, device = %peer.device.id, refusal = %refusal, "changes refused");
        let (store, id, now) = (self.hub.store.clone(), self.id, now());
        let (device, from, path, reason) = (
            peer.device.id.clone(),
            peer.peer_id.to_string(),
            refusal.path.clone(),
            refusal.why.to_string(),
        );
        let (bytes, hashes) = (changes.to_vec(), hashes.to_vec());
        let code = refusal.why.code();
        let limit = self.hub.settings.max_quarantine_bytes();
        let kept = blocking(move || {
            store.quarantine(
                &Refused {
                    doc: id,
                    device_id: &device,
                    peer_id: &from,
                    hashes: &hashes,
                    changes: &bytes,
                    path: Some(&path),
                    reason: &reason,
                    code,
                },
                now,
                limit,
            )
        })
        .await;
        let quarantine = kept.as_ref().ok().copied();
        if quarantine.is_some() {
            // Kept for review: what the phone types on it meanwhile waits
            // with it, rather than bringing it back at every keystroke.
            self.sync.withhold(&peer.key, changes);
        }
        let kept = match kept {
            Ok(Kept {
                id,
                discarded: true,
            }) => format!(
                "a coordinator already discarded it, or the change it builds on (quarantine #{id}), so the server will not take it"
            ),
            Ok(Kept { id, .. }) => {
                format!("it is kept for a coordinator to review (quarantine #{id})")
            }
            Err(e) => {
                if e.is_storage_failure() {
                    self.hub.metrics.storage_errors.inc();
                    error!(doc_id = %self.id, error = %e, "cannot quarantine refused changes");
                } else {
                    warn!(doc_id = %self.id, error = %e, "quarantine full for this device");
                }
                format!(
                    "the server could not keep it for review ({}), so keep it on your device",
                    e.public_reason()
                )
            }
        };
        self.refusal_to(
            peer,
            format!(
                "your change to {kind} {} was refused at {}: {}; it was not stored or relayed, and {kept}",
                self.id, refusal.path, refusal.why
            ),
            code,
            &refusal.path,
            quarantine,
        );
    }

    /// Applies quarantined changes a coordinator accepted, as from the
    /// device that sent them; they must still leave the record valid.
    /// `only_new`: the changes made a record of their own under an id
    /// another device listed, taken only while no record is stored there
    /// (nor was: a record a salvage kept nothing of keeps its creator).
    pub(super) async fn accept(
        &mut self,
        changes: &[u8],
        peer_id: &str,
        device_id: &str,
        only_new: bool,
    ) -> Result<usize, AcceptError> {
        self.retry_broken().await;
        if let Some(reason) = &self.broken {
            return Err(AcceptError::Unfit(format!(
                "the record cannot be read on the server: {reason}"
            )));
        }
        let before = self.doc.get_heads();
        if only_new && (!before.is_empty() || self.creator.is_some()) {
            return Err(AcceptError::Unfit(
                "these changes made a record of their own under an id another device listed, and that device's record has arrived since: accepting them would merge two records into one; discard them".into(),
            ));
        }
        // A record's limits hold for every way in.
        let room = self.room();
        if room.bytes_past(changes.len() as u64) {
            return Err(AcceptError::Unfit(format!(
                "accepting them would take the record past the limit of {} MiB per record",
                self.hub.settings.max_record_mib
            )));
        }
        let scratch = load_batch(&self.doc, changes).map_err(|e| match e {
            BatchError::Unreadable(e) => {
                AcceptError::Unfit(format!("the quarantined changes cannot be read: {e}"))
            }
            BatchError::MissingDeps(n) => AcceptError::MissingDeps(n),
            BatchError::TooDeep(path) => AcceptError::Unfit(format!(
                "values may nest at most {MAX_NESTING} deep, and these reach {path}"
            )),
        })?;
        let after_ops = scratch.stats().num_ops;
        if room.ops_past(after_ops) {
            return Err(AcceptError::Unfit(format!(
                "accepting them would take the record from {} to {after_ops} operations, past the limit of {} operations per record",
                room.ops, room.max_ops
            )));
        }
        let after = read_document(&scratch);
        if let Err(errors) = &after {
            let old: &[twinsync_shared::record::ValidationError] = match &self.current {
                Err(old) => old,
                Ok(_) => &[],
            };
            if let Some(e) = errors.iter().find(|e| !old.contains(e)) {
                return Err(AcceptError::Unfit(format!(
                    "the record would not be valid: {e}"
                )));
            }
        }
        let (new, saved) = twinsync_shared::protocol::admit_new_changes(&scratch, &before)
            .map_err(|e| {
                AcceptError::Unfit(format!("the quarantined changes cannot be taken: {e}"))
            })?;
        if new.is_empty() {
            return Ok(0);
        }
        self.doc = scratch;
        if let Err(e) = self
            .persist(&before, saved, &new, peer_id, Some(device_id), Some(after))
            .await
        {
            // The store's fault, not the batch's: the operator is told why,
            // and the coordinator to try again.
            self.hub.metrics.storage_errors.inc();
            error!(doc_id = %self.id, error = %e, "accepted changes not stored");
            self.reload().await;
            return Err(AcceptError::Store {
                reason: e.public_reason(),
                full: e.is_full(),
            });
        }
        self.hub.metrics.changes_applied.inc_by(new.len() as u64);
        // An older app's new record, accepted: upgraded before it is sent.
        if self.behind_schema() {
            Box::pin(self.migrate()).await;
        }
        self.flush();
        Ok(new.len())
    }

    /// Writes the new changes; until this returns Ok, nothing sent reflects
    /// them. `read` is the record as read from the document now, if the
    /// caller already read it.
    pub(super) async fn persist(
        &mut self,
        before: &[automerge::ChangeHash],
        chunk: Vec<u8>,
        new: &[automerge::ChangeHash],
        from: &str,
        device: Option<&str>,
        read: Option<Read>,
    ) -> Result<(), StoreError> {
        let at = now();
        let origins: Vec<(String, Origin)> = new
            .iter()
            .map(|h| {
                (
                    h.to_string(),
                    Origin {
                        peer_id: from.to_owned(),
                        device: device.map(str::to_owned),
                        device_name: None,
                        received_at: at,
                    },
                )
            })
            .collect();
        self.persist_origins(before, chunk, origins, device, read)
            .await
    }

    /// [`Self::persist`], each change with its own origin. `chunk` holds
    /// the changes since `before` as Automerge stores them (`save_after`).
    /// `creator` is the device to name as the record's creator if these
    /// are its first changes.
    async fn persist_origins(
        &mut self,
        before: &[automerge::ChangeHash],
        chunk: Vec<u8>,
        origins: Vec<(String, Origin)>,
        creator: Option<&str>,
        read: Option<Read>,
    ) -> Result<(), StoreError> {
        // One read serves the stored summary and the next permission check.
        let current = read.unwrap_or_else(|| read_document(&self.doc));
        let summary = twinsync_shared::record::summarise_read(&self.doc, &current);
        let listings = new_listings(&self.doc, &self.current, &current, &origins);
        let at = origins.first().map_or_else(now, |(_, o)| o.received_at);
        let added = chunk.len() as u64;
        let appended = self
            .hub
            .appender
            .append(Append {
                doc: self.id,
                chunk,
                summary,
                origins,
                listings,
                now: at,
            })
            .await;
        // What an operator alerts on: `/healthz` only reads, and reads go on.
        if appended.as_ref().is_err_and(StoreError::is_full) {
            self.hub.metrics.storage_full.inc();
        }
        let chunk_id = appended?;
        self.stored_bytes.fetch_add(added, Ordering::Relaxed);
        lock(&self.chunks).push(chunk_id);
        self.appends_since_compaction += 1;
        self.current = current;
        if self.creator.is_none() && before.is_empty() {
            self.creator = creator.map(str::to_owned);
        }
        Ok(())
    }
}

/// The records the club's index lists now (`after`) and did not before
/// (`before`, all of them if it did not read), each with the change that
/// lists it, where that change is one of the new ones (`origins`): what
/// `listings` keeps of a club append. Empty for any other record.
fn new_listings(
    doc: &automerge::Automerge,
    before: &Read,
    after: &Read,
    origins: &[(String, Origin)],
) -> Vec<(twinsync_shared::DocumentId, String)> {
    fn index(read: &Read) -> Option<&serde_json::Map<String, serde_json::Value>> {
        let record = read.as_ref().ok()?;
        (record.get("kind")?.as_str()? == "club")
            .then(|| record.get("index")?.as_object())
            .flatten()
    }
    let Some(now) = index(after) else {
        return Vec::new();
    };
    let empty = serde_json::Map::new();
    let was = index(before).unwrap_or(&empty);
    let Ok(Some((_, index_id))) = doc.get(automerge::ROOT, "index") else {
        return Vec::new();
    };
    now.keys()
        .filter(|key| !was.contains_key(*key))
        .filter_map(|key| {
            let id = key.parse::<twinsync_shared::DocumentId>().ok()?;
            // Listed beside another value (two phones listing it at once),
            // the first of the new changes to list it, in their order.
            let puts: Vec<String> = doc
                .get_all(&index_id, key.as_str())
                .ok()?
                .into_iter()
                .filter_map(|(_, op)| doc.hash_for_opid(&op))
                .map(|h| h.to_string())
                .collect();
            let (hash, _) = origins.iter().find(|(h, _)| puts.contains(h))?;
            Some((id, hash.clone()))
        })
        .collect()
}

/// Why a coordinator's accept of a quarantined batch did not apply it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AcceptError {
    /// The batch builds on this many changes the record does not hold:
    /// another batch waiting for review, or changes the device has not sent.
    #[error("the quarantined changes build on {0} change(s) the server does not have")]
    MissingDeps(usize),
    /// The record would not be valid, or would pass a limit.
    #[error("{0}")]
    Unfit(String),
    /// The server's storage failed (full, busy, damaged): said in words
    /// fit for a client ([`crate::store::StoreError::public_reason`]).
    #[error("the server could not store the changes: {reason}")]
    Store { reason: &'static str, full: bool },
}

/// The club's index as a delegate's write to the club record is judged
/// (`IndexHistory`), read from the record with the changes (`doc`) and the
/// heads before them.
#[derive(Debug)]
struct ClubIndex<'a> {
    doc: &'a automerge::Automerge,
    before: &'a [automerge::ChangeHash],
    /// The keys it ever held before: a pass over the club's history, made
    /// only for a write that lists a record.
    listed: std::cell::OnceCell<std::collections::BTreeSet<String>>,
}

impl<'a> ClubIndex<'a> {
    /// `None` but for a delegate's write to the club.
    fn for_write(
        current: &Read,
        device: &crate::auth::Device,
        doc: &'a automerge::Automerge,
        before: &'a [automerge::ChangeHash],
    ) -> Option<Self> {
        let club = matches!(current, Ok(record) if record.get("kind").and_then(|k| k.as_str()) == Some("club"));
        (club && device.role == Role::Delegate && !device.is_revoked()).then(|| Self {
            doc,
            before,
            listed: std::cell::OnceCell::new(),
        })
    }
}

impl IndexHistory for ClubIndex<'_> {
    fn listed_before(&self, key: &str) -> bool {
        self.listed
            .get_or_init(|| ever_indexed_before(self.doc, self.before))
            .contains(key)
    }

    fn beyond_listings(&self) -> Option<(String, Why)> {
        match only_listings(self.doc, self.before) {
            Ok(()) => None,
            Err(Unlisted::Beyond) => Some(("/".into(), Why::ClubBeyondIndex)),
            Err(Unlisted::Changed(key)) => Some((format!("/index/{key}"), Why::ClubIndexChanged)),
            Err(Unlisted::Removed(key)) => Some((format!("/index/{key}"), Why::ClubIndexRemoved)),
        }
    }
}
