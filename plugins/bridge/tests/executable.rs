//! The `bridge` executable starts and answers VERSION. Being an integration test of
//! this package, it also makes `cargo test --workspace` rebuild `target/<profile>/bridge`,
//! which the namespace tests in `tests/` run (with host-local in-process only when both
//! binaries come from the same build).

#![allow(
    clippy::unwrap_used,
    reason = "integration tests panic with the failing value"
)]

use std::path::Path;

use cni_testsupport::PluginCall;

#[test]
fn version_lists_every_spec_version() {
    let out = PluginCall::new("VERSION", r#"{"cniVersion":"1.0.0"}"#)
        .run_here(Path::new(env!("CARGO_BIN_EXE_bridge")));
    out.assert_success();
    let v = out.json();
    assert_eq!(v["cniVersion"], "1.0.0");
    assert_eq!(
        v["supportedVersions"],
        serde_json::json!([
            "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"
        ])
    );
}
