//! The comparison's results: every trial of every figure, summarised as median (min–max),
//! with Felix's ratio to each peer; written as JSON and as a markdown table.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::{json, Value};

use super::measure::{spread, Trial};
use super::{CompareArgs, Sys};
use crate::procs::BoxError;

/// One figure: a workload with its parameters, measured on several systems.
struct Figure {
    workload: String,
    params: String,
    systems: Vec<(Sys, Vec<Trial>)>,
}

pub struct Results {
    figures: Vec<Figure>,
    counter: usize,
    meta: Value,
}

impl Results {
    pub fn new(args: &CompareArgs, trials: usize) -> Self {
        Self {
            figures: Vec::new(),
            counter: 0,
            meta: json!({
                "date": date(),
                "uname": cmd("uname", &["-a"]),
                "cpu": crate::cpu_model(),
                // The machine's CPUs, not this process's: `bench/run` pins the bench to one.
                "cores": std::fs::read_to_string("/proc/cpuinfo")
                    .map(|s| s.lines().filter(|l| l.starts_with("processor")).count())
                    .unwrap_or(0),
                "load_start": crate::loadavg(),
                "quick": args.quick,
                "trials": trials,
                "server_cpus": args.server_cpus,
                "nats_server": cmd(&args.nats_server.to_string_lossy(), &["--version"]),
                "valkey_server": cmd(&args.valkey_server.to_string_lossy(), &["--version"]),
            }),
        }
    }

    /// A fresh topic/queue name (every figure starts clean).
    pub fn unique(&mut self, tag: &str) -> String {
        self.counter += 1;
        format!("{tag}{}", self.counter)
    }

    pub fn add(&mut self, workload: &str, params: &str, sys: Sys, t: Trial) {
        let i = match self
            .figures
            .iter()
            .position(|f| f.workload == workload && f.params == params)
        {
            Some(i) => i,
            None => {
                self.figures.push(Figure {
                    workload: workload.into(),
                    params: params.into(),
                    systems: Vec::new(),
                });
                self.figures.len() - 1
            }
        };
        let f = &mut self.figures[i];
        match f.systems.iter_mut().find(|(s, _)| *s == sys) {
            Some((_, v)) => v.push(t),
            None => f.systems.push((sys, vec![t])),
        }
    }

    /// Writes `<out>/<date>.json` and `.md` (`-quick` suffixed for quick runs) and prints
    /// the markdown. Fails if a figure has no samples (what the smoke test checks).
    pub fn finish(mut self, out: &Path) -> Result<(), BoxError> {
        self.meta["load_end"] = json!(crate::loadavg());
        let md = self.markdown();
        println!("{md}");
        std::fs::create_dir_all(out)?;
        let stem = format!(
            "{}{}",
            self.meta["date"].as_str().unwrap_or("run"),
            if self.meta["quick"] == json!(true) {
                "-quick"
            } else {
                ""
            }
        );
        std::fs::write(
            out.join(format!("{stem}.json")),
            serde_json::to_string_pretty(&self.json())?,
        )?;
        std::fs::write(out.join(format!("{stem}.md")), &md)?;
        crate::progress(&format!("wrote {}/{stem}.json and .md", out.display()));
        let empty: Vec<String> = self
            .figures
            .iter()
            .flat_map(|f| {
                f.systems
                    .iter()
                    .filter(|(_, ts)| ts.iter().any(|t| t.samples == 0))
                    .map(move |(s, _)| format!("{} {} {}", f.workload, f.params, s.name()))
            })
            .collect();
        if !empty.is_empty() {
            return Err(format!("figures without samples: {}", empty.join(", ")).into());
        }
        Ok(())
    }

    fn json(&self) -> Value {
        let figures: Vec<Value> = self
            .figures
            .iter()
            .map(|f| {
                let systems: serde_json::Map<String, Value> = f
                    .systems
                    .iter()
                    .map(|(s, ts)| {
                        let summary: serde_json::Map<String, Value> = keys(ts)
                            .into_iter()
                            .filter_map(|k| {
                                spread(ts, &k).map(|(m, lo, hi)| {
                                    (k, json!({"median": m, "min": lo, "max": hi}))
                                })
                            })
                            .collect();
                        let trials: Vec<Value> = ts.iter().map(|t| t.json()).collect();
                        (
                            s.name().to_owned(),
                            json!({"summary": summary, "trials": trials}),
                        )
                    })
                    .collect();
                json!({
                    "workload": f.workload, "params": f.params,
                    "systems": systems, "ratios": ratios(f),
                })
            })
            .collect();
        json!({"meta": self.meta, "figures": figures})
    }

    fn markdown(&self) -> String {
        let mut s = String::new();
        let m = &self.meta;
        let _ = writeln!(
            s,
            "{} — {} cores ({}), load {} → {}; {} trial(s) per figure, median (min–max); \
             servers pinned to CPUs `{}`.\n\n{}\n",
            m["date"].as_str().unwrap_or(""),
            m["cores"],
            m["cpu"].as_str().unwrap_or(""),
            m["load_start"].as_str().unwrap_or(""),
            m["load_end"].as_str().unwrap_or(""),
            m["trials"],
            m["server_cpus"].as_str().unwrap_or(""),
            m["uname"].as_str().unwrap_or(""),
        );
        let _ = writeln!(
            s,
            "| figure | params | system | p50 µs | p99 µs | p999 µs | max µs | per s | other |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|");
        for f in &self.figures {
            for (sys, ts) in &f.systems {
                let other: Vec<String> = keys(ts)
                    .into_iter()
                    .filter(|k| !CORE.contains(&k.as_str()))
                    .filter_map(|k| spread(ts, &k).map(|(m, _, _)| format!("{k} {}", num(m))))
                    .collect();
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    f.workload,
                    f.params,
                    sys.name(),
                    cell(ts, "p50"),
                    cell(ts, "p99"),
                    cell(ts, "p999"),
                    cell(ts, "max"),
                    cell(ts, "throughput"),
                    other.join(", ")
                );
            }
        }
        let _ = writeln!(
            s,
            "\nFelix ÷ peer (latency: below 1 is better; per s: above 1 is better)\n"
        );
        let _ = writeln!(s, "| figure | params | peer | p50 | p99 | per s | other |");
        let _ = writeln!(s, "|---|---|---|---|---|---|---|");
        for f in &self.figures {
            for r in ratios(f) {
                let g = |k: &str| {
                    r[k].as_f64()
                        .map(|v| format!("{v:.2}x"))
                        .unwrap_or_default()
                };
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} | {} | {} |",
                    f.workload,
                    f.params,
                    r["peer"].as_str().unwrap_or(""),
                    g("p50"),
                    g("p99"),
                    g("throughput"),
                    g("rss_mib"),
                );
            }
        }
        s
    }
}

const CORE: [&str; 6] = ["p50", "p90", "p99", "p999", "max", "throughput"];

/// The value names of these trials: the quantiles and throughput (when there are latency
/// samples or a rate), then the extras.
fn keys(ts: &[Trial]) -> Vec<String> {
    let mut k: Vec<String> = Vec::new();
    let Some(t) = ts.first() else { return k };
    if t.p50 > 0.0 {
        k.extend(CORE[..5].iter().map(|s| s.to_string()));
    }
    if t.throughput > 0.0 {
        k.push("throughput".into());
    }
    k.extend(t.extra.iter().map(|(n, _)| n.clone()));
    k
}

/// Felix's median divided by each peer's (p50, p99, throughput, RSS).
fn ratios(f: &Figure) -> Vec<Value> {
    let Some((_, felix)) = f.systems.iter().find(|(s, _)| *s == Sys::Felix) else {
        return Vec::new();
    };
    f.systems
        .iter()
        .filter(|(s, _)| *s != Sys::Felix)
        .map(|(s, peer)| {
            let mut r = json!({"peer": s.name()});
            for k in ["p50", "p99", "throughput", "rss_mib"] {
                if let (Some((a, _, _)), Some((b, _, _))) = (spread(felix, k), spread(peer, k)) {
                    if b > 0.0 && a > 0.0 {
                        r[k] = json!(a / b);
                    }
                }
            }
            r
        })
        .collect()
}

fn cell(ts: &[Trial], k: &str) -> String {
    match spread(ts, k) {
        Some((0.0, _, _)) => String::new(),
        Some((m, lo, hi)) if ts.len() > 1 => format!("{} ({}–{})", num(m), num(lo), num(hi)),
        Some((m, _, _)) => num(m),
        None => String::new(),
    }
}

fn num(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn cmd(program: &str, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn date() -> String {
    cmd("date", &["-u", "+%Y-%m-%d"])
}
