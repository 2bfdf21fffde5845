//! `felix-controlplane`: runs the Felix control plane.
//!
//! With no arguments it runs in dev mode: plain HTTP on 127.0.0.1:7700, state in memory, the
//! admin API open, and a loud warning. `--production` refuses to start without TLS, a data
//! directory and an admin token. Settings come from defaults, then a TOML file (`--config`),
//! then `FELIX_CP_*` environment variables, then flags. On start it prints one JSON line on
//! stdout: `{"listen": "ADDR", "tls": BOOL}` (useful with `--listen 127.0.0.1:0`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use felix_controlplane::config::{read_admin_token_file, CpConfig};
use tracing::{info, warn};

#[derive(Parser, Debug)]
#[command(
    name = "felix-controlplane",
    version,
    about = "Felix control plane: tenants, roles, OIDC token exchange, signing keys"
)]
struct Args {
    /// TOML configuration file.
    #[arg(long, env = "FELIX_CP_CONFIG")]
    config: Option<PathBuf>,
    /// HTTP(S) listen address.
    #[arg(long, env = "FELIX_CP_LISTEN")]
    listen: Option<SocketAddr>,
    /// Production mode: requires --tls-cert/--tls-key, --data-dir and an admin token.
    #[arg(long, env = "FELIX_CP_PRODUCTION")]
    production: bool,
    /// Directory of the durable store (created with mode 0700).
    #[arg(long, env = "FELIX_CP_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Give the store a new identifier at start: once, after restoring it from a backup (its
    /// revocation revision went back; brokers would refuse it under the old identifier).
    #[arg(long)]
    new_store_id: bool,
    /// PEM certificate chain (HTTPS).
    #[arg(long, env = "FELIX_CP_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// PEM private key (HTTPS).
    #[arg(long, env = "FELIX_CP_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// File of admin bearer tokens, one per line, mode 0600. A token may also come from the
    /// FELIX_CP_ADMIN_TOKEN environment variable (read once, then removed from the
    /// environment); there is deliberately no flag for the token itself.
    #[arg(long, env = "FELIX_CP_ADMIN_TOKEN_FILE")]
    admin_token_file: Option<PathBuf>,
    /// File of broker read tokens, one per line, mode 0600: they read the revocation feed,
    /// keys and definitions, never write. Or FELIX_CP_BROKER_TOKEN (read once, removed).
    #[arg(long, env = "FELIX_CP_BROKER_TOKEN_FILE")]
    broker_token_file: Option<PathBuf>,
    /// Dev mode: serve on a non-loopback address even without an admin token (the admin API
    /// is then open to the network). Never use this outside a throwaway test setup.
    #[arg(long, env = "FELIX_CP_INSECURE_DEV_EXPOSE")]
    insecure_dev_expose: bool,
    /// `iss` of issued Felix tokens.
    #[arg(long, env = "FELIX_CP_ISSUER")]
    issuer: Option<String>,
    /// `aud` of issued Felix tokens.
    #[arg(long, env = "FELIX_CP_AUDIENCE")]
    audience: Option<String>,
    /// `region` of issued Felix tokens.
    #[arg(long, env = "FELIX_CP_REGION")]
    region: Option<String>,
    /// Lifetime of issued Felix tokens, seconds.
    #[arg(long, env = "FELIX_CP_TOKEN_LIFETIME_S")]
    token_lifetime_s: Option<u64>,
    /// Clock skew tolerated on subject tokens, seconds.
    #[arg(long, env = "FELIX_CP_CLOCK_SKEW_S")]
    clock_skew_s: Option<u64>,
    /// How long a rotated-out key stays published, seconds (at least lifetime + skew).
    #[arg(long, env = "FELIX_CP_KEY_OVERLAP_S")]
    key_overlap_s: Option<u64>,
    /// Seconds a rotated-in key is published before it signs (>= brokers' JWKS poll interval).
    #[arg(long, env = "FELIX_CP_KEY_PROPAGATION_S")]
    key_propagation_s: Option<u64>,
    /// Leeway brokers allow on Felix tokens' exp, seconds (>= the brokers' leeway_s).
    #[arg(long, env = "FELIX_CP_BROKER_LEEWAY_S")]
    broker_leeway_s: Option<u64>,
    /// Oldest subject token (now - iat) the exchange accepts, seconds.
    #[arg(long, env = "FELIX_CP_MAX_SUBJECT_TOKEN_AGE_S")]
    max_subject_token_age_s: Option<u64>,
    /// Concurrent connections from one IP address.
    #[arg(long, env = "FELIX_CP_MAX_CONNECTIONS_PER_IP")]
    max_connections_per_ip: Option<usize>,
    /// Time for a TLS handshake and each request's headers, milliseconds.
    #[arg(long, env = "FELIX_CP_HEADER_TIMEOUT_MS")]
    header_timeout_ms: Option<u64>,
    /// Whole-request deadline including the body read, milliseconds.
    #[arg(long, env = "FELIX_CP_REQUEST_TIMEOUT_MS")]
    request_timeout_ms: Option<u64>,
    /// Concurrent revocation long polls.
    #[arg(long, env = "FELIX_CP_MAX_LONG_POLLS")]
    max_long_polls: Option<usize>,
    /// Largest request body, bytes.
    #[arg(long, env = "FELIX_CP_MAX_BODY_BYTES")]
    max_body_bytes: Option<usize>,
    /// Concurrent HTTP connections.
    #[arg(long, env = "FELIX_CP_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// Least seconds between two unknown-kid JWKS refetches per issuer.
    #[arg(long, env = "FELIX_CP_OIDC_MIN_REFETCH_INTERVAL_S")]
    oidc_min_refetch_interval_s: Option<u64>,
    /// Extra CA certificates (PEM) trusted for OIDC issuers.
    #[arg(long, env = "FELIX_CP_OIDC_CA_FILE")]
    oidc_ca_file: Option<PathBuf>,
    /// Log format: text or json.
    #[arg(long, env = "FELIX_CP_LOG_FORMAT")]
    log_format: Option<String>,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    print_config: bool,
}

fn load(args: &Args) -> Result<CpConfig, String> {
    let mut cfg = match &args.config {
        Some(p) => CpConfig::from_toml_file(p).map_err(|e| e.to_string())?,
        None => CpConfig::default(),
    };
    macro_rules! set {
        ($($field:ident).+ <- $arg:expr) => {
            if let Some(v) = $arg.clone() {
                cfg.$($field).+ = v;
            }
        };
    }
    set!(listen <- args.listen);
    if args.production {
        cfg.dev = false;
    }
    if let Some(v) = &args.data_dir {
        cfg.data_dir = Some(v.clone());
    }
    if args.new_store_id {
        cfg.renew_store_id = true;
    }
    if let Some(v) = &args.tls_cert {
        cfg.tls_cert = Some(v.clone());
    }
    if let Some(v) = &args.tls_key {
        cfg.tls_key = Some(v.clone());
    }
    if let Some(v) = &args.admin_token_file {
        cfg.admin_token_file = Some(v.clone());
    }
    if let Some(v) = &args.broker_token_file {
        cfg.broker_token_file = Some(v.clone());
    }
    if args.insecure_dev_expose {
        cfg.insecure_dev_expose = true;
    }
    set!(key_propagation_s <- args.key_propagation_s);
    set!(broker_leeway_s <- args.broker_leeway_s);
    set!(max_subject_token_age_s <- args.max_subject_token_age_s);
    set!(max_connections_per_ip <- args.max_connections_per_ip);
    set!(header_timeout_ms <- args.header_timeout_ms);
    set!(request_timeout_ms <- args.request_timeout_ms);
    set!(max_long_polls <- args.max_long_polls);
    set!(issuer <- args.issuer);
    set!(audience <- args.audience);
    set!(region <- args.region);
    set!(token_lifetime_s <- args.token_lifetime_s);
    set!(clock_skew_s <- args.clock_skew_s);
    if args.key_overlap_s.is_some() {
        cfg.key_overlap_s = args.key_overlap_s;
    }
    set!(max_body_bytes <- args.max_body_bytes);
    set!(max_connections <- args.max_connections);
    set!(oidc.min_refetch_interval_s <- args.oidc_min_refetch_interval_s);
    if let Some(v) = &args.oidc_ca_file {
        cfg.oidc.ca_file = Some(v.clone());
    }
    set!(log_format <- args.log_format);
    Ok(cfg)
}

fn init_tracing(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FELIX_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        b.json().init();
    } else {
        b.init();
    }
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    info!("shutting down");
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    // Read once and dropped from the environment, so nothing this process starts inherits
    // them. This does NOT scrub /proc/PID/environ (the kernel keeps the initial environment):
    // prefer the 0600 files.
    let env_token = std::env::var("FELIX_CP_ADMIN_TOKEN").ok();
    std::env::remove_var("FELIX_CP_ADMIN_TOKEN");
    let env_broker = std::env::var("FELIX_CP_BROKER_TOKEN").ok();
    std::env::remove_var("FELIX_CP_BROKER_TOKEN");
    let fail = |e: String| {
        eprintln!("felix-controlplane: {e}");
        std::process::ExitCode::from(2)
    };
    let cfg = match load(&args) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    if args.print_config {
        print!("{}", toml::to_string_pretty(&cfg).unwrap_or_default());
        return std::process::ExitCode::SUCCESS;
    }
    let mut admin_tokens = Vec::new();
    if let Some(p) = &cfg.admin_token_file {
        match read_admin_token_file(p) {
            Ok(t) => admin_tokens.extend(t),
            Err(e) => return fail(e.to_string()),
        }
    }
    if let Some(t) = env_token
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
    {
        if t.len() < 16 {
            return fail("FELIX_CP_ADMIN_TOKEN must be at least 16 characters".into());
        }
        admin_tokens.push(t);
    }
    let mut broker_tokens = Vec::new();
    if let Some(p) = &cfg.broker_token_file {
        match read_admin_token_file(p) {
            Ok(t) => broker_tokens.extend(t),
            Err(e) => return fail(e.to_string()),
        }
    }
    if let Some(t) = env_broker
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
    {
        if t.len() < 16 {
            return fail("FELIX_CP_BROKER_TOKEN must be at least 16 characters".into());
        }
        broker_tokens.push(t);
    }
    if let Err(e) = cfg.validate(admin_tokens.len()) {
        return fail(e.to_string());
    }
    init_tracing(&cfg.log_format);
    let tls = match (&cfg.tls_cert, &cfg.tls_key) {
        (Some(c), Some(k)) => match felix_controlplane::server::tls_config(c, k) {
            Ok(t) => Some(t),
            Err(e) => return fail(e),
        },
        _ => None,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        let st = match felix_controlplane::build_state(cfg.clone(), &admin_tokens, &broker_tokens).await {
            Ok(s) => s,
            Err(e) => return fail(e),
        };
        drop(admin_tokens);
        drop(broker_tokens);
        info!(config = %serde_json::to_string(&cfg).unwrap_or_default(), "effective configuration");
        if cfg.dev {
            let mut missing = Vec::new();
            if tls.is_none() {
                missing.push("plain HTTP (no TLS)");
            }
            if cfg.data_dir.is_none() {
                missing.push("state in memory only (no data_dir)");
            }
            if st.admin_digests.is_empty() {
                missing.push("admin API open to anyone who can connect (no admin token)");
            }
            if st.admin_digests.is_empty() && !cfg.listen.ip().is_loopback() {
                missing.push(
                    "INSECURE: --insecure-dev-expose serves the open admin API on a network address",
                );
            }
            if !missing.is_empty() {
                warn!(
                    "DEV MODE: {}; do not expose this control plane (run with --production)",
                    missing.join(", ")
                );
            }
        }
        let listener = match tokio::net::TcpListener::bind(cfg.listen).await {
            Ok(l) => l,
            Err(e) => return fail(format!("listen {}: {e}", cfg.listen)),
        };
        let addr = listener.local_addr().map_or(cfg.listen, |a| a);
        println!(
            "{}",
            serde_json::json!({ "listen": addr.to_string(), "tls": tls.is_some() })
        );
        info!(%addr, tls = tls.is_some(), "control plane listening");
        tokio::spawn(felix_controlplane::housekeeping(
            st.clone(),
            Duration::from_secs(60),
        ));
        let limits = felix_controlplane::server::ServeLimits::from_config(&cfg);
        let metrics = st.metrics.clone();
        let app = felix_controlplane::api::router(st);
        match felix_controlplane::server::serve(
            listener,
            app,
            tls,
            limits,
            metrics,
            shutdown_signal(),
        )
        .await
        {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => fail(format!("serve: {e}")),
        }
    })
}
