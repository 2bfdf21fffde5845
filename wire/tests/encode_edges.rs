//! Encoding edges that full `cargo mutants` runs of wire/src/binary.rs and wire/src/error.rs
//! showed no test could see (mutants/report.md).

use bytes::{Bytes, BytesMut};
use felix_wire::binary::truncate_utf8;
use felix_wire::{decode, AckMode, FrameAssembler, PublishBatch};

/// A publish batch is written into one allocation of exactly its size: `encode_parts`
/// reserves the whole frame before writing, so the publish hot path never grows (copies)
/// its buffer in the middle of a frame, and never over-allocates either.
#[test]
fn an_acked_publish_batch_is_written_into_one_exact_allocation() {
    let long_ns = "n".repeat(300);
    let long_stream = "s".repeat(300);
    let names = [
        ("acme", "orders", "eu"),
        ("t", long_ns.as_str(), "s"),
        ("t", "ns", long_stream.as_str()),
    ];
    let payloads = vec![Bytes::from_static(b"hello"), Bytes::from(vec![7u8; 1000])];
    for (tenant, ns, stream) in names {
        let mut out = BytesMut::new();
        PublishBatch::encode_parts(
            &mut out,
            Some((42, AckMode::PerBatch)),
            tenant,
            ns,
            stream,
            &payloads,
        );
        assert_eq!(
            out.capacity(),
            out.len(),
            "one exact allocation for {tenant}/{}/{} bytes of names",
            ns.len(),
            stream.len()
        );
        // And it is the frame it should be.
        let mut asm = FrameAssembler::new(u32::MAX);
        asm.push(&out);
        let frame = asm.next_frame().unwrap().expect("one whole frame");
        assert!(matches!(decode(frame), Ok(felix_wire::Decoded::Publish(_))));
    }
}

/// Strings longer than a str16 field are cut on a character boundary, never past `max`, and
/// strings that fit (to the byte) are left alone.
#[test]
fn truncation_keeps_whole_characters_within_the_bound() {
    assert_eq!(truncate_utf8("abc", 3), "abc", "exactly at the bound");
    assert_eq!(truncate_utf8("abc", 10), "abc");
    assert_eq!(truncate_utf8("abcd", 3), "abc");
    // "é" is two bytes (1..3): a cut at 2 falls inside it and backs off to 1.
    assert_eq!(truncate_utf8("h\u{e9}llo", 2), "h");
    assert_eq!(truncate_utf8("h\u{e9}llo", 3), "h\u{e9}");
    // "€" is three bytes: a cut at 1 or 2 leaves nothing.
    assert_eq!(truncate_utf8("\u{20ac}", 2), "");
    let long = "\u{e9}".repeat(40_000); // 80 000 bytes
    let cut = truncate_utf8(&long, u16::MAX as usize);
    assert_eq!(
        cut.len(),
        65_534,
        "the last whole character under 65 535 bytes"
    );
}

/// Every error code parses back from its wire string (the client maps a broker's JSON error
/// to its code this way), and a string it does not know (a newer peer's) gives `None`.
#[test]
fn every_error_code_round_trips_through_its_wire_string() {
    use felix_wire::ErrorCode;
    for code in ErrorCode::ALL {
        assert_eq!(ErrorCode::from_str_code(code.as_str()), Some(code));
    }
    assert_eq!(
        ErrorCode::from_str_code("unauthorized"),
        Some(ErrorCode::Unauthorized)
    );
    assert_eq!(ErrorCode::from_str_code("no_such_code"), None);
    assert_eq!(ErrorCode::from_str_code(""), None);
}
