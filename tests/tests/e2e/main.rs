//! End-to-end tests of the server over real sockets and real SQLite files.
//! All in one binary (one link, shared helpers).

mod api;
mod hostile;
mod interop;
mod restart;
mod storage;
mod sync;
