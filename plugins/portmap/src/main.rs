//! The `portmap` CNI plugin executable (see the library for the behaviour).

fn main() {
    cni::skel::run_then(&portmap::Portmap, cni_netfilter::release_sockets)
}
