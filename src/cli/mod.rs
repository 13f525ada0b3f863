//! The admin subcommands of `tollgate` (SPEC §2): an HTTP client of the
//! admin API. JSON on stdout, errors on stderr, non-zero exit codes.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::{json, Value};
use sha2::Digest;

#[derive(Args, Debug, Clone)]
pub struct AdminConn {
    /// Base URL of the admin listener.
    #[arg(
        long,
        env = "TOLLGATE_ADMIN_URL",
        default_value = "http://127.0.0.1:8081",
        global = true
    )]
    pub admin_url: String,
    /// The admin bearer token.
    #[arg(
        long,
        env = "TOLLGATE_ADMIN_TOKEN",
        hide_env_values = true,
        global = true
    )]
    pub admin_token: Option<String>,
    /// Print each request and its answer's status on stderr.
    #[arg(short = 'v', long, global = true)]
    pub verbose: bool,
}

#[derive(Subcommand, Debug)]
pub enum ClientsCmd {
    /// Create a client; prints it with its secret or key (shown once).
    Create {
        #[arg(short = 'N', long)]
        name: String,
        #[arg(short = 'D', long)]
        description: Option<String>,
        /// Default: `oauth2` with --store, otherwise `api_key`.
        #[arg(long, value_parser = ["api_key", "oauth2", "external"])]
        auth_type: Option<String>,
        #[arg(long)]
        issuer: Option<String>,
        #[arg(long)]
        external_id: Option<String>,
        /// Comma-separated scopes.
        #[arg(long, value_delimiter = ',')]
        scopes: Vec<String>,
        /// Save the credentials in the user's config dir (mode 0600) for `tollgate token`.
        #[arg(short = 'S', long)]
        store: bool,
    },
    /// List clients (active ones unless --revoked).
    List {
        #[arg(long)]
        revoked: bool,
    },
    Show {
        id: String,
    },
    Rename {
        id: String,
        name: String,
    },
    /// A new client secret (oauth2); the old one stops working.
    RotateSecret {
        id: String,
    },
    /// Final: credentials dead, subscriptions removed.
    Revoke {
        id: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum KeysCmd {
    Create {
        client_id: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        never_expires: bool,
    },
    List {
        client_id: String,
    },
    Revoke {
        key_id: String,
    },
    Renew {
        key_id: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum SubscriptionsCmd {
    Create {
        #[arg(long)]
        client: String,
        #[arg(long)]
        service: String,
        #[arg(long)]
        plan: Option<String>,
    },
    List {
        #[arg(long)]
        client: Option<String>,
    },
    Delete {
        id: String,
    },
}

enum Method {
    Get,
    Post,
    Patch,
    Delete,
}

struct Call {
    method: Method,
    path: String,
    body: Option<Value>,
}

fn call(method: Method, path: impl Into<String>, body: Option<Value>) -> Call {
    Call {
        method,
        path: path.into(),
        body,
    }
}

/// Where `clients create --store` keeps credentials.
pub fn credentials_path() -> Option<PathBuf> {
    dirs::config_dir().map(|d| d.join("tollgate").join("credentials.json"))
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("tollgate: {msg}");
    ExitCode::from(1)
}

/// Where a command goes: the admin API with the admin token, or, signed in
/// with `tollgate login` and without an admin token, the portal as the
/// account.
struct Target {
    base: String,
    token: String,
    what: &'static str,
}

fn target(conn: &AdminConn) -> Result<Target, ExitCode> {
    if let Some(token) = conn.admin_token.as_deref().filter(|t| !t.is_empty()) {
        return Ok(Target {
            base: format!("{}/admin/v1", conn.admin_url.trim_end_matches('/')),
            token: token.to_string(),
            what: "the admin API",
        });
    }
    if let Some(s) = saved_session() {
        return Ok(Target {
            base: format!("{}/v1", s.portal_url.trim_end_matches('/')),
            token: s.token,
            what: "the portal",
        });
    }
    eprintln!(
        "tollgate: not signed in and no admin token: run `tollgate login`, or set TOLLGATE_ADMIN_TOKEN"
    );
    Err(ExitCode::from(2))
}

fn http() -> Result<reqwest::blocking::Client, ExitCode> {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(fail)
}

fn execute(conn: &AdminConn, c: Call) -> Result<Value, ExitCode> {
    let t = target(conn)?;
    send(&t, c, conn.verbose)
}

fn send(t: &Target, c: Call, verbose: bool) -> Result<Value, ExitCode> {
    let client = http()?;
    let url = format!("{}{}", t.base, c.path);
    let (name, mut req) = match c.method {
        Method::Get => ("GET", client.get(&url)),
        Method::Post => ("POST", client.post(&url)),
        Method::Patch => ("PATCH", client.patch(&url)),
        Method::Delete => ("DELETE", client.delete(&url)),
    };
    req = req.bearer_auth(&t.token);
    if let Some(body) = &c.body {
        req = req.json(body);
    }
    if verbose {
        eprintln!("tollgate: {name} {url}");
    }
    let resp = req
        .send()
        .map_err(|e| fail(format!("cannot reach {} at {}: {e}", t.what, t.base)))?;
    let status = resp.status();
    if verbose {
        eprintln!("tollgate: HTTP {}", status.as_u16());
    }
    let text = resp.text().unwrap_or_default();
    let value: Value = if text.trim().is_empty() {
        json!({})
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| json!({ "raw": text }))
    };
    if !status.is_success() {
        let code = value["error"].as_str().unwrap_or("error");
        let message = value["message"].as_str().unwrap_or(text.trim());
        let hint = if status.as_u16() == 401 && t.what == "the portal" {
            " (sign in again with `tollgate login`)"
        } else {
            ""
        };
        return Err(fail(format!(
            "{message} (HTTP {}, {code}){hint}",
            status.as_u16()
        )));
    }
    Ok(value)
}

fn print(v: &Value) -> ExitCode {
    match serde_json::to_string_pretty(v) {
        Ok(s) => {
            println!("{s}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

fn save_credentials(v: &Value) -> Result<PathBuf, String> {
    let path = credentials_path().ok_or("no user config directory")?;
    let creds = json!({
        "client_id": v["id"],
        "client_secret": v.get("client_secret"),
        "api_key": v.get("api_key").map(|k| &k["key"]),
    });
    write_private(
        &path,
        &serde_json::to_string_pretty(&creds).unwrap_or_default(),
    )?;
    Ok(path)
}

pub fn clients(conn: &AdminConn, cmd: ClientsCmd) -> ExitCode {
    let mut store = false;
    let c = match cmd {
        ClientsCmd::Create {
            name,
            description,
            auth_type,
            issuer,
            external_id,
            scopes,
            store: s,
        } => {
            store = s;
            let auth_type =
                auth_type.unwrap_or_else(|| if s { "oauth2" } else { "api_key" }.to_string());
            call(
                Method::Post,
                "/clients",
                Some(
                    json!({"name": name, "description": description, "auth_type": auth_type,
                            "issuer": issuer, "external_id": external_id, "scopes": scopes}),
                ),
            )
        }
        ClientsCmd::List { revoked } => call(
            Method::Get,
            format!(
                "/clients?status={}",
                if revoked { "revoked" } else { "active" }
            ),
            None,
        ),
        ClientsCmd::Show { id } => call(Method::Get, format!("/clients/{}", seg(&id)), None),
        ClientsCmd::Rename { id, name } => call(
            Method::Patch,
            format!("/clients/{}", seg(&id)),
            Some(json!({"name": name})),
        ),
        ClientsCmd::RotateSecret { id } => {
            call(Method::Post, format!("/clients/{}/secret", seg(&id)), None)
        }
        ClientsCmd::Revoke { id } => {
            call(Method::Post, format!("/clients/{}/revoke", seg(&id)), None)
        }
    };
    match execute(conn, c) {
        Ok(v) => {
            if store {
                match save_credentials(&v) {
                    Ok(p) => eprintln!("tollgate: credentials saved to {}", p.display()),
                    Err(e) => {
                        print(&v);
                        return fail(format!(
                            "client created, but the credentials could not be saved: {e}"
                        ));
                    }
                }
            }
            print(&v)
        }
        Err(code) => code,
    }
}

pub fn keys(conn: &AdminConn, cmd: KeysCmd) -> ExitCode {
    let c = match cmd {
        KeysCmd::Create {
            client_id,
            name,
            never_expires,
        } => call(
            Method::Post,
            format!("/clients/{}/keys", seg(&client_id)),
            Some(json!({"name": name, "never_expires": never_expires})),
        ),
        KeysCmd::List { client_id } => call(
            Method::Get,
            format!("/clients/{}/keys", seg(&client_id)),
            None,
        ),
        KeysCmd::Revoke { key_id } => {
            call(Method::Post, format!("/keys/{}/revoke", seg(&key_id)), None)
        }
        KeysCmd::Renew { key_id } => {
            call(Method::Post, format!("/keys/{}/renew", seg(&key_id)), None)
        }
    };
    match execute(conn, c) {
        Ok(v) => print(&v),
        Err(code) => code,
    }
}

pub fn subscriptions(conn: &AdminConn, cmd: SubscriptionsCmd) -> ExitCode {
    let c = match cmd {
        SubscriptionsCmd::Create {
            client,
            service,
            plan,
        } => call(
            Method::Post,
            "/subscriptions",
            Some(json!({"client_id": client, "service": service, "plan": plan})),
        ),
        SubscriptionsCmd::List { client } => match client {
            Some(c) => call(
                Method::Get,
                format!("/subscriptions?client_id={}", seg(&c)),
                None,
            ),
            None => call(Method::Get, "/subscriptions", None),
        },
        SubscriptionsCmd::Delete { id } => {
            call(Method::Delete, format!("/subscriptions/{}", seg(&id)), None)
        }
    };
    match execute(conn, c) {
        Ok(v) => print(&v),
        Err(code) => code,
    }
}

/// Percent-encode an id for a path segment or query value.
fn seg(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[derive(Args, Debug)]
pub struct TokenArgs {
    /// Defaults to the credentials saved by `clients create --store`.
    #[arg(long)]
    pub client_id: Option<String>,
    #[arg(long, env = "TOLLGATE_CLIENT_SECRET", hide_env_values = true)]
    pub client_secret: Option<String>,
    #[arg(
        long,
        env = "TOLLGATE_TOKEN_URL",
        default_value = "http://127.0.0.1:8080/oauth2/token"
    )]
    pub token_url: String,
    /// Space-separated scopes to ask for (default: all of the client's).
    #[arg(long)]
    pub scope: Option<String>,
}

/// A token is reused until this share of its lifetime has passed.
const REUSE_FRACTION: f64 = 0.75;

/// Write a file readable by its owner only (0600), atomically.
fn write_private(path: &std::path::Path, text: &str) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    f.write_all(text.as_bytes())
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Print an access token, reusing a cached one until 75% of its lifetime.
pub fn token(args: TokenArgs) -> ExitCode {
    let saved: Value = credentials_path()
        .and_then(|p| std::fs::read(p).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null);
    let client_id = args
        .client_id
        .or_else(|| saved["client_id"].as_str().map(str::to_string));
    let secret = args
        .client_secret
        .or_else(|| saved["client_secret"].as_str().map(str::to_string));
    let (Some(client_id), Some(secret)) = (client_id, secret) else {
        eprintln!("tollgate: no client credentials: pass --client-id and --client-secret, or save them with `clients create --store`");
        return ExitCode::from(2);
    };
    let scope = args.scope.unwrap_or_default();
    // the secret's digest is part of the key: other credentials never reuse this token
    let secret_digest = crate::secrets::to_hex(&sha2::Sha256::digest(secret.as_bytes())[..8]);
    let cache_key = format!(
        "{} {} {} {}",
        args.token_url, client_id, secret_digest, scope
    );
    let cache_path = dirs::cache_dir().map(|d| d.join("tollgate").join("tokens.json"));
    let mut cache: Value = cache_path
        .as_ref()
        .and_then(|p| std::fs::read(p).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_else(|| json!({}));
    let now = crate::store::now();
    if let Some(entry) = cache.get(&cache_key) {
        let obtained = entry["obtained_at"].as_i64().unwrap_or(0);
        let lifetime = entry["expires_in"].as_i64().unwrap_or(0);
        if let Some(t) = entry["access_token"].as_str() {
            if (now - obtained) as f64 <= lifetime as f64 * REUSE_FRACTION {
                println!("{t}");
                return ExitCode::SUCCESS;
            }
        }
    }
    let mut form = vec![("grant_type", "client_credentials")];
    if !scope.is_empty() {
        form.push(("scope", scope.as_str()));
    }
    let client = match reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
    {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let resp = client
        .post(&args.token_url)
        .basic_auth(form_encode(&client_id), Some(form_encode(&secret)))
        .form(&form)
        .send();
    let resp = match resp {
        Ok(r) => r,
        Err(e) => {
            return fail(format!(
                "cannot reach the token endpoint at {}: {e}",
                args.token_url
            ))
        }
    };
    let status = resp.status();
    let body: Value = resp.json().unwrap_or(Value::Null);
    if !status.is_success() {
        return fail(format!(
            "{} (HTTP {}, {})",
            body["error_description"]
                .as_str()
                .unwrap_or("token request refused"),
            status.as_u16(),
            body["error"].as_str().unwrap_or("error")
        ));
    }
    let Some(token) = body["access_token"].as_str() else {
        return fail("the token endpoint answered without an access_token");
    };
    cache[&cache_key] =
        json!({"access_token": token, "obtained_at": now, "expires_in": body["expires_in"]});
    if let Some(p) = &cache_path {
        if let Err(e) = write_private(p, &cache.to_string()) {
            eprintln!("tollgate: token not cached: {e}");
        }
    }
    println!("{token}");
    ExitCode::SUCCESS
}

/// RFC 6749 §2.3.1: form-encode before HTTP Basic.
fn form_encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Where `tollgate login` keeps the session.
pub fn session_path() -> Option<PathBuf> {
    dirs::config_dir().map(|d| d.join("tollgate").join("session.json"))
}

struct SavedSession {
    portal_url: String,
    token: String,
}

fn saved_session() -> Option<SavedSession> {
    let v: Value = serde_json::from_slice(&std::fs::read(session_path()?).ok()?).ok()?;
    Some(SavedSession {
        portal_url: v["portal_url"].as_str()?.to_string(),
        token: v["token"].as_str()?.to_string(),
    })
}

#[derive(Args, Debug)]
pub struct LoginArgs {
    /// The portal of the gateway (its proxy listener and `portal.path`).
    #[arg(
        long,
        env = "TOLLGATE_PORTAL_URL",
        default_value = "http://127.0.0.1:8080/portal"
    )]
    pub portal_url: String,
    /// Asked for when absent.
    #[arg(long, short = 'u')]
    pub username: Option<String>,
    /// Read the password from the first line of stdin (and, if it is a
    /// one-time password, the new one from the second).
    #[arg(long, conflicts_with = "token")]
    pub password_stdin: bool,
    /// Sign in with a token of an identity provider instead.
    #[arg(long)]
    pub token: Option<String>,
    #[arg(short = 'v', long)]
    pub verbose: bool,
}

fn read_line(prompt: Option<&str>) -> Result<String, String> {
    if let Some(p) = prompt {
        eprint!("{p}");
        let _ = std::io::stderr().flush();
    }
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| format!("cannot read stdin: {e}"))?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// `tollgate login`: sign in to the portal and keep the session (0600).
/// A one-time password is changed on the spot.
pub fn login(args: LoginArgs) -> ExitCode {
    let portal_url = args.portal_url.trim_end_matches('/').to_string();
    let mut target = Target {
        base: format!("{portal_url}/v1"),
        token: String::new(),
        what: "the portal",
    };
    let mut password = None;
    let mut new_password = None;
    let (body, who) = match &args.token {
        Some(token) => (json!({"token": token}), "your identity".to_string()),
        None => {
            let username = match &args.username {
                Some(u) => u.clone(),
                None if args.password_stdin => return fail("--password-stdin needs --username"),
                None => match read_line(Some("Username: ")) {
                    Ok(u) => u,
                    Err(e) => return fail(e),
                },
            };
            let p = if args.password_stdin {
                let p = match read_line(None) {
                    Ok(p) => p,
                    Err(e) => return fail(e),
                };
                new_password = read_line(None).ok().filter(|l| !l.is_empty());
                p
            } else {
                match rpassword::prompt_password("Password: ") {
                    Ok(p) => p,
                    Err(e) => return fail(format!("cannot read the password: {e}")),
                }
            };
            password = Some(p.clone());
            (json!({"username": username, "password": p}), username)
        }
    };
    let session = match send(
        &target,
        call(Method::Post, "/session", Some(body)),
        args.verbose,
    ) {
        Ok(v) => v,
        Err(code) => return code,
    };
    let Some(token) = session["token"].as_str() else {
        return fail("the portal answered without a session token");
    };
    target.token = token.to_string();
    if session["password_change_required"].as_bool() == Some(true) {
        let new = match new_password {
            Some(p) => p,
            None if args.password_stdin => {
                return fail(
                    "this is a one-time password: give a new one on the second line of stdin",
                )
            }
            None => {
                eprintln!("tollgate: this one-time password must be changed now");
                let a = rpassword::prompt_password("New password: ").unwrap_or_default();
                let b = rpassword::prompt_password("New password again: ").unwrap_or_default();
                if a != b {
                    return fail("the two new passwords differ");
                }
                a
            }
        };
        let change = json!({"current_password": password.unwrap_or_default(), "new_password": new});
        if let Err(code) = send(
            &target,
            call(Method::Post, "/me/password", Some(change)),
            args.verbose,
        ) {
            return code;
        }
        eprintln!("tollgate: password changed");
    }
    let saved =
        json!({"portal_url": portal_url, "token": token, "expires_at": session["expires_at"]});
    let Some(path) = session_path() else {
        return fail("no user config directory to keep the session in");
    };
    match write_private(&path, &saved.to_string()) {
        Ok(()) => {
            eprintln!(
                "tollgate: signed in as {who}; session kept in {}",
                path.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!("signed in, but the session could not be kept: {e}")),
    }
}

/// `tollgate logout`: end the session on the gateway and forget it here.
pub fn logout(verbose: bool) -> ExitCode {
    let Some(saved) = saved_session() else {
        eprintln!("tollgate: not signed in");
        return ExitCode::SUCCESS;
    };
    let target = Target {
        base: format!("{}/v1", saved.portal_url.trim_end_matches('/')),
        token: saved.token,
        what: "the portal",
    };
    // an ended or unknown session is signed out already
    let ended = send(&target, call(Method::Delete, "/session", None), verbose);
    if let Some(path) = session_path() {
        let _ = std::fs::remove_file(path);
    }
    match ended {
        Ok(_) => eprintln!("tollgate: signed out"),
        Err(_) => eprintln!("tollgate: the session was no longer valid; forgotten here"),
    }
    ExitCode::SUCCESS
}
