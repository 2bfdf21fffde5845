//! Extension binary frames (`0x0020`, feature [`crate::features::BINARY_EXT`]): the hot
//! request/response operations in a compact form, so our own clients avoid JSON and base64
//! on the cache path.
//!
//! Layout: `u8 op`, `u64 request_id`, then the op's body (see `docs/wire-protocol.md`).

use bytes::{BufMut, Bytes, BytesMut};

use crate::binary::{truncate_utf8, Reader};
use crate::error::{ErrorCode, WireError};
use crate::frame::{flags, FrameHeader, HEADER_LEN};

/// Condition of a cache put.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutCond {
    /// Unconditional.
    Always,
    /// Only if no live entry exists.
    IfAbsent,
    /// Only if the live entry has this version.
    IfVersion(u64),
}

/// Op byte values.
pub mod op {
    /// Cache get request.
    pub const CACHE_GET: u8 = 0x01;
    /// Cache put request.
    pub const CACHE_PUT: u8 = 0x02;
    /// Cache delete request.
    pub const CACHE_DELETE: u8 = 0x03;
    /// Cache get response.
    pub const CACHE_VALUE: u8 = 0x81;
    /// Cache put response.
    pub const CACHE_OK: u8 = 0x82;
    /// Cache delete response.
    pub const CACHE_DELETED: u8 = 0x83;
    /// Error response to any extension request.
    pub const ERROR: u8 = 0xFF;
}

/// One extension binary frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtFrame {
    /// Read a key.
    CacheGet {
        /// Correlates the response.
        request_id: u64,
        /// Tenant, namespace, cache and key.
        target: CacheTarget,
    },
    /// Write a key.
    CachePut {
        /// Correlates the response.
        request_id: u64,
        /// Tenant, namespace, cache and key.
        target: CacheTarget,
        /// Time to live; `None` uses the cache's default.
        ttl_ms: Option<u64>,
        /// Write condition.
        cond: PutCond,
        /// The value.
        value: Bytes,
    },
    /// Delete a key.
    CacheDelete {
        /// Correlates the response.
        request_id: u64,
        /// Tenant, namespace, cache and key.
        target: CacheTarget,
    },
    /// Response to a get: `Some((version, value))` on a hit.
    CacheValue {
        /// Request answered.
        request_id: u64,
        /// Hit or miss.
        value: Option<(u64, Bytes)>,
    },
    /// Response to a put: the new version.
    CacheOk {
        /// Request answered.
        request_id: u64,
        /// Version assigned to the written value.
        version: u64,
    },
    /// Response to a delete.
    CacheDeleted {
        /// Request answered.
        request_id: u64,
        /// Whether a live entry existed.
        existed: bool,
    },
    /// Failure of any extension request.
    Error {
        /// Request answered.
        request_id: u64,
        /// Stable code.
        code: ErrorCode,
        /// Whether a retry may succeed.
        retryable: bool,
        /// Human-readable detail.
        message: String,
    },
}

/// Addresses one cache key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheTarget {
    /// Tenant.
    pub tenant_id: String,
    /// Namespace.
    pub namespace: String,
    /// Cache name.
    pub cache: String,
    /// Key.
    pub key: String,
}

/// A [`CacheTarget`] by reference: what the request encoders read, so that a caller holding
/// borrowed names encodes them without copying them into a `CacheTarget` first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheTargetRef<'a> {
    /// Tenant.
    pub tenant_id: &'a str,
    /// Namespace.
    pub namespace: &'a str,
    /// Cache name.
    pub cache: &'a str,
    /// Key.
    pub key: &'a str,
}

impl CacheTarget {
    /// This target by reference.
    pub fn borrowed(&self) -> CacheTargetRef<'_> {
        CacheTargetRef {
            tenant_id: &self.tenant_id,
            namespace: &self.namespace,
            cache: &self.cache,
            key: &self.key,
        }
    }
}

/// A cache request over borrowed parts, for [`encode_cache_request`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheRequest<'a> {
    /// As [`ExtFrame::CacheGet`].
    Get,
    /// As [`ExtFrame::CachePut`].
    Put {
        /// Time to live; `None` uses the cache's default.
        ttl_ms: Option<u64>,
        /// Write condition.
        cond: PutCond,
        /// The value.
        value: &'a [u8],
    },
    /// As [`ExtFrame::CacheDelete`].
    Delete,
}

/// Appends the framed encoding of a cache request: the same bytes as [`ExtFrame::encode`] of
/// the matching frame, without owning its names or value.
pub fn encode_cache_request(
    out: &mut BytesMut,
    request_id: u64,
    target: CacheTargetRef<'_>,
    request: CacheRequest<'_>,
) {
    framed(out, |out| {
        put_cache_request(out, request_id, target, request)
    });
}

/// Writes a `0x0020` frame header, the body `f` writes, then the body's length.
fn framed(out: &mut BytesMut, f: impl FnOnce(&mut BytesMut)) {
    let start = out.len();
    FrameHeader {
        flags: flags::EXT_BINARY,
        length: 0,
    }
    .write(out);
    f(out);
    let len = (out.len() - start - HEADER_LEN) as u32;
    out[start + 8..start + 12].copy_from_slice(&len.to_be_bytes());
}

fn put_cache_request(
    out: &mut BytesMut,
    request_id: u64,
    target: CacheTargetRef<'_>,
    request: CacheRequest<'_>,
) {
    let opcode = match request {
        CacheRequest::Get => op::CACHE_GET,
        CacheRequest::Put { .. } => op::CACHE_PUT,
        CacheRequest::Delete => op::CACHE_DELETE,
    };
    out.put_u8(opcode);
    out.put_u64(request_id);
    put_target(out, target);
    if let CacheRequest::Put {
        ttl_ms,
        cond,
        value,
    } = request
    {
        let (c, v) = match cond {
            PutCond::Always => (0, 0),
            PutCond::IfAbsent => (1, 0),
            PutCond::IfVersion(v) => (2, v),
        };
        out.put_u8(c);
        out.put_u64(v);
        out.put_u64(ttl_ms.unwrap_or(0));
        out.put_u32(value.len() as u32);
        out.put_slice(value);
    }
}

fn put_str16(out: &mut BytesMut, s: &str) {
    let s = truncate_utf8(s, u16::MAX as usize);
    out.put_u16(s.len() as u16);
    out.put_slice(s.as_bytes());
}

fn put_target(out: &mut BytesMut, t: CacheTargetRef<'_>) {
    put_str16(out, t.tenant_id);
    put_str16(out, t.namespace);
    put_str16(out, t.cache);
    put_str16(out, t.key);
}

fn read_target(r: &mut Reader) -> Result<CacheTarget, WireError> {
    Ok(CacheTarget {
        tenant_id: r.str16("tenant_id")?,
        namespace: r.str16("namespace")?,
        cache: r.str16("cache")?,
        key: r.str16("key")?,
    })
}

impl ExtFrame {
    /// Request id of any extension frame.
    pub fn request_id(&self) -> u64 {
        match self {
            ExtFrame::CacheGet { request_id, .. }
            | ExtFrame::CachePut { request_id, .. }
            | ExtFrame::CacheDelete { request_id, .. }
            | ExtFrame::CacheValue { request_id, .. }
            | ExtFrame::CacheOk { request_id, .. }
            | ExtFrame::CacheDeleted { request_id, .. }
            | ExtFrame::Error { request_id, .. } => *request_id,
        }
    }

    /// Appends the framed encoding to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        framed(out, |out| self.put_body(out));
    }

    fn put_body(&self, out: &mut BytesMut) {
        match self {
            ExtFrame::CacheGet { request_id, target } => {
                put_cache_request(out, *request_id, target.borrowed(), CacheRequest::Get);
            }
            ExtFrame::CachePut {
                request_id,
                target,
                ttl_ms,
                cond,
                value,
            } => {
                let request = CacheRequest::Put {
                    ttl_ms: *ttl_ms,
                    cond: *cond,
                    value,
                };
                put_cache_request(out, *request_id, target.borrowed(), request);
            }
            ExtFrame::CacheDelete { request_id, target } => {
                put_cache_request(out, *request_id, target.borrowed(), CacheRequest::Delete);
            }
            ExtFrame::CacheValue { request_id, value } => {
                out.put_u8(op::CACHE_VALUE);
                out.put_u64(*request_id);
                match value {
                    None => out.put_u8(0),
                    Some((version, v)) => {
                        out.put_u8(1);
                        out.put_u64(*version);
                        out.put_u32(v.len() as u32);
                        out.put_slice(v);
                    }
                }
            }
            ExtFrame::CacheOk {
                request_id,
                version,
            } => {
                out.put_u8(op::CACHE_OK);
                out.put_u64(*request_id);
                out.put_u64(*version);
            }
            ExtFrame::CacheDeleted {
                request_id,
                existed,
            } => {
                out.put_u8(op::CACHE_DELETED);
                out.put_u64(*request_id);
                out.put_u8(*existed as u8);
            }
            ExtFrame::Error {
                request_id,
                code,
                retryable,
                message,
            } => {
                out.put_u8(op::ERROR);
                out.put_u64(*request_id);
                out.put_u16(code.as_u16());
                out.put_u8(*retryable as u8);
                put_str16(out, message);
            }
        }
    }

    /// Decodes a `0x0020` payload.
    pub fn decode(payload: Bytes) -> Result<Self, WireError> {
        let mut r = Reader::new(payload);
        let opcode = r.u8("op")?;
        let request_id = r.u64("request_id")?;
        let f = match opcode {
            op::CACHE_GET => ExtFrame::CacheGet {
                request_id,
                target: read_target(&mut r)?,
            },
            op::CACHE_PUT => {
                let target = read_target(&mut r)?;
                let c = r.u8("condition")?;
                let v = r.u64("version")?;
                let cond = match c {
                    0 => PutCond::Always,
                    1 => PutCond::IfAbsent,
                    2 => PutCond::IfVersion(v),
                    _ => return Err(WireError::InvalidValue("condition")),
                };
                let ttl = r.u64("ttl_ms")?;
                let value = r.bytes32("value")?;
                ExtFrame::CachePut {
                    request_id,
                    target,
                    ttl_ms: (ttl != 0).then_some(ttl),
                    cond,
                    value,
                }
            }
            op::CACHE_DELETE => ExtFrame::CacheDelete {
                request_id,
                target: read_target(&mut r)?,
            },
            op::CACHE_VALUE => {
                let value = match r.u8("found")? {
                    0 => None,
                    1 => {
                        let version = r.u64("version")?;
                        Some((version, r.bytes32("value")?))
                    }
                    _ => return Err(WireError::InvalidValue("found")),
                };
                ExtFrame::CacheValue { request_id, value }
            }
            op::CACHE_OK => ExtFrame::CacheOk {
                request_id,
                version: r.u64("version")?,
            },
            op::CACHE_DELETED => ExtFrame::CacheDeleted {
                request_id,
                existed: match r.u8("existed")? {
                    0 => false,
                    1 => true,
                    _ => return Err(WireError::InvalidValue("existed")),
                },
            },
            op::ERROR => {
                let code = r.u16("code")?;
                let retryable = r.u8("retryable")? != 0;
                let message = r.str16("message")?;
                ExtFrame::Error {
                    request_id,
                    code: ErrorCode::from_u16(code).unwrap_or(ErrorCode::Internal),
                    retryable,
                    message,
                }
            }
            _ => return Err(WireError::InvalidValue("op")),
        };
        r.finish()?;
        Ok(f)
    }
}
