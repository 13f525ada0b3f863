//! The rules of self-service, shared by the portal API and the console:
//! what an account owns (anything else answers like an unknown id), the
//! scopes, key lifetimes and subscriptions `portal` allows.

use super::PortalApi;
use crate::config::{Approval, PortalSettings};
use crate::control::accounts::{Caller, PortalError, PortalResult};
use crate::control::registry::{check_scopes, AdminError, KeyPolicy};
use crate::store::{ApiKey, Client, StoreError, Subscription, SubscriptionStatus};

/// Keys an account creates: the shorter of the default lifetime and the
/// portal's maximum; never expiring only where allowed.
pub(crate) fn key_policy(api: &PortalApi, portal: &PortalSettings) -> KeyPolicy {
    let default_ttl = api.snapshot.load().config.auth.api_key.default_ttl;
    KeyPolicy {
        ttl_secs: default_ttl.min(portal.max_key_lifetime).as_secs() as i64,
        allow_never: portal.allow_never_expiring_keys,
    }
}

fn not_found(what: &str) -> PortalError {
    AdminError::NotFound(format!("{what} not found")).into()
}

/// The client if the caller owns it; otherwise exactly an unknown id.
pub(crate) async fn own_client(api: &PortalApi, caller: &Caller, id: &str) -> PortalResult<Client> {
    match api.registry.store.get_client(id).await {
        Ok(c) if c.account_id.as_deref() == Some(caller.account.id.as_str()) => Ok(c),
        Ok(_) | Err(StoreError::NotFound) => Err(not_found("client")),
        Err(e) => Err(AdminError::from_store(e, "client").into()),
    }
}

pub(crate) async fn own_key(api: &PortalApi, caller: &Caller, id: &str) -> PortalResult<ApiKey> {
    let key = match api.registry.store.get_api_key(id).await {
        Ok(k) => k,
        Err(StoreError::NotFound) => return Err(not_found("key")),
        Err(e) => return Err(AdminError::from_store(e, "key").into()),
    };
    own_client(api, caller, &key.client_id)
        .await
        .map_err(|_| not_found("key"))?;
    Ok(key)
}

pub(crate) async fn own_subscription(
    api: &PortalApi,
    caller: &Caller,
    id: &str,
) -> PortalResult<Subscription> {
    let sub = match api.registry.store.get_subscription(id).await {
        Ok(s) => s,
        Err(StoreError::NotFound) => return Err(not_found("subscription")),
        Err(e) => return Err(AdminError::from_store(e, "subscription").into()),
    };
    own_client(api, caller, &sub.client_id)
        .await
        .map_err(|_| not_found("subscription"))?;
    Ok(sub)
}

/// Scopes an account may give: those of `portal.services`.
pub(crate) fn check_portal_scopes(portal: &PortalSettings, scopes: &[String]) -> PortalResult<()> {
    let scopes = check_scopes(scopes)?;
    if let Some(s) = scopes
        .iter()
        .find(|s| !portal.allowed_scopes().any(|a| a == *s))
    {
        return Err(AdminError::BadRequest(format!(
            "scope `{s}` is not offered to accounts (see GET /catalog)"
        ))
        .into());
    }
    Ok(())
}

/// A subscription an account asks for: a service of `portal.services` and
/// one of its plans (one must be chosen when it lists any); the status it
/// starts in (`pending` for `approval: manual`).
pub(crate) fn subscription_status(
    portal: &PortalSettings,
    service: &str,
    plan: Option<&str>,
) -> PortalResult<SubscriptionStatus> {
    let shown = |s: &str| s.chars().take(64).collect::<String>();
    let Some(offer) = portal.services.get(service) else {
        return Err(AdminError::BadRequest(format!(
            "service `{}` is not offered to accounts (see GET /catalog)",
            shown(service)
        ))
        .into());
    };
    match plan {
        Some(p) if !offer.plans.iter().any(|o| o == p) => {
            return Err(AdminError::BadRequest(format!(
                "plan `{}` is not offered for `{service}`: one of {}",
                shown(p),
                offer.plans.join(", ")
            ))
            .into())
        }
        None if !offer.plans.is_empty() => {
            return Err(AdminError::BadRequest(format!(
                "choose a plan for `{service}`: one of {}",
                offer.plans.join(", ")
            ))
            .into())
        }
        _ => {}
    }
    Ok(match offer.approval {
        Approval::Auto => SubscriptionStatus::Active,
        Approval::Manual => SubscriptionStatus::Pending,
    })
}
