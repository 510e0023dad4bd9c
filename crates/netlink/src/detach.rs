//! Deleting a link without waiting for the kernel's deferred device cleanup.
//!
//! `RTM_DELLINK` is handled in the sender's system call: the kernel unregisters the device
//! under the RTNL lock (after that it is gone from the namespace: no name, no index, no
//! addresses or routes), releases the lock, and then, still in the same call, waits in
//! `netdev_run_todo` for an RCU barrier and for the last references to the device before
//! it frees it. Measured on the CI machine, deleting a veth pair takes 15–40 ms, of which
//! the device is visible for the first ~5 ms only; the rest is that wait, and it is the
//! same for every tool (`ip link del`, the reference plugins).
//!
//! [`delete_link_detached`] lets a short-lived helper process (a grandchild, so no zombie
//! is left with the caller) make the request and sit out the wait, while the caller
//! returns as soon as the kernel announces the device's removal (`RTM_DELLINK` on the
//! namespace's `RTNLGRP_LINK` multicast group) or the helper reports an error. Nothing is
//! left half done: the device is unregistered before the caller returns, and the helper
//! only finishes freeing it. When the process has more than one thread (forking is then
//! unsafe), the request is made in the caller instead.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::time::Instant;

use cni_netns::NetNs;
use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{Socket as NlSocket, protocols::NETLINK_ROUTE};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::wait::waitpid;
use nix::unistd::{ForkResult, fork, pipe2};

use crate::error::{Error, Result};
use crate::handle::Handle;
use crate::link::{LinkId, msg};
use crate::socket::{RECV_BUF, RECV_TIMEOUT};

/// The `RTNLGRP_LINK` multicast group (link creation, change and removal).
const RTNLGRP_LINK: u32 = 1;

/// What [`delete_link_detached`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deleted {
    /// The link existed and has been removed from the namespace.
    Removed,
    /// There was no link of that name.
    NotFound,
}

/// Deletes the link `name` in `ns` and returns once it is gone from the namespace,
/// leaving the kernel's final wait for the device's release to a detached helper
/// process (see the module documentation).
///
/// # Errors
/// The kernel's error for the lookup or the deletion (with the operation named), a
/// timeout after [`RECV_TIMEOUT`], or an I/O error setting up the helper.
pub fn delete_link_detached(ns: &NetNs, name: &str) -> Result<Deleted> {
    let mut handle = Handle::new_in(ns)?;
    let Some(link) = handle.link_by_name(name)? else {
        return Ok(Deleted::NotFound);
    };
    let op = format!("delete link {name:?} in {}", handle.ns_label());
    if !single_threaded() {
        return delete_now(&mut handle, link.index, &op);
    }
    let events = {
        let _guard = ns.enter()?;
        event_socket().map_err(|e| io_err(&op, e))?
    };
    let (report_rx, report_tx) =
        pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| io_err(&op, e.into()))?;
    spawn_helper(&mut handle, link.index, &op, report_tx)?;
    wait_for_removal(&events, report_rx, link.index, &op)
}

/// Deletes in the calling thread (waits for the whole kernel cleanup).
fn delete_now(handle: &mut Handle, index: u32, op: &str) -> Result<Deleted> {
    match handle.request(msg::del(LinkId::Index(index)), 0, op) {
        Ok(_) => Ok(Deleted::Removed),
        Err(e) if e.is_not_found() => Ok(Deleted::NotFound),
        Err(e) => Err(e),
    }
}

/// True when this process has exactly one thread (`/proc/self/task` entries).
fn single_threaded() -> bool {
    std::fs::read_dir("/proc/self/task").is_ok_and(|d| d.count() == 1)
}

/// A socket in the current namespace that receives link notifications.
fn event_socket() -> io::Result<NlSocket> {
    let mut sock = NlSocket::new(NETLINK_ROUTE)?;
    sock.bind_auto()?;
    sock.add_membership(RTNLGRP_LINK)?;
    Ok(sock)
}

fn io_err(op: &str, source: io::Error) -> Error {
    Error::Io {
        op: op.to_string(),
        source,
    }
}

/// Forks twice: the grandchild sends the request on `handle`'s socket and writes the
/// kernel's verdict (an errno, 0 for success) to `report_tx`; the child exits at once and
/// is reaped here, so the grandchild belongs to init (or the nearest subreaper) from then on.
fn spawn_helper(handle: &mut Handle, index: u32, op: &str, report_tx: OwnedFd) -> Result<()> {
    // SAFETY: this process has a single thread (checked by the caller just before), so
    // the child is a complete copy in which any code may run; it never returns into the
    // caller's code but ends with `_exit`.
    match unsafe { fork() }.map_err(|e| io_err(op, e.into()))? {
        ForkResult::Parent { child } => {
            drop(report_tx);
            // The child only forks and exits; reaping it keeps no zombie around.
            let _ = waitpid(child, None);
            Ok(())
        }
        ForkResult::Child => {
            // SAFETY: as above; still a single thread in this child.
            if let Ok(ForkResult::Child) = unsafe { fork() } {
                helper(handle, index, op, report_tx);
            }
            exit_now(0)
        }
    }
}

/// The grandchild's work; never returns.
fn helper(handle: &mut Handle, index: u32, op: &str, report_tx: OwnedFd) -> ! {
    // Let go of the caller's standard streams: whoever reads the caller's output
    // (a container runtime) must see end-of-file when the caller exits.
    if let Ok(null) = File::options().read(true).write(true).open("/dev/null") {
        // The Rust std handles keep referring to descriptors 0-2, now /dev/null.
        let _ = nix::unistd::dup2_stdin(&null);
        let _ = nix::unistd::dup2_stdout(&null);
        let _ = nix::unistd::dup2_stderr(&null);
    }
    let errno = match handle.request(msg::del(LinkId::Index(index)), 0, op) {
        Ok(_) => 0,
        Err(Error::Kernel { errno, .. }) => errno as i32,
        Err(_) => Errno::EIO as i32,
    };
    let mut tx = File::from(report_tx);
    // The caller may be gone already (it returns on the kernel's notification).
    let _ = tx.write_all(&errno.to_ne_bytes());
    exit_now(0)
}

fn exit_now(code: i32) -> ! {
    // SAFETY: `_exit` ends the process without running the caller's exit handlers or
    // flushing buffers that belong to the caller's copy of the streams.
    unsafe { libc::_exit(code) }
}

/// Waits until the kernel announces the removal of `index` or the helper reports.
fn wait_for_removal(
    events: &NlSocket,
    report_rx: OwnedFd,
    index: u32,
    op: &str,
) -> Result<Deleted> {
    let deadline = Instant::now() + RECV_TIMEOUT;
    let mut report = File::from(report_rx);
    let mut events_ok = true;
    let mut buf: Vec<u8> = Vec::with_capacity(RECV_BUF);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Error::Timeout {
                op: op.to_string(),
                secs: RECV_TIMEOUT.as_secs(),
            });
        }
        let ms = u16::try_from(left.as_millis().max(1)).unwrap_or(u16::MAX);
        let mut fds = vec![PollFd::new(report.as_fd(), PollFlags::POLLIN)];
        if events_ok {
            fds.push(PollFd::new(events.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(io_err(op, e.into())),
        }
        let ready = |f: &PollFd<'_>| f.revents().is_some_and(|r| !r.is_empty());
        let report_ready = fds.first().is_some_and(ready);
        let events_ready = fds.get(1).is_some_and(ready);
        drop(fds);
        if report_ready {
            return read_report(&mut report, op);
        }
        if events_ready {
            buf.clear();
            match events.recv(&mut buf, libc::MSG_DONTWAIT) {
                Ok(_) if announces_removal(&buf, index) => return Ok(Deleted::Removed),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // ENOBUFS (missed notifications) or any other trouble: wait for the
                // helper's own report instead.
                Err(e) => {
                    log::debug!("{op}: link notifications unusable ({e}); waiting for the helper");
                    events_ok = false;
                }
            }
        }
    }
}

/// The helper's verdict: 0 → removed, `ENODEV` → not found, else the kernel's error.
fn read_report(report: &mut File, op: &str) -> Result<Deleted> {
    let mut bytes = [0u8; 4];
    match report.read_exact(&mut bytes) {
        Ok(()) => match i32::from_ne_bytes(bytes) {
            0 => Ok(Deleted::Removed),
            e if e == Errno::ENODEV as i32 => Ok(Deleted::NotFound),
            e => Err(Error::Kernel {
                op: op.to_string(),
                errno: Errno::from_raw(e),
            }),
        },
        Err(e) => Err(Error::Unexpected {
            op: op.to_string(),
            what: format!("the deletion helper ended without a report ({e})"),
        }),
    }
}

/// True when the datagram `buf` holds an `RTM_DELLINK` notification for `index`.
fn announces_removal(buf: &[u8], index: u32) -> bool {
    let mut off = 0;
    while off < buf.len() {
        let Some(chunk) = buf.get(off..) else { break };
        let Ok(m) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(chunk) else {
            break;
        };
        let len = m.header.length as usize;
        if len == 0 {
            break;
        }
        if let NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(l)) = &m.payload
            && l.header.index == index
        {
            return true;
        }
        off += (len + 3) & !3;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::NetlinkHeader;
    use netlink_packet_route::link::LinkMessage;

    fn datagram(msgs: Vec<RouteNetlinkMessage>) -> Vec<u8> {
        let mut out = Vec::new();
        for m in msgs {
            let mut nl =
                NetlinkMessage::new(NetlinkHeader::default(), NetlinkPayload::InnerMessage(m));
            nl.finalize();
            let mut bytes = vec![0u8; nl.buffer_len()];
            nl.serialize(&mut bytes);
            while bytes.len() % 4 != 0 {
                bytes.push(0);
            }
            out.extend(bytes);
        }
        out
    }

    fn link(index: u32) -> LinkMessage {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m
    }

    #[test]
    fn removal_is_recognised_by_index_and_type() {
        let d = datagram(vec![
            RouteNetlinkMessage::NewLink(link(7)),
            RouteNetlinkMessage::DelLink(link(9)),
        ]);
        assert!(announces_removal(&d, 9));
        assert!(!announces_removal(&d, 7), "RTM_NEWLINK is not a removal");
        assert!(!announces_removal(&d, 8));
        assert!(!announces_removal(&[], 9));
        assert!(!announces_removal(&[1, 2, 3], 9), "garbage is ignored");
    }

    #[test]
    fn reports_map_to_results() {
        let mut path = std::env::temp_dir();
        path.push(format!("cni-netlink-report-{}", std::process::id()));
        for (errno, want) in [
            (0, Ok(Deleted::Removed)),
            (Errno::ENODEV as i32, Ok(Deleted::NotFound)),
        ] {
            std::fs::write(&path, errno.to_ne_bytes()).expect("write");
            let mut f = File::open(&path).expect("open");
            assert_eq!(read_report(&mut f, "op").map_err(|e| e.to_string()), want);
        }
        std::fs::write(&path, (Errno::EPERM as i32).to_ne_bytes()).expect("write");
        let mut f = File::open(&path).expect("open");
        assert!(read_report(&mut f, "op").is_err_and(|e| !e.is_not_found()));
        std::fs::write(&path, b"").expect("write");
        let mut f = File::open(&path).expect("open");
        assert!(read_report(&mut f, "op").is_err(), "no report is an error");
        let _ = std::fs::remove_file(&path);
    }
}
