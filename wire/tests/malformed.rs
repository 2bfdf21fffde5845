//! Negative tests: every way a frame can be wrong gives the expected [`WireError`] and
//! stable [`ErrorCode`], without panicking and without allocating for declared sizes.

mod common;

use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use common::{decode_bytes, raw_frame};
use felix_wire::frame::{flags, Frame, FrameAssembler, FrameHeader, DEFAULT_MAX_FRAME, MAGIC};
use felix_wire::{
    decode, BinaryAck, ErrorCode, EventBatch, ExtFrame, Message, OffsetEventBatch, PublishBatch,
    WireError,
};

fn header(magic: u32, version: u16, frame_flags: u16, len: u32) -> Vec<u8> {
    let mut b = BytesMut::new();
    b.put_u32(magic);
    b.put_u16(version);
    b.put_u16(frame_flags);
    b.put_u32(len);
    b.to_vec()
}

fn err_of(bytes: &[u8]) -> WireError {
    decode_bytes(bytes).expect_err("must be rejected")
}

fn decode_payload(frame_flags: u16, payload: &[u8]) -> Result<felix_wire::Decoded, WireError> {
    decode(Frame::new(frame_flags, Bytes::copy_from_slice(payload)))
}

fn str16(b: &mut BytesMut, s: &[u8]) {
    b.put_u16(s.len() as u16);
    b.put_slice(s);
}

fn valid_publish(ack: bool) -> Bytes {
    let mut out = BytesMut::new();
    PublishBatch::encode_parts(
        &mut out,
        ack.then_some((1, felix_wire::AckMode::PerBatch)),
        "t",
        "ns",
        "s",
        &[Bytes::from_static(b"hello")],
    );
    out.freeze()
}

// --- header ----------------------------------------------------------------------------------

#[test]
fn bad_magic() {
    let mut f = raw_frame(flags::JSON, br#"{"type":"ok"}"#);
    f[0..4].copy_from_slice(b"HTTP");
    let e = err_of(&f);
    assert_eq!(e, WireError::BadMagic(u32::from_be_bytes(*b"HTTP")));
    assert_eq!(e.code(), ErrorCode::Protocol);
}

#[test]
fn unknown_version() {
    for version in [0u16, 2, 0xffff] {
        let mut f = header(MAGIC, version, 0, 13);
        f.extend_from_slice(br#"{"type":"ok"}"#);
        let e = err_of(&f);
        assert_eq!(e, WireError::UnsupportedVersion(version));
        assert_eq!(e.code(), ErrorCode::Protocol);
    }
}

#[test]
fn length_above_limit_is_rejected_before_buffering() {
    let mut asm = FrameAssembler::new(1024);
    asm.push(&header(MAGIC, 1, 0, 1025));
    let e = asm.next_frame().unwrap_err();
    assert_eq!(
        e,
        WireError::FrameTooLarge {
            len: 1025,
            max: 1024
        }
    );
    assert_eq!(e.code(), ErrorCode::FrameTooLarge);
    // Only the header was ever held, and the error is sticky: framing is lost.
    assert_eq!(asm.buffered(), 12);
    asm.push(&[0u8; 16]);
    assert!(asm.next_frame().is_err());

    // Exactly at the limit is fine.
    let mut asm = FrameAssembler::new(4);
    asm.push(&header(MAGIC, 1, flags::EVENT_BATCH_NO_SUB, 4));
    assert_eq!(asm.next_frame().unwrap(), None);
    assert_eq!(asm.needed(), 4);
    asm.push(&[0, 0, 0, 0]);
    assert!(asm.next_frame().unwrap().is_some());

    // u32::MAX against the default limit: rejected from the header alone.
    let e = Frame::decode_exact(&header(MAGIC, 1, 0, u32::MAX), DEFAULT_MAX_FRAME).unwrap_err();
    assert_eq!(
        e,
        WireError::FrameTooLarge {
            len: u32::MAX,
            max: DEFAULT_MAX_FRAME
        }
    );
}

#[test]
fn truncated_header_and_payload() {
    let full = raw_frame(flags::JSON, br#"{"type":"ok"}"#);
    for cut in [0, 1, 5, 11, 12, full.len() - 1] {
        let e = Frame::decode_exact(&full[..cut], DEFAULT_MAX_FRAME).unwrap_err();
        assert_eq!(e, WireError::Truncated("frame"), "cut at {cut}");
        assert_eq!(e.code(), ErrorCode::Protocol);
        // The assembler just waits for more.
        let mut asm = FrameAssembler::new(DEFAULT_MAX_FRAME);
        asm.push(&full[..cut]);
        assert_eq!(asm.next_frame().unwrap(), None);
        assert!(asm.needed() >= 1);
    }
}

#[test]
fn trailing_bytes_after_frame() {
    let mut f = raw_frame(flags::JSON, br#"{"type":"ok"}"#);
    f.extend_from_slice(&[1, 2, 3]);
    let e = Frame::decode_exact(&f, DEFAULT_MAX_FRAME).unwrap_err();
    assert_eq!(e, WireError::TrailingBytes(3));
    assert_eq!(e.code(), ErrorCode::Protocol);
}

#[test]
fn garbage_after_a_good_frame_fails_only_later() {
    let mut asm = FrameAssembler::new(DEFAULT_MAX_FRAME);
    asm.push(&raw_frame(flags::JSON, br#"{"type":"ok"}"#));
    asm.push(b"GET / HTTP/1.1\r\n");
    assert!(asm.next_frame().unwrap().is_some());
    assert!(matches!(asm.next_frame(), Err(WireError::BadMagic(_))));
}

// --- flags -----------------------------------------------------------------------------------

#[test]
fn unknown_flags() {
    for f in [
        flags::ACKED, // 0x0008 alone
        flags::PUBLISH_BATCH | flags::EVENT_BATCH,
        flags::EVENT_BATCH | flags::ACKED,
        flags::BINARY_ACK | flags::ACKED,
        0x0080,
        0x8000,
        0xffff,
    ] {
        let e = err_of(&raw_frame(f, b"{}"));
        assert_eq!(e, WireError::UnknownFlags(f));
        assert_eq!(e.code(), ErrorCode::Unsupported);
    }
}

// --- JSON ------------------------------------------------------------------------------------

#[test]
fn invalid_json() {
    let cases: &[&[u8]] = &[
        b"",
        b"{",
        b"not json",
        b"[1,2]",
        b"\xff\xfe{}",
        br#"{"type":5}"#,
        br#"{"tenant_id":"t"}"#,                                    // no type
        br#"{"type":"auth"}"#,                                      // missing required field
        br#"{"type":"publish_ok","request_id":-1}"#,                // negative u64
        br#"{"type":"auth","tenant_id":"t","client_flags":70000}"#, // u16 overflow
        br#"{"type":"publish","tenant_id":"t","namespace":"n","stream":"s","payload":"!!"}"#,
        br#"{"type":"subscribe","tenant_id":"t","namespace":"n","stream":"s","start":"soon"}"#,
        br#"{"type":"ok"} trailing"#,
    ];
    for c in cases {
        let e = err_of(&raw_frame(flags::JSON, c));
        assert!(
            matches!(e, WireError::InvalidJson(_)),
            "{:?}: {e:?}",
            String::from_utf8_lossy(c)
        );
        assert_eq!(e.code(), ErrorCode::Protocol);
    }
}

#[test]
fn unknown_type_is_unsupported() {
    let e = err_of(&raw_frame(
        flags::JSON,
        br#"{"type":"teleport","request_id":1}"#,
    ));
    assert_eq!(e, WireError::UnknownType("teleport".into()));
    assert_eq!(e.code(), ErrorCode::Unsupported);
    // Escaped type names are compared after unescaping.
    let e = Message::decode(br#"{"type":"tele\u0070ort"}"#).unwrap_err();
    assert_eq!(e, WireError::UnknownType("teleport".into()));
}

/// Regression: an unknown value of a nested enum used to be reported as an unknown message
/// type (`unsupported`) although the type is known and the field is malformed.
#[test]
fn unknown_enum_value_in_known_type_is_invalid_json() {
    let e = Message::decode(
        br#"{"type":"publish","tenant_id":"t","namespace":"n","stream":"s","payload":"","ack":"bogus"}"#,
    )
    .unwrap_err();
    assert!(matches!(e, WireError::InvalidJson(_)), "{e:?}");
    assert_eq!(e.code(), ErrorCode::Protocol);
    // Even when the bad value happens to spell a message type.
    let e = Message::decode(
        br#"{"type":"publish","tenant_id":"t","namespace":"n","stream":"s","payload":"","ack":"publish"}"#,
    )
    .unwrap_err();
    assert!(matches!(e, WireError::InvalidJson(_)), "{e:?}");
}

// --- declared counts and lengths -------------------------------------------------------------

/// Declared sizes far beyond the frame must be rejected from the bytes present, at once.
#[test]
fn huge_declared_count_is_truncated_without_allocating() {
    let start = Instant::now();

    let mut p = BytesMut::new();
    str16(&mut p, b"t");
    str16(&mut p, b"n");
    str16(&mut p, b"s");
    p.put_u32(u32::MAX);
    assert_eq!(
        decode_payload(flags::PUBLISH_BATCH, &p),
        Err(WireError::Truncated("payloads"))
    );

    let mut p = BytesMut::new();
    p.put_u64(1);
    p.put_u32(u32::MAX);
    assert_eq!(
        decode_payload(flags::EVENT_BATCH, &p),
        Err(WireError::Truncated("events"))
    );

    let mut p = BytesMut::new();
    p.put_u32(u32::MAX);
    assert_eq!(
        decode_payload(flags::EVENT_BATCH_NO_SUB, &p),
        Err(WireError::Truncated("events"))
    );

    let mut p = BytesMut::new();
    p.put_u64(1);
    str16(&mut p, b"s");
    p.put_u32(u32::MAX);
    let e = decode_payload(flags::EVENT_BATCH_OFFSETS, &p).unwrap_err();
    assert_eq!(e, WireError::Truncated("events"));
    assert_eq!(e.code(), ErrorCode::Protocol);

    // A count that fits 4-byte items but not 12-byte offset events.
    let mut p = BytesMut::new();
    p.put_u64(1);
    str16(&mut p, b"s");
    p.put_u32(2);
    p.put_slice(&[0u8; 12]);
    assert_eq!(
        decode_payload(flags::EVENT_BATCH_OFFSETS, &p),
        Err(WireError::Truncated("events"))
    );

    // Payload and string lengths.
    let mut p = BytesMut::new();
    p.put_u64(1);
    p.put_u32(1);
    p.put_u32(u32::MAX);
    p.put_slice(b"abc");
    assert_eq!(
        decode_payload(flags::EVENT_BATCH, &p),
        Err(WireError::Truncated("event"))
    );

    let mut p = BytesMut::new();
    p.put_u16(u16::MAX);
    p.put_slice(b"t");
    assert_eq!(
        decode_payload(flags::PUBLISH_BATCH, &p),
        Err(WireError::Truncated("tenant_id"))
    );

    let mut p = BytesMut::new();
    p.put_u8(op_put());
    p.put_u64(1);
    for s in [b"t", b"n", b"c", b"k"] {
        str16(&mut p, s);
    }
    p.put_u8(0);
    p.put_u64(0);
    p.put_u64(0);
    p.put_u32(u32::MAX);
    assert_eq!(
        decode_payload(flags::EXT_BINARY, &p),
        Err(WireError::Truncated("value"))
    );

    assert!(
        start.elapsed() < Duration::from_millis(500),
        "took {:?}",
        start.elapsed()
    );
}

fn op_put() -> u8 {
    felix_wire::ext::op::CACHE_PUT
}

#[test]
fn truncated_binary_bodies() {
    // Every strict prefix of a valid body is Truncated (or, for acks, an unreadable prefix).
    let mut bodies: Vec<(u16, Bytes)> = Vec::new();
    for ack in [false, true] {
        let f = valid_publish(ack);
        bodies.push((u16::from_be_bytes([f[6], f[7]]), f.slice(12..)));
    }
    let mut out = BytesMut::new();
    EventBatch::encode_parts(&mut out, 3, [b"ab".as_slice()].into_iter());
    OffsetEventBatch::encode_parts(&mut out, 3, "s", [(9u64, b"ab".as_slice())].into_iter());
    ExtFrame::CacheOk {
        request_id: 1,
        version: 2,
    }
    .encode(&mut out);
    BinaryAck {
        request_id: 1,
        error: None,
    }
    .encode(&mut out, false);
    let mut asm = FrameAssembler::new(DEFAULT_MAX_FRAME);
    asm.push(&out);
    while let Some(f) = asm.next_frame().unwrap() {
        bodies.push((f.flags, f.payload));
    }
    assert_eq!(bodies.len(), 6);
    for (f, body) in bodies {
        assert!(decode_payload(f, &body).is_ok());
        for cut in 0..body.len() {
            let e = decode_payload(f, &body[..cut]).unwrap_err();
            assert!(
                matches!(e, WireError::Truncated(_)),
                "flags {f:#x} cut {cut}: {e:?}"
            );
            assert_eq!(e.code(), ErrorCode::Protocol);
        }
    }
}

// --- UTF-8 -----------------------------------------------------------------------------------

#[test]
fn invalid_utf8_in_binary_strings() {
    let mut p = BytesMut::new();
    str16(&mut p, b"\xff\xfe");
    str16(&mut p, b"n");
    str16(&mut p, b"s");
    p.put_u32(0);
    let e = decode_payload(flags::PUBLISH_BATCH, &p).unwrap_err();
    assert_eq!(e, WireError::InvalidUtf8("tenant_id"));
    assert_eq!(e.code(), ErrorCode::Protocol);

    let mut p = BytesMut::new();
    p.put_u64(1);
    str16(&mut p, b"ok\xc3"); // cut multi-byte sequence
    p.put_u32(0);
    assert_eq!(
        decode_payload(flags::EVENT_BATCH_OFFSETS, &p),
        Err(WireError::InvalidUtf8("stream"))
    );

    let mut p = BytesMut::new();
    p.put_u8(1);
    p.put_u64(1);
    str16(&mut p, b"\xed\xa0\x80"); // UTF-16 surrogate
    assert_eq!(
        decode_payload(flags::BINARY_ACK, &p),
        Err(WireError::InvalidUtf8("message"))
    );

    let mut p = BytesMut::new();
    p.put_u8(felix_wire::ext::op::CACHE_GET);
    p.put_u64(1);
    for s in [b"t".as_slice(), b"n", b"c", b"\x80"] {
        str16(&mut p, s);
    }
    assert_eq!(
        decode_payload(flags::EXT_BINARY, &p),
        Err(WireError::InvalidUtf8("key"))
    );
}

// --- values out of domain --------------------------------------------------------------------

#[test]
fn invalid_values() {
    // Ack mode byte of an acked publish: only 1 and 2 exist.
    for mode in [0u8, 3, 0xff] {
        let mut f = valid_publish(true).to_vec();
        f[12 + 8] = mode;
        let e = err_of(&f);
        assert_eq!(e, WireError::InvalidValue("ack_mode"));
        assert_eq!(e.code(), ErrorCode::Protocol);
    }
    // Binary ack status.
    let mut p = BytesMut::new();
    p.put_u8(2);
    p.put_u64(1);
    p.put_u16(0);
    assert_eq!(
        decode_payload(flags::BINARY_ACK, &p),
        Err(WireError::InvalidValue("ack status"))
    );

    // Ext: unknown op, condition, found and existed bytes.
    let mut p = BytesMut::new();
    p.put_u8(0x04);
    p.put_u64(1);
    assert_eq!(
        decode_payload(flags::EXT_BINARY, &p),
        Err(WireError::InvalidValue("op"))
    );

    let mut p = BytesMut::new();
    p.put_u8(op_put());
    p.put_u64(1);
    for s in [b"t", b"n", b"c", b"k"] {
        str16(&mut p, s);
    }
    p.put_u8(3);
    p.put_u64(0);
    p.put_u64(0);
    p.put_u32(0);
    assert_eq!(
        decode_payload(flags::EXT_BINARY, &p),
        Err(WireError::InvalidValue("condition"))
    );

    let mut p = BytesMut::new();
    p.put_u8(felix_wire::ext::op::CACHE_VALUE);
    p.put_u64(1);
    p.put_u8(2);
    assert_eq!(
        decode_payload(flags::EXT_BINARY, &p),
        Err(WireError::InvalidValue("found"))
    );

    let mut p = BytesMut::new();
    p.put_u8(felix_wire::ext::op::CACHE_DELETED);
    p.put_u64(1);
    p.put_u8(7);
    assert_eq!(
        decode_payload(flags::EXT_BINARY, &p),
        Err(WireError::InvalidValue("existed"))
    );
}

// --- trailing bytes inside a body ------------------------------------------------------------

#[test]
fn trailing_bytes_in_binary_bodies() {
    let f = valid_publish(false);
    let mut body = f.slice(12..).to_vec();
    body.extend_from_slice(&[0xaa, 0xbb]);
    let e = decode_payload(flags::PUBLISH_BATCH, &body).unwrap_err();
    assert_eq!(e, WireError::TrailingBytes(2));
    assert_eq!(e.code(), ErrorCode::Protocol);

    // An ok ack takes no code trailer.
    let mut p = BytesMut::new();
    p.put_u8(0);
    p.put_u64(1);
    p.put_u16(0);
    p.put_slice(&[0, 2, 0]);
    assert_eq!(
        decode_payload(flags::BINARY_ACK, &p),
        Err(WireError::TrailingBytes(3))
    );

    // An error ack's trailer is exactly three bytes.
    for extra in [1usize, 2, 4] {
        let mut p = BytesMut::new();
        p.put_u8(1);
        p.put_u64(1);
        str16(&mut p, b"x");
        p.put_slice(&vec![0u8; extra]);
        let want = if extra == 4 { 1 } else { extra };
        assert_eq!(
            decode_payload(flags::BINARY_ACK, &p),
            Err(WireError::TrailingBytes(want))
        );
    }

    let mut out = BytesMut::new();
    ExtFrame::CacheDeleted {
        request_id: 1,
        existed: true,
    }
    .encode(&mut out);
    out.put_u8(0);
    let len = (out.len() - 12) as u32;
    FrameHeader {
        flags: flags::EXT_BINARY,
        length: len,
    }
    .write(&mut &mut out[..12]);
    assert_eq!(err_of(&out), WireError::TrailingBytes(1));
}

#[test]
fn unknown_codes_from_newer_peers_decode_as_internal() {
    let mut p = BytesMut::new();
    p.put_u8(1);
    p.put_u64(1);
    str16(&mut p, b"x");
    p.put_u16(999);
    p.put_u8(1);
    let felix_wire::Decoded::Ack(a) = decode_payload(flags::BINARY_ACK, &p).unwrap() else {
        panic!()
    };
    let e = a.error.unwrap();
    assert_eq!(e.code, Some(ErrorCode::Internal));
    assert!(e.retryable);
}
