use std::time::{Duration, Instant};

use super::*;

fn table(toml_text: &str) -> QuotaTable {
    let c: QuotaConfig = toml::from_str(toml_text).unwrap();
    QuotaTable::from_config(&c)
}

#[test]
fn overrides_replace_only_the_fields_they_name_and_zero_is_unlimited() {
    let t = table(
        r#"
        connections = 10
        publish_bytes_per_sec = 1000
        [tenants.acme]
        connections = 2
        [tenants.globex]
        publish_bytes_per_sec = 0
        "#,
    );
    assert_eq!(t.get("acme").connections, 2);
    assert_eq!(t.get("acme").publish_bytes_per_sec, 1000, "default kept");
    assert_eq!(t.get("globex").publish_bytes_per_sec, 0);
    assert_eq!(t.get("other").connections, 10);
    let d = QuotaConfig::default();
    assert!(d.connections > 0 && d.subscriptions > 0 && d.cache_bytes > 0);
    assert_eq!(d.publish_bytes_per_sec, 0, "rates default to unlimited");
    assert!(toml::from_str::<QuotaConfig>("conections = 1").is_err());
}

#[test]
fn a_bucket_allows_exactly_its_rate_then_refills_with_time() {
    let t0 = Instant::now();
    let mut b = TokenBucket::new(10, t0);
    for i in 0..10 {
        assert!(b.has(1, 10, t0), "token {i} of 10");
        b.take(1);
    }
    assert!(!b.has(1, 10, t0), "the 11th in the same instant is refused");
    // 10/s: one token per 100 ms, exactly.
    assert!(!b.has(1, 10, t0 + Duration::from_millis(99)));
    assert!(b.has(1, 10, t0 + Duration::from_millis(100)));
    b.take(1);
    // Never more than one second of the rate, however long it idled.
    assert!(b.has(10, 10, t0 + Duration::from_secs(3600)));
    assert!(!b.has(11, 10, t0 + Duration::from_secs(3600)));
}

#[test]
fn publish_rates_are_per_tenant_and_a_refusal_takes_nothing() {
    let q = Quotas::new(table(
        "publish_messages_per_sec = 3\npublish_bytes_per_sec = 100\n",
    ));
    let t0 = Instant::now();
    q.publish("a", 2, 50, t0).unwrap();
    q.publish("a", 1, 50, t0).unwrap();
    let e = q.publish("a", 1, 0, t0).unwrap_err();
    assert_eq!(e.code, ErrorCode::QuotaExceeded);
    assert!(e.message.contains("publish_messages"), "{}", e.message);
    assert_eq!(q.exceeded(QuotaKind::PublishMessages), 1);
    // Tenant b has its own buckets.
    q.publish("b", 3, 100, t0).unwrap();
    // After a second a is full again; a batch over the byte rate is refused and takes no
    // message token either.
    let t1 = t0 + Duration::from_secs(1);
    assert!(q.publish("a", 1, 101, t1).is_err());
    assert_eq!(q.exceeded(QuotaKind::PublishBytes), 1);
    q.publish("a", 3, 100, t1).unwrap();
}

#[test]
fn slots_count_up_to_the_limit_and_come_back_on_drop() {
    let q = Quotas::new(table("subscriptions = 2\nconnections = 1\n"));
    let s1 = q.take_subscription("a").unwrap();
    let _s2 = q.take_subscription("a").unwrap();
    let e = q.take_subscription("a").unwrap_err();
    assert_eq!(e.code, ErrorCode::QuotaExceeded);
    assert!(q.take_subscription("b").is_ok(), "b is not a's");
    drop(s1);
    let _s3 = q.take_subscription("a").unwrap();
    assert_eq!(q.held("a").1, 2);

    // A connection counts once per tenant, however many streams authenticate.
    let c1 = ConnQuota::default();
    q.admit_connection(&c1, "a", Some("svc")).unwrap();
    q.admit_connection(&c1, "a", None).unwrap();
    assert_eq!(
        c1.principals(),
        vec![("a".to_owned(), Some("svc".to_owned()))]
    );
    assert_eq!(q.held("a").0, 1);
    let c2 = ConnQuota::default();
    assert!(q.admit_connection(&c2, "a", None).is_err());
    q.admit_connection(&c2, "b", None).unwrap();
    drop(c1);
    q.admit_connection(&c2, "a", None).unwrap();
    assert_eq!(q.exceeded(QuotaKind::Connections), 1);
}

#[test]
fn a_released_connection_slot_is_free_and_retaken_on_the_next_admit() {
    let q = Quotas::new(table("connections = 1\n"));
    let c1 = ConnQuota::default();
    q.admit_connection(&c1, "a", Some("svc")).unwrap();
    let c2 = ConnQuota::default();
    assert!(q.admit_connection(&c2, "a", None).is_err());
    c1.release("a");
    assert!(!c1.counts_for("a"));
    assert_eq!(q.held("a").0, 0);
    q.admit_connection(&c2, "a", None).unwrap();
    assert!(
        q.admit_connection(&c1, "a", None).is_err(),
        "a revived principal needs a slot again"
    );
    drop(c2);
    q.admit_connection(&c1, "a", None).unwrap();
    assert!(c1.counts_for("a"));
    assert_eq!(q.held("a").0, 1);
    assert_eq!(
        c1.principals(),
        vec![("a".to_owned(), Some("svc".to_owned()))],
        "the audit keeps the tenant it authenticated for"
    );
    drop(c1);
    assert_eq!(q.held("a").0, 0);
}

#[test]
fn a_rate_set_by_a_later_replace_is_enforced() {
    let q = Quotas::new(QuotaTable::default());
    let t0 = Instant::now();
    q.publish("a", 1_000_000, 1 << 40, t0).unwrap();
    q.replace(table("[tenants.a]\npublish_messages_per_sec = 1\n"));
    q.publish("a", 1, 1, t0).unwrap();
    assert!(q.publish("a", 1, 1, t0).is_err());
    q.publish("b", 1_000, 1, t0).unwrap();
}

#[test]
fn replacing_the_table_keeps_usage() {
    let q = Quotas::new(table("subscriptions = 5\n"));
    let _held: Vec<_> = (0..3).map(|_| q.take_subscription("a").unwrap()).collect();
    q.replace(table("subscriptions = 3\n"));
    assert!(q.take_subscription("a").is_err(), "3 held, limit now 3");
    q.replace(table("subscriptions = 0\n"));
    assert!(q.take_subscription("a").is_ok(), "0 is unlimited");
}

#[test]
fn the_metric_has_one_series_per_kind_and_no_tenant_label() {
    let q = Quotas::new(QuotaTable::default());
    let mut out = String::new();
    q.render(&mut out);
    for k in QuotaKind::ALL {
        assert!(
            out.contains(&format!(
                "felix_quota_exceeded_total{{kind=\"{}\"}} 0",
                k.as_str()
            )),
            "{out}"
        );
    }
    assert!(!out.contains("tenant"));
}
