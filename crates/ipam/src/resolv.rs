//! `resolvConf`: a resolv.conf file turned into the result's DNS settings,
//! parsed like the reference (`plugins/ipam/host-local/dns.go`).

use std::path::Path;

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
        std::fs::read_to_string(path)
            .map(|t| Self::parse(&t))
            .map_err(|source| ResolvError {
                path: path.to_path_buf(),
                source,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
