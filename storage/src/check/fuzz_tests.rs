//! The `segment_scan` fuzz body as proptests (random bytes; valid segments damaged anywhere),
//! and the seed writer of the fuzz corpus.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use proptest::prelude::*;

use super::*;
use crate::format::{encode_frame, FrameMeta, SegmentFile, SegmentHeader};
use crate::fs::Fs;

fn valid_segment(base: u64, sizes: &[usize]) -> Vec<u8> {
    let h = SegmentHeader {
        kind: crate::format::LogKind::Stream,
        compacted: false,
        base_offset: base,
        epoch: 7,
        created_unix_ms: 1,
    };
    let mut out = h.encode().to_vec();
    let mut o = base;
    for (i, &n) in sizes.iter().enumerate() {
        let recs: Vec<Vec<u8>> = (0..(i % 3 + 1)).map(|k| vec![(i + k) as u8; n]).collect();
        let meta = FrameMeta {
            base_offset: o,
            timestamp_ms: 100 + i as u64,
            synced_hint: o,
        };
        encode_frame(&mut out, meta, &recs).unwrap();
        o += recs.len() as u64;
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// The fuzz target's body on random bytes.
    #[test]
    fn segment_scan_on_random_bytes(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        segment_scan::segment_scan(&data);
    }

    /// The fuzz target's body on valid segments damaged anywhere (flip, cut, overwrite).
    #[test]
    fn segment_scan_on_damaged_segments(
        base in 0u64..1_000,
        sizes in proptest::collection::vec(0usize..90, 1..12),
        how in 0u8..3,
        at in any::<prop::sample::Index>(),
        bit in 0u8..8,
        junk in proptest::collection::vec(any::<u8>(), 1..40),
    ) {
        let mut seg = valid_segment(base, &sizes);
        let i = at.index(seg.len());
        match how {
            0 => seg[i] ^= 1 << bit,
            1 => seg.truncate(i),
            _ => for (k, j) in junk.iter().enumerate() {
                if let Some(b) = seg.get_mut(i + k) { *b = *j; }
            },
        }
        segment_scan::segment_scan(&seg);
    }
}

#[test]
fn segment_scan_of_an_intact_segment_keeps_every_record() {
    let seg = valid_segment(10, &[5, 0, 70, 3]);
    segment_scan::segment_scan(&seg);
    let fs = crate::sim::SimFs::new();
    let dir = Path::new("/d/s");
    fs.create_dir_all(dir).unwrap();
    let f = fs
        .open(
            &dir.join(SegmentFile::Segment.name(10)),
            crate::fs::OpenMode::CreateNew,
        )
        .unwrap();
    crate::fs::write_all_at(&*f, &seg, 0).unwrap();
    let r = run(&*fs, Path::new("/d"), &CheckOptions::default());
    let log = &r.report.logs[0];
    assert_eq!(
        (log.records, log.first_offset, log.next_offset),
        (1 + 2 + 3 + 1, 10, 17)
    );
    let _: Arc<dyn Fs> = fs;
}

/// Writes seed inputs for the `segment_scan` fuzz target (valid segments, one damaged copy of
/// each) into `$FELIX_FUZZ_SEEDS`: `FELIX_FUZZ_SEEDS=fuzz/corpus/segment_scan cargo test -p
/// felix-storage --lib write_fuzz_seeds -- --ignored`.
#[test]
#[ignore = "writes the fuzz corpus; run by hand"]
fn write_fuzz_seeds() {
    let out = PathBuf::from(std::env::var("FELIX_FUZZ_SEEDS").expect("FELIX_FUZZ_SEEDS"));
    std::fs::create_dir_all(&out).unwrap();
    for (i, sizes) in [
        &[3usize][..],
        &[0, 10, 200],
        &[40; 12],
        &[1, 2, 3, 4, 5, 6, 7],
    ]
    .iter()
    .enumerate()
    {
        let seg = valid_segment(i as u64 * 1000, sizes);
        std::fs::write(out.join(format!("valid-{i}")), &seg).unwrap();
        let mut torn = seg.clone();
        torn.truncate(seg.len() - 3);
        std::fs::write(out.join(format!("torn-{i}")), &torn).unwrap();
    }
}
