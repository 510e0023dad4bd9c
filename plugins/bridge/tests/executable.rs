//! The `bridge` executable starts and answers VERSION. Being an integration test of
//! this package, it also makes `cargo test --workspace` rebuild `target/<profile>/bridge`,
//! which the namespace tests in `tests/` run (with host-local in-process only when both
//! binaries come from the same build).

#![allow(
    clippy::unwrap_used,
    reason = "integration tests panic with the failing value"
)]

use std::io::Write;
use std::process::{Command, Stdio};

#[test]
fn version_lists_every_spec_version() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_bridge"))
        .env_clear()
        .env("CNI_COMMAND", "VERSION")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(br#"{"cniVersion":"1.0.0"}"#)
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["cniVersion"], "1.0.0");
    assert_eq!(
        v["supportedVersions"],
        serde_json::json!([
            "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"
        ])
    );
}
