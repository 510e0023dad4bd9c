//! `host-local`: the CNI host-local IPAM plugin executable.

fn main() {
    cni::skel::run(&host_local::HostLocal)
}
