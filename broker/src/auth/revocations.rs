//! The revocations in force in JWT mode: the control plane's list, indexed for O(1) lookups,
//! never rolled back, and with revoked token ids kept until their token could have expired.
//!
//! Three rules make a stale or replayed list harmless:
//! * a list whose `revision` is lower than the applied one *of the same store* is refused
//!   whole ([`Rollback`]: a stale control-plane replica, or a replayed response), so revoked
//!   subjects cannot be un-revoked by it. The revision is the control plane store's counter,
//!   which restarts when the store is recreated (or restored, which gives it a new
//!   `store_id`): a list of another store re-arms the guard at its revision instead of
//!   freezing the broker on the old store's revision forever;
//! * a revoked `jti` stays revoked until the latest moment its token could still be accepted
//!   (its entry's `exp` plus the broker's leeway; without an `exp`, the time it was seen plus
//!   `auth.max_token_lifetime_s`), even when a later list leaves it out;
//! * a revoked subject stays revoked until no token issued before its cutoff can be accepted
//!   (`before + auth.max_token_lifetime_s + leeway`; the broker refuses longer-lived tokens),
//!   even when a later list leaves it out;
//! * lookups are a hash probe by `jti` and one by (tenant, subject): every `auth` and every
//!   feed re-check of the live principals pays O(1), not a scan of the list.
//!
//! Pure: time is an argument.

use std::collections::HashMap;

use felix_auth::{RevocationList, RevokedSubject};
use serde::Deserialize;

/// The revocation feed document as the broker reads it: [`RevocationList`]'s shape, with a
/// jti's `exp` optional (a control plane that does not know it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct FeedList {
    /// Increases whenever the list changes.
    pub revision: u64,
    /// The control plane store the revision counts in (absent: a control plane that does
    /// not send it, taken as one store of its own).
    #[serde(default)]
    pub store_id: Option<String>,
    /// Revoked tokens.
    #[serde(default)]
    pub jtis: Vec<FeedJti>,
    /// Revoked principals.
    #[serde(default)]
    pub subjects: Vec<RevokedSubject>,
}

/// One revoked token id of the feed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct FeedJti {
    /// The token's `jti`.
    pub jti: String,
    /// The token's `exp`, when the control plane sends it.
    #[serde(default)]
    pub exp: Option<u64>,
}

impl From<RevocationList> for FeedList {
    fn from(l: RevocationList) -> Self {
        Self {
            revision: l.revision,
            store_id: (!l.store_id.is_empty()).then_some(l.store_id),
            jtis: l
                .jtis
                .into_iter()
                .map(|j| FeedJti {
                    jti: j.jti,
                    exp: Some(j.exp),
                })
                .collect(),
            subjects: l.subjects,
        }
    }
}

/// A list older than the one applied: refused, the applied one stays in force.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "revocation list revision {got} is older than the applied revision {applied} (a stale \
     control-plane replica or a replayed response); the applied list stays in force"
)]
#[non_exhaustive]
pub struct Rollback {
    /// Revision of the refused list.
    pub got: u64,
    /// Revision in force.
    pub applied: u64,
}

/// How long revoked token ids are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// `auth.leeway_s`: a token is accepted until `exp` plus this.
    pub leeway_s: u64,
    /// `auth.max_token_lifetime_s`: the longest a token without a known `exp` can live.
    pub max_token_lifetime_s: u64,
}

/// The revocations in force (see the module doc).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Revocations {
    revision: u64,
    /// The store `revision` counts in.
    store_id: Option<Box<str>>,
    /// Revoked `jti` → until when it is kept (Unix seconds).
    jtis: HashMap<Box<str>, u64>,
    /// tenant → subject → tokens issued before this (Unix seconds) are revoked.
    subjects: HashMap<Box<str>, HashMap<Box<str>, u64>>,
}

impl Revocations {
    /// The revision of the applied list (0 before any).
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// The control plane store the applied revision counts in.
    pub fn store_id(&self) -> Option<&str> {
        self.store_id.as_deref()
    }

    /// Whether `list` comes from another store than the applied list (a recreated or
    /// restored control plane store: its revision restarts).
    pub fn other_store(&self, list: &FeedList) -> bool {
        self.revision > 0 && self.store_id.as_deref() != list.store_id.as_deref()
    }

    /// Revoked token ids held (the list's and the retained ones).
    pub fn jti_count(&self) -> usize {
        self.jtis.len()
    }

    /// What is in force after `list` arrives at `now_s`: the list, plus the token ids an
    /// earlier list revoked that could still be accepted. A list older than this one of the
    /// same store is refused; one of another store re-arms the guard at its revision.
    pub fn next(&self, list: &FeedList, now_s: u64, r: Retention) -> Result<Self, Rollback> {
        if !self.other_store(list) && list.revision < self.revision {
            return Err(Rollback {
                got: list.revision,
                applied: self.revision,
            });
        }
        let mut jtis: HashMap<Box<str>, u64> = HashMap::with_capacity(list.jtis.len());
        let mut keep = |jti: &str, until: u64| {
            if until > now_s {
                let e = jtis.entry(jti.into()).or_insert(until);
                *e = (*e).max(until);
            }
        };
        for j in &list.jtis {
            let exp = j
                .exp
                .unwrap_or_else(|| now_s.saturating_add(r.max_token_lifetime_s));
            keep(&j.jti, exp.saturating_add(r.leeway_s));
        }
        for (jti, &until) in &self.jtis {
            keep(jti, until);
        }
        let mut subjects: HashMap<Box<str>, HashMap<Box<str>, u64>> = HashMap::new();
        for s in &list.subjects {
            let e = subjects
                .entry(s.tenant.as_str().into())
                .or_default()
                .entry(s.sub.as_str().into())
                .or_insert(s.before);
            *e = (*e).max(s.before);
        }
        // A revoked subject stays revoked while a token issued before its cutoff can still be
        // accepted (`before + max_token_lifetime_s + leeway_s`), even when a later list (a
        // restored or recreated store, a control plane that pruned early) leaves it out.
        // Tokens issued after the cutoff are not affected by it anyway.
        let keep_s = r.max_token_lifetime_s.saturating_add(r.leeway_s);
        for (tenant, subs) in &self.subjects {
            for (sub, &before) in subs {
                if before.saturating_add(keep_s) > now_s {
                    let e = subjects
                        .entry(tenant.clone())
                        .or_default()
                        .entry(sub.clone())
                        .or_insert(before);
                    *e = (*e).max(before);
                }
            }
        }
        Ok(Self {
            revision: list.revision,
            store_id: list.store_id.as_deref().map(Into::into),
            jtis,
            subjects,
        })
    }

    /// Whether a token (known by the claims a broker keeps of it) is revoked.
    pub fn revokes_token(&self, tenant: &str, sub: &str, iat: u64, jti: &str) -> bool {
        self.jtis.contains_key(jti)
            || self
                .subjects
                .get(tenant)
                .and_then(|m| m.get(sub))
                .is_some_and(|&before| iat < before)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: Retention = Retention {
        leeway_s: 60,
        max_token_lifetime_s: 3_600,
    };

    fn list(revision: u64, jtis: &[(&str, Option<u64>)], subjects: &[(&str, u64)]) -> FeedList {
        FeedList {
            revision,
            store_id: None,
            jtis: jtis
                .iter()
                .map(|&(jti, exp)| FeedJti {
                    jti: jti.into(),
                    exp,
                })
                .collect(),
            subjects: subjects
                .iter()
                .map(|&(sub, before)| RevokedSubject {
                    tenant: "acme".into(),
                    sub: sub.into(),
                    before,
                })
                .collect(),
        }
    }

    #[test]
    fn an_older_revision_is_refused_and_the_applied_list_stays() {
        let r5 = Revocations::default()
            .next(&list(5, &[], &[("mallory", 100)]), 10, R)
            .unwrap();
        let e = r5.next(&list(4, &[], &[]), 11, R).unwrap_err();
        assert_eq!((e.got, e.applied), (4, 5));
        assert!(
            r5.revokes_token("acme", "mallory", 50, "x"),
            "still revoked"
        );
        // The same revision again (an unchanged list) is fine.
        assert!(r5.next(&list(5, &[], &[("mallory", 100)]), 12, R).is_ok());
    }

    #[test]
    fn a_list_of_another_store_rearms_the_guard_and_the_same_store_is_still_guarded() {
        let of = |store: &str, l: FeedList| FeedList {
            store_id: Some(store.into()),
            ..l
        };
        let r = Revocations::default()
            .next(&of("a", list(500, &[("j1", Some(900))], &[])), 10, R)
            .unwrap();
        // The store was recreated: its counter restarted at 3. Accepted, guard re-armed.
        let fresh = of("b", list(3, &[], &[("mallory", 100)]));
        assert!(r.other_store(&fresh));
        let r = r.next(&fresh, 11, R).unwrap();
        assert_eq!((r.revision(), r.store_id()), (3, Some("b")));
        assert!(r.revokes_token("acme", "mallory", 50, "x"));
        assert!(r.revokes_token("acme", "a", 0, "j1"), "kept jtis survive");
        // The new store's own older revision is refused.
        let e = r.next(&of("b", list(2, &[], &[])), 12, R).unwrap_err();
        assert_eq!((e.got, e.applied), (2, 3));
    }

    #[test]
    fn a_revoked_jti_is_kept_until_its_token_could_have_expired() {
        let now = 1_000;
        let r1 = Revocations::default()
            .next(
                &list(1, &[("j1", Some(now + 100)), ("j2", None)], &[]),
                now,
                R,
            )
            .unwrap();
        // A later list omits both: still revoked while their tokens could be accepted.
        let r2 = r1.next(&list(2, &[], &[]), now + 10, R).unwrap();
        assert!(r2.revokes_token("acme", "a", 0, "j1"));
        assert!(r2.revokes_token("acme", "a", 0, "j2"));
        // j1: exp + leeway passed; j2 (no exp): seen + max lifetime + leeway not yet.
        let r3 = r2.next(&list(3, &[], &[]), now + 161, R).unwrap();
        assert!(!r3.revokes_token("acme", "a", 0, "j1"));
        assert!(r3.revokes_token("acme", "a", 0, "j2"));
        let r4 = r3.next(&list(4, &[], &[]), now + 3_661, R).unwrap();
        assert!(!r4.revokes_token("acme", "a", 0, "j2"));
        assert_eq!(r4.jti_count(), 0, "nothing kept past its time");
    }

    /// A subject entry a later list omits is kept until `before + max lifetime + leeway`. On
    /// the old code the next list dropped it at once, un-revoking tokens still within their
    /// lifetime.
    #[test]
    fn a_revoked_subject_is_kept_until_its_tokens_could_have_expired() {
        let r1 = Revocations::default()
            .next(&list(1, &[], &[("mallory", 1_000)]), 1_000, R)
            .unwrap();
        let r2 = r1.next(&list(2, &[], &[]), 1_010, R).unwrap();
        assert!(r2.revokes_token("acme", "mallory", 999, "x"), "kept");
        assert!(
            !r2.revokes_token("acme", "mallory", 1_000, "x"),
            "newer tokens pass"
        );
        let r3 = r2.next(&list(3, &[], &[]), 1_000 + 3_659, R).unwrap();
        assert!(r3.revokes_token("acme", "mallory", 999, "x"), "not yet");
        let r4 = r3.next(&list(4, &[], &[]), 1_000 + 3_660, R).unwrap();
        assert!(
            !r4.revokes_token("acme", "mallory", 999, "x"),
            "past its time"
        );
    }

    #[test]
    fn subjects_are_revoked_by_tenant_and_issue_time() {
        let r = Revocations::default()
            .next(&list(1, &[], &[("mallory", 100), ("mallory", 50)]), 0, R)
            .unwrap();
        assert!(
            r.revokes_token("acme", "mallory", 99, "x"),
            "the later cutoff wins"
        );
        assert!(!r.revokes_token("acme", "mallory", 100, "x"));
        assert!(!r.revokes_token("globex", "mallory", 1, "x"));
        assert!(!r.revokes_token("acme", "alice", 1, "x"));
    }

    #[test]
    fn the_feed_document_reads_with_or_without_a_jti_exp() {
        let l: FeedList = serde_json::from_str(
            r#"{"revision":3,"jtis":[{"jti":"a","exp":9},{"jti":"b"}],"subjects":[]}"#,
        )
        .unwrap();
        assert_eq!(l.jtis[0].exp, Some(9));
        assert_eq!(l.jtis[1].exp, None);
        let l: FeedList = serde_json::from_str(r#"{"revision":1}"#).unwrap();
        assert!(l.jtis.is_empty());
    }
}
