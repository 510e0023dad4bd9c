//! `/proc/sys` access with keys as path components.
//!
//! Interface names may contain dots (`cni0.100`), so the primary API takes components:
//! `["net", "ipv6", "conf", "cni0.100", "accept_ra"]`. The dotted helpers follow
//! `sysctl(8)`: components are separated by `.` and a `/` inside a component stands for a
//! `.` (`net.ipv6.conf.cni0/100.accept_ra`).
//!
//! `net.*` keys belong to the network namespace of the thread that *opens* the file, so use
//! these functions on a thread inside the target namespace (see [`crate::NetNs::run`] and
//! [`crate::NetNs::enter`]).
//!
//! # Why `net.*` keys are opened relative to cached directories
//!
//! Each network namespace has its own dentries for the directories below `/proc/sys/net`
//! (`ipv4`, `ipv6`, ...): `/proc/sys/net` itself is one directory shared by all
//! namespaces (the same inode everywhere), and a name in it is resolved in the namespace
//! of the thread looking it up. All the `ipv4` dentries have the same parent and the same
//! name, so they sit in one dcache hash chain, and every path lookup of
//! `/proc/sys/net/ipv4` walks that chain calling `proc_sys_compare` on each entry until
//! it reaches the caller's (newer dentries come first). Measured on a node with 1000
//! container namespaces (Linux 6.18), opening `/proc/sys/net/ipv4/ip_forward` from the
//! host namespace cost ~120 us in a warm loop and ~1 ms for the first open in a new
//! process, against ~1-5 us for `/proc/sys/kernel/hostname` or in a namespace whose
//! dentries are newer. `openat(<fd of /proc/sys/net>, "ipv4/ip_forward")` still cost
//! ~105 us (the slow lookup is `ipv4`), `openat(<fd of /proc/sys/net/ipv4>,
//! "ip_forward")` ~1 us: the dentries below a namespace's own `ipv4` hash by that parent.
//!
//! So every thread caches descriptors of `/proc/sys/net/<first component>` (`ipv4`,
//! `ipv6`, ...) and opens the rest of a `net.*` key with `openat(2)` relative to one;
//! the slow lookup happens once per thread, namespace and first component. A descriptor
//! keeps resolving names in the namespace it was opened in, whichever namespace the
//! thread is in later, so entries are keyed by the identity (device and inode) of the
//! thread's current network namespace, read with a `stat` of `/proc/thread-self/ns/net`
//! (no sysctl dentry involved; a few microseconds). After a switch of namespaces
//! ([`crate::NetNs::enter`]) the identity differs and the directory of the new namespace
//! is opened. Entries for two namespaces (the host's and a container's) and four first
//! components each fit, so going back and forth does not reopen them.
//!
//! Namespace inode numbers are reused once a namespace is freed, so a cached descriptor
//! may belong to a dead namespace that had the current namespace's identity. Such a
//! directory fails every lookup with `ENOENT`, so an `ENOENT` through a cached directory
//! is checked with a lookup of `.` (which fails only in a dead directory), and a dead
//! directory is reopened. A cached descriptor does not keep its namespace alive. If the
//! namespace identity cannot be read or the directory cannot be opened, the plain path is
//! opened. Keys outside `net.*`, and `net.<x>` directories themselves, are always opened
//! by path.

use std::cell::RefCell;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, open, openat};
use nix::sys::stat::Mode;

use crate::error::{Error, Result};

const ROOT: &str = "/proc/sys";

/// The calling thread's network namespace; its `stat` identifies the namespace.
const THREAD_NETNS: &str = "/proc/thread-self/ns/net";

/// Directories cached per thread: two namespaces (the host's and a container's) times
/// four first components below `net` (a plugin uses `ipv4` and `ipv6`).
const NET_DIR_SLOTS: usize = 8;

/// Device and inode of a network namespace.
type NsId = (u64, u64);

/// A cached `/proc/sys/net/<name>` directory of a namespace.
struct NetDir {
    ns: NsId,
    name: String,
    fd: OwnedFd,
}

/// The `/proc/sys/net/<name>` directories of the namespaces a thread was in, most
/// recently used first.
struct NetDirs {
    entries: Vec<NetDir>,
}

impl NetDirs {
    const fn new() -> Self {
        Self {
            entries: Vec::new(),
        }
    }

    /// The directory `name` of namespace `ns`, which becomes the most recently used.
    fn get(&mut self, ns: NsId, name: &str) -> Option<&OwnedFd> {
        let i = self
            .entries
            .iter()
            .position(|e| e.ns == ns && e.name == name)?;
        self.entries[..=i].rotate_right(1);
        self.entries.first().map(|e| &e.fd)
    }

    /// Caches `fd` as directory `name` of namespace `ns`, the most recently used entry,
    /// dropping the least recently used one when full.
    fn insert(&mut self, ns: NsId, name: &str, fd: OwnedFd) {
        self.remove(ns, name);
        let name = name.to_string();
        self.entries.insert(0, NetDir { ns, name, fd });
        self.entries.truncate(NET_DIR_SLOTS);
    }

    fn remove(&mut self, ns: NsId, name: &str) {
        self.entries.retain(|e| e.ns != ns || e.name != name);
    }
}

thread_local! {
    static NET_DIRS: RefCell<NetDirs> = const { RefCell::new(NetDirs::new()) };
}

/// How a key is opened.
#[derive(Clone, Copy, Debug)]
enum Access {
    Read,
    Write,
}

impl Access {
    fn flags(self) -> OFlag {
        let mode = match self {
            Access::Read => OFlag::O_RDONLY,
            Access::Write => OFlag::O_WRONLY,
        };
        mode | OFlag::O_CLOEXEC
    }

    fn open_path(self, path: &Path) -> io::Result<File> {
        match self {
            Access::Read => File::open(path),
            Access::Write => fs::OpenOptions::new().write(true).open(path),
        }
    }
}

/// Flags of the cached directories and of the liveness probe.
fn dir_flags() -> OFlag {
    OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC
}

/// Identity of the calling thread's network namespace, `None` when it cannot be read.
fn current_netns() -> Option<NsId> {
    let md = fs::metadata(THREAD_NETNS).ok()?;
    Some((md.dev(), md.ino()))
}

/// True when `dir` is a `/proc/sys` directory of a namespace that is gone.
fn is_dead(dir: impl AsFd) -> bool {
    matches!(
        openat(dir, ".", dir_flags(), Mode::empty()),
        Err(Errno::ENOENT)
    )
}

/// Opens `rel` below `/proc/sys/net/<name>` through the calling thread's cached directory
/// of its current namespace. `None` when that route is not available and the caller
/// should open the plain path.
fn open_in_net_dir(name: &str, rel: &str, access: Access) -> Option<io::Result<File>> {
    let ns = current_netns()?;
    let done = |r: nix::Result<OwnedFd>| Some(r.map(File::from).map_err(io::Error::from));
    NET_DIRS
        .try_with(|dirs| {
            let mut dirs = dirs.try_borrow_mut().ok()?;
            if let Some(dir) = dirs.get(ns, name) {
                match openat(dir, rel, access.flags(), Mode::empty()) {
                    Err(Errno::ENOENT) if is_dead(dir) => dirs.remove(ns, name),
                    r => return done(r),
                }
            }
            let path = format!("{ROOT}/net/{name}");
            let dir = open(path.as_str(), dir_flags(), Mode::empty()).ok()?;
            let r = openat(&dir, rel, access.flags(), Mode::empty());
            dirs.insert(ns, name, dir);
            done(r)
        })
        .ok()
        .flatten()
}

/// Opens a key already validated by [`path`] (`p` is its path).
fn open_key(components: &[&str], p: &Path, access: Access) -> io::Result<File> {
    if let ["net", name, rest @ ..] = components
        && !rest.is_empty()
        && let Some(r) = open_in_net_dir(name, &rest.join("/"), access)
    {
        return r;
    }
    access.open_path(p)
}

fn display(components: &[&str]) -> String {
    components
        .iter()
        .map(|c| c.replace('.', "/"))
        .collect::<Vec<_>>()
        .join(".")
}

/// The `/proc/sys` path of a key given as components.
///
/// [`read`], [`set`] and [`write()`] open `net.*` keys relative to a cached directory
/// instead (see the module documentation); the file is the same.
///
/// # Errors
/// [`Error::InvalidKey`] for an empty key or components that are empty, `.`, `..` or
/// contain `/` or NUL.
pub fn path(components: &[&str]) -> Result<PathBuf> {
    if components.is_empty() {
        return Err(Error::InvalidKey {
            key: String::new(),
            reason: "empty key",
        });
    }
    let mut p = PathBuf::from(ROOT);
    for c in components {
        let reason = if c.is_empty() {
            Some("empty component")
        } else if *c == "." || *c == ".." {
            Some("component is . or ..")
        } else if c.contains('/') || c.contains('\0') {
            Some("component contains / or NUL")
        } else {
            None
        };
        if let Some(reason) = reason {
            return Err(Error::InvalidKey {
                key: display(components),
                reason,
            });
        }
        p.push(c);
    }
    Ok(p)
}

/// Splits a dotted key into components (`/` inside a component becomes `.`).
pub fn split_dotted(key: &str) -> Vec<String> {
    key.split('.').map(|c| c.replace('/', ".")).collect()
}

/// Reads a key; the value is returned without surrounding whitespace.
///
/// # Errors
/// [`Error::InvalidKey`] or [`Error::Sysctl`] (naming the key) when reading fails.
pub fn read(components: &[&str]) -> Result<String> {
    let p = path(components)?;
    let err = |source| Error::Sysctl {
        key: display(components),
        op: "read",
        source,
    };
    let mut v = String::new();
    open_key(components, &p, Access::Read)
        .and_then(|mut f| f.read_to_string(&mut v))
        .map_err(err)?;
    Ok(v.trim().to_string())
}

/// Writes `value` unless the key already holds it. Returns whether a write happened.
///
/// Reading first avoids `EPERM` on read-only `/proc/sys` when the value is already right.
///
/// # Errors
/// [`Error::InvalidKey`] or [`Error::Sysctl`] (naming the key) when reading or writing fails.
pub fn set(components: &[&str], value: &str) -> Result<bool> {
    if read(components)? == value.trim() {
        return Ok(false);
    }
    write(components, value)?;
    Ok(true)
}

/// Writes `value` without reading the key first: for keys of a device this command
/// just created, whose defaults differ from what is written, so [`set`]'s read would
/// only cost another open.
///
/// # Errors
/// [`Error::InvalidKey`] or [`Error::Sysctl`] (naming the key) when writing fails.
pub fn write(components: &[&str], value: &str) -> Result<()> {
    let p = path(components)?;
    open_key(components, &p, Access::Write)
        .and_then(|mut f| f.write_all(value.as_bytes()))
        .map_err(|source| Error::Sysctl {
            key: display(components),
            op: "write",
            source,
        })
}

/// [`read`] with a dotted key.
///
/// # Errors
/// As [`read`].
pub fn read_dotted(key: &str) -> Result<String> {
    let parts = split_dotted(key);
    let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
    read(&refs)
}

/// [`set`] with a dotted key.
///
/// # Errors
/// As [`set`].
pub fn set_dotted(key: &str, value: &str) -> Result<bool> {
    let parts = split_dotted(key);
    let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
    set(&refs, value)
}

#[cfg(test)]
mod tests {
    use nix::sys::stat::fstat;

    use super::*;

    #[test]
    fn path_keeps_dots_in_components() {
        let p = path(&["net", "ipv6", "conf", "cni0.100", "accept_ra"]).unwrap();
        assert_eq!(
            p,
            PathBuf::from("/proc/sys/net/ipv6/conf/cni0.100/accept_ra")
        );
    }

    #[test]
    fn path_rejects_traversal_and_slashes() {
        for bad in [&["net", ".."][..], &["net", "a/b"], &["net", ""], &[]] {
            let e = path(bad).unwrap_err();
            assert!(matches!(e, Error::InvalidKey { .. }), "{bad:?}: {e}");
        }
    }

    #[test]
    fn dotted_form_maps_slash_to_dot() {
        assert_eq!(
            split_dotted("net.ipv6.conf.cni0/100.accept_ra"),
            vec!["net", "ipv6", "conf", "cni0.100", "accept_ra"]
        );
        assert_eq!(
            display(&["net", "ipv6", "conf", "cni0.100"]),
            "net.ipv6.conf.cni0/100"
        );
    }

    #[test]
    fn read_names_missing_key() {
        let e = read(&["net", "ipv4", "conf", "no-such-if-xyz", "arp_notify"]).unwrap_err();
        assert!(e.is_not_found());
        assert!(
            e.to_string()
                .contains("net.ipv4.conf.no-such-if-xyz.arp_notify"),
            "{e}"
        );
    }

    #[test]
    fn read_existing_key() {
        let v = read_dotted("kernel.ostype").unwrap();
        assert_eq!(v, "Linux");
    }

    /// The calling thread's cached directories, most recent first.
    fn cached() -> Vec<(NsId, String)> {
        NET_DIRS.with(|d| {
            let d = d.borrow();
            d.entries.iter().map(|e| (e.ns, e.name.clone())).collect()
        })
    }

    /// A duplicate of the cached descriptor of directory `name` of namespace `ns`.
    fn cached_fd(ns: NsId, name: &str) -> OwnedFd {
        NET_DIRS.with(|d| d.borrow_mut().get(ns, name).unwrap().try_clone().unwrap())
    }

    fn same_file(a: &OwnedFd, b: &OwnedFd) -> bool {
        let (a, b) = (fstat(a).unwrap(), fstat(b).unwrap());
        (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
    }

    fn dev_null() -> OwnedFd {
        File::open("/dev/null").unwrap().into()
    }

    #[test]
    fn net_dir_cache_keeps_the_most_recent_entries() {
        let mut dirs = NetDirs::new();
        for i in 0..NET_DIR_SLOTS as u64 {
            dirs.insert((1, i), "ipv4", dev_null());
        }
        assert!(dirs.get((1, 0), "ipv4").is_some());
        assert!(dirs.get((1, 0), "ipv6").is_none(), "keyed by name too");
        dirs.insert((1, 0), "ipv6", dev_null());
        assert_eq!(dirs.entries.len(), NET_DIR_SLOTS);
        assert!(
            dirs.get((1, 1), "ipv4").is_none(),
            "least recently used, dropped"
        );
        let first: Vec<(NsId, &str)> = dirs.entries[..2]
            .iter()
            .map(|e| (e.ns, e.name.as_str()))
            .collect();
        assert_eq!(first, [((1, 0), "ipv6"), ((1, 0), "ipv4")]);
        dirs.insert((1, 0), "ipv4", dev_null());
        assert_eq!(dirs.entries.len(), NET_DIR_SLOTS, "re-inserting replaces");
        dirs.remove((1, 0), "ipv4");
        assert!(dirs.get((1, 0), "ipv4").is_none());
        assert!(dirs.get((1, 0), "ipv6").is_some());
    }

    #[test]
    fn net_keys_are_read_through_the_cached_directory() {
        // Tests run on threads of their own, so the cache starts empty. Reads only.
        assert!(cached().is_empty());
        let key = ["net", "ipv4", "conf", "lo", "arp_notify"];
        let plain = fs::read_to_string(path(&key).unwrap()).unwrap();
        assert_eq!(read(&key).unwrap(), plain.trim());
        let ns = current_netns().expect("stat /proc/thread-self/ns/net");
        assert_eq!(cached(), [(ns, "ipv4".to_string())]);
        let dir = cached_fd(ns, "ipv4");
        assert!(!is_dead(&dir));
        let by_path = open("/proc/sys/net/ipv4", dir_flags(), Mode::empty()).unwrap();
        assert!(same_file(&dir, &by_path), "the cached fd is net/ipv4");
        assert_eq!(
            read_dotted("net.ipv4.conf.lo.arp_notify").unwrap(),
            plain.trim()
        );
        assert!(same_file(&cached_fd(ns, "ipv4"), &dir), "no reopen");
        let fwd = fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
        assert_eq!(read(&["net", "ipv4", "ip_forward"]).unwrap(), fwd.trim());
        assert_eq!(cached(), [(ns, "ipv4".to_string())]);
    }

    #[test]
    fn keys_outside_net_and_net_directories_are_opened_by_path() {
        assert_eq!(read_dotted("kernel.ostype").unwrap(), "Linux");
        // Directories: opened by path, with the same error as before the cache (EISDIR).
        for dir in [&["net"][..], &["net", "ipv4"]] {
            let e = read(dir).unwrap_err();
            assert!(matches!(e, Error::Sysctl { op: "read", .. }), "{e}");
        }
        assert!(cached().is_empty());
    }

    #[test]
    fn missing_net_keys_are_not_found_through_the_cache() {
        let key = ["net", "ipv4", "conf", "no-such-if-xyz", "arp_notify"];
        for _ in 0..2 {
            // First through a freshly opened directory, then through the cached one.
            let e = read(&key).unwrap_err();
            assert!(e.is_not_found(), "{e}");
            assert!(
                e.to_string()
                    .contains("sysctl net.ipv4.conf.no-such-if-xyz.arp_notify: read failed"),
                "{e}"
            );
            let e = write(&key, "1").unwrap_err();
            assert!(e.is_not_found(), "{e}");
            assert!(e.to_string().contains(": write failed"), "{e}");
        }
        // A first component that does not exist: the plain path reports it.
        let e = read(&["net", "no-such-proto", "x"]).unwrap_err();
        assert!(e.is_not_found(), "{e}");
        assert_eq!(cached().len(), 1);
    }

    #[test]
    fn invalid_keys_are_rejected_before_any_open() {
        for bad in [&["net", ".."][..], &["net", "ipv4", "a/b"], &["net", ""]] {
            assert!(
                matches!(read(bad), Err(Error::InvalidKey { .. })),
                "{bad:?}"
            );
            let e = write(bad, "1");
            assert!(matches!(e, Err(Error::InvalidKey { .. })), "{bad:?}");
        }
        assert!(cached().is_empty());
    }

    /// A namespace's inode number is reused after it is freed: a cached directory of the
    /// dead namespace under the new one's identity must be noticed and replaced.
    #[test]
    fn dead_cached_directory_is_reopened() {
        if !cni_testsupport::require_root() {
            return;
        }
        std::thread::spawn(|| {
            use std::time::{Duration, Instant};

            use nix::sched::{CloneFlags, unshare};

            let key = ["net", "ipv4", "conf", "lo", "arp_notify"];
            // A private namespace; the thread never returns to the host's.
            unshare(CloneFlags::CLONE_NEWNET).unwrap();
            let old = current_netns().unwrap();
            write(&key, "1").unwrap();
            let dir = cached_fd(old, "ipv4");
            // Leave it. Nothing else holds it (the cached fd does not), so it is freed.
            unshare(CloneFlags::CLONE_NEWNET).unwrap();
            let new = current_netns().unwrap();
            assert_ne!(old, new);
            let deadline = Instant::now() + Duration::from_secs(60);
            while !is_dead(&dir) {
                assert!(Instant::now() < deadline, "old namespace lingers");
                std::thread::sleep(Duration::from_millis(20));
            }
            // The dead directory fails every lookup, even of names that exist.
            let e = openat(&dir, "conf/lo/arp_notify", OFlag::O_RDONLY, Mode::empty());
            assert_eq!(e.unwrap_err(), Errno::ENOENT);
            // Pretend the new namespace got the old one's identity.
            NET_DIRS.with(|d| {
                let mut d = d.borrow_mut();
                d.entries.clear();
                d.insert(new, "ipv4", dir);
            });
            assert_eq!(read(&key).unwrap(), "0", "the new namespace's default");
            assert!(write(&key, "1").is_ok());
            assert_eq!(read(&key).unwrap(), "1");
            assert_eq!(cached(), [(new, "ipv4".to_string())]);
            assert!(!is_dead(cached_fd(new, "ipv4")), "the dead fd was replaced");
            // A missing key through the live cached directory is still just missing.
            let e = read(&["net", "ipv4", "conf", "missing0", "arp_notify"]).unwrap_err();
            assert!(e.is_not_found(), "{e}");
            assert_eq!(cached(), [(new, "ipv4".to_string())]);
        })
        .join()
        .unwrap();
    }
}
