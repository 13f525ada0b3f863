//! Configuration reload (SIGHUP, `POST /admin/v1/reload`): the file is
//! compiled off the request path and the new snapshot swapped in whole; a
//! request keeps the snapshot it started with. A configuration that fails
//! to load is refused and the running one stays.

use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::auth::jwt::JwtAuth;
use crate::config::{self, Config};
use crate::ratelimit::Limiter;
use crate::runtime::Snapshot;
use crate::telemetry::Metrics;
use crate::tls::TlsAcceptor;

pub struct Reloader {
    path: PathBuf,
    state: Arc<ArcSwap<Snapshot>>,
    jwt: Arc<JwtAuth>,
    limiter: Arc<Limiter>,
    metrics: Arc<Metrics>,
    /// The proxy's TLS listeners: new certificates for new connections.
    tls: Vec<Arc<TlsAcceptor>>,
    /// One reload at a time: two would race to swap.
    busy: tokio::sync::Mutex<()>,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Reloaded {
    /// What `check-config` prints for the new configuration.
    pub summary: String,
    /// Settings that changed in the file but only take effect after a
    /// restart (or a graceful upgrade); the running values stay.
    pub restart_required: Vec<&'static str>,
}

impl Reloader {
    pub fn new(
        path: PathBuf,
        state: Arc<ArcSwap<Snapshot>>,
        jwt: Arc<JwtAuth>,
        limiter: Arc<Limiter>,
        metrics: Arc<Metrics>,
        tls: Vec<Arc<TlsAcceptor>>,
    ) -> Reloader {
        Reloader {
            path,
            state,
            jwt,
            limiter,
            metrics,
            tls,
            busy: tokio::sync::Mutex::new(()),
        }
    }

    /// Load the file again; `Err` holds every error, and nothing changed.
    pub async fn reload(&self, trigger: &str) -> Result<Reloaded, String> {
        let _one = self.busy.lock().await;
        let path = self.path.clone();
        // compiling resolves upstream host names: keep it off the runtime
        let loaded = tokio::task::spawn_blocking(move || config::load(&path))
            .await
            .map_err(|e| format!("the reload task failed: {e}"))
            .and_then(|r| r.map_err(|errors| errors.to_string()));
        let new = match loaded {
            Ok(c) => c,
            Err(errors) => {
                self.metrics
                    .config_reloads
                    .with_label_values(&["error"])
                    .inc();
                tracing::error!(trigger, file = %self.path.display(), errors = %errors, "configuration refused; the running one stays");
                return Err(errors);
            }
        };
        let old = self.state.load_full();
        let restart_required = fixed_settings_changed(&old.config, &new);
        if !restart_required.is_empty() {
            tracing::warn!(trigger, settings = ?restart_required, "these settings take effect only after a restart");
        }
        if let Err(e) = self.replace_certificates(&new) {
            self.metrics
                .config_reloads
                .with_label_values(&["error"])
                .inc();
            tracing::error!(trigger, file = %self.path.display(), error = %e, "TLS settings refused; the running configuration stays");
            return Err(e);
        }
        let summary = new.summary();
        let new = Arc::new(new);
        self.jwt.configure(&new);
        self.limiter.announce(&new);
        self.state.store(Arc::new(Snapshot::new(new)));
        // keys of issuers added by this configuration
        let jwt = self.jwt.clone();
        tokio::spawn(async move { jwt.refresh_all().await });
        self.metrics.config_reloads.with_label_values(&["ok"]).inc();
        tracing::info!(trigger, %summary, "configuration reloaded");
        Ok(Reloaded {
            summary,
            restart_required,
        })
    }
}

impl Reloader {
    /// Every TLS listener gets the certificates of the new configuration,
    /// or none does: all rustls configurations are built before any is
    /// swapped in.
    fn replace_certificates(&self, new: &Config) -> Result<(), String> {
        let mut built = Vec::new();
        let admin = new
            .admin
            .tls
            .as_ref()
            .map(|t| (new.admin.listen.port(), t, false));
        let listeners = new
            .server
            .listen
            .iter()
            .filter_map(|l| Some((l.addr.port(), l.tls.as_ref()?, l.http2)));
        let by_port: Vec<_> = listeners.chain(admin).collect();
        for acceptor in &self.tls {
            // a listener that lost its TLS in the file: a restart change
            let Some((_, settings, http2)) = by_port.iter().find(|(p, ..)| *p == acceptor.port)
            else {
                continue;
            };
            let config = crate::tls::server_config(settings, *http2)
                .map_err(|e| format!("TLS on {}: {e}", acceptor.name))?;
            built.push((acceptor, config, *settings));
        }
        for (acceptor, config, settings) in built {
            acceptor.install(config);
            self.metrics.certificates_served(&acceptor.name, settings);
        }
        Ok(())
    }
}

/// Settings bound at start (sockets, the store, Redis, the signing
/// algorithm, logging) that a reload does not change.
fn fixed_settings_changed(old: &Config, new: &Config) -> Vec<&'static str> {
    let same =
        |a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug| format!("{a:?}") == format!("{b:?}");
    let mut changed = Vec::new();
    let checks: [(&'static str, bool); 9] = [
        (
            "server.listen",
            same(
                &listeners(&old.server.listen),
                &listeners(&new.server.listen),
            ),
        ),
        (
            "server.threads",
            same(&old.server.threads, &new.server.threads),
        ),
        (
            "admin",
            same(&old.admin.listen, &new.admin.listen)
                && same(&old.admin.token_env, &new.admin.token_env)
                && old.admin.tls.is_some() == new.admin.tls.is_some(),
        ),
        (
            "metrics.listen",
            same(&old.metrics.listen, &new.metrics.listen),
        ),
        ("store", same(&old.store, &new.store)),
        ("redis", same(&old.redis, &new.redis)),
        (
            "auth.tokens.algorithm",
            same(&old.auth.tokens.algorithm, &new.auth.tokens.algorithm),
        ),
        ("logging", same(&old.logging, &new.logging)),
        (
            "server.max_header_bytes/header_timeout",
            same(&old.server.max_header_bytes, &new.server.max_header_bytes)
                && same(&old.server.header_timeout, &new.server.header_timeout),
        ),
    ];
    for (name, unchanged) in checks {
        if !unchanged {
            changed.push(name);
        }
    }
    changed
}

/// What of the listeners a reload cannot change: addresses, TLS or not,
/// HTTP/2 or not (certificates it does change).
fn listeners(list: &[config::Listener]) -> Vec<(std::net::SocketAddr, bool, bool)> {
    list.iter()
        .map(|l| (l.addr, l.tls.is_some(), l.http2))
        .collect()
}
