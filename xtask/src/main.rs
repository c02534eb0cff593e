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
    /// Run every test: unit, property, integration, the browser tests.
    Test,
    /// Build the browser client into client-wasm/pkg: .wasm, JS bindings, .d.ts.
    BuildClient,
    /// Measure the browser client: its size and how fast 500 records open.
    BenchClient,
    /// Benchmark the server side by side with the official automerge-repo
    /// server; a full run writes BENCHMARKS.md.
    Bench {
        /// A short run: checks the harness and that both servers hold the
        /// same documents.
        #[arg(long)]
        smoke: bool,
        /// Runs per scenario and system.
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// Run the cargo-fuzz targets in fuzz/ (installs cargo-fuzz if missing).
    Fuzz {
        /// Seconds per target (a longer run than CI's).
        #[arg(long, default_value_t = 300)]
        seconds: u64,
        /// CI's smoke run: a fixed number of inputs per target from a fixed
        /// seed, so it finds the same thing every time.
        #[arg(long)]
        smoke: bool,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.task {
        Task::Serve { args } => serve(&args),
        Task::Test => test(),
        Task::BuildClient => build_client(),
        Task::BenchClient => bench_client(),
        Task::Bench { smoke, runs } => bench(smoke, runs),
        Task::Fuzz { seconds, smoke } => fuzz(seconds, smoke),
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
    build_client()?;
    let mut build = cargo();
    build.args([
        "build",
        "--release",
        "--package",
        "twinsync-server",
        "--bin",
        "twinsync",
        "--message-format=json-render-diagnostics",
    ]);
    build.stdout(std::process::Stdio::piped());
    eprintln!("xtask: running {build:?}");
    let built = build
        .output()
        .with_context(|| format!("could not start {build:?}"))?;
    if !built.status.success() {
        bail!("{build:?} failed with {}", built.status);
    }
    // The binary cargo says it built, wherever the target directory is
    // (`CARGO_TARGET_DIR`, a `build.target-dir` of the user's config).
    let binary = String::from_utf8_lossy(&built.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "twinsync")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .context("cargo built no twinsync binary")?;
    let mut cmd = Command::new(binary);
    cmd.current_dir(root()).arg("serve").args(args);
    eprintln!("xtask: running {cmd:?}");
    // The server takes this process's place: a service manager's SIGTERM,
    // or Ctrl-C, reaches it alone, and the shell waits until it has
    // stopped. As a child, it would outlive an xtask killed first, still
    // holding the port and the data directory's lock.
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        let err = cmd.exec();
        Err(err).with_context(|| format!("could not start {cmd:?}"))
    }
    #[cfg(not(unix))]
    run(cmd)
}

/// The pinned official JavaScript client for the interop tests and
/// playwright-core for the browser tests, in the ignored
/// `tests/js/node_modules`.
///
/// `npm install` rather than `npm ci`: the registry this machine reaches
/// has at times lacked cbor-extract's optional native builds, which npm
/// then leaves out of the lock, and `npm ci` calls a lock with or without
/// them out of sync. With exact versions in package.json and the lock,
/// `npm install` installs the same; `--no-save` keeps it from rewriting
/// the tracked lock when the registry's answer changes.
fn ensure_js_client() -> Result<()> {
    npm_install("tests/js")
}

fn test() -> Result<()> {
    ensure_wasm_target()?;
    ensure_js_client()?;
    // The end-to-end tests run the server as a process, to kill -9 it, and
    // the browser tests load the client it serves.
    let mut build = cargo();
    build.args(["build", "--package", "twinsync-server", "--bin", "twinsync"]);
    run(build)?;
    // The shared crate on its own for the browser, as the client uses it.
    let mut check = cargo();
    check.args([
        "check",
        "--package",
        "twinsync-shared",
        "--target",
        "wasm32-unknown-unknown",
    ]);
    run(check)?;
    build_client()?;
    let mut tests = cargo();
    // xtask has no tests; building it again under the workspace's unified
    // features would only recompile wasm-bindgen's CLI support.
    tests.args(["test", "--workspace", "--exclude", "xtask"]);
    run(tests)?;
    // The benchmark's harness, short and with debug builds: it works, and
    // our server and the official one end with the same documents.
    let mut build = cargo();
    build.args(["build", "--package", "twinsync-bench"]);
    run(build)?;
    let debug = target_dir().join("debug");
    let mut smoke = Command::new(debug.join("twinsync-bench"));
    smoke
        .arg("--smoke")
        .arg("--twinsync")
        .arg(debug.join("twinsync"))
        .arg("--js-server")
        .arg(root().join("tests/js/sync-server.mjs"))
        .current_dir(root());
    run(smoke).context("the benchmark smoke run failed")?;
    // The app's search folding, its strings, its text edits and the list
    // items it writes into files, in node alone.
    let mut search = Command::new("node");
    search
        .args(["--test"])
        .arg(root().join("tests/js/search.test.mjs"))
        .arg(root().join("tests/js/text.test.mjs"))
        .arg(root().join("tests/js/fields.test.mjs"))
        .arg(root().join("tests/js/history.test.mjs"))
        .current_dir(root().join("tests/js"));
    run(search).context("the app's search, string, text and field tests failed")?;
    // The fuzz targets, briefly: they build, and the fixed inputs crash nothing.
    fuzz(0, true)?;
    ensure_chromium()?;
    let mut browser = Command::new("node");
    browser
        // A test that hangs (a browser call that never answers) fails
        // after five minutes, naming itself, rather than holding the run;
        // the longest test takes under two.
        .args(["--test", "--test-concurrency=1", "--test-timeout=300000"])
        .arg(root().join("tests/js/browser/client.test.mjs"))
        .arg(root().join("tests/js/browser/faults.test.mjs"))
        .arg(root().join("tests/js/browser/auth.test.mjs"))
        .arg(root().join("tests/js/browser/app.test.mjs"))
        .current_dir(root().join("tests/js"));
    run(browser).context("the browser tests failed")?;
    Ok(())
}

/// The fuzz targets and, for the smoke run, how many inputs each runs.
const FUZZ_TARGETS: [(&str, u64); 4] = [
    ("frame", 200_000),
    ("document_load", 40_000),
    ("sync_engine", 2_000),
    ("http_api", 2_000),
];

/// Where tools built from crates.io are kept between runs, outside the
/// repository.
fn tools_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join(".cache/twinsync-tools")
}

/// `cargo fuzz` on the PATH it is run with; installed into `tools_dir()`
/// if missing (a few minutes, once).
fn ensure_cargo_fuzz() -> Result<std::ffi::OsString> {
    let bin = tools_dir().join("bin");
    let mut path = std::ffi::OsString::from(&bin);
    if let Some(old) = std::env::var_os("PATH") {
        path.push(":");
        path.push(old);
    }
    let works = Command::new("cargo")
        .args(["fuzz", "--version"])
        .env("PATH", &path)
        .output()
        .is_ok_and(|o| o.status.success());
    if !works {
        let mut install = Command::new("cargo");
        install
            .args([
                "install",
                "cargo-fuzz",
                "--version",
                "0.13.2",
                "--locked",
                "--root",
            ])
            .arg(tools_dir());
        run(install).context("installing cargo-fuzz")?;
    }
    Ok(path)
}

/// Builds the fuzz targets (stable Rust, so no sanitizer: `-s none`) and
/// runs each from its seed corpus. New inputs go to a scratch corpus under
/// the fuzz target directory, never into the committed seeds. Prints and
/// records the executions; a crash fails the task with libFuzzer's report.
fn fuzz(seconds: u64, smoke: bool) -> Result<()> {
    let path = ensure_cargo_fuzz()?;
    let dir = root().join("fuzz");
    let target = dir.join("target");
    let fuzz_cmd = || {
        let mut cmd = Command::new("cargo");
        cmd.arg("fuzz")
            .current_dir(&dir)
            .env("PATH", &path)
            .env("CARGO_TARGET_DIR", &target);
        cmd
    };
    let mut build = fuzz_cmd();
    build.args(["build", "-s", "none"]);
    run(build)?;
    let mut lines = Vec::new();
    let mut total = 0u64;
    for (name, runs) in FUZZ_TARGETS {
        // The smoke run starts from the seeds alone, so it runs the same
        // inputs every time; longer runs keep what they found.
        let scratch = target
            .join(if smoke { "corpus-smoke" } else { "corpus" })
            .join(name);
        if smoke {
            let _ = std::fs::remove_dir_all(&scratch);
        }
        std::fs::create_dir_all(&scratch)?;
        let mut cmd = fuzz_cmd();
        cmd.args(["run", "-s", "none", name])
            .arg(&scratch)
            .arg(dir.join("corpus").join(name))
            .args(["--", "-print_final_stats=1"]);
        if smoke {
            cmd.args(["-seed=1", &format!("-runs={runs}")]);
        } else {
            cmd.arg(format!("-max_total_time={seconds}"));
        }
        eprintln!("xtask: running {cmd:?}");
        let out = cmd
            .stderr(std::process::Stdio::piped())
            .output()
            .with_context(|| format!("could not start cargo fuzz for {name}"))?;
        let log = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            eprintln!("{log}");
            bail!("fuzz target {name} failed: a crash, or libFuzzer could not run");
        }
        let executed = log
            .lines()
            .find_map(|l| l.strip_prefix("stat::number_of_executed_units:"))
            .and_then(|n| n.trim().parse::<u64>().ok())
            .with_context(|| format!("libFuzzer printed no execution count for {name}"))?;
        total += executed;
        lines.push(format!("{name}: {executed} executions, no crash"));
    }
    let mode = if smoke {
        "smoke: fixed inputs from seed 1".to_owned()
    } else {
        format!("{seconds} s per target")
    };
    let report = format!(
        "fuzz ({mode})\n{}\nfuzz executions: {total}\n",
        lines.join("\n")
    );
    println!("{report}");
    let out = root().join("target/test-artefacts/reliability");
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("fuzz.txt"), report)?;
    Ok(())
}

/// Debian's Chromium and ChromeDriver, for the browser tests.
fn ensure_chromium() -> Result<()> {
    if Path::new("/usr/bin/chromium").exists() && Path::new("/usr/bin/chromedriver").exists() {
        return Ok(());
    }
    let install = || {
        let mut apt = Command::new("apt-get");
        apt.args([
            "install",
            "-y",
            "--no-install-recommends",
            "chromium",
            "chromium-driver",
        ])
        .env("DEBIAN_FRONTEND", "noninteractive");
        run(apt)
    };
    if install().is_err() {
        let mut update = Command::new("apt-get");
        update.arg("update");
        run(update)?;
        install().context("installing Debian's chromium and chromium-driver")?;
    }
    Ok(())
}

/// Where cargo puts build output.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

/// Builds our server and the load generator in release mode, installs the
/// pinned official server, and runs `twinsync-bench`.
fn bench(smoke: bool, runs: usize) -> Result<()> {
    ensure_js_client()?;
    let mut build = cargo();
    build.args([
        "build",
        "--release",
        "--package",
        "twinsync-server",
        "--package",
        "twinsync-bench",
    ]);
    run(build)?;
    let release = target_dir().join("release");
    let mut bench = Command::new(release.join("twinsync-bench"));
    bench
        .arg("--twinsync")
        .arg(release.join("twinsync"))
        .arg("--js-server")
        .arg(root().join("tests/js/sync-server.mjs"))
        .args(["--runs", &runs.to_string()])
        .current_dir(root());
    if smoke {
        bench.arg("--smoke");
    } else {
        bench.arg("--out").arg(root().join("BENCHMARKS.md"));
    }
    run(bench)
}

/// Installs pinned npm packages of `dir` (relative to the root) when its
/// lock file changed since the last install.
fn npm_install(dir: &str) -> Result<()> {
    let dir = root().join(dir);
    let lock = std::fs::read(dir.join("package-lock.json"))
        .with_context(|| format!("reading {}/package-lock.json", dir.display()))?;
    let stamp = dir.join("node_modules/.twinsync-lock");
    if std::fs::read(&stamp).is_ok_and(|installed| installed == lock) {
        return Ok(());
    }
    let mut npm = Command::new("npm");
    npm.args(["install", "--no-save", "--no-audit", "--no-fund"])
        .current_dir(&dir);
    run(npm).context("installing pinned npm packages (is Node.js with npm installed?)")?;
    std::fs::write(&stamp, lock).context("writing the npm install stamp")?;
    Ok(())
}

/// The browser client: cargo builds the wasm (opt-level z, LTO), the
/// wasm-bindgen library writes the JS bindings and TypeScript types, and
/// wasm-opt from the pinned npm binaryen shrinks it. Downloads no binary.
fn build_client() -> Result<()> {
    ensure_wasm_target()?;
    let mut build = cargo();
    build.args([
        "build",
        "--package",
        "twinsync-client",
        "--target",
        "wasm32-unknown-unknown",
        "--profile",
        "wasm-release",
    ]);
    run(build)?;
    let wasm = target_dir().join("wasm32-unknown-unknown/wasm-release/twinsync_client.wasm");
    let pkg = root().join("client-wasm/pkg");
    eprintln!("xtask: generating JS bindings into {}", pkg.display());
    wasm_bindgen_cli_support::Bindgen::new()
        .input_path(&wasm)
        .out_name("twinsync_client")
        .typescript(true)
        // Let `init()` find the .wasm beside the JS by default.
        .omit_default_module_path(false)
        .web(true)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .generate(&pkg)
        .map_err(|e| anyhow::anyhow!("wasm-bindgen: {e}"))?;

    npm_install("xtask/js")?;
    let out = pkg.join("twinsync_client_bg.wasm");
    let before = std::fs::metadata(&out)?.len();
    let mut opt = Command::new("node");
    opt.arg(root().join("xtask/js/node_modules/binaryen/bin/wasm-opt"))
        .arg(&out)
        // Exactly the features rustc 1.95 enables for wasm32-unknown-unknown.
        .args([
            "-Oz",
            "--strip-debug",
            "--enable-bulk-memory",
            "--enable-nontrapping-float-to-int",
            "--enable-sign-ext",
            "--enable-mutable-globals",
            "--enable-reference-types",
            "--enable-multivalue",
            "-o",
        ])
        .arg(&out);
    run(opt)?;
    let bytes = std::fs::read(&out)?;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut gz, &bytes)?;
    let gzipped = gz.finish()?.len();
    eprintln!(
        "xtask: client wasm {:.0} KiB ({:.0} KiB before wasm-opt), {:.0} KiB gzipped",
        bytes.len() as f64 / 1024.0,
        before as f64 / 1024.0,
        gzipped as f64 / 1024.0
    );
    Ok(())
}

/// Prints the client's size (from the build) and how long a store of 500
/// records takes to open from IndexedDB in headless Chromium.
fn bench_client() -> Result<()> {
    ensure_js_client()?;
    let mut build = cargo();
    build.args(["build", "--package", "twinsync-server", "--bin", "twinsync"]);
    run(build)?;
    build_client()?;
    ensure_chromium()?;
    let mut bench = Command::new("node");
    bench
        .arg(root().join("tests/js/browser/bench-open.mjs"))
        .current_dir(root().join("tests/js"));
    run(bench)
}
