//! The cache API: get, put with TTL, delete, put-if-absent, compare-and-set, multi-get.
//!
//! The binary extension is used when the broker offers it (no JSON or base64 on this path);
//! plain v1 JSON otherwise, for get and put.

use std::time::Duration;

use bytes::Bytes;
use felix_wire::{
    encode_cache_request, features, CacheRequest, CacheTargetRef, ExtFrame, Message, PutCond,
};

use crate::client::Client;
use crate::conn::{json_frame, Negotiated, Reply};
use crate::error::{Error, Result};

/// A cached value and its version (for compare-and-set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheValue {
    /// The value.
    pub value: Bytes,
    /// Version assigned when it was written (0 from a v1 broker).
    pub version: u64,
}

/// Condition of a put.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutCondition {
    /// Always write.
    Always,
    /// Only when no live entry exists.
    IfAbsent,
    /// Only when the live entry has this version.
    IfVersion(u64),
}

pub(crate) fn ttl_ms(ttl: Option<Duration>) -> Result<Option<u64>> {
    match ttl {
        Some(d) if d.is_zero() => Err(Error::InvalidArgument("ttl must be positive".into())),
        Some(d) => Ok(Some(d.as_millis().max(1) as u64)),
        None => Ok(None),
    }
}

fn unexpected(r: Reply) -> Error {
    Error::Protocol(format!("unexpected reply {r:?}"))
}

impl Client {
    pub(crate) fn target<'a>(
        &'a self,
        namespace: &'a str,
        cache: &'a str,
        key: &'a str,
    ) -> CacheTargetRef<'a> {
        CacheTargetRef {
            tenant_id: self.tenant(),
            namespace,
            cache,
            key,
        }
    }

    /// Reads a key; `None` when missing or expired.
    pub async fn cache_get(
        &self,
        namespace: &str,
        cache: &str,
        key: &str,
    ) -> Result<Option<CacheValue>> {
        let t = self.target(namespace, cache, key);
        get_reply(
            self.call(Duration::ZERO, |rid, n| get_frame(t, rid, n))
                .await?,
        )
    }

    /// Writes a key; `ttl` `None` uses the cache's default. Returns the new version.
    pub async fn cache_put(
        &self,
        namespace: &str,
        cache: &str,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> Result<u64> {
        self.cache_put_if(namespace, cache, key, value, ttl, PutCondition::Always)
            .await
    }

    /// Writes a key only if `cond` holds; a failed condition is `Error::Broker` with code
    /// `conflict`.
    pub async fn cache_put_if(
        &self,
        namespace: &str,
        cache: &str,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
        cond: PutCondition,
    ) -> Result<u64> {
        let ttl_ms = ttl_ms(ttl)?;
        let t = self.target(namespace, cache, key);
        put_reply(
            self.call(Duration::ZERO, |rid, n| {
                put_frame(t, ttl_ms, cond, value, rid, n)
            })
            .await?,
        )
    }

    /// Deletes a key; returns whether a live entry existed.
    pub async fn cache_delete(&self, namespace: &str, cache: &str, key: &str) -> Result<bool> {
        let t = self.target(namespace, cache, key);
        delete_reply(
            self.call(Duration::ZERO, |rid, n| delete_frame(t, rid, n))
                .await?,
        )
    }

    /// Reads several keys in one round trip; results are in the order of `keys`.
    pub async fn cache_get_many(
        &self,
        namespace: &str,
        cache: &str,
        keys: &[&str],
    ) -> Result<Vec<Option<CacheValue>>> {
        let tenant = self.tenant().to_owned();
        let r = self
            .call(Duration::ZERO, |rid, n| {
                Self::require(n, features::CACHE_EXT, "multi-get")?;
                let m = Message::CacheGetMany {
                    tenant_id: tenant,
                    namespace: namespace.into(),
                    cache: cache.into(),
                    keys: keys.iter().map(|k| (*k).to_owned()).collect(),
                    request_id: rid,
                };
                Ok((json_frame(&m), 1))
            })
            .await?;
        match r {
            Reply::Json(Message::CacheValues { values, .. }) => Ok(values
                .into_iter()
                .map(|e| {
                    e.value.map(|value| CacheValue {
                        value,
                        version: e.version.unwrap_or(0),
                    })
                })
                .collect()),
            other => Err(unexpected(other)),
        }
    }

    /// Creates a cache with a byte budget and default TTL (idempotent for equal settings).
    pub async fn create_cache(
        &self,
        namespace: &str,
        cache: &str,
        max_bytes: Option<u64>,
        default_ttl: Option<Duration>,
    ) -> Result<()> {
        let tenant = self.tenant().to_owned();
        let default_ttl_ms = ttl_ms(default_ttl)?;
        self.call(Duration::ZERO, |rid, n| {
            Self::require(n, features::ADMIN, "cache creation")?;
            let m = Message::CacheCreate {
                tenant_id: tenant,
                namespace: namespace.into(),
                cache: cache.into(),
                request_id: rid,
                max_bytes,
                default_ttl_ms,
            };
            Ok((json_frame(&m), 1))
        })
        .await
        .map(|_| ())
    }
}

// Frames and reply readings of the single-key operations, shared by the async calls above and
// their direct forms (`crate::direct`).

/// Encodes a single-key cache request: the binary extension from the borrowed names when the
/// broker offers it, else v1 JSON (`json`, given owned names).
fn cache_frame(
    t: CacheTargetRef<'_>,
    rid: u64,
    n: &Negotiated,
    request: CacheRequest<'_>,
    json: impl FnOnce(String, String, String, String) -> Message,
) -> Bytes {
    if n.has(features::BINARY_EXT) {
        let value_len = match request {
            CacheRequest::Put { value, .. } => value.len(),
            _ => 0,
        };
        let mut out = bytes::BytesMut::with_capacity(96 + t.key.len() + value_len);
        encode_cache_request(&mut out, rid, t, request);
        out.freeze()
    } else {
        json_frame(&json(
            t.tenant_id.into(),
            t.namespace.into(),
            t.cache.into(),
            t.key.into(),
        ))
    }
}

pub(crate) fn get_frame(t: CacheTargetRef<'_>, rid: u64, n: &Negotiated) -> Result<(Bytes, u32)> {
    let frame = cache_frame(
        t,
        rid,
        n,
        CacheRequest::Get,
        |tenant_id, namespace, cache, key| Message::CacheGet {
            tenant_id,
            namespace,
            cache,
            key,
            request_id: Some(rid),
        },
    );
    Ok((frame, 1))
}

pub(crate) fn get_reply(r: Reply) -> Result<Option<CacheValue>> {
    match r {
        Reply::Ext(ExtFrame::CacheValue { value, .. }) => {
            Ok(value.map(|(version, value)| CacheValue { value, version }))
        }
        Reply::Json(Message::CacheValue { value, version, .. }) => {
            Ok(value.map(|value| CacheValue {
                value,
                version: version.unwrap_or(0),
            }))
        }
        other => Err(unexpected(other)),
    }
}

pub(crate) fn put_frame(
    t: CacheTargetRef<'_>,
    ttl_ms: Option<u64>,
    cond: PutCondition,
    value: Bytes,
    rid: u64,
    n: &Negotiated,
) -> Result<(Bytes, u32)> {
    if cond != PutCondition::Always {
        Client::require(n, features::CACHE_EXT, "conditional puts")?;
    }
    let request = CacheRequest::Put {
        ttl_ms,
        cond: match cond {
            PutCondition::Always => PutCond::Always,
            PutCondition::IfAbsent => PutCond::IfAbsent,
            PutCondition::IfVersion(v) => PutCond::IfVersion(v),
        },
        value: &value,
    };
    let frame = cache_frame(t, rid, n, request, |tenant_id, namespace, cache, key| {
        Message::CachePut {
            tenant_id,
            namespace,
            cache,
            key,
            value: value.clone(),
            request_id: Some(rid),
            ttl_ms,
            if_absent: (cond == PutCondition::IfAbsent).then_some(true),
            if_version: match cond {
                PutCondition::IfVersion(v) => Some(v),
                _ => None,
            },
        }
    });
    Ok((frame, 1))
}

pub(crate) fn put_reply(r: Reply) -> Result<u64> {
    match r {
        Reply::Ext(ExtFrame::CacheOk { version, .. }) => Ok(version),
        Reply::Json(Message::CacheOk { version, .. }) => Ok(version.unwrap_or(0)),
        other => Err(unexpected(other)),
    }
}

pub(crate) fn delete_frame(
    t: CacheTargetRef<'_>,
    rid: u64,
    n: &Negotiated,
) -> Result<(Bytes, u32)> {
    Client::require(n, features::CACHE_EXT, "cache delete")?;
    let frame = cache_frame(
        t,
        rid,
        n,
        CacheRequest::Delete,
        |tenant_id, namespace, cache, key| Message::CacheDelete {
            tenant_id,
            namespace,
            cache,
            key,
            request_id: rid,
        },
    );
    Ok((frame, 1))
}

pub(crate) fn delete_reply(r: Reply) -> Result<bool> {
    match r {
        Reply::Ext(ExtFrame::CacheDeleted { existed, .. }) => Ok(existed),
        Reply::Json(Message::CacheDeleted { existed, .. }) => Ok(existed),
        other => Err(unexpected(other)),
    }
}
