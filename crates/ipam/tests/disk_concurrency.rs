//! Many concurrent openers of one network's [`DiskStore`] (each with its own
//! lock file description, as separate processes would have) never hand out
//! an address twice, and the store afterwards matches what they got.

use std::collections::BTreeSet;
use std::fs;
use std::net::IpAddr;
use std::thread;
use std::time::Duration;

use cni_ipam::{Attachment, DiskStore, DiskStoreOptions, RangeSet, RangeSpec, Store, allocate_all};

#[test]
fn concurrent_allocations_are_unique_and_match_the_store() {
    let data = tempfile::tempdir().expect("tempdir");
    let sets = vec![
        RangeSet::canonicalize(&[RangeSpec::subnet("10.20.0.0/26".parse().expect("net"))])
            .expect("set"),
    ];
    let opts = DiskStoreOptions {
        lock_timeout: Duration::from_secs(20),
    };
    let got: Vec<(String, IpAddr)> = thread::scope(|scope| {
        let handles: Vec<_> = (0..24)
            .map(|i| {
                let (sets, data) = (&sets, data.path());
                scope.spawn(move || {
                    let id = format!("ctr-{i}");
                    let mut store = DiskStore::open(data, "net", &opts).expect("open");
                    let a = allocate_all(sets, &mut store, &Attachment::new(&id, "eth0"), &[])
                        .expect("allocate");
                    (id, a[0].address.ip())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    let unique: BTreeSet<IpAddr> = got.iter().map(|(_, a)| *a).collect();
    assert_eq!(
        unique.len(),
        got.len(),
        "an address was handed out twice: {got:?}"
    );
    let dir = data.path().join("net");
    for (id, addr) in &got {
        let content = fs::read_to_string(dir.join(addr.to_string())).expect("reservation file");
        assert_eq!(content, format!("{id}\r\neth0"));
    }
    let store = DiskStore::open_existing(data.path(), "net", &opts)
        .expect("open")
        .expect("exists");
    assert_eq!(store.list().expect("list").len(), got.len());
}
