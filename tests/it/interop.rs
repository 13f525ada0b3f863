//! Independent OAuth2 clients obtain tokens from the token endpoint with
//! both client authentication methods, and independent JWT code verifies
//! them against the JWKS: Python's authlib, requests-oauthlib and PyJWT
//! (installed by scripts/test), and the `oauth2` crate.

use std::process::Command;

use serde_json::{json, Value};

use crate::harness::{client, repo_path, Admin, Gateway, Upstream};

fn setup() -> (Upstream, Gateway, String, String, String) {
    let up = Upstream::start("orders");
    let gw = Gateway::start(&format!(
        "services:\n  orders: {{ upstreams: [\"{}\"] }}\nroutes:\n  - {{ name: orders, match: {{ path_prefix: /orders }}, service: orders, auth: [jwt] }}\n",
        up.target()
    ));
    let admin = Admin::new(&gw);
    let c = admin.create_client(
        json!({"name": "Interop", "auth_type": "oauth2", "scopes": ["orders:read"]}),
    );
    let (status, v) = admin.post(
        "/subscriptions",
        json!({"client_id": c["id"], "service": "orders"}),
    );
    assert_eq!(status, 201, "{v}");
    // the default issuer is the first proxy listener
    let issuer = format!("http://{}", gw.proxy);
    (
        up,
        gw,
        c["id"].as_str().unwrap().to_string(),
        c["client_secret"].as_str().unwrap().to_string(),
        issuer,
    )
}

#[test]
fn python_clients_and_pyjwt() {
    let (_up, gw, id, secret, issuer) = setup();
    let out = Command::new("python3")
        .arg(repo_path("tests/interop/oauth_clients.py"))
        .args([&gw.url(""), &id, &secret, &issuer, "tollgate"])
        .output()
        .expect("python3 runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("ModuleNotFoundError"),
        "the interop packages are missing: run ./scripts/test, which installs authlib, requests-oauthlib and PyJWT\n{stderr}"
    );
    assert!(out.status.success(), "{stderr}");
    let result: Value = serde_json::from_slice(&out.stdout).expect("JSON from the interop script");
    assert_eq!(result["errors"], json!([]), "{result}");
    let tokens = result["tokens"].as_object().unwrap();
    assert_eq!(tokens.len(), 4, "{result}");
    for (name, token) in tokens {
        let r = client()
            .get(gw.url("/orders/1"))
            .bearer_auth(token.as_str().unwrap())
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "{name}");
    }
}

#[test]
fn the_oauth2_crate() {
    use oauth2::basic::BasicClient;
    use oauth2::{AuthType, ClientId, ClientSecret, TokenResponse, TokenUrl};
    let (_up, gw, id, secret, _) = setup();
    let http = oauth2::reqwest::blocking::Client::builder()
        .redirect(oauth2::reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for auth in [AuthType::BasicAuth, AuthType::RequestBody] {
        let c = BasicClient::new(ClientId::new(id.clone()))
            .set_client_secret(ClientSecret::new(secret.clone()))
            .set_token_uri(TokenUrl::new(gw.url("/oauth2/token")).unwrap())
            .set_auth_type(auth.clone());
        let token = c
            .exchange_client_credentials()
            .request(&http)
            .unwrap_or_else(|e| panic!("{auth:?}: {e:?}"));
        let access = token.access_token().secret();
        let r = client()
            .get(gw.url("/orders/1"))
            .bearer_auth(access)
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "{auth:?}");
    }
}
