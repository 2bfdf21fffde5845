//! Counters served at `GET /metrics` (Prometheus text format). No secrets and no identities:
//! only outcomes, so it is public like the broker's.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

/// The control plane's counters.
#[derive(Default)]
pub struct Metrics {
    /// Token exchanges by outcome (`ok` or the OAuth error code).
    exchanges: Mutex<BTreeMap<&'static str, u64>>,
    /// HTTP responses by status code.
    responses: Mutex<BTreeMap<u16, u64>>,
    /// Connections closed at once because `max_connections` were open.
    connections_refused: AtomicU64,
    /// Connections closed at once because `max_connections_per_ip` were open from that IP.
    connections_refused_per_ip: AtomicU64,
    /// Requests cut at `request_timeout_ms`.
    requests_timed_out: AtomicU64,
    /// Long polls refused at `max_long_polls`.
    long_polls_refused: AtomicU64,
}

impl Metrics {
    /// Counts one exchange outcome.
    pub fn exchange(&self, outcome: &'static str) {
        *self.exchanges.lock().entry(outcome).or_default() += 1;
    }

    /// Counts one HTTP response.
    pub fn response(&self, status: u16) {
        *self.responses.lock().entry(status).or_default() += 1;
    }

    /// Counts one connection refused at `max_connections`.
    pub fn connection_refused(&self) {
        self.connections_refused.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one connection refused at `max_connections_per_ip`.
    pub fn connection_refused_per_ip(&self) {
        self.connections_refused_per_ip
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one request cut at `request_timeout_ms`.
    pub fn request_timed_out(&self) {
        self.requests_timed_out.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one long poll refused at `max_long_polls`.
    pub fn long_poll_refused(&self) {
        self.long_polls_refused.fetch_add(1, Ordering::Relaxed);
    }

    /// Renders everything; `gauges` are (name, help, value) read at scrape time.
    pub fn render(&self, gauges: &[(&str, &str, u64)]) -> String {
        let mut out = String::new();
        out.push_str("# HELP felix_cp_exchanges_total Token exchanges by outcome (ok or the OAuth error code).\n");
        out.push_str("# TYPE felix_cp_exchanges_total counter\n");
        for (k, v) in self.exchanges.lock().iter() {
            let _ = writeln!(out, "felix_cp_exchanges_total{{result=\"{k}\"}} {v}");
        }
        out.push_str("# HELP felix_cp_http_responses_total HTTP responses by status (413 = body over max_body_bytes).\n");
        out.push_str("# TYPE felix_cp_http_responses_total counter\n");
        for (k, v) in self.responses.lock().iter() {
            let _ = writeln!(out, "felix_cp_http_responses_total{{status=\"{k}\"}} {v}");
        }
        out.push_str("# HELP felix_cp_connections_refused_total Connections closed at once: max_connections (reason=total) or max_connections_per_ip (reason=per_ip) were open.\n");
        out.push_str("# TYPE felix_cp_connections_refused_total counter\n");
        let _ = writeln!(
            out,
            "felix_cp_connections_refused_total{{reason=\"total\"}} {}",
            self.connections_refused.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "felix_cp_connections_refused_total{{reason=\"per_ip\"}} {}",
            self.connections_refused_per_ip.load(Ordering::Relaxed)
        );
        for (name, help, v) in [
            (
                "felix_cp_requests_timed_out_total",
                "Requests cut at request_timeout_ms (408).",
                &self.requests_timed_out,
            ),
            (
                "felix_cp_long_polls_refused_total",
                "Revocation long polls refused at max_long_polls (503 overloaded).",
                &self.long_polls_refused,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                v.load(Ordering::Relaxed)
            );
        }
        for (name, help, value) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
        out
    }
}
