//! The admin subcommands of `tollgate` (SPEC §2): an HTTP client of the
//! admin API. JSON on stdout, errors on stderr, non-zero exit codes.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::{json, Value};

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
    use std::os::unix::fs::OpenOptionsExt;
    let path = credentials_path().ok_or("no user config directory")?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let creds = json!({
        "client_id": v["id"],
        "client_secret": v.get("client_secret"),
        "api_key": v.get("api_key").map(|k| &k["key"]),
    });
    let tmp = path.with_extension("json.tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    f.write_all(
        serde_json::to_string_pretty(&creds)
            .unwrap_or_default()
            .as_bytes(),
    )
    .map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, &path).map_err(|e| format!("{}: {e}", path.display()))?;
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
