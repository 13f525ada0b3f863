//! The store of clients, credentials, subscriptions and the audit log, and
//! what several nodes share: the change feed, revoked tokens, quota usage.
//! One trait, one SQL implementation over SQLite (embedded, the default) or
//! PostgreSQL (shared); every change is written with its audit entry and
//! its change-feed row in one transaction.

pub mod feed;
pub mod model;
mod postgres;
mod sql;
mod sqlite;
#[doc(hidden)]
pub mod testing;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;

pub use model::*;
pub use postgres::{PgStore, CHANGES_CHANNEL};
pub use sql::SqlStore;
pub use sqlite::SqliteStore;

use crate::config::StoreUrl;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Conflict(String),
    /// The database cannot be reached or failed; callers answer 503.
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::RowNotFound => StoreError::NotFound,
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StoreError::Conflict("already exists".into())
            }
            _ => StoreError::Unavailable(e.to_string()),
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Told of every change that affects authentication or authorization of a
/// client, so cached credentials are dropped at once.
pub trait ChangeListener: Send + Sync {
    fn client_changed(&self, client_id: &str);
}

/// A client created with its first credential.
pub struct NewClient {
    pub client: Client,
    pub secret: Option<NewSecret>,
    pub key: Option<NewApiKey>,
}

/// Every method that changes a client, its credentials or its
/// subscriptions refuses a revoked client (Conflict), checked in the same
/// transaction as the change, so a revocation that commits meanwhile is not
/// undone.
#[async_trait]
pub trait Store: Send + Sync {
    /// Is the database reachable?
    async fn ping(&self) -> StoreResult<()>;

    async fn insert_client(&self, new: NewClient, audit: Audit) -> StoreResult<()>;
    async fn get_client(&self, id: &str) -> StoreResult<Client>;
    /// Clients, of one status and of one account when asked.
    async fn list_clients(
        &self,
        status: Option<Status>,
        account_id: Option<&str>,
    ) -> StoreResult<Vec<Client>>;
    async fn update_client(
        &self,
        id: &str,
        patch: ClientPatch,
        audit: Audit,
    ) -> StoreResult<Client>;
    /// Final: status revoked, subscriptions removed, keys revoked, secrets
    /// deleted. A revoked client is a conflict.
    async fn revoke_client(&self, id: &str, at: Timestamp, audit: Audit) -> StoreResult<Client>;
    /// Replace a client's secrets by `secret`; the old ones keep working
    /// until `old_valid_until` (None: they stop at once).
    async fn replace_secret(
        &self,
        secret: NewSecret,
        old_valid_until: Option<Timestamp>,
        audit: Audit,
    ) -> StoreResult<()>;
    /// (id, hash) of the secrets that are valid at `at`.
    async fn secret_hashes(
        &self,
        client_id: &str,
        at: Timestamp,
    ) -> StoreResult<Vec<(String, String)>>;
    /// A client's secrets with their use, newest first (never a hash).
    async fn list_secrets(&self, client_id: &str) -> StoreResult<Vec<ClientSecret>>;
    /// Add batched uses of secrets, by secret id.
    async fn record_secret_usage(&self, usage: &HashMap<String, KeyUsage>) -> StoreResult<()>;

    async fn insert_api_key(&self, key: NewApiKey, audit: Audit) -> StoreResult<ApiKey>;
    async fn get_api_key(&self, id: &str) -> StoreResult<ApiKey>;
    async fn list_api_keys(&self, client_id: &str) -> StoreResult<Vec<ApiKey>>;
    /// Set a key's status and expiry (revoke, renew). Making a key of a
    /// revoked client active is a conflict.
    async fn set_api_key_state(
        &self,
        id: &str,
        status: Status,
        expires_at: Option<Timestamp>,
        audit: Audit,
    ) -> StoreResult<ApiKey>;
    /// Roll a key: insert `new` and let the old key work until
    /// `old_expires_at` (status `expiring`). A revoked key is a conflict.
    async fn roll_api_key(
        &self,
        old_id: &str,
        new: NewApiKey,
        old_expires_at: Timestamp,
        audit: Audit,
    ) -> StoreResult<ApiKey>;
    /// Active keys whose expiry falls in (`from`, `until`], soonest first.
    async fn expiring_api_keys(
        &self,
        from: Timestamp,
        until: Timestamp,
    ) -> StoreResult<Vec<ApiKey>>;
    /// How many active keys expire in (`from`, `until`], counted in the
    /// store without reading them.
    async fn count_expiring_api_keys(&self, from: Timestamp, until: Timestamp) -> StoreResult<i64>;
    /// The key with this hash and its client, for authentication.
    async fn find_api_key(&self, hash: &str) -> StoreResult<Option<(ApiKey, Client)>>;
    /// Add batched usage (one write per flush, not per request).
    async fn record_usage(&self, usage: &HashMap<String, KeyUsage>) -> StoreResult<()>;

    async fn insert_subscription(&self, sub: Subscription, audit: Audit) -> StoreResult<()>;
    async fn list_subscriptions(&self, client_id: Option<&str>) -> StoreResult<Vec<Subscription>>;
    async fn get_subscription(&self, id: &str) -> StoreResult<Subscription>;
    /// Remove a subscription; with `only`, only while it has that status
    /// (another status is a conflict).
    async fn delete_subscription(
        &self,
        id: &str,
        only: Option<SubscriptionStatus>,
        audit: Audit,
    ) -> StoreResult<Subscription>;
    /// Approve a pending subscription: it grants access from now on.
    async fn activate_subscription(&self, id: &str, audit: Audit) -> StoreResult<Subscription>;

    /// A new account; a username or an (issuer, subject) already taken is a
    /// conflict.
    async fn insert_account(
        &self,
        account: &Account,
        password_hash: Option<&str>,
        audit: Audit,
    ) -> StoreResult<()>;
    async fn get_account(&self, id: &str) -> StoreResult<Account>;
    async fn list_accounts(&self) -> StoreResult<Vec<Account>>;
    /// A built-in account by username, with its password hash.
    async fn find_account_by_username(
        &self,
        username: &str,
    ) -> StoreResult<Option<(Account, Option<String>)>>;
    /// The account of an external issuer's subject.
    async fn find_account_by_identity(
        &self,
        issuer: &str,
        subject: &str,
    ) -> StoreResult<Option<Account>>;
    /// Names, email, status; disabling ends every session of the account.
    async fn update_account(
        &self,
        id: &str,
        patch: AccountPatch,
        audit: Audit,
    ) -> StoreResult<Account>;
    /// A new password hash; `must_change` marks a one-time password. Every
    /// session of the account ends but `keep_session` (by id).
    async fn set_account_password(
        &self,
        id: &str,
        password_hash: &str,
        must_change: bool,
        keep_session: Option<&str>,
        audit: Audit,
    ) -> StoreResult<()>;
    async fn insert_session(&self, session: &PortalSession) -> StoreResult<()>;
    /// The unexpired session with this hash and its account (disabled
    /// accounts have no sessions).
    async fn find_session(
        &self,
        hash: &str,
        at: Timestamp,
    ) -> StoreResult<Option<(PortalSession, Account)>>;
    /// Sign-out; an unknown session is no error.
    async fn delete_session(&self, hash: &str) -> StoreResult<()>;

    async fn list_audit(&self, limit: i64) -> StoreResult<Vec<AuditEntry>>;

    /// The client of an external identity (issuer name, client claim value).
    async fn find_external_client(
        &self,
        issuer: &str,
        external_id: &str,
    ) -> StoreResult<Option<Client>>;

    /// Signing keys, newest first.
    async fn list_signing_keys(&self) -> StoreResult<Vec<SigningKey>>;
    async fn insert_signing_key(&self, key: &SigningKey) -> StoreResult<()>;
    /// Retire every current key and insert `key` as the current one.
    async fn rotate_signing_key(
        &self,
        key: &SigningKey,
        at: Timestamp,
        audit: Audit,
    ) -> StoreResult<()>;

    /// The change feed after `after_seq`, ascending, at most `limit` rows.
    /// Every change that affects authentication or authorization is in it,
    /// committed with that change, in commit order.
    async fn changes_since(&self, after_seq: i64, limit: i64) -> StoreResult<Vec<Change>>;
    /// The newest seq of the change feed; 0 when it is empty.
    async fn last_change_seq(&self) -> StoreResult<i64>;

    /// Refuse the token `jti` on every node until `expires_at` (its own
    /// expiry). Revoking it again is no error.
    async fn revoke_token(&self, jti: &str, expires_at: Timestamp) -> StoreResult<()>;
    /// The revoked tokens that have not expired at `at`, with their expiry.
    async fn revoked_tokens(&self, at: Timestamp) -> StoreResult<Vec<(String, Timestamp)>>;

    /// Add requests to their hourly buckets, in one transaction.
    async fn add_usage(&self, deltas: &[UsageBucket]) -> StoreResult<()>;
    /// A client's hourly buckets that start in [`from`, `to`).
    async fn client_usage(
        &self,
        client_id: &str,
        from: Timestamp,
        to: Timestamp,
    ) -> StoreResult<Vec<UsageBucket>>;
    /// Drop buckets that start before `before`.
    async fn prune_usage(&self, before: Timestamp) -> StoreResult<u64>;

    /// Add counted requests to their windows' totals, in one transaction.
    async fn add_quota_usage(&self, deltas: &[QuotaDelta]) -> StoreResult<()>;
    /// The totals (in `delta`) of the windows that end after `at`.
    async fn quota_usage(&self, at: Timestamp) -> StoreResult<Vec<QuotaDelta>>;
}

/// Open the store named by the configuration, creating and migrating it.
pub async fn open(url: &StoreUrl) -> StoreResult<Arc<dyn Store>> {
    match url {
        StoreUrl::Sqlite(path) => Ok(Arc::new(SqliteStore::open(path).await?)),
        StoreUrl::Postgres(url) => Ok(Arc::new(PgStore::connect(url).await?)),
    }
}

pub(crate) fn scopes_to_text(scopes: &[String]) -> String {
    scopes.join(" ")
}

pub(crate) fn scopes_from_text(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_string).collect()
}
