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

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use pingora::http::RequestHeader;

use crate::config::{AuthPolicy, CredentialKind};
use crate::store::{now, ChangeListener, Client, Status, Subscription, SubscriptionStatus};
use crate::telemetry::Metrics;
use api_key::ApiKeyAuth;
use clients::ClientDirectory;
use jwt::{JwtAuth, TokenError};

/// A client's id, shared by its cached principal, the usage counted for
/// it and the log span of its requests.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientId(Arc<str>);

impl ClientId {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id's one allocation, to share: what usage counts by.
    pub fn shared(&self) -> &Arc<str> {
        &self.0
    }
}

impl std::ops::Deref for ClientId {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

/// The client behind a credential, with what authorization needs and the
/// identity headers for the upstream, built once per cached principal.
/// A cache holds one per client, so it is kept compact: the identity
/// headers' text (client id, name, subscription ids) is one shared buffer
/// that each request's header values slice, and what few clients have is
/// boxed.
#[derive(Debug)]
pub struct Principal {
    pub client_id: ClientId,
    pub active: bool,
    pub scopes: Arc<[String]>,
    pub subscriptions: Subscriptions,
    /// Where the client's credentials may be used from; None: anywhere.
    pub restrictions: Option<Box<Restrictions>>,
    /// The header values' text, back to back: id, name, then each
    /// subscription's id in the order of `subscriptions`.
    headers: Bytes,
    /// Where the name ends in `headers` (it begins where the id ends).
    name_end: u32,
    id_end: u32,
}

/// A principal's active subscriptions, by service name. A client has a
/// few (one per service at most, the store's constraint): a slice searched
/// in order is a fraction of a hash table's size and as quick to search.
#[derive(Debug, Default)]
pub struct Subscriptions(Box<[(Box<str>, Subscribed)]>);

impl Subscriptions {
    /// The subscription to `service`.
    pub fn get(&self, service: &str) -> Option<&Subscribed> {
        self.0
            .iter()
            .find(|(s, _)| &**s == service)
            .map(|(_, sub)| sub)
    }

    /// (service, subscription) pairs.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Subscribed)> {
        self.0.iter().map(|(s, sub)| (&**s, sub))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What a subscription's rate-limit counter is named by: this, then its id.
const LIMIT_PREFIX: &str = "sub:";

/// One subscription of a principal.
#[derive(Debug)]
pub struct Subscribed {
    pub plan: Option<Box<str>>,
    /// The rate-limit counter of this subscription: [`LIMIT_PREFIX`] and
    /// the id, which [`Subscribed::id`] reads back.
    pub limit_key: Box<str>,
    /// Where the `X-Subscription-Id` text is in the principal's buffer.
    header: (u32, u32),
}

impl Subscribed {
    pub fn id(&self) -> &str {
        self.limit_key.get(LIMIT_PREFIX.len()..).unwrap_or_default()
    }
}

/// A client's `allowed_cidrs` and `allowed_referers`, parsed once per
/// cached principal. An empty list does not restrict.
#[derive(Debug, Default)]
pub struct Restrictions {
    pub cidrs: Vec<crate::config::IpNet>,
    pub referers: Vec<String>,
}

/// Stored text as a header value: names may hold any UTF-8 but control
/// characters (the admin API refuses those), sent as opaque octets; text
/// that is not a header value's is sent empty.
fn header_text(text: &str) -> &str {
    if HeaderValue::from_bytes(text.as_bytes()).is_ok() {
        text
    } else {
        ""
    }
}

impl Principal {
    pub fn new(client: Client, subscriptions: Vec<Subscription>) -> Principal {
        let subscriptions: Vec<Subscription> = subscriptions
            .into_iter()
            // a subscription waiting for approval grants nothing
            .filter(|s| s.status == SubscriptionStatus::Active)
            .collect();
        // The header values' text in one buffer: one allocation the values
        // share (a value per request only counts a reference).
        let texts = || {
            [client.id.as_str(), client.name.as_str()]
                .into_iter()
                .chain(subscriptions.iter().map(|s| s.id.as_str()))
                .map(header_text)
        };
        let mut buffer = Vec::with_capacity(texts().map(str::len).sum());
        let mut ends = Vec::with_capacity(subscriptions.len() + 2);
        for text in texts() {
            buffer.extend_from_slice(text.as_bytes());
            ends.push(u32::try_from(buffer.len()).unwrap_or(u32::MAX));
        }
        let restrictions =
            (!client.allowed_cidrs.is_empty() || !client.allowed_referers.is_empty()).then(|| {
                Box::new(Restrictions {
                    cidrs: client
                        .allowed_cidrs
                        .iter()
                        .filter_map(|c| crate::config::IpNet::parse(c))
                        .collect(),
                    referers: client.allowed_referers,
                })
            });
        let subscriptions = subscriptions
            .into_iter()
            .enumerate()
            .map(|(i, s)| {
                let sub = Subscribed {
                    header: (ends[i + 1], ends[i + 2]),
                    limit_key: format!("{LIMIT_PREFIX}{}", s.id).into(),
                    plan: s.plan.map(Into::into),
                };
                (s.service.into(), sub)
            })
            .collect();
        Principal {
            client_id: ClientId(client.id.into()),
            active: client.status == Status::Active,
            scopes: client.scopes.into(),
            subscriptions: Subscriptions(subscriptions),
            restrictions,
            headers: Bytes::from(buffer),
            id_end: ends[0],
            name_end: ends[1],
        }
    }

    /// The `headers` text from `start` to `end` as a header value, sharing
    /// the buffer.
    fn header(&self, start: u32, end: u32) -> HeaderValue {
        let (start, end) = (start as usize, end as usize);
        self.headers
            .get(start..end)
            .and_then(|_| HeaderValue::from_maybe_shared(self.headers.slice(start..end)).ok())
            .unwrap_or_else(|| HeaderValue::from_static(""))
    }

    /// The `X-Consumer-Id` value.
    pub fn id_header(&self) -> HeaderValue {
        self.header(0, self.id_end)
    }

    /// The `X-Consumer-Name` value.
    pub fn name_header(&self) -> HeaderValue {
        self.header(self.id_end, self.name_end)
    }

    /// The `X-Subscription-Id` value of one of this principal's
    /// subscriptions.
    pub fn subscription_header(&self, sub: &Subscribed) -> HeaderValue {
        self.header(sub.header.0, sub.header.1)
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
