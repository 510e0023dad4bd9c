//! The host-local configuration: the `ipam` section plus the runtime inputs
//! (`runtimeConfig.ipRanges`, `runtimeConfig.ips`, `args.cni.ips`,
//! `CNI_ARGS` `IP=`), validated like the reference
//! (`backend/allocator/config.go`) with its messages, as code 7.
//!
//! Range sets, in order: `runtimeConfig.ipRanges`, then the legacy
//! top-level `subnet`/`rangeStart`/`rangeEnd`/`gateway` range (only when
//! `subnet` is set), then `ranges`. Requested addresses, in order:
//! `args.cni.ips`, `runtimeConfig.ips` (each `ip` or `ip/prefix`; the prefix
//! is ignored); `CNI_ARGS` `IP=` only when neither list is given
//! (CONVENTIONS.md).

use std::ffi::OsStr;
use std::net::IpAddr;
use std::path::PathBuf;

use crate::store::DEFAULT_DATA_DIR;
use crate::{RangeSet, RangeSpec, ip};
use cni::version::V0_3_0;
use cni::{CniArgs, Error, NetConf, RangeConf, Result, Route, SpecVersion};
use ipnetwork::IpNetwork;
use serde::Deserialize;
use serde_json::Value;

/// Where a network's state lives: all DEL and GC need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreLocation {
    /// `ipam.dataDir`, default `/var/lib/cni/networks`.
    pub data_dir: PathBuf,
    /// The network name (the state directory under `data_dir`).
    pub network: String,
}

/// The validated configuration ADD, CHECK and STATUS work from.
#[derive(Debug, Clone)]
pub struct IpamConfig {
    /// Where the state lives.
    pub location: StoreLocation,
    /// The range sets; one address is allocated from each.
    pub range_sets: Vec<RangeSet>,
    /// `ipam.routes`, copied into the result.
    pub routes: Vec<Route>,
    /// `ipam.resolvConf`: file parsed into the result's `dns`.
    pub resolv_conf: Option<PathBuf>,
    /// Requested addresses, in input order.
    pub requested: Vec<IpAddr>,
}

/// `ipam` as written; addresses are kept as text so that the reference's
/// messages can be reproduced.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawIpam {
    subnet: Option<String>,
    range_start: Option<String>,
    range_end: Option<String>,
    gateway: Option<String>,
    #[serde(default, deserialize_with = "cni::conf::null_as_default")]
    ranges: Vec<Vec<RawRange>>,
    #[serde(default, deserialize_with = "cni::conf::null_as_default")]
    routes: Vec<Route>,
    data_dir: Option<String>,
    resolv_conf: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRange {
    subnet: String,
    range_start: Option<String>,
    range_end: Option<String>,
    gateway: Option<String>,
}

/// Only the location: DEL and GC validate nothing else, so a configuration
/// whose ranges became invalid can still be cleaned up.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawLocation {
    data_dir: Option<String>,
}

fn ipam_section<P>(conf: &NetConf<P>) -> Result<&Value> {
    conf.ipam
        .as_ref()
        .map(|i| &i.raw)
        .ok_or_else(|| Error::invalid_config("IPAM config missing 'ipam' key"))
}

fn decode<T: for<'de> Deserialize<'de>>(raw: &Value) -> Result<T> {
    cni::gojson::from_value(raw)
        .map_err(|e| Error::invalid_config(format!("invalid ipam config: {e}")))
}

/// The state location. `dataDir` must be a clean absolute path: a relative
/// one would put state wherever the runtime happens to run, and `..` or
/// control characters would let a configuration aim outside the intended
/// tree (the reference accepts all three).
fn location_from(conf_name: &str, data_dir: Option<&str>) -> Result<StoreLocation> {
    let data_dir = data_dir
        .filter(|d| !d.is_empty())
        .unwrap_or(DEFAULT_DATA_DIR);
    let path = PathBuf::from(data_dir);
    let problem = if !path.is_absolute() {
        Some("it must be an absolute path")
    } else if path
        .components()
        .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        Some("it must not contain '..'")
    } else if data_dir.chars().any(char::is_control) {
        Some("it must not contain control characters")
    } else {
        None
    };
    if let Some(why) = problem {
        return Err(Error::invalid_config(format!(
            "invalid ipam dataDir {data_dir:?}: {why}"
        )));
    }
    Ok(StoreLocation {
        data_dir: path,
        network: conf_name.to_string(),
    })
}

/// The state location only (for DEL and GC).
///
/// # Errors
/// Code 7 when there is no `ipam` section or it does not decode.
pub fn load_location<P>(conf: &NetConf<P>) -> Result<StoreLocation> {
    let raw: RawLocation = decode(ipam_section(conf)?)?;
    location_from(&conf.name, raw.data_dir.as_deref())
}

/// Everything, validated (for ADD, CHECK and STATUS).
///
/// # Errors
/// Code 7 for an invalid configuration (the reference's messages), code 4
/// for an invalid `CNI_ARGS`.
pub fn load<P>(conf: &NetConf<P>, cni_args: impl AsRef<OsStr>) -> Result<IpamConfig> {
    let raw: RawIpam = decode(ipam_section(conf)?)?;
    let requested = requested_ips(conf, cni_args.as_ref())?;

    let mut specs: Vec<Vec<RangeSpec>> = conf
        .runtime_config
        .ip_ranges
        .iter()
        .map(|set| set.iter().map(spec_from_runtime).collect())
        .collect();
    if let Some(subnet) = raw.subnet.as_deref().filter(|s| !s.is_empty()) {
        specs.push(vec![parse_range(
            subnet,
            raw.range_start.as_deref(),
            raw.range_end.as_deref(),
            raw.gateway.as_deref(),
        )?]);
    }
    for set in &raw.ranges {
        let parsed = set
            .iter()
            .map(|r| {
                parse_range(
                    &r.subnet,
                    r.range_start.as_deref(),
                    r.range_end.as_deref(),
                    r.gateway.as_deref(),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        specs.push(parsed);
    }
    let range_sets = canonicalize_sets(&specs, conf.version)?;

    Ok(IpamConfig {
        location: location_from(&conf.name, raw.data_dir.as_deref())?,
        range_sets,
        routes: raw.routes,
        resolv_conf: raw.resolv_conf.filter(|p| !p.is_empty()).map(PathBuf::from),
        requested,
    })
}

/// Canonicalizes every set (`invalid range set N: …`), applies the
/// one-address-per-family limit of versions before 0.3.0 and rejects
/// overlaps between sets (`range set I overlaps with J`).
///
/// # Errors
/// Code 7 with the reference's message.
pub fn canonicalize_sets(specs: &[Vec<RangeSpec>], version: SpecVersion) -> Result<Vec<RangeSet>> {
    if specs.is_empty() {
        return Err(Error::invalid_config("no IP ranges specified"));
    }
    let sets = specs
        .iter()
        .enumerate()
        .map(|(i, s)| {
            RangeSet::canonicalize(s)
                .map_err(|e| Error::invalid_config(format!("invalid range set {i}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let v4 = sets.iter().filter(|s| s.is_ipv4()).count();
    if (v4 > 1 || sets.len() - v4 > 1) && version < V0_3_0 {
        return Err(Error::invalid_config(format!(
            "CNI version {version} does not support more than 1 address per family"
        )));
    }
    for (i, a) in sets.iter().enumerate() {
        for (j, b) in sets.iter().enumerate().skip(i + 1) {
            if a.overlaps(b) {
                return Err(Error::invalid_config(format!(
                    "range set {i} overlaps with {j}"
                )));
            }
        }
    }
    Ok(sets)
}

fn spec_from_runtime(r: &RangeConf) -> RangeSpec {
    RangeSpec {
        subnet: r.subnet,
        range_start: r.range_start,
        range_end: r.range_end,
        gateway: r.gateway,
    }
}

fn parse_range(
    subnet: &str,
    start: Option<&str>,
    end: Option<&str>,
    gateway: Option<&str>,
) -> Result<RangeSpec> {
    Ok(RangeSpec {
        subnet: parse_cidr(subnet)?,
        range_start: parse_opt_ip(start)?,
        range_end: parse_opt_ip(end)?,
        gateway: parse_opt_ip(gateway)?,
    })
}

/// `ip/prefix`, host bits kept (Go's `types.ParseCIDR`).
fn parse_cidr(text: &str) -> Result<IpNetwork> {
    let invalid = || Error::invalid_config(format!("invalid CIDR address: {text}"));
    let (addr, prefix) = text.split_once('/').ok_or_else(invalid)?;
    let addr: IpAddr = addr.parse().map_err(|_| invalid())?;
    if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    let prefix: u8 = prefix.parse().map_err(|_| invalid())?;
    IpNetwork::new(addr, prefix).map_err(|_| invalid())
}

/// An optional address; an empty string counts as absent (as in Go).
fn parse_opt_ip(text: Option<&str>) -> Result<Option<IpAddr>> {
    match text.filter(|t| !t.is_empty()) {
        None => Ok(None),
        Some(t) => t
            .parse::<IpAddr>()
            .map(|a| Some(ip::canonical(a)))
            .map_err(|_| Error::invalid_config(format!("invalid IP address: {t}"))),
    }
}

/// `ip` or `ip/prefix` (Go's `ip.ParseIP`); the prefix is dropped.
fn parse_requested(text: &str) -> Option<IpAddr> {
    let addr = match text.split_once('/') {
        Some((a, p)) => {
            let prefix: u8 = p.parse().ok()?;
            IpNetwork::new(a.parse().ok()?, prefix).ok()?.ip()
        }
        None => text.parse().ok()?,
    };
    Some(ip::canonical(addr))
}

/// The requested addresses. `CNI_ARGS` is always parsed (a malformed one
/// is an error), but its `IP` is used only when neither `args.cni.ips` nor
/// `runtimeConfig.ips` is given: CONVENTIONS.md, "if a runtime passes an
/// equivalent key via args … the plugin must ignore the CNI_ARGS Field".
fn requested_ips<P>(conf: &NetConf<P>, cni_args: &OsStr) -> Result<Vec<IpAddr>> {
    let mut out = Vec::new();
    let args = CniArgs::parse_os(cni_args)?;
    args.require_known(&["IP"])?;
    let from_args = !conf.args.cni.ips.is_empty() || !conf.runtime_config.ips.is_empty();
    if !from_args && let Some(v) = args.get("IP")? {
        out.push(parse_requested(v).ok_or_else(|| {
            Error::invalid_env(format!(
                "ARGS: error parsing value of pair \"IP={v}\": invalid IP address {v}"
            ))
        })?);
    }
    for (key, list) in [
        ("args.cni.ips", &conf.args.cni.ips),
        ("runtimeConfig.ips", &conf.runtime_config.ips),
    ] {
        for v in list {
            out.push(parse_requested(v).ok_or_else(|| {
                Error::invalid_config(format!(
                    "cannot understand ip: invalid IP address {v:?} in {key}"
                ))
            })?);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cni::version::{V0_2_0, V0_4_0, V1_0_0};

    #[test]
    fn readme_documents_every_key() {
        // The plugin's reference page (the executable's directory).
        let readme = include_str!("../../../../plugins/host-local/README.md");
        let keys = [
            cni::conf::struct_keys::<RawIpam>(),
            cni::conf::struct_keys::<RawRange>(),
            cni::conf::struct_keys::<RangeConf>(),
        ]
        .concat();
        assert!(keys.len() > 10, "{keys:?}");
        for key in keys {
            assert!(
                readme.contains(&format!("`{key}`")),
                "plugins/host-local/README.md does not document {key:?}"
            );
        }
    }

    fn conf(json: &str, version: SpecVersion) -> NetConf {
        let mut c: NetConf = serde_json::from_str(json).expect("test config");
        c.version = version;
        c
    }

    fn load_ok(json: &str) -> IpamConfig {
        load(&conf(json, V1_0_0), OsStr::new("")).expect("valid config")
    }

    fn load_err(json: &str, version: SpecVersion, args: &str) -> (u32, String) {
        let e = load(&conf(json, version), OsStr::new(args)).expect_err("invalid config");
        (e.code, e.msg)
    }

    fn sets(c: &IpamConfig) -> Vec<String> {
        c.range_sets.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn data_dir_must_be_a_clean_absolute_path() {
        for (dir, why) in [
            ("rel/dir", "absolute"),
            ("/var/lib/../../etc", "'..'"),
            ("/var/lib/cni/new\nline", "control characters"),
        ] {
            let e = location_from("net", Some(dir)).unwrap_err();
            assert_eq!(e.code, 7, "{dir:?}");
            assert!(e.msg.contains(why), "{dir:?}: {e}");
        }
        let ok = location_from("net", Some("/run/cni/./ipam")).unwrap();
        assert_eq!(ok.data_dir, PathBuf::from("/run/cni/./ipam"));
        assert_eq!(
            location_from("net", None).unwrap().data_dir,
            PathBuf::from(DEFAULT_DATA_DIR)
        );
    }

    #[test]
    fn legacy_top_level_range() {
        let c = load_ok(
            r#"{"name":"net","ipam":{"type":"host-local","subnet":"10.1.2.0/24",
                "rangeStart":"10.1.2.9","rangeEnd":"10.1.2.20","gateway":"10.1.2.30",
                "dataDir":"/tmp/x","routes":[{"dst":"0.0.0.0/0"},{"dst":"10.9.0.0/16","gw":"10.1.2.3"}]}}"#,
        );
        assert_eq!(sets(&c), ["10.1.2.9-10.1.2.20"]);
        assert_eq!(c.range_sets[0].ranges()[0].gateway.to_string(), "10.1.2.30");
        assert_eq!(c.location.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(c.location.network, "net");
        assert_eq!(c.routes.len(), 2);
        assert_eq!(
            c.routes[1].gw.map(|g| g.to_string()).as_deref(),
            Some("10.1.2.3")
        );
    }

    #[test]
    fn new_style_ranges_and_default_data_dir() {
        let c = load_ok(
            r#"{"name":"net","ipam":{"type":"host-local","resolvConf":"/etc/resolv.conf",
                "ranges":[[{"subnet":"10.1.2.0/24"},{"subnet":"10.1.4.0/24"}],[{"subnet":"2001:db8:1::/64"}]]}}"#,
        );
        assert_eq!(
            sets(&c),
            [
                "10.1.2.1-10.1.2.254,10.1.4.1-10.1.4.254",
                "2001:db8:1::1-2001:db8:1:0:ffff:ffff:ffff:ffff"
            ]
        );
        assert_eq!(c.location.data_dir, PathBuf::from("/var/lib/cni/networks"));
        assert_eq!(c.resolv_conf, Some(PathBuf::from("/etc/resolv.conf")));
    }

    #[test]
    fn runtime_ranges_first_then_legacy_then_ranges() {
        let c = load_ok(
            r#"{"name":"net","runtimeConfig":{"ipRanges":[[{"subnet":"10.3.0.0/24"}]]},
                "ipam":{"type":"host-local","subnet":"10.1.0.0/24",
                "ranges":[[{"subnet":"10.2.0.0/24"}]]}}"#,
        );
        assert_eq!(
            sets(&c),
            [
                "10.3.0.1-10.3.0.254",
                "10.1.0.1-10.1.0.254",
                "10.2.0.1-10.2.0.254"
            ]
        );
    }

    #[test]
    fn requested_ips_in_input_order() {
        let c = load(
            &conf(
                r#"{"name":"net","args":{"cni":{"ips":["10.1.2.11/24","10.1.2.12"]}},
                    "runtimeConfig":{"ips":["2001:db8::5/64"]},
                    "ipam":{"type":"host-local","subnet":"10.1.2.0/24"}}"#,
                V1_0_0,
            ),
            "IgnoreUnknown=1;K8S_POD_NAME=x;IP=10.1.2.10/24",
        )
        .expect("valid");
        let got: Vec<String> = c.requested.iter().map(ToString::to_string).collect();
        // CNI_ARGS IP= is ignored: the configuration names addresses.
        assert_eq!(got, ["10.1.2.11", "10.1.2.12", "2001:db8::5"]);
        for with_rc in [
            r#"{"name":"net","runtimeConfig":{"ips":["10.1.2.13"]},"ipam":{"subnet":"10.1.2.0/24"}}"#,
            r#"{"name":"net","args":{"cni":{"ips":["10.1.2.13"]}},"ipam":{"subnet":"10.1.2.0/24"}}"#,
        ] {
            let c = load(&conf(with_rc, V1_0_0), "IP=10.1.2.10").expect("valid");
            assert_eq!(
                c.requested,
                [ip::canonical("10.1.2.13".parse().expect("ip"))]
            );
            // ignored, but a malformed CNI_ARGS is still an error
            assert_eq!(load_err(with_rc, V1_0_0, "IP=10.1.2.10;X").0, 4);
        }
        let c = load(
            &conf(r#"{"name":"net","ipam":{"subnet":"10.1.2.0/24"}}"#, V1_0_0),
            "IP=10.1.2.10",
        )
        .expect("valid");
        assert_eq!(
            c.requested,
            [ip::canonical("10.1.2.10".parse().expect("ip"))]
        );
    }

    #[test]
    fn bad_requested_ips() {
        let j = r#"{"name":"net","ipam":{"subnet":"10.1.2.0/24"}}"#;
        assert_eq!(load_err(j, V1_0_0, "IP=10.1.2.300").0, 4);
        assert_eq!(
            load_err(j, V1_0_0, "IP=").0,
            4,
            "an empty request is no address"
        );
        assert_eq!(load_err(j, V1_0_0, "IP=10.1.2.3;").0, 4, "not KEY=VALUE");
        assert_eq!(load_err(j, V1_0_0, "FOO=1").0, 4);
        let (code, msg) = load_err(
            r#"{"name":"net","args":{"cni":{"ips":["nope"]}},"ipam":{"subnet":"10.1.2.0/24"}}"#,
            V1_0_0,
            "",
        );
        assert_eq!(code, 7);
        assert!(msg.starts_with("cannot understand ip"), "{msg}");
    }

    #[test]
    fn reference_validation_messages() {
        let cases = [
            (r#"{"name":"n"}"#, "IPAM config missing 'ipam' key"),
            (
                r#"{"name":"n","ipam":{"type":"host-local"}}"#,
                "no IP ranges specified",
            ),
            (
                r#"{"name":"n","ipam":{"ranges":[]}}"#,
                "no IP ranges specified",
            ),
            (
                r#"{"name":"n","ipam":{"ranges":[[]]}}"#,
                "invalid range set 0: empty range set",
            ),
            (
                r#"{"name":"n","ipam":{"subnet":"10.1.2.3/24"}}"#,
                "invalid range set 0: Network has host bits set. For a subnet mask of length 24 the network address is 10.1.2.0",
            ),
            (
                r#"{"name":"n","ipam":{"ranges":[[{"subnet":"10.1.2.0/31"}]]}}"#,
                "invalid range set 0: Network 10.1.2.0/31 too small to allocate from",
            ),
            (
                r#"{"name":"n","ipam":{"ranges":[[{"subnet":"10.1.2.0/24","rangeStart":"10.1.2.50","rangeEnd":"10.1.2.40"}]]}}"#,
                "invalid range set 0: RangeStart 10.1.2.50 not in network 10.1.2.0/24",
            ),
            (
                r#"{"name":"n","ipam":{"ranges":[[{"subnet":"10.1.2.0/24","rangeEnd":"10.1.3.5"}]]}}"#,
                "invalid range set 0: RangeEnd 10.1.3.5 not in network 10.1.2.0/24",
            ),
            (
                r#"{"name":"n","ipam":{"ranges":[[{"subnet":"10.1.2.0/24"},{"subnet":"2001:db8::/64"}]]}}"#,
                "invalid range set 0: mixed address families",
            ),
            (
                r#"{"name":"n","ipam":{"ranges":[[{"subnet":"10.1.2.0/24"},{"subnet":"10.1.2.0/25"}]]}}"#,
                "invalid range set 0: subnets 10.1.2.1-10.1.2.254 and 10.1.2.1-10.1.2.126 overlap",
            ),
            (
                r#"{"name":"n","ipam":{"ranges":[[{"subnet":"10.1.2.0/24"}],[{"subnet":"10.1.3.0/24"}],[{"subnet":"10.1.2.0/25"}]]}}"#,
                "range set 0 overlaps with 2",
            ),
            (
                r#"{"name":"n","ipam":{"ranges":[[{"subnet":"10.1.2.0"}]]}}"#,
                "invalid CIDR address: 10.1.2.0",
            ),
            (
                r#"{"name":"n","ipam":{"ranges":[[{"subnet":"10.1.2.0/24","gateway":"10.1.2"}]]}}"#,
                "invalid IP address: 10.1.2",
            ),
        ];
        for (json, want) in cases {
            let (code, msg) = load_err(json, V0_4_0, "");
            assert_eq!((code, msg.as_str()), (7, want), "{json}");
        }
    }

    #[test]
    fn one_set_per_family_before_0_3_0() {
        let two_v4 = r#"{"name":"n","ipam":{"ranges":[[{"subnet":"10.1.2.0/24"}],[{"subnet":"10.1.3.0/24"}]]}}"#;
        assert_eq!(
            load_err(two_v4, V0_2_0, ""),
            (
                7,
                "CNI version 0.2.0 does not support more than 1 address per family".to_string()
            )
        );
        load(&conf(two_v4, V0_3_0), "").expect("allowed from 0.3.0");
        let dual = r#"{"name":"n","ipam":{"ranges":[[{"subnet":"10.1.2.0/24"}],[{"subnet":"2001:db8::/64"}]]}}"#;
        load(&conf(dual, V0_2_0), "").expect("one per family is fine");
    }

    #[test]
    fn location_ignores_invalid_ranges() {
        let c = conf(
            r#"{"name":"n","ipam":{"dataDir":"/run/x","ranges":[[{"subnet":"10.1.2.3/24"}]]}}"#,
            V1_0_0,
        );
        assert!(load(&c, "").is_err());
        let loc = load_location(&c).expect("location");
        assert_eq!(loc.data_dir, PathBuf::from("/run/x"));
        assert_eq!(loc.network, "n");
        assert_eq!(
            load_location(&conf(r#"{"name":"n"}"#, V1_0_0))
                .expect_err("no ipam")
                .code,
            7
        );
    }

    #[test]
    fn cidr_and_ip_parsing() {
        assert_eq!(
            parse_cidr("10.1.2.3/24").expect("ok").to_string(),
            "10.1.2.3/24"
        );
        assert!(parse_cidr("10.1.2.3/33").is_err());
        assert!(parse_cidr("10.1.2.3/+4").is_err());
        assert!(parse_cidr("2001:db8::/").is_err());
        assert_eq!(parse_opt_ip(Some("")).expect("empty"), None);
        assert_eq!(
            parse_requested("::ffff:10.1.2.3/120")
                .map(|a| a.to_string())
                .as_deref(),
            Some("10.1.2.3")
        );
        assert_eq!(parse_requested("10.1.2.3/40"), None);
    }
}
