//! `felix-bench auth`: what JWT mode costs.
//!
//! * the per-request permission check (`felix_auth::Permissions::allows`) of a realistic token
//!   (6 grants, 10 patterns), hit and miss, in nanoseconds;
//! * one token verification (`Verifier::verify`: Ed25519 + claims + compiling the grants),
//!   paid once per stream `auth` and `reauth`, in microseconds;
//! * cache get, 256 B, concurrency 1, against three brokers started side by side in this run:
//!   dev mode (every permission, no token), static tokens (a token file: one SHA-256 lookup
//!   per `auth`, every permission in the tenant) and JWT mode (keys from a file, a token
//!   granting `cache.read` on one namespace pattern among others). Trials alternate.
//! * connect + auth + ping (a fresh client: QUIC handshake, the `auth` round trip, one ping)
//!   for the three, interleaved connect by connect so that load drift hits them alike.

use std::hint::black_box;
use std::time::{Duration, Instant};

use felix_auth::{Claims, Grant, Jwks, Permissions, SigningKey, Verifier, VerifierConfig};
use felix_client::Client;

use crate::compare::measure::{closed_loop, Trial};
use crate::procs::{self, BoxError, BrokerSpec};

#[derive(clap::Args, Debug, Clone)]
pub struct AuthArgs {
    /// Broker binary (default: `felix-broker` next to this executable).
    #[arg(long)]
    pub broker_bin: Option<std::path::PathBuf>,
    /// Measured cache gets per trial and mode.
    #[arg(long, default_value_t = 20_000)]
    pub ops: usize,
    /// Trials per mode (interleaved).
    #[arg(long, default_value_t = 3)]
    pub trials: usize,
    /// Connects measured per mode (interleaved between the modes).
    #[arg(long, default_value_t = 200)]
    pub connects: usize,
}

const ISSUER: &str = "felix-bench";
const NS: &str = "bench";

fn grant(actions: &[&str], resources: &[&str]) -> Grant {
    Grant {
        actions: actions.iter().map(|s| s.to_string()).collect(),
        resources: resources.iter().map(|s| s.to_string()).collect(),
    }
}

/// A token shaped like a real service's: several grants, the one used last.
fn grants() -> Vec<Grant> {
    vec![
        grant(&["publish"], &["orders/eu.*", "orders/us.*"]),
        grant(&["subscribe"], &["orders/>", "audit/events.>"]),
        grant(&["consume"], &["jobs/high", "jobs/low"]),
        grant(&["cache.write"], &["sessions/*", &format!("{NS}/c")]),
        // The measured cache is created by its first put: that needs admin on it.
        grant(&["admin"], &["scratch/>", &format!("{NS}/c")]),
        grant(&["cache.read"], &["*/profiles", &format!("{NS}/>")]),
    ]
}

fn claims(lifetime_s: u64) -> Claims {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    Claims {
        iss: ISSUER.into(),
        aud: "felix".into(),
        sub: "bench".into(),
        tenant: "t1".into(),
        region: "local".into(),
        perms: grants(),
        iat: now,
        nbf: now,
        exp: now + lifetime_s,
        jti: "bench-1".into(),
    }
}

/// ns per call of `f`, the best of 5 runs of `n` calls.
fn ns_per(n: u64, mut f: impl FnMut() -> bool) -> f64 {
    (0..5)
        .map(|_| {
            let t = Instant::now();
            let mut hits = 0u64;
            for _ in 0..n {
                hits += f() as u64;
            }
            black_box(hits);
            t.elapsed().as_nanos() as f64 / n as f64
        })
        .fold(f64::INFINITY, f64::min)
}

pub async fn run(args: AuthArgs) -> Result<(), BoxError> {
    // -- The permission check, in-process. --
    let perms = Permissions::compile(&grants())?;
    let all = Permissions::all();
    use felix_auth::Action;
    let hit = ns_per(5_000_000, || {
        perms.allows(
            black_box(Action::CacheRead),
            black_box(NS),
            black_box("c.k1"),
        )
    });
    let miss = ns_per(5_000_000, || {
        perms.allows(
            black_box(Action::CacheRead),
            black_box("other"),
            black_box("c"),
        )
    });
    let dev = ns_per(5_000_000, || {
        all.allows(black_box(Action::CacheRead), black_box(NS), black_box("c"))
    });
    println!("Permissions::allows, 6 grants / 10 patterns: hit (last pattern) {hit:.1} ns, miss {miss:.1} ns; Permissions::all {dev:.1} ns");

    let key = SigningKey::generate("bench-k1");
    let token = key.sign(&claims(3_600))?;
    let vcfg = VerifierConfig {
        issuer: ISSUER.into(),
        audience: "felix".into(),
        region: "local".into(),
        leeway_s: 60,
    };
    let verifier = Verifier::new(
        vcfg,
        Jwks {
            keys: vec![key.public_jwk()],
        },
    );
    let now = claims(0).iat;
    let verify_ns = ns_per(2_000, || verifier.verify(black_box(&token), now).is_ok());
    println!(
        "Verifier::verify (token of {} bytes): {:.1} µs",
        token.len(),
        verify_ns / 1e3
    );

    // -- Two brokers, dev and JWT, in this run. --
    let dir = procs::private_dir("auth")?;
    let jwks_path = dir.join("jwks.json");
    std::fs::write(
        &jwks_path,
        serde_json::to_vec(&Jwks {
            keys: vec![key.public_jwk()],
        })?,
    )?;
    let bin = args
        .broker_bin
        .clone()
        .unwrap_or_else(procs::default_broker_bin);
    let spec = |extra: Vec<String>, probe: Option<(String, String)>| BrokerSpec {
        bin: bin.clone(),
        runtime: "current-thread".into(),
        worker_threads: None,
        wrapper: Vec::new(),
        extra_args: extra,
        startup_timeout: Duration::from_secs(20),
        keep_dir: false,
        probe_token: probe,
    };
    let dev_broker = procs::start_broker(&spec(Vec::new(), None)).await?;
    // Static tokens: a token file (0600), the broker's shared-secret mode.
    const STATIC_TOKEN: &str = "bench-static-token-0123456789abcdef";
    let tokens_path = dir.join("tokens");
    std::fs::write(&tokens_path, format!("t1 {STATIC_TOKEN} bench\n"))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tokens_path, std::fs::Permissions::from_mode(0o600))?;
    }
    let static_broker = procs::start_broker(&spec(
        vec![
            "--auth-tokens-file".into(),
            tokens_path.display().to_string(),
        ],
        Some(("t1".into(), STATIC_TOKEN.into())),
    ))
    .await?;
    let jwt_broker = procs::start_broker(&spec(
        vec![
            "--jwt-keys-file".into(),
            jwks_path.display().to_string(),
            "--auth-issuer".into(),
            ISSUER.into(),
        ],
        Some(("t1".into(), token.clone())),
    ))
    .await?;
    let dev_cfg = procs::client_config(dev_broker.addr, &dev_broker.ca);
    let mut jwt_cfg = procs::client_config(jwt_broker.addr, &jwt_broker.ca);
    jwt_cfg.tenant = "t1".into();
    jwt_cfg.token = Some(token.clone());
    let mut static_cfg = procs::client_config(static_broker.addr, &static_broker.ca);
    static_cfg.tenant = "t1".into();
    static_cfg.token = Some(STATIC_TOKEN.into());
    let configs = [("dev", dev_cfg), ("static", static_cfg), ("jwt", jwt_cfg)];

    // Connect + auth (one round trip after the handshake; static tokens add a hash lookup,
    // JWT the verification). Interleaved: one connect of each mode in turn.
    let mut hists: Vec<_> = configs.iter().map(|_| crate::stats::histogram()).collect();
    for _ in 0..args.connects {
        for ((_, cfg), h) in configs.iter().zip(hists.iter_mut()) {
            let t = Instant::now();
            let c = Client::connect(cfg.clone()).await?;
            c.ping().await?;
            crate::stats::record(h, t.elapsed());
            c.close();
        }
    }
    for ((mode, _), h) in configs.iter().zip(&hists) {
        println!(
            "connect + auth + ping, {mode}: p50 {:.1} µs, p99 {:.1} µs",
            h.value_at_quantile(0.5) as f64 / 1e3,
            h.value_at_quantile(0.99) as f64 / 1e3
        );
    }

    let mut clients = Vec::new();
    for (mode, cfg) in &configs {
        let c = Client::connect(cfg.clone()).await?;
        for k in 0..1024 {
            c.cache_put(NS, "c", &format!("k{k}"), vec![7u8; 256].into(), None)
                .await?;
        }
        clients.push((*mode, c));
    }
    let mut trials: Vec<(&str, Trial)> = Vec::new();
    for _ in 0..args.trials {
        for (mode, c) in &clients {
            let t = closed_loop(1, 2_000, args.ops, |i| {
                let c = c.clone();
                async move {
                    c.cache_get(NS, "c", &format!("k{}", i % 1024)).await?;
                    Ok(())
                }
            })
            .await?;
            trials.push((mode, t));
        }
    }
    for mode in ["dev", "static", "jwt"] {
        let mut p50: Vec<f64> = trials
            .iter()
            .filter(|(m, _)| *m == mode)
            .map(|(_, t)| t.p50)
            .collect();
        let mut p99: Vec<f64> = trials
            .iter()
            .filter(|(m, _)| *m == mode)
            .map(|(_, t)| t.p99)
            .collect();
        p50.sort_by(f64::total_cmp);
        p99.sort_by(f64::total_cmp);
        println!(
            "cache get 256 B c1, {mode}: p50 {:.1} µs (trials {:?}), p99 {:.1} µs",
            p50[p50.len() / 2],
            p50.iter()
                .map(|v| (v * 10.0).round() / 10.0)
                .collect::<Vec<_>>(),
            p99[p99.len() / 2]
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
