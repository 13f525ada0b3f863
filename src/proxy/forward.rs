//! The request the upstream receives: the normalized path, hop-by-hop and
//! client-sent identity headers removed, credentials stripped, and the
//! gateway's own `X-Request-Id`, `X-Forwarded-*` and `X-Consumer-*` set.

use std::net::IpAddr;

use http::{HeaderName, HeaderValue};
use pingora::http::RequestHeader;
use pingora::{Error, ErrorType};

use crate::authz::Identity;
use crate::config::IpNet;

const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "te",
    "trailer",
];

// The names the gateway sets, built at compile time (`from_static` outside
// a const checks the name again on every call).
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const X_CONSUMER_ID: HeaderName = HeaderName::from_static("x-consumer-id");
const X_CONSUMER_NAME: HeaderName = HeaderName::from_static("x-consumer-name");
const X_SUBSCRIPTION_ID: HeaderName = HeaderName::from_static("x-subscription-id");

pub struct ForwardContext<'a> {
    /// Normalized path plus the raw query, if any.
    pub path_and_query: &'a str,
    pub request_id: &'a HeaderValue,
    pub peer: Option<IpAddr>,
    pub trusted_proxies: &'a [IpNet],
    pub api_key_header: &'a HeaderName,
    pub keep_authorization: bool,
    /// Forward header names with `_` (dropped unless the route keeps them).
    pub keep_underscore_headers: bool,
    /// The client reached the gateway over TLS.
    pub tls: bool,
    pub identity: Option<&'a Identity>,
}

/// Rewrites the request for the upstream; answers how many headers with
/// `_` in their name it dropped.
pub fn rewrite_upstream_request(
    req: &mut RequestHeader,
    fx: &ForwardContext<'_>,
) -> pingora::Result<usize> {
    // The rewrite works on the request's own parts. pingora-http's
    // `insert_header` parses every name again, allocates it and keeps a
    // second map of the client's spelling of each name; a plain HeaderMap
    // with room reserved takes the gateway's static names as they are, which
    // makes the six headers the gateway adds several times cheaper. The
    // upstream then receives lowercase names (a few, like Host, title-cased):
    // HTTP field names are case-insensitive (RFC 9110 §5.1).
    let placeholder = RequestHeader::from(http::Request::new(()).into_parts().0);
    let taken = std::mem::replace(req, placeholder);
    let send_end_stream = taken.send_end_stream();
    let mut parts: http::request::Parts = taken.into();
    let rewritten = rewrite_parts(&mut parts, fx);
    let mut rebuilt = RequestHeader::from(parts);
    if let Some(end) = send_end_stream {
        rebuilt.set_send_end_stream(end);
    }
    *req = rebuilt;
    rewritten.map_err(|what| Error::explain(ErrorType::InvalidHTTPHeader, what))
}

fn rewrite_parts(req: &mut http::request::Parts, fx: &ForwardContext<'_>) -> Result<usize, String> {
    if req.uri.path_and_query().map(|p| p.as_str()) != Some(fx.path_and_query) {
        if let Ok(uri) = fx.path_and_query.parse::<http::Uri>() {
            req.uri = uri;
        }
    }
    let headers = &mut req.headers;

    // Headers named by the client's Connection header are hop-by-hop too
    // (`Connection: X-Consumer-Id` must not strip the gateway's own header).
    let mut listed: Vec<String> = Vec::new();
    let mut upgrade = false;
    for v in headers.get_all(http::header::CONNECTION).iter() {
        for token in v.to_str().unwrap_or("").split(',') {
            let t = token.trim().to_ascii_lowercase();
            if t == "upgrade" {
                upgrade = true;
            } else if !t.is_empty() {
                listed.push(t);
            }
        }
    }
    // One pass over the names present; removing an absent name costs a
    // hash each, and this runs on every request. The credential headers,
    // present on every authenticated request, are removed by the names we
    // hold; only unusual ones are copied out to be removed.
    let strip_authorization = !fx.keep_authorization;
    let (mut has_key, mut has_authorization) = (false, false);
    let mut underscored = 0;
    let drop: Vec<HeaderName> = headers
        .keys()
        .filter(|k| {
            if *k == fx.api_key_header {
                has_key = true;
                return false;
            }
            if *k == http::header::AUTHORIZATION {
                has_authorization =
                    strip_authorization || listed.iter().any(|l| l == "authorization");
                return false;
            }
            let n = k.as_str();
            // CGI-style upstreams (WSGI, Rack, PHP) read `X_Consumer_Id`
            // as `X-Consumer-Id`: a name with `_` could spoof the identity
            // headers or add a second framing header there.
            if !fx.keep_underscore_headers && n.contains('_') {
                underscored += 1;
                return true;
            }
            // `TE: trailers` is the one TE an HTTP/2 upstream accepts, and
            // gRPC servers require it
            // (looked at only when the request has a TE header at all)
            if n == "te"
                && !listed.iter().any(|l| l == "te")
                && headers
                    .get_all(http::header::TE)
                    .iter()
                    .all(|v| v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"trailers"))
            {
                return false;
            }
            HOP_BY_HOP.contains(&n)
                || n.starts_with("x-consumer-")
                || n == "x-subscription-id"
                || listed.iter().any(|l| l == n)
        })
        .cloned()
        .collect();
    if has_key {
        headers.remove(fx.api_key_header);
    }
    if has_authorization {
        headers.remove(http::header::AUTHORIZATION);
    }
    for name in drop {
        headers.remove(&name);
    }
    let too_many = |_| "too many request headers".to_string();
    // Connection, X-Forwarded-For, X-Forwarded-Proto, X-Request-Id and the
    // three identity headers: room for all at once, no growth in between.
    headers.try_reserve(7).map_err(too_many)?;
    if upgrade && headers.contains_key(http::header::UPGRADE) {
        headers
            .try_insert(
                http::header::CONNECTION,
                HeaderValue::from_static("upgrade"),
            )
            .map_err(too_many)?;
    }

    let trusted = fx
        .peer
        .is_some_and(|ip| fx.trusted_proxies.iter().any(|n| n.contains(ip)));
    let peer = fx.peer.map(ip_text).unwrap_or_default();
    let xff = match headers.get(X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(prev) if trusted && !prev.trim().is_empty() => format!("{prev}, {peer}"),
        _ => peer,
    };
    let xff = HeaderValue::try_from(xff).map_err(|_| "invalid X-Forwarded-For".to_string())?;
    headers.try_insert(X_FORWARDED_FOR, xff).map_err(too_many)?;
    let proto_ok = trusted
        && headers
            .get(X_FORWARDED_PROTO)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|p| p == "http" || p == "https");
    if !proto_ok {
        let proto = if fx.tls { "https" } else { "http" };
        headers
            .try_insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto))
            .map_err(too_many)?;
    }
    headers
        .try_insert(X_REQUEST_ID, fx.request_id.clone())
        .map_err(too_many)?;

    if let Some(id) = fx.identity {
        for (name, value) in [
            (X_CONSUMER_ID, &id.consumer_id),
            (X_CONSUMER_NAME, &id.consumer_name),
            (X_SUBSCRIPTION_ID, &id.subscription_id),
        ] {
            headers.try_insert(name, value.clone()).map_err(too_many)?;
        }
    }
    Ok(underscored)
}

/// An address as text: IPv4 digit by digit (the standard formatter costs
/// several times more, on every request), IPv6 by the standard formatter.
fn ip_text(ip: IpAddr) -> String {
    let IpAddr::V4(v4) = ip else {
        return ip.to_string();
    };
    let mut text = String::with_capacity(15);
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            text.push('.');
        }
        if octet >= 100 {
            text.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            text.push(char::from(b'0' + octet / 10 % 10));
        }
        text.push(char::from(b'0' + octet % 10));
    }
    text
}

/// A new request id: a random (version 4) UUID. The bytes come from the
/// thread's seeded generator, not from the kernel on every request. The
/// text is one shared allocation: the upstream's request and the answer
/// take it by reference count, not by copy.
pub fn new_request_id() -> HeaderValue {
    let uuid = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    uuid.hyphenated().encode_lower(&mut text);
    // lower-case hex digits and hyphens are always a valid value
    HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(text))
        .unwrap_or(HeaderValue::from_static("-"))
}

/// A client's `X-Request-Id` is kept when it is short printable ASCII.
pub fn acceptable_request_id(v: &[u8]) -> bool {
    !v.is_empty() && v.len() <= 128 && v.iter().all(|b| (0x21..=0x7e).contains(b))
}

/// The address a request comes from, for per-address limits: the TCP peer,
/// unless the peer is a trusted proxy; then the rightmost address of
/// `X-Forwarded-For` that is not itself a trusted proxy (addresses further
/// left were written by the client and prove nothing).
/// The header values of a route's `forward_claims`: a client-sent header of
/// each name is removed first; a claim that is absent, an object, or has
/// CR, LF or NUL in its value sends nothing; arrays are joined with `,`.
pub fn forward_claims(
    req: &mut RequestHeader,
    wanted: &[(Vec<String>, http::HeaderName)],
    claims: Option<&serde_json::Map<String, serde_json::Value>>,
) {
    for (path, name) in wanted {
        req.remove_header(name);
        let Some(value) = claims.and_then(|c| claim_at(c, path)).and_then(claim_text) else {
            continue;
        };
        if let Ok(v) = http::HeaderValue::from_str(&value) {
            let _ = req.insert_header(name.clone(), v);
        }
    }
}

fn claim_at<'a>(
    claims: &'a serde_json::Map<String, serde_json::Value>,
    path: &[String],
) -> Option<&'a serde_json::Value> {
    let (first, rest) = path.split_first()?;
    let mut v = claims.get(first)?;
    for seg in rest {
        v = v.as_object()?.get(seg)?;
    }
    Some(v)
}

/// A claim as header text, or None when it cannot be one.
fn claim_text(v: &serde_json::Value) -> Option<String> {
    use serde_json::Value;
    let scalar = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    };
    let text = match v {
        Value::Array(items) => {
            let parts: Option<Vec<String>> = items.iter().map(scalar).collect();
            parts?.join(",")
        }
        other => scalar(other)?,
    };
    // header injection and values a header cannot carry are refused whole
    let clean = !text.is_empty()
        && text.len() <= 4096
        && !text.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0);
    clean.then_some(text)
}

pub fn client_address(
    peer: Option<IpAddr>,
    forwarded_for: Option<&http::HeaderValue>,
    trusted: &[IpNet],
) -> Option<IpAddr> {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|n| n.contains(ip));
    let peer = peer?;
    if !is_trusted(peer) {
        return Some(peer);
    }
    let Some(list) = forwarded_for.and_then(|v| v.to_str().ok()) else {
        return Some(peer);
    };
    let mut last = peer;
    for hop in list.rsplit(',') {
        match hop.trim().parse::<IpAddr>() {
            Ok(ip) if is_trusted(ip) => last = ip,
            Ok(ip) => return Some(ip),
            // garbage in the chain: stop at the last address we can vouch for
            Err(_) => return Some(last),
        }
    }
    Some(last)
}

#[cfg(test)]
mod claim_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn claims_become_headers_and_hostile_values_send_nothing() {
        let claims = json!({
            "sub": "u-1",
            "realm_access": {"roles": ["admin", "dev"]},
            "n": 42,
            "bad": "a\r\nX-Injected: 1",
            "nul": "a\u{0}b",
            "obj": {"k": "v"},
            "mixed": ["a", {"k": 1}]
        });
        let claims = claims.as_object().unwrap();
        let wanted: Vec<(Vec<String>, http::HeaderName)> = [
            ("sub", "x-user-id"),
            ("realm_access.roles", "x-user-roles"),
            ("n", "x-n"),
            ("bad", "x-bad"),
            ("nul", "x-nul"),
            ("obj", "x-obj"),
            ("mixed", "x-mixed"),
            ("absent.deeper", "x-absent"),
        ]
        .into_iter()
        .map(|(p, h)| {
            (
                p.split('.').map(str::to_string).collect(),
                http::HeaderName::from_static(h),
            )
        })
        .collect();
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.insert_header("x-user-id", "forged").unwrap();
        req.insert_header("x-absent", "forged").unwrap();
        forward_claims(&mut req, &wanted, Some(claims));
        let h = |n: &str| req.headers.get(n).map(|v| v.to_str().unwrap().to_string());
        assert_eq!(h("x-user-id").as_deref(), Some("u-1"));
        assert_eq!(h("x-user-roles").as_deref(), Some("admin,dev"));
        assert_eq!(h("x-n").as_deref(), Some("42"));
        for absent in ["x-bad", "x-nul", "x-obj", "x-mixed", "x-absent"] {
            assert_eq!(h(absent), None, "{absent}");
        }
        // no token: the client's own headers are removed all the same
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.insert_header("x-user-id", "forged").unwrap();
        forward_claims(&mut req, &wanted, None);
        assert_eq!(req.headers.get("x-user-id"), None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/a//b", None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    fn identity() -> Identity {
        Identity {
            consumer_id: HeaderValue::from_static("c1"),
            consumer_name: HeaderValue::from_static("n"),
            subscription_id: HeaderValue::from_static("s1"),
        }
    }

    static RID: HeaderValue = HeaderValue::from_static("rid");

    fn ctx<'a>(
        h: &'a HeaderName,
        trusted: &'a [IpNet],
        id: Option<&'a Identity>,
    ) -> ForwardContext<'a> {
        ForwardContext {
            path_and_query: "/a/b?x=1",
            request_id: &RID,
            peer: Some("10.1.1.1".parse().unwrap()),
            trusted_proxies: trusted,
            api_key_header: h,
            keep_authorization: false,
            keep_underscore_headers: false,
            tls: false,
            identity: id,
        }
    }

    #[test]
    fn te_trailers_is_kept_and_any_other_te_dropped() {
        let h = HeaderName::from_static("x-api-key");
        let mut r = request(&[("te", "trailers")]);
        rewrite_upstream_request(&mut r, &ctx(&h, &[], None)).unwrap();
        assert_eq!(r.headers.get("te").unwrap(), "trailers");
        for te in ["gzip", "trailers, deflate"] {
            let mut r = request(&[("te", te)]);
            rewrite_upstream_request(&mut r, &ctx(&h, &[], None)).unwrap();
            assert!(r.headers.get("te").is_none(), "{te}");
        }
        let mut r = request(&[("te", "trailers"), ("connection", "te")]);
        rewrite_upstream_request(&mut r, &ctx(&h, &[], None)).unwrap();
        assert!(r.headers.get("te").is_none());
    }

    #[test]
    fn header_names_with_underscores_are_dropped_unless_kept() {
        let h = HeaderName::from_static("x-api-key");
        let headers = [
            ("X_Consumer_Id", "evil"),
            ("Transfer_Encoding", "chunked"),
            ("x-plain", "1"),
        ];
        let mut r = request(&headers);
        let dropped = rewrite_upstream_request(&mut r, &ctx(&h, &[], None)).unwrap();
        assert_eq!(dropped, 2);
        assert!(r.headers.get("x_consumer_id").is_none());
        assert!(r.headers.get("transfer_encoding").is_none());
        assert_eq!(r.headers.get("x-plain").unwrap(), "1");

        let mut r = request(&headers);
        let keep = ForwardContext {
            keep_underscore_headers: true,
            ..ctx(&h, &[], None)
        };
        assert_eq!(rewrite_upstream_request(&mut r, &keep).unwrap(), 0);
        assert_eq!(r.headers.get("x_consumer_id").unwrap(), "evil");
    }

    #[test]
    fn strips_client_identity_and_credentials() {
        let h = HeaderName::from_static("x-api-key");
        let mut r = request(&[
            ("x-consumer-id", "evil"),
            ("X-Consumer-Name", "evil"),
            ("connection", "X-Consumer-Id, x-foo"),
            ("x-foo", "1"),
            ("x-api-key", "tg_secret"),
            ("authorization", "Bearer t"),
            ("x-forwarded-for", "1.2.3.4"),
        ]);
        let id = identity();
        rewrite_upstream_request(&mut r, &ctx(&h, &[], Some(&id))).unwrap();
        assert_eq!(r.uri.to_string(), "/a/b?x=1");
        assert_eq!(r.headers.get_all("x-consumer-id").iter().count(), 1);
        assert_eq!(r.headers.get("x-consumer-id").unwrap(), "c1");
        assert_eq!(r.headers.get("x-consumer-name").unwrap(), "n");
        assert!(r.headers.get("x-foo").is_none());
        assert!(r.headers.get("connection").is_none());
        assert!(r.headers.get("x-api-key").is_none());
        assert!(r.headers.get("authorization").is_none());
        // untrusted peer: the client's X-Forwarded-For is replaced
        assert_eq!(r.headers.get("x-forwarded-for").unwrap(), "10.1.1.1");
        assert_eq!(r.headers.get("x-forwarded-proto").unwrap(), "http");
        assert_eq!(r.headers.get("x-request-id").unwrap(), "rid");
    }

    #[test]
    fn the_rewritten_request_goes_out_whole_on_the_wire() {
        let h = HeaderName::from_static("x-api-key");
        let mut r = request(&[
            ("Host", "up"),
            ("X-Api-Key", "tg_secret"),
            ("Accept", "*/*"),
        ]);
        let id = identity();
        rewrite_upstream_request(&mut r, &ctx(&h, &[], Some(&id))).unwrap();
        assert_eq!(r.method, http::Method::GET);
        assert_eq!(r.raw_path(), b"/a/b?x=1");
        let mut wire = Vec::new();
        r.header_to_h1_wire(&mut wire);
        let wire = String::from_utf8(wire).unwrap();
        let mut lines: Vec<&str> = wire.split("\r\n").filter(|l| !l.is_empty()).collect();
        lines.sort();
        assert_eq!(
            lines,
            [
                "Host: up",
                "accept: */*",
                "x-consumer-id: c1",
                "x-consumer-name: n",
                "x-forwarded-for: 10.1.1.1",
                "x-forwarded-proto: http",
                "x-request-id: rid",
                "x-subscription-id: s1",
            ]
        );
    }

    #[test]
    fn client_address_trusts_only_trusted_hops() {
        let lb = crate::config::IpNet {
            addr: "10.0.0.0".parse().unwrap(),
            prefix: 8,
        };
        let hv = |s: &str| http::HeaderValue::from_str(s).unwrap();
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        let untrusted = ip("192.0.2.7");
        assert_eq!(
            client_address(untrusted, Some(&hv("203.0.113.9")), &[lb]),
            untrusted,
            "an untrusted peer's X-Forwarded-For is ignored"
        );
        assert_eq!(
            client_address(
                ip("10.1.1.1"),
                Some(&hv("1.2.3.4, 198.51.100.2, 10.2.2.2")),
                &[lb]
            ),
            ip("198.51.100.2"),
            "the rightmost address a trusted proxy saw"
        );
        assert_eq!(
            client_address(ip("10.1.1.1"), Some(&hv("nonsense, 10.2.2.2")), &[lb]),
            ip("10.2.2.2")
        );
        assert_eq!(client_address(ip("10.1.1.1"), None, &[lb]), ip("10.1.1.1"));
    }

    #[test]
    fn trusted_proxy_chain_is_extended() {
        let h = HeaderName::from_static("x-api-key");
        let trusted = [crate::config::IpNet {
            addr: "10.0.0.0".parse().unwrap(),
            prefix: 8,
        }];
        let mut r = request(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-proto", "https"),
        ]);
        rewrite_upstream_request(&mut r, &ctx(&h, &trusted, None)).unwrap();
        assert_eq!(
            r.headers.get("x-forwarded-for").unwrap(),
            "1.2.3.4, 10.1.1.1"
        );
        assert_eq!(r.headers.get("x-forwarded-proto").unwrap(), "https");
        assert!(r.headers.get("x-consumer-id").is_none());
    }

    #[test]
    fn addresses_as_text() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.100.255",
            "255.9.99.100",
            "::1",
            "2001:db8::7",
        ] {
            let addr: IpAddr = ip.parse().unwrap();
            assert_eq!(ip_text(addr), addr.to_string());
        }
    }

    #[test]
    fn request_ids() {
        assert!(acceptable_request_id(b"abc-123"));
        let (a, b) = (new_request_id(), new_request_id());
        assert_ne!(a, b);
        let text = a.to_str().unwrap();
        let parsed = uuid::Uuid::parse_str(text).unwrap();
        assert_eq!(parsed.get_version(), Some(uuid::Version::Random));
        assert_eq!(text, parsed.hyphenated().to_string());
        assert!(acceptable_request_id(a.as_bytes()));
        assert!(!acceptable_request_id(b""));
        assert!(!acceptable_request_id(b"a b"));
        assert!(!acceptable_request_id(&[b'a'; 200]));
    }
}
