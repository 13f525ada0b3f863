//! Listeners (health, readiness, metrics), access logs, and SIGTERM.

use std::net::TcpStream;
use std::time::Duration;

use crate::harness::{client, eventually, http_get, Gateway, Upstream};

fn config(up: &Upstream) -> String {
    format!(
        "services:\n  s: {{ upstreams: [\"{}\"] }}\nroutes:\n  - {{ name: api, match: {{ path_prefix: /api }}, service: s, auth: public }}\n  - {{ name: locked, match: {{ path_prefix: /locked }}, service: s, auth: [api_key] }}\n",
        up.target()
    )
}

#[test]
fn health_readiness_and_metrics() {
    let up = Upstream::start("s");
    let gw = Gateway::start(&config(&up));
    let (status, _, body) = http_get(&format!("http://{}/healthz", gw.admin));
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = http_get(&format!("http://{}/readyz", gw.admin));
    assert_eq!(status, 200, "{body}");

    let c = client();
    for _ in 0..3 {
        assert_eq!(c.get(gw.url("/api/x")).send().unwrap().status(), 200);
    }
    assert_eq!(c.get(gw.url("/nowhere")).send().unwrap().status(), 404);
    // exact values of exact series (a substring would take 30 for 3); the
    // counters move when a request's log line is written, after its answer
    for (series, want) in [
        (
            "tollgate_requests_total{route=\"api\",service=\"s\",status=\"200\"}",
            3.0,
        ),
        (
            "tollgate_requests_total{route=\"none\",service=\"none\",status=\"404\"}",
            1.0,
        ),
        (
            "tollgate_request_duration_seconds_count{route=\"api\"}",
            3.0,
        ),
        (
            "tollgate_upstream_duration_seconds_count{service=\"s\"}",
            3.0,
        ),
    ] {
        assert!(
            crate::harness::eventually(std::time::Duration::from_secs(5), || gw.metric_opt(series)
                == Some(want)),
            "{series}: {:?} (want {want})",
            gw.metric_opt(series)
        );
    }
    let text = gw.metrics_text();
    assert!(text.contains("process_resident_memory_bytes"), "{text}");
    assert!(!text.contains("/api/x"), "labels never hold raw paths");

    // transparent huge pages are off for the gateway (kernels since 6.x
    // show it in /proc; older ones do not, and then there is nothing to see)
    let status = std::fs::read_to_string(format!("/proc/{}/status", gw.pid())).unwrap();
    if let Some(value) = proc_field(&status, "THP_enabled:") {
        assert_eq!(value, "0", "THP_enabled");
    }
    // and where the kernel gives them only on request, the allocator never
    // asked: it holds none (where it gives them to every large mapping, it
    // has before the gateway's first instruction)
    let mode =
        std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").unwrap_or_default();
    let rollup =
        std::fs::read_to_string(format!("/proc/{}/smaps_rollup", gw.pid())).unwrap_or_default();
    if let (false, Some(kb)) = (
        mode.contains("[always]"),
        proc_field(&rollup, "AnonHugePages:"),
    ) {
        assert_eq!(kb, "0", "AnonHugePages (kB)");
    }
}

/// The value of a `/proc` file's `name` line (`name` with its colon), if it
/// has one.
fn proc_field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.split_whitespace().nth(1))
}

#[test]
fn access_log_has_one_line_per_request_and_no_credentials() {
    let up = Upstream::start("s");
    let gw = Gateway::builder(&config(&up))
        .arg("--log-format")
        .arg("json")
        .start();
    let c = client();
    let canary = "tg_CANARY0123456789abcdefghijklmnop";
    c.get(gw.url(&format!("/api/a?api_key={canary}")))
        .header("x-api-key", canary)
        .header("x-request-id", "log-test-1")
        .send()
        .unwrap();
    c.get(gw.url("/locked"))
        .header("x-api-key", canary)
        .header("x-request-id", "log-test-2")
        .send()
        .unwrap();
    c.get(gw.url("/locked"))
        .header("authorization", format!("Bearer {canary}"))
        .header("x-request-id", "log-test-3")
        .send()
        .unwrap();
    assert!(eventually(Duration::from_secs(5), || gw
        .logs()
        .contains("log-test-3")));
    let logs = gw.logs();
    assert!(
        !logs.contains(canary),
        "a credential reached the logs:\n{logs}"
    );
    let access: Vec<serde_json::Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "tollgate::access")
        .collect();
    assert_eq!(access.len(), 3, "{logs}");
    // request id and route appear once, as fields of the request's span
    assert_eq!(access[0]["span"]["request_id"], "log-test-1");
    assert_eq!(access[0]["span"]["route"], "api");
    assert!(access[0].get("request_id").is_none(), "{logs}");
    assert!(access[0].get("route").is_none(), "{logs}");
    assert_eq!(access[0]["status"], 200);
    assert_eq!(access[0]["method"], "GET");
    assert_eq!(access[0]["path"], "/api/a");
    assert!(access[0]["duration_ms"].as_f64().is_some());
    assert_eq!(access[1]["status"], 401);
    assert_eq!(access[1]["span"]["route"], "locked");
    assert_eq!(access[2]["status"], 401);
}

#[test]
fn sigterm_finishes_in_flight_requests_then_exits_0() {
    let up = Upstream::start("s");
    let mut gw = Gateway::start(&config(&up));
    let url = gw.url("/api/slow/1500");
    let in_flight = std::thread::spawn(move || {
        let r = client().get(url).send();
        r.map(|r| r.status().as_u16()).unwrap_or(0)
    });
    assert!(
        eventually(Duration::from_secs(5), || up.count() == 1),
        "request reached upstream"
    );
    gw.signal("TERM");
    // the listener stops accepting while the slow request is still running
    let proxy = gw.proxy;
    assert!(
        eventually(Duration::from_secs(3), || TcpStream::connect_timeout(
            &proxy,
            Duration::from_millis(100)
        )
        .is_err()),
        "listener closed after SIGTERM"
    );
    assert_eq!(
        in_flight.join().unwrap(),
        200,
        "in-flight request completed"
    );
    let status = gw
        .wait_exit(Duration::from_secs(10))
        .expect("exited after SIGTERM");
    assert_eq!(status.code(), Some(0));
}
