//! The server as a real process, to kill with SIGKILL.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The `twinsync` binary, built by `cargo xtask test` before the tests run.
pub fn binary() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| super::workspace().join("target"));
    let path = target.join("debug").join("twinsync");
    assert!(
        path.exists(),
        "{} is missing: run `cargo build -p twinsync-server` (cargo xtask test does)",
        path.display()
    );
    path
}

/// Lines of a server's log a [`ServerProcess`] keeps to read.
const LOG_LINES_KEPT: usize = 20_000;

pub struct ServerProcess {
    pub child: Child,
    pub addr: SocketAddr,
    /// A coordinator's token from `twinsync device add`.
    pub token: String,
    /// Compactions the server logged so far.
    pub compactions: Arc<AtomicU64>,
    /// Every line the server wrote to standard error so far.
    log: Arc<Mutex<Vec<String>>>,
}

/// Runs one `twinsync` command to completion and returns its standard
/// output; the test fails, showing standard error, if the command does.
pub fn twinsync<I, A>(args: I) -> Vec<u8>
where
    I: IntoIterator<Item = A>,
    A: AsRef<std::ffi::OsStr>,
{
    let out = Command::new(binary())
        .args(args)
        .output()
        .expect("twinsync runs");
    assert!(
        out.status.success(),
        "twinsync failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Runs `twinsync device add` on `data_dir` and returns the token it
/// prints on its last line.
pub fn add_device(data_dir: &Path, role: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "device",
        "add",
        "--name",
        "test device",
        "--role",
        role,
        "--data-dir",
    ];
    let dir = data_dir.to_string_lossy();
    args.push(&dir);
    args.extend_from_slice(extra);
    String::from_utf8_lossy(&twinsync(args))
        .lines()
        .last()
        .expect("a token on the last line")
        .trim()
        .to_owned()
}

impl ServerProcess {
    /// Starts `twinsync serve` on a free loopback port over `data_dir`,
    /// with a coordinator's device provisioned first.
    pub fn start(data_dir: &Path) -> Self {
        Self::start_with(data_dir, &[])
    }

    /// As [`ServerProcess::start`], with `TWINSYNC_*` settings in `env`.
    pub fn start_with(data_dir: &Path, env: &[(&str, &str)]) -> Self {
        std::fs::create_dir_all(data_dir).expect("the data directory");
        let token = add_device(data_dir, "coordinator", &[]);
        let (mut server, _) = Self::spawn(data_dir, env);
        server.token = token;
        server
    }

    /// Starts `twinsync serve` with no device provisioned; returns the
    /// first-coordinator invite link it printed, if any.
    pub fn start_bare(data_dir: &Path) -> (Self, Option<String>) {
        Self::spawn(data_dir, &[])
    }

    /// As [`ServerProcess::start_bare`], with settings (or `RUST_LOG`) in
    /// `env`.
    pub fn start_bare_with(data_dir: &Path, env: &[(&str, &str)]) -> (Self, Option<String>) {
        Self::spawn(data_dir, env)
    }

    fn spawn(data_dir: &Path, env: &[(&str, &str)]) -> (Self, Option<String>) {
        let mut child = Command::new(binary())
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            // Debug for the document task, to count compactions.
            .env("RUST_LOG", "info,twinsync_server::document=debug")
            .env("NO_COLOR", "1")
            // The app the README's `serve` gives, whatever directory the
            // test runs in.
            .env("TWINSYNC_APP_DIR", super::workspace().join("app"))
            .env(
                "TWINSYNC_CLIENT_DIR",
                super::workspace().join("client-wasm/pkg"),
            )
            // Simulated swarms sign every peer in with one coordinator's
            // token, where each delegate has a device of their own.
            .env("TWINSYNC_MAX_PEERS_PER_DEVICE", "100000")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the server starts");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        let compactions = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&compactions);
        let log = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&log);
        std::thread::spawn(move || {
            let mut invite = None;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                {
                    // The last lines only: a soak test's debug log would
                    // otherwise grow for its whole run.
                    let mut kept = kept.lock().unwrap_or_else(|e| e.into_inner());
                    if kept.len() >= LOG_LINES_KEPT {
                        kept.drain(..LOG_LINES_KEPT / 2);
                    }
                    kept.push(line.clone());
                }
                if line.contains("compacted") {
                    counted.fetch_add(1, Ordering::Relaxed);
                }
                if line.contains("#invite=")
                    && let Some(link) = line.split_whitespace().find(|w| w.contains("#invite="))
                {
                    invite = Some(link.to_owned());
                }
                if let Some(addr) = line.split("serving on http://").nth(1) {
                    let _ = tx.send((addr.trim().to_owned(), invite.take()));
                }
                if std::env::var_os("TEST_LOG").is_some() {
                    eprintln!("[server] {line}");
                }
            }
        });
        let Ok((addr, invite)) = rx.recv_timeout(Duration::from_secs(30)) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the server did not say where it listens within 30 s");
        };
        let addr = addr.parse().expect("an address");
        let server = Self {
            child,
            addr,
            token: String::new(),
            compactions,
            log,
        };
        (server, invite)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The WebSocket URL with the coordinator's token.
    pub fn ws(&self) -> String {
        format!("ws://{}/sync?token={}", self.addr, self.token)
    }

    /// GET with the coordinator's token.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        reqwest::Client::new()
            .get(self.url(path))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("the API answers")
    }

    /// GET with the coordinator's token, read as JSON.
    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        self.get(path).await.json().await.expect("a JSON answer")
    }

    /// The ids of the records of `kind` the API lists.
    pub async fn ids(&self, kind: &str) -> Vec<twinsync_shared::DocumentId> {
        let list = self.get_json(&format!("/api/records?kind={kind}")).await;
        list.as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["id"].as_str()?.parse().ok())
            .collect()
    }

    /// A figure of the process's `/proc/<pid>/status` (`VmRSS:`, `VmHWM:`),
    /// in KiB; `None` once the process is gone.
    pub fn status_kib(&self, key: &str) -> Option<u64> {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// The first line of the server's log holding every one of `needles`,
    /// waiting for it up to `limit`; the test fails, showing the log, if
    /// none comes.
    pub async fn logged(&self, needles: &[&str], limit: Duration) -> String {
        let start = Instant::now();
        loop {
            {
                let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(line) = log.iter().find(|l| needles.iter().all(|n| l.contains(n))) {
                    return line.clone();
                }
                assert!(
                    start.elapsed() < limit,
                    "no line of the server's log holds {needles:?}:\n{}",
                    log.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// How many lines of the server's log so far hold every one of `needles`.
    pub fn count_logged(&self, needles: &[&str]) -> usize {
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        log.iter()
            .filter(|l| needles.iter().all(|n| l.contains(n)))
            .count()
    }

    /// Sends the server `signal` (`INT`, `TERM`) with `kill`.
    pub fn signal(&self, signal: &str) {
        let sent = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(sent.success(), "kill -{signal} failed");
    }

    /// Waits up to `limit` for the server to exit; its status if it did.
    pub fn exited_within(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits until `/healthz` answers, within `limit`.
    pub async fn wait_healthy(&self, limit: Duration) {
        let start = Instant::now();
        while start.elapsed() < limit {
            if reqwest::get(self.url("/healthz"))
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the server did not become healthy in {limit:?}");
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
