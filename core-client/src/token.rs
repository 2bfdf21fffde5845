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
#[derive(Debug, Clone)]
pub struct TokenRefresh {
    /// Fraction of a token's remaining lifetime (from when it was fetched to its `exp`) after
    /// which the next one is fetched. Default 0.8: a 10-minute token is replaced after 8.
    pub lifetime_fraction: f64,
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
            interval: None,
            retry_initial: Duration::from_millis(500),
            retry_max: Duration::from_secs(30),
            min_delay: Duration::from_secs(1),
        }
    }
}

impl TokenRefresh {
    /// When to fetch the next token, for one fetched at `obtained_ms` that expires at `exp_ms`
    /// (both milliseconds since the Unix epoch); `None`: never (no `exp`, no interval).
    pub fn next_refresh_ms(&self, obtained_ms: u64, exp_ms: Option<u64>) -> Option<u64> {
        let fraction = self.lifetime_fraction.clamp(0.0, 1.0);
        let by_exp = exp_ms.map(|exp| {
            let life = exp.saturating_sub(obtained_ms);
            obtained_ms + (life as f64 * fraction) as u64
        });
        let by_interval = self.interval.map(|i| obtained_ms.saturating_add(millis(i)));
        let at = match (by_exp, by_interval) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b)?,
        };
        Some(at.max(obtained_ms.saturating_add(millis(self.min_delay))))
    }

    /// Delay before retry number `failures` (1 = after the first failure), before jitter.
    pub fn retry_delay(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(20);
        self.retry_initial
            .saturating_mul(1 << doublings)
            .min(self.retry_max)
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
    /// When it expires (ms since the epoch), if known: its JWT `exp`, else the exchange
    /// reply's `expires_in`.
    pub exp_ms: Option<u64>,
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
    let exp_ms = match felix_auth::unverified_times(&token) {
        Ok(t) => Some(t.exp.saturating_mul(1000)),
        Err(_) => expires_in.map(|s| obtained.saturating_add(s.saturating_mul(1000))),
    };
    Ok(Fetched {
        token: token.into(),
        exp_ms,
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

    const MIN: u64 = 60_000;

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
    fn refresh_at_eighty_percent_of_the_lifetime_left() {
        let p = TokenRefresh::default();
        // Fetched at t=1000 s, expires 10 minutes later: refresh after 8 minutes.
        let t0 = 1_000_000;
        assert_eq!(
            p.next_refresh_ms(t0, Some(t0 + 10 * MIN)),
            Some(t0 + 8 * MIN)
        );
        // The lifetime counts from when it was fetched, not from its iat.
        assert_eq!(
            p.next_refresh_ms(t0, Some(t0 + 5 * MIN)),
            Some(t0 + 4 * MIN)
        );
    }

    #[test]
    fn the_interval_caps_the_schedule_and_alone_drives_opaque_tokens() {
        let p = TokenRefresh {
            interval: Some(Duration::from_secs(60)),
            ..TokenRefresh::default()
        };
        let t0 = 5_000_000;
        assert_eq!(p.next_refresh_ms(t0, Some(t0 + 10 * MIN)), Some(t0 + MIN));
        assert_eq!(p.next_refresh_ms(t0, Some(t0 + MIN / 2)), Some(t0 + 24_000));
        assert_eq!(p.next_refresh_ms(t0, None), Some(t0 + MIN));
        assert_eq!(TokenRefresh::default().next_refresh_ms(t0, None), None);
    }

    #[test]
    fn an_expired_or_tiny_token_does_not_refresh_in_a_loop() {
        let p = TokenRefresh::default();
        let t0 = 9_000_000;
        assert_eq!(p.next_refresh_ms(t0, Some(t0 - 1)), Some(t0 + 1000));
        assert_eq!(p.next_refresh_ms(t0, Some(t0 + 10)), Some(t0 + 1000));
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
