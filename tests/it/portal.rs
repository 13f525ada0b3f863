//! Accounts and the self-service portal over real HTTP: sign-in (password,
//! one-time password, an identity provider's token), sessions and cookies,
//! limits on failed sign-ins, isolation between accounts, the portal's
//! limits, approval of pending subscriptions, and the CLI's `login` flow.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use serde_json::{json, Value};
use tollgate::auth::keys;
use tollgate::config::SigningAlgorithm;

use crate::auth_jwt::{key_set, sign, JwksServer};
use crate::harness::{bin, check_config, client, Admin, Gateway, Upstream};

const IDP_ISS: &str = "https://idp.test/realms/corp";
const ONE_TIME: &str = "one-time-password-1";
const CHOSEN: &str = "a much better password";

fn config(up: &Upstream, jwks_url: &str) -> String {
    format!(
        r#"
auth:
  issuers:
    - {{ name: corp, issuer: "{IDP_ISS}", jwks_url: "{jwks_url}", audiences: [portal], algorithms: [ES256], client_claim: azp }}
plans:
  free: {{ rate: 100/s }}
  gold: {{ rate: 1000/s }}
services:
  orders: {{ upstreams: ["{up}"] }}
  billing: {{ upstreams: ["{up}"] }}
  internal: {{ upstreams: ["{up}"] }}
routes:
  - {{ name: orders, match: {{ path_prefix: /orders }}, service: orders, auth: [api_key, jwt] }}
  - {{ name: billing, match: {{ path_prefix: /billing }}, service: billing, auth: [api_key] }}
portal:
  sign_in: {{ password: true, issuers: [corp] }}
  session_ttl: 1h
  services:
    orders: {{ plans: [free, gold], approval: auto, scopes: ["orders:read"] }}
    billing: {{ approval: manual }}
  max_key_lifetime: 7d
"#,
        up = up.target()
    )
}

struct World {
    _up: Upstream,
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
        _up: up,
        gw,
        admin,
        idp,
        _jwks: jwks,
    }
}

/// A portal call: (status, headers, JSON body or Null).
fn portal(
    w: &World,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: Option<Value>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = client().request(m, w.gw.url(&format!("/portal/v1{path}")));
    if let Some(t) = auth {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().expect("portal call");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().unwrap_or_default();
    (
        status,
        headers,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

fn call(w: &World, method: &str, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    let (s, _, v) = portal(w, method, path, Some(token), body);
    (s, v)
}

fn invite(w: &World, username: &str, password: &str) -> Value {
    let (s, a) = w.admin.post(
        "/accounts",
        json!({"username": username, "password": password, "display_name": username}),
    );
    assert_eq!(s, 201, "{a}");
    a
}

/// Sign in with a password; the session token.
fn sign_in(w: &World, username: &str, password: &str) -> String {
    let (s, _, v) = portal(
        w,
        "POST",
        "/session",
        None,
        Some(json!({"username": username, "password": password})),
    );
    assert_eq!(s, 200, "{v}");
    v["token"].as_str().unwrap().to_string()
}

/// An invited account that has chosen its password; its session token.
fn signed_in(w: &World, username: &str) -> String {
    invite(w, username, ONE_TIME);
    let token = sign_in(w, username, ONE_TIME);
    let (s, v) = call(
        w,
        "POST",
        "/me/password",
        &token,
        Some(json!({"current_password": ONE_TIME, "new_password": CHOSEN})),
    );
    assert_eq!(s, 204, "{v}");
    token
}

fn key_status(w: &World, path: &str, key: &str) -> u16 {
    w.gw.key_status(path, key)
}

#[test]
fn an_invited_account_changes_its_one_time_password_then_serves_itself() {
    let w = world();
    let account = invite(&w, "ann", ONE_TIME);
    assert_eq!(account["password_change_required"], true);
    assert!(account.get("password").is_none() && account.get("password_hash").is_none());

    // user names are case-insensitive; the one-time password signs in to a
    // session that may only change it
    let (s, headers, session) = portal(
        &w,
        "POST",
        "/session",
        None,
        Some(json!({"username": "Ann", "password": ONE_TIME})),
    );
    assert_eq!(s, 200, "{session}");
    let token = session["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("tgp_"), "{token}");
    assert_eq!(session["password_change_required"], true);
    let cookie = headers["set-cookie"].to_str().unwrap();
    for part in [
        "tollgate_session=tgp_",
        "HttpOnly",
        "SameSite=Strict",
        "Path=/portal",
    ] {
        assert!(cookie.contains(part), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain listener: {cookie}");
    let (s, v) = call(&w, "GET", "/clients", &token, None);
    assert_eq!(
        (s, v["error"].as_str()),
        (403, Some("password_change_required"))
    );
    let (s, v) = call(
        &w,
        "POST",
        "/me/password",
        &token,
        Some(json!({"current_password": ONE_TIME, "new_password": "short"})),
    );
    assert_eq!(s, 400, "{v}");
    let (s, _) = call(
        &w,
        "POST",
        "/me/password",
        &token,
        Some(json!({"current_password": ONE_TIME, "new_password": CHOSEN})),
    );
    assert_eq!(s, 204);
    // the session that changed the password goes on; the old password is gone
    let (s, me) = call(&w, "GET", "/me", &token, None);
    assert_eq!((s, me["username"].as_str()), (200, Some("ann")));
    assert_eq!(me["password_change_required"], false);
    let (s, _, _) = portal(
        &w,
        "POST",
        "/session",
        None,
        Some(json!({"username": "ann", "password": ONE_TIME})),
    );
    assert_eq!(s, 401);
    let token = sign_in(&w, "ann", CHOSEN);

    // an API key client of its own: the key lives the shorter of 15 days
    // (auth.api_key.default_ttl) and portal.max_key_lifetime (7 days)
    let (s, c) = call(
        &w,
        "POST",
        "/clients",
        &token,
        Some(json!({"name": "Shop", "auth_type": "api_key", "scopes": ["orders:read"]})),
    );
    assert_eq!(s, 201, "{c}");
    assert_eq!(c["account_id"], me["id"]);
    let id = c["id"].as_str().unwrap().to_string();
    let key = c["api_key"]["key"].as_str().unwrap().to_string();
    let lifetime = c["api_key"]["expires_at"].as_i64().unwrap() - tollgate::store::now();
    assert!(
        (7 * 86_400 - 60..=7 * 86_400).contains(&lifetime),
        "{lifetime}"
    );

    // the portal's limits, each a 400
    for (path, body) in [
        (
            "/clients",
            json!({"name": "x", "auth_type": "api_key", "scopes": ["admin"]}),
        ),
        (
            "/clients",
            json!({"name": "x", "auth_type": "external", "issuer": "corp", "external_id": "e"}),
        ),
        (
            "/clients",
            json!({"name": "x", "auth_type": "api_key", "account_id": "acc_other"}),
        ),
        (
            &format!("/clients/{id}/keys"),
            json!({"never_expires": true}),
        ),
        (
            "/subscriptions",
            json!({"client_id": id, "service": "internal"}),
        ),
        (
            "/subscriptions",
            json!({"client_id": id, "service": "orders", "plan": "platinum"}),
        ),
        (
            "/subscriptions",
            json!({"client_id": id, "service": "orders"}),
        ),
    ] {
        let (s, v) = call(&w, "POST", path, &token, Some(body.clone()));
        assert_eq!(
            (s, v["error"].as_str()),
            (400, Some("bad_request")),
            "{path} {body}: {v}"
        );
    }
    let (s, v) = call(
        &w,
        "PATCH",
        &format!("/clients/{id}"),
        &token,
        Some(json!({"scopes": ["orders:write"]})),
    );
    assert_eq!(s, 400, "{v}");

    // subscribed through the catalog, the key passes
    let (s, cat) = call(&w, "GET", "/catalog", &token, None);
    assert_eq!(s, 200);
    assert_eq!(cat["services"][0]["name"], "billing");
    assert_eq!(cat["services"][0]["approval"], "manual");
    assert_eq!(
        cat["services"][1]["plans"][0],
        json!({"name": "free", "rate": "100/s", "quota": null})
    );
    assert_eq!(key_status(&w, "/orders/1", &key), 403);
    let (s, sub) = call(
        &w,
        "POST",
        "/subscriptions",
        &token,
        Some(json!({"client_id": id, "service": "orders", "plan": "gold"})),
    );
    assert_eq!((s, sub["status"].as_str()), (201, Some("active")), "{sub}");
    assert_eq!(key_status(&w, "/orders/1", &key), 200);

    // a manual service: pending grants nothing until an admin approves
    let (s, pending) = call(
        &w,
        "POST",
        "/subscriptions",
        &token,
        Some(json!({"client_id": id, "service": "billing"})),
    );
    assert_eq!(
        (s, pending["status"].as_str()),
        (201, Some("pending")),
        "{pending}"
    );
    assert_eq!(key_status(&w, "/billing/1", &key), 403);
    let sub_id = pending["id"].as_str().unwrap();
    let (s, v) = w
        .admin
        .post(&format!("/subscriptions/{sub_id}/approve"), json!({}));
    assert_eq!((s, v["status"].as_str()), (200, Some("active")), "{v}");
    assert_eq!(key_status(&w, "/billing/1", &key), 200);
    let (s, _) = w
        .admin
        .post(&format!("/subscriptions/{sub_id}/approve"), json!({}));
    assert_eq!(s, 409);

    // keys: a second one, revoke, renew (within the portal's lifetime)
    let (s, k2) = call(
        &w,
        "POST",
        &format!("/clients/{id}/keys"),
        &token,
        Some(json!({"name": "ci"})),
    );
    assert_eq!(s, 201, "{k2}");
    let k2_id = k2["id"].as_str().unwrap();
    let (s, v) = call(&w, "POST", &format!("/keys/{k2_id}/revoke"), &token, None);
    assert_eq!((s, v["status"].as_str()), (200, Some("revoked")));
    assert_eq!(
        key_status(&w, "/orders/1", k2["key"].as_str().unwrap()),
        401
    );
    let (s, v) = call(&w, "POST", &format!("/keys/{k2_id}/renew"), &token, None);
    assert_eq!((s, v["status"].as_str()), (200, Some("active")));
    assert!(v["expires_at"].as_i64().unwrap() <= tollgate::store::now() + 7 * 86_400);
    let (s, v) = call(&w, "GET", &format!("/clients/{id}/keys"), &token, None);
    assert_eq!((s, v["keys"].as_array().map(Vec::len)), (200, Some(2)));

    // the operator sees the owner and the account's actions
    let (_, admin_view) = w.admin.get(&format!(
        "/clients?account_id={}",
        me["id"].as_str().unwrap()
    ));
    assert_eq!(admin_view["clients"][0]["id"], id.as_str());
    let (_, audit) = w.admin.get("/audit?limit=50");
    let actor = format!("account:{}", me["id"].as_str().unwrap());
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["actor"] == actor.as_str())
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for a in [
        "client.create",
        "subscription.create",
        "key.revoke",
        "key.renew",
        "account.change_password",
    ] {
        assert!(actions.contains(&a), "{a} in {actions:?}");
    }

    // revoke is final and removes the subscriptions
    let (s, v) = call(&w, "POST", &format!("/clients/{id}/revoke"), &token, None);
    assert_eq!((s, v["status"].as_str()), (200, Some("revoked")));
    assert_eq!(key_status(&w, "/orders/1", &key), 401);
    let (_, subs) = call(&w, "GET", "/subscriptions", &token, None);
    assert_eq!(subs["subscriptions"], json!([]));

    // signing out ends the session
    let (s, _) = call(&w, "DELETE", "/session", &token, None);
    assert_eq!(s, 204);
    let (s, _, v) = portal(&w, "GET", "/me", Some(&token), None);
    assert_eq!((s, v["error"].as_str()), (401, Some("unauthorized")));
}

#[test]
fn another_accounts_ids_answer_exactly_like_unknown_ids() {
    let w = world();
    let ann = signed_in(&w, "ann");
    let bob = signed_in(&w, "bob");
    let (_, c) = call(
        &w,
        "POST",
        "/clients",
        &ann,
        Some(json!({"name": "Ann's", "auth_type": "api_key"})),
    );
    let id = c["id"].as_str().unwrap();
    let key_id = c["api_key"]["id"].as_str().unwrap();
    let (_, sub) = call(
        &w,
        "POST",
        "/subscriptions",
        &ann,
        Some(json!({"client_id": id, "service": "orders", "plan": "free"})),
    );
    let sub_id = sub["id"].as_str().unwrap();
    // an operator's client belongs to no account
    let op = w
        .admin
        .create_client(json!({"name": "ops", "auth_type": "oauth2"}));
    let op_id = op["id"].as_str().unwrap();

    let probes = |client: &str, key: &str, sub: &str| {
        vec![
            ("GET", format!("/clients/{client}"), None),
            (
                "PATCH",
                format!("/clients/{client}"),
                Some(json!({"name": "mine now"})),
            ),
            ("POST", format!("/clients/{client}/secret"), None),
            ("POST", format!("/clients/{client}/revoke"), None),
            ("GET", format!("/clients/{client}/keys"), None),
            ("POST", format!("/clients/{client}/keys"), None),
            ("POST", format!("/keys/{key}/revoke"), None),
            ("POST", format!("/keys/{key}/renew"), None),
            ("DELETE", format!("/subscriptions/{sub}"), None),
            ("GET", format!("/subscriptions?client_id={client}"), None),
            (
                "POST",
                "/subscriptions".to_string(),
                Some(json!({"client_id": client, "service": "orders", "plan": "free"})),
            ),
        ]
    };
    let theirs = probes(id, key_id, sub_id);
    let unknown = probes("cli_unknown", "key_unknown", "sub_unknown");
    let operators = probes(op_id, "key_unknown", "sub_unknown");
    for ((t, u), o) in theirs.iter().zip(&unknown).zip(&operators) {
        let a = call(&w, t.0, &t.1, &bob, t.2.clone());
        let b = call(&w, u.0, &u.1, &bob, u.2.clone());
        let c = call(&w, o.0, &o.1, &bob, o.2.clone());
        assert_eq!(a.0, 404, "{} {}: {}", t.0, t.1, a.1);
        assert_eq!(a, b, "{} {}", t.0, t.1);
        assert_eq!(c.0, 404, "{} {}", o.0, o.1);
    }
    let (_, mine) = call(&w, "GET", "/clients", &bob, None);
    assert_eq!(mine["clients"], json!([]));
    let (_, subs) = call(&w, "GET", "/subscriptions", &bob, None);
    assert_eq!(subs["subscriptions"], json!([]));
    // nothing of ann's changed
    let (s, v) = call(&w, "GET", &format!("/clients/{id}"), &ann, None);
    assert_eq!(
        (s, v["name"].as_str(), v["status"].as_str()),
        (200, Some("Ann's"), Some("active"))
    );
    assert_eq!(v["subscriptions"].as_array().map(Vec::len), Some(1));
}

#[test]
fn failed_sign_ins_lock_the_username_and_reveal_nothing() {
    let w = world();
    signed_in(&w, "ann");
    let attempt = |user: &str, password: &str| {
        portal(
            &w,
            "POST",
            "/session",
            None,
            Some(json!({"username": user, "password": password})),
        )
    };
    // an unknown user and a wrong password are answered alike
    let (s1, _, unknown) = attempt("nobody", "wrong password 1");
    let (s2, _, wrong) = attempt("ann", "wrong password 1");
    assert_eq!((s1, s2), (401, 401));
    assert_eq!(unknown, wrong);
    for _ in 0..9 {
        assert_eq!(attempt("ann", "wrong password 2").0, 401);
    }
    // ten failures: even the right password is refused, without a hash
    let (s, headers, v) = attempt("ann", CHOSEN);
    assert_eq!(
        (s, v["error"].as_str()),
        (429, Some("too_many_attempts")),
        "{v}"
    );
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=900).contains(&retry), "{retry}");
    // another username is not locked
    let (s, _, _) = attempt("nobody", "wrong password 3");
    assert_eq!(s, 401);
    assert!(
        w.gw.metric(r#"tollgate_portal_sign_ins_total{method="password",result="locked"}"#) >= 1.0
    );
    assert!(
        w.gw.metric(r#"tollgate_portal_sign_ins_total{method="password",result="failed"}"#) >= 12.0
    );
    assert!(w.gw.metric(r#"tollgate_portal_sign_ins_total{method="password",result="ok"}"#) >= 1.0);
    // malformed bodies are 400s
    for body in [
        json!({"username": "ann"}),
        json!({"token": "x", "username": "ann", "password": "p"}),
        json!({"user": "ann"}),
    ] {
        let (s, _, v) = portal(&w, "POST", "/session", None, Some(body.clone()));
        assert_eq!(s, 400, "{body}: {v}");
    }
}

#[test]
fn cookie_calls_need_the_csrf_token_and_bearer_calls_do_not() {
    let w = world();
    signed_in(&w, "ann");
    let (_, _, session) = portal(
        &w,
        "POST",
        "/session",
        None,
        Some(json!({"username": "ann", "password": CHOSEN})),
    );
    let token = session["token"].as_str().unwrap();
    let csrf = session["csrf_token"].as_str().unwrap();
    let with_cookie = |method: &str, path: &str, csrf: Option<&str>| {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = client()
            .request(m, w.gw.url(&format!("/portal/v1{path}")))
            .header("cookie", format!("theme=dark; tollgate_session={token}"));
        if let Some(c) = csrf {
            req = req.header("x-csrf-token", c);
        }
        if method == "POST" {
            req = req.json(&json!({"name": "From the browser", "auth_type": "oauth2"}));
        }
        let r = req.send().unwrap();
        let s = r.status().as_u16();
        (s, r.json::<Value>().unwrap_or(Value::Null))
    };
    assert_eq!(with_cookie("GET", "/clients", None).0, 200);
    let (s, v) = with_cookie("POST", "/clients", None);
    assert_eq!((s, v["error"].as_str()), (403, Some("csrf_failed")));
    let (s, v) = with_cookie("POST", "/clients", Some("0123456789abcdef0123456789abcdef"));
    assert_eq!((s, v["error"].as_str()), (403, Some("csrf_failed")));
    let (s, v) = with_cookie("POST", "/clients", Some(csrf));
    assert_eq!(s, 201, "{v}");
    assert!(v["client_secret"].as_str().unwrap().starts_with("tgs_"));
    // a bearer call needs no CSRF token
    let (s, _) = call(
        &w,
        "POST",
        "/clients",
        token,
        Some(json!({"name": "cli", "auth_type": "api_key"})),
    );
    assert_eq!(s, 201);
    // no credential at all
    let (s, headers, v) = portal(&w, "GET", "/clients", None, None);
    assert_eq!((s, v["error"].as_str()), (401, Some("unauthorized")));
    assert!(headers["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer"));
    for bad in [
        "tgp_notarealtoken",
        "garbage",
        "tgp_0000000000000000000000000000",
    ] {
        assert_eq!(call(&w, "GET", "/me", bad, None).0, 401, "{bad}");
    }
}

#[test]
fn disabling_an_account_ends_its_sessions_and_sign_ins_but_not_its_clients() {
    let w = world();
    let token = signed_in(&w, "ann");
    let (_, c) = call(
        &w,
        "POST",
        "/clients",
        &token,
        Some(json!({"name": "svc", "auth_type": "api_key"})),
    );
    let id = c["id"].as_str().unwrap();
    let key = c["api_key"]["key"].as_str().unwrap().to_string();
    call(
        &w,
        "POST",
        "/subscriptions",
        &token,
        Some(json!({"client_id": id, "service": "orders", "plan": "free"})),
    );
    let (_, me) = call(&w, "GET", "/me", &token, None);
    let account_id = me["id"].as_str().unwrap();

    let (s, v) = w.admin.call(
        "PATCH",
        &format!("/accounts/{account_id}"),
        Some(r#"{"status":"disabled"}"#),
    );
    assert_eq!((s, v["status"].as_str()), (200, Some("disabled")), "{v}");
    assert_eq!(call(&w, "GET", "/me", &token, None).0, 401);
    let (s, _, v) = portal(
        &w,
        "POST",
        "/session",
        None,
        Some(json!({"username": "ann", "password": CHOSEN})),
    );
    assert_eq!((s, v["error"].as_str()), (403, Some("account_disabled")));
    assert_eq!(
        key_status(&w, "/orders/1", &key),
        200,
        "its clients keep working"
    );

    // enabled again with a one-time password: old sessions stay ended
    w.admin.call(
        "PATCH",
        &format!("/accounts/{account_id}"),
        Some(r#"{"status":"active"}"#),
    );
    let (s, _) = w.admin.post(
        &format!("/accounts/{account_id}/password"),
        json!({"password": "another one-time pw"}),
    );
    assert_eq!(s, 204);
    assert_eq!(call(&w, "GET", "/me", &token, None).0, 401);
    let fresh = sign_in(&w, "ann", "another one-time pw");
    assert_eq!(call(&w, "GET", "/clients", &fresh, None).0, 403);

    // admin bad input
    for (body, why) in [
        (json!({"username": "x y"}), "username"),
        (json!({"username": "carl", "password": "short"}), "password"),
        (
            json!({"username": "carl", "issuer": "corp", "subject": "s"}),
            "both",
        ),
        (json!({"issuer": "nope", "subject": "s"}), "issuer"),
        (json!({"display_name": "nobody"}), "neither"),
        (
            json!({"username": "carl", "email": "not an address"}),
            "email",
        ),
    ] {
        let (s, v) = w.admin.post("/accounts", body);
        assert_eq!(s, 400, "{why}: {v}");
    }
    let (s, _) = w.admin.post("/accounts", json!({"username": "ann"}));
    assert_eq!(s, 409);
    let (s, list) = w.admin.get("/accounts");
    assert_eq!(
        (s, list["accounts"].as_array().map(Vec::len)),
        (200, Some(1))
    );
    assert_eq!(w.admin.get("/accounts/acc_unknown").0, 404);
}

#[test]
fn an_identity_providers_token_signs_in_its_invited_account() {
    let w = world();
    let (s, a) = w.admin.post(
        "/accounts",
        json!({"issuer": "corp", "subject": "u-42", "email": "dev@example.test"}),
    );
    assert_eq!(s, 201, "{a}");
    let token = |sub: &str| {
        let now = tollgate::store::now();
        sign(
            &w.idp,
            json!({"kid": w.idp.kid, "typ": "JWT"}),
            json!({"iss": IDP_ISS, "aud": "portal", "azp": "portal-web", "sub": sub, "exp": now + 300, "iat": now}),
        )
    };
    let jwt = token("u-42");
    // directly as a bearer token on every call
    let (s, me) = call(&w, "GET", "/me", &jwt, None);
    assert_eq!(s, 200, "{me}");
    assert_eq!(
        (me["issuer"].as_str(), me["subject"].as_str()),
        (Some("corp"), Some("u-42"))
    );
    let (s, c) = call(
        &w,
        "POST",
        "/clients",
        &jwt,
        Some(json!({"name": "personal", "auth_type": "api_key"})),
    );
    assert_eq!((s, c["account_id"].as_str()), (201, me["id"].as_str()));
    // or exchanged for a session
    let (s, _, session) = portal(&w, "POST", "/session", None, Some(json!({"token": jwt})));
    assert_eq!(s, 200, "{session}");
    let (_, mine) = call(
        &w,
        "GET",
        "/clients",
        session["token"].as_str().unwrap(),
        None,
    );
    assert_eq!(mine["clients"].as_array().map(Vec::len), Some(1));
    assert!(w.gw.metric(r#"tollgate_portal_sign_ins_total{method="corp",result="ok"}"#) >= 1.0);
    // an uninvited subject (registration: invite), and bad tokens
    let (s, v) = call(&w, "GET", "/me", &token("u-43"), None);
    assert_eq!((s, v["error"].as_str()), (403, Some("no_account")));
    let mut forged = jwt.clone();
    forged.pop();
    forged.push(if jwt.ends_with('A') { 'B' } else { 'A' });
    assert_eq!(call(&w, "GET", "/me", &forged, None).0, 401);
    // an IdP account has no password to change or to set
    let (s, _) = call(
        &w,
        "POST",
        "/me/password",
        &jwt,
        Some(json!({"current_password": "x", "new_password": CHOSEN})),
    );
    assert_eq!(s, 400);
    let (s, _) = w.admin.post(
        &format!("/accounts/{}/password", me["id"].as_str().unwrap()),
        json!({"password": "some long password"}),
    );
    assert_eq!(s, 409);
}

#[test]
fn the_portal_document_and_unknown_paths() {
    let w = world();
    let (s, _, doc) = portal(&w, "GET", "/openapi.json", None, None);
    assert_eq!(s, 200);
    assert_eq!(doc["servers"][0]["url"], "/portal");
    for p in [
        "/v1/session",
        "/v1/clients",
        "/v1/catalog",
        "/v1/keys/{id}/renew",
    ] {
        assert!(doc["paths"].get(p).is_some(), "{p}");
    }
    let (s, _, v) = portal(&w, "GET", "/nothing-here", None, None);
    assert_eq!((s, v["error"].as_str()), (404, Some("not_found")));
    let (s, _, v) = portal(&w, "PUT", "/session", None, None);
    assert_eq!((s, v["error"].as_str()), (405, Some("method_not_allowed")));
    // the portal's path is not a route: nothing reaches an upstream; the
    // console (docs/console.md) answers there and sends a stranger to sign in
    let r = client().get(w.gw.url("/portal")).send().unwrap();
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(r.headers()["location"], "/portal/sign-in");
    assert!(r.headers().get("x-request-id").is_some());
}

#[test]
fn a_route_under_the_portal_path_is_a_configuration_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.yaml");
    std::fs::write(
        &path,
        "services:\n  a: { upstreams: [\"127.0.0.1:1\"] }\nroutes:\n  - { name: r, match: { path_prefix: /portal/x }, service: a, auth: public }\nportal:\n  sign_in: { issuers: [nope] }\n  services:\n    missing: { plans: [none] }\n",
    )
    .unwrap();
    let (code, _, err) = check_config(&path);
    assert_eq!(code, 2, "{err}");
    for want in [
        "t.yaml:4:",
        "route `r` is under portal.path `/portal`",
        "portal.sign_in.issuers[0]: `nope` is not the name of an entry of auth.issuers",
        "portal.services.missing: `missing` is not a service",
        "portal.services.missing.plans[0]: `none` is not a plan",
    ] {
        assert!(err.contains(want), "{want} in {err}");
    }
}

#[test]
fn the_cli_signs_in_creates_an_oauth_client_with_the_classic_flags_and_gets_a_token() {
    let w = world();
    invite(&w, "dev", ONE_TIME);
    let home = tempfile::tempdir().unwrap();
    let portal_url = w.gw.url("/portal");
    let run = |args: &[&str], stdin: Option<&str>| {
        let mut cmd = Command::new(bin());
        cmd.args(args)
            .env("XDG_CONFIG_HOME", home.path())
            .env("HOME", home.path())
            .env_remove("XDG_CACHE_HOME")
            .env_remove("TOLLGATE_ADMIN_TOKEN")
            .env("TOLLGATE_PORTAL_URL", &portal_url)
            .env("TOLLGATE_TOKEN_URL", w.gw.url("/oauth2/token"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        if let Some(input) = stdin {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
        } else {
            drop(child.stdin.take());
        }
        let out = child.wait_with_output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, _, err) = run(&["clients", "list"], None);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("tollgate login"), "{err}");

    // a one-time password and the new one, on stdin
    let (code, _, err) = run(
        &["login", "--username", "dev", "--password-stdin"],
        Some(&format!("{ONE_TIME}\n{CHOSEN}\n")),
    );
    assert_eq!(code, 0, "{err}");
    let session_file = home.path().join("tollgate").join("session.json");
    let mode = std::fs::metadata(&session_file)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    // signed in again with the chosen password
    let (code, _, err) = run(
        &["login", "-u", "dev", "--password-stdin"],
        Some(&format!("{CHOSEN}\n")),
    );
    assert_eq!(code, 0, "{err}");

    let (code, out, err) = run(
        &[
            "clients",
            "create",
            "-S",
            "-N",
            "my_client",
            "-D",
            "Client used for app development",
            "-v",
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("POST ") && err.contains("/portal/v1/clients"),
        "verbose: {err}"
    );
    let created: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(created["auth_type"], "oauth2");
    assert_eq!(created["description"], "Client used for app development");
    assert!(created["client_secret"]
        .as_str()
        .unwrap()
        .starts_with("tgs_"));
    let (code, token, err) = run(&["token"], None);
    assert_eq!(code, 0, "{err}");
    assert_eq!(token.trim().split('.').count(), 3, "{token}");

    // keys and subscriptions act on the account's own clients
    let (_, out, _) = run(&["clients", "create", "--name", "keys"], None);
    let keyed: Value = serde_json::from_str(&out).unwrap();
    let id = keyed["id"].as_str().unwrap();
    let (code, out, err) = run(&["keys", "list", id], None);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["keys"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    let (code, _, err) = run(
        &[
            "subscriptions",
            "create",
            "--client",
            id,
            "--service",
            "orders",
            "--plan",
            "free",
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run(&["keys", "create", id, "--never-expires"], None);
    assert_eq!(code, 1);
    assert!(err.contains("never expire"), "{err}");
    let (_, out, _) = run(&["clients", "list"], None);
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["clients"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );

    let (code, _, _) = run(&["logout"], None);
    assert_eq!(code, 0);
    assert!(!session_file.exists());
    let (code, _, _) = run(&["clients", "list"], None);
    assert_eq!(code, 2);
}

#[test]
fn open_registration_creates_the_account_of_a_first_token() {
    let up = Upstream::start("up");
    let idp = keys::generate(SigningAlgorithm::Es256).unwrap();
    let jwks = JwksServer::start(key_set(&[&idp]));
    let body =
        config(&up, &jwks.url).replace("session_ttl: 1h", "session_ttl: 1h\n  registration: open");
    let gw = Gateway::start(&body);
    let now = tollgate::store::now();
    let jwt = sign(
        &idp,
        json!({"kid": idp.kid, "typ": "JWT"}),
        json!({"iss": IDP_ISS, "aud": "portal", "azp": "portal-cli", "sub": "new-user", "exp": now + 300, "iat": now}),
    );
    let w = World {
        _up: up,
        admin: Admin::new(&gw),
        gw,
        idp,
        _jwks: jwks,
    };
    let (s, me) = call(&w, "GET", "/me", &jwt, None);
    assert_eq!(s, 200, "{me}");
    // the same identity is the same account on its next call
    let (_, again) = call(&w, "GET", "/me", &jwt, None);
    assert_eq!(me["id"], again["id"]);
    let (_, accounts) = w.admin.get("/accounts");
    assert_eq!(accounts["accounts"].as_array().map(Vec::len), Some(1));
    let (_, audit) = w.admin.get("/audit?limit=5");
    assert!(audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["action"] == "account.register"));

    // the CLI signs in with the same token
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(bin())
        .args([
            "login",
            "--token",
            &jwt,
            "--portal-url",
            &w.gw.url("/portal"),
        ])
        .env("XDG_CONFIG_HOME", home.path())
        .env("HOME", home.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(bin())
        .args(["clients", "list"])
        .env("XDG_CONFIG_HOME", home.path())
        .env("HOME", home.path())
        .env_remove("TOLLGATE_ADMIN_TOKEN")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn an_account_rolls_restricts_and_reads_the_usage_of_its_own_keys() {
    let w = world();
    let token = signed_in(&w, "ann");
    let other = signed_in(&w, "bob");
    let (_, c) = call(
        &w,
        "POST",
        "/clients",
        &token,
        Some(json!({"name": "svc", "auth_type": "api_key"})),
    );
    let id = c["id"].as_str().unwrap();
    let key_id = c["api_key"]["id"].as_str().unwrap();
    let old = c["api_key"]["key"].as_str().unwrap();
    call(
        &w,
        "POST",
        "/subscriptions",
        &token,
        Some(json!({"client_id": id, "service": "orders", "plan": "free"})),
    );
    assert_eq!(key_status(&w, "/orders/1", old), 200);
    // roll within the portal's key lifetime; not someone else's key
    assert_eq!(
        call(&w, "POST", &format!("/keys/{key_id}/roll"), &other, None).0,
        404
    );
    let (s, new) = call(
        &w,
        "POST",
        &format!("/keys/{key_id}/roll"),
        &token,
        Some(json!({"grace_period_seconds": 60})),
    );
    assert_eq!(s, 201, "{new}");
    assert!(new["expires_at"].as_i64().unwrap() <= tollgate::store::now() + 7 * 86_400);
    assert_eq!(key_status(&w, "/orders/1", old), 200);
    assert_eq!(
        key_status(&w, "/orders/1", new["key"].as_str().unwrap()),
        200
    );
    // restrict its own client
    let (s, v) = call(
        &w,
        "PATCH",
        &format!("/clients/{id}"),
        &token,
        Some(json!({"allowed_cidrs": ["192.0.2.0/24"]})),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(key_status(&w, "/orders/1", old), 403);
    // usage: its own client's, never another's
    assert!(
        crate::harness::eventually(std::time::Duration::from_secs(6), || {
            let (_, u) = call(
                &w,
                "GET",
                &format!("/clients/{id}/usage?step=day"),
                &token,
                None,
            );
            u["buckets"].as_array().is_some_and(|b| !b.is_empty())
        }),
        "usage of the account's client"
    );
    assert_eq!(
        call(&w, "GET", &format!("/clients/{id}/usage"), &other, None).0,
        404
    );
}

#[test]
fn the_session_cookie_is_secure_on_a_tls_listener() {
    let ca = crate::tls::Ca::new();
    let (cert, key) = ca.server("portal", &["portal.test"]);
    let up = Upstream::start("up");
    let port = crate::harness::free_port();
    let body = format!(
        "TLS_LISTENER: {port}\n{}services:\n  s: {{ upstreams: [\"{}\"] }}\nportal: {{}}\n",
        crate::tls::listener_tls(&cert, &key, ""),
        up.target()
    );
    let gw = Gateway::start(&body);
    let (s, _) = Admin::new(&gw).post(
        "/accounts",
        json!({"username": "ann", "password": ONE_TIME}),
    );
    assert_eq!(s, 201);
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "-D",
            "-",
            "-o",
            "/dev/null",
            "--cacert",
        ])
        .arg(ca.path())
        .args(["--resolve", &format!("portal.test:{port}:127.0.0.1")])
        .args(["-H", "content-type: application/json", "--data"])
        .arg(json!({"username": "ann", "password": ONE_TIME}).to_string())
        .arg(format!("https://portal.test:{port}/portal/v1/session"))
        .output()
        .expect("curl");
    let head = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(
        head.starts_with("http/"),
        "{head}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cookie = head
        .lines()
        .find(|l| l.starts_with("set-cookie:"))
        .unwrap_or_else(|| panic!("{head}"));
    assert!(
        cookie.contains("; secure") && cookie.contains("httponly"),
        "{cookie}"
    );
    // and not on the plain listener
    let (_, headers, _) = {
        let r = client()
            .post(gw.url("/portal/v1/session"))
            .json(&json!({"username": "ann", "password": ONE_TIME}))
            .send()
            .unwrap();
        (r.status(), r.headers().clone(), ())
    };
    assert!(!headers["set-cookie"].to_str().unwrap().contains("Secure"));
}
