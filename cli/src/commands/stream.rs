//! `felix pub` and `felix sub`.

use std::io::IsTerminal as _;
use std::time::Duration;

use bytes::Bytes;
use felix_client::{AckMode, ErrorCode, Event, Subscription};
use serde_json::json;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::sync::mpsc;

use super::Ctx;
use crate::args::{PubArgs, SubArgs};
use crate::output::{b64, payload_text, warn, Failure, Out, EXIT_UNAVAILABLE};

/// Payload bytes per batch, well under the broker's default frame limit.
const MAX_BATCH_BYTES: usize = 1024 * 1024;

/// `felix pub`: messages from the arguments, or one per line from stdin.
pub async fn publish(ctx: &mut Ctx, a: PubArgs) -> Result<(), Failure> {
    let from_stdin = a.messages.is_empty() || a.messages == ["-"];
    if !from_stdin && a.messages.iter().any(|m| m == "-") {
        return Err(Failure::usage(
            "`-` (read stdin) cannot be combined with messages given as arguments",
        ));
    }
    let ack = AckMode::from(a.ack);
    let batch = a.batch as usize;
    let client = ctx.client().await?;
    let ns = ctx.namespace().to_owned();
    let mut published = 0u64;
    if from_stdin {
        if std::io::stdin().is_terminal() {
            warn("reading messages from stdin, one per line (end with Ctrl-D)");
        }
        let mut lines = stdin_lines(batch * 4);
        let mut payloads: Vec<Bytes> = Vec::with_capacity(batch);
        // Take whatever has been read so far (up to a batch): a steady pipe batches itself
        // while a slow one (`tail -f`) publishes each line as it comes.
        while let Some(first) = lines.recv().await {
            let mut bytes = 0;
            let mut next = Some(first);
            while let Some(line) = next {
                let line = line?;
                bytes += line.len();
                payloads.push(line);
                if payloads.len() >= batch || bytes >= MAX_BATCH_BYTES {
                    break;
                }
                next = lines.try_recv().ok();
            }
            client.publish_batch(&ns, &a.stream, &payloads, ack).await?;
            published += payloads.len() as u64;
            payloads.clear();
        }
    } else {
        let payloads: Vec<Bytes> = a
            .messages
            .into_iter()
            .map(|m| Bytes::from(m.into_bytes()))
            .collect();
        for chunk in payloads.chunks(batch) {
            client.publish_batch(&ns, &a.stream, chunk, ack).await?;
            published += chunk.len() as u64;
        }
    }
    if ack == AckMode::None && published > 0 {
        // Unacknowledged publishes are only queued locally. A round trip on the same (single,
        // ordered) request stream proves the broker has read them before we exit.
        match client.ping().await {
            Ok(_) => {}
            Err(e) if e.code() == ErrorCode::Unsupported => {}
            Err(e) => return Err(e.into()),
        }
    }
    let stream = a.stream;
    ctx.out.emit(
        || format!("published {published}"),
        || json!({ "stream": stream, "published": published }),
    )?;
    Ok(())
}

/// Lines of stdin without their line ending, read by a task so that the publisher can take
/// whatever is available without waiting.
fn stdin_lines(capacity: usize) -> mpsc::Receiver<std::io::Result<Bytes>> {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    tokio::spawn(async move {
        let mut input = BufReader::with_capacity(64 * 1024, tokio::io::stdin());
        loop {
            let mut line = Vec::new();
            match input.read_until(b'\n', &mut line).await {
                Ok(0) => return,
                Ok(_) => {
                    if line.last() == Some(&b'\n') {
                        line.pop();
                        if line.last() == Some(&b'\r') {
                            line.pop();
                        }
                    }
                    if tx.send(Ok(Bytes::from(line))).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            }
        }
    });
    rx
}

/// `felix sub`: prints events until `--count`, `--timeout-idle`, an error or Ctrl-C.
pub async fn subscribe(ctx: &mut Ctx, a: SubArgs) -> Result<(), Failure> {
    let client = ctx.client().await?;
    let mut sub = client
        .subscribe(ctx.namespace(), &a.pattern, a.from)
        .await?;
    let idle = a.timeout_idle.map(Duration::from_millis);
    let hex = a.payload.hex;
    let mut seen = 0u64;
    let done = |seen: u64| a.count.is_some_and(|c| seen >= c);
    while !done(seen) {
        let next = match idle {
            None => sub.next().await,
            Some(d) => match tokio::time::timeout(d, sub.next()).await {
                Ok(n) => n,
                Err(_) => {
                    return match a.count {
                        None => Ok(()),
                        Some(c) => Err(Failure::new(
                            "timeout",
                            format!("no event for {} ms; received {seen} of {c}", d.as_millis()),
                            EXIT_UNAVAILABLE,
                        )),
                    };
                }
            },
        };
        let mut next = Some(ended(next)?);
        // Print everything already buffered, then flush once.
        while let Some(ev) = next {
            print_event(&mut ctx.out, &ev, hex)?;
            seen += 1;
            next = if done(seen) {
                None
            } else {
                sub.try_next().map(|r| ended(Some(r))).transpose()?
            };
        }
        ctx.out.flush()?;
        report_gaps(&sub);
    }
    Ok(())
}

/// The event, or why the subscription ended.
fn ended(next: Option<felix_client::Result<Event>>) -> Result<Event, Failure> {
    match next {
        Some(Ok(ev)) => Ok(ev),
        Some(Err(e)) => Err(e.into()),
        None => Err(Failure::new(
            "closed",
            "the subscription ended",
            crate::output::EXIT_OTHER,
        )),
    }
}

fn print_event(out: &mut Out, ev: &Event, hex: bool) -> std::io::Result<()> {
    out.emit(
        || payload_text(&ev.payload, hex),
        || {
            json!({
                "stream": &*ev.stream,
                "offset": ev.offset,
                "payload_b64": b64(&ev.payload),
            })
        },
    )
}

fn report_gaps(sub: &Subscription) {
    for g in sub.take_gaps() {
        if g.reset {
            warn(format_args!(
                "the broker recreated stream {} (restarted): events from offset {} of the old \
                 log that were not delivered are lost; going on from offset {} of the new one",
                g.stream, g.from, g.to
            ));
        } else {
            warn(format_args!(
                "events {}..{} of stream {} were no longer retained after a reconnect",
                g.from, g.to, g.stream
            ));
        }
    }
}
