//! Helpers shared by the integration tests (each test binary uses a subset).
#![allow(dead_code)]

use std::path::PathBuf;

use bytes::{BufMut, Bytes, BytesMut};
use felix_wire::frame::{flags, Frame, FrameHeader, DEFAULT_MAX_FRAME, HEADER_LEN};
use felix_wire::{decode, Decoded, WireError};

/// `wire/vectors/`.
pub fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("vectors")
}

/// Lowercase hex.
pub fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Parses hex (surrounding whitespace ignored).
pub fn from_hex(s: &str) -> Vec<u8> {
    let s = s.trim();
    assert_eq!(s.len() & 1, 0, "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit"))
        .collect()
}

/// Decodes one whole frame (header + payload, nothing after).
pub fn decode_bytes(bytes: &[u8]) -> Result<Decoded, WireError> {
    decode(Frame::decode_exact(bytes, DEFAULT_MAX_FRAME)?)
}

/// Builds a frame from flags and a raw payload.
pub fn raw_frame(frame_flags: u16, payload: &[u8]) -> Vec<u8> {
    Frame::new(frame_flags, Bytes::copy_from_slice(payload))
        .to_bytes()
        .to_vec()
}

/// The crate has no encoder for the `0x0004` batch (brokers do not send it); tests need one.
pub fn encode_events_no_sub(out: &mut BytesMut, payloads: &[Bytes]) {
    let mut body = BytesMut::new();
    body.put_u32(payloads.len() as u32);
    for p in payloads {
        body.put_u32(p.len() as u32);
        body.put_slice(p);
    }
    FrameHeader {
        flags: flags::EVENT_BATCH_NO_SUB,
        length: body.len() as u32,
    }
    .write(out);
    out.put_slice(&body);
}

/// Re-encodes a decoded value with the crate's encoders. Binary acks are written with the
/// code trailer exactly when the decoded error carries a code.
pub fn encode_decoded(d: &Decoded) -> Bytes {
    let mut out = BytesMut::new();
    match d {
        Decoded::Json(m) => m.encode(&mut out),
        Decoded::Publish(p) => p.encode(&mut out),
        Decoded::Events(e) => felix_wire::EventBatch::encode_parts(
            &mut out,
            e.subscription_id,
            e.payloads.iter().map(|p| p.as_ref()),
        ),
        Decoded::EventsNoSub(p) => encode_events_no_sub(&mut out, p),
        Decoded::Ack(a) => {
            let with_code = a.error.as_ref().is_some_and(|e| e.code.is_some());
            a.encode(&mut out, with_code)
        }
        Decoded::Ext(x) => x.encode(&mut out),
        Decoded::OffsetEvents(e) => felix_wire::OffsetEventBatch::encode_parts(
            &mut out,
            e.subscription_id,
            &e.stream,
            e.events.iter().map(|(o, p)| (*o, p.as_ref())),
        ),
    }
    debug_assert!(out.len() >= HEADER_LEN);
    out.freeze()
}
