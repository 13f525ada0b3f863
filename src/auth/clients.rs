//! The client behind a verified token: `sub` for the built-in issuer, the
//! (issuer, client claim) identity for an external one. Cached like keys,
//! and dropped at once when an admin change touches the client.

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::future::Cache;
use moka::Expiry;

use super::jwt::ClientRef;
use super::{AuthFailure, Principal};
use crate::config::CacheSettings;
use crate::store::{AuthType, Client, Status, Store, StoreError};
use crate::telemetry::Metrics;

#[derive(Debug, Clone)]
enum Lookup {
    Found(Arc<Principal>),
    Unknown,
}

struct TtlByOutcome {
    ttl: Duration,
    negative_ttl: Duration,
}

impl Expiry<ClientRef, Lookup> for TtlByOutcome {
    fn expire_after_create(&self, _k: &ClientRef, v: &Lookup, _now: Instant) -> Option<Duration> {
        Some(match v {
            Lookup::Found(_) => self.ttl,
            Lookup::Unknown => self.negative_ttl,
        })
    }
}

pub struct ClientDirectory {
    store: Arc<dyn Store>,
    cache: Cache<ClientRef, Lookup>,
    metrics: Arc<Metrics>,
}

impl ClientDirectory {
    pub fn new(store: Arc<dyn Store>, settings: &CacheSettings, metrics: Arc<Metrics>) -> Self {
        let cache = Cache::builder()
            .max_capacity(settings.max_entries)
            .expire_after(TtlByOutcome {
                ttl: settings.ttl,
                negative_ttl: settings.negative_ttl,
            })
            .support_invalidation_closures()
            .build();
        ClientDirectory {
            store,
            cache,
            metrics,
        }
    }

    pub async fn resolve(&self, r: &ClientRef) -> Result<Arc<Principal>, AuthFailure> {
        let lookup = match self.cache.get(r).await {
            Some(hit) => {
                self.metrics.cache_lookup("client", true);
                hit
            }
            None => {
                self.metrics.cache_lookup("client", false);
                let store = self.store.clone();
                let key = r.clone();
                self.cache
                    .try_get_with(r.clone(), async move { load(store.as_ref(), &key).await })
                    .await
                    .map_err(|e| AuthFailure::StoreUnavailable(e.to_string()))?
            }
        };
        match lookup {
            Lookup::Found(p) if p.active => Ok(p),
            _ => Err(AuthFailure::UnknownClient),
        }
    }

    pub fn invalidate_client(&self, client_id: &str) {
        let id = client_id.to_string();
        let _ = self.cache.invalidate_entries_if(move |k, v| match (k, v) {
            (_, Lookup::Found(p)) => p.client_id == id,
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
    let subscriptions = store
        .list_subscriptions(Some(&client.id))
        .await?
        .into_iter()
        .map(|s| (s.service, (s.id, s.plan)))
        .collect();
    Ok(Lookup::Found(Arc::new(Principal {
        client_id: client.id,
        client_name: client.name,
        active: client.status == Status::Active,
        scopes: client.scopes,
        subscriptions,
    })))
}
