//! The development-certificate directory: where it is by default, what makes it safe to use,
//! and how files are written into it.
//!
//! A dev broker writes its CA (public) and its leaf certificate and key (secret) here, and
//! reuses them on the next start. In a directory other users can write to, a planted key or CA
//! would be reused silently, so the directory must be the user's own and writable only by it;
//! the default is per user (`$TMPDIR/felix-dev-<uid>`, created 0700, as tmux and ssh-agent do
//! with theirs), and the key is created with mode 0600 from its first byte (never 0644 for a
//! moment before a chmod).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::TransportError;

/// The default dev directory: `$TMPDIR/felix-dev-<uid>` (`/tmp/felix-dev-0` for root). The
/// broker writes `ca.pem` there and clients read it from there unless told otherwise.
pub fn default_dev_dir() -> PathBuf {
    std::env::temp_dir().join(format!("felix-dev-{}", effective_uid()))
}

/// `ca.pem` in [`default_dev_dir`]: the dev broker's CA that clients verify it with.
pub fn default_dev_ca_path() -> PathBuf {
    default_dev_dir().join("ca.pem")
}

fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Creates `dir` (mode 0700) if missing, then refuses it unless it is a real directory (not a
/// link) owned by this user and not writable by group or others.
pub fn prepare(dir: &Path) -> Result<(), TransportError> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    let err = |e: std::io::Error| TransportError::cert(dir, e);
    match fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(err)?;
        }
        Err(e) => return Err(err(e)),
        Ok(_) => {}
    }
    let meta = fs::symlink_metadata(dir).map_err(err)?;
    let refuse = |why: String| {
        TransportError::cert(
            dir,
            format!("{why}; refusing to keep dev keys there (remove it, or choose another --dev-ca-path)"),
        )
    };
    if !meta.is_dir() {
        return Err(refuse("not a directory (or a symbolic link)".into()));
    }
    if meta.uid() != effective_uid() {
        return Err(refuse(format!(
            "owned by uid {}, not by this user (uid {})",
            meta.uid(),
            effective_uid()
        )));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o022 != 0 {
        return Err(refuse(format!("writable by other users (mode {mode:o})")));
    }
    Ok(())
}

/// Whether a secret file found in the dev directory may be reused: a regular file (not a
/// link) owned by this user and readable by no one else.
pub fn secret_file_is_private(path: &Path) -> bool {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    fs::symlink_metadata(path).is_ok_and(|m| {
        m.is_file() && m.uid() == effective_uid() && m.permissions().mode() & 0o077 == 0
    })
}

/// Writes `contents` to a new temporary file created with `mode` (O_EXCL: never an existing
/// file, never a link), syncs it and renames it over `path`, so a reader never sees a
/// half-written file and a secret is never readable by others, not even for a moment.
pub fn write_atomically(path: &Path, contents: &[u8], mode: u32) -> Result<(), TransportError> {
    use std::os::unix::fs::OpenOptionsExt;
    let io_err = |e: std::io::Error| TransportError::cert(path, e);
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        if !parent.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .create(parent)
                .map_err(io_err)?;
        }
    }
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(format!(".tmp{}-{}", std::process::id(), rand_suffix()));
    let tmp = PathBuf::from(tmp_name);
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(io_err)
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("felix-devdir-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn a_missing_directory_is_created_private_and_a_shared_one_is_refused() {
        let d = scratch("create");
        prepare(&d.join("nested")).unwrap();
        let mode = fs::metadata(d.join("nested")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        fs::set_permissions(d.join("nested"), fs::Permissions::from_mode(0o777)).unwrap();
        let e = prepare(&d.join("nested")).unwrap_err().to_string();
        assert!(e.contains("writable by other users"), "{e}");
        fs::set_permissions(d.join("nested"), fs::Permissions::from_mode(0o755)).unwrap();
        prepare(&d.join("nested")).expect("0755 of our own is fine");
        std::os::unix::fs::symlink(d.join("nested"), d.join("link")).unwrap();
        let e = prepare(&d.join("link")).unwrap_err().to_string();
        assert!(e.contains("symbolic link"), "{e}");
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn secrets_are_created_0600_and_only_private_ones_are_reused() {
        let d = scratch("secret");
        prepare(&d).unwrap();
        let key = d.join("k");
        write_atomically(&key, b"secret", 0o600).unwrap();
        assert_eq!(
            fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(secret_file_is_private(&key));
        fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(!secret_file_is_private(&key), "readable by others");
        std::os::unix::fs::symlink(&key, d.join("l")).unwrap();
        assert!(!secret_file_is_private(&d.join("l")), "a link");
        // Rewriting replaces the file (and its loose mode) atomically.
        write_atomically(&key, b"new", 0o600).unwrap();
        assert_eq!(fs::read(&key).unwrap(), b"new");
        assert!(secret_file_is_private(&key));
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn the_default_directory_is_per_user() {
        let d = default_dev_dir();
        let name = d.file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(name, format!("felix-dev-{}", effective_uid()));
        assert_eq!(default_dev_ca_path(), d.join("ca.pem"));
    }

    #[test]
    fn the_dev_broker_refuses_a_shared_directory_and_never_reuses_a_loose_key() {
        let d = scratch("broker");
        fs::create_dir_all(&d).unwrap();
        fs::set_permissions(&d, fs::Permissions::from_mode(0o1777)).unwrap();
        let Err(e) = crate::ServerTls::generate_dev(&d.join("ca.pem")) else {
            panic!("a world-writable directory (like /tmp itself) is refused");
        };
        let e = e.to_string();
        assert!(e.contains("writable by other users"), "{e}");
        fs::set_permissions(&d, fs::Permissions::from_mode(0o700)).unwrap();
        crate::ServerTls::generate_dev(&d.join("ca.pem")).unwrap();
        let key = d.join("dev-server.key");
        assert_eq!(
            fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let first = fs::read(&key).unwrap();
        crate::ServerTls::generate_dev(&d.join("ca.pem")).unwrap();
        assert_eq!(fs::read(&key).unwrap(), first, "a private key is reused");
        // A key someone loosened (or planted readable) is replaced, not reused.
        fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
        crate::ServerTls::generate_dev(&d.join("ca.pem")).unwrap();
        assert_ne!(fs::read(&key).unwrap(), first);
        assert!(secret_file_is_private(&key));
        fs::remove_dir_all(&d).unwrap();
    }
}
