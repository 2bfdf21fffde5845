//! Registry unit tests: per-tenant bounds and budget charging.

use super::*;

fn registry(per_tenant: usize) -> Registry {
    let mut cfg = BrokerConfig::default();
    cfg.limits.max_resources_per_tenant = per_tenant;
    let memory = MemoryBudget::new(cfg.limits.max_memory_bytes);
    Registry::new(Arc::new(cfg), memory)
}

#[test]
fn per_tenant_resource_bound_refuses_only_that_tenant() {
    let r = registry(3);
    let sc = StreamConfig::default();
    r.create_stream("greedy", "ns", "s1", sc.clone()).unwrap();
    r.create_stream("greedy", "ns", "s2", sc.clone()).unwrap();
    r.create_cache("greedy", "ns", "c1", CacheConfig::default())
        .unwrap();
    // Re-creating an existing resource takes no slot.
    r.create_stream("greedy", "ns", "s1", sc.clone()).unwrap();
    assert_eq!(r.tenant_resources("greedy"), 3);
    let e = r
        .create_stream("greedy", "other-ns", "s3", sc.clone())
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Overloaded);
    assert!(e.message.contains("max_resources_per_tenant"), "{e}");
    let e = r
        .create_cache("greedy", "ns", "c2", CacheConfig::default())
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Overloaded);
    let mut buf = String::new();
    let e = r
        .stream(&mut buf, "greedy", "ns", "auto", true)
        .unwrap_err();
    assert_eq!(
        e.code,
        ErrorCode::Overloaded,
        "creation on first use counts too"
    );
    // The tenant's existing resources still work, and other tenants are unaffected.
    r.stream(&mut buf, "greedy", "ns", "s1", false).unwrap();
    r.create_stream("polite", "ns", "s1", sc.clone()).unwrap();
    r.create_cache("polite", "ns", "c1", CacheConfig::default())
        .unwrap();
    assert_eq!(r.tenant_resources("polite"), 2);
    assert_eq!(r.snapshot().tenant_refusals, 3);
}

#[test]
fn stream_logs_and_caches_reserve_from_the_registry_budget() {
    let r = registry(10);
    let s = r
        .create_stream("t", "ns", "s", StreamConfig::default())
        .unwrap();
    let p = s
        .stream
        .publish(&[bytes::Bytes::from(vec![1u8; 1000])])
        .unwrap();
    assert!(p.backpressure.is_none());
    let used = r.memory().used();
    assert!(used >= 1000, "the retained record is charged: {used}");
    let c = r
        .create_cache("t", "ns", "c", CacheConfig::default())
        .unwrap();
    c.cache
        .put(
            "k",
            bytes::Bytes::from(vec![2u8; 500]),
            None,
            crate::cache::PutCondition::Always,
            Instant::now(),
        )
        .unwrap();
    assert!(r.memory().used() >= used + 500);
    assert!(c.cache.delete("k", Instant::now()));
    assert_eq!(r.memory().used(), used, "a delete releases the entry");
}
