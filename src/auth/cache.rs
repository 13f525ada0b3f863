//! The credential caches' common shape: a found record lives `ttl`, an
//! unknown one `negative_ttl`; a miss goes to the store once however many
//! requests wait for it, and the store failing is never cached. A found
//! record is also kept a second in a map of the worker thread (see
//! [`super::front`]), which serves repeat hits for less.

use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::future::Cache;
use moka::Expiry;

use super::front::Front;
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

/// Found records a front map holds per thread.
const FRONT_ENTRIES: usize = 1024;

/// A credential cache: moka, shared by every thread, behind a map per
/// worker thread. Every invalidation goes through here, so both see it.
pub struct CredentialCache<K: Send, T: Send + Sync> {
    shared: Cache<K, Lookup<T>>,
    front: Front<K, Arc<T>>,
    counters: CacheCounters,
}

impl<K, T> CredentialCache<K, T>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    T: Send + Sync + 'static,
{
    /// `counters` count every lookup, hits of either layer and misses.
    pub fn new(settings: &CacheSettings, counters: CacheCounters) -> Self {
        CredentialCache {
            shared: Cache::builder()
                .max_capacity(settings.max_entries)
                .expire_after(TtlByOutcome {
                    ttl: settings.ttl,
                    negative_ttl: settings.negative_ttl,
                })
                .support_invalidation_closures()
                .build(),
            front: Front::new(FRONT_ENTRIES, settings.ttl),
            counters,
        }
    }

    /// The cached outcome for `key`, loading it on a miss. The key is
    /// cloned (and the loader built) only on a miss of the shared cache.
    pub async fn lookup<F>(
        &self,
        key: &K,
        load: impl FnOnce() -> F,
    ) -> Result<Lookup<T>, AuthFailure>
    where
        F: Future<Output = Result<Lookup<T>, StoreError>>,
    {
        let generation = self.front.generation();
        let now = Instant::now();
        if let Some(hit) = self.front.get(key, generation, now) {
            self.counters.count(true);
            return Ok(Lookup::Found(hit));
        }
        let outcome = match self.shared.get(key).await {
            Some(hit) => {
                self.counters.count(true);
                hit
            }
            None => {
                self.counters.count(false);
                self.shared
                    .try_get_with(key.clone(), load())
                    .await
                    .map_err(|e| AuthFailure::StoreUnavailable(e.to_string()))?
            }
        };
        if let Lookup::Found(record) = &outcome {
            self.front.put(key.clone(), record.clone(), generation, now);
        }
        Ok(outcome)
    }

    /// Drop every cached outcome.
    pub fn invalidate_all(&self) {
        self.shared.invalidate_all();
        self.front.invalidate();
    }

    /// Drop every cached outcome `which` picks.
    pub fn invalidate_if(&self, which: impl Fn(&K, &Lookup<T>) -> bool + Send + Sync + 'static) {
        // cannot fail: the cache is built with invalidation closures
        let _ = self.shared.invalidate_entries_if(which);
        self.front.invalidate();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::telemetry::Metrics;

    type Loads = Arc<AtomicUsize>;

    /// A loader that counts its calls and finds `value` (None: unknown).
    fn found(
        loads: &Loads,
        value: Option<&'static str>,
    ) -> impl FnOnce() -> std::future::Ready<Result<Lookup<&'static str>, StoreError>> {
        let loads = loads.clone();
        move || {
            loads.fetch_add(1, Ordering::SeqCst);
            std::future::ready(Ok(match value {
                Some(v) => Lookup::Found(Arc::new(v)),
                None => Lookup::Unknown,
            }))
        }
    }

    fn value(l: Lookup<&'static str>) -> Option<&'static str> {
        match l {
            Lookup::Found(v) => Some(*v),
            Lookup::Unknown => None,
        }
    }

    #[tokio::test]
    async fn every_invalidation_reaches_the_hits_a_thread_serves() {
        let metrics = Metrics::new().unwrap();
        let counters = metrics.cache_counters("api_key");
        let (hits, misses) = (counters.hit.clone(), counters.miss.clone());
        let settings = CacheSettings {
            ttl: Duration::from_secs(60),
            negative_ttl: Duration::from_secs(60),
            max_entries: 100,
        };
        let cache: CredentialCache<u32, &'static str> = CredentialCache::new(&settings, counters);
        let loads = Loads::default();

        assert_eq!(
            value(cache.lookup(&1, found(&loads, Some("a"))).await.unwrap()),
            Some("a")
        );
        for _ in 0..3 {
            let again = cache.lookup(&1, found(&loads, Some("b"))).await.unwrap();
            assert_eq!(value(again), Some("a"), "a hit, not a second load");
        }
        assert_eq!(
            (loads.load(Ordering::SeqCst), hits.get(), misses.get()),
            (1, 3, 1)
        );

        cache.invalidate_if(|k, _| *k == 1);
        let after = cache.lookup(&1, found(&loads, Some("b"))).await.unwrap();
        assert_eq!(
            value(after),
            Some("b"),
            "served from before the invalidation"
        );

        cache.invalidate_all();
        let after = cache.lookup(&1, found(&loads, Some("c"))).await.unwrap();
        assert_eq!(value(after), Some("c"), "served from before invalidate_all");

        // an unknown key is cached (negative_ttl) but found again only there
        assert_eq!(
            value(cache.lookup(&2, found(&loads, None)).await.unwrap()),
            None
        );
        assert_eq!(
            value(cache.lookup(&2, found(&loads, Some("x"))).await.unwrap()),
            None
        );
        assert_eq!(
            cache
                .front
                .get(&2, cache.front.generation(), Instant::now()),
            None
        );
        assert_eq!(loads.load(Ordering::SeqCst), 4);
    }
}
