//! The admin API of SPEC §6 over real HTTP: every endpoint, bad input, and
//! a canary secret that must appear nowhere after creation.

use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::{Admin, Gateway, ADMIN_TOKEN};

const CONFIG: &str = r#"
auth:
  issuers:
    - { name: corp, issuer: "https://idp.example.test/realms/corp", jwks_url: "http://127.0.0.1:1/certs", audiences: [orders-api], algorithms: [RS256], client_claim: azp }
plans:
  free: { rate: 10/s }
services:
  orders: { upstreams: ["127.0.0.1:1"] }
  billing: { upstreams: ["127.0.0.1:1"] }
routes:
  - { name: orders, match: { path_prefix: /orders }, service: orders, auth: [api_key] }
"#;

#[test]
fn admin_token_is_required() {
    let gw = Gateway::start(CONFIG);
    for token in ["", "wrong-token", "test-admin-tokenX"] {
        let (status, body) = Admin::with_token(&gw, token).get("/clients");
        assert_eq!(status, 401, "{token:?}");
        assert_eq!(body["error"], "unauthorized");
    }
    let r = crate::harness::client()
        .get(format!("http://{}/admin/v1/clients", gw.admin))
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(Admin::new(&gw).get("/clients").0, 200);
}

#[test]
fn empty_admin_token_refuses_to_start() {
    let (code, logs) = Gateway::builder(CONFIG)
        .env("TOLLGATE_ADMIN_TOKEN", "")
        .run_to_exit(Duration::from_secs(10));
    assert_eq!(code, Some(2), "{logs}");
    assert!(
        logs.contains("TOLLGATE_ADMIN_TOKEN is empty or unset"),
        "{logs}"
    );
}

#[test]
fn clients_lifecycle() {
    let gw = Gateway::start(CONFIG);
    let admin = Admin::new(&gw);

    let c = admin.create_client(json!({"name": "Shop", "auth_type": "api_key", "scopes": ["orders:read", "orders:read", "x"]}));
    let id = c["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("cli_"));
    assert_eq!(c["status"], "active");
    assert_eq!(c["scopes"], json!(["orders:read", "x"]));
    let key = c["api_key"]["key"].as_str().unwrap();
    assert!(key.starts_with("tg_") && key.len() == 31, "{key}");
    assert!(
        c["api_key"]["expires_at"].as_i64().unwrap()
            > c["created_at"].as_i64().unwrap() + 14 * 86400
    );
    assert!(c.get("client_secret").is_none());

    let o = admin.create_client(json!({"name": "Batch", "auth_type": "oauth2"}));
    assert!(o["client_secret"].as_str().unwrap().starts_with("tgs_"));
    assert!(o.get("api_key").is_none());

    let e = admin.create_client(json!({"name": "Partner", "auth_type": "external", "issuer": "corp", "external_id": "partner-app"}));
    assert_eq!(e["issuer"], "corp");
    assert!(e.get("client_secret").is_none() && e.get("api_key").is_none());
    // one external identity maps to one client
    let (status, _) = admin.post("/clients", json!({"name": "Dup", "auth_type": "external", "issuer": "corp", "external_id": "partner-app"}));
    assert_eq!(status, 409);

    let (status, list) = admin.get("/clients");
    assert_eq!(status, 200);
    assert_eq!(list["clients"].as_array().unwrap().len(), 3);
    assert!(!list.to_string().contains(key), "list never shows a secret");

    let (status, shown) = admin.get(&format!("/clients/{id}"));
    assert_eq!(status, 200);
    assert_eq!(shown["subscriptions"], json!([]));
    assert!(!shown.to_string().contains(key));

    let (status, renamed) = admin.call(
        "PATCH",
        &format!("/clients/{id}"),
        Some(r#"{"name": "Shop 2", "scopes": ["orders:write"]}"#),
    );
    assert_eq!(status, 200, "{renamed}");
    assert_eq!(renamed["name"], "Shop 2");
    assert_eq!(renamed["scopes"], json!(["orders:write"]));
    let (status, body) = admin.call(
        "PATCH",
        &format!("/clients/{id}"),
        Some(r#"{"auth_type": "oauth2"}"#),
    );
    assert_eq!(status, 400);
    assert!(body["message"].as_str().unwrap().contains("auth_type"));

    // rotate: oauth2 only
    let oid = o["id"].as_str().unwrap();
    let (status, rotated) = admin.post(&format!("/clients/{oid}/secret"), json!({}));
    assert_eq!(status, 200, "{rotated}");
    let new_secret = rotated["client_secret"]
        .as_str()
        .unwrap_or_else(|| panic!("the rotation answers the new secret: {rotated}"));
    assert!(new_secret.starts_with("tgs_"), "{rotated}");
    assert_ne!(Some(new_secret), o["client_secret"].as_str());
    assert_eq!(
        admin.post(&format!("/clients/{id}/secret"), json!({})).0,
        400
    );

    // revoke is final
    let (status, sub) = admin.post(
        "/subscriptions",
        json!({"client_id": id, "service": "orders"}),
    );
    assert_eq!(status, 201, "{sub}");
    let (status, revoked) = admin.post(&format!("/clients/{id}/revoke"), json!({}));
    assert_eq!(status, 200);
    assert_eq!(revoked["status"], "revoked");
    assert!(revoked["revoked_at"].as_i64().is_some());
    assert_eq!(
        admin.post(&format!("/clients/{id}/revoke"), json!({})).0,
        409
    );
    let (_, shown) = admin.get(&format!("/clients/{id}"));
    assert_eq!(shown["subscriptions"], json!([]));
    let (_, keys) = admin.get(&format!("/clients/{id}/keys"));
    assert!(keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .all(|k| k["status"] == "revoked"));
    assert_eq!(
        admin
            .post(
                "/subscriptions",
                json!({"client_id": id, "service": "orders"})
            )
            .0,
        409
    );
    assert_eq!(admin.post(&format!("/clients/{id}/keys"), json!({})).0, 409);
    assert_eq!(
        admin
            .call("PATCH", &format!("/clients/{id}"), Some(r#"{"name": "x"}"#))
            .0,
        409
    );

    let (_, active) = admin.get("/clients?status=active");
    assert_eq!(active["clients"].as_array().unwrap().len(), 2);
    let (_, rev) = admin.get("/clients?status=revoked");
    assert_eq!(rev["clients"].as_array().unwrap().len(), 1);
    assert_eq!(admin.get("/clients?status=sleeping").0, 400);
}

#[test]
fn keys_lifecycle() {
    let gw = Gateway::start(CONFIG);
    let admin = Admin::new(&gw);
    let c = admin.create_client(json!({"name": "K", "auth_type": "api_key"}));
    let id = c["id"].as_str().unwrap();

    let (status, forever) = admin.post(
        &format!("/clients/{id}/keys"),
        json!({"name": "ci", "never_expires": true}),
    );
    assert_eq!(status, 201);
    assert_eq!(forever["expires_at"], Value::Null);
    assert_eq!(forever["name"], "ci");
    let (status, default) = admin.call("POST", &format!("/clients/{id}/keys"), None);
    assert_eq!(status, 201, "an empty body takes the defaults: {default}");

    let (status, keys) = admin.get(&format!("/clients/{id}/keys"));
    assert_eq!(status, 200);
    let keys = keys["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 3);
    for k in keys {
        for field in [
            "id",
            "name",
            "prefix",
            "status",
            "created_at",
            "expires_at",
            "last_used_at",
            "use_count",
        ] {
            assert!(k.get(field).is_some(), "{field} missing in {k}");
        }
        assert!(k.get("key").is_none() && k.get("hash").is_none());
        assert_eq!(k["status"], "active");
    }

    let kid = forever["id"].as_str().unwrap();
    let (status, r) = admin.post(&format!("/keys/{kid}/revoke"), json!({}));
    assert_eq!((status, r["status"].as_str()), (200, Some("revoked")));
    assert_eq!(admin.post(&format!("/keys/{kid}/revoke"), json!({})).0, 409);
    let (status, r) = admin.post(&format!("/keys/{kid}/renew"), json!({}));
    assert_eq!((status, r["status"].as_str()), (200, Some("active")));
    assert_eq!(
        r["expires_at"],
        Value::Null,
        "a never-expiring key stays so"
    );

    let did = default["id"].as_str().unwrap();
    let before = default["expires_at"].as_i64().unwrap();
    admin.post(&format!("/keys/{did}/revoke"), json!({}));
    let (_, renewed) = admin.post(&format!("/keys/{did}/renew"), json!({}));
    assert_eq!(renewed["status"], "active");
    assert!(renewed["expires_at"].as_i64().unwrap() >= before);

    let o = admin.create_client(json!({"name": "O", "auth_type": "oauth2"}));
    assert_eq!(
        admin
            .post(
                &format!("/clients/{}/keys", o["id"].as_str().unwrap()),
                json!({})
            )
            .0,
        400
    );
}

#[test]
fn subscriptions() {
    let gw = Gateway::start(CONFIG);
    let admin = Admin::new(&gw);
    let c = admin.create_client(json!({"name": "S", "auth_type": "api_key"}));
    let id = c["id"].as_str().unwrap();

    let (status, s1) = admin.post(
        "/subscriptions",
        json!({"client_id": id, "service": "orders", "plan": "free"}),
    );
    assert_eq!(status, 201, "{s1}");
    assert_eq!(s1["plan"], "free");
    let (status, _) = admin.post(
        "/subscriptions",
        json!({"client_id": id, "service": "billing"}),
    );
    assert_eq!(status, 201);
    let (status, dup) = admin.post(
        "/subscriptions",
        json!({"client_id": id, "service": "orders"}),
    );
    assert_eq!(status, 409, "{dup}");
    assert_eq!(dup["error"], "conflict");
    let (status, bad) = admin.post(
        "/subscriptions",
        json!({"client_id": id, "service": "nope"}),
    );
    assert_eq!(status, 400);
    assert!(bad["message"].as_str().unwrap().contains("unknown service"));
    let (status, bad) = admin.post(
        "/subscriptions",
        json!({"client_id": id, "service": "billing", "plan": "platinum"}),
    );
    assert_eq!(status, 400);
    assert!(bad["message"].as_str().unwrap().contains("unknown plan"));
    assert_eq!(
        admin
            .post(
                "/subscriptions",
                json!({"client_id": "cli_missing", "service": "orders"})
            )
            .0,
        404
    );

    let (_, list) = admin.get(&format!("/subscriptions?client_id={id}"));
    assert_eq!(list["subscriptions"].as_array().unwrap().len(), 2);
    let (_, all) = admin.get("/subscriptions");
    assert_eq!(all["subscriptions"].as_array().unwrap().len(), 2);
    let (_, shown) = admin.get(&format!("/clients/{id}"));
    assert_eq!(shown["subscriptions"].as_array().unwrap().len(), 2);

    let sid = s1["id"].as_str().unwrap();
    assert_eq!(
        admin
            .call("DELETE", &format!("/subscriptions/{sid}"), None)
            .0,
        204
    );
    assert_eq!(
        admin
            .call("DELETE", &format!("/subscriptions/{sid}"), None)
            .0,
        404
    );
}

#[test]
fn bad_input_is_400_and_unknown_ids_404() {
    let gw = Gateway::start(CONFIG);
    let admin = Admin::new(&gw);
    let bad_bodies = [
        "{not json",
        r#"{"name": 7, "auth_type": "api_key"}"#,
        r#"{"name": "x", "auth_type": "superuser"}"#,
        r#"{"name": "x"}"#,
        r#"{"name": "x", "auth_type": "api_key", "admin": true}"#,
        r#"{"name": "", "auth_type": "api_key"}"#,
        r#"{"name": "x", "auth_type": "api_key", "scopes": ["has space"]}"#,
        r#"{"name": "x", "auth_type": "api_key", "issuer": "corp"}"#,
        r#"{"name": "x", "auth_type": "external", "issuer": "nobody", "external_id": "e"}"#,
        r#"{"name": "x", "auth_type": "external", "issuer": "corp"}"#,
        "[]",
    ];
    for body in bad_bodies {
        let (status, v) = admin.call("POST", "/clients", Some(body));
        assert_eq!(status, 400, "{body}: {v}");
        assert_eq!(v["error"], "bad_request", "{body}");
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let long = "n".repeat(129);
    let (status, v) = admin.post("/clients", json!({"name": long, "auth_type": "api_key"}));
    assert_eq!(status, 400);
    assert!(v["message"].as_str().unwrap().contains("longer than 128"));
    let ok = "n".repeat(128);
    assert_eq!(
        admin
            .post("/clients", json!({"name": ok, "auth_type": "api_key"}))
            .0,
        201
    );

    for (method, path) in [
        ("GET", "/clients/cli_nope"),
        ("PATCH", "/clients/cli_nope"),
        ("POST", "/clients/cli_nope/revoke"),
        ("POST", "/clients/cli_nope/secret"),
        ("POST", "/clients/cli_nope/keys"),
        ("GET", "/clients/cli_nope/keys"),
        ("POST", "/keys/key_nope/revoke"),
        ("POST", "/keys/key_nope/renew"),
        ("DELETE", "/subscriptions/sub_nope"),
        ("GET", "/nothing-here"),
    ] {
        let body = (method == "PATCH").then_some(r#"{"name": "x"}"#);
        let (status, v) = admin.call(method, path, body);
        assert_eq!(status, 404, "{method} {path}: {v}");
        assert_eq!(v["error"], "not_found");
    }
    assert_eq!(admin.get("/audit?limit=0").0, 400);
    assert_eq!(admin.get("/audit?limit=abc").0, 400);
    assert_eq!(
        admin
            .call("POST", "/subscriptions", Some(r#"{"client_id": 5}"#))
            .0,
        400
    );
}

#[test]
fn audit_and_openapi() {
    let gw = Gateway::start(CONFIG);
    let admin = Admin::new(&gw);
    let c = admin.create_client(json!({"name": "A", "auth_type": "api_key"}));
    let id = c["id"].as_str().unwrap();
    admin.post(
        "/subscriptions",
        json!({"client_id": id, "service": "orders"}),
    );
    admin.post(&format!("/clients/{id}/revoke"), json!({}));
    let (status, audit) = admin.get("/audit?limit=10");
    assert_eq!(status, 200);
    let entries = audit["entries"].as_array().unwrap();
    let actions: Vec<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        vec!["client.revoke", "subscription.create", "client.create"]
    );
    for e in entries {
        assert!(e["actor"].as_str().unwrap().starts_with("admin@127.0.0.1"));
        assert!(e["at"].as_i64().unwrap() > 0);
        assert!(e["target"].as_str().is_some());
    }
    assert!(!audit
        .to_string()
        .contains(c["api_key"]["key"].as_str().unwrap()));
    let (_, one) = admin.get("/audit?limit=1");
    assert_eq!(one["entries"].as_array().unwrap().len(), 1);

    let (status, doc) = admin.get("/openapi.json");
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/admin/v1/clients",
        "/admin/v1/clients/{id}",
        "/admin/v1/clients/{id}/secret",
        "/admin/v1/clients/{id}/revoke",
        "/admin/v1/clients/{id}/keys",
        "/admin/v1/keys/{id}/revoke",
        "/admin/v1/keys/{id}/renew",
        "/admin/v1/subscriptions",
        "/admin/v1/subscriptions/{id}",
        "/admin/v1/audit",
        "/admin/v1/signing-keys/rotate",
        "/admin/v1/openapi.json",
    ] {
        assert!(
            paths.contains_key(p),
            "{p} missing from the OpenAPI document"
        );
    }
    assert!(doc["components"]["schemas"]["CreateClient"].is_object());
    assert_eq!(Admin::with_token(&gw, "nope").get("/openapi.json").0, 401);
    // the whole token is compared: a prefix of it, or one of its length
    // that differs only in the last character, is refused
    let prefix = &ADMIN_TOKEN[..ADMIN_TOKEN.len() - 1];
    let mut last_differs = prefix.to_string();
    last_differs.push(if ADMIN_TOKEN.ends_with('x') { 'y' } else { 'x' });
    for token in [prefix, last_differs.as_str()] {
        let (status, body) = Admin::with_token(&gw, token).get("/openapi.json");
        assert_eq!(status, 401, "{token:?}");
        assert_eq!(body["error"], "unauthorized", "{token:?}");
    }
}

/// Plants secrets and finds them nowhere afterwards: not in the database
/// files, the logs, the audit log, or any list or show answer.
#[test]
fn canary_secrets_are_never_stored_or_shown() {
    let gw = Gateway::start(CONFIG);
    let admin = Admin::new(&gw);
    let k = admin.create_client(json!({"name": "Canary K", "auth_type": "api_key"}));
    let o = admin.create_client(json!({"name": "Canary O", "auth_type": "oauth2"}));
    let kid = k["id"].as_str().unwrap();
    let (status, extra) = admin.post(&format!("/clients/{kid}/keys"), json!({"name": "second"}));
    assert_eq!(status, 201, "{extra}");
    let (status, rotated) = admin.post(
        &format!("/clients/{}/secret", o["id"].as_str().unwrap()),
        json!({}),
    );
    assert_eq!(status, 200, "{rotated}");
    let canaries: Vec<String> = [
        &k["api_key"]["key"],
        &o["client_secret"],
        &extra["key"],
        &rotated["client_secret"],
    ]
    .iter()
    .map(|v| v.as_str().unwrap().to_string())
    .collect();

    let mut answers = String::new();
    for path in [
        "/clients".to_string(),
        "/clients?status=active".to_string(),
        format!("/clients/{kid}"),
        format!("/clients/{kid}/keys"),
        format!("/clients/{}", o["id"].as_str().unwrap()),
        "/audit?limit=1000".to_string(),
        "/subscriptions".to_string(),
    ] {
        answers.push_str(&admin.get(&path).1.to_string());
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(gw.dir.path()).unwrap().flatten() {
        files.push((
            entry.path().display().to_string(),
            std::fs::read(entry.path()).unwrap_or_default(),
        ));
    }
    assert!(
        files.iter().any(|(p, _)| p.ends_with("tollgate.db")),
        "database file present"
    );
    let logs = gw.logs();
    for canary in &canaries {
        assert!(
            !answers.contains(canary.as_str()),
            "a secret in an admin answer"
        );
        assert!(!logs.contains(canary.as_str()), "a secret in the logs");
        for (path, bytes) in &files {
            let found = bytes.windows(canary.len()).any(|w| w == canary.as_bytes());
            assert!(!found, "a secret in {path}");
        }
    }
}
