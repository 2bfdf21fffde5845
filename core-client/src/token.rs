//! Where the client's bearer token comes from, and when to fetch the next one.
//!
//! A [`TokenSource`] is static (a fixed token), a callback the application provides, or an
//! RFC 8693 token exchange at the Felix control plane. Fetching is blocking work (a callback
//! may read a file or call a secrets manager; the exchange is an HTTP call), so the client
//! always does it on a blocking thread, never on the thread that reads replies. The refresh
//! schedule ([`TokenRefresh`]) is pure: time is an argument, in milliseconds since the Unix
//! epoch, so it is tested without waiting.
//!
//! No `Debug` here shows a token (nor a subject token): only that one is there.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};

/// The error a token callback returns: its message reaches the caller as `unauthorized`.
pub type TokenCallbackError = Box<dyn std::error::Error + Send + Sync>;

/// A function returning a fresh token. It may block (it runs on a blocking thread) and is
/// called again for every refresh.
pub type TokenCallback =
    Arc<dyn Fn() -> std::result::Result<String, TokenCallbackError> + Send + Sync>;

/// Where the client gets the bearer token it sends in `auth` (and `reauth`).
#[derive(Clone)]
#[non_exhaustive]
pub enum TokenSource {
    /// A fixed token (never refreshed).
    Static(String),
    /// A callback returning a fresh token: called before connecting and again before the
    /// current token expires (see [`TokenRefresh`]).
    Callback(TokenCallback),
    /// Exchange an OIDC token for a Felix token at the control plane, and again before the
    /// Felix token expires.
    Exchange(TokenExchange),
}

impl TokenSource {
    /// A [`TokenSource::Callback`] from a closure.
    pub fn callback<F>(f: F) -> Self
    where
        F: Fn() -> std::result::Result<String, TokenCallbackError> + Send + Sync + 'static,
    {
        TokenSource::Callback(Arc::new(f))
    }

    /// Fetches one token now, blocking (for a tool that stores it, such as `felix login`; a
    /// client fetches on its own). `tenant` is the default exchange audience.
    pub fn fetch_blocking(&self, tenant: &str) -> Result<FetchedToken> {
        let f = fetch(self, tenant)?;
        Ok(FetchedToken {
            token: f.token.to_string(),
            expires_at: f.exp_ms.map(|ms| UNIX_EPOCH + Duration::from_millis(ms)),
        })
    }

    /// Whether the token can change (and so needs a refresh task).
    pub(crate) fn is_dynamic(&self) -> bool {
        !matches!(self, TokenSource::Static(_))
    }
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenSource::Static(_) => f.write_str("Static(<redacted>)"),
            TokenSource::Callback(_) => f.write_str("Callback(..)"),
            TokenSource::Exchange(x) => f.debug_tuple("Exchange").field(x).finish(),
        }
    }
}

/// The token the control plane exchanges (the RFC 8693 `subject_token`).
#[derive(Clone)]
#[non_exhaustive]
pub enum SubjectToken {
    /// This token.
    Value(String),
    /// The contents of this file, read at every exchange (trailing whitespace trimmed). A
    /// Kubernetes projected ServiceAccount token is such a file: the kubelet rotates it in
    /// place, so each exchange sends the current one.
    File(PathBuf),
    /// A callback returning it (called at every exchange, on a blocking thread).
    Callback(TokenCallback),
}

impl fmt::Debug for SubjectToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubjectToken::Value(_) => f.write_str("Value(<redacted>)"),
            SubjectToken::File(p) => f.debug_tuple("File").field(p).finish(),
            SubjectToken::Callback(_) => f.write_str("Callback(..)"),
        }
    }
}

/// `subject_token_type` of an OIDC ID token (the default).
pub const ID_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:id_token";

/// An RFC 8693 token exchange at the Felix control plane: `POST {url}/oauth/token`,
/// form-encoded, answered with `{access_token, expires_in, ...}` or an OAuth error.
#[derive(Clone, Debug)]
pub struct TokenExchange {
    /// Base URL of the control plane (`https://cp.example:8443`). Plain `http` is accepted
    /// only for a loopback host: the request carries a credential.
    pub url: String,
    /// What is exchanged.
    pub subject_token: SubjectToken,
    /// Its type: [`ID_TOKEN_TYPE`] (default), or `urn:ietf:params:oauth:token-type:jwt` /
    /// `...:access_token`.
    pub subject_token_type: String,
    /// The `audience` asked for; `None` asks for the client's tenant.
    pub audience: Option<String>,
    /// PEM CA certificate(s) the control plane's certificate must chain to; `None` uses the
    /// public web roots (webpki-roots).
    pub ca_file: Option<PathBuf>,
    /// Deadline of one exchange (connect, send, and read the reply). Default 10 s.
    pub timeout: Duration,
    /// Longest reply read; a longer one fails the exchange (`protocol`) rather than being
    /// buffered. Default 64 KiB (a Felix token is at most 16 KiB).
    pub max_response_bytes: usize,
}

impl TokenExchange {
    /// An exchange of `subject_token` at `url` with the defaults.
    pub fn new(url: impl Into<String>, subject_token: SubjectToken) -> Self {
        Self {
            url: url.into(),
            subject_token,
            subject_token_type: ID_TOKEN_TYPE.into(),
            audience: None,
            ca_file: None,
            timeout: Duration::from_secs(10),
            max_response_bytes: 64 * 1024,
        }
    }
}

/// When the client fetches a fresh token.
///
/// The schedule never reads the local wall clock: a token's lifetime is its own `exp - iat`
/// (or the exchange reply's `expires_in`), counted on the monotonic clock from when it was
/// received, so a client whose clock is minutes off still refreshes in time (see
/// [`Lifetime`]). Each client refreshes at a random point of a window before expiry, so a
/// fleet started together does not hit the control plane at the same instant.
#[derive(Debug, Clone)]
pub struct TokenRefresh {
    /// Fraction of a token's lifetime (from when it was received) after which the next one is
    /// fetched, at the latest. Default 0.8: a 10-minute token is replaced after 8 minutes at
    /// the latest.
    pub lifetime_fraction: f64,
    /// Width of the refresh window, as a fraction of the lifetime, ending at
    /// `lifetime_fraction`: each refresh happens at a uniformly random point of it. Default
    /// 0.1: a 10-minute token is replaced between 7 and 8 minutes. 0 refreshes exactly at
    /// `lifetime_fraction`.
    pub jitter_fraction: f64,
    /// Refresh at least this often, whatever the lifetime. A token without a readable `exp`
    /// (opaque) is refreshed only on this interval; `None` (default) leaves it as it is.
    pub interval: Option<Duration>,
    /// First delay after a failed refresh; doubles (with jitter) up to `retry_max`. The
    /// current token keeps being used meanwhile; calls fail with `unauthorized` only once it
    /// has expired. Default 500 ms.
    pub retry_initial: Duration,
    /// Longest delay between refresh attempts. Default 30 s.
    pub retry_max: Duration,
    /// Shortest time between two scheduled refreshes, so a token with a tiny or past `exp`
    /// cannot make the client fetch in a loop. Default 1 s.
    pub min_delay: Duration,
}

impl Default for TokenRefresh {
    fn default() -> Self {
        Self {
            lifetime_fraction: 0.8,
            jitter_fraction: 0.1,
            interval: None,
            retry_initial: Duration::from_millis(500),
            retry_max: Duration::from_secs(30),
            min_delay: Duration::from_secs(1),
        }
    }
}

impl TokenRefresh {
    /// How long after receiving a token to fetch the next one: `refresh_within` is the
    /// token's [`Lifetime::refresh_within`] (`None`: opaque), `random` a sample of `[0, 1)`
    /// placing the refresh in the jitter window (0: its start, the earliest). `None`: never
    /// (no lifetime, no interval).
    pub fn refresh_delay(&self, refresh_within: Option<Duration>, random: f64) -> Option<Duration> {
        let latest = self.lifetime_fraction.clamp(0.0, 1.0);
        let earliest = (latest - self.jitter_fraction.clamp(0.0, 1.0)).max(0.0);
        let at = earliest + (latest - earliest) * random.clamp(0.0, 1.0);
        let by_life = refresh_within.map(|life| life.mul_f64(at));
        let delay = match (by_life, self.interval) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b)?,
        };
        Some(delay.max(self.min_delay))
    }

    /// Delay before retry number `failures` (1 = after the first failure), before jitter.
    pub fn retry_delay(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(20);
        self.retry_initial
            .saturating_mul(1 << doublings)
            .min(self.retry_max)
    }
}

/// How long a token stays usable, counted from the moment it was received (so measured on
/// the monotonic clock, not compared with the local wall clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetime {
    /// When the broker will stop accepting it (as far as the client can tell without
    /// trusting its own clock): calls fail fast with `unauthorized` past it if no fresh
    /// token could be had. Its `exp - iat` when it has an `iat`, else the exchange reply's
    /// `expires_in`, else `exp` minus the local clock (the only case that trusts the clock).
    pub valid_for: Duration,
    /// The lifetime the refresh is scheduled within: `valid_for`, shortened when the local
    /// clock says the token is older than its `iat` (a callback handing out a cached token),
    /// so the wall clock can only make a refresh earlier, never later. A clock so far ahead
    /// that the token looks expired is ignored.
    pub refresh_within: Duration,
}

impl Lifetime {
    /// The lifetime of a token received when the wall clock read `now_ms` (ms since the Unix
    /// epoch): `exp` and `iat` are its JWT claims (seconds), `expires_in` the exchange reply's
    /// (seconds). `None`: nothing tells when it expires (an opaque token).
    pub fn of(
        exp: Option<u64>,
        iat: Option<u64>,
        expires_in: Option<u64>,
        now_ms: u64,
    ) -> Option<Lifetime> {
        let by_clock = exp.map(|e| e.saturating_mul(1000).saturating_sub(now_ms));
        let own = match (exp, iat) {
            (Some(e), Some(i)) => Some(e.saturating_sub(i).saturating_mul(1000)),
            _ => expires_in.map(|s| s.saturating_mul(1000)),
        };
        let (valid_ms, refresh_ms) = match (own, by_clock) {
            (Some(own), Some(clock)) if clock > 0 => (own, own.min(clock)),
            (Some(own), _) => (own, own),
            (None, Some(clock)) => (clock, clock),
            (None, None) => return None,
        };
        Some(Lifetime {
            valid_for: Duration::from_millis(valid_ms),
            refresh_within: Duration::from_millis(refresh_ms),
        })
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Now, in milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(millis)
        .unwrap_or(0)
}

/// A token fetched with [`TokenSource::fetch_blocking`]. `Debug` does not show it.
#[derive(Clone)]
pub struct FetchedToken {
    token: String,
    expires_at: Option<SystemTime>,
}

impl FetchedToken {
    /// The bearer token.
    pub fn secret(&self) -> &str {
        &self.token
    }

    /// When it expires (its JWT `exp`, else the exchange reply's `expires_in`), if known.
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.expires_at
    }
}

impl fmt::Debug for FetchedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FetchedToken")
            .field("token", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// A token just fetched.
pub(crate) struct Fetched {
    pub token: Arc<str>,
    /// When it expires (ms since the epoch, by the local clock), if known: its JWT `exp`,
    /// else the exchange reply's `expires_in`. Reported only ([`FetchedToken::expires_at`]).
    pub exp_ms: Option<u64>,
    /// How long it lasts from now (what the refresh schedule uses).
    pub lifetime: Option<Lifetime>,
}

/// Fetches a token from `source` (blocking: call it on a blocking thread). `tenant` is the
/// default exchange audience.
pub(crate) fn fetch(source: &TokenSource, tenant: &str) -> Result<Fetched> {
    let (token, expires_in) = match source {
        TokenSource::Static(t) => (t.clone(), None),
        TokenSource::Callback(f) => (call(f, "token callback")?, None),
        TokenSource::Exchange(x) => {
            let r = crate::exchange::exchange(x, tenant)?;
            (r.access_token, r.expires_in)
        }
    };
    if token.is_empty() {
        return Err(Error::Unauthorized(
            "the token source returned an empty token".into(),
        ));
    }
    check_len(&token)?;
    let obtained = now_ms();
    let (exp, iat) = match felix_auth::unverified_times(&token) {
        Ok(t) => (Some(t.exp), t.iat),
        Err(_) => (None, None),
    };
    let exp_ms = match exp {
        Some(e) => Some(e.saturating_mul(1000)),
        None => expires_in.map(|s| obtained.saturating_add(s.saturating_mul(1000))),
    };
    Ok(Fetched {
        token: token.into(),
        exp_ms,
        lifetime: Lifetime::of(exp, iat, expires_in, obtained),
    })
}

/// Refuses a token longer than any broker reads (`felix_auth::token::MAX_TOKEN_BYTES`,
/// 16 KiB) with `unauthorized` before it is sent: a broker refuses it anyway, and one too
/// large for the broker's `auth` frame bound (64 KiB) would only come back as
/// `frame_too_large`, unread (docs/security.md 4.3).
pub(crate) fn check_len(token: &str) -> Result<()> {
    let max = felix_auth::token::MAX_TOKEN_BYTES;
    if token.len() > max {
        return Err(Error::Unauthorized(format!(
            "the token is {} bytes, larger than 16 KiB ({max} bytes, the most a broker accepts)",
            token.len()
        )));
    }
    Ok(())
}

/// Runs a token callback: an error or a panic becomes `unauthorized` (the panic must not
/// take down the blocking thread's caller, nor a binding's runtime).
pub(crate) fn call(f: &TokenCallback, what: &str) -> Result<String> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f())) {
        Ok(Ok(t)) => Ok(t),
        Ok(Err(e)) => Err(Error::Unauthorized(format!("{what} failed: {e}"))),
        Err(_) => Err(Error::Unauthorized(format!("{what} panicked"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    fn exact() -> TokenRefresh {
        TokenRefresh {
            jitter_fraction: 0.0,
            ..TokenRefresh::default()
        }
    }

    #[test]
    fn a_token_over_16_kib_is_refused_unauthorized_before_it_is_sent() {
        let max = felix_auth::token::MAX_TOKEN_BYTES;
        assert!(check_len(&"a".repeat(max)).is_ok());
        let e = check_len(&"a".repeat(max + 1)).unwrap_err();
        assert_eq!(e.code(), felix_wire::ErrorCode::Unauthorized, "{e}");
        let Err(e) = fetch(&TokenSource::Static("b".repeat(1 << 20)), "acme") else {
            panic!("a 1 MB token was accepted");
        };
        assert!(e.to_string().contains("larger than 16 KiB"), "{e}");
        assert!(
            !e.to_string().contains("bbbb"),
            "the token is not quoted: {e}"
        );
    }

    #[test]
    fn refresh_at_eighty_percent_of_the_lifetime() {
        let p = exact();
        assert_eq!(p.refresh_delay(Some(10 * MIN), 0.5), Some(8 * MIN));
        assert_eq!(p.refresh_delay(Some(5 * MIN), 0.0), Some(4 * MIN));
    }

    #[test]
    fn jitter_spreads_refreshes_over_a_window_before_the_latest_point() {
        let p = TokenRefresh::default();
        let life = Some(10 * MIN);
        // The window is [70 %, 80 %] of the lifetime; the sample places the refresh in it.
        assert_eq!(p.refresh_delay(life, 0.0), Some(7 * MIN));
        assert_eq!(p.refresh_delay(life, 0.5), Some(Duration::from_secs(450)));
        let last = p.refresh_delay(life, 0.999_999).unwrap();
        assert!(
            last > Duration::from_secs(479) && last <= 8 * MIN,
            "{last:?}"
        );
        // Out-of-range samples and settings are clamped, never past the lifetime.
        assert_eq!(p.refresh_delay(life, 7.0), Some(8 * MIN));
        let wide = TokenRefresh {
            jitter_fraction: 5.0,
            ..TokenRefresh::default()
        };
        assert_eq!(wide.refresh_delay(life, 0.0), Some(Duration::from_secs(1)));
        assert_eq!(wide.refresh_delay(life, 1.0), Some(8 * MIN));
    }

    #[test]
    fn the_interval_caps_the_schedule_and_alone_drives_opaque_tokens() {
        let p = TokenRefresh {
            interval: Some(MIN),
            ..exact()
        };
        assert_eq!(p.refresh_delay(Some(10 * MIN), 0.3), Some(MIN));
        assert_eq!(
            p.refresh_delay(Some(MIN / 2), 0.3),
            Some(Duration::from_secs(24))
        );
        assert_eq!(p.refresh_delay(None, 0.3), Some(MIN));
        assert_eq!(TokenRefresh::default().refresh_delay(None, 0.3), None);
    }

    #[test]
    fn an_expired_or_tiny_token_does_not_refresh_in_a_loop() {
        let p = TokenRefresh::default();
        assert_eq!(
            p.refresh_delay(Some(Duration::ZERO), 0.5),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            p.refresh_delay(Some(Duration::from_millis(10)), 0.5),
            Some(Duration::from_secs(1))
        );
    }

    /// A token issued at `iat` lasting 10 minutes, received when the local clock reads
    /// `iat + skew`.
    fn received_with_skew(skew_s: i64) -> Lifetime {
        let iat: u64 = 1_700_000_000;
        let exp = iat + 600;
        let now_ms = (iat as i64 + skew_s) as u64 * 1000;
        Lifetime::of(Some(exp), Some(iat), None, now_ms).unwrap()
    }

    #[test]
    fn a_skewed_clock_never_delays_the_refresh_nor_the_expiry() {
        let ten = 10 * MIN;
        // Right clock: the lifetime is exp - iat.
        let l = received_with_skew(0);
        assert_eq!((l.valid_for, l.refresh_within), (ten, ten));
        // A clock 1 hour behind used to see 70 minutes left, and refreshed after the broker had
        // ended the token. The token's own lifetime wins.
        let l = received_with_skew(-3600);
        assert_eq!((l.valid_for, l.refresh_within), (ten, ten));
        // A clock 1 hour ahead used to see the token as expired and refetch every second. The
        // token's own lifetime is used; the clock is ignored once it claims expiry.
        let l = received_with_skew(3600);
        assert_eq!((l.valid_for, l.refresh_within), (ten, ten));
        // A clock 4 minutes ahead (or a cached token 4 minutes old: the client cannot tell)
        // only brings the refresh forward; the fail-fast expiry stays the token's own.
        let l = received_with_skew(240);
        assert_eq!((l.valid_for, l.refresh_within), (ten, 6 * MIN));
    }

    #[test]
    fn lifetimes_without_iat_come_from_the_exchange_then_the_clock() {
        let now = 1_700_000_000_000;
        // Exchange reply without a readable JWT: expires_in, whatever the clock.
        let l = Lifetime::of(None, None, Some(300), now).unwrap();
        assert_eq!(l.valid_for, 5 * MIN);
        // A JWT without iat but an exchange expires_in: expires_in, capped by the clock.
        let l = Lifetime::of(Some(now / 1000 + 120), None, Some(300), now).unwrap();
        assert_eq!((l.valid_for, l.refresh_within), (5 * MIN, 2 * MIN));
        // Only exp: the clock is all there is.
        let l = Lifetime::of(Some(now / 1000 + 120), None, None, now).unwrap();
        assert_eq!((l.valid_for, l.refresh_within), (2 * MIN, 2 * MIN));
        assert_eq!(Lifetime::of(None, None, None, now), None);
        // iat after exp (a broken issuer): a zero lifetime, refreshed after min_delay.
        let l = Lifetime::of(Some(100), Some(200), None, 50_000).unwrap();
        assert_eq!(l.valid_for, Duration::ZERO);
    }

    #[test]
    fn retries_back_off_up_to_the_maximum() {
        let p = TokenRefresh::default();
        assert_eq!(p.retry_delay(1), Duration::from_millis(500));
        assert_eq!(p.retry_delay(2), Duration::from_secs(1));
        assert_eq!(p.retry_delay(4), Duration::from_secs(4));
        assert_eq!(p.retry_delay(40), Duration::from_secs(30));
    }

    #[test]
    fn debug_shows_no_token() {
        let s = format!(
            "{:?} {:?}",
            TokenSource::Static("s3cret-a".into()),
            TokenSource::Exchange(TokenExchange::new(
                "https://cp",
                SubjectToken::Value("s3cret-b".into())
            ))
        );
        assert!(!s.contains("s3cret"), "{s}");
        assert!(s.contains("https://cp"), "{s}");
    }

    #[test]
    fn a_failing_or_panicking_callback_is_unauthorized() {
        let failing: TokenCallback = Arc::new(|| Err("vault sealed".into()));
        let e = call(&failing, "token callback").unwrap_err();
        assert_eq!(e.code(), crate::ErrorCode::Unauthorized);
        assert!(e.to_string().contains("vault sealed"), "{e}");
        let panicking: TokenCallback = Arc::new(|| panic!("boom"));
        let e = call(&panicking, "token callback").unwrap_err();
        assert_eq!(e.code(), crate::ErrorCode::Unauthorized);
    }
}
