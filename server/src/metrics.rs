//! Prometheus metrics, served at `/metrics`.

use prometheus::{Encoder, Histogram, HistogramOpts, IntCounter, IntGauge, Registry, TextEncoder};

#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Registry,
    pub connected_peers: IntGauge,
    pub loaded_documents: IntGauge,
    pub waiting_peers: IntGauge,
    pub storage_full: IntCounter,
    pub changes_applied: IntCounter,
    pub bytes_in: IntCounter,
    pub bytes_out: IntCounter,
    pub sync_latency: Histogram,
    pub storage_errors: IntCounter,
    pub protocol_errors: IntCounter,
    pub slow_peers_dropped: IntCounter,
    pub hand_in_copies_dropped: IntCounter,
    pub ephemeral_dropped: IntCounter,
    pub changes_refused: IntCounter,
    pub auth_failures: IntCounter,
    pub rate_limited: IntCounter,
    pub connections_refused: IntCounter,
    pub records_too_large: IntCounter,
    pub messages_too_large: IntCounter,
    pub memory_trims: IntCounter,
    pub tasks_failed: IntCounter,
    pub peers_cut_to_resync: IntCounter,
    pub peers_displaced: IntCounter,
    pub record_lookups: IntCounter,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("a valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("registered once");
            g
        };
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("a valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("registered once");
            c
        };
        let sync_latency = Histogram::with_opts(
            HistogramOpts::new(
                "twinsync_sync_latency_seconds",
                "Time from receiving a sync message to having stored it and sent every reply",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
        )
        .expect("a valid metric");
        registry
            .register(Box::new(sync_latency.clone()))
            .expect("registered once");
        Self {
            connected_peers: gauge("twinsync_connected_peers", "Peers connected over WebSocket"),
            loaded_documents: gauge("twinsync_loaded_documents", "Documents held in memory"),
            storage_full: counter(
                "twinsync_storage_full_total",
                "Writes of a record's changes refused for lack of room (the disk, or --max-db-mib)",
            ),
            waiting_peers: gauge(
                "twinsync_waiting_peers",
                "Peers told a record is unavailable, to be offered it when it arrives",
            ),
            changes_applied: counter(
                "twinsync_changes_applied_total",
                "Changes merged and stored",
            ),
            bytes_in: counter(
                "twinsync_bytes_in_total",
                "Bytes received in WebSocket frames",
            ),
            bytes_out: counter("twinsync_bytes_out_total", "Bytes sent in WebSocket frames"),
            storage_errors: counter(
                "twinsync_storage_errors_total",
                "Failed writes or reads of the database",
            ),
            protocol_errors: counter(
                "twinsync_protocol_errors_total",
                "Refused frames and messages",
            ),
            slow_peers_dropped: counter(
                "twinsync_slow_peers_dropped_total",
                "Peers dropped for not reading",
            ),
            hand_in_copies_dropped: counter(
                "twinsync_hand_in_copies_dropped_total",
                "Copies of what a revoked device handed in, dropped to bound what its connection holds",
            ),
            ephemeral_dropped: counter(
                "twinsync_ephemeral_dropped_total",
                "Ephemeral messages not relayed to a peer whose queue was half full",
            ),
            changes_refused: counter(
                "twinsync_changes_refused_total",
                "Batches of changes refused by permissions or validation, and quarantined",
            ),
            auth_failures: counter(
                "twinsync_auth_failures_total",
                "Requests with a missing, wrong or expired token",
            ),
            tasks_failed: counter(
                "twinsync_tasks_failed_total",
                "Record tasks that ended in a panic (a bug); a new task took their peers in",
            ),
            peers_cut_to_resync: counter(
                "twinsync_peers_cut_to_resync_total",
                "Sockets closed after their record's task failed, as their peer had not said it takes Automerge's reset flag: they reconnect and sync afresh",
            ),
            rate_limited: counter(
                "twinsync_rate_limited_total",
                "Requests and messages refused by a rate limit",
            ),
            connections_refused: counter(
                "twinsync_connections_refused_total",
                "Sockets closed at accept: too many in their HTTP phase",
            ),
            records_too_large: counter(
                "twinsync_records_too_large_total",
                "Sync messages whose changes would take a record past its size limit (--max-record-mib, --max-record-ops)",
            ),
            messages_too_large: counter(
                "twinsync_messages_too_large_total",
                "Sync messages refused for their own size (--max-frame-bytes, --max-ops-per-message)",
            ),
            memory_trims: counter(
                "twinsync_memory_trims_total",
                "Times freed memory was handed back to the system after evictions",
            ),
            peers_displaced: counter(
                "twinsync_peers_displaced_total",
                "Peers closed as their device connected more than it may at once",
            ),
            record_lookups: counter(
                "twinsync_record_lookups_total",
                "Records not in memory looked for in the database, when a peer names them",
            ),
            sync_latency,
            registry,
        }
    }

    /// The metrics in Prometheus' text format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec only fails for invalid metric families, which
        // `new` cannot register.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
