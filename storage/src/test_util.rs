//! Helpers shared by this crate's tests.

use bytes::Bytes;

use crate::log::DurableLog;

/// Every record of `log` from `from` on, read in calls of at most `max_records` records and
/// `max_bytes` bytes (small bounds make a test cross chunk and segment edges), until a read
/// returns nothing.
pub(crate) fn read_all(
    log: &DurableLog,
    from: u64,
    max_records: usize,
    max_bytes: usize,
) -> Vec<(u64, Bytes)> {
    let mut out = Vec::new();
    let mut at = from;
    loop {
        let r = log.read(at, max_records, max_bytes).unwrap();
        match r.records.last() {
            Some(&(last, _)) => {
                at = last + 1;
                out.extend(r.records);
            }
            None => return out,
        }
    }
}
