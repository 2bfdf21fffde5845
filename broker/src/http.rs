//! A deliberately tiny HTTP/1.1 endpoint for `/live`, `/ready` and Prometheus `/metrics`.
//!
//! Probes and scrapers send one small GET per connection; a full HTTP stack would add more
//! dependencies and build time than this needs. Requests are bounded (8 KiB head, 5 s).
//! `/metrics` is rendered off the serving thread (see `handle`).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::server::Shared;

pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((sock, _)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(5), handle(sock, &shared)).await;
        });
    }
}

async fn handle(mut sock: TcpStream, shared: &Arc<Shared>) -> std::io::Result<()> {
    let mut buf = vec![0u8; 8192];
    let mut n = 0;
    while !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
        if n == buf.len() {
            return respond(
                &mut sock,
                "431 Request Header Fields Too Large",
                "text/plain",
                "",
            )
            .await;
        }
        let r = sock.read(&mut buf[n..]).await?;
        if r == 0 {
            return Ok(());
        }
        n += r;
    }
    let head = String::from_utf8_lossy(&buf[..n]);
    let mut parts = head.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if method != "GET" {
        return respond(
            &mut sock,
            "405 Method Not Allowed",
            "text/plain",
            "GET only\n",
        )
        .await;
    }
    match path {
        "/live" => respond(&mut sock, "200 OK", "text/plain", "ok\n").await,
        "/ready" => {
            let auth = shared.auth.status();
            if !shared.ready.load(Ordering::SeqCst) {
                respond(
                    &mut sock,
                    "503 Service Unavailable",
                    "text/plain",
                    "shutting down\n",
                )
                .await
            } else if let Some(auth) = auth {
                // JWT mode: ready once tokens can be verified; the body says how fresh the
                // keys and revocations are (a stale feed keeps serving its last good copy).
                let (status, state) = if auth.can_verify {
                    ("200 OK", "ready")
                } else {
                    ("503 Service Unavailable", "no token signing keys yet")
                };
                let body = serde_json::json!({
                    "status": state,
                    "auth": auth.details,
                    "definitions": shared.definitions.status(),
                });
                respond(&mut sock, status, "application/json", &format!("{body}\n")).await
            } else {
                respond(&mut sock, "200 OK", "text/plain", "ready\n").await
            }
        }
        "/metrics" => {
            // Walking every stream, cache and group and formatting the text takes tens of
            // milliseconds with 100k resources: done on the blocking pool, so the serving
            // thread (one, by default) keeps answering clients meanwhile.
            let owner = shared.clone();
            let body = tokio::task::spawn_blocking(move || {
                let mut body = owner.metrics.render(&owner.registry.snapshot());
                owner.quotas.render(&mut body);
                owner.audit.render(&mut body);
                owner.auth.render_metrics(&mut body);
                owner.definitions.render_metrics(&mut body);
                body
            })
            .await
            .map_err(std::io::Error::other)?;
            respond(&mut sock, "200 OK", "text/plain; version=0.0.4", &body).await
        }
        _ => respond(&mut sock, "404 Not Found", "text/plain", "not found\n").await,
    }
}

async fn respond(
    sock: &mut TcpStream,
    status: &str,
    ctype: &str,
    body: &str,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    sock.write_all(head.as_bytes()).await?;
    sock.write_all(body.as_bytes()).await?;
    sock.shutdown().await
}
