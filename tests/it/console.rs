//! The web console in a real browser: Debian's chromium driven by
//! Playwright (tests/console/browser.py), against a gateway with a portal,
//! a real OpenID provider (oidc-provider, tests/console/idp.mjs) and axe-core
//! for accessibility. One browser launch walks through both consoles.
//!
//! scripts/test installs chromium, Playwright and the npm packages.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::{client, free_port, repo_path, Admin, Gateway, Upstream, ADMIN_TOKEN};

const USERNAME: &str = "alice";
const ONE_TIME: &str = "one-time-password-1";
const CHOSEN: &str = "alice's own long password";
const IDP_SUBJECT: &str = "carol-idp";
const IDP_CLIENT: &str = "tollgate-hub";
const IDP_SECRET: &str = "idp-client-secret-for-tests";
const BROWSER_LIMIT: Duration = Duration::from_secs(300);

/// A child process killed when dropped.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What the browser tests need, or a message saying how to get it.
fn prerequisites() -> Result<(), String> {
    if !PathBuf::from("/usr/bin/chromium").exists() {
        return Err("chromium is missing: apt-get install chromium (scripts/test does)".into());
    }
    let playwright = Command::new("python3")
        .args(["-c", "import playwright.sync_api"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !playwright {
        return Err(
            "Playwright is missing: pip install --user playwright (scripts/test does)".into(),
        );
    }
    if !repo_path("tests/console/node_modules/oidc-provider").exists()
        || !repo_path("tests/console/node_modules/axe-core").exists()
    {
        return Err("tests/console/node_modules is missing: (cd tests/console && npm ci)".into());
    }
    Ok(())
}

fn config(up: &Upstream, idp_port: u16) -> String {
    format!(
        r#"
auth:
  issuers:
    - name: corp
      issuer: "http://127.0.0.1:{idp_port}"
      jwks_url: "http://127.0.0.1:{idp_port}/jwks"
      audiences: [{IDP_CLIENT}]
      algorithms: [RS256]
      client_claim: sub
      client_id: {IDP_CLIENT}
      client_secret_env: CONSOLE_TEST_IDP_SECRET
plans:
  free: {{ rate: 100/s }}
  gold: {{ rate: 1000/s }}
services:
  orders: {{ upstreams: ["{up}"] }}
  billing: {{ upstreams: ["{up}"] }}
routes:
  - {{ name: orders, match: {{ path_prefix: /orders }}, service: orders, auth: [api_key] }}
portal:
  sign_in: {{ password: true, issuers: [corp] }}
  session_ttl: 1h
  services:
    orders: {{ plans: [free, gold], approval: auto, scopes: ["orders:read"] }}
    billing: {{ approval: manual, scopes: ["billing:read"] }}
  max_key_lifetime: 30d
"#,
        up = up.target()
    )
}

/// The OpenID provider, ready to answer.
fn start_idp(port: u16, redirect_uri: &str) -> Guard {
    let child = Command::new("node")
        .current_dir(repo_path("tests/console"))
        .args([
            "idp.mjs",
            &port.to_string(),
            IDP_CLIENT,
            IDP_SECRET,
            redirect_uri,
            IDP_SUBJECT,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start node tests/console/idp.mjs");
    let guard = Guard(child);
    let url = format!("http://127.0.0.1:{port}/.well-known/openid-configuration");
    let ready = crate::harness::eventually(Duration::from_secs(20), || {
        client()
            .get(&url)
            .send()
            .is_ok_and(|r| r.status().is_success())
    });
    assert!(ready, "the OpenID provider did not start");
    guard
}

/// Another account's client with a pending subscription, made through the
/// portal API: what an operator must decide on.
fn pending_subscription(gw: &Gateway, admin: &Admin) -> String {
    let (s, _) = admin.post(
        "/accounts",
        json!({"username": "bob", "password": "bob-one-time-pw"}),
    );
    assert_eq!(s, 201);
    let portal = |method: reqwest::Method, path: &str, token: Option<&str>, body: Value| {
        let mut req = client().request(method, gw.url(&format!("/portal/v1{path}")));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req.json(&body).send().expect("portal call");
        let status = r.status().as_u16();
        (status, r.json::<Value>().unwrap_or(Value::Null))
    };
    let (s, v) = portal(
        reqwest::Method::POST,
        "/session",
        None,
        json!({"username": "bob", "password": "bob-one-time-pw"}),
    );
    assert_eq!(s, 200, "{v}");
    let token = v["token"].as_str().unwrap().to_string();
    let (s, v) = portal(
        reqwest::Method::POST,
        "/me/password",
        Some(&token),
        json!({"current_password": "bob-one-time-pw", "new_password": "bob's own password"}),
    );
    assert_eq!(s, 204, "{v}");
    let (s, c) = portal(
        reqwest::Method::POST,
        "/clients",
        Some(&token),
        json!({"name": "other-client", "auth_type": "api_key"}),
    );
    assert_eq!(s, 201, "{c}");
    let (s, sub) = portal(
        reqwest::Method::POST,
        "/subscriptions",
        Some(&token),
        json!({"client_id": c["id"], "service": "billing"}),
    );
    assert_eq!(s, 201, "{sub}");
    assert_eq!(sub["status"], "pending");
    sub["id"].as_str().unwrap().to_string()
}

/// Run the browser walk-through; its output, or a panic with it.
fn run_browser(cfg: &Value) -> String {
    let mut child = Command::new("python3")
        .arg(repo_path("tests/console/browser.py"))
        .arg(cfg.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3 tests/console/browser.py");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        let mut e = String::new();
        let _ = err.read_to_string(&mut e);
        s + &e
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if started.elapsed() > BROWSER_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = reader.join().unwrap_or_default();
    match status {
        Some(s) if s.success() => output,
        Some(_) => panic!("the browser walk-through failed:\n{output}"),
        None => panic!("the browser walk-through took more than {BROWSER_LIMIT:?}:\n{output}"),
    }
}

#[test]
fn console_in_a_real_browser() {
    if let Err(missing) = prerequisites() {
        panic!("{missing}");
    }
    let up = Upstream::start("up");
    let idp_port = free_port();
    let gw = Gateway::builder(&config(&up, idp_port))
        .env("CONSOLE_TEST_IDP_SECRET", IDP_SECRET)
        .start();
    let _idp = start_idp(idp_port, &gw.url("/portal/callback"));
    let admin = Admin::new(&gw);
    let (s, v) = admin.post(
        "/accounts",
        json!({"username": USERNAME, "password": ONE_TIME, "display_name": USERNAME}),
    );
    assert_eq!(s, 201, "{v}");
    let (s, v) = admin.post(
        "/accounts",
        json!({"issuer": "corp", "subject": IDP_SUBJECT}),
    );
    assert_eq!(s, 201, "{v}");
    let pending_other = pending_subscription(&gw, &admin);

    // Screenshots for docs/images when asked (TOLLGATE_CONSOLE_SCREENSHOTS=docs/images).
    let shots = std::env::var("TOLLGATE_CONSOLE_SCREENSHOTS")
        .ok()
        .map(|d| repo_path(&d).display().to_string());
    let cfg = json!({
        "hub": gw.url("/portal"),
        "console": format!("http://{}/console", gw.admin),
        "admin_token": ADMIN_TOKEN,
        "username": USERNAME,
        "one_time": ONE_TIME,
        "new_password": CHOSEN,
        "idp_subject": IDP_SUBJECT,
        "pending_other": pending_other,
        "axe": repo_path("tests/console/node_modules/axe-core/axe.min.js"),
        "shots": shots,
    });
    let output = run_browser(&cfg);
    println!("{output}");

    // What the browser did is what the store holds, with the account as actor.
    let (_, audit) = admin.get("/audit?limit=1000");
    let entries = audit["entries"].as_array().expect("entries");
    let by = |action: &str| {
        entries
            .iter()
            .filter(|e| e["action"] == action)
            .map(|e| e["actor"].as_str().unwrap_or("").to_string())
            .collect::<Vec<_>>()
    };
    assert!(by("client.revoke")
        .iter()
        .all(|a| a.starts_with("account:")));
    assert!(by("subscription.approve")
        .iter()
        .all(|a| a.starts_with("admin@")));
    assert_eq!(by("subscription.reject").len(), 1);
    assert!(by("key.renew").len() == 1 && by("key.revoke").len() == 1);
}

/// Without a browser: the pages answer with their headers, an unknown
/// issuer has no sign-in flow, and a page needs a session.
#[test]
fn console_pages_without_a_session() {
    let up = Upstream::start("up");
    let gw = Gateway::start(&config(&up, free_port()));
    let c = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = c.get(gw.url("/portal/")).send().unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/portal/sign-in");
    let r = c.get(gw.url("/portal/sign-in")).send().unwrap();
    assert_eq!(r.status(), 200);
    let csp = r.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let body = r.text().unwrap();
    assert!(body.contains("Sign in with corp"));
    let r = c.get(gw.url("/portal/sign-in/nobody")).send().unwrap();
    assert_eq!(r.status(), 404);
    let r = c.get(gw.url("/portal/assets/console.js")).send().unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));
    let r = c
        .post(gw.url("/portal/clients"))
        .body("name=x")
        .send()
        .unwrap();
    assert_eq!(
        r.status(),
        303,
        "a change without a session goes to sign-in"
    );
    // the API is untouched by the console beside it
    let r = c.get(gw.url("/portal/v1/clients")).send().unwrap();
    assert_eq!(r.status(), 401);
    let r = c
        .get(format!("http://{}/console/audit", gw.admin))
        .send()
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/console/sign-in");
    let r = c
        .get(format!("http://{}/console", gw.admin))
        .send()
        .unwrap();
    assert_eq!(r.status(), 303);
}

/// The token of a console form in `html`.
fn form_token(html: &str) -> String {
    html.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the form's token")
        .to_string()
}

/// Signs `USERNAME` in with its one-time password through the sign-in form
/// of the portal at `base`: the form's cookie and the session cookie, as
/// the gateway set them. The answer sends the account to change it.
fn sign_in_with_one_time_password(c: &reqwest::blocking::Client, base: &str) -> (String, String) {
    let r = c.get(format!("{base}/sign-in")).send().unwrap();
    assert_eq!(r.status(), 200);
    let form_cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    let csrf = form_token(&r.text().unwrap());
    let r = c
        .post(format!("{base}/sign-in"))
        .header("cookie", form_cookie.split(';').next().unwrap())
        .form(&[
            ("csrf", csrf.as_str()),
            ("username", USERNAME),
            ("password", ONE_TIME),
        ])
        .send()
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/portal/password");
    let session = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|v| v.starts_with("tollgate_session="))
        .expect("the session cookie");
    (form_cookie, session)
}

/// On a TLS listener every console cookie is `Secure`, the session's too.
#[test]
fn console_cookies_are_secure_on_tls() {
    let ca = crate::tls::Ca::new();
    let (cert, key) = ca.server("hub", &["hub.test"]);
    let up = Upstream::start("up");
    let port = free_port();
    let gw = Gateway::start(&format!(
        "{}TLS_LISTENER: {port}\n      tls:\n        certificates:\n          - {{ cert: {}, key: {} }}\n",
        config(&up, free_port()),
        cert.display(),
        key.display()
    ));
    let (s, v) = Admin::new(&gw).post(
        "/accounts",
        json!({"username": USERNAME, "password": ONE_TIME}),
    );
    assert_eq!(s, 201, "{v}");
    let pem = std::fs::read(ca.path()).unwrap();
    let c = reqwest::blocking::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .resolve("hub.test", format!("127.0.0.1:{port}").parse().unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let base = format!("https://hub.test:{port}/portal");
    let (form_cookie, session) = sign_in_with_one_time_password(&c, &base);
    assert!(form_cookie.contains("; Secure"), "{form_cookie}");
    for part in [
        "; Secure",
        "; HttpOnly",
        "; SameSite=Strict",
        "; Path=/portal",
    ] {
        assert!(session.contains(part), "{session} lacks {part}");
    }
}

/// Without a browser: a signed-in account meets another account's client,
/// key and subscription as "not found", on pages and on changes alike; a
/// change without the session's form token is refused and changes nothing;
/// and the two new passwords must agree.
#[test]
fn console_refuses_what_is_not_the_accounts_own() {
    let up = Upstream::start("up");
    let gw = Gateway::start(&config(&up, free_port()));
    let admin = Admin::new(&gw);
    let (s, alice) = admin.post(
        "/accounts",
        json!({"username": USERNAME, "password": ONE_TIME}),
    );
    assert_eq!(s, 201, "{alice}");
    let (s, bob) = admin.post(
        "/accounts",
        json!({"username": "bob", "password": "bob's one-time password"}),
    );
    assert_eq!(s, 201, "{bob}");
    let (s, theirs) = admin.post(
        "/clients",
        json!({"name": "bob's", "auth_type": "api_key", "account_id": bob["id"]}),
    );
    assert_eq!(s, 201, "{theirs}");
    let their_client = theirs["id"].as_str().unwrap().to_string();
    let their_key = theirs["api_key"]["id"].as_str().unwrap().to_string();

    let c = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let (_, session) = sign_in_with_one_time_password(&c, &gw.url("/portal"));
    let session = session.split(';').next().unwrap().to_string();
    let get = |path: &str| {
        c.get(gw.url(path))
            .header("cookie", &session)
            .send()
            .unwrap()
    };
    let post = |path: &str, form: &[(&str, &str)]| {
        c.post(gw.url(path))
            .header("cookie", &session)
            .form(form)
            .send()
            .unwrap()
    };

    let r = get("/portal/password");
    assert_eq!(r.status(), 200);
    let csrf = form_token(&r.text().unwrap());
    let r = post(
        "/portal/password",
        &[
            ("csrf", &csrf),
            ("current_password", ONE_TIME),
            ("new_password", CHOSEN),
            ("again", "something else entirely"),
        ],
    );
    assert_eq!(r.status(), 400);
    assert!(r.text().unwrap().contains("The two new passwords differ."));
    let r = get("/portal/");
    assert_eq!(
        r.status(),
        303,
        "still on the one-time password after a refused change"
    );
    let r = post(
        "/portal/password",
        &[
            ("csrf", &csrf),
            ("current_password", ONE_TIME),
            ("new_password", CHOSEN),
            ("again", CHOSEN),
        ],
    );
    assert_eq!(r.status(), 303, "{}", r.text().unwrap_or_default());
    let r = get("/portal/");
    assert_eq!(r.status(), 200);
    let csrf = form_token(&r.text().unwrap());

    for page in [
        format!("/portal/clients/{their_client}"),
        format!("/portal/clients/{their_client}/edit"),
        format!("/portal/clients/{their_client}/revoke"),
        "/portal/clients/no-such-client".to_string(),
    ] {
        assert_eq!(get(&page).status(), 404, "GET {page}");
    }
    for change in [
        format!("/portal/clients/{their_client}/edit"),
        format!("/portal/clients/{their_client}/secret"),
        format!("/portal/clients/{their_client}/revoke"),
        format!("/portal/clients/{their_client}/keys"),
        format!("/portal/clients/{their_client}/subscriptions"),
        format!("/portal/keys/{their_key}/revoke"),
        format!("/portal/keys/{their_key}/renew"),
        format!("/portal/keys/{their_key}/roll"),
    ] {
        let r = post(&change, &[("csrf", &csrf), ("name", "taken over")]);
        assert_eq!(r.status(), 404, "POST {change}");
    }
    let r = post(
        &format!("/portal/keys/{their_key}/revoke"),
        &[("csrf", "not this session's")],
    );
    assert_eq!(r.status(), 403, "a change without the form token");
    assert!(r.text().unwrap().contains("This form has expired"));

    let (s, after) = admin.get(&format!("/clients/{their_client}"));
    assert_eq!((s, after["name"].as_str()), (200, Some("bob's")));
    assert_eq!(after["status"], "active");
    let (s, keys) = admin.get(&format!("/clients/{their_client}/keys"));
    assert_eq!(s, 200);
    let keys = keys["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1, "no key added: {keys:?}");
    assert_eq!(keys[0]["id"].as_str(), Some(their_key.as_str()));
    assert_eq!(keys[0]["status"], "active", "not revoked or rolled");
    assert_eq!(
        keys[0]["expires_at"], theirs["api_key"]["expires_at"],
        "not renewed"
    );
    let (s, subs) = admin.get(&format!("/subscriptions?client_id={their_client}"));
    assert_eq!(s, 200);
    assert_eq!(subs["subscriptions"], json!([]), "no subscription added");
}
