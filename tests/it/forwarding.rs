//! What the upstream receives: identity headers only from the gateway,
//! credentials stripped, request id and forwarded headers set; and what a
//! protected route answers without a usable credential.

use std::time::Duration;

use crate::harness::{client, raw_request, Gateway, Upstream};

fn gateway(up: &Upstream) -> Gateway {
    Gateway::start(&format!(
        r#"
services:
  s: {{ upstreams: ["{}"] }}
routes:
  - {{ name: open, match: {{ path_prefix: /open }}, service: s, auth: public }}
  - {{ name: fwd, match: {{ path_prefix: /fwd }}, service: s, auth: public, forward_authorization: true }}
  - {{ name: closed, match: {{ path_prefix: /closed }}, service: s, auth: [jwt, api_key] }}
"#,
        up.target()
    ))
}

#[test]
fn request_id_forwarded_headers_and_stripping() {
    let up = Upstream::start("s");
    let gw = gateway(&up);
    let c = client();

    let r = c.get(gw.url("/open/1")).send().unwrap();
    assert_eq!(r.status(), 200);
    let generated = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(generated.len(), 36, "a UUID: {generated}");
    let seen = up.requests().pop().unwrap();
    assert_eq!(
        seen.header("x-request-id").as_deref(),
        Some(generated.as_str())
    );
    assert_eq!(seen.header("x-forwarded-for").as_deref(), Some("127.0.0.1"));
    assert_eq!(seen.header("x-forwarded-proto").as_deref(), Some("http"));

    let r = c
        .get(gw.url("/open/2"))
        .header("x-request-id", "client-chosen-42")
        .header("x-forwarded-for", "6.6.6.6")
        .header("x-forwarded-proto", "https")
        .header("x-consumer-id", "forged")
        .header("x-consumer-name", "forged")
        .header("x-subscription-id", "forged")
        .header("x-api-key", "tg_should_not_leak")
        .header("authorization", "Bearer should-not-leak")
        .send()
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "client-chosen-42");
    let seen = up.requests().pop().unwrap();
    assert_eq!(
        seen.header("x-request-id").as_deref(),
        Some("client-chosen-42")
    );
    // an untrusted peer's forwarded headers are replaced, not extended
    assert_eq!(seen.header("x-forwarded-for").as_deref(), Some("127.0.0.1"));
    assert_eq!(seen.header("x-forwarded-proto").as_deref(), Some("http"));
    for h in [
        "x-consumer-id",
        "x-consumer-name",
        "x-subscription-id",
        "x-api-key",
        "authorization",
    ] {
        assert_eq!(seen.header(h), None, "{h} must not reach the upstream");
    }

    let r = c
        .post(gw.url("/open/body?x=1"))
        .body("a body of bytes")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = up.requests().pop().unwrap();
    assert_eq!(seen.method, "POST");
    assert_eq!(&seen.body[..], b"a body of bytes");
    assert_eq!(seen.uri, "/open/body?x=1");

    c.get(gw.url("/fwd"))
        .header("authorization", "Bearer kept")
        .send()
        .unwrap();
    let seen = up.requests().pop().unwrap();
    assert_eq!(seen.header("authorization").as_deref(), Some("Bearer kept"));
}

#[test]
fn connection_header_cannot_smuggle_or_strip() {
    let up = Upstream::start("s");
    let gw = gateway(&up);
    let req = "GET /open/c HTTP/1.1\r\nHost: t\r\nConnection: keep-alive, X-Consumer-Id, X-Request-Id\r\nX-Consumer-Id: forged\r\nX-Hop: 1\r\nConnection: x-hop\r\n\r\n";
    let r = raw_request(gw.proxy, req.as_bytes(), Duration::from_secs(5));
    assert_eq!(r.status, 200, "{r:?}");
    let seen = up.requests().pop().unwrap();
    assert_eq!(seen.header("x-consumer-id"), None);
    assert_eq!(seen.header("x-hop"), None);
    assert_eq!(
        seen.header_count("x-request-id"),
        1,
        "the gateway's request id survives"
    );
    let conn = seen
        .header("connection")
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(
        !conn.contains("x-consumer") && !conn.contains("x-request-id"),
        "{conn}"
    );
}

#[test]
fn protected_route_without_usable_credential_is_401() {
    let up = Upstream::start("s");
    let gw = gateway(&up);
    let c = client();
    let r = c.get(gw.url("/closed")).send().unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"tollgate\"");
    let body: serde_json::Value = r.json().unwrap();
    assert_eq!(body["error"], "missing_credentials");

    let r = c
        .get(gw.url("/closed"))
        .header("x-api-key", "tg_anything")
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    let www = r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        www.starts_with("Bearer realm=\"tollgate\", error=\"invalid_token\""),
        "{www}"
    );
    let body: serde_json::Value = r.json().unwrap();
    assert_eq!(body["error"], "invalid_token");
    assert!(!body.to_string().contains("tg_anything"));
    assert_eq!(up.count(), 0, "nothing reaches the upstream");
}
