-- The schema of migrations/sqlite (0001 and 0002) for PostgreSQL: the same
-- tables and columns, so one set of SQL serves both. Timestamps are Unix
-- seconds (BIGINT) except changes.at_ms; hashes are hex HMAC-SHA256.
CREATE TABLE clients (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    auth_type   TEXT NOT NULL CHECK (auth_type IN ('api_key', 'oauth2', 'external')),
    scopes      TEXT NOT NULL DEFAULT '',
    issuer      TEXT,
    external_id TEXT,
    status      TEXT NOT NULL CHECK (status IN ('active', 'revoked')),
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);
CREATE UNIQUE INDEX clients_external ON clients (issuer, external_id) WHERE issuer IS NOT NULL;
CREATE INDEX clients_status ON clients (status);

CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    client_id    TEXT NOT NULL REFERENCES clients (id),
    name         TEXT NOT NULL,
    prefix       TEXT NOT NULL,
    hash         TEXT NOT NULL UNIQUE,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT,
    last_used_at BIGINT,
    use_count    BIGINT NOT NULL DEFAULT 0,
    status       TEXT NOT NULL CHECK (status IN ('active', 'revoked'))
);
CREATE INDEX api_keys_client ON api_keys (client_id);

CREATE TABLE client_secrets (
    id         TEXT PRIMARY KEY,
    client_id  TEXT NOT NULL REFERENCES clients (id),
    hash       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    -- a replaced secret keeps working until then (rotation grace period)
    expires_at BIGINT
);
CREATE INDEX client_secrets_client ON client_secrets (client_id);

CREATE TABLE subscriptions (
    id         TEXT PRIMARY KEY,
    client_id  TEXT NOT NULL REFERENCES clients (id),
    service    TEXT NOT NULL,
    plan       TEXT,
    created_at BIGINT NOT NULL,
    UNIQUE (client_id, service)
);

CREATE TABLE audit_log (
    id     BIGSERIAL PRIMARY KEY,
    at     BIGINT NOT NULL,
    actor  TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '{}'
);

CREATE TABLE signing_keys (
    kid         TEXT PRIMARY KEY,
    algorithm   TEXT NOT NULL,
    private_key TEXT NOT NULL,
    public_jwk  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    retired_at  BIGINT
);

-- Written only under LOCK TABLE changes IN EXCLUSIVE MODE, so seq order is
-- commit order (see src/store/postgres.rs).
CREATE TABLE changes (
    seq    BIGSERIAL PRIMARY KEY,
    at     BIGINT NOT NULL,
    kind   TEXT NOT NULL,
    target TEXT NOT NULL,
    at_ms  BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE revoked_tokens (
    jti        TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);

CREATE TABLE quota_usage (
    counter      TEXT NOT NULL,
    window_start BIGINT NOT NULL,
    window_end   BIGINT NOT NULL,
    count        BIGINT NOT NULL,
    PRIMARY KEY (counter, window_start)
);
