//! Every answer the gateway writes itself instead of the upstream's: one
//! enum of causes and one function that maps a cause to status, JSON body
//! and headers (SPEC §4's table).

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, StatusCode};
use pingora::http::ResponseHeader;
use serde::Serialize;

use crate::auth::AuthFailure;
use crate::authz::Denial;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    BadRequest(&'static str),
    NotFound,
    MethodNotAllowed(Vec<Method>),
    HeaderTooLarge,
    /// A body beyond what the gateway's own endpoint reads.
    PayloadTooLarge,
    MissingCredentials,
    /// A credential was presented and refused; the description says why
    /// and never echoes the credential.
    InvalidToken(&'static str),
    NotSubscribed,
    AddressNotAllowed,
    RefererNotAllowed,
    /// The scopes the route requires.
    InsufficientScope(String),
    /// A plan's rate or quota is spent; the decision fills the headers.
    RateLimited(crate::ratelimit::Decision),
    StoreUnavailable,
    BadGateway,
    GatewayTimeout,
    Internal,
}

impl From<AuthFailure> for Rejection {
    fn from(failure: AuthFailure) -> Rejection {
        match failure {
            AuthFailure::Missing => Rejection::MissingCredentials,
            AuthFailure::Ambiguous(why) => Rejection::BadRequest(why),
            AuthFailure::NotAccepted(why) => Rejection::InvalidToken(why),
            AuthFailure::MalformedKey => Rejection::InvalidToken("malformed API key"),
            // the same answer for unknown and revoked: no key enumeration
            AuthFailure::UnknownKey | AuthFailure::RevokedKey | AuthFailure::RevokedClient => {
                Rejection::InvalidToken("unknown or revoked API key")
            }
            AuthFailure::ExpiredKey => Rejection::InvalidToken("API key expired"),
            AuthFailure::Token(t) => Rejection::InvalidToken(t.description()),
            AuthFailure::UnknownClient => Rejection::InvalidToken("unknown or revoked client"),
            AuthFailure::StoreUnavailable(_) => Rejection::StoreUnavailable,
        }
    }
}

impl From<Denial> for Rejection {
    fn from(denial: Denial) -> Rejection {
        match denial {
            Denial::NotSubscribed => Rejection::NotSubscribed,
            Denial::AddressNotAllowed => Rejection::AddressNotAllowed,
            Denial::RefererNotAllowed => Rejection::RefererNotAllowed,
            Denial::InsufficientScope(scopes) => Rejection::InsufficientScope(scopes),
        }
    }
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    error_description: &'a str,
}

impl Rejection {
    pub fn status(&self) -> StatusCode {
        match self {
            Rejection::BadRequest(_) => StatusCode::BAD_REQUEST,
            Rejection::NotFound => StatusCode::NOT_FOUND,
            Rejection::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Rejection::HeaderTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Rejection::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Rejection::MissingCredentials | Rejection::InvalidToken(_) => StatusCode::UNAUTHORIZED,
            Rejection::NotSubscribed
            | Rejection::InsufficientScope(_)
            | Rejection::AddressNotAllowed
            | Rejection::RefererNotAllowed => StatusCode::FORBIDDEN,
            Rejection::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            Rejection::StoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Rejection::BadGateway => StatusCode::BAD_GATEWAY,
            Rejection::GatewayTimeout => StatusCode::GATEWAY_TIMEOUT,
            Rejection::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable `error` code of the body.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::BadRequest(_) => "bad_request",
            Rejection::NotFound => "not_found",
            Rejection::MethodNotAllowed(_) => "method_not_allowed",
            Rejection::HeaderTooLarge => "request_header_fields_too_large",
            Rejection::PayloadTooLarge => "payload_too_large",
            Rejection::MissingCredentials => "missing_credentials",
            Rejection::InvalidToken(_) => "invalid_token",
            Rejection::NotSubscribed => "not_subscribed",
            Rejection::AddressNotAllowed => "address_not_allowed",
            Rejection::RefererNotAllowed => "referer_not_allowed",
            Rejection::InsufficientScope(_) => "insufficient_scope",
            Rejection::RateLimited(_) => "rate_limited",
            Rejection::StoreUnavailable => "store_unavailable",
            Rejection::BadGateway => "bad_gateway",
            Rejection::GatewayTimeout => "gateway_timeout",
            Rejection::Internal => "internal_error",
        }
    }

    pub fn description(&self) -> &'static str {
        match self {
            Rejection::BadRequest(why) => why,
            Rejection::NotFound => "no route matches this request",
            Rejection::MethodNotAllowed(_) => "the route does not accept this method",
            Rejection::HeaderTooLarge => "request head too large",
            Rejection::PayloadTooLarge => "request body too large",
            Rejection::MissingCredentials => "this route needs a credential",
            Rejection::InvalidToken(why) => why,
            Rejection::NotSubscribed => "the client is not subscribed to this service",
            Rejection::AddressNotAllowed => {
                "the client's credentials may not be used from this address"
            }
            Rejection::RefererNotAllowed => {
                "the client's credentials may not be used from this site"
            }
            Rejection::InsufficientScope(_) => "the credential lacks a scope this route requires",
            Rejection::RateLimited(_) => "the plan's rate limit or quota is spent; retry later",
            Rejection::StoreUnavailable => "credentials cannot be checked right now",
            Rejection::BadGateway => "the upstream service refused or failed",
            Rejection::GatewayTimeout => "the upstream service did not answer in time",
            Rejection::Internal => "internal error",
        }
    }

    /// Whether the connection should be closed after this answer.
    pub fn closes_connection(&self) -> bool {
        matches!(
            self,
            Rejection::BadRequest(_) | Rejection::HeaderTooLarge | Rejection::PayloadTooLarge
        )
    }

    /// Status, headers and JSON body of the answer.
    pub fn to_response(
        &self,
        request_id: &HeaderValue,
    ) -> pingora::Result<(ResponseHeader, Bytes)> {
        let body = serde_json::to_vec(&Body {
            error: self.code(),
            error_description: self.description(),
        })
        .map(Bytes::from)
        .unwrap_or_else(|_| Bytes::from_static(b"{\"error\":\"internal_error\"}"));
        let mut headers: Vec<(HeaderName, String)> = vec![
            (http::header::CONTENT_TYPE, "application/json".into()),
            (http::header::CACHE_CONTROL, "no-store".into()),
        ];
        match self {
            Rejection::MissingCredentials => headers.push((
                http::header::WWW_AUTHENTICATE,
                "Bearer realm=\"tollgate\"".into(),
            )),
            Rejection::InvalidToken(why) => headers.push((
                http::header::WWW_AUTHENTICATE,
                format!("Bearer realm=\"tollgate\", error=\"invalid_token\", error_description=\"{why}\""),
            )),
            Rejection::InsufficientScope(scope) => headers.push((
                http::header::WWW_AUTHENTICATE,
                format!("Bearer realm=\"tollgate\", error=\"insufficient_scope\", scope=\"{scope}\""),
            )),
            Rejection::StoreUnavailable => headers.push((http::header::RETRY_AFTER, "1".into())),
            Rejection::RateLimited(d) => headers.extend(
                d.headers()
                    .into_iter()
                    .map(|(k, v)| (HeaderName::from_static(k), v)),
            ),
            Rejection::MethodNotAllowed(allowed) => headers.push((
                http::header::ALLOW,
                allowed
                    .iter()
                    .map(Method::as_str)
                    .collect::<Vec<_>>()
                    .join(", "),
            )),
            _ => {}
        }
        if self.closes_connection() {
            headers.push((http::header::CONNECTION, "close".into()));
        }
        let mut resp = ResponseHeader::build(self.status(), Some(headers.len() + 2))?;
        for (name, value) in headers {
            if let Ok(v) = HeaderValue::from_str(&value) {
                let _ = resp.insert_header(name, v);
            }
        }
        if !request_id.is_empty() {
            resp.insert_header("x-request-id", request_id.clone())?;
        }
        resp.insert_header(http::header::CONTENT_LENGTH, body.len())?;
        Ok((resp, body))
    }
}

pub fn is_grpc(req: &pingora::http::RequestHeader) -> bool {
    req.headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// The gRPC status code for the HTTP status of a refusal.
pub fn grpc_status(status: http::StatusCode) -> u8 {
    match status.as_u16() {
        400 => 3,        // INVALID_ARGUMENT
        401 => 16,       // UNAUTHENTICATED
        403 => 7,        // PERMISSION_DENIED
        404 | 405 => 12, // UNIMPLEMENTED
        408 | 504 => 4,  // DEADLINE_EXCEEDED
        429 | 431 => 8,  // RESOURCE_EXHAUSTED
        500 => 13,       // INTERNAL
        502 | 503 => 14, // UNAVAILABLE
        _ => 2,          // UNKNOWN
    }
}

/// `grpc-message` is percent-encoded UTF-8 (gRPC over HTTP/2, "Responses").
pub fn grpc_message(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, GRPC_MESSAGE).to_string()
}

const GRPC_MESSAGE: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS.add(b'%');

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_token_answer_matches_the_spec() {
        let (resp, body) = Rejection::InvalidToken("unknown key")
            .to_response(&HeaderValue::from_static("rid-1"))
            .unwrap();
        assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            resp.headers.get("www-authenticate").unwrap(),
            "Bearer realm=\"tollgate\", error=\"invalid_token\", error_description=\"unknown key\""
        );
        assert_eq!(resp.headers.get("x-request-id").unwrap(), "rid-1");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"], "invalid_token");
        assert_eq!(v["error_description"], "unknown key");
    }

    #[test]
    fn method_not_allowed_lists_methods() {
        let (resp, _) = Rejection::MethodNotAllowed(vec![Method::GET, Method::POST])
            .to_response(&HeaderValue::from_static(""))
            .unwrap();
        assert_eq!(resp.headers.get("allow").unwrap(), "GET, POST");
    }

    #[test]
    fn grpc_refusals_map_to_the_grpc_codes() {
        use http::StatusCode as S;
        let codes: Vec<u8> = [401, 403, 429, 404, 405, 502, 503, 504]
            .iter()
            .map(|c| grpc_status(S::from_u16(*c).unwrap()))
            .collect();
        assert_eq!(codes, [16, 7, 8, 12, 12, 14, 14, 4]);
        assert_eq!(grpc_message("100% sure\n"), "100%25 sure%0A");
    }
}
