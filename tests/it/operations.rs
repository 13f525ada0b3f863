//! Operations: hot reload (SIGHUP and the admin call) under load, a
//! refused configuration that leaves the running one serving, the pid
//! file, and a zero-downtime binary upgrade under load.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::harness::{client, eventually, http_get, Admin, Gateway, Upstream};

fn body(up: &Upstream, version: &str) -> String {
    format!(
        r#"services:
  orders: {{ upstreams: ["{up}"] }}
routes:
  - {{ name: orders, match: {{ path_prefix: /orders }}, service: orders, auth: public }}
  - {{ name: version, match: {{ path: /version }}, respond: {{ status: 200, body: "{version}" }}, auth: public }}
"#,
        up = up.target()
    )
}

/// Rewrite the `/version` answer in the gateway's configuration file.
fn set_version(gw: &Gateway, from: &str, to: &str) {
    let path = gw.config_path();
    let text = std::fs::read_to_string(&path).unwrap();
    let marker = format!("body: \"{from}\"");
    assert!(text.contains(&marker), "{text}");
    std::fs::write(&path, text.replace(&marker, &format!("body: \"{to}\""))).unwrap();
}

fn version(gw: &Gateway) -> String {
    http_get(&gw.url("/version")).2
}

/// Requests from `threads` threads until stopped: every outcome that is
/// not a 200 is kept (status or error), with the number of 200s.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failures: Arc<Mutex<Vec<String>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    /// `fresh_connections`: one connection per request (`Connection:
    /// close`), so no request can race an idle keep-alive connection.
    fn start(url: String, threads: usize, fresh_connections: bool) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicUsize::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let threads = (0..threads)
            .map(|_| {
                let (stop, ok, failures, url) =
                    (stop.clone(), ok.clone(), failures.clone(), url.clone());
                std::thread::spawn(move || {
                    let mut builder =
                        reqwest::blocking::Client::builder().timeout(Duration::from_secs(10));
                    if fresh_connections {
                        builder = builder.pool_max_idle_per_host(0);
                    }
                    let http = builder.build().unwrap();
                    while !stop.load(Ordering::Relaxed) {
                        let mut req = http.get(&url);
                        if fresh_connections {
                            req = req.header("connection", "close");
                        }
                        match req.send() {
                            Ok(r) if r.status() == 200 => {
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(r) => failures
                                .lock()
                                .unwrap()
                                .push(format!("status {}", r.status())),
                            Err(e) => failures.lock().unwrap().push(format!("{e:?}")),
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            ok,
            failures,
            threads,
        }
    }

    /// The 200s so far.
    fn ok(&self) -> usize {
        self.ok.load(Ordering::Relaxed)
    }

    /// Wait (bounded) until `n` more requests have been answered 200.
    fn wait_for_more(&self, n: usize, what: &str) {
        let from = self.ok();
        assert!(
            eventually(Duration::from_secs(20), || self.ok() >= from + n),
            "{what}: {} requests answered 200 in 20 s, failures: {:?}",
            self.ok() - from,
            self.failures.lock().unwrap()
        );
    }

    fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        let failures = self.failures.lock().unwrap().clone();
        (self.ok.load(Ordering::Relaxed), failures)
    }
}

#[test]
fn twenty_reloads_under_load_fail_no_request() {
    let up = Upstream::start("orders");
    let gw = Gateway::start(&body(&up, "v0"));
    let admin = Admin::new(&gw);
    let load = Load::start(gw.url("/orders/1"), 4, false);
    load.wait_for_more(20, "the load runs");
    for i in 1..=20 {
        set_version(&gw, &format!("v{}", i - 1), &format!("v{i}"));
        if i % 2 == 0 {
            gw.signal("HUP");
        } else {
            let (status, v) = admin.post("/reload", serde_json::json!({}));
            assert_eq!(status, 200, "{v}");
            assert!(v["summary"].as_str().unwrap().contains("ok"), "{v}");
            assert_eq!(v["restart_required"], serde_json::json!([]));
        }
        assert!(
            eventually(Duration::from_secs(5), || version(&gw) == format!("v{i}")),
            "reload {i} took effect"
        );
    }
    let (ok, failures) = load.finish();
    assert!(
        failures.is_empty(),
        "{} failed requests: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(ok > 100, "the load ran ({ok} requests)");
    assert_eq!(
        gw.metric("tollgate_config_reloads_total{result=\"ok\"}"),
        20.0
    );
    assert_eq!(
        gw.metric("tollgate_config_reloads_total{result=\"error\"}"),
        0.0
    );
}

#[test]
fn a_configuration_that_fails_to_load_is_refused_and_the_old_one_serves() {
    let up = Upstream::start("orders");
    let gw = Gateway::start(&body(&up, "v0"));
    let admin = Admin::new(&gw);
    let path = gw.config_path();
    let good = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        good.replace(
            "service: orders, auth: public",
            "service: missing, auth: public",
        ),
    )
    .unwrap();

    let (status, v) = admin.post("/reload", serde_json::json!({}));
    assert_eq!(status, 400, "{v}");
    let message = v["message"].as_str().unwrap();
    assert!(
        message.contains("tollgate.yaml:") && message.contains("missing"),
        "the error names the place and the cause: {message}"
    );
    gw.signal("HUP");
    assert!(
        eventually(Duration::from_secs(5), || gw
            .metric("tollgate_config_reloads_total{result=\"error\"}")
            == 2.0),
        "both refusals are counted"
    );
    assert_eq!(version(&gw), "v0");
    assert_eq!(
        client().get(gw.url("/orders/1")).send().unwrap().status(),
        200
    );
    assert!(gw.logs().contains("configuration refused"), "{}", gw.logs());

    // a setting bound at start is reported, the rest applies
    std::fs::write(
        &path,
        good.replace("body: \"v0\"", "body: \"v1\"").replace(
            "shutdown_timeout: 10s",
            "shutdown_timeout: 10s\n  threads: 3",
        ),
    )
    .unwrap();
    let (status, v) = admin.post("/reload", serde_json::json!({}));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["restart_required"], serde_json::json!(["server.threads"]));
    assert_eq!(version(&gw), "v1");
}

fn read_pid(file: &Path) -> Option<u32> {
    std::fs::read_to_string(file).ok()?.trim().parse().ok()
}

#[test]
fn a_graceful_upgrade_under_load_refuses_and_resets_nothing() {
    let up = Upstream::start("orders");
    let pids = tempfile::tempdir().unwrap();
    let pid_file = pids.path().join("tollgate.pid");
    let pid_arg = pid_file.to_str().unwrap();
    let mut old = Gateway::builder(&body(&up, "v0"))
        .arg("--pid-file")
        .arg(pid_arg)
        .start();
    assert_eq!(
        read_pid(&pid_file),
        Some(old.pid()),
        "the pid file names the process"
    );

    // a new binary whose configuration is broken never takes over
    let broken = pids.path().join("broken.yaml");
    std::fs::write(&broken, "server: [not, a, map]\n").unwrap();
    let mut refused = old.spawn_beside(&broken, &["--pid-file", pid_arg, "--upgrade"]);
    let status = refused.wait_exit(Duration::from_secs(20)).expect("exits");
    assert_eq!(status.code(), Some(2));
    assert_eq!(read_pid(&pid_file), Some(old.pid()));
    assert_eq!(
        client().get(old.url("/orders/1")).send().unwrap().status(),
        200
    );

    // clients on fresh connections and on kept-alive ones
    let fresh = Load::start(old.url("/orders/1"), 2, true);
    let kept = Load::start(old.url("/orders/2"), 2, false);
    fresh.wait_for_more(20, "the load on fresh connections runs");
    kept.wait_for_more(20, "the load on kept-alive connections runs");
    let mut new = old.spawn_beside(&old.config_path(), &["--pid-file", pid_arg, "--upgrade"]);
    assert!(
        eventually(Duration::from_secs(20), || read_pid(&pid_file)
            == Some(new.pid())),
        "the new process took over:\n{}",
        new.logs()
    );
    let exited = old
        .wait_exit(Duration::from_secs(30))
        .expect("the old process exits");
    assert!(exited.success(), "{exited}");
    // the loads go on, now served by the new process alone
    fresh.wait_for_more(50, "fresh connections after the hand-over");
    kept.wait_for_more(50, "kept-alive connections after the hand-over");
    for (load, kind) in [(fresh, "fresh"), (kept, "kept-alive")] {
        let (ok, failures) = load.finish();
        assert!(
            failures.is_empty(),
            "{} requests on {kind} connections failed during the upgrade: {:?}",
            failures.len(),
            &failures[..failures.len().min(5)]
        );
        assert!(
            ok > 100,
            "the load on {kind} connections ran ({ok} requests)"
        );
    }
    assert_eq!(
        client().get(new.url("/orders/1")).send().unwrap().status(),
        200
    );
    assert_eq!(
        http_get(&format!("http://{}/readyz", new.admin)).0,
        200,
        "the admin listener moved too"
    );
    new.signal("TERM");
    assert!(new.wait_exit(Duration::from_secs(15)).is_some());
    assert_eq!(
        read_pid(&pid_file),
        None,
        "the last process removes its pid file"
    );
}

#[test]
fn a_request_in_flight_during_a_reload_finishes_on_its_configuration() {
    let up = Upstream::start("orders");
    let config = format!(
        "{}  - {{ name: slow, match: {{ path_prefix: /slow }}, service: orders, auth: public }}\n",
        body(&up, "v0")
    );
    let gw = Gateway::start(&config);
    let slow = {
        let url = gw.url("/slow/1500");
        std::thread::spawn(move || client().get(url).send().map(|r| r.status().as_u16()))
    };
    assert!(
        eventually(Duration::from_secs(5), || up.count() == 1),
        "the slow request reached the upstream"
    );
    // the new configuration no longer has the route the request is on
    let path = gw.config_path();
    let text = std::fs::read_to_string(&path).unwrap();
    let without = text
        .lines()
        .filter(|l| !l.contains("name: slow,"))
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&path, without).unwrap();
    let (status, v) = Admin::new(&gw).post("/reload", serde_json::json!({}));
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        client().get(gw.url("/slow/1")).send().unwrap().status(),
        404,
        "new requests see the new configuration"
    );
    assert_eq!(
        slow.join().unwrap().unwrap(),
        200,
        "the request in flight finished on the route it started on"
    );
}
