//! Helpers shared by the differential, fault-injection, hostile-input and storm tests:
//! one "node" (a private host namespace with its own `dataDir`) on which a
//! whole attachment (bridge + host-local [+ portmap]) is run either by our plugins or by
//! the Debian reference plugins in `/usr/lib/cni`, plus snapshots of everything an
//! attachment can leave behind (links, reservations, netfilter state).

#![allow(
    clippy::unwrap_used,
    reason = "a test fixture: it panics with the failing value"
)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::{Netns, PluginCall, PluginOutput, TestEnv, bin_dir, reference_bin};
use serde_json::{Value, json};

/// Which implementation runs a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Our plugins (`target/<profile>`).
    Ours,
    /// The Go reference plugins (Debian v1.1.1, `/usr/lib/cni`).
    Ref,
}

impl Side {
    /// The binary of `plugin` for this side.
    pub fn bin(self, plugin: &str) -> PathBuf {
        match self {
            Side::Ours => crate::plugin_bin(plugin),
            Side::Ref => reference_bin(plugin).expect("reference plugin installed"),
        }
    }

    /// `CNI_PATH` for this side (where its IPAM plugin is found).
    pub fn cni_path(self) -> PathBuf {
        match self {
            Side::Ours => bin_dir(),
            Side::Ref => PathBuf::from(crate::REFERENCE_DIR),
        }
    }
}

/// True when the reference bridge, host-local and portmap are installed; otherwise
/// prints a skip message (and panics when `CI=true`: CI must run the differential tests).
pub fn require_reference() -> bool {
    crate::require_reference(&["bridge", "host-local", "portmap"])
}

/// A private host namespace with a private `dataDir`, a network name and a bridge name.
pub struct Node {
    /// The namespace and the data dir.
    pub env: TestEnv,
    /// Network name (unique per node unless set explicitly).
    pub name: String,
    /// Bridge name (each node has its own namespace, so this can be fixed).
    pub bridge: String,
}

impl Node {
    /// [`Node::new`] when running as root; `None` (the test is skipped) otherwise.
    pub fn root() -> Option<Self> {
        crate::require_root().then(Self::new)
    }

    /// A node with a unique network name.
    pub fn new() -> Self {
        Self::named(&crate::unique_name("net"))
    }

    /// A node with network name `name` (two nodes with the same name give comparable
    /// chain names and comments).
    pub fn named(name: &str) -> Self {
        Self {
            env: TestEnv::new(),
            name: name.to_string(),
            bridge: "cnidiff0".into(),
        }
    }

    /// `<dataDir>/<network>`.
    pub fn store(&self) -> PathBuf {
        self.env.data_path().join(&self.name)
    }

    /// A bridge configuration with host-local IPAM over `subnets` (one range set each),
    /// `extra` merged at the top level.
    pub fn bridge_conf(&self, version: &str, subnets: &[&str], extra: Value) -> Value {
        let mut c = json!({
            "cniVersion": version,
            "name": self.name,
            "type": "bridge",
            "bridge": self.bridge,
        });
        if !subnets.is_empty() {
            let ranges: Vec<Value> = subnets.iter().map(|s| json!([{"subnet": s}])).collect();
            c["ipam"] = json!({
                "type": "host-local",
                "ranges": ranges,
                "dataDir": self.env.data_path(),
            });
        }
        merge(&mut c, extra);
        c
    }

    /// A call of `command` with `conf`, container `id`, ifname `eth0`, the netns of `ctr`.
    pub fn call(
        &self,
        side: Side,
        command: &str,
        conf: &Value,
        ctr: Option<&Netns>,
        id: &str,
    ) -> PluginCall {
        let mut c = PluginCall::new(command, serde_json::to_vec(conf).unwrap())
            .container_id(id)
            .cni_path(vec![side.cni_path()])
            .timeout(Duration::from_secs(60));
        if let Some(n) = ctr {
            c = c.netns(n.path());
        }
        c
    }

    /// Runs `plugin` of `side` with `call` in the host namespace.
    pub fn run(&self, side: Side, plugin: &str, call: &PluginCall) -> PluginOutput {
        call.run_in(&self.env.host, &side.bin(plugin))
    }

    /// Runs `command` of `plugin` and returns its output.
    pub fn exec(
        &self,
        side: Side,
        plugin: &str,
        command: &str,
        conf: &Value,
        ctr: Option<&Netns>,
        id: &str,
    ) -> PluginOutput {
        self.run(side, plugin, &self.call(side, command, conf, ctr, id))
    }

    /// ADD that must succeed; returns the result.
    #[track_caller]
    pub fn add(&self, side: Side, plugin: &str, conf: &Value, ctr: &Netns, id: &str) -> Value {
        let out = self.exec(side, plugin, "ADD", conf, Some(ctr), id);
        out.assert_success();
        out.json()
    }

    /// DEL that must succeed.
    #[track_caller]
    pub fn del(&self, side: Side, plugin: &str, conf: &Value, ctr: Option<&Netns>, id: &str) {
        self.exec(side, plugin, "DEL", conf, ctr, id)
            .assert_success();
    }

    /// Our bridge's ADD of `id` run through a shell wrapper `<prefix><bridge> "$@"` in the
    /// host namespace (`prefix` e.g. a umask, or a command that drops capabilities).
    pub fn add_ours_wrapped(
        &self,
        prefix: &str,
        conf: &Value,
        ctr: &Netns,
        id: &str,
    ) -> PluginOutput {
        let dir = tempfile::tempdir().unwrap();
        let bin = Side::Ours.bin("bridge");
        let wrapper = crate::write_script(
            dir.path(),
            "bridge",
            &format!("{prefix}{} \"$@\"", bin.display()),
        );
        self.env.host.run_in(|| {
            self.call(Side::Ours, "ADD", conf, Some(ctr), id)
                .run_here(&wrapper)
        })
    }

    /// Our bridge's DEL of `id`, which must succeed, then [`Node::assert_clean`].
    #[track_caller]
    pub fn del_clean(&self, conf: &Value, ctr: Option<&Netns>, id: &str) {
        self.del(Side::Ours, "bridge", conf, ctr, id);
        self.assert_clean(ctr, id);
    }

    /// CHECK with `prev` as `prevResult`.
    pub fn check(
        &self,
        side: Side,
        plugin: &str,
        conf: &Value,
        prev: &Value,
        ctr: &Netns,
        id: &str,
    ) -> PluginOutput {
        let mut c = conf.clone();
        c["prevResult"] = prev.clone();
        self.exec(side, plugin, "CHECK", &c, Some(ctr), id)
    }

    /// Every file of the network's store: name -> content (lock and cursors included).
    pub fn store_files(&self) -> BTreeMap<String, String> {
        let Ok(rd) = std::fs::read_dir(self.store()) else {
            return BTreeMap::new();
        };
        rd.map(|e| e.unwrap())
            .map(|e| {
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read_to_string(e.path()).unwrap_or_else(|e| format!("<{e}>")),
                )
            })
            .collect()
    }

    /// Every file of the network's store but the lock: (name, content), sorted.
    pub fn store_without_lock(&self) -> Vec<(String, String)> {
        self.store_files()
            .into_iter()
            .filter(|(k, _)| k != "lock")
            .collect()
    }

    /// Reservation file names (addresses), sorted.
    pub fn reservations(&self) -> Vec<String> {
        self.store_files()
            .into_keys()
            .filter(|n| n != "lock" && !n.starts_with("last_reserved_ip") && !n.starts_with('.'))
            .collect()
    }

    /// Host-side veth names.
    pub fn host_veths(&self) -> Vec<String> {
        links(&self.env.host)
            .into_iter()
            .filter_map(|l| l["ifname"].as_str().map(str::to_string))
            .filter(|n| n.starts_with("veth"))
            .collect()
    }

    /// `iptables-save -t nat` (and ip6tables) without comments and counters.
    pub fn nat(&self) -> String {
        format!(
            "{}{}",
            save(&self.env.host, "iptables-save"),
            save(&self.env.host, "ip6tables-save")
        )
    }

    /// `nft list ruleset`.
    pub fn nft(&self) -> String {
        self.env.host.exec_ok("nft", &["list", "ruleset"])
    }

    /// Waits (at most 10 s) until no host veth is left: after `ip netns del` the kernel
    /// destroys the namespace, and with it the container end and its host peer,
    /// asynchronously.
    pub fn wait_veths_gone(&self) {
        self.wait_veths_gone_but(0);
    }

    /// Like [`Node::wait_veths_gone`] until at most `left` host veths remain.
    pub fn wait_veths_gone_but(&self, left: usize) {
        let t0 = std::time::Instant::now();
        while self.host_veths().len() > left && t0.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Nothing of container `id` is left: no host veth, no container interface, no
    /// reservation, no per-container iptables chain, no nft rule or chain naming it.
    #[track_caller]
    pub fn assert_clean(&self, ctr: Option<&Netns>, id: &str) {
        assert_eq!(
            self.host_veths(),
            Vec::<String>::new(),
            "host veth left behind"
        );
        if let Some(c) = ctr {
            assert!(
                links(c).iter().all(|l| l["ifname"] != "eth0"),
                "container interface left behind"
            );
        }
        assert_eq!(
            self.reservations(),
            Vec::<String>::new(),
            "reservation left behind"
        );
        let nat = self.nat();
        for line in nat.lines() {
            let per_container = line.starts_with(":CNI-") && !line.starts_with(":CNI-HOSTPORT-");
            assert!(
                !per_container,
                "per-container chain left behind: {line}\n{nat}"
            );
            assert!(
                !line.contains(&format!("id: \\\"{id}\\\"")),
                "rule left behind: {line}"
            );
        }
        let nft = self.nft();
        assert!(
            !nft.contains("cni-br-iface"),
            "spoof-check chain left behind: {nft}"
        );
        assert!(
            !nft.contains(&format!("id: {id}")) && !nft.contains(&format!("comment \"{id}\"")),
            "nft rule of {id} left behind: {nft}"
        );
    }
}

impl Default for Node {
    fn default() -> Self {
        Self::new()
    }
}

/// Two nodes with the same network name (so the same chain names and comments), one for
/// each [`Side`], for running a scenario through both and comparing.
pub struct Pair {
    reference: Node,
    ours: Node,
}

impl Pair {
    /// Two nodes with a network name made of `prefix` and a unique part.
    pub fn new(prefix: &str) -> Self {
        let name = crate::unique_name(prefix);
        Self {
            reference: Node::named(&name),
            ours: Node::named(&name),
        }
    }

    /// A pair for a test that needs root and the reference plugins; `None` (the test is
    /// skipped) without them, see [`require_reference`].
    pub fn if_runnable(prefix: &str) -> Option<Self> {
        (crate::require_root() && require_reference()).then(|| Self::new(prefix))
    }

    /// When [`Pair::if_runnable`] gives a pair: `f` on the reference's node, then on ours.
    pub fn each_side(prefix: &str, mut f: impl FnMut(Side, &Node)) {
        if let Some(p) = Self::if_runnable(prefix) {
            for (side, n) in p.sides() {
                f(side, n);
            }
        }
    }

    /// Both sides with their nodes, the reference first.
    pub fn sides(&self) -> [(Side, &Node); 2] {
        [(Side::Ref, &self.reference), (Side::Ours, &self.ours)]
    }

    /// The node on which `side` runs.
    pub fn on(&self, side: Side) -> &Node {
        match side {
            Side::Ref => &self.reference,
            Side::Ours => &self.ours,
        }
    }
}

/// Merges the keys of object `extra` into object `v`.
pub fn merge(v: &mut Value, extra: Value) {
    if let (Some(o), Value::Object(e)) = (v.as_object_mut(), extra) {
        o.extend(e);
    }
}

/// `ip -d -j link show` in `ns`.
pub fn links(ns: &Netns) -> Vec<Value> {
    serde_json::from_str(&ns.exec_ok("ip", &["-d", "-j", "link", "show"])).unwrap()
}

/// `<tool> -t nat` without comment lines and with counters zeroed.
pub fn save(ns: &Netns, tool: &str) -> String {
    save_table(ns, tool, "nat")
}

/// `<tool> -t <table>` without comment lines and with counters zeroed.
pub fn save_table(ns: &Netns, tool: &str, table: &str) -> String {
    ns.exec_ok(tool, &["-t", table])
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| match l.rfind(" [") {
            Some(i) if l.starts_with(':') => format!("{} [0:0]", &l[..i]),
            _ => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// A result with everything that is random per run replaced: host veth names, MACs and
/// the sandbox path (the netns differs per node). Empty `dns` objects are dropped (the
/// reference prints `"dns": {}`, ours omits it: an intended difference tested apart).
pub fn normalise(result: &Value) -> Value {
    let mut r = result.clone();
    if let Some(ifs) = r.get_mut("interfaces").and_then(Value::as_array_mut) {
        for i in ifs {
            if i["name"].as_str().is_some_and(|n| n.starts_with("veth")) {
                i["name"] = json!("veth<random>");
            }
            if i.get("mac").is_some() {
                i["mac"] = json!("<mac>");
            }
            if i.get("sandbox").is_some() {
                i["sandbox"] = json!("<netns>");
            }
        }
    }
    if r.get("dns")
        .is_some_and(|d| d.as_object().is_some_and(serde_json::Map::is_empty))
    {
        r.as_object_mut().unwrap().remove("dns");
    }
    r
}

/// The first address (without prefix) of a result of any version.
pub fn first_ip(r: &Value) -> String {
    let a = r["ips"][0]["address"]
        .as_str()
        .or_else(|| r["ip4"]["ip"].as_str())
        .unwrap_or_else(|| panic!("no address in {r}"));
    a.split('/').next().unwrap().to_string()
}

/// Mode bits of `p`.
pub fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

/// Spawns `plugin` with `call` in the node's host namespace and SIGKILLs it after
/// `delay` (if still running); then waits (at most 10 s) until the helpers it started
/// (the delegated IPAM plugin, `iptables-restore`, `nft`: its process group) are gone,
/// since they finish their work after the parent died and a DEL must come after it.
/// Returns true when the plugin was killed.
pub fn run_and_kill(n: &Node, plugin: &str, call: &PluginCall, delay: Duration) -> bool {
    use std::os::unix::process::CommandExt;
    let bin = Side::Ours.bin(plugin);
    let mut child = n.env.host.run_in(|| {
        call.process(&bin)
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    });
    let _ = child.stdin.take().unwrap().write_all(&call.stdin);
    std::thread::sleep(delay);
    let killed = matches!(child.try_wait(), Ok(None));
    let _ = child.kill();
    let _ = child.wait();
    wait_group_gone(child.id());
    killed
}

/// Waits (at most 10 s) until no process of process group `pgid` is left.
pub fn wait_group_gone(pgid: u32) {
    let in_group = |stat: &str| {
        // pid (comm) state ppid pgrp ...: comm may hold spaces, so split after ')'.
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(2))
            .is_some_and(|g| g == pgid.to_string())
    };
    wait_until_no_process(Duration::from_millis(5), |proc_dir| {
        std::fs::read_to_string(proc_dir.join("stat")).is_ok_and(|s| in_group(&s))
    });
}

/// Waits (at most 10 s) until no helper a killed plugin may have left running (the
/// delegated host-local, iptables-restore, nft) is alive: they finish their work after
/// the parent died, and a DEL must come after that work to see it.
pub fn wait_for_orphans() {
    let ours = Side::Ours.bin("host-local");
    wait_until_no_process(Duration::from_millis(10), |proc_dir| {
        std::fs::read_link(proc_dir.join("exe")).is_ok_and(|exe| {
            exe == ours
                || exe.file_name().is_some_and(|n| {
                    ["xtables-nft-multi", "xtables-legacy-multi", "nft"]
                        .contains(&n.to_str().unwrap_or(""))
                })
        })
    });
}

/// Polls `/proc` every `poll` (for at most 10 s) until no process directory
/// `/proc/<pid>` satisfies `matches`.
fn wait_until_no_process(poll: Duration, matches: impl Fn(&Path) -> bool) {
    let t0 = std::time::Instant::now();
    while t0.elapsed() < Duration::from_secs(10) {
        let busy = std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .bytes()
                    .all(|b| b.is_ascii_digit())
            })
            .any(|e| matches(&e.path()));
        if !busy {
            return;
        }
        std::thread::sleep(poll);
    }
}
