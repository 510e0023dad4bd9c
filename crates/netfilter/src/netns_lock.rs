//! A per-network-namespace lock serialising our own read-check-write of state that
//! several operations share (the `CNI-HOSTPORT-*` chains and their hook jumps, and any
//! other "create it if it is missing" rule), so that no two plugin processes decide at
//! once that a shared object is missing and both create it (a duplicate jump) or one
//! re-declares (flushes) what the other just filled.
//!
//! The lock is an exclusive `flock(2)` on the namespace itself: the nsfs file
//! `/proc/thread-self/ns/net` of the calling thread. Every open of a namespace (through
//! `/proc/<pid>/ns/net`, a `/run/netns/<name>` bind mount, or an inherited fd) reaches
//! the same inode while any of them is open, so the lock is identified by the
//! namespace's dev+inode without a lock file to create, find a directory for, or
//! clean up (nothing is left under `/run` for namespaces that come and go), and it goes
//! away with the namespace. Like every `flock`, the kernel drops it when the holder
//! exits, so a SIGKILLed plugin leaves nothing held.
//!
//! Waiting is bounded ([`WAIT`], like the xtables and IPAM lock waits); running out is
//! [`Error::NetnsLockTimeout`], which [`Error::is_lock_timeout`] reports, so plugins
//! answer CNI code 11 ("try again later").
//!
//! Use it only around the slow, rare path (a shared object is missing or must be
//! re-read and compared); the common path of an operation should assert the shared
//! objects it relies on in its own atomic commit instead (see
//! [`crate::iptables::try_restore`]) and take no lock. The lock is per open file
//! description, not reentrant: a second [`NetnsLock::acquire`] in the same process while
//! the first guard lives waits for it (and times out).
//!
//! ```no_run
//! use cni_netfilter::netns_lock::NetnsLock;
//! # fn ensure_shared_rule() -> cni_netfilter::Result<()> { Ok(()) }
//! # fn main() -> cni_netfilter::Result<()> {
//! let _guard = NetnsLock::acquire("ensuring the shared filter rule")?;
//! ensure_shared_rule()?; // read, compare, write: no other plugin process does it now
//! # Ok(()) }
//! ```

use std::fs::{File, TryLockError};
use std::os::unix::fs::MetadataExt;
use std::thread;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// How long [`NetnsLock::acquire`] waits for the lock (the xtables lock wait,
/// [`crate::iptables::LOCK_WAIT_SECS`]).
pub const WAIT: Duration = Duration::from_secs(crate::iptables::LOCK_WAIT_SECS as u64);

/// The calling thread's network namespace (the thread, not the process: a plugin may
/// have moved one thread into another namespace).
const OWN_NETNS: &str = "/proc/thread-self/ns/net";

/// Longest sleep between two attempts.
const MAX_POLL: Duration = Duration::from_millis(5);

/// The held lock of one network namespace; released when dropped (or when the process
/// exits).
#[derive(Debug)]
pub struct NetnsLock {
    _file: File,
    waited: Duration,
    contended: bool,
}

impl NetnsLock {
    /// Locks the calling thread's network namespace, waiting at most [`WAIT`]. `op`
    /// names what the lock protects, for the timeout error.
    ///
    /// # Errors
    /// [`Error::NetnsLockTimeout`] when another process holds it past the wait;
    /// [`Error::NetnsLock`] when the namespace file cannot be opened or locked.
    pub fn acquire(op: &str) -> Result<NetnsLock> {
        Self::acquire_within(op, WAIT)
    }

    /// Like [`NetnsLock::acquire`] with a wait of `wait`.
    ///
    /// # Errors
    /// As [`NetnsLock::acquire`].
    pub fn acquire_within(op: &str, wait: Duration) -> Result<NetnsLock> {
        let io = |what: &str, source: std::io::Error| Error::NetnsLock {
            op: format!("{what} {OWN_NETNS} while {op}"),
            source,
        };
        let file = File::open(OWN_NETNS).map_err(|e| io("opening", e))?;
        let started = Instant::now();
        let mut pause = Duration::from_micros(100);
        let mut contended = false;
        loop {
            match file.try_lock() {
                Ok(()) => {
                    return Ok(NetnsLock {
                        _file: file,
                        waited: started.elapsed(),
                        contended,
                    });
                }
                Err(TryLockError::WouldBlock) => {
                    contended = true;
                    let waited = started.elapsed();
                    if waited >= wait {
                        let netns = file
                            .metadata()
                            .map(|m| format!("net:[{}] (dev {})", m.ino(), m.dev()))
                            .unwrap_or_else(|_| OWN_NETNS.to_owned());
                        return Err(Error::NetnsLockTimeout {
                            netns,
                            op: op.to_owned(),
                            waited,
                        });
                    }
                    thread::sleep(pause.min(wait - waited));
                    pause = (pause * 2).min(MAX_POLL);
                }
                Err(TryLockError::Error(e)) => return Err(io("locking", e)),
            }
        }
    }

    /// How long the acquisition waited.
    pub fn waited(&self) -> Duration {
        self.waited
    }

    /// Whether another process held the lock when we asked for it: it may just have
    /// created what we were about to create, so a cheap re-check is worth it.
    pub fn was_contended(&self) -> bool {
        self.contended
    }
}

/// Runs `f` while holding the calling thread's network-namespace lock ([`WAIT`]).
///
/// # Errors
/// [`Error::NetnsLockTimeout`], or `f`'s error.
pub fn with_netns_lock<T>(op: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let _guard = NetnsLock::acquire(op)?;
    f()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Mutex, MutexGuard};

    /// The tests share the test process's namespace, hence its lock: one at a time.
    static SERIAL: Mutex<()> = Mutex::new(());

    fn serial() -> MutexGuard<'static, ()> {
        SERIAL
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    #[test]
    fn second_holder_times_out_with_a_lock_timeout_then_gets_it_after_release() {
        let _serial = serial();
        let held = NetnsLock::acquire("first").expect("lock");
        let t0 = Instant::now();
        let err = NetnsLock::acquire_within("second", Duration::from_millis(80))
            .expect_err("the namespace is locked");
        assert!(t0.elapsed() >= Duration::from_millis(80));
        assert!(err.is_lock_timeout(), "{err}");
        let msg = err.to_string();
        assert!(msg.contains("second") && msg.contains("net:["), "{msg}");
        drop(held);
        let again = NetnsLock::acquire_within("third", Duration::from_millis(80)).expect("free");
        assert!(again.waited() < Duration::from_millis(80));
        assert!(!again.was_contended());
    }

    #[test]
    fn waiter_gets_the_lock_when_the_holder_releases_it() {
        let _serial = serial();
        let held = NetnsLock::acquire("holder").expect("lock");
        let waiter =
            thread::spawn(|| with_netns_lock("waiter", || Ok(())).map(|()| Instant::now()));
        thread::sleep(Duration::from_millis(50));
        let released = Instant::now();
        drop(held);
        let got = waiter.join().expect("thread").expect("acquired");
        assert!(got >= released);
        let contended = thread::spawn(|| {
            let _held = NetnsLock::acquire("holder").expect("lock");
            thread::sleep(Duration::from_millis(30));
        });
        thread::sleep(Duration::from_millis(10));
        let after = NetnsLock::acquire("waiter").expect("acquired");
        assert!(after.was_contended() && after.waited() > Duration::ZERO);
        contended.join().expect("thread");
    }

    #[test]
    fn another_namespace_has_its_own_lock() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root (unshare CLONE_NEWNET)");
            return;
        }
        let _serial = serial();
        let _held = NetnsLock::acquire("host").expect("lock");
        thread::spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare");
            NetnsLock::acquire_within("other namespace", Duration::from_millis(50)).map(drop)
        })
        .join()
        .expect("thread")
        .expect("a fresh namespace is not locked by the host's holder");
    }
}
