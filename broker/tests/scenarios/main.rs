//! Runs the language-neutral behaviour scenarios of `tests/scenarios/` (format and rules:
//! `tests/scenarios/README.md`) against an in-process broker with felix-client.
//!
//! Every scenario gets a fresh namespace (`${ns}`); all of them share one broker. Each is
//! reported as passed or failed (with the failing step's index, op and reason); the test fails
//! if any scenario fails or if none was found. `FELIX_SCENARIOS=a,b` runs only those.
//!
//! Modules: `step` (a step's typed accessors and failures), `run` (a scenario's state, the
//! step loop and the connection and pub/sub ops), `ops_queue_cache` (queue and cache ops),
//! `runner_checks` (scenarios that must fail, so the runner is never vacuous).

mod auth_fixture;
#[path = "../common/mod.rs"]
mod common;
mod ops_queue_cache;
mod run;
mod runner_checks;
mod step;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use common::TestBroker;
use felix_client::{
    AckMode, Client, Error as ClientError, ErrorCode, Event, FullPolicy, GroupSettings,
    PutCondition, Start, StreamSettings, Subscription,
};
use run::Run;
use serde_json::{Map, Value};
use step::*;
use tokio::time::Instant;

/// Deadline of a step that gives no `timeout_ms`.
const DEFAULT_STEP_MS: u64 = 10_000;
/// Deadline of `expect_events` without `timeout_ms`.
const DEFAULT_EVENTS_MS: u64 = 5_000;
/// Deadline of a scenario without `timeout_ms`.
const DEFAULT_SCENARIO_MS: u64 = 60_000;
/// Slack of the outer deadline over a step's own (which reports more precisely).
const SAFETY_MS: u64 = 5_000;
/// Pause between reads of `wait_until_cache_miss`.
const POLL: Duration = Duration::from_millis(5);
/// Longest `expect_no_event` window.
const MAX_NO_EVENT_MS: u64 = 10_000;

const TOP_KEYS: &[&str] = &[
    "$schema",
    "name",
    "description",
    "timeout_ms",
    "broker",
    "steps",
];

/// The brokers a scenario may ask for with its `broker` key (README, "Brokers").
const BROKER_PROFILES: &[&str] = &["dev", "jwt"];

/// The brokers of a run: the dev broker every scenario uses by default, and the `jwt` one
/// (JWT mode with the keys of `tests/scenarios/auth/jwks.json`), started on first use.
pub(crate) struct Brokers {
    name: String,
    dev: TestBroker,
    jwt: tokio::sync::OnceCell<TestBroker>,
}

impl Brokers {
    pub(crate) async fn start(name: &str) -> Self {
        Self {
            name: name.into(),
            dev: TestBroker::start(name).await,
            jwt: tokio::sync::OnceCell::new(),
        }
    }

    async fn get(&self, profile: &str) -> &TestBroker {
        match profile {
            "jwt" => {
                self.jwt
                    .get_or_init(|| async {
                        let mut cfg = common::test_config(&format!("{}-jwt", self.name));
                        cfg.auth.jwt_keys_file = Some(auth_fixture::dir().join("jwks.json"));
                        cfg.auth.issuer = Some(auth_fixture::ISSUER.into());
                        // The fixture tokens live until 2100 (principals.json).
                        cfg.auth.max_token_lifetime_s = 4_000_000_000;
                        TestBroker::with_config(cfg).await
                    })
                    .await
            }
            _ => &self.dev,
        }
    }
}
const COMMON_KEYS: &[&str] = &["op", "comment", "expect_error", "timeout_ms"];
/// Keys that check or store a result, so make no sense on a step expected to fail.
const RESULT_KEYS: &[&str] = &[
    "as",
    "expect",
    "expect_count",
    "expect_existed",
    "expect_version",
];

/// Ops whose `expect` is required unless the step has `expect_error`.
const EXPECT_REQUIRED: &[&str] = &["cache_get", "cache_get_many", "dead_letters"];

/// Every op, in README order.
const OPS: &[&str] = &[
    "connect",
    "close",
    "publish",
    "subscribe",
    "expect_events",
    "expect_no_event",
    "create_stream",
    "create_cache",
    "create_group",
    "queue_pull",
    "queue_ack",
    "queue_nack",
    "queue_redrive",
    "dead_letters",
    "cache_put",
    "cache_get",
    "cache_delete",
    "cache_get_many",
    "wait_until_cache_miss",
];

/// Keys each op takes besides [`COMMON_KEYS`].
fn op_keys(op: &str) -> Option<&'static [&'static str]> {
    Some(match op {
        "connect" => &["as", "tenant", "token"],
        "close" => &["client", "subscription"],
        "publish" => &[
            "client",
            "namespace",
            "stream",
            "payload",
            "payloads",
            "ack",
        ],
        "subscribe" => &["client", "as", "namespace", "stream", "from"],
        "expect_events" => &["subscription", "payloads", "events", "any_order"],
        "expect_no_event" => &["subscription", "within_ms"],
        "create_stream" => &[
            "client",
            "namespace",
            "stream",
            "max_records",
            "max_bytes",
            "subscriber_buffer",
            "full_policy",
        ],
        "create_cache" => &[
            "client",
            "namespace",
            "cache",
            "max_bytes",
            "default_ttl_ms",
        ],
        "create_group" => &[
            "client",
            "namespace",
            "stream",
            "group",
            "from",
            "ack_timeout_ms",
            "max_deliveries",
        ],
        "queue_pull" => &[
            "client",
            "namespace",
            "stream",
            "group",
            "max",
            "wait_ms",
            "expect",
            "as",
        ],
        "queue_ack" => &[
            "client",
            "namespace",
            "stream",
            "group",
            "offsets",
            "expect_count",
        ],
        "queue_nack" => &[
            "client",
            "namespace",
            "stream",
            "group",
            "offsets",
            "delay_ms",
            "expect_count",
        ],
        "queue_redrive" => &[
            "client",
            "namespace",
            "stream",
            "group",
            "offsets",
            "expect_count",
        ],
        "dead_letters" => &[
            "client",
            "namespace",
            "stream",
            "group",
            "max",
            "expect",
            "as",
        ],
        "cache_put" => &[
            "client",
            "namespace",
            "cache",
            "key",
            "value",
            "ttl_ms",
            "if_absent",
            "if_version",
            "expect_version",
            "as",
        ],
        "cache_get" => &[
            "client",
            "namespace",
            "cache",
            "key",
            "expect",
            "expect_version",
            "as",
        ],
        "cache_delete" => &["client", "namespace", "cache", "key", "expect_existed"],
        "cache_get_many" => &["client", "namespace", "cache", "keys", "expect"],
        "wait_until_cache_miss" => &["client", "namespace", "cache", "key"],
        _ => return None,
    })
}

/// Runs one scenario file; `Err` is the report line of its failure.
async fn run_file(brokers: &Brokers, path: &Path, index: usize) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))?;
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    run_text(brokers, stem, &text, index).await
}

/// Runs one scenario given as JSON text; `stem` is its file name without `.json`.
async fn run_text(brokers: &Brokers, stem: &str, text: &str, index: usize) -> Result<(), String> {
    let mut doc: Value = serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
    let top = doc.as_object().ok_or("a scenario must be a JSON object")?;
    if let Some(k) = top.keys().find(|k| !TOP_KEYS.contains(&k.as_str())) {
        return Err(format!("unknown top-level key {k:?}"));
    }
    match top.get("name").and_then(Value::as_str) {
        Some(n) if n == stem => {}
        Some(n) => return Err(format!("name {n:?} differs from the file name {stem:?}")),
        None => return Err("missing name".into()),
    }
    if top
        .get("description")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err("missing description".into());
    }
    let timeout = match top.get("timeout_ms") {
        None => DEFAULT_SCENARIO_MS,
        Some(v) => v.as_u64().ok_or("timeout_ms must be an integer")?,
    };
    let profile = match top.get("broker") {
        None => "dev",
        Some(Value::String(p)) if BROKER_PROFILES.contains(&p.as_str()) => p.as_str(),
        Some(v) => return Err(format!("unknown broker {v} (one of {BROKER_PROFILES:?})")),
    };
    let broker = brokers.get(profile).await;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let ns = format!("sc_{index}_{stamp:x}");
    substitute(&mut doc, &ns);
    let steps = match doc.get("steps") {
        Some(Value::Array(s)) if !s.is_empty() => s,
        _ => return Err("steps must be a non-empty array".into()),
    };
    let mut run = Run {
        broker,
        ns,
        clients: HashMap::new(),
        subs: HashMap::new(),
        offsets: HashMap::new(),
        versions: HashMap::new(),
    };
    let mut at = 0usize;
    let r = tokio::time::timeout(Duration::from_millis(timeout), async {
        for (i, step) in steps.iter().enumerate() {
            at = i;
            run.step(step).await?;
        }
        Ok::<(), String>(())
    })
    .await;
    let r = match r {
        Ok(r) => r,
        Err(_) => Err(format!("scenario timed out after {timeout} ms")),
    };
    run.subs.clear();
    for c in run.clients.values() {
        c.close();
    }
    r.map_err(|reason| {
        let op = steps[at]
            .get("op")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_owned();
        format!("step {at} ({op}): {reason}")
    })
}

fn scenario_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "json")
                && p.file_name().is_some_and(|n| n != "schema.json")
        })
        .collect();
    files.sort();
    files
}

#[tokio::test]
async fn scenarios() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/scenarios");
    let mut files = scenario_files(&dir);
    if let Ok(only) = std::env::var("FELIX_SCENARIOS") {
        let names: Vec<&str> = only
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .collect();
        for n in &names {
            assert!(
                files.iter().any(|p| p.file_stem().is_some_and(|s| s == *n)),
                "FELIX_SCENARIOS names {n:?}, which is not in {}",
                dir.display()
            );
        }
        files.retain(|p| names.iter().any(|n| p.file_stem().is_some_and(|s| s == *n)));
    }
    assert!(!files.is_empty(), "no scenario found in {}", dir.display());
    let brokers = Brokers::start("scenarios").await;
    let mut failed = Vec::new();
    for (i, path) in files.iter().enumerate() {
        let name = path.file_stem().unwrap_or_default().to_string_lossy();
        let started = std::time::Instant::now();
        match run_file(&brokers, path, i).await {
            Ok(()) => println!("PASS {name} ({} ms)", started.elapsed().as_millis()),
            Err(reason) => {
                println!("FAIL {name}: {reason}");
                failed.push(format!("{name}: {reason}"));
            }
        }
    }
    println!(
        "{} scenarios: {} passed, {} failed",
        files.len(),
        files.len() - failed.len(),
        failed.len()
    );
    assert!(
        failed.is_empty(),
        "{} of {} scenarios failed:\n  {}",
        failed.len(),
        files.len(),
        failed.join("\n  ")
    );
}

/// `schema.json` and this runner accept exactly the same ops and keys, so a scenario the schema
/// passes is never refused here (or the other way round).
#[test]
fn schema_matches_runner() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/scenarios/schema.json");
    let text = std::fs::read_to_string(&path).expect("schema.json");
    let schema: Value = serde_json::from_str(&text).expect("schema.json is JSON");
    let top: Vec<&str> = schema["properties"]
        .as_object()
        .expect("top-level properties")
        .keys()
        .map(String::as_str)
        .collect();
    let mut want_top = TOP_KEYS.to_vec();
    let mut got_top = top.clone();
    want_top.sort_unstable();
    got_top.sort_unstable();
    assert_eq!(got_top, want_top, "top-level keys");
    let ops: Vec<&str> = schema["$defs"]["step"]["properties"]["op"]["enum"]
        .as_array()
        .expect("op enum")
        .iter()
        .map(|v| v.as_str().expect("op name"))
        .collect();
    let mut sorted = ops.clone();
    let mut want_ops = OPS.to_vec();
    sorted.sort_unstable();
    want_ops.sort_unstable();
    assert_eq!(sorted, want_ops, "ops");
    let defs = schema["$defs"].as_object().expect("$defs");
    let step_defs = defs.keys().filter(|k| k.starts_with("step_")).count();
    assert_eq!(step_defs, ops.len(), "one step_<op> definition per op");
    for op in ops {
        let keys = op_keys(op).unwrap_or_else(|| panic!("the runner does not know op {op:?}"));
        let props = defs[&format!("step_{op}")]["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("schema has no step_{op}"));
        let mut got: Vec<&str> = props.keys().map(String::as_str).collect();
        let mut want: Vec<&str> = COMMON_KEYS.iter().chain(keys).copied().collect();
        got.sort_unstable();
        want.sort_unstable();
        assert_eq!(got, want, "keys of op {op}");
    }
}
