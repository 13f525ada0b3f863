//! TLS listeners with real clients (curl, Python's ssl): HTTP/1.1 and
//! HTTP/2 over ALPN answer alike, SNI picks the certificate, versions and
//! client certificates are enforced, check-config refuses what cannot be
//! served, and a reload swaps certificates without cutting connections.
//! Every certificate is made here, by a test CA that lives for one test.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};

use crate::harness::{check_config, eventually, Admin, Gateway, Upstream};

/// A test CA that signs server and client certificates into a directory.
pub(crate) struct Ca {
    dir: tempfile::TempDir,
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    pub(crate) fn new() -> Ca {
        let key = KeyPair::generate().expect("ca key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "tollgate test CA");
        let cert = params.self_signed(&key).expect("ca cert");
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("ca.pem"), cert.pem()).expect("write ca");
        Ca { dir, cert, key }
    }

    pub(crate) fn path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// `NAME.pem` and `NAME.key` for `names`, valid for `days` from
    /// `from_days` days ago; answers the two paths.
    fn issue(
        &self,
        name: &str,
        names: &[&str],
        valid: (i64, i64),
        client: bool,
    ) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().expect("key");
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("params");
        params.distinguished_name.push(DnType::CommonName, name);
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(valid.0);
        params.not_after = now + time::Duration::days(valid.1);
        params.extended_key_usages = vec![if client {
            ExtendedKeyUsagePurpose::ClientAuth
        } else {
            ExtendedKeyUsagePurpose::ServerAuth
        }];
        let cert = params.signed_by(&key, &self.cert, &self.key).expect("sign");
        let (c, k) = (
            self.dir.path().join(format!("{name}.pem")),
            self.dir.path().join(format!("{name}.key")),
        );
        std::fs::write(&c, cert.pem()).expect("write cert");
        std::fs::write(&k, key.serialize_pem()).expect("write key");
        (c, k)
    }

    pub(crate) fn server(&self, name: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        self.issue(name, names, (1, 90), false)
    }
}

fn tls_gateway(up: &Upstream, tls: &str) -> (Gateway, u16) {
    let port = crate::harness::free_port();
    let gw = Gateway::start(&format!(
        r#"SERVER_EXTRA:
  header_timeout: 2s
services:
  s: {{ upstreams: ["{up}"] }}
routes:
  - {{ name: keyed, match: {{ path_prefix: /keyed }}, service: s, auth: [api_key] }}
  - {{ name: open, match: {{ path_prefix: / }}, service: s, auth: public }}
TLS_LISTENER: {port}
{tls}"#,
        up = up.target()
    ));
    (gw, port)
}

/// curl against the TLS listener: (status, headers, body).
fn curl(ca: &Path, port: u16, host: &str, path: &str, extra: &[&str]) -> (u16, String, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "-D", "-", "--cacert"])
        .arg(ca)
        .args(["--resolve", &format!("{host}:{port}:127.0.0.1")])
        .args(extra)
        .arg(format!("https://{host}:{port}{path}"))
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no answer: {text}{}", String::from_utf8_lossy(&out.stderr)));
    (status, head.to_ascii_lowercase(), body.to_string())
}

/// A TLS handshake by Python's ssl module: Ok(peer certificate CN), or
/// Err(what failed).
fn python_handshake(port: u16, ca: &Path, sni: &str, options: &str) -> Result<String, String> {
    let script = format!(
        r#"
import socket, ssl, sys
ctx = ssl.create_default_context(cafile={ca:?})
{options}
try:
    with socket.create_connection(("127.0.0.1", {port}), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname={sni:?}) as s:
            cn = dict(x[0] for x in s.getpeercert()["subject"])["commonName"]
            s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            data = s.recv(100)
            print("OK", cn, s.version(), data[:12].decode())
except Exception as e:
    print("ERR", type(e).__name__, e)
"#,
        ca = ca.display().to_string(),
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .output()
        .expect("python3");
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    match text.strip_prefix("OK ") {
        Some(rest) => Ok(rest.to_string()),
        None => Err(text),
    }
}

pub(crate) fn listener_tls(cert: &Path, key: &Path, extra: &str) -> String {
    format!(
        "      tls:\n        certificates:\n          - {{ cert: {}, key: {} }}\n{extra}",
        cert.display(),
        key.display()
    )
}

#[test]
fn http1_and_http2_over_tls_answer_alike_and_the_upstream_hears_https() {
    let ca = Ca::new();
    let (cert, key) = ca.server("api", &["api.test"]);
    let up = Upstream::start("u");
    let (gw, port) = tls_gateway(&up, &listener_tls(&cert, &key, ""));
    let admin = Admin::new(&gw);
    let client = admin.create_client(serde_json::json!({"name": "t", "auth_type": "api_key"}));
    let id = client["id"].as_str().expect("id");
    let api_key = client["api_key"]["key"].as_str().expect("key").to_string();
    let (s, v) = admin.post(
        "/subscriptions",
        serde_json::json!({"client_id": id, "service": "s"}),
    );
    assert_eq!(s, 201, "{v}");
    for version in ["--http1.1", "--http2"] {
        let (status, head, body) = curl(&ca.path(), port, "api.test", "/keyed/x", &[version]);
        assert_eq!(status, 401, "{version}: {head}");
        assert!(
            head.contains("www-authenticate: bearer realm=\"tollgate\""),
            "{version}: {head}"
        );
        assert!(
            body.contains("\"missing_credentials\""),
            "{version}: {body}"
        );
        let wire = if version == "--http2" {
            "http/2 "
        } else {
            "http/1.1 "
        };
        assert!(head.starts_with(wire), "{version} spoke {head}");
        let key_header = format!("x-api-key: {api_key}");
        let (status, head, body) = curl(
            &ca.path(),
            port,
            "api.test",
            "/keyed/y",
            &[version, "-H", &key_header],
        );
        assert_eq!(status, 200, "{version}: {head}{body}");
        assert!(body.contains("\"/keyed/y\""), "{body}");
    }
    let seen = up.requests();
    assert_eq!(seen.len(), 2);
    for r in &seen {
        assert_eq!(r.header("x-forwarded-proto").as_deref(), Some("https"));
        assert_eq!(r.header("x-consumer-id").as_deref(), Some(id));
        assert!(r.header("x-api-key").is_none());
    }
    // the plain listener beside it still answers, and says http
    let r = crate::harness::raw_get(gw.proxy, "/plain");
    assert_eq!(r.status, 200);
    assert_eq!(
        up.requests()
            .last()
            .and_then(|r| r.header("x-forwarded-proto"))
            .as_deref(),
        Some("http")
    );
    let expiry = gw.metric(&format!(
        "tollgate_certificate_expiry_timestamp_seconds{{certificate=\"{}\",listener=\"127.0.0.1:{port}\"}}",
        cert.display()
    ));
    assert!(expiry > 1.7e9, "{expiry}");
}

#[test]
fn a_plain_listener_speaks_http2_with_prior_knowledge() {
    let up = Upstream::start("u");
    let gw = Gateway::start(&format!(
        "services:\n  s: {{ upstreams: [\"{}\"] }}\nroutes:\n  - {{ name: open, match: {{ path_prefix: / }}, service: s, auth: public }}\n",
        up.target()
    ));
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "-D",
            "-",
            "--http2-prior-knowledge",
        ])
        .arg(gw.url("/h2c"))
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("HTTP/2 200"), "{text}");
    assert!(text.contains("\"/h2c\""), "{text}");
}

#[test]
fn sni_picks_the_certificate_and_unknown_names_get_the_default() {
    let ca = Ca::new();
    let (dc, dk) = ca.server("default", &["default.test"]);
    let (pc, pk) = ca.server("partner", &["partner.test"]);
    let (wc, wk) = ca.server("wild", &["*.wild.test"]);
    let up = Upstream::start("u");
    let tls = format!(
        "      tls:\n        certificates:\n          - {{ cert: {}, key: {} }}\n          - {{ cert: {}, key: {}, hosts: [partner.test] }}\n          - {{ cert: {}, key: {}, hosts: [\"*.wild.test\"] }}\n",
        dc.display(), dk.display(), pc.display(), pk.display(), wc.display(), wk.display()
    );
    let (_gw, port) = tls_gateway(&up, &tls);
    for (sni, cn) in [
        ("partner.test", "partner"),
        ("default.test", "default"),
        ("a.wild.test", "wild"),
    ] {
        let got = python_handshake(port, &ca.path(), sni, "").expect(sni);
        assert!(got.starts_with(&format!("{cn} ")), "{sni}: {got}");
    }
    // another name gets the default certificate, which does not match it
    let err = python_handshake(port, &ca.path(), "other.test", "").expect_err("mismatch");
    assert!(
        err.contains("CERTIFICATE_VERIFY_FAILED") || err.contains("match"),
        "{err}"
    );
}

#[test]
fn minimum_version_and_client_certificates_are_enforced() {
    let ca = Ca::new();
    let (cert, key) = ca.server("api", &["api.test"]);
    let (client_cert, client_key) = ca.issue("client", &["client.test"], (1, 30), true);
    let up = Upstream::start("u");
    let extra = format!(
        "        min_version: \"1.3\"\n        client_ca: {}\n        client_auth: required\n",
        ca.path().display()
    );
    let (gw, port) = tls_gateway(&up, &listener_tls(&cert, &key, &extra));
    let load = format!(
        "ctx.load_cert_chain({:?}, {:?})",
        client_cert.display().to_string(),
        client_key.display().to_string()
    );
    let ok =
        python_handshake(port, &ca.path(), "api.test", &load).expect("with a client certificate");
    assert!(
        ok.contains("TLSv1.3") && ok.contains("HTTP/1.1 200"),
        "{ok}"
    );
    // TLS 1.2 only: refused
    let tls12 = format!("{load}\nctx.maximum_version = ssl.TLSVersion.TLSv1_2");
    assert!(python_handshake(port, &ca.path(), "api.test", &tls12).is_err());
    // no client certificate: refused (TLS 1.3 reports it after the handshake)
    assert!(python_handshake(port, &ca.path(), "api.test", "").is_err());
    let failures = |gw: &Gateway| -> f64 {
        gw.metrics_text()
            .lines()
            .filter(|l| l.starts_with("tollgate_tls_handshake_failures_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    assert!(
        eventually(Duration::from_secs(5), || failures(&gw) >= 2.0),
        "{}",
        gw.metrics_text()
    );
    let errors: Vec<String> = gw
        .logs()
        .lines()
        .filter(|l| l.contains("ERROR"))
        .map(str::to_string)
        .collect();
    assert!(
        errors.is_empty(),
        "handshake failures logged as errors: {errors:#?}"
    );
}

fn config_with(tls: &str, dir: &Path) -> PathBuf {
    let file = dir.join("tls.yaml");
    std::fs::write(
        &file,
        format!(
            "server:\n  listen:\n    - 127.0.0.1:18080\n    - address: 127.0.0.1:18443\n{tls}routes:\n  - {{ name: r, match: {{ path: /r }}, respond: {{ status: 200 }}, auth: public }}\n"
        ),
    )
    .expect("write");
    file
}

#[test]
fn check_config_refuses_unusable_certificates_with_positions_and_warns_about_expiry() {
    let ca = Ca::new();
    let (good, good_key) = ca.server("good", &["good.test"]);
    let (_, other_key) = ca.server("other", &["other.test"]);
    let (expired, expired_key) = ca.issue("expired", &["x.test"], (30, -1), false);
    let (soon, soon_key) = ca.issue("soon", &["soon.test"], (30, 5), false);
    let dir = ca.dir.path();
    let missing = dir.join("missing.pem");
    std::fs::write(dir.join("garbage.pem"), "not a certificate").expect("write");
    for (tls, line, needle) in [
        (listener_tls(&missing, &good_key, ""), 7, "cannot read"),
        (listener_tls(&good, &other_key, ""), 7, "does not match"),
        (listener_tls(&expired, &expired_key, ""), 7, "expired"),
        (
            listener_tls(&dir.join("garbage.pem"), &good_key, ""),
            7,
            "no certificate",
        ),
        (
            listener_tls(&good, &good_key, "        min_version: \"1.1\"\n"),
            8,
            "unsupported TLS version",
        ),
        (
            listener_tls(&good, &good_key, "        client_auth: required\n"),
            8,
            "needs a client_ca",
        ),
    ] {
        let file = config_with(&tls, dir);
        let (code, _, err) = check_config(&file);
        assert_eq!(code, 2, "{tls}\n{err}");
        assert!(err.contains(needle), "{needle}: {err}");
        let prefix = format!("{}:{line}:", file.display());
        assert!(
            err.lines().any(|l| l.starts_with(&prefix)),
            "{prefix}: {err}"
        );
    }
    let file = config_with(&listener_tls(&soon, &soon_key, ""), dir);
    let (code, out, err) = check_config(&file);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("127.0.0.1:18443 (tls)"), "{out}");
    assert!(
        err.contains("warning") && err.contains("expires within 14 days"),
        "{err}"
    );
}

#[test]
fn a_reload_swaps_certificates_for_new_connections_and_keeps_open_ones() {
    let ca = Ca::new();
    let (cert, key) = ca.server("first", &["api.test"]);
    let up = Upstream::start("u");
    let (gw, port) = tls_gateway(&up, &listener_tls(&cert, &key, ""));
    assert!(python_handshake(port, &ca.path(), "api.test", "")
        .expect("first")
        .starts_with("first "));
    // a kept-alive HTTP/1.1 connection over TLS, opened before the reload
    let mut open = Command::new("python3")
        .args([
            "-c",
            &format!(
                r#"
import socket, ssl, sys, time
ctx = ssl.create_default_context(cafile={ca:?})
raw = socket.create_connection(("127.0.0.1", {port}), timeout=10)
s = ctx.wrap_socket(raw, server_hostname="api.test")
def get(p):
    s.sendall(("GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % p).encode())
    data = b""
    while b"}}" not in data:
        data += s.recv(4096)
    return data.split(b" ")[1].decode()
print(get("/before"), flush=True)
sys.stdin.readline()
print(get("/after"), flush=True)
"#,
                ca = ca.path().display().to_string()
            ),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    let mut out = std::io::BufReader::new(open.stdout.take().expect("stdout"));
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).expect("read");
    assert_eq!(line.trim(), "200");

    // a bad file: refused, the first certificate stays
    std::fs::write(&cert, "broken").expect("write");
    gw.signal("HUP");
    let (second_cert, second_key) = ca.server("second", &["api.test"]);
    assert!(eventually(Duration::from_secs(5), || gw
        .metric("tollgate_config_reloads_total{result=\"error\"}")
        >= 1.0));
    assert!(python_handshake(port, &ca.path(), "api.test", "")
        .expect("after a refused reload")
        .starts_with("first "));
    // a good one: new connections get it
    std::fs::copy(&second_cert, &cert).expect("copy");
    std::fs::copy(&second_key, &key).expect("copy");
    gw.signal("HUP");
    assert!(
        eventually(Duration::from_secs(5), || python_handshake(
            port,
            &ca.path(),
            "api.test",
            ""
        )
        .is_ok_and(|cn| cn.starts_with("second "))),
        "new connections get the new certificate"
    );
    // and the connection opened before still works
    std::io::Write::write_all(open.stdin.as_mut().expect("stdin"), b"\n").expect("write");
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).expect("read");
    assert_eq!(line.trim(), "200", "the open connection was cut");
    let _ = open.wait();
}

#[test]
fn the_admin_listener_serves_over_tls() {
    let ca = Ca::new();
    let (cert, key) = ca.server("admin", &["admin.test"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let (proxy, admin, metrics) = (
        crate::harness::free_port(),
        crate::harness::free_port(),
        crate::harness::free_port(),
    );
    let config = dir.path().join("tollgate.yaml");
    std::fs::write(
        &config,
        format!(
            "server: {{ listen: [\"127.0.0.1:{proxy}\"] }}\nadmin:\n  listen: 127.0.0.1:{admin}\n  tls: {{ certificates: [{{ cert: {}, key: {} }}] }}\nmetrics: {{ listen: \"127.0.0.1:{metrics}\" }}\nstore: {{ url: \"sqlite://{}/t.db\" }}\nroutes:\n  - {{ name: r, match: {{ path: /r }}, respond: {{ status: 200 }}, auth: public }}\n",
            cert.display(),
            key.display(),
            dir.path().display()
        ),
    )
    .expect("write");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _gw = Kill(
        Command::new(crate::harness::bin())
            .args(["serve", "--config"])
            .arg(&config)
            .env("TOLLGATE_ADMIN_TOKEN", crate::harness::ADMIN_TOKEN)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn"),
    );
    let https = |path: &str, token: bool| -> (u16, String) {
        let mut cmd = Command::new("curl");
        cmd.args([
            "-sS",
            "--max-time",
            "5",
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
            "--cacert",
        ])
        .arg(ca.path())
        .args(["--resolve", &format!("admin.test:{admin}:127.0.0.1")]);
        if token {
            cmd.args([
                "-H",
                &format!("Authorization: Bearer {}", crate::harness::ADMIN_TOKEN),
            ]);
        }
        let out = cmd
            .arg(format!("https://admin.test:{admin}{path}"))
            .output()
            .expect("curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_string())
    };
    assert!(
        eventually(Duration::from_secs(20), || https("/readyz", false).0 == 200),
        "the admin listener answers over TLS"
    );
    let (code, body) = https("/admin/v1/clients", true);
    assert_eq!(code, 200, "{body}");
    assert_eq!(https("/admin/v1/clients", false).0, 401);
    // plain HTTP on the TLS admin port gets no answer
    assert_ne!(
        crate::harness::http_get(&format!("http://127.0.0.1:{admin}/readyz")).0,
        200
    );
}

#[test]
fn upstreams_are_reached_over_verified_tls_and_a_wrong_name_is_a_502() {
    let ca = Ca::new();
    let (cert, key) = ca.server("inner", &["inner.test"]);
    let tls_port = crate::harness::free_port();
    // the gateway's own TLS listener stands in for an HTTPS upstream: the
    // outer routes strip their prefix, and /inner answers directly
    let body = format!(
        r#"TLS_LISTENER: {tls_port}
{listener}services:
  good: {{ upstreams: ["127.0.0.1:{tls_port}"], tls: {{ sni: inner.test, ca: {ca} }} }}
  wrong_name: {{ upstreams: ["127.0.0.1:{tls_port}"], tls: {{ sni: other.test, ca: {ca} }} }}
  unverified: {{ upstreams: ["127.0.0.1:{tls_port}"], tls: {{ sni: other.test, verify: false }} }}
  system_roots: {{ upstreams: ["127.0.0.1:{tls_port}"], tls: {{ sni: inner.test }} }}
  h2: {{ upstreams: ["127.0.0.1:{tls_port}"], tls: {{ sni: inner.test, ca: {ca} }}, protocol: http2 }}
routes:
  - {{ name: inner, match: {{ path: /inner }}, respond: {{ status: 200, body: "from the TLS upstream" }}, auth: public }}
  - {{ name: good, match: {{ path_prefix: /good }}, service: good, strip_prefix: true, auth: public }}
  - {{ name: wrong, match: {{ path_prefix: /wrong }}, service: wrong_name, strip_prefix: true, auth: public }}
  - {{ name: unverified, match: {{ path_prefix: /unverified }}, service: unverified, strip_prefix: true, auth: public }}
  - {{ name: roots, match: {{ path_prefix: /roots }}, service: system_roots, strip_prefix: true, auth: public }}
  - {{ name: h2, match: {{ path_prefix: /h2 }}, service: h2, strip_prefix: true, auth: public }}
"#,
        listener = listener_tls(&cert, &key, ""),
        ca = ca.path().display()
    );
    let gw = Gateway::start(&body);
    for (path, status) in [
        ("/good/inner", 200),
        ("/h2/inner", 200),
        ("/unverified/inner", 200),
        ("/wrong/inner", 502),
        ("/roots/inner", 502),
    ] {
        let r = crate::harness::raw_get(gw.proxy, path);
        assert_eq!(r.status, status, "{path}: {} {}", r.head, r.body);
        if status == 200 {
            assert_eq!(r.body, "from the TLS upstream", "{path}");
        } else {
            assert_eq!(r.json()["error"], "bad_gateway", "{path}: {}", r.body);
        }
    }
    assert!(
        gw.logs()
            .contains("upstream TLS certificates are not verified"),
        "verify: false is warned about at start"
    );
}

/// Runs tests/grpc/echo.py with grpcio (scripts/test installs it).
fn grpc(args: &[&str]) -> std::process::Command {
    let mut cmd = Command::new("python3");
    cmd.arg(crate::harness::repo_path("tests/grpc/echo.py"))
        .args(args);
    cmd
}

#[test]
fn grpc_passes_with_its_trailers_and_refusals_are_grpc_statuses() {
    let probe = Command::new("python3")
        .args(["-c", "import grpc"])
        .status()
        .expect("python3");
    assert!(
        probe.success(),
        "grpcio is not installed: `python3 -m pip install --user grpcio` (scripts/test does)"
    );
    let port = crate::harness::free_port();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut server = grpc(&["server", &port.to_string()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("grpc server");
    let mut ready = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(server.stdout.take().expect("stdout")),
        &mut ready,
    )
    .expect("ready line");
    assert_eq!(ready.trim(), "ready");
    let _server = Kill(server);
    let gw = Gateway::start(&format!(
        r#"
plans:
  one: {{ rate: 1/min }}
services:
  echo: {{ upstreams: ["127.0.0.1:{port}"], protocol: http2 }}
routes:
  - {{ name: grpc, match: {{ path_prefix: /demo.Echo }}, service: echo, auth: [api_key] }}
"#
    ));
    let call = |key: Option<&str>| -> serde_json::Value {
        let mut args = vec!["call".to_string(), gw.proxy.to_string()];
        args.extend(key.map(str::to_string));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = grpc(&args).output().expect("grpc call");
        serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
            panic!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        })
    };
    let refused = call(None);
    assert_eq!(refused["code"], "UNAUTHENTICATED", "{refused}");
    assert_eq!(
        refused["message"], "this route needs a credential",
        "{refused}"
    );
    let admin = Admin::new(&gw);
    let client = admin.create_client(serde_json::json!({"name": "g", "auth_type": "api_key"}));
    let key = client["api_key"]["key"].as_str().expect("key");
    let denied = call(Some(key));
    assert_eq!(denied["code"], "PERMISSION_DENIED", "{denied}");
    let (s, v) = admin.post(
        "/subscriptions",
        serde_json::json!({"client_id": client["id"], "service": "echo", "plan": "one"}),
    );
    assert_eq!(s, 201, "{v}");
    let ok = call(Some(key));
    assert_eq!(ok["code"], "OK", "{ok}");
    assert_eq!(ok["reply"], "echo:hello", "{ok}");
    assert_eq!(ok["trailers"]["x-echo-trailer"], "kept", "{ok}");
    let limited = call(Some(key));
    assert_eq!(limited["code"], "RESOURCE_EXHAUSTED", "{limited}");
}
