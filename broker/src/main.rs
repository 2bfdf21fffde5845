//! `felix-broker`: runs a Felix broker.
//!
//! With no arguments it runs in dev mode: in memory, a generated certificate whose CA PEM is
//! written to `/tmp/felix-dev-<uid>/ca.pem`, QUIC on 127.0.0.1:5000, HTTP health and metrics on
//! 127.0.0.1:8080. Settings come from defaults, then a TOML file (`--config`), then `FELIX_*`
//! environment variables, then flags.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use felix_broker::auth::Authenticator;
use felix_broker::config::{BrokerConfig, RuntimeKind};
use felix_broker::Broker;
use tracing::{error, info, warn};

#[derive(Parser, Debug)]
#[command(
    name = "felix-broker",
    version,
    about = "Felix broker: pub/sub streams, work queues and cache over QUIC"
)]
struct Args {
    /// Without a subcommand, the broker serves.
    #[command(subcommand)]
    command: Option<Command>,
    /// TOML configuration file.
    #[arg(long, env = "FELIX_CONFIG")]
    config: Option<PathBuf>,
    /// QUIC listen address.
    #[arg(long, env = "FELIX_LISTEN")]
    listen: Option<SocketAddr>,
    /// HTTP address for /live, /ready and /metrics.
    #[arg(long, env = "FELIX_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// Disable the HTTP endpoint.
    #[arg(long, env = "FELIX_NO_METRICS")]
    no_metrics: bool,
    /// Production mode: refuses unsafe configurations (needs --tls-cert and --tls-key and an
    /// auth configuration), no creation on first use.
    #[arg(long, env = "FELIX_PRODUCTION")]
    production: bool,
    /// Where dev mode writes the CA PEM.
    #[arg(long, env = "FELIX_DEV_CA_PATH")]
    dev_ca_path: Option<PathBuf>,
    /// PEM certificate chain.
    #[arg(long, env = "FELIX_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// PEM private key.
    #[arg(long, env = "FELIX_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// mTLS: PEM file of the CA(s) client certificates must chain to.
    #[arg(long, env = "FELIX_TLS_CLIENT_CA")]
    tls_client_ca: Option<PathBuf>,
    /// mTLS: off, optional or required.
    #[arg(long, env = "FELIX_TLS_CLIENT_AUTH", value_parser = parse_client_auth)]
    tls_client_auth: Option<felix_transport::ClientAuth>,
    /// Audit log: a file path (created 0600, rotated) or `-` for stdout.
    #[arg(long, env = "FELIX_AUDIT_LOG")]
    audit_log: Option<String>,
    /// Create streams and caches on first use.
    #[arg(long, env = "FELIX_AUTO_CREATE")]
    auto_create: Option<bool>,
    /// Runtime flavour.
    #[arg(long, env = "FELIX_RUNTIME", value_enum)]
    runtime: Option<RuntimeKind>,
    /// Worker threads for the multi-thread runtime.
    #[arg(long, env = "FELIX_WORKER_THREADS")]
    worker_threads: Option<usize>,
    /// Token file: one `TENANT TOKEN [SUBJECT]` per line, mode 0600; each token opens only its
    /// tenant (`TOKEN` may be `sha256:HEX`). Tokens may also be given as `TENANT:TOKEN,...` in
    /// the FELIX_AUTH_TOKENS environment variable; there is deliberately no flag for tokens
    /// themselves (any local user can read a command line). Without tokens the broker runs in
    /// dev mode (anyone accepted); --production refuses to start without them.
    #[arg(long, env = "FELIX_AUTH_TOKENS_FILE")]
    auth_tokens_file: Option<PathBuf>,
    /// JWT mode: a JWKS JSON file of the Felix token signing keys (for a broker without a
    /// control plane, or the keys to start with).
    #[arg(long, env = "FELIX_JWT_KEYS_FILE")]
    jwt_keys_file: Option<PathBuf>,
    /// JWT mode: the control plane's base URL, polled for keys and revocations
    /// (https://, or http:// to a loopback address).
    #[arg(long, env = "FELIX_CONTROLPLANE_URL")]
    controlplane_url: Option<String>,
    /// JWT mode: file holding the control plane's broker read token (mode 0600; required in
    /// production with --controlplane-url). The token itself is never a flag.
    #[arg(long, env = "FELIX_CONTROLPLANE_TOKEN_FILE")]
    controlplane_token_file: Option<PathBuf>,
    /// JWT mode: PEM CA certificates of an https control plane with a private CA.
    #[arg(long, env = "FELIX_CONTROLPLANE_CA_FILE")]
    controlplane_ca_file: Option<PathBuf>,
    /// JWT mode: required `iss` of tokens.
    #[arg(long, env = "FELIX_AUTH_ISSUER")]
    auth_issuer: Option<String>,
    /// JWT mode: required `aud` of tokens (default felix).
    #[arg(long, env = "FELIX_AUTH_AUDIENCE")]
    auth_audience: Option<String>,
    /// JWT mode: longest token lifetime (`exp - iat`) accepted, in seconds (default 86400).
    #[arg(long, env = "FELIX_AUTH_MAX_TOKEN_LIFETIME_S")]
    auth_max_token_lifetime_s: Option<u64>,
    /// This broker's region; tokens for another region are refused (default local).
    #[arg(long, env = "FELIX_REGION")]
    region: Option<String>,
    /// JWT mode: clock skew tolerated on exp/nbf, seconds (default 60).
    #[arg(long, env = "FELIX_AUTH_LEEWAY_S")]
    auth_leeway_s: Option<u64>,
    /// JWT mode: control-plane poll interval, ms (default 2000).
    #[arg(long, env = "FELIX_AUTH_FEED_INTERVAL_MS")]
    auth_feed_interval_ms: Option<u64>,
    /// Log format: text or json.
    #[arg(long, env = "FELIX_LOG_FORMAT")]
    log_format: Option<String>,
    /// Largest frame payload in bytes.
    #[arg(long, env = "FELIX_MAX_FRAME_BYTES")]
    max_frame_bytes: Option<u32>,
    /// Maximum concurrent connections.
    #[arg(long, env = "FELIX_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// Maximum subscriptions per connection.
    #[arg(long, env = "FELIX_MAX_SUBSCRIPTIONS_PER_CONNECTION")]
    max_subscriptions_per_connection: Option<usize>,
    /// Data directory of durable streams (storage.data_dir).
    #[arg(long, env = "FELIX_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    print_config: bool,
}

fn parse_client_auth(s: &str) -> Result<felix_transport::ClientAuth, String> {
    use felix_transport::ClientAuth;
    match s {
        "off" => Ok(ClientAuth::Off),
        "optional" => Ok(ClientAuth::Optional),
        "required" => Ok(ClientAuth::Required),
        other => Err(format!("{other:?}: expected off, optional or required")),
    }
}

fn load(args: &Args) -> Result<BrokerConfig, String> {
    let mut cfg = match &args.config {
        Some(p) => BrokerConfig::from_toml_file(p).map_err(|e| e.to_string())?,
        None => BrokerConfig::default(),
    };
    if let Some(v) = args.listen {
        cfg.listen = v;
    }
    if let Some(v) = args.metrics_listen {
        cfg.metrics_listen = Some(v);
    }
    if args.no_metrics {
        cfg.metrics_listen = None;
    }
    if args.production {
        cfg.dev = false;
    }
    if let Some(v) = &args.dev_ca_path {
        cfg.dev_ca_path = v.clone();
    }
    if let Some(v) = &args.tls_cert {
        cfg.tls_cert = Some(v.clone());
    }
    if let Some(v) = &args.tls_key {
        cfg.tls_key = Some(v.clone());
    }
    if let Some(v) = &args.tls_client_ca {
        cfg.tls_client_ca = Some(v.clone());
    }
    if let Some(v) = args.tls_client_auth {
        cfg.tls_client_auth = v;
    }
    if let Some(v) = &args.audit_log {
        cfg.audit.output = Some(v.clone());
    }
    if let Some(v) = &args.auth_tokens_file {
        cfg.auth_tokens_file = Some(v.clone());
    }
    if let Some(v) = &args.jwt_keys_file {
        cfg.auth.jwt_keys_file = Some(v.clone());
    }
    if let Some(v) = &args.controlplane_url {
        cfg.auth.controlplane_url = Some(v.clone());
    }
    if let Some(v) = &args.controlplane_token_file {
        cfg.auth.controlplane_token_file = Some(v.clone());
    }
    if let Some(v) = &args.controlplane_ca_file {
        cfg.auth.controlplane_ca_file = Some(v.clone());
    }
    if let Some(v) = &args.auth_issuer {
        cfg.auth.issuer = Some(v.clone());
    }
    if let Some(v) = &args.auth_audience {
        cfg.auth.audience = v.clone();
    }
    if let Some(v) = args.auth_max_token_lifetime_s {
        cfg.auth.max_token_lifetime_s = v;
    }
    if let Some(v) = &args.region {
        cfg.auth.region = v.clone();
    }
    if let Some(v) = args.auth_leeway_s {
        cfg.auth.leeway_s = v;
    }
    if let Some(v) = args.auth_feed_interval_ms {
        cfg.auth.feed_interval_ms = v;
    }
    if let Some(v) = args.auto_create {
        cfg.auto_create = Some(v);
    }
    if let Some(v) = args.runtime {
        cfg.runtime = v;
    }
    if let Some(v) = args.worker_threads {
        cfg.worker_threads = v;
    }
    if let Some(v) = &args.log_format {
        cfg.log_format = v.clone();
    }
    if let Some(v) = args.max_frame_bytes {
        cfg.limits.max_frame_bytes = v;
    }
    if let Some(v) = args.max_connections {
        cfg.limits.max_connections = v;
    }
    if let Some(v) = args.max_subscriptions_per_connection {
        cfg.limits.max_subscriptions_per_connection = v;
    }
    if let Some(v) = &args.data_dir {
        cfg.storage.data_dir = Some(v.clone());
    }
    cfg.validate().map_err(|e| e.to_string())?;
    Ok(cfg)
}

fn init_tracing(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FELIX_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Verify the durable data directory of a stopped broker (every segment, frame CRC, index,
    /// checkpoint), and with --repair fix what can be fixed (docs/storage.md 12). Exit codes:
    /// 0 clean, 1 damage found (repair can fix it), 2 damage repair cannot fix or the check
    /// could not run, 3 a broker holds the directory's lock.
    Check(CheckArgs),
}

#[derive(clap::Args, Debug)]
struct CheckArgs {
    /// The data directory (default: storage.data_dir of the configuration).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Cut torn tails, move what follows a corrupt frame to lost+found/, rebuild indexes.
    #[arg(long)]
    repair: bool,
    /// Only this stream, as TENANT/NAMESPACE/STREAM.
    #[arg(long)]
    stream: Option<String>,
    /// One JSON object per line instead of text.
    #[arg(long)]
    json: bool,
}

/// `felix-broker check`: the offline verifier of `felix-storage`, on the real file system.
fn check(args: &Args, c: &CheckArgs) -> std::process::ExitCode {
    let data_dir = match &c.data_dir {
        Some(d) => d.clone(),
        None => match load(args).map(|cfg| cfg.storage.data_dir) {
            Ok(Some(d)) => d,
            Ok(None) => {
                eprintln!("felix-broker check: no data directory (--data-dir or storage.data_dir)");
                return std::process::ExitCode::from(2);
            }
            Err(e) => {
                eprintln!("felix-broker check: {e}");
                return std::process::ExitCode::from(2);
            }
        },
    };
    let only = match c.stream.as_deref().map(stream_dir).transpose() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("felix-broker check: --stream {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let opts = felix_storage::check::CheckOptions {
        repair: c.repair,
        only,
        ..Default::default()
    };
    let out = felix_storage::check::run(&felix_storage::fs::RealFs, &data_dir, &opts);
    if c.json {
        print!("{}", out.report.to_json_lines());
    } else {
        print!("{}", out.report);
    }
    std::process::ExitCode::from(u8::try_from(out.exit_code).unwrap_or(2))
}

/// `TENANT/NAMESPACE/STREAM` as the stream's log directory relative to the data directory;
/// exactly three plain components, so the argument can never name a path outside it.
fn stream_dir(s: &str) -> Result<PathBuf, String> {
    let parts: Vec<&str> = s.split('/').collect();
    let plain = |p: &&str| !p.is_empty() && *p != "." && *p != ".." && !p.contains('\\');
    if parts.len() != 3 || !parts.iter().all(plain) {
        return Err(format!("{s:?} is not TENANT/NAMESPACE/STREAM"));
    }
    Ok(PathBuf::from("streams")
        .join(parts[0])
        .join(parts[1])
        .join(parts[2]))
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    if let Some(Command::Check(c)) = &args.command {
        return check(&args, c);
    }
    let cfg = match load(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("felix-broker: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    if args.print_config {
        print!("{}", toml::to_string_pretty(&cfg).unwrap_or_default());
        return std::process::ExitCode::SUCCESS;
    }
    init_tracing(&cfg.log_format);
    // Read once and dropped from the environment, so that nothing this process starts inherits
    // the secrets.
    let env_tokens = std::env::var("FELIX_AUTH_TOKENS").ok();
    std::env::remove_var("FELIX_AUTH_TOKENS");
    let auth = match felix_broker::auth::from_config(&cfg, env_tokens.as_deref()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("felix-broker: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let mut rt = match cfg.runtime {
        RuntimeKind::CurrentThread => tokio::runtime::Builder::new_current_thread(),
        RuntimeKind::MultiThread => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            if cfg.worker_threads > 0 {
                b.worker_threads(cfg.worker_threads);
            }
            b
        }
    };
    let rt = rt.enable_all().build().expect("tokio runtime");
    rt.block_on(run(cfg, auth))
}

async fn run(cfg: BrokerConfig, auth: Box<dyn Authenticator>) -> std::process::ExitCode {
    info!(config = %serde_json::to_string(&cfg).unwrap_or_default(), "effective configuration");
    if auth.accepts_anyone() {
        warn!(
            "DEV MODE: accepting any token (or none) for any tenant; do not expose this broker \
             (configure auth_tokens_file or FELIX_AUTH_TOKENS, and run with --production)"
        );
    } else if cfg.auth.jwt_mode() {
        info!(
            issuer = cfg.auth.issuer.as_deref().unwrap_or(""),
            region = %cfg.auth.region,
            controlplane = cfg.auth.controlplane_url.as_deref().unwrap_or("-"),
            "JWT mode: accepting Felix tokens of this issuer and region, with their permissions"
        );
    } else {
        info!("accepting only configured tokens, each for its own tenant");
    }
    if cfg.stream_defaults.durability == felix_broker::config::DurabilityClass::Durable
        && cfg.storage.data_dir.is_none()
    {
        warn!("stream_defaults.durability = \"durable\" without storage.data_dir: streams stay ephemeral (dev mode)");
    }
    if cfg.dev && cfg.tls_cert.is_none() {
        info!(ca = %cfg.dev_ca_path.display(), "dev certificate generated; clients verify with this CA");
    }
    let broker = match Broker::start_with_auth(cfg, auth).await {
        Ok(b) => b,
        Err(e) => {
            error!("{e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    wait_for_signal().await;
    broker.shutdown().await;
    std::process::ExitCode::SUCCESS
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => info!("SIGINT received"),
        _ = term.recv() => info!("SIGTERM received"),
    }
}
