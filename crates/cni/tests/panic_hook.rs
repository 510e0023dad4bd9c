//! A panic inside a plugin must still end as a CNI error object on stdout
//! with exit status 1. The test re-runs this test binary as the "plugin".

use cni::conf::NoPluginConfig;
use cni::{CmdArgs, NetConf, Plugin, Result, Success};
use cni_testsupport::PluginCall;

struct Panicky;

impl Plugin for Panicky {
    type Config = NoPluginConfig;
    fn name(&self) -> &'static str {
        "panicky"
    }
    fn add(&self, _: &CmdArgs, _: &NetConf) -> Result<Success> {
        let v: Vec<u8> = Vec::new();
        // An out-of-bounds index: a real bug, not an explicit panic!().
        let i = v.len() + 3;
        Ok(Success {
            routes: Vec::with_capacity(usize::from(v[i])),
            ..Success::default()
        })
    }
    fn del(&self, _: &CmdArgs, _: &NetConf) -> Result<()> {
        Ok(())
    }
    fn check(&self, _: &CmdArgs, _: &NetConf) -> Result<()> {
        Ok(())
    }
}

#[test]
fn child_plugin_entry() {
    if std::env::var_os("CNI_SKEL_TEST_CHILD").is_some() {
        cni::skel::run(&Panicky);
    }
}

#[test]
fn panic_becomes_error_object() {
    let call = PluginCall::new("ADD", r#"{"cniVersion":"0.4.0","name":"n"}"#)
        .container_id("c1")
        .netns("/nonexistent")
        .cni_path(vec!["/opt/cni/bin".into()])
        .env("CNI_SKEL_TEST_CHILD", "1");
    let mut this_test = call.process(std::env::current_exe().unwrap());
    this_test.args([
        "--exact",
        "child_plugin_entry",
        "--nocapture",
        "--test-threads=1",
    ]);
    let out = call.output_of(this_test);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8(out.stdout).unwrap();
    // The libtest harness prints its own header before the test runs.
    let start = stdout.find('{').expect("an error object on stdout");
    let err: serde_json::Value = serde_json::from_str(stdout[start..].trim()).unwrap();
    assert_eq!(err["code"], 999);
    assert_eq!(err["cniVersion"], "0.4.0");
    assert!(
        err["msg"].as_str().unwrap().contains("index out of bounds"),
        "{err}"
    );
}
