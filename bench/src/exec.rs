//! Runs one plugin process the way a container runtime does: `CNI_*` environment, the
//! config on a stdin pipe, the result from stdout. The child inherits the calling
//! thread's network namespace, so callers enter the implementation's host namespace
//! first (no `ip netns exec` in the timed path).

use std::io::{Read, Seek, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::sys::{self, Exit};

/// `PATH` given to plugins (they run `iptables`, `ip6tables`, … from it).
pub const PLUGIN_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// One plugin invocation.
#[derive(Debug, Clone)]
pub struct Call<'a> {
    /// The plugin binary.
    pub bin: PathBuf,
    /// `CNI_COMMAND`.
    pub command: &'a str,
    /// `CNI_CONTAINERID`.
    pub container_id: &'a str,
    /// `CNI_NETNS`.
    pub netns: &'a Path,
    /// `CNI_IFNAME`.
    pub ifname: &'a str,
    /// `CNI_PATH` (one directory: the implementation's plugin directory).
    pub cni_path: &'a Path,
    /// The network configuration written to stdin.
    pub stdin: Vec<u8>,
}

/// What one invocation did.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Wall time from just before spawning until the child was reaped.
    pub wall: Duration,
    /// Exit status and resource usage.
    pub exit: Exit,
    /// Every process of the call with its own peak RSS (only when traced).
    pub tree: Option<sys::Tree>,
    /// stdout (the result or error JSON).
    pub stdout: Vec<u8>,
    /// stderr (the plugin's log).
    pub stderr: String,
    /// Set when the process could not even be run.
    pub spawn_error: Option<String>,
}

impl Outcome {
    /// True when the plugin exited 0.
    pub fn ok(&self) -> bool {
        self.spawn_error.is_none() && self.exit.success()
    }

    /// stdout parsed as JSON.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.stdout).ok()
    }

    /// A one-line description of a failure.
    pub fn describe(&self) -> String {
        if let Some(e) = &self.spawn_error {
            return e.clone();
        }
        let msg = self
            .json()
            .and_then(|v| {
                let m = v.get("msg")?.as_str()?.to_owned();
                let d = v.get("details").and_then(Value::as_str).unwrap_or("");
                Some(if d.is_empty() { m } else { format!("{m}: {d}") })
            })
            .unwrap_or_else(|| String::from_utf8_lossy(&self.stdout).into_owned());
        let err = self.stderr.trim();
        format!(
            "exit {:?} signal {:?}: {}{}{}",
            self.exit.code,
            self.exit.signal,
            msg.trim(),
            if err.is_empty() { "" } else { " | stderr: " },
            err.chars().take(400).collect::<String>()
        )
    }
}

impl Call<'_> {
    /// Runs the call. With `trace_peak`, the child is ptrace-attached to read its own peak
    /// RSS at exit, following its children (slower; never used for timing).
    pub fn run(&self, trace_peak: bool) -> Outcome {
        match self.try_run(trace_peak) {
            Ok(o) => o,
            Err(e) => Outcome {
                spawn_error: Some(format!("{}: {e}", self.bin.display())),
                ..Outcome::default()
            },
        }
    }

    fn try_run(&self, trace_peak: bool) -> std::io::Result<Outcome> {
        // stderr goes to an unlinked temp file: no reader thread, no pipe to fill up.
        let mut err_file = tempfile::tempfile()?;
        let mut cmd = Command::new(&self.bin);
        cmd.env_clear()
            .env("CNI_COMMAND", self.command)
            .env("CNI_CONTAINERID", self.container_id)
            .env("CNI_NETNS", self.netns)
            .env("CNI_IFNAME", self.ifname)
            .env("CNI_PATH", self.cni_path)
            .env("PATH", PLUGIN_PATH)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(err_file.try_clone()?))
            // Own process group: a Ctrl-C aimed at the benchmark does not kill a plugin
            // half-way; the benchmark stops after it instead.
            .process_group(0);

        let start = Instant::now();
        let mut child = cmd.spawn()?;
        let pid = child.id();
        let traced = trace_peak && sys::seize_tree(pid);
        let mut stdin = child.stdin.take();
        let mut stdout = child.stdout.take();
        let (exit, tree, out) = if traced {
            // A traced child stops at every signal until we resume it, so collect stdout
            // on another thread while this one services the stops.
            let reader = std::thread::spawn(move || {
                let mut out = Vec::new();
                if let Some(s) = stdout.as_mut() {
                    let _ = s.read_to_end(&mut out);
                }
                out
            });
            if let Some(mut s) = stdin.take() {
                // Configs are far below the pipe buffer size: this never blocks.
                let _ = s.write_all(&self.stdin);
            }
            let (exit, tree) = sys::wait_traced(pid)?;
            (exit, Some(tree), reader.join().unwrap_or_default())
        } else {
            if let Some(mut s) = stdin.take() {
                // Ignore EPIPE: a plugin may exit without reading stdin.
                let _ = s.write_all(&self.stdin);
            }
            let mut out = Vec::new();
            if let Some(s) = stdout.as_mut() {
                s.read_to_end(&mut out)?;
            }
            (sys::wait(pid)?, None, out)
        };
        let wall = start.elapsed();
        drop(child);

        let mut stderr = String::new();
        err_file.rewind()?;
        let _ = err_file.read_to_string(&mut stderr);
        Ok(Outcome {
            wall,
            exit,
            tree,
            stdout: out,
            stderr,
            spawn_error: None,
        })
    }
}

/// Runs a helper tool (not a measured plugin) with `input` on its stdin and collects its
/// stdout and stderr. The caller sets stdout/stderr to null when it does not need them.
///
/// # Errors
/// When the tool cannot be spawned or waited for.
pub fn run_with_stdin(cmd: &mut Command, input: &[u8]) -> Result<std::process::Output, String> {
    let name = cmd.get_program().to_string_lossy().into_owned();
    let mut child = cmd
        .stdin(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn {name}: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // Ignore EPIPE: the tool reports what went wrong on stderr.
        let _ = stdin.write_all(input);
    }
    child.wait_with_output().map_err(|e| format!("{name}: {e}"))
}
