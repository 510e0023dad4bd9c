//! Letting go of `NETLINK_NETFILTER` sockets without sitting out the kernel's cleanup.
//!
//! An nf_tables commit leaves the transaction's objects on a destroy list that a kernel
//! worker frees after an RCU grace period. When any bound `NETLINK_NETFILTER` socket of
//! the namespace is released (its last descriptor closed, at the latest when the process
//! exits), nf_tables waits for that worker first (`nft_rcv_nl_event` on
//! `NETLINK_URELEASE`), holding the namespace's commit mutex. Measured here, that wait is
//! 4–13 ms per plugin run that committed anything, spent in a `close()` after the work is
//! done, and every commit in the namespace waits with it.
//!
//! So the sockets this crate opens are not closed when their connection is dropped but
//! parked ([`park`]), and [`release_sockets`], called once when the plugin has written
//! its result, hands the parked sockets to a detached helper process (a grandchild, so
//! no zombie is left with the caller) that closes them after this process has let go of
//! its copies, and after a pause by which the cleanup has normally finished, so that its
//! release does not hold up the next plugin's commit either. Nothing is left undone by this: every commit was acknowledged before its
//! socket was parked; the helper only sits out the kernel's deferred freeing.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// How long the helper waits before its release: a few RCU grace periods here.
const RELEASE_DELAY_NS: libc::c_long = 50_000_000;

/// Sockets kept open until [`release_sockets`].
static PARKED: Mutex<Vec<OwnedFd>> = Mutex::new(Vec::new());
/// Whether this process committed an nf_tables change (natively or through a tool).
static COMMITTED: AtomicBool = AtomicBool::new(false);

/// Keeps `fd` (a `NETLINK_NETFILTER` socket) open until [`release_sockets`].
pub(crate) fn park(fd: OwnedFd) {
    if let Ok(mut parked) = PARKED.lock() {
        parked.push(fd);
    }
}

/// Notes that this process changed nf_tables state, so releasing a netfilter socket
/// (ours, or a tool's at its exit) may wait for the kernel's deferred cleanup.
pub(crate) fn note_commit() {
    COMMITTED.store(true, Ordering::Relaxed);
}

/// Closes the sockets parked by this crate. After a commit, a detached helper process
/// does the final close, so the caller does not wait for the kernel's deferred cleanup
/// (see the module documentation); otherwise, or if the helper cannot be started, they
/// are closed here. Call it once, after the plugin's result is written, just before the
/// process exits.
pub fn release_sockets() {
    let parked: Vec<OwnedFd> = match PARKED.lock() {
        Ok(mut p) => std::mem::take(&mut *p),
        Err(_) => return,
    };
    if parked.is_empty() || !COMMITTED.load(Ordering::Relaxed) {
        return;
    }
    if let Err(e) = hand_over(parked) {
        log::debug!("netfilter sockets closed here, without a helper: {e}");
    }
}

/// Forks twice; the grandchild keeps copies of `fds` and closes them once this process
/// has closed its own (end-of-file on a pipe whose write end this process closes last).
/// Returns once the intermediate child has been reaped and this process's copies are
/// closed.
fn hand_over(fds: Vec<OwnedFd>) -> std::io::Result<()> {
    let (gate_rx, gate_tx) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    // Everything the children need is computed before the fork: after it they make only
    // async-signal-safe system calls (another thread may hold the allocator's lock).
    let mut keep: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
    keep.push(gate_rx.as_raw_fd());
    keep.sort_unstable();
    let gate = gate_rx.as_raw_fd();
    // SAFETY: the children run only raw system calls on memory prepared above (`helper`)
    // and end with `_exit`; they never return into the caller's code.
    #[allow(unsafe_code, reason = "fork to detach the final close")]
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Parent { child } => {
            drop(gate_rx);
            let _ = nix::sys::wait::waitpid(child, None);
            // This order makes the helper's close of the sockets the last one.
            drop(fds);
            drop(gate_tx);
            Ok(())
        }
        nix::unistd::ForkResult::Child => {
            #[allow(unsafe_code, reason = "second fork of the detach, then _exit")]
            // SAFETY: as above.
            unsafe {
                if libc::fork() == 0 {
                    helper(&keep, gate);
                }
                libc::_exit(0)
            }
        }
    }
}

/// The grandchild: closes every descriptor but `keep` (sorted: the sockets and `gate`),
/// waits for end-of-file on `gate`, closes the rest and exits. Raw system calls only.
fn helper(keep: &[RawFd], gate: RawFd) -> ! {
    #[allow(unsafe_code, reason = "raw system calls between fork and _exit")]
    // SAFETY: close_range, read and _exit on descriptor numbers and a stack buffer, all
    // async-signal-safe.
    unsafe {
        let mut next: libc::c_uint = 0;
        for &fd in keep {
            let fd = fd.unsigned_abs();
            if fd > next {
                libc::close_range(next, fd - 1, 0);
            }
            next = fd + 1;
        }
        libc::close_range(next, libc::c_uint::MAX, 0);
        let mut byte = 0u8;
        loop {
            let n = libc::read(gate, (&raw mut byte).cast(), 1);
            if n == 0 || (n < 0 && *libc::__errno_location() != libc::EINTR) {
                break;
            }
        }
        // The release waits for the cleanup while holding the namespace's nf_tables
        // commit mutex, which the next plugin's commit needs; by the end of this pause
        // the cleanup of our commits is normally done, and the release quick.
        let pause = libc::timespec {
            tv_sec: 0,
            tv_nsec: RELEASE_DELAY_NS,
        };
        libc::nanosleep(&raw const pause, std::ptr::null_mut());
        libc::close_range(0, libc::c_uint::MAX, 0);
        libc::_exit(0)
    }
}
