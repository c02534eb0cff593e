//! `twinsync`: the sync server of the Smara International Club of Twinned
//! Cities, and its operator commands.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use twinsync_server::settings::Settings;
use twinsync_server::store::Store;
use twinsync_server::{startup, telemetry};

#[derive(Parser)]
#[command(
    name = "twinsync",
    version,
    about = "Offline-first records for the Smara International Club of Twinned Cities"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the sync server: WebSocket sync at /sync, the API at /api, the app at /.
    Serve(Settings),
    /// Copy the database to FILE with SQLite's online backup (safe while serving).
    Backup {
        #[arg(long, env = "TWINSYNC_DATA_DIR", default_value = "data")]
        data_dir: PathBuf,
        file: PathBuf,
    },
    /// Write every merged record as JSON to standard output.
    Export {
        #[arg(long, env = "TWINSYNC_DATA_DIR", default_value = "data")]
        data_dir: PathBuf,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    telemetry::init("info,tower_http=warn");
    match Cli::parse().command {
        Command::Serve(settings) => {
            let listen = settings.listen;
            let hub = startup::prepare(settings)?;
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("cannot listen on {listen}"))?;
            tracing::info!("twinsync serving on http://{}", listener.local_addr()?);
            startup::run(listener, hub, startup::shutdown_signal()).await
        }
        Command::Backup { data_dir, file } => {
            let store = open_existing(&data_dir)?;
            store
                .backup(&file)
                .with_context(|| format!("backup to {} failed", file.display()))?;
            eprintln!("backed up to {}", file.display());
            Ok(())
        }
        Command::Export { data_dir } => {
            let store = open_existing(&data_dir)?;
            let json = twinsync_server::seed::export(&store)?;
            println!("{}", serde_json::to_string_pretty(&json)?);
            Ok(())
        }
    }
}

fn open_existing(data_dir: &std::path::Path) -> anyhow::Result<Store> {
    let path = data_dir.join("twinsync.db");
    anyhow::ensure!(
        path.exists(),
        "no database at {}: is --data-dir right?",
        path.display()
    );
    Ok(Store::open(&path)?)
}
