//! One WebSocket connection: the handshake, then frames in and out.
//!
//! The reader decodes each frame strictly and routes it to the document's
//! task; the writer drains the peer's bounded queue and pings. Anything
//! malformed gets a protocol `error` naming the problem, and the socket is
//! closed where going on makes no sense. Nothing from a refused message
//! reaches a document.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use automerge::{Automerge, ReadDoc};
use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket};
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, error, info_span, warn};
use twinsync_shared::protocol::engine::Checked;
use twinsync_shared::protocol::handshake::{self, Joined};
use twinsync_shared::protocol::{
    ANNOUNCED_FRAME_BYTES, DecodeError, DocSync, FrameLimit, Message, PeerMetadata, RATE_LIMITED,
    Refusal, SLOW_LINK_BYTES_PER_SEC, ops_in_sync,
};
use twinsync_shared::record::new_document;
use twinsync_shared::{DocumentId, PeerId};

use crate::auth::{Device, Windows, whole_seconds};
use crate::document::{DocCommand, PeerLink, Queued, session_key};
use crate::hub::{DispatchError, Hub, Missing};
use crate::outbox::{Outbox, outbox};
use crate::permissions::{TOO_LARGE, TOO_MANY_OPEN, UNREADABLE, Why};
use crate::store::{Refused, StoreError};

/// What a revoked device handed in for one document on this connection.
struct HandIn {
    copy: Automerge,
    sync: DocSync,
    /// Bytes of the changes `copy` took in.
    bytes: u64,
}

/// Why a connection ends; sent to the peer as an `error` first.
struct Fatal(String);

/// Serves one socket of a signed-in device.
pub async fn serve(socket: WebSocket, hub: Arc<Hub>, device: Device) {
    let conn = hub.next_id();
    let span = info_span!("connection", conn, device = %device.id, peer_id = tracing::field::Empty);
    Session::new(hub, conn, device)
        .run(socket)
        .instrument(span)
        .await;
}

struct Session {
    hub: Arc<Hub>,
    conn: u64,
    device: Arc<Device>,
    joined: Option<Joined>,
    /// The joined peer's key (`document::session_key`), which the hub and
    /// the records' tasks know it by.
    key: PeerId,
    /// Who sent the `join` being answered, until it is accepted: a refusal
    /// is addressed to them, as the official server addresses it.
    greeted: Option<PeerId>,
    docs: HashSet<DocumentId>,
    /// Records the server lacked when this peer named them: it waits to be
    /// offered each (see [`Hub::dispatch`]), up to [`MAX_WAITING`].
    waiting: HashSet<DocumentId>,
    /// A revoked device's hand-in: what it sent, per document, synced
    /// against an empty copy so it is shown nothing.
    inbox: HashMap<DocumentId, HandIn>,
    /// This connection's share of the device's hand-in bytes, as last
    /// told to [`Hub::hand_in_share`].
    inbox_told: u64,
    /// Documents of `docs` counted on the hub as open on the device's
    /// sockets ([`Hub::open_document`]).
    open: HashSet<DocumentId>,
    kill: CancellationToken,
    /// When the peer last sent a frame, or, while a hand-in waits for its
    /// budget, the end of the wait's current slice; the writer gives up on
    /// a peer silent past the peer timeout.
    heard: Arc<std::sync::Mutex<Instant>>,
    /// Told when the writer stops: the reader stops too.
    writer_gone: Arc<Notify>,
    /// Set on a `join` from a peer that answers pings (the app): the
    /// server's and the peer's ids, with which the writer announces each
    /// large frame ([`Message::Coming`]).
    announce: Arc<std::sync::OnceLock<(PeerId, PeerId)>>,
    /// The connection ends for the server's own failure (its store), not
    /// the peer's: not counted as a protocol error.
    server_failed: bool,
    /// Ephemeral messages relayed in the current second.
    ephemeral: EphemeralShare,
    /// The peer said it takes Automerge's reset flag ([`PeerLink::resets`]).
    resets: Arc<std::sync::atomic::AtomicBool>,
    /// A client other than the app's sync messages refused for now (too
    /// many records opened in the minute), by record: taken up again once
    /// it may open them (see [`Session::take_up_later`]).
    later: HashMap<DocumentId, Later>,
    /// The bytes of the messages in `later`.
    later_bytes: usize,
}

/// A sync message refused for now, to take up again at `due`.
struct Later {
    due: tokio::time::Instant,
    peer: PeerLink,
    data: Vec<u8>,
}

/// The most bytes of sync messages a socket keeps to take up later: the
/// message that starts an exchange (heads and a Bloom filter) is small; a
/// larger one waits for the peer's next exchange, as before.
const LATER_BYTES: usize = 1 << 20;

/// Ephemeral messages a socket relayed in the second begun at `since` (its
/// first such message since the last second ended).
#[derive(Default)]
struct EphemeralShare {
    since: Option<Instant>,
    count: u32,
    bytes: usize,
    /// Whether the peer was told it went past its share this second.
    told: bool,
}

/// Ephemeral messages a socket may have relayed in one second, and their
/// bytes: each goes to every other peer of its record, and presence or a
/// cursor needs a few a second, not a stream.
const EPHEMERAL_PER_SECOND: (u32, usize) = (50, 512 * 1024);

impl Drop for Session {
    fn drop(&mut self) {
        if self.inbox_told > 0 {
            self.hub.hand_in_share(&self.device.id, self.inbox_told, 0);
        }
        if !self.open.is_empty() {
            self.hub.close_documents(&self.device.id, self.open.drain());
        }
    }
}

impl Session {
    fn new(hub: Arc<Hub>, conn: u64, device: Device) -> Self {
        Self {
            hub,
            conn,
            device: Arc::new(device),
            joined: None,
            key: PeerId::new(""),
            greeted: None,
            docs: HashSet::new(),
            waiting: HashSet::new(),
            inbox: HashMap::new(),
            inbox_told: 0,
            open: HashSet::new(),
            kill: CancellationToken::new(),
            heard: Arc::new(std::sync::Mutex::new(Instant::now())),
            writer_gone: Arc::new(Notify::new()),
            announce: Arc::new(std::sync::OnceLock::new()),
            server_failed: false,
            ephemeral: EphemeralShare::default(),
            resets: Arc::default(),
            later: HashMap::new(),
            later_bytes: 0,
        }
    }

    /// The peer that joined on this socket, to address an `error` to.
    fn joined_peer(&self) -> PeerId {
        self.joined
            .as_ref()
            .map_or_else(|| PeerId::new(""), |j| j.peer_id.clone())
    }

    /// Counts an ephemeral message of `bytes` against this second's share;
    /// `false` if it goes past it. The first one past in a second is told
    /// so; the rest are dropped, as ephemeral messages may be.
    fn ephemeral_allowed(&mut self, bytes: usize, out: &Outbox) -> bool {
        let share = &mut self.ephemeral;
        if share
            .since
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
        {
            *share = EphemeralShare {
                since: Some(Instant::now()),
                ..EphemeralShare::default()
            };
        }
        let (most, most_bytes) = EPHEMERAL_PER_SECOND;
        if share.count < most && share.bytes.saturating_add(bytes) <= most_bytes {
            share.count += 1;
            share.bytes += bytes;
            return true;
        }
        if !std::mem::replace(&mut share.told, true) {
            let msg = Message::Error {
                refusal: None,
                sender_id: self.hub.server_id.clone(),
                target_id: self.joined_peer(),
                message: format!(
                    "ephemeral messages past {most} or {most_bytes} bytes a second are not relayed"
                ),
            };
            let _ = out.try_send(msg.encode());
        }
        false
    }

    async fn run(mut self, socket: WebSocket) {
        let (mut sink, mut stream) = socket.split();
        let (out_tx, mut out_rx) = outbox(
            self.hub.settings.peer_queue,
            self.hub.settings.peer_queue_bytes(),
            self.hub.device_share(&self.device.id),
        );
        let settings = Arc::clone(&self.hub.settings);
        let metrics = self.hub.metrics.clone();
        // The writer stops on the kill switch, or when this session ends
        // (`stop`, which leaves what the peer sent before it closed to be
        // taken in).
        let stop = self.kill.child_token();
        let kill = stop.clone();
        let heard = Arc::clone(&self.heard);

        // The writer: the only owner of the sink. Every send is bounded by
        // the peer timeout, so a peer that never reads cannot hold it.
        let gone = Arc::clone(&self.writer_gone);
        let announce = Arc::clone(&self.announce);
        let mut writer = tokio::spawn(async move {
            let limit = settings.peer_timeout();
            let mut ping = tokio::time::interval(settings.ping_interval());
            ping.tick().await;
            loop {
                tokio::select! {
                    out = out_rx.next_to_send() => match out {
                        // The charge counts the frame against the device
                        // until it is sent: dropped at the end of the arm.
                        Some((frame, _charge)) => {
                            let len = frame.len();
                            // The app hears a frame only once it is whole:
                            // told how large the next one is, it waits for
                            // it rather than give the socket up as silent.
                            if len >= ANNOUNCED_FRAME_BYTES
                                && let Some((server, peer)) = announce.get()
                            {
                                let coming = Message::Coming {
                                    sender_id: server.clone(),
                                    target_id: peer.clone(),
                                    bytes: len as u64,
                                }
                                .encode();
                                metrics.bytes_out.inc_by(coming.len() as u64);
                                if !send_within(&mut sink, WsMessage::Binary(coming.into()), limit).await {
                                    break;
                                }
                            }
                            metrics.bytes_out.inc_by(len as u64);
                            // A large frame (a whole record on a first
                            // sync) takes its time on a slow link: the peer
                            // has the timeout, and as long again as the
                            // frame takes at the slowest rate kept up.
                            let slowest = f64::from(SLOW_LINK_BYTES_PER_SEC);
                            let within = limit + Duration::from_secs_f64(len as f64 / slowest);
                            let started = Instant::now();
                            if !send_within(&mut sink, WsMessage::Binary(frame.into()), within).await {
                                debug!(bytes = len, secs = within.as_secs(), "peer dropped: a frame not sent in time");
                                break;
                            }
                            // Sent at the pace the peer read it: it was
                            // there all along, though its pong waited
                            // behind the frame.
                            if started.elapsed() > Duration::from_secs(1)
                                && let Ok(mut heard) = heard.lock()
                            {
                                *heard = Instant::now();
                            }
                        }
                        None => break,
                    },
                    _ = ping.tick() => {
                        let silent = heard.lock().map(|t| t.elapsed()).unwrap_or_default();
                        if silent > limit {
                            debug!("peer timed out");
                            break;
                        }
                        if !send_within(&mut sink, WsMessage::Ping(Vec::new().into()), limit).await {
                            break;
                        }
                    }
                    () = kill.cancelled() => {
                        // Deliver what was queued before the kill (such as the
                        // error that explains it), and nothing queued after,
                        // then close.
                        for _ in 0..out_rx.len() {
                            let Ok((frame, _charge)) = out_rx.try_next_to_send() else { break };
                            if !send_within(&mut sink, WsMessage::Binary(frame.into()), limit).await {
                                break;
                            }
                        }
                        break;
                    }
                }
            }
            // What is left unsent stops counting against the device now,
            // not once the close below has had its time.
            drop(out_rx);
            // Wake the reader: a peer that stopped reading may still be sending.
            gone.notify_one();
            let close = WsMessage::Close(Some(CloseFrame {
                code: 1000,
                reason: "".into(),
            }));
            if send_within(&mut sink, close, limit).await {
                let _ = tokio::time::timeout(limit, sink.close()).await;
            }
        });

        self.hub.metrics.connected_peers.inc();
        let join_deadline = tokio::time::Instant::now() + self.hub.settings.join_timeout();
        loop {
            let next = if self.joined.is_none() {
                match tokio::time::timeout_at(join_deadline, stream.next()).await {
                    Ok(next) => next,
                    Err(_) => {
                        self.fatal(&out_tx, Fatal("no `join` received in time".into()))
                            .await;
                        break;
                    }
                }
            } else {
                // The kill switch first: a revoked device's frames that
                // are already waiting are not taken in.
                let due = self.later.values().map(|l| l.due).min();
                tokio::select! {
                    biased;
                    () = self.kill.cancelled() => break,
                    () = self.writer_gone.notified() => break,
                    () = until(due) => {
                        if let Err(fatal) = self.take_up_later(&out_tx).await {
                            self.fatal(&out_tx, fatal).await;
                            break;
                        }
                        continue;
                    }
                    next = stream.next() => next,
                }
            };
            let Some(Ok(frame)) = next else { break };
            if let Ok(mut t) = self.heard.lock() {
                *t = Instant::now();
            }
            let result = match frame {
                WsMessage::Binary(bytes) => {
                    self.hub.metrics.bytes_in.inc_by(bytes.len() as u64);
                    self.on_frame(&bytes, &out_tx).await
                }
                WsMessage::Text(_) => Err(Fatal(
                    "text frames are not part of the protocol; send binary CBOR".into(),
                )),
                WsMessage::Ping(_) | WsMessage::Pong(_) => Ok(()),
                WsMessage::Close(_) => break,
            };
            if let Err(fatal) = result {
                self.fatal(&out_tx, fatal).await;
                break;
            }
        }
        self.hub.metrics.connected_peers.dec();
        // Stop the writer too, whichever side ended first (between frames;
        // one busy sending is aborted below if it has not stopped by then).
        stop.cancel();
        self.leave().await;
        drop(out_tx);
        // Let the writer flush the last error, then stop it for good.
        if tokio::time::timeout(std::time::Duration::from_secs(2), &mut writer)
            .await
            .is_err()
        {
            writer.abort();
        }
    }

    /// The device could not be read again at `join`: the store's fault,
    /// not the peer's, so the operator is told why and it counts as a
    /// storage error; the peer is told to come back.
    fn cannot_check(&mut self, key: &PeerId, why: &dyn std::fmt::Display) -> Fatal {
        error!(device = %self.device.id, error = %why, "cannot read the device again at join");
        self.hub.metrics.storage_errors.inc();
        self.server_failed = true;
        self.hub.unregister_session(key, self.conn);
        Fatal("the server cannot check this device right now".into())
    }

    async fn fatal(&self, out: &Outbox, Fatal(reason): Fatal) {
        if !self.server_failed {
            self.hub.metrics.protocol_errors.inc();
        }
        warn!(reason = %reason, "closing connection");
        let target_id = self
            .joined
            .as_ref()
            .map(|j| j.peer_id.clone())
            .or_else(|| self.greeted.clone())
            .unwrap_or_else(|| PeerId::new(""));
        let msg = Message::Error {
            refusal: None,
            sender_id: self.hub.server_id.clone(),
            target_id,
            message: reason,
        };
        let _ = out.try_send(msg.encode());
    }

    async fn on_frame(&mut self, bytes: &[u8], out: &Outbox) -> Result<(), Fatal> {
        let mib = self.hub.settings.device_mib_per_minute;
        let per_minute = mib.saturating_mul(1024 * 1024);
        // A revoked device's frame of more than a minute's bytes passes on
        // a minute with nothing else: it would wait for ever.
        let len = bytes.len() as u64;
        let len = if self.hands_in() {
            len.min(per_minute)
        } else {
            len
        };
        let window = &self.hub.guards.device_bytes;
        if !self
            .charge(window, len, per_minute, &format!("{mib} MiB"), out)
            .await?
        {
            return Ok(());
        }
        let limit = FrameLimit(self.hub.settings.max_frame_bytes);
        let decoded = match Message::decode(bytes, limit) {
            // Changes to one record over the limit refuse that record, not
            // the socket: cut off, the phone would send the same frame at
            // every reconnection, and its other records never get through.
            Err(e @ DecodeError::TooLarge { .. }) if self.joined.is_some() => {
                match Message::decode(bytes, FrameLimit(usize::MAX)) {
                    Ok(
                        Message::Sync { document_id, .. } | Message::Request { document_id, .. },
                    ) => {
                        self.hub.metrics.messages_too_large.inc();
                        warn!(doc_id = %document_id, error = %e, "sync message over the frame limit; refused");
                        let msg = Message::Error {
                            sender_id: self.hub.server_id.clone(),
                            target_id: self.joined_peer(),
                            message: format!(
                                "your changes to record {document_id} were refused: {e}; they were not stored or relayed and stay on your device"
                            ),
                            refusal: Some(Refusal {
                                document_id,
                                code: TOO_LARGE.to_owned(),
                                path: "/".to_owned(),
                                quarantine: None,
                                discarded: false,
                                retry_after: None,
                            }),
                        };
                        // Owed: a peer not reading is cut off rather than
                        // left waiting for an answer dropped.
                        self.owed(out, &msg);
                        return Ok(());
                    }
                    // Over the limit, and for a record no twinsync holds:
                    // answered below as under the limit.
                    Err(foreign @ DecodeError::ForeignDocumentId { .. }) => Err(foreign),
                    _ => Err(e),
                }
            }
            decoded => decoded,
        };
        let msg = match decoded {
            Ok(msg) => msg,
            // As the official server does, a joined peer's message of a
            // type this server does not know is let pass: `leave`, which
            // the protocol's own description names, or one from a later
            // version. Before `join`, nothing but a join makes sense.
            Err(DecodeError::UnknownType(kind)) if self.joined.is_some() => {
                debug!(kind, "message of an unknown type ignored");
                return Ok(());
            }
            // A document id of another length, which the official client
            // may make: no record of this server has it, so it is
            // unavailable, and the socket serves the peer's other records.
            // Presence on such an id that the peer passes on from another
            // of its peers (a second server, a tab's channel) names that
            // peer as its sender: ignored too, not taken for a malformed
            // frame, which would cut the socket at each heartbeat.
            Err(DecodeError::ForeignDocumentId {
                kind,
                sender_id,
                document_id,
                length,
            }) if self.joined.as_ref().is_some_and(|j| {
                j.peer_id.as_str() == sender_id || !matches!(kind.as_str(), "request" | "sync")
            }) =>
            {
                if matches!(kind.as_str(), "request" | "sync") {
                    self.unavailable_foreign(out, &sender_id, &document_id, length);
                } else {
                    // Presence on it, which the official client sends to
                    // every peer of the document, the server too.
                    debug!(
                        kind,
                        document_id, "a message about a document id twinsync never makes; ignored"
                    );
                }
                return Ok(());
            }
            Err(e) => return Err(Fatal(format!("malformed frame: {e}"))),
        };
        if let Message::Sync { data, .. } | Message::Request { data, .. } = &msg
            && !self.charge_ops(data, out).await?
        {
            return Ok(());
        }
        let Some(joined) = &self.joined else {
            let ours = PeerMetadata {
                storage_id: Some(twinsync_shared::StorageId::new(self.hub.storage_id.clone())),
                is_ephemeral: false,
                answers_pings: true,
                hears_coming: false,
            };
            if let Message::Join { sender_id, .. } = &msg
                && sender_id.as_str().len() <= handshake::MAX_ID_BYTES
            {
                self.greeted = Some(sender_id.clone());
            }
            let (joined, reply) = handshake::accept(&msg, &self.hub.server_id, &ours)
                .map_err(|e| Fatal(e.to_string()))?;
            tracing::Span::current().record("peer_id", tracing::field::display(&joined.peer_id));
            let key = session_key(&self.device.id, &joined.peer_id);
            self.hub
                .register_session(&key, self.conn, &self.device, self.kill.clone());
            // Answered before the device is read again: the official client
            // takes itself for ready a second after its socket opens, and
            // gives up at once on any record it then asks for with no peer
            // to ask; under load that read can wait its turn for the store.
            // No other frame of this socket is read until the check below
            // is done, and a device found revoked or gone is told so and
            // closed as before. A reply its device's queues have no room for
            // closes the socket, rather than leave it waiting for none.
            self.owed_frame(out, reply.encode());
            // The device may have been revoked, or its rights changed,
            // since the upgrade; read it again now that the session is
            // registered, so a revocation or change is seen either here or
            // by the API's `Hub::disconnect_device` or `disconnect_outdated`,
            // or by the watcher's `Hub::disconnect_stale`.
            let (store, id) = (self.hub.store.clone(), self.device.id.clone());
            let fresh = tokio::task::spawn_blocking(move || store.device(&id)).await;
            match fresh {
                Ok(Ok(Some(device))) => {
                    if device.is_revoked() && !self.device.is_revoked() {
                        self.hub.unregister_session(&key, self.conn);
                        return Err(Fatal(
                            "this device was revoked; reconnect to hand in unsynced changes".into(),
                        ));
                    }
                    self.hub.refresh_session(&key, self.conn, device.rights);
                    self.device = Arc::new(device);
                }
                Ok(Ok(None)) => {
                    self.hub.unregister_session(&key, self.conn);
                    return Err(Fatal("this device no longer exists".into()));
                }
                Ok(Err(e)) => return Err(self.cannot_check(&key, &e)),
                Err(e) => return Err(self.cannot_check(&key, &e)),
            }
            if joined.metadata.hears_coming {
                let ids = (self.hub.server_id.clone(), joined.peer_id.clone());
                let _ = self.announce.set(ids);
            }
            self.joined = Some(joined);
            self.key = key;
            return Ok(());
        };
        if msg.sender_id() != &joined.peer_id {
            // The official client passes an ephemeral message on to its
            // other peers as it came, its first sender's id and all: a
            // message this server relayed comes back so. Dropped, as the
            // official server drops it; other peers have had it.
            if matches!(msg, Message::Ephemeral { .. }) {
                tracing::trace!(sender = %msg.sender_id(), "an ephemeral message passed back on");
                return Ok(());
            }
            return Err(Fatal(format!(
                "senderId `{}` is not the peer that joined on this socket (`{}`)",
                msg.sender_id(),
                joined.peer_id
            )));
        }
        // Answered on a revoked device's socket too: it hands in what it
        // holds, and a socket it gave up on would start that over.
        if let Message::Ping { sender_id, .. } = msg {
            let pong = Message::Pong {
                sender_id: self.hub.server_id.clone(),
                target_id: sender_id,
            };
            self.owed(out, &pong);
            return Ok(());
        }
        let link = PeerLink {
            peer_id: joined.peer_id.clone(),
            key: self.key.clone(),
            conn: self.conn,
            storage_id: joined
                .metadata
                .storage_id
                .clone()
                .filter(|_| !joined.metadata.is_ephemeral),
            out: out.clone(),
            kill: self.kill.clone(),
            device: Arc::clone(&self.device),
            resets: Arc::clone(&self.resets),
            app: self.is_app(),
        };
        if self.device.is_revoked() {
            return match msg {
                Message::Sync {
                    document_id, data, ..
                } => self.hand_in(document_id, &data, false, out).await,
                Message::Request {
                    document_id, data, ..
                } => self.hand_in(document_id, &data, true, out).await,
                Message::Join { .. } => {
                    Err(Fatal("`join` was already received on this socket".into()))
                }
                _ => Ok(()),
            };
        }
        match msg {
            Message::Sync {
                document_id, data, ..
            } => self.forward_sync(document_id, link, data, false, out).await,
            Message::Request {
                document_id, data, ..
            } => self.forward_sync(document_id, link, data, true, out).await,
            msg @ Message::Ephemeral { .. } => {
                let Some(doc) = msg.document_id() else {
                    return Ok(());
                };
                let bytes = match &msg {
                    Message::Ephemeral { data, .. } => data.len(),
                    _ => 0,
                };
                if !self.ephemeral_allowed(bytes, out) {
                    return Ok(());
                }
                // Relayed by the record's task if it is loaded, whether or
                // not this socket synced it yet: the official client
                // announces its presence as it opens a record, before its
                // first sync reaches the server. Every device that may
                // send presence reads every record.
                self.hub
                    .send_if_loaded(doc, DocCommand::Ephemeral { peer: link, msg })
                    .await;
                Ok(())
            }
            Message::Join { .. } => Err(Fatal("`join` was already received on this socket".into())),
            Message::Peer { .. } => Err(Fatal("`peer` is sent by the server, not to it".into())),
            // Heads gossip is optional and off in the JS client by default;
            // doc-unavailable and errors from a client need no answer.
            Message::DocUnavailable { .. }
            | Message::Error { .. }
            | Message::Ping { .. }
            | Message::Pong { .. }
            | Message::Coming { .. }
            | Message::RemoteSubscriptionChange { .. }
            | Message::RemoteHeadsChanged { .. } => Ok(()),
        }
    }

    async fn forward_sync(
        &mut self,
        doc: DocumentId,
        peer: PeerLink,
        data: Vec<u8>,
        is_request: bool,
        out: &Outbox,
    ) -> Result<(), Fatal> {
        let joined = self.docs.contains(&doc);
        let waits = self.waiting.contains(&doc);
        // A phone follows the records the club index lists, and may name
        // some before their creators' changes arrive; more than this and
        // the socket is naming ids at random.
        let wait = waits || self.waiting.len() < MAX_WAITING;
        let missing = if is_request {
            Missing::Unavailable { wait }
        } else if joined || carries_changes(&data) {
            Missing::Create
        } else {
            Missing::Answer { wait }
        };
        let peer_id = peer.peer_id.clone();
        // A record this peer waits for was counted against the documents a
        // minute when it first named it, but is counted as open only once
        // a task serves it. The open count goes first: a record it refuses
        // costs none of the minute's documents.
        let opens = !joined;
        if opens {
            if self.over_open_limit(out, &peer_id, doc) {
                if waits {
                    // The record may have reached a task, which took this
                    // peer in when it started: the peer leaves it, or it
                    // would hear the record it may not open.
                    self.waiting.remove(&doc);
                    self.hub.stop_waiting(doc, self.conn);
                    let leave = DocCommand::Leave {
                        key: peer.key.clone(),
                        conn: self.conn,
                    };
                    self.hub.send_if_loaded(doc, leave).await;
                }
                self.unavailable_for_now(out, &peer_id, doc, is_request);
                return Ok(());
            }
            // Counted from here; `Drop` lets go of it whatever happens.
            self.open.insert(doc);
            if !waits && let Some(wait) = self.over_document_limit(out, &peer_id, doc, "opened") {
                self.close(doc);
                self.unavailable_for_now(out, &peer_id, doc, is_request);
                self.later(doc, peer, data, is_request, wait);
                return Ok(());
            }
        }
        let cmd = DocCommand::Sync {
            peer,
            data,
            is_request,
            received: Instant::now(),
        };
        let dispatched = self.hub.dispatch(doc, cmd, missing).await;
        if opens && dispatched.is_err() {
            self.close(doc);
        }
        match dispatched {
            Ok(()) => {
                // A task serves the record: it took this peer's wait, if
                // the peer was still waiting, when it started. A message
                // refused for now is behind this one.
                self.waiting.remove(&doc);
                self.forget_later(doc);
                self.docs.insert(doc);
                Ok(())
            }
            Err(DispatchError::NotFound) => {
                if wait {
                    self.waiting.insert(doc);
                }
                if matches!(missing, Missing::Answer { .. }) {
                    // What a server holding nothing of the record says: its
                    // heads are empty. The sender then sends its changes.
                    let empty = automerge::sync::SyncDoc::generate_sync_message(
                        &new_document(),
                        &mut automerge::sync::State::new(),
                    );
                    if let Some(answer) = empty {
                        let msg = Message::Sync {
                            sender_id: self.hub.server_id.clone(),
                            target_id: peer_id,
                            document_id: doc,
                            data: answer.encode(),
                        };
                        self.owed(out, &msg);
                    }
                } else {
                    self.unavailable(out, peer_id, doc);
                }
                Ok(())
            }
            // The socket is being closed for the restart: nothing to say.
            Err(DispatchError::ShuttingDown) => Ok(()),
            Err(DispatchError::Store(e)) => {
                self.hub.metrics.storage_errors.inc();
                warn!(doc_id = %doc, error = %e, "cannot open document");
                let message = format!("document {doc} cannot be opened on the server right now");
                self.refuse(out, peer_id.clone(), doc, UNREADABLE, None, message);
                self.unavailable_for_now(out, &peer_id, doc, is_request);
                Ok(())
            }
        }
    }

    /// A revoked device hands in what it has not synced. Its changes are
    /// received into an empty copy of each document, so the replies show
    /// it nothing, and whatever the server lacks goes to quarantine.
    async fn hand_in(
        &mut self,
        doc: DocumentId,
        data: &[u8],
        is_request: bool,
        out: &Outbox,
    ) -> Result<(), Fatal> {
        let Some(joined) = &self.joined else {
            return Ok(());
        };
        let peer_id = joined.peer_id.clone();
        if !self.inbox.contains_key(&doc) {
            // Each copy is kept while the socket stays, even one holding
            // nothing: as many as a device may hold open, per socket.
            let limit = self.hub.settings.max_open_docs_per_device;
            if self.inbox.len() >= limit {
                // A copy that took in nothing makes way first: a phone with
                // more records than the limit names them all in turn.
                let empty = self
                    .inbox
                    .iter()
                    .find(|(_, h)| h.bytes == 0)
                    .map(|(d, _)| *d);
                if let Some(empty) = empty {
                    self.inbox.remove(&empty);
                }
            }
            if self.inbox.len() >= limit {
                let held = format!("this connection holds {limit} documents handed in");
                self.refuse_too_many(out, peer_id, doc, "taken", &held);
                return Ok(());
            }
            if self
                .over_document_limit(out, &peer_id, doc, "taken")
                .is_some()
            {
                return Ok(());
            }
        }
        let HandIn { copy, sync, bytes } = self.inbox.entry(doc).or_insert_with(|| {
            let limit = self.hub.settings.max_ops_per_message;
            HandIn {
                copy: new_document(),
                sync: DocSync::new(doc).with_max_ops(limit),
                bytes: 0,
            }
        });
        let received = sync.receive_checked(copy, &peer_id, data, is_request, |_, _| {
            Ok::<(), std::convert::Infallible>(())
        });
        let received = match received {
            Ok(r) => r,
            Err(Checked::Rejected(never)) => match never {},
            Err(Checked::Sync(e)) => {
                let msg = Message::Error {
                    refusal: None,
                    sender_id: self.hub.server_id.clone(),
                    target_id: peer_id,
                    message: format!("sync message for document {doc} refused: {e}"),
                };
                self.owed(out, &msg);
                return Ok(());
            }
        };
        // A copy holds one record's changes, and no more ops than a record
        // may: the bytes bound on copies counts compressed changes, which
        // let a few kilobytes hold a million ops.
        let max_ops = self.hub.settings.max_record_ops;
        let ops = copy.stats().num_ops;
        if ops > max_ops {
            self.inbox.remove(&doc);
            self.tell_hand_in();
            self.hub.metrics.hand_in_copies_dropped.inc();
            // A refusal of changes, said as one: the app keeps it with the
            // change, not as the socket's trouble.
            let msg = Message::Error {
                refusal: Some(Refusal {
                    document_id: doc,
                    code: TOO_LARGE.to_owned(),
                    path: "/".to_owned(),
                    quarantine: None,
                    discarded: false,
                    retry_after: None,
                }),
                sender_id: self.hub.server_id.clone(),
                target_id: peer_id,
                message: format!(
                    "changes to document {doc} not kept: with them it would hold {ops} operations, past the limit of {max_ops} operations per record"
                ),
            };
            self.owed(out, &msg);
            return Ok(());
        }
        if !received.new_changes.is_empty() {
            let changes = received.saved;
            *bytes += changes.len() as u64;
            let offered: Vec<automerge::ChangeHash> = received.new_changes.clone();
            let (store, device, from) = (
                self.hub.store.clone(),
                self.device.id.clone(),
                peer_id.to_string(),
            );
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            let limit = self.hub.settings.max_quarantine_bytes();
            // Only what the server does not have needs a review. What a
            // device stored through it is named by the changes' origins, one
            // indexed lookup each; the record is loaded only for the rest
            // (the server's own changes, or new ones), in turn with the
            // API's reads of whole records, so a revoked device's sockets
            // cannot hold more copies, or cores, than those.
            let rest: Result<Vec<automerge::ChangeHash>, StoreError> = {
                let (store, asked) = (store.clone(), offered.clone());
                tokio::task::spawn_blocking(move || store.stored_changes(doc, &asked))
                    .await
                    .unwrap_or_else(|e| Err(StoreError::TaskFailed(e.to_string())))
                    .map(|named| {
                        offered
                            .iter()
                            .filter(|h| !named.contains(h))
                            .copied()
                            .collect()
                    })
            };
            let turn = match &rest {
                Ok(rest) if rest.is_empty() => None,
                // A socket killed or gone while it waits leaves the queue:
                // nothing was answered kept, and its device hands the
                // changes in again on its next socket, which would
                // otherwise wait behind this one.
                _ => match turn_unless_closed(
                    &self.hub,
                    &self.device.id,
                    &self.kill,
                    &self.writer_gone,
                )
                .await
                {
                    Some(turn) => Some(turn),
                    None => return Ok(()),
                },
            };
            let kept = tokio::task::spawn_blocking(move || {
                let _turn = turn;
                let rest = rest?;
                if rest.is_empty() {
                    return Ok(None);
                }
                // A record damaged on the server tells nothing, not even
                // what its origins name: every change offered goes to
                // review. (When they name every one, it is not read.)
                let (stored, rest) = match store.load(doc) {
                    Err(StoreError::Corrupt { .. }) => (None, offered),
                    loaded => (loaded?, rest),
                };
                // One look at the change graph for all of them, where
                // asking for each change rebuilt it from the record.
                let missing: Option<HashSet<automerge::ChangeHash>> = stored
                    .as_ref()
                    .map(|d| d.get_missing_deps(&rest).into_iter().collect());
                let unknown: Vec<String> = rest
                    .iter()
                    .filter(|h| missing.as_ref().is_none_or(|m| m.contains(h)))
                    .map(ToString::to_string)
                    .collect();
                if unknown.is_empty() {
                    return Ok(None);
                }
                // Only those go to review: the changes the server holds
                // already need none, and would take the device's room in
                // the quarantine. Bytes that do not all read as changes
                // are kept whole.
                let unknown_set: HashSet<&str> = unknown.iter().map(String::as_str).collect();
                let known = |chunk: &[u8]| {
                    automerge::Change::from_bytes(chunk.to_vec())
                        .is_ok_and(|c| !unknown_set.contains(c.hash().to_string().as_str()))
                };
                let parts: Option<Vec<&[u8]>> = twinsync_shared::record::chunks(&changes)
                    .map(|(_, chunk)| chunk)
                    .collect();
                let changes: Vec<u8> = match parts {
                    Some(parts)
                        if parts.iter().map(|p| p.len()).sum::<usize>() == changes.len() =>
                    {
                        parts
                            .into_iter()
                            .filter(|c| !known(c))
                            .flatten()
                            .copied()
                            .collect()
                    }
                    _ => changes,
                };
                store
                    .quarantine(
                        &Refused {
                            doc,
                            device_id: &device,
                            peer_id: &from,
                            hashes: &unknown,
                            changes: &changes,
                            path: None,
                            reason: "sent by a revoked device",
                            code: Why::Revoked.code(),
                        },
                        now,
                        limit,
                    )
                    .map(Some)
            })
            .await;
            let failed = match kept {
                Ok(Ok(Some(kept))) => {
                    self.hub.metrics.changes_refused.inc();
                    warn!(doc_id = %doc, quarantine = kept.id, discarded = kept.discarded, "a revoked device handed in changes");
                    None
                }
                Ok(Ok(None)) => None,
                Ok(Err(e)) => {
                    if e.is_storage_failure() {
                        self.hub.metrics.storage_errors.inc();
                    }
                    warn!(doc_id = %doc, error = %e, "cannot keep a revoked device's changes");
                    Some(e.public_reason())
                }
                Err(e) => {
                    warn!(doc_id = %doc, error = %e, "hand-in task failed");
                    Some("the server failed to take them")
                }
            };
            // Not kept: no reply may show them as the server's. The socket
            // closes, so the device reconnects and sends them again.
            if let Some(reason) = failed {
                self.inbox.remove(&doc);
                self.tell_hand_in();
                return Err(Fatal(format!(
                    "changes to document {doc} not kept: {reason}; they stay on this device and are sent again on reconnecting"
                )));
            }
        }
        let answers = sync.generate(copy, &self.hub.server_id);
        for msg in &answers {
            self.owed(out, msg);
        }
        // The copies of all the device's connections hold at most what it
        // may have waiting for review, besides the one each has in hand.
        // One dropped is made again if the device sends more for its
        // document: its next changes then lack their ancestors, which the
        // copy asks for again.
        if self.tell_hand_in() > self.hub.settings.max_quarantine_bytes() {
            let before = self.inbox.len();
            self.inbox.retain(|id, _| *id == doc);
            self.hub
                .metrics
                .hand_in_copies_dropped
                .inc_by((before - self.inbox.len()) as u64);
            self.tell_hand_in();
        }
        Ok(())
    }

    /// Counts the ops a sync message carries against the device's budget
    /// a minute, before any reaches Automerge, which applies them on a
    /// worker every other socket shares. A message past the bound one
    /// message has is left to its document's task, which refuses it and
    /// says why. False if the socket closed while a revoked device's
    /// frame waited for the budget: the frame is not taken in.
    async fn charge_ops(&self, data: &[u8], out: &Outbox) -> Result<bool, Fatal> {
        let Ok(ops @ 1..) = ops_in_sync(data, self.hub.settings.max_ops_per_message) else {
            return Ok(true);
        };
        let limit = self.hub.settings.device_ops_per_minute;
        let window = &self.hub.guards.device_ops;
        let what = format!("{limit} operations");
        self.charge(window, ops.min(limit), limit, &what, out).await
    }

    /// Counts `n` against the device's `window` of `limit` (`what`, for
    /// the message). Past it a revoked device's frame waits for the budget
    /// ([`Self::wait_for_budget`]), and any other device's socket closes
    /// with the wait. False if the socket closed while the frame waited:
    /// the frame is not taken in.
    async fn charge(
        &self,
        window: &Windows<String>,
        n: u64,
        limit: u64,
        what: &str,
        out: &Outbox,
    ) -> Result<bool, Fatal> {
        let Err(wait) = window.add(&self.device.id, n, limit) else {
            return Ok(true);
        };
        self.hub.metrics.rate_limited.inc();
        if self.hands_in() {
            return Ok(self.wait_for_budget(window, n, limit, wait, out).await);
        }
        Err(Fatal(format!(
            "this device sent more than {what} in a minute; reconnect in {} s",
            whole_seconds(wait)
        )))
    }

    /// Whether this socket is a revoked device's, joined: it hands in.
    fn hands_in(&self) -> bool {
        self.device.is_revoked() && self.joined.is_some()
    }

    /// Holds a revoked device's frame until `window` takes `n` more. Its
    /// hand-in is taken into copies that start empty on every socket, so
    /// the device sends all it holds each time it connects: cut off past a
    /// budget, it would come back and pass the budget at the same point,
    /// and never finish. Its socket is read no further meanwhile, and the
    /// wait is not counted as the peer's silence. A browser sees no
    /// WebSocket ping, and gives up a socket that it has not heard from in
    /// 45 s: a peer that answers `twinsync-ping` is sent one as often as
    /// the writer pings. False if the socket was closed (killed, or its
    /// writer stopped) meanwhile: the reader's loop sees it next.
    async fn wait_for_budget(
        &self,
        window: &Windows<String>,
        n: u64,
        limit: u64,
        mut wait: std::time::Duration,
        out: &Outbox,
    ) -> bool {
        let every = self.hub.settings.ping_interval();
        let ping = self.joined.as_ref().and_then(|j| {
            j.metadata.answers_pings.then(|| Message::Ping {
                sender_id: self.hub.server_id.clone(),
                target_id: j.peer_id.clone(),
            })
        });
        debug!(
            wait_ms = wait.as_millis(),
            "hand-in waits for the device's budget"
        );
        loop {
            let slice = wait.min(every);
            if let Ok(mut t) = self.heard.lock() {
                *t = Instant::now() + slice;
            }
            tokio::select! {
                () = closed(&self.kill, &self.writer_gone) => return false,
                () = tokio::time::sleep(slice) => {}
            }
            match window.add(&self.device.id, n, limit) {
                Ok(_) => return true,
                Err(next) => wait = next,
            }
            if let Some(ping) = &ping {
                self.owed(out, ping);
            }
        }
    }

    /// Tells the hub what this connection's hand-in copies hold now;
    /// returns what the device's hold, over all its connections.
    fn tell_hand_in(&mut self) -> u64 {
        let now: u64 = self.inbox.values().map(|h| h.bytes).sum();
        let total = self
            .hub
            .hand_in_share(&self.device.id, self.inbox_told, now);
        self.inbox_told = now;
        total
    }

    /// Counts `doc` against the device's documents a minute; past the
    /// limit, tells the peer it was not `what` (opened, taken) and when to
    /// ask again, and answers how long that is.
    fn over_document_limit(
        &self,
        out: &Outbox,
        peer_id: &PeerId,
        doc: DocumentId,
        what: &str,
    ) -> Option<Duration> {
        let limit = self.hub.settings.device_docs_per_minute;
        let Err(wait) = self.hub.guards.device_docs.add(&self.device.id, 1, limit) else {
            return None;
        };
        self.hub.metrics.rate_limited.inc();
        let secs = whole_seconds(wait);
        let message = format!(
            "document {doc} not {what}: this device opened more than {limit} documents in a minute; try again in {secs} s"
        );
        self.refuse(out, peer_id.clone(), doc, RATE_LIMITED, Some(secs), message);
        Some(wait)
    }

    /// Keeps a `sync` for `doc` refused for now, from a client other than
    /// the app, to take up again in `wait`. The app reads the refusal and
    /// sends again when it says; the official client only logs the `error`,
    /// and its sync state waits on an answer until its heads change, which
    /// may be never: a record it made would not reach the server. A
    /// `request` is told the record is unavailable instead
    /// ([`Self::unavailable_for_now`]). The newest message for a record
    /// replaces an older one; at most [`MAX_WAITING`] records and
    /// [`LATER_BYTES`]. (Refused for the open cap, a message is not kept:
    /// the cap frees only as sockets close, and the peer's next socket
    /// starts its exchanges afresh.)
    fn later(
        &mut self,
        doc: DocumentId,
        peer: PeerLink,
        data: Vec<u8>,
        is_request: bool,
        wait: Duration,
    ) {
        if is_request || self.is_app() {
            return;
        }
        self.forget_later(doc);
        if self.later.len() >= MAX_WAITING || self.later_bytes + data.len() > LATER_BYTES {
            return;
        }
        self.later_bytes += data.len();
        let due = tokio::time::Instant::now() + wait;
        self.later.insert(doc, Later { due, peer, data });
    }

    /// Lets go of the message kept for `doc`, if any.
    fn forget_later(&mut self, doc: DocumentId) -> Option<Later> {
        let later = self.later.remove(&doc)?;
        self.later_bytes -= later.data.len();
        Some(later)
    }

    /// Takes up the sync messages refused for now whose time has come, as
    /// if they had just arrived: refused again, they wait again.
    async fn take_up_later(&mut self, out: &Outbox) -> Result<(), Fatal> {
        let now = tokio::time::Instant::now();
        let due: Vec<DocumentId> = self
            .later
            .iter()
            .filter(|(_, l)| l.due <= now)
            .map(|(doc, _)| *doc)
            .collect();
        for doc in due {
            if let Some(Later { peer, data, .. }) = self.forget_later(doc) {
                self.forward_sync(doc, peer, data, false, out).await?;
            }
        }
        Ok(())
    }

    /// After a refusal of a `request` for `doc` for now (too many opened),
    /// tells a client other than the app (the official one) that the record
    /// is unavailable: it reads no `refusal` and only logs an `error`, and
    /// its `find` would wait for ever. Told so, it gives the record up, and
    /// may ask again when the `error` said.
    fn unavailable_for_now(
        &self,
        out: &Outbox,
        peer_id: &PeerId,
        doc: DocumentId,
        is_request: bool,
    ) {
        if is_request && !self.is_app() {
            self.unavailable(out, peer_id.clone(), doc);
        }
    }

    /// Tells the peer the server has no record `doc` for it.
    fn unavailable(&self, out: &Outbox, target_id: PeerId, doc: DocumentId) {
        let msg = Message::DocUnavailable {
            sender_id: self.hub.server_id.clone(),
            target_id,
            document_id: doc,
        };
        self.owed(out, &msg);
    }

    /// Whether the peer is twinsync's app, which reads a `refusal` and asks
    /// again when it says: it offers pings in its `join`, as official
    /// clients do not.
    fn is_app(&self) -> bool {
        self.joined
            .as_ref()
            .is_some_and(|j| j.metadata.answers_pings)
    }

    /// Counts `doc`, which this socket did not open after all, as open no
    /// more.
    fn close(&mut self, doc: DocumentId) {
        if self.open.remove(&doc) {
            self.hub.close_documents(&self.device.id, [doc]);
        }
    }

    /// Counts `doc` as open on the device's sockets; past the limit, tells
    /// the peer it was not opened and answers true.
    fn over_open_limit(&self, out: &Outbox, peer_id: &PeerId, doc: DocumentId) -> bool {
        let limit = self.hub.settings.max_open_docs_per_device;
        if self.hub.open_document(&self.device.id, doc, limit) {
            return false;
        }
        let held = format!("this device holds {limit} documents open on its connections");
        self.refuse_too_many(out, peer_id.clone(), doc, "opened", &held);
        true
    }

    /// Tells the peer `doc` was not `what` (opened, taken) as what it
    /// `held` is the most the server allows.
    fn refuse_too_many(
        &self,
        out: &Outbox,
        peer_id: PeerId,
        doc: DocumentId,
        what: &str,
        held: &str,
    ) {
        self.hub.metrics.rate_limited.inc();
        let message = format!(
            "document {doc} not {what}: {held}, the most the server allows; send it again later"
        );
        self.refuse(out, peer_id, doc, TOO_MANY_OPEN, None, message);
    }

    /// Tells the peer its message for `doc` was not taken, with the code
    /// the app translates (`code`) beside the English (`message`).
    fn refuse(
        &self,
        out: &Outbox,
        target_id: PeerId,
        doc: DocumentId,
        code: &str,
        retry_after: Option<u64>,
        message: String,
    ) {
        let refusal = Refusal {
            document_id: doc,
            code: code.to_owned(),
            path: "/".to_owned(),
            quarantine: None,
            discarded: false,
            retry_after,
        };
        let msg = Message::Error {
            refusal: Some(refusal),
            sender_id: self.hub.server_id.clone(),
            target_id,
            message,
        };
        self.owed(out, &msg);
    }

    /// Queues an answer the peer waits for. A peer whose queue is full is
    /// cut off, as a document's task cuts it off: it reconnects and asks
    /// again, where a dropped answer would leave it waiting.
    fn owed(&self, out: &Outbox, msg: &Message) {
        self.owed_frame(out, msg.encode());
    }

    /// Answers `doc-unavailable` for a document id of another length than
    /// twinsync's (see [`DecodeError::ForeignDocumentId`]), under the id as
    /// the peer wrote it.
    fn unavailable_foreign(&self, out: &Outbox, peer: &str, document_id: &str, length: usize) {
        debug!(
            document_id,
            length, "a document id twinsync never makes; unavailable"
        );
        self.owed_frame(
            out,
            twinsync_shared::protocol::doc_unavailable_for(
                self.hub.server_id.as_str(),
                peer,
                document_id,
            ),
        );
    }

    /// As [`Self::owed`], for a frame already encoded.
    fn owed_frame(&self, out: &Outbox, frame: Vec<u8>) {
        if crate::document::send_bytes_or_cut(out, &self.kill, &self.hub.metrics, frame)
            == Queued::CutOff
        {
            warn!("peer is not reading; dropping it");
        }
    }

    async fn leave(&mut self) {
        if self.joined.is_none() {
            return;
        }
        // Gone from the hub first: a failed record's next task, taking its
        // peers in, then finds this one gone (`Hub::has_session`) or is
        // loaded by the time this peer's `Leave` is sent, which reaches it.
        self.hub.unregister_session(&self.key, self.conn);
        // A record this peer waited for may have reached a task since,
        // which took the peer in: it leaves that task too.
        for doc in self.waiting.drain() {
            self.hub.stop_waiting(doc, self.conn);
            self.docs.insert(doc);
        }
        for doc in self.docs.drain() {
            self.hub
                .send_if_loaded(
                    doc,
                    DocCommand::Leave {
                        key: self.key.clone(),
                        conn: self.conn,
                    },
                )
                .await;
        }
    }
}

/// The most records one socket waits for at a time (see `Session::waiting`).
pub const MAX_WAITING: usize = 256;

/// Resolves once a connection is to end: `kill`ed, or its writer gone.
/// The writer's word is left for the reader's loop, which ends on it.
async fn closed(kill: &CancellationToken, writer_gone: &Notify) {
    tokio::select! {
        () = kill.cancelled() => {}
        () = writer_gone.notified() => writer_gone.notify_one(),
    }
}

/// A revoked device's turn to load a record ([`Hub::hand_in_turn`]), or
/// `None` once its connection is to end ([`closed`]) before the turn
/// came: it leaves the queue then, rather than take a turn it cannot use.
async fn turn_unless_closed(
    hub: &Hub,
    device: &str,
    kill: &CancellationToken,
    writer_gone: &Notify,
) -> Option<Result<crate::hub::HandInTurn, tokio::sync::AcquireError>> {
    tokio::select! {
        biased;
        () = closed(kill, writer_gone) => None,
        turn = hub.hand_in_turn(device) => Some(turn),
    }
}

/// Sleeps until `due`, or for ever without one.
async fn until(due: Option<tokio::time::Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due).await,
        None => std::future::pending().await,
    }
}

/// Whether a sync payload carries changes, from its counts alone. One that
/// does not parse is taken as carrying some: the record's task then
/// refuses it, naming why.
fn carries_changes(data: &[u8]) -> bool {
    twinsync_shared::protocol::sync_shape(data).map_or(true, |changes| changes > 0)
}

/// Sends one frame, giving up after `limit`: false when the peer is gone
/// or stopped reading.
async fn send_within(
    sink: &mut SplitSink<WebSocket, WsMessage>,
    msg: WsMessage,
    limit: std::time::Duration,
) -> bool {
    matches!(
        tokio::time::timeout(limit, sink.send(msg)).await,
        Ok(Ok(()))
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a test panics to fail

    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_hand_in_waiting_for_its_turn_leaves_the_queue_when_its_socket_ends() {
        let (_dir, hub) = Hub::in_temp_dir();
        let held = hub.hand_in_turn("stolen").await.unwrap();
        // A socket killed while it waits (its peer connected again), and
        // one whose writer went (its peer fell silent), each behind the
        // held turn, then the device's live socket behind them.
        let waiter = |kill: CancellationToken, gone: Arc<Notify>| {
            let hub = Arc::clone(&hub);
            tokio::spawn(async move {
                let turn = turn_unless_closed(&hub, "stolen", &kill, &gone).await;
                turn.map(|t| t.unwrap())
            })
        };
        let (killed, gone) = (CancellationToken::new(), Arc::new(Notify::new()));
        let first = waiter(killed.clone(), Arc::new(Notify::new()));
        tokio::time::sleep(Duration::from_millis(50)).await;
        let second = waiter(CancellationToken::new(), Arc::clone(&gone));
        tokio::time::sleep(Duration::from_millis(50)).await;
        let live = waiter(CancellationToken::new(), Arc::new(Notify::new()));
        tokio::time::sleep(Duration::from_millis(50)).await;

        killed.cancel();
        gone.notify_one();
        let first = tokio::time::timeout(Duration::from_secs(5), first).await;
        assert!(
            first.unwrap().unwrap().is_none(),
            "the killed socket took a turn"
        );
        let second = tokio::time::timeout(Duration::from_secs(5), second).await;
        assert!(
            second.unwrap().unwrap().is_none(),
            "the silent socket took a turn"
        );
        // The word is left for the reader's loop.
        tokio::time::timeout(Duration::from_secs(1), gone.notified())
            .await
            .expect("the writer's word was swallowed");

        drop(held);
        let live = tokio::time::timeout(Duration::from_secs(5), live).await;
        assert!(
            live.expect("the live socket waited behind the dead ones")
                .unwrap()
                .is_some()
        );
    }
}
