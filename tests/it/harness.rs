//! Test harness: real upstream servers and real gateway processes on
//! 127.0.0.1, readiness by polling, teardown by guard. Every loop here is
//! bounded in count and time.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

/// A port that was free a moment ago (the gateway binds it by number).
///
/// Ports come from below the kernel's ephemeral range (32768 and up on
/// Linux) and each is handed out once per test process. Asking the kernel
/// for port 0 and releasing it is not enough: two calls can get the same
/// port back, and an outgoing connection can take it before the gateway
/// binds it.
pub fn free_port() -> u16 {
    use std::sync::atomic::AtomicU32;
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    // Where this process starts in the range, so that two test processes
    // at once are unlikely to walk over the same ports.
    let _ = NEXT.compare_exchange(
        u32::MAX,
        (std::process::id() * 397) % SPAN,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..SPAN {
        let port = (LOW + NEXT.fetch_add(1, Ordering::SeqCst) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {LOW}..{}", LOW + SPAN);
}

/// A port where nothing listens: bound then released.
pub fn closed_port() -> u16 {
    free_port()
}

#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub uri: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    }
    pub fn header_count(&self, name: &str) -> usize {
        self.headers.get_all(name).iter().count()
    }
}

#[derive(Clone)]
struct UpstreamState {
    name: String,
    seen: Arc<Mutex<Vec<Recorded>>>,
}

/// An HTTP upstream on 127.0.0.1:0 that records what it receives.
/// `/slow/MS` answers after MS milliseconds; `/status/N` answers N;
/// anything else answers 200 with `{"upstream": NAME, "uri": URI}`.
pub struct Upstream {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Recorded>>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Upstream {
    pub fn start(name: &str) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind upstream");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let state = UpstreamState {
            name: name.to_string(),
            seen: seen.clone(),
        };
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let app = axum::Router::new().fallback(record).with_state(state);
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = rx.await;
                    })
                    .await;
            });
        });
        Upstream {
            addr,
            seen,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }

    pub fn target(&self) -> String {
        self.addr.to_string()
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.seen.lock().map(|v| v.clone()).unwrap_or_default()
    }

    pub fn count(&self) -> usize {
        self.requests().len()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn record(State(state): State<UpstreamState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 16 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let uri = parts.uri.to_string();
    if let Ok(mut seen) = state.seen.lock() {
        seen.push(Recorded {
            method: parts.method.to_string(),
            uri: uri.clone(),
            headers: parts.headers.clone(),
            body,
        });
    }
    let path = parts.uri.path();
    if let Some(ms) = path
        .strip_prefix("/slow/")
        .and_then(|m| m.parse::<u64>().ok())
    {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if let Some(code) = path
        .strip_prefix("/status/")
        .and_then(|c| c.parse::<u16>().ok())
    {
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
        return (status, "status").into_response();
    }
    axum::Json(serde_json::json!({"upstream": state.name, "uri": uri})).into_response()
}

/// A `tollgate serve` process with its own config and ports.
pub struct Gateway {
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
    pub metrics: SocketAddr,
    pub dir: tempfile::TempDir,
    child: Option<Child>,
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_tollgate")
}

/// `tollgate check-config --config PATH`: (exit code, stdout, stderr).
pub fn check_config(path: &Path) -> (i32, String, String) {
    let out = Command::new(bin())
        .args(["check-config", "--config"])
        .arg(path)
        .output()
        .expect("run check-config");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub struct GatewayBuilder {
    body: String,
    extra_args: Vec<String>,
    env: BTreeMap<String, String>,
    store_url: Option<String>,
}

impl Gateway {
    /// `body` is YAML for everything but `server.listen`, `admin` and
    /// `metrics`, which the harness fills in; it may contain a `server:`
    /// block only via `SERVER_EXTRA` (indented lines placed under `server:`).
    pub fn builder(body: &str) -> GatewayBuilder {
        GatewayBuilder {
            body: body.to_string(),
            extra_args: Vec::new(),
            env: BTreeMap::new(),
            store_url: None,
        }
    }

    pub fn start(body: &str) -> Gateway {
        Self::builder(body).start()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.proxy, path)
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("stdout.log")
    }

    pub fn logs(&self) -> String {
        let out = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let err = std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default();
        format!("{out}{err}")
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([format!("-{sig}"), self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{sig} failed");
    }

    /// Wait (bounded) for the process to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// The configuration file the gateway was started with.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("tollgate.yaml")
    }

    /// Another process on the same ports with `config` and `args` (a
    /// graceful upgrade, say), not waited for; its logs in its own dir.
    pub fn spawn_beside(&self, config: &Path, args: &[&str]) -> Gateway {
        let dir = tempfile::tempdir().expect("tempdir");
        let stdout = std::fs::File::create(dir.path().join("stdout.log")).expect("log");
        let stderr = std::fs::File::create(dir.path().join("stderr.log")).expect("log");
        let child = Command::new(bin())
            .arg("serve")
            .arg("--config")
            .arg(config)
            .args(args)
            .env("TOLLGATE_ADMIN_TOKEN", ADMIN_TOKEN)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("spawn tollgate");
        Gateway {
            proxy: self.proxy,
            admin: self.admin,
            metrics: self.metrics,
            dir,
            child: Some(child),
        }
    }

    /// The status of `GET path` with `Authorization: Bearer token`; panics
    /// when no answer comes (a status of 0 could pass a `!=` check).
    pub fn bearer_status(&self, path: &str, token: &str) -> u16 {
        client()
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .map(|r| r.status().as_u16())
            .unwrap_or_else(|e| panic!("GET {path} with a bearer token: no answer: {e}"))
    }

    /// The status of `GET path` with the API key in `X-API-Key`; panics
    /// when no answer comes.
    pub fn key_status(&self, path: &str, key: &str) -> u16 {
        client()
            .get(self.url(path))
            .header("x-api-key", key)
            .send()
            .map(|r| r.status().as_u16())
            .unwrap_or_else(|e| panic!("GET {path} with an API key: no answer: {e}"))
    }

    /// The value of the series `series` (name and labels exactly as the
    /// exposition writes them, labels in name order); panics when the
    /// gateway does not export it, so no assertion passes because a series
    /// vanished.
    pub fn metric(&self, series: &str) -> f64 {
        let text = self.metrics_text();
        series_value(&text, series).unwrap_or_else(|| {
            let name = series.split('{').next().unwrap_or(series);
            let family: Vec<&str> = text.lines().filter(|l| l.starts_with(name)).collect();
            panic!("the gateway exports no series {series}; of {name} it has: {family:#?}")
        })
    }

    /// The value of `series`, or `None` while the gateway does not export it
    /// (a series that appears only once something happened).
    pub fn metric_opt(&self, series: &str) -> Option<f64> {
        series_value(&self.metrics_text(), series)
    }

    /// The metrics exposition; panics when the endpoint does not answer 200.
    pub fn metrics_text(&self) -> String {
        let (status, _, body) = http_get(&format!("http://{}/metrics", self.metrics));
        assert_eq!(status, 200, "the metrics endpoint did not answer: {body}");
        body
    }
}

/// The value of the line of `text` whose series (everything before the
/// value) is exactly `series`.
fn series_value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            (name == series).then_some(value)
        })
        .map(|v| {
            v.parse()
                .unwrap_or_else(|e| panic!("{series}: value {v:?} is not a number: {e}"))
        })
}

impl GatewayBuilder {
    pub fn arg(mut self, a: &str) -> Self {
        self.extra_args.push(a.to_string());
        self
    }

    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.insert(k.to_string(), v.to_string());
        self
    }

    /// A store of the test's choosing (shared by several gateways, or kept
    /// across a restart) instead of a fresh SQLite file.
    pub fn store(mut self, url: &str) -> Self {
        self.store_url = Some(url.to_string());
        self
    }

    /// Spawn without waiting for readiness; for start-up failures.
    pub fn run_to_exit(self, limit: Duration) -> (Option<i32>, String) {
        let mut gw = self.spawn();
        let status = gw.wait_exit(limit);
        (status.and_then(|s| s.code()), gw.logs())
    }

    pub fn start(self) -> Gateway {
        let mut gw = self.spawn();
        gw.wait_ready();
        gw
    }

    fn spawn(self) -> Gateway {
        let dir = tempfile::tempdir().expect("tempdir");
        let proxy: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let (server_extra, rest) = split_server_extra(&self.body);
        let (extra_listener, rest) = split_tls_listener(&rest);
        let store = self
            .store_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}/tollgate.db", dir.path().display()));
        let yaml = format!(
            "server:\n  listen:\n    - \"{proxy}\"\n{extra_listener}  shutdown_timeout: 10s\n{server_extra}admin:\n  listen: {admin}\nmetrics:\n  listen: {metrics}\nstore:\n  url: {store}\n{rest}"
        );
        let config = dir.path().join("tollgate.yaml");
        std::fs::write(&config, yaml).expect("write config");
        let stdout = std::fs::File::create(dir.path().join("stdout.log")).expect("log");
        let stderr = std::fs::File::create(dir.path().join("stderr.log")).expect("log");
        let mut cmd = Command::new(bin());
        cmd.arg("serve")
            .arg("--config")
            .arg(&config)
            .args(&self.extra_args)
            .env("TOLLGATE_ADMIN_TOKEN", ADMIN_TOKEN)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn tollgate");
        Gateway {
            proxy,
            admin,
            metrics,
            dir,
            child: Some(child),
        }
    }
}

/// `TLS_LISTENER: PORT` and the lines indented by six spaces under it
/// become a second proxy listener, `address: 127.0.0.1:PORT` with them.
fn split_tls_listener(body: &str) -> (String, String) {
    let mut listener = String::new();
    let mut rest = String::new();
    let mut inside = false;
    for line in body.lines() {
        if let Some(port) = line.strip_prefix("TLS_LISTENER: ") {
            listener.push_str(&format!("    - address: 127.0.0.1:{}\n", port.trim()));
            inside = true;
            continue;
        }
        if inside && line.starts_with("      ") {
            listener.push_str(line);
            listener.push('\n');
            continue;
        }
        inside = false;
        rest.push_str(line);
        rest.push('\n');
    }
    (listener, rest)
}

/// Lines of `body` under a leading `SERVER_EXTRA:` marker go under `server:`.
fn split_server_extra(body: &str) -> (String, String) {
    let mut extra = String::new();
    let mut rest = String::new();
    let mut in_extra = false;
    for line in body.lines() {
        if line.trim_end() == "SERVER_EXTRA:" {
            in_extra = true;
            continue;
        }
        if in_extra && line.starts_with("  ") {
            extra.push_str(line);
            extra.push('\n');
            continue;
        }
        in_extra = false;
        rest.push_str(line);
        rest.push('\n');
    }
    (extra, rest)
}

impl Gateway {
    fn wait_ready(&mut self) {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("gateway exited early with {status}:\n{}", self.logs());
                }
            }
            let admin_ok = http_get(&format!("http://{}/readyz", self.admin)).0 == 200;
            let proxy_ok =
                TcpStream::connect_timeout(&self.proxy, Duration::from_millis(200)).is_ok();
            if admin_ok && proxy_ok {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("gateway not ready within 20s:\n{}", self.logs());
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// GET returning (status, headers, body); status 0 when it failed.
pub fn http_get(url: &str) -> (u16, reqwest::header::HeaderMap, String) {
    match client().get(url).send() {
        Ok(r) => {
            let status = r.status().as_u16();
            let headers = r.headers().clone();
            (status, headers, r.text().unwrap_or_default())
        }
        Err(_) => (0, Default::default(), String::new()),
    }
}

/// A parsed raw HTTP/1.1 answer.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub head: String,
    pub body: String,
    /// The server closed the connection after answering.
    pub closed: bool,
}

impl RawResponse {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }
}

/// Send raw bytes, read one answer (bounded by `limit`), and note whether
/// the server then closed the connection.
pub fn raw_request(addr: SocketAddr, bytes: &[u8], limit: Duration) -> RawResponse {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect");
    s.set_read_timeout(Some(Duration::from_millis(200))).ok();
    s.write_all(bytes).expect("write");
    let start = Instant::now();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let mut closed = false;
    while start.elapsed() < limit {
        match s.read(&mut chunk) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                if response_complete(&buf) && start.elapsed() > Duration::from_millis(300) {
                    break;
                }
            }
            Err(_) => {
                closed = true;
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text.as_str(), ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    RawResponse {
        status,
        head: head.to_string(),
        body: body.to_string(),
        closed,
    }
}

fn response_complete(buf: &[u8]) -> bool {
    let text = String::from_utf8_lossy(buf);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    let len = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse::<usize>().ok())?
    });
    match len {
        Some(n) => body.len() >= n,
        None => true,
    }
}

/// A simple GET through raw bytes, for paths a URL library would rewrite.
pub fn raw_get(addr: SocketAddr, path: &str) -> RawResponse {
    let req = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    raw_request(addr, req.as_bytes(), Duration::from_secs(5))
}

/// Poll `f` until it returns true (bounded).
pub fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

pub fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

pub const ADMIN_TOKEN: &str = "test-admin-token";

/// JSON calls to a gateway's admin API.
pub struct Admin {
    base: String,
    token: String,
}

impl Admin {
    pub fn new(gw: &Gateway) -> Admin {
        Admin {
            base: format!("http://{}/admin/v1", gw.admin),
            token: ADMIN_TOKEN.to_string(),
        }
    }

    pub fn with_token(gw: &Gateway, token: &str) -> Admin {
        Admin {
            token: token.to_string(),
            ..Admin::new(gw)
        }
    }

    /// (status, JSON body or Null)
    pub fn call(&self, method: &str, path: &str, body: Option<&str>) -> (u16, serde_json::Value) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = client()
            .request(m, format!("{}{}", self.base, path))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let r = req.send().expect("admin call");
        let status = r.status().as_u16();
        let text = r.text().unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
        )
    }

    pub fn get(&self, path: &str) -> (u16, serde_json::Value) {
        self.call("GET", path, None)
    }

    pub fn post(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        self.call("POST", path, Some(&body.to_string()))
    }

    /// Create a client and return its JSON (asserting 201).
    pub fn create_client(&self, body: serde_json::Value) -> serde_json::Value {
        let (status, v) = self.post("/clients", body);
        assert_eq!(status, 201, "{v}");
        v
    }
}

/// A TCP relay to a service (PostgreSQL, say) that a test can cut, as if
/// the service went down: every open connection is reset and new ones are
/// refused until `restore`.
pub struct CutProxy {
    pub addr: SocketAddr,
    up: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<std::net::TcpStream>>>,
}

impl CutProxy {
    pub fn start(target: SocketAddr) -> CutProxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind relay");
        let addr = listener.local_addr().expect("relay addr");
        let up = Arc::new(AtomicBool::new(true));
        let conns: Arc<Mutex<Vec<std::net::TcpStream>>> = Arc::default();
        let (up2, conns2) = (up.clone(), conns.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if !up2.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(server) =
                    std::net::TcpStream::connect_timeout(&target, Duration::from_secs(2))
                else {
                    continue;
                };
                let mut registry = conns2.lock().unwrap();
                for s in [&client, &server] {
                    if let Ok(c) = s.try_clone() {
                        registry.push(c);
                    }
                }
                drop(registry);
                for (mut from, mut to) in [
                    (client.try_clone(), server.try_clone()),
                    (server.try_clone(), client.try_clone()),
                ]
                .into_iter()
                .filter_map(|(a, b)| Some((a.ok()?, b.ok()?)))
                {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        CutProxy { addr, up, conns }
    }

    /// Reset every connection and refuse new ones.
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }

    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}
