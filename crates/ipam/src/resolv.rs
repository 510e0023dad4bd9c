//! `resolvConf`: a resolv.conf file turned into the result's DNS settings,
//! parsed like the reference (`plugins/ipam/host-local/dns.go`).

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The largest resolv.conf read; real ones are a few hundred bytes.
pub const MAX_RESOLV_CONF_BYTES: u64 = 1 << 20;

/// DNS settings from a resolv.conf file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvConf {
    /// `nameserver` lines, first argument each, in order.
    pub nameservers: Vec<String>,
    /// The last `domain` line's argument.
    pub domain: Option<String>,
    /// Every argument of every `search` line.
    pub search: Vec<String>,
    /// Every argument of every `options` line.
    pub options: Vec<String>,
}

/// Failure to read a resolv.conf file.
#[derive(Debug, thiserror::Error)]
#[error("failed to read resolvConf {}: {source}", .path.display())]
pub struct ResolvError {
    /// The file.
    pub path: std::path::PathBuf,
    /// The OS error.
    #[source]
    pub source: std::io::Error,
}

impl ResolvConf {
    /// Parses resolv.conf text: lines are trimmed; blank lines, lines
    /// starting with `#` or `;`, lines with fewer than two fields and
    /// unknown keywords are ignored.
    pub fn parse(text: &str) -> Self {
        let mut out = Self::default();
        for line in text.lines().map(str::trim) {
            if line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            let mut fields = line.split_whitespace();
            let (Some(key), Some(first)) = (fields.next(), fields.next()) else {
                continue;
            };
            let args = std::iter::once(first).chain(fields).map(str::to_string);
            match key {
                "nameserver" => out.nameservers.push(first.to_string()),
                "domain" => out.domain = Some(first.to_string()),
                "search" => out.search.extend(args),
                "options" => out.options.extend(args),
                _ => {}
            }
        }
        out
    }

    /// Reads and parses the file at `path`.
    ///
    /// # Errors
    /// [`ResolvError`] when the file cannot be read.
    pub fn load(path: &Path) -> Result<Self, ResolvError> {
        read_bounded(path)
            .map(|t| Self::parse(&t))
            .map_err(|source| ResolvError {
                path: path.to_path_buf(),
                source,
            })
    }
}

/// Reads a regular file of at most [`MAX_RESOLV_CONF_BYTES`]. Opened
/// non-blocking so a FIFO cannot stall the plugin, and refused unless it is a
/// regular file, so `/dev/zero` cannot exhaust memory.
fn read_bounded(path: &Path) -> std::io::Result<String> {
    use std::io::{Error, ErrorKind};
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(Error::new(ErrorKind::InvalidInput, "not a regular file"));
    }
    let mut text = String::new();
    file.take(MAX_RESOLV_CONF_BYTES + 1)
        .read_to_string(&mut text)?;
    if text.len() as u64 > MAX_RESOLV_CONF_BYTES {
        return Err(Error::new(
            ErrorKind::InvalidData,
            format!("larger than {MAX_RESOLV_CONF_BYTES} bytes"),
        ));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_refuses_devices_fifos_and_huge_files() {
        for dev in ["/dev/zero", "/dev/null", "/tmp"] {
            let e = ResolvConf::load(Path::new(dev)).unwrap_err();
            assert!(e.to_string().contains(dev), "{e}");
        }
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if made.is_ok_and(|s| s.success()) {
            // Would block forever on a blocking open with no writer.
            assert!(ResolvConf::load(&fifo).is_err());
        }
        let big = dir.path().join("big");
        let line = "search example.com\n";
        let n = usize::try_from(MAX_RESOLV_CONF_BYTES).unwrap() / line.len() + 1;
        std::fs::write(&big, line.repeat(n)).unwrap();
        let e = ResolvConf::load(&big).unwrap_err();
        assert!(format!("{e:?}").contains("larger than"), "{e:?}");
        let ok = dir.path().join("ok");
        std::fs::write(&ok, "nameserver 10.0.0.1\n").unwrap();
        assert_eq!(ResolvConf::load(&ok).unwrap().nameservers, ["10.0.0.1"]);
    }

    #[test]
    fn simple() {
        let r = ResolvConf::parse("nameserver 10.1.2.123\n");
        assert_eq!(r.nameservers, ["10.1.2.123"]);
        assert_eq!(r.domain, None);
    }

    #[test]
    fn comments_and_short_lines_ignored() {
        let r = ResolvConf::parse(
            "# nameserver 1.1.1.1\n ; nameserver 2.2.2.2\nnameserver\n\n  nameserver 10.1.2.123 extra\n",
        );
        assert_eq!(r.nameservers, ["10.1.2.123"]);
    }

    #[test]
    fn all_fields() {
        let r = ResolvConf::parse(
            "nameserver 10.1.2.123\nnameserver 2001:db8::53\ndomain example.com\ndomain other.com\n\
             search example.com example.net\nsearch more.org\noptions ndots:5 timeout:2\noptions rotate\nsortlist 1.2.3.4\n",
        );
        assert_eq!(r.nameservers, ["10.1.2.123", "2001:db8::53"]);
        assert_eq!(r.domain.as_deref(), Some("other.com"));
        assert_eq!(r.search, ["example.com", "example.net", "more.org"]);
        assert_eq!(r.options, ["ndots:5", "timeout:2", "rotate"]);
    }

    #[test]
    fn missing_file_names_path() {
        let err = ResolvConf::load(Path::new("/nonexistent/resolv.conf")).expect_err("missing");
        assert!(
            err.to_string().contains("/nonexistent/resolv.conf"),
            "{err}"
        );
    }
}
