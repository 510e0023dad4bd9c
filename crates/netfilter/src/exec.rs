//! Running the netfilter user-space tools with captured output and contextual errors.

use std::io::{self, Write};
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
    RUN.with(|n| n.set(n.get() + 1));
    let spawn_err = |source| Error::Spawn {
        tool: tool.to_owned(),
        op: op.to_owned(),
        source,
    };
    let mut command = Command::new(tool);
    die_with_caller(&mut command);
    let mut child = command
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_err)?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        log::trace!("{tool} input:\n{input}");
        pipe.write_all(input.as_bytes()).map_err(spawn_err)?;
    }
    let out = child.wait_with_output().map_err(spawn_err)?;
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    if !out.status.success() {
        if is_lock_message(&stderr) {
            return Err(Error::LockTimeout {
                tool: tool.to_owned(),
                op: op.to_owned(),
                stderr,
            });
        }
        return Err(Error::Tool {
            tool: tool.to_owned(),
            op: op.to_owned(),
            status: out.status.to_string(),
            stderr,
        });
    }
    String::from_utf8(out.stdout).map_err(|e| Error::Parse {
        tool: tool.to_owned(),
        detail: format!("output is not UTF-8 while {op}: {e}"),
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
