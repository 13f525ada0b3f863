//! Rate limits and quotas: one `Limiter` makes every limit decision of a
//! node, the plans' limits at the proxy and the token endpoint's own.
//!
//! Rates are GCRA cells (one theoretical arrival time per key): after a
//! quiet spell `burst` requests pass at once, then one every
//! `per / count`, so in any interval of length `t` at most
//! `burst + count * t / per` pass, and no window edge lets twice the limit
//! through. Quotas count per calendar day or month (UTC).
//!
//! Counters live in this process (`local`) unless `redis.url` is set; then
//! every decision is one atomic script in Redis (`shared`), so all nodes
//! enforce one total. When Redis cannot answer in time, the configured
//! failure mode decides and the event is counted.

mod local;
mod shared;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::{Config, FailureMode, Plan, QuotaPeriod, RedisSettings};
use crate::store::{QuotaDelta, Store};
use crate::telemetry::Metrics;

pub use local::LocalCounters;
pub use shared::SharedCounters;

/// `count` requests per `per`, with `burst` of them at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u64,
    pub per: Duration,
    pub burst: u64,
}

impl Rate {
    /// `count` per `per`, all of them at once after a quiet spell.
    pub const fn new(count: u64, per: Duration) -> Rate {
        Rate {
            count,
            per,
            burst: count,
        }
    }

    /// Time between two requests at the sustained rate (GCRA's T).
    fn interval(&self) -> Duration {
        self.per / self.count.clamp(1, u32::MAX as u64) as u32
    }

    /// How far ahead of time the arrival clock may run (GCRA's tau).
    fn tolerance(&self) -> Duration {
        self.interval() * (self.burst.clamp(1, u32::MAX as u64) as u32 - 1)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub count: u64,
    pub period: QuotaPeriod,
}

/// The limits that apply to one counter key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Policy {
    pub rate: Option<Rate>,
    pub quota: Option<Quota>,
}

impl Policy {
    pub const fn rate(rate: Rate) -> Policy {
        Policy {
            rate: Some(rate),
            quota: None,
        }
    }

    pub fn from_plan(plan: &Plan) -> Policy {
        Policy {
            rate: plan.rate.map(|r| Rate {
                count: r.count,
                per: r.per,
                burst: plan.burst.max(1),
            }),
            quota: plan.quota.map(|q| Quota {
                count: q.count,
                period: q.per,
            }),
        }
    }

    pub fn is_unlimited(&self) -> bool {
        self.rate.is_none() && self.quota.is_none()
    }
}

/// The calendar window (UTC) that holds `now`: `[start, end)` in Unix seconds.
pub fn quota_window(period: QuotaPeriod, now: i64) -> (i64, i64) {
    const DAY: i64 = 86_400;
    match period {
        QuotaPeriod::Day => {
            let start = now.div_euclid(DAY) * DAY;
            (start, start + DAY)
        }
        QuotaPeriod::Month => {
            let Ok(t) = time::OffsetDateTime::from_unix_timestamp(now) else {
                let start = now.div_euclid(DAY) * DAY;
                return (start, start + 31 * DAY);
            };
            let first = t.date().replace_day(1).unwrap_or(t.date());
            let next = if first.month() == time::Month::December {
                time::Date::from_calendar_date(first.year() + 1, time::Month::January, 1)
            } else {
                time::Date::from_calendar_date(first.year(), first.month().next(), 1)
            }
            .unwrap_or(first);
            let unix = |d: time::Date| d.midnight().assume_utc().unix_timestamp();
            (unix(first), unix(next))
        }
    }
}

pub(crate) fn unix_now() -> (i64, Duration) {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_secs() as i64, d)
}

/// One limit decision, with what the `RateLimit-*` headers report: the
/// dimension (rate or quota) with the fewest requests left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u64,
    pub remaining: u64,
    /// Until the reported allowance is whole again.
    pub reset: Duration,
    /// When refused: until one request would pass.
    pub retry_after: Duration,
}

impl Decision {
    /// The answer when no counter could be consulted.
    fn degraded(allowed: bool, policy: &Policy) -> Decision {
        let (limit, reset) = match (policy.rate, policy.quota) {
            (Some(r), _) => (r.count, r.per),
            (None, Some(q)) => (q.count, Duration::from_secs(60)),
            (None, None) => (0, Duration::ZERO),
        };
        Decision {
            allowed,
            limit,
            remaining: 0,
            reset,
            retry_after: Duration::from_secs(1),
        }
    }

    /// `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` and, when
    /// refused, `Retry-After` (whole seconds, rounded up).
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let secs = |d: Duration| d.as_secs() + u64::from(d.subsec_nanos() > 0);
        let mut h = vec![
            ("ratelimit-limit", self.limit.to_string()),
            ("ratelimit-remaining", self.remaining.to_string()),
            ("ratelimit-reset", secs(self.reset).to_string()),
        ];
        if !self.allowed {
            h.push(("retry-after", secs(self.retry_after).max(1).to_string()));
        }
        h
    }
}

/// Rate views and quota views merged into one decision.
pub(crate) struct Views {
    pub rate: Option<(bool, u64, u64, Duration, Duration)>,
    pub quota: Option<(bool, u64, u64, Duration)>,
}

impl Views {
    pub fn decide(self) -> Decision {
        let rate_ok = self.rate.is_none_or(|r| r.0);
        let quota_ok = self.quota.is_none_or(|q| q.0);
        let allowed = rate_ok && quota_ok;
        // the refusing dimension, else the one with fewer requests left
        let use_quota = match (self.rate, self.quota) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(r), Some(q)) => (r.0 && !q.0) || (r.0 == q.0 && q.2 < r.2),
        };
        if use_quota {
            let (_, limit, remaining, until_end) = self.quota.unwrap_or_default();
            Decision {
                allowed,
                limit,
                remaining,
                reset: until_end,
                retry_after: if quota_ok {
                    self.rate.map(|r| r.4).unwrap_or_default()
                } else {
                    until_end
                },
            }
        } else {
            let (_, limit, remaining, reset, retry) = self.rate.unwrap_or_default();
            Decision {
                allowed,
                limit,
                remaining,
                reset,
                retry_after: retry,
            }
        }
    }
}

/// Every limit decision of the node.
pub struct Limiter {
    local: LocalCounters,
    /// Quota usage a failed write could not persist, for the next one.
    unsaved: std::sync::Mutex<Vec<QuotaDelta>>,
    shared: Option<SharedCounters>,
    failure_mode: FailureMode,
    metrics: Arc<Metrics>,
}

impl Limiter {
    pub fn new(redis: Option<&RedisSettings>, metrics: Arc<Metrics>) -> Limiter {
        Limiter {
            local: LocalCounters::new(1_000_000),
            unsaved: std::sync::Mutex::new(Vec::new()),
            shared: redis.map(SharedCounters::new),
            failure_mode: redis.map_or(FailureMode::Open, |r| r.failure_mode),
            metrics,
        }
    }

    /// Whether decisions are made in Redis, shared by every node.
    pub fn is_shared(&self) -> bool {
        self.shared.is_some()
    }

    /// Take `cost` requests (0: only look) from `key`'s allowance.
    pub async fn check(&self, key: &str, policy: &Policy, cost: u64) -> Decision {
        let Some(shared) = &self.shared else {
            return self.local.check(key, policy, cost);
        };
        match shared.check(key, policy, cost).await {
            Ok(d) => d,
            Err(e) => {
                let allowed = self.failure_mode == FailureMode::Open;
                self.metrics
                    .rate_limit_backend_errors
                    .with_label_values(&[if allowed { "allowed" } else { "refused" }])
                    .inc();
                shared.report_failure(&e);
                Decision::degraded(allowed, policy)
            }
        }
    }

    /// Load the quota usage persisted by earlier processes (local counters
    /// only: with Redis, the counts live in Redis).
    pub async fn load_quota_usage(&self, store: &dyn Store) -> crate::store::StoreResult<()> {
        if self.shared.is_none() {
            let (now, _) = unix_now();
            self.local.seed_quota_usage(&store.quota_usage(now).await?);
        }
        Ok(())
    }

    /// Persist the quota usage counted since the last flush; on failure it
    /// is kept for the next one.
    pub async fn flush_quota_usage(&self, store: &dyn Store) {
        let mut batch =
            std::mem::take(&mut *self.unsaved.lock().unwrap_or_else(|p| p.into_inner()));
        batch.extend(self.local.take_quota_usage());
        if batch.is_empty() {
            return;
        }
        if let Err(e) = store.add_quota_usage(&batch).await {
            tracing::warn!(error = %e, counters = batch.len(), "cannot persist quota usage; will retry");
            self.unsaved
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend(batch);
        }
    }

    /// Start every `{service, plan}` series of `tollgate_rate_limited_total`
    /// at zero, so dashboards and alerts see the series before the first 429.
    pub fn announce(&self, config: &Config) {
        for service in config.services.keys() {
            for plan in config.plans.values().filter(|p| !p.is_unlimited()) {
                self.metrics
                    .rate_limited
                    .with_label_values(&[service.as_str(), plan.name.as_str()]);
            }
        }
    }
}

/// The plan of each name, compiled once per configuration.
pub struct Plans {
    by_name: HashMap<String, (Arc<str>, Policy)>,
    default: Option<(Arc<str>, Policy)>,
}

/// The plan a request is limited by.
#[derive(Debug, Clone)]
pub enum PlanChoice {
    Unlimited,
    Limited(Arc<str>, Policy),
    /// The subscription names a plan the configuration no longer has.
    Unknown(String),
}

impl Plans {
    pub fn new(config: &Config) -> Plans {
        let entry = |p: &Plan| (Arc::<str>::from(p.name.as_str()), Policy::from_plan(p));
        Plans {
            by_name: config
                .plans
                .values()
                .map(|p| (p.name.clone(), entry(p)))
                .collect(),
            default: config.plans.values().find(|p| p.default).map(entry),
        }
    }

    /// The plan a subscription names, or the default plan when it names none.
    pub fn choose(&self, plan: Option<&str>) -> PlanChoice {
        let found = match plan {
            Some(name) => match self.by_name.get(name) {
                Some(p) => p,
                None => return PlanChoice::Unknown(name.to_string()),
            },
            None => match &self.default {
                Some(p) => p,
                None => return PlanChoice::Unlimited,
            },
        };
        if found.1.is_unlimited() {
            PlanChoice::Unlimited
        } else {
            PlanChoice::Limited(found.0.clone(), found.1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_windows_are_utc_days_and_calendar_months() {
        // 2026-02-14 13:00:00 UTC
        let t = 1_771_074_000;
        let (s, e) = quota_window(QuotaPeriod::Day, t);
        assert_eq!((s % 86_400, e - s), (0, 86_400));
        assert!(s <= t && t < e);
        let (s, e) = quota_window(QuotaPeriod::Month, t);
        assert_eq!(s, 1_769_904_000, "2026-02-01");
        assert_eq!(e, 1_772_323_200, "2026-03-01");
        // December rolls into the next year
        let (s, e) = quota_window(QuotaPeriod::Month, 1_798_675_200); // 2026-12-31
        assert_eq!((s, e), (1_796_083_200, 1_798_761_600));
    }

    #[test]
    fn headers_round_seconds_up_and_add_retry_after_when_refused() {
        let d = Decision {
            allowed: false,
            limit: 10,
            remaining: 0,
            reset: Duration::from_millis(1500),
            retry_after: Duration::from_millis(100),
        };
        let h: HashMap<_, _> = d.headers().into_iter().collect();
        assert_eq!(h["ratelimit-limit"], "10");
        assert_eq!(h["ratelimit-remaining"], "0");
        assert_eq!(h["ratelimit-reset"], "2");
        assert_eq!(h["retry-after"], "1");
        let ok = Decision { allowed: true, ..d };
        assert!(!ok.headers().iter().any(|(k, _)| *k == "retry-after"));
    }
}
