//! The language-neutral JSON form of a vector: what `vectors/NAME.json` holds.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use felix_wire::ext::op;
use felix_wire::frame::HEADER_LEN;
use felix_wire::{CacheTarget, Decoded, ErrorCode, ExtFrame, PutCond};
use serde_json::{json, Map, Value};

use super::common::to_hex;
use super::{s, Vector};

fn b64(b: &[u8]) -> Value {
    Value::String(STANDARD.encode(b))
}

/// Adds `payloads` (base64) and, when every payload is UTF-8, `payloads_utf8`.
fn put_payloads(m: &mut Map<String, Value>, payloads: &[&[u8]]) {
    m.insert(s("payloads"), payloads.iter().map(|p| b64(p)).collect());
    let utf8: Option<Vec<Value>> = payloads
        .iter()
        .map(|p| {
            std::str::from_utf8(p)
                .ok()
                .map(|t| Value::String(t.to_owned()))
        })
        .collect();
    if let Some(u) = utf8 {
        m.insert(s("payloads_utf8"), Value::Array(u));
    }
}

fn put_value(m: &mut Map<String, Value>, v: &[u8]) {
    m.insert(s("value"), b64(v));
    if let Ok(t) = std::str::from_utf8(v) {
        m.insert(s("value_utf8"), Value::String(t.to_owned()));
    }
}

fn put_target(m: &mut Map<String, Value>, t: &CacheTarget) {
    m.insert(s("tenant_id"), json!(t.tenant_id));
    m.insert(s("namespace"), json!(t.namespace));
    m.insert(s("cache"), json!(t.cache));
    m.insert(s("key"), json!(t.key));
}

fn put_code(m: &mut Map<String, Value>, code: ErrorCode, retryable: bool) {
    m.insert(s("code"), json!(code.as_str()));
    m.insert(s("code_num"), json!(code.as_u16()));
    m.insert(s("retryable"), json!(retryable));
}

/// The language-neutral description of a decoded frame: `(kind, key, object)` where key is
/// `message` for JSON frames and `fields` for binary ones.
fn describe(d: &Decoded, payload: &[u8]) -> (&'static str, &'static str, Value) {
    let mut m = Map::new();
    let kind = match d {
        Decoded::Json(_) => {
            let obj: Value = serde_json::from_slice(payload).unwrap();
            return ("json", "message", obj);
        }
        Decoded::Publish(p) => {
            if let Some((rid, mode)) = p.ack {
                m.insert(s("request_id"), json!(rid));
                m.insert(s("ack_mode"), serde_json::to_value(mode).unwrap());
            }
            m.insert(s("tenant_id"), json!(p.tenant_id));
            m.insert(s("namespace"), json!(p.namespace));
            m.insert(s("stream"), json!(p.stream));
            put_payloads(
                &mut m,
                &p.payloads.iter().map(|x| x.as_ref()).collect::<Vec<_>>(),
            );
            if p.ack.is_some() {
                "acked_publish_batch"
            } else {
                "publish_batch"
            }
        }
        Decoded::Events(e) => {
            m.insert(s("subscription_id"), json!(e.subscription_id));
            put_payloads(
                &mut m,
                &e.payloads.iter().map(|x| x.as_ref()).collect::<Vec<_>>(),
            );
            "event_batch"
        }
        Decoded::EventsNoSub(p) => {
            put_payloads(&mut m, &p.iter().map(|x| x.as_ref()).collect::<Vec<_>>());
            "event_batch_no_sub"
        }
        Decoded::OffsetEvents(e) => {
            m.insert(s("subscription_id"), json!(e.subscription_id));
            m.insert(s("stream"), json!(e.stream));
            m.insert(
                s("offsets"),
                e.events.iter().map(|(o, _)| json!(o)).collect(),
            );
            put_payloads(
                &mut m,
                &e.events.iter().map(|(_, p)| p.as_ref()).collect::<Vec<_>>(),
            );
            "offset_event_batch"
        }
        Decoded::Ack(a) => {
            m.insert(s("request_id"), json!(a.request_id));
            match &a.error {
                None => {
                    m.insert(s("status"), json!("ok"));
                    m.insert(s("message"), Value::Null);
                }
                Some(e) => {
                    m.insert(s("status"), json!("error"));
                    m.insert(s("message"), json!(e.message));
                    if let Some(code) = e.code {
                        put_code(&mut m, code, e.retryable);
                    }
                }
            }
            "binary_ack"
        }
        Decoded::Ext(x) => {
            m.insert(s("request_id"), json!(x.request_id()));
            let (name, byte) = match x {
                ExtFrame::CacheGet { target, .. } => {
                    put_target(&mut m, target);
                    ("cache_get", op::CACHE_GET)
                }
                ExtFrame::CachePut {
                    target,
                    ttl_ms,
                    cond,
                    value,
                    ..
                } => {
                    put_target(&mut m, target);
                    let (c, ver) = match cond {
                        PutCond::Always => ("always", 0),
                        PutCond::IfAbsent => ("if_absent", 0),
                        PutCond::IfVersion(v) => ("if_version", *v),
                    };
                    m.insert(s("condition"), json!(c));
                    m.insert(s("version"), json!(ver));
                    m.insert(s("ttl_ms"), json!(ttl_ms.unwrap_or(0)));
                    put_value(&mut m, value);
                    ("cache_put", op::CACHE_PUT)
                }
                ExtFrame::CacheDelete { target, .. } => {
                    put_target(&mut m, target);
                    ("cache_delete", op::CACHE_DELETE)
                }
                ExtFrame::CacheValue { value, .. } => {
                    m.insert(s("found"), json!(value.is_some()));
                    if let Some((ver, v)) = value {
                        m.insert(s("version"), json!(ver));
                        put_value(&mut m, v);
                    }
                    ("cache_value", op::CACHE_VALUE)
                }
                ExtFrame::CacheOk { version, .. } => {
                    m.insert(s("version"), json!(version));
                    ("cache_ok", op::CACHE_OK)
                }
                ExtFrame::CacheDeleted { existed, .. } => {
                    m.insert(s("existed"), json!(existed));
                    ("cache_deleted", op::CACHE_DELETED)
                }
                ExtFrame::Error {
                    code,
                    retryable,
                    message,
                    ..
                } => {
                    put_code(&mut m, *code, *retryable);
                    m.insert(s("message"), json!(message));
                    ("error", op::ERROR)
                }
            };
            m.insert(s("op"), json!(name));
            m.insert(s("op_byte"), json!(byte));
            "ext"
        }
    };
    (kind, "fields", Value::Object(m))
}

pub(crate) fn vector_json(v: &Vector) -> Value {
    let frame_flags = u16::from_be_bytes([v.bytes[6], v.bytes[7]]);
    let (kind, key, body) = describe(&v.value, &v.bytes[HEADER_LEN..]);
    let mut m = Map::new();
    m.insert(s("name"), json!(v.name));
    m.insert(s("flags"), json!(frame_flags));
    m.insert(s("kind"), json!(kind));
    m.insert(s(key), body);
    m.insert(s("frame_hex"), json!(to_hex(&v.bytes)));
    Value::Object(m)
}

/// Pretty JSON with the top-level keys in reading order (name, flags, kind, body, frame_hex).
pub(crate) fn ordered_pretty(v: &Value) -> String {
    let keys = ["name", "flags", "kind", "message", "fields", "frame_hex"];
    let obj = v.as_object().unwrap();
    assert!(obj.keys().all(|k| keys.contains(&k.as_str())));
    let parts: Vec<String> = keys
        .iter()
        .filter_map(|k| obj.get(*k).map(|val| (k, val)))
        .map(|(k, val)| {
            let text = serde_json::to_string_pretty(val)
                .unwrap()
                .replace('\n', "\n  ");
            format!("  \"{k}\": {text}")
        })
        .collect();
    format!("{{\n{}\n}}\n", parts.join(",\n"))
}
