//! What a database driver gives the shared store: values bound to `$n`
//! placeholders, and the few calls a backend must provide.

use async_trait::async_trait;
use sqlx::query::Query;
use sqlx::{Database, Encode, IntoArguments, Type};

use super::rows::StoreRow;
use crate::store::StoreResult;

/// A value bound to a `$n` placeholder.
#[derive(Debug, Clone, Copy)]
pub enum Arg<'a> {
    Text(&'a str),
    OptText(Option<&'a str>),
    Int(i64),
    OptInt(Option<i64>),
}

impl<'a> From<&'a str> for Arg<'a> {
    fn from(v: &'a str) -> Self {
        Arg::Text(v)
    }
}
impl<'a> From<&'a String> for Arg<'a> {
    fn from(v: &'a String) -> Self {
        Arg::Text(v)
    }
}
impl<'a> From<&'a Option<String>> for Arg<'a> {
    fn from(v: &'a Option<String>) -> Self {
        Arg::OptText(v.as_deref())
    }
}
impl<'a> From<Option<&'a str>> for Arg<'a> {
    fn from(v: Option<&'a str>) -> Self {
        Arg::OptText(v)
    }
}
impl From<i64> for Arg<'_> {
    fn from(v: i64) -> Self {
        Arg::Int(v)
    }
}
impl From<Option<i64>> for Arg<'_> {
    fn from(v: Option<i64>) -> Self {
        Arg::OptInt(v)
    }
}

/// Bind `args` in order; both drivers share this.
pub(in crate::store) fn bind<'q, DB>(
    sql: &'q str,
    args: &[Arg<'q>],
) -> Query<'q, DB, DB::Arguments<'q>>
where
    DB: Database,
    DB::Arguments<'q>: IntoArguments<'q, DB>,
    &'q str: Encode<'q, DB> + Type<DB>,
    Option<&'q str>: Encode<'q, DB> + Type<DB>,
    i64: Encode<'q, DB> + Type<DB>,
    Option<i64>: Encode<'q, DB> + Type<DB>,
{
    args.iter().fold(sqlx::query(sql), |q, a| match *a {
        Arg::Text(v) => q.bind(v),
        Arg::OptText(v) => q.bind(v),
        Arg::Int(v) => q.bind(v),
        Arg::OptInt(v) => q.bind(v),
    })
}

/// What one database must provide; the rest is `SqlStore`.
#[async_trait]
pub trait Backend: Database<Row: StoreRow> {
    /// Starts a transaction that will write.
    const BEGIN_WRITE: &'static str;

    async fn execute(conn: &mut Self::Connection, sql: &str, args: &[Arg<'_>]) -> StoreResult<u64>;
    async fn fetch_all(
        conn: &mut Self::Connection,
        sql: &str,
        args: &[Arg<'_>],
    ) -> StoreResult<Vec<Self::Row>>;
    async fn fetch_optional(
        conn: &mut Self::Connection,
        sql: &str,
        args: &[Arg<'_>],
    ) -> StoreResult<Option<Self::Row>>;

    /// In a change's transaction, just before its row takes a seq: whatever
    /// makes seq order equal commit order.
    async fn before_change(_conn: &mut Self::Connection) -> StoreResult<()> {
        Ok(())
    }
    /// In a change's transaction, once its row is written.
    async fn after_change(_conn: &mut Self::Connection, _seq: i64) -> StoreResult<()> {
        Ok(())
    }
}
