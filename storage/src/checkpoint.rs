//! The two-slot checkpoint file of a log (storage.md 3.4): how far the log is known durable,
//! so recovery scans only the tail after it.
//!
//! A checkpoint is written into slot `seq mod 2` and synced, so a torn write can only damage
//! the slot being written; the other slot still holds the previous checkpoint. On load the
//! valid slot with the greater `seq` wins.

use std::io;

use crate::format::{fixed_header, u64_at, HeaderError};
use crate::fs::{write_all_at, FsFile};

/// `FLXCKPT1`, the first 8 bytes of a valid slot.
pub const CHECKPOINT_MAGIC: [u8; 8] = *b"FLXCKPT1";
pub const SLOT_LEN: u64 = 64;
/// The file: slot A at 0, slot B at 64.
pub const CHECKPOINT_FILE_LEN: u64 = 2 * SLOT_LEN;

const FLAG_CLEAN: u8 = 1;
const FLAG_QUARANTINED: u8 = 2;

/// One checkpoint. Invariant kept by the writer: it never covers a byte that is not already on
/// stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    /// Incremented by each checkpoint; picks the slot and the winner.
    pub seq: u64,
    pub epoch: u64,
    /// Base offset of the segment `position` is in.
    pub segment_base: u64,
    /// Byte offset in that segment just past the last frame covered.
    pub position: u64,
    /// The offset of the next record at `position`.
    pub next_offset: u64,
    /// Timestamp of the last frame covered, Unix ms.
    pub last_ts: u64,
    /// Clean shutdown: nothing after `position`.
    pub clean: bool,
    pub quarantined: bool,
}

impl Checkpoint {
    /// Where this checkpoint's slot is in the file.
    pub fn slot_position(&self) -> u64 {
        (self.seq % 2) * SLOT_LEN
    }

    /// The checkpoint that follows this one (next seq, so the other slot), flags cleared.
    pub fn next(&self) -> Checkpoint {
        Checkpoint {
            seq: self.seq.wrapping_add(1),
            clean: false,
            quarantined: false,
            ..*self
        }
    }

    pub fn encode(&self) -> [u8; SLOT_LEN as usize] {
        let mut b = [0u8; SLOT_LEN as usize];
        b[0..8].copy_from_slice(&CHECKPOINT_MAGIC);
        for (at, v) in [
            (8, self.seq),
            (16, self.epoch),
            (24, self.segment_base),
            (32, self.position),
            (40, self.next_offset),
            (48, self.last_ts),
        ] {
            b[at..at + 8].copy_from_slice(&v.to_le_bytes());
        }
        b[56] = (if self.clean { FLAG_CLEAN } else { 0 })
            | (if self.quarantined {
                FLAG_QUARANTINED
            } else {
                0
            });
        let crc = crate::format::crc32c(&b[0..60]);
        b[60..64].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes one 64-byte slot (magic and CRC checked first).
    pub fn decode(slot: &[u8]) -> Result<Self, HeaderError> {
        let b = fixed_header(slot, &CHECKPOINT_MAGIC)?;
        Ok(Checkpoint {
            seq: u64_at(b, 8),
            epoch: u64_at(b, 16),
            segment_base: u64_at(b, 24),
            position: u64_at(b, 32),
            next_offset: u64_at(b, 40),
            last_ts: u64_at(b, 48),
            clean: b[56] & FLAG_CLEAN != 0,
            quarantined: b[56] & FLAG_QUARANTINED != 0,
        })
    }
}

/// The winning checkpoint of a file's bytes (up to 128; a short file has invalid slots):
/// the valid slot with the greater seq; `None` when neither is valid.
pub fn choose(file: &[u8]) -> Option<Checkpoint> {
    let slot = |at: usize| {
        file.get(at..at + SLOT_LEN as usize)
            .and_then(|s| Checkpoint::decode(s).ok())
            // A slot that decodes but sits in the wrong place was not written by us there.
            .filter(|c| c.slot_position() == at as u64)
    };
    match (slot(0), slot(SLOT_LEN as usize)) {
        (Some(a), Some(b)) => Some(if b.seq > a.seq { b } else { a }),
        (a, b) => a.or(b),
    }
}

/// Reads the checkpoint file and chooses.
pub fn load(file: &dyn FsFile) -> io::Result<Option<Checkpoint>> {
    let mut buf = [0u8; CHECKPOINT_FILE_LEN as usize];
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(choose(&buf[..got]))
}

/// Writes `cp` into its slot and syncs it. Only after this returns Ok may the caller rely on
/// it; on error, the other slot still holds the previous checkpoint.
pub fn write(file: &dyn FsFile, cp: &Checkpoint) -> io::Result<()> {
    write_all_at(file, &cp.encode(), cp.slot_position())?;
    file.sync_data()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::{Fs, OpenMode};
    use crate::sim::{Crash, FaultRule, SimFs};
    use std::path::Path;

    fn cp(seq: u64) -> Checkpoint {
        Checkpoint {
            seq,
            epoch: 77,
            segment_base: seq.wrapping_mul(4096),
            position: seq ^ 64,
            next_offset: seq.wrapping_mul(10),
            last_ts: seq ^ 1_765_140_000_000,
            clean: seq & 2 != 0,
            quarantined: seq & 4 != 0,
        }
    }

    fn file_with(cps: &[Checkpoint]) -> Vec<u8> {
        let mut f = vec![0u8; CHECKPOINT_FILE_LEN as usize];
        for c in cps {
            let at = c.slot_position() as usize;
            f[at..at + 64].copy_from_slice(&c.encode());
        }
        f
    }

    #[test]
    fn slots_round_trip_and_the_greater_seq_wins() {
        for s in [0, 1, 2, 14, 15, u64::MAX - 1, u64::MAX] {
            assert_eq!(Checkpoint::decode(&cp(s).encode()), Ok(cp(s)));
        }
        assert_eq!(&cp(1).encode()[0..8], b"FLXCKPT1");
        assert_eq!(choose(&file_with(&[cp(6), cp(7)])), Some(cp(7)));
        assert_eq!(choose(&file_with(&[cp(7), cp(8)])), Some(cp(8)));
        assert_eq!(choose(&file_with(&[cp(8)])), Some(cp(8)));
        assert_eq!(choose(&[0u8; 128]), None);
        assert_eq!(choose(&[]), None);
        assert_eq!(cp(3).next().seq, 4);
        assert_eq!(cp(3).next().slot_position(), 0);
        assert!(!cp(3).next().clean);
    }

    #[test]
    fn a_torn_slot_at_every_cut_leaves_the_other_chosen() {
        for (old, new) in [(cp(10), cp(11)), (cp(11), cp(12))] {
            let before = file_with(&[old]);
            let after = file_with(&[old, new]);
            let at = new.slot_position() as usize;
            for cut in 0..64 {
                // The new slot's write reached the disk up to `cut` bytes.
                let mut f = before.clone();
                f[at..at + cut].copy_from_slice(&after[at..at + cut]);
                assert_eq!(choose(&f), Some(old), "cut {cut}");
            }
            assert_eq!(choose(&after), Some(new));
            // A file that ends inside the slot (never extended to 128 bytes).
            for len in 64..128 {
                let f = file_with(&[cp(0), cp(1)]);
                assert_eq!(choose(&f[..len]), Some(cp(0)));
            }
        }
    }

    #[test]
    fn every_bit_flip_in_a_slot_falls_back_to_the_other() {
        let f = file_with(&[cp(20), cp(21)]);
        for bit in 512..1024 {
            let mut d = f.clone();
            d[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(choose(&d), Some(cp(20)), "bit {bit}");
        }
        for bit in 0..512 {
            let mut d = f.clone();
            d[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(choose(&d), Some(cp(21)), "bit {bit}");
        }
    }

    #[test]
    fn a_slot_copied_to_the_wrong_place_is_ignored() {
        let mut f = file_with(&[cp(4)]);
        let odd = cp(5).encode();
        f[0..64].copy_from_slice(&odd);
        assert_eq!(choose(&f), None);
    }

    #[test]
    fn write_and_load_through_fs_survive_power_loss_and_failed_syncs() {
        let fs = SimFs::new();
        fs.mkdir_durable(Path::new("/log")).unwrap();
        let path = Path::new("/log/checkpoint");
        let f = fs.open(path, OpenMode::CreateNew).unwrap();
        fs.sync_dir(Path::new("/log")).unwrap();
        assert_eq!(load(&*f).unwrap(), None);
        // First checkpoint in slot B: slot A is a hole of zeros.
        write(&*f, &cp(1)).unwrap();
        assert_eq!(load(&*f).unwrap(), Some(cp(1)));
        write(&*f, &cp(2)).unwrap();
        fs.fail(FaultRule::sync(1, libc::EIO));
        assert!(write(&*f, &cp(3)).is_err());
        for seed in 0..16 {
            let after = fs.crash(Crash::PowerLoss { seed });
            let g = after.open(path, OpenMode::Read).unwrap();
            assert_eq!(load(&*g).unwrap(), Some(cp(2)), "seed {seed}");
        }
    }
}
