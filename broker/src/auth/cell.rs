//! Connection-scoped principals: refresh, expiry and revocation.
//!
//! The streams of one connection that authenticated as the same (tenant, subject) share one
//! [`PrincipalCell`]. The most recent token presented for that principal (a stream's `auth`
//! or a `reauth`) is in force for all of them, so a refresh on any request stream carries
//! every subscription of the principal past the old token's expiry.
//!
//! One watcher task per cell (only for expiring or revocable credentials) ends the cell at
//! the token's `exp` + leeway unless it was refreshed first, and when the revocation feed
//! revokes it. An ended cell answers every request with `unauthorized` and ends its
//! subscriptions; nothing on the request path polls a clock or the feed.

use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use tokio::sync::watch;

use super::{Action, AuthError, Authenticator, Principal, Resource};

/// The state of a cell: the principal in force, and why it ended (if it did).
#[derive(Debug, Clone)]
pub struct CellState {
    /// The principal of the latest accepted token.
    pub principal: Arc<Principal>,
    /// `Some(reason)` once the token expired unrefreshed or was revoked.
    pub ended: Option<Arc<str>>,
}

/// One principal of one connection, shared by its streams.
#[derive(Debug)]
pub struct PrincipalCell {
    state: watch::Sender<CellState>,
    /// Fixed for the cell's life (a refresh must keep tenant and subject): read without
    /// touching the watch, e.g. by the audit log.
    tenant: Box<str>,
    subject: Option<Box<str>>,
}

impl PrincipalCell {
    fn new(principal: Principal) -> Arc<Self> {
        Arc::new(Self {
            tenant: principal.tenant.as_str().into(),
            subject: principal.subject.as_deref().map(Into::into),
            state: watch::Sender::new(CellState {
                principal: Arc::new(principal),
                ended: None,
            }),
        })
    }

    /// The tenant every token of this cell acts in.
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// The subject every token of this cell names.
    pub fn subject(&self) -> Option<&str> {
        self.subject.as_deref()
    }

    /// The principal in force now.
    pub fn principal(&self) -> Arc<Principal> {
        self.state.borrow().principal.clone()
    }

    /// Why the cell ended, if it did.
    pub fn ended(&self) -> Option<Arc<str>> {
        self.state.borrow().ended.clone()
    }

    /// A receiver that sees refreshes and the end (subscriptions wait on it).
    pub fn watch(&self) -> watch::Receiver<CellState> {
        self.state.subscribe()
    }

    /// Checks one request: ended cells answer `unauthorized` with their reason, then the
    /// authenticator's tenant and permission check. No allocation unless refused.
    pub fn authorize(
        &self,
        auth: &dyn Authenticator,
        action: Action,
        tenant: &str,
        namespace: &str,
        resource: Resource<'_>,
    ) -> Result<(), AuthError> {
        let s = self.state.borrow();
        if let Some(reason) = &s.ended {
            return Err(AuthError::Unauthorized(reason.to_string()));
        }
        auth.authorize(&s.principal, action, tenant, namespace, resource)
    }

    /// Whether the principal in force may `action` on `namespace/name` (wildcard subscriptions
    /// ask this for each stream they match).
    pub fn allows(&self, action: Action, namespace: &str, name: &str) -> bool {
        let s = self.state.borrow();
        s.ended.is_none() && s.principal.perms.allows(action, namespace, name)
    }

    /// `reauth`: verifies `token` for the same tenant, requires the same subject, and puts it
    /// in force for every stream of the cell (reviving it if it had expired). A refused token
    /// leaves the current one in force.
    pub fn reauth(&self, auth: &dyn Authenticator, token: &str) -> Result<(), AuthError> {
        let current = self.principal();
        let fresh = auth.authenticate(&current.tenant, Some(token))?;
        if fresh.subject != current.subject {
            return Err(AuthError::Unauthorized(
                "reauth token names another principal than the one it replaces".into(),
            ));
        }
        self.replace(fresh);
        Ok(())
    }

    fn replace(&self, principal: Principal) {
        self.state.send_modify(|s| {
            s.principal = Arc::new(principal);
            s.ended = None;
        });
    }

    fn end(&self, reason: &str) {
        self.state.send_if_modified(|s| {
            if s.ended.is_some() {
                return false;
            }
            s.ended = Some(Arc::from(reason));
            true
        });
    }
}

/// The cells of one connection.
#[derive(Debug, Default)]
pub struct Cells {
    cells: Mutex<Vec<Weak<PrincipalCell>>>,
}

impl Cells {
    /// Binds a freshly authenticated principal: joins the connection's cell for the same
    /// (tenant, subject), putting this token in force for it, or makes a new cell (with its
    /// watcher when the credentials expire or can be revoked).
    pub fn bind(&self, principal: Principal, auth: &Arc<dyn Authenticator>) -> Arc<PrincipalCell> {
        let mut cells = self.cells.lock();
        cells.retain(|w| w.strong_count() > 0);
        for w in cells.iter() {
            if let Some(cell) = w.upgrade() {
                let same = {
                    let s = cell.state.borrow();
                    s.principal.tenant == principal.tenant
                        && s.principal.subject == principal.subject
                };
                if same {
                    cell.replace(principal);
                    return cell;
                }
            }
        }
        let watched = principal.expires_at.is_some() || auth.changes().is_some();
        let cell = PrincipalCell::new(principal);
        cells.push(Arc::downgrade(&cell));
        if watched {
            tokio::spawn(watch_cell(
                Arc::downgrade(&cell),
                cell.watch(),
                auth.clone(),
            ));
        }
        cell
    }
}

/// When `exp + leeway` (Unix seconds) is, as a tokio instant.
fn deadline_of(at_s: u64) -> tokio::time::Instant {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let left = Duration::from_secs(at_s).saturating_sub(now);
    // A token with an `exp` centuries away (only a stolen signing key can mint one) must not
    // overflow the timer and kill the watcher that also enforces revocation.
    let now = tokio::time::Instant::now();
    now.checked_add(left)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 86_400))
}

/// Ends the cell when its token expires unrefreshed or is revoked; returns when the cell is
/// gone (every stream of the principal closed).
async fn watch_cell(
    cell: Weak<PrincipalCell>,
    mut rx: watch::Receiver<CellState>,
    auth: Arc<dyn Authenticator>,
) {
    let mut changes = auth.changes();
    loop {
        let (principal, live) = {
            let s = rx.borrow_and_update();
            (s.principal.clone(), s.ended.is_none())
        };
        let end = |reason: &str| {
            if let Some(c) = cell.upgrade() {
                c.end(reason);
                auth.principal_ended(reason);
            }
        };
        if live && auth.revoked(&principal) {
            end("token revoked");
            continue;
        }
        let expiry = principal
            .expires_at
            .filter(|_| live)
            .map(|e| deadline_of(e.saturating_add(auth.leeway_s())));
        tokio::select! {
            r = rx.changed() => if r.is_err() { return },
            _ = async {
                match expiry {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            } => end("token expired"),
            r = async {
                match changes.as_mut() {
                    Some(c) => c.changed().await,
                    None => std::future::pending().await,
                }
            } => {
                if r.is_err() {
                    changes = None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {

    #[tokio::test]
    async fn a_far_future_expiry_does_not_overflow_the_timer() {
        let far = deadline_of(u64::MAX);
        assert!(far > tokio::time::Instant::now() + Duration::from_secs(50 * 365 * 86_400));
        let soon = deadline_of(0);
        assert!(soon <= tokio::time::Instant::now());
    }

    use super::super::{StaticTokenAuth, TokenEntry};
    use super::*;

    fn auth() -> Arc<dyn Authenticator> {
        let e = |token: &str, subject: &str| TokenEntry {
            tenant: "acme".into(),
            token: token.into(),
            subject: Some(subject.into()),
        };
        Arc::new(
            StaticTokenAuth::new(vec![e("a1", "alice"), e("a2", "alice"), e("b1", "bob")]).unwrap(),
        )
    }

    #[test]
    fn streams_of_one_principal_share_a_cell_and_reauth_keeps_the_subject() {
        let auth = auth();
        let cells = Cells::default();
        let p = |t: &str| auth.authenticate("acme", Some(t)).unwrap();
        let a = cells.bind(p("a1"), &auth);
        let a2 = cells.bind(p("a2"), &auth);
        let b = cells.bind(p("b1"), &auth);
        assert!(Arc::ptr_eq(&a, &a2), "same tenant and subject: one cell");
        assert!(!Arc::ptr_eq(&a, &b));
        assert!(a.reauth(&*auth, "a1").is_ok());
        let e = a.reauth(&*auth, "b1").unwrap_err();
        assert_eq!(e.code(), felix_wire::ErrorCode::Unauthorized);
        assert!(a.reauth(&*auth, "nope").is_err());
        assert_eq!(a.principal().subject.as_deref(), Some("alice"));
        // An ended cell answers unauthorized with its reason; a reauth revives it.
        a.end("token expired");
        let e = a
            .authorize(&*auth, Action::Publish, "acme", "ns", Resource::Exact("s"))
            .unwrap_err();
        assert!(e.to_string().contains("token expired"), "{e}");
        assert!(!a.allows(Action::Subscribe, "ns", "s"));
        assert!(a.reauth(&*auth, "a2").is_ok());
        assert!(a
            .authorize(&*auth, Action::Publish, "acme", "ns", Resource::Exact("s"))
            .is_ok());
        drop((a, a2));
        let _c = cells.bind(p("a1"), &auth);
        assert_eq!(cells.cells.lock().len(), 2, "dead cells are pruned");
    }
}
