//! twinsync-shared: what the server and the browser client have in common.
//!
//! Sans IO: no sockets, no clocks, no disks. Builds for native targets and
//! for `wasm32-unknown-unknown` (with the `wasm` feature).
//!
//! - [`record`]: the club's records, one Automerge document each: the
//!   schema of every kind, typed values, edits by path, validation,
//!   conflicts and history.
//! - [`protocol`]: the automerge-repo protocol v1: the CBOR wire codec, the
//!   handshake and the per-document sync engine.
//! - [`document_id`], [`peer_id`]: the ids that cross the wire.
//! - [`text`]: the one text encoding of the system, and conversion of
//!   browser UTF-16 offsets.
//! - [`demo`]: the demo club, built from the seed articles.

pub mod demo;
pub mod document_id;
pub mod peer_id;
pub mod protocol;
pub mod record;
pub mod text;

pub use document_id::{AutomergeUrl, DocumentId, IdError};
pub use peer_id::{PeerId, StorageId};
