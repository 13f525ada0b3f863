//! Several gateway processes on one PostgreSQL store: what one node
//! creates works on the others, what one node revokes is refused on the
//! others within 2 s, tokens and signing keys are shared, and a database
//! outage loses nothing and lets nothing through. Needs PostgreSQL:
//! `TOLLGATE_TEST_PG_URL` or the local server (each test gets a fresh
//! database); without one, build.rs marks these tests ignored.

use std::net::ToSocketAddrs;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tollgate::store::testing::{pg_test_url, PgTestDatabase};

use crate::harness::{client, eventually, Admin, CutProxy, Gateway, Upstream};

const PEPPER: &str = "cluster-test-pepper-0123456789abcdef";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn fresh_database() -> PgTestDatabase {
    runtime().block_on(PgTestDatabase::create(&pg_test_url()))
}

fn body(up: &Upstream) -> String {
    format!(
        r#"auth:
  tokens: {{ issuer: "http://tollgate.cluster", audience: tollgate, ttl: 10m }}
services:
  orders: {{ upstreams: ["{up}"] }}
routes:
  - {{ name: orders, match: {{ path_prefix: /orders }}, service: orders, auth: [api_key, jwt] }}
"#,
        up = up.target()
    )
}

fn node(up: &Upstream, db_url: &str) -> Gateway {
    Gateway::builder(&body(up))
        .store(db_url)
        .env("TOLLGATE_PEPPER", PEPPER)
        .start()
}

/// An API-key client subscribed to `orders`: (client id, key).
fn keyed_client(admin: &Admin) -> (String, String) {
    let c = admin.create_client(json!({"name": "Shop", "auth_type": "api_key"}));
    let (status, v) = admin.post(
        "/subscriptions",
        json!({"client_id": c["id"], "service": "orders"}),
    );
    assert_eq!(status, 201, "{v}");
    (
        c["id"].as_str().unwrap().to_string(),
        c["api_key"]["key"].as_str().unwrap().to_string(),
    )
}

/// Poll until `f` holds, every 5 ms, at most `limit`: how long it took.
fn time_until(limit: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}

#[test]
#[cfg_attr(
    not(tollgate_services),
    ignore = "needs PostgreSQL and Redis (TOLLGATE_TEST_PG_URL / TOLLGATE_TEST_REDIS_URL or the local services)"
)]
fn a_revocation_on_one_node_is_refused_on_the_others_within_two_seconds() {
    let db = fresh_database();
    let up = Upstream::start("orders");
    let a = node(&up, &db.url);
    let b = node(&up, &db.url);
    let c = node(&up, &db.url);
    let admin = Admin::new(&a);

    let (first_id, key) = keyed_client(&admin);
    for gw in [&a, &b, &c] {
        assert_eq!(
            gw.key_status("/orders/1", &key),
            200,
            "a client created on A works everywhere"
        );
    }

    // 100 revocations on A, each of a key that B has cached
    let (client_id, _) = keyed_client(&admin);
    let mut lags = Vec::new();
    for _ in 0..100 {
        let (status, k) = admin.post(&format!("/clients/{client_id}/keys"), json!({}));
        assert_eq!(status, 201, "{k}");
        let key = k["key"].as_str().unwrap().to_string();
        assert_eq!(b.key_status("/orders/1", &key), 200);
        assert_eq!(b.key_status("/orders/1", &key), 200, "now cached on B");
        let (status, _) = admin.post(
            &format!("/keys/{}/revoke", k["id"].as_str().unwrap()),
            json!({}),
        );
        assert_eq!(status, 200);
        let lag = time_until(Duration::from_secs(5), || {
            b.key_status("/orders/1", &key) == 401
        })
        .expect("a revoked key is refused on B");
        lags.push(lag);
    }
    lags.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let (p50, p95, max) = (lags[49], lags[94], lags[99]);
    eprintln!(
        "revocation lag on another node over 100 revocations: min {:.1} ms, median {:.1} ms, p95 {:.1} ms, max {:.1} ms",
        ms(lags[0]),
        ms(p50),
        ms(p95),
        ms(max)
    );
    assert!(max < Duration::from_secs(2), "max lag {max:?}");

    // a client revoked on A: its key is refused on B and C
    let (status, _) = admin.post(&format!("/clients/{first_id}/revoke"), json!({}));
    assert_eq!(status, 200);
    for gw in [&b, &c] {
        assert!(
            time_until(Duration::from_secs(2), || gw.key_status("/orders/1", &key)
                == 401)
            .is_some(),
            "the revoked client's key is refused on every node"
        );
    }
    assert!(
        b.metric("tollgate_invalidation_lag_seconds_count") >= 100.0,
        "B measured the lag of every change it applied"
    );

    // a change of a kind a newer version might write: followers drop their
    // caches and go on, they do not stall on it
    let (later_client, later_key) = keyed_client(&admin);
    assert_eq!(c.key_status("/orders/1", &later_key), 200);
    runtime().block_on(async {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
        sqlx::query(
            "INSERT INTO changes (at, at_ms, kind, target) VALUES (0, 0, 'from_the_future', 'x')",
        )
        .execute(&mut conn)
        .await
        .unwrap();
    });
    let (status, _) = admin.post(&format!("/clients/{later_client}/revoke"), json!({}));
    assert_eq!(status, 200);
    assert!(
        time_until(Duration::from_secs(2), || c
            .key_status("/orders/1", &later_key)
            == 401)
        .is_some(),
        "changes after an unknown one still arrive"
    );
}

#[test]
#[cfg_attr(
    not(tollgate_services),
    ignore = "needs PostgreSQL and Redis (TOLLGATE_TEST_PG_URL / TOLLGATE_TEST_REDIS_URL or the local services)"
)]
fn tokens_and_signing_keys_are_shared_by_every_node() {
    let db = fresh_database();
    let up = Upstream::start("orders");
    let a = node(&up, &db.url);
    let b = node(&up, &db.url);
    let admin = Admin::new(&a);
    let c = admin.create_client(json!({"name": "Batch", "auth_type": "oauth2"}));
    let (id, secret) = (
        c["id"].as_str().unwrap().to_string(),
        c["client_secret"].as_str().unwrap().to_string(),
    );
    let (status, v) = admin.post(
        "/subscriptions",
        json!({"client_id": id, "service": "orders"}),
    );
    assert_eq!(status, 201, "{v}");
    let token_from = |gw: &Gateway| -> String {
        let r = client()
            .post(gw.url("/oauth2/token"))
            .basic_auth(&id, Some(&secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        r.json::<Value>().unwrap()["access_token"]
            .as_str()
            .unwrap()
            .to_string()
    };

    let t = token_from(&a);
    assert_eq!(
        b.bearer_status("/orders/1", &t),
        200,
        "a token issued by A verifies on B"
    );
    let t_b = token_from(&b);
    assert_eq!(
        a.bearer_status("/orders/1", &t_b),
        200,
        "and one issued by B on A"
    );

    // a token revoked through A is refused on B
    let r = client()
        .post(a.url("/oauth2/revoke"))
        .basic_auth(&id, Some(&secret))
        .form(&[("token", t.as_str())])
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(
        time_until(Duration::from_secs(2), || b.bearer_status("/orders/1", &t)
            == 401)
        .is_some(),
        "a token revoked on A is refused on B within 2 s"
    );
    assert_eq!(
        b.bearer_status("/orders/1", &t_b),
        200,
        "other tokens stay valid"
    );

    // a signing key rotated on A signs tokens that B verifies
    let (status, rotated) = admin.post("/signing-keys/rotate", json!({}));
    assert_eq!(status, 200, "{rotated}");
    let t_new = token_from(&a);
    assert!(
        time_until(Duration::from_secs(2), || b
            .bearer_status("/orders/1", &t_new)
            == 200)
        .is_some(),
        "B verifies tokens of the key rotated on A within 2 s"
    );
    let jwks: Value = client()
        .get(b.url("/.well-known/jwks.json"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|k| k["kid"].as_str())
        .collect();
    assert!(
        kids.contains(&rotated["kid"].as_str().unwrap()),
        "B publishes the new key: {kids:?}"
    );
    assert_eq!(
        b.bearer_status("/orders/1", &t_b),
        200,
        "tokens of the previous key still pass"
    );
}

#[test]
#[cfg_attr(
    not(tollgate_services),
    ignore = "needs PostgreSQL and Redis (TOLLGATE_TEST_PG_URL / TOLLGATE_TEST_REDIS_URL or the local services)"
)]
fn a_database_outage_loses_nothing_and_lets_nothing_through() {
    let db = fresh_database();
    let relay = CutProxy::start(url_addr(&db.url));
    outage_scenario(&via(&db.url, &relay), &Relay(&relay));
}

#[test]
#[cfg_attr(
    not(tollgate_services),
    ignore = "needs PostgreSQL and Redis (TOLLGATE_TEST_PG_URL / TOLLGATE_TEST_REDIS_URL or the local services)"
)]
fn a_postgresql_restart_loses_nothing_and_lets_nothing_through() {
    let pg = PrivatePostgres::start();
    outage_scenario(&pg.url(), &pg);
}

/// A way to take the database away and bring it back.
trait Outage {
    fn down(&self);
    fn up(&self);
}

struct Relay<'a>(&'a CutProxy);

impl Outage for Relay<'_> {
    fn down(&self) {
        self.0.cut()
    }
    fn up(&self) {
        self.0.restore()
    }
}

/// `GET /orders/1` on `gw` with an API key: (status, JSON body or Null,
/// headers).
fn key_answer(gw: &Gateway, key: &str) -> (u16, Value, reqwest::header::HeaderMap) {
    let r = client()
        .get(gw.url("/orders/1"))
        .header("x-api-key", key)
        .send()
        .unwrap_or_else(|e| panic!("no answer from the gateway: {e}"));
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, r.json().unwrap_or(Value::Null), headers)
}

/// Make sure `gw` holds `key` in its cache. A change the feed applies
/// while a key loads takes out what that load put in (any client's change:
/// the cache cannot tell whose), and the setup's changes reach B just then,
/// so ask until a request is answered from the cache.
fn cache_key(gw: &Gateway, key: &str) {
    const HITS: &str = "tollgate_cache_lookups_total{cache=\"api_key\",result=\"hit\"}";
    assert!(
        eventually(Duration::from_secs(10), || {
            let before = gw.metric(HITS);
            assert_eq!(gw.key_status("/orders/1", key), 200);
            gw.metric(HITS) > before
        }),
        "the key never came from the cache"
    );
}

/// Two nodes on `db_url`, B through a link of its own; the database goes
/// away and comes back.
fn outage_scenario(db_url: &str, outage: &dyn Outage) {
    let up = Upstream::start("orders");
    let a = node(&up, db_url);
    // B reaches the database through a link the test can cut while A works on
    let b_link = CutProxy::start(url_addr(db_url));
    let b = node(&up, &via(db_url, &b_link));
    let admin = Admin::new(&a);

    // B has applied the setup's changes: as many as A, which made them (A
    // also applied those of its own start, before B began to follow)
    const APPLIED: &str = "tollgate_invalidation_lag_seconds_count";
    let before = (a.metric(APPLIED), b.metric(APPLIED));
    let (_, cached) = keyed_client(&admin);
    let (_, uncached) = keyed_client(&admin);
    let (revoked_id, revoked_before) = keyed_client(&admin);
    assert!(
        eventually(Duration::from_secs(10), || {
            let on_a = a.metric(APPLIED) - before.0;
            on_a > 0.0 && b.metric(APPLIED) - before.1 == on_a
        }),
        "B applies the changes A made"
    );
    cache_key(&b, &cached);
    cache_key(&b, &revoked_before);
    // A change made just before the outage must not be lost by B. B is cut
    // off first, so that it cannot have applied the change (which takes it
    // milliseconds) by the time the database goes down.
    b_link.cut();
    let (status, v) = admin.post(&format!("/clients/{revoked_id}/revoke"), json!({}));
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        b.key_status("/orders/1", &revoked_before),
        200,
        "B, cut off, still has the key cached: it has not seen the revocation"
    );
    outage.down();
    b_link.restore();
    // B's change feed has found the store unreachable (it could not read
    // the change while cut off either): it has to catch up after the outage
    assert!(
        eventually(Duration::from_secs(10), || b
            .logs()
            .contains("change feed: cannot read the store")),
        "B's change feed notices the outage"
    );

    for _ in 0..5 {
        assert_eq!(
            b.key_status("/orders/1", &cached),
            200,
            "cached credentials keep working"
        );
        let (status, body, headers) = key_answer(&b, &uncached);
        assert_eq!(status, 503, "an uncached one is 503, never 200: {body}");
        assert_eq!(body["error"], "store_unavailable", "{body}");
        assert_eq!(
            headers.get("retry-after").map(|v| v.to_str().unwrap()),
            Some("1")
        );
    }
    assert_eq!(
        b.key_status("/orders/1", &revoked_before),
        200,
        "the database is down: B still cannot have seen the revocation"
    );
    let (status, v) = admin.call(
        "POST",
        "/clients",
        Some(r#"{"name":"x","auth_type":"api_key"}"#),
    );
    assert_eq!(status, 503, "admin calls fail clearly: {v}");
    assert_eq!(v["error"], "store_unavailable", "{v}");
    let ready = client()
        .get(format!("http://{}/readyz", b.admin))
        .send()
        .unwrap();
    assert_eq!(ready.status().as_u16(), 503, "not ready without its store");

    outage.up();
    assert!(
        eventually(Duration::from_secs(15), || b
            .key_status("/orders/1", &uncached)
            == 200),
        "B recovers without a restart"
    );
    // B reads the store again: its feed catches up within its poll (1 s)
    // and a store connection's acquire timeout (3 s)
    assert!(
        eventually(Duration::from_secs(5), || b
            .key_status("/orders/1", &revoked_before)
            == 401),
        "the revocation made before the outage reaches B"
    );
    let (_, body, headers) = key_answer(&b, &revoked_before);
    assert_eq!(body["error_description"], "unknown or revoked API key");
    assert_eq!(
        headers.get("www-authenticate").map(|v| v.to_str().unwrap()),
        Some("Bearer realm=\"tollgate\", error=\"invalid_token\", error_description=\"unknown or revoked API key\"")
    );
    assert_eq!(b.key_status("/orders/1", &cached), 200);
    let (_, after) = keyed_client(&admin);
    assert_eq!(
        b.key_status("/orders/1", &after),
        200,
        "A writes again and B reads it"
    );
    let (status, listed) = admin.get("/clients");
    assert_eq!(status, 200);
    assert_eq!(
        listed["clients"].as_array().unwrap().len(),
        4,
        "every client made before the outage is still there: {listed}"
    );
}

/// `url` with its `host:port` replaced by the relay's.
fn via(url: &str, relay: &CutProxy) -> String {
    url.replacen(&authority(url), &relay.addr.to_string(), 1)
}

/// `host:port` of a postgres:// URL.
fn authority(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let host = rest.split(['/', '?']).next().unwrap_or(rest);
    host.rsplit_once('@').map_or(host, |(_, h)| h).to_string()
}

fn url_addr(url: &str) -> std::net::SocketAddr {
    let auth = authority(url);
    let with_port = if auth.contains(':') {
        auth
    } else {
        format!("{auth}:5432")
    };
    with_port
        .to_socket_addrs()
        .unwrap()
        .find(|a| a.is_ipv4())
        .expect("an IPv4 address for the test PostgreSQL")
}

/// A PostgreSQL server of this test's own (initdb in a temporary
/// directory, run as the `postgres` user), so it can be stopped and
/// started without disturbing the shared server other tests use.
struct PrivatePostgres {
    dir: tempfile::TempDir,
    port: u16,
}

const PG_BIN: &str = "/usr/lib/postgresql";

fn pg_tool(name: &str) -> std::path::PathBuf {
    let versions = std::fs::read_dir(PG_BIN)
        .unwrap_or_else(|e| panic!("PostgreSQL server binaries are needed under {PG_BIN}: {e}"));
    let mut found: Vec<_> = versions
        .flatten()
        .map(|v| v.path().join("bin").join(name))
        .filter(|p| p.exists())
        .collect();
    found.sort();
    found
        .pop()
        .unwrap_or_else(|| panic!("{name} not found under {PG_BIN}"))
}

/// Run a PostgreSQL tool as the `postgres` user (initdb refuses root).
fn as_postgres(tool: &str, args: &[&str]) {
    let tool = pg_tool(tool);
    let root = is_root();
    let mut cmd = if root {
        let mut c = std::process::Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(&tool);
        c
    } else {
        std::process::Command::new(&tool)
    };
    let out = cmd.args(args).output().expect("run a PostgreSQL tool");
    assert!(
        out.status.success(),
        "{} {args:?}: {}{}",
        tool.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl PrivatePostgres {
    fn start() -> PrivatePostgres {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        if is_root() {
            let status = std::process::Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(status.success());
        }
        let data_s = data.to_str().unwrap();
        as_postgres(
            "initdb",
            &["-D", data_s, "-A", "trust", "-U", "postgres", "--no-sync"],
        );
        let pg = PrivatePostgres {
            port: crate::harness::free_port(),
            dir,
        };
        pg.up();
        pg
    }

    fn data(&self) -> String {
        self.dir.path().join("data").to_str().unwrap().to_string()
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Outage for PrivatePostgres {
    fn down(&self) {
        as_postgres("pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "stop"]);
    }

    fn up(&self) {
        let opts = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        as_postgres(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-o",
                &opts,
                "-l",
                &format!("{}/log", self.data()),
                "-w",
                "start",
            ],
        );
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let data = self.data();
        // best effort: a server already stopped makes pg_ctl fail
        let _ = std::panic::catch_unwind(|| {
            as_postgres("pg_ctl", &["-D", &data, "-m", "immediate", "stop"])
        });
    }
}

/// Portal sessions are shared by every node: a session opened on one works
/// on the other, and a disabled account, a password change or a sign-out
/// on one node ends the sessions on the other at once.
#[test]
#[cfg_attr(
    not(tollgate_services),
    ignore = "needs PostgreSQL and Redis (TOLLGATE_TEST_PG_URL / TOLLGATE_TEST_REDIS_URL or the local services)"
)]
fn portal_sessions_end_on_every_node_at_once() {
    let db = fresh_database();
    let up = Upstream::start("up");
    let with_portal = format!("{}portal: {{}}\n", body(&up));
    let node = || {
        Gateway::builder(&with_portal)
            .store(&db.url)
            .env("TOLLGATE_PEPPER", PEPPER)
            .start()
    };
    let (a, b) = (node(), node());
    let admin_a = Admin::new(&a);
    let (status, account) = admin_a.post(
        "/accounts",
        json!({"username": "ann", "password": "one-time password"}),
    );
    assert_eq!(status, 201, "{account}");
    let portal = |gw: &Gateway, method: &str, path: &str, token: Option<&str>, body: Value| {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = client()
            .request(m, gw.url(&format!("/portal/v1{path}")))
            .json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req.send().unwrap();
        let status = r.status().as_u16();
        (status, r.json::<Value>().unwrap_or(Value::Null))
    };
    let sign_in = |gw: &Gateway, password: &str| {
        let (s, v) = portal(
            gw,
            "POST",
            "/session",
            None,
            json!({"username": "ann", "password": password}),
        );
        assert_eq!(s, 200, "{v}");
        v["token"].as_str().unwrap().to_string()
    };
    // the one-time password is changed through node b, with a session of node a
    let first = sign_in(&a, "one-time password");
    let (s, _) = portal(
        &b,
        "POST",
        "/me/password",
        Some(&first),
        json!({"current_password": "one-time password", "new_password": "the chosen password"}),
    );
    assert_eq!(s, 204);
    let other = sign_in(&b, "the chosen password");
    assert_eq!(portal(&a, "GET", "/me", Some(&other), json!(null)).0, 200);

    // a password change on node a ends node b's other session at once
    let (s, _) = portal(
        &a,
        "POST",
        "/me/password",
        Some(&first),
        json!({"current_password": "the chosen password", "new_password": "another chosen password"}),
    );
    assert_eq!(s, 204);
    assert_eq!(portal(&b, "GET", "/me", Some(&other), json!(null)).0, 401);
    assert_eq!(portal(&b, "GET", "/me", Some(&first), json!(null)).0, 200);

    // disabling on node a's admin API ends it on node b at once
    let id = account["id"].as_str().unwrap();
    let (s, _) = admin_a.call(
        "PATCH",
        &format!("/accounts/{id}"),
        Some(r#"{"status":"disabled"}"#),
    );
    assert_eq!(s, 200);
    assert_eq!(portal(&b, "GET", "/me", Some(&first), json!(null)).0, 401);
    drop(db);
}

/// Two nodes count usage of one client into the same buckets: the totals
/// are exactly the requests both served (nothing lost, nothing doubled).
#[test]
#[cfg_attr(
    not(tollgate_services),
    ignore = "needs PostgreSQL and Redis (TOLLGATE_TEST_PG_URL / TOLLGATE_TEST_REDIS_URL or the local services)"
)]
fn usage_of_two_nodes_adds_up() {
    let db = fresh_database();
    let up = Upstream::start("up");
    let (a, b) = (node(&up, &db.url), node(&up, &db.url));
    let admin = Admin::new(&a);
    let (id, key) = keyed_client(&admin);
    let (mut ok_a, mut ok_b) = (0, 0);
    for i in 0..60 {
        let gw = if i % 3 == 0 { &a } else { &b };
        assert_eq!(gw.key_status("/orders/1", &key), 200);
        if i % 3 == 0 {
            ok_a += 1;
        } else {
            ok_b += 1;
        }
    }
    let total = || -> i64 {
        let (_, u) = admin.get(&format!("/clients/{id}/usage?step=day"));
        u["buckets"]
            .as_array()
            .map(|b| b.iter().map(|x| x["2xx"].as_i64().unwrap_or(0)).sum())
            .unwrap_or(0)
    };
    assert!(
        eventually(Duration::from_secs(8), || total() == ok_a + ok_b),
        "usage {} after {} + {} requests",
        total(),
        ok_a,
        ok_b
    );
    // and stays so (a later flush adds nothing twice)
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(total(), 60);
    drop(db);
}
