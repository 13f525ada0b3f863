-- Accounts (the people who consume the APIs), their sign-in sessions, the
-- account that owns a client, and subscriptions waiting for approval.
CREATE TABLE accounts (
    id                   TEXT PRIMARY KEY,
    -- built-in accounts: a username and an Argon2id password hash (PHC string)
    username             TEXT UNIQUE,
    password_hash        TEXT,
    -- accounts of an external issuer: its name and the token's `sub`
    issuer               TEXT,
    subject              TEXT,
    display_name         TEXT NOT NULL DEFAULT '',
    email                TEXT NOT NULL DEFAULT '',
    status               TEXT NOT NULL CHECK (status IN ('active', 'disabled')),
    -- 1 after an admin set a one-time password
    must_change_password INTEGER NOT NULL DEFAULT 0,
    created_at           INTEGER NOT NULL
);
CREATE UNIQUE INDEX accounts_identity ON accounts (issuer, subject) WHERE issuer IS NOT NULL;

CREATE TABLE portal_sessions (
    -- HMAC of the session token, never the token
    hash            TEXT PRIMARY KEY,
    id              TEXT NOT NULL UNIQUE,
    account_id      TEXT NOT NULL REFERENCES accounts (id),
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    -- 1: signed in with a one-time password; only a password change is allowed
    password_change INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX portal_sessions_account ON portal_sessions (account_id);

ALTER TABLE clients ADD COLUMN account_id TEXT REFERENCES accounts (id);
CREATE INDEX clients_account ON clients (account_id);

ALTER TABLE subscriptions ADD COLUMN status TEXT NOT NULL DEFAULT 'active'
    CHECK (status IN ('active', 'pending'));
