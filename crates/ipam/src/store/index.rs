//! The reservation index of a [`super::DiskStore`]: which container owns each
//! reservation file, keyed by file name and inode number.
//!
//! File `<dataDir>/.host-local-index.<network>`, text:
//!
//! ```text
//! host-local-index 1 <dir inode> <dir mtime seconds> <dir mtime nanoseconds>
//! <inode> <file name> <content as lowercase hex>
//! ```
//!
//! The header records the network directory as it was when the index was
//! written (by the lock holder, after its last change). Entries are trusted
//! only while the directory still has that inode and modification time, and
//! then only for a file that still has the recorded name and inode number;
//! new files are read. Once anyone else (the reference, an older version of
//! ours) has changed the directory, its time differs and every file is read
//! again: inode numbers alone are not enough, a file removed and created
//! again can get the same one. The reference creates reservation files with
//! `O_EXCL` and never rewrites one in place. The index is a cache: deleting
//! it only costs one full read.

use std::collections::BTreeMap;

/// Prefix of the index file name (followed by the network name).
pub(crate) const FILE_PREFIX: &str = ".host-local-index.";
const HEADER: &str = "host-local-index 1";

/// The network directory's identity and modification time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct DirStamp {
    /// Inode number of the directory.
    pub ino: u64,
    /// Modification time, seconds.
    pub mtime: i64,
    /// Modification time, nanoseconds.
    pub mtime_nsec: i64,
}

/// File name -> (inode, file content), and the directory stamp it matches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Index {
    /// The directory as it was when the index was written.
    pub stamp: DirStamp,
    entries: BTreeMap<String, (u64, String)>,
}

impl Index {
    /// Parses an index file; `None` when it is not one (wrong header or a
    /// malformed line).
    pub(crate) fn parse(text: &str) -> Option<Self> {
        let mut lines = text.lines();
        let header = lines.next()?.strip_prefix(HEADER)?.strip_prefix(' ')?;
        let mut h = header.split(' ');
        let stamp = DirStamp {
            ino: h.next()?.parse().ok()?,
            mtime: h.next()?.parse().ok()?,
            mtime_nsec: h.next()?.parse().ok()?,
        };
        if h.next().is_some() {
            return None;
        }
        let mut entries = BTreeMap::new();
        for line in lines.filter(|l| !l.is_empty()) {
            let mut parts = line.split(' ');
            let ino = parts.next()?.parse::<u64>().ok()?;
            let name = parts.next()?;
            let content = unhex(parts.next()?)?;
            if parts.next().is_some() || name.is_empty() {
                return None;
            }
            entries.insert(name.to_string(), (ino, content));
        }
        Some(Self { stamp, entries })
    }

    /// The index file's text.
    pub(crate) fn render(&self) -> String {
        let mut out = String::with_capacity(32 + self.entries.len() * 64);
        let st = self.stamp;
        out.push_str(&format!(
            "{HEADER} {} {} {}\n",
            st.ino, st.mtime, st.mtime_nsec
        ));
        for (name, (ino, content)) in &self.entries {
            out.push_str(&format!("{ino} {name} {}\n", hex(content)));
        }
        out
    }

    /// The recorded content of `name` if its inode is still `ino`.
    pub(crate) fn get(&self, name: &str, ino: u64) -> Option<&str> {
        match self.entries.get(name) {
            Some((i, c)) if *i == ino => Some(c),
            _ => None,
        }
    }

    /// Records (or replaces) an entry.
    pub(crate) fn insert(&mut self, name: String, ino: u64, content: String) {
        self.entries.insert(name, (ino, content));
    }

    /// Forgets an entry; true when there was one.
    pub(crate) fn remove(&mut self, name: &str) -> bool {
        self.entries.remove(name).is_some()
    }

    /// Number of entries.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<String> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let bytes = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_inode_check() {
        let mut idx = Index {
            stamp: DirStamp {
                ino: 9,
                mtime: 1_700_000_000,
                mtime_nsec: 123,
            },
            ..Index::default()
        };
        idx.insert("10.1.2.2".into(), 42, "ctr-a\r\neth0".into());
        idx.insert("2001:db8::2".into(), 7, "legacy id with spaces".into());
        let back = Index::parse(&idx.render()).expect("parses");
        assert_eq!(back, idx);
        assert_eq!(back.get("10.1.2.2", 42), Some("ctr-a\r\neth0"));
        assert_eq!(back.get("10.1.2.2", 43), None, "replaced file");
        assert_eq!(back.get("10.1.2.3", 42), None, "unknown file");
        assert_eq!(back.len(), 2);
        let mut m = back;
        assert!(m.remove("10.1.2.2"));
        assert!(!m.remove("10.1.2.2"));
    }

    #[test]
    fn malformed_files_are_rejected() {
        for text in [
            "",
            "something else\n",
            "host-local-index 2 1 2 3\n",
            "host-local-index 1\n",
            "host-local-index 1 1 2\n",
            "host-local-index 1 1 2 3 4\n",
            "host-local-index 1 1 2 3\nx 10.1.2.2 6162\n",
            "host-local-index 1 1 2 3\n1 10.1.2.2 616\n",
            "host-local-index 1 1 2 3\n1 10.1.2.2 zz\n",
            "host-local-index 1 1 2 3\n1 10.1.2.2 61 extra\n",
            "host-local-index 1 1 2 3\n1 10.1.2.2\n",
        ] {
            assert_eq!(Index::parse(text), None, "{text:?}");
        }
        let empty = Index::parse("host-local-index 1 0 0 0\n").expect("empty index");
        assert_eq!(empty, Index::default());
    }
}
