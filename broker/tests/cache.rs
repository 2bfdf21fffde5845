//! Cache over real QUIC: get/put, TTL, delete, put-if-absent, compare-and-set, versions,
//! multi-get, the LRU byte budget, limits, and both encodings (the client's binary fast path
//! and plain JSON on a raw stream).

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use felix_client::{CacheValue, Client, ErrorCode, PutCondition};
use felix_transport::framed::FrameReader;
use felix_wire::{features, flags, Decoded, Message};

const NS: &str = "ns";

fn value_of(v: &Option<CacheValue>) -> Option<&[u8]> {
    v.as_ref().map(|v| v.value.as_ref())
}

#[tokio::test]
async fn put_then_get_returns_the_value_and_its_version() {
    let b = TestBroker::start("c-basic").await;
    let c = b.client().await;
    assert_eq!(c.cache_get(NS, "c", "k").await.unwrap(), None);
    let v1 = c.cache_put(NS, "c", "k", "one".into(), None).await.unwrap();
    let got = c.cache_get(NS, "c", "k").await.unwrap().expect("present");
    assert_eq!(
        got,
        CacheValue {
            value: "one".into(),
            version: v1
        }
    );
    // Overwrite: a new, larger version; the old value is gone.
    let v2 = c.cache_put(NS, "c", "k", "two".into(), None).await.unwrap();
    assert!(v2 > v1, "{v2} <= {v1}");
    let got = c.cache_get(NS, "c", "k").await.unwrap().unwrap();
    assert_eq!((got.value.as_ref(), got.version), (&b"two"[..], v2));
    // Keys, caches and namespaces are separate; empty values and odd keys round-trip.
    assert_eq!(c.cache_get(NS, "other", "k").await.unwrap(), None);
    assert_eq!(c.cache_get("ns2", "c", "k").await.unwrap(), None);
    c.cache_put(NS, "c", "ключ/ü 🔑", Bytes::new(), None)
        .await
        .unwrap();
    let got = c.cache_get(NS, "c", "ключ/ü 🔑").await.unwrap().unwrap();
    assert!(got.value.is_empty());
    let big = Bytes::from((0..200_000u32).map(|i| i as u8).collect::<Vec<_>>());
    c.cache_put(NS, "c", "big", big.clone(), None)
        .await
        .unwrap();
    assert_eq!(
        c.cache_get(NS, "c", "big").await.unwrap().unwrap().value,
        big
    );
}

#[tokio::test]
async fn versions_increase_across_keys_and_writes() {
    let b = TestBroker::start("c-versions").await;
    let c = b.client().await;
    let mut last = 0;
    for i in 0..50 {
        let key = format!("k{}", i % 7);
        let v = c
            .cache_put(NS, "c", &key, Bytes::from(vec![i as u8]), None)
            .await
            .unwrap();
        assert!(v > last, "version {v} after {last}");
        last = v;
    }
    // Delete and re-put: the version is still new (a stale CAS can never match).
    let before = c.cache_get(NS, "c", "k0").await.unwrap().unwrap().version;
    assert!(c.cache_delete(NS, "c", "k0").await.unwrap());
    let after = c.cache_put(NS, "c", "k0", "x".into(), None).await.unwrap();
    assert!(after > before && after > last);
}

#[tokio::test]
async fn ttl_expires_entries() {
    let b = TestBroker::start("c-ttl").await;
    let c = b.client().await;
    let ttl = Duration::from_millis(100);
    // Present right after the put (if the check ran inside the TTL, which it nearly always
    // does; a very slow round trip retries with a fresh key rather than failing).
    let mut put_at = None;
    for attempt in 0..5 {
        let key = format!("short{attempt}");
        let start = Instant::now();
        c.cache_put(NS, "c", &key, "v".into(), Some(ttl))
            .await
            .unwrap();
        let got = c.cache_get(NS, "c", &key).await.unwrap();
        if start.elapsed() < ttl {
            assert_eq!(value_of(&got), Some(&b"v"[..]), "missing inside its TTL");
            put_at = Some((key, start));
            break;
        }
    }
    let (key, put_at) = put_at.expect("no put+get round trip finished inside 100ms");
    c.cache_put(NS, "c", "long", "v".into(), Some(Duration::from_secs(60)))
        .await
        .unwrap();
    let c2 = c.clone();
    let k2 = key.clone();
    eventually(5, "the 100ms entry to expire", move || {
        let (c, k) = (c2.clone(), k2.clone());
        async move { c.cache_get(NS, "c", &k).await.unwrap().is_none() }
    })
    .await;
    assert!(
        put_at.elapsed() >= ttl,
        "gone after {:?}, before its TTL",
        put_at.elapsed()
    );
    // Expired means gone for every operation: put-if-absent succeeds, delete finds nothing.
    assert!(!c.cache_delete(NS, "c", &key).await.unwrap());
    c.cache_put_if(NS, "c", &key, "again".into(), None, PutCondition::IfAbsent)
        .await
        .unwrap();
    // The long-TTL entry is unaffected.
    assert!(c.cache_get(NS, "c", "long").await.unwrap().is_some());
    // A zero TTL is rejected before anything is sent.
    let err = c
        .cache_put(NS, "c", "z", "v".into(), Some(Duration::ZERO))
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidArgument);
}

#[tokio::test]
async fn default_ttl_comes_from_create_cache() {
    let b = TestBroker::start("c-defttl").await;
    let c = b.client().await;
    let default_ttl = Duration::from_millis(200);
    c.create_cache(NS, "sessions", None, Some(default_ttl))
        .await
        .unwrap();
    // Same settings again: fine; other settings: already_exists.
    c.create_cache(NS, "sessions", None, Some(default_ttl))
        .await
        .unwrap();
    let err = c
        .create_cache(NS, "sessions", Some(1 << 20), Some(default_ttl))
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::AlreadyExists, "{err}");
    let put_at = Instant::now();
    c.cache_put(NS, "sessions", "defaulted", "v".into(), None)
        .await
        .unwrap();
    c.cache_put(
        NS,
        "sessions",
        "explicit",
        "v".into(),
        Some(Duration::from_secs(60)),
    )
    .await
    .unwrap();
    let c2 = c.clone();
    eventually(5, "the defaulted entry to expire", move || {
        let c = c2.clone();
        async move {
            c.cache_get(NS, "sessions", "defaulted")
                .await
                .unwrap()
                .is_none()
        }
    })
    .await;
    assert!(put_at.elapsed() >= default_ttl);
    assert!(
        c.cache_get(NS, "sessions", "explicit")
            .await
            .unwrap()
            .is_some(),
        "an explicit TTL overrides the default"
    );
    // A cache made on first use has no default TTL: the entry outlives the other default.
    c.cache_put(NS, "plain", "k", "v".into(), None)
        .await
        .unwrap();
    let other = c.consumer(NS, "clock", "g");
    assert!(other.pull(1, default_ttl * 2).await.unwrap().is_empty());
    assert!(c.cache_get(NS, "plain", "k").await.unwrap().is_some());
}

#[tokio::test]
async fn delete_reports_whether_the_key_existed() {
    let b = TestBroker::start("c-delete").await;
    let c = b.client().await;
    assert!(!c.cache_delete(NS, "c", "never").await.unwrap());
    c.cache_put(NS, "c", "k", "v".into(), None).await.unwrap();
    assert!(c.cache_delete(NS, "c", "k").await.unwrap());
    assert_eq!(c.cache_get(NS, "c", "k").await.unwrap(), None);
    assert!(!c.cache_delete(NS, "c", "k").await.unwrap());
}

#[tokio::test]
async fn put_if_absent_conflicts_with_a_live_entry() {
    let b = TestBroker::start("c-absent").await;
    let c = b.client().await;
    let v1 = c
        .cache_put_if(NS, "c", "lock", "a".into(), None, PutCondition::IfAbsent)
        .await
        .unwrap();
    let err = c
        .cache_put_if(NS, "c", "lock", "b".into(), None, PutCondition::IfAbsent)
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::Conflict, "{err}");
    assert!(!err.retryable());
    let got = c.cache_get(NS, "c", "lock").await.unwrap().unwrap();
    assert_eq!((got.value.as_ref(), got.version), (&b"a"[..], v1));
    assert!(c.cache_delete(NS, "c", "lock").await.unwrap());
    let v2 = c
        .cache_put_if(NS, "c", "lock", "c".into(), None, PutCondition::IfAbsent)
        .await
        .unwrap();
    assert!(v2 > v1);
}

#[tokio::test]
async fn compare_and_set_by_version() {
    let b = TestBroker::start("c-cas").await;
    let c = b.client().await;
    let v1 = c.cache_put(NS, "c", "ctr", "1".into(), None).await.unwrap();
    let v2 = c
        .cache_put_if(
            NS,
            "c",
            "ctr",
            "2".into(),
            None,
            PutCondition::IfVersion(v1),
        )
        .await
        .unwrap();
    assert!(v2 > v1);
    // The stale version loses.
    let err = c
        .cache_put_if(
            NS,
            "c",
            "ctr",
            "X".into(),
            None,
            PutCondition::IfVersion(v1),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::Conflict, "{err}");
    assert!(err.message().contains(&v2.to_string()), "{err}");
    let got = c.cache_get(NS, "c", "ctr").await.unwrap().unwrap();
    assert_eq!((got.value.as_ref(), got.version), (&b"2"[..], v2));
    // No live entry: any version conflicts.
    let err = c
        .cache_put_if(
            NS,
            "c",
            "nokey",
            "X".into(),
            None,
            PutCondition::IfVersion(v2),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::Conflict, "{err}");
    assert_eq!(c.cache_get(NS, "c", "nokey").await.unwrap(), None);
}

#[tokio::test]
async fn compare_and_set_lets_exactly_one_concurrent_writer_win() {
    let b = TestBroker::start("c-cas-race").await;
    let c = b.client().await;
    let v = c.cache_put(NS, "c", "k", "0".into(), None).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let c = b.client().await;
        tasks.push(tokio::spawn(async move {
            c.cache_put_if(
                NS,
                "c",
                "k",
                Bytes::from(format!("w{i}")),
                None,
                PutCondition::IfVersion(v),
            )
            .await
        }));
    }
    let mut won = Vec::new();
    for (i, t) in tasks.into_iter().enumerate() {
        match within(10, "cas", t).await.unwrap() {
            Ok(version) => won.push((i, version)),
            Err(e) => assert_eq!(e.code(), ErrorCode::Conflict, "{e}"),
        }
    }
    assert_eq!(won.len(), 1, "exactly one CAS must win: {won:?}");
    let got = c.cache_get(NS, "c", "k").await.unwrap().unwrap();
    assert_eq!(got.value, Bytes::from(format!("w{}", won[0].0)));
    assert_eq!(got.version, won[0].1);
}

#[tokio::test]
async fn get_many_keeps_request_order_and_reports_misses() {
    let b = TestBroker::start("c-many").await;
    let c = b.client().await;
    let va = c.cache_put(NS, "c", "a", "A".into(), None).await.unwrap();
    let vc = c.cache_put(NS, "c", "c", "C".into(), None).await.unwrap();
    let got = c
        .cache_get_many(NS, "c", &["c", "b", "a", "c", "zzz"])
        .await
        .unwrap();
    let cv = |value: &str, version| {
        Some(CacheValue {
            value: Bytes::from(value.to_owned()),
            version,
        })
    };
    assert_eq!(got, vec![cv("C", vc), None, cv("A", va), cv("C", vc), None]);
    assert!(c.cache_get_many(NS, "c", &[]).await.unwrap().is_empty());
}

#[tokio::test]
async fn lru_byte_budget_evicts_least_recently_used_entries() {
    let b = TestBroker::start("c-lru").await;
    let c = b.client().await;
    // 64 KiB over the broker's 16 shards = 4 KiB per shard; each entry is charged key + value
    // + 160 bytes of overhead, so a shard holds 3 of these ~1.2 KB entries: at most 48 in all.
    let max_bytes = 64 * 1024u64;
    c.create_cache(NS, "lru", Some(max_bytes), None)
        .await
        .unwrap();
    let value = Bytes::from(vec![b'x'; 1000]);
    let n = 1000;
    let keys: Vec<String> = (0..n).map(|i| format!("key-{i:04}")).collect();
    c.cache_put(NS, "lru", "hot", value.clone(), None)
        .await
        .unwrap();
    for k in &keys {
        c.cache_put(NS, "lru", k, value.clone(), None)
            .await
            .unwrap();
        // Reading "hot" after every write keeps it most recently used in its shard, so LRU
        // (unlike FIFO) never picks it: it was written first and still survives.
        assert!(
            c.cache_get(NS, "lru", "hot").await.unwrap().is_some(),
            "hot key evicted after {k}"
        );
    }
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let got = c.cache_get_many(NS, "lru", &refs).await.unwrap();
    let present: Vec<usize> = (0..n).filter(|&i| got[i].is_some()).collect();
    assert!(
        present.len() <= 48 && present.len() >= 3,
        "{} entries held",
        present.len()
    );
    // Each shard keeps its 3 most recent keys, so the last 3 written are certainly held,
    // and the early ones are long gone.
    for i in n - 3..n {
        assert!(got[i].is_some(), "recent key {} evicted", keys[i]);
    }
    assert!(
        present.iter().all(|&i| i >= n / 2),
        "early keys survived: {present:?}"
    );
    // The broker's own accounting agrees: within budget, and every missing key was evicted.
    let text = scrape_metrics(b.broker.metrics_addr().unwrap()).await;
    let series = |m: &str| format!("{m}{{cache=\"t1/{NS}/lru\"}}");
    let bytes = metric(&text, &series("felix_cache_bytes")).expect("bytes metric");
    let entries = metric(&text, &series("felix_cache_entries")).expect("entries metric");
    let evictions = metric(&text, &series("felix_cache_evictions_total")).expect("evictions");
    assert!(bytes <= max_bytes as f64, "{bytes} bytes held");
    assert_eq!(entries as usize, present.len() + 1, "held keys plus hot");
    assert_eq!(evictions as usize, n + 1 - entries as usize);
    assert!(metric(&text, "felix_cache_hits_total").unwrap() >= n as f64);
}

#[tokio::test]
async fn oversized_values_are_invalid_argument() {
    let b = TestBroker::start("c-large").await;
    let c = b.client().await;
    // Beyond the broker's max_value_bytes (1 MiB by default).
    let err = c
        .cache_put(NS, "c", "k", Bytes::from(vec![0u8; 1024 * 1024 + 1]), None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidArgument, "{err}");
    assert!(err.message().contains("max_value_bytes"), "{err}");
    // Exactly at the limit is fine.
    c.cache_put(NS, "c", "k", Bytes::from(vec![1u8; 1024 * 1024]), None)
        .await
        .unwrap();
    // Larger than one shard of a small cache's budget.
    c.create_cache(NS, "small", Some(16 * 1024), None)
        .await
        .unwrap();
    let err = c
        .cache_put(NS, "small", "k", Bytes::from(vec![0u8; 2000]), None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidArgument, "{err}");
    assert_eq!(c.cache_get(NS, "small", "k").await.unwrap(), None);
    // The connection keeps working.
    c.cache_put(NS, "small", "k", "ok".into(), None)
        .await
        .unwrap();
}

#[tokio::test]
async fn missing_cache_is_not_found_without_auto_create() {
    let b = TestBroker::with_config(test_config_no_auto_create("c-strict")).await;
    let c = b.client().await;
    for err in [
        c.cache_get(NS, "nope", "k").await.map(|_| ()).unwrap_err(),
        c.cache_put(NS, "nope", "k", "v".into(), None)
            .await
            .map(|_| ())
            .unwrap_err(),
        c.cache_delete(NS, "nope", "k")
            .await
            .map(|_| ())
            .unwrap_err(),
        c.cache_get_many(NS, "nope", &["k"])
            .await
            .map(|_| ())
            .unwrap_err(),
    ] {
        assert_eq!(err.code(), ErrorCode::NotFound, "{err}");
    }
    c.create_cache(NS, "yes", None, None).await.unwrap();
    c.cache_put(NS, "yes", "k", "v".into(), None).await.unwrap();
    assert!(c.cache_get(NS, "yes", "k").await.unwrap().is_some());
}

// ---- The JSON path, on a raw request stream. ----

/// A raw request stream speaking JSON only.
struct Raw {
    _endpoint: quinn::Endpoint,
    _conn: quinn::Connection,
    send: quinn::SendStream,
    reader: FrameReader,
}

impl Raw {
    /// Opens a stream and authenticates with `features` (`None`: a plain v1 client).
    async fn connect(b: &TestBroker, features: Option<u64>) -> (Self, Message) {
        let opts =
            felix_transport::ClientOptions::new(felix_transport::ClientTls::CaFile(b.ca.clone()));
        let endpoint = felix_transport::client_endpoint_for(b.addr(), &opts).unwrap();
        let conn = endpoint
            .connect(b.addr(), "localhost")
            .unwrap()
            .await
            .unwrap();
        let (send, recv) = conn.open_bi().await.unwrap();
        let mut raw = Self {
            _endpoint: endpoint,
            _conn: conn,
            send,
            reader: FrameReader::new(recv, felix_wire::frame::DEFAULT_MAX_FRAME),
        };
        let (lo, hi) = features.map(features::split).unzip();
        let reply = raw
            .call(Message::Auth {
                tenant_id: "t1".into(),
                token: None,
                client_flags: features.map(|_| flags::V1_ALL),
                client_features: lo,
                client_features_hi: hi,
            })
            .await;
        (raw, reply)
    }

    async fn call(&mut self, m: Message) -> Message {
        self.send.write_all(&m.to_frame_bytes()).await.unwrap();
        let frame = within(5, "reply", self.reader.next())
            .await
            .unwrap()
            .expect("a reply frame");
        match felix_wire::decode(frame).unwrap() {
            Decoded::Json(m) => m,
            other => panic!("expected JSON, got {other:?}"),
        }
    }
}

fn json_put(key: &str, value: &str, rid: u64) -> Message {
    Message::CachePut {
        tenant_id: "t1".into(),
        namespace: NS.into(),
        cache: "mixed".into(),
        key: key.into(),
        value: Bytes::from(value.to_owned()),
        request_id: Some(rid),
        ttl_ms: None,
        if_absent: None,
        if_version: None,
    }
}

fn json_get(key: &str, rid: u64) -> Message {
    Message::CacheGet {
        tenant_id: "t1".into(),
        namespace: NS.into(),
        cache: "mixed".into(),
        key: key.into(),
        request_id: Some(rid),
    }
}

#[tokio::test]
async fn json_and_binary_paths_see_the_same_entries() {
    let b = TestBroker::start("c-json").await;
    let c: Client = b.client().await;
    // A stream that negotiated the cache extension but not binary frames.
    let (mut raw, auth) = Raw::connect(&b, Some(features::CACHE_EXT | features::ERROR_CODES)).await;
    let Message::AuthOk {
        server_features, ..
    } = auth
    else {
        panic!("expected auth_ok, got {auth:?}")
    };
    let granted = features::join(server_features, None);
    assert_eq!(granted, features::CACHE_EXT | features::ERROR_CODES);

    // JSON put, binary (client) get.
    let Message::CacheOk {
        request_id: Some(1),
        version: Some(v1),
    } = raw.call(json_put("j", "from-json", 1)).await
    else {
        panic!("cache_ok with a version expected")
    };
    let got = c.cache_get(NS, "mixed", "j").await.unwrap().unwrap();
    assert_eq!((got.value.as_ref(), got.version), (&b"from-json"[..], v1));

    // Binary (client) put, JSON get.
    let v2 = c
        .cache_put(NS, "mixed", "b", "from-binary".into(), None)
        .await
        .unwrap();
    let reply = raw.call(json_get("b", 2)).await;
    let Message::CacheValue {
        value: Some(value),
        version: Some(version),
        request_id: Some(2),
        key,
        ..
    } = reply
    else {
        panic!("unexpected {reply:?}")
    };
    assert_eq!(
        (value.as_ref(), version, key.as_str()),
        (&b"from-binary"[..], v2, "b")
    );

    // JSON miss, JSON conditional puts, JSON delete.
    let reply = raw.call(json_get("missing", 3)).await;
    assert!(
        matches!(
            reply,
            Message::CacheValue {
                value: None,
                version: None,
                request_id: Some(3),
                ..
            }
        ),
        "{reply:?}"
    );
    let mut stale = json_put("j", "stale", 4);
    if let Message::CachePut { if_version, .. } = &mut stale {
        *if_version = Some(v1 + 1_000);
    }
    let reply = raw.call(stale).await;
    let Message::Error {
        code: Some(code),
        request_id: Some(4),
        ..
    } = &reply
    else {
        panic!("conflict error expected, got {reply:?}")
    };
    assert_eq!(code, "conflict");
    let mut cas = json_put("j", "cas", 5);
    if let Message::CachePut { if_version, .. } = &mut cas {
        *if_version = Some(v1);
    }
    let Message::CacheOk {
        version: Some(v3), ..
    } = raw.call(cas).await
    else {
        panic!("cas should win")
    };
    assert!(v3 > v2);
    let got = c.cache_get(NS, "mixed", "j").await.unwrap().unwrap();
    assert_eq!((got.value.as_ref(), got.version), (&b"cas"[..], v3));
    let reply = raw
        .call(Message::CacheDelete {
            tenant_id: "t1".into(),
            namespace: NS.into(),
            cache: "mixed".into(),
            key: "b".into(),
            request_id: 6,
        })
        .await;
    assert!(
        matches!(
            reply,
            Message::CacheDeleted {
                request_id: 6,
                existed: true
            }
        ),
        "{reply:?}"
    );
    assert_eq!(c.cache_get(NS, "mixed", "b").await.unwrap(), None);

    // A JSON put with a TTL expires like a binary one.
    let mut short = json_put("ttl", "v", 7);
    if let Message::CachePut { ttl_ms, .. } = &mut short {
        *ttl_ms = Some(100);
    }
    assert!(matches!(raw.call(short).await, Message::CacheOk { .. }));
    let c2 = c.clone();
    eventually(5, "JSON TTL", move || {
        let c = c2.clone();
        async move { c.cache_get(NS, "mixed", "ttl").await.unwrap().is_none() }
    })
    .await;
}

#[tokio::test]
async fn plain_v1_json_client_gets_no_versions_and_no_extensions() {
    let b = TestBroker::start("c-v1").await;
    let c = b.client().await;
    let (mut raw, auth) = Raw::connect(&b, None).await;
    assert!(matches!(auth, Message::Ok { request_id: None }), "{auth:?}");
    let reply = raw.call(json_put("k", "v1", 1)).await;
    assert_eq!(
        reply,
        Message::CacheOk {
            request_id: Some(1),
            version: None
        }
    );
    let reply = raw.call(json_get("k", 2)).await;
    let Message::CacheValue {
        value: Some(v),
        version: None,
        ..
    } = reply
    else {
        panic!("value without version expected, got {reply:?}")
    };
    assert_eq!(v.as_ref(), b"v1");
    // Extension requests are refused on this stream, which keeps working.
    let reply = raw
        .call(Message::CacheDelete {
            tenant_id: "t1".into(),
            namespace: NS.into(),
            cache: "mixed".into(),
            key: "k".into(),
            request_id: 3,
        })
        .await;
    assert!(
        matches!(
            reply,
            Message::Error {
                request_id: Some(3),
                code: None,
                ..
            }
        ),
        "{reply:?}"
    );
    assert!(matches!(
        raw.call(json_get("k", 4)).await,
        Message::CacheValue { value: Some(_), .. }
    ));
    // The extended client sees the same entry, with its version.
    assert!(
        c.cache_get(NS, "mixed", "k")
            .await
            .unwrap()
            .unwrap()
            .version
            > 0
    );
}
