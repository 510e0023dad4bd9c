//! The dependency rules between workspace packages (ARCHITECTURE.md,
//! "Rules"), checked on `cargo metadata --format-version 1 --no-deps`.

use std::path::PathBuf;

use serde_json::Value;

/// The crates that talk to the kernel and know nothing of CNI: they may
/// depend only on each other among the workspace packages.
pub const KERNEL: [&str; 3] = ["cni-netns", "cni-netlink", "cni-netfilter"];

/// The protocol crate: it depends on no workspace package.
pub const PROTOCOL: &str = "cni";

/// The test-support crate: every package's tests may use it (a `dev` dependency, which
/// the protocol and kernel rules do not count), production code never does.
pub const TEST_SUPPORT: &str = "cni-testsupport";

/// Where a package lives, by its directory under the workspace root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// `crates/<dir>`: a library.
    Crate,
    /// `plugins/<dir>`: a plugin executable.
    Plugin,
    /// `tests/...`, `tools/...` or `bench/...`: test, build and benchmark tooling.
    Tooling,
    /// Anywhere else (no rule names it, so it is reported).
    Other,
}

/// One dependency of a package on a workspace package.
#[derive(Debug, Clone)]
pub struct Edge {
    /// The package depended on.
    pub name: String,
    /// `normal`, `dev` or `build`.
    pub kind: String,
}

/// A workspace package.
#[derive(Debug, Clone)]
pub struct Package {
    /// Package name.
    pub name: String,
    /// Its directory, relative to the workspace root.
    pub dir: PathBuf,
    /// Where it lives.
    pub place: Place,
    /// Its binary targets' names.
    pub bins: Vec<String>,
    /// Its lib and bin target root files (absolute).
    pub roots: Vec<PathBuf>,
    /// Its dependencies on workspace packages.
    pub deps: Vec<Edge>,
}

/// The workspace's packages.
#[derive(Debug, Clone)]
pub struct Workspace {
    packages: Vec<Package>,
}

impl Workspace {
    /// Reads the JSON of `cargo metadata --format-version 1 --no-deps`.
    ///
    /// # Errors
    /// A message when the JSON is not what cargo prints.
    pub fn from_metadata(json: &[u8]) -> Result<Self, String> {
        let v: Value = serde_json::from_slice(json).map_err(|e| e.to_string())?;
        let root = PathBuf::from(v["workspace_root"].as_str().ok_or("no workspace_root")?);
        let list = v["packages"].as_array().ok_or("no packages")?;
        let mut packages = Vec::new();
        for p in list {
            let name = p["name"].as_str().ok_or("package without name")?.to_owned();
            let manifest = PathBuf::from(p["manifest_path"].as_str().ok_or("no manifest_path")?);
            let dir = crate::relative(&root, manifest.parent().unwrap_or(&root));
            let place = match dir.components().next().and_then(|c| c.as_os_str().to_str()) {
                Some("crates") => Place::Crate,
                Some("plugins") => Place::Plugin,
                Some("tests" | "tools" | "bench") => Place::Tooling,
                _ => Place::Other,
            };
            let mut bins = Vec::new();
            let mut roots = Vec::new();
            for t in p["targets"].as_array().into_iter().flatten() {
                let kinds: Vec<&str> = t["kind"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                let src = t["src_path"].as_str().map(PathBuf::from);
                if kinds.contains(&"bin") {
                    bins.extend(t["name"].as_str().map(str::to_owned));
                }
                if kinds.iter().any(|k| matches!(*k, "lib" | "rlib" | "bin")) {
                    roots.extend(src);
                }
            }
            let deps = p["dependencies"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|d| d["path"].is_string())
                .map(|d| Edge {
                    name: d["name"].as_str().unwrap_or_default().to_owned(),
                    kind: d["kind"].as_str().unwrap_or("normal").to_owned(),
                })
                .collect();
            packages.push(Package {
                name,
                dir,
                place,
                bins,
                roots,
                deps,
            });
        }
        Ok(Self { packages })
    }

    /// How many packages.
    pub fn len(&self) -> usize {
        self.packages.len()
    }

    /// The packages under `crates/` and `plugins/` (whose module graphs are
    /// checked).
    pub fn production(&self) -> impl Iterator<Item = &Package> {
        self.packages
            .iter()
            .filter(|p| matches!(p.place, Place::Crate | Place::Plugin))
    }

    fn place_of(&self, name: &str) -> Option<Place> {
        self.packages
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.place)
    }

    /// Every broken rule, one message each.
    pub fn violations(&self) -> Vec<String> {
        let mut out = Vec::new();
        for p in &self.packages {
            let dir = p.dir.display();
            if p.place == Place::Other {
                out.push(format!(
                    "{} ({dir}): a workspace package outside crates/, plugins/, tests/, tools/, bench/",
                    p.name
                ));
            }
            if p.place == Place::Plugin {
                let leaf = p.dir.file_name().and_then(|n| n.to_str()).unwrap_or("");
                if p.name != leaf || !p.bins.iter().any(|b| b == leaf) {
                    out.push(format!(
                        "{} ({dir}): a plugin's package and binary are named after its directory",
                        p.name
                    ));
                }
            }
            for d in &p.deps {
                let to = self.place_of(&d.name);
                let edge = format!("{} ({dir}) -> {} [{}]", p.name, d.name, d.kind);
                if d.name == TEST_SUPPORT {
                    if d.kind != "dev" && matches!(p.place, Place::Crate | Place::Plugin) {
                        out.push(format!(
                            "{edge}: production code uses the test-support crate only in its tests"
                        ));
                    }
                    continue;
                }
                match (p.place, to) {
                    (Place::Plugin, Some(Place::Plugin)) => {
                        out.push(format!("{edge}: a plugin depends on another plugin"));
                    }
                    (Place::Crate, Some(Place::Plugin)) => {
                        out.push(format!("{edge}: a crate depends on a plugin"));
                    }
                    (Place::Crate | Place::Plugin, Some(Place::Tooling)) => {
                        out.push(format!("{edge}: production code depends on test tooling"));
                    }
                    _ => {}
                }
                if p.name == PROTOCOL && to.is_some() {
                    out.push(format!(
                        "{edge}: the protocol crate depends on no workspace package"
                    ));
                }
                if KERNEL.contains(&p.name.as_str())
                    && to.is_some()
                    && !KERNEL.contains(&d.name.as_str())
                {
                    out.push(format!(
                        "{edge}: a kernel crate depends only on kernel crates ({})",
                        KERNEL.join(", ")
                    ));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ws(packages: &[(&str, &str, &[&str])]) -> Workspace {
        let list: Vec<Value> = packages
            .iter()
            .map(|(name, dir, deps)| {
                let leaf = dir.rsplit('/').next().unwrap_or(dir);
                serde_json::json!({
                    "name": name,
                    "manifest_path": format!("/w/{dir}/Cargo.toml"),
                    "targets": [{"kind": ["bin"], "name": leaf, "src_path": format!("/w/{dir}/src/main.rs")}],
                    "dependencies": deps.iter().map(|d| serde_json::json!({"name": d, "kind": null, "path": "/w/x"})).collect::<Vec<_>>(),
                })
            })
            .collect();
        let json = serde_json::json!({"workspace_root": "/w", "packages": list});
        Workspace::from_metadata(json.to_string().as_bytes()).expect("metadata")
    }

    #[test]
    fn allowed_graph_passes() {
        let w = ws(&[
            ("cni", "crates/cni", &[]),
            ("cni-netns", "crates/netns", &[]),
            ("cni-netlink", "crates/netlink", &["cni-netns"]),
            ("cni-ipam", "crates/ipam", &["cni"]),
            (
                "bridge",
                "plugins/bridge",
                &["cni", "cni-ipam", "cni-netlink"],
            ),
            ("cni-tests", "tests", &["cni", "bridge"]),
        ]);
        assert_eq!(w.violations(), Vec::<String>::new());
    }

    #[test]
    fn forbidden_edges_are_reported() {
        let w = ws(&[
            ("cni", "crates/cni", &["cni-netns"]),
            ("cni-netns", "crates/netns", &["cni"]),
            ("cni-ipam", "crates/ipam", &["host-local"]),
            ("host-local", "plugins/host-local", &["cni-tests"]),
            ("bridge", "plugins/bridge", &["host-local"]),
            ("portmap", "plugins/port-map", &[]),
            ("cni-tests", "tests", &[]),
            ("stray", "misc/stray", &[]),
        ]);
        let v = w.violations().join("\n");
        for want in [
            "cni (crates/cni) -> cni-netns [normal]: the protocol crate",
            "cni-netns (crates/netns) -> cni [normal]: a kernel crate",
            "cni-ipam (crates/ipam) -> host-local [normal]: a crate depends on a plugin",
            "host-local (plugins/host-local) -> cni-tests [normal]: production code",
            "bridge (plugins/bridge) -> host-local [normal]: a plugin depends on another plugin",
            "portmap (plugins/port-map): a plugin's package and binary",
            "stray (misc/stray): a workspace package outside",
        ] {
            assert!(v.contains(want), "missing {want:?} in\n{v}");
        }
    }

    #[test]
    fn test_support_only_as_a_dev_dependency_and_bench_is_tooling() {
        let dep = |name: &str, kind: &str| serde_json::json!({"name": name, "kind": if kind == "normal" { Value::Null } else { Value::from(kind) }, "path": "/w/x"});
        let pkg = |name: &str, dir: &str, deps: Vec<Value>| {
            serde_json::json!({"name": name, "manifest_path": format!("/w/{dir}/Cargo.toml"),
                "targets": [{"kind": ["lib"], "name": name, "src_path": format!("/w/{dir}/src/lib.rs")}],
                "dependencies": deps})
        };
        let json = serde_json::json!({"workspace_root": "/w", "packages": [
            pkg("cni", "crates/cni", vec![dep(TEST_SUPPORT, "dev")]),
            pkg("cni-netns", "crates/netns", vec![dep(TEST_SUPPORT, "dev")]),
            pkg(TEST_SUPPORT, "crates/testsupport", vec![dep("cni-netns", "normal")]),
            pkg("cni-ipam", "crates/ipam", vec![dep(TEST_SUPPORT, "normal")]),
            pkg("cni-bench", "bench", vec![dep("cni", "normal")]),
        ]});
        let w = Workspace::from_metadata(json.to_string().as_bytes()).expect("metadata");
        assert_eq!(
            w.violations(),
            [
                "cni-ipam (crates/ipam) -> cni-testsupport [normal]: production code uses the test-support crate only in its tests"
            ]
        );
    }
}
