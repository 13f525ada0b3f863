//! Bearer JWTs at the proxy, over real HTTP: the built-in issuer (keys in
//! the store) and an external issuer (a JWKS server on 127.0.0.1), then
//! the hostile inputs of the proxy-auth issue. Every refusal is checked to
//! have reached no upstream.

use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::{json, Value};
use tollgate::auth::keys;
use tollgate::config::SigningAlgorithm;
use tollgate::store::{SigningKey, SqliteStore, Store};

use crate::harness::{client, Admin, Gateway, Upstream};

const EXT_ISS: &str = "https://idp.test/realms/corp";
const EXT2_ISS: &str = "https://idp2.test/realms/other";
const BUILTIN_ISS: &str = "http://tollgate.test";

/// A JWKS endpoint whose answer a test can change, counting fetches.
pub(crate) struct JwksServer {
    pub(crate) url: String,
    body: Arc<Mutex<(u16, String)>>,
    fetches: Arc<AtomicUsize>,
    _thread: std::thread::JoinHandle<()>,
}

impl JwksServer {
    pub(crate) fn start(body: Value) -> JwksServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}/certs", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new((200u16, body.to_string())));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (s, f) = (state.clone(), fetches.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let l = tokio::net::TcpListener::from_std(listener).unwrap();
                let app = axum::Router::new().route(
                    "/certs",
                    axum::routing::get(move || {
                        let s = s.clone();
                        let f = f.clone();
                        async move {
                            f.fetch_add(1, Ordering::SeqCst);
                            let (status, body) = s.lock().unwrap().clone();
                            (axum::http::StatusCode::from_u16(status).unwrap(), body)
                        }
                    }),
                );
                let _ = axum::serve(l, app).await;
            });
        });
        JwksServer {
            url,
            body: state,
            fetches,
            _thread: thread,
        }
    }

    fn set(&self, status: u16, body: &str) {
        *self.body.lock().unwrap() = (status, body.to_string());
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

pub(crate) fn key_set(keys: &[&SigningKey]) -> Value {
    json!({"keys": keys.iter().map(|k| k.public_jwk.clone()).collect::<Vec<_>>()})
}

struct World {
    up: Upstream,
    gw: Gateway,
    admin: Admin,
    jwks: JwksServer,
    ec: SigningKey,
    rsa: SigningKey,
    other: SigningKey,
    builtin: SigningKey,
    oauth_client: String,
}

fn now() -> i64 {
    tollgate::store::now()
}

fn world() -> World {
    let ec = keys::generate(SigningAlgorithm::Es256).unwrap();
    let rsa = keys::generate(SigningAlgorithm::Rs256).unwrap();
    // the other issuer's key carries the same kid string as corp's EC key:
    // keys are resolved per (issuer, kid), never across issuers
    let mut other = keys::generate(SigningAlgorithm::Es256).unwrap();
    other.kid = ec.kid.clone();
    other.public_jwk["kid"] = json!(ec.kid);
    let jwks = JwksServer::start(key_set(&[&ec, &rsa]));
    let jwks2 = JwksServer::start(key_set(&[&other]));
    let up = Upstream::start("orders");
    let gw = Gateway::start(&format!(
        r#"
auth:
  tokens: {{ issuer: "{BUILTIN_ISS}", audience: tollgate, leeway: 30s }}
  issuers:
    - {{ name: corp, issuer: "{EXT_ISS}", jwks_url: "{}", audiences: [orders-api], algorithms: [RS256, ES256, PS256, RS512], client_claim: azp, leeway: 30s }}
    - {{ name: other, issuer: "{EXT2_ISS}", jwks_url: "{}", audiences: [orders-api], algorithms: [ES256], client_claim: azp }}
services:
  orders: {{ upstreams: ["{}"] }}
routes:
  - {{ name: orders, match: {{ path_prefix: /orders }}, service: orders, auth: [jwt] }}
  - {{ name: admin, match: {{ path_prefix: /orders-admin }}, service: orders, auth: [jwt, api_key], scopes: [orders:admin] }}
"#,
        jwks.url,
        jwks2.url,
        up.target()
    ));
    std::mem::forget(jwks2);
    let admin = Admin::new(&gw);
    let ext = admin.create_client(json!({"name": "Partner", "auth_type": "external", "issuer": "corp", "external_id": "partner-app"}));
    let (status, v) = admin.post(
        "/subscriptions",
        json!({"client_id": ext["id"], "service": "orders"}),
    );
    assert_eq!(status, 201, "{v}");
    let o = admin
        .create_client(json!({"name": "Batch", "auth_type": "oauth2", "scopes": ["orders:read"]}));
    let (status, v) = admin.post(
        "/subscriptions",
        json!({"client_id": o["id"], "service": "orders"}),
    );
    assert_eq!(status, 201, "{v}");
    let builtin = stored_signing_key(&gw);
    World {
        up,
        gw,
        admin,
        jwks,
        ec,
        rsa,
        other,
        builtin,
        oauth_client: o["id"].as_str().unwrap().to_string(),
    }
}

/// The built-in issuer's key, read from the gateway's own store.
fn stored_signing_key(gw: &Gateway) -> SigningKey {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = SqliteStore::open(&gw.dir.path().join("tollgate.db"))
            .await
            .unwrap();
        let keys = store.list_signing_keys().await.unwrap();
        store.close().await;
        keys.into_iter()
            .next()
            .expect("a signing key generated on first start")
    })
}

pub(crate) fn sign(key: &SigningKey, header: Value, claims: Value) -> String {
    let alg = header["alg"].as_str().unwrap_or(&key.algorithm).to_string();
    let mut h = header;
    if h.get("alg").is_none() {
        h["alg"] = json!(alg);
    }
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(h.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let a = keys::jwt_algorithm(&alg).unwrap();
    let sig = jsonwebtoken::crypto::sign(
        signing_input.as_bytes(),
        &keys::encoding_key(key).unwrap(),
        a,
    )
    .unwrap();
    format!("{signing_input}.{sig}")
}

fn ext_claims() -> Value {
    json!({"iss": EXT_ISS, "aud": "orders-api", "azp": "partner-app", "exp": now() + 300, "iat": now()})
}

fn ext_token(w: &World) -> String {
    sign(&w.ec, json!({"kid": w.ec.kid, "typ": "JWT"}), ext_claims())
}

/// `GET /orders/1` with `Authorization: auth`: (status, JSON body or
/// Null, headers). Panics when no answer comes.
fn answer(w: &World, auth: &str) -> (u16, Value, reqwest::header::HeaderMap) {
    let r = client()
        .get(w.gw.url("/orders/1"))
        .header("authorization", auth)
        .send()
        .unwrap_or_else(|e| panic!("no answer to a request with a bearer token: {e}"));
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, r.json().unwrap_or(Value::Null), headers)
}

fn call(w: &World, auth: &str) -> u16 {
    answer(w, auth).0
}

fn bearer(w: &World, token: &str) -> u16 {
    call(w, &format!("Bearer {token}"))
}

/// The `error_description`s docs/api.md lists for a refused bearer token.
const TOKEN_REFUSALS: &[&str] = &[
    "malformed token",
    "token too large",
    "unknown issuer",
    "algorithm not allowed for this issuer",
    "unsupported critical header",
    "token has no key id",
    "unknown signing key",
    "bad signature",
    "token expired",
    "token not yet valid",
    "token issued in the future",
    "wrong audience",
    "missing or invalid claims",
    "token revoked",
    "unknown or revoked client",
];

fn header(headers: &reqwest::header::HeaderMap, name: &str) -> Option<String> {
    headers.get(name).map(|v| v.to_str().unwrap().to_string())
}

/// A refusal answers as the contract says: 401 `invalid_token` with a
/// listed description that the `WWW-Authenticate` challenge repeats, or a
/// 400/431 that closes the connection. `what` names the case.
fn assert_refused(what: &str, (status, body, headers): &(u16, Value, reqwest::header::HeaderMap)) {
    match status {
        401 => {
            assert_eq!(body["error"], "invalid_token", "{what}: {body}");
            let why = body["error_description"].as_str().unwrap_or_default();
            assert!(TOKEN_REFUSALS.contains(&why), "{what}: {body}");
            assert_eq!(
                header(headers, "www-authenticate"),
                Some(format!(
                    "Bearer realm=\"tollgate\", error=\"invalid_token\", error_description=\"{why}\""
                )),
                "{what}"
            );
        }
        400 | 431 => {
            let code = if *status == 400 {
                "bad_request"
            } else {
                "request_header_fields_too_large"
            };
            assert_eq!(body["error"], code, "{what}: {body}");
            assert_eq!(
                header(headers, "connection").as_deref(),
                Some("close"),
                "{what}"
            );
        }
        other => panic!("{what}: got {other} {body}"),
    }
}

/// `tollgate_jwks_refresh_total` of the `corp` issuer for `result` (`ok`
/// or `error`); the series appears with its first refresh of that result.
fn corp_refreshes(w: &World, result: &str) -> f64 {
    w.gw.metric_opt(&format!(
        "tollgate_jwks_refresh_total{{issuer=\"corp\",result=\"{result}\"}}"
    ))
    .unwrap_or(0.0)
}

/// Wait (bounded) for the JWKS fetch the gateway makes at start.
fn wait_for_first_jwks(w: &World) {
    assert!(
        crate::harness::eventually(Duration::from_secs(10), || corp_refreshes(w, "ok") >= 1.0),
        "the gateway fetched corp's JWKS at start"
    );
}

#[test]
fn external_and_builtin_tokens_pass() {
    let w = world();
    let token = ext_token(&w);
    let r = client()
        .get(w.gw.url("/orders/1"))
        .bearer_auth(&token)
        .send()
        .unwrap();
    let status = r.status();
    let body = r.text().unwrap_or_default();
    let m = w.gw.metrics_text();
    let failures: Vec<&str> = m
        .lines()
        .filter(|l| l.contains("auth_failures") || l.contains("jwks_refresh"))
        .collect();
    assert_eq!(status, 200, "{body} {failures:?}");
    let seen = w.up.requests().pop().unwrap();
    assert_eq!(seen.header("x-consumer-name").as_deref(), Some("Partner"));
    assert_eq!(seen.header("authorization"), None, "the token is stripped");
    // RS256 from the same JWKS, and the scheme in any case
    let rs = sign(&w.rsa, json!({"kid": w.rsa.kid}), ext_claims());
    assert_eq!(call(&w, &format!("bEaReR {rs}")), 200);

    let claims = json!({"iss": BUILTIN_ISS, "aud": "tollgate", "sub": w.oauth_client, "exp": now() + 300,
                        "iat": now(), "jti": "j1", "scope": "orders:read"});
    let t = sign(
        &w.builtin,
        json!({"kid": w.builtin.kid, "typ": "at+jwt"}),
        claims.clone(),
    );
    assert_eq!(bearer(&w, &t), 200);
    let seen = w.up.requests().pop().unwrap();
    assert_eq!(seen.header("x-consumer-name").as_deref(), Some("Batch"));
    // scopes come from the token
    let r = client()
        .get(w.gw.url("/orders-admin"))
        .bearer_auth(&t)
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    let mut admin_claims = claims;
    admin_claims["scope"] = json!("orders:read orders:admin");
    let t2 = sign(&w.builtin, json!({"kid": w.builtin.kid}), admin_claims);
    assert_eq!(w.gw.bearer_status("/orders-admin", &t2), 200);
}

#[test]
fn a_revoked_client_is_refused_at_once_even_with_a_cached_token() {
    let w = world();
    let claims =
        json!({"iss": BUILTIN_ISS, "aud": "tollgate", "sub": w.oauth_client, "exp": now() + 300});
    let t = sign(&w.builtin, json!({"kid": w.builtin.kid}), claims);
    // enough requests that every worker thread has token and client cached
    for _ in 0..8 {
        assert_eq!(bearer(&w, &t), 200);
    }
    let hits = || {
        w.gw.metric("tollgate_cache_lookups_total{cache=\"token\",result=\"hit\"}")
    };
    let misses = || {
        w.gw.metric("tollgate_cache_lookups_total{cache=\"token\",result=\"miss\"}")
    };
    let (hits_before, misses_before) = (hits(), misses());
    let (status, v) = w
        .admin
        .post(&format!("/clients/{}/revoke", w.oauth_client), json!({}));
    assert_eq!(status, 200, "{v}");
    for _ in 0..8 {
        let refused = answer(&w, &format!("Bearer {t}"));
        assert_eq!(refused.0, 401);
        assert_eq!(refused.1["error_description"], "unknown or revoked client");
        assert_refused("a cached token of a revoked client", &refused);
    }
    assert_eq!(
        (hits() - hits_before, misses() - misses_before),
        (8.0, 0.0),
        "every refusal came with the token found in the cache"
    );
}

fn raw(header: &Value, claims: &Value, sig: &str) -> String {
    format!(
        "{}.{}.{sig}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

#[test]
fn hostile_tokens_are_401_and_reach_nothing() {
    let w = world();
    let good = ext_token(&w);
    let real_sig = good.rsplit('.').next().unwrap().to_string();
    let kid = w.ec.kid.clone();
    let c = ext_claims();
    let hmac = |secret: &[u8], header: Value| -> String {
        let enc = jsonwebtoken::EncodingKey::from_secret(secret);
        jsonwebtoken::encode(
            &serde_json::from_value::<jsonwebtoken::Header>(header).unwrap(),
            &ext_claims(),
            &enc,
        )
        .unwrap()
    };
    let mut cases: Vec<(String, String)> = Vec::new();
    let mut add = |name: &str, token: String| cases.push((name.to_string(), token));

    // 1. alg none, empty signature, wrong segment counts
    for alg in ["none", "None", "NONE"] {
        add(
            &format!("alg {alg}, empty sig"),
            format!(
                "{}.",
                raw(&json!({"alg": alg, "kid": kid}), &c, "").trim_end_matches('.')
            ),
        );
        add(
            &format!("alg {alg}, real sig"),
            raw(&json!({"alg": alg, "kid": kid}), &c, &real_sig),
        );
    }
    add(
        "empty signature",
        raw(&json!({"alg": "ES256", "kid": kid}), &c, ""),
    );
    let parts: Vec<&str> = good.split('.').collect();
    add("two segments", format!("{}.{}", parts[0], parts[1]));
    add("four segments", format!("{good}.{}", parts[2]));
    // 2. algorithm confusion: HS256 keyed with the public key
    let jwk_json = w.rsa.public_jwk.to_string();
    let pem = rsa_public_pem(&w.rsa);
    let der = STANDARD
        .decode(
            pem.lines()
                .filter(|l| !l.starts_with("-----"))
                .collect::<String>(),
        )
        .unwrap();
    for (what, secret) in [
        ("PEM", pem.as_bytes().to_vec()),
        ("DER", der),
        ("JWK", jwk_json.into_bytes()),
    ] {
        add(
            &format!("HS256 with public key as {what}"),
            hmac(&secret, json!({"alg": "HS256", "kid": w.rsa.kid})),
        );
    }
    // 3. a JWK pinned to RS256, a token saying PS256 or RS512
    for alg in ["PS256", "RS512"] {
        add(
            &format!("pinned RS256 key, {alg}"),
            sign(&w.rsa, json!({"alg": alg, "kid": w.rsa.kid}), ext_claims()),
        );
    }
    // 4. ECDSA r = s = 0 and r = s = n (CVE-2022-21449)
    let n = hex("FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551");
    let zero = URL_SAFE_NO_PAD.encode([0u8; 64]);
    let nn = URL_SAFE_NO_PAD.encode([n.clone(), n].concat());
    add(
        "ECDSA r=s=0",
        raw(&json!({"alg": "ES256", "kid": kid}), &c, &zero),
    );
    add(
        "ECDSA r=s=n",
        raw(&json!({"alg": "ES256", "kid": kid}), &c, &nn),
    );
    // 6. hostile kids
    for k in [
        "../../../../dev/null".to_string(),
        "' OR '1'='1".to_string(),
        "k".repeat(10_000),
        "a\r\nInjected: yes\u{0}".to_string(),
    ] {
        add(
            &format!("kid {}", &k[..k.len().min(20)]),
            sign(&w.ec, json!({"kid": k}), ext_claims()),
        );
    }
    // 7. crit and b64 with a valid signature
    add(
        "crit",
        sign(
            &w.ec,
            json!({"kid": kid, "crit": ["x-unknown"], "x-unknown": 1}),
            ext_claims(),
        ),
    );
    add(
        "b64 false",
        sign(
            &w.ec,
            json!({"kid": kid, "b64": false, "crit": ["b64"]}),
            ext_claims(),
        ),
    );
    add(
        "b64 false alone",
        sign(&w.ec, json!({"kid": kid, "b64": false}), ext_claims()),
    );
    // 8. time
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = ext_claims();
        f(&mut c);
        sign(&w.ec, json!({"kid": kid}), c)
    };
    add("exp past leeway", with(&|c| c["exp"] = json!(now() - 120)));
    add(
        "exp missing",
        with(&|c| {
            c.as_object_mut().unwrap().remove("exp");
        }),
    );
    add(
        "exp string",
        with(&|c| c["exp"] = json!((now() + 300).to_string())),
    );
    add("exp 1e300", with(&|c| c["exp"] = json!(1e300)));
    add("exp negative", with(&|c| c["exp"] = json!(-5)));
    add("exp bool", with(&|c| c["exp"] = json!(true)));
    add("nbf future", with(&|c| c["nbf"] = json!(now() + 600)));
    add("iat future", with(&|c| c["iat"] = json!(now() + 600)));
    // 9. iss and aud
    add(
        "iss missing",
        with(&|c| {
            c.as_object_mut().unwrap().remove("iss");
        }),
    );
    add(
        "iss prefix",
        with(&|c| c["iss"] = json!("https://idp.test/realms/cor")),
    );
    add(
        "iss trailing slash",
        with(&|c| c["iss"] = json!(format!("{EXT_ISS}/"))),
    );
    add(
        "iss case",
        with(&|c| c["iss"] = json!(EXT_ISS.to_uppercase())),
    );
    add("iss array", with(&|c| c["iss"] = json!([EXT_ISS])));
    add(
        "aud missing",
        with(&|c| {
            c.as_object_mut().unwrap().remove("aud");
        }),
    );
    add("aud wrong", with(&|c| c["aud"] = json!("billing-api")));
    add("aud empty", with(&|c| c["aud"] = json!([])));
    // 10. issuer A's token signed with issuer B's key (B's kid), and B's kid under A
    add(
        "A signed by B",
        sign(&w.other, json!({"kid": w.other.kid}), ext_claims()),
    );
    // 11. encodings and structure
    let padded = format!("{}==.{}.{}", parts[0], parts[1], parts[2]);
    add("padding", padded);
    add(
        "standard alphabet",
        good.replace('-', "+").replace('_', "/") + if good.contains(['-', '_']) { "" } else { "+" },
    );
    add(
        "whitespace",
        format!("{}. {}.{}", parts[0], parts[1], parts[2]),
    );
    add(
        "JWE five segments",
        format!(
            "{}.{}.{}.{}.{}",
            parts[0], parts[1], parts[2], parts[1], parts[2]
        ),
    );
    add("JSON serialization", json!({"payload": parts[1], "signatures": [{"protected": parts[0], "signature": parts[2]}]}).to_string());
    let dup_exp = format!(
        r#"{{"iss":"{EXT_ISS}","aud":"orders-api","azp":"partner-app","exp":1,"exp":{}}}"#,
        now() + 300
    );
    add(
        "duplicate exp",
        sign_raw(
            &w.ec,
            &format!(r#"{{"alg":"ES256","kid":"{kid}"}}"#),
            &dup_exp,
        ),
    );
    add(
        "duplicate alg",
        sign_raw(
            &w.ec,
            &format!(r#"{{"alg":"none","alg":"ES256","kid":"{kid}"}}"#),
            &ext_claims().to_string(),
        ),
    );
    add(
        "invalid UTF-8",
        format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode([0xff, 0xfe, b'{']),
            parts[2]
        ),
    );
    let deep = "[".repeat(100_000) + &"]".repeat(100_000);
    add(
        "deep nesting",
        sign_raw(
            &w.ec,
            &format!(r#"{{"alg":"ES256","kid":"{kid}"}}"#),
            &format!(r#"{{"iss":"{EXT_ISS}","x":{deep}}}"#),
        ),
    );

    let total = cases.len();
    let mut first = Vec::new();
    for (name, token) in &cases {
        let refused = answer(&w, &format!("Bearer {token}"));
        assert_refused(name, &refused);
        let body = refused.1.to_string();
        let payload = token.split('.').nth(1).unwrap_or(token);
        assert!(
            payload.len() < 8 || !body.contains(payload),
            "{name}: the token is echoed"
        );
        assert_eq!(w.up.count(), 0, "{name} reached the upstream");
        first.push(refused);
    }
    assert!(total >= 45, "{total} cases");

    // sent again, each is refused the same way, most of them now from the
    // memory of refused tokens, without a second signature check
    let remembered = r#"tollgate_cache_lookups_total{cache="rejected_token",result="hit"}"#;
    let before = w.gw.metric_opt(remembered).unwrap_or(0.0);
    for ((name, token), was) in cases.iter().zip(&first) {
        let again = answer(&w, &format!("Bearer {token}"));
        assert_eq!((again.0, &again.1), (was.0, &was.1), "{name}, sent again");
        assert_eq!(
            header(&again.2, "www-authenticate"),
            header(&was.2, "www-authenticate"),
            "{name}, sent again"
        );
    }
    assert_eq!(w.up.count(), 0);
    let hits = w.gw.metric(remembered) - before;
    assert!(
        hits >= 20.0,
        "only {hits} of {total} refusals answered from memory"
    );

    // a 1 MB token: refused without reaching anything
    let big = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(vec![b'a'; 1_000_000]),
        parts[2]
    );
    let refused = answer(&w, &format!("Bearer {big}"));
    assert!(
        refused.0 == 431 || refused.0 == 401,
        "1 MB token: {}",
        refused.0
    );
    assert_refused("1 MB token", &refused);

    // 12. the header itself
    for auth in ["Bearer", "Bearer "] {
        let refused = answer(&w, auth);
        assert_eq!(refused.0, 401, "{auth:?}");
        assert_refused(auth, &refused);
    }
    let refused = answer(&w, &format!("Bearer {good} {good}"));
    assert_eq!(refused.0, 401);
    assert_refused("two tokens in one header", &refused);
    let two = client()
        .get(w.gw.url("/orders/1"))
        .header("authorization", format!("Bearer {good}"))
        .header("authorization", format!("Bearer {good}"))
        .send()
        .unwrap();
    assert_eq!(two.status(), 400);
    assert_eq!(
        header(two.headers(), "connection").as_deref(),
        Some("close")
    );
    assert_eq!(two.json::<Value>().unwrap()["error"], "bad_request");
    assert_eq!(w.up.count(), 0);

    // and the good token still passes: the refusals were about the tokens
    assert_eq!(bearer(&w, &good), 200);
    // an audience array that contains ours passes
    let mut c = ext_claims();
    c["aud"] = json!(["billing-api", "orders-api"]);
    assert_eq!(bearer(&w, &sign(&w.ec, json!({"kid": kid}), c)), 200);
    // expired 10 s ago, within the issuer's 30 s leeway: it passes, from
    // the verified-token cache too
    let mut c = ext_claims();
    c["exp"] = json!(now() - 10);
    let late = sign(&w.ec, json!({"kid": kid}), c);
    assert_eq!(bearer(&w, &late), 200, "within the leeway");
    assert_eq!(bearer(&w, &late), 200, "within the leeway, cached");
    let logs = w.gw.logs();
    assert!(
        !logs.contains("Injected: yes"),
        "nothing injected into the logs"
    );
}

#[test]
fn embedded_keys_and_key_urls_are_never_used() {
    let w = world();
    wait_for_first_jwks(&w);
    let trap = TcpListener::bind("127.0.0.1:0").unwrap();
    trap.set_nonblocking(true).unwrap();
    let trap_url = format!("http://{}/jwks", trap.local_addr().unwrap());
    // a key of the attacker's, embedded or pointed at
    let evil = keys::generate(SigningAlgorithm::Es256).unwrap();
    let headers = [
        (
            json!({"kid": evil.kid, "jwk": evil.public_jwk}),
            "unknown signing key",
        ),
        (
            json!({"kid": evil.kid, "jku": trap_url}),
            "unknown signing key",
        ),
        (
            json!({"kid": evil.kid, "x5u": trap_url}),
            "unknown signing key",
        ),
        // corp's kid: checked with corp's key, which did not sign it
        (json!({"kid": w.ec.kid, "jku": trap_url}), "bad signature"),
    ];
    let fetches = w.jwks.fetches();
    for (h, why) in headers {
        let t = sign(&evil, h.clone(), ext_claims());
        let refused = answer(&w, &format!("Bearer {t}"));
        assert_eq!(refused.0, 401, "{h}");
        assert_eq!(refused.1["error_description"], why, "{h}");
        assert_refused(&h.to_string(), &refused);
    }
    // The unknown kid was looked for where the configuration says, while
    // the first request was answered: once (the refetch cooldown), and
    // that lookup is over. A URL from a token would have been fetched in
    // the same lookup, so its connection would be waiting by now.
    assert_eq!(
        w.jwks.fetches(),
        fetches + 1,
        "the unknown kid was looked up at the configured JWKS URL"
    );
    assert!(
        trap.accept().is_err(),
        "the gateway connected to a URL from a token"
    );
    assert_eq!(w.up.count(), 0);
}

#[test]
fn jwks_failures_keep_known_keys_and_refetches_are_rate_limited() {
    let w = world();
    wait_for_first_jwks(&w);
    let good = ext_token(&w);
    assert_eq!(bearer(&w, &good), 200);
    let admin = Admin::new(&w.gw);
    for (n, (status, body)) in [
        (500, "oops"),
        (200, "<html>nope</html>"),
        (200, "{not json"),
        (200, r#"{"keys":[]}"#),
    ]
    .into_iter()
    .enumerate()
    {
        w.jwks.set(status, body);
        let (fetches, errors) = (w.jwks.fetches(), corp_refreshes(&w, "error"));
        // A reload refreshes every issuer's JWKS (in the background) and
        // starts a new refetch cooldown: the failing answer is fetched...
        let (reload, v) = admin.post("/reload", json!({}));
        assert_eq!(reload, 200, "{v}");
        assert!(
            crate::harness::eventually(Duration::from_secs(10), || corp_refreshes(&w, "error")
                == errors + 1.0),
            "the reload fetched the JWKS answering {status} {body}"
        );
        // ...and so is it for a kid the gateway does not know
        let unknown = sign(&w.ec, json!({"kid": format!("rotated-{n}")}), ext_claims());
        let refused = answer(&w, &format!("Bearer {unknown}"));
        assert_eq!(refused.1["error_description"], "unknown signing key");
        assert_refused("an unknown kid", &refused);
        assert_eq!(
            (w.jwks.fetches(), corp_refreshes(&w, "error")),
            (fetches + 2, errors + 2.0),
            "the unknown kid refetched the JWKS answering {status} {body}"
        );
        // a fresh token (not in the verified cache) with the known kid
        let mut c = ext_claims();
        c["jti"] = json!(format!("fresh-{n}"));
        let t = sign(&w.ec, json!({"kid": w.ec.kid}), c);
        assert_eq!(
            bearer(&w, &t),
            200,
            "known kid after the JWKS answered {status} {body}"
        );
    }
    // many tokens with random kids: at most one fetch per cooldown
    let before = w.jwks.fetches();
    let c = client();
    let n = 10_000;
    let started = std::time::Instant::now();
    for i in 0..n {
        let t = sign(&w.ec, json!({"kid": format!("random-{i}")}), ext_claims());
        let status = c
            .get(w.gw.url("/orders/1"))
            .bearer_auth(&t)
            .send()
            .unwrap()
            .status();
        assert_eq!(status, 401);
    }
    let fetched = w.jwks.fetches() - before;
    // one fetch per started 30 s cooldown window
    let windows = 1 + (started.elapsed().as_secs() / 30) as usize;
    assert!(
        fetched <= windows,
        "{fetched} JWKS fetches for {n} unknown kids in {windows} cooldown windows"
    );
    assert!(corp_refreshes(&w, "ok") >= 1.0);
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn sign_raw(key: &SigningKey, header: &str, payload: &str) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let sig = jsonwebtoken::crypto::sign(
        input.as_bytes(),
        &keys::encoding_key(key).unwrap(),
        jsonwebtoken::Algorithm::ES256,
    )
    .unwrap();
    format!("{input}.{sig}")
}

fn rsa_public_pem(key: &SigningKey) -> String {
    use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey, LineEnding};
    let sk = rsa::RsaPrivateKey::from_pkcs8_pem(&key.private_pem).unwrap();
    sk.to_public_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap()
}
