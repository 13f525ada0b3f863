//! The built-in token endpoint, JWKS and metadata (SPEC §5), and tokens it
//! issues used at the proxy.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::{json, Value};

use crate::harness::{client, Admin, Gateway, Upstream};

const ISS: &str = "http://tollgate.test";

struct Setup {
    up: Upstream,
    gw: Gateway,
    admin: Admin,
    id: String,
    secret: String,
}

fn setup() -> Setup {
    let up = Upstream::start("orders");
    let gw = Gateway::start(&format!(
        r#"
auth:
  tokens: {{ issuer: "{ISS}", audience: tollgate, ttl: 10m }}
services:
  orders: {{ upstreams: ["{}"] }}
routes:
  - {{ name: orders, match: {{ path_prefix: /orders }}, service: orders, auth: [jwt] }}
  - {{ name: write, match: {{ path_prefix: /write }}, service: orders, auth: [jwt], scopes: [orders:write] }}
"#,
        up.target()
    ));
    let admin = Admin::new(&gw);
    let c = admin.create_client(
        json!({"name": "Batch", "auth_type": "oauth2", "scopes": ["orders:read", "orders:write"]}),
    );
    let (status, v) = admin.post(
        "/subscriptions",
        json!({"client_id": c["id"], "service": "orders"}),
    );
    assert_eq!(status, 201, "{v}");
    Setup {
        up,
        gw,
        admin,
        id: c["id"].as_str().unwrap().to_string(),
        secret: c["client_secret"].as_str().unwrap().to_string(),
    }
}

fn token_call(
    s: &Setup,
    basic: Option<(&str, &str)>,
    form: &str,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = client()
        .post(s.gw.url("/oauth2/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.to_string());
    if let Some((id, secret)) = basic {
        req = req.header(
            "authorization",
            format!("Basic {}", STANDARD.encode(format!("{id}:{secret}"))),
        );
    }
    let r = req.send().unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.json().unwrap_or(Value::Null))
}

fn payload(token: &str) -> (Value, Value) {
    let parts: Vec<&str> = token.split('.').collect();
    let h = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    let p = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    (h, p)
}

#[test]
fn client_credentials_by_basic_and_post_and_use_at_the_proxy() {
    let s = setup();
    let (status, headers, body) = token_call(
        &s,
        Some((&s.id, &s.secret)),
        "grant_type=client_credentials",
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 600);
    assert_eq!(body["scope"], "orders:read orders:write");
    assert!(body.get("refresh_token").is_none());
    let token = body["access_token"].as_str().unwrap();
    let (h, p) = payload(token);
    assert_eq!(h["typ"], "at+jwt");
    assert!(h["kid"].as_str().is_some());
    assert_eq!(p["iss"], ISS);
    assert_eq!(p["sub"], s.id.as_str());
    assert_eq!(p["client_id"], s.id.as_str());
    assert_eq!(p["aud"], "tollgate");
    assert!(p["jti"].as_str().is_some());
    assert_eq!(p["exp"].as_i64().unwrap() - p["iat"].as_i64().unwrap(), 600);

    let r = client()
        .get(s.gw.url("/orders/1"))
        .bearer_auth(token)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        s.up.requests()
            .pop()
            .unwrap()
            .header("x-consumer-id")
            .as_deref(),
        Some(s.id.as_str())
    );

    // client_secret_post, with a narrower scope
    let form = format!(
        "grant_type=client_credentials&client_id={}&client_secret={}&scope=orders:read+unknown",
        s.id, s.secret
    );
    let (status, _, body) = token_call(&s, None, &form);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "orders:read");
    let narrow = body["access_token"].as_str().unwrap();
    assert_eq!(s.gw.bearer_status("/write", narrow), 403);

    // RFC 6749 §2.3.1: the Basic credentials are form-encoded first
    let encoded_id = s.id.replace('_', "%5F");
    let (status, _, _) = token_call(
        &s,
        Some((&encoded_id, &s.secret)),
        "grant_type=client_credentials",
    );
    assert_eq!(status, 200);

    assert_eq!(s.gw.metric("tollgate_tokens_issued_total"), 3.0);
}

#[test]
fn every_error_code() {
    let s = setup();
    let good = Some((s.id.as_str(), s.secret.as_str()));
    let (status, headers, body) = token_call(
        &s,
        Some((&s.id, "tgs_wrong")),
        "grant_type=client_credentials",
    );
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    assert_eq!(headers["www-authenticate"], "Basic realm=\"tollgate\"");
    let other = s
        .admin
        .create_client(json!({"name": "O2", "auth_type": "oauth2"}));
    let (status, headers, body) = token_call(
        &s,
        None,
        &format!(
            "grant_type=client_credentials&client_id={}&client_secret={}",
            s.id,
            other["client_secret"].as_str().unwrap()
        ),
    );
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client")),
        "another client's secret"
    );
    assert!(
        headers.get("www-authenticate").is_none(),
        "no Basic challenge when Basic was not used"
    );
    let (status, _, body) = token_call(&s, None, "grant_type=client_credentials");
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );

    let both = format!("grant_type=client_credentials&client_secret={}", s.secret);
    assert_eq!(token_call(&s, good, &both).2["error"], "invalid_request");
    assert_eq!(token_call(&s, good, "").2["error"], "invalid_request");
    assert_eq!(
        token_call(
            &s,
            good,
            "grant_type=client_credentials&grant_type=password"
        )
        .2["error"],
        "invalid_request"
    );
    let (status, _, body) = token_call(&s, good, "grant_type=password&username=a&password=b");
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unsupported_grant_type"))
    );
    let (status, _, body) = token_call(&s, good, "grant_type=client_credentials&scope=admin");
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_scope"))
    );
    let r = client()
        .post(s.gw.url("/oauth2/token"))
        .body("grant_type=client_credentials")
        .send()
        .unwrap();
    assert_eq!(r.status(), 400, "not a form");
    let r = client().get(s.gw.url("/oauth2/token")).send().unwrap();
    assert_eq!(r.status(), 405);
    let keyed = s
        .admin
        .create_client(json!({"name": "Keyed", "auth_type": "api_key"}));
    let (status, _, body) = token_call(
        &s,
        Some((
            keyed["id"].as_str().unwrap(),
            tollgate::secrets::generate_client_secret().expose(),
        )),
        "grant_type=client_credentials",
    );
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unauthorized_client"))
    );

    // rotation: the old secret stops at once, or after a grace period
    let (status, rotated) = s
        .admin
        .post(&format!("/clients/{}/secret", s.id), json!({}));
    assert_eq!(status, 200, "{rotated}");
    assert_eq!(token_call(&s, good, "grant_type=client_credentials").0, 401);
    let new_secret = rotated["client_secret"].as_str().unwrap().to_string();
    assert_eq!(
        token_call(
            &s,
            Some((&s.id, &new_secret)),
            "grant_type=client_credentials"
        )
        .0,
        200
    );
    let (status, graced) = s.admin.post(
        &format!("/clients/{}/secret", s.id),
        json!({"grace_period_seconds": 60}),
    );
    assert_eq!(status, 200, "{graced}");
    let newest = graced["client_secret"]
        .as_str()
        .unwrap_or_else(|| panic!("the rotation answers the new secret: {graced}"))
        .to_string();
    assert!(
        newest.starts_with("tgs_") && newest != new_secret,
        "{graced}"
    );
    assert_eq!(
        token_call(&s, Some((&s.id, &newest)), "grant_type=client_credentials").0,
        200,
        "the new secret works at once"
    );
    assert_eq!(
        token_call(
            &s,
            Some((&s.id, &new_secret)),
            "grant_type=client_credentials"
        )
        .0,
        200,
        "old secret in its grace period"
    );
    assert_eq!(
        token_call(&s, good, "grant_type=client_credentials").0,
        401,
        "the grace period is the replaced secret's only, not an older one's"
    );

    // a revoked client gets nothing
    let (status, v) = s
        .admin
        .post(&format!("/clients/{}/revoke", s.id), json!({}));
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        token_call(
            &s,
            Some((&s.id, &new_secret)),
            "grant_type=client_credentials"
        )
        .0,
        401
    );
    assert_eq!(s.up.count(), 0);
}

#[test]
fn jwks_and_metadata() {
    let s = setup();
    let r = client()
        .get(s.gw.url("/.well-known/jwks.json"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let jwks: Value = r.json().unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    for k in keys {
        assert!(
            k.get("d").is_none() && k.get("k").is_none(),
            "public keys only: {k}"
        );
        assert_eq!(k["alg"], "ES256");
    }
    let (_, _, body) = token_call(
        &s,
        Some((&s.id, &s.secret)),
        "grant_type=client_credentials",
    );
    let (h, _) = payload(body["access_token"].as_str().unwrap());
    assert_eq!(h["kid"], keys[0]["kid"]);

    let meta: Value = client()
        .get(s.gw.url("/.well-known/oauth-authorization-server"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(meta["issuer"], ISS);
    assert_eq!(meta["token_endpoint"], format!("{ISS}/oauth2/token"));
    assert_eq!(meta["jwks_uri"], format!("{ISS}/.well-known/jwks.json"));
    assert_eq!(meta["grant_types_supported"], json!(["client_credentials"]));
    assert_eq!(
        meta["token_endpoint_auth_methods_supported"],
        json!(["client_secret_basic", "client_secret_post"])
    );
}

fn form_call(s: &Setup, path: &str, basic: (&str, &str), form: &str) -> (u16, Value) {
    let r = client()
        .post(s.gw.url(path))
        .header("content-type", "application/x-www-form-urlencoded")
        .header(
            "authorization",
            format!(
                "Basic {}",
                STANDARD.encode(format!("{}:{}", basic.0, basic.1))
            ),
        )
        .body(form.to_string())
        .send()
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

#[test]
fn introspection_and_revocation() {
    let s = setup();
    let me = (s.id.as_str(), s.secret.as_str());
    let token = token_call(&s, Some(me), "grant_type=client_credentials").2["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, body) = form_call(&s, "/oauth2/introspect", me, &format!("token={token}"));
    assert_eq!(status, 200);
    assert_eq!(body["active"], true);
    assert_eq!(body["client_id"], s.id.as_str());
    assert_eq!(body["scope"], "orders:read orders:write");
    for junk in ["nonsense", "a.b.c", ""] {
        let (status, body) = form_call(&s, "/oauth2/introspect", me, &format!("token={junk}"));
        assert_eq!((status, body), (200, json!({"active": false})), "{junk:?}");
    }
    let (status, body) = form_call(
        &s,
        "/oauth2/introspect",
        (&s.id, "tgs_wrong"),
        &format!("token={token}"),
    );
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );

    // another client cannot revoke my token
    let other = s
        .admin
        .create_client(json!({"name": "Other", "auth_type": "oauth2"}));
    let theirs = (
        other["id"].as_str().unwrap(),
        other["client_secret"].as_str().unwrap(),
    );
    assert_eq!(
        form_call(&s, "/oauth2/revoke", theirs, &format!("token={token}")).0,
        200
    );
    assert_eq!(s.gw.bearer_status("/orders/1", &token), 200);
    // an unknown token is 200
    assert_eq!(form_call(&s, "/oauth2/revoke", me, "token=unknown").0, 200);
    // my own revocation is refused by the proxy at once
    assert_eq!(
        form_call(&s, "/oauth2/revoke", me, &format!("token={token}")).0,
        200
    );
    assert_eq!(s.gw.bearer_status("/orders/1", &token), 401);
    assert_eq!(
        form_call(&s, "/oauth2/introspect", me, &format!("token={token}")).1,
        json!({"active": false})
    );
    assert_eq!(
        client()
            .get(s.gw.url("/oauth2/revoke"))
            .send()
            .unwrap()
            .status(),
        405
    );
}

#[test]
fn signing_key_rotation_keeps_old_tokens_valid() {
    let s = setup();
    let me = Some((s.id.as_str(), s.secret.as_str()));
    let old = token_call(&s, me, "grant_type=client_credentials").2["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, rotated) = s.admin.post("/signing-keys/rotate", json!({}));
    assert_eq!(status, 200, "{rotated}");
    assert!(rotated["public_jwk"].get("d").is_none());
    let new = token_call(&s, me, "grant_type=client_credentials").2["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(payload(&new).0["kid"], rotated["kid"]);
    assert_ne!(payload(&old).0["kid"], rotated["kid"]);
    let jwks: Value = client()
        .get(s.gw.url("/.well-known/jwks.json"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        jwks["keys"].as_array().unwrap().len(),
        2,
        "the previous key stays published"
    );
    for t in [&old, &new] {
        assert_eq!(s.gw.bearer_status("/orders/1", t), 200);
    }
    let (_, audit) = s.admin.get("/audit?limit=1");
    assert_eq!(audit["entries"][0]["action"], "signing_key.rotate");
    assert!(!audit.to_string().contains("PRIVATE KEY"));
}

#[test]
fn wrong_secrets_are_rate_limited_without_locking_out_other_clients() {
    let s = setup();
    let other = s
        .admin
        .create_client(json!({"name": "Neighbour", "auth_type": "oauth2"}));
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..100 {
        let (status, headers, _) = token_call(
            &s,
            Some((&s.id, "tgs_wrongwrongwrongwrongwrongwr")),
            "grant_type=client_credentials",
        );
        if status == 429 && retry_after.is_none() {
            retry_after = headers
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_string());
        }
        statuses.push(status);
    }
    assert!(statuses[..10].iter().all(|s| *s == 401), "{statuses:?}");
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        90,
        "{statuses:?}"
    );
    assert!(retry_after.is_some_and(|r| r.parse::<u64>().unwrap() >= 1));
    // the attacked client is limited even with its right secret, for now...
    assert_eq!(
        token_call(
            &s,
            Some((&s.id, &s.secret)),
            "grant_type=client_credentials"
        )
        .0,
        429
    );
    // ...but another client from the same address is not locked out
    let (status, _, body) = token_call(
        &s,
        Some((
            other["id"].as_str().unwrap(),
            other["client_secret"].as_str().unwrap(),
        )),
        "grant_type=client_credentials",
    );
    assert_eq!(status, 200, "{body}");
}

#[test]
fn eddsa_and_rs256_by_configuration() {
    for alg in ["EdDSA", "RS256"] {
        let up = Upstream::start("orders");
        let gw = Gateway::start(&format!(
            "auth:\n  tokens: {{ issuer: \"{ISS}\", algorithm: {alg} }}\nservices:\n  orders: {{ upstreams: [\"{}\"] }}\nroutes:\n  - {{ name: orders, match: {{ path_prefix: /orders }}, service: orders, auth: [jwt] }}\n",
            up.target()
        ));
        let admin = Admin::new(&gw);
        let c = admin.create_client(json!({"name": "Alg", "auth_type": "oauth2"}));
        let (status, v) = admin.post(
            "/subscriptions",
            json!({"client_id": c["id"], "service": "orders"}),
        );
        assert_eq!(status, 201, "{alg}: {v}");
        let s = Setup {
            up,
            gw,
            admin,
            id: c["id"].as_str().unwrap().to_string(),
            secret: c["client_secret"].as_str().unwrap().to_string(),
        };
        let (status, _, body) = token_call(
            &s,
            Some((&s.id, &s.secret)),
            "grant_type=client_credentials",
        );
        assert_eq!(status, 200, "{alg}: {body}");
        let token = body["access_token"].as_str().unwrap();
        assert_eq!(payload(token).0["alg"], alg);
        let jwks: Value = client()
            .get(s.gw.url("/.well-known/jwks.json"))
            .send()
            .unwrap()
            .json()
            .unwrap();
        assert!(
            jwks["keys"][0].get("d").is_none() && jwks["keys"][0].get("p").is_none(),
            "{jwks}"
        );
        assert_eq!(s.gw.bearer_status("/orders/1", token), 200, "{alg}");
    }
}
