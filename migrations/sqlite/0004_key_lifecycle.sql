-- Keys rolled with a grace period, use of each client secret, where a
-- client's credentials may be used from, and usage over time.
ALTER TABLE api_keys ADD COLUMN replaced_by TEXT;

ALTER TABLE client_secrets ADD COLUMN last_used_at INTEGER;
ALTER TABLE client_secrets ADD COLUMN use_count INTEGER NOT NULL DEFAULT 0;

-- space-separated CIDRs and referer patterns; empty: no restriction
ALTER TABLE clients ADD COLUMN allowed_cidrs TEXT NOT NULL DEFAULT '';
ALTER TABLE clients ADD COLUMN allowed_referers TEXT NOT NULL DEFAULT '';

-- requests per client, key ('' when none) and service in hourly buckets
CREATE TABLE usage_buckets (
    client_id    TEXT NOT NULL,
    key_id       TEXT NOT NULL,
    service      TEXT NOT NULL,
    bucket_start INTEGER NOT NULL,
    c2xx         INTEGER NOT NULL DEFAULT 0,
    c3xx         INTEGER NOT NULL DEFAULT 0,
    c4xx         INTEGER NOT NULL DEFAULT 0,
    c429         INTEGER NOT NULL DEFAULT 0,
    c5xx         INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (client_id, key_id, service, bucket_start)
);
CREATE INDEX usage_buckets_start ON usage_buckets (bucket_start);

-- keys about to expire are counted every few seconds
CREATE INDEX api_keys_expires ON api_keys (expires_at);
