//! Project automation: `cargo xtask <task>`.
//!
//! - `serve`: the main job. Builds what the app needs and runs the server
//!   with its SQLite database and the demo club.
//! - `test`: every test: installs what the tests need, then runs them.
//!
//! Each task installs what it needs and says what it is doing.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "twinsync project automation")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Build and run the server with its database and the demo club.
    Serve {
        /// Arguments passed to `twinsync serve` (after `--`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run every test: unit, property, integration, the wasm32 build check.
    Test,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.task {
        Task::Serve { args } => serve(&args),
        Task::Test => test(),
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_owned()
}

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root());
    cmd
}

fn run(mut cmd: Command) -> Result<()> {
    eprintln!("xtask: running {cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("could not start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

/// The wasm32 target, for the shared crate's browser build.
fn ensure_wasm_target() -> Result<()> {
    let out = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output();
    let installed =
        out.map(|o| String::from_utf8_lossy(&o.stdout).contains("wasm32-unknown-unknown"));
    if !installed.unwrap_or(false) {
        let mut cmd = Command::new("rustup");
        cmd.args(["target", "add", "wasm32-unknown-unknown"]);
        run(cmd)?;
    }
    Ok(())
}

fn serve(args: &[String]) -> Result<()> {
    let mut cmd = cargo();
    cmd.args([
        "run",
        "--release",
        "--package",
        "twinsync-server",
        "--bin",
        "twinsync",
        "--",
        "serve",
    ]);
    cmd.args(args);
    run(cmd)
}

/// The pinned official JavaScript client for the interop tests, installed
/// into the ignored `tests/js/node_modules`. A stamp holding the lock file's
/// contents skips the install when nothing changed.
///
/// `npm install` rather than `npm ci`: the registry this machine reaches
/// lacks cbor-extract's optional native builds, which npm leaves out of
/// the lock, and `npm ci` then calls the lock out of sync. With exact
/// versions in package.json and the lock, `npm install` installs the same.
fn ensure_js_client() -> Result<()> {
    let dir = root().join("tests/js");
    let lock = std::fs::read(dir.join("package-lock.json"))
        .context("reading tests/js/package-lock.json")?;
    let stamp = dir.join("node_modules/.twinsync-lock");
    if std::fs::read(&stamp).is_ok_and(|installed| installed == lock) {
        return Ok(());
    }
    let mut npm = Command::new("npm");
    npm.args(["install", "--no-audit", "--no-fund"])
        .current_dir(&dir);
    run(npm).context("installing the pinned JavaScript client (is Node.js with npm installed?)")?;
    std::fs::write(&stamp, lock).context("writing the npm install stamp")?;
    Ok(())
}

fn test() -> Result<()> {
    ensure_wasm_target()?;
    ensure_js_client()?;
    let mut check = cargo();
    check.args([
        "check",
        "--package",
        "twinsync-shared",
        "--target",
        "wasm32-unknown-unknown",
        "--features",
        "wasm",
    ]);
    run(check)?;
    // The end-to-end tests run the server as a process, to kill -9 it.
    let mut build = cargo();
    build.args(["build", "--package", "twinsync-server", "--bin", "twinsync"]);
    run(build)?;
    let mut tests = cargo();
    tests.args(["test", "--workspace", "--exclude", "twinsync-client"]);
    run(tests)?;
    Ok(())
}
