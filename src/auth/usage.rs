//! API-key usage (`last_used_at`, `use_count`) counted in memory and written
//! in one batch per flush interval, never one database write per request.
//! A failed flush keeps its counts for the next one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::store::{KeyUsage, Store, Timestamp};

/// One key's uses since the last flush. A cached key record holds its
/// cell, so a request counts itself with one atomic add and a read (a
/// second atomic operation when the second has changed): no lock, no map
/// lookup.
#[derive(Debug, Default)]
pub struct UsageCell {
    count: AtomicI64,
    last_used_at: AtomicI64,
}

impl UsageCell {
    pub fn record(&self, at: Timestamp) {
        self.count.fetch_add(1, Ordering::Relaxed);
        // at most once a second does the time move on: a plain read spares
        // the other requests of that second a locked compare-and-swap loop
        if self.last_used_at.load(Ordering::Relaxed) < at {
            self.last_used_at.fetch_max(at, Ordering::Relaxed);
        }
    }
}

#[derive(Default)]
pub struct UsageRecorder {
    /// by key id (or secret id; a cached key record shares the id)
    cells: Mutex<HashMap<Arc<str>, Arc<UsageCell>>>,
    /// Counts uses of client secrets rather than API keys.
    secrets: bool,
}

impl UsageRecorder {
    /// A recorder of client secrets' use (the token endpoint).
    pub fn for_secrets() -> Self {
        UsageRecorder {
            secrets: true,
            ..Default::default()
        }
    }

    /// The cell of a key, the same one for as long as anything counts in
    /// it or holds it.
    pub fn cell(&self, key_id: &str) -> Arc<UsageCell> {
        self.key_cell(key_id).1
    }

    /// The cell of a key and the id as the recorder keeps it, to share.
    pub fn key_cell(&self, key_id: &str) -> (Arc<str>, Arc<UsageCell>) {
        let mut cells = self.cells.lock().unwrap_or_else(|e| e.into_inner());
        match cells.get_key_value(key_id) {
            Some((id, c)) => (id.clone(), c.clone()),
            None => {
                let (id, c): (Arc<str>, _) = (key_id.into(), Arc::new(UsageCell::default()));
                cells.insert(id.clone(), c.clone());
                (id, c)
            }
        }
    }

    /// The counts since the last take; cells nobody holds and nothing
    /// counted in are dropped.
    fn take(&self) -> HashMap<String, KeyUsage> {
        let mut cells = self.cells.lock().unwrap_or_else(|e| e.into_inner());
        let mut batch = HashMap::new();
        cells.retain(|id, cell| {
            let count = cell.count.swap(0, Ordering::Relaxed);
            if count > 0 {
                let last_used_at = cell.last_used_at.load(Ordering::Relaxed);
                batch.insert(
                    id.to_string(),
                    KeyUsage {
                        last_used_at,
                        count,
                    },
                );
                return true;
            }
            // only the map holds it: no cached record can count in it
            Arc::strong_count(cell) > 1
        });
        batch
    }

    /// Give back the counts of a flush that failed.
    fn restore(&self, batch: HashMap<String, KeyUsage>) {
        for (id, u) in batch {
            let cell = self.cell(&id);
            cell.count.fetch_add(u.count, Ordering::Relaxed);
            cell.last_used_at
                .fetch_max(u.last_used_at, Ordering::Relaxed);
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

    #[test]
    fn counts_merge_and_restore() {
        let r = UsageRecorder::default();
        r.cell("k1").record(10);
        r.cell("k1").record(12);
        r.cell("k2").record(11);
        let batch = r.take();
        assert_eq!(
            batch["k1"],
            KeyUsage {
                last_used_at: 12,
                count: 2
            }
        );
        r.cell("k1").record(20);
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
    }

    #[test]
    fn a_held_cell_counts_across_flushes_and_an_idle_one_is_dropped() {
        let r = UsageRecorder::default();
        let held = r.cell("k1");
        held.record(5);
        held.record(3);
        r.cell("k2").record(4);
        let batch = r.take();
        assert_eq!(
            batch["k1"],
            KeyUsage {
                last_used_at: 5,
                count: 2
            }
        );
        assert_eq!(batch["k2"].count, 1);
        // k2 counted nothing since and nobody holds it: gone; k1 is held
        assert!(r.take().is_empty());
        assert_eq!(r.cells.lock().unwrap().len(), 1);
        held.record(9);
        assert!(Arc::ptr_eq(&held, &r.cell("k1")));
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
    /// by a hash of (client, key, service, hour); a collision keeps a list
    rows: HashMap<u64, Vec<UsageRow>, foldhash::fast::RandomState>,
}

/// (client, key, service, hour)
type BucketKey = (Arc<str>, Option<Arc<str>>, Box<str>, i64);

struct UsageRow {
    client: Arc<str>,
    key: Option<Arc<str>>,
    service: Box<str>,
    hour: i64,
    counts: [i64; 5],
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

impl RequestUsage {
    /// Count one request of `client` (with its API key, if that was the
    /// credential) to `service` at `at`, answered with `status`.
    pub fn record(
        &self,
        client: &Arc<str>,
        key: Option<&Arc<str>>,
        service: &str,
        status: u16,
        at: Timestamp,
    ) {
        let Some(col) = outcome(status) else { return };
        let hour = at - at.rem_euclid(3600);
        let hash = {
            use std::hash::{BuildHasher, Hash, Hasher};
            let mut h = foldhash::fast::FixedState::with_seed(0x7011_6a7e).build_hasher();
            client.hash(&mut h);
            key.map(|k| &**k).hash(&mut h);
            service.hash(&mut h);
            hour.hash(&mut h);
            h.finish()
        };
        let table = self.tables.get_or_default();
        let mut t = table.lock().unwrap_or_else(|e| e.into_inner());
        let rows = t.rows.entry(hash).or_default();
        let found = rows.iter_mut().find(|r| {
            r.hour == hour
                && *r.client == **client
                && r.key.as_deref() == key.map(|k| &**k)
                && &*r.service == service
        });
        match found {
            Some(r) => r.counts[col] += 1,
            None => {
                let mut counts = [0; 5];
                counts[col] = 1;
                // most hashes hold one row: no room for four
                rows.reserve_exact(1);
                rows.push(UsageRow {
                    client: client.clone(),
                    key: key.cloned(),
                    service: service.into(),
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
            let rows = std::mem::take(&mut table.lock().unwrap_or_else(|e| e.into_inner()).rows);
            for r in rows.into_values().flatten() {
                let e = merged
                    .entry((r.client, r.key, r.service, r.hour))
                    .or_default();
                for (a, b) in e.iter_mut().zip(r.counts) {
                    *a += b;
                }
            }
        }
        let mut out = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        out.extend(merged.into_iter().map(|((client, key, service, hour), c)| {
            crate::store::UsageBucket {
                start: hour,
                service: service.into(),
                key_id: key.map(|k| k.to_string()).unwrap_or_default(),
                client_id: client.to_string(),
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
        let client: Arc<str> = "cli_a".into();
        let key: Arc<str> = "key_a".into();
        let mut threads = Vec::new();
        for t in 0..4 {
            let (u, client, key) = (u.clone(), client.clone(), key.clone());
            threads.push(std::thread::spawn(move || {
                for i in 0..1000 {
                    let status = [200, 301, 404, 429, 503][(i + t) % 5];
                    u.record(&client, Some(&key), "orders", status, 7200 + 5);
                    u.record(&client, None, "orders", 200, 3600 + 59);
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
        u.record(&client, None, "orders", 101, 0);
        assert!(u.take().is_empty(), "1xx is no outcome");
    }
}
