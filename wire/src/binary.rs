//! Binary frames: the v1 data plane (publish batch, acked publish, event batches, binary
//! ack) and our negotiated extensions (event batch with offsets, binary cache operations).
//!
//! Every count and length is checked against the bytes actually present before anything is
//! allocated, and payloads are zero-copy slices of the frame.

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::{ErrorCode, WireError};
use crate::frame::{flags, FrameHeader, HEADER_LEN};

/// Acknowledgement mode of a publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AckMode {
    /// No reply at all.
    None,
    /// One acknowledgement per message.
    PerMessage,
    /// One acknowledgement for the whole batch.
    PerBatch,
}

impl AckMode {
    /// Byte value in an acked binary publish (`None` has no byte form).
    pub fn to_byte(self) -> u8 {
        match self {
            AckMode::None => 0,
            AckMode::PerMessage => 1,
            AckMode::PerBatch => 2,
        }
    }

    /// Parses the byte form of an acked binary publish.
    pub fn from_byte(b: u8) -> Result<Self, WireError> {
        match b {
            1 => Ok(AckMode::PerMessage),
            2 => Ok(AckMode::PerBatch),
            _ => Err(WireError::InvalidValue("ack_mode")),
        }
    }
}

/// Checked big-endian reader over a frame payload.
#[derive(Debug)]
pub(crate) struct Reader {
    buf: Bytes,
    pos: usize,
}

impl Reader {
    pub(crate) fn new(buf: Bytes) -> Self {
        Self { buf, pos: 0 }
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&[u8], WireError> {
        if self.buf.len() - self.pos < n {
            return Err(WireError::Truncated(what));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, WireError> {
        Ok(self.take(1, what)?[0])
    }
    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16, WireError> {
        let s = self.take(2, what)?;
        Ok(u16::from_be_bytes([s[0], s[1]]))
    }
    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, WireError> {
        let s = self.take(4, what)?;
        Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }
    pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64, WireError> {
        let s = self.take(8, what)?;
        let mut b = [0u8; 8];
        b.copy_from_slice(s);
        Ok(u64::from_be_bytes(b))
    }
    /// Zero-copy slice of `n` bytes.
    pub(crate) fn bytes(&mut self, n: usize, what: &'static str) -> Result<Bytes, WireError> {
        if self.buf.len() - self.pos < n {
            return Err(WireError::Truncated(what));
        }
        let b = self.buf.slice(self.pos..self.pos + n);
        self.pos += n;
        Ok(b)
    }
    pub(crate) fn str16(&mut self, what: &'static str) -> Result<String, WireError> {
        let n = self.u16(what)? as usize;
        let s = self.take(n, what)?;
        std::str::from_utf8(s)
            .map(str::to_owned)
            .map_err(|_| WireError::InvalidUtf8(what))
    }
    pub(crate) fn bytes32(&mut self, what: &'static str) -> Result<Bytes, WireError> {
        let n = self.u32(what)? as usize;
        self.bytes(n, what)
    }
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    /// A declared element count is plausible only if each element's minimum size fits.
    pub(crate) fn check_count(
        &self,
        count: u32,
        min_each: usize,
        what: &'static str,
    ) -> Result<usize, WireError> {
        let count = count as usize;
        if count.saturating_mul(min_each) > self.remaining() {
            return Err(WireError::Truncated(what));
        }
        Ok(count)
    }
    pub(crate) fn finish(self) -> Result<(), WireError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(WireError::TrailingBytes(n)),
        }
    }
}

fn put_str16(out: &mut BytesMut, s: &str) {
    // Names are validated to be short; never let a longer one desynchronise the body.
    let s = truncate_utf8(s, u16::MAX as usize);
    out.put_u16(s.len() as u16);
    out.put_slice(s.as_bytes());
}

fn put_bytes32(out: &mut BytesMut, b: &[u8]) {
    out.put_u32(b.len() as u32);
    out.put_slice(b);
}

/// Starts a frame in `out` and returns the position of its length field to patch.
fn begin(out: &mut BytesMut, frame_flags: u16) -> usize {
    let start = out.len();
    FrameHeader {
        flags: frame_flags,
        length: 0,
    }
    .write(out);
    start
}

fn finish(out: &mut BytesMut, start: usize) {
    let len = (out.len() - start - HEADER_LEN) as u32;
    out[start + 8..start + 12].copy_from_slice(&len.to_be_bytes());
}

/// Binary publish batch (`0x0001`), optionally acknowledged (`0x0009`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishBatch {
    /// `Some((request_id, mode))` for the acked form.
    pub ack: Option<(u64, AckMode)>,
    /// Tenant.
    pub tenant_id: String,
    /// Namespace.
    pub namespace: String,
    /// Stream.
    pub stream: String,
    /// Message payloads, in order.
    pub payloads: Vec<Bytes>,
}

impl PublishBatch {
    /// Appends the framed encoding to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        Self::encode_parts(
            out,
            self.ack,
            &self.tenant_id,
            &self.namespace,
            &self.stream,
            &self.payloads,
        );
    }

    /// Encodes without building a `PublishBatch` (the client's hot path).
    ///
    /// `Some((_, AckMode::None))` is written as the unacknowledged `0x0001` form (ack mode
    /// `none` has no byte value in the acked form).
    pub fn encode_parts(
        out: &mut BytesMut,
        ack: Option<(u64, AckMode)>,
        tenant_id: &str,
        namespace: &str,
        stream: &str,
        payloads: &[Bytes],
    ) {
        // Ack mode `none` has no byte form: a publish nobody acknowledges is the plain frame.
        let ack = ack.filter(|(_, mode)| *mode != AckMode::None);
        let f = match ack {
            Some(_) => flags::PUBLISH_BATCH | flags::ACKED,
            None => flags::PUBLISH_BATCH,
        };
        let size: usize = payloads.iter().map(|p| 4 + p.len()).sum();
        out.reserve(
            HEADER_LEN + 9 + 6 + tenant_id.len() + namespace.len() + stream.len() + 4 + size,
        );
        let start = begin(out, f);
        if let Some((rid, mode)) = ack {
            out.put_u64(rid);
            out.put_u8(mode.to_byte());
        }
        put_str16(out, tenant_id);
        put_str16(out, namespace);
        put_str16(out, stream);
        out.put_u32(payloads.len() as u32);
        for p in payloads {
            put_bytes32(out, p);
        }
        finish(out, start);
    }

    /// Decodes a payload whose frame flags were `0x0001` or `0x0009`.
    pub fn decode(frame_flags: u16, payload: Bytes) -> Result<Self, WireError> {
        let mut r = Reader::new(payload);
        let ack = if frame_flags & flags::ACKED != 0 {
            let rid = r.u64("request_id")?;
            let mode = AckMode::from_byte(r.u8("ack_mode")?)?;
            Some((rid, mode))
        } else {
            None
        };
        let tenant_id = r.str16("tenant_id")?;
        let namespace = r.str16("namespace")?;
        let stream = r.str16("stream")?;
        let count = r.u32("count")?;
        let count = r.check_count(count, 4, "payloads")?;
        let mut payloads = Vec::with_capacity(count);
        for _ in 0..count {
            payloads.push(r.bytes32("payload")?);
        }
        r.finish()?;
        Ok(Self {
            ack,
            tenant_id,
            namespace,
            stream,
            payloads,
        })
    }
}

/// Binary event batch for one subscription (`0x0002`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventBatch {
    /// Subscription the events belong to.
    pub subscription_id: u64,
    /// Event payloads, in stream order.
    pub payloads: Vec<Bytes>,
}

impl EventBatch {
    /// Appends the framed encoding of a batch to `out`.
    pub fn encode_parts<'a>(
        out: &mut BytesMut,
        subscription_id: u64,
        payloads: impl ExactSizeIterator<Item = &'a [u8]>,
    ) {
        let start = begin(out, flags::EVENT_BATCH);
        out.put_u64(subscription_id);
        out.put_u32(payloads.len() as u32);
        for p in payloads {
            put_bytes32(out, p);
        }
        finish(out, start);
    }

    /// Decodes a `0x0002` payload.
    pub fn decode(payload: Bytes) -> Result<Self, WireError> {
        let mut r = Reader::new(payload);
        let subscription_id = r.u64("subscription_id")?;
        let count = r.u32("count")?;
        let count = r.check_count(count, 4, "events")?;
        let mut payloads = Vec::with_capacity(count);
        for _ in 0..count {
            payloads.push(r.bytes32("event")?);
        }
        r.finish()?;
        Ok(Self {
            subscription_id,
            payloads,
        })
    }

    /// Decodes a `0x0004` payload (no subscription id).
    pub fn decode_no_sub(payload: Bytes) -> Result<Vec<Bytes>, WireError> {
        let mut r = Reader::new(payload);
        let count = r.u32("count")?;
        let count = r.check_count(count, 4, "events")?;
        let mut payloads = Vec::with_capacity(count);
        for _ in 0..count {
            payloads.push(r.bytes32("event")?);
        }
        r.finish()?;
        Ok(payloads)
    }
}

/// Extension event batch (`0x0040`): one stream's events with their log offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetEventBatch {
    /// Subscription the events belong to.
    pub subscription_id: u64,
    /// Stream name (a wildcard subscription receives several streams).
    pub stream: String,
    /// (offset, payload) in offset order.
    pub events: Vec<(u64, Bytes)>,
}

impl OffsetEventBatch {
    /// Appends the framed encoding to `out`.
    pub fn encode_parts<'a>(
        out: &mut BytesMut,
        subscription_id: u64,
        stream: &str,
        events: impl ExactSizeIterator<Item = (u64, &'a [u8])>,
    ) {
        let start = begin(out, flags::EVENT_BATCH_OFFSETS);
        out.put_u64(subscription_id);
        put_str16(out, stream);
        out.put_u32(events.len() as u32);
        for (off, p) in events {
            out.put_u64(off);
            put_bytes32(out, p);
        }
        finish(out, start);
    }

    /// Decodes a `0x0040` payload.
    pub fn decode(payload: Bytes) -> Result<Self, WireError> {
        let mut r = Reader::new(payload);
        let subscription_id = r.u64("subscription_id")?;
        let stream = r.str16("stream")?;
        let count = r.u32("count")?;
        let count = r.check_count(count, 12, "events")?;
        let mut events = Vec::with_capacity(count);
        for _ in 0..count {
            let off = r.u64("offset")?;
            events.push((off, r.bytes32("event")?));
        }
        r.finish()?;
        Ok(Self {
            subscription_id,
            stream,
            events,
        })
    }
}

/// Binary publish acknowledgement (`0x0010`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinaryAck {
    /// Request being acknowledged.
    pub request_id: u64,
    /// `None` when the publish succeeded; the error otherwise.
    pub error: Option<AckError>,
}

/// The failure carried by a binary ack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckError {
    /// Human-readable message (v1).
    pub message: String,
    /// Stable code: only present when the error-code extension was negotiated.
    pub code: Option<ErrorCode>,
    /// Retryable flag travelling with `code`.
    pub retryable: bool,
}

impl BinaryAck {
    /// Appends the framed encoding. The code trailer (u16 code, u8 retryable) is written only
    /// when `with_code` is set, i.e. when the peer negotiated error codes.
    pub fn encode(&self, out: &mut BytesMut, with_code: bool) {
        let start = begin(out, flags::BINARY_ACK);
        match &self.error {
            None => {
                out.put_u8(0);
                out.put_u64(self.request_id);
                out.put_u16(0);
            }
            Some(e) => {
                out.put_u8(1);
                out.put_u64(self.request_id);
                let msg = truncate_utf8(&e.message, u16::MAX as usize);
                put_str16(out, msg);
                if with_code {
                    out.put_u16(e.code.unwrap_or(ErrorCode::Internal).as_u16());
                    out.put_u8(e.retryable as u8);
                }
            }
        }
        finish(out, start);
    }

    /// Decodes a `0x0010` payload, with or without the code trailer.
    pub fn decode(payload: Bytes) -> Result<Self, WireError> {
        let mut r = Reader::new(payload);
        let status = r.u8("status")?;
        let request_id = r.u64("request_id")?;
        let message = r.str16("message")?;
        let error = match status {
            0 => None,
            1 => {
                let (code, retryable) = if r.remaining() >= 3 {
                    let c = r.u16("code")?;
                    let retry = r.u8("retryable")? != 0;
                    (
                        Some(ErrorCode::from_u16(c).unwrap_or(ErrorCode::Internal)),
                        retry,
                    )
                } else {
                    (None, false)
                };
                Some(AckError {
                    message,
                    code,
                    retryable,
                })
            }
            _ => return Err(WireError::InvalidValue("ack status")),
        };
        r.finish()?;
        Ok(Self { request_id, error })
    }
}

/// Cuts a string to at most `max` bytes on a character boundary.
pub fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
