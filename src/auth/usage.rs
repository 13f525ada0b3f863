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
    /// by key id
    cells: Mutex<HashMap<String, Arc<UsageCell>>>,
}

impl UsageRecorder {
    /// The cell of a key, the same one for as long as anything counts in
    /// it or holds it.
    pub fn cell(&self, key_id: &str) -> Arc<UsageCell> {
        let mut cells = self.cells.lock().unwrap_or_else(|e| e.into_inner());
        match cells.get(key_id) {
            Some(c) => c.clone(),
            None => {
                let c = Arc::new(UsageCell::default());
                cells.insert(key_id.to_string(), c.clone());
                c
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
                    id.clone(),
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
        if let Err(e) = store.record_usage(&batch).await {
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
