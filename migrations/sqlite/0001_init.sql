-- Clients, credentials, subscriptions and the audit log. Timestamps are
-- Unix seconds; hashes are hex HMAC-SHA256 (never the secret itself).
CREATE TABLE clients (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    auth_type   TEXT NOT NULL CHECK (auth_type IN ('api_key', 'oauth2', 'external')),
    scopes      TEXT NOT NULL DEFAULT '',
    issuer      TEXT,
    external_id TEXT,
    status      TEXT NOT NULL CHECK (status IN ('active', 'revoked')),
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);
CREATE UNIQUE INDEX clients_external ON clients (issuer, external_id) WHERE issuer IS NOT NULL;
CREATE INDEX clients_status ON clients (status);

CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    client_id    TEXT NOT NULL REFERENCES clients (id),
    name         TEXT NOT NULL,
    prefix       TEXT NOT NULL,
    hash         TEXT NOT NULL UNIQUE,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER,
    last_used_at INTEGER,
    use_count    INTEGER NOT NULL DEFAULT 0,
    status       TEXT NOT NULL CHECK (status IN ('active', 'revoked'))
);
CREATE INDEX api_keys_client ON api_keys (client_id);

CREATE TABLE client_secrets (
    id         TEXT PRIMARY KEY,
    client_id  TEXT NOT NULL REFERENCES clients (id),
    hash       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    -- a replaced secret keeps working until then (rotation grace period)
    expires_at INTEGER
);
CREATE INDEX client_secrets_client ON client_secrets (client_id);

CREATE TABLE subscriptions (
    id         TEXT PRIMARY KEY,
    client_id  TEXT NOT NULL REFERENCES clients (id),
    service    TEXT NOT NULL,
    plan       TEXT,
    created_at INTEGER NOT NULL,
    UNIQUE (client_id, service)
);

CREATE TABLE audit_log (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    at     INTEGER NOT NULL,
    actor  TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '{}'
);

-- token-signing keys (the token endpoint) and the change feed (several nodes)
CREATE TABLE signing_keys (
    kid         TEXT PRIMARY KEY,
    algorithm   TEXT NOT NULL,
    private_key TEXT NOT NULL,
    public_jwk  TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    retired_at  INTEGER
);

CREATE TABLE changes (
    seq    INTEGER PRIMARY KEY AUTOINCREMENT,
    at     INTEGER NOT NULL,
    kind   TEXT NOT NULL,
    target TEXT NOT NULL
);
