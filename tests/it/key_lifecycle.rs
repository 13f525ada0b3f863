//! Key lifecycle over real HTTP: keys rolled with a grace period, the use
//! of each credential during it, where a client's credentials may be used
//! from, token claims forwarded as headers, usage over time, and keys
//! about to expire.

use std::time::Duration;

use serde_json::{json, Value};
use tollgate::auth::keys;
use tollgate::config::SigningAlgorithm;

use crate::auth_jwt::{key_set, sign, JwksServer};
use crate::harness::{client, eventually, Admin, Gateway, Upstream};

const IDP_ISS: &str = "https://idp.test/realms/corp";

fn config(up: &Upstream, jwks_url: &str) -> String {
    format!(
        r#"SERVER_EXTRA:
  trusted_proxies: ["127.0.0.1/32"]
auth:
  api_key: {{ default_ttl: 3d }}
  issuers:
    - {{ name: corp, issuer: "{IDP_ISS}", jwks_url: "{jwks_url}", audiences: [orders-api], algorithms: [ES256], client_claim: azp }}
plans:
  small: {{ quota: 3/day }}
  tight: {{ rate: 2/min }}
services:
  orders: {{ upstreams: ["{up}"] }}
  quota: {{ upstreams: ["{up}"] }}
routes:
  - {{ name: orders, match: {{ path_prefix: /orders }}, service: orders, auth: [api_key, jwt],
       forward_claims: {{ sub: X-User-Id, "realm_access.roles": X-User-Roles, "missing.claim": X-Missing }} }}
  - {{ name: quota, match: {{ path_prefix: /quota }}, service: quota, auth: [api_key] }}
"#,
        up = up.target()
    )
}

struct World {
    up: Upstream,
    gw: Gateway,
    admin: Admin,
    idp: tollgate::store::SigningKey,
    _jwks: JwksServer,
}

fn world() -> World {
    let up = Upstream::start("up");
    let idp = keys::generate(SigningAlgorithm::Es256).unwrap();
    let jwks = JwksServer::start(key_set(&[&idp]));
    let gw = Gateway::start(&config(&up, &jwks.url));
    let admin = Admin::new(&gw);
    World {
        up,
        gw,
        admin,
        idp,
        _jwks: jwks,
    }
}

/// An API-key client subscribed to `service` (with `plan`): (id, key id, key).
fn keyed(w: &World, service: &str, plan: Option<&str>) -> (String, String, String) {
    let c = w
        .admin
        .create_client(json!({"name": "shop", "auth_type": "api_key"}));
    let (s, v) = w.admin.post(
        "/subscriptions",
        json!({"client_id": c["id"], "service": service, "plan": plan}),
    );
    assert_eq!(s, 201, "{v}");
    (
        c["id"].as_str().unwrap().into(),
        c["api_key"]["id"].as_str().unwrap().into(),
        c["api_key"]["key"].as_str().unwrap().into(),
    )
}

fn key_of(w: &World, client: &str, key_id: &str) -> Value {
    let (_, keys) = w.admin.get(&format!("/clients/{client}/keys"));
    keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == key_id)
        .cloned()
        .unwrap_or(Value::Null)
}

/// (status, error code) of `GET path` with these headers.
fn get(w: &World, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut req = client().get(w.gw.url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().unwrap();
    let status = r.status().as_u16();
    let body: Value = r.json().unwrap_or(Value::Null);
    (status, body["error"].as_str().unwrap_or("").to_string())
}

#[test]
fn a_rolled_key_works_through_its_grace_period_then_expires() {
    let w = world();
    let (client_id, old_id, old) = keyed(&w, "orders", None);
    assert_eq!(w.gw.key_status("/orders/1", &old), 200);
    let (s, new) = w.admin.post(
        &format!("/keys/{old_id}/roll"),
        json!({"grace_period_seconds": 2}),
    );
    assert_eq!(s, 201, "{new}");
    let new_key = new["key"].as_str().unwrap();
    assert_eq!(new["name"], "default");
    assert!(new["previous_valid_until"].as_i64().unwrap() <= tollgate::store::now() + 2);
    // both work during the grace period; the old one shows it
    assert_eq!(w.gw.key_status("/orders/1", new_key), 200);
    assert_eq!(w.gw.key_status("/orders/1", &old), 200);
    let listed = key_of(&w, &client_id, &old_id);
    assert_eq!(listed["status"], "expiring", "{listed}");
    assert_eq!(listed["replaced_by"], new["id"]);
    // is the old key still used? its use is counted (flushed every 2 s)
    assert!(
        eventually(Duration::from_secs(6), || key_of(&w, &client_id, &old_id)
            ["use_count"]
            .as_i64()
            .unwrap_or(0)
            >= 2),
        "{}",
        key_of(&w, &client_id, &old_id)
    );
    // then it stops, and says so
    assert!(eventually(Duration::from_secs(5), || w
        .gw
        .key_status("/orders/1", &old)
        == 401));
    assert_eq!(key_of(&w, &client_id, &old_id)["status"], "expired");
    assert_eq!(w.gw.key_status("/orders/1", new_key), 200);

    // no grace: the old key stops at once
    let new_id = new["id"].as_str().unwrap();
    let (s, newer) = w.admin.post(&format!("/keys/{new_id}/roll"), json!({}));
    assert_eq!(s, 201, "{newer}");
    assert_eq!(w.gw.key_status("/orders/1", new_key), 401);
    assert_eq!(
        w.gw.key_status("/orders/1", newer["key"].as_str().unwrap()),
        200
    );
    // a revoked key cannot be rolled; bad bodies and ids
    let newer_id = newer["id"].as_str().unwrap();
    w.admin.post(&format!("/keys/{newer_id}/revoke"), json!({}));
    let (s, v) = w.admin.post(&format!("/keys/{newer_id}/roll"), json!({}));
    assert_eq!((s, v["error"].as_str()), (409, Some("conflict")));
    assert_eq!(w.admin.post("/keys/key_nope/roll", json!({})).0, 404);
    let (s, _) = w.admin.post(
        &format!("/keys/{old_id}/roll"),
        json!({"grace_period_seconds": -1}),
    );
    assert_eq!(s, 400);
    let (_, audit) = w.admin.get("/audit?limit=20");
    assert!(audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["action"] == "key.roll" && e["target"] == old_id.as_str()));
}

#[test]
fn an_old_secret_in_its_grace_period_reports_its_use() {
    let w = world();
    let c = w
        .admin
        .create_client(json!({"name": "batch", "auth_type": "oauth2"}));
    let id = c["id"].as_str().unwrap();
    let old = c["client_secret"].as_str().unwrap();
    let (s, rotated) = w.admin.post(
        &format!("/clients/{id}/secret"),
        json!({"grace_period_seconds": 600}),
    );
    assert_eq!(s, 200, "{rotated}");
    let token = |secret: &str| {
        client()
            .post(w.gw.url("/oauth2/token"))
            .basic_auth(id, Some(secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(token(old), 200);
    assert_eq!(token(old), 200);
    assert_eq!(token(rotated["client_secret"].as_str().unwrap()), 200);
    let secrets = || w.admin.get(&format!("/clients/{id}")).1["secrets"].clone();
    assert!(
        eventually(Duration::from_secs(6), || {
            let s = secrets();
            let used = |expiring: bool| {
                s.as_array()
                    .unwrap()
                    .iter()
                    .find(|x| x["expires_at"].is_null() != expiring)
                    .map(|x| (x["use_count"].as_i64().unwrap(), x["last_used_at"].is_i64()))
            };
            used(true) == Some((2, true)) && used(false) == Some((1, true))
        }),
        "{}",
        secrets()
    );
    // never a secret or its hash
    let text = secrets().to_string();
    assert!(!text.contains(old) && !text.contains("hash"), "{text}");
}

#[test]
fn restrictions_refuse_before_any_allowance_is_taken() {
    let w = world();
    let (id, _, key) = keyed(&w, "quota", Some("small"));
    let patch = |body: Value| {
        w.admin
            .call("PATCH", &format!("/clients/{id}"), Some(&body.to_string()))
    };
    let k = [("x-api-key", key.as_str())];
    // only from 10.0.0.0/8: the peer 127.0.0.1 is refused, and uses nothing
    let (s, c) = patch(json!({"allowed_cidrs": ["10.0.0.0/8", "2001:db8::/32"]}));
    assert_eq!(s, 200, "{c}");
    assert_eq!(c["allowed_cidrs"], json!(["10.0.0.0/8", "2001:db8::/32"]));
    for _ in 0..5 {
        assert_eq!(get(&w, "/quota/x", &k), (403, "address_not_allowed".into()));
    }
    // behind a trusted proxy, the rightmost untrusted X-Forwarded-For hop
    let via = |xff: &str| get(&w, "/quota/x", &[k[0], ("x-forwarded-for", xff)]);
    assert_eq!(via("10.1.2.3").0, 200);
    assert_eq!(via("10.1.2.3, 192.0.2.7").1, "address_not_allowed");
    // referers too: no Referer or Origin, or another site, is refused
    let (s, _) =
        patch(json!({"allowed_cidrs": [], "allowed_referers": ["https://app.example.com/*"]}));
    assert_eq!(s, 200);
    assert_eq!(get(&w, "/quota/x", &k).1, "referer_not_allowed");
    assert_eq!(
        get(
            &w,
            "/quota/x",
            &[
                k[0],
                ("referer", "https://evil.example.net/app.example.com/")
            ]
        )
        .1,
        "referer_not_allowed"
    );
    assert_eq!(
        get(
            &w,
            "/quota/x",
            &[k[0], ("referer", "https://app.example.com/page")]
        )
        .0,
        200
    );
    assert_eq!(
        get(
            &w,
            "/quota/x",
            &[k[0], ("origin", "https://app.example.com")]
        )
        .0,
        200
    );
    // the quota of 3 a day: the seven refusals took none of it
    assert_eq!(
        get(
            &w,
            "/quota/x",
            &[k[0], ("origin", "https://app.example.com")]
        )
        .1,
        "rate_limited"
    );
    assert!(w.gw.metric(r#"tollgate_auth_failures_total{reason="address_not_allowed"}"#) >= 6.0);
    assert!(w.gw.metric(r#"tollgate_auth_failures_total{reason="referer_not_allowed"}"#) >= 2.0);
    assert_eq!(w.up.count(), 3, "refused requests reach nothing");
    // bad input
    for body in [
        json!({"allowed_cidrs": ["10.0.0.0/33"]}),
        json!({"allowed_cidrs": ["not an address"]}),
        json!({"allowed_referers": ["app.example.com"]}),
        json!({"allowed_referers": ["https://"]}),
        json!({"allowed_referers": ["https://a b/"]}),
        json!({"allowed_cidrs": "10.0.0.0/8"}),
    ] {
        let (s, v) = patch(body.clone());
        assert_eq!(
            (s, v["error"].as_str()),
            (400, Some("bad_request")),
            "{body}: {v}"
        );
    }
}

#[test]
fn token_claims_reach_the_upstream_and_forged_headers_do_not() {
    let w = world();
    let (s, c) = w.admin.post(
        "/clients",
        json!({"name": "partner", "auth_type": "external", "issuer": "corp", "external_id": "partner-app"}),
    );
    assert_eq!(s, 201, "{c}");
    w.admin.post(
        "/subscriptions",
        json!({"client_id": c["id"], "service": "orders"}),
    );
    let now = tollgate::store::now();
    let token = sign(
        &w.idp,
        json!({"kid": w.idp.kid, "typ": "JWT"}),
        json!({"iss": IDP_ISS, "aud": "orders-api", "azp": "partner-app", "sub": "user-7",
               "realm_access": {"roles": ["reader", "writer"]}, "exp": now + 300, "iat": now}),
    );
    let r = client()
        .get(w.gw.url("/orders/claims"))
        .bearer_auth(&token)
        .header("x-user-id", "forged")
        .header("x-missing", "forged")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let seen = w.up.requests().into_iter().last().unwrap();
    assert_eq!(seen.header("x-user-id").as_deref(), Some("user-7"));
    assert_eq!(
        seen.header("x-user-roles").as_deref(),
        Some("reader,writer")
    );
    assert_eq!(seen.header("x-missing"), None);
    assert_eq!(seen.header_count("x-user-id"), 1);
    // an API key on the same route: the client's own headers still go
    let (_, _, key) = keyed(&w, "orders", None);
    let r = client()
        .get(w.gw.url("/orders/key"))
        .header("x-api-key", &key)
        .header("x-user-id", "forged")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let seen = w.up.requests().into_iter().last().unwrap();
    assert_eq!(seen.header("x-user-id"), None);
}

#[test]
fn usage_is_counted_by_hour_key_and_outcome() {
    let w = world();
    let (id, key_id, key) = keyed(&w, "orders", Some("tight"));
    // 2 pass (rate 2/min), 1 is rate limited
    for _ in 0..2 {
        assert_eq!(w.gw.key_status("/orders/1", &key), 200);
    }
    assert_eq!(w.gw.key_status("/orders/1", &key), 429);
    let usage = |q: &str| w.admin.get(&format!("/clients/{id}/usage{q}"));
    assert!(
        eventually(Duration::from_secs(6), || {
            let (_, u) = usage("");
            u["buckets"].as_array().is_some_and(|b| !b.is_empty())
        }),
        "no usage flushed"
    );
    let (s, u) = usage("?step=hour");
    assert_eq!(s, 200, "{u}");
    let b = &u["buckets"][0];
    assert_eq!(b["service"], "orders");
    assert_eq!(b["key_id"], key_id.as_str());
    assert_eq!(
        [&b["2xx"], &b["3xx"], &b["4xx"], &b["429"], &b["5xx"]],
        [&json!(2), &json!(0), &json!(0), &json!(1), &json!(0)]
    );
    let start = b["start"].as_i64().unwrap();
    assert_eq!(start % 3600, 0);
    let (_, day) = usage("?step=day");
    assert_eq!(day["buckets"][0]["start"].as_i64().unwrap() % 86_400, 0);
    assert_eq!(day["buckets"][0]["2xx"], 2);
    let (_, none) = usage(&format!("?from={}&to={}", start - 7200, start - 3600));
    assert_eq!(none["buckets"], json!([]));
    let hour = humantime::format_rfc3339(std::time::UNIX_EPOCH + Duration::from_secs(start as u64));
    let (s, rfc) = usage(&format!("?from={hour}"));
    assert_eq!(
        (s, rfc["buckets"].as_array().map(Vec::len)),
        (200, Some(1)),
        "{rfc}"
    );
    // bad input, each a 400
    for q in [
        "?from=200&to=100",
        "?from=0&to=40000000",
        "?step=minute",
        "?from=yesterday",
    ] {
        let (s, v) = usage(q);
        assert_eq!(
            (s, v["error"].as_str()),
            (400, Some("bad_request")),
            "{q}: {v}"
        );
    }
    assert_eq!(w.admin.get("/clients/cli_nope/usage").0, 404);
}

#[test]
fn keys_about_to_expire_are_listed_and_counted() {
    let w = world();
    // default_ttl is 3 days: the key expires within 7
    let (_, key_id, key) = keyed(&w, "orders", None);
    let (s, v) = w.admin.get("/keys?expiring_within=7d");
    assert_eq!(s, 200, "{v}");
    let keys = v["keys"].as_array().unwrap();
    assert!(keys.iter().any(|k| k["id"] == key_id.as_str()), "{v}");
    assert!(!v.to_string().contains(&key), "never the key itself");
    let (_, v) = w.admin.get("/keys?expiring_within=1d");
    assert_eq!(v["keys"], json!([]));
    for q in ["", "?expiring_within=soon", "?expiring_within=400d"] {
        assert_eq!(w.admin.get(&format!("/keys{q}")).0, 400, "{q}");
    }
    assert!(
        eventually(Duration::from_secs(15), || w
            .gw
            .metric_opt(r#"tollgate_api_keys_expiring{within="7d"}"#)
            .is_some_and(|n| n >= 1.0)),
        "the gauge counts the key"
    );
}
