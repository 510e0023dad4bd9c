//! Which `prevResult` addresses are the container's (as the reference portmap picks them,
//! containernetworking/plugins `plugins/meta/portmap/main.go`).

use cni::Success;
use ipnetwork::IpNetwork;

/// The first IPv4 and the first IPv6 address that has no interface index, an index out of
/// range, or points at `ifname` inside a sandbox (host-side interfaces are skipped).
pub(crate) fn container_ips(prev: &Success, ifname: &str) -> Vec<IpNetwork> {
    let is_container = |idx: Option<usize>| match idx.and_then(|i| prev.interfaces.get(i)) {
        None => true,
        Some(iface) => {
            iface.name == ifname && iface.sandbox.as_deref().is_some_and(|s| !s.is_empty())
        }
    };
    let mut out: Vec<IpNetwork> = Vec::new();
    for ip in &prev.ips {
        if is_container(ip.interface) && !out.iter().any(|o| o.is_ipv4() == ip.address.is_ipv4()) {
            out.push(ip.address);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_container_addresses_per_family() {
        let prev = Success::from_value(
            &serde_json::json!({
                "cniVersion": "1.0.0",
                "interfaces": [{"name": "host"}, {"name": "eth0", "sandbox": "/run/netns/x"}],
                "ips": [
                    {"interface": 0, "address": "10.0.0.1/24"},
                    {"interface": 1, "address": "10.0.0.2/24"},
                    {"interface": 1, "address": "10.0.0.3/24"},
                    {"address": "2001:db8::2/64"}
                ]
            }),
            cni::version::V1_0_0,
        )
        .unwrap();
        let ips = container_ips(&prev, "eth0");
        assert_eq!(
            ips,
            [
                "10.0.0.2/24".parse::<IpNetwork>().unwrap(),
                "2001:db8::2/64".parse().unwrap()
            ]
        );
        assert_eq!(
            container_ips(&prev, "eth1"),
            ["2001:db8::2/64".parse::<IpNetwork>().unwrap()]
        );
    }
}
