//! Delegation (SPEC.md "Delegated plugins"): find a plugin by type in
//! `CNI_PATH` and run it with the caller's configuration and environment,
//! only `CNI_COMMAND` changed. A delegate's CNI error is passed on unchanged.
//!
//! # Built-in delegates
//!
//! A plugin may link another plugin's library and [`register_builtin`] it
//! (bridge does so with host-local). Delegation still resolves the plugin
//! in `CNI_PATH` exactly as for exec (first match wins); when the file
//! found is executable by us and carries the registered built-in's
//! [`Identity`], the built-in runs in-process instead of being exec'd
//! (saving the exec, pipes and start-up, about 2 ms): with the environment
//! the spawned plugin would get (this process's plus the same `CNI_*`
//! values), the same stdin bytes, its stdout captured and its stderr passed
//! on, and the status and stdout handled exactly as a spawned plugin's, so
//! results and errors are the same bytes. Anything unexpected (not ELF, no
//! identity or another one, a wrapper script, the reference plugin, a file
//! we may not execute) means exec; so does [`FORCE_EXEC_ENV`]
//! (`CNI_IPAM_EXEC=1`).
//!
//! The identity is a build-time digest of the plugin's code and build
//! settings (`crates/ipam/build.rs`): the library exposes it as a
//! constant and the executable carries it in an ELF note (owner `cni-rs`,
//! type [`NOTE_TYPE`], section [`NOTE_SECTION`], embedded with
//! [`identity_note!`](crate::identity_note)). The linker puts notes in a
//! `PT_NOTE` segment at the start of the file, next to the GNU build-id
//! (`readelf -n` shows it), so [`read_identity`] costs an `open`, one
//! 4 KiB `pread` and a `close` (further bounded `pread`s only for unusual
//! layouts); the file is never read whole.
//!
//! One difference remains, for panics only: a panic inside an in-process
//! delegate ends this process with the delegate's code-999 error (release
//! builds abort on panic), where an exec'd delegate's panic would be
//! returned to the caller, which would roll back. A later DEL cleans up, as
//! after `kill -9`.

mod builtin;

use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command as Process, ExitStatus, Output, Stdio};
use std::time::Duration;

pub use builtin::{
    Builtin, Identity, IdentityNote, NOTE_NAME, NOTE_SECTION, NOTE_TYPE, RunFn, builtin_for,
    read_identity, register_builtin,
};

use crate::error::{Code, Error, Result};
use crate::skel::{CmdArgs, Command};
use crate::types::Success;
use crate::version::SpecVersion;

/// How often a `text file busy` exec is retried (a plugin binary being
/// replaced while we start it), one second apart, like libcni.
const TEXT_BUSY_RETRIES: u32 = 5;

/// Set to `1` or `true`, delegates are always exec'd, never run in-process
/// as built-ins (for debugging and tests).
pub const FORCE_EXEC_ENV: &str = "CNI_IPAM_EXEC";

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
    pub cni_args: &'a OsStr,
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
    if let Some(builtin) = in_process_candidate(plugin, &bin, &params) {
        let output = run_builtin(&builtin, command, &params, &args.stdin);
        return finish(&bin, output);
    }
    exec_plugin(&bin, command, &params, &args.stdin)
}

/// The built-in to run instead of exec'ing `bin`, when allowed and
/// provably the same (module docs); the decision is logged at debug level.
fn in_process_candidate(plugin: &str, bin: &Path, params: &ExecParams<'_>) -> Option<Builtin> {
    let builtin = builtin::registered(plugin)?;
    let strings = [params.container_id, params.ifname];
    let os = [params.netns, params.path, params.cni_args];
    let decision = if std::env::var(FORCE_EXEC_ENV)
        .is_ok_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true"))
    {
        Err("CNI_IPAM_EXEC is set")
    } else if strings.iter().any(|s| s.contains('\0'))
        || os.iter().any(|s| s.as_encoded_bytes().contains(&0))
    {
        // exec cannot pass it and fails the spawn: leave that to it
        Err("a CNI_* value holds a NUL byte")
    } else {
        builtin::same_build(&builtin, bin)
    };
    match decision {
        Ok(()) => {
            log::debug!(
                "built-in delegate {plugin}: in-process, {} is the same build",
                bin.display()
            );
            Some(builtin)
        }
        Err(why) => {
            log::debug!("built-in delegate {plugin}: exec {}: {why}", bin.display());
            None
        }
    }
}

/// Run `builtin` in-process as [`spawn`] would run its binary: this
/// process's environment with the same `CNI_*` overrides, `stdin` as its
/// stdin, stdout and stderr captured. The skel's process globals (the
/// version the panic hook names, the log prefix) are the delegate's for the
/// call and restored afterwards.
fn run_builtin(
    builtin: &Builtin,
    command: Command,
    params: &ExecParams<'_>,
    stdin: &[u8],
) -> Output {
    let env = |key: &str| -> Option<OsString> {
        match key {
            "CNI_COMMAND" => Some(command.as_str().into()),
            "CNI_CONTAINERID" => Some(params.container_id.into()),
            "CNI_NETNS" => Some(params.netns.to_owned()),
            "CNI_IFNAME" => Some(params.ifname.into()),
            "CNI_ARGS" => Some(params.cni_args.to_owned()),
            "CNI_PATH" => Some(params.path.to_owned()),
            _ => std::env::var_os(key),
        }
    };
    let mut input = stdin;
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let code = crate::skel::as_delegate(builtin.name, || {
        (builtin.run)(&env, &mut input, &mut stdout, &mut stderr)
    });
    Output {
        // What waitpid reports for exit(code).
        status: ExitStatus::from_raw((code & 0xff) << 8),
        stdout,
        stderr,
    }
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
    finish(bin, output)
}

/// What a plugin run ends in: its stderr passed on, its stdout on success,
/// else its CNI error.
fn finish(bin: &Path, output: Output) -> Result<Vec<u8>> {
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
) -> Result<Output> {
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
) -> std::io::Result<Output> {
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

fn plugin_error(bin: &Path, output: &Output) -> Error {
    if let Ok(e) = crate::gojson::from_slice::<Error>(&output.stdout) {
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

    /// One ELF note, padded to `align`.
    fn note(name: &[u8], n_type: u32, desc: &[u8], align: usize, be: bool) -> Vec<u8> {
        let u32b = |v: u32| if be { v.to_be_bytes() } else { v.to_le_bytes() };
        let pad = |v: &mut Vec<u8>| v.resize(v.len().div_ceil(align) * align, 0);
        let mut v = Vec::new();
        v.extend(u32b(u32::try_from(name.len()).unwrap()));
        v.extend(u32b(u32::try_from(desc.len()).unwrap()));
        v.extend(u32b(n_type));
        v.extend(name);
        pad(&mut v);
        v.extend(desc);
        pad(&mut v);
        v
    }

    /// A synthetic ELF file: program headers at `phoff` (one PT_LOAD, then
    /// one PT_NOTE per `(offset, align, bytes)`), the notes at their offsets.
    fn elf(wide: bool, be: bool, phoff: u64, notes: &[(u64, u64, Vec<u8>)]) -> Vec<u8> {
        let u16b = |v: u16| if be { v.to_be_bytes() } else { v.to_le_bytes() };
        let u32b = |v: u32| if be { v.to_be_bytes() } else { v.to_le_bytes() };
        let u64b = |v: u64| if be { v.to_be_bytes() } else { v.to_le_bytes() };
        let mut f = vec![0u8; if wide { 64 } else { 52 }];
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = if wide { 2 } else { 1 };
        f[5] = if be { 2 } else { 1 };
        f[6] = 1;
        let phnum = u16::try_from(notes.len() + 1).unwrap();
        let mut phdrs = Vec::new();
        let mut ph = |p_type: u32, off: u64, size: u64, align: u64| {
            if wide {
                phdrs.extend(u32b(p_type));
                phdrs.extend(u32b(4));
                phdrs.extend(u64b(off));
                phdrs.extend(u64b(off));
                phdrs.extend(u64b(off));
                phdrs.extend(u64b(size));
                phdrs.extend(u64b(size));
                phdrs.extend(u64b(align));
            } else {
                let w = |v: u64| u32b(u32::try_from(v).unwrap());
                phdrs.extend(u32b(p_type));
                phdrs.extend(w(off));
                phdrs.extend(w(off));
                phdrs.extend(w(off));
                phdrs.extend(w(size));
                phdrs.extend(w(size));
                phdrs.extend(u32b(4));
                phdrs.extend(w(align));
            }
        };
        ph(1, 0, 0x1000, 0x1000);
        for (off, align, bytes) in notes {
            ph(4, *off, u64::try_from(bytes.len()).unwrap(), *align);
        }
        if wide {
            f[0x20..0x28].copy_from_slice(&u64b(phoff));
            f[0x36..0x38].copy_from_slice(&u16b(56));
            f[0x38..0x3a].copy_from_slice(&u16b(phnum));
        } else {
            f[0x1c..0x20].copy_from_slice(&u32b(u32::try_from(phoff).unwrap()));
            f[0x2a..0x2c].copy_from_slice(&u16b(32));
            f[0x2c..0x2e].copy_from_slice(&u16b(phnum));
        }
        let mut put = |off: u64, bytes: &[u8]| {
            let off = usize::try_from(off).unwrap();
            if f.len() < off + bytes.len() {
                f.resize(off + bytes.len(), 0);
            }
            f[off..off + bytes.len()].copy_from_slice(bytes);
        };
        put(phoff, &phdrs);
        for (off, _, bytes) in notes {
            put(*off, bytes);
        }
        // Some "code" after the headers, like a real binary.
        put(0x3000, &[0xcc; 64]);
        f
    }

    const ID: Identity = *b"0123456789abcdef";

    fn our_note(id: &Identity, be: bool) -> Vec<u8> {
        note(NOTE_NAME, NOTE_TYPE, id, 4, be)
    }

    fn write_file(dir: &Path, name: &str, bytes: &[u8], mode: u32) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn identity_note_has_the_elf_layout() {
        let n = IdentityNote::new(ID);
        assert_eq!(n.identity(), ID);
        assert_eq!(size_of::<IdentityNote>(), 12 + 8 + 16);
        assert_eq!(align_of::<IdentityNote>(), 4);
        assert_eq!(NOTE_SECTION, ".note.cni-rs.identity");
    }

    #[test]
    fn identity_is_read_from_every_elf_layout() {
        let dir = tempfile::tempdir().unwrap();
        let gnu = note(b"GNU\0", 5, &[0u8; 16], 8, false);
        let cases: Vec<(&str, Vec<u8>)> = vec![
            (
                "elf64-le",
                elf(true, false, 64, &[(0x200, 4, our_note(&ID, false))]),
            ),
            (
                "elf64-be",
                elf(true, true, 64, &[(0x200, 4, our_note(&ID, true))]),
            ),
            (
                "elf32-le",
                elf(false, false, 52, &[(0x200, 4, our_note(&ID, false))]),
            ),
            (
                "elf32-be",
                elf(false, true, 52, &[(0x200, 4, our_note(&ID, true))]),
            ),
            (
                // after other notes in the same segment, and after an
                // 8-aligned GNU property segment
                "after-others",
                elf(
                    true,
                    false,
                    64,
                    &[
                        (0x200, 8, gnu.clone()),
                        (0x300, 4, {
                            let mut v = note(b"GNU\0", 1, &[1, 2, 3, 4, 5], 4, false);
                            v.extend(our_note(&ID, false));
                            v
                        }),
                    ],
                ),
            ),
            // beyond the first read: a second (bounded) pread
            (
                "notes-far",
                elf(true, false, 64, &[(0x5000, 4, our_note(&ID, false))]),
            ),
            (
                "phdrs-far",
                elf(true, false, 0x6000, &[(0x200, 4, our_note(&ID, false))]),
            ),
        ];
        for (name, bytes) in &cases {
            let p = write_file(dir.path(), name, bytes, 0o755);
            assert_eq!(read_identity(&p), Some(ID), "{name}");
        }
    }

    #[test]
    fn no_identity_without_our_note() {
        let dir = tempfile::tempdir().unwrap();
        let full = elf(true, false, 64, &[(0x200, 4, our_note(&ID, false))]);
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("empty", Vec::new()),
            (
                "script",
                b"#!/bin/sh\nexec /usr/lib/cni/host-local\n".to_vec(),
            ),
            ("not-elf", vec![0x7f, b'E', b'L', b'X', 2, 1, 1, 0]),
            ("header-only", full[..40].to_vec()),
            // a Go binary: notes, none of ours
            (
                "go-like",
                elf(
                    true,
                    false,
                    64,
                    &[(0x200, 4, note(b"Go\0\0", 4, b"buildid", 4, false))],
                ),
            ),
            (
                "other-owner",
                elf(
                    true,
                    false,
                    64,
                    &[(0x200, 4, note(b"cni-rz\0", NOTE_TYPE, &ID, 4, false))],
                ),
            ),
            (
                "other-type",
                elf(
                    true,
                    false,
                    64,
                    &[(0x200, 4, note(NOTE_NAME, NOTE_TYPE + 1, &ID, 4, false))],
                ),
            ),
            (
                "short-desc",
                elf(
                    true,
                    false,
                    64,
                    &[(0x200, 4, note(NOTE_NAME, NOTE_TYPE, &ID[..8], 4, false))],
                ),
            ),
            ("truncated-note", full[..0x200 + 20].to_vec()),
            (
                "huge-segment",
                elf(
                    true,
                    false,
                    64,
                    &[(0x200, 4, {
                        let mut v = vec![0u8; 70_000];
                        v.extend(our_note(&ID, false));
                        v
                    })],
                ),
            ),
        ];
        for (name, bytes) in &cases {
            let p = write_file(dir.path(), name, bytes, 0o755);
            assert_eq!(read_identity(&p), None, "{name}");
        }
        assert_eq!(read_identity(&dir.path().join("missing")), None);
        assert_eq!(read_identity(dir.path()), None, "a directory");
    }

    /// A built-in that checks what a spawned plugin would have seen and
    /// answers like a plugin: a 0.4.0 result, or an error object.
    fn fake_builtin(
        env: &dyn Fn(&str) -> Option<OsString>,
        stdin: &mut dyn std::io::Read,
        stdout: &mut dyn Write,
        _stderr: &mut dyn Write,
    ) -> i32 {
        let mut input = String::new();
        let _ = stdin.read_to_string(&mut input);
        let get = |k: &str| env(k).unwrap_or_default().to_string_lossy().into_owned();
        let path_ok = get("CNI_PATH").split(':').any(|p| p.ends_with("/bin-dir"));
        let ok = get("CNI_CONTAINERID") == "ctr1"
            && get("CNI_IFNAME") == "eth0"
            && get("CNI_NETNS") == "/var/run/netns/x"
            && get("CNI_ARGS") == "IgnoreUnknown=1"
            && path_ok
            && env("PATH") == std::env::var_os("PATH");
        if !ok {
            let _ = stdout.write_all(br#"{"code":4,"msg":"bad env"}"#);
            return 1;
        }
        match (get("CNI_COMMAND").as_str(), input.as_str()) {
            ("ADD", r#"{"name":"n"}"#) => {
                let _ = stdout.write_all(
                    br#"{"cniVersion":"0.4.0","ips":[{"version":"4","address":"10.9.0.2/24"}]}"#,
                );
                0
            }
            ("DEL", _) => 0,
            ("CHECK", _) => {
                let _ = stdout.write_all(
                    br#"{"cniVersion":"1.0.0","code":11,"msg":"busy","details":"lock"}"#,
                );
                1
            }
            // exits with a status and no error object
            ("GC", _) => 3,
            _ => {
                let _ = stdout.write_all(br#"{"code":4,"msg":"bad command or stdin"}"#);
                1
            }
        }
    }

    fn builtin_args(dir: &Path, stdin: &str) -> CmdArgs {
        let mut a = args(dir, stdin);
        a.path = vec![PathBuf::from("/nonexistent"), dir.to_path_buf()];
        a
    }

    #[test]
    fn matching_builtin_runs_in_process_with_the_spawned_environment() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("bin-dir");
        std::fs::create_dir(&dir).unwrap();
        register_builtin(Builtin {
            name: "fake-builtin-a",
            identity: ID,
            run: fake_builtin,
        });
        // Not runnable by the kernel (exec fails with ENOEXEC): any success
        // below proves it ran in-process.
        write_file(
            &dir,
            "fake-builtin-a",
            &elf(true, false, 64, &[(0x200, 4, our_note(&ID, false))]),
            0o755,
        );
        let r = delegate_add(
            "fake-builtin-a",
            &builtin_args(&dir, r#"{"name":"n"}"#),
            crate::version::V1_0_0,
        )
        .unwrap();
        assert_eq!(r.ips[0].address.to_string(), "10.9.0.2/24");
        delegate("fake-builtin-a", Command::Del, &builtin_args(&dir, "{}")).unwrap();
        // Errors are handled like a spawned plugin's: the error object
        // unchanged, or a status without one as code 999.
        let e = delegate("fake-builtin-a", Command::Check, &builtin_args(&dir, "{}")).unwrap_err();
        assert_eq!(e, Error::try_again("busy").with_details("lock"));
        let e = delegate("fake-builtin-a", Command::Gc, &builtin_args(&dir, "{}")).unwrap_err();
        assert_eq!(e.code, 999);
        assert_eq!(
            e.msg,
            "plugin fake-builtin-a failed (exit status: 3) without a CNI error"
        );
    }

    #[test]
    fn identity_mismatch_or_no_exec_permission_means_exec() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("bin-dir");
        std::fs::create_dir(&dir).unwrap();
        register_builtin(Builtin {
            name: "fake-builtin-b",
            identity: ID,
            run: fake_builtin,
        });
        let mut other = ID;
        other[15] ^= 1;
        let cases = [
            (
                "other identity",
                elf(true, false, 64, &[(0x200, 4, our_note(&other, false))]),
                0o755,
            ),
            ("no note", elf(true, false, 64, &[]), 0o755),
            (
                "not executable",
                elf(true, false, 64, &[(0x200, 4, our_note(&ID, false))]),
                0o644,
            ),
        ];
        for (what, bytes, mode) in cases {
            write_file(&dir, "fake-builtin-b", &bytes, mode);
            // exec'd: the kernel refuses the synthetic file
            let e =
                delegate("fake-builtin-b", Command::Del, &builtin_args(&dir, "{}")).unwrap_err();
            assert_eq!(e.code, 5, "{what}: {e:?}");
            assert!(e.msg.starts_with("failed to run plugin"), "{what}: {e:?}");
        }
        // A wrapper script of the same name is exec'd (and its answer used).
        script(
            &dir,
            "fake-builtin-b",
            r#"echo '{"code":7,"msg":"from the script"}'; exit 1"#,
        );
        let e = delegate("fake-builtin-b", Command::Del, &builtin_args(&dir, "{}")).unwrap_err();
        assert_eq!(e.msg, "from the script");
        // An unregistered name is never run in-process.
        write_file(
            &dir,
            "fake-unregistered",
            &elf(true, false, 64, &[(0x200, 4, our_note(&ID, false))]),
            0o755,
        );
        let e = delegate("fake-unregistered", Command::Del, &builtin_args(&dir, "{}")).unwrap_err();
        assert_eq!(e.code, 5, "{e:?}");
    }

    #[test]
    fn first_match_in_cni_path_decides() {
        let root = tempfile::tempdir().unwrap();
        let (first, second) = (root.path().join("first"), root.path().join("bin-dir"));
        std::fs::create_dir(&first).unwrap();
        std::fs::create_dir(&second).unwrap();
        register_builtin(Builtin {
            name: "fake-builtin-c",
            identity: ID,
            run: fake_builtin,
        });
        write_file(
            &second,
            "fake-builtin-c",
            &elf(true, false, 64, &[(0x200, 4, our_note(&ID, false))]),
            0o755,
        );
        script(
            &first,
            "fake-builtin-c",
            r#"echo '{"code":7,"msg":"first"}'; exit 1"#,
        );
        let mut a = builtin_args(&second, "{}");
        a.path = vec![first.clone(), second.clone()];
        assert_eq!(
            delegate("fake-builtin-c", Command::Del, &a)
                .unwrap_err()
                .msg,
            "first"
        );
        a.path = vec![second, first];
        delegate("fake-builtin-c", Command::Del, &a).unwrap();
    }

    fn version_reporter(
        _env: &dyn Fn(&str) -> Option<OsString>,
        _stdin: &mut dyn std::io::Read,
        stdout: &mut dyn Write,
        _stderr: &mut dyn Write,
    ) -> i32 {
        // What the panic hook would name inside the delegate.
        crate::skel::remember_version(&format!("{}-seen", crate::skel::output_version()));
        let _ = stdout.write_all(crate::skel::output_version().as_bytes());
        1
    }

    #[test]
    fn skel_globals_are_the_delegates_during_the_call_and_restored() {
        let dir = tempfile::tempdir().unwrap();
        register_builtin(Builtin {
            name: "fake-builtin-d",
            identity: ID,
            run: version_reporter,
        });
        write_file(
            dir.path(),
            "fake-builtin-d",
            &elf(true, false, 64, &[(0x200, 4, our_note(&ID, false))]),
            0o755,
        );
        crate::skel::remember_version("0.3.1");
        let e = delegate("fake-builtin-d", Command::Del, &args(dir.path(), "{}")).unwrap_err();
        // a fresh process: nothing remembered, so the latest version
        assert_eq!(e.details, format!("{}-seen", crate::version::LATEST));
        assert_eq!(crate::skel::output_version(), "0.3.1");
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
