//! The per-network `lock` file: an exclusive `flock` (the same advisory lock
//! the reference takes through go-filemutex), acquired with a bounded wait.

use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use super::StoreError;

/// Longest sleep between two `try_lock` attempts.
const MAX_POLL: Duration = Duration::from_millis(10);

/// Opens `path` (creating it with mode 0600 if absent) and takes an
/// exclusive lock on it, polling `try_lock` until `timeout` has passed.
/// The lock lives as long as the returned file.
pub(crate) fn acquire(path: &Path, timeout: Duration) -> Result<File, StoreError> {
    let file = open(path)?;
    let started = Instant::now();
    let mut pause = Duration::from_micros(250);
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(TryLockError::WouldBlock) => {
                let waited = started.elapsed();
                if waited >= timeout {
                    return Err(StoreError::LockTimeout {
                        path: path.to_path_buf(),
                        waited,
                    });
                }
                thread::sleep(pause.min(timeout - waited));
                pause = (pause * 2).min(MAX_POLL);
            }
            Err(TryLockError::Error(e)) => return Err(StoreError::io("lock", path, e)),
        }
    }
}

/// An existing lock file is opened read-only (flock needs no write access,
/// and the reference's 0750 file is left as it is); a missing one is
/// created with mode 0600. Neither open follows a symlink planted at `path`
/// (`O_NOFOLLOW`: [`StoreError::Symlink`]), so a link to a path that does not
/// exist never creates it.
fn open(path: &Path) -> Result<File, StoreError> {
    match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
    {
        Ok(f) => Ok(f),
        Err(e) if e.kind() == io::ErrorKind::NotFound => OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map_err(|e| StoreError::io("create lock file", path, e)),
        Err(e) => Err(StoreError::io("open lock file", path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn creates_lock_file_with_mode_0600() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("lock");
        let _held = acquire(&path, Duration::from_millis(100)).expect("lock");
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn second_holder_times_out_then_succeeds_after_release() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("lock");
        let held = acquire(&path, Duration::from_millis(100)).expect("lock");
        let started = Instant::now();
        let err = acquire(&path, Duration::from_millis(150)).expect_err("contended");
        assert!(err.is_try_again(), "{err}");
        assert!(started.elapsed() >= Duration::from_millis(150));
        assert!(err.to_string().contains("lock"), "{err}");
        drop(held);
        acquire(&path, Duration::from_millis(100)).expect("free again");
    }

    #[test]
    fn waiter_gets_lock_when_holder_releases_within_timeout() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("lock");
        let held = acquire(&path, Duration::from_millis(100)).expect("lock");
        let p2 = path.clone();
        let waiter = thread::spawn(move || acquire(&p2, Duration::from_secs(5)).map(|_| ()));
        thread::sleep(Duration::from_millis(100));
        drop(held);
        waiter
            .join()
            .expect("thread")
            .expect("acquired after release");
    }

    #[test]
    fn existing_read_only_lock_file_is_usable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("lock");
        std::fs::write(&path, b"").expect("create");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o750)).expect("chmod");
        let _held = acquire(&path, Duration::from_millis(100)).expect("lock");
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o750, "an existing lock file keeps its mode");
    }
}
