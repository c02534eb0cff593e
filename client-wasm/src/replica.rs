//! The client's state without IO: every record the device holds, its sync
//! with the server, and what must be written to local storage after each
//! step. The browser layer ([`crate::web`]) feeds it frames, edits and
//! stored bytes and carries out what it returns; native tests drive it
//! the same way.
//!
//! Offsets from the browser are UTF-16 code units; records index text by
//! code point ([`twinsync_shared::text::TEXT_ENCODING`]). The conversion
//! happens here, once, against the text as it is at the moment of the edit.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use automerge::sync::State;
use automerge::{Automerge, ChangeHash, ReadDoc};
use serde::Serialize;
use serde_json::{Value as Json, json};
use twinsync_shared::protocol::{
    DecodeError, DocSync, Message, PeerMetadata, RATE_LIMITED, Refusal, TOO_MANY_OPEN, UNREADABLE,
    handshake, sync_shape,
};
use twinsync_shared::record::{
    Commit, Edit, EditError, Kind, RecordDoc, TouchedFields, changed_paths, check_chunk,
    document_at_time, document_conflicts, document_history_known, document_text, ever_indexed,
    field_changes, load_chunks, load_document, loads_back, new_document, read_document,
    read_document_leniently, refuse_panics, settles_a_removal, summarise,
};
use twinsync_shared::text::{OffsetError, nfc, nfc_positions, utf16_range};
use twinsync_shared::{DocumentId, PeerId, StorageId};

/// How long each text's word diff in [`Replica::changes_between`] may take
/// on a phone before it shows whole runs replaced.
const DIFF_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(500);

/// `heads` in the order `get_heads` gives them.
fn sorted(heads: &[ChangeHash]) -> Vec<ChangeHash> {
    let mut heads = heads.to_vec();
    heads.sort();
    heads
}

/// Why an operation of the client failed. Each names what it was about.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no record {0} on this device")]
    UnknownRecord(DocumentId),
    #[error("record {0} is still arriving from the server")]
    NotYetArrived(DocumentId),
    #[error("{0}")]
    Edit(#[from] EditError),
    #[error("text offsets at {path}: {reason}")]
    Offset { path: String, reason: String },
    #[error("stored data of record {doc} is damaged: {reason}")]
    Corrupt { doc: String, reason: String },
    #[error("the server sent something unreadable: {0}")]
    Protocol(String),
    #[error("invalid argument: {0}")]
    Invalid(String),
}

/// Stored chunks of a record that would not load; the rest of the record was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stored data of record {doc} is damaged: {} of its chunks unreadable ({})", chunks.len(), chunks.first().map(|c| c.1.as_str()).unwrap_or_default())]
pub struct Damaged {
    pub doc: DocumentId,
    /// Index in the chunks given, and why it did not load.
    pub chunks: Vec<(usize, String)>,
    /// Those of them whose changes build on one not held here: whole, and
    /// taken in once that one is. The web client keeps them in storage,
    /// out of compaction, until then or until the server shows that no
    /// one holds it.
    pub waiting: Vec<usize>,
}

/// Where a change came from, for subscribers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    Local,
    Remote,
}

/// One record changed: what a UI needs to update just that part.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Changed {
    pub id: String,
    pub origin: Origin,
    /// The record paths that changed, e.g. `/minutes` or `/title/fr`.
    pub paths: Vec<String>,
}

/// Bytes to append to a record's local storage before anyone is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub doc: DocumentId,
    pub bytes: Vec<u8>,
}

/// The result of a local edit or of a frame from the server: write
/// `chunks` (and `sync_states`) first, then tell the UI about `changed`.
#[derive(Debug, Default)]
pub struct Outcome {
    pub chunks: Vec<Chunk>,
    pub sync_states: Vec<(DocumentId, Vec<u8>)>,
    pub changed: Vec<Changed>,
    /// Problems the server reported, for the status line: its words and,
    /// for a refused change, what the app says in the person's language.
    pub errors: Vec<(String, Option<Refusal>)>,
    /// Records the server said it does not have (or will not share).
    pub unavailable: Vec<DocumentId>,
    /// Seconds after which [`Replica::retry_deferred`] is next due: a
    /// record's message did not go through (the server did not take it,
    /// or the engine refused the server's).
    pub retry_after: Option<u64>,
    /// What the sync engine refused in a message from the server, one
    /// record each: that record is deferred, and the others go on syncing
    /// on the same socket.
    pub refused_here: Vec<String>,
}

/// Why a record's exchange with the server stopped for a while: it starts
/// afresh once [`Replica::retry_deferred`] finds it due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Deferred {
    /// This device opened more records in a minute than the server allows
    /// ([`RATE_LIMITED`]): the record waits its turn, and the server said
    /// when it comes.
    Turn,
    /// The server dropped our message unread: it could not read its copy
    /// just now ([`UNREADABLE`]), or this device holds as many records open
    /// as it allows ([`TOO_MANY_OPEN`]), which frees only as its other
    /// sockets close. Sent again after a backoff.
    Unread,
    /// The sync engine refused what the server sent for it: nothing for it
    /// is taken in meanwhile, and it is then asked for again with
    /// Automerge's reset flag, so that the server sends again what it had
    /// sent. Closing the socket instead would stop every record with it,
    /// and bring the same message back at once.
    Refused,
}

/// The first wait before a record the server dropped unread, or whose
/// message the engine refused, is tried again; it doubles with each
/// failure in a row, up to [`RETRY_MAX_SECS`].
const RETRY_FIRST_SECS: u64 = 60;
const RETRY_MAX_SECS: u64 = 3600;

struct Entry {
    doc: Automerge,
    sync: DocSync,
    /// The server answered `doc-unavailable` for it.
    unavailable: bool,
    /// Its exchange with the server stopped, and why: not sent again
    /// until [`Replica::retry_deferred`] finds it due.
    deferred: Option<Deferred>,
    /// When it is due, in seconds since the epoch.
    due: i64,
    /// Its messages that failed in a row ([`Deferred::Unread`],
    /// [`Deferred::Refused`]), for the backoff; none once an exchange
    /// goes through.
    failures: u32,
    /// The engine refused the server's last message for it, and no message
    /// for it went through since ([`Replica::held_back`]).
    engine_refused: bool,
    /// The server's sync state as last stored, restored on connect.
    stored_state: Option<Vec<u8>>,
    /// The record's summary and the heads it was read at: the app lists
    /// every record after each keystroke, and only the record typed in
    /// needs reading again.
    summary: RefCell<Option<(Vec<ChangeHash>, Json)>>,
    /// The fields each change touched, as the history last found them: a
    /// screen redrawn at each change someone else types reads the log
    /// again, and only the new changes need a diff.
    touched: RefCell<TouchedFields>,
    /// The changes the server has not confirmed, as last counted: at the
    /// record's heads and the server's then. The status is read after
    /// each keystroke, and a phone offline for days holds thousands of
    /// such changes: counted again only since those heads.
    unconfirmed: RefCell<Option<Counted>>,
}

/// A count of a record's unconfirmed changes: the record's heads and the
/// server's when counted, and how many.
type Counted = (Vec<ChangeHash>, Vec<ChangeHash>, usize);

impl Entry {
    fn new(id: DocumentId, doc: Automerge) -> Self {
        Self {
            doc,
            sync: DocSync::new(id),
            unavailable: false,
            deferred: None,
            due: 0,
            failures: 0,
            engine_refused: false,
            stored_state: None,
            summary: RefCell::new(None),
            touched: RefCell::default(),
            unconfirmed: RefCell::new(None),
        }
    }

    /// [`summary`] of the document, read again only if its heads moved.
    fn summary(&self, id: DocumentId) -> Json {
        let heads = self.doc.get_heads();
        if let Some((at, kept)) = &*self.summary.borrow()
            && *at == heads
        {
            return kept.clone();
        }
        let fresh = summary(id, &self.doc);
        *self.summary.borrow_mut() = Some((heads, fresh.clone()));
        fresh
    }

    /// Whether the record holds every head `peer` last said it has, in this
    /// session.
    fn holds_all_told_by(&self, peer: &PeerId) -> bool {
        self.sync
            .peer_state(peer)
            .and_then(|s| s.their_heads.as_ref())
            .is_some_and(|heads| {
                heads
                    .iter()
                    .all(|h| self.doc.get_change_meta_by_hash(h).is_some())
            })
    }

    /// The summary kept for `before` holds for `after` too.
    fn summary_moved(&self, before: &[ChangeHash], after: &[ChangeHash]) {
        if let Some((at, _)) = &mut *self.summary.borrow_mut()
            && at == before
        {
            *at = after.to_vec();
        }
    }
}

/// Every record on the device and its sync with one server.
pub struct Replica {
    me: PeerId,
    storage_id: StorageId,
    docs: BTreeMap<DocumentId, Entry>,
    /// The club record, whose index lists every record to keep offline.
    club: Option<DocumentId>,
    /// The server's peer id once it answered our `join`.
    server: Option<PeerId>,
    /// Records that may have something to send: Automerge's message
    /// generation costs time even when it has nothing to say.
    dirty: BTreeSet<DocumentId>,
    /// `outgoing` handed out, since the last `answer_owed`, a message
    /// carrying changes or heads the server has not confirmed: the server
    /// answers those, with its new heads, what it needs, or a refusal.
    answer_owed: bool,
    /// The server said in `peer` that it answers [`Message::Ping`].
    server_answers_pings: bool,
    /// The server sent a [`Message::Ping`], answered by the next
    /// [`Replica::outgoing`].
    pong_owed: bool,
    /// Records held here that the club index once listed and no longer
    /// does: taken out by a coordinator, and not listed again from here.
    taken_out: BTreeSet<DocumentId>,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("me", &self.me)
            .field("docs", &self.docs.len())
            .field("server", &self.server)
            .finish()
    }
}

impl Replica {
    pub fn new(me: PeerId, storage_id: StorageId) -> Self {
        Self {
            me,
            storage_id,
            docs: BTreeMap::new(),
            club: None,
            server: None,
            dirty: BTreeSet::new(),
            answer_owed: false,
            server_answers_pings: false,
            pong_owed: false,
            taken_out: BTreeSet::new(),
        }
    }

    pub fn peer_id(&self) -> &PeerId {
        &self.me
    }

    pub fn club(&self) -> Option<DocumentId> {
        self.club
    }

    /// Names the club record; its index says which records to keep.
    pub fn set_club(&mut self, id: DocumentId) {
        self.club = Some(id);
        self.ensure(id);
        self.follow_index();
    }

    /// Rebuilds a record from its stored chunks (in any order) and the
    /// server's sync state. Chunks that do not load are skipped and named
    /// in the error, the rest is kept: a damaged chunk costs only what it
    /// held, which the server still has if it was ever synced.
    pub fn restore(
        &mut self,
        id: DocumentId,
        chunks: &[Vec<u8>],
        sync_state: Option<Vec<u8>>,
    ) -> Result<(), Damaged> {
        // One pass over every chunk; only if that fails, one chunk at a
        // time to keep what is whole and name what is not.
        let (mut doc, mut bad) = match load_chunks(chunks) {
            Ok(doc) => (doc, Vec::new()),
            Err(_) => {
                let mut doc = new_document();
                let bad = load_each(&mut doc, chunks);
                (doc, bad)
            }
        };
        let waiting = leave_out_waiting(&mut doc, chunks, &mut bad);
        let mut entry = Entry::new(id, doc);
        // A sync state that no longer matches what we hold would make the
        // server skip changes we lost: start afresh instead.
        entry.stored_state = if bad.is_empty() { sync_state } else { None };
        self.docs.insert(id, entry);
        if bad.is_empty() {
            Ok(())
        } else {
            Err(Damaged {
                doc: id,
                chunks: bad,
                waiting,
            })
        }
    }

    /// Takes in a record's chunks as another tab of this browser stored
    /// them (read back from IndexedDB). They are stored already, so
    /// nothing is to be written: the record is marked to sync, and
    /// whatever it gained is told as changed. A chunk that does not load is
    /// skipped and named in `Damaged`, beside what the rest brought.
    pub fn merge_stored(
        &mut self,
        id: DocumentId,
        chunks: &[Vec<u8>],
    ) -> (Outcome, Option<Damaged>) {
        let mut out = Outcome::default();
        let entry = self.ensure(id);
        let before = entry.doc.get_heads();
        let mut bad = load_each(&mut entry.doc, chunks);
        let waiting = leave_out_waiting(&mut entry.doc, chunks, &mut bad);
        let damaged = (!bad.is_empty()).then_some(Damaged {
            doc: id,
            chunks: bad,
            waiting,
        });
        let after = entry.doc.get_heads();
        if before == after {
            return (out, damaged);
        }
        // This device holds the record now, whatever the server said.
        entry.unavailable = false;
        out.changed.push(Changed {
            id: id.to_string(),
            origin: Origin::Remote,
            paths: changed_paths(&entry.doc, &before, &after),
        });
        if Some(id) == self.club {
            self.follow_index();
        }
        (out, damaged)
    }

    fn ensure(&mut self, id: DocumentId) -> &mut Entry {
        self.dirty.insert(id);
        let server = self.server.clone();
        self.docs.entry(id).or_insert_with(|| {
            let mut e = Entry::new(id, new_document());
            if let Some(server) = server {
                e.sync.add_peer(server, State::new());
            }
            e
        })
    }

    /// Starts keeping every record the club index lists. A listed record
    /// the server said it did not have is asked for again: a record is
    /// listed when it is created, and may reach the server after its
    /// listing does. Returns what the index lists.
    fn follow_index(&mut self) -> BTreeSet<DocumentId> {
        let listed = self.listed();
        let server = self.server.clone();
        for id in &listed {
            let entry = self.ensure(*id);
            if std::mem::take(&mut entry.unavailable) {
                // Its request was answered: a fresh one goes, or nothing
                // would be sent, nothing answered, and the record counted
                // as syncing until the next socket.
                if let Some(server) = &server {
                    entry.sync.reset_peer(server);
                }
                self.dirty.insert(*id);
            }
        }
        listed
    }

    /// The records the club index lists, as this device holds it.
    fn listed(&self) -> BTreeSet<DocumentId> {
        let Some(entry) = self.club.and_then(|club| self.docs.get(&club)) else {
            return BTreeSet::new();
        };
        let Ok(json) = read_document(&entry.doc) else {
            return BTreeSet::new();
        };
        json["index"]
            .as_object()
            .map(|index| index.keys().filter_map(|k| k.parse().ok()).collect())
            .unwrap_or_default()
    }

    /// Lists in the club index, in one change, every record held here that
    /// the index lacks and never listed: records created on this device,
    /// including those created before it held the club record (a fresh
    /// phone, offline). One the index once listed was taken out by a
    /// coordinator and stays out. Nothing happens until the club record is
    /// here. `listed` is what the index lists now, from
    /// [`Replica::listed`]; `new` a record just created, which no index can
    /// have listed.
    fn list_unindexed(
        &mut self,
        listed: &BTreeSet<DocumentId>,
        new: Option<DocumentId>,
        commit: &Commit,
    ) -> Result<Outcome, ClientError> {
        let Some(club) = self.club.filter(|c| self.entry(*c).is_ok()) else {
            return Ok(Outcome::default());
        };
        // Each record held that the index lacks, with its entry. Only the
        // kinds an index entry may name: a damaged or foreign document is
        // left out rather than failing the change.
        let unlisted: Vec<(DocumentId, Json)> = self
            .docs
            .iter()
            .filter(|(id, e)| {
                **id != club
                    && !listed.contains(*id)
                    && !self.taken_out.contains(*id)
                    && !e.doc.get_heads().is_empty()
            })
            .filter_map(|(id, e)| {
                let summary = summary(*id, &e.doc);
                let kind = summary["kind"]
                    .as_str()?
                    .parse::<Kind>()
                    .ok()
                    .filter(|k| *k != Kind::Club)?;
                let mut value = json!({ "kind": kind.as_str() });
                for key in ["title", "city", "status"] {
                    if !summary[key].is_null() && summary[key] != json!({}) {
                        value[key] = summary[key].clone();
                    }
                }
                Some((*id, value))
            })
            .collect();
        // Going over the club's history costs a pass over all of it: only
        // for records not yet known to have been taken out, and each of
        // those is listed by this change if it never was.
        if unlisted.iter().any(|(id, _)| Some(*id) != new) {
            let ever = ever_indexed(&self.entry(club)?.doc);
            self.taken_out.extend(
                unlisted
                    .iter()
                    .map(|(id, _)| *id)
                    .filter(|id| ever.contains(&id.to_string())),
            );
        }
        let edits: Vec<Edit> = unlisted
            .into_iter()
            .filter(|(id, _)| !self.taken_out.contains(id))
            .map(|(id, value)| Edit::PutEntry {
                path: format!("/index/{id}"),
                value,
            })
            .collect();
        if edits.is_empty() {
            return Ok(Outcome::default());
        }
        self.apply(club, commit, edits)
    }

    pub fn ids(&self) -> impl Iterator<Item = DocumentId> + '_ {
        self.docs.keys().copied()
    }

    /// Every record held, as the list a UI shows: records still arriving
    /// are left out.
    pub fn list(&self) -> Vec<Json> {
        self.docs
            .iter()
            .filter(|(_, e)| !e.doc.get_heads().is_empty())
            .map(|(id, e)| e.summary(*id))
            .collect()
    }

    fn entry(&self, id: DocumentId) -> Result<&Entry, ClientError> {
        let entry = self.docs.get(&id).ok_or(ClientError::UnknownRecord(id))?;
        if entry.doc.get_heads().is_empty() {
            return Err(ClientError::NotYetArrived(id));
        }
        Ok(entry)
    }

    /// One record as JSON: `{id, url, kind, valid, record | errors, conflicts, heads}`.
    pub fn read(&self, id: DocumentId) -> Result<Json, ClientError> {
        let entry = self.entry(id)?;
        let mut out = entry.summary(id);
        out["heads"] = json!(
            entry
                .doc
                .get_heads()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        );
        match read_document_leniently(&entry.doc) {
            Ok((record, errors)) if errors.is_empty() => out["record"] = record,
            read => {
                // The fields that do read, for what counts them (the
                // dashboard's late lists) rather than leave the record out.
                let errors = match read {
                    Ok((partial, errors)) => {
                        out["partial"] = partial;
                        errors
                    }
                    Err(errors) => errors,
                };
                out["errors"] = json!(errors);
                // What the document holds, unchecked, so it can be shown.
                out["stored"] = serde_json::to_value(automerge::AutoSerde::from(&entry.doc))
                    .unwrap_or(Json::Null);
            }
        }
        out["conflicts"] = json!(document_conflicts(&entry.doc));
        Ok(out)
    }

    pub fn history(&self, id: DocumentId) -> Result<Json, ClientError> {
        let entry = self.entry(id)?;
        Ok(json!(document_history_known(
            &entry.doc,
            &mut entry.touched.borrow_mut()
        )))
    }

    /// What changed between two sets of the record's heads (hex hashes),
    /// field by field: `[{path, before, after, text?}]`, the `text` of a
    /// changed text being its passages kept, added and removed. `before`
    /// empty is the record before its first change. For a run of changes
    /// in the history: the first one's deps, then the last one.
    pub fn changes_between(
        &self,
        id: DocumentId,
        before: &[String],
        after: &[String],
    ) -> Result<Json, ClientError> {
        let doc = &self.entry(id)?.doc;
        let heads = |hashes: &[String]| -> Result<Vec<ChangeHash>, ClientError> {
            hashes
                .iter()
                .map(|h| {
                    let hash: ChangeHash = h
                        .parse()
                        .map_err(|_| ClientError::Invalid(format!("`{h}` is not a change hash")))?;
                    match doc.get_change_meta_by_hash(&hash) {
                        Some(_) => Ok(hash),
                        None => Err(ClientError::Invalid(format!(
                            "record {id} holds no change {h}"
                        ))),
                    }
                })
                .collect()
        };
        let (before, after) = (heads(before)?, heads(after)?);
        let now = doc.get_heads();
        let read = |heads: &[ChangeHash]| -> Json {
            let lenient = |d: &Automerge| read_document_leniently(d).ok().map(|(json, _)| json);
            let json = if heads.is_empty() {
                None
            } else if sorted(heads) == now {
                // The newest run, the one most often opened: no replay.
                lenient(doc)
            } else {
                doc.fork_at(heads).ok().as_ref().and_then(lenient)
            };
            json.unwrap_or(Json::Null)
        };
        let (old, new) = (read(&before), read(&after));
        Ok(json!(field_changes(
            doc,
            &before,
            &after,
            &old,
            &new,
            DIFF_TIMEOUT
        )))
    }

    /// The record as it stood at `time` (seconds since the epoch):
    /// `{record}`, `{errors}` when it was not valid then, or `{}` when
    /// nothing of it had been written yet.
    pub fn read_at(&self, id: DocumentId, time: i64) -> Result<Json, ClientError> {
        let then = document_at_time(&self.entry(id)?.doc, time)
            .map_err(|e| ClientError::Invalid(e.to_string()))?;
        if then.heads().is_empty() {
            return Ok(json!({}));
        }
        Ok(match then.read() {
            Ok(record) => json!({ "record": record }),
            Err(errors) => json!({ "errors": errors }),
        })
    }

    /// Creates a record and lists it in the club index, so every device
    /// learns of it. Works offline.
    pub fn create(
        &mut self,
        kind: Kind,
        fields: &Json,
        commit: &Commit,
    ) -> Result<(DocumentId, Outcome), ClientError> {
        let rd = RecordDoc::create(kind, fields, commit)?;
        let id = DocumentId::random();
        let mut out = Outcome::default();
        out.chunks.push(Chunk {
            doc: id,
            bytes: rd.save(),
        });
        let server = self.server.clone();
        let mut e = Entry::new(id, rd.into_automerge());
        if let Some(server) = server {
            e.sync.add_peer(server, State::new());
        }
        self.docs.insert(id, e);
        self.dirty.insert(id);
        out.changed.push(Changed {
            id: id.to_string(),
            origin: Origin::Local,
            paths: vec!["/".into()],
        });
        // A record the club index cannot list (its record written by a
        // newer app, say) is not created at all: kept, it would reach the
        // server without being stored here or listed for anyone.
        let listing = match self.list_unindexed(&self.listed(), Some(id), commit) {
            Ok(listing) => listing,
            Err(e) => {
                self.docs.remove(&id);
                self.dirty.remove(&id);
                return Err(e);
            }
        };
        out.chunks.extend(listing.chunks);
        out.changed.extend(listing.changed);
        Ok((id, out))
    }

    /// The text of the text field at `path` (`/minutes`,
    /// `/milestones/<id>/notes`), read without the rest of the record: what
    /// a keystroke there counts from. `None` if the path names no text
    /// field, or the record cannot be read here (see [`Self::edit`]).
    pub fn text(&self, id: DocumentId, path: &str) -> Result<Option<String>, ClientError> {
        let entry = self.entry(id)?;
        if !path.starts_with('/') || entry.summary(id)["valid"] != json!(true) {
            return Ok(None);
        }
        Ok(document_text(&entry.doc, path))
    }

    /// Applies edits whose text offsets are UTF-16 code units, as the
    /// browser counts them, in one change. Text is spliced only in a record
    /// this device can read: a record another device left unreadable here
    /// (a newer app's, or damaged) takes no keystroke, which would count
    /// from text the screen could not show.
    pub fn edit(
        &mut self,
        id: DocumentId,
        edits: Vec<Edit>,
        commit: &Commit,
    ) -> Result<Outcome, ClientError> {
        self.entry(id)?;
        // Each splice of a batch counts from the text the previous ones left,
        // as the caller wrote it: the record keeps each insert in NFC, which
        // may be shorter, so once an insert was normalised a map carries the
        // caller's later offsets over to the record's.
        let mut texts: BTreeMap<String, CallerText> = BTreeMap::new();
        let mut converted = Vec::with_capacity(edits.len());
        for edit in edits {
            converted.push(match edit {
                Edit::SpliceText {
                    path,
                    index,
                    delete,
                    insert,
                } => {
                    if !texts.contains_key(&path) {
                        let text = self.text(id, &path)?.ok_or_else(|| ClientError::Offset {
                            path: path.clone(),
                            reason: "not a text field of this record, or the record cannot be read on this device".into(),
                        })?;
                        texts.insert(path.clone(), CallerText::new(text));
                    }
                    let text = texts.get_mut(&path).ok_or_else(|| ClientError::Offset {
                        path: path.clone(),
                        reason: "not a text field of this record".into(),
                    })?;
                    let (index, delete, insert) =
                        text.splice(index, delete, insert)
                            .map_err(|e| ClientError::Offset {
                                path: path.clone(),
                                reason: e.to_string(),
                            })?;
                    Edit::SpliceText {
                        path,
                        index,
                        delete,
                        insert,
                    }
                }
                Edit::Set { path, value } => {
                    if value.is_null() {
                        texts.insert(path.clone(), CallerText::new(String::new()));
                    } else if let Some(text) = value.as_str() {
                        let mut caller = CallerText::new(String::new());
                        caller.splice(0, 0, text.to_owned()).map_err(|e| {
                            ClientError::Offset {
                                path: path.clone(),
                                reason: e.to_string(),
                            }
                        })?;
                        texts.insert(path.clone(), caller);
                    } else {
                        texts.remove(&path);
                    }
                    Edit::Set { path, value }
                }
                other => other,
            });
        }
        self.apply(id, commit, converted)
    }

    fn apply(
        &mut self,
        id: DocumentId,
        commit: &Commit,
        edits: Vec<Edit>,
    ) -> Result<Outcome, ClientError> {
        self.entry(id)?;
        self.dirty.insert(id);
        let entry = self
            .docs
            .get_mut(&id)
            .ok_or(ClientError::UnknownRecord(id))?;
        let before = entry.doc.get_heads();
        // A splice in an item whose removal is disputed keeps the item,
        // settling the dispute: a path the splices alone do not name.
        let settles = edits.iter().any(
            |e| matches!(e, Edit::SpliceText { path, .. } if settles_a_removal(&entry.doc, path)),
        );
        let mut rd = RecordDoc::from_automerge(std::mem::take(&mut entry.doc));
        let result = rd.edit(commit, &edits);
        entry.doc = rd.into_automerge();
        result?;
        let mut out = Outcome::default();
        let after = entry.doc.get_heads();
        if after != before {
            out.chunks.push(Chunk {
                doc: id,
                bytes: entry.doc.save_after(&before),
            });
            let paths = match spliced(&edits).filter(|_| !settles) {
                Some(paths) => {
                    // Splices touch only text fields, which no summary
                    // shows and no rule constrains: the summary read at
                    // `before` holds at `after`, without a read per keystroke.
                    entry.summary_moved(&before, &after);
                    paths
                }
                None => changed_paths(&entry.doc, &before, &after),
            };
            out.changed.push(Changed {
                id: id.to_string(),
                origin: Origin::Local,
                paths,
            });
        }
        Ok(out)
    }

    /// The `join` to send when a socket opens.
    pub fn join(&self) -> Message {
        handshake::join(
            self.me.clone(),
            PeerMetadata {
                storage_id: Some(self.storage_id.clone()),
                is_ephemeral: false,
                answers_pings: true,
                hears_coming: true,
            },
        )
    }

    /// The server answered `join`: sync every record with it, each from
    /// its stored sync state.
    pub fn connected(&mut self, server: PeerId) {
        for entry in self.docs.values_mut() {
            let state = entry
                .stored_state
                .as_deref()
                .and_then(|b| State::decode(b).ok())
                .unwrap_or_default();
            entry.sync.add_peer(server.clone(), state);
            entry.unavailable = false;
            entry.deferred = None;
        }
        self.dirty.extend(self.docs.keys().copied());
        self.server = Some(server);
    }

    /// The socket closed: returns the sync states to store.
    pub fn disconnected(&mut self) -> Vec<(DocumentId, Vec<u8>)> {
        // A ping is answered on the socket it came on, or not at all.
        self.pong_owed = false;
        let Some(server) = self.server.take() else {
            return Vec::new();
        };
        let mut states = Vec::new();
        for (id, entry) in &mut self.docs {
            // The next server is asked afresh.
            entry.deferred = None;
            if let Some(state) = entry.sync.remove_peer(&server) {
                let bytes = state.encode();
                entry.stored_state = Some(bytes.clone());
                states.push((*id, bytes));
            }
        }
        states
    }

    pub fn is_connected(&self) -> bool {
        self.server.is_some()
    }

    /// A [`Message::Ping`] for the server, if it is joined and said it
    /// answers pings: a socket that stays silent after one is dead.
    pub fn ping(&self) -> Option<Message> {
        let server = self.server.as_ref().filter(|_| self.server_answers_pings)?;
        Some(Message::Ping {
            sender_id: self.me.clone(),
            target_id: server.clone(),
        })
    }

    /// Handles one frame from the server. `now` (seconds since the epoch)
    /// dates the change, if any, that lists records created here before
    /// the club record arrived, and is when a record deferred by this
    /// frame starts its wait ([`Self::retry_deferred`] takes the same clock).
    pub fn receive(&mut self, frame: &[u8], now: i64) -> Result<Outcome, ClientError> {
        // The frame is in memory already, from the server this device signed
        // in to: a record as large as it allows (`--max-record-mib`, 32 MiB
        // by default) must reach the phone whole.
        let msg = match Message::decode(frame, twinsync_shared::protocol::FrameLimit(usize::MAX)) {
            Ok(msg) => msg,
            // A message a later server adds, as the official client and
            // our server let one pass: closing the socket for it would
            // bring the same message back at every reconnection.
            Err(DecodeError::UnknownType(_)) if self.server.is_some() => {
                return Ok(Outcome::default());
            }
            Err(e) => return Err(ClientError::Protocol(e.to_string())),
        };
        let mut out = Outcome::default();
        match msg {
            Message::Peer {
                sender_id,
                peer_metadata,
                ..
            } => {
                self.server_answers_pings = peer_metadata.answers_pings;
                self.connected(sender_id);
            }
            // The server requests a record it does not hold yet (one we
            // created offline); its payload is a sync message like any other.
            Message::Sync {
                sender_id,
                document_id,
                data,
                ..
            }
            | Message::Request {
                sender_id,
                document_id,
                data,
                ..
            } if self.server.as_ref() == Some(&sender_id) => {
                self.on_sync(&sender_id, document_id, &data, now, &mut out)?;
            }
            Message::DocUnavailable { document_id, .. } => {
                if let Some(e) = self.docs.get_mut(&document_id) {
                    e.unavailable = true;
                }
                out.unavailable.push(document_id);
            }
            Message::Error {
                message, refusal, ..
            } => {
                let deferred = match refusal.as_ref().map(|r| r.code.as_str()) {
                    Some(RATE_LIMITED) => Some(Deferred::Turn),
                    Some(UNREADABLE | TOO_MANY_OPEN) => Some(Deferred::Unread),
                    _ => None,
                };
                if let (Some(r), Some(why)) = (&refusal, deferred) {
                    self.defer(r.document_id, why, r.retry_after, now, &mut out);
                }
                out.errors.push((message, refusal));
            }
            // The server asks whether this device is there, as it does while
            // a frame of ours waits for the device's budget.
            Message::Ping { sender_id, .. } if self.server.as_ref() == Some(&sender_id) => {
                self.pong_owed = true;
            }
            // Ephemeral messages are not used by records; nor is heads gossip.
            _ => {}
        }
        Ok(out)
    }

    /// The exchange of `id` stops for a while (`why`): it starts afresh
    /// once [`Self::retry_deferred`] finds it due, at `now` plus the
    /// server's `retry_after` or the backoff.
    fn defer(
        &mut self,
        id: DocumentId,
        why: Deferred,
        retry_after: Option<u64>,
        now: i64,
        out: &mut Outcome,
    ) {
        let (Some(server), Some(entry)) = (&self.server, self.docs.get_mut(&id)) else {
            return;
        };
        // Either our message was dropped unread, so what the sync state
        // says was sent never arrived, or theirs was: what survives a
        // reconnection (the heads both are known to share) is kept.
        entry.sync.reset_peer(server);
        self.dirty.remove(&id);
        // Deferred already: several messages sent before the first refusal
        // came back are refused one by one, and count as one try. A record
        // whose message the engine refused stays so: only the reset flag
        // has the server send again what it had sent.
        if entry.deferred.is_some() {
            if why == Deferred::Refused {
                entry.deferred = Some(why);
            }
            return;
        }
        entry.deferred = Some(why);
        let secs = match why {
            // The server's window is a minute; a server that says no more
            // than "later" is asked again after one.
            Deferred::Turn => retry_after.unwrap_or(RETRY_FIRST_SECS),
            Deferred::Unread | Deferred::Refused => {
                entry.failures = entry.failures.saturating_add(1);
                let backoff = RETRY_FIRST_SECS << (entry.failures - 1).min(6);
                backoff.max(retry_after.unwrap_or(0))
            }
        }
        .clamp(1, RETRY_MAX_SECS);
        entry.due = now.saturating_add(secs as i64);
        out.retry_after = Some(out.retry_after.map_or(secs, |s| s.min(secs)));
    }

    /// Starts again the exchanges of the deferred records that are due at
    /// `now`, each afresh (a record whose message the engine refused with
    /// Automerge's reset flag); the seconds until the next is due, if any
    /// waits still.
    pub fn retry_deferred(&mut self, now: i64) -> Option<u64> {
        let mut next: Option<i64> = None;
        for (id, entry) in &mut self.docs {
            let Some(why) = entry.deferred else { continue };
            if entry.due > now {
                // A clock set back since: no wait is longer than the most
                // a record is given.
                let wait = (entry.due - now).min(RETRY_MAX_SECS as i64);
                entry.due = now + wait;
                next = Some(next.map_or(wait, |n| n.min(wait)));
                continue;
            }
            entry.deferred = None;
            if why == Deferred::Refused
                && let Some(server) = &self.server
            {
                entry.sync.ask_to_resend(server);
            }
            self.dirty.insert(*id);
        }
        next.map(|n| n.unsigned_abs())
    }

    /// Records whose last message from the server the engine refused, and
    /// none since went through: what `Outcome::refused_here` said holds.
    pub fn held_back(&self) -> usize {
        self.docs.values().filter(|e| e.engine_refused).count()
    }

    /// Records waiting their turn, as the server takes only so many from
    /// one device a minute ([`Self::retry_deferred`]). Those it could not
    /// read are sent again at the same time, and not counted here: the
    /// server's refusal says why.
    pub fn deferred(&self) -> usize {
        self.docs
            .values()
            .filter(|e| e.deferred == Some(Deferred::Turn))
            .count()
    }

    fn on_sync(
        &mut self,
        from: &PeerId,
        id: DocumentId,
        data: &[u8],
        now: i64,
        out: &mut Outcome,
    ) -> Result<(), ClientError> {
        let entry = self.ensure(id);
        // The server syncs it, so it has it now (or asks for ours): a
        // `doc-unavailable` that came first is out of date. Left set, the
        // record would never send its changes again.
        entry.unavailable = false;
        // What the server sends after a message the engine refused is not
        // taken in until the record starts afresh.
        if entry.deferred == Some(Deferred::Refused) {
            return Ok(());
        }
        // Any other deferral is over: it holds the record open for us now.
        entry.deferred = None;
        let before = entry.doc.get_heads();
        let received = match entry.sync.receive(&mut entry.doc, from, data) {
            Ok(received) => received,
            Err(e) => {
                entry.engine_refused = true;
                out.refused_here.push(format!("record {id}: {e}"));
                self.defer(id, Deferred::Refused, None, now, out);
                return Ok(());
            }
        };
        // Gone through: the server's message brought changes, or every head
        // it named is held here. A message that only waits for what the
        // refused one held (its dependencies) is no way out of the backoff.
        let through = !received.new_changes.is_empty() || entry.holds_all_told_by(from);
        if through {
            entry.failures = 0;
            entry.engine_refused = false;
        }
        if let Some(state) = entry.sync.peer_state(from) {
            let bytes = state.encode();
            entry.stored_state = Some(bytes.clone());
            out.sync_states.push((id, bytes));
        }
        if received.new_changes.is_empty() {
            return Ok(());
        }
        let after = entry.doc.get_heads();
        out.chunks.push(Chunk {
            doc: id,
            bytes: received.saved,
        });
        out.changed.push(Changed {
            id: id.to_string(),
            origin: Origin::Remote,
            paths: changed_paths(&entry.doc, &before, &after),
        });
        if Some(id) == self.club {
            let listed = self.follow_index();
            let commit = Commit::new("List records created before the club record arrived", now);
            // What the server sent is applied either way; a listing that
            // fails is tried again with the club's next change or a create.
            if let Ok(listing) = self.list_unindexed(&listed, None, &commit) {
                out.chunks.extend(listing.chunks);
                out.changed.extend(listing.changed);
            }
        }
        Ok(())
    }

    /// The frames to send now.
    pub fn outgoing(&mut self) -> Vec<Vec<u8>> {
        if self.server.is_none() {
            return Vec::new();
        }
        let mut frames = Vec::new();
        if let Some(server) = self.server.as_ref().filter(|_| self.pong_owed) {
            self.pong_owed = false;
            let pong = Message::Pong {
                sender_id: self.me.clone(),
                target_id: server.clone(),
            };
            frames.push(pong.encode());
        }
        for id in std::mem::take(&mut self.dirty) {
            // A message names the record's heads. Automerge may announce a
            // new change by its heads alone and send it once the server
            // says it needs it: the server answers that too.
            let Some(new_heads) = self.docs.get(&id).map(|e| {
                let confirmed = self.server_heads(e);
                e.doc.get_heads().iter().any(|h| !confirmed.contains(h))
            }) else {
                continue;
            };
            let entry = self.docs.get_mut(&id).expect("looked up just above");
            if entry.unavailable || entry.deferred.is_some() {
                continue;
            }
            for msg in entry.sync.generate(&entry.doc, &self.me) {
                if let Message::Sync { data, .. } | Message::Request { data, .. } = &msg {
                    self.answer_owed |=
                        new_heads || sync_shape(data).is_ok_and(|changes| changes > 0);
                }
                frames.push(msg.encode());
            }
        }
        frames
    }

    /// Whether a message `outgoing` handed out since the last call carried
    /// changes or heads the server has not confirmed, which it answers.
    pub fn answer_owed(&mut self) -> bool {
        std::mem::take(&mut self.answer_owed)
    }

    /// Local changes the server has not confirmed holding. Before the
    /// server has answered, every change it has not confirmed in an
    /// earlier session counts.
    pub fn unconfirmed(&self) -> usize {
        self.unconfirmed_by_record().values().sum()
    }

    /// [`Self::unconfirmed`] for each record that has any.
    pub fn unconfirmed_by_record(&self) -> BTreeMap<DocumentId, usize> {
        self.docs
            .iter()
            .map(|(id, e)| (*id, self.unconfirmed_in(e)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// The changes of `e` the server has not confirmed. While what the
    /// server confirmed stands, every change new since the last count is
    /// unconfirmed too (none is an ancestor of what it confirmed, which
    /// the record held then with all its ancestors): only those are
    /// listed.
    fn unconfirmed_in(&self, e: &Entry) -> usize {
        let confirmed = self.server_heads(e);
        let heads = e.doc.get_heads();
        let mut kept = e.unconfirmed.borrow_mut();
        let n = match kept.as_ref() {
            Some((at, then, n))
                if *then == confirmed
                    && at
                        .iter()
                        .all(|h| e.doc.get_change_meta_by_hash(h).is_some()) =>
            {
                if *at == heads {
                    *n
                } else {
                    n + e.doc.get_changes_meta(at).len()
                }
            }
            _ => e.doc.get_changes_meta(&confirmed).len(),
        };
        *kept = Some((heads, confirmed, n));
        n
    }

    /// Whether this device holds every change the server said it has of
    /// record `id`, in this session: what the record lacks then, the
    /// server lacks too.
    pub fn holds_all_the_server_has(&self, id: DocumentId) -> bool {
        let (Some(e), Some(server)) = (self.docs.get(&id), &self.server) else {
            return false;
        };
        e.holds_all_told_by(server)
    }

    /// Records whose heads differ from the server's, or unknown to it yet.
    pub fn syncing(&self) -> usize {
        self.docs
            .values()
            .filter(|e| !e.unavailable)
            .filter(|e| {
                let theirs = self
                    .server
                    .as_ref()
                    .and_then(|s| e.sync.peer_state(s))
                    .and_then(|s| s.their_heads.clone());
                theirs.is_none_or(|h| {
                    let mut ours = e.doc.get_heads();
                    let mut h = h;
                    ours.sort();
                    h.sort();
                    ours != h
                })
            })
            .count()
    }

    /// The heads the server has confirmed, limited to changes we hold: its
    /// live heads and the heads both are known to share. Its heads alone
    /// would confirm nothing as soon as it names one change we lack yet
    /// (another device's, announced at a reconnect before it is sent), and
    /// every change of the record would count as unconfirmed meanwhile.
    fn server_heads(&self, e: &Entry) -> Vec<ChangeHash> {
        let live = self.server.as_ref().and_then(|s| e.sync.peer_state(s));
        let heads: Vec<ChangeHash> = match live {
            Some(state) => {
                let mut heads = state.their_heads.clone().unwrap_or_default();
                heads.extend(state.shared_heads.iter().copied());
                heads.sort_unstable();
                heads.dedup();
                heads
            }
            None => e
                .stored_state
                .as_deref()
                .and_then(|b| State::decode(b).ok())
                .map(|s| s.shared_heads)
                .unwrap_or_default(),
        };
        heads
            .into_iter()
            .filter(|h| e.doc.get_change_meta_by_hash(h).is_some())
            .collect()
    }

    /// The change hashes record `id` stands at; none if it is not held.
    pub fn heads(&self, id: DocumentId) -> Vec<ChangeHash> {
        self.docs
            .get(&id)
            .map(|e| e.doc.get_heads())
            .unwrap_or_default()
    }

    /// The whole record as one chunk.
    pub fn snapshot(&self, id: DocumentId) -> Option<Vec<u8>> {
        self.docs
            .get(&id)
            .filter(|e| !e.doc.get_heads().is_empty())
            .map(|e| e.doc.save())
    }

    /// The whole record as one chunk to replace what is stored
    /// (compaction), once it loads back as the record ([`loads_back`]):
    /// the chunks it replaces may hold changes the server has not seen.
    pub fn checked_snapshot(&self, id: DocumentId) -> Option<Result<Vec<u8>, String>> {
        let doc = &self.docs.get(&id)?.doc;
        let heads = doc.get_heads();
        if heads.is_empty() {
            return None;
        }
        let snapshot = doc.save();
        Some(loads_back(&snapshot, &heads).map(|()| snapshot))
    }

    /// Ids of records the server refused to share.
    pub fn unavailable(&self) -> BTreeSet<DocumentId> {
        self.docs
            .iter()
            .filter(|(_, e)| e.unavailable)
            .map(|(id, _)| *id)
            .collect()
    }
}

/// What the list shows of a record, as on the server's list.
fn summary(id: DocumentId, doc: &Automerge) -> Json {
    let mut out = json!(summarise(doc));
    out["id"] = json!(id.to_string());
    out["url"] = json!(id.url().to_string());
    out
}

/// The paths of `edits` if all are text splices, which change exactly the
/// texts they name: what Automerge's diff would say, without its pass over
/// the whole record (9.5 ms a keystroke in minutes of 49,000 characters,
/// natively, against 0.03 ms for the splice itself).
fn spliced(edits: &[Edit]) -> Option<Vec<String>> {
    let mut paths: Vec<String> = Vec::new();
    for edit in edits {
        let Edit::SpliceText { path, .. } = edit else {
            return None;
        };
        if !paths.contains(path) {
            paths.push(path.clone());
        }
    }
    Some(paths)
}

/// Loads stored bytes into a document, for checks outside the replica.
pub fn load(bytes: &[u8]) -> Result<Automerge, ClientError> {
    load_document(bytes).map_err(|e| ClientError::Corrupt {
        doc: String::new(),
        reason: e.to_string(),
    })
}

/// A text field as the caller of [`Replica::edit`] sees it while a batch
/// of splices goes on: with each insert as the caller wrote it.
struct CallerText {
    text: String,
    /// The record's code-point index for each of the caller's (one more
    /// than the text has characters; none for a place inside characters
    /// the record keeps composed), once an insert was normalised to
    /// something else; none while the two texts are the same.
    map: Option<Vec<Option<usize>>>,
}

impl CallerText {
    fn new(text: String) -> Self {
        Self { text, map: None }
    }

    /// Takes a splice at UTF-16 offsets into the caller's text, and
    /// answers it as the record takes it: code-point index, count and
    /// insert, in NFC. Within an insert, positions map as
    /// [`nfc_positions`] says; a splice starting or ending where it gives
    /// none is refused.
    fn splice(
        &mut self,
        index: usize,
        delete: usize,
        insert: String,
    ) -> Result<(usize, usize, String), OffsetError> {
        let (offset, units) = (index, delete);
        let (index, delete) = utf16_range(&self.text, index, delete)?;
        let start = self
            .text
            .char_indices()
            .nth(index)
            .map_or(self.text.len(), |(b, _)| b);
        let end = self.text[start..]
            .char_indices()
            .nth(delete)
            .map_or(self.text.len(), |(b, _)| start + b);
        let stored = nfc(&insert);
        if self.map.is_none() && stored != insert {
            self.map = Some((0..=self.text.chars().count()).map(Some).collect());
        }
        let spliced = match &mut self.map {
            None => (index, delete, stored),
            Some(map) => {
                let Some(from) = map[index] else {
                    return Err(OffsetError::InsideComposed(offset));
                };
                let Some(to) = map[index + delete] else {
                    return Err(OffsetError::InsideComposed(offset + units));
                };
                let kept = stored.chars().count();
                let after: Vec<Option<usize>> = map[index + delete..]
                    .iter()
                    .map(|m| m.map(|m| m - (to - from) + kept))
                    .collect();
                map.truncate(index);
                map.extend(
                    nfc_positions(&insert)
                        .into_iter()
                        .map(|k| k.map(|k| from + k)),
                );
                map.extend(after);
                (from, to - from, stored)
            }
        };
        self.text.replace_range(start..end, &insert);
        Ok(spliced)
    }
}

/// Whether every change `chunk` holds is applied in `doc`; a saved
/// document's changes are, as it loads whole or not at all.
fn all_applied(doc: &Automerge, chunk: &[u8]) -> bool {
    twinsync_shared::record::chunks(chunk).all(|(kind, bytes)| {
        kind == twinsync_shared::record::DOCUMENT_CHUNK
            || bytes
                .and_then(|b| automerge::Change::from_bytes(b.to_vec()).ok())
                .is_none_or(|change| doc.get_change_meta_by_hash(&change.hash()).is_some())
    })
}

/// Leaves out of `doc` the changes of `chunks` stored without one they
/// build on. Automerge keeps such changes waiting inside the document,
/// unseen, and every exchange with the server would start over (the sync
/// engine takes a queue for changes still arriving). What they build on
/// was not kept here: the server has it if this device sent it, or sends
/// it again if it was the server's and the device could not keep it (a
/// write that failed, the keys typed after it kept on their own). So the
/// chunks are named and added to `bad`; they load once what they build on
/// is held. Returns their index in `chunks`.
fn leave_out_waiting(
    doc: &mut Automerge,
    chunks: &[Vec<u8>],
    bad: &mut Vec<(usize, String)>,
) -> Vec<usize> {
    let missing = doc.get_missing_deps(&[]).len();
    if missing == 0 {
        return Vec::new();
    }
    let waiting: Vec<usize> = (0..chunks.len())
        .filter(|i| !bad.iter().any(|(b, _)| b == i) && !all_applied(doc, &chunks[*i]))
        .collect();
    let why = format!("its changes build on {missing} this device does not hold");
    bad.extend(waiting.iter().map(|i| (*i, why.clone())));
    let applied = doc.get_changes(&[]);
    let mut whole = new_document().with_actor(doc.get_actor().clone());
    if refuse_panics(|| whole.apply_changes(applied)).is_ok() {
        *doc = whole;
    }
    waiting
}

/// Loads `chunks` into `doc` one at a time, skipping those that do not
/// load; returns their index in `chunks` and why.
fn load_each(doc: &mut Automerge, chunks: &[Vec<u8>]) -> Vec<(usize, String)> {
    let mut bad = Vec::new();
    for (i, chunk) in chunks.iter().enumerate() {
        if let Err(e) = check_chunk(chunk).and_then(|()| doc.load_incremental(chunk)) {
            bad.push((i, e.to_string()));
        }
    }
    bad
}
