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
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async_with_config};
use twinsync_shared::protocol::{
    FrameLimit, Message, PeerMetadata, Trim, handshake, receive_applied, receive_loading_saved,
};
use twinsync_shared::record::apply_received;
use twinsync_shared::{DocumentId, PeerId};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A connected peer and its documents.
pub struct Peer {
    pub id: PeerId,
    server: PeerId,
    /// Where frames to the server go: the socket itself, or once
    /// [`Peer::read_on`] handed the socket to a task of its own, that task.
    out: Out,
    /// `None` once [`Peer::read_on`] handed it to a reading task.
    stream: Option<SplitStream<Ws>>,
    pub docs: HashMap<DocumentId, (Automerge, State)>,
    /// The heads the server last announced, per document: what it has.
    pub acked: HashMap<DocumentId, Vec<ChangeHash>>,
    dirty: HashSet<DocumentId>,
}

/// The way out of a [`Peer`].
enum Out {
    Socket(SplitSink<Ws, WsMessage>),
    /// To the task that owns the socket.
    Task(mpsc::UnboundedSender<Vec<u8>>),
}

impl Out {
    async fn send(&mut self, frame: Vec<u8>) -> Result<()> {
        match self {
            Self::Socket(sink) => sink.send(WsMessage::Binary(frame.into())).await?,
            Self::Task(tx) => tx
                .send(frame)
                .map_err(|_| anyhow!("the socket's task has ended"))?,
        }
        Ok(())
    }
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer").field("id", &self.id).finish()
    }
}

impl Peer {
    /// Connects to `url` (with its token, if any) and joins.
    pub async fn connect(url: &str, id: &str, docs: Vec<(DocumentId, Automerge)>) -> Result<Self> {
        // No Nagle delay, as browsers open their WebSockets. A server that
        // takes the connection and never answers the upgrade counts as lost.
        let (ws, _) = tokio::time::timeout(JOIN_WAIT, connect_async_with_config(url, None, true))
            .await
            .map_err(|_| {
                Lost(format!(
                    "peer {id}: no answer to the upgrade in {JOIN_WAIT:?}"
                ))
            })?
            .with_context(|| format!("cannot open {url}"))?;
        let (mut sink, mut stream) = ws.split();
        let id = PeerId::new(id);
        let join = handshake::join(
            id.clone(),
            PeerMetadata {
                storage_id: None,
                is_ephemeral: false,
                answers_pings: false,
                hears_coming: false,
            },
        );
        sink.send(WsMessage::Binary(join.encode().into())).await?;
        let server = loop {
            let frame = tokio::time::timeout(JOIN_WAIT, stream.next())
                .await
                .map_err(|_| Lost(format!("peer {id}: no `peer` answer in {JOIN_WAIT:?}")))?
                .ok_or_else(|| Lost(format!("peer {id}: the server closed the socket")))??;
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
            out: Out::Socket(sink),
            stream: Some(stream),
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
                self.out.send(msg.encode()).await?;
            }
        }
        Ok(())
    }

    /// Waits up to `wait` for one frame and applies it; returns the
    /// document it was for, if any.
    pub async fn receive(&mut self, wait: Duration) -> Result<Option<DocumentId>> {
        let stream = self
            .stream
            .as_mut()
            .context("this peer's frames are read by another task")?;
        let frame = match tokio::time::timeout(wait, stream.next()).await {
            Err(_) => return Ok(None),
            Ok(None) => {
                return Err(Lost(format!("peer {}: the server closed the socket", self.id)).into());
            }
            Ok(Some(frame)) => frame?,
        };
        let WsMessage::Binary(bytes) = frame else {
            return Ok(None);
        };
        match decode(&bytes)? {
            Message::Sync {
                document_id, data, ..
            }
            | Message::Request {
                document_id, data, ..
            } => {
                let Some((doc, state)) = self.docs.get_mut(&document_id) else {
                    return Ok(None);
                };
                let m = automerge::sync::Message::decode(&data)?;
                self.acked.insert(document_id, sorted(m.heads.clone()));
                // A saved document is loaded, not taken apart into changes.
                receive_loading_saved(doc, state, m, &mut Trim::every_message())?;
                self.dirty.insert(document_id);
                Ok(Some(document_id))
            }
            Message::Error { message, .. } => bail!("peer {}: server error: {message}", self.id),
            Message::DocUnavailable { document_id, .. } => {
                bail!("peer {}: the server does not have {document_id}", self.id)
            }
            _ => Ok(None),
        }
    }

    /// Hands the socket to a task on `net`, which reads each frame as it
    /// arrives, shows it to `note` with its time of arrival, and passes
    /// both on; it also sends what the peer sends from then on. A replica
    /// busy applying then does not delay what it receives, as on a device
    /// of its own, nor whether a frame is seen to arrive before the run
    /// ends. One task owns both directions: with the socket split between
    /// a reading task and a replica sending, a replica's send now and then
    /// stalled until the run's end, most likely a wake-up lost between the
    /// two halves (S2 counted its edit as lost, though the server relayed
    /// it at once when it came).
    pub fn read_on(
        &mut self,
        net: &tokio::runtime::Handle,
        mut note: impl FnMut(Instant, &[u8]) + Send + 'static,
    ) -> Result<mpsc::UnboundedReceiver<Arrival>> {
        let stream = self.stream.take().context("the frames are read already")?;
        let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Vec<u8>>();
        let Out::Socket(sink) = std::mem::replace(&mut self.out, Out::Task(out_tx)) else {
            bail!("the socket has a task already");
        };
        let mut ws = stream
            .reunite(sink)
            .map_err(|_| anyhow!("the socket's halves do not match"))?;
        let (tx, rx) = mpsc::unbounded_channel();
        let id = self.id.clone();
        net.spawn(async move {
            loop {
                let frame = tokio::select! {
                    frame = ws.next() => frame,
                    out = out_rx.recv() => {
                        let Some(out) = out else { break };
                        if let Err(e) = ws.send(WsMessage::Binary(out.into())).await {
                            let _ = tx.send(Arrival { at: Instant::now(), frame: Err(format!("peer {id}: {e}")) });
                            break;
                        }
                        continue;
                    }
                };
                let Some(frame) = frame else { break };
                let at = Instant::now();
                let frame = match frame {
                    Ok(WsMessage::Binary(bytes)) => Ok(bytes.to_vec()),
                    Ok(_) => continue,
                    Err(e) => Err(format!("peer {id}: {e}")),
                };
                if let Ok(bytes) = &frame {
                    note(at, bytes);
                }
                let failed = frame.is_err();
                if tx.send(Arrival { at, frame }).is_err() || failed {
                    break;
                }
            }
        });
        Ok(rx)
    }

    /// Applies `frames`, received together: the changes of all their sync
    /// messages for a document in one pass over it, as Automerge 0.12
    /// walks a whole text for every apply however few its changes (a whole
    /// saved record loaded, not taken apart: `apply_received`), then each
    /// message's sync bookkeeping in order (its changes, now present, are
    /// skipped, its saved records not read again). Returns, per document,
    /// the changes that were new.
    pub fn receive_all(
        &mut self,
        frames: &[Vec<u8>],
    ) -> Result<Vec<(DocumentId, Vec<ChangeHash>)>> {
        let mut by_doc: Vec<(DocumentId, Vec<automerge::sync::Message>)> = Vec::new();
        for bytes in frames {
            match decode(bytes)? {
                Message::Sync {
                    document_id, data, ..
                }
                | Message::Request {
                    document_id, data, ..
                } => {
                    let m = automerge::sync::Message::decode(&data)?;
                    match by_doc.iter_mut().find(|(id, _)| *id == document_id) {
                        Some((_, ms)) => ms.push(m),
                        None => by_doc.push((document_id, vec![m])),
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
        let mut out = Vec::new();
        for (document_id, messages) in by_doc {
            let Some((doc, state)) = self.docs.get_mut(&document_id) else {
                continue;
            };
            let before = doc.get_heads();
            let mut all = Vec::new();
            for m in &messages {
                for chunk in m.changes.iter() {
                    all.extend_from_slice(chunk);
                }
            }
            let applied = !all.is_empty() && !before.is_empty();
            if applied {
                apply_received(doc, &all)?;
            }
            for m in messages {
                self.acked.insert(document_id, sorted(m.heads.clone()));
                if applied {
                    // Trimmed as Automerge trims: the load generator's
                    // replicas stand for the official client.
                    receive_applied(doc, state, m, &mut Trim::every_message())?;
                } else {
                    doc.receive_sync_message(state, m)?;
                }
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
                            (a.len(), a.iter().filter(|h| !want.contains(h)).count())
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
            if self.receive(Duration::from_millis(500)).await?.is_some() {
                heard = Instant::now();
                take_turns().await;
            }
        }
    }
}

/// How long a peer waits for the server's answer to its upgrade, then to
/// its `join`. The
/// official client waits without a limit; the official server, busy
/// loading the records 500 peers asked for at once (S3), took over 30 s to
/// answer some.
const JOIN_WAIT: Duration = Duration::from_secs(120);

/// Silence, while behind, after which a peer starts a fresh exchange.
/// The official client has no such timer; the bench keeps one so that a
/// lost exchange cannot hang a run. It was 3 s, shorter than a server's
/// queueing delay in S1's storm: peers gave up on answers already on their
/// way (2,871 times in one S1 run on our server) and the fresh exchanges
/// added work for whichever server was measured.
pub const STALL: Duration = Duration::from_secs(10);

impl Peer {
    /// Syncs until the server has announced every document's heads.
    /// After [`STALL`] without a message while some are not yet taken, it
    /// starts a fresh exchange for those, as [`Peer::sync_until`] does;
    /// returns how many times it had to.
    pub async fn push_all(&mut self, limit: Duration) -> Result<usize> {
        let deadline = Instant::now() + limit;
        let mut heard = Instant::now();
        let mut resyncs = 0;
        loop {
            self.flush().await?;
            fn taken(
                acked: &HashMap<DocumentId, Vec<ChangeHash>>,
                id: &DocumentId,
                doc: &Automerge,
            ) -> bool {
                acked.get(id).is_some_and(|h| *h == sorted(doc.get_heads()))
            }
            if self
                .docs
                .iter()
                .all(|(id, (doc, _))| taken(&self.acked, id, doc))
            {
                return Ok(resyncs);
            }
            if heard.elapsed() >= STALL {
                for (id, (doc, state)) in &mut self.docs {
                    if !taken(&self.acked, id, doc) {
                        *state = State::new();
                        self.dirty.insert(*id);
                        resyncs += 1;
                    }
                }
                heard = Instant::now();
                continue;
            }
            if Instant::now() >= deadline {
                bail!(
                    "the server did not take peer {}'s documents within {limit:?}",
                    self.id
                );
            }
            if self.receive(Duration::from_millis(200)).await?.is_some() {
                heard = Instant::now();
                take_turns().await;
            }
        }
    }
}

/// The server closed a peer's socket or left its `join` unanswered: what
/// happened, to whom.
#[derive(Debug)]
pub struct Lost(pub String);

impl std::fmt::Display for Lost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Lost {}

/// Whether `e` says the connection was lost (closed by the server, reset,
/// or failed), which a client meets by connecting again, rather than
/// anything the server said.
pub fn connection_lost(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<Lost>().is_some()
            || c.downcast_ref::<tokio_tungstenite::tungstenite::Error>()
                .is_some()
    })
}

/// The documents `peer` holds, to take to its next connection as a client
/// keeps its copies.
pub fn holdings(peer: &Peer) -> Vec<(DocumentId, Automerge)> {
    peer.docs
        .iter()
        .map(|(id, (doc, _))| (*id, doc.clone()))
        .collect()
}

/// A frame as a reading task passed it on.
#[derive(Debug)]
pub struct Arrival {
    pub at: Instant,
    /// The frame, or why the socket failed.
    pub frame: Result<Vec<u8>, String>,
}

/// The changes a frame carries, by hash, as far as its sync message holds
/// change chunks (a whole saved document, sent to a peer far behind, is not
/// looked into). A version 2 message joins its changes in one chunk list
/// entry.
pub fn carried(frame: &[u8]) -> Vec<ChangeHash> {
    let Ok(Message::Sync { data, .. } | Message::Request { data, .. }) = decode(frame) else {
        return Vec::new();
    };
    let Ok(m) = automerge::sync::Message::decode(&data) else {
        return Vec::new();
    };
    m.changes
        .iter()
        .flat_map(twinsync_shared::record::chunks)
        .filter_map(|(_, chunk)| automerge::Change::from_bytes(chunk?.to_vec()).ok())
        .map(|c| c.hash())
        .collect()
}

fn decode(bytes: &[u8]) -> Result<Message> {
    Ok(Message::decode(bytes, FrameLimit(256 * 1024 * 1024))?)
}

/// Heads in a stable order, to compare.
pub fn sorted(mut heads: Vec<ChangeHash>) -> Vec<ChangeHash> {
    heads.sort();
    heads
}

/// Lets the other peers run after a message was applied. With frames
/// waiting, a socket is ready at once, and tokio's budget lets a task take
/// many before it yields: in S1 a peer applied messages for up to 14 s
/// while the others, their answers to pings included, waited, and the
/// server dropped one for 20 s of silence. Each simulated device has a
/// processor of its own; here they take turns, one message each.
pub async fn take_turns() {
    tokio::task::yield_now().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_connection_is_told_from_what_the_server_said() {
        let closed = anyhow::Error::from(Lost("peer p: the server closed the socket".into()))
            .context("reader-1");
        assert!(connection_lost(&closed));
        let reset = anyhow::Error::from(tokio_tungstenite::tungstenite::Error::Io(
            std::io::Error::from(std::io::ErrorKind::ConnectionReset),
        ))
        .context("seeder-12");
        assert!(connection_lost(&reset));
        let refused = anyhow!("peer p: server error: this device was revoked");
        assert!(!connection_lost(&refused));
        let slow = anyhow!("peer p did not converge within 600s");
        assert!(!connection_lost(&slow));
    }
}
