//! Connection-scoped principals: refresh, expiry and revocation.
//!
//! The streams of one connection that authenticated as the same (tenant, subject) share one
//! [`PrincipalCell`]. The most recent token presented for that principal (a stream's `auth`
//! or a `reauth`) is in force for all of them, so a refresh on any request stream carries
//! every subscription of the principal past the old token's expiry.
//!
//! One watcher task per cell (only for expiring or revocable credentials) ends the cell at
//! the token's `exp` + leeway unless it was refreshed first, when the revocation feed
//! revokes it, and when the key that verified its token leaves the key set. An ended cell
//! answers every request with `unauthorized` and ends its subscriptions; nothing on the
//! request path polls a clock or the feed. When the last live cell of a tenant on a
//! connection ends, the connection's hook is told (it gives back the tenant's connection
//! quota slot).
//!
//! A refresh that narrows the permissions ends, one by one, what the new token no longer
//! grants: subscriptions and parked pulls wait on [`until_withdrawn`] with their own check.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use tokio::sync::watch;

#[cfg(test)]
use super::Permissions;
use super::{Action, AuthError, Authenticator, Principal, Resource};
use super::{ENDED_EXPIRED, ENDED_KEY_WITHDRAWN, ENDED_REVOKED, PERMISSION_WITHDRAWN};

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
        let fresh = self.check_reauth(auth, token)?;
        self.replace(fresh);
        Ok(())
    }

    /// The first half of [`PrincipalCell::reauth`]: the principal `token` would put in force
    /// (same tenant and subject), without putting it in force.
    pub fn check_reauth(
        &self,
        auth: &dyn Authenticator,
        token: &str,
    ) -> Result<Principal, AuthError> {
        let current = self.principal();
        let fresh = auth.authenticate(&current.tenant, Some(token))?;
        if fresh.subject != current.subject {
            return Err(AuthError::Unauthorized(
                "reauth token names another principal than the one it replaces".into(),
            ));
        }
        Ok(fresh)
    }

    /// Puts a checked principal in force for every stream of the cell (the second half of
    /// [`PrincipalCell::reauth`]). Subscriptions and parked pulls it no longer grants end
    /// (they watch the cell).
    pub fn replace(&self, principal: Principal) {
        self.state.send_modify(|s| {
            s.principal = Arc::new(principal);
            s.ended = None;
        });
    }

    /// Ends the cell; false when it had already ended.
    fn end(&self, reason: &str) -> bool {
        self.state.send_if_modified(|s| {
            if s.ended.is_some() {
                return false;
            }
            s.ended = Some(Arc::from(reason));
            true
        })
    }
}

/// Resolves once the cell has ended (with its reason) or the principal in force no longer
/// passes `allowed` (with [`PERMISSION_WITHDRAWN`]). Checks the state in force at once, then
/// after every change (a refresh, a new `auth` of the principal, the end); create it once per
/// subscription or parked pull, not per event.
pub async fn until_withdrawn(
    rx: &mut watch::Receiver<CellState>,
    allowed: impl Fn(&Principal) -> bool,
) -> Arc<str> {
    // The permissions last found to pass: a refresh with the same grants (the usual case)
    // costs one comparison, not a walk of the wildcard's streams.
    let mut passed: Option<Arc<super::Permissions>> = None;
    loop {
        // Out of the borrow before asking `allowed` (it may take registry locks that a stream
        // creation holds while it asks the cell).
        let principal = {
            let s = rx.borrow_and_update();
            if let Some(reason) = &s.ended {
                return reason.clone();
            }
            s.principal.clone()
        };
        let same = passed.as_ref().is_some_and(|p| **p == *principal.perms);
        if !same {
            if !allowed(&principal) {
                return Arc::from(PERMISSION_WITHDRAWN);
            }
            passed = Some(principal.perms.clone());
        }
        if rx.changed().await.is_err() {
            // The cell is gone with every stream of it: nothing left to end.
            return std::future::pending().await;
        }
    }
}

/// Told the tenant whose last live principal on the connection ended.
pub type TenantEnded = Box<dyn Fn(&str) + Send + Sync>;

/// The cells of one connection.
#[derive(Default)]
pub struct Cells {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    cells: Mutex<Vec<Weak<PrincipalCell>>>,
    tenant_ended: Option<TenantEnded>,
    /// `reauth`s of the connection, bounded by `limits.max_reauths_per_minute`.
    reauths: Mutex<Option<ReauthBucket>>,
    /// Audit lines of rate-limited reauths: when the last was written, and how many were
    /// left out since.
    limited_audit: Mutex<(Option<Instant>, u64)>,
}

/// One audit line per connection per this window for reauths refused by the rate bound; the
/// next line says how many were left out.
pub const LIMITED_AUDIT_WINDOW: Duration = Duration::from_secs(60);

impl std::fmt::Debug for Cells {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cells")
            .field("cells", &self.inner.cells.lock().len())
            .finish_non_exhaustive()
    }
}

impl Inner {
    /// After a cell of `tenant` ended: tells the hook when no live cell of it is left.
    fn cell_ended(&self, tenant: &str) {
        let Some(hook) = &self.tenant_ended else {
            return;
        };
        let live = self
            .cells
            .lock()
            .iter()
            .filter_map(Weak::upgrade)
            .any(|c| c.tenant() == tenant && c.state.borrow().ended.is_none());
        if !live {
            hook(tenant);
        }
    }
}

/// A token bucket of `per_minute` reauths, full at first, refilled over a minute. Pure: time
/// is an argument.
#[derive(Debug, Clone)]
pub struct ReauthBucket {
    tokens: f64,
    last: Instant,
}

impl ReauthBucket {
    /// A full bucket at `now`.
    pub fn new(per_minute: u32, now: Instant) -> Self {
        Self {
            tokens: f64::from(per_minute),
            last: now,
        }
    }

    /// Takes one reauth at `now` if there is one.
    pub fn take(&mut self, per_minute: u32, now: Instant) -> bool {
        let cap = f64::from(per_minute);
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * cap / 60.0).min(cap);
        self.last = self.last.max(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

impl Cells {
    /// The cells of a connection whose `tenant_ended` is told each tenant whose last live
    /// principal on the connection ended (expired, revoked, key withdrawn).
    pub fn with_hook(tenant_ended: TenantEnded) -> Self {
        Self {
            inner: Arc::new(Inner {
                tenant_ended: Some(tenant_ended),
                ..Inner::default()
            }),
        }
    }

    /// Whether the connection may `reauth` now (`per_minute` = 0: always).
    pub fn take_reauth(&self, per_minute: u32, now: Instant) -> bool {
        if per_minute == 0 {
            return true;
        }
        self.inner
            .reauths
            .lock()
            .get_or_insert_with(|| ReauthBucket::new(per_minute, now))
            .take(per_minute, now)
    }

    /// A reauth (or token swap) refused by the rate bound at `now`: `Some(n)` when it gets an
    /// audit line (the first in [`LIMITED_AUDIT_WINDOW`]; `n` were left out since the last
    /// line), `None` when it is only counted. A client hammering `reauth` cannot flood the
    /// audit log: refusals past the bound cost one line per connection per window.
    pub fn limited_audit(&self, now: Instant) -> Option<u64> {
        let mut g = self.inner.limited_audit.lock();
        let due =
            g.0.is_none_or(|t| now.saturating_duration_since(t) >= LIMITED_AUDIT_WINDOW);
        if due {
            let left_out = g.1;
            *g = (Some(now), 0);
            Some(left_out)
        } else {
            g.1 += 1;
            None
        }
    }

    /// Binds a freshly authenticated principal: joins the connection's cell for the same
    /// (tenant, subject), or makes a new cell (with its watcher when the credentials expire or
    /// can be revoked). Joining with other credentials than the ones in force puts them in
    /// force for every stream of the principal, as a `reauth` does: it is charged to the
    /// connection's reauth bound (`per_minute`, 0: unbounded) and reported as a swap for the
    /// audit log; past the bound nothing changes ([`SwapLimited`]). Joining with the same
    /// credentials (the client's other streams after a refresh) swaps nothing and is free.
    /// The caller takes (or confirms) the tenant's connection slot after this: a joined cell
    /// may have ended and been revived here.
    pub fn bind(
        &self,
        principal: Principal,
        auth: &Arc<dyn Authenticator>,
        per_minute: u32,
        now: Instant,
    ) -> Result<Bound, SwapLimited> {
        let mut cells = self.inner.cells.lock();
        cells.retain(|w| w.strong_count() > 0);
        for w in cells.iter() {
            if let Some(cell) = w.upgrade() {
                let (same, same_credentials) = {
                    let s = cell.state.borrow();
                    let p = &s.principal;
                    let same = p.tenant == principal.tenant && p.subject == principal.subject;
                    (
                        same,
                        same && s.ended.is_none() && p.same_credentials(&principal),
                    )
                };
                if !same {
                    continue;
                }
                if same_credentials {
                    return Ok(Bound {
                        cell,
                        swapped: false,
                    });
                }
                if !self.take_reauth(per_minute, now) {
                    return Err(SwapLimited);
                }
                cell.replace(principal);
                return Ok(Bound {
                    cell,
                    swapped: true,
                });
            }
        }
        let watched = principal.expires_at.is_some() || auth.changes().is_some();
        let cell = PrincipalCell::new(principal);
        cells.push(Arc::downgrade(&cell));
        if watched {
            tokio::spawn(watch_cell(
                Arc::downgrade(&cell),
                Arc::downgrade(&self.inner),
                cell.watch(),
                auth.clone(),
            ));
        }
        Ok(Bound {
            cell,
            swapped: false,
        })
    }

    /// Ends `cell` (e.g. revived by a swap but refused its tenant's connection slot) and
    /// tells the hook when it was the tenant's last live cell.
    pub fn end_cell(&self, cell: &PrincipalCell, reason: &str) {
        if cell.end(reason) {
            self.inner.cell_ended(cell.tenant());
        }
    }
}

/// What [`Cells::bind`] did.
#[derive(Debug)]
pub struct Bound {
    /// The principal's cell on this connection.
    pub cell: Arc<PrincipalCell>,
    /// Whether other credentials were put in force for the principal (a swap, like `reauth`).
    pub swapped: bool,
}

/// A stream `auth` would have put other credentials in force for a live principal past the
/// connection's `limits.max_reauths_per_minute`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a new token for a live principal is a reauth, and this connection is past limits.max_reauths_per_minute; the token in force stays")]
#[non_exhaustive]
pub struct SwapLimited;

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

/// Ends the cell when its token expires unrefreshed, is revoked or loses its signing key;
/// returns when the cell is gone (every stream of the principal closed).
async fn watch_cell(
    cell: Weak<PrincipalCell>,
    cells: Weak<Inner>,
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
                if c.end(reason) {
                    auth.principal_ended(reason);
                    if let Some(cells) = cells.upgrade() {
                        cells.cell_ended(c.tenant());
                    }
                }
            }
        };
        if live && auth.revoked(&principal) {
            end(ENDED_REVOKED);
            continue;
        }
        if live && auth.key_withdrawn(&principal) {
            end(ENDED_KEY_WITHDRAWN);
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
            } => end(ENDED_EXPIRED),
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

    #[test]
    fn the_reauth_bucket_holds_a_minute_of_reauths_and_refills() {
        let t0 = Instant::now();
        let mut b = ReauthBucket::new(3, t0);
        assert!((0..3).all(|_| b.take(3, t0)));
        assert!(!b.take(3, t0), "the 4th in the same instant");
        assert!(!b.take(3, t0 + Duration::from_secs(19)));
        assert!(
            b.take(3, t0 + Duration::from_secs(21)),
            "one back after 20 s"
        );
        assert!(!b.take(3, t0 + Duration::from_secs(21)));
        let cells = Cells::default();
        assert!((0..100).all(|_| cells.take_reauth(0, t0)), "0 is unlimited");
    }

    #[tokio::test]
    async fn a_narrower_principal_withdraws_and_the_last_ended_cell_tells_the_hook() {
        let auth = auth();
        let told = Arc::new(Mutex::new(Vec::<String>::new()));
        let t = told.clone();
        let cells = Cells::with_hook(Box::new(move |tenant: &str| t.lock().push(tenant.into())));
        let p = |tok: &str| auth.authenticate("acme", Some(tok)).unwrap();
        let a = cells.bind(p("a1"), &auth, 0, Instant::now()).unwrap().cell;
        let b = cells.bind(p("b1"), &auth, 0, Instant::now()).unwrap().cell;
        let mut rx = a.watch();
        let only = |p: &Principal| p.jti.is_none() && p.perms.allows(Action::Publish, "ns", "s");
        let waiting = tokio::spawn(async move { until_withdrawn(&mut rx, only).await });
        let mut narrow = p("a2");
        narrow.perms = Arc::new(Permissions::compile(&[]).unwrap());
        a.replace(narrow);
        let why = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&*why, PERMISSION_WITHDRAWN);
        assert!(a.ended().is_none(), "the principal itself goes on");
        // Cells end through their watcher; here by hand, as the watcher does.
        a.end(ENDED_REVOKED);
        cells.inner.cell_ended("acme");
        assert!(told.lock().is_empty(), "bob is still live in acme");
        b.end(ENDED_EXPIRED);
        cells.inner.cell_ended("acme");
        assert_eq!(*told.lock(), vec!["acme".to_owned()]);
    }

    /// A stream `auth` with another token for a live principal is a swap: charged to the
    /// reauth bound (refused past it, the token in force stays) and reported; the same
    /// credentials again swap nothing and are free. On the old code every such `auth`
    /// replaced the principal's token, unbounded and unreported.
    #[tokio::test]
    async fn a_swap_by_auth_is_charged_to_the_reauth_bound() {
        let auth = auth();
        let cells = Cells::default();
        let t0 = Instant::now();
        let p = |t: &str, exp: u64| {
            let mut p = auth.authenticate("acme", Some(t)).unwrap();
            // Far ahead: the cell's watcher must not end it during the test.
            p.expires_at = Some(4_000_000_000 + exp);
            p
        };
        let first = cells.bind(p("a1", 100), &auth, 2, t0).unwrap();
        assert!(!first.swapped);
        for _ in 0..5 {
            let same = cells.bind(p("a1", 100), &auth, 2, t0).unwrap();
            assert!(!same.swapped && Arc::ptr_eq(&same.cell, &first.cell));
        }
        assert!(cells.bind(p("a1", 200), &auth, 2, t0).unwrap().swapped);
        assert!(cells.bind(p("a1", 300), &auth, 2, t0).unwrap().swapped);
        assert_eq!(
            cells.bind(p("a1", 400), &auth, 2, t0).unwrap_err(),
            SwapLimited
        );
        assert_eq!(
            first.cell.principal().expires_at,
            Some(4_000_000_300),
            "in force stays"
        );
        assert!(!cells.take_reauth(2, t0), "one bucket for reauth and swaps");
    }

    /// Rate-limited reauths get one audit line per connection per window, which says how
    /// many were left out. On the old code every refused reauth was a line.
    #[test]
    fn rate_limited_reauths_are_audited_once_per_window() {
        let cells = Cells::default();
        let t0 = Instant::now();
        assert_eq!(cells.limited_audit(t0), Some(0));
        for i in 1..=50 {
            assert_eq!(cells.limited_audit(t0 + Duration::from_millis(i)), None);
        }
        assert_eq!(cells.limited_audit(t0 + LIMITED_AUDIT_WINDOW), Some(50));
        assert_eq!(cells.limited_audit(t0 + LIMITED_AUDIT_WINDOW), None);
    }

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
        let bind = |t: &str| cells.bind(p(t), &auth, 0, Instant::now()).unwrap().cell;
        let a = bind("a1");
        let a2 = bind("a2");
        let b = bind("b1");
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
        let _c = bind("a1");
        assert_eq!(cells.inner.cells.lock().len(), 2, "dead cells are pruned");
    }
}
