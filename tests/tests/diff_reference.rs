//! Differential tests against the Debian reference plugins (v1.1.1, `/usr/lib/cni`):
//! the same scenario runs on two private nodes, once through the reference and once
//! through ours, and the results (after replacing random veth names, MACs and the netns
//! path), the files under `dataDir` and the `iptables-save -t nat` output must be equal.
//! Every intended difference has its own `difference_*` test showing both behaviours.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers panic with the failing value"
)]

use cni_testsupport::{PluginCall, node, require_root};
use node::{Node, Pair, Side, links, mode, normalise, require_reference};
use serde_json::{Value, json};

#[test]
fn bridge_results_store_and_nat_equal_the_reference() {
    if !require_root() || !require_reference() {
        return;
    }
    for version in ["0.2.0", "0.3.1", "0.4.0", "1.0.0"] {
        let p = Pair::new("df");
        let subnets: &[&str] = if version == "0.2.0" {
            &["10.61.0.0/24"]
        } else {
            &["10.61.0.0/24", "fd00:61::/64"]
        };
        let mut results = Vec::new();
        for (side, n) in p.sides() {
            let conf = n.bridge_conf(
                version,
                subnets,
                json!({"isDefaultGateway": true, "ipMasq": true, "hairpinMode": true, "mtu": 1400}),
            );
            let (a, b) = (n.env.add_container(), n.env.add_container());
            let ra = n.add(side, "bridge", &conf, &a, "ctr-a");
            let rb = n.add(side, "bridge", &conf, &b, "ctr-b");
            let nat = n.nat();
            assert!(
                nat.contains("-A POSTROUTING -s 10.61.0.2/32"),
                "{side:?}: {nat}"
            );
            assert!(
                !n.store_without_lock().is_empty()
                    && normalise(&ra).to_string().contains("10.61.0.2")
            );
            results.push((normalise(&ra), normalise(&rb), n.store_without_lock(), nat));
            assert_eq!(n.store_files().get("lock").map(String::as_str), Some(""));
            n.del(side, "bridge", &conf, Some(&a), "ctr-a");
            results.push((json!(null), json!(null), n.store_without_lock(), n.nat()));
            n.del(side, "bridge", &conf, Some(&b), "ctr-b");
            results.push((json!(null), json!(null), n.store_without_lock(), n.nat()));
            n.assert_clean(Some(&b), "ctr-b");
        }
        let (theirs, ours) = results.split_at(3);
        for (i, (t, o)) in theirs.iter().zip(ours).enumerate() {
            assert_eq!(t.0, o.0, "{version} stage {i}: result of ctr-a");
            assert_eq!(t.1, o.1, "{version} stage {i}: result of ctr-b");
            assert_eq!(t.2, o.2, "{version} stage {i}: dataDir files");
            assert_eq!(t.3, o.3, "{version} stage {i}: iptables-save -t nat");
        }
    }
}

/// With the reference installed: `f` for the reference then ours, each with a fresh
/// temporary data directory.
fn each_side_with_a_data_dir(mut f: impl FnMut(Side, &tempfile::TempDir)) {
    if !require_reference() {
        return;
    }
    for side in [Side::Ref, Side::Ours] {
        f(side, &tempfile::tempdir().unwrap());
    }
}

/// A temporary resolv.conf holding `content`.
fn resolv_conf(content: &str) -> tempfile::NamedTempFile {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), content).unwrap();
    f
}

#[test]
fn host_local_results_and_store_equal_the_reference_in_every_version() {
    if !require_reference() {
        return;
    }
    let resolv = resolv_conf(
        "# comment\nnameserver 192.0.2.53\nnameserver 2001:db8::53\ndomain example.test\nsearch a.test b.test\noptions ndots:2 edns0\n",
    );
    let ipams = [
        json!({"subnet": "10.62.0.0/24", "routes": [{"dst": "0.0.0.0/0"}, {"dst": "192.0.2.0/24", "gw": "10.62.0.254"}]}),
        json!({"ranges": [[{"subnet": "10.62.1.0/24", "rangeStart": "10.62.1.10", "rangeEnd": "10.62.1.12", "gateway": "10.62.1.254"}]], "resolvConf": resolv.path()}),
        json!({"ranges": [[{"subnet": "10.62.2.0/29"}, {"subnet": "10.62.3.0/29"}], [{"subnet": "fd00:62::/120"}]]}),
    ];
    for version in ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0"] {
        for ipam in &ipams {
            let name = cni_testsupport::unique_name("hl");
            let mut outs = Vec::new();
            for side in [Side::Ref, Side::Ours] {
                let data = tempfile::tempdir().unwrap();
                let mut i = ipam.clone();
                i["type"] = json!("host-local");
                i["dataDir"] = json!(data.path());
                let conf =
                    json!({"cniVersion": version, "name": name, "type": "bridge", "ipam": i});
                let mut seen = Vec::new();
                // Fill the small ranges past their end: exhaustion and wrap-around too.
                for k in 0..5 {
                    let call = PluginCall::new("ADD", conf.to_string())
                        .container_id(&format!("c{k}"))
                        .netns("/run/netns/does-not-exist")
                        .cni_path(vec![side.cni_path()]);
                    let out = call.run_here(&side.bin("host-local"));
                    seen.push(if out.success() {
                        normalise(&out.json())
                    } else {
                        json!({"error": out.error_msg()})
                    });
                    if k == 1 {
                        let del = PluginCall::new("DEL", conf.to_string())
                            .container_id("c0")
                            .cni_path(vec![side.cni_path()]);
                        del.run_here(&side.bin("host-local")).assert_success();
                    }
                }
                let files: Vec<(String, String)> = std::fs::read_dir(data.path().join(&name))
                    .unwrap()
                    .map(|e| e.unwrap())
                    .map(|e| {
                        (
                            e.file_name().to_string_lossy().into_owned(),
                            std::fs::read_to_string(e.path()).unwrap(),
                        )
                    })
                    .collect::<std::collections::BTreeMap<_, _>>()
                    .into_iter()
                    .collect();
                outs.push((seen, files));
            }
            assert_eq!(outs[0].0, outs[1].0, "{version} {ipam}: results");
            assert_eq!(outs[0].1, outs[1].1, "{version} {ipam}: dataDir files");
        }
    }
}

fn pm_conf(n: &Node, version: &str, bridge_result: &Value) -> Value {
    json!({
        "cniVersion": version,
        "name": n.name,
        "type": "portmap",
        "snat": true,
        "runtimeConfig": {"portMappings": [
            {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
            {"hostPort": 8053, "containerPort": 53, "protocol": "udp"},
            {"hostPort": 9090, "containerPort": 90, "protocol": "tcp", "hostIP": "10.63.0.1"}
        ]},
        "prevResult": bridge_result,
    })
}

#[test]
fn bridge_portmap_chain_results_and_nat_equal_the_reference() {
    if !require_root() || !require_reference() {
        return;
    }
    for version in ["0.4.0", "1.0.0"] {
        let p = Pair::new("df");
        let mut seen = Vec::new();
        for (side, n) in p.sides() {
            let conf = n.bridge_conf(
                version,
                &["10.63.0.0/24"],
                json!({"isGateway": true, "ipMasq": true}),
            );
            let ctr = n.env.add_container();
            let br = n.add(side, "bridge", &conf, &ctr, "ctr-pm");
            let pm = pm_conf(n, version, &br);
            let out = n.add(side, "portmap", &pm, &ctr, "ctr-pm");
            assert_eq!(
                normalise(&out),
                normalise(&br),
                "{side:?}: portmap passes prevResult through"
            );
            seen.push((normalise(&out), n.nat()));
            n.del(side, "portmap", &pm, Some(&ctr), "ctr-pm");
            n.del(side, "bridge", &conf, Some(&ctr), "ctr-pm");
            seen.push((json!(null), n.nat()));
            n.assert_clean(Some(&ctr), "ctr-pm");
        }
        assert_eq!(seen[0], seen[2], "{version}: after ADD");
        assert_eq!(seen[1], seen[3], "{version}: after DEL");
    }
}

// ---------------------------------------------------------------------------------------
// Intended differences: each test shows the reference's and our behaviour.

#[test]
fn difference_error_codes_and_cni_version_in_errors() {
    Pair::each_side("df", |side, n| {
        let ctr = n.env.add_container();
        // Invalid configuration: reference 999, ours 7 (spec: invalid network config).
        let bad = n.bridge_conf("1.0.0", &["10.64.0.0/24"], json!({"vlan": 5000}));
        let out = n.exec(side, "bridge", "ADD", &bad, Some(&ctr), "e");
        let v = out.json();
        out.assert_failure("invalid VLAN ID 5000");
        // Exhausted range: reference 999, ours 100 (host-local's own code).
        let tiny = n.bridge_conf("1.0.0", &["10.64.1.0/30"], json!({}));
        let c2 = n.env.add_container();
        n.add(side, "bridge", &tiny, &c2, "e1");
        let c3 = n.env.add_container();
        let ex = n.exec(side, "bridge", "ADD", &tiny, Some(&c3), "e2");
        ex.assert_failure("no IP addresses available");
        match side {
            Side::Ref => {
                assert_eq!(out.error_code(), Some(999));
                assert!(
                    v.get("cniVersion").is_none(),
                    "reference errors carry no cniVersion"
                );
                assert_eq!(ex.error_code(), Some(999));
            }
            Side::Ours => {
                assert_eq!(out.error_code(), Some(7));
                assert_eq!(
                    v["cniVersion"], "1.0.0",
                    "our errors carry the config version"
                );
                assert_eq!(ex.error_code(), Some(100));
            }
        }
        n.del(side, "bridge", &tiny, Some(&c2), "e1");
    });
}

#[test]
fn difference_version_command_lists_1_1_0_and_status_gc_work() {
    Pair::each_side("df", |side, n| {
        for plugin in ["bridge", "host-local", "portmap"] {
            let out = n.run(
                side,
                plugin,
                &PluginCall::new("VERSION", "{}").cni_path(vec![side.cni_path()]),
            );
            let v = out.json();
            let list = v["supportedVersions"].as_array().unwrap();
            assert_eq!(
                list.contains(&json!("1.1.0")),
                side == Side::Ours,
                "{plugin}: {v}"
            );
            assert!(list.contains(&json!("1.0.0")) && list.contains(&json!("0.1.0")));
        }
        let conf = n.bridge_conf("1.1.0", &["10.65.0.0/24"], json!({}));
        for cmd in ["STATUS", "GC"] {
            let out = n.run(
                side,
                "bridge",
                &n.call(side, cmd, &conf, None, "").ifname(""),
            );
            match side {
                Side::Ref => assert!(!out.success(), "reference has no {cmd}: {}", out.describe()),
                Side::Ours => {
                    out.assert_success();
                }
            }
        }
    });
}

#[test]
fn difference_empty_dns_is_omitted_in_1_x_results() {
    Pair::each_side("df", |side, n| {
        let conf = n.bridge_conf("1.0.0", &["10.66.0.0/24"], json!({}));
        let ctr = n.env.add_container();
        let r = n.add(side, "bridge", &conf, &ctr, "dns");
        match side {
            Side::Ref => assert_eq!(r["dns"], json!({}), "{r}"),
            Side::Ours => assert!(r.get("dns").is_none(), "{r}"),
        }
        n.del(side, "bridge", &conf, Some(&ctr), "dns");
    });
}

#[test]
fn difference_state_files_are_0600() {
    each_side_with_a_data_dir(|side, data| {
        let conf = json!({"cniVersion": "1.0.0", "name": "modes", "type": "bridge",
            "ipam": {"type": "host-local", "subnet": "10.67.0.0/24", "dataDir": data.path()}});
        PluginCall::new("ADD", conf.to_string())
            .container_id("m")
            .netns("/run/netns/none")
            .cni_path(vec![side.cni_path()])
            .run_here(&side.bin("host-local"))
            .assert_success();
        let dir = data.path().join("modes");
        let want = if side == Side::Ref { 0o644 } else { 0o600 };
        assert_eq!(mode(&dir.join("10.67.0.2")), want, "{side:?} reservation");
        assert_eq!(
            mode(&dir.join("last_reserved_ip.0")),
            want,
            "{side:?} cursor"
        );
        assert_eq!(mode(&dir), 0o755, "{side:?} network directory");
        assert_eq!(
            mode(&dir.join("lock")) & 0o022,
            0,
            "{side:?} lock not group/world-writable"
        );
    });
}

#[test]
fn difference_failed_add_rolls_back_the_veth() {
    Pair::each_side("df", |side, n| {
        // The bridge already has another address and forceAddress is off: fails after
        // the container interface was configured.
        n.env
            .host
            .exec_ok("ip", &["link", "add", &n.bridge, "type", "bridge"]);
        n.env
            .host
            .exec_ok("ip", &["addr", "add", "10.68.9.1/16", "dev", &n.bridge]);
        let conf = n.bridge_conf("1.0.0", &["10.68.0.0/24"], json!({"isGateway": true}));
        let ctr = n.env.add_container();
        let out = n.exec(side, "bridge", "ADD", &conf, Some(&ctr), "rb");
        out.assert_failure("already has an IP address different from");
        assert_eq!(
            n.reservations(),
            Vec::<String>::new(),
            "{side:?}: IPAM released"
        );
        let leaked = links(&ctr).iter().any(|l| l["ifname"] == "eth0");
        match side {
            Side::Ref => {
                assert!(
                    leaked,
                    "the reference leaves the container interface (plugins #29)"
                );
                assert_eq!(n.host_veths().len(), 1);
            }
            Side::Ours => {
                assert!(!leaked, "ours rolls back");
                assert_eq!(n.host_veths(), Vec::<String>::new());
            }
        }
    });
}

#[test]
fn difference_del_without_netns_removes_masquerade() {
    Pair::each_side("df", |side, n| {
        let conf = n.bridge_conf("1.0.0", &["10.69.0.0/24"], json!({"ipMasq": true}));
        let ctr = n.env.add_container();
        n.add(side, "bridge", &conf, &ctr, "nons");
        drop(ctr);
        n.del(side, "bridge", &conf, None, "nons");
        assert_eq!(n.reservations(), Vec::<String>::new());
        let nat = n.nat();
        let leaked = nat.contains("id: \\\"nons\\\"");
        assert_eq!(leaked, side == Side::Ref, "{side:?} (plugins #810): {nat}");
    });
}

#[test]
fn difference_check_of_a_layer2_attachment_passes() {
    Pair::each_side("df", |side, n| {
        let conf = n.bridge_conf("1.0.0", &[], json!({}));
        let ctr = n.env.add_container();
        let r = n.add(side, "bridge", &conf, &ctr, "l2");
        let out = n.check(side, "bridge", &conf, &r, &ctr, "l2");
        match side {
            Side::Ref => {
                out.assert_failure("no plugin name provided");
            }
            Side::Ours => {
                out.assert_success();
            }
        }
        n.del(side, "bridge", &conf, Some(&ctr), "l2");
    });
}

#[test]
fn difference_ipam_default_route_without_gw_and_is_default_gateway() {
    Pair::each_side("df", |side, n| {
        let mut conf = n.bridge_conf(
            "1.0.0",
            &["10.70.0.0/24"],
            json!({"isDefaultGateway": true}),
        );
        conf["ipam"]["routes"] = json!([{"dst": "0.0.0.0/0"}]);
        let ctr = n.env.add_container();
        let out = n.exec(side, "bridge", "ADD", &conf, Some(&ctr), "dr");
        match side {
            Side::Ref => {
                out.assert_failure("file exists");
            }
            Side::Ours => {
                out.assert_success();
                assert_eq!(out.json()["routes"].as_array().unwrap().len(), 1);
            }
        }
        n.del(side, "bridge", &conf, Some(&ctr), "dr");
    });
}

#[test]
fn difference_bridge_passes_ipam_dns_through() {
    let resolv = resolv_conf("nameserver 192.0.2.53\nsearch example.test\n");
    Pair::each_side("df", |side, n| {
        let mut conf = n.bridge_conf("0.4.0", &["10.71.0.0/24"], json!({}));
        conf["ipam"]["resolvConf"] = json!(resolv.path());
        let ctr = n.env.add_container();
        let r = n.add(side, "bridge", &conf, &ctr, "dns");
        match side {
            Side::Ref => assert_eq!(r["dns"], json!({}), "v1.1.1 drops IPAM DNS: {r}"),
            Side::Ours => assert_eq!(
                r["dns"],
                json!({"nameservers": ["192.0.2.53"], "search": ["example.test"]})
            ),
        }
        n.del(side, "bridge", &conf, Some(&ctr), "dns");
    });
}

#[test]
fn difference_ipv6_keeps_addresses_on_link_down() {
    Pair::each_side("df", |side, n| {
        let conf = n.bridge_conf("1.0.0", &["fd00:72::/64"], json!({}));
        let ctr = n.env.add_container();
        n.add(side, "bridge", &conf, &ctr, "v6");
        let v = ctr.exec_ok("cat", &["/proc/sys/net/ipv6/conf/eth0/keep_addr_on_down"]);
        assert_eq!(
            v.trim(),
            if side == Side::Ref { "0" } else { "1" },
            "{side:?}"
        );
        n.del(side, "bridge", &conf, Some(&ctr), "v6");
    });
}

#[test]
fn difference_portmap_check_and_del_without_mappings() {
    Pair::each_side("df", |side, n| {
        let conf = n.bridge_conf("0.4.0", &["10.73.0.0/24"], json!({}));
        let ctr = n.env.add_container();
        let br = n.add(side, "bridge", &conf, &ctr, "pmd");
        let pm = pm_conf(n, "0.4.0", &br);
        let r = n.add(side, "portmap", &pm, &ctr, "pmd");
        // CHECK of an IPv4 container with working ip6tables: the reference also looks
        // for the IPv4 rules in ip6tables and fails (fixed upstream in v1.3.0).
        let chk = n.check(side, "portmap", &pm, &r, &ctr, "pmd");
        assert_eq!(
            chk.success(),
            side == Side::Ours,
            "{side:?}: {}",
            chk.describe()
        );
        // DEL without runtimeConfig.portMappings: the reference leaves the rules.
        let mut bare = pm.clone();
        bare.as_object_mut().unwrap().remove("runtimeConfig");
        bare.as_object_mut().unwrap().remove("prevResult");
        n.del(side, "portmap", &bare, Some(&ctr), "pmd");
        let left = n.nat().contains(":CNI-DN-");
        assert_eq!(left, side == Side::Ref, "{side:?}: {}", n.nat());
        n.del(side, "portmap", &pm, Some(&ctr), "pmd");
        n.del(side, "bridge", &conf, Some(&ctr), "pmd");
        n.assert_clean(Some(&ctr), "pmd");
    });
}

#[test]
fn difference_symlinks_planted_in_the_store_are_not_followed() {
    each_side_with_a_data_dir(|side, data| {
        let outside = tempfile::tempdir().unwrap();
        let name = cni_testsupport::unique_name("sl");
        let conf = json!({"cniVersion": "1.0.0", "name": name, "type": "bridge",
            "ipam": {"type": "host-local", "dataDir": data.path(),
                     "ranges": [[{"subnet": "10.114.0.0/24"}]]}});
        let add = |id: &str| {
            PluginCall::new("ADD", conf.to_string())
                .container_id(id)
                .netns("/run/netns/does-not-exist")
                .cni_path(vec![side.cni_path()])
                .run_here(&side.bin("host-local"))
        };
        add("c1").assert_success();
        let store = data.path().join(&name);
        // A lock link to a missing path, and a cursor link to an outside file.
        let (missing, cursor) = (outside.path().join("missing"), outside.path().join("cur"));
        std::fs::remove_file(store.join("lock")).unwrap();
        std::os::unix::fs::symlink(&missing, store.join("lock")).unwrap();
        std::fs::write(&cursor, "10.114.0.9").unwrap();
        std::fs::remove_file(store.join("last_reserved_ip.0")).unwrap();
        std::os::unix::fs::symlink(&cursor, store.join("last_reserved_ip.0")).unwrap();
        let out = add("c2");
        match side {
            Side::Ref => {
                out.assert_success();
                assert!(missing.exists(), "the reference creates the lock's target");
                assert_ne!(
                    std::fs::read_to_string(&cursor).unwrap(),
                    "10.114.0.9",
                    "the reference writes through the cursor link"
                );
            }
            Side::Ours => {
                assert_eq!(out.error_code(), Some(5), "{}", out.describe());
                assert!(out.error_msg().unwrap().contains("is a symbolic link"));
                assert!(!missing.exists());
                assert_eq!(std::fs::read_to_string(&cursor).unwrap(), "10.114.0.9");
            }
        }
    });
}
