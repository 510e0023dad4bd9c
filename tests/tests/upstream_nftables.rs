//! Golden nftables state of the current upstream release, containernetworking/plugins
//! v1.9.1: bridge `ipMasq` with `ipMasqBackend: "nftables"`, bridge `macspoofchk` (family
//! `bridge` chains) and portmap `backend: "nftables"` (with and without
//! `conditionsV4`/`conditionsV6`) must leave exactly the `nft list ruleset` upstream leaves
//! after every ADD and DEL, so that a node can switch between the two in place.
//!
//! CI cannot fetch or build upstream, so what upstream does is recorded as fixtures in
//! `tests/fixtures/upstream-v1.9.1/<scenario>/`: for every step `NN-<add|del>-<id>` the
//! listing after it (`.nft`) and the exact plugin calls of the step (`.calls.json`:
//! plugin, command, container id, ifname, stdin and result). Values that differ per run
//! only are replaced by placeholders: the `dataDir` (`<dataDir>`), netns paths
//! (`<netns-a>`), host veth names (`<veth-a>`), the container's MAC (`<mac-a>`) and the
//! other MACs of results (`<mac>`). Handles are not listed (`nft list` without `-a`);
//! container ids, network names, subnets (so addresses, from a fresh host-local
//! `dataDir`) are fixed. `scripts/record-upstream-fixtures.sh` records them again
//! (`UPSTREAM_PLUGINS=<dir> UPSTREAM_RECORD=1`, test `record_fixtures`).
//!
//! What runs where:
//! * always (CI): every scenario with our plugins, equal to the fixture after every step;
//!   on recorded upstream state (loaded with `nft -f` into a fresh namespace, with the
//!   recorded `prevResult`): every recorded DEL replayed by ours leaves exactly what
//!   upstream's own DEL left, our GC of one container leaves what upstream's DEL of it
//!   left, and our portmap CHECK passes after the container's ADD and fails before it.
//! * with `UPSTREAM_PLUGINS=<dir of upstream binaries>` only (otherwise skipped with the
//!   reason printed): the fixtures are still what upstream writes; upstream ADD, then our
//!   CHECK, GC and DEL; our ADD, then upstream CHECK and DEL; a mixed node (one container
//!   each, each CHECKing and DELeting the other's).
//!
//! Filtered out of the comparisons:
//! * our portmap's localnet guard table `ip cni_localnet_guard` (README "Security",
//!   `crates/netfilter/src/localnet.rs`), an intended difference: upstream lacks it. It is
//!   removed from our listings only after checking that it holds exactly the documented
//!   rule;
//! * empty `ip nat` / `ip6 nat` tables, which the host's iptables-nft leaves when
//!   upstream's DEL runs iptables (see [`comparable`]).
//!
//! Everything else is compared verbatim: table and chain comments, and the order of
//! tables (creation order).

#![allow(
    clippy::unwrap_used,
    reason = "test helpers panic with the failing value"
)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use cni_testsupport::node::Node;
use cni_testsupport::{Netns, PluginCall, PluginOutput, bin_dir, plugin_bin, require_root};
use serde_json::{Value, json};

/// Where the fixtures live.
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/upstream-v1.9.1");

/// Container ids of the scenarios (fixed, so chain names and comments are comparable);
/// each test has its own host namespace, so the same ids in parallel tests do not meet.
const IDS: [&str; 2] = ["golden-a", "golden-b"];

/// Placeholder letter of container `i`.
const LETTERS: [&str; 2] = ["a", "b"];

/// The listing of our localnet guard table, the one intended difference (see the module
/// documentation).
const GUARD_TABLE: &str = "table ip cni_localnet_guard {
\tchain input {
\t\ttype filter hook input priority filter; policy accept;
\t\tiifname != \"lo\" ip daddr 127.0.0.0/8 ct state ! established,related ct status ! dnat drop comment \"CNI portfwd localnet guard\"
\t}
}
";

/// Which implementation runs a call.
#[derive(Debug, Clone)]
enum Impl {
    /// Our plugins (`target/<profile>`).
    Ours,
    /// Upstream's binaries in this directory.
    Upstream(PathBuf),
}

impl Impl {
    fn bin(&self, plugin: &str) -> PathBuf {
        match self {
            Impl::Ours => plugin_bin(plugin),
            Impl::Upstream(d) => d.join(plugin),
        }
    }

    fn cni_path(&self) -> PathBuf {
        match self {
            Impl::Ours => bin_dir(),
            Impl::Upstream(d) => d.clone(),
        }
    }

    fn label(&self) -> &'static str {
        match self {
            Impl::Ours => "ours",
            Impl::Upstream(_) => "upstream v1.9.1",
        }
    }
}

/// `$UPSTREAM_PLUGINS` when set (it must hold bridge, host-local and portmap).
fn upstream_dir() -> Option<PathBuf> {
    let d = PathBuf::from(std::env::var_os("UPSTREAM_PLUGINS")?);
    for p in ["bridge", "host-local", "portmap"] {
        assert!(
            d.join(p).is_file(),
            "UPSTREAM_PLUGINS={} has no {p}",
            d.display()
        );
    }
    Some(d)
}

/// Upstream's binaries, or `None` with the reason printed (CI has no upstream build).
fn upstream_or_skip() -> Option<Impl> {
    if !require_root() {
        return None;
    }
    let d = upstream_dir();
    if d.is_none() {
        eprintln!(
            "skipped: needs upstream v1.9.1 binaries (set UPSTREAM_PLUGINS=<dir> with bridge, host-local, portmap)"
        );
    }
    d.map(Impl::Upstream)
}

/// One scenario: a bridge network (optionally chained with portmap) and the ADDs and DELs
/// of its containers, in order.
struct Scenario {
    /// Fixture directory and part of the network name.
    name: &'static str,
    /// One host-local range set per subnet.
    subnets: &'static [&'static str],
    /// Bridge keys besides name, type, bridge and ipam.
    bridge: Value,
    /// Portmap keys besides cniVersion, name, type and capabilities; `None`: no portmap.
    portmap: Option<Value>,
    /// Port mappings (`runtimeConfig.portMappings`) of each container.
    mappings: [Value; 2],
    /// (command, container index).
    steps: &'static [(&'static str, usize)],
}

impl Scenario {
    fn network(&self) -> String {
        format!("golden-{}", self.name)
    }

    fn dir(&self) -> PathBuf {
        Path::new(FIXTURES).join(self.name)
    }

    /// `NN-<command>-<id>` of step `k`.
    fn stem(&self, k: usize) -> String {
        let (cmd, i) = self.steps[k];
        format!("{:02}-{}-{}", k + 1, cmd.to_lowercase(), IDS[i])
    }

    fn containers(&self) -> usize {
        self.steps.iter().map(|&(_, i)| i + 1).max().unwrap_or(0)
    }
}

const TWO_CONTAINERS: &[(&str, usize)] = &[("ADD", 0), ("ADD", 1), ("DEL", 0), ("DEL", 1)];

/// Dual-stack mappings: tcp and udp, one with an IPv4 `hostIP` (a), one with an IPv6
/// `hostIP` (b).
fn dual_mappings(v4_host: &str, v6_host: &str) -> [Value; 2] {
    [
        json!([
            {"hostPort": 18080, "containerPort": 80, "protocol": "tcp"},
            {"hostPort": 18053, "containerPort": 53, "protocol": "udp"},
            {"hostPort": 18081, "containerPort": 81, "protocol": "tcp", "hostIP": v4_host},
        ]),
        json!([
            {"hostPort": 18090, "containerPort": 80, "protocol": "tcp"},
            {"hostPort": 18091, "containerPort": 8080, "protocol": "tcp", "hostIP": v6_host},
        ]),
    ]
}

/// Every scenario (the subnets 10.211.x.0/24 and fd00:211:x::/64 are used by no other
/// test).
fn scenarios() -> Vec<Scenario> {
    let masq = json!({"isGateway": true, "ipMasq": true, "ipMasqBackend": "nftables"});
    vec![
        // (a) IPv4 masquerade, ADD then DEL (twice: DEL is idempotent).
        Scenario {
            name: "masq-v4",
            subnets: &["10.211.1.0/24"],
            bridge: masq.clone(),
            portmap: None,
            mappings: [json!([]), json!([])],
            steps: &[("ADD", 0), ("DEL", 0), ("DEL", 0)],
        },
        // (b) dual-stack masquerade and port mappings (snat by default), two containers.
        Scenario {
            name: "dualstack-portmap",
            subnets: &["10.211.2.0/24", "fd00:211:2::/64"],
            bridge: masq.clone(),
            portmap: Some(json!({"backend": "nftables"})),
            mappings: dual_mappings("10.211.2.1", "fd00:211:2::1"),
            steps: TWO_CONTAINERS,
        },
        // (c) portmap with nft conditions (and snat off).
        Scenario {
            name: "conditions",
            subnets: &["10.211.3.0/24", "fd00:211:3::/64"],
            bridge: json!({"isGateway": true}),
            portmap: Some(json!({
                "backend": "nftables",
                "snat": false,
                "conditionsV4": ["ip", "saddr", "!=", "10.211.3.200"],
                "conditionsV6": ["ip6", "saddr", "!=", "fd00:211:3::c8"],
            })),
            mappings: dual_mappings("10.211.3.1", "fd00:211:3::1"),
            steps: TWO_CONTAINERS,
        },
        // (d) MAC spoof check (nftables family bridge).
        Scenario {
            name: "macspoofchk",
            subnets: &["10.211.4.0/24"],
            bridge: json!({"isGateway": true, "macspoofchk": true}),
            portmap: None,
            mappings: [json!([]), json!([])],
            steps: TWO_CONTAINERS,
        },
        // Everything at once, also used by the cross-switch tests.
        Scenario {
            name: "all",
            subnets: &["10.211.5.0/24", "fd00:211:5::/64"],
            bridge: json!({
                "isGateway": true, "ipMasq": true, "ipMasqBackend": "nftables",
                "macspoofchk": true,
            }),
            portmap: Some(json!({"backend": "nftables"})),
            mappings: dual_mappings("10.211.5.1", "fd00:211:5::1"),
            steps: TWO_CONTAINERS,
        },
    ]
}

fn scenario(name: &str) -> Scenario {
    scenarios().into_iter().find(|s| s.name == name).unwrap()
}

/// One run of a scenario on a fresh node: the node, the container namespaces, the final
/// ADD result of each container and the substitutions that normalise what it lists.
struct Run<'s> {
    sc: &'s Scenario,
    node: Node,
    ctrs: Vec<Netns>,
    results: Vec<Option<Value>>,
    /// (value of this run, placeholder).
    subst: Vec<(String, String)>,
}

impl<'s> Run<'s> {
    fn new(sc: &'s Scenario) -> Self {
        let mut node = Node::named(&sc.network());
        node.bridge = "goldbr0".into();
        let ctrs: Vec<Netns> = (0..sc.containers()).map(|_| Netns::new()).collect();
        let mut subst = vec![(
            node.env.data_path().display().to_string(),
            "<dataDir>".to_string(),
        )];
        for (i, c) in ctrs.iter().enumerate() {
            subst.push((
                c.path().display().to_string(),
                format!("<netns-{}>", LETTERS[i]),
            ));
        }
        Self {
            sc,
            node,
            ctrs,
            results: vec![None; sc.containers()],
            subst,
        }
    }

    fn bridge_conf(&self) -> Value {
        self.node
            .bridge_conf("1.0.0", self.sc.subnets, self.sc.bridge.clone())
    }

    fn portmap_conf(&self, i: usize) -> Option<Value> {
        let extra = self.sc.portmap.clone()?;
        let mut c = json!({
            "cniVersion": "1.0.0",
            "name": self.sc.network(),
            "type": "portmap",
            "capabilities": {"portMappings": true},
        });
        cni_testsupport::node::merge(&mut c, extra);
        c["runtimeConfig"] = json!({"portMappings": self.sc.mappings[i]});
        Some(c)
    }

    /// The plugins of the chain with their configurations, in ADD order.
    fn chain(&self, i: usize) -> Vec<(&'static str, Value)> {
        let mut v = vec![("bridge", self.bridge_conf())];
        if let Some(p) = self.portmap_conf(i) {
            v.push(("portmap", p));
        }
        v
    }

    /// Runs one plugin call and returns its record (normalised later) and output.
    fn call(
        &self,
        imp: &Impl,
        plugin: &str,
        command: &str,
        stdin: &Value,
        i: usize,
        netns: bool,
    ) -> (Value, PluginOutput) {
        let mut call = PluginCall::new(command, serde_json::to_vec(stdin).unwrap())
            .container_id(IDS[i])
            .cni_path(vec![imp.cni_path()])
            .timeout(Duration::from_secs(30));
        if netns {
            call = call.netns(self.ctrs[i].path());
        }
        let out = call.run_in(&self.node.env.host, &imp.bin(plugin));
        assert!(
            out.success(),
            "{} {plugin} {command} of {} in scenario {}: {}",
            imp.label(),
            IDS[i],
            self.sc.name,
            out.describe()
        );
        let result = if command == "ADD" {
            out.json()
        } else {
            Value::Null
        };
        let record = json!({
            "plugin": plugin,
            "command": command,
            "containerID": IDS[i],
            "ifname": "eth0",
            "netns": if netns { json!(self.ctrs[i].path()) } else { Value::Null },
            "stdin": stdin,
            "result": result,
        });
        (record, out)
    }

    /// ADD of container `i` through the chain (`prevResult` passed on); learns the host
    /// veth name and the container MAC for the substitutions.
    fn add(&mut self, imp: &Impl, i: usize) -> Vec<Value> {
        let mut records = Vec::new();
        let mut prev: Option<Value> = None;
        for (plugin, mut conf) in self.chain(i) {
            if let Some(p) = &prev {
                conf["prevResult"] = p.clone();
            }
            let (rec, out) = self.call(imp, plugin, "ADD", &conf, i, true);
            records.push(rec);
            prev = Some(out.json());
        }
        let result = prev.unwrap();
        for itf in result["interfaces"].as_array().into_iter().flatten() {
            let name = itf["name"].as_str().unwrap_or_default();
            if name.starts_with("veth") {
                self.subst
                    .push((name.to_string(), format!("<veth-{}>", LETTERS[i])));
            }
            if itf.get("sandbox").is_some()
                && let Some(mac) = itf["mac"].as_str()
            {
                self.subst
                    .push((mac.to_string(), format!("<mac-{}>", LETTERS[i])));
            }
        }
        self.results[i] = Some(result);
        records
    }

    /// The cached result of container `i` as libcni passes it to CHECK and DEL.
    fn prev(&self, i: usize) -> Option<Value> {
        self.results[i].clone()
    }

    /// DEL of container `i` through the chain in reverse order, each plugin with the
    /// cached final result as `prevResult` (as libcni does).
    fn del(&mut self, imp: &Impl, i: usize) -> Vec<Value> {
        let mut records = Vec::new();
        let prev = self.prev(i);
        for (plugin, mut conf) in self.chain(i).into_iter().rev() {
            if let Some(p) = &prev {
                conf["prevResult"] = p.clone();
            }
            records.push(self.call(imp, plugin, "DEL", &conf, i, true).0);
        }
        records
    }

    /// CHECK of container `i` through the chain, which must succeed.
    fn check(&self, imp: &Impl, i: usize) {
        let prev = self.prev(i).expect("CHECK after ADD");
        for (plugin, mut conf) in self.chain(i) {
            conf["prevResult"] = prev.clone();
            self.call(imp, plugin, "CHECK", &conf, i, true);
        }
    }

    /// GC (spec 1.1.0) of every plugin of the chain with `cni.dev/valid-attachments` =
    /// the containers `keep`.
    fn gc(&self, imp: &Impl, keep: &[usize]) {
        let valid: Vec<Value> = keep
            .iter()
            .map(|&i| json!({"containerID": IDS[i], "ifname": "eth0"}))
            .collect();
        for (plugin, mut conf) in self.chain(keep[0]) {
            conf["cniVersion"] = json!("1.1.0");
            conf["cni.dev/valid-attachments"] = json!(valid);
            self.call(imp, plugin, "GC", &conf, keep[0], false);
        }
    }

    /// Runs step `k` of the scenario.
    fn step(&mut self, imp: &Impl, k: usize) -> Vec<Value> {
        match self.sc.steps[k] {
            ("ADD", i) => self.add(imp, i),
            ("DEL", i) => self.del(imp, i),
            other => panic!("unknown step {other:?}"),
        }
    }

    /// Replaces this run's values by their placeholders.
    fn normalise(&self, text: &str) -> String {
        // Longest first, so no value is replaced inside a longer one.
        let mut subst = self.subst.clone();
        subst.sort_by_key(|(v, _)| std::cmp::Reverse(v.len()));
        subst
            .iter()
            .fold(text.to_string(), |t, (v, p)| t.replace(v.as_str(), p))
    }

    /// The normalised `nft list ruleset` of the host namespace; our localnet guard table
    /// is checked and removed (see the module documentation).
    fn listing(&self, imp: &Impl) -> String {
        let raw = self.normalise(&self.node.nft());
        match imp {
            Impl::Ours => without_guard(&raw),
            Impl::Upstream(_) => raw,
        }
    }

    /// Asserts that the ruleset (our guard table checked and left out, see [`comparable`])
    /// is what upstream left after step `k` of the scenario.
    #[track_caller]
    fn assert_listing_is_fixture(&self, k: usize, what: &str) {
        assert_eq!(
            comparable(&self.listing(&Impl::Ours)),
            comparable(&fixture_listing(self.sc, k)),
            "{what}"
        );
    }

    /// Asserts that nothing of any container is left (see [`Node::assert_clean`]).
    #[track_caller]
    fn assert_all_clean(&self) {
        for (ctr, id) in self.ctrs.iter().zip(IDS) {
            self.node.assert_clean(Some(ctr), id);
        }
    }

    /// The calls of a step, normalised (placeholders; the random MACs of results
    /// other than the container's replaced by `<mac>`).
    fn calls_json(&self, records: &[Value]) -> Value {
        let text = self.normalise(&serde_json::to_string(records).unwrap());
        let mut v: Value = serde_json::from_str(&text).unwrap();
        scrub_macs(&mut v);
        v
    }
}

/// Replaces every interface MAC that is not already a placeholder by `<mac>`.
fn scrub_macs(v: &mut Value) {
    match v {
        Value::Object(o) => {
            if let Some(Value::Array(ifs)) = o.get_mut("interfaces") {
                for itf in ifs {
                    if itf["mac"].as_str().is_some_and(|m| !m.starts_with('<')) {
                        itf["mac"] = json!("<mac>");
                    }
                }
            }
            o.values_mut().for_each(scrub_macs);
        }
        Value::Array(a) => a.iter_mut().for_each(scrub_macs),
        _ => {}
    }
}

/// The top-level blocks (`table ... { ... }`) of a listing.
fn tables(listing: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in listing.lines() {
        cur.push_str(line);
        cur.push('\n');
        if line == "}" {
            out.push(std::mem::take(&mut cur));
        }
    }
    assert!(cur.trim().is_empty(), "unterminated table in:\n{listing}");
    out
}

/// `listing` without our localnet guard table, which must be exactly [`GUARD_TABLE`]
/// when present.
fn without_guard(listing: &str) -> String {
    tables(listing)
        .into_iter()
        .filter(|t| {
            if !t.starts_with("table ip cni_localnet_guard ") {
                return true;
            }
            assert_eq!(
                t, GUARD_TABLE,
                "our localnet guard table is not the documented one"
            );
            false
        })
        .collect()
}

/// What two listings are compared on: the listing without empty `ip nat` / `ip6 nat`
/// tables, verbatim otherwise (comments, table order).
///
/// Empty `nat` tables: upstream's DEL also tears down the iptables backend (the attachment
/// may come from another version or configuration: `TeardownIPMasqForNetworks` in
/// upstream's `pkg/ip/ipmasq_linux.go`, and portmap's DEL), running `iptables`; with the
/// iptables-nft variant that leaves an empty `table ip nat` (and `ip6 nat`) behind, with no
/// chain and no hook, and with iptables-legacy nothing at all. Ours looks for iptables
/// state natively first and runs no iptables when there is none. A property of the host's
/// iptables tool, not of the nftables layouts: ignored on both sides.
fn comparable(listing: &str) -> String {
    tables(listing)
        .into_iter()
        .filter(|t| t != "table ip nat {\n}\n" && t != "table ip6 nat {\n}\n")
        .collect::<Vec<String>>()
        .concat()
}

/// A readable difference of two listings: the lines only one of them has.
fn diff(expected: &str, got: &str) -> String {
    let e: Vec<&str> = expected.lines().collect();
    let g: Vec<&str> = got.lines().collect();
    let mut s = String::new();
    for l in &e {
        if !g.contains(l) {
            s += &format!("- {l}\n");
        }
    }
    for l in &g {
        if !e.contains(l) {
            s += &format!("+ {l}\n");
        }
    }
    if s.is_empty() {
        s = "(same lines, other order)\n".into();
    }
    format!("{s}--- expected (upstream v1.9.1):\n{expected}--- got:\n{got}")
}

fn fixture(sc: &Scenario, file: &str) -> String {
    let p = sc.dir().join(file);
    std::fs::read_to_string(&p).unwrap_or_else(|e| {
        panic!(
            "fixture {} missing ({e}): record it with scripts/record-upstream-fixtures.sh",
            p.display()
        )
    })
}

/// The recorded listing after step `k` of `sc`.
fn fixture_listing(sc: &Scenario, k: usize) -> String {
    fixture(sc, &format!("{}.nft", sc.stem(k)))
}

/// How `listing` (already [`comparable`]) differs from upstream's after step `k` of `sc`,
/// or `None` when it does not.
fn fixture_difference(sc: &Scenario, k: usize, listing: &str) -> Option<String> {
    let want = comparable(&fixture_listing(sc, k));
    (listing != want).then(|| diff(&want, listing))
}

fn fixture_calls(sc: &Scenario, k: usize) -> Value {
    serde_json::from_str(&fixture(sc, &format!("{}.calls.json", sc.stem(k)))).unwrap()
}

/// A call record without what depends on the implementation that ran the steps before
/// (`prevResult`, `result`): the configuration the step was made with.
fn config_of(record: &Value) -> Value {
    let mut r = record.clone();
    r["result"] = Value::Null;
    if let Some(o) = r["stdin"].as_object_mut() {
        o.remove("prevResult");
    }
    r
}

/// Runs `sc` with `imp` on a fresh node; returns (stem, listing, calls) of every step.
fn run_scenario(sc: &Scenario, imp: &Impl) -> Vec<(String, String, Value)> {
    let mut run = Run::new(sc);
    (0..sc.steps.len())
        .map(|k| {
            let records = run.step(imp, k);
            (sc.stem(k), run.listing(imp), run.calls_json(&records))
        })
        .collect()
}

/// Runs `sc` with `imp` and compares with the fixtures after every step (see
/// [`comparable`]); returns the differences (empty: equal).
fn compare_with_fixtures(sc: &Scenario, imp: &Impl) -> Vec<String> {
    let mut problems = Vec::new();
    for (k, (stem, listing, calls)) in run_scenario(sc, imp).into_iter().enumerate() {
        let want_calls = fixture_calls(sc, k);
        let got: Vec<Value> = calls.as_array().unwrap().iter().map(config_of).collect();
        let want: Vec<Value> = want_calls
            .as_array()
            .unwrap()
            .iter()
            .map(config_of)
            .collect();
        assert_eq!(
            got, want,
            "{}/{stem}: the scenario's calls are no longer the recorded ones: record again",
            sc.name
        );
        if let Some(d) = fixture_difference(sc, k, &comparable(&listing)) {
            problems.push(format!(
                "{} differs from upstream v1.9.1 in {}/{stem}.nft:\n{d}",
                imp.label(),
                sc.name,
            ));
        }
    }
    problems
}

#[track_caller]
fn assert_matches_fixtures(name: &str) {
    if !require_root() {
        return;
    }
    let problems = compare_with_fixtures(&scenario(name), &Impl::Ours);
    assert!(
        problems.is_empty(),
        "OUR NFTABLES STATE DIFFERS FROM UPSTREAM v1.9.1 (no in-place switch):\n{}",
        problems.join("\n")
    );
}

/// (a) bridge ipMasq (nftables), one IPv4 container: ADD, DEL, DEL again.
#[test]
fn masq_v4_matches_upstream() {
    assert_matches_fixtures("masq-v4");
}

/// (b) dual-stack ipMasq and portmap (nftables, snat default, tcp+udp, hostIP of both
/// families), two containers ADDed, then DELeted one by one (e: what stays after the last
/// DEL).
#[test]
fn dualstack_portmap_matches_upstream() {
    assert_matches_fixtures("dualstack-portmap");
}

/// (c) portmap with `conditionsV4` / `conditionsV6` (snat off).
#[test]
fn portmap_conditions_match_upstream() {
    assert_matches_fixtures("conditions");
}

/// (d) bridge `macspoofchk` (nftables family `bridge`), two containers.
#[test]
fn macspoofchk_matches_upstream() {
    assert_matches_fixtures("macspoofchk");
}

/// Everything at once (dual-stack ipMasq, macspoofchk, portmap).
#[test]
fn all_features_match_upstream() {
    assert_matches_fixtures("all");
}

/// A fresh host namespace holding recorded upstream state (a fixture listing loaded with
/// `nft -f`), on which our plugins replay recorded calls.
struct Loaded {
    host: Netns,
    _data: tempfile::TempDir,
    /// (placeholder, value of this run): any valid names will do.
    values: Vec<(&'static str, String)>,
}

impl Loaded {
    fn new(listing: &str) -> Self {
        let data = tempfile::tempdir().unwrap();
        let values = vec![
            ("<dataDir>", data.path().display().to_string()),
            ("<veth-a>", "vethgolden0a".to_string()),
            ("<veth-b>", "vethgolden0b".to_string()),
            ("<mac-a>", "02:67:6f:6c:00:0a".to_string()),
            ("<mac-b>", "02:67:6f:6c:00:0b".to_string()),
            ("<mac>", "02:67:6f:6c:00:01".to_string()),
        ];
        let me = Self {
            host: Netns::new(),
            _data: data,
            values,
        };
        if !listing.trim().is_empty() {
            let (ok, _, err) = me.host.sh_in("nft -f -", &[], &me.fill(listing));
            assert!(ok, "nft -f of a recorded listing: {err}\n{listing}");
        }
        me
    }

    /// Placeholders replaced by this run's values.
    fn fill(&self, t: &str) -> String {
        self.values
            .iter()
            .fold(t.to_string(), |t, (p, v)| t.replace(p, v))
    }

    /// This run's values replaced by their placeholders; comparable, without our guard.
    fn listing(&self) -> String {
        let raw = self.host.exec_ok("nft", &["list", "ruleset"]);
        let t = self
            .values
            .iter()
            .filter(|(p, _)| *p != "<mac>")
            .fold(raw, |t, (p, v)| t.replace(v.as_str(), p));
        comparable(&without_guard(&t))
    }

    /// Runs our plugin of the recorded call `rec` as `command` with `stdin` (placeholders
    /// filled), with the netns `ctr` if any.
    fn run(&self, rec: &Value, command: &str, stdin: &Value, ctr: Option<&Netns>) -> PluginOutput {
        let mut call = PluginCall::new(command, self.fill(&stdin.to_string()))
            .container_id(rec["containerID"].as_str().unwrap())
            .ifname(rec["ifname"].as_str().unwrap())
            .cni_path(vec![bin_dir()]);
        if let Some(c) = ctr {
            call = call.netns(c.path());
        }
        call.run_in(&self.host, &plugin_bin(rec["plugin"].as_str().unwrap()))
    }

    /// [`Loaded::run`] without a netns, which must succeed.
    #[track_caller]
    fn replay(&self, rec: &Value, command: &str, stdin: &Value, what: &str) {
        let out = self.run(rec, command, stdin, None);
        assert!(
            out.success(),
            "our {} {command} on {what}: {}",
            rec["plugin"],
            out.describe()
        );
    }
}

/// Our portmap CHECK reads upstream's tables: with the recorded configuration and result
/// it passes on every recorded upstream state that holds the container's mappings, and
/// fails on the state just before its ADD.
#[test]
fn our_portmap_check_of_recorded_upstream_state() {
    if !require_root() {
        return;
    }
    let mut checked = 0;
    for sc in scenarios().iter().filter(|sc| sc.portmap.is_some()) {
        for (k, &(cmd, i)) in sc.steps.iter().enumerate() {
            if cmd != "ADD" {
                continue;
            }
            let calls = fixture_calls(sc, k);
            let rec = calls
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["plugin"] == "portmap")
                .unwrap();
            let mut conf = rec["stdin"].clone();
            conf["prevResult"] = rec["result"].clone();
            let before = match k {
                0 => String::new(),
                _ => fixture_listing(sc, k - 1),
            };
            let ctr = Netns::new();
            for (listing, ok) in [(fixture_listing(sc, k), true), (before, false)] {
                let out = Loaded::new(&listing).run(rec, "CHECK", &conf, Some(&ctr));
                assert_eq!(
                    out.success(),
                    ok,
                    "our portmap CHECK of {} on upstream's {}/{} (state {} its ADD): {}",
                    IDS[i],
                    sc.name,
                    sc.stem(k),
                    if ok { "after" } else { "before" },
                    out.describe()
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 6, "only {checked} CHECKs");
}

/// Upstream state after every recorded step that a DEL follows, loaded with `nft -f` into a
/// fresh host namespace, is DELeted by ours (the recorded calls of that DEL: same
/// configuration and `prevResult`, without the netns, which is gone) to exactly what
/// upstream's DEL left.
#[test]
fn our_del_of_recorded_upstream_state() {
    if !require_root() {
        return;
    }
    let mut problems = Vec::new();
    let mut replayed = 0;
    for sc in scenarios() {
        for k in 1..sc.steps.len() {
            if sc.steps[k].0 != "DEL" {
                continue;
            }
            let what = format!("upstream's {}/{}", sc.name, sc.stem(k - 1));
            let node = Loaded::new(&fixture_listing(&sc, k - 1));
            for rec in fixture_calls(&sc, k).as_array().unwrap() {
                node.replay(rec, "DEL", &rec["stdin"], &what);
            }
            if let Some(d) = fixture_difference(&sc, k, &node.listing()) {
                problems.push(format!(
                    "our DEL on {what} differs from upstream's DEL ({}.nft):\n{d}",
                    sc.stem(k),
                ));
            }
            replayed += 1;
        }
    }
    assert!(replayed >= 9, "only {replayed} DELs replayed");
    assert!(
        problems.is_empty(),
        "OUR DEL DOES NOT TURN UPSTREAM v1.9.1 STATE INTO UPSTREAM'S OWN RESULT:\n{}",
        problems.join("\n")
    );
}

/// Upstream has no GC (v1.9.1: bridge and portmap leave it a FIXME); ours collects. On
/// recorded upstream state with containers a and b, our GC (spec 1.1.0) with only b in
/// `cni.dev/valid-attachments` leaves exactly what upstream's DEL of a left.
#[test]
fn our_gc_of_recorded_upstream_state() {
    if !require_root() {
        return;
    }
    let mut problems = Vec::new();
    let mut collected = 0;
    for sc in scenarios() {
        // ADD a, ADD b, DEL a.
        if sc.steps.get(..3) != Some(&[("ADD", 0), ("ADD", 1), ("DEL", 0)][..]) {
            continue;
        }
        let what = format!("upstream's {}/{}", sc.name, sc.stem(1));
        let node = Loaded::new(&fixture_listing(&sc, 1));
        for rec in fixture_calls(&sc, 2).as_array().unwrap() {
            let mut conf = rec["stdin"].clone();
            let o = conf.as_object_mut().unwrap();
            o.remove("prevResult");
            o.remove("runtimeConfig");
            o.insert("cniVersion".into(), json!("1.1.0"));
            o.insert(
                "cni.dev/valid-attachments".into(),
                json!([{"containerID": IDS[1], "ifname": "eth0"}]),
            );
            node.replay(rec, "GC", &conf, &what);
        }
        if let Some(d) = fixture_difference(&sc, 2, &node.listing()) {
            problems.push(format!(
                "our GC on {what} differs from upstream's DEL of {} ({}.nft):\n{d}",
                IDS[0],
                sc.stem(2),
            ));
        }
        collected += 1;
    }
    assert!(collected >= 4, "only {collected} GCs");
    assert!(
        problems.is_empty(),
        "OUR GC DOES NOT TURN UPSTREAM v1.9.1 STATE INTO UPSTREAM'S DEL RESULT:\n{}",
        problems.join("\n")
    );
}

/// True when `listing` names `word` (an address, id or placeholder), not as the prefix of
/// a longer one (`golden-a` is not named by `golden-all`, 10.0.0.2 not by 10.0.0.20).
fn mentions(listing: &str, word: &str) -> bool {
    listing.match_indices(word).any(|(at, _)| {
        !listing[at + word.len()..]
            .starts_with(|c: char| c.is_ascii_alphanumeric() || c == '.' || c == ':')
    })
}

/// The addresses (without prefix) of a result.
fn addresses(r: &Value) -> Vec<String> {
    r["ips"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| {
            let a = i["address"].as_str().unwrap();
            a.split('/').next().unwrap().to_string()
        })
        .collect()
}

/// Asserts that nothing of container `i` of `run` is in the ruleset.
#[track_caller]
fn assert_nothing_of(run: &Run<'_>, i: usize, what: &str) {
    let raw = run.node.nft();
    let listing = run.normalise(&raw);
    let letter = LETTERS[i];
    for needle in [
        IDS[i].to_string(),
        format!("<veth-{letter}>"),
        format!("<mac-{letter}>"),
    ] {
        assert!(
            !mentions(&listing, &needle),
            "{what}: {needle} left in the ruleset:\n{listing}"
        );
    }
    for ip in addresses(run.results[i].as_ref().unwrap()) {
        assert!(
            !mentions(&raw, &ip),
            "{what}: {ip} left in the ruleset:\n{listing}"
        );
    }
}

/// Recording mode (`UPSTREAM_PLUGINS=<dir> UPSTREAM_RECORD=1`, see
/// `scripts/record-upstream-fixtures.sh`): runs every scenario with upstream twice
/// (the two runs must list the same, or the normalisation misses a per-run value) and
/// writes the fixtures. Otherwise does nothing.
#[test]
fn record_fixtures() {
    if std::env::var("UPSTREAM_RECORD").as_deref() != Ok("1") {
        eprintln!("skipped: recording only with UPSTREAM_RECORD=1 and UPSTREAM_PLUGINS");
        return;
    }
    let Some(up) = upstream_or_skip() else {
        panic!("UPSTREAM_RECORD=1 needs root and UPSTREAM_PLUGINS");
    };
    for sc in scenarios() {
        let first = run_scenario(&sc, &up);
        let second = run_scenario(&sc, &up);
        assert_eq!(first, second, "{}: two upstream runs differ", sc.name);
        let dir = sc.dir();
        if dir.exists() {
            // Only the files this test writes, by exact name.
            for e in std::fs::read_dir(&dir).unwrap() {
                let p = e.unwrap().path();
                let n = p.file_name().unwrap().to_string_lossy().into_owned();
                if n.ends_with(".nft") || n.ends_with(".calls.json") {
                    std::fs::remove_file(&p).unwrap();
                }
            }
        }
        std::fs::create_dir_all(&dir).unwrap();
        for (stem, listing, calls) in first {
            std::fs::write(dir.join(format!("{stem}.nft")), listing).unwrap();
            std::fs::write(
                dir.join(format!("{stem}.calls.json")),
                serde_json::to_string_pretty(&calls).unwrap() + "\n",
            )
            .unwrap();
        }
        eprintln!("recorded {}", dir.display());
    }
}

/// With upstream: the fixtures are still what upstream writes (a second check of the
/// recorder's normalisation, and of the binaries in `UPSTREAM_PLUGINS`).
#[test]
fn fixtures_are_upstreams_listings() {
    let Some(up) = upstream_or_skip() else {
        return;
    };
    let problems: Vec<String> = scenarios()
        .iter()
        .flat_map(|sc| compare_with_fixtures(sc, &up))
        .collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// With upstream: attachments made by upstream pass our CHECK; our GC with only b valid
/// removes all of a's state; our DELs leave exactly what upstream's own DELs leave, and
/// nothing of either container.
#[test]
fn upstream_add_then_our_check_gc_del() {
    let Some(up) = upstream_or_skip() else {
        return;
    };
    let sc = scenario("all");
    let mut run = Run::new(&sc);
    run.add(&up, 0);
    run.add(&up, 1);
    run.check(&Impl::Ours, 0);
    run.check(&Impl::Ours, 1);
    run.gc(&Impl::Ours, &[1]);
    assert_nothing_of(&run, 0, "after our GC keeping only golden-b");
    assert!(
        mentions(&run.listing(&Impl::Ours), IDS[1]),
        "our GC removed golden-b's rules"
    );
    run.check(&Impl::Ours, 1);
    run.del(&Impl::Ours, 1);
    assert_nothing_of(&run, 1, "after our DEL of golden-b");
    run.del(&Impl::Ours, 0);
    let last = sc.steps.len() - 1;
    // Upstream made the tables (with its comments); the DELs leave them.
    run.assert_listing_is_fixture(
        last,
        "what our DELs leave of upstream's attachments is not what upstream leaves",
    );
    run.assert_all_clean();
}

/// With upstream: attachments made by ours pass upstream's CHECK, and upstream's DELs
/// leave, after each, exactly what they leave of upstream's own attachments (ours but for
/// the localnet guard, which nothing removes), and nothing of either container.
#[test]
fn our_add_then_upstream_check_del() {
    let Some(up) = upstream_or_skip() else {
        return;
    };
    let sc = scenario("all");
    let mut run = Run::new(&sc);
    run.add(&Impl::Ours, 0);
    run.add(&Impl::Ours, 1);
    run.check(&up, 0);
    run.check(&up, 1);
    for k in 2..sc.steps.len() {
        let ("DEL", i) = sc.steps[k] else {
            panic!("scenario all: DELs after the two ADDs")
        };
        run.del(&up, i);
        assert_nothing_of(&run, i, "after upstream's DEL");
        run.assert_listing_is_fixture(
            k,
            "upstream's DEL of our attachment leaves other state than of its own",
        );
    }
    run.assert_all_clean();
}

/// With upstream: one node in the middle of a switch, both implementations attaching to
/// the same tables: our ADD of a, upstream's ADD of b (into the tables ours made), each
/// CHECKs the other's attachment, upstream DELs a and ours DELs b; after each DEL the
/// listing is upstream's own after that step, and nothing of either container is left.
#[test]
fn mixed_node_both_ways() {
    let Some(up) = upstream_or_skip() else {
        return;
    };
    let sc = scenario("all");
    let mut run = Run::new(&sc);
    run.add(&Impl::Ours, 0);
    run.add(&up, 1);
    run.check(&up, 0);
    run.check(&Impl::Ours, 1);
    for (k, imp) in [(2, &up), (3, &Impl::Ours)] {
        let ("DEL", i) = sc.steps[k] else {
            panic!("scenario all: DELs after the two ADDs")
        };
        run.del(imp, i);
        assert_nothing_of(&run, i, &format!("after the DEL by {}", imp.label()));
        run.assert_listing_is_fixture(
            k,
            &format!(
                "a mixed node after {} is not what upstream leaves",
                sc.stem(k)
            ),
        );
    }
    run.assert_all_clean();
}
