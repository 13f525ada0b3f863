//! Client, key and subscription management: validation, secret generation
//! and hashing, and the audit entry of every change. The admin API is a thin
//! HTTP layer over this; the store only persists.

use std::sync::Arc;

use arc_swap::ArcSwap;
use serde_json::json;

use crate::runtime::Snapshot;
use crate::secrets::{self, Pepper};
use crate::store::{
    now, ApiKey, Audit, AuditEntry, AuthType, ChangeListener, Client, ClientPatch, NewApiKey,
    NewClient, NewSecret, Status, Store, StoreError, Subscription, SubscriptionStatus, UsageBucket,
};

pub(crate) const MAX_NAME: usize = 128;
pub(crate) const MAX_DESCRIPTION: usize = 1024;
const MAX_SCOPES: usize = 64;
const MAX_EXTERNAL_ID: usize = 256;

/// Why an admin call failed; the admin API maps each to a status.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("the store is unavailable")]
    Unavailable(String),
}

impl AdminError {
    pub fn from_store(e: StoreError, what: &str) -> Self {
        match e {
            StoreError::NotFound => AdminError::NotFound(format!("{what} not found")),
            StoreError::Conflict(m) => AdminError::Conflict(m),
            StoreError::Unavailable(m) => AdminError::Unavailable(m),
        }
    }
}

pub type AdminResult<T> = Result<T, AdminError>;

/// A time in a query: Unix seconds or RFC 3339.
fn parse_time(field: &str, text: &str) -> AdminResult<i64> {
    if let Ok(secs) = text.trim().parse::<i64>() {
        return Ok(secs);
    }
    humantime::parse_rfc3339_weak(text.trim())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs() as i64)
        .ok_or_else(|| {
            AdminError::BadRequest(format!(
                "`{field}`: Unix seconds or an RFC 3339 time such as 2026-11-30T00:00:00Z"
            ))
        })
}

/// How long the keys a caller creates live.
#[derive(Debug, Clone, Copy)]
pub struct KeyPolicy {
    pub ttl_secs: i64,
    /// May a key never expire?
    pub allow_never: bool,
}

pub use super::bodies::*;

pub struct Registry {
    pub store: Arc<dyn Store>,
    pepper: Pepper,
    snapshot: Arc<ArcSwap<Snapshot>>,
    listeners: Vec<Arc<dyn ChangeListener>>,
}

pub(crate) fn check_text(
    field: &str,
    value: &str,
    max: usize,
    allow_empty: bool,
) -> AdminResult<String> {
    let v = value.trim();
    if v.is_empty() && !allow_empty {
        return Err(AdminError::BadRequest(format!("{field} must not be empty")));
    }
    // the length as sent, as the OpenAPI document's maxLength counts it
    if value.chars().count() > max {
        return Err(AdminError::BadRequest(format!(
            "{field} is longer than {max} characters"
        )));
    }
    if v.chars().any(char::is_control) {
        return Err(AdminError::BadRequest(format!(
            "{field} contains control characters"
        )));
    }
    Ok(v.to_string())
}

const MAX_RESTRICTIONS: usize = 32;

/// A list of at most 32 entries, each trimmed and checked by `valid`
/// (which says what is wrong), duplicates dropped.
fn check_list(
    field: &str,
    list: &[String],
    valid: impl Fn(&str) -> Option<&'static str>,
) -> AdminResult<Vec<String>> {
    if list.len() > MAX_RESTRICTIONS {
        return Err(AdminError::BadRequest(format!(
            "at most {MAX_RESTRICTIONS} {field}"
        )));
    }
    let mut out: Vec<String> = Vec::new();
    for entry in list {
        let e = entry.trim();
        if let Some(why) = valid(e) {
            return Err(AdminError::BadRequest(format!(
                "{field}: invalid `{}`: {why}",
                e.chars().take(64).collect::<String>()
            )));
        }
        if !out.iter().any(|o| o == e) {
            out.push(e.to_string());
        }
    }
    Ok(out)
}

/// `allowed_cidrs`: addresses or networks, as `IpNet` parses them.
pub(crate) fn check_cidrs(list: &[String]) -> AdminResult<Vec<String>> {
    check_list("allowed_cidrs", list, |c| {
        crate::config::IpNet::parse(c)
            .is_none()
            .then_some("expected an address or ADDRESS/PREFIX such as 203.0.113.0/24")
    })
}

/// `allowed_referers`: http(s) URL patterns where `*` matches any run of
/// characters.
pub(crate) fn check_referers(list: &[String]) -> AdminResult<Vec<String>> {
    check_list("allowed_referers", list, |r| {
        let scheme_ok = r.starts_with("https://") || r.starts_with("http://");
        let host = r.split_once("://").map_or("", |(_, rest)| rest);
        let ok = scheme_ok
            && !host.is_empty()
            && !host.starts_with('/')
            && r.len() <= 256
            && r.chars().all(|c| c.is_ascii_graphic());
        (!ok).then_some(
            "an http:// or https:// URL, `*` for any run of characters, at most 256 characters",
        )
    })
}

/// Is `name` the name of an entry of `auth.issuers`?
pub(crate) fn check_issuer(snapshot: &Snapshot, name: &str) -> AdminResult<()> {
    if snapshot.config.auth.issuers.iter().any(|i| i.name == name) {
        return Ok(());
    }
    Err(AdminError::BadRequest(format!(
        "unknown issuer `{}`: name an entry of auth.issuers",
        name.chars().take(64).collect::<String>()
    )))
}

pub(crate) fn check_scopes(scopes: &[String]) -> AdminResult<Vec<String>> {
    if scopes.len() > MAX_SCOPES {
        return Err(AdminError::BadRequest(format!(
            "at most {MAX_SCOPES} scopes"
        )));
    }
    let mut out: Vec<String> = Vec::new();
    for s in scopes {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b":._-/".contains(&b));
        if !ok {
            return Err(AdminError::BadRequest(format!(
                "invalid scope `{}`: 1 to 64 of A-Z a-z 0-9 : . _ - /",
                s.chars().take(64).collect::<String>()
            )));
        }
        if !out.contains(s) {
            out.push(s.clone());
        }
    }
    Ok(out)
}

impl Registry {
    pub fn new(
        store: Arc<dyn Store>,
        pepper: Pepper,
        snapshot: Arc<ArcSwap<Snapshot>>,
        listeners: Vec<Arc<dyn ChangeListener>>,
    ) -> Self {
        Registry {
            store,
            pepper,
            snapshot,
            listeners,
        }
    }

    /// Caches on this node forget the client before the admin call answers.
    fn changed(&self, client_id: &str) {
        for l in &self.listeners {
            l.client_changed(client_id);
        }
    }

    fn key_ttl_secs(&self) -> i64 {
        self.snapshot
            .load()
            .config
            .auth
            .api_key
            .default_ttl
            .as_secs() as i64
    }

    /// How keys made by the operator live: `auth.api_key.default_ttl`, or
    /// never when asked.
    pub fn admin_key_policy(&self) -> KeyPolicy {
        KeyPolicy {
            ttl_secs: self.key_ttl_secs(),
            allow_never: true,
        }
    }

    /// `ttl_secs: None`: the key never expires.
    fn new_key(
        &self,
        client_id: &str,
        name: String,
        ttl_secs: Option<i64>,
    ) -> (NewApiKey, secrets::Secret) {
        let secret = secrets::generate_api_key();
        let created_at = now();
        let key = NewApiKey {
            id: secrets::new_id("key"),
            client_id: client_id.to_string(),
            name,
            prefix: secrets::display_prefix(secret.expose(), secrets::API_KEY_PREFIX),
            hash: self.pepper.hash(secret.expose()),
            created_at,
            expires_at: ttl_secs.map(|ttl| created_at + ttl),
        };
        (key, secret)
    }

    pub async fn create_client(
        &self,
        actor: &str,
        req: CreateClient,
        key_policy: KeyPolicy,
    ) -> AdminResult<CreatedClient> {
        let name = check_text("name", &req.name, MAX_NAME, false)?;
        let description = check_text(
            "description",
            req.description.as_deref().unwrap_or(""),
            MAX_DESCRIPTION,
            true,
        )?;
        let scopes = check_scopes(req.scopes.as_deref().unwrap_or(&[]))?;
        let (issuer, external_id) = match req.auth_type {
            AuthType::External => {
                let issuer = req.issuer.ok_or_else(|| {
                    AdminError::BadRequest("external clients need `issuer`".into())
                })?;
                check_issuer(&self.snapshot.load(), &issuer)?;
                let ext = req.external_id.ok_or_else(|| {
                    AdminError::BadRequest("external clients need `external_id`".into())
                })?;
                let ext = check_text("external_id", &ext, MAX_EXTERNAL_ID, false)?;
                (Some(issuer), Some(ext))
            }
            _ if req.issuer.is_some() || req.external_id.is_some() => {
                return Err(AdminError::BadRequest(
                    "`issuer` and `external_id` are for external clients".into(),
                ))
            }
            _ => (None, None),
        };
        let client = Client {
            id: secrets::new_id("cli"),
            name,
            description,
            auth_type: req.auth_type,
            scopes,
            issuer,
            external_id,
            status: Status::Active,
            created_at: now(),
            revoked_at: None,
            account_id: None,
            allowed_cidrs: Vec::new(),
            allowed_referers: Vec::new(),
        };
        let mut client = client;
        if let Some(account_id) = req.account_id {
            match self.store.get_account(&account_id).await {
                Ok(_) => client.account_id = Some(account_id),
                Err(StoreError::NotFound) => {
                    return Err(AdminError::BadRequest(format!(
                        "unknown account `{}`",
                        account_id.chars().take(64).collect::<String>()
                    )))
                }
                Err(e) => return Err(AdminError::from_store(e, "account")),
            }
        }
        let mut created = CreatedClient {
            client: client.clone(),
            client_secret: None,
            api_key: None,
        };
        let mut new = NewClient {
            client: client.clone(),
            secret: None,
            key: None,
        };
        match client.auth_type {
            AuthType::Oauth2 => {
                let secret = secrets::generate_client_secret();
                new.secret = Some(NewSecret {
                    id: secrets::new_id("sec"),
                    client_id: client.id.clone(),
                    hash: self.pepper.hash(secret.expose()),
                    created_at: client.created_at,
                });
                created.client_secret = Some(secret.expose().to_string());
            }
            AuthType::ApiKey => {
                let (key, secret) =
                    self.new_key(&client.id, "default".into(), Some(key_policy.ttl_secs));
                created.api_key = Some(CreatedKey {
                    id: key.id.clone(),
                    key: secret.expose().to_string(),
                    name: key.name.clone(),
                    prefix: key.prefix.clone(),
                    expires_at: key.expires_at,
                    previous_valid_until: None,
                });
                new.key = Some(key);
            }
            AuthType::External => {}
        }
        let audit = Audit {
            actor: actor.into(),
            action: "client.create",
            target: client.id.clone(),
            detail: json!({"name": client.name, "auth_type": client.auth_type, "scopes": client.scopes,
                           "api_key": created.api_key.as_ref().map(|k| &k.id)}),
        };
        self.store
            .insert_client(new, audit)
            .await
            .map_err(|e| AdminError::from_store(e, "client"))?;
        Ok(created)
    }

    pub async fn list_clients(
        &self,
        status: Option<&str>,
        account_id: Option<&str>,
    ) -> AdminResult<Vec<Client>> {
        let status = match status {
            None | Some("") => None,
            Some(s) => Some(Status::parse(s).ok_or_else(|| {
                AdminError::BadRequest("status must be `active` or `revoked`".into())
            })?),
        };
        self.store
            .list_clients(status, account_id)
            .await
            .map_err(|e| AdminError::from_store(e, "client"))
    }

    pub async fn get_client(&self, id: &str) -> AdminResult<ClientDetail> {
        let client = self
            .store
            .get_client(id)
            .await
            .map_err(|e| AdminError::from_store(e, "client"))?;
        let subscriptions = self
            .store
            .list_subscriptions(Some(id))
            .await
            .map_err(|e| AdminError::from_store(e, "subscription"))?;
        let secrets = match client.auth_type {
            AuthType::Oauth2 => Some(
                self.store
                    .list_secrets(id)
                    .await
                    .map_err(|e| AdminError::from_store(e, "client"))?
                    .into_iter()
                    .filter(|s| s.expires_at.is_none_or(|e| e > now()))
                    .collect(),
            ),
            _ => None,
        };
        Ok(ClientDetail {
            client,
            subscriptions,
            secrets,
        })
    }

    pub async fn patch_client(
        &self,
        actor: &str,
        id: &str,
        req: PatchClient,
    ) -> AdminResult<Client> {
        if req.auth_type.is_some() {
            return Err(AdminError::BadRequest(
                "auth_type is fixed at creation and cannot be changed".into(),
            ));
        }
        let patch = ClientPatch {
            name: req
                .name
                .map(|n| check_text("name", &n, MAX_NAME, false))
                .transpose()?,
            description: req
                .description
                .map(|d| check_text("description", &d, MAX_DESCRIPTION, true))
                .transpose()?,
            scopes: req.scopes.map(|s| check_scopes(&s)).transpose()?,
            allowed_cidrs: req.allowed_cidrs.map(|c| check_cidrs(&c)).transpose()?,
            allowed_referers: req
                .allowed_referers
                .map(|r| check_referers(&r))
                .transpose()?,
        };
        let detail = json!({"name": patch.name, "description_changed": patch.description.is_some(), "scopes": patch.scopes,
                            "allowed_cidrs": patch.allowed_cidrs, "allowed_referers": patch.allowed_referers});
        let audit = Audit {
            actor: actor.into(),
            action: "client.update",
            target: id.into(),
            detail,
        };
        let client = self
            .store
            .update_client(id, patch, audit)
            .await
            .map_err(|e| AdminError::from_store(e, "client"))?;
        self.changed(id);
        Ok(client)
    }

    pub async fn rotate_secret(
        &self,
        actor: &str,
        id: &str,
        req: RotateSecret,
    ) -> AdminResult<NewClientSecret> {
        let client = self
            .store
            .get_client(id)
            .await
            .map_err(|e| AdminError::from_store(e, "client"))?;
        if client.auth_type != AuthType::Oauth2 {
            return Err(AdminError::BadRequest(
                "only oauth2 clients have a client secret".into(),
            ));
        }
        if client.status == Status::Revoked {
            return Err(AdminError::Conflict("the client is revoked".into()));
        }
        let secret = secrets::generate_client_secret();
        let at = now();
        let grace = req.grace_period_seconds.unwrap_or(0).min(30 * 86_400) as i64;
        let until = (grace > 0).then_some(at + grace);
        let new = NewSecret {
            id: secrets::new_id("sec"),
            client_id: id.into(),
            hash: self.pepper.hash(secret.expose()),
            created_at: at,
        };
        let audit = Audit {
            actor: actor.into(),
            action: "client.rotate_secret",
            target: id.into(),
            detail: json!({"grace_period_seconds": grace}),
        };
        self.store
            .replace_secret(new, until, audit)
            .await
            .map_err(|e| AdminError::from_store(e, "client"))?;
        self.changed(id);
        Ok(NewClientSecret {
            client_id: id.into(),
            client_secret: secret.expose().to_string(),
            previous_valid_until: until,
        })
    }

    pub async fn revoke_client(&self, actor: &str, id: &str) -> AdminResult<Client> {
        let audit = Audit {
            actor: actor.into(),
            action: "client.revoke",
            target: id.into(),
            detail: json!({}),
        };
        let client = self
            .store
            .revoke_client(id, now(), audit)
            .await
            .map_err(|e| AdminError::from_store(e, "client"))?;
        self.changed(id);
        Ok(client)
    }

    pub async fn create_key(
        &self,
        actor: &str,
        client_id: &str,
        req: CreateKey,
        policy: KeyPolicy,
    ) -> AdminResult<CreatedKey> {
        let never = req.never_expires.unwrap_or(false);
        if never && !policy.allow_never {
            return Err(AdminError::BadRequest(
                "keys that never expire are not allowed here".into(),
            ));
        }
        let client = self
            .store
            .get_client(client_id)
            .await
            .map_err(|e| AdminError::from_store(e, "client"))?;
        if client.auth_type != AuthType::ApiKey {
            return Err(AdminError::BadRequest(
                "only api_key clients have API keys".into(),
            ));
        }
        if client.status == Status::Revoked {
            return Err(AdminError::Conflict("the client is revoked".into()));
        }
        let name = check_text(
            "name",
            req.name.as_deref().unwrap_or("default"),
            MAX_NAME,
            false,
        )?;
        let (key, secret) = self.new_key(client_id, name, (!never).then_some(policy.ttl_secs));
        let audit = Audit {
            actor: actor.into(),
            action: "key.create",
            target: key.id.clone(),
            detail: json!({"client_id": client_id, "name": key.name, "prefix": key.prefix, "expires_at": key.expires_at}),
        };
        let stored = self
            .store
            .insert_api_key(key, audit)
            .await
            .map_err(|e| AdminError::from_store(e, "key"))?;
        Ok(CreatedKey {
            id: stored.id,
            key: secret.expose().to_string(),
            name: stored.name,
            prefix: stored.prefix,
            expires_at: stored.expires_at,
            previous_valid_until: None,
        })
    }

    pub async fn list_keys(&self, client_id: &str) -> AdminResult<Vec<ApiKey>> {
        self.store
            .get_client(client_id)
            .await
            .map_err(|e| AdminError::from_store(e, "client"))?;
        self.store
            .list_api_keys(client_id)
            .await
            .map_err(|e| AdminError::from_store(e, "key"))
    }

    pub async fn revoke_key(&self, actor: &str, id: &str) -> AdminResult<ApiKey> {
        let key = self
            .store
            .get_api_key(id)
            .await
            .map_err(|e| AdminError::from_store(e, "key"))?;
        if key.status == "revoked" {
            return Err(AdminError::Conflict("the key is already revoked".into()));
        }
        let audit = Audit {
            actor: actor.into(),
            action: "key.revoke",
            target: id.into(),
            detail: json!({"client_id": key.client_id}),
        };
        let revoked = self
            .store
            .set_api_key_state(id, Status::Revoked, key.expires_at, audit)
            .await
            .map_err(|e| AdminError::from_store(e, "key"))?;
        self.changed(&key.client_id);
        Ok(revoked)
    }

    /// A new key of the same client, name and lifetime policy; the old one
    /// works for the grace period (status `expiring`), then not at all.
    pub async fn roll_key(
        &self,
        actor: &str,
        id: &str,
        req: RollKey,
        policy: KeyPolicy,
    ) -> AdminResult<CreatedKey> {
        let key = self
            .store
            .get_api_key(id)
            .await
            .map_err(|e| AdminError::from_store(e, "key"))?;
        if key.status == "revoked" {
            return Err(AdminError::Conflict(
                "a revoked key cannot be rolled".into(),
            ));
        }
        let at = now();
        let grace = req.grace_period_seconds.unwrap_or(0).min(30 * 86_400) as i64;
        let ttl = match key.expires_at {
            None if policy.allow_never => None,
            _ => Some(policy.ttl_secs),
        };
        let (new, secret) = self.new_key(&key.client_id, key.name.clone(), ttl);
        let audit = Audit {
            actor: actor.into(),
            action: "key.roll",
            target: id.into(),
            detail: json!({"client_id": key.client_id, "new_key": new.id, "grace_period_seconds": grace}),
        };
        let stored = self
            .store
            .roll_api_key(id, new, at + grace, audit)
            .await
            .map_err(|e| AdminError::from_store(e, "key"))?;
        self.changed(&key.client_id);
        Ok(CreatedKey {
            id: stored.id,
            key: secret.expose().to_string(),
            name: stored.name,
            prefix: stored.prefix,
            expires_at: stored.expires_at,
            previous_valid_until: Some(key.expires_at.map_or(at + grace, |e| e.min(at + grace))),
        })
    }

    /// Requests of a client by hour or day, service, key and outcome.
    pub async fn usage(&self, client_id: &str, q: &UsageQuery) -> AdminResult<UsageReport> {
        let at = now();
        let to =
            q.to.as_deref()
                .map(|t| parse_time("to", t))
                .transpose()?
                .unwrap_or(at);
        let from = q
            .from
            .as_deref()
            .map(|t| parse_time("from", t))
            .transpose()?
            .unwrap_or(to - 7 * 86_400);
        let day = match q.step.as_deref() {
            None | Some("hour") => false,
            Some("day") => true,
            Some(other) => {
                return Err(AdminError::BadRequest(format!(
                    "unknown step `{}`: hour or day",
                    other.chars().take(16).collect::<String>()
                )))
            }
        };
        if from > to {
            return Err(AdminError::BadRequest("`from` is after `to`".into()));
        }
        if to - from > 366 * 86_400 {
            return Err(AdminError::BadRequest(
                "the window is longer than a year".into(),
            ));
        }
        self.store
            .get_client(client_id)
            .await
            .map_err(|e| AdminError::from_store(e, "client"))?;
        let width = if day { 86_400 } else { 3600 };
        let start = from - from.rem_euclid(width);
        let rows = self
            .store
            .client_usage(client_id, start, to)
            .await
            .map_err(|e| AdminError::from_store(e, "usage"))?;
        let buckets = if day {
            let mut days: std::collections::BTreeMap<(i64, String, String), UsageBucket> =
                std::collections::BTreeMap::new();
            for r in rows {
                let d = r.start - r.start.rem_euclid(86_400);
                let e = days
                    .entry((d, r.service.clone(), r.key_id.clone()))
                    .or_insert_with(|| UsageBucket {
                        start: d,
                        service: r.service.clone(),
                        key_id: r.key_id.clone(),
                        client_id: r.client_id.clone(),
                        ..Default::default()
                    });
                e.c2xx += r.c2xx;
                e.c3xx += r.c3xx;
                e.c4xx += r.c4xx;
                e.c429 += r.c429;
                e.c5xx += r.c5xx;
            }
            days.into_values().collect()
        } else {
            rows
        };
        Ok(UsageReport { buckets })
    }

    /// Keys that expire within `within` (never the keys themselves).
    pub async fn expiring_keys(&self, within: &str) -> AdminResult<Vec<ApiKey>> {
        let d = humantime::parse_duration(within.trim()).map_err(|_| {
            AdminError::BadRequest(format!(
                "invalid duration `{}`: such as 7d or 36h",
                within.chars().take(32).collect::<String>()
            ))
        })?;
        if d.as_secs() > 366 * 86_400 {
            return Err(AdminError::BadRequest(
                "expiring_within is longer than a year".into(),
            ));
        }
        let at = now();
        self.store
            .expiring_api_keys(at, at + d.as_secs() as i64)
            .await
            .map_err(|e| AdminError::from_store(e, "key"))
    }

    /// Active again, with a fresh expiry (a key that never expired stays so).
    pub async fn renew_key(&self, actor: &str, id: &str, policy: KeyPolicy) -> AdminResult<ApiKey> {
        let key = self
            .store
            .get_api_key(id)
            .await
            .map_err(|e| AdminError::from_store(e, "key"))?;
        let client = self
            .store
            .get_client(&key.client_id)
            .await
            .map_err(|e| AdminError::from_store(e, "client"))?;
        if client.status == Status::Revoked {
            return Err(AdminError::Conflict("the key's client is revoked".into()));
        }
        // a key that never expired stays so only where such keys are allowed
        let expires_at = match key.expires_at {
            None if policy.allow_never => None,
            _ => Some(now() + policy.ttl_secs),
        };
        let audit = Audit {
            actor: actor.into(),
            action: "key.renew",
            target: id.into(),
            detail: json!({"client_id": key.client_id, "expires_at": expires_at}),
        };
        let renewed = self
            .store
            .set_api_key_state(id, Status::Active, expires_at, audit)
            .await
            .map_err(|e| AdminError::from_store(e, "key"))?;
        self.changed(&key.client_id);
        Ok(renewed)
    }

    pub async fn create_subscription(
        &self,
        actor: &str,
        req: CreateSubscription,
        status: SubscriptionStatus,
    ) -> AdminResult<Subscription> {
        {
            let snap = self.snapshot.load();
            if !snap.config.services.contains_key(&req.service) {
                return Err(AdminError::BadRequest(format!(
                    "unknown service `{}`",
                    req.service.chars().take(64).collect::<String>()
                )));
            }
            if let Some(p) = &req.plan {
                if !snap.config.plans.contains_key(p) {
                    return Err(AdminError::BadRequest(format!(
                        "unknown plan `{}`",
                        p.chars().take(64).collect::<String>()
                    )));
                }
            }
        }
        let sub = Subscription {
            id: secrets::new_id("sub"),
            client_id: req.client_id,
            service: req.service,
            plan: req.plan,
            status,
            created_at: now(),
        };
        let audit = Audit {
            actor: actor.into(),
            action: "subscription.create",
            target: sub.id.clone(),
            detail: json!({"client_id": sub.client_id, "service": sub.service, "plan": sub.plan,
                           "status": sub.status}),
        };
        self.store
            .insert_subscription(sub.clone(), audit)
            .await
            .map_err(|e| AdminError::from_store(e, "client"))?;
        self.changed(&sub.client_id);
        Ok(sub)
    }

    pub async fn list_subscriptions(
        &self,
        client_id: Option<&str>,
    ) -> AdminResult<Vec<Subscription>> {
        self.store
            .list_subscriptions(client_id.filter(|c| !c.is_empty()))
            .await
            .map_err(|e| AdminError::from_store(e, "subscription"))
    }

    /// An admin approves a pending subscription.
    pub async fn approve_subscription(&self, actor: &str, id: &str) -> AdminResult<Subscription> {
        let audit = Audit {
            actor: actor.into(),
            action: "subscription.approve",
            target: id.into(),
            detail: json!({}),
        };
        let sub = self
            .store
            .activate_subscription(id, audit)
            .await
            .map_err(|e| AdminError::from_store(e, "subscription"))?;
        self.changed(&sub.client_id);
        Ok(sub)
    }

    /// An admin refuses a pending subscription: it is removed.
    pub async fn reject_subscription(&self, actor: &str, id: &str) -> AdminResult<Subscription> {
        let pending = Some(SubscriptionStatus::Pending);
        self.remove_subscription(actor, id, pending, "subscription.reject")
            .await
    }

    pub async fn delete_subscription(&self, actor: &str, id: &str) -> AdminResult<()> {
        self.remove_subscription(actor, id, None, "subscription.delete")
            .await
            .map(|_| ())
    }

    async fn remove_subscription(
        &self,
        actor: &str,
        id: &str,
        only: Option<SubscriptionStatus>,
        action: &'static str,
    ) -> AdminResult<Subscription> {
        let audit = Audit {
            actor: actor.into(),
            action,
            target: id.into(),
            detail: json!({}),
        };
        let sub = self
            .store
            .delete_subscription(id, only, audit)
            .await
            .map_err(|e| AdminError::from_store(e, "subscription"))?;
        self.changed(&sub.client_id);
        Ok(sub)
    }

    pub async fn audit(&self, limit: Option<i64>) -> AdminResult<Vec<AuditEntry>> {
        let limit = limit.unwrap_or(100);
        if !(1..=1000).contains(&limit) {
            return Err(AdminError::BadRequest(
                "limit must be between 1 and 1000".into(),
            ));
        }
        self.store
            .list_audit(limit)
            .await
            .map_err(|e| AdminError::from_store(e, "audit"))
    }
}
