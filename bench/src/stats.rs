//! Latency figures (HDR histograms in nanoseconds), the printed table and the JSON report.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{json, Value};

use crate::cpu::CpuUsage;

/// Where a measuring round records: one histogram per figure the runner produces, or `None`
/// during warm-up.
pub type Rec<'a> = Option<&'a mut [Histogram<u64>]>;

/// A fresh histogram: 1 ns .. 60 s, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds")
}

/// Records one duration (saturating at the histogram's upper bound).
pub fn record(h: &mut Histogram<u64>, d: Duration) {
    h.saturating_record(d.as_nanos().clamp(1, u64::MAX as u128) as u64);
}

/// One measured figure.
pub struct Figure {
    /// Short stable name (also the JSON key).
    pub name: String,
    /// What was measured, in a few words.
    pub what: String,
    /// Per-operation latency, nanoseconds.
    pub hist: Histogram<u64>,
    /// Wall time of the measured phase (throughput = ops / elapsed).
    pub elapsed: Duration,
    /// Extra remarks (e.g. the achieved rate of an open loop).
    pub note: String,
    /// CPU time of the bench process and the server during the phase.
    pub cpu: CpuUsage,
}

impl Figure {
    pub fn new(name: &str, what: &str, hist: Histogram<u64>, elapsed: Duration) -> Self {
        Self {
            name: name.to_owned(),
            what: what.to_owned(),
            hist,
            elapsed,
            note: String::new(),
            cpu: CpuUsage::default(),
        }
    }

    pub fn with_cpu(mut self, cpu: CpuUsage) -> Self {
        self.cpu = cpu;
        self
    }

    /// Quantile in microseconds.
    pub fn q_us(&self, q: f64) -> f64 {
        self.hist.value_at_quantile(q) as f64 / 1_000.0
    }

    pub fn p50_us(&self) -> f64 {
        self.q_us(0.50)
    }

    pub fn max_us(&self) -> f64 {
        self.hist.max() as f64 / 1_000.0
    }

    pub fn mean_us(&self) -> f64 {
        self.hist.mean() / 1_000.0
    }

    pub fn ops(&self) -> u64 {
        self.hist.len()
    }

    pub fn throughput(&self) -> f64 {
        let s = self.elapsed.as_secs_f64();
        if s > 0.0 {
            self.ops() as f64 / s
        } else {
            0.0
        }
    }

    fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "what": self.what,
            "ops": self.ops(),
            "p10_us": self.q_us(0.10),
            "p25_us": self.q_us(0.25),
            "p50_us": self.p50_us(),
            "p75_us": self.q_us(0.75),
            "p90_us": self.q_us(0.90),
            "p99_us": self.q_us(0.99),
            "p999_us": self.q_us(0.999),
            "max_us": self.max_us(),
            "mean_us": self.mean_us(),
            "min_us": self.hist.min() as f64 / 1_000.0,
            "elapsed_s": self.elapsed.as_secs_f64(),
            "ops_per_s": self.throughput(),
            "note": self.note,
            "client_cpu_us_per_op": self.cpu.client_us_per_op(),
            "server_cpu_us_per_op": self.cpu.server_us_per_op(),
        })
    }
}

/// A ratio of two p50s against its target.
pub struct Ratio {
    pub name: String,
    pub numerator: String,
    pub denominator: String,
    pub value: f64,
    /// The same ratio of means: steadier when a distribution is bimodal (a VM whose idle
    /// vCPUs are slow to wake flips between two latency modes, and the p50 can jump).
    pub mean_value: f64,
    pub target: Option<f64>,
}

impl Ratio {
    /// `num.p50 / den.p50`, if both figures were measured.
    pub fn of(
        name: &str,
        figures: &[Figure],
        num: &str,
        den: &str,
        target: Option<f64>,
    ) -> Option<Self> {
        let find = |n: &str| figures.iter().find(|f| f.name == n);
        let (a, b) = (find(num)?, find(den)?);
        Some(Self {
            name: name.to_owned(),
            numerator: num.to_owned(),
            denominator: den.to_owned(),
            value: a.p50_us() / b.p50_us(),
            mean_value: a.mean_us() / b.mean_us(),
            target,
        })
    }

    fn verdict(&self) -> &'static str {
        match self.target {
            Some(t) if self.value <= t => "ok",
            Some(_) => "MISSED",
            None => "",
        }
    }
}

fn fmt_us(v: f64) -> String {
    if v >= 1_000.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// The table as text (also pasted into the README).
pub fn table(figures: &[Figure]) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "{:<26} {:>6} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>6} {:>6}  {}\n",
        "figure",
        "ops",
        "p50µs",
        "p99µs",
        "p999µs",
        "maxµs",
        "meanµs",
        "ops/s",
        "cli/op",
        "srv/op",
        "what"
    ));
    let cpu = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"));
    for f in figures {
        s.push_str(&format!(
            "{:<26} {:>6} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7.0} {:>6} {:>6}  {}{}\n",
            f.name,
            f.ops(),
            fmt_us(f.p50_us()),
            fmt_us(f.q_us(0.99)),
            fmt_us(f.q_us(0.999)),
            fmt_us(f.max_us()),
            fmt_us(f.mean_us()),
            f.throughput(),
            cpu(f.cpu.client_us_per_op()),
            cpu(f.cpu.server_us_per_op()),
            f.what,
            if f.note.is_empty() {
                String::new()
            } else {
                format!(" [{}]", f.note)
            }
        ));
    }
    s
}

/// The ratio lines: p50 / p50 (and mean / mean).
pub fn ratios_text(ratios: &[Ratio]) -> String {
    let mut s = String::new();
    for r in ratios {
        let target = match r.target {
            Some(t) => format!("; target ≤ {t:.1}x {}", r.verdict()),
            None => String::new(),
        };
        s.push_str(&format!(
            "{:<36} {:>5.2}x  (means {:.2}x; {} / {}{})\n",
            r.name, r.value, r.mean_value, r.numerator, r.denominator, target
        ));
    }
    s
}

/// The whole report as JSON.
pub fn report_json(figures: &[Figure], ratios: &[Ratio], meta: Value) -> Value {
    json!({
        "meta": meta,
        "figures": figures.iter().map(Figure::to_json).collect::<Vec<_>>(),
        "ratios": ratios.iter().map(|r| json!({
            "name": r.name,
            "numerator": r.numerator,
            "denominator": r.denominator,
            "value": r.value,
            "mean_value": r.mean_value,
            "target": r.target,
            "met": r.target.map(|t| r.value <= t),
        })).collect::<Vec<_>>(),
    })
}
