//! Protocol conformance shared by every plugin binary of the suite (SPEC.md
//! "Protocol parameters", "Errors", "Version"): the about text, VERSION,
//! environment validation, stdin decoding, the version gates, and the
//! own-netns guard. These are the skel's promises, checked on the real
//! binaries.

use cni_testsupport::{PluginCall, TestEnv, plugin_bin, require_root};

const PLUGINS: [&str; 3] = ["bridge", "host-local", "portmap"];
const ALL_VERSIONS: [&str; 7] = [
    "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0",
];

fn conf(version: &str) -> String {
    format!(r#"{{"cniVersion":"{version}","name":"conformance","type":"x"}}"#)
}

/// A call with `CNI_PATH` set, so only the property under test is wrong.
fn call(command: &str, stdin: impl Into<Vec<u8>>) -> PluginCall {
    PluginCall::new(command, stdin).cni_path(vec!["/nonexistent/cni/bin".into()])
}

/// Runs without any namespace: these calls must fail before touching anything.
fn run(plugin: &str, call: &PluginCall) -> cni_testsupport::PluginOutput {
    call.run_here(&plugin_bin(plugin))
}

/// [`cni_testsupport::PluginOutput::assert_error`], and the spec's exit status 1 and an
/// error object with `cniVersion` and `details`.
#[track_caller]
fn assert_spec_error(plugin: &str, out: &cni_testsupport::PluginOutput, code: u64, msg_part: &str) {
    assert_eq!(out.status.code(), Some(1), "{plugin}: {}", out.describe());
    out.assert_error(code, msg_part);
    let j = out.json();
    assert!(
        j["cniVersion"].is_string() && j["details"].is_string(),
        "{plugin}: {j}"
    );
}

#[test]
fn about_text_without_command() {
    for p in PLUGINS {
        let out = run(p, &PluginCall::new("", ""));
        assert!(out.success(), "{p}: {}", out.describe());
        assert!(out.stdout.is_empty(), "{p}: stdout must stay empty");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.starts_with(&format!("CNI {p} plugin")), "{p}: {err}");
        assert!(err.contains(&ALL_VERSIONS.join(", ")), "{p}: {err}");
    }
}

#[test]
fn version_echoes_input_and_lists_all() {
    for p in PLUGINS {
        for v in ALL_VERSIONS {
            let out = run(
                p,
                &PluginCall::new("VERSION", format!(r#"{{"cniVersion":"{v}"}}"#)),
            );
            out.assert_success();
            let j = out.json();
            assert_eq!(j["cniVersion"], v, "{p}");
            assert_eq!(
                j["supportedVersions"],
                serde_json::json!(ALL_VERSIONS),
                "{p}"
            );
        }
    }
}

#[test]
fn missing_env_is_code_4_naming_vars() {
    for p in PLUGINS {
        let out = run(p, &PluginCall::new("ADD", conf("1.0.0")).container_id(""));
        assert_spec_error(
            p,
            &out,
            4,
            "required env variables [CNI_CONTAINERID,CNI_NETNS,",
        );
        let out = run(p, &PluginCall::new("DEL", conf("1.0.0")).ifname(""));
        assert_spec_error(p, &out, 4, "[CNI_IFNAME");
    }
}

#[test]
fn invalid_env_values_are_code_4() {
    for p in PLUGINS {
        let base = call("ADD", conf("1.0.0")).netns("/nonexistent/ns");
        let out = run(p, &base.clone().container_id("bad/id"));
        assert_spec_error(p, &out, 4, "invalid characters in containerID");
        let out = run(p, &base.clone().ifname("0123456789abcdef"));
        assert_spec_error(p, &out, 4, "interface name is too long");
        let out = run(p, &base.clone().ifname("a:b"));
        assert_spec_error(p, &out, 4, "interface name contains");
        let out = run(p, &base.clone().command("UPDATE"));
        assert_spec_error(p, &out, 4, "unknown CNI_COMMAND: UPDATE");
    }
}

#[test]
fn bad_json_is_code_6_and_bad_names_code_7() {
    for p in PLUGINS {
        let base = call("DEL", "").netns("/nonexistent/ns");
        assert_spec_error(p, &run(p, &base.clone().stdin("{not json")), 6, "");
        assert_spec_error(p, &run(p, &base.clone().stdin("")), 6, "");
        let nameless = r#"{"cniVersion":"1.0.0","type":"x"}"#;
        assert_spec_error(
            p,
            &run(p, &base.clone().stdin(nameless)),
            7,
            "missing network name",
        );
        let escaping = r#"{"cniVersion":"1.0.0","name":"../../etc","type":"x"}"#;
        assert_spec_error(
            p,
            &run(p, &base.clone().stdin(escaping)),
            7,
            "invalid characters found in network name",
        );
    }
}

#[test]
fn version_gates_are_code_1() {
    for p in PLUGINS {
        let base = call("ADD", "").netns("/nonexistent/ns");
        assert_spec_error(
            p,
            &run(p, &base.clone().stdin(conf("2.0.0"))),
            1,
            "incompatible CNI versions",
        );
        assert_spec_error(
            p,
            &run(p, &base.clone().stdin(conf("1.0"))),
            1,
            "incompatible CNI versions",
        );
        let check = base.clone().command("CHECK").stdin(conf("0.3.1"));
        assert_spec_error(p, &run(p, &check), 1, "config version does not allow CHECK");
        for cmd in ["GC", "STATUS"] {
            let call = base.clone().command(cmd).stdin(conf("1.0.0"));
            assert_spec_error(
                p,
                &run(p, &call),
                1,
                &format!("config version does not allow {cmd}"),
            );
        }
    }
}

#[test]
fn own_netns_is_refused_before_any_change() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new();
    let links_before = env.host.exec_ok("ip", &["-o", "link", "show"]);
    let bridge_conf = r#"{"cniVersion":"1.0.0","name":"selfns","type":"bridge","bridge":"selfbr0",
        "ipam":{"type":"host-local","subnet":"10.250.0.0/24","dataDir":"DATA"}}"#
        .replace("DATA", &env.data_path().display().to_string());
    for p in ["bridge", "portmap"] {
        // The plugin runs in env.host; CNI_NETNS names that same namespace.
        let call = env.call("ADD", bridge_conf.clone()).netns(env.host.path());
        let out = env.run(p, &call);
        assert_spec_error(p, &out, 4, "own network namespace");
    }
    assert_eq!(
        env.host.exec_ok("ip", &["-o", "link", "show"]),
        links_before,
        "nothing created"
    );
    assert!(
        std::fs::read_dir(env.data_path()).unwrap().next().is_none(),
        "no IPAM state"
    );
    // The guard can be overridden explicitly (CNI_NETNS_OVERRIDE), then the
    // plugin runs; DEL of nothing succeeds.
    let call = env
        .call("DEL", bridge_conf)
        .netns(env.host.path())
        .env("CNI_NETNS_OVERRIDE", "1");
    env.run("bridge", &call).assert_success();
}
