//! The credential caches' common shape: a found record lives `ttl`, an
//! unknown one `negative_ttl`; a miss goes to the store once however many
//! requests wait for it, and the store failing is never cached.

use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::future::Cache;
use moka::Expiry;

use super::AuthFailure;
use crate::config::CacheSettings;
use crate::store::StoreError;
use crate::telemetry::CacheCounters;

#[derive(Debug)]
pub enum Lookup<T> {
    Found(Arc<T>),
    Unknown,
}

impl<T> Clone for Lookup<T> {
    fn clone(&self) -> Self {
        match self {
            Lookup::Found(v) => Lookup::Found(v.clone()),
            Lookup::Unknown => Lookup::Unknown,
        }
    }
}

struct TtlByOutcome {
    ttl: Duration,
    negative_ttl: Duration,
}

impl<K, T> Expiry<K, Lookup<T>> for TtlByOutcome {
    fn expire_after_create(&self, _key: &K, value: &Lookup<T>, _now: Instant) -> Option<Duration> {
        Some(match value {
            Lookup::Found(_) => self.ttl,
            Lookup::Unknown => self.negative_ttl,
        })
    }
}

pub fn build<K, T>(settings: &CacheSettings) -> Cache<K, Lookup<T>>
where
    K: Hash + Eq + Send + Sync + 'static,
    T: Send + Sync + 'static,
{
    Cache::builder()
        .max_capacity(settings.max_entries)
        .expire_after(TtlByOutcome {
            ttl: settings.ttl,
            negative_ttl: settings.negative_ttl,
        })
        .support_invalidation_closures()
        .build()
}

/// The cached outcome for `key`, loading it on a miss; counted in
/// `tollgate_cache_lookups_total`. The key is cloned (and the loader built)
/// only on a miss: a hit allocates nothing.
pub async fn lookup<K, T, F>(
    cache: &Cache<K, Lookup<T>>,
    key: &K,
    counters: &CacheCounters,
    load: impl FnOnce() -> F,
) -> Result<Lookup<T>, AuthFailure>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    T: Send + Sync + 'static,
    F: Future<Output = Result<Lookup<T>, StoreError>>,
{
    if let Some(hit) = cache.get(key).await {
        counters.count(true);
        return Ok(hit);
    }
    counters.count(false);
    cache
        .try_get_with(key.clone(), load())
        .await
        .map_err(|e| AuthFailure::StoreUnavailable(e.to_string()))
}
