use super::*;
use proptest::prelude::*;

fn meta(base: u64) -> FrameMeta {
    FrameMeta {
        base_offset: base,
        timestamp_ms: 1_765_140_000_000,
        synced_hint: base,
    }
}

fn frame_of(base: u64, payloads: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(&mut out, meta(base), payloads).unwrap();
    out
}

/// Rewrites the CRC of an encoded frame after a test edited it on purpose.
fn reseal(f: &mut [u8]) {
    let crc = crc32c::crc32c_append(crc32c(&f[0..4]), &f[8..]);
    f[4..8].copy_from_slice(&crc.to_le_bytes());
}

#[test]
fn crc32c_matches_the_published_vectors() {
    assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    // RFC 3720, appendix B.4.
    assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
    assert_eq!(crc32c(&[0xFFu8; 32]), 0x62A8_AB43);
    let up: Vec<u8> = (0..32).collect();
    assert_eq!(crc32c(&up), 0x46DD_794E);
    let down: Vec<u8> = (0..32).rev().collect();
    assert_eq!(crc32c(&down), 0x113F_DB5C);
}

#[test]
fn segment_header_round_trips_and_its_damage_is_named() {
    let h = SegmentHeader {
        kind: LogKind::GroupJournal,
        compacted: true,
        base_offset: 4_194_304,
        epoch: 9_127_364_512,
        created_unix_ms: 1_765_140_000_000,
    };
    let b = h.encode();
    assert_eq!(&b[0..8], b"FELIXSEG");
    assert_eq!(&b[8..10], &[1, 0]);
    assert_eq!(SegmentHeader::decode(&b), Ok(h));
    assert_eq!(
        SegmentHeader::decode(&b[..63]),
        Err(HeaderError::Short { have: 63 })
    );
    for bit in 0..64 * 8 {
        let mut d = b;
        d[bit / 8] ^= 1 << (bit % 8);
        assert!(SegmentHeader::decode(&d).is_err(), "bit {bit} undetected");
    }
    let mut v2 = b;
    v2[8] = 2;
    let crc = crc32c(&v2[0..60]);
    v2[60..64].copy_from_slice(&crc.to_le_bytes());
    assert_eq!(
        SegmentHeader::decode(&v2),
        Err(HeaderError::UnknownVersion(2))
    );
    let mut k9 = b;
    k9[10] = 9;
    let crc = crc32c(&k9[0..60]);
    k9[60..64].copy_from_slice(&crc.to_le_bytes());
    assert_eq!(SegmentHeader::decode(&k9), Err(HeaderError::UnknownKind(9)));
}

#[test]
fn frame_layout_is_the_documented_one() {
    let f = frame_of(7, &[b"ab", b""]);
    // 40 fixed + (6 + 2) + (6 + 0)
    assert_eq!(f.len(), 54);
    assert_eq!(frame_len(&[b"ab".as_slice(), b""]), 54);
    assert_eq!(u32_at(&f, 0), 50);
    assert_eq!(u64_at(&f, 8), 7);
    assert_eq!(u32_at(&f, 24), 2);
    assert_eq!(u16_at(&f, 28), 0);
    assert_eq!(u64_at(&f, 32), 7);
    assert_eq!(&f[40..48], &[2, 0, 0, 0, 0, 0, b'a', b'b']);
    let d = decode_frame(&f).unwrap();
    assert_eq!(d.header.total_len(), 54);
    assert_eq!(d.header.next_offset(), 9);
    assert_eq!(d.header.last_offset(), 8);
    let recs: Vec<_> = d.records().collect();
    assert_eq!(recs.len(), 2);
    assert_eq!((recs[0].offset, recs[0].payload), (7, &b"ab"[..]));
    assert_eq!((recs[1].offset, recs[1].payload), (8, &b""[..]));
}

#[test]
fn encode_refuses_empty_and_oversized_batches_and_leaves_out_unchanged() {
    let mut out = vec![1, 2, 3];
    let none: [&[u8]; 0] = [];
    assert_eq!(
        encode_frame(&mut out, meta(0), &none),
        Err(FrameError::Empty)
    );
    // 1024 references to one 1 MiB buffer: a 1 GiB batch without allocating one.
    let mib = vec![0u8; 1 << 20];
    let many: Vec<&[u8]> = vec![&mib; 1024];
    assert!(matches!(
        encode_frame(&mut out, meta(0), &many),
        Err(FrameError::TooLarge { .. })
    ));
    assert!(matches!(
        encode_frame(&mut out, meta(u64::MAX), &[b"x"]),
        Err(FrameError::BadLength { .. })
    ));
    assert_eq!(out, vec![1, 2, 3]);
}

#[test]
fn headers_need_their_attribute() {
    let mut f = Vec::new();
    let h = encode_frame_with_headers(&mut f, meta(0), &[(b"h1", b"p1"), (b"", b"p2")]).unwrap();
    assert_eq!(h.attributes, ATTR_HEADERS);
    let d = decode_frame(&f).unwrap();
    let r: Vec<_> = d.records().map(|r| (r.headers, r.payload)).collect();
    assert_eq!(r, vec![(&b"h1"[..], &b"p1"[..]), (&b""[..], &b"p2"[..])]);
    f[28] = 0;
    reseal(&mut f);
    assert_eq!(decode_frame(&f).err(), Some(FrameError::BadRecords));
}

#[test]
fn records_must_exactly_fill_the_frame() {
    // One record claimed, two present: trailing bytes.
    let mut f = frame_of(0, &[b"a", b"b"]);
    f[24] = 1;
    reseal(&mut f);
    assert_eq!(decode_frame(&f).err(), Some(FrameError::BadRecords));
    // A payload length running past the frame.
    let mut f = frame_of(0, &[b"abc"]);
    f[40] = 4;
    reseal(&mut f);
    assert_eq!(decode_frame(&f).err(), Some(FrameError::BadRecords));
    // A count the length cannot hold (36 + 6·N > L).
    let mut f = frame_of(0, &[b"abc"]);
    f[24] = 2;
    reseal(&mut f);
    assert!(matches!(
        decode_frame(&f),
        Err(FrameError::BadLength { .. })
    ));
}

#[test]
fn every_single_bit_flip_of_small_frames_is_detected() {
    let cases: [&[&[u8]]; 4] = [
        &[b""],
        &[b"x"],
        &[b"hello", b"", b"world!"],
        &[&[0u8; 33], &[0xFF; 7]],
    ];
    for payloads in cases {
        let f = frame_of(42, payloads);
        assert!(decode_frame(&f).is_ok());
        for bit in 0..f.len() * 8 {
            let mut d = f.clone();
            d[bit / 8] ^= 1 << (bit % 8);
            assert!(
                decode_frame(&d).is_err(),
                "flip of bit {bit} in a {}-byte frame went unnoticed",
                f.len()
            );
            // Followed by more bytes (a frame in the middle of a segment), still detected.
            d.extend_from_slice(&[0u8; 64]);
            assert!(decode_frame(&d).is_err(), "bit {bit}, with a tail");
        }
    }
}

#[test]
fn validate_checks_offset_continuity_and_time() {
    let mut f = Vec::new();
    let h = encode_frame(
        &mut f,
        FrameMeta {
            base_offset: 10,
            timestamp_ms: 100,
            synced_hint: 0,
        },
        &[b"a"],
    )
    .unwrap();
    assert_eq!(validate(&h, 10, 100, false), Ok(()));
    assert_eq!(
        validate(&h, 9, 0, false),
        Err(FrameError::UnexpectedOffset {
            expected: 9,
            found: 10
        })
    );
    assert_eq!(validate(&h, 9, 0, true), Ok(()));
    assert!(validate(&h, 11, 0, true).is_err());
    assert_eq!(
        validate(&h, 10, 101, false),
        Err(FrameError::TimeWentBack {
            previous: 101,
            found: 100
        })
    );
}

#[test]
fn frames_iterates_until_the_first_bad_frame() {
    let mut buf = frame_of(0, &[b"a", b"b"]);
    buf.extend(frame_of(2, &[b"c"]));
    let good = buf.len();
    buf.extend(&frame_of(3, &[b"dddd"])[..20]);
    let mut it = frames(&buf);
    assert_eq!(it.next().unwrap().unwrap().header.base_offset, 0);
    assert_eq!(it.next().unwrap().unwrap().header.base_offset, 2);
    assert_eq!(it.position(), good);
    assert!(matches!(
        it.next(),
        Some(Err((p, FrameError::Truncated { .. }))) if p == good
    ));
    assert!(it.next().is_none());
}

#[test]
fn segment_file_names_sort_and_parse() {
    assert_eq!(
        SegmentFile::Segment.name(4_194_304),
        "00000000000004194304.seg"
    );
    assert_eq!(
        SegmentFile::parse("00000000000004194304.idx"),
        Some((4_194_304, SegmentFile::OffsetIndex))
    );
    assert_eq!(
        SegmentFile::parse(&SegmentFile::TimeIndex.name(u64::MAX)),
        Some((u64::MAX, SegmentFile::TimeIndex))
    );
    for bad in [
        "0000000000000000000.seg",
        "0000000000000000000a.seg",
        "00000000000000000000.seg.tmp",
        "00000000000000000000.log",
        "99999999999999999999.seg",
        "checkpoint",
    ] {
        assert_eq!(SegmentFile::parse(bad), None, "{bad}");
    }
}

fn payloads() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop_oneof![
        8 => prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 1..64),
        1 => prop::collection::vec(prop::collection::vec(any::<u8>(), 0..65_536), 1..4),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn decode_inverts_encode(ps in payloads(), base in 0u64..u64::MAX / 2, ts: u64, hint: u64) {
        let mut out = vec![0xAA; 3];
        let m = FrameMeta { base_offset: base, timestamp_ms: ts, synced_hint: hint };
        let h = encode_frame(&mut out, m, &ps).unwrap();
        prop_assert_eq!(out.len() as u64 - 3, frame_len(&ps));
        let f = decode_frame(&out[3..]).unwrap();
        prop_assert_eq!(f.header, h);
        prop_assert_eq!(h.base_offset, base);
        prop_assert_eq!(h.timestamp_ms, ts);
        prop_assert_eq!(h.synced_hint, hint);
        let got: Vec<(u64, Vec<u8>)> = f.records().map(|r| (r.offset, r.payload.to_vec())).collect();
        let want: Vec<(u64, Vec<u8>)> =
            ps.iter().enumerate().map(|(i, p)| (base + i as u64, p.clone())).collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn decode_inverts_encode_with_headers(
        recs in prop::collection::vec(
            (prop::collection::vec(any::<u8>(), 0..40), prop::collection::vec(any::<u8>(), 0..300)),
            1..32,
        ),
        base in 0u64..u64::MAX / 2,
    ) {
        let pairs: Vec<(&[u8], &[u8])> =
            recs.iter().map(|(h, p)| (h.as_slice(), p.as_slice())).collect();
        let mut out = Vec::new();
        let m = FrameMeta { base_offset: base, timestamp_ms: 9, synced_hint: 0 };
        let h = encode_frame_with_headers(&mut out, m, &pairs).unwrap();
        let any_headers = recs.iter().any(|(h, _)| !h.is_empty());
        prop_assert_eq!(h.attributes & ATTR_HEADERS != 0, any_headers);
        let f = decode_frame(&out).unwrap();
        let got: Vec<(&[u8], &[u8])> = f.records().map(|r| (r.headers, r.payload)).collect();
        prop_assert_eq!(got, pairs);
    }

    #[test]
    fn every_truncation_is_truncated(ps in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 1..6)) {
        let f = frame_of(0, &ps.iter().map(|p| p.as_slice()).collect::<Vec<_>>());
        for cut in 0..f.len() {
            let is_truncated = matches!(decode_frame(&f[..cut]), Err(FrameError::Truncated { .. }));
            prop_assert!(is_truncated, "cut at {}", cut);
        }
    }

    #[test]
    fn the_streaming_check_agrees_with_the_slice_check(
        ps in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..100), 1..8),
        flip in any::<Option<prop::sample::Index>>(),
        splits in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let mut f = frame_of(5, &ps.iter().map(|p| p.as_slice()).collect::<Vec<_>>());
        if let Some(i) = flip {
            let bit = i.index(f.len() * 8);
            if bit >= FRAME_HEADER_LEN * 8 {
                f[bit / 8] ^= 1 << (bit % 8);
            }
        }
        let h = FrameHeader::decode(&f).unwrap();
        let mut c = FrameChecker::new(&h, &f);
        let body = &f[FRAME_HEADER_LEN..];
        let mut cuts: Vec<usize> = splits.iter().map(|s| s.index(body.len() + 1)).collect();
        cuts.push(0);
        cuts.push(body.len());
        cuts.sort();
        for w in cuts.windows(2) {
            c.feed(&body[w[0]..w[1]]);
        }
        prop_assert_eq!(c.finish().is_ok(), decode_frame(&f).is_ok());
    }

    #[test]
    fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = SegmentHeader::decode(&bytes);
        let _ = FrameHeader::decode(&bytes);
        if let Ok(f) = decode_frame(&bytes) {
            prop_assert!(f.records().count() == f.header.record_count as usize);
        }
        for f in frames(&bytes).flatten() {
            let _ = f.records().count();
        }
    }

    #[test]
    fn a_flipped_length_stays_inside_the_input(
        ps in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..50), 1..4),
        bit in 0usize..32,
    ) {
        let mut f = frame_of(0, &ps.iter().map(|p| p.as_slice()).collect::<Vec<_>>());
        f[bit / 8] ^= 1 << (bit % 8);
        // Slicing past the input would panic; the error must name the real input size.
        match decode_frame(&f) {
            Err(FrameError::Truncated { have, .. }) => prop_assert_eq!(have, f.len() as u64),
            Err(_) => {}
            Ok(_) => prop_assert!(false, "flipped length accepted"),
        }
    }
}
