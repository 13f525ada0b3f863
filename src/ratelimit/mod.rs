//! Rate limits. `LocalLimiter` keeps GCRA cells (one theoretical arrival
//! time per key) in memory on this node; the token endpoint uses it for
//! issuance per client and for failed client authentications.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `count` requests per `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub count: u32,
    pub per: Duration,
}

impl Limit {
    fn interval(&self) -> Duration {
        self.per / self.count.max(1)
    }
}

pub struct LocalLimiter {
    cells: moka::sync::Cache<String, Arc<Mutex<Instant>>>,
}

impl LocalLimiter {
    /// Cells idle for `idle` are forgotten (they are full again by then).
    pub fn new(max_keys: u64, idle: Duration) -> Self {
        LocalLimiter {
            cells: moka::sync::Cache::builder()
                .max_capacity(max_keys)
                .time_to_idle(idle)
                .build(),
        }
    }

    /// Take one request from `key`'s allowance; `Err(retry_after)` when it
    /// is spent. With `consume == false`, only tell whether one would pass.
    pub fn check(&self, key: &str, limit: Limit, consume: bool) -> Result<(), Duration> {
        let now = Instant::now();
        let cell = self
            .cells
            .get_with(key.to_string(), || Arc::new(Mutex::new(now)));
        let Ok(mut tat) = cell.lock() else {
            // a poisoned cell fails closed for this key only
            return Err(limit.per);
        };
        let start = if *tat > now { *tat } else { now };
        let next = start + limit.interval();
        // GCRA: allowed while the arrival time stays within one period
        if next.duration_since(now) > limit.per {
            return Err(next.duration_since(now) - limit.per);
        }
        if consume {
            *tat = next;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_count_per_period_then_refuses() {
        let l = LocalLimiter::new(100, Duration::from_secs(60));
        let limit = Limit {
            count: 5,
            per: Duration::from_secs(60),
        };
        for i in 0..5 {
            assert!(l.check("a", limit, true).is_ok(), "request {i}");
        }
        let retry = l.check("a", limit, true).unwrap_err();
        assert!(
            retry > Duration::from_secs(10) && retry <= Duration::from_secs(12),
            "{retry:?}"
        );
        assert!(
            l.check("a", limit, false).is_err(),
            "a peek sees it spent too"
        );
        assert!(l.check("b", limit, true).is_ok(), "keys are independent");
    }

    #[test]
    fn peeking_consumes_nothing() {
        let l = LocalLimiter::new(100, Duration::from_secs(60));
        let limit = Limit {
            count: 1,
            per: Duration::from_secs(60),
        };
        for _ in 0..10 {
            assert!(l.check("k", limit, false).is_ok());
        }
        assert!(l.check("k", limit, true).is_ok());
        assert!(l.check("k", limit, true).is_err());
    }
}
