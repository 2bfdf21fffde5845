//! `felix admin stream|cache|group define|get|list|delete`: the definitions the control plane
//! stores for brokers, with the fields its API takes (`docs/controlplane.md`). Fields not
//! given are left out, so the broker's defaults apply.

use clap::{Args, Subcommand};
use serde_json::{Map, Value};
use ureq::http::Method;

use super::http::{seg, Api};
use super::{deleted, item, list, written, Emit, IfMatch};
use crate::output::Failure;

/// Which definition: tenant, namespace, name.
#[derive(Debug, Args)]
pub struct Target {
    /// Tenant.
    pub tenant: String,
    /// Namespace.
    pub namespace: String,
    /// Name: dot-separated tokens, 1-255 bytes.
    pub name: String,
}

/// `felix admin stream define` fields.
#[derive(Debug, Args)]
pub struct StreamFields {
    /// Records retained.
    #[arg(long)]
    max_records: Option<u64>,
    /// Bytes retained.
    #[arg(long)]
    max_bytes: Option<u64>,
    /// Events buffered per subscriber.
    #[arg(long)]
    subscriber_buffer: Option<u64>,
    /// What a full subscriber buffer does.
    #[arg(long, value_parser = ["block", "drop_newest", "drop_oldest", "disconnect"])]
    full_policy: Option<String>,
    /// How publishes are made durable.
    #[arg(long, value_parser = ["memory", "interval", "always"])]
    durability: Option<String>,
}

/// `felix admin cache define` fields.
#[derive(Debug, Args)]
pub struct CacheFields {
    /// Bytes the cache may hold.
    #[arg(long)]
    max_bytes: Option<u64>,
    /// Time to live of entries put without one, in milliseconds.
    #[arg(long)]
    default_ttl_ms: Option<u64>,
}

/// `felix admin group define` fields.
#[derive(Debug, Args)]
pub struct GroupFields {
    /// The stream the group consumes (must be defined).
    #[arg(long)]
    stream: String,
    /// Where a new group starts: earliest, latest or an offset.
    #[arg(long, value_name = "earliest|latest|OFFSET")]
    start: Option<String>,
    /// Milliseconds before an unacknowledged message is delivered again.
    #[arg(long)]
    ack_timeout_ms: Option<u64>,
    /// Deliveries before a message goes to the dead letters.
    #[arg(long)]
    max_deliveries: Option<u64>,
}

/// A JSON object of the fields that were given.
fn object(fields: &[(&str, Option<Value>)]) -> Value {
    let mut m = Map::new();
    for (k, v) in fields {
        if let Some(v) = v {
            m.insert((*k).to_owned(), v.clone());
        }
    }
    Value::Object(m)
}

trait Body {
    fn body(&self) -> Result<Value, Failure>;
}

impl Body for StreamFields {
    fn body(&self) -> Result<Value, Failure> {
        Ok(object(&[
            ("max_records", self.max_records.map(Value::from)),
            ("max_bytes", self.max_bytes.map(Value::from)),
            ("subscriber_buffer", self.subscriber_buffer.map(Value::from)),
            ("full_policy", self.full_policy.clone().map(Value::from)),
            ("durability", self.durability.clone().map(Value::from)),
        ]))
    }
}

impl Body for CacheFields {
    fn body(&self) -> Result<Value, Failure> {
        Ok(object(&[
            ("max_bytes", self.max_bytes.map(Value::from)),
            ("default_ttl_ms", self.default_ttl_ms.map(Value::from)),
        ]))
    }
}

impl Body for GroupFields {
    fn body(&self) -> Result<Value, Failure> {
        let start = match self.start.as_deref() {
            None => None,
            Some(s @ ("earliest" | "latest")) => Some(Value::from(s)),
            Some(s) => Some(Value::from(s.parse::<u64>().map_err(|_| {
                Failure::usage(format!(
                    "--start {s:?}: expected earliest, latest or an offset"
                ))
            })?)),
        };
        Ok(object(&[
            ("stream", Some(Value::from(self.stream.clone()))),
            ("start", start),
            ("ack_timeout_ms", self.ack_timeout_ms.map(Value::from)),
            ("max_deliveries", self.max_deliveries.map(Value::from)),
        ]))
    }
}

/// What to do with a definition, whatever its kind.
enum Op<'a> {
    Define(Target, &'a dyn Body, Option<u64>),
    Get(Target),
    List(String, String),
    Delete(Target),
}

macro_rules! def_cmd {
    ($cmd:ident, $fields:ty, $what:literal) => {
        #[doc = "The subcommands of one definition kind."]
        #[derive(Debug, Subcommand)]
        pub enum $cmd {
            /// Define (create or replace) one.
            Define {
                #[command(flatten)]
                at: Target,
                #[command(flatten)]
                fields: $fields,
                #[command(flatten)]
                if_match: IfMatch,
            },
            /// Show one.
            Get {
                #[command(flatten)]
                at: Target,
            },
            /// List those of a namespace.
            List {
                /// Tenant.
                tenant: String,
                /// Namespace.
                namespace: String,
            },
            /// Delete one.
            Delete {
                #[command(flatten)]
                at: Target,
            },
        }

        impl $cmd {
            fn run(self, api: &Api, kind: &str) -> Result<Emit, Failure> {
                match self {
                    $cmd::Define {
                        at,
                        fields,
                        if_match,
                    } => exec(api, kind, Op::Define(at, &fields, if_match.if_match)),
                    $cmd::Get { at } => exec(api, kind, Op::Get(at)),
                    $cmd::List { tenant, namespace } => {
                        exec(api, kind, Op::List(tenant, namespace))
                    }
                    $cmd::Delete { at } => exec(api, kind, Op::Delete(at)),
                }
            }
        }
    };
}

def_cmd!(StreamCmd, StreamFields, "stream");
def_cmd!(CacheCmd, CacheFields, "cache");
def_cmd!(GroupCmd, GroupFields, "group");

pub fn stream(api: &Api, c: StreamCmd) -> Result<Emit, Failure> {
    c.run(api, "stream")
}

pub fn cache(api: &Api, c: CacheCmd) -> Result<Emit, Failure> {
    c.run(api, "cache")
}

pub fn group(api: &Api, c: GroupCmd) -> Result<Emit, Failure> {
    c.run(api, "group")
}

fn collection(tenant: &str, namespace: &str, kind: &str) -> Result<String, Failure> {
    Ok(format!(
        "/v1/tenants/{}/namespaces/{}/{kind}s",
        seg(tenant)?,
        seg(namespace)?
    ))
}

fn path(at: &Target, kind: &str) -> Result<String, Failure> {
    Ok(format!(
        "{}/{}",
        collection(&at.tenant, &at.namespace, kind)?,
        seg(&at.name)?
    ))
}

fn exec(api: &Api, kind: &str, op: Op<'_>) -> Result<Emit, Failure> {
    match op {
        Op::Define(at, fields, if_match) => {
            let body = fields.body()?;
            let r = api.call(Method::PUT, &path(&at, kind)?, Some(&body), if_match)?;
            Ok(written(kind, r))
        }
        Op::Get(at) => Ok(item(api.call(
            Method::GET,
            &path(&at, kind)?,
            None,
            None,
        )?)),
        Op::List(t, ns) => Ok(list(api.call(
            Method::GET,
            &collection(&t, &ns, kind)?,
            None,
            None,
        )?)),
        Op::Delete(at) => {
            api.call(Method::DELETE, &path(&at, kind)?, None, None)?;
            Ok(deleted(
                kind,
                &format!("{}/{}/{}", at.tenant, at.namespace, at.name),
            ))
        }
    }
}
