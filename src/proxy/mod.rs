//! The `ProxyHttp` implementation: orchestration only. A request reads in
//! order: head limits -> path normalization -> router -> auth -> upstream ->
//! metrics and access log. Every refusal goes through `reject::Rejection`.

mod answer;
pub mod conn;
pub mod forward;
mod h2_frames;
pub mod head;
pub mod reject;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use http::HeaderValue;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{Error, ErrorSource, ErrorType};
use tracing::field::Empty;

use crate::authz::Identity;
use crate::config::{Route, RouteTarget};
use crate::ratelimit::{Decision, Limiter, PlanChoice, Plans};
use crate::runtime::router::{request_host, RouteDecision};
use crate::runtime::Snapshot;
use crate::telemetry::Metrics;
use conn::HeadGuard;
use forward::{acceptable_request_id, rewrite_upstream_request, ForwardContext};
use reject::Rejection;

/// Requests between head and end of answer; SIGTERM waits for zero.
#[derive(Debug, Default)]
pub struct InFlight(AtomicUsize);

impl InFlight {
    pub fn count(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }
    fn enter(self: &Arc<Self>) -> InFlightGuard {
        self.0.fetch_add(1, Ordering::AcqRel);
        InFlightGuard(self.clone())
    }
}

pub struct InFlightGuard(Arc<InFlight>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, Ordering::AcqRel);
    }
}

pub struct Gateway {
    pub state: Arc<ArcSwap<Snapshot>>,
    pub auth: Arc<crate::auth::Authenticator>,
    pub oauth: Arc<crate::control::token::TokenService>,
    /// The self-service API under `portal.path`.
    pub portal: axum::Router,
    /// Requests per client, key and service over time.
    pub usage: Arc<crate::auth::usage::RequestUsage>,
    pub metrics: Arc<Metrics>,
    pub inflight: Arc<InFlight>,
    pub limiter: Arc<Limiter>,
    /// Upgraded connections, cut when their credential is revoked.
    pub live: Arc<crate::live::LiveConnections>,
    /// Set once this process hands its sockets to a new one or is told to
    /// stop: every answer then closes its connection, so no keep-alive
    /// connection is left idle for the shutdown to drop under a client.
    pub draining: Arc<std::sync::atomic::AtomicBool>,
}

pub struct RequestCtx {
    start: Instant,
    snapshot: Arc<Snapshot>,
    request_id: HeaderValue,
    route: Option<Arc<Route>>,
    /// The host the route was chosen by (lower case, no port).
    host: Option<String>,
    /// Normalized path, what the router saw and the access log shows.
    path: String,
    /// Normalized path plus the raw query, what the upstream receives.
    path_and_query: String,
    identity: Option<Identity>,
    /// The authenticated client (with its API key's id, when that was the
    /// credential) and its token: what usage counts by and what claims are
    /// forwarded from.
    principal: Option<Arc<crate::auth::Principal>>,
    token: Option<Arc<crate::auth::jwt::VerifiedToken>>,
    /// The plan's decision, reported in `RateLimit-*` headers.
    rate_limit: Option<Decision>,
    tried: Vec<SocketAddr>,
    upstream_start: Option<Instant>,
    span: tracing::Span,
    _inflight: InFlightGuard,
}

impl Gateway {
    /// Checks of the request head every request passes, the gateway's own
    /// endpoints included; leaves the normalized path and the host to route
    /// by in `ctx`.
    fn read_head(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<(), Rejection> {
        let config = &ctx.snapshot.config;
        // an HTTP/1 head as it came; HTTP/2 has none to hand, and Pingora
        // would write one out for every request
        let downstream = session.as_downstream();
        let raw_head = (!downstream.is_http2()).then(|| downstream.to_h1_raw());
        let req = session.req_header();
        let target = match head::check(req, raw_head.as_deref(), config.server.max_header_bytes)? {
            head::Authority::Target(t) => Some(t.to_owned()),
            head::Authority::Header(h) => {
                ctx.host = Some(request_host(h));
                None
            }
            head::Authority::None => None,
        };
        let path = crate::path::normalize_path(req.uri.path().as_bytes())
            .map_err(|_| Rejection::BadRequest("malformed request path"))?;
        ctx.path_and_query = match req.uri.query() {
            Some(q) => format!("{path}?{q}"),
            None => path.clone(),
        };
        ctx.path = path;
        if let Some(target) = target {
            // the upstream is told the host that chose the route
            ctx.host = Some(request_host(&target));
            session
                .req_header_mut()
                .insert_header(http::header::HOST, target)
                .map_err(|_| Rejection::BadRequest("invalid request target"))?;
        }
        Ok(())
    }

    /// The route for a checked head; `Err` is the answer to send instead.
    fn choose_route(
        &self,
        req: &RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<Arc<Route>, Rejection> {
        let route = match ctx
            .snapshot
            .router
            .route(ctx.host.as_deref(), &ctx.path, &req.method)
        {
            RouteDecision::Matched(r) => r.clone(),
            RouteDecision::MethodNotAllowed(allowed) => {
                return Err(Rejection::MethodNotAllowed(allowed))
            }
            RouteDecision::NotFound => return Err(Rejection::NotFound),
        };
        ctx.span.record("route", route.name.as_str());
        if let Some(prefix) = &route.strip_prefix {
            let rest = strip_path_prefix(&ctx.path, prefix);
            ctx.path_and_query = match req.uri.query() {
                Some(q) => format!("{rest}?{q}"),
                None => rest.into_owned(),
            };
        }
        ctx.route = Some(route.clone());
        Ok(route)
    }

    /// Who is calling, and may they use this route?
    async fn check_access(
        &self,
        req: &RequestHeader,
        peer: Option<std::net::IpAddr>,
        route: &Route,
        ctx: &mut RequestCtx,
    ) -> Result<(), Rejection> {
        let snapshot = ctx.snapshot.clone();
        let header = &snapshot.config.auth.api_key.header;
        let Some(authenticated) = self.auth.authenticate(req, &route.auth, header).await? else {
            return Ok(());
        };
        ctx.span
            .record("client", authenticated.principal.client_id());
        ctx.principal = Some(authenticated.principal.clone());
        ctx.token = authenticated.token.clone();
        let authorized = crate::authz::authorize(&authenticated, route).inspect_err(|d| {
            self.metrics.auth_failure(d.reason());
        })?;
        // where the credential may be used from, before any allowance is taken
        if authenticated.principal.restrictions.is_some() {
            let client_addr = forward::client_address(
                peer,
                req.headers.get("x-forwarded-for"),
                &snapshot.config.server.trusted_proxies,
            );
            let referer = req.headers.get(http::header::REFERER).map(|v| v.as_bytes());
            let origin = req.headers.get(http::header::ORIGIN).map(|v| v.as_bytes());
            crate::authz::check_restrictions(
                &authenticated.principal,
                client_addr,
                referer,
                origin,
            )
            .inspect_err(|d| self.metrics.auth_failure(d.reason()))?;
        }
        if let Some(sub) = authorized.subscription {
            let service = route.service_name();
            ctx.rate_limit = self.limit(&snapshot.plans, service, sub).await?;
        }
        ctx.identity = Some(authorized.identity);
        Ok(())
    }

    /// Take one request from the subscription's plan.
    async fn limit(
        &self,
        plans: &Plans,
        service: &str,
        sub: crate::auth::Subscribed<'_>,
    ) -> Result<Option<Decision>, Rejection> {
        let (name, policy) = match plans.choose(sub.plan()) {
            PlanChoice::Unlimited => return Ok(None),
            PlanChoice::Limited(name, policy) => (name, policy),
            PlanChoice::Unknown(name) => {
                // a plan removed from the configuration while subscriptions
                // still name it: refuse rather than lift every limit
                tracing::error!(plan = %name, subscription = %sub.id(), "subscription names a plan the configuration lacks; refusing");
                self.metrics
                    .rate_limited
                    .with_label_values(&[service, name.as_str()])
                    .inc();
                return Err(Rejection::RateLimited(Decision {
                    allowed: false,
                    limit: 0,
                    remaining: 0,
                    reset: std::time::Duration::from_secs(60),
                    retry_after: std::time::Duration::from_secs(60),
                }));
            }
        };
        let decision = self.limiter.check(sub.limit_key(), &policy, 1).await;
        if !decision.allowed {
            self.metrics
                .rate_limited
                .with_label_values(&[service, &name])
                .inc();
            return Err(Rejection::RateLimited(decision));
        }
        Ok(Some(decision))
    }
}

impl Gateway {
    /// An authenticated request became a WebSocket (or other upgraded)
    /// connection: it is cut when its credential stops passing.
    fn watch_upgrade(&self, session: &Session, ctx: &RequestCtx) {
        let (Some(identity), Some(route)) = (&ctx.identity, &ctx.route) else {
            return;
        };
        let Some(guard) = HeadGuard::of(session.as_downstream()) else {
            return;
        };
        let client = String::from_utf8_lossy(identity.consumer_id.as_bytes());
        let switch = self.live.register(
            &client,
            session.req_header(),
            route.clone(),
            &ctx.snapshot.config.auth.api_key.header,
        );
        guard.end_on(switch);
    }

    /// After an answer on a kept-alive HTTP/1 connection: the next request
    /// must start within `keepalive_timeout` and its head arrive within
    /// `header_timeout` of its first byte. Pingora would wait forever.
    fn keep_alive(&self, session: &mut Session, ctx: &RequestCtx) {
        // Some(0) is Pingora's "no limit"; None means the connection closes
        if session.get_keepalive() != Some(0) {
            return;
        }
        if !session.is_body_done() {
            // an unread body would pass through the next head's guard
            session.set_keepalive(None);
            return;
        }
        // the snapshot the request started with, already at hand
        let idle = ctx.snapshot.config.server.keepalive_timeout;
        match HeadGuard::of(session.as_downstream()) {
            // the guard ends the connection when idle too long; Pingora's
            // own limit would register a timer for every request
            Some(guard) => guard.expect_head(idle),
            None => session.set_keepalive(Some(idle.as_secs().max(1))),
        }
    }
}

/// The upstream address of the access log, `-` when none was tried.
struct Upstream<'a>(Option<&'a SocketAddr>);

impl std::fmt::Display for Upstream<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(addr) => addr.fmt(f),
            None => f.write_str("-"),
        }
    }
}

/// The path without a route's prefix (which matched whole segments), as
/// the upstream receives it: `/demo` and `/demo/` both become `/`.
fn strip_path_prefix<'a>(path: &'a str, prefix: &str) -> std::borrow::Cow<'a, str> {
    let rest = path.strip_prefix(prefix).unwrap_or(path);
    if rest.starts_with('/') {
        rest.into()
    } else {
        format!("/{rest}").into()
    }
}

fn has_body(req: &RequestHeader) -> bool {
    req.headers.contains_key(http::header::TRANSFER_ENCODING)
        || req
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0")
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn init_downstream_modules(&self, _modules: &mut pingora::modules::http::HttpModules) {
        // No response compression: Pingora's default adds its compression
        // module switched off, which still costs every request its state
        // and a call per header and body chunk.
    }

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            start: Instant::now(),
            snapshot: self.state.load_full(),
            request_id: HeaderValue::from_static(""),
            route: None,
            host: None,
            path: String::new(),
            path_and_query: String::new(),
            identity: None,
            principal: None,
            token: None,
            rate_limit: None,
            tried: Vec::new(),
            upstream_start: None,
            span: tracing::info_span!("request", request_id = Empty, route = Empty, client = Empty),
            _inflight: self.inflight.enter(),
        }
    }

    async fn early_request_filter(
        &self,
        session: &mut Session,
        _ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        if let Some(guard) = HeadGuard::of(session.as_downstream()) {
            guard.head_received();
        }
        // Requests pipelined behind this one are read after its answer and
        // answered in order, each once (RFC 9112 §9.3.2); a client that
        // half-closes after its last request still gets every answer.
        session.set_pipelining_enabled(true);
        session.set_abort_on_close(false);
        Ok(())
    }

    async fn request_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<bool> {
        if self.draining.load(Ordering::Relaxed) {
            session.set_keepalive(None);
        }
        ctx.request_id = match session.req_header().headers.get(forward::X_REQUEST_ID) {
            Some(v) if acceptable_request_id(v.as_bytes()) => v.clone(),
            _ => forward::new_request_id(),
        };
        // A new value on every request: HPACK would add each one to the
        // connection's table, after comparing it with every id already
        // there, and never find it again. Marked sensitive, it is sent as
        // a literal that is never indexed (HTTP/1 ignores the mark).
        ctx.request_id.set_sensitive(true);
        // printable ASCII, whether the client's or the gateway's own
        ctx.span
            .record("request_id", ctx.request_id.to_str().unwrap_or_default());
        if let Err(rejection) = self.read_head(session, ctx) {
            return self.reject(session, ctx, rejection).await;
        }
        if crate::control::token::TokenService::serves(&ctx.path) {
            return self.serve_oauth(session, ctx).await;
        }
        if let Some(portal) = &ctx.snapshot.config.portal {
            if portal.serves(&ctx.path) {
                let prefix = portal.path.len();
                return self.serve_portal(session, ctx, prefix).await;
            }
        }
        let route = match self.choose_route(session.req_header(), ctx) {
            Ok(route) => route,
            Err(rejection) => return self.reject(session, ctx, rejection).await,
        };
        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        if let Err(rejection) = self
            .check_access(session.req_header(), peer, &route, ctx)
            .await
        {
            return self.reject(session, ctx, rejection).await;
        }
        match &route.target {
            RouteTarget::Respond(d) => self.respond_direct(session, ctx, d).await,
            RouteTarget::Service(_) => Ok(false),
        }
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<Box<HttpPeer>> {
        let service = match ctx.route.as_ref().map(|r| &r.target) {
            Some(RouteTarget::Service(s)) => s.clone(),
            _ => return Error::e_explain(ErrorType::InternalError, "no service route"),
        };
        let pool = ctx
            .snapshot
            .upstreams
            .get(&service.name)
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "service has no pool"))?;
        let addr = pool
            .pick(&ctx.tried)
            .ok_or_else(|| Error::explain(ErrorType::ConnectNoRoute, "no upstream target left"))?;
        ctx.tried.push(addr);
        ctx.upstream_start.get_or_insert_with(Instant::now);
        let mut peer = match &service.tls {
            None => HttpPeer::new(addr, false, String::new()),
            Some(tls) => {
                let mut peer = HttpPeer::new(addr, true, tls.sni.clone());
                peer.options.verify_cert = tls.verify;
                peer.options.verify_hostname = tls.verify;
                peer.options.ca = tls.ca.clone();
                // Pingora's pool tells connections apart by address, SNI and
                // verification flags, not by the CAs trusted: a connection
                // verified for one service must not serve another's
                peer.group_key = service.pool_key;
                peer
            }
        };
        if service.http2 {
            // HTTP/2 only (ALPN h2 over TLS)
            peer.options.set_http_version(2, 2);
        }
        peer.options.connection_timeout = Some(service.connect_timeout);
        peer.options.total_connection_timeout = Some(service.connect_timeout);
        peer.options.read_timeout = Some(service.read_timeout);
        peer.options.write_timeout = Some(service.read_timeout);
        Ok(Box::new(peer))
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        let config = &ctx.snapshot.config;
        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        let keep_authorization = ctx.route.as_ref().is_some_and(|r| r.forward_authorization);
        let dropped = rewrite_upstream_request(
            upstream_request,
            &ForwardContext {
                path_and_query: &ctx.path_and_query,
                request_id: &ctx.request_id,
                peer,
                trusted_proxies: &config.server.trusted_proxies,
                api_key_header: &config.auth.api_key.header,
                keep_authorization,
                keep_underscore_headers: ctx
                    .route
                    .as_ref()
                    .and_then(|r| r.keep_underscore_headers)
                    .unwrap_or(config.server.keep_underscore_headers),
                tls: session.digest().is_some_and(|d| d.ssl_digest.is_some()),
                identity: ctx.identity.as_ref(),
            },
        )?;
        if dropped > 0 {
            self.metrics
                .dropped_headers
                .with_label_values(&["underscore"])
                .inc_by(dropped as u64);
        }
        if let Some(route) = &ctx.route {
            if !route.forward_claims.is_empty() {
                let claims = ctx.token.as_ref().and_then(|t| t.claims.as_ref());
                forward::forward_claims(upstream_request, &route.forward_claims, claims);
            }
        }
        Ok(())
    }

    async fn connected_to_upstream(
        &self,
        _session: &mut Session,
        _reused: bool,
        _peer: &HttpPeer,
        #[cfg(unix)] _fd: std::os::unix::io::RawFd,
        #[cfg(windows)] _sock: std::os::windows::io::RawSocket,
        _digest: Option<&pingora::protocols::Digest>,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        if let (Some(addr), Some(RouteTarget::Service(s))) =
            (ctx.tried.last(), ctx.route.as_ref().map(|r| &r.target))
        {
            if let Some(pool) = ctx.snapshot.upstreams.get(&s.name) {
                pool.mark_up(*addr);
            }
        }
        Ok(())
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        // Nothing reached the upstream yet, so another target is safe.
        let retry = match (ctx.tried.last(), ctx.route.as_ref().map(|r| &r.target)) {
            (Some(addr), Some(RouteTarget::Service(s))) => {
                match ctx.snapshot.upstreams.get(&s.name) {
                    Some(pool) => {
                        pool.mark_down(*addr);
                        ctx.tried.len() <= s.retries && pool.has_untried(&ctx.tried)
                    }
                    None => false,
                }
            }
            _ => false,
        };
        e.set_retry(retry);
        e
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        _ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("peer: {peer}"));
        // Only a stale pooled connection to the upstream is retried, and
        // only for a request without a body: nothing is replayed that the
        // upstream may already have acted on.
        let req = session.req_header();
        if client_reused && req.method.is_idempotent() && !has_body(req) {
            e.retry.decide_reuse(client_reused);
        } else {
            e.set_retry(false);
        }
        e
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        _upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        if let (Some(start), Some(route)) = (ctx.upstream_start, ctx.route.as_ref()) {
            self.metrics.observe_upstream(
                &route.meters,
                &route.name,
                route.service_name(),
                start.elapsed().as_secs_f64(),
            );
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        upstream_response.insert_header("x-request-id", ctx.request_id.clone())?;
        if upstream_response.status == http::StatusCode::SWITCHING_PROTOCOLS {
            self.watch_upgrade(session, ctx);
        }
        if let Some(d) = &ctx.rate_limit {
            for (name, value) in d.headers() {
                upstream_response.insert_header(name, value)?;
            }
        }
        Ok(())
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let rejection = match (e.esource(), e.etype()) {
            (_, ErrorType::HTTPStatus(code)) if *code >= 500 => Some(Rejection::BadGateway),
            (
                ErrorSource::Upstream,
                ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout,
            ) => Some(Rejection::GatewayTimeout),
            (ErrorSource::Upstream, _) => Some(Rejection::BadGateway),
            (
                ErrorSource::Downstream,
                ErrorType::ReadError | ErrorType::WriteError | ErrorType::ConnectionClosed,
            ) => None,
            (ErrorSource::Downstream, _) => Some(Rejection::BadRequest("malformed request")),
            (ErrorSource::Internal | ErrorSource::Unset, ErrorType::ConnectNoRoute) => {
                Some(Rejection::BadGateway)
            }
            (ErrorSource::Internal | ErrorSource::Unset, _) => Some(Rejection::Internal),
        };
        let mut code = 0;
        if let Some(r) = rejection {
            code = r.status().as_u16();
            if session.response_written().is_none() {
                if let Err(write_err) = self.reject(session, ctx, r).await {
                    tracing::debug!(error = %write_err, "cannot write error answer");
                }
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    fn suppress_error_log(&self, _session: &Session, _ctx: &RequestCtx, e: &Error) -> bool {
        // What a client does wrong (closing early, a malformed body) is
        // counted and logged at debug level; the error log is for the
        // gateway's own faults.
        if e.esource() != &ErrorSource::Downstream {
            return false;
        }
        let reason = match e.etype() {
            ErrorType::ConnectionClosed => "closed_early",
            ErrorType::ReadError | ErrorType::ReadTimedout => "read_error",
            ErrorType::WriteError | ErrorType::WriteTimedout => "write_error",
            ErrorType::Custom(_) | ErrorType::InvalidHTTPHeader => "malformed_body",
            _ => "other",
        };
        self.metrics
            .client_errors
            .with_label_values(&[reason])
            .inc();
        tracing::debug!(error = %e, "request ended by the client");
        true
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        self.keep_alive(session, ctx);
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .unwrap_or(0);
        let (route, service) = match &ctx.route {
            Some(r) => (r.name.as_str(), r.service_name()),
            None => ("none", "none"),
        };
        let elapsed = ctx.start.elapsed();
        if let (Some(p), true) = (&ctx.principal, ctx.snapshot.config.usage.enabled) {
            self.usage.record(p, service, status, crate::store::now());
        }
        self.metrics.count_answer(
            ctx.route.as_ref().map(|r| &r.meters),
            route,
            service,
            status,
            elapsed.as_secs_f64(),
        );
        // request id, route and client are fields of the request's span
        if ctx.route.is_none() {
            ctx.span.record("route", route);
        }
        let _enter = ctx.span.enter();
        // (the fields are worked out only when the access log is on)
        tracing::info!(
            target: "tollgate::access",
            method = %session.req_header().method,
            path = %ctx.path,
            service,
            status,
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            upstream = %Upstream(ctx.tried.last()),
            error = e.map(|e| e.etype().as_str()).unwrap_or("-"),
            "access"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::strip_path_prefix;

    #[test]
    fn a_stripped_prefix_leaves_an_absolute_path() {
        assert_eq!(strip_path_prefix("/demo", "/demo"), "/");
        assert_eq!(strip_path_prefix("/demo/", "/demo"), "/");
        assert_eq!(strip_path_prefix("/demo/a/b", "/demo"), "/a/b");
        assert_eq!(strip_path_prefix("/demo/a", "/demo/"), "/a");
        assert_eq!(strip_path_prefix("/x", "/"), "/x");
    }
}
