//! The [`NetNs`] handle, the enter guard and scoped-thread execution.

use std::fs::File;
use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::sched::{CloneFlags, setns};
use nix::sys::statfs::{NSFS_MAGIC, PROC_SUPER_MAGIC, fstatfs};

use crate::error::{Error, Result};

/// Path of the calling thread's network namespace.
const THREAD_SELF_NS: &str = "/proc/thread-self/ns/net";

/// An open network namespace.
#[derive(Debug)]
pub struct NetNs {
    file: File,
    path: PathBuf,
}

impl NetNs {
    /// Opens the namespace at `path` and verifies that it is a network namespace file
    /// (filesystem magic `NSFS` or, for `/proc/<pid>/ns/net` on old kernels, `PROC`, and
    /// the open file is a `net:[...]` namespace).
    ///
    /// # Errors
    /// [`Error::Open`] when the path cannot be opened, [`Error::NotNetns`] when it is
    /// some other file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path).map_err(|source| Error::Open {
            path: path.clone(),
            source,
        })?;
        let st = fstatfs(&file).map_err(|e| Error::Open {
            path: path.clone(),
            source: e.into(),
        })?;
        let fs_type = st.filesystem_type();
        if fs_type != NSFS_MAGIC && fs_type != PROC_SUPER_MAGIC {
            return Err(Error::NotNetns {
                path,
                #[allow(clippy::unnecessary_cast, reason = "fs_type_t width differs by libc")]
                fs_type: fs_type.0 as i64,
            });
        }
        // Any proc file (`/proc/self/status`) passes the PROC magic check, and a namespace
        // of another type (`/proc/self/ns/mnt`) the NSFS one. Opened through `/proc`, the
        // fd's link names the namespace type (`net:[4026531840]`); opened through a bind
        // mount (`/run/netns/x`) it is that path, and the kernel checks the type on setns.
        let link = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
            .map(|l| l.to_string_lossy().into_owned())
            .unwrap_or_default();
        let names_a_type = link.ends_with(']') && link.contains(":[") && !link.starts_with('/');
        let wrong = if names_a_type {
            !link.starts_with("net:[")
        } else {
            fs_type != NSFS_MAGIC
        };
        if wrong {
            return Err(Error::NotNetns {
                path,
                #[allow(clippy::unnecessary_cast, reason = "fs_type_t width differs by libc")]
                fs_type: fs_type.0 as i64,
            });
        }
        Ok(Self { file, path })
    }

    /// Opens the calling thread's current network namespace.
    ///
    /// # Errors
    /// As [`NetNs::open`].
    pub fn current() -> Result<Self> {
        Self::open(THREAD_SELF_NS)
    }

    /// The path this handle was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Device and inode identifying the namespace.
    ///
    /// # Errors
    /// [`Error::Open`] when `fstat` fails.
    pub fn id(&self) -> Result<(u64, u64)> {
        let md = self.file.metadata().map_err(|source| Error::Open {
            path: self.path.clone(),
            source,
        })?;
        Ok((md.dev(), md.ino()))
    }

    /// True when both handles refer to the same namespace (device and inode compare).
    ///
    /// # Errors
    /// [`Error::Open`] when either handle cannot be `fstat`ed.
    pub fn is_same(&self, other: &NetNs) -> Result<bool> {
        Ok(self.id()? == other.id()?)
    }

    /// True when this is the calling thread's current namespace.
    ///
    /// # Errors
    /// As [`NetNs::current`].
    pub fn is_current(&self) -> Result<bool> {
        self.is_same(&Self::current()?)
    }

    /// Moves the calling thread into this namespace until the returned guard is dropped.
    ///
    /// The guard is neither `Send` nor `Sync`: it must be dropped on the thread that
    /// entered. If switching back fails on drop, the process aborts.
    ///
    /// # Errors
    /// [`Error::Open`] if the current namespace cannot be opened, [`Error::Enter`] when
    /// `setns` fails (the thread then stays where it was).
    pub fn enter(&self) -> Result<NsGuard<'_>> {
        let previous = Self::current()?;
        setns(&self.file, CloneFlags::CLONE_NEWNET).map_err(|errno| Error::Enter {
            path: self.path.clone(),
            errno,
        })?;
        Ok(NsGuard {
            previous,
            _entered: PhantomData,
            _not_send: PhantomData,
        })
    }

    /// Runs `f` on a new scoped thread that has entered this namespace and returns its
    /// value. The thread ends afterwards, so the caller's thread is never moved.
    ///
    /// # Errors
    /// [`Error::Enter`] when the thread cannot enter the namespace, [`Error::Thread`] when
    /// the thread cannot be spawned or `f` panics (the panic is not propagated).
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T> {
        std::thread::scope(|scope| {
            let handle = std::thread::Builder::new()
                .name("netns-run".into())
                .spawn_scoped(scope, move || -> Result<T> {
                    // The thread dies after `f`, so there is no need to switch back; still
                    // use the guard so the thread is never left in an unknown state.
                    setns(&self.file, CloneFlags::CLONE_NEWNET).map_err(|errno| Error::Enter {
                        path: self.path.clone(),
                        errno,
                    })?;
                    Ok(f())
                })
                .map_err(|e| Error::Thread {
                    path: self.path.clone(),
                    reason: format!("spawn: {e}"),
                })?;
            handle.join().map_err(|panic| Error::Thread {
                path: self.path.clone(),
                reason: panic_message(&*panic),
            })?
        })
    }
}

/// Text of a panic payload.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        format!("panicked: {s}")
    } else if let Some(s) = panic.downcast_ref::<String>() {
        format!("panicked: {s}")
    } else {
        "panicked".to_string()
    }
}

impl AsFd for NetNs {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

/// Keeps the calling thread inside a namespace entered with [`NetNs::enter`]; switches
/// back to the previous namespace when dropped.
#[derive(Debug)]
#[must_use = "dropping the guard immediately switches back"]
pub struct NsGuard<'a> {
    previous: NetNs,
    _entered: PhantomData<&'a NetNs>,
    _not_send: PhantomData<*const ()>,
}

impl NsGuard<'_> {
    /// The namespace the thread will return to.
    pub fn previous(&self) -> &NetNs {
        &self.previous
    }
}

impl Drop for NsGuard<'_> {
    fn drop(&mut self) {
        if let Err(errno) = setns(&self.previous.file, CloneFlags::CLONE_NEWNET) {
            // Continuing would run the rest of the program in the wrong namespace.
            log::error!(
                "cannot return to netns {:?}: {errno}; aborting",
                self.previous.path
            );
            std::process::abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_network_namespaces_open() {
        assert!(NetNs::open("/proc/self/ns/net").is_ok());
        for p in [
            "/proc/self/status",
            "/proc/self/ns/mnt",
            "/proc/self/ns/uts",
        ] {
            match NetNs::open(p) {
                Err(Error::NotNetns { .. }) => {}
                other => panic!("{p}: {other:?}"),
            }
        }
        assert!(matches!(
            NetNs::open("/dev/null"),
            Err(Error::NotNetns { .. })
        ));
    }
}
