//! Settings for `twinsync serve`: flags with environment fallbacks and
//! defaults that run out of the box.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use clap::builder::RangedU64ValueParser;

/// A count, size or period where 0 cannot work: refused at start, with
/// clap's message naming the flag.
fn at_least_one<T>() -> RangedU64ValueParser<T>
where
    T: TryFrom<u64> + Clone + Send + Sync + 'static,
    <T as TryFrom<u64>>::Error: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
{
    RangedU64ValueParser::new().range(1..)
}

/// Reads an address people open links at: `http://` or `https://` and a
/// host, with no trailing `/` (links add theirs). Without a scheme, every
/// invite link printed or sent would be text a browser does not open; with
/// a path, the link would open an app whose files and socket are asked for
/// at the root of the host (`/pkg/…`, `/api/…`, `/sync`), which a proxy
/// serving the server under that path does not pass on.
pub fn public_url(s: &str) -> Result<String, String> {
    let s = s.trim().trim_end_matches('/');
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .ok_or_else(|| format!("`{s}` does not start with http:// or https://"))?;
    if rest.is_empty() || rest.starts_with('/') || rest.contains(char::is_whitespace) {
        return Err(format!("`{s}` names no host"));
    }
    if rest.contains(['#', '?']) {
        return Err(format!(
            "`{s}` has a query or a fragment; links add their own"
        ));
    }
    if let Some((host, path)) = rest.split_once('/') {
        return Err(format!(
            "`{s}` has a path (`/{path}`): the app is served at the root of its host; give the host alone, such as `{}{host}` (in --public-url or TWINSYNC_PUBLIC_URL)",
            &s[..s.len() - rest.len()]
        ));
    }
    Ok(s.to_owned())
}

#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// Address to listen on.
    #[arg(long, env = "TWINSYNC_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Directory holding the SQLite database (`twinsync.db`); created if missing.
    #[arg(long, env = "TWINSYNC_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,

    /// Start an empty database with the club record alone, not the demo
    /// club's cities, people, agreements and meetings.
    /// (`TWINSYNC_NO_DEMO` takes `1`, `true`, `yes` or `on`, and their
    /// opposites, as service files write them.)
    #[arg(
        long,
        env = "TWINSYNC_NO_DEMO",
        action = clap::ArgAction::SetTrue,
        value_parser = clap::builder::BoolishValueParser::new(),
    )]
    pub no_demo: bool,

    /// Directory of the web app served at `/`.
    #[arg(long, env = "TWINSYNC_APP_DIR", default_value = "app")]
    pub app_dir: PathBuf,

    /// Directory of the built browser client (`cargo xtask build-client`),
    /// served at `/pkg`.
    #[arg(long, env = "TWINSYNC_CLIENT_DIR", default_value = "client-wasm/pkg")]
    pub client_dir: PathBuf,

    /// Largest WebSocket frame accepted, in bytes; larger ones are refused.
    #[arg(
        long,
        env = "TWINSYNC_MAX_FRAME_BYTES",
        default_value_t = 16 * 1024 * 1024,
        value_parser = at_least_one::<usize>(),
    )]
    pub max_frame_bytes: usize,

    /// Most Automerge operations one sync message may carry. Automerge
    /// compresses runs of equal ops to a few bytes, so the frame limit
    /// does not bound them: a million take it 3.4 s and half a GiB to apply.
    #[arg(
        long,
        env = "TWINSYNC_MAX_OPS_PER_MESSAGE",
        default_value_t = 1_000_000,
        value_parser = at_least_one::<u64>(),
    )]
    pub max_ops_per_message: u64,

    /// Seconds a client has to send its request headers (against slowloris).
    #[arg(
        long,
        env = "TWINSYNC_HEADER_TIMEOUT_SECS",
        default_value_t = 10,
        value_parser = at_least_one::<u64>(),
    )]
    pub header_timeout_secs: u64,

    /// Sockets in their HTTP phase (before a WebSocket upgrade) at once;
    /// more are closed as they are accepted.
    #[arg(
        long,
        env = "TWINSYNC_MAX_HTTP_CONNECTIONS",
        default_value_t = 1024,
        value_parser = at_least_one::<usize>(),
    )]
    pub max_http_connections: usize,

    /// As `max_http_connections`, from any one IPv4 address or IPv6 /64,
    /// so one client cannot take every slot; a trusted proxy's own
    /// address is not held to it.
    #[arg(
        long,
        env = "TWINSYNC_MAX_HTTP_CONNECTIONS_PER_ADDRESS",
        default_value_t = 64,
        value_parser = at_least_one::<usize>(),
    )]
    pub max_http_connections_per_address: usize,

    /// Largest size of one record's stored changes, in MiB; a change that
    /// would take a record past it is refused.
    #[arg(
        long,
        env = "TWINSYNC_MAX_RECORD_MIB",
        default_value_t = 32,
        value_parser = at_least_one::<u64>(),
    )]
    pub max_record_mib: u64,

    /// Most Automerge operations one record may hold; a change that would
    /// take a record past it is refused. Automerge 0.12 walks every op of a
    /// text to apply any change to it (about 0.2 ms per thousand), and
    /// compressed ops cost a few bytes each, so `max_record_mib` does not
    /// bound them: without this, a device could send messages of many ops
    /// until every edit to the record took seconds to apply.
    #[arg(
        long,
        env = "TWINSYNC_MAX_RECORD_OPS",
        default_value_t = 2_000_000,
        value_parser = at_least_one::<u64>(),
    )]
    pub max_record_ops: u64,

    /// MiB of refused changes one device may have waiting for review; past
    /// it, its refused changes are not kept and it is told to keep them.
    #[arg(
        long,
        env = "TWINSYNC_MAX_QUARANTINE_MIB",
        default_value_t = 64,
        value_parser = at_least_one::<u64>(),
    )]
    pub max_quarantine_mib: u64,

    /// Frames queued for one peer before it counts as too slow and is dropped.
    #[arg(
        long,
        env = "TWINSYNC_PEER_QUEUE",
        default_value_t = 1024,
        value_parser = at_least_one::<usize>(),
    )]
    pub peer_queue: usize,

    /// MiB of frames queued for one peer before it counts as too slow and
    /// is dropped (one frame is always queued while nothing waits, so a
    /// record larger than this still reaches a peer that reads). Without
    /// it, a peer asking for large records it never reads could hold
    /// `--peer-queue` whole records.
    #[arg(
        long,
        env = "TWINSYNC_PEER_QUEUE_MIB",
        default_value_t = 64,
        value_parser = at_least_one::<usize>(),
    )]
    pub peer_queue_mib: usize,

    /// MiB of frames queued or being sent to all of one device's peers
    /// together before the peer whose frame would pass it is dropped (one
    /// frame is always queued while none of them holds anything). Without it, a device's
    /// `--max-peers-per-device` sockets asking for large records they never
    /// read could each hold `--peer-queue-mib`.
    #[arg(
        long,
        env = "TWINSYNC_DEVICE_QUEUE_MIB",
        default_value_t = 256,
        value_parser = at_least_one::<usize>(),
    )]
    pub device_queue_mib: usize,

    /// Peers one device may have connected at once; a new one past it
    /// closes the device's oldest (most often a socket the phone has
    /// already given up on). Without it, one device's token could open
    /// sockets until the server runs out of memory. A revoked device may
    /// have at most 4 (`hub::REVOKED_PEERS`), if this is not fewer.
    #[arg(
        long,
        env = "TWINSYNC_MAX_PEERS_PER_DEVICE",
        default_value_t = 64,
        value_parser = at_least_one::<usize>(),
    )]
    pub max_peers_per_device: usize,

    /// Commands queued for one document before senders wait.
    #[arg(
        long,
        env = "TWINSYNC_DOC_QUEUE",
        default_value_t = 1024,
        value_parser = at_least_one::<usize>(),
    )]
    pub doc_queue: usize,

    /// Seconds between pings to each peer.
    #[arg(
        long,
        env = "TWINSYNC_PING_SECS",
        default_value_t = 5,
        value_parser = at_least_one::<u64>(),
    )]
    pub ping_secs: u64,

    /// Seconds without any frame (or pong) from a peer before its socket is dropped.
    #[arg(
        long,
        env = "TWINSYNC_PEER_TIMEOUT_SECS",
        default_value_t = 20,
        value_parser = at_least_one::<u64>(),
    )]
    pub peer_timeout_secs: u64,

    /// Seconds a new socket has to send `join`.
    #[arg(
        long,
        env = "TWINSYNC_JOIN_TIMEOUT_SECS",
        default_value_t = 10,
        value_parser = at_least_one::<u64>(),
    )]
    pub join_timeout_secs: u64,

    /// Seconds a document with no peers stays in memory.
    #[arg(long, env = "TWINSYNC_IDLE_EVICT_SECS", default_value_t = 30)]
    pub idle_evict_secs: u64,

    /// Documents kept in memory; idle ones are evicted beyond this.
    #[arg(
        long,
        env = "TWINSYNC_MAX_LOADED_DOCS",
        default_value_t = 2000,
        value_parser = at_least_one::<usize>(),
    )]
    pub max_loaded_docs: usize,

    /// Largest size of the database in MiB (0: no limit). Past it, writes
    /// fail as on a full disk: changes are refused, reads go on.
    #[arg(long, env = "TWINSYNC_MAX_DB_MIB", default_value_t = 0)]
    pub max_db_mib: u64,

    /// Incremental chunks of a document before it is compacted into a snapshot.
    #[arg(
        long,
        env = "TWINSYNC_COMPACT_CHUNKS",
        default_value_t = 64,
        value_parser = at_least_one::<u64>(),
    )]
    pub compact_chunks: u64,

    /// Days a device token stays valid after the device was last seen, so a
    /// delegate offline in the field is not locked out.
    #[arg(
        long,
        env = "TWINSYNC_TOKEN_TTL_DAYS",
        default_value_t = 90,
        value_parser = at_least_one::<u64>(),
    )]
    pub token_ttl_days: u64,

    /// Hours an invite link can be redeemed (at most 90 days' worth, as
    /// the API and `device invite` allow).
    #[arg(
        long,
        env = "TWINSYNC_INVITE_HOURS",
        default_value_t = 72,
        value_parser = clap::value_parser!(u64).range(1..=24 * 90),
    )]
    pub invite_hours: u64,

    /// Failed sign-ins from one address per minute before it gets HTTP 429.
    #[arg(
        long,
        env = "TWINSYNC_AUTH_FAILURES_PER_MINUTE",
        default_value_t = 10,
        value_parser = at_least_one::<u64>(),
    )]
    pub auth_failures_per_minute: u64,

    /// Codes that are no invite tried from one address per minute, past
    /// which the address waits out the minute; an invite's code, used,
    /// withdrawn or lapsed, does not count.
    #[arg(
        long,
        env = "TWINSYNC_REDEEMS_PER_MINUTE",
        default_value_t = 5,
        value_parser = at_least_one::<u64>(),
    )]
    pub redeems_per_minute: u64,

    /// Documents one device may open per minute, over all its sockets.
    #[arg(
        long,
        env = "TWINSYNC_DEVICE_DOCS_PER_MINUTE",
        default_value_t = 5000,
        value_parser = at_least_one::<u64>(),
    )]
    pub device_docs_per_minute: u64,

    /// Documents one device may hold open at once, over all its sockets
    /// (one open on several counts once). Each open document keeps a task
    /// loaded for as long as a socket holding it stays, even one the server holds nothing of (a socket naming new
    /// ids whose changes lack their ancestors): without this bound, the
    /// documents a minute alone would let one device's sockets grow the
    /// server's memory for as long as they stay connected.
    #[arg(
        long,
        env = "TWINSYNC_MAX_OPEN_DOCS_PER_DEVICE",
        default_value_t = 10_000,
        value_parser = at_least_one::<usize>(),
    )]
    pub max_open_docs_per_device: usize,

    /// MiB one device may send per minute, over all its sockets.
    #[arg(
        long,
        env = "TWINSYNC_DEVICE_MIB_PER_MINUTE",
        default_value_t = 512,
        value_parser = at_least_one::<u64>(),
    )]
    pub device_mib_per_minute: u64,

    /// Automerge operations one device may send per minute, over all its
    /// sockets. Runs of equal ops compress to a few bytes each, so the
    /// MiB a minute do not bound the work they cost: a million take about
    /// 3.4 s to apply. One message of more than this many passes when the
    /// device has sent nothing else that minute, and takes all of it.
    #[arg(
        long,
        env = "TWINSYNC_DEVICE_OPS_PER_MINUTE",
        default_value_t = 4_000_000,
        value_parser = at_least_one::<u64>(),
    )]
    pub device_ops_per_minute: u64,

    /// The address users reach the server at, for invite links (default:
    /// http:// and the listening address).
    #[arg(long, env = "TWINSYNC_PUBLIC_URL", value_parser = public_url)]
    pub public_url: Option<String>,

    /// Reverse proxies (an address or a network, such as `127.0.0.1` or
    /// `10.0.0.0/8`; repeat, or separate with commas) whose
    /// `X-Forwarded-For` header names the client. Behind an HTTPS proxy
    /// every request comes from the proxy's address: without this, all
    /// devices share one count of failed sign-ins and invite redemptions,
    /// and one cap on connections from an address. The header is ignored
    /// from any other address, so a client cannot choose its own.
    #[arg(
        long = "trusted-proxy",
        env = "TWINSYNC_TRUSTED_PROXIES",
        value_delimiter = ',',
        value_parser = parse_network,
    )]
    pub trusted_proxies: Vec<ipnet::IpNet>,

    /// Seconds the per-minute limits count over: a minute. Hidden, for
    /// tests, which cannot wait one out.
    #[arg(
        long,
        hide = true,
        default_value_t = 60,
        value_parser = at_least_one::<u64>(),
    )]
    pub rate_window_secs: u64,
}

/// A network (`10.0.0.0/8`, `fd00::/8`) or one address (`127.0.0.1`).
fn parse_network(s: &str) -> Result<ipnet::IpNet, String> {
    let s = s.trim();
    if let Ok(ip) = s.parse::<std::net::IpAddr>() {
        return Ok(ipnet::IpNet::from(ip.to_canonical()));
    }
    let net = s
        .parse::<ipnet::IpNet>()
        .map_err(|_| format!("`{s}` is neither an IP address nor a network such as 10.0.0.0/8"))?;
    // Peers are compared as IPv4 where they are IPv4 mapped into IPv6, so
    // a mapped network is too: `::ffff:10.0.0.0/104` is `10.0.0.0/8`.
    if let ipnet::IpNet::V6(v6) = net
        && v6.prefix_len() >= 96
        && let Some(v4) = v6.network().to_ipv4_mapped()
    {
        return ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96)
            .map(|n| ipnet::IpNet::V4(n.trunc()))
            .map_err(|e| e.to_string());
    }
    Ok(net.trunc())
}

impl Settings {
    /// Defaults for tests and embedding, as the flags default.
    pub fn for_data_dir(data_dir: PathBuf) -> Self {
        Self {
            listen: "127.0.0.1:0".parse().expect("a valid address"),
            data_dir,
            no_demo: false,
            app_dir: PathBuf::from("app"),
            client_dir: PathBuf::from("client-wasm/pkg"),
            max_frame_bytes: 16 * 1024 * 1024,
            max_ops_per_message: 1_000_000,
            header_timeout_secs: 10,
            max_http_connections: 1024,
            max_http_connections_per_address: 64,
            max_record_mib: 32,
            max_record_ops: 2_000_000,
            max_quarantine_mib: 64,
            peer_queue: 1024,
            peer_queue_mib: 64,
            device_queue_mib: 256,
            max_peers_per_device: 64,
            doc_queue: 1024,
            ping_secs: 5,
            peer_timeout_secs: 20,
            join_timeout_secs: 10,
            idle_evict_secs: 30,
            max_loaded_docs: 2000,
            max_db_mib: 0,
            compact_chunks: 64,
            token_ttl_days: 90,
            invite_hours: 72,
            auth_failures_per_minute: 10,
            redeems_per_minute: 5,
            device_docs_per_minute: 5000,
            max_open_docs_per_device: 10_000,
            device_mib_per_minute: 512,
            device_ops_per_minute: 4_000_000,
            public_url: None,
            trusted_proxies: Vec::new(),
            rate_window_secs: 60,
        }
    }

    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("twinsync.db")
    }

    pub fn header_timeout(&self) -> Duration {
        Duration::from_secs(self.header_timeout_secs.max(1))
    }

    pub fn max_quarantine_bytes(&self) -> u64 {
        self.max_quarantine_mib.saturating_mul(1024 * 1024)
    }

    pub fn peer_queue_bytes(&self) -> usize {
        self.peer_queue_mib.saturating_mul(1024 * 1024)
    }

    pub fn device_queue_bytes(&self) -> usize {
        self.device_queue_mib.saturating_mul(1024 * 1024)
    }

    pub fn max_record_bytes(&self) -> u64 {
        self.max_record_mib.saturating_mul(1024 * 1024)
    }

    pub fn rate_window(&self) -> Duration {
        Duration::from_secs(self.rate_window_secs.max(1))
    }

    pub fn ping_interval(&self) -> Duration {
        Duration::from_secs(self.ping_secs.max(1))
    }

    pub fn peer_timeout(&self) -> Duration {
        Duration::from_secs(self.peer_timeout_secs.max(1))
    }

    pub fn join_timeout(&self) -> Duration {
        Duration::from_secs(self.join_timeout_secs.max(1))
    }

    pub fn token_ttl(&self) -> Duration {
        Duration::from_secs(self.token_ttl_days.saturating_mul(86_400))
    }

    pub fn idle_evict(&self) -> Duration {
        Duration::from_secs(self.idle_evict_secs)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a test panics to fail

    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Serve {
        #[command(flatten)]
        settings: Settings,
    }

    #[test]
    fn a_zero_where_zero_cannot_work_is_refused_naming_the_flag() {
        // Zero queues made `mpsc::channel(0)` panic at the first socket;
        // a zero ping period panics tokio's interval.
        for flag in [
            "--max-frame-bytes",
            "--max-ops-per-message",
            "--header-timeout-secs",
            "--max-http-connections",
            "--max-http-connections-per-address",
            "--max-record-mib",
            "--max-record-ops",
            "--max-quarantine-mib",
            "--peer-queue",
            "--peer-queue-mib",
            "--doc-queue",
            "--ping-secs",
            "--peer-timeout-secs",
            "--join-timeout-secs",
            "--max-loaded-docs",
            "--compact-chunks",
            "--token-ttl-days",
            "--invite-hours",
            "--auth-failures-per-minute",
            "--redeems-per-minute",
            "--device-docs-per-minute",
            "--device-mib-per-minute",
            "--device-ops-per-minute",
        ] {
            let err = Serve::try_parse_from(["twinsync", flag, "0"]).unwrap_err();
            let text = err.to_string();
            assert!(text.contains(flag), "{text}");
            assert!(text.contains("0 is not in 1.."), "{text}");
        }
        let ok =
            Serve::try_parse_from(["twinsync", "--peer-queue", "1", "--max-db-mib", "0"]).unwrap();
        assert_eq!(ok.settings.peer_queue, 1);
        assert_eq!(ok.settings.max_db_mib, 0);
    }

    #[test]
    fn an_invite_lasting_past_90_days_is_refused_naming_the_flag() {
        let err = Serve::try_parse_from(["twinsync", "--invite-hours", "2161"]).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("--invite-hours"), "{text}");
        assert!(text.contains("2161 is not in 1..=2160"), "{text}");
        let ok = Serve::try_parse_from(["twinsync", "--invite-hours", "2160"]).unwrap();
        assert_eq!(ok.settings.invite_hours, 2160);
    }

    #[test]
    fn a_public_url_without_a_scheme_or_a_host_is_refused_naming_the_flag() {
        for bad in [
            "records.example.org",
            "ftp://records.example.org",
            "https://",
            "https:///path",
            "https://records.example.org/#x",
            "https://records.example.org/club/",
        ] {
            let err = Serve::try_parse_from(["twinsync", "--public-url", bad]).unwrap_err();
            assert!(err.to_string().contains("--public-url"), "{bad}: {err}");
        }
        let ok = Serve::try_parse_from([
            "twinsync",
            "--public-url",
            "https://records.example.org:8443/",
        ])
        .unwrap();
        assert_eq!(
            ok.settings.public_url.as_deref(),
            Some("https://records.example.org:8443")
        );
        let err = Serve::try_parse_from([
            "twinsync",
            "--public-url",
            "https://records.example.org/club/",
        ])
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("give the host alone, such as `https://records.example.org`"),
            "{err}"
        );
    }

    #[test]
    fn trusted_proxies_are_addresses_or_networks_repeated_or_listed() {
        let ok = Serve::try_parse_from([
            "twinsync",
            "--trusted-proxy",
            "127.0.0.1",
            "--trusted-proxy",
            "10.1.2.3/8,::1",
            "--trusted-proxy",
            "::ffff:192.168.0.0/112",
        ])
        .unwrap();
        let nets: Vec<String> = ok
            .settings
            .trusted_proxies
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            nets,
            ["127.0.0.1/32", "10.0.0.0/8", "::1/128", "192.168.0.0/16"]
        );
        let err = Serve::try_parse_from(["twinsync", "--trusted-proxy", "proxy.local"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`proxy.local` is neither an IP address nor a network"),
            "{err}"
        );
    }
}
