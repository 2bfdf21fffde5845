//! `felix queue ...`: pull, ack, nack, and the dead letters of a consumer group.

use std::time::Duration;

use serde_json::json;

use super::Ctx;
use crate::args::QueueCommand;
use crate::output::{b64, payload_text, warn, Failure};

/// Runs one queue subcommand.
pub async fn run(ctx: &mut Ctx, cmd: QueueCommand) -> Result<(), Failure> {
    let client = ctx.client().await?;
    let ns = ctx.namespace().to_owned();
    let out = &mut ctx.out;
    match cmd {
        QueueCommand::Pull {
            stream,
            group,
            max,
            wait,
            ack,
            payload,
        } => {
            let consumer = client.consumer(&ns, &stream, &group);
            let messages = consumer.pull(max, Duration::from_millis(wait)).await?;
            for m in &messages {
                out.emit(
                    || {
                        format!(
                            "{}\t{}\t{}",
                            m.offset,
                            m.attempt,
                            payload_text(&m.payload, payload.hex)
                        )
                    },
                    || {
                        json!({
                            "offset": m.offset,
                            "attempt": m.attempt,
                            "lease_ms": m.lease.as_millis() as u64,
                            "payload_b64": b64(&m.payload),
                        })
                    },
                )?;
            }
            // Only ack what has reached stdout: if printing failed, the messages come back.
            out.flush()?;
            if ack && !messages.is_empty() {
                let offsets: Vec<u64> = messages.iter().map(|m| m.offset).collect();
                let acked = consumer.ack(&offsets).await?;
                if acked < offsets.len() as u64 {
                    warn(format_args!(
                        "only {acked} of {} messages were still leased when acked; the others \
                         will be redelivered",
                        offsets.len()
                    ));
                }
            }
        }
        QueueCommand::Ack {
            stream,
            group,
            offsets,
        } => {
            let n = client.consumer(&ns, &stream, &group).ack(&offsets).await?;
            counted(out, "acked", n)?;
        }
        QueueCommand::Nack {
            stream,
            group,
            offsets,
            delay,
        } => {
            let n = client
                .consumer(&ns, &stream, &group)
                .nack(&offsets, Duration::from_millis(delay))
                .await?;
            counted(out, "nacked", n)?;
        }
        QueueCommand::Dlq {
            stream,
            group,
            max,
            payload,
        } => {
            let letters = client
                .consumer(&ns, &stream, &group)
                .dead_letters(max)
                .await?;
            for d in &letters {
                out.emit(
                    || {
                        format!(
                            "{}\t{}\t{}\t{}",
                            d.offset,
                            d.attempts,
                            d.reason,
                            payload_text(&d.payload, payload.hex)
                        )
                    },
                    || {
                        json!({
                            "offset": d.offset,
                            "attempts": d.attempts,
                            "reason": d.reason,
                            "payload_b64": b64(&d.payload),
                        })
                    },
                )?;
            }
        }
        QueueCommand::Redrive {
            stream,
            group,
            offsets,
        } => {
            let n = client
                .consumer(&ns, &stream, &group)
                .redrive(some_offsets(&offsets))
                .await?;
            counted(out, "redriven", n)?;
        }
        QueueCommand::Discard {
            stream,
            group,
            offsets,
        } => {
            let n = client
                .consumer(&ns, &stream, &group)
                .discard(some_offsets(&offsets))
                .await?;
            counted(out, "discarded", n)?;
        }
    }
    Ok(())
}

/// No offsets means "all of them".
fn some_offsets(offsets: &[u64]) -> Option<&[u64]> {
    (!offsets.is_empty()).then_some(offsets)
}

/// Prints `<what> <n>`, or `{"<what>": n}`.
fn counted(out: &mut crate::output::Out, what: &str, n: u64) -> std::io::Result<()> {
    out.emit(|| format!("{what} {n}"), || json!({ what: n }))
}
