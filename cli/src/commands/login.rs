//! `felix login`: exchange an OIDC token at the control plane for a Felix token and cache it
//! (mode 0600, written atomically) so that later commands use it when no `--token` is given.
//!
//! The cache is `$FELIX_TOKEN_CACHE`, else `$XDG_CONFIG_HOME/felix/token`, else
//! `~/.config/felix/token`: a JSON object `{tenant, token, expires_at, controlplane}`. The
//! token never goes to stdout or a log.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use felix_client::{SubjectToken, TokenExchange, TokenSource};
use serde_json::json;

use super::Ctx;
use crate::args::LoginArgs;
use crate::output::{Failure, EXIT_OTHER, EXIT_USAGE};

/// A cached login.
#[derive(Debug)]
pub struct Cached {
    pub tenant: String,
    pub token: String,
    /// Seconds since the Unix epoch, if known.
    pub expires_at: Option<u64>,
}

/// Where the token is cached.
pub fn cache_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("FELIX_TOKEN_CACHE") {
        return Some(PathBuf::from(p));
    }
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(config.join("felix").join("token"))
}

/// The cached login, if there is one.
pub fn load() -> Result<Option<Cached>, Failure> {
    let Some(path) = cache_path() else {
        return Ok(None);
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_failure(&path, e)),
    };
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        Failure::new(
            "io",
            format!(
                "{}: not a felix login cache ({e}); run felix login again",
                path.display()
            ),
            EXIT_OTHER,
        )
    })?;
    let field = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_owned);
    match (field("tenant"), field("token")) {
        (Some(tenant), Some(token)) => Ok(Some(Cached {
            tenant,
            token,
            expires_at: v.get("expires_at").and_then(|x| x.as_u64()),
        })),
        _ => Err(Failure::new(
            "io",
            format!(
                "{}: incomplete felix login cache; run felix login again",
                path.display()
            ),
            EXIT_OTHER,
        )),
    }
}

/// Exchanges the subject token and caches the result.
pub async fn run(ctx: &mut Ctx, a: LoginArgs) -> Result<(), Failure> {
    let tenant = ctx.tenant().to_owned();
    let path = cache_path().ok_or_else(|| {
        Failure::usage("no place for the token cache: set FELIX_TOKEN_CACHE or HOME")
    })?;
    let mut x = TokenExchange::new(&a.controlplane, SubjectToken::File(a.subject_token_file));
    if let Some(t) = a.subject_token_type {
        x.subject_token_type = t;
    }
    x.ca_file = a.controlplane_ca;
    let source = TokenSource::Exchange(x);
    let t = tenant.clone();
    let fetched = tokio::task::spawn_blocking(move || source.fetch_blocking(&t))
        .await
        .map_err(|e| Failure::new("internal", e.to_string(), EXIT_OTHER))?
        .map_err(|e| Failure::from(e).context(format_args!("logging in at {}", a.controlplane)))?;
    let expires_at = fetched
        .expires_at()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs());
    let body = json!({
        "tenant": tenant,
        "token": fetched.secret(),
        "expires_at": expires_at,
        "controlplane": a.controlplane,
    });
    write_private(&path, body.to_string().as_bytes()).map_err(|e| io_failure(&path, e))?;
    let shown = path.display().to_string();
    let left = expires_at.map(|e| e.saturating_sub(now_s()));
    ctx.out.emit(
        || match left {
            Some(s) => {
                format!("logged in to tenant {tenant}; token cached in {shown}, valid {s} s")
            }
            None => format!("logged in to tenant {tenant}; token cached in {shown}"),
        },
        || json!({ "tenant": tenant, "cache": shown, "expires_at": expires_at }),
    )?;
    Ok(())
}

/// The token other commands use when none is given: the cached login's, if it is for
/// `tenant` (or `tenant` is the default and so was not chosen), and not expired.
pub fn token_for(tenant: &str, tenant_is_default: bool) -> Result<Option<Cached>, Failure> {
    let Some(c) = load()? else { return Ok(None) };
    if c.tenant != tenant && !tenant_is_default {
        return Ok(None);
    }
    if c.expires_at.is_some_and(|e| e <= now_s()) {
        return Err(Failure::new(
            "unauthorized",
            format!(
                "the token cached by felix login for tenant {} has expired: run felix login again",
                c.tenant
            ),
            EXIT_OTHER,
        ));
    }
    Ok(Some(c))
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn io_failure(path: &Path, e: std::io::Error) -> Failure {
    let exit = if e.kind() == std::io::ErrorKind::PermissionDenied {
        EXIT_USAGE
    } else {
        EXIT_OTHER
    };
    Failure::new("io", format!("{}: {e}", path.display()), exit)
}

/// Writes `data` to `path` readable by this user only (0600; directory 0700), through a
/// temporary file renamed into place: a reader sees the old token or the new one.
fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    // The mode given at creation is filtered by the umask; never looser than 0600 anyway.
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(data)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)
}
