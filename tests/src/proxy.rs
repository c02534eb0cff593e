//! A WebSocket fault proxy on loopback: it sits between peers and the
//! server and, at random from a fixed seed, drops, delays, duplicates and
//! truncates messages, and cuts connections.
//!
//! It works on whole WebSocket messages rather than TCP bytes, so each
//! fault reaches the protocol layer as itself: a duplicated `sync`, a
//! truncated frame, a message that never arrives. A cut closes both sides.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::{accept_hdr_async, connect_async};

/// How often each fault strikes, per message (a probability in 0..1).
#[derive(Debug, Clone, Copy)]
pub struct Faults {
    pub drop: f64,
    pub duplicate: f64,
    pub truncate: f64,
    pub cut: f64,
    pub delay: f64,
    /// The longest delay.
    pub max_delay: Duration,
}

impl Faults {
    /// A bad network: a few percent of messages hit.
    pub fn rough() -> Self {
        Self {
            drop: 0.01,
            duplicate: 0.02,
            truncate: 0.005,
            cut: 0.005,
            delay: 0.05,
            max_delay: Duration::from_millis(200),
        }
    }
}

/// What the proxy did, counted.
#[derive(Debug, Default)]
pub struct Stats {
    pub connections: AtomicU64,
    pub forwarded: AtomicU64,
    pub dropped: AtomicU64,
    pub duplicated: AtomicU64,
    pub truncated: AtomicU64,
    pub cut: AtomicU64,
    pub delayed: AtomicU64,
}

impl Stats {
    pub fn line(&self) -> String {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        format!(
            "{} connections, {} messages forwarded, {} dropped, {} duplicated, {} truncated, {} delayed, {} connections cut",
            get(&self.connections),
            get(&self.forwarded),
            get(&self.dropped),
            get(&self.duplicated),
            get(&self.truncated),
            get(&self.delayed),
            get(&self.cut)
        )
    }

    pub fn faults(&self) -> u64 {
        [
            &self.dropped,
            &self.duplicated,
            &self.truncated,
            &self.cut,
            &self.delayed,
        ]
        .iter()
        .map(|a| a.load(Ordering::Relaxed))
        .sum()
    }
}

pub struct FaultProxy {
    pub addr: SocketAddr,
    pub stats: Arc<Stats>,
    calm: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards each WebSocket, with
    /// its path and query, to `upstream`.
    pub async fn start(upstream: SocketAddr, faults: Faults, seed: u64) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("an address");
        let stats = Arc::new(Stats::default());
        let calm = Arc::new(AtomicBool::new(false));
        let (s, c) = (Arc::clone(&stats), Arc::clone(&calm));
        let task = tokio::spawn(async move {
            let mut n = 0u64;
            while let Ok((socket, _)) = listener.accept().await {
                n += 1;
                let _ = socket.set_nodelay(true);
                // One generator per connection, from the seed and the
                // connection's number.
                let rng = StdRng::seed_from_u64(seed.wrapping_mul(1_000_003).wrapping_add(n));
                tokio::spawn(relay(
                    socket,
                    upstream,
                    faults,
                    rng,
                    Arc::clone(&s),
                    Arc::clone(&c),
                ));
            }
        });
        Self {
            addr,
            stats,
            calm,
            task,
        }
    }

    /// Stops injecting faults: from now on every message passes unchanged.
    pub fn calm(&self) {
        self.calm.store(true, Ordering::Relaxed);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

enum Fate {
    Pass,
    Drop,
    Duplicate,
    Truncate,
    Cut,
    Delay(Duration),
}

fn fate(rng: &mut StdRng, f: &Faults) -> Fate {
    let roll: f64 = rng.random();
    let mut edge = f.drop;
    if roll < edge {
        return Fate::Drop;
    }
    edge += f.duplicate;
    if roll < edge {
        return Fate::Duplicate;
    }
    edge += f.truncate;
    if roll < edge {
        return Fate::Truncate;
    }
    edge += f.cut;
    if roll < edge {
        return Fate::Cut;
    }
    edge += f.delay;
    if roll < edge {
        let ms = rng.random_range(1..=f.max_delay.as_millis().max(1) as u64);
        return Fate::Delay(Duration::from_millis(ms));
    }
    Fate::Pass
}

async fn relay(
    socket: TcpStream,
    upstream: SocketAddr,
    faults: Faults,
    rng: StdRng,
    stats: Arc<Stats>,
    calm: Arc<AtomicBool>,
) {
    let mut uri = String::new();
    // The error type is tungstenite's HTTP response, as its API requires.
    #[allow(clippy::result_large_err)]
    let callback = |req: &Request, res: Response| {
        uri = req.uri().to_string();
        Ok(res)
    };
    let Ok(client) = accept_hdr_async(socket, callback).await else {
        return;
    };
    let Ok((server, _)) = connect_async(format!("ws://{upstream}{uri}")).await else {
        return;
    };
    stats.connections.fetch_add(1, Ordering::Relaxed);
    let (client_tx, client_rx) = client.split();
    let (server_tx, server_rx) = server.split();
    let rng = Arc::new(Mutex::new(rng));
    let up = pump(
        client_rx,
        server_tx,
        faults,
        Arc::clone(&rng),
        Arc::clone(&stats),
        Arc::clone(&calm),
    );
    let down = pump(server_rx, client_tx, faults, rng, stats, calm);
    // Whichever side ends (or is cut) ends the connection: dropping the
    // other pump drops both halves of both sockets.
    tokio::select! {
        () = up => {}
        () = down => {}
    }
}

async fn pump<R, W>(
    mut from: R,
    mut to: W,
    faults: Faults,
    rng: Arc<Mutex<StdRng>>,
    stats: Arc<Stats>,
    calm: Arc<AtomicBool>,
) where
    R: futures_util::Stream<Item = Result<WsMessage, tokio_tungstenite::tungstenite::Error>>
        + Unpin,
    W: futures_util::Sink<WsMessage> + Unpin,
{
    while let Some(Ok(msg)) = from.next().await {
        if !matches!(msg, WsMessage::Binary(_) | WsMessage::Text(_)) {
            // Pings, pongs and closes pass untouched.
            if to.send(msg).await.is_err() {
                return;
            }
            continue;
        }
        let fate = if calm.load(Ordering::Relaxed) {
            Fate::Pass
        } else {
            fate(&mut *rng.lock().await, &faults)
        };
        let out = match fate {
            Fate::Pass => vec![msg],
            Fate::Drop => {
                stats.dropped.fetch_add(1, Ordering::Relaxed);
                Vec::new()
            }
            Fate::Duplicate => {
                stats.duplicated.fetch_add(1, Ordering::Relaxed);
                vec![msg.clone(), msg]
            }
            Fate::Truncate => {
                stats.truncated.fetch_add(1, Ordering::Relaxed);
                let bytes = msg.into_data();
                let keep = bytes.len() / 2;
                vec![WsMessage::Binary(bytes.slice(..keep))]
            }
            Fate::Cut => {
                stats.cut.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Fate::Delay(d) => {
                stats.delayed.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(d).await;
                vec![msg]
            }
        };
        for m in out {
            stats.forwarded.fetch_add(1, Ordering::Relaxed);
            if to.send(m).await.is_err() {
                return;
            }
        }
    }
}
