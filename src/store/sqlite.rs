//! The embedded default store: one SQLite file in WAL mode, created and
//! migrated on first start.

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Row, SqlitePool};

use super::*;

pub struct SqliteStore {
    pool: SqlitePool,
}

const CLIENT_COLS: &str =
    "id, name, description, auth_type, scopes, issuer, external_id, status, created_at, revoked_at";
const KEY_COLS: &str =
    "id, client_id, name, prefix, status, created_at, expires_at, last_used_at, use_count";

fn client_from(row: &SqliteRow) -> StoreResult<Client> {
    let auth_type: String = row.try_get("auth_type")?;
    let status: String = row.try_get("status")?;
    Ok(Client {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        auth_type: AuthType::parse(&auth_type)
            .ok_or_else(|| StoreError::Unavailable(format!("bad auth_type {auth_type}")))?,
        scopes: scopes_from_text(&row.try_get::<String, _>("scopes")?),
        issuer: row.try_get("issuer")?,
        external_id: row.try_get("external_id")?,
        status: Status::parse(&status)
            .ok_or_else(|| StoreError::Unavailable(format!("bad status {status}")))?,
        created_at: row.try_get("created_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

fn key_from(row: &SqliteRow, at: Timestamp) -> StoreResult<ApiKey> {
    let status: String = row.try_get("status")?;
    let expires_at: Option<i64> = row.try_get("expires_at")?;
    let shown = if status == "active" && expires_at.is_some_and(|e| e <= at) {
        "expired".to_string()
    } else {
        status
    };
    Ok(ApiKey {
        id: row.try_get("id")?,
        client_id: row.try_get("client_id")?,
        name: row.try_get("name")?,
        prefix: row.try_get("prefix")?,
        status: shown,
        created_at: row.try_get("created_at")?,
        expires_at,
        last_used_at: row.try_get("last_used_at")?,
        use_count: row.try_get("use_count")?,
    })
}

fn sub_from(row: &SqliteRow) -> StoreResult<Subscription> {
    Ok(Subscription {
        id: row.try_get("id")?,
        client_id: row.try_get("client_id")?,
        service: row.try_get("service")?,
        plan: row.try_get("plan")?,
        created_at: row.try_get("created_at")?,
    })
}

async fn write_audit(tx: &mut sqlx::SqliteConnection, audit: &Audit) -> StoreResult<()> {
    sqlx::query("INSERT INTO audit_log (at, actor, action, target, detail) VALUES (?, ?, ?, ?, ?)")
        .bind(now())
        .bind(&audit.actor)
        .bind(audit.action)
        .bind(&audit.target)
        .bind(audit.detail.to_string())
        .execute(&mut *tx)
        .await?;
    Ok(())
}

impl SqliteStore {
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
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(opts)
            .await?;
        sqlx::migrate!("migrations/sqlite")
            .run(&pool)
            .await
            .map_err(|e| StoreError::Unavailable(format!("migration failed: {e}")))?;
        Ok(SqliteStore { pool })
    }

    /// Close the pool: every later call fails as if the database were gone.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn insert_client(&self, new: NewClient, audit: Audit) -> StoreResult<()> {
        let c = &new.client;
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO clients (id, name, description, auth_type, scopes, issuer, external_id, status, created_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&c.id)
        .bind(&c.name)
        .bind(&c.description)
        .bind(c.auth_type.as_str())
        .bind(scopes_to_text(&c.scopes))
        .bind(&c.issuer)
        .bind(&c.external_id)
        .bind(c.status.as_str())
        .bind(c.created_at)
        .bind(c.revoked_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| match StoreError::from(e) {
            StoreError::Conflict(_) => StoreError::Conflict("a client with this issuer and external_id exists".into()),
            other => other,
        })?;
        if let Some(s) = &new.secret {
            sqlx::query("INSERT INTO client_secrets (id, client_id, hash, created_at, expires_at) VALUES (?, ?, ?, ?, NULL)")
                .bind(&s.id)
                .bind(&s.client_id)
                .bind(&s.hash)
                .bind(s.created_at)
                .execute(&mut *tx)
                .await?;
        }
        if let Some(k) = &new.key {
            insert_key(&mut tx, k).await?;
        }
        write_audit(&mut tx, &audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn get_client(&self, id: &str) -> StoreResult<Client> {
        let row = sqlx::query(&format!("SELECT {CLIENT_COLS} FROM clients WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        client_from(&row)
    }

    async fn list_clients(&self, status: Option<Status>) -> StoreResult<Vec<Client>> {
        let rows = match status {
            Some(s) => {
                sqlx::query(&format!(
                    "SELECT {CLIENT_COLS} FROM clients WHERE status = ? ORDER BY created_at, id"
                ))
                .bind(s.as_str())
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(&format!(
                    "SELECT {CLIENT_COLS} FROM clients ORDER BY created_at, id"
                ))
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter().map(client_from).collect()
    }

    async fn update_client(
        &self,
        id: &str,
        patch: ClientPatch,
        audit: Audit,
    ) -> StoreResult<Client> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(&format!("SELECT {CLIENT_COLS} FROM clients WHERE id = ?"))
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound)?;
        let mut c = client_from(&row)?;
        if c.status == Status::Revoked {
            return Err(StoreError::Conflict("the client is revoked".into()));
        }
        if let Some(n) = patch.name {
            c.name = n;
        }
        if let Some(d) = patch.description {
            c.description = d;
        }
        if let Some(s) = patch.scopes {
            c.scopes = s;
        }
        sqlx::query("UPDATE clients SET name = ?, description = ?, scopes = ? WHERE id = ?")
            .bind(&c.name)
            .bind(&c.description)
            .bind(scopes_to_text(&c.scopes))
            .bind(id)
            .execute(&mut *tx)
            .await?;
        write_audit(&mut tx, &audit).await?;
        tx.commit().await?;
        Ok(c)
    }

    async fn revoke_client(&self, id: &str, at: Timestamp, audit: Audit) -> StoreResult<Client> {
        let mut tx = self.pool.begin().await?;
        let updated = sqlx::query("UPDATE clients SET status = 'revoked', revoked_at = ? WHERE id = ? AND status = 'active'")
            .bind(at)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if updated.rows_affected() == 0 {
            let exists = sqlx::query("SELECT 1 FROM clients WHERE id = ?")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
            return Err(match exists {
                Some(_) => StoreError::Conflict("the client is already revoked".into()),
                None => StoreError::NotFound,
            });
        }
        sqlx::query("DELETE FROM subscriptions WHERE client_id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE api_keys SET status = 'revoked' WHERE client_id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM client_secrets WHERE client_id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        write_audit(&mut tx, &audit).await?;
        let row = sqlx::query(&format!("SELECT {CLIENT_COLS} FROM clients WHERE id = ?"))
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        client_from(&row)
    }

    async fn replace_secret(
        &self,
        secret: NewSecret,
        old_valid_until: Option<Timestamp>,
        audit: Audit,
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        match old_valid_until {
            Some(until) => {
                sqlx::query("UPDATE client_secrets SET expires_at = ? WHERE client_id = ? AND (expires_at IS NULL OR expires_at > ?)")
                    .bind(until)
                    .bind(&secret.client_id)
                    .bind(until)
                    .execute(&mut *tx)
                    .await?;
            }
            None => {
                sqlx::query("DELETE FROM client_secrets WHERE client_id = ?")
                    .bind(&secret.client_id)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        sqlx::query("INSERT INTO client_secrets (id, client_id, hash, created_at, expires_at) VALUES (?, ?, ?, ?, NULL)")
            .bind(&secret.id)
            .bind(&secret.client_id)
            .bind(&secret.hash)
            .bind(secret.created_at)
            .execute(&mut *tx)
            .await?;
        write_audit(&mut tx, &audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn secret_hashes(&self, client_id: &str, at: Timestamp) -> StoreResult<Vec<String>> {
        let rows = sqlx::query("SELECT hash FROM client_secrets WHERE client_id = ? AND (expires_at IS NULL OR expires_at > ?)")
            .bind(client_id)
            .bind(at)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| Ok(r.try_get("hash")?)).collect()
    }

    async fn insert_api_key(&self, key: NewApiKey, audit: Audit) -> StoreResult<ApiKey> {
        let mut tx = self.pool.begin().await?;
        insert_key(&mut tx, &key).await?;
        write_audit(&mut tx, &audit).await?;
        tx.commit().await?;
        self.get_api_key(&key.id).await
    }

    async fn get_api_key(&self, id: &str) -> StoreResult<ApiKey> {
        let row = sqlx::query(&format!("SELECT {KEY_COLS} FROM api_keys WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        key_from(&row, now())
    }

    async fn list_api_keys(&self, client_id: &str) -> StoreResult<Vec<ApiKey>> {
        let rows = sqlx::query(&format!(
            "SELECT {KEY_COLS} FROM api_keys WHERE client_id = ? ORDER BY created_at, id"
        ))
        .bind(client_id)
        .fetch_all(&self.pool)
        .await?;
        let at = now();
        rows.iter().map(|r| key_from(r, at)).collect()
    }

    async fn set_api_key_state(
        &self,
        id: &str,
        status: Status,
        expires_at: Option<Timestamp>,
        audit: Audit,
    ) -> StoreResult<ApiKey> {
        let mut tx = self.pool.begin().await?;
        let updated = sqlx::query("UPDATE api_keys SET status = ?, expires_at = ? WHERE id = ?")
            .bind(status.as_str())
            .bind(expires_at)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        write_audit(&mut tx, &audit).await?;
        tx.commit().await?;
        self.get_api_key(id).await
    }

    async fn find_api_key(&self, hash: &str) -> StoreResult<Option<(ApiKey, Client)>> {
        let Some(row) = sqlx::query(&format!("SELECT {KEY_COLS} FROM api_keys WHERE hash = ?"))
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let key = key_from(&row, now())?;
        let client = self.get_client(&key.client_id).await?;
        Ok(Some((key, client)))
    }

    async fn record_usage(&self, usage: &HashMap<String, KeyUsage>) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        for (id, u) in usage {
            sqlx::query("UPDATE api_keys SET use_count = use_count + ?, last_used_at = MAX(COALESCE(last_used_at, 0), ?) WHERE id = ?")
                .bind(u.count)
                .bind(u.last_used_at)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn insert_subscription(&self, sub: Subscription, audit: Audit) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        let status: Option<String> = sqlx::query_scalar("SELECT status FROM clients WHERE id = ?")
            .bind(&sub.client_id)
            .fetch_optional(&mut *tx)
            .await?;
        match status.as_deref() {
            None => return Err(StoreError::NotFound),
            Some("revoked") => return Err(StoreError::Conflict("the client is revoked".into())),
            _ => {}
        }
        sqlx::query("INSERT INTO subscriptions (id, client_id, service, plan, created_at) VALUES (?, ?, ?, ?, ?)")
            .bind(&sub.id)
            .bind(&sub.client_id)
            .bind(&sub.service)
            .bind(&sub.plan)
            .bind(sub.created_at)
            .execute(&mut *tx)
            .await
            .map_err(|e| match StoreError::from(e) {
                StoreError::Conflict(_) => StoreError::Conflict("the client is already subscribed to this service".into()),
                other => other,
            })?;
        write_audit(&mut tx, &audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn list_subscriptions(&self, client_id: Option<&str>) -> StoreResult<Vec<Subscription>> {
        let rows = match client_id {
            Some(c) => {
                sqlx::query(
                    "SELECT * FROM subscriptions WHERE client_id = ? ORDER BY created_at, id",
                )
                .bind(c)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query("SELECT * FROM subscriptions ORDER BY created_at, id")
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter().map(sub_from).collect()
    }

    async fn get_subscription(&self, id: &str) -> StoreResult<Subscription> {
        let row = sqlx::query("SELECT * FROM subscriptions WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        sub_from(&row)
    }

    async fn delete_subscription(&self, id: &str, audit: Audit) -> StoreResult<Subscription> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query("SELECT * FROM subscriptions WHERE id = ?")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound)?;
        let sub = sub_from(&row)?;
        sqlx::query("DELETE FROM subscriptions WHERE id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        write_audit(&mut tx, &audit).await?;
        tx.commit().await?;
        Ok(sub)
    }

    async fn find_external_client(
        &self,
        issuer: &str,
        external_id: &str,
    ) -> StoreResult<Option<Client>> {
        let row = sqlx::query(&format!(
            "SELECT {CLIENT_COLS} FROM clients WHERE issuer = ? AND external_id = ?"
        ))
        .bind(issuer)
        .bind(external_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(client_from).transpose()
    }

    async fn list_signing_keys(&self) -> StoreResult<Vec<SigningKey>> {
        let rows = sqlx::query("SELECT kid, algorithm, private_key, public_jwk, created_at, retired_at FROM signing_keys ORDER BY created_at DESC, kid")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let jwk: String = r.try_get("public_jwk")?;
                Ok(SigningKey {
                    kid: r.try_get("kid")?,
                    algorithm: r.try_get("algorithm")?,
                    private_pem: r.try_get("private_key")?,
                    public_jwk: serde_json::from_str(&jwk)
                        .map_err(|e| StoreError::Unavailable(e.to_string()))?,
                    created_at: r.try_get("created_at")?,
                    retired_at: r.try_get("retired_at")?,
                })
            })
            .collect()
    }

    async fn insert_signing_key(&self, key: &SigningKey) -> StoreResult<()> {
        let mut conn = self.pool.acquire().await?;
        insert_signing_key(&mut conn, key).await
    }

    async fn rotate_signing_key(
        &self,
        key: &SigningKey,
        at: Timestamp,
        audit: Audit,
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE signing_keys SET retired_at = ? WHERE retired_at IS NULL")
            .bind(at)
            .execute(&mut *tx)
            .await?;
        insert_signing_key(&mut tx, key).await?;
        write_audit(&mut tx, &audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn list_audit(&self, limit: i64) -> StoreResult<Vec<AuditEntry>> {
        let rows = sqlx::query(
            "SELECT id, at, actor, action, target, detail FROM audit_log ORDER BY id DESC LIMIT ?",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let detail: String = r.try_get("detail")?;
                Ok(AuditEntry {
                    id: r.try_get("id")?,
                    at: r.try_get("at")?,
                    actor: r.try_get("actor")?,
                    action: r.try_get("action")?,
                    target: r.try_get("target")?,
                    detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null),
                })
            })
            .collect()
    }
}

async fn insert_signing_key(
    conn: &mut sqlx::SqliteConnection,
    key: &SigningKey,
) -> StoreResult<()> {
    sqlx::query("INSERT INTO signing_keys (kid, algorithm, private_key, public_jwk, created_at, retired_at) VALUES (?, ?, ?, ?, ?, ?)")
        .bind(&key.kid)
        .bind(&key.algorithm)
        .bind(&key.private_pem)
        .bind(key.public_jwk.to_string())
        .bind(key.created_at)
        .bind(key.retired_at)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

async fn insert_key(tx: &mut sqlx::SqliteConnection, k: &NewApiKey) -> StoreResult<()> {
    sqlx::query("INSERT INTO api_keys (id, client_id, name, prefix, hash, created_at, expires_at, last_used_at, use_count, status) VALUES (?, ?, ?, ?, ?, ?, ?, NULL, 0, 'active')")
        .bind(&k.id)
        .bind(&k.client_id)
        .bind(&k.name)
        .bind(&k.prefix)
        .bind(&k.hash)
        .bind(k.created_at)
        .bind(k.expires_at)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn audit(action: &'static str, target: &str) -> Audit {
        Audit {
            actor: "test".into(),
            action,
            target: target.into(),
            detail: serde_json::json!({}),
        }
    }

    fn client(id: &str) -> Client {
        Client {
            id: id.into(),
            name: "n".into(),
            description: String::new(),
            auth_type: AuthType::ApiKey,
            scopes: vec!["a:read".into()],
            issuer: None,
            external_id: None,
            status: Status::Active,
            created_at: now(),
            revoked_at: None,
        }
    }

    #[tokio::test]
    async fn revoke_is_final_and_removes_everything() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("t.db")).await.unwrap();
        let key = NewApiKey {
            id: "key_1".into(),
            client_id: "cli_1".into(),
            name: "k".into(),
            prefix: "tg_abc".into(),
            hash: "h1".into(),
            created_at: now(),
            expires_at: None,
        };
        store
            .insert_client(
                NewClient {
                    client: client("cli_1"),
                    secret: None,
                    key: Some(key),
                },
                audit("client.create", "cli_1"),
            )
            .await
            .unwrap();
        let sub = Subscription {
            id: "sub_1".into(),
            client_id: "cli_1".into(),
            service: "s".into(),
            plan: None,
            created_at: now(),
        };
        store
            .insert_subscription(sub.clone(), audit("subscription.create", "sub_1"))
            .await
            .unwrap();
        let dup = Subscription {
            id: "sub_2".into(),
            ..sub
        };
        assert!(matches!(
            store.insert_subscription(dup, audit("x", "y")).await,
            Err(StoreError::Conflict(_))
        ));
        let (k, c) = store.find_api_key("h1").await.unwrap().unwrap();
        assert_eq!((k.id.as_str(), c.id.as_str()), ("key_1", "cli_1"));

        let revoked = store
            .revoke_client("cli_1", now(), audit("client.revoke", "cli_1"))
            .await
            .unwrap();
        assert_eq!(revoked.status, Status::Revoked);
        assert!(store
            .list_subscriptions(Some("cli_1"))
            .await
            .unwrap()
            .is_empty());
        assert_eq!(
            store.list_api_keys("cli_1").await.unwrap()[0].status,
            "revoked"
        );
        assert!(matches!(
            store
                .revoke_client("cli_1", now(), audit("client.revoke", "cli_1"))
                .await,
            Err(StoreError::Conflict(_))
        ));
        assert!(matches!(
            store
                .revoke_client("nope", now(), audit("client.revoke", "nope"))
                .await,
            Err(StoreError::NotFound)
        ));
        let entries = store.list_audit(10).await.unwrap();
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[0].action, "client.revoke");
    }

    #[tokio::test]
    async fn usage_is_added_in_batches() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("t.db")).await.unwrap();
        let key = NewApiKey {
            id: "key_1".into(),
            client_id: "cli_1".into(),
            name: "k".into(),
            prefix: "tg_abc".into(),
            hash: "h1".into(),
            created_at: now(),
            expires_at: Some(now() + 100),
        };
        store
            .insert_client(
                NewClient {
                    client: client("cli_1"),
                    secret: None,
                    key: Some(key),
                },
                audit("client.create", "cli_1"),
            )
            .await
            .unwrap();
        let mut usage = HashMap::new();
        usage.insert(
            "key_1".to_string(),
            KeyUsage {
                last_used_at: 1000,
                count: 5,
            },
        );
        store.record_usage(&usage).await.unwrap();
        usage.insert(
            "key_1".to_string(),
            KeyUsage {
                last_used_at: 900,
                count: 2,
            },
        );
        store.record_usage(&usage).await.unwrap();
        let k = store.get_api_key("key_1").await.unwrap();
        assert_eq!((k.use_count, k.last_used_at), (7, Some(1000)));
    }
}
