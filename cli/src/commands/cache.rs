//! `felix cache ...`: get, put, delete and multi-get.

use std::time::Duration;

use bytes::Bytes;
use felix_client::{CacheValue, PutCondition};
use serde_json::json;
use tokio::io::AsyncReadExt as _;

use super::Ctx;
use crate::args::CacheCommand;
use crate::output::{b64, payload_text, Failure, EXIT_NEGATIVE};

/// Runs one cache subcommand.
pub async fn run(ctx: &mut Ctx, cmd: CacheCommand) -> Result<(), Failure> {
    match cmd {
        CacheCommand::Get {
            cache,
            key,
            raw,
            payload,
        } => {
            let client = ctx.client().await?;
            let found = client.cache_get(ctx.namespace(), &cache, &key).await?;
            let out = &mut ctx.out;
            match found {
                Some(v) if raw && !out.is_json() => out.raw(&v.value)?,
                Some(v) => out.emit(
                    || payload_text(&v.value, payload.hex),
                    || entry_json(&key, Some(&v)),
                )?,
                None if out.is_json() => {
                    out.emit(String::new, || entry_json(&key, None))?;
                    return Err(Failure::Quiet(EXIT_NEGATIVE));
                }
                None => {
                    return Err(Failure::new(
                        "not_found",
                        format!("no key {key:?} in cache {cache:?}"),
                        EXIT_NEGATIVE,
                    ))
                }
            }
        }
        CacheCommand::Put {
            cache,
            key,
            value,
            ttl,
            if_absent,
            if_version,
        } => {
            let cond = match (if_absent, if_version) {
                (true, _) => PutCondition::IfAbsent,
                (false, Some(v)) => PutCondition::IfVersion(v),
                (false, None) => PutCondition::Always,
            };
            let value = if value == "-" {
                let mut buf = Vec::new();
                tokio::io::stdin().read_to_end(&mut buf).await?;
                Bytes::from(buf)
            } else {
                Bytes::from(value.into_bytes())
            };
            let client = ctx.client().await?;
            let version = client
                .cache_put_if(
                    ctx.namespace(),
                    &cache,
                    &key,
                    value,
                    ttl.map(Duration::from_millis),
                    cond,
                )
                .await?;
            ctx.out.emit(
                || format!("version {version}"),
                || json!({ "key": key, "version": version }),
            )?;
        }
        CacheCommand::Del { cache, key } => {
            let client = ctx.client().await?;
            let existed = client.cache_delete(ctx.namespace(), &cache, &key).await?;
            ctx.out.emit(
                || format!("existed: {existed}"),
                || json!({ "key": key, "existed": existed }),
            )?;
        }
        CacheCommand::Mget {
            cache,
            keys,
            payload,
        } => {
            let client = ctx.client().await?;
            let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
            let values = client
                .cache_get_many(ctx.namespace(), &cache, &refs)
                .await?;
            for (key, v) in keys.iter().zip(&values) {
                ctx.out.emit(
                    || match v {
                        Some(v) => format!("{key}\t{}", payload_text(&v.value, payload.hex)),
                        None => format!("{key}\t(missing)"),
                    },
                    || entry_json(key, v.as_ref()),
                )?;
            }
        }
    }
    Ok(())
}

/// `{"key","found","version","value_b64"}` (only `key` and `found` when missing).
fn entry_json(key: &str, v: Option<&CacheValue>) -> serde_json::Value {
    match v {
        Some(v) => json!({
            "key": key,
            "found": true,
            "version": v.version,
            "value_b64": b64(&v.value),
        }),
        None => json!({ "key": key, "found": false }),
    }
}
