//! Everything the benchmark creates is named `cnibench-<pid>-…` (namespaces in
//! `/run/netns`, data directories in the temp dir) and registered here, so it can be
//! removed:
//! * normally, by [`Guard`]'s `Drop`;
//! * on a panic (the release profile aborts, so `Drop` would not run), by a panic hook;
//! * on SIGINT/SIGTERM/SIGHUP, by a signal thread: the first signal asks the run to stop
//!   at the next operation boundary (the plugin currently running finishes: plugins run in
//!   their own process group, so Ctrl-C does not reach them), then `Drop` cleans up; a
//!   second signal cleans up immediately and exits;
//! * after a `kill -9`, by `cni-bench --cleanup`, which removes every `cnibench-*` leftover.
//!
//! Nothing outside these namespaces and directories is ever changed, so deleting them is
//! a complete cleanup: a namespace takes its links, bridge, routes and netfilter rules
//! with it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use nix::sys::signal::{SigSet, Signal};

use crate::exec::run_with_stdin;

/// Prefix of every namespace and directory the benchmark creates.
pub const PREFIX: &str = "cnibench-";

/// Directory holding named network namespaces.
pub const NETNS_DIR: &str = "/run/netns";

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
static NAMESPACES: Mutex<Vec<String>> = Mutex::new(Vec::new());
static DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `cnibench-<pid>-`: the prefix of this run's objects.
pub fn run_prefix() -> String {
    format!("{PREFIX}{}-", std::process::id())
}

/// True once SIGINT/SIGTERM/SIGHUP arrived: stop at the next operation boundary.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Error text used when a scenario stops because of a signal.
pub const INTERRUPTED_MSG: &str = "interrupted by a signal";

/// Returns `Err` when interrupted, for `?` at operation boundaries.
///
/// # Errors
/// [`INTERRUPTED_MSG`] once a signal arrived.
pub fn check() -> Result<(), String> {
    if interrupted() {
        Err(INTERRUPTED_MSG.into())
    } else {
        Ok(())
    }
}

/// Remembers a namespace name for cleanup.
pub fn register_netns(name: &str) {
    lock(&NAMESPACES).push(name.to_owned());
}

/// Forgets namespaces that were deleted already.
pub fn forget_netns(names: &[String]) {
    lock(&NAMESPACES).retain(|n| !names.contains(n));
}

/// Remembers a directory for cleanup (removed recursively).
pub fn register_dir(dir: &Path) {
    lock(&DIRS).push(dir.to_path_buf());
}

/// Deletes named namespaces with one `ip -force -batch -` process. Missing ones are
/// ignored. Returns the names that still exist afterwards.
pub fn delete_netns(names: &[String]) -> Vec<String> {
    if names.is_empty() {
        return Vec::new();
    }
    let script: String = names.iter().map(|n| format!("netns del {n}\n")).collect();
    let _ = run_with_stdin(
        Command::new("ip")
            .args(["-force", "-batch", "-"])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
        script.as_bytes(),
    );
    names
        .iter()
        .filter(|n| Path::new(NETNS_DIR).join(n).exists())
        .cloned()
        .collect()
}

/// Removes everything registered so far. Safe to call more than once.
pub fn cleanup_registered() {
    let names: Vec<String> = std::mem::take(&mut *lock(&NAMESPACES));
    let left = delete_netns(&names);
    for n in &left {
        eprintln!("cni-bench: warning: could not delete netns {n}");
    }
    let dirs: Vec<PathBuf> = std::mem::take(&mut *lock(&DIRS));
    for d in dirs {
        if let Err(e) = std::fs::remove_dir_all(&d)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            eprintln!("cni-bench: warning: could not remove {}: {e}", d.display());
        }
    }
}

/// True when `name` (`cnibench-<pid>-…`) belongs to a `cni-bench` process that is still
/// running (other than this one).
fn owner_alive(name: &str) -> bool {
    let Some(pid) = name
        .strip_prefix(PREFIX)
        .and_then(|rest| rest.split('-').next())
        .and_then(|p| p.parse::<u32>().ok())
    else {
        return false;
    };
    // `/proc/<pid>/stat` is `pid (comm) state …`; a zombie (`Z`) is not running.
    pid != std::process::id()
        && std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            stat.contains("(cni-bench)")
                && !matches!(
                    stat.rsplit(") ")
                        .next()
                        .and_then(|rest| rest.chars().next()),
                    Some('Z' | 'X')
                )
        })
}

/// Removes every namespace in `/run/netns` and every directory in the temp dir whose
/// name starts with `prefix`, except those of `cni-bench` runs still in progress.
/// Returns how many of each were removed.
pub fn cleanup_prefix(prefix: &str) -> (usize, usize) {
    let list = |dir: &Path| -> Vec<String> {
        std::fs::read_dir(dir)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .filter_map(|e| e.file_name().into_string().ok())
                    .filter(|n| n.starts_with(prefix) && !owner_alive(n))
                    .collect()
            })
            .unwrap_or_default()
    };
    let names = list(Path::new(NETNS_DIR));
    let left = delete_netns(&names);
    let tmp = std::env::temp_dir();
    let mut dirs = 0;
    for d in list(&tmp) {
        if std::fs::remove_dir_all(tmp.join(&d)).is_ok() {
            dirs += 1;
        }
    }
    (names.len() - left.len(), dirs)
}

/// Cleans up on drop; create one in `main` before creating anything.
#[derive(Debug)]
pub struct Guard(());

impl Guard {
    /// Blocks the termination signals in the calling (main) thread, so every thread
    /// created afterwards inherits the mask, starts the signal thread and installs the
    /// panic hook. Call before spawning any other thread. Child processes do not inherit
    /// the mask (std resets it on spawn).
    ///
    /// # Errors
    /// When the signal mask cannot be set or the thread cannot start.
    pub fn install() -> Result<Self, String> {
        let mut set = SigSet::empty();
        for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
            set.add(s);
        }
        set.thread_block()
            .map_err(|e| format!("block signals: {e}"))?;
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || signal_thread(set))
            .map_err(|e| format!("signal thread: {e}"))?;
        let default_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            default_hook(info);
            cleanup_registered();
        }));
        Ok(Self(()))
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        cleanup_registered();
    }
}

fn signal_thread(set: SigSet) {
    loop {
        let Ok(sig) = set.wait() else { continue };
        if INTERRUPTED.swap(true, Ordering::SeqCst) {
            eprintln!("cni-bench: {sig:?} again: cleaning up now and exiting");
            cleanup_registered();
            // Also whatever an interrupted `ip -batch` created after registration.
            cleanup_prefix(&run_prefix());
            #[allow(
                clippy::exit,
                reason = "second signal: leave immediately after cleanup"
            )]
            std::process::exit(130);
        }
        eprintln!(
            "cni-bench: {sig:?}: stopping after the current plugin call and cleaning up \
             (repeat to exit at once)"
        );
    }
}
