//! The listener sections: `server`, `admin`, `metrics`, and `logging`.

use super::*;

impl Compiler {
    pub(super) fn server(&mut self, v: Option<&Value>, path: &NodePath) -> Option<ServerSettings> {
        let raw: RawServer = self.section(v, path)?;
        let listen_texts = raw.listen.unwrap_or_else(|| vec!["127.0.0.1:8080".into()]);
        if listen_texts.is_empty() {
            self.err(
                &path.key("listen"),
                "at least one listen address is required",
            );
        }
        let listen = listen_texts
            .iter()
            .enumerate()
            .filter_map(|(i, t)| self.listen_addr(t, &path.key("listen").index(i)))
            .collect();
        let max_header_bytes = raw.max_header_bytes.unwrap_or(32 * 1024);
        if !(1024..=MAX_HEADER_BYTES_LIMIT).contains(&max_header_bytes) {
            self.err(
                &path.key("max_header_bytes"),
                format!("must be between 1024 and {MAX_HEADER_BYTES_LIMIT}"),
            );
        }
        let header_timeout = self.duration(
            raw.header_timeout.as_deref(),
            &path.key("header_timeout"),
            Duration::from_secs(10),
        );
        let keepalive_timeout = self.duration(
            raw.keepalive_timeout.as_deref(),
            &path.key("keepalive_timeout"),
            Duration::from_secs(60),
        );
        let shutdown_timeout = self.duration(
            raw.shutdown_timeout.as_deref(),
            &path.key("shutdown_timeout"),
            Duration::from_secs(30),
        );
        let mut trusted_proxies = Vec::new();
        for (i, t) in raw.trusted_proxies.iter().enumerate() {
            match parse_ipnet(t) {
                Some(n) => trusted_proxies.push(n),
                None => self.err(
                    &path.key("trusted_proxies").index(i),
                    format!("invalid address or CIDR `{t}`"),
                ),
            }
        }
        let threads = match raw.threads {
            Some(0) => {
                self.err(&path.key("threads"), "must be at least 1");
                1
            }
            Some(n) => n,
            None => std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
        };
        Some(ServerSettings {
            listen,
            max_header_bytes,
            header_timeout,
            keepalive_timeout,
            shutdown_timeout,
            trusted_proxies,
            threads,
            keep_underscore_headers: raw.keep_underscore_headers,
        })
    }
    pub(super) fn admin(&mut self, v: Option<&Value>, path: &NodePath) -> Option<AdminSettings> {
        let raw: RawAdmin = self.section(v, path)?;
        let listen = self.listen_addr(
            raw.listen.as_deref().unwrap_or("127.0.0.1:8081"),
            &path.key("listen"),
        )?;
        let token_env = raw
            .token_env
            .unwrap_or_else(|| "TOLLGATE_ADMIN_TOKEN".into());
        self.env_name(&token_env, &path.key("token_env"));
        Some(AdminSettings { listen, token_env })
    }
    pub(super) fn env_name(&mut self, name: &str, path: &NodePath) {
        let ok = !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        if !ok {
            self.err(
                path,
                format!("`{name}` is not an environment variable name (the value itself never goes in the file)"),
            );
        }
    }
    pub(super) fn metrics(
        &mut self,
        v: Option<&Value>,
        path: &NodePath,
    ) -> Option<MetricsSettings> {
        let raw: RawMetrics = self.section(v, path)?;
        let listen = self.listen_addr(
            raw.listen.as_deref().unwrap_or("127.0.0.1:9091"),
            &path.key("listen"),
        )?;
        Some(MetricsSettings { listen })
    }
    pub(super) fn logging(
        &mut self,
        v: Option<&Value>,
        path: &NodePath,
    ) -> Option<LoggingSettings> {
        let raw: RawLogging = self.section(v, path)?;
        let format = match raw.format.as_deref().unwrap_or("pretty") {
            "pretty" => LogFormat::Pretty,
            "json" => LogFormat::Json,
            other => {
                self.err(
                    &path.key("format"),
                    format!("unknown log format `{other}`: expected pretty or json"),
                );
                LogFormat::Pretty
            }
        };
        let level = raw.level.unwrap_or_else(|| "info".into());
        if tracing_subscriber::EnvFilter::try_new(&level).is_err() {
            self.err(
                &path.key("level"),
                format!("invalid log level or filter `{level}`"),
            );
        }
        Some(LoggingSettings { format, level })
    }
}

pub(super) fn parse_ipnet(t: &str) -> Option<IpNet> {
    let (addr, prefix) = match t.split_once('/') {
        Some((a, p)) => (a.parse::<IpAddr>().ok()?, Some(p.parse::<u8>().ok()?)),
        None => (t.parse::<IpAddr>().ok()?, None),
    };
    let width = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = prefix.unwrap_or(width);
    (prefix <= width).then_some(IpNet { addr, prefix })
}
