//! WebSocket through authenticated routes (the `websockets` library on
//! both ends): a key is checked before the upgrade, and when the key, the
//! client or the subscription behind an open connection is revoked, the
//! gateway closes that connection; a change that leaves the credential
//! valid (a rename) does not.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use serde_json::json;

use crate::harness::{free_port, repo_path, Admin, Gateway};

struct Peer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Peer {
    fn start(args: &[&str]) -> Peer {
        let mut child = Command::new("python3")
            .arg(repo_path("tests/ws/peer.py"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 tests/ws/peer.py");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        Peer {
            child,
            stdin,
            stdout,
        }
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("read");
        line.trim().to_string()
    }

    fn ask(&mut self, command: &str) -> String {
        writeln!(self.stdin, "{command}").expect("write");
        self.line()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn require_websockets() {
    let probe = Command::new("python3")
        .args(["-c", "import websockets"])
        .status()
        .expect("python3");
    assert!(
        probe.success(),
        "websockets is not installed: `python3 -m pip install --user websockets` (scripts/test does)"
    );
}

fn setup() -> (Gateway, Peer, Admin, String, String, String) {
    require_websockets();
    let port = free_port();
    let mut server = Peer::start(&["server", &port.to_string()]);
    assert_eq!(server.line(), "ready");
    let gw = Gateway::start(&format!(
        "services:\n  ws: {{ upstreams: [\"127.0.0.1:{port}\"] }}\nroutes:\n  - {{ name: ws, match: {{ path_prefix: /ws }}, service: ws, auth: [api_key] }}\n"
    ));
    let admin = Admin::new(&gw);
    let client = admin.create_client(json!({"name": "socket", "auth_type": "api_key"}));
    let id = client["id"].as_str().expect("id").to_string();
    let key = client["api_key"]["key"].as_str().expect("key").to_string();
    let key_id = client["api_key"]["id"]
        .as_str()
        .expect("key id")
        .to_string();
    let (s, sub) = admin.post("/subscriptions", json!({"client_id": id, "service": "ws"}));
    assert_eq!(s, 201, "{sub}");
    let sub = sub["id"].as_str().expect("sub id").to_string();
    // the echo server lives as long as the test holds it
    (gw, server, admin, id, key, format!("{key_id} {sub}"))
}

fn connect(gw: &Gateway, key: Option<&str>) -> Peer {
    let url = format!("ws://{}/ws/echo", gw.proxy);
    let mut args = vec!["client", url.as_str()];
    args.extend(key);
    Peer::start(&args)
}

#[test]
fn a_websocket_needs_a_key_and_is_closed_when_its_key_is_revoked() {
    let (gw, _server, admin, id, key, ids) = setup();
    let key_id = ids.split(' ').next().expect("key id");
    let mut anonymous = connect(&gw, None);
    assert_eq!(anonymous.line(), "refused 401");

    let mut ws = connect(&gw, Some(&key));
    assert_eq!(ws.line(), "open");
    assert_eq!(ws.ask("send one"), "echo one");
    // a rename changes the client but not its right to this connection
    let (s, _) = admin.call(
        "PATCH",
        &format!("/clients/{id}"),
        Some(r#"{"name":"renamed"}"#),
    );
    assert_eq!(s, 200);
    assert_eq!(ws.ask("wait 1"), "open");
    assert_eq!(ws.ask("send two"), "echo two");
    // the key is revoked: the connection ends within the revocation bound
    let (s, _) = admin.post(&format!("/keys/{key_id}/revoke"), json!({}));
    assert_eq!(s, 200);
    assert_eq!(ws.ask("wait 2"), "closed");
    assert_eq!(connect(&gw, Some(&key)).line(), "refused 401");
}

#[test]
fn a_websocket_is_closed_when_its_subscription_goes_and_when_its_client_is_revoked() {
    let (gw, _server, admin, id, key, ids) = setup();
    let sub = ids.split(' ').nth(1).expect("subscription id");
    let mut ws = connect(&gw, Some(&key));
    assert_eq!(ws.line(), "open");
    assert_eq!(ws.ask("send one"), "echo one");
    let (s, _) = admin.call("DELETE", &format!("/subscriptions/{sub}"), None);
    assert_eq!(s, 204);
    assert_eq!(ws.ask("wait 2"), "closed");
    assert_eq!(connect(&gw, Some(&key)).line(), "refused 403");

    let (s, _) = admin.post("/subscriptions", json!({"client_id": id, "service": "ws"}));
    assert_eq!(s, 201);
    let mut ws = connect(&gw, Some(&key));
    assert_eq!(ws.line(), "open");
    let (s, _) = admin.post(&format!("/clients/{id}/revoke"), json!({}));
    assert_eq!(s, 200);
    assert_eq!(ws.ask("wait 2"), "closed");
}

#[test]
#[cfg_attr(
    not(tollgate_services),
    ignore = "needs PostgreSQL and Redis (TOLLGATE_TEST_PG_URL / TOLLGATE_TEST_REDIS_URL or the local services)"
)]
fn a_revocation_on_one_node_closes_a_websocket_open_on_another() {
    require_websockets();
    let db = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(tollgate::store::testing::PgTestDatabase::create(
            &tollgate::store::testing::pg_test_url(),
        ));
    let port = free_port();
    let mut server = Peer::start(&["server", &port.to_string()]);
    assert_eq!(server.line(), "ready");
    let body = format!(
        "services:\n  ws: {{ upstreams: [\"127.0.0.1:{port}\"] }}\nroutes:\n  - {{ name: ws, match: {{ path_prefix: /ws }}, service: ws, auth: [api_key] }}\n"
    );
    let node = || {
        Gateway::builder(&body)
            .store(&db.url)
            .env("TOLLGATE_PEPPER", "websocket-test-pepper-0123456789")
            .start()
    };
    let (a, b) = (node(), node());
    let admin = Admin::new(&a);
    let client = admin.create_client(json!({"name": "socket", "auth_type": "api_key"}));
    let key = client["api_key"]["key"].as_str().expect("key");
    let (s, _) = admin.post(
        "/subscriptions",
        json!({"client_id": client["id"], "service": "ws"}),
    );
    assert_eq!(s, 201);
    // open on node b, revoked through node a
    let mut ws = connect(&b, Some(key));
    assert_eq!(ws.line(), "open");
    assert_eq!(ws.ask("send one"), "echo one");
    let (s, _) = admin.post(
        &format!("/clients/{}/revoke", client["id"].as_str().expect("id")),
        json!({}),
    );
    assert_eq!(s, 200);
    assert_eq!(
        ws.ask("wait 2"),
        "closed",
        "node b closes within the 2 s bound"
    );
}
