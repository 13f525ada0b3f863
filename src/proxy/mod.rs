//! The `ProxyHttp` implementation: orchestration only. A request reads in
//! order: head limits -> path normalization -> router -> auth -> upstream ->
//! metrics and access log. Every refusal goes through `reject::Rejection`.

pub mod conn;
pub mod forward;
pub mod path;
pub mod reject;
pub mod router;
pub mod upstream;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{Error, ErrorSource, ErrorType};
use tracing::field::Empty;

use crate::config::{Config, Route, RouteTarget};
use crate::ratelimit::{Decision, Limiter, PlanChoice, Plans};
use crate::telemetry::Metrics;
use forward::{acceptable_request_id, rewrite_upstream_request, ForwardContext, Identity};
use reject::Rejection;
use router::{request_host, RouteDecision, Router};
use upstream::Upstreams;

/// Everything derived from one configuration; swapped whole on reload, and
/// a request keeps the snapshot it started with.
pub struct Snapshot {
    pub config: Arc<Config>,
    pub router: Router,
    pub upstreams: Upstreams,
    pub plans: Plans,
}

impl Snapshot {
    pub fn new(config: Arc<Config>) -> Self {
        Snapshot {
            router: Router::new(&config.routes),
            upstreams: Upstreams::new(config.services.values()),
            plans: Plans::new(&config),
            config,
        }
    }
}

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
    pub metrics: Arc<Metrics>,
    pub inflight: Arc<InFlight>,
    pub limiter: Arc<Limiter>,
    /// Set once this process hands its sockets to a new one or is told to
    /// stop: every answer then closes its connection, so no keep-alive
    /// connection is left idle for the shutdown to drop under a client.
    pub draining: Arc<std::sync::atomic::AtomicBool>,
}

pub struct RequestCtx {
    start: Instant,
    snapshot: Arc<Snapshot>,
    request_id: String,
    route: Option<Arc<Route>>,
    /// Normalized path, what the router saw and the access log shows.
    path: String,
    /// Normalized path plus the raw query, what the upstream receives.
    path_and_query: String,
    identity: Option<Identity>,
    /// The plan's decision, reported in `RateLimit-*` headers.
    rate_limit: Option<Decision>,
    tried: Vec<SocketAddr>,
    upstream_start: Option<Instant>,
    span: tracing::Span,
    _inflight: InFlightGuard,
}

impl Gateway {
    async fn reject(
        &self,
        session: &mut Session,
        ctx: &RequestCtx,
        r: Rejection,
    ) -> pingora::Result<bool> {
        let (mut resp, body) = r.to_response(&ctx.request_id)?;
        // a limited request that then failed upstream still reports its
        // allowance (a 429 carries its own decision)
        if let (Some(d), false) = (&ctx.rate_limit, matches!(r, Rejection::RateLimited(_))) {
            for (name, value) in d.headers() {
                resp.insert_header(name, value)?;
            }
        }
        if r.closes_connection() {
            session.set_keepalive(None);
        }
        let head_only = session.req_header().method == http::Method::HEAD;
        session
            .write_response_header(Box::new(resp), head_only)
            .await?;
        if !head_only {
            session.write_response_body(Some(body), true).await?;
        }
        Ok(true)
    }

    async fn respond_direct(
        &self,
        session: &mut Session,
        ctx: &RequestCtx,
        d: &crate::config::DirectResponse,
    ) -> pingora::Result<bool> {
        let mut resp = ResponseHeader::build(d.status, Some(d.headers.len() + 2))?;
        for (k, v) in &d.headers {
            resp.insert_header(k.clone(), v.clone())?;
        }
        resp.insert_header(http::header::CONTENT_LENGTH, d.body.len())?;
        resp.insert_header("x-request-id", ctx.request_id.as_str())?;
        let head_only = session.req_header().method == http::Method::HEAD || d.body.is_empty();
        session
            .write_response_header(Box::new(resp), head_only)
            .await?;
        if !head_only {
            session
                .write_response_body(Some(d.body.clone()), true)
                .await?;
        }
        Ok(true)
    }

    /// Checks of the request head every request passes, the gateway's own
    /// endpoints included; leaves the normalized path in `ctx`.
    fn read_head(&self, session: &Session, ctx: &mut RequestCtx) -> Result<(), Rejection> {
        let config = &ctx.snapshot.config;
        let req = session.req_header();
        let raw_head = session.as_downstream().to_h1_raw();
        if raw_head.len() > config.server.max_header_bytes {
            return Err(Rejection::HeaderTooLarge);
        }
        // RFC 9112 §6.1: both framings at once may be request smuggling.
        // Pingora drops Content-Length in that case, so look at the raw head.
        if req.headers.contains_key(http::header::TRANSFER_ENCODING)
            && contains_ignore_case(&raw_head, b"\ncontent-length:")
        {
            return Err(Rejection::BadRequest(
                "conflicting Content-Length and Transfer-Encoding",
            ));
        }
        if req.headers.get_all(http::header::HOST).iter().count() > 1 {
            return Err(Rejection::BadRequest("more than one Host header"));
        }
        let path = path::normalize_path(req.uri.path().as_bytes())
            .map_err(|_| Rejection::BadRequest("malformed request path"))?;
        ctx.path_and_query = match req.uri.query() {
            Some(q) => format!("{path}?{q}"),
            None => path.clone(),
        };
        ctx.path = path;
        Ok(())
    }

    /// The route for a checked head; `Err` is the answer to send instead.
    fn choose_route(
        &self,
        req: &RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<Arc<Route>, Rejection> {
        let host = req
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri.host())
            .map(request_host);
        let route = match ctx
            .snapshot
            .router
            .route(host.as_deref(), &ctx.path, &req.method)
        {
            RouteDecision::Matched(r) => r.clone(),
            RouteDecision::MethodNotAllowed(allowed) => {
                return Err(Rejection::MethodNotAllowed(allowed))
            }
            RouteDecision::NotFound => return Err(Rejection::NotFound),
        };
        ctx.span.record("route", route.name.as_str());
        ctx.route = Some(route.clone());
        Ok(route)
    }

    /// The built-in authorization server's endpoints, answered here.
    async fn serve_oauth(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<bool> {
        use crate::control::token::{OAuthAnswer, MAX_FORM_BYTES};
        let mut body = Vec::new();
        let mut too_large = false;
        while let Some(chunk) = session.read_request_body().await? {
            if body.len() + chunk.len() > MAX_FORM_BYTES {
                too_large = true;
                break;
            }
            body.extend_from_slice(&chunk);
        }
        let answer = if too_large {
            session.set_keepalive(None);
            OAuthAnswer {
                status: http::StatusCode::PAYLOAD_TOO_LARGE,
                headers: vec![("content-type", "application/json".into())],
                body:
                    br#"{"error":"invalid_request","error_description":"request body too large"}"#
                        .to_vec(),
            }
        } else {
            let req = session.req_header();
            let peer = forward::client_address(
                session
                    .client_addr()
                    .and_then(|a| a.as_inet())
                    .map(|a| a.ip()),
                req.headers.get("x-forwarded-for"),
                &ctx.snapshot.config.server.trusted_proxies,
            );
            self.oauth
                .handle(&req.method, &ctx.path, &req.headers, &body, peer)
                .await
        };
        let mut resp = ResponseHeader::build(answer.status, Some(answer.headers.len() + 2))?;
        for (k, v) in &answer.headers {
            resp.insert_header(*k, v.as_str())?;
        }
        resp.insert_header(http::header::CONTENT_LENGTH, answer.body.len())?;
        resp.insert_header("x-request-id", ctx.request_id.as_str())?;
        let head_only = session.req_header().method == http::Method::HEAD;
        session
            .write_response_header(Box::new(resp), head_only)
            .await?;
        if !head_only {
            session
                .write_response_body(Some(answer.body.into()), true)
                .await?;
        }
        Ok(true)
    }

    /// Who is calling, and may they use this route?
    async fn check_access(
        &self,
        req: &RequestHeader,
        route: &Route,
        ctx: &mut RequestCtx,
    ) -> Result<(), Rejection> {
        let snapshot = ctx.snapshot.clone();
        let header = &snapshot.config.auth.api_key.header;
        let Some(authenticated) = self.auth.authenticate(req, &route.auth, header).await? else {
            return Ok(());
        };
        ctx.span
            .record("client", authenticated.principal.client_id.as_str());
        let authorized = crate::authz::authorize(&authenticated, route).inspect_err(|r| {
            self.metrics.auth_failure(r.code());
        })?;
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
        sub: &crate::auth::Subscribed,
    ) -> Result<Option<Decision>, Rejection> {
        let (name, policy) = match plans.choose(sub.plan.as_deref()) {
            PlanChoice::Unlimited => return Ok(None),
            PlanChoice::Limited(name, policy) => (name, policy),
            PlanChoice::Unknown(name) => {
                // a plan removed from the configuration while subscriptions
                // still name it: refuse rather than lift every limit
                tracing::error!(plan = %name, subscription = %sub.id, "subscription names a plan the configuration lacks; refusing");
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
        let decision = self.limiter.check(&sub.limit_key, &policy, 1).await;
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

fn contains_ignore_case(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
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

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            start: Instant::now(),
            snapshot: self.state.load_full(),
            request_id: String::new(),
            route: None,
            path: String::new(),
            path_and_query: String::new(),
            identity: None,
            rate_limit: None,
            tried: Vec::new(),
            upstream_start: None,
            span: tracing::info_span!("request", request_id = Empty, route = Empty, client = Empty),
            _inflight: self.inflight.enter(),
        }
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
            Some(v) if acceptable_request_id(v.as_bytes()) => {
                String::from_utf8_lossy(v.as_bytes()).into_owned()
            }
            _ => uuid::Uuid::new_v4().to_string(),
        };
        ctx.span.record("request_id", ctx.request_id.as_str());
        if let Err(rejection) = self.read_head(session, ctx) {
            return self.reject(session, ctx, rejection).await;
        }
        if crate::control::token::TokenService::serves(&ctx.path) {
            return self.serve_oauth(session, ctx).await;
        }
        let route = match self.choose_route(session.req_header(), ctx) {
            Ok(route) => route,
            Err(rejection) => return self.reject(session, ctx, rejection).await,
        };
        if let Err(rejection) = self.check_access(session.req_header(), &route, ctx).await {
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
        let mut peer = HttpPeer::new(addr, false, String::new());
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
        rewrite_upstream_request(
            upstream_request,
            &ForwardContext {
                path_and_query: &ctx.path_and_query,
                request_id: &ctx.request_id,
                peer,
                trusted_proxies: &config.server.trusted_proxies,
                api_key_header: &config.auth.api_key.header,
                keep_authorization,
                identity: ctx.identity.as_ref(),
            },
        )
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
            self.metrics
                .upstream_duration
                .with_label_values(&[route.service_name()])
                .observe(start.elapsed().as_secs_f64());
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        upstream_response.insert_header("x-request-id", ctx.request_id.as_str())?;
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

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .unwrap_or(0);
        let (route, service) = match &ctx.route {
            Some(r) => (r.name.as_str(), r.service_name()),
            None => ("none", "none"),
        };
        let elapsed = ctx.start.elapsed();
        let status_label = status.to_string();
        self.metrics
            .requests
            .with_label_values(&[route, service, status_label.as_str()])
            .inc();
        self.metrics
            .request_duration
            .with_label_values(&[route])
            .observe(elapsed.as_secs_f64());
        let method = session.req_header().method.as_str().to_owned();
        let upstream = ctx.tried.last().map(|a| a.to_string());
        let _enter = ctx.span.enter();
        tracing::info!(
            target: "tollgate::access",
            method = %method,
            path = %ctx.path,
            route,
            service,
            status,
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            request_id = %ctx.request_id,
            upstream = upstream.as_deref().unwrap_or("-"),
            error = e.map(|e| e.etype().as_str()).unwrap_or("-"),
            "access"
        );
    }
}
