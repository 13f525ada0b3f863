//! Route choice per SPEC §4, 404 and 405, direct responses.

use std::time::Duration;

use crate::harness::{raw_request, Gateway};

const ROUTES: &str = r#"
routes:
  - { name: root, match: { path_prefix: / }, respond: { status: 200, body: root }, auth: public }
  - { name: prefix-a, match: { path_prefix: /a }, respond: { status: 200, body: prefix-a }, auth: public }
  - { name: prefix-ab, match: { path_prefix: /a/b }, respond: { status: 200, body: prefix-ab }, auth: public }
  - { name: exact-ab, match: { path: /a/b }, respond: { status: 200, body: exact-ab }, auth: public }
  - { name: hosted, match: { host: api.example.com, path_prefix: /a }, respond: { status: 200, body: hosted }, auth: public }
  - name: only-get
    match: { path: /m, methods: [GET] }
    respond: { status: 201, body: "{\"made\": true}", headers: { x-extra: yes } }
    auth: public
"#;

fn get(gw: &Gateway, host: &str, method: &str, path: &str) -> crate::harness::RawResponse {
    let req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    raw_request(gw.proxy, req.as_bytes(), Duration::from_secs(5))
}

#[test]
fn exact_beats_prefix_longest_prefix_wins_host_first() {
    let gw = Gateway::start(ROUTES);
    let cases = [
        ("t", "/a/b", "exact-ab"),
        ("t", "/a/b/c", "prefix-ab"),
        ("t", "/a/bc", "prefix-a"),
        ("t", "/a", "prefix-a"),
        ("t", "/ab", "root"),
        ("t", "/", "root"),
        ("api.example.com", "/a/b", "hosted"),
        ("API.Example.com:8080", "/a", "hosted"),
        ("api.example.com", "/z", "root"),
    ];
    for (host, path, want) in cases {
        let r = get(&gw, host, "GET", path);
        assert_eq!(r.status, 200, "{host}{path}: {r:?}");
        assert_eq!(r.body, want, "{host}{path}");
        assert!(r.header("x-request-id").is_some());
    }
}

#[test]
fn direct_response_status_and_headers() {
    let gw = Gateway::start(ROUTES);
    let r = get(&gw, "t", "GET", "/m");
    assert_eq!(r.status, 201);
    assert_eq!(r.header("x-extra").as_deref(), Some("yes"));
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(r.json()["made"], true);
    // another route that takes any method catches what /m refuses
    assert_eq!(get(&gw, "t", "DELETE", "/m").body, "root");
}

#[test]
fn no_route_is_404_and_wrong_method_405() {
    let gw = Gateway::start(
        "routes:\n  - { name: only, match: { path: /only, methods: [GET, POST] }, respond: { status: 200, body: x }, auth: public }\n",
    );
    let r = get(&gw, "t", "DELETE", "/only");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow").as_deref(), Some("GET, POST"));
    assert_eq!(r.json()["error"], "method_not_allowed");
    let r = get(&gw, "t", "GET", "/elsewhere");
    assert_eq!(r.status, 404);
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(r.json()["error"], "not_found");
    let r = get(&gw, "t", "GET", "/only/more");
    assert_eq!(r.status, 404);
}

/// The quick start as a newcomer runs it: the shipped configuration, with
/// `python3 -m http.server` as the demo upstream; `/demo/` reaches the
/// upstream as `/` (the route strips its prefix) and answers its listing.
#[test]
fn quick_start_demo_route_answers_the_upstreams_listing() {
    let shipped: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(crate::harness::repo_path("config/tollgate.yaml"))
            .expect("config/tollgate.yaml"),
    )
    .expect("shipped config is YAML");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("hello.txt"), "hello").expect("file");
    let port = crate::harness::free_port();
    let mut upstream = std::process::Command::new("python3")
        .args([
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("python3 -m http.server");
    struct Kill<'a>(&'a mut std::process::Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _upstream = Kill(&mut upstream);
    assert!(
        crate::harness::eventually(Duration::from_secs(10), || std::net::TcpStream::connect((
            "127.0.0.1",
            port
        ))
        .is_ok()),
        "http.server listening"
    );
    let mut body = serde_yaml::Mapping::new();
    for (k, v) in shipped.as_mapping().expect("mapping") {
        // the harness sets the listeners and the store
        if !matches!(k.as_str(), Some("server" | "admin" | "metrics" | "store")) {
            body.insert(k.clone(), v.clone());
        }
    }
    body["services"]["demo"]["upstreams"] =
        serde_yaml::to_value([format!("127.0.0.1:{port}")]).expect("yaml");
    let gw = Gateway::start(&serde_yaml::to_string(&body).expect("yaml"));
    let r = get(&gw, "127.0.0.1", "GET", "/demo/");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("hello.txt"), "{}", r.body);
    let r = get(&gw, "127.0.0.1", "GET", "/demo/hello.txt");
    assert_eq!((r.status, r.body.as_str()), (200, "hello"));
    let r = get(&gw, "127.0.0.1", "GET", "/hello");
    assert_eq!(r.status, 200, "{}", r.body);
}
