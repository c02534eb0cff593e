//! The hub: which documents are loaded, which peers are connected, and the
//! routing of messages to the task that owns each document.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio_util::sync::CancellationToken;
use twinsync_shared::{DocumentId, PeerId};

use crate::auth::{AuthError, Device, Guards, Secret};
use crate::document::{self, DocCommand, PeerLink, Roster};
use crate::metrics::Metrics;
use crate::outbox::DeviceShare;
use crate::settings::Settings;
use crate::store::{Appender, Store, StoreError};

#[derive(Clone, Debug)]
pub(crate) struct DocHandle {
    tx: mpsc::Sender<DocCommand>,
    task: u64,
    /// Whether the document had peers when it last said so; idle ones are
    /// evicted first when memory is short.
    busy: Arc<std::sync::atomic::AtomicBool>,
    /// Its peers, for the next task should it fail.
    roster: Roster,
}

/// What the hub knows of the server.
#[derive(Debug)]
pub struct Hub {
    docs: Mutex<HashMap<DocumentId, DocHandle>>,
    /// Peers told a record is unavailable (or answered as an empty record
    /// would be), waiting for it: the record's next task takes them in as
    /// its peers, so they hear of it when its changes arrive. Locked after
    /// `docs`, never before, so that no task can start between a lookup
    /// that found none and the wait it records.
    waiting: Mutex<HashMap<DocumentId, Vec<PeerLink>>>,
    sessions: Mutex<Sessions>,
    /// Bytes the hand-in copies of each revoked device hold, over all its
    /// connections (see `connection.rs`'s `HandIn`).
    hand_in_held: Mutex<HashMap<String, u64>>,
    /// The bytes queued to each connected device's peers, over all its
    /// sockets ([`Hub::device_share`]).
    device_shares: Mutex<HashMap<String, DeviceShare>>,
    /// The documents each device's sockets hold open, over all of them,
    /// with how many of its sockets hold each (see
    /// `Settings::max_open_docs_per_device`).
    open_docs: Mutex<HashMap<String, HashMap<DocumentId, u32>>>,
    next_id: AtomicU64,
    /// Set when the server begins to stop: no record task starts after it.
    closing: AtomicBool,
    pub store: Store,
    /// Writes the records' new changes, several records per commit.
    pub appender: Appender,
    pub settings: Arc<Settings>,
    pub metrics: Metrics,
    pub server_id: PeerId,
    pub storage_id: String,
    pub guards: Guards,
    /// Set when documents are evicted or peers leave; see [`crate::memory`].
    pub trim: crate::memory::Trim,
    /// Compactions under way at once, each holding a copy of its record
    /// while it saves: at most [`COMPACTIONS`].
    pub compactions: Arc<tokio::sync::Semaphore>,
    /// Records the HTTP API reads whole from the store at once (a record,
    /// its history, its disagreements, an export's rows), each holding a
    /// copy of its record: at most [`API_READS`].
    pub api_reads: Arc<tokio::sync::Semaphore>,
    /// Whole-record reads each device has asked the API for and not been
    /// answered yet, waiting or reading: at most [`API_READS_PER_DEVICE`].
    pub api_reads_by_device: crate::auth::Slots<String>,
    /// Each revoked device's turn to load a record whole for its hand-in
    /// ([`Hub::hand_in_turn`]).
    hand_in_turns: Mutex<HashMap<String, Arc<tokio::sync::Semaphore>>>,
    /// Sign-in refusals in this rate window, over all addresses
    /// ([`Hub::may_log_refusal`]).
    refusals_logged: crate::auth::Windows<()>,
    /// Records whose task failed in the last rate window, and when
    /// ([`Hub::task_failed`]).
    tasks_failed: Mutex<HashMap<DocumentId, std::time::Instant>>,
    /// The data directory's lock while this hub serves from it: set by
    /// [`crate::startup::prepare`], let go of as [`crate::startup::run`]
    /// ends, however long tasks still hold the hub.
    pub data_lock: std::sync::Mutex<Option<crate::lock::DataDirLock>>,
}

/// Peers of a revoked device connected at once; past it, the oldest
/// closes, as past `max_peers_per_device`.
pub const REVOKED_PEERS: usize = 4;

/// Records compacting at once; a record that finds no slot compacts after
/// a later append.
pub const COMPACTIONS: usize = 2;

/// Records the HTTP API loads at once; more requests wait their turn. A
/// record may hold 32 MiB of changes, and a device may open 64 requests.
pub const API_READS: usize = 4;

/// Refused sign-ins logged a minute; the rest are counted only.
pub const REFUSALS_LOGGED: u64 = 30;

/// Whole-record reads one device may have waiting or under way at once;
/// past it, a request is answered 429. The turns are taken in order, so a
/// device looping over exports or histories, many requests at a time,
/// would otherwise queue ahead of every other device's reads. The app asks
/// for at most three at a time from a tab.
pub const API_READS_PER_DEVICE: usize = 8;

/// A connected peer: its connection, its device and its kill switch.
#[derive(Debug, Clone)]
struct SessionEntry {
    conn: u64,
    device: String,
    /// Signed in as revoked: the socket is already in hand-in mode.
    revoked: bool,
    /// The device's `rights` count when the socket signed in.
    rights: i64,
    kill: CancellationToken,
}

/// The connected peers, and each device's among them: a join looks at its
/// own device's peers, not at every session on the server.
#[derive(Debug, Default)]
struct Sessions {
    /// By each peer's key (`document::session_key`), which holds its device.
    by_peer: HashMap<PeerId, SessionEntry>,
    /// Each device's peers by connection, oldest first. Holds a
    /// `(device, conn, peer)` exactly when `by_peer` maps that peer to that
    /// device and connection.
    by_device: HashMap<String, BTreeMap<u64, PeerId>>,
}

impl Sessions {
    fn get(&self, peer: &PeerId) -> Option<&SessionEntry> {
        self.by_peer.get(peer)
    }

    fn get_mut(&mut self, peer: &PeerId) -> Option<&mut SessionEntry> {
        self.by_peer.get_mut(peer)
    }

    fn values(&self) -> impl Iterator<Item = &SessionEntry> {
        self.by_peer.values()
    }

    fn is_empty(&self) -> bool {
        self.by_peer.is_empty()
    }

    /// `device`'s peers, oldest connection first.
    fn of_device<'a>(
        &'a self,
        device: &str,
    ) -> impl Iterator<Item = (&'a PeerId, &'a SessionEntry)> + 'a {
        self.by_device
            .get(device)
            .into_iter()
            .flat_map(|conns| conns.values())
            .filter_map(|peer| self.by_peer.get(peer).map(|e| (peer, e)))
    }

    fn insert(&mut self, peer: PeerId, entry: SessionEntry) {
        self.remove(&peer);
        self.by_device
            .entry(entry.device.clone())
            .or_default()
            .insert(entry.conn, peer.clone());
        self.by_peer.insert(peer, entry);
    }

    fn remove(&mut self, peer: &PeerId) {
        if let Some(old) = self.by_peer.remove(peer) {
            self.forget_device_conn(&old);
        }
    }

    fn forget_device_conn(&mut self, old: &SessionEntry) {
        if let Some(conns) = self.by_device.get_mut(&old.device) {
            conns.remove(&old.conn);
            if conns.is_empty() {
                self.by_device.remove(&old.device);
            }
        }
    }
}

/// Why a request was not let in.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("too many failed sign-ins from this address; try again in {} s", crate::auth::whole_seconds(*.0))]
    Limited(std::time::Duration),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Whether a message may create a document the server does not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    /// A `sync` with changes: a record created offline.
    Create,
    /// A `request`: the caller answers `doc-unavailable`.
    Unavailable { wait: bool },
    /// A `sync` without changes: its sender holds the record and has not
    /// sent it yet. No task starts; the caller answers as an empty record
    /// would, and the changes that follow create it. Peers cannot so pin
    /// a task for every id they name.
    Answer { wait: bool },
}

impl Missing {
    /// Whether the sender is to be remembered, if the record is missing,
    /// and offered it once a task for it starts.
    fn waits(self) -> bool {
        match self {
            Missing::Create => false,
            Missing::Unavailable { wait } | Missing::Answer { wait } => wait,
        }
    }
}

/// What became of a peer asking for a record the store lacked.
#[derive(Debug)]
pub(crate) enum Waited {
    /// A task for it started meanwhile, and answers.
    Started(DocHandle),
    /// It waits for the record's first task.
    Waiting,
    /// The record was stored meanwhile: load it.
    Stored,
}

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error("document not found")]
    NotFound,
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The server is stopping: a record's task that ended is not started
    /// again, as what it wrote could no longer be stored.
    #[error("the server is restarting")]
    ShuttingDown,
}

/// A revoked device's turn to load a record, and one of the API's reads:
/// held until dropped ([`Hub::hand_in_turn`]).
pub type HandInTurn = (OwnedSemaphorePermit, OwnedSemaphorePermit);

impl Hub {
    pub fn new(
        store: Store,
        settings: Arc<Settings>,
        metrics: Metrics,
    ) -> Result<Arc<Self>, StoreError> {
        let storage_id = store.storage_id()?;
        let guards = Guards::new(settings.rate_window());
        let refusals_logged = crate::auth::Windows::new(settings.rate_window(), 1);
        let appender = Appender::start(store.clone())?;
        Ok(Arc::new(Self {
            docs: Mutex::new(HashMap::new()),
            waiting: Mutex::new(HashMap::new()),
            sessions: Mutex::new(Sessions::default()),
            hand_in_held: Mutex::new(HashMap::new()),
            device_shares: Mutex::new(HashMap::new()),
            open_docs: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            closing: AtomicBool::new(false),
            server_id: PeerId::new(format!("twinsync-{storage_id}")),
            storage_id,
            store,
            appender,
            settings,
            metrics,
            guards,
            trim: crate::memory::Trim::default(),
            compactions: Arc::new(tokio::sync::Semaphore::new(COMPACTIONS)),
            api_reads: Arc::new(tokio::sync::Semaphore::new(API_READS)),
            api_reads_by_device: crate::auth::Slots::default(),
            hand_in_turns: Mutex::new(HashMap::new()),
            refusals_logged,
            tasks_failed: Mutex::new(HashMap::new()),
            data_lock: std::sync::Mutex::new(None),
        }))
    }

    /// The share of the bytes queued to `device`'s peers that a new socket
    /// of it counts against, with its other sockets
    /// (`Settings::device_queue_mib`).
    pub fn device_share(&self, device: &str) -> DeviceShare {
        let mut shares = self.device_shares.lock().unwrap_or_else(|e| e.into_inner());
        // Shares no socket holds any more go as the next is handed out.
        shares.retain(|_, share| share.in_use());
        shares
            .entry(device.to_owned())
            .or_insert_with(|| DeviceShare::new(self.settings.device_queue_bytes()))
            .clone()
    }

    /// A turn for a revoked device's hand-in to load a record whole, and
    /// with it one of the API's [`API_READS`]: one at a time per device,
    /// so its sockets (up to [`REVOKED_PEERS`]), each sending a change a
    /// message, take one of those turns at most, and coordinators' reads
    /// and other devices' hand-ins keep theirs.
    pub async fn hand_in_turn(
        &self,
        device: &str,
    ) -> Result<HandInTurn, tokio::sync::AcquireError> {
        let own = {
            let mut turns = self.hand_in_turns.lock().unwrap_or_else(|e| e.into_inner());
            // Devices no hand-in waits on any more leave the map.
            turns.retain(|_, t| Arc::strong_count(t) > 1);
            Arc::clone(
                turns
                    .entry(device.to_owned())
                    .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(1))),
            )
        };
        let own = own.acquire_owned().await?;
        let read = Arc::clone(&self.api_reads).acquire_owned().await?;
        Ok((own, read))
    }

    /// Checks a device token. Wrong tokens count against `ip`; past the
    /// limit every attempt from it is refused until its minute ends, right
    /// or wrong, so guessing gains nothing.
    pub async fn authenticate(
        &self,
        token: Option<&str>,
        ip: Option<std::net::IpAddr>,
    ) -> Result<Device, SignInError> {
        let limit = self.settings.auth_failures_per_minute;
        if let Some(ip) = ip
            && let Some(wait) = self.guards.failed_auth.reached(&ip, limit)
        {
            self.metrics.rate_limited.inc();
            return Err(SignInError::Limited(wait));
        }
        let result = self.check_token(token, ip).await;
        if let Err(SignInError::Auth(e)) = &result {
            self.metrics.auth_failures.inc();
            if *e != AuthError::Missing
                && let Some(ip) = ip
                && self.guards.failed_auth.add(&ip, 1, u64::MAX) == Ok(limit)
            {
                // Once per address and minute, outside the budget of
                // refusals logged: the line an operator needs most in a
                // flood. The refusals that follow are counted, not logged.
                tracing::warn!(
                    %ip,
                    failures = limit,
                    "sign-in refused: too many failed sign-ins from this address; every sign-in from it waits until its minute ends"
                );
            }
        }
        result
    }

    /// Checks `token`. A wrong or expired one is logged, with the address
    /// it came from: an operator asked why a phone no longer syncs finds
    /// the answer in the log. A missing one is not: every page load of a
    /// device not yet invited makes one.
    async fn check_token(
        &self,
        token: Option<&str>,
        ip: Option<std::net::IpAddr>,
    ) -> Result<Device, SignInError> {
        let ip = ip.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
        let token = token.filter(|t| !t.is_empty()).ok_or(AuthError::Missing)?;
        let Some(secret) = Secret::parse(token) else {
            if self.may_log_refusal() {
                tracing::info!(%ip, "sign-in refused: the token is not one this server makes");
            }
            return Err(AuthError::Invalid.into());
        };
        let id = secret.id.clone();
        let store = self.store.clone();
        let device = tokio::task::spawn_blocking(move || store.device_for_token(&secret))
            .await
            .map_err(|e| StoreError::TaskFailed(e.to_string()))??
            .ok_or_else(|| {
                if self.may_log_refusal() {
                    tracing::info!(%ip, device = %id, "sign-in refused: no device has this token");
                }
                AuthError::Invalid
            })?;
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        if now > device.expires_at(self.settings.token_ttl()) {
            if self.may_log_refusal() {
                tracing::info!(
                %ip,
                device = %device.id,
                name = ?device.name,
                last_seen_days_ago = (now - device.last_seen_at) / 86_400,
                "sign-in refused: the device's token expired; it needs a new invite"
                );
            }
            return Err(AuthError::Expired.into());
        }
        // A sighting keeps the token alive; a minute's precision is plenty.
        if now - device.last_seen_at >= 60 {
            let (store, id) = (self.store.clone(), device.id.clone());
            let _ = tokio::task::spawn_blocking(move || store.touch_device(&id, now)).await;
        }
        Ok(device)
    }

    /// Whether one more refused sign-in may be logged this minute (the
    /// rate window, as the limits count): at most
    /// [`REFUSALS_LOGGED`], so bad tokens from many addresses (an IPv6
    /// /48 holds 65,536 of the /64s counted one by one) cannot flood the
    /// log. The first one past it says so; the rest are counted only.
    fn may_log_refusal(&self) -> bool {
        let refused = self
            .refusals_logged
            .add(&(), 1, u64::MAX)
            .unwrap_or(u64::MAX);
        if refused == REFUSALS_LOGGED + 1 {
            tracing::warn!(
                "more than {REFUSALS_LOGGED} refused sign-ins this minute: the rest are counted in twinsync_auth_failures_total, not logged"
            );
        }
        refused <= REFUSALS_LOGGED
    }

    /// Closes at once every socket a device opened before it was revoked
    /// (those opened since are in hand-in mode already).
    pub fn disconnect_device(&self, device: &str) -> usize {
        self.disconnect(|e| e.device == device).len()
    }

    /// Closes at once every socket of `device` signed in before its rights
    /// changed to their `rights`-th version: the client reconnects, and
    /// signs in under its new role, cities and person.
    pub fn disconnect_outdated(&self, device: &str, rights: i64) -> usize {
        self.disconnect(|e| e.device == device && e.rights < rights)
            .len()
    }

    /// Closes every socket whose device, as `devices` holds them now, was
    /// revoked or changed rights since it signed in; returns the devices
    /// whose sockets it closed. `devices` maps each id to whether it is
    /// revoked and its `rights`.
    pub fn disconnect_stale(&self, devices: &HashMap<String, (bool, i64)>) -> Vec<String> {
        // A device missing from `devices` was made after they were read
        // (devices are never deleted): it is left alone.
        self.disconnect(|e| {
            devices
                .get(&e.device)
                .is_some_and(|&(revoked, rights)| revoked || e.rights < rights)
        })
    }

    /// The devices with a peer connected, not in hand-in mode.
    pub fn connected_devices(&self) -> Vec<String> {
        let sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let mut ids: Vec<String> = sessions
            .by_peer
            .values()
            .filter(|e| !e.revoked)
            .map(|e| e.device.clone())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Whether any peer is connected.
    pub fn has_sessions(&self) -> bool {
        !self
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }

    /// Records that the session of `peer` on connection `conn` holds the
    /// device's rights as read again after it registered.
    pub fn refresh_session(&self, peer: &PeerId, conn: u64, rights: i64) {
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = sessions.get_mut(peer).filter(|e| e.conn == conn) {
            entry.rights = rights;
        }
    }

    /// Fires the kill switch of every session `which` picks, of those that
    /// did not sign in revoked (in hand-in mode already); returns their
    /// devices.
    fn disconnect(&self, which: impl Fn(&SessionEntry) -> bool) -> Vec<String> {
        let sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let mut closed = Vec::new();
        for entry in sessions.values().filter(|e| !e.revoked && which(e)) {
            entry.kill.cancel();
            closed.push(entry.device.clone());
        }
        closed
    }

    /// Replaces one connection's share of the bytes `device`'s hand-in
    /// copies hold, `was`, with `now`; returns the device's total.
    pub fn hand_in_share(&self, device: &str, was: u64, now: u64) -> u64 {
        let mut held = self.hand_in_held.lock().unwrap_or_else(|e| e.into_inner());
        let total = held.entry(device.to_owned()).or_default();
        *total = total.saturating_sub(was).saturating_add(now);
        let total = *total;
        if total == 0 {
            held.remove(device);
        }
        total
    }

    /// Counts `doc` as open on one more of `device`'s sockets, unless it
    /// is a new one for the device and the device holds `limit` open
    /// already: answers whether it was counted.
    pub fn open_document(&self, device: &str, doc: DocumentId, limit: usize) -> bool {
        let mut open = self.open_docs.lock().unwrap_or_else(|e| e.into_inner());
        let docs = open.entry(device.to_owned()).or_default();
        if let Some(sockets) = docs.get_mut(&doc) {
            *sockets += 1;
            return true;
        }
        if docs.len() >= limit {
            if docs.is_empty() {
                open.remove(device);
            }
            return false;
        }
        docs.insert(doc, 1);
        true
    }

    /// Counts `docs` as open on one fewer of `device`'s sockets.
    pub fn close_documents(&self, device: &str, docs: impl IntoIterator<Item = DocumentId>) {
        let mut open = self.open_docs.lock().unwrap_or_else(|e| e.into_inner());
        let Some(held) = open.get_mut(device) else {
            return;
        };
        for doc in docs {
            if let Some(sockets) = held.get_mut(&doc) {
                *sockets -= 1;
                if *sockets == 0 {
                    held.remove(&doc);
                }
            }
        }
        if held.is_empty() {
            open.remove(device);
        }
    }

    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Registers a connection for the peer keyed `peer` (its
    /// [`session_key`](crate::document::session_key)) of `device`; an older
    /// connection of the same peer is told to close (a reconnecting client
    /// replaces its old socket). The key holds the device, so a device that
    /// joins with another's peer id pushes no one off the server.
    pub fn register_session(
        &self,
        peer: &PeerId,
        conn: u64,
        device: &Device,
        kill: CancellationToken,
    ) {
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        // A socket joining once the server began to stop is closed at once
        // (`shutdown` sets `closing` before it takes this lock).
        if self.closing.load(Ordering::SeqCst) {
            kill.cancel();
        }
        if let Some(old) = sessions.get(peer)
            && old.conn != conn
        {
            old.kill.cancel();
        }
        // Past the device's cap, its oldest other peer makes way: a phone
        // reconnecting over a dead network leaves sockets the server has
        // not noticed yet, and the newest is the one in use.
        let others = || {
            sessions
                .of_device(&device.id)
                .filter(|(p, e)| *p != peer && !e.kill.is_cancelled())
        };
        // A revoked device only hands in what it has not synced, each
        // connection holding a copy of a record in hand (`HandIn`): a few
        // are enough for a phone's tabs.
        let cap = if device.is_revoked() {
            self.settings.max_peers_per_device.min(REVOKED_PEERS)
        } else {
            self.settings.max_peers_per_device
        };
        if others().count() >= cap
            && let Some((oldest, entry)) = others().next()
        {
            tracing::info!(device = %device.id, peer = %oldest, "closed: the device has too many peers connected");
            self.metrics.peers_displaced.inc();
            entry.kill.cancel();
        }
        sessions.insert(
            peer.clone(),
            SessionEntry {
                conn,
                device: device.id.clone(),
                revoked: device.is_revoked(),
                rights: device.rights,
                kill,
            },
        );
    }

    /// Whether connection `conn` is still the session of `peer`.
    pub fn has_session(&self, peer: &PeerId, conn: u64) -> bool {
        let sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions.get(peer).is_some_and(|e| e.conn == conn)
    }

    pub fn unregister_session(&self, peer: &PeerId, conn: u64) {
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        if sessions.get(peer).is_some_and(|e| e.conn == conn) {
            sessions.remove(peer);
            self.trim.freed();
        }
    }

    /// Sends `cmd` to the task owning `doc`, starting it if needed.
    pub async fn dispatch(
        self: &Arc<Self>,
        doc: DocumentId,
        mut cmd: DocCommand,
        missing: Missing,
    ) -> Result<(), DispatchError> {
        let waiter = match (&cmd, missing.waits()) {
            (DocCommand::Sync { peer, .. }, true) => Some(peer.clone()),
            _ => None,
        };
        loop {
            let handle = self.handle(doc, missing, waiter.as_ref()).await?;
            // Noted before it is queued: were the task to fail with the
            // message still in its queue, the sender would wait for an
            // answer that never comes.
            match &cmd {
                DocCommand::Sync { peer, .. } => handle.roster.join(peer),
                // Should this task fail before taking them in too.
                DocCommand::Rejoin(peers) => peers.iter().for_each(|p| handle.roster.join(p)),
                _ => {}
            }
            match handle.tx.send(cmd).await {
                Ok(()) => return Ok(()),
                Err(mpsc::error::SendError(back)) => {
                    // The task ended (evicted) after we looked it up: forget it and retry.
                    self.forget(doc, handle.task);
                    cmd = back;
                }
            }
        }
    }

    /// Hands the commands an evicted task found in its queue after closing
    /// it to whichever task serves the document now, in order: a peer's
    /// sync that arrived just as the record left memory joins the next
    /// task, and so hears of later changes.
    ///
    /// A socket that closed meanwhile sent its `Leave` to no task (none was
    /// loaded) or to the next one ahead of its sync, and its peer would
    /// join that task and hold it in memory for good: on an idle record
    /// nothing more is sent to it to find it gone. Its session ends before
    /// its `Leave` is sent, so one whose session is gone once its sync is
    /// queued leaves again, behind it; one still there sends its own
    /// `Leave` behind it later.
    pub fn hand_over(self: &Arc<Self>, doc: DocumentId, cmds: Vec<DocCommand>) {
        if cmds.is_empty() {
            return;
        }
        let hub = Arc::clone(self);
        tokio::spawn(async move {
            let mut senders: Vec<(PeerId, u64)> = Vec::new();
            for cmd in cmds {
                if let DocCommand::Sync { peer, .. } = &cmd
                    && !senders
                        .iter()
                        .any(|(k, c)| *k == peer.key && *c == peer.conn)
                {
                    senders.push((peer.key.clone(), peer.conn));
                }
                if let Err(e) = hub.dispatch(doc, cmd, Missing::Create).await {
                    tracing::warn!(doc_id = %doc, error = %e, "a command for an evicted record was lost");
                }
            }
            for (key, conn) in senders {
                if !hub.has_session(&key, conn) {
                    hub.send_if_loaded(doc, DocCommand::Leave { key, conn })
                        .await;
                }
            }
        });
    }

    /// Sends `cmd` only if the document is loaded (for peers leaving).
    pub async fn send_if_loaded(&self, doc: DocumentId, cmd: DocCommand) {
        let handle = self
            .docs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&doc)
            .cloned();
        if let Some(h) = handle {
            let _ = h.tx.send(cmd).await;
        }
    }

    async fn handle(
        self: &Arc<Self>,
        doc: DocumentId,
        missing: Missing,
        waiter: Option<&PeerLink>,
    ) -> Result<DocHandle, DispatchError> {
        if let Some(h) = self
            .docs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&doc)
        {
            return Ok(h.clone());
        }
        // A peer still waiting for the record was told the store lacked
        // it, and nothing has started it since: a task starting takes
        // every wait, and a wait is taken back when the record was stored
        // as it was made. So the store is not asked again, however often
        // the peer names the record.
        if missing != Missing::Create
            && let Some(peer) = waiter
            && self.still_waits(doc, peer.conn)
        {
            return Err(DispatchError::NotFound);
        }
        if !self.stored(doc).await? && missing != Missing::Create {
            let Some(peer) = waiter else {
                // A task started since the lookup above: it answers.
                let docs = self.docs.lock().unwrap_or_else(|e| e.into_inner());
                return docs.get(&doc).cloned().ok_or(DispatchError::NotFound);
            };
            match self.wait_for(doc, peer).await? {
                Waited::Started(h) => return Ok(h),
                Waited::Waiting => return Err(DispatchError::NotFound),
                Waited::Stored => {}
            }
        }
        if self.closing.load(Ordering::SeqCst) {
            return Err(DispatchError::ShuttingDown);
        }
        self.make_room();
        let mut docs = self.docs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(h) = docs.get(&doc) {
            return Ok(h.clone());
        }
        // Checked again under the lock `shutdown` takes to list the tasks:
        // a task starts before that list, and is stopped with the others,
        // or not at all.
        if self.closing.load(Ordering::SeqCst) {
            return Err(DispatchError::ShuttingDown);
        }
        let waiters = {
            let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
            let taken = waiting.remove(&doc).unwrap_or_default();
            self.metrics.waiting_peers.sub(taken.len() as i64);
            taken
        };
        let (tx, rx) = mpsc::channel(self.settings.doc_queue);
        let handle = DocHandle {
            tx,
            task: self.next_id(),
            busy: Default::default(),
            roster: Roster::default(),
        };
        docs.insert(doc, handle.clone());
        self.metrics.loaded_documents.set(docs.len() as i64);
        let run = tokio::spawn(document::run(
            Arc::clone(self),
            doc,
            handle.task,
            handle.busy.clone(),
            waiters,
            handle.roster.clone(),
            rx,
        ));
        let (hub, task, roster) = (Arc::clone(self), handle.task, handle.roster.clone());
        tokio::spawn(async move {
            if let Err(e) = run.await
                && e.is_panic()
            {
                hub.task_failed(doc, task, &roster);
            }
        });
        Ok(handle)
    }

    /// Remembers that `peer` waits for `doc`, which the store lacked when
    /// asked, unless a task for it started since. Then asks the store
    /// again: a record stored, and its task ended, between that question
    /// and the wait would leave the peer waiting for the record's next
    /// task. Such a record is to be loaded instead, and the wait is taken
    /// back. (A record is stored only by a task, and a task starting takes
    /// the waits under the lock that recorded this one: a record stored
    /// after the wait was recorded reaches the peer through that task.)
    pub(crate) async fn wait_for(
        self: &Arc<Self>,
        doc: DocumentId,
        peer: &PeerLink,
    ) -> Result<Waited, DispatchError> {
        {
            let docs = self.docs.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(h) = docs.get(&doc) {
                return Ok(Waited::Started(h.clone()));
            }
            let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
            let peers = waiting.entry(doc).or_default();
            // A peer asking again waits once.
            let before = peers.len();
            peers.retain(|p| p.key != peer.key);
            self.metrics
                .waiting_peers
                .add(1 - (before - peers.len()) as i64);
            peers.push(peer.clone());
        }
        let stored = self.stored(doc).await;
        // Stored meanwhile, the wait is taken back; on an error too, as the
        // caller answers with it and does not count the wait as its socket's.
        if !matches!(stored, Ok(false)) {
            self.stop_waiting(doc, peer.conn);
        }
        Ok(if stored? {
            Waited::Stored
        } else {
            Waited::Waiting
        })
    }

    /// Whether the peer of connection `conn` waits for `doc`.
    fn still_waits(&self, doc: DocumentId, conn: u64) -> bool {
        let waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        waiting
            .get(&doc)
            .is_some_and(|peers| peers.iter().any(|p| p.conn == conn))
    }

    /// Whether the store holds `doc`, asked off the async threads.
    async fn stored(&self, doc: DocumentId) -> Result<bool, DispatchError> {
        self.metrics.record_lookups.inc();
        let store = self.store.clone();
        let exists = tokio::task::spawn_blocking(move || store.exists(doc))
            .await
            .map_err(|e| DispatchError::Store(StoreError::TaskFailed(e.to_string())))??;
        Ok(exists)
    }

    /// Forgets that the peer of connection `conn` waits for `doc`, as its
    /// socket closed.
    pub fn stop_waiting(&self, doc: DocumentId, conn: u64) {
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(peers) = waiting.get_mut(&doc) {
            let before = peers.len();
            peers.retain(|p| p.conn != conn);
            self.metrics
                .waiting_peers
                .sub((before - peers.len()) as i64);
            if peers.is_empty() {
                waiting.remove(&doc);
            }
        }
    }

    /// Asks idle documents to leave memory when there are too many.
    fn make_room(&self) {
        let docs = self.docs.lock().unwrap_or_else(|e| e.into_inner());
        let excess = (docs.len() + 1).saturating_sub(self.settings.max_loaded_docs);
        if excess == 0 {
            return;
        }
        let idle = docs.values().filter(|h| !h.busy.load(Ordering::Relaxed));
        for h in idle.take(excess) {
            let _ = h.tx.try_send(DocCommand::Evict);
        }
    }

    /// Removes a document's entry if it still belongs to `task`. Returns
    /// whether it did; the task then closes its queue and handles what was
    /// already in it, while the next dispatch starts a fresh task.
    pub fn remove_if(&self, doc: DocumentId, task: u64) -> bool {
        let mut docs = self.docs.lock().unwrap_or_else(|e| e.into_inner());
        let removed = docs.get(&doc).is_some_and(|h| h.task == task);
        if removed {
            docs.remove(&doc);
            self.metrics.loaded_documents.set(docs.len() as i64);
            self.trim.freed();
        }
        removed
    }

    fn forget(&self, doc: DocumentId, task: u64) {
        self.remove_if(doc, task);
    }

    /// A record's task ended in a panic (a bug): its peers would wait on
    /// a task that is gone, hearing nothing of others' changes until they
    /// send something themselves, and a peer whose `sync` was still in its
    /// queue would wait for an answer. The task is forgotten, and a new one
    /// loads the record from the store and takes them in
    /// ([`DocCommand::Rejoin`]): each is offered a fresh exchange, asking
    /// it to send again what it believes sent, and the socket of a peer
    /// that cannot be asked so is closed, to sync afresh as it reconnects.
    /// Nothing acknowledged is lost: a change is acknowledged once stored.
    ///
    /// A record whose task failed less than a rate window before takes its
    /// peers in again once the window has passed, rather than at once: a
    /// message that fails it, sent again in the fresh exchange, does not
    /// fail task after task without a pause.
    fn task_failed(self: &Arc<Self>, doc: DocumentId, task: u64, roster: &Roster) {
        self.metrics.tasks_failed.inc();
        self.forget(doc, task);
        let now = std::time::Instant::now();
        let window = self.settings.rate_window();
        let again = {
            let mut failed = self.tasks_failed.lock().unwrap_or_else(|e| e.into_inner());
            failed.retain(|_, at| now.duration_since(*at) < window);
            failed.insert(doc, now).is_some()
        };
        let peers = roster.take();
        if again {
            tracing::error!(
                doc_id = %doc,
                peers = peers.len(),
                after_secs = window.as_secs(),
                "the record's task failed again; its peers are taken in again once the rate window has passed"
            );
        } else {
            tracing::error!(
                doc_id = %doc,
                peers = peers.len(),
                "the record's task failed; a new one takes its peers in"
            );
        }
        if peers.is_empty() {
            return;
        }
        let hub = Arc::clone(self);
        tokio::spawn(async move {
            if again {
                tokio::time::sleep(window).await;
            }
            if let Err(e) = hub
                .dispatch(doc, DocCommand::Rejoin(peers), Missing::Create)
                .await
            {
                tracing::warn!(doc_id = %doc, error = %e, "the peers of a failed record's task were not taken in again");
            }
        });
    }

    /// Tells every loaded document to store its peers' sync states and stop.
    pub async fn shutdown(&self) {
        // The sockets first: a phone syncing on while the records stop
        // would start a record's task again, whose writes the stopped
        // writer could not store, and be told the server's storage failed.
        self.closing.store(true, Ordering::SeqCst);
        let killed = {
            let sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
            for entry in sessions.values() {
                entry.kill.cancel();
            }
            sessions.by_peer.len()
        };
        // Each leaves its records (which keep its sync state) as it ends.
        let deadline = tokio::time::Instant::now() + SESSIONS_LEAVE_WITHIN;
        while self.has_sessions() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        if self.has_sessions() {
            tracing::warn!(
                "sockets still open {} s after the server began to stop; stopping the records anyway",
                SESSIONS_LEAVE_WITHIN.as_secs()
            );
        } else if killed > 0 {
            tracing::info!(sockets = killed, "closed every socket");
        }
        let handles: Vec<DocHandle> = self
            .docs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        for h in handles {
            let (done, wait) = tokio::sync::oneshot::channel();
            if h.tx.send(DocCommand::Shutdown(done)).await.is_ok() {
                let _ = wait.await;
            }
        }
        // Each document waited for its appends before it stopped; the
        // writer now ends, and with it its hold on the database.
        self.appender.stop().await;
    }
}

/// How long a stopping server waits for its sockets to leave their
/// records before it stops the records.
const SESSIONS_LEAVE_WITHIN: std::time::Duration = std::time::Duration::from_secs(5);

#[cfg(test)]
impl Hub {
    /// A hub over a new store, and the directory holding it.
    pub(crate) fn in_temp_dir() -> (tempfile::TempDir, Arc<Self>) {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = Store::open(&dir.path().join("twinsync.db")).expect("a new store");
        let settings = Settings::for_data_dir(dir.path().to_owned());
        let hub = Self::new(store, Arc::new(settings), Metrics::new()).expect("a hub");
        (dir, hub)
    }

    /// The queue of the task serving `doc`, started if need be.
    pub(crate) async fn queue_of(self: &Arc<Self>, doc: DocumentId) -> mpsc::Sender<DocCommand> {
        match self.handle(doc, Missing::Create, None).await {
            Ok(h) => h.tx,
            Err(e) => panic!("no task for {doc}: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a test panics to fail

    use super::*;

    fn entry(device: &str, conn: u64) -> SessionEntry {
        SessionEntry {
            conn,
            device: device.to_owned(),
            revoked: false,
            rights: 0,
            kill: CancellationToken::new(),
        }
    }

    /// A device's peers, by connection and id.
    type Listed = Vec<(u64, String)>;

    /// A device's peers as the index lists them, and as a scan of every
    /// session finds them, oldest connection first.
    fn listed(sessions: &Sessions, device: &str) -> (Listed, Listed) {
        let indexed = sessions
            .of_device(device)
            .map(|(p, e)| (e.conn, p.to_string()))
            .collect();
        let mut scanned: Vec<_> = sessions
            .by_peer
            .iter()
            .filter(|(_, e)| e.device == device)
            .map(|(p, e)| (e.conn, p.to_string()))
            .collect();
        scanned.sort();
        (indexed, scanned)
    }

    /// A revoked device's sockets, each sending a change a message, load
    /// the record for one hand-in at a time: the API's other turns stay
    /// for coordinators' reads and other devices.
    #[tokio::test]
    async fn a_revoked_devices_hand_ins_take_one_of_the_apis_turns_at_a_time() {
        use std::time::Duration;
        let (_dir, hub) = Hub::in_temp_dir();
        let wait = Duration::from_millis(200);
        let first = hub.hand_in_turn("stolen").await.unwrap();
        let second = tokio::time::timeout(wait, hub.hand_in_turn("stolen")).await;
        assert!(second.is_err(), "a second load for one device went ahead");
        assert_eq!(hub.api_reads.available_permits(), API_READS - 1);
        let other = tokio::time::timeout(wait, hub.hand_in_turn("other")).await;
        assert!(other.is_ok(), "another device waited on this one");
        drop(other);
        drop(first);
        let second = tokio::time::timeout(Duration::from_secs(1), hub.hand_in_turn("stolen")).await;
        assert!(second.is_ok(), "the device's next load never had its turn");
    }

    /// Peers joining again on new sockets, on the same socket, and leaving,
    /// over several devices: the index always lists what a scan finds, and
    /// forgets a device with no peer left.
    #[test]
    fn the_device_index_follows_the_sessions() {
        let mut sessions = Sessions::default();
        let devices = ["phone", "tablet", "laptop"];
        let mut x: u64 = 7;
        for conn in 1..400u64 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let device = devices[(x >> 33) as usize % devices.len()];
            let peer = PeerId::new(format!("{device}-{}", (x >> 40) % 4));
            match (x >> 50) % 3 {
                0 => sessions.remove(&peer),
                // The same socket joining again keeps its place.
                1 if sessions.get(&peer).is_some() => {
                    let old = sessions.get(&peer).cloned().expect("just seen");
                    sessions.insert(peer, old);
                }
                _ => sessions.insert(peer, entry(device, conn)),
            }
            for device in devices {
                let (indexed, scanned) = listed(&sessions, device);
                assert_eq!(indexed, scanned, "after socket {conn}");
                assert_eq!(sessions.by_device.contains_key(device), !scanned.is_empty());
            }
        }
        assert!(
            sessions.by_peer.len() > 2,
            "the walk left too few peers to check"
        );
    }
}
