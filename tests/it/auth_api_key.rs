//! API keys at the proxy: authentication, authorization by subscription and
//! scope, immediate effect of admin changes, batched usage, hostile keys.

use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::{client, eventually, Admin, Gateway, Upstream};

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
    s.admin.call(
        "PATCH",
        &format!("/clients/{id}"),
        Some(r#"{"scopes": ["orders:read", "orders:admin"]}"#),
    );
    assert_eq!(get(&s.gw, "/orders-admin", Some(&s.key)).0, 200);
    s.admin.post(
        "/subscriptions",
        json!({"client_id": id, "service": "billing"}),
    );
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

    s.admin.post(&format!("/keys/{kid}/revoke"), json!({}));
    let (status, revoked_body, _) = get(&s.gw, "/orders", Some(&s.key));
    assert_eq!(status, 401);
    all(401, "after the key's revocation");
    s.admin.post(&format!("/keys/{kid}/renew"), json!({}));
    all(200, "after the key's renewal");

    let (_, subs) = s.admin.get(&format!("/subscriptions?client_id={id}"));
    let sid = subs["subscriptions"][0]["id"].as_str().unwrap().to_string();
    s.admin
        .call("DELETE", &format!("/subscriptions/{sid}"), None);
    all(403, "after the subscription's removal");
    s.admin.post(
        "/subscriptions",
        json!({"client_id": id, "service": "orders"}),
    );
    all(200, "after a new subscription");

    s.admin.post(&format!("/clients/{id}/revoke"), json!({}));
    all(401, "after the client's revocation");

    // an unknown key with a good checksum gets the same body as a revoked one
    let other = Admin::new(&s.gw).create_client(json!({"name": "Tmp", "auth_type": "api_key"}));
    let tmp_key = other["api_key"]["key"].as_str().unwrap().to_string();
    let unknown = {
        // same shape and checksum as a real key, but never issued by this gateway
        let g = Gateway::start(&config(&s.up, ""));
        let c = Admin::new(&g).create_client(json!({"name": "Elsewhere", "auth_type": "api_key"}));
        c["api_key"]["key"].as_str().unwrap().to_string()
    };
    let (status, unknown_body, _) = get(&s.gw, "/orders", Some(&unknown));
    assert_eq!(status, 401);
    assert_eq!(unknown_body, revoked_body);
    assert_ne!(tmp_key, unknown);
}

#[test]
fn malformed_keys_never_reach_the_cache_or_store() {
    let s = setup("");
    let mut typo = s.key.clone().into_bytes();
    typo[4] = if typo[4] == b'A' { b'B' } else { b'A' };
    let typo = String::from_utf8(typo).unwrap();
    let hostile = [
        typo.as_str(),
        "tg_short",
        "not-a-key",
        "' OR 1=1 --",
        "tg_\u{0}\u{0}",
    ];
    for k in hostile {
        let mut req = client().get(s.gw.url("/orders"));
        if let Ok(v) = reqwest::header::HeaderValue::from_bytes(k.as_bytes()) {
            req = req.header("x-api-key", v);
        }
        let r = req.send().unwrap();
        assert_eq!(r.status(), 401, "{k:?}");
    }
    let big = "tg_".to_string() + &"A".repeat(5000);
    assert_eq!(get(&s.gw, "/orders", Some(&big)).0, 401);
    assert_eq!(
        s.gw.metric("tollgate_cache_lookups_total"),
        0.0,
        "no cache lookup for a malformed key"
    );
    assert!(s.gw.metric("tollgate_auth_failures_total{reason=\"malformed_key\"}") >= 5.0);
    let (_, body, _) = get(&s.gw, "/orders", Some(&typo));
    assert_eq!(body["error_description"], "malformed API key");
    assert!(!body.to_string().contains(&typo));
    assert_eq!(s.up.count(), 0);
}

#[test]
fn ambiguous_credentials_are_400() {
    let s = setup("");
    // a key in the query string is not a credential (and is never logged)
    let (status, body, _) = get(
        &s.gw,
        &format!("/orders?api_key={}&x-api-key={}", s.key, s.key),
        None,
    );
    assert_eq!(status, 401);
    assert_eq!(body["error"], "missing_credentials");
    let r = client()
        .get(s.gw.url("/orders"))
        .header("x-api-key", &s.key)
        .header("x-api-key", &s.key)
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = client()
        .get(s.gw.url("/orders"))
        .header("x-api-key", &s.key)
        .header("authorization", "Bearer abc")
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = client()
        .get(s.gw.url("/orders"))
        .header("authorization", "Bearer a")
        .header("authorization", "Bearer b")
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
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
    s.admin.post(&format!("/keys/{kid}/renew"), json!({}));
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
