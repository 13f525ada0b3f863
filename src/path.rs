//! Path normalization: routes match the normalized path, and the upstream
//! receives exactly that path, so a request cannot be routed by one reading
//! of its path and served by another.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathError {
    NotAbsolute,
    BadPercentEncoding,
    ForbiddenByte(u8),
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathError::NotAbsolute => f.write_str("the path must start with `/`"),
            PathError::BadPercentEncoding => {
                f.write_str("the path has a malformed percent-encoding")
            }
            PathError::ForbiddenByte(b) => write!(f, "the path contains the byte 0x{b:02x}"),
        }
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decode percent-encoded unreserved characters in one segment and
/// upper-case the hex of the others (`%2f` -> `%2F`, which stays encoded).
fn normalize_segment(seg: &[u8], out: &mut String) -> Result<(), PathError> {
    let mut i = 0;
    while i < seg.len() {
        let b = seg[i];
        if b == b'%' {
            let (Some(hi), Some(lo)) = (
                seg.get(i + 1).copied().and_then(hex),
                seg.get(i + 2).copied().and_then(hex),
            ) else {
                return Err(PathError::BadPercentEncoding);
            };
            let decoded = hi * 16 + lo;
            if is_unreserved(decoded) {
                out.push(decoded as char);
            } else {
                out.push('%');
                out.push(char::from(b"0123456789ABCDEF"[hi as usize]));
                out.push(char::from(b"0123456789ABCDEF"[lo as usize]));
            }
            i += 3;
        } else {
            // Backslash is a separator to some upstreams; refuse it rather
            // than guess. Controls, spaces and non-ASCII never appear in a
            // well-formed request target.
            if !(0x21..=0x7e).contains(&b) || b == b'\\' || b == b'#' {
                return Err(PathError::ForbiddenByte(b));
            }
            out.push(b as char);
            i += 1;
        }
    }
    Ok(())
}

/// Whether `raw` (starting with `/`) is its own normal form: plain bytes
/// only (no percent-encoding, nothing refused) and no empty, `.` or `..`
/// segment but a last empty one (the trailing slash).
fn already_normal(raw: &[u8]) -> bool {
    let plain = |b: &u8| (0x21..=0x7e).contains(b) && !matches!(b, b'%' | b'\\' | b'#');
    if !raw.iter().all(plain) {
        return false;
    }
    let mut segments = raw[1..].split(|b| *b == b'/').peekable();
    while let Some(seg) = segments.next() {
        let last = segments.peek().is_none();
        if (seg.is_empty() && !last) || seg == b"." || seg == b".." {
            return false;
        }
    }
    true
}

/// Normalize an absolute request path (no query): percent-decode unreserved
/// characters, collapse empty segments, resolve `.` and `..` (never above
/// the root). An encoded `/` (`%2F`) stays encoded and inside its segment.
pub fn normalize_path(raw: &[u8]) -> Result<String, PathError> {
    if raw.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    if already_normal(raw) {
        // the common case, checked in one pass: no segment to rebuild
        return Ok(String::from_utf8_lossy(raw).into_owned());
    }
    normalize(raw)
}

/// The full normalization of an absolute path, segment by segment.
fn normalize(raw: &[u8]) -> Result<String, PathError> {
    let mut segments: Vec<String> = Vec::new();
    let mut trailing_slash = raw.len() > 1 && raw.ends_with(b"/");
    for seg in raw[1..].split(|b| *b == b'/') {
        if seg.is_empty() {
            continue;
        }
        let mut s = String::with_capacity(seg.len());
        normalize_segment(seg, &mut s)?;
        match s.as_str() {
            "." => trailing_slash = true,
            ".." => {
                segments.pop();
                trailing_slash = true;
            }
            _ => {
                segments.push(s);
                trailing_slash = raw.ends_with(b"/");
            }
        }
    }
    let mut out = String::with_capacity(raw.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if segments.is_empty() || trailing_slash {
        out.push('/');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(p: &str) -> String {
        normalize_path(p.as_bytes()).unwrap()
    }

    #[test]
    fn resolves_dots_and_slashes() {
        assert_eq!(n("/"), "/");
        assert_eq!(n("/a/b"), "/a/b");
        assert_eq!(n("//admin"), "/admin");
        assert_eq!(n("/public/../admin"), "/admin");
        assert_eq!(n("/a/./b/"), "/a/b/");
        assert_eq!(n("/a/b/.."), "/a/");
        assert_eq!(n("/../../etc"), "/etc");
        assert_eq!(n("/a//b///c"), "/a/b/c");
    }

    #[test]
    fn decodes_only_unreserved() {
        assert_eq!(n("/%61dmin"), "/admin");
        assert_eq!(n("/%2e%2e/admin"), "/admin");
        assert_eq!(n("/x/%2E%2E/admin"), "/admin");
        assert_eq!(n("/admin%2f.."), "/admin%2F..");
        assert_eq!(n("/a%20b"), "/a%20b");
        assert_eq!(n("/admin;x"), "/admin;x");
        assert_eq!(n("/ADMIN"), "/ADMIN");
    }

    /// The one-pass check agrees with the full normalization on every path
    /// of up to seven bytes over an alphabet of the bytes that matter.
    #[test]
    fn the_fast_path_agrees_with_the_full_normalization() {
        const ALPHABET: &[u8] = b"/.a%2e\\#";
        let mut checked = 0;
        for len in 0..=6u32 {
            for mut n in 0..ALPHABET.len().pow(len) {
                let mut raw = vec![b'/'];
                for _ in 0..len {
                    raw.push(ALPHABET[n % ALPHABET.len()]);
                    n /= ALPHABET.len();
                }
                if already_normal(&raw) {
                    assert_eq!(
                        normalize(&raw).as_deref(),
                        Ok(&*String::from_utf8_lossy(&raw)),
                        "{raw:?}"
                    );
                    checked += 1;
                }
            }
        }
        assert!(checked > 1000, "only {checked} normal paths were compared");
    }

    #[test]
    fn refuses_malformed() {
        assert_eq!(normalize_path(b"admin"), Err(PathError::NotAbsolute));
        assert_eq!(normalize_path(b"/a%zz"), Err(PathError::BadPercentEncoding));
        assert_eq!(normalize_path(b"/a%2"), Err(PathError::BadPercentEncoding));
        assert_eq!(
            normalize_path(b"/a\\..\\admin"),
            Err(PathError::ForbiddenByte(b'\\'))
        );
        assert_eq!(normalize_path(b"/a\x00"), Err(PathError::ForbiddenByte(0)));
    }
}
