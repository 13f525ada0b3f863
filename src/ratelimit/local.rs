//! Counters in this process: GCRA cells in a bounded cache, quota counts in
//! a map pruned at the end of their window. Quota usage is also collected
//! as deltas for the store, so a restart does not hand out a fresh quota.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{quota_window, unix_now, Decision, Policy, Views};
use crate::store::QuotaDelta;

#[derive(Default)]
struct QuotaCell {
    window_start: i64,
    window_end: i64,
    used: u64,
    /// Counted since the last `take_quota_usage`.
    unsaved: u64,
}

pub struct LocalCounters {
    epoch: Instant,
    /// Theoretical arrival time per key, in nanoseconds since `epoch`.
    /// A cell idle for its period is full again, so eviction loses nothing
    /// but the memory (the cache's idle time exceeds the longest period).
    cells: moka::sync::Cache<String, Arc<Mutex<u64>>>,
    quotas: Mutex<HashMap<String, QuotaCell>>,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl LocalCounters {
    pub fn new(max_keys: u64) -> Self {
        LocalCounters {
            epoch: Instant::now(),
            cells: moka::sync::Cache::builder()
                .max_capacity(max_keys)
                .time_to_idle(Duration::from_secs(2 * 3600))
                .build(),
            quotas: Mutex::new(HashMap::new()),
        }
    }

    pub fn check(&self, key: &str, policy: &Policy, cost: u64) -> Decision {
        let now = nanos(self.epoch.elapsed());
        let (unix, _) = unix_now();
        let cell = policy
            .rate
            .map(|_| self.cells.get_with_by_ref(key, || Arc::new(Mutex::new(0))));
        // a poisoned lock only means a panic elsewhere mid-update; the
        // arrival time is still a number, so keep counting
        let mut tat_guard = cell
            .as_ref()
            .map(|c| c.lock().unwrap_or_else(|p| p.into_inner()));

        let mut new_tat = None;
        let rate = policy.rate.zip(tat_guard.as_deref()).map(|(r, &tat)| {
            let t = nanos(r.interval()).max(1);
            let tau = nanos(r.tolerance());
            let tat = tat.max(now);
            if tat - now > tau {
                let retry = Duration::from_nanos(tat - tau - now);
                (false, r.count, 0, Duration::from_nanos(tat - now), retry)
            } else {
                let next = tat + t * cost;
                new_tat = Some(next);
                let slack = (tau + t).saturating_sub(next - now);
                (
                    true,
                    r.count,
                    slack / t,
                    Duration::from_nanos(next - now),
                    Duration::ZERO,
                )
            }
        });

        let mut quotas = policy
            .quota
            .map(|_| self.quotas.lock().unwrap_or_else(|p| p.into_inner()));
        let quota = policy.quota.zip(quotas.as_deref_mut()).map(|(q, map)| {
            let (start, end) = quota_window(q.period, unix);
            let cell = map.entry(key.to_string()).or_default();
            if cell.window_start != start {
                *cell = QuotaCell {
                    window_start: start,
                    window_end: end,
                    ..QuotaCell::default()
                };
            }
            let ok = cell.used + cost.max(1) <= q.count;
            (ok, cell)
        });

        let rate_ok = rate.is_none_or(|r| r.0);
        let quota_ok = quota.as_ref().is_none_or(|q| q.0);
        let mut quota_view = None;
        if let (Some(q), Some((ok, cell))) = (policy.quota, quota) {
            if rate_ok && ok {
                cell.used += cost;
                cell.unsaved += cost;
            }
            let until_end = Duration::from_secs(cell.window_end.saturating_sub(unix).max(0) as u64);
            quota_view = Some((ok, q.count, q.count.saturating_sub(cell.used), until_end));
        }
        if let (Some(guard), Some(next), true) = (tat_guard.as_deref_mut(), new_tat, quota_ok) {
            *guard = next;
        }
        Views {
            rate,
            quota: quota_view,
        }
        .decide()
    }

    pub fn take_quota_usage(&self) -> Vec<QuotaDelta> {
        let (unix, _) = unix_now();
        let mut map = self.quotas.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::new();
        map.retain(|key, cell| {
            if cell.unsaved > 0 {
                out.push(QuotaDelta {
                    counter: key.clone(),
                    window_start: cell.window_start,
                    window_end: cell.window_end,
                    delta: cell.unsaved as i64,
                });
                cell.unsaved = 0;
            }
            cell.window_end > unix
        });
        out
    }

    /// Add usage counted before this process (persisted totals).
    pub fn seed_quota_usage(&self, usage: &[QuotaDelta]) {
        let (unix, _) = unix_now();
        let mut map = self.quotas.lock().unwrap_or_else(|p| p.into_inner());
        for u in usage.iter().filter(|u| u.window_end > unix) {
            let cell = map.entry(u.counter.clone()).or_default();
            if cell.window_start != u.window_start {
                if cell.window_start > u.window_start {
                    continue;
                }
                *cell = QuotaCell {
                    window_start: u.window_start,
                    window_end: u.window_end,
                    ..QuotaCell::default()
                };
            }
            cell.used += u.delta.max(0) as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Quota, Rate};
    use super::*;
    use crate::config::QuotaPeriod;

    fn rate(count: u64, secs: u64, burst: u64) -> Policy {
        Policy::rate(Rate {
            count,
            per: Duration::from_secs(secs),
            burst,
        })
    }

    #[test]
    fn a_burst_then_the_sustained_rate() {
        let c = LocalCounters::new(100);
        let p = rate(5, 60, 5);
        for i in 0..5 {
            let d = c.check("a", &p, 1);
            assert!(d.allowed, "request {i}");
            assert_eq!(d.remaining, 4 - i);
            assert_eq!(d.limit, 5);
        }
        let d = c.check("a", &p, 1);
        assert!(!d.allowed);
        assert!(
            d.retry_after > Duration::from_secs(11) && d.retry_after <= Duration::from_secs(12),
            "one request per 12 s: {:?}",
            d.retry_after
        );
        assert!(d.reset > Duration::from_secs(59), "{:?}", d.reset);
        assert!(!c.check("a", &p, 0).allowed, "a peek sees it spent too");
        assert!(c.check("b", &p, 1).allowed, "keys are independent");
    }

    #[test]
    fn a_smaller_burst_spaces_requests_out() {
        let c = LocalCounters::new(100);
        let p = rate(100, 1, 2);
        let started = Instant::now();
        let passed = (0..50).filter(|_| c.check("k", &p, 1).allowed).count();
        let took = started.elapsed();
        // two at once, then one per 10 ms of however long the loop took
        let spaced = (took.as_millis() / 10) as usize;
        assert!(
            (2..=2 + spaced).contains(&passed),
            "{passed} passed in {took:?}: two at once, then one per 10 ms"
        );
    }

    #[test]
    fn peeking_consumes_nothing() {
        let c = LocalCounters::new(100);
        let p = rate(1, 60, 1);
        for _ in 0..10 {
            assert!(c.check("k", &p, 0).allowed);
        }
        assert!(c.check("k", &p, 1).allowed);
        assert!(!c.check("k", &p, 1).allowed);
    }

    #[test]
    fn a_quota_counts_only_what_passes_and_is_saved_as_deltas() {
        let c = LocalCounters::new(100);
        let p = Policy {
            rate: None,
            quota: Some(Quota {
                count: 3,
                period: QuotaPeriod::Day,
            }),
        };
        let passed: Vec<bool> = (0..5).map(|_| c.check("q", &p, 1).allowed).collect();
        assert_eq!(passed, [true, true, true, false, false]);
        let refused = c.check("q", &p, 1);
        assert_eq!((refused.limit, refused.remaining), (3, 0));
        assert!(refused.retry_after <= Duration::from_secs(86_400));
        let saved = c.take_quota_usage();
        assert_eq!(saved.len(), 1);
        assert_eq!(saved[0].delta, 3);
        assert!(c.take_quota_usage().is_empty(), "nothing new since");

        // a new process seeded with the saved total has nothing left
        let fresh = LocalCounters::new(100);
        fresh.seed_quota_usage(&saved);
        assert!(!fresh.check("q", &p, 1).allowed);
    }

    #[test]
    fn a_rate_refusal_spends_no_quota_and_a_quota_refusal_no_rate() {
        let c = LocalCounters::new(100);
        let p = Policy {
            rate: Some(Rate::new(2, Duration::from_secs(60))),
            quota: Some(Quota {
                count: 1,
                period: QuotaPeriod::Month,
            }),
        };
        assert!(c.check("k", &p, 1).allowed);
        let d = c.check("k", &p, 1);
        assert!(!d.allowed, "quota of one spent");
        assert_eq!(d.limit, 1, "the headers report the refusing quota");
        // the rate still has one left: the refused request took nothing
        let rate_only = Policy {
            rate: p.rate,
            quota: None,
        };
        assert!(c.check("k", &rate_only, 1).allowed);
        assert_eq!(c.take_quota_usage()[0].delta, 1);
    }
}
