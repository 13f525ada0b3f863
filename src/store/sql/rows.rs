//! Rows to model values: columns read by name as text or integers, which
//! serves both drivers' rows alike.

use sqlx::{ColumnIndex, Decode, Row, Type};

use crate::store::*;

/// Columns by name as text or integers: all the conversions below need,
/// so they serve both drivers' rows.
pub trait StoreRow {
    fn text(&self, col: &str) -> StoreResult<String>;
    fn opt_text(&self, col: &str) -> StoreResult<Option<String>>;
    fn int(&self, col: &str) -> StoreResult<i64>;
    fn opt_int(&self, col: &str) -> StoreResult<Option<i64>>;
}

impl<R> StoreRow for R
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
{
    fn text(&self, col: &str) -> StoreResult<String> {
        Ok(self.try_get(col)?)
    }
    fn opt_text(&self, col: &str) -> StoreResult<Option<String>> {
        Ok(self.try_get(col)?)
    }
    fn int(&self, col: &str) -> StoreResult<i64> {
        Ok(self.try_get(col)?)
    }
    fn opt_int(&self, col: &str) -> StoreResult<Option<i64>> {
        Ok(self.try_get(col)?)
    }
}

pub(super) const CLIENT_COLS: &str =
    "id, name, description, auth_type, scopes, issuer, external_id, status, created_at, revoked_at, account_id, \
     allowed_cidrs, allowed_referers";
pub(super) const KEY_COLS: &str =
    "id, client_id, name, prefix, status, created_at, expires_at, last_used_at, use_count, replaced_by";
pub(super) const SECRET_COLS: &str = "id, created_at, expires_at, last_used_at, use_count";
pub(super) const USAGE_COLS: &str =
    "client_id, key_id, service, bucket_start, c2xx, c3xx, c4xx, c429, c5xx";
pub(super) const SUB_COLS: &str = "id, client_id, service, plan, status, created_at";
pub(super) const ACCOUNT_COLS: &str =
    "id, username, issuer, subject, display_name, email, status, must_change_password, created_at";
pub(super) const SESSION_COLS: &str =
    "hash, id, account_id, created_at, expires_at, password_change";

pub(super) fn corrupt(what: &str, value: &str) -> StoreError {
    StoreError::Unavailable(format!("bad {what} {value:?} in the database"))
}

pub(super) fn client_from(row: &impl StoreRow) -> StoreResult<Client> {
    let auth_type = row.text("auth_type")?;
    let status = row.text("status")?;
    Ok(Client {
        id: row.text("id")?,
        name: row.text("name")?,
        description: row.text("description")?,
        auth_type: AuthType::parse(&auth_type).ok_or_else(|| corrupt("auth_type", &auth_type))?,
        scopes: scopes_from_text(&row.text("scopes")?),
        issuer: row.opt_text("issuer")?,
        external_id: row.opt_text("external_id")?,
        status: Status::parse(&status).ok_or_else(|| corrupt("status", &status))?,
        created_at: row.int("created_at")?,
        revoked_at: row.opt_int("revoked_at")?,
        account_id: row.opt_text("account_id")?,
        allowed_cidrs: scopes_from_text(&row.text("allowed_cidrs")?),
        allowed_referers: scopes_from_text(&row.text("allowed_referers")?),
    })
}

pub(super) fn secret_from(row: &impl StoreRow) -> StoreResult<ClientSecret> {
    Ok(ClientSecret {
        id: row.text("id")?,
        created_at: row.int("created_at")?,
        expires_at: row.opt_int("expires_at")?,
        last_used_at: row.opt_int("last_used_at")?,
        use_count: row.int("use_count")?,
    })
}

pub(super) fn usage_from(row: &impl StoreRow) -> StoreResult<UsageBucket> {
    Ok(UsageBucket {
        client_id: row.text("client_id")?,
        key_id: row.text("key_id")?,
        service: row.text("service")?,
        start: row.int("bucket_start")?,
        c2xx: row.int("c2xx")?,
        c3xx: row.int("c3xx")?,
        c4xx: row.int("c4xx")?,
        c429: row.int("c429")?,
        c5xx: row.int("c5xx")?,
    })
}

pub(super) fn key_from(row: &impl StoreRow, at: Timestamp) -> StoreResult<ApiKey> {
    let status = row.text("status")?;
    let expires_at = row.opt_int("expires_at")?;
    let replaced_by = row.opt_text("replaced_by")?;
    let shown = if status == "active" && expires_at.is_some_and(|e| e <= at) {
        "expired".to_string()
    } else if status == "active" && replaced_by.is_some() {
        "expiring".to_string()
    } else {
        status
    };
    Ok(ApiKey {
        id: row.text("id")?,
        client_id: row.text("client_id")?,
        name: row.text("name")?,
        prefix: row.text("prefix")?,
        status: shown,
        created_at: row.int("created_at")?,
        expires_at,
        last_used_at: row.opt_int("last_used_at")?,
        use_count: row.int("use_count")?,
        replaced_by,
    })
}

pub(super) fn sub_from(row: &impl StoreRow) -> StoreResult<Subscription> {
    Ok(Subscription {
        id: row.text("id")?,
        client_id: row.text("client_id")?,
        service: row.text("service")?,
        plan: row.opt_text("plan")?,
        status: {
            let status = row.text("status")?;
            SubscriptionStatus::parse(&status).ok_or_else(|| corrupt("status", &status))?
        },
        created_at: row.int("created_at")?,
    })
}

pub(super) fn account_from(row: &impl StoreRow) -> StoreResult<Account> {
    let status = row.text("status")?;
    Ok(Account {
        id: row.text("id")?,
        username: row.opt_text("username")?,
        issuer: row.opt_text("issuer")?,
        subject: row.opt_text("subject")?,
        display_name: row.text("display_name")?,
        email: row.text("email")?,
        status: AccountStatus::parse(&status).ok_or_else(|| corrupt("status", &status))?,
        password_change_required: row.int("must_change_password")? != 0,
        created_at: row.int("created_at")?,
    })
}

pub(super) fn session_from(row: &impl StoreRow) -> StoreResult<PortalSession> {
    Ok(PortalSession {
        id: row.text("id")?,
        hash: row.text("hash")?,
        account_id: row.text("account_id")?,
        created_at: row.int("created_at")?,
        expires_at: row.int("expires_at")?,
        password_change: row.int("password_change")? != 0,
    })
}

pub(super) fn signing_key_from(row: &impl StoreRow) -> StoreResult<SigningKey> {
    let jwk = row.text("public_jwk")?;
    Ok(SigningKey {
        kid: row.text("kid")?,
        algorithm: row.text("algorithm")?,
        private_pem: row.text("private_key")?,
        public_jwk: serde_json::from_str(&jwk).map_err(|_| corrupt("public_jwk", &jwk))?,
        created_at: row.int("created_at")?,
        retired_at: row.opt_int("retired_at")?,
    })
}

pub(super) fn audit_from(row: &impl StoreRow) -> StoreResult<AuditEntry> {
    Ok(AuditEntry {
        id: row.int("id")?,
        at: row.int("at")?,
        actor: row.text("actor")?,
        action: row.text("action")?,
        target: row.text("target")?,
        detail: serde_json::from_str(&row.text("detail")?).unwrap_or(serde_json::Value::Null),
    })
}

pub(super) fn change_from(row: &impl StoreRow) -> StoreResult<Change> {
    let kind = row.text("kind")?;
    Ok(Change {
        seq: row.int("seq")?,
        at_ms: row.int("at_ms")?,
        kind: ChangeKind::parse(&kind).unwrap_or(ChangeKind::Other),
        target: row.text("target")?,
    })
}

pub(super) fn quota_from(row: &impl StoreRow) -> StoreResult<QuotaDelta> {
    Ok(QuotaDelta {
        counter: row.text("counter")?,
        window_start: row.int("window_start")?,
        window_end: row.int("window_end")?,
        delta: row.int("count")?,
    })
}
