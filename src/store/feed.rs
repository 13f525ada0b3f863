//! Follows the store's change feed and hands every change, in order, to the
//! gateway's caches. On PostgreSQL a LISTEN connection says when to read;
//! on both backends a poll reads anyway, so a lost notification or a lost
//! connection delays a change by at most one poll interval.

use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus::Histogram;
use sqlx::postgres::{PgListener, PgPoolOptions};
use tokio::sync::{watch, Notify};

use super::postgres::ACQUIRE_TIMEOUT;
use super::{now_ms, Change, Store, StoreResult, CHANGES_CHANNEL};

/// Where the feed delivers changes (the caches of authentication).
pub trait ChangeSink: Send + Sync {
    fn apply(&self, change: &Change);
}

/// Rows read per query while catching up.
const BATCH: i64 = 500;
/// Waits between attempts to listen again, doubling from the first.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

pub struct ChangeFeed {
    store: Arc<dyn Store>,
    sink: Arc<dyn ChangeSink>,
    lag: Histogram,
    poll: Duration,
    last_seq: i64,
    /// Is reading the feed failing? (to log once per outage)
    store_down: bool,
    listener: Option<Listener>,
}

impl ChangeFeed {
    /// Start at the current last seq: what came before is irrelevant, the
    /// caches are empty. With `listen_url` (PostgreSQL), the LISTEN
    /// connection is opened here, so a change committed once this returns
    /// is announced; if it cannot be opened the feed polls until it can.
    pub async fn start(
        store: Arc<dyn Store>,
        listen_url: Option<String>,
        sink: Arc<dyn ChangeSink>,
        lag: prometheus::Histogram,
        poll: Duration,
    ) -> StoreResult<ChangeFeed> {
        let last_seq = store.last_change_seq().await?;
        let listener = match listen_url {
            Some(url) => Some(Listener::start(url).await),
            None => None,
        };
        Ok(ChangeFeed {
            store,
            sink,
            lag,
            poll,
            last_seq,
            store_down: false,
            listener,
        })
    }

    /// The seq of the last change delivered.
    pub fn last_seq(&self) -> i64 {
        self.last_seq
    }

    /// Deliver changes until `shutdown` turns true (or its sender is gone).
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let wake = Arc::new(Notify::new());
        let listening = self
            .listener
            .take()
            .map(|l| tokio::spawn(l.run(wake.clone())));
        let mut poll = tokio::time::interval(self.poll);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !*shutdown.borrow() {
            tokio::select! {
                changed = shutdown.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    continue;
                }
                _ = wake.notified() => {}
                _ = poll.tick() => {}
            }
            self.catch_up().await;
        }
        if let Some(task) = listening {
            task.abort();
        }
    }

    /// Deliver everything after `last_seq`.
    async fn catch_up(&mut self) {
        loop {
            let changes = match self.store.changes_since(self.last_seq, BATCH).await {
                Ok(changes) => changes,
                Err(e) => {
                    if !self.store_down {
                        self.store_down = true;
                        tracing::warn!(error = %e, "change feed: cannot read the store; retrying every poll");
                    }
                    return;
                }
            };
            if self.store_down {
                self.store_down = false;
                tracing::info!(
                    last_seq = self.last_seq,
                    "change feed: reading the store again"
                );
            }
            let now = now_ms();
            for change in &changes {
                self.sink.apply(change);
                self.lag
                    .observe((now - change.at_ms).max(0) as f64 / 1000.0);
                self.last_seq = change.seq;
            }
            if (changes.len() as i64) < BATCH {
                return;
            }
        }
    }
}

/// The LISTEN side: wakes the follower on each notification and whenever
/// it has (re)connected, since notifications sent meanwhile are lost.
struct Listener {
    url: String,
    conn: Option<PgListener>,
    /// Is listening failing? (to log once per outage)
    down: bool,
}

impl Listener {
    async fn start(url: String) -> Listener {
        let (conn, down) = match listen(&url).await {
            Ok(conn) => (Some(conn), false),
            Err(e) => {
                tracing::warn!(error = %e, "change feed: cannot LISTEN; polling until it can");
                (None, true)
            }
        };
        Listener { url, conn, down }
    }

    async fn run(mut self, wake: Arc<Notify>) {
        let mut backoff = FIRST_BACKOFF;
        loop {
            let mut conn = match self.conn.take() {
                Some(conn) => conn,
                None => match listen(&self.url).await {
                    Ok(conn) => {
                        if self.down {
                            self.down = false;
                            tracing::info!("change feed: listening again");
                        }
                        // what was announced while nobody listened
                        wake.notify_one();
                        conn
                    }
                    Err(e) => {
                        if !self.down {
                            self.down = true;
                            tracing::warn!(error = %e, "change feed: cannot LISTEN; polling until it can");
                        }
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        continue;
                    }
                },
            };
            let connected = Instant::now();
            // Until the connection fails: `Ok(None)` is a lost connection
            // (eager reconnection is off, so it is ours to log and redo).
            let lost = loop {
                match conn.try_recv().await {
                    Ok(Some(_)) => wake.notify_one(),
                    Ok(None) => break "the connection was lost".to_string(),
                    Err(e) => break e.to_string(),
                }
            };
            drop(conn);
            if !self.down {
                self.down = true;
                tracing::warn!(error = %lost, "change feed: LISTEN connection lost; reconnecting");
            }
            // A connection that held for a while starts the backoff afresh;
            // one that keeps dropping at once is not retried in a tight loop.
            if connected.elapsed() > MAX_BACKOFF {
                backoff = FIRST_BACKOFF;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

/// A LISTEN connection on the feed's channel; connecting gives up after the
/// store's acquire timeout, so a database that is down is noticed quickly.
async fn listen(url: &str) -> Result<PgListener, sqlx::Error> {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .max_lifetime(None)
        .idle_timeout(None)
        .connect_lazy(url)?;
    let mut conn = PgListener::connect_with(&pool).await?;
    conn.eager_reconnect(false);
    conn.listen(CHANGES_CHANNEL).await?;
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::store::testing::{pg_test_url, PgTestDatabase};
    use crate::store::{ChangeKind, PgStore, SqliteStore};

    #[derive(Default)]
    struct Recorder(Mutex<Vec<Change>>);

    impl ChangeSink for Recorder {
        fn apply(&self, change: &Change) {
            self.0.lock().unwrap().push(change.clone());
        }
    }

    impl Recorder {
        /// The targets delivered, once `n` have arrived or `within` passed.
        async fn wait_for(&self, n: usize, within: Duration) -> Vec<String> {
            let deadline = Instant::now() + within;
            loop {
                let got: Vec<String> = self
                    .0
                    .lock()
                    .unwrap()
                    .iter()
                    .map(|c| c.target.clone())
                    .collect();
                if got.len() >= n || Instant::now() >= deadline {
                    return got;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }

    fn lag() -> Histogram {
        Histogram::with_opts(prometheus::HistogramOpts::new("lag", "lag")).unwrap()
    }

    struct Running {
        sink: Arc<Recorder>,
        lag: Histogram,
        stop: watch::Sender<bool>,
        task: tokio::task::JoinHandle<()>,
    }

    async fn follow(store: Arc<dyn Store>, listen_url: Option<String>, poll: Duration) -> Running {
        let sink = Arc::new(Recorder::default());
        let lag = lag();
        let feed = ChangeFeed::start(store, listen_url, sink.clone(), lag.clone(), poll)
            .await
            .unwrap();
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(feed.run(stopped));
        Running {
            sink,
            lag,
            stop,
            task,
        }
    }

    impl Running {
        async fn shut_down(self) {
            self.stop.send(true).unwrap();
            tokio::time::timeout(Duration::from_secs(5), self.task)
                .await
                .expect("the feed stops on shutdown")
                .unwrap();
        }
    }

    #[tokio::test]
    async fn sqlite_delivers_a_later_change_by_polling() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&dir.path().join("t.db")).await.unwrap());
        store.revoke_token("before", i64::MAX).await.unwrap();
        let feed = follow(store.clone(), None, Duration::from_millis(50)).await;

        store.revoke_token("after", i64::MAX).await.unwrap();
        // before start: not delivered; after: within a few polls
        assert_eq!(
            feed.sink.wait_for(1, Duration::from_secs(3)).await,
            ["after"]
        );
        assert_eq!(feed.sink.0.lock().unwrap()[0].kind, ChangeKind::Token);
        assert_eq!(feed.lag.get_sample_count(), 1);
        assert!(feed.lag.get_sample_sum() < 3.0);
        feed.shut_down().await;
    }

    #[tokio::test]
    async fn sqlite_feed_survives_a_closed_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&dir.path().join("t.db")).await.unwrap());
        let feed = follow(store.clone(), None, Duration::from_millis(20)).await;
        store.close().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            !feed.task.is_finished(),
            "a failing store does not end the feed"
        );
        feed.shut_down().await;
    }

    #[tokio::test]
    #[cfg_attr(
        not(tollgate_services),
        ignore = "needs PostgreSQL and Redis (TOLLGATE_TEST_PG_URL / TOLLGATE_TEST_REDIS_URL or the local services)"
    )]
    async fn postgres_delivers_by_notify_and_after_the_listener_is_killed() {
        let db = PgTestDatabase::create(&pg_test_url()).await;
        let store = Arc::new(PgStore::connect(&db.url).await.unwrap());
        // a poll too slow to matter: what arrives in time came by NOTIFY
        let feed = follow(
            store.clone(),
            Some(db.url.clone()),
            Duration::from_secs(600),
        )
        .await;
        store.revoke_token("first", i64::MAX).await.unwrap();
        assert_eq!(
            feed.sink.wait_for(1, Duration::from_secs(5)).await,
            ["first"]
        );
        store.revoke_token("second", i64::MAX).await.unwrap();
        assert_eq!(
            feed.sink.wait_for(2, Duration::from_secs(5)).await,
            ["first", "second"]
        );

        let killed: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND query LIKE 'LISTEN%'",
        )
        .fetch_all(&store.pool)
        .await
        .unwrap();
        assert_eq!(killed, [true], "one LISTEN connection was killed");
        store.revoke_token("third", i64::MAX).await.unwrap();
        // caught up when the listener is back, long before the next poll
        assert_eq!(
            feed.sink.wait_for(3, Duration::from_secs(5)).await,
            ["first", "second", "third"]
        );
        store.revoke_token("fourth", i64::MAX).await.unwrap();
        assert_eq!(feed.sink.wait_for(4, Duration::from_secs(2)).await.len(), 4);
        feed.shut_down().await;
    }

    #[tokio::test]
    #[cfg_attr(
        not(tollgate_services),
        ignore = "needs PostgreSQL and Redis (TOLLGATE_TEST_PG_URL / TOLLGATE_TEST_REDIS_URL or the local services)"
    )]
    async fn postgres_polls_while_it_cannot_listen() {
        let db = PgTestDatabase::create(&pg_test_url()).await;
        let store = Arc::new(PgStore::connect(&db.url).await.unwrap());
        // nothing listens on port 1: only the poll delivers
        let dead = "postgres://postgres@127.0.0.1:1/none".to_string();
        let feed = follow(store.clone(), Some(dead), Duration::from_millis(50)).await;
        store.revoke_token("polled", i64::MAX).await.unwrap();
        assert_eq!(
            feed.sink.wait_for(1, Duration::from_secs(3)).await,
            ["polled"]
        );
        feed.shut_down().await;
    }
}
