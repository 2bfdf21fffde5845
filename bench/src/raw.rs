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

use crate::cpu::CpuMeter;
use crate::procs::BoxError;
use crate::stats::{histogram, record, Figure};

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

/// Ping and cache get (concurrency 1) through the raw client.
pub async fn requests(
    addr: SocketAddr,
    ca: &Path,
    ns: &str,
    cache: &str,
    keys: &[String],
    warmup: usize,
    ops: usize,
) -> Result<Vec<Figure>, BoxError> {
    let conn = RawConn::connect(addr, ca).await?;
    let mut s = conn.stream().await?;
    let mut out = Vec::new();
    for _ in 0..warmup {
        s.ping().await?;
    }
    let mut h = histogram();
    let start = Instant::now();
    let meter = CpuMeter::start();
    for _ in 0..ops {
        let t = Instant::now();
        s.ping().await?;
        record(&mut h, t.elapsed());
    }
    out.push(
        Figure::new(
            "raw.ping",
            "diag: ping via raw quinn client (no client lib)",
            h,
            start.elapsed(),
        )
        .with_cpu(meter.stop(ops)),
    );
    for i in 0..warmup {
        s.cache_get(ns, cache, &keys[i % keys.len()]).await?;
    }
    let mut h = histogram();
    let start = Instant::now();
    let meter = CpuMeter::start();
    for i in 0..ops {
        let t = Instant::now();
        s.cache_get(ns, cache, &keys[(i * 7) % keys.len()]).await?;
        record(&mut h, t.elapsed());
    }
    out.push(
        Figure::new(
            "raw.cache.get.c1",
            "diag: binary cache_get via raw quinn client",
            h,
            start.elapsed(),
        )
        .with_cpu(meter.stop(ops)),
    );
    conn.close().await;
    Ok(out)
}

/// Closed-loop pub/sub through raw publisher and subscriber connections.
pub async fn pubsub(
    addr: SocketAddr,
    ca: &Path,
    ns: &str,
    stream: &str,
    ack: bool,
    warmup: usize,
    ops: usize,
) -> Result<Figure, BoxError> {
    let pc = RawConn::connect(addr, ca).await?;
    let sc = RawConn::connect(addr, ca).await?;
    let mut events = sc.subscribe(ns, stream).await?;
    let mut ps = pc.stream().await?;
    let payload = Bytes::from(vec![0x11u8; crate::pubsub::PAYLOAD]);
    let mut h = histogram();
    let mut start = Instant::now();
    let mut meter = CpuMeter::start();
    for i in 0..(warmup + ops) {
        if i == warmup {
            start = Instant::now();
            meter = CpuMeter::start();
        }
        let t = Instant::now();
        let recv = async {
            let d = next(&mut events).await?;
            let at = Instant::now();
            match d {
                Decoded::OffsetEvents(b) if b.events.len() == 1 => Ok::<_, BoxError>(at),
                other => Err(format!("event: {other:?}").into()),
            }
        };
        let (p, r) = tokio::join!(ps.publish(ns, stream, payload.clone(), ack), recv);
        p?;
        let at = r?;
        if i >= warmup {
            record(&mut h, at.duration_since(t));
        }
    }
    let elapsed = start.elapsed();
    let cpu = meter.stop(ops);
    pc.close().await;
    sc.close().await;
    let tag = if ack { "ack" } else { "noack" };
    Ok(Figure::new(
        &format!("raw.pubsub.e2e.{tag}"),
        &format!("diag: pub→sub e2e via raw quinn clients ({tag})"),
        h,
        elapsed,
    )
    .with_cpu(cpu))
}
