//! portmap integration tests in private namespaces with real traffic.
//!
//! Topology (all created here): a "host" namespace with bridge `br0` (10.99.0.1/24,
//! fd00:99::1/64) and a second bridge `br1` with 10.98.0.1/24; containers attached by veth with
//! 10.99.0.x. Servers and clients are std TCP/UDP sockets created inside the namespaces.
//!
//! Every plugin call runs with a `PATH` whose first directory holds a fake `conntrack`
//! that only records its arguments: the UDP conntrack flush must work without
//! conntrack-tools (it is done over NETLINK_NETFILTER).

#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    missing_docs,
    reason = "tests"
)]

use cni_testsupport::{
    Netns, PluginCall, PluginOutput, TestEnv, reference_bin, require_root, serve, tcp_get, udp_ask,
    write_script,
};

struct Topo {
    env: TestEnv,
    containers: Vec<Netns>,
    no_conntrack_cli: NoConntrackCli,
}

/// A directory with a fake `conntrack` that appends its arguments to `calls` and exits 0
/// without touching the conntrack table; put first in the plugins' `PATH`.
struct NoConntrackCli {
    dir: tempfile::TempDir,
}

impl NoConntrackCli {
    fn new() -> NoConntrackCli {
        let dir = tempfile::tempdir().unwrap();
        let calls = dir.path().join("calls");
        write_script(
            dir.path(),
            "conntrack",
            &format!("echo \"$*\" >> '{}'\nexit 0", calls.display()),
        );
        NoConntrackCli { dir }
    }

    /// `PATH` for the plugin: the fake first, then the test's own `PATH`.
    fn path(&self) -> String {
        let rest = std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into());
        format!("{}:{rest}", self.dir.path().display())
    }

    /// Arguments of every `conntrack` exec so far (empty: never run).
    fn calls(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("calls")).unwrap_or_default()
    }
}

impl Topo {
    /// A topology when running as root; `None` (the test is skipped) otherwise.
    fn root() -> Option<Topo> {
        require_root().then(Topo::new)
    }

    fn new() -> Topo {
        let env = TestEnv::with_host_setup(&[
            "ip link add br0 type bridge",
            "ip addr add 10.99.0.1/24 dev br0",
            "ip -6 addr add fd00:99::1/64 dev br0 nodad",
            "ip link set br0 up",
            "ip link add br1 type bridge",
            "ip addr add 10.98.0.1/24 dev br1",
            "ip link set br1 up",
            "sysctl -qw net.ipv4.ip_forward=1",
            // Off whatever the node's defaults are: portmap ADD must turn it on.
            "sysctl -qw net.ipv4.conf.br0.route_localnet=0",
        ]);
        Topo {
            env,
            containers: Vec::new(),
            no_conntrack_cli: NoConntrackCli::new(),
        }
    }

    /// Adds container number `n` with 10.99.0.<n>/24 and fd00:99::<n>/64; returns its index.
    fn container(&mut self, n: u8) -> usize {
        let c = Netns::new();
        let veth = format!("vc{n}");
        let host = &self.env.host;
        host.exec_ok(
            "sh",
            &[
                "-c",
                &format!(
                    "ip link add {veth} type veth peer name eth0 netns {}",
                    c.name()
                ),
            ],
        );
        host.exec_ok(
            "sh",
            &[
                "-c",
                &format!(
                    "ip link set {veth} master br0 up && bridge link set dev {veth} hairpin on"
                ),
            ],
        );
        c.exec_ok(
            "sh",
            &["-c", &format!("ip addr add 10.99.0.{n}/24 dev eth0 && ip -6 addr add fd00:99::{n}/64 dev eth0 nodad && ip link set eth0 up && ip route add default via 10.99.0.1")],
        );
        self.containers.push(c);
        self.containers.len() - 1
    }

    /// [`Topo::container`] for each of `ns`; returns their indexes.
    fn containers<const N: usize>(&mut self, ns: [u8; N]) -> [usize; N] {
        ns.map(|n| self.container(n))
    }

    fn ns(&self, i: usize) -> &Netns {
        &self.containers[i]
    }

    /// A portmap call of `command` for container `cid` whose `eth0` is in `netns`.
    fn call(&self, command: &str, cid: &str, netns: &Netns, conf: &str) -> PluginCall {
        self.env
            .call(command, conf)
            .container_id(cid)
            .netns(netns.path())
            .ifname("eth0")
    }

    /// Runs our portmap with [`Topo::call`] and the fake `conntrack` first in `PATH`.
    fn portmap(&self, command: &str, cid: &str, netns: &Netns, conf: &str) -> PluginOutput {
        let call = self
            .call(command, cid, netns, conf)
            .env("PATH", &self.no_conntrack_cli.path());
        self.env.run("portmap", &call)
    }

    fn nat(&self) -> String {
        self.env.host.exec_ok("iptables", &["-t", "nat", "-S"])
    }

    fn nft(&self) -> String {
        self.env.host.exec_ok("nft", &["list", "ruleset"])
    }
}

fn conf(version: &str, backend: Option<&str>, mappings: &str, ip_last: u8) -> String {
    let (v4, v6) = if version.starts_with("0.") {
        (r#""version":"4","#, r#""version":"6","#)
    } else {
        ("", "")
    };
    let backend = backend
        .map(|b| format!(r#""backend":"{b}","#))
        .unwrap_or_default();
    format!(
        r#"{{"cniVersion":"{version}","name":"pmnet","type":"portmap",{backend}"runtimeConfig":{{"portMappings":{mappings}}},
        "prevResult":{{"cniVersion":"{version}","interfaces":[{{"name":"eth0","sandbox":"/x"}}],
        "ips":[{{{v4}"interface":0,"address":"10.99.0.{ip_last}/24","gateway":"10.99.0.1"}},{{{v6}"interface":0,"address":"fd00:99::{ip_last}/64"}}]}}}}"#
    )
}

const MAPPINGS: &str = r#"[{"hostPort":8080,"containerPort":80,"protocol":"tcp"},{"hostPort":8053,"containerPort":53,"protocol":"udp"},
  {"hostPort":9191,"containerPort":80,"protocol":"tcp","hostIP":"10.99.0.1"},{"hostPort":8086,"containerPort":80,"protocol":"tcp","hostIP":"::"}]"#;

fn traffic(backend: &str) {
    let Some(mut t) = Topo::root() else { return };
    let [server, client] = t.containers([2, 3]);
    serve(t.ns(server), "A");
    let route_localnet = |t: &Topo| {
        t.env
            .host
            .exec_ok("cat", &["/proc/sys/net/ipv4/conf/br0/route_localnet"])
            .trim()
            .to_string()
    };
    assert_eq!(route_localnet(&t), "0", "set off in Topo::new");
    let pm = |command: &str, mappings: &str| {
        t.portmap(
            command,
            "ctrA",
            t.ns(server),
            &conf("1.0.0", Some(backend), mappings, 2),
        )
    };
    let add = pm("ADD", MAPPINGS);
    add.assert_success();
    assert_eq!(
        route_localnet(&t),
        "1",
        "route_localnet on the bridge routing to the container"
    );
    assert_eq!(
        add.json()["ips"][0]["address"],
        "10.99.0.2/24",
        "prevResult passed through: {}",
        add.describe()
    );
    let host = &t.env.host;
    let reaches = |rows: &[(&Netns, &str, &str)]| {
        for (from, addr, why) in rows {
            assert_eq!(tcp_get(from, addr).unwrap(), "A", "{why}");
        }
    };
    reaches(&[
        (t.ns(client), "10.99.0.1:8080", "from another container"),
        (t.ns(client), "10.98.0.1:8080", "via another host address"),
        (host, "10.99.0.1:8080", "from the host netns"),
        (
            host,
            "127.0.0.1:8080",
            "via localhost (snat, route_localnet)",
        ),
        (t.ns(server), "10.99.0.1:8080", "hairpin"),
    ]);
    assert_eq!(
        udp_ask(t.ns(client), "0.0.0.0:0", "10.99.0.1:8053").unwrap(),
        "A",
        "udp"
    );
    reaches(&[(t.ns(client), "10.99.0.1:9191", "hostIP matches")]);
    assert!(
        tcp_get(t.ns(client), "10.98.0.1:9191").is_err(),
        "hostIP restricts the mapping"
    );
    // IPv6 from the host netns (the nftables layout masquerades only the container's own
    // address, as the reference does, so a same-subnet IPv6 peer would get an asymmetric reply).
    reaches(&[
        (host, "[fd00:99::1]:8086", "IPv6 mapping"),
        (host, "[fd00:99::1]:8080", "IPv6 any-address mapping"),
    ]);
    pm("CHECK", MAPPINGS).assert_success();
    // Re-ADD with other mappings: old ports stop working, the new one works.
    let re = r#"[{"hostPort":7070,"containerPort":80,"protocol":"tcp"}]"#;
    pm("ADD", re).assert_success();
    assert!(
        tcp_get(t.ns(client), "10.99.0.1:8080").is_err(),
        "stale mapping still forwards"
    );
    assert_eq!(tcp_get(t.ns(client), "10.99.0.1:7070").unwrap(), "A");
    let failed = pm("CHECK", MAPPINGS);
    assert_eq!(
        failed.error_code(),
        Some(103),
        "CHECK with the old mappings must fail as a mismatch (103): {}",
        failed.describe()
    );
    // DEL without runtimeConfig or prevResult removes everything.
    let bare = r#"{"cniVersion":"1.0.0","name":"pmnet","type":"portmap"}"#;
    t.portmap("DEL", "ctrA", t.ns(server), bare)
        .assert_success();
    t.portmap("DEL", "ctrA", t.ns(server), bare)
        .assert_success();
    assert!(tcp_get(t.ns(client), "10.99.0.1:7070").is_err());
    assert!(!t.nat().contains("CNI-DN-"), "{}", t.nat());
    assert!(!t.nft().contains("\"ctrA\""), "{}", t.nft());
}

#[test]
fn traffic_iptables() {
    traffic("iptables");
}

#[test]
fn traffic_nftables() {
    traffic("nftables");
}

#[test]
fn udp_flow_retargeted_after_delete() {
    let Some(mut t) = Topo::root() else { return };
    let [a, c, client] = t.containers([2, 4, 3]);
    serve(t.ns(a), "A");
    serve(t.ns(c), "C");
    let udp = r#"[{"hostPort":8053,"containerPort":53,"protocol":"udp"}]"#;
    t.portmap("ADD", "ctrA", t.ns(a), &conf("1.0.0", None, udp, 2))
        .assert_success();
    assert_eq!(
        udp_ask(t.ns(client), "10.99.0.3:40000", "10.99.0.1:8053").unwrap(),
        "A"
    );
    t.portmap("DEL", "ctrA", t.ns(a), &conf("1.0.0", None, udp, 2))
        .assert_success();
    t.portmap("ADD", "ctrC", t.ns(c), &conf("1.0.0", None, udp, 4))
        .assert_success();
    assert_eq!(
        udp_ask(t.ns(client), "10.99.0.3:40000", "10.99.0.1:8053").unwrap(),
        "C",
        "same UDP flow must reach the new container"
    );
    assert_eq!(
        t.no_conntrack_cli.calls(),
        "",
        "the conntrack CLI must not be used"
    );
}

/// Our portmap and the reference, each on a topology of its own with container 2.
struct Both {
    ours: Topo,
    theirs: Topo,
    reference: std::path::PathBuf,
}

impl Both {
    /// `None` (the test is skipped) when not root or without the reference portmap.
    fn new() -> Option<Both> {
        let Some(reference) = reference_bin("portmap") else {
            println!("skipped: no reference portmap");
            return None;
        };
        let (mut ours, mut theirs) = (Topo::root()?, Topo::new());
        ours.container(2);
        theirs.container(2);
        Some(Both {
            ours,
            theirs,
            reference,
        })
    }

    /// The same ADD of container `cid` (0.4.0, [`MAPPINGS`], address .`last`) on both.
    fn add(&self, cid: &str, last: u8) {
        let input = conf("0.4.0", None, MAPPINGS, last);
        let (ours, theirs) = (&self.ours, &self.theirs);
        ours.portmap("ADD", cid, ours.ns(0), &input)
            .assert_success();
        theirs
            .call("ADD", cid, theirs.ns(0), &input)
            .run_in(&theirs.env.host, &self.reference)
            .assert_success();
    }

    /// Both list the same iptables and ip6tables NAT rules.
    fn assert_same_listing(&self) {
        let v6 = |t: &Topo| t.env.host.exec_ok("ip6tables", &["-t", "nat", "-S"]);
        assert_eq!(self.ours.nat(), self.theirs.nat());
        assert_eq!(v6(&self.ours), v6(&self.theirs));
    }
}

#[test]
fn listing_matches_reference_and_our_del_removes_reference_rules() {
    let Some(both) = Both::new() else { return };
    both.add("ctrA", 2);
    both.assert_same_listing();
    let (ours, theirs) = (&both.ours, &both.theirs);
    // Our DEL (no runtimeConfig) cleans up what the reference created.
    let bare = r#"{"cniVersion":"0.4.0","name":"pmnet","type":"portmap"}"#;
    theirs
        .portmap("DEL", "ctrA", theirs.ns(0), bare)
        .assert_success();
    assert!(!theirs.nat().contains("CNI-DN-"), "{}", theirs.nat());
    // GC keeps valid attachments only.
    let gc = r#"{"cniVersion":"1.1.0","name":"pmnet","type":"portmap","cni.dev/valid-attachments":[{"containerID":"other","ifname":"eth0"}]}"#;
    let out = ours.env.run("portmap", &ours.env.call("GC", gc));
    out.assert_success();
    assert!(!ours.nat().contains("CNI-DN-"), "{}", ours.nat());
}

#[test]
fn errors_carry_cni_codes() {
    let Some(mut t) = Topo::root() else { return };
    let s = t.container(2);
    let bad_port = conf(
        "1.0.0",
        None,
        r#"[{"hostPort":70000,"containerPort":80,"protocol":"tcp"}]"#,
        2,
    );
    let out = t.portmap("ADD", "ctrA", t.ns(s), &bad_port);
    assert_eq!(out.error_code(), Some(7), "{}", out.describe());
    assert!(out.error_msg().unwrap().contains("70000"));
    let bad_proto = conf(
        "1.0.0",
        None,
        r#"[{"hostPort":80,"containerPort":80,"protocol":"icmp"}]"#,
        2,
    );
    assert_eq!(
        t.portmap("ADD", "ctrA", t.ns(s), &bad_proto).error_code(),
        Some(7)
    );
    let out = t.portmap(
        "ADD",
        "ctrA",
        t.ns(s),
        &conf("1.0.0", Some("ebpf"), MAPPINGS, 2),
    );
    assert_eq!(out.error_code(), Some(2), "{}", out.describe());
    let no_prev = r#"{"cniVersion":"1.0.0","name":"pmnet","type":"portmap"}"#;
    assert_eq!(
        t.portmap("ADD", "ctrA", t.ns(s), no_prev).error_code(),
        Some(7)
    );
    let status = r#"{"cniVersion":"1.1.0","name":"pmnet","type":"portmap"}"#;
    t.env
        .run("portmap", &t.env.call("STATUS", status))
        .assert_success();
}

/// A `PATH` directory holding the fake `conntrack` plus, for each of `tools`, a wrapper
/// that logs `<tool> <args>` to `tools.log` and runs the real tool. Tools not listed are
/// absent from that `PATH`.
fn logging_path(tools: &[&str]) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("tools.log");
    write_script(dir.path(), "conntrack", "exit 0");
    for tool in tools {
        let real = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
            .iter()
            .map(|d| std::path::Path::new(d).join(tool))
            .find(|p| p.exists())
            .unwrap();
        write_script(
            dir.path(),
            tool,
            &format!(
                "echo \"{tool} $*\" >> '{}'\nexec {} \"$@\"",
                log.display(),
                real.display()
            ),
        );
    }
    let p = dir.path().display().to_string();
    (dir, p)
}

fn tools_log(dir: &tempfile::TempDir) -> String {
    std::fs::read_to_string(dir.path().join("tools.log")).unwrap_or_default()
}

#[test]
fn del_skips_absent_tools() {
    let Some(mut t) = Topo::root() else { return };
    let s = t.container(2);
    let input = conf("1.0.0", Some("iptables"), MAPPINGS, 2);
    t.portmap("ADD", "ctrA", t.ns(s), &input).assert_success();
    let v6 = || t.env.host.exec_ok("ip6tables", &["-t", "nat", "-S"]);
    assert!(t.nat().contains("CNI-DN-") && v6().contains("CNI-DN-"));
    let bare = r#"{"cniVersion":"1.0.0","name":"pmnet","type":"portmap"}"#;
    let del = |path: &str| {
        let call = t.call("DEL", "ctrA", t.ns(s), bare).env("PATH", path);
        t.env.run("portmap", &call)
    };

    // Only the IPv4 iptables tools: no nft, no ip6tables-*. DEL succeeds, removes the
    // IPv4 rules and runs nothing else.
    let (dir, path) = logging_path(&["iptables-save", "iptables-restore"]);
    del(&path).assert_success();
    assert!(!t.nat().contains("CNI-DN-"), "{}", t.nat());
    assert!(v6().contains("CNI-DN-"), "ip6tables absent: IPv6 untouched");
    let log = tools_log(&dir);
    assert!(!log.contains("nft") && !log.contains("ip6tables"), "{log}");
    assert_eq!(log.matches("iptables-save").count(), 1, "{log}");

    // Every tool: IPv6 rules go too; nft is not run, its tables do not exist (asked
    // natively; never `nft list tables`, which fetches the whole ruleset).
    let (dir, path) = logging_path(&[
        "iptables-save",
        "iptables-restore",
        "ip6tables-save",
        "ip6tables-restore",
        "nft",
    ]);
    del(&path).assert_success();
    assert!(!v6().contains("CNI-DN-"), "{}", v6());
    let log = tools_log(&dir);
    assert_eq!(log.matches("nft ").count(), 0, "{log}");

    // DEL still removes nftables rules (the other backend's), in one native
    // transaction: no nft process.
    let nft_input = conf("1.0.0", Some("nftables"), MAPPINGS, 2);
    t.portmap("ADD", "ctrB", t.ns(s), &nft_input)
        .assert_success();
    assert!(t.nft().contains("ctrB"));
    let call = t.call("DEL", "ctrB", t.ns(s), bare).env("PATH", &path);
    std::fs::remove_file(dir.path().join("tools.log")).ok();
    t.env.run("portmap", &call).assert_success();
    assert!(!t.nft().contains("ctrB"), "{}", t.nft());
    let log = tools_log(&dir);
    assert_eq!(log.matches("nft").count(), 0, "{log}");
    // Idempotent.
    t.env.run("portmap", &call).assert_success();
}

#[test]
fn add_fast_path_for_new_containers_and_fallback_otherwise() {
    let Some(mut t) = Topo::root() else { return };
    let s = t.container(2);
    let (dir, path) = logging_path(&[
        "iptables-save",
        "iptables-restore",
        "ip6tables-save",
        "ip6tables-restore",
    ]);
    let add = |cid: &str, ip_last: u8, mappings: &str| {
        std::fs::remove_file(dir.path().join("tools.log")).ok();
        let input = conf("1.0.0", Some("iptables"), mappings, ip_last);
        let call = t.call("ADD", cid, t.ns(s), &input).env("PATH", &path);
        t.env.run("portmap", &call).assert_success();
        tools_log(&dir)
    };
    // First container: the shared chains are missing, the fast restore is rejected and
    // the table is read (fallback).
    let log = add("ctrA", 2, MAPPINGS);
    assert_eq!(log.matches("iptables-save").count(), 1, "{log}");
    // A new container: one restore per family, no table read; plus the localnet guard's
    // check (one IPv4 restore of `-C`): the logging wrappers hide that the tools are
    // iptables-nft, so the guard cannot be confirmed natively.
    let log = add("ctrB", 3, MAPPINGS);
    assert!(!log.contains("-save"), "{log}");
    assert_eq!(log.matches("-restore").count(), 3, "{log}");
    let before = t.nat();
    // Re-ADD (same or other mappings): the chain exists, fallback, no duplicate entry.
    let log = add("ctrB", 3, MAPPINGS);
    assert!(log.contains("iptables-save"), "{log}");
    assert_eq!(t.nat(), before, "re-ADD is a no-op");
    add(
        "ctrB",
        3,
        r#"[{"hostPort":7070,"containerPort":70,"protocol":"tcp"}]"#,
    );
    let nat = t.nat();
    let ctr_b_entries = nat
        .lines()
        .filter(|l| l.starts_with("-A CNI-HOSTPORT-DNAT") && l.contains(r#"id: \"ctrB\""#))
        .count();
    assert_eq!(ctr_b_entries, 1, "old entries of ctrB replaced: {nat}");
    assert_eq!(nat.matches("--dports 7070").count(), 1, "{nat}");
    // A missing hook rule makes the fast path fall back, and the full path restores it.
    let hook = [
        "-m",
        "addrtype",
        "--dst-type",
        "LOCAL",
        "-j",
        "CNI-HOSTPORT-DNAT",
    ];
    let mut del = vec!["-t", "nat", "-D", "OUTPUT"];
    del.extend(hook);
    t.env.host.exec_ok("iptables", &del);
    let log = add("ctrC", 4, MAPPINGS);
    assert!(log.contains("iptables-save"), "{log}");
    let nat = t.nat();
    assert_eq!(
        nat.matches("-A OUTPUT -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT")
            .count(),
        1,
        "{nat}"
    );
    // Everything goes away with DEL.
    let bare = r#"{"cniVersion":"1.0.0","name":"pmnet","type":"portmap"}"#;
    for cid in ["ctrA", "ctrB", "ctrC"] {
        t.portmap("DEL", cid, t.ns(s), bare).assert_success();
    }
    assert!(!t.nat().contains("CNI-DN-"), "{}", t.nat());
}

#[test]
fn fast_path_listing_matches_reference_for_several_containers() {
    let Some(both) = Both::new() else { return };
    for (cid, last) in [("ctrA", 2), ("ctrB", 3), ("ctrC", 4)] {
        both.add(cid, last);
    }
    both.assert_same_listing();
}

/// A `PATH` directory with the fake `conntrack` and an `nft` wrapper that logs
/// `nft <args>` to `nft.log`, appends what it is given on stdin for `-f -` to
/// `nft.stdin`, and runs the real nft.
fn nft_recorder() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let real = ["/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft", "/bin/nft"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap();
    for (name, script) in [
        ("conntrack", "exit 0".to_owned()),
        (
            "nft",
            format!(
                "echo \"nft $*\" >> '{d}/nft.log'\ncase \"$*\" in\n*'-f -'*) tee -a '{d}/nft.stdin' | exec {real} \"$@\" ;;\n*) exec {real} \"$@\" ;;\nesac"
            ),
        ),
    ] {
        write_script(dir.path(), name, &script);
    }
    let p = format!("{d}:{}", std::env::var("PATH").unwrap_or_default());
    (dir, p)
}

/// What the recorder saw since the last call (then forgotten): (`nft.log`, `nft.stdin`).
fn take_recorded(dir: &tempfile::TempDir) -> (String, String) {
    let read = |f: &str| {
        let p = dir.path().join(f);
        let s = std::fs::read_to_string(&p).unwrap_or_default();
        std::fs::remove_file(&p).ok();
        s
    };
    (read("nft.log"), read("nft.stdin"))
}

const V4_CONDITION: &str = "ip saddr != 10.99.0.4";
const V6_CONDITION: &str = "ip6 saddr != fd00:dead::1";

fn conf_with_conditions(mappings: &str) -> String {
    let c = conf("1.0.0", Some("nftables"), mappings, 2);
    let words = |s: &str| serde_json::to_string(&s.split(' ').collect::<Vec<_>>()).unwrap();
    c.replacen(
        r#""backend":"nftables","#,
        &format!(
            r#""backend":"nftables","conditionsV4":{},"conditionsV6":{},"#,
            words(V4_CONDITION),
            words(V6_CONDITION)
        ),
        1,
    )
}

/// The listing of the JSON path (no conditions) with the conditions put where the
/// conditions path puts them: before the local destination check of each family.
fn plus_conditions(json_listing: &str) -> String {
    let hook = "fib daddr type local jump hostports_all";
    let (v4, v6) = json_listing.split_at(json_listing.find("table ip6 cni_hostport").unwrap());
    format!(
        "{}{}",
        v4.replace(hook, &format!("{V4_CONDITION} {hook}")),
        v6.replace(hook, &format!("{V6_CONDITION} {hook}"))
    )
}

/// With `conditionsV4/V6` the nftables ADD is ONE nft transaction (one `nft -f -` of the
/// whole ADD as text, no dry run, no second transaction), the ruleset lists exactly as
/// the JSON path's plus the conditions, the conditions take effect, traffic flows, and
/// a re-ADD replaces the container's rules, still in one transaction.
#[test]
fn nft_conditions_add_is_one_transaction() {
    let Some(mut t) = Topo::root() else { return };
    let [server, client, excluded] = t.containers([2, 3, 4]);
    serve(t.ns(server), "A");
    // The same topology for the JSON path, without conditions.
    let mut j = Topo::new();
    let j_server = j.container(2);
    let (dir, path) = nft_recorder();
    let add = |mappings: &str| {
        let input = conf_with_conditions(mappings);
        let call = t
            .call("ADD", "ctrA", t.ns(server), &input)
            .env("PATH", &path);
        t.env.run("portmap", &call).assert_success();
        j.portmap(
            "ADD",
            "ctrA",
            j.ns(j_server),
            &conf("1.0.0", Some("nftables"), mappings, 2),
        )
        .assert_success();
        take_recorded(&dir)
    };

    let (log, script) = add(MAPPINGS);
    // One transaction: no `nft -c`, no JSON batch, and no table read (the tables do not
    // exist yet, which is asked natively).
    assert_eq!(log, "nft -f -\n", "{script}");
    // ... holding the whole ADD of both families, with the conditions.
    for part in [
        "add table ip cni_hostport { comment \"CNI portmap plugin\"; }\n",
        "add table ip6 cni_hostport { comment \"CNI portmap plugin\"; }\n",
        "add chain ip cni_hostport prerouting { type nat hook prerouting priority -100; policy accept; }\n",
        "flush chain ip cni_hostport output\n",
        &format!(
            "add rule ip cni_hostport prerouting {V4_CONDITION} fib daddr type \"local\" jump hostports_all\n"
        ),
        &format!(
            "add rule ip6 cni_hostport output {V6_CONDITION} fib daddr type \"local\" jump hostports_all\n"
        ),
        "add rule ip cni_hostport hostports tcp dport 8080 dnat to 10.99.0.2:80 comment \"ctrA\"\n",
        "add rule ip6 cni_hostport hostports tcp dport 8086 dnat to [fd00:99::2]:80 comment \"ctrA\"\n",
        "add rule ip cni_hostport masquerading ip saddr 127.0.0.1 ip daddr 10.99.0.2 masquerade comment \"ctrA\"\n",
    ] {
        assert!(script.contains(part), "missing {part:?} in\n{script}");
    }
    let listing = t.nft();
    assert_eq!(listing, plus_conditions(&j.nft()));
    assert!(
        listing.contains(&format!(
            "{V4_CONDITION} fib daddr type local jump hostports_all"
        )),
        "{listing}"
    );

    // Traffic flows, and the conditions are in force (10.99.0.4 is excluded).
    let host = &t.env.host;
    assert_eq!(tcp_get(t.ns(client), "10.99.0.1:8080").unwrap(), "A");
    assert_eq!(
        udp_ask(t.ns(client), "0.0.0.0:0", "10.99.0.1:8053").unwrap(),
        "A"
    );
    assert_eq!(tcp_get(host, "127.0.0.1:8080").unwrap(), "A");
    assert_eq!(tcp_get(host, "[fd00:99::1]:8086").unwrap(), "A");
    assert_eq!(
        tcp_get(t.ns(server), "10.99.0.1:8080").unwrap(),
        "A",
        "hairpin"
    );
    assert!(
        tcp_get(t.ns(excluded), "10.99.0.1:8080").is_err(),
        "the condition excludes 10.99.0.4"
    );
    t.portmap(
        "CHECK",
        "ctrA",
        t.ns(server),
        &conf_with_conditions(MAPPINGS),
    )
    .assert_success();

    // Re-ADD with other mappings: the old rules are deleted in the same transaction.
    let re = r#"[{"hostPort":7070,"containerPort":80,"protocol":"tcp"}]"#;
    let (log, script) = add(re);
    // Both tables exist now: each is read natively, then one nft text transaction.
    assert_eq!(log, "nft -f -\n", "{script}");
    assert!(!log.contains("-c") && !log.contains("-j -f"), "{log}");
    assert!(
        script.contains("delete rule ip cni_hostport hostports handle "),
        "{script}"
    );
    let listing = t.nft();
    assert_eq!(listing, plus_conditions(&j.nft()));
    assert!(
        !listing.contains("8080") && listing.contains("7070"),
        "{listing}"
    );
    assert_eq!(
        listing.matches("\"ctrA\"").count(),
        5,
        "no stale rule: {listing}"
    );
    assert!(
        tcp_get(t.ns(client), "10.99.0.1:8080").is_err(),
        "stale mapping"
    );
    assert_eq!(tcp_get(t.ns(client), "10.99.0.1:7070").unwrap(), "A");

    let bare = r#"{"cniVersion":"1.0.0","name":"pmnet","type":"portmap"}"#;
    t.portmap("DEL", "ctrA", t.ns(server), bare)
        .assert_success();
    assert!(!t.nft().contains("\"ctrA\""), "{}", t.nft());
    assert!(tcp_get(t.ns(client), "10.99.0.1:7070").is_err());
}
