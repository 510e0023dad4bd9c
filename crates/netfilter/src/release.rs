//! Letting go of `NETLINK_NETFILTER` sockets without sitting out the kernel's cleanup.
//!
//! An nf_tables commit leaves the transaction's objects on the namespace's destroy list,
//! which a kernel worker frees after an RCU grace period. When any bound
//! `NETLINK_NETFILTER` socket of the namespace is released (its last descriptor closed, at
//! the latest when the process exits), nf_tables waits for that worker first
//! (`nft_rcv_nl_event` on `NETLINK_URELEASE`), holding the namespace's commit mutex.
//! Measured here, that wait is 4–13 ms per plugin run that committed anything, spent in a
//! `close()` after the work is done, and every commit in the namespace waits with it.
//!
//! So the sockets this crate opens are not closed when their connection is dropped but
//! parked ([`park`]), and [`release_sockets`], called once when the plugin has written
//! its result, hands the parked sockets to a helper process (sharing this process's
//! memory, so starting it copies no page tables, and waited for by nobody) that closes
//! them later. Nothing is left undone by this: every commit was acknowledged before its
//! socket was parked; the helper only keeps the close away from the kernel's deferred
//! freeing.
//!
//! The helper does not close at once: a close during the grace period would hold the
//! commit mutex through it, and the next plugin's commit in the namespace (a pod started
//! right after a DEL) would wait for it. It first waits until a whole grace period has
//! passed without a commit in the namespace (the nf_tables generation read before and
//! after a `membarrier(MEMBARRIER_CMD_GLOBAL)`, which returns after a grace period), so
//! that the close finds nothing to wait for; after [`SETTLE_ROUNDS`] busy grace periods it
//! closes anyway.
//!
//! What is left is the kernel's, and someone pays it: `iptables-restore` (the nf_tables
//! variant) opens and closes sockets of its own while it starts (its extension revision
//! probes), so the first one in the namespace within a grace period after a commit waits
//! for that commit's cleanup. A pod ADD with the iptables backend right after a DEL thus
//! takes on the DEL's cleanup, which the DEL no longer sits out (the reference plugins'
//! DEL does, at its tools' exits); ADD and DEL together are still faster.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

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
    // The result is written: let go of the caller's pipes now, so that no copy of them
    // in a child keeps the caller waiting for end-of-file until that child has run.
    detach_stdio();
    if let Err(e) = hand_over(parked) {
        log::debug!("netfilter sockets closed here, without a helper: {e}");
    }
}

/// Points the standard descriptors at `/dev/null` (after flushing stdout).
fn detach_stdio() {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        // std's handles keep referring to descriptors 0-2, now /dev/null.
        let _ = nix::unistd::dup2_stdin(&null);
        let _ = nix::unistd::dup2_stdout(&null);
        let _ = nix::unistd::dup2_stderr(&null);
    }
}

/// What the helper needs, prepared before it starts and never freed (the helper shares
/// this process's memory and may outlive it).
struct Job {
    /// The descriptors to keep open, sorted: the sockets and the read end of the gate.
    keep: Box<[RawFd]>,
    /// The gate's read end: end-of-file once this process has closed its copies.
    gate: RawFd,
}

/// Size of the helper's stack: it makes a handful of system calls.
const HELPER_STACK: usize = 64 * 1024;

/// Starts the helper as a child process sharing this process's memory (`CLONE_VM`: no
/// page tables are copied, and nothing waits for it) but with its own copy of the
/// descriptor table; it keeps copies of `fds` and closes them once this process has
/// closed its own (end-of-file on a pipe whose write end this process closes last).
/// Returns once this process's copies are closed. When the helper exits first, it stays
/// a zombie child until this process exits; then init (or the nearest subreaper) reaps it.
fn hand_over(fds: Vec<OwnedFd>) -> std::io::Result<()> {
    let (gate_rx, gate_tx) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let mut keep: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
    keep.push(gate_rx.as_raw_fd());
    keep.sort_unstable();
    let job: &'static Job = Box::leak(Box::new(Job {
        keep: keep.into_boxed_slice(),
        gate: gate_rx.as_raw_fd(),
    }));
    let stack: &'static mut [u8] = Box::leak(vec![0u8; HELPER_STACK].into_boxed_slice());
    // The stack grows down from its 16-byte aligned end.
    let top = stack.as_mut_ptr().wrapping_add(HELPER_STACK & !15);
    // SAFETY: `helper_entry` runs on its own leaked stack, reads only the leaked `job`,
    // makes raw system calls and runs only allocation-free code (`settle`); it never
    // returns into this process's code (it ends with `_exit`). Without CLONE_THREAD it is a process of its own, so this process's
    // exit does not end it, and the shared memory lives as long as either of them.
    #[allow(unsafe_code, reason = "clone to detach the final close")]
    let pid = unsafe {
        libc::clone(
            helper_entry,
            top.cast(),
            libc::CLONE_VM | libc::SIGCHLD,
            std::ptr::from_ref(job).cast_mut().cast(),
        )
    };
    if pid < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // This order makes the helper's close of the sockets the last one.
    drop(gate_rx);
    drop(fds);
    drop(gate_tx);
    Ok(())
}

/// The helper's entry point (see [`hand_over`]).
extern "C" fn helper_entry(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the leaked `&'static Job` that `hand_over` passed.
    #[allow(unsafe_code, reason = "the clone argument")]
    let job = unsafe { &*arg.cast::<Job>() };
    helper(&job.keep, job.gate)
}

/// The helper: closes every descriptor but `keep` (sorted: the sockets and `gate`),
/// waits for end-of-file on `gate`, then for a quiet grace period ([`settle`]), closes
/// the rest and exits. Raw system calls and allocation-free code only (the allocator's
/// per-thread state is the caller's thread's), and it never reads `errno` (its
/// thread-local storage is the caller's thread's too; a failing call may write it, which
/// the exiting caller no longer reads).
fn helper(keep: &[RawFd], gate: RawFd) -> ! {
    #[allow(unsafe_code, reason = "raw system calls, then _exit")]
    // SAFETY: close_range, read and _exit on descriptor numbers and buffers
    // of this stack frame.
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
        // End-of-file (0) ends the wait; an error is retried a few times (a signal).
        let mut byte = 0u8;
        for _ in 0..16 {
            if libc::read(gate, (&raw mut byte).cast(), 1) == 0 {
                break;
            }
        }
    }
    settle();
    #[allow(unsafe_code, reason = "raw system calls, then _exit")]
    // SAFETY: close_range and _exit take no pointers.
    unsafe {
        libc::close_range(0, libc::c_uint::MAX, 0);
        libc::_exit(0)
    }
}

/// Most grace periods [`settle`] waits for one without a commit in the namespace.
pub const SETTLE_ROUNDS: u32 = 8;

/// `MEMBARRIER_CMD_GLOBAL`: returns after an RCU grace period (`synchronize_rcu`).
const MEMBARRIER_CMD_GLOBAL: libc::c_long = 1;

/// Returns once a whole RCU grace period passed without an nf_tables commit in this
/// network namespace (the generation is the same before and after it), or after
/// [`SETTLE_ROUNDS`] grace periods, or at once when the generation cannot be read or
/// `membarrier` is refused. The query socket it opens is closed with the parked ones.
fn settle() {
    #[allow(unsafe_code, reason = "raw system calls")]
    // SAFETY: socket and setsockopt with a `timeval` of this frame and its size.
    let fd = unsafe {
        let fd = libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_NETFILTER,
        );
        // Never wait long for an answer the kernel always gives at once.
        let timeout = libc::timeval {
            tv_sec: 0,
            tv_usec: 200_000,
        };
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&raw const timeout).cast(),
            libc::socklen_t::try_from(size_of::<libc::timeval>()).unwrap_or(0),
        );
        fd
    };
    if fd < 0 {
        return;
    }
    let Some(mut before) = generation(fd, 1) else {
        return;
    };
    for round in 0..SETTLE_ROUNDS {
        #[allow(unsafe_code, reason = "membarrier has no wrapper")]
        // SAFETY: membarrier takes no pointers.
        let waited = unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_GLOBAL, 0, 0) };
        if waited != 0 {
            return;
        }
        let Some(after) = generation(fd, round + 2) else {
            return;
        };
        if after == before {
            return;
        }
        before = after;
    }
}

/// The namespace's nf_tables generation, asked on `fd` with sequence number `seq`.
fn generation(fd: RawFd, seq: u32) -> Option<u32> {
    use crate::nftnl::generation::{REQUEST_LEN, Reply, reply, request};
    let req = request(seq);
    let mut buf = [0u8; 512];
    #[allow(unsafe_code, reason = "raw system calls")]
    // SAFETY: send and recv on buffers of this frame, with their lengths.
    unsafe {
        let sent = libc::send(fd, req.as_ptr().cast(), REQUEST_LEN, 0);
        if usize::try_from(sent).ok() != Some(REQUEST_LEN) {
            return None;
        }
        for _ in 0..4 {
            let n = libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0);
            let n = usize::try_from(n).ok().filter(|n| *n > 0)?;
            match reply(&buf[..n.min(buf.len())], seq) {
                Reply::Generation(id) => return Some(id),
                Reply::Refused => return None,
                Reply::Unrelated => {}
            }
        }
    }
    None
}
