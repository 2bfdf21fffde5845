//! A publish batch is written into one allocation of exactly its size: `encode_parts`
//! reserves the whole frame before writing, so the publish hot path never grows (copies)
//! its buffer in the middle of a frame, and never over-allocates either.

use bytes::{Bytes, BytesMut};
use felix_wire::{decode, AckMode, FrameAssembler, PublishBatch};

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
