//! `host-local`: the CNI host-local IPAM plugin executable. The plugin is
//! [`cni_ipam::host_local`] (crates/ipam); this is only its `main`.

use cni_ipam::host_local::{HostLocal, IDENTITY};

// The build identity, found by `bridge` to run this same code in-process
// (`cni::invoke`, "Built-in delegates"); `readelf -n` shows it.
cni::identity_note!(IDENTITY_NOTE, IDENTITY);

fn main() {
    // Referenced, so no linker garbage-collects the note.
    std::hint::black_box(&IDENTITY_NOTE);
    cni::skel::run(&HostLocal)
}
