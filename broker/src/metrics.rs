//! Broker metrics: lock-free counters and latency histograms, rendered in the Prometheus
//! text format by the HTTP endpoint in [`crate::http`].
//!
//! Everything on the hot path is a relaxed atomic add; rendering walks the registry only when
//! scraped.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// A monotonically increasing counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Relaxed);
    }
    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }
    /// Current value.
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Debug, Default)]
pub struct Gauge(AtomicU64);

impl Gauge {
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Relaxed);
    }
    /// Subtracts one.
    pub fn dec(&self) {
        self.0.fetch_sub(1, Relaxed);
    }
    /// Current value.
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
    /// Sets the value.
    pub fn set(&self, v: u64) {
        self.0.store(v, Relaxed);
    }
}

/// Upper bounds (seconds) of the latency buckets: 10 µs to 1 s.
const BUCKETS: [f64; 16] = [
    0.00001, 0.000025, 0.00005, 0.000075, 0.0001, 0.00015, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
    0.01, 0.025, 0.1, 0.25, 1.0,
];

/// A fixed-bucket latency histogram (Prometheus `histogram`).
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_ns: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_ns.fetch_add(d.as_nanos() as u64, Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cum = 0;
        for (i, b) in BUCKETS.iter().enumerate() {
            cum += self.buckets[i].load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cum}");
        }
        let count = self.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum {}", self.sum_ns.load(Relaxed) as f64 / 1e9);
        let _ = writeln!(out, "{name}_count {count}");
    }
}

/// All broker metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Open client connections.
    pub connections: Gauge,
    /// Connections accepted since start.
    pub connections_total: Counter,
    /// Connections refused by `max_connections`.
    pub connections_refused: Counter,
    /// Open subscriptions.
    pub subscriptions: Gauge,
    /// Messages published (appended).
    pub published: Counter,
    /// Payload bytes published.
    pub published_bytes: Counter,
    /// Events written to subscribers.
    pub delivered: Counter,
    /// Subscriptions ended as slow consumers.
    pub slow_consumers: Counter,
    /// Cache hits.
    pub cache_hits: Counter,
    /// Cache misses.
    pub cache_misses: Counter,
    /// Requests refused with `overloaded`.
    pub overloaded: Counter,
    /// Frames rejected as malformed.
    pub protocol_errors: Counter,
    /// `auth` frames refused (bad token, token of another tenant, missing token).
    pub auth_failures: Counter,
    /// Connections closed for too many failed `auth` attempts.
    pub auth_connections_closed: Counter,
    /// `reauth`s accepted (a new token put in force on a live connection).
    pub reauths: Counter,
    /// `reauth`s refused with `overloaded` by `limits.max_reauths_per_minute`.
    pub reauths_limited: Counter,
    /// Subscriptions and parked pulls ended because a refresh withdrew their permission.
    pub permission_withdrawn: Counter,
    /// Queue deliveries handed out.
    pub queue_delivered: Counter,
    /// Queue acks.
    pub queue_acked: Counter,
    /// Time from a publish frame's arrival to its append (and backpressure wait).
    pub publish_latency: Histogram,
    /// Time to serve a cache request.
    pub cache_latency: Histogram,
    // -- Resource bounds (issue 13): memory budget and request sizes. --
    /// Requests refused because the broker-wide memory budget was full.
    pub memory_refused: Counter,
    /// Requests refused as too large (`max_offsets_per_request`, `max_keys_per_request`).
    pub request_too_large: Counter,
    // ---- Read-path bounds (auth deadline, unfinished frames, parked pulls). ----
    /// Streams closed because `auth` did not arrive within `limits.auth_timeout_ms`.
    pub auth_timeouts: Counter,
    /// Streams failed with `overloaded` after waiting `limits.partial_frame_wait_ms` for room
    /// for an unfinished frame.
    pub partial_frames_overloaded: Counter,
    /// Long-poll `queue_pull`s parked now (all connections).
    pub parked_pulls: Gauge,
    /// Long-poll `queue_pull`s refused by `limits.max_parked_pulls_per_connection`.
    pub parked_pulls_refused: Counter,
    // ---- Durable storage (issue 15). ----
    /// Requests answered `storage` (a durable log refused or failed a write).
    pub storage_errors: Counter,
    /// Milliseconds the start spent loading durable streams from the data directory.
    pub storage_recovery_ms: Gauge,
}

/// Per-resource figures gathered at scrape time.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// (label, records, bytes, subscribers, dropped) per stream.
    pub streams: Vec<(String, u64, u64, u64, u64)>,
    /// (label, entries, bytes, evictions, expirations) per cache.
    pub caches: Vec<(String, u64, u64, u64, u64)>,
    /// (label, in_flight, pending, dead_letters) per group.
    pub groups: Vec<(String, u64, u64, u64)>,
    // -- Resource bounds (issue 13). --
    /// Bytes reserved from the broker-wide memory budget.
    pub memory_used: u64,
    /// `limits.max_memory_bytes`.
    pub memory_limit: u64,
    /// Creates refused by `limits.max_resources_per_tenant`.
    pub tenant_refusals: u64,
}

impl Metrics {
    /// Renders the Prometheus text exposition.
    pub fn render(&self, snap: &Snapshot) -> String {
        let mut out = String::with_capacity(4096);
        let gauge = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        let counter = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        };
        gauge(
            &mut out,
            "felix_connections",
            "Open client connections.",
            self.connections.get(),
        );
        counter(
            &mut out,
            "felix_connections_total",
            "Connections accepted.",
            self.connections_total.get(),
        );
        counter(
            &mut out,
            "felix_connections_refused_total",
            "Connections refused by max_connections.",
            self.connections_refused.get(),
        );
        gauge(
            &mut out,
            "felix_subscriptions",
            "Open subscriptions.",
            self.subscriptions.get(),
        );
        counter(
            &mut out,
            "felix_published_messages_total",
            "Messages appended.",
            self.published.get(),
        );
        counter(
            &mut out,
            "felix_published_bytes_total",
            "Payload bytes appended.",
            self.published_bytes.get(),
        );
        counter(
            &mut out,
            "felix_delivered_events_total",
            "Events written to subscribers.",
            self.delivered.get(),
        );
        counter(
            &mut out,
            "felix_slow_consumers_total",
            "Subscriptions ended as slow consumers.",
            self.slow_consumers.get(),
        );
        counter(
            &mut out,
            "felix_cache_hits_total",
            "Cache hits.",
            self.cache_hits.get(),
        );
        counter(
            &mut out,
            "felix_cache_misses_total",
            "Cache misses.",
            self.cache_misses.get(),
        );
        counter(
            &mut out,
            "felix_overloaded_total",
            "Requests refused as overloaded.",
            self.overloaded.get(),
        );
        counter(
            &mut out,
            "felix_protocol_errors_total",
            "Malformed frames.",
            self.protocol_errors.get(),
        );
        counter(
            &mut out,
            "felix_auth_failures_total",
            "Refused auth attempts.",
            self.auth_failures.get(),
        );
        counter(
            &mut out,
            "felix_auth_connections_closed_total",
            "Connections closed after repeated auth failures.",
            self.auth_connections_closed.get(),
        );
        counter(
            &mut out,
            "felix_reauths_total",
            "Accepted reauths (token refreshes on live connections).",
            self.reauths.get(),
        );
        counter(
            &mut out,
            "felix_reauths_limited_total",
            "Reauths refused with overloaded by limits.max_reauths_per_minute.",
            self.reauths_limited.get(),
        );
        counter(
            &mut out,
            "felix_auth_permission_withdrawn_total",
            "Subscriptions and parked pulls ended because a refresh withdrew their permission.",
            self.permission_withdrawn.get(),
        );
        counter(
            &mut out,
            "felix_queue_delivered_total",
            "Queue deliveries.",
            self.queue_delivered.get(),
        );
        counter(
            &mut out,
            "felix_queue_acked_total",
            "Queue acks.",
            self.queue_acked.get(),
        );
        // -- Resource bounds (issue 13). --
        gauge(
            &mut out,
            "felix_memory_used_bytes",
            "Bytes reserved from the broker-wide memory budget.",
            snap.memory_used,
        );
        gauge(
            &mut out,
            "felix_memory_limit_bytes",
            "The broker-wide memory budget (limits.max_memory_bytes).",
            snap.memory_limit,
        );
        counter(
            &mut out,
            "felix_memory_refused_total",
            "Requests refused as overloaded because the memory budget was full.",
            self.memory_refused.get(),
        );
        counter(
            &mut out,
            "felix_tenant_resource_refusals_total",
            "Creates refused by limits.max_resources_per_tenant.",
            snap.tenant_refusals,
        );
        counter(
            &mut out,
            "felix_request_too_large_total",
            "Requests refused by max_offsets_per_request or max_keys_per_request.",
            self.request_too_large.get(),
        );
        self.publish_latency.render(
            &mut out,
            "felix_publish_seconds",
            "Publish handling latency.",
        );
        self.cache_latency
            .render(&mut out, "felix_cache_op_seconds", "Cache request latency.");
        // ---- Read-path bounds. ----
        counter(
            &mut out,
            "felix_auth_timeouts_total",
            "Streams closed for not authenticating within auth_timeout_ms.",
            self.auth_timeouts.get(),
        );
        counter(
            &mut out,
            "felix_partial_frames_overloaded_total",
            "Streams failed as overloaded waiting for room for an unfinished frame.",
            self.partial_frames_overloaded.get(),
        );
        gauge(
            &mut out,
            "felix_parked_pulls",
            "Long-poll queue pulls parked now.",
            self.parked_pulls.get(),
        );
        counter(
            &mut out,
            "felix_parked_pulls_refused_total",
            "Long-poll queue pulls refused by max_parked_pulls_per_connection.",
            self.parked_pulls_refused.get(),
        );
        counter(
            &mut out,
            "felix_storage_errors_total",
            "Requests answered with the storage error code (a durable log refused or failed a write).",
            self.storage_errors.get(),
        );
        gauge(
            &mut out,
            "felix_storage_recovery_ms",
            "Milliseconds the last start spent opening the durable streams of storage.data_dir.",
            self.storage_recovery_ms.get(),
        );
        let _ = writeln!(out, "# TYPE felix_stream_records gauge\n# TYPE felix_stream_bytes gauge\n# TYPE felix_stream_subscribers gauge\n# TYPE felix_stream_dropped_total counter");
        for (l, rec, bytes, subs, dropped) in &snap.streams {
            let _ = writeln!(out, "felix_stream_records{{stream=\"{l}\"}} {rec}\nfelix_stream_bytes{{stream=\"{l}\"}} {bytes}\nfelix_stream_subscribers{{stream=\"{l}\"}} {subs}\nfelix_stream_dropped_total{{stream=\"{l}\"}} {dropped}");
        }
        let _ = writeln!(out, "# TYPE felix_cache_entries gauge\n# TYPE felix_cache_bytes gauge\n# TYPE felix_cache_evictions_total counter\n# TYPE felix_cache_expirations_total counter");
        for (l, n, bytes, ev, ex) in &snap.caches {
            let _ = writeln!(out, "felix_cache_entries{{cache=\"{l}\"}} {n}\nfelix_cache_bytes{{cache=\"{l}\"}} {bytes}\nfelix_cache_evictions_total{{cache=\"{l}\"}} {ev}\nfelix_cache_expirations_total{{cache=\"{l}\"}} {ex}");
        }
        let _ = writeln!(out, "# TYPE felix_queue_in_flight gauge\n# TYPE felix_queue_pending gauge\n# TYPE felix_queue_dead_letters gauge");
        for (l, inf, pend, dl) in &snap.groups {
            let _ = writeln!(out, "felix_queue_in_flight{{group=\"{l}\"}} {inf}\nfelix_queue_pending{{group=\"{l}\"}} {pend}\nfelix_queue_dead_letters{{group=\"{l}\"}} {dl}");
        }
        out
    }
}
