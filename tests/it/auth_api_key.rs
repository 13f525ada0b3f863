//! API keys at the proxy: authentication, authorization by subscription and
//! scope, immediate effect of admin changes, batched usage, hostile keys.

use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::{client, eventually, raw_request, Admin, Gateway, Upstream};

const INVALID: &str = "Bearer realm=\"tollgate\", error=\"invalid_token\", error_description=";

/// The `WWW-Authenticate` of an `invalid_token` answer with `description`.
fn invalid_token_challenge(description: &str) -> String {
    format!("{INVALID}\"{description}\"")
}

fn header(headers: &reqwest::header::HeaderMap, name: &str) -> Option<String> {
    headers.get(name).map(|v| v.to_str().unwrap().to_string())
}

/// The api_key cache's (hits, misses). A miss is what sends a lookup to
/// the store (auth::cache), so an unchanged miss count means no store query.
fn api_key_lookups(gw: &Gateway) -> (f64, f64) {
    (
        gw.metric("tollgate_cache_lookups_total{cache=\"api_key\",result=\"hit\"}"),
        gw.metric("tollgate_cache_lookups_total{cache=\"api_key\",result=\"miss\"}"),
    )
}

fn config(up: &Upstream, extra: &str) -> String {
    format!(
        r#"{extra}
services:
  orders: {{ upstreams: ["{up}"] }}
  billing: {{ upstreams: ["{up}"] }}
routes:
  - {{ name: orders, match: {{ path_prefix: /orders }}, service: orders, auth: [api_key] }}
  - {{ name: orders-admin, match: {{ path_prefix: /orders-admin }}, service: orders, auth: [api_key], scopes: [orders:admin] }}
  - {{ name: billing, match: {{ path_prefix: /billing }}, service: billing, auth: [api_key] }}
  - {{ name: jwt-only, match: {{ path_prefix: /jwt }}, service: orders, auth: [jwt] }}
"#,
        up = up.target()
    )
}

struct Setup {
    up: Upstream,
    gw: Gateway,
    admin: Admin,
    client: Value,
    key: String,
}

fn setup(extra: &str) -> Setup {
    let up = Upstream::start("orders");
    let gw = Gateway::start(&config(&up, extra));
    let admin = Admin::new(&gw);
    let client = admin
        .create_client(json!({"name": "Shop", "auth_type": "api_key", "scopes": ["orders:read"]}));
    let key = client["api_key"]["key"].as_str().unwrap().to_string();
    let (status, _) = admin.post(
        "/subscriptions",
        json!({"client_id": client["id"], "service": "orders"}),
    );
    assert_eq!(status, 201);
    Setup {
        up,
        gw,
        admin,
        client,
        key,
    }
}

fn get(gw: &Gateway, path: &str, key: Option<&str>) -> (u16, Value, reqwest::header::HeaderMap) {
    let mut req = client().get(gw.url(path));
    if let Some(k) = key {
        req = req.header("x-api-key", k);
    }
    let r = req.send().unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, r.json().unwrap_or(Value::Null), headers)
}

#[test]
fn a_subscribed_key_passes_with_identity_headers() {
    let s = setup("");
    let r = client()
        .get(s.gw.url("/orders/42"))
        .header("x-api-key", &s.key)
        .header("x-consumer-id", "forged")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = s.up.requests().pop().unwrap();
    assert_eq!(
        seen.header("x-consumer-id").as_deref(),
        s.client["id"].as_str()
    );
    assert_eq!(seen.header_count("x-consumer-id"), 1);
    assert_eq!(seen.header("x-consumer-name").as_deref(), Some("Shop"));
    assert!(seen
        .header("x-subscription-id")
        .unwrap()
        .starts_with("sub_"));
    assert_eq!(
        seen.header("x-api-key"),
        None,
        "the key never reaches the upstream"
    );
}

#[test]
fn a_client_name_beyond_ascii_reaches_the_upstream_as_its_utf8_bytes() {
    let s = setup("");
    let name = "Café Zürich ☕";
    let c = s
        .admin
        .create_client(json!({"name": name, "auth_type": "api_key"}));
    let (status, _) = s.admin.post(
        "/subscriptions",
        json!({"client_id": c["id"], "service": "orders"}),
    );
    assert_eq!(status, 201);
    let (status, _, _) = get(&s.gw, "/orders/1", c["api_key"]["key"].as_str());
    assert_eq!(status, 200);
    let seen = s.up.requests().pop().unwrap();
    assert_eq!(
        seen.headers.get("x-consumer-name").map(|v| v.as_bytes()),
        Some(name.as_bytes())
    );
}

#[test]
fn subscription_and_scope_decide() {
    let s = setup("");
    let (status, body, _) = get(&s.gw, "/billing", Some(&s.key));
    assert_eq!(status, 403);
    assert_eq!(body["error"], "not_subscribed");
    let (status, body, headers) = get(&s.gw, "/orders-admin", Some(&s.key));
    assert_eq!(status, 403);
    assert_eq!(body["error"], "insufficient_scope");
    let www = headers["www-authenticate"].to_str().unwrap();
    assert!(
        www.contains("error=\"insufficient_scope\"") && www.contains("scope=\"orders:admin\""),
        "{www}"
    );
    let (status, body, _) = get(&s.gw, "/jwt", Some(&s.key));
    assert_eq!(status, 401, "a route that takes only JWTs refuses a key");
    assert_eq!(body["error"], "invalid_token");
    assert_eq!(s.up.count(), 0);

    // granting the scope and the subscription takes effect at once
    let id = s.client["id"].as_str().unwrap();
    let (status, v) = s.admin.call(
        "PATCH",
        &format!("/clients/{id}"),
        Some(r#"{"scopes": ["orders:read", "orders:admin"]}"#),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(get(&s.gw, "/orders-admin", Some(&s.key)).0, 200);
    let (status, v) = s.admin.post(
        "/subscriptions",
        json!({"client_id": id, "service": "billing"}),
    );
    assert_eq!(status, 201, "{v}");
    assert_eq!(get(&s.gw, "/billing", Some(&s.key)).0, 200);
}

#[test]
fn admin_changes_take_effect_at_once() {
    let s = setup("");
    let id = s.client["id"].as_str().unwrap();
    let kid = s.client["api_key"]["id"].as_str().unwrap();
    // Every answer after a change must reflect it, whichever worker thread
    // serves it: enough requests on fresh connections that each thread has
    // the key cached (in its own front map too) before each change.
    let all = |want: u16, when: &str| {
        for _ in 0..8 {
            assert_eq!(get(&s.gw, "/orders", Some(&s.key)).0, want, "{when}");
        }
    };
    all(200, "cached now");

    let (status, v) = s.admin.post(&format!("/keys/{kid}/revoke"), json!({}));
    assert_eq!(status, 200, "{v}");
    let (status, revoked_body, revoked_headers) = get(&s.gw, "/orders", Some(&s.key));
    assert_eq!(status, 401);
    all(401, "after the key's revocation");
    let (status, v) = s.admin.post(&format!("/keys/{kid}/renew"), json!({}));
    assert_eq!(status, 200, "{v}");
    all(200, "after the key's renewal");

    let (_, subs) = s.admin.get(&format!("/subscriptions?client_id={id}"));
    let sid = subs["subscriptions"][0]["id"].as_str().unwrap().to_string();
    let (status, v) = s
        .admin
        .call("DELETE", &format!("/subscriptions/{sid}"), None);
    assert_eq!(status, 204, "{v}");
    all(403, "after the subscription's removal");
    let (status, v) = s.admin.post(
        "/subscriptions",
        json!({"client_id": id, "service": "orders"}),
    );
    assert_eq!(status, 201, "{v}");
    all(200, "after a new subscription");

    let (status, v) = s.admin.post(&format!("/clients/{id}/revoke"), json!({}));
    assert_eq!(status, 200, "{v}");
    all(401, "after the client's revocation");

    // an unknown key with a good checksum gets the same answer as a revoked
    // one: same shape and checksum as a real key, never issued here
    let unknown = tollgate::secrets::generate_api_key().expose().to_string();
    assert!(tollgate::secrets::well_formed(
        &unknown,
        tollgate::secrets::API_KEY_PREFIX
    ));
    let (_, misses_before) = api_key_lookups(&s.gw);
    let (status, unknown_body, unknown_headers) = get(&s.gw, "/orders", Some(&unknown));
    assert_eq!(status, 401);
    assert_eq!(
        api_key_lookups(&s.gw).1,
        misses_before + 1.0,
        "the well-formed unknown key was looked up in the store"
    );
    assert_eq!(unknown_body, revoked_body);
    assert_eq!(
        unknown_body["error_description"], "unknown or revoked API key",
        "{unknown_body}"
    );
    assert_eq!(
        header(&unknown_headers, "www-authenticate"),
        header(&revoked_headers, "www-authenticate")
    );
    assert_eq!(
        header(&unknown_headers, "www-authenticate").as_deref(),
        Some(invalid_token_challenge("unknown or revoked API key").as_str())
    );
}

#[test]
fn malformed_keys_never_reach_the_cache_or_store() {
    let s = setup("");
    let mut typo = s.key.clone().into_bytes();
    typo[4] = if typo[4] == b'A' { b'B' } else { b'A' };
    let typo = String::from_utf8(typo).unwrap();
    let big = "tg_".to_string() + &"A".repeat(5000);
    let lookups_before = api_key_lookups(&s.gw);
    let hostile = [
        typo.as_str(),
        "tg_short",
        "not-a-key",
        "' OR 1=1 --",
        big.as_str(),
    ];
    for k in hostile {
        let (status, body, headers) = get(&s.gw, "/orders", Some(k));
        assert_eq!(status, 401, "{k:.40}");
        assert_eq!(body["error"], "invalid_token", "{k:.40}");
        assert_eq!(body["error_description"], "malformed API key", "{k:.40}");
        assert_eq!(
            header(&headers, "www-authenticate").as_deref(),
            Some(invalid_token_challenge("malformed API key").as_str()),
            "{k:.40}"
        );
        assert!(!body.to_string().contains(k), "the key is not echoed");
    }
    // octets an HTTP library refuses to send go over a raw socket: a key
    // with octets beyond ASCII is a malformed key...
    let high = raw_request(
        s.gw.proxy,
        b"GET /orders HTTP/1.1\r\nHost: t\r\nX-API-Key: tg_\xff\xfe\x80AAAAAAAAAAAAAAAAAAAAAAAAA\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    );
    assert_eq!(high.status, 401, "{high:?}");
    assert_eq!(high.json()["error_description"], "malformed API key");
    // ...and NUL octets make the request head malformed: refused before
    // any credential is read
    let nul = raw_request(
        s.gw.proxy,
        b"GET /orders HTTP/1.1\r\nHost: t\r\nX-API-Key: tg_\x00\x00\r\n\r\n",
        Duration::from_secs(5),
    );
    assert_eq!(nul.status, 400, "{nul:?}");
    assert_eq!(nul.json()["error"], "bad_request", "{nul:?}");
    assert_eq!(nul.header("connection").as_deref(), Some("close"));
    assert!(nul.closed, "{nul:?}");

    assert_eq!(
        api_key_lookups(&s.gw),
        lookups_before,
        "no cache lookup (and so no store query) for a malformed key"
    );
    assert_eq!(
        s.gw.metric("tollgate_auth_failures_total{reason=\"malformed_key\"}"),
        6.0,
        "every malformed key is counted as such"
    );
    assert_eq!(s.up.count(), 0);

    // the probe works: a well-formed key unknown here is a miss, i.e. a
    // store query
    let unknown = tollgate::secrets::generate_api_key().expose().to_string();
    assert_eq!(get(&s.gw, "/orders", Some(&unknown)).0, 401);
    assert_eq!(
        api_key_lookups(&s.gw),
        (lookups_before.0, lookups_before.1 + 1.0)
    );
}

#[test]
fn ambiguous_credentials_are_400() {
    let s = setup("");
    // a key in the query string is not a credential (and is never logged)
    let (status, body, headers) = get(
        &s.gw,
        &format!("/orders?api_key={}&x-api-key={}", s.key, s.key),
        None,
    );
    assert_eq!(status, 401);
    assert_eq!(body["error"], "missing_credentials");
    assert_eq!(
        header(&headers, "www-authenticate").as_deref(),
        Some("Bearer realm=\"tollgate\"")
    );
    let two_keys = client()
        .get(s.gw.url("/orders"))
        .header("x-api-key", &s.key)
        .header("x-api-key", &s.key);
    let key_and_token = client()
        .get(s.gw.url("/orders"))
        .header("x-api-key", &s.key)
        .header("authorization", "Bearer abc");
    let two_tokens = client()
        .get(s.gw.url("/orders"))
        .header("authorization", "Bearer a")
        .header("authorization", "Bearer b");
    for (what, req) in [
        ("two keys", two_keys),
        ("a key and a token", key_and_token),
        ("two tokens", two_tokens),
    ] {
        let r = req.send().unwrap();
        assert_eq!(r.status(), 400, "{what}");
        assert_eq!(
            header(r.headers(), "connection").as_deref(),
            Some("close"),
            "{what}"
        );
        let body: Value = r.json().unwrap();
        assert_eq!(body["error"], "bad_request", "{what}: {body}");
    }
    assert_eq!(s.up.count(), 0);
}

#[test]
fn expired_keys_are_refused() {
    let s = setup("auth:\n  api_key: { default_ttl: 1s }\n");
    assert!(
        eventually(Duration::from_secs(4), || get(
            &s.gw,
            "/orders",
            Some(&s.key)
        )
        .0 == 401),
        "the key expires"
    );
    let (_, body, _) = get(&s.gw, "/orders", Some(&s.key));
    assert_eq!(body["error_description"], "API key expired");
    let kid = s.client["api_key"]["id"].as_str().unwrap();
    let (_, keys) = s.admin.get(&format!(
        "/clients/{}/keys",
        s.client["id"].as_str().unwrap()
    ));
    assert_eq!(keys["keys"][0]["status"], "expired");
    // renewing gives it a fresh expiry from now
    let (status, v) = s.admin.post(&format!("/keys/{kid}/renew"), json!({}));
    assert_eq!(status, 200, "{v}");
    assert_eq!(get(&s.gw, "/orders", Some(&s.key)).0, 200);
}

#[test]
fn usage_is_recorded_in_batches() {
    let s = setup("");
    for _ in 0..7 {
        assert_eq!(get(&s.gw, "/orders", Some(&s.key)).0, 200);
    }
    let id = s.client["id"].as_str().unwrap();
    let recorded = eventually(Duration::from_secs(8), || {
        let (_, keys) = s.admin.get(&format!("/clients/{id}/keys"));
        keys["keys"][0]["use_count"] == 7 && keys["keys"][0]["last_used_at"].as_i64().is_some()
    });
    assert!(recorded, "use_count and last_used_at reach the store");
    assert!(s.gw.metric("tollgate_cache_lookups_total{cache=\"api_key\",result=\"hit\"}") >= 6.0);
}
