use super::*;
use crate::format::{encode_frame, FrameMeta, LogKind, SegmentHeader};
use proptest::prelude::*;

const BASE: u64 = 1000;

/// A segment built by the test: its bytes, the start of each frame, each frame's header.
struct Seg {
    bytes: Vec<u8>,
    starts: Vec<u64>,
    headers: Vec<FrameHeader>,
}

impl Seg {
    fn end(&self) -> u64 {
        self.bytes.len() as u64
    }
}

/// Frames of the given record payload sizes; `hint(i, base)` gives frame i's synced hint.
fn build(frames: &[Vec<usize>], hint: impl Fn(usize, u64) -> u64) -> Seg {
    let header = SegmentHeader {
        kind: LogKind::Stream,
        compacted: false,
        base_offset: BASE,
        epoch: 7,
        created_unix_ms: 1,
    };
    let mut bytes = header.encode().to_vec();
    let (mut starts, mut headers) = (Vec::new(), Vec::new());
    let mut next = BASE;
    for (i, sizes) in frames.iter().enumerate() {
        let payloads: Vec<Vec<u8>> = sizes
            .iter()
            .enumerate()
            .map(|(j, n)| (0..*n).map(|b| (b * 31 + j * 7 + i) as u8).collect())
            .collect();
        starts.push(bytes.len() as u64);
        let m = FrameMeta {
            base_offset: next,
            timestamp_ms: 100 + i as u64 / 2,
            synced_hint: hint(i, next),
        };
        let h = encode_frame(&mut bytes, m, &payloads).unwrap();
        next = h.next_offset();
        headers.push(h);
    }
    Seg {
        bytes,
        starts,
        headers,
    }
}

fn run(src: &[u8]) -> (ScanOutcome, ScanStart, Vec<(u64, u64)>) {
    let mut seen = Vec::new();
    let (o, end) = scan(src, ScanStart::segment(BASE, false), &mut |h, pos| {
        seen.push((h.base_offset, pos))
    })
    .unwrap();
    (o, end, seen)
}

fn damaged(o: &ScanOutcome) -> &Damaged {
    match o {
        ScanOutcome::Damaged(d) => d,
        ScanOutcome::End => panic!("expected damage"),
    }
}

#[test]
fn a_clean_segment_scans_to_the_end_reporting_every_frame() {
    let s = build(&[vec![3], vec![0, 5], vec![200_000], vec![1]], |_, b| b);
    let (o, end, seen) = run(&s.bytes);
    assert_eq!(o, ScanOutcome::End);
    assert_eq!(classify(&o, 0), None);
    let want: Vec<(u64, u64)> = s
        .headers
        .iter()
        .zip(&s.starts)
        .map(|(h, p)| (h.base_offset, *p))
        .collect();
    assert_eq!(seen, want);
    assert_eq!(end.position, s.end());
    assert_eq!(end.next_offset, BASE + 5);
    assert_eq!(end.last_ts, s.headers[3].timestamp_ms);
    // From a checkpoint in the middle.
    let mid = ScanStart {
        position: s.starts[2],
        next_offset: s.headers[2].base_offset,
        last_ts: s.headers[1].timestamp_ms,
        compacted: false,
    };
    let (o, end2) = scan(&s.bytes[..], mid, &mut |_, _| {}).unwrap();
    assert_eq!((o, end2), (ScanOutcome::End, end));
    assert!(scan(&s.bytes[..100], mid, &mut |_, _| {}).is_err());
}

#[test]
fn a_bit_flip_in_a_frame_larger_than_the_window_is_found() {
    let s = build(&[vec![10], vec![300_000], vec![10]], |_, _| 0);
    let mut b = s.bytes.clone();
    let bit = (s.starts[1] + 250_000) * 8 + 3;
    b[(bit / 8) as usize] ^= 1 << (bit % 8);
    let (o, end, seen) = run(&b);
    let d = damaged(&o);
    assert_eq!(d.at, s.starts[1]);
    assert!(matches!(d.error, FrameError::BadCrc { .. }));
    assert_eq!(d.later_count, 1);
    assert_eq!(d.later[0].position, s.starts[2]);
    assert_eq!(seen.len(), 1);
    assert_eq!(end.position, s.starts[1]);
    assert_eq!(classify(&o, 0), Some(Damage::PowerLossTear));
}

#[test]
fn zero_filled_tails_are_torn() {
    let mut s = build(&[vec![5], vec![6]], |_, b| b);
    let good = s.end();
    s.bytes.extend_from_slice(&[0u8; 10_000]);
    let (o, end, _) = run(&s.bytes);
    assert_eq!(damaged(&o).at, good);
    assert_eq!(end.position, good);
    assert_eq!(classify(&o, 0), Some(Damage::Torn));
    assert_eq!(classify(&o, good), Some(Damage::Torn));
    assert_eq!(classify(&o, good + 1), Some(Damage::Corrupt));
}

#[test]
fn continuity_breaks_are_damage() {
    // A frame repeated (same offsets twice), e.g. a replayed write.
    let s = build(&[vec![1], vec![2]], |_, _| 0);
    let mut b = s.bytes.clone();
    b.extend_from_slice(&s.bytes[s.starts[1] as usize..]);
    let (o, _, seen) = run(&b);
    let d = damaged(&o);
    assert_eq!(seen.len(), 2);
    assert_eq!(d.at, s.end());
    assert_eq!(
        d.error,
        FrameError::UnexpectedOffset {
            expected: BASE + 2,
            found: BASE + 1
        }
    );
}

#[test]
fn classify_follows_the_table() {
    let d = |later_count, max_later_hint| {
        ScanOutcome::Damaged(Damaged {
            at: 500,
            expected: 40,
            error: FrameError::BadRecords,
            later: Vec::new(),
            later_count,
            max_later_hint,
        })
    };
    assert_eq!(classify(&d(0, 0), 0), Some(Damage::Torn));
    assert_eq!(classify(&d(0, 0), 500), Some(Damage::Torn));
    assert_eq!(classify(&d(0, 0), 501), Some(Damage::Corrupt));
    assert_eq!(classify(&d(0, 0), u64::MAX), Some(Damage::Corrupt));
    assert_eq!(classify(&d(3, 40), 64), Some(Damage::PowerLossTear));
    assert_eq!(classify(&d(3, 41), 64), Some(Damage::Corrupt));
    assert_eq!(classify(&d(3, 0), 501), Some(Damage::Corrupt));
}

#[test]
fn a_frame_forged_inside_a_torn_payload_cannot_cause_a_quarantine() {
    // The payload of the last (torn) frame holds a valid frame claiming that everything up to
    // a huge offset was durable.
    let mut forged = Vec::new();
    let m = FrameMeta {
        base_offset: BASE + 5,
        timestamp_ms: 100,
        synced_hint: u64::MAX,
    };
    encode_frame(&mut forged, m, &[b"x"]).unwrap();
    let mut payload = vec![0u8; 100];
    payload.extend_from_slice(&forged);
    payload.extend(vec![0u8; 100]);
    let mut s = build(&[vec![1]], |_, _| 0);
    let m = FrameMeta {
        base_offset: BASE + 1,
        timestamp_ms: 100,
        synced_hint: 0,
    };
    encode_frame(&mut s.bytes, m, &[payload]).unwrap();
    s.bytes.truncate(s.bytes.len() - 50);
    let (o, _, _) = run(&s.bytes);
    assert_eq!(damaged(&o).later_count, 0);
    assert_eq!(classify(&o, 0), Some(Damage::Torn));
}

#[test]
fn scans_a_real_file() {
    use crate::fs::{write_all_at, Fs, OpenMode, RealFs};
    let dir = tempfile::tempdir().unwrap();
    let fs = RealFs::new();
    let path = dir.path().join("00000000000000001000.seg");
    let f = fs.open(&path, OpenMode::CreateNew).unwrap();
    let s = build(&[vec![10; 3], vec![70_000]], |_, b| b);
    write_all_at(&*f, &s.bytes, 0).unwrap();
    write_all_at(&*f, &[0xFF; 30], s.end()).unwrap();
    let src = FileSource::new(&*f).unwrap();
    let mut n = 0;
    let (o, end) = scan(&src, ScanStart::segment(BASE, false), &mut |_, _| n += 1).unwrap();
    assert_eq!(n, 2);
    assert_eq!(end.position, s.end());
    assert_eq!(classify(&o, 0), Some(Damage::Torn));
}

fn frame_sizes() -> impl Strategy<Value = Vec<Vec<usize>>> {
    prop::collection::vec(prop::collection::vec(0usize..80, 1..5), 1..12)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn truncation_at_every_byte_is_torn_at_the_last_boundary(frames in frame_sizes()) {
        let s = build(&frames, |_, b| b);
        for cut in SEGMENT_HEADER_LEN..=s.end() {
            let (o, end, seen) = run(&s.bytes[..cut as usize]);
            let whole = s.starts.iter().filter(|&&p| p < cut).count();
            let boundary = s.starts.iter().chain(std::iter::once(&s.end()))
                .copied().filter(|&p| p <= cut).max().unwrap();
            prop_assert_eq!(end.position, boundary);
            if boundary == cut {
                prop_assert_eq!(&o, &ScanOutcome::End);
                prop_assert_eq!(seen.len(), whole);
            } else {
                prop_assert_eq!(damaged(&o).at, boundary);
                prop_assert_eq!(classify(&o, 0), Some(Damage::Torn));
                prop_assert_eq!(seen.len(), whole - 1);
            }
        }
    }

    #[test]
    fn a_flipped_bit_is_classified_by_the_later_hints(
        frames in frame_sizes(),
        which in any::<prop::sample::Index>(),
        bit in any::<prop::sample::Index>(),
    ) {
        let k = which.index(frames.len());
        // Written with `always`: each frame encoded after all before it were durable.
        let synced = build(&frames, |_, b| b);
        // Never synced while writing: every hint 0.
        let unsynced = build(&frames, |_, _| 0);
        for (s, durable_before) in [(&synced, true), (&unsynced, false)] {
            let start = s.starts[k];
            let flen = s.headers[k].total_len();
            let b_at = start * 8 + bit.index((flen * 8) as usize) as u64;
            let mut b = s.bytes.clone();
            b[(b_at / 8) as usize] ^= 1 << (b_at % 8);
            let (o, end, seen) = run(&b);
            let d = damaged(&o);
            prop_assert_eq!(d.at, start);
            prop_assert_eq!(end.position, start);
            prop_assert_eq!(seen.len(), k);
            let last = k + 1 == frames.len();
            prop_assert_eq!(d.later_count as usize, frames.len() - k - 1);
            let want = if last {
                Damage::Torn
            } else if durable_before {
                Damage::Corrupt
            } else {
                Damage::PowerLossTear
            };
            prop_assert_eq!(classify(&o, 0), Some(want));
            prop_assert_eq!(classify(&o, start), Some(want));
            // A checkpoint past the damage means the bytes were durable: always corruption.
            prop_assert_eq!(classify(&o, start + 1), Some(Damage::Corrupt));
        }
    }

    #[test]
    fn garbage_never_panics(
        frames in frame_sizes(),
        junk in prop::collection::vec(any::<u8>(), 0..2000),
        from_zero: bool,
    ) {
        let mut s = build(&frames, |_, b| b);
        s.bytes.extend_from_slice(&junk);
        let _ = run(&s.bytes);
        let mut all = s.bytes[..64].to_vec();
        all.extend_from_slice(&junk);
        let start = if from_zero { 0 } else { 64 };
        let st = ScanStart { position: start, next_offset: 0, last_ts: 0, compacted: from_zero };
        let _ = scan(&all[..], st, &mut |_, _| {});
        let _ = resync(&junk[..], 0, 0);
    }

    #[test]
    fn damage_anywhere_never_yields_a_frame_that_was_not_written(
        frames in frame_sizes(),
        at in any::<prop::sample::Index>(),
        junk in prop::collection::vec(any::<u8>(), 1..64),
        mode in 0u8..3,
    ) {
        let s = build(&frames, |_, b| b);
        let m = 64 + at.index((s.end() - 64) as usize);
        let mut b = s.bytes.clone();
        match mode {
            // Overwrite, insert, or cut and append junk.
            0 => {
                let n = junk.len().min(b.len() - m);
                b[m..m + n].copy_from_slice(&junk[..n]);
            }
            1 => {
                b.splice(m..m, junk.iter().copied());
            }
            _ => {
                b.truncate(m);
                b.extend_from_slice(&junk);
            }
        }
        let (o, end, seen) = run(&b);
        prop_assert!(end.position <= b.len() as u64);
        let written: Vec<(u64, u64)> =
            s.headers.iter().zip(&s.starts).map(|(h, p)| (h.base_offset, *p)).collect();
        // A prefix of what was written, containing at least every frame wholly before `m`.
        prop_assert_eq!(&seen[..], &written[..seen.len()]);
        let intact = s.starts.iter().zip(&s.headers)
            .filter(|(p, h)| **p + h.total_len() <= m as u64).count();
        prop_assert!(seen.len() >= intact);
        if let ScanOutcome::Damaged(d) = &o {
            prop_assert!(d.at >= 64 && d.at < b.len() as u64);
            for l in &d.later {
                prop_assert!(written.iter().any(|w| w.0 == l.base_offset));
            }
        }
    }
}

/// Figures for the report, not a check (no timing assertions on a shared machine):
/// `cargo test --release -p felix-storage scan_throughput -- --ignored --nocapture`.
#[test]
#[ignore]
fn scan_throughput() {
    let frames: Vec<Vec<usize>> = (0..64 * 1024).map(|_| vec![1000]).collect();
    let s = build(&frames, |_, b| b);
    let t = std::time::Instant::now();
    let (o, _, seen) = run(&s.bytes);
    let dt = t.elapsed().as_secs_f64();
    assert_eq!((o, seen.len()), (ScanOutcome::End, frames.len()));
    let mb = s.bytes.len() as f64 / 1e6;
    println!(
        "scan: {mb:.0} MB of 1 KiB frames in {dt:.3} s = {:.0} MB/s",
        mb / dt
    );
    // Worst realistic probe: a damaged first frame followed by the whole segment.
    let mut b = s.bytes.clone();
    b[64 + 45] ^= 1;
    let t = std::time::Instant::now();
    let (o, _, _) = run(&b);
    let dt = t.elapsed().as_secs_f64();
    assert_eq!(damaged(&o).later_count as usize, frames.len() - 1);
    println!(
        "probe after damage at the start: {mb:.0} MB in {dt:.3} s = {:.0} MB/s",
        mb / dt
    );
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let junk: Vec<u8> = (0..s.bytes.len())
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let t = std::time::Instant::now();
    let d = resync(&junk[..], 0, 0).unwrap();
    let dt = t.elapsed().as_secs_f64();
    println!(
        "probe over random bytes: {mb:.0} MB in {dt:.3} s = {:.0} MB/s ({} found)",
        mb / dt,
        d.later_count
    );
}
