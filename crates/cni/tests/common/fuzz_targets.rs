//! The bodies of the `cni` fuzz targets, shared by the libFuzzer binaries in
//! `crates/cni/fuzz` and the corpus replay test `tests/fuzz_corpus.rs` (which
//! runs in CI without libFuzzer). Each asserts the crate's promise: any input
//! ends in a value or a CNI error, never a panic.

use std::collections::HashMap;

use cni::conf::NoPluginConfig;
use cni::version::ALL;
use cni::{CmdArgs, CniArgs, NetConf, Plugin, Success};

/// A chained plugin that returns its prevResult unchanged.
pub struct Echo;

impl Plugin for Echo {
    type Config = NoPluginConfig;
    fn name(&self) -> &'static str {
        "echo"
    }
    fn add(&self, _: &CmdArgs, c: &NetConf) -> cni::Result<Success> {
        Ok(c.prev_result()?.unwrap_or_default())
    }
    fn del(&self, _: &CmdArgs, c: &NetConf) -> cni::Result<()> {
        c.prev_result().map(|_| ())
    }
    fn check(&self, _: &CmdArgs, c: &NetConf) -> cni::Result<()> {
        c.prev_result().map(|_| ())
    }
}

const COMMANDS: [&str; 7] = ["ADD", "DEL", "CHECK", "STATUS", "GC", "VERSION", "NOPE"];

/// First byte picks the command, the rest is stdin; stdout must be one JSON
/// document (a result or an error object).
pub fn skel_stdin(data: &[u8]) {
    let Some((&selector, stdin)) = data.split_first() else {
        return;
    };
    let cmd = COMMANDS[usize::from(selector) % COMMANDS.len()];
    let env: HashMap<&str, String> = [
        ("CNI_COMMAND", cmd),
        ("CNI_CONTAINERID", "fuzz"),
        ("CNI_NETNS", "/nonexistent/fuzz"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/nonexistent"),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.to_owned()))
    .collect();
    let lookup = |k: &str| env.get(k).map(std::ffi::OsString::from);
    let mut out = Vec::new();
    let code = cni::skel::dispatch(&Echo, &lookup, &mut &stdin[..], &mut out, &mut Vec::new());
    assert!(code == 0 || code == 1, "exit status {code}");
    let text = std::str::from_utf8(&out).expect("stdout is UTF-8");
    // Success of DEL, CHECK, STATUS and GC prints nothing; everything else
    // prints exactly one JSON document.
    if code == 0 && matches!(cmd, "DEL" | "CHECK" | "STATUS" | "GC") {
        assert!(text.is_empty(), "{cmd} printed {text:?}");
        return;
    }
    let doc: serde_json::Value = serde_json::from_str(text).expect("stdout is one JSON document");
    if code == 1 {
        assert!(doc["code"].is_u64() && doc["msg"].is_string(), "{doc}");
    }
}

/// Any bytes as a result in any version: parse, print in every version,
/// parse again.
pub fn result_json(data: &[u8]) {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    for v in ALL {
        if let Ok(parsed) = Success::from_value(&value, v) {
            for to in ALL {
                if let Ok(out) = parsed.to_value(to) {
                    Success::from_value(&out, to).expect("our own output parses");
                }
            }
        }
    }
}

/// Any bytes as CNI_ARGS (the environment need not be UTF-8).
pub fn cni_args(data: &[u8]) {
    use std::os::unix::ffi::OsStrExt;
    if let Ok(args) = CniArgs::parse_os(std::ffi::OsStr::from_bytes(data)) {
        let _ = args.require_known(&["IP", "MAC"]);
        for (k, _) in args.pairs() {
            if let Some(k) = k.to_str() {
                match args.get(k) {
                    Ok(v) => assert!(v.is_some()),
                    Err(e) => assert_eq!(e.code, 4),
                }
            }
        }
    }
}
