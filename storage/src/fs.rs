//! Every file access of the log goes through [`Fs`], so tests can crash it at any byte
//! (`crate::sim::SimFs`) and production uses [`RealFs`] (std + libc).

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::sync::Arc;

/// How a file is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Existing file, read only.
    Read,
    /// Existing file, read and write.
    ReadWrite,
    /// A new file (fails if it exists), read and write, created 0600.
    CreateNew,
}

/// A file system, as the log sees it.
pub trait Fs: Send + Sync + 'static {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn FsFile>>;
    /// Names (not paths) of the entries of a directory, in no particular order.
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>>;
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Makes the directory's entries (creates, renames, removes) durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// Bytes available to this process on the file system holding `path`.
    fn free_bytes(&self, path: &Path) -> io::Result<u64>;
    /// An exclusive lock on `path` (created if missing), held until the guard drops; fails at
    /// once if another process holds it.
    fn lock_exclusive(&self, path: &Path) -> io::Result<Box<dyn FsLock>>;
}

/// An open file. Positions are absolute; there is no cursor.
// `len` is a file's size (fallible, a syscall), not a collection's: no `is_empty` wanted.
#[allow(clippy::len_without_is_empty)]
pub trait FsFile: Send + Sync {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize>;
    /// May write fewer bytes than asked (callers loop).
    fn write_at(&self, buf: &[u8], pos: u64) -> io::Result<usize>;
    /// fdatasync: the bytes written so far survive power loss once this returns Ok.
    fn sync_data(&self) -> io::Result<()>;
    fn set_len(&self, len: u64) -> io::Result<()>;
    fn len(&self) -> io::Result<u64>;
    /// Evicts this file's clean cached pages, so later reads come from the device. Recovery
    /// calls it before trusting what it reads: after an fsync failed, Linux may keep pages it
    /// will never write, marked clean, and serve them (fsyncgate across a restart). Advisory.
    fn drop_cache(&self) -> io::Result<()> {
        Ok(())
    }
}

/// Held while a lock is held.
pub trait FsLock: Send + Sync {}

/// Reads exactly `buf.len()` bytes at `pos`, looping over short reads; `UnexpectedEof` if the
/// file ends first.
pub fn read_exact_at(file: &dyn FsFile, buf: &mut [u8], pos: u64) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], pos + done as u64) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Writes all of `buf` at `pos`, looping over short writes. On error a prefix may have been
/// written: the caller truncates back to `pos` (storage.md 11.2).
pub fn write_all_at(file: &dyn FsFile, buf: &[u8], pos: u64) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        match file.write_at(&buf[done..], pos + done as u64) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The file system of the machine: std for files, libc for what std lacks at the workspace's
/// rust-version (flock, statvfs).
#[derive(Debug, Default, Clone, Copy)]
pub struct RealFs;

impl RealFs {
    pub fn new() -> Arc<Self> {
        Arc::new(RealFs)
    }
}

struct RealFile(File);

impl FsFile for RealFile {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        self.0.read_at(buf, pos)
    }
    fn write_at(&self, buf: &[u8], pos: u64) -> io::Result<usize> {
        self.0.write_at(buf, pos)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
    fn drop_cache(&self) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        // SAFETY: a valid open descriptor; offset 0 and length 0 mean the whole file.
        let rc =
            unsafe { libc::posix_fadvise(self.0.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        Ok(())
    }
}

/// Holds the descriptor: the kernel releases the flock when it is closed (or the process dies).
struct RealLock(#[allow(dead_code)] File);

impl FsLock for RealLock {}

fn cstr(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path holds a NUL byte"))
}

impl Fs for RealFs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn FsFile>> {
        let mut o = OpenOptions::new();
        match mode {
            OpenMode::Read => o.read(true),
            OpenMode::ReadWrite => o.read(true).write(true),
            // 0600: records are tenants' data; nobody else on the machine reads them.
            OpenMode::CreateNew => o.read(true).write(true).create_new(true).mode(0o600),
        };
        Ok(Box::new(RealFile(o.open(path)?)))
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for e in std::fs::read_dir(path)? {
            // A name that is not UTF-8 was not written by us: skipped, like any stray file
            // whose name does not parse.
            if let Ok(name) = e?.file_name().into_string() {
                names.push(name);
            }
        }
        Ok(names)
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir_all(path)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        // fsync on a directory descriptor makes its entries durable (creates, renames, unlinks).
        File::open(path)?.sync_all()
    }

    fn free_bytes(&self, path: &Path) -> io::Result<u64> {
        let c = cstr(path)?;
        let mut st = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
        // SAFETY: `c` is a valid NUL-terminated path and `st` a writable statvfs.
        let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: statvfs returned 0, so it filled `st`.
        let st = unsafe { st.assume_init() };
        // f_bavail: blocks available to unprivileged processes (not f_bfree, which counts the
        // root reserve the broker cannot use).
        // The field types differ between platforms (u32 on some 32-bit targets).
        #[allow(clippy::unnecessary_cast)]
        Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
    }

    fn lock_exclusive(&self, path: &Path) -> io::Result<Box<dyn FsLock>> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)?;
        loop {
            // SAFETY: flock on a descriptor we own.
            let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc == 0 {
                return Ok(Box::new(RealLock(f)));
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                // EWOULDBLOCK (kind WouldBlock): another process holds it.
                return Err(e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn real_fs_files_round_trip_and_create_new_is_0600() {
        let dir = tempfile::tempdir().unwrap();
        let fs = RealFs::new();
        let p = dir.path().join("a/b");
        fs.create_dir_all(&p).unwrap();
        let f = p.join("x.seg");
        let h = fs.open(&f, OpenMode::CreateNew).unwrap();
        write_all_at(&*h, b"hello world", 0).unwrap();
        h.sync_data().unwrap();
        assert_eq!(h.len().unwrap(), 11);
        let mut buf = [0u8; 5];
        read_exact_at(&*h, &mut buf, 6).unwrap();
        assert_eq!(&buf, b"world");
        assert_eq!(
            read_exact_at(&*h, &mut buf, 8).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
        h.set_len(5).unwrap();
        assert_eq!(h.len().unwrap(), 5);
        let mode = std::fs::metadata(&f).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            fs.open(&f, OpenMode::CreateNew).err().unwrap().kind(),
            io::ErrorKind::AlreadyExists
        );
        let ro = fs.open(&f, OpenMode::Read).unwrap();
        assert!(ro.write_at(b"x", 0).is_err());
        fs.sync_dir(&p).unwrap();
        assert_eq!(fs.list_dir(&p).unwrap(), vec!["x.seg".to_string()]);
        fs.rename(&f, &p.join("y.seg")).unwrap();
        assert_eq!(fs.list_dir(&p).unwrap(), vec!["y.seg".to_string()]);
        fs.remove_file(&p.join("y.seg")).unwrap();
        assert!(fs.list_dir(&p).unwrap().is_empty());
        assert!(fs.free_bytes(dir.path()).unwrap() > 0);
        fs.remove_dir_all(&dir.path().join("a")).unwrap();
        assert!(fs.list_dir(dir.path()).unwrap().is_empty());
    }

    #[test]
    fn real_fs_lock_is_exclusive_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let fs = RealFs::new();
        let p = dir.path().join("LOCK");
        let held = fs.lock_exclusive(&p).unwrap();
        // flock locks belong to the open file description, so a second open in the same
        // process conflicts exactly as another process would.
        let again = fs.lock_exclusive(&p).err().expect("second lock must fail");
        assert_eq!(again.kind(), io::ErrorKind::WouldBlock);
        drop(held);
        fs.lock_exclusive(&p).expect("free after drop");
    }
}
