//! Several targets per service, skipping a refusing target, 502 versus 504,
//! and retries that never replay a request the upstream may have seen.

use std::io::Read;
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::harness::{client, closed_port, Gateway, Upstream};

fn service_gateway(targets: &[String], extra: &str) -> Gateway {
    let list = targets
        .iter()
        .map(|t| format!("\"{t}\""))
        .collect::<Vec<_>>()
        .join(", ");
    Gateway::start(&format!(
        "services:\n  s: {{ upstreams: [{list}]{extra} }}\nroutes:\n  - {{ name: r, match: {{ path_prefix: / }}, service: s, auth: public }}\n"
    ))
}

#[test]
fn round_robin_over_targets() {
    let a = Upstream::start("a");
    let b = Upstream::start("b");
    let gw = service_gateway(&[a.target(), b.target()], "");
    let c = client();
    for i in 0..10 {
        let r = c.get(gw.url(&format!("/rr/{i}"))).send().unwrap();
        assert_eq!(r.status(), 200);
    }
    assert_eq!(a.count(), 5);
    assert_eq!(b.count(), 5);
}

#[test]
fn a_refusing_target_is_skipped() {
    let a = Upstream::start("a");
    let dead = format!("127.0.0.1:{}", closed_port());
    let gw = service_gateway(&[dead, a.target()], "");
    let c = client();
    for i in 0..10 {
        let r = c.get(gw.url(&format!("/x/{i}"))).send().unwrap();
        assert_eq!(r.status(), 200, "request {i}");
    }
    assert_eq!(a.count(), 10);
}

#[test]
fn all_targets_refusing_is_502_and_upstream_errors_pass_through() {
    let gw = service_gateway(
        &[
            format!("127.0.0.1:{}", closed_port()),
            format!("127.0.0.1:{}", closed_port()),
        ],
        "",
    );
    let r = client().post(gw.url("/x")).body("payload").send().unwrap();
    assert_eq!(r.status(), 502);
    let body: serde_json::Value = r.json().unwrap();
    assert_eq!(body["error"], "bad_gateway");

    let up = Upstream::start("u");
    let gw = service_gateway(&[up.target()], "");
    let r = client().get(gw.url("/status/503")).send().unwrap();
    assert_eq!(r.status(), 503, "an upstream's own 5xx is passed on as is");
}

#[test]
fn slow_upstream_is_504() {
    let up = Upstream::start("slow");
    let gw = service_gateway(&[up.target()], ", timeouts: { connect: 1s, read: 300ms }");
    let r = client().get(gw.url("/slow/3000")).send().unwrap();
    assert_eq!(r.status(), 504);
    let body: serde_json::Value = r.json().unwrap();
    assert_eq!(body["error"], "gateway_timeout");
    let r = client().get(gw.url("/slow/10")).send().unwrap();
    assert_eq!(r.status(), 200);
}

/// Accepts connections, reads the request, and hangs up without answering.
fn hang_up_upstream() -> (String, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        for stream in l.incoming().take(16) {
            let Ok(mut s) = stream else { continue };
            count.fetch_add(1, Ordering::SeqCst);
            s.set_read_timeout(Some(Duration::from_millis(300))).ok();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            drop(s);
        }
    });
    (addr, accepted)
}

/// Wait until a [`hang_up_upstream`] has taken every connection made to it
/// so far: it takes them one at a time in order, so once it has hung up on
/// a connection made now, it has counted all earlier ones (this one too).
fn settle(addr: &str) {
    use std::io::Write;
    let mut probe = std::net::TcpStream::connect(addr).unwrap();
    probe
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    probe.write_all(b"x").unwrap();
    let mut buf = [0u8; 16];
    assert!(
        matches!(probe.read(&mut buf), Ok(0)),
        "the upstream at {addr} hung up on the probe"
    );
}

#[test]
fn a_request_the_upstream_received_is_not_replayed() {
    let (a, a_count) = hang_up_upstream();
    let (b, b_count) = hang_up_upstream();
    let gw = service_gateway(&[a.clone(), b.clone()], ", retries: 3");
    let r = client()
        .post(gw.url("/pay"))
        .body("charge=100")
        .send()
        .unwrap();
    assert_eq!(r.status(), 502);
    let body: serde_json::Value = r.json().unwrap();
    assert_eq!(body["error"], "bad_gateway");
    settle(&a);
    settle(&b);
    // less the two probes
    let total = a_count.load(Ordering::SeqCst) + b_count.load(Ordering::SeqCst) - 2;
    assert_eq!(total, 1, "the POST reached exactly one upstream connection");
}
