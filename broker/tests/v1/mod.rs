//! A deliberately small Felix wire **v1** client, written from `felix-wire-v1.md` alone.
//!
//! It shares no code with the broker's own codec: no `felix-wire` message types, no
//! `felix-client`. Frames are built and parsed by hand (12-byte big-endian header, JSON via
//! `serde_json::json!`, base64 via the `base64` crate, binary batches byte by byte), over raw
//! quinn with no ALPN offered, the way existing v1 clients connect. Only the QUIC endpoint
//! comes from `felix-transport` (TLS setup is not part of the wire protocol).
//!
//! Tests that need malformed bytes build them with [`frame`] / [`header`] directly.

#![allow(dead_code)] // each test binary uses a different subset

use std::net::SocketAddr;
use std::path::Path;

use base64::Engine;
use felix_transport::quinn;
use felix_transport::{ClientOptions, ClientTls};
use serde_json::{json, Value};

/// `FLX1`.
pub const MAGIC: u32 = 0x464C_5831;
/// Protocol version in every header.
pub const VERSION: u16 = 1;
/// Flags: JSON payload.
pub const F_JSON: u16 = 0x0000;
/// Flags: binary publish batch.
pub const F_PUBLISH: u16 = 0x0001;
/// Flags: binary event batch for one subscription.
pub const F_EVENTS: u16 = 0x0002;
/// Flags: binary event batch without subscription id.
pub const F_EVENTS_NO_SUB: u16 = 0x0004;
/// Flags: acknowledged (with `F_PUBLISH`).
pub const F_ACKED: u16 = 0x0008;
/// Flags: binary ack.
pub const F_ACK: u16 = 0x0010;
/// Ack mode byte of an acked binary publish: one ack per message.
pub const PER_MESSAGE: u8 = 1;
/// Ack mode byte of an acked binary publish: one ack per batch.
pub const PER_BATCH: u8 = 2;

/// Fields a v1 peer never sees: extension fields our broker adds only when negotiated.
pub const EXTENSION_FIELDS: &[&str] = &[
    "offset",
    "offsets",
    "version",
    "code",
    "retryable",
    "start_offset",
    "server_features",
    "server_features_hi",
];

pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub fn unb64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .unwrap_or_else(|e| panic!("invalid base64 {s:?}: {e}"))
}

/// Lowercase/uppercase hex to bytes (for the reference vectors).
pub fn unhex(s: &str) -> Vec<u8> {
    let s = s.trim();
    assert_eq!(s.len() % 2, 0, "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit"))
        .collect()
}

/// A 12-byte header with arbitrary fields (for malformed-frame tests too).
pub fn header(magic: u32, version: u16, flags: u16, length: u32) -> Vec<u8> {
    let mut h = Vec::with_capacity(12);
    h.extend_from_slice(&magic.to_be_bytes());
    h.extend_from_slice(&version.to_be_bytes());
    h.extend_from_slice(&flags.to_be_bytes());
    h.extend_from_slice(&length.to_be_bytes());
    h
}

/// A well-formed frame.
pub fn frame(flags: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = header(MAGIC, VERSION, flags, payload.len() as u32);
    f.extend_from_slice(payload);
    f
}

/// A JSON frame (flags 0).
pub fn json_frame(v: &Value) -> Vec<u8> {
    frame(F_JSON, v.to_string().as_bytes())
}

/// `{"type":"auth","tenant_id":…,"token":…}`: what a plain v1 client sends.
pub fn plain_auth(tenant: &str) -> Value {
    json!({"type": "auth", "tenant_id": tenant, "token": "v1-token"})
}

fn put_str16(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// Body of a binary publish batch: tenant, namespace, stream (u16 length + bytes each),
/// u32 count, then count × (u32 length + bytes).
pub fn publish_body(tenant: &str, ns: &str, stream: &str, payloads: &[&[u8]]) -> Vec<u8> {
    let mut b = Vec::new();
    put_str16(&mut b, tenant);
    put_str16(&mut b, ns);
    put_str16(&mut b, stream);
    b.extend_from_slice(&(payloads.len() as u32).to_be_bytes());
    for p in payloads {
        b.extend_from_slice(&(p.len() as u32).to_be_bytes());
        b.extend_from_slice(p);
    }
    b
}

/// A `0x0001` frame: binary publish, never acknowledged.
pub fn binary_publish(tenant: &str, ns: &str, stream: &str, payloads: &[&[u8]]) -> Vec<u8> {
    frame(F_PUBLISH, &publish_body(tenant, ns, stream, payloads))
}

/// A `0x0009` frame: u64 request id, u8 ack mode, then the publish body.
pub fn binary_publish_acked(
    request_id: u64,
    mode: u8,
    tenant: &str,
    ns: &str,
    stream: &str,
    payloads: &[&[u8]],
) -> Vec<u8> {
    let mut body = request_id.to_be_bytes().to_vec();
    body.push(mode);
    body.extend_from_slice(&publish_body(tenant, ns, stream, payloads));
    frame(F_PUBLISH | F_ACKED, &body)
}

/// A `0x0010` binary ack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub status: u8,
    pub request_id: u64,
    pub message: String,
    /// Bytes after the message (empty for a v1 peer; code trailer with error codes).
    pub trailer: Vec<u8>,
}

pub fn parse_ack(p: &[u8]) -> Ack {
    assert!(p.len() >= 11, "binary ack of {} bytes", p.len());
    let status = p[0];
    let request_id = u64::from_be_bytes(p[1..9].try_into().unwrap());
    let n = u16::from_be_bytes([p[9], p[10]]) as usize;
    assert!(p.len() >= 11 + n, "ack message runs past the frame");
    Ack {
        status,
        request_id,
        message: String::from_utf8(p[11..11 + n].to_vec()).expect("utf-8 ack message"),
        trailer: p[11 + n..].to_vec(),
    }
}

/// A `0x0002` event batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventBatch {
    pub subscription_id: u64,
    pub payloads: Vec<Vec<u8>>,
}

pub fn parse_event_batch(p: &[u8]) -> EventBatch {
    assert!(p.len() >= 12, "event batch of {} bytes", p.len());
    let subscription_id = u64::from_be_bytes(p[0..8].try_into().unwrap());
    let count = u32::from_be_bytes(p[8..12].try_into().unwrap()) as usize;
    let mut at = 12;
    let mut payloads = Vec::with_capacity(count);
    for _ in 0..count {
        assert!(p.len() >= at + 4, "event length runs past the frame");
        let n = u32::from_be_bytes(p[at..at + 4].try_into().unwrap()) as usize;
        at += 4;
        assert!(p.len() >= at + n, "event payload runs past the frame");
        payloads.push(p[at..at + n].to_vec());
        at += n;
    }
    assert_eq!(at, p.len(), "trailing bytes after the event batch");
    EventBatch {
        subscription_id,
        payloads,
    }
}

/// One received frame.
#[derive(Debug, Clone)]
pub struct Frame {
    pub flags: u16,
    pub payload: Vec<u8>,
}

impl Frame {
    /// The JSON payload (panics unless this is a JSON frame).
    pub fn json(&self) -> Value {
        assert_eq!(
            self.flags, F_JSON,
            "expected a JSON frame, got flags {:#06x}",
            self.flags
        );
        serde_json::from_slice(&self.payload).unwrap_or_else(|e| {
            panic!(
                "invalid JSON from broker ({e}): {}",
                String::from_utf8_lossy(&self.payload)
            )
        })
    }

    /// The frame as raw bytes again (header + payload).
    pub fn to_bytes(&self) -> Vec<u8> {
        frame(self.flags, &self.payload)
    }
}

/// Reads whole frames from a receive stream.
pub struct Reader {
    pub recv: quinn::RecvStream,
}

impl Reader {
    pub fn new(recv: quinn::RecvStream) -> Self {
        Self { recv }
    }

    /// The next frame; `Ok(None)` when the broker finished the stream between frames.
    pub async fn next(&mut self) -> Result<Option<Frame>, String> {
        let mut h = [0u8; 12];
        match self.recv.read_exact(&mut h).await {
            Ok(()) => {}
            Err(quinn::ReadExactError::FinishedEarly(0)) => return Ok(None),
            Err(e) => return Err(format!("reading a header: {e}")),
        }
        let magic = u32::from_be_bytes(h[0..4].try_into().unwrap());
        let version = u16::from_be_bytes([h[4], h[5]]);
        if magic != MAGIC || version != VERSION {
            return Err(format!("bad header from broker: {h:02x?}"));
        }
        let flags = u16::from_be_bytes([h[6], h[7]]);
        let len = u32::from_be_bytes(h[8..12].try_into().unwrap()) as usize;
        if len > 16 * 1024 * 1024 {
            return Err(format!("frame of {len} bytes from broker"));
        }
        let mut payload = vec![0u8; len];
        self.recv
            .read_exact(&mut payload)
            .await
            .map_err(|e| format!("reading a payload of {len} bytes: {e}"))?;
        Ok(Some(Frame { flags, payload }))
    }

    /// The next frame, which must exist.
    pub async fn frame(&mut self) -> Frame {
        match self.next().await {
            Ok(Some(f)) => f,
            Ok(None) => panic!("broker finished the stream; expected a frame"),
            Err(e) => panic!("{e}"),
        }
    }

    /// The next frame as JSON.
    pub async fn json(&mut self) -> Value {
        self.frame().await.json()
    }

    /// Waits for the broker to finish the stream; panics if a frame arrives instead.
    pub async fn expect_end(&mut self) {
        match self.next().await {
            Ok(None) => {}
            Ok(Some(f)) => panic!(
                "expected the stream to end, got flags {:#06x}: {}",
                f.flags,
                String::from_utf8_lossy(&f.payload)
            ),
            Err(e) => panic!("expected a clean end of stream: {e}"),
        }
    }
}

/// A client-opened bidirectional stream.
pub struct Stream {
    pub send: quinn::SendStream,
    pub rx: Reader,
}

impl Stream {
    pub async fn write(&mut self, bytes: &[u8]) {
        self.send.write_all(bytes).await.expect("write to broker");
    }

    pub async fn send_json(&mut self, v: &Value) {
        self.write(&json_frame(v)).await;
    }

    pub async fn frame(&mut self) -> Frame {
        self.rx.frame().await
    }

    pub async fn json(&mut self) -> Value {
        self.rx.json().await
    }

    pub fn finish(&mut self) {
        self.send.finish().expect("finish send side");
    }
}

/// One QUIC connection of a v1 client.
pub struct Client {
    pub endpoint: quinn::Endpoint,
    pub conn: quinn::Connection,
}

impl Client {
    /// Connects like a v1 client: verifies the dev CA, offers **no** ALPN.
    pub async fn connect(addr: SocketAddr, ca: &Path) -> Self {
        Self::connect_with_alpn(addr, ca, false).await
    }

    pub async fn connect_with_alpn(addr: SocketAddr, ca: &Path, offer_alpn: bool) -> Self {
        let mut opts = ClientOptions::new(ClientTls::CaFile(ca.to_path_buf()));
        opts.offer_alpn = offer_alpn;
        let endpoint = felix_transport::client_endpoint_for(addr, &opts).expect("client endpoint");
        let conn = endpoint
            .connect(addr, &opts.server_name)
            .expect("connect")
            .await
            .expect("QUIC handshake");
        Self { endpoint, conn }
    }

    /// Opens a stream and sends `auth` (and nothing else yet).
    pub async fn open(&self, auth: &Value) -> Stream {
        let (send, recv) = self.conn.open_bi().await.expect("open_bi");
        let mut s = Stream {
            send,
            rx: Reader::new(recv),
        };
        s.send_json(auth).await;
        s
    }

    /// Opens a stream, authenticates with `auth` and returns it with the auth reply.
    pub async fn open_authed(&self, auth: &Value) -> (Stream, Value) {
        let mut s = self.open(auth).await;
        let reply = s.json().await;
        (s, reply)
    }

    /// A request stream of a plain v1 client (expects `{"type":"ok"}`).
    pub async fn request_stream(&self, tenant: &str) -> Stream {
        let (s, reply) = self.open_authed(&plain_auth(tenant)).await;
        assert_eq!(reply, json!({"type": "ok"}), "plain v1 auth reply");
        s
    }

    /// Subscribes on a new stream authenticated with `auth`: sends `subscribe`, expects
    /// `subscribed`, finishes the send side, accepts the broker's unidirectional stream and
    /// reads its `event_stream_hello`. Returns the subscription id, the `subscribed` reply and
    /// the event stream reader (plus the subscribe stream, which must stay open).
    pub async fn subscribe(&self, auth: &Value, subscribe: &Value) -> Subscription {
        let (mut s, auth_reply) = self.open_authed(auth).await;
        assert!(
            matches!(auth_reply["type"].as_str(), Some("ok" | "auth_ok")),
            "auth reply {auth_reply}"
        );
        s.send_json(subscribe).await;
        let subscribed = s.json().await;
        assert_eq!(subscribed["type"], "subscribed", "{subscribed}");
        let id = subscribed["subscription_id"]
            .as_u64()
            .expect("subscription_id is a u64");
        s.finish();
        let recv = self.conn.accept_uni().await.expect("event stream");
        let mut events = Reader::new(recv);
        let hello = events.json().await;
        assert_eq!(
            hello,
            json!({"type": "event_stream_hello", "subscription_id": id}),
            "first frame of the event stream"
        );
        Subscription {
            id,
            subscribed,
            events,
            _control: s,
        }
    }
}

/// A subscription of a v1 client.
pub struct Subscription {
    pub id: u64,
    pub subscribed: Value,
    pub events: Reader,
    _control: Stream,
}

impl Subscription {
    /// Reads event frames until `n` payloads arrived; accepts every v1 event form
    /// (`0x0002`, `0x0004`, JSON `event` / `event_batch`) and returns the payloads with the
    /// frame kinds seen.
    pub async fn payloads(&mut self, n: usize) -> (Vec<Vec<u8>>, Vec<Frame>) {
        let mut out = Vec::new();
        let mut frames = Vec::new();
        while out.len() < n {
            let f = self.events.frame().await;
            match f.flags {
                F_EVENTS => {
                    let b = parse_event_batch(&f.payload);
                    assert_eq!(b.subscription_id, self.id, "batch for another subscription");
                    out.extend(b.payloads);
                }
                F_JSON => {
                    let v = f.json();
                    match v["type"].as_str() {
                        Some("event") => out.push(unb64(v["payload"].as_str().expect("payload"))),
                        Some("event_batch") => out.extend(
                            v["payloads"]
                                .as_array()
                                .expect("payloads")
                                .iter()
                                .map(|p| unb64(p.as_str().expect("base64 string"))),
                        ),
                        _ => panic!("unexpected frame on the event stream: {v}"),
                    }
                }
                other => panic!("unexpected event frame flags {other:#06x}"),
            }
            frames.push(f);
        }
        assert_eq!(out.len(), n, "more events than published");
        (out, frames)
    }
}

/// Asserts that a reply to a v1 client carries none of our extension fields.
pub fn assert_v1_shape(v: &Value) {
    let obj = v
        .as_object()
        .unwrap_or_else(|| panic!("not a JSON object: {v}"));
    for f in EXTENSION_FIELDS {
        assert!(
            !obj.contains_key(*f),
            "extension field {f:?} sent to a v1 client: {v}"
        );
    }
}

/// The sorted key set of a JSON object.
pub fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v
        .as_object()
        .unwrap_or_else(|| panic!("not a JSON object: {v}"))
        .keys()
        .cloned()
        .collect();
    k.sort();
    k
}

/// Sorted key set from literals, to compare with [`keys`].
pub fn key_set(k: &[&str]) -> Vec<String> {
    let mut k: Vec<String> = k.iter().map(|s| s.to_string()).collect();
    k.sort();
    k
}
