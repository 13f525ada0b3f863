//! Raw YAML -> typed `Config`. Each section, each route and each service is
//! deserialized on its own so that one mistake does not hide the next; every
//! value is then checked here, and all errors are returned together.

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_yaml::Value;

use super::locate::{NodePath, Pos, PositionIndex, Seg};
use super::model::*;
use super::raw::*;
use super::{ConfigError, ConfigErrors};
use crate::proxy::path::normalize_path;

const SECTIONS: &[&str] = &[
    "server", "admin", "metrics", "store", "redis", "auth", "plans", "services", "routes",
    "logging",
];

/// Pingora refuses request heads above 1 MiB on its own.
const MAX_HEADER_BYTES_LIMIT: usize = 1024 * 1024 - 1;

pub(super) fn compile(text: &str, source: &Path) -> Result<Config, ConfigErrors> {
    let mut c = Compiler {
        file: source.to_path_buf(),
        index: PositionIndex::build(text),
        errors: Vec::new(),
    };
    let doc: Value = match serde_yaml::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            let (line, col) = e
                .location()
                .map(|l| (l.line(), l.column()))
                .unwrap_or((1, 1));
            c.errors.push(ConfigError {
                file: c.file.clone(),
                line,
                col,
                message: format!("invalid YAML: {}", strip_location(&e.to_string())),
            });
            return Err(ConfigErrors(c.errors));
        }
    };
    let config = c.document(&doc);
    if c.errors.is_empty() {
        if let Some(config) = config {
            return Ok(config);
        }
    }
    c.errors.sort_by_key(|e| (e.line, e.col));
    c.errors.dedup();
    Err(ConfigErrors(c.errors))
}

/// serde_yaml appends " at line L column C" to some messages; we print the
/// position in front instead.
fn strip_location(msg: &str) -> String {
    match msg.find(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

struct Compiler {
    file: PathBuf,
    index: PositionIndex,
    errors: Vec<ConfigError>,
}

impl Compiler {
    fn push(&mut self, pos: Pos, message: String) {
        self.errors.push(ConfigError {
            file: self.file.clone(),
            line: pos.line,
            col: pos.col,
            message,
        });
    }

    /// An error about the value at `path`.
    fn err(&mut self, path: &NodePath, message: impl Into<String>) {
        let pos = self.index.locate_value(path);
        self.push(pos, format!("{path}: {}", message.into()));
    }

    /// An error about the key at `path` (unknown or misplaced keys).
    fn err_key(&mut self, path: &NodePath, message: impl Into<String>) {
        let pos = self.index.locate(path);
        self.push(pos, format!("{path}: {}", message.into()));
    }

    /// Deserialize one node into its raw struct, recording every error with
    /// where it is: after an error, the offending key is dropped and the
    /// node tried again, so one unknown key does not hide the next mistake.
    fn node<T: DeserializeOwned>(&mut self, value: &Value, path: &NodePath) -> Option<T> {
        let mut value = value.clone();
        let mut dropped: Vec<String> = Vec::new();
        for _ in 0..64 {
            let e = match serde_path_to_error::deserialize::<_, T>(&value) {
                Ok(v) => return Some(v),
                Err(e) => e,
            };
            let mut rel: Vec<Seg> = Vec::new();
            for seg in e.path().iter() {
                match seg {
                    serde_path_to_error::Segment::Seq { index } => rel.push(Seg::Index(*index)),
                    serde_path_to_error::Segment::Map { key } => rel.push(Seg::Key(key.clone())),
                    serde_path_to_error::Segment::Enum { .. }
                    | serde_path_to_error::Segment::Unknown => {}
                }
            }
            let msg = strip_location(&e.inner().to_string());
            if let Some(field) = missing_field(&msg) {
                if dropped.contains(&field) {
                    // a required key we dropped ourselves: already reported
                    return None;
                }
            }
            if let Some(field) = unknown_field(&msg) {
                if rel.last() != Some(&Seg::Key(field.clone())) {
                    rel.push(Seg::Key(field));
                }
            }
            let mut at = path.clone();
            at.0.extend(rel.iter().cloned());
            if unknown_field(&msg).is_some() {
                self.err_key(&at, msg);
            } else {
                self.err(&at, msg);
            }
            match rel.last() {
                Some(Seg::Key(k)) if remove_key(&mut value, &rel) => dropped.push(k.clone()),
                _ => return None,
            }
        }
        None
    }

    /// A section that may be absent or empty (`server:` with nothing under it).
    fn section<T: DeserializeOwned + Default>(
        &mut self,
        value: Option<&Value>,
        path: &NodePath,
    ) -> Option<T> {
        match value {
            None | Some(Value::Null) => Some(T::default()),
            Some(v) => self.node(v, path),
        }
    }

    fn duration(&mut self, text: Option<&str>, path: &NodePath, default: Duration) -> Duration {
        let Some(text) = text else { return default };
        match humantime::parse_duration(text.trim()) {
            Ok(d) if !d.is_zero() => d,
            Ok(_) => {
                self.err(path, "duration must be greater than zero");
                default
            }
            Err(e) => {
                self.err(
                    path,
                    format!("invalid duration `{text}`: {e} (use e.g. `500ms`, `30s`, `15d`)"),
                );
                default
            }
        }
    }

    fn listen_addr(&mut self, text: &str, path: &NodePath) -> Option<SocketAddr> {
        match text.trim().parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.err(
                    path,
                    format!(
                        "invalid listen address `{text}`: expected IP:PORT such as 127.0.0.1:8080"
                    ),
                );
                None
            }
        }
    }

    fn document(&mut self, doc: &Value) -> Option<Config> {
        let root = NodePath::root();
        let empty = serde_yaml::Mapping::new();
        let map = match doc {
            Value::Mapping(m) => m,
            Value::Null => &empty,
            _ => {
                self.err(&root, "the configuration must be a mapping of sections");
                return None;
            }
        };
        let mut sections: BTreeMap<&str, &Value> = BTreeMap::new();
        for (k, v) in map {
            match k.as_str() {
                Some(name) if SECTIONS.contains(&name) => {
                    sections.insert(name, v);
                }
                Some(name) => self.err_key(
                    &root.key(name),
                    format!(
                        "unknown section `{name}`, expected one of {}",
                        SECTIONS.join(", ")
                    ),
                ),
                None => self.err(&root, "section names must be strings"),
            }
        }
        let get = |name: &str| sections.get(name).copied();

        let server = self.server(get("server"), &root.key("server"));
        let admin = self.admin(get("admin"), &root.key("admin"));
        let metrics = self.metrics(get("metrics"), &root.key("metrics"));
        let store = self.store(get("store"), &root.key("store"));
        let redis = self.redis(get("redis"), &root.key("redis"));
        let auth = self.auth(get("auth"), &root.key("auth"), server.as_ref());
        let plans = self.plans(get("plans"), &root.key("plans"));
        let services = self.services(get("services"), &root.key("services"));
        let routes = self.routes(get("routes"), &root.key("routes"), &services);
        let logging = self.logging(get("logging"), &root.key("logging"));

        if let (Some(server), Some(admin), Some(metrics)) = (&server, &admin, &metrics) {
            let mut seen = HashSet::new();
            let all = server
                .listen
                .iter()
                .map(|a| (*a, root.key("server").key("listen")))
                .chain([
                    (admin.listen, root.key("admin").key("listen")),
                    (metrics.listen, root.key("metrics").key("listen")),
                ]);
            for (addr, path) in all {
                if addr.port() != 0 && !seen.insert(addr) {
                    self.err(&path, format!("address {addr} is used by two listeners"));
                }
            }
        }

        Some(Config {
            source: self.file.clone(),
            server: server?,
            admin: admin?,
            metrics: metrics?,
            store: store?,
            redis: redis?,
            auth: auth?,
            plans,
            services,
            routes,
            logging: logging?,
        })
    }

    fn server(&mut self, v: Option<&Value>, path: &NodePath) -> Option<ServerSettings> {
        let raw: RawServer = self.section(v, path)?;
        let listen_texts = raw.listen.unwrap_or_else(|| vec!["127.0.0.1:8080".into()]);
        if listen_texts.is_empty() {
            self.err(
                &path.key("listen"),
                "at least one listen address is required",
            );
        }
        let listen = listen_texts
            .iter()
            .enumerate()
            .filter_map(|(i, t)| self.listen_addr(t, &path.key("listen").index(i)))
            .collect();
        let max_header_bytes = raw.max_header_bytes.unwrap_or(32 * 1024);
        if !(1024..=MAX_HEADER_BYTES_LIMIT).contains(&max_header_bytes) {
            self.err(
                &path.key("max_header_bytes"),
                format!("must be between 1024 and {MAX_HEADER_BYTES_LIMIT}"),
            );
        }
        let header_timeout = self.duration(
            raw.header_timeout.as_deref(),
            &path.key("header_timeout"),
            Duration::from_secs(10),
        );
        let shutdown_timeout = self.duration(
            raw.shutdown_timeout.as_deref(),
            &path.key("shutdown_timeout"),
            Duration::from_secs(30),
        );
        let mut trusted_proxies = Vec::new();
        for (i, t) in raw.trusted_proxies.iter().enumerate() {
            match parse_ipnet(t) {
                Some(n) => trusted_proxies.push(n),
                None => self.err(
                    &path.key("trusted_proxies").index(i),
                    format!("invalid address or CIDR `{t}`"),
                ),
            }
        }
        let threads = match raw.threads {
            Some(0) => {
                self.err(&path.key("threads"), "must be at least 1");
                1
            }
            Some(n) => n,
            None => std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
        };
        Some(ServerSettings {
            listen,
            max_header_bytes,
            header_timeout,
            shutdown_timeout,
            trusted_proxies,
            threads,
        })
    }

    fn admin(&mut self, v: Option<&Value>, path: &NodePath) -> Option<AdminSettings> {
        let raw: RawAdmin = self.section(v, path)?;
        let listen = self.listen_addr(
            raw.listen.as_deref().unwrap_or("127.0.0.1:8081"),
            &path.key("listen"),
        )?;
        let token_env = raw
            .token_env
            .unwrap_or_else(|| "TOLLGATE_ADMIN_TOKEN".into());
        self.env_name(&token_env, &path.key("token_env"));
        Some(AdminSettings { listen, token_env })
    }

    fn env_name(&mut self, name: &str, path: &NodePath) {
        let ok = !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        if !ok {
            self.err(
                path,
                format!("`{name}` is not an environment variable name (the value itself never goes in the file)"),
            );
        }
    }

    fn metrics(&mut self, v: Option<&Value>, path: &NodePath) -> Option<MetricsSettings> {
        let raw: RawMetrics = self.section(v, path)?;
        let listen = self.listen_addr(
            raw.listen.as_deref().unwrap_or("127.0.0.1:9091"),
            &path.key("listen"),
        )?;
        Some(MetricsSettings { listen })
    }

    fn store(&mut self, v: Option<&Value>, path: &NodePath) -> Option<StoreSettings> {
        let raw: RawStore = self.section(v, path)?;
        let url_text = raw
            .url
            .unwrap_or_else(|| "sqlite://data/tollgate.db".into());
        let url = if let Some(p) = url_text.strip_prefix("sqlite://") {
            if p.is_empty() {
                self.err(&path.key("url"), "sqlite:// needs a file path");
            }
            StoreUrl::Sqlite(PathBuf::from(p))
        } else if url_text.starts_with("postgres://") || url_text.starts_with("postgresql://") {
            StoreUrl::Postgres(url_text.clone())
        } else {
            self.err(
                &path.key("url"),
                format!(
                    "unsupported store url `{url_text}`: expected sqlite://PATH or postgres://…"
                ),
            );
            StoreUrl::Sqlite(PathBuf::new())
        };
        let cp = path.key("cache");
        let cache = CacheSettings {
            ttl: self.duration(
                raw.cache.ttl.as_deref(),
                &cp.key("ttl"),
                Duration::from_secs(30),
            ),
            negative_ttl: self.duration(
                raw.cache.negative_ttl.as_deref(),
                &cp.key("negative_ttl"),
                Duration::from_secs(5),
            ),
            max_entries: match raw.cache.max_entries {
                Some(0) => {
                    self.err(&cp.key("max_entries"), "must be at least 1");
                    1
                }
                Some(n) => n,
                None => 100_000,
            },
        };
        let pepper_env = raw.pepper_env.unwrap_or_else(|| "TOLLGATE_PEPPER".into());
        self.env_name(&pepper_env, &path.key("pepper_env"));
        Some(StoreSettings {
            url,
            cache,
            pepper_env,
        })
    }

    fn redis(&mut self, v: Option<&Value>, path: &NodePath) -> Option<Option<RedisSettings>> {
        match v {
            None | Some(Value::Null) => Some(None),
            Some(v) => {
                let raw: RawRedis = self.node(v, path)?;
                if !(raw.url.starts_with("redis://") || raw.url.starts_with("rediss://")) {
                    self.err(&path.key("url"), "expected redis://HOST:PORT or rediss://…");
                }
                let timeout = self.duration(
                    raw.timeout.as_deref(),
                    &path.key("timeout"),
                    Duration::from_millis(250),
                );
                if timeout.is_zero() {
                    self.err(&path.key("timeout"), "must be more than 0");
                }
                let failure_mode = match raw.failure_mode.as_deref() {
                    None | Some("open") => FailureMode::Open,
                    Some("closed") => FailureMode::Closed,
                    Some(other) => {
                        self.err(
                            &path.key("failure_mode"),
                            format!("unknown failure mode `{other}`: expected open or closed"),
                        );
                        FailureMode::Open
                    }
                };
                Some(Some(RedisSettings {
                    url: raw.url,
                    timeout,
                    failure_mode,
                }))
            }
        }
    }

    fn auth(
        &mut self,
        v: Option<&Value>,
        path: &NodePath,
        server: Option<&ServerSettings>,
    ) -> Option<AuthSettings> {
        let raw: RawAuth = self.section(v, path)?;
        let kp = path.key("api_key");
        let header_text = raw.api_key.header.as_deref().unwrap_or("X-API-Key");
        let header = match http::HeaderName::from_bytes(header_text.as_bytes()) {
            Ok(h) if h != http::header::AUTHORIZATION && h != http::header::HOST => h,
            _ => {
                self.err(
                    &kp.key("header"),
                    format!("`{header_text}` cannot carry API keys"),
                );
                http::HeaderName::from_static("x-api-key")
            }
        };
        let api_key = ApiKeySettings {
            header,
            default_ttl: self.duration(
                raw.api_key.default_ttl.as_deref(),
                &kp.key("default_ttl"),
                Duration::from_secs(15 * 86_400),
            ),
        };

        let tp = path.key("tokens");
        let default_issuer = server
            .and_then(|s| s.listen.first())
            .map(|a| format!("http://{a}"))
            .unwrap_or_else(|| "http://127.0.0.1:8080".into());
        let algorithm = match raw.tokens.algorithm.as_deref().unwrap_or("ES256") {
            "ES256" => SigningAlgorithm::Es256,
            "EdDSA" => SigningAlgorithm::EdDsa,
            "RS256" => SigningAlgorithm::Rs256,
            other => {
                self.err(
                    &tp.key("algorithm"),
                    format!(
                        "unsupported signing algorithm `{other}`: expected ES256, EdDSA or RS256"
                    ),
                );
                SigningAlgorithm::Es256
            }
        };
        let leeway_default = Duration::from_secs(30);
        let tokens = TokenSettings {
            issuer: raw.tokens.issuer.unwrap_or(default_issuer),
            audience: raw.tokens.audience.unwrap_or_else(|| "tollgate".into()),
            ttl: self.duration(
                raw.tokens.ttl.as_deref(),
                &tp.key("ttl"),
                Duration::from_secs(3600),
            ),
            algorithm,
            leeway: self.leeway(
                raw.tokens.leeway.as_deref(),
                &tp.key("leeway"),
                leeway_default,
            ),
        };

        let mut issuers = Vec::new();
        let mut names = HashSet::new();
        for (i, iss) in raw.issuers.into_iter().enumerate() {
            let ip = path.key("issuers").index(i);
            if iss.name.is_empty() || !names.insert(iss.name.clone()) {
                self.err(
                    &ip.key("name"),
                    format!("issuer name `{}` is empty or repeated", iss.name),
                );
            }
            if iss.issuer.is_empty() {
                self.err(&ip.key("issuer"), "must not be empty");
            }
            if iss.issuer == tokens.issuer {
                self.err(&ip.key("issuer"), "is the built-in token issuer");
            }
            if !(iss.jwks_url.starts_with("https://") || iss.jwks_url.starts_with("http://")) {
                self.err(&ip.key("jwks_url"), "must be an http:// or https:// URL");
            }
            if iss.audiences.is_empty() {
                self.err(&ip.key("audiences"), "at least one audience is required");
            }
            if iss.algorithms.is_empty() {
                self.err(&ip.key("algorithms"), "at least one algorithm is required");
            }
            let mut algorithms = Vec::new();
            for (j, a) in iss.algorithms.iter().enumerate() {
                match JwtAlgorithm::parse(a) {
                    Some(alg) => algorithms.push(alg),
                    None if a.starts_with("HS") => self.err(
                        &ip.key("algorithms").index(j),
                        format!("`{a}` is refused: HMAC keys are never taken from a JWKS"),
                    ),
                    None => self.err(
                        &ip.key("algorithms").index(j),
                        format!("unsupported algorithm `{a}`"),
                    ),
                }
            }
            let leeway = self.leeway(iss.leeway.as_deref(), &ip.key("leeway"), tokens.leeway);
            issuers.push(ExternalIssuer {
                name: iss.name,
                issuer: iss.issuer,
                jwks_url: iss.jwks_url,
                audiences: iss.audiences,
                algorithms,
                client_claim: iss.client_claim.unwrap_or_else(|| "azp".into()),
                leeway,
            });
        }
        Some(AuthSettings {
            api_key,
            tokens,
            issuers,
        })
    }

    /// A leeway may be zero, unlike other durations.
    fn leeway(&mut self, text: Option<&str>, path: &NodePath, default: Duration) -> Duration {
        match text.map(str::trim) {
            Some("0") | Some("0s") => Duration::ZERO,
            other => self.duration(other, path, default),
        }
    }

    fn plans(&mut self, v: Option<&Value>, path: &NodePath) -> BTreeMap<String, Plan> {
        let mut plans = BTreeMap::new();
        for (name, value) in self.named_entries(v, path) {
            let pp = path.key(name.clone());
            let Some(raw) = self.node::<RawPlan>(&value, &pp) else {
                continue;
            };
            let rate = raw.rate.as_deref().and_then(|t| {
                let r = parse_rate(t);
                if r.is_none() {
                    self.err(
                        &pp.key("rate"),
                        format!("invalid rate `{t}`: expected N/s, N/min or N/h with N > 0"),
                    );
                }
                r
            });
            let quota = raw.quota.as_deref().and_then(|t| {
                let q = parse_quota(t);
                if q.is_none() {
                    self.err(
                        &pp.key("quota"),
                        format!("invalid quota `{t}`: expected N/day or N/month with N > 0"),
                    );
                }
                q
            });
            if raw.burst == Some(0) {
                self.err(&pp.key("burst"), "must be at least 1");
            }
            if raw.burst.is_some() && rate.is_none() {
                self.err(&pp.key("burst"), "a burst needs a rate");
            }
            let burst = raw.burst.or(rate.map(|r| r.count)).unwrap_or(0);
            plans.insert(
                name.clone(),
                Plan {
                    name,
                    rate,
                    burst,
                    quota,
                    default: raw.default,
                },
            );
        }
        let defaults: Vec<&str> = plans
            .values()
            .filter(|p| p.default)
            .map(|p| p.name.as_str())
            .collect();
        if defaults.len() > 1 {
            let message = format!(
                "only one plan may be the default; {} all say default: true",
                defaults.join(", ")
            );
            self.err(&path.key(defaults[1].to_string()).key("default"), message);
        }
        plans
    }

    /// The entries of a `name: {…}` mapping section.
    fn named_entries(&mut self, v: Option<&Value>, path: &NodePath) -> Vec<(String, Value)> {
        match v {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Mapping(m)) => {
                let mut out = Vec::new();
                for (k, v) in m {
                    match k.as_str() {
                        Some(name) if !name.is_empty() => out.push((name.to_string(), v.clone())),
                        _ => self.err(path, "entry names must be non-empty strings"),
                    }
                }
                out
            }
            Some(_) => {
                self.err(path, "expected a mapping of names to definitions");
                Vec::new()
            }
        }
    }

    fn services(&mut self, v: Option<&Value>, path: &NodePath) -> BTreeMap<String, Arc<Service>> {
        let mut services = BTreeMap::new();
        for (name, value) in self.named_entries(v, path) {
            let sp = path.key(name.clone());
            let Some(raw) = self.node::<RawService>(&value, &sp) else {
                // Declared but broken: keep the name so routes naming it do
                // not also report it as missing.
                services.insert(name.clone(), Arc::new(placeholder_service(name)));
                continue;
            };
            if raw.upstreams.is_empty() {
                self.err(
                    &sp.key("upstreams"),
                    "at least one upstream target is required",
                );
            }
            let mut upstreams = Vec::new();
            for (i, t) in raw.upstreams.iter().enumerate() {
                match resolve_target(t) {
                    Ok(addr) => upstreams.push(addr),
                    Err(msg) => self.err(&sp.key("upstreams").index(i), msg),
                }
            }
            let tp = sp.key("timeouts");
            let connect_timeout = self.duration(
                raw.timeouts.connect.as_deref(),
                &tp.key("connect"),
                Duration::from_secs(1),
            );
            let read_timeout = self.duration(
                raw.timeouts.read.as_deref(),
                &tp.key("read"),
                Duration::from_secs(30),
            );
            let retries = raw
                .retries
                .unwrap_or_else(|| upstreams.len().saturating_sub(1).min(2));
            services.insert(
                name.clone(),
                Arc::new(Service {
                    name,
                    upstreams,
                    connect_timeout,
                    read_timeout,
                    retries,
                }),
            );
        }
        services
    }

    fn routes(
        &mut self,
        v: Option<&Value>,
        path: &NodePath,
        services: &BTreeMap<String, Arc<Service>>,
    ) -> Vec<Arc<Route>> {
        let items = match v {
            None | Some(Value::Null) => return Vec::new(),
            Some(Value::Sequence(s)) => s,
            Some(_) => {
                self.err(path, "expected a list of routes");
                return Vec::new();
            }
        };
        let mut routes = Vec::new();
        let mut names = HashSet::new();
        for (i, item) in items.iter().enumerate() {
            let rp = path.index(i);
            let Some(raw) = self.node::<RawRoute>(item, &rp) else {
                continue;
            };
            if raw.name.is_empty() || !names.insert(raw.name.clone()) {
                self.err(
                    &rp.key("name"),
                    format!("route name `{}` is empty or repeated", raw.name),
                );
            }
            if let Some(route) = self.route(raw, &rp, services) {
                routes.push(Arc::new(route));
            }
        }
        routes
    }

    fn route(
        &mut self,
        raw: RawRoute,
        rp: &NodePath,
        services: &BTreeMap<String, Arc<Service>>,
    ) -> Option<Route> {
        let mp = rp.key("match");
        let path = match (&raw.matcher.path, &raw.matcher.path_prefix) {
            (Some(p), None) => self.route_path(p, &mp.key("path")).map(PathMatch::Exact),
            (None, Some(p)) => self
                .route_path(p, &mp.key("path_prefix"))
                .map(PathMatch::Prefix),
            (Some(_), Some(_)) => {
                self.err(&mp, "set either `path` or `path_prefix`, not both");
                None
            }
            (None, None) => {
                self.err(&mp, "a route needs `path` or `path_prefix`");
                None
            }
        };
        let host = raw.matcher.host.as_ref().and_then(|h| {
            let h = h.trim().to_ascii_lowercase();
            let valid = !h.is_empty()
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
            if !valid {
                self.err(
                    &mp.key("host"),
                    format!("invalid host `{h}` (no port, no scheme)"),
                );
                None
            } else {
                Some(h)
            }
        });
        let mut methods = Vec::new();
        for (i, m) in raw.matcher.methods.iter().enumerate() {
            let upper = m.to_ascii_uppercase();
            match http::Method::from_bytes(upper.as_bytes()) {
                Ok(method) if upper == *m => methods.push(method),
                _ => self.err(
                    &mp.key("methods").index(i),
                    format!("invalid method `{m}` (methods are upper case, e.g. GET)"),
                ),
            }
        }

        let auth = self.auth_policy(&raw.auth, &rp.key("auth"));
        if matches!(auth, Some(AuthPolicy::Public)) && !raw.scopes.is_empty() {
            self.err(&rp.key("scopes"), "scopes need an authenticated route");
        }

        let target = match (raw.service, raw.respond) {
            (Some(name), None) => match services.get(&name) {
                Some(s) => Some(RouteTarget::Service(s.clone())),
                None => {
                    self.err(
                        &rp.key("service"),
                        format!("route `{}` names service `{name}`, which is not declared under `services`", raw.name),
                    );
                    None
                }
            },
            (None, Some(r)) => self
                .respond(r, &rp.key("respond"))
                .map(RouteTarget::Respond),
            (Some(_), Some(_)) => {
                self.err(rp, "set either `service` or `respond`, not both");
                None
            }
            (None, None) => {
                self.err(rp, "a route needs a `service` or a `respond`");
                None
            }
        };
        Some(Route {
            name: raw.name,
            matcher: RouteMatch {
                host,
                path: path?,
                methods,
            },
            target: target?,
            auth: auth?,
            scopes: raw.scopes,
            forward_authorization: raw.forward_authorization,
        })
    }

    /// Route paths are written in normalized form, so that what the file
    /// says is exactly what the router compares against.
    fn route_path(&mut self, p: &str, path: &NodePath) -> Option<String> {
        if !p.starts_with('/') {
            self.err(path, format!("`{p}` must start with `/`"));
            return None;
        }
        match normalize_path(p.as_bytes()) {
            Ok(n) if n == p && (p == "/" || !p.ends_with('/')) => Some(n),
            Ok(n) => {
                self.err(
                    path,
                    format!(
                        "`{p}` is not in normalized form; write `{}`",
                        n.trim_end_matches('/').max("/")
                    ),
                );
                None
            }
            Err(e) => {
                self.err(path, format!("`{p}`: {e}"));
                None
            }
        }
    }

    fn auth_policy(&mut self, v: &Value, path: &NodePath) -> Option<AuthPolicy> {
        const HINT: &str = "auth must be `public` or a list of credential kinds (`jwt`, `api_key`)";
        let kind = |s: &str| match s {
            "jwt" => Some(CredentialKind::Jwt),
            "api_key" => Some(CredentialKind::ApiKey),
            _ => None,
        };
        match v {
            Value::String(s) if s == "public" => Some(AuthPolicy::Public),
            Value::String(s) => match kind(s) {
                Some(k) => Some(AuthPolicy::Required(vec![k])),
                None => {
                    self.err(path, format!("unknown auth `{s}`: {HINT}"));
                    None
                }
            },
            Value::Sequence(items) if !items.is_empty() => {
                let mut kinds = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    match item.as_str().and_then(kind) {
                        Some(k) if !kinds.contains(&k) => kinds.push(k),
                        Some(_) => self.err(&path.index(i), "repeated credential kind"),
                        None => {
                            self.err(&path.index(i), format!("unknown credential kind: {HINT}"))
                        }
                    }
                }
                (kinds.len() == items.len()).then_some(AuthPolicy::Required(kinds))
            }
            _ => {
                self.err(path, HINT);
                None
            }
        }
    }

    fn respond(&mut self, raw: RawRespond, path: &NodePath) -> Option<DirectResponse> {
        let status = match http::StatusCode::from_u16(raw.status) {
            Ok(s) if (200..600).contains(&raw.status) => Some(s),
            _ => {
                self.err(
                    &path.key("status"),
                    format!("invalid status {}", raw.status),
                );
                None
            }
        };
        let mut headers = Vec::new();
        let content_type = raw.content_type.unwrap_or_else(|| {
            if raw.body.trim_start().starts_with(['{', '[']) {
                "application/json".into()
            } else {
                "text/plain; charset=utf-8".into()
            }
        });
        let all = std::iter::once(("content-type".to_string(), content_type)).chain(raw.headers);
        for (name, value) in all {
            let n = http::HeaderName::from_bytes(name.as_bytes());
            let v = http::HeaderValue::from_str(&value);
            match (n, v) {
                (Ok(n), Ok(v)) => headers.push((n, v)),
                _ => self.err(
                    &path.key("headers").key(name.clone()),
                    format!("invalid header `{name}`"),
                ),
            }
        }
        Some(DirectResponse {
            status: status?,
            body: bytes::Bytes::from(raw.body),
            headers,
        })
    }

    fn logging(&mut self, v: Option<&Value>, path: &NodePath) -> Option<LoggingSettings> {
        let raw: RawLogging = self.section(v, path)?;
        let format = match raw.format.as_deref().unwrap_or("pretty") {
            "pretty" => LogFormat::Pretty,
            "json" => LogFormat::Json,
            other => {
                self.err(
                    &path.key("format"),
                    format!("unknown log format `{other}`: expected pretty or json"),
                );
                LogFormat::Pretty
            }
        };
        let level = raw.level.unwrap_or_else(|| "info".into());
        if tracing_subscriber::EnvFilter::try_new(&level).is_err() {
            self.err(
                &path.key("level"),
                format!("invalid log level or filter `{level}`"),
            );
        }
        Some(LoggingSettings { format, level })
    }
}

/// Remove the mapping entry at `rel` (relative to `value`).
fn remove_key(value: &mut Value, rel: &[Seg]) -> bool {
    let Some((Seg::Key(last), parents)) = rel.split_last() else {
        return false;
    };
    let mut cur = value;
    for seg in parents {
        cur = match (seg, cur) {
            (Seg::Key(k), Value::Mapping(m)) => match m.get_mut(k.as_str()) {
                Some(v) => v,
                None => return false,
            },
            (Seg::Index(i), Value::Sequence(s)) => match s.get_mut(*i) {
                Some(v) => v,
                None => return false,
            },
            _ => return false,
        };
    }
    match cur {
        Value::Mapping(m) => m.remove(last.as_str()).is_some(),
        _ => false,
    }
}

fn missing_field(msg: &str) -> Option<String> {
    let rest = msg.strip_prefix("missing field `")?;
    Some(rest[..rest.find('`')?].to_string())
}

fn unknown_field(msg: &str) -> Option<String> {
    let rest = msg.strip_prefix("unknown field `")?;
    Some(rest[..rest.find('`')?].to_string())
}

fn placeholder_service(name: String) -> Service {
    Service {
        name,
        upstreams: Vec::new(),
        connect_timeout: Duration::from_secs(1),
        read_timeout: Duration::from_secs(1),
        retries: 0,
    }
}

/// `host:port` -> one address, resolved once at load time so that the
/// request path never waits on DNS.
fn resolve_target(t: &str) -> Result<SocketAddr, String> {
    let t = t.trim();
    if let Ok(a) = t.parse::<SocketAddr>() {
        return Ok(a);
    }
    if t.contains("://") {
        return Err(format!(
            "upstream `{t}` must be HOST:PORT, without a scheme"
        ));
    }
    match t.to_socket_addrs() {
        Ok(mut addrs) => addrs
            .next()
            .ok_or_else(|| format!("upstream `{t}` resolves to no address")),
        Err(e) => Err(format!(
            "upstream `{t}` is not a HOST:PORT that resolves: {e}"
        )),
    }
}

pub(crate) fn parse_ipnet(t: &str) -> Option<IpNet> {
    let (addr, prefix) = match t.split_once('/') {
        Some((a, p)) => (a.parse::<IpAddr>().ok()?, Some(p.parse::<u8>().ok()?)),
        None => (t.parse::<IpAddr>().ok()?, None),
    };
    let width = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = prefix.unwrap_or(width);
    (prefix <= width).then_some(IpNet { addr, prefix })
}

fn split_count(t: &str) -> Option<(u64, &str)> {
    let (n, unit) = t.trim().split_once('/')?;
    let n: u64 = n.trim().parse().ok()?;
    (n > 0).then_some((n, unit.trim()))
}

pub(crate) fn parse_rate(t: &str) -> Option<Rate> {
    let (count, unit) = split_count(t)?;
    let secs = match unit {
        "s" | "sec" | "second" => 1,
        "min" | "minute" => 60,
        "h" | "hour" => 3600,
        _ => return None,
    };
    Some(Rate {
        count,
        per: Duration::from_secs(secs),
    })
}

pub(crate) fn parse_quota(t: &str) -> Option<Quota> {
    let (count, unit) = split_count(t)?;
    let per = match unit {
        "day" | "d" => QuotaPeriod::Day,
        "month" => QuotaPeriod::Month,
        _ => return None,
    };
    Some(Quota { count, per })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<String> {
        match compile(text, Path::new("t.yaml")) {
            Ok(_) => Vec::new(),
            Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn minimal_config_compiles_with_defaults() {
        let c = compile("routes: []\n", Path::new("t.yaml")).expect("compiles");
        assert_eq!(
            c.server.listen,
            vec!["127.0.0.1:8080".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(c.auth.api_key.default_ttl, Duration::from_secs(15 * 86400));
        assert_eq!(
            c.store.url,
            StoreUrl::Sqlite(PathBuf::from("data/tollgate.db"))
        );
    }

    #[test]
    fn reports_every_error_with_position() {
        let text = "\
server:
  listen: [\"nope\"]
  bogus: 1
services:
  a:
    upstreams: [\"127.0.0.1:1\"]
    timeouts: { connect: fast }
routes:
  - name: r1
    match: { path_prefix: /x }
    service: missing
    auth: public
  - name: r2
    match: { path: /y }
    respond: { status: 200 }
    auth: [jwt, magic]
plans:
  p: { rate: 10/fortnight }
";
        let errs = errors(text);
        let want = [
            "t.yaml:2:12: server.listen[0]: invalid listen address",
            "t.yaml:3:3: server.bogus: unknown field `bogus`",
            "t.yaml:7:26: services.a.timeouts.connect: invalid duration `fast`",
            "t.yaml:11:14: routes[0].service: route `r1` names service `missing`",
            "t.yaml:16:17: routes[1].auth[1]: unknown credential kind",
            "t.yaml:18:14: plans.p.rate: invalid rate `10/fortnight`",
        ];
        assert_eq!(errs.len(), want.len(), "{errs:#?}");
        for (e, w) in errs.iter().zip(want) {
            assert!(e.starts_with(w), "{e} does not start with {w}");
        }
    }

    #[test]
    fn yaml_syntax_error_has_position() {
        let errs = errors("routes:\n  - name: [unclosed\n");
        assert_eq!(errs.len(), 1);
        assert!(errs[0].starts_with("t.yaml:"), "{}", errs[0]);
        assert!(errs[0].contains("invalid YAML"), "{}", errs[0]);
    }

    #[test]
    fn wrong_types_and_unknown_sections() {
        let errs = errors("metrics: 5\nfrobnicate: {}\nserver: { max_header_bytes: lots }\n");
        assert_eq!(errs.len(), 3, "{errs:#?}");
        assert!(
            errs[0].starts_with("t.yaml:1:10: metrics: invalid type"),
            "{}",
            errs[0]
        );
        assert!(
            errs[1].starts_with("t.yaml:2:1: frobnicate: unknown section"),
            "{}",
            errs[1]
        );
        assert!(
            errs[2].contains("server.max_header_bytes: invalid type"),
            "{}",
            errs[2]
        );
    }

    #[test]
    fn route_paths_must_be_normalized() {
        let errs = errors(
            "routes:\n  - { name: a, match: { path_prefix: /a/../b }, respond: { status: 200 }, auth: public }\n",
        );
        assert_eq!(errs.len(), 1, "{errs:#?}");
        assert!(errs[0].contains("not in normalized form"), "{}", errs[0]);
    }

    #[test]
    fn hmac_is_refused_for_external_issuers() {
        let errs = errors(
            "auth:\n  issuers:\n    - { name: k, issuer: https://i, jwks_url: https://i/j, audiences: [a], algorithms: [HS256] }\n",
        );
        assert_eq!(errs.len(), 1, "{errs:#?}");
        assert!(errs[0].contains("HMAC"), "{}", errs[0]);
    }

    #[test]
    fn rates_quotas_and_cidrs() {
        assert_eq!(
            parse_rate("10/s"),
            Some(Rate {
                count: 10,
                per: Duration::from_secs(1)
            })
        );
        assert_eq!(
            parse_rate("5/min").map(|r| r.per),
            Some(Duration::from_secs(60))
        );
        assert_eq!(parse_rate("0/s"), None);
        assert_eq!(
            parse_quota("10000/day").map(|q| q.per),
            Some(QuotaPeriod::Day)
        );
        assert_eq!(parse_quota("7/month").map(|q| q.count), Some(7));
        let net = parse_ipnet("10.0.0.0/8").unwrap();
        assert!(net.contains("10.1.2.3".parse().unwrap()));
        assert!(!net.contains("11.1.2.3".parse().unwrap()));
        assert!(parse_ipnet("10.0.0.0/33").is_none());
        assert!(parse_ipnet("::1").unwrap().contains("::1".parse().unwrap()));
    }
}
