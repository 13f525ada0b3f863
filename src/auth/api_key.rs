//! API keys at the proxy: shape and checksum first (a malformed key never
//! reaches the cache or the store), then a cache keyed by the key's
//! peppered hash, then the store. Unknown keys are cached briefly too;
//! concurrent misses for one key are merged into one store query.

use std::sync::Arc;

use super::usage::{Counted, UsageCell, UsageRecorder};
use super::{AuthFailure, Principal};
use crate::config::CacheSettings;
use crate::secrets::{self, Pepper};
use crate::store::{now, Store, StoreError};
use crate::telemetry::Metrics;

/// A cached key is the principal it was loaded with: the key's state and
/// use count are held there (see [`Principal::key_active`]), so a key, its
/// client and the client's subscriptions are cached, and dropped, together.
impl Counted for Principal {
    fn usage(&self) -> (&str, &UsageCell) {
        (self.key_id().unwrap_or_default(), self.key_usage())
    }
}

type Lookup = super::cache::Lookup<Principal>;
type CredentialCache = super::cache::CredentialCache<[u8; 32], Principal>;

pub struct ApiKeyAuth {
    store: Arc<dyn Store>,
    pepper: Pepper,
    /// by HMAC of the key (the store's hash, before hex encoding)
    cache: CredentialCache,
    usage: Arc<UsageRecorder>,
}

impl ApiKeyAuth {
    pub fn new(
        store: Arc<dyn Store>,
        pepper: Pepper,
        settings: &CacheSettings,
        usage: Arc<UsageRecorder>,
        metrics: &Metrics,
    ) -> Self {
        ApiKeyAuth {
            store,
            pepper,
            cache: CredentialCache::new(settings, metrics.cache_counters("api_key")),
            usage,
        }
    }

    /// The key's principal, or why it is refused. `presented` is the header
    /// value's octets: [`secrets::well_formed`] refuses anything that is not
    /// a key's shape before it is hashed.
    pub async fn authenticate(&self, presented: &[u8]) -> Result<Arc<Principal>, AuthFailure> {
        if !secrets::well_formed(presented, secrets::API_KEY_PREFIX) {
            return Err(AuthFailure::MalformedKey);
        }
        let digest = self.pepper.digest(presented);
        let lookup = self
            .cache
            .lookup(&digest, || {
                let store = self.store.clone();
                async move { load(store.as_ref(), &secrets::to_hex(&digest)).await }
            })
            .await?;
        match lookup {
            Lookup::Unknown => Err(AuthFailure::UnknownKey),
            Lookup::Found(rec) => {
                if !rec.key_active() {
                    Err(AuthFailure::RevokedKey)
                } else if rec.key_expires_at().is_some_and(|e| e <= now()) {
                    Err(AuthFailure::ExpiredKey)
                } else if !rec.active {
                    Err(AuthFailure::RevokedClient)
                } else {
                    Ok(rec)
                }
            }
        }
    }

    /// Count one use of an authenticated key.
    pub fn record_use(&self, rec: &Arc<Principal>) {
        self.usage.record(rec, now());
    }

    /// Drop every cached record.
    pub fn invalidate_all(&self) {
        self.cache.invalidate_all();
    }

    /// Drop every cached record of this client (admin changes).
    pub fn invalidate_client(&self, client_id: &str) {
        let id = client_id.to_string();
        self.cache.invalidate_if(move |_, v| match v {
            Lookup::Found(r) => r.client_id() == id,
            Lookup::Unknown => false,
        });
    }
}

async fn load(store: &dyn Store, hash: &str) -> Result<Lookup, StoreError> {
    let Some((key, client)) = store.find_api_key(hash).await? else {
        return Ok(Lookup::Unknown);
    };
    let subs = store.list_subscriptions(Some(&client.id)).await?;
    Ok(Lookup::Found(Arc::new(Principal::new(
        client,
        Some(&key),
        subs,
    ))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqliteStore;

    async fn add_client(store: &SqliteStore, pepper: &Pepper, n: u32) -> String {
        crate::store::testing::add_api_key_client(store, pepper, &n.to_string())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn store_down_keeps_cached_keys_and_refuses_unknown_ones() {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = Arc::new(SqliteStore::open(&dir.path().join("t.db")).await.unwrap());
        let pepper = Pepper::new(b"p".to_vec());
        let cached = add_client(&sqlite, &pepper, 1).await;
        let uncached = add_client(&sqlite, &pepper, 2).await;
        let settings = CacheSettings {
            ttl: std::time::Duration::from_secs(60),
            negative_ttl: std::time::Duration::from_secs(5),
            max_entries: 100,
        };
        let metrics = Metrics::new().unwrap();
        let usage = Arc::new(UsageRecorder::default());
        let auth = ApiKeyAuth::new(sqlite.clone(), pepper, &settings, usage, &metrics);
        assert!(auth.authenticate(cached.as_bytes()).await.is_ok());

        sqlite.close().await;
        assert!(
            auth.authenticate(cached.as_bytes()).await.is_ok(),
            "a cached key keeps working"
        );
        match auth.authenticate(uncached.as_bytes()).await {
            Err(AuthFailure::StoreUnavailable(_)) => {}
            other => panic!("an uncached key must not pass while the store is down: {other:?}"),
        }
        // and the failure is not cached as "unknown": it is retried next time
        assert!(matches!(
            auth.authenticate(uncached.as_bytes()).await,
            Err(AuthFailure::StoreUnavailable(_))
        ));
    }
}
