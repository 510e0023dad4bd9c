//! The body of the host-local fuzz target, shared by the libFuzzer binary in
//! `plugins/host-local/fuzz` and the corpus replay test `tests/fuzz_corpus.rs`
//! (run in CI). Any configuration ends in a validated config or a CNI error
//! with code 4 (CNI_ARGS) or 7 (invalid config); an accepted config's range
//! sets never overlap, and a round-robin walk from any cursor stays inside
//! its set.

use std::collections::BTreeMap;

use cni::NetConf;
use cni::version::ALL;
use cni_ipam::iter::RoundRobin;
use serde_json::Value;

/// First byte: spec version (low 3 bits) and whether `CNI_ARGS` requests an
/// address (high bit); the rest is the network configuration.
pub fn ipam_config(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let Ok(value) = cni::gojson::parse_slice(rest) else {
        return;
    };
    // What the skel would have rejected never reaches host-local.
    let Ok(mut conf) = NetConf::<BTreeMap<String, Value>>::from_value(value) else {
        return;
    };
    conf.version = ALL[usize::from(selector & 0x07) % ALL.len()];
    let cni_args = if selector & 0x80 == 0 {
        ""
    } else {
        "IgnoreUnknown=1;IP=10.1.2.3"
    };
    match cni_ipam::host_local::config::load(&conf, std::ffi::OsStr::new(cni_args)) {
        Ok(c) => {
            for (i, set) in c.range_sets.iter().enumerate() {
                for other in &c.range_sets[i + 1..] {
                    assert!(!set.overlaps(other), "overlapping range sets accepted");
                }
                let cursors = [None, set.ranges().last().map(|r| r.range_end)];
                for cursor in cursors {
                    for (addr, range) in RoundRobin::new(set, cursor).take(300) {
                        assert!(set.contains(addr), "{addr} outside its set");
                        assert!(range.contains(addr), "{addr} outside its range");
                    }
                }
            }
        }
        Err(e) => assert!(
            [4, 5, 7].contains(&e.code),
            "unexpected code {} for {}",
            e.code,
            e.msg
        ),
    }
}
