use super::*;
use std::time::Duration;

/// A log whose channel nobody drains: what a stalled disk looks like to the request path.
fn stalled(capacity: usize) -> (AuditLog, Receiver<AuditEvent>) {
    let (tx, rx) = sync_channel(capacity);
    let log = AuditLog {
        tx: Some(tx),
        ..AuditLog::disabled()
    };
    (log, rx)
}

#[test]
fn a_full_channel_drops_and_counts_instead_of_waiting() {
    let (log, rx) = stalled(2);
    let who = Who {
        tenant: "acme",
        sub: None,
        conn: 7,
    };
    let e = BrokerError::new(felix_wire::ErrorCode::Forbidden, "no");
    for _ in 0..5 {
        log.denied(who, "publish", "ns/s", &e); // returns at once even when full
    }
    assert_eq!(log.dropped(), 3);
    assert_eq!(rx.try_iter().count(), 2);
    let mut out = String::new();
    log.render(&mut out);
    assert!(out.contains("felix_audit_dropped_total 3"), "{out}");
}

#[test]
fn timestamps_are_rfc3339_utc() {
    let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_796_668_254_123);
    assert_eq!(rfc3339(t), "2026-12-07T18:30:54.123Z");
    assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
    let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
    assert_eq!(&rfc3339(leap)[..10], "2000-02-29");
}

#[test]
fn sampled_grants_log_one_in_n_and_off_logs_none() {
    let dir = std::env::temp_dir().join(format!("felix-audit-unit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let path = dir.join("a.log");
    let cfg = AuditConfig {
        output: Some(path.display().to_string()),
        grants: GrantAudit::Sampled,
        grant_sample_one_in: 10,
        ..AuditConfig::default()
    };
    let log = AuditLog::from_config(&cfg).unwrap();
    let who = Who {
        tenant: "acme",
        sub: Some("svc"),
        conn: 1,
    };
    for _ in 0..100 {
        if log.sample_grant() {
            log.granted(who, "publish", "ns/s");
        }
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while log.written() < 10 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(log.written(), 10);
    let off = AuditLog::disabled();
    assert!(!off.sample_grant());
    assert_eq!(off.written() + off.dropped(), 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_full_file_is_rotated_keeping_n_files() {
    let dir = std::env::temp_dir().join(format!("felix-audit-rot-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("audit.log");
    let mut f = RotatingFile {
        file: BufWriter::new(open_private(&path).unwrap()),
        size: 0,
        path: path.clone(),
        max_bytes: 100,
        max_files: 2,
    };
    for i in 0..10 {
        f.write_line(format!("{:059}\n", i).as_bytes()).unwrap(); // 60 bytes a line
    }
    f.file.flush().unwrap();
    let read = |p: &Path| std::fs::read_to_string(p).unwrap();
    // One line per file (two do not fit in 100 bytes); the two before kept, older gone.
    assert!(read(&path).starts_with("0000"), "{}", read(&path));
    assert!(read(&path).ends_with("9\n"));
    assert!(read(&dir.join("audit.log.1")).ends_with("8\n"));
    assert!(read(&dir.join("audit.log.2")).ends_with("7\n"));
    assert!(!dir.join("audit.log.3").exists());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn loggable_escapes_control_characters_and_caps_the_length() {
    assert!(matches!(loggable("k1"), Cow::Borrowed("k1")));
    assert_eq!(loggable("\n{\"forged\":1}"), "\\n{\"forged\":1}");
    assert_eq!(loggable("a\rb\tc\u{1b}[31m"), "a\\rb\\tc\\u{1b}[31m");
    assert_eq!(loggable("x\u{202e}y\u{2028}"), "x\\u{202e}y\\u{2028}");
    let long = "é".repeat(1_000);
    let out = loggable(&long);
    assert!(out.starts_with(&"é".repeat(MAX_LOGGED_CHARS)), "{out}");
    assert!(
        out.ends_with(&format!("…(+{} bytes)", 2 * (1_000 - MAX_LOGGED_CHARS))),
        "{out}"
    );
    assert!(!out.contains('\n'));
}

#[test]
fn every_string_field_of_an_event_is_made_loggable() {
    let (log, rx) = stalled(4);
    let who = Who {
        tenant: "acme",
        sub: Some("svc\n{\"forged\":1}"),
        conn: 1,
    };
    log.reauth(who, Some("\nkid"), &Ok(()));
    let e = rx.try_recv().unwrap();
    assert_eq!(e.sub.as_deref(), Some("svc\\n{\"forged\":1}"));
    assert_eq!(e.kid.as_deref(), Some("\\nkid"));
    let line = serde_json::to_string(&e).unwrap();
    assert!(line.contains("\"event\":\"reauth\""), "{line}");
    assert!(line.contains("\"outcome\":\"ok\""), "{line}");
}
