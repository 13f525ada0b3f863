//! The embedded default store: one SQLite file in WAL mode, created and
//! migrated on first start.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Sqlite, SqliteConnection};

use super::sql::{bind, Arg, Backend, SqlStore};
use super::{StoreError, StoreResult};

pub type SqliteStore = SqlStore<Sqlite>;

/// SQLite's page cache of each pooled connection, in KiB.
const PAGE_CACHE_KIB: u32 = 512;

impl SqlStore<Sqlite> {
    pub async fn open(path: &Path) -> StoreResult<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Unavailable(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        let opts = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5))
            // SQLite's own page cache per connection (2 MiB by default, so
            // 8 MiB for the pool) repeats what the kernel's page cache holds
            // of the file; the store is read on cache misses only, where a
            // page read from the kernel costs a microsecond.
            .pragma("cache_size", format!("-{}", PAGE_CACHE_KIB));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(opts)
            .await?;
        sqlx::migrate!("migrations/sqlite")
            .run(&pool)
            .await
            .map_err(|e| StoreError::Unavailable(format!("migration failed: {e}")))?;
        Ok(SqlStore { pool })
    }
}

/// SQLite lets one writer at a time hold the database, from BEGIN
/// IMMEDIATE to its commit, so change rows already take their seq in commit
/// order.
#[async_trait]
impl Backend for Sqlite {
    /// Take the write lock at once: a deferred transaction that has read
    /// gets SQLITE_BUSY at its first write while another writer holds the
    /// lock (the busy timeout does not apply to that upgrade); IMMEDIATE
    /// waits for the lock instead.
    const BEGIN_WRITE: &'static str = "BEGIN IMMEDIATE";

    async fn execute(conn: &mut SqliteConnection, sql: &str, args: &[Arg<'_>]) -> StoreResult<u64> {
        Ok(bind(sql, args).execute(conn).await?.rows_affected())
    }

    async fn fetch_all(
        conn: &mut SqliteConnection,
        sql: &str,
        args: &[Arg<'_>],
    ) -> StoreResult<Vec<SqliteRow>> {
        Ok(bind(sql, args).fetch_all(conn).await?)
    }

    async fn fetch_optional(
        conn: &mut SqliteConnection,
        sql: &str,
        args: &[Arg<'_>],
    ) -> StoreResult<Option<SqliteRow>> {
        Ok(bind(sql, args).fetch_optional(conn).await?)
    }
}
