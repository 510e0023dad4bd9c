//! Micro-benchmarks of the per-call CPU work in the `cni` crate: parsing a network
//! configuration (a chained portmap config with `runtimeConfig` and a `prevResult`),
//! parsing the `prevResult` into a typed result, rendering results in each layout, and a
//! whole ADD through `skel::dispatch` with a plugin that does nothing.
//!
//! Built by CI (`cargo bench --no-run`), run by hand: `cargo bench -p cni`.
#![allow(missing_docs, reason = "criterion generates the bench entry points")]

use std::collections::BTreeMap;
use std::hint::black_box;

use cni::version::{V0_3_1, V0_4_0, V1_0_0, V1_1_0};
use cni::{CmdArgs, NetConf, Success};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use serde::Deserialize;

/// The plugin keys of a bridge configuration, as a plugin would declare them.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code, reason = "only parsed")]
struct BridgeKeys {
    #[serde(default)]
    bridge: Option<String>,
    #[serde(default)]
    is_gateway: bool,
    #[serde(default)]
    ip_masq: bool,
    #[serde(default)]
    mtu: Option<u32>,
    #[serde(default)]
    hairpin_mode: bool,
}

/// The plugin keys of a portmap configuration.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code, reason = "only parsed")]
struct PortmapKeys {
    #[serde(default)]
    snat: Option<bool>,
    #[serde(default)]
    mark_masq_bit: Option<u32>,
    #[serde(default)]
    external_set_mark_chain: Option<String>,
}

const BRIDGE_CONF: &str = r#"{
  "cniVersion": "1.0.0", "name": "k8s-pod-network", "type": "bridge",
  "bridge": "cni0", "isGateway": true, "ipMasq": true, "hairpinMode": true, "mtu": 1500,
  "ipam": { "type": "host-local", "dataDir": "/var/lib/cni/networks",
            "ranges": [[{ "subnet": "10.88.0.0/16", "gateway": "10.88.0.1" }],
                       [{ "subnet": "fd00:88::/64" }]],
            "routes": [{ "dst": "0.0.0.0/0" }, { "dst": "::/0" }] }
}"#;

const PREV_RESULT: &str = r#"{
  "cniVersion": "1.0.0",
  "interfaces": [
    { "name": "cni0", "mac": "8e:1d:4c:7b:2a:01" },
    { "name": "veth1a2b3c4d", "mac": "3a:5f:0e:11:22:33" },
    { "name": "eth0", "mac": "0a:58:0a:58:00:05", "sandbox": "/var/run/netns/cni-1234" }
  ],
  "ips": [
    { "interface": 2, "address": "10.88.0.5/16", "gateway": "10.88.0.1" },
    { "interface": 2, "address": "fd00:88::5/64", "gateway": "fd00:88::1" }
  ],
  "routes": [{ "dst": "0.0.0.0/0", "gw": "10.88.0.1" }, { "dst": "::/0" }],
  "dns": { "nameservers": ["10.96.0.10"], "search": ["default.svc.cluster.local"] }
}"#;

fn portmap_conf() -> String {
    format!(
        r#"{{ "cniVersion": "1.0.0", "name": "k8s-pod-network", "type": "portmap",
  "capabilities": {{ "portMappings": true }}, "snat": true,
  "runtimeConfig": {{ "portMappings": [
    {{ "hostPort": 8080, "containerPort": 80, "protocol": "tcp" }},
    {{ "hostPort": 8053, "containerPort": 53, "protocol": "udp", "hostIP": "192.0.2.1" }} ] }},
  "prevResult": {PREV_RESULT} }}"#
    )
}

fn parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("conf_parse");
    let bridge = BRIDGE_CONF.as_bytes();
    g.throughput(Throughput::Bytes(bridge.len() as u64));
    g.bench_function("bridge", |b| {
        b.iter(|| {
            let conf: NetConf<BridgeKeys> =
                serde_json::from_slice(black_box(bridge)).expect("bridge conf");
            conf
        });
    });
    let portmap = portmap_conf().into_bytes();
    g.throughput(Throughput::Bytes(portmap.len() as u64));
    g.bench_function("portmap_with_prev_result", |b| {
        b.iter(|| {
            let conf: NetConf<PortmapKeys> =
                serde_json::from_slice(black_box(&portmap)).expect("portmap conf");
            let prev = conf.prev_result().expect("prevResult").expect("present");
            (conf, prev)
        });
    });
    g.finish();
}

fn render(c: &mut Criterion) {
    let result = Success::from_slice(PREV_RESULT.as_bytes(), V1_0_0).expect("result");
    let mut g = c.benchmark_group("result");
    for v in [V0_3_1, V0_4_0, V1_0_0, V1_1_0] {
        g.bench_with_input(BenchmarkId::new("render", v.to_string()), &v, |b, v| {
            b.iter(|| black_box(&result).to_json(*v).expect("render"));
        });
    }
    g.bench_function("parse_1.0.0", |b| {
        b.iter(|| Success::from_slice(black_box(PREV_RESULT.as_bytes()), V1_0_0).expect("parse"));
    });
    g.finish();
}

/// A plugin that returns a fixed result: measures only the skel's own work.
struct Noop(Success);

impl cni::Plugin for Noop {
    type Config = BridgeKeys;
    fn name(&self) -> &'static str {
        "noop"
    }
    fn add(&self, _: &CmdArgs, _: &NetConf<BridgeKeys>) -> cni::Result<Success> {
        Ok(self.0.clone())
    }
    fn del(&self, _: &CmdArgs, _: &NetConf<BridgeKeys>) -> cni::Result<()> {
        Ok(())
    }
    fn check(&self, _: &CmdArgs, _: &NetConf<BridgeKeys>) -> cni::Result<()> {
        Ok(())
    }
}

fn skel(c: &mut Criterion) {
    let plugin = Noop(Success::from_slice(PREV_RESULT.as_bytes(), V1_0_0).expect("result"));
    let env: BTreeMap<&str, &str> = [
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "0123456789abcdef0123456789abcdef"),
        ("CNI_NETNS", "/var/run/netns/cni-1234"),
        ("CNI_NETNS_OVERRIDE", "1"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/opt/cni/bin"),
    ]
    .into_iter()
    .collect();
    let getenv = |k: &str| env.get(k).map(std::ffi::OsString::from);
    c.bench_function("skel_dispatch_add", |b| {
        b.iter(|| {
            let mut stdin = BRIDGE_CONF.as_bytes();
            let mut out = Vec::with_capacity(1024);
            let mut err = Vec::new();
            let code = cni::skel::dispatch(&plugin, &getenv, &mut stdin, &mut out, &mut err);
            assert_eq!(code, 0, "{}", String::from_utf8_lossy(&out));
            out
        });
    });
}

criterion_group!(benches, parse, render, skel);
criterion_main!(benches);
