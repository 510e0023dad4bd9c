//! Computes `cni_ipam::host_local::IDENTITY`: a 128-bit digest of everything
//! that decides how host-local behaves, so that `bridge` (which links this
//! library) runs host-local in-process only when the `host-local` binary
//! it finds in `CNI_PATH` was built from the same code the same way
//! (`cni::invoke`, "Built-in delegates"). The `host-local` executable
//! (`plugins/host-local/src/main.rs`) only embeds the note and calls
//! `cni::skel::run` on this library's `HostLocal`: all it runs is hashed.
//!
//! Hashed: the sources and manifests of this package and of the workspace
//! crates it is built from (`crates/ipam`, `crates/cni`), the workspace
//! `Cargo.toml` (profiles, dependency versions, lints) and `Cargo.lock`
//! (exact versions of every external crate), the package name and version,
//! the compiler (`rustc -vV`), the target, the profile settings and the
//! rustflags. Test-only directories (`tests/`, `benches/`, `fuzz/`) are left
//! out: they are not part of the library or the binary.

use std::hash::{DefaultHasher, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Workspace crates host-local is built from, relative to the workspace
/// root. Keep in step with the path dependencies of `Cargo.toml` here and
/// of the crates listed.
const CRATES: [&str; 2] = ["crates/ipam", "crates/cni"];

/// Build settings that change the generated code.
const ENV: [&str; 9] = [
    "CARGO_PKG_NAME",
    "CARGO_PKG_VERSION",
    "TARGET",
    "PROFILE",
    "OPT_LEVEL",
    "DEBUG",
    "CARGO_CFG_DEBUG_ASSERTIONS",
    "CARGO_CFG_PANIC",
    "CARGO_ENCODED_RUSTFLAGS",
];

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let root = manifest.join("../..");

    let mut inputs: Vec<(String, Vec<u8>)> = Vec::new();
    for file in ["Cargo.toml", "Cargo.lock"] {
        add_file(&root, Path::new(file), &mut inputs);
    }
    for krate in CRATES {
        add_file(&root, &Path::new(krate).join("Cargo.toml"), &mut inputs);
        // A missing path given to rerun-if-changed would re-run this script
        // on every build: only existing build scripts are watched.
        let build_rs = Path::new(krate).join("build.rs");
        if root.join(&build_rs).is_file() {
            add_file(&root, &build_rs, &mut inputs);
        }
        add_dir(&root, &Path::new(krate).join("src"), &mut inputs);
    }
    for var in ENV {
        println!("cargo::rerun-if-env-changed={var}");
        let value = std::env::var_os(var).unwrap_or_default();
        inputs.push((format!("env:{var}"), value.into_encoded_bytes()));
    }
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let version = Command::new(rustc)
        .arg("-vV")
        .output()
        .map(|o| o.stdout)
        .unwrap_or_default();
    inputs.push(("rustc -vV".into(), version));
    inputs.sort();

    let digest = digest(&inputs);
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default());
    let text = format!(
        "[{}]\n",
        digest
            .iter()
            .map(|b| format!("0x{b:02x}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if let Err(e) = std::fs::write(out.join("identity.rs"), text) {
        println!("cargo::error=cannot write identity.rs: {e}");
    }
}

/// Records `rel` (relative to `root`) with its contents; a missing file is
/// recorded as missing, so adding it later changes the digest too.
fn add_file(root: &Path, rel: &Path, inputs: &mut Vec<(String, Vec<u8>)>) {
    let path = root.join(rel);
    println!("cargo::rerun-if-changed={}", path.display());
    let name = rel.to_string_lossy().into_owned();
    match std::fs::read(&path) {
        Ok(bytes) => inputs.push((name, bytes)),
        Err(_) => inputs.push((format!("missing:{name}"), Vec::new())),
    }
}

/// Every regular file below `rel`, recursively (cargo re-runs this script
/// when anything in the directory changes).
fn add_dir(root: &Path, rel: &Path, inputs: &mut Vec<(String, Vec<u8>)>) {
    println!("cargo::rerun-if-changed={}", root.join(rel).display());
    let mut stack = vec![rel.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(root.join(&dir)) else {
            inputs.push((format!("unreadable:{}", dir.display()), Vec::new()));
            continue;
        };
        for entry in entries.flatten() {
            let rel = dir.join(entry.file_name());
            match entry.file_type() {
                Ok(t) if t.is_dir() => stack.push(rel),
                Ok(_) => {
                    let bytes = std::fs::read(root.join(&rel)).unwrap_or_default();
                    inputs.push((rel.to_string_lossy().into_owned(), bytes));
                }
                Err(_) => {}
            }
        }
    }
}

/// 128 bits from two independently keyed SipHash runs over the
/// length-prefixed inputs. Not a security boundary (whoever can write to
/// `CNI_PATH` runs code anyway); it only has to tell builds apart, and the
/// compiler version is part of the input, so the hasher's stability across
/// Rust releases does not matter.
fn digest(inputs: &[(String, Vec<u8>)]) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (lane, chunk) in out.chunks_mut(8).enumerate() {
        let mut h = DefaultHasher::new();
        h.write_u64(0x636e_692d_7273_0000 | lane as u64);
        for (name, bytes) in inputs {
            h.write_usize(name.len());
            h.write(name.as_bytes());
            h.write_usize(bytes.len());
            h.write(bytes);
        }
        chunk.copy_from_slice(&h.finish().to_le_bytes());
    }
    out
}
