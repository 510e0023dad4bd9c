//! Delegation (SPEC.md "Delegated plugins"): find a plugin by type in
//! `CNI_PATH` and run it with the caller's configuration and environment,
//! only `CNI_COMMAND` changed. A delegate's CNI error is passed on unchanged.

use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};
use std::time::Duration;

use crate::error::{Code, Error, Result};
use crate::skel::{CmdArgs, Command};
use crate::types::Success;
use crate::version::SpecVersion;

/// How often a `text file busy` exec is retried (a plugin binary being
/// replaced while we start it), one second apart, like libcni.
const TEXT_BUSY_RETRIES: u32 = 5;

/// Find `plugin` in the directories of `paths` (first regular file wins).
///
/// # Errors
/// Code 7 for an empty name, a name with `/`, or a plugin that is not found.
pub fn find_in_path(plugin: &str, paths: &[PathBuf]) -> Result<PathBuf> {
    if plugin.is_empty() {
        return Err(Error::invalid_config("no plugin name provided"));
    }
    if plugin.contains('/') || plugin == "." || plugin == ".." {
        return Err(Error::invalid_config(format!(
            "invalid plugin name: {plugin:?}"
        )));
    }
    paths
        .iter()
        .map(|dir| dir.join(plugin))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            Error::invalid_config(format!(
                "failed to find plugin {plugin:?} in path {:?}",
                paths
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
            ))
        })
}

/// Run IPAM (or any delegate) ADD and return its result.
///
/// # Errors
/// The delegate's own CNI error, unchanged; code 7 if it is not found.
pub fn delegate_add(plugin: &str, args: &CmdArgs, version: SpecVersion) -> Result<Success> {
    let out = exec(plugin, Command::Add, args)?;
    Success::from_slice(&out, version).map_err(|e| e.context(format!("result of {plugin}")))
}

/// Run a delegate's DEL, CHECK, STATUS or GC.
///
/// # Errors
/// The delegate's own CNI error, unchanged; code 7 if it is not found.
pub fn delegate(plugin: &str, command: Command, args: &CmdArgs) -> Result<()> {
    exec(plugin, command, args).map(|_| ())
}

/// The `CNI_*` parameters of one plugin run (besides `CNI_COMMAND`). Empty
/// strings are passed as empty variables, as libcni does for GC and STATUS.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExecParams<'a> {
    /// `CNI_CONTAINERID`.
    pub container_id: &'a str,
    /// `CNI_NETNS`.
    pub netns: &'a OsStr,
    /// `CNI_IFNAME`.
    pub ifname: &'a str,
    /// `CNI_ARGS`, already joined as `K=V;K2=V2`.
    pub cni_args: &'a str,
    /// `CNI_PATH`, already joined with `:`.
    pub path: &'a OsStr,
}

fn exec(plugin: &str, command: Command, args: &CmdArgs) -> Result<Vec<u8>> {
    let bin = find_in_path(plugin, &args.path)?;
    let path = std::env::join_paths(&args.path)
        .map_err(|e| Error::invalid_env(format!("invalid CNI_PATH entry: {e}")))?;
    let params = ExecParams {
        container_id: &args.container_id,
        netns: args
            .netns
            .as_deref()
            .map(Path::as_os_str)
            .unwrap_or_default(),
        ifname: &args.ifname,
        cni_args: &args.args,
        path: &path,
    };
    exec_plugin(&bin, command, &params, &args.stdin)
}

/// Run the plugin binary `bin` the way libcni does: this process's
/// environment plus the `CNI_*` variables, `stdin` on its stdin. Its stderr is
/// passed on to ours; `text file busy` is retried.
///
/// # Errors
/// The CNI error the plugin printed, unchanged; when it printed none, code 999
/// naming the exit status with its stderr/stdout as details; code 5 when it
/// cannot be started.
pub fn exec_plugin(
    bin: &Path,
    command: Command,
    params: &ExecParams<'_>,
    stdin: &[u8],
) -> Result<Vec<u8>> {
    let output = spawn_with_retry(bin, command, params, stdin)?;
    if !output.stderr.is_empty() {
        let _ = std::io::stderr().write_all(&output.stderr);
    }
    if output.status.success() {
        return Ok(output.stdout);
    }
    Err(plugin_error(bin, &output))
}

fn spawn_with_retry(
    bin: &Path,
    command: Command,
    params: &ExecParams<'_>,
    stdin: &[u8],
) -> Result<std::process::Output> {
    let mut attempt = 0;
    loop {
        match spawn(bin, command, params, stdin) {
            Err(e)
                if e.kind() == std::io::ErrorKind::ExecutableFileBusy
                    && attempt < TEXT_BUSY_RETRIES =>
            {
                attempt += 1;
                std::thread::sleep(Duration::from_secs(1));
            }
            Err(e) => {
                return Err(Error::new(
                    Code::Io,
                    format!("failed to run plugin {}: {e}", bin.display()),
                ));
            }
            Ok(out) => return Ok(out),
        }
    }
}

fn spawn(
    bin: &Path,
    command: Command,
    params: &ExecParams<'_>,
    stdin: &[u8],
) -> std::io::Result<std::process::Output> {
    let mut child = Process::new(bin)
        .env("CNI_COMMAND", command.as_str())
        .env("CNI_CONTAINERID", params.container_id)
        .env("CNI_NETNS", params.netns)
        .env("CNI_IFNAME", params.ifname)
        .env("CNI_ARGS", params.cni_args)
        .env("CNI_PATH", params.path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let pipe = child.stdin.take();
    let bytes = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        if let Some(mut p) = pipe {
            // A plugin that exits without reading stdin gives EPIPE: its exit
            // status tells the story.
            let _ = p.write_all(&bytes);
        }
    });
    let out = child.wait_with_output();
    let _ = writer.join();
    out
}

fn plugin_error(bin: &Path, output: &std::process::Output) -> Error {
    if let Ok(e) = serde_json::from_slice::<Error>(&output.stdout) {
        return e;
    }
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    let stdout = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let details = [stderr, stdout]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("\n");
    let name = bin.file_name().map_or_else(
        || bin.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    Error::internal(format!(
        "plugin {name} failed ({}) without a CNI error",
        output.status
    ))
    .with_details(details)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn args(dir: &Path, stdin: &str) -> CmdArgs {
        CmdArgs {
            command: Command::Add,
            container_id: "ctr1".into(),
            netns: Some("/var/run/netns/x".into()),
            ifname: "eth0".into(),
            args: "IgnoreUnknown=1".into(),
            path: vec![PathBuf::from("/nonexistent"), dir.to_path_buf()],
            stdin: stdin.as_bytes().to_vec(),
        }
    }

    fn script(dir: &Path, name: &str, body: &str) {
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn find_rejects_bad_names() {
        assert_eq!(
            find_in_path("", &[]).unwrap_err().msg,
            "no plugin name provided"
        );
        assert!(
            find_in_path("../bin/sh", &[])
                .unwrap_err()
                .msg
                .contains("invalid plugin name")
        );
        let e = find_in_path("nope", &[PathBuf::from("/nonexistent")]).unwrap_err();
        assert_eq!(e.code, 7);
        assert!(
            e.msg.contains("failed to find plugin \"nope\""),
            "{}",
            e.msg
        );
    }

    #[test]
    fn add_passes_env_and_stdin_and_parses_result() {
        let dir = tempfile::tempdir().unwrap();
        // Echo back what the delegate saw, as a 0.4.0 result.
        script(
            dir.path(),
            "fake-ipam",
            r#"in=$(cat)
[ "$in" = '{"name":"n"}' ] || { echo '{"code":7,"msg":"bad stdin"}'; exit 1; }
[ "$CNI_COMMAND" = ADD ] && [ "$CNI_CONTAINERID" = ctr1 ] && [ "$CNI_IFNAME" = eth0 ] \
  && [ "$CNI_NETNS" = /var/run/netns/x ] && [ "$CNI_ARGS" = IgnoreUnknown=1 ] \
  || { echo '{"code":4,"msg":"bad env"}'; exit 1; }
echo '{"cniVersion":"0.4.0","ips":[{"version":"4","address":"10.1.0.2/24","gateway":"10.1.0.1"}],"dns":{}}'"#,
        );
        let r = delegate_add(
            "fake-ipam",
            &args(dir.path(), r#"{"name":"n"}"#),
            crate::version::V1_0_0,
        )
        .unwrap();
        assert_eq!(r.ips[0].address.to_string(), "10.1.0.2/24");
        assert_eq!(r.ips[0].gateway.unwrap().to_string(), "10.1.0.1");
    }

    #[test]
    fn delegate_error_is_passed_on_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        script(
            dir.path(),
            "fail",
            r#"echo '{"cniVersion":"1.0.0","code":11,"msg":"busy","details":"lock"}'; exit 1"#,
        );
        let e = delegate("fail", Command::Del, &args(dir.path(), "{}")).unwrap_err();
        assert_eq!(e, Error::try_again("busy").with_details("lock"));
    }

    #[test]
    fn delegate_failure_without_error_object_keeps_stderr() {
        let dir = tempfile::tempdir().unwrap();
        script(dir.path(), "crash", "echo boom >&2; exit 3");
        let e = delegate("crash", Command::Check, &args(dir.path(), "{}")).unwrap_err();
        assert_eq!(e.code, 999);
        assert!(e.details.contains("boom"), "{e:?}");
    }

    #[test]
    fn command_is_overridden() {
        let dir = tempfile::tempdir().unwrap();
        script(
            dir.path(),
            "cmd",
            r#"[ "$CNI_COMMAND" = GC ] || { echo '{"code":4,"msg":"wrong"}'; exit 1; }"#,
        );
        delegate("cmd", Command::Gc, &args(dir.path(), "{}")).unwrap();
    }
}
