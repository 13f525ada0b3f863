//! For tests (this crate's and tests/it): a fresh PostgreSQL database per
//! test on the server named by `TOLLGATE_TEST_PG_URL`, else on the local
//! one. Not for production.
//!
//! Whether those tests run at all is decided when they are built: build.rs
//! sets `cfg(tollgate_services)` when the variables are set or the local
//! PostgreSQL and Redis answer, and without it the tests are marked
//! ignored, so a test that could not run is never counted as passed.

use sqlx::{Connection, Executor, PgConnection};

/// The variable that names a PostgreSQL server for tests.
pub const PG_URL_VAR: &str = "TOLLGATE_TEST_PG_URL";

/// The server used when [`PG_URL_VAR`] is unset (the one build.rs probes).
pub const PG_LOCAL_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// The test server's URL: [`PG_URL_VAR`], else [`PG_LOCAL_URL`].
pub fn pg_test_url() -> String {
    match std::env::var(PG_URL_VAR) {
        Ok(url) if !url.is_empty() => url,
        _ => PG_LOCAL_URL.to_string(),
    }
}

/// Create an empty database `tg_<random>` on the server of `base_url` and
/// return its URL. Panics (it is for tests) when the server refuses.
pub async fn fresh_pg_database(base_url: &str) -> String {
    let name = format!("tg_{}", uuid::Uuid::new_v4().simple());
    let mut conn = PgConnection::connect(base_url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the test server ({PG_URL_VAR}): {e}"));
    conn.execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .unwrap_or_else(|e| panic!("cannot create the test database {name}: {e}"));
    let _ = conn.close().await;
    with_database(base_url, &name)
}

/// Drop a database made by [`fresh_pg_database`], disconnecting whoever is
/// still on it. Best effort: a database left behind is only clutter.
pub async fn drop_pg_database(base_url: &str, db_url: &str) {
    let Some(name) = database_name(db_url).filter(|n| n.starts_with("tg_")) else {
        return;
    };
    if let Ok(mut conn) = PgConnection::connect(base_url).await {
        let _ = conn
            .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
            .await;
        let _ = conn.close().await;
    }
}

/// A fresh database, dropped when this guard goes (a failed test too).
pub struct PgTestDatabase {
    pub url: String,
    base_url: String,
}

impl PgTestDatabase {
    pub async fn create(base_url: &str) -> PgTestDatabase {
        PgTestDatabase {
            url: fresh_pg_database(base_url).await,
            base_url: base_url.to_string(),
        }
    }
}

impl Drop for PgTestDatabase {
    fn drop(&mut self) {
        let (base, url) = (self.base_url.clone(), self.url.clone());
        // Drop cannot await, and may run inside a runtime: use a thread.
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(drop_pg_database(&base, &url));
            }
        })
        .join();
    }
}

/// `base_url` with its database replaced by `name` (query kept).
fn with_database(base_url: &str, name: &str) -> String {
    let (main, query) = match base_url.split_once('?') {
        Some((m, q)) => (m, Some(q)),
        None => (base_url, None),
    };
    let authority_at = main.find("://").map_or(0, |i| i + 3);
    let root = match main[authority_at..].find('/') {
        Some(i) => &main[..authority_at + i],
        None => main,
    };
    match query {
        Some(q) => format!("{root}/{name}?{q}"),
        None => format!("{root}/{name}"),
    }
}

fn database_name(url: &str) -> Option<&str> {
    let main = url.split('?').next()?;
    let after = &main[main.find("://")? + 3..];
    let name = &after[after.find('/')? + 1..];
    (!name.is_empty()).then_some(name)
}

/// An active API-key client `cli_{tag}` with one key `key_{tag}`, written
/// as the admin API would (hashed with `pepper`): the key, for tests and
/// benchmarks that need many.
pub async fn add_api_key_client(
    store: &dyn super::Store,
    pepper: &crate::secrets::Pepper,
    tag: &str,
) -> super::StoreResult<String> {
    use super::{now, Audit, AuthType, Client, NewApiKey, NewClient, Status};
    use crate::secrets;
    let key = secrets::generate_api_key();
    let id = format!("cli_{tag}");
    let client = Client {
        id: id.clone(),
        name: format!("client {tag}"),
        description: String::new(),
        auth_type: AuthType::ApiKey,
        scopes: vec![],
        issuer: None,
        external_id: None,
        status: Status::Active,
        created_at: now(),
        revoked_at: None,
        account_id: None,
        allowed_cidrs: vec![],
        allowed_referers: vec![],
    };
    let new_key = NewApiKey {
        id: format!("key_{tag}"),
        client_id: id.clone(),
        name: "default".into(),
        prefix: secrets::display_prefix(key.expose(), secrets::API_KEY_PREFIX),
        hash: pepper.hash(key.expose()),
        created_at: now(),
        expires_at: None,
    };
    let audit = Audit {
        actor: "test".into(),
        action: "client.create",
        target: id,
        detail: serde_json::json!({}),
    };
    let new = NewClient {
        client,
        secret: None,
        key: Some(new_key),
    };
    store.insert_client(new, audit).await?;
    Ok(key.expose().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_of_a_url_is_replaced() {
        assert_eq!(
            with_database("postgres://u@h:5432/test", "tg_x"),
            "postgres://u@h:5432/tg_x"
        );
        assert_eq!(
            with_database("postgres://u:p@h/test?sslmode=disable", "tg_x"),
            "postgres://u:p@h/tg_x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h", "tg_x"), "postgres://h/tg_x");
        assert_eq!(database_name("postgres://h/tg_x?a=b"), Some("tg_x"));
        assert_eq!(database_name("postgres://h"), None);
    }
}
