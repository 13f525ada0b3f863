//! API-key usage (`last_used_at`, `use_count`) counted in memory and written
//! in one batch per flush interval, never one database write per request.
//! A failed flush keeps its counts for the next one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hashbrown::hash_table::{Entry, HashTable};

use super::Principal;
use crate::store::{KeyUsage, Store, Timestamp};

/// One key's uses since the last flush, kept in the key's cached record:
/// a request counts itself with one atomic add and a read (a second atomic
/// operation when the second has changed), no lock and no map lookup. A
/// record is handed to the recorder once, by its first use after a flush.
#[derive(Debug, Default)]
pub struct UsageCell {
    count: AtomicI64,
    last_used_at: AtomicI64,
}

impl UsageCell {
    /// Count one use at `at`; true when it is the first since the last
    /// take.
    fn add(&self, at: Timestamp) -> bool {
        let first = self.count.fetch_add(1, Ordering::Relaxed) == 0;
        // at most once a second does the time move on: a plain read spares
        // the other requests of that second a locked compare-and-swap loop
        if self.last_used_at.load(Ordering::Relaxed) < at {
            self.last_used_at.fetch_max(at, Ordering::Relaxed);
        }
        first
    }

    /// The uses since the last take, if any.
    fn take(&self) -> Option<KeyUsage> {
        let count = self.count.swap(0, Ordering::Relaxed);
        (count > 0).then(|| KeyUsage {
            last_used_at: self.last_used_at.load(Ordering::Relaxed),
            count,
        })
    }
}

/// What counts its uses in a cell of its own: a cached key record.
pub trait Counted: Send + Sync {
    /// The key's id and its cell.
    fn usage(&self) -> (&str, &UsageCell);
}

#[derive(Default)]
pub struct UsageRecorder {
    /// Records counted in since the last flush, each once (twice only when
    /// a flush took the list between a first use and its hand-over).
    fresh: Mutex<Vec<Arc<dyn Counted>>>,
    /// Counts by id that no record holds: uses recorded by id, and what a
    /// failed flush gave back.
    loose: Mutex<HashMap<String, KeyUsage>>,
    /// Counts uses of client secrets rather than API keys.
    secrets: bool,
}

fn merge(into: &mut HashMap<String, KeyUsage>, id: &str, u: KeyUsage) {
    match into.get_mut(id) {
        Some(e) => {
            e.count += u.count;
            e.last_used_at = e.last_used_at.max(u.last_used_at);
        }
        None => {
            into.insert(id.to_string(), u);
        }
    }
}

impl UsageRecorder {
    /// A recorder of client secrets' use (the token endpoint).
    pub fn for_secrets() -> Self {
        UsageRecorder {
            secrets: true,
            ..Default::default()
        }
    }

    /// Count one use of a cached record at `at`.
    pub fn record(&self, counted: &Arc<impl Counted + 'static>, at: Timestamp) {
        if counted.usage().1.add(at) {
            let mut fresh = self.fresh.lock().unwrap_or_else(|e| e.into_inner());
            fresh.push(counted.clone());
        }
    }

    /// Count one use of the key (or secret) `id` at `at`, where no record
    /// is kept.
    pub fn record_id(&self, id: &str, at: Timestamp) {
        let mut loose = self.loose.lock().unwrap_or_else(|e| e.into_inner());
        merge(
            &mut loose,
            id,
            KeyUsage {
                last_used_at: at,
                count: 1,
            },
        );
    }

    /// The counts since the last take, by id.
    fn take(&self) -> HashMap<String, KeyUsage> {
        let fresh = std::mem::take(&mut *self.fresh.lock().unwrap_or_else(|e| e.into_inner()));
        let mut batch = std::mem::take(&mut *self.loose.lock().unwrap_or_else(|e| e.into_inner()));
        for counted in fresh {
            let (id, cell) = counted.usage();
            if let Some(u) = cell.take() {
                merge(&mut batch, id, u);
            }
        }
        batch
    }

    /// Give back the counts of a flush that failed.
    fn restore(&self, batch: HashMap<String, KeyUsage>) {
        let mut loose = self.loose.lock().unwrap_or_else(|e| e.into_inner());
        for (id, u) in batch {
            merge(&mut loose, &id, u);
        }
    }

    /// Write what has accumulated; on failure keep it for the next flush.
    pub async fn flush(&self, store: &dyn Store) {
        let batch = self.take();
        if batch.is_empty() {
            return;
        }
        let written = if self.secrets {
            store.record_secret_usage(&batch).await
        } else {
            store.record_usage(&batch).await
        };
        if let Err(e) = written {
            tracing::warn!(error = %e, keys = batch.len(), "cannot record key usage; will retry");
            self.restore(batch);
        }
    }

    /// Flush every `interval` until the process ends.
    pub async fn run(self: Arc<Self>, store: Arc<dyn Store>, interval: Duration) {
        let mut tick = tokio::time::interval(interval);
        loop {
            tick.tick().await;
            self.flush(store.as_ref()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Key(&'static str, UsageCell);

    impl Counted for Key {
        fn usage(&self) -> (&str, &UsageCell) {
            (self.0, &self.1)
        }
    }

    fn key(id: &'static str) -> Arc<Key> {
        Arc::new(Key(id, UsageCell::default()))
    }

    #[test]
    fn counts_merge_and_restore() {
        let r = UsageRecorder::default();
        let (k1, k2) = (key("k1"), key("k2"));
        r.record(&k1, 10);
        r.record(&k1, 12);
        r.record(&k2, 11);
        // a record handed over once, however often it counts
        assert_eq!(r.fresh.lock().unwrap().len(), 2);
        let batch = r.take();
        assert_eq!(
            batch["k1"],
            KeyUsage {
                last_used_at: 12,
                count: 2
            }
        );
        r.record(&k1, 20);
        r.restore(batch);
        let again = r.take();
        assert_eq!(
            again["k1"],
            KeyUsage {
                last_used_at: 20,
                count: 3
            }
        );
        assert_eq!(again["k2"].count, 1);
        assert!(r.take().is_empty());
        assert!(
            r.fresh.lock().unwrap().is_empty(),
            "nothing held once flushed"
        );
    }

    #[test]
    fn two_records_of_one_key_and_uses_by_id_add_up() {
        // a key reloaded into the cache while the old record still counts
        let r = UsageRecorder::for_secrets();
        let (old, new) = (key("k1"), key("k1"));
        r.record(&old, 5);
        r.record(&new, 7);
        r.record(&new, 6);
        r.record_id("k1", 4);
        r.record_id("s1", 9);
        let batch = r.take();
        assert_eq!(
            batch["k1"],
            KeyUsage {
                last_used_at: 7,
                count: 4
            }
        );
        assert_eq!(batch["s1"].count, 1);
        // counted again after the flush: handed over again
        r.record(&old, 8);
        assert_eq!(r.take()["k1"].count, 1);
    }
}

/// Requests per client, key and service in hourly buckets by outcome.
/// Each proxy thread counts into its own table (one uncontended lock, no
/// allocation once a bucket exists); the flush takes every table off the
/// request path and adds them to the store in one transaction, so several
/// nodes add up without lost or double counts.
#[derive(Default)]
pub struct RequestUsage {
    tables: thread_local::ThreadLocal<Mutex<UsageTable>>,
    /// Deltas a failed flush keeps for the next one.
    pending: Mutex<Vec<crate::store::UsageBucket>>,
    /// When usage was last pruned (Unix seconds).
    pruned_at: AtomicI64,
}

#[derive(Default)]
struct UsageTable {
    /// one row per (client, key, service, hour), inline: a bucket costs
    /// its row and a control byte, no allocation of its own
    rows: HashTable<UsageRow>,
    /// the services counted, each once; rows name them by index
    services: Vec<Box<str>>,
}

/// (client, key, service, hour)
type BucketKey = (String, String, Box<str>, i64);

struct UsageRow {
    /// the client and, when that was the credential, its key
    principal: Arc<Principal>,
    /// index into the table's services
    service: u32,
    hour: i64,
    /// 2xx, 3xx, 4xx, 429, 5xx: a table is emptied every flush interval
    counts: [u32; 5],
}

/// The outcome column of a status: 2xx, 3xx, 4xx (429 apart), 429, 5xx.
fn outcome(status: u16) -> Option<usize> {
    match status {
        429 => Some(3),
        200..=299 => Some(0),
        300..=399 => Some(1),
        400..=499 => Some(2),
        500..=599 => Some(4),
        _ => None,
    }
}

/// A bucket's hash: of the ids and the service's text, so that a
/// principal loaded again lands in the same row.
fn bucket_hash(p: &Principal, service: &str, hour: i64) -> u64 {
    use std::hash::{BuildHasher, Hash, Hasher};
    let mut h = foldhash::fast::FixedState::with_seed(0x7011_6a7e).build_hasher();
    p.client_id().hash(&mut h);
    p.key_id().hash(&mut h);
    service.hash(&mut h);
    hour.hash(&mut h);
    h.finish()
}

impl RequestUsage {
    /// Count one request of `principal` (its client, and its API key if
    /// that was the credential) to `service` at `at`, answered with
    /// `status`.
    pub fn record(&self, principal: &Arc<Principal>, service: &str, status: u16, at: Timestamp) {
        let Some(col) = outcome(status) else { return };
        let hour = at - at.rem_euclid(3600);
        let hash = bucket_hash(principal, service, hour);
        let table = self.tables.get_or_default();
        let mut t = table.lock().unwrap_or_else(|e| e.into_inner());
        let UsageTable { rows, services } = &mut *t;
        let service = match services.iter().position(|s| &**s == service) {
            Some(i) => i as u32,
            None => {
                services.push(service.into());
                (services.len() - 1) as u32
            }
        };
        let same = |r: &UsageRow| {
            r.hour == hour
                && r.service == service
                && (Arc::ptr_eq(&r.principal, principal)
                    || (r.principal.client_id() == principal.client_id()
                        && r.principal.key_id() == principal.key_id()))
        };
        let rehash =
            |r: &UsageRow| bucket_hash(&r.principal, &services[r.service as usize], r.hour);
        match rows.entry(hash, same, rehash) {
            Entry::Occupied(mut e) => {
                let c = &mut e.get_mut().counts[col];
                *c = c.saturating_add(1);
            }
            Entry::Vacant(e) => {
                let mut counts = [0; 5];
                counts[col] = 1;
                e.insert(UsageRow {
                    principal: principal.clone(),
                    service,
                    hour,
                    counts,
                });
            }
        }
    }

    /// Everything counted since the last take, merged over threads.
    fn take(&self) -> Vec<crate::store::UsageBucket> {
        let mut merged: HashMap<BucketKey, [i64; 5]> = HashMap::new();
        for table in self.tables.iter() {
            let t = std::mem::take(&mut *table.lock().unwrap_or_else(|e| e.into_inner()));
            for r in t.rows {
                let p = &r.principal;
                let (client, key) = (p.client_id().to_string(), p.key_id().unwrap_or_default());
                let service = t.services[r.service as usize].clone();
                let e = merged
                    .entry((client, key.to_string(), service, r.hour))
                    .or_default();
                for (a, b) in e.iter_mut().zip(r.counts) {
                    *a += i64::from(b);
                }
            }
        }
        let mut out = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        out.extend(merged.into_iter().map(|((client, key, service, hour), c)| {
            crate::store::UsageBucket {
                start: hour,
                service: service.into(),
                key_id: key,
                client_id: client,
                c2xx: c[0],
                c3xx: c[1],
                c4xx: c[2],
                c429: c[3],
                c5xx: c[4],
            }
        }));
        out
    }

    /// Add what has been counted to the store; on failure keep it for the
    /// next flush. Once an hour, drop buckets older than `retention`.
    pub async fn flush(&self, store: &dyn Store, retention: Duration) {
        let batch = self.take();
        if !batch.is_empty() {
            if let Err(e) = store.add_usage(&batch).await {
                tracing::warn!(error = %e, buckets = batch.len(), "cannot record request usage; will retry");
                let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                // bounded: a long outage drops the oldest counts, not memory
                if pending.len() < 1_000_000 {
                    pending.extend(batch);
                }
            }
        }
        let at = crate::store::now();
        if at - self.pruned_at.load(Ordering::Relaxed) >= 3600 {
            self.pruned_at.store(at, Ordering::Relaxed);
            if let Err(e) = store.prune_usage(at - retention.as_secs() as i64).await {
                tracing::warn!(error = %e, "cannot prune old request usage");
            }
        }
    }
}

#[cfg(test)]
mod request_usage_tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_bucket_and_outcome_across_threads() {
        let u = Arc::new(RequestUsage::default());
        let by_key = Arc::new(super::super::testing::principal("cli_a", Some("key_a")));
        // the same key loaded again: counted as one
        let again = Arc::new(super::super::testing::principal("cli_a", Some("key_a")));
        let by_token = Arc::new(super::super::testing::principal("cli_a", None));
        let mut threads = Vec::new();
        for t in 0..4 {
            let (u, by_key, again, by_token) =
                (u.clone(), by_key.clone(), again.clone(), by_token.clone());
            threads.push(std::thread::spawn(move || {
                for i in 0..1000 {
                    let status = [200, 301, 404, 429, 503][(i + t) % 5];
                    let key = if i % 2 == 0 { &by_key } else { &again };
                    u.record(key, "orders", status, 7200 + 5);
                    u.record(&by_token, "orders", 200, 3600 + 59);
                }
            }));
        }
        for t in threads {
            t.join().unwrap();
        }
        let mut batch = u.take();
        batch.sort_by_key(|b| b.start);
        assert_eq!(batch.len(), 2);
        assert_eq!(
            (batch[0].start, batch[0].key_id.as_str(), batch[0].c2xx),
            (3600, "", 4000)
        );
        let b = &batch[1];
        assert_eq!((b.start, b.key_id.as_str()), (7200, "key_a"));
        assert_eq!([b.c2xx, b.c3xx, b.c4xx, b.c429, b.c5xx], [800; 5]);
        assert!(u.take().is_empty(), "taken once");
        assert_eq!(
            (b.client_id.as_str(), batch[0].client_id.as_str()),
            ("cli_a", "cli_a")
        );
        u.record(&by_token, "orders", 101, 0);
        assert!(u.take().is_empty(), "1xx is no outcome");
    }

    #[test]
    fn many_buckets_across_services_keep_their_counts_as_the_table_grows() {
        let u = RequestUsage::default();
        let principals: Vec<_> = (0..3000)
            .map(|i| {
                Arc::new(super::super::testing::principal(
                    &format!("cli_{i}"),
                    Some(&format!("key_{i}")),
                ))
            })
            .collect();
        for round in 0..3 {
            for (i, p) in principals.iter().enumerate() {
                let service = ["orders", "billing"][i % 2];
                u.record(p, service, 200 + round, 3600);
                if i % 3 == 0 {
                    u.record(p, "search", 500, 7200);
                }
            }
        }
        // one row a bucket: a row the grown table lost would be counted again
        let rows: usize = u.tables.iter().map(|t| t.lock().unwrap().rows.len()).sum();
        assert_eq!(rows, 4000);
        let batch = u.take();
        assert_eq!(batch.len(), 4000);
        for b in &batch {
            let i: usize = b.client_id["cli_".len()..].parse().unwrap();
            assert_eq!(b.key_id, format!("key_{i}"));
            match &*b.service {
                "search" => assert_eq!((b.start, b.c5xx, b.c2xx), (7200, 3, 0), "{i}"),
                s => {
                    assert_eq!(s, ["orders", "billing"][i % 2]);
                    assert_eq!((b.start, b.c2xx, b.c5xx), (3600, 3, 0), "{i}");
                }
            }
        }
    }
}
