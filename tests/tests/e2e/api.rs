//! The coordinators' read API, health and metrics.

use std::time::Duration;

use serde_json::json;
use twinsync_shared::record::{Edit, Record};
use twinsync_tests::{TestPeer, spawn_app};

#[tokio::test]
async fn records_are_listed_and_filtered() {
    let app = spawn_app().await;
    let all = app.get_json("/api/records").await;
    assert!(all.as_array().unwrap().len() > 30);
    let agreements = app
        .get_json("/api/records?kind=agreement&status=signed")
        .await;
    let agreements = agreements.as_array().unwrap();
    assert_eq!(agreements.len(), 13);
    for a in agreements {
        assert!(a["url"].as_str().unwrap().starts_with("automerge:"));
        assert_eq!(a["kind"], "agreement");
        assert!(a["title"]["ar"].as_str().unwrap().contains("السمارة"));
    }
    let smara = app
        .get_json("/api/records?kind=city")
        .await
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["title"]["en"] == "Smara")
        .cloned()
        .unwrap();
    let in_smara = app
        .get_json(&format!(
            "/api/records?city={}",
            smara["id"].as_str().unwrap()
        ))
        .await;
    assert!(
        in_smara
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["kind"] == "meeting")
    );
    // An agreement is a city's when the city is one of its parties: every
    // demo agreement is Smara's, and Dakar's are those naming Dakar.
    let of = |city: &str, kind: &str| {
        let path = format!("/api/records?city={city}{kind}");
        let app = &app;
        async move { app.get_json(&path).await.as_array().unwrap().clone() }
    };
    let smara_id = smara["id"].as_str().unwrap();
    let all = app.get_json("/api/records?kind=agreement").await;
    let smaras = of(smara_id, "&kind=agreement").await;
    assert_eq!(smaras.len(), all.as_array().unwrap().len());
    assert!(
        of(smara_id, "")
            .await
            .iter()
            .filter(|r| r["kind"] == "agreement")
            .count()
            == smaras.len()
    );
    let signed = of(smara_id, "&kind=agreement&status=signed").await;
    assert_eq!(signed.len(), 13);
    let dakar = app
        .get_json("/api/records?kind=city")
        .await
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["title"]["fr"] == "Dakar")
        .cloned()
        .unwrap();
    let dakars = of(dakar["id"].as_str().unwrap(), "&kind=agreement").await;
    assert_eq!(dakars.len(), 1, "{dakars:?}");
    assert!(
        dakars[0]["title"]["fr"].as_str().unwrap().contains("Dakar"),
        "{dakars:?}"
    );

    // An agreement whose stored bytes are damaged is left out; the others
    // are still listed.
    let damaged: twinsync_shared::DocumentId = dakars[0]["id"].as_str().unwrap().parse().unwrap();
    assert!(crate::damage_chunks(&app.data_dir, damaged) > 0);
    let after = of(smara_id, "&kind=agreement").await;
    assert_eq!(after.len(), smaras.len() - 1);
    assert!(after.iter().all(|r| r["id"] != dakars[0]["id"]));
}

#[tokio::test]
async fn a_record_its_history_and_its_past() {
    let app = spawn_app().await;
    let meeting = app.first("meeting").await;
    let mut p = TestPeer::new("secretary");
    p.connect(&app).await;
    p.fetch(meeting, Duration::from_secs(10)).await;
    p.edit(
        meeting,
        "Correct the time",
        &[Edit::Set {
            path: "/time".into(),
            value: json!("15:30"),
        }],
    );
    let heads = p.heads(meeting);
    p.sync_until_acked(Duration::from_secs(10), meeting, &heads)
        .await;

    let now = app.get_json(&format!("/api/records/{meeting}")).await;
    assert_eq!(now["record"]["time"], "15:30");
    let history = app
        .get_json(&format!("/api/records/{meeting}/history"))
        .await;
    let last = history.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["message"], "Correct the time");
    assert_eq!(last["fields"], json!(["/time"]));
    assert_eq!(last["delivered_by"]["peer_id"], "secretary");
    assert_eq!(last["delivered_by"]["device_name"], "test coordinator");
    // The newest change of any record comes first in the recent changes.
    let recent = app.get_json("/api/changes?limit=5").await;
    let recent = recent.as_array().unwrap();
    assert_eq!(
        recent.len(),
        1,
        "the demo's seeded changes came from no device"
    );
    assert_eq!(recent[0]["hash"], last["hash"]);
    assert_eq!(recent[0]["record"], meeting.to_string());
    assert_eq!(recent[0]["kind"], "meeting");
    assert_eq!(recent[0]["device_name"], "test coordinator");
    assert_eq!(recent[0]["device_role"], "coordinator");
    assert!(recent[0]["title"]["ar"].is_string());
    // As it stood on the day of the meeting: the demo's afternoon.
    let then = app
        .get_json(&format!("/api/records/{meeting}?at=2025-10-31"))
        .await;
    assert_eq!(then["record"]["time"], "afternoon");
}

#[tokio::test]
async fn the_recent_changes_per_writer_keep_a_record_a_typing_session_came_with() {
    let app = spawn_app().await;
    let meeting = app.first("meeting").await;
    let project = app.first("project").await;
    let mut p = TestPeer::new("delegate-back-online");
    p.connect(&app).await;
    p.fetch(meeting, Duration::from_secs(10)).await;
    p.fetch(project, Duration::from_secs(10)).await;
    // A project's status, then the minutes typed key by key, as a phone
    // back online sends them: whichever comes last, the keys are many.
    p.edit(
        project,
        "Project status",
        &[Edit::Set {
            path: "/status".into(),
            value: json!("on_hold"),
        }],
    );
    let status_change = p.heads(project)[0].to_string();
    let project_heads = p.heads(project);
    p.sync_until_acked(Duration::from_secs(10), project, &project_heads)
        .await;
    for (i, key) in "abcde".chars().enumerate() {
        p.edit(
            meeting,
            "typing",
            &[Edit::SpliceText {
                path: "/minutes".into(),
                index: i,
                delete: 0,
                insert: key.to_string(),
            }],
        );
    }
    let last_key = p.heads(meeting)[0].to_string();
    let meeting_heads = p.heads(meeting);
    p.sync_until_acked(Duration::from_secs(10), meeting, &meeting_heads)
        .await;

    let hashes = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|c| c["hash"].as_str().unwrap().to_owned())
            .collect()
    };
    // The last three changes are keys: the project's change is not among
    // them.
    let all = hashes(&app.get_json("/api/changes?limit=3").await);
    assert_eq!(all.len(), 3);
    assert!(!all.contains(&status_change), "{all:?}");
    // Per writer: the newest key, and the project's change.
    let per = app.get_json("/api/changes?limit=3&per=writer").await;
    let per_hashes = hashes(&per);
    assert_eq!(per_hashes.len(), 2, "{per}");
    assert_eq!(per_hashes[0], last_key, "{per}");
    assert_eq!(per_hashes[1], status_change, "{per}");
    assert_eq!(per[1]["record"], project.to_string());
}

/// Every API failure answers in JSON, with what to fix: a query that does
/// not parse, a kind mistyped (which listed nothing before), a path that is
/// no route, a method a route does not take, a batch number that is not
/// one, a body that is not what the route takes.
#[tokio::test]
async fn api_mistakes_are_answered_in_json() {
    let app = spawn_app().await;
    let client = reqwest::Client::new();
    for (method, path, status, said) in [
        ("GET", "/api/changes?limit=abc", 400, "limit"),
        (
            "GET",
            "/api/changes?per=record",
            400,
            "`record` is not a grouping",
        ),
        (
            "GET",
            "/api/records?kind=agreements",
            400,
            "`agreements` is not a kind",
        ),
        ("GET", "/api/records/x/history?nothing", 400, "document id"),
        ("GET", "/api/nope", 404, "no API route /api/nope"),
        ("DELETE", "/api/devices/x", 405, "does not take DELETE"),
        ("GET", "/api/quarantine/abc", 400, "abc"),
        ("POST", "/api/quarantine/first/accept", 400, "first"),
    ] {
        let res = client
            .request(method.parse().unwrap(), app.url(path))
            .bearer_auth(&app.token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), status, "{method} {path}");
        let kind = res.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(
            kind.starts_with("application/json"),
            "{method} {path}: {kind}"
        );
        let body: serde_json::Value = res.json().await.unwrap();
        let error = body["error"].as_str().unwrap_or_default();
        assert!(error.contains(said), "{method} {path}: {body}");
    }
    // A body that is not what the route takes, said in JSON too.
    for (kind, body, status, said) in [
        (
            "application/json",
            r#"{"name": "Fatima", "role": "admin"}"#,
            422,
            "admin",
        ),
        ("application/json", "{name: Fatima", 400, "JSON"),
        (
            "text/plain",
            r#"{"name": "Fatima", "role": "delegate"}"#,
            415,
            "Content-Type",
        ),
    ] {
        let res = client
            .post(app.url("/api/invites"))
            .bearer_auth(&app.token)
            .header("content-type", kind)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), status, "{body}");
        let answer: serde_json::Value = res.json().await.unwrap();
        let error = answer["error"].as_str().unwrap_or_default();
        assert!(error.contains(said), "{body}: {answer}");
    }
    // A kind spelled right still lists.
    let cities = app.get_json("/api/records?kind=city").await;
    assert!(!cities.as_array().unwrap().is_empty());
}

/// A device's cities: the same city named twice is one, and a list past
/// what a club has is refused before any is looked up.
#[tokio::test]
async fn a_devices_cities_are_counted_once_and_held_to_a_cap() {
    let app = spawn_app().await;
    let city = app.first("city").await;
    let token = app.device(
        twinsync_server::auth::Role::Delegate,
        &[&city.to_string()],
        None,
    );
    let path = format!("/api/devices/{}", token.split('.').next().unwrap());
    let twice = json!({"cities": [city.to_string(), city.url().to_string(), city.to_string()]});
    let res = app.patch_as(&path, &app.token, &twice).await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["cities"].as_array().unwrap().len(), 1, "{body}");

    let many: Vec<String> = (0..101).map(|i| format!("city {i}")).collect();
    let res = app
        .patch_as(&path, &app.token, &json!({ "cities": many }))
        .await;
    assert_eq!(res.status(), 400);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["code"], "too-many-cities", "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("101 cities"),
        "{body}"
    );
}

#[tokio::test]
async fn bad_ids_and_times_get_clear_errors() {
    let app = spawn_app().await;
    let res = app.get("/api/records/not-an-id").await;
    assert_eq!(res.status(), 400);
    let body: serde_json::Value = res.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("not a document id")
    );
    let unknown = twinsync_shared::DocumentId::random();
    assert_eq!(
        app.get(&format!("/api/records/{unknown}")).await.status(),
        404
    );
    let meeting = app.first("meeting").await;
    assert_eq!(
        app.get(&format!("/api/records/{meeting}?at=yesterday"))
            .await
            .status(),
        400
    );
    // Before the record was made, there was nothing to read.
    let res = app
        .get(&format!("/api/records/{meeting}?at=2000-01-01"))
        .await;
    assert_eq!(res.status(), 404);
    let body: serde_json::Value = res.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("did not exist yet"),
        "{body}"
    );
}

#[tokio::test]
async fn csv_exports_hold_agreements_and_milestones() {
    let app = spawn_app().await;
    let agreements = app
        .get("/api/export/agreements.csv")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(agreements.lines().count(), 14);
    assert!(agreements.contains("Twinning agreement Smara – Dakar"));
    let projects = app
        .get("/api/export/projects.csv")
        .await
        .text()
        .await
        .unwrap();
    assert!(projects.contains("Constitute the International Coordination Council"));
    assert!(projects.lines().nth(1).unwrap().contains("done"));
    // A project's own dates and domain stand on each of its rows, by name.
    let mut rows = csv::Reader::from_reader(projects.trim_start_matches('\u{feff}').as_bytes());
    let head = rows.headers().unwrap().clone();
    let column = |name: &str| head.iter().position(|h| h == name).unwrap();
    let follow_up: Vec<csv::StringRecord> = rows
        .records()
        .map(Result::unwrap)
        .filter(|r| r[column("title_en")].starts_with("Follow-up of the twinning agreements"))
        .collect();
    assert_eq!(follow_up.len(), 3, "one row per milestone: {projects}");
    for row in &follow_up {
        assert_eq!(&row[column("starts_on")], "2025-10-31");
        assert_eq!(&row[column("ends_on")], "");
        assert_eq!(&row[column("domain")], "governance");
    }

    // A title a spreadsheet would run as a formula is exported as text.
    // (A party is a record link, `automerge:…`, and can start no formula.)
    let agreement = app.first("agreement").await;
    let mut p = TestPeer::new("coordinator-phone");
    p.connect(&app).await;
    p.fetch(agreement, Duration::from_secs(10)).await;
    p.edit(
        agreement,
        "title",
        &[Edit::Set {
            path: "/title/fr".into(),
            value: json!("=HYPERLINK(\"http://example.com\",\"ici\")"),
        }],
    );
    let heads = p.heads(agreement);
    p.sync_until_acked(Duration::from_secs(10), agreement, &heads)
        .await;
    let agreements = app
        .get("/api/export/agreements.csv")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        agreements.contains("\"'=HYPERLINK(\"\"http://example.com\"\""),
        "{agreements}"
    );
    // No cell of any row starts as a formula would.
    let mut cells = csv::Reader::from_reader(agreements.as_bytes());
    for row in cells.records() {
        let row = row.unwrap();
        for cell in row.iter() {
            assert!(
                !cell.starts_with(['=', '+', '-', '@', '\t', '\r']),
                "{cell:?} in {row:?}"
            );
        }
    }

    // A dropped commitment is closed, as a kept one is: the agreement's
    // open commitments go from two to one.
    let open = |csv: &str| -> String {
        let row = csv
            .lines()
            .find(|l| l.starts_with(&agreement.url().to_string()))
            .expect("the agreement's row");
        row.rsplit(',').next().unwrap().to_owned()
    };
    assert_eq!(open(&agreements), "2");
    let Record::Agreement(a) = p.record(agreement) else {
        panic!("not an agreement");
    };
    p.edit(
        agreement,
        "dropped",
        &[Edit::Set {
            path: format!("/commitments/{}/status", a.commitments[0].id),
            value: json!("dropped"),
        }],
    );
    let heads = p.heads(agreement);
    p.sync_until_acked(Duration::from_secs(10), agreement, &heads)
        .await;
    let agreements = app
        .get("/api/export/agreements.csv")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(open(&agreements), "1");
}

#[tokio::test]
async fn a_damaged_record_costs_an_export_its_row_and_is_named() {
    let app = spawn_app().await;
    let damaged = app.first("agreement").await;
    assert!(
        crate::damage_chunks(&app.data_dir, damaged) > 0,
        "the agreement has stored chunks"
    );

    let response = app.get("/api/export/agreements.csv").await;
    assert_eq!(response.status(), 200);
    let named = response
        .headers()
        .get("x-twinsync-unreadable")
        .map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(named, Some(damaged.url().to_string()));
    let csv = response.text().await.unwrap();
    assert_eq!(csv.lines().count(), 13, "every other agreement: {csv}");
    assert!(!csv.contains(&damaged.url().to_string()));

    // An export with nothing damaged says nothing of the kind.
    let projects = app.get("/api/export/projects.csv").await;
    assert_eq!(projects.status(), 200);
    assert!(projects.headers().get("x-twinsync-unreadable").is_none());
}

#[tokio::test]
async fn health_metrics_and_openapi_answer() {
    let app = spawn_app().await;
    assert_eq!(app.get("/healthz").await.text().await.unwrap(), "ok");
    let mut p = TestPeer::new("counted");
    p.connect(&app).await;
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("twinsync_connected_peers 1"), "{metrics}");
    for name in [
        "twinsync_loaded_documents",
        "twinsync_changes_applied_total",
        "twinsync_bytes_in_total",
        "twinsync_bytes_out_total",
        "twinsync_sync_latency_seconds",
        "twinsync_storage_errors_total",
    ] {
        assert!(metrics.contains(name), "{name} missing");
    }
    let spec = app.get_json("/api/openapi.json").await;
    assert_eq!(spec["openapi"], "3.0.3");
    assert!(spec["paths"]["/api/records/{documentId}/history"].is_object());
    // Every write says the storage may be full; a read does not.
    assert_eq!(
        spec["paths"]["/api/invites"]["post"]["responses"]["507"]["$ref"],
        "#/components/responses/StorageFull"
    );
    assert!(spec["paths"]["/api/devices/{deviceId}"]["patch"]["responses"]["507"].is_object());
    assert!(spec["paths"]["/api/invites"]["get"]["responses"]["507"].is_null());
    assert!(spec["components"]["responses"]["StorageFull"].is_object());
}

/// Every answer says what a browser may do with it: the app's pages load
/// only the server's own files and sit in no other site's frame; the API's
/// answers (devices, refused changes, exports) stay out of the disk cache.
#[tokio::test]
async fn every_answer_carries_the_browser_rules_and_the_api_is_not_cached() {
    let app = spawn_app().await;
    for path in [
        "/",
        "/app.js",
        "/api/me",
        "/api/export/agreements.csv",
        "/nothing-here",
    ] {
        let res = app.get(path).await;
        let h = res.headers();
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert!(
            csp.contains("script-src 'self' 'wasm-unsafe-eval'"),
            "{path}: {csp}"
        );
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
        let cache = h
            .get("cache-control")
            .map(|v| v.to_str().unwrap().to_owned());
        if path.starts_with("/api/") {
            assert_eq!(cache.as_deref(), Some("no-store"), "{path}");
        } else {
            assert_ne!(
                cache.as_deref(),
                Some("no-store"),
                "{path}: the app's files may be cached"
            );
        }
    }
    // A refusal is not stored either, and keeps its own headers.
    let res = app.get_as("/api/records", "wrong.token").await;
    assert_eq!(res.status(), 401);
    assert_eq!(res.headers()["cache-control"], "no-store");
    assert!(res.headers().contains_key("www-authenticate"));
    // The service worker's version keeps its own rule.
    let res = app.get("/sw-version.js").await;
    assert_eq!(res.headers()["cache-control"], "no-cache");
    // Health is no page of the app: a monitor reads it, and the browser
    // tests load the client on it to reach servers of their own.
    let res = app.get("/healthz").await;
    assert!(!res.headers().contains_key("content-security-policy"));
    assert_eq!(res.headers()["x-content-type-options"], "nosniff");
}
