//! A hostile or broken `dataDir` under a bridge ADD: read-only, full (blocks
//! and inodes), a file, a symlinked network directory (dangling or not), and a lock held
//! by another process for longer than the bounded wait. Each ends in a clear CNI error
//! within bounded time, and the ADD is rolled back (no veth, no partial file).
//!
//! Then symlinks planted inside the store (`lock`, a cursor, a reservation name, the
//! index): host-local refuses each with code 5 naming the link, reads, creates and
//! changes nothing outside `dataDir` through it, and works again once the link is gone.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers panic with the failing value"
)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use cni_testsupport::{LockHolder, PluginOutput, node};
use node::{Node, Side};
use serde_json::{Value, json};

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
    out.assert_error(code, msg);
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
    let Some(n) = Node::root() else { return };
    let file = n.env.data_path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    add_fails(&n, &conf_with_data_dir(&n, &file), 5, "Not a directory");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "x");
}

#[test]
fn read_only_data_dir() {
    let Some(n) = Node::root() else { return };
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
    let Some(n) = Node::root() else { return };
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
    let Some(n) = Node::root() else { return };
    let data = tempfile::tempdir().unwrap();
    let conf = conf_with_data_dir(&n, data.path());
    let link = data.path().join(&n.name);
    let msg = format!("{} is a symbolic link", link.display());
    // Dangling: a clear error, nothing created at the target.
    let target = data.path().join("elsewhere");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    add_fails(&n, &conf, 5, &msg);
    assert!(!target.exists());
    // A link to a directory is refused too (the reference follows it): nothing is
    // created in the target.
    std::fs::create_dir(&target).unwrap();
    add_fails(&n, &conf, 5, &msg);
    let files: Vec<PathBuf> = std::fs::read_dir(&target)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files, Vec::<PathBuf>::new());
    // Without the link, ADD and DEL work.
    std::fs::remove_file(&link).unwrap();
    let ctr = n.env.add_container();
    n.add(Side::Ours, "bridge", &conf, &ctr, "ln");
    assert!(link.join("10.111.0.2").is_file());
    n.del(Side::Ours, "bridge", &conf, Some(&ctr), "ln");
    assert!(!link.join("10.111.0.2").exists());
    n.assert_clean(Some(&ctr), "ln");
}

#[test]
fn data_dir_that_is_a_symlink() {
    let Some(n) = Node::root() else { return };
    let data = tempfile::tempdir().unwrap();
    // A dangling dataDir link: code 5 with the OS error, nothing created at its target.
    let target = data.path().join("real");
    let link = data.path().join("state");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let conf = conf_with_data_dir(&n, &link);
    add_fails(&n, &conf, 5, "File exists");
    assert!(!target.exists());
    // dataDir itself may be a link to a directory (only links inside the store are
    // refused): the state lands in the target.
    std::fs::create_dir(&target).unwrap();
    let ctr = n.env.add_container();
    n.add(Side::Ours, "bridge", &conf, &ctr, "dl");
    assert!(target.join(&n.name).join("10.111.0.2").is_file());
    n.del_clean(&conf, Some(&ctr), "dl");
}

/// host-local (ours) alone on a store in `data`: ADD or DEL of container `id`. host-local
/// touches no network namespace, so it runs here.
fn host_local(data: &Path, name: &str, command: &str, id: &str) -> PluginOutput {
    let conf = json!({
        "cniVersion": "1.1.0",
        "name": name,
        "type": "bridge",
        "ipam": {"type": "host-local", "dataDir": data, "ranges": [[{"subnet": "10.113.0.0/24"}]]},
    });
    cni_testsupport::PluginCall::new(command, conf.to_string())
        .container_id(id)
        .netns("/run/netns/cnit-not-used")
        .cni_path(vec![Side::Ours.cni_path()])
        .run_here(&Side::Ours.bin("host-local"))
}

/// Every file under `dir` with its content (symlinks as `-> target`), sorted.
fn snapshot(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            if m.file_type().is_symlink() {
                let t = std::fs::read_link(&p).unwrap();
                out.push((p, format!("-> {}", t.display())));
            } else if m.is_dir() {
                todo.push(p);
            } else {
                out.push((p.clone(), std::fs::read_to_string(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// Plants a symlink at `<dataDir>/<rel>` (`{net}` is the network name) pointing to
/// `target` after one ADD made the store; then ADD must fail with code 5 naming the
/// link, the outside directory (which holds `target`) must be as before, and after the
/// link is removed ADD and DEL must work.
fn planted_symlink_is_refused(rel: &str, target_exists: bool) {
    let data = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let name = cni_testsupport::unique_name("sl");
    let target = outside.path().join("target");
    if target_exists {
        std::fs::write(&target, "10.113.0.200").unwrap();
    }
    host_local(data.path(), &name, "ADD", "first").assert_success();
    let link = data.path().join(rel.replace("{net}", &name));
    if link.exists() {
        std::fs::remove_file(&link).unwrap();
    }
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let before = snapshot(outside.path());
    // The reservations, cursors and lock; the index's stamp may be refreshed (planting
    // the link changed the directory), which is housekeeping, not state.
    let store = || -> Vec<(PathBuf, String)> {
        snapshot(data.path())
            .into_iter()
            .filter(|(p, v)| !v.starts_with("host-local-index ") || p == &link)
            .collect()
    };
    let store_before = store();
    let out = host_local(data.path(), &name, "ADD", "second");
    out.assert_error(5, &format!("{} is a symbolic link", link.display()));
    // STATUS reads everything but the cursors.
    if !rel.contains("last_reserved_ip") {
        let status = host_local(data.path(), &name, "STATUS", "");
        status.assert_error(50, &format!("{}", link.display()));
    }
    assert_eq!(
        snapshot(outside.path()),
        before,
        "{rel}: nothing outside changed"
    );
    assert_eq!(target.exists(), target_exists, "{rel}: target not created");
    assert_eq!(store(), store_before, "{rel}: nothing lost or added");
    std::fs::remove_file(&link).unwrap();
    let out = host_local(data.path(), &name, "ADD", "second");
    out.assert_success();
    assert!(
        out.json()["ips"][0]["address"]
            .as_str()
            .is_some_and(|a| a.starts_with("10.113.0.")),
        "{}",
        out.describe()
    );
    for id in ["first", "second"] {
        host_local(data.path(), &name, "DEL", id).assert_success();
    }
    assert_eq!(snapshot(outside.path()), before);
}

#[test]
fn planted_lock_symlink_to_a_missing_path_creates_nothing() {
    planted_symlink_is_refused("{net}/lock", false);
}

#[test]
fn planted_lock_symlink_to_an_outside_file_leaves_it_alone() {
    planted_symlink_is_refused("{net}/lock", true);
}

#[test]
fn planted_cursor_symlink_is_not_followed() {
    planted_symlink_is_refused("{net}/last_reserved_ip.0", true);
}

#[test]
fn planted_reservation_symlink_is_not_followed() {
    // The address the next ADD would take.
    planted_symlink_is_refused("{net}/10.113.0.3", true);
}

#[test]
fn planted_index_symlink_is_not_followed() {
    planted_symlink_is_refused(".host-local-index.{net}", true);
}

#[test]
fn lock_held_longer_than_the_bounded_wait() {
    let Some(n) = Node::root() else { return };
    let conf = n.bridge_conf("1.0.0", &["10.112.0.0/24"], json!({"ipMasq": true}));
    std::fs::create_dir_all(n.store()).unwrap();
    let Some(holder) = LockHolder::hold(&n.store().join("lock")) else {
        return;
    };
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
    out.assert_error(11, "lock");
    n.assert_clean(Some(&ctr), "lk");
    let del = n
        .call(Side::Ours, "DEL", &conf, Some(&ctr), "lk")
        .env("CNI_IPAM_LOCK_TIMEOUT_MS", "500");
    n.run(Side::Ours, "bridge", &del).assert_error(11, "lock");
    holder.release();
    n.add(Side::Ours, "bridge", &conf, &ctr, "lk");
    n.del_clean(&conf, Some(&ctr), "lk");
}
