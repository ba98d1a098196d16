//! `file://` URIs to paths and back, with percent-encoding.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use lsp_types::Uri;

/// The path of a `file://` URI; `None` for other schemes or malformed URIs.
pub fn to_path(uri: &Uri) -> Option<PathBuf> {
    let s = uri.as_str();
    let rest = s.strip_prefix("file://")?;
    // `file://host/path` names a host; only local files are served.
    let path = if rest.starts_with('/') {
        rest
    } else {
        rest.strip_prefix("localhost")?
    };
    let path = path.split(['?', '#']).next().unwrap_or("");
    let decoded = percent_decode(path)?;
    // `file:///C:/x` on Windows: drop the slash before the drive letter.
    let decoded = if cfg!(windows) && decoded.len() > 2 && decoded.as_bytes()[2] == b':' {
        decoded[1..].to_string()
    } else {
        decoded
    };
    Some(PathBuf::from(decoded))
}

/// The `file://` URI of an absolute path.
pub fn from_path(path: &Path) -> Uri {
    let text = path.to_string_lossy().replace('\\', "/");
    let mut out = String::from("file://");
    if !text.starts_with('/') {
        out.push('/');
    }
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~:".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    // Every byte outside the unreserved set is escaped, so this parses.
    Uri::from_str(&out).unwrap_or_else(|_| Uri::from_str("file:///").expect("a valid URI"))
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_paths_with_spaces_and_unicode() {
        let p = PathBuf::from("/home/ana/my flows/café #1.flow");
        let u = from_path(&p);
        assert_eq!(
            u.as_str(),
            "file:///home/ana/my%20flows/caf%C3%A9%20%231.flow"
        );
        assert_eq!(to_path(&u), Some(p));
    }

    #[test]
    fn rejects_other_schemes_and_remote_hosts() {
        let parse = |s: &str| Uri::from_str(s).unwrap();
        assert_eq!(to_path(&parse("untitled:Untitled-1")), None);
        assert_eq!(to_path(&parse("file://server/share/a.flow")), None);
        assert_eq!(
            to_path(&parse("file://localhost/tmp/a.flow")),
            Some(PathBuf::from("/tmp/a.flow"))
        );
    }
}
