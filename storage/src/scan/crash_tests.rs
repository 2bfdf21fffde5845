//! The format pieces together under simulated crashes: a minimal writer that keeps the
//! storage.md rules (synced hint = durable watermark at encoding, checkpoint only over synced
//! bytes), a crash of every kind, then the recovery steps of 8.2 with this crate's API. Without
//! bit flips, a crash must never look like corruption, and nothing synced may be lost.

use std::path::Path;

use proptest::prelude::*;

use super::*;
use crate::checkpoint::{self, Checkpoint};
use crate::format::{encode_frame, FrameMeta, LogKind, SegmentHeader};
use crate::fs::{write_all_at, Fs, OpenMode};
use crate::sim::{Crash, SimFs};

const BASE: u64 = 100;

#[derive(Debug, Clone)]
enum Step {
    Append(Vec<usize>),
    Sync,
    Checkpoint,
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(
        prop_oneof![
            6 => prop::collection::vec(0usize..300, 1..4).prop_map(Step::Append),
            2 => Just(Step::Sync),
            1 => Just(Step::Checkpoint),
        ],
        1..40,
    )
}

fn crash_kind() -> impl Strategy<Value = Crash> {
    prop_oneof![
        Just(Crash::ProcessKill),
        any::<u64>().prop_map(|seed| Crash::PowerLoss { seed }),
        any::<u64>().prop_map(|seed| Crash::TornWrite { seed }),
        any::<u64>().prop_map(|seed| Crash::PowerLossReordered { seed }),
    ]
}

/// What the writer knew when it crashed.
struct Written {
    /// (base offset, position) of every frame written.
    frames: Vec<(u64, u64)>,
    next_offset: u64,
    synced_offset: u64,
}

fn write_log(fs: &SimFs, steps: &[Step]) -> Written {
    let dir = Path::new("/log");
    fs.mkdir_durable(dir).unwrap();
    let seg = fs
        .open(&dir.join("00000000000000000100.seg"), OpenMode::CreateNew)
        .unwrap();
    let header = SegmentHeader {
        kind: LogKind::Stream,
        compacted: false,
        base_offset: BASE,
        epoch: 1,
        created_unix_ms: 0,
    };
    write_all_at(&*seg, &header.encode(), 0).unwrap();
    seg.sync_data().unwrap();
    let ck = fs
        .open(&dir.join("checkpoint"), OpenMode::CreateNew)
        .unwrap();
    fs.sync_dir(dir).unwrap();

    let mut w = Written {
        frames: Vec::new(),
        next_offset: BASE,
        synced_offset: BASE,
    };
    let (mut pos, mut synced_pos, mut last_ts) = (64u64, 64u64, 0u64);
    let mut synced_ts = 0;
    let mut cp: Option<Checkpoint> = None;
    let mut buf = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        match step {
            Step::Append(sizes) => {
                let payloads: Vec<Vec<u8>> = sizes.iter().map(|n| vec![i as u8; *n]).collect();
                buf.clear();
                last_ts += (i % 2) as u64;
                let m = FrameMeta {
                    base_offset: w.next_offset,
                    timestamp_ms: last_ts,
                    synced_hint: w.synced_offset,
                };
                let h = encode_frame(&mut buf, m, &payloads).unwrap();
                write_all_at(&*seg, &buf, pos).unwrap();
                w.frames.push((w.next_offset, pos));
                pos += h.total_len();
                w.next_offset = h.next_offset();
            }
            Step::Sync => {
                seg.sync_data().unwrap();
                w.synced_offset = w.next_offset;
                synced_pos = pos;
                synced_ts = last_ts;
            }
            Step::Checkpoint => {
                let next = Checkpoint {
                    seq: cp.map_or(0, |c| c.seq + 1),
                    epoch: 1,
                    segment_base: BASE,
                    position: synced_pos,
                    next_offset: w.synced_offset,
                    last_ts: synced_ts,
                    clean: false,
                    quarantined: false,
                };
                checkpoint::write(&*ck, &next).unwrap();
                cp = Some(next);
            }
        }
    }
    w
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn a_crash_without_bit_flips_is_never_corruption_and_keeps_every_synced_frame(
        steps in steps(),
        how in crash_kind(),
    ) {
        let fs = SimFs::new();
        let w = write_log(&fs, &steps);
        let after = fs.crash(how);

        // Recovery, storage.md 8.2 steps 2, 3 and 5.
        let seg = after
            .open(Path::new("/log/00000000000000000100.seg"), OpenMode::Read)
            .unwrap();
        let ck = after.open(Path::new("/log/checkpoint"), OpenMode::Read).unwrap();
        let cp = checkpoint::load(&*ck).unwrap();
        let src = FileSource::new(&*seg).unwrap();
        let start = match cp {
            Some(c) => ScanStart {
                position: c.position,
                next_offset: c.next_offset,
                last_ts: c.last_ts,
                compacted: false,
            },
            None => ScanStart::segment(BASE, false),
        };
        prop_assert!(start.position <= src.len(), "checkpoint past the synced end");
        let mut seen = Vec::new();
        let (outcome, end) = scan(&src, start, &mut |h, p| seen.push((h.base_offset, p))).unwrap();
        let damage = classify(&outcome, cp.map_or(0, |c| c.position));

        prop_assert!(damage != Some(Damage::Corrupt), "{:?} after {:?}", outcome, how);
        // Every frame the scan accepted is one that was written, where it was written.
        let first = w.frames.iter().position(|f| f.1 == start.position).unwrap_or(w.frames.len());
        prop_assert_eq!(&seen[..], &w.frames[first..first + seen.len()]);
        // Nothing synced is lost; after a process crash nothing written is lost (a torn write
        // loses at most its own frame).
        prop_assert!(end.next_offset >= w.synced_offset);
        match how {
            Crash::ProcessKill => {
                prop_assert_eq!(&outcome, &ScanOutcome::End);
                prop_assert_eq!(end.next_offset, w.next_offset);
            }
            Crash::TornWrite { .. } => {
                let lost = w.frames.len() - first - seen.len();
                prop_assert!(lost <= 1, "a torn write lost {} frames", lost);
            }
            _ => {}
        }
    }
}
