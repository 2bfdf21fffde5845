//! The command line: every subcommand, option and its `--help` text (clap derive).
//!
//! Global options may appear before or after the subcommand and can also come from
//! `FELIX_*` environment variables; an explicit option wins over the environment.

use std::path::PathBuf;

use clap::builder::BoolishValueParser;
use clap::{Args, Parser, Subcommand, ValueEnum};
use felix_client::{AckMode, Start};

const EXIT_CODES: &str = "\
Exit status:
  0    success
  1    negative answer: `cache get` found no such key, a conditional `cache put` did not hold
  2    usage: bad option or argument, or the broker rejected a name or value (invalid_argument)
  3    the broker is unavailable, overloaded or did not answer in time (retry later)
  4    any other error reported by the broker or the client
Errors are printed to stderr as `error[<code>]: <message>`.
`felix admin` exits 1 when the control plane refuses (see `felix admin --help`).

Examples:
  felix pub orders hello world
  seq 3 | felix pub orders
  felix sub orders --from earliest --count 3
  felix sub 'orders.>' --json
  felix queue pull jobs workers --max 10 --wait 5000 --ack
  felix cache put sessions alice token-1 --ttl 60000
  felix cache get sessions alice";

/// Command-line client for Felix: publish and subscribe to streams, consume work queues,
/// read and write the cache.
///
/// By default it talks to a local dev broker (127.0.0.1:5000), trusting the CA the dev broker
/// writes to $TMPDIR/felix-dev-<uid>/ca.pem.
#[derive(Debug, Parser)]
#[command(
    name = "felix",
    version,
    arg_required_else_help = true,
    after_long_help = EXIT_CODES
)]
pub struct Cli {
    /// Connection and output options shared by every subcommand.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every subcommand accepts.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Broker address; repeat (or comma-separate) to give fallbacks, tried in order.
    #[arg(
        long = "addr",
        value_name = "HOST:PORT",
        env = "FELIX_ADDR",
        value_delimiter = ',',
        default_value = "127.0.0.1:5000",
        global = true,
        help_heading = "Connection"
    )]
    pub addrs: Vec<String>,

    /// CA certificate (PEM) to verify the broker with; the dev broker writes this file.
    #[arg(
        long,
        value_name = "PATH",
        env = "FELIX_CA",
        default_value_os_t = default_ca(),
        global = true,
        help_heading = "Connection"
    )]
    pub ca: PathBuf,

    /// Accept any broker certificate (development only: no server authentication).
    #[arg(
        long,
        env = "FELIX_INSECURE_DEV",
        value_parser = BoolishValueParser::new(),
        global = true,
        help_heading = "Connection"
    )]
    pub insecure_dev: bool,

    /// TLS server name to verify (the dev certificate is for "localhost").
    #[arg(
        long,
        value_name = "NAME",
        env = "FELIX_SERVER_NAME",
        default_value = "localhost",
        global = true,
        help_heading = "Connection"
    )]
    pub server_name: String,

    /// Tenant to act for.
    #[arg(
        long,
        env = "FELIX_TENANT",
        default_value = "default",
        global = true,
        help_heading = "Connection"
    )]
    pub tenant: String,

    /// Bearer token, if the broker requires one.
    #[arg(
        long,
        env = "FELIX_TOKEN",
        hide_env_values = true,
        global = true,
        help_heading = "Connection"
    )]
    pub token: Option<String>,

    /// Namespace of the stream, queue or cache.
    #[arg(
        short = 'n',
        long,
        env = "FELIX_NAMESPACE",
        default_value = "default",
        global = true,
        help_heading = "Connection"
    )]
    pub namespace: String,

    /// Deadline in milliseconds for connecting and for each request (a queue pull adds its
    /// --wait) [default: 5000 to connect, 10000 per request].
    #[arg(
        long,
        value_name = "MS",
        env = "FELIX_TIMEOUT",
        value_parser = clap::value_parser!(u64).range(1..),
        global = true,
        help_heading = "Connection"
    )]
    pub timeout: Option<u64>,

    /// Print results as JSON, one object per line (payloads base64 in `payload_b64`).
    #[arg(
        long,
        env = "FELIX_JSON",
        value_parser = BoolishValueParser::new(),
        global = true,
        help_heading = "Output"
    )]
    pub json: bool,
}

fn default_ca() -> PathBuf {
    felix_client::default_dev_ca_path()
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Publish messages to a stream.
    #[command(after_long_help = "\
Examples:
  felix pub orders 'order 1' 'order 2'     # two messages, one batch
  seq 1000 | felix pub orders --batch 100  # one message per line of stdin
  felix pub orders - < messages.txt")]
    Pub(PubArgs),

    /// Subscribe to a stream or wildcard pattern and print its events.
    #[command(after_long_help = "\
Examples:
  felix sub orders                              # new events until Ctrl-C
  felix sub orders --from earliest --count 10   # the first 10 retained events
  felix sub 'orders.*' --json                   # {\"stream\",\"offset\",\"payload_b64\"} per line")]
    Sub(SubArgs),

    /// Work queues: pull, ack and nack messages of a consumer group; inspect dead letters.
    #[command(subcommand)]
    Queue(QueueCommand),

    /// The key-value cache: get, put, delete, multi-get.
    #[command(subcommand)]
    Cache(CacheCommand),

    /// Measure round trips to the broker.
    Ping(PingArgs),

    /// Administer the control plane: tenants, namespaces, definitions, roles, issuers,
    /// quotas, signing keys and revocations.
    Admin(crate::commands::admin::AdminArgs),

    /// Exchange an OIDC token at the control plane for a Felix token, and cache it for the
    /// other commands (used when no --token is given).
    #[command(after_long_help = "\
The token is cached (mode 0600) in $FELIX_TOKEN_CACHE, else $XDG_CONFIG_HOME/felix/token, else
~/.config/felix/token. Later commands use it when no --token is given and --tenant is the
login's tenant (or not given).

Examples:
  felix login --controlplane https://cp.example --tenant acme --subject-token-file id_token.jwt
  felix login --controlplane https://cp.example --tenant acme \\
      --subject-token-file /var/run/secrets/tokens/felix   # a Kubernetes projected SA token")]
    Login(LoginArgs),
}

/// `felix login`.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Control plane URL (https; http only to a loopback address).
    #[arg(long, value_name = "URL", env = "FELIX_CONTROLPLANE_URL")]
    pub controlplane: String,
    /// File holding the OIDC token to exchange (an ID token, or a Kubernetes ServiceAccount
    /// token).
    #[arg(long, value_name = "PATH")]
    pub subject_token_file: PathBuf,
    /// Type of the subject token [default: urn:ietf:params:oauth:token-type:id_token].
    #[arg(long, value_name = "URN")]
    pub subject_token_type: Option<String>,
    /// CA certificate (PEM) the control plane's certificate must chain to [default: the public
    /// web roots].
    #[arg(long, value_name = "PATH")]
    pub controlplane_ca: Option<PathBuf>,
}

/// `felix pub`.
#[derive(Debug, Args)]
pub struct PubArgs {
    /// Stream to publish to (created on first use by a dev broker).
    pub stream: String,

    /// Messages, one per argument. Without any (or with a single `-`), messages are read
    /// from stdin, one per line (the line ending is not part of the message).
    #[arg(value_name = "MESSAGE")]
    pub messages: Vec<String>,

    /// When the broker acknowledges: `none` does not wait for the broker (the command still
    /// makes one round trip at the end so nothing is lost when it exits).
    #[arg(long, value_enum, default_value_t = AckArg::PerBatch)]
    pub ack: AckArg,

    /// Most messages per batch (a batch is published atomically and in order).
    #[arg(long, value_name = "N", default_value_t = 256,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub batch: u32,
}

/// Acknowledgement mode of `felix pub`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AckArg {
    /// Do not wait for acknowledgements.
    None,
    /// One acknowledgement per message.
    PerMessage,
    /// One acknowledgement per batch.
    PerBatch,
}

impl From<AckArg> for AckMode {
    fn from(a: AckArg) -> Self {
        match a {
            AckArg::None => AckMode::None,
            AckArg::PerMessage => AckMode::PerMessage,
            AckArg::PerBatch => AckMode::PerBatch,
        }
    }
}

/// `felix sub`.
#[derive(Debug, Args)]
pub struct SubArgs {
    /// Stream, or a pattern: `*` matches one dot-separated token, a final `>` one or more
    /// (`orders.*`, `orders.>`).
    #[arg(value_name = "STREAM_OR_PATTERN")]
    pub pattern: String,

    /// Where to start: `latest` (only new events), `earliest` (the oldest retained event) or
    /// an offset.
    #[arg(long, value_name = "latest|earliest|OFFSET", default_value = "latest",
          value_parser = parse_start)]
    pub from: Start,

    /// Exit after this many events.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,

    /// Stop when no event arrives for this many milliseconds. Exits 0, unless --count was
    /// given and not reached (then it fails with `timeout`).
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout_idle: Option<u64>,

    /// How payloads are printed.
    #[command(flatten)]
    pub payload: PayloadArgs,
}

fn parse_start(s: &str) -> Result<Start, String> {
    match s {
        "latest" => Ok(Start::Latest),
        "earliest" => Ok(Start::Earliest),
        _ => s.parse::<u64>().map(Start::Offset).map_err(|_| {
            format!("expected `latest`, `earliest` or an offset (a whole number), got {s:?}")
        }),
    }
}

/// Payload rendering in text mode.
#[derive(Debug, Clone, Copy, Args)]
pub struct PayloadArgs {
    /// Print payloads as lowercase hex instead of UTF-8 text (text mode; JSON output always
    /// carries base64).
    #[arg(long, help_heading = "Output")]
    pub hex: bool,
}

/// `felix queue ...`.
#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// Lease messages for a consumer group and print them as `offset<TAB>attempt<TAB>payload`.
    ///
    /// Each message stays leased to this command until acked (--ack, or `felix queue ack`),
    /// nacked, or its lease ends and it is redelivered.
    Pull {
        /// The stream the group consumes.
        stream: String,
        /// Consumer group (created on first use by a dev broker).
        group: String,
        /// Most messages to take.
        #[arg(long, value_name = "N", default_value_t = 1,
              value_parser = clap::value_parser!(u32).range(1..))]
        max: u32,
        /// Wait this many milliseconds for a first message when none is ready (long poll).
        #[arg(long, value_name = "MS", default_value_t = 0)]
        wait: u64,
        /// Acknowledge the messages once printed (they are done and not redelivered).
        #[arg(long)]
        ack: bool,
        /// How payloads are printed.
        #[command(flatten)]
        payload: PayloadArgs,
    },

    /// Acknowledge leased messages by offset; prints how many were still leased.
    Ack {
        /// The stream the group consumes.
        stream: String,
        /// Consumer group.
        group: String,
        /// Offsets of the messages (as printed by `pull`).
        #[arg(required = true, value_name = "OFFSET")]
        offsets: Vec<u64>,
    },

    /// Return leased messages for redelivery; prints how many were still leased.
    Nack {
        /// The stream the group consumes.
        stream: String,
        /// Consumer group.
        group: String,
        /// Offsets of the messages (as printed by `pull`).
        #[arg(required = true, value_name = "OFFSET")]
        offsets: Vec<u64>,
        /// Redeliver no sooner than this many milliseconds from now.
        #[arg(long, value_name = "MS", default_value_t = 0)]
        delay: u64,
    },

    /// List dead letters, oldest first, as `offset<TAB>attempts<TAB>reason<TAB>payload`.
    Dlq {
        /// The stream the group consumes.
        stream: String,
        /// Consumer group.
        group: String,
        /// Most dead letters to list.
        #[arg(long, value_name = "N", default_value_t = 100,
              value_parser = clap::value_parser!(u32).range(1..))]
        max: u32,
        /// How payloads are printed.
        #[command(flatten)]
        payload: PayloadArgs,
    },

    /// Move dead letters back for delivery; without offsets, every dead letter of the group.
    Redrive {
        /// The stream the group consumes.
        stream: String,
        /// Consumer group.
        group: String,
        /// Offsets of the dead letters (as printed by `dlq`).
        #[arg(value_name = "OFFSET")]
        offsets: Vec<u64>,
    },

    /// Drop dead letters for good; without offsets, every dead letter of the group.
    Discard {
        /// The stream the group consumes.
        stream: String,
        /// Consumer group.
        group: String,
        /// Offsets of the dead letters (as printed by `dlq`).
        #[arg(value_name = "OFFSET")]
        offsets: Vec<u64>,
    },
}

/// `felix cache ...`.
#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// Print the value of a key; exits 1 when the key is missing or expired.
    Get {
        /// Cache name.
        cache: String,
        /// Key.
        key: String,
        /// Write the value's exact bytes with no trailing newline (text mode).
        #[arg(long, conflicts_with = "hex", help_heading = "Output")]
        raw: bool,
        /// How the value is printed.
        #[command(flatten)]
        payload: PayloadArgs,
    },

    /// Store a value; prints its new version. A failed --if-absent / --if-version condition
    /// fails with `conflict` and exits 1.
    Put {
        /// Cache name (created on first use by a dev broker).
        cache: String,
        /// Key.
        key: String,
        /// Value; `-` reads the value's bytes from stdin, exactly as given.
        value: String,
        /// Expire the entry after this many milliseconds [default: the cache's TTL].
        #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..))]
        ttl: Option<u64>,
        /// Only store when the key has no live entry.
        #[arg(long, conflicts_with = "if_version")]
        if_absent: bool,
        /// Only store when the live entry has this version (compare-and-set).
        #[arg(long, value_name = "V")]
        if_version: Option<u64>,
    },

    /// Delete a key; prints whether a live entry existed.
    #[command(visible_alias = "delete")]
    Del {
        /// Cache name.
        cache: String,
        /// Key.
        key: String,
    },

    /// Read several keys in one round trip; prints `key<TAB>value` per key (`(missing)` for
    /// a missing key).
    Mget {
        /// Cache name.
        cache: String,
        /// Keys.
        #[arg(required = true, value_name = "KEY")]
        keys: Vec<String>,
        /// How values are printed.
        #[command(flatten)]
        payload: PayloadArgs,
    },
}

/// `felix ping`.
#[derive(Debug, Args)]
pub struct PingArgs {
    /// Round trips to make.
    #[arg(long, short = 'c', value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub count: u32,
    /// Pause between round trips, in milliseconds.
    #[arg(long, short = 'i', value_name = "MS", default_value_t = 1000)]
    pub interval: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn start_positions() {
        assert_eq!(parse_start("latest"), Ok(Start::Latest));
        assert_eq!(parse_start("earliest"), Ok(Start::Earliest));
        assert_eq!(parse_start("42"), Ok(Start::Offset(42)));
        assert!(parse_start("-1").is_err());
        assert!(parse_start("soon").is_err());
    }

    #[test]
    fn global_options_after_subcommand() {
        let cli = Cli::try_parse_from([
            "felix", "sub", "orders", "--json", "-n", "ns1", "--addr", "a:1", "--addr", "b:2",
        ])
        .unwrap();
        assert!(cli.global.json);
        assert_eq!(cli.global.namespace, "ns1");
        assert_eq!(cli.global.addrs, ["a:1", "b:2"]);
    }

    #[test]
    fn conditional_put_options_conflict() {
        let r = Cli::try_parse_from([
            "felix",
            "cache",
            "put",
            "c",
            "k",
            "v",
            "--if-absent",
            "--if-version",
            "3",
        ]);
        assert!(r.is_err());
    }
}
