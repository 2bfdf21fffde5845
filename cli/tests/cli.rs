//! End-to-end tests of the `felix` binary: a real broker runs in this test process (QUIC on an
//! ephemeral loopback port, private dev CA), and `felix` runs as a subprocess against it.
//! Every subprocess has a deadline and is killed if it overruns; nothing sleeps.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use felix_broker::{Broker, BrokerConfig};
use serde_json::Value;
use tokio::io::AsyncWriteExt as _;

const FELIX: &str = env!("CARGO_BIN_EXE_felix");
/// Longest any single `felix` invocation may take.
const DEADLINE: Duration = Duration::from_secs(30);

static NEXT: AtomicU64 = AtomicU64::new(0);

/// A broker on an ephemeral port with its own CA file.
struct TestBroker {
    broker: Broker,
    ca: PathBuf,
    dir: PathBuf,
}

impl TestBroker {
    async fn start(name: &str) -> Self {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("felix-cli-test-{}-{name}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = dir.join("ca.pem");
        let cfg = BrokerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            metrics_listen: None,
            dev_ca_path: ca.clone(),
            shutdown_grace_ms: 500,
            ..BrokerConfig::default()
        };
        let broker = Broker::start(cfg).await.expect("broker starts");
        Self { broker, ca, dir }
    }

    /// Runs `felix` against this broker.
    async fn felix(&self, args: &[&str]) -> Run {
        self.felix_stdin(args, None).await
    }

    /// Runs `felix` against this broker with `stdin` as its standard input.
    async fn felix_stdin(&self, args: &[&str], stdin: Option<&[u8]>) -> Run {
        let addr = self.broker.local_addr().to_string();
        let ca = self.ca.to_str().unwrap();
        let mut full = vec!["--addr", &addr, "--ca", ca, "--timeout", "5000"];
        full.extend_from_slice(args);
        run(&full, stdin, &[]).await
    }

    async fn stop(self) {
        self.broker.shutdown().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The outcome of one `felix` run.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    /// Asserts the exit status, showing the output when it differs.
    #[track_caller]
    fn expect(&self, code: i32) -> &Self {
        assert_eq!(self.code, Some(code), "unexpected exit status: {self:#?}");
        self
    }

    fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }

    fn json_lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
            .collect()
    }
}

/// Runs `felix args...` with a deadline; `FELIX_*` variables of the test environment are not
/// passed on, `env` is.
async fn run(args: &[&str], stdin: Option<&[u8]>, env: &[(&str, &str)]) -> Run {
    let mut cmd = tokio::process::Command::new(FELIX);
    cmd.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, _) in std::env::vars() {
        if k.starts_with("FELIX_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().copied());
    let mut child = cmd.spawn().expect("spawn felix");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(input).await.unwrap();
        drop(pipe);
    }
    let out = tokio::time::timeout(DEADLINE, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("felix {args:?} did not finish within {DEADLINE:?}"))
        .expect("wait for felix");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn b64(s: &str) -> Value {
    use base64::Engine as _;
    Value::String(base64::engine::general_purpose::STANDARD.encode(s))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_then_subscribe_from_earliest() {
    let b = TestBroker::start("pubsub").await;

    let r = b.felix(&["pub", "orders", "one", "two", "three"]).await;
    assert_eq!(r.expect(0).lines(), ["published 3"]);

    // One message per stdin line, in batches of 2; a CRLF line ending is not payload.
    let r = b
        .felix_stdin(
            &["pub", "orders", "--batch", "2"],
            Some(b"four\r\nfive\nsix"),
        )
        .await;
    assert_eq!(r.expect(0).lines(), ["published 3"]);

    // Unacknowledged publishes still arrive before the command exits.
    let r = b
        .felix_stdin(
            &["pub", "orders", "-", "--ack", "none", "--json"],
            Some(b"seven\n"),
        )
        .await;
    let v = &r.expect(0).json_lines()[0];
    assert_eq!(v["published"], 1);
    assert_eq!(v["stream"], "orders");

    let r = b
        .felix(&["sub", "orders", "--from", "earliest", "--count", "7"])
        .await;
    assert_eq!(
        r.expect(0).lines(),
        ["one", "two", "three", "four", "five", "six", "seven"]
    );

    let r = b
        .felix(&["sub", "orders", "--from", "1", "--count", "2", "--json"])
        .await;
    let events = r.expect(0).json_lines();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["stream"], "orders");
    assert_eq!(events[0]["offset"], 1);
    assert_eq!(events[0]["payload_b64"], b64("two"));
    assert_eq!(events[1]["offset"], 2);

    let r = b
        .felix(&["sub", "orders", "--from", "0", "--count", "1", "--hex"])
        .await;
    assert_eq!(r.expect(0).lines(), ["6f6e65"]);

    // Wildcards, and an idle timeout that ends a subscription without --count.
    b.felix(&["pub", "metrics.cpu", "c1"]).await.expect(0);
    b.felix(&["pub", "metrics.mem", "m1"]).await.expect(0);
    let r = b
        .felix(&[
            "sub",
            "metrics.*",
            "--from",
            "earliest",
            "--timeout-idle",
            "1000",
            "--json",
        ])
        .await;
    let mut streams: Vec<String> = r
        .expect(0)
        .json_lines()
        .iter()
        .map(|v| v["stream"].as_str().unwrap().to_owned())
        .collect();
    streams.sort();
    assert_eq!(streams, ["metrics.cpu", "metrics.mem"]);

    // --count not reached before the idle timeout is a timeout (exit 3).
    let r = b
        .felix(&[
            "sub",
            "orders",
            "--from",
            "5",
            "--count",
            "10",
            "--timeout-idle",
            "1000",
        ])
        .await;
    r.expect(3);
    assert_eq!(r.lines(), ["six", "seven"]);
    assert!(r.stderr.contains("error[timeout]"), "{r:#?}");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_values_and_exit_codes() {
    let b = TestBroker::start("cache").await;

    let r = b.felix(&["cache", "get", "sessions", "alice"]).await;
    r.expect(1);
    assert!(r.stdout.is_empty());
    assert!(r.stderr.starts_with("error[not_found]:"), "{r:#?}");

    let r = b
        .felix(&["cache", "get", "sessions", "alice", "--json"])
        .await;
    assert_eq!(r.expect(1).json_lines()[0]["found"], false);

    let r = b
        .felix(&[
            "cache", "put", "sessions", "alice", "token-1", "--ttl", "60000",
        ])
        .await;
    let version: u64 = r.expect(0).lines()[0]
        .strip_prefix("version ")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{r:#?}"));

    let r = b.felix(&["cache", "get", "sessions", "alice"]).await;
    assert_eq!(r.expect(0).lines(), ["token-1"]);

    let r = b
        .felix(&["cache", "get", "sessions", "alice", "--json"])
        .await;
    let v = &r.expect(0).json_lines()[0];
    assert_eq!(v["found"], true);
    assert_eq!(v["version"], version);
    assert_eq!(v["value_b64"], b64("token-1"));

    // Conditions that do not hold: conflict, exit 1, value unchanged.
    let r = b
        .felix(&["cache", "put", "sessions", "alice", "x", "--if-absent"])
        .await;
    r.expect(1);
    assert!(r.stderr.contains("error[conflict]"), "{r:#?}");
    let stale = (version + 100).to_string();
    b.felix(&[
        "cache",
        "put",
        "sessions",
        "alice",
        "x",
        "--if-version",
        &stale,
    ])
    .await
    .expect(1);
    let current = version.to_string();
    b.felix(&[
        "cache",
        "put",
        "sessions",
        "alice",
        "token-2",
        "--if-version",
        &current,
    ])
    .await
    .expect(0);

    // A value from stdin, exact bytes.
    b.felix_stdin(&["cache", "put", "sessions", "bob", "-"], Some(b"line\n"))
        .await
        .expect(0);
    let r = b.felix(&["cache", "get", "sessions", "bob", "--raw"]).await;
    assert_eq!(r.expect(0).stdout, "line\n");

    let r = b
        .felix(&["cache", "mget", "sessions", "alice", "nobody", "bob"])
        .await;
    assert_eq!(
        r.expect(0).stdout,
        "alice\ttoken-2\nnobody\t(missing)\nbob\tline\n\n"
    );

    let r = b.felix(&["cache", "del", "sessions", "alice"]).await;
    assert_eq!(r.expect(0).lines(), ["existed: true"]);
    let r = b
        .felix(&["cache", "del", "sessions", "alice", "--json"])
        .await;
    assert_eq!(r.expect(0).json_lines()[0]["existed"], false);
    b.felix(&["cache", "get", "sessions", "alice"])
        .await
        .expect(1);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_pull_ack_nack() {
    let b = TestBroker::start("queue").await;
    b.felix(&["pub", "jobs", "j0", "j1", "j2"]).await.expect(0);

    let r = b
        .felix(&["queue", "pull", "jobs", "workers", "--max", "2", "--json"])
        .await;
    let msgs = r.expect(0).json_lines();
    assert_eq!(msgs.len(), 2);
    assert_eq!(msgs[0]["offset"], 0);
    assert_eq!(msgs[0]["attempt"], 1);
    assert_eq!(msgs[0]["payload_b64"], b64("j0"));
    assert_eq!(msgs[1]["offset"], 1);

    let r = b.felix(&["queue", "ack", "jobs", "workers", "0"]).await;
    assert_eq!(r.expect(0).lines(), ["acked 1"]);
    let r = b.felix(&["queue", "nack", "jobs", "workers", "1"]).await;
    assert_eq!(r.expect(0).lines(), ["nacked 1"]);

    // The nacked message comes back (attempt 2) before the next new one; --ack finishes both.
    let r = b
        .felix(&[
            "queue", "pull", "jobs", "workers", "--max", "5", "--wait", "2000", "--ack",
        ])
        .await;
    let lines = r.expect(0).lines();
    assert!(lines.contains(&"1\t2\tj1"), "{r:#?}");
    assert!(lines.contains(&"2\t1\tj2"), "{r:#?}");

    // Nothing left: empty output, still success.
    let r = b
        .felix(&["queue", "pull", "jobs", "workers", "--max", "5"])
        .await;
    assert_eq!(r.expect(0).stdout, "");
    let r = b.felix(&["queue", "dlq", "jobs", "workers"]).await;
    assert_eq!(r.expect(0).stdout, "");
    let r = b.felix(&["queue", "redrive", "jobs", "workers"]).await;
    assert_eq!(r.expect(0).lines(), ["redriven 0"]);
    let r = b
        .felix(&["queue", "discard", "jobs", "workers", "--json"])
        .await;
    assert_eq!(r.expect(0).json_lines()[0]["discarded"], 0);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_have_codes_and_exit_statuses() {
    let b = TestBroker::start("errors").await;

    // The broker rejects the name: invalid_argument, exit 2.
    let r = b.felix(&["pub", "bad name!", "x"]).await;
    r.expect(2);
    assert!(r.stderr.starts_with("error[invalid_argument]:"), "{r:#?}");
    let r = b.felix(&["sub", "ord*"]).await;
    r.expect(2);
    assert!(r.stderr.contains("invalid_argument"), "{r:#?}");

    // Usage errors are caught before connecting.
    let r = b.felix(&["sub", "orders", "--from", "soon"]).await;
    r.expect(2);
    assert!(r.stderr.starts_with("error[usage]:"), "{r:#?}");
    b.felix(&["pub", "orders", "a", "-"]).await.expect(2);
    b.felix(&["queue", "ack", "jobs", "g"]).await.expect(2);
    b.felix(&["frobnicate"]).await.expect(2);

    // Nobody answers on this port (it is bound, so nothing else takes it): exit 3.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    let ca = b.ca.to_str().unwrap();
    let r = run(
        &["--addr", &addr, "--ca", ca, "--timeout", "300", "ping"],
        None,
        &[],
    )
    .await;
    r.expect(3);
    assert!(
        r.stderr.starts_with("error[timeout]:") || r.stderr.starts_with("error[unavailable]:"),
        "{r:#?}"
    );

    // No CA file: unavailable with a hint, exit 3.
    let missing = b.dir.join("missing.pem");
    let r = run(
        &["--ca", missing.to_str().unwrap(), "cache", "get", "c", "k"],
        None,
        &[],
    )
    .await;
    r.expect(3);
    assert!(r.stderr.contains("--insecure-dev"), "{r:#?}");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_and_environment_options() {
    let b = TestBroker::start("ping").await;
    let r = b.felix(&["ping", "--count", "3", "--interval", "0"]).await;
    let lines = r.expect(0).lines();
    assert!(lines[0].starts_with("connected to "), "{r:#?}");
    assert!(lines[1].starts_with("ping 1: "), "{r:#?}");
    assert!(lines[4].starts_with("3 pings: min "), "{r:#?}");

    // Everything from FELIX_* variables.
    let addr = b.broker.local_addr().to_string();
    let ca = b.ca.to_str().unwrap();
    let env = [
        ("FELIX_ADDR", addr.as_str()),
        ("FELIX_CA", ca),
        ("FELIX_JSON", "1"),
        ("FELIX_NAMESPACE", "other"),
        ("FELIX_TIMEOUT", "5000"),
    ];
    let r = run(&["ping", "-c", "2", "-i", "0"], None, &env).await;
    let pings = r.expect(0).json_lines();
    assert_eq!(pings.len(), 2);
    assert_eq!(pings[1]["seq"], 2);
    assert!(pings[1]["rtt_ms"].as_f64().unwrap() >= 0.0);

    // The namespace is honoured: a key put in "other" is not in "default".
    run(&["cache", "put", "c", "k", "v"], None, &env)
        .await
        .expect(0);
    run(&["cache", "get", "c", "k"], None, &env).await.expect(0);
    b.felix(&["cache", "get", "c", "k"]).await.expect(1);
    b.felix(&["-n", "other", "cache", "get", "c", "k"])
        .await
        .expect(0);
    b.stop().await;
}

#[tokio::test]
async fn help_of_every_subcommand() {
    let commands: &[&[&str]] = &[
        &[],
        &["pub"],
        &["sub"],
        &["queue"],
        &["queue", "pull"],
        &["queue", "ack"],
        &["queue", "nack"],
        &["queue", "dlq"],
        &["queue", "redrive"],
        &["queue", "discard"],
        &["cache"],
        &["cache", "get"],
        &["cache", "put"],
        &["cache", "del"],
        &["cache", "mget"],
        &["ping"],
    ];
    for path in commands {
        let mut args = path.to_vec();
        args.push("--help");
        let r = run(&args, None, &[]).await;
        r.expect(0);
        let usage = format!("Usage: felix {}", path.join(" "));
        assert!(r.stdout.contains(usage.trim_end()), "{args:?}: {r:#?}");
        assert!(
            r.stdout.contains("--addr"),
            "{args:?}: global options listed"
        );
    }
    let r = run(&["--version"], None, &[]).await;
    assert!(r.expect(0).stdout.starts_with("felix "));
}
