use std::cell::RefCell;
use std::collections::HashMap;

use serde::Deserialize;
use serde_json::{Value, json};

use super::*;
use crate::types::{IpConfig, Success};

#[derive(Debug, Default, Deserialize)]
struct Conf {
    #[serde(default)]
    fail_with: Option<u32>,
    #[serde(default)]
    panic: bool,
    #[serde(default)]
    no_ip: bool,
}

#[derive(Default)]
struct Fake {
    calls: RefCell<Vec<&'static str>>,
}

impl Plugin for Fake {
    type Config = Conf;
    fn name(&self) -> &'static str {
        "fake"
    }
    fn add(&self, _: &CmdArgs, c: &NetConf<Conf>) -> Result<Success> {
        self.calls.borrow_mut().push("add");
        if let Some(code) = c.plugin.fail_with {
            return Err(Error::plugin(code, "asked to fail"));
        }
        assert!(!c.plugin.panic, "asked to panic");
        let ips = if c.plugin.no_ip {
            vec![]
        } else {
            vec![IpConfig {
                interface: None,
                address: "10.0.0.2/24".parse().unwrap(),
                gateway: None,
            }]
        };
        Ok(Success {
            ips,
            ..Success::default()
        })
    }
    fn del(&self, _: &CmdArgs, _: &NetConf<Conf>) -> Result<()> {
        self.calls.borrow_mut().push("del");
        Ok(())
    }
    fn check(&self, _: &CmdArgs, _: &NetConf<Conf>) -> Result<()> {
        self.calls.borrow_mut().push("check");
        Ok(())
    }
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {:?}", self.stdout))
    }
    fn error(&self) -> (u64, String) {
        assert_eq!(self.code, 1, "expected failure, stdout {}", self.stdout);
        let j = self.json();
        assert!(
            j.get("cniVersion").is_some() && j.get("details").is_some(),
            "{j}"
        );
        (
            j["code"].as_u64().unwrap(),
            j["msg"].as_str().unwrap().to_owned(),
        )
    }
}

const NETNS: &str = "/nonexistent/netns";

fn env_for(cmd: &str) -> HashMap<&'static str, String> {
    let mut m = HashMap::new();
    m.insert("CNI_COMMAND", cmd.to_owned());
    m.insert("CNI_CONTAINERID", "ctr-1_a.b".to_owned());
    m.insert("CNI_NETNS", NETNS.to_owned());
    m.insert("CNI_IFNAME", "eth0".to_owned());
    m.insert("CNI_PATH", "/opt/cni/bin".to_owned());
    m
}

fn run_with(plugin: &Fake, env: &HashMap<&'static str, String>, stdin: &str) -> Run {
    let lookup = |k: &str| env.get(k).map(OsString::from);
    let mut out = Vec::new();
    let mut err = Vec::new();
    let code = dispatch(plugin, &lookup, &mut stdin.as_bytes(), &mut out, &mut err);
    Run {
        code,
        stdout: String::from_utf8(out).unwrap(),
        stderr: String::from_utf8(err).unwrap(),
    }
}

fn run(cmd: &str, stdin: &str) -> Run {
    run_with(&Fake::default(), &env_for(cmd), stdin)
}

const CONF: &str = r#"{"cniVersion":"1.0.0","name":"net1","type":"fake"}"#;

#[test]
fn no_command_prints_about_on_stderr() {
    let r = run_with(&Fake::default(), &HashMap::new(), "");
    assert_eq!(r.code, 0);
    assert!(r.stdout.is_empty());
    assert!(r.stderr.starts_with("CNI fake plugin"), "{}", r.stderr);
    assert!(
        r.stderr
            .starts_with(&format!("CNI fake plugin {} (rust-cni-plugins)\n", VERSION)),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("0.1.0, 0.2.0, 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0")
    );
}

#[test]
fn version_echoes_input_version() {
    let r = run("VERSION", r#"{"cniVersion":"0.4.0"}"#);
    assert_eq!(r.code, 0);
    let j = r.json();
    assert_eq!(j["cniVersion"], "0.4.0");
    assert_eq!(
        j["supportedVersions"],
        json!([
            "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"
        ])
    );
    assert_eq!(run("VERSION", "").json()["cniVersion"], "1.1.0");
}

#[test]
fn version_needs_no_other_env() {
    let mut env = HashMap::new();
    env.insert("CNI_COMMAND", "VERSION".to_owned());
    assert_eq!(run_with(&Fake::default(), &env, "").code, 0);
}

#[test]
fn unknown_command_is_code_4() {
    let (code, msg) = run("FROB", CONF).error();
    assert_eq!((code, msg.as_str()), (4, "unknown CNI_COMMAND: FROB"));
}

#[test]
fn missing_env_is_code_4_listing_all_missing() {
    let cases: [(&str, &[&str], &str); 4] = [
        (
            "ADD",
            &["CNI_NETNS", "CNI_PATH"],
            "required env variables [CNI_NETNS,CNI_PATH] missing",
        ),
        (
            "CHECK",
            &["CNI_CONTAINERID"],
            "required env variables [CNI_CONTAINERID] missing",
        ),
        (
            "DEL",
            &["CNI_IFNAME"],
            "required env variables [CNI_IFNAME] missing",
        ),
        (
            "GC",
            &["CNI_PATH"],
            "required env variables [CNI_PATH] missing",
        ),
    ];
    for (cmd, remove, expected) in cases {
        let mut env = env_for(cmd);
        for k in remove {
            env.remove(k);
        }
        let (code, msg) = run_with(&Fake::default(), &env, CONF).error();
        assert_eq!((code, msg.as_str()), (4, expected), "{cmd}");
    }
}

#[test]
fn del_does_not_need_netns_and_status_needs_only_path() {
    let mut env = env_for("DEL");
    env.remove("CNI_NETNS");
    assert_eq!(run_with(&Fake::default(), &env, CONF).code, 0);
    let mut env = HashMap::new();
    env.insert("CNI_COMMAND", "STATUS".to_owned());
    env.insert("CNI_PATH", "/opt/cni/bin".to_owned());
    let conf = r#"{"cniVersion":"1.1.0","name":"net1"}"#;
    assert_eq!(run_with(&Fake::default(), &env, conf).code, 0);
}

#[test]
fn container_id_validation() {
    for bad in ["-leading", "a/b", "a b", "a;b", "ä"] {
        let mut env = env_for("ADD");
        env.insert("CNI_CONTAINERID", bad.to_owned());
        let r = run_with(&Fake::default(), &env, CONF);
        let (code, msg) = r.error();
        assert_eq!(code, 4, "{bad}");
        assert!(msg.contains("invalid characters in containerID"), "{msg}");
        assert_eq!(r.json()["details"], bad);
    }
}

#[test]
fn ifname_validation_messages() {
    let cases = [
        (
            "abcdefghijklmnop",
            "interface name is too long (CNI_IFNAME)",
        ),
        (".", "interface name is . or .. (CNI_IFNAME)"),
        ("..", "interface name is . or .. (CNI_IFNAME)"),
        (
            "a/b",
            "interface name contains / or : or whitespace characters (CNI_IFNAME)",
        ),
        (
            "a:b",
            "interface name contains / or : or whitespace characters (CNI_IFNAME)",
        ),
        (
            "a b",
            "interface name contains / or : or whitespace characters (CNI_IFNAME)",
        ),
        (
            "a\tb",
            "interface name contains / or : or whitespace characters (CNI_IFNAME)",
        ),
    ];
    for (name, expected) in cases {
        let mut env = env_for("ADD");
        env.insert("CNI_IFNAME", name.to_owned());
        let (code, msg) = run_with(&Fake::default(), &env, CONF).error();
        assert_eq!((code, msg.as_str()), (4, expected), "{name:?}");
    }
    assert_eq!(
        validate_ifname("").unwrap_err().msg,
        "interface name is empty (CNI_IFNAME)"
    );
    validate_ifname("abcdefghijklmno").unwrap();
}

#[test]
fn bad_json_is_code_6() {
    for stdin in ["", "{", "not json", "[1,2]"] {
        let (code, _) = run("ADD", stdin).error();
        assert_eq!(code, 6, "{stdin:?}");
    }
}

#[test]
fn network_name_validation_is_code_7() {
    let (code, msg) = run("ADD", r#"{"cniVersion":"1.0.0"}"#).error();
    assert_eq!((code, msg.as_str()), (7, "missing network name"));
    let r = run("ADD", r#"{"cniVersion":"1.0.0","name":"../etc"}"#);
    let (code, msg) = r.error();
    assert_eq!(
        (code, msg.as_str()),
        (7, "invalid characters found in network name")
    );
    assert_eq!(r.json()["details"], "../etc");
}

#[test]
fn unsupported_version_is_code_1_and_error_names_input_version() {
    let r = run("ADD", r#"{"cniVersion":"9.0.0","name":"n"}"#);
    let (code, msg) = r.error();
    assert_eq!((code, msg.as_str()), (1, "incompatible CNI versions"));
    assert_eq!(r.json()["cniVersion"], "9.0.0");
}

#[test]
fn missing_version_means_0_1_0() {
    let r = run("ADD", r#"{"name":"n"}"#);
    assert_eq!(r.code, 0, "{}", r.stdout);
    let j = r.json();
    assert_eq!(j["cniVersion"], "0.1.0");
    assert_eq!(j["ip4"]["ip"], "10.0.0.2/24");
}

#[test]
fn empty_version_string_means_0_1_0() {
    let r = run("ADD", r#"{"cniVersion":"","name":"n"}"#);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert_eq!(r.json()["cniVersion"], "0.1.0");
}

#[test]
fn version_gates_for_check_status_gc() {
    let (code, msg) = run("CHECK", r#"{"cniVersion":"0.3.1","name":"n"}"#).error();
    assert_eq!(
        (code, msg.as_str()),
        (1, "config version does not allow CHECK")
    );
    assert_eq!(run("CHECK", r#"{"cniVersion":"0.4.0","name":"n"}"#).code, 0);
    for cmd in ["STATUS", "GC"] {
        let (code, msg) = run(cmd, r#"{"cniVersion":"1.0.0","name":"n"}"#).error();
        assert_eq!(code, 1);
        assert_eq!(msg, format!("config version does not allow {cmd}"));
        assert_eq!(run(cmd, r#"{"cniVersion":"1.1.0","name":"n"}"#).code, 0);
    }
}

#[test]
fn add_prints_result_in_config_version() {
    let r = run("ADD", r#"{"cniVersion":"0.3.1","name":"n"}"#);
    assert_eq!(r.code, 0);
    let j = r.json();
    assert_eq!(j["cniVersion"], "0.3.1");
    assert_eq!(j["ips"][0]["version"], "4");
    let r = run("ADD", CONF);
    assert!(r.json()["ips"][0].get("version").is_none());
}

#[test]
fn del_and_check_print_nothing() {
    for cmd in ["DEL", "CHECK"] {
        let r = run(cmd, CONF);
        assert_eq!((r.code, r.stdout.as_str()), (0, ""), "{cmd}");
    }
}

#[test]
fn plugin_error_passes_through_with_config_version() {
    let r = run(
        "ADD",
        r#"{"cniVersion":"0.4.0","name":"n","fail_with":107}"#,
    );
    let (code, msg) = r.error();
    assert_eq!((code, msg.as_str()), (107, "asked to fail"));
    assert_eq!(r.json()["cniVersion"], "0.4.0");
}

#[test]
fn plugin_config_type_errors_are_code_7() {
    let (code, msg) = run("ADD", r#"{"cniVersion":"1.0.0","name":"n","panic":"yes"}"#).error();
    assert_eq!(code, 7);
    assert!(msg.starts_with("invalid network config"), "{msg}");
}

#[test]
fn unconvertible_add_result_is_rolled_back() {
    let plugin = Fake::default();
    let r = run_with(
        &plugin,
        &env_for("ADD"),
        r#"{"cniVersion":"0.2.0","name":"n","no_ip":true}"#,
    );
    let (code, msg) = r.error();
    assert_eq!(
        (code, msg.as_str()),
        (1, "cannot convert: no valid IP addresses")
    );
    assert_eq!(*plugin.calls.borrow(), ["add", "del"]);
}

#[test]
fn own_netns_is_refused_before_the_plugin_runs() {
    let plugin = Fake::default();
    let mut env = env_for("ADD");
    env.insert("CNI_NETNS", "/proc/thread-self/ns/net".to_owned());
    let (code, msg) = run_with(&plugin, &env, CONF).error();
    assert_eq!(code, 4);
    assert!(msg.contains("own network namespace"), "{msg}");
    assert!(plugin.calls.borrow().is_empty(), "plugin must not run");
    env.insert("CNI_NETNS_OVERRIDE", "TRUE".to_owned());
    assert_eq!(run_with(&plugin, &env, CONF).code, 0);
}

#[test]
fn oversized_stdin_is_refused() {
    let big = format!(r#"{{"name":"n","pad":"{}"}}"#, "x".repeat(MAX_STDIN_BYTES));
    let (code, _) = run("ADD", &big).error();
    assert_eq!(code, 5);
}

#[test]
fn cmd_args_carry_env_and_stdin() {
    struct Probe(RefCell<Option<CmdArgs>>);
    impl Plugin for Probe {
        type Config = crate::conf::NoPluginConfig;
        fn name(&self) -> &'static str {
            "probe"
        }
        fn add(&self, a: &CmdArgs, _: &NetConf) -> Result<Success> {
            *self.0.borrow_mut() = Some(a.clone());
            Ok(Success::default())
        }
        fn del(&self, _: &CmdArgs, _: &NetConf) -> Result<()> {
            Ok(())
        }
        fn check(&self, _: &CmdArgs, _: &NetConf) -> Result<()> {
            Ok(())
        }
    }
    let p = Probe(RefCell::new(None));
    // ADD with the environment `lookup` gives: the CmdArgs the plugin was called with.
    let add_with = |lookup: &dyn Fn(&str) -> Option<OsString>| {
        let code = dispatch(
            &p,
            lookup,
            &mut CONF.as_bytes(),
            &mut Vec::new(),
            &mut Vec::new(),
        );
        assert_eq!(code, 0);
        p.0.borrow().clone().unwrap()
    };
    let mut env = env_for("ADD");
    env.insert("CNI_PATH", "/a:/b".to_owned());
    env.insert("CNI_ARGS", "IP=10.0.0.9".to_owned());
    let lookup = |k: &str| env.get(k).map(OsString::from);
    let a = add_with(&lookup);
    assert_eq!(a.path, [PathBuf::from("/a"), PathBuf::from("/b")]);
    assert_eq!(a.netns.as_deref(), Some(Path::new(NETNS)));
    assert_eq!(a.cni_args().unwrap().get("IP").unwrap(), Some("10.0.0.9"));
    assert_eq!(a.stdin, CONF.as_bytes());
    assert_eq!(a.container_id, "ctr-1_a.b");

    // CNI_ARGS is passed on as the bytes it is: a value that is not UTF-8 is
    // an error where the plugin reads it, not an unset variable.
    use std::os::unix::ffi::OsStrExt;
    let raw = std::ffi::OsStr::from_bytes(b"IgnoreUnknown=1;X=\xff;IP=10.0.0.\xfe").to_owned();
    let lookup = |k: &str| match k {
        "CNI_ARGS" => Some(raw.clone()),
        _ => env.get(k).map(OsString::from),
    };
    let a = add_with(&lookup);
    assert_eq!(a.args, raw);
    let e = a.cni_args().unwrap().get("IP").unwrap_err();
    assert_eq!(e.code, 4, "{}", e.msg);
}

#[test]
fn cni_version_and_name_keys_match_as_go() {
    // Go's decoder matches keys case-insensitively: "CNIVersion" is the version.
    let r = run(
        "ADD",
        r#"{"CNIVersion":"0.4.0","NAME":"net","Type":"fake"}"#,
    );
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert_eq!(r.json()["cniVersion"], "0.4.0");
    let r = run("ADD", r#"{"cniVersion":"1.0.0","Name":"bad name"}"#);
    assert_eq!(r.error().0, 7, "the name is found and validated");
}
