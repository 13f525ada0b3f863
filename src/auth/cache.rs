//! The credential caches' common shape: a found record lives `ttl`, an
//! unknown one `negative_ttl`; a miss goes to the store once however many
//! requests wait for it, and the store failing is never cached. A found
//! record is also kept a second in a map of the worker thread (see
//! [`super::front`]), which serves repeat hits for less.
//!
//! The shared layer is a `quick_cache` table: its entries live inline in
//! one slab per shard, about 100 bytes each with the key, where a moka
//! entry takes about 340 bytes in several allocations, and a node may
//! cache a hundred thousand keys. Entries carry their own deadline,
//! checked on every read.

use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::time::{Duration, Instant};

use quick_cache::sync::{Cache, DefaultLifecycle, EntryAction, EntryResult};
use quick_cache::UnitWeighter;

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

/// What the shared layer holds for a key.
enum Entry<T> {
    /// The store's answer, served until the deadline.
    Loaded(Lookup<T>, Instant),
    /// The store failed. Only lookups that were waiting for that load
    /// take the failure; a later one asks the store again. Behind one
    /// pointer, so that an entry is no larger than a loaded one.
    Failed(Arc<LoadFailure>),
}

/// A load that failed: when, and why.
struct LoadFailure {
    at: Instant,
    error: String,
}

impl<T> Clone for Entry<T> {
    fn clone(&self) -> Self {
        match self {
            Entry::Loaded(l, until) => Entry::Loaded(l.clone(), *until),
            Entry::Failed(f) => Entry::Failed(f.clone()),
        }
    }
}

type Shared<K, T> = Cache<K, Entry<T>, UnitWeighter, foldhash::fast::RandomState>;

/// The most entries a cache reserves room for at start (about 100 MB of
/// address space); a larger `max_entries` grows its slabs as it fills.
const RESERVED_ENTRIES: u64 = 1_000_000;

/// Found records a front map holds per thread.
const FRONT_ENTRIES: usize = 1024;

/// A credential cache: a bounded table shared by every thread, behind a
/// map per worker thread. Every invalidation goes through here, so both
/// see it.
pub struct CredentialCache<K: Send, T: Send + Sync> {
    shared: Shared<K, T>,
    front: Front<K, Arc<T>>,
    ttl: Duration,
    negative_ttl: Duration,
    counters: CacheCounters,
}

impl<K, T> CredentialCache<K, T>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    T: Send + Sync + 'static,
{
    /// `counters` count every lookup, hits of either layer and misses.
    pub fn new(settings: &CacheSettings, counters: CacheCounters) -> Self {
        let capacity = settings.max_entries.max(1);
        // the estimate sizes the shards and the ghost list
        let shared = Cache::with(
            usize::try_from(capacity.min(4096)).unwrap_or(4096),
            capacity,
            UnitWeighter,
            foldhash::fast::RandomState::default(),
            DefaultLifecycle::default(),
        );
        // Each shard's slab is sized for its share of the capacity at once:
        // grown by doubling, it would copy itself at every step and leave
        // the smaller slabs behind as freed pages the allocator keeps. The
        // reserved pages become resident only as entries are written.
        shared.reserve(usize::try_from(capacity.min(RESERVED_ENTRIES)).unwrap_or(0));
        CredentialCache {
            shared,
            front: Front::new(FRONT_ENTRIES, settings.ttl),
            ttl: settings.ttl,
            negative_ttl: settings.negative_ttl,
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
        let outcome = match self.shared.get(key) {
            Some(Entry::Loaded(hit, until)) if now < until => {
                self.counters.count(true);
                hit
            }
            _ => {
                self.counters.count(false);
                self.load(key, now, generation, load).await?
            }
        };
        if let Lookup::Found(record) = &outcome {
            self.front.put(key.clone(), record.clone(), generation, now);
        }
        Ok(outcome)
    }

    /// The miss path: wait for a load of `key` already under way, or load
    /// it. `now` is when the lookup began, `generation` the front's then.
    async fn load<F>(
        &self,
        key: &K,
        now: Instant,
        generation: u64,
        load: impl FnOnce() -> F,
    ) -> Result<Lookup<T>, AuthFailure>
    where
        F: Future<Output = Result<Lookup<T>, StoreError>>,
    {
        let entry = self
            .shared
            .entry_async(key, |_, entry| match entry {
                Entry::Loaded(hit, until) if now < *until => EntryAction::Retain(Ok(hit.clone())),
                // the load this lookup waited for failed
                Entry::Failed(f) if f.at >= now => EntryAction::Retain(Err(f.clone())),
                _ => EntryAction::ReplaceWithGuard,
            })
            .await;
        let guard = match entry {
            EntryResult::Retained(Ok(hit)) => return Ok(hit),
            EntryResult::Retained(Err(f)) => {
                return Err(AuthFailure::StoreUnavailable(f.error.clone()))
            }
            EntryResult::Vacant(guard) | EntryResult::Replaced(guard, _) => Some(guard),
            // neither is asked for: load without sharing
            EntryResult::Removed(..) | EntryResult::Timeout => None,
        };
        let loaded = load().await;
        let at = Instant::now();
        let entry = match &loaded {
            Ok(lookup) => {
                let ttl = match lookup {
                    Lookup::Found(_) => self.ttl,
                    Lookup::Unknown => self.negative_ttl,
                };
                Entry::Loaded(lookup.clone(), at + ttl)
            }
            Err(e) => Entry::Failed(Arc::new(LoadFailure {
                at,
                error: e.to_string(),
            })),
        };
        if let Some(guard) = guard {
            let _ = guard.insert(entry);
            // an invalidation since this load began may have missed what it
            // put in: take it out again (the waiters had it, as requests
            // under way while a change lands)
            if self.front.generation() != generation {
                self.shared.remove(key);
            }
        }
        loaded.map_err(|e| AuthFailure::StoreUnavailable(e.to_string()))
    }

    /// Drop every cached outcome. The front's generation moves before the
    /// shared layer is cleared (a load under way then takes out what it
    /// puts in, see [`Self::load`]) and after (a front entry put in from
    /// the shared layer in between is not served).
    pub fn invalidate_all(&self) {
        self.front.invalidate();
        self.shared.clear();
        self.front.invalidate();
    }

    /// Drop every cached outcome `which` picks, with the generation moved
    /// as in [`Self::invalidate_all`].
    pub fn invalidate_if(&self, which: impl Fn(&K, &Lookup<T>) -> bool + Send + Sync + 'static) {
        self.front.invalidate();
        self.shared.retain(|k, entry| match entry {
            Entry::Loaded(lookup, _) => !which(k, lookup),
            Entry::Failed(..) => true,
        });
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

    /// What `cache` answers for `key`, where a load would find `stored`.
    async fn look(
        cache: &CredentialCache<u32, &'static str>,
        key: u32,
        loads: &Loads,
        stored: Option<&'static str>,
    ) -> Option<&'static str> {
        value(cache.lookup(&key, found(loads, stored)).await.unwrap())
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

        assert_eq!(look(&cache, 1, &loads, Some("a")).await, Some("a"));
        for _ in 0..3 {
            assert_eq!(
                look(&cache, 1, &loads, Some("b")).await,
                Some("a"),
                "a hit, not a second load"
            );
        }
        assert_eq!(
            (loads.load(Ordering::SeqCst), hits.get(), misses.get()),
            (1, 3, 1)
        );

        cache.invalidate_if(|k, _| *k == 1);
        assert_eq!(
            look(&cache, 1, &loads, Some("b")).await,
            Some("b"),
            "served from before the invalidation"
        );

        cache.invalidate_all();
        assert_eq!(
            look(&cache, 1, &loads, Some("c")).await,
            Some("c"),
            "served from before invalidate_all"
        );

        // an unknown key is cached (negative_ttl) but found again only there
        assert_eq!(look(&cache, 2, &loads, None).await, None);
        assert_eq!(look(&cache, 2, &loads, Some("x")).await, None);
        assert_eq!(
            cache
                .front
                .get(&2, cache.front.generation(), Instant::now()),
            None
        );
        assert_eq!(loads.load(Ordering::SeqCst), 4);
    }

    fn cache(ttl: Duration, negative_ttl: Duration) -> CredentialCache<u32, &'static str> {
        let metrics = Metrics::new().unwrap();
        let settings = CacheSettings {
            ttl,
            negative_ttl,
            max_entries: 100,
        };
        CredentialCache::new(&settings, metrics.cache_counters("api_key"))
    }

    type Held =
        std::pin::Pin<Box<dyn Future<Output = Result<Lookup<&'static str>, StoreError>> + Send>>;

    /// A loader that waits for `release`, then answers `answer`.
    fn held(
        loads: &Loads,
        release: tokio::sync::oneshot::Receiver<()>,
        answer: Result<Option<&'static str>, &'static str>,
    ) -> impl FnOnce() -> Held {
        let loads = loads.clone();
        move || {
            loads.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                let _ = release.await;
                match answer {
                    Ok(Some(v)) => Ok(Lookup::Found(Arc::new(v))),
                    Ok(None) => Ok(Lookup::Unknown),
                    Err(e) => Err(StoreError::Unavailable(e.into())),
                }
            })
        }
    }

    /// Lets the spawned lookups run until they wait.
    async fn settle() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn a_failed_load_answers_its_waiters_and_is_not_kept() {
        let cache = Arc::new(cache(Duration::from_secs(60), Duration::from_secs(60)));
        let loads = Loads::default();
        let (release, wait) = tokio::sync::oneshot::channel();
        let first = {
            let (cache, loader) = (cache.clone(), held(&loads, wait, Err("down")));
            tokio::spawn(async move { cache.lookup(&1, loader).await })
        };
        settle().await;
        let waiter = {
            let (cache, loads) = (cache.clone(), loads.clone());
            tokio::spawn(async move { cache.lookup(&1, found(&loads, Some("w"))).await })
        };
        settle().await;
        release.send(()).unwrap();
        for task in [first, waiter] {
            assert!(matches!(
                task.await.unwrap(),
                Err(AuthFailure::StoreUnavailable(_))
            ));
        }
        assert_eq!(
            loads.load(Ordering::SeqCst),
            1,
            "the waiter shares the load"
        );

        // a lookup after the failure asks the store again
        assert_eq!(look(&cache, 1, &loads, Some("up")).await, Some("up"));
        assert_eq!(loads.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn an_invalidation_during_a_load_is_not_undone_by_it() {
        let cache = Arc::new(cache(Duration::from_secs(60), Duration::from_secs(60)));
        let loads = Loads::default();
        let (release, wait) = tokio::sync::oneshot::channel();
        let before = {
            let (cache, loader) = (cache.clone(), held(&loads, wait, Ok(Some("old"))));
            tokio::spawn(async move { cache.lookup(&1, loader).await })
        };
        settle().await;
        // the change lands while the store's answer is on its way
        cache.invalidate_if(|k, _| *k == 1);
        release.send(()).unwrap();
        assert_eq!(value(before.await.unwrap().unwrap()), Some("old"));

        assert_eq!(
            look(&cache, 1, &loads, Some("new")).await,
            Some("new"),
            "the old answer outlived the change"
        );
        assert_eq!(loads.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn an_outcome_is_served_until_its_lifetime_ends() {
        // found: a minute; unknown: a few milliseconds
        let cache = cache(Duration::from_secs(60), Duration::from_millis(5));
        let loads = Loads::default();
        assert_eq!(look(&cache, 1, &loads, None).await, None);
        assert_eq!(look(&cache, 1, &loads, Some("a")).await, None);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(
            look(&cache, 1, &loads, Some("a")).await,
            Some("a"),
            "an unknown key stayed unknown past negative_ttl"
        );
        assert_eq!(loads.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn an_entry_is_an_arc_and_a_deadline() {
        // a node may cache a hundred thousand keys: each slab slot holds one
        assert!(std::mem::size_of::<Entry<()>>() <= 24);
    }

    #[tokio::test]
    async fn the_shared_layer_holds_no_more_than_max_entries() {
        let cache = cache(Duration::from_secs(60), Duration::from_secs(60));
        let loads = Loads::default();
        for k in 0..1_000 {
            cache.lookup(&k, found(&loads, Some("v"))).await.unwrap();
        }
        let held = cache.shared.len();
        assert!(held <= 110, "{held} entries for a capacity of 100");
    }
}
