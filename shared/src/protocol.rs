//! The automerge-repo protocol v1, sans IO: the wire codec ([`wire`]), the
//! handshake ([`handshake`]) and the per-document sync engine ([`engine`]).
//!
//! Nothing here touches a socket, a clock or a disk. The server and the
//! browser client both feed frames in and send the messages that come out.
//!
//! Two peers syncing a record through encoded frames until neither has
//! anything more to say:
//!
//! ```
//! use twinsync_shared::protocol::{DocSync, FrameLimit, Message};
//! use twinsync_shared::record::{Commit, Edit, Kind, RecordDoc};
//! use twinsync_shared::{DocumentId, PeerId};
//!
//! let id = DocumentId::random();
//! let (phone, server) = (PeerId::from("phone"), PeerId::from("server"));
//!
//! // The phone wrote a meeting offline.
//! let fields = serde_json::json!({"title": {"fr": "Réunion consultative"}, "date": "2025-10-30"});
//! let mut on_phone = RecordDoc::create(Kind::Meeting, &fields, &Commit::new("New meeting", 1761832800))?;
//! let mut on_server = RecordDoc::from_automerge(twinsync_shared::record::new_document());
//!
//! let mut phone_sync = DocSync::new(id);
//! let mut server_sync = DocSync::new(id);
//! phone_sync.add_peer(server.clone(), Default::default());
//!
//! loop {
//!     let mut said = false;
//!     for msg in phone_sync.generate(on_phone.doc(), &phone) {
//!         said = true;
//!         // Every message crosses the wire as a CBOR frame.
//!         let frame = msg.encode();
//!         if let Message::Sync { sender_id, data, .. } | Message::Request { sender_id, data, .. } =
//!             Message::decode(&frame, FrameLimit::default())?
//!         {
//!             server_sync.receive(on_server.doc_mut(), &sender_id, &data)?;
//!         }
//!     }
//!     for msg in server_sync.generate(on_server.doc(), &server) {
//!         said = true;
//!         // A peer with no copy yet sends `request` rather than `sync`.
//!         if let Message::Sync { sender_id, data, .. } | Message::Request { sender_id, data, .. } = msg {
//!             phone_sync.receive(on_phone.doc_mut(), &sender_id, &data)?;
//!         }
//!     }
//!     if !said {
//!         break;
//!     }
//! }
//! assert_eq!(on_server.read().unwrap(), on_phone.read().unwrap());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod engine;
pub mod handshake;
mod lineage;
pub mod weight;
pub mod wire;
mod withheld;

pub use engine::{
    Batch, DocSync, Incoming, MAX_HAVES, Received, SyncError, Trim, admit_new_changes, ops_in_sync,
    receive_applied, receive_loading_saved, sync_shape,
};
pub use wire::{
    ANNOUNCED_FRAME_BYTES, DecodeError, FrameLimit, HeadsAt, MAX_LIST_ENTRIES, Message,
    PROTOCOL_VERSION, PeerMetadata, RATE_LIMITED, Refusal, SLOW_LINK_BYTES_PER_SEC, SUBPROTOCOL,
    TOKEN_SUBPROTOCOL, TOO_MANY_OPEN, UNREADABLE, doc_unavailable_for,
};
