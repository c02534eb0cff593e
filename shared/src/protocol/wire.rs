//! The automerge-repo network protocol, version "1": every message, with
//! CBOR encoding and strict decoding.
//!
//! One message is one CBOR map with text keys, carried in one binary
//! WebSocket frame. Decoding is strict about what it reads: every required
//! field must be present with the right CBOR type, the frame must hold
//! exactly one item, and a frame larger than the configured limit is refused
//! before a byte of it is parsed. Keys this version does not know are
//! skipped, as the JavaScript implementation ignores them too.
//!
//! ```
//! use twinsync_shared::protocol::{Message, FrameLimit};
//! use twinsync_shared::{DocumentId, PeerId};
//!
//! let msg = Message::Request {
//!     sender_id: PeerId::from("phone"),
//!     target_id: PeerId::from("server"),
//!     document_id: DocumentId::random(),
//!     data: vec![0x42],
//! };
//! let frame = msg.encode();
//! assert_eq!(Message::decode(&frame, FrameLimit::default()).unwrap(), msg);
//! ```

mod decode;
mod encode;

use std::collections::BTreeMap;

use crate::{DocumentId, PeerId, StorageId};

pub use decode::{DecodeError, MAX_LIST_ENTRIES};
pub use encode::doc_unavailable_for;

/// The only protocol version this crate speaks.
pub const PROTOCOL_VERSION: &str = "1";

/// The WebSocket subprotocol the server selects when a client offers it.
pub const SUBPROTOCOL: &str = "twinsync";

/// How a browser, which cannot set a header on a WebSocket, offers its
/// token beside [`SUBPROTOCOL`]: `Sec-WebSocket-Protocol: twinsync,
/// twinsync-token.<token>`. A URL's query (`?token=`) is written into
/// every proxy's access log; this header is not.
pub const TOKEN_SUBPROTOCOL: &str = "twinsync-token.";

/// The largest frame a peer accepts. Checked before decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameLimit(pub usize);

impl Default for FrameLimit {
    /// 16 MiB, enough for the snapshot of a very large record.
    fn default() -> Self {
        Self(16 * 1024 * 1024)
    }
}

/// `peerMetadata` in `join` and `peer`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerMetadata {
    pub storage_id: Option<StorageId>,
    pub is_ephemeral: bool,
    /// The sender answers [`Message::Ping`] (the key `twinsyncPings`, a
    /// twinsync addition written only when true, which other
    /// implementations skip): a twinsync server says so in `peer`, and the
    /// twinsync client in `join` (the server pings it while a revoked
    /// device's frame waits for the device's budget).
    pub answers_pings: bool,
    /// The sender (the app) reads [`Message::Coming`] (the key
    /// `twinsyncComing`, written only when true): the server announces
    /// large frames to such a peer alone. An app installed before it knew
    /// the message offers pings without this, and would refuse it.
    pub hears_coming: bool,
}

/// The heads a storage peer has of one document, with when it saw them.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadsAt {
    /// bs58check-encoded change hashes, as the JavaScript client writes them.
    pub heads: Vec<String>,
    pub timestamp: f64,
}

/// A change the server refused, beside the English of the `error` that
/// carries it (the key `refusal`, a map of `documentId`, `code`, `path`
/// and, when the changes were kept for review, `quarantine`, with
/// `discarded` when a coordinator already discarded them; or, when the
/// device is to ask again later, `retryAfter`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub document_id: DocumentId,
    /// Why, as a stable word such as `not-yours` or `adopted` (the server's
    /// `permissions::Why` lists them); an app that does not know the word
    /// shows the message instead.
    pub code: String,
    /// The record path at fault, such as `/status`; `/` for the record.
    pub path: String,
    /// The quarantine entry holding the changes for a coordinator to
    /// review, if the server could keep them.
    pub quarantine: Option<u64>,
    /// A coordinator already discarded these changes, or those they build
    /// on (`quarantine` names the entry): the server will never take them
    /// (the key `discarded`, sent only when true).
    pub discarded: bool,
    /// For a record the server did not take yet ([`RATE_LIMITED`]), the
    /// seconds until it will: the device asks again then (the key
    /// `retryAfter`).
    pub retry_after: Option<u64>,
}

/// The code of a record the server did not open or take because the
/// device opened more records in the last minute than it allows; nothing
/// was refused for good, and the device asks again after `retry_after`.
pub const RATE_LIMITED: &str = "rate-limited";

/// The code of changes not taken because the server cannot read its own
/// copy of the record just now (damaged, or its storage failing): the
/// message was dropped unread.
pub const UNREADABLE: &str = "unreadable";

/// The code of a record not opened because the device already holds as
/// many open as the server allows (`--max-open-docs-per-device`), over all
/// its sockets: the message was dropped unread.
pub const TOO_MANY_OPEN: &str = "too-many-open";

/// Every message of protocol v1.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// Client to server: the first message on a socket.
    Join {
        sender_id: PeerId,
        peer_metadata: PeerMetadata,
        supported_protocol_versions: Vec<String>,
    },
    /// Server to client: the answer to `join`.
    Peer {
        sender_id: PeerId,
        target_id: PeerId,
        peer_metadata: PeerMetadata,
        selected_protocol_version: String,
    },
    /// A refusal; the sender may close the socket after it.
    Error {
        sender_id: PeerId,
        target_id: PeerId,
        message: String,
        /// For a refused change, what was refused and why in a form an
        /// app can put in the person's language: a twinsync addition,
        /// under the key `refusal`, which other implementations skip.
        refusal: Option<Refusal>,
    },
    /// One step of Automerge's sync protocol for a document.
    Sync {
        sender_id: PeerId,
        target_id: PeerId,
        document_id: DocumentId,
        data: Vec<u8>,
    },
    /// A sync step from a peer that has no copy of the document yet.
    Request {
        sender_id: PeerId,
        target_id: PeerId,
        document_id: DocumentId,
        data: Vec<u8>,
    },
    /// "I do not have this document", or "you may not see it".
    DocUnavailable {
        sender_id: PeerId,
        target_id: PeerId,
        document_id: DocumentId,
    },
    /// Presence and other data that is relayed but never stored.
    Ephemeral {
        sender_id: PeerId,
        target_id: PeerId,
        document_id: DocumentId,
        session_id: String,
        count: u64,
        data: Vec<u8>,
    },
    /// Heads gossip: which storage ids the sender wants to hear about.
    RemoteSubscriptionChange {
        sender_id: PeerId,
        target_id: PeerId,
        add: Vec<StorageId>,
        remove: Vec<StorageId>,
    },
    /// Heads gossip: the heads other storage peers have of a document.
    RemoteHeadsChanged {
        sender_id: PeerId,
        target_id: PeerId,
        document_id: DocumentId,
        new_heads: BTreeMap<StorageId, HeadsAt>,
    },
    /// Client to a server whose `peer` said `twinsyncPings`: "are you
    /// there?", answered with [`Message::Pong`]. A twinsync addition
    /// (`twinsync-ping`): a phone that only listens hears nothing on a
    /// socket its network dropped without a word, and asks.
    Ping {
        sender_id: PeerId,
        target_id: PeerId,
    },
    /// The answer to [`Message::Ping`] (`twinsync-pong`).
    Pong {
        sender_id: PeerId,
        target_id: PeerId,
    },
    /// Server to a peer whose `join` said `twinsyncComing`, just before a
    /// frame of at least [`ANNOUNCED_FRAME_BYTES`]: "a frame of `bytes` bytes comes
    /// next" (`twinsync-coming`). A browser hands a WebSocket message over
    /// only once all of it has arrived, so a phone reading a whole record
    /// at [`SLOW_LINK_BYTES_PER_SEC`] would otherwise hear nothing for
    /// minutes and give a working socket up as silent.
    Coming {
        sender_id: PeerId,
        target_id: PeerId,
        bytes: u64,
    },
}

/// The slowest rate, in bytes a second, at which a frame is still waited
/// for: a phone on a poor mobile link. The server gives a frame it sends
/// this long beyond its peer timeout, and the app a frame announced by
/// [`Message::Coming`] this long beyond its silence limit.
pub const SLOW_LINK_BYTES_PER_SEC: u32 = 16 * 1024;

/// The smallest frame the server announces with [`Message::Coming`]: one
/// that takes over 10 s at [`SLOW_LINK_BYTES_PER_SEC`].
pub const ANNOUNCED_FRAME_BYTES: usize = 160 * 1024;

impl Message {
    /// The wire name of this message's type.
    pub fn type_name(&self) -> &'static str {
        match self {
            Message::Join { .. } => "join",
            Message::Peer { .. } => "peer",
            Message::Error { .. } => "error",
            Message::Sync { .. } => "sync",
            Message::Request { .. } => "request",
            Message::DocUnavailable { .. } => "doc-unavailable",
            Message::Ephemeral { .. } => "ephemeral",
            Message::RemoteSubscriptionChange { .. } => "remote-subscription-change",
            Message::RemoteHeadsChanged { .. } => "remote-heads-changed",
            Message::Ping { .. } => "twinsync-ping",
            Message::Pong { .. } => "twinsync-pong",
            Message::Coming { .. } => "twinsync-coming",
        }
    }

    pub fn sender_id(&self) -> &PeerId {
        match self {
            Message::Join { sender_id, .. }
            | Message::Peer { sender_id, .. }
            | Message::Error { sender_id, .. }
            | Message::Sync { sender_id, .. }
            | Message::Request { sender_id, .. }
            | Message::DocUnavailable { sender_id, .. }
            | Message::Ephemeral { sender_id, .. }
            | Message::RemoteSubscriptionChange { sender_id, .. }
            | Message::RemoteHeadsChanged { sender_id, .. }
            | Message::Ping { sender_id, .. }
            | Message::Pong { sender_id, .. }
            | Message::Coming { sender_id, .. } => sender_id,
        }
    }

    /// The document a message is about, if it is about one.
    pub fn document_id(&self) -> Option<DocumentId> {
        match self {
            Message::Sync { document_id, .. }
            | Message::Request { document_id, .. }
            | Message::DocUnavailable { document_id, .. }
            | Message::Ephemeral { document_id, .. }
            | Message::RemoteHeadsChanged { document_id, .. } => Some(*document_id),
            _ => None,
        }
    }

    /// Encodes this message as one CBOR frame.
    pub fn encode(&self) -> Vec<u8> {
        encode::encode(self)
    }

    /// Decodes one frame, refusing anything malformed with a typed error.
    pub fn decode(frame: &[u8], limit: FrameLimit) -> Result<Message, DecodeError> {
        decode::decode(frame, limit)
    }
}
