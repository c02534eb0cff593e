//! Under the fault proxy (dropped, delayed, duplicated and truncated
//! messages, cut connections, all from a fixed seed), every delegate
//! converges, nothing acknowledged is lost, and every word typed arrives.
//!
//! `TWINSYNC_PROXY_SECS`, `TWINSYNC_PROXY_PEERS` and `TWINSYNC_PROXY_SEED`
//! make the run longer or different; the figures go to standard error and
//! to `target/test-artefacts/reliability/proxy.txt`.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use twinsync_shared::DocumentId;
use twinsync_tests::campaign::{Swarm, Target, check_acknowledged, setting, typed_and_missing};
use twinsync_tests::proxy::{FaultProxy, Faults};
use twinsync_tests::spawn_app;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_a_faulty_network_every_peer_converges_and_nothing_is_lost() {
    let secs = setting("TWINSYNC_PROXY_SECS", 20);
    let peers = setting("TWINSYNC_PROXY_PEERS", 20) as usize;
    let seed = setting("TWINSYNC_PROXY_SEED", 1025);
    let app = spawn_app().await;
    let list = app.get_json("/api/records?kind=meeting").await;
    let meetings: Vec<DocumentId> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().parse().unwrap())
        .collect();

    let proxy = FaultProxy::start(app.addr, Faults::rough(), seed).await;
    let through_proxy = Target {
        addr: proxy.addr,
        token: app.token.clone(),
    };
    let swarm = Swarm::start(peers, &meetings, Duration::from_millis(150), seed);
    swarm.retarget(Some(through_proxy.clone()));
    tokio::time::sleep(Duration::from_secs(secs)).await;

    // The network heals; everyone settles through the same proxy.
    proxy.calm();
    let ledger = std::sync::Arc::clone(&swarm.ledger);
    let direct = Target {
        addr: app.addr,
        token: app.token.clone(),
    };
    // What the server announced is on it now, before settling could send
    // any of it again.
    check_acknowledged(&direct, &ledger.acknowledged(), Duration::from_secs(30))
        .await
        .expect("every change acknowledged while typing is on the server");
    let settled = swarm.settle(&through_proxy, Duration::from_secs(120)).await;
    let audited = check_acknowledged(&direct, &ledger.acknowledged(), Duration::from_secs(30))
        .await
        .expect("every acknowledged change is on the server");
    let (typed_total, lost) = typed_and_missing(&settled, &meetings);
    let stats = &proxy.stats;
    let figures = format!(
        "fault proxy: {secs} s, {peers} peers, seed {seed}\n\
         proxy: {}\n\
         edits typed: {typed_total}; missing after convergence: {lost}; acknowledged heads audited: {audited}\n\
         peer reconnections: {}; garbled frames seen by peers: {}; stalls ended by reconnecting: {}; reconnections while settling: {}\n",
        stats.line(),
        ledger.connects.load(Relaxed),
        ledger.garbled.load(Relaxed),
        ledger.stalls.load(Relaxed),
        ledger.resyncs.load(Relaxed),
    );
    eprintln!("{figures}");
    twinsync_tests::artefact("reliability/proxy.txt", &figures);
    assert_eq!(lost, 0, "typed edits are missing after convergence");
    for (fault, n) in [
        ("dropped", &stats.dropped),
        ("duplicated", &stats.duplicated),
        ("truncated", &stats.truncated),
        ("cut", &stats.cut),
        ("delayed", &stats.delayed),
    ] {
        assert!(n.load(Relaxed) > 0, "the proxy never {fault} anything");
    }
}
