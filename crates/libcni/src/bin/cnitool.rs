//! `cnitool`: run a CNI network configuration against a network namespace,
//! with the interface of containernetworking/cni's `cnitool`.
//!
//! ```text
//! cnitool add    <net> <netns-path>
//! cnitool check  <net> <netns-path>
//! cnitool del    <net> <netns-path>
//! cnitool gc     <net> [<netns-path>]
//! cnitool status <net> [<netns-path>]
//! cnitool --version
//! ```
//!
//! Environment (as upstream): `CNI_PATH` (plugin directories, `:`-separated),
//! `NETCONFPATH` (default `/etc/cni/net.d`), `CNI_IFNAME` (default `eth0`),
//! `CNI_ARGS` (`K=V;K2=V2`), `CAP_ARGS` (JSON object of capability
//! arguments). Extensions: `CNI_CACHE_DIR` (default `/var/lib/cni`),
//! `CNI_CONTAINERID` (default: `cnitool-` + hash of the netns path, as
//! upstream), `CNI_VALID_ATTACHMENTS` (gc only: JSON list of
//! `{"containerID","ifname"}` to keep; without it every cached attachment of
//! the network is deleted and plugins get no list, as upstream).
//!
//! ADD prints the result as JSON on stdout. Failures print the plugin's CNI
//! error (message, details and code) on stderr and exit with status 1.

use std::path::PathBuf;
use std::process::ExitCode;

use cni::GcAttachment;
use cni_libcni::{
    CniConfig, Error, RuntimeConf, cnitool_container_id, load_network, parse_cni_args,
};
use serde_json::{Map, Value};

const USAGE: &str = "\
cnitool: add, check, remove, gc or get the status of network interfaces in a network namespace
  cnitool --version
  cnitool add    <net> <netns>
  cnitool check  <net> <netns>
  cnitool del    <net> <netns>
  cnitool gc     <net> [<netns>]
  cnitool status <net> [<netns>]
environment: CNI_PATH, NETCONFPATH (default /etc/cni/net.d), CNI_IFNAME (default eth0),
  CNI_ARGS (K=V;K2=V2), CAP_ARGS (JSON), CNI_CACHE_DIR (default /var/lib/cni),
  CNI_CONTAINERID (default derived from <netns>), CNI_VALID_ATTACHMENTS (gc, JSON list)";

enum Outcome {
    Done,
    Printed(String),
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    match run(&argv) {
        Ok(Outcome::Done) => ExitCode::SUCCESS,
        Ok(Outcome::Printed(json)) => {
            print_result(&json);
            ExitCode::SUCCESS
        }
        Err(Failure::Usage(msg)) => {
            if !msg.is_empty() {
                eprintln!("cnitool: {msg}");
            }
            eprintln!("{USAGE}");
            ExitCode::FAILURE
        }
        Err(Failure::Runtime(e)) => {
            eprintln!("cnitool: {}", describe(&e));
            ExitCode::FAILURE
        }
    }
}

#[allow(
    clippy::print_stdout,
    reason = "cnitool prints the ADD result on stdout"
)]
fn print_result(json: &str) {
    println!("{json}");
}

/// The error as one readable line: the message chain, then the CNI code.
fn describe(e: &Error) -> String {
    match e.cni_error() {
        Some(c) => format!("{e} (CNI error code {})", c.code),
        None => e.to_string(),
    }
}

enum Failure {
    Usage(String),
    Runtime(Error),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Self::Runtime(e)
    }
}

fn env(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|v| !v.is_empty())
}

fn run(argv: &[String]) -> Result<Outcome, Failure> {
    let (cmd, net, netns) = match argv {
        [c, ..] if matches!(c.as_str(), "-h" | "--help" | "help") => {
            return Err(Failure::Usage(String::new()));
        }
        [c] if matches!(c.as_str(), "-V" | "--version" | "version") => {
            return Ok(Outcome::Printed(format!("cnitool {}", cni::VERSION)));
        }
        [c, net, netns] => (c.as_str(), net.as_str(), Some(netns.as_str())),
        [c, net] if matches!(c.as_str(), "gc" | "status") => (c.as_str(), net.as_str(), None),
        _ => return Err(Failure::Usage("wrong number of arguments".into())),
    };
    if !matches!(cmd, "add" | "check" | "del" | "gc" | "status") {
        return Err(Failure::Usage(format!("unknown command {cmd:?}")));
    }
    let netdir = env("NETCONFPATH").unwrap_or_else(|| "/etc/cni/net.d".into());
    let list = load_network(netdir.as_ref(), net)?;
    let cni_path: Vec<PathBuf> = std::env::var_os("CNI_PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    let cache_dir = env("CNI_CACHE_DIR").unwrap_or_else(|| cni_libcni::DEFAULT_CACHE_DIR.into());
    let cni = CniConfig::with_cache_dir(cni_path, cache_dir);

    match cmd {
        "gc" => {
            let valid = valid_attachments()?;
            cni.gc_network_list(&list, valid.as_deref())?;
            return Ok(Outcome::Done);
        }
        "status" => {
            cni.status_network_list(&list)?;
            return Ok(Outcome::Done);
        }
        _ => {}
    }

    let Some(netns) = netns else {
        return Err(Failure::Usage(format!("{cmd} needs a netns path")));
    };
    let netns = std::path::absolute(netns)
        .map_err(|e| Error::Config(format!("invalid netns path {netns:?}: {e}")))?
        .to_string_lossy()
        .into_owned();
    let rt = RuntimeConf {
        container_id: env("CNI_CONTAINERID").unwrap_or_else(|| cnitool_container_id(&netns)),
        netns,
        ifname: env("CNI_IFNAME").unwrap_or_else(|| "eth0".into()),
        args: match env("CNI_ARGS") {
            Some(a) => parse_cni_args(&a)?,
            None => Vec::new(),
        },
        capability_args: capability_args()?,
    };
    match cmd {
        "add" => {
            let result = cni.add_network_list(&list, &rt)?;
            let json = result.to_json(list.version()?).map_err(|e| Error::Cni {
                context: "cannot print the result".into(),
                source: e,
            })?;
            Ok(Outcome::Printed(json))
        }
        "check" => {
            cni.check_network_list(&list, &rt)?;
            Ok(Outcome::Done)
        }
        _ => {
            cni.del_network_list(&list, &rt)?;
            Ok(Outcome::Done)
        }
    }
}

fn capability_args() -> Result<Map<String, Value>, Error> {
    match env("CAP_ARGS") {
        None => Ok(Map::new()),
        Some(raw) => serde_json::from_str(&raw)
            .map_err(|e| Error::Config(format!("CAP_ARGS is not a JSON object: {e}"))),
    }
}

fn valid_attachments() -> Result<Option<Vec<GcAttachment>>, Error> {
    env("CNI_VALID_ATTACHMENTS")
        .map(|raw| {
            serde_json::from_str(&raw).map_err(|e| {
                Error::Config(format!(
                    "CNI_VALID_ATTACHMENTS is not a JSON list of {{\"containerID\",\"ifname\"}}: {e}"
                ))
            })
        })
        .transpose()
}
