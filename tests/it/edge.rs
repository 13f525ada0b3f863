//! The HTTP edge against hostile or unusual clients, over raw sockets:
//! slow and idle kept-alive connections, pipelining, Host and framing
//! tricks, refusals written before a head is parsed, header names with
//! underscores, and client faults kept out of the error log.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::harness::{raw_request, Admin, Gateway, RawResponse, Upstream};

fn gateway(up: &Upstream) -> Gateway {
    Gateway::builder(&format!(
        r#"SERVER_EXTRA:
  header_timeout: 1s
  keepalive_timeout: 2s
services:
  s: {{ upstreams: ["{up}"] }}
routes:
  - {{ name: locked, match: {{ path_prefix: /locked }}, service: s, auth: [api_key] }}
  - {{ name: hosted, match: {{ host: internal.example, path_prefix: / }}, service: s, auth: [api_key] }}
  - {{ name: open, match: {{ path_prefix: / }}, service: s, auth: public }}
"#,
        up = up.target()
    ))
    .arg("--log-format")
    .arg("json")
    .start()
}

fn connect(gw: &Gateway) -> TcpStream {
    let s = TcpStream::connect_timeout(&gw.proxy, Duration::from_secs(2)).expect("connect");
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    s
}

/// Reads until `n` complete answers have arrived (or the connection ends,
/// or `limit` passes), and says whether the connection ended.
fn read_answers(s: &mut TcpStream, n: usize, limit: Duration) -> (Vec<RawResponse>, bool) {
    let start = Instant::now();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    let mut closed = false;
    loop {
        let answers = split_answers(&buf);
        if answers.len() >= n || start.elapsed() > limit {
            return (answers, closed);
        }
        match s.read(&mut chunk) {
            Ok(0) => {
                closed = true;
                return (split_answers(&buf), closed);
            }
            Ok(k) => buf.extend_from_slice(&chunk[..k]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => {
                closed = true;
                return (split_answers(&buf), closed);
            }
        }
    }
}

/// Complete answers in `buf`, each framed by its Content-Length.
fn split_answers(buf: &[u8]) -> Vec<RawResponse> {
    let mut out = Vec::new();
    let mut rest = buf;
    while let Some(end) = rest.windows(4).position(|w| w == b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&rest[..end]).into_owned();
        let len = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse::<usize>().ok())?
            })
            .unwrap_or(0);
        let body_start = end + 4;
        if rest.len() < body_start + len {
            break;
        }
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        out.push(RawResponse {
            status,
            head,
            body: String::from_utf8_lossy(&rest[body_start..body_start + len]).into_owned(),
            closed: false,
        });
        rest = &rest[body_start + len..];
    }
    out
}

/// Waits (bounded) for the server to close the connection; sends `drip`
/// one byte at a time meanwhile, if given. Answers what was read.
fn until_closed(s: &mut TcpStream, drip: Option<&[u8]>, limit: Duration) -> Option<String> {
    let start = Instant::now();
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut drip = drip.unwrap_or(b"").iter().cycle();
    while start.elapsed() < limit {
        if let Some(b) = drip.next() {
            if s.write_all(&[*b]).is_err() {
                return Some(String::from_utf8_lossy(&got).into_owned());
            }
        }
        match s.read(&mut chunk) {
            Ok(0) => return Some(String::from_utf8_lossy(&got).into_owned()),
            Ok(k) => got.extend_from_slice(&chunk[..k]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return Some(String::from_utf8_lossy(&got).into_owned()),
        }
        std::thread::sleep(Duration::from_millis(150));
    }
    None
}

#[test]
fn a_slow_second_head_on_a_kept_alive_connection_is_cut() {
    let up = Upstream::start("u");
    let gw = gateway(&up);
    let mut s = connect(&gw);
    s.write_all(b"GET /first HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let (answers, closed) = read_answers(&mut s, 1, Duration::from_secs(5));
    assert_eq!(answers.len(), 1, "first answer");
    assert_eq!(answers[0].status, 200);
    assert!(!closed);
    // the next head, one byte every 150 ms: never whole within 1 s
    let got = until_closed(
        &mut s,
        Some(b"GET /second HTTP/1.1\r\nHost: t\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
        Duration::from_secs(10),
    )
    .expect("the gateway closed the connection of a slow head");
    assert!(got.starts_with("HTTP/1.1 408"), "{got}");
    assert!(got.contains("\"error\":\"request_timeout\""), "{got}");
    let uris: Vec<String> = up.requests().into_iter().map(|r| r.uri).collect();
    assert_eq!(uris, ["/first"]);
}

#[test]
fn an_idle_kept_alive_connection_is_closed_after_keepalive_timeout() {
    let up = Upstream::start("u");
    let gw = gateway(&up);
    let mut s = connect(&gw);
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let (answers, _) = read_answers(&mut s, 1, Duration::from_secs(5));
    assert_eq!(answers.len(), 1);
    assert!(
        until_closed(&mut s, None, Duration::from_secs(10)).is_some(),
        "an idle connection stays open past keepalive_timeout (2s)"
    );
}

#[test]
fn a_kept_alive_connection_in_use_outlives_keepalive_timeout() {
    // requests 1.2 s apart: each wait is shorter than keepalive_timeout
    // (2s), all of them together longer
    let up = Upstream::start("u");
    let gw = gateway(&up);
    let mut s = connect(&gw);
    for i in 0..3 {
        if i > 0 {
            std::thread::sleep(Duration::from_millis(1200));
        }
        s.write_all(format!("GET /busy/{i} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
            .unwrap();
        let (answers, closed) = read_answers(&mut s, 1, Duration::from_secs(5));
        assert_eq!(answers.len(), 1, "request {i} on the kept-alive connection");
        assert_eq!(answers[0].status, 200, "request {i}");
        assert!(!closed, "the connection closed after request {i}");
    }
    // then idle: closed once keepalive_timeout has passed, not before
    let idle = Instant::now();
    assert!(
        until_closed(&mut s, None, Duration::from_secs(10)).is_some(),
        "an idle connection stays open past keepalive_timeout (2s)"
    );
    let after = idle.elapsed();
    assert!(
        after >= Duration::from_millis(1500),
        "closed {after:?} after its last answer, before keepalive_timeout (2s)"
    );
    let uris: Vec<String> = up.requests().into_iter().map(|r| r.uri).collect();
    assert_eq!(uris, ["/busy/0", "/busy/1", "/busy/2"]);
}

#[test]
fn hundreds_of_slow_heads_do_not_stop_fresh_requests() {
    let up = Upstream::start("u");
    let gw = gateway(&up);
    let mut slow: Vec<TcpStream> = (0..300)
        .filter_map(|_| TcpStream::connect_timeout(&gw.proxy, Duration::from_secs(2)).ok())
        .collect();
    assert!(slow.len() >= 250, "{} connections", slow.len());
    for s in &mut slow {
        let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n");
    }
    for i in 0..5 {
        let r = raw_request(
            gw.proxy,
            format!("GET /fresh/{i} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
            Duration::from_secs(5),
        );
        assert_eq!(r.status, 200, "fresh request {i} beside 300 slow heads");
    }
    // and the slow ones are all cut
    for s in &mut slow {
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
    }
    let start = Instant::now();
    let mut open = slow.len();
    while open > 0 && start.elapsed() < Duration::from_secs(10) {
        open = 0;
        for s in &mut slow {
            let mut b = [0u8; 512];
            match s.read(&mut b) {
                Ok(0) => {}
                Ok(_) => open += 1,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    open += 1
                }
                Err(_) => {}
            }
        }
    }
    assert_eq!(open, 0, "slow heads still open after their deadline");
}

#[test]
fn a_request_sent_while_the_previous_is_in_flight_is_answered_after_it() {
    let up = Upstream::start("u");
    let gw = gateway(&up);
    let mut s = connect(&gw);
    // a POST the upstream takes 500 ms over, and a GET right behind it
    s.write_all(b"POST /slow/500 HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello")
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    s.write_all(b"GET /after HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let (answers, _) = read_answers(&mut s, 2, Duration::from_secs(10));
    let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    assert_eq!(
        statuses,
        [200, 200],
        "{:?}",
        answers.iter().map(|a| &a.head).collect::<Vec<_>>()
    );
    assert!(answers[0].body.contains("/slow/500"), "{}", answers[0].body);
    assert!(answers[1].body.contains("/after"), "{}", answers[1].body);
    let seen: Vec<(String, String)> = up
        .requests()
        .into_iter()
        .map(|r| (r.method, r.uri))
        .collect();
    assert_eq!(
        seen,
        [
            ("POST".to_string(), "/slow/500".to_string()),
            ("GET".to_string(), "/after".to_string())
        ],
        "each request ran upstream exactly once"
    );
}

#[test]
fn a_thousand_pipelined_requests_are_answered_in_order_each_once() {
    let up = Upstream::start("u");
    let gw = gateway(&up);
    let mut s = connect(&gw);
    let mut burst = Vec::new();
    for i in 0..1000 {
        burst.extend_from_slice(format!("GET /p/{i} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
    }
    s.write_all(&burst).unwrap();
    let (answers, _) = read_answers(&mut s, 1000, Duration::from_secs(60));
    assert_eq!(answers.len(), 1000);
    for (i, a) in answers.iter().enumerate() {
        assert_eq!(a.status, 200, "answer {i}: {}", a.head);
        assert!(
            a.body.contains(&format!("\"/p/{i}\"")),
            "answer {i} out of order: {}",
            a.body
        );
    }
    assert_eq!(up.count(), 1000);
}

#[test]
fn a_keyless_request_pipelined_behind_another_gets_its_401() {
    let up = Upstream::start("u");
    let gw = gateway(&up);
    let mut s = connect(&gw);
    s.write_all(
        b"GET /one HTTP/1.1\r\nHost: t\r\n\r\nGET /locked/x HTTP/1.1\r\nHost: t\r\n\r\nGET /three HTTP/1.1\r\nHost: t\r\n\r\n",
    )
    .unwrap();
    let (answers, _) = read_answers(&mut s, 3, Duration::from_secs(10));
    let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    assert_eq!(statuses, [200, 401, 200]);
    assert_eq!(answers[1].json()["error"], "missing_credentials");
    assert_eq!(
        answers[1].header("www-authenticate").as_deref(),
        Some("Bearer realm=\"tollgate\"")
    );
    let uris: Vec<String> = up.requests().into_iter().map(|r| r.uri).collect();
    assert_eq!(uris, ["/one", "/three"]);
}

#[test]
fn invalid_or_missing_hosts_are_refused_and_an_absolute_target_routes() {
    let up = Upstream::start("u");
    let gw = gateway(&up);
    for head in [
        "GET / HTTP/1.1\r\nHost: internal.example/x\r\n",
        "GET / HTTP/1.1\r\nHost: internal.example bad\r\n",
        "GET / HTTP/1.1\r\nHost: a@internal.example\r\n",
        "GET / HTTP/1.1\r\n",
        "GET http://internal.example/ HTTP/1.1\r\nHost: other.example\r\n",
    ] {
        let r = raw_request(
            gw.proxy,
            format!("{head}Connection: close\r\n\r\n").as_bytes(),
            Duration::from_secs(5),
        );
        assert_eq!(r.status, 400, "{head:?}: {}", r.head);
        assert_eq!(r.json()["error"], "bad_request", "{head:?}: {}", r.body);
        assert!(r.header("x-request-id").is_some(), "{head:?}: {}", r.head);
    }
    // HTTP/1.0 may omit Host
    let r = raw_request(
        gw.proxy,
        b"GET /ten HTTP/1.0\r\n\r\n",
        Duration::from_secs(5),
    );
    assert_eq!(r.status, 200, "{}", r.head);
    // the host of an absolute-form target chooses the route: internal.example needs a key
    let r = raw_request(
        gw.proxy,
        b"GET http://internal.example/abs HTTP/1.1\r\nHost: internal.example\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    );
    assert_eq!(r.status, 401, "{}", r.head);
    let r = raw_request(
        gw.proxy,
        b"GET http://internal.example/abs HTTP/1.1\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    );
    assert_eq!(r.status, 401, "absolute form without Host: {}", r.head);
    let uris: Vec<String> = up.requests().into_iter().map(|r| r.uri).collect();
    assert_eq!(uris, ["/ten"]);
}

#[test]
fn transfer_codings_other_than_a_single_chunked_are_refused_and_close() {
    let up = Upstream::start("u");
    let gw = gateway(&up);
    for te in ["chunked, chunked", "gzip, chunked", "identity"] {
        let r = raw_request(
            gw.proxy,
            format!("POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: {te}\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
                .as_bytes(),
            Duration::from_secs(5),
        );
        assert_eq!(r.status, 400, "{te}: {}", r.head);
        assert_eq!(r.json()["error"], "bad_request", "{te}: {}", r.body);
        assert!(r.closed, "{te}: connection closed");
    }
    assert_eq!(up.count(), 0);
}

#[test]
fn heads_refused_before_parsing_get_a_json_body_and_a_request_id() {
    let up = Upstream::start("u");
    let gw = gateway(&up);
    for (bytes, status, code) in [
        (&b"GARBAGE\r\n\r\n"[..], 400, "bad_request"),
        (
            b"GET / HTTP/1.1\r\nHost: t\r\nBad Header\r\n\r\n",
            400,
            "bad_request",
        ),
        (
            b"CONNECT t:443 HTTP/1.1\r\nHost: t:443\r\n\r\n",
            405,
            "method_not_allowed",
        ),
    ] {
        let r = raw_request(gw.proxy, bytes, Duration::from_secs(5));
        assert_eq!(r.status, status, "{}", String::from_utf8_lossy(bytes));
        assert_eq!(r.json()["error"], code, "{}", r.body);
        assert!(
            r.header("x-request-id").is_some_and(|v| !v.is_empty()),
            "{}",
            r.head
        );
        assert!(r.closed);
    }
    assert_eq!(up.count(), 0);
}

#[test]
fn header_names_with_underscores_do_not_reach_the_upstream() {
    let up = Upstream::start("u");
    let gw = gateway(&up);
    let r = raw_request(
        gw.proxy,
        b"GET /u HTTP/1.1\r\nHost: t\r\nX_Consumer_Id: evil\r\nX-Plain: 1\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    );
    assert_eq!(r.status, 200);
    let seen = &up.requests()[0];
    assert!(
        seen.headers.keys().all(|k| !k.as_str().contains('_')),
        "{:?}",
        seen.headers
    );
    assert_eq!(seen.header("x-plain").as_deref(), Some("1"));
    assert_eq!(
        gw.metric("tollgate_dropped_headers_total{reason=\"underscore\"}"),
        1.0
    );
}

#[test]
fn a_route_may_keep_header_names_with_underscores() {
    let up = Upstream::start("u");
    let gw = Gateway::start(&format!(
        "services:\n  s: {{ upstreams: [\"{}\"] }}\nroutes:\n  - {{ name: cgi, match: {{ path_prefix: / }}, service: s, auth: public, keep_underscore_headers: true }}\n",
        up.target()
    ));
    let r = raw_request(
        gw.proxy,
        b"GET / HTTP/1.1\r\nHost: t\r\nX_Legacy: 1\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    );
    assert_eq!(r.status, 200);
    assert_eq!(up.requests()[0].header("x_legacy").as_deref(), Some("1"));
}

#[test]
fn client_faults_are_counted_not_logged_as_errors() {
    let up = Upstream::start("u");
    let gw = gateway(&up);
    // a client that leaves in the middle of its body
    {
        let mut s = connect(&gw);
        s.write_all(b"POST /body HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nhello")
            .unwrap();
        std::thread::sleep(Duration::from_millis(200));
    }
    // a malformed chunked body
    let r = raw_request(
        gw.proxy,
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        Duration::from_secs(5),
    );
    assert_ne!(r.status, 200, "{}", r.head);
    // a client that stops in the middle of a head
    {
        let mut s = connect(&gw);
        s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nX-Half").unwrap();
    }
    let counted = |gw: &Gateway| -> f64 {
        gw.metrics_text()
            .lines()
            .filter(|l| l.starts_with("tollgate_client_errors_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    assert!(
        crate::harness::eventually(Duration::from_secs(5), || counted(&gw) >= 3.0),
        "{}",
        gw.metrics_text()
    );
    let errors: Vec<String> = gw
        .logs()
        .lines()
        .filter(|l| l.contains("\"level\":\"ERROR\""))
        .map(str::to_string)
        .collect();
    assert!(
        errors.is_empty(),
        "client faults logged as errors: {errors:#?}"
    );
}

#[test]
fn a_token_request_with_a_repeated_parameter_is_invalid() {
    let up = Upstream::start("u");
    let gw = gateway(&up);
    let admin = Admin::new(&gw);
    let client = admin.create_client(serde_json::json!({
        "name": "twice", "auth_type": "oauth2", "scopes": ["a", "b"]
    }));
    let id = client["id"].as_str().expect("id");
    let secret = client["client_secret"].as_str().expect("secret");
    for form in [
        format!(
            "grant_type=client_credentials&scope=a&scope=b&client_id={id}&client_secret={secret}"
        ),
        format!(
            "grant_type=client_credentials&client_id={id}&client_id={id}&client_secret={secret}"
        ),
    ] {
        let req = format!(
            "POST /oauth2/token HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}",
            form.len()
        );
        let r = raw_request(gw.proxy, req.as_bytes(), Duration::from_secs(5));
        assert_eq!(r.status, 400, "{form}: {}", r.body);
        assert_eq!(r.json()["error"], "invalid_request", "{}", r.body);
        assert!(r.json().get("access_token").is_none());
    }
    // once each, the same request is granted
    let form =
        format!("grant_type=client_credentials&scope=a&client_id={id}&client_secret={secret}");
    let req = format!(
        "POST /oauth2/token HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}",
        form.len()
    );
    let r = raw_request(gw.proxy, req.as_bytes(), Duration::from_secs(5));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["scope"], "a");
}

/// Runs one of the HTTP/2 client scripts of `tests/h2` and reads the JSON
/// it prints.
fn h2_script(script: &str, args: &[&str]) -> serde_json::Value {
    let out = std::process::Command::new("python3")
        .arg(crate::harness::repo_path(&format!("tests/h2/{script}")))
        .args(args)
        .output()
        .expect("python3 runs");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "{script} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn http2_floods_end_in_a_closed_connection_and_others_are_still_served() {
    let probe = std::process::Command::new("python3")
        .args(["-c", "import h2"])
        .status()
        .expect("python3");
    assert!(
        probe.success(),
        "the Python h2 library is not installed: `python3 -m pip install --user h2` (scripts/test does)"
    );
    let up = Upstream::start("u");
    let gw = gateway(&up);
    for kind in ["rapid_reset", "continuation", "settings", "ping"] {
        let port = gw.proxy.port().to_string();
        let report = h2_script("flood.py", &[kind, "127.0.0.1", &port]);
        assert!(
            report["ended"].is_string(),
            "{kind}: the gateway let the flood go on: {report}"
        );
        // and a client beside it is served
        let r = raw_request(
            gw.proxy,
            b"GET /after-flood HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
            Duration::from_secs(5),
        );
        assert_eq!(r.status, 200, "{kind}: {}", r.head);
    }
    assert!(gw.metric("tollgate_client_errors_total{reason=\"h2_flood\"}") >= 2.0);
    let errors: Vec<String> = gw
        .logs()
        .lines()
        .filter(|l| l.contains("\"level\":\"ERROR\""))
        .map(str::to_string)
        .collect();
    assert!(
        errors.is_empty(),
        "floods logged as the gateway's errors: {errors:#?}"
    );
}

/// Over HTTP/2 each answer's X-Request-Id, a new value every time, is sent
/// as a literal never indexed, so that HPACK does not fill the connection's
/// table with values it will never see again; the ids stay one per answer,
/// distinct, and the upstream's.
#[test]
fn http2_request_ids_are_sent_never_indexed() {
    let up = Upstream::start("u");
    let gw = gateway(&up);
    let port = gw.proxy.port().to_string();
    let run = |path: &str| -> Vec<serde_json::Value> {
        let answers = h2_script("request_ids.py", &["127.0.0.1", &port, path, "5"]);
        answers.as_array().expect("a list of answers").clone()
    };
    let mut seen = std::collections::HashSet::new();
    for (path, status) in [("/ids", "200"), ("/locked", "401")] {
        let answers = run(path);
        assert_eq!(answers.len(), 5, "{path}: {answers:?}");
        for a in &answers {
            assert_eq!(a["status"], status, "{path}: {a}");
            let ids = a["request_id"].as_array().expect("ids");
            assert_eq!(ids.len(), 1, "{path}: one X-Request-Id per answer: {a}");
            assert_eq!(a["never_indexed"], serde_json::json!([true]), "{path}: {a}");
            assert!(
                seen.insert(ids[0].as_str().unwrap().to_string()),
                "{path}: ids repeat: {a}"
            );
        }
    }
    let upstream_ids: Vec<String> = up
        .requests()
        .iter()
        .filter_map(|r| r.header("x-request-id"))
        .collect();
    assert_eq!(upstream_ids.len(), 5);
    assert!(upstream_ids.iter().all(|id| seen.contains(id)));
}
