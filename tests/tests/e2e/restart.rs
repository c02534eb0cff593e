//! Restarts: graceful, and `kill -9` while peers sync. Nothing the server
//! acknowledged is lost.

use std::time::Duration;

use serde_json::json;
use twinsync_shared::record::{Edit, Kind, Record};
use twinsync_tests::process::ServerProcess;
use twinsync_tests::{TestPeer, spawn_app, start};

const QUIET: Duration = Duration::from_millis(150);
const LIMIT: Duration = Duration::from_secs(15);

/// A phone with its storage that made a city, named `name`, the server
/// holds; with the city's heads.
async fn phone_with_city(
    app: &twinsync_tests::TestApp,
    name: serde_json::Value,
) -> (
    TestPeer,
    twinsync_shared::DocumentId,
    Vec<automerge::ChangeHash>,
) {
    let mut p = TestPeer::new("phone").with_storage("phone-storage");
    p.connect(app).await;
    let city = p.create(Kind::City, json!({"name": name, "country": "Morocco"}));
    let heads = p.heads(city);
    p.sync_until_acked(LIMIT, city, &heads).await;
    (p, city, heads)
}

#[tokio::test]
async fn a_graceful_restart_loses_nothing() {
    let app = spawn_app().await;
    let (mut p, city, heads) =
        phone_with_city(&app, json!({"ar": "العيون", "fr": "Laâyoune"})).await;
    p.disconnect().await;

    let settings_dir = app.data_dir.clone();
    let (_, temp) = app.stop().await;
    let mut settings = twinsync_server::settings::Settings::for_data_dir(settings_dir);
    settings.no_demo = true;
    let app = start(settings).await;

    let mut fresh = TestPeer::new("fresh");
    fresh.connect(&app).await;
    fresh.open(city);
    fresh
        .sync_until(LIMIT, |p| p.has_changes(city, &heads))
        .await;
    let Record::City(c) = fresh.record(city) else {
        panic!()
    };
    assert_eq!(c.name.fr.as_deref(), Some("Laâyoune"));
    // The phone comes back with its stored sync state and has nothing to resend.
    p.connect(&app).await;
    assert!(p.sync(QUIET, LIMIT).await);
    drop(temp);
}

/// A server stopping closes its sockets before its records: a phone
/// syncing on while the records stop would start a record again, whose
/// writes the stopped writer could not store, and be told the server's
/// storage failed.
#[tokio::test]
async fn a_graceful_stop_closes_the_sockets_before_the_records() {
    let app = spawn_app().await;
    let (mut p, city, _) = phone_with_city(&app, json!({"fr": "Tifariti"})).await;
    let hub = app.hub.clone();
    let (_, temp) = app.stop().await;
    // The phone types on, as a delegate does who has not seen a thing.
    p.edit(
        city,
        "region",
        &[Edit::Set {
            path: "/region".into(),
            value: json!("Es-Semara"),
        }],
    );
    p.sync(QUIET, LIMIT).await;
    assert!(p.seen.closed, "the socket was closed by the stop");
    assert_eq!(p.seen.errors, Vec::<String>::new());
    assert_eq!(hub.metrics.storage_errors.get(), 0);
    drop(temp);
}

#[tokio::test]
async fn kill_9_while_peers_sync_loses_no_acknowledged_change() {
    let data = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(data.path());
    server.wait_healthy(LIMIT).await;
    let meeting = {
        let list: serde_json::Value = server
            .get("/api/records?kind=meeting")
            .await
            .json()
            .await
            .unwrap();
        list[0]["id"].as_str().unwrap().parse().unwrap()
    };
    let mut peers: Vec<TestPeer> = (0..4)
        .map(|i| TestPeer::new(&format!("typist-{i}")))
        .collect();
    for p in &mut peers {
        p.connect(&server).await;
        p.fetch(meeting, LIMIT).await;
    }
    // Everyone types; the server is killed in the middle of it.
    for round in 0..6 {
        for (i, p) in peers.iter_mut().enumerate() {
            p.edit(
                meeting,
                "typing",
                &[Edit::SpliceText {
                    path: "/minutes".into(),
                    index: 0,
                    delete: 0,
                    insert: format!("<{i}.{round}>"),
                }],
            );
            p.sync(Duration::from_millis(5), Duration::from_millis(50))
                .await;
        }
    }
    let acknowledged: Vec<_> = peers.iter().flat_map(|p| p.acknowledged(meeting)).collect();
    assert!(
        !acknowledged.is_empty(),
        "the server acknowledged nothing before the kill"
    );
    server.kill9();

    let server = ServerProcess::start(data.path());
    server.wait_healthy(LIMIT).await;
    let mut reader = TestPeer::new("reader");
    reader.connect(&server).await;
    reader.open(meeting);
    reader
        .sync_until(LIMIT, |p| p.has_changes(meeting, &acknowledged))
        .await;

    // The typists reconnect and finish syncing: everyone converges.
    for p in &mut peers {
        p.connect(&server).await;
        p.sync(QUIET, LIMIT).await;
    }
    for p in &mut peers {
        p.sync(QUIET, LIMIT).await;
    }
    let all = peers[0].heads(meeting);
    reader
        .sync_until(LIMIT, |p| p.has_changes(meeting, &all))
        .await;
    let Record::Meeting(m) = reader.record(meeting) else {
        panic!()
    };
    for i in 0..4 {
        for round in 0..6 {
            assert!(
                m.minutes.contains(&format!("<{i}.{round}>")),
                "edit {i}.{round} lost"
            );
        }
    }
}

/// Stopping waits for the HTTP requests still running, up to 10 s; an
/// operator who asks a second time is not left to `kill -9`.
#[tokio::test]
async fn a_second_signal_while_stopping_ends_the_server_at_once() {
    use std::io::Write;
    let data = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::start(data.path());
    server.wait_healthy(LIMIT).await;
    // A request whose body never comes whole holds the stop.
    let mut slow = std::net::TcpStream::connect(server.addr).unwrap();
    slow.write_all(
        b"POST /api/invites/redeem HTTP/1.1\r\nHost: twinsync\r\n\
          Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"code\": ",
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.signal("TERM");
    assert!(
        server.exited_within(Duration::from_secs(2)).is_none(),
        "the stop did not wait for the request"
    );
    server.signal("INT");
    let status = server
        .exited_within(Duration::from_secs(3))
        .expect("asked twice, the server stopped at once");
    // As a shell reports a process Ctrl-C ended.
    assert_eq!(status.code(), Some(130), "{status}");
    server
        .logged(&["asked again while shutting down"], LIMIT)
        .await;
}

/// SQLite keeps a database already past `--max-db-mib` as it is, and each
/// write needing a page more then fails as "storage full" with room on the
/// disk: a server started so says it at once, with the figures.
#[tokio::test]
async fn a_database_already_at_its_cap_is_said_at_start() {
    let data = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(data.path());
    server.wait_healthy(LIMIT).await;
    drop(server);
    let db = rusqlite::Connection::open(data.path().join("twinsync.db")).unwrap();
    db.execute_batch(
        "CREATE TABLE ballast (b BLOB); INSERT INTO ballast VALUES (zeroblob(2 * 1024 * 1024));",
    )
    .unwrap();
    drop(db);
    let server = ServerProcess::start_with(data.path(), &[("TWINSYNC_MAX_DB_MIB", "1")]);
    let said = server.logged(&["already at --max-db-mib"], LIMIT).await;
    assert!(said.contains("max_db_mib=1"), "{said}");
    // Under a cap it is not at, nothing is said.
    drop(server);
    let server = ServerProcess::start_with(data.path(), &[("TWINSYNC_MAX_DB_MIB", "64")]);
    server.wait_healthy(LIMIT).await;
    assert_eq!(server.count_logged(&["already at --max-db-mib"]), 0);
}
