//! libFuzzer target: see crates/cni/tests/common/fuzz_targets.rs.
#![no_main]

#[path = "../../tests/common/fuzz_targets.rs"]
mod fuzz_targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_targets::cni_args(data));
