//! Replays the committed fuzz corpora (`crates/cni/fuzz/corpus/<target>/`)
//! through the fuzz target bodies, so every input a fuzzing run kept is
//! re-checked in CI without libFuzzer.

#[path = "common/fuzz_targets.rs"]
mod fuzz_targets;

use std::path::Path;

fn replay(target: &str, body: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("corpus entry").path();
        body(&std::fs::read(&path).expect("corpus file"));
        count += 1;
    }
    assert!(count > 0, "empty corpus {}", dir.display());
}

#[test]
fn skel_stdin_corpus() {
    replay("skel_stdin", fuzz_targets::skel_stdin);
}

#[test]
fn result_json_corpus() {
    replay("result_json", fuzz_targets::result_json);
}

#[test]
fn cni_args_corpus() {
    replay("cni_args", fuzz_targets::cni_args);
}
