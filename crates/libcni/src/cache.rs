//! The result cache, in libcni's on-disk format, so that a runtime using
//! upstream libcni and this crate can read each other's entries.
//!
//! One JSON file per attachment at
//! `<cache dir>/results/<network name>-<container ID>-<ifname>`:
//!
//! ```json
//! {"kind":"cniCacheV1","containerId":"…","config":"<base64 of the list bytes>",
//!  "ifName":"eth0","networkName":"…","netns":"/run/netns/x",
//!  "cniArgs":[["K","V"]],"capabilityArgs":{…},"result":{…}}
//! ```
//!
//! `netns`, `cniArgs`, `capabilityArgs` and `result` are omitted when empty.
//! Directories are created with mode 0700 and files with 0600 (as libcni);
//! files are written to a temporary name and renamed into place.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::Error;
use crate::codec::{base64_decode, base64_encode};

/// The `kind` of a version 1 cache entry.
pub const CACHE_KIND_V1: &str = "cniCacheV1";

/// One cached attachment, as stored on disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheEntry {
    /// Always [`CACHE_KIND_V1`].
    pub kind: String,
    /// The container ID.
    #[serde(rename = "containerId")]
    pub container_id: String,
    /// The network configuration list bytes the attachment was made with.
    #[serde(serialize_with = "ser_base64", deserialize_with = "de_base64", default)]
    pub config: Vec<u8>,
    /// The interface name inside the container.
    #[serde(rename = "ifName")]
    pub ifname: String,
    /// The network name.
    #[serde(rename = "networkName")]
    pub network_name: String,
    /// The netns path given at ADD.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub netns: String,
    /// `CNI_ARGS` pairs given at ADD.
    #[serde(
        rename = "cniArgs",
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "de_null_default"
    )]
    pub cni_args: Vec<(String, String)>,
    /// Capability arguments given at ADD.
    #[serde(
        rename = "capabilityArgs",
        default,
        skip_serializing_if = "Map::is_empty",
        deserialize_with = "de_null_default"
    )]
    pub capability_args: Map<String, Value>,
    /// The ADD result of the whole list, in the list's version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
}

fn ser_base64<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&base64_encode(bytes))
}

fn de_base64<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    match Option::<String>::deserialize(d)? {
        None => Ok(Vec::new()),
        Some(s) => base64_decode(&s).map_err(serde::de::Error::custom),
    }
}

fn de_null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// The result cache rooted at a cache directory (libcni's `CacheDir`,
/// `/var/lib/cni` by default).
#[derive(Debug, Clone)]
pub struct ResultCache {
    dir: PathBuf,
}

impl ResultCache {
    /// A cache rooted at `dir`; entries live in `dir/results`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The cache root.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `<dir>/results`.
    pub fn results_dir(&self) -> PathBuf {
        self.dir.join("results")
    }

    /// The file of one attachment.
    ///
    /// # Errors
    /// [`Error::Cache`] when a part is empty or contains `/` (it would
    /// escape the cache directory).
    pub fn path(&self, network: &str, container_id: &str, ifname: &str) -> Result<PathBuf, Error> {
        if network.is_empty() || container_id.is_empty() || ifname.is_empty() {
            return Err(Error::Cache(format!(
                "cache file path requires network name ({network:?}), container ID ({container_id:?}), and interface name ({ifname:?})"
            )));
        }
        if [network, container_id, ifname]
            .iter()
            .any(|p| p.contains('/') || *p == "." || *p == "..")
        {
            return Err(Error::Cache(format!(
                "invalid cache key: network {network:?}, container ID {container_id:?}, interface {ifname:?}"
            )));
        }
        Ok(self
            .results_dir()
            .join(format!("{network}-{container_id}-{ifname}")))
    }

    /// Write (or replace) an entry.
    ///
    /// # Errors
    /// [`Error::Io`] when the directory or file cannot be written.
    pub fn store(&self, entry: &CacheEntry) -> Result<(), Error> {
        let path = self.path(&entry.network_name, &entry.container_id, &entry.ifname)?;
        let dir = self.results_dir();
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| io_err(format!("cannot create {}", dir.display()), e))?;
        let bytes = serde_json::to_vec(entry)
            .map_err(|e| Error::Cache(format!("cannot encode cache entry: {e}")))?;
        let tmp = dir.join(format!(
            ".tmp-{}-{}",
            std::process::id(),
            path.file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default()
        ));
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io_err(format!("cannot write {}", path.display()), e)
        })
    }

    /// Read an entry. `Ok(None)` when there is none. A file that is not a
    /// version 1 entry but holds a bare result (the pre-1.0 libcni format)
    /// is returned with only `result` set.
    ///
    /// # Errors
    /// [`Error::Cache`] when the file exists but cannot be decoded.
    pub fn load(
        &self,
        network: &str,
        container_id: &str,
        ifname: &str,
    ) -> Result<Option<CacheEntry>, Error> {
        let path = self.path(network, container_id, ifname)?;
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(format!("cannot read {}", path.display()), e)),
        };
        if let Ok(entry) = cni::gojson::from_slice::<CacheEntry>(&bytes)
            && entry.kind == CACHE_KIND_V1
        {
            return Ok(Some(entry));
        }
        // Legacy: the file is the result itself.
        let legacy: Value = serde_json::from_slice(&bytes).map_err(|e| {
            Error::Cache(format!(
                "failed to unmarshal cached network {network:?} result {}: {e}",
                path.display()
            ))
        })?;
        if legacy.get("kind").is_some() {
            return Err(Error::Cache(format!(
                "cached network {network:?} entry {} has wrong kind: {}",
                path.display(),
                legacy["kind"]
            )));
        }
        Ok(Some(CacheEntry {
            kind: String::new(),
            container_id: container_id.to_owned(),
            config: Vec::new(),
            ifname: ifname.to_owned(),
            network_name: network.to_owned(),
            netns: String::new(),
            cni_args: Vec::new(),
            capability_args: Map::new(),
            result: Some(legacy),
        }))
    }

    /// Delete an entry; a missing entry is not an error.
    ///
    /// # Errors
    /// [`Error::Io`] when the file exists but cannot be removed.
    pub fn remove(&self, network: &str, container_id: &str, ifname: &str) -> Result<(), Error> {
        let path = self.path(network, container_id, ifname)?;
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(format!("cannot remove {}", path.display()), e)),
        }
    }

    /// Every valid version 1 entry, sorted by file name, optionally only
    /// those of one container. Unreadable or foreign files are skipped (as
    /// libcni does). A missing results directory has no entries.
    ///
    /// # Errors
    /// [`Error::Io`] when the results directory cannot be listed.
    pub fn entries(&self, container_id: Option<&str>) -> Result<Vec<CacheEntry>, Error> {
        let dir = self.results_dir();
        let read = match std::fs::read_dir(&dir) {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(format!("cannot list {}", dir.display()), e)),
        };
        let mut names: Vec<PathBuf> = read.filter_map(|e| e.ok().map(|e| e.path())).collect();
        names.sort();
        let mut out = Vec::new();
        for path in names {
            if path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            {
                continue;
            }
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            let Ok(entry) = cni::gojson::from_slice::<CacheEntry>(&bytes) else {
                continue;
            };
            if entry.kind != CACHE_KIND_V1
                || entry.ifname.is_empty()
                || entry.network_name.is_empty()
                || container_id.is_some_and(|c| c != entry.container_id)
            {
                continue;
            }
            out.push(entry);
        }
        Ok(out)
    }
}

fn io_err(what: String, source: std::io::Error) -> Error {
    Error::Io { what, source }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn entry() -> CacheEntry {
        let mut caps = Map::new();
        caps.insert(
            "portMappings".into(),
            serde_json::json!([{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]),
        );
        CacheEntry {
            kind: CACHE_KIND_V1.into(),
            container_id: "ctr1".into(),
            config: br#"{"name":"net1"}"#.to_vec(),
            ifname: "eth0".into(),
            network_name: "net1".into(),
            netns: "/run/netns/x".into(),
            cni_args: vec![("K8S_POD_NAME".into(), "p".into())],
            capability_args: caps,
            result: Some(serde_json::json!({"cniVersion": "1.0.0", "ips": []})),
        }
    }

    #[test]
    fn on_disk_layout_matches_libcni() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ResultCache::new(dir.path());
        cache.store(&entry()).unwrap();
        let file = dir.path().join("results/net1-ctr1-eth0");
        let raw: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        assert_eq!(
            raw,
            serde_json::json!({
                "kind": "cniCacheV1",
                "containerId": "ctr1",
                "config": "eyJuYW1lIjoibmV0MSJ9",
                "ifName": "eth0",
                "networkName": "net1",
                "netns": "/run/netns/x",
                "cniArgs": [["K8S_POD_NAME", "p"]],
                "capabilityArgs": {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]},
                "result": {"cniVersion": "1.0.0", "ips": []}
            })
        );
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&file), 0o600);
        assert_eq!(mode(&dir.path().join("results")), 0o700);
        assert_eq!(
            cache.load("net1", "ctr1", "eth0").unwrap().unwrap(),
            entry()
        );
    }

    #[test]
    fn empty_optional_fields_are_omitted_and_null_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ResultCache::new(dir.path());
        let mut e = entry();
        e.netns.clear();
        e.cni_args.clear();
        e.capability_args.clear();
        cache.store(&e).unwrap();
        let text = std::fs::read_to_string(dir.path().join("results/net1-ctr1-eth0")).unwrap();
        for key in ["netns", "cniArgs", "capabilityArgs"] {
            assert!(!text.contains(key), "{key} in {text}");
        }
        // As written by Go for nil slices/maps when a field is not omitempty.
        std::fs::write(
            dir.path().join("results/net1-ctr2-eth0"),
            r#"{"kind":"cniCacheV1","containerId":"ctr2","config":null,"ifName":"eth0","networkName":"net1","cniArgs":null,"capabilityArgs":null}"#,
        )
        .unwrap();
        let got = cache.load("net1", "ctr2", "eth0").unwrap().unwrap();
        assert!(got.config.is_empty() && got.cni_args.is_empty() && got.result.is_none());
    }

    #[test]
    fn legacy_bare_result_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ResultCache::new(dir.path());
        std::fs::create_dir_all(cache.results_dir()).unwrap();
        std::fs::write(
            cache.results_dir().join("n-c-eth0"),
            r#"{"cniVersion":"0.3.1","ips":[{"version":"4","address":"10.0.0.2/24"}]}"#,
        )
        .unwrap();
        let e = cache.load("n", "c", "eth0").unwrap().unwrap();
        assert_eq!(e.result.unwrap()["cniVersion"], "0.3.1");
        std::fs::write(cache.results_dir().join("n-c-eth1"), r#"{"kind":"v9"}"#).unwrap();
        assert!(
            cache
                .load("n", "c", "eth1")
                .unwrap_err()
                .to_string()
                .contains("wrong kind")
        );
        std::fs::write(cache.results_dir().join("n-c-eth2"), "garbage").unwrap();
        assert!(cache.load("n", "c", "eth2").is_err());
    }

    #[test]
    fn missing_entry_and_remove_are_fine() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ResultCache::new(dir.path());
        assert!(cache.load("n", "c", "eth0").unwrap().is_none());
        cache.remove("n", "c", "eth0").unwrap();
        assert!(cache.entries(None).unwrap().is_empty());
        cache.store(&entry()).unwrap();
        cache.remove("net1", "ctr1", "eth0").unwrap();
        assert!(cache.load("net1", "ctr1", "eth0").unwrap().is_none());
    }

    #[test]
    fn bad_keys_are_rejected() {
        let cache = ResultCache::new("/nonexistent");
        assert!(cache.path("", "c", "eth0").is_err());
        assert!(cache.path("n", "../../etc", "eth0").is_err());
        assert!(cache.path("n", "c", "..").is_err());
    }

    #[test]
    fn entries_filter_by_container_and_skip_junk() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ResultCache::new(dir.path());
        cache.store(&entry()).unwrap();
        let mut other = entry();
        other.container_id = "ctr2".into();
        other.ifname = "net1".into();
        cache.store(&other).unwrap();
        std::fs::write(cache.results_dir().join("junk"), "not json").unwrap();
        std::fs::write(
            cache.results_dir().join("legacy"),
            r#"{"cniVersion":"0.4.0"}"#,
        )
        .unwrap();
        let all = cache.entries(None).unwrap();
        assert_eq!(all.len(), 2);
        let one = cache.entries(Some("ctr2")).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].ifname, "net1");
    }
}
