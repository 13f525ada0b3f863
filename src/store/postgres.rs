//! The shared store for several nodes: PostgreSQL, pooled, migrated on
//! start. Changes are announced with NOTIFY on `tollgate_changes`.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{PgConnection, Postgres};

use super::sql::{bind, Arg, Backend, SqlStore};
use super::{StoreError, StoreResult};

pub type PgStore = SqlStore<Postgres>;

/// The NOTIFY channel of the change feed; the payload is the change's seq.
pub const CHANGES_CHANNEL: &str = "tollgate_changes";

/// How long a call waits for a connection: a database that is down must
/// give a quick Unavailable (503, /readyz), not hang the admin API.
pub(crate) const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

impl SqlStore<Postgres> {
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let opts = PgConnectOptions::from_str(url)?.application_name("tollgate");
        let pool = PgPoolOptions::new()
            // Store calls are short and mostly behind caches; eight
            // connections per node leave room for many nodes on one server.
            .max_connections(8)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(opts)
            .await?;
        // Nodes starting together run this at the same time: sqlx's migrator
        // holds pg_advisory_lock (keyed on the database name) from before it
        // creates _sqlx_migrations until it is done, so one node migrates
        // and the others then find every migration applied.
        if let Err(e) = sqlx::migrate!("migrations/postgres").run(&pool).await {
            // a failed run leaves the session lock on its pooled connection
            pool.close().await;
            return Err(StoreError::Unavailable(format!("migration failed: {e}")));
        }
        Ok(SqlStore { pool })
    }
}

#[async_trait]
impl Backend for Postgres {
    const BEGIN_WRITE: &'static str = "BEGIN";

    async fn execute(conn: &mut PgConnection, sql: &str, args: &[Arg<'_>]) -> StoreResult<u64> {
        Ok(bind(sql, args).execute(conn).await?.rows_affected())
    }

    async fn fetch_all(
        conn: &mut PgConnection,
        sql: &str,
        args: &[Arg<'_>],
    ) -> StoreResult<Vec<PgRow>> {
        Ok(bind(sql, args).fetch_all(conn).await?)
    }

    async fn fetch_optional(
        conn: &mut PgConnection,
        sql: &str,
        args: &[Arg<'_>],
    ) -> StoreResult<Option<PgRow>> {
        Ok(bind(sql, args).fetch_optional(conn).await?)
    }

    /// A BIGSERIAL is taken at insert but becomes visible at commit, so
    /// without this, transaction A could take seq 5, B seq 6, B commit
    /// first, and a follower that read 6 would never look at 5 again.
    /// The table lock (EXCLUSIVE still lets plain SELECTs of followers
    /// through) is held from before the seq is taken until commit, so the
    /// next change can only take its seq after this one is visible: seq
    /// order is commit order and a follower needs only its last seq. It
    /// serializes the writes that produce changes, which are admin calls,
    /// and it is taken last in their transactions, after their row locks,
    /// so it is held only for the insert, the NOTIFY and the commit.
    /// (The other way, re-reading a trailing window, would need a bound on
    /// how long a transaction may stay open; this needs none.)
    async fn before_change(conn: &mut PgConnection) -> StoreResult<()> {
        Self::execute(conn, "LOCK TABLE changes IN EXCLUSIVE MODE", &[]).await?;
        Ok(())
    }

    /// Delivered to listeners on commit, and not at all on rollback.
    async fn after_change(conn: &mut PgConnection, seq: i64) -> StoreResult<()> {
        Self::execute(
            conn,
            "SELECT pg_notify($1, $2::text)",
            &[Arg::Text(CHANGES_CHANNEL), Arg::Int(seq)],
        )
        .await?;
        Ok(())
    }
}
