//! plugins/portmap/README.md documents every key the plugin reads.

use cni::conf::struct_keys;
use portmap::PortmapConfig;

#[test]
fn every_key_is_documented() {
    let readme = include_str!("../README.md");
    let keys = [
        struct_keys::<PortmapConfig>(),
        struct_keys::<cni::PortMapping>(),
    ]
    .concat();
    assert!(keys.len() > 10, "{keys:?}");
    for key in keys {
        assert!(
            readme.contains(&format!("`{key}`")),
            "plugins/portmap/README.md does not document {key:?}"
        );
    }
}
