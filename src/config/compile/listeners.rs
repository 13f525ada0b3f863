//! The listener sections: `server`, `admin`, `metrics`, and `logging`.

use super::*;

/// A certificate that expires sooner than this is warned about.
const EXPIRY_WARNING_SECS: i64 = 14 * 86_400;

impl Compiler {
    pub(super) fn server(&mut self, v: Option<&Value>, path: &NodePath) -> Option<ServerSettings> {
        let raw: RawServer = self.section(v, path)?;
        let entries = raw
            .listen
            .unwrap_or_else(|| vec![Value::String("127.0.0.1:8080".into())]);
        if entries.is_empty() {
            self.err(
                &path.key("listen"),
                "at least one listen address is required",
            );
        }
        let listen: Vec<Listener> = entries
            .iter()
            .enumerate()
            .filter_map(|(i, v)| self.listener(v, &path.key("listen").index(i)))
            .collect();
        let mut ports = HashSet::new();
        for (i, l) in listen.iter().enumerate() {
            if !ports.insert(l.addr.port()) {
                self.err(
                    &path.key("listen").index(i),
                    format!("port {} is already used by another listener", l.addr.port()),
                );
            }
        }
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
        );
        let tls = match raw.tls {
            Some(t) => Some(Arc::new(self.tls(t, &path.key("tls"))?)),
            None => None,
        };
        let listen = listen?;
        let token_env = raw
            .token_env
            .unwrap_or_else(|| "TOLLGATE_ADMIN_TOKEN".into());
        self.env_name(&token_env, &path.key("token_env"));
        Some(AdminSettings {
            listen,
            tls,
            token_env,
        })
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

    fn listener(&mut self, v: &Value, path: &NodePath) -> Option<Listener> {
        match v {
            Value::String(t) => self.listen_addr(t, path).map(|addr| Listener {
                addr,
                tls: None,
                http2: true,
            }),
            Value::Mapping(_) => {
                let raw: RawListener = self.node(v, path)?;
                let addr = self.listen_addr(&raw.address, &path.key("address"));
                let tls = match raw.tls {
                    Some(t) => Some(Arc::new(self.tls(t, &path.key("tls"))?)),
                    None => None,
                };
                Some(Listener {
                    addr: addr?,
                    tls,
                    http2: raw.http2.unwrap_or(true),
                })
            }
            _ => {
                self.err(
                    path,
                    "a listener is `IP:PORT` or an object with `address` (and `tls`, `http2`)",
                );
                None
            }
        }
    }

    /// A listener's TLS: every certificate and key read, parsed and matched
    /// here, so that `check-config` refuses what `serve` could not load.
    pub(super) fn tls(&mut self, raw: RawTls, path: &NodePath) -> Option<TlsSettings> {
        let min_version = match raw.min_version.as_deref() {
            None | Some("1.2") => TlsVersion::V1_2,
            Some("1.3") => TlsVersion::V1_3,
            Some(other) => {
                self.err(
                    &path.key("min_version"),
                    format!("unsupported TLS version `{other}`: \"1.2\" or \"1.3\""),
                );
                TlsVersion::V1_2
            }
        };
        if raw.certificates.is_empty() {
            self.err(
                &path.key("certificates"),
                "at least one certificate is required",
            );
        }
        let now = crate::store::now();
        let mut certificates = Vec::new();
        let mut failed = false;
        for (i, c) in raw.certificates.into_iter().enumerate() {
            let cp = path.key("certificates").index(i);
            let hosts: Vec<String> = c
                .hosts
                .iter()
                .map(|h| h.trim().to_ascii_lowercase())
                .collect();
            for (j, h) in hosts.iter().enumerate() {
                let name = h.strip_prefix("*.").unwrap_or(h);
                if name.is_empty()
                    || !crate::proxy::head::valid_host(name.as_bytes())
                    || name.contains(':')
                {
                    self.err(
                        &cp.key("hosts").index(j),
                        format!("invalid server name `{h}`"),
                    );
                    failed = true;
                }
            }
            match crate::tls::load_certificate(Path::new(&c.cert), Path::new(&c.key)) {
                Ok((key, not_after)) => {
                    if not_after < now {
                        self.err(
                            &cp.key("cert"),
                            format!(
                                "certificate {} expired (notAfter {})",
                                c.cert,
                                crate::tls::date(not_after)
                            ),
                        );
                        failed = true;
                    } else if not_after < now + EXPIRY_WARNING_SECS {
                        self.warn(
                            &cp.key("cert"),
                            format!(
                                "certificate {} expires within 14 days (notAfter {})",
                                c.cert,
                                crate::tls::date(not_after)
                            ),
                        );
                    }
                    certificates.push(Certificate {
                        cert_path: PathBuf::from(&c.cert),
                        key_path: PathBuf::from(&c.key),
                        hosts,
                        key,
                        not_after,
                    });
                }
                Err(crate::tls::CertError::Cert(e)) => {
                    self.err(&cp.key("cert"), e);
                    failed = true;
                }
                Err(crate::tls::CertError::Key(e)) => {
                    self.err(&cp.key("key"), e);
                    failed = true;
                }
            }
        }
        let client_auth = match (raw.client_ca, raw.client_auth.as_deref()) {
            (None, None) => None,
            (None, Some(_)) => {
                self.err(&path.key("client_auth"), "client_auth needs a client_ca");
                None
            }
            (Some(ca), mode) => {
                let required = match mode {
                    None | Some("optional") => false,
                    Some("required") => true,
                    Some(other) => {
                        self.err(
                            &path.key("client_auth"),
                            format!("unknown client_auth `{other}`: optional or required"),
                        );
                        false
                    }
                };
                match crate::tls::load_roots(Path::new(&ca)) {
                    Ok(roots) => Some(ClientAuth {
                        ca_path: PathBuf::from(ca),
                        roots: Arc::new(roots),
                        required,
                    }),
                    Err(e) => {
                        self.err(&path.key("client_ca"), e);
                        failed = true;
                        None
                    }
                }
            }
        };
        if failed {
            return None;
        }
        Some(TlsSettings {
            certificates,
            min_version,
            client_auth,
        })
    }
}

pub(super) fn parse_ipnet(t: &str) -> Option<IpNet> {
    IpNet::parse(t)
}
