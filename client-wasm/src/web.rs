//! The JavaScript API: a [`Client`] that keeps records in IndexedDB and
//! syncs them over one WebSocket, through the [`Replica`].
//!
//! Everything runs on the page's one thread. A single event loop owns the
//! order of things: socket events, timers and the `online` event arrive as
//! [`Event`]s and are handled one at a time. What a frame or an edit
//! changed is in IndexedDB before it is announced (or, if the write
//! failed, the status says the device did not keep it), and nothing is
//! sent while any write is pending.
//!
//! Tabs of one browser share its IndexedDB: after each write a tab names
//! the records it wrote on a `BroadcastChannel`, and the others read those
//! records' new chunks back and merge them, so a second tab never edits a
//! stale copy of what the first one wrote.

mod store;

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use futures::StreamExt;
use futures::channel::mpsc;
use js_sys::{Function, Uint8Array};
use serde::Serialize;
use twinsync_shared::protocol::{
    FrameLimit, Message, RATE_LIMITED, Refusal, SLOW_LINK_BYTES_PER_SEC, SUBPROTOCOL,
    TOKEN_SUBPROTOCOL,
};
use twinsync_shared::record::{Commit, Edit, Kind};
use twinsync_shared::{DocumentId, PeerId, StorageId};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::spawn_local;
use web_sys::{BinaryType, CloseEvent, MessageEvent, WebSocket};

use crate::replica::{Chunk, ClientError, Outcome, Replica};
use store::{Store, StoreError};

/// Compact a record's chunks into one snapshot past this many.
const COMPACT_AFTER: usize = 32;
/// Reconnect delays: doubling from the first to the last, with jitter.
const BACKOFF_FIRST_MS: f64 = 500.0;
const BACKOFF_MAX_MS: f64 = 30_000.0;
/// A connection that lasted this long was a working one: the backoff
/// starts over when it ends. One the server closes sooner (its storage
/// failing, a refusal that ends the socket) keeps backing off, or every
/// phone would come back twice a second for as long as the trouble lasts.
const STABLE_MS: f64 = 30_000.0;
/// A socket not joined this long after it was opened is given up: a
/// network that drops packets silently leaves it connecting for minutes.
const JOIN_LIMIT_MS: u32 = 20_000;
/// A joined socket that hears nothing this long after it sent changes,
/// which the server always answers, is given up: a phone whose network
/// changed under it (a new cell, a NAT that forgot it) keeps a socket
/// that leads nowhere until TCP gives up, many minutes later.
const ANSWER_LIMIT_MS: u32 = 60_000;
/// A joined socket silent this long, with nothing of ours unanswered, is
/// asked whether the server is there (`twinsync-ping`, if the server said
/// it answers pings): a phone that only listens would otherwise never
/// notice that its network dropped the socket without a word.
const SILENCE_MS: u32 = 30_000;
/// The time the server has to answer a ping before the socket is given up.
const PING_LIMIT_MS: u32 = 15_000;
/// How long unsaved records wait to be written whole again after such a
/// write failed.
const UNSAVED_RETRY_MS: f64 = 10_000.0;
/// The longest the timer that tries unsaved records again waits.
const UNSAVED_RETRY_MAX_MS: f64 = 300_000.0;
/// The page shown again tries unsaved records at once, unless such a
/// write failed this recently.
const SHOWN_RETRY_MS: f64 = 2_000.0;
/// A write to IndexedDB still not done this long after it started is
/// stuck: WebKit has left transactions hanging after a page came back from
/// the background, until it reloads. Sends no longer wait for it.
const WRITE_STUCK_MS: u32 = 15_000;

#[wasm_bindgen(typescript_custom_section)]
const TS_TYPES: &str = r#"
/** Options of `Client.open`. */
export interface ClientOptions {
  /** IndexedDB database name; one per user of the device. Default "twinsync". */
  database?: string;
  /** The sync endpoint, e.g. "ws://127.0.0.1:8080/sync". Default: /sync on this page's host. */
  server?: string;
  /** The device token, offered as the WebSocket subprotocol `twinsync-token.<token>`, never in the URL. */
  token?: string;
  /** The club record's id or automerge: URL; else asked of the server once. */
  club?: string;
  /** Start offline, until `connect()`. */
  offline?: boolean;
}

/** A record as lists show it. */
export interface RecordSummary {
  id: string;
  url: string;
  kind: "club" | "city" | "agreement" | "project" | "meeting" | "person" | "report" | null;
  title: { ar?: string; fr?: string; en?: string } | string | null;
  city: string | null;
  status: string | null;
  /** A meeting's or a report's date, `YYYY-MM-DD`. */
  date: string | null;
  valid: boolean;
}

/** One record, merged: its fields, or why it is invalid, and its conflicts. */
export interface RecordView extends RecordSummary {
  /** The change hashes the record stands at. */
  heads: string[];
  record?: Record<string, unknown>;
  errors?: { path: string; code: string; reason: string }[];
  /** A record that does not read: its document as stored, unchecked. */
  stored?: Record<string, unknown>;
  /** A record that does not read: its fields that do, without those `errors` names. */
  partial?: Record<string, unknown>;
  conflicts: { path: string; values: { value: unknown; actor: string }[] }[];
}

/** An edit. Text offsets (`index`, `delete`) are UTF-16 code units, as in JavaScript strings. */
export type Edit =
  | { op: "set"; path: string; value: unknown }
  | { op: "splice_text"; path: string; index: number; delete: number; insert: string }
  | { op: "insert_item"; path: string; after: string | null; item: Record<string, unknown> }
  | { op: "remove_item"; path: string }
  | { op: "add_member"; path: string; member: string }
  | { op: "remove_member"; path: string; member: string }
  | { op: "put_entry"; path: string; value: Record<string, unknown> }
  | { op: "remove_entry"; path: string };

/** What changed in one record. */
export interface Change {
  id: string;
  origin: "local" | "remote";
  paths: string[];
}

/** The sync status, for a status bar. */
export interface SyncStatus {
  state: "offline" | "connecting" | "syncing" | "up-to-date" | "error";
  /** Records not yet in step with the server. */
  syncing: number;
  /** Local changes the server has not confirmed holding. */
  unconfirmed: number;
  /** Why, when `state` is "error"; else why the device is offline, if known. */
  error?: string;
  /** What `error` is about, when `state` is "error". */
  errorKind?: "storage-full" | "not-saved" | "storage-stuck" | "damaged" | "protocol" | "server" | "superseded";
  /** What the server said when it refused a change; kept until every local change is confirmed. */
  refused?: string;
  /**
   * Beside `refused`, when the server said what it refused: the record, why
   * (a code such as "not-yours", "adopted", "ended", "invalid", "too-large",
   * or "not-stored" and "unreadable" for the server's own trouble),
   * the record path at fault, and the quarantine entry that keeps the change
   * for a coordinator to review, if there is one; `discarded` when a
   * coordinator already discarded that entry, so the change will never be taken.
   */
  refusal?: { documentId: string; code: string; path: string; quarantine?: number; discarded?: boolean };
  /** Records the server refused to share. */
  unavailable: string[];
  /**
   * Records this device could not keep (its storage is full, or failed):
   * they are in memory, and sync if online, and are written whole with
   * later writes until one works (after one failed, not for 10 s), and
   * by a timer while no write comes (after 10 s, then ever more slowly).
   * `error` says why while any is listed.
   */
  unsaved: string[];
  /**
   * Records the server has not taken yet, as this device opened more in a
   * minute than it allows (the refusal code "rate-limited"): sent again
   * when the server said to, without a reconnection.
   */
  deferred: number;
  /**
   * How many times this client has joined the server since it opened: a new
   * value means a new connection, whatever `state` shows meanwhile.
   */
  joins: number;
  /**
   * A write to IndexedDB has not finished in 15 s (WebKit has left them
   * hanging until a reload): changes are sent without waiting for it, and
   * an edit made meanwhile rejects with `StorageStuckError` (the record
   * holds it, and the write goes on). `errorKind` says "storage-stuck"
   * unless another storage error says more.
   */
  storageStuck: boolean;
  /** The connection itself, whatever error `state` shows over it. */
  link: "offline" | "connecting" | "joined";
  /** The person chose to stay offline (`disconnect()`); `connect()` ends it. */
  paused: boolean;
  /**
   * How many times the browser dropped this page's storage connection
   * (Safari does, to a page left in the background) and it was opened
   * again, with what was being written then written on the new one.
   */
  storageReopened: number;
  /**
   * Whether the browser keeps this device's storage until the person
   * clears it (`navigator.storage.persist()` granted), or may clear it
   * when the phone runs short of space, what waits to be sent included;
   * null until the browser has answered.
   */
  persisted: boolean | null;
}

/** One field of a record kind, or of the items of a list or map field. */
export interface SchemaField {
  name: string;
  type: "str" | "multilingual" | "text" | "date" | "enum" | "bool" | "int" | "ref" | "set" | "list" | "map";
  required: boolean;
  /** The allowed values of an `enum`, or of a restricted `set`. */
  values?: string[];
  /** The fields of each item of a `list` or `map`. */
  fields?: SchemaField[];
  min?: number;
  max?: number;
}

/** One entry of a record's history. */
export interface HistoryEntry {
  hash: string; actor: string; seq: number; time: number;
  message: string | null; deps: string[]; fields: string[];
}
"#;

/// An error for JavaScript: an `Error` whose `name` says which kind.
fn js_error(name: &str, message: impl std::fmt::Display) -> JsValue {
    let e = js_sys::Error::new(&message.to_string());
    e.set_name(name);
    e.into()
}

impl From<ClientError> for JsValue {
    fn from(e: ClientError) -> Self {
        let name = match &e {
            ClientError::UnknownRecord(_) | ClientError::NotYetArrived(_) => "NotFoundError",
            ClientError::Edit(_) | ClientError::Offset { .. } | ClientError::Invalid(_) => {
                "EditError"
            }
            ClientError::Corrupt { .. } => "CorruptError",
            ClientError::Protocol(_) => "ProtocolError",
        };
        js_error(name, e)
    }
}

/// `SyncStatus.errorKind` for a write the device could not keep.
fn unsaved_kind(e: &StoreError) -> &'static str {
    match e {
        StoreError::Quota(_) => "storage-full",
        StoreError::Superseded => "superseded",
        _ => "not-saved",
    }
}

/// The error said while the device could not keep what it holds.
fn not_saved(e: &StoreError) -> (&'static str, String) {
    (unsaved_kind(e), format!("not saved on this device: {e}"))
}

/// Whether `error` says the device could not keep something (`not_saved`).
fn says_not_saved(error: &Option<(&'static str, String)>) -> bool {
    error
        .as_ref()
        .is_some_and(|(kind, _)| matches!(*kind, "storage-full" | "not-saved"))
}

impl From<StoreError> for JsValue {
    fn from(e: StoreError) -> Self {
        let name = match &e {
            StoreError::Quota(_) => "QuotaExceededError",
            StoreError::Superseded => "SupersededError",
            _ => "StorageError",
        };
        js_error(name, e)
    }
}

/// What the status says of local data that did not load.
fn damaged_said(what: &str) -> String {
    format!("damaged local data: {what}; what loaded is kept, the rest comes back from the server")
}

fn to_js<T: Serialize + ?Sized>(value: &T) -> Result<JsValue, JsValue> {
    value
        .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .map_err(|e| js_error("TypeError", e))
}

fn parse_id(id: &str) -> Result<DocumentId, JsValue> {
    let bare = id.strip_prefix("automerge:").unwrap_or(id);
    let bare = bare.split('#').next().unwrap_or(bare);
    bare.parse()
        .map_err(|e| js_error("TypeError", format!("not a record id: {id:?} ({e})")))
}

/// Milliseconds on the page's monotonic clock (`performance.now()`), which
/// a change of the phone's wall clock does not move; `Date.now()` where a
/// page has none.
fn monotonic_ms() -> f64 {
    web_sys::window()
        .and_then(|w| w.performance())
        .map_or_else(js_sys::Date::now, |p| p.now())
}

/// The bytes of the frame `frame` announces ([`Message::Coming`]), if it
/// is such an announcement: a small frame, read as it arrives.
fn coming(frame: &[u8]) -> Option<u64> {
    if frame.len() > 512 {
        return None;
    }
    match Message::decode(frame, FrameLimit::default()) {
        Ok(Message::Coming { bytes, .. }) => Some(bytes),
        _ => None,
    }
}

/// Whether the page is shown (not in a background tab, nor the app left).
fn page_visible() -> bool {
    web_sys::window()
        .and_then(|w| w.document())
        .is_some_and(|d| d.visibility_state() == web_sys::VisibilityState::Visible)
}

fn now_secs() -> i64 {
    (js_sys::Date::now() / 1000.0) as i64
}

/// See the `SyncStatus` TypeScript type.
#[derive(Debug, Serialize)]
struct Status {
    state: &'static str,
    syncing: usize,
    unconfirmed: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// What `error` is about, for the app to say in the person's language.
    #[serde(rename = "errorKind", skip_serializing_if = "Option::is_none")]
    error_kind: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refused: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refusal: Option<RefusalView>,
    unavailable: Vec<String>,
    unsaved: Vec<String>,
    deferred: usize,
    joins: u32,
    link: &'static str,
    paused: bool,
    #[serde(rename = "storageReopened")]
    storage_reopened: u32,
    persisted: Option<bool>,
    #[serde(rename = "storageStuck")]
    storage_stuck: bool,
}

/// Turns taken one at a time, first come first served: the one holding
/// a turn hands it, when dropped, to the longest waiting.
#[derive(Default)]
struct WriteTurns {
    busy: Cell<bool>,
    waiting: RefCell<std::collections::VecDeque<futures::channel::oneshot::Sender<()>>>,
}

/// A turn of `WriteTurns`, held until dropped.
struct WriteTurn<'a>(&'a WriteTurns);

impl WriteTurns {
    async fn take(&self) -> WriteTurn<'_> {
        if self.busy.replace(true) {
            let (tx, rx) = futures::channel::oneshot::channel();
            self.waiting.borrow_mut().push_back(tx);
            let mut wait = Waiting {
                turns: self,
                rx: Some(rx),
            };
            if let Some(rx) = wait.rx.as_mut() {
                // Handed over by the turn before: `busy` stays set.
                let _ = rx.await;
            }
            wait.rx = None;
        }
        WriteTurn(self)
    }

    /// Hands the turn to the longest waiting, or frees it.
    fn pass_on(&self) {
        loop {
            let next = self.waiting.borrow_mut().pop_front();
            match next {
                // A waiter gone is passed over.
                Some(tx) => {
                    if tx.send(()).is_ok() {
                        return;
                    }
                }
                None => {
                    self.busy.set(false);
                    return;
                }
            }
        }
    }
}

/// A wait for a turn; dropped before it ends, a turn already handed to
/// it goes on to the next.
struct Waiting<'a> {
    turns: &'a WriteTurns,
    rx: Option<futures::channel::oneshot::Receiver<()>>,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if let Some(mut rx) = self.rx.take() {
            rx.close();
            if let Ok(Some(())) = rx.try_recv() {
                self.turns.pass_on();
            }
        }
    }
}

impl Drop for WriteTurn<'_> {
    fn drop(&mut self) {
        self.0.pass_on();
    }
}

/// JavaScript's `Number.MAX_SAFE_INTEGER`.
const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// `SyncStatus.refusal`.
#[derive(Debug, Clone, Serialize)]
struct RefusalView {
    #[serde(rename = "documentId")]
    document_id: String,
    code: String,
    path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    quarantine: Option<u64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    discarded: bool,
}

impl From<&Refusal> for RefusalView {
    fn from(r: &Refusal) -> Self {
        Self {
            document_id: r.document_id.to_string(),
            code: r.code.clone(),
            path: r.path.clone(),
            // A number JavaScript cannot hold exactly would fail the
            // whole status: such an entry goes unnamed.
            quarantine: r.quarantine.filter(|q| *q <= MAX_SAFE_INTEGER),
            discarded: r.discarded,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    Offline,
    Connecting,
    Joined,
}

/// What the event loop handles, one at a time.
enum Event {
    Opened(u32),
    Frame(u32, Vec<u8>),
    Closed(u32, String),
    /// The socket is gone: store these sync states, then try again later.
    Lost(Vec<(DocumentId, Vec<u8>)>),
    /// Time to try connecting again, or the browser came online.
    Wake,
    /// Local edits want sending.
    Flush,
    /// Time to start again the deferred records that are due: the timer
    /// set for this time ([`Inner::schedule_retry`]).
    Retry(f64),
    /// Time to try again to write whole the records the device could not
    /// keep.
    SaveUnsaved,
    /// The page is shown again: try those records at once.
    Shown,
    /// Another tab of this browser stored chunks of these records.
    Stored(Vec<DocumentId>),
    /// A newer version of the app, in another tab, took IndexedDB over.
    Superseded,
}

/// The open socket, with the handlers it calls: they are dropped with it,
/// once `drop_socket` has detached them.
struct Socket {
    seq: u32,
    ws: WebSocket,
    _onopen: Closure<dyn FnMut()>,
    _onmessage: Closure<dyn FnMut(MessageEvent)>,
    _onclose: Closure<dyn FnMut(CloseEvent)>,
}

struct Inner {
    replica: RefCell<Replica>,
    store: Store,
    server: String,
    token: Option<String>,
    events: mpsc::UnboundedSender<Event>,
    socket: RefCell<Option<Socket>>,
    socket_seq: Cell<u32>,
    link: Cell<Link>,
    /// Connections that reached `Link::Joined`, for `SyncStatus.joins`.
    joins: Cell<u32>,
    /// The user asked to stay offline.
    paused: Cell<bool>,
    /// Whether the browser granted storage it will not evict, once it said.
    persisted: Rc<Cell<Option<bool>>>,
    attempts: Cell<u32>,
    /// When the current socket was joined ([`monotonic_ms`]), for `STABLE_MS`.
    joined_at: Cell<Option<f64>>,
    /// The first send of changes the server has not answered yet, by its
    /// ticket: any frame from the server clears it, and `ANSWER_LIMIT_MS`
    /// after that send it must have been cleared.
    /// Cleared as a frame arrives, in the socket's message handler.
    unanswered: Rc<Cell<Option<u32>>>,
    tickets: Cell<u32>,
    /// When the current socket last brought a frame ([`monotonic_ms`]),
    /// stamped as it arrives: the event loop may be busy writing to
    /// IndexedDB long after. After a [`Message::Coming`], when the frame
    /// it announces is due at [`SLOW_LINK_BYTES_PER_SEC`].
    heard_at: Rc<Cell<f64>>,
    /// A reconnection is scheduled.
    reconnect_due: Cell<bool>,
    /// When the timer that starts the deferred records again fires
    /// ([`monotonic_ms`]): one at a time, as the server refuses each record
    /// in its own frame, unless a record is due sooner than it.
    retry_at: Cell<Option<f64>>,
    /// `last_error` says what the engine refused of a record's message
    /// ([`Replica::held_back`]): cleared once a message for it goes
    /// through, not only at the next join.
    held_back_said: Cell<bool>,
    /// What went wrong here, and its kind (`SyncStatus.errorKind`).
    last_error: RefCell<Option<(&'static str, String)>>,
    /// Why the socket last closed.
    offline_reason: RefCell<Option<String>>,
    /// The server's last `error`, such as a refused change, with what was
    /// refused if it said: shown until every local change is confirmed.
    refused: RefCell<Option<(String, Option<Refusal>)>>,
    /// Writes to IndexedDB in progress; nothing is sent meanwhile, unless
    /// one of them is stuck.
    pending_writes: Cell<u32>,
    /// IndexedDB work in progress (writes, compactions, reads of what
    /// other tabs stored) that has taken over [`WRITE_STUCK_MS`]: while any
    /// is, changes held in memory only are sent all the same.
    stuck_writes: Cell<u32>,
    /// Writes of outcomes take turns, in the order they were made (see
    /// `write_turn`).
    turns: WriteTurns,
    /// The club named at opening that the device could not keep: written
    /// when the server is next joined.
    club_unsaved: Cell<Option<DocumentId>>,
    /// Records whose last write failed: written whole next time.
    unsaved: RefCell<std::collections::BTreeSet<DocumentId>>,
    /// Why `unsaved` is not kept: the last write that failed.
    unsaved_why: RefCell<Option<StoreError>>,
    /// The chunks of `unsaved` records whose writes failed, one after the
    /// other: what their stored chunks lack. A record too big to be written
    /// whole in the room left is kept by writing them as one chunk
    /// (`try_unsaved`), where the keys typed after them, stored alone,
    /// would otherwise build on changes held in memory only.
    failed_chunks: RefCell<std::collections::HashMap<DocumentId, Vec<u8>>>,
    /// When the last whole write of `unsaved` failed, if it did.
    unsaved_failed_at: Cell<Option<f64>>,
    /// A whole write of `unsaved` is under way: another would only repeat it.
    saving_unsaved: Cell<bool>,
    /// A write of changes failed since a write going through last tried
    /// `unsaved` whole: one going through now may mean room was made. (A
    /// record too big for the room left, while each key's change fits,
    /// would otherwise be written whole at every key.)
    small_write_failed: Cell<bool>,
    /// A timer will try the whole write of `unsaved` again.
    unsaved_retry_due: Cell<bool>,
    /// The timer's tries of `unsaved` that failed in a row: each waits twice
    /// as long as the one before, up to `UNSAVED_RETRY_MAX_MS`.
    unsaved_failures: Cell<u32>,
    /// Chunk keys per record, for compaction.
    chunk_keys: RefCell<std::collections::HashMap<DocumentId, Vec<f64>>>,
    /// Keys of stored chunks that wait for a change they build on
    /// (`Damaged::waiting`): out of `chunk_keys`, so no compaction deletes
    /// them, until they load or the server shows it lacks that change too
    /// (`settle_waiting`).
    waiting: RefCell<std::collections::HashMap<DocumentId, Vec<f64>>>,
    /// For a record whose last compaction failed, the count of chunks
    /// past which it is tried again: not at every key typed, each a whole
    /// snapshot, on a phone that refuses them.
    compact_after: RefCell<std::collections::HashMap<DocumentId, usize>>,
    change_listeners: RefCell<Vec<(u32, Function)>>,
    status_listeners: RefCell<Vec<(u32, Function)>>,
    next_listener: Cell<u32>,
    closed: Cell<bool>,
    /// Keep the `online`, `offline` and `visibilitychange` listeners alive.
    online_listener: RefCell<Option<Closure<dyn FnMut()>>>,
    offline_listener: RefCell<Option<Closure<dyn FnMut()>>>,
    shown_listener: RefCell<Option<Closure<dyn FnMut()>>>,
    /// Where this tab names the records it wrote, and hears the other
    /// tabs name theirs (none where the browser has no such channel).
    tabs: Option<Tabs>,
}

/// The channel the tabs of one browser share for one database, with the
/// handler of what it brings.
struct Tabs {
    channel: web_sys::BroadcastChannel,
    _heard: Closure<dyn FnMut(MessageEvent)>,
}

impl Tabs {
    /// Opens the channel of `database`; what another tab names reaches the
    /// event loop as [`Event::Stored`].
    fn open(database: &str, events: mpsc::UnboundedSender<Event>) -> Option<Self> {
        let channel = web_sys::BroadcastChannel::new(&format!("twinsync-tabs:{database}")).ok()?;
        let heard = Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| {
            let ids: Vec<DocumentId> = js_sys::Array::from(&e.data())
                .iter()
                .filter_map(|id| id.as_string()?.parse().ok())
                .collect();
            if !ids.is_empty() {
                let _ = events.unbounded_send(Event::Stored(ids));
            }
        });
        channel.set_onmessage(Some(heard.as_ref().unchecked_ref()));
        Some(Self {
            channel,
            _heard: heard,
        })
    }
}

/// The twinsync client: records kept offline in IndexedDB and synced with
/// the server whenever a connection allows.
#[wasm_bindgen]
pub struct Client {
    inner: Rc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("replica", &self.inner.replica)
            .field("link", &self.inner.link.get())
            .finish()
    }
}

#[wasm_bindgen]
impl Client {
    /// Opens the local store (creating it on first use), restores every
    /// record, asks the browser to keep the storage persistent, and starts
    /// syncing unless `offline` is set.
    #[wasm_bindgen(unchecked_return_type = "Client")]
    pub async fn open(
        #[wasm_bindgen(unchecked_param_type = "ClientOptions | undefined")] options: JsValue,
    ) -> Result<Client, JsValue> {
        let opt = |key: &str| -> Option<String> {
            if options.is_object() {
                js_sys::Reflect::get(&options, &key.into())
                    .ok()
                    .and_then(|v| v.as_string())
            } else {
                None
            }
        };
        let offline = options.is_object()
            && js_sys::Reflect::get(&options, &"offline".into())
                .ok()
                .and_then(|v| v.as_bool())
                .unwrap_or(false);
        let database = opt("database").unwrap_or_else(|| "twinsync".into());
        let (tx, rx) = mpsc::unbounded();
        let store = Store::open(&database, {
            let tx = tx.clone();
            move || {
                let _ = tx.unbounded_send(Event::Superseded);
            }
        })
        .await?;
        let window = web_sys::window().ok_or_else(|| js_error("Error", "no window"))?;
        // Ask that the browser never evict the field work; a refusal is not
        // an error, and a browser that asks the person first (Firefox) does
        // not hold up the opening. The answer is in the status, once known.
        let persisted: Rc<Cell<Option<bool>>> = Rc::new(Cell::new(None));
        let asked_persist = window.navigator().storage().persist().ok();
        // Listening to the other tabs before reading the store: what one
        // writes meanwhile is merged once the event loop starts.
        let tabs = Tabs::open(&database, tx.clone());
        let identity = store.identity().await?;
        let mut replica = Replica::new(
            PeerId::new(format!("{}-{}", identity.storage_id, random_suffix())),
            StorageId::new(identity.storage_id.clone()),
        );
        let loaded = store.load_all().await?;
        let mut chunk_keys = std::collections::HashMap::new();
        let mut waiting = std::collections::HashMap::new();
        let mut damaged = loaded.problems;
        for record in loaded.records {
            let mut keys: Vec<f64> = record.chunks.iter().map(|(k, _)| *k).collect();
            let bytes: Vec<Vec<u8>> = record.chunks.into_iter().map(|(_, b)| b).collect();
            // Damaged chunks stay listed, so the next compaction of the
            // record replaces them with a snapshot of what did load. Not
            // those waiting for a change they build on: whole, they are
            // kept aside until the server sends it (`settle_waiting`).
            if let Err(e) = replica.restore(record.id, &bytes, record.sync_state) {
                damaged.push(e.to_string());
                let aside: Vec<f64> = e.waiting.iter().map(|i| keys[*i]).collect();
                keys.retain(|k| !aside.contains(k));
                if !aside.is_empty() {
                    waiting.insert(record.id, aside);
                }
            }
            chunk_keys.insert(record.id, keys);
        }
        let club = opt("club")
            .map(|c| parse_id(&c))
            .transpose()?
            .or(identity.club);
        // A phone whose storage is full still opens with what it holds: the
        // club named here is kept when the server is next joined, if not now.
        let mut not_kept = None;
        if let Some(club) = club {
            replica.set_club(club);
            if Some(club) != identity.club
                && let Err(e) = store.put_club(club).await
            {
                not_kept = Some((
                    club,
                    (
                        unsaved_kind(&e),
                        format!("not saved on this device: which club this is: {e}"),
                    ),
                ));
            }
        }
        let server = match opt("server") {
            Some(s) => s,
            None => {
                let loc = window.location();
                let scheme = if loc.protocol()? == "https:" {
                    "wss"
                } else {
                    "ws"
                };
                format!("{scheme}://{}/sync", loc.host()?)
            }
        };
        let inner = Rc::new(Inner {
            replica: RefCell::new(replica),
            store,
            server,
            token: opt("token"),
            events: tx,
            socket: RefCell::new(None),
            socket_seq: Cell::new(0),
            link: Cell::new(Link::Offline),
            joins: Cell::new(0),
            paused: Cell::new(offline),
            persisted: persisted.clone(),
            attempts: Cell::new(0),
            joined_at: Cell::new(None),
            unanswered: Rc::new(Cell::new(None)),
            tickets: Cell::new(0),
            heard_at: Rc::new(Cell::new(0.0)),
            reconnect_due: Cell::new(false),
            retry_at: Cell::new(None),
            held_back_said: Cell::new(false),
            club_unsaved: Cell::new(not_kept.as_ref().map(|(club, _)| *club)),
            last_error: RefCell::new(if damaged.is_empty() {
                not_kept.map(|(_, error)| error)
            } else {
                Some(("damaged", damaged_said(&damaged.join("; "))))
            }),
            offline_reason: RefCell::new(None),
            refused: RefCell::new(None),
            pending_writes: Cell::new(0),
            stuck_writes: Cell::new(0),
            turns: WriteTurns::default(),
            unsaved: RefCell::new(Default::default()),
            unsaved_why: RefCell::new(None),
            failed_chunks: RefCell::new(Default::default()),
            unsaved_failed_at: Cell::new(None),
            saving_unsaved: Cell::new(false),
            small_write_failed: Cell::new(false),
            unsaved_retry_due: Cell::new(false),
            unsaved_failures: Cell::new(0),
            chunk_keys: RefCell::new(chunk_keys),
            waiting: RefCell::new(waiting),
            compact_after: RefCell::new(std::collections::HashMap::new()),
            change_listeners: RefCell::new(Vec::new()),
            status_listeners: RefCell::new(Vec::new()),
            next_listener: Cell::new(1),
            closed: Cell::new(false),
            online_listener: RefCell::new(None),
            offline_listener: RefCell::new(None),
            shown_listener: RefCell::new(None),
            tabs,
        });
        for msg in &damaged {
            web_sys::console::warn_1(&msg.into());
        }
        if let Some(asked) = asked_persist {
            let weak = Rc::downgrade(&inner);
            spawn_local(async move {
                let granted = wasm_bindgen_futures::JsFuture::from(asked).await;
                persisted.set(Some(granted.is_ok_and(|v| v.as_bool() == Some(true))));
                if let Some(inner) = weak.upgrade() {
                    inner.announce_status();
                }
            });
        }
        let events = inner.events.clone();
        let online = Closure::<dyn FnMut()>::new(move || {
            let _ = events.unbounded_send(Event::Wake);
        });
        window.add_event_listener_with_callback("online", online.as_ref().unchecked_ref())?;
        *inner.online_listener.borrow_mut() = Some(online);
        // An open socket may hang on silently when the network goes away:
        // close it, and reconnect with backoff until `online`.
        let weak = Rc::downgrade(&inner);
        let went_offline = Closure::<dyn FnMut()>::new(move || {
            if let Some(inner) = weak.upgrade() {
                inner.drop_socket("the device went offline");
            }
        });
        window
            .add_event_listener_with_callback("offline", went_offline.as_ref().unchecked_ref())?;
        *inner.offline_listener.borrow_mut() = Some(went_offline);
        // Back in the app, perhaps after making room in another: what the
        // device could not keep is tried at once.
        if let Some(document) = window.document() {
            let events = inner.events.clone();
            let shown = Closure::<dyn FnMut()>::new(move || {
                if page_visible() {
                    let _ = events.unbounded_send(Event::Shown);
                }
            });
            document.add_event_listener_with_callback(
                "visibilitychange",
                shown.as_ref().unchecked_ref(),
            )?;
            *inner.shown_listener.borrow_mut() = Some(shown);
        }
        spawn_local(event_loop(Rc::clone(&inner), rx));
        if !offline {
            let _ = inner.events.unbounded_send(Event::Wake);
        }
        Ok(Client { inner })
    }

    /// Every record on this device.
    #[wasm_bindgen(unchecked_return_type = "RecordSummary[]")]
    pub fn list(&self) -> Result<JsValue, JsValue> {
        to_js(&self.inner.replica.borrow().list())
    }

    /// One record, merged.
    #[wasm_bindgen(unchecked_return_type = "RecordView")]
    pub fn read(&self, id: &str) -> Result<JsValue, JsValue> {
        let id = parse_id(id)?;
        to_js(&self.inner.replica.borrow().read(id)?)
    }

    /// The text a keystroke in the text field at `path` counts from, read
    /// without the rest of the record; `undefined` if the path names no
    /// text field or the record cannot be read on this device.
    pub fn text(&self, id: &str, path: &str) -> Result<Option<String>, JsValue> {
        let id = parse_id(id)?;
        Ok(self.inner.replica.borrow().text(id, path)?)
    }

    /// The record as it stood at `time` (milliseconds since the epoch, as
    /// `Date.now()`): `{}` before its first change, `errors` when it was
    /// not valid then.
    #[wasm_bindgen(js_name = readAt, unchecked_return_type = "{ record?: Record<string, unknown>; errors?: { path: string; code: string; reason: string }[] }")]
    pub fn read_at(&self, id: &str, time: f64) -> Result<JsValue, JsValue> {
        let id = parse_id(id)?;
        let secs = (time / 1000.0).floor() as i64;
        to_js(&self.inner.replica.borrow().read_at(id, secs)?)
    }

    /// What changed between two sets of the record's heads, field by
    /// field: for a run of changes in the history, the first one's `deps`
    /// and the last one's `hash`.
    #[wasm_bindgen(js_name = changesBetween, unchecked_return_type = "{ path: string; before: unknown; after: unknown; text?: { kind: \"same\" | \"added\" | \"removed\"; text: string }[] }[]")]
    pub fn changes_between(
        &self,
        id: &str,
        before: Vec<String>,
        after: Vec<String>,
    ) -> Result<JsValue, JsValue> {
        let id = parse_id(id)?;
        to_js(
            &self
                .inner
                .replica
                .borrow()
                .changes_between(id, &before, &after)?,
        )
    }

    /// The record's change log, oldest first.
    #[wasm_bindgen(unchecked_return_type = "HistoryEntry[]")]
    pub fn history(&self, id: &str) -> Result<JsValue, JsValue> {
        let id = parse_id(id)?;
        to_js(&self.inner.replica.borrow().history(id)?)
    }

    /// Creates a record; resolves with its id once it is in IndexedDB. If
    /// IndexedDB fails, the record still exists and syncs: the error's
    /// `recordId` names it.
    #[wasm_bindgen(unchecked_return_type = "string")]
    pub async fn create(
        &self,
        #[wasm_bindgen(
            unchecked_param_type = "\"city\" | \"agreement\" | \"project\" | \"meeting\" | \"person\" | \"report\""
        )]
        kind: String,
        #[wasm_bindgen(unchecked_param_type = "Record<string, unknown>")] fields: JsValue,
        message: String,
    ) -> Result<JsValue, JsValue> {
        self.inner.writable()?;
        let kind: Kind = kind
            .parse()
            .map_err(|e| js_error("TypeError", format!("{e}")))?;
        let fields: serde_json::Value = serde_wasm_bindgen::from_value(fields)
            .map_err(|e| js_error("TypeError", format!("fields: {e}")))?;
        let commit = Commit::new(message, now_secs());
        let (id, out) = self
            .inner
            .replica
            .borrow_mut()
            .create(kind, &fields, &commit)?;
        if let Err(e) = self.inner.commit_local(out).await {
            // The record exists, in memory and syncing; only the device
            // could not keep it. The error names it, so that the caller
            // shows it rather than creating it again.
            let _ = js_sys::Reflect::set(
                &e,
                &JsValue::from_str("recordId"),
                &JsValue::from_str(&id.to_string()),
            );
            return Err(e);
        }
        Ok(JsValue::from_str(&id.to_string()))
    }

    /// Applies edits to a record as one change; resolves once the change is
    /// in IndexedDB. Text offsets are UTF-16 code units.
    ///
    /// The change is made before this returns, not in a later microtask as
    /// an `async` export would: offsets the caller computed from the text
    /// it sees then still point where it meant, even if a remote change is
    /// being applied in the microtasks queued meanwhile.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn edit(
        &self,
        id: String,
        #[wasm_bindgen(unchecked_param_type = "Edit[]")] edits: JsValue,
        message: String,
    ) -> js_sys::Promise {
        let made = (|| {
            self.inner.writable()?;
            let id = parse_id(&id)?;
            let edits: Vec<Edit> = serde_wasm_bindgen::from_value(edits)
                .map_err(|e| js_error("TypeError", format!("edits: {e}")))?;
            let commit = Commit::new(message, now_secs());
            let out = self.inner.replica.borrow_mut().edit(id, edits, &commit)?;
            Ok::<_, JsValue>(out)
        })();
        match made {
            Ok(out) => {
                let inner = Rc::clone(&self.inner);
                // The change is in the document now, but the write starts a
                // microtask later: counted at once, so that nothing sent
                // meanwhile (say, from the event loop, after a listener
                // that edits) carries it before it is stored.
                inner.pending_writes.set(inner.pending_writes.get() + 1);
                wasm_bindgen_futures::future_to_promise(async move {
                    // `store` counts the write itself, in this same turn.
                    inner.pending_writes.set(inner.pending_writes.get() - 1);
                    inner.commit_local(out).await.map(|()| JsValue::UNDEFINED)
                })
            }
            Err(e) => js_sys::Promise::reject(&e),
        }
    }

    /// Resolves a conflict by writing the chosen value at `path`.
    pub async fn resolve(
        &self,
        id: String,
        path: String,
        value: JsValue,
        message: String,
    ) -> Result<(), JsValue> {
        self.inner.writable()?;
        let id = parse_id(&id)?;
        let value: serde_json::Value = serde_wasm_bindgen::from_value(value)
            .map_err(|e| js_error("TypeError", format!("value: {e}")))?;
        let commit = Commit::new(message, now_secs());
        let out =
            self.inner
                .replica
                .borrow_mut()
                .edit(id, vec![Edit::Set { path, value }], &commit)?;
        self.inner.commit_local(out).await
    }

    /// Calls `listener(changes)` after each stored change, local or remote,
    /// and after a local one the device could not store (its promise
    /// rejects, yet the record holds it).
    /// Returns a number for `unsubscribe`.
    pub fn subscribe(
        &self,
        #[wasm_bindgen(unchecked_param_type = "(changes: Change[]) => void")] listener: Function,
    ) -> u32 {
        self.inner.listen(&self.inner.change_listeners, listener)
    }

    /// Calls `listener(status)` whenever the sync status may have changed.
    #[wasm_bindgen(js_name = onStatus)]
    pub fn on_status(
        &self,
        #[wasm_bindgen(unchecked_param_type = "(status: SyncStatus) => void")] listener: Function,
    ) -> u32 {
        self.inner.listen(&self.inner.status_listeners, listener)
    }

    pub fn unsubscribe(&self, handle: u32) {
        self.inner
            .change_listeners
            .borrow_mut()
            .retain(|(h, _)| *h != handle);
        self.inner
            .status_listeners
            .borrow_mut()
            .retain(|(h, _)| *h != handle);
    }

    #[wasm_bindgen(unchecked_return_type = "SyncStatus")]
    pub fn status(&self) -> Result<JsValue, JsValue> {
        to_js(&self.inner.status())
    }

    /// The club record's id, once known.
    #[wasm_bindgen(getter)]
    pub fn club(&self) -> Option<String> {
        self.inner.replica.borrow().club().map(|c| c.to_string())
    }

    /// This device's peer id for this session.
    #[wasm_bindgen(getter, js_name = peerId)]
    pub fn peer_id(&self) -> String {
        self.inner.replica.borrow().peer_id().to_string()
    }

    /// Goes online (the default after `open`).
    pub fn connect(&self) {
        self.inner.paused.set(false);
        let _ = self.inner.events.unbounded_send(Event::Wake);
    }

    /// Goes offline and stays so until `connect()`; edits keep being stored.
    pub fn disconnect(&self) {
        self.inner.paused.set(true);
        self.inner.close_socket();
    }

    /// Stops syncing and closes the socket.
    pub fn close(&self) {
        self.inner.closed.set(true);
        self.inner.close_socket();
        self.inner.events.close_channel();
        if let Some(tabs) = &self.inner.tabs {
            tabs.channel.set_onmessage(None);
            tabs.channel.close();
        }
        // The window would otherwise call listeners dropped with the client.
        if let Some(window) = web_sys::window() {
            for (event, listener) in [
                ("online", self.inner.online_listener.borrow_mut().take()),
                ("offline", self.inner.offline_listener.borrow_mut().take()),
            ] {
                if let Some(f) = listener {
                    let _ = window
                        .remove_event_listener_with_callback(event, f.as_ref().unchecked_ref());
                }
            }
            if let (Some(document), Some(f)) = (
                window.document(),
                self.inner.shown_listener.borrow_mut().take(),
            ) {
                let _ = document.remove_event_listener_with_callback(
                    "visibilitychange",
                    f.as_ref().unchecked_ref(),
                );
            }
        }
    }
}

/// The record kinds and their fields, for building forms: `{kind: Field[]}`.
#[wasm_bindgen(unchecked_return_type = "Record<string, SchemaField[]>")]
pub fn schema() -> Result<JsValue, JsValue> {
    to_js(&twinsync_shared::record::describe_schema())
}

fn random_suffix() -> String {
    let mut b = [0u8; 4];
    let _ = getrandom::fill(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Inner {
    fn listen(&self, list: &RefCell<Vec<(u32, Function)>>, f: Function) -> u32 {
        let h = self.next_listener.get();
        self.next_listener.set(h + 1);
        list.borrow_mut().push((h, f));
        h
    }

    fn status(&self) -> Status {
        let replica = self.replica.borrow();
        let stuck = self.stuck_writes.get() > 0;
        let (error_kind, error) = match self.last_error.borrow().clone() {
            // What the device could not keep, or cannot read, says more.
            Some((kind, why))
                if !stuck
                    || matches!(
                        kind,
                        "damaged" | "superseded" | "storage-full" | "not-saved"
                    ) =>
            {
                (Some(kind), Some(why))
            }
            _ if stuck => (
                Some("storage-stuck"),
                Some(format!(
                    "this device's storage has not finished a write in {} s: changes are sent to the server without waiting for it, and are not kept on this device until it does; reload the page once the server holds them all",
                    WRITE_STUCK_MS / 1000
                )),
            ),
            Some((kind, why)) => (Some(kind), Some(why)),
            None => {
                let refused = self.refused.borrow().as_ref().map(|(m, _)| m.clone());
                (refused.as_ref().map(|_| "server"), refused)
            }
        };
        let syncing = replica.syncing();
        let unconfirmed = replica.unconfirmed();
        let state = match self.link.get() {
            _ if error.is_some() => "error",
            Link::Offline => "offline",
            Link::Connecting => "connecting",
            // Not up to date while the server lacks a change made here.
            Link::Joined if syncing > 0 || unconfirmed > 0 => "syncing",
            Link::Joined => "up-to-date",
        };
        Status {
            state,
            syncing,
            unconfirmed,
            error_kind,
            error: error.or_else(|| {
                (self.link.get() == Link::Offline)
                    .then(|| self.offline_reason.borrow().clone())
                    .flatten()
            }),
            refused: self.refused.borrow().as_ref().map(|(m, _)| m.clone()),
            refusal: self
                .refused
                .borrow()
                .as_ref()
                .and_then(|(_, r)| r.as_ref().map(RefusalView::from)),
            unavailable: replica
                .unavailable()
                .iter()
                .map(|d| d.to_string())
                .collect(),
            unsaved: self
                .unsaved
                .borrow()
                .iter()
                .map(|d| d.to_string())
                .collect(),
            deferred: replica.deferred(),
            joins: self.joins.get(),
            link: match self.link.get() {
                Link::Offline => "offline",
                Link::Connecting => "connecting",
                Link::Joined => "joined",
            },
            paused: self.paused.get(),
            storage_reopened: self.store.reopened(),
            persisted: self.persisted.get(),
            storage_stuck: stuck,
        }
    }

    fn announce_status(&self) {
        let Ok(status) = to_js(&self.status()) else {
            return;
        };
        let listeners: Vec<Function> = self
            .status_listeners
            .borrow()
            .iter()
            .map(|(_, f)| f.clone())
            .collect();
        for f in listeners {
            let _ = f.call1(&JsValue::NULL, &status);
        }
    }

    fn announce_changes(&self, out: &Outcome) {
        if out.changed.is_empty() {
            return;
        }
        let Ok(changes) = to_js(&out.changed) else {
            return;
        };
        let listeners: Vec<Function> = self
            .change_listeners
            .borrow()
            .iter()
            .map(|(_, f)| f.clone())
            .collect();
        for f in listeners {
            let _ = f.call1(&JsValue::NULL, &changes);
        }
    }

    /// Stores an outcome; only then may anyone hear of it.
    ///
    /// While a write is pending nothing is sent, so no message reflects a
    /// change that is not yet on the device. A record whose write failed is
    /// written whole (a snapshot) before the next write, in a transaction of
    /// its own, or failing that, what its failed writes held as one chunk
    /// (`failed_chunks`): if the device still cannot keep it, the record stays unsaved
    /// (and said so in the status) while the outcome at hand is stored all
    /// the same, so a record too big for a full device does not stop every
    /// later edit, or the link that would take it to the server. An unsaved
    /// record's sync state is not stored until the record is.
    async fn store(&self, out: &Outcome) -> Result<(), StoreError> {
        self.pending_writes.set(self.pending_writes.get() + 1);
        // Behind a stuck write this one waits too: its change goes now.
        if self.stuck_writes.get() > 0 {
            let _ = self.events.unbounded_send(Event::Flush);
        }
        let mut compact = Vec::new();
        // In the order the outcomes were made: a key typed while the one
        // before it waits on another record's whole write must not be
        // stored, and said saved, first; it builds on that one, and alone
        // it could not be read back.
        let turn = self.turns.take().await;
        let written = self.watched(self.write(out, &mut compact)).await;
        drop(turn);
        self.pending_writes.set(self.pending_writes.get() - 1);
        compact.sort();
        compact.dedup();
        for doc in compact {
            self.watched(self.compact(doc)).await;
        }
        written
    }

    /// Awaits IndexedDB work (what `work` makes) unless storage is stuck,
    /// and then hands it to a task of its own, where `after` takes its
    /// result, and answers `None`: the event loop goes on taking in and
    /// answering what arrives, and an edit's promise settles, while the
    /// write waits. The work is polled here first, so a write counts as
    /// pending and takes its turn before anything else runs.
    async fn unless_stuck<T: 'static, F: std::future::Future<Output = T> + 'static>(
        self: &Rc<Self>,
        work: impl FnOnce(Rc<Self>) -> F,
        after: impl FnOnce(Rc<Self>, T) + 'static,
    ) -> Option<T> {
        use futures::future::{Either, select};
        let mut work: std::pin::Pin<Box<dyn std::future::Future<Output = T>>> =
            Box::pin(work(Rc::clone(self)));
        if let std::task::Poll::Ready(done) = futures::poll!(&mut work) {
            return Some(done);
        }
        loop {
            if self.stuck_writes.get() > 0 {
                let me = Rc::clone(self);
                spawn_local(async move { after(me, work.await) });
                return None;
            }
            let tick = gloo_timers::future::TimeoutFuture::new(250);
            match select(work, tick).await {
                Either::Left((done, _)) => return Some(done),
                Either::Right(((), pending)) => work = pending,
            }
        }
    }

    /// `store(out)` through [`Self::unless_stuck`]: a failure the write
    /// meets once handed off is said then, if `say` (a socket's sync
    /// states alone are not worth an error).
    async fn store_unless_stuck(
        self: &Rc<Self>,
        out: Rc<Outcome>,
        say: bool,
    ) -> Option<Result<(), StoreError>> {
        self.unless_stuck(
            |me| async move { me.store(&out).await },
            move |me, stored| {
                if let Err(e) = stored
                    && say
                {
                    *me.last_error.borrow_mut() = Some(not_saved(&e));
                    me.announce_status();
                }
            },
        )
        .await
    }

    /// Awaits IndexedDB work (`work`), said stuck once it has taken
    /// [`WRITE_STUCK_MS`]. It is awaited to its end all the same: dropped,
    /// the `idb` future's callbacks would fire into freed closures, and it
    /// may yet go through. Meanwhile nothing waits for a write to send:
    /// what only memory holds is safer on the server than held back until
    /// a reload loses it, as after a write that failed. Nothing written is
    /// out of turn, so the sync states the writes behind it keep still
    /// follow the chunks before them.
    async fn watched<T>(&self, work: impl std::future::Future<Output = T>) -> T {
        use futures::future::{Either, select};
        let work = std::pin::pin!(work);
        let limit = gloo_timers::future::TimeoutFuture::new(WRITE_STUCK_MS);
        match select(work, limit).await {
            Either::Left((done, _)) => done,
            Either::Right(((), work)) => {
                self.stuck_writes.set(self.stuck_writes.get() + 1);
                let _ = self.events.unbounded_send(Event::Flush);
                self.announce_status();
                let done = work.await;
                self.stuck_writes.set(self.stuck_writes.get() - 1);
                self.announce_status();
                done
            }
        }
    }

    /// Writes the unsaved records, then the outcome, and says which
    /// records now have chunks enough to compact.
    async fn write(&self, out: &Outcome, compact: &mut Vec<DocumentId>) -> Result<(), StoreError> {
        self.save_unsaved(compact).await;
        let unsaved = self.unsaved.borrow().clone();
        let states: Vec<(DocumentId, Vec<u8>)> = out
            .sync_states
            .iter()
            .filter(|(doc, _)| !unsaved.contains(doc))
            .cloned()
            .collect();
        if out.chunks.is_empty() && states.is_empty() {
            return Ok(());
        }
        match self.store.append(&out.chunks, &states).await {
            Ok(keys) => {
                self.tell_tabs(&out.chunks);
                compact.extend(self.keep_chunk_keys(&out.chunks, keys));
                // A write went through where one had failed: there may be
                // room again for what failed, which is tried now rather
                // than when its pause ends (a tab closed meanwhile would
                // lose it).
                if !out.chunks.is_empty()
                    && self.unsaved_failed_at.get().is_some()
                    && self.small_write_failed.replace(false)
                {
                    self.unsaved_failed_at.set(None);
                    self.save_unsaved(compact).await;
                }
                // A change to a record not kept whole builds on changes the
                // device does not hold: stored, it could not be read back.
                // It is not kept until the record is. It goes with the
                // failed writes too: another tab, holding all the server
                // has, may give its chunk up as waiting for a change no one
                // holds and compact it away, and the chunk written when
                // this record catches up must then hold it.
                let unsaved = self.unsaved.borrow();
                if out.chunks.iter().any(|c| unsaved.contains(&c.doc)) {
                    let mut failed = self.failed_chunks.borrow_mut();
                    for chunk in out.chunks.iter().filter(|c| unsaved.contains(&c.doc)) {
                        failed
                            .entry(chunk.doc)
                            .or_default()
                            .extend_from_slice(&chunk.bytes);
                    }
                    return Err(self.unsaved_why.borrow().clone().unwrap_or_else(|| {
                        StoreError::Failed("an earlier write of this record failed".into())
                    }));
                }
                Ok(())
            }
            Err(e) => {
                self.unsaved
                    .borrow_mut()
                    .extend(out.chunks.iter().map(|c| c.doc));
                let mut failed = self.failed_chunks.borrow_mut();
                for chunk in &out.chunks {
                    failed
                        .entry(chunk.doc)
                        .or_default()
                        .extend_from_slice(&chunk.bytes);
                }
                drop(failed);
                *self.unsaved_why.borrow_mut() = Some(e.clone());
                // Kept in memory only: tried whole by a later write, or by
                // the timer should none come.
                if !out.chunks.is_empty() {
                    self.small_write_failed.set(true);
                }
                if !self.unsaved.borrow().is_empty() {
                    self.schedule_unsaved_retry();
                }
                Err(e)
            }
        }
    }

    /// Writes the unsaved records whole (`try_unsaved`).
    ///
    /// One such write at a time, and once one failed, none for
    /// `UNSAVED_RETRY_MS` unless a write of changes goes through where one
    /// had failed: on a full or failing phone, each key typed would
    /// otherwise save the whole record again, long minutes and all, only
    /// to be refused. What a skipped write leaves unsaved stays listed,
    /// and is written whole by a later one.
    async fn save_unsaved(&self, compact: &mut Vec<DocumentId>) {
        let failed_lately = self
            .since_unsaved_failed()
            .is_some_and(|since| since < UNSAVED_RETRY_MS);
        if self.unsaved.borrow().is_empty() || failed_lately || self.saving_unsaved.replace(true) {
            return;
        }
        self.try_unsaved(compact).await;
        if !self.unsaved.borrow().is_empty() {
            self.schedule_unsaved_retry();
        }
        self.saving_unsaved.set(false);
    }

    /// How long ago the last whole write of the unsaved records failed,
    /// if it did.
    fn since_unsaved_failed(&self) -> Option<f64> {
        self.unsaved_failed_at.get().map(|at| monotonic_ms() - at)
    }

    /// Writes each unsaved record whole: together in one transaction, and
    /// if that fails, each alone in its own, smallest first. A record whose
    /// snapshot does not load back has its failed writes written instead.
    async fn try_unsaved(&self, compact: &mut Vec<DocumentId>) {
        // A store closed for good takes nothing: no whole record to save.
        if self.store.gone() {
            return;
        }
        let retry: Vec<DocumentId> = self.unsaved.borrow().iter().copied().collect();
        // A change made while the snapshots are written is not in them,
        // but is written by its own write, which waits for this one's turn
        // (`store`): should that fail, its record is unsaved again then.
        let mut chunks: Vec<Chunk> = Vec::new();
        // What has no snapshot has nothing to write.
        let mut saved: Vec<DocumentId> = Vec::new();
        let mut failed: Option<StoreError> = None;
        for doc in &retry {
            match self.replica.borrow().checked_snapshot(*doc) {
                Some(Ok(bytes)) => chunks.push(Chunk { doc: *doc, bytes }),
                // Written, it would be the only stored copy of the changes
                // whose write failed, and would not load (Automerge has
                // saved documents it could not load again): its failed
                // writes are written instead, below.
                Some(Err(why)) => {
                    failed = Some(StoreError::Damaged(format!(
                        "record {doc} does not load back once saved whole: {why}"
                    )));
                }
                None => saved.push(*doc),
            }
        }
        match self.store.append(&chunks, &[]).await {
            Ok(keys) => {
                self.tell_tabs(&chunks);
                compact.extend(self.keep_chunk_keys(&chunks, keys));
                saved.extend(chunks.iter().map(|c| c.doc));
            }
            Err(_) if chunks.len() > 1 && !self.store.gone() => {
                // One record too big for the room left must not keep the
                // others unsaved: each is tried alone, smallest first.
                let mut alone: Vec<&Chunk> = chunks.iter().collect();
                alone.sort_by_key(|c| c.bytes.len());
                for chunk in alone {
                    if self.store.gone() {
                        break;
                    }
                    let one = std::slice::from_ref(chunk);
                    match self.store.append(one, &[]).await {
                        Ok(keys) => {
                            self.tell_tabs(one);
                            compact.extend(self.keep_chunk_keys(one, keys));
                            saved.push(chunk.doc);
                        }
                        Err(alone) => failed = Some(alone),
                    }
                }
            }
            Err(e) => failed = Some(e),
        }
        // A record with no room to be written whole may have room for what
        // its failed writes held: with the chunks stored, those make it
        // whole again.
        let mut caught_up = Vec::new();
        if failed.is_some() {
            for doc in retry.iter().filter(|d| !saved.contains(d)) {
                match self.write_failed_chunks(*doc, compact).await {
                    Ok(true) => caught_up.push(*doc),
                    Ok(false) => {}
                    Err(e) => failed = Some(e),
                }
            }
        }
        // A write that failed while its record caught up keeps it unsaved.
        let failed_chunks = self.failed_chunks.borrow();
        saved.extend(
            caught_up
                .into_iter()
                .filter(|doc| !failed_chunks.contains_key(doc)),
        );
        drop(failed_chunks);
        if retry.iter().all(|doc| saved.contains(doc)) {
            failed = None;
        }
        {
            let mut failed_chunks = self.failed_chunks.borrow_mut();
            for doc in &saved {
                failed_chunks.remove(doc);
            }
        }
        // Any refusal pauses the next try, not a full quota alone: a disk
        // fault (`UnknownError`) would otherwise have each key typed write
        // the whole record again, as a full phone would.
        self.unsaved_failed_at
            .set(failed.is_some().then(monotonic_ms));
        // Only the records a write took whole are saved now: a write that
        // failed meanwhile keeps its records unsaved.
        let emptied = {
            let mut unsaved = self.unsaved.borrow_mut();
            unsaved.retain(|doc| !saved.contains(doc));
            unsaved.is_empty()
        };
        if emptied && says_not_saved(&self.last_error.borrow()) {
            self.last_error.borrow_mut().take();
        }
        match failed {
            Some(e) => {
                *self.last_error.borrow_mut() = Some(not_saved(&e));
                *self.unsaved_why.borrow_mut() = Some(e);
                self.schedule_unsaved_retry();
            }
            None => self.unsaved_failures.set(0),
        }
    }

    /// Writes what `doc`'s failed writes held, as one chunk. Whether there
    /// was any and it is stored now; put back, before any write that
    /// failed meanwhile, when the write fails.
    async fn write_failed_chunks(
        &self,
        doc: DocumentId,
        compact: &mut Vec<DocumentId>,
    ) -> Result<bool, StoreError> {
        if self.store.gone() {
            return Ok(false);
        }
        let Some(held) = self.failed_chunks.borrow_mut().remove(&doc) else {
            return Ok(false);
        };
        let chunks = [Chunk { doc, bytes: held }];
        match self.store.append(&chunks, &[]).await {
            Ok(keys) => {
                self.tell_tabs(&chunks);
                compact.extend(self.keep_chunk_keys(&chunks, keys));
                Ok(true)
            }
            Err(e) => {
                let [Chunk { bytes: held, .. }] = chunks;
                let mut all = self.failed_chunks.borrow_mut();
                let later = all.remove(&doc).unwrap_or_default();
                all.insert(doc, [held, later].concat());
                Err(e)
            }
        }
    }

    /// Tries the whole write of the unsaved records now, whatever the
    /// pause; `timer` if its timer asked, which then waits longer for its
    /// next try should this one fail.
    async fn save_unsaved_now(&self, timer: bool) {
        self.unsaved_failed_at.set(None);
        // Counted before the try, whose failure sets the next timer: a
        // success starts the count over.
        if timer {
            self.unsaved_failures.set(self.unsaved_failures.get() + 1);
        }
        let _ = self.store(&Outcome::default()).await;
        if self.unsaved.borrow().is_empty() {
            self.unsaved_failures.set(0);
        }
        self.announce_status();
    }

    /// Tries the whole write of the unsaved records again once its pause
    /// is over, whether or not keys are typed meanwhile: a person who made
    /// room on a full phone, or whose disk came back, and who then closes
    /// the app without typing, keeps their record. The timer backs off
    /// while its own tries keep failing, so an idle full phone does not
    /// save long minutes whole every 10 s all night.
    fn schedule_unsaved_retry(&self) {
        let doublings = self.unsaved_failures.get().min(16);
        self.schedule_unsaved_retry_in(
            (UNSAVED_RETRY_MS * 2f64.powi(doublings as i32)).min(UNSAVED_RETRY_MAX_MS),
        );
    }

    /// One timer at a time: a later failure waits for the one set.
    fn schedule_unsaved_retry_in(&self, delay: f64) {
        if self.unsaved_retry_due.replace(true) {
            return;
        }
        let tx = self.events.clone();
        spawn_local(async move {
            gloo_timers::future::TimeoutFuture::new(delay as u32).await;
            let _ = tx.unbounded_send(Event::SaveUnsaved);
        });
    }

    /// Names to the other tabs the records whose `chunks` were just stored.
    fn tell_tabs(&self, chunks: &[Chunk]) {
        let Some(tabs) = &self.tabs else { return };
        let mut ids: Vec<DocumentId> = chunks.iter().map(|c| c.doc).collect();
        ids.sort();
        ids.dedup();
        if ids.is_empty() {
            return;
        }
        let names: js_sys::Array = ids
            .iter()
            .map(|id| JsValue::from_str(&id.to_string()))
            .collect();
        let _ = tabs.channel.post_message(&names);
    }

    /// Merges what another tab stored of `ids`: the chunks this tab has
    /// not seen, read back from IndexedDB. Their keys join this tab's, so
    /// its next compaction, whose snapshot holds them, replaces them too;
    /// keys no longer stored (another tab compacted them) leave, and so do
    /// those of chunks that do not load, which stay stored and are named.
    /// Returns the records it could read.
    async fn merge_stored(&self, ids: Vec<DocumentId>) -> Vec<DocumentId> {
        let mut read = Vec::new();
        for id in ids {
            let known = self
                .chunk_keys
                .borrow()
                .get(&id)
                .cloned()
                .unwrap_or_default();
            let (stored, fresh) = match self.watched(self.store.load_record(id, &known)).await {
                Ok(read) => read,
                Err(e) => {
                    web_sys::console::warn_1(
                        &format!("reading {id} another tab stored: {e}").into(),
                    );
                    continue;
                }
            };
            read.push(id);
            let (fresh, bytes): (Vec<f64>, Vec<Vec<u8>>) = fresh.into_iter().unzip();
            let (out, damaged) = self.replica.borrow_mut().merge_stored(id, &bytes);
            let bad: Vec<usize> = damaged
                .iter()
                .flat_map(|d| d.chunks.iter().map(|(i, _)| *i))
                .collect();
            let still: Vec<f64> = damaged
                .iter()
                .flat_map(|d| d.waiting.iter().map(|i| fresh[*i]))
                .collect();
            // Chunks kept aside that loaded now join the record's keys.
            {
                let mut waiting = self.waiting.borrow_mut();
                if still.is_empty() {
                    waiting.remove(&id);
                } else {
                    waiting.insert(id, still);
                }
            }
            // A key newer than any read here was written by this tab since.
            let newest = stored.iter().copied().fold(f64::MIN, f64::max);
            {
                let mut all = self.chunk_keys.borrow_mut();
                let list = all.entry(id).or_default();
                let before = list.len();
                list.retain(|k| stored.contains(k) || *k > newest);
                // Another tab compacted it: counted afresh.
                if list.len() < before {
                    self.compact_after.borrow_mut().remove(&id);
                }
                list.extend(
                    fresh
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| !bad.contains(i))
                        .map(|(_, k)| *k),
                );
            }
            // Chunks still waiting were said at the start: not again at
            // each look.
            if let Some(damaged) = damaged.filter(|d| d.chunks.len() > d.waiting.len()) {
                let said = damaged_said(&damaged.to_string());
                web_sys::console::warn_1(&said.clone().into());
                *self.last_error.borrow_mut() = Some(("damaged", said));
            }
            self.announce_changes(&out);
        }
        read
    }

    /// Tries again the chunks of `changed` records kept aside waiting for a
    /// change they build on, now that the server sent changes: read back
    /// and merged, they load if it was among them. Those of a record that
    /// holds everything the server has still wait for a change no one
    /// holds (made here, and neither stored nor sent before the page was
    /// lost): they go back to the record's keys, and its compaction
    /// replaces them.
    async fn settle_waiting(&self, changed: &[DocumentId]) {
        if self.waiting.borrow().is_empty() {
            return;
        }
        // Read again: those the server changed, and those that hold all
        // it has, before they are given up on.
        let retry: Vec<DocumentId> = {
            let waiting = self.waiting.borrow();
            let replica = self.replica.borrow();
            waiting
                .keys()
                .copied()
                .filter(|id| changed.contains(id) || replica.holds_all_the_server_has(*id))
                .collect()
        };
        if retry.is_empty() {
            return;
        }
        let read = self.merge_stored(retry).await;
        let mut compact = Vec::new();
        for id in read {
            // Read back just now, and still waiting though the record holds
            // all the server has.
            if !self.waiting.borrow().contains_key(&id)
                || !self.replica.borrow().holds_all_the_server_has(id)
            {
                continue;
            }
            let Some(lost) = self.waiting.borrow_mut().remove(&id) else {
                continue;
            };
            web_sys::console::warn_1(
                &format!(
                    "record {id}: {} stored chunks build on a change neither this device nor the server holds; they are dropped",
                    lost.len()
                )
                .into(),
            );
            self.chunk_keys
                .borrow_mut()
                .entry(id)
                .or_default()
                .extend(lost);
            compact.push(id);
        }
        for id in compact {
            self.compact(id).await;
        }
    }

    /// Records where the chunks just written are; returns the records that
    /// now have chunks enough to compact.
    fn keep_chunk_keys(&self, chunks: &[Chunk], keys: Vec<f64>) -> Vec<DocumentId> {
        let mut compact = Vec::new();
        let mut all = self.chunk_keys.borrow_mut();
        let after = self.compact_after.borrow();
        for (chunk, key) in chunks.iter().zip(keys) {
            let list = all.entry(chunk.doc).or_default();
            list.push(key);
            if list.len() > after.get(&chunk.doc).copied().unwrap_or(COMPACT_AFTER) {
                compact.push(chunk.doc);
            }
        }
        compact
    }

    /// Replaces a record's chunks with one snapshot, in one transaction.
    async fn compact(&self, doc: DocumentId) {
        let Some(snapshot) = self.replica.borrow().checked_snapshot(doc) else {
            return;
        };
        let old = self
            .chunk_keys
            .borrow()
            .get(&doc)
            .cloned()
            .unwrap_or_default();
        let done = match snapshot {
            Ok(snapshot) => self
                .store
                .compact(doc, &snapshot, &old)
                .await
                .map_err(|e| e.to_string()),
            Err(why) => Err(format!("its snapshot does not load back: {why}")),
        };
        match done {
            Ok(key) => {
                let mut all = self.chunk_keys.borrow_mut();
                let list = all.entry(doc).or_default();
                list.retain(|k| !old.contains(k));
                list.push(key);
                self.compact_after.borrow_mut().remove(&doc);
            }
            // The chunks stay; compaction is retried once as many more
            // have been written.
            Err(why) => {
                self.compact_after
                    .borrow_mut()
                    .insert(doc, old.len() + COMPACT_AFTER);
                web_sys::console::warn_1(&format!("compaction of {doc}: {why}").into());
            }
        }
    }

    /// Refuses a change before it is made once a newer version of the app
    /// has taken IndexedDB over: it could be neither kept nor sent.
    fn writable(&self) -> Result<(), JsValue> {
        if self.store.superseded() {
            return Err(StoreError::Superseded.into());
        }
        Ok(())
    }

    /// A local change: stored, then announced and sent.
    async fn commit_local(self: &Rc<Self>, out: Outcome) -> Result<(), JsValue> {
        let out = Rc::new(out);
        let Some(stored) = self.store_unless_stuck(Rc::clone(&out), true).await else {
            // The write waits behind one that is stuck, and the change goes
            // to the server meanwhile: announced, as after a write that
            // failed, so that the screen shows it and nobody makes it
            // again, and rejected, as not kept yet.
            self.announce_changes(&out);
            let _ = self.events.unbounded_send(Event::Flush);
            self.announce_status();
            return Err(js_error(
                "StorageStuckError",
                "this device's storage has stopped answering: the change is made and sent to the server, and is kept on this device only once the storage answers again",
            ));
        };
        if let Err(e) = stored {
            // The change is in memory and still syncs if online (the
            // server's copy is then the safe one), but the device could
            // not keep it: say so, loudly. It is announced all the same:
            // lists and screens show the record as it now is.
            *self.last_error.borrow_mut() = Some(not_saved(&e));
            self.announce_changes(&out);
            let _ = self.events.unbounded_send(Event::Flush);
            self.announce_status();
            return Err(e.into());
        }
        self.announce_changes(&out);
        let _ = self.events.unbounded_send(Event::Flush);
        self.announce_status();
        Ok(())
    }

    fn close_socket(&self) {
        self.drop_socket("went offline");
    }

    /// Closes the socket, if any, and forgets the server's session at once,
    /// so nothing meant for it reaches a later socket before its `join`.
    fn drop_socket(&self, why: &str) {
        let Some(Socket { ws, .. }) = self.socket.borrow_mut().take() else {
            return;
        };
        ws.set_onopen(None);
        ws.set_onmessage(None);
        ws.set_onclose(None);
        let _ = ws.close();
        self.unanswered.set(None);
        if let Some(at) = self.joined_at.take()
            && monotonic_ms() - at >= STABLE_MS
        {
            self.attempts.set(0);
        }
        let states = self.replica.borrow_mut().disconnected();
        self.link.set(Link::Offline);
        *self.offline_reason.borrow_mut() = Some(why.to_owned());
        let _ = self.events.unbounded_send(Event::Lost(states));
    }

    fn open_socket(self: &Rc<Self>) {
        if self.socket.borrow().is_some()
            || self.paused.get()
            || self.closed.get()
            || self.store.superseded()
        {
            return;
        }
        let seq = self.socket_seq.get() + 1;
        self.socket_seq.set(seq);
        // The token goes as a subprotocol the server reads and never
        // selects: in the URL, every proxy on the way would log it.
        let opened = match &self.token {
            Some(t) => {
                let offered = js_sys::Array::of2(
                    &JsValue::from_str(SUBPROTOCOL),
                    &JsValue::from_str(&format!("{TOKEN_SUBPROTOCOL}{t}")),
                );
                WebSocket::new_with_str_sequence(&self.server, &offered)
            }
            None => WebSocket::new(&self.server),
        };
        let ws = match opened {
            Ok(ws) => ws,
            Err(e) => {
                let why = e
                    .dyn_ref::<js_sys::Error>()
                    .map(|e| String::from(e.message()))
                    .unwrap_or_else(|| "cannot open the socket".into());
                *self.offline_reason.borrow_mut() = Some(why);
                let _ = self.events.unbounded_send(Event::Lost(Vec::new()));
                return;
            }
        };
        ws.set_binary_type(BinaryType::Arraybuffer);
        let tx = self.events.clone();
        let onopen = Closure::<dyn FnMut()>::new(move || {
            let _ = tx.unbounded_send(Event::Opened(seq));
        });
        let tx = self.events.clone();
        let heard = Rc::clone(&self.heard_at);
        let unanswered = Rc::clone(&self.unanswered);
        let onmessage = Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| {
            // The server is there: what it owes comes in turn.
            heard.set(monotonic_ms());
            unanswered.set(None);
            if let Ok(buf) = e.data().dyn_into::<js_sys::ArrayBuffer>() {
                let frame = Uint8Array::new(&buf).to_vec();
                // A large frame comes next: the browser hands it over only
                // once it is whole, so the socket is quiet until then.
                if let Some(bytes) = coming(&frame) {
                    let ms = bytes as f64 * 1000.0 / f64::from(SLOW_LINK_BYTES_PER_SEC);
                    heard.set(monotonic_ms() + ms);
                }
                let _ = tx.unbounded_send(Event::Frame(seq, frame));
            }
        });
        let tx = self.events.clone();
        let onclose = Closure::<dyn FnMut(CloseEvent)>::new(move |e: CloseEvent| {
            let why = if e.reason().is_empty() {
                format!("connection closed ({})", e.code())
            } else {
                e.reason()
            };
            let _ = tx.unbounded_send(Event::Closed(seq, why));
        });
        ws.set_onopen(Some(onopen.as_ref().unchecked_ref()));
        ws.set_onmessage(Some(onmessage.as_ref().unchecked_ref()));
        ws.set_onclose(Some(onclose.as_ref().unchecked_ref()));
        *self.socket.borrow_mut() = Some(Socket {
            seq,
            ws,
            _onopen: onopen,
            _onmessage: onmessage,
            _onclose: onclose,
        });
        self.link.set(Link::Connecting);
        self.announce_status();
        self.give_up_unless(seq, JOIN_LIMIT_MS, |inner| inner.link.get() == Link::Joined);
    }

    /// Drops socket `seq` in `ms`, if it is still the current one and
    /// `answered` does not hold by then.
    fn give_up_unless(
        self: &Rc<Self>,
        seq: u32,
        ms: u32,
        answered: impl Fn(&Inner) -> bool + 'static,
    ) {
        let weak = Rc::downgrade(self);
        spawn_local(async move {
            gloo_timers::future::TimeoutFuture::new(ms).await;
            if let Some(inner) = weak.upgrade()
                && inner.current(seq)
                && !answered(&inner)
            {
                inner.drop_socket(&format!("the server did not answer in {} s", ms / 1000));
            }
        });
    }

    /// While socket `seq` is the current one, asks the server whether it
    /// is there once the socket has been silent `SILENCE_MS` with nothing
    /// of ours unanswered (the answer timer watches that), and gives the
    /// socket up if no frame comes within `PING_LIMIT_MS`.
    fn watch_silence(self: &Rc<Self>, seq: u32) {
        let weak = Rc::downgrade(self);
        spawn_local(async move {
            let mut wait = SILENCE_MS;
            loop {
                gloo_timers::future::TimeoutFuture::new(wait).await;
                let Some(inner) = weak.upgrade() else { return };
                if !inner.current(seq) {
                    return;
                }
                if inner.unanswered.get().is_some() {
                    wait = SILENCE_MS;
                    continue;
                }
                let silent = monotonic_ms() - inner.heard_at.get();
                if silent < f64::from(SILENCE_MS) {
                    wait = (f64::from(SILENCE_MS) - silent).max(1_000.0) as u32;
                    continue;
                }
                let Some(ping) = inner.replica.borrow().ping() else {
                    return;
                };
                if let Some(socket) = inner.socket.borrow().as_ref() {
                    let _ = socket.ws.send_with_u8_array(&ping.encode());
                }
                let asked = monotonic_ms();
                inner.give_up_unless(seq, PING_LIMIT_MS, move |inner| {
                    inner.heard_at.get() >= asked
                });
                wait = PING_LIMIT_MS;
            }
        });
    }

    fn send_pending(self: &Rc<Self>) {
        // A pending write's change is in memory only: wait for it (the
        // write sends a Flush when done), unless a write is stuck.
        if self.pending_writes.get() > 0 && self.stuck_writes.get() == 0 {
            return;
        }
        // Empty until the server answered this socket's `join`.
        let frames = self.replica.borrow_mut().outgoing();
        let answer_owed = self.replica.borrow_mut().answer_owed();
        let Some(seq) = self.socket.borrow().as_ref().map(|s| {
            for frame in &frames {
                let _ = s.ws.send_with_u8_array(frame);
            }
            s.seq
        }) else {
            return;
        };
        if answer_owed && self.unanswered.get().is_none() {
            let ticket = self.tickets.get().wrapping_add(1);
            self.tickets.set(ticket);
            self.unanswered.set(Some(ticket));
            self.watch_answer(seq, ticket);
        }
    }

    /// Drops socket `seq` if the server has not answered `ticket` within
    /// `ANSWER_LIMIT_MS` of our last bytes leaving the browser. A week of
    /// offline typing can be a frame of hundreds of kilobytes, which a slow
    /// uplink takes minutes to carry, and the server answers only once it
    /// has it whole: while the bytes queued on the socket go down, the
    /// clock starts again (given up, the upload would start over from
    /// nothing on the next socket, and never end).
    fn watch_answer(self: &Rc<Self>, seq: u32, ticket: u32) {
        // Looks at the bytes queued every second while some are, so the
        // clock starts again at most a second after the last one left
        // (a look at 5 s gave a small frame 65 s), and every 5 s after.
        const LOOK_QUEUED_MS: u32 = 1_000;
        const LOOK_MS: u32 = 5_000;
        let weak = Rc::downgrade(self);
        let buffered = |inner: &Inner| {
            inner
                .socket
                .borrow()
                .as_ref()
                .map_or(0, |s| s.ws.buffered_amount())
        };
        let mut last = buffered(self);
        let mut deadline = monotonic_ms() + f64::from(ANSWER_LIMIT_MS);
        spawn_local(async move {
            loop {
                let left = (deadline - monotonic_ms()).max(0.0);
                let look = if last > 0 { LOOK_QUEUED_MS } else { LOOK_MS };
                // Rounded up: a wait cut short of the deadline would look
                // once more, a whole `look` later.
                gloo_timers::future::TimeoutFuture::new((left.ceil() as u32).min(look)).await;
                let Some(inner) = weak.upgrade() else { return };
                if !inner.current(seq) || inner.unanswered.get() != Some(ticket) {
                    return;
                }
                let now = buffered(&inner);
                if now < last {
                    deadline = monotonic_ms() + f64::from(ANSWER_LIMIT_MS);
                }
                last = now;
                // The answer waits behind a large frame the server
                // announced, due at `heard_at`.
                deadline = deadline.max(inner.heard_at.get() + f64::from(ANSWER_LIMIT_MS));
                if monotonic_ms() >= deadline {
                    let why = format!("the server did not answer in {} s", ANSWER_LIMIT_MS / 1000);
                    inner.drop_socket(&why);
                    return;
                }
            }
        });
    }

    fn current(&self, seq: u32) -> bool {
        self.socket.borrow().as_ref().is_some_and(|s| s.seq == seq)
    }

    /// Starts the deferred records again in `secs` seconds, plus up to a
    /// tenth more, so that the phones a server turned away together do not
    /// come back together; unless a timer fires before then already.
    fn schedule_retry(&self, secs: u64) {
        let delay = secs as f64 * 1000.0 * (1.0 + js_sys::Math::random() * 0.1);
        let at = monotonic_ms() + delay;
        if self.retry_at.get().is_some_and(|due| due <= at) {
            return;
        }
        self.retry_at.set(Some(at));
        let tx = self.events.clone();
        spawn_local(async move {
            gloo_timers::future::TimeoutFuture::new(delay as u32).await;
            let _ = tx.unbounded_send(Event::Retry(at));
        });
    }

    /// Tries again after a backoff, unless a try is already due: a socket
    /// opened meanwhile (the browser said it is `online`) that fails too
    /// must not start a second series of tries beside the first.
    fn schedule_reconnect(self: &Rc<Self>) {
        if self.reconnect_due.replace(true) {
            return;
        }
        let n = self.attempts.get();
        self.attempts.set(n + 1);
        let base = (BACKOFF_FIRST_MS * 2f64.powi(n.min(16) as i32)).min(BACKOFF_MAX_MS);
        // Full jitter between half and all of it: phones that lost the same
        // cell tower do not all come back in the same millisecond.
        let delay = base * (0.5 + js_sys::Math::random() * 0.5);
        let weak = Rc::downgrade(self);
        spawn_local(async move {
            gloo_timers::future::TimeoutFuture::new(delay as u32).await;
            if let Some(inner) = weak.upgrade() {
                inner.reconnect_due.set(false);
                let _ = inner.events.unbounded_send(Event::Wake);
            }
        });
    }

    /// Learns the club record from the server when nobody said which it is.
    async fn find_club(self: &Rc<Self>) {
        if let Some(club) = self.club_unsaved.take()
            && self.store.put_club(club).await.is_err()
        {
            self.club_unsaved.set(Some(club));
        }
        if self.replica.borrow().club().is_some() {
            return;
        }
        let base = self
            .server
            .replacen("ws://", "http://", 1)
            .replacen("wss://", "https://", 1);
        let api = base.strip_suffix("/sync").unwrap_or(&base).to_owned() + "/api/records?kind=club";
        let mut req = gloo_net::http::Request::get(&api);
        if let Some(t) = &self.token {
            req = req.header("Authorization", &format!("Bearer {t}"));
        }
        let Ok(resp) = req.send().await else { return };
        let Ok(list) = resp.json::<Vec<serde_json::Value>>().await else {
            return;
        };
        let Some(url) = list.first().and_then(|r| r["url"].as_str()) else {
            return;
        };
        if let Ok(club) = parse_id(url) {
            self.replica.borrow_mut().set_club(club);
            let _ = self.store.put_club(club).await;
            self.send_pending();
        }
    }
}

async fn event_loop(inner: Rc<Inner>, mut rx: mpsc::UnboundedReceiver<Event>) {
    while let Some(event) = rx.next().await {
        if inner.closed.get() {
            break;
        }
        match event {
            Event::Wake => inner.open_socket(),
            Event::Opened(seq) if inner.current(seq) => {
                let join = inner.replica.borrow().join().encode();
                if let Some(Socket { ws, .. }) = inner.socket.borrow().as_ref() {
                    let _ = ws.send_with_u8_array(&join);
                }
            }
            Event::Frame(seq, bytes) if inner.current(seq) => {
                let was_joined = inner.replica.borrow().is_connected();
                let result = inner.replica.borrow_mut().receive(&bytes, now_secs());
                match result {
                    Ok(out) => {
                        // A write that fails leaves the changes in memory,
                        // marked unsaved, and written whole with a later
                        // write that works; the server keeps its own copy.
                        // The link stays: it is how an edit this device
                        // cannot keep reaches a place that can, and
                        // dropping it would only bring the same frame
                        // back, over and over.
                        let out = Rc::new(out);
                        if let Some(Err(e)) = inner.store_unless_stuck(Rc::clone(&out), true).await
                        {
                            *inner.last_error.borrow_mut() = Some(not_saved(&e));
                        }
                        if let Some(secs) = out.retry_after {
                            inner.schedule_retry(secs);
                        }
                        // A record not taken yet is no refusal: it counts
                        // in `deferred` until it is sent again.
                        let refusal = out
                            .errors
                            .iter()
                            .rfind(|(_, r)| r.as_ref().is_some_and(|r| r.code != RATE_LIMITED));
                        if let Some((e, refusal)) = refusal {
                            *inner.refused.borrow_mut() =
                                Some((format!("server: {e}"), refusal.clone()));
                        } else if inner.replica.borrow().unconfirmed() == 0 {
                            inner.refused.borrow_mut().take();
                        }
                        // A record whose message the engine refused is asked
                        // for again later; the others sync on this socket.
                        // Said until a message for it goes through.
                        if let Some(e) = out.refused_here.last()
                            && inner
                                .last_error
                                .borrow()
                                .as_ref()
                                .is_none_or(|(kind, _)| matches!(*kind, "server" | "protocol"))
                        {
                            *inner.last_error.borrow_mut() = Some(("protocol", e.clone()));
                            inner.held_back_said.set(true);
                        } else if inner.held_back_said.get()
                            && inner.replica.borrow().held_back() == 0
                        {
                            inner.held_back_said.set(false);
                            let mut last = inner.last_error.borrow_mut();
                            if last.as_ref().is_some_and(|(kind, _)| *kind == "protocol") {
                                *last = None;
                            }
                        }
                        // An error that refuses no change (the socket's own
                        // trouble, said before the server closes it) is no
                        // refusal to keep until every change is confirmed:
                        // it lasts until the next join. What this device
                        // could not keep is said first.
                        if out.refused_here.is_empty()
                            && let Some((e, None)) = out.errors.iter().rfind(|(_, r)| r.is_none())
                            && inner
                                .last_error
                                .borrow()
                                .as_ref()
                                .is_none_or(|(kind, _)| *kind == "server")
                        {
                            *inner.last_error.borrow_mut() =
                                Some(("server", format!("server: {e}")));
                        }
                        if !was_joined && inner.replica.borrow().is_connected() {
                            inner.link.set(Link::Joined);
                            inner.joins.set(inner.joins.get().wrapping_add(1));
                            inner.joined_at.set(Some(monotonic_ms()));
                            // What the device could not keep stays said
                            // until it has kept it, even once another
                            // error took its place: the join ends that one.
                            let unsaved = !inner.unsaved.borrow().is_empty();
                            if !(unsaved && says_not_saved(&inner.last_error.borrow())) {
                                let why = inner.unsaved_why.borrow().clone();
                                *inner.last_error.borrow_mut() =
                                    why.filter(|_| unsaved).map(|e| not_saved(&e));
                            }
                            inner.watch_silence(seq);
                            let me = Rc::clone(&inner);
                            spawn_local(async move { me.find_club().await });
                        }
                        inner.announce_changes(&out);
                        let changed: Vec<DocumentId> = out
                            .changed
                            .iter()
                            .filter_map(|c| c.id.parse().ok())
                            .collect();
                        let settle =
                            |me: Rc<Inner>| async move { me.settle_waiting(&changed).await };
                        let _ = inner.unless_stuck(settle, |_, ()| {}).await;
                        inner.send_pending();
                    }
                    Err(e) => {
                        *inner.last_error.borrow_mut() = Some(("protocol", e.to_string()));
                        inner.close_socket();
                    }
                }
                inner.announce_status();
            }
            Event::Closed(seq, why) => {
                if inner.current(seq) {
                    inner.drop_socket(&why);
                }
            }
            Event::Lost(states) => {
                // `store` leaves out the states of records still unsaved
                // once it has tried to write those whole.
                if !states.is_empty() {
                    let out = Outcome {
                        sync_states: states,
                        ..Outcome::default()
                    };
                    let _ = inner.store_unless_stuck(Rc::new(out), false).await;
                }
                if !inner.paused.get() && inner.socket.borrow().is_none() {
                    inner.schedule_reconnect();
                }
                inner.announce_status();
            }
            Event::Flush => inner.send_pending(),
            Event::Stored(ids) => {
                let merge = |me: Rc<Inner>| async move {
                    let _ = me.merge_stored(ids).await;
                };
                let _ = inner
                    .unless_stuck(merge, |me, ()| {
                        me.send_pending();
                        me.announce_status();
                    })
                    .await;
                inner.send_pending();
                inner.announce_status();
            }
            Event::Superseded => {
                // What this tab could still receive it could not keep: it
                // stays offline until reloaded, as the newer version.
                inner.close_socket();
                *inner.last_error.borrow_mut() =
                    Some(("superseded", StoreError::Superseded.to_string()));
                inner.announce_status();
            }
            Event::SaveUnsaved => {
                inner.unsaved_retry_due.set(false);
                // A whole write tried by a key typed meanwhile failed less
                // than the pause ago: the timer waits out the rest of it.
                let since = inner.since_unsaved_failed();
                if let Some(since) = since.filter(|s| *s < UNSAVED_RETRY_MS) {
                    inner.schedule_unsaved_retry_in((UNSAVED_RETRY_MS - since).ceil());
                    continue;
                }
                let save = |me: Rc<Inner>| async move { me.save_unsaved_now(true).await };
                let _ = inner.unless_stuck(save, |_, ()| {}).await;
            }
            Event::Shown => {
                // Not again at once for someone switching back and forth.
                let just_failed = inner
                    .since_unsaved_failed()
                    .is_some_and(|since| since < SHOWN_RETRY_MS);
                if !inner.unsaved.borrow().is_empty() && !just_failed {
                    let save = |me: Rc<Inner>| async move { me.save_unsaved_now(false).await };
                    let _ = inner.unless_stuck(save, |_, ()| {}).await;
                }
            }
            Event::Retry(at) => {
                // A timer a sooner one replaced fires too: each starts what
                // is due, and the one last set schedules what is not.
                if inner.retry_at.get() == Some(at) {
                    inner.retry_at.set(None);
                }
                let next = inner.replica.borrow_mut().retry_deferred(now_secs());
                if let Some(secs) = next {
                    inner.schedule_retry(secs);
                }
                inner.send_pending();
                inner.announce_status();
            }
            Event::Opened(_) | Event::Frame(..) => {}
        }
    }
}
