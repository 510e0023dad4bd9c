//! On-disk compatibility with the reference host-local binary
//! (Debian's containernetworking-plugins, `/usr/lib/cni/host-local`):
//! our [`DiskStore`] reads, continues and releases what the reference
//! wrote, the reference reads and releases what we wrote, and both contend
//! on the same `lock` file.
//!
//! Skipped with a message when the binary is absent, except under `CI=true`
//! where its absence is a failure.

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Output};
use std::thread;
use std::time::{Duration, Instant};

use cni_ipam::{Attachment, DiskStore, DiskStoreOptions, RangeSet, RangeSpec, Store, allocate_all};
use cni_testsupport::{LockHolder, PluginCall, dir_names};

const REFERENCE: &str = "/usr/lib/cni/host-local";

/// The store after the first attachment of two was released by the other implementation.
const AFTER_RELEASE_OF_THE_FIRST: [&str; 5] = [
    "10.1.2.3",
    "2001:db8:1::3",
    "last_reserved_ip.0",
    "last_reserved_ip.1",
    "lock",
];

fn reference() -> Option<PathBuf> {
    cni_testsupport::require_reference(&["host-local"]).then(|| PathBuf::from(REFERENCE))
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

fn conf(data_dir: &Path) -> String {
    format!(
        r#"{{"cniVersion":"0.4.0","name":"compat","type":"host-local",
            "ipam":{{"type":"host-local","dataDir":"{}",
                     "ranges":[[{{"subnet":"10.1.2.0/24"}}],[{{"subnet":"2001:db8:1::/64"}}]]}}}}"#,
        data_dir.display()
    )
}

fn sets() -> Vec<RangeSet> {
    ["10.1.2.0/24", "2001:db8:1::/64"]
        .iter()
        .map(|s| {
            RangeSet::canonicalize(&[RangeSpec::subnet(s.parse().expect("net"))]).expect("set")
        })
        .collect()
}

fn opts() -> DiskStoreOptions {
    DiskStoreOptions {
        lock_timeout: Duration::from_secs(5),
    }
}

fn spawn_ref(bin: &Path, command: &str, id: &str, ifname: &str, stdin: &str) -> Child {
    let call = PluginCall::new(command, stdin)
        .container_id(id)
        .netns("/proc/self/ns/net")
        .ifname(ifname)
        .cni_path(vec!["/usr/lib/cni".into()]);
    call.spawn(call.process(bin))
}

fn run_ref(bin: &Path, command: &str, id: &str, ifname: &str, stdin: &str) -> Output {
    let out = spawn_ref(bin, command, id, ifname, stdin)
        .wait_with_output()
        .expect("wait reference");
    assert!(
        out.status.success(),
        "reference {command} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn reference_state_is_read_continued_and_released_by_us() {
    let Some(bin) = reference() else { return };
    let data = tempfile::tempdir().expect("tempdir");
    let out = run_ref(&bin, "ADD", "ref-ctr", "eth0", &conf(data.path()));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("10.1.2.2/24"), "{text}");

    let mut store = DiskStore::open_existing(data.path(), "compat", &opts())
        .expect("open")
        .expect("reference created the directory");
    let who = Attachment::new("ref-ctr", "eth0");
    assert_eq!(
        store.lookup(&who).expect("lookup"),
        [ip("10.1.2.2"), ip("2001:db8:1::2")]
    );
    assert_eq!(
        store.last_reserved(0).expect("cursor"),
        Some(ip("10.1.2.2"))
    );
    assert_eq!(
        store.last_reserved(1).expect("cursor"),
        Some(ip("2001:db8:1::2"))
    );

    // our allocation continues the reference's round robin
    let ours =
        allocate_all(&sets(), &mut store, &Attachment::new("ours", "eth0"), &[]).expect("allocate");
    let got: Vec<String> = ours.iter().map(|a| a.address.to_string()).collect();
    assert_eq!(got, ["10.1.2.3/24", "2001:db8:1::3/64"]);
    // the reference's container cannot get a second address from us
    let dup = allocate_all(&sets(), &mut store, &who, &[]).expect_err("duplicate");
    assert!(dup.to_string().contains("duplicate allocation"), "{dup}");

    let mut released = store.release(&who).expect("release");
    released.sort();
    assert_eq!(released, [ip("10.1.2.2"), ip("2001:db8:1::2")]);
    assert_eq!(dir_names(store.dir()), AFTER_RELEASE_OF_THE_FIRST);
}

#[test]
fn our_state_is_read_and_released_by_the_reference() {
    let Some(bin) = reference() else { return };
    let data = tempfile::tempdir().expect("tempdir");
    {
        let mut store = DiskStore::open(data.path(), "compat", &opts()).expect("open");
        allocate_all(&sets(), &mut store, &Attachment::new("ours", "eth0"), &[]).expect("ours");
    }
    let stdin = conf(data.path());
    // the reference's CHECK finds our reservation
    run_ref(&bin, "CHECK", "ours", "eth0", &stdin);
    // the reference's ADD continues after our cursor
    let out = run_ref(&bin, "ADD", "theirs", "eth0", &stdin);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("10.1.2.3/24") && text.contains("2001:db8:1::3/64"),
        "{text}"
    );
    // the reference's DEL removes exactly our reservation files
    run_ref(&bin, "DEL", "ours", "eth0", &stdin);
    let dir = data.path().join("compat");
    assert_eq!(dir_names(&dir), AFTER_RELEASE_OF_THE_FIRST);
}

#[test]
fn legacy_id_only_files_are_released_by_both() {
    let Some(bin) = reference() else { return };
    let data = tempfile::tempdir().expect("tempdir");
    let dir = data.path().join("compat");
    fs::create_dir_all(&dir).expect("mkdir");
    fs::write(dir.join("10.1.2.50"), "old-a").expect("write");
    fs::write(dir.join("10.1.2.51"), "old-b").expect("write");
    {
        let mut store = DiskStore::open_existing(data.path(), "compat", &opts())
            .expect("open")
            .expect("exists");
        assert_eq!(
            store
                .release(&Attachment::new("old-a", "eth0"))
                .expect("release"),
            [ip("10.1.2.50")]
        );
    }
    run_ref(&bin, "DEL", "old-b", "eth0", &conf(data.path()));
    assert_eq!(dir_names(&dir), ["lock"]);
}

#[test]
fn reference_waits_for_our_lock() {
    let Some(bin) = reference() else { return };
    let data = tempfile::tempdir().expect("tempdir");
    let held = DiskStore::open(data.path(), "compat", &opts()).expect("open");
    let mut child = spawn_ref(&bin, "ADD", "waiter", "eth0", &conf(data.path()));
    thread::sleep(Duration::from_millis(400));
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "the reference must block on our flock"
    );
    drop(held);
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn we_time_out_on_a_lock_held_by_another_process() {
    let data = tempfile::tempdir().expect("tempdir");
    let dir = data.path().join("compat");
    fs::create_dir_all(&dir).expect("mkdir");
    let Some(holder) = LockHolder::hold(&dir.join("lock")) else {
        return;
    };
    let short = DiskStoreOptions {
        lock_timeout: Duration::from_millis(300),
    };
    let t0 = Instant::now();
    let err = DiskStore::open(data.path(), "compat", &short).expect_err("held by flock(1)");
    let waited = t0.elapsed();
    holder.release();
    assert!(err.is_try_again(), "{err}");
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(3),
        "waited {waited:?}"
    );
    DiskStore::open(data.path(), "compat", &short).expect("free after the holder died");
}
