//! Diagnostic figures: the broker driven by a minimal hand-rolled Felix client (felix-wire
//! frames on bare quinn streams, replies read inline by the caller: no request-id map, no
//! reader task, no oneshot, no mutex, no timer). Comparing them with the floor isolates the
//! broker's cost; comparing the real client's figures with these isolates the client's.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use felix_transport::framed::FrameReader;
use felix_transport::{client_endpoint_for, ClientOptions, ClientTls};
use felix_wire::{features, flags, AckMode, CacheTarget, Decoded, ExtFrame, Message, PublishBatch};

use crate::procs::BoxError;
use crate::stats::{record, Rec};

const MAX_FRAME: u32 = felix_wire::frame::DEFAULT_MAX_FRAME;
const TENANT: &str = "default";

/// One raw connection to the broker.
pub struct RawConn {
    endpoint: quinn::Endpoint,
    conn: quinn::Connection,
}

/// An authenticated request stream.
pub struct RawStream {
    send: quinn::SendStream,
    reader: FrameReader,
    next_id: u64,
}

fn auth_frame() -> Bytes {
    let (lo, hi) = features::split(features::ALL);
    Message::Auth {
        tenant_id: TENANT.into(),
        token: None,
        client_flags: Some(flags::ALL),
        client_features: Some(lo),
        client_features_hi: Some(hi),
    }
    .to_frame_bytes()
}

async fn next(reader: &mut FrameReader) -> Result<Decoded, BoxError> {
    let f = reader.next().await?.ok_or("stream ended")?;
    Ok(felix_wire::decode(f)?)
}

impl RawConn {
    pub async fn connect(addr: SocketAddr, ca: &Path) -> Result<Self, BoxError> {
        let opts = ClientOptions::new(ClientTls::CaFile(ca.to_path_buf()));
        let endpoint = client_endpoint_for(addr, &opts)?;
        let conn = endpoint.connect(addr, &opts.server_name)?.await?;
        Ok(Self { endpoint, conn })
    }

    pub async fn stream(&self) -> Result<RawStream, BoxError> {
        let (mut send, recv) = self.conn.open_bi().await?;
        send.write_all(&auth_frame()).await?;
        let mut reader = FrameReader::new(recv, MAX_FRAME);
        match next(&mut reader).await? {
            Decoded::Json(Message::AuthOk { .. }) => {}
            other => return Err(format!("auth: {other:?}").into()),
        }
        Ok(RawStream {
            send,
            reader,
            next_id: 1,
        })
    }

    /// Subscribes and returns the event stream reader (after its hello).
    pub async fn subscribe(&self, ns: &str, stream: &str) -> Result<FrameReader, BoxError> {
        let (mut send, recv) = self.conn.open_bi().await?;
        let mut frames = auth_frame().to_vec();
        let mut b = BytesMut::new();
        Message::Subscribe {
            tenant_id: TENANT.into(),
            namespace: ns.into(),
            stream: stream.into(),
            subscription_id: Some(1),
            start: None,
        }
        .encode(&mut b);
        frames.extend_from_slice(&b);
        send.write_all(&frames).await?;
        let mut reader = FrameReader::new(recv, MAX_FRAME);
        match next(&mut reader).await? {
            Decoded::Json(Message::AuthOk { .. }) => {}
            other => return Err(format!("auth: {other:?}").into()),
        }
        match next(&mut reader).await? {
            Decoded::Json(Message::Subscribed { .. }) => {}
            other => return Err(format!("subscribe: {other:?}").into()),
        }
        let _ = send.finish();
        let uni = self.conn.accept_uni().await?;
        let mut events = FrameReader::new(uni, MAX_FRAME);
        match next(&mut events).await? {
            Decoded::Json(Message::EventStreamHello { .. }) => {}
            other => return Err(format!("event stream hello: {other:?}").into()),
        }
        Ok(events)
    }

    pub async fn close(self) {
        self.conn.close(0u32.into(), b"done");
        self.endpoint.wait_idle().await;
    }
}

impl RawStream {
    /// Sends one frame built for the next request id and reads its reply inline.
    async fn call(&mut self, build: impl FnOnce(u64, &mut BytesMut)) -> Result<Decoded, BoxError> {
        let rid = self.next_id;
        self.next_id += 1;
        let mut out = BytesMut::with_capacity(512);
        build(rid, &mut out);
        self.send.write_all(&out).await?;
        next(&mut self.reader).await
    }

    pub async fn ping(&mut self) -> Result<(), BoxError> {
        match self
            .call(|rid, out| Message::Ping { request_id: rid }.encode(out))
            .await?
        {
            Decoded::Json(Message::Pong { .. }) => Ok(()),
            other => Err(format!("ping: {other:?}").into()),
        }
    }

    pub async fn cache_get(&mut self, ns: &str, cache: &str, key: &str) -> Result<(), BoxError> {
        let target = CacheTarget {
            tenant_id: TENANT.into(),
            namespace: ns.into(),
            cache: cache.into(),
            key: key.into(),
        };
        match self
            .call(|request_id, out| ExtFrame::CacheGet { request_id, target }.encode(out))
            .await?
        {
            Decoded::Ext(ExtFrame::CacheValue { value: Some(_), .. }) => Ok(()),
            other => Err(format!("cache_get: {other:?}").into()),
        }
    }

    /// Publishes one payload; with `ack` waits for the binary ack.
    pub async fn publish(
        &mut self,
        ns: &str,
        stream: &str,
        payload: Bytes,
        ack: bool,
    ) -> Result<(), BoxError> {
        let rid = self.next_id;
        self.next_id += 1;
        let mut out = BytesMut::with_capacity(512);
        let a = ack.then_some((rid, AckMode::PerBatch));
        PublishBatch::encode_parts(&mut out, a, TENANT, ns, stream, &[payload]);
        self.send.write_all(&out).await?;
        if ack {
            match next(&mut self.reader).await? {
                Decoded::Ack(a) if a.error.is_none() => {}
                other => return Err(format!("publish: {other:?}").into()),
            }
        }
        Ok(())
    }
}

/// What a [`RawReqRunner`] sends.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum RawReq {
    Ping,
    CacheGet,
}

/// Ping or cache get (concurrency 1) through the raw client, on one request stream.
pub struct RawReqRunner {
    conn: RawConn,
    stream: RawStream,
    kind: RawReq,
    ns: String,
    cache: String,
    keys: Vec<String>,
    i: usize,
}

impl RawReqRunner {
    pub async fn new(
        addr: SocketAddr,
        ca: &Path,
        kind: RawReq,
        ns: &str,
        cache: &str,
        keys: Vec<String>,
    ) -> Result<Self, BoxError> {
        let conn = RawConn::connect(addr, ca).await?;
        let stream = conn.stream().await?;
        Ok(Self {
            conn,
            stream,
            kind,
            ns: ns.into(),
            cache: cache.into(),
            keys,
            i: 0,
        })
    }

    pub fn labels(kind: RawReq) -> Vec<(String, String)> {
        vec![match kind {
            RawReq::Ping => (
                "raw.ping".into(),
                "diag: ping via raw quinn client (no client lib)".into(),
            ),
            RawReq::CacheGet => (
                "raw.cache.get.c1".into(),
                "diag: binary cache_get via raw quinn client".into(),
            ),
        }]
    }

    pub async fn round(&mut self, n: usize, mut rec: Rec<'_>) -> Result<(), BoxError> {
        for _ in 0..n {
            let t = Instant::now();
            match self.kind {
                RawReq::Ping => self.stream.ping().await?,
                RawReq::CacheGet => {
                    let key = &self.keys[(self.i * 7) % self.keys.len()];
                    self.i += 1;
                    self.stream.cache_get(&self.ns, &self.cache, key).await?
                }
            }
            if let Some(h) = rec.as_deref_mut() {
                record(&mut h[0], t.elapsed());
            }
        }
        Ok(())
    }

    pub async fn close(self) {
        self.conn.close().await;
    }
}

/// Closed-loop pub/sub through raw publisher and subscriber connections.
pub struct RawPubsubRunner {
    pc: RawConn,
    sc: RawConn,
    events: FrameReader,
    ps: RawStream,
    ns: String,
    stream: String,
    ack: bool,
    payload: Bytes,
}

impl RawPubsubRunner {
    pub async fn new(
        addr: SocketAddr,
        ca: &Path,
        ns: &str,
        stream: &str,
        ack: bool,
    ) -> Result<Self, BoxError> {
        let pc = RawConn::connect(addr, ca).await?;
        let sc = RawConn::connect(addr, ca).await?;
        let events = sc.subscribe(ns, stream).await?;
        let ps = pc.stream().await?;
        Ok(Self {
            pc,
            sc,
            events,
            ps,
            ns: ns.into(),
            stream: stream.into(),
            ack,
            payload: Bytes::from(vec![0x11u8; crate::pubsub::PAYLOAD]),
        })
    }

    pub fn labels(ack: bool) -> Vec<(String, String)> {
        let tag = if ack { "ack" } else { "noack" };
        vec![(
            format!("raw.pubsub.e2e.{tag}"),
            format!("diag: pub→sub e2e via raw quinn clients ({tag})"),
        )]
    }

    pub async fn round(&mut self, n: usize, mut rec: Rec<'_>) -> Result<(), BoxError> {
        for _ in 0..n {
            let t = Instant::now();
            let events = &mut self.events;
            let recv = async {
                let d = next(events).await?;
                let at = Instant::now();
                match d {
                    Decoded::OffsetEvents(b) if b.events.len() == 1 => Ok::<_, BoxError>(at),
                    other => Err(format!("event: {other:?}").into()),
                }
            };
            let publish = self
                .ps
                .publish(&self.ns, &self.stream, self.payload.clone(), self.ack);
            let (p, r) = tokio::join!(publish, recv);
            p?;
            let at = r?;
            if let Some(h) = rec.as_deref_mut() {
                record(&mut h[0], at.duration_since(t));
            }
        }
        Ok(())
    }

    pub async fn close(self) {
        self.pc.close().await;
        self.sc.close().await;
    }
}
