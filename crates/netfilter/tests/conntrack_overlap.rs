//! Privileged test of `conntrack::OverlappedFlush`: the conntrack walk runs while the
//! rules change, and entries confirmed after the walk are still deleted, caught from the
//! kernel's new-entry events. Its own test binary because `conntrack::dumps_requested`
//! counts for the whole process.

#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    missing_docs,
    reason = "tests"
)]

mod common;

use std::time::Duration;

use cni_netfilter::conntrack::{self, Family, OverlappedFlush};
use cni_testsupport::{require_root, send_udp, veth_pair};

use common::{flows, wait_for_entries};

#[test]
fn walk_overlaps_the_change_and_events_catch_later_entries() {
    if !require_root() {
        return;
    }
    let (a, b) = veth_pair();
    // Any rule needing conntrack activates the hooks in this namespace only.
    cni_testsupport::enable_conntrack(&a);
    let both = [Family::V4, Family::V6];

    // 1. An empty namespace: no dump; an entry confirmed while the "rules change" (after
    //    the walk) is caught from the events and deleted.
    assert_eq!(a.run_in(conntrack::entry_count).unwrap(), 0);
    let before = conntrack::dumps_requested();
    let flush = a.run_in(|| OverlappedFlush::start(&both, &[8053]));
    std::thread::sleep(Duration::from_millis(100)); // the walk is long done
    send_udp(&b, "10.78.0.1:8053");
    send_udp(&b, "[fd78::1]:8053");
    send_udp(&b, "10.78.0.1:9999");
    wait_for_entries(&a, 3);
    assert_eq!(
        a.run_in(|| flush.finish()).unwrap(),
        2,
        "both announced flows"
    );
    assert_eq!(conntrack::dumps_requested(), before, "no dump, no fallback");
    assert_eq!(flows(&a, Family::V4, 8053) + flows(&a, Family::V6, 8053), 0);
    assert_eq!(flows(&a, Family::V4, 9999), 1, "other ports stay");

    // 2. Entries before the start are found by the (one) walk, entries after it by the
    //    events; both deleted, nothing else.
    send_udp(&b, "10.78.0.1:8054");
    wait_for_entries(&a, 2);
    let before = conntrack::dumps_requested();
    let flush = a.run_in(|| OverlappedFlush::start(&both, &[8053, 8054]));
    std::thread::sleep(Duration::from_millis(100));
    send_udp(&b, "[fd78::1]:8054");
    wait_for_entries(&a, 3);
    assert_eq!(a.run_in(|| flush.finish()).unwrap(), 2);
    assert_eq!(
        conntrack::dumps_requested(),
        before + 1,
        "one walk, no fallback"
    );
    for family in both {
        assert_eq!(flows(&a, family, 8054), 0, "{family}");
    }
    assert_eq!(flows(&a, Family::V4, 9999), 1);

    // 3. A flush dropped unfinished (the change failed) deletes nothing.
    send_udp(&b, "10.78.0.1:8055");
    wait_for_entries(&a, 2);
    drop(a.run_in(|| OverlappedFlush::start(&both, &[8055])));
    assert_eq!(flows(&a, Family::V4, 8055), 1);

    // 4. Nothing asked for: nothing done.
    assert_eq!(
        a.run_in(|| OverlappedFlush::start(&both, &[]).finish())
            .unwrap(),
        0
    );
    assert_eq!(
        a.run_in(|| OverlappedFlush::start(&[], &[8055]).finish())
            .unwrap(),
        0
    );
}
