//! The system calls that neither std nor the nix features enabled for this package offer:
//! `wait4(2)` with the child's resource usage, and a `ptrace(2)` exit probe that reads a
//! process's own peak RSS (`VmHWM`) just before it exits.
//!
//! This is the only module of the benchmark with `unsafe`; each block says why it is sound.
//!
//! Why not `ru_maxrss` alone: after `posix_spawn`/`vfork`, the child's `ru_maxrss` also
//! counts the *spawning parent's* memory map it ran on before `exec` (the kernel folds the
//! old map's high-water mark in at `exec`). A small plugin spawned by a bigger process
//! would report the parent's RSS. `VmHWM` read at the exit stop covers only the plugin's
//! own map.
#![allow(
    unsafe_code,
    reason = "wait4 with rusage and ptrace are raw libc calls (nix `resource`/`ptrace` features are not enabled for cni-tests)"
)]

use std::io;
use std::time::Duration;

/// How a child ended and the resources it used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Exit {
    /// Exit code, `None` when killed by a signal.
    pub code: Option<i32>,
    /// The terminating signal, if any.
    pub signal: Option<i32>,
    /// `ru_maxrss` in KiB: the peak RSS of the child *or* of any descendant it waited for
    /// (the kernel reports `RUSAGE_BOTH` for a reaped child), e.g. a delegated IPAM plugin
    /// or an `iptables` process.
    pub tree_maxrss_kib: u64,
    /// User CPU time of the child and its reaped descendants.
    pub user: Duration,
    /// System CPU time of the child and its reaped descendants.
    pub sys: Duration,
}

impl Exit {
    /// True on exit code 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// User plus system CPU time.
    pub fn cpu(&self) -> Duration {
        self.user + self.sys
    }
}

fn timeval(tv: libc::timeval) -> Duration {
    let secs = u64::try_from(tv.tv_sec).unwrap_or(0);
    let micros = u32::try_from(tv.tv_usec).unwrap_or(0);
    Duration::from_secs(secs) + Duration::from_micros(u64::from(micros))
}

fn exit_from(status: libc::c_int, ru: &libc::rusage) -> Exit {
    let (code, signal) = if libc::WIFEXITED(status) {
        (Some(libc::WEXITSTATUS(status)), None)
    } else if libc::WIFSIGNALED(status) {
        (None, Some(libc::WTERMSIG(status)))
    } else {
        (None, None)
    };
    Exit {
        code,
        signal,
        tree_maxrss_kib: u64::try_from(ru.ru_maxrss).unwrap_or(0),
        user: timeval(ru.ru_utime),
        sys: timeval(ru.ru_stime),
    }
}

fn to_pid(pid: u32) -> io::Result<libc::pid_t> {
    libc::pid_t::try_from(pid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

/// One `wait4(pid, &status, flags, &rusage)`, retried on `EINTR`.
fn wait4_raw(pid: libc::pid_t, flags: libc::c_int) -> io::Result<(libc::c_int, libc::rusage)> {
    let mut status: libc::c_int = 0;
    // SAFETY: `rusage` is a plain C struct of integers and timevals; all-zero is valid.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `status` and `ru` are live, exclusively borrowed locals of the right
        // types; the kernel writes only within them.
        let r = unsafe { libc::wait4(pid, &raw mut status, flags, &raw mut ru) };
        if r == pid {
            return Ok((status, ru));
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Reaps child `pid` (which must not be waited for by anyone else, e.g. std's `Child`) and
/// returns its exit and resource usage.
///
/// # Errors
/// The `wait4` error (e.g. `ECHILD`).
pub fn wait(pid: u32) -> io::Result<Exit> {
    let (status, ru) = wait4_raw(to_pid(pid)?, 0)?;
    Ok(exit_from(status, &ru))
}

/// Attaches to the just-spawned child `pid` with `PTRACE_SEIZE`, following its forks,
/// vforks, clones and execs, so that [`wait_traced`] sees every process of the call's
/// tree exit. Returns false when the child could not be attached (it then runs untraced).
pub fn seize_tree(pid: u32) -> bool {
    let Ok(pid) = to_pid(pid) else { return false };
    let options = (libc::PTRACE_O_TRACEEXIT
        | libc::PTRACE_O_TRACEFORK
        | libc::PTRACE_O_TRACEVFORK
        | libc::PTRACE_O_TRACECLONE
        | libc::PTRACE_O_TRACEEXEC) as usize;
    ptrace_int(IntRequest::Seize, pid, options) == 0
}

/// The `ptrace(2)` requests whose `addr` is ignored and whose `data` is an integer.
#[derive(Debug, Clone, Copy)]
enum IntRequest {
    /// `PTRACE_SEIZE`: `data` = option bits.
    Seize,
    /// `PTRACE_CONT`: `data` = signal to inject.
    Cont,
}

/// `ptrace(request, pid, 0, data)` for a request that takes no pointer.
fn ptrace_int(request: IntRequest, pid: libc::pid_t, data: usize) -> libc::c_long {
    let request = match request {
        IntRequest::Seize => libc::PTRACE_SEIZE,
        IntRequest::Cont => libc::PTRACE_CONT,
    };
    // SAFETY: for PTRACE_SEIZE and PTRACE_CONT (the only requests `IntRequest` allows)
    // `addr` is ignored (0 here) and `data` is an integer (option bits, a signal number)
    // passed in a pointer-sized argument; the kernel dereferences neither.
    unsafe {
        libc::ptrace(
            request,
            pid,
            std::ptr::null_mut::<libc::c_void>(),
            data as *mut libc::c_void,
        )
    }
}

fn ptrace_cont(pid: libc::pid_t, signal: libc::c_int) {
    let _ = ptrace_int(IntRequest::Cont, pid, usize::try_from(signal).unwrap_or(0));
}

/// One process of a traced call tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proc {
    /// Process id.
    pub pid: i32,
    /// `comm` (the executable's name, 15 characters at most).
    pub name: String,
    /// Own peak RSS (`VmHWM`) in KiB, read at its exit.
    pub peak_kib: u64,
    /// Anonymous (heap, stack, written data) part of the RSS at exit, in KiB.
    pub anon_kib: u64,
    /// File-backed (executable and libraries) part of the RSS at exit, in KiB.
    pub file_kib: u64,
}

/// Every process of a traced call, in the order they exited (the root last).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tree {
    /// The processes (thread-group leaders only).
    pub procs: Vec<Proc>,
    /// The root process's own peak RSS in KiB.
    pub root_peak_kib: Option<u64>,
}

impl Tree {
    /// Largest own peak RSS of any process of the tree, in KiB.
    pub fn max_peak_kib(&self) -> u64 {
        self.procs.iter().map(|p| p.peak_kib).max().unwrap_or(0)
    }
}

/// `(Name, Tgid, VmHWM, RssAnon, RssFile)` of `/proc/<tid>/status` (sizes in KiB).
fn proc_status(tid: libc::pid_t) -> Option<(String, i32, u64, u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    let field = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| v.trim().to_owned())
    };
    let name = field("Name:")?;
    let tgid = field("Tgid:")?.parse().ok()?;
    let kib = |key: &str| {
        field(key)
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    Some((name, tgid, kib("VmHWM:"), kib("RssAnon:"), kib("RssFile:")))
}

/// Reaps a child attached with [`seize_tree`], resuming every traced task through its
/// ptrace stops (signals are re-injected, so Go's preemption signals behave as usual).
/// At each exit stop of a thread-group leader, its name and own peak RSS are recorded
/// while its memory map still exists. Returns the root's exit and the tree.
///
/// Only one traced call may run at a time: this waits for any traced task.
///
/// # Errors
/// The `wait4` error.
pub fn wait_traced(pid: u32) -> io::Result<(Exit, Tree)> {
    let root = to_pid(pid)?;
    let mut tree = Tree::default();
    loop {
        let (tid, status, ru) = wait_any()?;
        if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
            if tid == root {
                drain();
                return Ok((exit_from(status, &ru), tree));
            }
            continue;
        }
        if !libc::WIFSTOPPED(status) {
            continue;
        }
        let sig = libc::WSTOPSIG(status);
        let event = (status >> 16) & 0xff;
        if sig == libc::SIGTRAP && event == libc::PTRACE_EVENT_EXIT {
            if let Some((name, tgid, peak_kib, anon_kib, file_kib)) = proc_status(tid)
                && tgid == tid
            {
                if tid == root {
                    tree.root_peak_kib = Some(peak_kib);
                }
                tree.procs.push(Proc {
                    pid: tid,
                    name,
                    peak_kib,
                    anon_kib,
                    file_kib,
                });
            }
            ptrace_cont(tid, 0);
        } else if event != 0 {
            // fork/vfork/clone/exec events and PTRACE_EVENT_STOP: just resume.
            ptrace_cont(tid, 0);
        } else {
            // Signal-delivery stop: deliver the signal as if untraced.
            ptrace_cont(tid, sig);
        }
    }
}

/// `wait4(-1, __WALL)`, retried on `EINTR`: the next event of any child or traced task.
fn wait_any() -> io::Result<(libc::pid_t, libc::c_int, libc::rusage)> {
    let mut status: libc::c_int = 0;
    // SAFETY: `rusage` is a plain C struct of integers and timevals; all-zero is valid.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `status` and `ru` are live, exclusively borrowed locals of the right
        // types; the kernel writes only within them.
        let r = unsafe { libc::wait4(-1, &raw mut status, libc::__WALL, &raw mut ru) };
        if r > 0 {
            return Ok((r, status, ru));
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Resumes traced tasks still stopped after the root exited (a daemonized grandchild),
/// without blocking.
fn drain() {
    for _ in 0..1000 {
        let mut status: libc::c_int = 0;
        // SAFETY: `status` is a live local; a null rusage pointer is allowed.
        let r = unsafe {
            libc::wait4(
                -1,
                &raw mut status,
                libc::__WALL | libc::WNOHANG,
                std::ptr::null_mut(),
            )
        };
        if r <= 0 {
            return;
        }
        if libc::WIFSTOPPED(status) {
            ptrace_cont(r, 0);
        }
    }
}
