//! `twinsync`: the sync server of the Smara International Club of Twinned
//! Cities, and its operator commands.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use twinsync_server::admin::DeviceUpdate;
use twinsync_server::auth::{NewDevice, Role};
use twinsync_server::lock::{DataDirLock, Use};
use twinsync_server::settings::Settings;
use twinsync_server::store::{InvitedBy, Store};
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
    Serve(Box<Settings>),
    /// Copy the database to FILE with SQLite's online backup (safe while serving).
    Backup {
        #[arg(long, env = "TWINSYNC_DATA_DIR", default_value = "data")]
        data_dir: PathBuf,
        file: PathBuf,
    },
    /// Put a backup made by `twinsync backup` in place of the database, with
    /// the server stopped. The backup is checked first; the database it
    /// replaces is moved to a `before-restore-<time>` folder, never deleted.
    /// Devices and invites keep what the database replaced holds. Phones send back the changes made since the backup as they
    /// sync.
    Restore {
        #[arg(long, env = "TWINSYNC_DATA_DIR", default_value = "data")]
        data_dir: PathBuf,
        file: PathBuf,
        /// When the database to be replaced cannot be read, or holds
        /// another club than the backup, restore anyway with the backup's
        /// devices and invites alone: a device revoked since the backup can
        /// sign in again.
        #[arg(long)]
        devices_from_backup: bool,
    },
    /// Give back records a damaged chunk made unreadable, from the chunks
    /// that still load, with the server stopped. Every chunk of such a
    /// record is first written to a `salvaged-<time>` folder, never
    /// deleted; phones send back what the damaged chunks held as they sync.
    Salvage {
        #[arg(long, env = "TWINSYNC_DATA_DIR", default_value = "data")]
        data_dir: PathBuf,
    },
    /// Write every merged record as JSON to standard output.
    Export {
        #[arg(long, env = "TWINSYNC_DATA_DIR", default_value = "data")]
        data_dir: PathBuf,
    },
    /// Provision, list, change and revoke devices (works while the server runs).
    #[command(subcommand)]
    Device(DeviceCommand),
}

/// A device to make, as `device add` and `device invite` take it.
#[derive(clap::Args)]
struct DeviceSpec {
    /// Who holds the device, e.g. "Fatima's phone".
    #[arg(long)]
    name: String,
    #[arg(long, value_enum)]
    role: Role,
    /// A member city of a delegate, by name (any language) or record id;
    /// repeat for several.
    #[arg(long)]
    city: Vec<String>,
    /// The device holder's person record id: meetings they attend and
    /// reports they wrote are theirs to edit.
    #[arg(long)]
    person: Option<String>,
}

impl From<DeviceSpec> for NewDevice {
    fn from(spec: DeviceSpec) -> Self {
        NewDevice {
            name: spec.name,
            role: spec.role,
            cities: spec.city,
            person: spec.person,
        }
    }
}

#[derive(Subcommand)]
enum DeviceCommand {
    /// Provision a device and print its token on the last line.
    Add {
        #[arg(long, env = "TWINSYNC_DATA_DIR", default_value = "data")]
        data_dir: PathBuf,
        #[command(flatten)]
        device: DeviceSpec,
    },
    /// List devices (never their tokens): id, role, name, cities by name,
    /// and whether the device is active, expired or revoked.
    List {
        #[arg(long, env = "TWINSYNC_DATA_DIR", default_value = "data")]
        data_dir: PathBuf,
        /// The server's token lifetime, as `serve` has it: a device not
        /// seen for longer is listed as expired.
        #[arg(long, env = "TWINSYNC_TOKEN_TTL_DAYS", default_value_t = 90)]
        token_ttl_days: u64,
    },
    /// Change a device's name, role, cities or person; what is not given
    /// stays. A running server closes the device's sockets within seconds
    /// (at once when changed through the API), and it signs in again under
    /// its new rights.
    Update {
        #[arg(long, env = "TWINSYNC_DATA_DIR", default_value = "data")]
        data_dir: PathBuf,
        id: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long, value_enum)]
        role: Option<Role>,
        /// The member cities, replacing the device's; repeat for several.
        #[arg(long, conflicts_with = "no_city")]
        city: Vec<String>,
        /// Take every member city away (a delegate needs one).
        #[arg(long)]
        no_city: bool,
        /// The device holder's person record id.
        #[arg(long, conflicts_with = "no_person")]
        person: Option<String>,
        /// Take the device's person record away.
        #[arg(long)]
        no_person: bool,
        /// The server's token lifetime, as `serve` has it: a coordinator
        /// not seen for longer does not count as one that can sign in.
        #[arg(long, env = "TWINSYNC_TOKEN_TTL_DAYS", default_value_t = 90)]
        token_ttl_days: u64,
    },
    /// Revoke a device: a running server closes its sockets within seconds
    /// (at once when revoked through the API).
    Revoke {
        #[arg(long, env = "TWINSYNC_DATA_DIR", default_value = "data")]
        data_dir: PathBuf,
        id: String,
        /// The server's token lifetime, as `serve` has it: a coordinator
        /// not seen for longer does not count as one that can sign in.
        #[arg(long, env = "TWINSYNC_TOKEN_TTL_DAYS", default_value_t = 90)]
        token_ttl_days: u64,
    },
    /// Print a one-time invite link on the last line: opened in a browser,
    /// it signs in a new device as given. How an operator signs a
    /// coordinator in again when none can.
    Invite {
        #[arg(long, env = "TWINSYNC_DATA_DIR", default_value = "data")]
        data_dir: PathBuf,
        #[command(flatten)]
        device: DeviceSpec,
        /// Hours the link can be redeemed (at most 90 days' worth).
        #[arg(
            long,
            env = "TWINSYNC_INVITE_HOURS",
            default_value_t = 72,
            value_parser = clap::value_parser!(u64).range(1..=24 * 90),
        )]
        hours: u64,
        /// The address people reach the server at, as `serve --public-url`.
        #[arg(
            long,
            env = "TWINSYNC_PUBLIC_URL",
            default_value = "http://127.0.0.1:8080",
            value_parser = twinsync_server::settings::public_url,
        )]
        public_url: String,
    },
}

/// Writes `line` to stderr in one write: `eprintln!` writes each formatted
/// piece apart, and a script reading the address as it comes (the tests'
/// harness, a service manager's log) could take half a port.
fn say(line: &str) {
    use std::io::Write;
    let _ = std::io::stderr()
        .lock()
        .write_all(format!("{line}\n").as_bytes());
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    telemetry::init("info,tower_http=warn");
    match Cli::parse().command {
        Command::Serve(settings) => {
            let listen = settings.listen;
            let hub = startup::prepare(*settings)?;
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("cannot listen on {listen}"))?;
            let addr = listener.local_addr()?;
            let base = hub
                .settings
                .public_url
                .clone()
                .unwrap_or_else(|| format!("http://{addr}"));
            // Printed whatever `RUST_LOG` shows: an operator who quiets the
            // logs still needs the link, and each start ends the last one.
            if let Some(link) = startup::first_invite(&hub, &base)? {
                say(&format!(
                    "no device yet: open {link} to sign in as the first coordinator"
                ));
            }
            say(&format!("twinsync serving on http://{addr}"));
            startup::run(listener, hub, startup::shutdown_signal()).await
        }
        Command::Backup { data_dir, file } => {
            // A copy as it is: a backup taken with a newer binary must
            // restore with the one the server runs.
            let (store, _lock) = open_existing(&data_dir, Migrate::No)?;
            store
                .backup(&file)
                .with_context(|| format!("backup to {} failed", file.display()))?;
            eprintln!("backed up to {}", file.display());
            Ok(())
        }
        Command::Restore {
            data_dir,
            file,
            devices_from_backup,
        } => restore(&data_dir, &file, devices_from_backup),
        Command::Salvage { data_dir } => salvage(&data_dir),
        Command::Device(command) => device(command),
        Command::Export { data_dir } => {
            let (store, _lock) = open_existing(&data_dir, Migrate::UnlessServed)?;
            let json = twinsync_server::seed::export(&store)?;
            println!("{}", serde_json::to_string_pretty(&json)?);
            Ok(())
        }
    }
}

fn salvage(data_dir: &std::path::Path) -> anyhow::Result<()> {
    let done = twinsync_server::store::salvage::salvage(data_dir, &stamp())
        .with_context(|| format!("salvaging {} failed", data_dir.display()))?;
    if done.records.is_empty() && done.left.is_empty() {
        eprintln!(
            "every record loads ({}): nothing to salvage",
            counted(done.whole, "record")
        );
        return Ok(());
    }
    for record in &done.records {
        let title = record
            .title
            .as_object()
            .and_then(|t| ["fr", "en", "ar"].iter().find_map(|l| t.get(*l)?.as_str()))
            .or_else(|| record.title.as_str())
            .unwrap_or("untitled");
        eprintln!(
            "record {} ({} \"{title}\"): {} set aside, {} kept; phones send back the rest \
             ({} delivered by devices, and any the server made itself)",
            record.id,
            record.kind.as_deref().unwrap_or("of no kind"),
            counted(record.damaged.len(), "damaged chunk"),
            counted(record.kept, "change"),
            counted(record.waiting, "change"),
        );
        for (_, why) in &record.damaged {
            eprintln!("  {why}");
        }
        if record.reopened > 0 {
            eprintln!(
                "  {} {} accepted from the quarantine put back to pending: their changes are not all held now",
                record.reopened,
                if record.reopened == 1 {
                    "batch"
                } else {
                    "batches"
                }
            );
        }
    }
    for (id, why) in &done.left {
        eprintln!("record {id} is not salvaged, and is left as it was: {why}");
    }
    if let Some(dir) = &done.aside {
        eprintln!(
            "every chunk those records had, the damaged ones too, is kept in {}, with the \
             database as it was before ({})",
            dir.display(),
            twinsync_server::store::salvage::BEFORE,
        );
    }
    if !done.records.is_empty() {
        eprintln!(
            "start the server: each phone that holds a salvaged record sends back what the \
             server lacks when it next syncs (another writer's change sent back by a device \
             that may not write it waits in the quarantine until its writer's device syncs it \
             or a coordinator accepts it)"
        );
    }
    anyhow::ensure!(
        done.left.is_empty(),
        "{} not salvaged",
        counted(done.left.len(), "record")
    );
    Ok(())
}

/// Now as a folder's suffix: `20261207T153000Z`.
fn stamp() -> String {
    time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[year][month][day]T[hour][minute][second]Z"
        ))
        .unwrap_or_default()
}

fn restore(
    data_dir: &std::path::Path,
    file: &std::path::Path,
    devices_from_backup: bool,
) -> anyhow::Result<()> {
    use twinsync_server::store::restore::{self, Devices};
    let done = restore::restore(data_dir, file, &stamp(), devices_from_backup)
        .with_context(|| format!("restoring {} failed", file.display()))?;
    let newest = done
        .newest_change
        .map(|t| format!("; its newest change reached the server {}", utc_time(t)))
        .unwrap_or_default();
    eprintln!(
        "restored {} from {}{newest}",
        counted(done.records, "record"),
        file.display()
    );
    for (id, why) in &done.unreadable {
        eprintln!("record {id} is damaged in the backup and restored as it is: {why}");
    }
    match &done.kept_aside {
        Some(dir) => eprintln!("the database it replaces is kept in {}", dir.display()),
        None => eprintln!("there was no database to replace"),
    }
    match done.devices {
        Devices::CarriedOver {
            count,
            only_in_backup,
        } => eprintln!(
            "devices and invites are as the database replaced holds them ({}, \
             revoked ones revoked{})",
            counted(count, "device"),
            if only_in_backup > 0 {
                format!(", and {only_in_backup} only the backup knew of")
            } else {
                String::new()
            }
        ),
        Devices::FromBackup { count, why: None } => {
            eprintln!("{} from the backup", counted_come(count))
        }
        Devices::FromBackup {
            count,
            why: Some(why),
        } => eprintln!(
            "{} from the backup, as the database replaced could not be read ({why}): \
             a device revoked since the backup can sign in again; check `twinsync device list`",
            counted_come(count)
        ),
        Devices::OtherClub { count, replaced } => eprintln!(
            "{} from the backup, which is of another club than the database replaced \
             (club {replaced}): none of that club's devices can sign in here now",
            counted_come(count)
        ),
    }
    for warning in &done.warnings {
        eprintln!("warning: {warning}");
    }
    eprintln!(
        "start the server: each phone sends back the changes made since the backup when it next syncs \
         (another writer's change sent back by a device that may not write it waits in the quarantine \
         until its writer's device syncs it or a coordinator accepts it, and so does a change refused \
         since the backup)"
    );
    Ok(())
}

/// "1 record", "2 records": what an operator reads.
fn counted(n: usize, noun: &str) -> String {
    format!("{n} {noun}{}", if n == 1 { "" } else { "s" })
}

/// "1 device comes", "2 devices come".
fn counted_come(n: usize) -> String {
    format!(
        "{} {}",
        counted(n, "device"),
        if n == 1 { "comes" } else { "come" }
    )
}

fn device(command: DeviceCommand) -> anyhow::Result<()> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    match command {
        DeviceCommand::Add { data_dir, device } => {
            std::fs::create_dir_all(&data_dir)
                .with_context(|| format!("cannot create {}", data_dir.display()))?;
            let _lock = DataDirLock::acquire(&data_dir, Use::Command)?;
            twinsync_server::store::restore::check_not_cut_off(&data_dir)?;
            let path = data_dir.join("twinsync.db");
            if !path.exists() {
                // Allowed before the first start, but a mistyped
                // --data-dir would otherwise go unnoticed.
                eprintln!(
                    "no database at {}: creating a new, empty one (is --data-dir right?)",
                    path.display()
                );
            }
            let store = Store::open_unmigrated(&path)?;
            migrate_unless_served(&store, &data_dir)?;
            let hub = hub_over(store, Settings::for_data_dir(data_dir))?;
            let new = twinsync_server::admin::check_new_device(&hub, &device.into())
                .map_err(|e| anyhow::anyhow!(e))?;
            let (device, token) = hub.store.add_device(&new, now)?;
            eprintln!(
                "added device {} ({}, {}{})",
                device.id,
                device.name,
                device.role.as_str(),
                listed_cities(&device.cities)
            );
            eprintln!("its token follows; it is shown only now:");
            println!("{token}");
            Ok(())
        }
        DeviceCommand::List {
            data_dir,
            token_ttl_days,
        } => {
            let (store, _lock) = open_existing(&data_dir, Migrate::UnlessServed)?;
            let ttl = std::time::Duration::from_secs(token_ttl_days.saturating_mul(86_400));
            // Cities by name, as `add --city` takes them; an id the
            // database does not hold stays as it is.
            let names: std::collections::HashMap<String, String> = store
                .list(Some("city"), None, None)?
                .into_iter()
                .filter_map(|c| {
                    let title = &c.summary.title;
                    let name = ["fr", "en", "ar"]
                        .iter()
                        .find_map(|l| title.get(l)?.as_str().filter(|n| !n.is_empty()))
                        .or_else(|| title.as_str())?
                        .to_owned();
                    Some((c.id, name))
                })
                .collect();
            for d in store.devices()? {
                let cities: Vec<&str> = d
                    .cities
                    .iter()
                    .map(|c| {
                        let bare = c.strip_prefix("automerge:").unwrap_or(c);
                        names.get(bare).map_or(c.as_str(), String::as_str)
                    })
                    .collect();
                let status = if d.is_revoked() {
                    "revoked"
                } else if now > d.expires_at(ttl) {
                    "expired"
                } else {
                    "active"
                };
                println!(
                    "{}\t{}\t{}\t{}\t{status}",
                    d.id,
                    d.role.as_str(),
                    d.name,
                    cities.join(",")
                );
            }
            Ok(())
        }
        DeviceCommand::Update {
            data_dir,
            id,
            name,
            role,
            city,
            no_city,
            person,
            no_person,
            token_ttl_days,
        } => {
            let settings = Settings {
                token_ttl_days,
                ..Settings::for_data_dir(data_dir.clone())
            };
            let (store, _lock) = open_existing(&data_dir, Migrate::UnlessServed)?;
            let hub = hub_over(store, settings)?;
            let update = DeviceUpdate {
                name,
                role,
                cities: (no_city || !city.is_empty()).then_some(city),
                person: if no_person {
                    Some(None)
                } else {
                    person.map(Some)
                },
            };
            let d = twinsync_server::admin::update_device(&hub, &id, update, now)?;
            eprintln!(
                "device {} ({}) is now {}{}{}",
                d.id,
                d.name,
                d.role.as_str(),
                listed_cities(&d.cities),
                d.person
                    .as_deref()
                    .map(|p| format!(", person {p}"))
                    .unwrap_or_default()
            );
            Ok(())
        }
        DeviceCommand::Revoke {
            data_dir,
            id,
            token_ttl_days,
        } => {
            let (store, _lock) = open_existing(&data_dir, Migrate::UnlessServed)?;
            let Some(was) = store.device(&id)? else {
                anyhow::bail!("no device `{id}`");
            };
            if let Some(at) = was.revoked_at {
                eprintln!(
                    "device {} ({}) was already revoked, {}",
                    was.id,
                    was.name,
                    utc_time(at)
                );
                return Ok(());
            }
            // The operator may revoke the last coordinator: `invite` signs
            // a new one in.
            let Some(d) = store.revoke_device(&id, now, None)?? else {
                anyhow::bail!("no device `{id}`");
            };
            eprintln!("revoked device {} ({})", d.id, d.name);
            let ttl = std::time::Duration::from_secs(token_ttl_days.saturating_mul(86_400));
            let left = store.devices()?.into_iter().any(|d| {
                d.role == Role::Coordinator && !d.is_revoked() && now <= d.expires_at(ttl)
            });
            if !left {
                eprintln!(
                    "no coordinator can sign in now: `twinsync device invite --data-dir {} --role coordinator --name NAME --public-url URL`, with the address people reach the server at, prints a link that signs one in",
                    shell_word(&data_dir.display().to_string())
                );
            }
            Ok(())
        }
        DeviceCommand::Invite {
            data_dir,
            device,
            hours,
            public_url,
        } => {
            let (store, _lock) = open_existing(&data_dir, Migrate::UnlessServed)?;
            let hub = hub_over(store, Settings::for_data_dir(data_dir))?;
            let new = twinsync_server::admin::check_new_device(&hub, &device.into())
                .map_err(|e| anyhow::anyhow!(e))?;
            let hours = i64::try_from(hours).unwrap_or(72);
            let invite = hub
                .store
                .add_invite(&new, InvitedBy::Operator, now, now + hours * 3600)?
                .context("the invite was not made")?;
            eprintln!(
                "invite for {} ({}{}), valid until {}; open it in the browser that will hold the device:",
                invite.name,
                invite.role.as_str(),
                listed_cities(&invite.cities),
                utc_time(invite.expires_at)
            );
            println!(
                "{}",
                twinsync_server::admin::invite_link(&public_url, &invite.code)
            );
            Ok(())
        }
    }
}

/// `word` as a shell reads it back whole: as it is when it holds no
/// character a shell treats apart, else in single quotes.
fn shell_word(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+:@%,=".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// A time as people read it, in UTC.
fn utc_time(at: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(at)
        .ok()
        .and_then(|t| {
            t.format(time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute] UTC"
            ))
            .ok()
        })
        .unwrap_or_else(|| at.to_string())
}

/// ", cities A, B" for a device or an invite with `cities`, else nothing.
fn listed_cities(cities: &[String]) -> String {
    if cities.is_empty() {
        String::new()
    } else {
        format!(", cities {}", cities.join(", "))
    }
}

/// A hub over `store` for a device command: what checks a device (its
/// cities by name) and changes it, as the server would.
fn hub_over(
    store: Store,
    settings: Settings,
) -> anyhow::Result<std::sync::Arc<twinsync_server::hub::Hub>> {
    Ok(twinsync_server::hub::Hub::new(
        store,
        std::sync::Arc::new(settings),
        twinsync_server::metrics::Metrics::new(),
    )?)
}

/// Whether a command brings the database up to this build's schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Migrate {
    /// Never: the command reads it as it is.
    No,
    /// When no server holds the directory. Beside a server running an
    /// older twinsync, the command is refused: migrated under it, the
    /// database would be one that server can no longer start on, and
    /// every backup taken from then on one it cannot restore.
    UnlessServed,
}

/// Migrates `store` unless a server holds `data_dir` while it is behind
/// this build's schema, which is refused with what to do.
fn migrate_unless_served(store: &Store, data_dir: &std::path::Path) -> anyhow::Result<()> {
    let pending = store.migrations_pending()?;
    if pending == 0 {
        return Ok(());
    }
    // The server's own lock, held while the schema moves: checked and let
    // go of first, a server started in between would open the database
    // at its old schema under the upgrade.
    let _no_server = DataDirLock::acquire(data_dir, Use::Serve).map_err(|e| {
        anyhow::anyhow!(
            "the database in {} is {pending} schema step(s) behind this twinsync, and a server \
             (most likely an older twinsync) is running on it, or its lock cannot be read: this \
             command would upgrade it under that server. Run the command with the server's own \
             twinsync binary, or stop that server and start this version's `twinsync serve` \
             first (it upgrades the database; there is no way back, so take a backup with the \
             old binary before). The lock said: {e}",
            data_dir.display()
        )
    })?;
    store.migrate()?;
    Ok(())
}

/// The store of `data_dir` for an operator's command, and the lock that
/// keeps a restore from moving it meanwhile.
fn open_existing(
    data_dir: &std::path::Path,
    migrate: Migrate,
) -> anyhow::Result<(Store, DataDirLock)> {
    let path = data_dir.join("twinsync.db");
    anyhow::ensure!(
        data_dir.is_dir(),
        "no data directory at {}: is --data-dir right?",
        data_dir.display()
    );
    let lock = DataDirLock::acquire(data_dir, Use::Command)?;
    // A restore cut off between its moves is said as such, not as a
    // missing database.
    twinsync_server::store::restore::check_not_cut_off(data_dir)?;
    anyhow::ensure!(
        path.exists(),
        "no database at {}: is --data-dir right?",
        path.display()
    );
    let store = Store::open_unmigrated(&path)?;
    if migrate == Migrate::UnlessServed {
        migrate_unless_served(&store, data_dir)?;
    }
    Ok((store, lock))
}
