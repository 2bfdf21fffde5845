//! `felix ping`: connect time and request round trips.

use std::time::Duration;

use serde_json::json;

use super::Ctx;
use crate::args::PingArgs;
use crate::output::{millis, Failure};

/// Connects, then makes `--count` round trips `--interval` apart, printing each.
pub async fn run(ctx: &mut Ctx, a: PingArgs) -> Result<(), Failure> {
    let client = ctx.client().await?;
    if !ctx.out.is_json() {
        let connect = millis(ctx.connect_time);
        let addrs = ctx.addresses().join(", ");
        ctx.out.emit(
            || format!("connected to {addrs} in {connect:.3} ms"),
            || json!({}),
        )?;
    }
    let mut rtts = Vec::with_capacity(a.count as usize);
    for seq in 1..=a.count {
        if seq > 1 && a.interval > 0 {
            tokio::time::sleep(Duration::from_millis(a.interval)).await;
        }
        let rtt = client.ping().await?;
        rtts.push(rtt);
        let ms = millis(rtt);
        ctx.out.emit(
            || format!("ping {seq}: {ms:.3} ms"),
            || json!({ "seq": seq, "rtt_ms": ms }),
        )?;
        ctx.out.flush()?;
    }
    if !ctx.out.is_json() && rtts.len() > 1 {
        let min = rtts.iter().min().copied().unwrap_or_default();
        let max = rtts.iter().max().copied().unwrap_or_default();
        let avg = rtts.iter().sum::<Duration>() / rtts.len() as u32;
        ctx.out.emit(
            || {
                format!(
                    "{} pings: min {:.3} ms, avg {:.3} ms, max {:.3} ms",
                    rtts.len(),
                    millis(min),
                    millis(avg),
                    millis(max)
                )
            },
            || json!({}),
        )?;
    }
    Ok(())
}
