//! `felix admin`: the control plane's admin API (`docs/controlplane.md`) from a shell.
//!
//! - [`http`]: the client (token, TLS, deadlines, API errors);
//! - [`tenant`]: tenants and namespaces;
//! - [`defs`]: stream, cache and queue-group definitions;
//! - [`access`]: roles (grants checked locally first) and trusted issuers;
//! - [`ops`]: quotas, signing keys, revocations.
//!
//! Requests are blocking and run on a blocking thread; results are printed as a summary or,
//! with `--json`, the API's answer as one JSON line.

mod access;
mod defs;
mod http;
mod ops;
mod tenant;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::Value;

use super::Ctx;
use crate::output::{Failure, EXIT_OTHER};

/// Exit status when the control plane refused the request (its `error` is printed).
pub const EXIT_REFUSED: u8 = 1;

const ADMIN_HELP: &str = "\
The admin token is read from --admin-token-file (first non-empty line) or FELIX_ADMIN_TOKEN;
it is never taken as a flag value. A dev control plane needs none.

Exit status:
  0    success
  1    the control plane refused: error[<code>]: <error_description> (not_found, conflict,
       unauthorized, invalid_argument, ...)
  2    usage: bad option or argument, or a grant / rule refused locally before any request
  3    the control plane is unreachable or did not answer in time

Examples:
  felix admin tenant create acme --description 'Acme Inc'
  felix admin namespace create acme orders
  felix admin stream define acme orders payments --max-records 100000 --durability always
  felix admin role set acme orders-writer --grant 'publish,subscribe:orders/>'
  felix admin issuer set acme corp --url https://login.example.com/realms/acme \\
      --audience felix --rule 'groups=payments-admins:admin'
  felix admin tenant list --json
  felix admin revoke --subject acme/alice";

/// `felix admin`.
#[derive(Debug, Args)]
#[command(after_long_help = ADMIN_HELP, arg_required_else_help = true)]
pub struct AdminArgs {
    /// Where the control plane is and how to authenticate.
    #[command(flatten)]
    pub opts: AdminOpts,
    /// What to administer.
    #[command(subcommand)]
    pub command: AdminCommand,
}

/// Options of every `felix admin` command.
#[derive(Debug, Args)]
pub struct AdminOpts {
    /// Control plane base URL.
    #[arg(
        long,
        value_name = "URL",
        env = "FELIX_CONTROLPLANE_URL",
        default_value = "http://127.0.0.1:7700",
        global = true,
        help_heading = "Control plane"
    )]
    pub controlplane: String,

    /// File holding the admin token (else FELIX_ADMIN_TOKEN; never a flag value).
    #[arg(
        long,
        value_name = "PATH",
        env = "FELIX_ADMIN_TOKEN_FILE",
        global = true,
        help_heading = "Control plane"
    )]
    pub admin_token_file: Option<PathBuf>,

    /// CA certificate(s) (PEM) to verify an https control plane with a private CA.
    #[arg(
        long,
        value_name = "PATH",
        env = "FELIX_CONTROLPLANE_CA",
        global = true,
        help_heading = "Control plane"
    )]
    pub ca_file: Option<PathBuf>,
}

/// The admin subcommands.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Tenants: create, get, list, delete.
    #[command(subcommand)]
    Tenant(tenant::TenantCmd),
    /// Namespaces of a tenant: create, get, list, delete.
    #[command(subcommand)]
    Namespace(tenant::NamespaceCmd),
    /// Stream definitions: define, get, list, delete.
    #[command(subcommand)]
    Stream(defs::StreamCmd),
    /// Cache definitions: define, get, list, delete.
    #[command(subcommand)]
    Cache(defs::CacheCmd),
    /// Queue-group definitions (the stream must be defined): define, get, list, delete.
    #[command(subcommand)]
    Group(defs::GroupCmd),
    /// Roles: named sets of grants.
    #[command(subcommand)]
    Role(access::RoleCmd),
    /// Trusted OIDC issuers and their claim → role rules.
    #[command(subcommand)]
    Issuer(access::IssuerCmd),
    /// Per-tenant quotas (stored for brokers).
    #[command(subcommand)]
    Quota(ops::QuotaCmd),
    /// Felix signing keys: list, rotate.
    #[command(subcommand)]
    Keys(ops::KeysCmd),
    /// Revoke one token (--jti) or every token of a principal issued until now (--subject).
    Revoke(ops::RevokeArgs),
}

/// One result to print: a summary for people, the API's answer for `--json`.
pub struct Emit {
    pub text: String,
    pub json: Value,
}

/// Runs `felix admin ...`.
pub async fn run(ctx: &mut Ctx, a: AdminArgs) -> Result<(), Failure> {
    let timeout = ctx.global.timeout.map(Duration::from_millis);
    let emit = tokio::task::spawn_blocking(move || {
        let api = http::Api::new(&a.opts, timeout)?;
        match a.command {
            AdminCommand::Tenant(c) => tenant::tenant(&api, c),
            AdminCommand::Namespace(c) => tenant::namespace(&api, c),
            AdminCommand::Stream(c) => defs::stream(&api, c),
            AdminCommand::Cache(c) => defs::cache(&api, c),
            AdminCommand::Group(c) => defs::group(&api, c),
            AdminCommand::Role(c) => access::role(&api, c),
            AdminCommand::Issuer(c) => access::issuer(&api, c),
            AdminCommand::Quota(c) => ops::quota(&api, c),
            AdminCommand::Keys(c) => ops::keys(&api, c),
            AdminCommand::Revoke(r) => ops::revoke(&api, r),
        }
    })
    .await
    .map_err(|e| Failure::new("internal", format!("admin task: {e}"), EXIT_OTHER))??;
    ctx.out
        .emit(|| emit.text, || emit.json)
        .map_err(Failure::from)
}

/// `--if-match REV` of every write: a compare-and-set on the item's revision.
#[derive(Debug, Args)]
pub struct IfMatch {
    /// Only change the item if its revision is still REV (else `conflict`).
    #[arg(long, value_name = "REV")]
    pub if_match: Option<u64>,
}

/// A created / replaced item: "created KIND NAME (revision N)".
pub fn written(kind: &str, reply: http::Reply) -> Emit {
    let verb = if reply.status == 201 {
        "created"
    } else {
        "updated"
    };
    let name = reply.body["name"].as_str().unwrap_or("?");
    let rev = &reply.body["revision"];
    Emit {
        text: format!("{verb} {kind} {name} (revision {rev})"),
        json: reply.body,
    }
}

/// A deleted item.
pub fn deleted(kind: &str, name: &str) -> Emit {
    Emit {
        text: format!("deleted {kind} {name}"),
        json: serde_json::json!({"deleted": kind, "name": name}),
    }
}

/// One item: its name and revision, then one `key: value` line per other field.
pub fn item(reply: http::Reply) -> Emit {
    let v = reply.body;
    let mut text = format!(
        "{} (revision {})",
        v["name"].as_str().unwrap_or("?"),
        v["revision"]
    );
    if let Some(m) = v.as_object() {
        for (k, x) in m.iter().filter(|(k, _)| *k != "name" && *k != "revision") {
            text.push_str(&format!("\n  {k}: {}", scalar(x)));
        }
    }
    Emit { text, json: v }
}

/// A list `{revision, items}`: a NAME / REVISION / DETAILS table.
pub fn list(reply: http::Reply) -> Emit {
    let v = reply.body;
    let items = v["items"].as_array().cloned().unwrap_or_default();
    let rows: Vec<(String, String, String)> = items
        .iter()
        .map(|i| {
            let details = i
                .as_object()
                .map(|m| {
                    m.iter()
                        .filter(|(k, _)| *k != "name" && *k != "revision")
                        .map(|(k, x)| format!("{k}={}", scalar(x)))
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default();
            (
                i["name"].as_str().unwrap_or("?").to_owned(),
                i["revision"].to_string(),
                details,
            )
        })
        .collect();
    let w = rows.iter().map(|r| r.0.len()).max().unwrap_or(0).max(4);
    let mut text = format!("{:w$}  {:>8}  DETAILS", "NAME", "REVISION");
    for (n, r, d) in rows {
        text.push_str(&format!("\n{n:w$}  {r:>8}  {d}"));
    }
    if items.is_empty() {
        text = "(none)".to_owned();
    }
    Emit { text, json: v }
}

/// A JSON value in a summary: strings bare, everything else compact JSON.
fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
