//! Property tests: encode/decode round trips for every binary frame and a representative set
//! of JSON messages, and "never panics" for arbitrary input. Case counts are modest so the
//! suite runs in a few seconds in debug builds.

mod common;

use bytes::{Bytes, BytesMut};
use common::{decode_bytes, encode_decoded};
use felix_wire::frame::{flags, Frame, FrameAssembler, DEFAULT_MAX_FRAME};
use felix_wire::{
    decode, encode_cache_request, AckError, AckMode, BinaryAck, CacheEntry, CacheRequest,
    CacheTarget, Decoded, ErrorCode, EventBatch, ExtFrame, Message, OffsetEventBatch, PublishBatch,
    PutCond, QueueMessage, StartPos, WireError,
};
use proptest::prelude::*;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[A-Za-z0-9_-]{1,12}(\\.[A-Za-z0-9_-]{1,8}){0,2}",
        1 => "\\PC{0,12}", // any printable unicode: the codec does not validate names
    ]
}

fn bytes_(max: usize) -> impl Strategy<Value = Bytes> {
    prop::collection::vec(any::<u8>(), 0..max).prop_map(Bytes::from)
}

fn payloads() -> impl Strategy<Value = Vec<Bytes>> {
    prop::collection::vec(bytes_(48), 0..6)
}

fn code() -> impl Strategy<Value = ErrorCode> {
    prop::sample::select(ErrorCode::ALL.to_vec())
}

fn ack_mode() -> impl Strategy<Value = AckMode> {
    prop_oneof![Just(AckMode::PerMessage), Just(AckMode::PerBatch)]
}

fn publish_batch() -> impl Strategy<Value = PublishBatch> {
    (
        prop::option::of((any::<u64>(), ack_mode())),
        name(),
        name(),
        name(),
        payloads(),
    )
        .prop_map(
            |(ack, tenant_id, namespace, stream, payloads)| PublishBatch {
                ack,
                tenant_id,
                namespace,
                stream,
                payloads,
            },
        )
}

fn binary_ack() -> impl Strategy<Value = BinaryAck> {
    let error = prop_oneof![
        Just(None),
        "\\PC{0,24}".prop_map(|message| Some(AckError {
            message,
            code: None,
            retryable: false
        })),
        ("\\PC{0,24}", code(), any::<bool>()).prop_map(|(message, c, retryable)| Some(AckError {
            message,
            code: Some(c),
            retryable
        })),
    ];
    (any::<u64>(), error).prop_map(|(request_id, error)| BinaryAck { request_id, error })
}

fn target() -> impl Strategy<Value = CacheTarget> {
    (name(), name(), name(), "\\PC{0,16}").prop_map(|(tenant_id, namespace, cache, key)| {
        CacheTarget {
            tenant_id,
            namespace,
            cache,
            key,
        }
    })
}

fn put_cond() -> impl Strategy<Value = PutCond> {
    prop_oneof![
        Just(PutCond::Always),
        Just(PutCond::IfAbsent),
        any::<u64>().prop_map(PutCond::IfVersion)
    ]
}

fn ext_frame() -> impl Strategy<Value = ExtFrame> {
    let rid = any::<u64>();
    prop_oneof![
        (rid, target()).prop_map(|(request_id, target)| ExtFrame::CacheGet { request_id, target }),
        // ttl 0 is the wire form of "default", so Some(0) does not exist.
        (
            rid,
            target(),
            prop::option::of(1u64..),
            put_cond(),
            bytes_(64)
        )
            .prop_map(
                |(request_id, target, ttl_ms, cond, value)| ExtFrame::CachePut {
                    request_id,
                    target,
                    ttl_ms,
                    cond,
                    value
                }
            ),
        (rid, target())
            .prop_map(|(request_id, target)| ExtFrame::CacheDelete { request_id, target }),
        (rid, prop::option::of((any::<u64>(), bytes_(64))))
            .prop_map(|(request_id, value)| ExtFrame::CacheValue { request_id, value }),
        (rid, any::<u64>()).prop_map(|(request_id, version)| ExtFrame::CacheOk {
            request_id,
            version
        }),
        (rid, any::<bool>()).prop_map(|(request_id, existed)| ExtFrame::CacheDeleted {
            request_id,
            existed
        }),
        (rid, code(), any::<bool>(), "\\PC{0,24}").prop_map(
            |(request_id, code, retryable, message)| ExtFrame::Error {
                request_id,
                code,
                retryable,
                message
            }
        ),
    ]
}

fn start_pos() -> impl Strategy<Value = StartPos> {
    prop_oneof![
        Just(StartPos::Latest),
        Just(StartPos::Earliest),
        any::<u64>().prop_map(StartPos::Offset)
    ]
}

fn message() -> impl Strategy<Value = Message> {
    let opt_u64 = || prop::option::of(any::<u64>());
    prop_oneof![
        (
            name(),
            prop::option::of("\\PC{0,16}"),
            prop::option::of(any::<u16>()),
            prop::option::of(any::<u32>()),
            prop::option::of(any::<u32>())
        )
            .prop_map(
                |(tenant_id, token, client_flags, client_features, client_features_hi)| {
                    Message::Auth {
                        tenant_id,
                        token,
                        client_flags,
                        client_features,
                        client_features_hi,
                    }
                }
            ),
        (
            any::<u16>(),
            prop::option::of(any::<u32>()),
            prop::option::of(any::<u32>()),
            prop::option::of(any::<u32>())
        )
            .prop_map(
                |(server_flags, server_features, server_features_hi, max_frame_bytes)| {
                    Message::AuthOk {
                        server_flags,
                        server_features,
                        server_features_hi,
                        max_frame_bytes,
                    }
                }
            ),
        opt_u64().prop_map(|request_id| Message::Ok { request_id }),
        ("\\PC{0,24}", code(), opt_u64(), any::<bool>())
            .prop_map(|(m, c, rid, with_code)| Message::error(c, m, rid, with_code)),
        (
            name(),
            name(),
            name(),
            bytes_(48),
            opt_u64(),
            prop::option::of(prop_oneof![Just(AckMode::None), ack_mode()])
        )
            .prop_map(|(tenant_id, namespace, stream, payload, request_id, ack)| {
                Message::Publish {
                    tenant_id,
                    namespace,
                    stream,
                    payload,
                    request_id,
                    ack,
                }
            }),
        (
            name(),
            name(),
            name(),
            payloads(),
            opt_u64(),
            prop::option::of(ack_mode())
        )
            .prop_map(
                |(tenant_id, namespace, stream, payloads, request_id, ack)| {
                    Message::PublishBatch {
                        tenant_id,
                        namespace,
                        stream,
                        payloads,
                        request_id,
                        ack,
                    }
                }
            ),
        (
            name(),
            name(),
            name(),
            opt_u64(),
            prop::option::of(start_pos())
        )
            .prop_map(|(tenant_id, namespace, stream, subscription_id, start)| {
                Message::Subscribe {
                    tenant_id,
                    namespace,
                    stream,
                    subscription_id,
                    start,
                }
            }),
        (name(), name(), name(), payloads(), any::<bool>()).prop_map(
            |(tenant_id, namespace, stream, payloads, with_offsets)| {
                let offsets = with_offsets.then(|| (0..payloads.len() as u64).collect());
                Message::EventBatch {
                    tenant_id,
                    namespace,
                    stream,
                    payloads,
                    offsets,
                }
            }
        ),
        (
            name(),
            name(),
            name(),
            "\\PC{0,16}",
            bytes_(48),
            opt_u64(),
            opt_u64(),
            prop::option::of(any::<bool>()),
            opt_u64()
        )
            .prop_map(
                |(
                    tenant_id,
                    namespace,
                    cache,
                    key,
                    value,
                    request_id,
                    ttl_ms,
                    if_absent,
                    if_version,
                )| {
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
                    }
                }
            ),
        (
            name(),
            name(),
            name(),
            "\\PC{0,16}",
            prop::option::of(bytes_(48)),
            opt_u64(),
            opt_u64()
        )
            .prop_map(
                |(tenant_id, namespace, cache, key, value, request_id, version)| {
                    Message::CacheValue {
                        tenant_id,
                        namespace,
                        cache,
                        key,
                        value,
                        request_id,
                        version,
                    }
                }
            ),
        (
            any::<u64>(),
            prop::collection::vec(("\\PC{0,8}", prop::option::of(bytes_(16)), opt_u64()), 0..4)
        )
            .prop_map(|(request_id, v)| Message::CacheValues {
                request_id,
                values: v
                    .into_iter()
                    .map(|(key, value, version)| CacheEntry {
                        key,
                        value,
                        version
                    })
                    .collect(),
            }),
        (
            any::<u64>(),
            prop::collection::vec((any::<u64>(), bytes_(16), any::<u32>(), any::<u64>()), 0..4)
        )
            .prop_map(|(request_id, v)| Message::QueueMessages {
                request_id,
                messages: v
                    .into_iter()
                    .map(|(offset, payload, attempt, lease_ms)| QueueMessage {
                        offset,
                        payload,
                        attempt,
                        lease_ms
                    })
                    .collect(),
            }),
        (
            name(),
            name(),
            name(),
            name(),
            any::<u64>(),
            prop::option::of(prop::collection::vec(any::<u64>(), 0..5))
        )
            .prop_map(
                |(tenant_id, namespace, stream, group, request_id, offsets)| {
                    Message::DeadLetterRedrive {
                        tenant_id,
                        namespace,
                        stream,
                        group,
                        request_id,
                        offsets,
                    }
                }
            ),
        (any::<u64>(), any::<u64>())
            .prop_map(|(request_id, count)| Message::Count { request_id, count }),
        any::<u64>().prop_map(|request_id| Message::Ping { request_id }),
        (any::<u64>(), ".{0,40}")
            .prop_map(|(request_id, token)| Message::Reauth { request_id, token }),
    ]
}

/// Encodes, decodes as one exact frame, and checks the value came back unchanged.
fn round_trip(value: Decoded) -> Result<(), TestCaseError> {
    let bytes = encode_decoded(&value);
    let back = decode_bytes(&bytes).map_err(|e| TestCaseError::fail(format!("{e}")))?;
    prop_assert_eq!(&back, &value);
    prop_assert_eq!(encode_decoded(&back), bytes);
    Ok(())
}

/// Feeds bytes through an assembler and decodes every frame; returns when framing fails or
/// input ends. Anything decodable must re-encode to something that decodes the same.
fn feed(max: u32, chunks: &[&[u8]]) -> Result<(), TestCaseError> {
    let mut asm = FrameAssembler::new(max);
    for chunk in chunks {
        asm.push(chunk);
        loop {
            match asm.next_frame() {
                Ok(Some(frame)) => {
                    prop_assert!(frame.payload.len() <= max as usize);
                    if let Ok(d) = decode(frame) {
                        let again = decode_bytes(&encode_decoded(&d));
                        prop_assert_eq!(again.as_ref(), Ok(&d));
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    let _ = e.code();
                    return Ok(());
                }
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(96))]

    #[test]
    fn cache_requests_from_borrowed_parts_encode_as_their_frames(f in ext_frame()) {
        let (request_id, target, request) = match &f {
            ExtFrame::CacheGet { request_id, target } => (*request_id, target, CacheRequest::Get),
            ExtFrame::CachePut { request_id, target, ttl_ms, cond, value } => (
                *request_id,
                target,
                CacheRequest::Put { ttl_ms: *ttl_ms, cond: *cond, value },
            ),
            ExtFrame::CacheDelete { request_id, target } => {
                (*request_id, target, CacheRequest::Delete)
            }
            _ => return Ok(()),
        };
        let mut want = bytes::BytesMut::new();
        f.encode(&mut want);
        let mut got = bytes::BytesMut::from(&b"prefix"[..]);
        encode_cache_request(&mut got, request_id, target.borrowed(), request);
        prop_assert_eq!(&got[6..], &want[..]);
    }

    #[test]
    fn publish_batch_round_trips(p in publish_batch()) {
        round_trip(Decoded::Publish(p))?;
    }

    #[test]
    fn event_batch_round_trips(subscription_id in any::<u64>(), payloads in payloads()) {
        round_trip(Decoded::Events(EventBatch { subscription_id, payloads }))?;
    }

    #[test]
    fn event_batch_no_sub_round_trips(payloads in payloads()) {
        round_trip(Decoded::EventsNoSub(payloads))?;
    }

    #[test]
    fn offset_event_batch_round_trips(
        subscription_id in any::<u64>(),
        stream in name(),
        events in prop::collection::vec((any::<u64>(), bytes_(32)), 0..6),
    ) {
        round_trip(Decoded::OffsetEvents(OffsetEventBatch { subscription_id, stream, events }))?;
    }

    #[test]
    fn binary_ack_round_trips(ack in binary_ack()) {
        round_trip(Decoded::Ack(ack))?;
    }

    /// Without the trailer an error ack decodes with no code, whatever it carried.
    #[test]
    fn binary_ack_without_code_drops_code(ack in binary_ack()) {
        let mut out = BytesMut::new();
        ack.encode(&mut out, false);
        let Decoded::Ack(back) = decode_bytes(&out).unwrap() else { panic!() };
        prop_assert_eq!(back.request_id, ack.request_id);
        prop_assert_eq!(back.error.map(|e| (e.message, e.code)), ack.error.map(|e| (e.message, None)));
    }

    #[test]
    fn ext_frame_round_trips(f in ext_frame()) {
        round_trip(Decoded::Ext(f))?;
    }

    #[test]
    fn message_round_trips(m in message()) {
        round_trip(Decoded::Json(m))?;
    }

    /// Several frames split at arbitrary points come out whole and in order.
    #[test]
    fn assembler_reassembles_any_split(
        frames in prop::collection::vec(prop_oneof![
            publish_batch().prop_map(Decoded::Publish),
            ext_frame().prop_map(Decoded::Ext),
            message().prop_map(Decoded::Json),
        ], 1..5),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let all: Vec<u8> = frames.iter().flat_map(|d| encode_decoded(d).to_vec()).collect();
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(all.len() + 1)).collect();
        points.push(0);
        points.push(all.len());
        points.sort_unstable();
        let mut asm = FrameAssembler::new(DEFAULT_MAX_FRAME);
        let mut got = Vec::new();
        for w in points.windows(2) {
            asm.push(&all[w[0]..w[1]]);
            while let Some(f) = asm.next_frame().unwrap() {
                got.push(decode(f).unwrap());
            }
        }
        prop_assert_eq!(asm.buffered(), 0);
        prop_assert_eq!(got, frames);
    }
}

proptest! {
    #![proptest_config(config(256))]

    /// Arbitrary bytes (some starting with a valid header) never panic, whatever the chunking.
    #[test]
    fn arbitrary_bytes_never_panic(
        prefix in prop::option::of((any::<u16>(), 0u32..64)),
        data in prop::collection::vec(any::<u8>(), 0..256),
        split in any::<prop::sample::Index>(),
        max in prop_oneof![Just(DEFAULT_MAX_FRAME), 0u32..128],
    ) {
        let mut bytes = Vec::new();
        if let Some((f, len)) = prefix {
            bytes.extend_from_slice(b"FLX1\x00\x01");
            bytes.extend_from_slice(&f.to_be_bytes());
            bytes.extend_from_slice(&len.to_be_bytes());
        }
        bytes.extend_from_slice(&data);
        let at = split.index(bytes.len() + 1);
        feed(max, &[&bytes[..at], &bytes[at..]])?;
        let _ = Frame::decode_exact(&bytes, max).map(decode);
    }

    /// Any payload under any known flag value (and some unknown ones) never panics, and what
    /// decodes re-encodes to the same value.
    #[test]
    fn arbitrary_payload_under_each_flag_never_panics(
        f in prop_oneof![
            prop::sample::select(flags::KINDS.to_vec()),
            any::<u16>(),
        ],
        payload in prop::collection::vec(any::<u8>(), 0..128),
    ) {
        let bytes = Frame::new(f, Bytes::from(payload)).to_bytes();
        feed(DEFAULT_MAX_FRAME, &[&bytes])?;
    }

    /// Mutating one byte of a valid frame never panics.
    #[test]
    fn mutated_valid_frames_never_panic(
        d in prop_oneof![
            publish_batch().prop_map(Decoded::Publish),
            ext_frame().prop_map(Decoded::Ext),
            binary_ack().prop_map(Decoded::Ack),
            message().prop_map(Decoded::Json),
        ],
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let mut bytes = encode_decoded(&d).to_vec();
        let i = at.index(bytes.len());
        bytes[i] = byte;
        feed(DEFAULT_MAX_FRAME, &[&bytes])?;
    }
}

/// Regression: `Some((rid, AckMode::None))` used to be written as an acked frame with mode
/// byte 0, which no decoder accepts; it is now the plain unacknowledged `0x0001` frame.
#[test]
fn ack_mode_none_encodes_as_unacked_publish() {
    let mut out = BytesMut::new();
    PublishBatch::encode_parts(&mut out, Some((5, AckMode::None)), "t", "n", "s", &[]);
    assert_eq!(u16::from_be_bytes([out[6], out[7]]), flags::PUBLISH_BATCH);
    let Decoded::Publish(p) = decode_bytes(&out).unwrap() else {
        panic!()
    };
    assert_eq!(p.ack, None);
}

/// `flags::KINDS` is exactly what `decode` knows: every other flags value is refused as unknown
/// (so a kind added to the decoder without its vector and fuzzing coverage is caught here).
#[test]
fn flags_kinds_are_exactly_the_decodable_values() {
    for f in 0..=u16::MAX {
        let unknown = matches!(
            decode(Frame::new(f, Bytes::new())),
            Err(WireError::UnknownFlags(_))
        );
        assert_eq!(unknown, !flags::KINDS.contains(&f), "flags {f:#06x}");
    }
}
