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
        out.push_str("# HELP felix_cp_connections_refused_total Connections closed at once because max_connections were open.\n");
        out.push_str("# TYPE felix_cp_connections_refused_total counter\n");
        let _ = writeln!(
            out,
            "felix_cp_connections_refused_total {}",
            self.connections_refused.load(Ordering::Relaxed)
        );
        for (name, help, value) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
        out
    }
}
