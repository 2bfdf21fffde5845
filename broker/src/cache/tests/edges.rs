//! Edge cases of cache.rs that a full `cargo mutants` run showed no test could see (see
//! mutants/report.md): each test fails on the planted change named in its comment.

use super::*;

/// Versions start at 1 and 0 is never assigned: the wire sends version 0 for "no version"
/// (conditions other than if_version), so a compare-and-set holding 0 must never match a
/// live entry. (Kills `fetch_add(1) + 1` → `* 1`, which hands out 0 first.)
#[test]
fn versions_start_at_one_so_if_version_zero_never_matches() {
    let c = single_shard(1 << 20);
    let t = Instant::now();
    assert_eq!(c.put("k", b("a"), None, PutCondition::Always, t), Ok(1));
    assert_eq!(
        c.put("k", b("b"), None, PutCondition::IfVersion(0), t),
        Err(CacheError::Conflict { current: Some(1) })
    );
    assert_eq!(c.put("j", b("c"), None, PutCondition::Always, t), Ok(2));
    assert_eq!(c.get("k", t).unwrap().value, b("a"));
}

/// A put that fits the broker-wide budget exactly once every entry of its shard is evicted
/// is taken (by evicting them all); one byte more is refused up front and evicts nothing.
/// (Kills `free + bytes < n` → `<=` in `reserve_global`, which refuses the exact fit.)
#[test]
fn a_put_that_fits_only_by_evicting_the_whole_shard_to_the_byte_is_taken() {
    use crate::budget::MemoryBudget;
    let one = ENTRY_OVERHEAD + 1 + 100;
    let budget = MemoryBudget::new(2 * one + 50);
    assert!(budget.try_reserve(20), "another holder of the same budget");
    let c = Cache::with_budget(
        CacheConfig {
            shards: 1,
            ..CacheConfig::default()
        },
        budget.clone(),
    );
    let now = Instant::now();
    let v = |n: usize| Bytes::from(vec![0u8; n]);
    c.put("a", v(100), None, PutCondition::Always, now).unwrap();
    c.put("b", v(100), None, PutCondition::Always, now).unwrap();
    // Free: 30 bytes; the shard holds 2 * one. A value charged one byte more than both is
    // refused without evicting anything.
    let exact = 2 * one + 30 - ENTRY_OVERHEAD - 1;
    assert!(matches!(
        c.put("c", v(exact + 1), None, PutCondition::Always, now),
        Err(CacheError::Overloaded { .. })
    ));
    assert!(c.get("a", now).is_some() && c.get("b", now).is_some());
    c.put("c", v(exact), None, PutCondition::Always, now)
        .expect("fits once a and b are evicted");
    assert_eq!(c.get("a", now), None);
    assert_eq!(c.get("b", now), None);
    assert_eq!(c.get("c", now).unwrap().value.len(), exact);
    assert_eq!(budget.used(), 2 * one + 50, "full to the byte");
}

/// Overwriting the least recently used entry with a larger value under a full budget evicts
/// the next one, never the entry being overwritten (which the put still holds). (Kills the
/// `t == k` guard → `false` in `reserve_global`, which picks the kept entry as victim.)
#[test]
fn overwriting_the_lru_entry_under_a_full_budget_evicts_the_next_one() {
    use crate::budget::MemoryBudget;
    let one = ENTRY_OVERHEAD + 1 + 100;
    let budget = MemoryBudget::new(2 * one);
    let c = Cache::with_budget(
        CacheConfig {
            shards: 1,
            ..CacheConfig::default()
        },
        budget.clone(),
    );
    let now = Instant::now();
    let v = |n: usize| Bytes::from(vec![2u8; n]);
    c.put("a", v(100), None, PutCondition::Always, now).unwrap();
    c.put("b", v(100), None, PutCondition::Always, now).unwrap();
    // "a" is the least recently used: the eviction victim if it were not being overwritten.
    c.put("a", v(101), None, PutCondition::Always, now).unwrap();
    assert_eq!(c.get("b", now), None);
    assert_eq!(c.get("a", now).map(|e| e.value.len()), Some(101));
    assert_eq!(c.stats().evictions, 1);
    assert_eq!(budget.used(), one + 1);
}
