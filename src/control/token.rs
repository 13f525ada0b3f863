//! The built-in OAuth2 authorization server on the proxy listener (SPEC §5):
//! `POST /oauth2/token` (client_credentials, RFC 6749), the JWKS and the
//! RFC 8414 metadata. Tokens are RFC 9068 access tokens signed with the
//! newest stored key; the proxy verifies them through the built-in issuer.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use http::{HeaderMap, Method, StatusCode};
use serde_json::{json, Value};

use crate::auth::jwt::JwtAuth;
use crate::auth::keys;
use crate::ratelimit::{Decision, Limiter, Policy, Rate};
use crate::runtime::Snapshot;
use crate::secrets::{self, Pepper};
use crate::store::{now, AuthType, SigningKey, Status, Store, StoreError};
use crate::telemetry::Metrics;

pub const TOKEN_PATH: &str = "/oauth2/token";
pub const JWKS_PATH: &str = "/.well-known/jwks.json";
pub const METADATA_PATH: &str = "/.well-known/oauth-authorization-server";
pub const INTROSPECT_PATH: &str = "/oauth2/introspect";
pub const REVOKE_PATH: &str = "/oauth2/revoke";
/// Tokens issued per client.
pub const ISSUE_LIMIT: Policy = Policy::rate(Rate::new(20, Duration::from_secs(1)));
/// Failed authentications per (source address, client id).
pub const FAILURE_LIMIT: Policy = Policy::rate(Rate::new(10, Duration::from_secs(60)));
/// Failed authentications per source address, whatever the client.
pub const ADDRESS_FAILURE_LIMIT: Policy = Policy::rate(Rate::new(50, Duration::from_secs(60)));

/// Largest form body accepted by the token endpoint.
pub const MAX_FORM_BYTES: usize = 16 * 1024;

/// An answer of the authorization server.
#[derive(Debug)]
pub struct OAuthAnswer {
    pub status: StatusCode,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl OAuthAnswer {
    fn json(status: StatusCode, v: &Value) -> Self {
        OAuthAnswer {
            status,
            headers: vec![
                ("content-type", "application/json".into()),
                ("cache-control", "no-store".into()),
                ("pragma", "no-cache".into()),
            ],
            body: v.to_string().into_bytes(),
        }
    }

    /// RFC 6749 §5.2
    fn error(code: &'static str, description: &str, basic: bool) -> Self {
        let status = if code == "invalid_client" {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::BAD_REQUEST
        };
        let mut a = Self::json(
            status,
            &json!({"error": code, "error_description": description}),
        );
        if code == "invalid_client" && basic {
            a.headers
                .push(("www-authenticate", "Basic realm=\"tollgate\"".into()));
        }
        a
    }

    fn rate_limited(decision: &Decision) -> Self {
        let mut a = Self::json(
            StatusCode::TOO_MANY_REQUESTS,
            &json!({"error": "rate_limited", "error_description": "too many requests; retry later"}),
        );
        a.headers.extend(decision.headers());
        a
    }

    pub fn method_not_allowed(allow: &str) -> Self {
        let mut a = Self::json(
            StatusCode::METHOD_NOT_ALLOWED,
            &json!({"error": "method_not_allowed", "error_description": "use POST"}),
        );
        a.headers.push(("allow", allow.to_string()));
        a
    }
}

pub struct TokenService {
    store: Arc<dyn Store>,
    pepper: Pepper,
    jwt: Arc<JwtAuth>,
    snapshot: Arc<ArcSwap<Snapshot>>,
    metrics: Arc<Metrics>,
    signing_keys: ArcSwap<Vec<SigningKey>>,
    limiter: Arc<Limiter>,
    /// The current key of the configured algorithm, parsed once.
    signer: ArcSwap<Option<(String, keys::Signer)>>,
    /// Uses of each client secret (flushed with the keys' use).
    pub secret_usage: Arc<crate::auth::usage::UsageRecorder>,
}

fn current_signer(keys_: &[SigningKey], algorithm: &str) -> Option<(String, keys::Signer)> {
    let key = keys_
        .iter()
        .find(|k| k.retired_at.is_none() && k.algorithm == algorithm)?;
    match keys::Signer::load(key) {
        Ok(s) => Some((key.kid.clone(), s)),
        Err(e) => {
            tracing::error!(error = %e, "cannot load the signing key");
            None
        }
    }
}

/// RFC 6749 §2.3.1: client id and secret are form-url-encoded before Basic.
/// The value of a form parameter (each appears at most once, see `form`).
fn param<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn form_decode(s: &str) -> Option<String> {
    let plus = s.replace('+', " ");
    percent_encoding::percent_decode_str(&plus)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

pub struct ClientCredentials {
    id: String,
    secret: String,
    basic: bool,
}

impl TokenService {
    pub fn new(
        store: Arc<dyn Store>,
        pepper: Pepper,
        jwt: Arc<JwtAuth>,
        snapshot: Arc<ArcSwap<Snapshot>>,
        metrics: Arc<Metrics>,
        signing_keys: Vec<SigningKey>,
        limiter: Arc<Limiter>,
    ) -> Self {
        let algorithm = keys::algorithm_name(snapshot.load().config.auth.tokens.algorithm);
        let signer = current_signer(&signing_keys, algorithm);
        TokenService {
            store,
            pepper,
            jwt,
            snapshot,
            metrics,
            signer: ArcSwap::from_pointee(signer),
            limiter,
            signing_keys: ArcSwap::from_pointee(signing_keys),
            secret_usage: Arc::new(crate::auth::usage::UsageRecorder::for_secrets()),
        }
    }

    /// A new current signing key; the previous ones stay published until
    /// their last token has expired. Both the token endpoint and the proxy
    /// use the new set before this returns.
    pub async fn rotate_signing_key(&self, actor: &str) -> Result<Value, StoreError> {
        let alg = self.snapshot.load().config.auth.tokens.algorithm;
        let key = tokio::task::spawn_blocking(move || keys::generate(alg))
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let audit = crate::store::Audit {
            actor: actor.into(),
            action: "signing_key.rotate",
            target: key.kid.clone(),
            detail: json!({"algorithm": key.algorithm}),
        };
        self.store.rotate_signing_key(&key, now(), audit).await?;
        self.reload_signing_keys().await?;
        Ok(json!({"kid": key.kid, "algorithm": key.algorithm, "public_jwk": key.public_jwk}))
    }

    /// Take the signing keys from the store (after a rotation here or on
    /// another node): the proxy verifies with all of them, the endpoint
    /// signs with the current one.
    pub async fn reload_signing_keys(&self) -> Result<(), StoreError> {
        let alg = self.snapshot.load().config.auth.tokens.algorithm;
        let all = self.store.list_signing_keys().await?;
        self.jwt.set_builtin_keys(&all);
        self.signer
            .store(Arc::new(current_signer(&all, keys::algorithm_name(alg))));
        self.signing_keys.store(Arc::new(all));
        Ok(())
    }

    /// Is this one of the authorization server's paths?
    pub fn serves(path: &str) -> bool {
        matches!(
            path,
            TOKEN_PATH | JWKS_PATH | METADATA_PATH | INTROSPECT_PATH | REVOKE_PATH
        )
    }

    pub async fn handle(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        body: &[u8],
        peer: Option<IpAddr>,
    ) -> OAuthAnswer {
        match (path, method) {
            (TOKEN_PATH, &Method::POST) => self.token(headers, body, peer).await,
            (INTROSPECT_PATH, &Method::POST) => self.introspect(headers, body).await,
            (REVOKE_PATH, &Method::POST) => self.revoke(headers, body).await,
            (TOKEN_PATH | INTROSPECT_PATH | REVOKE_PATH, _) => {
                OAuthAnswer::method_not_allowed("POST")
            }
            (JWKS_PATH, &Method::GET | &Method::HEAD) => self.jwks(),
            (METADATA_PATH, &Method::GET | &Method::HEAD) => self.metadata(),
            _ => OAuthAnswer::method_not_allowed("GET, HEAD"),
        }
    }

    /// Public keys only: current and retired ones whose tokens may still live.
    fn jwks(&self) -> OAuthAnswer {
        let ttl = self.snapshot.load().config.auth.tokens.ttl.as_secs() as i64;
        let at = now();
        let keys: Vec<Value> = self
            .signing_keys
            .load()
            .iter()
            .filter(|k| k.retired_at.is_none_or(|r| r + ttl > at))
            .map(|k| k.public_jwk.clone())
            .collect();
        let mut a = OAuthAnswer::json(StatusCode::OK, &json!({ "keys": keys }));
        a.headers.retain(|(k, _)| *k == "content-type");
        a.headers
            .push(("cache-control", "public, max-age=300".into()));
        a
    }

    fn metadata(&self) -> OAuthAnswer {
        let iss = self.snapshot.load().config.auth.tokens.issuer.clone();
        let base = iss.trim_end_matches('/');
        let mut a = OAuthAnswer::json(
            StatusCode::OK,
            &json!({
                "issuer": iss,
                "token_endpoint": format!("{base}{TOKEN_PATH}"),
                "jwks_uri": format!("{base}{JWKS_PATH}"),
                "introspection_endpoint": format!("{base}/oauth2/introspect"),
                "revocation_endpoint": format!("{base}/oauth2/revoke"),
                "grant_types_supported": ["client_credentials"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
                "response_types_supported": ["token"],
                "token_endpoint_auth_signing_alg_values_supported": ["ES256", "EdDSA", "RS256"],
            }),
        );
        a.headers.retain(|(k, _)| *k == "content-type");
        a
    }

    pub fn credentials(
        headers: &HeaderMap,
        form: &[(String, String)],
    ) -> Result<ClientCredentials, OAuthAnswer> {
        let form_id = param(form, "client_id");
        let form_secret = param(form, "client_secret");
        let basic = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .filter(|v| v.len() > 6 && v[..6].eq_ignore_ascii_case("basic "));
        match basic {
            Some(h) => {
                if form_secret.is_some() {
                    return Err(OAuthAnswer::error(
                        "invalid_request",
                        "use one client authentication method",
                        true,
                    ));
                }
                let decoded = STANDARD
                    .decode(h[6..].trim())
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or_else(|| {
                        OAuthAnswer::error("invalid_client", "malformed Basic credentials", true)
                    })?;
                let (id, secret) = decoded.split_once(':').ok_or_else(|| {
                    OAuthAnswer::error("invalid_client", "malformed Basic credentials", true)
                })?;
                let (Some(id), Some(secret)) = (form_decode(id), form_decode(secret)) else {
                    return Err(OAuthAnswer::error(
                        "invalid_client",
                        "malformed Basic credentials",
                        true,
                    ));
                };
                if form_id.is_some_and(|f| f != id) {
                    return Err(OAuthAnswer::error(
                        "invalid_request",
                        "client_id does not match the Basic credentials",
                        true,
                    ));
                }
                Ok(ClientCredentials {
                    id,
                    secret,
                    basic: true,
                })
            }
            None => match (form_id, form_secret) {
                (Some(id), Some(secret)) => Ok(ClientCredentials {
                    id: id.to_owned(),
                    secret: secret.to_owned(),
                    basic: false,
                }),
                _ => Err(OAuthAnswer::error(
                    "invalid_client",
                    "client authentication is required",
                    false,
                )),
            },
        }
    }

    async fn token(&self, headers: &HeaderMap, body: &[u8], peer: Option<IpAddr>) -> OAuthAnswer {
        let form = match Self::form(headers, body) {
            Ok(f) => f,
            Err(a) => return a,
        };
        let creds = match Self::credentials(headers, &form) {
            Ok(c) => c,
            Err(answer) => return answer,
        };
        match param(&form, "grant_type") {
            Some("client_credentials") => {}
            None => {
                return OAuthAnswer::error("invalid_request", "grant_type is required", creds.basic)
            }
            Some(_) => {
                return OAuthAnswer::error(
                    "unsupported_grant_type",
                    "only client_credentials is supported",
                    creds.basic,
                )
            }
        }
        // Failed authentications are limited per (address, client) and per
        // address; a spent allowance is refused before any secret is checked.
        let addr = peer.map(|p| p.to_string()).unwrap_or_default();
        let pair_key = format!("fail {addr} {}", creds.id);
        let addr_key = format!("fail {addr}");
        for (key, limit) in [
            (&pair_key, FAILURE_LIMIT),
            (&addr_key, ADDRESS_FAILURE_LIMIT),
        ] {
            let d = self.limiter.check(key, &limit, 0).await;
            if !d.allowed {
                return OAuthAnswer::rate_limited(&d);
            }
        }
        let client = match self.authenticate_client(&creds).await {
            Ok(c) => c,
            Err(answer) => {
                if answer.status == StatusCode::UNAUTHORIZED {
                    self.limiter.check(&pair_key, &FAILURE_LIMIT, 1).await;
                    self.limiter
                        .check(&addr_key, &ADDRESS_FAILURE_LIMIT, 1)
                        .await;
                }
                return answer;
            }
        };
        let d = self
            .limiter
            .check(&format!("issue {}", client.id), &ISSUE_LIMIT, 1)
            .await;
        if !d.allowed {
            return OAuthAnswer::rate_limited(&d);
        }
        if client.auth_type != AuthType::Oauth2 {
            return OAuthAnswer::error(
                "unauthorized_client",
                "this client may not use client_credentials",
                creds.basic,
            );
        }
        let requested: Option<Vec<String>> =
            param(&form, "scope").map(|v| v.split_whitespace().map(str::to_string).collect());
        let granted: Vec<String> = match &requested {
            None => client.scopes.clone(),
            Some(r) => {
                let g: Vec<String> = r
                    .iter()
                    .filter(|s| client.scopes.contains(s))
                    .cloned()
                    .collect();
                if g.is_empty() && !r.is_empty() {
                    return OAuthAnswer::error(
                        "invalid_scope",
                        "none of the requested scopes is granted to this client",
                        creds.basic,
                    );
                }
                g
            }
        };
        match self.issue(&client.id, &granted) {
            Ok((token, expires_in)) => {
                self.metrics.tokens_issued.inc();
                OAuthAnswer::json(
                    StatusCode::OK,
                    &json!({"access_token": token, "token_type": "Bearer", "expires_in": expires_in, "scope": granted.join(" ")}),
                )
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot sign an access token");
                OAuthAnswer::json(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &json!({"error": "server_error"}),
                )
            }
        }
    }

    /// The form of a POST, or the RFC 6749 error to answer.
    pub fn form(headers: &HeaderMap, body: &[u8]) -> Result<Vec<(String, String)>, OAuthAnswer> {
        let is_form = headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.to_ascii_lowercase()
                    .starts_with("application/x-www-form-urlencoded")
            });
        if !is_form {
            return Err(OAuthAnswer::error(
                "invalid_request",
                "the body must be application/x-www-form-urlencoded",
                false,
            ));
        }
        let form: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
        // RFC 6749 §3.2: a parameter is sent at most once; taking the first
        // (or the last) of two would let a client pick what a check saw.
        let mut seen = std::collections::HashSet::with_capacity(form.len());
        for (name, _) in &form {
            if !seen.insert(name.as_str()) {
                return Err(OAuthAnswer::error(
                    "invalid_request",
                    "a request parameter is repeated",
                    false,
                ));
            }
        }
        Ok(form)
    }

    /// A client authenticated for introspection or revocation.
    async fn caller(
        &self,
        headers: &HeaderMap,
        form: &[(String, String)],
    ) -> Result<crate::store::Client, OAuthAnswer> {
        let creds = Self::credentials(headers, form)?;
        self.authenticate_client(&creds).await
    }

    /// RFC 7662: anything not valid is just `{"active": false}`.
    async fn introspect(&self, headers: &HeaderMap, body: &[u8]) -> OAuthAnswer {
        let form = match Self::form(headers, body) {
            Ok(f) => f,
            Err(a) => return a,
        };
        if let Err(a) = self.caller(headers, &form).await {
            return a;
        }
        let inactive = OAuthAnswer::json(StatusCode::OK, &json!({"active": false}));
        let Some(token) = param(&form, "token") else {
            return OAuthAnswer::error("invalid_request", "token is required", false);
        };
        let Ok(v) = self.jwt.verify(token.as_bytes()).await else {
            return inactive;
        };
        let crate::auth::jwt::ClientRef::Id(client_id) = &v.client else {
            return inactive;
        };
        match self.store.get_client(client_id).await {
            Ok(c) if c.status == Status::Active => {}
            _ => return inactive,
        }
        let t = &self.snapshot.load().config.auth.tokens;
        OAuthAnswer::json(
            StatusCode::OK,
            &json!({"active": true, "client_id": client_id, "sub": client_id, "scope": v.scopes.join(" "),
                    "exp": v.exp, "iss": t.issuer, "aud": t.audience, "token_type": "Bearer", "jti": v.jti}),
        )
    }

    /// RFC 7009: 200 whatever the token; only the caller's own valid token
    /// is revoked, and the proxy refuses it at once.
    async fn revoke(&self, headers: &HeaderMap, body: &[u8]) -> OAuthAnswer {
        let form = match Self::form(headers, body) {
            Ok(f) => f,
            Err(a) => return a,
        };
        let caller = match self.caller(headers, &form).await {
            Ok(c) => c,
            Err(a) => return a,
        };
        let Some(token) = param(&form, "token") else {
            return OAuthAnswer::error("invalid_request", "token is required", false);
        };
        if let Ok(v) = self.jwt.verify(token.as_bytes()).await {
            let own = matches!(&v.client, crate::auth::jwt::ClientRef::Id(id) if *id == caller.id);
            if let (true, Some(jti)) = (own, &v.jti) {
                self.jwt.revoke_jti(jti).await;
                // the store tells every other node through the change feed
                // as long as the token could still pass, leeway included
                let expires_at = i64::try_from(v.valid_until).unwrap_or(i64::MAX);
                if let Err(e) = self.store.revoke_token(jti, expires_at).await {
                    tracing::warn!(error = %e, "cannot record a token revocation; refused on this node only");
                    return OAuthAnswer::json(
                        StatusCode::SERVICE_UNAVAILABLE,
                        &json!({"error": "temporarily_unavailable", "error_description": "the revocation could not be recorded; retry"}),
                    );
                }
            }
        }
        let mut a = OAuthAnswer::json(StatusCode::OK, &json!({}));
        a.body.clear();
        a
    }

    async fn authenticate_client(
        &self,
        creds: &ClientCredentials,
    ) -> Result<crate::store::Client, OAuthAnswer> {
        let refuse = || {
            OAuthAnswer::error(
                "invalid_client",
                "unknown client or bad secret",
                creds.basic,
            )
        };
        if !secrets::well_formed(&creds.secret, secrets::CLIENT_SECRET_PREFIX)
            || creds.id.len() > 128
        {
            return Err(refuse());
        }
        let client = match self.store.get_client(&creds.id).await {
            Ok(c) => c,
            Err(StoreError::NotFound) => return Err(refuse()),
            Err(e) => {
                tracing::error!(error = %e, "store unavailable at the token endpoint");
                let mut a = OAuthAnswer::json(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &json!({"error": "temporarily_unavailable"}),
                );
                a.headers.push(("retry-after", "1".into()));
                return Err(a);
            }
        };
        if client.status != Status::Active {
            return Err(refuse());
        }
        // Client ids are not secret; an api_key or external client has no
        // secret to check and may not use this grant.
        if client.auth_type != AuthType::Oauth2 {
            return Err(OAuthAnswer::error(
                "unauthorized_client",
                "this client may not use client_credentials",
                creds.basic,
            ));
        }
        let hashes = self
            .store
            .secret_hashes(&client.id, now())
            .await
            .map_err(|_| refuse())?;
        match hashes
            .iter()
            .find(|(_, h)| self.pepper.verify(&creds.secret, h))
        {
            Some((id, _)) => {
                self.secret_usage.record_id(id, now());
                Ok(client)
            }
            None => Err(refuse()),
        }
    }

    /// Sign an RFC 9068 access token with the newest current key.
    pub fn issue(&self, client_id: &str, scopes: &[String]) -> Result<(String, u64), String> {
        let snap = self.snapshot.load();
        let t = &snap.config.auth.tokens;
        let signer = self.signer.load();
        let Some((kid, signer)) = signer.as_ref() else {
            return Err("no current signing key".into());
        };
        let header = json!({"alg": keys::algorithm_name(t.algorithm), "typ": "at+jwt", "kid": kid});
        let iat = now();
        let ttl = t.ttl.as_secs();
        let claims = json!({
            "iss": t.issuer, "sub": client_id, "client_id": client_id, "aud": t.audience,
            "iat": iat, "exp": iat + ttl as i64, "jti": secrets::new_id("jti"), "scope": scopes.join(" "),
        });
        Ok((signer.sign(&header, &claims), ttl))
    }
}
