//! Runner tests with fake plugins: shell scripts that log their stdin and
//! `CNI_*` environment and print canned results.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::*;

/// A plugin directory with logging fake plugins, a cache dir and a log.
struct Fixture {
    dir: tempfile::TempDir,
}

/// One logged plugin call.
#[derive(Debug)]
struct Call {
    plugin: String,
    command: String,
    stdin: Value,
    env: Vec<(String, String)>,
}

impl Call {
    fn env(&self, key: &str) -> &str {
        self.env
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("{key} not set in {:?}", self.env))
    }
}

impl Fixture {
    fn new(plugins: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let f = Self { dir };
        std::fs::create_dir(f.bin()).unwrap();
        std::fs::create_dir(f.log()).unwrap();
        for p in plugins {
            f.plugin(p);
        }
        f
    }

    fn bin(&self) -> PathBuf {
        self.dir.path().join("bin")
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("log")
    }

    fn cache_dir(&self) -> PathBuf {
        self.dir.path().join("cache")
    }

    fn runtime(&self) -> CniConfig {
        CniConfig::with_cache_dir(
            vec![PathBuf::from("/nonexistent"), self.bin()],
            self.cache_dir(),
        )
    }

    /// A fake plugin: logs stdin and env; prints `<name>.fail-<CMD>` and
    /// exits 1 if that file exists; prints `<name>.result` on ADD.
    fn plugin(&self, name: &str) {
        let d = self.dir.path().display();
        let script = format!(
            r#"#!/bin/sh
n=$(ls "{d}/log" | wc -l)
n=$(printf %04d $((n / 2)))
cat > "{d}/log/$n-{name}-$CNI_COMMAND.stdin"
env | grep '^CNI_' | sort > "{d}/log/$n-{name}-$CNI_COMMAND.env"
if [ -f "{d}/{name}.fail-$CNI_COMMAND" ]; then cat "{d}/{name}.fail-$CNI_COMMAND"; exit 1; fi
if [ "$CNI_COMMAND" = VERSION ]; then echo '{{"cniVersion":"1.1.0","supportedVersions":["0.4.0","1.0.0","1.1.0"]}}'; fi
if [ "$CNI_COMMAND" = ADD ]; then cat "{d}/{name}.result"; fi
exit 0
"#
        );
        let p = self.bin().join(name);
        std::fs::write(&p, script).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn set_result(&self, plugin: &str, result: &Value) {
        std::fs::write(
            self.dir.path().join(format!("{plugin}.result")),
            result.to_string(),
        )
        .unwrap();
    }

    fn set_failure(&self, plugin: &str, command: &str, output: &str) {
        std::fs::write(
            self.dir.path().join(format!("{plugin}.fail-{command}")),
            output,
        )
        .unwrap();
    }

    /// Every logged call, in order; the log is then cleared.
    fn take_calls(&self) -> Vec<Call> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(self.log())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "stdin"))
            .collect();
        names.sort();
        let calls = names
            .iter()
            .map(|p| {
                let stem = p.file_stem().unwrap().to_string_lossy().into_owned();
                let mut parts = stem.splitn(3, '-');
                let _seq = parts.next();
                let plugin = parts.next().unwrap().to_owned();
                let command = parts.next().unwrap().to_owned();
                let raw = std::fs::read(p).unwrap();
                let stdin = if raw.is_empty() {
                    Value::Null
                } else {
                    serde_json::from_slice(&raw).unwrap()
                };
                let env = std::fs::read_to_string(p.with_extension("env"))
                    .unwrap()
                    .lines()
                    .filter_map(|l| l.split_once('='))
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect();
                Call {
                    plugin,
                    command,
                    stdin,
                    env,
                }
            })
            .collect();
        for e in std::fs::read_dir(self.log()).unwrap() {
            std::fs::remove_file(e.unwrap().path()).unwrap();
        }
        calls
    }

    fn cache_file(&self, net: &str, id: &str, ifname: &str) -> PathBuf {
        self.cache_dir()
            .join(format!("results/{net}-{id}-{ifname}"))
    }
}

fn list(json: &Value) -> NetworkConfigList {
    NetworkConfigList::from_bytes(json.to_string().as_bytes()).unwrap()
}

fn result_a() -> Value {
    json!({
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "eth0", "mac": "aa:bb:cc:dd:ee:ff", "sandbox": "/run/netns/c1"}],
        "ips": [{"interface": 0, "address": "10.1.0.2/24", "gateway": "10.1.0.1"}],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dns": {}
    })
}

fn result_b() -> Value {
    json!({
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "eth0", "mac": "aa:bb:cc:dd:ee:ff", "sandbox": "/run/netns/c1"}],
        "ips": [{"interface": 0, "address": "10.1.0.2/24", "gateway": "10.1.0.1"}],
        "routes": [{"dst": "0.0.0.0/0"}, {"dst": "192.168.0.0/16", "gw": "10.1.0.254"}],
        "dns": {"nameservers": ["10.1.0.53"]}
    })
}

fn two_plugin_list(version: &str) -> NetworkConfigList {
    list(&json!({
        "name": "net1",
        "cniVersion": version,
        "plugins": [
            {"type": "a", "name": "own-name", "cniVersion": "0.1.0",
             "capabilities": {"portMappings": true, "mac": false},
             "runtimeConfig": {"fromFile": true}, "custom": {"k": 1}},
            {"type": "b"}
        ]
    }))
}

fn rt() -> RuntimeConf {
    let mut rt = RuntimeConf::new("ctr1", "/run/netns/c1", "eth0");
    rt.args = vec![
        ("IgnoreUnknown".into(), "1".into()),
        ("K8S_POD_NAME".into(), "p1".into()),
    ];
    rt.capability_args.insert(
        "portMappings".into(),
        json!([{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]),
    );
    rt.capability_args
        .insert("mac".into(), json!("c2:11:22:33:44:55"));
    rt.capability_args
        .insert("ips".into(), json!(["10.1.0.9/24"]));
    rt
}

fn normalized(v: &Value, version: SpecVersion) -> Value {
    Success::from_value(v, version)
        .unwrap()
        .to_value(version)
        .unwrap()
}

/// Plugins `a` and `b` answering [`result_a`] and [`result_b`], and the list of both
/// with `version`.
fn two_plugins_answering(version: &str) -> (Fixture, NetworkConfigList) {
    let f = Fixture::new(&["a", "b"]);
    f.set_result("a", &result_a());
    f.set_result("b", &result_b());
    (f, two_plugin_list(version))
}

/// (plugin, command) of each call, in order.
fn order(calls: &[Call]) -> Vec<(&str, &str)> {
    calls
        .iter()
        .map(|c| (c.plugin.as_str(), c.command.as_str()))
        .collect()
}

#[test]
fn add_chains_prev_result_injects_name_version_and_declared_capabilities() {
    let (f, l) = two_plugins_answering("1.0.0");
    let got = f.runtime().add_network_list(&l, &rt()).unwrap();
    assert_eq!(
        got,
        Success::from_value(&result_b(), cni::version::V1_0_0).unwrap()
    );

    let calls = f.take_calls();
    assert_eq!(calls.len(), 2);
    let (a, b) = (&calls[0], &calls[1]);
    assert_eq!((a.plugin.as_str(), a.command.as_str()), ("a", "ADD"));
    assert_eq!((b.plugin.as_str(), b.command.as_str()), ("b", "ADD"));
    // name and version come from the list; plugin keys are kept.
    assert_eq!(a.stdin["name"], "net1");
    assert_eq!(a.stdin["cniVersion"], "1.0.0");
    assert_eq!(a.stdin["custom"], json!({"k": 1}));
    // Only declared and enabled capabilities; runtimeConfig replaced.
    assert_eq!(
        a.stdin["runtimeConfig"],
        json!({"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]})
    );
    assert!(a.stdin.get("prevResult").is_none());
    // b declares nothing: no runtimeConfig; it gets a's result.
    assert!(b.stdin.get("runtimeConfig").is_none());
    assert_eq!(
        b.stdin["prevResult"],
        normalized(&result_a(), cni::version::V1_0_0)
    );
    assert_eq!(b.stdin["name"], "net1");
    for c in &calls {
        assert_eq!(c.env("CNI_COMMAND"), "ADD");
        assert_eq!(c.env("CNI_CONTAINERID"), "ctr1");
        assert_eq!(c.env("CNI_NETNS"), "/run/netns/c1");
        assert_eq!(c.env("CNI_IFNAME"), "eth0");
        assert_eq!(c.env("CNI_ARGS"), "IgnoreUnknown=1;K8S_POD_NAME=p1");
        assert_eq!(
            c.env("CNI_PATH"),
            format!("/nonexistent:{}", f.bin().display())
        );
    }

    // Cached in libcni's format.
    let cached: Value =
        serde_json::from_slice(&std::fs::read(f.cache_file("net1", "ctr1", "eth0")).unwrap())
            .unwrap();
    assert_eq!(cached["kind"], "cniCacheV1");
    assert_eq!(cached["containerId"], "ctr1");
    assert_eq!(cached["ifName"], "eth0");
    assert_eq!(cached["networkName"], "net1");
    assert_eq!(cached["netns"], "/run/netns/c1");
    assert_eq!(
        cached["cniArgs"],
        json!([["IgnoreUnknown", "1"], ["K8S_POD_NAME", "p1"]])
    );
    assert_eq!(cached["capabilityArgs"]["mac"], "c2:11:22:33:44:55");
    assert_eq!(
        codec::base64_decode(cached["config"].as_str().unwrap()).unwrap(),
        l.bytes
    );
    assert_eq!(
        cached["result"],
        normalized(&result_b(), cni::version::V1_0_0)
    );
}

#[test]
fn del_runs_in_reverse_with_cached_result_after_restart_and_drops_the_entry() {
    let (f, l) = two_plugins_answering("1.0.0");
    f.runtime().add_network_list(&l, &rt()).unwrap();
    f.take_calls();

    // A fresh runtime object (a restarted process) with the same cache dir.
    let mut del_rt = rt();
    del_rt.capability_args.remove("portMappings");
    f.runtime().del_network_list(&l, &del_rt).unwrap();
    let calls = f.take_calls();
    let order = order(&calls);
    assert_eq!(order, [("b", "DEL"), ("a", "DEL")]);
    for c in &calls {
        assert_eq!(
            c.stdin["prevResult"],
            normalized(&result_b(), cni::version::V1_0_0)
        );
    }
    assert!(!f.cache_file("net1", "ctr1", "eth0").exists());

    // DEL again: no cache, no prevResult, still succeeds.
    f.runtime().del_network_list(&l, &del_rt).unwrap();
    let calls = f.take_calls();
    assert_eq!(calls.len(), 2);
    assert!(calls.iter().all(|c| c.stdin.get("prevResult").is_none()));
}

#[test]
fn del_failure_keeps_the_cache_entry() {
    let (f, l) = two_plugins_answering("1.0.0");
    let cni = f.runtime();
    cni.add_network_list(&l, &rt()).unwrap();
    f.set_failure(
        "a",
        "DEL",
        r#"{"code":11,"msg":"busy","details":"try later"}"#,
    );
    let e = cni.del_network_list(&l, &rt()).unwrap_err();
    assert_eq!(e.cni_error().unwrap().code, 11);
    assert_eq!(
        e.to_string(),
        r#"plugin type="a" name="own-name" failed (delete): busy; try later"#
    );
    assert!(f.cache_file("net1", "ctr1", "eth0").exists());
}

#[test]
fn corrupt_cache_entry_is_dropped_on_del() {
    let f = Fixture::new(&["a", "b"]);
    let l = two_plugin_list("1.0.0");
    let file = f.cache_file("net1", "ctr1", "eth0");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, r#"{"kind":"cniCacheV1","containerId":"ctr1","ifName":"eth0","networkName":"net1","result":{"cniVersion":"1.0.0","ips":"bad"}}"#).unwrap();
    f.runtime().del_network_list(&l, &rt()).unwrap();
    assert!(
        f.take_calls()
            .iter()
            .all(|c| c.stdin.get("prevResult").is_none())
    );
    assert!(!file.exists());
}

#[test]
fn pre_040_del_sends_no_prev_result() {
    let f = Fixture::new(&["a", "b"]);
    f.set_result(
        "a",
        &json!({"cniVersion": "0.3.1", "ips": [{"version": "4", "address": "10.1.0.2/24"}]}),
    );
    f.set_result(
        "b",
        &json!({"cniVersion": "0.3.1", "ips": [{"version": "4", "address": "10.1.0.2/24"}]}),
    );
    let l = two_plugin_list("0.3.1");
    let cni = f.runtime();
    cni.add_network_list(&l, &rt()).unwrap();
    f.take_calls();
    cni.del_network_list(&l, &rt()).unwrap();
    assert!(
        f.take_calls()
            .iter()
            .all(|c| c.stdin.get("prevResult").is_none())
    );
    let e = cni.check_network_list(&l, &rt()).unwrap_err();
    assert!(
        e.to_string().contains("does not support the CHECK command"),
        "{e}"
    );
}

#[test]
fn check_sends_cached_result_converted_to_the_list_version() {
    let f = Fixture::new(&["a", "b"]);
    let l = two_plugin_list("0.4.0");
    // The entry was written with a 1.0.0 result (config changed since).
    f.runtime()
        .cache()
        .store(&CacheEntry {
            kind: cache::CACHE_KIND_V1.into(),
            container_id: "ctr1".into(),
            config: l.bytes.clone(),
            ifname: "eth0".into(),
            network_name: "net1".into(),
            netns: "/run/netns/c1".into(),
            cni_args: Vec::new(),
            capability_args: Map::new(),
            result: Some(result_a()),
        })
        .unwrap();
    f.runtime().check_network_list(&l, &rt()).unwrap();
    let calls = f.take_calls();
    let order = order(&calls);
    assert_eq!(order, [("a", "CHECK"), ("b", "CHECK")]);
    for c in &calls {
        assert_eq!(c.stdin["prevResult"]["cniVersion"], "0.4.0");
        assert_eq!(c.stdin["prevResult"]["ips"][0]["version"], "4");
    }
    assert_eq!(
        calls[0].stdin["runtimeConfig"]["portMappings"][0]["hostPort"],
        8080
    );

    // disableCheck: nothing runs.
    let mut quiet = l.clone();
    quiet.disable_check = true;
    f.runtime().check_network_list(&quiet, &rt()).unwrap();
    assert!(f.take_calls().is_empty());

    // A failing CHECK is reported with the plugin's error.
    f.set_failure("b", "CHECK", r#"{"code":999,"msg":"veth gone"}"#);
    let e = f.runtime().check_network_list(&l, &rt()).unwrap_err();
    assert_eq!(
        e.to_string(),
        r#"plugin type="b" failed (check): veth gone"#
    );
}

#[test]
fn add_failure_stops_the_chain_and_caches_nothing() {
    let f = Fixture::new(&["a", "b"]);
    f.set_result("b", &result_b());
    f.set_failure(
        "a",
        "ADD",
        r#"{"cniVersion":"1.0.0","code":7,"msg":"bad config","details":"no bridge"}"#,
    );
    let l = two_plugin_list("1.0.0");
    let e = f.runtime().add_network_list(&l, &rt()).unwrap_err();
    assert_eq!(
        e.cni_error(),
        Some(&cni::Error::invalid_config("bad config").with_details("no bridge"))
    );
    assert_eq!(f.take_calls().len(), 1);
    assert!(!f.cache_file("net1", "ctr1", "eth0").exists());
}

#[test]
fn failure_without_cni_error_keeps_stderr() {
    let f = Fixture::new(&["a"]);
    let crash = f.bin().join("crash");
    std::fs::write(&crash, "#!/bin/sh\necho 'panic: boom' >&2\nexit 2\n").unwrap();
    std::fs::set_permissions(&crash, std::fs::Permissions::from_mode(0o755)).unwrap();
    let l = list(&json!({"name": "n", "cniVersion": "1.0.0", "plugins": [{"type": "crash"}]}));
    let e = f.runtime().add_network_list(&l, &rt()).unwrap_err();
    let ce = e.cni_error().unwrap();
    assert_eq!(ce.code, 999);
    assert!(ce.details.contains("panic: boom"), "{ce:?}");
}

#[test]
fn invalid_result_and_missing_plugin_are_errors() {
    let f = Fixture::new(&["a"]);
    std::fs::write(f.dir.path().join("a.result"), "not json").unwrap();
    let l = list(&json!({"name": "n", "cniVersion": "1.0.0", "plugins": [{"type": "a"}]}));
    let e = f.runtime().add_network_list(&l, &rt()).unwrap_err();
    assert!(e.to_string().contains("invalid result"), "{e}");
    let l = list(&json!({"name": "n", "cniVersion": "1.0.0", "plugins": [{"type": "nope"}]}));
    let e = f.runtime().add_network_list(&l, &rt()).unwrap_err();
    assert_eq!(e.cni_error().unwrap().code, 7);
    assert!(
        e.to_string().contains(r#"failed to find plugin "nope""#),
        "{e}"
    );
}

#[test]
fn invalid_attachment_is_rejected_before_any_plugin_runs() {
    let f = Fixture::new(&["a", "b"]);
    let l = two_plugin_list("1.0.0");
    for rt in [
        RuntimeConf::new("", "/run/netns/c1", "eth0"),
        RuntimeConf::new("bad id!", "/run/netns/c1", "eth0"),
        RuntimeConf::new("ctr1", "/run/netns/c1", "an-interface-name-too-long"),
        RuntimeConf::new("ctr1", "/run/netns/c1", "a/b"),
    ] {
        let e = f.runtime().add_network_list(&l, &rt).unwrap_err();
        assert_eq!(e.cni_error().unwrap().code, 4, "{rt:?}: {e}");
    }
    let bad_net =
        list(&json!({"name": "bad/name", "cniVersion": "1.0.0", "plugins": [{"type": "a"}]}));
    let e = f.runtime().del_network_list(&bad_net, &rt()).unwrap_err();
    assert_eq!(e.cni_error().unwrap().code, 7, "{e}");
    assert!(f.take_calls().is_empty());
}

#[test]
fn gc_deletes_stale_attachments_then_runs_plugin_gc_with_the_valid_list() {
    let (f, l) = two_plugins_answering("1.1.0");
    let cni = f.runtime();
    let mut rt2 = RuntimeConf::new("ctr2", "/run/netns/c2", "eth0");
    rt2.capability_args.insert(
        "portMappings".into(),
        json!([{"hostPort": 9090, "containerPort": 90, "protocol": "udp"}]),
    );
    cni.add_network_list(&l, &rt()).unwrap();
    cni.add_network_list(&l, &rt2).unwrap();
    // Another network's attachment is not touched.
    let other = list(&json!({"name": "other", "cniVersion": "1.1.0", "plugins": [{"type": "a"}]}));
    cni.add_network_list(&other, &rt2).unwrap();
    f.take_calls();

    let valid = [GcAttachment {
        container_id: "ctr1".into(),
        ifname: "eth0".into(),
    }];
    cni.gc_network_list(&l, Some(&valid)).unwrap();
    let calls = f.take_calls();
    let order = order(&calls);
    assert_eq!(
        order,
        [("b", "DEL"), ("a", "DEL"), ("a", "GC"), ("b", "GC")]
    );
    // The stale DEL uses what was cached at ADD.
    assert_eq!(calls[1].env("CNI_CONTAINERID"), "ctr2");
    assert_eq!(calls[1].env("CNI_NETNS"), "/run/netns/c2");
    assert_eq!(
        calls[1].stdin["runtimeConfig"]["portMappings"][0]["hostPort"],
        9090
    );
    let want = json!([{"containerID": "ctr1", "ifname": "eth0"}]);
    for gc in &calls[2..] {
        assert_eq!(gc.stdin["cni.dev/valid-attachments"], want);
        assert_eq!(gc.stdin["cni.dev/attachments"], want);
        assert_eq!(gc.stdin["name"], "net1");
        // No capability injection for GC: the file's own runtimeConfig stays.
        let from_file = (gc.plugin == "a").then(|| json!({"fromFile": true}));
        assert_eq!(gc.stdin.get("runtimeConfig").cloned(), from_file);
        for var in ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS"] {
            assert_eq!(gc.env(var), "", "{var}");
        }
    }
    assert!(f.cache_file("net1", "ctr1", "eth0").exists());
    assert!(!f.cache_file("net1", "ctr2", "eth0").exists());
    assert!(f.cache_file("other", "ctr2", "eth0").exists());

    // No list: everything cached is stale; plugins get no list.
    cni.gc_network_list(&l, None).unwrap();
    let calls = f.take_calls();
    assert_eq!(calls.len(), 4);
    assert!(calls[2].stdin.get("cni.dev/valid-attachments").is_none());
    assert!(!f.cache_file("net1", "ctr1", "eth0").exists());
}

#[test]
fn gc_respects_disable_gc_and_old_versions_and_collects_errors() {
    let f = Fixture::new(&["a", "b"]);
    f.set_result("a", &result_a());
    f.set_result("b", &result_b());
    let mut l = two_plugin_list("1.1.0");
    l.disable_gc = true;
    f.runtime().add_network_list(&l, &rt()).unwrap();
    f.take_calls();
    f.runtime().gc_network_list(&l, Some(&[])).unwrap();
    assert!(f.take_calls().is_empty());
    assert!(f.cache_file("net1", "ctr1", "eth0").exists());

    // 1.0.0: stale DELs, but no plugin GC.
    let old = two_plugin_list("1.0.0");
    f.runtime().gc_network_list(&old, Some(&[])).unwrap();
    let cmds: Vec<_> = f.take_calls().into_iter().map(|c| c.command).collect();
    assert_eq!(cmds, ["DEL", "DEL"]);

    // Errors do not stop GC; all are reported.
    let l = two_plugin_list("1.1.0");
    f.set_failure("a", "GC", r#"{"code":999,"msg":"a broke"}"#);
    f.set_failure("b", "GC", r#"{"code":999,"msg":"b broke"}"#);
    let e = f.runtime().gc_network_list(&l, Some(&[])).unwrap_err();
    assert!(
        matches!(&e, Error::Multiple(all) if all.len() == 2),
        "{e:?}"
    );
    assert!(e.to_string().contains("a broke") && e.to_string().contains("b broke"));
}

#[test]
fn status_runs_only_from_1_1_0_and_reports_the_plugin_code() {
    let f = Fixture::new(&["a", "b"]);
    f.runtime()
        .status_network_list(&two_plugin_list("1.0.0"))
        .unwrap();
    assert!(f.take_calls().is_empty());
    let l = two_plugin_list("1.1.0");
    f.runtime().status_network_list(&l).unwrap();
    let calls = f.take_calls();
    assert_eq!(calls.len(), 2);
    assert!(
        calls
            .iter()
            .all(|c| c.command == "STATUS" && c.env("CNI_IFNAME").is_empty())
    );
    f.set_failure("a", "STATUS", r#"{"code":50,"msg":"no addresses left"}"#);
    let e = f.runtime().status_network_list(&l).unwrap_err();
    assert_eq!(e.cni_error().unwrap().code, 50);
    assert_eq!(f.take_calls().len(), 1, "STATUS stops at the first failure");
}

#[test]
fn version_info_and_validation() {
    let f = Fixture::new(&["a", "b"]);
    let cni = f.runtime();
    let info = cni.plugin_version_info("a").unwrap();
    assert_eq!(info.cni_version, "1.1.0");
    assert!(info.supported_versions.contains(&"1.0.0".to_owned()));
    let caps = cni
        .validate_network_list(&two_plugin_list("1.0.0"))
        .unwrap();
    assert_eq!(caps, ["portMappings"]);
    let e = cni
        .validate_network_list(&two_plugin_list("0.3.1"))
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("does not support config version \"0.3.1\""),
        "{e}"
    );
}

#[test]
fn cnitool_container_id_matches_upstream() {
    // python3 -c "import hashlib;print(hashlib.sha512(b'/run/netns/demo').hexdigest()[:20])"
    assert_eq!(
        cnitool_container_id("/run/netns/demo"),
        "cnitool-78367785f8561ce49ede"
    );
}

#[test]
fn cni_args_parse_like_cnitool() {
    assert_eq!(
        parse_cni_args("IgnoreUnknown=1;IP=10.0.0.5").unwrap(),
        [
            ("IgnoreUnknown".to_owned(), "1".to_owned()),
            ("IP".to_owned(), "10.0.0.5".to_owned())
        ]
    );
    for bad in ["", "A", "A=", "=1", "A=1;", "A=1=2"] {
        assert!(parse_cni_args(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn single_conf_runs_as_a_one_plugin_list() {
    let f = Fixture::new(&["a"]);
    f.set_result(
        "a",
        &json!({"cniVersion": "0.4.0", "ips": [{"version": "4", "address": "10.9.0.2/16"}]}),
    );
    let netdir = f.dir.path().join("net.d");
    std::fs::create_dir(&netdir).unwrap();
    std::fs::write(
        netdir.join("10-single.conf"),
        r#"{"name":"single","cniVersion":"0.4.0","type":"a","capabilities":{"ips":true}}"#,
    )
    .unwrap();
    let l = load_network(&netdir, "single").unwrap();
    let r = f.runtime().add_network_list(&l, &rt()).unwrap();
    assert_eq!(r.ips[0].address.to_string(), "10.9.0.2/16");
    let calls = f.take_calls();
    assert_eq!(
        calls[0].stdin["runtimeConfig"],
        json!({"ips": ["10.1.0.9/24"]})
    );
    assert!(Path::new(&f.cache_file("single", "ctr1", "eth0")).exists());
}
