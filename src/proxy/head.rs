//! Checks of a request head that every request passes before it is routed,
//! the gateway's own endpoints included: size, framing and Host. Pure
//! functions of the head, so that they can be fuzzed on their own.

use pingora::http::RequestHeader;

use super::reject::Rejection;

/// The host a request is routed by, once its head has passed `check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authority<'a> {
    /// An absolute-form target (`GET http://host/path`): its host decides
    /// the route (RFC 9112 §3.2.2) and replaces any Host header.
    Target(&'a str),
    /// The Host header.
    Header(&'a str),
    /// HTTP/1.0 without Host.
    None,
}

/// `raw_head` is the head as an HTTP/1 client sent it. An HTTP/2 request
/// has none (`None`): its size is what the same head takes in HTTP/1, and
/// its fields are all there is, so it is not written out to be measured.
pub fn check<'a>(
    req: &'a RequestHeader,
    raw_head: Option<&[u8]>,
    max_header_bytes: usize,
) -> Result<Authority<'a>, Rejection> {
    let size = raw_head.map_or_else(|| h1_size(req), <[u8]>::len);
    if size > max_header_bytes {
        return Err(Rejection::HeaderTooLarge);
    }
    check_framing(req, raw_head)?;
    authority(req)
}

/// The bytes of `req` written as an HTTP/1 head: `METHOD target VERSION`,
/// a `name: value` line per field, and the blank line.
fn h1_size(req: &RequestHeader) -> usize {
    const CRLF: usize = 2;
    let version = match req.version {
        http::Version::HTTP_2 => "HTTP/2".len(),
        _ => "HTTP/1.1".len(),
    };
    let line = req.method.as_str().len() + 1 + req.raw_path().len() + 1 + version + CRLF;
    let fields: usize = req
        .headers
        .iter()
        .map(|(name, value)| name.as_str().len() + ": ".len() + value.len() + CRLF)
        .sum();
    line + fields + CRLF
}

/// RFC 9112 §6: one framing, and a transfer coding list that is exactly
/// `chunked` (the only coding the gateway decodes); anything else could be
/// read one way here and another way upstream.
fn check_framing(req: &RequestHeader, raw_head: Option<&[u8]>) -> Result<(), Rejection> {
    let mut codings = 0usize;
    let mut chunked_only = true;
    for value in req.headers.get_all(http::header::TRANSFER_ENCODING) {
        for coding in value.as_bytes().split(|b| *b == b',') {
            let coding = coding.trim_ascii();
            if coding.is_empty() {
                continue;
            }
            codings += 1;
            chunked_only &= coding.eq_ignore_ascii_case(b"chunked");
        }
    }
    if req.headers.contains_key(http::header::TRANSFER_ENCODING) {
        if codings != 1 || !chunked_only {
            return Err(Rejection::BadRequest("unsupported Transfer-Encoding"));
        }
        // Both framings at once may be request smuggling. Pingora drops
        // Content-Length from an HTTP/1 head in that case, so look at the
        // raw head.
        let content_length = match raw_head {
            Some(raw) => contains_ignore_case(raw, b"\ncontent-length:"),
            None => req.headers.contains_key(http::header::CONTENT_LENGTH),
        };
        if content_length {
            return Err(Rejection::BadRequest(
                "conflicting Content-Length and Transfer-Encoding",
            ));
        }
    }
    Ok(())
}

fn authority(req: &RequestHeader) -> Result<Authority<'_>, Rejection> {
    let mut hosts = req.headers.get_all(http::header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(Rejection::BadRequest("more than one Host header"));
    }
    if let Some(h) = host {
        if !valid_host(h.as_bytes()) {
            return Err(Rejection::BadRequest("invalid Host header"));
        }
    }
    if let Some(target) = target_authority(req) {
        if !valid_host(target) {
            return Err(Rejection::BadRequest("invalid request target"));
        }
        // valid_host admits ASCII only
        return Ok(Authority::Target(
            std::str::from_utf8(target).unwrap_or_default(),
        ));
    }
    match host {
        // valid_host admits ASCII only
        Some(h) => Ok(Authority::Header(h.to_str().unwrap_or_default())),
        None if req.version == http::Version::HTTP_10 => Ok(Authority::None),
        // RFC 9112 §3.2: an HTTP/1.1 request without Host is a 400
        None => Err(Rejection::BadRequest("missing Host header")),
    }
}

/// The authority of an absolute-form target. Pingora keeps only the path
/// in the parsed URI of an HTTP/1 request (and has checked that a Host
/// header agrees with it), so it is read from the raw target; an HTTP/2
/// request carries it in the URI.
fn target_authority(req: &RequestHeader) -> Option<&[u8]> {
    if let Some(a) = req.uri.authority() {
        return Some(a.as_str().as_bytes());
    }
    let raw = req.raw_path();
    let rest = ["http://", "https://"].iter().find_map(|scheme| {
        let n = scheme.len();
        (raw.len() >= n && raw[..n].eq_ignore_ascii_case(scheme.as_bytes())).then(|| &raw[n..])
    })?;
    let end = rest
        .iter()
        .position(|b| matches!(b, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len());
    Some(&rest[..end])
}

/// `host [":" port]` of RFC 9110 §7.2: a registered name (letters, digits,
/// `-`, `.`, `_`) or a bracketed IPv6 literal, and a port of digits. No
/// userinfo, path, space or other byte that an upstream might cut at.
pub fn valid_host(v: &[u8]) -> bool {
    let port = match v {
        [b'[', rest @ ..] => match rest.iter().position(|b| *b == b']') {
            Some(end)
                if end > 0
                    && rest[..end]
                        .iter()
                        .all(|b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.')) =>
            {
                &rest[end + 1..]
            }
            _ => return false,
        },
        _ => {
            let split = v.iter().position(|b| *b == b':').unwrap_or(v.len());
            let (name, port) = v.split_at(split);
            let name_ok = !name.is_empty()
                && name
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
            if !name_ok {
                return false;
            }
            port
        }
    };
    match port {
        [] => true,
        [b':', digits @ ..] => digits.len() <= 5 && digits.iter().all(u8::is_ascii_digit),
        _ => false,
    }
}

fn contains_ignore_case(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        for ok in [
            &b"example.com"[..],
            b"example.com:8080",
            b"a_b.internal",
            b"127.0.0.1:1",
            b"[::1]",
            b"[::1]:8080",
            b"example.com:",
        ] {
            assert!(valid_host(ok), "{}", String::from_utf8_lossy(ok));
        }
        for bad in [
            &b""[..],
            b"internal.example/x",
            b"internal.example bad",
            b"a@b",
            b"a:b",
            b"a:1:2",
            b"[::1",
            b"[]",
            b"[::1]x",
            b"host:123456",
            b"h\xc3\xa9",
            b":80",
            b"a\tb",
        ] {
            assert!(!valid_host(bad), "{}", String::from_utf8_lossy(bad));
        }
    }

    fn head(lines: &[(&str, &str)], target: &str, version: http::Version) -> RequestHeader {
        let mut req = RequestHeader::build("GET", target.as_bytes(), None).unwrap();
        req.set_version(version);
        for (k, v) in lines {
            req.append_header(k.to_string(), *v).unwrap();
        }
        req
    }

    #[test]
    fn transfer_codings_other_than_one_chunked_are_refused() {
        for (te, ok) in [
            ("chunked", true),
            ("Chunked", true),
            ("chunked, chunked", false),
            ("gzip, chunked", false),
            ("identity", false),
            ("chunked,", true),
        ] {
            let req = head(
                &[("host", "t"), ("transfer-encoding", te)],
                "/",
                http::Version::HTTP_11,
            );
            assert_eq!(check(&req, Some(b""), 4096).is_ok(), ok, "{te}");
        }
        let two = head(
            &[
                ("host", "t"),
                ("transfer-encoding", "chunked"),
                ("transfer-encoding", "chunked"),
            ],
            "/",
            http::Version::HTTP_11,
        );
        assert!(check(&two, Some(b""), 4096).is_err());
    }

    #[test]
    fn an_http2_head_is_measured_as_its_http1_form() {
        let mut parts = http::Request::get("https://api.example/v1/items?page=2")
            .version(http::Version::HTTP_2)
            .header("user-agent", "grpc-python/1.0")
            .header("x-api-key", "k".repeat(100))
            .header("accept", "a")
            .header("accept", "b")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        parts
            .headers
            .insert("te", http::HeaderValue::from_static("trailers"));
        let req = RequestHeader::from(parts);
        let wire = pingora::protocols::http::v1::client::http_req_header_to_wire(&req).unwrap();
        assert_eq!(h1_size(&req), wire.len());
        assert!(check(&req, None, wire.len()).is_ok());
        assert_eq!(
            check(&req, None, wire.len() - 1),
            Err(Rejection::HeaderTooLarge)
        );
    }

    #[test]
    fn http2_framing_conflicts_are_seen_in_the_fields() {
        let mut req = head(
            &[("transfer-encoding", "chunked"), ("content-length", "3")],
            "https://t/",
            http::Version::HTTP_2,
        );
        assert!(check(&req, None, 4096).is_err());
        req.remove_header("content-length");
        assert!(check(&req, None, 4096).is_ok());
    }

    #[test]
    fn the_target_or_host_names_the_authority() {
        let req = head(
            &[("host", "other")],
            "http://api.example/x",
            http::Version::HTTP_11,
        );
        assert_eq!(
            check(&req, Some(b""), 4096),
            Ok(Authority::Target("api.example"))
        );
        let req = head(&[], "http://api.example/x", http::Version::HTTP_11);
        assert_eq!(
            check(&req, Some(b""), 4096),
            Ok(Authority::Target("api.example"))
        );
        let req = head(&[("host", "h:1")], "/x", http::Version::HTTP_11);
        assert_eq!(check(&req, Some(b""), 4096), Ok(Authority::Header("h:1")));
        let req = head(&[], "/x", http::Version::HTTP_11);
        assert!(check(&req, Some(b""), 4096).is_err());
        let req = head(&[], "/x", http::Version::HTTP_10);
        assert_eq!(check(&req, Some(b""), 4096), Ok(Authority::None));
        let req = head(&[("host", "a@b")], "/x", http::Version::HTTP_11);
        assert!(check(&req, Some(b""), 4096).is_err());
    }
}
