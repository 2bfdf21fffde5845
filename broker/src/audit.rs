//! The audit log: one JSON line per security-relevant event, for the people who must answer
//! "who did what, and what was refused".
//!
//! Logged: every denial (failed `auth`, `forbidden`, `quota_exceeded`, a refused TLS handshake
//! or connection), every connection open and close (peer address, mTLS identity, the tenants
//! and subject it authenticated as),
//! every admin change (stream, cache and group creation, with its outcome), and grants only
//! when `audit.grants` is `sampled` (one in `grant_sample_one_in`) or `all`. Every line has
//! the same keys: `ts`, `event`, `tenant`, `sub`, `action`, `resource`, `outcome`, `code`,
//! `reason`, `conn` (null where they do not apply), plus `peer` and `identity` on connection
//! events and `kid` on `reauth` events. A token or other secret is never an input to an
//! event, so none can be written. Every string field passes [`loggable`] (control characters
//! escaped, length capped): names from a token, verified or not, cannot forge or flood a
//! line; log lines quoting such strings use the same helper.
//!
//! The request path never waits for the log: events go through a bounded channel
//! (`audit.channel_capacity`) to one writer thread; when the channel is full the event is
//! dropped and counted (`felix_audit_dropped_total`). The file is created 0600 and rotated at
//! `audit.max_file_bytes`, keeping `audit.max_files` rotated files (`audit.log.1` newest).

use std::borrow::Cow;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::error::BrokerError;

/// Longest string written as one field of an audit line or a log line, in characters; the
/// rest is cut and its size given.
pub const MAX_LOGGED_CHARS: usize = 256;

fn needs_escape(c: char) -> bool {
    // Control characters (newlines, escape sequences), the Unicode line and paragraph
    // separators, and the bidirectional controls that make a line read other than it is.
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

/// `s` made safe for a log or audit line: control characters escaped (`\n`, `\r`, `\t`, else
/// `\u{..}`), as are Unicode line separators and bidirectional controls, and cut after
/// [`MAX_LOGGED_CHARS`] characters with the number of bytes left out. The one helper for
/// every string that comes from a client or a token (`kid`, `alg`, `iss`, `sub`, tenant
/// names, error reasons quoting them). Borrowed when nothing needs changing.
pub fn loggable(s: &str) -> Cow<'_, str> {
    if s.len() <= MAX_LOGGED_CHARS && !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    use std::fmt::Write as _;
    let mut out = String::with_capacity(s.len().min(MAX_LOGGED_CHARS * 2) + 24);
    for (n, (i, c)) in s.char_indices().enumerate() {
        if n == MAX_LOGGED_CHARS {
            let _ = write!(out, "…(+{} bytes)", s.len() - i);
            break;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

fn clean(field: &mut String) {
    if let Cow::Owned(s) = loggable(field) {
        *field = s;
    }
}

/// Which grants are logged (denials always are).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum GrantAudit {
    /// No grants (the default: one line per request would dwarf everything else).
    #[default]
    Off,
    /// One grant in `grant_sample_one_in`.
    Sampled,
    /// Every grant.
    All,
}

/// The `[audit]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// Where lines go: a file path, or `-` for stdout. Absent: no audit log.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// Size at which the file is rotated. Default 104857600 (100 MiB).
    pub max_file_bytes: u64,
    /// Rotated files kept besides the live one (`audit.log.1` .. `.N`, oldest deleted).
    /// Default 5.
    pub max_files: u32,
    /// Events waiting for the writer thread; past it events are dropped and counted in
    /// `felix_audit_dropped_total`, so a slow disk never stalls a request. Default 65536.
    pub channel_capacity: usize,
    /// Which grants are logged: `off` (default), `sampled` or `all`.
    pub grants: GrantAudit,
    /// With `grants = "sampled"`: one grant line per this many grants. Default 100.
    pub grant_sample_one_in: u64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            output: None,
            max_file_bytes: 100 * 1024 * 1024,
            max_files: 5,
            channel_capacity: 65_536,
            grants: GrantAudit::Off,
            grant_sample_one_in: 100,
        }
    }
}

/// One audit line.
#[derive(Debug, Clone, Serialize, Default)]
pub struct AuditEvent {
    /// RFC 3339 UTC time with milliseconds.
    pub ts: String,
    /// `conn_open`, `conn_close`, `auth`, `authz`, `quota` or `admin`.
    pub event: &'static str,
    /// Tenant named by the request (or authenticated, for connection events).
    pub tenant: Option<String>,
    /// Subject of the principal, if known.
    pub sub: Option<String>,
    /// `publish`, `subscribe`, `consume`, `cache.read`, `cache.write`, `admin`, `connect`, ...
    pub action: Option<String>,
    /// `namespace/name` (or the admin operation's target).
    pub resource: Option<String>,
    /// `ok`, `denied` or `error`.
    pub outcome: &'static str,
    /// Stable error code of a denial or error.
    pub code: Option<&'static str>,
    /// Why, for humans.
    pub reason: Option<String>,
    /// Connection id (QUIC stable id, unique within the broker process).
    pub conn: Option<u64>,
    /// Peer address (connection events).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// mTLS identity of the peer (URI SAN, else first DNS SAN), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// Every tenant the connection authenticated for (`conn_close`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenants: Option<Vec<String>>,
    /// `reauth`: the id of the key that signed the presented token (as the token's header
    /// says: unverified when the `reauth` was refused).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
}

impl AuditEvent {
    /// Passes every string field through [`loggable`].
    fn sanitize(&mut self) {
        let fields = [
            &mut self.tenant,
            &mut self.sub,
            &mut self.action,
            &mut self.resource,
            &mut self.reason,
            &mut self.peer,
            &mut self.identity,
            &mut self.kid,
        ];
        for f in fields.into_iter().flatten() {
            clean(f);
        }
        for t in self.tenants.iter_mut().flatten() {
            clean(t);
        }
    }
}

/// Who made a request: the stream's principal and its connection.
#[derive(Debug, Clone, Copy)]
pub struct Who<'a> {
    /// Authenticated tenant.
    pub tenant: &'a str,
    /// Subject.
    pub sub: Option<&'a str>,
    /// Connection id.
    pub conn: u64,
}

/// The audit log of a broker: cheap to call when off, never blocking when on.
pub struct AuditLog {
    tx: Option<SyncSender<AuditEvent>>,
    grants: GrantAudit,
    one_in: u64,
    grants_seen: AtomicU64,
    dropped: AtomicU64,
    written: std::sync::Arc<AtomicU64>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("enabled", &self.enabled())
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

/// The audit log could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("audit log {path}: {source}")]
pub struct AuditError {
    path: String,
    #[source]
    source: io::Error,
}

impl AuditLog {
    /// No audit log.
    pub fn disabled() -> Self {
        Self {
            tx: None,
            grants: GrantAudit::Off,
            one_in: 1,
            grants_seen: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            written: Default::default(),
        }
    }

    /// Opens the configured output (creating the file 0600) and starts the writer thread.
    pub fn from_config(cfg: &AuditConfig) -> Result<Self, AuditError> {
        let Some(output) = &cfg.output else {
            return Ok(Self::disabled());
        };
        let sink = if output == "-" {
            Sink::Stdout(io::stdout())
        } else {
            let path = PathBuf::from(output);
            let err = |source| AuditError {
                path: output.clone(),
                source,
            };
            let file = open_private(&path).map_err(err)?;
            let size = file.metadata().map_err(err)?.len();
            Sink::File(RotatingFile {
                file: BufWriter::new(file),
                size,
                path,
                max_bytes: cfg.max_file_bytes.max(1),
                max_files: cfg.max_files,
            })
        };
        let (tx, rx) = sync_channel(cfg.channel_capacity.max(1));
        let written = std::sync::Arc::new(AtomicU64::new(0));
        let w = written.clone();
        std::thread::Builder::new()
            .name("felix-audit".into())
            .spawn(move || writer(rx, sink, w))
            .map_err(|source| AuditError {
                path: output.clone(),
                source,
            })?;
        Ok(Self {
            tx: Some(tx),
            grants: cfg.grants,
            one_in: cfg.grant_sample_one_in.max(1),
            grants_seen: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            written,
        })
    }

    /// Whether anything is logged.
    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Events dropped because the channel was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Lines written so far.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Queues `e` (stamped now) without waiting; drops and counts it when the channel is full.
    pub fn emit(&self, mut e: AuditEvent) {
        let Some(tx) = &self.tx else { return };
        e.ts = rfc3339(SystemTime::now());
        e.sanitize();
        match tx.try_send(e) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// A refused request: `forbidden` (`authz`), `quota_exceeded` (`quota`) or another code.
    pub fn denied(&self, who: Who<'_>, action: &str, resource: &str, err: &BrokerError) {
        if !self.enabled() {
            return;
        }
        let event = match err.code {
            felix_wire::ErrorCode::QuotaExceeded => "quota",
            felix_wire::ErrorCode::Unauthorized => "auth",
            _ => "authz",
        };
        self.emit(AuditEvent {
            event,
            tenant: Some(who.tenant.to_owned()),
            sub: who.sub.map(str::to_owned),
            action: Some(action.to_owned()),
            resource: Some(resource.to_owned()),
            outcome: "denied",
            code: Some(err.code.as_str()),
            reason: Some(err.message.clone()),
            conn: Some(who.conn),
            ..AuditEvent::default()
        });
    }

    /// A refused `auth` (the token itself is never passed here).
    pub fn auth_failed(&self, conn: u64, tenant: &str, err: &BrokerError) {
        if !self.enabled() {
            return;
        }
        self.emit(AuditEvent {
            event: "auth",
            tenant: Some(tenant.to_owned()),
            action: Some("connect".into()),
            outcome: "denied",
            code: Some(err.code.as_str()),
            reason: Some(err.message.clone()),
            conn: Some(conn),
            ..AuditEvent::default()
        });
    }

    /// A `reauth` and how it ended: `ok`, or `denied` with the code (`unauthorized`,
    /// `overloaded` past `limits.max_reauths_per_minute`, `quota_exceeded`). `kid` is the
    /// presented token's key id; the token itself is never passed here.
    pub fn reauth(&self, who: Who<'_>, kid: Option<&str>, result: &Result<(), BrokerError>) {
        if !self.enabled() {
            return;
        }
        let err = result.as_ref().err();
        self.emit(AuditEvent {
            event: "reauth",
            tenant: Some(who.tenant.to_owned()),
            sub: who.sub.map(str::to_owned),
            action: Some("reauth".into()),
            outcome: if err.is_some() { "denied" } else { "ok" },
            code: err.map(|e| e.code.as_str()),
            reason: err.map(|e| e.message.clone()),
            conn: Some(who.conn),
            kid: kid.map(str::to_owned),
            ..AuditEvent::default()
        });
    }

    /// Whether this grant is to be logged (`audit.grants`: never, one in N, always). Asked
    /// before building the line, so that grants cost one branch when they are not logged.
    pub fn sample_grant(&self) -> bool {
        match self.grants {
            GrantAudit::Off => false,
            GrantAudit::All => self.enabled(),
            GrantAudit::Sampled => {
                self.enabled()
                    && self
                        .grants_seen
                        .fetch_add(1, Ordering::Relaxed)
                        .is_multiple_of(self.one_in)
            }
        }
    }

    /// A granted request (call when [`AuditLog::sample_grant`] said so).
    pub fn granted(&self, who: Who<'_>, action: &str, resource: &str) {
        self.emit(AuditEvent {
            event: "authz",
            tenant: Some(who.tenant.to_owned()),
            sub: who.sub.map(str::to_owned),
            action: Some(action.to_owned()),
            resource: Some(resource.to_owned()),
            outcome: "ok",
            conn: Some(who.conn),
            ..AuditEvent::default()
        });
    }

    /// An admin change (`stream_create`, `cache_create`, `group_create`) and how it ended.
    pub fn admin<T>(
        &self,
        who: Who<'_>,
        operation: &str,
        resource: &str,
        result: &Result<T, BrokerError>,
    ) {
        if !self.enabled() {
            return;
        }
        // Denials by authorization are logged where they happen; log the change otherwise.
        if let Err(e) = result {
            if matches!(
                e.code,
                felix_wire::ErrorCode::Forbidden | felix_wire::ErrorCode::Unauthorized
            ) {
                return;
            }
        }
        let err = result.as_ref().err();
        self.emit(AuditEvent {
            event: "admin",
            tenant: Some(who.tenant.to_owned()),
            sub: who.sub.map(str::to_owned),
            action: Some(operation.to_owned()),
            resource: Some(resource.to_owned()),
            outcome: if err.is_some() { "error" } else { "ok" },
            code: err.map(|e| e.code.as_str()),
            reason: err.map(|e| e.message.clone()),
            conn: Some(who.conn),
            ..AuditEvent::default()
        });
    }

    /// A connection opened (after the TLS handshake) or closed. `principals` are the
    /// (tenant, subject) pairs it authenticated as, first one first.
    pub fn connection(
        &self,
        open: bool,
        conn: u64,
        peer: std::net::SocketAddr,
        identity: Option<&str>,
        principals: &[(String, Option<String>)],
    ) {
        if !self.enabled() {
            return;
        }
        let first = principals.first();
        self.emit(AuditEvent {
            event: if open { "conn_open" } else { "conn_close" },
            tenant: first.map(|p| p.0.clone()),
            sub: first.and_then(|p| p.1.clone()),
            action: Some(if open { "connect" } else { "disconnect" }.into()),
            outcome: "ok",
            conn: Some(conn),
            peer: Some(peer.to_string()),
            identity: identity.map(str::to_owned),
            tenants: (!open).then(|| principals.iter().map(|p| p.0.clone()).collect()),
            ..AuditEvent::default()
        });
    }

    /// A connection refused before it was served: its TLS handshake failed (mTLS: no or an
    /// untrusted client certificate; `code` is `None`) or `limits.max_connections` was
    /// reached (`overloaded`).
    pub fn connection_refused(
        &self,
        peer: std::net::SocketAddr,
        code: Option<felix_wire::ErrorCode>,
        reason: &str,
    ) {
        if !self.enabled() {
            return;
        }
        self.emit(AuditEvent {
            event: "conn_open",
            action: Some("connect".into()),
            outcome: "denied",
            code: code.map(|c| c.as_str()),
            reason: Some(reason.to_owned()),
            peer: Some(peer.to_string()),
            ..AuditEvent::default()
        });
    }

    /// Appends the audit metrics.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write as _;
        let _ = writeln!(
            out,
            "# HELP felix_audit_dropped_total Audit events dropped because the audit channel was full.\n# TYPE felix_audit_dropped_total counter\nfelix_audit_dropped_total {}\n# HELP felix_audit_written_total Audit lines written.\n# TYPE felix_audit_written_total counter\nfelix_audit_written_total {}",
            self.dropped(),
            self.written()
        );
    }
}

enum Sink {
    Stdout(io::Stdout),
    File(RotatingFile),
}

struct RotatingFile {
    file: BufWriter<File>,
    size: u64,
    path: PathBuf,
    max_bytes: u64,
    max_files: u32,
}

impl RotatingFile {
    fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        if self.size > 0 && self.size + line.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        self.file.write_all(line)?;
        self.size += line.len() as u64;
        Ok(())
    }

    /// `audit.log` -> `audit.log.1` -> ... -> `audit.log.N` (deleted past N).
    fn rotate(&mut self) -> io::Result<()> {
        self.file.flush()?;
        let numbered = |i: u32| {
            let mut p = self.path.clone().into_os_string();
            p.push(format!(".{i}"));
            PathBuf::from(p)
        };
        if self.max_files == 0 {
            std::fs::remove_file(&self.path)?;
        } else {
            let _ = std::fs::remove_file(numbered(self.max_files));
            for i in (1..self.max_files).rev() {
                let from = numbered(i);
                if from.exists() {
                    std::fs::rename(&from, numbered(i + 1))?;
                }
            }
            std::fs::rename(&self.path, numbered(1))?;
        }
        self.file = BufWriter::new(open_private(&self.path)?);
        self.size = 0;
        Ok(())
    }
}

/// Opens for appending, created 0600 (and tightened to 0600 if it already existed).
fn open_private(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let f = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok(f)
}

fn writer(rx: Receiver<AuditEvent>, mut sink: Sink, written: std::sync::Arc<AtomicU64>) {
    let mut line = Vec::with_capacity(512);
    let mut failed = false;
    // Block for the next event, then drain what is queued before flushing once.
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(e) = next {
            line.clear();
            if serde_json::to_writer(&mut line, &e).is_ok() {
                line.push(b'\n');
                let r = match &mut sink {
                    Sink::Stdout(s) => s.write_all(&line),
                    Sink::File(f) => f.write_line(&line),
                };
                match r {
                    Ok(()) => {
                        written.fetch_add(1, Ordering::Relaxed);
                        failed = false;
                    }
                    Err(err) if !failed => {
                        failed = true;
                        tracing::error!(error = %err, "audit log write failed");
                    }
                    Err(_) => {}
                }
            }
            next = rx.try_recv().ok();
        }
        let _ = match &mut sink {
            Sink::Stdout(s) => s.flush(),
            Sink::File(f) => f.file.flush(),
        };
    }
}

/// `2026-12-07T18:30:54.123Z`.
fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

#[cfg(test)]
mod tests;
