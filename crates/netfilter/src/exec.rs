//! Running the netfilter user-space tools with captured output and contextual errors.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::error::{Error, Result};

/// Runs `tool args...`, feeding `stdin` if given, and returns stdout.
///
/// `op` describes what is being done; it ends up in every error. A failing exit status
/// becomes [`Error::Tool`] (or [`Error::LockTimeout`] when the xtables lock wait ran out).
pub(crate) fn run(tool: &str, args: &[&str], stdin: Option<&str>, op: &str) -> Result<String> {
    log::debug!("exec {tool} {} ({op})", args.join(" "));
    let spawn_err = |source| Error::Spawn {
        tool: tool.to_owned(),
        op: op.to_owned(),
        source,
    };
    let mut child = Command::new(tool)
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
    fn stdin_is_fed() {
        let out = run("cat", &[], Some("hello"), "cat").unwrap();
        assert_eq!(out, "hello");
    }
}
