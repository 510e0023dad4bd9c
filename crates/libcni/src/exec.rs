//! Running one plugin binary the way libcni's `invoke` package does: the
//! runtime's environment plus the six `CNI_*` variables, the configuration
//! on stdin, the result (or a CNI error) on stdout. The plugin's stderr is
//! captured and then passed on to ours.

use std::io::Write;
use std::path::Path;
use std::process::{Command as Process, Output, Stdio};
use std::time::Duration;

use cni::{Code, Command};

/// How often a `text file busy` exec is retried, one second apart.
const TEXT_BUSY_RETRIES: u32 = 5;

/// The `CNI_*` parameters of one plugin run.
#[derive(Debug, Clone, Default)]
pub(crate) struct ExecArgs<'a> {
    pub container_id: &'a str,
    pub netns: &'a str,
    pub ifname: &'a str,
    /// Already joined as `K=V;K2=V2`.
    pub cni_args: String,
    /// Already joined with `:`.
    pub path: String,
}

/// Run `plugin` with `command` and `stdin`; return its stdout on success.
///
/// # Errors
/// The CNI error the plugin printed, unchanged; when it printed none, a
/// code-999 error naming the exit status with stderr/stdout as details; code 5
/// when it cannot be started.
pub(crate) fn exec_plugin(
    plugin: &Path,
    command: Command,
    args: &ExecArgs<'_>,
    stdin: &[u8],
) -> cni::Result<Vec<u8>> {
    let mut attempt = 0;
    let output = loop {
        match spawn(plugin, command, args, stdin) {
            Err(e)
                if e.kind() == std::io::ErrorKind::ExecutableFileBusy
                    && attempt < TEXT_BUSY_RETRIES =>
            {
                attempt += 1;
                std::thread::sleep(Duration::from_secs(1));
            }
            Err(e) => {
                return Err(cni::Error::new(
                    Code::Io,
                    format!("failed to run plugin {}: {e}", plugin.display()),
                ));
            }
            Ok(out) => break out,
        }
    };
    if !output.stderr.is_empty() {
        let _ = std::io::stderr().write_all(&output.stderr);
    }
    if output.status.success() {
        return Ok(output.stdout);
    }
    Err(plugin_error(&output))
}

fn spawn(
    plugin: &Path,
    command: Command,
    args: &ExecArgs<'_>,
    stdin: &[u8],
) -> std::io::Result<Output> {
    let mut child = Process::new(plugin)
        .env("CNI_COMMAND", command.as_str())
        .env("CNI_CONTAINERID", args.container_id)
        .env("CNI_NETNS", args.netns)
        .env("CNI_IFNAME", args.ifname)
        .env("CNI_ARGS", &args.cni_args)
        .env("CNI_PATH", &args.path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let pipe = child.stdin.take();
    let bytes = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        if let Some(mut p) = pipe {
            // A plugin that exits without reading stdin gives EPIPE here;
            // its exit status tells the story.
            let _ = p.write_all(&bytes);
        }
    });
    let out = child.wait_with_output();
    let _ = writer.join();
    out
}

fn plugin_error(output: &Output) -> cni::Error {
    if let Ok(e) = serde_json::from_slice::<cni::Error>(&output.stdout) {
        return e;
    }
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    let stdout = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let details = [stderr, stdout]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("\n");
    let msg = if details.is_empty() {
        format!("netplugin failed with no error message: {}", output.status)
    } else {
        format!("netplugin failed: {}", output.status)
    };
    cni::Error::internal(msg).with_details(details)
}
