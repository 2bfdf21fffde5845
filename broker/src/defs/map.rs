//! Control-plane documents → broker settings. Pure functions: a document, the broker's
//! configuration (defaults and caps), and a sink for "ignored" notes (logged once each by the
//! caller).
//!
//! | control plane | broker |
//! | --- | --- |
//! | stream `max_records`, `max_bytes` | retention bounds (capped at `limits.max_stream_records` / `max_stream_bytes`) |
//! | stream `subscriber_buffer` | per-subscriber queue (capped at `limits.max_subscriber_buffer`; 0 ignored) |
//! | stream `full_policy` | delivery policy when a subscriber is full |
//! | stream `durability` | only `memory` is supported here: other classes are ignored (logged) |
//! | cache `max_bytes`, `default_ttl_ms` | cache budget (capped at `limits.max_stream_bytes`), default TTL (0 = none) |
//! | group `stream`, `start`, `ack_timeout_ms`, `max_deliveries` | the group's stream, start, lease, attempts (0 ignored) |
//! | quotas `max_connections`, `max_subscriptions`, `publish_bytes_per_s`, `publish_messages_per_s`, `cache_bytes`, `queue_depth` | `quotas.connections`, `subscriptions`, `publish_bytes_per_sec`, `publish_messages_per_sec`, `cache_bytes`, `queue_depth` |
//!
//! Anything else is ignored and reported.

use std::time::Duration;

use serde_json::Value;

use super::{GroupDef, Snapshot};
use crate::cache::CacheConfig;
use crate::config::BrokerConfig;
use crate::quota::{QuotaConfig, QuotaOverride, QuotaTable};
use crate::stream::{FullPolicy, Start, StreamConfig};

type Note<'a> = &'a mut dyn FnMut(String);

fn object(v: &Value) -> Result<&serde_json::Map<String, Value>, String> {
    v.as_object().ok_or_else(|| "not a JSON object".to_string())
}

fn uint(m: &serde_json::Map<String, Value>, k: &str) -> Result<Option<u64>, String> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| format!("{k} is not a non-negative integer")),
    }
}

/// A value capped at a broker limit; the cap is reported.
fn capped(field: &str, v: u64, cap: usize, limit: &str, note: Note<'_>) -> usize {
    match usize::try_from(v) {
        Ok(v) if v <= cap => v,
        _ => {
            note(format!(
                "{field} {v} is above limits.{limit} ({cap}); the broker uses {cap}"
            ));
            cap
        }
    }
}

fn unknown(m: &serde_json::Map<String, Value>, known: &[&str], note: Note<'_>) {
    for k in m.keys() {
        // `name` and `revision` are the API's item decorations, not settings.
        if !known.contains(&k.as_str()) && k != "name" && k != "revision" {
            note(format!(
                "field {k:?} is not supported by this broker: ignored"
            ));
        }
    }
}

/// A stream definition.
pub fn stream(cfg: &BrokerConfig, v: &Value, note: Note<'_>) -> Result<StreamConfig, String> {
    let m = object(v)?;
    let limits = &cfg.limits;
    let mut c = cfg.stream_config();
    if let Some(n) = uint(m, "max_records")? {
        c.retention.max_records = capped(
            "max_records",
            n,
            limits.max_stream_records,
            "max_stream_records",
            note,
        );
    }
    if let Some(n) = uint(m, "max_bytes")? {
        c.retention.max_bytes = capped(
            "max_bytes",
            n,
            limits.max_stream_bytes,
            "max_stream_bytes",
            note,
        );
    }
    match uint(m, "subscriber_buffer")? {
        Some(0) => note("subscriber_buffer 0 ignored (must be > 0)".into()),
        Some(n) => {
            c.subscriber_buffer = capped(
                "subscriber_buffer",
                n,
                limits.max_subscriber_buffer,
                "max_subscriber_buffer",
                note,
            )
        }
        None => {}
    }
    if let Some(p) = m.get("full_policy").filter(|p| !p.is_null()) {
        let s = p.as_str().ok_or("full_policy is not a string")?;
        c.full_policy = s
            .parse::<FullPolicy>()
            .map_err(|_| format!("full_policy {s:?} is unknown"))?;
    }
    match m.get("durability").and_then(Value::as_str) {
        None | Some("memory") => {}
        Some(d) => note(format!(
            "durability {d:?} is not supported by this broker yet: the stream is kept in memory"
        )),
    }
    unknown(
        m,
        &[
            "max_records",
            "max_bytes",
            "subscriber_buffer",
            "full_policy",
            "durability",
        ],
        note,
    );
    Ok(c)
}

/// A cache definition.
pub fn cache(cfg: &BrokerConfig, v: &Value, note: Note<'_>) -> Result<CacheConfig, String> {
    let m = object(v)?;
    let mut c = cfg.cache_config();
    if let Some(n) = uint(m, "max_bytes")? {
        c.max_bytes = capped(
            "max_bytes",
            n,
            cfg.limits.max_stream_bytes,
            "max_stream_bytes",
            note,
        );
    }
    if let Some(ms) = uint(m, "default_ttl_ms")? {
        c.default_ttl = (ms > 0).then(|| Duration::from_millis(ms));
    }
    unknown(m, &["max_bytes", "default_ttl_ms"], note);
    Ok(c)
}

/// A queue-group definition.
pub fn group(cfg: &BrokerConfig, v: &Value, note: Note<'_>) -> Result<GroupDef, String> {
    let m = object(v)?;
    let stream = m
        .get("stream")
        .and_then(Value::as_str)
        .ok_or("no stream")?
        .to_string();
    let mut c = cfg.group_config();
    match uint(m, "ack_timeout_ms")? {
        Some(0) => note("ack_timeout_ms 0 ignored (must be > 0)".into()),
        Some(ms) => c.ack_timeout = Duration::from_millis(ms),
        None => {}
    }
    match uint(m, "max_deliveries")? {
        Some(0) => note("max_deliveries 0 ignored (must be > 0)".into()),
        Some(n) => c.max_deliveries = u32::try_from(n).unwrap_or(u32::MAX),
        None => {}
    }
    let start = match m.get("start") {
        None | Some(Value::Null) => Start::Earliest,
        Some(Value::String(s)) if s == "earliest" => Start::Earliest,
        Some(Value::String(s)) if s == "latest" => Start::Latest,
        Some(Value::Number(n)) if n.is_u64() => Start::Offset(n.as_u64().unwrap_or(0)),
        Some(_) => return Err("start is not earliest, latest or an offset".into()),
    };
    unknown(
        m,
        &["stream", "start", "ack_timeout_ms", "max_deliveries"],
        note,
    );
    Ok(GroupDef {
        stream,
        config: c,
        start,
    })
}

/// The quota table with the control plane's per-tenant documents in place of the local
/// `[quotas.tenants.*]` overrides. A document's absent fields, and tenants without one, take
/// the local `[quotas]` defaults; a document the broker cannot read leaves its tenant on them
/// too (reported).
pub fn quota_table(local: &QuotaConfig, snap: &Snapshot, note: Note<'_>) -> QuotaTable {
    let mut q = QuotaConfig {
        tenants: Default::default(),
        ..local.clone()
    };
    for (t, doc) in &snap.tenants {
        let Some(v) = &doc.quotas else { continue };
        match quota_override(v, note) {
            Ok(o) => {
                q.tenants.insert(t.clone(), o);
            }
            Err(e) => note(format!("quotas of {t} left out: {e}")),
        }
    }
    QuotaTable::from_config(&q)
}

fn quota_override(v: &Value, note: Note<'_>) -> Result<QuotaOverride, String> {
    let m = object(v)?;
    let o = QuotaOverride {
        connections: uint(m, "max_connections")?,
        subscriptions: uint(m, "max_subscriptions")?,
        publish_bytes_per_sec: uint(m, "publish_bytes_per_s")?,
        publish_messages_per_sec: uint(m, "publish_messages_per_s")?,
        cache_bytes: uint(m, "cache_bytes")?,
        queue_depth: uint(m, "queue_depth")?,
    };
    unknown(
        m,
        &[
            "max_connections",
            "max_subscriptions",
            "publish_bytes_per_s",
            "publish_messages_per_s",
            "cache_bytes",
            "queue_depth",
        ],
        note,
    );
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stream_definitions_map_capped_and_unsupported_fields_are_reported() {
        let mut cfg = BrokerConfig::default();
        cfg.limits.max_stream_records = 1000;
        let mut notes = Vec::new();
        let c = stream(
            &cfg,
            &json!({"max_records": 5000, "max_bytes": 4096, "subscriber_buffer": 7,
                    "full_policy": "block", "durability": "always", "placement": "eu",
                    "name": "s", "revision": 3}),
            &mut |m| notes.push(m),
        )
        .unwrap();
        assert_eq!(c.retention.max_records, 1000, "capped");
        assert_eq!(c.retention.max_bytes, 4096);
        assert_eq!(c.subscriber_buffer, 7);
        assert_eq!(c.full_policy, FullPolicy::Block);
        assert_eq!(notes.len(), 3, "{notes:?}");
        assert!(notes.iter().any(|n| n.contains("max_stream_records")));
        assert!(notes.iter().any(|n| n.contains("durability")));
        assert!(notes.iter().any(|n| n.contains("placement")));
        assert!(stream(&cfg, &json!({"full_policy": "sometimes"}), &mut |_| {}).is_err());
        assert!(stream(&cfg, &json!({"max_bytes": -1}), &mut |_| {}).is_err());
        let d = stream(&cfg, &json!({}), &mut |_| {}).unwrap();
        assert_eq!(
            d,
            cfg.stream_config(),
            "an empty definition is the defaults"
        );
    }

    #[test]
    fn cache_and_group_definitions_map() {
        let cfg = BrokerConfig::default();
        let c = cache(
            &cfg,
            &json!({"max_bytes": 1234, "default_ttl_ms": 500}),
            &mut |_| {},
        )
        .unwrap();
        assert_eq!(c.max_bytes, 1234);
        assert_eq!(c.default_ttl, Some(Duration::from_millis(500)));
        let g = group(
            &cfg,
            &json!({"stream": "orders", "start": "latest", "ack_timeout_ms": 250, "max_deliveries": 2}),
            &mut |_| {},
        )
        .unwrap();
        assert_eq!(g.stream, "orders");
        assert_eq!(g.start, Start::Latest);
        assert_eq!(g.config.ack_timeout, Duration::from_millis(250));
        assert_eq!(g.config.max_deliveries, 2);
        assert!(group(&cfg, &json!({"start": "latest"}), &mut |_| {}).is_err());
    }

    #[test]
    fn control_plane_quotas_replace_local_overrides_and_fall_back_to_local_defaults() {
        let local = QuotaConfig {
            connections: 50,
            tenants: [(
                "acme".to_string(),
                QuotaOverride {
                    connections: Some(7),
                    ..Default::default()
                },
            )]
            .into(),
            ..QuotaConfig::default()
        };
        let snap: Snapshot = serde_json::from_value(json!({
            "revision": 9,
            "tenants": {
                "globex": {"quotas": {"max_connections": 3, "publish_messages_per_s": 10}},
                "acme": {"quotas": null}
            }
        }))
        .unwrap();
        let t = quota_table(&local, &snap, &mut |_| {});
        assert_eq!(t.get("globex").connections, 3);
        assert_eq!(t.get("globex").publish_messages_per_sec, 10);
        assert_eq!(
            t.get("globex").subscriptions,
            local.subscriptions,
            "absent fields take the local default"
        );
        assert_eq!(
            t.get("acme").connections,
            50,
            "the local override is replaced: acme has no control-plane quotas"
        );
    }
}
