//! Route choice (SPEC §4): a route with a host beats one without, an exact
//! path beats a prefix, the longest prefix wins, file order breaks ties.
//! Prefixes match whole segments: `/orders` matches `/orders/1`, not `/ordersx`.

use std::cmp::Reverse;
use std::sync::Arc;

use http::Method;

use crate::config::{PathMatch, Route};

#[derive(Debug)]
pub enum RouteDecision<'a> {
    Matched(&'a Arc<Route>),
    /// Some route matches the path but none the method; the allowed ones.
    MethodNotAllowed(Vec<Method>),
    NotFound,
}

#[derive(Debug, Default)]
pub struct Router {
    routes: Vec<Arc<Route>>,
}

impl Router {
    pub fn new(routes: &[Arc<Route>]) -> Self {
        let mut routes = routes.to_vec();
        // stable sort keeps file order among equals
        routes.sort_by_key(|r| {
            let (exact, len) = match &r.matcher.path {
                PathMatch::Exact(p) => (true, p.len()),
                PathMatch::Prefix(p) => (false, p.len()),
            };
            (
                Reverse(r.matcher.host.is_some()),
                Reverse(exact),
                Reverse(len),
            )
        });
        Router { routes }
    }

    /// `host` is lower-case without port; `path` is normalized.
    pub fn route(&self, host: Option<&str>, path: &str, method: &Method) -> RouteDecision<'_> {
        let mut allowed: Vec<Method> = Vec::new();
        for route in &self.routes {
            let m = &route.matcher;
            if let Some(h) = &m.host {
                if host != Some(h.as_str()) {
                    continue;
                }
            }
            let path_ok = match &m.path {
                PathMatch::Exact(p) => path == p,
                PathMatch::Prefix(p) => prefix_matches(p, path),
            };
            if !path_ok {
                continue;
            }
            if m.methods.is_empty() || m.methods.contains(method) {
                return RouteDecision::Matched(route);
            }
            for meth in &m.methods {
                if !allowed.contains(meth) {
                    allowed.push(meth.clone());
                }
            }
        }
        if allowed.is_empty() {
            RouteDecision::NotFound
        } else {
            RouteDecision::MethodNotAllowed(allowed)
        }
    }
}

fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// The `Host` header (or URI authority) reduced to a lower-case name
/// without port; IPv6 literals keep their brackets.
pub fn request_host(raw: &str) -> String {
    let raw = raw.trim();
    let host = if raw.starts_with('[') {
        match raw.find(']') {
            Some(end) => &raw[..=end],
            None => raw,
        }
    } else {
        raw.rsplit_once(':').map(|(h, _)| h).unwrap_or(raw)
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AuthPolicy, DirectResponse, RouteMatch, RouteTarget};

    fn route(name: &str, host: Option<&str>, path: PathMatch, methods: &[Method]) -> Arc<Route> {
        Arc::new(Route {
            name: name.into(),
            matcher: RouteMatch {
                host: host.map(str::to_string),
                path,
                methods: methods.to_vec(),
            },
            target: RouteTarget::Respond(DirectResponse {
                status: http::StatusCode::OK,
                body: Default::default(),
                headers: vec![],
            }),
            auth: AuthPolicy::Public,
            scopes: vec![],
            forward_authorization: false,
            strip_prefix: None,
            keep_underscore_headers: None,
            forward_claims: vec![],
            meters: Default::default(),
        })
    }

    fn name(d: RouteDecision<'_>) -> String {
        match d {
            RouteDecision::Matched(r) => r.name.clone(),
            RouteDecision::MethodNotAllowed(m) => format!("405 {m:?}"),
            RouteDecision::NotFound => "404".into(),
        }
    }

    #[test]
    fn priority_rules() {
        let r = Router::new(&[
            route("root", None, PathMatch::Prefix("/".into()), &[]),
            route("short", None, PathMatch::Prefix("/a".into()), &[]),
            route("long", None, PathMatch::Prefix("/a/b".into()), &[]),
            route("exact", None, PathMatch::Exact("/a/b".into()), &[]),
            route(
                "hosted",
                Some("api.example.com"),
                PathMatch::Prefix("/".into()),
                &[],
            ),
        ]);
        let get = Method::GET;
        assert_eq!(name(r.route(None, "/a/b", &get)), "exact");
        assert_eq!(name(r.route(None, "/a/b/c", &get)), "long");
        assert_eq!(name(r.route(None, "/a/bc", &get)), "short");
        assert_eq!(name(r.route(None, "/ab", &get)), "root");
        assert_eq!(
            name(r.route(Some("api.example.com"), "/a/b", &get)),
            "hosted"
        );
    }

    #[test]
    fn methods_and_not_found() {
        let r = Router::new(&[
            route("get", None, PathMatch::Prefix("/o".into()), &[Method::GET]),
            route("post", None, PathMatch::Exact("/o".into()), &[Method::POST]),
        ]);
        assert_eq!(name(r.route(None, "/o", &Method::GET)), "get");
        assert_eq!(name(r.route(None, "/o", &Method::POST)), "post");
        assert_eq!(
            name(r.route(None, "/o", &Method::DELETE)),
            "405 [POST, GET]"
        );
        assert_eq!(name(r.route(None, "/x", &Method::GET)), "404");
        assert_eq!(name(r.route(None, "/ox", &Method::GET)), "404");
    }

    #[test]
    fn hosts() {
        assert_eq!(request_host("Example.COM:8080"), "example.com");
        assert_eq!(request_host("[::1]:80"), "[::1]");
        assert_eq!(request_host("example.com."), "example.com");
    }
}
