//! Quota checks and audit lines at the request path's decision points, kept out of the
//! request modules so each hook there is one call.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::conn::ConnState;
use super::request::Ctx;
use super::session::Replier;
use super::Shared;
use crate::audit::Who;
use crate::auth::{Action, Principal};
use crate::error::BrokerError;
use crate::quota::QuotaSlot;
use crate::registry::{CacheEntry, StreamEntry};

/// The audit name of an action (the permission grammar's names, from `felix-auth`).
pub fn action_name(a: Action) -> &'static str {
    a.as_str()
}

/// Counts the stream's connection against its tenant's connection quota once `auth` has
/// succeeded; on refusal answers `quota_exceeded`, audits it and finishes the stream.
pub async fn admit_stream(
    shared: &Shared,
    state: &ConnState,
    principal: &Principal,
    replier: &Replier,
) -> Result<(), ()> {
    let sub = principal.subject.as_deref();
    let Err(e) = shared
        .quotas
        .admit_connection(&state.tenants, &principal.tenant, sub)
    else {
        return Ok(());
    };
    let who = Who {
        tenant: &principal.tenant,
        sub,
        conn: state.id,
    };
    shared.audit.denied(who, "connect", "", &e);
    let _ = replier.error(&e, None).await;
    replier.finish().await;
    Err(())
}

impl Ctx {
    /// The stream's principal and connection, for the audit log.
    pub fn who(&self) -> Who<'_> {
        Who {
            tenant: self.session.principal.tenant(),
            sub: self.session.principal.subject(),
            conn: self.conn_state.id,
        }
    }

    /// Audits an authorization decision (denials always, grants per `audit.grants`).
    pub fn audit_authz(&self, action: Action, ns: &str, res: &str, r: &Result<(), BrokerError>) {
        let audit = &self.shared.audit;
        match r {
            Ok(()) if audit.sample_grant() => {
                audit.granted(self.who(), action_name(action), &format!("{ns}/{res}"))
            }
            Ok(()) => {}
            Err(e) if audit.enabled() => {
                audit.denied(self.who(), action_name(action), &format!("{ns}/{res}"), e)
            }
            Err(_) => {}
        }
    }

    /// Audits an admin change (`stream_create`, `cache_create`, `group_create`).
    pub fn audit_admin<T>(&self, op: &str, ns: &str, res: &str, r: &Result<T, BrokerError>) {
        if self.shared.audit.enabled() {
            self.shared
                .audit
                .admin(self.who(), op, &format!("{ns}/{res}"), r);
        }
    }

    fn quota_denied(&self, action: Action, ns: &str, res: &str, e: BrokerError) -> BrokerError {
        if self.shared.audit.enabled() {
            let resource = format!("{ns}/{res}");
            self.shared
                .audit
                .denied(self.who(), action_name(action), &resource, &e);
        }
        e
    }

    /// Publish quotas of `tenant`: bytes/s and messages/s, and the queue depth of the
    /// stream's groups.
    pub fn quota_publish(
        &self,
        tenant: &str,
        ns: &str,
        stream: &str,
        entry: &StreamEntry,
        payloads: &[Bytes],
    ) -> Result<(), BrokerError> {
        let q = &self.shared.quotas;
        let n = payloads.len() as u64;
        let bytes = payloads.iter().map(|p| p.len() as u64).sum();
        q.queue_depth(tenant, entry, n)
            .and_then(|_| q.publish(tenant, n, bytes, Instant::now()))
            .map_err(|e| self.quota_denied(Action::Publish, ns, stream, e))
    }

    /// The cache-bytes quota of `tenant` for a put of `key` with a value of `value_len`.
    pub fn quota_cache_put(
        &self,
        tenant: &str,
        ns: &str,
        cache: &Arc<CacheEntry>,
        key: &str,
        value_len: usize,
    ) -> Result<(), BrokerError> {
        let charge = key.len() + value_len + crate::cache::ENTRY_OVERHEAD;
        self.shared
            .quotas
            .cache_put(tenant, cache, charge)
            .map_err(|e| self.quota_denied(Action::CacheWrite, ns, key, e))
    }

    /// A subscription slot of `tenant`, held until dropped.
    pub fn quota_subscription(
        &self,
        tenant: &str,
        ns: &str,
        stream: &str,
    ) -> Result<QuotaSlot, BrokerError> {
        self.shared
            .quotas
            .take_subscription(tenant)
            .map_err(|e| self.quota_denied(Action::Subscribe, ns, stream, e))
    }
}
