//! The floor: a bare quinn echo over the same transport settings and TLS setup as Felix
//! (felix_transport defaults, dev certificate), between two processes, both on current-thread
//! runtimes like the broker's default. Nothing Felix-specific is on this path: no framing,
//! no request ids, no tasks besides quinn's own.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Instant;

use felix_transport::{
    client_endpoint_for, server_endpoint, ClientOptions, ClientTls, ServerTls, TransportConfig,
};

use crate::cpu::CpuMeter;
use crate::procs::BoxError;
use crate::stats::{histogram, record, Figure};

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
        while let Some(incoming) = endpoint.accept().await {
            tokio::spawn(async move {
                let Ok(conn) = incoming.await else { return };
                while let Ok((send, recv)) = conn.accept_bi().await {
                    tokio::spawn(echo(send, recv));
                }
            });
        }
        Ok(())
    })
}

async fn echo(mut send: quinn::SendStream, mut recv: quinn::RecvStream) {
    while let Ok(Some(chunk)) = recv.read_chunk(64 * 1024, true).await {
        if send.write_all(&chunk.bytes).await.is_err() {
            return;
        }
    }
    let _ = send.finish();
}

/// Echo round trips of each size on one long-lived bidi stream.
pub async fn measure(
    addr: SocketAddr,
    ca: PathBuf,
    sizes: &[usize],
    warmup: usize,
    ops: usize,
) -> Result<Vec<Figure>, BoxError> {
    let opts = ClientOptions::new(ClientTls::CaFile(ca));
    let endpoint = client_endpoint_for(addr, &opts)?;
    let conn = endpoint.connect(addr, &opts.server_name)?.await?;
    let (mut send, mut recv) = conn.open_bi().await?;
    let mut figures = Vec::new();
    for &size in sizes {
        let out = vec![0x5au8; size];
        let mut back = vec![0u8; size];
        for _ in 0..warmup {
            send.write_all(&out).await?;
            recv.read_exact(&mut back).await?;
        }
        let mut h = histogram();
        let start = Instant::now();
        let meter = CpuMeter::start();
        for _ in 0..ops {
            let t = Instant::now();
            send.write_all(&out).await?;
            recv.read_exact(&mut back).await?;
            record(&mut h, t.elapsed());
        }
        figures.push(
            Figure::new(
                &format!("floor.echo{size}"),
                &format!("raw quinn echo round trip, {size} B, one bidi stream"),
                h,
                start.elapsed(),
            )
            .with_cpu(meter.stop(ops)),
        );
    }
    send.finish()?;
    conn.close(0u32.into(), b"done");
    endpoint.wait_idle().await;
    Ok(figures)
}
