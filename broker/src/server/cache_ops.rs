//! Cache requests: v1 JSON (`cache_put` / `cache_get`), the cache extension (delete, CAS,
//! put-if-absent, multi-get, versions) and the binary fast path (`0x0020`).

use std::time::{Duration, Instant};

use bytes::Bytes;
use felix_wire::{
    features, CacheEntry as WireEntry, CacheTarget, ErrorCode, ExtFrame, Message, PutCond,
};

use super::request::{check_cap, memory_full, reply_result, Ctx};
use crate::auth::Action;
use crate::cache::{CacheError, PutCondition};
use crate::error::BrokerError;
use crate::registry::CacheEntry;

fn cache_error(e: CacheError) -> BrokerError {
    match e {
        CacheError::Conflict { current } => BrokerError::new(
            ErrorCode::Conflict,
            match current {
                Some(v) => format!("condition failed: current version is {v}"),
                None => "condition failed: key is absent".to_owned(),
            },
        ),
        other => BrokerError::invalid(other.to_string()),
    }
}

fn lookup(
    ctx: &mut Ctx,
    action: Action,
    tenant: &str,
    ns: &str,
    cache: &str,
) -> Result<std::sync::Arc<CacheEntry>, BrokerError> {
    ctx.authorize(action, tenant, ns, cache)?;
    ctx.cache_entry(tenant, ns, cache)
}

fn ttl(ms: Option<u64>) -> Option<Duration> {
    // 0 and null both mean "no explicit TTL": the cache's default applies.
    ms.filter(|ms| *ms > 0).map(Duration::from_millis)
}

fn get(ctx: &mut Ctx, t: &CacheTarget) -> Result<Option<(u64, Bytes)>, BrokerError> {
    let entry = lookup(ctx, Action::CacheRead, &t.tenant_id, &t.namespace, &t.cache)?;
    let v = entry.cache.get(&t.key, Instant::now());
    let m = &ctx.shared.metrics;
    match &v {
        Some(_) => m.cache_hits.inc(),
        None => m.cache_misses.inc(),
    }
    Ok(v.map(|v| (v.version, v.value)))
}

fn put(
    ctx: &mut Ctx,
    t: &CacheTarget,
    value: Bytes,
    ttl_ms: Option<u64>,
    cond: PutCond,
) -> Result<u64, BrokerError> {
    let entry = lookup(
        ctx,
        Action::CacheWrite,
        &t.tenant_id,
        &t.namespace,
        &t.cache,
    )?;
    ctx.quota_cache_put(&t.tenant_id, &t.namespace, &entry, &t.key, value.len())?;
    let cond = match cond {
        PutCond::Always => PutCondition::Always,
        PutCond::IfAbsent => PutCondition::IfAbsent,
        PutCond::IfVersion(v) => PutCondition::IfVersion(v),
    };
    entry
        .cache
        .put(&t.key, value, ttl(ttl_ms), cond, Instant::now())
        .map_err(|e| match e {
            CacheError::Overloaded { limit } => memory_full(&ctx.shared, limit),
            other => cache_error(other),
        })
}

fn delete(ctx: &mut Ctx, t: &CacheTarget) -> Result<bool, BrokerError> {
    let entry = lookup(
        ctx,
        Action::CacheWrite,
        &t.tenant_id,
        &t.namespace,
        &t.cache,
    )?;
    Ok(entry.cache.delete(&t.key, Instant::now()))
}

/// Binary extension frames.
pub async fn binary(
    ctx: &mut Ctx,
    f: ExtFrame,
    received: Instant,
) -> Result<(), quinn::WriteError> {
    let request_id = f.request_id();
    let r = if !ctx.session.has(features::BINARY_EXT) {
        Err(BrokerError::new(
            ErrorCode::Unsupported,
            "binary extension frames need the binary_ext feature",
        ))
    } else {
        match f {
            ExtFrame::CacheGet { request_id, target } => {
                get(ctx, &target).map(|value| ExtFrame::CacheValue { request_id, value })
            }
            ExtFrame::CachePut {
                request_id,
                target,
                ttl_ms,
                cond,
                value,
            } => put(ctx, &target, value, ttl_ms, cond).map(|version| ExtFrame::CacheOk {
                request_id,
                version,
            }),
            ExtFrame::CacheDelete { request_id, target } => {
                delete(ctx, &target).map(|existed| ExtFrame::CacheDeleted {
                    request_id,
                    existed,
                })
            }
            _ => Err(BrokerError::new(
                ErrorCode::Unsupported,
                "response frames are broker-to-client only",
            )),
        }
    };
    let reply = r.unwrap_or_else(|e| ExtFrame::Error {
        request_id,
        code: e.code,
        retryable: e.retryable,
        message: e.message,
    });
    reply.encode(&mut ctx.out);
    ctx.shared.metrics.cache_latency.observe(received.elapsed());
    ctx.flush().await
}

/// JSON cache requests.
pub async fn json(ctx: &mut Ctx, msg: Message, received: Instant) -> Result<(), quinn::WriteError> {
    let ext = ctx.session.has(features::CACHE_EXT);
    let (r, request_id) = match msg {
        Message::CacheGet {
            tenant_id,
            namespace,
            cache,
            key,
            request_id,
        } => {
            let t = CacheTarget {
                tenant_id,
                namespace,
                cache,
                key,
            };
            let r = get(ctx, &t).map(|v| Message::CacheValue {
                version: v.as_ref().filter(|_| ext).map(|(ver, _)| *ver),
                value: v.map(|(_, b)| b),
                tenant_id: t.tenant_id,
                namespace: t.namespace,
                cache: t.cache,
                key: t.key,
                request_id,
            });
            (r, request_id)
        }
        Message::CachePut {
            tenant_id,
            namespace,
            cache,
            key,
            value,
            request_id,
            ttl_ms,
            if_absent,
            if_version,
        } => {
            let t = CacheTarget {
                tenant_id,
                namespace,
                cache,
                key,
            };
            let cond = match (if_absent, if_version) {
                (Some(true), Some(_)) => {
                    let e = BrokerError::invalid("if_absent and if_version are exclusive");
                    return reply_result(ctx, Err(e), request_id).await;
                }
                (Some(true), None) => PutCond::IfAbsent,
                (_, Some(v)) => PutCond::IfVersion(v),
                _ => PutCond::Always,
            };
            let r = put(ctx, &t, value, ttl_ms, cond).map(|v| Message::CacheOk {
                request_id,
                version: ext.then_some(v),
            });
            (r, request_id)
        }
        Message::CacheDelete {
            tenant_id,
            namespace,
            cache,
            key,
            request_id,
        } => {
            let t = CacheTarget {
                tenant_id,
                namespace,
                cache,
                key,
            };
            let r = ctx
                .require(features::CACHE_EXT, "cache_delete")
                .and_then(|_| delete(ctx, &t))
                .map(|existed| Message::CacheDeleted {
                    request_id,
                    existed,
                });
            (r, Some(request_id))
        }
        Message::CacheGetMany {
            tenant_id,
            namespace,
            cache,
            keys,
            request_id,
        } => {
            let r = (|| {
                ctx.require(features::CACHE_EXT, "cache_get_many")?;
                let max = ctx.shared.cfg.limits.max_keys_per_request;
                if keys.len() > max {
                    ctx.shared.metrics.request_too_large.inc();
                    return Err(BrokerError::invalid(format!(
                        "cache_get_many with {} keys exceeds limits.max_keys_per_request ({max})",
                        keys.len()
                    )));
                }
                let entry = lookup(ctx, Action::CacheRead, &tenant_id, &namespace, &cache)?;
                let now = Instant::now();
                let values = keys
                    .into_iter()
                    .map(|key| {
                        let v = entry.cache.get(&key, now);
                        let m = &ctx.shared.metrics;
                        match &v {
                            Some(_) => m.cache_hits.inc(),
                            None => m.cache_misses.inc(),
                        }
                        WireEntry {
                            key,
                            version: v.as_ref().map(|v| v.version),
                            value: v.map(|v| v.value),
                        }
                    })
                    .collect();
                Ok(Message::CacheValues { request_id, values })
            })();
            (r, Some(request_id))
        }
        Message::CacheCreate {
            tenant_id,
            namespace,
            cache,
            request_id,
            max_bytes,
            default_ttl_ms,
        } => {
            let r = (|| {
                ctx.require(features::ADMIN, "cache_create")?;
                ctx.authorize(Action::Admin, &tenant_id, &namespace, &cache)?;
                let mut cfg = ctx.cache_base_config(&tenant_id, &namespace, &cache);
                if let Some(b) = max_bytes {
                    // Refused above the cap rather than clamped (see stream_create).
                    let cap = ctx.shared.cfg.limits.max_stream_bytes;
                    cfg.max_bytes = check_cap("max_bytes", b, cap, "max_stream_bytes")?;
                }
                if let Some(ms) = default_ttl_ms {
                    cfg.default_ttl = ttl(Some(ms));
                }
                ctx.shared
                    .registry
                    .create_cache(&tenant_id, &namespace, &cache, cfg)?;
                Ok(Message::Ok {
                    request_id: Some(request_id),
                })
            })();
            ctx.audit_admin("cache_create", &namespace, &cache, &r);
            (r, Some(request_id))
        }
        _ => unreachable!("routed by request::json"),
    };
    ctx.shared.metrics.cache_latency.observe(received.elapsed());
    reply_result(ctx, r, request_id).await
}
