//! The `store` and `redis` sections.

use super::*;

impl Compiler {
    pub(super) fn usage(&mut self, v: Option<&Value>, path: &NodePath) -> Option<UsageSettings> {
        let raw: RawUsage = self.section(v, path)?;
        Some(UsageSettings {
            enabled: raw.enabled.unwrap_or(true),
            retention: self.duration(
                raw.retention.as_deref(),
                &path.key("retention"),
                Duration::from_secs(90 * 86_400),
            ),
        })
    }

    pub(super) fn store(&mut self, v: Option<&Value>, path: &NodePath) -> Option<StoreSettings> {
        let raw: RawStore = self.section(v, path)?;
        let url_text = raw
            .url
            .unwrap_or_else(|| "sqlite://data/tollgate.db".into());
        let url = if let Some(p) = url_text.strip_prefix("sqlite://") {
            if p.is_empty() {
                self.err(&path.key("url"), "sqlite:// needs a file path");
            }
            StoreUrl::Sqlite(PathBuf::from(p))
        } else if url_text.starts_with("postgres://") || url_text.starts_with("postgresql://") {
            StoreUrl::Postgres(url_text.clone())
        } else {
            self.err(
                &path.key("url"),
                format!(
                    "unsupported store url `{url_text}`: expected sqlite://PATH or postgres://…"
                ),
            );
            StoreUrl::Sqlite(PathBuf::new())
        };
        let cp = path.key("cache");
        let cache = CacheSettings {
            ttl: self.duration(
                raw.cache.ttl.as_deref(),
                &cp.key("ttl"),
                Duration::from_secs(30),
            ),
            negative_ttl: self.duration(
                raw.cache.negative_ttl.as_deref(),
                &cp.key("negative_ttl"),
                Duration::from_secs(5),
            ),
            max_entries: match raw.cache.max_entries {
                Some(0) => {
                    self.err(&cp.key("max_entries"), "must be at least 1");
                    1
                }
                Some(n) => n,
                None => 100_000,
            },
        };
        let pepper_env = raw.pepper_env.unwrap_or_else(|| "TOLLGATE_PEPPER".into());
        self.env_name(&pepper_env, &path.key("pepper_env"));
        Some(StoreSettings {
            url,
            cache,
            pepper_env,
        })
    }
    pub(super) fn redis(
        &mut self,
        v: Option<&Value>,
        path: &NodePath,
    ) -> Option<Option<RedisSettings>> {
        match v {
            None | Some(Value::Null) => Some(None),
            Some(v) => {
                let raw: RawRedis = self.node(v, path)?;
                if !(raw.url.starts_with("redis://") || raw.url.starts_with("rediss://")) {
                    self.err(&path.key("url"), "expected redis://HOST:PORT or rediss://…");
                }
                let timeout = self.duration(
                    raw.timeout.as_deref(),
                    &path.key("timeout"),
                    Duration::from_millis(250),
                );
                if timeout.is_zero() {
                    self.err(&path.key("timeout"), "must be more than 0");
                }
                let failure_mode = match raw.failure_mode.as_deref() {
                    None | Some("open") => FailureMode::Open,
                    Some("closed") => FailureMode::Closed,
                    Some(other) => {
                        self.err(
                            &path.key("failure_mode"),
                            format!("unknown failure mode `{other}`: expected open or closed"),
                        );
                        FailureMode::Open
                    }
                };
                Some(Some(RedisSettings {
                    url: raw.url,
                    timeout,
                    failure_mode,
                }))
            }
        }
    }
}
