use super::*;
use crate::format::{encode_frame, FrameMeta};
use proptest::prelude::*;

const BASE: u64 = 5_000;

/// Frames of a segment: (header, position), from record counts, payload sizes, timestamps.
fn frames(spec: &[(usize, usize, u64)]) -> Vec<(FrameHeader, u64)> {
    let mut out = Vec::new();
    let mut pos = SEGMENT_HEADER_LEN;
    let mut next = BASE;
    let mut scratch = Vec::new();
    for &(count, size, ts) in spec {
        scratch.clear();
        let payloads = vec![vec![7u8; size]; count];
        let m = FrameMeta {
            base_offset: next,
            timestamp_ms: ts,
            synced_hint: 0,
        };
        let h = encode_frame(&mut scratch, m, &payloads).unwrap();
        out.push((h, pos));
        pos += h.total_len();
        next = h.next_offset();
    }
    out
}

fn feed(ix: &mut SegmentIndex, fs: &[(FrameHeader, u64)]) -> (Vec<u8>, Vec<u8>) {
    let (mut idx, mut tix) = (Vec::new(), Vec::new());
    for (h, p) in fs {
        let a = ix.on_frame(h, *p);
        idx.extend(a.idx.iter().flatten());
        tix.extend(a.tix.iter().flatten());
    }
    (idx, tix)
}

/// Non-decreasing timestamps with equal runs.
fn spec() -> impl Strategy<Value = Vec<(usize, usize, u64)>> {
    prop::collection::vec((1usize..5, 0usize..700, 0u64..3), 1..120).prop_map(|v| {
        let mut ts = 1_000;
        v.into_iter()
            .map(|(c, s, step)| {
                ts += step;
                (c, s, ts)
            })
            .collect()
    })
}

#[test]
fn the_first_frame_is_implicit_and_entries_follow_the_interval() {
    let fs = frames(&[(1, 100, 1), (1, 100, 2), (1, 100, 3), (1, 100, 3)]);
    let mut ix = SegmentIndex::new(BASE, 250);
    let (idx, tix) = feed(&mut ix, &fs);
    // Frames of 146 bytes at 64, 210, 356, 502: entries at 356 (≥ 64 + 250), none at 502
    // (< 356 + 250).
    assert_eq!(ix.offsets.entries(), &[(2, 356)]);
    assert_eq!(idx, [2, 0, 0, 0, 0x64, 1, 0, 0]);
    assert_eq!(ix.times.entries(), &[(3, 2)]);
    assert_eq!(tix.len(), TIME_ENTRY_LEN);
    assert_eq!(
        ix.offsets.lookup(BASE + 1),
        ScanFrom {
            position: 64,
            offset: BASE
        }
    );
    assert_eq!(
        ix.offsets.lookup(BASE + 3),
        ScanFrom {
            position: 356,
            offset: BASE + 2
        }
    );
    assert_eq!(ix.offsets.lookup(0).position, 64);
    assert_eq!(ix.times.lookup(3), BASE);
    assert_eq!(ix.times.lookup(4), BASE + 2);
}

#[test]
fn bad_index_files_are_refused_and_torn_entries_ignored() {
    let entry = |rel: u32, pos: u32| {
        let mut e = rel.to_le_bytes().to_vec();
        e.extend(pos.to_le_bytes());
        e
    };
    let mut good = entry(3, 500);
    good.extend(entry(9, 9000));
    let ix = OffsetIndex::decode(BASE, 4096, &good).unwrap();
    assert_eq!(ix.entries(), &[(3, 500), (9, 9000)]);
    let mut torn = good.clone();
    torn.extend([1, 2, 3]);
    assert_eq!(OffsetIndex::decode(BASE, 4096, &torn).unwrap(), ix);
    let mut back = good.clone();
    back.extend(entry(10, 8000));
    assert_eq!(
        OffsetIndex::decode(BASE, 4096, &back),
        Err(IndexError::NotIncreasing { entry: 2 })
    );
    assert!(OffsetIndex::decode(BASE, 4096, &entry(0, 500)).is_err());
    assert!(OffsetIndex::decode(BASE, 4096, &entry(1, 64)).is_err());
    let mut t = 5u64.to_le_bytes().to_vec();
    t.extend(4u32.to_le_bytes());
    t.extend(5u64.to_le_bytes());
    t.extend(8u32.to_le_bytes());
    assert_eq!(
        TimeIndex::decode(BASE, &t),
        Err(IndexError::NotIncreasing { entry: 1 })
    );
    assert_eq!(
        TimeIndex::decode(BASE, &t[..12]).unwrap().entries(),
        &[(5, 4)]
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn every_offset_is_found_within_one_interval(spec in spec(), interval in 1u64..5000) {
        let fs = frames(&spec);
        let mut ix = SegmentIndex::new(BASE, interval);
        let (idx, tix) = feed(&mut ix, &fs);
        for (k, (h, start)) in fs.iter().enumerate() {
            for o in h.base_offset..h.next_offset() {
                let sf = ix.offsets.lookup(o);
                // Lands on a frame boundary, with the offset that frame has...
                let landed = fs.iter().find(|(_, p)| *p == sf.position);
                prop_assert!(landed.is_some(), "not a frame start: {}", sf.position);
                prop_assert_eq!(landed.unwrap().0.base_offset, sf.offset);
                // ...at or before the frame holding `o`, less than one interval before it.
                prop_assert!(sf.position <= *start);
                prop_assert!(*start - sf.position < interval, "frame {}", k);
            }
        }
        // The appended bytes are the file, and the file decodes to the same index.
        prop_assert_eq!(&idx, &ix.offsets.encode());
        prop_assert_eq!(&tix, &ix.times.encode());
        prop_assert_eq!(&OffsetIndex::decode(BASE, interval, &idx).unwrap(), &ix.offsets);
        prop_assert_eq!(&TimeIndex::decode(BASE, &tix).unwrap(), &ix.times);
    }

    #[test]
    fn time_lookup_never_skips_the_first_record_at_or_after_t(
        spec in spec(),
        interval in 1u64..3000,
        t in 990u64..1300,
    ) {
        let fs = frames(&spec);
        let mut ix = SegmentIndex::new(BASE, interval);
        feed(&mut ix, &fs);
        let from = ix.times.lookup(t);
        let k = fs.iter().position(|(h, _)| h.base_offset == from);
        prop_assert!(k.is_some(), "lookup gave {} which starts no frame", from);
        let k = k.unwrap();
        // Everything before the frame scanned from is older than t.
        prop_assert!(fs[..k].iter().all(|(h, _)| h.timestamp_ms < t));
        // And the answer is at most one indexed step ahead: no time entry with ts < t lies
        // between `from` and it.
        if let Some((ans, _)) = fs.iter().find(|(h, _)| h.timestamp_ms >= t) {
            prop_assert!(ans.base_offset >= from);
            let skipped = ix.times.entries().iter().any(|&(ts, r)| {
                let o = BASE + r as u64;
                ts < t && o > from && o <= ans.base_offset
            });
            prop_assert!(!skipped);
        }
    }

    #[test]
    fn cut_back_and_rebuilt_from_a_boundary_equals_the_original(
        spec in spec(),
        interval in 1u64..3000,
        cut in any::<prop::sample::Index>(),
    ) {
        let fs = frames(&spec);
        let mut whole = SegmentIndex::new(BASE, interval);
        feed(&mut whole, &fs);
        // Recovery: cut back to a checkpoint at frame k's start, then re-add the scan's frames.
        let k = cut.index(fs.len());
        let (_, at) = fs[k];
        let next = fs[k].0.base_offset;
        let mut ix = whole.clone();
        let idx_len = ix.offsets.truncate(at);
        let tix_len = ix.times.truncate(next);
        prop_assert_eq!(idx_len as usize % OFFSET_ENTRY_LEN, 0);
        prop_assert!(ix.offsets.entries().iter().all(|&(_, p)| (p as u64) < at));
        prop_assert!(ix.times.entries().iter().all(|&(_, r)| BASE + (r as u64) < next));
        // The files cut to those lengths decode to the cut index.
        let idx = whole.offsets.encode();
        prop_assert_eq!(
            &OffsetIndex::decode(BASE, interval, &idx[..idx_len as usize]).unwrap(),
            &ix.offsets
        );
        prop_assert_eq!(tix_len as usize, ix.times.entries().len() * TIME_ENTRY_LEN);
        feed(&mut ix, &fs[k..]);
        prop_assert_eq!(ix, whole);
    }

    #[test]
    fn index_decoders_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200), base in prop_oneof![any::<u64>(), Just(u64::MAX - 3)]) {
        if let Ok(ix) = OffsetIndex::decode(base, 4096, &bytes) {
            let _ = ix.lookup(base.wrapping_add(17));
        }
        if let Ok(ix) = TimeIndex::decode(base, &bytes) {
            let _ = ix.lookup(17);
        }
    }
}
