//! The implementations under test, the network configurations (identical for all),
//! and the libcni sequence for a plugin chain: ADD in order with each result passed as the
//! next plugin's `prevResult`, DEL in reverse with the cached final result.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use cni_netns::NetNs;
use serde_json::{Value, json};

use crate::cleanup;
use crate::exec::{Call, Outcome, PLUGIN_PATH, run_with_stdin};

/// `cniVersion` of every configuration (the Go reference 1.1.1 supports up to 1.0.0).
pub const CNI_VERSION: &str = "1.0.0";

/// Interface name inside the container.
pub const IFNAME: &str = "eth0";

/// One implementation: its plugin directory, its private host namespace (stand-in for
/// the node's root namespace) and its private IPAM data directory.
#[derive(Debug)]
pub struct Impl {
    /// `ours`, `debian` or `upstream`.
    pub label: &'static str,
    /// Short tag used in namespace names (`o`, `d`, `u`, …).
    pub tag: String,
    /// The netfilter backend its configurations ask for.
    pub backend: Backend,
    /// Directory holding `bridge`, `host-local`, `portmap`; also `CNI_PATH`.
    pub dir: PathBuf,
    /// Name of the private host namespace.
    pub host_name: String,
    /// The private host namespace.
    pub host: NetNs,
    /// host-local `dataDir`.
    pub data_dir: PathBuf,
}

/// Creates named namespaces with one `ip -batch` process (outside any timing) and
/// registers them for cleanup.
///
/// # Errors
/// When any of them does not exist afterwards.
pub fn create_netns(names: &[String]) -> Result<(), String> {
    for n in names {
        cleanup::register_netns(n);
    }
    for chunk in names.chunks(500) {
        let script: String = chunk.iter().map(|n| format!("netns add {n}\n")).collect();
        let out = run_with_stdin(
            Command::new("ip")
                .args(["-force", "-batch", "-"])
                .stderr(Stdio::piped()),
            script.as_bytes(),
        )?;
        if let Some(missing) = chunk
            .iter()
            .find(|n| !Path::new(cleanup::NETNS_DIR).join(n).exists())
        {
            return Err(format!(
                "ip netns add {missing} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    Ok(())
}

/// Path of a named namespace.
pub fn netns_path(name: &str) -> PathBuf {
    Path::new(cleanup::NETNS_DIR).join(name)
}

/// Runs `ip`/`iptables-save`-style tools inside a named namespace (setup and checks only,
/// never timed) and returns stdout.
///
/// # Errors
/// When the tool cannot run or fails.
pub fn ns_exec(ns: &str, argv: &[&str]) -> Result<String, String> {
    ns_exec_stdin(ns, argv, b"")
}

/// [`ns_exec`] with `input` on the tool's stdin (e.g. an `iptables-restore` script).
///
/// # Errors
/// When the tool cannot run or fails.
pub fn ns_exec_stdin(ns: &str, argv: &[&str], input: &[u8]) -> Result<String, String> {
    let out = run_with_stdin(
        Command::new("ip")
            .args(["netns", "exec", ns])
            .args(argv)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
        input,
    )
    .map_err(|e| format!("ip netns exec {ns} {argv:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "ip netns exec {ns} {argv:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Impl {
    /// Creates the host namespace (with `lo` up) and the data directory.
    ///
    /// # Errors
    /// When either cannot be created or the plugin directory lacks a plugin.
    pub fn new(
        label: &'static str,
        tag: &str,
        dir: &Path,
        backend: Backend,
    ) -> Result<Self, String> {
        for p in ["bridge", "host-local", "portmap"] {
            if !dir.join(p).is_file() {
                return Err(format!("{label}: {} does not exist", dir.join(p).display()));
            }
        }
        let prefix = cleanup::run_prefix();
        let host_name = format!("{prefix}{tag}-host");
        create_netns(std::slice::from_ref(&host_name))?;
        ns_exec(&host_name, &["ip", "link", "set", "lo", "up"])?;
        let host = NetNs::open(netns_path(&host_name)).map_err(|e| e.to_string())?;
        let data_dir = std::env::temp_dir().join(format!("{prefix}{tag}-data"));
        cleanup::register_dir(&data_dir);
        std::fs::create_dir_all(&data_dir)
            .map_err(|e| format!("create {}: {e}", data_dir.display()))?;
        Ok(Self {
            label,
            tag: tag.to_owned(),
            backend,
            dir: dir.to_path_buf(),
            host_name,
            host,
            data_dir,
        })
    }

    /// Path of one plugin binary.
    pub fn bin(&self, plugin: &str) -> PathBuf {
        self.dir.join(plugin)
    }

    /// Names for `count` container namespaces of this implementation, `group`-scoped.
    pub fn container_names(&self, group: &str, count: usize) -> Vec<String> {
        let prefix = cleanup::run_prefix();
        (0..count)
            .map(|i| format!("{prefix}{}-{group}{i}", self.tag))
            .collect()
    }
}

/// The netfilter backend every configuration asks for (bridge `ipMasqBackend`, portmap
/// `backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// iptables rules (the only backend of the Go plugins before v1.7).
    Iptables,
    /// nftables tables of their own (`inet cni_plugins_masquerade`, `ip cni_hostport`).
    Nftables,
}

impl Backend {
    /// The configuration value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Iptables => "iptables",
            Self::Nftables => "nftables",
        }
    }

    /// Parses `iptables` or `nftables`.
    ///
    /// # Errors
    /// Any other value.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "iptables" => Ok(Self::Iptables),
            "nftables" => Ok(Self::Nftables),
            _ => Err(format!("--backend: {s:?} is neither iptables nor nftables")),
        }
    }
}

/// A network: the same shape for every implementation (each lives in its own host
/// namespace, so names and subnets may be equal).
#[derive(Debug, Clone, Copy)]
pub struct Net {
    /// Network name.
    pub name: &'static str,
    /// Bridge device.
    pub bridge: &'static str,
    /// IPv4 subnet for host-local.
    pub subnet: &'static str,
    /// bridge `ipMasq`.
    pub ip_masq: bool,
    /// Whether portmap follows bridge in the chain.
    pub portmap: bool,
}

/// Scenario 1: bridge + host-local only.
pub const SIMPLE: Net = Net {
    name: "cnibench",
    bridge: "cnibench0",
    subnet: "10.88.0.0/16",
    ip_masq: false,
    portmap: false,
};

/// Scenarios 2–5: bridge (ipMasq) + host-local, then portmap.
pub const CHAIN: Net = Net {
    name: "cnibench-chain",
    bridge: "cnibench1",
    subnet: "10.89.0.0/16",
    ip_masq: true,
    portmap: true,
};

impl Net {
    /// The bridge plugin's configuration (also what host-local reads).
    pub fn bridge_conf(&self, imp: &Impl) -> Value {
        json!({
            "cniVersion": CNI_VERSION,
            "name": self.name,
            "type": "bridge",
            "bridge": self.bridge,
            "isGateway": true,
            "ipMasq": self.ip_masq,
            "ipMasqBackend": imp.backend.as_str(),
            "ipam": {
                "type": "host-local",
                "ranges": [[{ "subnet": self.subnet }]],
                "routes": [{ "dst": "0.0.0.0/0" }],
                "dataDir": imp.data_dir,
            },
        })
    }

    /// The portmap plugin's configuration as libcni builds it: the list entry plus
    /// `name`, `cniVersion`, `runtimeConfig.portMappings` (capability `portMappings`) and
    /// `prevResult`. Without `mappings`, `runtimeConfig` is left out (a runtime that
    /// forgot the mappings at DEL).
    pub fn portmap_conf(&self, imp: &Impl, att: &Attachment, prev: Option<&Value>) -> Value {
        let host_port = 20_000 + att.slot;
        let mut v = json!({
            "cniVersion": CNI_VERSION,
            "name": self.name,
            "type": "portmap",
            "backend": imp.backend.as_str(),
            "capabilities": { "portMappings": true },
            "snat": true,
        });
        if let Some(obj) = v.as_object_mut() {
            if att.mappings {
                obj.insert(
                    "runtimeConfig".into(),
                    json!({ "portMappings": [
                        { "hostPort": host_port, "containerPort": 80, "protocol": "tcp" },
                        { "hostPort": host_port, "containerPort": 53, "protocol": "udp" },
                    ]}),
                );
            }
            if let Some(p) = prev {
                obj.insert("prevResult".into(), p.clone());
            }
        }
        v
    }
}

/// One container attachment.
#[derive(Debug, Clone)]
pub struct Attachment {
    /// `CNI_CONTAINERID`.
    pub id: String,
    /// The container's namespace.
    pub netns: PathBuf,
    /// Distinguishes host ports.
    pub slot: u32,
    /// The cached result of the last successful chain ADD (libcni's cache).
    pub result: Option<Value>,
    /// Whether portmap gets `runtimeConfig.portMappings` (true unless a scenario lets the
    /// runtime forget them at DEL).
    pub mappings: bool,
}

impl Attachment {
    /// A new attachment in the namespace `ns_name`.
    pub fn new(id: String, ns_name: &str, slot: u32) -> Self {
        Self {
            id,
            netns: netns_path(ns_name),
            slot,
            result: None,
            mappings: true,
        }
    }
}

/// One plugin step of a chain operation.
#[derive(Debug, Clone)]
pub struct Step {
    /// Plugin name.
    pub plugin: &'static str,
    /// What it did.
    pub outcome: Outcome,
}

/// A whole chain ADD or DEL.
#[derive(Debug, Clone, Default)]
pub struct ChainOutcome {
    /// Sum of the plugin wall times (what the runtime waits for, minus its own JSON work).
    pub wall: Duration,
    /// The plugin steps in execution order.
    pub steps: Vec<Step>,
    /// First failure, if any.
    pub error: Option<String>,
}

impl ChainOutcome {
    /// True when every step succeeded.
    pub fn ok(&self) -> bool {
        self.error.is_none()
    }

    fn push(&mut self, plugin: &'static str, outcome: Outcome) -> bool {
        self.wall += outcome.wall;
        let ok = outcome.ok();
        if !ok && self.error.is_none() {
            self.error = Some(format!("{plugin}: {}", outcome.describe()));
        }
        self.steps.push(Step { plugin, outcome });
        ok
    }
}

/// IPv4/IPv6 addresses (without prefix length) of a CNI result.
pub fn result_ips(result: &Value) -> Vec<String> {
    result
        .get("ips")
        .and_then(Value::as_array)
        .map(|ips| {
            ips.iter()
                .filter_map(|ip| ip.get("address")?.as_str())
                .map(|a| a.split('/').next().unwrap_or(a).to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn to_bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

impl Impl {
    fn call<'a>(&'a self, plugin: &str, command: &'a str, att: &'a Attachment) -> Call<'a> {
        Call {
            bin: self.bin(plugin),
            command,
            container_id: &att.id,
            netns: &att.netns,
            ifname: IFNAME,
            cni_path: &self.dir,
            stdin: Vec::new(),
        }
    }

    /// The tool-and-kernel floor of one iptables change at the node's current size: wall
    /// time of one `iptables-restore -w 10 --noflush` appending a single `nat`
    /// POSTROUTING rule in this implementation's host namespace (the same tool the plugins
    /// of both implementations end up running). The rule is deleted again, untimed.
    ///
    /// # Errors
    /// The tool failing to run or rejecting the change.
    pub fn time_nat_rule_add(&self) -> Result<Duration, String> {
        let rule = "POSTROUTING -s 192.0.2.1/32 -m comment --comment cni-bench-floor -j ACCEPT";
        let restore = |line: String| -> Result<Duration, String> {
            let start = std::time::Instant::now();
            let out = run_with_stdin(
                Command::new("iptables-restore")
                    .args(["-w", "10", "--noflush"])
                    .env("PATH", PLUGIN_PATH)
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped()),
                format!("*nat\n{line}\nCOMMIT\n").as_bytes(),
            )?;
            let took = start.elapsed();
            if !out.status.success() {
                return Err(format!(
                    "iptables-restore `{line}` in {}: {}",
                    self.host_name,
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
            Ok(took)
        };
        self.in_host(|| {
            let took = restore(format!("-A {rule}"))?;
            restore(format!("-D {rule}"))?;
            Ok(took)
        })?
    }

    /// Runs `f` with the calling thread inside this implementation's host namespace.
    fn in_host<T>(&self, f: impl FnOnce() -> T) -> Result<T, String> {
        let guard = self
            .host
            .enter()
            .map_err(|e| format!("enter {}: {e}", self.host_name))?;
        let v = f();
        drop(guard);
        Ok(v)
    }

    /// Chain ADD (bridge, then portmap when the network has it). On success the final
    /// result is cached in `att`. `trace_peak` traces each plugin for its own peak RSS.
    pub fn chain_add(&self, net: &Net, att: &mut Attachment, trace_peak: bool) -> ChainOutcome {
        let res = self.in_host(|| {
            let mut out = ChainOutcome::default();
            let mut call = self.call("bridge", "ADD", att);
            call.stdin = to_bytes(&net.bridge_conf(self));
            let o = call.run(trace_peak);
            let mut result = o.json();
            if !out.push("bridge", o) {
                return (out, None);
            }
            if net.portmap {
                let mut call = self.call("portmap", "ADD", att);
                call.stdin = to_bytes(&net.portmap_conf(self, att, result.as_ref()));
                let o = call.run(trace_peak);
                result = o.json();
                if !out.push("portmap", o) {
                    return (out, None);
                }
            }
            (out, result)
        });
        match res {
            Ok((out, result)) => {
                if out.ok() {
                    if result.as_ref().is_none_or(|r| result_ips(r).is_empty()) {
                        let mut out = out;
                        out.error = Some("ADD result has no IP address".into());
                        return out;
                    }
                    att.result = result;
                }
                out
            }
            Err(e) => ChainOutcome {
                error: Some(e),
                ..ChainOutcome::default()
            },
        }
    }

    /// Chain DEL in reverse order with the cached result as `prevResult`; continues after
    /// a failing step (so a benchmark failure still cleans up) but reports it.
    pub fn chain_del(&self, net: &Net, att: &mut Attachment, trace_peak: bool) -> ChainOutcome {
        let prev = att.result.take();
        let res = self.in_host(|| {
            let mut out = ChainOutcome::default();
            if net.portmap {
                let mut call = self.call("portmap", "DEL", att);
                call.stdin = to_bytes(&net.portmap_conf(self, att, prev.as_ref()));
                let o = call.run(trace_peak);
                out.push("portmap", o);
            }
            let mut conf = net.bridge_conf(self);
            if let (Some(p), Some(obj)) = (prev.as_ref(), conf.as_object_mut()) {
                obj.insert("prevResult".into(), p.clone());
            }
            let mut call = self.call("bridge", "DEL", att);
            call.stdin = to_bytes(&conf);
            let o = call.run(trace_peak);
            out.push("bridge", o);
            out
        });
        res.unwrap_or_else(|e| ChainOutcome {
            error: Some(e),
            ..ChainOutcome::default()
        })
    }

    /// `VERSION` of the bridge plugin: process start-up and exit, no network work.
    pub fn version(&self, att: &Attachment) -> Outcome {
        let mut call = self.call("bridge", "VERSION", att);
        call.stdin = to_bytes(&json!({ "cniVersion": CNI_VERSION }));
        self.in_host(|| call.run(false))
            .unwrap_or_else(|e| Outcome {
                spawn_error: Some(e),
                ..Outcome::default()
            })
    }

    /// host-local alone (ADD or DEL) with the bridge configuration, as bridge delegates it.
    pub fn host_local(&self, net: &Net, command: &str, att: &Attachment, trace: bool) -> Outcome {
        let mut call = self.call("host-local", command, att);
        call.stdin = to_bytes(&net.bridge_conf(self));
        self.in_host(|| call.run(trace))
            .unwrap_or_else(|e| Outcome {
                spawn_error: Some(e),
                ..Outcome::default()
            })
    }
}
