//! Felix signing keys: one current Ed25519 key signs every issued token; a rotated-out key
//! stays published in the JWKS for the overlap window (at least a token's lifetime plus the
//! brokers' leeway, so every token it signed stays verifiable until it expires), then is
//! dropped.
//!
//! Rotation publishes the next key *ahead* of use: `rotate` stores it with `active_s = now +
//! propagation_s` and retires the current key at that same instant. Until then the JWKS holds
//! both and the old key still signs, so every broker polling the JWKS at least every
//! `propagation_s` knows the new key before the first token it signs. `immediate` skips the
//! wait (emergency), and [`Keys::delete`] drops a compromised key at once.
//!
//! Keys live in the store under `keys/KID` (private key as PKCS#8 PEM; the store's files are
//! 0600 in a 0700 directory). Rotation is one compare-and-set transaction, so two control
//! planes sharing a store (etcd, later) cannot both make a key current.

use std::collections::HashMap;
use std::sync::Arc;

use felix_auth::{Jwks, SigningKey};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::store::{Compare, Op, Store, Txn};

const PREFIX: &str = "keys/";

/// A key as stored. `Debug` never prints the private key.
#[derive(Clone, Serialize, Deserialize)]
struct StoredKey {
    private_pkcs8_pem: String,
    created_s: u64,
    /// When it stops (or stopped) signing; None while current with no successor.
    #[serde(default)]
    retired_s: Option<u64>,
    /// When it starts signing; None = since `created_s` (keys stored before this field).
    #[serde(default)]
    active_s: Option<u64>,
}

impl std::fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredKey")
            .field("private_pkcs8_pem", &"<redacted>")
            .field("created_s", &self.created_s)
            .field("retired_s", &self.retired_s)
            .field("active_s", &self.active_s)
            .finish()
    }
}

impl StoredKey {
    fn active_s(&self) -> u64 {
        self.active_s.unwrap_or(self.created_s)
    }

    /// Whether it signs at `now_s`.
    fn signs_at(&self, now_s: u64) -> bool {
        self.active_s() <= now_s && self.retired_s.is_none_or(|r| now_s < r)
    }
}

/// A key as the admin API lists it (no private material).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyInfo {
    /// Key id (`kid` header of the tokens it signs).
    pub kid: String,
    /// Created, seconds since the Unix epoch.
    pub created_s: u64,
    /// When it stops (stopped) signing; None for the current key with no successor.
    pub retired_s: Option<u64>,
    /// When it starts (started) signing: later than `created_s` for a key still propagating.
    pub active_s: u64,
    /// When it leaves the JWKS (retired + overlap); None for the current key.
    pub unpublish_s: Option<u64>,
}

/// The signing key ring over the store.
pub struct Keys {
    store: Arc<dyn Store>,
    overlap_s: u64,
    propagation_s: u64,
    /// Parsed keys by kid: PEM parsing once per key, not per token.
    parsed: Mutex<HashMap<String, Arc<SigningKey>>>,
}

fn new_kid(now_s: u64) -> String {
    format!("felix-{now_s}-{:08x}", rand::random::<u32>())
}

impl Keys {
    /// A key ring; `overlap_s` is how long a rotated-out key stays published,
    /// `propagation_s` how long a rotated-in key is published before it signs.
    pub fn new(store: Arc<dyn Store>, overlap_s: u64, propagation_s: u64) -> Self {
        Keys {
            store,
            overlap_s,
            propagation_s,
            parsed: Mutex::new(HashMap::new()),
        }
    }

    async fn load(&self) -> Result<Vec<(String, u64, StoredKey)>, ApiError> {
        let (_, items) = self.store.list(PREFIX).await?;
        let mut out = Vec::with_capacity(items.len());
        for (k, v) in items {
            let key: StoredKey = serde_json::from_value(v.value)
                .map_err(|e| ApiError::Internal(format!("stored key {k} unreadable: {e}")))?;
            out.push((k[PREFIX.len()..].to_string(), v.mod_revision, key));
        }
        Ok(out)
    }

    fn parse(&self, kid: &str, stored: &StoredKey) -> Result<Arc<SigningKey>, ApiError> {
        if let Some(k) = self.parsed.lock().get(kid) {
            return Ok(k.clone());
        }
        let key = SigningKey::from_pkcs8_pem(kid, &stored.private_pkcs8_pem)
            .map_err(|e| ApiError::Internal(format!("stored key {kid} unreadable: {e}")))?;
        let key = Arc::new(key);
        self.parsed.lock().insert(kid.to_string(), key.clone());
        Ok(key)
    }

    /// Makes sure a current key exists (first start): creates one if none is current.
    pub async fn ensure(&self, now_s: u64) -> Result<(), ApiError> {
        let keys = self.load().await?;
        if keys.iter().any(|(_, _, k)| k.retired_s.is_none()) {
            return Ok(());
        }
        let mut compare: Vec<Compare> = keys
            .iter()
            .map(|(kid, rev, _)| Compare::ModRevision(format!("{PREFIX}{kid}"), *rev))
            .collect();
        let (op, kid) = Self::fresh(now_s, now_s);
        compare.push(Compare::Absent(format!("{PREFIX}{kid}")));
        if !self
            .store
            .txn(Txn {
                compare,
                ops: vec![op],
            })
            .await?
            .committed()
        {
            // Someone else created or rotated meanwhile: their key is current.
            return Ok(());
        }
        tracing::info!(%kid, "created the first signing key");
        Ok(())
    }

    fn fresh(now_s: u64, active_s: u64) -> (Op, String) {
        let kid = new_kid(now_s);
        let key = SigningKey::generate(&kid);
        let stored = StoredKey {
            private_pkcs8_pem: key.to_pkcs8_pem(),
            created_s: now_s,
            retired_s: None,
            active_s: Some(active_s),
        };
        (
            Op::Put(
                format!("{PREFIX}{kid}"),
                serde_json::to_value(stored).expect("serializes"),
            ),
            kid,
        )
    }

    /// The key that signs at `now_s`: the newest active, unretired one.
    pub async fn current(&self, now_s: u64) -> Result<Arc<SigningKey>, ApiError> {
        let keys = self.load().await?;
        let (kid, _, stored) = keys
            .iter()
            .filter(|(_, _, k)| k.signs_at(now_s))
            .max_by(|a, b| (a.2.active_s(), &a.0).cmp(&(b.2.active_s(), &b.0)))
            .ok_or_else(|| ApiError::Internal("no current signing key".into()))?;
        self.parse(kid, stored)
    }

    /// Adds a new key, published at once and signing from `now + propagation_s` (`now` with
    /// `immediate`); the current key(s) retire at that same instant, atomically. Returns the
    /// new kid and when it starts signing.
    pub async fn rotate(&self, now_s: u64, immediate: bool) -> Result<(String, u64), ApiError> {
        let switch_s = if immediate {
            now_s
        } else {
            now_s + self.propagation_s
        };
        for _ in 0..3 {
            let keys = self.load().await?;
            let mut compare = Vec::new();
            let mut ops = Vec::new();
            for (kid, rev, k) in &keys {
                // Unretired keys, and keys whose retirement is still ahead (a rotation still
                // propagating) when this one is immediate.
                if k.retired_s.is_none_or(|r| r > switch_s) {
                    compare.push(Compare::ModRevision(format!("{PREFIX}{kid}"), *rev));
                    let mut retired = k.clone();
                    retired.retired_s = Some(switch_s);
                    ops.push(Op::Put(
                        format!("{PREFIX}{kid}"),
                        serde_json::to_value(retired).expect("serializes"),
                    ));
                }
            }
            let (op, kid) = Self::fresh(now_s, switch_s);
            compare.push(Compare::Absent(format!("{PREFIX}{kid}")));
            ops.push(op);
            if self.store.txn(Txn { compare, ops }).await?.committed() {
                tracing::info!(%kid, overlap_s = self.overlap_s, switch_s, "signing key rotated");
                return Ok((kid, switch_s));
            }
        }
        Err(ApiError::Conflict(
            "concurrent rotations kept winning; try again".into(),
        ))
    }

    fn published(&self, k: &StoredKey, now_s: u64) -> bool {
        k.retired_s
            .is_none_or(|r| now_s < r.saturating_add(self.overlap_s))
    }

    /// The public keys to publish: the current key and those still in their overlap window.
    pub async fn jwks(&self, now_s: u64) -> Result<Jwks, ApiError> {
        let mut keys = Vec::new();
        for (kid, _, stored) in self.load().await? {
            if self.published(&stored, now_s) {
                keys.push(self.parse(&kid, &stored)?.public_jwk());
            }
        }
        Ok(Jwks { keys })
    }

    /// Drops a key at once (compromised): it leaves the JWKS immediately, so brokers refuse
    /// every token it signed once they re-poll. If it was signing (or about to), a fresh key
    /// replaces it immediately in the same transaction. `Ok(false)` if there is no such key.
    pub async fn delete(&self, kid: &str, now_s: u64) -> Result<bool, ApiError> {
        for _ in 0..3 {
            let keys = self.load().await?;
            let Some((_, rev, gone)) = keys.iter().find(|(k, _, _)| k == kid) else {
                return Ok(false);
            };
            let key = format!("{PREFIX}{kid}");
            let mut compare = vec![Compare::ModRevision(key.clone(), *rev)];
            let mut ops = vec![Op::Delete(key)];
            let put = |k: &str, s: &StoredKey| {
                Op::Put(
                    format!("{PREFIX}{k}"),
                    serde_json::to_value(s).expect("serializes"),
                )
            };
            if gone.signs_at(now_s) {
                // The signing key is compromised: sign with a fresh key from now on, and
                // retire every other key still signing or pending (a successor included).
                for (k, rev, s) in &keys {
                    if k != kid && s.retired_s.is_none_or(|r| r > now_s) {
                        compare.push(Compare::ModRevision(format!("{PREFIX}{k}"), *rev));
                        let mut retired = s.clone();
                        retired.retired_s = Some(now_s);
                        ops.push(put(k, &retired));
                    }
                }
                let (op, new) = Self::fresh(now_s, now_s);
                compare.push(Compare::Absent(format!("{PREFIX}{new}")));
                ops.push(op);
            } else if gone.active_s() > now_s {
                // A pending successor: the keys it was to replace keep signing.
                for (k, rev, s) in &keys {
                    if k != kid && s.signs_at(now_s) && s.retired_s == Some(gone.active_s()) {
                        compare.push(Compare::ModRevision(format!("{PREFIX}{k}"), *rev));
                        let mut kept = s.clone();
                        kept.retired_s = None;
                        ops.push(put(k, &kept));
                    }
                }
            }
            if self.store.txn(Txn { compare, ops }).await?.committed() {
                self.parsed.lock().remove(kid);
                tracing::warn!(%kid, "signing key deleted");
                return Ok(true);
            }
        }
        Err(ApiError::Conflict(
            "concurrent key changes kept winning; try again".into(),
        ))
    }

    /// Every key, without private material.
    pub async fn list(&self) -> Result<Vec<KeyInfo>, ApiError> {
        Ok(self
            .load()
            .await?
            .into_iter()
            .map(|(kid, _, k)| KeyInfo {
                kid,
                created_s: k.created_s,
                retired_s: k.retired_s,
                active_s: k.active_s(),
                unpublish_s: k.retired_s.map(|r| r.saturating_add(self.overlap_s)),
            })
            .collect())
    }

    /// Deletes keys past their overlap window (their tokens have all expired).
    pub async fn prune(&self, now_s: u64) -> Result<usize, ApiError> {
        let mut compare = Vec::new();
        let mut ops = Vec::new();
        for (kid, rev, stored) in self.load().await? {
            if !self.published(&stored, now_s) {
                compare.push(Compare::ModRevision(format!("{PREFIX}{kid}"), rev));
                ops.push(Op::Delete(format!("{PREFIX}{kid}")));
                self.parsed.lock().remove(&kid);
            }
        }
        let n = ops.len();
        if n > 0 && self.store.txn(Txn { compare, ops }).await?.committed() {
            tracing::info!(count = n, "dropped signing keys past their overlap window");
            return Ok(n);
        }
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::FileStore;

    #[tokio::test]
    async fn rotation_keeps_the_old_key_published_for_the_overlap_then_drops_it() {
        let keys = Keys::new(Arc::new(FileStore::in_memory()), 100, 0);
        keys.ensure(1000).await.unwrap();
        keys.ensure(1000).await.unwrap();
        let first = keys.current(1000).await.unwrap().kid().to_string();
        assert_eq!(keys.jwks(1000).await.unwrap().keys.len(), 1);
        let (second, _) = keys.rotate(2000, false).await.unwrap();
        assert_ne!(first, second);
        assert_eq!(keys.current(2000).await.unwrap().kid(), second);
        let kids = |now| {
            let keys = &keys;
            async move {
                keys.jwks(now)
                    .await
                    .unwrap()
                    .keys
                    .into_iter()
                    .map(|k| k.kid)
                    .collect::<Vec<String>>()
            }
        };
        assert!(
            kids(2099).await.contains(&first),
            "inside the overlap window"
        );
        assert_eq!(kids(2100).await, vec![second.clone()], "after it");
        assert_eq!(keys.prune(2099).await.unwrap(), 0);
        assert_eq!(keys.prune(2100).await.unwrap(), 1);
        assert_eq!(keys.list().await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn the_next_key_is_published_before_it_signs_and_a_deleted_key_is_gone_at_once() {
        let keys = Keys::new(Arc::new(FileStore::in_memory()), 100, 10);
        keys.ensure(1000).await.unwrap();
        let first = keys.current(1000).await.unwrap().kid().to_string();
        let (next, switch) = keys.rotate(2000, false).await.unwrap();
        assert_eq!(switch, 2010);
        let published: Vec<String> = keys
            .jwks(2000)
            .await
            .unwrap()
            .keys
            .into_iter()
            .map(|k| k.kid)
            .collect();
        assert!(published.contains(&next) && published.contains(&first));
        assert_eq!(
            keys.current(2009).await.unwrap().kid(),
            first,
            "still propagating"
        );
        assert_eq!(keys.current(2010).await.unwrap().kid(), next);
        assert_eq!(keys.jwks(2109).await.unwrap().keys.len(), 2, "overlap");
        // Delete the signing key: a fresh one signs at once, the deleted one is unpublished.
        assert!(keys.delete(&next, 2020).await.unwrap());
        let now_signing = keys.current(2020).await.unwrap().kid().to_string();
        assert_ne!(now_signing, next);
        let published: Vec<String> = keys
            .jwks(2020)
            .await
            .unwrap()
            .keys
            .into_iter()
            .map(|k| k.kid)
            .collect();
        assert!(!published.contains(&next));
        assert!(published.contains(&now_signing));
        assert!(!keys.delete("nope", 2020).await.unwrap());
        // Deleting a pending successor: the current key simply keeps signing.
        let (pending, _) = keys.rotate(2025, false).await.unwrap();
        assert!(keys.delete(&pending, 2026).await.unwrap());
        assert_eq!(keys.current(2040).await.unwrap().kid(), now_signing);
        assert!(keys
            .list()
            .await
            .unwrap()
            .iter()
            .any(|k| k.kid == now_signing && k.retired_s.is_none()));
        // An immediate rotation signs with the new key right away.
        let (urgent, switch) = keys.rotate(2030, true).await.unwrap();
        assert_eq!(switch, 2030);
        assert_eq!(keys.current(2030).await.unwrap().kid(), urgent);
        assert!(format!("{:?}", keys.load().await.unwrap()).contains("<redacted>"));
        assert!(!format!("{:?}", keys.load().await.unwrap()).contains("PRIVATE"));
    }
}
