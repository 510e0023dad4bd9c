//! Privileged tests against the real kernel, each in private network namespaces that
//! disappear when their last file descriptor is closed.

use std::os::fd::AsFd;

use cni_netlink::{
    BridgeSpec, Handle, IpFamily, Ipv4ConfKey, Ipv4DevConf, Link, LinkId, MacAddr, OperState,
    PortFlags, RouteSpec, VethSpec, VlanEntry,
};
use cni_netns::NetNs;
use cni_testsupport::{anonymous_netns, require_root};
use ipnetwork::IpNetwork;

/// [`ns_with_handle`] when running as root; `None` (the test is skipped) otherwise.
fn root_handle() -> Option<(NetNs, Handle)> {
    require_root().then(ns_with_handle)
}

fn ns_with_handle() -> (NetNs, Handle) {
    let ns = anonymous_netns();
    let h = Handle::new_in(&ns).expect("handle");
    (ns, h)
}

/// Adds bridge `name` with the kernel's default MTU and VLAN filtering; returns it.
fn plain_bridge(h: &mut Handle, name: &str) -> Link {
    h.add_bridge(&BridgeSpec {
        name,
        mtu: None,
        vlan_filtering: None,
    })
    .expect("add bridge");
    h.link_by_name(name)
        .expect("link by name")
        .expect("the bridge just added")
}

fn net(s: &str) -> IpNetwork {
    s.parse().expect("network literal")
}

#[test]
fn absent_link_is_none_and_delete_is_not_found() {
    let Some((_ns, mut h)) = root_handle() else {
        return;
    };
    assert!(h.link_by_name("nope0").unwrap().is_none());
    assert!(h.link_by_index(4242).unwrap().is_none());
    let e = h.del_link(LinkId::Name("nope0")).unwrap_err();
    assert!(e.is_not_found(), "{e}");
    assert!(e.to_string().contains("\"nope0\""), "{e}");
    let lo = h.link_by_name("lo").unwrap().unwrap();
    assert_eq!(lo.index, 1);
    assert!(h.links().unwrap().iter().any(|l| l.name == "lo"));
}

#[test]
fn bridge_create_exists_and_delete() {
    let Some((_ns, mut h)) = root_handle() else {
        return;
    };
    let spec = BridgeSpec {
        name: "br-t0",
        mtu: Some(1400),
        vlan_filtering: None,
    };
    h.add_bridge(&spec).unwrap();
    let e = h.add_bridge(&spec).unwrap_err();
    assert!(e.is_exists(), "{e}");
    let br = h.link_by_name("br-t0").unwrap().unwrap();
    assert!(br.is_bridge());
    assert_eq!(br.mtu, 1400);
    assert_eq!(br.vlan_filtering, Some(false));
    assert!(!br.up && !br.promisc);
    h.set_up(br.index).unwrap();
    h.set_promisc(br.index, true).unwrap();
    let br2 = h.link_by_index(br.index).unwrap().unwrap();
    assert!(br2.up && br2.promisc);
    h.set_promisc(br.index, false).unwrap();
    h.set_mtu(br.index, 1300).unwrap();
    let mac: MacAddr = "02:11:22:33:44:55".parse().unwrap();
    h.set_mac(br.index, mac).unwrap();
    let br3 = h.link_by_index(br.index).unwrap().unwrap();
    assert!(!br3.promisc);
    assert_eq!(br3.mtu, 1300);
    assert_eq!(br3.mac, Some(mac));
    h.del_link(LinkId::Index(br.index)).unwrap();
    assert!(h.link_by_name("br-t0").unwrap().is_none());
}

#[test]
fn veth_across_namespaces_with_port_flags() {
    let Some((_host, mut hh)) = root_handle() else {
        return;
    };
    let (ctr, mut ch) = ns_with_handle();
    let br = plain_bridge(&mut hh, "br-t1");
    let mac: MacAddr = "0a:58:0a:00:00:02".parse().unwrap();
    hh.add_veth(&VethSpec {
        name: "veth-t1",
        peer_name: "eth0",
        peer_ns: Some(ctr.as_fd()),
        mtu: Some(1450),
        mac: None,
        peer_mac: Some(mac),
    })
    .unwrap();
    // Same container name again: EEXIST from the peer namespace.
    let e = hh
        .add_veth(&VethSpec {
            name: "veth-t2",
            peer_name: "eth0",
            peer_ns: Some(ctr.as_fd()),
            mtu: None,
            mac: None,
            peer_mac: None,
        })
        .unwrap_err();
    assert!(e.is_exists(), "{e}");
    assert!(hh.link_by_name("veth-t2").unwrap().is_none());

    let host_end = hh.link_by_name("veth-t1").unwrap().unwrap();
    let ctr_end = ch.link_by_name("eth0").unwrap().unwrap();
    assert!(host_end.is_veth() && ctr_end.is_veth());
    assert_eq!((host_end.mtu, ctr_end.mtu), (1450, 1450));
    assert_eq!(ctr_end.mac, Some(mac));
    assert_eq!(host_end.peer_index, Some(ctr_end.index));
    assert_eq!(ctr_end.peer_index, Some(host_end.index));
    assert!(host_end.link_netnsid.is_some());
    assert!(hh.link_by_name("eth0").unwrap().is_none());

    hh.set_master(host_end.index, br.index).unwrap();
    hh.set_port_flags(
        host_end.index,
        PortFlags {
            hairpin: Some(true),
            isolated: Some(true),
        },
    )
    .unwrap();
    let port = hh.link_by_index(host_end.index).unwrap().unwrap();
    assert_eq!(port.master, Some(br.index));
    assert_eq!(port.hairpin, Some(true));
    assert_eq!(port.isolated, Some(true));
    hh.set_port_flags(
        host_end.index,
        PortFlags {
            hairpin: Some(false),
            isolated: None,
        },
    )
    .unwrap();
    let port = hh.link_by_index(host_end.index).unwrap().unwrap();
    assert_eq!((port.hairpin, port.isolated), (Some(false), Some(true)));

    // Bring everything up: the port becomes operationally up.
    hh.set_up(br.index).unwrap();
    hh.set_up(host_end.index).unwrap();
    ch.set_up(ctr_end.index).unwrap();
    let mut state = OperState::Unknown;
    for _ in 0..100 {
        state = hh
            .link_by_index(host_end.index)
            .unwrap()
            .unwrap()
            .oper_state;
        if state == OperState::Up {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(state, OperState::Up);

    hh.set_master(host_end.index, 0).unwrap();
    assert_eq!(
        hh.link_by_index(host_end.index).unwrap().unwrap().master,
        None
    );

    // Deleting the container end removes the host end.
    ch.del_link(LinkId::Name("eth0")).unwrap();
    assert!(hh.link_by_name("veth-t1").unwrap().is_none());
}

#[test]
fn addresses_add_list_delete() {
    let Some((_ns, mut h)) = root_handle() else {
        return;
    };
    let br = plain_bridge(&mut h, "br-a");
    h.add_addr(br.index, net("10.7.0.1/24")).unwrap();
    h.add_addr(br.index, net("2001:db8:7::1/64")).unwrap();
    let e = h.add_addr(br.index, net("10.7.0.1/24")).unwrap_err();
    assert!(e.is_exists(), "{e}");
    assert!(e.to_string().contains("10.7.0.1/24"), "{e}");
    let v4 = h.addrs(Some(br.index), Some(IpFamily::V4)).unwrap();
    assert_eq!(v4.len(), 1);
    assert_eq!(v4[0].addr, net("10.7.0.1/24"));
    assert!(v4[0].is_global() && v4[0].flags.permanent);
    let v6 = h.addrs(Some(br.index), Some(IpFamily::V6)).unwrap();
    assert!(
        v6.iter().any(|a| a.addr == net("2001:db8:7::1/64")),
        "{v6:?}"
    );
    assert!(v6.iter().all(|a| a.index == br.index));
    // Unfiltered dump sees it too.
    assert!(
        h.addrs(None, None)
            .unwrap()
            .iter()
            .any(|a| a.index == br.index && a.addr == net("10.7.0.1/24"))
    );
    h.del_addr(br.index, net("10.7.0.1/24")).unwrap();
    assert!(
        h.addrs(Some(br.index), Some(IpFamily::V4))
            .unwrap()
            .is_empty()
    );
    let e = h.del_addr(br.index, net("10.7.0.1/24")).unwrap_err();
    assert!(e.is_not_found(), "{e}");
}

#[test]
fn routes_add_list_lookup_delete() {
    let Some((_ns, mut h)) = root_handle() else {
        return;
    };
    let br = plain_bridge(&mut h, "br-r");
    h.set_up(br.index).unwrap();
    h.add_addr(br.index, net("10.8.0.2/24")).unwrap();
    // Default route via gateway with metric.
    let mut def = RouteSpec::new(net("0.0.0.0/0"));
    def.gateway = Some("10.8.0.1".parse().unwrap());
    def.oif = Some(br.index);
    def.priority = Some(50);
    h.add_route(&def, true).unwrap();
    // Same route again without append: EEXIST.
    assert!(h.add_route(&def, false).unwrap_err().is_exists());
    // Route in another table with a scope.
    let mut t = RouteSpec::new(net("192.0.2.0/24"));
    t.oif = Some(br.index);
    t.table = Some(1234);
    t.scope = Some(253);
    t.mtu = Some(1300);
    h.add_route(&t, true).unwrap();

    let main = h.routes(IpFamily::V4, Some(254)).unwrap();
    let d = main
        .iter()
        .find(|r| r.dst.prefix() == 0)
        .expect("default route");
    assert_eq!(d.gateway, def.gateway);
    assert_eq!(d.oif, Some(br.index));
    assert_eq!(d.priority, Some(50));
    assert!(
        main.iter().any(|r| r.dst == net("10.8.0.0/24")),
        "connected route"
    );
    let other = h.routes(IpFamily::V4, Some(1234)).unwrap();
    assert_eq!(other.len(), 1);
    assert_eq!(other[0].scope, 253);
    assert_eq!(other[0].mtu, Some(1300));

    let l = h.route_get("198.51.100.9".parse().unwrap()).unwrap();
    assert_eq!(l.oif, Some(br.index));
    assert_eq!(l.gateway, def.gateway);
    let l = h.route_get("10.8.0.77".parse().unwrap()).unwrap();
    assert_eq!((l.oif, l.gateway), (Some(br.index), None));
    assert_eq!(l.prefsrc, Some("10.8.0.2".parse().unwrap()));

    h.del_route(&def).unwrap();
    h.del_route(&t).unwrap();
    assert!(h.del_route(&t).unwrap_err().is_not_found());
    assert!(
        !h.routes(IpFamily::V4, None)
            .unwrap()
            .iter()
            .any(|r| r.dst.prefix() == 0)
    );
    let e = h.route_get("198.51.100.9".parse().unwrap()).unwrap_err();
    assert_eq!(e.errno(), Some(nix::errno::Errno::ENETUNREACH), "{e}");
}

#[test]
fn ecmp_append_ipv6() {
    let Some((_ns, mut h)) = root_handle() else {
        return;
    };
    for n in ["br-e1", "br-e2"] {
        plain_bridge(&mut h, n);
    }
    let a = h.link_by_name("br-e1").unwrap().unwrap();
    let b = h.link_by_name("br-e2").unwrap().unwrap();
    for l in [&a, &b] {
        h.set_up(l.index).unwrap();
    }
    let mut r = RouteSpec::new(net("2001:db8:99::/64"));
    r.gateway = Some("fe80::1".parse().unwrap());
    r.oif = Some(a.index);
    h.add_route(&r, true).unwrap();
    r.oif = Some(b.index);
    h.add_route(&r, true).unwrap();
    let rs: Vec<_> = h
        .routes(IpFamily::V6, Some(254))
        .unwrap()
        .into_iter()
        .filter(|x| x.dst == net("2001:db8:99::/64"))
        .collect();
    let mut oifs: Vec<_> = rs.iter().filter_map(|x| x.oif).collect();
    oifs.sort();
    assert_eq!(
        oifs,
        vec![a.index.min(b.index), a.index.max(b.index)],
        "{rs:?}"
    );
}

#[test]
fn vlan_entries_on_port_or_skip() {
    let Some((_ns, mut h)) = root_handle() else {
        return;
    };
    match h.add_bridge(&BridgeSpec {
        name: "br-v",
        mtu: None,
        vlan_filtering: Some(true),
    }) {
        Ok(()) => {}
        Err(e) if e.is_not_supported() => {
            eprintln!("skipped: kernel cannot create a VLAN-filtering bridge ({e})");
            return;
        }
        Err(e) => panic!("{e}"),
    }
    let br = h.link_by_name("br-v").unwrap().unwrap();
    assert_eq!(br.vlan_filtering, Some(true));
    h.add_veth(&VethSpec {
        name: "vv0",
        peer_name: "vv1",
        peer_ns: None,
        mtu: None,
        mac: None,
        peer_mac: None,
    })
    .unwrap();
    let p = h.link_by_name("vv0").unwrap().unwrap();
    h.set_master(p.index, br.index).unwrap();
    h.bridge_vlan_del(p.index, 1).unwrap();
    h.bridge_vlan_add(
        p.index,
        VlanEntry {
            vid: 100,
            pvid: true,
            untagged: true,
        },
    )
    .unwrap();
    h.bridge_vlan_add(
        p.index,
        VlanEntry {
            vid: 200,
            pvid: false,
            untagged: false,
        },
    )
    .unwrap();
    assert_eq!(
        h.bridge_vlans(p.index).unwrap(),
        vec![
            VlanEntry {
                vid: 100,
                pvid: true,
                untagged: true
            },
            VlanEntry {
                vid: 200,
                pvid: false,
                untagged: false
            }
        ]
    );
    h.bridge_vlan_del(p.index, 200).unwrap();
    assert_eq!(h.bridge_vlans(p.index).unwrap().len(), 1);
}

#[test]
fn handle_stays_bound_to_its_namespace() {
    if !require_root() {
        return;
    }
    let ns = anonymous_netns();
    let mut h = Handle::new_in(&ns).unwrap();
    // The calling thread is back in its own namespace...
    assert!(!ns.is_current().unwrap());
    plain_bridge(&mut h, "br-bound");
    // ...and the bridge exists only inside `ns`.
    let seen_inside = ns
        .run(|| {
            let mut inner = Handle::new().unwrap();
            inner.link_by_name("br-bound").unwrap().is_some()
        })
        .unwrap();
    assert!(seen_inside);
    let (_other, mut oh) = ns_with_handle();
    assert!(oh.link_by_name("br-bound").unwrap().is_none());
}

/// Reads `/proc/sys/<key>` (slashes) from a thread inside `ns`.
fn proc_read(ns: &NetNs, key: &str) -> String {
    let p = format!("/proc/sys/{key}");
    ns.run(|| std::fs::read_to_string(&p))
        .expect("thread in the namespace")
        .unwrap_or_else(|e| panic!("read {p}: {e}"))
        .trim()
        .to_string()
}

/// Writes `/proc/sys/<key>` (slashes) from a thread inside `ns`.
fn proc_write(ns: &NetNs, key: &str, value: &str) {
    let p = format!("/proc/sys/{key}");
    ns.run(|| std::fs::write(&p, value))
        .expect("thread in the namespace")
        .unwrap_or_else(|e| panic!("write {p}: {e}"));
}

/// The IPv4 devconf of an RTM_GETLINK reply matches the sysctl files, before and after
/// changes made on either side.
#[test]
fn ipv4_devconf_matches_proc_sys_and_netlink_set_is_visible() {
    let Some((ns, mut h)) = root_handle() else {
        return;
    };
    // A new device takes conf/default/*, which a new namespace copies from the host's
    // (net.core.devconf_inherit_init_net=0): start from 0 whatever the machine has.
    for key in ["route_localnet", "arp_notify", "forwarding"] {
        proc_write(&ns, &format!("net/ipv4/conf/default/{key}"), "0");
    }
    plain_bridge(&mut h, "br-conf");
    let dir = "net/ipv4/conf/br-conf";
    let conf = |h: &mut Handle| {
        h.link_by_name("br-conf")
            .unwrap()
            .unwrap()
            .ipv4
            .expect("IPv4 devconf in RTM_NEWLINK")
    };
    let proc = |key: &str| proc_read(&ns, &format!("{dir}/{key}"));
    let matches = |c: Ipv4DevConf| {
        assert_eq!(
            c.route_localnet.to_string(),
            proc("route_localnet"),
            "{c:?}"
        );
        assert_eq!(c.arp_notify.to_string(), proc("arp_notify"), "{c:?}");
        assert_eq!(c.forwarding.to_string(), proc("forwarding"), "{c:?}");
    };
    let before = conf(&mut h);
    matches(before);
    assert_eq!((before.route_localnet, before.arp_notify), (0, 0));
    let index = h.link_by_name("br-conf").unwrap().unwrap().index;

    // Set over netlink: visible in /proc/sys and in the next RTM_GETLINK.
    h.enable_ipv4_conf(index, &[Ipv4ConfKey::RouteLocalnet])
        .unwrap();
    assert_eq!(proc("route_localnet"), "1");
    assert_eq!(proc("arp_notify"), "0", "only the given key changes");
    let c = conf(&mut h);
    matches(c);
    assert_eq!((c.route_localnet, c.arp_notify), (1, 0));
    h.enable_ipv4_conf(index, &[Ipv4ConfKey::ArpNotify, Ipv4ConfKey::RouteLocalnet])
        .unwrap();
    assert_eq!(
        (proc("route_localnet"), proc("arp_notify")),
        ("1".into(), "1".into())
    );
    matches(conf(&mut h));

    // Changed through /proc/sys: the netlink read follows.
    proc_write(&ns, &format!("{dir}/route_localnet"), "0");
    proc_write(&ns, &format!("{dir}/arp_notify"), "2");
    proc_write(&ns, &format!("{dir}/forwarding"), "1");
    let c = conf(&mut h);
    matches(c);
    assert_eq!(
        c,
        Ipv4DevConf {
            forwarding: 1,
            arp_notify: 2,
            route_localnet: 0,
        }
    );

    // Nothing is sent for no keys; a missing device is "not found", naming the change.
    h.enable_ipv4_conf(index, &[]).unwrap();
    let e = h
        .enable_ipv4_conf(4242, &[Ipv4ConfKey::RouteLocalnet])
        .unwrap_err();
    assert!(e.is_not_found(), "{e}");
    assert!(e.to_string().contains("route_localnet=1"), "{e}");
    assert!(e.to_string().contains("ifindex 4242"), "{e}");
}

/// The netconf "all" forwarding value matches `net.ipv4.ip_forward` and
/// `net.ipv6.conf.all.forwarding` of a private namespace, for 0 and 1.
#[test]
fn netconf_forwarding_matches_proc_sys() {
    let Some((ns, mut h)) = root_handle() else {
        return;
    };
    let mut keys = vec![(IpFamily::V4, "net/ipv4/ip_forward")];
    if std::path::Path::new("/proc/sys/net/ipv6").exists() {
        keys.push((IpFamily::V6, "net/ipv6/conf/all/forwarding"));
    } else {
        eprintln!("IPv6 disabled: only IPv4 checked");
    }
    for (family, key) in keys {
        for value in ["1", "0", "1"] {
            proc_write(&ns, key, value);
            assert_eq!(proc_read(&ns, key), value);
            let got = h.forwarding(family).unwrap();
            assert_eq!(got.to_string(), value, "{family:?} {key}");
        }
    }
    // The other family does not follow: v4 is 1 now, set v6 to 0 and v4 to 0 in turn.
    proc_write(&ns, "net/ipv4/ip_forward", "0");
    assert_eq!(h.forwarding(IpFamily::V4).unwrap(), 0);
    if std::path::Path::new("/proc/sys/net/ipv6").exists() {
        assert_eq!(h.forwarding(IpFamily::V6).unwrap(), 1);
    }
    // A handle of another namespace reads that namespace's value.
    let (other, mut oh) = ns_with_handle();
    proc_write(&other, "net/ipv4/ip_forward", "1");
    assert_eq!(oh.forwarding(IpFamily::V4).unwrap(), 1);
    assert_eq!(h.forwarding(IpFamily::V4).unwrap(), 0);
}
