-- The change feed gets a millisecond timestamp (lag measurement), and two
-- tables that several nodes share: revoked tokens and quota usage.
ALTER TABLE changes ADD COLUMN at_ms INTEGER NOT NULL DEFAULT 0;

CREATE TABLE revoked_tokens (
    jti        TEXT PRIMARY KEY,
    -- the token's own expiry: after it the row is useless and may go
    expires_at INTEGER NOT NULL
);

CREATE TABLE quota_usage (
    counter      TEXT NOT NULL,
    window_start INTEGER NOT NULL,
    window_end   INTEGER NOT NULL,
    count        INTEGER NOT NULL,
    PRIMARY KEY (counter, window_start)
);
