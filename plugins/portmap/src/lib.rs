//! `portmap`: a chained CNI plugin forwarding host ports to a container, with
//! the reference plugin's netfilter layouts (iptables or nftables, see `cni-netfilter`).
//!
//! * `config`: the plugin keys and `runtimeConfig.portMappings`, validated (code 7);
//! * `addresses`: which container addresses of `prevResult` are mapped;
//! * `host`: `route_localnet` (set only after the backend's `add_port_mappings` made sure
//!   of the localnet guard, see `cni_netfilter::localnet`) and the UDP conntrack flush
//!   (native, `cni_netfilter::conntrack`);
//! * `errors`: netfilter errors to CNI codes (2, 11, 50, 7).

mod addresses;
mod config;
mod errors;
mod host;

use cni::{CmdArgs, Error, NetConf, Plugin, Result, Success};
use cni_netfilter::conntrack::Family;
use cni_netfilter::portmap::{self, Owner};

pub use config::PortmapConfig;

use crate::errors::to_cni;

/// The plugin.
#[derive(Debug, Clone, Copy, Default)]
pub struct Portmap;

fn owner<'a>(args: &'a CmdArgs, conf: &'a NetConf<PortmapConfig>) -> Owner<'a> {
    Owner {
        network: &conf.name,
        container_id: &args.container_id,
    }
}

impl Plugin for Portmap {
    type Config = PortmapConfig;

    fn name(&self) -> &'static str {
        "portmap"
    }

    fn add(&self, args: &CmdArgs, conf: &NetConf<PortmapConfig>) -> Result<Success> {
        let prev = conf.prev_result()?.ok_or_else(|| {
            Error::invalid_config("must be called as chained plugin (prevResult missing)")
        })?;
        let parsed = config::parse(conf)?;
        if parsed.mappings.is_empty() {
            return Ok(prev);
        }
        let ips = addresses::container_ips(&prev, &args.ifname);
        if ips.is_empty() {
            return Ok(prev);
        }
        let firewall = parsed.firewall()?;
        let families: Vec<Family> = Family::ALL
            .into_iter()
            .filter(|&f| ips.iter().any(|net| Family::of(net.ip()) == f))
            .collect();
        let flush = host::start_udp_conntrack_flush(&families, &parsed.mappings);
        firewall
            .add_port_mappings(&owner(args, conf), &parsed.request(&ips))
            .map_err(|e| to_cni(e).context("unable to set up port mappings"))?;
        host::finish_udp_conntrack_flush(flush);
        if parsed.options.snat
            && let Some(v4) = ips.iter().find(|n| n.is_ipv4())
        {
            host::enable_route_localnet(v4.ip())?;
        }
        Ok(prev)
    }

    fn del(&self, args: &CmdArgs, conf: &NetConf<PortmapConfig>) -> Result<()> {
        // DEL works without mappings or prevResult: the chain name and the nftables
        // comment derive from network and container ID. With them (runtimes pass both)
        // the iptables rules go without reading the table. Invalid mappings are not a
        // reason to leave rules behind, so they only limit the conntrack flush.
        let parsed = config::parse(conf).ok();
        let ips = match conf.prev_result() {
            Ok(Some(prev)) => addresses::container_ips(&prev, &args.ifname),
            _ => Vec::new(),
        };
        let known = parsed.as_ref().and_then(|p| {
            Some(portmap::Known {
                backend: p.firewall().ok()?.backend(),
                request: p.request(&ips),
            })
        });
        let flush = parsed
            .as_ref()
            .map(|p| host::start_udp_conntrack_flush(&Family::ALL, &p.mappings));
        portmap::del_known(&owner(args, conf), known.as_ref())
            .map_err(|e| to_cni(e).context("unable to remove port mappings"))?;
        if let Some(flush) = flush {
            host::finish_udp_conntrack_flush(flush);
        }
        Ok(())
    }

    fn check(&self, args: &CmdArgs, conf: &NetConf<PortmapConfig>) -> Result<()> {
        let prev = conf
            .prev_result()?
            .ok_or_else(|| Error::invalid_config("Required prevResult missing"))?;
        let parsed = config::parse(conf)?;
        if parsed.mappings.is_empty() {
            return Ok(());
        }
        let ips = addresses::container_ips(&prev, &args.ifname);
        parsed
            .firewall()?
            .check_port_mappings(&owner(args, conf), &parsed.request(&ips))
            .map_err(|e| to_cni(e).context("port mapping check failed"))
    }

    fn status(&self, _args: &CmdArgs, conf: &NetConf<PortmapConfig>) -> Result<()> {
        let parsed = config::parse(conf)?;
        let firewall = parsed.firewall_probed()?;
        firewall.probe().map_err(|e| {
            Error::new(
                cni::Code::NotAvailable,
                format!("{} is not usable: {e}", firewall.backend()),
            )
        })
    }

    fn gc(&self, _args: &CmdArgs, conf: &NetConf<PortmapConfig>) -> Result<()> {
        let Some(valid) = conf.gc_valid_attachments() else {
            return Ok(());
        };
        let valid: Vec<(String, String)> = valid
            .into_iter()
            .map(|a| (a.container_id, a.ifname))
            .collect();
        portmap::gc(&conf.name, &valid)
            .map_err(|e| to_cni(e).context("port mapping garbage collection failed"))
    }
}
