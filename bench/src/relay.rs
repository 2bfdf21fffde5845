//! Diagnostic floor for pub/sub: a bare quinn relay in the echo-server process. A publisher
//! connection writes 256 B messages; the server forwards the bytes to a subscriber
//! connection's stream; optionally it writes a 16 B "ack" back to the publisher, before or
//! after forwarding. Same topology as broker pub/sub (two one-way hops over two connections,
//! so QUIC sends ACK-only packets that an echo never needs) with nothing of Felix on it.
//!
//! Roles are chosen by the first byte of each bidi stream the server accepts:
//! `E` echo, `I` subscriber written inline by the publisher's task, `T` subscriber written
//! by its own task (the broker's structure: queue + wake-up), `P` publisher without ack,
//! `A` publisher acked after forwarding, `B` publisher acked before forwarding, `Y` like `A`
//! but yielding to the scheduler between forwarding and acking (so that a task-written
//! subscriber's packet leaves before the ack's).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use felix_transport::{client_endpoint_for, ClientOptions, ClientTls};

use crate::procs::BoxError;
use crate::stats::{record, Rec};

const MSG: usize = 256;
const ACK: usize = 16;

enum Sink {
    Inline(Arc<tokio::sync::Mutex<quinn::SendStream>>),
    Task(tokio::sync::mpsc::UnboundedSender<Bytes>),
}

/// The server's current subscriber (the last one registered).
#[derive(Default)]
pub struct Hub {
    sink: Mutex<Option<Arc<Sink>>>,
}

/// Serves one accepted bidi stream according to its role byte.
pub async fn serve_stream(hub: Arc<Hub>, mut send: quinn::SendStream, mut recv: quinn::RecvStream) {
    let mut role = [0u8; 1];
    if recv.read_exact(&mut role).await.is_err() {
        return;
    }
    match role[0] {
        b'E' => {
            while let Ok(Some(chunk)) = recv.read_chunk(64 * 1024, true).await {
                if send.write_all(&chunk.bytes).await.is_err() {
                    return;
                }
            }
            let _ = send.finish();
        }
        b'I' | b'T' => {
            if send.write_all(b"k").await.is_err() {
                return;
            }
            let sink = if role[0] == b'I' {
                Sink::Inline(Arc::new(tokio::sync::Mutex::new(send)))
            } else {
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
                tokio::spawn(async move {
                    while let Some(b) = rx.recv().await {
                        if send.write_all(&b).await.is_err() {
                            return;
                        }
                    }
                });
                Sink::Task(tx)
            };
            *hub.sink.lock().expect("hub lock") = Some(Arc::new(sink));
            // Hold the stream until the client goes away.
            let mut buf = [0u8; 64];
            while let Ok(Some(_)) = recv.read(&mut buf).await {}
        }
        b'P' | b'A' | b'B' | b'Y' => {
            let mut received = 0usize;
            while let Ok(Some(chunk)) = recv.read_chunk(64 * 1024, true).await {
                let before = received / MSG;
                received += chunk.bytes.len();
                let acks = received / MSG - before;
                if role[0] == b'B' {
                    for _ in 0..acks {
                        if send.write_all(&[0xacu8; ACK]).await.is_err() {
                            return;
                        }
                    }
                }
                let sink = hub.sink.lock().expect("hub lock").clone();
                let forwarded = match sink.as_deref() {
                    Some(Sink::Inline(s)) => s.lock().await.write_all(&chunk.bytes).await.is_ok(),
                    Some(Sink::Task(tx)) => {
                        let _ = tx.send(chunk.bytes);
                        true
                    }
                    None => true,
                };
                if !forwarded {
                    return;
                }
                if role[0] == b'Y' && acks > 0 {
                    tokio::task::yield_now().await;
                }
                if role[0] == b'A' || role[0] == b'Y' {
                    for _ in 0..acks {
                        if send.write_all(&[0xacu8; ACK]).await.is_err() {
                            return;
                        }
                    }
                }
            }
            let _ = send.finish();
        }
        _ => {}
    }
}

struct Side {
    endpoint: quinn::Endpoint,
    conn: quinn::Connection,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
}

async fn open(addr: SocketAddr, ca: &Path, role: u8) -> Result<Side, BoxError> {
    let opts = ClientOptions::new(ClientTls::CaFile(ca.to_path_buf()));
    let endpoint = client_endpoint_for(addr, &opts)?;
    let conn = endpoint.connect(addr, &opts.server_name)?.await?;
    let (mut send, mut recv) = conn.open_bi().await?;
    send.write_all(&[role]).await?;
    if role == b'I' || role == b'T' {
        let mut k = [0u8; 1];
        recv.read_exact(&mut k).await?;
    }
    Ok(Side {
        endpoint,
        conn,
        send,
        recv,
    })
}

impl Side {
    async fn close(self) {
        self.conn.close(0u32.into(), b"done");
        self.endpoint.wait_idle().await;
    }
}

/// The relay variants measured: (subscriber role, publisher role).
pub const VARIANTS: [(u8, u8); 6] = [
    (b'I', b'P'),
    (b'T', b'P'),
    (b'I', b'A'),
    (b'T', b'B'),
    (b'T', b'A'),
    (b'T', b'Y'),
];

/// One relay variant on its own pair of connections. The server relays to the most recently
/// registered subscriber, so a variant registers its subscriber again at each round.
pub struct RelayRunner {
    sink_role: u8,
    sub: Side,
    publ: Side,
    acked: bool,
    msg: Vec<u8>,
}

impl RelayRunner {
    pub async fn new(
        addr: SocketAddr,
        ca: &Path,
        sink_role: u8,
        pub_role: u8,
    ) -> Result<Self, BoxError> {
        let sub = open(addr, ca, sink_role).await?;
        let publ = open(addr, ca, pub_role).await?;
        Ok(Self {
            sink_role,
            sub,
            publ,
            acked: pub_role != b'P',
            msg: vec![0x42u8; MSG],
        })
    }

    /// (name, description).
    pub fn label(sink_role: u8, pub_role: u8) -> (String, String) {
        let sink = if sink_role == b'I' { "inline" } else { "task" };
        let ack = match pub_role {
            b'P' => "noack",
            b'A' => "ack_after",
            b'Y' => "ack_after_yield",
            _ => "ack_before",
        };
        (
            format!("relay.{sink}.{ack}"),
            format!("diag: raw quinn relay pub→server→sub 256 B, sub written by {sink}, {ack}"),
        )
    }

    /// Becomes the server's subscriber again (other variants registered theirs since), on a
    /// new stream of the same connection.
    pub async fn prepare(&mut self) -> Result<(), BoxError> {
        let (mut send, mut recv) = self.sub.conn.open_bi().await?;
        send.write_all(&[self.sink_role]).await?;
        let mut k = [0u8; 1];
        recv.read_exact(&mut k).await?;
        let mut old = std::mem::replace(&mut self.sub.send, send);
        self.sub.recv = recv;
        let _ = old.finish();
        Ok(())
    }

    pub async fn round(&mut self, n: usize, mut rec: Rec<'_>) -> Result<(), BoxError> {
        let (publ, sub, msg, acked) = (&mut self.publ, &mut self.sub, &self.msg, self.acked);
        for _ in 0..n {
            let t = Instant::now();
            let p = async {
                publ.send.write_all(msg).await?;
                if acked {
                    let mut a = [0u8; ACK];
                    publ.recv.read_exact(&mut a).await?;
                }
                Ok::<_, BoxError>(())
            };
            let s = async {
                let mut m = [0u8; MSG];
                sub.recv.read_exact(&mut m).await?;
                Ok::<_, BoxError>(Instant::now())
            };
            let (p, s) = tokio::join!(p, s);
            p?;
            let at = s?;
            if let Some(h) = rec.as_deref_mut() {
                record(&mut h[0], at.duration_since(t));
            }
        }
        Ok(())
    }

    pub async fn close(self) {
        self.publ.close().await;
        self.sub.close().await;
    }
}
