//! Allocator micro-benchmarks: one ADD-shaped allocation plus its release,
//! with 10, 1 000 and 60 000 addresses already reserved in a /16, over the
//! in-memory store and over the disk store on tmpfs (the cost that grows with
//! the number of containers on a node: the store is scanned for the
//! duplicate check, as the reference does). Built by CI (`cargo bench
//! --no-run`), run with `cargo bench -p cni-ipam`.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use cni_ipam::store::{Attachment, DiskStore, DiskStoreOptions, MemStore, Store};
use cni_ipam::{Allocator, RangeSet, RangeSpec};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

const RESERVED: [u32; 3] = [10, 1_000, 60_000];

fn range_set() -> RangeSet {
    let subnet = "10.128.0.0/16".parse().expect("valid subnet");
    RangeSet::canonicalize(&[RangeSpec::subnet(subnet)]).expect("valid range set")
}

/// Reserve `n` addresses (10.128.0.2 upwards) for `n` distinct containers.
fn fill(store: &mut dyn Store, n: u32) {
    let ids: Vec<String> = (0..n).map(|i| format!("filler-{i}")).collect();
    for (i, id) in ids.iter().enumerate() {
        let offset = u32::try_from(i).expect("fits") + 2;
        let ip = IpAddr::V4(Ipv4Addr::from(
            u32::from(Ipv4Addr::new(10, 128, 0, 0)) + offset,
        ));
        assert!(
            store
                .reserve(ip, &Attachment::new(id, "eth0"))
                .expect("reserve")
        );
    }
}

fn allocate_and_release(store: &mut dyn Store, set: &RangeSet) {
    let who = Attachment::new("bench-container", "eth0");
    let got = Allocator::new(set, 0, store)
        .allocate(&who, None)
        .expect("a free address");
    black_box(got);
    store.release(&who).expect("release");
}

fn in_memory(c: &mut Criterion) {
    let set = range_set();
    let mut group = c.benchmark_group("allocate_release/mem");
    for n in RESERVED {
        let mut store = MemStore::new();
        fill(&mut store, n);
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| allocate_and_release(&mut store, &set));
        });
    }
    group.finish();
}

fn on_disk(c: &mut Criterion) {
    let set = range_set();
    // tmpfs where available, as the reference docs recommend for dataDir.
    let base = if Path::new("/dev/shm").is_dir() {
        tempfile::tempdir_in("/dev/shm")
    } else {
        tempfile::tempdir()
    }
    .expect("temp dir");
    let mut group = c.benchmark_group("allocate_release/disk");
    group.sample_size(10);
    for n in RESERVED {
        let network = format!("bench{n}");
        let opts = DiskStoreOptions::default();
        {
            let mut store = DiskStore::open(base.path(), &network, &opts).expect("open store");
            fill(&mut store, n);
        }
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            // Each iteration is a whole host-local ADD+DEL as far as the
            // store goes: open (lock), allocate, release, close.
            b.iter(|| {
                let mut store = DiskStore::open(base.path(), &network, &opts).expect("open store");
                allocate_and_release(&mut store, &set);
            });
        });
    }
    group.finish();
}

criterion_group!(benches, in_memory, on_disk);
criterion_main!(benches);
