//! The `loopback` CNI plugin executable (see the library for the behaviour).

fn main() {
    cni::skel::run(&loopback::Loopback)
}
