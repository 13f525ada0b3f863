//! The `services` and `routes` sections: upstream targets, matchers,
//! auth policies and direct responses.

use super::*;

impl Compiler {
    pub(super) fn services(
        &mut self,
        v: Option<&Value>,
        path: &NodePath,
    ) -> BTreeMap<String, Arc<Service>> {
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
            let http2 = match raw.protocol.as_deref() {
                None | Some("http1") => false,
                Some("http2") => true,
                Some(other) => {
                    self.err(
                        &sp.key("protocol"),
                        format!("unknown protocol `{other}`: http1 or http2"),
                    );
                    false
                }
            };
            let first_host = raw
                .upstreams
                .first()
                .map(|t| t.trim().rsplit_once(':').map_or(t.trim(), |(h, _)| h))
                .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_string())
                .unwrap_or_default();
            let tls = raw
                .tls
                .map(|t| self.upstream_tls(t, &sp.key("tls"), first_host));
            services.insert(
                name.clone(),
                Arc::new(Service {
                    pool_key: pool_key(&name),
                    name,
                    upstreams,
                    connect_timeout,
                    read_timeout,
                    retries,
                    tls,
                    http2,
                }),
            );
        }
        services
    }
    fn upstream_tls(
        &mut self,
        raw: RawUpstreamTls,
        path: &NodePath,
        first_host: String,
    ) -> UpstreamTls {
        let ca = raw
            .ca
            .and_then(|ca| match crate::tls::load_upstream_ca(Path::new(&ca)) {
                Ok(roots) => Some(roots),
                Err(e) => {
                    self.err(&path.key("ca"), e);
                    None
                }
            });
        UpstreamTls {
            sni: raw.sni.unwrap_or(first_host),
            ca,
            verify: raw.verify.unwrap_or(true),
        }
    }

    pub(super) fn routes(
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
    pub(super) fn route(
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
        let strip_prefix = match (&path, &target) {
            (_, _) if !raw.strip_prefix => None,
            (Some(PathMatch::Prefix(p)), Some(RouteTarget::Service(_))) => Some(p.clone()),
            (Some(PathMatch::Prefix(_)), _) => {
                self.err(&rp.key("strip_prefix"), "strip_prefix needs a `service`");
                None
            }
            _ => {
                self.err(
                    &rp.key("strip_prefix"),
                    "strip_prefix needs a `path_prefix`",
                );
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
            strip_prefix,
            keep_underscore_headers: raw.keep_underscore_headers,
            forward_claims: self.forward_claims(&raw.forward_claims, &rp.key("forward_claims")),
            meters: Default::default(),
        })
    }

    /// `forward_claims`: dotted claim paths to header names the gateway
    /// may set.
    fn forward_claims(
        &mut self,
        raw: &BTreeMap<String, String>,
        path: &NodePath,
    ) -> Vec<(Vec<String>, http::HeaderName)> {
        const RESERVED: &[&str] = &[
            "host",
            "authorization",
            "content-length",
            "transfer-encoding",
            "connection",
            "te",
            "upgrade",
            "keep-alive",
            "proxy-authorization",
            "cookie",
            "x-request-id",
            "x-consumer-id",
            "x-consumer-name",
            "x-subscription-id",
            "x-forwarded-for",
            "x-forwarded-proto",
            "x-forwarded-host",
        ];
        if raw.len() > 32 {
            self.err(path, "at most 32 forwarded claims");
        }
        let mut out: Vec<(Vec<String>, http::HeaderName)> = Vec::new();
        for (claim, header) in raw {
            let at = path.key(claim.clone());
            let segments: Vec<String> = claim.split('.').map(str::to_string).collect();
            if segments.iter().any(String::is_empty) || segments.len() > 8 {
                self.err(
                    &at,
                    format!("claim path `{claim}`: dot-separated names, none empty, at most 8"),
                );
                continue;
            }
            let name = match http::HeaderName::from_bytes(header.as_bytes()) {
                Ok(n) if !RESERVED.contains(&n.as_str()) => n,
                Ok(_) => {
                    self.err(
                        &at,
                        format!("`{header}` is a header the gateway sets or forwards itself"),
                    );
                    continue;
                }
                Err(_) => {
                    self.err(&at, format!("`{header}` is not a header name"));
                    continue;
                }
            };
            if out.iter().any(|(_, n)| n == name) {
                self.err(&at, format!("header `{header}` is named twice"));
                continue;
            }
            out.push((segments, name));
        }
        out
    }
    /// Route paths are written in normalized form, so that what the file
    /// says is exactly what the router compares against.
    pub(super) fn route_path(&mut self, p: &str, path: &NodePath) -> Option<String> {
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
    pub(super) fn auth_policy(&mut self, v: &Value, path: &NodePath) -> Option<AuthPolicy> {
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
    pub(super) fn respond(&mut self, raw: RawRespond, path: &NodePath) -> Option<DirectResponse> {
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
}

fn placeholder_service(name: String) -> Service {
    Service {
        upstreams: Vec::new(),
        connect_timeout: Duration::from_secs(1),
        read_timeout: Duration::from_secs(1),
        retries: 0,
        tls: None,
        http2: false,
        pool_key: pool_key(&name),
        name,
    }
}

fn pool_key(service: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    service.hash(&mut h);
    h.finish()
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
