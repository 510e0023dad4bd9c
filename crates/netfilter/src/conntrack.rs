//! Deleting UDP conntrack entries by destination port, natively over `NETLINK_NETFILTER`
//! (ctnetlink), as the reference portmap plugin does after programming its rules
//! (containernetworking/plugins `plugins/meta/portmap`, `deletePortmapStaleConnections`;
//! containernetworking/plugins#123 for why).
//!
//! A UDP "connection" lives in the conntrack table for as long as packets keep flowing,
//! and its NAT decision is taken only once, on the first packet. A client that keeps
//! sending to a host port whose DNAT target changed (container deleted and re-created)
//! would stay black-holed towards the old address; deleting the entry makes the next
//! packet go through the new rules.
//!
//! The procedure mirrors the reference (vishvananda/netlink `ConntrackDeleteFilters`):
//! dump the conntrack table (`IPCTNL_MSG_CT_GET` with `NLM_F_DUMP`), keep the entries
//! whose *original* tuple is UDP with one of the given destination ports (whatever the
//! addresses), then delete each one by its original tuple (`IPCTNL_MSG_CT_DELETE` with an
//! ACK). The delete also carries the entry's id and zone, so the kernel removes exactly
//! the dumped entry and never a newer one that reuses the tuple. An entry that vanished
//! in between (`ENOENT`) is not an error.
//!
//! A dump walks the kernel's whole conntrack hash (shared by all namespaces, 262,144
//! buckets by default: about 5 ms even when this namespace has no entry), so
//! [`delete_udp_flows_to_ports`] does it once for all ports and both families (a dump
//! with `AF_UNSPEC` returns the entries of every family), and not at all when the
//! namespace has no conntrack entry ([`namespace_is_empty`]).
//!
//! The socket is opened in the calling thread's network namespace and has a receive
//! timeout, so a missing reply cannot hang the caller. No external tool is involved.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use netlink_packet_core::{NLM_F_ACK, NLM_F_DUMP, Nla};
use netlink_packet_netfilter::conntrack::{
    ConntrackAttribute, ConntrackMessage, IPTuple, ProtoTuple, Protocol, Tuple,
};
use netlink_packet_netfilter::{NetfilterMessageInner, NetfilterProtoFamily};
use nix::errno::Errno;

use crate::error::{Error, Result};
pub use crate::iptables::Family;
pub use crate::nfnl::RECV_TIMEOUT;
use crate::nfnl::{self, Reply};

/// How often a dump marked inconsistent (`NLM_F_DUMP_INTR`) is restarted.
pub const DUMP_ATTEMPTS: u32 = 5;
/// At most this many failed deletes are reported one by one (then only counted).
const MAX_LISTED_ERRORS: usize = 3;
/// The number of conntrack entries of the reading thread's network namespace.
const COUNT_SYSCTL: &str = "/proc/sys/net/netfilter/nf_conntrack_count";
/// Present whenever the `nf_conntrack` module is loaded (it has parameters, so it is
/// listed even when built in).
const MODULE_DIR: &str = "/sys/module/nf_conntrack";
/// Dumps requested by this process, see [`dumps_requested`].
static DUMPS: AtomicUsize = AtomicUsize::new(0);
/// `CTA_ID`: the entry's id; the kernel refuses a delete whose id does not match.
const CTA_ID: u16 = 12;
/// `CTA_ZONE`: the entry's zone; present in dumps only for non-default zones.
const CTA_ZONE: u16 = 18;
/// `IPCTNL_MSG_CT_GET_STATS`: the namespace's conntrack counters.
const IPCTNL_MSG_CT_GET_STATS: u8 = 5;
/// `CTA_STATS_GLOBAL_ENTRIES` (u32, big endian): entries in the namespace.
const CTA_STATS_GLOBAL_ENTRIES: u16 = 1;

/// A UDP conntrack entry, as seen in its original direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpFlow {
    /// Original source address and port (the client).
    pub src: SocketAddr,
    /// Original destination address and port (e.g. the host port before DNAT).
    pub dst: SocketAddr,
    /// The attributes identifying the entry in a delete request: the original tuple as
    /// dumped, plus `CTA_ID` and `CTA_ZONE` when the kernel reported them.
    key: Vec<ConntrackAttribute>,
}

impl UdpFlow {
    /// The entry's address family.
    pub fn family(&self) -> Family {
        Family::of(self.src.ip())
    }
}

/// Which entries a dump keeps: UDP, of one of `families`, to one of `ports`.
#[derive(Debug, Clone, Copy)]
struct Wanted<'a> {
    families: &'a [Family],
    ports: &'a [u16],
}

impl Wanted<'_> {
    /// The `nfgenmsg` family of the dump: the one family asked for, or `AF_UNSPEC` (every
    /// family, in one walk of the table) for both.
    fn dump_family(&self) -> NetfilterProtoFamily {
        match self.families {
            [one] => nfproto(*one),
            _ => NetfilterProtoFamily::Unspec,
        }
    }

    fn describe(&self) -> String {
        let families: Vec<String> = self.families.iter().map(ToString::to_string).collect();
        let ports: Vec<String> = self.ports.iter().map(ToString::to_string).collect();
        format!(
            "dump {} conntrack table for udp port {}",
            families.join("+"),
            ports.join(",")
        )
    }
}

/// True when the calling thread's network namespace certainly has no conntrack entry,
/// so that there is nothing to dump: the namespace's entry count is 0 (asked over
/// nfnetlink, [`entry_count`]; it counts entries from allocation on, so one being set
/// up counts too), or conntrack is not loaded at all (then nothing is asked, so that
/// no module gets loaded for the question). When the netlink request fails,
/// `nf_conntrack_count` is read instead (0 = empty), and when that file is absent the
/// answer is "empty" only if `/sys/module/nf_conntrack` is absent (with sysfs mounted).
/// Anything else (a non-zero count, an unreadable count, a count hidden while the
/// module is loaded) is `false`: dump.
pub fn namespace_is_empty() -> bool {
    let exists = |p: &str| std::path::Path::new(p).exists();
    if exists("/sys/module") && !exists(MODULE_DIR) {
        // Not loaded: asking would load nf_conntrack_netlink (and conntrack with it).
        return true;
    }
    match entry_count() {
        Ok(count) => count == 0,
        Err(e) => {
            log::debug!("{e}; reading {COUNT_SYSCTL} instead");
            namespace_is_empty_with(
                |p| std::fs::read_to_string(p),
                |p| std::path::Path::new(p).exists(),
            )
        }
    }
}

/// The number of conntrack entries of the calling thread's network namespace (what
/// `nf_conntrack_count` shows), asked with one `IPCTNL_MSG_CT_GET_STATS` request on
/// one connection. Cheaper than reading the sysctl on a node with many namespaces: a process's
/// first lookup below `/proc/sys/net` walks a dcache chain holding every namespace's
/// entry (measured ~0.5-1 ms with 1,000 containers).
///
/// # Errors
/// [`Error::Conntrack`]: the socket or the request failing (conntrack not loaded: the
/// subsystem is unknown), a timeout, or a reply without `CTA_STATS_GLOBAL_ENTRIES`.
pub fn entry_count() -> Result<u32> {
    let mut conn = open()?;
    request_entry_count(&mut conn).map_err(|source| Error::Conntrack {
        op: "ask for the conntrack entry count".into(),
        source,
    })
}

fn request_entry_count(conn: &mut nfnl::Conn) -> io::Result<u32> {
    let request = ConntrackMessage::Other {
        message_type: IPCTNL_MSG_CT_GET_STATS,
        attributes: Vec::new(),
    };
    let seq = conn.send(NetfilterProtoFamily::Unspec, request, NLM_F_ACK)?;
    let mut count = None;
    conn.receive_until_finished(seq, |reply| {
        if let Reply::Entry(inner) = reply
            && let NetfilterMessageInner::Conntrack(ConntrackMessage::Other {
                message_type: IPCTNL_MSG_CT_GET_STATS,
                attributes,
            }) = *inner
        {
            count = attributes
                .iter()
                .find(|a| a.kind() == CTA_STATS_GLOBAL_ENTRIES)
                .and_then(|a| {
                    let mut v = [0u8; 4];
                    (a.value_len() == 4).then(|| {
                        a.emit_value(&mut v);
                        u32::from_be_bytes(v)
                    })
                });
        }
    })?;
    count.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "conntrack statistics without CTA_STATS_GLOBAL_ENTRIES",
        )
    })
}

/// The `nf_conntrack_count` fallback of [`namespace_is_empty`], with the file reads
/// injected for unit tests.
fn namespace_is_empty_with(
    read: impl Fn(&str) -> io::Result<String>,
    exists: impl Fn(&str) -> bool,
) -> bool {
    match read(COUNT_SYSCTL) {
        Ok(text) => text.trim() == "0",
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            exists("/sys/module") && !exists(MODULE_DIR)
        }
        Err(_) => false,
    }
}

/// How many conntrack table dumps (walks of the kernel's whole conntrack hash) this
/// process has asked for so far, retries included. For tests and diagnostics.
pub fn dumps_requested() -> usize {
    DUMPS.load(Ordering::Relaxed)
}

/// Lists the conntrack entries of `family` in the calling thread's network namespace
/// whose original tuple is UDP with destination port `port`.
///
/// # Errors
/// [`Error::Conntrack`] when the socket cannot be opened, the dump fails or times out,
/// is still interrupted after [`DUMP_ATTEMPTS`] attempts, or holds undecodable entries.
pub fn udp_flows_to_port(family: Family, port: u16) -> Result<Vec<UdpFlow>> {
    let wanted = Wanted {
        families: &[family],
        ports: &[port],
    };
    let mut conn = open()?;
    let dump = dump_udp_flows(&mut conn, wanted)?;
    dump.problem(wanted)?;
    Ok(dump.flows)
}

/// Deletes every conntrack entry of `family` in the calling thread's network namespace
/// whose original tuple is UDP with destination port `port`, whatever its addresses.
/// Returns how many entries this call deleted. See [`delete_udp_flows_to_ports`].
///
/// # Errors
/// As [`delete_udp_flows_to_ports`].
pub fn delete_udp_flows_to_port(family: Family, port: u16) -> Result<usize> {
    delete_udp_flows_to_ports(&[family], &[port])
}

/// Deletes every conntrack entry of one of `families` in the calling thread's network
/// namespace whose original tuple is UDP with one of the destination `ports`, whatever
/// its addresses, with one dump of the table for all of them. Returns how many entries
/// this call deleted (entries that disappeared on their own between the dump and the
/// delete are not counted). Nothing is asked of the kernel when `families` or `ports`
/// is empty or the namespace has no conntrack entry at all ([`namespace_is_empty`]).
///
/// Every matching entry is attempted even when some fail, unless the kernel stops
/// answering (a receive timeout ends the run).
///
/// # Errors
/// [`Error::Conntrack`] (or [`Error::Multiple`] of them) naming the step: opening the
/// socket, dumping the table (failure, timeout, persistent interruption, undecodable
/// entries: the flows that were found are still deleted) or deleting a flow.
pub fn delete_udp_flows_to_ports(families: &[Family], ports: &[u16]) -> Result<usize> {
    if families.is_empty() || ports.is_empty() {
        return Ok(0);
    }
    if namespace_is_empty() {
        log::debug!("no conntrack entry in this namespace: nothing to delete");
        return Ok(0);
    }
    let wanted = Wanted { families, ports };
    let mut conn = open()?;
    let dump = dump_udp_flows(&mut conn, wanted)?;
    delete_flows(&mut conn, &dump.flows, ports, dump.problem(wanted))
}

/// Deletes `flows` (every one attempted unless the kernel stops answering) and returns
/// how many this call deleted; failures and the dump's `problem` become the error.
fn delete_flows(
    conn: &mut nfnl::Conn,
    flows: &[UdpFlow],
    ports: &[u16],
    problem: Result<()>,
) -> Result<usize> {
    let mut deleted = 0;
    let mut failed = 0;
    let mut errors = Vec::new();
    for flow in flows {
        match delete(conn, flow) {
            Ok(Deleted::Yes) => deleted += 1,
            Ok(Deleted::AlreadyGone) => {}
            Err(source) => {
                failed += 1;
                let stop = source.kind() == io::ErrorKind::TimedOut;
                if errors.len() < MAX_LISTED_ERRORS {
                    errors.push(Error::Conntrack {
                        op: format!(
                            "delete {} udp flow {} -> {}",
                            flow.family(),
                            flow.src,
                            flow.dst
                        ),
                        source,
                    });
                }
                if stop {
                    break;
                }
            }
        }
    }
    if failed > 0 {
        let ports: Vec<String> = ports.iter().map(ToString::to_string).collect();
        errors.push(Error::Conntrack {
            op: format!("delete udp flows to port {}", ports.join(",")),
            source: io::Error::other(format!(
                "{failed} of {} deletes failed ({deleted} deleted; first errors listed)",
                flows.len()
            )),
        });
    }
    if let Err(e) = problem {
        errors.push(e);
    }
    Error::collect(errors)?;
    Ok(deleted)
}

/// `NFNLGRP_CONNTRACK_NEW`: ctnetlink's multicast group announcing new entries.
const NFNLGRP_CONNTRACK_NEW: u32 = 1;
/// `0` here means the kernel announces no conntrack events at all.
const EVENTS_SYSCTL: &str = "/proc/sys/net/netfilter/nf_conntrack_events";

/// [`delete_udp_flows_to_ports`] with the table walk done while the caller changes its
/// rules, instead of after (the walk of the kernel's whole conntrack hash costs about
/// as much as the `iptables-restore` it then overlaps, ~3-5 ms here).
///
/// The flush has to catch every matching entry that exists when the rules change, and
/// walking the table before the change would miss those created during it. So
/// [`OverlappedFlush::start`] first subscribes to the kernel's new-entry events
/// (`NFNLGRP_CONNTRACK_NEW`, delivered when an entry is confirmed), then counts and, if
/// the namespace has any entry, dumps the table on another thread. After the change,
/// [`OverlappedFlush::finish`] deletes the matching entries of the dump plus those the
/// events announced meanwhile: every entry confirmed before the change was either in
/// the table when the walk began or announced after the subscription. Whenever that
/// cannot be relied on (no subscription, events disabled by `nf_conntrack_events=0`,
/// events lost to a full buffer, an incomplete dump), `finish` falls back to
/// [`delete_udp_flows_to_ports`] after the change, which is what the reference does.
pub struct OverlappedFlush {
    families: Vec<Family>,
    ports: Vec<u16>,
    /// The event subscription; `None` = fall back.
    events: Option<nfnl::Conn>,
    /// The walk: `Ok(None)` = fall back.
    walk: Option<std::thread::JoinHandle<Result<Option<Dump>>>>,
}

impl OverlappedFlush {
    /// Subscribes to new-entry events and starts the walk on another thread (in the
    /// calling thread's network namespace). Never fails: problems are found by
    /// [`OverlappedFlush::finish`], which then flushes the plain way.
    pub fn start(families: &[Family], ports: &[u16]) -> OverlappedFlush {
        let mut ports = ports.to_vec();
        ports.sort_unstable();
        ports.dedup();
        let mut flush = OverlappedFlush {
            families: families.to_vec(),
            ports,
            events: None,
            walk: None,
        };
        if flush.families.is_empty() || flush.ports.is_empty() {
            return flush;
        }
        match nfnl::Conn::open_events(NFNLGRP_CONNTRACK_NEW) {
            Ok(conn) => flush.events = Some(conn),
            Err((op, e)) => {
                log::debug!("{op}: {e}; the conntrack flush will follow the rule change");
                return flush;
            }
        }
        let (families, ports) = (flush.families.clone(), flush.ports.clone());
        let walk = std::thread::Builder::new()
            .name("conntrack-walk".into())
            .spawn(move || walk_before_change(&families, &ports));
        match walk {
            Ok(handle) => flush.walk = Some(handle),
            Err(e) => log::debug!("conntrack walk thread: {e}; flushing after the change"),
        }
        flush
    }

    /// Completes the flush after the rule change; returns how many entries were deleted.
    ///
    /// # Errors
    /// As [`delete_udp_flows_to_ports`].
    pub fn finish(mut self) -> Result<usize> {
        if self.families.is_empty() || self.ports.is_empty() {
            return Ok(0);
        }
        let families = std::mem::take(&mut self.families);
        let ports = std::mem::take(&mut self.ports);
        let wanted = Wanted {
            families: &families,
            ports: &ports,
        };
        let fallback = |why: &str| {
            log::debug!("{why}: flushing conntrack entries after the rule change");
            delete_udp_flows_to_ports(&families, &ports)
        };
        let (Some(mut events), Some(walk)) = (self.events.take(), self.walk.take()) else {
            return fallback("no overlapped walk");
        };
        let mut dump = match walk.join() {
            Ok(Ok(Some(dump))) if dump.problem(wanted).is_ok() => dump,
            Ok(Ok(Some(_))) => return fallback("the walk was incomplete"),
            Ok(Ok(None)) => return fallback("conntrack events are off"),
            Ok(Err(e)) => return fallback(&format!("the walk failed: {e}")),
            Err(_) => return fallback("the walk panicked"),
        };
        let mut announced = Vec::new();
        let drained = events.drain_events(|reply| {
            if let Reply::Entry(msg) = reply
                && let NetfilterMessageInner::Conntrack(ConntrackMessage::New(attrs)) = *msg
                && let Some(flow) = udp_flow(wanted, attrs)
            {
                announced.push(flow);
            }
        });
        if let Err(e) = drained {
            return fallback(&format!("conntrack events: {e}"));
        }
        for flow in announced {
            if !dump.flows.contains(&flow) {
                dump.flows.push(flow);
            }
        }
        if dump.flows.is_empty() {
            return Ok(0);
        }
        let mut conn = open()?;
        delete_flows(&mut conn, &dump.flows, &ports, Ok(()))
    }
}

impl std::fmt::Debug for OverlappedFlush {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OverlappedFlush")
            .field("families", &self.families)
            .field("ports", &self.ports)
            .field("subscribed", &self.events.is_some())
            .field("walking", &self.walk.is_some())
            .finish()
    }
}

impl Drop for OverlappedFlush {
    /// An unfinished flush (the rule change failed) still waits for its walk thread.
    fn drop(&mut self) {
        if let Some(walk) = self.walk.take() {
            let _ = walk.join();
        }
    }
}

/// The walk of [`OverlappedFlush`]: `None` when events are off (then the walk cannot
/// be completed by them), an empty dump when the namespace has no entry.
fn walk_before_change(families: &[Family], ports: &[u16]) -> Result<Option<Dump>> {
    if std::fs::read_to_string(EVENTS_SYSCTL).map_or(true, |v| v.trim() == "0") {
        return Ok(None);
    }
    if namespace_is_empty() {
        log::debug!("no conntrack entry in this namespace: nothing to walk");
        return Ok(Some(Dump::default()));
    }
    let mut conn = open()?;
    dump_udp_flows(&mut conn, Wanted { families, ports }).map(Some)
}

fn nfproto(family: Family) -> NetfilterProtoFamily {
    match family {
        Family::V4 => NetfilterProtoFamily::IPv4,
        Family::V6 => NetfilterProtoFamily::IPv6,
    }
}

fn open() -> Result<nfnl::Conn> {
    nfnl::Conn::open().map_err(|(op, source)| Error::Conntrack { op, source })
}

/// Outcome of one delete request.
enum Deleted {
    Yes,
    /// `ENOENT`: expired, deleted by someone else, or replaced (different id).
    AlreadyGone,
}

/// The matching entries of one (possibly retried) dump.
#[derive(Debug, Default)]
struct Dump {
    flows: Vec<UdpFlow>,
    /// The last attempt was still marked inconsistent, so entries may be missing.
    interrupted: bool,
    /// Entries the decoder rejected; they may or may not have matched.
    undecodable: usize,
    /// The first decoder error, for the message.
    decode_error: Option<String>,
}

impl Dump {
    /// Turns an incomplete dump into an error (the flows found stay usable).
    fn problem(&self, wanted: Wanted<'_>) -> Result<()> {
        let op = wanted.describe();
        let mut errors = Vec::new();
        if self.interrupted {
            errors.push(Error::Conntrack {
                op: op.clone(),
                source: io::Error::other(format!(
                    "interrupted by concurrent changes {DUMP_ATTEMPTS} times in a row, \
                     entries may have been missed"
                )),
            });
        }
        if self.undecodable > 0 {
            errors.push(Error::Conntrack {
                op,
                source: io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{} entries could not be decoded and were skipped (first: {})",
                        self.undecodable,
                        self.decode_error.as_deref().unwrap_or("unknown")
                    ),
                ),
            });
        }
        Error::collect(errors)
    }
}

/// Dumps the table (one walk for every wanted family) and keeps the wanted UDP entries,
/// restarting the dump while the kernel marks it interrupted (at most
/// [`DUMP_ATTEMPTS`] times).
fn dump_udp_flows(conn: &mut nfnl::Conn, wanted: Wanted<'_>) -> Result<Dump> {
    let op = wanted.describe();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut dump = Dump::default();
        log::debug!("{op}");
        DUMPS.fetch_add(1, Ordering::Relaxed);
        let seq = conn
            .send(
                wanted.dump_family(),
                ConntrackMessage::Get(Vec::new()),
                NLM_F_DUMP,
            )
            .map_err(|source| Error::Conntrack {
                op: op.clone(),
                source,
            })?;
        let interrupted = conn
            .receive_until_finished(seq, |reply| match reply {
                Reply::Entry(msg) => {
                    if let NetfilterMessageInner::Conntrack(ConntrackMessage::New(attrs)) = *msg
                        && let Some(flow) = udp_flow(wanted, attrs)
                    {
                        dump.flows.push(flow);
                    }
                }
                Reply::Undecodable(why) => {
                    dump.undecodable += 1;
                    dump.decode_error.get_or_insert(why);
                }
                Reply::Finished | Reply::Ignore => {}
            })
            .map_err(|source| Error::Conntrack {
                op: op.clone(),
                source,
            })?;
        if !interrupted {
            return Ok(dump);
        }
        if attempt >= DUMP_ATTEMPTS {
            dump.interrupted = true;
            return Ok(dump);
        }
        log::debug!("{op}: interrupted by concurrent changes, restarting");
    }
}

/// Deletes one entry by its key (in its own family), waiting for the ACK.
fn delete(conn: &mut nfnl::Conn, flow: &UdpFlow) -> io::Result<Deleted> {
    let seq = conn.send(
        nfproto(flow.family()),
        ConntrackMessage::Delete(flow.key.clone()),
        NLM_F_ACK,
    )?;
    match conn.receive_until_finished(seq, |_| {}) {
        Ok(_) => Ok(Deleted::Yes),
        Err(e) if e.raw_os_error() == Some(Errno::ENOENT as i32) => Ok(Deleted::AlreadyGone),
        Err(e) => Err(e),
    }
}

/// The entry as a [`UdpFlow`] when its original tuple is UDP of a wanted family to a
/// wanted port.
fn udp_flow(wanted: Wanted<'_>, attrs: Vec<ConntrackAttribute>) -> Option<UdpFlow> {
    let mut orig = None;
    let mut extra = Vec::new();
    for attr in attrs {
        match attr {
            ConntrackAttribute::CtaTupleOrig(tuple) => orig = Some(tuple),
            ConntrackAttribute::Other(nla) if nla.kind() == CTA_ID || nla.kind() == CTA_ZONE => {
                extra.push(ConntrackAttribute::Other(nla));
            }
            _ => {}
        }
    }
    let orig = orig?;
    let (mut src_ip, mut dst_ip, mut proto, mut sport, mut dport) = (None, None, None, None, None);
    for part in &orig {
        match part {
            Tuple::Ip(ips) => {
                for ip in ips {
                    match ip {
                        IPTuple::SourceAddress(a) => src_ip = Some(*a),
                        IPTuple::DestinationAddress(a) => dst_ip = Some(*a),
                        _ => {}
                    }
                }
            }
            Tuple::Proto(fields) => {
                for field in fields {
                    match field {
                        ProtoTuple::Protocol(p) => proto = Some(*p),
                        ProtoTuple::SourcePort(p) => sport = Some(*p),
                        ProtoTuple::DestinationPort(p) => dport = Some(*p),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    let (src_ip, dst_ip, dport) = (src_ip?, dst_ip?, dport?);
    let family = Family::of(src_ip);
    if proto? != Protocol::Udp
        || !wanted.ports.contains(&dport)
        || !wanted.families.contains(&family)
        || Family::of(dst_ip) != family
    {
        return None;
    }
    let mut key = vec![ConntrackAttribute::CtaTupleOrig(orig)];
    key.extend(extra);
    Some(UdpFlow {
        src: SocketAddr::new(src_ip, sport?),
        dst: SocketAddr::new(dst_ip, dport),
        key,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::net::IpAddr;

    use netlink_packet_core::DefaultNla;

    use netlink_packet_core::{NetlinkHeader, NetlinkMessage, NetlinkPayload};
    use netlink_packet_netfilter::{NetfilterHeader, NetfilterMessage};

    use super::*;
    use crate::nfnl::{NFNETLINK_V0, parse_one};

    /// The single-family, single-port filter of [`udp_flows_to_port`].
    fn one(family: Family, port: u16, attrs: Vec<ConntrackAttribute>) -> Option<UdpFlow> {
        let families = [family];
        let ports = [port];
        udp_flow(
            Wanted {
                families: &families,
                ports: &ports,
            },
            attrs,
        )
    }

    fn entry(
        proto: Protocol,
        src: &str,
        dst: &str,
        sport: u16,
        dport: u16,
    ) -> Vec<ConntrackAttribute> {
        let src: IpAddr = src.parse().unwrap();
        let dst: IpAddr = dst.parse().unwrap();
        let tuple = |s: IpAddr, d: IpAddr, sp: u16, dp: u16| {
            vec![
                Tuple::Ip(vec![
                    IPTuple::SourceAddress(s),
                    IPTuple::DestinationAddress(d),
                ]),
                Tuple::Proto(vec![
                    ProtoTuple::Protocol(proto),
                    ProtoTuple::SourcePort(sp),
                    ProtoTuple::DestinationPort(dp),
                ]),
            ]
        };
        vec![
            ConntrackAttribute::CtaTupleOrig(tuple(src, dst, sport, dport)),
            // Reply direction as after DNAT to a container: its source port is the
            // container port, its destination port the client's.
            ConntrackAttribute::CtaTupleReply(tuple(dst, src, 53, sport)),
            ConntrackAttribute::CtaTimeout(30),
            ConntrackAttribute::Other(DefaultNla::new(CTA_ID, vec![0, 0, 0, 7])),
            ConntrackAttribute::Other(DefaultNla::new(CTA_ZONE, vec![0, 3])),
        ]
    }

    #[test]
    fn matches_udp_by_original_destination_port_only() {
        let flow = one(
            Family::V4,
            8053,
            entry(Protocol::Udp, "10.0.0.2", "10.0.0.1", 40000, 8053),
        )
        .unwrap();
        assert_eq!(flow.src, "10.0.0.2:40000".parse().unwrap());
        assert_eq!(flow.dst, "10.0.0.1:8053".parse().unwrap());
        // Other ports, other protocols, the source port, other families: no match.
        for (family, attrs) in [
            (
                Family::V4,
                entry(Protocol::Udp, "10.0.0.2", "10.0.0.1", 40000, 8054),
            ),
            (
                Family::V4,
                entry(Protocol::Tcp, "10.0.0.2", "10.0.0.1", 40000, 8053),
            ),
            (
                Family::V4,
                entry(Protocol::Udp, "10.0.0.2", "10.0.0.1", 8053, 9999),
            ),
            (
                Family::V6,
                entry(Protocol::Udp, "10.0.0.2", "10.0.0.1", 40000, 8053),
            ),
            (
                Family::V4,
                entry(Protocol::Udp, "fd00::2", "fd00::1", 40000, 8053),
            ),
        ] {
            assert!(one(family, 8053, attrs.clone()).is_none(), "{attrs:?}");
        }
        assert!(
            one(
                Family::V6,
                8053,
                entry(Protocol::Udp, "fd00::2", "fd00::1", 1, 8053)
            )
            .is_some()
        );
    }

    #[test]
    fn delete_key_is_original_tuple_with_id_and_zone() {
        let attrs = entry(Protocol::Udp, "10.0.0.2", "10.0.0.1", 40000, 8053);
        let flow = one(Family::V4, 8053, attrs.clone()).unwrap();
        assert_eq!(flow.key.len(), 3);
        assert_eq!(flow.key[0], attrs[0]);
        let kinds: Vec<u16> = flow.key[1..]
            .iter()
            .map(|a| match a {
                ConntrackAttribute::Other(nla) => nla.kind(),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(kinds, [CTA_ID, CTA_ZONE]);
    }

    #[test]
    fn entries_without_an_original_tuple_or_ports_are_skipped() {
        assert!(one(Family::V4, 1, vec![ConntrackAttribute::CtaTimeout(3)]).is_none());
        let no_ports = vec![ConntrackAttribute::CtaTupleOrig(vec![Tuple::Ip(vec![
            IPTuple::SourceAddress("10.0.0.2".parse().unwrap()),
            IPTuple::DestinationAddress("10.0.0.1".parse().unwrap()),
        ])])];
        assert!(one(Family::V4, 1, no_ports).is_none());
    }

    #[test]
    fn parse_one_decodes_a_conntrack_entry() {
        let nf = NetfilterMessage::new(
            NetfilterHeader::new(NetfilterProtoFamily::IPv4, NFNETLINK_V0, 0),
            ConntrackMessage::New(entry(Protocol::Udp, "10.0.0.2", "10.0.0.1", 40000, 8053)),
        );
        let mut header = NetlinkHeader::default();
        header.sequence_number = 5;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(nf));
        packet.finalize();
        let mut bytes = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut bytes);
        let (len, reply, _) = parse_one(&bytes, 5).unwrap();
        assert_eq!(len, bytes.len());
        let Reply::Entry(msg) = reply else {
            panic!("not an entry")
        };
        let NetfilterMessageInner::Conntrack(ConntrackMessage::New(attrs)) = *msg else {
            panic!("not a conntrack New message")
        };
        assert!(one(Family::V4, 8053, attrs).is_some());
    }

    #[test]
    fn one_filter_for_several_ports_and_both_families() {
        let families = [Family::V4, Family::V6];
        let ports = [8053, 9053];
        let both = Wanted {
            families: &families,
            ports: &ports,
        };
        assert_eq!(both.dump_family(), NetfilterProtoFamily::Unspec);
        let v4 = udp_flow(
            both,
            entry(Protocol::Udp, "10.0.0.2", "10.0.0.1", 40000, 9053),
        )
        .unwrap();
        assert_eq!(v4.family(), Family::V4);
        let v6 = udp_flow(both, entry(Protocol::Udp, "fd00::2", "fd00::1", 1, 8053)).unwrap();
        assert_eq!(v6.family(), Family::V6);
        assert!(udp_flow(both, entry(Protocol::Udp, "fd00::2", "fd00::1", 1, 8054)).is_none());
        assert!(udp_flow(both, entry(Protocol::Tcp, "fd00::2", "fd00::1", 1, 8053)).is_none());
        let only_v6 = Wanted {
            families: &families[1..],
            ports: &ports,
        };
        assert_eq!(only_v6.dump_family(), NetfilterProtoFamily::IPv6);
        assert!(
            udp_flow(
                only_v6,
                entry(Protocol::Udp, "10.0.0.2", "10.0.0.1", 40000, 9053)
            )
            .is_none()
        );
        assert_eq!(
            both.describe(),
            "dump ipv4+ipv6 conntrack table for udp port 8053,9053"
        );
    }

    #[test]
    fn empty_namespace_is_a_zero_count_or_conntrack_not_loaded() {
        let not_found = || Err(io::Error::from(io::ErrorKind::NotFound));
        let count = |c: &'static str| move |_: &str| Ok(c.to_owned());
        assert!(namespace_is_empty_with(count("0\n"), |_| true));
        assert!(!namespace_is_empty_with(count("1\n"), |_| true));
        assert!(!namespace_is_empty_with(count("12"), |_| false));
        // No count file: empty only when sysfs shows that nf_conntrack is not loaded.
        assert!(namespace_is_empty_with(
            |_| not_found(),
            |p| p == "/sys/module"
        ));
        assert!(!namespace_is_empty_with(|_| not_found(), |_| true));
        assert!(
            !namespace_is_empty_with(|_| not_found(), |_| false),
            "no sysfs"
        );
        assert!(!namespace_is_empty_with(
            |_| Err(io::Error::from(io::ErrorKind::PermissionDenied)),
            |_| false
        ));
    }
}
