//! The on-disk store, byte-compatible with the reference host-local:
//!
//! ```text
//! <dataDir>/<network>/            mode 0755, created only by ADD
//!     lock                        flock(LOCK_EX) target; created 0600
//!     10.1.2.2                    reservation: "<container id>\r\n<ifname>", mode 0600
//!     2001:db8::2                 IPv6 names in compressed form
//!     last_reserved_ip.0          round-robin cursor of range set 0: the IP text
//! ```
//!
//! Differences from the reference, all invisible to it:
//! * the lock is taken once when the store is opened and held until it is
//!   dropped (the reference locks per range set), with a bounded wait;
//! * a reservation is written to a temporary file in the same directory
//!   and published with `link(2)`, so the address file either does not
//!   exist or is complete: a crash can leave only a temporary file, whose
//!   name never parses as an address and which the next opener removes;
//! * cursors (and the index, see below) are written to a temporary file and
//!   moved into place: the old file is unlinked first, then the new one
//!   renamed, so a crash leaves the old file, no file (a missing cursor
//!   restarts the round-robin at the range start; a missing index costs one
//!   full read) or the new one, never a torn file. Not renaming *over* the
//!   old file matters on ext4: that triggers its `auto_da_alloc` writeback
//!   (measured 150-270 us per replace here, 20-30 us without);
//! * DEL, CHECK, GC and STATUS use [`DiskStore::open_existing`], which never
//!   creates the network directory;
//! * no symbolic link is followed inside the store: the network directory
//!   must be a real directory, and `lock`, cursors, reservations and the
//!   index are opened with `O_NOFOLLOW` (temporary files with `O_EXCL`), so a
//!   planted link is [`StoreError::Symlink`] and nothing is read, written or
//!   created outside `dataDir` through it. `dataDir` itself may be a link.

use std::cell::{Cell, RefCell};
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, DirEntryExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::{Attachment, Reservation, Store, StoreError, index, lock};
use crate::ip;

/// Where the reference keeps its state when `dataDir` is not configured.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/cni/networks";

/// How long opening a store waits for the network lock by default.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(10);

/// Environment variable overriding the lock wait, in milliseconds.
pub const LOCK_TIMEOUT_ENV: &str = "CNI_IPAM_LOCK_TIMEOUT_MS";

const LOCK_FILE: &str = "lock";
const CURSOR_PREFIX: &str = "last_reserved_ip.";
/// Prefix of temporary files; a leading dot keeps them from ever parsing as
/// an address or matching the reference's file names.
const TEMP_PREFIX: &str = ".host-local-tmp.";

/// Prefix of STATUS's write probes. They are created without the lock, so
/// they must not look like the temporary files a lock holder cleans up.
const PROBE_PREFIX: &str = ".host-local-probe.";

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// How a [`DiskStore`] is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskStoreOptions {
    /// The longest wait for the network lock before failing with a
    /// try-again error.
    pub lock_timeout: Duration,
}

impl Default for DiskStoreOptions {
    fn default() -> Self {
        Self {
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
        }
    }
}

impl DiskStoreOptions {
    /// The defaults, with the lock wait taken from [`LOCK_TIMEOUT_ENV`]
    /// when it holds a number of milliseconds (ignored otherwise).
    pub fn from_env() -> Self {
        let mut opts = Self::default();
        if let Ok(v) = std::env::var(LOCK_TIMEOUT_ENV) {
            match parse_timeout(&v) {
                Some(t) => opts.lock_timeout = t,
                None => {
                    log::warn!("ignoring {LOCK_TIMEOUT_ENV}={v:?}: not a number of milliseconds")
                }
            }
        }
        opts
    }
}

/// A lock timeout written as a whole number of milliseconds.
fn parse_timeout(text: &str) -> Option<Duration> {
    text.trim().parse::<u64>().ok().map(Duration::from_millis)
}

/// Checks that `name` is one plain directory name: not empty, not `.` or
/// `..`, without `/` or NUL, and at most 255 bytes (the longest file name
/// Linux file systems take). (The CNI skel also restricts its characters.)
///
/// # Errors
/// [`StoreError::InvalidNetworkName`] naming the rule broken.
pub fn validate_network_name(name: &str) -> Result<(), StoreError> {
    let reason = if name.is_empty() {
        "empty"
    } else if name == "." || name == ".." {
        "a relative directory reference"
    } else if name.contains('/') {
        "contains '/'"
    } else if name.contains('\0') {
        "contains NUL"
    } else if name.len() > 255 {
        "longer than 255 bytes"
    } else {
        return Ok(());
    };
    Err(StoreError::InvalidNetworkName {
        name: name.to_string(),
        reason,
    })
}

/// A network's reservations on disk, locked for as long as the value lives.
///
/// Because the lock is held for the store's whole life, nobody else changes
/// the directory meanwhile: the first [`Store::list`] scans it and later
/// calls reuse that listing, kept exact by this store's own `reserve` and
/// `remove`. A dual-stack ADD thus scans once, not once per range set.
///
/// The scan lists the directory and takes each reservation's owner from the
/// index (`<dataDir>/.host-local-index.<network>`, see the `index` module)
/// when the directory is unchanged since the index was written and the file
/// still has the recorded inode; other files are read. The reference's
/// layout has no index, so without it every command reads every reservation
/// file and its cost grows with the number of containers. The index is
/// rewritten, under the lock, when the store is dropped after a change.
#[derive(Debug)]
pub struct DiskStore {
    dir: PathBuf,
    listing: RefCell<Option<Vec<Reservation>>>,
    /// What the next index file will hold: set by the scan, kept exact by
    /// `reserve`/`remove`; `None` until a scan happened.
    index: RefCell<Option<index::Index>>,
    /// The index file needs rewriting.
    index_dirty: Cell<bool>,
    // Declared last: dropped after `Drop::drop` wrote the index.
    _lock: File,
}

impl Drop for DiskStore {
    fn drop(&mut self) {
        if !self.index_dirty.get() {
            return;
        }
        if let Some(idx) = self.index.borrow().as_ref()
            && let Err(e) = self.write_index(idx)
        {
            log::debug!("cannot update the reservation index: {e}");
        }
    }
}

impl DiskStore {
    /// `<data_dir>/<network>` after validating the network name.
    ///
    /// # Errors
    /// [`StoreError::InvalidNetworkName`].
    pub fn network_dir(data_dir: &Path, network: &str) -> Result<PathBuf, StoreError> {
        validate_network_name(network)?;
        Ok(data_dir.join(network))
    }

    /// Opens the store for ADD: creates `<data_dir>/<network>` (mode 0755)
    /// if needed, takes the lock and removes stale temporary files.
    ///
    /// # Errors
    /// Invalid network name, a directory that cannot be created or is not a
    /// directory, or a lock that stays held beyond the timeout
    /// ([`StoreError::is_try_again`]).
    pub fn open(
        data_dir: &Path,
        network: &str,
        opts: &DiskStoreOptions,
    ) -> Result<Self, StoreError> {
        let dir = Self::network_dir(data_dir, network)?;
        reject_symlink(&dir)?;
        DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&dir)
            .map_err(|e| StoreError::io("create directory", &dir, e))?;
        Self::lock_dir(dir, opts)
    }

    /// Opens the store for DEL, CHECK, GC and STATUS: `Ok(None)` when the
    /// network directory does not exist (nothing is reserved), and nothing
    /// is created in that case.
    ///
    /// # Errors
    /// As [`DiskStore::open`], except that a missing directory is not one.
    pub fn open_existing(
        data_dir: &Path,
        network: &str,
        opts: &DiskStoreOptions,
    ) -> Result<Option<Self>, StoreError> {
        let dir = Self::network_dir(data_dir, network)?;
        match fs::symlink_metadata(&dir) {
            Ok(_) => Self::lock_dir(dir, opts).map(Some),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io("stat", &dir, e)),
        }
    }

    fn lock_dir(dir: PathBuf, opts: &DiskStoreOptions) -> Result<Self, StoreError> {
        let meta = fs::symlink_metadata(&dir).map_err(|e| StoreError::io("stat", &dir, e))?;
        if meta.file_type().is_symlink() {
            return Err(StoreError::Symlink { path: dir });
        }
        if !meta.is_dir() {
            return Err(StoreError::NotADirectory { path: dir });
        }
        let lock = lock::acquire(&dir.join(LOCK_FILE), opts.lock_timeout)?;
        let store = Self {
            dir,
            listing: RefCell::new(None),
            index: RefCell::new(None),
            index_dirty: Cell::new(false),
            _lock: lock,
        };
        store.remove_stale_temp_files();
        Ok(store)
    }

    /// Checks, without creating the network directory, that a store could
    /// be used for ADD: the network directory, or else its nearest existing
    /// ancestor, is a directory in which a file can be created (a probe file
    /// is created and removed at once).
    ///
    /// # Errors
    /// [`StoreError::NotADirectory`] or the I/O error of the probe.
    pub fn probe_writable(data_dir: &Path, network: &str) -> Result<(), StoreError> {
        let dir = Self::network_dir(data_dir, network)?;
        reject_symlink(&dir)?;
        let mut target: &Path = &dir;
        let meta = loop {
            match fs::metadata(target) {
                Ok(m) => break m,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                    ) =>
                {
                    match target.parent() {
                        Some(p) if !p.as_os_str().is_empty() => target = p,
                        _ => return Err(StoreError::io("stat", target, e)),
                    }
                }
                Err(e) => return Err(StoreError::io("stat", target, e)),
            }
        };
        if !meta.is_dir() {
            return Err(StoreError::NotADirectory {
                path: target.to_path_buf(),
            });
        }
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let probe = target.join(format!("{PROBE_PREFIX}{}.{n}", std::process::id()));
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&probe)
            .map_err(|e| StoreError::io("create a file in", target, e))?;
        match fs::remove_file(&probe) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(StoreError::io("remove", &probe, e))
            }
            _ => Ok(()),
        }
    }

    /// The network directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn ip_path(&self, ip: IpAddr) -> PathBuf {
        self.dir.join(ip::to_text(ip))
    }

    fn cursor_path(&self, set_index: usize) -> PathBuf {
        self.dir.join(format!("{CURSOR_PREFIX}{set_index}"))
    }

    /// Lists the directory and reads the reservation files the index does
    /// not cover (new or replaced since the index was written).
    fn scan(&self) -> Result<Vec<Reservation>, StoreError> {
        let entries = fs::read_dir(&self.dir).map_err(|e| StoreError::io("list", &self.dir, e))?;
        let stamp = self.dir_stamp()?;
        let mut known = self.read_index()?;
        if known.stamp != stamp {
            // Someone else changed the directory since: trust nothing.
            known = index::Index::default();
        }
        let mut fresh = index::Index::default();
        let mut out = Vec::new();
        let mut read = 0usize;
        for entry in entries {
            let entry = entry.map_err(|e| StoreError::io("list", &self.dir, e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let Ok(addr) = name.parse::<IpAddr>() else {
                continue;
            };
            if ip::to_text(addr) != name {
                continue;
            }
            let path = entry.path();
            let file_type = entry
                .file_type()
                .map_err(|e| StoreError::io("stat", &path, e))?;
            if file_type.is_symlink() {
                return Err(StoreError::Symlink { path });
            }
            if !file_type.is_file() {
                continue;
            }
            let ino = entry.ino();
            let content = match known.get(name, ino) {
                Some(c) => c.to_string(),
                None => match read_nofollow(&path) {
                    Ok(bytes) => {
                        read += 1;
                        String::from_utf8_lossy(&bytes).into_owned()
                    }
                    Err(e) if is_symlink_error(&e) => return Err(StoreError::Symlink { path }),
                    Err(e) => {
                        log::warn!("skipping unreadable reservation {}: {e}", path.display());
                        continue;
                    }
                },
            };
            out.push(Reservation::parse(addr, &content));
            fresh.insert(name.to_string(), ino, content);
        }
        if read > 0 || fresh.len() != known.len() {
            self.index_dirty.set(true);
        }
        *self.index.borrow_mut() = Some(fresh);
        out.sort();
        Ok(out)
    }

    fn dir_stamp(&self) -> Result<index::DirStamp, StoreError> {
        let m =
            fs::symlink_metadata(&self.dir).map_err(|e| StoreError::io("stat", &self.dir, e))?;
        Ok(index::DirStamp {
            ino: m.ino(),
            mtime: m.mtime(),
            mtime_nsec: m.mtime_nsec(),
        })
    }

    /// `<dataDir>/.host-local-index.<network>`, beside (not inside) the
    /// network directory: the reference reads every file inside it.
    fn index_path(&self) -> Option<PathBuf> {
        let network = self.dir.file_name()?.to_str()?;
        Some(
            self.dir
                .parent()?
                .join(format!("{}{network}", index::FILE_PREFIX)),
        )
    }

    /// The index as last written; empty when absent or unreadable.
    ///
    /// # Errors
    /// [`StoreError::Symlink`] when the index is a symbolic link (never followed).
    fn read_index(&self) -> Result<index::Index, StoreError> {
        let Some(path) = self.index_path() else {
            return Ok(index::Index::default());
        };
        Ok(match read_nofollow(&path) {
            Ok(bytes) => String::from_utf8(bytes)
                .ok()
                .and_then(|text| index::Index::parse(&text))
                .unwrap_or_else(|| {
                    log::debug!("ignoring malformed reservation index {}", path.display());
                    index::Index::default()
                }),
            Err(e) if is_symlink_error(&e) => return Err(StoreError::Symlink { path }),
            Err(_) => index::Index::default(),
        })
    }

    /// Replaces the index file, stamped with the directory's current state:
    /// a temporary file beside it (not in the network directory, whose time
    /// must not change after the stamp) renamed over it.
    fn write_index(&self, idx: &index::Index) -> Result<(), StoreError> {
        let Some(path) = self.index_path() else {
            return Ok(());
        };
        let mut idx = idx.clone();
        idx.stamp = self.dir_stamp()?;
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut tmp_name = path.clone().into_os_string();
        tmp_name.push(format!(".tmp.{}.{n}", std::process::id()));
        let tmp = PathBuf::from(tmp_name);
        let written = write_new_private(&tmp, idx.render().as_bytes())
            .and_then(|()| replace_with(&tmp, &path));
        written.map_err(|e| {
            let _ = fs::remove_file(&tmp);
            StoreError::io("replace reservation index", path, e)
        })
    }

    /// Temporary files are only ever written while the lock is held, so any
    /// found by a new lock holder belong to a process that died.
    fn remove_stale_temp_files(&self) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
                let path = entry.path();
                match fs::remove_file(&path) {
                    Ok(()) => log::info!("removed stale temporary file {}", path.display()),
                    Err(e) => log::warn!("cannot remove stale {}: {e}", path.display()),
                }
            }
        }
    }

    /// Writes `content` to a fresh temporary file (mode 0600) next to the
    /// final name.
    fn write_temp(&self, tag: &str, content: &[u8]) -> Result<PathBuf, StoreError> {
        let tmp = temp_path(&self.dir, tag);
        match write_new_private(&tmp, content) {
            Ok(()) => Ok(tmp),
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                Err(StoreError::io("write temporary file", &tmp, e))
            }
        }
    }
}

/// Fails with [`StoreError::Symlink`] when `path` is a symbolic link (a
/// missing `path` is fine).
fn reject_symlink(path: &Path) -> Result<(), StoreError> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Err(StoreError::Symlink {
            path: path.to_path_buf(),
        }),
        _ => Ok(()),
    }
}

/// Reads a whole file of the store without following a symbolic link at
/// `path` (`O_NOFOLLOW`: `ELOOP`, see [`is_symlink_error`]) and without
/// blocking on a FIFO planted there (`O_NONBLOCK`).
fn read_nofollow(path: &Path) -> io::Result<Vec<u8>> {
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Whether an `O_NOFOLLOW` open failed because `path` is a symbolic link.
fn is_symlink_error(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ELOOP)
}

/// Creates `path`, which must not exist yet (not even as a symbolic link), with mode
/// 0600 and writes `content` to it.
fn write_new_private(path: &Path, content: &[u8]) -> io::Result<()> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .and_then(|mut f| f.write_all(content))
}

/// Moves `tmp` to `path`: unlinks `path` first, then renames (see the module
/// documentation for why not a rename over it).
fn replace_with(tmp: &Path, path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    fs::rename(tmp, path)
}

fn temp_path(dir: &Path, tag: &str) -> PathBuf {
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    dir.join(format!("{TEMP_PREFIX}{}.{n}.{tag}", std::process::id()))
}

impl Store for DiskStore {
    fn reserve(&mut self, ip: IpAddr, who: &Attachment<'_>) -> Result<bool, StoreError> {
        let target = self.ip_path(ip);
        let tmp = self.write_temp("reservation", who.file_content().as_bytes())?;
        let linked = fs::hard_link(&tmp, &target);
        // The link shares the temporary file's inode.
        let ino = fs::symlink_metadata(&tmp).map(|m| m.ino()).ok();
        if let Err(e) = fs::remove_file(&tmp) {
            log::warn!("cannot remove temporary {}: {e}", tmp.display());
        }
        match linked {
            Ok(()) => {
                if let Some(listing) = self.listing.get_mut() {
                    let added = Reservation::parse(ip::canonical(ip), &who.file_content());
                    let at = listing.binary_search(&added).unwrap_or_else(|i| i);
                    listing.insert(at, added);
                }
                if let Some(idx) = self.index.get_mut() {
                    match ino {
                        Some(ino) => {
                            idx.insert(ip::to_text(ip), ino, who.file_content());
                            self.index_dirty.set(true);
                        }
                        // Unknown inode: leave the entry out (it is read next time).
                        None => self.index_dirty.set(true),
                    }
                }
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(StoreError::io("create reservation", target, e)),
        }
    }

    fn remove(&mut self, ip: IpAddr) -> Result<bool, StoreError> {
        let path = self.ip_path(ip);
        let removed = match fs::remove_file(&path) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => return Err(StoreError::io("remove reservation", path, e)),
        };
        if let Some(listing) = self.listing.get_mut() {
            let gone = ip::canonical(ip);
            listing.retain(|r| r.ip != gone);
        }
        if let Some(idx) = self.index.get_mut()
            && idx.remove(&ip::to_text(ip))
        {
            self.index_dirty.set(true);
        }
        Ok(removed)
    }

    fn get(&self, ip: IpAddr) -> Result<Option<Reservation>, StoreError> {
        let path = self.ip_path(ip);
        match read_nofollow(&path) {
            Ok(bytes) => Ok(Some(Reservation::parse(
                ip::canonical(ip),
                &String::from_utf8_lossy(&bytes),
            ))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io("read reservation", path, e)),
        }
    }

    /// Files whose name is the canonical text of an address; unreadable
    /// ones are skipped with a warning, like the reference does. Scanned
    /// once per store (see [`DiskStore`]).
    fn list(&self) -> Result<Vec<Reservation>, StoreError> {
        if let Some(listing) = self.listing.borrow().as_ref() {
            return Ok(listing.clone());
        }
        let scanned = self.scan()?;
        *self.listing.borrow_mut() = Some(scanned.clone());
        Ok(scanned)
    }

    /// A cursor that does not parse as an address is treated as absent (the
    /// reference then starts from the first range).
    fn last_reserved(&self, set_index: usize) -> Result<Option<IpAddr>, StoreError> {
        let path = self.cursor_path(set_index);
        match read_nofollow(&path).map(|b| String::from_utf8_lossy(&b).into_owned()) {
            Ok(text) => match text.trim().parse::<IpAddr>() {
                Ok(addr) => Ok(Some(ip::canonical(addr))),
                Err(_) => {
                    log::warn!("ignoring unparsable cursor {}: {text:?}", path.display());
                    Ok(None)
                }
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io("read cursor", path, e)),
        }
    }

    fn set_last_reserved(&mut self, set_index: usize, ip: IpAddr) -> Result<(), StoreError> {
        let path = self.cursor_path(set_index);
        let tmp = self.write_temp("cursor", ip::to_text(ip).as_bytes())?;
        replace_with(&tmp, &path).map_err(|e| {
            let _ = fs::remove_file(&tmp);
            StoreError::io("replace cursor", path, e)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::ip;
    use cni_testsupport::dir_names;
    use std::os::unix::fs::PermissionsExt;

    fn opts() -> DiskStoreOptions {
        DiskStoreOptions {
            lock_timeout: Duration::from_millis(200),
        }
    }

    /// A store of network `net` in a fresh data directory (kept while the store is used).
    fn open_net() -> (tempfile::TempDir, DiskStore) {
        let data = tempfile::tempdir().expect("tempdir");
        let s = DiskStore::open(data.path(), "net", &opts()).expect("open");
        (data, s)
    }

    /// A data directory whose network directory `net` exists with one file, `name`,
    /// holding `content`, before any store is opened.
    fn net_dir_with(name: &str, content: &str) -> tempfile::TempDir {
        let data = tempfile::tempdir().expect("tempdir");
        let dir = data.path().join("net");
        fs::create_dir_all(&dir).expect("mkdir");
        fs::write(dir.join(name), content).expect("write");
        data
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).expect("stat").permissions().mode() & 0o777
    }

    /// The index beside the network directory lets a later store skip
    /// reading files it knows, while changes made by another writer (a file
    /// removed, added, or replaced with a new owner) are still seen.
    #[test]
    fn index_is_used_and_other_writers_changes_are_seen() {
        let data = tempfile::tempdir().expect("tempdir");
        let dir = data.path().join("net");
        let index_file = data.path().join(".host-local-index.net");
        {
            let mut store = DiskStore::open(data.path(), "net", &opts()).expect("open");
            store.list().expect("first scan");
            for (i, id) in ["a", "b", "c"].iter().enumerate() {
                let who = Attachment::new(id, "eth0");
                assert!(
                    store
                        .reserve(ip(&format!("10.0.0.{}", i + 2)), &who)
                        .expect("reserve")
                );
            }
        }
        let text = fs::read_to_string(&index_file).expect("index written on drop");
        assert_eq!(text.lines().count(), 4, "{text}");
        assert_eq!(mode(&index_file), 0o600);
        assert!(
            !dir_names(&dir).iter().any(|n| n.starts_with(TEMP_PREFIX)),
            "no temporary file left"
        );
        // Another writer (no index update): removes .2, adds .9, replaces .3
        // with a new owner (a new inode).
        fs::remove_file(dir.join("10.0.0.2")).expect("rm");
        fs::write(dir.join("10.0.0.9"), "z\r\neth0").expect("add");
        fs::remove_file(dir.join("10.0.0.3")).expect("rm");
        fs::write(dir.join("10.0.0.3.new"), "y\r\neth0").expect("write");
        fs::rename(dir.join("10.0.0.3.new"), dir.join("10.0.0.3")).expect("replace");
        let keep = dir.join("10.0.0.4");
        let store = DiskStore::open(data.path(), "net", &opts()).expect("open");
        let owners = |store: &DiskStore| -> Vec<(IpAddr, String)> {
            store
                .list()
                .expect("list")
                .into_iter()
                .map(|r| (r.ip, r.container_id))
                .collect()
        };
        // The directory changed under the index: everything is read again
        // (10.0.0.3 may well have kept its inode number).
        assert_eq!(
            owners(&store),
            [
                (ip("10.0.0.3"), "y".to_string()),
                (ip("10.0.0.4"), "c".to_string()),
                (ip("10.0.0.9"), "z".to_string()),
            ]
        );
        drop(store);
        // Unchanged directory: known files come from the index, unread. An
        // in-place rewrite (which no host-local does) proves it.
        fs::write(&keep, "rewritten\r\neth0").expect("rewrite in place");
        let store = DiskStore::open(data.path(), "net", &opts()).expect("open");
        assert_eq!(owners(&store)[1], (ip("10.0.0.4"), "c".to_string()));
        drop(store);
        // A corrupt index is ignored (full read), then rewritten.
        fs::write(&index_file, "garbage").expect("corrupt");
        let store = DiskStore::open(data.path(), "net", &opts()).expect("open");
        assert_eq!(store.list().expect("list")[1].container_id, "rewritten");
        drop(store);
        assert!(
            fs::read_to_string(&index_file)
                .expect("index")
                .starts_with("host-local-index 1 ")
        );
    }

    #[test]
    fn cached_listing_always_equals_a_fresh_scan() {
        let data = tempfile::tempdir().expect("tempdir");
        let mut store = DiskStore::open(data.path(), "net", &opts()).expect("open");
        let a = Attachment::new("ctr-a", "eth0");
        let b = Attachment::new("ctr-b", "eth1");
        assert!(store.reserve(ip("10.0.0.5"), &a).expect("reserve"));
        assert_eq!(store.list().expect("list"), store.scan().expect("scan"));
        // Changes after the first listing must show in the cached one.
        assert!(store.reserve(ip("fd00::5"), &a).expect("reserve"));
        assert!(store.reserve(ip("10.0.0.3"), &b).expect("reserve"));
        assert!(!store.reserve(ip("10.0.0.3"), &a).expect("taken"));
        assert_eq!(store.list().expect("list"), store.scan().expect("scan"));
        assert_eq!(
            store.lookup(&a).expect("lookup"),
            [ip("10.0.0.5"), ip("fd00::5")]
        );
        assert!(store.remove(ip("10.0.0.5")).expect("remove"));
        assert!(!store.remove(ip("10.0.0.5")).expect("already gone"));
        assert_eq!(store.list().expect("list"), store.scan().expect("scan"));
        assert_eq!(store.release(&b).expect("release"), [ip("10.0.0.3")]);
        assert_eq!(store.list().expect("list"), store.scan().expect("scan"));
        assert_eq!(store.lookup(&a).expect("lookup"), [ip("fd00::5")]);
    }

    #[test]
    fn network_name_must_stay_inside_data_dir() {
        for bad in ["", ".", "..", "a/b", "../x", "/abs", "nul\0x"] {
            let err = validate_network_name(bad).expect_err(bad);
            assert!(
                matches!(err, StoreError::InvalidNetworkName { .. }),
                "{bad:?}"
            );
        }
        assert!(validate_network_name(&"n".repeat(256)).is_err());
        for good in ["net", "my-net.1", "..x", "a..b", &"n".repeat(255)] {
            validate_network_name(good).expect(good);
        }
        let data = tempfile::tempdir().expect("tempdir");
        assert!(DiskStore::open(data.path(), "..", &opts()).is_err());
        assert!(DiskStore::open_existing(data.path(), "a/b", &opts()).is_err());
    }

    #[test]
    fn reservation_file_bytes_and_modes() {
        let (data, mut s) = open_net();
        let dir = data.path().join("net");
        assert_eq!(mode(&dir), 0o755);
        assert!(
            s.reserve(ip("10.1.2.2"), &Attachment::new("  abc\n", "eth0"))
                .expect("reserve")
        );
        assert!(
            s.reserve(ip("2001:db8::2"), &Attachment::new("abc", "eth0"))
                .expect("reserve")
        );
        s.set_last_reserved(0, ip("10.1.2.2")).expect("cursor");
        s.set_last_reserved(1, ip("2001:db8:0:0::2"))
            .expect("cursor");
        for (f, bytes) in [
            ("10.1.2.2", "abc\r\neth0"),
            ("2001:db8::2", "abc\r\neth0"),
            ("last_reserved_ip.0", "10.1.2.2"),
            ("last_reserved_ip.1", "2001:db8::2"),
        ] {
            assert_eq!(
                fs::read(dir.join(f)).expect("read"),
                bytes.as_bytes(),
                "{f}"
            );
        }
        for f in [
            "10.1.2.2",
            "2001:db8::2",
            "last_reserved_ip.0",
            "last_reserved_ip.1",
            "lock",
        ] {
            assert_eq!(mode(&dir.join(f)), 0o600, "{f}");
        }
        // no temporary file is left behind
        assert_eq!(
            dir_names(&dir),
            [
                "10.1.2.2",
                "2001:db8::2",
                "last_reserved_ip.0",
                "last_reserved_ip.1",
                "lock"
            ]
        );
    }

    #[test]
    fn reserve_is_exclusive() {
        let (_data, mut s) = open_net();
        assert!(
            s.reserve(ip("10.1.2.2"), &Attachment::new("a", "eth0"))
                .expect("first")
        );
        assert!(
            !s.reserve(ip("10.1.2.2"), &Attachment::new("b", "eth0"))
                .expect("second")
        );
        assert_eq!(
            fs::read(s.dir().join("10.1.2.2")).expect("read"),
            b"a\r\neth0",
            "the loser must not overwrite the winner"
        );
    }

    #[test]
    fn list_skips_lock_cursors_temp_and_foreign_files() {
        let (_data, mut s) = open_net();
        s.reserve(ip("10.1.2.3"), &Attachment::new("a", "eth0"))
            .expect("reserve");
        s.set_last_reserved(0, ip("10.1.2.3")).expect("cursor");
        fs::write(s.dir().join(".host-local-tmp.99.0.reservation"), "x").expect("write");
        fs::write(s.dir().join("README"), "a").expect("write");
        fs::write(s.dir().join("2001:0db8::5"), "a").expect("write");
        fs::create_dir(s.dir().join("10.1.2.9")).expect("mkdir");
        let all = s.list().expect("list");
        assert_eq!(all, [Reservation::parse(ip("10.1.2.3"), "a\r\neth0")]);
        // a container literally named like a cursor value never matches it
        let who = Attachment::new("10.1.2.3", "eth0");
        assert!(s.lookup(&who).expect("lookup").is_empty());
    }

    #[test]
    fn stale_temp_files_removed_on_open() {
        let data = net_dir_with(".host-local-tmp.1234.7.reservation", "half");
        let s = DiskStore::open_existing(data.path(), "net", &opts())
            .expect("open")
            .expect("exists");
        assert_eq!(dir_names(s.dir()), ["lock"]);
    }

    #[test]
    fn legacy_file_released_and_found() {
        let (_data, mut s) = open_net();
        fs::write(s.dir().join("10.1.2.7"), "legacy-id").expect("write");
        let who = Attachment::new("legacy-id", "eth0");
        assert_eq!(s.lookup(&who).expect("lookup"), [ip("10.1.2.7")]);
        assert_eq!(s.release(&who).expect("release"), [ip("10.1.2.7")]);
        assert!(!s.dir().join("10.1.2.7").exists());
        assert!(s.release(&who).expect("again").is_empty());
    }

    #[test]
    fn release_removes_only_the_attachment() {
        let (_data, mut s) = open_net();
        s.reserve(ip("10.1.2.2"), &Attachment::new("a", "eth0"))
            .expect("r");
        s.reserve(ip("2001:db8::2"), &Attachment::new("a", "eth0"))
            .expect("r");
        s.reserve(ip("10.1.2.3"), &Attachment::new("a", "eth1"))
            .expect("r");
        s.reserve(ip("10.1.2.4"), &Attachment::new("b", "eth0"))
            .expect("r");
        s.set_last_reserved(0, ip("10.1.2.4")).expect("cursor");
        let mut released = s.release(&Attachment::new("a", "eth0")).expect("release");
        released.sort();
        assert_eq!(released, [ip("10.1.2.2"), ip("2001:db8::2")]);
        assert_eq!(
            dir_names(s.dir()),
            ["10.1.2.3", "10.1.2.4", "last_reserved_ip.0", "lock"]
        );
        assert!(
            !s.release_ip(ip("10.1.2.4"), &Attachment::new("a", "eth1"))
                .expect("not owner")
        );
        assert!(
            s.release_ip(ip("10.1.2.3"), &Attachment::new("a", "eth1"))
                .expect("owner")
        );
    }

    #[test]
    fn cursor_round_trip_and_garbage() {
        let (_data, mut s) = open_net();
        assert_eq!(s.last_reserved(0).expect("none"), None);
        s.set_last_reserved(0, ip("10.1.2.9")).expect("set");
        s.set_last_reserved(0, ip("10.1.2.10")).expect("set");
        assert_eq!(s.last_reserved(0).expect("get"), Some(ip("10.1.2.10")));
        s.set_last_reserved(3, ip("2001:db8::a")).expect("set");
        assert_eq!(s.last_reserved(3).expect("get"), Some(ip("2001:db8::a")));
        fs::write(s.dir().join("last_reserved_ip.1"), "garbage").expect("write");
        assert_eq!(s.last_reserved(1).expect("garbage is none"), None);
    }

    #[test]
    fn open_existing_never_creates_the_directory() {
        let data = tempfile::tempdir().expect("tempdir");
        assert!(
            DiskStore::open_existing(data.path(), "net", &opts())
                .expect("ok")
                .is_none()
        );
        assert!(!data.path().join("net").exists());
        let missing_root = data.path().join("no/such/root");
        assert!(
            DiskStore::open_existing(&missing_root, "net", &opts())
                .expect("ok")
                .is_none()
        );
        assert!(!missing_root.exists());
        DiskStore::probe_writable(&missing_root, "net").expect("ancestor is writable");
        assert!(!missing_root.exists());
        assert!(
            dir_names(data.path()).is_empty(),
            "probe leaves nothing behind"
        );
    }

    #[test]
    fn network_path_that_is_a_file_is_rejected() {
        let data = tempfile::tempdir().expect("tempdir");
        fs::write(data.path().join("net"), "x").expect("write");
        assert!(matches!(
            DiskStore::open(data.path(), "net", &opts()),
            Err(StoreError::Io { .. } | StoreError::NotADirectory { .. })
        ));
        assert!(matches!(
            DiskStore::open_existing(data.path(), "net", &opts()),
            Err(StoreError::NotADirectory { .. })
        ));
        assert!(matches!(
            DiskStore::probe_writable(data.path(), "net"),
            Err(StoreError::NotADirectory { .. })
        ));
        let file_root = data.path().join("net");
        assert!(matches!(
            DiskStore::probe_writable(&file_root, "other"),
            Err(StoreError::NotADirectory { .. })
        ));
    }

    /// No planted symlink in the store is followed: each is a
    /// [`StoreError::Symlink`] naming it, and its target is neither created
    /// nor read nor changed.
    #[test]
    fn planted_symlinks_are_refused_not_followed() {
        use std::os::unix::fs::symlink;
        let data = tempfile::tempdir().expect("tempdir");
        let outside = tempfile::tempdir().expect("tempdir");
        let dir = data.path().join("net");
        let is_symlink_err = |r: Result<(), StoreError>, name: &str| match r {
            Err(StoreError::Symlink { path }) => assert!(path.ends_with(name), "{path:?}"),
            other => panic!("{name}: expected a symlink error, got {other:?}"),
        };
        // The network directory, dangling or not.
        let elsewhere = outside.path().join("elsewhere");
        symlink(&elsewhere, &dir).expect("symlink");
        is_symlink_err(
            DiskStore::open(data.path(), "net", &opts()).map(drop),
            "net",
        );
        assert!(!elsewhere.exists());
        fs::create_dir(&elsewhere).expect("mkdir");
        is_symlink_err(
            DiskStore::open(data.path(), "net", &opts()).map(drop),
            "net",
        );
        is_symlink_err(
            DiskStore::open_existing(data.path(), "net", &opts()).map(drop),
            "net",
        );
        is_symlink_err(DiskStore::probe_writable(data.path(), "net"), "net");
        assert!(dir_names(&elsewhere).is_empty());
        fs::remove_file(&dir).expect("rm link");
        // The lock, to a missing path and to an existing file.
        fs::create_dir(&dir).expect("mkdir");
        let missing = outside.path().join("missing");
        symlink(&missing, dir.join("lock")).expect("symlink");
        is_symlink_err(
            DiskStore::open(data.path(), "net", &opts()).map(drop),
            "lock",
        );
        assert!(!missing.exists());
        fs::remove_file(dir.join("lock")).expect("rm link");
        // A cursor, a reservation and the index.
        let secret = outside.path().join("secret");
        fs::write(&secret, "10.1.2.200").expect("write");
        let cases = [
            dir.join("last_reserved_ip.0"),
            dir.join("10.1.2.3"),
            data.path().join(".host-local-index.net"),
        ];
        for link in &cases {
            symlink(&secret, link).expect("symlink");
            let mut s = DiskStore::open(data.path(), "net", &opts()).expect("open");
            let name = link.file_name().and_then(|n| n.to_str()).expect("name");
            let r = if name.starts_with("last_") {
                s.last_reserved(0).map(drop)
            } else if name.starts_with("10.") {
                is_symlink_err(s.get(ip("10.1.2.3")).map(drop), name);
                s.list().map(drop)
            } else {
                s.list().map(drop)
            };
            is_symlink_err(r, name);
            assert!(
                !s.reserve(ip("10.1.2.3"), &Attachment::new("a", "eth0"))
                    .expect("reserve")
                    || !name.starts_with("10."),
                "a planted reservation name is taken, not overwritten"
            );
            drop(s);
            fs::remove_file(link).expect("rm link");
            fs::remove_file(dir.join("10.1.2.3")).ok();
            assert_eq!(fs::read_to_string(&secret).expect("read"), "10.1.2.200");
        }
        assert_eq!(dir_names(outside.path()), ["elsewhere", "secret"]);
    }

    #[test]
    fn second_opener_waits_then_times_out_with_try_again() {
        let data = tempfile::tempdir().expect("tempdir");
        let held = DiskStore::open(data.path(), "net", &opts()).expect("open");
        let short = DiskStoreOptions {
            lock_timeout: Duration::from_millis(120),
        };
        let err = DiskStore::open(data.path(), "net", &short).expect_err("held elsewhere");
        assert!(err.is_try_again(), "{err}");
        assert!(err.to_string().contains("net/lock"), "{err}");
        // another network is independent
        DiskStore::open(data.path(), "other", &short).expect("other network");
        drop(held);
        DiskStore::open(data.path(), "net", &short).expect("released");
    }

    #[test]
    fn probe_files_are_not_cleaned_as_stale_temp_files() {
        let data = net_dir_with(".host-local-probe.1.0", "");
        let s = DiskStore::open(data.path(), "net", &opts()).expect("open");
        assert!(s.dir().join(".host-local-probe.1.0").exists());
        assert!(s.list().expect("list").is_empty());
        DiskStore::probe_writable(data.path(), "net").expect("probe while locked");
    }

    #[test]
    fn lock_timeout_text() {
        assert_eq!(parse_timeout("250"), Some(Duration::from_millis(250)));
        assert_eq!(parse_timeout(" 0\n"), Some(Duration::ZERO));
        assert_eq!(parse_timeout("1s"), None);
        assert_eq!(parse_timeout("-5"), None);
    }
}
