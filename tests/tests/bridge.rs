//! Integration tests of our `bridge` plugin (IPAM by our `host-local`), each in private
//! namespaces: a "host" namespace where the plugin runs and container namespaces.

#![allow(
    clippy::unwrap_used,
    reason = "helpers of integration tests panic with the failing value"
)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use bridge::rollback::STEPS;
use cni_testsupport::node::{Node, Side, first_ip, links};
use cni_testsupport::{Netns, PluginCall, PluginOutput, plugin_bin, reference_bin, require_root};
use serde_json::{Value, json};

const BR: &str = "cnitest0";
const ALL_VERSIONS: &[&str] = &[
    "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0",
];

/// Our bridge plugin on a node of its own, with the bridge named [`BR`].
struct Fx(Node);

impl std::ops::Deref for Fx {
    type Target = Node;
    fn deref(&self) -> &Node {
        &self.0
    }
}

impl Fx {
    /// The fixture when running as root; `None` (the test is skipped) otherwise.
    fn root() -> Option<Self> {
        if !require_root() {
            return None;
        }
        let mut n = Node::new();
        n.bridge = BR.into();
        Some(Self(n))
    }

    /// [`Fx::root`] and one container.
    fn ctr() -> Option<(Self, Netns)> {
        let fx = Self::root()?;
        let ctr = fx.env.add_container();
        Some((fx, ctr))
    }

    /// A config of version `version` with host-local IPAM over `subnets` (one range set
    /// each); `extra` merged in.
    fn conf_v(&self, version: &str, subnets: &[&str], extra: Value) -> Value {
        self.bridge_conf(version, subnets, extra)
    }

    /// [`Fx::conf_v`] of version 1.0.0.
    fn conf(&self, subnets: &[&str], extra: Value) -> Value {
        self.conf_v("1.0.0", subnets, extra)
    }

    /// Runs `ip args` in the host namespace.
    fn host_ip(&self, args: &[&str]) {
        self.env.host.exec_ok("ip", args);
    }

    fn call(&self, cmd: &str, conf: &Value, ctr: Option<&Netns>, id: &str) -> PluginCall {
        self.0.call(Side::Ours, cmd, conf, ctr, id)
    }

    fn run(&self, call: &PluginCall) -> PluginOutput {
        self.0.run(Side::Ours, "bridge", call)
    }

    fn add(&self, conf: &Value, ctr: &Netns, id: &str) -> Value {
        self.0.add(Side::Ours, "bridge", conf, ctr, id)
    }

    fn del(&self, conf: &Value, ctr: Option<&Netns>, id: &str) {
        self.0.del(Side::Ours, "bridge", conf, ctr, id);
    }

    fn check(&self, conf: &Value, prev: &Value, ctr: &Netns, id: &str) -> PluginOutput {
        self.0.check(Side::Ours, "bridge", conf, prev, ctr, id)
    }
}

fn link(ns: &Netns, name: &str) -> Option<Value> {
    links(ns).into_iter().find(|l| l["ifname"] == name)
}

fn addrs(ns: &Netns, dev: &str) -> Vec<String> {
    let out = ns.exec_ok("ip", &["-j", "addr", "show", "dev", dev]);
    let v: Vec<Value> = serde_json::from_str(&out).unwrap();
    v.iter()
        .flat_map(|l| l["addr_info"].as_array().cloned().unwrap_or_default())
        .filter(|a| a["scope"] == "global")
        .map(|a| format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"]))
        .collect()
}

fn routes(ns: &Netns, fam: &str) -> Vec<Value> {
    serde_json::from_str(&ns.exec_ok("ip", &[fam, "-j", "route", "show"])).unwrap()
}

fn iptables_nat(ns: &Netns) -> String {
    ns.exec_ok("iptables", &["-t", "nat", "-S"])
}

fn nft_ruleset(ns: &Netns) -> String {
    ns.exec_ok("nft", &["list", "ruleset"])
}

fn sysctl(ns: &Netns, key: &str) -> String {
    ns.exec_ok("cat", &[&format!("/proc/sys/{}", key.replace('.', "/"))])
        .trim()
        .to_string()
}

/// Sets a sysctl inside `ns` and checks it took.
fn set_sysctl(ns: &Netns, key: &str, value: &str) {
    ns.exec_ok("sysctl", &["-qw", &format!("{key}={value}")]);
    assert_eq!(sysctl(ns, key), value, "{key}");
}

/// Everything an attachment leaves behind is gone.
fn assert_clean(fx: &Fx, ctr: &Netns) {
    assert_eq!(
        fx.host_veths(),
        Vec::<String>::new(),
        "host veth left behind"
    );
    assert!(
        link(ctr, "eth0").is_none(),
        "container interface left behind"
    );
    assert_eq!(
        fx.reservations(),
        Vec::<String>::new(),
        "IPAM reservation left behind"
    );
    assert!(
        !iptables_nat(&fx.env.host).contains("-N CNI-"),
        "masquerade chain left behind"
    );
    let nft = nft_ruleset(&fx.env.host);
    assert!(
        !nft.contains("cni-br-iface"),
        "spoof-check chains left behind: {nft}"
    );
    assert!(
        !nft.contains("masquerade comment"),
        "nft masquerade rule left behind: {nft}"
    );
}

#[test]
fn add_check_del_ipv4_every_version() {
    let Some(fx) = Fx::root() else { return };
    // Forwarding off and a new device's arp_notify 0 whatever the defaults inherited
    // from the node: the first ADD turns forwarding on (it reads 0 over netconf and
    // writes the sysctl), later ones find it on; arp_notify is set on every interface.
    set_sysctl(&fx.env.host, "net.ipv4.ip_forward", "0");
    for v in ALL_VERSIONS {
        let ctr = fx.env.add_container();
        set_sysctl(&ctr, "net.ipv4.conf.default.arp_notify", "0");
        let conf = fx.conf_v(v, &["10.10.0.0/24"], json!({"isGateway": true}));
        let r = fx.add(&conf, &ctr, "c1");
        assert_eq!(r["cniVersion"], *v);
        match *v {
            "0.1.0" | "0.2.0" => {
                assert!(
                    r["ip4"]["ip"].as_str().unwrap().starts_with("10.10.0."),
                    "{r}"
                );
                assert_eq!(r["ip4"]["gateway"], "10.10.0.1");
            }
            "0.3.0" | "0.3.1" | "0.4.0" => {
                assert_eq!(r["ips"][0]["version"], "4", "{r}");
                assert_eq!(r["ips"][0]["interface"], 2);
            }
            _ => {
                assert!(r["ips"][0].get("version").is_none());
                assert_eq!(r["ips"][0]["interface"], 2);
            }
        }
        if !v.starts_with("0.1") && !v.starts_with("0.2") {
            let ifs = r["interfaces"].as_array().unwrap();
            assert_eq!(ifs.len(), 3);
            assert_eq!(ifs[0]["name"], BR);
            assert_eq!(ifs[0]["mac"].as_str().unwrap().len(), 17);
            assert!(ifs[1]["name"].as_str().unwrap().starts_with("veth"));
            assert_ne!(ifs[1]["mac"], ifs[0]["mac"]);
            assert_eq!(ifs[2]["name"], "eth0");
            assert_eq!(ifs[2]["sandbox"], ctr.path().to_str().unwrap());
            assert_eq!(
                link(&ctr, "eth0").unwrap()["address"],
                ifs[2]["mac"],
                "result carries the current MAC"
            );
        }
        let ca = addrs(&ctr, "eth0");
        assert_eq!(ca.len(), 1);
        assert!(ca[0].starts_with("10.10.0.") && ca[0].ends_with("/24"));
        assert_eq!(addrs(&fx.env.host, BR), vec!["10.10.0.1/24".to_string()]);
        assert_eq!(sysctl(&fx.env.host, "net.ipv4.ip_forward"), "1");
        assert_eq!(sysctl(&ctr, "net.ipv4.conf.eth0.arp_notify"), "1");
        if *v >= "0.4.0" {
            fx.check(&conf, &r, &ctr, "c1").assert_success();
        }
        fx.del(&conf, Some(&ctr), "c1");
        fx.del(&conf, Some(&ctr), "c1"); // idempotent
        assert_clean(&fx, &ctr);
        assert!(link(&fx.env.host, BR).is_some(), "the bridge stays");
    }
}

#[test]
fn ipv6_only_and_dual_stack_with_default_gateway() {
    let Some(fx) = Fx::root() else { return };
    set_sysctl(&fx.env.host, "net.ipv6.conf.all.forwarding", "0");
    let ctr = fx.env.add_container();
    let conf = fx.conf_v(
        "1.1.0",
        &["2001:db8:1::/64"],
        json!({"isDefaultGateway": true}),
    );
    let r = fx.add(&conf, &ctr, "v6");
    assert_eq!(r["ips"][0]["gateway"], "2001:db8:1::1");
    assert!(addrs(&ctr, "eth0")[0].starts_with("2001:db8:1::"));
    assert_eq!(sysctl(&ctr, "net.ipv6.conf.eth0.keep_addr_on_down"), "1");
    assert_eq!(sysctl(&ctr, "net.ipv6.conf.eth0.accept_dad"), "0");
    let r6 = routes(&ctr, "-6");
    assert!(
        r6.iter()
            .any(|x| x["dst"] == "default" && x["gateway"] == "2001:db8:1::1"),
        "{r6:?}"
    );
    assert_eq!(sysctl(&fx.env.host, "net.ipv6.conf.all.forwarding"), "1");
    fx.check(&conf, &r, &ctr, "v6").assert_success();
    fx.del(&conf, Some(&ctr), "v6");

    let ctr2 = fx.env.add_container();
    let conf = fx.conf(
        &["10.11.0.0/24", "2001:db8:2::/64"],
        json!({"isDefaultGateway": true}),
    );
    let r = fx.add(&conf, &ctr2, "dual");
    assert_eq!(r["ips"].as_array().unwrap().len(), 2);
    assert_eq!(r["routes"].as_array().unwrap().len(), 2, "{r}");
    let mut ba = addrs(&fx.env.host, BR);
    ba.sort();
    assert!(
        ba.contains(&"10.11.0.1/24".to_string()) && ba.contains(&"2001:db8:2::1/64".to_string()),
        "{ba:?}"
    );
    assert!(
        routes(&ctr2, "-4")
            .iter()
            .any(|x| x["dst"] == "default" && x["gateway"] == "10.11.0.1")
    );
    assert!(
        routes(&ctr2, "-6")
            .iter()
            .any(|x| x["dst"] == "default" && x["gateway"] == "2001:db8:2::1")
    );
    fx.check(&conf, &r, &ctr2, "dual").assert_success();
    fx.del(&conf, Some(&ctr2), "dual");
    assert_clean(&fx, &ctr2);
}

#[test]
fn enabledad_sets_container_sysctls() {
    let Some((fx, ctr)) = Fx::ctr() else { return };
    let conf = fx.conf(&["2001:db8:5::/64"], json!({"enabledad": true}));
    fx.add(&conf, &ctr, "dad");
    assert_eq!(sysctl(&ctr, "net.ipv6.conf.eth0.accept_dad"), "1");
    assert_eq!(sysctl(&ctr, "net.ipv6.conf.eth0.enhanced_dad"), "1");
    fx.del(&conf, Some(&ctr), "dad");
}

fn tcp_roundtrip(server_ns: &Netns, bind: SocketAddr, client_ns: &Netns) {
    let listener = server_ns.run_in(|| TcpListener::bind(bind).unwrap());
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut b = [0u8; 4];
        s.read_exact(&mut b).unwrap();
        s.write_all(&b).unwrap();
    });
    client_ns.run_in(|| {
        let mut c = TcpStream::connect_timeout(&bind, Duration::from_secs(5)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.write_all(b"ping").unwrap();
        let mut b = [0u8; 4];
        c.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"ping");
    });
    server.join().unwrap();
}

#[test]
fn two_containers_reach_each_other_and_the_gateway() {
    let Some(fx) = Fx::root() else { return };
    let (a, b) = (fx.env.add_container(), fx.env.add_container());
    let conf = fx.conf(&["10.12.0.0/24"], json!({"isGateway": true}));
    let ra = fx.add(&conf, &a, "a");
    let rb = fx.add(&conf, &b, "b");
    let (ipa, ipb) = (first_ip(&ra), first_ip(&rb));
    assert_ne!(ipa, ipb);
    tcp_roundtrip(&a, format!("{ipa}:7001").parse().unwrap(), &b);
    tcp_roundtrip(&b, format!("{ipb}:7002").parse().unwrap(), &a);
    tcp_roundtrip(&fx.env.host, "10.12.0.1:7003".parse().unwrap(), &a);
    fx.del(&conf, Some(&a), "a");
    fx.del(&conf, Some(&b), "b");
    assert_eq!(fx.reservations(), Vec::<String>::new());
}

#[test]
fn mtu_hairpin_and_isolation() {
    let Some((fx, ctr)) = Fx::ctr() else { return };
    let conf = fx.conf(
        &["10.13.0.0/24"],
        json!({"mtu": 1400, "hairpinMode": true, "portIsolation": true}),
    );
    let r = fx.add(&conf, &ctr, "m");
    let veth = r["interfaces"][1]["name"].as_str().unwrap().to_string();
    let hv = link(&fx.env.host, &veth).unwrap();
    assert_eq!(hv["mtu"], 1400);
    assert_eq!(link(&ctr, "eth0").unwrap()["mtu"], 1400);
    assert_eq!(
        link(&fx.env.host, BR).unwrap()["mtu"],
        1400,
        "new bridge gets the MTU"
    );
    let slave = &hv["linkinfo"]["info_slave_data"];
    assert_eq!(slave["hairpin"], true, "{hv}");
    assert_eq!(slave["isolated"], true, "{hv}");
    assert_eq!(hv["master"], BR);
    fx.check(&conf, &r, &ctr, "m").assert_success();
    fx.del(&conf, Some(&ctr), "m");

    // Defaults: flags explicitly off.
    let ctr2 = fx.env.add_container();
    let conf2 = fx.conf(&["10.13.0.0/24"], json!({}));
    let r2 = fx.add(&conf2, &ctr2, "m2");
    let hv2 = link(&fx.env.host, r2["interfaces"][1]["name"].as_str().unwrap()).unwrap();
    assert_eq!(hv2["linkinfo"]["info_slave_data"]["hairpin"], false);
    assert_eq!(hv2["linkinfo"]["info_slave_data"]["isolated"], false);
    assert_eq!(
        hv2["mtu"], 1500,
        "veth MTU is only set when configured: {hv2}"
    );
    fx.del(&conf2, Some(&ctr2), "m2");
}

#[test]
fn promisc_mode_and_check_compares_it() {
    let Some((fx, ctr)) = Fx::ctr() else { return };
    let conf = fx.conf(&["10.14.0.0/24"], json!({"promiscMode": true}));
    let r = fx.add(&conf, &ctr, "p");
    assert!(
        link(&fx.env.host, BR).unwrap()["promiscuity"]
            .as_u64()
            .unwrap()
            > 0
    );
    fx.check(&conf, &r, &ctr, "p").assert_success();
    let plain = fx.conf(&["10.14.0.0/24"], json!({}));
    let out = fx.check(&plain, &r, &ctr, "p");
    out.assert_failure("Promisc");
    fx.del(&conf, Some(&ctr), "p");
}

#[test]
fn mac_precedence_cni_args_args_runtime_config() {
    let Some(fx) = Fx::root() else { return };
    let cases = [
        (json!({}), "0a:58:00:00:00:01"),
        (
            json!({"args": {"cni": {"mac": "0a:58:00:00:00:02"}}}),
            "0a:58:00:00:00:02",
        ),
        (
            json!({"args": {"cni": {"mac": "0a:58:00:00:00:02"}}, "runtimeConfig": {"mac": "0a:58:00:00:00:03"}}),
            "0a:58:00:00:00:03",
        ),
    ];
    for (extra, want) in cases {
        let ctr = fx.env.add_container();
        let conf = fx.conf(&["10.15.0.0/24"], extra);
        let out = fx.run(
            &fx.call("ADD", &conf, Some(&ctr), "mac")
                .cni_args("IgnoreUnknown=1;MAC=0a:58:00:00:00:01"),
        );
        out.assert_success();
        assert_eq!(out.json()["interfaces"][2]["mac"], want);
        assert_eq!(link(&ctr, "eth0").unwrap()["address"], want);
        fx.del(&conf, Some(&ctr), "mac");
    }
}

fn masq_roundtrip(backend: &str) {
    let Some((fx, ctr)) = Fx::ctr() else { return };
    let conf = fx.conf(
        &["10.16.0.0/24"],
        json!({"isGateway": true, "ipMasq": true, "ipMasqBackend": backend}),
    );
    let r = fx.add(&conf, &ctr, "mq");
    let ip = first_ip(&r);
    let chain = cni_netfilter_chain(&fx.name, "mq");
    if backend == "iptables" {
        let nat = iptables_nat(&fx.env.host);
        assert!(nat.contains(&format!("-N {chain}")), "{nat}");
        assert!(nat.contains(&format!("-A POSTROUTING -s {ip}/32")), "{nat}");
        assert!(
            nat.contains(&format!("name: \\\"{}\\\" id: \\\"mq\\\"", fx.name)),
            "{nat}"
        );
    } else {
        let nft = fx
            .env
            .host
            .exec_ok("nft", &["list", "table", "inet", "cni_plugins_masquerade"]);
        assert!(
            nft.contains(&format!("ip saddr {ip}")) && nft.contains("masquerade"),
            "{nft}"
        );
    }
    fx.check(&conf, &r, &ctr, "mq").assert_success();
    fx.del(&conf, Some(&ctr), "mq");
    assert_clean(&fx, &ctr);

    // DEL without CNI_NETNS (netns already gone) still removes the rules and the IP.
    let ctr2 = fx.env.add_container();
    fx.add(&conf, &ctr2, "mq2");
    assert_eq!(fx.reservations().len(), 1);
    drop(ctr2);
    fx.del(&conf, None, "mq2");
    assert_eq!(fx.reservations(), Vec::<String>::new());
    assert!(!iptables_nat(&fx.env.host).contains("-N CNI-"));
    assert!(!nft_ruleset(&fx.env.host).contains("masquerade comment"));
}

/// The reference chain name: `CNI-` + first 24 hex of SHA-512(network + container id).
fn cni_netfilter_chain(network: &str, id: &str) -> String {
    let out = std::process::Command::new("sh")
        .args(["-c", &format!("printf '%s' '{network}{id}' | sha512sum")])
        .output()
        .unwrap();
    format!("CNI-{}", &String::from_utf8_lossy(&out.stdout)[..24])
}

#[test]
fn masquerade_iptables_added_checked_and_removed() {
    masq_roundtrip("iptables");
}

#[test]
fn masquerade_nftables_added_checked_and_removed() {
    masq_roundtrip("nftables");
}

#[test]
fn macspoofchk_rules_added_and_removed() {
    let Some((fx, ctr)) = Fx::ctr() else { return };
    let conf = fx.conf(&["10.17.0.0/24"], json!({"macspoofchk": true}));
    let r = fx.add(&conf, &ctr, "sp");
    let mac = r["interfaces"][2]["mac"].as_str().unwrap();
    let nft = fx
        .env
        .host
        .exec_ok("nft", &["list", "table", "bridge", "nat"]);
    assert!(nft.contains("chain cni-br-iface-sp-eth0"), "{nft}");
    assert!(nft.contains(&format!("ether saddr {mac} return")), "{nft}");
    assert!(nft.contains("macspoofchk-sp-eth0"), "{nft}");
    fx.check(&conf, &r, &ctr, "sp").assert_success();
    fx.del(&conf, Some(&ctr), "sp");
    assert_clean(&fx, &ctr);
}

#[test]
fn failure_at_every_step_rolls_back_everything() {
    let Some(fx) = Fx::root() else { return };
    for backend in ["iptables", "nftables"] {
        let conf = fx.conf(&["10.18.0.0/24", "2001:db8:18::/64"],
            json!({"isDefaultGateway": true, "ipMasq": true, "ipMasqBackend": backend, "macspoofchk": true}),
        );
        for step in STEPS {
            let ctr = fx.env.add_container();
            let out = fx.run(
                &fx.call("ADD", &conf, Some(&ctr), "rb")
                    .env("CNI_BRIDGE_FAIL_AFTER", step),
            );
            assert!(!out.success(), "step {step}: {}", out.describe());
            out.assert_failure("injected failure");
            assert_clean(&fx, &ctr);
        }
        // And without injection the same ADD works.
        let ctr = fx.env.add_container();
        fx.add(&conf, &ctr, "rb");
        fx.del(&conf, Some(&ctr), "rb");
        assert_clean(&fx, &ctr);
    }
}

#[test]
fn real_failure_after_veth_rolls_back() {
    let Some(fx) = Fx::root() else { return };
    // A conflicting address on an existing bridge without forceAddress fails after IPAM
    // and the container configuration.
    fx.host_ip(&["link", "add", BR, "type", "bridge"]);
    fx.host_ip(&["addr", "add", "10.19.9.1/16", "dev", BR]);
    let ctr = fx.env.add_container();
    let conf = fx.conf(
        &["10.19.0.0/24"],
        json!({"isGateway": true, "ipMasq": true}),
    );
    let out = fx.run(&fx.call("ADD", &conf, Some(&ctr), "rf"));
    out.assert_failure("already has an IP address different from");
    assert_clean(&fx, &ctr);
    // forceAddress replaces it.
    let conf = fx.conf(
        &["10.19.0.0/24"],
        json!({"isGateway": true, "forceAddress": true}),
    );
    fx.add(&conf, &ctr, "rf");
    assert_eq!(addrs(&fx.env.host, BR), vec!["10.19.0.1/24".to_string()]);
    fx.del(&conf, Some(&ctr), "rf");
}

#[test]
fn existing_container_interface_fails_before_any_change() {
    let Some((fx, ctr)) = Fx::ctr() else { return };
    ctr.exec_ok("ip", &["link", "add", "eth0", "type", "bridge"]);
    let conf = fx.conf(&["10.20.0.0/24"], json!({}));
    let out = fx.run(&fx.call("ADD", &conf, Some(&ctr), "ex"));
    out.assert_failure("already exists");
    assert!(
        link(&fx.env.host, BR).is_none(),
        "nothing created, not even the bridge"
    );
    assert_eq!(fx.reservations(), Vec::<String>::new());
    assert_eq!(fx.host_veths(), Vec::<String>::new());
}

#[test]
fn existing_non_bridge_link_is_an_error() {
    let Some(fx) = Fx::root() else { return };
    fx.host_ip(&["link", "add", BR, "type", "veth", "peer", "name", "nb-peer"]);
    let ctr = fx.env.add_container();
    let conf = fx.conf(&["10.21.0.0/24"], json!({}));
    let out = fx.run(&fx.call("ADD", &conf, Some(&ctr), "nb"));
    out.assert_failure("is not a bridge");
    assert_clean(&fx, &ctr);
}

#[test]
fn check_fails_after_address_removed_and_passes_for_layer2() {
    let Some((fx, ctr)) = Fx::ctr() else { return };
    let conf = fx.conf(&["10.22.0.0/24"], json!({"isDefaultGateway": true}));
    let r = fx.add(&conf, &ctr, "ck");
    fx.check(&conf, &r, &ctr, "ck").assert_success();
    let a = r["ips"][0]["address"].as_str().unwrap().to_string();
    ctr.exec_ok("ip", &["addr", "del", &a, "dev", "eth0"]);
    let out = fx.check(&conf, &r, &ctr, "ck");
    assert_eq!(out.error_code(), Some(103), "{}", out.describe());
    out.assert_failure(&a);
    fx.del(&conf, Some(&ctr), "ck");

    let ctr2 = fx.env.add_container();
    let l2 = fx.conf(&[], json!({}));
    let r2 = fx.add(&l2, &ctr2, "l2");
    assert!(
        r2.get("ips")
            .is_none_or(|v| v.as_array().is_none_or(Vec::is_empty))
    );
    fx.check(&l2, &r2, &ctr2, "l2").assert_success();
    fx.del(&l2, Some(&ctr2), "l2");
    // CHECK after DEL fails as a mismatch.
    let out = fx.check(&l2, &r2, &ctr2, "l2");
    assert_eq!(out.error_code(), Some(103), "{}", out.describe());
}

#[test]
fn layer2_modes() {
    let Some((fx, ctr)) = Fx::ctr() else { return };
    let l2 = fx.conf(&[], json!({}));
    fx.add(&l2, &ctr, "l2");
    let e = link(&ctr, "eth0").unwrap();
    assert_eq!(e["operstate"], "UP");
    assert!(addrs(&ctr, "eth0").is_empty());
    fx.del(&l2, Some(&ctr), "l2");

    // disableContainerInterface leaves it down.
    let l2d = fx.conf(&[], json!({"disableContainerInterface": true}));
    fx.add(&l2d, &ctr, "l2d");
    let flags = link(&ctr, "eth0").unwrap()["flags"].clone();
    assert!(
        !flags.as_array().unwrap().iter().any(|f| f == "UP"),
        "{flags}"
    );
    fx.del(&l2d, Some(&ctr), "l2d");

    // A 0.2.0 result cannot express L2: the ADD fails and leaves nothing behind.
    let old = fx.conf_v("0.2.0", &[], json!({}));
    let out = fx.run(&fx.call("ADD", &old, Some(&ctr), "l2old"));
    assert!(!out.success());
    assert_clean(&fx, &ctr);
}

#[test]
fn invalid_config_codes() {
    let Some((fx, ctr)) = Fx::ctr() else { return };
    let cases = [
        (json!({"vlan": 5000}), 7, "invalid VLAN ID 5000"),
        (
            json!({"hairpinMode": true, "promiscMode": true}),
            7,
            "cannot set hairpin mode",
        ),
        (json!({"vlanTrunk": [{"minID": 10}]}), 7, "maxID is missing"),
        (
            json!({"ipMasq": true, "ipMasqBackend": "ebpf"}),
            2,
            "ipMasqBackend",
        ),
        (json!({"mtu": "big"}), 7, ""),
    ];
    for (extra, code, msg) in cases {
        let conf = fx.conf(&["10.23.0.0/24"], extra.clone());
        let out = fx.run(&fx.call("ADD", &conf, Some(&ctr), "bad"));
        assert_eq!(out.error_code(), Some(code), "{extra}: {}", out.describe());
        out.assert_failure(msg);
    }
    let conf = fx.conf(
        &["10.23.0.0/24"],
        json!({"disableContainerInterface": true}),
    );
    assert_eq!(
        fx.run(&fx.call("ADD", &conf, Some(&ctr), "bad"))
            .error_code(),
        Some(7)
    );
    assert_clean(&fx, &ctr);
}

#[test]
fn dns_from_config_replaces_ipam_dns() {
    let Some((fx, ctr)) = Fx::ctr() else { return };
    let conf = fx.conf(
        &["10.24.0.0/24"],
        json!({"dns": {"nameservers": ["192.0.2.53"], "search": ["example.test"]}}),
    );
    let r = fx.add(&conf, &ctr, "dns");
    assert_eq!(r["dns"]["nameservers"], json!(["192.0.2.53"]));
    assert_eq!(r["dns"]["search"], json!(["example.test"]));
    fx.del(&conf, Some(&ctr), "dns");
}

#[test]
fn duplicate_default_route_from_ipam_is_not_added_twice() {
    let Some((fx, ctr)) = Fx::ctr() else { return };
    let mut conf = fx.conf_v(
        "1.1.0",
        &["10.25.0.0/24"],
        json!({"isDefaultGateway": true}),
    );
    conf["ipam"]["routes"] = json!([{"dst": "0.0.0.0/0"}]);
    let r = fx.add(&conf, &ctr, "dr");
    assert_eq!(r["routes"].as_array().unwrap().len(), 1, "{r}");
    let defaults: Vec<_> = routes(&ctr, "-4")
        .into_iter()
        .filter(|x| x["dst"] == "default")
        .collect();
    assert_eq!(defaults.len(), 1, "{defaults:?}");
    assert_eq!(defaults[0]["gateway"], "10.25.0.1");
    fx.del(&conf, Some(&ctr), "dr");
}

#[test]
fn vlan_on_port_or_skip_when_kernel_lacks_support() {
    let Some((fx, ctr)) = Fx::ctr() else { return };
    let conf = fx.conf(
        &[],
        json!({"vlan": 100, "vlanTrunk": [{"id": 101}, {"minID": 200, "maxID": 202}]}),
    );
    let out = fx.run(&fx.call("ADD", &conf, Some(&ctr), "vl"));
    if !out.success() && out.error_msg().unwrap_or_default().contains("EOPNOTSUPP") {
        eprintln!(
            "skipped: kernel cannot create a VLAN-filtering bridge: {}",
            out.error_msg().unwrap()
        );
        assert_clean(&fx, &ctr);
        return;
    }
    out.assert_success();
    let veth = out.json()["interfaces"][1]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let v = fx
        .env
        .host
        .exec_ok("bridge", &["-j", "vlan", "show", "dev", &veth]);
    for vid in ["100", "101", "200", "201", "202"] {
        assert!(v.contains(&format!("\"vlan\":{vid}")), "{v}");
    }
    assert_eq!(
        link(&fx.env.host, BR).unwrap()["linkinfo"]["info_data"]["vlan_filtering"],
        1
    );
    fx.del(&conf, Some(&ctr), "vl");
}

#[test]
fn vlan_on_existing_non_filtering_bridge_rolls_back() {
    let Some(fx) = Fx::root() else { return };
    fx.host_ip(&["link", "add", BR, "type", "bridge"]);
    let ctr = fx.env.add_container();
    let conf = fx.conf(&["10.26.0.0/24"], json!({"vlan": 100, "ipMasq": true}));
    let out = fx.run(&fx.call("ADD", &conf, Some(&ctr), "vx"));
    if out.success() {
        // Kernels with VLAN support accept entries on a non-filtering bridge.
        fx.del(&conf, Some(&ctr), "vx");
    } else {
        out.assert_failure("vlan");
    }
    assert_clean(&fx, &ctr);
}

#[test]
fn status_and_gc() {
    let Some(fx) = Fx::root() else { return };
    let conf = fx.conf_v(
        "1.1.0",
        &["10.27.0.0/24"],
        json!({"ipMasq": true, "ipMasqBackend": "nftables"}),
    );
    fx.run(&fx.env.call("STATUS", serde_json::to_vec(&conf).unwrap()))
        .assert_success();
    let (a, b) = (fx.env.add_container(), fx.env.add_container());
    let ra = fx.add(&conf, &a, "keep");
    let rb = fx.add(&conf, &b, "gone");
    assert_eq!(fx.reservations().len(), 2);
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "keep", "ifname": "eth0"}]);
    fx.run(&fx.env.call("GC", serde_json::to_vec(&gc).unwrap()))
        .assert_success();
    let res = fx.reservations();
    let ip_a = first_ip(&ra);
    let ip_b = first_ip(&rb);
    assert_eq!(res, vec![ip_a.clone()], "GC forwarded to IPAM");
    let nft = fx
        .env
        .host
        .exec_ok("nft", &["list", "table", "inet", "cni_plugins_masquerade"]);
    assert!(nft.contains(&ip_a) && !nft.contains(&ip_b), "{nft}");
    fx.del(&conf, Some(&a), "keep");
    fx.del(&conf, Some(&b), "gone");
}

#[test]
fn reference_add_is_checked_and_deleted_by_ours() {
    let Some((fx, ctr)) = Fx::ctr() else { return };
    let Some(reference) = reference_bin("bridge") else {
        eprintln!("skipped: reference bridge not installed");
        return;
    };
    let conf = fx.conf(
        &["10.28.0.0/24"],
        json!({"isDefaultGateway": true, "ipMasq": true}),
    );
    // The reference delegates to our host-local through CNI_PATH.
    let out = fx
        .call("ADD", &conf, Some(&ctr), "ref")
        .cni_path(vec![fx.env.cni_path.clone()])
        .run_in(&fx.env.host, &reference);
    out.assert_success();
    let r = out.json();
    assert_eq!(fx.reservations().len(), 1);
    fx.check(&conf, &r, &ctr, "ref").assert_success();
    fx.del(&conf, Some(&ctr), "ref");
    assert_clean(&fx, &ctr);
    let _: PathBuf = plugin_bin("bridge");
}

/// Processes whose environment holds `CNI_CONTAINERID=<id>` (the plugin and anything
/// it forked).
fn processes_of_container(id: &str) -> Vec<u32> {
    let needle = format!("CNI_CONTAINERID={id}");
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    rd.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|kv| kv == needle.as_bytes()))
        })
        .collect()
}

/// DEL hands the kernel's final wait for the veth pair's release to a detached helper
/// (cni_netlink::detach): when DEL returns (and its output pipe reaches end-of-file) the
/// pair must already be gone from both namespaces, and the helper must end by itself.
#[test]
fn del_returns_with_the_pair_gone_and_its_helper_ends() {
    let Some((fx, ctr)) = Fx::ctr() else { return };
    let conf = fx.conf(&["10.1.9.0/24"], json!({}));
    let id = format!("detach-{}", cni_testsupport::random_hex(8));
    fx.add(&conf, &ctr, &id);
    assert_eq!(fx.host_veths().len(), 1);
    fx.del(&conf, Some(&ctr), &id);
    assert!(
        fx.host_veths().is_empty(),
        "host end still listed after DEL"
    );
    assert!(
        link(&ctr, "eth0").is_none(),
        "container end still listed after DEL"
    );
    assert!(fx.reservations().is_empty());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut left = processes_of_container(&id);
    while !left.is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        left = processes_of_container(&id);
    }
    assert!(left.is_empty(), "DEL left processes behind: {left:?}");
    // Idempotent: the interface is gone, DEL still succeeds.
    fx.del(&conf, Some(&ctr), &id);
}

/// With debug logging, the masquerade set-up logs from its own thread while the main
/// thread works; the plugin must not hold stderr for the whole command (it did, and
/// this ADD hung until killed).
#[test]
fn ipmasq_add_and_del_with_debug_logging_complete() {
    let Some((fx, ctr)) = Fx::ctr() else { return };
    let conf = fx.conf(
        &["10.21.0.0/24"],
        json!({"isGateway": true, "ipMasq": true}),
    );
    // DEL without prevResult removes the chain natively (no tool runs), and says so.
    for (cmd, logged) in [
        ("ADD", "iptables-restore"),
        ("DEL", "removing masquerade chain"),
    ] {
        let call = fx
            .call(cmd, &conf, Some(&ctr), "dbg")
            .env("CNI_LOG_LEVEL", "trace");
        let out = fx.run(&call);
        out.assert_success();
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(log.contains(logged), "{cmd}: {log}");
    }
    assert_clean(&fx, &ctr);
}
