//! Our own test vectors: one frame per frame type, message variant and extension op, kept in
//! `vectors/NAME.hex` + `vectors/NAME.json` for other languages' tests.
//!
//! `FELIX_REGEN_VECTORS=1 cargo test -p felix-wire --test vectors` (re)writes the files from
//! the frames built here; otherwise the files must exist, match byte for byte, and decode
//! back to the value each frame was built from.

// The helpers are shared with the other test binaries, one directory up.
#[path = "../common/mod.rs"]
mod common;

mod cache;
mod control;
mod describe;
mod pubsub;
mod queues;

use std::collections::BTreeSet;
use std::fs;

use bytes::{Bytes, BytesMut};
use common::{decode_bytes, encode_decoded, encode_events_no_sub, from_hex, to_hex, vectors_dir};
use describe::{ordered_pretty, vector_json};
use felix_wire::ext::op;
use felix_wire::frame::{flags, HEADER_LEN};
use felix_wire::{AckError, BinaryAck, Decoded, ErrorCode, Message};
use serde_json::Value;

struct Vector {
    name: String,
    bytes: Bytes,
    value: Decoded,
}

fn b(s: &'static str) -> Bytes {
    Bytes::from_static(s.as_bytes())
}

fn s(v: &str) -> String {
    v.to_owned()
}

const T: &str = "acme";
const NS: &str = "prod";

/// The vectors in the order the domain modules add them.
#[derive(Default)]
struct Vectors(Vec<Vector>);

impl Vectors {
    /// A JSON frame, as the message frames itself for the wire.
    fn json(&mut self, name: &str, m: Message) {
        self.0.push(Vector {
            name: name.to_owned(),
            bytes: m.to_frame_bytes(),
            value: Decoded::Json(m),
        });
    }

    /// A binary frame, written by the crate's encoders.
    fn bin(&mut self, name: &str, value: Decoded) {
        let bytes = encode_decoded(&value);
        self.0.push(Vector {
            name: name.to_owned(),
            bytes,
            value,
        });
    }
}

/// Every vector, built in code: the JSON frames, then the binary ones, in the order of the
/// former single table so a run reports the same first failing vector as before.
fn all_vectors() -> Vec<Vector> {
    let mut v = Vectors::default();
    control::handshake(&mut v);
    pubsub::json_frames(&mut v);
    cache::json_frames(&mut v);
    control::admin(&mut v);
    queues::json_frames(&mut v);
    control::keepalive(&mut v);
    pubsub::binary_frames(&mut v);
    cache::ext_frames(&mut v);
    v.0
}

fn regen() -> bool {
    std::env::var("FELIX_REGEN_VECTORS").is_ok_and(|v| v == "1")
}

#[test]
fn vectors_match_files() {
    let dir = vectors_dir();
    let vectors = all_vectors();
    let mut names = BTreeSet::new();
    for v in &vectors {
        assert!(names.insert(v.name.clone()), "duplicate vector {}", v.name);
        // The frame decodes to the value it was built from and re-encodes identically.
        let decoded = decode_bytes(&v.bytes).unwrap_or_else(|e| panic!("{}: {e}", v.name));
        assert_eq!(decoded, v.value, "{}", v.name);
        assert_eq!(encode_decoded(&decoded), v.bytes, "{}: re-encoding", v.name);

        let want_json = vector_json(v);
        let hex_path = dir.join(format!("{}.hex", v.name));
        let json_path = dir.join(format!("{}.json", v.name));
        if regen() {
            fs::write(&hex_path, format!("{}\n", to_hex(&v.bytes))).unwrap();
            fs::write(&json_path, ordered_pretty(&want_json)).unwrap();
            continue;
        }
        let hint = "run FELIX_REGEN_VECTORS=1 cargo test -p felix-wire --test vectors";
        let hex = fs::read_to_string(&hex_path)
            .unwrap_or_else(|e| panic!("{}: {e} ({hint})", hex_path.display()));
        assert_eq!(
            hex.trim_end(),
            to_hex(&v.bytes),
            "{}: .hex differs ({hint})",
            v.name
        );
        let on_disk: Value = serde_json::from_str(
            &fs::read_to_string(&json_path)
                .unwrap_or_else(|e| panic!("{}: {e} ({hint})", json_path.display())),
        )
        .unwrap();
        assert_eq!(on_disk, want_json, "{}: .json differs ({hint})", v.name);
        // What a reader of the files sees decodes back to the same value.
        let from_file = from_hex(on_disk["frame_hex"].as_str().unwrap());
        assert_eq!(decode_bytes(&from_file).unwrap(), v.value, "{}", v.name);
        assert_eq!(from_hex(&hex), from_file, "{}", v.name);
    }

    if !regen() {
        // No stale vectors: every NAME.hex / NAME.json on disk is built here.
        for entry in fs::read_dir(&dir).unwrap() {
            let file = entry.unwrap().file_name().into_string().unwrap();
            if let Some(stem) = file
                .strip_suffix(".hex")
                .or_else(|| file.strip_suffix(".json"))
            {
                assert!(names.contains(stem), "stale vector file {file}");
            }
        }
    }
}

/// The names serde knows for `Message`, read from its own "unknown variant" error, so a new
/// variant without a vector fails here.
fn message_type_names() -> Vec<String> {
    let err = serde_json::from_str::<Message>(r#"{"type":"__no_such_type__"}"#).unwrap_err();
    let text = err.to_string();
    let list = text
        .split("expected one of")
        .nth(1)
        .expect("variant list in error");
    list.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_message_variant_and_frame_type_has_a_vector() {
    let vectors = all_vectors();
    let mut types = BTreeSet::new();
    let mut frame_flags = BTreeSet::new();
    let mut ops = BTreeSet::new();
    let mut kinds = BTreeSet::new();
    for v in &vectors {
        frame_flags.insert(u16::from_be_bytes([v.bytes[6], v.bytes[7]]));
        match &v.value {
            Decoded::Json(m) => {
                let val = serde_json::to_value(m).unwrap();
                types.insert(val["type"].as_str().unwrap().to_owned());
            }
            Decoded::Ext(_) => {
                ops.insert(v.bytes[HEADER_LEN]);
            }
            Decoded::Ack(a) => {
                kinds.insert(match &a.error {
                    None => "ack_ok",
                    Some(e) if e.code.is_none() => "ack_error",
                    Some(_) => "ack_error_code",
                });
            }
            _ => {}
        }
    }
    let all_types = message_type_names();
    assert!(all_types.len() >= 37, "parsed {all_types:?}");
    for t in &all_types {
        assert!(types.contains(t), "no vector for message type {t}");
    }
    assert_eq!(frame_flags, flags::KINDS.into_iter().collect());
    let want_ops = [
        op::CACHE_GET,
        op::CACHE_PUT,
        op::CACHE_DELETE,
        op::CACHE_VALUE,
        op::CACHE_OK,
        op::CACHE_DELETED,
        op::ERROR,
    ];
    assert_eq!(ops, want_ops.into_iter().collect());
    assert_eq!(
        kinds,
        ["ack_ok", "ack_error", "ack_error_code"]
            .into_iter()
            .collect()
    );
    for code in ErrorCode::ALL {
        assert!(vectors
            .iter()
            .any(|v| v.name == format!("error_code_{}", code.as_str())));
    }
}

/// The extension and v1 binary ack bodies differ only by the 3-byte trailer.
#[test]
fn ack_code_trailer_is_three_bytes() {
    let ack = BinaryAck {
        request_id: 9,
        error: Some(AckError {
            message: s("x"),
            code: Some(ErrorCode::Conflict),
            retryable: true,
        }),
    };
    let (mut plain, mut coded) = (BytesMut::new(), BytesMut::new());
    ack.encode(&mut plain, false);
    ack.encode(&mut coded, true);
    assert_eq!(coded.len(), plain.len() + 3);
    assert_eq!(&coded[coded.len() - 3..], &[0x00, 0x04, 0x01]);
    assert_eq!(&coded[12..coded.len() - 3], &plain[12..]);
    let mut no_sub = BytesMut::new();
    encode_events_no_sub(&mut no_sub, &[b("a")]);
    assert_eq!(to_hex(&no_sub[12..]), "000000010000000161");
}
