//! API-key usage (`last_used_at`, `use_count`) counted in memory and written
//! in one batch per flush interval, never one database write per request.
//! A failed flush keeps its counts for the next one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::store::{KeyUsage, Store, Timestamp};

#[derive(Default)]
pub struct UsageRecorder {
    pending: Mutex<HashMap<String, KeyUsage>>,
}

impl UsageRecorder {
    pub fn record(&self, key_id: &str, at: Timestamp) {
        if let Ok(mut p) = self.pending.lock() {
            match p.get_mut(key_id) {
                Some(u) => {
                    u.count += 1;
                    u.last_used_at = u.last_used_at.max(at);
                }
                None => {
                    p.insert(
                        key_id.to_string(),
                        KeyUsage {
                            last_used_at: at,
                            count: 1,
                        },
                    );
                }
            }
        }
    }

    fn take(&self) -> HashMap<String, KeyUsage> {
        self.pending
            .lock()
            .map(|mut p| std::mem::take(&mut *p))
            .unwrap_or_default()
    }

    fn restore(&self, batch: HashMap<String, KeyUsage>) {
        if let Ok(mut p) = self.pending.lock() {
            for (id, u) in batch {
                let e = p.entry(id).or_insert(KeyUsage {
                    last_used_at: 0,
                    count: 0,
                });
                e.count += u.count;
                e.last_used_at = e.last_used_at.max(u.last_used_at);
            }
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
        r.record("k1", 10);
        r.record("k1", 12);
        r.record("k2", 11);
        let batch = r.take();
        assert_eq!(
            batch["k1"],
            KeyUsage {
                last_used_at: 12,
                count: 2
            }
        );
        r.record("k1", 20);
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
}
