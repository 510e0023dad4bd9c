//! DEL without reading netfilter state: with `runtimeConfig.portMappings` and
//! `prevResult` (what runtimes pass on DEL) portmap and bridge remove a container's
//! iptables rules with one `iptables-restore` each and nothing else, tables that do not
//! exist (nftables `cni_hostport` / `cni_plugins_masquerade`, an `ip6 nat` never
//! created) cost no process, and the ruleset left is exactly the one the full
//! read-compare-write path leaves, also for containers the reference plugins created and
//! when the fast path has to fall back.
//!
//! Every run of our plugins gets a `PATH` whose first directory holds recording
//! wrappers for iptables-save/-restore, ip6tables-save/-restore and nft: symlinks to
//! one script (named like the nf_tables multi-call binary, as the real tools resolve)
//! that appends `<tool> <args>` to a log and runs the real tool.

#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    missing_docs,
    reason = "tests"
)]

use cni_testsupport::{Netns, PluginOutput, node, require_root};
use node::{Node, Side, require_reference};
use serde_json::{Value, json};

const TOOLS: [&str; 5] = [
    "iptables-save",
    "iptables-restore",
    "ip6tables-save",
    "ip6tables-restore",
    "nft",
];

/// The recording wrappers (see the module documentation).
struct Recorder {
    dir: tempfile::TempDir,
}

impl Recorder {
    /// Wrappers of the installed tools (the nf_tables variant on this machine).
    fn new() -> Recorder {
        Recorder::with("xtables-nft-recorder", "real=$tool")
    }

    /// Wrappers running the legacy iptables tools (`iptables-legacy-save`, ...), resolving
    /// to a name without `nft` as the legacy multi-call binary does.
    fn legacy() -> Recorder {
        Recorder::with(
            "xtables-legacy-recorder",
            "case $tool in *-*) real=\"${tool%%-*}-legacy-${tool#*-}\" ;; *) real=$tool ;; esac",
        )
    }

    fn with(name: &str, pick: &str) -> Recorder {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("tools.log");
        let script = cni_testsupport::write_script(
            dir.path(),
            name,
            &format!(
                "tool=$(basename \"$0\")\n{pick}\necho \"$tool $*\" >> '{}'\n\
                 for d in /usr/sbin /sbin /usr/bin /bin; do\n\
                 [ -x \"$d/$real\" ] && exec \"$d/$real\" \"$@\"\ndone\nexit 127",
                log.display()
            ),
        );
        for tool in TOOLS {
            std::os::unix::fs::symlink(&script, dir.path().join(tool)).unwrap();
        }
        Recorder { dir }
    }

    fn path(&self) -> String {
        format!(
            "{}:{}",
            self.dir.path().display(),
            std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into())
        )
    }

    /// The execs recorded since the last call (then forgotten).
    fn take(&self) -> String {
        let p = self.dir.path().join("tools.log");
        let s = std::fs::read_to_string(&p).unwrap_or_default();
        std::fs::remove_file(&p).ok();
        s
    }
}

const MAPPINGS: &str = r#"[{"hostPort":8080,"containerPort":80,"protocol":"tcp"},
    {"hostPort":8080,"containerPort":80,"protocol":"udp"}]"#;

/// A chain attachment on a node: bridge (ipMasq) + host-local, then portmap.
struct Chain<'a> {
    node: &'a Node,
    bridge: Value,
    backend: Option<&'a str>,
}

impl<'a> Chain<'a> {
    /// bridge (gateway, masquerade with `backend`, host-local over `subnets`) then portmap.
    fn masq(node: &'a Node, subnets: &[&str], backend: Option<&'a str>) -> Self {
        let mut extra = json!({"isGateway": true, "ipMasq": true});
        if let Some(b) = backend {
            extra["ipMasqBackend"] = json!(b);
        }
        Chain {
            bridge: node.bridge_conf("1.0.0", subnets, extra),
            node,
            backend,
        }
    }

    fn portmap_conf(&self, prev: Option<&Value>, mappings: bool) -> Value {
        let mut c = json!({
            "cniVersion": "1.0.0",
            "name": self.node.name,
            "type": "portmap",
        });
        if let Some(b) = self.backend {
            c["backend"] = json!(b);
        }
        if mappings {
            c["runtimeConfig"] =
                json!({"portMappings": serde_json::from_str::<Value>(MAPPINGS).unwrap()});
        }
        if let Some(p) = prev {
            c["prevResult"] = p.clone();
        }
        c
    }

    fn run(
        &self,
        side: Side,
        plugin: &str,
        cmd: &str,
        conf: &Value,
        ctr: &Netns,
        id: &str,
        rec: Option<&Recorder>,
    ) -> PluginOutput {
        let mut call = self.node.call(side, cmd, conf, Some(ctr), id);
        if let Some(r) = rec {
            call = call.env("PATH", &r.path());
        }
        let out = self.node.run(side, plugin, &call);
        out.assert_success();
        out
    }

    /// ADD of the chain by `side`; returns the final result.
    fn add(&self, side: Side, ctr: &Netns, id: &str) -> Value {
        let br = self
            .run(side, "bridge", "ADD", &self.bridge, ctr, id, None)
            .json();
        self.run(
            side,
            "portmap",
            "ADD",
            &self.portmap_conf(Some(&br), true),
            ctr,
            id,
            None,
        )
        .json()
    }

    /// DEL of the chain by our plugins, as a runtime does it (reverse order, the
    /// configuration and the cached result as `prevResult`) when `full`, else with
    /// neither mappings nor `prevResult` (the read-compare-write path). Returns the
    /// tools run by portmap and by bridge.
    fn del(&self, ctr: &Netns, id: &str, prev: &Value, full: bool, rec: &Recorder) -> [String; 2] {
        rec.take();
        let pm = self.portmap_conf(full.then_some(prev), full);
        self.run(Side::Ours, "portmap", "DEL", &pm, ctr, id, Some(rec));
        let portmap = rec.take();
        let mut br = self.bridge.clone();
        if full {
            br["prevResult"] = prev.clone();
        }
        self.run(Side::Ours, "bridge", "DEL", &br, ctr, id, Some(rec));
        [portmap, rec.take()]
    }
}

fn nft_tables(node: &Node) -> String {
    node.env.host.exec_ok("nft", &["list", "tables"])
}

/// With IPv4 only, the iptables backend and the nf_tables variant of the tools, each
/// plugin's DEL removes the container's chains and the jumps to them natively: no
/// process at all (no restore, no save, no ip6tables for an absent `ip6 nat` table);
/// what is left is exactly what was there before the container.
#[test]
fn del_runs_no_tool_with_the_nf_tables_variant() {
    let Some(node) = Node::root() else { return };
    let chain = Chain::masq(&node, &["10.65.0.0/24"], None);
    let rec = Recorder::new();
    let (a, b) = (node.env.add_container(), node.env.add_container());
    chain.add(Side::Ours, &a, "ctr-a");
    let before = node.nat();
    let tables = nft_tables(&node);
    assert!(
        !tables.contains("cni_hostport") && !tables.contains("ip6 nat"),
        "{tables}"
    );
    let res = chain.add(Side::Ours, &b, "ctr-b");
    assert_ne!(node.nat(), before);

    let [portmap, bridge] = chain.del(&b, "ctr-b", &res, true, &rec);
    assert_eq!(portmap, "", "portmap DEL");
    assert_eq!(bridge, "", "bridge DEL");
    assert_eq!(node.nat(), before, "exactly ctr-b's rules removed");

    // A repeated DEL (rules already gone): the native look at the container's chains
    // finds none, nothing is run or changed.
    let [portmap, bridge] = chain.del(&b, "ctr-b", &res, true, &rec);
    assert_eq!([portmap.as_str(), bridge.as_str()], ["", ""]);
    assert_eq!(node.nat(), before);
}

/// DEL still removes nftables rules when their tables exist (natively: no process); an
/// iptables `nat` table that does not exist costs no process either.
#[test]
fn del_lists_only_existing_nft_tables_and_removes_their_rules() {
    let Some(node) = Node::root() else { return };
    let chain = Chain::masq(&node, &["10.66.0.0/24"], Some("nftables"));
    let rec = Recorder::new();
    let a = node.env.add_container();
    let res = chain.add(Side::Ours, &a, "ctr-n");
    let ruleset = node.nft();
    assert!(ruleset.contains("\"ctr-n\"") && ruleset.contains("cni_plugins_masquerade"));
    assert!(!ruleset.contains("table ip nat"), "{ruleset}");

    for full in [true, false] {
        let [portmap, bridge] = chain.del(&a, "ctr-n", &res, full, &rec);
        if full {
            // nf_tables is read and written natively: no process at all, and no
            // iptables nat table to look at.
            assert_eq!(portmap, "", "IPv4 only: no iptables nat table");
            assert_eq!(bridge, "");
        } else {
            // Idempotent: the tables exist, nothing of the container is left.
            assert!(!portmap.contains("-f -") && !bridge.contains("-f -"));
            assert!(!portmap.contains("iptables") && !bridge.contains("iptables"));
        }
        let ruleset = node.nft();
        assert!(!ruleset.contains("\"ctr-n\""), "{ruleset}");
        assert!(!ruleset.contains("10.66.0.2"), "{ruleset}");
    }
}

/// DEL as a runtime does it leaves exactly the ruleset DEL without mappings or
/// `prevResult` leaves: two nodes run the same attachments (dual-stack, ours and the
/// reference's, on one network), then delete them in the same order, node X as a
/// runtime does, node Y without mappings or `prevResult`, comparing `iptables-save` and
/// `ip6tables-save -t nat` after every step. Both remove the chains natively (no
/// process). One container has an extra rule jumping to its chain, so the kernel
/// refuses the native removal, node X's fast restore is rejected as well, and both fall
/// back to reading the table, still with the same result.
#[test]
fn fast_del_leaves_the_same_ruleset_as_the_full_path() {
    if !require_root() || !require_reference() {
        return;
    }
    let name = cni_testsupport::unique_name("fp");
    let (x, y) = (Node::named(&name), Node::named(&name));
    let chains: Vec<Chain<'_>> = [&x, &y]
        .into_iter()
        .map(|n| Chain::masq(n, &["10.67.0.0/24", "fd00:67::/64"], None))
        .collect();
    let rec = Recorder::new();
    let who = [
        ("c1", Side::Ours),
        ("c2", Side::Ref),
        ("c3", Side::Ours),
        ("c4", Side::Ref),
    ];
    let mut attached = Vec::new();
    for (id, side) in who {
        let mut per_node = Vec::new();
        for chain in &chains {
            let ctr = chain.node.env.add_container();
            let res = chain.add(side, &ctr, id);
            per_node.push((ctr, res));
        }
        attached.push((id, per_node));
    }
    assert_eq!(x.nat(), y.nat(), "same attachments");
    let pm_chain = |id: &str| {
        let nat = x.nat();
        let line = nat
            .lines()
            .find(|l| l.starts_with("-A CNI-HOSTPORT-DNAT") && l.contains(&format!("\\\"{id}\\\"")))
            .unwrap()
            .to_owned();
        line.rsplit(' ').next().unwrap().to_owned()
    };
    // c1 gets an extra jump to its portmap chain (in both nodes).
    let extra = pm_chain("c1");
    for n in [&x, &y] {
        n.env.host.exec_ok(
            "iptables",
            &["-t", "nat", "-A", "OUTPUT", "-p", "sctp", "-j", &extra],
        );
    }

    for id in ["c3", "c2", "c1", "c4"] {
        let (_, per_node) = attached.iter().find(|(i, _)| *i == id).unwrap();
        let [(cx, rx), (cy, ry)] = &per_node[..] else {
            unreachable!()
        };
        let fast = chains[0].del(cx, id, rx, true, &rec);
        let full = chains[1].del(cy, id, ry, false, &rec);
        let (nx, ny) = (x.nat(), y.nat());
        assert_eq!(nx, ny, "after DEL of {id}");
        for line in nx.lines() {
            assert!(
                !line.contains(&format!("\\\"{id}\\\"")),
                "{id} left: {line}"
            );
        }
        // Without mappings or prevResult: the container's chains go natively, nothing
        // is read, unless something else still jumps to one (c1's portmap chain).
        for (i, log) in full.iter().enumerate() {
            let reads = log.contains("iptables-save -t nat");
            assert_eq!(reads, id == "c1" && i == 0, "{id}: full path: {log}");
        }
        if id == "c1" {
            // The kernel refuses portmap's native removal (the extra jump), the fast
            // restore is rejected too, then the table is read and every jump removed,
            // the extra one too.
            assert!(
                fast[0].starts_with("iptables-restore -w 10 --noflush\niptables-save -t nat\n"),
                "{}",
                fast[0]
            );
            assert!(!nx.contains(&extra), "{nx}");
        } else {
            for log in fast.iter().chain(&full) {
                assert_eq!(log, "", "{id}: native removal, no process");
            }
        }
    }
    for n in [&x, &y] {
        for line in n.nat().lines() {
            let per_container = line.starts_with(":CNI-") && !line.starts_with(":CNI-HOSTPORT-");
            assert!(!per_container, "{line}");
        }
    }
}

/// With the legacy iptables tools nothing is skipped for an absent nf_tables `nat`
/// table (legacy rules are not in nf_tables), and the fast DEL works the same way.
#[test]
fn legacy_iptables_reads_every_family_and_deletes_fast() {
    let Some(node) = Node::root() else { return };
    if !std::path::Path::new("/usr/sbin/iptables-legacy-restore").exists() {
        println!("skipped: no iptables-legacy");
        return;
    }
    let rec = Recorder::legacy();
    let chain = Chain {
        bridge: json!(null),
        node: &node,
        backend: Some("iptables"),
    };
    let ctr = node.env.add_container();
    let prev = |last: u8| {
        json!({"cniVersion": "1.0.0",
            "interfaces": [{"name": "eth0", "sandbox": ctr.path()}],
            "ips": [{"interface": 0, "address": format!("10.69.0.{last}/24")}]})
    };
    let legacy_nat = || node::save(&node.env.host, "iptables-legacy-save");
    let (pa, pb) = (prev(2), prev(3));
    for (id, p) in [("ctr-a", &pa), ("ctr-b", &pb)] {
        chain.run(
            Side::Ours,
            "portmap",
            "ADD",
            &chain.portmap_conf(Some(p), true),
            &ctr,
            id,
            Some(&rec),
        );
    }
    let with_both = legacy_nat();
    assert!(
        with_both.contains("ctr-b") && with_both.contains("ctr-a"),
        "{with_both}"
    );
    assert!(
        !nft_tables(&node).contains("ip nat"),
        "legacy rules are not in nf_tables"
    );
    rec.take();
    chain.run(
        Side::Ours,
        "portmap",
        "DEL",
        &chain.portmap_conf(Some(&pb), true),
        &ctr,
        "ctr-b",
        Some(&rec),
    );
    assert_eq!(
        rec.take(),
        "iptables-restore -w 10 --noflush\nip6tables-save -t nat\n",
        "IPv4 fast; IPv6 (no address known) read as before, not skipped"
    );
    let after = legacy_nat();
    assert!(
        !after.contains("ctr-b") && after.contains("ctr-a"),
        "{after}"
    );
    // Without mappings or prevResult: the full path, which finds ctr-a's rules.
    chain.run(
        Side::Ours,
        "portmap",
        "DEL",
        &chain.portmap_conf(None, false),
        &ctr,
        "ctr-a",
        Some(&rec),
    );
    assert!(rec.take().contains("iptables-save -t nat"));
    assert!(!legacy_nat().contains("CNI-DN-"), "{}", legacy_nat());
}

/// The UDP conntrack flush asks the kernel for nothing in a namespace that has no
/// conntrack entry (the dump walks the whole kernel table); with entries the flush
/// itself is covered by `portmap.rs` (`udp_flow_retargeted_after_delete`).
#[test]
fn no_conntrack_dump_in_a_namespace_without_entries() {
    let Some(node) = Node::root() else { return };
    let ctr = node.env.add_container();
    let prev = json!({"cniVersion": "1.0.0",
        "interfaces": [{"name": "eth0", "sandbox": ctr.path()}],
        "ips": [{"interface": 0, "address": "10.68.0.2/24"}]});
    let chain = Chain {
        bridge: json!(null),
        node: &node,
        backend: None,
    };
    for cmd in ["ADD", "DEL"] {
        let conf = chain.portmap_conf(Some(&prev), true);
        let call = node
            .call(Side::Ours, cmd, &conf, Some(&ctr), "ctr-ct")
            .env("CNI_LOG_LEVEL", "debug");
        let out = node.run(Side::Ours, "portmap", &call);
        out.assert_success();
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(
            log.contains("no conntrack entry in this namespace"),
            "{cmd}: {log}"
        );
        assert!(
            !log.contains("conntrack table for udp port"),
            "{cmd}: {log}"
        );
    }
    assert_eq!(
        node.env
            .host
            .exec_ok("cat", &["/proc/sys/net/netfilter/nf_conntrack_count"])
            .trim(),
        "0"
    );
}
