//! Running the netfilter user-space tools with captured output and contextual errors.

use std::io::{self, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::{Error, Result};

thread_local! {
    static RUN: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// How many tool processes [`run`] has started on the calling thread.
pub(crate) fn tools_run() -> u64 {
    RUN.with(std::cell::Cell::get)
}

/// Runs `tool args...`, feeding `stdin` if given, and returns stdout.
///
/// `op` describes what is being done; it ends up in every error. A failing exit status
/// becomes [`Error::Tool`] (or [`Error::LockTimeout`] when the xtables lock wait ran out).
pub(crate) fn run(tool: &str, args: &[&str], stdin: Option<&str>, op: &str) -> Result<String> {
    log::debug!("exec {tool} {} ({op})", args.join(" "));
    let child = start(tool, args, stdin, Stdio::piped(), op)?;
    let spawn_err = |source| spawn_error(tool, op, source);
    let out = child.wait_with_output().map_err(spawn_err)?;
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    check_status(tool, op, out.status, stderr)?;
    String::from_utf8(out.stdout).map_err(|e| Error::Parse {
        tool: tool.to_owned(),
        detail: format!("output is not UTF-8 while {op}: {e}"),
    })
}

/// Receive buffer for the commit watch: room for the object notifications of a burst of
/// commits by other processes.
const WATCH_RCVBUF: usize = 4 << 20;

/// Like [`run`] for a tool that commits exactly `commits` nf_tables transactions when it
/// succeeds (`iptables-restore` of the nf_tables variant: one per `COMMIT`), but returns
/// as soon as the kernel has announced those commits (`NFT_MSG_NEWGEN` naming the tool's
/// process), without waiting for the tool to exit: a tool releasing its netfilter socket
/// waits for nf_tables' deferred cleanup (see [`crate::release`]), 5–13 ms here. The
/// kernel commits a transaction whole or not at all, so the announcement is the tool's
/// success. When it does not come (legacy iptables, a refused script, lost events), this
/// is [`run`]: the exit status and stderr decide. The tool's stdout is not returned.
pub(crate) fn run_committing(
    tool: &str,
    args: &[&str],
    stdin: &str,
    commits: usize,
    op: &str,
) -> Result<()> {
    let Ok(mut watch) = crate::nfnl::Conn::open_events(crate::nftnl::GROUP) else {
        return run(tool, args, Some(stdin), op).map(drop);
    };
    watch.grow_receive_buffer(WATCH_RCVBUF);
    log::debug!(
        "exec {tool} {} ({op}), watching its commits",
        args.join(" ")
    );
    let mut child = start(tool, args, Some(stdin), Stdio::null(), op)?;
    let spawn_err = |source| spawn_error(tool, op, source);
    let pid = child.id();
    let mut stderr = child.stderr.take();
    let mut err_text = Vec::new();
    let mut seen = 0;
    let mut watching = true;
    while stderr.is_some() {
        let mut fds = Vec::with_capacity(2);
        if let Some(e) = &stderr {
            fds.push(nix::poll::PollFd::new(
                e.as_fd(),
                nix::poll::PollFlags::POLLIN,
            ));
        }
        if watching {
            fds.push(nix::poll::PollFd::new(
                watch.fd(),
                nix::poll::PollFlags::POLLIN,
            ));
        }
        match nix::poll::poll(&mut fds, nix::poll::PollTimeout::NONE) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(spawn_err(e.into())),
        }
        // The stderr entry is first; any event (data, hang-up, error) makes it readable.
        let stderr_ready = fds
            .first()
            .and_then(nix::poll::PollFd::revents)
            .is_some_and(|r| !r.is_empty());
        drop(fds);
        if watching {
            match watch.drain_raw_events(|m| {
                seen += usize::from(announces(&m, pid));
            }) {
                Ok(()) if seen >= commits => {
                    log::debug!("{tool} committed ({op}); not waiting for it to exit");
                    return Ok(());
                }
                Ok(()) => {}
                Err(e) => {
                    log::debug!("{tool}: commit watch lost ({e}); waiting for its exit");
                    watching = false;
                }
            }
        }
        if let (Some(e), true) = (&mut stderr, stderr_ready) {
            let mut chunk = [0u8; 4096];
            match nix::unistd::read(e.as_fd(), &mut chunk) {
                Ok(0) => stderr = None,
                Ok(n) => err_text.extend_from_slice(chunk.get(..n).unwrap_or_default()),
                Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(spawn_err(e.into())),
            }
        }
    }
    let status = child.wait().map_err(spawn_err)?;
    let stderr = String::from_utf8_lossy(&err_text).trim().to_owned();
    check_status(tool, op, status, stderr)
}

/// Starts `tool args...` (counted by [`tools_run`]; it dies with the calling thread),
/// with stdout to `stdout` and stderr piped, and writes `stdin` (if any) to it.
fn start(
    tool: &str,
    args: &[&str],
    stdin: Option<&str>,
    stdout: Stdio,
    op: &str,
) -> Result<std::process::Child> {
    RUN.with(|n| n.set(n.get() + 1));
    // A tool may commit; a later close of our netfilter sockets may then wait.
    crate::release::note_commit();
    let mut command = Command::new(tool);
    die_with_caller(&mut command);
    let mut child = command
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| spawn_error(tool, op, e))?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        log::trace!("{tool} input:\n{input}");
        pipe.write_all(input.as_bytes())
            .map_err(|e| spawn_error(tool, op, e))?;
    }
    Ok(child)
}

fn spawn_error(tool: &str, op: &str, source: io::Error) -> Error {
    Error::Spawn {
        tool: tool.to_owned(),
        op: op.to_owned(),
        source,
    }
}

/// Whether `m` is the kernel's announcement of a commit by process `pid`.
fn announces(m: &crate::nfnl::RawMsg<'_>, pid: u32) -> bool {
    crate::nftnl::committer(m.kind, m.payload) == Some(pid)
}

/// An exit status as [`run`] reports it.
fn check_status(
    tool: &str,
    op: &str,
    status: std::process::ExitStatus,
    stderr: String,
) -> Result<()> {
    if status.success() {
        return Ok(());
    }
    if is_lock_message(&stderr) {
        return Err(Error::LockTimeout {
            tool: tool.to_owned(),
            op: op.to_owned(),
            stderr,
        });
    }
    Err(Error::Tool {
        tool: tool.to_owned(),
        op: op.to_owned(),
        status: status.to_string(),
        stderr,
    })
}

/// Makes the process `cmd` starts die (SIGKILL) when the thread that starts it ends, so
/// a plugin killed while it waits for a tool leaves no tool behind that could still
/// commit its change after the runtime's DEL has cleaned up (the ADD's masquerade restore
/// runs on a second thread, so a DEL may otherwise start while it is in flight). Every
/// caller waits for the tool on the starting thread, so only a dying plugin fires it.
fn die_with_caller(cmd: &mut Command) {
    let parent = nix::unistd::getpid();
    let hook = move || {
        nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
            .map_err(|e| io::Error::from_raw_os_error(e as i32))?;
        // The plugin died before the signal was armed: do not run the tool at all.
        if nix::unistd::getppid() != parent {
            return Err(io::Error::from_raw_os_error(
                nix::errno::Errno::ESRCH as i32,
            ));
        }
        Ok(())
    };
    // SAFETY: the hook runs in the child between fork and exec; it makes only the
    // async-signal-safe prctl and getppid system calls and allocates nothing (errors are
    // raw OS errors).
    #[allow(unsafe_code, reason = "CommandExt::pre_exec is unsafe")]
    unsafe {
        cmd.pre_exec(hook);
    }
}

/// The search path `execvp` uses when `PATH` is unset (glibc's default).
const DEFAULT_PATH: &str = "/bin:/usr/bin";

/// Where `tool` would be found on `PATH` (as [`Command`] searches it): the first
/// directory holding an executable regular file of that name (symlinks followed). A few
/// `stat` calls, no process.
pub(crate) fn find_tool(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH");
    let path = path.as_deref().unwrap_or(DEFAULT_PATH.as_ref());
    find_tool_in(tool, path)
}

fn find_tool_in(tool: &str, path: &std::ffi::OsStr) -> Option<PathBuf> {
    if tool.contains('/') {
        let p = Path::new(tool);
        return is_executable(p).then(|| p.to_path_buf());
    }
    std::env::split_paths(path)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(tool))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Fails like a spawn of an absent tool ([`Error::Spawn`] with
/// [`std::io::ErrorKind::NotFound`]) unless `tool` is an executable file on `PATH`.
pub(crate) fn require_tool(tool: &str, op: &str) -> Result<()> {
    if find_tool(tool).is_some() {
        return Ok(());
    }
    Err(Error::Spawn {
        tool: tool.to_owned(),
        op: op.to_owned(),
        source: io::Error::new(
            io::ErrorKind::NotFound,
            "no executable file of that name on PATH",
        ),
    })
}

/// The wording iptables (legacy and nft variants) uses when `-w <secs>` ran out.
fn is_lock_message(stderr: &str) -> bool {
    stderr.contains("xtables lock")
        && (stderr.contains("Stopped waiting") || stderr.contains("holding"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_timeout_wording_is_recognised() {
        assert!(is_lock_message(
            "Another app is currently holding the xtables lock. Stopped waiting after 1s."
        ));
        assert!(!is_lock_message("iptables-restore: line 3 failed"));
    }

    #[test]
    fn failing_tool_reports_stderr_and_context() {
        let err = run("sh", &["-c", "echo boom >&2; exit 3"], None, "testing").unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("boom") && text.contains("testing") && text.contains('3'),
            "{text}"
        );
        let err = run("sh", &["-c", "echo 'Another app is currently holding the xtables lock. Stopped waiting after 1s.' >&2; exit 4"], None, "x").unwrap_err();
        assert!(err.is_lock_timeout());
    }

    #[test]
    fn tools_are_found_on_path_only_when_executable() {
        let dir = std::env::temp_dir().join(format!("cni-nf-find-tool-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let exe = dir.join("mytool");
        std::fs::write(&exe, "#!/bin/sh\n").unwrap();
        let path = std::ffi::OsString::from(format!("/nonexistent::{}", dir.display()));
        assert!(
            find_tool_in("mytool", &path).is_none(),
            "not executable yet"
        );
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(find_tool_in("mytool", &path), Some(exe.clone()));
        std::fs::create_dir(dir.join("adir")).unwrap();
        std::fs::set_permissions(dir.join("adir"), std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(
            find_tool_in("adir", &path).is_none(),
            "directories are not tools"
        );
        assert!(find_tool_in("other", &path).is_none());
        assert!(find_tool_in(exe.to_str().unwrap(), "".as_ref()).is_some());
        assert!(find_tool("sh").is_some());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn stdin_is_fed() {
        let out = run("cat", &[], Some("hello"), "cat").unwrap();
        assert_eq!(out, "hello");
    }
}

#[cfg(test)]
mod commit_watch_tests {
    use super::*;
    use crate::nftnl::generation::{NEWGEN, newgen_message};

    #[test]
    fn a_commit_is_recognised_by_its_process() {
        let message = newgen_message(2, 5, 12296);
        let m = crate::nfnl::RawMsg {
            kind: NEWGEN,
            seq: 2,
            payload: &message[16..],
        };
        assert!(announces(&m, 12296));
        assert!(!announces(&m, 12297));
        let other = crate::nfnl::RawMsg {
            kind: (10 << 8) | 8, // NFT_MSG_DELRULE
            seq: 2,
            payload: &message[16..],
        };
        assert!(!announces(&other, 12296));
    }
}
