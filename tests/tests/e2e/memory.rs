//! Memory after a burst. Peers open two thousand records at once, then
//! leave; once the server has evicted them, its resident memory comes back
//! down rather than staying at the peak, and the server has handed freed
//! pages back to the system (glibc keeps those that lie below live
//! allocations; `server/src/memory.rs`). At this size glibc gives most back
//! by itself; at the S3 benchmark's size it did not (958 MiB held), which
//! the benchmark shows.

use std::time::{Duration, Instant};

use serde_json::json;
use twinsync_shared::record::Kind;
use twinsync_tests::peer::TestPeer;
use twinsync_tests::process::ServerProcess;

const RECORDS: usize = 2000;
const READERS: usize = 8;
const LIMIT: Duration = Duration::from_secs(120);

/// A metric's value from the server's `/metrics`.
async fn metric(server: &ServerProcess, name: &str) -> f64 {
    let text = server.get("/metrics").await.text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

/// A `/proc/<pid>/status` figure of the running server, in KiB.
fn status_kib(server: &ServerProcess, key: &str) -> u64 {
    server.status_kib(key).expect("the server is running")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_of_evicted_records_goes_back_to_the_system() {
    let dir = tempfile::tempdir().unwrap();
    // Each reader asks for every record before it reads an answer, and
    // reads slowly (it goes over all its records after each frame): its
    // queue on the server may hold an answer for each record, which the
    // default of 1,024 frames would drop as too slow on a loaded machine.
    let queue = (2 * RECORDS).to_string();
    let env = [
        ("TWINSYNC_IDLE_EVICT_SECS", "1"),
        ("TWINSYNC_DEVICE_DOCS_PER_MINUTE", "1000000"),
        ("TWINSYNC_PEER_QUEUE", queue.as_str()),
    ];
    let server = ServerProcess::start_with(dir.path(), &env);
    let mut writer = TestPeer::new("writer");
    writer.connect(&server).await;
    let ids: Vec<_> = (0..RECORDS)
        .map(|i| {
            writer.create(
                Kind::Report,
                json!({
                    "title": {"fr": format!("Rapport {i}"), "ar": format!("تقرير {i}")},
                    "report_type": "field",
                    "date": "2026-11-30",
                    "text": "Début du rapport — بداية التقرير.",
                }),
            )
        })
        .collect();
    writer
        .sync_until(LIMIT, |p| ids.iter().all(|id| p.unacknowledged(*id) == 0))
        .await;
    writer.disconnect().await;
    // A fresh process: what it holds before the burst is the baseline.
    server.kill9();
    let server = ServerProcess::start_with(dir.path(), &env);
    server.wait_healthy(LIMIT).await;
    let baseline = status_kib(&server, "VmRSS:");
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert_eq!(
        metric(&server, "twinsync_memory_trims_total").await,
        0.0,
        "nothing was freed yet, so nothing is trimmed"
    );

    let mut readers = tokio::task::JoinSet::new();
    for r in 0..READERS {
        let mut reader = TestPeer::new(&format!("reader-{r}"));
        reader.connect(&server).await;
        let ids = ids.clone();
        readers.spawn(async move {
            for id in &ids {
                reader.open(*id);
            }
            reader
                .sync_until(LIMIT, |p| ids.iter().all(|id| p.kind_of(*id).is_some()))
                .await;
            reader.disconnect().await;
        });
    }
    readers.join_all().await;
    let peak = status_kib(&server, "VmHWM:");
    let burst = peak.saturating_sub(baseline);
    assert!(
        burst > 50 * 1024,
        "the burst should take memory: {baseline} KiB before, peak {peak} KiB"
    );

    // Eviction takes a second of idleness, the trim up to ten more.
    let start = Instant::now();
    let mut now = status_kib(&server, "VmRSS:");
    let mut trims = 0.0;
    while (now > baseline + burst / 3 || trims == 0.0) && start.elapsed() < Duration::from_secs(30)
    {
        tokio::time::sleep(Duration::from_millis(500)).await;
        now = status_kib(&server, "VmRSS:");
        trims = metric(&server, "twinsync_memory_trims_total").await;
    }
    eprintln!(
        "memory: {baseline} KiB before the burst, peak {peak} KiB, {now} KiB {:.1} s after the readers left",
        start.elapsed().as_secs_f64()
    );
    assert_eq!(metric(&server, "twinsync_loaded_documents").await, 0.0);
    assert!(trims >= 1.0, "the server never handed freed memory back");
    assert!(
        now <= baseline + burst / 3,
        "RSS stayed at {now} KiB after every record was evicted \
         ({baseline} KiB before the burst, peak {peak} KiB)"
    );
    server.kill9();
}
