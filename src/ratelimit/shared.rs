//! Counters in Redis, shared by every node: one Lua script per decision
//! (one round trip, atomic), with Redis's own clock so nodes whose clocks
//! differ still agree. The rate cell and the quota count of a key share a
//! hash tag, so the script also works against a Redis Cluster.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::{quota_window, unix_now, Decision, Policy, Views};
use crate::config::RedisSettings;

/// KEYS[1]: the GCRA arrival time (µs); KEYS[2]: the quota count.
/// ARGV: interval µs (0: no rate), tolerance µs, quota (0: none), quota
/// key expiry (Unix s), cost (0: only look).
/// Returns {allowed, rate remaining, rate reset µs, rate retry µs, quota used}.
const SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local quota = tonumber(ARGV[3])
local cost = tonumber(ARGV[5])
local rate_ok, quota_ok = 1, 1
local remaining, reset, retry = 0, 0, 0
local tat = now
if interval > 0 then
  tat = tonumber(redis.call('GET', KEYS[1]) or now)
  if tat < now then tat = now end
  if tat - now > tolerance then
    rate_ok = 0
    retry = tat - tolerance - now
    reset = tat - now
  else
    tat = tat + interval * cost
    local slack = tolerance + interval - (tat - now)
    if slack > 0 then remaining = math.floor(slack / interval) end
    reset = tat - now
  end
end
local used = 0
if quota > 0 then
  used = tonumber(redis.call('GET', KEYS[2]) or 0)
  if used + math.max(cost, 1) > quota then quota_ok = 0 end
end
if rate_ok == 1 and quota_ok == 1 and cost > 0 then
  if interval > 0 then
    -- integers as text: Lua would print 1.7e15 as 1.7e+15
    redis.call('SET', KEYS[1], string.format('%d', tat), 'PX', math.floor((tat - now) / 1000) + 1000)
  end
  if quota > 0 then
    used = redis.call('INCRBY', KEYS[2], cost)
    redis.call('EXPIREAT', KEYS[2], ARGV[4])
  end
end
return {rate_ok, quota_ok, remaining, reset, retry, used}
"#;

/// After a failure, Redis is not asked again for this long: a dead Redis
/// must not cost every request the whole timeout.
const BACKOFF: Duration = Duration::from_millis(500);

pub struct SharedCounters {
    conn: Option<ConnectionManager>,
    script: redis::Script,
    timeout: Duration,
    down_since: Mutex<Option<Instant>>,
    url_error: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SharedError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("redis was unreachable moments ago; not asked again yet")]
    Backoff,
    #[error("{0}")]
    Config(String),
}

impl SharedCounters {
    pub fn new(settings: &RedisSettings) -> SharedCounters {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(settings.timeout))
            .set_response_timeout(Some(settings.timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        let conn = redis::Client::open(settings.url.as_str())
            .and_then(|c| ConnectionManager::new_lazy_with_config(c, config));
        let (conn, url_error) = match conn {
            Ok(c) => (Some(c), None),
            Err(e) => (None, Some(format!("redis.url: {e}"))),
        };
        SharedCounters {
            conn,
            script: redis::Script::new(SCRIPT),
            timeout: settings.timeout,
            down_since: Mutex::new(None),
            url_error,
        }
    }

    pub async fn check(
        &self,
        key: &str,
        policy: &Policy,
        cost: u64,
    ) -> Result<Decision, SharedError> {
        let Some(conn) = &self.conn else {
            return Err(SharedError::Config(
                self.url_error.clone().unwrap_or_default(),
            ));
        };
        let retry_at = *self.down_since.lock().unwrap_or_else(|p| p.into_inner());
        if retry_at.is_some_and(|t| t.elapsed() < BACKOFF) {
            return Err(SharedError::Backoff);
        }
        let (unix, _) = unix_now();
        let window = policy.quota.map(|q| quota_window(q.period, unix));
        let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let mut call = self.script.prepare_invoke();
        call.key(format!("tollgate:rl:{{{key}}}"))
            .key(format!(
                "tollgate:q:{{{key}}}:{}",
                window.map_or(0, |w| w.0)
            ))
            .arg(policy.rate.map_or(0, |r| micros(r.interval()).max(1)))
            .arg(policy.rate.map_or(0, |r| micros(r.tolerance())))
            .arg(policy.quota.map_or(0, |q| q.count))
            // kept a day past the window, for late readers and clock skew
            .arg(window.map_or(0, |w| w.1 + 86_400))
            .arg(cost);
        let mut conn = conn.clone();
        let answer: Vec<i64> =
            match tokio::time::timeout(self.timeout, call.invoke_async(&mut conn)).await {
                Ok(Ok(v)) => v,
                Ok(Err(e)) => return Err(e.into()),
                Err(_) => return Err(SharedError::Timeout(self.timeout)),
            };
        let [rate_ok, quota_ok, remaining, reset, retry, used] = answer[..] else {
            return Err(SharedError::Config(format!(
                "unexpected script answer {answer:?}"
            )));
        };
        if let Ok(mut down) = self.down_since.lock() {
            if down.take().is_some() {
                tracing::info!("redis answers again; rate limits are shared again");
            }
        }
        let us = |v: i64| Duration::from_micros(v.max(0) as u64);
        Ok(Views {
            rate: policy.rate.map(|r| {
                (
                    rate_ok == 1,
                    r.count,
                    remaining.max(0) as u64,
                    us(reset),
                    us(retry),
                )
            }),
            quota: policy.quota.zip(window).map(|(q, (_, end))| {
                (
                    quota_ok == 1,
                    q.count,
                    q.count.saturating_sub(used.max(0) as u64),
                    Duration::from_secs(end.saturating_sub(unix).max(0) as u64),
                )
            }),
        }
        .decide())
    }

    /// Log the first failure of an outage (not one line per request) and
    /// start the backoff.
    pub fn report_failure(&self, e: &SharedError) {
        if matches!(e, SharedError::Backoff) {
            return;
        }
        let mut down = self.down_since.lock().unwrap_or_else(|p| p.into_inner());
        if down.is_none() {
            tracing::warn!(error = %e, "rate-limit counters unavailable; applying the failure mode");
        }
        *down = Some(Instant::now());
    }
}
