//! Network configuration lists: parsing, version picking and loading a
//! network by name from a directory, as libcni's `conf.go` does.
//!
//! * `.conflist` files are tried first (sorted by file name), then `.conf` and
//!   `.json` single-plugin files, which are wrapped as a one-plugin list.
//! * Any unreadable or invalid file met while searching fails the load (like
//!   libcni), naming the file.
//! * A list's plugins may also come from `<dir>/<network name>/*.conf` unless
//!   `loadOnlyInlinedPlugins` is true (CNI 1.1).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cni::{SpecVersion, gojson};
use serde_json::{Map, Value};

use crate::Error;

/// One plugin's configuration inside a list, kept raw so that every key the
/// plugin understands reaches it unchanged.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginConf {
    /// `type`: the plugin binary to run.
    pub plugin_type: String,
    /// `name`, if the plugin object carries its own (libcni overwrites it
    /// with the list's name when running the plugin).
    pub name: Option<String>,
    /// `capabilities`: which runtime capability arguments the plugin wants.
    pub capabilities: BTreeMap<String, bool>,
    /// The whole plugin object.
    pub raw: Map<String, Value>,
}

impl PluginConf {
    /// Parse one plugin object.
    ///
    /// # Errors
    /// [`Error::Config`] when it is not an object, has no `type`, or has
    /// `capabilities` that are not a map of booleans.
    pub fn from_value(value: &Value) -> Result<Self, Error> {
        let raw = value
            .as_object()
            .ok_or_else(|| Error::Config("error parsing configuration: not a JSON object".into()))?
            .clone();
        // The plugin object is decoded by libcni into Go structs: its keys
        // match case-insensitively (the list's own keys are map look-ups,
        // case-sensitive, as in libcni).
        let plugin_type = match gojson::get(&raw, "type") {
            Some(Value::String(t)) if !t.is_empty() => t.clone(),
            Some(Value::String(_)) | None => {
                return Err(Error::Config(
                    "error parsing configuration: missing 'type'".into(),
                ));
            }
            Some(other) => {
                return Err(Error::Config(format!(
                    "error parsing configuration: 'type' must be a string, not {other}"
                )));
            }
        };
        let name = match gojson::get(&raw, "name") {
            Some(Value::String(n)) => Some(n.clone()),
            _ => None,
        };
        let capabilities = match gojson::get(&raw, "capabilities") {
            None | Some(Value::Null) => BTreeMap::new(),
            Some(v) => gojson::from_value::<BTreeMap<String, bool>>(v).map_err(|e| {
                Error::Config(format!(
                    "error parsing configuration: invalid 'capabilities' of plugin {plugin_type:?}: {e}"
                ))
            })?,
        };
        Ok(Self {
            plugin_type,
            name,
            capabilities,
            raw,
        })
    }

    /// Parse one plugin configuration from bytes (a `.conf` file).
    ///
    /// # Errors
    /// As [`PluginConf::from_value`], or invalid JSON.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let v: Value = gojson::parse_slice(bytes)
            .map_err(|e| Error::Config(format!("error parsing configuration: {e}")))?;
        Self::from_value(&v)
    }

    /// `type="bridge" name="mynet"`, as libcni describes a plugin in errors.
    pub fn description(&self) -> String {
        match &self.name {
            Some(n) if !n.is_empty() => format!("type={:?} name={n:?}", self.plugin_type),
            _ => format!("type={:?}", self.plugin_type),
        }
    }

    /// The capabilities the plugin enables (value `true`).
    pub fn enabled_capabilities(&self) -> impl Iterator<Item = &str> {
        self.capabilities
            .iter()
            .filter(|(_, on)| **on)
            .map(|(k, _)| k.as_str())
    }
}

/// A network configuration list (`.conflist`), or a single `.conf` wrapped
/// as a one-plugin list.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkConfigList {
    /// The network name (copied into every plugin's config).
    pub name: String,
    /// The version the runtime will use, picked from `cniVersion` and
    /// `cniVersions` (the highest not newer than [`cni::version::LATEST`]);
    /// empty when the list names none (then 0.1.0 applies).
    pub cni_version: String,
    /// `disableCheck`: CHECK succeeds without running the plugins.
    pub disable_check: bool,
    /// `disableGC`: GC does nothing.
    pub disable_gc: bool,
    /// `loadOnlyInlinedPlugins`: do not read `<dir>/<name>/*.conf`.
    pub load_only_inlined_plugins: bool,
    /// The plugins, in ADD order.
    pub plugins: Vec<PluginConf>,
    /// The bytes the list was parsed from (cached with each attachment).
    pub bytes: Vec<u8>,
}

impl NetworkConfigList {
    /// Parse a configuration list. Plugins are not required here (they may
    /// come from files, see [`NetworkConfigList::from_file`]).
    ///
    /// # Errors
    /// [`Error::Config`] for invalid JSON, a missing or non-string `name`, an
    /// unparseable `cniVersions` entry, a non-boolean flag, or an invalid
    /// plugin.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let bad = |m: String| Error::Config(format!("error parsing configuration list: {m}"));
        let raw: Map<String, Value> = gojson::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        let name = match raw.get("name") {
            Some(Value::String(n)) => n.clone(),
            Some(other) => return Err(bad(format!("invalid name type: {other}"))),
            None => return Err(bad("no name".into())),
        };
        let mut cni_version = match raw.get("cniVersion") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(v)) => v.clone(),
            Some(other) => return Err(bad(format!("invalid cniVersion type: {other}"))),
        };
        if let Some(versions) = raw.get("cniVersions") {
            cni_version = pick_version(&cni_version, versions).map_err(bad)?;
        }
        let read_bool = |key: &str| -> Result<bool, Error> {
            match raw.get(key) {
                None | Some(Value::Null) => Ok(false),
                Some(Value::Bool(b)) => Ok(*b),
                Some(Value::String(s)) => match s.to_ascii_lowercase().as_str() {
                    "true" => Ok(true),
                    "false" => Ok(false),
                    _ => Err(bad(format!("invalid value {s:?} for {key}"))),
                },
                Some(other) => Err(bad(format!("invalid type for {key}: {other}"))),
            }
        };
        let disable_check = read_bool("disableCheck")?;
        let disable_gc = read_bool("disableGC")?;
        let load_only_inlined_plugins = read_bool("loadOnlyInlinedPlugins")?;
        let plugins = match raw.get("plugins") {
            None if load_only_inlined_plugins => {
                return Err(bad(
                    "`loadOnlyInlinedPlugins` is true, and no 'plugins' key".into(),
                ));
            }
            None => Vec::new(),
            Some(Value::Array(list)) if list.is_empty() => {
                return Err(bad("no plugins in list".into()));
            }
            Some(Value::Array(list)) => list
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    PluginConf::from_value(p).map_err(|e| {
                        Error::Config(format!("failed to parse plugin config {i}: {e}"))
                    })
                })
                .collect::<Result<_, _>>()?,
            Some(other) => return Err(bad(format!("invalid 'plugins' type: {other}"))),
        };
        Ok(Self {
            name,
            cni_version,
            disable_check,
            disable_gc,
            load_only_inlined_plugins,
            plugins,
            bytes: bytes.to_vec(),
        })
    }

    /// Read a `.conflist` file, adding the plugins of `<dir>/<name>/*.conf`
    /// unless `loadOnlyInlinedPlugins`.
    ///
    /// # Errors
    /// [`Error::Io`] when a file cannot be read, [`Error::Config`] when it is
    /// invalid or the list ends up with no plugin.
    pub fn from_file(path: &Path) -> Result<Self, Error> {
        let bytes = read(path)?;
        let mut list = Self::from_bytes(&bytes)
            .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        if !list.load_only_inlined_plugins {
            let dir = path
                .parent()
                .unwrap_or_else(|| Path::new("."))
                .join(&list.name);
            for file in conf_files(&dir, &["conf"])? {
                let plugin = PluginConf::from_bytes(&read(&file)?)
                    .map_err(|e| Error::Config(format!("{}: {e}", file.display())))?;
                list.plugins.push(plugin);
            }
        }
        if list.plugins.is_empty() {
            return Err(Error::Config(format!(
                "{}: no plugin configs found",
                path.display()
            )));
        }
        Ok(list)
    }

    /// Wrap a single plugin configuration (a `.conf` / `.json` file) as a
    /// one-plugin list, as libcni's `ConfListFromConf` does.
    ///
    /// # Errors
    /// [`Error::Config`] when the plugin config has no string `name`.
    pub fn from_plugin_conf(plugin: PluginConf) -> Result<Self, Error> {
        let name = plugin
            .name
            .clone()
            .ok_or_else(|| Error::Config("error parsing configuration list: no name".into()))?;
        let mut wrapper = Map::new();
        wrapper.insert("name".into(), Value::String(name));
        if let Some(v) = gojson::get(&plugin.raw, "cniVersion") {
            wrapper.insert("cniVersion".into(), v.clone());
        }
        wrapper.insert(
            "plugins".into(),
            Value::Array(vec![Value::Object(plugin.raw.clone())]),
        );
        let bytes = serde_json::to_vec(&wrapper)
            .map_err(|e| Error::Config(format!("cannot encode configuration list: {e}")))?;
        Self::from_bytes(&bytes)
    }

    /// The version as a [`SpecVersion`] (0.1.0 when the list names none).
    ///
    /// # Errors
    /// [`Error::Config`] when `cniVersion` is not `MAJOR.MINOR.PATCH`.
    pub fn version(&self) -> Result<SpecVersion, Error> {
        if self.cni_version.is_empty() {
            return Ok(cni::version::V0_1_0);
        }
        self.cni_version
            .parse()
            .map_err(|e: cni::Error| Error::Config(format!("network {:?}: {}", self.name, e.msg)))
    }

    /// The version string injected into each plugin's configuration.
    pub(crate) fn injected_version(&self) -> String {
        if self.cni_version.is_empty() {
            cni::version::V0_1_0.to_string()
        } else {
            self.cni_version.clone()
        }
    }
}

/// libcni's version pick: among `cniVersions` (and `cniVersion`, if set),
/// ignore versions newer than the newest implemented one and take the
/// highest. Malformed entries are errors.
fn pick_version(cni_version: &str, versions: &Value) -> Result<String, String> {
    let list = versions
        .as_array()
        .ok_or_else(|| format!("invalid type for cniVersions: {versions}"))?;
    let latest = cni::version::LATEST;
    let mut candidates: Vec<(SpecVersion, String)> = Vec::new();
    for (i, v) in list.iter().enumerate() {
        let s = v
            .as_str()
            .ok_or_else(|| format!("invalid type for cniVersions index {i}: {v}"))?;
        let parsed: SpecVersion = s.parse().map_err(|e: cni::Error| {
            format!("invalid cniVersions entry {s} at index {i}: {}", e.msg)
        })?;
        if parsed <= latest {
            candidates.push((parsed, s.to_owned()));
        }
    }
    if !cni_version.is_empty() {
        let parsed: SpecVersion = cni_version
            .parse()
            .map_err(|e: cni::Error| format!("invalid cniVersion {cni_version}: {}", e.msg))?;
        if parsed <= latest {
            candidates.push((parsed, cni_version.to_owned()));
        }
    }
    Ok(candidates
        .into_iter()
        .max_by_key(|(v, _)| *v)
        .map(|(_, s)| s)
        .unwrap_or_else(|| cni_version.to_owned()))
}

fn read(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| Error::Io {
        what: format!("error reading {}", path.display()),
        source: e,
    })
}

/// The files of `dir` (not directories) whose extension is one of
/// `extensions` (without the dot), sorted by name. A missing directory has
/// no files.
///
/// # Errors
/// [`Error::Io`] when the directory exists but cannot be read.
pub fn conf_files(dir: &Path, extensions: &[&str]) -> Result<Vec<PathBuf>, Error> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(Error::Io {
                what: format!("cannot read {}", dir.display()),
                source: e,
            });
        }
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::Io {
            what: format!("cannot read {}", dir.display()),
            source: e,
        })?;
        let path = entry.path();
        if path.is_dir() {
            continue;
        }
        if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| extensions.contains(&e))
        {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Load the network called `name` from `dir`: the first `.conflist` (by
/// file name) with that name, else the first `.conf` / `.json` with that
/// name wrapped as a one-plugin list.
///
/// # Errors
/// [`Error::NoConfigs`] when `dir` holds no configuration at all,
/// [`Error::NotFound`] when none has that name, or the error of the first
/// invalid file met.
pub fn load_network(dir: &Path, name: &str) -> Result<NetworkConfigList, Error> {
    let lists = conf_files(dir, &["conflist"])?;
    for file in &lists {
        let list = NetworkConfigList::from_file(file)?;
        if list.name == name {
            return Ok(list);
        }
    }
    let singles = conf_files(dir, &["conf", "json"])?;
    if lists.is_empty() && singles.is_empty() {
        return Err(Error::NoConfigs(dir.to_path_buf()));
    }
    for file in &singles {
        let plugin = PluginConf::from_bytes(&read(file)?)
            .map_err(|e| Error::Config(format!("{}: {e}", file.display())))?;
        if plugin.name.as_deref() == Some(name) {
            return NetworkConfigList::from_plugin_conf(plugin)
                .map_err(|e| Error::Config(format!("{}: {e}", file.display())));
        }
    }
    Err(Error::NotFound {
        dir: dir.to_path_buf(),
        name: name.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `content` to `dir/name`.
    fn write(dir: &Path, name: &str, content: &str) {
        std::fs::write(dir.join(name), content).unwrap();
    }

    /// A temporary configuration directory holding `files` (name, content); a name
    /// may have one subdirectory.
    fn conf_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, content) in files {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, content).unwrap();
        }
        dir
    }

    fn list(json: &str) -> NetworkConfigList {
        NetworkConfigList::from_bytes(json.as_bytes()).unwrap()
    }

    #[test]
    fn parses_flags_and_plugins() {
        let l = list(
            r#"{"name":"n","cniVersion":"1.0.0","disableCheck":"TRUE","disableGC":true,
               "plugins":[{"type":"bridge","capabilities":{"mac":false,"ips":true}},{"type":"portmap","name":"pm"}]}"#,
        );
        assert_eq!(l.name, "n");
        assert_eq!(l.cni_version, "1.0.0");
        assert!(l.disable_check && l.disable_gc);
        assert_eq!(l.plugins.len(), 2);
        assert_eq!(
            l.plugins[0].enabled_capabilities().collect::<Vec<_>>(),
            ["ips"]
        );
        assert_eq!(l.plugins[0].description(), r#"type="bridge""#);
        assert_eq!(l.plugins[1].description(), r#"type="portmap" name="pm""#);
        assert_eq!(l.version().unwrap(), cni::version::V1_0_0);
    }

    #[test]
    fn plugin_keys_match_as_go_and_list_keys_exactly() {
        // A plugin object is decoded into libcni's Go structs (case-insensitive keys);
        // the list's own keys are map look-ups (exact), as in libcni.
        let l = list(
            r#"{"name":"n","cniVersion":"1.0.0","DisableCheck":true,
               "plugins":[{"TYPE":"bridge","Name":"b","Capabilities":{"portMappings":true,"IPs":true}}]}"#,
        );
        assert!(!l.disable_check);
        let p = &l.plugins[0];
        assert_eq!(p.plugin_type, "bridge");
        assert_eq!(p.name.as_deref(), Some("b"));
        assert_eq!(
            p.enabled_capabilities().collect::<Vec<_>>(),
            ["IPs", "portMappings"],
            "capability names are map keys: kept as written"
        );
        let single =
            PluginConf::from_bytes(br#"{"CNIVersion":"0.4.0","NAME":"one","Type":"x"}"#).unwrap();
        let wrapped = NetworkConfigList::from_plugin_conf(single).unwrap();
        assert_eq!(
            (wrapped.name.as_str(), wrapped.cni_version.as_str()),
            ("one", "0.4.0")
        );
    }

    #[test]
    fn rejects_invalid_lists() {
        for (json, want) in [
            (r#"{"plugins":[{"type":"x"}]}"#, "no name"),
            (r#"{"name":1}"#, "invalid name type"),
            (r#"{"name":"n","plugins":[]}"#, "no plugins in list"),
            (r#"{"name":"n","plugins":[{"name":"x"}]}"#, "missing 'type'"),
            (r#"{"name":"n","plugins":{}}"#, "invalid 'plugins' type"),
            (
                r#"{"name":"n","disableCheck":"yes"}"#,
                "invalid value \"yes\"",
            ),
            (
                r#"{"name":"n","cniVersions":["1.0"]}"#,
                "invalid cniVersions entry",
            ),
            (
                r#"{"name":"n","cniVersions":"1.0.0"}"#,
                "invalid type for cniVersions",
            ),
            (
                r#"{"name":"n","plugins":[{"type":"x","capabilities":{"a":"yes"}}]}"#,
                "invalid 'capabilities'",
            ),
            ("not json", "error parsing configuration list"),
        ] {
            let e = NetworkConfigList::from_bytes(json.as_bytes()).unwrap_err();
            assert!(e.to_string().contains(want), "{json}: {e}");
        }
    }

    #[test]
    fn picks_highest_supported_version() {
        // Newer than what we implement is ignored; cniVersion takes part.
        let l =
            list(r#"{"name":"n","cniVersion":"0.4.0","cniVersions":["1.0.0","9.9.9","0.3.1"]}"#);
        assert_eq!(l.cni_version, "1.0.0");
        let l = list(r#"{"name":"n","cniVersion":"1.1.0","cniVersions":["1.0.0"]}"#);
        assert_eq!(l.cni_version, "1.1.0");
        let l = list(r#"{"name":"n","cniVersions":["1.1.0","0.4.0"]}"#);
        assert_eq!(l.cni_version, "1.1.0");
        // Only unsupported entries: nothing to pick, cniVersion stays.
        let l = list(r#"{"name":"n","cniVersion":"2.0.0","cniVersions":["3.0.0"]}"#);
        assert_eq!(l.cni_version, "2.0.0");
        // Without any version: 0.1.0 applies.
        let l = list(r#"{"name":"n"}"#);
        assert_eq!(l.cni_version, "");
        assert_eq!(l.version().unwrap(), cni::version::V0_1_0);
        assert_eq!(l.injected_version(), "0.1.0");
    }

    #[test]
    fn loads_by_name_conflist_before_conf() {
        let dir = conf_dir(&[
            (
                "10-a.conflist",
                r#"{"name":"a","cniVersion":"1.0.0","plugins":[{"type":"bridge"}]}"#,
            ),
            (
                "20-b.conf",
                r#"{"name":"b","cniVersion":"0.4.0","type":"bridge","bridge":"br9"}"#,
            ),
            (
                "05-a.json",
                r#"{"name":"a","cniVersion":"0.3.1","type":"other"}"#,
            ),
            ("notes.txt", "ignored"),
        ]);
        let d = dir.path();
        let a = load_network(d, "a").unwrap();
        assert_eq!(a.plugins[0].plugin_type, "bridge");
        let b = load_network(d, "b").unwrap();
        assert_eq!(b.cni_version, "0.4.0");
        assert_eq!(b.plugins.len(), 1);
        assert_eq!(b.plugins[0].raw["bridge"], "br9");
        let wrapped: Value = serde_json::from_slice(&b.bytes).unwrap();
        assert_eq!(wrapped["name"], "b");
        assert_eq!(wrapped["plugins"][0]["type"], "bridge");
        let e = load_network(d, "zzz").unwrap_err();
        assert!(matches!(e, Error::NotFound { .. }), "{e}");
        assert_eq!(
            e.to_string(),
            format!("no net configuration with name \"zzz\" in {}", d.display())
        );
    }

    #[test]
    fn empty_or_missing_dir_reports_no_configs() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            load_network(dir.path(), "x").unwrap_err(),
            Error::NoConfigs(_)
        ));
        assert!(matches!(
            load_network(&dir.path().join("missing"), "x").unwrap_err(),
            Error::NoConfigs(_)
        ));
    }

    #[test]
    fn invalid_file_fails_the_load_with_its_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("00-bad.conflist"), "{").unwrap();
        let e = load_network(dir.path(), "x").unwrap_err();
        assert!(e.to_string().contains("00-bad.conflist"), "{e}");
    }

    #[test]
    fn plugins_from_network_subdirectory() {
        let dir = conf_dir(&[
            (
                "n.conflist",
                r#"{"name":"n","cniVersion":"1.1.0","plugins":[{"type":"bridge"}]}"#,
            ),
            ("n/20-pm.conf", r#"{"type":"portmap"}"#),
            ("n/10-fw.conf", r#"{"type":"firewall"}"#),
        ]);
        let d = dir.path();
        let l = load_network(d, "n").unwrap();
        let types: Vec<_> = l.plugins.iter().map(|p| p.plugin_type.as_str()).collect();
        assert_eq!(types, ["bridge", "firewall", "portmap"]);

        write(
            d,
            "n.conflist",
            r#"{"name":"n","cniVersion":"1.1.0","loadOnlyInlinedPlugins":true,"plugins":[{"type":"bridge"}]}"#,
        );
        assert_eq!(load_network(d, "n").unwrap().plugins.len(), 1);

        write(d, "m.conflist", r#"{"name":"m","cniVersion":"1.1.0"}"#);
        let e = load_network(d, "m").unwrap_err();
        assert!(e.to_string().contains("no plugin configs found"), "{e}");
    }
}
