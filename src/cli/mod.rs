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
}

#[derive(Subcommand, Debug)]
pub enum ClientsCmd {
    /// Create a client; prints it with its secret or key (shown once).
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        description: Option<String>,
        #[arg(long, default_value = "api_key", value_parser = ["api_key", "oauth2", "external"])]
        auth_type: String,
        #[arg(long)]
        issuer: Option<String>,
        #[arg(long)]
        external_id: Option<String>,
        /// Comma-separated scopes.
        #[arg(long, value_delimiter = ',')]
        scopes: Vec<String>,
        /// Save the credentials in the user's config dir (mode 0600) for `tollgate token`.
        #[arg(long)]
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

fn execute(conn: &AdminConn, c: Call) -> Result<Value, ExitCode> {
    let Some(token) = conn.admin_token.as_deref().filter(|t| !t.is_empty()) else {
        eprintln!("tollgate: no admin token: set TOLLGATE_ADMIN_TOKEN or pass --admin-token");
        return Err(ExitCode::from(2));
    };
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(fail)?;
    let url = format!(
        "{}/admin/v1{}",
        conn.admin_url.trim_end_matches('/'),
        c.path
    );
    let mut req = match c.method {
        Method::Get => client.get(&url),
        Method::Post => client.post(&url),
        Method::Patch => client.patch(&url),
        Method::Delete => client.delete(&url),
    }
    .bearer_auth(token);
    if let Some(body) = &c.body {
        req = req.json(body);
    }
    let resp = req.send().map_err(|e| {
        fail(format!(
            "cannot reach the admin API at {}: {e}",
            conn.admin_url
        ))
    })?;
    let status = resp.status();
    let text = resp.text().unwrap_or_default();
    let value: Value = if text.trim().is_empty() {
        json!({})
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| json!({ "raw": text }))
    };
    if !status.is_success() {
        let code = value["error"].as_str().unwrap_or("error");
        let message = value["message"].as_str().unwrap_or(text.trim());
        return Err(fail(format!(
            "{message} (HTTP {}, {code})",
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
