//! Every file access of the log goes through [`Fs`], so tests can crash it at any byte
//! ([`crate::sim::SimFs`]) and production uses [`RealFs`] (std + libc). Track A owns this file:
//! RealFs (flock, statvfs, fdatasync) is still to be written; the trait is the contract.

use std::io;
use std::path::Path;

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
pub trait FsFile: Send + Sync {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize>;
    /// May write fewer bytes than asked (callers loop).
    fn write_at(&self, buf: &[u8], pos: u64) -> io::Result<usize>;
    /// fdatasync: the bytes written so far survive power loss once this returns Ok.
    fn sync_data(&self) -> io::Result<()>;
    fn set_len(&self, len: u64) -> io::Result<()>;
    fn len(&self) -> io::Result<u64>;
}

/// Held while a lock is held.
pub trait FsLock: Send + Sync {}
