//! The checks every request head passes before routing: framing and Host.
//! A head they accept has one valid authority to route by, whether it comes
//! with its raw bytes (HTTP/1) or as fields alone (HTTP/2).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pingora::http::RequestHeader;
use tollgate::proxy::head::{check, valid_host, Authority};

fuzz_target!(|data: &[u8]| {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Request::new(&mut headers);
    let Ok(httparse::Status::Complete(_)) = parsed.parse(data) else {
        return;
    };
    let (Some(method), Some(path), Some(version)) = (parsed.method, parsed.path, parsed.version)
    else {
        return;
    };
    let Ok(mut req) = RequestHeader::build(method, path.as_bytes(), Some(parsed.headers.len()))
    else {
        return;
    };
    if version == 0 {
        req.set_version(http::Version::HTTP_10);
    }
    for h in parsed.headers.iter() {
        if req.append_header(h.name.to_string(), h.value).is_err() {
            return;
        }
    }
    for raw in [Some(data), None] {
        let Ok(authority) = check(&req, raw, 32 * 1024) else {
            continue;
        };
        match authority {
            Authority::Target(h) | Authority::Header(h) => assert!(valid_host(h.as_bytes())),
            Authority::None => assert_eq!(req.version, http::Version::HTTP_10),
        }
        let te: Vec<_> = req.headers.get_all("transfer-encoding").iter().collect();
        assert!(te.len() <= 1 || te.iter().filter(|v| !v.is_empty()).count() <= 1);
    }
});
