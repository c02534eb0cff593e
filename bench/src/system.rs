//! The systems under test, each started fresh with an empty data
//! directory: our server (release build) and the official automerge-repo
//! server on Node.js. Memory and CPU are read from `/proc`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use automerge::Automerge;
use twinsync_shared::DocumentId;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Ours,
    Official,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Ours => "twinsync",
            Kind::Official => "automerge-repo (JS)",
        }
    }
}

/// Where the programs are.
#[derive(Debug, Clone)]
pub struct Programs {
    /// The release `twinsync` binary.
    pub twinsync: PathBuf,
    /// The official server's script (`tests/js/sync-server.mjs`).
    pub js_server: PathBuf,
}

/// A running system.
#[derive(Debug)]
pub struct System {
    kind: Kind,
    programs: Programs,
    extra: Vec<String>,
    token: Option<String>,
    child: Child,
    /// The WebSocket URL a peer connects to, token included.
    pub url: String,
    data: tempfile::TempDir,
}

impl System {
    /// Starts `kind` on a fresh, empty data directory.
    pub fn start(kind: Kind, programs: &Programs, extra: &[&str]) -> Result<Self> {
        let data = tempfile::tempdir()?;
        let token = match kind {
            Kind::Ours => {
                let out = Command::new(&programs.twinsync)
                    .args([
                        "device",
                        "add",
                        "--name",
                        "bench",
                        "--role",
                        "coordinator",
                        "--data-dir",
                    ])
                    .arg(data.path())
                    .output()
                    .context("twinsync device add")?;
                if !out.status.success() {
                    bail!("device add: {}", String::from_utf8_lossy(&out.stderr));
                }
                let token = String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .last()
                    .unwrap_or_default()
                    .trim()
                    .to_owned();
                Some(token)
            }
            Kind::Official => None,
        };
        let extra: Vec<String> = extra.iter().map(|a| (*a).to_owned()).collect();
        let (child, url) = spawn(kind, programs, &extra, token.as_deref(), data.path())?;
        Ok(Self {
            kind,
            programs: programs.clone(),
            extra,
            token,
            child,
            url,
            data,
        })
    }

    /// Stops the process and starts it again on the same data directory,
    /// as after a restart: what it holds is only what it stored.
    pub fn restart(&mut self) -> Result<()> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let (child, url) = spawn(
            self.kind,
            &self.programs,
            &self.extra,
            self.token.as_deref(),
            self.data.path(),
        )?;
        self.child = child;
        self.url = url;
        Ok(())
    }

    /// Stores `docs` straight into the official server's data directory
    /// through its own storage adapter (`tests/js/seed-store.mjs`), with
    /// the server stopped; [`System::restart`] then serves them. False
    /// for our server, which is sent them instead.
    pub fn store_directly(&mut self, docs: &[(DocumentId, Automerge)]) -> Result<bool> {
        if self.kind != Kind::Official {
            return Ok(false);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut file = Vec::new();
        for (id, doc) in docs {
            for part in [id.to_string().into_bytes(), doc.save()] {
                let len = u32::try_from(part.len()).context("a record over 4 GiB")?;
                file.extend_from_slice(&len.to_be_bytes());
                file.extend_from_slice(&part);
            }
        }
        let list = tempfile::NamedTempFile::new()?;
        std::fs::write(list.path(), &file)?;
        let script = self.programs.js_server.with_file_name("seed-store.mjs");
        let out = Command::new("node")
            .arg(&script)
            .arg(self.data.path())
            .arg(list.path())
            .output()
            .with_context(|| format!("running {}", script.display()))?;
        let said = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() || !said.contains(&format!("stored {}", docs.len())) {
            bail!("{} failed ({}): {said}", script.display(), out.status);
        }
        Ok(true)
    }

    /// Resident memory now, in MiB (`VmRSS`).
    pub fn rss_mib(&self) -> Result<f64> {
        status_kib(self.pid(), "VmRSS:").map(|k| k / 1024.0)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Peak resident memory so far, in MiB (`VmHWM`).
    pub fn peak_rss_mib(&self) -> Result<f64> {
        status_kib(self.pid(), "VmHWM:").map(|k| k / 1024.0)
    }

    /// CPU time the server used so far (user + system), in seconds.
    pub fn cpu_seconds(&self) -> Result<f64> {
        cpu_seconds(&self.pid().to_string())
    }
}

/// CPU time (user + system) process `pid` used so far, in seconds; `self`
/// for this process, the load generator.
pub fn cpu_seconds(pid: &str) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| anyhow!("unreadable /proc stat"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields
        .get(11..13)
        .ok_or_else(|| anyhow!("short /proc stat"))?
        .iter()
        .map(|f| f.parse::<f64>().unwrap_or(0.0))
        .sum();
    Ok(ticks / 100.0)
}

impl Drop for System {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(
    kind: Kind,
    programs: &Programs,
    extra: &[String],
    token: Option<&str>,
    data: &Path,
) -> Result<(Child, String)> {
    let mut child = match kind {
        Kind::Ours => Command::new(&programs.twinsync)
            .args([
                "serve",
                "--no-demo",
                "--listen",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(data)
            // Every simulated device connects from 127.0.0.1, where in the
            // field each has its own address: the cap on one address's
            // connections being set up at once (against one client taking
            // every slot) is raised to the overall cap.
            .args(["--max-http-connections-per-address", "1024"])
            // And every simulated peer signs in with one coordinator's
            // token, where each delegate has their own device: the caps
            // on one device's sockets and on the documents they hold open
            // are raised too.
            .args(["--max-peers-per-device", "100000"])
            .args(["--max-open-docs-per-device", "100000000"])
            .args(extra)
            .env(
                "RUST_LOG",
                std::env::var("BENCH_SERVER_LOG").unwrap_or_else(|_| "warn,twinsync=info".into()),
            )
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting twinsync")?,
        Kind::Official => Command::new("node")
            .arg(&programs.js_server)
            .arg(data)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting node")?,
    };
    let addr = listening_address(&mut child)?;
    let url = match token {
        Some(t) => format!("ws://{addr}/sync?token={t}"),
        None => format!("ws://{addr}"),
    };
    Ok((child, url))
}

fn status_kib(pid: u32, key: &str) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow!("no {key} in /proc/{pid}/status"))
}

/// Reads the child's stderr until it says where it listens
/// (`serving on http://ADDR` or `listening on ADDR`); keeps draining it.
/// A child that ends its stderr first (it exited) is an error that quotes
/// what it wrote.
fn listening_address(child: &mut Child) -> Result<String> {
    let stderr = child.stderr.take().ok_or_else(|| anyhow!("no stderr"))?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut said = Vec::new();
        let mut announced = false;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let addr = line
                .split("serving on http://")
                .nth(1)
                .or_else(|| line.split("listening on ").nth(1));
            if let Some(addr) = addr {
                announced = true;
                let _ = tx.send(Ok(addr.trim().to_owned()));
            }
            if std::env::var_os("BENCH_LOG").is_some() {
                eprintln!("[server] {line}");
            }
            if !announced {
                // The last lines are the ones that say why.
                if said.len() == 40 {
                    said.remove(0);
                }
                said.push(line);
            }
        }
        if !announced {
            let _ = tx.send(Err(said.join("\n")));
        }
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(Ok(addr)) => Ok(addr),
        Ok(Err(said)) => {
            let status = child
                .wait()
                .map_or_else(|e| e.to_string(), |s| s.to_string());
            bail!("the server exited ({status}) before it said where it listens:\n{said}")
        }
        Err(_) => bail!("the server did not say where it listens within 60 s"),
    }
}
