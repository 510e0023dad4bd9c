//! Every file of `conf-examples/` works as shipped: run through `cnitool`
//! (our libcni runner) in a private host namespace with two container
//! namespaces: STATUS, ADD (addresses from the configured ranges, the
//! container interface in its sandbox), CHECK, traffic between the
//! containers and to the gateway, host-port and masquerade rules present,
//! DEL (twice), GC, and nothing left afterwards.
//!
//! Only `ipam.dataDir` is changed (to a temporary directory), so nothing is
//! written outside the test's own directories and namespaces.

use std::net::IpAddr;

use cni_testsupport::{Netns, bin_dir, e2e, require_root, unique_name};
use e2e::{Cnitool, assert_nothing_left, ping, repo_root, result_ips};
use serde_json::Value;

/// Whether `ip` lies in `subnet` (`addr/len`).
fn in_subnet(ip: &str, subnet: &str) -> bool {
    let (net, len) = subnet.split_once('/').expect("subnet has a prefix length");
    let len: u32 = len.parse().expect("prefix length");
    match (ip.parse::<IpAddr>(), net.parse::<IpAddr>()) {
        (Ok(IpAddr::V4(a)), Ok(IpAddr::V4(n))) => {
            let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (Ok(IpAddr::V6(a)), Ok(IpAddr::V6(n))) => {
            let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

fn subnets(conf: &Value) -> Vec<String> {
    conf["plugins"][0]["ipam"]["ranges"]
        .as_array()
        .expect("ranges")
        .iter()
        .flat_map(|set| set.as_array().expect("range set").iter())
        .map(|r| r["subnet"].as_str().expect("subnet").to_owned())
        .collect()
}

fn run_example(file: &str) {
    if !require_root() || !e2e::require_program("ping", "iputils-ping") {
        return;
    }
    let src = repo_root().join("conf-examples").join(file);
    let mut conf: Value = serde_json::from_slice(&std::fs::read(&src).expect("read example"))
        .expect("example is JSON");
    let name = conf["name"].as_str().expect("name").to_owned();
    let nets = subnets(&conf);

    let tmp = tempfile::tempdir().expect("tempdir");
    let data_dir = tmp.path().join("ipam");
    let netconf_dir = tmp.path().join("net.d");
    let cache_dir = tmp.path().join("cache");
    std::fs::create_dir(&netconf_dir).expect("mkdir net.d");
    conf["plugins"][0]["ipam"]["dataDir"] = Value::String(data_dir.to_string_lossy().into_owned());
    std::fs::write(netconf_dir.join(file), conf.to_string()).expect("write conflist");

    let host = Netns::new();
    let (c1, c2) = (Netns::new(), Netns::new());
    let tool = Cnitool {
        host: &host,
        netconf_dir,
        cache_dir: cache_dir.clone(),
        cni_path: bin_dir(),
    };
    let (id1, id2) = (unique_name("ex1-"), unique_name("ex2-"));
    let caps = r#"{"portMappings":[{"hostPort":18080,"containerPort":80,"protocol":"tcp"}]}"#;

    tool.ok(&["status", &name], &[]);
    let r1 = tool.add(&name, &c1, &[("CNI_CONTAINERID", &id1), ("CAP_ARGS", caps)]);
    let r2 = tool.add(&name, &c2, &[("CNI_CONTAINERID", &id2)]);

    let (ips1, ips2) = (result_ips(&r1), result_ips(&r2));
    assert_eq!(ips1.len(), nets.len(), "one address per range set: {r1}");
    for (ip, net) in ips1.iter().zip(&nets).chain(ips2.iter().zip(&nets)) {
        assert!(in_subnet(ip, net), "{ip} not in {net}");
    }
    assert_ne!(ips1, ips2);
    for (r, ns) in [(&r1, &c1), (&r2, &c2)] {
        let sandboxed: Vec<_> = r["interfaces"]
            .as_array()
            .expect("interfaces")
            .iter()
            .filter(|i| i["sandbox"].as_str().is_some())
            .collect();
        assert_eq!(sandboxed.len(), 1, "{r}");
        assert_eq!(sandboxed[0]["name"], "eth0");
        assert_eq!(sandboxed[0]["sandbox"].as_str(), ns.path().to_str());
        let addrs = ns.exec_ok("ip", &["-o", "addr", "show", "dev", "eth0"]);
        for ip in result_ips(r) {
            assert!(addrs.contains(&ip), "{ip} not on eth0: {addrs}");
        }
    }

    // CHECK gets the same runtime arguments as ADD (c2 has no host port).
    tool.ok(
        &["check", &name, &c1.path().to_string_lossy()],
        &[("CNI_CONTAINERID", &id1), ("CAP_ARGS", caps)],
    );
    tool.ok(
        &["check", &name, &c2.path().to_string_lossy()],
        &[("CNI_CONTAINERID", &id2)],
    );

    // Traffic: container to container (every family), container to gateway.
    for ip in &ips2 {
        assert!(ping(&c1, ip), "{} cannot reach {ip}", c1.name());
    }
    for gw in r1["ips"]
        .as_array()
        .expect("ips")
        .iter()
        .filter_map(|i| i["gateway"].as_str())
    {
        assert!(ping(&c1, gw), "{} cannot reach its gateway {gw}", c1.name());
    }

    // The host port and the masquerade rules exist while attached.
    let rules = e2e::netfilter_dump(&host);
    let v4 = ips1
        .iter()
        .find(|i| i.contains('.'))
        .expect("an IPv4 address");
    assert!(e2e::mentions_ip(&rules, v4), "no rule for {v4}:\n{rules}");
    assert!(rules.contains("18080"), "no host port rule:\n{rules}");
    assert!(
        rules.contains(&id1) && rules.contains(&id2),
        "no masquerade rules:\n{rules}"
    );

    for (ns, id) in [(&c1, &id1), (&c2, &id2)] {
        let p = ns.path().to_string_lossy().into_owned();
        tool.ok(
            &["del", &name, &p],
            &[("CNI_CONTAINERID", id), ("CAP_ARGS", caps)],
        );
        // DEL is idempotent, also without a cached result.
        tool.ok(&["del", &name, &p], &[("CNI_CONTAINERID", id)]);
        let links = ns.exec_ok("ip", &["-o", "link"]);
        assert!(
            !links.contains("eth0"),
            "eth0 left in {}: {links}",
            ns.name()
        );
    }
    tool.ok(&["gc", &name], &[("CNI_VALID_ATTACHMENTS", "[]")]);

    let all_ips: Vec<String> = ips1.iter().chain(&ips2).cloned().collect();
    assert_nothing_left(
        &host,
        &[],
        &data_dir,
        &cache_dir,
        &name,
        &[&id1, &id2],
        &all_ips,
    );
}

#[test]
fn e2e_conf_example_bridge() {
    run_example("10-bridge.conflist");
}

#[test]
fn e2e_conf_example_dualstack() {
    run_example("20-bridge-dualstack.conflist");
}

#[test]
fn e2e_conf_example_nftables() {
    run_example("30-bridge-nftables.conflist");
}

#[test]
fn every_example_has_a_test() {
    let mut files: Vec<String> = std::fs::read_dir(repo_root().join("conf-examples"))
        .expect("conf-examples")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".conflist") || n.ends_with(".conf"))
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "10-bridge.conflist",
            "20-bridge-dualstack.conflist",
            "30-bridge-nftables.conflist"
        ],
        "a new example needs a test in this file"
    );
}

#[test]
fn mentions_ip_matches_whole_addresses_only() {
    assert!(e2e::mentions_ip("dnat to 10.0.0.2:80", "10.0.0.2"));
    assert!(e2e::mentions_ip("ip saddr 10.0.0.2 masquerade", "10.0.0.2"));
    assert!(e2e::mentions_ip("-s 10.0.0.2/32 -j", "10.0.0.2"));
    assert!(!e2e::mentions_ip("-s 10.0.0.23/32", "10.0.0.2"));
    assert!(!e2e::mentions_ip("110.0.0.2", "10.0.0.2"));
    assert!(!e2e::mentions_ip("fd00::20", "fd00::2"));
    assert!(e2e::mentions_ip("ip6 saddr fd00::2 ", "fd00::2"));
}
