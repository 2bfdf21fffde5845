//! The 12-byte `FLX1` frame header, frame flags, and incremental frame assembly.
//!
//! Every message is `magic(4) version(2) flags(2) length(4)` followed by `length` payload
//! bytes, big-endian. The header is validated completely (magic, version, length against the
//! receiver's limit) before a single payload byte is buffered, so a hostile length can never
//! make a receiver allocate.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::WireError;

/// `FLX1` as a big-endian u32.
pub const MAGIC: u32 = 0x464C_5831;
/// The only protocol version on the wire; extensions are negotiated, not versioned.
pub const VERSION: u16 = 1;
/// Size of the fixed header.
pub const HEADER_LEN: usize = 12;
/// The usual payload limit of v1 peers (16 MiB).
pub const DEFAULT_MAX_FRAME: u32 = 16 * 1024 * 1024;

/// Frame flag bits: what the payload is.
pub mod flags {
    /// UTF-8 JSON object with a `type` field.
    pub const JSON: u16 = 0x0000;
    /// Binary publish batch.
    pub const PUBLISH_BATCH: u16 = 0x0001;
    /// Binary event batch for one subscription.
    pub const EVENT_BATCH: u16 = 0x0002;
    /// Binary event batch without a subscription id.
    pub const EVENT_BATCH_NO_SUB: u16 = 0x0004;
    /// With `PUBLISH_BATCH`: acknowledged publish (request id + ack mode prefix).
    pub const ACKED: u16 = 0x0008;
    /// Binary publish acknowledgement.
    pub const BINARY_ACK: u16 = 0x0010;
    /// Extension: binary request/response for hot operations (cache get/put/delete, errors).
    pub const EXT_BINARY: u16 = 0x0020;
    /// Extension: binary event batch carrying the stream name and one offset per event.
    pub const EVENT_BATCH_OFFSETS: u16 = 0x0040;
    /// The v1 baseline every peer understands.
    pub const V1_BASELINE: u16 = PUBLISH_BATCH | EVENT_BATCH | EVENT_BATCH_NO_SUB;
    /// Every flag v1 defines (`ACKED`/`BINARY_ACK` are accepted even when not negotiated).
    pub const V1_ALL: u16 = V1_BASELINE | ACKED | BINARY_ACK;
    /// Every flag this implementation understands.
    pub const ALL: u16 = V1_ALL | EXT_BINARY | EVENT_BATCH_OFFSETS;
    /// Every flags value a frame may carry, one per payload kind [`crate::decode`] knows;
    /// any other value is refused with `UnknownFlags`.
    pub const KINDS: [u16; 8] = [
        JSON,
        PUBLISH_BATCH,
        PUBLISH_BATCH | ACKED,
        EVENT_BATCH,
        EVENT_BATCH_NO_SUB,
        BINARY_ACK,
        EXT_BINARY,
        EVENT_BATCH_OFFSETS,
    ];
}

/// A validated frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Payload kind bits (see [`flags`]).
    pub flags: u16,
    /// Payload length in bytes.
    pub length: u32,
}

impl FrameHeader {
    /// Validates a header; rejects bad magic, unknown version and lengths above `max_len`.
    pub fn parse(bytes: &[u8; HEADER_LEN], max_len: u32) -> Result<Self, WireError> {
        let magic = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        if magic != MAGIC {
            return Err(WireError::BadMagic(magic));
        }
        let version = u16::from_be_bytes([bytes[4], bytes[5]]);
        if version != VERSION {
            return Err(WireError::UnsupportedVersion(version));
        }
        let flags = u16::from_be_bytes([bytes[6], bytes[7]]);
        let length = u32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
        if length > max_len {
            return Err(WireError::FrameTooLarge {
                len: length,
                max: max_len,
            });
        }
        Ok(Self { flags, length })
    }

    /// Writes the 12 header bytes.
    pub fn write(&self, out: &mut impl BufMut) {
        out.put_u32(MAGIC);
        out.put_u16(VERSION);
        out.put_u16(self.flags);
        out.put_u32(self.length);
    }
}

/// One frame: flags and the payload bytes (shared, never copied by the decoder).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Payload kind bits.
    pub flags: u16,
    /// The payload.
    pub payload: Bytes,
}

impl Frame {
    /// A frame with the given flags and payload.
    pub fn new(flags: u16, payload: Bytes) -> Self {
        Self { flags, payload }
    }

    /// Header plus payload as one contiguous buffer.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(HEADER_LEN + self.payload.len());
        self.write(&mut out);
        out.freeze()
    }

    /// Appends header plus payload to `out`.
    pub fn write(&self, out: &mut BytesMut) {
        FrameHeader {
            flags: self.flags,
            length: self.payload.len() as u32,
        }
        .write(out);
        out.extend_from_slice(&self.payload);
    }

    /// Decodes exactly one complete frame from `bytes` (header + payload, nothing after).
    pub fn decode_exact(bytes: &[u8], max_len: u32) -> Result<Frame, WireError> {
        let mut asm = FrameAssembler::new(max_len);
        asm.push(bytes);
        let frame = asm.next_frame()?.ok_or(WireError::Truncated("frame"))?;
        if asm.buffered() != 0 {
            return Err(WireError::TrailingBytes(asm.buffered()));
        }
        Ok(frame)
    }
}

/// Splits a byte stream into frames without I/O: push received bytes, pop whole frames.
///
/// The buffer holds what was pushed and not yet popped; the caller decides how much to push
/// (the I/O loop asks [`FrameAssembler::needed`] and [`FrameAssembler::pending_len`] to bound
/// it). Once a header is read, the buffer is sized for exactly that frame's payload, so a
/// large frame costs its length once instead of a doubling buffer's up to twice that. A
/// frame's payload is handed out as a zero-copy slice of the received buffer.
#[derive(Debug)]
pub struct FrameAssembler {
    buf: BytesMut,
    max_len: u32,
    pending: Option<FrameHeader>,
}

impl FrameAssembler {
    /// An assembler enforcing `max_len` on every payload.
    pub fn new(max_len: u32) -> Self {
        Self {
            buf: BytesMut::new(),
            max_len,
            pending: None,
        }
    }

    /// Changes the payload limit for headers not read yet (e.g. a small limit until a stream
    /// has authenticated, the full one after).
    pub fn set_max_len(&mut self, max_len: u32) {
        self.max_len = max_len;
    }

    /// The payload length of the frame whose header has been read and whose payload is not
    /// complete yet (`None` between frames).
    pub fn pending_len(&self) -> Option<usize> {
        self.pending.map(|h| h.length as usize)
    }

    /// Adds received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes buffered but not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// How many more bytes are needed before the next frame can complete (at least 1 when
    /// nothing is complete). Lets an I/O loop read exactly what is missing.
    pub fn needed(&self) -> usize {
        match self.pending {
            Some(h) => (h.length as usize).saturating_sub(self.buf.len()).max(1),
            None => HEADER_LEN.saturating_sub(self.buf.len()).max(1),
        }
    }

    /// Returns the next complete frame, `Ok(None)` when more bytes are needed, or the header
    /// error (after which the stream must be abandoned: framing is lost).
    pub fn next_frame(&mut self) -> Result<Option<Frame>, WireError> {
        if self.pending.is_none() {
            if self.buf.len() < HEADER_LEN {
                return Ok(None);
            }
            let mut h = [0u8; HEADER_LEN];
            h.copy_from_slice(&self.buf[..HEADER_LEN]);
            let header = FrameHeader::parse(&h, self.max_len)?;
            self.buf.advance(HEADER_LEN);
            self.pending = Some(header);
            // Room for exactly this payload now, rather than growing by doubling as it
            // arrives (which could hold twice the frame and copies it on every growth).
            let missing = (header.length as usize).saturating_sub(self.buf.len());
            if missing > 0 {
                self.buf.reserve(missing);
            }
        }
        let header = self.pending.expect("set above");
        if self.buf.len() < header.length as usize {
            return Ok(None);
        }
        self.pending = None;
        let payload = self.buf.split_to(header.length as usize).freeze();
        Ok(Some(Frame {
            flags: header.flags,
            payload,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(magic: u32, version: u16, flags: u16, len: u32) -> [u8; 12] {
        let mut b = BytesMut::new();
        b.put_u32(magic);
        b.put_u16(version);
        b.put_u16(flags);
        b.put_u32(len);
        b[..].try_into().unwrap()
    }

    #[test]
    fn bad_magic_is_rejected() {
        let err = FrameHeader::parse(&header(0xdead_beef, 1, 0, 1), 16).unwrap_err();
        assert_eq!(err, WireError::BadMagic(0xdead_beef));
    }

    #[test]
    fn unknown_version_is_rejected() {
        let err = FrameHeader::parse(&header(MAGIC, 2, 0, 1), 16).unwrap_err();
        assert_eq!(err, WireError::UnsupportedVersion(2));
    }

    #[test]
    fn huge_length_is_rejected_before_buffering() {
        let mut asm = FrameAssembler::new(1024);
        asm.push(&header(MAGIC, 1, 0, u32::MAX));
        assert_eq!(
            asm.next_frame().unwrap_err(),
            WireError::FrameTooLarge {
                len: u32::MAX,
                max: 1024
            }
        );
    }

    #[test]
    fn assembler_handles_byte_by_byte_input() {
        let f1 = Frame::new(0, Bytes::from_static(b"{\"type\":\"ok\"}")).to_bytes();
        let f2 = Frame::new(1, Bytes::from_static(b"xy")).to_bytes();
        let all = [f1.as_ref(), f2.as_ref()].concat();
        let mut asm = FrameAssembler::new(DEFAULT_MAX_FRAME);
        let mut frames = Vec::new();
        for b in all {
            asm.push(&[b]);
            while let Some(f) = asm.next_frame().unwrap() {
                frames.push(f);
            }
        }
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[1].payload.as_ref(), b"xy");
        assert_eq!(asm.buffered(), 0);
    }

    #[test]
    fn pending_len_and_a_lowered_limit_apply_to_the_next_header() {
        let mut asm = FrameAssembler::new(8);
        let f1 = Frame::new(0, Bytes::from_static(b"12345678")).to_bytes();
        asm.push(&f1[..HEADER_LEN + 2]);
        assert_eq!(asm.next_frame().unwrap(), None);
        assert_eq!(asm.pending_len(), Some(8));
        asm.push(&f1[HEADER_LEN + 2..]);
        assert_eq!(asm.next_frame().unwrap().unwrap().payload.len(), 8);
        assert_eq!(asm.pending_len(), None);
        asm.set_max_len(4);
        asm.push(&f1);
        assert_eq!(
            asm.next_frame().unwrap_err(),
            WireError::FrameTooLarge { len: 8, max: 4 }
        );
    }

    #[test]
    fn a_large_frame_is_buffered_in_one_exact_allocation() {
        let mut asm = FrameAssembler::new(DEFAULT_MAX_FRAME);
        let len = 1024 * 1024;
        asm.push(&header(MAGIC, 1, 0, len));
        assert_eq!(asm.next_frame().unwrap(), None);
        let cap = asm.buf.capacity();
        assert!(cap >= len as usize && cap < 2 * len as usize, "{cap}");
        for _ in 0..(len / 1000) {
            asm.push(&[7u8; 1000]);
        }
        asm.push(&vec![7u8; (len % 1000) as usize]);
        assert_eq!(
            asm.buf.capacity(),
            cap,
            "no regrowth while the payload arrives"
        );
        assert_eq!(
            asm.next_frame().unwrap().unwrap().payload.len(),
            len as usize
        );
    }

    #[test]
    fn needed_reports_missing_bytes() {
        let mut asm = FrameAssembler::new(100);
        assert_eq!(asm.needed(), 12);
        asm.push(&header(MAGIC, 1, 0, 5));
        assert_eq!(asm.next_frame().unwrap(), None);
        assert_eq!(asm.needed(), 5);
    }
}
