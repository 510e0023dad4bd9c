//! `bridge` runs our `host-local` in-process (a built-in delegate, `cni::invoke`) when the
//! `host-local` found in `CNI_PATH` was built from the same code, and execs it otherwise.
//! Shown with `strace -f -e trace=execve` around bridge; and the two paths give the same
//! results, errors, logs and `dataDir` state, byte for byte, for every IPAM command.

#![allow(
    clippy::unwrap_used,
    reason = "helpers of integration tests panic with the failing value"
)]

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Instant;

use cni_testsupport::{
    Netns, PluginCall, PluginOutput, TestEnv, bin_dir, node, plugin_bin, require_root,
};
use node::normalise;
use serde_json::{Value, json};

const NET: &str = "inproc";
const BR: &str = "cniinproc0";

/// How IPAM is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// The default: in-process when the binary in `CNI_PATH` is the same build.
    Default,
    /// `CNI_IPAM_EXEC=1`.
    Exec,
}

fn conf(env: &TestEnv, version: &str, ipam: Value) -> Value {
    let mut ipam = ipam;
    ipam["type"] = json!("host-local");
    ipam["dataDir"] = json!(env.data_path());
    json!({
        "cniVersion": version,
        "name": NET,
        "type": "bridge",
        "bridge": BR,
        "isGateway": true,
        "ipam": ipam,
    })
}

fn call(env: &TestEnv, mode: Mode, cmd: &str, conf: &Value, id: &str) -> PluginCall {
    let c = env
        .call(cmd, serde_json::to_vec(conf).unwrap())
        .container_id(id);
    match mode {
        Mode::Default => c,
        Mode::Exec => c.env("CNI_IPAM_EXEC", "1"),
    }
}

/// Runs bridge under `strace -f -e trace=execve`: its output and every program it (or
/// any descendant) asked the kernel to execute, bridge itself first.
fn traced(env: &TestEnv, call: &PluginCall) -> (PluginOutput, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace");
    let wrapper = cni_testsupport::write_script(
        dir.path(),
        "traced-bridge",
        "exec strace -f -qq -e trace=execve -o \"$TRACE_OUT\" \"$TRACE_BIN\"",
    );
    let call = call
        .clone()
        .env("TRACE_OUT", trace.to_str().unwrap())
        .env("TRACE_BIN", plugin_bin("bridge").to_str().unwrap());
    let out = call.run_in(&env.host, &wrapper);
    let text = std::fs::read_to_string(&trace).unwrap_or_default();
    let execs: Vec<String> = text
        .lines()
        .filter_map(|l| {
            let rest = &l[l.find("execve(\"")? + 8..];
            Some(rest[..rest.find('"')?].to_string())
        })
        .collect();
    assert!(
        execs.first().is_some_and(|e| e.ends_with("/bridge")),
        "strace saw no bridge: {text}\n{}",
        out.describe()
    );
    (out, execs)
}

fn host_local_execs(execs: &[String]) -> Vec<&String> {
    execs
        .iter()
        .filter(|e| e.ends_with("/host-local"))
        .collect()
}

fn strace_available() -> bool {
    let ok = std::process::Command::new("strace")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "strace required when CI=true"
        );
        eprintln!("skipped: strace not installed");
    }
    ok
}

/// Fails (with what to do) unless `bridge` runs our `host-local` in-process: both
/// binaries must come from one build of the current code, and `cargo test` alone
/// does not rebuild binaries of other packages (`make test` builds first).
fn assert_same_build(env: &TestEnv) {
    let c = conf(
        env,
        "1.0.0",
        json!({"ranges": [[{"subnet": "10.76.0.0/24"}]]}),
    );
    let out = call(env, Mode::Default, "DEL", &c, "probe")
        .env("CNI_LOG_LEVEL", "debug")
        .run_in(&env.host, &plugin_bin("bridge"));
    out.assert_success();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("built-in delegate host-local: in-process"),
        "bridge does not run {} in-process: rebuild both with `cargo build --workspace` \
         (stale binaries?)\n{log}",
        plugin_bin("host-local").display()
    );
}

/// `dir` with `host-local` as `kind`: a hard link to our binary (a copy across file
/// systems), a copy, a shell wrapper around ours, or a copy whose identity differs.
fn host_local_variant(kind: &str) -> tempfile::TempDir {
    // Next to our binaries, so a hard link stays on one file system.
    let dir = tempfile::tempdir_in(bin_dir()).unwrap();
    let ours = plugin_bin("host-local");
    let dst = dir.path().join("host-local");
    match kind {
        "hardlink" => {
            if std::fs::hard_link(&ours, &dst).is_err() {
                std::fs::copy(&ours, &dst).unwrap();
            }
        }
        "copy" => {
            std::fs::copy(&ours, &dst).unwrap();
        }
        "wrapper" => {
            cni_testsupport::write_script(
                dir.path(),
                "host-local",
                &format!("exec {} \"$@\"", ours.display()),
            );
        }
        "other-build" => {
            let mut bytes = std::fs::read(&ours).unwrap();
            let mut needle = b"cni-rs\0\0".to_vec();
            needle.extend(cni_ipam::host_local::IDENTITY);
            let at = bytes
                .windows(needle.len())
                .position(|w| w == needle.as_slice())
                .expect("identity note in host-local");
            bytes[at + needle.len() - 1] ^= 0x55;
            std::fs::write(&dst, bytes).unwrap();
            std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o755)).unwrap();
            assert_ne!(
                cni::invoke::read_identity(&dst),
                Some(cni_ipam::host_local::IDENTITY)
            );
        }
        other => panic!("unknown variant {other}"),
    }
    dir
}

#[test]
fn host_local_binary_carries_the_identity_bridge_was_built_with() {
    let bin = plugin_bin("host-local");
    assert_eq!(
        cni::invoke::read_identity(&bin),
        Some(cni_ipam::host_local::IDENTITY),
        "readelf -n {}",
        bin.display()
    );
    // Only the host-local executable carries the note (bridge links the library).
    assert_eq!(cni::invoke::read_identity(&plugin_bin("bridge")), None);
    if let Some(reference) = cni_testsupport::reference_bin("host-local") {
        assert_eq!(cni::invoke::read_identity(&reference), None);
    }
}

/// What deciding "in-process or exec" costs on the real binary (faccessat, open, one
/// pread, close): far below one exec (~1 ms). `CNI_TEST_BIN_DIR` points it at release
/// binaries.
#[test]
fn identity_check_is_cheap() {
    let bin = plugin_bin("host-local");
    cni::invoke::register_builtin(cni_ipam::host_local::BUILTIN);
    let n = 5000u32;
    let mut best = std::time::Duration::MAX;
    for _ in 0..5 {
        let start = Instant::now();
        for _ in 0..n {
            std::hint::black_box(cni::invoke::builtin_for("host-local", &bin));
        }
        best = best.min(start.elapsed() / n);
    }
    eprintln!("identity check of {}: {best:?} per call", bin.display());
    assert!(best.as_micros() < 500, "{best:?}");
}

/// The setting of the tests that trace which process runs host-local: root and strace
/// present (else `None`: skipped), a fresh environment whose plugins come from one build,
/// and a 1.0.0 configuration over `subnet`.
fn traced_env(subnet: &str) -> Option<(TestEnv, Value)> {
    if !require_root() || !strace_available() {
        return None;
    }
    let env = TestEnv::new();
    assert_same_build(&env);
    let c = conf(&env, "1.0.0", json!({"ranges": [[{"subnet": subnet}]]}));
    Some((env, c))
}

#[test]
fn same_build_runs_in_process_anything_else_is_execd() {
    let Some((env, c)) = traced_env("10.77.0.0/24") else {
        return;
    };
    // (CNI_PATH, mode, whether host-local must be exec'd)
    let ours = bin_dir();
    let hardlink = host_local_variant("hardlink");
    let copy = host_local_variant("copy");
    let wrapper = host_local_variant("wrapper");
    let other = host_local_variant("other-build");
    let mut cases: Vec<(&str, Vec<PathBuf>, Mode, bool)> = vec![
        ("ours", vec![ours.clone()], Mode::Default, false),
        (
            "ours, CNI_IPAM_EXEC=1",
            vec![ours.clone()],
            Mode::Exec,
            true,
        ),
        (
            "hard link",
            vec![hardlink.path().into()],
            Mode::Default,
            false,
        ),
        ("copy", vec![copy.path().into()], Mode::Default, false),
        (
            "wrapper script",
            vec![wrapper.path().into()],
            Mode::Default,
            true,
        ),
        (
            "other build",
            vec![other.path().into()],
            Mode::Default,
            true,
        ),
        (
            "wrapper first in CNI_PATH",
            vec![wrapper.path().into(), ours.clone()],
            Mode::Default,
            true,
        ),
        (
            "ours first in CNI_PATH",
            vec![ours.clone(), wrapper.path().into()],
            Mode::Default,
            false,
        ),
    ];
    if let Some(reference) = cni_testsupport::reference_bin("host-local") {
        cases.push((
            "reference",
            vec![reference.parent().unwrap().into()],
            Mode::Default,
            true,
        ));
    }
    for (what, path, mode, execd) in cases {
        let ctr = Netns::new();
        for cmd in ["ADD", "DEL"] {
            let call = call(&env, mode, cmd, &c, "trace1")
                .netns(ctr.path())
                .cni_path(path.clone());
            let (out, execs) = traced(&env, &call);
            out.assert_success();
            let hl = host_local_execs(&execs);
            if execd {
                let first = path
                    .iter()
                    .find(|d| d.join("host-local").is_file())
                    .unwrap();
                assert_eq!(
                    hl.first().map(PathBuf::from),
                    Some(first.join("host-local")),
                    "{what} {cmd}: host-local must be exec'd: {execs:?}"
                );
            } else {
                assert!(
                    hl.is_empty(),
                    "{what} {cmd}: host-local must run in-process: {execs:?}"
                );
            }
        }
        assert!(
            reservations(&env).is_empty(),
            "{what}: {:?}",
            reservations(&env)
        );
    }
}

/// Everything under `dataDir` (name -> contents), the state both paths must leave.
fn state(env: &TestEnv) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![env.data_path().to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let rel = p
                .strip_prefix(env.data_path())
                .unwrap()
                .display()
                .to_string();
            if p.is_dir() {
                stack.push(p);
                out.push((rel + "/", String::new()));
            } else {
                let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o7777;
                let mut body = String::from_utf8_lossy(&std::fs::read(&p).unwrap()).into_owned();
                if rel.starts_with(".host-local-index.") {
                    body = index_without_inodes(&body);
                }
                out.push((rel, format!("{mode:o} {body:?}")));
            }
        }
    }
    out.sort();
    out
}

/// host-local's reservation index (a cache beside the network directory) names inode
/// numbers and the directory's mtime, which differ between any two nodes: keep the
/// rest (file names and contents).
fn index_without_inodes(body: &str) -> String {
    body.lines()
        .enumerate()
        .map(|(i, l)| {
            let mut words = l.split(' ');
            if i == 0 {
                words.take(2).collect::<Vec<_>>().join(" ") + " <dir stamp>\n"
            } else {
                words.next();
                format!("<ino> {}\n", words.collect::<Vec<_>>().join(" "))
            }
        })
        .collect()
}

fn reservations(env: &TestEnv) -> Vec<String> {
    state(env)
        .into_iter()
        .map(|(n, _)| n)
        .filter(|n| {
            let file = n.rsplit('/').next().unwrap_or_default();
            !n.ends_with('/')
                && n.contains('/')
                && file != "lock"
                && !file.starts_with("last_reserved_ip")
        })
        .collect()
}

/// One step's observable outcome, with what legitimately differs between two nodes
/// (random veth names and MACs, the netns and `dataDir` paths) normalised.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    status: Option<i32>,
    stdout: String,
    stderr: String,
    state: Vec<(String, String)>,
}

fn outcome(env: &TestEnv, out: &PluginOutput, netns: &[&Netns]) -> Outcome {
    let scrub = |s: &str| {
        let mut s = s.replace(env.data_path().to_str().unwrap(), "<dataDir>");
        for (i, n) in netns.iter().enumerate() {
            s = s.replace(n.path().to_str().unwrap(), &format!("<netns{i}>"));
        }
        s
    };
    let stdout = match serde_json::from_slice::<Value>(&out.stdout) {
        Ok(v) if out.success() => serde_json::to_string_pretty(&normalise(&v)).unwrap(),
        _ => String::from_utf8_lossy(&out.stdout).into_owned(),
    };
    Outcome {
        status: out.status.code(),
        stdout: scrub(&stdout),
        // less bridge's debug line saying which way it went
        stderr: scrub(
            &String::from_utf8_lossy(&out.stderr)
                .lines()
                .filter(|l| !l.contains("built-in delegate host-local: "))
                .map(|l| format!("{l}\n"))
                .collect::<String>(),
        ),
        state: state(env),
    }
}

/// A scenario of every IPAM command through bridge, on its own node, in `mode`: the
/// outcome of each step.
fn scenario(mode: Mode) -> Vec<(String, Outcome)> {
    let env = TestEnv::new();
    let (c1, c2, c3) = (Netns::new(), Netns::new(), Netns::new());
    let all = [&c1, &c2, &c3];
    let two = json!({
        "ranges": [[{"subnet": "10.78.0.0/24", "rangeStart": "10.78.0.10", "rangeEnd": "10.78.0.11"}]],
        "routes": [{"dst": "192.0.2.0/24"}],
    });
    let c = conf(&env, "1.1.0", two.clone());
    let mut steps = Vec::new();
    let mut run = |name: &str, call: PluginCall| {
        let out = call.run_in(&env.host, &plugin_bin("bridge"));
        steps.push((name.to_string(), outcome(&env, &out, &all)));
        out
    };

    let r1 = run(
        "ADD 1",
        call(&env, mode, "ADD", &c, "ctr-1").netns(c1.path()),
    );
    let r1 = r1.json();
    run(
        "ADD 2",
        call(&env, mode, "ADD", &c, "ctr-2").netns(c2.path()),
    );
    // Pool exhausted: host-local's code 100 and text, passed on by bridge.
    let full = run(
        "ADD 3 (exhausted)",
        call(&env, mode, "ADD", &c, "ctr-3").netns(c3.path()),
    );
    assert_eq!(full.error_code(), Some(100), "{}", full.describe());
    // A requested address someone holds: 101.
    run(
        "ADD 3 (IP= taken)",
        call(&env, mode, "ADD", &c, "ctr-3")
            .netns(c3.path())
            .cni_args("IgnoreUnknown=1;IP=10.78.0.10"),
    );
    run("STATUS (exhausted)", call(&env, mode, "STATUS", &c, "x"));

    let mut with_prev = c.clone();
    with_prev["prevResult"] = r1.clone();
    run(
        "CHECK 1",
        call(&env, mode, "CHECK", &with_prev, "ctr-1").netns(c1.path()),
    );
    // CHECK of an address host-local did not hand out to this container: 103.
    let mut wrong = with_prev.clone();
    wrong["prevResult"]["ips"][0]["address"] = json!("10.78.0.11/24");
    run(
        "CHECK 1 (wrong address)",
        call(&env, mode, "CHECK", &wrong, "ctr-1").netns(c1.path()),
    );

    // GC keeping only ctr-2 releases ctr-1's reservation.
    let mut gc = c.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "ctr-2", "ifname": "eth0"}]);
    run("GC", call(&env, mode, "GC", &gc, ""));
    run("STATUS", call(&env, mode, "STATUS", &c, ""));
    // With debug logging: host-local's log lines carry its own name either way.
    run(
        "DEL 2 (debug log)",
        call(&env, mode, "DEL", &c, "ctr-2")
            .netns(c2.path())
            .env("CNI_LOG_LEVEL", "debug"),
    );
    run(
        "DEL 1 (again, without netns)",
        call(&env, mode, "DEL", &c, "ctr-1"),
    );

    // Configuration errors found by host-local (code 7), in every layout.
    for (what, ipam) in [
        (
            "host bits",
            json!({"ranges": [[{"subnet": "10.79.0.1/24"}]]}),
        ),
        ("no ranges", json!({"ranges": []})),
        (
            "relative dataDir",
            json!({"ranges": [[{"subnet": "10.79.0.0/24"}]]}),
        ),
        (
            "overlap",
            json!({"ranges": [[{"subnet": "10.79.0.0/24"}], [{"subnet": "10.79.0.0/25"}]]}),
        ),
    ] {
        for version in ["0.3.1", "1.1.0"] {
            let mut bad = conf(&env, version, ipam.clone());
            if what == "relative dataDir" {
                bad["ipam"]["dataDir"] = json!("relative/dir");
            }
            let out = run(
                &format!("ADD {version} ({what})"),
                call(&env, mode, "ADD", &bad, "ctr-bad").netns(c3.path()),
            );
            assert!(!out.success(), "{what}: {}", out.describe());
        }
    }

    // Results in every layout, including the old ones.
    for version in ["0.1.0", "0.2.0", "0.3.1", "0.4.0", "1.0.0"] {
        let cv = conf(&env, version, two.clone());
        run(
            &format!("ADD {version}"),
            call(&env, mode, "ADD", &cv, "ctr-v").netns(c3.path()),
        );
        run(
            &format!("DEL {version}"),
            call(&env, mode, "DEL", &cv, "ctr-v").netns(c3.path()),
        );
    }
    steps
}

#[test]
fn in_process_and_exec_give_the_same_results_errors_and_state() {
    if !require_root() {
        return;
    }
    assert_same_build(&TestEnv::new());
    let inproc = scenario(Mode::Default);
    let exec = scenario(Mode::Exec);
    assert_eq!(inproc.len(), exec.len());
    for ((name, a), (_, b)) in inproc.iter().zip(&exec) {
        assert_eq!(a, b, "step {name}: in-process (left) vs exec (right)");
    }
    // The scenario really exercised errors and state.
    let codes: Vec<String> = inproc
        .iter()
        .filter(|(_, o)| o.status != Some(0))
        .map(|(n, o)| format!("{n}: {}", o.stdout))
        .collect();
    for code in ["100", "101", "103", "50", "7"] {
        assert!(
            codes
                .iter()
                .any(|c| c.contains(&format!("\"code\": {code},"))),
            "no error {code} in {codes:#?}"
        );
    }
    assert!(
        inproc
            .iter()
            .any(|(n, o)| n == "ADD 2" && o.state.iter().any(|(f, _)| f.ends_with("10.78.0.11"))),
        "{inproc:#?}"
    );
    assert!(
        inproc
            .iter()
            .any(|(n, o)| n == "DEL 2 (debug log)"
                && o.stderr.contains("host-local: DEBUG: released")),
        "{inproc:#?}"
    );
}

#[test]
fn failed_add_releases_the_address_in_either_mode() {
    let Some((env, c)) = traced_env("10.80.0.0/24") else {
        return;
    };
    for mode in [Mode::Default, Mode::Exec] {
        for step in ["ipam", "container", "gateway", "masq", "wait"] {
            let ctr = Netns::new();
            let call = call(&env, mode, "ADD", &c, "rollback")
                .netns(ctr.path())
                .env("CNI_BRIDGE_FAIL_AFTER", step);
            let (out, execs) = traced(&env, &call);
            assert!(!out.success(), "{mode:?} {step}: {}", out.describe());
            out.assert_failure("injected failure");
            // ADD and the rollback's DEL: exec'd twice, or not at all.
            let want = if mode == Mode::Exec { 2 } else { 0 };
            assert_eq!(
                host_local_execs(&execs).len(),
                want,
                "{mode:?} {step}: {execs:?}"
            );
            assert!(
                reservations(&env).is_empty(),
                "{mode:?} {step}: {:?}",
                reservations(&env)
            );
        }
    }
    // And without injection the same ADD works and holds one address.
    let ctr = Netns::new();
    call(&env, Mode::Default, "ADD", &c, "after")
        .netns(ctr.path())
        .run_in(&env.host, &plugin_bin("bridge"))
        .assert_success();
    assert_eq!(reservations(&env).len(), 1, "{:?}", reservations(&env));
}
