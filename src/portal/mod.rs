//! The self-service API (`{portal.path}/v1`, on the proxy listener): an
//! account signs in and manages its own clients, keys and subscriptions,
//! with the same bodies and rules as the admin API and within the limits of
//! `portal`. Another account's ids answer exactly like unknown ids.
//!
//! The proxy hands every request under `portal.path` to this router with
//! the prefix removed, and a `PortalConn` telling the peer and whether the
//! connection is TLS.

mod api;
pub(crate) mod rules;

use std::net::IpAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::control::accounts::{Accounts, Caller, PortalError};
use crate::control::registry::{AdminError, Registry};
use crate::runtime::Snapshot;

pub use api::PortalDoc;

/// The session cookie a browser signs in with.
pub const SESSION_COOKIE: &str = "tollgate_session";
/// The header a cookie-authenticated change must carry.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// What the proxy knows of the connection a portal request came on.
#[derive(Debug, Clone, Copy)]
pub struct PortalConn {
    pub peer: Option<IpAddr>,
    pub tls: bool,
}

#[derive(Clone)]
pub struct PortalApi {
    pub registry: Arc<Registry>,
    pub accounts: Arc<Accounts>,
    pub snapshot: Arc<ArcSwap<Snapshot>>,
}

#[derive(Serialize, ToSchema)]
pub struct PortalErrorBody {
    pub error: &'static str,
    pub message: String,
}

impl IntoResponse for PortalError {
    fn into_response(self) -> Response {
        let message = self.to_string();
        let (status, code) = match &self {
            PortalError::Admin(e) => return portal_admin_error(e, message),
            PortalError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            PortalError::Forbidden(code, _) => (StatusCode::FORBIDDEN, *code),
            PortalError::Locked(_) => (StatusCode::TOO_MANY_REQUESTS, "too_many_attempts"),
        };
        let mut resp = (
            status,
            Json(PortalErrorBody {
                error: code,
                message,
            }),
        )
            .into_response();
        match &self {
            PortalError::Unauthorized(_) => {
                resp.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer realm=\"tollgate-portal\""),
                );
            }
            PortalError::Locked(wait) => {
                if let Ok(v) = header::HeaderValue::from_str(&wait.to_string()) {
                    resp.headers_mut().insert(header::RETRY_AFTER, v);
                }
            }
            _ => {}
        }
        resp
    }
}

fn portal_admin_error(e: &AdminError, message: String) -> Response {
    let (status, code) = match e {
        AdminError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
        AdminError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
        AdminError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
        AdminError::Unavailable(detail) => {
            tracing::error!(error = %detail, "store unavailable for a portal call");
            (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable")
        }
    };
    (
        status,
        Json(PortalErrorBody {
            error: code,
            message,
        }),
    )
        .into_response()
}

/// The portal's router, for paths with `portal.path` removed: the API at
/// `/v1/…` and the console ("My Hub") on the other paths.
pub fn router(api: PortalApi) -> axum::Router {
    api::router(api.clone()).merge(crate::console::hub_router(api))
}

/// The credential of a portal call: a bearer token (a `tgp_…` session or an
/// issuer's JWT) or the session cookie.
enum Presented<'a> {
    Bearer(&'a str),
    Cookie(&'a str),
    None,
}

fn presented(headers: &HeaderMap) -> Presented<'_> {
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let token = v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
            .unwrap_or("")
            .trim();
        return Presented::Bearer(token);
    }
    for value in headers.get_all(header::COOKIE) {
        let Ok(text) = value.to_str() else { continue };
        for pair in text.split(';') {
            if let Some(v) = pair.trim().strip_prefix(SESSION_COOKIE) {
                if let Some(token) = v.strip_prefix('=') {
                    return Presented::Cookie(token.trim());
                }
            }
        }
    }
    Presented::None
}

/// Calls a session that must first change its password may still make.
fn allowed_before_password_change(method: &Method, path: &str) -> bool {
    (method == Method::POST && path == "/v1/me/password")
        || (method == Method::DELETE && path == "/v1/session")
}

/// Resolve the caller of every call but sign-in and the OpenAPI document;
/// a cookie-authenticated change must carry the session's CSRF token.
pub(crate) async fn authenticate(
    State(api): State<PortalApi>,
    mut req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let caller = match presented(req.headers()) {
        Presented::Bearer(token) if token.starts_with(crate::secrets::SESSION_PREFIX) => {
            api.accounts.session(token).await
        }
        Presented::Bearer(token) if !token.is_empty() => api
            .accounts
            .account_of_token(token)
            .await
            .map(|(account, _)| Caller {
                account,
                session: None,
            }),
        Presented::Cookie(token) => {
            let safe = matches!(method, Method::GET | Method::HEAD | Method::OPTIONS);
            let csrf_ok = req
                .headers()
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| {
                    let want = api.accounts.csrf_token(token);
                    v.len() == want.len()
                        && subtle::ConstantTimeEq::ct_eq(v.as_bytes(), want.as_bytes()).into()
                });
            if !safe && !csrf_ok {
                return PortalError::Forbidden(
                    "csrf_failed",
                    "a change made with the session cookie needs the X-CSRF-Token header".into(),
                )
                .into_response();
            }
            api.accounts.session(token).await
        }
        Presented::Bearer(_) | Presented::None => Err(PortalError::Unauthorized(
            "sign in first: a bearer token or the session cookie is required".into(),
        )),
    };
    let caller = match caller {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let must_change = caller.session.as_ref().is_some_and(|s| s.password_change);
    if must_change && !allowed_before_password_change(&method, &path) {
        return PortalError::Forbidden(
            "password_change_required",
            "change the one-time password first (POST /me/password)".into(),
        )
        .into_response();
    }
    req.extensions_mut().insert(caller);
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_read_from_bearer_or_cookie() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            "a=b; tollgate_session=tgp_x".parse().unwrap(),
        );
        assert!(matches!(presented(&h), Presented::Cookie("tgp_x")));
        h.insert(header::AUTHORIZATION, "Bearer tgp_y".parse().unwrap());
        assert!(matches!(presented(&h), Presented::Bearer("tgp_y")));
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, "tollgate_sessionx=1".parse().unwrap());
        assert!(matches!(presented(&h), Presented::None));
    }

    #[test]
    fn a_one_time_password_session_may_only_change_it() {
        assert!(allowed_before_password_change(
            &Method::POST,
            "/v1/me/password"
        ));
        assert!(allowed_before_password_change(
            &Method::DELETE,
            "/v1/session"
        ));
        assert!(!allowed_before_password_change(&Method::GET, "/v1/clients"));
        assert!(!allowed_before_password_change(&Method::GET, "/v1/me"));
        assert!(!allowed_before_password_change(
            &Method::POST,
            "/v1/clients"
        ));
    }
}
