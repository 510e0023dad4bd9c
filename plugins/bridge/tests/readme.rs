//! plugins/bridge/README.md documents every key the plugin reads.

use bridge::config::{BridgeConf, TrunkEntry};
use cni::conf::struct_keys;

#[test]
fn every_key_is_documented() {
    let readme = include_str!("../README.md");
    let keys = [struct_keys::<BridgeConf>(), struct_keys::<TrunkEntry>()].concat();
    assert!(keys.len() > 15, "{keys:?}");
    for key in keys {
        assert!(
            readme.contains(&format!("`{key}`")) || readme.contains(&format!("\"{key}\"")),
            "plugins/bridge/README.md does not document {key:?}"
        );
    }
}
