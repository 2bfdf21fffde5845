//! The broker budget a stream's log holds, at the boundaries a retention eviction makes: an
//! append that *shrinks* the log (a small record evicting a big one) gives back exactly the
//! difference. The log's own unit tests append records of one size only, so the net charge
//! never went down and `before - after` in `MemoryLog::append` could become `before + after`
//! unnoticed (a `cargo mutants` survivor, `mutants/report.md`).

use std::sync::Arc;

use bytes::Bytes;
use felix_broker::budget::MemoryBudget;
use felix_broker::log::{AppendError, Log, MemoryLog, Retention, RECORD_OVERHEAD};

fn bytes(n: usize) -> Bytes {
    Bytes::from(vec![7u8; n])
}

#[test]
fn an_append_that_shrinks_the_log_releases_exactly_the_difference() {
    let budget: Arc<MemoryBudget> = MemoryBudget::new(10_000);
    // Another holder of the same budget: a release of too much would eat into its bytes.
    assert!(budget.try_reserve(1_000));
    let one = Retention {
        max_records: 1,
        max_bytes: 1 << 20,
    };
    let mut log = MemoryLog::with_budget(one, budget.clone());
    log.append(&[bytes(500)], 0).unwrap();
    assert_eq!(budget.used(), 1_000 + RECORD_OVERHEAD + 500);
    // One record kept: the 2-byte record evicts the 500-byte one, the net charge drops by 498.
    assert_eq!(log.append(&[bytes(2)], 0).unwrap().offsets, 1..2);
    assert_eq!(log.first_offset(), 1);
    assert_eq!(
        budget.used(),
        1_000 + RECORD_OVERHEAD + 2,
        "the shrinking append must give back exactly 498 bytes"
    );
    // Same size again: nothing reserved, nothing released.
    log.append(&[bytes(2)], 0).unwrap();
    assert_eq!(budget.used(), 1_000 + RECORD_OVERHEAD + 2);
    // Growing back reserves the difference; the budget fits it exactly to the byte.
    let room = budget.limit() - budget.used();
    log.append(&[bytes(2 + room)], 0).unwrap();
    assert_eq!(
        budget.used(),
        budget.limit(),
        "a record that fits exactly is taken"
    );
    let Err(AppendError::MemoryFull(err)) = log.append(&[bytes(3 + room)], 0) else {
        panic!("an append past the budget must be refused with MemoryFull");
    };
    assert_eq!(
        err.needed, 1,
        "one byte more than the budget holds is refused whole"
    );
    assert_eq!(log.next_offset(), 4, "a refused append appends nothing");
    drop(log);
    assert_eq!(
        budget.used(),
        1_000,
        "dropping the log gives back all it held, no more"
    );
}
