//! Replays the committed fuzz corpus (`plugins/host-local/fuzz/corpus/`)
//! through the fuzz target body, so CI re-checks every input a fuzzing run
//! kept, without libFuzzer.

#[path = "common/fuzz_targets.rs"]
mod fuzz_targets;

use std::path::Path;

#[test]
fn ipam_config_corpus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/ipam_config");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).expect("corpus directory") {
        let path = entry.expect("corpus entry").path();
        fuzz_targets::ipam_config(&std::fs::read(&path).expect("corpus file"));
        count += 1;
    }
    assert!(count > 0, "empty corpus {}", dir.display());
}
