//! ADD: validate, pre-check, then apply steps with rollback.
//!
//! Nothing is changed before the configuration, the netfilter backend (probed: code 50
//! when unusable), `CNI_NETNS` and
//! the absence of `CNI_IFNAME` in it have been checked. Every later change that belongs
//! to this attachment alone (veth pair, spoof-check rules, IPAM reservation, masquerade
//! rules) is recorded and undone in reverse order if any later step fails. Shared state
//! (the bridge, its addresses, the VLAN gateway interface, forwarding) stays, as other
//! attachments may already use it.

use std::net::IpAddr;

use cni::{CmdArgs, Error, Interface, IpConfig, NetConf, Route, Success};
use cni_netfilter::masq::MasqOwner;
use cni_netfilter::{Backend, Firewall};
use cni_netlink::{Handle, Link};
use cni_netns::NetNs;
use ipnetwork::IpNetwork;

use crate::config::{BridgeConf, Settings};
use crate::container;
use crate::errors::Context;
use crate::links;
use crate::rollback::{Rollback, Undo, UndoCtx, fail_point};

/// Index of the container interface in the result's `interfaces`.
pub const CONTAINER_IFACE_INDEX: usize = 2;

/// Runs ADD.
///
/// # Errors
/// Any CNI error; everything this ADD created has been removed again.
pub fn add(args: &CmdArgs, conf: &NetConf<BridgeConf>) -> cni::Result<Success> {
    let s = Settings::new(conf, Some(args))?;
    let ipam = conf.ipam_type().map(str::to_string);
    let firewall = match (&ipam, s.ip_masq) {
        (Some(_), true) => Some(crate::maint::usable_firewall(
            s.ip_masq_backend.as_deref(),
            crate::maint::Check::Installed,
        )?),
        _ => None,
    };
    if s.mac_spoof_chk {
        crate::maint::spoofchk_usable(crate::maint::Check::Installed)?;
    }
    let ctr_ns = open_container_ns(args)?;
    let mut host = Handle::new().ctx("open netlink socket in host netns")?;
    let mut ctr = Handle::new_in(&ctr_ns).ctx(format!(
        "open netlink socket in container netns {}",
        ctr_ns.path().display()
    ))?;
    if ctr
        .link_by_name(&args.ifname)
        .ctx(format!("could not lookup {:?} in container", args.ifname))?
        .is_some()
    {
        return Err(Error::internal(format!(
            "container veth name provided ({}) already exists",
            args.ifname
        )));
    }
    let existing_bridge = host
        .link_by_name(&s.bridge)
        .ctx(format!("could not lookup {:?}", s.bridge))?;
    if existing_bridge.as_ref().is_some_and(|l| !l.is_bridge()) {
        return Err(Error::internal(format!(
            "{:?} already exists but is not a bridge",
            s.bridge
        )));
    }

    let mut rb = Rollback::default();
    let mut ctx = AddCtx {
        args,
        conf,
        s: &s,
        ctr_ns: &ctr_ns,
        host: &mut host,
        ctr: &mut ctr,
        rb: &mut rb,
    };
    match ctx.run(ipam.as_deref(), firewall, existing_bridge) {
        Ok(r) => {
            rb.commit();
            Ok(r)
        }
        Err(e) => {
            rb.run(&UndoCtx {
                args,
                network: &conf.name,
            });
            Err(e)
        }
    }
}

/// Opens `CNI_NETNS` and makes sure it is not the plugin's own namespace.
///
/// # Errors
/// Code 4 when unset, unopenable, not a netns, or our own namespace.
pub fn open_container_ns(args: &CmdArgs) -> cni::Result<NetNs> {
    let path = args
        .netns
        .as_deref()
        .ok_or_else(|| Error::invalid_env("CNI_NETNS is required"))?;
    let ns = NetNs::open(path)
        .map_err(|e| Error::invalid_env(format!("failed to open netns {:?}: {e}", path)))?;
    let own = NetNs::current().ctx("open own netns")?;
    if ns.is_same(&own).ctx("compare netns")? {
        return Err(Error::invalid_env(format!(
            "plugin's netns and netns from CNI_NETNS ({}) should not be the same",
            path.display()
        )));
    }
    Ok(ns)
}

struct AddCtx<'a> {
    args: &'a CmdArgs,
    conf: &'a NetConf<BridgeConf>,
    s: &'a Settings,
    ctr_ns: &'a NetNs,
    host: &'a mut Handle,
    ctr: &'a mut Handle,
    rb: &'a mut Rollback,
}

fn iface(l: &Link, sandbox: Option<String>) -> Interface {
    Interface {
        name: l.name.clone(),
        mac: l.mac.map(|m| m.to_string()),
        sandbox,
        ..Interface::default()
    }
}

/// What IPAM assigned, planned for the container (addresses with gateways, routes).
struct L3 {
    ips: Vec<IpConfig>,
    routes: Vec<Route>,
    dns: cni::Dns,
}

impl AddCtx<'_> {
    /// IPAM first, then the links and the container; with `ipMasq`, the masquerade rules
    /// need only IPAM's addresses, so another thread applies them (one iptables-restore
    /// or nft process, in the host netns) while this one sets up the links.
    fn run(
        &mut self,
        ipam: Option<&str>,
        firewall: Option<&'static dyn Firewall>,
        existing_bridge: Option<Link>,
    ) -> cni::Result<Success> {
        let l3 = match ipam {
            Some(plugin) => Some(self.ipam_add(plugin)?),
            None => None,
        };
        let (Some(fw), Some(planned)) = (firewall, &l3) else {
            let result = self.links(existing_bridge, l3)?;
            fail_point("masq")?;
            return Ok(result);
        };
        let (conf, args) = (self.conf, self.args);
        let owner = MasqOwner {
            network: &conf.name,
            container_id: &args.container_id,
            ifname: &args.ifname,
        };
        let nets: Vec<IpNetwork> = planned.ips.iter().map(|i| i.address).collect();
        // Record first: a partly applied setup is still removed by teardown.
        self.rb.push(Undo::Masq);
        // Upstream creates the spoof-check table (`bridge nat`) before the masquerade
        // table; where neither exists yet, keep that order so both list alike.
        if self.s.mac_spoof_chk
            && fw.backend() == Backend::Nftables
            && !cni_netfilter::spoofchk::table_exists().unwrap_or(true)
        {
            let result = self.links(existing_bridge, l3)?;
            fw.setup_masq(&owner, &nets)
                .ctx(format!("failed to setup IP masquerade ({})", fw.backend()))?;
            fail_point("masq")?;
            return Ok(result);
        }
        let (local, masq) = std::thread::scope(|scope| {
            let masq = scope.spawn(|| fw.setup_masq(&owner, &nets));
            let local = self.links(existing_bridge, l3);
            (local, masq.join())
        });
        let result = local?;
        masq.map_err(|_| Error::internal("IP masquerade setup panicked"))?
            .ctx(format!("failed to setup IP masquerade ({})", fw.backend()))?;
        fail_point("masq")?;
        Ok(result)
    }

    /// Delegates ADD to the IPAM plugin and plans the container's addresses and routes.
    fn ipam_add(&mut self, ipam: &str) -> cni::Result<L3> {
        let s = self.s;
        let ipam_result = cni::invoke::delegate_add(ipam, self.args, self.conf.version)?;
        self.rb.push(Undo::Ipam {
            plugin: ipam.to_string(),
        });
        fail_point("ipam")?;
        if ipam_result.ips.is_empty() {
            return Err(Error::internal("IPAM plugin returned missing IP config"));
        }
        let (ips, routes) = plan_l3(&ipam_result, s.is_gateway, s.is_default_gateway);
        Ok(L3 {
            ips,
            routes,
            dns: ipam_result.dns,
        })
    }

    /// The bridge, the veth pair and its port, spoof-check, then (with IPAM) the
    /// container's addresses, routes and the gateway.
    fn links(&mut self, existing_bridge: Option<Link>, l3: Option<L3>) -> cni::Result<Success> {
        let (s, args) = (self.s, self.args);
        let br = links::ensure_bridge(self.host, s, existing_bridge)?;
        fail_point("bridge")?;

        let host_name = links::create_veth(self.host, self.ctr_ns, &args.ifname, s.mtu, s.mac)?;
        self.rb.push(Undo::Veth {
            host: host_name.clone(),
        });
        fail_point("veth")?;
        let hv = self.host_link(&host_name)?;
        let cv = self
            .ctr
            .link_by_name(&args.ifname)
            .ctx(format!("failed to lookup {:?} in container", args.ifname))?
            .ok_or_else(|| {
                Error::internal(format!("container interface {:?} vanished", args.ifname))
            })?;

        links::setup_port(self.host, &hv, &br, s)?;
        fail_point("port")?;

        let sandbox = args.netns.as_ref().map(|p| p.display().to_string());
        let mut result = Success {
            interfaces: vec![iface(&br, None), iface(&hv, None), iface(&cv, sandbox)],
            ..Success::default()
        };

        if s.mac_spoof_chk {
            let mac = cv
                .mac
                .ok_or_else(|| Error::internal(format!("{:?} has no MAC address", cv.name)))?;
            cni_netfilter::spoofchk::setup(
                &args.container_id,
                &args.ifname,
                &host_name,
                &mac.to_string(),
            )
            .ctx("failed to setup spoof-check")?;
            self.rb.push(Undo::SpoofChk);
        }
        fail_point("spoofchk")?;

        if let Some(l3) = l3 {
            result.ips = l3.ips;
            result.routes = l3.routes;
            result.dns = l3.dns;
            self.container_and_gateways(&br, &cv, &mut result)?;
        } else if !s.disable_container_interface {
            self.ctr
                .set_up(cv.index)
                .ctx(format!("failed to set {:?} up", cv.name))?;
        }

        if !s.disable_container_interface {
            links::wait_port_up(self.host, hv.index, &hv.name)?;
        }
        fail_point("wait")?;

        // The bridge's MAC can change when ports join (it takes the lowest port
        // MAC unless set): report the current one. A port keeps its own MAC.
        let br_now = self.host_link(&br.name)?;
        result.interfaces[0].mac = br_now.mac.map(|m| m.to_string());
        if let Some(dns) = &self.conf.dns
            && !dns.is_empty()
        {
            result.dns = dns.clone();
        }
        Ok(result)
    }

    fn host_link(&mut self, name: &str) -> cni::Result<Link> {
        self.host
            .link_by_name(name)
            .ctx(format!("failed to lookup {name:?}"))?
            .ok_or_else(|| Error::internal(format!("interface {name:?} not found in host netns")))
    }

    /// Addresses, routes and sysctls in the container, then the gateway addresses on
    /// the bridge.
    fn container_and_gateways(
        &mut self,
        br: &Link,
        cv: &Link,
        result: &mut Success,
    ) -> cni::Result<()> {
        let s = self.s;
        let has_v6 = result.ips.iter().any(|i| i.address.is_ipv6());
        container::set_sysctls(self.ctr_ns, self.ctr, cv, s.enable_dad, has_v6)?;
        container::configure(self.ctr, cv, &result.ips, &result.routes)?;
        fail_point("container")?;
        if s.is_gateway {
            self.gateways(br, result)?;
        }
        fail_point("gateway")
    }

    fn gateways(&mut self, br: &Link, result: &mut Success) -> cni::Result<()> {
        let gws: Vec<IpNetwork> = result
            .ips
            .iter()
            .filter_map(|i| {
                i.gateway
                    .and_then(|g| IpNetwork::new(g, i.address.prefix()).ok())
            })
            .collect();
        if gws.is_empty() {
            return Ok(());
        }
        // The gateway addresses and the bridge MAC pinned with the first one are shared
        // by every attachment: under the namespace lock, an ADD that finds the address
        // present also finds the MAC pinned (the result reports the bridge MAC read after
        // this, so concurrent first ADDs all report the final one and CHECK agrees).
        let _lock = cni_netfilter::netns_lock::NetnsLock::acquire(&format!(
            "setting the gateway addresses of bridge {:?}",
            br.name
        ))
        .ctx("failed to lock the host network namespace")?;
        let target = if self.s.vlan != 0 {
            let (g, _created) = links::ensure_vlan_gateway(self.host, br, self.s)?;
            result.interfaces.push(iface(&g, None));
            g
        } else {
            br.clone()
        };
        for gw in &gws {
            links::ensure_addr(self.host, &target, *gw, self.s.force_address)?;
        }
        for v4 in [true, false] {
            if gws.iter().any(|g| g.is_ipv4() == v4) {
                links::enable_forwarding(self.host, v4)?;
            }
        }
        Ok(())
    }
}

/// First usable address of the subnet (network + 1): the implicit gateway.
pub fn default_gateway(addr: IpNetwork) -> IpAddr {
    match addr {
        IpNetwork::V4(n) => IpAddr::from(u32::from(n.network()).wrapping_add(1).to_be_bytes()),
        IpNetwork::V6(n) => IpAddr::from(u128::from(n.network()).wrapping_add(1).to_be_bytes()),
    }
}

fn default_dst(v4: bool) -> Option<IpNetwork> {
    let ip = if v4 {
        IpAddr::from([0u8; 4])
    } else {
        IpAddr::from([0u8; 16])
    };
    IpNetwork::new(ip, 0).ok()
}

/// The result's IPs and routes from the IPAM result: every IP points at the container
/// interface; with `is_gateway` a missing gateway becomes network + 1; with
/// `is_default_gateway` a default route per family is added unless IPAM already returned
/// a default route of that family (with or without `gw`).
pub fn plan_l3(
    ipam: &Success,
    is_gateway: bool,
    is_default_gateway: bool,
) -> (Vec<IpConfig>, Vec<Route>) {
    let ips: Vec<IpConfig> = ipam
        .ips
        .iter()
        .map(|i| IpConfig {
            interface: Some(CONTAINER_IFACE_INDEX),
            address: i.address,
            gateway: i
                .gateway
                .or_else(|| is_gateway.then(|| default_gateway(i.address))),
        })
        .collect();
    let mut routes = ipam.routes.clone();
    if is_default_gateway {
        for v4 in [true, false] {
            let has_default = routes
                .iter()
                .any(|r| r.dst.prefix() == 0 && r.dst.is_ipv4() == v4);
            let gw = ips
                .iter()
                .filter(|i| i.address.is_ipv4() == v4)
                .find_map(|i| i.gateway);
            if let (false, Some(gw), Some(dst)) = (has_default, gw, default_dst(v4)) {
                routes.push(Route::new(dst, Some(gw)));
            }
        }
    }
    (ips, routes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipc(a: &str, gw: Option<&str>) -> IpConfig {
        IpConfig {
            interface: None,
            address: a.parse().unwrap(),
            gateway: gw.map(|g| g.parse().unwrap()),
        }
    }

    #[test]
    fn gateway_is_network_plus_one() {
        assert_eq!(
            default_gateway("10.1.2.77/24".parse().unwrap()).to_string(),
            "10.1.2.1"
        );
        assert_eq!(
            default_gateway("2001:db8::9/64".parse().unwrap()).to_string(),
            "2001:db8::1"
        );
        assert_eq!(default_dst(true).unwrap().to_string(), "0.0.0.0/0");
        assert_eq!(default_dst(false).unwrap().to_string(), "::/0");
    }

    #[test]
    fn plan_sets_interface_gateways_and_default_routes() {
        let ipam = Success {
            ips: vec![
                ipc("10.1.2.3/24", None),
                ipc("2001:db8::3/64", Some("2001:db8::fe")),
            ],
            ..Success::default()
        };
        let (ips, routes) = plan_l3(&ipam, true, true);
        assert!(ips.iter().all(|i| i.interface == Some(2)));
        assert_eq!(ips[0].gateway.unwrap().to_string(), "10.1.2.1");
        assert_eq!(ips[1].gateway.unwrap().to_string(), "2001:db8::fe");
        assert_eq!(routes.len(), 2);
        assert_eq!(
            routes[0],
            Route::new(
                default_dst(true).unwrap(),
                Some("10.1.2.1".parse().unwrap())
            )
        );
        assert_eq!(routes[1].gw.unwrap().to_string(), "2001:db8::fe");
        // Without isGateway no gateway is invented.
        let (ips, routes) = plan_l3(&ipam, false, false);
        assert_eq!(ips[0].gateway, None);
        assert!(routes.is_empty());
    }

    #[test]
    fn no_duplicate_default_route() {
        for gw in [None, Some("10.1.2.1".parse().unwrap())] {
            let ipam = Success {
                ips: vec![ipc("10.1.2.3/24", Some("10.1.2.1"))],
                routes: vec![Route::new("0.0.0.0/0".parse().unwrap(), gw)],
                ..Success::default()
            };
            let (_, routes) = plan_l3(&ipam, true, true);
            assert_eq!(routes.len(), 1, "{routes:?}");
        }
    }
}
