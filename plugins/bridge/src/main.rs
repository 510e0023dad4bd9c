//! The `bridge` CNI plugin executable: all logic lives in the library.

fn main() {
    cni::skel::run(&bridge::BridgePlugin)
}
