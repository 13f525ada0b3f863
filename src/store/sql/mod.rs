//! The `Store` written once for both databases. SQLite and PostgreSQL get
//! the same tables (see migrations/) and the same SQL (`$1` placeholders,
//! which sqlx's SQLite driver also reads); a backend only says how a query
//! is bound and run, and what a change needs beyond its row.

use std::collections::HashMap;

use async_trait::async_trait;
use sqlx::pool::PoolConnection;
use sqlx::{Database, Pool, Transaction};

use super::*;

/// `args![a, b]`: the values of `$1`, `$2`.
macro_rules! args {
    ($($v:expr),* $(,)?) => { &[$(Arg::from($v)),*] };
}

mod backend;
mod rows;

pub(super) use backend::bind;
pub use backend::{Arg, Backend};
pub use rows::StoreRow;
use rows::*;

/// A store over one sqlx pool; `SqliteStore` and `PgStore` name the two.
pub struct SqlStore<DB: Database> {
    pub(super) pool: Pool<DB>,
}

impl<DB: Database> SqlStore<DB> {
    /// Close the pool: every later call fails as if the database were gone.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Change rows are kept this long (a follower further behind has restarted
/// and begins at the newest row anyway).
const KEEP_CHANGES_MS: i64 = 7 * 86_400_000;

/// A unique violation means `what`; other errors keep their meaning.
fn conflict_means(what: &str) -> impl FnOnce(StoreError) -> StoreError + '_ {
    move |e| match e {
        StoreError::Conflict(_) => StoreError::Conflict(what.into()),
        other => other,
    }
}

async fn write_audit<DB: Backend>(conn: &mut DB::Connection, audit: &Audit) -> StoreResult<()> {
    let detail = audit.detail.to_string();
    DB::execute(
        conn,
        "INSERT INTO audit_log (at, actor, action, target, detail) VALUES ($1, $2, $3, $4, $5)",
        args![now(), &audit.actor, audit.action, &audit.target, &detail],
    )
    .await?;
    Ok(())
}

/// Append to the change feed; call it last in the transaction, just before
/// commit, since a backend may serialize changes from here to the commit.
async fn write_change<DB: Backend>(
    conn: &mut DB::Connection,
    kind: ChangeKind,
    target: &str,
) -> StoreResult<()> {
    DB::before_change(conn).await?;
    let at_ms = now_ms();
    let row = DB::fetch_optional(
        conn,
        "INSERT INTO changes (at, at_ms, kind, target) VALUES ($1, $2, $3, $4) RETURNING seq",
        args![at_ms / 1000, at_ms, kind.as_str(), target],
    )
    .await?
    .ok_or_else(|| StoreError::Unavailable("the change row was not written".into()))?;
    let seq = row.int("seq")?;
    // Pruning scans the table: once in a while is enough.
    if seq % 64 == 0 {
        DB::execute(
            conn,
            "DELETE FROM changes WHERE at_ms < $1",
            args![at_ms - KEEP_CHANGES_MS],
        )
        .await?;
    }
    DB::after_change(conn, seq).await
}

/// Lock the client's row for the rest of the transaction and make sure it is
/// active. The no-op update takes PostgreSQL's row lock (and SQLite's write
/// lock) in both dialects, so a concurrent revoke either waits for this
/// transaction and then removes what it added, or commits first and this
/// sees `revoked`: revocation stays final.
async fn lock_active_client<DB: Backend>(
    conn: &mut DB::Connection,
    client_id: &str,
) -> StoreResult<()> {
    let row = DB::fetch_optional(
        conn,
        "UPDATE clients SET status = status WHERE id = $1 RETURNING status",
        args![client_id],
    )
    .await?
    .ok_or(StoreError::NotFound)?;
    match row.text("status")?.as_str() {
        "active" => Ok(()),
        _ => Err(StoreError::Conflict("the client is revoked".into())),
    }
}

async fn insert_key<DB: Backend>(conn: &mut DB::Connection, k: &NewApiKey) -> StoreResult<()> {
    DB::execute(
        conn,
        "INSERT INTO api_keys (id, client_id, name, prefix, hash, created_at, expires_at, last_used_at, use_count, status) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, 0, 'active')",
        args![&k.id, &k.client_id, &k.name, &k.prefix, &k.hash, k.created_at, k.expires_at],
    )
    .await?;
    Ok(())
}

async fn insert_secret<DB: Backend>(conn: &mut DB::Connection, s: &NewSecret) -> StoreResult<()> {
    DB::execute(
        conn,
        "INSERT INTO client_secrets (id, client_id, hash, created_at, expires_at) VALUES ($1, $2, $3, $4, NULL)",
        args![&s.id, &s.client_id, &s.hash, s.created_at],
    )
    .await?;
    Ok(())
}

async fn insert_signing_key<DB: Backend>(
    conn: &mut DB::Connection,
    key: &SigningKey,
) -> StoreResult<()> {
    let jwk = key.public_jwk.to_string();
    DB::execute(
        conn,
        "INSERT INTO signing_keys (kid, algorithm, private_key, public_jwk, created_at, retired_at) VALUES ($1, $2, $3, $4, $5, $6)",
        args![&key.kid, &key.algorithm, &key.private_pem, &jwk, key.created_at, key.retired_at],
    )
    .await?;
    write_change::<DB>(conn, ChangeKind::SigningKey, &key.kid).await
}

async fn get_client<DB: Backend>(conn: &mut DB::Connection, id: &str) -> StoreResult<Client> {
    let row = DB::fetch_optional(
        conn,
        &format!("SELECT {CLIENT_COLS} FROM clients WHERE id = $1"),
        args![id],
    )
    .await?
    .ok_or(StoreError::NotFound)?;
    client_from(&row)
}

async fn get_account<DB: Backend>(conn: &mut DB::Connection, id: &str) -> StoreResult<Account> {
    let row = DB::fetch_optional(
        conn,
        &format!("SELECT {ACCOUNT_COLS} FROM accounts WHERE id = $1"),
        args![id],
    )
    .await?
    .ok_or(StoreError::NotFound)?;
    account_from(&row)
}

async fn get_api_key<DB: Backend>(conn: &mut DB::Connection, id: &str) -> StoreResult<ApiKey> {
    let row = DB::fetch_optional(
        conn,
        &format!("SELECT {KEY_COLS} FROM api_keys WHERE id = $1"),
        args![id],
    )
    .await?
    .ok_or(StoreError::NotFound)?;
    key_from(&row, now())
}

async fn get_subscription<DB: Backend>(
    conn: &mut DB::Connection,
    id: &str,
) -> StoreResult<Subscription> {
    let row = DB::fetch_optional(
        conn,
        &format!("SELECT {SUB_COLS} FROM subscriptions WHERE id = $1"),
        args![id],
    )
    .await?
    .ok_or(StoreError::NotFound)?;
    sub_from(&row)
}

impl<DB: Backend> SqlStore<DB> {
    async fn conn(&self) -> StoreResult<PoolConnection<DB>> {
        Ok(self.pool.acquire().await?)
    }

    async fn write(&self) -> StoreResult<Transaction<'static, DB>> {
        Ok(self.pool.begin_with(DB::BEGIN_WRITE).await?)
    }

    /// Add batched uses (`use_count`, `last_used_at`) to the rows of
    /// `table` (`api_keys` or `client_secrets`), by id, in one transaction.
    async fn add_uses(&self, table: &str, usage: &HashMap<String, KeyUsage>) -> StoreResult<()> {
        let sql = format!(
            "UPDATE {table} SET use_count = use_count + $1, \
             last_used_at = CASE WHEN last_used_at IS NULL OR last_used_at < $2 THEN $2 ELSE last_used_at END \
             WHERE id = $3"
        );
        let mut tx = self.write().await?;
        for (id, u) in usage {
            DB::execute(&mut tx, &sql, args![u.count, u.last_used_at, id]).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

#[async_trait]
impl<DB: Backend> Store for SqlStore<DB> {
    async fn ping(&self) -> StoreResult<()> {
        DB::fetch_optional(&mut *self.conn().await?, "SELECT 1", &[]).await?;
        Ok(())
    }

    async fn insert_client(&self, new: NewClient, audit: Audit) -> StoreResult<()> {
        let c = &new.client;
        let scopes = scopes_to_text(&c.scopes);
        let cidrs = scopes_to_text(&c.allowed_cidrs);
        let referers = scopes_to_text(&c.allowed_referers);
        let mut tx = self.write().await?;
        DB::execute(
            &mut tx,
            "INSERT INTO clients (id, name, description, auth_type, scopes, issuer, external_id, status, created_at, revoked_at, account_id, \
             allowed_cidrs, allowed_referers) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
            args![
                &c.id,
                &c.name,
                &c.description,
                c.auth_type.as_str(),
                &scopes,
                &c.issuer,
                &c.external_id,
                c.status.as_str(),
                c.created_at,
                c.revoked_at,
                &c.account_id,
                &cidrs,
                &referers
            ],
        )
        .await
        .map_err(conflict_means(
            "a client with this issuer and external_id exists",
        ))?;
        if let Some(s) = &new.secret {
            insert_secret::<DB>(&mut tx, s).await?;
        }
        if let Some(k) = &new.key {
            insert_key::<DB>(&mut tx, k).await?;
        }
        write_audit::<DB>(&mut tx, &audit).await?;
        // An external client may have been looked up (and cached as unknown).
        write_change::<DB>(&mut tx, ChangeKind::Client, &c.id).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn get_client(&self, id: &str) -> StoreResult<Client> {
        get_client::<DB>(&mut *self.conn().await?, id).await
    }

    async fn list_clients(
        &self,
        status: Option<Status>,
        account_id: Option<&str>,
    ) -> StoreResult<Vec<Client>> {
        let rows = DB::fetch_all(
            &mut *self.conn().await?,
            &format!(
                "SELECT {CLIENT_COLS} FROM clients WHERE ($1 IS NULL OR status = $1) \
                 AND ($2 IS NULL OR account_id = $2) ORDER BY created_at, id"
            ),
            args![status.map(Status::as_str), account_id],
        )
        .await?;
        rows.iter().map(client_from).collect()
    }

    async fn update_client(
        &self,
        id: &str,
        patch: ClientPatch,
        audit: Audit,
    ) -> StoreResult<Client> {
        let scopes = patch.scopes.as_deref().map(scopes_to_text);
        let cidrs = patch.allowed_cidrs.as_deref().map(scopes_to_text);
        let referers = patch.allowed_referers.as_deref().map(scopes_to_text);
        let mut tx = self.write().await?;
        // One statement, so a concurrent update or revoke cannot interleave.
        let row = DB::fetch_optional(
            &mut tx,
            &format!(
                "UPDATE clients SET name = COALESCE($1, name), description = COALESCE($2, description), \
                 scopes = COALESCE($3, scopes), allowed_cidrs = COALESCE($5, allowed_cidrs), \
                 allowed_referers = COALESCE($6, allowed_referers) \
                 WHERE id = $4 AND status = 'active' RETURNING {CLIENT_COLS}"
            ),
            args![&patch.name, &patch.description, &scopes, id, &cidrs, &referers],
        )
        .await?;
        let Some(row) = row else {
            get_client::<DB>(&mut tx, id).await?;
            return Err(StoreError::Conflict("the client is revoked".into()));
        };
        let client = client_from(&row)?;
        write_audit::<DB>(&mut tx, &audit).await?;
        write_change::<DB>(&mut tx, ChangeKind::Client, id).await?;
        tx.commit().await?;
        Ok(client)
    }

    async fn revoke_client(&self, id: &str, at: Timestamp, audit: Audit) -> StoreResult<Client> {
        let mut tx = self.write().await?;
        let row = DB::fetch_optional(
            &mut tx,
            &format!(
                "UPDATE clients SET status = 'revoked', revoked_at = $1 WHERE id = $2 AND status = 'active' \
                 RETURNING {CLIENT_COLS}"
            ),
            args![at, id],
        )
        .await?;
        let Some(row) = row else {
            get_client::<DB>(&mut tx, id).await?;
            return Err(StoreError::Conflict("the client is already revoked".into()));
        };
        let client = client_from(&row)?;
        for sql in [
            "DELETE FROM subscriptions WHERE client_id = $1",
            "UPDATE api_keys SET status = 'revoked' WHERE client_id = $1",
            "DELETE FROM client_secrets WHERE client_id = $1",
        ] {
            DB::execute(&mut tx, sql, args![id]).await?;
        }
        write_audit::<DB>(&mut tx, &audit).await?;
        write_change::<DB>(&mut tx, ChangeKind::Client, id).await?;
        tx.commit().await?;
        Ok(client)
    }

    async fn replace_secret(
        &self,
        secret: NewSecret,
        old_valid_until: Option<Timestamp>,
        audit: Audit,
    ) -> StoreResult<()> {
        let mut tx = self.write().await?;
        lock_active_client::<DB>(&mut tx, &secret.client_id).await?;
        match old_valid_until {
            Some(until) => {
                DB::execute(
                    &mut tx,
                    "UPDATE client_secrets SET expires_at = $1 WHERE client_id = $2 AND (expires_at IS NULL OR expires_at > $1)",
                    args![until, &secret.client_id],
                )
                .await?;
            }
            None => {
                DB::execute(
                    &mut tx,
                    "DELETE FROM client_secrets WHERE client_id = $1",
                    args![&secret.client_id],
                )
                .await?;
            }
        }
        insert_secret::<DB>(&mut tx, &secret).await?;
        write_audit::<DB>(&mut tx, &audit).await?;
        write_change::<DB>(&mut tx, ChangeKind::Client, &secret.client_id).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn secret_hashes(
        &self,
        client_id: &str,
        at: Timestamp,
    ) -> StoreResult<Vec<(String, String)>> {
        let rows = DB::fetch_all(
            &mut *self.conn().await?,
            "SELECT id, hash FROM client_secrets WHERE client_id = $1 AND (expires_at IS NULL OR expires_at > $2)",
            args![client_id, at],
        )
        .await?;
        rows.iter()
            .map(|r| Ok((r.text("id")?, r.text("hash")?)))
            .collect()
    }

    async fn list_secrets(&self, client_id: &str) -> StoreResult<Vec<ClientSecret>> {
        let rows = DB::fetch_all(
            &mut *self.conn().await?,
            &format!(
                "SELECT {SECRET_COLS} FROM client_secrets WHERE client_id = $1 ORDER BY created_at DESC, id"
            ),
            args![client_id],
        )
        .await?;
        rows.iter().map(secret_from).collect()
    }

    async fn record_secret_usage(&self, usage: &HashMap<String, KeyUsage>) -> StoreResult<()> {
        self.add_uses("client_secrets", usage).await
    }

    async fn insert_api_key(&self, key: NewApiKey, audit: Audit) -> StoreResult<ApiKey> {
        let mut tx = self.write().await?;
        lock_active_client::<DB>(&mut tx, &key.client_id).await?;
        insert_key::<DB>(&mut tx, &key).await?;
        write_audit::<DB>(&mut tx, &audit).await?;
        let created = get_api_key::<DB>(&mut tx, &key.id).await?;
        tx.commit().await?;
        Ok(created)
    }

    async fn get_api_key(&self, id: &str) -> StoreResult<ApiKey> {
        get_api_key::<DB>(&mut *self.conn().await?, id).await
    }

    async fn list_api_keys(&self, client_id: &str) -> StoreResult<Vec<ApiKey>> {
        let rows = DB::fetch_all(
            &mut *self.conn().await?,
            &format!(
                "SELECT {KEY_COLS} FROM api_keys WHERE client_id = $1 ORDER BY created_at, id"
            ),
            args![client_id],
        )
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
        let mut tx = self.write().await?;
        let client_id = DB::fetch_optional(
            &mut tx,
            "SELECT client_id FROM api_keys WHERE id = $1",
            args![id],
        )
        .await?
        .ok_or(StoreError::NotFound)?
        .text("client_id")?;
        if status == Status::Active {
            lock_active_client::<DB>(&mut tx, &client_id)
                .await
                .map_err(conflict_means("the key's client is revoked"))?;
        }
        DB::execute(
            &mut tx,
            "UPDATE api_keys SET status = $1, expires_at = $2 WHERE id = $3",
            args![status.as_str(), expires_at, id],
        )
        .await?;
        write_audit::<DB>(&mut tx, &audit).await?;
        let key = get_api_key::<DB>(&mut tx, id).await?;
        write_change::<DB>(&mut tx, ChangeKind::Client, &client_id).await?;
        tx.commit().await?;
        Ok(key)
    }

    async fn roll_api_key(
        &self,
        old_id: &str,
        new: NewApiKey,
        old_expires_at: Timestamp,
        audit: Audit,
    ) -> StoreResult<ApiKey> {
        let mut tx = self.write().await?;
        lock_active_client::<DB>(&mut tx, &new.client_id)
            .await
            .map_err(conflict_means("the key's client is revoked"))?;
        // one statement: a concurrent revoke either ran before (no row) or waits
        let rolled = DB::execute(
            &mut tx,
            "UPDATE api_keys SET replaced_by = $1, \
             expires_at = CASE WHEN expires_at IS NULL OR expires_at > $2 THEN $2 ELSE expires_at END \
             WHERE id = $3 AND client_id = $4 AND status = 'active'",
            args![&new.id, old_expires_at, old_id, &new.client_id],
        )
        .await?;
        if rolled == 0 {
            get_api_key::<DB>(&mut tx, old_id).await?;
            return Err(StoreError::Conflict("the key is revoked".into()));
        }
        insert_key::<DB>(&mut tx, &new).await?;
        write_audit::<DB>(&mut tx, &audit).await?;
        let created = get_api_key::<DB>(&mut tx, &new.id).await?;
        write_change::<DB>(&mut tx, ChangeKind::Client, &new.client_id).await?;
        tx.commit().await?;
        Ok(created)
    }

    async fn expiring_api_keys(
        &self,
        from: Timestamp,
        until: Timestamp,
    ) -> StoreResult<Vec<ApiKey>> {
        let rows = DB::fetch_all(
            &mut *self.conn().await?,
            &format!(
                "SELECT {KEY_COLS} FROM api_keys WHERE status = 'active' AND expires_at > $1 AND expires_at <= $2 \
                 ORDER BY expires_at, id"
            ),
            args![from, until],
        )
        .await?;
        rows.iter().map(|r| key_from(r, from)).collect()
    }

    async fn count_expiring_api_keys(&self, from: Timestamp, until: Timestamp) -> StoreResult<i64> {
        let row = DB::fetch_optional(
            &mut *self.conn().await?,
            "SELECT COUNT(*) AS n FROM api_keys WHERE status = 'active' AND expires_at > $1 AND expires_at <= $2",
            args![from, until],
        )
        .await?;
        row.map_or(Ok(0), |r| r.int("n"))
    }

    async fn find_api_key(&self, hash: &str) -> StoreResult<Option<(ApiKey, Client)>> {
        let mut conn = self.conn().await?;
        let Some(row) = DB::fetch_optional(
            &mut conn,
            &format!("SELECT {KEY_COLS} FROM api_keys WHERE hash = $1"),
            args![hash],
        )
        .await?
        else {
            return Ok(None);
        };
        let key = key_from(&row, now())?;
        let client = get_client::<DB>(&mut conn, &key.client_id).await?;
        Ok(Some((key, client)))
    }

    async fn record_usage(&self, usage: &HashMap<String, KeyUsage>) -> StoreResult<()> {
        self.add_uses("api_keys", usage).await
    }

    async fn insert_subscription(&self, sub: Subscription, audit: Audit) -> StoreResult<()> {
        let mut tx = self.write().await?;
        lock_active_client::<DB>(&mut tx, &sub.client_id).await?;
        DB::execute(
            &mut tx,
            "INSERT INTO subscriptions (id, client_id, service, plan, status, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
            args![&sub.id, &sub.client_id, &sub.service, &sub.plan, sub.status.as_str(), sub.created_at],
        )
        .await
        .map_err(conflict_means(
            "the client is already subscribed to this service",
        ))?;
        write_audit::<DB>(&mut tx, &audit).await?;
        write_change::<DB>(&mut tx, ChangeKind::Client, &sub.client_id).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn list_subscriptions(&self, client_id: Option<&str>) -> StoreResult<Vec<Subscription>> {
        let mut conn = self.conn().await?;
        let rows = match client_id {
            Some(c) => {
                DB::fetch_all(
                    &mut conn,
                    &format!(
                        "SELECT {SUB_COLS} FROM subscriptions WHERE client_id = $1 ORDER BY created_at, id"
                    ),
                    args![c],
                )
                .await?
            }
            None => {
                DB::fetch_all(
                    &mut conn,
                    &format!("SELECT {SUB_COLS} FROM subscriptions ORDER BY created_at, id"),
                    &[],
                )
                .await?
            }
        };
        rows.iter().map(sub_from).collect()
    }

    async fn get_subscription(&self, id: &str) -> StoreResult<Subscription> {
        get_subscription::<DB>(&mut *self.conn().await?, id).await
    }

    async fn delete_subscription(
        &self,
        id: &str,
        only: Option<SubscriptionStatus>,
        audit: Audit,
    ) -> StoreResult<Subscription> {
        let mut tx = self.write().await?;
        let sub = get_subscription::<DB>(&mut tx, id).await?;
        // the status is checked in the delete itself: a concurrent approval
        // either commits first (nothing deleted) or waits for this one
        let deleted = DB::execute(
            &mut tx,
            "DELETE FROM subscriptions WHERE id = $1 AND ($2 IS NULL OR status = $2)",
            args![id, only.map(SubscriptionStatus::as_str)],
        )
        .await?;
        if deleted == 0 {
            return match (only, get_subscription::<DB>(&mut tx, id).await) {
                (Some(status), Ok(_)) => Err(StoreError::Conflict(format!(
                    "the subscription is not {}",
                    status.as_str()
                ))),
                // deleted by a concurrent call since the read
                _ => Err(StoreError::NotFound),
            };
        }
        write_audit::<DB>(&mut tx, &audit).await?;
        write_change::<DB>(&mut tx, ChangeKind::Client, &sub.client_id).await?;
        tx.commit().await?;
        Ok(sub)
    }

    async fn activate_subscription(&self, id: &str, audit: Audit) -> StoreResult<Subscription> {
        let mut tx = self.write().await?;
        let sub = get_subscription::<DB>(&mut tx, id).await?;
        lock_active_client::<DB>(&mut tx, &sub.client_id).await?;
        let updated = DB::execute(
            &mut tx,
            "UPDATE subscriptions SET status = 'active' WHERE id = $1 AND status = 'pending'",
            args![id],
        )
        .await?;
        if updated == 0 {
            return Err(StoreError::Conflict(
                "the subscription is not pending".into(),
            ));
        }
        write_audit::<DB>(&mut tx, &audit).await?;
        let sub = get_subscription::<DB>(&mut tx, id).await?;
        write_change::<DB>(&mut tx, ChangeKind::Client, &sub.client_id).await?;
        tx.commit().await?;
        Ok(sub)
    }

    async fn insert_account(
        &self,
        a: &Account,
        password_hash: Option<&str>,
        audit: Audit,
    ) -> StoreResult<()> {
        let mut tx = self.write().await?;
        DB::execute(
            &mut tx,
            "INSERT INTO accounts (id, username, password_hash, issuer, subject, display_name, email, status, \
             must_change_password, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            args![
                &a.id,
                &a.username,
                password_hash,
                &a.issuer,
                &a.subject,
                &a.display_name,
                &a.email,
                a.status.as_str(),
                i64::from(a.password_change_required),
                a.created_at
            ],
        )
        .await
        .map_err(conflict_means("an account with this username or identity exists"))?;
        write_audit::<DB>(&mut tx, &audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn get_account(&self, id: &str) -> StoreResult<Account> {
        get_account::<DB>(&mut *self.conn().await?, id).await
    }

    async fn list_accounts(&self) -> StoreResult<Vec<Account>> {
        let rows = DB::fetch_all(
            &mut *self.conn().await?,
            &format!("SELECT {ACCOUNT_COLS} FROM accounts ORDER BY created_at, id"),
            &[],
        )
        .await?;
        rows.iter().map(account_from).collect()
    }

    async fn find_account_by_username(
        &self,
        username: &str,
    ) -> StoreResult<Option<(Account, Option<String>)>> {
        let row = DB::fetch_optional(
            &mut *self.conn().await?,
            &format!("SELECT {ACCOUNT_COLS}, password_hash FROM accounts WHERE username = $1"),
            args![username],
        )
        .await?;
        row.map(|r| Ok((account_from(&r)?, r.opt_text("password_hash")?)))
            .transpose()
    }

    async fn find_account_by_identity(
        &self,
        issuer: &str,
        subject: &str,
    ) -> StoreResult<Option<Account>> {
        let row = DB::fetch_optional(
            &mut *self.conn().await?,
            &format!("SELECT {ACCOUNT_COLS} FROM accounts WHERE issuer = $1 AND subject = $2"),
            args![issuer, subject],
        )
        .await?;
        row.as_ref().map(account_from).transpose()
    }

    async fn update_account(
        &self,
        id: &str,
        patch: AccountPatch,
        audit: Audit,
    ) -> StoreResult<Account> {
        let mut tx = self.write().await?;
        let row = DB::fetch_optional(
            &mut tx,
            &format!(
                "UPDATE accounts SET display_name = COALESCE($1, display_name), email = COALESCE($2, email), \
                 status = COALESCE($3, status) WHERE id = $4 RETURNING {ACCOUNT_COLS}"
            ),
            args![
                &patch.display_name,
                &patch.email,
                patch.status.map(AccountStatus::as_str),
                id
            ],
        )
        .await?
        .ok_or(StoreError::NotFound)?;
        let account = account_from(&row)?;
        if account.status == AccountStatus::Disabled {
            DB::execute(
                &mut tx,
                "DELETE FROM portal_sessions WHERE account_id = $1",
                args![id],
            )
            .await?;
        }
        write_audit::<DB>(&mut tx, &audit).await?;
        tx.commit().await?;
        Ok(account)
    }

    async fn set_account_password(
        &self,
        id: &str,
        password_hash: &str,
        must_change: bool,
        keep_session: Option<&str>,
        audit: Audit,
    ) -> StoreResult<()> {
        let mut tx = self.write().await?;
        let updated = DB::execute(
            &mut tx,
            "UPDATE accounts SET password_hash = $1, must_change_password = $2 WHERE id = $3 AND username IS NOT NULL",
            args![password_hash, i64::from(must_change), id],
        )
        .await?;
        if updated == 0 {
            get_account::<DB>(&mut tx, id).await?;
            return Err(StoreError::Conflict(
                "the account signs in through its identity provider and has no password".into(),
            ));
        }
        DB::execute(
            &mut tx,
            "DELETE FROM portal_sessions WHERE account_id = $1 AND ($2 IS NULL OR id <> $2)",
            args![id, keep_session],
        )
        .await?;
        if let Some(kept) = keep_session {
            // the session that changed the password may now do everything
            DB::execute(
                &mut tx,
                "UPDATE portal_sessions SET password_change = 0 WHERE id = $1",
                args![kept],
            )
            .await?;
        }
        write_audit::<DB>(&mut tx, &audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn insert_session(&self, s: &PortalSession) -> StoreResult<()> {
        let mut tx = self.write().await?;
        // expired sessions of this account go with each sign-in
        DB::execute(
            &mut tx,
            "DELETE FROM portal_sessions WHERE account_id = $1 AND expires_at <= $2",
            args![&s.account_id, s.created_at],
        )
        .await?;
        DB::execute(
            &mut tx,
            "INSERT INTO portal_sessions (hash, id, account_id, created_at, expires_at, password_change) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            args![
                &s.hash,
                &s.id,
                &s.account_id,
                s.created_at,
                s.expires_at,
                i64::from(s.password_change)
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn find_session(
        &self,
        hash: &str,
        at: Timestamp,
    ) -> StoreResult<Option<(PortalSession, Account)>> {
        let mut conn = self.conn().await?;
        let Some(row) = DB::fetch_optional(
            &mut conn,
            &format!(
                "SELECT {SESSION_COLS} FROM portal_sessions WHERE hash = $1 AND expires_at > $2"
            ),
            args![hash, at],
        )
        .await?
        else {
            return Ok(None);
        };
        let session = session_from(&row)?;
        let account = get_account::<DB>(&mut conn, &session.account_id).await?;
        if account.status != AccountStatus::Active {
            return Ok(None);
        }
        Ok(Some((session, account)))
    }

    async fn delete_session(&self, hash: &str) -> StoreResult<()> {
        let mut tx = self.write().await?;
        DB::execute(
            &mut tx,
            "DELETE FROM portal_sessions WHERE hash = $1",
            args![hash],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn list_audit(&self, limit: i64) -> StoreResult<Vec<AuditEntry>> {
        let rows = DB::fetch_all(
            &mut *self.conn().await?,
            "SELECT id, at, actor, action, target, detail FROM audit_log ORDER BY id DESC LIMIT $1",
            args![limit],
        )
        .await?;
        rows.iter().map(audit_from).collect()
    }

    async fn find_external_client(
        &self,
        issuer: &str,
        external_id: &str,
    ) -> StoreResult<Option<Client>> {
        let row = DB::fetch_optional(
            &mut *self.conn().await?,
            &format!("SELECT {CLIENT_COLS} FROM clients WHERE issuer = $1 AND external_id = $2"),
            args![issuer, external_id],
        )
        .await?;
        row.as_ref().map(client_from).transpose()
    }

    async fn list_signing_keys(&self) -> StoreResult<Vec<SigningKey>> {
        let rows = DB::fetch_all(
            &mut *self.conn().await?,
            "SELECT kid, algorithm, private_key, public_jwk, created_at, retired_at FROM signing_keys \
             ORDER BY created_at DESC, kid",
            &[],
        )
        .await?;
        rows.iter().map(signing_key_from).collect()
    }

    async fn insert_signing_key(&self, key: &SigningKey) -> StoreResult<()> {
        let mut tx = self.write().await?;
        insert_signing_key::<DB>(&mut tx, key).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn rotate_signing_key(
        &self,
        key: &SigningKey,
        at: Timestamp,
        audit: Audit,
    ) -> StoreResult<()> {
        let mut tx = self.write().await?;
        DB::execute(
            &mut tx,
            "UPDATE signing_keys SET retired_at = $1 WHERE retired_at IS NULL",
            args![at],
        )
        .await?;
        write_audit::<DB>(&mut tx, &audit).await?;
        insert_signing_key::<DB>(&mut tx, key).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn changes_since(&self, after_seq: i64, limit: i64) -> StoreResult<Vec<Change>> {
        let rows = DB::fetch_all(
            &mut *self.conn().await?,
            "SELECT seq, at_ms, kind, target FROM changes WHERE seq > $1 ORDER BY seq LIMIT $2",
            args![after_seq, limit],
        )
        .await?;
        rows.iter().map(change_from).collect()
    }

    async fn last_change_seq(&self) -> StoreResult<i64> {
        let row = DB::fetch_optional(
            &mut *self.conn().await?,
            "SELECT COALESCE(MAX(seq), 0) AS seq FROM changes",
            &[],
        )
        .await?;
        row.map_or(Ok(0), |r| r.int("seq"))
    }

    async fn revoke_token(&self, jti: &str, expires_at: Timestamp) -> StoreResult<()> {
        let mut tx = self.write().await?;
        // Tokens past their expiry are refused anyway: their rows can go.
        DB::execute(
            &mut tx,
            "DELETE FROM revoked_tokens WHERE expires_at <= $1",
            args![now()],
        )
        .await?;
        let inserted = DB::execute(
            &mut tx,
            "INSERT INTO revoked_tokens (jti, expires_at) VALUES ($1, $2) ON CONFLICT (jti) DO NOTHING",
            args![jti, expires_at],
        )
        .await?;
        // Revoking again changes nothing, so nothing is announced.
        if inserted > 0 {
            write_change::<DB>(&mut tx, ChangeKind::Token, jti).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn revoked_tokens(&self, at: Timestamp) -> StoreResult<Vec<(String, Timestamp)>> {
        let rows = DB::fetch_all(
            &mut *self.conn().await?,
            "SELECT jti, expires_at FROM revoked_tokens WHERE expires_at > $1 ORDER BY jti",
            args![at],
        )
        .await?;
        rows.iter()
            .map(|r| Ok((r.text("jti")?, r.int("expires_at")?)))
            .collect()
    }

    async fn add_usage(&self, deltas: &[UsageBucket]) -> StoreResult<()> {
        let mut tx = self.write().await?;
        for d in deltas {
            DB::execute(
                &mut tx,
                "INSERT INTO usage_buckets (client_id, key_id, service, bucket_start, c2xx, c3xx, c4xx, c429, c5xx) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                 ON CONFLICT (client_id, key_id, service, bucket_start) DO UPDATE SET \
                 c2xx = usage_buckets.c2xx + excluded.c2xx, c3xx = usage_buckets.c3xx + excluded.c3xx, \
                 c4xx = usage_buckets.c4xx + excluded.c4xx, c429 = usage_buckets.c429 + excluded.c429, \
                 c5xx = usage_buckets.c5xx + excluded.c5xx",
                args![
                    &d.client_id,
                    &d.key_id,
                    &d.service,
                    d.start,
                    d.c2xx,
                    d.c3xx,
                    d.c4xx,
                    d.c429,
                    d.c5xx
                ],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn client_usage(
        &self,
        client_id: &str,
        from: Timestamp,
        to: Timestamp,
    ) -> StoreResult<Vec<UsageBucket>> {
        let rows = DB::fetch_all(
            &mut *self.conn().await?,
            &format!(
                "SELECT {USAGE_COLS} FROM usage_buckets WHERE client_id = $1 AND bucket_start >= $2 \
                 AND bucket_start < $3 ORDER BY bucket_start, service, key_id"
            ),
            args![client_id, from, to],
        )
        .await?;
        rows.iter().map(usage_from).collect()
    }

    async fn prune_usage(&self, before: Timestamp) -> StoreResult<u64> {
        let mut tx = self.write().await?;
        let n = DB::execute(
            &mut tx,
            "DELETE FROM usage_buckets WHERE bucket_start < $1",
            args![before],
        )
        .await?;
        tx.commit().await?;
        Ok(n)
    }

    async fn add_quota_usage(&self, deltas: &[QuotaDelta]) -> StoreResult<()> {
        let mut tx = self.write().await?;
        for d in deltas {
            DB::execute(
                &mut tx,
                "INSERT INTO quota_usage (counter, window_start, window_end, count) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (counter, window_start) DO UPDATE SET count = quota_usage.count + excluded.count",
                args![&d.counter, d.window_start, d.window_end, d.delta],
            )
            .await?;
        }
        DB::execute(
            &mut tx,
            "DELETE FROM quota_usage WHERE window_end <= $1",
            args![now()],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn quota_usage(&self, at: Timestamp) -> StoreResult<Vec<QuotaDelta>> {
        let rows = DB::fetch_all(
            &mut *self.conn().await?,
            "SELECT counter, window_start, window_end, count FROM quota_usage WHERE window_end > $1 \
             ORDER BY counter, window_start",
            args![at],
        )
        .await?;
        rows.iter().map(quota_from).collect()
    }
}
