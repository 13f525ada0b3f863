//! The admin commands of the `tollgate` CLI against a running gateway.

use std::process::Command;

use serde_json::Value;

use crate::harness::{bin, free_port, Gateway, ADMIN_TOKEN};

const CONFIG: &str =
    "plans:\n  free: { rate: 5/s }\nservices:\n  orders: { upstreams: [\"127.0.0.1:1\"] }\n";

struct Cli {
    url: String,
    home: tempfile::TempDir,
}

struct Out {
    code: i32,
    json: Value,
    stderr: String,
}

impl Cli {
    fn new(gw: &Gateway) -> Cli {
        Cli {
            url: format!("http://{}", gw.admin),
            home: tempfile::tempdir().unwrap(),
        }
    }

    fn run(&self, args: &[&str]) -> Out {
        self.run_with(args, Some(ADMIN_TOKEN), &self.url)
    }

    fn run_with(&self, args: &[&str], token: Option<&str>, url: &str) -> Out {
        let mut cmd = Command::new(bin());
        cmd.args(args)
            .env("TOLLGATE_ADMIN_URL", url)
            .env("XDG_CONFIG_HOME", self.home.path())
            .env("HOME", self.home.path())
            .env_remove("TOLLGATE_ADMIN_TOKEN");
        if let Some(t) = token {
            cmd.env("TOLLGATE_ADMIN_TOKEN", t);
        }
        let out = cmd.output().expect("run tollgate");
        Out {
            code: out.status.code().unwrap_or(-1),
            json: serde_json::from_slice(&out.stdout).unwrap_or(Value::Null),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn ok(&self, args: &[&str]) -> Value {
        let out = self.run(args);
        assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
        out.json
    }
}

#[test]
fn clients_keys_and_subscriptions_from_the_command_line() {
    let gw = Gateway::start(CONFIG);
    let cli = Cli::new(&gw);

    let c = cli.ok(&[
        "clients",
        "create",
        "--name",
        "Shop",
        "--description",
        "web shop",
        "--scopes",
        "orders:read,orders:write",
    ]);
    let id = c["id"].as_str().unwrap().to_string();
    assert_eq!(c["auth_type"], "api_key");
    assert_eq!(
        c["scopes"],
        serde_json::json!(["orders:read", "orders:write"])
    );
    assert!(c["api_key"]["key"].as_str().unwrap().starts_with("tg_"));

    let list = cli.ok(&["clients", "list"]);
    assert_eq!(list["clients"].as_array().unwrap().len(), 1);
    let shown = cli.ok(&["clients", "show", &id]);
    assert_eq!(shown["description"], "web shop");
    let renamed = cli.ok(&["clients", "rename", &id, "Shop Two"]);
    assert_eq!(renamed["name"], "Shop Two");

    let k = cli.ok(&["keys", "create", &id, "--name", "ci", "--never-expires"]);
    assert_eq!(k["expires_at"], Value::Null);
    let kid = k["id"].as_str().unwrap().to_string();
    let keys = cli.ok(&["keys", "list", &id]);
    assert_eq!(keys["keys"].as_array().unwrap().len(), 2);
    assert_eq!(cli.ok(&["keys", "revoke", &kid])["status"], "revoked");
    assert_eq!(cli.ok(&["keys", "renew", &kid])["status"], "active");

    let s = cli.ok(&[
        "subscriptions",
        "create",
        "--client",
        &id,
        "--service",
        "orders",
        "--plan",
        "free",
    ]);
    assert_eq!(s["service"], "orders");
    let subs = cli.ok(&["subscriptions", "list", "--client", &id]);
    assert_eq!(subs["subscriptions"].as_array().unwrap().len(), 1);
    let dup = cli.run(&[
        "subscriptions",
        "create",
        "--client",
        &id,
        "--service",
        "orders",
    ]);
    assert_eq!(dup.code, 1);
    assert!(dup.stderr.contains("HTTP 409"), "{}", dup.stderr);
    let sid = s["id"].as_str().unwrap().to_string();
    cli.ok(&["subscriptions", "delete", &sid]);
    assert_eq!(
        cli.ok(&["subscriptions", "list"])["subscriptions"],
        serde_json::json!([])
    );

    let revoked = cli.ok(&["clients", "revoke", &id]);
    assert_eq!(revoked["status"], "revoked");
    let again = cli.run(&["clients", "revoke", &id]);
    assert_eq!(again.code, 1);
    assert!(
        again.stderr.contains("already revoked") && again.stderr.contains("409"),
        "{}",
        again.stderr
    );
    assert_eq!(
        cli.ok(&["clients", "list", "--revoked"])["clients"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        cli.ok(&["clients", "list"])["clients"],
        serde_json::json!([])
    );
}

#[test]
fn oauth2_client_with_store_and_rotation() {
    let gw = Gateway::start(CONFIG);
    let cli = Cli::new(&gw);
    let c = cli.ok(&[
        "clients",
        "create",
        "--name",
        "Batch",
        "--auth-type",
        "oauth2",
        "--store",
    ]);
    let secret = c["client_secret"].as_str().unwrap();
    let path = cli.home.path().join("tollgate").join("credentials.json");
    let saved: Value =
        serde_json::from_slice(&std::fs::read(&path).expect("credentials saved")).unwrap();
    assert_eq!(saved["client_id"], c["id"]);
    assert_eq!(saved["client_secret"], secret);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    let id = c["id"].as_str().unwrap();
    let rotated = cli.ok(&["clients", "rotate-secret", id]);
    assert_ne!(rotated["client_secret"].as_str().unwrap(), secret);
}

#[test]
fn errors_are_clear_with_non_zero_exit() {
    let gw = Gateway::start(CONFIG);
    let cli = Cli::new(&gw);
    let missing = cli.run(&["clients", "show", "cli_missing"]);
    assert_eq!(missing.code, 1);
    assert!(
        missing
            .stderr
            .contains("client not found (HTTP 404, not_found)"),
        "{}",
        missing.stderr
    );

    let bad = cli.run(&[
        "subscriptions",
        "create",
        "--client",
        "x",
        "--service",
        "nope",
    ]);
    assert_eq!(bad.code, 1);
    assert!(bad.stderr.contains("unknown service"), "{}", bad.stderr);

    let no_token = cli.run_with(&["clients", "list"], None, &cli.url);
    assert_eq!(no_token.code, 2);
    assert!(
        no_token.stderr.contains("no admin token"),
        "{}",
        no_token.stderr
    );

    let wrong = cli.run_with(&["clients", "list"], Some("wrong"), &cli.url);
    assert_eq!(wrong.code, 1);
    assert!(wrong.stderr.contains("HTTP 401"), "{}", wrong.stderr);

    let down = format!("http://127.0.0.1:{}", free_port());
    let unreachable = cli.run_with(&["clients", "list"], Some(ADMIN_TOKEN), &down);
    assert_eq!(unreachable.code, 1);
    assert!(
        unreachable.stderr.contains("cannot reach the admin API"),
        "{}",
        unreachable.stderr
    );

    let usage = cli.run(&["clients", "create"]);
    assert_eq!(usage.code, 2, "clap usage error");
}

#[test]
fn token_command_reuses_a_cached_token() {
    let gw = Gateway::start(CONFIG);
    let cli = Cli::new(&gw);
    let c = cli.ok(&[
        "clients",
        "create",
        "--name",
        "Job",
        "--auth-type",
        "oauth2",
        "--store",
    ]);
    let url = gw.url("/oauth2/token");
    let token1 = std::process::Command::new(bin())
        .args(["token", "--token-url", &url])
        .env("HOME", cli.home.path())
        .env("XDG_CONFIG_HOME", cli.home.path())
        .env_remove("XDG_CACHE_HOME")
        .output()
        .unwrap();
    assert!(
        token1.status.success(),
        "{}",
        String::from_utf8_lossy(&token1.stderr)
    );
    let t1 = String::from_utf8_lossy(&token1.stdout).trim().to_string();
    assert_eq!(t1.split('.').count(), 3, "{t1}");
    let token2 = std::process::Command::new(bin())
        .args(["token", "--token-url", &url])
        .env("HOME", cli.home.path())
        .env("XDG_CONFIG_HOME", cli.home.path())
        .env_remove("XDG_CACHE_HOME")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&token2.stdout).trim(),
        t1,
        "the cached token is reused"
    );
    assert_eq!(
        gw.metric("tollgate_tokens_issued_total"),
        1.0,
        "one token for both calls"
    );

    // explicit credentials; a wrong secret is a clear error
    let id = c["id"].as_str().unwrap();
    let bad = cli.run(&[
        "token",
        "--token-url",
        &url,
        "--client-id",
        id,
        "--client-secret",
        "tgs_nope",
    ]);
    assert_eq!(bad.code, 1);
    assert!(
        bad.stderr.contains("HTTP 401, invalid_client"),
        "{}",
        bad.stderr
    );
}
