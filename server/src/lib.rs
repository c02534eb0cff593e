//! twinsync-server: authenticates devices, checks what they may read and
//! write, merges, stores and relays the club's records.
//!
//! - [`startup`]: [`startup::run`] takes a listener, settings and a shutdown
//!   signal, so tests start the real server on port 0.
//! - [`connection`]: one WebSocket peer: handshake, strict decoding, routing.
//! - [`hub`]: loaded documents, connected peers and sign-in.
//! - [`auth`]: devices, tokens and rate limits; [`permissions`]: who may
//!   read and write which record.
//! - [`document`]: one task per loaded document: merge, store, then relay.
//! - [`store`]: the SQLite file: chunks, summaries, change origins, sync
//!   states; [`store::restore`] puts a backup in its place,
//!   [`store::salvage`] gives back records a damaged chunk made unreadable,
//!   and [`lock`] keeps one server (or restore, or salvage) per data
//!   directory.
//! - [`api`], [`openapi`]: the coordinators' read API; [`admin`]: invites,
//!   devices and the quarantine, with [`review`] showing what a quarantined
//!   batch would change; [`access`]: the token behind each request.
//! - [`metrics`], [`telemetry`], [`settings`]: operations; [`memory`]: hands
//!   the memory of evicted documents back to the system.
//! - [`seed`]: the demo club, written into an empty database.

pub mod access;
pub mod admin;
pub mod api;
pub mod auth;
pub mod connection;
pub mod document;
pub mod hub;
pub mod lock;
pub mod memory;
pub mod metrics;
pub mod openapi;
pub mod outbox;
pub mod permissions;
pub mod review;
pub mod seed;
pub mod settings;
pub mod startup;
pub mod store;
pub mod telemetry;
