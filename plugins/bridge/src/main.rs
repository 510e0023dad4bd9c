//! The `bridge` CNI plugin executable: all logic lives in the library.

fn main() {
    bridge::register_builtin_delegates();
    cni::skel::run_then(&bridge::BridgePlugin, cni_netfilter::release_sockets)
}
