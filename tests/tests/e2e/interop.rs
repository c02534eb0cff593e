//! Interop with the official JavaScript client (`@automerge/automerge-repo`
//! 2.x over `@automerge/automerge-repo-network-websocket`), pinned in
//! `tests/js/package.json` and installed by `cargo xtask test`.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::json;
use twinsync_shared::record::{Kind, Record};
use twinsync_tests::process::ServerProcess;
use twinsync_tests::{TestPeer, spawn_app_with, workspace};

const LIMIT: Duration = Duration::from_secs(15);

fn node(args: &[&str]) -> Command {
    let dir = workspace().join("tests/js");
    assert!(
        dir.join("node_modules/@automerge/automerge-repo").exists(),
        "the JavaScript client is not installed: run `cargo xtask test` (it runs npm install in tests/js)"
    );
    let mut cmd = Command::new("node");
    cmd.current_dir(&dir)
        .arg("peer.mjs")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn run_js(args: &[&str]) -> String {
    succeeded(node(args), args)
}

/// Runs `cmd`, the official client given `args`, and returns what it
/// printed; panics, with its output, unless it exited 0.
fn succeeded(mut cmd: Command, args: &[&str]) -> String {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("node runs");
    let out = String::from_utf8_lossy(&stdout).into_owned();
    assert!(
        status.success(),
        "node {args:?} failed ({status}): {out}\n{}",
        String::from_utf8_lossy(&stderr)
    );
    out
}

/// The JSON the official client printed after `tag` ("DOC ", say).
fn said(out: &str, tag: &str) -> serde_json::Value {
    let found = out.lines().find_map(|l| l.strip_prefix(tag));
    serde_json::from_str(found.unwrap_or_else(|| panic!("no {tag}in {out}"))).unwrap()
}

fn ws(server: &ServerProcess) -> String {
    server.ws()
}

#[tokio::test]
async fn the_official_client_edits_a_demo_record_live_and_it_survives_kill_9() {
    let data = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(data.path());
    server.wait_healthy(LIMIT).await;
    let list = server.get_json("/api/records?kind=meeting").await;
    let url = list[0]["url"].as_str().unwrap().to_owned();
    let id = list[0]["id"].as_str().unwrap().to_owned();

    // A second JS peer watches the record while the first edits it.
    let watcher = node(&[&ws(&server), "watch", &url, "Bonjour de JS"])
        .spawn()
        .expect("node runs");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let edited = run_js(&[&ws(&server), "edit", &url, "Bonjour de JS — مرحبا "]);
    assert!(edited.contains("EDITED"), "{edited}");
    let watched = tokio::task::spawn_blocking(move || watcher.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&watched.stdout).contains("SEEN"),
        "the watcher did not see the edit live"
    );

    server.kill9();
    let server = ServerProcess::start(data.path());
    server.wait_healthy(LIMIT).await;
    let fresh = run_js(&[&ws(&server), "watch", &url, "Bonjour de JS — مرحبا"]);
    assert!(fresh.contains("SEEN"), "{fresh}");
    let record = server.get_json(&format!("/api/records/{id}")).await;
    assert!(
        record["record"]["minutes"]
            .as_str()
            .unwrap()
            .starts_with("Bonjour de JS — مرحبا "),
        "{record}"
    );
}

/// A refusal carries twinsync's `refusal` key beside the protocol's
/// `message`; the official client skips it and goes on over the same socket.
#[tokio::test]
async fn the_official_client_refused_a_change_goes_on_syncing() {
    let data = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(data.path());
    server.wait_healthy(LIMIT).await;
    let meeting = server.get_json("/api/records?kind=meeting").await[0].clone();
    let project = server.get_json("/api/records?kind=project").await[0].clone();
    // An observer's device, which writes nothing.
    let token = twinsync_tests::process::add_device(data.path(), "observer", &[]);
    let ws = format!("ws://{}/sync?token={token}", server.addr);
    let out = run_js(&[
        &ws,
        "refused",
        meeting["url"].as_str().unwrap(),
        project["url"].as_str().unwrap(),
    ]);
    let line = |tag: &str| said(&out, tag);
    let held = server.get_json("/api/quarantine").await;
    assert_eq!(held[0]["doc_id"], meeting["id"], "{held}");
    assert_eq!(held[0]["code"], "observer", "{held}");
    // What the official client received, decoded by its own CBOR.
    let refused = line("REFUSED ");
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("an observer's device writes nothing"),
        "{refused}"
    );
    assert_eq!(
        refused["refusal"],
        json!({
            "documentId": meeting["id"],
            "code": "observer",
            "path": "/minutes",
            "quarantine": held[0]["id"],
        })
    );
    assert_eq!(line("DOC ")["kind"], "project");
    assert!(out.contains("SAME SOCKET"), "{out}");
    let stored = server
        .get_json(&format!("/api/records/{}", meeting["id"].as_str().unwrap()))
        .await;
    assert!(
        !stored["record"]["minutes"]
            .as_str()
            .unwrap()
            .starts_with("Refusé"),
        "{stored}"
    );
}

/// The official client takes a document id of any length; twinsync's are
/// 16 bytes. Asked for one of 32, the server says it is unavailable, at
/// once, and the same socket serves the client's other records: closed, the
/// client would ask again at every reconnection, and sync nothing else.
#[tokio::test]
async fn the_official_client_asking_for_a_longer_id_is_told_unavailable_and_keeps_its_socket() {
    let data = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(data.path());
    server.wait_healthy(LIMIT).await;
    let project = server.get_json("/api/records?kind=project").await[0].clone();
    // 32 bytes, and 100, whose id is 143 characters.
    for bytes in ["32", "100"] {
        let out = run_js(&[
            &ws(&server),
            "foreign",
            project["url"].as_str().unwrap(),
            bytes,
        ]);
        assert!(out.contains("UNAVAILABLE"), "{bytes}: {out}");
        assert_eq!(said(&out, "DOC ")["kind"], "project", "{bytes}");
        assert!(out.contains("SAME SOCKET"), "{bytes}: {out}");
    }
}

/// Presence between two official clients: the second passes the message
/// it was relayed on to its other peers as it came, the first client's
/// `senderId` and all, and so back to the server. The server drops that
/// copy, as the official server does, and keeps the second's socket.
#[tokio::test]
async fn two_official_clients_share_presence_and_both_keep_their_sockets() {
    let data = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(data.path());
    server.wait_healthy(LIMIT).await;
    let meeting = server.get_json("/api/records?kind=meeting").await[0].clone();
    let out = run_js(&[
        &ws(&server),
        "presence",
        meeting["url"].as_str().unwrap(),
        "Fatima lit le procès-verbal · فاطمة تقرأ",
    ]);
    assert_eq!(
        said(&out, "HEARD ")["said"],
        "Fatima lit le procès-verbal · فاطمة تقرأ"
    );
    assert!(out.contains("SAME SOCKET"), "{out}");
    assert!(out.contains("ERRORS []"), "{out}");
}

/// An agreement's parties are record links: the official client, which
/// writes raw changes past the edit API, may add a city's link, and text is
/// refused with its path and held, the record keeping its parties until a
/// coordinator accepts it.
#[tokio::test]
async fn the_official_client_may_add_only_record_links_to_an_agreements_parties() {
    let data = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(data.path());
    server.wait_healthy(LIMIT).await;
    let agreement = server.get_json("/api/records?kind=agreement").await[0].clone();
    let id = agreement["id"].as_str().unwrap().to_owned();
    let parties = |record: &serde_json::Value| record["record"]["parties"].clone();
    let before = parties(&server.get_json(&format!("/api/records/{id}")).await);
    let cities = server.get_json("/api/records?kind=city").await;
    let city = cities
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["url"].as_str().unwrap().to_owned())
        .find(|url| !before.as_array().unwrap().contains(&json!(url)))
        .expect("a city that is not a party");
    let url = agreement["url"].as_str().unwrap();

    let out = run_js(&[&ws(&server), "party", url, &city]);
    assert!(out.contains("KEPT"), "{out}");
    let after = parties(&server.get_json(&format!("/api/records/{id}")).await);
    assert!(after.as_array().unwrap().contains(&json!(city)), "{after}");

    let out = run_js(&[&ws(&server), "party", url, "Smara"]);
    let refused = said(&out, "REFUSED ");
    assert_eq!(refused["refusal"]["code"], "invalid", "{refused}");
    assert_eq!(refused["refusal"]["path"], "/parties/Smara", "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("not a record link"),
        "{refused}"
    );
    let held = server.get_json("/api/quarantine").await;
    assert_eq!(held[0]["doc_id"], json!(id), "{held}");
    let kept = parties(&server.get_json(&format!("/api/records/{id}")).await);
    assert_eq!(kept, after, "the record keeps its parties");
    // A coordinator who judges it may let it in, as an older app's chip
    // would have been: such members read as written.
    let accepted = reqwest::Client::new()
        .post(server.url(&format!("/api/quarantine/{}/accept", held[0]["id"])))
        .bearer_auth(&server.token)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 200, "{:?}", accepted.text().await);
    let taken = parties(&server.get_json(&format!("/api/records/{id}")).await);
    assert!(
        taken.as_array().unwrap().contains(&json!("Smara")),
        "{taken}"
    );
}

#[tokio::test]
async fn a_record_created_by_the_official_client_reads_in_rust_and_back() {
    let data = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(data.path());
    server.wait_healthy(LIMIT).await;

    // JavaScript writes, Rust reads.
    let out = run_js(&[&ws(&server), "create"]);
    let url = out
        .lines()
        .find_map(|l| l.strip_prefix("URL "))
        .expect("a URL")
        .to_owned();
    let id: twinsync_shared::DocumentId = url
        .parse::<twinsync_shared::AutomergeUrl>()
        .unwrap()
        .document_id;
    let mut rust = TestPeer::new("rust-reader");
    rust.connect(&server).await;
    rust.open(id);
    rust.sync_until(LIMIT, |p| p.kind_of(id) == Some(Kind::Report))
        .await;
    let Record::Report(r) = rust.record(id) else {
        panic!()
    };
    assert_eq!(r.title.fr.as_deref(), Some("Rapport écrit en JavaScript"));
    assert_eq!(r.text, "Écrit par le client officiel.");

    // Rust writes, JavaScript reads.
    let person = rust.create(
        Kind::Person,
        json!({"name": {"ar": "فاطمة سيدة", "fr": "Fatima Saida"}, "roles": ["mayor"]}),
    );
    let heads = rust.heads(person);
    rust.sync_until_acked(LIMIT, person, &heads).await;
    let out = run_js(&[&ws(&server), "read", &person.url().to_string()]);
    let doc = said(&out, "DOC ");
    assert_eq!(doc["kind"], "person");
    assert_eq!(doc["name"]["ar"], "فاطمة سيدة");
    assert_eq!(doc["roles"]["mayor"], true);
}

/// The official client asks for a record before its creator's changes
/// reach the server: it is told the record is unavailable, and then
/// offered it once they arrive, as `repo.findWithProgress` expects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_client_told_a_record_is_unavailable_gets_it_when_it_arrives() {
    let data = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(data.path());
    server.wait_healthy(LIMIT).await;
    let mut creator = TestPeer::new("oakland-phone");
    let report = creator.create(
        Kind::Report,
        json!({"title": {"en": "Visit to Oakland", "ar": "زيارة أوكلاند"}, "report_type": "visit", "date": "2026-12-01"}),
    );
    let mut child = node(&[&ws(&server), "await", &report.url().to_string()])
        .spawn()
        .expect("node runs");
    let (tx, lines) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().expect("piped");
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let next = |want: &str| -> String {
        loop {
            let line = lines
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|e| panic!("no {want} from the official client: {e}"));
            assert!(
                !line.starts_with("TIMEOUT") && !line.starts_with("ERROR"),
                "{line}"
            );
            if line.starts_with(want) {
                return line;
            }
        }
    };
    tokio::task::block_in_place(|| next("UNAVAILABLE"));

    creator.connect(&server).await;
    let heads = creator.heads(report);
    creator.sync_until_acked(LIMIT, report, &heads).await;
    let line = tokio::task::block_in_place(|| next("DOC "));
    let doc: serde_json::Value = serde_json::from_str(&line["DOC ".len()..]).unwrap();
    assert_eq!(doc["title"]["ar"], "زيارة أوكلاند");
    assert!(child.wait().expect("node ends").success());
}

/// A device past its documents a minute is refused a record for now. The
/// official client reads no `refusal` and only logs an `error`: asked for
/// a record, it is also told the record is unavailable, so its `find`
/// settles at once rather than wait for ever.
#[tokio::test]
async fn the_official_client_refused_a_record_for_now_is_told_it_is_unavailable() {
    let data = tempfile::tempdir().unwrap();
    let server =
        ServerProcess::start_with(data.path(), &[("TWINSYNC_DEVICE_DOCS_PER_MINUTE", "1")]);
    server.wait_healthy(LIMIT).await;
    let meeting = server.get_json("/api/records?kind=meeting").await[0].clone();
    let project = server.get_json("/api/records?kind=project").await[0].clone();
    let first = run_js(&[&ws(&server), "read", meeting["url"].as_str().unwrap()]);
    assert_eq!(said(&first, "DOC ")["kind"], "meeting");
    let started = std::time::Instant::now();
    let Output { status, stdout, .. } =
        node(&[&ws(&server), "read", project["url"].as_str().unwrap()])
            .output()
            .expect("node runs");
    let out = String::from_utf8_lossy(&stdout);
    assert!(!status.success(), "{out}");
    assert!(
        out.contains("ERROR") && out.contains("unavailable"),
        "{out}"
    );
    assert!(!out.contains("TIMEOUT"), "{out}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
}

/// A device past its documents a minute is refused a record for now. The
/// official client, refused a `sync` for a record it made, only logs the
/// `error`, and sends nothing more until its heads change: the server takes
/// the message up again itself once the device may open another record, and
/// the record reaches it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_client_refused_a_new_record_for_now_has_it_taken_once_the_minute_allows() {
    let app = spawn_app_with(|s| {
        s.device_docs_per_minute = 1;
        s.rate_window_secs = 3;
    })
    .await;
    let ws = format!("ws://{}/sync?token={}", app.addr, app.token);
    let meeting = format!("automerge:{}", app.first("meeting").await);
    let first = {
        let (ws, meeting) = (ws.clone(), meeting.clone());
        tokio::task::spawn_blocking(move || run_js(&[&ws, "read", &meeting]))
            .await
            .unwrap()
    };
    assert_eq!(said(&first, "DOC ")["kind"], "meeting");
    let made = tokio::task::spawn_blocking(move || run_js(&[&ws, "create"]))
        .await
        .unwrap();
    let url = made
        .lines()
        .find_map(|l| l.strip_prefix("URL "))
        .unwrap_or_else(|| panic!("{made}"));
    let id = url.trim_start_matches("automerge:");
    let stored = app.get_json(&format!("/api/records/{id}")).await;
    assert_eq!(stored["record"]["kind"], "report", "{stored}");
    // It was refused first: taken up again, not let through.
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("twinsync_rate_limited_total ") && !l.ends_with(" 0")),
        "{metrics}"
    );
}

/// The official client with storage of its own (`NodeFSStorageAdapter`)
/// joins under its storage id, and both sides keep their sync state under
/// the other's: each later run takes up from there, hearing what another
/// client wrote meanwhile and sending what it writes.
#[tokio::test]
async fn the_official_client_with_storage_takes_up_where_it_stopped() {
    let data = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(data.path());
    server.wait_healthy(LIMIT).await;
    let meeting = server.get_json("/api/records?kind=meeting").await[0].clone();
    let (url, id) = (
        meeting["url"].as_str().unwrap(),
        meeting["id"].as_str().unwrap(),
    );
    let store = tempfile::tempdir().unwrap();
    let stored = |args: &[&str]| {
        let mut cmd = node(args);
        cmd.env("PEER_STORE", store.path());
        succeeded(cmd, args)
    };
    let ws = ws(&server);
    assert!(stored(&[&ws, "edit", url, "Première visite. "]).contains("EDITED"));
    assert!(run_js(&[&ws, "edit", url, "Note d'un autre. "]).contains("EDITED"));
    assert!(stored(&[&ws, "watch", url, "Note d'un autre."]).contains("SEEN"));
    assert!(stored(&[&ws, "edit", url, "Deuxième visite · الزيارة الثانية. "]).contains("EDITED"));
    let record = server.get_json(&format!("/api/records/{id}")).await;
    let minutes = record["record"]["minutes"].as_str().unwrap();
    for said in [
        "Première visite. ",
        "Note d'un autre. ",
        "Deuxième visite · الزيارة الثانية. ",
    ] {
        assert!(minutes.contains(said), "{said} not in {minutes}");
    }
    // The client kept the record and its sync state with the server.
    let mut kept = Vec::new();
    let mut dirs = vec![store.path().to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            if entry.path().is_dir() {
                dirs.push(entry.path());
            }
            kept.push(entry.path().to_string_lossy().into_owned());
        }
    }
    assert!(kept.iter().any(|p| p.contains("sync-state")), "{kept:?}");
}
