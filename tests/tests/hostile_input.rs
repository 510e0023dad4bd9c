//! Hostile and malformed input: network names, container ids, interface names,
//! `dataDir`, `hostIP`, `protocol`, `conditionsV4/V6` that try to escape (path traversal,
//! newlines or quotes injected into `iptables-restore` / nft input, over-long values).
//! Each is rejected with a clear CNI error and nothing is written outside its place, or
//! (where the reference accepts the value) handled without any injection. State files
//! are private whatever the caller's umask.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers panic with the failing value"
)]

use std::path::Path;

use cni_testsupport::{PluginOutput, node};
use node::{Node, Side, links, mode};
use serde_json::{Value, json};

/// Everything under `dir`, recursively (relative paths).
fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd {
        let e = e.unwrap();
        let p = e.path();
        out.push(p.strip_prefix(dir).unwrap().display().to_string());
        if e.file_type().unwrap().is_dir() {
            out.extend(
                tree(&p)
                    .into_iter()
                    .map(|s| format!("{}/{s}", e.file_name().to_string_lossy())),
            );
        }
    }
    out.sort();
    out
}

#[track_caller]
fn assert_rejected(n: &Node, out: &PluginOutput, code: u64, what: &str) {
    assert_eq!(out.error_code(), Some(code), "{what}: {}", out.describe());
    assert!(!out.error_msg().unwrap().is_empty());
    assert!(
        links(&n.env.host)
            .iter()
            .all(|l| l["ifname"] != n.bridge.as_str()),
        "{what}: nothing created, not even the bridge"
    );
    assert_eq!(
        tree(n.env.data_path()),
        Vec::<String>::new(),
        "{what}: nothing written"
    );
}

#[test]
fn hostile_container_ids_ifnames_and_network_names_change_nothing() {
    let Some(n) = Node::root() else { return };
    let conf = n.bridge_conf(
        "1.0.0",
        &["10.130.0.0/24"],
        json!({"ipMasq": true, "macspoofchk": true}),
    );
    let ctr = n.env.add_container();
    let nat_before = n.nat();
    for id in [
        "../../etc/passwd",
        "a/b",
        "a\nb",
        "a\"b",
        "a b",
        "-rf",
        "a;b",
        "a'b",
        "$(reboot)",
        "",
    ] {
        let out = n.exec(Side::Ours, "bridge", "ADD", &conf, Some(&ctr), id);
        assert_rejected(&n, &out, 4, &format!("container id {id:?}"));
    }
    for ifname in [
        "../x",
        "eth0/x",
        "a b",
        "a\nb",
        "a\tb",
        "aaaaaaaaaaaaaaaa",
        ".",
        "..",
        "a:b",
        "",
    ] {
        let call = n
            .call(Side::Ours, "ADD", &conf, Some(&ctr), "ok")
            .ifname(ifname);
        assert_rejected(
            &n,
            &n.run(Side::Ours, "bridge", &call),
            4,
            &format!("ifname {ifname:?}"),
        );
    }
    for name in ["../x", "a/b", "a\"b", "a\nb", "..", "a b", "x;y"] {
        let mut c = conf.clone();
        c["name"] = json!(name);
        let out = n.exec(Side::Ours, "bridge", "ADD", &c, Some(&ctr), "ok");
        assert_rejected(&n, &out, 7, &format!("network name {name:?}"));
    }
    let mut c = conf.clone();
    c.as_object_mut().unwrap().remove("name");
    assert_rejected(
        &n,
        &n.exec(Side::Ours, "bridge", "ADD", &c, Some(&ctr), "ok"),
        7,
        "no name",
    );
    assert_eq!(n.nat(), nat_before);
    assert!(!n.nft().contains("cni-br-iface"));
}

#[test]
fn quotes_and_separators_in_interface_names_reach_netfilter_as_data() {
    let Some(n) = Node::root() else { return };
    // The spec allows any 1..15 byte name without '/', ':' and whitespace: quotes,
    // semicolons and braces must not break (or extend) the nft and iptables input.
    for backend in ["nftables", "iptables"] {
        let conf = n.bridge_conf(
            "1.0.0",
            &["10.131.0.0/24"],
            json!({"ipMasq": true, "ipMasqBackend": backend, "macspoofchk": true}),
        );
        for ifname in ["e\"t;h{", "x'}\\#", "i\";flush"] {
            let ctr = n.env.add_container();
            let tables_before = n.env.host.exec_ok("nft", &["list", "tables"]);
            let call = n
                .call(Side::Ours, "ADD", &conf, Some(&ctr), "q")
                .ifname(ifname);
            let out = n.run(Side::Ours, "bridge", &call);
            out.assert_success();
            assert!(links(&ctr).iter().any(|l| l["ifname"] == ifname));
            let nft = n.nft();
            assert!(nft.contains(&format!("cni-br-iface-q-{ifname}")), "{nft}");
            let tables = n.env.host.exec_ok("nft", &["list", "tables"]);
            for t in tables.lines() {
                assert!(
                    tables_before.contains(t)
                        || t.contains("cni_plugins_masquerade")
                        || t.contains("bridge nat")
                        || ["table ip nat", "table ip6 nat"].contains(&t), // iptables-nft
                    "unexpected table {t}"
                );
            }
            let del = n
                .call(Side::Ours, "DEL", &conf, Some(&ctr), "q")
                .ifname(ifname);
            n.run(Side::Ours, "bridge", &del).assert_success();
            n.assert_clean(Some(&ctr), "q");
            let nft = n.nft();
            assert!(
                !nft.contains("cni-br-iface") && !nft.contains("id: q"),
                "{nft}"
            );
        }
    }
}

#[test]
fn over_long_container_id_either_works_or_fails_without_trace() {
    let Some(n) = Node::root() else { return };
    let long = "x".repeat(1000);
    let cases = [
        json!({"ipMasq": true, "ipMasqBackend": "iptables"}),
        json!({"ipMasq": true, "ipMasqBackend": "nftables"}),
        json!({"macspoofchk": true}),
    ];
    for extra in cases {
        let conf = n.bridge_conf("1.0.0", &["10.132.0.0/24"], extra.clone());
        let ctr = n.env.add_container();
        let out = n.exec(Side::Ours, "bridge", "ADD", &conf, Some(&ctr), &long);
        if out.success() {
            let r = out.json();
            // portmap on top, with the reference's 255-byte comment limit.
            let pm = json!({"cniVersion": "1.0.0", "name": n.name, "type": "portmap",
                "runtimeConfig": {"portMappings": [{"hostPort": 8132, "containerPort": 80, "protocol": "tcp"}]},
                "prevResult": r});
            let pout = n.exec(Side::Ours, "portmap", "ADD", &pm, Some(&ctr), &long);
            pout.assert_success();
            let nat = n.nat();
            // Cut like the reference (253 bytes + "...", then xt_comment's 255-byte limit).
            assert!(nat.contains("xx..\" -m multiport"), "comment cut: {nat}");
            n.del(Side::Ours, "portmap", &pm, Some(&ctr), &long);
        } else {
            assert!(out.error_code().is_some(), "{extra}: {}", out.describe());
        }
        n.del_clean(&conf, Some(&ctr), &long);
    }
}

fn portmap_conf(n: &Node, extra: Value, mapping: Value) -> Value {
    let mut c = json!({
        "cniVersion": "1.0.0", "name": n.name, "type": "portmap",
        "runtimeConfig": {"portMappings": [mapping]},
        "prevResult": {"cniVersion": "1.0.0",
            "interfaces": [{"name": "eth0", "sandbox": "/run/netns/x"}],
            "ips": [{"address": "10.133.0.2/24", "interface": 0}]},
    });
    node::merge(&mut c, extra);
    c
}

/// The netfilter state of a node: nat and filter tables of both families and nft.
fn netfilter(n: &Node) -> String {
    let mut s = n.nat();
    for t in ["iptables-save", "ip6tables-save"] {
        s += &node::save_table(&n.env.host, t, "filter");
    }
    s + &n.nft()
}

#[test]
fn portmap_rejects_injection_in_host_ip_protocol_and_conditions() {
    let Some(n) = Node::root() else { return };
    let ctr = n.env.add_container();
    let before = netfilter(&n);
    let ok = json!({"hostPort": 8133, "containerPort": 80, "protocol": "tcp"});
    let cases: Vec<(Value, Value, Option<u64>)> = vec![
        (
            json!({}),
            json!({"hostPort": 8133, "containerPort": 80, "protocol": "tcp", "hostIP": "1.2.3.4\n-A INPUT -j DROP"}),
            Some(7),
        ),
        (
            json!({}),
            json!({"hostPort": 8133, "containerPort": 80, "protocol": "tcp", "hostIP": "1.2.3.4\" -j ACCEPT #"}),
            Some(7),
        ),
        (
            json!({}),
            json!({"hostPort": 8133, "containerPort": 80, "protocol": "tcp", "hostIP": "x".repeat(5000)}),
            Some(7),
        ),
        (
            json!({}),
            json!({"hostPort": 8133, "containerPort": 80, "protocol": "tcp\n-A INPUT -j DROP"}),
            Some(7),
        ),
        (
            json!({}),
            json!({"hostPort": 8133, "containerPort": 80, "protocol": "tcp; flush ruleset"}),
            Some(7),
        ),
        (
            json!({}),
            json!({"hostPort": 70000, "containerPort": 80, "protocol": "tcp"}),
            Some(7),
        ),
        (
            json!({}),
            json!({"hostPort": 8133, "containerPort": -1, "protocol": "tcp"}),
            Some(7),
        ),
        // iptables conditions are single argv tokens: a newline or quote inside one is
        // refused by iptables-restore, nothing is applied (the table is atomic).
        (
            json!({"backend": "iptables", "conditionsV4": ["-s", "1.2.3.4\n-A INPUT -j DROP"]}),
            ok.clone(),
            None,
        ),
        (
            json!({"backend": "iptables", "conditionsV4": ["-s", "1.2.3.4\" -j ACCEPT\nCOMMIT\n*filter\n-A INPUT -j DROP\nCOMMIT\n#"]}),
            ok.clone(),
            None,
        ),
    ];
    for (extra, mapping, code) in cases {
        let conf = portmap_conf(&n, extra.clone(), mapping.clone());
        let out = n.exec(Side::Ours, "portmap", "ADD", &conf, Some(&ctr), "pmx");
        assert!(!out.success(), "{extra} {mapping}: accepted");
        if let Some(c) = code {
            assert_eq!(
                out.error_code(),
                Some(c),
                "{extra} {mapping}: {}",
                out.describe()
            );
        } else {
            assert!(out.error_code().is_some(), "{}", out.describe());
        }
        let after = netfilter(&n);
        assert!(
            !after.contains("DROP") && !after.contains("CNI-DN-"),
            "{extra} {mapping}: written:\n{after}"
        );
        assert!(!after.contains("flush"), "{after}");
        n.exec(Side::Ours, "portmap", "DEL", &conf, Some(&ctr), "pmx");
    }
    let after = netfilter(&n);
    assert!(
        !after.contains("CNI-DN-") && !after.contains("DROP"),
        "{before}\n---\n{after}"
    );
}

#[test]
fn portmap_nft_conditions_cannot_inject_commands() {
    let Some(n) = Node::root() else { return };
    let ctr = n.env.add_container();
    let ok = json!({"hostPort": 8134, "containerPort": 80, "protocol": "tcp"});
    for cond in [
        "ip saddr 1.2.3.4 counter ; add table ip evil ; add rule ip cni_hostport prerouting",
        "ip saddr 1.2.3.4 counter\nadd table ip evil\nadd rule ip cni_hostport prerouting",
    ] {
        let conf = portmap_conf(
            &n,
            json!({"backend": "nftables", "conditionsV4": [cond]}),
            ok.clone(),
        );
        let out = n.exec(Side::Ours, "portmap", "ADD", &conf, Some(&ctr), "inj");
        let tables = n.env.host.exec_ok("nft", &["list", "tables"]);
        assert!(!tables.contains("evil"), "injected: {tables}");
        assert_eq!(out.error_code(), Some(7), "{}", out.describe());
        n.exec(Side::Ours, "portmap", "DEL", &conf, Some(&ctr), "inj");
    }
}

/// Runs host-local ADD with `data_dir` from the working directory `cwd`.
fn host_local_in(cwd: &Path, data_dir: &str) -> PluginOutput {
    let conf = json!({"cniVersion": "1.0.0", "name": "hostile", "type": "bridge",
        "ipam": {"type": "host-local", "subnet": "10.134.0.0/24", "dataDir": data_dir}});
    let call = cni_testsupport::PluginCall::new("ADD", conf.to_string())
        .netns("/run/netns/none")
        .cni_path(vec![cni_testsupport::bin_dir()]);
    let mut plugin = call.process(cni_testsupport::plugin_bin("host-local"));
    plugin.current_dir(cwd);
    call.output_of(plugin)
}

#[test]
fn data_dir_too_long_or_a_file_path_is_a_clear_error() {
    let root = tempfile::tempdir().unwrap();
    let cwd = root.path().join("cwd");
    std::fs::create_dir(&cwd).unwrap();
    let long = format!("{}/{}", root.path().display(), "d/".repeat(3000));
    let out = host_local_in(&cwd, &long);
    assert!(!out.success());
    assert!(out.error_code().is_some(), "{}", out.describe());
    assert_eq!(tree(&cwd), Vec::<String>::new());
    let file = root.path().join("f");
    std::fs::write(&file, "").unwrap();
    let out = host_local_in(&cwd, &file.join("sub").display().to_string());
    assert_eq!(out.error_code(), Some(5), "{}", out.describe());
}

#[test]
fn data_dir_must_be_a_clean_absolute_path() {
    let root = tempfile::tempdir().unwrap();
    let cwd = root.path().join("cwd");
    std::fs::create_dir(&cwd).unwrap();
    let escapes = [
        "relative/dir".to_string(),
        format!("{}/a/../../escaped", cwd.display()),
        format!("{}/new\nline", root.path().display()),
    ];
    for d in &escapes {
        let out = host_local_in(&cwd, d);
        assert_eq!(out.error_code(), Some(7), "{d:?}: {}", out.describe());
    }
    assert_eq!(
        tree(&cwd),
        Vec::<String>::new(),
        "nothing written relative to the cwd"
    );
    assert_eq!(
        tree(root.path()),
        vec!["cwd".to_string()],
        "nothing written anywhere"
    );
}

#[test]
fn state_files_are_private_whatever_the_umask() {
    let Some(n) = Node::root() else { return };
    let conf = n.bridge_conf("1.0.0", &["10.135.0.0/24", "fd00:135::/64"], json!({}));
    let ctr = n.env.add_container();
    // A caller with umask 000 (a careless runtime) must not produce world-writable state.
    let out = n.add_ours_wrapped("umask 000\nexec ", &conf, &ctr, "perm");
    out.assert_success();
    let store = n.store();
    assert_eq!(
        mode(&store) & 0o022,
        0,
        "network directory not group/world-writable: {:o}",
        mode(&store)
    );
    for f in tree(&store) {
        let m = mode(&store.join(&f));
        if f == "lock" {
            assert_eq!(m & 0o022, 0, "lock {m:o}");
        } else {
            assert_eq!(m, 0o600, "{f}: {m:o}");
        }
    }
    n.del(Side::Ours, "bridge", &conf, Some(&ctr), "perm");
}

/// With nftables conditions the whole ADD is one nft text transaction: a condition nft
/// rejects (in its parser, against its cache, or in the kernel) is a configuration error
/// (code 7) and, the transaction being atomic, changes nothing, not even the rules a
/// re-ADD would have replaced. A failure the conditions did not cause is not code 7.
#[test]
fn portmap_nft_conditions_nft_rejects_are_code_7_and_change_nothing() {
    let Some(n) = Node::root() else { return };
    let ctr = n.env.add_container();
    let mapping = json!({"hostPort": 8135, "containerPort": 80, "protocol": "tcp"});
    let ruleset = || n.env.host.exec_ok("nft", &["list", "ruleset"]);
    let rejected: [&[&str]; 3] = [
        // nft's parser
        &["ip", "saddrr", "192.0.2.99"],
        // nft's evaluation against the ruleset (no such set)
        &["ip", "saddr", "@nosuch"],
        // the kernel (no TCP MSS route lookup in the prerouting hook)
        &["rt", "mtu", "1500"],
    ];
    let with = |cond: &[&str], mapping: &Value| {
        portmap_conf(
            &n,
            json!({"backend": "nftables", "conditionsV4": cond}),
            mapping.clone(),
        )
    };
    let add_with = |cond: &[&str], mapping: &Value, id: &str| {
        n.exec(
            Side::Ours,
            "portmap",
            "ADD",
            &with(cond, mapping),
            Some(&ctr),
            id,
        )
    };
    let before = ruleset();
    for cond in rejected {
        let out = add_with(cond, &mapping, "badcond");
        assert_eq!(out.error_code(), Some(7), "{cond:?}: {}", out.describe());
        out.assert_failure("nftables conditions rejected by nft");
        assert_eq!(
            ruleset(),
            before,
            "{cond:?}: a rejected condition changed the ruleset"
        );
    }
    let good = with(&["ip", "saddr", "!=", "192.0.2.99"], &mapping);
    n.exec(Side::Ours, "portmap", "ADD", &good, Some(&ctr), "goodcond")
        .assert_success();
    let hook = n.env.host.exec_ok(
        "nft",
        &["list", "chain", "ip", "cni_hostport", "prerouting"],
    );
    assert!(
        hook.contains("ip saddr != 192.0.2.99 fib daddr type local jump hostports_all"),
        "{hook}"
    );
    // A re-ADD with other mappings and a rejected condition keeps the container's rules.
    let installed = ruleset();
    assert!(
        installed.contains("tcp dport 8135 dnat to 10.133.0.2:80"),
        "{installed}"
    );
    let other = json!({"hostPort": 8136, "containerPort": 80, "protocol": "tcp"});
    for cond in rejected {
        let out = add_with(cond, &other, "goodcond");
        assert_eq!(out.error_code(), Some(7), "{cond:?}: {}", out.describe());
        assert_eq!(
            ruleset(),
            installed,
            "{cond:?}: a failed re-ADD changed the ruleset"
        );
    }
    n.exec(Side::Ours, "portmap", "DEL", &good, Some(&ctr), "goodcond")
        .assert_success();
    // Not the conditions' fault: a foreign `prerouting` filter chain in the table makes
    // the ADD fail whatever the conditions; that is reported as it is, not as code 7.
    n.env
        .host
        .exec_ok("nft", &["delete", "table", "ip", "cni_hostport"]);
    n.env.host.exec_ok(
        "nft",
        &["add table ip cni_hostport; add chain ip cni_hostport prerouting { type filter hook prerouting priority 0; }"],
    );
    let foreign = ruleset();
    let out = n.exec(Side::Ours, "portmap", "ADD", &good, Some(&ctr), "foreign");
    assert!(!out.success(), "{}", out.describe());
    assert_ne!(out.error_code(), Some(7), "{}", out.describe());
    assert!(
        !out.error_msg().unwrap().contains("conditions"),
        "{}",
        out.describe()
    );
    assert_eq!(ruleset(), foreign, "a failed ADD changed the ruleset");
}
