//! The v1 baseline vectors (frames made by the original implementation, `vectors/v1/`):
//! every frame decodes to exactly the fields its JSON file gives, and our binary encoders
//! reproduce the original bytes.

mod common;

use std::fs;

use bytes::{Bytes, BytesMut};
use common::{decode_bytes, from_hex, to_hex, vectors_dir};
use felix_wire::frame::{flags, Frame, DEFAULT_MAX_FRAME, HEADER_LEN};
use felix_wire::{decode, AckMode, BinaryAck, Decoded, Message, PublishBatch};
use serde_json::Value;

struct Vector {
    name: String,
    json: Value,
    frame: Vec<u8>,
}

fn load() -> Vec<Vector> {
    let dir = vectors_dir().join("v1");
    let mut names: Vec<String> = fs::read_dir(&dir)
        .expect("vectors/v1 exists")
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter_map(|f| f.strip_suffix(".json").map(str::to_owned))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let json: Value = serde_json::from_str(
                &fs::read_to_string(dir.join(format!("{name}.json"))).unwrap(),
            )
            .unwrap();
            assert_eq!(json["name"], name.as_str(), "{name}: name field");
            let hex_file = fs::read_to_string(dir.join(format!("{name}.hex"))).unwrap();
            let frame = from_hex(&hex_file);
            assert_eq!(
                frame,
                from_hex(json["frame_hex"].as_str().unwrap()),
                "{name}: .hex and frame_hex differ"
            );
            assert_eq!(
                &frame[HEADER_LEN..],
                from_hex(json["payload_hex"].as_str().unwrap()).as_slice(),
                "{name}: payload_hex is not the frame's payload"
            );
            Vector { name, json, frame }
        })
        .collect()
}

fn str_field<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str()
        .unwrap_or_else(|| panic!("field {k} is a string"))
}

fn u64_field(v: &Value, k: &str) -> u64 {
    v[k].as_u64()
        .unwrap_or_else(|| panic!("field {k} is a u64"))
}

fn check_json(v: &Vector) {
    let payload_json = str_field(&v.json, "payload_json");
    let frame = Frame::decode_exact(&v.frame, DEFAULT_MAX_FRAME).unwrap();
    assert_eq!(frame.flags, flags::JSON, "{}", v.name);
    assert_eq!(
        frame.payload.as_ref(),
        payload_json.as_bytes(),
        "{}",
        v.name
    );
    let Decoded::Json(msg) = decode(frame).unwrap() else {
        panic!("{}: not JSON", v.name)
    };
    assert_eq!(
        msg,
        Message::decode(payload_json.as_bytes()).unwrap(),
        "{}",
        v.name
    );

    // Every field the original sent survives decoding with the same value, and nothing is
    // invented: our serialization of the decoded message is the same JSON object.
    let original: Value = serde_json::from_str(payload_json).unwrap();
    assert_eq!(
        serde_json::to_value(&msg).unwrap(),
        original,
        "{}: fields",
        v.name
    );

    // Our re-encoding decodes to the same message.
    let ours = msg.to_frame_bytes();
    assert_eq!(
        decode_bytes(&ours).unwrap(),
        Decoded::Json(msg.clone()),
        "{}",
        v.name
    );
}

fn check_publish_acked(v: &Vector) {
    let j = &v.json;
    assert_eq!(
        u64_field(j, "flags"),
        u64::from(flags::PUBLISH_BATCH | flags::ACKED)
    );
    let mode: AckMode = serde_json::from_value(j["ack_mode"].clone()).unwrap();
    let payloads: Vec<Bytes> = j["payloads_utf8"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| Bytes::from(p.as_str().unwrap().to_owned()))
        .collect();
    let expected = PublishBatch {
        ack: Some((u64_field(j, "request_id"), mode)),
        tenant_id: str_field(j, "tenant_id").to_owned(),
        namespace: str_field(j, "namespace").to_owned(),
        stream: str_field(j, "stream").to_owned(),
        payloads,
    };
    assert_eq!(
        decode_bytes(&v.frame).unwrap(),
        Decoded::Publish(expected.clone())
    );
    let mut out = BytesMut::new();
    expected.encode(&mut out);
    assert_eq!(
        to_hex(&out),
        str_field(j, "frame_hex"),
        "{}: our encoding",
        v.name
    );
}

fn check_binary_ack(v: &Vector) {
    let j = &v.json;
    assert_eq!(u64_field(j, "flags"), u64::from(flags::BINARY_ACK));
    let Decoded::Ack(ack) = decode_bytes(&v.frame).unwrap() else {
        panic!("{}", v.name)
    };
    assert_eq!(ack.request_id, u64_field(j, "request_id"), "{}", v.name);
    match str_field(j, "status") {
        "ok" => {
            assert!(j["message"].is_null(), "{}", v.name);
            assert_eq!(ack.error, None, "{}", v.name);
        }
        "error" => {
            let e = ack
                .error
                .as_ref()
                .expect("error status decodes to an error");
            assert_eq!(e.message, str_field(j, "message"), "{}", v.name);
            assert_eq!(e.code, None, "{}: v1 acks carry no code", v.name);
            assert!(!e.retryable);
        }
        other => panic!("{}: unknown status {other}", v.name),
    }
    // v1 peers never negotiated error codes: no trailer, byte for byte.
    let mut out = BytesMut::new();
    BinaryAck::encode(&ack, &mut out, false);
    assert_eq!(
        to_hex(&out),
        str_field(j, "frame_hex"),
        "{}: our encoding",
        v.name
    );
}

#[test]
fn every_v1_vector_decodes_to_its_fields() {
    let vectors = load();
    assert_eq!(vectors.len(), 13, "the v1 set has 13 vectors");
    for v in &vectors {
        if v.json.get("payload_json").is_some() {
            check_json(v);
        } else {
            match str_field(&v.json, "kind") {
                "binary_acked_publish_batch" => check_publish_acked(v),
                "binary_publish_ack" => check_binary_ack(v),
                other => panic!("{}: unhandled kind {other}", v.name),
            }
        }
    }
}

/// The value comes from the vector, never from a constant: 25 (0x0019) is deliberately a
/// subset of the flags we know.
#[test]
fn auth_with_capabilities_reads_client_flags() {
    let v = load()
        .into_iter()
        .find(|v| v.name == "auth_with_capabilities")
        .unwrap();
    let original: Value = serde_json::from_str(str_field(&v.json, "payload_json")).unwrap();
    let want = original["client_flags"].as_u64().unwrap();
    assert_eq!(want, 25);
    assert_ne!(want, u64::from(flags::ALL));
    match decode_bytes(&v.frame).unwrap() {
        Decoded::Json(Message::Auth {
            tenant_id,
            token,
            client_flags,
            client_features,
            ..
        }) => {
            assert_eq!(client_flags.map(u64::from), Some(want));
            assert_eq!(tenant_id, original["tenant_id"].as_str().unwrap());
            assert_eq!(token.as_deref(), original["token"].as_str());
            assert_eq!(client_features, None);
        }
        other => panic!("not auth: {other:?}"),
    }
}

#[test]
fn auth_ok_reads_server_flags() {
    let v = load().into_iter().find(|v| v.name == "auth_ok").unwrap();
    let original: Value = serde_json::from_str(str_field(&v.json, "payload_json")).unwrap();
    match decode_bytes(&v.frame).unwrap() {
        Decoded::Json(Message::AuthOk {
            server_flags,
            server_features,
            ..
        }) => {
            assert_eq!(
                u64::from(server_flags),
                original["server_flags"].as_u64().unwrap()
            );
            assert_eq!(server_features, None);
        }
        other => panic!("not auth_ok: {other:?}"),
    }
}

/// The `.hex` files may end with a newline; readers must trim it.
#[test]
fn hex_files_are_lowercase_hex() {
    for v in load() {
        let text =
            fs::read_to_string(vectors_dir().join("v1").join(format!("{}.hex", v.name))).unwrap();
        let t = text.trim();
        assert!(
            t.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "{}",
            v.name
        );
    }
}
