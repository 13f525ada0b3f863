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

use http::{HeaderName, HeaderValue};
use pingora::http::RequestHeader;

use crate::config::{AuthPolicy, CredentialKind};
use crate::store::{
    ApiKey, ChangeListener, Client, Status, Subscription, SubscriptionStatus, Timestamp,
};
use crate::telemetry::Metrics;
use api_key::ApiKeyAuth;
use clients::ClientDirectory;
use jwt::{JwtAuth, TokenError};
use usage::UsageCell;

/// The client behind a credential, with what authorization needs and the
/// identity headers for the upstream, built once per cached principal.
/// A cache holds one per client, so it is kept compact: its text (client
/// id and name, each subscription's counter name, service and plan) is one
/// buffer, and what few clients have is boxed. A request's header values
/// are copied from the buffer rather than share it: sharing would give
/// every cached principal a second allocation (the shared buffer's count)
/// and a larger handle, about 40 bytes a key, to save a request three
/// copies of a few dozen bytes.
#[derive(Debug)]
pub struct Principal {
    pub active: bool,
    pub scopes: Arc<[String]>,
    /// The active subscriptions (one per service at most, the store's
    /// constraint): a slice searched in order is a fraction of a hash
    /// table's size and as quick to search for the few a client has.
    subscriptions: Box<[SubText]>,
    /// Where the client's credentials may be used from; None: anywhere.
    pub restrictions: Option<Box<Restrictions>>,
    /// The text, back to back: the client's id, the name header's text,
    /// the id of the API key the principal was loaded by (if it was), then
    /// for each subscription [`LIMIT_PREFIX`] and its id, its service, its
    /// plan.
    text: Box<str>,
    /// Where the id ends in `text` and the name begins, where the name
    /// ends and the key id begins, where that ends.
    id_end: u32,
    name_end: u32,
    key_end: u32,
    /// whether the id is a header value's text (else the header is empty)
    id_is_header: bool,
    /// Of the API key the principal was loaded by (none: false, never,
    /// and unused): whether it is not revoked, when it expires (`i64::MAX`
    /// for never) and its uses since the last flush. A cached key is its
    /// principal: one block, not a record of its own pointing here.
    key_active: bool,
    key_expires_at: Timestamp,
    key_usage: UsageCell,
}

/// What a subscription's rate-limit counter is named by: this, then its id.
const LIMIT_PREFIX: &str = "sub:";

/// Where one subscription's text is in its principal's buffer: the
/// counter name from `start` to `id_end`, the service to `service_end`,
/// the plan to `plan_end`.
#[derive(Debug)]
struct SubText {
    start: u32,
    id_end: u32,
    service_end: u32,
    plan_end: u32,
    has_plan: bool,
    /// whether the id is a header value's text (else the header is empty)
    id_is_header: bool,
}

/// One active subscription of a principal, read from its text.
#[derive(Debug, Clone, Copy)]
pub struct Subscribed<'a> {
    text: &'a str,
    at: &'a SubText,
}

impl<'a> Subscribed<'a> {
    fn text(&self, start: u32, end: u32) -> &'a str {
        text_at(self.text, start, end)
    }

    /// The rate-limit counter of this subscription: [`LIMIT_PREFIX`] and
    /// the id.
    pub fn limit_key(&self) -> &'a str {
        self.text(self.at.start, self.at.id_end)
    }

    pub fn id(&self) -> &'a str {
        self.text(self.at.start + LIMIT_PREFIX.len() as u32, self.at.id_end)
    }

    pub fn service(&self) -> &'a str {
        self.text(self.at.id_end, self.at.service_end)
    }

    pub fn plan(&self) -> Option<&'a str> {
        self.at
            .has_plan
            .then(|| self.text(self.at.service_end, self.at.plan_end))
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

/// The scopes of a client without any, one allocation for them all.
fn no_scopes() -> Arc<[String]> {
    static NONE: std::sync::OnceLock<Arc<[String]>> = std::sync::OnceLock::new();
    NONE.get_or_init(|| Arc::from(Vec::new())).clone()
}

/// A principal's text from `start` to `end` (offsets it wrote, at the
/// ends of `str`s, so always on character boundaries).
fn text_at(text: &str, start: u32, end: u32) -> &str {
    text.get(start as usize..end as usize).unwrap_or_default()
}

/// An offset into a principal's text (which a client's stored fields, each
/// bounded by the store, keep far below 4 GiB).
fn offset(text: &str) -> u32 {
    u32::try_from(text.len()).unwrap_or(u32::MAX)
}

impl Principal {
    /// The principal of `client`, loaded by its API key `key` (None for a
    /// token's client).
    pub fn new(
        client: Client,
        key: Option<&ApiKey>,
        subscriptions: Vec<Subscription>,
    ) -> Principal {
        // a subscription waiting for approval grants nothing
        let active = || {
            subscriptions
                .iter()
                .filter(|s| s.status == SubscriptionStatus::Active)
        };
        let name = header_text(&client.name);
        let key_id = key.map_or("", |k| k.id.as_str());
        let size = client.id.len()
            + name.len()
            + key_id.len()
            + active()
                .map(|s| {
                    LIMIT_PREFIX.len()
                        + s.id.len()
                        + s.service.len()
                        + s.plan.as_ref().map_or(0, String::len)
                })
                .sum::<usize>();
        // one allocation for all the text
        let mut text = String::with_capacity(size);
        text.push_str(&client.id);
        let id_end = offset(&text);
        text.push_str(name);
        let name_end = offset(&text);
        text.push_str(key_id);
        let key_end = offset(&text);
        let mut subs = Vec::with_capacity(active().count());
        for s in active() {
            let start = offset(&text);
            text.push_str(LIMIT_PREFIX);
            text.push_str(&s.id);
            let id_end = offset(&text);
            text.push_str(&s.service);
            let service_end = offset(&text);
            if let Some(plan) = &s.plan {
                text.push_str(plan);
            }
            subs.push(SubText {
                start,
                id_end,
                service_end,
                plan_end: offset(&text),
                has_plan: s.plan.is_some(),
                id_is_header: HeaderValue::from_bytes(s.id.as_bytes()).is_ok(),
            });
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
        Principal {
            id_is_header: HeaderValue::from_bytes(client.id.as_bytes()).is_ok(),
            active: client.status == Status::Active,
            scopes: if client.scopes.is_empty() {
                no_scopes()
            } else {
                client.scopes.into()
            },
            subscriptions: subs.into(),
            restrictions,
            text: text.into_boxed_str(),
            id_end,
            name_end,
            key_end,
            key_active: key.is_some_and(|k| k.status != "revoked"),
            key_expires_at: key.and_then(|k| k.expires_at).unwrap_or(Timestamp::MAX),
            key_usage: UsageCell::default(),
        }
    }

    pub fn client_id(&self) -> &str {
        text_at(&self.text, 0, self.id_end)
    }

    /// The id of the API key this principal was loaded by, if it was.
    pub fn key_id(&self) -> Option<&str> {
        (self.key_end > self.name_end).then(|| text_at(&self.text, self.name_end, self.key_end))
    }

    /// Whether the API key this principal was loaded by is not revoked
    /// (false for a token's client).
    pub fn key_active(&self) -> bool {
        self.key_active
    }

    /// When the API key this principal was loaded by expires, if it does.
    pub fn key_expires_at(&self) -> Option<Timestamp> {
        (self.key_expires_at != Timestamp::MAX).then_some(self.key_expires_at)
    }

    /// The uses of the API key this principal was loaded by since the last
    /// flush.
    pub(crate) fn key_usage(&self) -> &UsageCell {
        &self.key_usage
    }

    /// The subscription to `service`.
    pub fn subscription(&self, service: &str) -> Option<Subscribed<'_>> {
        self.subscriptions().find(|s| s.service() == service)
    }

    /// The active subscriptions.
    pub fn subscriptions(&self) -> impl Iterator<Item = Subscribed<'_>> {
        self.subscriptions.iter().map(|at| Subscribed {
            text: &self.text,
            at,
        })
    }

    /// The text from `start` to `end` as a header value (a copy).
    fn header(&self, start: u32, end: u32) -> HeaderValue {
        HeaderValue::from_bytes(text_at(&self.text, start, end).as_bytes())
            .unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    /// The `X-Consumer-Id` value.
    pub fn id_header(&self) -> HeaderValue {
        if !self.id_is_header {
            return HeaderValue::from_static("");
        }
        self.header(0, self.id_end)
    }

    /// The `X-Consumer-Name` value.
    pub fn name_header(&self) -> HeaderValue {
        self.header(self.id_end, self.name_end)
    }

    /// The `X-Subscription-Id` value of one of this principal's
    /// subscriptions.
    pub fn subscription_header(&self, sub: &Subscribed) -> HeaderValue {
        if !sub.at.id_is_header {
            return HeaderValue::from_static("");
        }
        self.header(sub.at.start + LIMIT_PREFIX.len() as u32, sub.at.id_end)
    }
}

/// A request whose credential checked out.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub principal: Arc<Principal>,
    /// The scopes the credential carries (for an API key: its client's);
    /// shared with the cached principal or token, not copied per request.
    pub scopes: Arc<[String]>,
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
            self.api_keys.record_use(&rec);
            return Ok(Authenticated {
                scopes: rec.scopes.clone(),
                principal: rec,
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

#[cfg(test)]
pub(crate) mod testing {
    use super::Principal;
    use crate::store::{ApiKey, AuthType, Client, Status, Subscription, SubscriptionStatus};

    /// An active client `id` without scopes.
    pub fn client(id: &str) -> Client {
        Client {
            id: id.into(),
            name: format!("{id} name"),
            description: String::new(),
            auth_type: AuthType::ApiKey,
            scopes: Vec::new(),
            issuer: None,
            external_id: None,
            status: Status::Active,
            created_at: 0,
            revoked_at: None,
            account_id: None,
            allowed_cidrs: Vec::new(),
            allowed_referers: Vec::new(),
        }
    }

    /// An active subscription `id` to `service` on the `gold` plan.
    pub fn subscription(service: &str, id: &str) -> Subscription {
        Subscription {
            id: id.into(),
            client_id: String::new(),
            service: service.into(),
            plan: Some("gold".into()),
            status: SubscriptionStatus::Active,
            created_at: 0,
        }
    }

    /// An active key `id` of client `client_id` that never expires.
    pub fn key(id: &str, client_id: &str) -> ApiKey {
        ApiKey {
            id: id.into(),
            client_id: client_id.into(),
            name: String::new(),
            prefix: String::new(),
            status: "active".into(),
            created_at: 0,
            expires_at: None,
            last_used_at: None,
            use_count: 0,
            replaced_by: None,
        }
    }

    /// Client `id` (loaded by its key `key_id`, if given) subscribed to
    /// `orders`.
    pub fn principal(id: &str, key_id: Option<&str>) -> Principal {
        Principal::new(
            client(id),
            key_id.map(|k| key(k, id)).as_ref(),
            vec![subscription("orders", &format!("sub_{id}"))],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_principal_reads_its_text_back() {
        let p = testing::principal("cli_1", Some("key_1"));
        assert_eq!((p.client_id(), p.key_id()), ("cli_1", Some("key_1")));
        assert_eq!(p.id_header(), "cli_1");
        assert_eq!(p.name_header(), "cli_1 name");
        let sub = p.subscription("orders").expect("subscribed");
        assert_eq!(
            (sub.id(), sub.limit_key(), sub.service(), sub.plan()),
            ("sub_cli_1", "sub:sub_cli_1", "orders", Some("gold"))
        );
        assert_eq!(p.subscription_header(&sub), "sub_cli_1");
        assert!(p.subscription("order").is_none() && p.subscription("ordersx").is_none());
        assert_eq!(testing::principal("cli_2", None).key_id(), None);
    }

    #[test]
    fn a_principal_keeps_the_state_of_the_key_it_was_loaded_by() {
        let active = testing::principal("cli_1", Some("key_1"));
        assert!(active.key_active());
        assert_eq!(active.key_expires_at(), None);
        let rolled = crate::store::ApiKey {
            status: "expiring".into(),
            expires_at: Some(1_700_000_000),
            ..testing::key("key_2", "cli_1")
        };
        let p = Principal::new(testing::client("cli_1"), Some(&rolled), vec![]);
        assert!(p.key_active());
        assert_eq!(p.key_expires_at(), Some(1_700_000_000));
        let revoked = crate::store::ApiKey {
            status: "revoked".into(),
            ..testing::key("key_3", "cli_1")
        };
        let p = Principal::new(testing::client("cli_1"), Some(&revoked), vec![]);
        assert!(!p.key_active());
        assert!(!testing::principal("cli_1", None).key_active());
        // a cached key is one allocation of 112 bytes with the Arc's two
        // counts, and its text: what a node with many keys cached holds
        // per key
        assert!(
            std::mem::size_of::<Principal>() + 2 * std::mem::size_of::<usize>() <= 112,
            "the principal grew to {} bytes",
            std::mem::size_of::<Principal>()
        );
    }

    #[test]
    fn text_that_is_no_header_value_is_kept_but_sent_empty() {
        let client = Client {
            name: "line\nbreak".into(),
            id: "cli\u{7f}".into(),
            ..testing::client("x")
        };
        let subs = vec![
            Subscription {
                plan: None,
                ..testing::subscription("a", "s\u{1}1")
            },
            Subscription {
                status: SubscriptionStatus::Pending,
                ..testing::subscription("b", "s2")
            },
        ];
        let p = Principal::new(client, None, subs);
        assert_eq!(p.client_id(), "cli\u{7f}");
        assert_eq!(
            (p.id_header(), p.name_header()),
            (HeaderValue::from_static(""), HeaderValue::from_static(""))
        );
        let sub = p.subscription("a").expect("active subscription");
        assert_eq!((sub.id(), sub.plan()), ("s\u{1}1", None));
        assert_eq!(p.subscription_header(&sub), "");
        assert!(
            p.subscription("b").is_none(),
            "a pending subscription grants nothing"
        );
        assert_eq!(p.subscriptions().count(), 1);
        assert!(Arc::ptr_eq(
            &p.scopes,
            &testing::principal("y", None).scopes
        ));
    }
}
