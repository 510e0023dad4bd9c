//! `host-local`: the CNI host-local IPAM plugin executable.

// The build identity, found by `bridge` to run this same code in-process
// (`cni::invoke`, "Built-in delegates"); `readelf -n` shows it.
cni::identity_note!(IDENTITY_NOTE, host_local::IDENTITY);

fn main() {
    // Referenced, so no linker garbage-collects the note.
    std::hint::black_box(&IDENTITY_NOTE);
    cni::skel::run(&host_local::HostLocal)
}
