//! "Sign in with <issuer>": the OpenID Connect authorization code flow with
//! PKCE, `state` and `nonce`, against the issuer's discovery document. The
//! flow's secrets live in a short-lived cookie sealed with the gateway's
//! pepper (so any node of a cluster can finish a flow another began); the ID
//! token is then verified like any token of that issuer, by
//! `Accounts::sign_in_token`, which opens the portal session.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::Extension;
use base64::Engine;
use maud::html;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::hub::{browser_issuers, portal_off, session_cookie, settings, Hub};
use super::{cookie, page, same_secret, see_other, set_cookie, view};
use crate::config::PortalSettings;
use crate::portal::PortalConn;

const FLOW_COOKIE: &str = "tollgate_oidc";
/// How long a browser may take at its identity provider.
const FLOW_SECS: i64 = 600;
const DISCOVERY_TTL: Duration = Duration::from_secs(3600);
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
}

/// Discovery documents by issuer URL, and the HTTP client that fetches them.
pub struct Flows {
    http: reqwest::Client,
    discovered: Mutex<HashMap<String, (Instant, Discovery)>>,
}

impl Flows {
    pub fn new() -> Self {
        Flows {
            http: reqwest::Client::builder()
                .timeout(CALL_TIMEOUT)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap_or_default(),
            discovered: Mutex::new(HashMap::new()),
        }
    }

    async fn discover(&self, issuer: &str) -> Result<Discovery, String> {
        {
            let cache = self.discovered.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((at, d)) = cache.get(issuer) {
                if at.elapsed() < DISCOVERY_TTL {
                    return Ok(d.clone());
                }
            }
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let d: Discovery = self
            .http
            .get(&url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| format!("discovery at {url} failed: {e}"))?
            .json()
            .await
            .map_err(|e| format!("discovery at {url} is not a discovery document: {e}"))?;
        if d.issuer != issuer {
            return Err(format!(
                "the discovery document names issuer `{}`, not `{issuer}`",
                d.issuer
            ));
        }
        self.discovered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(issuer.to_string(), (Instant::now(), d.clone()));
        Ok(d)
    }
}

impl Default for Flows {
    fn default() -> Self {
        Self::new()
    }
}

/// What the browser carries between the redirect and the callback.
#[derive(Serialize, Deserialize)]
struct Flow {
    issuer: String,
    state: String,
    nonce: String,
    verifier: String,
    expires_at: i64,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The PKCE S256 challenge of a verifier.
fn challenge(verifier: &str) -> String {
    b64(&Sha256::digest(verifier.as_bytes()))
}

/// The flow cookie: SameSite=Lax, because the identity provider's redirect
/// back is a navigation from another site; it holds nothing that signs in.
fn flow_cookie(portal: &PortalSettings, value: &str, max_age: i64, tls: bool) -> HeaderValue {
    let secure = if tls { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{FLOW_COOKIE}={value}; Path={}; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}",
        portal.path
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

struct IssuerClient {
    url: String,
    client_id: String,
    secret: Option<String>,
}

fn issuer_client(hub: &Hub, name: &str) -> Option<IssuerClient> {
    let snap = hub.api.snapshot.load();
    let iss = snap.config.auth.issuers.iter().find(|i| i.name == name)?;
    Some(IssuerClient {
        url: iss.issuer.clone(),
        client_id: iss.client_id.clone()?,
        secret: iss
            .client_secret_env
            .as_ref()
            .and_then(|v| std::env::var(v).ok()),
    })
}

fn tls_of(conn: &Option<Extension<PortalConn>>) -> bool {
    conn.as_ref().is_some_and(|Extension(c)| c.tls)
}

fn failed(portal: &PortalSettings, status: StatusCode, text: &str) -> Response {
    let base = &portal.path;
    let nav = view::Nav {
        links: vec![],
        sign_out: None,
        who: None,
    };
    page(
        status,
        view::frame(
            "Sign-in failed",
            "My Hub",
            &format!("{base}/assets"),
            &nav,
            html! {
                p.error role="alert" { (text) }
                p { a href={ (base) "/sign-in" } { "Back to sign-in" } }
            },
        ),
    )
}

/// Start: off to the identity provider with a fresh state, nonce and PKCE
/// verifier.
pub(super) async fn start(
    State(hub): State<Hub>,
    conn: Option<Extension<PortalConn>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    let Some(portal) = settings(&hub.api) else {
        return portal_off();
    };
    if !browser_issuers(&hub.api, &portal).contains(&name) {
        return failed(&portal, StatusCode::NOT_FOUND, "No such way to sign in.");
    }
    let Some(client) = issuer_client(&hub, &name) else {
        return failed(&portal, StatusCode::NOT_FOUND, "No such way to sign in.");
    };
    let discovery = match hub.oidc.discover(&client.url).await {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(issuer = %name, error = %e, "OpenID Connect discovery failed");
            return failed(
                &portal,
                StatusCode::BAD_GATEWAY,
                "The identity provider cannot be reached. Try again later.",
            );
        }
    };
    let tls = tls_of(&conn);
    let flow = Flow {
        issuer: name,
        state: super::random_token(),
        nonce: super::random_token(),
        verifier: super::random_token(),
        expires_at: crate::store::now() + FLOW_SECS,
    };
    let redirect_uri = format!("{}{}/callback", super::origin(&headers, tls), portal.path);
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("response_type", "code")
        .append_pair("client_id", &client.client_id)
        .append_pair("redirect_uri", &redirect_uri)
        .append_pair("scope", "openid")
        .append_pair("state", &flow.state)
        .append_pair("nonce", &flow.nonce)
        .append_pair("code_challenge", &challenge(&flow.verifier))
        .append_pair("code_challenge_method", "S256")
        .finish();
    let sep = if discovery.authorization_endpoint.contains('?') {
        '&'
    } else {
        '?'
    };
    let payload = b64(&serde_json::to_vec(&flow).unwrap_or_default());
    let seal = hub.api.accounts.csrf_token(&format!("oidc:{payload}"));
    see_other(
        &format!("{}{sep}{query}", discovery.authorization_endpoint),
        vec![flow_cookie(
            &portal,
            &format!("{payload}.{seal}"),
            FLOW_SECS,
            tls,
        )],
    )
}

#[derive(Deserialize)]
pub(super) struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// The flow of this browser, if its cookie is intact and not expired.
fn open_flow(hub: &Hub, headers: &HeaderMap) -> Option<Flow> {
    let (payload, seal) = cookie(headers, FLOW_COOKIE)?.split_once('.')?;
    let want = hub.api.accounts.csrf_token(&format!("oidc:{payload}"));
    if !same_secret(seal, &want) {
        return None;
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let flow: Flow = serde_json::from_slice(&bytes).ok()?;
    (flow.expires_at > crate::store::now()).then_some(flow)
}

/// The `nonce` claim of a JWT. Read before the signature is checked, and
/// only compared: the token is verified in full before it signs anyone in.
fn nonce_of(id_token: &str) -> Option<String> {
    let payload = id_token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("nonce")?.as_str().map(str::to_string)
}

#[derive(Deserialize)]
struct TokenAnswer {
    id_token: Option<String>,
}

/// Back from the identity provider: check `state`, trade the code (with the
/// PKCE verifier) for an ID token, check its `nonce`, verify it and sign in.
pub(super) async fn callback(
    State(hub): State<Hub>,
    conn: Option<Extension<PortalConn>>,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> Response {
    let Some(portal) = settings(&hub.api) else {
        return portal_off();
    };
    let tls = tls_of(&conn);
    let Some(flow) = open_flow(&hub, &headers) else {
        return failed(
            &portal,
            StatusCode::BAD_REQUEST,
            "This sign-in has expired or was not started here. Please start again.",
        );
    };
    if !same_secret(q.state.as_deref().unwrap_or(""), &flow.state) {
        return failed(
            &portal,
            StatusCode::BAD_REQUEST,
            "The answer of the identity provider does not belong to this sign-in.",
        );
    }
    if q.error.is_some() {
        return failed(
            &portal,
            StatusCode::UNAUTHORIZED,
            "The identity provider did not sign you in.",
        );
    }
    let (Some(code), Some(client)) = (q.code, issuer_client(&hub, &flow.issuer)) else {
        return failed(
            &portal,
            StatusCode::BAD_REQUEST,
            "The sign-in is incomplete.",
        );
    };
    let discovery = match hub.oidc.discover(&client.url).await {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(issuer = %flow.issuer, error = %e, "OpenID Connect discovery failed");
            return failed(
                &portal,
                StatusCode::BAD_GATEWAY,
                "The identity provider cannot be reached. Try again later.",
            );
        }
    };
    let redirect_uri = format!("{}{}/callback", super::origin(&headers, tls), portal.path);
    let mut form = vec![
        ("grant_type", "authorization_code".to_string()),
        ("code", code),
        ("redirect_uri", redirect_uri),
        ("code_verifier", flow.verifier.clone()),
    ];
    let mut req = hub.oidc.http.post(&discovery.token_endpoint);
    match &client.secret {
        // client_secret_basic: both parts form-encoded first (RFC 6749 §2.3.1)
        Some(secret) => {
            let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            req = req.basic_auth(enc(&client.client_id), Some(enc(secret)));
        }
        None => form.push(("client_id", client.client_id.clone())),
    }
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form.iter().map(|(k, v)| (*k, v.as_str())))
        .finish();
    let answer = req
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .and_then(|r| r.error_for_status());
    let id_token = match answer {
        Ok(r) => r.json::<TokenAnswer>().await.ok().and_then(|t| t.id_token),
        Err(e) => {
            tracing::warn!(issuer = %flow.issuer, error = %e, "OpenID Connect code exchange failed");
            None
        }
    };
    let Some(id_token) = id_token else {
        return failed(
            &portal,
            StatusCode::BAD_GATEWAY,
            "The identity provider did not answer with an ID token.",
        );
    };
    if !nonce_of(&id_token).is_some_and(|n| same_secret(&n, &flow.nonce)) {
        return failed(
            &portal,
            StatusCode::UNAUTHORIZED,
            "The ID token does not belong to this sign-in.",
        );
    }
    let session = match hub.api.accounts.sign_in_token(&id_token).await {
        Ok(s) => s,
        Err(e) => return failed(&portal, StatusCode::FORBIDDEN, &e.to_string()),
    };
    // A page rather than a redirect: the browser arrived here from another
    // site, and only a navigation started here sends the SameSite=Strict
    // session cookie on the next request.
    let home = format!("{}/", portal.path);
    let nav = view::Nav {
        links: vec![],
        sign_out: None,
        who: None,
    };
    let mut resp = page(
        StatusCode::OK,
        view::frame(
            "Signed in",
            "My Hub",
            &format!("{}/assets", portal.path),
            &nav,
            html! {
                meta http-equiv="refresh" content={ "0;url=" (home) };
                p { a #continue href=(home) { "Continue to your clients" } }
            },
        ),
    );
    let h = resp.headers_mut();
    h.append(header::SET_COOKIE, session_cookie(&portal, &session, tls));
    h.append(header::SET_COOKIE, flow_cookie(&portal, "", 0, tls));
    h.append(
        header::SET_COOKIE,
        set_cookie("tollgate_sign_in", "", &portal.path, 0, tls),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_challenge_is_rfc7636_s256() {
        // RFC 7636, appendix B
        assert_eq!(
            challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn the_nonce_is_read_from_the_payload() {
        let payload = b64(br#"{"sub":"u","nonce":"n-1"}"#);
        assert_eq!(nonce_of(&format!("h.{payload}.s")), Some("n-1".into()));
        assert_eq!(nonce_of("garbage"), None);
    }
}
