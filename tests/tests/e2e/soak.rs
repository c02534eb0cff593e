//! A bounded soak: steady load for `TWINSYNC_SOAK_SECS` (600 by default)
//! against the server as a process, sampling its memory and the time from
//! an edit to its arrival at another peer. Ignored by `cargo test`; run it
//! with `cargo test -p twinsync-tests --test e2e -- --ignored soak --nocapture`.
//! The figures go to standard error and to
//! `target/test-artefacts/reliability/soak.txt`.

use std::time::{Duration, Instant};

use twinsync_shared::record::{Edit, Record};
use twinsync_tests::TestPeer;
use twinsync_tests::campaign::{Swarm, Target, check_acknowledged, setting};
use twinsync_tests::process::ServerProcess;

const LIMIT: Duration = Duration::from_secs(30);

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "ten minutes long: run it on purpose"]
async fn soak_memory_and_latency_stay_flat_under_steady_load() {
    let secs = setting("TWINSYNC_SOAK_SECS", 600);
    let data = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(data.path());
    server.wait_healthy(LIMIT).await;
    let meetings = server.ids("meeting").await;
    let target = Target {
        addr: server.addr,
        token: server.token.clone(),
    };
    // Twenty delegates type steadily into the minutes of every meeting,
    // about once a second each.
    let swarm = Swarm::start(20, &meetings, Duration::from_millis(500), 7);
    swarm.retarget(Some(target.clone()));

    // Two probes on a record of their own measure edit-to-arrival time.
    let probe_doc = server.ids("project").await[0];
    let (mut writer, mut reader) = (TestPeer::new("probe-w"), TestPeer::new("probe-r"));
    for p in [&mut writer, &mut reader] {
        p.connect(&server).await;
        p.fetch(probe_doc, LIMIT).await;
    }
    let started = Instant::now();
    let mut minutes: Vec<(u64, u64, f64)> = Vec::new();
    let mut window: Vec<f64> = Vec::new();
    let mut n = 0u64;
    let mut next_sample = Duration::from_secs(60);
    while started.elapsed() < Duration::from_secs(secs) {
        n += 1;
        let marker = format!("probe {n}");
        writer.edit(
            probe_doc,
            "probe",
            &[Edit::Set {
                path: "/budget_note".into(),
                value: marker.clone().into(),
            }],
        );
        let sent = Instant::now();
        writer
            .sync_until(LIMIT, |w| w.unacknowledged(probe_doc) == 0)
            .await;
        reader
            .sync_until(LIMIT, |r| match r.record(probe_doc) {
                Record::Project(p) => p.budget_note.as_deref() == Some(marker.as_str()),
                _ => false,
            })
            .await;
        window.push(sent.elapsed().as_secs_f64() * 1000.0);
        tokio::time::sleep(Duration::from_millis(250)).await;
        if started.elapsed() >= next_sample {
            minutes.push((
                next_sample.as_secs() / 60,
                server.status_kib("VmRSS:").unwrap_or(0),
                median(&mut window),
            ));
            window.clear();
            next_sample += Duration::from_secs(60);
        }
    }
    let ledger = std::sync::Arc::clone(&swarm.ledger);

    let mut table =
        String::from("| minute | server RSS MiB | edit-to-arrival p50 ms |\n|---|---|---|\n");
    for (m, rss, p50) in &minutes {
        table.push_str(&format!(
            "| {m} | {:.1} | {p50:.1} |\n",
            *rss as f64 / 1024.0
        ));
    }
    let (first, last) = (minutes.first(), minutes.last());
    let summary = match (first, last) {
        (Some(f), Some(l)) => format!(
            "soak: {secs} s, 20 delegates typing about once a second plus one probe, {} edits typed\n\
             memory growth first to last minute: {:+.1} MiB\n\
             latency drift first to last minute (p50): {:+.1} ms\n",
            ledger.edits.load(std::sync::atomic::Ordering::Relaxed),
            (l.1 as f64 - f.1 as f64) / 1024.0,
            l.2 - f.2
        ),
        _ => "soak: shorter than a minute, no samples\n".to_owned(),
    };
    let figures = format!("{summary}\n{table}");
    eprintln!("{figures}");
    twinsync_tests::artefact("reliability/soak.txt", &figures);

    // Then everyone settles, and nothing acknowledged is missing.
    let settled = Instant::now();
    swarm.settle(&target, Duration::from_secs(600)).await;
    check_acknowledged(&target, &ledger.acknowledged(), LIMIT)
        .await
        .expect("nothing acknowledged is lost");
    let line = format!(
        "settled in {:.0} s; every acknowledged change present\n",
        settled.elapsed().as_secs_f64()
    );
    eprintln!("{line}");
    twinsync_tests::artefact("reliability/soak.txt", &format!("{figures}\n{line}"));
}
