//! One simulated peer: a WebSocket speaking protocol v1, holding its own
//! copies of some records. It syncs with Automerge's own sync protocol, as
//! the official JavaScript client does, so both servers meet the same
//! client behaviour.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use automerge::sync::{State, SyncDoc};
use automerge::{Automerge, ChangeHash, ReadDoc};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async_with_config};
use twinsync_shared::protocol::{FrameLimit, Message, PeerMetadata, handshake};
use twinsync_shared::{DocumentId, PeerId};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A connected peer and its documents.
pub struct Peer {
    pub id: PeerId,
    server: PeerId,
    sink: SplitSink<Ws, WsMessage>,
    stream: SplitStream<Ws>,
    pub docs: HashMap<DocumentId, (Automerge, State)>,
    /// The heads the server last announced, per document: what it has.
    pub acked: HashMap<DocumentId, Vec<ChangeHash>>,
    dirty: HashSet<DocumentId>,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer").field("id", &self.id).finish()
    }
}

impl Peer {
    /// Connects to `url` (with its token, if any) and joins.
    pub async fn connect(url: &str, id: &str, docs: Vec<(DocumentId, Automerge)>) -> Result<Self> {
        // No Nagle delay, as browsers open their WebSockets.
        let (ws, _) = connect_async_with_config(url, None, true)
            .await
            .with_context(|| format!("cannot open {url}"))?;
        let (mut sink, mut stream) = ws.split();
        let id = PeerId::new(id);
        let join = handshake::join(
            id.clone(),
            PeerMetadata {
                storage_id: None,
                is_ephemeral: false,
            },
        );
        sink.send(WsMessage::Binary(join.encode().into())).await?;
        let server = loop {
            let frame = tokio::time::timeout(Duration::from_secs(30), stream.next())
                .await
                .map_err(|_| anyhow!("no `peer` answer in 30 s"))?
                .ok_or_else(|| anyhow!("the server closed the socket"))??;
            if let WsMessage::Binary(bytes) = frame {
                match Message::decode(&bytes, FrameLimit::default())? {
                    Message::Peer { sender_id, .. } => break sender_id,
                    other => bail!("expected `peer`, got {}", other.type_name()),
                }
            }
        };
        let mut peer = Self {
            id,
            server,
            sink,
            stream,
            docs: HashMap::new(),
            acked: HashMap::new(),
            dirty: HashSet::new(),
        };
        for (doc_id, doc) in docs {
            peer.add(doc_id, doc);
        }
        Ok(peer)
    }

    pub fn add(&mut self, id: DocumentId, doc: Automerge) {
        self.docs.insert(id, (doc, State::new()));
        self.dirty.insert(id);
    }

    pub fn touch(&mut self, id: DocumentId) {
        self.dirty.insert(id);
    }

    /// Sends what the engine has for every document that changed.
    pub async fn flush(&mut self) -> Result<()> {
        for id in std::mem::take(&mut self.dirty) {
            let Some((doc, state)) = self.docs.get_mut(&id) else {
                continue;
            };
            if let Some(m) = doc.generate_sync_message(state) {
                let (sender_id, target_id, document_id, data) =
                    (self.id.clone(), self.server.clone(), id, m.encode());
                // A peer without the document asks for it.
                let msg = if doc.get_heads().is_empty() {
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
                };
                self.sink
                    .send(WsMessage::Binary(msg.encode().into()))
                    .await?;
            }
        }
        Ok(())
    }

    /// Waits up to `wait` for a frame, takes every other frame already
    /// waiting on the socket, and applies them; returns, for each document
    /// a `sync` or `request` arrived for, the changes that were new (empty
    /// when it brought none). An empty list means nothing arrived.
    ///
    /// A peer that fell behind applies what queued up in one pass, as one
    /// sync message, instead of one change at a time: applying a change
    /// costs Automerge a pass over the object it edits, so one by one each
    /// of S2's 50 replicas would pay that pass for every edit, and the
    /// load generator (which shares the cores with the server it measures)
    /// would fall further behind the more it lags.
    pub async fn receive(&mut self, wait: Duration) -> Result<Vec<(DocumentId, Vec<ChangeHash>)>> {
        let first = match tokio::time::timeout(wait, self.stream.next()).await {
            Err(_) => return Ok(Vec::new()),
            Ok(None) => bail!("peer {}: the server closed the socket", self.id),
            Ok(Some(frame)) => frame?,
        };
        let mut frames = vec![first];
        while frames.len() < MAX_BATCH {
            match self.stream.next().now_or_never() {
                Some(Some(frame)) => frames.push(frame?),
                Some(None) => bail!("peer {}: the server closed the socket", self.id),
                None => break,
            }
        }
        // Each document's sync messages, in the order they came.
        let mut arrived: Vec<(DocumentId, Vec<automerge::sync::Message>)> = Vec::new();
        for frame in frames {
            let WsMessage::Binary(bytes) = frame else {
                continue;
            };
            match Message::decode(&bytes, FrameLimit(256 * 1024 * 1024))? {
                Message::Sync {
                    document_id, data, ..
                }
                | Message::Request {
                    document_id, data, ..
                } => {
                    if !self.docs.contains_key(&document_id) {
                        continue;
                    }
                    let m = automerge::sync::Message::decode(&data)?;
                    match arrived.iter_mut().find(|(id, _)| *id == document_id) {
                        Some((_, ms)) => ms.push(m),
                        None => arrived.push((document_id, vec![m])),
                    }
                }
                Message::Error { message, .. } => {
                    bail!("peer {}: server error: {message}", self.id)
                }
                Message::DocUnavailable { document_id, .. } => {
                    bail!("peer {}: the server does not have {document_id}", self.id)
                }
                _ => {}
            }
        }
        let mut out = Vec::with_capacity(arrived.len());
        for (document_id, messages) in arrived {
            let Some((doc, state)) = self.docs.get_mut(&document_id) else {
                continue;
            };
            let before = doc.get_heads();
            for m in merged(messages) {
                self.acked.insert(document_id, sorted(m.heads.clone()));
                doc.receive_sync_message(state, m)?;
            }
            let new = doc
                .get_changes_meta(&before)
                .iter()
                .map(|c| c.hash)
                .collect();
            self.dirty.insert(document_id);
            out.push((document_id, new));
        }
        Ok(out)
    }

    /// Syncs until every document's heads equal `expected`, here and on
    /// the server, or `limit`.
    /// After [`STALL`] without a message while still behind, it starts a
    /// fresh exchange for the documents that lag, as a client reconnecting
    /// would; returns how many times it had to.
    pub async fn sync_until(
        &mut self,
        expected: &HashMap<DocumentId, Vec<ChangeHash>>,
        limit: Duration,
    ) -> Result<usize> {
        let deadline = Instant::now() + limit;
        let mut heard = Instant::now();
        let mut resyncs = 0;
        loop {
            self.flush().await?;
            // Done when this peer holds every change and the server has
            // said it holds them too: leaving earlier could drop the
            // socket before the server read this peer's last changes.
            if self.docs.iter().all(|(id, (doc, _))| {
                expected.get(id).is_some_and(|want| {
                    sorted(doc.get_heads()) == *want && self.acked.get(id) == Some(want)
                })
            }) {
                return Ok(resyncs);
            }
            if heard.elapsed() >= STALL {
                for (id, (doc, state)) in &mut self.docs {
                    if expected
                        .get(id)
                        .is_none_or(|w| sorted(doc.get_heads()) != *w)
                    {
                        *state = State::new();
                        self.dirty.insert(*id);
                        resyncs += 1;
                    }
                }
                heard = Instant::now();
                continue;
            }
            if Instant::now() >= deadline {
                let behind: Vec<String> = self
                    .docs
                    .iter()
                    .filter(|(id, (doc, _))| {
                        expected.get(id).is_none_or(|w| {
                            sorted(doc.get_heads()) != *w || self.acked.get(id) != Some(w)
                        })
                    })
                    .map(|(id, (doc, _))| {
                        let missing = expected.get(id).map_or(0, |w| {
                            w.iter()
                                .filter(|h| doc.get_change_by_hash(h).is_none())
                                .count()
                        });
                        let announced = self.acked.get(id).map(|a| {
                            let want = expected.get(id).cloned().unwrap_or_default();
                            let unknown = a.iter().filter(|h| !want.contains(h)).count();
                            (a.len(), unknown)
                        });
                        format!(
                            "{id}: {missing} expected heads missing here; the server announced (heads, of which not expected) {announced:?}"
                        )
                    })
                    .collect();
                bail!(
                    "peer {} did not converge within {limit:?}: {}",
                    self.id,
                    behind.join("; ")
                );
            }
            if !self.receive(Duration::from_millis(500)).await?.is_empty() {
                heard = Instant::now();
            }
        }
    }
}

/// Silence, while behind, after which a peer starts a fresh exchange.
/// The official client has no such timer; the bench keeps one so that a
/// lost exchange cannot hang a run. It was 3 s, shorter than a server's
/// queueing delay in S1's storm: peers gave up on answers already on their
/// way (2,871 times in one S1 run on our server) and the fresh exchanges
/// added work for whichever server was measured.
pub const STALL: Duration = Duration::from_secs(10);

impl Peer {
    /// Syncs until the server has announced every document's heads.
    pub async fn push_all(&mut self, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            self.flush().await?;
            let done = self.docs.iter().all(|(id, (doc, _))| {
                self.acked
                    .get(id)
                    .is_some_and(|h| *h == sorted(doc.get_heads()))
            });
            if done {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "the server did not take peer {}'s documents within {limit:?}",
                    self.id
                );
            }
            self.receive(Duration::from_millis(200)).await?;
        }
    }
}

/// The most frames one [`Peer::receive`] takes from the socket.
const MAX_BATCH: usize = 512;

/// Consecutive sync messages from the server, as the fewest messages that
/// say the same: each run ends at a message that asks for a reset, and
/// becomes that run's last message (its heads, needs, filters and flags,
/// the newest) carrying the changes of all of them. Nothing is generated
/// between them, so the reset clears the same sent hashes either way.
fn merged(messages: Vec<automerge::sync::Message>) -> Vec<automerge::sync::Message> {
    let mut out = Vec::new();
    let mut changes: Vec<Vec<u8>> = Vec::new();
    let mut pending = None;
    for mut m in messages {
        changes.extend(m.changes.iter().map(<[u8]>::to_vec));
        let resets = m
            .flags
            .is_some_and(|f| f.contains(automerge::sync::MessageFlags::SYNC_RESET));
        if resets {
            m.changes = std::mem::take(&mut changes).into();
            out.push(m);
            pending = None;
        } else {
            pending = Some(m);
        }
    }
    if let Some(mut m) = pending {
        m.changes = changes.into();
        out.push(m);
    }
    out
}

/// Heads in a stable order, to compare.
pub fn sorted(mut heads: Vec<ChangeHash>) -> Vec<ChangeHash> {
    heads.sort();
    heads
}
