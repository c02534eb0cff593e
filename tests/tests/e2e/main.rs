//! End-to-end tests of the server over real sockets and real SQLite files.
//! All in one binary (one link, shared helpers).

#![allow(clippy::unwrap_used)] // a test panics to fail

mod api;
mod auth;
mod client;
mod crash;
mod hostile;
mod interop;
mod memory;
mod proxy;
mod restart;
mod soak;
mod storage;
mod sync;
