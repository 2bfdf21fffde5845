//! Locks with no process-wide state, for the client and its bindings.
//!
//! `parking_lot` keeps every parked thread in one global hash table. A process that forks while
//! one of its threads is parked (the runtime thread of a binding, waiting for work) hands the
//! child a table that lists a thread the child does not have, sometimes with a bucket lock
//! held for ever: the child's next contended lock spins or hangs, even on a lock it created
//! after the fork. Python programs fork (multiprocessing, servers with pre-fork workers), and a
//! forked child must be able to make a fresh client, so the client side uses the standard
//! library's locks, which live entirely in their own memory (a futex word on Linux).
//!
//! These wrappers only give them `parking_lot`'s shape: no poisoning (a panic while holding a
//! lock leaves data that each user keeps consistent anyway; the panic itself is reported
//! where it happens) and `wait_for`/`wait_until` on a guard borrowed mutably.

use std::ops::{Deref, DerefMut};
use std::sync::{PoisonError, TryLockError};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

/// A mutual-exclusion lock (std's, without poisoning).
#[derive(Debug, Default)]
pub struct Mutex<T: ?Sized>(std::sync::Mutex<T>);

/// Holds a [`Mutex`] until dropped.
pub struct MutexGuard<'a, T: ?Sized>(Option<std::sync::MutexGuard<'a, T>>);

impl<T> Mutex<T> {
    /// A new unlocked mutex holding `value`.
    pub const fn new(value: T) -> Self {
        Mutex(std::sync::Mutex::new(value))
    }
}

impl<T: ?Sized> Mutex<T> {
    /// Blocks until the lock is held.
    pub fn lock(&self) -> MutexGuard<'_, T> {
        MutexGuard(Some(self.0.lock().unwrap_or_else(PoisonError::into_inner)))
    }

    /// Takes the lock if nobody holds it.
    pub fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        match self.0.try_lock() {
            Ok(g) => Some(MutexGuard(Some(g))),
            Err(TryLockError::Poisoned(p)) => Some(MutexGuard(Some(p.into_inner()))),
            Err(TryLockError::WouldBlock) => None,
        }
    }
}

impl<T: ?Sized> Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // Only `Condvar` takes the inner guard out, and puts it back before returning.
        self.0.as_deref().expect("guard present")
    }
}

impl<T: ?Sized> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.0.as_deref_mut().expect("guard present")
    }
}

/// Whether a timed wait returned because its time ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitTimeoutResult(bool);

impl WaitTimeoutResult {
    /// True when the wait ended by timing out.
    pub fn timed_out(self) -> bool {
        self.0
    }
}

/// A condition variable used with [`Mutex`].
#[derive(Debug, Default)]
pub struct Condvar(std::sync::Condvar);

impl Condvar {
    /// A new condition variable.
    pub const fn new() -> Self {
        Condvar(std::sync::Condvar::new())
    }

    /// Wakes one waiter.
    pub fn notify_one(&self) {
        self.0.notify_one();
    }

    /// Wakes every waiter.
    pub fn notify_all(&self) {
        self.0.notify_all();
    }

    /// Releases the lock and waits for a notification (or a spurious wake-up).
    pub fn wait<T>(&self, guard: &mut MutexGuard<'_, T>) {
        let g = guard.0.take().expect("guard present");
        guard.0 = Some(self.0.wait(g).unwrap_or_else(PoisonError::into_inner));
    }

    /// As [`Condvar::wait`], for at most `timeout`.
    pub fn wait_for<T>(
        &self,
        guard: &mut MutexGuard<'_, T>,
        timeout: Duration,
    ) -> WaitTimeoutResult {
        let g = guard.0.take().expect("guard present");
        let (g, r) = self
            .0
            .wait_timeout(g, timeout)
            .unwrap_or_else(PoisonError::into_inner);
        guard.0 = Some(g);
        WaitTimeoutResult(r.timed_out())
    }

    /// As [`Condvar::wait`], until `deadline`.
    pub fn wait_until<T>(
        &self,
        guard: &mut MutexGuard<'_, T>,
        deadline: Instant,
    ) -> WaitTimeoutResult {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return WaitTimeoutResult(true);
        }
        self.wait_for(guard, left)
    }
}

/// A reader-writer lock (std's, without poisoning).
#[derive(Debug, Default)]
pub struct RwLock<T: ?Sized>(std::sync::RwLock<T>);

impl<T> RwLock<T> {
    /// A new unlocked lock holding `value`.
    pub const fn new(value: T) -> Self {
        RwLock(std::sync::RwLock::new(value))
    }
}

impl<T: ?Sized> RwLock<T> {
    /// Shared access.
    pub fn read(&self) -> std::sync::RwLockReadGuard<'_, T> {
        self.0.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Exclusive access.
    pub fn write(&self) -> std::sync::RwLockWriteGuard<'_, T> {
        self.0.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A lock that the thread holding it may take again (for callbacks that call back in).
/// Gives shared access only, like `parking_lot::ReentrantMutex`: use a `Cell` inside.
#[derive(Debug, Default)]
pub struct ReentrantMutex<T> {
    owner: Mutex<Option<(ThreadId, usize)>>,
    free: Condvar,
    value: T,
}

// SAFETY: `value` is reachable only through a guard, and guards exist on one thread at a time
// (the owner's), so `T: Send` is enough for the lock to be shared, as for a `Mutex`.
unsafe impl<T: Send> Sync for ReentrantMutex<T> {}

/// Holds a [`ReentrantMutex`] until dropped.
pub struct ReentrantMutexGuard<'a, T>(&'a ReentrantMutex<T>);

impl<T> ReentrantMutex<T> {
    /// A new unlocked lock holding `value`.
    pub fn new(value: T) -> Self {
        ReentrantMutex {
            owner: Mutex::new(None),
            free: Condvar::new(),
            value,
        }
    }

    /// Blocks until this thread holds the lock (at once if it already does).
    pub fn lock(&self) -> ReentrantMutexGuard<'_, T> {
        let me = std::thread::current().id();
        let mut o = self.owner.lock();
        loop {
            match &mut *o {
                None => {
                    *o = Some((me, 1));
                    break;
                }
                Some((t, depth)) if *t == me => {
                    *depth += 1;
                    break;
                }
                Some(_) => self.free.wait(&mut o),
            }
        }
        ReentrantMutexGuard(self)
    }
}

impl<T> Deref for ReentrantMutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0.value
    }
}

impl<T> Drop for ReentrantMutexGuard<'_, T> {
    fn drop(&mut self) {
        let mut o = self.0.owner.lock();
        if let Some((_, depth)) = &mut *o {
            *depth -= 1;
            if *depth == 0 {
                *o = None;
                self.0.free.notify_one();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::sync::Arc;

    #[test]
    fn condvar_wait_for_times_out_and_keeps_the_guard() {
        let m = Mutex::new(5);
        let cv = Condvar::new();
        let mut g = m.lock();
        assert!(cv.wait_for(&mut g, Duration::from_millis(1)).timed_out());
        *g += 1;
        drop(g);
        assert_eq!(*m.lock(), 6);
        assert!(m.try_lock().is_some());
    }

    #[test]
    fn condvar_wakes_a_waiter() {
        let s = Arc::new((Mutex::new(false), Condvar::new()));
        let s2 = s.clone();
        let t = std::thread::spawn(move || {
            *s2.0.lock() = true;
            s2.1.notify_all();
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut g = s.0.lock();
        while !*g {
            assert!(!s.1.wait_until(&mut g, deadline).timed_out(), "no wake-up");
        }
        t.join().unwrap();
    }

    #[test]
    fn reentrant_mutex_nests_on_one_thread_and_excludes_others() {
        let m = Arc::new(ReentrantMutex::new(Cell::new(0)));
        let outer = m.lock();
        let inner = m.lock();
        inner.set(1);
        drop(inner);
        let m2 = m.clone();
        let t = std::thread::spawn(move || {
            let g = m2.lock();
            g.get()
        });
        outer.set(2);
        drop(outer);
        assert_eq!(
            t.join().unwrap(),
            2,
            "the other thread got the lock before it was free"
        );
    }

    #[test]
    fn a_panic_while_locked_does_not_poison() {
        let m = Arc::new(Mutex::new(1));
        let m2 = m.clone();
        let _ = std::thread::spawn(move || {
            let _g = m2.lock();
            panic!("while holding the lock");
        })
        .join();
        assert_eq!(*m.lock(), 1);
    }
}
