//! `twinsync-bench`: runs the scenarios of `cargo xtask bench` against our
//! server and the official automerge-repo server, each started fresh with
//! an empty data directory for every scenario and run, and prints a table
//! (and, for a full run, writes `BENCHMARKS.md`).
//!
//! - S1, a reconnect storm: delegates holding records of a shared pool,
//!   with offline changes, all reconnect at once.
//! - S2, live relay: peers editing one meeting's minutes.
//! - S4, the raw limit: S1's changes applied to Automerge in one process.
//!
//! - S3, many documents: stored records opened by many peers after a
//!   restart.

mod peer;
mod scenarios;
mod system;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Parser;

use scenarios::{
    Many, Relay, live_relay, many_documents, raw_limit, read_back, reconnect_storm, storm,
};
use system::{Kind, Programs, System};

#[derive(Parser, Debug)]
#[command(about = "twinsync benchmarks, side by side with the official automerge-repo server")]
struct Args {
    /// The release `twinsync` binary.
    #[arg(long)]
    twinsync: PathBuf,
    /// The official server's script.
    #[arg(long)]
    js_server: PathBuf,
    /// A short run that checks the harness and that both servers converge
    /// to the same documents (what CI runs).
    #[arg(long)]
    smoke: bool,
    /// Runs per scenario and system; the median is reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Run one system only: `ours` or `official` (for profiling; a run
    /// with it writes no report).
    #[arg(long, value_parser = ["ours", "official"])]
    only: Option<String>,
    /// Run only these scenarios, e.g. `--scenario s2` (for profiling); a
    /// partial run writes no report.
    #[arg(long, value_delimiter = ',', value_parser = ["s1", "s2", "s3", "s4"])]
    scenario: Vec<String>,
    /// S2's number of peers, instead of the scenario's, to see where its
    /// latency turns (a run with it writes no report).
    #[arg(long)]
    relay_peers: Option<usize>,
    /// Where to write the report (full runs only).
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy)]
struct Sizes {
    delegates: usize,
    per: usize,
    pool: usize,
    changes: usize,
    relay_peers: usize,
    relay_rate: u32,
    relay_secs: u64,
    stored: usize,
    readers: usize,
    reads: usize,
}

const FULL: Sizes = Sizes {
    delegates: 200,
    per: 10,
    pool: 500,
    changes: 50,
    relay_peers: 50,
    relay_rate: 5,
    relay_secs: 30,
    stored: 20_000,
    readers: 500,
    reads: 40,
};

const SMOKE: Sizes = Sizes {
    delegates: 6,
    per: 3,
    pool: 8,
    changes: 5,
    relay_peers: 4,
    relay_rate: 5,
    relay_secs: 2,
    stored: 50,
    readers: 5,
    reads: 4,
};

#[derive(Debug, Default, Clone)]
struct Figures {
    s1_secs: Vec<f64>,
    s1_peak_mib: Vec<f64>,
    /// CPU seconds during S1: the server's, and the load generator's.
    s1_server_cpu: Vec<f64>,
    s1_load_cpu: Vec<f64>,
    s2: Vec<Relay>,
    s3: Vec<Many>,
    /// Fresh exchanges peers had to start after a stall, over all runs.
    resyncs: usize,
    /// Why S3 could not be measured, if it could not.
    s3_failed: Option<String>,
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    v[v.len() / 2]
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    // Before the workload is generated, which takes a while.
    for (flag, path) in [
        ("--twinsync", &args.twinsync),
        ("--js-server", &args.js_server),
    ] {
        if !path.is_file() {
            bail!("{flag} names {}, which is not a file", path.display());
        }
    }
    let mut sizes = if args.smoke { SMOKE } else { FULL };
    if let Some(n) = args.relay_peers {
        sizes.relay_peers = n;
    }
    let runs = if args.smoke { 1 } else { args.runs.max(1) };
    let programs = Programs {
        twinsync: args.twinsync.clone(),
        js_server: args.js_server.clone(),
    };
    eprintln!(
        "bench: generating S1's workload: {} delegates × {} records of {} × {} changes",
        sizes.delegates, sizes.per, sizes.pool, sizes.changes
    );
    let work = storm(sizes.delegates, sizes.per, sizes.pool, sizes.changes, 2026)?;
    let mut ours = Figures::default();
    let mut official = Figures::default();
    let mut raw = Vec::new();
    for run in 1..=runs {
        for kind in [Kind::Ours, Kind::Official] {
            let name = if kind == Kind::Ours {
                "ours"
            } else {
                "official"
            };
            if args.only.as_deref().is_some_and(|o| o != name) {
                continue;
            }
            let figures = if kind == Kind::Ours {
                &mut ours
            } else {
                &mut official
            };
            let wants = |s: &str| args.scenario.is_empty() || args.scenario.iter().any(|x| x == s);
            if wants("s1") {
                eprintln!("bench: run {run}/{runs}: S1 on {}", kind.name());
                let system = System::start(kind, &programs, &[])?;
                let limit = Duration::from_secs(if args.smoke { 20 } else { 900 });
                let s1 = reconnect_storm(&system, &work, limit)
                    .await
                    .with_context(|| format!("S1 on {}", kind.name()))?;
                eprintln!(
                    "bench: S1 on {} converged in {:.2} s (server CPU {:.1} s, load generator CPU {:.1} s)",
                    kind.name(),
                    s1.took.as_secs_f64(),
                    s1.server_cpu,
                    s1.load_cpu
                );
                figures.s1_secs.push(s1.took.as_secs_f64());
                figures.s1_server_cpu.push(s1.server_cpu);
                figures.s1_load_cpu.push(s1.load_cpu);
                figures.resyncs += s1.resyncs;
                figures.s1_peak_mib.push(system.peak_rss_mib()?);
                if args.smoke {
                    // Every record, read back by a fresh peer, holds exactly the
                    // merged heads: both servers hold the same documents.
                    read_back(&system, &work.expected).await.with_context(|| {
                        format!("reading S1's records back from {}", kind.name())
                    })?;
                    eprintln!("bench: {} holds every record as merged", kind.name());
                }
                drop(system);
            }

            if wants("s2") {
                eprintln!("bench: run {run}/{runs}: S2 on {}", kind.name());
                let system = System::start(kind, &programs, &[])?;
                let relay = live_relay(
                    &system,
                    sizes.relay_peers,
                    sizes.relay_rate,
                    sizes.relay_secs,
                )
                .await
                .with_context(|| format!("S2 on {}", kind.name()))?;
                figures.s2.push(relay);
                drop(system);
            }
            if !wants("s3") {
                continue;
            }
            if let Some(why) = &figures.s3_failed {
                // Seeding is the same every run: a system that could not
                // store the records once will not the next time.
                eprintln!(
                    "bench: run {run}/{runs}: S3 on {} skipped, it failed in an earlier run: {why}",
                    kind.name()
                );
                continue;
            }

            eprintln!("bench: run {run}/{runs}: S3 on {}", kind.name());
            // Our per-device limit on documents a minute would stop the
            // seeding peers; nothing else is tuned.
            let extra: &[&str] = if kind == Kind::Ours {
                &["--device-docs-per-minute", "100000000"]
            } else {
                &[]
            };
            let mut system = System::start(kind, &programs, extra)?;
            let settle = Duration::from_secs(if args.smoke { 1 } else { 40 });
            let seed_limit = Duration::from_secs(if args.smoke { 60 } else { 480 });
            let many = many_documents(
                &mut system,
                sizes.stored,
                sizes.readers,
                sizes.reads,
                settle,
                seed_limit,
            )
            .await;
            match many {
                Ok(many) => {
                    eprintln!(
                        "bench: S3 on {} served in {:.2} s (connections made again after the server cut them: {} while storing, {} while serving)",
                        kind.name(),
                        many.serve_secs,
                        many.seed_reconnects,
                        many.reconnects
                    );
                    figures.resyncs += many.resyncs;
                    figures.s3.push(many);
                }
                // A full run reports a system that cannot do S3 in time
                // rather than losing every other figure.
                Err(e) if !args.smoke => {
                    eprintln!("bench: S3 on {} failed: {e:#}", kind.name());
                    figures.s3_failed = Some(format!("{e:#} (run {run}; not tried again)"));
                }
                Err(e) => return Err(e.context(format!("S3 on {}", kind.name()))),
            }
        }
        if args.scenario.is_empty() || args.scenario.iter().any(|x| x == "s4") {
            raw.push(raw_limit(&work)?.as_secs_f64());
        }
    }

    let report = report(&args, sizes, &work, &ours, &official, &raw);
    println!("{report}");
    let partial = args.only.is_some() || !args.scenario.is_empty() || args.relay_peers.is_some();
    if partial && let Some(out) = &args.out {
        eprintln!(
            "bench: {} not written: --only, --scenario and --relay-peers make a partial run",
            out.display()
        );
    }
    if !args.smoke && !partial {
        if let Some(out) = &args.out {
            std::fs::write(out, markdown(&report, sizes, runs))
                .with_context(|| format!("writing {}", out.display()))?;
            eprintln!("bench: wrote {}", out.display());
        }
    } else if args.smoke && ours.s1_secs.is_empty() && official.s1_secs.is_empty() {
        bail!("the smoke run measured nothing");
    }
    Ok(())
}

/// A table row with one figure for each server and no ratio.
fn row(label: &str, ours: f64, official: f64, decimals: usize, unit: &str) -> String {
    format!(
        "| {label} | {} | {} | |\n",
        shown(ours, decimals, unit),
        shown(official, decimals, unit)
    )
}

/// A figure as the table shows it: one that no run measured (the median
/// of none, as when a server failed every run of a scenario) says so.
fn shown(value: f64, decimals: usize, unit: &str) -> String {
    if value.is_nan() {
        "not measured".into()
    } else {
        format!("{value:.decimals$}{unit}")
    }
}

fn report(
    args: &Args,
    sizes: Sizes,
    work: &scenarios::Storm,
    ours: &Figures,
    official: &Figures,
    raw: &[f64],
) -> String {
    let s1_ours = median(&ours.s1_secs);
    let s1_js = median(&official.s1_secs);
    let mem_ours = median(&ours.s1_peak_mib);
    let mem_js = median(&official.s1_peak_mib);
    let p =
        |f: &Figures, pick: fn(&Relay) -> f64| median(&f.s2.iter().map(pick).collect::<Vec<_>>());
    let raw_secs = median(raw);
    let changes = work.change_count as f64;
    let mut out = String::new();
    let mode = if args.smoke { "smoke" } else { "full" };
    out.push_str(&format!(
        "| scenario ({mode}) | twinsync | automerge-repo (JS) | ratio |\n| --- | ---: | ---: | ---: |\n"
    ));
    out.push_str(&format!(
        "| S1 reconnect storm: time to converge ({} changes) | {s1_ours:.2} s | {s1_js:.2} s | {:.2}× faster |\n",
        work.change_count,
        s1_js / s1_ours
    ));
    out.push_str(&format!(
        "| S1 peak RSS | {mem_ours:.1} MiB | {mem_js:.1} MiB | {:.2}× less |\n",
        mem_js / mem_ours
    ));
    let cpu = |f: &Figures| median(&f.s1_server_cpu);
    out.push_str(&format!(
        "| S1 server CPU time | {:.1} s | {:.1} s | {:.2}× less |\n",
        cpu(ours),
        cpu(official),
        cpu(official) / cpu(ours)
    ));
    let load_ours = median(&ours.s1_load_cpu);
    out.push_str(&format!(
        "| S1 load generator CPU time (the same work for both; it shares the two cores) | {load_ours:.1} s | {:.1} s | |\n",
        median(&official.s1_load_cpu)
    ));
    // Had the server used no CPU at all, the load generator alone would
    // still need its CPU time spread over every core.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let floor = load_ours / cores;
    out.push_str(&format!(
        "| S1 floor on this machine: the load generator's CPU time over {cores} cores, as if the server used none | {floor:.2} s | | at most {:.2}× faster than the official server |\n",
        s1_js / floor
    ));
    out.push_str(&format!(
        "| S2 live relay, p50 from an edit to its arrival at every other peer ({} peers × {}/s × {} s, {} edits) | {:.1} ms | {:.1} ms | |\n",
        sizes.relay_peers,
        sizes.relay_rate,
        sizes.relay_secs,
        ours.s2.first().map_or(0, |r| r.edits),
        p(ours, |r| r.arrived.p50_ms),
        p(official, |r| r.arrived.p50_ms)
    ));
    out.push_str(&row(
        "S2 live relay, p99 to arrival at every other peer",
        p(ours, |r| r.arrived.p99_ms),
        p(official, |r| r.arrived.p99_ms),
        1,
        " ms",
    ));
    out.push_str(&format!(
        "| S2 edits that had not arrived at every other peer 3 s after the last edit (counted as infinite latency; all runs) | {} | {} | |\n",
        ours.s2.iter().map(|r| r.arrived.undelivered).sum::<usize>(),
        official.s2.iter().map(|r| r.arrived.undelivered).sum::<usize>()
    ));
    out.push_str(&row(
        &format!(
            "S2 p50 until every other peer's replica had applied the edit (the {} replicas share one core of the load generator)",
            sizes.relay_peers
        ),
        p(ours, |r| r.applied.p50_ms),
        p(official, |r| r.applied.p50_ms),
        1,
        " ms",
    ));
    out.push_str(&row(
        "S2 p99 until applied by every other replica",
        p(ours, |r| r.applied.p99_ms),
        p(official, |r| r.applied.p99_ms),
        1,
        " ms",
    ));
    out.push_str(&format!(
        "| S2 edits not applied by every other replica 3 s after the last edit (all runs) | {} | {} | |\n",
        ours.s2.iter().map(|r| r.applied.undelivered).sum::<usize>(),
        official.s2.iter().map(|r| r.applied.undelivered).sum::<usize>()
    ));
    out.push_str(&row(
        "S2 server CPU (share of one core)",
        p(ours, |r| r.cpu_share),
        p(official, |r| r.cpu_share),
        2,
        "",
    ));
    out.push_str(&row(
        "S2 load generator CPU (share of one core; its replicas apply every edit)",
        p(ours, |r| r.load_share),
        p(official, |r| r.load_share),
        2,
        "",
    ));
    out.push_str(&format!(
        "| S2 one edit applied alone by one replica to the minutes as the run left them: Automerge's pass over them (medians of the time and of the minutes' length) | {:.1} ms ({:.0} characters) | {:.1} ms ({:.0} characters) | |\n",
        p(ours, |r| r.apply_ms),
        p(ours, |r| r.chars as f64),
        p(official, |r| r.apply_ms),
        p(official, |r| r.chars as f64),
    ));
    let need = sizes.relay_peers as f64 * p(ours, |r| r.apply_ms) / 20.0;
    let verdict = if need > cores {
        format!("more than this machine's {cores} cores, before the server's share")
    } else {
        format!("within this machine's {cores} cores")
    };
    out.push_str(&format!(
        "| S2 floor: cores the {} replicas need to apply even once every 20 ms, one such pass each | {need:.1} | | {verdict} |\n",
        sizes.relay_peers,
    ));
    let m =
        |f: &Figures, pick: fn(&Many) -> f64| median(&f.s3.iter().map(pick).collect::<Vec<_>>());
    let speedup = m(official, |r| r.serve_secs) / m(ours, |r| r.serve_secs);
    out.push_str(&format!(
        "| S3 many documents: {} peers open {} of {} stored records, time to serve | {} | {} | {} |\n",
        sizes.readers,
        sizes.reads,
        sizes.stored,
        shown(m(ours, |r| r.serve_secs), 2, " s"),
        shown(m(official, |r| r.serve_secs), 2, " s"),
        if speedup.is_nan() {
            String::new()
        } else {
            format!("{speedup:.2}× faster")
        }
    ));
    out.push_str(&row(
        "S3 peak RSS while serving",
        m(ours, |r| r.peak_mib),
        m(official, |r| r.peak_mib),
        1,
        " MiB",
    ));
    out.push_str(&row(
        "S3 steady RSS (peers gone, after the settle time)",
        m(ours, |r| r.steady_mib),
        m(official, |r| r.steady_mib),
        1,
        " MiB",
    ));
    out.push_str(&format!(
        "| S4 raw limit: S1's changes applied in one process | {raw_secs:.3} s ({:.0} changes/s) | | |\n",
        changes / raw_secs
    ));
    for (name, f) in [("twinsync", ours), ("automerge-repo (JS)", official)] {
        if let Some(why) = &f.s3_failed {
            let label = if f.s3.is_empty() {
                format!("S3 on {name} not measured")
            } else {
                format!(
                    "S3 on {name}: a run failed; its S3 figures above are of the {} that finished (the median; of an even count, the higher middle one)",
                    f.s3.len()
                )
            };
            out.push_str(&format!("| {label} | {why} | | |\n"));
        }
    }
    out.push_str(&format!(
        "| Peers that stalled {} s and had to start a fresh exchange (S1 and S3, all runs) | {} | {} | |\n",
        peer::STALL.as_secs(),
        ours.resyncs,
        official.resyncs
    ));
    let cut = |f: &Figures| {
        let (seeding, serving): (usize, usize) = f.s3.iter().fold((0, 0), |(a, b), m| {
            (a + m.seed_reconnects, b + m.reconnects)
        });
        format!("{seeding} / {serving}")
    };
    out.push_str(&format!(
        "| S3 sockets the server cut that the peer connected again, while the records were stored / while they were served (all runs) | {} | {} | |\n",
        cut(ours),
        cut(official)
    ));
    out.push('\n');
    out.push_str(&format!("S1 speedup: {:.2}\n", s1_js / s1_ours));
    out.push_str(&format!("S1 memory ratio: {:.2}\n", mem_js / mem_ours));
    out.push_str(&format!(
        "S2 p99 ms: {:.1}\n",
        p(ours, |r| r.arrived.p99_ms)
    ));
    out.push_str(&format!(
        "S3 steady RSS MB: {:.1}\n",
        m(ours, |r| r.steady_mib)
    ));
    out.push_str(&format!(
        "S4 share of raw limit: {:.3}\n",
        raw_secs / s1_ours
    ));
    out
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_owned())
        })
        .and_then(|k| k.parse::<f64>().ok())
        .map_or("?".into(), |k| format!("{:.0} GiB", k / 1024.0 / 1024.0));
    let node = std::process::Command::new("node")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    format!("{cpu}, {cores} cores, {mem} RAM; Node.js {node}")
}

fn markdown(table: &str, sizes: Sizes, runs: usize) -> String {
    let date = time::OffsetDateTime::now_utc().date();
    format!(
        "# Benchmarks\n\n\
         twinsync against the official automerge-repo sync server (`@automerge/automerge-repo` 2.5.6 with \
         `NodeWSServerAdapter` and `NodeFSStorageAdapter` on `ws`, `tests/js/sync-server.mjs`), under \
         the same load from one Rust load generator (`bench/`), in the same run on the same machine. \
         Each system starts fresh, with an empty data directory, for every scenario and run; figures are \
         the median of {runs} runs. Ratios are the official server's figure divided by ours.\n\n\
         - Date: {date}\n\
         - Machine: {machine}\n\
         - Versions: twinsync {version} (release build), Automerge 0.12.0 (Rust), automerge-repo 2.5.6 with \
           @automerge/automerge 3.5.0 (JS)\n\
         - S1: {d} delegates each hold {per} records of a pool of {pool} and have made {c} offline \
           changes to each; all reconnect at once. Time until every delegate holds every change of its \
           records (so the server has them and relayed them); the server's peak RSS (`VmHWM`).\n\
         - S2: {rp} peers edit one meeting's minutes, {rr} edits a second each, for {rs} s. Latency from an \
           edit to its receipt by the last of the other peers: the time its frame arrived there, noted by a \
           thread that reads every peer's socket, and beside it the time the last replica had applied it; \
           each replica applies all the frames waiting for it in one pass. Server CPU time over wall time.\n\
         - S4: S1's changes applied to Automerge in the load generator's process, no network, no \
           storage. The share is S4's time over our S1 time (throughput as a share of the limit).\n\
         - S3: {st} records are stored (sent to our server through its socket; written through the \
           official server's own storage adapter while it is stopped, see *S3 on the official server*), \
           the server restarts, then {rd} peers each open {rdn} of them at once. \
           Time until all are served; peak RSS while serving (the restart starts the count afresh); RSS \
           40 s after the peers left (our server evicts documents idle for 30 s). Our server's \
           per-device documents-a-minute limit is raised for the seeding peers, and its cap on \
           connections being set up from one address is raised to the overall cap (1,024), as \
           every simulated device connects from 127.0.0.1. Every simulated peer signs in to our server \
           with one device's token, where each delegate has their own device: our server's caps on \
           one device's sockets and on the documents they hold open are raised to match. Nothing \
           else is tuned.\n\n\
         {table}\n\
         {bounds}\n\
         ## Reproduce\n\n\
         ```sh\ncargo xtask bench            # full run, writes this file\ncargo xtask bench --smoke    # what CI runs\n```\n",
        bounds = include_str!("bounds.md"),
        machine = machine(),
        version = env!("CARGO_PKG_VERSION"),
        d = sizes.delegates,
        per = sizes.per,
        pool = sizes.pool,
        c = sizes.changes,
        rp = sizes.relay_peers,
        rr = sizes.relay_rate,
        rs = sizes.relay_secs,
        st = sizes.stored,
        rd = sizes.readers,
        rdn = sizes.reads,
    )
}
