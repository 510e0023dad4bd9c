//! host-local end to end: the built binary run as a runtime would run it,
//! with a temporary `dataDir`. host-local never enters a namespace, so the
//! calls run in the test's own namespace with a `CNI_NETNS` path that does
//! not exist (the skel accepts it; host-local never opens it).

use std::collections::BTreeSet;
use std::fs;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use cni_testsupport::{
    LockHolder, PluginCall, PluginOutput, bin_dir, dir_names, plugin_bin, reference_bin,
};
use serde_json::{Value, json};

const NET: &str = "hlnet";
const FAKE_NETNS: &str = "/var/run/netns/host-local-test-does-not-exist";
const ALL_VERSIONS: [&str; 7] = [
    "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0",
];

/// A fresh `dataDir` for one test.
struct Net {
    data: tempfile::TempDir,
}

impl Net {
    fn new() -> Self {
        Self {
            data: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn data_dir(&self) -> &Path {
        self.data.path()
    }

    /// `<dataDir>/<network>`.
    fn dir(&self) -> PathBuf {
        self.data.path().join(NET)
    }

    /// The temporary files (names starting with '.') in the network's directory.
    fn temp_files(&self) -> Vec<String> {
        dir_names(&self.dir())
            .into_iter()
            .filter(|n| n.starts_with('.'))
            .collect()
    }

    /// A configuration with the given `ipam` keys (dataDir added).
    fn conf(&self, version: &str, mut ipam: Value) -> String {
        ipam["type"] = json!("host-local");
        ipam["dataDir"] = json!(self.data_dir());
        json!({"cniVersion": version, "name": NET, "type": "bridge", "ipam": ipam}).to_string()
    }

    /// Like [`Net::conf`] with extra top-level keys.
    fn conf_with(&self, version: &str, ipam: Value, extra: Value) -> String {
        let mut v: Value = serde_json::from_str(&self.conf(version, ipam)).expect("json");
        for (k, x) in extra.as_object().expect("object") {
            v[k] = x.clone();
        }
        v.to_string()
    }

    /// Reservation files (`name -> content`), ignoring lock and cursors.
    fn reservations(&self) -> Vec<(String, String)> {
        let Ok(entries) = fs::read_dir(self.dir()) else {
            return Vec::new();
        };
        let mut v: Vec<(String, String)> = entries
            .map(|e| e.expect("entry"))
            .filter(|e| e.file_name().to_string_lossy().parse::<IpAddr>().is_ok())
            .map(|e| {
                (
                    e.file_name().to_string_lossy().into_owned(),
                    fs::read_to_string(e.path()).expect("read reservation"),
                )
            })
            .collect();
        v.sort();
        v
    }

    fn file(&self, name: &str) -> String {
        fs::read_to_string(self.dir().join(name)).expect("read state file")
    }
}

fn call(command: &str, stdin: &str) -> PluginCall {
    PluginCall::new(command, stdin)
        .netns(FAKE_NETNS)
        .cni_path(vec![bin_dir()])
        .timeout(Duration::from_secs(30))
}

fn run(c: &PluginCall) -> PluginOutput {
    c.run_here(&plugin_bin("host-local"))
}

fn add(stdin: &str, id: &str, ifname: &str) -> PluginOutput {
    run(&call("ADD", stdin).container_id(id).ifname(ifname))
}

fn del(stdin: &str, id: &str, ifname: &str) -> PluginOutput {
    run(&call("DEL", stdin)
        .container_id(id)
        .ifname(ifname)
        .no_netns())
}

#[track_caller]
fn assert_code(out: &PluginOutput, code: u64, msg: &str) {
    assert_eq!(out.error_code(), Some(code), "{}", out.describe());
    let m = out.error_msg().unwrap_or_default();
    assert!(m.contains(msg), "expected {msg:?} in {m:?}");
}

/// The addresses of an ADD result in any layout.
fn addresses(result: &Value) -> Vec<String> {
    if let Some(ips) = result["ips"].as_array() {
        return ips
            .iter()
            .map(|i| i["address"].as_str().expect("address").to_string())
            .collect();
    }
    ["ip4", "ip6"]
        .iter()
        .filter_map(|k| result[k]["ip"].as_str().map(str::to_string))
        .collect()
}

fn dual_stack() -> Value {
    json!({"ranges": [[{"subnet": "10.1.2.0/24"}, {"subnet": "10.1.4.0/24"}], [{"subnet": "2001:db8:1::/64"}]]})
}

#[test]
fn add_result_shape_in_every_version() {
    for v in ALL_VERSIONS {
        let net = Net::new();
        let resolv = net.data_dir().join("resolv.conf");
        fs::write(
            &resolv,
            "# comment\nnameserver 10.1.2.123\ndomain example.com\nsearch example.com other\noptions ndots:5\n",
        )
        .expect("write resolv.conf");
        let mut ipam = dual_stack();
        ipam["resolvConf"] = json!(resolv);
        ipam["routes"] = json!([
            {"dst": "0.0.0.0/0"},
            {"dst": "192.168.0.0/16", "gw": "10.1.2.9", "table": 100},
            {"dst": "::/0"}
        ]);
        let stdin = net.conf(v, ipam);
        let out = add(&stdin, "ctr", "eth0");
        out.assert_success();
        let r = out.json();
        assert_eq!(r["cniVersion"], v);
        assert_eq!(
            addresses(&r),
            ["10.1.2.2/24", "2001:db8:1::2/64"],
            "{v}: {r}"
        );
        assert_eq!(r["dns"]["nameservers"], json!(["10.1.2.123"]), "{v}");
        assert_eq!(r["dns"]["domain"], "example.com", "{v}");
        assert_eq!(r["dns"]["search"], json!(["example.com", "other"]), "{v}");
        assert_eq!(r["dns"]["options"], json!(["ndots:5"]), "{v}");
        assert!(
            r.get("interfaces")
                .is_none_or(|i| i.as_array().is_some_and(Vec::is_empty)),
            "{v}: {r}"
        );
        match v {
            "0.1.0" | "0.2.0" => {
                assert_eq!(r["ip4"]["gateway"], "10.1.2.1");
                assert_eq!(r["ip6"]["gateway"], "2001:db8:1::1");
                assert_eq!(r["ip4"]["routes"].as_array().map(Vec::len), Some(2), "{r}");
                assert_eq!(r["ip6"]["routes"], json!([{"dst": "::/0"}]));
                assert!(r.get("ips").is_none());
            }
            _ => {
                let ips = r["ips"].as_array().expect("ips");
                assert_eq!(ips[0]["gateway"], "10.1.2.1");
                assert_eq!(ips[1]["gateway"], "2001:db8:1::1");
                let versioned = ips.iter().all(|i| i.get("version").is_some());
                assert_eq!(versioned, v.starts_with("0."), "{v}: {r}");
                if v.starts_with("0.") {
                    assert_eq!(ips[0]["version"], "4");
                    assert_eq!(ips[1]["version"], "6");
                }
                assert_eq!(r["routes"].as_array().map(Vec::len), Some(3), "{r}");
                assert_eq!(r["routes"][1]["table"], 100, "{v}: 1.1.0 route fields kept");
                assert!(r.get("ip4").is_none());
            }
        }
        del(&stdin, "ctr", "eth0").assert_success();
        assert!(net.reservations().is_empty(), "{v}");
    }
}

#[test]
fn state_files_match_the_reference_layout() {
    let net = Net::new();
    let stdin = net.conf("0.4.0", dual_stack());
    add(&stdin, "ctr-1", "eth0").assert_success();
    assert_eq!(
        net.reservations(),
        [
            ("10.1.2.2".to_string(), "ctr-1\r\neth0".to_string()),
            ("2001:db8:1::2".to_string(), "ctr-1\r\neth0".to_string()),
        ]
    );
    assert_eq!(net.file("last_reserved_ip.0"), "10.1.2.2");
    assert_eq!(net.file("last_reserved_ip.1"), "2001:db8:1::2");
    let mut names: Vec<String> = fs::read_dir(net.dir())
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "10.1.2.2",
            "2001:db8:1::2",
            "last_reserved_ip.0",
            "last_reserved_ip.1",
            "lock"
        ],
        "no temporary files are left"
    );
    for n in &names {
        let mode = fs::metadata(net.dir().join(n))
            .expect("stat")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{n}");
    }
    let dir_mode = fs::metadata(net.dir()).expect("stat").permissions().mode() & 0o777;
    assert_eq!(dir_mode, 0o755);
}

#[test]
fn every_config_form_orders_range_sets() {
    let net = Net::new();
    let ipam = json!({
        "subnet": "10.10.0.0/24", "rangeStart": "10.10.0.50", "rangeEnd": "10.10.0.60", "gateway": "10.10.0.254",
        "ranges": [[{"subnet": "10.20.0.0/24"}], [{"subnet": "2001:db8:20::/64", "rangeStart": "2001:db8:20::100"}]]
    });
    let stdin = net.conf_with(
        "1.0.0",
        ipam,
        json!({"runtimeConfig": {"ipRanges": [[{"subnet": "10.30.0.0/24", "gateway": "10.30.0.5"}]]}}),
    );
    let out = add(&stdin, "ctr", "eth0");
    out.assert_success();
    let r = out.json();
    assert_eq!(
        addresses(&r),
        [
            "10.30.0.1/24",
            "10.10.0.50/24",
            "10.20.0.2/24",
            "2001:db8:20::100/64"
        ],
        "{r}"
    );
    assert_eq!(r["ips"][0]["gateway"], "10.30.0.5");
    assert_eq!(r["ips"][1]["gateway"], "10.10.0.254");
    // the cursors follow the set order
    assert_eq!(net.file("last_reserved_ip.0"), "10.30.0.1");
    assert_eq!(net.file("last_reserved_ip.3"), "2001:db8:20::100");
}

#[test]
fn invalid_configs_are_code_7_with_reference_messages() {
    let net = Net::new();
    let cases = [
        (
            json!({"ranges": [[{"subnet": "10.1.2.3/24"}]]}),
            "invalid range set 0: Network has host bits set. For a subnet mask of length 24 the network address is 10.1.2.0",
        ),
        (
            json!({"ranges": [[{"subnet": "10.1.2.0/24"}], [{"subnet": "10.1.2.128/25"}]]}),
            "range set 0 overlaps with 1",
        ),
        (
            json!({"ranges": [[{"subnet": "10.1.2.0/24"}, {"subnet": "2001:db8::/64"}]]}),
            "invalid range set 0: mixed address families",
        ),
        (json!({}), "no IP ranges specified"),
    ];
    for (ipam, msg) in cases {
        let out = add(&net.conf("0.4.0", ipam), "ctr", "eth0");
        assert_code(&out, 7, msg);
        assert_eq!(out.error_msg().as_deref(), Some(msg));
    }
    let no_ipam = json!({"cniVersion": "0.4.0", "name": NET, "type": "bridge"}).to_string();
    assert_code(
        &add(&no_ipam, "ctr", "eth0"),
        7,
        "IPAM config missing 'ipam' key",
    );
    let two_v4 = net.conf(
        "0.2.0",
        json!({"ranges": [[{"subnet": "10.1.2.0/24"}], [{"subnet": "10.1.3.0/24"}]]}),
    );
    assert_code(
        &add(&two_v4, "ctr", "eth0"),
        7,
        "CNI version 0.2.0 does not support more than 1 address per family",
    );
    assert!(!net.dir().exists(), "failed ADDs create no state");
}

#[test]
fn requested_ips_from_cni_args_args_and_runtime_config() {
    let net = Net::new();
    let ipam = json!({"ranges": [[{"subnet": "10.1.2.0/24"}], [{"subnet": "2001:db8::/64"}]]});
    let plain = net.conf("1.0.0", ipam.clone());

    let out = run(&call("ADD", &plain)
        .container_id("a")
        .cni_args("IgnoreUnknown=1;K8S_POD_NAME=x;IP=10.1.2.10/24"));
    out.assert_success();
    assert_eq!(addresses(&out.json()), ["10.1.2.10/24", "2001:db8::2/64"]);

    let with_args = net.conf_with(
        "1.0.0",
        ipam.clone(),
        json!({"args": {"cni": {"ips": ["10.1.2.11", "2001:db8::11/64"]}}}),
    );
    let out = add(&with_args, "b", "eth0");
    out.assert_success();
    assert_eq!(addresses(&out.json()), ["10.1.2.11/24", "2001:db8::11/64"]);

    let with_rc = net.conf_with(
        "1.0.0",
        ipam.clone(),
        json!({"runtimeConfig": {"ips": ["10.1.2.12/24"]}}),
    );
    let out = add(&with_rc, "c", "eth0");
    out.assert_success();
    // the v6 set continues after the requested ::11 (a requested address moves the cursor)
    assert_eq!(addresses(&out.json()), ["10.1.2.12/24", "2001:db8::12/64"]);

    // a requested address already taken
    assert_code(
        &add(&with_rc, "d", "eth0"),
        101,
        "failed to allocate for range 0: requested IP address 10.1.2.12 is not available in range set 10.1.2.1-10.1.2.254",
    );
    // the gateway
    let gw = run(&call("ADD", &plain)
        .container_id("e")
        .cni_args("IP=10.1.2.1"));
    assert_code(&gw, 7, "requested ip 10.1.2.1 is subnet's gateway");
    // two in one set: the first wins, the other is unused -> nothing reserved
    let before = net.reservations();
    let two_in_one = net.conf_with(
        "1.0.0",
        ipam.clone(),
        json!({"args": {"cni": {"ips": ["10.1.2.20", "10.1.2.21"]}}}),
    );
    let two = add(&two_in_one, "f", "eth0");
    assert_code(&two, 7, "failed to allocate all requested IPs: 10.1.2.21");
    // outside every set
    let out = run(&call("ADD", &plain)
        .container_id("g")
        .cni_args("IP=10.9.9.9"));
    assert_code(&out, 7, "failed to allocate all requested IPs: 10.9.9.9");
    assert_eq!(
        net.reservations(),
        before,
        "failed requests reserve nothing"
    );
    // malformed CNI_ARGS
    assert_code(
        &run(&call("ADD", &plain).container_id("h").cni_args("IP=nope")),
        4,
        "IP=nope",
    );
    assert_code(
        &run(&call("ADD", &plain).container_id("h").cni_args("FOO=1")),
        4,
        "FOO=1",
    );
}

#[test]
fn exhaustion_then_release_and_reuse_with_status() {
    let net = Net::new();
    let stdin = net.conf("1.1.0", json!({"ranges": [[{"subnet": "10.9.0.0/30"}]]}));
    let status = || {
        run(&call("STATUS", &stdin)
            .container_id("")
            .ifname("")
            .no_netns())
    };
    status().assert_success();
    assert!(!net.dir().exists(), "STATUS creates nothing");
    assert_eq!(addresses(&add(&stdin, "a", "eth0").json()), ["10.9.0.2/30"]);
    let full = add(&stdin, "b", "eth0");
    assert_code(
        &full,
        100,
        "failed to allocate for range 0: no IP addresses available in range set: 10.9.0.1-10.9.0.2",
    );
    assert_code(
        &status(),
        50,
        "no IP addresses available in range set: 10.9.0.1-10.9.0.2",
    );
    del(&stdin, "a", "eth0").assert_success();
    status().assert_success();
    assert_eq!(addresses(&add(&stdin, "b", "eth0").json()), ["10.9.0.2/30"]);
    assert_eq!(
        net.reservations(),
        [("10.9.0.2".to_string(), "b\r\neth0".to_string())]
    );
}

#[test]
fn round_robin_does_not_reuse_a_released_address_at_once() {
    let net = Net::new();
    let stdin = net.conf("1.0.0", json!({"ranges": [[{"subnet": "10.9.0.0/29"}]]}));
    assert_eq!(addresses(&add(&stdin, "a", "eth0").json()), ["10.9.0.2/29"]);
    del(&stdin, "a", "eth0").assert_success();
    assert_eq!(addresses(&add(&stdin, "b", "eth0").json()), ["10.9.0.3/29"]);
    for (id, want) in [
        ("c", "10.9.0.4/29"),
        ("d", "10.9.0.5/29"),
        ("e", "10.9.0.6/29"),
        ("f", "10.9.0.2/29"),
    ] {
        assert_eq!(addresses(&add(&stdin, id, "eth0").json()), [want], "{id}");
    }
    assert_code(&add(&stdin, "g", "eth0"), 100, "no IP addresses available");
}

#[test]
fn status_reports_an_unusable_store() {
    let net = Net::new();
    fs::write(net.dir(), "not a directory").expect("write");
    let stdin = net.conf("1.1.0", json!({"ranges": [[{"subnet": "10.9.0.0/24"}]]}));
    let out = run(&call("STATUS", &stdin)
        .container_id("")
        .ifname("")
        .no_netns());
    assert_code(&out, 50, "not a directory");
    assert_code(&add(&stdin, "a", "eth0"), 5, "");
}

/// Runs the plugin in a private mount namespace in which `dataDir` is a
/// read-only bind mount.
fn run_read_only(net: &Net, c: &PluginCall) -> PluginOutput {
    let d = net.data_dir().display().to_string();
    let script = format!(
        "mount --bind {d} {d} && mount -o remount,bind,ro {d} && exec {}",
        plugin_bin("host-local").display()
    );
    let mut unshare = c.process("unshare");
    unshare.args(["-m", "--propagation", "private", "sh", "-c", &script]);
    c.output_of(unshare)
}

#[test]
fn status_reports_a_read_only_store() {
    if !cni_testsupport::require_root() {
        return;
    }
    let net = Net::new();
    let stdin = net.conf("1.1.0", json!({"ranges": [[{"subnet": "10.9.0.0/24"}]]}));
    let status = call("STATUS", &stdin)
        .container_id("")
        .ifname("")
        .no_netns();
    // writable: fine, with or without the network directory
    assert_status_ok_when_writable(&net, &status);
    let out = run_read_only(&net, &status);
    assert_code(&out, 50, "IPAM store unusable");
    assert_code(
        &run_read_only(&net, &call("ADD", &stdin).container_id("a")),
        5,
        "",
    );
    fs::create_dir_all(net.dir()).expect("mkdir");
    assert_code(&run_read_only(&net, &status), 50, "IPAM store unusable");
}

/// The same STATUS without the read-only mount succeeds (so the failure
/// above is due to the mount).
fn assert_status_ok_when_writable(net: &Net, status: &PluginCall) {
    run(status).assert_success();
    assert!(!net.dir().exists());
}

#[test]
fn del_twice_unknown_container_and_no_state_directory() {
    let net = Net::new();
    let stdin = net.conf("0.4.0", dual_stack());
    del(&stdin, "never-added", "eth0").assert_success();
    let check = run(&call("CHECK", &stdin).container_id("never-added"));
    assert_code(
        &check,
        103,
        "host-local: Failed to find address added by container never-added",
    );
    assert!(
        !net.dir().exists(),
        "DEL and CHECK must not create the state directory"
    );
    add(&stdin, "ctr", "eth0").assert_success();
    del(&stdin, "ctr", "eth0").assert_success();
    del(&stdin, "ctr", "eth0").assert_success();
    assert!(net.reservations().is_empty());
    // cursors survive DEL
    assert_eq!(net.file("last_reserved_ip.0"), "10.1.2.2");
}

#[test]
fn two_ifnames_of_one_container_get_separate_addresses() {
    let net = Net::new();
    let stdin = net.conf("1.0.0", dual_stack());
    let a = add(&stdin, "ctr", "eth0");
    let b = add(&stdin, "ctr", "eth1");
    assert_eq!(addresses(&a.json()), ["10.1.2.2/24", "2001:db8:1::2/64"]);
    assert_eq!(addresses(&b.json()), ["10.1.2.3/24", "2001:db8:1::3/64"]);
    assert_code(
        &add(&stdin, "ctr", "eth0"),
        102,
        "failed to allocate for range 0: 10.1.2.2 has been allocated to ctr, duplicate allocation is not allowed",
    );
    del(&stdin, "ctr", "eth0").assert_success();
    assert_eq!(
        net.reservations(),
        [
            ("10.1.2.3".to_string(), "ctr\r\neth1".to_string()),
            ("2001:db8:1::3".to_string(), "ctr\r\neth1".to_string()),
        ]
    );
}

#[test]
fn check_compares_with_prev_result() {
    let net = Net::new();
    let stdin = net.conf("1.0.0", dual_stack());
    let result = add(&stdin, "ctr", "eth0").json();
    let with_prev = net.conf_with("1.0.0", dual_stack(), json!({"prevResult": result}));
    run(&call("CHECK", &with_prev).container_id("ctr")).assert_success();
    let mut wrong = result.clone();
    wrong["ips"][0]["address"] = json!("10.1.2.77/24");
    let bad = net.conf_with("1.0.0", dual_stack(), json!({"prevResult": wrong}));
    assert_code(
        &run(&call("CHECK", &bad).container_id("ctr")),
        103,
        "address 10.1.2.77 in prevResult is not reserved for container ctr",
    );
    let old = net.conf("0.3.1", dual_stack());
    assert_code(&run(&call("CHECK", &old).container_id("ctr")), 1, "");
    // a legacy ID-only reservation satisfies CHECK and is released by DEL
    fs::write(net.dir().join("10.1.4.9"), "legacy").expect("write");
    run(&call("CHECK", &stdin).container_id("legacy")).assert_success();
    del(&stdin, "legacy", "eth0").assert_success();
    assert!(!net.dir().join("10.1.4.9").exists());
}

#[test]
fn gc_releases_attachments_not_in_the_valid_list() {
    let net = Net::new();
    let stdin = net.conf("1.1.0", dual_stack());
    for (id, ifname) in [("keep", "eth0"), ("gone", "eth0"), ("keep", "eth1")] {
        add(&stdin, id, ifname).assert_success();
    }
    fs::write(net.dir().join("10.1.4.8"), "keep").expect("legacy");
    fs::write(net.dir().join("10.1.4.9"), "stale-legacy").expect("legacy");
    let gc = |valid: Value, key: &str| {
        let conf = net.conf_with("1.1.0", dual_stack(), json!({ key: valid }));
        run(&call("GC", &conf).container_id("").ifname("").no_netns())
    };
    gc(
        json!([{"containerID": "keep", "ifname": "eth0"}]),
        "cni.dev/valid-attachments",
    )
    .assert_success();
    let left: Vec<(String, String)> = net.reservations();
    assert_eq!(
        left,
        [
            ("10.1.2.2".to_string(), "keep\r\neth0".to_string()),
            ("10.1.4.8".to_string(), "keep".to_string()),
            ("2001:db8:1::2".to_string(), "keep\r\neth0".to_string()),
        ]
    );
    assert!(net.dir().join("lock").exists());
    assert_eq!(net.file("last_reserved_ip.0"), "10.1.2.4");
    // the legacy key of an older draft is honoured too; an empty list clears all
    gc(json!([]), "cni.dev/attachments").assert_success();
    assert!(net.reservations().is_empty());
    assert!(net.dir().join("last_reserved_ip.1").exists());
    // GC needs 1.1.0
    let old = net.conf_with(
        "1.0.0",
        dual_stack(),
        json!({"cni.dev/valid-attachments": []}),
    );
    assert_code(
        &run(&call("GC", &old).container_id("").ifname("").no_netns()),
        1,
        "",
    );
}

#[test]
fn concurrent_adds_in_64_processes_get_unique_addresses() {
    let net = Net::new();
    let stdin = net.conf(
        "1.0.0",
        json!({"ranges": [[{"subnet": "10.64.0.0/24"}], [{"subnet": "2001:db8:64::/64"}]]}),
    );
    let results: Vec<(String, Vec<String>)> = thread::scope(|s| {
        let handles: Vec<_> = (0..64)
            .map(|i| {
                let stdin = &stdin;
                s.spawn(move || {
                    let id = format!("par-{i}");
                    let out = add(stdin, &id, "eth0");
                    out.assert_success();
                    (id, addresses(&out.json()))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    let v4: BTreeSet<&String> = results.iter().map(|(_, a)| &a[0]).collect();
    let v6: BTreeSet<&String> = results.iter().map(|(_, a)| &a[1]).collect();
    assert_eq!((v4.len(), v6.len()), (64, 64), "{results:?}");
    let files = net.reservations();
    assert_eq!(files.len(), 128);
    for (id, addrs) in &results {
        for a in addrs {
            let ip = a.split('/').next().expect("ip");
            let content = &files
                .iter()
                .find(|(n, _)| n == ip)
                .expect("file for address")
                .1;
            assert_eq!(content, &format!("{id}\r\neth0"));
        }
    }
    let names = net.temp_files();
    assert!(names.is_empty(), "temporary files left: {names:?}");
}

#[test]
fn killed_adds_never_leave_a_partial_reservation() {
    let net = Net::new();
    let stdin = net.conf("1.0.0", json!({"ranges": [[{"subnet": "10.65.0.0/24"}]]}));
    let bin = plugin_bin("host-local");
    for i in 0..40u64 {
        let mut child = Command::new(&bin)
            .env_clear()
            .envs(
                call("ADD", &stdin)
                    .container_id(&format!("k-{i}"))
                    .environment(),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        {
            use std::io::Write;
            let mut input = child.stdin.take().expect("stdin");
            let _ = input.write_all(stdin.as_bytes());
        }
        thread::sleep(Duration::from_micros(200 * (i % 15)));
        let _ = child.kill();
        let _ = child.wait();
    }
    let survivors = net.reservations();
    eprintln!(
        "{} of 40 killed ADDs completed their reservation",
        survivors.len()
    );
    for (name, content) in survivors {
        let (id, ifname) = content
            .split_once("\r\n")
            .unwrap_or_else(|| panic!("{name}: partial content {content:?}"));
        assert!(
            id.starts_with("k-") && ifname == "eth0",
            "{name}: {content:?}"
        );
    }
    // the next ADD works and clears temporary files a kill may have left
    add(&stdin, "after", "eth0").assert_success();
    let temp = net.temp_files();
    assert!(temp.is_empty(), "{temp:?}");
}

#[test]
fn lock_held_elsewhere_ends_in_code_11() {
    let net = Net::new();
    fs::create_dir_all(net.dir()).expect("mkdir");
    let Some(holder) = LockHolder::hold(&net.dir().join("lock")) else {
        return;
    };
    let stdin = net.conf("1.0.0", json!({"ranges": [[{"subnet": "10.66.0.0/24"}]]}));
    let started = Instant::now();
    let out = run(&call("ADD", &stdin)
        .container_id("w")
        .env("CNI_IPAM_LOCK_TIMEOUT_MS", "300"));
    let took = started.elapsed();
    let del_out = run(&call("DEL", &stdin)
        .container_id("w")
        .no_netns()
        .env("CNI_IPAM_LOCK_TIMEOUT_MS", "300"));
    holder.release();
    assert_code(&out, 11, "lock");
    assert_code(&del_out, 11, "lock");
    assert!(took < Duration::from_secs(5), "bounded wait took {took:?}");
    add(&stdin, "w", "eth0").assert_success();
}

#[test]
fn store_written_by_the_reference_is_used_and_released_by_ours() {
    let Some(reference) = reference_bin("host-local") else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "reference host-local required when CI=true"
        );
        eprintln!("skipped: reference host-local not installed");
        return;
    };
    let net = Net::new();
    // the Debian build supports up to 1.0.0
    let stdin = net.conf("0.4.0", dual_stack());
    for id in ["ref-a", "ref-b"] {
        call("ADD", &stdin)
            .container_id(id)
            .run_here(&reference)
            .assert_success();
    }
    fs::write(net.dir().join("10.1.4.77"), "ref-legacy").expect("legacy file");
    // ours: CHECK finds the reference's reservation, ADD continues its round robin
    run(&call("CHECK", &stdin).container_id("ref-b")).assert_success();
    assert_eq!(
        addresses(&add(&stdin, "ours", "eth0").json()),
        ["10.1.2.4/24", "2001:db8:1::4/64"]
    );
    assert_code(
        &add(&stdin, "ref-a", "eth0"),
        102,
        "duplicate allocation is not allowed",
    );
    // ours releases the reference's files, legacy included
    del(&stdin, "ref-a", "eth0").assert_success();
    del(&stdin, "ref-legacy", "eth0").assert_success();
    let names: Vec<String> = net.reservations().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        ["10.1.2.3", "10.1.2.4", "2001:db8:1::3", "2001:db8:1::4"]
    );
    // the reference releases ours, and our GC collects the reference's
    call("DEL", &stdin)
        .container_id("ours")
        .no_netns()
        .run_here(&reference)
        .assert_success();
    let gc_conf = net.conf_with(
        "1.1.0",
        dual_stack(),
        json!({"cni.dev/valid-attachments": []}),
    );
    run(&call("GC", &gc_conf).container_id("").ifname("").no_netns()).assert_success();
    assert!(net.reservations().is_empty());
    // the reference still works on the directory afterwards
    call("ADD", &stdin)
        .container_id("ref-c")
        .run_here(&reference)
        .assert_success();
    assert_eq!(net.reservations()[0].1, "ref-c\r\neth0");
}
