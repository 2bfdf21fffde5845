//! The floor: a bare quinn echo over the same transport settings and TLS setup as Felix
//! (felix_transport defaults, dev certificate), between two processes, both on current-thread
//! runtimes like the broker's default. Nothing Felix-specific is on this path: no framing,
//! no request ids, no tasks besides quinn's own. (The same process also serves the relay
//! diagnostics of [`crate::relay`]; a stream picks its role with its first byte.)

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Instant;

use felix_transport::{
    client_endpoint_for, server_endpoint, ClientOptions, ClientTls, ServerTls, TransportConfig,
};

use crate::procs::BoxError;
use crate::stats::{record, Rec};

/// `felix-bench echo-server`: echoes every byte of every bidi stream back on it.
pub fn serve(listen: SocketAddr, ca_path: &Path) -> Result<(), BoxError> {
    // Exit when the parent closes our stdin (or dies), so the server never lingers.
    std::thread::spawn(|| {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
        std::process::exit(0);
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let endpoint = server_endpoint(
            listen,
            ServerTls::generate_dev(ca_path)?,
            &TransportConfig::default(),
        )?;
        {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            writeln!(out, "listening {}", endpoint.local_addr()?)?;
            out.flush()?;
        }
        let hub = std::sync::Arc::new(crate::relay::Hub::default());
        while let Some(incoming) = endpoint.accept().await {
            let hub = hub.clone();
            tokio::spawn(async move {
                let Ok(conn) = incoming.await else { return };
                while let Ok((send, recv)) = conn.accept_bi().await {
                    tokio::spawn(crate::relay::serve_stream(hub.clone(), send, recv));
                }
            });
        }
        Ok(())
    })
}

/// Echo round trips of one size on one long-lived bidi stream.
pub struct EchoRunner {
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    out: Vec<u8>,
    back: Vec<u8>,
}

/// One client connection to the echo server.
pub struct EchoConn {
    endpoint: quinn::Endpoint,
    conn: quinn::Connection,
}

impl EchoConn {
    pub async fn connect(addr: SocketAddr, ca: PathBuf) -> Result<Self, BoxError> {
        let opts = ClientOptions::new(ClientTls::CaFile(ca));
        let endpoint = client_endpoint_for(addr, &opts)?;
        let conn = endpoint.connect(addr, &opts.server_name)?.await?;
        Ok(Self { endpoint, conn })
    }

    /// A new echo stream for `size`-byte messages.
    pub async fn runner(&self, size: usize) -> Result<EchoRunner, BoxError> {
        let (mut send, recv) = self.conn.open_bi().await?;
        send.write_all(b"E").await?; // role: echo
        Ok(EchoRunner {
            send,
            recv,
            out: vec![0x5au8; size],
            back: vec![0u8; size],
        })
    }

    pub async fn close(self) {
        self.conn.close(0u32.into(), b"done");
        self.endpoint.wait_idle().await;
    }
}

impl EchoRunner {
    pub async fn round(&mut self, n: usize, mut rec: Rec<'_>) -> Result<(), BoxError> {
        for _ in 0..n {
            let t = Instant::now();
            self.send.write_all(&self.out).await?;
            self.recv.read_exact(&mut self.back).await?;
            if let Some(h) = rec.as_deref_mut() {
                record(&mut h[0], t.elapsed());
            }
        }
        Ok(())
    }
}
