//! Running a parsed command: the connection context shared by every subcommand, and the
//! dispatch to the stream, queue, cache and ping commands.

pub mod admin;
mod cache;
mod login;
mod ping;
mod queue;
mod stream;

use std::time::{Duration, Instant};

use felix_client::{Client, ClientConfig, Tls};

use crate::args::{Cli, Command, GlobalArgs};
use crate::output::{Failure, Out, EXIT_INTERRUPTED, EXIT_UNAVAILABLE};

/// What a command runs with: the options, the output, and a client connected on first use
/// (so arguments are checked before any network work).
pub struct Ctx {
    global: GlobalArgs,
    /// Results go here.
    pub out: Out,
    client: Option<Client>,
    /// How long connecting took (set once connected).
    pub connect_time: Duration,
}

impl Ctx {
    /// The namespace every request names.
    pub fn namespace(&self) -> &str {
        &self.global.namespace
    }

    /// The tenant the command acts for.
    pub fn tenant(&self) -> &str {
        &self.global.tenant
    }

    /// The broker addresses, as given.
    pub fn addresses(&self) -> &[String] {
        &self.global.addrs
    }

    /// The connected client, connecting now if this is the first use.
    pub async fn client(&mut self) -> Result<Client, Failure> {
        if let Some(c) = &self.client {
            return Ok(c.clone());
        }
        let cfg = client_config(&self.global)?;
        let started = Instant::now();
        let client = Client::connect(cfg).await.map_err(|e| {
            Failure::from(e).context(format_args!(
                "connecting to {}",
                self.global.addrs.join(", ")
            ))
        })?;
        self.connect_time = started.elapsed();
        self.client = Some(client.clone());
        Ok(client)
    }

    /// Closes the connection (if any) and lets the close reach the broker.
    async fn close(&mut self) {
        if let Some(c) = self.client.take() {
            c.close();
            // The QUIC driver runs on this (single-threaded) runtime: give it a few turns to
            // send the close instead of leaving the broker to time the connection out.
            for _ in 0..8 {
                tokio::task::yield_now().await;
            }
        }
    }
}

/// The `--tenant` default (see `args`).
const DEFAULT_TENANT: &str = "default";

/// The client configuration for the global options. One connection with one request stream:
/// a CLI needs no parallelism, and a single ordered stream lets a final round trip confirm
/// that unacknowledged publishes were received.
fn client_config(g: &GlobalArgs) -> Result<ClientConfig, Failure> {
    let tls = if g.insecure_dev {
        Tls::InsecureDev
    } else {
        if !g.ca.exists() {
            return Err(Failure::new(
                "unavailable",
                format!(
                    "CA certificate {} does not exist (a dev broker writes it when it starts; \
                     otherwise pass --ca PATH, or --insecure-dev)",
                    g.ca.display()
                ),
                EXIT_UNAVAILABLE,
            ));
        }
        Tls::CaFile(g.ca.clone())
    };
    // No --token: the one `felix login` cached, for its tenant.
    let (mut tenant, mut token) = (g.tenant.clone(), g.token.clone());
    if token.is_none() {
        if let Some(c) = login::token_for(&g.tenant, g.tenant == DEFAULT_TENANT)? {
            (tenant, token) = (c.tenant, Some(c.token));
        }
    }
    let mut cfg = ClientConfig {
        addresses: g.addrs.clone(),
        server_name: g.server_name.clone(),
        tls,
        tenant,
        token,
        connections: 1,
        streams_per_connection: 1,
        ..ClientConfig::default()
    };
    if let Some(ms) = g.timeout {
        cfg.connect_timeout = Duration::from_millis(ms);
        cfg.request_timeout = Duration::from_millis(ms);
    }
    Ok(cfg)
}

async fn dispatch(ctx: &mut Ctx, command: Command) -> Result<(), Failure> {
    match command {
        Command::Pub(a) => stream::publish(ctx, a).await,
        Command::Sub(a) => stream::subscribe(ctx, a).await,
        Command::Queue(c) => queue::run(ctx, c).await,
        Command::Cache(c) => cache::run(ctx, c).await,
        Command::Ping(a) => ping::run(ctx, a).await,
        Command::Admin(a) => admin::run(ctx, a).await,
        Command::Login(a) => login::run(ctx, a).await,
    }
}

/// Runs the command; the connection is closed whatever the outcome.
pub async fn run(cli: Cli) -> Result<(), Failure> {
    let mut ctx = Ctx {
        out: Out::new(cli.global.json),
        global: cli.global,
        client: None,
        connect_time: Duration::ZERO,
    };
    // Ctrl-C ends the command (a subscription, a long poll) but still closes cleanly.
    let r = tokio::select! {
        r = dispatch(&mut ctx, cli.command) => r,
        _ = tokio::signal::ctrl_c() => Err(Failure::Quiet(EXIT_INTERRUPTED)),
    };
    // Results printed before a failure still reach stdout.
    let flushed = ctx.out.flush();
    ctx.close().await;
    r?;
    flushed.map_err(Failure::from)
}
