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
    NewClient, NewSecret, Status, Store, StoreError, Subscription, SubscriptionStatus,
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
                let known = self
                    .snapshot
                    .load()
                    .config
                    .auth
                    .issuers
                    .iter()
                    .any(|i| i.name == issuer);
                if !known {
                    return Err(AdminError::BadRequest(format!(
                        "unknown issuer `{}`: name an entry of auth.issuers",
                        issuer.chars().take(64).collect::<String>()
                    )));
                }
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
        Ok(ClientDetail {
            client,
            subscriptions,
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
        };
        let detail = json!({"name": patch.name, "description_changed": patch.description.is_some(), "scopes": patch.scopes});
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
        let sub = self
            .store
            .get_subscription(id)
            .await
            .map_err(|e| AdminError::from_store(e, "subscription"))?;
        if sub.status != SubscriptionStatus::Pending {
            return Err(AdminError::Conflict(
                "the subscription is not pending".into(),
            ));
        }
        self.remove_subscription(actor, id, "subscription.reject")
            .await
    }

    pub async fn delete_subscription(&self, actor: &str, id: &str) -> AdminResult<()> {
        self.remove_subscription(actor, id, "subscription.delete")
            .await
            .map(|_| ())
    }

    async fn remove_subscription(
        &self,
        actor: &str,
        id: &str,
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
            .delete_subscription(id, audit)
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
