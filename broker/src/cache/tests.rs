use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use proptest::prelude::*;

use super::*;

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// One shard, so LRU order is global and predictable.
fn single_shard(max_bytes: usize) -> Cache {
    Cache::new(CacheConfig {
        max_bytes,
        shards: 1,
        ..CacheConfig::default()
    })
}

fn check_invariants(cache: &Cache) {
    for s in cache.shards.iter() {
        s.lock().check_invariants();
    }
    let stats = cache.stats();
    assert!(stats.bytes <= cache.config.max_bytes);
    let entries: usize = cache
        .shards
        .iter()
        .map(|s| s.lock().lru_order().len())
        .sum();
    assert_eq!(stats.entries, entries);
}

#[test]
fn cache_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Cache>();
}

#[test]
fn get_returns_latest_value_and_version() {
    let c = Cache::new(CacheConfig::default());
    let t = Instant::now();
    let v1 = c.put("k", b("a"), None, PutCondition::Always, t).unwrap();
    let v2 = c.put("k", b("b"), None, PutCondition::Always, t).unwrap();
    assert!(v2 > v1);
    let got = c.get("k", t).unwrap();
    assert_eq!(got.value, b("b"));
    assert_eq!(got.version, v2);
    assert_eq!(got.expires_at, None);
    assert_eq!(c.get("other", t), None);
    let s = c.stats();
    assert_eq!((s.hits, s.misses, s.entries), (1, 1, 1));
}

#[test]
fn ttl_expires_exactly_at_boundary() {
    let c = Cache::new(CacheConfig::default());
    let t = Instant::now();
    c.put("k", b("v"), Some(secs(10)), PutCondition::Always, t)
        .unwrap();
    let just_before = t + secs(10) - Duration::from_nanos(1);
    assert_eq!(
        c.get("k", just_before).unwrap().expires_at,
        Some(t + secs(10))
    );
    assert_eq!(
        c.get("k", t + secs(10)),
        None,
        "expires_at == now is a miss"
    );
    let s = c.stats();
    assert_eq!(
        (s.entries, s.bytes, s.expirations),
        (0, 0, 1),
        "removed on read"
    );
}

#[test]
fn default_ttl_applies_when_ttl_is_none() {
    let c = Cache::new(CacheConfig {
        default_ttl: Some(secs(5)),
        ..CacheConfig::default()
    });
    let t = Instant::now();
    c.put("d", b("v"), None, PutCondition::Always, t).unwrap();
    c.put("x", b("v"), Some(secs(60)), PutCondition::Always, t)
        .unwrap();
    assert_eq!(c.get("d", t).unwrap().expires_at, Some(t + secs(5)));
    assert_eq!(c.get("d", t + secs(5)), None);
    assert!(c.get("x", t + secs(5)).is_some(), "explicit ttl wins");
}

#[test]
fn zero_or_unrepresentable_ttl_is_invalid() {
    let c = Cache::new(CacheConfig::default());
    let t = Instant::now();
    let put = |ttl| c.put("k", b("v"), Some(ttl), PutCondition::Always, t);
    assert_eq!(put(Duration::ZERO), Err(CacheError::InvalidTtl));
    assert_eq!(put(Duration::MAX), Err(CacheError::InvalidTtl));
    assert_eq!(c.stats().entries, 0);
}

#[test]
fn put_if_absent_conflicts_only_with_a_live_entry() {
    let c = Cache::new(CacheConfig::default());
    let t = Instant::now();
    let v = c
        .put("k", b("a"), Some(secs(1)), PutCondition::IfAbsent, t)
        .unwrap();
    assert_eq!(
        c.put("k", b("b"), None, PutCondition::IfAbsent, t),
        Err(CacheError::Conflict { current: Some(v) })
    );
    assert_eq!(
        c.get("k", t).unwrap().value,
        b("a"),
        "conflict leaves value"
    );
    // Once expired, the key counts as absent.
    let v2 = c
        .put("k", b("c"), None, PutCondition::IfAbsent, t + secs(1))
        .unwrap();
    assert!(v2 > v);
    assert_eq!(c.get("k", t + secs(1)).unwrap().value, b("c"));
}

#[test]
fn cas_succeeds_on_matching_version_and_conflicts_otherwise() {
    let c = Cache::new(CacheConfig::default());
    let t = Instant::now();
    assert_eq!(
        c.put("k", b("a"), None, PutCondition::IfVersion(1), t),
        Err(CacheError::Conflict { current: None }),
        "missing key never matches"
    );
    let v1 = c.put("k", b("a"), None, PutCondition::Always, t).unwrap();
    let v2 = c
        .put("k", b("b"), None, PutCondition::IfVersion(v1), t)
        .unwrap();
    assert!(v2 > v1);
    assert_eq!(
        c.put("k", b("c"), None, PutCondition::IfVersion(v1), t),
        Err(CacheError::Conflict { current: Some(v2) })
    );
    assert_eq!(c.get("k", t).unwrap().value, b("b"));
}

#[test]
fn versions_stay_monotonic_across_delete_so_stale_cas_fails() {
    let c = Cache::new(CacheConfig::default());
    let t = Instant::now();
    let v1 = c.put("k", b("a"), None, PutCondition::Always, t).unwrap();
    assert!(c.delete("k", t));
    let v2 = c.put("k", b("b"), None, PutCondition::Always, t).unwrap();
    assert!(v2 > v1, "a re-put never reuses a version");
    assert_eq!(
        c.put("k", b("c"), None, PutCondition::IfVersion(v1), t),
        Err(CacheError::Conflict { current: Some(v2) })
    );
    // The counter is per cache, so other keys advance it too.
    let v3 = c.put("z", b("z"), None, PutCondition::Always, t).unwrap();
    assert!(v3 > v2);
}

#[test]
fn delete_returns_whether_a_live_entry_existed() {
    let c = Cache::new(CacheConfig::default());
    let t = Instant::now();
    assert!(!c.delete("k", t));
    c.put("k", b("v"), None, PutCondition::Always, t).unwrap();
    assert!(c.delete("k", t));
    assert!(!c.delete("k", t));
    assert_eq!(c.get("k", t), None);

    c.put("e", b("v"), Some(secs(1)), PutCondition::Always, t)
        .unwrap();
    assert!(
        !c.delete("e", t + secs(1)),
        "an expired entry does not count"
    );
    assert_eq!(c.stats().entries, 0);
}

#[test]
fn lru_evicts_least_recently_used_and_a_touched_key_survives() {
    let v = b("0123456789");
    let per_entry = 1 + v.len() + ENTRY_OVERHEAD;
    let c = single_shard(3 * per_entry);
    let t = Instant::now();
    for k in ["a", "b", "c"] {
        c.put(k, v.clone(), None, PutCondition::Always, t).unwrap();
    }
    assert!(c.get("a", t).is_some(), "touch a: b is now the oldest");
    c.put("d", v.clone(), None, PutCondition::Always, t)
        .unwrap();
    assert_eq!(c.get("b", t), None, "least recently used was evicted");
    for k in ["a", "c", "d"] {
        assert!(c.get(k, t).is_some(), "{k} survives");
    }
    assert_eq!(c.stats().evictions, 1);
    check_invariants(&c);
}

#[test]
fn overwrite_refreshes_recency() {
    let v = b("0123456789");
    let per_entry = 1 + v.len() + ENTRY_OVERHEAD;
    let c = single_shard(2 * per_entry);
    let t = Instant::now();
    c.put("a", v.clone(), None, PutCondition::Always, t)
        .unwrap();
    c.put("b", v.clone(), None, PutCondition::Always, t)
        .unwrap();
    c.put("a", v.clone(), None, PutCondition::Always, t)
        .unwrap();
    c.put("c", v.clone(), None, PutCondition::Always, t)
        .unwrap();
    assert_eq!(c.get("b", t), None);
    assert!(c.get("a", t).is_some());
    check_invariants(&c);
}

#[test]
fn growing_an_entry_evicts_others_but_never_itself() {
    let c = single_shard(2 * (1 + 10 + ENTRY_OVERHEAD));
    let t = Instant::now();
    c.put("a", b("0123456789"), None, PutCondition::Always, t)
        .unwrap();
    c.put("b", b("0123456789"), None, PutCondition::Always, t)
        .unwrap();
    // "b" is the most recent, but growing it needs "a"'s room and more.
    let big = Bytes::from(vec![7u8; 20]);
    c.put("b", big.clone(), None, PutCondition::Always, t)
        .unwrap();
    assert_eq!(c.get("a", t), None);
    assert_eq!(c.get("b", t).unwrap().value, big);
    check_invariants(&c);
}

#[test]
fn making_room_reclaims_expired_entries_before_evicting_live_ones() {
    let v = b("0123456789");
    // Keys are all three bytes long: room for exactly two entries.
    let c = single_shard(2 * (3 + v.len() + ENTRY_OVERHEAD));
    let t = Instant::now();
    c.put("old", v.clone(), None, PutCondition::Always, t)
        .unwrap();
    c.put("ttl", v.clone(), Some(secs(1)), PutCondition::Always, t)
        .unwrap();
    c.put("new", v.clone(), None, PutCondition::Always, t + secs(2))
        .unwrap();
    assert!(c.get("old", t + secs(2)).is_some(), "LRU but live: kept");
    let s = c.stats();
    assert_eq!((s.evictions, s.expirations), (0, 1));
}

#[test]
fn value_too_large_is_rejected() {
    let c = Cache::new(CacheConfig {
        max_value_bytes: 4,
        ..CacheConfig::default()
    });
    let t = Instant::now();
    assert_eq!(
        c.put("k", b("12345"), None, PutCondition::Always, t),
        Err(CacheError::ValueTooLarge { size: 5, max: 4 })
    );
    assert!(c.put("k", b("1234"), None, PutCondition::Always, t).is_ok());
}

#[test]
fn entry_larger_than_a_shard_budget_is_rejected() {
    let c = Cache::new(CacheConfig {
        max_bytes: 4 * 1000,
        shards: 4,
        ..CacheConfig::default()
    });
    let t = Instant::now();
    let value = Bytes::from(vec![0u8; 1000]);
    assert_eq!(
        c.put("k", value, None, PutCondition::Always, t),
        Err(CacheError::EntryTooLarge {
            size: 1 + 1000 + ENTRY_OVERHEAD,
            budget: 1000
        })
    );
}

#[test]
fn sweep_removes_expired_entries_bounded_per_shard() {
    let c = single_shard(1 << 20);
    let t = Instant::now();
    for i in 0..5 {
        c.put(
            &format!("e{i}"),
            b("v"),
            Some(secs(1)),
            PutCondition::Always,
            t,
        )
        .unwrap();
    }
    c.put("late", b("v"), Some(secs(10)), PutCondition::Always, t)
        .unwrap();
    c.put("forever", b("v"), None, PutCondition::Always, t)
        .unwrap();
    assert_eq!(c.sweep_expired(t, 100), 0, "nothing expired yet");
    assert_eq!(
        c.sweep_expired(t + secs(1), 3),
        3,
        "bounded by max_per_shard"
    );
    assert_eq!(c.sweep_expired(t + secs(1), 100), 2);
    assert_eq!(c.stats().entries, 2);
    assert_eq!(c.sweep_expired(t + secs(10), 100), 1);
    assert!(c.get("forever", t + secs(10)).is_some());
    assert_eq!(c.stats().expirations, 6);
    check_invariants(&c);
}

#[test]
fn sweep_skips_overwritten_ttls() {
    let c = single_shard(1 << 20);
    let t = Instant::now();
    c.put("k", b("v"), Some(secs(1)), PutCondition::Always, t)
        .unwrap();
    c.put("k", b("v"), Some(secs(10)), PutCondition::Always, t)
        .unwrap();
    assert_eq!(c.sweep_expired(t + secs(1), 100), 0);
    assert!(c.get("k", t + secs(1)).is_some());
    check_invariants(&c);
}

#[test]
fn get_many_returns_one_result_per_key_in_order() {
    let c = Cache::new(CacheConfig::default());
    let t = Instant::now();
    c.put("a", b("1"), None, PutCondition::Always, t).unwrap();
    c.put("c", b("3"), Some(secs(1)), PutCondition::Always, t)
        .unwrap();
    let got = c.get_many(["a", "b", "c"], t);
    let values: Vec<_> = got
        .iter()
        .map(|v| v.as_ref().map(|v| v.value.clone()))
        .collect();
    assert_eq!(values, vec![Some(b("1")), None, Some(b("3"))]);
    let owned = vec!["c".to_string(), "a".to_string()];
    let later = c.get_many(&owned, t + secs(1));
    assert!(later[0].is_none() && later[1].is_some());
}

#[test]
fn zero_shards_is_treated_as_one() {
    let c = Cache::new(CacheConfig {
        shards: 0,
        ..CacheConfig::default()
    });
    let t = Instant::now();
    c.put("k", b("v"), None, PutCondition::Always, t).unwrap();
    assert!(c.get("k", t).is_some());
}

#[test]
fn config_deserialises_with_defaults_and_millisecond_ttl() {
    let cfg: CacheConfig = toml::from_str("default_ttl_ms = 1500\nshards = 4").unwrap();
    assert_eq!(cfg.default_ttl, Some(Duration::from_millis(1500)));
    assert_eq!(cfg.shards, 4);
    assert_eq!(cfg.max_bytes, CacheConfig::default().max_bytes);
    assert_eq!(
        toml::from_str::<CacheConfig>("").unwrap(),
        CacheConfig::default()
    );
    assert!(toml::from_str::<CacheConfig>("default_ttl_ms = 0").is_err());
    assert!(
        toml::from_str::<CacheConfig>("max_byte = 1").is_err(),
        "typos rejected"
    );
}

#[test]
fn concurrent_puts_and_gets_stay_within_budget() {
    let c = Arc::new(Cache::new(CacheConfig {
        max_bytes: 64 * 1024,
        shards: 4,
        ..CacheConfig::default()
    }));
    let t = Instant::now();
    let threads: Vec<_> = (0..4)
        .map(|n| {
            let c = Arc::clone(&c);
            std::thread::spawn(move || {
                for i in 0..2000u32 {
                    let key = format!("k{}", (i * 7 + n) % 500);
                    let value = Bytes::from(vec![0u8; (i % 300) as usize]);
                    c.put(&key, value, None, PutCondition::Always, t).unwrap();
                    c.get(&key, t);
                    assert!(c.stats().bytes <= 64 * 1024);
                }
            })
        })
        .collect();
    for th in threads {
        th.join().unwrap();
    }
    check_invariants(&c);
}

#[derive(Debug, Clone)]
enum Op {
    Put {
        key: u8,
        len: usize,
        ttl_s: Option<u64>,
        cond: u8,
    },
    Get(u8),
    Delete(u8),
    Sweep(usize),
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..24, 0usize..=300, prop::option::of(1u64..5), 0u8..3)
            .prop_map(|(key, len, ttl_s, cond)| Op::Put { key, len, ttl_s, cond }),
        3 => (0u8..24).prop_map(Op::Get),
        1 => (0u8..24).prop_map(Op::Delete),
        1 => (0usize..4).prop_map(Op::Sweep),
        1 => (0u64..3).prop_map(Op::Advance),
    ]
}

proptest! {
    #[test]
    fn budget_is_never_exceeded(
        shards in 1usize..4,
        max_bytes in 500usize..3000,
        ops in prop::collection::vec(op(), 1..200),
    ) {
        let c = Cache::new(CacheConfig {
            max_bytes,
            max_value_bytes: 256,
            shards,
            default_ttl: None,
        });
        let mut now = Instant::now();
        for op in ops {
            match op {
                Op::Put { key, len, ttl_s, cond } => {
                    let cond = match cond {
                        0 => PutCondition::Always,
                        1 => PutCondition::IfAbsent,
                        _ => PutCondition::IfVersion(c.get(&key.to_string(), now).map_or(0, |v| v.version)),
                    };
                    let value = Bytes::from(vec![1u8; len]);
                    let res = c.put(&key.to_string(), value, ttl_s.map(secs), cond, now);
                    if let Ok(v) = res {
                        let got = c.get(&key.to_string(), now);
                        prop_assert_eq!(got.map(|g| (g.version, g.value.len())), Some((v, len)));
                    }
                }
                Op::Get(key) => { c.get(&key.to_string(), now); }
                Op::Delete(key) => {
                    c.delete(&key.to_string(), now);
                    prop_assert!(c.get(&key.to_string(), now).is_none());
                }
                Op::Sweep(max) => { c.sweep_expired(now, max); }
                Op::Advance(s) => now += secs(s),
            }
            prop_assert!(c.stats().bytes <= max_bytes);
            check_invariants(&c);
        }
    }
}

#[test]
fn budget_is_released_by_eviction_expiry_delete_and_overwrite() {
    use crate::budget::MemoryBudget;
    let budget = MemoryBudget::new(1 << 20);
    let c = Cache::with_budget(
        CacheConfig {
            max_bytes: 4 * (ENTRY_OVERHEAD + 101),
            shards: 1,
            ..CacheConfig::default()
        },
        budget.clone(),
    );
    let now = Instant::now();
    let v = || Bytes::from(vec![0u8; 100]);
    for k in ["a", "b", "c", "d"] {
        c.put(k, v(), None, PutCondition::Always, now).unwrap();
    }
    assert_eq!(budget.used(), c.stats().bytes);
    // LRU eviction by the cache's own bound releases the evicted entry's bytes.
    c.put("e", v(), None, PutCondition::Always, now).unwrap();
    assert_eq!(c.stats().evictions, 1);
    assert_eq!(budget.used(), c.stats().bytes);
    // Overwrite with a smaller value gives the difference back.
    c.put(
        "e",
        Bytes::from_static(b"x"),
        None,
        PutCondition::Always,
        now,
    )
    .unwrap();
    assert_eq!(budget.used(), c.stats().bytes);
    // Delete and expiry release.
    assert!(c.delete("e", now));
    c.put(
        "t",
        v(),
        Some(Duration::from_millis(5)),
        PutCondition::Always,
        now,
    )
    .unwrap();
    assert_eq!(budget.used(), c.stats().bytes);
    c.sweep_expired(now + Duration::from_secs(1), 100);
    assert_eq!(c.stats().entries, 3);
    assert_eq!(budget.used(), c.stats().bytes);
    drop(c);
    assert_eq!(budget.used(), 0, "dropping the cache releases the rest");
}

#[test]
fn a_full_budget_evicts_the_shards_own_entries_then_refuses() {
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
    let v = || Bytes::from(vec![0u8; 100]);
    c.put("a", v(), None, PutCondition::Always, now).unwrap();
    c.put("b", v(), None, PutCondition::Always, now).unwrap();
    // The cache's own bound (64 MiB) is far away, but the broker's budget is full: the
    // least recently used entry makes room.
    c.put("c", v(), None, PutCondition::Always, now).unwrap();
    assert_eq!(c.get("a", now), None);
    assert_eq!(budget.used(), 2 * one);
    // Held by someone else, the budget cannot be freed by this cache: refused whole.
    let other = MemoryBudget::new(0);
    let starved = Cache::with_budget(CacheConfig::default(), other);
    let e = starved
        .put("k", v(), None, PutCondition::Always, now)
        .unwrap_err();
    assert_eq!(e, CacheError::Overloaded { limit: 0 });
    assert_eq!(starved.stats().entries, 0);
}

#[test]
fn a_put_that_cannot_fit_even_after_evicting_leaves_the_shard_as_it_was() {
    use crate::budget::MemoryBudget;
    let one = ENTRY_OVERHEAD + 1 + 100;
    let budget = MemoryBudget::new(3 * one);
    let c = Cache::with_budget(
        CacheConfig {
            shards: 1,
            ..CacheConfig::default()
        },
        budget.clone(),
    );
    let now = Instant::now();
    c.put("a", vec![0u8; 100].into(), None, PutCondition::Always, now)
        .unwrap();
    // Someone else holds the rest of the budget.
    let _other = budget.reserve(2 * one).expect("fits");
    // Bigger than this shard's bytes plus what is free: refused without evicting "a".
    let e = c
        .put(
            "big",
            vec![0u8; 3 * one].into(),
            None,
            PutCondition::Always,
            now,
        )
        .unwrap_err();
    assert!(matches!(e, CacheError::Overloaded { .. }), "{e:?}");
    assert!(
        c.get("a", now).is_some(),
        "the shard's entry was evicted for nothing"
    );
}

/// The exact boundaries of an overwrite's budget accounting: a value of the same size with
/// the broker budget full to the byte takes nothing and evicts nothing; one byte smaller gives
/// back exactly one byte; one byte larger takes exactly one (and with the budget full, evicts
/// the least recently used other entry to find it, never the entry being overwritten).
#[test]
fn overwrite_of_equal_smaller_and_larger_size_moves_the_budget_by_the_difference() {
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
    let v = |n: usize| Bytes::from(vec![1u8; n]);
    c.put("a", v(100), None, PutCondition::Always, now).unwrap();
    c.put("b", v(100), None, PutCondition::Always, now).unwrap();
    assert_eq!(budget.used(), budget.limit(), "full to the byte");
    // Same size: fits in what "b" already holds.
    c.put("b", v(100), None, PutCondition::Always, now).unwrap();
    assert_eq!(budget.used(), 2 * one);
    assert_eq!(c.stats().evictions, 0);
    assert!(
        c.get("a", now).is_some(),
        "an equal-size overwrite evicts nothing"
    );
    // One byte smaller gives back exactly one byte.
    c.put("b", v(99), None, PutCondition::Always, now).unwrap();
    assert_eq!(budget.used(), 2 * one - 1);
    assert_eq!(budget.used(), c.stats().bytes);
    // Back to 100: the one free byte is exactly enough, nothing is evicted.
    c.put("b", v(100), None, PutCondition::Always, now).unwrap();
    assert_eq!(budget.used(), 2 * one);
    assert_eq!(c.stats().evictions, 0);
    // One byte more than that: the budget is full, so "a" (not "b") makes room.
    c.put("b", v(101), None, PutCondition::Always, now).unwrap();
    assert_eq!(c.get("a", now), None);
    assert_eq!(c.get("b", now).map(|e| e.value.len()), Some(101));
    assert_eq!(budget.used(), one + 1);
    assert_eq!(budget.used(), c.stats().bytes);
}

/// Edge cases found by mutation testing (mutants/report.md).
mod edges;
