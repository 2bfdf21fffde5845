//! `reauth`: a fresh token for a live connection's principal (token-refresh extension).

use felix_wire::{features, ErrorCode, Message};

use super::request::{reply_result, Ctx};
use crate::error::BrokerError;

/// `reauth` (token-refresh extension): a fresh token for the stream's principal. Refusals
/// count towards the connection's `max_auth_failures_per_connection` like refused `auth`s, so
/// a refresh cannot be used to guess tokens without bound.
pub async fn reauth(ctx: &mut Ctx, request_id: u64, token: &str) -> Result<(), quinn::WriteError> {
    let r = ctx
        .require(features::TOKEN_REFRESH, "reauth")
        .and_then(|_| {
            ctx.session
                .principal
                .reauth(&*ctx.shared.auth, token)
                .map_err(BrokerError::from)
        });
    let refused = r.as_ref().is_err_and(|e| e.code == ErrorCode::Unauthorized);
    let reply = r.map(|_| Message::Ok {
        request_id: Some(request_id),
    });
    let written = reply_result(ctx, reply, Some(request_id)).await;
    if refused {
        ctx.shared.metrics.auth_failures.inc();
        let failures = ctx
            .conn_state
            .auth_failures
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        if failures == ctx.shared.cfg.limits.max_auth_failures_per_connection {
            ctx.shared.metrics.auth_connections_closed.inc();
            // Closing drops unsent stream data: give the refusal a moment to leave first.
            let conn = ctx.conn.clone();
            tokio::spawn(async move {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                conn.close(
                    quinn::VarInt::from_u32(ErrorCode::Unauthorized.as_u16() as u32),
                    b"unauthorized: too many failed auth attempts",
                );
            });
        }
    }
    written
}
