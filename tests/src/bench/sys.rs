//! The system calls that neither std nor the nix features enabled for this package offer:
//! `wait4(2)` with the child's resource usage, and a `ptrace(2)` exit probe that reads a
//! process's own peak RSS (`VmHWM`) just before it exits.
//!
//! This is the only module of the benchmark with `unsafe`; each block says why it is sound.
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

/// Attaches to the just-spawned child `pid` with `PTRACE_SEIZE` and the exit option, so
/// that [`wait_traced`] can read its peak RSS right before it exits. Returns false when
/// the child could not be attached (it then simply runs untraced).
pub fn seize_for_exit(pid: u32) -> bool {
    let Ok(pid) = to_pid(pid) else { return false };
    let options = libc::PTRACE_O_TRACEEXIT as usize;
    // SAFETY: PTRACE_SEIZE takes no pointer: `addr` must be 0 and `data` carries the option
    // bits as an integer; the kernel never dereferences either.
    let r = unsafe {
        libc::ptrace(
            libc::PTRACE_SEIZE,
            pid,
            std::ptr::null_mut::<libc::c_void>(),
            options as *mut libc::c_void,
        )
    };
    r == 0
}

fn ptrace_cont(pid: libc::pid_t, signal: libc::c_int) {
    let sig = usize::try_from(signal).unwrap_or(0);
    // SAFETY: PTRACE_CONT takes an ignored `addr` and the signal number to inject as an
    // integer in `data`; nothing is dereferenced.
    let _ = unsafe {
        libc::ptrace(
            libc::PTRACE_CONT,
            pid,
            std::ptr::null_mut::<libc::c_void>(),
            sig as *mut libc::c_void,
        )
    };
}

/// `VmHWM` of `/proc/<pid>/status` in KiB (the process's own peak resident set).
pub fn vm_hwm_kib(pid: libc::pid_t) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Reaps a child attached with [`seize_for_exit`], resuming it through every ptrace stop
/// (signals are re-injected, so Go's preemption signals behave as usual). Returns its exit
/// and its own peak RSS in KiB, read from `/proc/<pid>/status` at the exit stop, when the
/// memory map still exists.
///
/// # Errors
/// The `wait4` error.
pub fn wait_traced(pid: u32) -> io::Result<(Exit, Option<u64>)> {
    let pid = to_pid(pid)?;
    let mut own_peak = None;
    loop {
        let (status, ru) = wait4_raw(pid, libc::__WALL)?;
        if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
            return Ok((exit_from(status, &ru), own_peak));
        }
        if libc::WIFSTOPPED(status) {
            let sig = libc::WSTOPSIG(status);
            let event = (status >> 16) & 0xff;
            if sig == libc::SIGTRAP && event == libc::PTRACE_EVENT_EXIT {
                own_peak = vm_hwm_kib(pid).or(own_peak);
                ptrace_cont(pid, 0);
            } else if event != 0 {
                // PTRACE_EVENT_STOP (group stop under SEIZE) or another event: resume.
                ptrace_cont(pid, 0);
            } else {
                // Signal-delivery stop: deliver the signal as if untraced.
                ptrace_cont(pid, sig);
            }
        }
    }
}
