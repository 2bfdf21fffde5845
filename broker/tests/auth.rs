//! Credentials: every token is bound to its tenant, refused auths are counted and end the
//! connection after a few, production refuses to run without an auth configuration, and no
//! secret is taken from the command line. Real QUIC against real brokers (in-process for
//! protocol checks, the binary for start-up checks).

mod common;
mod v1;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use felix_broker::auth::StaticTokenAuth;
use felix_broker::Broker;
use felix_client::ErrorCode;
use serde_json::json;

/// An in-process broker accepting `acme:tok-a` and `globex:tok-g`.
async fn two_tenant_broker(name: &str) -> TestBroker {
    let cfg = test_config(name);
    let ca = cfg.dev_ca_path.clone();
    let auth =
        StaticTokenAuth::new(StaticTokenAuth::parse_list("acme:tok-a,globex:tok-g").unwrap())
            .unwrap();
    TestBroker {
        broker: Broker::start_with_auth(cfg, Box::new(auth))
            .await
            .expect("broker starts"),
        ca,
    }
}

fn client_for(b: &TestBroker, tenant: &str, token: &str) -> felix_client::ClientConfig {
    felix_client::ClientConfig {
        tenant: tenant.into(),
        token: Some(token.into()),
        ..b.client_config()
    }
}

/// The hole found by the hostile test: a token configured for one tenant, sent with another
/// tenant's id, read that tenant's stream and cache and overwrote its cache.
#[tokio::test]
async fn a_token_of_one_tenant_cannot_act_as_another() {
    let b = two_tenant_broker("auth-bound").await;
    let globex = within(10, "globex connects", async {
        felix_client::Client::connect(client_for(&b, "globex", "tok-g"))
            .await
            .expect("globex with its own token")
    })
    .await;
    within(
        5,
        "globex put",
        globex.cache_put("ns", "c", "k", "secret".into(), None),
    )
    .await
    .unwrap();
    within(5, "globex publish", globex.publish("ns", "s", "x".into()))
        .await
        .unwrap();

    // acme's valid token with globex's tenant id: refused at connect, before any request.
    let Err(err) = within(10, "cross-tenant connect", async {
        felix_client::Client::connect(client_for(&b, "globex", "tok-a")).await
    })
    .await
    else {
        panic!("acme's token must not open globex");
    };
    assert_eq!(err.code(), ErrorCode::Unauthorized, "{err}");

    // Raw: the same over a v1 stream, and the stream gets nothing else.
    let raw = within(10, "raw connect", v1::Client::connect(b.addr(), &b.ca)).await;
    let (mut s, reply) = within(
        5,
        "raw cross-tenant auth",
        raw.open_authed(
            &json!({"type": "auth", "tenant_id": "globex", "token": "tok-a",
            "client_features": 1}),
        ),
    )
    .await;
    assert_eq!(
        (&reply["type"], &reply["code"]),
        (&json!("error"), &json!("unauthorized")),
        "{reply}"
    );
    within(5, "stream ends", s.rx.expect_end()).await;

    // globex's value is untouched and acme works with its own token.
    let v = within(5, "globex get", globex.cache_get("ns", "c", "k"))
        .await
        .unwrap();
    assert_eq!(
        v.map(|v| v.value),
        Some(bytes::Bytes::from_static(b"secret"))
    );
    let acme = within(10, "acme connects", async {
        felix_client::Client::connect(client_for(&b, "acme", "tok-a"))
            .await
            .expect("acme with its own token")
    })
    .await;
    let v = within(5, "acme get", acme.cache_get("ns", "c", "k"))
        .await
        .unwrap();
    assert_eq!(v, None, "acme sees its own (empty) cache, not globex's");
}

/// Failed auths are counted, answered more slowly, and end the connection at
/// `limits.max_auth_failures_per_connection`; other connections are unaffected.
#[tokio::test]
async fn repeated_auth_failures_close_the_connection_and_are_counted() {
    let b = two_tenant_broker("auth-failures").await;
    let metrics = &b.broker.shared().metrics;
    let limit = b
        .broker
        .shared()
        .cfg
        .limits
        .max_auth_failures_per_connection;
    let raw = within(10, "raw connect", v1::Client::connect(b.addr(), &b.ca)).await;
    let guess = |i: u32| {
        json!({"type": "auth", "tenant_id": "acme", "token": format!("guess-{i}"),
            "client_features": 1})
    };
    for i in 1..limit {
        let (_s, reply) = within(5, "guess", raw.open_authed(&guess(i))).await;
        assert_eq!(reply["code"], "unauthorized", "guess {i}: {reply}");
    }
    assert!(
        raw.conn.close_reason().is_none(),
        "still open after {} failures",
        limit - 1
    );
    let (_s, reply) = within(5, "last guess", raw.open_authed(&guess(limit))).await;
    assert_eq!(reply["code"], "unauthorized", "{reply}");
    let reason = within(5, "connection closed", raw.conn.closed()).await;
    match reason {
        quinn::ConnectionError::ApplicationClosed(c) => {
            assert_eq!(
                u64::from(c.error_code),
                u64::from(ErrorCode::Unauthorized.as_u16())
            );
            let why = String::from_utf8_lossy(&c.reason);
            assert!(why.contains("too many failed auth"), "{why}");
        }
        other => panic!("expected an application close, got {other:?}"),
    }
    assert_eq!(metrics.auth_failures.get(), u64::from(limit));
    assert_eq!(metrics.auth_connections_closed.get(), 1);

    // Even the right token is refused on a closed connection, while a fresh connection with
    // it is served.
    let acme = within(10, "acme connects", async {
        felix_client::Client::connect(client_for(&b, "acme", "tok-a"))
            .await
            .expect("acme with its own token")
    })
    .await;
    within(5, "acme publish", acme.publish("ns", "s", "x".into()))
        .await
        .unwrap();
}

/// Streams opened in parallel on one connection cannot add guesses past the limit: once the
/// limit is reached, further auths are refused without checking the token.
#[tokio::test]
async fn parallel_guesses_on_one_connection_stop_at_the_limit() {
    let b = two_tenant_broker("auth-parallel").await;
    let limit = b
        .broker
        .shared()
        .cfg
        .limits
        .max_auth_failures_per_connection;
    let raw = within(10, "raw connect", v1::Client::connect(b.addr(), &b.ca)).await;
    let mut streams = Vec::new();
    for i in 0..50 {
        let (mut send, recv) = raw.conn.open_bi().await.expect("open_bi");
        let auth = json!({"type": "auth", "tenant_id": "acme", "token": format!("g{i}")});
        send.write_all(&v1::json_frame(&auth)).await.unwrap();
        streams.push((send, recv));
    }
    within(10, "connection closed", raw.conn.closed()).await;
    let seen = b.broker.shared().metrics.auth_failures.get();
    assert_eq!(
        seen,
        u64::from(limit),
        "tokens checked: auths past the limit are refused unchecked"
    );
    assert_eq!(b.broker.shared().metrics.auth_connections_closed.get(), 1);
}

fn broker_bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_felix-broker"))
}

/// Runs a broker that is expected to refuse to start; one still running after 20 s (it
/// accepted the configuration) is killed and fails the test instead of hanging it.
fn expect_refusal(mut cmd: Command) -> (Option<i32>, String) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the broker started instead of refusing the configuration");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `--production` without tokens used to fall back to dev auth and accept everyone.
#[test]
fn production_refuses_to_start_without_an_auth_configuration() {
    let dir = scratch("auth-prod");
    // A certificate for the production TLS settings: the dev one, made by a dev broker run.
    let tls = felix_transport::ServerTls::generate_dev(&dir.join("ca.pem")).unwrap();
    drop(tls);
    let mut cmd = broker_bin();
    cmd.args(["--production", "--listen", "127.0.0.1:0", "--no-metrics"])
        .arg("--tls-cert")
        .arg(dir.join("dev-server.pem"))
        .arg("--tls-key")
        .arg(dir.join("dev-server.key"))
        .env_remove("FELIX_AUTH_TOKENS")
        .env_remove("FELIX_AUTH_TOKENS_FILE");
    let (code, stderr) = expect_refusal(cmd);
    assert_eq!(code, Some(2), "stderr: {stderr}");
    assert!(
        stderr.contains("refuses to start without an auth configuration"),
        "{stderr}"
    );

    // A token file readable by others is refused in production too.
    let tokens = dir.join("tokens");
    std::fs::write(&tokens, "acme tok\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&tokens, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut cmd = broker_bin();
    cmd.args(["--production", "--listen", "127.0.0.1:0", "--no-metrics"])
        .arg("--tls-cert")
        .arg(dir.join("dev-server.pem"))
        .arg("--tls-key")
        .arg(dir.join("dev-server.key"))
        .arg("--auth-tokens-file")
        .arg(&tokens);
    let (code, stderr) = expect_refusal(cmd);
    assert_eq!(code, Some(2), "stderr: {stderr}");
    assert!(stderr.contains("chmod 600"), "{stderr}");
}

/// No flag takes a token (a command line is readable by every local user), and `--help` says
/// where tokens go instead.
#[test]
fn tokens_are_never_taken_from_the_command_line() {
    let out = broker_bin()
        .args(["--auth-tokens", "acme:tok", "--print-config"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "an unknown flag");
    let help = broker_bin().arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("--auth-tokens-file"), "{help}");
    assert!(help.contains("FELIX_AUTH_TOKENS"), "{help}");
    assert!(help.contains("no flag for tokens"), "{help}");
}

/// Tokens from the environment are bound to their tenants in a real broker process.
#[tokio::test]
async fn tokens_from_the_environment_are_bound_to_their_tenants() {
    let dir = scratch("auth-env");
    let addr = free_udp_port();
    let ca = dir.join("ca.pem");
    let mut child = broker_command(addr, &ca)
        .env("FELIX_AUTH_TOKENS", "acme:tok-a, globex:tok-g")
        .spawn()
        .unwrap();
    wait_for_handshake(addr, 20).await;
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", child.id())).unwrap();
    assert!(!String::from_utf8_lossy(&cmdline).contains("tok-a"));
    let cfg = |tenant: &str, token: &str| felix_client::ClientConfig {
        addresses: vec![addr.to_string()],
        tls: felix_client::Tls::CaFile(ca.clone()),
        tenant: tenant.into(),
        token: Some(token.into()),
        request_timeout: Duration::from_secs(5),
        ..felix_client::ClientConfig::default()
    };
    let ok = within(
        10,
        "acme",
        felix_client::Client::connect(cfg("acme", "tok-a")),
    )
    .await;
    assert!(ok.is_ok(), "{:?}", ok.err());
    for (tenant, token) in [("globex", "tok-a"), ("acme", "tok-g"), ("acme", "nope")] {
        let err = within(
            10,
            "refused",
            felix_client::Client::connect(cfg(tenant, token)),
        )
        .await
        .err()
        .unwrap_or_else(|| panic!("{tenant} with {token} must be refused"));
        assert_eq!(
            err.code(),
            ErrorCode::Unauthorized,
            "{tenant}/{token}: {err}"
        );
    }
    let _ = child.kill();
    let _ = child.wait();
}
