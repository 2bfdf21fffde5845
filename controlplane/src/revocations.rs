//! Revocations: by token (`jti`) or by principal (`tenant` + `sub`: every token issued before
//! the revocation). Kept until the longest token they could affect has expired, then pruned.
//! Brokers poll `GET /v1/revocations` ([`felix_auth::RevocationList`]).
//!
//! How long is "longest" ([`Retention`]): a broker accepts a Felix token until
//! `exp + broker_leeway_s`, so a jti entry is listed until then. A subject entry must also
//! outlive every *subject token* (OIDC token) issued before it: the exchange refuses those
//! (`iat < before`), and refuses any subject token older than `max_subject_token_age_s`, so
//! the entry is kept until `before + max_subject_token_age_s + clock_skew_s` at least; after
//! that no subject token from before the revocation can be exchanged anyway.

use std::sync::Arc;

use felix_auth::{RevocationList, RevokedJti, RevokedSubject};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::model::check_segment;
use crate::store::{Compare, Op, Store, Txn};

const JTI: &str = "revocations/jti/";
const SUB: &str = "revocations/sub/";

/// `POST /v1/revocations` body: exactly one of `jti`, or `tenant` with `sub`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    /// A token id.
    pub jti: Option<String>,
    /// The token's `exp`, if known (keeps the entry no longer than needed).
    pub exp: Option<u64>,
    /// Tenant of the principal.
    pub tenant: Option<String>,
    /// The principal.
    pub sub: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredSubject {
    tenant: String,
    sub: String,
    before: u64,
    /// When the entry can go: `before` + the longest token lifetime + skew.
    drop_s: u64,
}

fn invalid(m: &str) -> ApiError {
    ApiError::InvalidArgument(m.into())
}

/// How long entries are kept (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Lifetime of an issued Felix token.
    pub token_lifetime_s: u64,
    /// Leeway brokers allow past a Felix token's `exp`.
    pub broker_leeway_s: u64,
    /// Oldest subject token the exchange accepts, plus the clock skew tolerated on it.
    pub subject_token_s: u64,
}

impl Retention {
    /// From the configuration.
    pub fn from_config(cfg: &crate::config::CpConfig) -> Self {
        Retention {
            token_lifetime_s: cfg.token_lifetime_s,
            broker_leeway_s: cfg.broker_leeway_s,
            subject_token_s: cfg.max_subject_token_age_s + cfg.clock_skew_s,
        }
    }

    /// Seconds after `before` a subject entry stays: past every Felix token issued before it
    /// (as brokers accept them) and every subject token issued before it.
    fn subject_keep_s(&self) -> u64 {
        (self.token_lifetime_s + self.broker_leeway_s).max(self.subject_token_s)
    }
}

/// Revocations over the store.
pub struct Revocations {
    store: Arc<dyn Store>,
    retention: Retention,
    /// The store's identifier ([`ensure_store_id`]), sent with every list.
    store_id: String,
}

/// Where the store's identifier is kept.
pub const STORE_ID_KEY: &str = "meta/store_id";

/// The store's random identifier, made with the store (the first start on it). The list's
/// `revision` is the store's counter, which restarts when the store is recreated: brokers
/// compare revisions only between lists of one store id, so a recreated store is not taken
/// for a rollback. `renew` replaces it (after restoring a backup: the restored store's
/// counter went back, under the id brokers already hold).
pub async fn ensure_store_id(store: &dyn Store, renew: bool) -> Result<String, ApiError> {
    loop {
        let existing = store.get(STORE_ID_KEY).await?;
        if let Some(v) = &existing {
            if let (false, Some(id)) = (renew, v.value.as_str()) {
                return Ok(id.to_owned());
            }
        }
        let id = format!("{:032x}", rand::random::<u128>());
        let compare = match existing {
            Some(v) => Compare::ModRevision(STORE_ID_KEY.into(), v.mod_revision),
            None => Compare::Absent(STORE_ID_KEY.into()),
        };
        let txn = Txn {
            compare: vec![compare],
            ops: vec![Op::Put(
                STORE_ID_KEY.into(),
                serde_json::Value::String(id.clone()),
            )],
        };
        if store.txn(txn).await?.committed() {
            tracing::info!(store_id = %id, "control plane store identifier created");
            return Ok(id);
        }
    }
}

impl Revocations {
    /// Revocations kept as `retention` says.
    pub fn new(store: Arc<dyn Store>, retention: Retention) -> Self {
        Revocations {
            store,
            retention,
            store_id: String::new(),
        }
    }

    /// Sends `id` (the store's identifier) with every list.
    pub fn with_store_id(mut self, id: String) -> Self {
        self.store_id = id;
        self
    }

    fn jti_listed(&self, r: &RevokedJti, now_s: u64) -> bool {
        r.exp.saturating_add(self.retention.broker_leeway_s) > now_s
    }

    /// Records a revocation.
    pub async fn revoke(&self, req: RevokeRequest, now_s: u64) -> Result<(), ApiError> {
        let op = match (req.jti, req.tenant, req.sub) {
            (Some(jti), None, None) => {
                if jti.is_empty()
                    || jti.len() > 128
                    || !jti
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                {
                    return Err(invalid("jti: 1 to 128 of A-Z a-z 0-9 '-' '_'"));
                }
                // No Felix token issued until now expires later than this.
                let latest = now_s + self.retention.token_lifetime_s;
                let exp = req.exp.map_or(latest, |e| e.min(latest));
                let entry = RevokedJti {
                    jti: jti.clone(),
                    exp,
                };
                Op::Put(
                    format!("{JTI}{jti}"),
                    serde_json::to_value(entry).expect("ser"),
                )
            }
            (None, Some(tenant), Some(sub)) => {
                check_segment("tenant", &tenant)?;
                // A Felix sub is `ISSUER_ENTRY:OIDC_SUB`: up to 64 + 1 + 255 bytes.
                if sub.is_empty() || sub.len() > 320 {
                    return Err(invalid("sub: 1 to 320 bytes (ISSUER_ENTRY:OIDC_SUB)"));
                }
                let entry = StoredSubject {
                    // Tokens issued within this second are revoked too.
                    before: now_s + 1,
                    drop_s: now_s + 1 + self.retention.subject_keep_s(),
                    tenant: tenant.clone(),
                    sub: sub.clone(),
                };
                // The key escapes `sub` (any bytes) so it is one path segment.
                let key = format!("{SUB}{tenant}/{}", hex(sub.as_bytes()));
                Op::Put(key, serde_json::to_value(entry).expect("ser"))
            }
            _ => {
                return Err(invalid(
                    "give either {\"jti\": ...} or {\"tenant\": ..., \"sub\": ...}",
                ))
            }
        };
        self.store.txn(Txn::ops(vec![op])).await?;
        Ok(())
    }

    /// The feed brokers poll. `revision` is the store's revision when read.
    pub async fn list(&self, now_s: u64) -> Result<RevocationList, ApiError> {
        let (revision, jtis) = self.store.list(JTI).await?;
        let (_, subs) = self.store.list(SUB).await?;
        let mut out = RevocationList {
            revision,
            store_id: self.store_id.clone(),
            ..RevocationList::default()
        };
        for (_, v) in jtis {
            if let Ok(r) = serde_json::from_value::<RevokedJti>(v.value) {
                if self.jti_listed(&r, now_s) {
                    out.jtis.push(r);
                }
            }
        }
        for (_, v) in subs {
            if let Ok(s) = serde_json::from_value::<StoredSubject>(v.value) {
                if s.drop_s > now_s {
                    out.subjects.push(RevokedSubject {
                        tenant: s.tenant,
                        sub: s.sub,
                        before: s.before,
                    });
                }
            }
        }
        Ok(out)
    }

    /// The principal's revocation time, if it is revoked: the exchange refuses subject tokens
    /// issued before it (`iat < before`).
    pub async fn subject_revoked_before(
        &self,
        tenant: &str,
        sub: &str,
        now_s: u64,
    ) -> Result<Option<u64>, ApiError> {
        let key = format!("{SUB}{tenant}/{}", hex(sub.as_bytes()));
        Ok(self.store.get(&key).await?.and_then(|v| {
            serde_json::from_value::<StoredSubject>(v.value)
                .ok()
                .filter(|s| s.drop_s > now_s)
                .map(|s| s.before)
        }))
    }

    /// Deletes entries that can no longer affect any token.
    pub async fn prune(&self, now_s: u64) -> Result<usize, ApiError> {
        let mut compare = Vec::new();
        let mut ops = Vec::new();
        for (k, v) in self.store.list(JTI).await?.1 {
            let gone = serde_json::from_value::<RevokedJti>(v.value.clone())
                .map_or(true, |r| !self.jti_listed(&r, now_s));
            if gone {
                compare.push(Compare::ModRevision(k.clone(), v.mod_revision));
                ops.push(Op::Delete(k));
            }
        }
        for (k, v) in self.store.list(SUB).await?.1 {
            let gone = serde_json::from_value::<StoredSubject>(v.value.clone())
                .map_or(true, |s| s.drop_s <= now_s);
            if gone {
                compare.push(Compare::ModRevision(k.clone(), v.mod_revision));
                ops.push(Op::Delete(k));
            }
        }
        let n = ops.len();
        if n > 0 && self.store.txn(Txn { compare, ops }).await?.committed() {
            return Ok(n);
        }
        Ok(0)
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::FileStore;

    const RET: Retention = Retention {
        token_lifetime_s: 300,
        broker_leeway_s: 60,
        subject_token_s: 100,
    };

    /// The store id is made with the store, kept across restarts, different for a recreated
    /// store, replaced on request, and sent with the list. On the old code the list carried
    /// no store id: a broker could not tell a recreated store from a rollback.
    #[tokio::test]
    async fn the_store_id_is_made_with_the_store_and_sent_with_the_list() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("store");
        let first = {
            let store = FileStore::open(&dir).unwrap();
            ensure_store_id(&store, false).await.unwrap()
        };
        assert_eq!(first.len(), 32);
        let store: Arc<dyn Store> = Arc::new(FileStore::open(&dir).unwrap());
        assert_eq!(ensure_store_id(&*store, false).await.unwrap(), first);
        let r = Revocations::new(store.clone(), RET).with_store_id(first.clone());
        let l = r.list(0).await.unwrap();
        assert_eq!(l.store_id, first);
        let json = serde_json::to_value(&l).unwrap();
        assert_eq!(json["store_id"], first.as_str());
        let renewed = ensure_store_id(&*store, true).await.unwrap();
        assert_ne!(renewed, first);
        assert_eq!(ensure_store_id(&*store, false).await.unwrap(), renewed);
        let fresh = ensure_store_id(&FileStore::open(&tmp.path().join("other")).unwrap(), false)
            .await
            .unwrap();
        assert_ne!(fresh, renewed, "a recreated store has a new id");
    }

    #[tokio::test]
    async fn a_jti_entry_is_listed_until_exp_plus_the_broker_leeway() {
        let r = Revocations::new(Arc::new(FileStore::in_memory()), RET);
        let now = 5000;
        r.revoke(
            RevokeRequest {
                jti: Some("j".into()),
                exp: Some(now + 10),
                ..Default::default()
            },
            now,
        )
        .await
        .unwrap();
        // A broker still accepts the token at now+11 (exp + its leeway): still listed.
        for t in [now + 11, now + 69] {
            assert_eq!(r.list(t).await.unwrap().jtis.len(), 1, "at {t}");
            assert_eq!(r.prune(t).await.unwrap(), 0);
        }
        assert_eq!(r.list(now + 70).await.unwrap().jtis.len(), 0);
        assert_eq!(r.prune(now + 70).await.unwrap(), 1);
    }

    #[tokio::test]
    async fn a_subject_entry_outlives_every_subject_token_issued_before_it() {
        let long = Retention {
            subject_token_s: 5000,
            ..RET
        };
        let r = Revocations::new(Arc::new(FileStore::in_memory()), long);
        r.revoke(
            RevokeRequest {
                tenant: Some("acme".into()),
                sub: Some("alice".into()),
                ..Default::default()
            },
            1000,
        )
        .await
        .unwrap();
        // Past lifetime + leeway (the old drop time), still there: an old subject token could
        // still be exchanged otherwise.
        assert_eq!(
            r.subject_revoked_before("acme", "alice", 1000 + 361)
                .await
                .unwrap(),
            Some(1001)
        );
        assert_eq!(r.list(5999).await.unwrap().subjects.len(), 1);
        assert_eq!(r.list(6001).await.unwrap().subjects.len(), 0);
    }

    #[tokio::test]
    async fn entries_are_listed_until_no_token_they_affect_can_live_then_pruned() {
        let r = Revocations::new(Arc::new(FileStore::in_memory()), RET);
        r.revoke(
            RevokeRequest {
                jti: Some("abc".into()),
                ..Default::default()
            },
            1000,
        )
        .await
        .unwrap();
        r.revoke(
            RevokeRequest {
                tenant: Some("acme".into()),
                sub: Some("alice/x".into()),
                ..Default::default()
            },
            1000,
        )
        .await
        .unwrap();
        assert!(r
            .revoke(
                RevokeRequest {
                    jti: Some("a".into()),
                    tenant: Some("acme".into()),
                    ..Default::default()
                },
                1000
            )
            .await
            .is_err());
        // A known exp keeps the entry no longer than the token lives; a later one is capped.
        for (exp, kept_until) in [(1100, 1100), (99_999, 1300)] {
            r.revoke(
                RevokeRequest {
                    jti: Some(format!("j{exp}")),
                    exp: Some(exp),
                    ..Default::default()
                },
                1000,
            )
            .await
            .unwrap();
            let l = r.list(1000).await.unwrap();
            let e = l.jtis.iter().find(|j| j.jti == format!("j{exp}")).unwrap();
            assert_eq!(e.exp, kept_until);
            r.store
                .txn(Txn::ops(vec![Op::Delete(format!("{JTI}j{exp}"))]))
                .await
                .unwrap();
        }
        let l = r.list(1000).await.unwrap();
        assert_eq!(
            l.jtis,
            vec![RevokedJti {
                jti: "abc".into(),
                exp: 1300
            }]
        );
        assert_eq!(l.subjects[0].before, 1001);
        assert_eq!(
            r.subject_revoked_before("acme", "alice/x", 1300)
                .await
                .unwrap(),
            Some(1001)
        );
        assert_eq!(
            r.subject_revoked_before("acme", "bob", 1300).await.unwrap(),
            None
        );
        assert_eq!(r.prune(1360).await.unwrap(), 1, "the jti entry");
        assert_eq!(r.list(1360).await.unwrap().jtis.len(), 0);
        assert_eq!(r.list(1360).await.unwrap().subjects.len(), 1);
        assert_eq!(r.prune(1361).await.unwrap(), 1);
    }
}
