//! The client behind a verified token: `sub` for the built-in issuer, the
//! (issuer, client claim) identity for an external one. Cached like keys,
//! and dropped at once when an admin change touches the client.

use std::sync::Arc;

use super::jwt::ClientRef;
use super::{AuthFailure, Principal};
use crate::config::CacheSettings;
use crate::store::{AuthType, Client, Store, StoreError};
use crate::telemetry::Metrics;

type Lookup = super::cache::Lookup<Principal>;
type CredentialCache = super::cache::CredentialCache<ClientRef, Principal>;

pub struct ClientDirectory {
    store: Arc<dyn Store>,
    cache: CredentialCache,
}

impl ClientDirectory {
    pub fn new(store: Arc<dyn Store>, settings: &CacheSettings, metrics: Arc<Metrics>) -> Self {
        ClientDirectory {
            store,
            cache: CredentialCache::new(settings, metrics.cache_counters("client")),
        }
    }

    pub async fn resolve(&self, r: &ClientRef) -> Result<Arc<Principal>, AuthFailure> {
        let lookup = self
            .cache
            .lookup(r, || {
                let (store, key) = (self.store.clone(), r.clone());
                async move { load(store.as_ref(), &key).await }
            })
            .await?;
        match lookup {
            Lookup::Found(p) if p.active => Ok(p),
            _ => Err(AuthFailure::UnknownClient),
        }
    }

    /// Drop every cached client.
    pub fn invalidate_all(&self) {
        self.cache.invalidate_all();
    }

    pub fn invalidate_client(&self, client_id: &str) {
        let id = client_id.to_string();
        self.cache.invalidate_if(move |k, v| match (k, v) {
            (_, Lookup::Found(p)) => p.client_id() == id,
            (ClientRef::Id(k), Lookup::Unknown) => *k == id,
            // a new external client may now exist for a cached miss
            (ClientRef::External(..), Lookup::Unknown) => true,
        });
    }
}

async fn load(store: &dyn Store, r: &ClientRef) -> Result<Lookup, StoreError> {
    let client: Option<Client> = match r {
        ClientRef::Id(id) => match store.get_client(id).await {
            Ok(c) if c.auth_type == AuthType::Oauth2 => Some(c),
            Ok(_) | Err(StoreError::NotFound) => None,
            Err(e) => return Err(e),
        },
        ClientRef::External(issuer, ext) => store.find_external_client(issuer, ext).await?,
    };
    let Some(client) = client else {
        return Ok(Lookup::Unknown);
    };
    let subscriptions = store.list_subscriptions(Some(&client.id)).await?;
    Ok(Lookup::Found(Arc::new(Principal::new(
        client,
        None,
        subscriptions,
    ))))
}
