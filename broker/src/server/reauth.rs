//! `reauth`: a fresh token for a live connection's principal (token-refresh extension).

use std::time::Instant;

use felix_wire::{features, ErrorCode, Message};

use super::request::{reply_result, Ctx};
use crate::error::BrokerError;

/// `reauth` (token-refresh extension): a fresh token for the stream's principal. Refusals
/// count towards the connection's `max_auth_failures_per_connection` like refused `auth`s, so
/// a refresh cannot be used to guess tokens without bound. At most
/// `limits.max_reauths_per_minute` per connection are looked at (past it: `overloaded`, the
/// token in force stays, the connection is kept). Every `reauth` is audited (principal, the
/// presented token's `kid`, outcome; never the token). A revived principal (its token had
/// ended) takes its tenant's connection quota slot again, right after its new token is in
/// force (refused: the cell ends again).
pub async fn reauth(ctx: &mut Ctx, request_id: u64, token: &str) -> Result<(), quinn::WriteError> {
    let mut kid = None;
    let r = ctx
        .require(features::TOKEN_REFRESH, "reauth")
        .and_then(|_| {
            let per_minute = ctx.shared.cfg.limits.max_reauths_per_minute;
            if !ctx
                .conn_state
                .principals
                .take_reauth(per_minute, Instant::now())
            {
                ctx.shared.metrics.reauths_limited.inc();
                ctx.shared.metrics.overloaded.inc();
                return Err(BrokerError::overloaded(format!(
                    "more than {per_minute} reauths in a minute on this connection \
                     (limits.max_reauths_per_minute); the token in force stays"
                )));
            }
            let cell = &ctx.session.principal;
            // Unverified until the check below passes: for the audit line only.
            kid = crate::auth::unverified_kid(token);
            let fresh = cell
                .check_reauth(&*ctx.shared.auth, token)
                .map_err(BrokerError::from)?;
            kid = fresh.kid.clone();
            // Replace first, then take (or confirm) the slot: a cell that ended gave its
            // slot back, and one that ends between a slot check and the replace would be
            // revived without a slot. A refused slot ends the cell again.
            cell.replace(fresh);
            if let Err(e) = ctx.shared.quotas.admit_connection(
                &ctx.conn_state.tenants,
                cell.tenant(),
                cell.subject(),
            ) {
                ctx.conn_state
                    .principals
                    .end_cell(cell, "connection quota of the tenant reached");
                return Err(e);
            }
            ctx.shared.metrics.reauths.inc();
            Ok(())
        });
    let limited = r.as_ref().is_err_and(|e| e.code == ErrorCode::Overloaded);
    if !limited {
        ctx.shared.audit.reauth(ctx.who(), kid.as_deref(), &r);
    } else if let Some(left_out) = ctx.conn_state.principals.limited_audit(Instant::now()) {
        // One line per connection per window for the rate bound's refusals (a client
        // hammering `reauth` must not flood the audit log); it says how many it stands for.
        let mut e = r.clone().unwrap_err();
        if left_out > 0 {
            e.message = format!(
                "{} ({left_out} more refused by the rate bound since the last line)",
                e.message
            );
        }
        ctx.shared.audit.reauth(ctx.who(), kid.as_deref(), &Err(e));
    }
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
