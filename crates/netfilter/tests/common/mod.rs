//! Helpers the conntrack tests of several test binaries share (`mod common;`).

use std::time::{Duration, Instant};

use cni_netfilter::conntrack::{self, Family};
use cni_testsupport::Netns;

/// Waits (at most 5 s) until `a` has at least `n` conntrack entries (packets cross a
/// veth asynchronously).
pub fn wait_for_entries(a: &Netns, n: u32) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let count = a.run_in(conntrack::entry_count).unwrap();
        if count >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{count} of {n} conntrack entries"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// How many UDP conntrack entries of `family` to `port` `a` has.
pub fn flows(a: &Netns, family: Family, port: u16) -> usize {
    a.run_in(|| conntrack::udp_flows_to_port(family, port))
        .unwrap()
        .len()
}
