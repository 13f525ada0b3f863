//! The deployment assets under `deploy/` (Prometheus, Grafana, systemd,
//! Docker, Kubernetes), each checked by the tool that consumes it or against
//! a real gateway. A missing tool fails its test with the way to install it
//! (scripts/test installs them), except systemd-analyze, which a container
//! may not be able to have.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value as Json};
use serde_yaml::Value as Yaml;

use crate::harness::{
    bin, check_config, client, closed_port, eventually, free_port, http_get, repo_path, Admin,
    Gateway, Upstream,
};

// ---------------------------------------------------------------------------
// Helpers: files, tools, configurations

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo_path(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn yaml(rel: &str) -> Yaml {
    serde_yaml::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Run an external tool; a missing one fails with how to get it.
fn tool(program: &str, args: &[&str], dir: Option<&Path>) -> Output {
    let mut cmd = Command::new(program);
    cmd.args(args).stdin(Stdio::null());
    if let Some(d) = dir {
        cmd.current_dir(d);
    }
    match cmd.output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("`{program}` is not installed: {}", install_hint(program))
        }
        Err(e) => panic!("cannot run {program}: {e}"),
    }
}

fn install_hint(program: &str) -> &'static str {
    match program {
        "promtool" | "prometheus" => {
            "install the Debian package `prometheus` (scripts/test does, as root with apt-get)"
        }
        "kubernetes-validate" => {
            "`python3 -m pip install --user kubernetes-validate` (scripts/test does)"
        }
        _ => "install it and run again",
    }
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn assert_config_ok(path: &Path) {
    let (code, _, err) = check_config(path);
    assert_eq!(code, 0, "check-config {}: {err}", path.display());
}

fn get<'a>(v: &'a Yaml, path: &str) -> &'a Yaml {
    path.split('.')
        .fold(v, |v, k| v.get(k).unwrap_or(&Yaml::Null))
}

fn str_at<'a>(v: &'a Yaml, path: &str) -> &'a str {
    get(v, path)
        .as_str()
        .unwrap_or_else(|| panic!("`{path}` is not a string in {v:?}"))
}

fn secs(text: &str) -> u64 {
    humantime::parse_duration(text)
        .unwrap_or_else(|e| panic!("duration `{text}`: {e}"))
        .as_secs()
}

/// What a gateway configuration says about its process (defaults of
/// README's configuration reference where a key is absent).
struct GatewayShape {
    proxy: Vec<SocketAddr>,
    admin: SocketAddr,
    metrics: SocketAddr,
    token_env: String,
    pepper_env: String,
    shutdown_secs: u64,
}

impl GatewayShape {
    fn of(config: &Yaml) -> GatewayShape {
        let addr = |v: &Yaml, default: &str| -> SocketAddr {
            v.as_str()
                .unwrap_or(default)
                .parse()
                .unwrap_or_else(|e| panic!("listen address {v:?}: {e}"))
        };
        let proxy = match get(config, "server.listen").as_sequence() {
            Some(list) => list.iter().map(|v| addr(v, "")).collect(),
            None => vec![addr(&Yaml::Null, "127.0.0.1:8080")],
        };
        GatewayShape {
            proxy,
            admin: addr(get(config, "admin.listen"), "127.0.0.1:8081"),
            metrics: addr(get(config, "metrics.listen"), "127.0.0.1:9091"),
            token_env: get(config, "admin.token_env")
                .as_str()
                .unwrap_or("TOLLGATE_ADMIN_TOKEN")
                .to_string(),
            pepper_env: get(config, "store.pepper_env")
                .as_str()
                .unwrap_or("TOLLGATE_PEPPER")
                .to_string(),
            shutdown_secs: secs(
                get(config, "server.shutdown_timeout")
                    .as_str()
                    .unwrap_or("30s"),
            ),
        }
    }

    fn all(&self) -> Vec<SocketAddr> {
        let mut all = self.proxy.clone();
        all.extend([self.admin, self.metrics]);
        all
    }

    fn ports(&self) -> BTreeSet<u16> {
        self.all().iter().map(|a| a.port()).collect()
    }

    /// In a container or pod, a loopback listener is unreachable.
    fn assert_reachable_from_outside(&self, what: &str) {
        for a in self.all() {
            assert!(
                a.ip().is_unspecified(),
                "{what}: listener {a} must be on 0.0.0.0 (or ::) to be reachable"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// The metric families a real gateway exports

/// A gateway with a series in every family it can produce here: a proxied
/// route (requests, latencies), an API-key route called without a key (auth
/// failure) and twice with one (cache miss, then hit), and two external
/// issuers: one whose JWKS URL refuses connections (refresh error), one
/// whose JWKS is another gateway's (refresh ok).
struct Busy {
    gw: Gateway,
    _up: Upstream,
    _keys: Gateway,
    _ca: crate::tls::Ca,
}

fn busy_gateway() -> Busy {
    let up = Upstream::start("deploy");
    let keys = Gateway::start("");
    // a TLS listener, so that its certificate's expiry is exported
    let ca = crate::tls::Ca::new();
    let (cert, key) = ca.server("deploy", &["deploy.test"]);
    let body = format!(
        "TLS_LISTENER: {}\n{}auth:\n  issuers:\n    - {{ name: corp, issuer: \"https://idp.example.test\", jwks_url: \"http://127.0.0.1:{}/jwks\", audiences: [api], algorithms: [RS256] }}\n    - {{ name: peer, issuer: \"https://peer.example.test\", jwks_url: \"{}\", audiences: [api], algorithms: [ES256] }}\nservices:\n  up: {{ upstreams: [\"{}\"] }}\nplans:\n  tiny: {{ rate: 1/min }}\nroutes:\n  - {{ name: open, match: {{ path_prefix: /open }}, service: up, auth: public }}\n  - {{ name: keyed, match: {{ path_prefix: /keyed }}, service: up, auth: [api_key] }}\n",
        crate::harness::free_port(),
        crate::tls::listener_tls(&cert, &key, ""),
        closed_port(),
        keys.url("/.well-known/jwks.json"),
        up.target()
    );
    let gw = Gateway::start(&body);
    let c = client();
    for _ in 0..3 {
        assert_eq!(c.get(gw.url("/open/x")).send().unwrap().status(), 200);
    }
    assert_eq!(c.get(gw.url("/keyed/x")).send().unwrap().status(), 401);
    let created = Admin::new(&gw).create_client(json!({"name": "deploy", "auth_type": "api_key"}));
    let key = created["api_key"]["key"].as_str().expect("api key");
    let keyed = || {
        c.get(gw.url("/keyed/x"))
            .header("X-API-Key", key)
            .send()
            .unwrap()
            .status()
    };
    // not subscribed (403): the key is looked up all the same (miss, hit)
    assert_eq!(keyed(), 403);
    assert_eq!(keyed(), 403);
    let (status, _) = Admin::new(&gw).post(
        "/subscriptions",
        json!({"client_id": created["id"], "service": "up", "plan": "tiny"}),
    );
    assert_eq!(status, 201);
    // one request a minute: the second is rate limited
    assert_eq!(keyed(), 200);
    assert_eq!(keyed(), 429);
    assert!(
        eventually(Duration::from_secs(10), || {
            let text = gw.metrics_text();
            text.contains("tollgate_jwks_refresh_total{issuer=\"corp\",result=\"error\"}")
                && text.contains("tollgate_jwks_refresh_total{issuer=\"peer\",result=\"ok\"}")
        }),
        "JWKS refreshes not counted:\n{}",
        gw.metrics_text()
    );
    Busy {
        gw,
        _up: up,
        _keys: keys,
        _ca: ca,
    }
}

#[derive(Debug, Default)]
struct Family {
    kind: String,
    /// label name -> values seen
    labels: BTreeMap<String, BTreeSet<String>>,
}

/// Families of the text exposition format, with the labels of their samples.
fn families(exposition: &str) -> BTreeMap<String, Family> {
    let mut out: BTreeMap<String, Family> = BTreeMap::new();
    for line in exposition.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            if let (Some(name), Some(kind)) = (parts.next(), parts.next()) {
                out.entry(name.to_string()).or_default().kind = kind.to_string();
            }
        }
    }
    for line in exposition.lines().filter(|l| !l.starts_with('#')) {
        let tokens = tokenize(line);
        let Some(Tok::Ident(sample)) = tokens.first() else {
            continue;
        };
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .filter_map(|s| sample.strip_suffix(s))
            .find(|base| out.get(*base).is_some_and(|f| f.kind == "histogram"))
            .unwrap_or(sample.as_str())
            .to_string();
        if let Some(f) = out.get_mut(&family) {
            for (name, _, value) in matchers(&tokens[1..]) {
                f.labels.entry(name).or_default().insert(value);
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Just enough PromQL: metric selectors, their matchers, grouping labels

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Punct(char),
}

fn tokenize(expr: &str) -> Vec<Tok> {
    let mut toks = Vec::new();
    let mut chars = expr.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_whitespace() {
            continue;
        }
        if c == '"' || c == '\'' {
            let mut s = String::new();
            while let Some(d) = chars.next() {
                match d {
                    '\\' => s.extend(chars.next()),
                    d if d == c => break,
                    d => s.push(d),
                }
            }
            toks.push(Tok::Str(s));
        } else if c.is_ascii_alphanumeric() || c == '_' || c == ':' || c == '.' {
            let mut s = String::from(c);
            while let Some(&d) = chars.peek() {
                if d.is_ascii_alphanumeric() || d == '_' || d == ':' || d == '.' {
                    s.push(d);
                    chars.next();
                } else {
                    break;
                }
            }
            toks.push(Tok::Ident(s));
        } else {
            toks.push(Tok::Punct(c));
        }
    }
    toks
}

/// `{a="x", b=~"y"}` at the start of `toks` -> [(a, =, x), (b, =~, y)].
fn matchers(toks: &[Tok]) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    if toks.first() != Some(&Tok::Punct('{')) {
        return out;
    }
    let mut i = 1;
    while i < toks.len() && toks[i] != Tok::Punct('}') {
        if let Tok::Ident(name) = &toks[i] {
            let mut op = String::new();
            let mut j = i + 1;
            while let Some(Tok::Punct(p @ ('=' | '!' | '~'))) = toks.get(j) {
                op.push(*p);
                j += 1;
            }
            if let Some(Tok::Str(value)) = toks.get(j) {
                out.push((name.clone(), op, value.clone()));
                i = j;
            }
        }
        i += 1;
    }
    out
}

#[derive(Debug)]
struct Selector {
    metric: String,
    matchers: Vec<(String, String, String)>,
}

/// Every `tollgate_*` selector of an expression.
fn selectors(expr: &str) -> Vec<Selector> {
    let toks = tokenize(expr);
    toks.iter()
        .enumerate()
        .filter_map(|(i, t)| match t {
            Tok::Ident(name) if name.starts_with("tollgate_") => Some(Selector {
                metric: name.clone(),
                matchers: matchers(&toks[i + 1..]),
            }),
            _ => None,
        })
        .collect()
}

/// Labels named by `by`, `without`, `on`, `ignoring`, `group_left/right`.
fn grouping_labels(expr: &str) -> Vec<String> {
    let toks = tokenize(expr);
    let mut out = Vec::new();
    for (i, t) in toks.iter().enumerate() {
        let Tok::Ident(word) = t else { continue };
        let grouping = [
            "by",
            "without",
            "on",
            "ignoring",
            "group_left",
            "group_right",
        ];
        if !grouping.contains(&word.as_str()) || toks.get(i + 1) != Some(&Tok::Punct('(')) {
            continue;
        }
        for t in &toks[i + 2..] {
            match t {
                Tok::Ident(label) => out.push(label.clone()),
                Tok::Punct(')') => break,
                _ => {}
            }
        }
    }
    out
}

/// Checks one expression against the exported families: every metric
/// exists (a `_bucket`/`_sum`/`_count` only of a histogram), every matcher
/// names one of its labels (and an exact value one that occurs), every
/// grouping label belongs to one of the expression's metrics.
fn check_expr(expr: &str, live: &BTreeMap<String, Family>, problems: &mut Vec<String>) {
    // added by Prometheus at scrape time
    let target_labels = ["job", "instance"];
    let mut labels_in_expr: BTreeSet<String> =
        target_labels.iter().map(|s| s.to_string()).collect();
    for sel in selectors(expr) {
        let name = sel.metric.as_str();
        let (family, labels): (&str, BTreeMap<String, BTreeSet<String>>) =
            if let Some(f) = live.get(name) {
                (name, f.labels.clone())
            } else if let Some((base, f)) = ["_bucket", "_sum", "_count"].iter().find_map(|s| {
                let base = name.strip_suffix(s)?;
                live.get(base).map(|f| (base, f))
            }) {
                if f.kind != "histogram" {
                    problems.push(format!("`{name}`: {base} is a {}, not a histogram", f.kind));
                    continue;
                }
                let mut labels = f.labels.clone();
                if name.ends_with("_bucket") {
                    labels.entry("le".into()).or_default();
                }
                (base, labels)
            } else {
                problems.push(format!(
                    "`{name}` in `{expr}` is not exported by the gateway"
                ));
                continue;
            };
        for (label, op, value) in &sel.matchers {
            if target_labels.contains(&label.as_str()) {
                continue;
            }
            match labels.get(label) {
                None => problems.push(format!("{family} has no label `{label}` (in `{expr}`)")),
                Some(values) if op == "=" => {
                    if !values.contains(value) {
                        problems.push(format!(
                            "{family}{{{label}=\"{value}\"}}: the gateway exports the values {values:?}"
                        ));
                    }
                }
                Some(_) => {}
            }
        }
        labels_in_expr.extend(labels.into_keys());
    }
    for label in grouping_labels(expr) {
        if !labels_in_expr.contains(&label) {
            problems.push(format!(
                "grouping label `{label}` belongs to none of the metrics of `{expr}`"
            ));
        }
    }
}

fn dashboard() -> Json {
    serde_json::from_str(&read("deploy/grafana/tollgate.json")).expect("dashboard JSON")
}

fn dashboard_exprs(d: &Json) -> Vec<String> {
    let mut exprs = Vec::new();
    for p in d["panels"].as_array().expect("panels") {
        for t in p["targets"].as_array().into_iter().flatten() {
            if let Some(e) = t["expr"].as_str() {
                exprs.push(e.to_string());
            }
        }
    }
    exprs
}

struct Rule {
    alert: String,
    expr: String,
    labels: Yaml,
    annotations: Yaml,
}

fn alert_rules() -> Vec<Rule> {
    let doc = yaml("deploy/prometheus/tollgate-rules.yml");
    let mut rules = Vec::new();
    for g in get(&doc, "groups").as_sequence().expect("groups") {
        for r in get(g, "rules").as_sequence().expect("rules") {
            if let Some(alert) = get(r, "alert").as_str() {
                rules.push(Rule {
                    alert: alert.to_string(),
                    expr: str_at(r, "expr").to_string(),
                    labels: get(r, "labels").clone(),
                    annotations: get(r, "annotations").clone(),
                });
            }
        }
    }
    rules
}

// ---------------------------------------------------------------------------
// Prometheus

#[test]
fn promtool_accepts_the_config_and_rules_and_their_unit_tests_pass() {
    let dir = repo_path("deploy/prometheus");
    for args in [
        ["check", "config", "prometheus.yml"],
        ["check", "rules", "tollgate-rules.yml"],
        ["test", "rules", "tests.yml"],
    ] {
        let out = tool("promtool", &args, Some(&dir));
        assert!(
            out.status.success(),
            "promtool {}: {}",
            args.join(" "),
            text(&out)
        );
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            all.contains("SUCCESS"),
            "promtool {}: {all}",
            args.join(" ")
        );
    }
    // the config loads the rules file it ships with
    let config = yaml("deploy/prometheus/prometheus.yml");
    let rule_files: Vec<&str> = get(&config, "rule_files")
        .as_sequence()
        .expect("rule_files")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(rule_files, ["tollgate-rules.yml"]);
}

#[test]
fn alert_rules_cover_the_promised_signals_and_are_unit_tested() {
    let rules = alert_rules();
    for r in &rules {
        let severity = get(&r.labels, "severity").as_str().unwrap_or("");
        assert!(
            ["critical", "warning", "info"].contains(&severity),
            "{}: severity `{severity}`",
            r.alert
        );
        for a in ["summary", "description"] {
            let v = get(&r.annotations, a).as_str().unwrap_or("");
            assert!(!v.trim().is_empty(), "{}: no {a} annotation", r.alert);
        }
    }
    // each signal of the brief has an alert whose expression reads it
    let wanted = [
        ("tollgate_auth_failures_total", ""),
        ("tollgate_requests_total", "status=~\"5..\""),
        (
            "tollgate_upstream_duration_seconds_bucket",
            "histogram_quantile(0.99",
        ),
        ("tollgate_jwks_refresh_total", "result=\"error\""),
        ("tollgate_invalidation_lag_seconds_bucket", "> 2"),
        ("tollgate_rate_limited_total", "tollgate_requests_total"),
    ];
    for (metric, also) in wanted {
        assert!(
            rules
                .iter()
                .any(|r| r.expr.contains(metric) && r.expr.contains(also)),
            "no alert reads {metric} with `{also}`"
        );
    }
    // the revocation promise: 2 s at the 99th percentile, as the bucket
    // boundary of the histogram allows
    let lag = rules
        .iter()
        .find(|r| r.expr.contains("tollgate_invalidation_lag_seconds"))
        .expect("invalidation lag alert");
    assert!(lag.expr.contains("histogram_quantile(0.99"), "{}", lag.expr);
    let buckets = read("src/telemetry/metrics.rs");
    assert!(
        buckets.contains("1.5, 2.0, 3.0"),
        "the lag histogram has no 2 s bucket boundary"
    );

    // the promtool unit tests expect at least two distinct alerts to fire,
    // and every alert they name exists
    let tests = yaml("deploy/prometheus/tests.yml");
    let mut firing = BTreeSet::new();
    for t in get(&tests, "tests").as_sequence().expect("tests") {
        for case in get(t, "alert_rule_test")
            .as_sequence()
            .into_iter()
            .flatten()
        {
            let name = str_at(case, "alertname");
            assert!(
                rules.iter().any(|r| r.alert == name),
                "tests.yml names unknown alert {name}"
            );
            if get(case, "exp_alerts")
                .as_sequence()
                .is_some_and(|a| !a.is_empty())
            {
                firing.insert(name.to_string());
            }
        }
    }
    assert!(
        firing.len() >= 2,
        "tests.yml proves too few alerts fire: {firing:?}"
    );

    // `job` matchers name the scrape job of prometheus.yml
    let config = yaml("deploy/prometheus/prometheus.yml");
    let jobs: BTreeSet<&str> = get(&config, "scrape_configs")
        .as_sequence()
        .expect("scrape_configs")
        .iter()
        .map(|s| str_at(s, "job_name"))
        .collect();
    for r in &rules {
        let toks = tokenize(&r.expr);
        for (i, t) in toks.iter().enumerate() {
            if matches!(t, Tok::Ident(_)) {
                for (label, _, value) in matchers(&toks[i + 1..]) {
                    if label == "job" {
                        assert!(jobs.contains(value.as_str()), "{}: job `{value}`", r.alert);
                    }
                }
            }
        }
    }
}

/// Kills and reaps a child process when dropped.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_real_prometheus_scrapes_a_gateway_with_the_shipped_config_and_rules() {
    let busy = busy_gateway();
    let dir = tempfile::tempdir().unwrap();

    // the shipped config, pointed at this gateway and scraping every second
    let mut config = yaml("deploy/prometheus/prometheus.yml");
    let global = config
        .get_mut("global")
        .and_then(|g| g.as_mapping_mut())
        .expect("global");
    global.insert("scrape_interval".into(), "1s".into());
    global.insert("evaluation_interval".into(), "1s".into());
    let rules = repo_path("deploy/prometheus/tollgate-rules.yml");
    config["rule_files"] = Yaml::Sequence(vec![rules.display().to_string().into()]);
    let jobs = config
        .get_mut("scrape_configs")
        .and_then(|s| s.as_sequence_mut())
        .expect("scrape_configs");
    let job = jobs
        .iter_mut()
        .find(|j| get(j, "job_name").as_str() == Some("tollgate"))
        .expect("a `tollgate` scrape job");
    assert_eq!(
        get(job, "metrics_path").as_str().unwrap_or("/metrics"),
        "/metrics"
    );
    let target = busy.gw.metrics.to_string();
    job["static_configs"] =
        serde_yaml::from_str(&format!("[{{targets: [\"{target}\"]}}]")).unwrap();
    let config_path = dir.path().join("prometheus.yml");
    std::fs::write(&config_path, serde_yaml::to_string(&config).unwrap()).unwrap();

    let port = free_port();
    let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config_path.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn();
    let mut prometheus = match child {
        Ok(c) => Reaped(c),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!(
                "`prometheus` is not installed: {}",
                install_hint("prometheus")
            )
        }
        Err(e) => panic!("cannot start prometheus: {e}"),
    };
    let logs = || std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default();
    let api = |path: &str| -> Json {
        let (status, _, body) = http_get(&format!("http://127.0.0.1:{port}{path}"));
        if status == 200 {
            serde_json::from_str(&body).unwrap_or(Json::Null)
        } else {
            Json::Null
        }
    };

    let mut series = Json::Null;
    let scraped = eventually(Duration::from_secs(30), || {
        if let Ok(Some(status)) = prometheus.0.try_wait() {
            panic!("prometheus exited with {status}:\n{}", logs());
        }
        series = api("/api/v1/query?query=tollgate_requests_total");
        series["data"]["result"]
            .as_array()
            .is_some_and(|r| !r.is_empty())
    });
    assert!(
        scraped,
        "no tollgate_requests_total in Prometheus within 30s:\n{}",
        logs()
    );
    let first = &series["data"]["result"][0]["metric"];
    assert_eq!(first["job"], "tollgate", "{series}");
    assert_eq!(first["instance"], target.as_str(), "{series}");
    assert!(first["route"].is_string(), "{series}");

    // every alert rule loads and evaluates without error on real series
    let rule_count = alert_rules().len();
    let mut state = Json::Null;
    let healthy = eventually(Duration::from_secs(30), || {
        state = api("/api/v1/rules");
        let rules: Vec<&Json> = state["data"]["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().into_iter().flatten())
            .collect();
        rules.len() == rule_count && rules.iter().all(|r| r["health"] == "ok")
    });
    assert!(
        healthy,
        "rules not all loaded and healthy: {state}\n{}",
        logs()
    );
}

// ---------------------------------------------------------------------------
// Grafana, and the metric names of dashboard and alerts

#[test]
fn dashboard_and_alerts_only_use_metrics_the_gateway_exports() {
    let busy = busy_gateway();
    let live = families(&busy.gw.metrics_text());
    for name in [
        "tollgate_requests_total",
        "tollgate_request_duration_seconds",
        "tollgate_upstream_duration_seconds",
        "tollgate_auth_failures_total",
        "tollgate_cache_lookups_total",
        "tollgate_jwks_refresh_total",
        "tollgate_tokens_issued_total",
        "tollgate_config_reloads_total",
        "tollgate_invalidation_lag_seconds",
    ] {
        assert!(live.contains_key(name), "the busy gateway shows no {name}");
    }
    let mut problems = Vec::new();
    let d = dashboard();
    let mut exprs = dashboard_exprs(&d);
    exprs.extend(alert_rules().into_iter().map(|r| r.expr));
    let mut used = BTreeSet::new();
    for e in &exprs {
        check_expr(e, &live, &mut problems);
        used.extend(selectors(e).into_iter().map(|s| s.metric));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(used.len() >= 10, "suspiciously few metrics found: {used:?}");
}

#[test]
fn metric_checks_catch_wrong_names_labels_and_values() {
    // the checker above must be able to fail
    let exposition = "# TYPE tollgate_x_total counter\ntollgate_x_total{result=\"hit\"} 1\n# TYPE tollgate_h_seconds histogram\ntollgate_h_seconds_bucket{service=\"s\",le=\"+Inf\"} 1\ntollgate_h_seconds_sum{service=\"s\"} 1\ntollgate_h_seconds_count{service=\"s\"} 1\n";
    let live = families(exposition);
    let problems = |e: &str| {
        let mut p = Vec::new();
        check_expr(e, &live, &mut p);
        p
    };
    assert!(problems(
        "sum by (result) (rate(tollgate_x_total{result=\"hit\", job=~\"$job\"}[5m]))"
    )
    .is_empty());
    assert!(problems(
        "histogram_quantile(0.99, sum by (service, le) (rate(tollgate_h_seconds_bucket[5m])))"
    )
    .is_empty());
    assert_eq!(problems("rate(tollgate_y_total[5m])").len(), 1);
    assert_eq!(
        problems("rate(tollgate_x_total{reason=\"a\"}[5m])").len(),
        1
    );
    assert_eq!(
        problems("rate(tollgate_x_total{result=\"hits\"}[5m])").len(),
        1
    );
    assert_eq!(
        problems("sum by (route) (rate(tollgate_x_total[5m]))").len(),
        1
    );
    assert_eq!(problems("rate(tollgate_x_total_bucket[5m])").len(), 1);
}

#[test]
fn dashboard_has_the_panels_and_one_datasource_variable() {
    let d = dashboard();
    let schema = d["schemaVersion"].as_u64().unwrap_or(0);
    assert!((36..=41).contains(&schema), "schemaVersion {schema}");
    assert!(d["uid"].is_string() && d["title"].is_string());

    let panels = d["panels"].as_array().expect("panels");
    let titles: BTreeSet<&str> = panels.iter().filter_map(|p| p["title"].as_str()).collect();
    for wanted in [
        "Traffic by route and status",
        "Request latency (p50, p90, p99)",
        "Upstream latency p99 by service",
        "Auth failures by reason",
        "Cache hit ratio",
        "Rate-limited requests by service and plan",
        "Invalidation lag (p50, p99)",
        "Config reloads",
        "Tokens issued",
        "JWKS refresh by result",
    ] {
        assert!(titles.contains(wanted), "no panel `{wanted}`: {titles:?}");
    }
    let ids: BTreeSet<u64> = panels.iter().filter_map(|p| p["id"].as_u64()).collect();
    assert_eq!(ids.len(), panels.len(), "panel ids must be unique");

    // what each panel shows
    let exprs_of = |title: &str| -> String {
        let p = panels.iter().find(|p| p["title"] == title).expect("panel");
        dashboard_exprs(&json!({"panels": [p]})).join("\n")
    };
    let latency = exprs_of("Request latency (p50, p90, p99)");
    for q in ["0.5", "0.9", "0.99"] {
        assert!(
            latency.contains(&format!("histogram_quantile({q}, "))
                && latency.contains("tollgate_request_duration_seconds_bucket"),
            "{latency}"
        );
    }
    let hits = exprs_of("Cache hit ratio");
    assert!(
        hits.contains("tollgate_cache_lookups_total{")
            && hits.contains("result=\"hit\"")
            && hits.contains(" / "),
        "{hits}"
    );
    let traffic = exprs_of("Traffic by route and status");
    assert!(
        grouping_labels(&traffic) == ["route", "status"],
        "{traffic}"
    );

    // one data source variable, and every panel, query and variable uses it
    let vars = d["templating"]["list"].as_array().expect("templating");
    let ds: Vec<&Json> = vars.iter().filter(|v| v["type"] == "datasource").collect();
    assert_eq!(ds.len(), 1, "one datasource variable");
    assert_eq!(ds[0]["query"], "prometheus");
    let uid = format!("${{{}}}", ds[0]["name"].as_str().expect("name"));
    let mut users: Vec<(String, &Json)> = Vec::new();
    for p in panels {
        let title = p["title"].as_str().unwrap_or("?");
        users.push((format!("panel {title}"), &p["datasource"]));
        for t in p["targets"].as_array().into_iter().flatten() {
            users.push((format!("a query of {title}"), &t["datasource"]));
        }
    }
    for v in vars.iter().filter(|v| v["type"] == "query") {
        users.push((format!("variable {}", v["name"]), &v["datasource"]));
    }
    for (who, ds) in users {
        assert_eq!(ds["type"], "prometheus", "{who}: {ds}");
        assert_eq!(ds["uid"], uid.as_str(), "{who}: {ds}");
    }
    // variables used in expressions are defined
    let names: BTreeSet<&str> = vars.iter().filter_map(|v| v["name"].as_str()).collect();
    for e in dashboard_exprs(&d) {
        for word in e.split('$').skip(1) {
            let var: String = word
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            assert!(
                var.starts_with("__") || names.contains(var.as_str()),
                "`${var}` is not a dashboard variable: {e}"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// systemd

/// (section, key, value) of a unit file, in order.
fn unit_directives(unit: &str) -> Vec<(String, String, String)> {
    let mut section = String::new();
    let mut out = Vec::new();
    for line in unit.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = s.to_string();
        } else if let Some((k, v)) = line.split_once('=') {
            out.push((section.clone(), k.trim().to_string(), v.trim().to_string()));
        }
    }
    out
}

/// The values of `key` in [Service].
fn unit_values<'a>(directives: &'a [(String, String, String)], key: &str) -> Vec<&'a str> {
    directives
        .iter()
        .filter(|(s, k, _)| s == "Service" && k == key)
        .map(|(_, _, v)| v.as_str())
        .collect()
}

fn unit_one<'a>(directives: &'a [(String, String, String)], key: &str) -> &'a str {
    match unit_values(directives, key).as_slice() {
        [v] => v,
        other => panic!("[Service] {key}: expected one value, found {other:?}"),
    }
}

#[test]
fn systemd_unit_is_hardened_and_matches_the_gateway() {
    let unit = read("deploy/systemd/tollgate.service");
    let directives = unit_directives(&unit);
    let service = |key: &str| unit_values(&directives, key);
    let one = |key: &str| unit_one(&directives, key);
    assert_eq!(one("User"), "tollgate");
    assert_eq!(one("Group"), "tollgate");
    assert_eq!(one("EnvironmentFile"), "/etc/tollgate/tollgate.env");
    assert_eq!(one("ExecReload"), "/bin/kill -HUP $MAINPID");
    assert_eq!(one("ProtectSystem"), "strict");
    assert_eq!(one("NoNewPrivileges"), "yes");
    assert_eq!(one("PrivateTmp"), "yes");
    assert_eq!(one("ProtectHome"), "yes");
    assert_eq!(
        one("CapabilityBoundingSet"),
        "",
        "no capabilities unless binding < 1024"
    );
    assert_eq!(one("LimitNOFILE"), "65536");
    assert_eq!(one("Restart"), "on-failure");
    assert_eq!(one("KillSignal"), "SIGTERM");
    let families: BTreeSet<&str> = one("RestrictAddressFamilies").split_whitespace().collect();
    assert_eq!(families, BTreeSet::from(["AF_INET", "AF_INET6", "AF_UNIX"]));
    assert!(service("SystemCallFilter").contains(&"@system-service"));
    assert!(
        unit.contains("AmbientCapabilities=CAP_NET_BIND_SERVICE"),
        "document the <1024 option"
    );

    // ExecStart runs `serve` on the installed config, pid file in the
    // runtime directory; the state directory is writable and holds the store
    let exec = one("ExecStart");
    let args: Vec<&str> = exec.split_whitespace().collect();
    assert_eq!(args[..2], ["/usr/local/bin/tollgate", "serve"], "{exec}");
    let arg = |flag: &str| -> String {
        args.iter()
            .position(|a| *a == flag)
            .and_then(|i| args.get(i + 1))
            .unwrap_or_else(|| panic!("ExecStart has no {flag}: {exec}"))
            .to_string()
    };
    assert_eq!(arg("--config"), "/etc/tollgate/tollgate.yaml");
    let runtime = one("RuntimeDirectory");
    assert!(
        arg("--pid-file").starts_with(&format!("/run/{runtime}/")),
        "the pid file must be in RuntimeDirectory"
    );
    let state = format!("/var/lib/{}", one("StateDirectory"));
    assert!(service("ReadWritePaths").contains(&state.as_str()));

    // the config the unit's comment installs: its store lives in the state
    // directory, and systemd waits longer than the gateway drains
    assert!(unit.contains("deploy/config/tollgate.container.yaml /etc/tollgate/tollgate.yaml"));
    let config = yaml("deploy/config/tollgate.container.yaml");
    let store = str_at(&config, "store.url");
    assert!(
        store.starts_with(&format!("sqlite://{state}/")),
        "store {store} outside {state}"
    );
    let stop = secs(one("TimeoutStopSec"));
    let drain = GatewayShape::of(&config).shutdown_secs;
    assert!(
        stop > drain && stop <= drain + 30,
        "TimeoutStopSec {stop}s should be a little above shutdown_timeout {drain}s"
    );

    // systemd's own checks, on a copy that runs the binary built here
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("tollgate.service");
    std::fs::write(&copy, unit.replace("/usr/local/bin/tollgate", bin())).unwrap();
    let copy_arg = copy.display().to_string();
    let verify = match Command::new("systemd-analyze")
        .args(["verify", copy_arg.as_str()])
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("SKIPPED systemd-analyze checks: systemd-analyze is not installed");
            return;
        }
        Err(e) => panic!("systemd-analyze: {e}"),
    };
    let stderr = String::from_utf8_lossy(&verify.stderr);
    let about_unit: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("tollgate.service"))
        .collect();
    assert!(
        verify.status.success() && about_unit.is_empty(),
        "systemd-analyze verify: {}",
        text(&verify)
    );
    // exposure 2.0 or less ("OK" in systemd's words)
    let security = tool(
        "systemd-analyze",
        &[
            "security",
            "--offline=true",
            "--threshold=20",
            "--no-pager",
            copy_arg.as_str(),
        ],
        None,
    );
    assert!(
        security.status.success(),
        "systemd-analyze security: {}",
        text(&security)
    );
}

#[test]
fn unit_parser_sees_sections_and_empty_values() {
    let d = unit_directives("[Unit]\nA=1\n# B=2\n[Service]\nCapabilityBoundingSet=\nX = y z\n");
    assert_eq!(
        d,
        [
            ("Unit".into(), "A".into(), "1".into()),
            (
                "Service".into(),
                "CapabilityBoundingSet".into(),
                String::new()
            ),
            ("Service".into(), "X".into(), "y z".into()),
        ]
    );
}

// ---------------------------------------------------------------------------
// Docker

#[derive(Debug)]
struct Instr {
    cmd: String,
    args: String,
}

/// The stages of a Dockerfile, each a list of instructions (continuation
/// lines joined, comments dropped).
fn docker_stages(text: &str) -> Vec<Vec<Instr>> {
    let mut logical = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('#') || (t.is_empty() && current.is_empty()) {
            continue;
        }
        match t.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(t);
                logical.push(std::mem::take(&mut current));
            }
        }
    }
    let mut stages: Vec<Vec<Instr>> = Vec::new();
    for l in logical.iter().filter(|l| !l.trim().is_empty()) {
        let l = l.trim();
        let (cmd, args) = l.split_once(char::is_whitespace).unwrap_or((l, ""));
        let instr = Instr {
            cmd: cmd.to_ascii_uppercase(),
            args: args.split_whitespace().collect::<Vec<_>>().join(" "),
        };
        if instr.cmd == "FROM" {
            stages.push(Vec::new());
        }
        if let Some(stage) = stages.last_mut() {
            stage.push(instr);
        }
    }
    stages
}

fn instrs<'a>(stage: &'a [Instr], cmd: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    stage
        .iter()
        .filter(move |i| i.cmd == cmd)
        .map(|i| i.args.as_str())
}

#[test]
fn dockerfile_builds_locked_and_runs_non_root_on_a_container_config() {
    let stages = docker_stages(&read("deploy/Dockerfile"));
    assert!(stages.len() >= 2, "multi-stage: {} stage(s)", stages.len());
    let builder = &stages[0];
    let from: Vec<&str> = instrs(builder, "FROM").next().unwrap().split(' ').collect();
    assert!(
        from[0].starts_with("rust:") && from[0].contains("bookworm"),
        "{from:?}"
    );
    let builder_name = match from.as_slice() {
        [_, as_, name] if as_.eq_ignore_ascii_case("as") => *name,
        _ => panic!("the build stage needs a name: FROM {from:?}"),
    };
    let runs: Vec<&str> = instrs(builder, "RUN").collect();
    assert!(
        runs.iter()
            .any(|r| r.contains("apt-get install") && r.contains("cmake")),
        "Pingora needs cmake: {runs:?}"
    );
    let build = runs
        .iter()
        .find(|r| r.contains("cargo build"))
        .expect("a cargo build");
    for flag in ["--release", "--locked", "--bin tollgate"] {
        assert!(build.contains(flag), "cargo build without {flag}: {build}");
    }

    let runtime = stages.last().unwrap();
    let base = instrs(runtime, "FROM").next().unwrap();
    assert!(
        base.starts_with("gcr.io/distroless/cc-debian12")
            || base.starts_with("debian:bookworm-slim"),
        "{base}"
    );
    let user = instrs(runtime, "USER")
        .last()
        .expect("USER in the runtime stage");
    let uid = user.split(':').next().unwrap();
    assert!(
        !["root", "0", ""].contains(&uid),
        "runs as root: USER {user}"
    );

    // the binary the entrypoint runs is the one copied from the builder,
    // on the config copied into the image
    let entry: Vec<String> =
        serde_json::from_str(instrs(runtime, "ENTRYPOINT").last().expect("ENTRYPOINT"))
            .expect("ENTRYPOINT in exec (JSON) form, so that SIGTERM reaches the gateway");
    assert_eq!(entry[1..3], ["serve", "--config"], "{entry:?}");
    let copies: Vec<Vec<&str>> = instrs(runtime, "COPY")
        .map(|c| c.split(' ').collect())
        .collect();
    let from_builder = format!("--from={builder_name}");
    assert!(
        copies
            .iter()
            .any(|c| c.contains(&from_builder.as_str()) && c.last() == Some(&entry[0].as_str())),
        "{} is not copied from the build stage: {copies:?}",
        entry[0]
    );
    let config_src = copies
        .iter()
        .find(|c| {
            c.last() == Some(&entry[3].as_str()) && !c.iter().any(|a| a.starts_with("--from"))
        })
        .and_then(|c| c.iter().rev().nth(1))
        .unwrap_or_else(|| panic!("nothing copies {} from the repository", entry[3]));
    let config_path = repo_path(config_src);
    assert_config_ok(&config_path);

    let config: Yaml = serde_yaml::from_str(&read(config_src)).unwrap();
    let shape = GatewayShape::of(&config);
    shape.assert_reachable_from_outside(config_src);
    let exposed: BTreeSet<u16> = instrs(runtime, "EXPOSE")
        .flat_map(|e| e.split(' '))
        .map(|p| p.trim_end_matches("/tcp").parse().expect("port"))
        .collect();
    assert_eq!(exposed, shape.ports(), "EXPOSE vs the config's listeners");
    // the SQLite store is on a volume, so data outlives the container
    let store = str_at(&config, "store.url");
    let volumes: Vec<String> = instrs(runtime, "VOLUME")
        .flat_map(|v| {
            serde_json::from_str::<Vec<String>>(v).unwrap_or_else(|_| vec![v.to_string()])
        })
        .collect();
    assert!(
        volumes
            .iter()
            .any(|v| store.starts_with(&format!("sqlite://{}/", v.trim_end_matches('/')))),
        "store {store} is on none of the volumes {volumes:?}"
    );

    // the build context leaves out build output and local data, and keeps
    // what the build reads
    let ignore = read(".dockerignore");
    let ignored: BTreeSet<&str> = ignore
        .lines()
        .map(|l| l.trim().trim_matches('/'))
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    for must in ["target", "data"] {
        assert!(ignored.contains(must), ".dockerignore lacks {must}");
    }
    for kept in [
        "src",
        "Cargo.lock",
        "Cargo.toml",
        "migrations",
        "deploy",
        "benches",
        "*",
    ] {
        assert!(
            !ignored.contains(kept),
            ".dockerignore drops {kept}, which the build needs"
        );
    }
}

#[test]
fn container_config_serves_the_shipped_routes() {
    let shipped = yaml("config/tollgate.yaml");
    let container = yaml("deploy/config/tollgate.container.yaml");
    for section in ["routes", "plans"] {
        assert_eq!(
            get(&container, section),
            get(&shipped, section),
            "{section} differ from config/tollgate.yaml"
        );
    }
    let names = |v: &Yaml| -> Vec<String> {
        get(v, "services")
            .as_mapping()
            .map(|m| {
                m.keys()
                    .filter_map(|k| k.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(names(&container), names(&shipped));
}

#[test]
fn every_config_under_deploy_config_checks() {
    let mut seen = 0;
    for entry in std::fs::read_dir(repo_path("deploy/config")).expect("deploy/config") {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            assert_config_ok(&p);
            seen += 1;
        }
    }
    assert!(seen >= 1);
}

#[test]
fn dockerfile_parser_joins_lines_and_splits_stages() {
    let stages = docker_stages("# c\nFROM a AS b\nRUN x \\\n  # inside\n  y\n\nfrom c\nUSER 1\n");
    assert_eq!(stages.len(), 2);
    assert_eq!(stages[0][1].args, "x y");
    assert_eq!(stages[1][0].cmd, "FROM");
    assert_eq!(instrs(&stages[1], "USER").collect::<Vec<_>>(), ["1"]);
}

// ---------------------------------------------------------------------------
// Kubernetes

/// Every manifest document under deploy/kubernetes, by file.
fn manifests() -> Vec<(String, Yaml)> {
    let dir = repo_path("deploy/kubernetes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("deploy/kubernetes")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    let mut docs = Vec::new();
    for f in files {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&f).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let v = Yaml::deserialize(doc).unwrap_or_else(|e| panic!("{name}: {e}"));
            if !v.is_null() {
                docs.push((name.clone(), v));
            }
        }
    }
    docs
}

fn of_kind<'a>(docs: &'a [(String, Yaml)], kind: &str) -> Vec<&'a Yaml> {
    docs.iter()
        .filter(|(_, d)| get(d, "kind").as_str() == Some(kind))
        .map(|(_, d)| d)
        .collect()
}

fn only<'a>(docs: &'a [(String, Yaml)], kind: &str) -> &'a Yaml {
    match of_kind(docs, kind).as_slice() {
        [one] => one,
        other => panic!("expected one {kind}, found {}", other.len()),
    }
}

fn string_map(v: &Yaml) -> BTreeMap<String, String> {
    v.as_mapping()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.as_str()?.to_string(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The config the Deployment runs: the ConfigMap key at the mount path
/// its `--config` argument names.
fn deployed_config(docs: &[(String, Yaml)]) -> (String, Yaml) {
    let pod = get(only(docs, "Deployment"), "spec.template.spec");
    let container = &get(pod, "containers").as_sequence().expect("containers")[0];
    let argv: Vec<&str> = get(container, "command")
        .as_sequence()
        .into_iter()
        .chain(get(container, "args").as_sequence())
        .flatten()
        .filter_map(|v| v.as_str())
        .collect();
    let path = argv
        .iter()
        .position(|a| *a == "--config")
        .and_then(|i| argv.get(i + 1))
        .unwrap_or_else(|| panic!("no --config in {argv:?}"));
    let (mount_dir, key) = path.rsplit_once('/').expect("an absolute path");
    let mount = get(container, "volumeMounts")
        .as_sequence()
        .expect("volumeMounts")
        .iter()
        .find(|m| str_at(m, "mountPath").trim_end_matches('/') == mount_dir)
        .unwrap_or_else(|| panic!("nothing is mounted at {mount_dir}"));
    let volume = get(pod, "volumes")
        .as_sequence()
        .expect("volumes")
        .iter()
        .find(|v| get(v, "name") == get(mount, "name"))
        .expect("the mounted volume");
    let cm_name = str_at(volume, "configMap.name");
    let cm = of_kind(docs, "ConfigMap")
        .into_iter()
        .find(|c| str_at(c, "metadata.name") == cm_name)
        .unwrap_or_else(|| panic!("no ConfigMap {cm_name}"));
    let text = get(cm, "data")
        .get(key)
        .and_then(|v| v.as_str())
        .unwrap_or_else(|| panic!("ConfigMap {cm_name} has no key {key}"))
        .to_string();
    let parsed = serde_yaml::from_str(&text).expect("the ConfigMap's config is YAML");
    (text, parsed)
}

#[test]
fn kubernetes_manifests_fit_the_gateway() {
    let docs = manifests();
    let deployment = only(&docs, "Deployment");
    assert_eq!(get(deployment, "spec.replicas").as_u64(), Some(3));
    let pod_labels = string_map(get(deployment, "spec.template.metadata.labels"));
    assert!(selects(
        &string_map(get(deployment, "spec.selector.matchLabels")),
        &pod_labels
    ));
    let pod = get(deployment, "spec.template.spec");
    let containers = get(pod, "containers").as_sequence().expect("containers");
    assert_eq!(containers.len(), 1);
    let c = &containers[0];

    let (_, config) = deployed_config(&docs);
    let shape = GatewayShape::of(&config);
    shape.assert_reachable_from_outside("the ConfigMap's config");
    assert!(
        str_at(&config, "store.url").starts_with("postgres://"),
        "replicas share a store"
    );
    assert!(
        str_at(&config, "redis.url").starts_with("redis://"),
        "and rate-limit counters"
    );

    // container ports are exactly the listeners; probes hit the admin port
    let ports: BTreeMap<String, u16> = get(c, "ports")
        .as_sequence()
        .expect("ports")
        .iter()
        .map(|p| {
            (
                get(p, "name").as_str().unwrap_or("").to_string(),
                get(p, "containerPort").as_u64().expect("containerPort") as u16,
            )
        })
        .collect();
    assert_eq!(
        ports.values().copied().collect::<BTreeSet<_>>(),
        shape.ports(),
        "container ports vs the config's listeners"
    );
    let resolve = |port: &Yaml| -> u16 {
        match port {
            Yaml::Number(n) => n.as_u64().expect("port") as u16,
            Yaml::String(name) => *ports
                .get(name)
                .unwrap_or_else(|| panic!("no container port named {name}")),
            other => panic!("port {other:?}"),
        }
    };
    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        let http = get(get(c, probe), "httpGet");
        assert_eq!(get(http, "path").as_str(), Some(path), "{probe}");
        assert_eq!(
            resolve(get(http, "port")),
            shape.admin.port(),
            "{probe} port"
        );
    }

    // the secret holds the variables the config names
    let secret = only(&docs, "Secret");
    let from: Vec<&str> = get(c, "envFrom")
        .as_sequence()
        .expect("envFrom")
        .iter()
        .filter_map(|e| get(e, "secretRef.name").as_str())
        .collect();
    assert_eq!(from, [str_at(secret, "metadata.name")]);
    let values = string_map(get(secret, "stringData"));
    for var in [&shape.token_env, &shape.pepper_env] {
        let v = values
            .get(var.as_str())
            .unwrap_or_else(|| panic!("the Secret lacks {var}"));
        assert!(
            v.contains("REPLACE"),
            "{var} must be an obvious placeholder"
        );
    }

    // scraping: the annotations name the metrics listener
    let ann = string_map(get(deployment, "spec.template.metadata.annotations"));
    assert_eq!(
        ann.get("prometheus.io/scrape").map(String::as_str),
        Some("true")
    );
    assert_eq!(
        ann.get("prometheus.io/port"),
        Some(&shape.metrics.port().to_string())
    );
    assert_eq!(
        ann.get("prometheus.io/path").map(String::as_str),
        Some("/metrics")
    );

    // non-root, read-only, no escalation, bounded
    assert_eq!(
        get(pod, "securityContext.runAsNonRoot").as_bool(),
        Some(true)
    );
    let uid = get(pod, "securityContext.runAsUser").as_u64();
    assert!(
        uid.is_some_and(|u| u != 0),
        "a numeric non-root runAsUser, for a distroless image"
    );
    assert_eq!(
        get(c, "securityContext.allowPrivilegeEscalation").as_bool(),
        Some(false)
    );
    assert_eq!(
        get(c, "securityContext.readOnlyRootFilesystem").as_bool(),
        Some(true)
    );
    for r in ["requests.cpu", "requests.memory", "limits.memory"] {
        assert!(!get(get(c, "resources"), r).is_null(), "resources.{r}");
    }

    // the kubelet waits for the drain: preStop pause + shutdown_timeout
    let grace = get(pod, "terminationGracePeriodSeconds")
        .as_u64()
        .expect("terminationGracePeriodSeconds");
    let pause = get(c, "lifecycle.preStop.sleep.seconds")
        .as_u64()
        .unwrap_or(0);
    assert!(
        grace > pause + shape.shutdown_secs,
        "terminationGracePeriodSeconds {grace} <= preStop {pause} + shutdown_timeout {}",
        shape.shutdown_secs
    );

    // Services select the pods and reach the right container ports
    let services = of_kind(&docs, "Service");
    assert!(!services.is_empty());
    for s in &services {
        let name = str_at(s, "metadata.name");
        assert!(
            selects(&string_map(get(s, "spec.selector")), &pod_labels),
            "{name} selects no pod"
        );
        for p in get(s, "spec.ports").as_sequence().expect("ports") {
            let target = match get(p, "targetPort") {
                Yaml::Null => resolve(get(p, "port")),
                t => resolve(t),
            };
            assert!(shape.ports().contains(&target), "{name} targets {target}");
        }
    }
    let proxy_port = shape.proxy[0].port();
    assert!(
        services.iter().any(|s| get(s, "spec.ports")
            .as_sequence()
            .into_iter()
            .flatten()
            .any(|p| resolve(get(p, "targetPort")) == proxy_port)),
        "no Service for the proxy port"
    );
    for pdb in of_kind(&docs, "PodDisruptionBudget") {
        assert!(selects(
            &string_map(get(pdb, "spec.selector.matchLabels")),
            &pod_labels
        ));
        assert!(get(pdb, "spec.minAvailable").as_u64().unwrap_or(0) < 3);
    }

    // kustomization lists every manifest, and its image is the Deployment's
    let kustomization = only(&docs, "Kustomization");
    let listed: BTreeSet<&str> = get(kustomization, "resources")
        .as_sequence()
        .expect("resources")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    let files: BTreeSet<&str> = docs
        .iter()
        .filter(|(_, d)| get(d, "kind").as_str() != Some("Kustomization"))
        .map(|(f, _)| f.as_str())
        .collect();
    assert_eq!(listed, files, "kustomization.yaml resources");
    let image = str_at(c, "image");
    let image_names: Vec<&str> = get(kustomization, "images")
        .as_sequence()
        .into_iter()
        .flatten()
        .map(|i| str_at(i, "name"))
        .collect();
    assert!(
        image_names
            .iter()
            .all(|n| image.split(':').next() == Some(*n)),
        "kustomization images {image_names:?} vs {image}"
    );
}

#[test]
fn the_configmap_config_passes_check_config() {
    let docs = manifests();
    let (text, config) = deployed_config(&docs);
    let dir = tempfile::tempdir().unwrap();
    let as_shipped = dir.path().join("tollgate.yaml");
    std::fs::write(&as_shipped, &text).unwrap();
    // Upstream names are resolved when the configuration loads; the
    // cluster's Service names do not resolve here, so that error, and only
    // that one, is expected outside a cluster.
    let (code, _, err) = check_config(&as_shipped);
    if code != 0 {
        assert_eq!(code, 2, "{err}");
        for line in err.lines() {
            assert!(
                line.contains(".upstreams[") && line.contains("resolve"),
                "check-config of the ConfigMap's config: {line}"
            );
        }
    }
    // the same with every upstream host on loopback must pass entirely
    let mut local = config.clone();
    let services = local
        .get_mut("services")
        .and_then(|s| s.as_mapping_mut())
        .expect("services");
    for (_, service) in services.iter_mut() {
        for target in service
            .get_mut("upstreams")
            .and_then(|u| u.as_sequence_mut())
            .expect("upstreams")
        {
            let t = target.as_str().expect("HOST:PORT").to_string();
            let (_, port) = t.rsplit_once(':').expect("HOST:PORT");
            *target = format!("127.0.0.1:{port}").into();
        }
    }
    let resolved = dir.path().join("resolved.yaml");
    std::fs::write(&resolved, serde_yaml::to_string(&local).unwrap()).unwrap();
    assert_config_ok(&resolved);
}

#[test]
fn kubernetes_manifests_pass_schema_validation() {
    // kubernetes-validate ships the Kubernetes JSON schemas, so this works
    // offline; --strict refuses fields the API does not know.
    let dir = repo_path("deploy/kubernetes");
    let files: Vec<String> = manifests()
        .into_iter()
        .filter(|(_, d)| get(d, "kind").as_str() != Some("Kustomization"))
        .map(|(f, _)| f)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut args = vec!["--strict", "--quiet"];
    args.extend(files.iter().map(String::as_str));
    let out = tool("kubernetes-validate", &args, Some(&dir));
    assert!(out.status.success(), "kubernetes-validate: {}", text(&out));
}
