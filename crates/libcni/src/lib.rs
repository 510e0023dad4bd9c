//! A CNI runtime library: executes network configuration lists the way
//! containernetworking/cni's `libcni` does, for `cnitool`, the demo and the
//! end-to-end tests.
//!
//! * [`load_network`] finds a network by name in a directory of `.conflist`,
//!   `.conf` and `.json` files ([`conf`]).
//! * [`CniConfig`] runs a [`NetworkConfigList`] for one attachment
//!   ([`RuntimeConf`]): ADD in order, each plugin getting the previous
//!   result as `prevResult`; DEL in reverse order with the cached result;
//!   CHECK with the cached result (unless `disableCheck`); GC with the valid
//!   attachments (unless `disableGC`); STATUS.
//! * Every plugin configuration gets the list's `name` and `cniVersion`, and
//!   `runtimeConfig` holds the capability arguments of exactly the
//!   capabilities the plugin enables.
//! * ADD results are cached in libcni's file format ([`cache`]) under
//!   `<cache dir>/results`, so DEL and CHECK work after a restart and with
//!   upstream tools; a successful DEL deletes the entry.
//!
//! ```no_run
//! use cni_libcni::{CniConfig, RuntimeConf, load_network};
//! # fn main() -> Result<(), cni_libcni::Error> {
//! let list = load_network("/etc/cni/net.d".as_ref(), "mynet")?;
//! let cni = CniConfig::new(vec!["/opt/cni/bin".into()]);
//! let rt = RuntimeConf::new("ctr1", "/run/netns/ctr1", "eth0");
//! let result = cni.add_network_list(&list, &rt)?;
//! println!("{}", result.to_json(list.version()?).map_err(cni_libcni::Error::from)?);
//! cni.del_network_list(&list, &rt)?;
//! # Ok(()) }
//! ```

pub mod cache;
mod codec;
pub mod conf;
mod error;

use std::path::PathBuf;

use cni::{Command, GcAttachment, SpecVersion, Success};
use serde_json::{Map, Value};

pub use cache::{CacheEntry, ResultCache};
pub use conf::{NetworkConfigList, PluginConf, load_network};
pub use error::Error;

/// libcni's default cache directory.
pub const DEFAULT_CACHE_DIR: &str = "/var/lib/cni";

/// The per-attachment arguments of one operation (libcni's `RuntimeConf`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuntimeConf {
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_NETNS` (may be empty for DEL).
    pub netns: String,
    /// `CNI_IFNAME`.
    pub ifname: String,
    /// `CNI_ARGS` pairs.
    pub args: Vec<(String, String)>,
    /// Capability arguments (`portMappings`, `ips`, `mac`, …), injected into
    /// `runtimeConfig` of each plugin that enables the capability.
    pub capability_args: Map<String, Value>,
}

impl RuntimeConf {
    /// Arguments for one attachment without `CNI_ARGS` or capabilities.
    pub fn new(container_id: &str, netns: &str, ifname: &str) -> Self {
        Self {
            container_id: container_id.to_owned(),
            netns: netns.to_owned(),
            ifname: ifname.to_owned(),
            ..Self::default()
        }
    }

    /// `CNI_ARGS` as the plugins see it: `K=V;K2=V2`.
    pub fn cni_args_string(&self) -> String {
        self.args
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(";")
    }
}

/// Parse a `CNI_ARGS` string as upstream `cnitool` does: `;`-separated
/// `KEY=VALUE` pairs, each with exactly one `=` and both sides non-empty.
///
/// # Errors
/// [`Error::Config`] naming the invalid pair.
pub fn parse_cni_args(raw: &str) -> Result<Vec<(String, String)>, Error> {
    raw.split(';')
        .map(|pair| {
            let mut parts = pair.split('=');
            match (parts.next(), parts.next(), parts.next()) {
                (Some(k), Some(v), None) if !k.is_empty() && !v.is_empty() => {
                    Ok((k.to_owned(), v.to_owned()))
                }
                _ => Err(Error::Config(format!("invalid CNI_ARGS pair {pair:?}"))),
            }
        })
        .collect()
}

/// The container ID upstream `cnitool` uses for a netns path:
/// `cnitool-` and the hex of the first 10 bytes of the path's SHA-512.
pub fn cnitool_container_id(netns_path: &str) -> String {
    let digest = codec::sha512(netns_path.as_bytes());
    format!("cnitool-{}", codec::hex(&digest[..10]))
}

/// What a plugin reports for VERSION.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct PluginVersionInfo {
    /// The plugin's own spec version.
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    /// Versions it accepts.
    #[serde(rename = "supportedVersions", default)]
    pub supported_versions: Vec<String>,
}

/// Runs network configuration lists (libcni's `CNIConfig`).
#[derive(Debug, Clone)]
pub struct CniConfig {
    /// Directories searched for plugin binaries (`CNI_PATH`).
    pub path: Vec<PathBuf>,
    cache: ResultCache,
}

impl CniConfig {
    /// A runtime searching `path` for plugins and caching results under
    /// [`DEFAULT_CACHE_DIR`].
    pub fn new(path: Vec<PathBuf>) -> Self {
        Self::with_cache_dir(path, DEFAULT_CACHE_DIR)
    }

    /// A runtime with its own cache directory (results go to
    /// `<cache_dir>/results`).
    pub fn with_cache_dir(path: Vec<PathBuf>, cache_dir: impl Into<PathBuf>) -> Self {
        Self {
            path,
            cache: ResultCache::new(cache_dir),
        }
    }

    /// The result cache.
    pub fn cache(&self) -> &ResultCache {
        &self.cache
    }

    /// ADD: run the plugins in order, each with the previous plugin's result
    /// as `prevResult`, cache the final result and return it.
    ///
    /// # Errors
    /// [`Error::Cni`] for the first plugin that fails (later plugins do not
    /// run; nothing is cached and, as in libcni, nothing is rolled back: the
    /// caller should DEL), or invalid runtime arguments (code 4/7 before any
    /// plugin runs); [`Error::Io`] when the result cannot be cached.
    pub fn add_network_list(
        &self,
        list: &NetworkConfigList,
        rt: &RuntimeConf,
    ) -> Result<Success, Error> {
        let version = list.version()?;
        validate_attachment(list, rt)?;
        let mut prev: Option<Value> = None;
        let mut result = None;
        for plugin in &list.plugins {
            let ctx = || format!("plugin {} failed (add)", plugin.description());
            let stdout = self
                .run(list, plugin, Command::Add, Some(rt), prev.as_ref(), None)
                .map_err(|source| Error::Cni {
                    context: ctx(),
                    source,
                })?;
            let parsed = Success::from_slice(&stdout, version)
                .and_then(|s| s.to_value(version).map(|v| (s, v)))
                .map_err(|source| Error::Cni {
                    context: format!("{}: invalid result", ctx()),
                    source,
                })?;
            prev = Some(parsed.1);
            result = Some(parsed.0);
        }
        let (Some(result), Some(value)) = (result, prev) else {
            return Err(Error::Config(format!(
                "network {:?} has no plugins",
                list.name
            )));
        };
        self.cache
            .store(&CacheEntry {
                kind: cache::CACHE_KIND_V1.into(),
                container_id: rt.container_id.clone(),
                config: list.bytes.clone(),
                ifname: rt.ifname.clone(),
                network_name: list.name.clone(),
                netns: rt.netns.clone(),
                cni_args: rt.args.clone(),
                capability_args: rt.capability_args.clone(),
                result: Some(value),
            })
            .map_err(|e| {
                Error::Cache(format!(
                    "failed to set network {:?} cached result: {e}",
                    list.name
                ))
            })?;
        Ok(result)
    }

    /// CHECK: run the plugins in order with the cached result as
    /// `prevResult`. Does nothing when the list sets `disableCheck`.
    ///
    /// # Errors
    /// [`Error::Config`] for a list version older than 0.4.0; the cache
    /// error; [`Error::Cni`] for the first plugin that fails.
    pub fn check_network_list(
        &self,
        list: &NetworkConfigList,
        rt: &RuntimeConf,
    ) -> Result<(), Error> {
        let version = list.version()?;
        if !version.allows_check() {
            return Err(Error::Config(format!(
                "configuration version {:?} does not support the CHECK command",
                list.cni_version
            )));
        }
        if list.disable_check {
            return Ok(());
        }
        validate_attachment(list, rt)?;
        let cached = self.cached_result_value(list, rt, version).map_err(|e| {
            Error::Cache(format!(
                "failed to get network {:?} cached result: {e}",
                list.name
            ))
        })?;
        for plugin in &list.plugins {
            self.run(
                list,
                plugin,
                Command::Check,
                Some(rt),
                cached.as_ref(),
                None,
            )
            .map_err(|source| Error::Cni {
                context: format!("plugin {} failed (check)", plugin.description()),
                source,
            })?;
        }
        Ok(())
    }

    /// DEL: run the plugins in reverse order with the cached result as
    /// `prevResult` (0.4.0 and later; an unreadable entry is dropped and
    /// DEL goes on without it), then delete the cache entry.
    ///
    /// # Errors
    /// [`Error::Cni`] for the first plugin that fails (the cache entry is
    /// kept so DEL can be retried).
    pub fn del_network_list(
        &self,
        list: &NetworkConfigList,
        rt: &RuntimeConf,
    ) -> Result<(), Error> {
        let version = list.version()?;
        validate_attachment(list, rt)?;
        let cached = if version >= cni::version::V0_4_0 {
            match self.cached_result_value(list, rt, version) {
                Ok(v) => v,
                Err(e) => {
                    log::warn!("ignoring unusable cached result of {:?}: {e}", list.name);
                    self.cache
                        .remove(&list.name, &rt.container_id, &rt.ifname)?;
                    None
                }
            }
        } else {
            None
        };
        for plugin in list.plugins.iter().rev() {
            self.run(list, plugin, Command::Del, Some(rt), cached.as_ref(), None)
                .map_err(|source| Error::Cni {
                    context: format!("plugin {} failed (delete)", plugin.description()),
                    source,
                })?;
        }
        self.cache.remove(&list.name, &rt.container_id, &rt.ifname)
    }

    /// GC: DEL every cached attachment of this network that is not in
    /// `valid`, then (1.1.0 and later) run each plugin's GC with
    /// `cni.dev/valid-attachments` (and the legacy `cni.dev/attachments`)
    /// set to `valid`. `None` means "no list": every cached attachment is
    /// stale, and the plugins get no list (so they must not collect
    /// anything), as upstream `cnitool gc` does. Does nothing when the list
    /// sets `disableGC`.
    ///
    /// # Errors
    /// [`Error::Multiple`] with every failure; GC goes on past errors.
    pub fn gc_network_list(
        &self,
        list: &NetworkConfigList,
        valid: Option<&[GcAttachment]>,
    ) -> Result<(), Error> {
        if list.disable_gc {
            return Ok(());
        }
        let version = list.version()?;
        let mut errors = Vec::new();
        match self.cache.entries(None) {
            Ok(entries) => {
                for entry in entries.into_iter().filter(|e| e.network_name == list.name) {
                    let key = GcAttachment {
                        container_id: entry.container_id.clone(),
                        ifname: entry.ifname.clone(),
                    };
                    if valid.is_some_and(|v| v.contains(&key)) {
                        continue;
                    }
                    let rt = RuntimeConf {
                        container_id: entry.container_id,
                        netns: entry.netns,
                        ifname: entry.ifname,
                        args: entry.cni_args,
                        capability_args: entry.capability_args,
                    };
                    if let Err(e) = self.del_network_list(list, &rt) {
                        errors.push(Error::Config(format!(
                            "failed to delete stale attachment {} {}: {e}",
                            rt.container_id, rt.ifname
                        )));
                    }
                }
            }
            Err(e) => errors.push(e),
        }
        if version.allows_status_and_gc() {
            let list_value = valid.map(|v| {
                Value::Array(
                    v.iter()
                        .map(|a| serde_json::json!({"containerID": a.container_id, "ifname": a.ifname}))
                        .collect(),
                )
            });
            for plugin in &list.plugins {
                if let Err(source) =
                    self.run(list, plugin, Command::Gc, None, None, list_value.as_ref())
                {
                    errors.push(Error::Cni {
                        context: format!("failed to GC plugin {}", plugin.plugin_type),
                        source,
                    });
                }
            }
        }
        match errors.len() {
            0 => Ok(()),
            1 => Err(errors.remove(0)),
            _ => Err(Error::Multiple(errors)),
        }
    }

    /// STATUS: ask each plugin in order whether it is ready for ADD. Lists
    /// older than 1.1.0 are always ready.
    ///
    /// # Errors
    /// [`Error::Cni`] for the first plugin that is not ready (its code, 50 or
    /// 51 for example, is in [`Error::cni_error`]).
    pub fn status_network_list(&self, list: &NetworkConfigList) -> Result<(), Error> {
        if !list.version()?.allows_status_and_gc() {
            return Ok(());
        }
        for plugin in &list.plugins {
            self.run(list, plugin, Command::Status, None, None, None)
                .map_err(|source| Error::Cni {
                    context: format!("plugin {} failed (status)", plugin.description()),
                    source,
                })?;
        }
        Ok(())
    }

    /// The cached ADD result of an attachment, in the list's version.
    ///
    /// # Errors
    /// [`Error::Cache`] when the entry cannot be read or converted.
    pub fn cached_result(
        &self,
        list: &NetworkConfigList,
        rt: &RuntimeConf,
    ) -> Result<Option<Success>, Error> {
        let version = list.version()?;
        let entry = self.cache.load(&list.name, &rt.container_id, &rt.ifname)?;
        entry
            .and_then(|e| e.result)
            .map(|v| {
                Success::from_value(&v, version)
                    .map_err(|e| Error::Cache(format!("cached result of {:?}: {e}", list.name)))
            })
            .transpose()
    }

    /// Cached attachments (all networks), optionally of one container.
    ///
    /// # Errors
    /// [`Error::Io`] when the cache directory cannot be listed.
    pub fn cached_attachments(&self, container_id: Option<&str>) -> Result<Vec<CacheEntry>, Error> {
        self.cache.entries(container_id)
    }

    /// Ask a plugin which spec versions it supports (VERSION).
    ///
    /// # Errors
    /// [`Error::Cni`] when the plugin is not found, fails or prints garbage.
    pub fn plugin_version_info(&self, plugin_type: &str) -> Result<PluginVersionInfo, Error> {
        let ctx = |source| Error::Cni {
            context: format!("plugin type={plugin_type:?} failed (version)"),
            source,
        };
        let bin = cni::invoke::find_in_path(plugin_type, &self.path).map_err(ctx)?;
        let stdin = format!(r#"{{"cniVersion":"{}"}}"#, cni::version::LATEST);
        let out = cni::invoke::exec_plugin(
            &bin,
            Command::Version,
            &cni::invoke::ExecParams::default(),
            stdin.as_bytes(),
        )
        .map_err(ctx)?;
        cni::gojson::from_slice(&out).map_err(|e| {
            ctx(cni::Error::decode(format!(
                "failed to decode version info: {e}"
            )))
        })
    }

    /// Check that every plugin of the list exists and supports the list's
    /// version; return the capabilities the list enables (sorted).
    ///
    /// # Errors
    /// [`Error::Multiple`] (or the single error) naming each plugin that is
    /// missing or does not support the version.
    pub fn validate_network_list(&self, list: &NetworkConfigList) -> Result<Vec<String>, Error> {
        let want = list.injected_version();
        let mut errors = Vec::new();
        let mut caps = std::collections::BTreeSet::new();
        for plugin in &list.plugins {
            match self.plugin_version_info(&plugin.plugin_type) {
                Ok(info) if info.supported_versions.contains(&want) => {}
                Ok(_) => errors.push(Error::Config(format!(
                    "plugin {} does not support config version {want:?}",
                    plugin.plugin_type
                ))),
                Err(e) => errors.push(e),
            }
            caps.extend(plugin.enabled_capabilities().map(str::to_owned));
        }
        match errors.len() {
            0 => Ok(caps.into_iter().collect()),
            1 => Err(errors.remove(0)),
            _ => Err(Error::Multiple(errors)),
        }
    }

    /// The cached result as JSON in `version`'s layout.
    fn cached_result_value(
        &self,
        list: &NetworkConfigList,
        rt: &RuntimeConf,
        version: SpecVersion,
    ) -> Result<Option<Value>, Error> {
        self.cached_result(list, rt)?
            .map(|s| {
                s.to_value(version).map_err(|e| {
                    Error::Cache(format!(
                        "failed to convert cached result to config version {version}: {e}"
                    ))
                })
            })
            .transpose()
    }

    /// Build one plugin's stdin and run it. `rt` is `None` for GC/STATUS
    /// (then every `CNI_*` attachment variable is empty).
    fn run(
        &self,
        list: &NetworkConfigList,
        plugin: &PluginConf,
        command: Command,
        rt: Option<&RuntimeConf>,
        prev_result: Option<&Value>,
        valid_attachments: Option<&Value>,
    ) -> cni::Result<Vec<u8>> {
        let stdin = plugin_stdin(list, plugin, rt, prev_result, valid_attachments)?;
        let bin = cni::invoke::find_in_path(&plugin.plugin_type, &self.path)?;
        let path = std::env::join_paths(&self.path)
            .map_err(|e| cni::Error::invalid_config(format!("invalid CNI_PATH entry: {e}")))?;
        let cni_args = rt.map(RuntimeConf::cni_args_string).unwrap_or_default();
        let params = cni::invoke::ExecParams {
            container_id: rt.map(|r| r.container_id.as_str()).unwrap_or_default(),
            netns: rt.map(|r| r.netns.as_ref()).unwrap_or_default(),
            ifname: rt.map(|r| r.ifname.as_str()).unwrap_or_default(),
            cni_args: cni_args.as_ref(),
            path: &path,
        };
        cni::invoke::exec_plugin(&bin, command, &params, &stdin)
    }
}

/// The configuration one plugin gets on stdin: its own object with the
/// list's `name` and `cniVersion`, `prevResult` if given, `runtimeConfig`
/// holding the capability arguments it enables (replacing any
/// `runtimeConfig` of the file, as libcni does, when there is at least one),
/// and for GC the valid-attachments list under both key spellings.
///
/// # Errors
/// Code 999 if the JSON cannot be encoded.
pub fn plugin_stdin(
    list: &NetworkConfigList,
    plugin: &PluginConf,
    rt: Option<&RuntimeConf>,
    prev_result: Option<&Value>,
    valid_attachments: Option<&Value>,
) -> cni::Result<Vec<u8>> {
    let mut conf = plugin.raw.clone();
    conf.insert("name".into(), Value::String(list.name.clone()));
    conf.insert("cniVersion".into(), Value::String(list.injected_version()));
    if let Some(prev) = prev_result {
        conf.insert("prevResult".into(), prev.clone());
    }
    if let Some(rt) = rt {
        let rc: Map<String, Value> = plugin
            .enabled_capabilities()
            .filter_map(|cap| {
                rt.capability_args
                    .get(cap)
                    .map(|v| (cap.to_owned(), v.clone()))
            })
            .collect();
        if !rc.is_empty() {
            conf.insert("runtimeConfig".into(), Value::Object(rc));
        }
    }
    if let Some(valid) = valid_attachments {
        conf.insert("cni.dev/valid-attachments".into(), valid.clone());
        conf.insert("cni.dev/attachments".into(), valid.clone());
    }
    serde_json::to_vec(&conf)
        .map_err(|e| cni::Error::internal(format!("cannot encode plugin configuration: {e}")))
}

/// The checks libcni makes before running ADD/DEL/CHECK: a valid container
/// ID, network name and interface name.
fn validate_attachment(list: &NetworkConfigList, rt: &RuntimeConf) -> Result<(), Error> {
    let invalid = |source| Error::Cni {
        context: format!("invalid attachment of network {:?}", list.name),
        source,
    };
    if rt.container_id.is_empty() {
        return Err(invalid(cni::Error::invalid_env("missing containerID")));
    }
    cni::skel::validate_container_id(&rt.container_id).map_err(invalid)?;
    validate_network_name(&list.name).map_err(invalid)?;
    cni::skel::validate_ifname(&rt.ifname).map_err(invalid)?;
    Ok(())
}

/// Network names follow the container ID charset:
/// `^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`.
fn validate_network_name(name: &str) -> cni::Result<()> {
    if name.is_empty() {
        return Err(cni::Error::invalid_config("missing network name"));
    }
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(
            cni::Error::invalid_config("invalid characters found in network name")
                .with_details(name),
        )
    }
}

#[cfg(test)]
mod tests;
