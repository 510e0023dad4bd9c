// The port mappings the portmap tests share, unit tests (`src/portmap/{ipt,nft}.rs`) and
// integration tests alike: included with `include!` where `PortMapping` and `Protocol`
// are in scope, so both kinds of test build the same sample.

/// A mapping; `host_ip` is parsed.
#[allow(dead_code, reason = "not every includer uses every fixture")]
fn pm(
    host_port: u16,
    container_port: u16,
    protocol: Protocol,
    host_ip: Option<&str>,
) -> PortMapping {
    PortMapping {
        host_port,
        container_port,
        protocol,
        host_ip: host_ip.map(|h| h.parse().unwrap()),
    }
}

/// TCP and UDP on every local address, TCP on one IPv4 address, TCP on `::` (every
/// IPv6 address only).
#[allow(dead_code, reason = "not every includer uses every fixture")]
fn sample() -> Vec<PortMapping> {
    vec![
        pm(8080, 80, Protocol::Tcp, None),
        pm(8053, 53, Protocol::Udp, None),
        pm(9090, 90, Protocol::Tcp, Some("10.99.0.1")),
        pm(9091, 91, Protocol::Tcp, Some("::")),
    ]
}
