//! A hostile or broken `dataDir` under a bridge ADD (issue #8): read-only, full (blocks
//! and inodes), a file, a symlinked network directory (dangling or not), and a lock held
//! by another process for longer than the bounded wait. Each ends in a clear CNI error
//! within bounded time, and the ADD is rolled back (no veth, no partial file).

#![allow(
    clippy::unwrap_used,
    reason = "test helpers panic with the failing value"
)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use cni_tests::{PluginOutput, require_root};
use common::{Node, Side};
use serde_json::{Value, json};

#[track_caller]
fn assert_error(out: &PluginOutput, code: u64, msg: &str) {
    assert_eq!(out.error_code(), Some(code), "{}", out.describe());
    let m = out.error_msg().unwrap();
    assert!(m.contains(msg), "expected {msg:?} in {m:?}");
}

fn conf_with_data_dir(n: &Node, dir: &Path) -> Value {
    let mut c = n.bridge_conf("1.0.0", &["10.111.0.0/24"], json!({"ipMasq": true}));
    c["ipam"]["dataDir"] = json!(dir);
    c
}

/// ADD must fail with `code` and leave no veth and no container interface.
fn add_fails(n: &Node, conf: &Value, code: u64, msg: &str) -> PluginOutput {
    let ctr = n.env.add_container();
    let t0 = Instant::now();
    let out = n.exec(Side::Ours, "bridge", "ADD", conf, Some(&ctr), "dd");
    assert!(
        t0.elapsed() < Duration::from_secs(15),
        "took {:?}",
        t0.elapsed()
    );
    assert_error(&out, code, msg);
    assert_eq!(n.host_veths(), Vec::<String>::new(), "veth rolled back");
    assert!(
        !n.nat().contains("id: \\\"dd\\\""),
        "masquerade rolled back"
    );
    // DEL of the failed attachment succeeds or fails cleanly too, without hanging.
    let del = n.exec(Side::Ours, "bridge", "DEL", conf, Some(&ctr), "dd");
    if !del.success() {
        assert!(del.error_code().is_some(), "{}", del.describe());
    }
    out
}

/// A tmpfs mounted on a private temporary directory of this test (only that path is
/// affected); unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn new(opts: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let st = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                opts,
                "cnitest",
                dir.path().to_str().unwrap(),
            ])
            .status()
            .unwrap();
        assert!(st.success(), "mount tmpfs");
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .args(["-l", self.dir.path().to_str().unwrap()])
            .status();
    }
}

#[test]
fn data_dir_that_is_a_file() {
    if !require_root() {
        return;
    }
    let n = Node::new();
    let file = n.env.data_path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    add_fails(&n, &conf_with_data_dir(&n, &file), 5, "Not a directory");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "x");
}

#[test]
fn read_only_data_dir() {
    if !require_root() {
        return;
    }
    let n = Node::new();
    let ro = Tmpfs::new("size=1m,mode=0755");
    std::fs::create_dir(ro.path().join(&n.name)).unwrap();
    let st = Command::new("mount")
        .args(["-o", "remount,ro", ro.path().to_str().unwrap()])
        .status()
        .unwrap();
    assert!(st.success());
    add_fails(
        &n,
        &conf_with_data_dir(&n, ro.path()),
        5,
        "Read-only file system",
    );
    // STATUS reports the store as not available.
    let status = n.bridge_conf("1.1.0", &["10.111.0.0/24"], json!({}));
    let mut status = status;
    status["ipam"]["dataDir"] = json!(ro.path());
    let out = n.run(
        Side::Ours,
        "bridge",
        &n.call(Side::Ours, "STATUS", &status, None, "").ifname(""),
    );
    assert_eq!(out.error_code(), Some(50), "{}", out.describe());
}

fn fill(dir: &Path) {
    // Blocks: one big file until ENOSPC.
    let _ = Command::new("dd")
        .args([
            "if=/dev/zero",
            &format!("of={}", dir.join("filler").display()),
            "bs=4k",
        ])
        .stderr(std::process::Stdio::null())
        .status();
}

#[test]
fn full_data_dir_blocks_and_inodes() {
    if !require_root() {
        return;
    }
    let n = Node::new();
    // No free block: the network directory and the empty lock can be created, the
    // reservation's content cannot be written.
    let full = Tmpfs::new("size=256k,mode=0755");
    let conf = conf_with_data_dir(&n, full.path());
    fill(full.path());
    add_fails(&n, &conf, 5, "No space left on device");
    let store = full.path().join(&n.name);
    let partial: Vec<String> = std::fs::read_dir(&store)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|f| f != "lock")
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        partial,
        Vec::<String>::new(),
        "no partial reservation or temporary file"
    );
    std::fs::remove_file(full.path().join("filler")).unwrap();
    let ctr = n.env.add_container();
    n.add(Side::Ours, "bridge", &conf, &ctr, "after");
    n.del(Side::Ours, "bridge", &conf, Some(&ctr), "after");

    // No free inode.
    let few = Tmpfs::new("size=1m,nr_inodes=4,mode=0755");
    let conf = conf_with_data_dir(&n, few.path());
    for i in 0.. {
        if std::fs::write(few.path().join(format!("f{i}")), "").is_err() {
            break;
        }
    }
    add_fails(&n, &conf, 5, "No space left on device");
}

#[test]
fn symlinked_network_directory() {
    if !require_root() {
        return;
    }
    let n = Node::new();
    let data = tempfile::tempdir().unwrap();
    let conf = conf_with_data_dir(&n, data.path());
    // Dangling: a clear error, nothing created at the target.
    let target = data.path().join("elsewhere");
    std::os::unix::fs::symlink(&target, data.path().join(&n.name)).unwrap();
    add_fails(&n, &conf, 5, "File exists");
    assert!(!target.exists());
    // A link to a directory is followed, as by the reference (an administrator may move
    // a network's state); the state lands in the target and DEL removes it there.
    std::fs::create_dir(&target).unwrap();
    let ctr = n.env.add_container();
    n.add(Side::Ours, "bridge", &conf, &ctr, "ln");
    let files: Vec<PathBuf> = std::fs::read_dir(&target)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(files.iter().any(|f| f.ends_with("10.111.0.2")), "{files:?}");
    n.del(Side::Ours, "bridge", &conf, Some(&ctr), "ln");
    assert!(!target.join("10.111.0.2").exists());
}

struct Holder(Child);

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn lock_held_longer_than_the_bounded_wait() {
    if !require_root() {
        return;
    }
    let n = Node::new();
    let conf = n.bridge_conf("1.0.0", &["10.112.0.0/24"], json!({"ipMasq": true}));
    std::fs::create_dir_all(n.store()).unwrap();
    let ready = n.env.data_path().join("holding");
    let holder = Holder(
        // -o: the lock is held by flock itself, so killing it releases the lock.
        Command::new("flock")
            .arg("-o")
            .arg(n.store().join("lock"))
            .args(["sh", "-c"])
            .arg(format!("touch {}; sleep 60", ready.display()))
            .spawn()
            .unwrap(),
    );
    let t0 = Instant::now();
    while !ready.exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "flock did not start"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let ctr = n.env.add_container();
    let add = n
        .call(Side::Ours, "ADD", &conf, Some(&ctr), "lk")
        .env("CNI_IPAM_LOCK_TIMEOUT_MS", "500");
    let t0 = Instant::now();
    let out = n.run(Side::Ours, "bridge", &add);
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "bounded: {:?}",
        t0.elapsed()
    );
    assert_error(&out, 11, "lock");
    n.assert_clean(Some(&ctr), "lk");
    let del = n
        .call(Side::Ours, "DEL", &conf, Some(&ctr), "lk")
        .env("CNI_IPAM_LOCK_TIMEOUT_MS", "500");
    assert_error(&n.run(Side::Ours, "bridge", &del), 11, "lock");
    drop(holder);
    n.add(Side::Ours, "bridge", &conf, &ctr, "lk");
    n.del(Side::Ours, "bridge", &conf, Some(&ctr), "lk");
    n.assert_clean(Some(&ctr), "lk");
}
