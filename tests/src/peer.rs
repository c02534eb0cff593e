//! A test peer: the shared sync engine over a real WebSocket, as the
//! browser client drives it, with bounded waits that end by themselves.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use automerge::ChangeHash;
use automerge::sync;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};
use twinsync_shared::protocol::{DocSync, FrameLimit, Message, PeerMetadata, Refusal, handshake};
use twinsync_shared::record::{Commit, Edit, Kind, Record, RecordDoc, new_document};
use twinsync_shared::{DocumentId, PeerId, StorageId};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

struct Local {
    doc: RecordDoc,
    sync: DocSync,
}

/// What a peer saw from the server besides sync.
#[derive(Debug, Default)]
pub struct Seen {
    pub errors: Vec<String>,
    /// The refusals that came with `errors`, in order.
    pub refusals: Vec<Refusal>,
    pub unavailable: HashSet<DocumentId>,
    pub closed: bool,
    /// Frames that did not decode or apply (lenient peers only).
    pub garbled: u64,
    /// `twinsync-ping`s from the server (sent only to a peer that said it
    /// answers them).
    pub pings: u64,
    /// Ephemeral messages relayed to this peer, by record.
    pub ephemeral: HashMap<DocumentId, u64>,
}

impl Seen {
    /// How many of the errors say `what`.
    pub fn errors_with(&self, what: &str) -> usize {
        self.errors.iter().filter(|e| e.contains(what)).count()
    }
}

pub struct TestPeer {
    pub id: PeerId,
    ws: Option<Ws>,
    server: Option<PeerId>,
    docs: HashMap<DocumentId, Local>,
    /// Heads the server announced, per document: what it acknowledged.
    pub acked: HashMap<DocumentId, Vec<ChangeHash>>,
    pub seen: Seen,
    storage_id: Option<StorageId>,
    /// The device token to sign in with; else the server's coordinator token.
    token: Option<String>,
    /// Says in `join` that it answers `twinsync-ping`, as the app does (it
    /// counts them in `seen.pings`, and does not answer).
    pings: bool,
    /// A frame that does not decode or apply fails the test. Off under a
    /// fault proxy, where the peer counts it and reconnects instead.
    strict: bool,
}

impl TestPeer {
    pub fn new(id: &str) -> Self {
        Self {
            id: PeerId::new(id),
            ws: None,
            server: None,
            docs: HashMap::new(),
            acked: HashMap::new(),
            seen: Seen::default(),
            storage_id: None,
            token: None,
            pings: false,
            strict: true,
        }
    }

    /// Counts a garbled frame from the server in `seen.garbled` and drops
    /// the socket, rather than failing the test: a fault proxy garbles on
    /// purpose.
    pub fn lenient(mut self) -> Self {
        self.strict = false;
        self
    }

    /// Says in `join`, as the app does, that it answers `twinsync-ping`.
    pub fn hearing_pings(mut self) -> Self {
        self.pings = true;
        self
    }

    /// Signs in with `token` rather than the server's coordinator token.
    pub fn with_token(mut self, token: &str) -> Self {
        self.token = Some(token.to_owned());
        self
    }

    fn sync_url(&self, server: &impl crate::Server) -> String {
        let token = self.token.as_deref().unwrap_or(server.token());
        format!("ws://{}/sync?token={token}", server.addr())
    }

    /// A peer with a storage id, whose sync state the server keeps.
    pub fn with_storage(mut self, storage_id: &str) -> Self {
        self.storage_id = Some(StorageId::new(storage_id));
        self
    }

    /// Connects and joins; previous sync states restart as after a reconnection.
    pub async fn connect(&mut self, server: &impl crate::Server) {
        let url = self.sync_url(server);
        self.connect_url(&url).await.expect("the peer joins");
    }

    /// Connects to `url` (`ws://…/sync?token=…`) and joins; an error says
    /// why it could not, as when the server is down.
    pub async fn connect_url(&mut self, url: &str) -> Result<(), String> {
        let (mut ws, _) = connect_async(url)
            .await
            .map_err(|e| format!("the socket did not open: {e}"))?;
        let join = handshake::join(
            self.id.clone(),
            PeerMetadata {
                storage_id: self.storage_id.clone(),
                is_ephemeral: self.storage_id.is_none(),
                answers_pings: self.pings,
                hears_coming: false,
            },
        );
        ws.send(WsMessage::Binary(join.encode().into()))
            .await
            .map_err(|e| format!("join not sent: {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let frame = tokio::time::timeout_at(deadline.into(), ws.next())
                .await
                .map_err(|_| "no `peer` reply within 10 s".to_owned())?;
            match frame {
                Some(Ok(WsMessage::Binary(bytes))) => {
                    match Message::decode(&bytes, FrameLimit::default())
                        .map_err(|e| format!("the reply to `join` is not a frame: {e}"))?
                    {
                        Message::Peer { sender_id, .. } => {
                            self.server = Some(sender_id);
                            break;
                        }
                        Message::Error { message, .. } => {
                            // Refused at the handshake: the server closes.
                            self.seen.errors.push(message);
                            self.seen.closed = true;
                            return Ok(());
                        }
                        other => return Err(format!("expected `peer`, got {other:?}")),
                    }
                }
                Some(Ok(_)) => {}
                None | Some(Err(_)) => return Err("the socket closed before `peer`".into()),
            }
        }
        let server = self.server.clone().expect("joined");
        for local in self.docs.values_mut() {
            local.sync = DocSync::new(local.sync.document_id());
            local.sync.add_peer(server.clone(), sync::State::new());
        }
        self.ws = Some(ws);
        self.seen.closed = false;
        Ok(())
    }

    /// Opens the socket without joining (for hostile-input tests).
    pub async fn connect_raw(&mut self, server: &impl crate::Server) {
        let (ws, _) = connect_async(self.sync_url(server))
            .await
            .expect("the socket opens");
        self.ws = Some(ws);
        self.server = Some(PeerId::new("unknown"));
    }

    /// Drops the connection, as when a phone goes offline.
    pub async fn disconnect(&mut self) {
        if let Some(mut ws) = self.ws.take() {
            let _ = ws.close(None).await;
        }
    }

    fn add(&mut self, id: DocumentId, doc: RecordDoc) {
        let mut sync = DocSync::new(id);
        if let Some(server) = &self.server {
            sync.add_peer(server.clone(), sync::State::new());
        }
        self.docs.insert(id, Local { doc, sync });
    }

    /// Creates a record locally (offline is fine).
    pub fn create(&mut self, kind: Kind, fields: serde_json::Value) -> DocumentId {
        let id = DocumentId::random();
        self.create_at(id, kind, fields);
        id
    }

    /// Creates a record locally under an id chosen by the caller (one
    /// another phone chose: for hostile tests).
    pub fn create_at(&mut self, id: DocumentId, kind: Kind, fields: serde_json::Value) {
        let doc = RecordDoc::create(kind, &fields, &Commit::new(format!("New {kind}"), now()))
            .expect("a valid record");
        self.add(id, doc);
    }

    /// Starts following a record the peer does not have yet.
    pub fn open(&mut self, id: DocumentId) {
        if !self.docs.contains_key(&id) {
            self.add(id, RecordDoc::from_automerge(new_document()));
        }
    }

    /// Opens a record and syncs until the server has sent it, or panics
    /// after `limit`.
    pub async fn fetch(&mut self, id: DocumentId, limit: Duration) {
        self.open(id);
        self.sync_until(limit, |p| p.kind_of(id).is_some()).await;
    }

    pub fn edit(&mut self, id: DocumentId, message: &str, edits: &[Edit]) -> Option<ChangeHash> {
        let local = self.docs.get_mut(&id).expect("an open record");
        local
            .doc
            .edit(&Commit::new(message, now()), edits)
            .expect("a valid edit")
    }

    pub fn record(&self, id: DocumentId) -> Record {
        self.docs[&id].doc.record().expect("a valid record")
    }

    pub fn doc(&self, id: DocumentId) -> &RecordDoc {
        &self.docs[&id].doc
    }

    /// The raw Automerge document, to write what no valid edit would
    /// (for hostile-input tests).
    pub fn doc_mut(&mut self, id: DocumentId) -> &mut automerge::Automerge {
        self.docs
            .get_mut(&id)
            .expect("an open record")
            .doc
            .doc_mut()
    }

    pub fn has_changes(&self, id: DocumentId, heads: &[ChangeHash]) -> bool {
        self.docs.get(&id).is_some_and(|l| {
            heads
                .iter()
                .all(|h| l.doc.doc().get_change_meta_by_hash(h).is_some())
        })
    }

    /// Sends raw bytes as one binary frame (for hostile-input tests).
    pub async fn send_raw(&mut self, frame: WsMessage) {
        self.ws
            .as_mut()
            .expect("connected")
            .send(frame)
            .await
            .expect("sent");
    }

    /// Syncs until nothing is said for `quiet`, or `limit` passes.
    /// Returns whether it went quiet (false: the limit ended it).
    pub async fn sync(&mut self, quiet: Duration, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            self.send_pending().await;
            let Some(ws) = self.ws.as_mut() else {
                return true;
            };
            let wait = quiet.min(deadline.saturating_duration_since(Instant::now()));
            match tokio::time::timeout(wait, ws.next()).await {
                Err(_) => return Instant::now() < deadline,
                Ok(None) | Ok(Some(Err(_))) => {
                    self.seen.closed = true;
                    self.ws = None;
                    return true;
                }
                Ok(Some(Ok(WsMessage::Binary(bytes)))) => self.on_frame(&bytes),
                Ok(Some(Ok(WsMessage::Close(_)))) => {
                    self.seen.closed = true;
                    self.ws = None;
                    return true;
                }
                Ok(Some(Ok(_))) => {}
            }
            if Instant::now() >= deadline {
                return false;
            }
        }
    }

    /// Syncs until the server has acknowledged holding `heads` of record
    /// `id`, or panics after `limit`.
    pub async fn sync_until_acked(
        &mut self,
        limit: Duration,
        id: DocumentId,
        heads: &[ChangeHash],
    ) {
        self.sync_until(limit, |p| p.acked.get(&id).is_some_and(|h| h == heads))
            .await;
    }

    /// Syncs until `done` holds, or panics after `limit`.
    pub async fn sync_until(&mut self, limit: Duration, mut done: impl FnMut(&TestPeer) -> bool) {
        let deadline = Instant::now() + limit;
        while !done(self) {
            assert!(
                Instant::now() < deadline,
                "peer {} did not get there in {limit:?}: closed {}, {} of {} records \
                 read, {} unavailable, errors {:?}",
                self.id,
                self.seen.closed,
                self.docs
                    .values()
                    .filter(|l| l.doc.kind().is_some())
                    .count(),
                self.docs.len(),
                self.seen.unavailable.len(),
                self.seen.errors.iter().take(5).collect::<Vec<_>>()
            );
            self.sync(Duration::from_millis(50), Duration::from_millis(500))
                .await;
        }
    }

    /// Syncs until `done` holds (panics after `limit`), then until nothing
    /// is said for `quiet`: what was expected came, then whatever more
    /// there was, which the caller can count. A quiet spell alone would end
    /// early on a busy machine.
    pub async fn settle(
        &mut self,
        limit: Duration,
        quiet: Duration,
        done: impl FnMut(&TestPeer) -> bool,
    ) {
        self.sync_until(limit, done).await;
        self.sync(quiet, limit).await;
    }

    async fn send_pending(&mut self) {
        let (Some(ws), Some(_)) = (self.ws.as_mut(), &self.server) else {
            return;
        };
        for local in self.docs.values_mut() {
            for msg in local.sync.generate(local.doc.doc(), &self.id) {
                if ws
                    .send(WsMessage::Binary(msg.encode().into()))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    }

    fn on_frame(&mut self, bytes: &[u8]) {
        if let Err(e) = self.try_frame(bytes) {
            assert!(!self.strict, "peer {}: {e}", self.id);
            // As the browser client does: drop the socket, and resync from
            // a fresh state on the next connection.
            self.seen.garbled += 1;
            self.ws = None;
            self.seen.closed = true;
        }
    }

    fn try_frame(&mut self, bytes: &[u8]) -> Result<(), String> {
        let msg = Message::decode(bytes, FrameLimit::default())
            .map_err(|e| format!("the server sent a frame that does not decode: {e}"))?;
        // The server knows peers by device and peer id; its sync frames
        // name the id this peer joined with. (An `error` answers whoever a
        // frame claimed to be, which a test may send raw.)
        if let Message::Sync { target_id, .. }
        | Message::Request { target_id, .. }
        | Message::DocUnavailable { target_id, .. } = &msg
            && target_id != &self.id
        {
            return Err(format!(
                "the server addressed a frame to `{target_id}`, not to this peer"
            ));
        }
        match msg {
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
            } => {
                if let Ok(m) = sync::Message::decode(&data) {
                    self.acked.insert(document_id, m.heads.clone());
                }
                let local = self.docs.entry(document_id).or_insert_with(|| {
                    let mut sync = DocSync::new(document_id);
                    sync.add_peer(sender_id.clone(), sync::State::new());
                    Local {
                        doc: RecordDoc::from_automerge(new_document()),
                        sync,
                    }
                });
                local
                    .sync
                    .receive(local.doc.doc_mut(), &sender_id, &data)
                    .map_err(|e| format!("the server's sync message does not apply: {e}"))?;
            }
            Message::DocUnavailable { document_id, .. } => {
                self.seen.unavailable.insert(document_id);
            }
            Message::Error {
                message, refusal, ..
            } => {
                self.seen.errors.push(message);
                self.seen.refusals.extend(refusal);
            }
            Message::Ping { .. } => self.seen.pings += 1,
            Message::Ephemeral { document_id, .. } => {
                *self.seen.ephemeral.entry(document_id).or_default() += 1;
            }
            _ => {}
        }
        Ok(())
    }

    /// Every change the server has acknowledged for `id` (its announced
    /// heads and their ancestors), as far as this peer holds them.
    pub fn acknowledged(&self, id: DocumentId) -> Vec<ChangeHash> {
        let (Some(heads), Some(local)) = (self.acked.get(&id), self.docs.get(&id)) else {
            return Vec::new();
        };
        let doc = local.doc.doc();
        let mut out = Vec::new();
        let mut stack: Vec<ChangeHash> = heads.clone();
        let mut seen = HashSet::new();
        while let Some(h) = stack.pop() {
            if !seen.insert(h) {
                continue;
            }
            if let Some(meta) = doc.get_change_meta_by_hash(&h) {
                stack.extend(meta.deps.iter().copied());
                out.push(h);
            }
        }
        out
    }

    /// How many of this peer's changes to `id` the server has not yet
    /// announced as its own.
    pub fn unacknowledged(&self, id: DocumentId) -> usize {
        let Some(local) = self.docs.get(&id) else {
            return 0;
        };
        let doc = local.doc.doc();
        let acked: Vec<ChangeHash> = self
            .acked
            .get(&id)
            .into_iter()
            .flatten()
            .filter(|h| doc.get_change_meta_by_hash(h).is_some())
            .copied()
            .collect();
        doc.get_changes_meta(&acked).len()
    }

    /// Whether, for some record, the server has not announced all of this
    /// peer's changes, or announced changes this peer lacks.
    pub fn out_of_step(&self) -> bool {
        self.docs.keys().any(|id| {
            self.unacknowledged(*id) > 0
                || self
                    .acked
                    .get(id)
                    .is_some_and(|heads| !self.has_changes(*id, heads))
        })
    }

    pub fn is_connected(&self) -> bool {
        self.ws.is_some()
    }

    /// Whether a record this peer opened has not arrived yet.
    pub fn awaits_a_record(&self) -> bool {
        self.docs.values().any(|l| l.doc.kind().is_none())
    }

    pub fn kind_of(&self, id: DocumentId) -> Option<Kind> {
        self.docs.get(&id).and_then(|l| l.doc.kind())
    }

    pub fn heads(&self, id: DocumentId) -> Vec<ChangeHash> {
        self.docs[&id].doc.doc().get_heads()
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}
