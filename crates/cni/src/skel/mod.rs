//! The plugin entry point (SPEC.md "Protocol parameters" and "Errors";
//! the Go library's `pkg/skel`).
//!
//! [`run`] is the whole `main` of a plugin. It reads the `CNI_*` variables,
//! validates exactly what the command needs, reads the configuration from
//! stdin (bounded), applies the version gates, checks that `CNI_NETNS` is not
//! the plugin's own namespace *before* any work, calls the [`Plugin`], and
//! prints one JSON document: the result, or an error object with exit
//! status 1. A panic also ends as an error object (code 999), never a bare
//! backtrace. [`dispatch`] is the same without process globals, for tests.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::args::CniArgs;
use crate::conf::NetConf;
use crate::error::{Code, Error, Result};
use crate::gojson;
use crate::types::Success;
use crate::version::{ALL, LATEST, SpecVersion, require_supported};

/// Largest configuration accepted on stdin.
pub const MAX_STDIN_BYTES: usize = 8 << 20;

/// The version the plugins (and `cnitool --version`) print: `CNI_RS_VERSION` at build
/// time when set (`make release` and `make dist` set it from `git describe`), else the
/// workspace version. Only those targets set it, so other builds do not rebuild when it
/// changes.
pub const VERSION: &str = match option_env!("CNI_RS_VERSION") {
    Some(v) if !v.is_empty() => v,
    _ => env!("CARGO_PKG_VERSION"),
};

/// A CNI command (`CNI_COMMAND`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    /// Attach a container.
    Add,
    /// Detach a container.
    Del,
    /// Verify an attachment (0.4.0+).
    Check,
    /// Report readiness (1.1.0+).
    Status,
    /// Collect garbage (1.1.0+).
    Gc,
    /// Report supported versions.
    Version,
}

impl Command {
    /// Parse a `CNI_COMMAND` value.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "ADD" => Self::Add,
            "DEL" => Self::Del,
            "CHECK" => Self::Check,
            "STATUS" => Self::Status,
            "GC" => Self::Gc,
            "VERSION" => Self::Version,
            _ => return None,
        })
    }

    /// The `CNI_COMMAND` spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Add => "ADD",
            Self::Del => "DEL",
            Self::Check => "CHECK",
            Self::Status => "STATUS",
            Self::Gc => "GC",
            Self::Version => "VERSION",
        }
    }

    fn requires(self, var: &str) -> bool {
        match self {
            Self::Add | Self::Check => matches!(
                var,
                "CNI_CONTAINERID" | "CNI_NETNS" | "CNI_IFNAME" | "CNI_PATH"
            ),
            Self::Del => matches!(var, "CNI_CONTAINERID" | "CNI_IFNAME" | "CNI_PATH"),
            Self::Status | Self::Gc => var == "CNI_PATH",
            Self::Version => false,
        }
    }
}

/// The invocation's parameters, as validated by the skel.
#[derive(Debug, Clone)]
pub struct CmdArgs {
    /// The command.
    pub command: Command,
    /// `CNI_CONTAINERID` (empty for STATUS and GC).
    pub container_id: String,
    /// `CNI_NETNS`; `None` when unset or empty (allowed for DEL).
    pub netns: Option<PathBuf>,
    /// `CNI_IFNAME` (empty for STATUS and GC).
    pub ifname: String,
    /// `CNI_ARGS`, raw bytes; parse with [`CmdArgs::cni_args`].
    pub args: OsString,
    /// `CNI_PATH`, split on `:`.
    pub path: Vec<PathBuf>,
    /// The configuration bytes exactly as read, for delegation.
    pub stdin: Vec<u8>,
}

impl CmdArgs {
    /// `CNI_ARGS` parsed.
    ///
    /// # Errors
    /// Code 4 for a malformed `CNI_ARGS`.
    pub fn cni_args(&self) -> Result<CniArgs> {
        CniArgs::parse_os(&self.args)
    }
}

/// What a plugin implements. Only ADD, DEL and CHECK are mandatory; STATUS
/// and GC default to success.
pub trait Plugin {
    /// The plugin's own configuration keys.
    type Config: DeserializeOwned;

    /// The plugin's name, for the about text and logs.
    fn name(&self) -> &'static str;

    /// The spec versions this plugin accepts.
    fn supported_versions(&self) -> &[SpecVersion] {
        &ALL
    }

    /// ADD: attach and return the result (printed in the config's version).
    ///
    /// # Errors
    /// Any CNI error; the plugin must have rolled back what it changed.
    fn add(&self, args: &CmdArgs, conf: &NetConf<Self::Config>) -> Result<Success>;

    /// ADD's output: `result` in the layout of the configuration's version.
    /// Override only to reproduce a reference plugin's output exactly.
    ///
    /// # Errors
    /// As [`Success::to_json`] (the skel then rolls the ADD back with DEL).
    fn print_result(&self, result: &Success, conf: &NetConf<Self::Config>) -> Result<String> {
        result.to_json(conf.version)
    }

    /// DEL: detach; idempotent and best effort.
    ///
    /// # Errors
    /// Any CNI error.
    fn del(&self, args: &CmdArgs, conf: &NetConf<Self::Config>) -> Result<()>;

    /// CHECK: verify the attachment described by `prevResult`.
    ///
    /// # Errors
    /// Any CNI error describing what does not match.
    fn check(&self, args: &CmdArgs, conf: &NetConf<Self::Config>) -> Result<()>;

    /// STATUS: whether ADD can be served.
    ///
    /// # Errors
    /// Code 50 or 51 (or another CNI error).
    fn status(&self, _args: &CmdArgs, _conf: &NetConf<Self::Config>) -> Result<()> {
        Ok(())
    }

    /// GC: remove resources of attachments not in the valid list.
    ///
    /// # Errors
    /// Any CNI error; GC should continue past individual failures.
    fn gc(&self, _args: &CmdArgs, _conf: &NetConf<Self::Config>) -> Result<()> {
        Ok(())
    }
}

/// The version the error object names, remembered for the panic hook.
static OUTPUT_VERSION: Mutex<Option<String>> = Mutex::new(None);

pub(crate) fn remember_version(v: &str) {
    if let Ok(mut g) = OUTPUT_VERSION.lock() {
        *g = Some(v.to_owned());
    }
}

/// Run `f` in the state a freshly exec'd plugin named `name` starts in:
/// no remembered output version (so the panic hook names what the
/// delegate's would) and log lines prefixed with `name`. Both are restored
/// afterwards, also when `f` unwinds. For in-process delegation
/// ([`crate::invoke`]).
pub(crate) fn as_delegate<T>(name: &'static str, f: impl FnOnce() -> T) -> T {
    struct Restore {
        version: Option<String>,
        log_name: Option<&'static str>,
    }
    impl Drop for Restore {
        fn drop(&mut self) {
            if let Ok(mut g) = OUTPUT_VERSION.lock() {
                *g = self.version.take();
            }
            LOG_NAME.set(self.log_name);
        }
    }
    let _restore = Restore {
        version: OUTPUT_VERSION.lock().ok().and_then(|mut g| g.take()),
        log_name: LOG_NAME.replace(Some(name)),
    };
    f()
}

pub(crate) fn output_version() -> String {
    OUTPUT_VERSION
        .lock()
        .ok()
        .and_then(|g| g.clone())
        .unwrap_or_else(|| LATEST.to_string())
}

/// Run a plugin as the process's `main`: never returns.
pub fn run<P: Plugin>(plugin: &P) -> ! {
    run_then(plugin, || {})
}

/// [`run`], with `finish` called after the command's output is written and just before
/// the process exits (e.g. to hand kernel objects whose release is slow to a detached
/// helper).
pub fn run_then<P: Plugin>(plugin: &P, finish: impl FnOnce()) -> ! {
    init_logger(plugin.name());
    install_panic_hook();
    let env = |k: &str| std::env::var_os(k);
    // stdout and stderr are locked per write, never for the whole command: a plugin's
    // other threads log to stderr (and a panic on one of them writes the error to
    // stdout), which would block forever on a lock held by this thread.
    let code = dispatch(
        plugin,
        &env,
        &mut std::io::stdin().lock(),
        &mut std::io::stdout(),
        &mut std::io::stderr(),
    );
    finish();
    #[allow(clippy::exit, reason = "the skel owns the process exit status")]
    std::process::exit(code)
}

fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let err = Error::internal(format!("internal error: {info}"));
        let text = err.to_output(&output_version());
        let mut out = std::io::stdout();
        let _ = out.write_all(text.as_bytes());
        let _ = out.write_all(b"\n");
        let _ = out.flush();
        #[allow(
            clippy::exit,
            reason = "a panic must still end as a CNI error with status 1"
        )]
        std::process::exit(1)
    }));
}

/// Run one command with injected environment and stdio; returns the exit
/// status (0 or 1). This is [`run`] without process globals.
pub fn dispatch<P: Plugin>(
    plugin: &P,
    env: &dyn Fn(&str) -> Option<OsString>,
    stdin: &mut dyn Read,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> i32 {
    let Some(raw_command) = env("CNI_COMMAND")
        .filter(|c| !c.is_empty())
        .map(|c| c.to_string_lossy().into_owned())
    else {
        let _ = writeln!(stderr, "{}", about(plugin));
        return 0;
    };
    let mut version_for_errors = LATEST.to_string();
    match dispatch_inner(plugin, &raw_command, env, stdin, &mut version_for_errors) {
        Ok(Some(text)) => {
            let _ = stdout.write_all(text.as_bytes());
            let _ = stdout.write_all(b"\n");
            let _ = stdout.flush();
            0
        }
        Ok(None) => 0,
        Err(e) => {
            log::debug!("{} failed: {e}", raw_command);
            let text = e.to_output(&version_for_errors);
            let _ = stdout.write_all(text.as_bytes());
            let _ = stdout.write_all(b"\n");
            let _ = stdout.flush();
            1
        }
    }
}

/// The text printed on stderr when `CNI_COMMAND` is unset.
pub fn about<P: Plugin>(plugin: &P) -> String {
    let versions = plugin
        .supported_versions()
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "CNI {} plugin {} (rust-cni-plugins)\nCNI protocol versions supported: {versions}",
        plugin.name(),
        VERSION
    )
}

fn dispatch_inner<P: Plugin>(
    plugin: &P,
    raw_command: &str,
    env: &dyn Fn(&str) -> Option<OsString>,
    stdin: &mut dyn Read,
    version_for_errors: &mut String,
) -> Result<Option<String>> {
    let command = Command::parse(raw_command).ok_or_else(|| {
        Error::invalid_env(format!("unknown CNI_COMMAND: {raw_command}"))
            .with_details("CNI_COMMAND must be one of ADD, DEL, CHECK, STATUS, GC, VERSION")
    })?;
    let args = read_env(command, env)?;
    let bytes = read_stdin(stdin)?;

    if command == Command::Version {
        return version_reply(plugin, &bytes).map(Some);
    }

    let value: Value = gojson::parse_slice(&bytes)
        .map_err(|e| Error::decode(format!("error unmarshalling network config: {e}")))?;
    let Value::Object(map) = &value else {
        return Err(Error::decode("network config must be a JSON object"));
    };
    let raw_version = match gojson::get(map, "cniVersion") {
        // An empty string means 0.1.0, as in the Go skel.
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(other) => {
            return Err(Error::decode(format!(
                "cniVersion must be a string, got {other}"
            )));
        }
    };
    if let Some(raw) = raw_version.filter(|r| r.parse::<SpecVersion>().is_ok()) {
        raw.clone_into(version_for_errors);
    }
    validate_network_name(gojson::get(map, "name"))?;
    let version = require_supported(raw_version, plugin.supported_versions())?;
    *version_for_errors = version.to_string();
    remember_version(version_for_errors);
    gate(command, version)?;

    let mut conf = NetConf::<P::Config>::from_value(value)
        .map_err(|e| Error::invalid_config(format!("invalid network config: {e}")))?;
    conf.version = version;

    if matches!(command, Command::Add | Command::Del | Command::Check) {
        check_not_own_netns(args.netns.as_deref(), env)?;
    }

    let args = CmdArgs {
        stdin: bytes,
        ..args
    };
    match command {
        Command::Add => {
            let result = plugin.add(&args, &conf)?;
            match plugin.print_result(&result, &conf) {
                Ok(text) => Ok(Some(text)),
                Err(e) => {
                    // The plugin did its work but the result cannot be
                    // expressed in this version: undo it rather than leave
                    // an attachment the runtime does not know about.
                    if let Err(del_err) = plugin.del(&args, &conf) {
                        log::warn!("rollback after result conversion failure: {del_err}");
                    }
                    Err(e)
                }
            }
        }
        Command::Del => plugin.del(&args, &conf).map(|()| None),
        Command::Check => plugin.check(&args, &conf).map(|()| None),
        Command::Status => plugin.status(&args, &conf).map(|()| None),
        Command::Gc => plugin.gc(&args, &conf).map(|()| None),
        Command::Version => Err(Error::internal("VERSION handled above")),
    }
}

fn gate(command: Command, version: SpecVersion) -> Result<()> {
    let allowed = match command {
        Command::Check => version.allows_check(),
        Command::Status | Command::Gc => version.allows_status_and_gc(),
        _ => true,
    };
    if allowed {
        Ok(())
    } else {
        Err(Error::new(
            Code::IncompatibleVersion,
            format!("config version does not allow {}", command.as_str()),
        )
        .with_details(format!(
            "cniVersion {version} is too old for {}",
            command.as_str()
        )))
    }
}

fn version_reply<P: Plugin>(plugin: &P, bytes: &[u8]) -> Result<String> {
    let input_version = gojson::parse_slice(bytes)
        .ok()
        .and_then(|v| {
            gojson::get_in(&v, "cniVersion")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_else(|| LATEST.to_string());
    let supported: Vec<String> = plugin
        .supported_versions()
        .iter()
        .map(ToString::to_string)
        .collect();
    crate::pretty_json(&serde_json::json!({
        "cniVersion": input_version,
        "supportedVersions": supported,
    }))
}

fn read_stdin(stdin: &mut dyn Read) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    let limit = u64::try_from(MAX_STDIN_BYTES).unwrap_or(u64::MAX) + 1;
    stdin
        .take(limit)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io("error reading network config from stdin", &e))?;
    if bytes.len() > MAX_STDIN_BYTES {
        return Err(Error::new(
            Code::Io,
            format!("network config on stdin is larger than {MAX_STDIN_BYTES} bytes"),
        ));
    }
    Ok(bytes)
}

/// Validate the env vars in the reference order; missing required ones are
/// reported together, an invalid value at once.
fn read_env(command: Command, env: &dyn Fn(&str) -> Option<OsString>) -> Result<CmdArgs> {
    let get = |k: &str| env(k).unwrap_or_default();
    // The container ID and interface name are text: bytes that are not UTF-8
    // are invalid characters (checked here when the command needs the
    // variable, ignored otherwise, as an unset one is).
    let text = |k: &str| get(k).into_string();
    let mut missing = Vec::new();
    for var in ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"] {
        let value = get(var);
        if command.requires(var) {
            if value.is_empty() {
                missing.push(var);
                continue;
            }
            match var {
                "CNI_CONTAINERID" => {
                    validate_container_id(&value.to_string_lossy())?;
                }
                "CNI_IFNAME" => match value.to_str() {
                    Some(name) => validate_ifname(name)?,
                    None => {
                        return Err(Error::invalid_env(
                            "interface name is not valid UTF-8 (CNI_IFNAME)",
                        )
                        .with_details(value.to_string_lossy().into_owned()));
                    }
                },
                _ => {}
            }
        }
    }
    if !missing.is_empty() {
        return Err(Error::invalid_env(format!(
            "required env variables [{}] missing",
            missing.join(",")
        )));
    }
    let netns = Some(get("CNI_NETNS"))
        .filter(|s| !s.is_empty())
        .map(PathBuf::from);
    Ok(CmdArgs {
        command,
        container_id: text("CNI_CONTAINERID").unwrap_or_default(),
        netns,
        ifname: text("CNI_IFNAME").unwrap_or_default(),
        args: get("CNI_ARGS"),
        path: std::env::split_paths(&get("CNI_PATH"))
            .filter(|p| !p.as_os_str().is_empty())
            .collect(),
        stdin: Vec::new(),
    })
}

fn id_charset_ok(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Validate a container ID: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
///
/// # Errors
/// Code 4 naming `CNI_CONTAINERID`, with the ID as details.
pub fn validate_container_id(id: &str) -> Result<()> {
    if id_charset_ok(id) {
        Ok(())
    } else {
        Err(
            Error::invalid_env("invalid characters in containerID (CNI_CONTAINERID)")
                .with_details(id.to_owned()),
        )
    }
}

/// Validate an interface name: non-empty, at most 15 bytes, not `.` or
/// `..`, and no `/`, `:` or whitespace.
///
/// # Errors
/// Code 4 naming `CNI_IFNAME` and the rule broken.
pub fn validate_ifname(name: &str) -> Result<()> {
    let fail = |msg: &str, details: String| {
        Err(Error::invalid_env(format!("{msg} (CNI_IFNAME)")).with_details(details))
    };
    if name.is_empty() {
        return fail("interface name is empty", String::new());
    }
    if name.len() > 15 {
        return fail(
            "interface name is too long",
            format!("interface name should be less than 16 characters: {name:?}"),
        );
    }
    if name == "." || name == ".." {
        return fail("interface name is . or ..", name.to_owned());
    }
    if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        return fail(
            "interface name contains / or : or whitespace characters",
            name.to_owned(),
        );
    }
    Ok(())
}

fn validate_network_name(name: Option<&Value>) -> Result<()> {
    match name {
        None | Some(Value::Null) => Err(Error::invalid_config("missing network name")),
        Some(Value::String(s)) if s.is_empty() => {
            Err(Error::invalid_config("missing network name"))
        }
        Some(Value::String(s)) if id_charset_ok(s) => Ok(()),
        Some(Value::String(s)) => Err(Error::invalid_config(
            "invalid characters found in network name",
        )
        .with_details(s.clone())),
        Some(other) => Err(Error::invalid_config(format!(
            "network name must be a string, got {other}"
        ))),
    }
}

/// Refuse to work on the plugin's own network namespace (unless
/// `CNI_NETNS_OVERRIDE` is `1`/`true`). Checked before any change, unlike the
/// reference skel which checks after ADD/DEL already ran. An unreadable
/// `CNI_NETNS` is left for the plugin to report.
fn check_not_own_netns(netns: Option<&Path>, env: &dyn Fn(&str) -> Option<OsString>) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    if env("CNI_NETNS_OVERRIDE")
        .is_some_and(|v| matches!(v.to_ascii_lowercase().to_str(), Some("1" | "true")))
    {
        return Ok(());
    }
    let Some(netns) = netns else { return Ok(()) };
    let (Ok(target), Ok(own)) = (
        std::fs::metadata(netns),
        std::fs::metadata("/proc/thread-self/ns/net"),
    ) else {
        return Ok(());
    };
    if target.dev() == own.dev() && target.ino() == own.ino() {
        return Err(
            Error::invalid_env("CNI_NETNS is the plugin's own network namespace").with_details(
                format!(
                    "plugin's netns and netns from CNI_NETNS ({}) should not be the same",
                    netns.display()
                ),
            ),
        );
    }
    Ok(())
}

struct StderrLogger {
    name: OnceLock<&'static str>,
}

thread_local! {
    /// The log prefix of an in-process delegate running on this thread.
    static LOG_NAME: std::cell::Cell<Option<&'static str>> =
        const { std::cell::Cell::new(None) };
}

static LOGGER: StderrLogger = StderrLogger {
    name: OnceLock::new(),
};

impl log::Log for StderrLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            let name = LOG_NAME
                .get()
                .or_else(|| self.name.get().copied())
                .unwrap_or("cni");
            let _ = writeln!(
                std::io::stderr(),
                "{name}: {}: {}",
                record.level(),
                record.args()
            );
        }
    }

    fn flush(&self) {}
}

/// Install a small stderr logger; the level comes from `CNI_LOG_LEVEL`
/// (`error`, `warn` (default), `info`, `debug`, `trace`, `off`).
pub fn init_logger(name: &'static str) {
    let _ = LOGGER.name.set(name);
    let level = std::env::var("CNI_LOG_LEVEL")
        .ok()
        .and_then(|l| l.parse().ok())
        .unwrap_or(log::LevelFilter::Warn);
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(level);
    }
}

#[cfg(test)]
mod tests;
