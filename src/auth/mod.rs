//! Authentication: which credential a request presents and whether it is
//! good. Credential verification (API keys against the store, JWTs against
//! issuers) arrives with the store; until then a protected route refuses
//! every request, so nothing passes that should not.

use pingora::http::RequestHeader;

use crate::config::{AuthPolicy, CredentialKind};
use crate::proxy::forward::Identity;
use crate::proxy::reject::Rejection;

/// Decide who is calling. `Ok(None)` for a public route.
pub fn authenticate(
    req: &RequestHeader,
    policy: &AuthPolicy,
    api_key_header: &http::HeaderName,
) -> Result<Option<Identity>, Rejection> {
    let kinds = match policy {
        AuthPolicy::Public => return Ok(None),
        AuthPolicy::Required(kinds) => kinds,
    };
    let presented = kinds.iter().any(|k| match k {
        CredentialKind::ApiKey => req.headers.contains_key(api_key_header),
        CredentialKind::Jwt => req
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.len() > 7 && v[..7].eq_ignore_ascii_case("bearer ")),
    });
    if presented {
        Err(Rejection::InvalidToken(
            "credential verification is not available on this node",
        ))
    } else {
        Err(Rejection::MissingCredentials)
    }
}
