//! The web console (SPEC §10): "My Hub" for accounts under `portal.path` on
//! the proxy listener, and the operators' console at `/console/` on the
//! admin listener. Server-rendered HTML (maud), plain forms that work
//! without JavaScript, assets compiled into the binary.
//!
//! Every change goes through the same `Registry` and `Accounts` calls as
//! the portal and admin APIs; this module only renders and checks forms.

mod hub;
mod oidc;
mod operator;
mod view;

use std::collections::HashMap;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Request};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

pub use hub::router as hub_router;
pub use operator::router as operator_router;

/// Where the operators' console lives on the admin listener.
pub const OPERATOR_PATH: &str = "/console";

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

const CSS: &str = include_str!("assets/console.css");
const JS: &str = include_str!("assets/console.js");

/// The headers of every console answer: a strict CSP, no framing, no
/// referrer (a client id in a URL stays here), and pages are never cached
/// (they show credentials once and account data always).
pub(crate) async fn secure_headers(req: Request, next: Next) -> Response {
    let is_asset = req.uri().path().contains("/assets/");
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if !is_asset {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

/// The stylesheet and the script, from the binary.
pub(crate) async fn asset(Path(name): Path<String>) -> Response {
    let (body, kind) = match name.as_str() {
        "console.css" => (CSS, "text/css; charset=utf-8"),
        "console.js" => (JS, "text/javascript; charset=utf-8"),
        _ => return (StatusCode::NOT_FOUND, "no such asset").into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

/// A submitted form: every value of every field.
pub(crate) struct Form(HashMap<String, Vec<String>>);

impl Form {
    pub fn parse(body: &Bytes) -> Form {
        let mut map: HashMap<String, Vec<String>> = HashMap::new();
        for (k, v) in form_urlencoded::parse(body) {
            map.entry(k.into_owned()).or_default().push(v.into_owned());
        }
        Form(map)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).and_then(|v| v.first()).map(String::as_str)
    }

    pub fn text(&self, name: &str) -> String {
        self.get(name).unwrap_or("").to_string()
    }

    pub fn all(&self, name: &str) -> Vec<String> {
        self.0.get(name).cloned().unwrap_or_default()
    }
}

/// Equal in constant time (for CSRF tokens and the admin token).
pub(crate) fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(subtle::ConstantTimeEq::ct_eq(a.as_bytes(), b.as_bytes()))
}

/// A cookie's value from the request.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    for value in headers.get_all(header::COOKIE) {
        let Ok(text) = value.to_str() else { continue };
        for pair in text.split(';') {
            if let Some((k, v)) = pair.trim().split_once('=') {
                if k == name {
                    return Some(v.trim());
                }
            }
        }
    }
    None
}

/// `Set-Cookie` for a console cookie: never readable by script, never sent
/// from another site, `Secure` on TLS. `max_age` 0 deletes it.
pub(crate) fn set_cookie(
    name: &str,
    value: &str,
    path: &str,
    max_age: i64,
    tls: bool,
) -> HeaderValue {
    let secure = if tls { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// 303 to `location` (POST-redirect-GET), with optional cookies.
pub(crate) fn see_other(location: &str, cookies: Vec<HeaderValue>) -> Response {
    let mut resp = Response::builder()
        .status(StatusCode::SEE_OTHER)
        .body(Body::empty())
        .unwrap_or_default();
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    for c in cookies {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
    resp
}

/// A page with its status.
pub(crate) fn page(status: StatusCode, markup: maud::Markup) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        markup.into_string(),
    )
        .into_response()
}

/// A random token for console sessions, sign-in forms and the OpenID
/// Connect flow (URL-safe, 256 bits).
pub(crate) fn random_token() -> String {
    use base64::Engine;
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The nonce of a sign-in form: the one of the browser's cookie when it
/// has a well-formed one (so that two open tabs both work), else a new one.
pub(crate) fn form_nonce(headers: &HeaderMap, name: &str) -> String {
    cookie(headers, name)
        .filter(|n| {
            n.len() == 43
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .map_or_else(random_token, str::to_string)
}

/// The scheme and host the browser used, for absolute URLs (the OpenID
/// Connect redirect, the token URL of the curl example).
pub(crate) fn origin(headers: &HeaderMap, tls: bool) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        })
        .unwrap_or("localhost");
    format!("{}://{host}", if tls { "https" } else { "http" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_keep_every_value_of_a_field() {
        let f = Form::parse(&Bytes::from_static(
            b"name=%3Cb%3E+x&scopes=a&scopes=b&csrf=t",
        ));
        assert_eq!(f.text("name"), "<b> x");
        assert_eq!(f.all("scopes"), vec!["a", "b"]);
        assert_eq!(f.get("missing"), None);
    }

    #[test]
    fn cookies_are_found_by_exact_name() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            "a=1; tollgate_console=x; b=2".parse().unwrap(),
        );
        assert_eq!(cookie(&h, "tollgate_console"), Some("x"));
        assert_eq!(cookie(&h, "tollgate"), None);
    }

    #[test]
    fn a_sign_in_form_keeps_the_browsers_nonce_when_well_formed() {
        let mine = random_token();
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, format!("f={mine}").parse().unwrap());
        assert_eq!(form_nonce(&h, "f"), mine);
        h.insert(header::COOKIE, "f=short".parse().unwrap());
        assert_ne!(form_nonce(&h, "f"), "short");
        assert_eq!(form_nonce(&HeaderMap::new(), "f").len(), 43);
    }

    #[test]
    fn an_odd_host_header_does_not_reach_a_url() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, "evil.test/\"><".parse().unwrap());
        assert_eq!(origin(&h, true), "https://localhost");
        h.insert(header::HOST, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(origin(&h, false), "http://127.0.0.1:8080");
    }
}
