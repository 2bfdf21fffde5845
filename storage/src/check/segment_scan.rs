//! The body of the `segment_scan` fuzz target (`storage/fuzz`), public so that the fuzz crate
//! and this crate's proptest run the same code: a proptest on random and mutated segments in
//! every `cargo test`, libFuzzer's coverage-guided search where cargo-fuzz is installed.
//!
//! Input: arbitrary bytes taken as a whole segment file (header, then frames). Asserted:
//! - `scan` and a full read through `frames`/`RecordIter` never panic;
//! - every frame the scan accepts decodes on its own (its CRC verified) at the position the
//!   scan gave, frames are back to back from byte 64, and offsets continue;
//! - every record returned lies inside a frame whose CRC verified, with consecutive offsets;
//! - the resync probe's later frames are CRC-valid frames past the expected offset;
//! - with the `sim` feature (or in tests): `check` of the bytes as a log never panics, counts
//!   exactly the scan's records, and after `repair` the log checks clean (or the damage is of
//!   a kind repair refuses: an unknown format).

use crate::format::{decode_frame, frames, SegmentHeader, SEGMENT_HEADER_LEN};
use crate::scan::{self, ScanOutcome, ScanStart};

/// Runs every assertion of the module doc on `data`; panics on a violation.
pub fn segment_scan(data: &[u8]) {
    let (base, compacted) =
        SegmentHeader::decode(data).map_or((0, false), |h| (h.base_offset, h.compacted));
    let start = ScanStart {
        position: SEGMENT_HEADER_LEN.min(data.len() as u64),
        ..ScanStart::segment(base, compacted)
    };
    let mut accepted = Vec::new();
    let (outcome, end) = scan::scan(data, start, &mut |h, pos| accepted.push((*h, pos)))
        .expect("a slice source never fails");
    let mut at = start.position;
    let mut next = base;
    let mut records = 0u64;
    for (h, pos) in &accepted {
        assert_eq!(*pos, at, "frames are back to back");
        assert!(compacted || h.base_offset == next, "offsets continue");
        let f = decode_frame(&data[*pos as usize..]).expect("an accepted frame checks on its own");
        assert_eq!(f.header, *h);
        let mut o = h.base_offset;
        for rec in f.records() {
            assert_eq!(rec.offset, o);
            let inside = f.as_bytes().as_ptr_range();
            assert!(inside.contains(&rec.payload.as_ptr()) || rec.payload.is_empty());
            o += 1;
            records += 1;
        }
        assert_eq!(o, h.next_offset(), "every record of the frame is returned");
        at += h.total_len();
        next = h.next_offset();
    }
    assert_eq!(end.position, at);
    assert_eq!(
        end.next_offset,
        if accepted.is_empty() { base } else { next }
    );
    // A full read from the first frame yields the same valid prefix (continuity aside).
    let mut read = 0;
    for f in frames(&data[start.position as usize..]) {
        let Ok(f) = f else { break };
        if read < accepted.len() {
            assert_eq!(f.header, accepted[read].0);
        }
        read += 1;
        let _ = f.records().count();
    }
    assert!(read >= accepted.len());
    for cp in [0, SEGMENT_HEADER_LEN, end.position, u64::MAX] {
        let _ = scan::classify(&outcome, cp);
    }
    match &outcome {
        ScanOutcome::End => assert_eq!(end.position, data.len() as u64),
        ScanOutcome::Damaged(d) => {
            assert_eq!(d.at, end.position);
            assert!(d.later_count as usize >= d.later.len());
            for l in &d.later {
                assert!(l.position > d.at && l.base_offset > d.expected);
                let f = decode_frame(&data[l.position as usize..]).expect("later frames check");
                assert_eq!(f.header.total_len(), l.total_len);
            }
        }
    }
    #[cfg(any(test, feature = "sim"))]
    check_and_repair(data, records);
    #[cfg(not(any(test, feature = "sim")))]
    let _ = records;
}

/// `check` of `data` as the only segment of a log on a simulated file system, then `repair`,
/// then `check` again.
#[cfg(any(test, feature = "sim"))]
fn check_and_repair(data: &[u8], records: u64) {
    use super::{run, CheckOptions, EXIT_CLEAN, EXIT_FAILED};
    use crate::format::SegmentFile;
    use crate::fs::{write_all_at, Fs, OpenMode};
    use std::path::Path;

    let base = SegmentHeader::decode(data).map_or(0, |h| h.base_offset);
    let fs = crate::sim::SimFs::new();
    let dir = Path::new("/d/streams/t/n/s");
    fs.create_dir_all(dir).expect("mkdir");
    let f = fs
        .open(
            &dir.join(SegmentFile::Segment.name(base)),
            OpenMode::CreateNew,
        )
        .expect("create");
    write_all_at(&*f, data, 0).expect("write");
    drop(f);
    let first = run(&*fs, Path::new("/d"), &CheckOptions::default());
    let log = first.report.logs.first().expect("the directory is a log");
    if data.len() as u64 >= SEGMENT_HEADER_LEN && SegmentHeader::decode(data).is_ok() {
        assert_eq!(log.records, records, "check counts the scan's records");
    }
    if first.exit_code == EXIT_FAILED {
        return; // an unknown format: repair leaves it alone
    }
    let opts = CheckOptions {
        repair: true,
        ..CheckOptions::default()
    };
    let repaired = run(&*fs, Path::new("/d"), &opts);
    assert_eq!(repaired.exit_code, EXIT_CLEAN, "{}", repaired.report);
    let again = run(&*fs, Path::new("/d"), &CheckOptions::default());
    assert_eq!(again.exit_code, EXIT_CLEAN, "{}", again.report);
}
