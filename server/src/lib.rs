//! twinsync-server: authenticates nothing yet, merges, stores and relays
//! the club's records.
//!
//! - [`startup`]: [`startup::run`] takes a listener, settings and a shutdown
//!   signal, so tests start the real server on port 0.
//! - [`connection`]: one WebSocket peer: handshake, strict decoding, routing.
//! - [`hub`]: loaded documents and connected peers.
//! - [`document`]: one task per loaded document: merge, store, then relay.
//! - [`store`]: the SQLite file: chunks, summaries, change origins, sync states.
//! - [`api`], [`openapi`]: the coordinators' read API.
//! - [`metrics`], [`telemetry`], [`settings`]: operations.
//! - [`seed`]: the demo club, written into an empty database.

pub mod api;
pub mod connection;
pub mod document;
pub mod hub;
pub mod metrics;
pub mod openapi;
pub mod seed;
pub mod settings;
pub mod startup;
pub mod store;
pub mod telemetry;
