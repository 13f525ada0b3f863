//! Plans at the proxy: per-subscription rates and quotas, their headers,
//! one total limit for several gateways through Redis, Redis outages, quota
//! persistence, and per-address limits that a forged X-Forwarded-For does
//! not escape.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::{client, eventually, free_port, Admin, Gateway, Upstream};

fn config(up: &Upstream, plans: &str, extra: &str) -> String {
    format!(
        r#"{extra}
plans:
{plans}
services:
  orders: {{ upstreams: ["{up}"] }}
routes:
  - {{ name: orders, match: {{ path_prefix: /orders }}, service: orders, auth: [api_key] }}
"#,
        up = up.target()
    )
}

/// A new API-key client subscribed to `orders` with `plan`; its key.
fn subscriber(admin: &Admin, plan: Option<&str>) -> String {
    let c = admin.create_client(json!({"name": "Shop", "auth_type": "api_key"}));
    let mut body = json!({"client_id": c["id"], "service": "orders"});
    if let Some(p) = plan {
        body["plan"] = json!(p);
    }
    let (status, v) = admin.post("/subscriptions", body);
    assert_eq!(status, 201, "{v}");
    c["api_key"]["key"].as_str().unwrap().to_string()
}

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> Option<u64> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
    }
}

fn get(gw: &Gateway, key: &str) -> Answer {
    let r = client()
        .get(gw.url("/orders/1"))
        .header("x-api-key", key)
        .send()
        .unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    Answer {
        status,
        headers,
        body: r.json().unwrap_or(Value::Null),
    }
}

/// Requests from `threads` threads per gateway, round robin over
/// `gateways`, for `run`: for each answer that passed, when it was sent
/// and when it came back (seconds since the start), and the number refused.
fn hammer(
    gateways: &[&Gateway],
    key: &str,
    threads: usize,
    run: Duration,
) -> (Vec<(f64, f64)>, usize) {
    let start = Instant::now();
    let passed = Arc::new(Mutex::new(Vec::new()));
    let refused = Arc::new(Mutex::new(0usize));
    std::thread::scope(|s| {
        for (i, gw) in gateways
            .iter()
            .cycle()
            .take(threads * gateways.len())
            .enumerate()
        {
            let (passed, refused) = (passed.clone(), refused.clone());
            let url = gw.url(&format!("/orders/{i}"));
            s.spawn(move || {
                let http = client();
                while start.elapsed() < run {
                    let sent = start.elapsed().as_secs_f64();
                    let Ok(r) = http.get(&url).header("x-api-key", key).send() else {
                        continue;
                    };
                    match r.status().as_u16() {
                        200 => passed
                            .lock()
                            .unwrap()
                            .push((sent, start.elapsed().as_secs_f64())),
                        429 => *refused.lock().unwrap() += 1,
                        other => panic!("unexpected status {other}"),
                    }
                }
            });
        }
    });
    let mut passed = Arc::try_unwrap(passed).unwrap().into_inner().unwrap();
    passed.sort_by(|a, b| a.1.partial_cmp(&b.1).unwrap());
    let refused = *refused.lock().unwrap();
    (passed, refused)
}

/// GCRA's promise, checked at every accepted request: by the time `t`
/// (since the first decision), at most `burst + rate * t` (+1 for rounding)
/// passed. A fixed window would break it at its edge with twice the limit.
/// Decisions are bracketed by the client's clock: the first cannot precede
/// the earliest send, and each answer's arrival follows its decision, so a
/// busy machine's delays cannot make a correct limiter look wrong.
fn assert_smooth(passed: &[(f64, f64)], burst: f64, rate: f64) {
    let t0 = passed.iter().map(|p| p.0).fold(f64::INFINITY, f64::min);
    for (i, (_, t)) in passed.iter().enumerate() {
        let bound = burst + rate * (t - t0) + 1.0;
        assert!(
            (i + 1) as f64 <= bound,
            "{} requests passed by {:.3}s, the bound is {bound:.1}",
            i + 1,
            t - t0
        );
    }
}

#[test]
fn a_plan_limits_a_subscription_smoothly_and_says_so_in_headers() {
    let up = Upstream::start("orders");
    let gw = Gateway::start(&config(&up, "  basic: { rate: 10/s }", ""));
    let admin = Admin::new(&gw);
    let key = subscriber(&admin, Some("basic"));

    let first = get(&gw, &key);
    assert_eq!(first.status, 200);
    assert_eq!(first.header("ratelimit-limit"), Some(10));
    assert_eq!(first.header("ratelimit-remaining"), Some(9));
    assert!(first.header("ratelimit-reset").is_some_and(|r| r >= 1));
    assert!(first.headers.get("retry-after").is_none());

    let run = Duration::from_millis(2500);
    let (passed, refused) = hammer(&[&gw], &key, 4, run);
    // the first request above took one of the burst
    assert_smooth(&passed, 9.0, 10.0);
    let expected = 9.0 + 10.0 * run.as_secs_f64();
    let got = passed.len() as f64;
    assert!(
        (got - expected).abs() <= (expected * 0.05).max(2.0),
        "{got} passed in {run:?}, expected about {expected}"
    );
    assert!(refused > 0, "the load must exceed the limit");

    let refused_answer = get(&gw, &key);
    assert_eq!(refused_answer.status, 429);
    assert_eq!(refused_answer.body["error"], "rate_limited");
    assert_eq!(refused_answer.header("ratelimit-limit"), Some(10));
    assert_eq!(refused_answer.header("ratelimit-remaining"), Some(0));
    assert!(refused_answer.header("retry-after").is_some_and(|r| r >= 1));
    assert_eq!(
        up.count(),
        1 + passed.len(),
        "refused requests never reach the upstream"
    );
    let counted = gw.metric("tollgate_rate_limited_total{plan=\"basic\",service=\"orders\"}");
    assert_eq!(counted as usize, refused + 1);
}

#[test]
fn the_default_plan_applies_to_subscriptions_without_one_and_unlimited_plans_add_no_headers() {
    let up = Upstream::start("orders");
    let plans = "  free: { rate: 2/min, default: true }\n  gold: {}";
    let gw = Gateway::start(&config(&up, plans, ""));
    let admin = Admin::new(&gw);

    let plain = subscriber(&admin, None);
    let statuses: Vec<u16> = (0..3).map(|_| get(&gw, &plain).status).collect();
    assert_eq!(statuses, [200, 200, 429]);
    let refused = get(&gw, &plain);
    assert_eq!(refused.header("ratelimit-limit"), Some(2));
    assert!(
        refused
            .header("retry-after")
            .is_some_and(|r| (29..=31).contains(&r)),
        "one request per 30 s: {:?}",
        refused.headers.get("retry-after")
    );

    let gold = subscriber(&admin, Some("gold"));
    for _ in 0..20 {
        let a = get(&gw, &gold);
        assert_eq!(a.status, 200);
        assert!(a.headers.get("ratelimit-limit").is_none());
    }

    let (status, v) = admin.post(
        "/subscriptions",
        json!({"client_id": "cli_x", "service": "orders", "plan": "platinum"}),
    );
    assert_eq!(status, 400, "{v}");
}

#[test]
fn a_quota_survives_a_restart() {
    let up = Upstream::start("orders");
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}/shared.db", dir.path().display());
    let body = config(&up, "  metered: { quota: 3/day }", "");
    let mut gw = Gateway::builder(&body).store(&store).start();
    let key = subscriber(&Admin::new(&gw), Some("metered"));
    let a = get(&gw, &key);
    assert_eq!((a.status, a.header("ratelimit-remaining")), (200, Some(2)));
    assert!(a.header("ratelimit-reset").is_some_and(|r| r <= 86_400));
    assert_eq!(get(&gw, &key).status, 200);
    gw.signal("TERM");
    assert!(gw.wait_exit(Duration::from_secs(15)).is_some());

    let gw = Gateway::builder(&body).store(&store).start();
    let a = get(&gw, &key);
    assert_eq!((a.status, a.header("ratelimit-remaining")), (200, Some(0)));
    let refused = get(&gw, &key);
    assert_eq!(
        refused.status, 429,
        "two before the restart and one after spend 3/day"
    );
    assert!(refused.header("retry-after").is_some_and(|r| r <= 86_400));
}

/// The Redis server for tests: `TOLLGATE_TEST_REDIS_URL`, else the local
/// one (build.rs enables these tests only when one of them is there).
fn redis_url() -> String {
    std::env::var("TOLLGATE_TEST_REDIS_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "redis://127.0.0.1:6379".to_string())
}

#[test]
#[cfg_attr(
    not(tollgate_services),
    ignore = "needs PostgreSQL and Redis (TOLLGATE_TEST_PG_URL / TOLLGATE_TEST_REDIS_URL or the local services)"
)]
fn two_gateways_enforce_one_total_limit_through_redis() {
    let redis = redis_url();
    let up = Upstream::start("orders");
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}/shared.db", dir.path().display());
    let body = config(
        &up,
        "  shared: { rate: 20/s }",
        &format!("redis: {{ url: \"{redis}\" }}"),
    );
    let a = Gateway::builder(&body).store(&store).start();
    let b = Gateway::builder(&body).store(&store).start();
    let key = subscriber(&Admin::new(&a), Some("shared"));

    let run = Duration::from_millis(2500);
    let (passed, refused) = hammer(&[&a, &b], &key, 2, run);
    assert_smooth(&passed, 20.0, 20.0);
    let expected = 20.0 + 20.0 * run.as_secs_f64();
    let got = passed.len() as f64;
    assert!(
        (got - expected).abs() <= expected * 0.05,
        "{got} passed through two gateways in {run:?}, expected {expected} within 5%"
    );
    assert!(refused > 0);
    let on = |gw: &Gateway| {
        gw.metric("tollgate_requests_total{route=\"orders\",service=\"orders\",status=\"200\"}")
    };
    assert!(
        on(&a) > 0.0 && on(&b) > 0.0,
        "both gateways let requests through"
    );
}

/// A private Redis that the test may stop and start again.
struct PrivateRedis {
    child: Option<Child>,
}

impl PrivateRedis {
    fn start(port: u16) -> PrivateRedis {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed for this test (apt-get install redis-server)");
        let r = PrivateRedis { child: Some(child) };
        assert!(
            eventually(Duration::from_secs(10), || TcpStream::connect((
                "127.0.0.1",
                port
            ))
            .is_ok()),
            "redis-server did not start"
        );
        r
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

#[test]
fn a_redis_outage_fails_open_or_closed_as_configured_and_recovers() {
    let up = Upstream::start("orders");
    let port = free_port();
    let mut redis = PrivateRedis::start(port);
    let gateway = |mode: &str| {
        Gateway::start(&config(
            &up,
            "  small: { rate: 3/min }",
            &format!("redis: {{ url: \"redis://127.0.0.1:{port}\", timeout: 200ms, failure_mode: {mode} }}"),
        ))
    };
    let open = gateway("open");
    let closed = gateway("closed");
    let open_key = subscriber(&Admin::new(&open), Some("small"));
    let closed_key = subscriber(&Admin::new(&closed), Some("small"));
    for (gw, key) in [(&open, &open_key), (&closed, &closed_key)] {
        let statuses: Vec<u16> = (0..4).map(|_| get(gw, key).status).collect();
        assert_eq!(statuses, [200, 200, 200, 429], "limited through redis");
    }

    redis.stop();
    let errors = |gw: &Gateway, action: &str| {
        gw.metric_opt(&format!(
            "tollgate_rate_limit_backend_errors_total{{action=\"{action}\"}}"
        ))
        .unwrap_or(0.0)
    };
    let (allowed_before, refused_before) = (errors(&open, "allowed"), errors(&closed, "refused"));
    for _ in 0..5 {
        let a = get(&open, &open_key);
        assert_eq!(a.status, 200, "fail open lets it through");
        assert_eq!(
            a.header("ratelimit-remaining"),
            Some(0),
            "while Redis cannot answer, RateLimit-Remaining reports 0"
        );
        let r = get(&closed, &closed_key);
        assert_eq!(r.status, 429, "fail closed refuses");
        assert_eq!(r.body["error"], "rate_limited");
        assert_eq!(r.header("ratelimit-limit"), Some(3));
        assert_eq!(r.header("ratelimit-remaining"), Some(0));
        assert!(r.header("ratelimit-reset").is_some(), "{:?}", r.headers);
        assert!(
            r.header("retry-after").is_some_and(|s| s >= 1),
            "{:?}",
            r.headers
        );
    }
    // each of those decisions was the configured failure mode's
    assert_eq!(errors(&open, "allowed") - allowed_before, 5.0);
    assert_eq!(errors(&closed, "refused") - refused_before, 5.0);
    // authentication does not depend on redis
    let a = get(&open, "tg_not_a_key");
    assert_eq!(a.status, 401);
    assert_eq!(a.body["error"], "invalid_token");
    let no_key = client().get(open.url("/orders/1")).send().unwrap();
    assert_eq!(no_key.status().as_u16(), 401);
    assert_eq!(
        no_key.headers()["www-authenticate"],
        "Bearer realm=\"tollgate\""
    );

    // the same port again, empty: counting resumes without a restart
    let _redis = PrivateRedis::start(port);
    let mut resumed = None;
    assert!(
        eventually(Duration::from_secs(10), || {
            let a = get(&closed, &closed_key);
            let ok = a.status == 200;
            resumed = ok.then_some(a);
            ok
        }),
        "fail-closed gateway serves again once redis is back"
    );
    // the answer that passed was counted in the new, empty Redis: the first
    // of three
    let resumed = resumed.unwrap();
    assert_eq!(
        (
            resumed.header("ratelimit-limit"),
            resumed.header("ratelimit-remaining")
        ),
        (Some(3), Some(2)),
        "{:?}",
        resumed.headers
    );
    let refused_after = errors(&closed, "refused");
    let statuses: Vec<u16> = (0..3).map(|_| get(&closed, &closed_key).status).collect();
    assert_eq!(statuses, [200, 200, 429], "limited through redis again");
    assert_eq!(
        errors(&closed, "refused"),
        refused_after,
        "those decisions were Redis's, not the failure mode's"
    );
    assert!(
        eventually(Duration::from_secs(10), || get(&open, &open_key).status
            == 429),
        "fail-open gateway limits again once redis is back"
    );
}

#[test]
fn rotating_x_forwarded_for_does_not_escape_the_per_address_limit() {
    let gw = Gateway::start("auth:\n  tokens: { issuer: \"http://tollgate.test\" }\n");
    let statuses: Vec<u16> = (0..60).map(|i| wrong_secret_from(&gw, i)).collect();
    let failed = statuses.iter().filter(|s| **s == 401).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!((failed, limited), (50, 10), "{statuses:?}");

    // behind a trusted proxy, the address it reports is the one limited
    let gw = Gateway::start(
        "SERVER_EXTRA:\n  trusted_proxies: [127.0.0.1/32]\nauth:\n  tokens: { issuer: \"http://tollgate.test\" }\n",
    );
    for i in 0..60 {
        assert_eq!(
            wrong_secret_from(&gw, i),
            401,
            "each forwarded address has its own allowance"
        );
    }
}

/// A token request with a wrong secret for the unknown client `i`,
/// claiming (X-Forwarded-For) to come from address `i`: only the
/// per-address limit applies.
fn wrong_secret_from(gw: &Gateway, i: u32) -> u16 {
    client()
        .post(gw.url("/oauth2/token"))
        .header("x-forwarded-for", format!("198.51.100.{i}"))
        .basic_auth(format!("cli_unknown{i}"), Some("wrong"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .unwrap()
        .status()
        .as_u16()
}

#[test]
fn a_limited_request_that_fails_upstream_still_reports_its_allowance() {
    let body = format!(
        "plans:\n  basic: {{ rate: 5/min }}\nservices:\n  orders: {{ upstreams: [\"127.0.0.1:{}\"] }}\nroutes:\n  - {{ name: orders, match: {{ path_prefix: /orders }}, service: orders, auth: [api_key] }}\n",
        crate::harness::closed_port()
    );
    let gw = Gateway::start(&body);
    let key = subscriber(&Admin::new(&gw), Some("basic"));
    let a = get(&gw, &key);
    assert_eq!(a.status, 502);
    assert_eq!(a.body["error"], "bad_gateway");
    assert_eq!(a.header("ratelimit-limit"), Some(5));
    assert_eq!(a.header("ratelimit-remaining"), Some(4));
    assert!(a.headers.get("retry-after").is_none());
}
