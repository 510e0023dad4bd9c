//! The `portmap` CNI plugin executable (see the library for the behaviour).

fn main() {
    cni::skel::run(&portmap::Portmap)
}
