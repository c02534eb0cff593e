//! Storage: a full disk refuses changes without losing them, compaction,
//! eviction, kept sync states, and the operator's backup and export.

use std::ffi::OsStr;
use std::time::Duration;

use serde_json::json;
use twinsync_shared::DocumentId;
use twinsync_shared::record::{Edit, Kind, Record};
use twinsync_tests::process::{ServerProcess, add_device, binary, twinsync};
use twinsync_tests::{TestPeer, eventually, random_text, spawn_app, spawn_app_with};

const LIMIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn a_full_disk_refuses_the_change_keeps_serving_reads_and_loses_nothing() {
    let app = spawn_app().await;
    let mut p = TestPeer::new("field-phone");
    p.connect(&app).await;
    app.hub
        .store
        .set_size_limit(Some(app.hub.store.size().unwrap()))
        .unwrap();

    // A long report (of text that does not compress) does not fit in what is left.
    let long = random_text(
        0x2545_f491,
        "ابتثجحخدذرزسشصضطظعغفقكلمنهويabcdefghijklmnopqrstuvwxyz ",
        200_000,
    );
    let report = p.create(Kind::Report, json!({"title": {"fr": "Rapport"}, "report_type": "field", "date": "2026-11-20", "text": long}));
    let heads = p.heads(report);
    p.sync_until(LIMIT, |p| p.seen.closed).await;
    assert!(
        p.seen.errors.iter().any(|e| e.contains("could not store")),
        "{:?}",
        p.seen.errors
    );
    // With the code an app says in the person's language, and no quarantine.
    let refusal = p.seen.refusals.iter().find(|r| r.document_id == report);
    let refusal = refusal.unwrap_or_else(|| panic!("{:?}", p.seen.refusals));
    assert_eq!(
        (refusal.code.as_str(), refusal.quarantine),
        ("not-stored", None)
    );
    assert!(
        p.seen.closed,
        "the server closes so the client resends on reconnect"
    );
    assert!(
        p.acked.get(&report).is_none_or(|h| *h != heads),
        "a change that was not stored was acknowledged"
    );
    // Reads go on, and the failure is counted.
    assert!(
        app.get_json("/api/records?kind=meeting")
            .await
            .as_array()
            .unwrap()
            .len()
            == 1
    );
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("twinsync_storage_errors_total ") && !l.ends_with(" 0")),
        "{metrics}"
    );
    let full = |metrics: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("twinsync_storage_full_total "))
            .map(|n| n.parse::<u64>().unwrap())
    };
    let full_writes = full(&metrics).unwrap_or_else(|| panic!("{metrics}"));
    assert!(full_writes >= 1, "{metrics}");

    // A coordinator's write through the API is told the storage is full,
    // not to try again shortly. An invite may fit in a page the database
    // already has: a few more do not.
    let body = json!({"name": "Aïcha's phone", "role": "delegate", "cities": ["Smara"]});
    let mut refused = None;
    for _ in 0..500 {
        let res = app.post_as("/api/invites", &app.token, &body).await;
        if res.status() != 201 {
            refused = Some((
                res.status().as_u16(),
                res.json::<serde_json::Value>().await.unwrap(),
            ));
            break;
        }
    }
    let (status, said) = refused.expect("500 invites fit in a full database");
    assert_eq!(
        (status, said["code"].as_str()),
        (507, Some("storage-full")),
        "{said}"
    );

    // Space comes back; the phone reconnects and its report arrives whole.
    app.hub.store.set_size_limit(None).unwrap();
    p.connect(&app).await;
    p.sync_until_acked(LIMIT, report, &heads).await;
    let stored = app.get_json(&format!("/api/records/{report}")).await;
    assert_eq!(
        stored["record"]["text"].as_str().unwrap().chars().count(),
        long.chars().count()
    );
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert_eq!(
        full(&metrics),
        Some(full_writes),
        "none refused since: {metrics}"
    );
}

#[tokio::test]
async fn a_record_the_server_cannot_read_is_refused_with_a_code_until_it_can() {
    let app = spawn_app().await;
    let meetings = app.get_json("/api/records?kind=meeting").await;
    let id: DocumentId = meetings[0]["id"].as_str().unwrap().parse().unwrap();
    // The list of stored records vanishes from under the server (a damaged
    // file, an operator's mistake) before anyone opens the record.
    let db = rusqlite::Connection::open(app.data_dir.join("twinsync.db")).unwrap();
    db.execute_batch("ALTER TABLE documents RENAME TO documents_gone")
        .unwrap();
    let (p, refusal) = refused_when_opened(&app, id).await;
    assert_eq!(
        (
            refusal.document_id,
            refusal.code.as_str(),
            refusal.path.as_str()
        ),
        (id, "unreadable", "/"),
        "{:?}",
        p.seen.errors
    );
    assert_eq!(refusal.quarantine, None);
    assert!(
        p.seen.errors[0].contains("cannot be opened on the server"),
        "{:?}",
        p.seen.errors
    );
    assert!(p.heads(id).is_empty(), "nothing of the record was sent");
    // Once the list is back, the record is served again.
    db.execute_batch("ALTER TABLE documents_gone RENAME TO documents")
        .unwrap();
    served_to_a_second_phone(&app, id).await;
}

/// A phone that opens `id` and is refused it: the phone and the refusal.
async fn refused_when_opened(
    app: &twinsync_tests::TestApp,
    id: DocumentId,
) -> (TestPeer, twinsync_shared::protocol::Refusal) {
    let mut p = TestPeer::new("field-phone");
    p.connect(app).await;
    p.open(id);
    p.sync_until(LIMIT, |p| !p.seen.refusals.is_empty()).await;
    let refusal = p.seen.refusals.first().expect("a refusal").clone();
    (p, refusal)
}

/// Another phone opening `id` gets it.
async fn served_to_a_second_phone(app: &twinsync_tests::TestApp, id: DocumentId) {
    let mut q = TestPeer::new("second-phone");
    q.connect(app).await;
    q.open(id);
    q.sync_until(Duration::from_secs(30), |q| !q.heads(id).is_empty())
        .await;
    assert!(!q.heads(id).is_empty(), "{:?}", q.seen.errors);
}

/// A record's creator may write it; a creator that cannot be read is not
/// taken as nobody (which would refuse the creator's own edits): the record
/// is unreadable until it can be read.
#[tokio::test]
async fn a_record_whose_creator_cannot_be_read_is_refused_until_it_can() {
    let app = spawn_app().await;
    let id = app.first("report").await;
    let db = rusqlite::Connection::open(app.data_dir.join("twinsync.db")).unwrap();
    db.execute_batch("ALTER TABLE documents RENAME COLUMN creator TO creator_gone")
        .unwrap();
    let (p, refusal) = refused_when_opened(&app, id).await;
    assert_eq!(
        (refusal.document_id, refusal.code.as_str()),
        (id, "unreadable"),
        "{:?}",
        p.seen.errors
    );
    assert!(p.heads(id).is_empty(), "nothing of the record was sent");
    db.execute_batch("ALTER TABLE documents RENAME COLUMN creator_gone TO creator")
        .unwrap();
    // The task tries an unreadable record again at most every 10 s.
    tokio::time::sleep(Duration::from_secs(11)).await;
    served_to_a_second_phone(&app, id).await;
}

#[tokio::test]
async fn chunks_are_compacted_into_a_snapshot_without_loss() {
    let app = spawn_app_with(|s| s.compact_chunks = 4).await;
    let meeting = app.first("meeting").await;
    let mut p = TestPeer::new("typist");
    p.connect(&app).await;
    p.fetch(meeting, LIMIT).await;
    for i in 0..10 {
        p.edit(
            meeting,
            "type",
            &[Edit::SpliceText {
                path: "/minutes".into(),
                index: 0,
                delete: 0,
                insert: format!("[{i}]"),
            }],
        );
        let heads = p.heads(meeting);
        p.sync_until_acked(LIMIT, meeting, &heads).await;
    }
    // Compaction runs in the background: give it a bounded while.
    let mut stats = app.hub.store.chunk_stats(meeting).unwrap();
    for _ in 0..100 {
        if stats.incremental_count < 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        stats = app.hub.store.chunk_stats(meeting).unwrap();
    }
    assert!(stats.snapshot_bytes > 0, "no snapshot: {stats:?}");
    assert!(stats.incremental_count < 4, "chunks not folded: {stats:?}");
    let stored = app.get_json(&format!("/api/records/{meeting}")).await;
    assert!(
        stored["record"]["minutes"]
            .as_str()
            .unwrap()
            .starts_with("[9][8][7][6][5][4][3][2][1][0]")
    );
}

/// An evicted task may still be compacting when a new task for the same
/// record has loaded it and appended a chunk: the compaction must delete
/// only the chunks its own snapshot contains.
#[tokio::test]
async fn a_compaction_keeps_chunks_another_task_wrote_meanwhile() {
    use automerge::transaction::Transactable;
    use twinsync_server::document::summarise;

    let app = spawn_app().await;
    let store = &app.hub.store;
    let city = app.first("city").await;
    let (old_task, old_chunks) = store.load_chunks(city).unwrap().unwrap();

    // The new task writes a change the old task never saw.
    let (mut new_task, _) = store.load_chunks(city).unwrap().unwrap();
    let before = new_task.get_heads();
    let mut tx = new_task.transaction();
    tx.put(automerge::ROOT, "country", "Mali").unwrap();
    tx.commit();
    let chunk = new_task.save_after(&before);
    store
        .append(city, &chunk, &summarise(&new_task), &[], 1)
        .unwrap();

    // The old task compacts what it loaded.
    store
        .compact(city, &old_task.save(), &old_chunks, 2)
        .unwrap();

    let merged = store.load(city).unwrap().unwrap();
    assert_eq!(merged.get_heads(), new_task.get_heads());
}

/// Two saved documents of one record, as a compaction racing a new task
/// for the record could leave them (the new task never learns of the
/// snapshot): counted twice against the size limit, which could refuse
/// every append and so the compaction that would fold them. The record's
/// next task folds them as it loads.
#[tokio::test]
async fn a_record_stored_as_two_snapshots_is_folded_into_one_when_loaded() {
    let app = spawn_app().await;
    let store = &app.hub.store;
    let city = app.first("city").await;
    let (doc, chunks) = store.load_chunks(city).unwrap().unwrap();
    store.compact(city, &doc.save(), &chunks, 1).unwrap();
    // A task that loaded the same chunks before that compaction.
    store.compact(city, &doc.save(), &chunks, 2).unwrap();
    assert_eq!(store.chunk_stats(city).unwrap().snapshot_count, 2);

    let mut p = TestPeer::new("reader");
    p.connect(&app).await;
    p.fetch(city, LIMIT).await;
    eventually(LIMIT, "one snapshot left", || {
        store.chunk_stats(city).unwrap().snapshot_count == 1
    })
    .await;
    let stats = store.chunk_stats(city).unwrap();
    assert_eq!(stats.incremental_count, 0, "{stats:?}");
    assert_eq!(
        store.load(city).unwrap().unwrap().get_heads(),
        doc.get_heads()
    );
}

#[tokio::test]
async fn idle_documents_leave_memory_and_sync_states_are_kept() {
    let app = spawn_app_with(|s| s.idle_evict_secs = 1).await;
    let meeting = app.first("meeting").await;
    let mut p = TestPeer::new("phone").with_storage("phone-storage-1");
    p.connect(&app).await;
    p.fetch(meeting, LIMIT).await;
    assert_eq!(app.hub.metrics.loaded_documents.get(), 1);
    p.disconnect().await;
    eventually(LIMIT, "the idle document leaves memory", || {
        app.hub.metrics.loaded_documents.get() == 0
    })
    .await;
    assert!(
        app.hub
            .store
            .load_sync_state(meeting, "phone-storage-1", &app.device)
            .unwrap()
            .is_some()
    );
    // An evicted document loads again on demand.
    p.connect(&app).await;
    p.edit(
        meeting,
        "after eviction",
        &[Edit::Set {
            path: "/time".into(),
            value: json!("17:00"),
        }],
    );
    let heads = p.heads(meeting);
    p.sync_until_acked(LIMIT, meeting, &heads).await;
}

#[tokio::test]
async fn backup_and_export_work_while_the_server_runs() {
    let data = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(data.path());
    server.wait_healthy(LIMIT).await;
    let mut p = TestPeer::new("writer");
    p.connect(&server).await;
    let city = p.create(
        Kind::City,
        json!({"name": {"fr": "Tan-Tan", "ar": "طانطان"}, "country": "Morocco"}),
    );
    let heads = p.heads(city);
    p.sync_until_acked(LIMIT, city, &heads).await;

    let backup = data.path().join("backup.db");
    let arg = OsStr::new;
    twinsync([
        arg("backup"),
        arg("--data-dir"),
        data.path().as_os_str(),
        backup.as_os_str(),
    ]);
    let copy = twinsync_server::store::Store::open(&backup).unwrap();
    let doc = copy
        .load(city)
        .unwrap()
        .expect("the new city is in the backup");
    let Ok(Record::City(c)) = twinsync_shared::record::RecordDoc::from_automerge(doc).record()
    else {
        panic!()
    };
    assert_eq!(c.name.ar.as_deref(), Some("طانطان"));

    let export = || -> Vec<serde_json::Value> {
        let stdout = twinsync([
            OsStr::new("export"),
            OsStr::new("--data-dir"),
            data.path().as_os_str(),
        ]);
        let all: serde_json::Value = serde_json::from_slice(&stdout).unwrap();
        all.as_array().unwrap().clone()
    };
    let all = export();
    assert_eq!(all.len(), 38);
    assert!(all.iter().any(|r| r["record"]["name"]["fr"] == "Tan-Tan"));

    // A record damaged in storage is named with why; the others are
    // exported all the same.
    assert!(
        crate::damage_chunks(data.path(), city) > 0,
        "the city has stored chunks"
    );
    let all = export();
    assert_eq!(all.len(), 38);
    let damaged: Vec<_> = all
        .iter()
        .filter(|r| r.get("unreadable").is_some())
        .collect();
    assert_eq!(damaged.len(), 1, "{damaged:?}");
    assert_eq!(damaged[0]["url"], city.url().to_string());
    assert_eq!(all.iter().filter(|r| r.get("record").is_some()).count(), 37);
}

/// A record damaged on the server cannot say which of a revoked device's
/// changes it holds: all of them wait for review, rather than the socket
/// closing at each try and the device never handing in anything.
#[tokio::test]
async fn a_revoked_devices_hand_in_to_a_record_damaged_on_the_server_waits_for_review() {
    let app = spawn_app().await;
    let (city, token, mut phone) = crate::city_delegate(&app, "lost-phone", LIMIT).await;
    // A change the server took, its origin noted, before the revocation.
    phone.edit(
        city,
        "delivered",
        &[Edit::Set {
            path: "/name/fr".into(),
            value: json!("Smara (livrée)"),
        }],
    );
    let delivered = phone.heads(city);
    phone.sync_until_acked(LIMIT, city, &delivered).await;
    app.revoke(&token).await;
    phone.sync_until(LIMIT, |p| p.seen.closed).await;
    phone.edit(
        city,
        "field note",
        &[Edit::Set {
            path: "/notes".into(),
            value: json!("ملاحظة ميدانية — note de terrain"),
        }],
    );
    assert!(crate::damage_chunks(&app.data_dir, city) > 0);
    phone.connect(&app).await;
    let deadline = std::time::Instant::now() + LIMIT;
    let held = loop {
        let queue = app.get_json("/api/quarantine?status=pending").await;
        if let Some(entry) = queue
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["doc_id"] == city.to_string())
        {
            break entry.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "nothing handed in; the phone was told {:?}",
            phone.seen.errors
        );
        phone.sync(Duration::from_millis(200), LIMIT).await;
    };
    assert!(
        held["reason"].as_str().unwrap().contains("revoked"),
        "{held}"
    );
    // The damaged record cannot vouch for what it once took: that goes
    // to review too.
    let hashes = held["hashes"].as_array().unwrap();
    assert!(
        delivered
            .iter()
            .all(|h| hashes.contains(&json!(h.to_string()))),
        "{held}"
    );
    assert!(
        !phone.seen.errors.iter().any(|e| e.contains("not kept")),
        "{:?}",
        phone.seen.errors
    );
}

#[tokio::test]
async fn a_revoked_devices_hand_in_is_not_acknowledged_when_the_disk_is_full() {
    let app = spawn_app().await;
    let (city, token, mut phone) = crate::city_delegate(&app, "lost-phone", LIMIT).await;
    app.revoke(&token).await;
    phone.sync_until(LIMIT, |p| p.seen.closed).await;

    // Offline, the phone writes a long note; the server's disk is full when
    // it hands the note in.
    let note = random_text(0x9e37_79b9, "ابتثجحخدذرزسشabcdefghijklm ", 100_000);
    phone.edit(
        city,
        "field note",
        &[Edit::Set {
            path: "/notes".into(),
            value: json!(note),
        }],
    );
    let heads = phone.heads(city);
    app.hub
        .store
        .set_size_limit(Some(app.hub.store.size().unwrap()))
        .unwrap();
    phone.connect(&app).await;
    phone
        .sync_until(LIMIT, |p| {
            p.seen.errors.iter().any(|e| e.contains("not kept"))
        })
        .await;
    let error = phone.seen.errors.iter().find(|e| e.contains("not kept"));
    assert!(
        error.is_some_and(|e| e.contains("the server's storage is full")),
        "{:?}",
        phone.seen.errors
    );
    assert!(
        phone.acked.get(&city).is_none_or(|h| *h != heads),
        "a hand-in that was not stored was acknowledged"
    );
    phone.sync_until(LIMIT, |p| p.seen.closed).await;
    assert!(
        phone.seen.closed,
        "the socket stays open, so nothing is sent again"
    );
    let queue = app.get_json("/api/quarantine?status=pending").await;
    assert!(queue.as_array().unwrap().is_empty(), "{queue}");

    // Space comes back; the phone reconnects, sends the note again, and it
    // is kept.
    app.hub.store.set_size_limit(None).unwrap();
    phone.connect(&app).await;
    phone.sync_until_acked(LIMIT, city, &heads).await;
    let queue = app.get_json("/api/quarantine?status=pending").await;
    assert!(
        queue
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["doc_id"] == city.to_string()),
        "{queue}"
    );
}

/// `twinsync restore` with `args`, expected to fail: its standard error.
fn restore_refused(data_dir: &std::path::Path, file: &std::path::Path) -> String {
    let out = std::process::Command::new(twinsync_tests::process::binary())
        .arg("restore")
        .arg("--data-dir")
        .arg(data_dir)
        .arg(file)
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    assert!(!out.status.success(), "restore should have been refused");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn a_restored_backup_gets_back_what_phones_hold_and_keeps_revocations_made_since() {
    use twinsync_tests::process::add_device;

    let data = tempfile::tempdir().unwrap();
    let dir = data.path();
    let server = ServerProcess::start(dir);
    server.wait_healthy(LIMIT).await;
    let observer = |dir| add_device(dir, "observer", &[]);
    let revoked_later = observer(dir);
    let mut p = TestPeer::new("phone");
    p.connect(&server).await;
    // An observer's phone, which holds every record and may write none.
    let mut o = TestPeer::new("observer-phone").with_token(&observer(dir));
    o.connect(&server).await;
    let before = p.create(
        Kind::City,
        json!({"name": {"fr": "Tan-Tan", "ar": "طانطان"}, "country": "Morocco"}),
    );
    let heads = p.heads(before);
    p.sync_until_acked(LIMIT, before, &heads).await;
    let backup = dir.join("backup.db");
    back_up(dir, &backup);

    // After the backup: a record, a device, a revocation.
    let after = p.create(
        Kind::City,
        json!({"name": {"fr": "Guelmim", "ar": "كلميم"}, "country": "Morocco"}),
    );
    let heads = p.heads(after);
    p.sync_until_acked(LIMIT, after, &heads).await;
    o.fetch(after, LIMIT).await;
    o.sync_until(LIMIT, |o| o.has_changes(after, &heads)).await;
    let added_later = observer(dir);
    // A device's id is its token's part before the dot.
    let (revoked_id, _) = revoked_later.split_once('.').unwrap();
    twinsync([
        "device",
        "revoke",
        "--data-dir",
        &dir.to_string_lossy(),
        revoked_id,
    ]);

    // Not under a running server.
    let refused = restore_refused(dir, &backup);
    assert!(
        refused.contains("stop it first")
            && refused.contains(&format!("pid {}", server.child.id())),
        "{refused}"
    );
    // Nor does a second server start over the same data directory.
    let second = std::process::Command::new(twinsync_tests::process::binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "{said}");
    assert!(said.contains("stop it first"), "{said}");
    // Nor from something that is not a backup; the database stays.
    let not_a_backup = dir.join("notes.txt");
    std::fs::write(&not_a_backup, "minutes of the council, not a database").unwrap();
    server.kill9();
    let refused = restore_refused(dir, &not_a_backup);
    assert!(refused.contains("is not a SQLite database"), "{refused}");

    let out = std::process::Command::new(twinsync_tests::process::binary())
        .arg("restore")
        .arg("--data-dir")
        .arg(dir)
        .arg(&backup)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("devices and invites are as the database replaced holds them"),
        "{said}"
    );

    // What it replaced is kept whole, with its WAL: the later city is there.
    let aside = folder_named(dir, "before-restore-").expect("the replaced database is kept");
    assert!(said.contains(&aside.display().to_string()), "{said}");
    let replaced = twinsync_server::store::Store::open(&aside.join("twinsync.db")).unwrap();
    assert!(replaced.load(after).unwrap().is_some());
    drop(replaced);

    let server = ServerProcess::start(dir);
    server.wait_healthy(LIMIT).await;
    assert!(
        !server.ids("city").await.contains(&after),
        "the backup was made before the later city"
    );
    let status = |token: String| {
        let url = server.url("/api/records");
        async move {
            reqwest::Client::new()
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(
        status(added_later).await,
        200,
        "a device added since the backup"
    );
    assert_eq!(
        status(revoked_later).await,
        403,
        "a device revoked since the backup stays revoked"
    );

    // The observer's phone sends the later city back first: it may not
    // write it, so it waits for review, kept, not taken in.
    o.connect(&server).await;
    o.sync_until(LIMIT, |o| !o.seen.refusals.is_empty()).await;
    let pending = server.get_json("/api/quarantine?status=pending").await;
    let held: Vec<&serde_json::Value> = pending
        .as_array()
        .unwrap()
        .iter()
        .filter(|q| q["doc_id"] == after.to_string())
        .collect();
    assert_eq!(held.len(), 1, "{pending}");
    assert!(!server.ids("city").await.contains(&after));

    // The writer's phone sends back what the backup lacks, and only then
    // does the restored server say it holds it.
    p.acked.clear();
    p.connect(&server).await;
    p.sync_until_acked(LIMIT, after, &heads).await;
    let record = server.get_json(&format!("/api/records/{after}")).await;
    assert_eq!(record["record"]["name"]["ar"], "كلميم", "{record}");
    assert!(server.ids("city").await.contains(&before));
}

/// The folder in `dir` whose name starts with `prefix`, where a restore
/// or a salvage keeps what it replaced.
fn folder_named(dir: &std::path::Path, prefix: &str) -> Option<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
}

/// `twinsync backup` of the data directory `dir` to `file`.
fn back_up(dir: &std::path::Path, file: &std::path::Path) {
    twinsync([
        OsStr::new("backup"),
        OsStr::new("--data-dir"),
        dir.as_os_str(),
        file.as_os_str(),
    ]);
}

/// The schema version SQLite keeps in the database at `db`.
fn schema_of(db: &std::path::Path) -> i64 {
    rusqlite::Connection::open(db)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap()
}

/// A newer twinsync's commands beside a server that runs an older one:
/// they do not upgrade its database under it (it could not start on it
/// again, nor restore the backups taken since).
#[tokio::test]
async fn a_newer_commands_leave_an_older_servers_database_at_its_schema() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path();
    add_device(dir, "coordinator", &[]);
    let db = dir.join("twinsync.db");
    // As an older twinsync left it, one step behind; a step applied again
    // over it would fail, so any try to migrate shows.
    let older = schema_of(&db) - 1;
    rusqlite::Connection::open(&db)
        .unwrap()
        .pragma_update(None, "user_version", older)
        .unwrap();
    // The older server runs: it holds the directory.
    let server =
        twinsync_server::lock::DataDirLock::acquire(dir, twinsync_server::lock::Use::Serve)
            .unwrap();

    let out = std::process::Command::new(binary())
        .args([
            OsStr::new("device"),
            OsStr::new("list"),
            OsStr::new("--data-dir"),
            dir.as_os_str(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("1 schema step(s) behind this twinsync"),
        "{said}"
    );
    assert!(said.contains("the server's own twinsync binary"), "{said}");
    assert_eq!(schema_of(&db), older);

    // A backup is a copy as it is.
    let copy = dir.join("copy.db");
    back_up(dir, &copy);
    assert_eq!(schema_of(&copy), older);
    assert_eq!(schema_of(&db), older);
    drop(server);
}

/// `twinsync salvage` under the data directory `dir`: its exit status and
/// what it said.
fn salvage(dir: &std::path::Path) -> (bool, String) {
    let out = std::process::Command::new(binary())
        .args([
            OsStr::new("salvage"),
            OsStr::new("--data-dir"),
            dir.as_os_str(),
        ])
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Who delivered each change of record `id`, and when, by hash.
async fn delivered_by(server: &ServerProcess, id: DocumentId) -> Vec<(String, serde_json::Value)> {
    let history = server.get_json(&format!("/api/records/{id}/history")).await;
    let mut entries: Vec<(String, serde_json::Value)> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["hash"].to_string(), c["delivered_by"].clone()))
        .collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    entries
}

/// One damaged chunk made a record unreadable; `salvage` keeps every chunk
/// in files, gives the record back as far as the chunks that load reach,
/// and the phone that wrote the rest sends it back.
#[tokio::test]
async fn a_record_a_damaged_chunk_made_unreadable_is_salvaged_and_phones_send_back_the_rest() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path();
    let server = ServerProcess::start(dir);
    server.wait_healthy(LIMIT).await;
    // A phone whose sync state the server keeps.
    let mut p = TestPeer::new("phone").with_storage("phone-storage");
    p.connect(&server).await;
    let id = p.create(
        Kind::City,
        json!({"name": {"fr": "Tan-Tan", "ar": "طانطان"}, "country": "Morocco"}),
    );
    let first = p.heads(id);
    p.sync_until_acked(LIMIT, id, &first).await;
    // Two more edits, each stored as its own chunk.
    for name in ["Guelmim", "Tarfaya"] {
        let set = Edit::Set {
            path: "/name/fr".into(),
            value: json!(name),
        };
        p.edit(id, name, &[set]);
        let heads = p.heads(id);
        p.sync_until_acked(LIMIT, id, &heads).await;
    }
    let last = p.heads(id);
    // And a record whose one chunk will be damaged: nothing of it loads.
    let lost = p.create(
        Kind::City,
        json!({"name": {"fr": "Assa", "ar": "آسا"}, "country": "Morocco"}),
    );
    let lost_heads = p.heads(lost);
    p.sync_until_acked(LIMIT, lost, &lost_heads).await;
    // Another coordinator's phone holds them too.
    let mut q = TestPeer::new("second-phone").with_token(&add_device(dir, "coordinator", &[]));
    q.connect(&server).await;
    for (record, heads) in [(id, &last), (lost, &lost_heads)] {
        q.fetch(record, LIMIT).await;
        q.sync_until(LIMIT, |q| q.has_changes(record, heads)).await;
    }
    let delivered = delivered_by(&server, id).await;
    assert!(
        delivered.len() == 3 && delivered.iter().all(|(_, by)| by["device"].is_string()),
        "{delivered:?}"
    );
    let db = dir.join("twinsync.db");
    let chunks = || -> Vec<i64> {
        let conn = rusqlite::Connection::open(&db).unwrap();
        let mut stmt = conn
            .prepare("SELECT id FROM chunks WHERE doc_id = ?1 ORDER BY id")
            .unwrap();
        stmt.query_map([id.to_string()], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    let stored = chunks();
    assert_eq!(stored.len(), 3, "one chunk per edit");

    // Not under a running server.
    let (ok, said) = salvage(dir);
    assert!(!ok && said.contains("stop it first"), "{said}");
    server.kill9();
    // Nothing damaged yet: nothing changes.
    let (ok, said) = salvage(dir);
    assert!(ok && said.contains("nothing to salvage"), "{said}");
    assert_eq!(chunks(), stored);
    // The middle chunk's bytes damaged (a bad sector, a bug).
    let conn = rusqlite::Connection::open(&db).unwrap();
    let mut bytes: Vec<u8> = conn
        .query_row("SELECT data FROM chunks WHERE id = ?1", [stored[1]], |r| {
            r.get(0)
        })
        .unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x5a;
    conn.execute(
        "UPDATE chunks SET data = ?1 WHERE id = ?2",
        rusqlite::params![bytes, stored[1]],
    )
    .unwrap();
    conn.execute(
        "UPDATE chunks SET data = X'00ff00ff' WHERE doc_id = ?1",
        [lost.to_string()],
    )
    .unwrap();
    drop(conn);

    let (ok, said) = salvage(dir);
    assert!(ok, "{said}");
    assert!(
        said.contains(&format!(
            "record {id} (city \"Tan-Tan\"): 1 damaged chunk set aside, 1 change kept; \
             phones send back the rest (2 changes delivered by devices"
        )) && said.contains(&format!("incremental chunk {}", stored[1])),
        "{said}"
    );
    // Every chunk it had, the damaged one as it is, in the folder named.
    let aside = folder_named(dir, "salvaged-").expect("the chunks are kept");
    assert!(said.contains(&aside.display().to_string()), "{said}");
    let kept =
        std::fs::read(aside.join(format!("{id}.{}.incremental.automerge", stored[1]))).unwrap();
    assert_eq!(kept, bytes);
    assert!(
        said.contains(&format!(
            "record {lost} (city \"Assa\"): 1 damaged chunk set aside, 0 changes kept"
        )),
        "{said}"
    );
    // Three chunks and the database as it was.
    assert_eq!(std::fs::read_dir(&aside).unwrap().count(), 4 + 1);
    assert!(said.contains("twinsync-before-salvage.db"), "{said}");
    assert_eq!(chunks().len(), 1, "one snapshot of what loads");

    // The server reads the record as its first chunk left it...
    let server = ServerProcess::start(dir);
    server.wait_healthy(LIMIT).await;
    let name = |record: serde_json::Value| record["record"]["name"]["fr"].clone();
    let path = format!("/api/records/{id}");
    let read = server.get_json(&path).await;
    assert_eq!(name(read.clone()), "Tan-Tan", "{read}");
    // ...until a phone that holds the rest syncs, and sends it back.
    q.acked.clear();
    q.connect(&server).await;
    q.sync_until_acked(LIMIT, id, &last).await;
    assert_eq!(name(server.get_json(&path).await), "Tarfaya");
    q.sync_until_acked(LIMIT, lost, &lost_heads).await;
    let back = server.get_json(&format!("/api/records/{lost}")).await;
    assert_eq!(back["record"]["name"]["ar"], "آسا", "{back}");
    // Each change sent back keeps who first delivered it (the first
    // phone's device, not the second's), and when.
    assert_eq!(delivered_by(&server, id).await, delivered);
}
