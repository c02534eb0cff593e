//! Devices, their tokens, and who may do what.
//!
//! A token is `<device id>.<secret>`: the id finds the device's row, and
//! the secret (256 random bits) is compared with the stored SHA-256 hash in
//! constant time. The server never stores a secret, only its hash. Invites
//! have the same shape and are redeemed once for a device token.
//!
//! A token stays valid for `token_ttl` after the device was last seen, so a
//! delegate who syncs at least that often is never locked out by being
//! offline. A revoked device still authenticates, but only to hand in what
//! it has not synced: the connection reads nothing and quarantines what it
//! receives.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// What a device may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads and writes everything; manages people and devices.
    Coordinator,
    /// Writes the records of their member cities.
    Delegate,
    /// Reads only.
    Observer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Coordinator => "coordinator",
            Role::Delegate => "delegate",
            Role::Observer => "observer",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "coordinator" => Ok(Role::Coordinator),
            "delegate" => Ok(Role::Delegate),
            "observer" => Ok(Role::Observer),
            other => Err(format!(
                "unknown role `{other}` (coordinator, delegate or observer)"
            )),
        }
    }
}

/// A provisioned device, as stored (never with its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Device {
    pub id: String,
    pub name: String,
    pub role: Role,
    /// Document ids of the member cities a delegate belongs to.
    pub cities: Vec<String>,
    /// The device's person record, if any: meetings they attend and
    /// reports they wrote are theirs to edit.
    pub person: Option<String>,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub revoked_at: Option<i64>,
    /// How many times the role, cities or person changed: a socket signed
    /// in under fewer changes holds rights the device no longer has.
    pub rights: i64,
    /// When the role, cities or person last changed.
    pub changed_at: Option<i64>,
}

impl Device {
    pub fn is_revoked(&self) -> bool {
        self.revoked_at.is_some()
    }

    pub fn is_coordinator(&self) -> bool {
        self.role == Role::Coordinator && !self.is_revoked()
    }

    /// When the token stops working unless the device is seen again.
    pub fn expires_at(&self, ttl: Duration) -> i64 {
        self.last_seen_at
            .saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX))
    }
}

/// What to provision.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct NewDevice {
    pub name: String,
    pub role: Role,
    #[serde(default)]
    pub cities: Vec<String>,
    #[serde(default)]
    pub person: Option<String>,
}

/// Why a token was not accepted. The messages are what the client sees.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error(
        "a device token is required: `Authorization: Bearer TOKEN` (on /sync, also the `token` query parameter or the `twinsync-token.TOKEN` WebSocket subprotocol; no other route reads a token in its URL)"
    )]
    Missing,
    #[error("the device token is not valid")]
    Invalid,
    #[error(
        "the device token expired: the device was not seen for longer than the server allows; ask a coordinator for a new invite"
    )]
    Expired,
}

/// A secret: its public id and the random part only its holder knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Secret {
    pub id: String,
    pub secret: String,
}

impl Secret {
    /// A fresh id (80 bits) and secret (256 bits) from the OS's generator.
    pub fn generate() -> Self {
        let mut id = [0u8; 10];
        let mut secret = [0u8; 32];
        getrandom::fill(&mut id).expect("the OS random generator works");
        getrandom::fill(&mut secret).expect("the OS random generator works");
        Self {
            id: bs58::encode(id).into_string(),
            secret: bs58::encode(secret).into_string(),
        }
    }

    /// Splits `id.secret`; anything else is `None`.
    pub fn parse(token: &str) -> Option<Self> {
        let (id, secret) = token.trim().split_once('.')?;
        let ok = |s: &str| {
            !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric())
        };
        (ok(id) && ok(secret)).then(|| Self {
            id: id.to_owned(),
            secret: secret.to_owned(),
        })
    }

    pub fn token(&self) -> String {
        format!("{}.{}", self.id, self.secret)
    }

    pub fn hash(&self) -> Vec<u8> {
        Sha256::digest(self.secret.as_bytes()).to_vec()
    }

    /// Whether this secret hashes to `stored`, in constant time.
    pub fn matches(&self, stored: &[u8]) -> bool {
        bool::from(self.hash().as_slice().ct_eq(stored))
    }
}

/// Counts events per key in fixed one-minute windows: failed sign-ins per
/// address, redemptions per address, documents, bytes and Automerge
/// operations per device.
/// Memory is bounded: past `max_keys`, windows that ended are dropped, and
/// if none ended the oldest is.
/// A wait in whole seconds, rounded up and at least one: a device told to
/// come back sooner than its window ends is turned away again.
pub fn whole_seconds(wait: Duration) -> u64 {
    u64::try_from(wait.as_millis().div_ceil(1000))
        .unwrap_or(u64::MAX)
        .max(1)
}

/// What [`Windows::add_refundable`] counted, and in which window.
#[derive(Debug, Clone, Copy)]
pub struct Counted {
    start: Instant,
    n: u64,
}

#[derive(Debug)]
pub struct Windows<K> {
    window: Duration,
    max_keys: usize,
    counts: Mutex<HashMap<K, (Instant, u64)>>,
}

impl<K: std::hash::Hash + Eq + Clone> Windows<K> {
    pub fn new(window: Duration, max_keys: usize) -> Self {
        Self {
            window,
            max_keys: max_keys.max(1),
            counts: Mutex::new(HashMap::new()),
        }
    }

    /// Adds `n` to `key`'s window and returns the window's total, or the
    /// time until the window ends when the total would pass `limit` (the
    /// count is then left as it was).
    pub fn add(&self, key: &K, n: u64, limit: u64) -> Result<u64, Duration> {
        self.bump(key, n, limit, false).map(|(total, _)| total)
    }

    /// Adds as [`Windows::add`] does, and returns the window counted in:
    /// what [`Windows::refund`] takes to give it back.
    pub fn add_refundable(&self, key: &K, n: u64, limit: u64) -> Result<Counted, Duration> {
        self.bump(key, n, limit, false)
            .map(|(_, start)| Counted { start, n })
    }

    /// Adds `n` to `key`'s window, to `limit` at most: the cost of work
    /// already done, which a later [`Windows::add`] past the limit then
    /// refuses.
    pub fn charge(&self, key: &K, n: u64, limit: u64) {
        let _ = self.bump(key, n, limit, true);
    }

    fn bump(&self, key: &K, n: u64, limit: u64, clamp: bool) -> Result<(u64, Instant), Duration> {
        let now = Instant::now();
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if counts.len() >= self.max_keys && !counts.contains_key(key) {
            counts.retain(|_, (start, _)| now.duration_since(*start) < self.window);
            if counts.len() >= self.max_keys
                && let Some(oldest) = counts
                    .iter()
                    .min_by_key(|(_, (start, _))| *start)
                    .map(|(k, _)| k.clone())
            {
                counts.remove(&oldest);
            }
        }
        let entry = counts.entry(key.clone()).or_insert((now, 0));
        if now.duration_since(entry.0) >= self.window {
            *entry = (now, 0);
        }
        let total = entry.1.saturating_add(n);
        if total > limit {
            if clamp {
                entry.1 = entry.1.max(limit);
                return Ok((entry.1, entry.0));
            }
            return Err(self.window.saturating_sub(now.duration_since(entry.0)));
        }
        entry.1 = total;
        Ok((total, entry.0))
    }

    /// Takes back what [`Windows::add_refundable`] counted for `key`, when
    /// it turned out not to count. A window that has ended took it with
    /// it: the next one never held it, so it is not taken from that one.
    pub fn refund(&self, key: &K, counted: Counted) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = counts.get_mut(key)
            && entry.0 == counted.start
        {
            entry.1 = entry.1.saturating_sub(counted.n);
        }
    }

    /// Whether `key` has already reached `limit` in its current window.
    pub fn reached(&self, key: &K, limit: u64) -> Option<Duration> {
        let now = Instant::now();
        let counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let (start, count) = counts.get(key)?;
        let elapsed = now.duration_since(*start);
        (elapsed < self.window && *count >= limit).then(|| self.window - elapsed)
    }
}

/// Places held at once per key (a device's reads, an address's
/// connections), each given back when its [`Slot`] drops.
#[derive(Debug)]
pub struct Slots<K> {
    held: Arc<Mutex<HashMap<K, usize>>>,
}

impl<K> Default for Slots<K> {
    fn default() -> Self {
        Self {
            held: Arc::new(Mutex::new(HashMap::new())),
        }
    }
}

impl<K: std::hash::Hash + Eq + Clone> Slots<K> {
    /// One more place for `key`, unless it holds `limit` already.
    pub fn take(&self, key: &K, limit: usize) -> Option<Slot<K>> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let n = held.entry(key.clone()).or_default();
        if *n >= limit {
            return None;
        }
        *n += 1;
        Some(Slot {
            held: Arc::clone(&self.held),
            key: key.clone(),
        })
    }

    /// Whether no key holds a place.
    pub fn is_empty(&self) -> bool {
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }
}

/// A place [`Slots::take`] gave, given back on drop.
#[derive(Debug)]
pub struct Slot<K: std::hash::Hash + Eq> {
    held: Arc<Mutex<HashMap<K, usize>>>,
    key: K,
}

impl<K: std::hash::Hash + Eq> Drop for Slot<K> {
    fn drop(&mut self) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = held.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.key);
            }
        }
    }
}

/// The rate limits that guard sign-in.
#[derive(Debug)]
pub struct Guards {
    pub failed_auth: Windows<IpAddr>,
    pub redemptions: Windows<IpAddr>,
    pub device_docs: Windows<String>,
    pub device_bytes: Windows<String>,
    pub device_ops: Windows<String>,
}

impl Guards {
    /// Limits counted over `window` (a minute, but in tests).
    pub fn new(window: Duration) -> Self {
        Self {
            failed_auth: Windows::new(window, 100_000),
            redemptions: Windows::new(window, 100_000),
            device_docs: Windows::new(window, 100_000),
            device_bytes: Windows::new(window, 100_000),
            device_ops: Windows::new(window, 100_000),
        }
    }
}

pub use twinsync_shared::protocol::{SUBPROTOCOL, TOKEN_SUBPROTOCOL};

/// Reads a token from `Authorization: Bearer …`, then from a
/// [`TOKEN_SUBPROTOCOL`] offered, then from the `token` query parameter
/// (`query`, which the caller gives only for `/sync`: the official
/// automerge-repo clients put it there).
pub fn token_from(headers: &axum::http::HeaderMap, query: Option<&str>) -> Option<String> {
    let bearer = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(|t| t.trim().to_owned());
    let offered = || {
        headers
            .get_all(axum::http::header::SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .find_map(|p| p.trim().strip_prefix(TOKEN_SUBPROTOCOL).map(str::to_owned))
    };
    bearer.or_else(offered).or_else(|| {
        query?.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            (k == "token").then(|| v.to_owned())
        })
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_secret_round_trips_and_only_its_own_hash_matches() {
        let s = Secret::generate();
        let parsed = Secret::parse(&s.token()).unwrap();
        assert_eq!(parsed, s);
        assert!(parsed.matches(&s.hash()));
        let other = Secret::generate();
        assert!(!other.matches(&s.hash()));
        assert!(s.secret.len() >= 40, "256 bits in base58: {}", s.secret);
    }

    #[test]
    fn malformed_tokens_do_not_parse() {
        for t in ["", ".", "abc", "abc.", ".abc", "a.b.c", "a b.c", "é.x"] {
            assert!(Secret::parse(t).is_none(), "{t:?}");
        }
    }

    #[test]
    fn a_window_refuses_past_its_limit_and_forgets_old_keys() {
        let w = Windows::new(Duration::from_secs(60), 2);
        assert_eq!(w.add(&1, 3, 5), Ok(3));
        assert!(w.add(&1, 3, 5).is_err());
        assert_eq!(w.add(&1, 2, 5), Ok(5));
        assert!(w.reached(&1, 5).is_some());
        w.add(&2, 1, 5).unwrap();
        w.add(&3, 1, 5).unwrap();
        let held = w.counts.lock().unwrap().len();
        assert!(held <= 2, "{held} keys held");
    }

    #[test]
    fn a_refund_comes_off_the_window_it_was_counted_in() {
        let w = Windows::new(Duration::from_millis(50), 10);
        let counted = w.add_refundable(&1, 1, 1).unwrap();
        assert!(w.add(&1, 1, 1).is_err(), "the window is full");
        w.refund(&1, counted);
        assert_eq!(w.add(&1, 1, 1), Ok(1), "the refund made room");

        let late = w.add_refundable(&2, 1, 1).unwrap();
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(w.add(&2, 1, 1), Ok(1), "a new window");
        w.refund(&2, late);
        assert!(
            w.reached(&2, 1).is_some(),
            "a refund from the window before leaves the new one's count"
        );
    }

    #[test]
    fn the_token_comes_from_the_header_first() {
        let mut h = axum::http::HeaderMap::new();
        assert_eq!(token_from(&h, Some("a=1&token=q.r")), Some("q.r".into()));
        // A browser's socket offers it as a subprotocol, before the query.
        h.insert(
            "sec-websocket-protocol",
            "twinsync, twinsync-token.p.s".parse().unwrap(),
        );
        assert_eq!(token_from(&h, Some("token=q.r")), Some("p.s".into()));
        h.insert("authorization", "Bearer h.t".parse().unwrap());
        assert_eq!(token_from(&h, Some("token=q.r")), Some("h.t".into()));
    }
}
