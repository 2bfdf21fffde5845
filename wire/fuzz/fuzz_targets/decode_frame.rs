//! Feeds arbitrary bytes through `FrameAssembler` and `felix_wire::decode`.
//!
//! The first input byte picks how the rest is chunked and which payload limit applies, so
//! the fuzzer explores partial reads and the size check as well as the decoders. Beyond "no
//! panic", every frame that decodes must re-encode to bytes that decode to the same value.
#![no_main]

use bytes::{BufMut, Bytes, BytesMut};
use felix_wire::frame::{flags, Frame, FrameAssembler, FrameHeader, DEFAULT_MAX_FRAME};
use felix_wire::{decode, Decoded, EventBatch, OffsetEventBatch};
use libfuzzer_sys::fuzz_target;

fn encode(d: &Decoded) -> Bytes {
    let mut out = BytesMut::new();
    match d {
        Decoded::Json(m) => m.encode(&mut out),
        Decoded::Publish(p) => p.encode(&mut out),
        Decoded::Events(e) => EventBatch::encode_parts(
            &mut out,
            e.subscription_id,
            e.payloads.iter().map(|p| p.as_ref()),
        ),
        Decoded::EventsNoSub(p) => {
            let mut body = BytesMut::new();
            body.put_u32(p.len() as u32);
            for x in p {
                body.put_u32(x.len() as u32);
                body.put_slice(x);
            }
            FrameHeader {
                flags: flags::EVENT_BATCH_NO_SUB,
                length: body.len() as u32,
            }
            .write(&mut out);
            out.put_slice(&body);
        }
        Decoded::Ack(a) => {
            let with_code = a.error.as_ref().is_some_and(|e| e.code.is_some());
            a.encode(&mut out, with_code)
        }
        Decoded::Ext(x) => x.encode(&mut out),
        Decoded::OffsetEvents(e) => OffsetEventBatch::encode_parts(
            &mut out,
            e.subscription_id,
            &e.stream,
            e.events.iter().map(|(o, p)| (*o, p.as_ref())),
        ),
    }
    out.freeze()
}

fn check(frame: Frame) {
    if let Ok(d) = decode(frame) {
        let bytes = encode(&d);
        let again = Frame::decode_exact(&bytes, u32::MAX).map(decode);
        assert_eq!(again, Ok(Ok(d)), "re-encoding changed the value");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(mode & 0x1f) + 1;
    let max = if mode & 0x80 != 0 {
        64
    } else {
        DEFAULT_MAX_FRAME
    };

    let mut asm = FrameAssembler::new(max);
    'outer: for piece in rest.chunks(chunk) {
        asm.push(piece);
        loop {
            match asm.next_frame() {
                Ok(Some(frame)) => {
                    assert!(frame.payload.len() <= max as usize);
                    check(frame);
                }
                Ok(None) => {
                    assert!(asm.needed() >= 1);
                    break;
                }
                Err(e) => {
                    let _ = e.code();
                    break 'outer;
                }
            }
        }
    }

    if let Ok(frame) = Frame::decode_exact(rest, max) {
        check(frame);
    }
});
