//! A small map per worker thread in front of a shared moka cache. A repeat
//! hit is served from the thread's own map, without moka's hashing, epoch
//! pinning and read log: about a third of what an API key adds to a
//! request. The shared cache stays the one source of truth:
//!
//! - every invalidation of the shared cache is followed by [`Front::invalidate`],
//!   which bumps a generation; a thread's map serves only entries of the
//!   current generation, so an admin change reaches every thread at once;
//! - a value is put in under the generation read *before* the shared
//!   lookup that found it, so a value found just before an invalidation
//!   is never served after it;
//! - an entry lives at most [`FRONT_TTL`] (less when the shared cache's
//!   own lifetime is shorter), and callers put in only what the store found, never an unknown
//!   credential: anyone can send one of those, and they must not take
//!   the places of real ones.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use thread_local::ThreadLocal;

/// How long a front entry is served at most.
const FRONT_TTL: Duration = Duration::from_secs(1);

pub struct Front<K: Send, V: Send> {
    maps: ThreadLocal<RefCell<Map<K, V>>>,
    generation: AtomicU64,
    capacity: usize,
    ttl: Duration,
}

struct Map<K, V> {
    generation: u64,
    entries: HashMap<K, (V, Instant), foldhash::fast::RandomState>,
}

impl<K: Hash + Eq + Send, V: Clone + Send> Front<K, V> {
    /// `capacity` entries per thread at most, each served for `ttl` (the
    /// shared cache's lifetime), [`FRONT_TTL`] at most.
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        Front {
            maps: ThreadLocal::new(),
            generation: AtomicU64::new(0),
            capacity,
            ttl: ttl.min(FRONT_TTL),
        }
    }

    /// The current generation: read it before the lookup whose result is
    /// put in, and pass it to [`Front::get`] and [`Front::put`].
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// This thread's entry for `key`, if it is of `generation` and alive at
    /// `now`.
    pub fn get(&self, key: &K, generation: u64, now: Instant) -> Option<V> {
        let map = self.maps.get()?.try_borrow().ok()?;
        if map.generation != generation {
            return None;
        }
        match map.entries.get(key) {
            Some((value, until)) if now < *until => Some(value.clone()),
            _ => None,
        }
    }

    /// Remember `value` on this thread from `now`, found under
    /// `generation`; dropped if an invalidation has come since.
    pub fn put(&self, key: K, value: V, generation: u64, now: Instant) {
        let cell = self.maps.get_or(|| {
            RefCell::new(Map {
                generation,
                entries: HashMap::default(),
            })
        });
        let Ok(mut map) = cell.try_borrow_mut() else {
            return;
        };
        if generation != self.generation() || generation < map.generation {
            return;
        }
        if map.generation != generation {
            map.entries.clear();
            map.generation = generation;
        }
        if map.entries.len() >= self.capacity {
            map.entries.retain(|_, (_, until)| now < *until);
            if map.entries.len() >= self.capacity {
                map.entries.clear();
            }
        }
        map.entries.insert(key, (value, now + self.ttl));
    }

    /// Call after every invalidation of the shared cache: no thread serves
    /// an entry put in before it.
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    #[cfg(test)]
    fn len_here(&self) -> usize {
        self.maps.get().map_or(0, |m| m.borrow().entries.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn front() -> (Front<u32, &'static str>, Instant) {
        (Front::new(4, Duration::from_secs(60)), Instant::now())
    }

    #[test]
    fn serves_an_entry_of_its_generation_until_it_expires() {
        let (f, now) = front();
        let g = f.generation();
        f.put(1, "one", g, now);
        assert_eq!(f.get(&1, g, now), Some("one"));
        assert_eq!(f.get(&2, g, now), None, "never put in");
        assert_eq!(
            f.get(&1, g, now + FRONT_TTL),
            None,
            "served past its lifetime"
        );
    }

    #[test]
    fn an_invalidation_reaches_every_entry() {
        let (f, now) = front();
        let g = f.generation();
        f.put(1, "one", g, now);
        f.invalidate();
        assert_eq!(f.get(&1, f.generation(), now), None);
    }

    #[test]
    fn a_value_found_before_an_invalidation_is_not_put_in_after_it() {
        let (f, now) = front();
        let before = f.generation();
        f.invalidate();
        f.put(1, "stale", before, now);
        assert_eq!(f.get(&1, f.generation(), now), None);
        assert_eq!(f.get(&1, before, now), None);
        assert_eq!(f.len_here(), 0);
    }

    #[test]
    fn holds_at_most_its_capacity_per_thread() {
        let (f, now) = front();
        let g = f.generation();
        for k in 0..4 {
            f.put(k, "first", g, now);
        }
        // expired entries make room first
        let later = now + FRONT_TTL;
        f.put(10, "ten", g, later);
        assert_eq!(f.len_here(), 1);
        for k in 11..30 {
            f.put(k, "more", g, later);
            assert!(f.len_here() <= 4);
        }
    }

    #[test]
    fn each_thread_has_its_own_map() {
        let (f, now) = front();
        let g = f.generation();
        f.put(1, "here", g, now);
        std::thread::scope(|s| {
            s.spawn(|| assert_eq!(f.get(&1, g, now), None));
        });
        assert_eq!(f.get(&1, g, now), Some("here"));
    }
}
