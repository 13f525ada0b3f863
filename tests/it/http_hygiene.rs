//! Malformed HTTP, oversized heads and slow clients.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::harness::{raw_request, Gateway, Upstream};

fn gateway(up: &Upstream) -> Gateway {
    Gateway::start(&format!(
        "SERVER_EXTRA:\n  max_header_bytes: 4096\n  header_timeout: 1s\nservices:\n  s: {{ upstreams: [\"{}\"] }}\nroutes:\n  - {{ name: r, match: {{ path_prefix: / }}, service: s, auth: public }}\n",
        up.target()
    ))
}

#[test]
fn malformed_requests_get_400_and_close() {
    let up = Upstream::start("u");
    let gw = gateway(&up);
    let cases: [&[u8]; 4] = [
        b"GARBAGE\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        // the gateway's own endpoints get the same head checks
        b"POST /oauth2/token HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    ];
    for bytes in cases {
        let r = raw_request(gw.proxy, bytes, Duration::from_secs(5));
        assert_eq!(r.status, 400, "{:?}: {r:?}", String::from_utf8_lossy(bytes));
        assert!(r.closed, "connection closed after 400");
    }
    assert_eq!(up.count(), 0);
}

#[test]
fn oversized_head_is_431() {
    let up = Upstream::start("u");
    let gw = gateway(&up);
    let big = "a".repeat(8000);
    let req = format!("GET / HTTP/1.1\r\nHost: t\r\nX-Big: {big}\r\n\r\n");
    let r = raw_request(gw.proxy, req.as_bytes(), Duration::from_secs(5));
    assert_eq!(r.status, 431, "{r:?}");
    assert!(r.closed);
    assert_eq!(r.json()["error"], "request_header_fields_too_large");

    // the second request of a kept-alive connection is held to the same limit
    let mut s = TcpStream::connect(gw.proxy).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /ok HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let first = read_until(&mut s, b"\"uri\":\"/ok\"}");
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    let second = format!(
        "GET /big HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "b".repeat(5000)
    );
    s.write_all(second.as_bytes()).unwrap();
    let answer = read_until(&mut s, b"}");
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    let uris: Vec<String> = up.requests().into_iter().map(|r| r.uri).collect();
    assert_eq!(uris, vec!["/ok".to_string()]);
}

/// Read until `marker` appears or the connection ends (bounded by the read timeout).
fn read_until(s: &mut TcpStream, marker: &[u8]) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5)
        && !buf.windows(marker.len()).any(|w| w == marker)
    {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

#[test]
fn a_slow_head_is_cut_off_at_the_deadline() {
    let up = Upstream::start("u");
    let gw = gateway(&up);
    let mut s = TcpStream::connect(gw.proxy).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n").unwrap();
    // drip one header byte every 200ms: each read is quick, the head never ends
    let start = Instant::now();
    let mut closed = false;
    let mut buf = [0u8; 64];
    while start.elapsed() < Duration::from_secs(6) {
        if s.write_all(b"X").is_err() {
            closed = true;
            break;
        }
        match s.read(&mut buf) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(_) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => {
                closed = true;
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(150));
    }
    assert!(
        closed,
        "the gateway closed the connection of a client that never finished its head"
    );
    assert_eq!(up.count(), 0);
}
