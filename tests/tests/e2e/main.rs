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

/// Overwrites every stored chunk of `doc` in the database of `data_dir`
/// with bytes that are not an Automerge document; answers how many.
fn damage_chunks(data_dir: &std::path::Path, doc: twinsync_shared::DocumentId) -> usize {
    rusqlite::Connection::open(data_dir.join("twinsync.db"))
        .unwrap()
        .execute(
            "UPDATE chunks SET data = X'6e6f7420616e206175746f6d65726765' WHERE doc_id = ?1",
            [doc.to_string()],
        )
        .unwrap()
}

/// The first city's delegate: its token, and its phone `name`, connected
/// and holding the city.
async fn city_delegate(
    app: &twinsync_tests::TestApp,
    name: &str,
    limit: std::time::Duration,
) -> (
    twinsync_shared::DocumentId,
    String,
    twinsync_tests::TestPeer,
) {
    let city = app.first("city").await;
    let token = app.device(
        twinsync_server::auth::Role::Delegate,
        &[&city.to_string()],
        None,
    );
    let mut phone = twinsync_tests::TestPeer::new(name).with_token(&token);
    phone.connect(app).await;
    phone.fetch(city, limit).await;
    (city, token, phone)
}
