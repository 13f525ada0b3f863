//! The answers the gateway writes itself: refusals (JSON, or gRPC statuses
//! for a gRPC request), a route's direct response, and the built-in token
//! endpoint's answers.

use pingora::http::ResponseHeader;
use pingora::proxy::Session;

use super::reject::{grpc_message, grpc_status, is_grpc, Rejection};
use super::{forward, Gateway, RequestCtx};

impl Gateway {
    pub(super) async fn reject(
        &self,
        session: &mut Session,
        ctx: &RequestCtx,
        r: Rejection,
    ) -> pingora::Result<bool> {
        if is_grpc(session.req_header()) {
            return self.reject_grpc(session, ctx, r).await;
        }
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

    /// A gRPC client reads a refusal from the status trailers: HTTP 200,
    /// `grpc-status` and `grpc-message`, no body (a trailers-only answer).
    pub(super) async fn reject_grpc(
        &self,
        session: &mut Session,
        ctx: &RequestCtx,
        r: Rejection,
    ) -> pingora::Result<bool> {
        let (http, _) = r.to_response(&ctx.request_id)?;
        let mut resp = ResponseHeader::build(http::StatusCode::OK, Some(http.headers.len() + 4))?;
        for (name, value) in http.headers.iter() {
            if name != http::header::CONTENT_TYPE && name != http::header::CONTENT_LENGTH {
                resp.insert_header(name.clone(), value.clone())?;
            }
        }
        if let (Some(d), false) = (&ctx.rate_limit, matches!(r, Rejection::RateLimited(_))) {
            for (name, value) in d.headers() {
                resp.insert_header(name, value)?;
            }
        }
        resp.insert_header(http::header::CONTENT_TYPE, "application/grpc")?;
        resp.insert_header("grpc-status", grpc_status(r.status()).to_string())?;
        resp.insert_header("grpc-message", grpc_message(r.description()))?;
        resp.insert_header(http::header::CONTENT_LENGTH, 0)?;
        if r.closes_connection() {
            session.set_keepalive(None);
        }
        match session.as_downstream_mut() {
            // one HEADERS frame that ends the stream; Pingora's session
            // would add an empty DATA frame, which gRPC clients refuse
            pingora::protocols::http::ServerSession::H2(h2) => {
                h2.write_response_header(Box::new(resp), true)?
            }
            _ => session.write_response_header(Box::new(resp), true).await?,
        }
        Ok(true)
    }

    pub(super) async fn respond_direct(
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
        resp.insert_header("x-request-id", ctx.request_id.clone())?;
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

    /// The built-in authorization server's endpoints, answered here.
    pub(super) async fn serve_oauth(
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
        resp.insert_header("x-request-id", ctx.request_id.clone())?;
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
}

/// Portal requests and answers are small JSON documents.
const MAX_PORTAL_BODY: usize = 64 * 1024;

impl Gateway {
    /// The self-service API under `portal.path`, answered by the portal's
    /// router with the prefix removed.
    pub(super) async fn serve_portal(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        prefix_len: usize,
    ) -> pingora::Result<bool> {
        use http_body_util::BodyExt;
        use tower::ServiceExt;

        let mut body = Vec::new();
        while let Some(chunk) = session.read_request_body().await? {
            if body.len() + chunk.len() > MAX_PORTAL_BODY {
                return self.reject(session, ctx, Rejection::PayloadTooLarge).await;
            }
            body.extend_from_slice(&chunk);
        }
        let req = session.req_header();
        let config = &ctx.snapshot.config;
        let peer = forward::client_address(
            session
                .client_addr()
                .and_then(|a| a.as_inet())
                .map(|a| a.ip()),
            req.headers.get("x-forwarded-for"),
            &config.server.trusted_proxies,
        );
        let local_port = session
            .server_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.port());
        let tls = config
            .server
            .listen
            .iter()
            .any(|l| Some(l.addr.port()) == local_port && l.tls.is_some());
        let target = match &ctx.path_and_query[prefix_len..] {
            "" => "/",
            rest => rest,
        };
        let mut builder = http::Request::builder()
            .method(req.method.clone())
            .uri(target);
        for (name, value) in req.headers.iter() {
            builder = builder.header(name, value);
        }
        let request = match builder
            .extension(crate::portal::PortalConn { peer, tls })
            .body(axum::body::Body::from(body))
        {
            Ok(r) => r,
            Err(_) => {
                return self
                    .reject(session, ctx, Rejection::BadRequest("malformed request"))
                    .await
            }
        };
        let Ok(answer) = self.portal.clone().oneshot(request).await;
        let (parts, body) = answer.into_parts();
        let bytes = match body.collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => {
                return Err(pingora::Error::because(
                    pingora::ErrorType::InternalError,
                    "portal answer",
                    e,
                ))
            }
        };
        let mut resp = ResponseHeader::build(parts.status, Some(parts.headers.len() + 2))?;
        for (name, value) in parts.headers.iter() {
            if name != http::header::CONTENT_LENGTH {
                resp.append_header(name.clone(), value.clone())?;
            }
        }
        resp.insert_header(http::header::CONTENT_LENGTH, bytes.len())?;
        resp.insert_header("x-request-id", ctx.request_id.clone())?;
        let head_only = session.req_header().method == http::Method::HEAD || bytes.is_empty();
        session
            .write_response_header(Box::new(resp), head_only)
            .await?;
        if !head_only {
            session.write_response_body(Some(bytes), true).await?;
        }
        Ok(true)
    }
}
