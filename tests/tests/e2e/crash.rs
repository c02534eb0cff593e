//! The crash campaign: `kill -9` at random moments, 20 times, while 50
//! delegates type into shared minutes and sync; compaction runs after
//! every other write, so kills land in the middle of compactions, and
//! some land while `twinsync backup` copies the database. After every
//! restart, every change the server acknowledged is there; at the end every
//! delegate converges and every word typed is in the minutes.
//!
//! `TWINSYNC_CRASH_RESTARTS`, `TWINSYNC_CRASH_PEERS` and
//! `TWINSYNC_CRASH_SEED` make the run longer or different; the figures go to
//! standard error and to `target/test-artefacts/reliability/crash.txt`.

use std::process::Command;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use twinsync_tests::campaign::{Swarm, Target, check_acknowledged, setting, typed_and_missing};
use twinsync_tests::process::{ServerProcess, binary};

const LIMIT: Duration = Duration::from_secs(30);

fn target(server: &ServerProcess) -> Target {
    Target {
        addr: server.addr,
        token: server.token.clone(),
    }
}

/// What a backup cut by the kill left: nothing at its path, or a whole
/// database `twinsync export` reads.
#[derive(Debug, PartialEq)]
enum Backup {
    Absent,
    Whole,
}

fn check_backup(file: &std::path::Path) -> Backup {
    if !file.exists() {
        return Backup::Absent;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(file, dir.path().join("twinsync.db")).unwrap();
    let out = Command::new(binary())
        .args(["export", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "a backup at {} does not export: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        json.as_array().is_some_and(|r| !r.is_empty()),
        "a backup holds no records"
    );
    Backup::Whole
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_moments_loses_no_acknowledged_change() {
    let restarts = setting("TWINSYNC_CRASH_RESTARTS", 20);
    let peers = setting("TWINSYNC_CRASH_PEERS", 50) as usize;
    let seed = setting("TWINSYNC_CRASH_SEED", 20251025);
    let mut rng = StdRng::seed_from_u64(seed);
    let data = tempfile::tempdir().unwrap();
    let backups = tempfile::tempdir().unwrap();
    // Compaction after every other write: most kills find one running.
    let env = [("TWINSYNC_COMPACT_CHUNKS", "2")];

    let mut server = ServerProcess::start_with(data.path(), &env);
    server.wait_healthy(LIMIT).await;
    let meetings = server.ids("meeting").await;
    assert!(!meetings.is_empty(), "the demo club has meetings");

    // Some megabytes of attachments, so that a backup takes a few steps
    // and a kill can land between them.
    pad(&server, &mut rng).await;

    let swarm = Swarm::start(peers, &meetings, Duration::from_millis(150), seed);
    let (mut compactions, mut audited) = (0, 0);
    let mut outcomes = Vec::new();
    for round in 0..restarts {
        swarm.retarget(Some(target(&server)));
        let run = rng.random_range(300..1500);
        tokio::time::sleep(Duration::from_millis(run)).await;
        // Every third kill lands while a backup copies the database; every
        // other one of those kills the backup too.
        let mut backup = (round % 3 == 2).then(|| {
            let file = backups.path().join(format!("backup-{round}.db"));
            let child = Command::new(binary())
                .args(["backup", "--data-dir"])
                .arg(data.path())
                .arg(&file)
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            (file, child)
        });
        if let Some((file, child)) = &mut backup {
            if round % 2 == 0 {
                // Kill it in the middle of copying: once its partial file
                // is there, and before it is renamed into place.
                let mut partial = file.as_os_str().to_owned();
                partial.push(".partial");
                let partial = std::path::PathBuf::from(partial);
                let deadline = std::time::Instant::now() + Duration::from_secs(5);
                while !partial.exists() && std::time::Instant::now() < deadline {
                    tokio::task::yield_now().await;
                }
                let _ = child.kill();
            } else {
                tokio::time::sleep(Duration::from_millis(rng.random_range(0..20))).await;
            }
        }
        swarm.retarget(None);
        compactions += server
            .compactions
            .load(std::sync::atomic::Ordering::Relaxed);
        server.kill9();
        if let Some((file, mut child)) = backup {
            let cut = round % 2 == 0;
            let status = child.wait().unwrap();
            let outcome = check_backup(&file);
            if !cut {
                // The server's death does not stop a backup in progress.
                assert!(status.success(), "backup {round} failed");
                assert_eq!(outcome, Backup::Whole, "backup {round}");
            }
            outcomes.push(outcome);
        }
        // What the server had said it holds, just before it died.
        let acknowledged = swarm.ledger.acknowledged();

        server = ServerProcess::start_with(data.path(), &env);
        server.wait_healthy(LIMIT).await;
        audited += check_acknowledged(&target(&server), &acknowledged, LIMIT)
            .await
            .unwrap_or_else(|e| panic!("after kill {}: {e}", round + 1));
    }

    swarm.retarget(Some(target(&server)));
    let ledger = std::sync::Arc::clone(&swarm.ledger);
    let settled = swarm
        .settle(&target(&server), Duration::from_secs(180))
        .await;
    check_acknowledged(&target(&server), &ledger.acknowledged(), LIMIT)
        .await
        .expect("after the last restart");
    // Every word every delegate typed is in the merged minutes.
    let (typed_total, lost) = typed_and_missing(&settled, &meetings);
    let stats = &swarm_stats(&ledger);
    let figures = format!(
        "kill -9 restarts survived: {restarts}\n\
         acknowledged changes lost: 0\n\
         peers: {peers}; edits typed: {typed_total}; edits missing after convergence: {lost}\n\
         acknowledged heads audited after restarts: {audited}\n\
         compactions logged before the kills: {compactions}\n\
         kills during a backup: {}; backups left whole: {}; backups killed half-way, leaving no file at their path: {}\n\
         {stats}\n",
        outcomes.len(),
        outcomes.iter().filter(|o| **o == Backup::Whole).count(),
        outcomes.iter().filter(|o| **o == Backup::Absent).count(),
    );
    eprintln!("{figures}");
    twinsync_tests::artefact("reliability/crash.txt", &figures);
    assert_eq!(lost, 0, "typed edits are missing after convergence");
    assert!(compactions > 0, "no compaction ran during the campaign");
}

async fn pad(server: &ServerProcess, rng: &mut StdRng) {
    use automerge::transaction::Transactable;
    let report = server.ids("report").await[0];
    let mut p = twinsync_tests::TestPeer::new("archivist");
    p.connect(server).await;
    p.fetch(report, LIMIT).await;
    for n in 0..2 {
        let blob: Vec<u8> = (0..4 << 20).map(|_| rng.random()).collect();
        let mut tx = p.doc_mut(report).transaction();
        tx.put(automerge::ROOT, format!("scan-{n}"), blob).unwrap();
        tx.commit();
    }
    let heads = p.heads(report);
    p.sync_until_acked(LIMIT, report, &heads).await;
}

fn swarm_stats(ledger: &twinsync_tests::campaign::Ledger) -> String {
    use std::sync::atomic::Ordering::Relaxed;
    format!(
        "connections: {}; stalls ended by reconnecting: {}; reconnections while settling: {}",
        ledger.connects.load(Relaxed),
        ledger.stalls.load(Relaxed),
        ledger.resyncs.load(Relaxed)
    )
}
