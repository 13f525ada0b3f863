//! Authentication: which credential a request presents and whose it is.
//! API keys (`api_key`) and bearer JWTs (`jwt`, then `clients` for the
//! client behind a token). A credential kind the route does not accept is
//! refused; every failure is counted by reason.

pub mod api_key;
pub mod cache;
pub mod clients;
mod front;
pub mod jwt;
pub mod keys;
pub mod usage;

use std::collections::HashMap;
use std::sync::Arc;

use http::{HeaderName, HeaderValue};
use pingora::http::RequestHeader;

use crate::config::{AuthPolicy, CredentialKind};
use crate::store::{now, ChangeListener, Client, Status, Subscription, SubscriptionStatus};
use crate::telemetry::Metrics;
use api_key::ApiKeyAuth;
use clients::ClientDirectory;
use jwt::{JwtAuth, TokenError};

/// The client behind a credential, with what authorization needs and the
/// identity headers for the upstream, built once per cached principal.
#[derive(Debug)]
pub struct Principal {
    pub client_id: String,
    /// The client id again, shared: what usage counts by.
    pub client_key: Arc<str>,
    pub client_name: String,
    pub active: bool,
    pub scopes: Arc<[String]>,
    /// by service name (a fast hash: the names come from the store)
    pub subscriptions: HashMap<String, Subscribed, foldhash::fast::RandomState>,
    /// `X-Consumer-Id`, `X-Consumer-Name` values.
    pub id_header: HeaderValue,
    pub name_header: HeaderValue,
    /// Where the client's credentials may be used from; None: anywhere.
    pub restrictions: Option<Restrictions>,
}

/// A client's `allowed_cidrs` and `allowed_referers`, parsed once per
/// cached principal. An empty list does not restrict.
#[derive(Debug, Default)]
pub struct Restrictions {
    pub cidrs: Vec<crate::config::IpNet>,
    pub referers: Vec<String>,
}

/// One subscription of a principal.
#[derive(Debug)]
pub struct Subscribed {
    pub id: String,
    pub plan: Option<String>,
    /// `X-Subscription-Id` value.
    pub header: HeaderValue,
    /// The rate-limit counter of this subscription.
    pub limit_key: String,
}

/// A header value of stored text: names may hold any UTF-8 but control
/// characters (the admin API refuses those), sent as opaque octets.
fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_bytes(text.as_bytes()).unwrap_or_else(|_| HeaderValue::from_static(""))
}

impl Principal {
    pub fn new(client: Client, subscriptions: Vec<Subscription>) -> Principal {
        Principal {
            id_header: header_value(&client.id),
            name_header: header_value(&client.name),
            subscriptions: subscriptions
                .into_iter()
                // a subscription waiting for approval grants nothing
                .filter(|s| s.status == SubscriptionStatus::Active)
                .map(|s| {
                    let sub = Subscribed {
                        header: header_value(&s.id),
                        limit_key: format!("sub:{}", s.id),
                        id: s.id,
                        plan: s.plan,
                    };
                    (s.service, sub)
                })
                .collect(),
            restrictions: (!client.allowed_cidrs.is_empty() || !client.allowed_referers.is_empty())
                .then(|| Restrictions {
                    cidrs: client
                        .allowed_cidrs
                        .iter()
                        .filter_map(|c| crate::config::IpNet::parse(c))
                        .collect(),
                    referers: client.allowed_referers.clone(),
                }),
            active: client.status == Status::Active,
            client_key: client.id.as_str().into(),
            client_id: client.id,
            client_name: client.name,
            scopes: client.scopes.into(),
        }
    }
}

/// A request whose credential checked out.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub principal: Arc<Principal>,
    /// The scopes the credential carries (for an API key: its client's);
    /// shared with the cached principal or token, not copied per request.
    pub scopes: Arc<[String]>,
    /// The API key's id, when the credential was one (usage by key).
    pub key_id: Option<Arc<str>>,
    /// The verified token, when the credential was one (claims to headers).
    pub token: Option<Arc<jwt::VerifiedToken>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthFailure {
    Missing,
    Ambiguous(&'static str),
    NotAccepted(&'static str),
    MalformedKey,
    UnknownKey,
    RevokedKey,
    ExpiredKey,
    RevokedClient,
    Token(TokenError),
    /// A valid token whose client is unknown or revoked.
    UnknownClient,
    StoreUnavailable(String),
}

impl AuthFailure {
    /// The `reason` label of `tollgate_auth_failures_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthFailure::Missing => "missing",
            AuthFailure::Ambiguous(_) => "ambiguous",
            AuthFailure::NotAccepted(_) => "not_accepted",
            AuthFailure::MalformedKey => "malformed_key",
            AuthFailure::UnknownKey => "unknown_key",
            AuthFailure::RevokedKey => "revoked_key",
            AuthFailure::ExpiredKey => "expired_key",
            AuthFailure::RevokedClient => "revoked_client",
            AuthFailure::Token(t) => t.reason(),
            AuthFailure::UnknownClient => "unknown_client",
            AuthFailure::StoreUnavailable(_) => "store_unavailable",
        }
    }
}

pub struct Authenticator {
    pub api_keys: ApiKeyAuth,
    pub jwt: Arc<JwtAuth>,
    pub clients: ClientDirectory,
    metrics: Arc<Metrics>,
}

impl Authenticator {
    pub fn new(
        api_keys: ApiKeyAuth,
        jwt: Arc<JwtAuth>,
        clients: ClientDirectory,
        metrics: Arc<Metrics>,
    ) -> Self {
        Authenticator {
            api_keys,
            jwt,
            clients,
            metrics,
        }
    }

    /// `Ok(None)` for a public route.
    pub async fn authenticate(
        &self,
        req: &RequestHeader,
        policy: &AuthPolicy,
        api_key_header: &HeaderName,
    ) -> Result<Option<Authenticated>, AuthFailure> {
        let AuthPolicy::Required(kinds) = policy else {
            return Ok(None);
        };
        match self.check(req, kinds, api_key_header).await {
            Ok(a) => Ok(Some(a)),
            Err(failure) => {
                self.metrics.auth_failure(failure.reason());
                if let AuthFailure::StoreUnavailable(e) = &failure {
                    tracing::error!(error = %e, "store unavailable for an uncached credential");
                }
                Err(failure)
            }
        }
    }

    async fn check(
        &self,
        req: &RequestHeader,
        kinds: &[CredentialKind],
        api_key_header: &HeaderName,
    ) -> Result<Authenticated, AuthFailure> {
        // at most one of each header (counted without collecting)
        let mut keys = req.headers.get_all(api_key_header).iter();
        let mut authz = req.headers.get_all(http::header::AUTHORIZATION).iter();
        let (key, authz_value) = (keys.next(), authz.next());
        if keys.next().is_some() || authz.next().is_some() {
            return Err(AuthFailure::Ambiguous("more than one credential header"));
        }
        let bearer = authz_value.map(|v| v.as_bytes()).filter(|v| {
            v.len() >= 6 && v[..6].eq_ignore_ascii_case(b"bearer") && (v.len() == 6 || v[6] == b' ')
        });
        if bearer.is_some() && key.is_some() {
            return Err(AuthFailure::Ambiguous("more than one credential"));
        }
        if let Some(key) = key {
            if !kinds.contains(&CredentialKind::ApiKey) {
                return Err(AuthFailure::NotAccepted(
                    "this route does not accept API keys",
                ));
            }
            // octets, not text: the key's shape check refuses all else
            let rec = self
                .api_keys
                .authenticate(key.as_bytes().trim_ascii())
                .await?;
            rec.usage.record(now());
            return Ok(Authenticated {
                scopes: rec.principal.scopes.clone(),
                principal: rec.principal.clone(),
                key_id: Some(rec.key_id.clone()),
                token: None,
            });
        }
        if let Some(value) = bearer {
            if !kinds.contains(&CredentialKind::Jwt) {
                return Err(AuthFailure::NotAccepted(
                    "this route does not accept bearer tokens",
                ));
            }
            // Spaces after the scheme are skipped; `verify` decides whether
            // the rest is a token (an empty one is malformed there).
            let mut token = &value[6..];
            while let [b' ', rest @ ..] = token {
                token = rest;
            }
            let verified = self.jwt.verify(token).await.map_err(AuthFailure::Token)?;
            let principal = self.clients.resolve(&verified.client).await?;
            return Ok(Authenticated {
                scopes: verified.scopes.clone(),
                principal,
                key_id: None,
                token: Some(verified),
            });
        }
        Err(AuthFailure::Missing)
    }
}

impl Authenticator {
    /// Forget every cached credential: the next request of each goes to
    /// the store.
    pub fn forget_all(&self) {
        self.api_keys.invalidate_all();
        self.clients.invalidate_all();
    }
}

impl ChangeListener for Authenticator {
    fn client_changed(&self, client_id: &str) {
        self.api_keys.invalidate_client(client_id);
        self.clients.invalidate_client(client_id);
    }
}
