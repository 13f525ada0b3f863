//! What the store keeps, as the rest of the gateway sees it.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Seconds since the Unix epoch.
pub type Timestamp = i64;

pub fn now() -> Timestamp {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuthType {
    ApiKey,
    Oauth2,
    External,
}

impl AuthType {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthType::ApiKey => "api_key",
            AuthType::Oauth2 => "oauth2",
            AuthType::External => "external",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "api_key" => Some(AuthType::ApiKey),
            "oauth2" => Some(AuthType::Oauth2),
            "external" => Some(AuthType::External),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Active,
    Revoked,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Revoked => "revoked",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(Status::Active),
            "revoked" => Some(Status::Revoked),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Client {
    pub id: String,
    pub name: String,
    pub description: String,
    pub auth_type: AuthType,
    pub scopes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    pub status: Status,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
    /// The account that owns the client, if any.
    pub account_id: Option<String>,
    /// Addresses (CIDRs) its credentials may be used from; empty: any.
    pub allowed_cidrs: Vec<String>,
    /// `Referer`/`Origin` patterns (`*` matches any run of characters) its
    /// credentials may be used from; empty: any.
    pub allowed_referers: Vec<String>,
}

/// An API key as listed: never the key, never its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ApiKey {
    pub id: String,
    pub client_id: String,
    pub name: String,
    pub prefix: String,
    /// `active`, `expiring` (rolled: it works until `expires_at`),
    /// `expired` (past `expires_at`) or `revoked`.
    pub status: String,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub last_used_at: Option<Timestamp>,
    pub use_count: i64,
    /// The key that replaced this one when it was rolled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replaced_by: Option<String>,
}

impl ApiKey {
    pub fn is_usable(&self, at: Timestamp) -> bool {
        matches!(self.status.as_str(), "active" | "expiring")
            && self.expires_at.is_none_or(|e| e > at)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Subscription {
    pub id: String,
    pub client_id: String,
    pub service: String,
    pub plan: Option<String>,
    /// `active`, or `pending` until an admin approves it: a pending
    /// subscription grants nothing.
    pub status: SubscriptionStatus,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionStatus {
    Active,
    Pending,
}

impl SubscriptionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SubscriptionStatus::Active => "active",
            SubscriptionStatus::Pending => "pending",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(SubscriptionStatus::Active),
            "pending" => Some(SubscriptionStatus::Pending),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AccountStatus {
    Active,
    Disabled,
}

impl AccountStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountStatus::Active => "active",
            AccountStatus::Disabled => "disabled",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(AccountStatus::Active),
            "disabled" => Some(AccountStatus::Disabled),
            _ => None,
        }
    }
}

/// Who owns consumer clients: a built-in account (`username`) or the
/// account of an external issuer (`issuer`, `subject`). Never the password
/// hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Account {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    pub display_name: String,
    pub email: String,
    pub status: AccountStatus,
    /// A one-time password was set: the next sign-in must change it.
    pub password_change_required: bool,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, Default)]
pub struct AccountPatch {
    pub display_name: Option<String>,
    pub email: Option<String>,
    pub status: Option<AccountStatus>,
}

/// A sign-in. The token is never stored, only its keyed hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortalSession {
    pub id: String,
    pub hash: String,
    pub account_id: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    /// Signed in with a one-time password: only the password change is allowed.
    pub password_change: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    pub at: Timestamp,
    pub actor: String,
    pub action: String,
    pub target: String,
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

/// An audit entry to be written in the same transaction as its change.
#[derive(Debug, Clone)]
pub struct Audit {
    pub actor: String,
    pub action: &'static str,
    pub target: String,
    pub detail: serde_json::Value,
}

/// A key to insert, with the hash of its value.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub id: String,
    pub client_id: String,
    pub name: String,
    pub prefix: String,
    pub hash: String,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
}

#[derive(Debug, Clone)]
pub struct NewSecret {
    pub id: String,
    pub client_id: String,
    pub hash: String,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, Default)]
pub struct ClientPatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub allowed_cidrs: Option<Vec<String>>,
    pub allowed_referers: Option<Vec<String>>,
}

/// A client secret as listed: never the secret, never its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ClientSecret {
    pub id: String,
    pub created_at: Timestamp,
    /// Set once a newer secret replaced it with a grace period.
    pub expires_at: Option<Timestamp>,
    pub last_used_at: Option<Timestamp>,
    pub use_count: i64,
}

/// Requests of one client, key and service in one hourly bucket, by
/// outcome; a delta when written, a total when read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct UsageBucket {
    /// Unix seconds, a multiple of 3600 (or of 86400 for daily steps).
    pub start: Timestamp,
    pub service: String,
    /// Empty when the credential was not an API key.
    pub key_id: String,
    #[serde(skip)]
    pub client_id: String,
    #[serde(rename = "2xx")]
    pub c2xx: i64,
    #[serde(rename = "3xx")]
    pub c3xx: i64,
    #[serde(rename = "4xx")]
    pub c4xx: i64,
    #[serde(rename = "429")]
    pub c429: i64,
    #[serde(rename = "5xx")]
    pub c5xx: i64,
}

/// Accumulated use of one key since the last flush.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyUsage {
    pub last_used_at: Timestamp,
    pub count: i64,
}

/// A token-signing key of the built-in issuer. `private_pem` never leaves
/// the store and the signing code; `public_jwk` is what the JWKS shows.
#[derive(Clone)]
pub struct SigningKey {
    pub kid: String,
    pub algorithm: String,
    pub private_pem: String,
    pub public_jwk: serde_json::Value,
    pub created_at: Timestamp,
    /// Set when a newer key took over; the key stays published until its
    /// last token has expired.
    pub retired_at: Option<Timestamp>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .field("created_at", &self.created_at)
            .field("retired_at", &self.retired_at)
            .finish_non_exhaustive()
    }
}

/// What a row of the change feed is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    /// A client, its credentials or its subscriptions; target = client id.
    Client,
    /// A token-signing key of the built-in issuer; target = kid.
    SigningKey,
    /// A revoked token; target = jti.
    Token,
    /// A kind this version does not know (written by a newer one during a
    /// rolling upgrade): followers drop every cached credential rather than
    /// stall or guess.
    Other,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Client => "client",
            ChangeKind::SigningKey => "signing_key",
            ChangeKind::Token => "token",
            ChangeKind::Other => "other",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "client" => Some(ChangeKind::Client),
            "signing_key" => Some(ChangeKind::SigningKey),
            "token" => Some(ChangeKind::Token),
            _ => None,
        }
    }
}

/// One committed change that other nodes must apply to their caches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Increases with commit order (see the backends), so a follower only
    /// needs the last seq it applied.
    pub seq: i64,
    /// Milliseconds since the Unix epoch, for the lag metric.
    pub at_ms: i64,
    pub kind: ChangeKind,
    pub target: String,
}

/// Requests counted against one quota window; as a total when read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaDelta {
    pub counter: String,
    pub window_start: Timestamp,
    pub window_end: Timestamp,
    pub delta: i64,
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
