//! libFuzzer target: see plugins/host-local/tests/common/fuzz_targets.rs.
#![no_main]

#[path = "../../tests/common/fuzz_targets.rs"]
mod fuzz_targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_targets::ipam_config(data));
