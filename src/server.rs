//! Assembles one gateway process: binds the listeners (reporting bind
//! errors before anything starts), builds the Pingora server with the
//! proxy, admin and metrics services, and drains in-flight requests on
//! SIGTERM before exiting 0.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::server::configuration::ServerConf;
use pingora::server::{ExecutionPhase, Server, ShutdownWatch};
use pingora::services::background::{background_service, BackgroundService};
use pingora::services::listening::Service;

use crate::auth::api_key::ApiKeyAuth;
use crate::auth::clients::ClientDirectory;
use crate::auth::jwt::JwtAuth;
use crate::auth::usage::{RequestUsage, UsageRecorder};
use crate::auth::Authenticator;
use crate::config::{Config, StoreSettings, StoreUrl};
use crate::control::admin::AdminApi;
use crate::control::registry::Registry;
use crate::control::reload::Reloader;
use crate::control::sync::CacheSync;
use crate::control::token::TokenService;
use crate::control::{self, AdminState, HttpListenerService};
use crate::live::{LiveConnections, LiveListener};
use crate::proxy::conn::{GuardedApp, HeadLimits, ListenerRuntime};
use crate::proxy::{Gateway, InFlight};
use crate::ratelimit::Limiter;
use crate::runtime::Snapshot;
use crate::secrets::Pepper;
use crate::store::feed::ChangeFeed;
use crate::store::{ChangeListener, Store};
use crate::telemetry::Metrics;
use crate::tls::TlsAcceptor;
use crate::upgrade;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        addr: SocketAddr,
        what: &'static str,
        source: std::io::Error,
    },
    #[error("cannot set up metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("the admin token variable {0} is empty or unset; the admin listener refuses to start without a token")]
    AdminToken(String),
    #[error("pepper: {0}")]
    Pepper(String),
    #[error("cannot open the store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("cannot start the store runtime: {0}")]
    Runtime(std::io::Error),
    #[error("upgrade: {0}")]
    Upgrade(String),
    #[error("TLS on {0}: {1}")]
    Tls(String, String),
}

/// The pepper keys every stored hash. From the variable `store.pepper_env`;
/// when it is unset, a single SQLite node keeps a random one in a 0600 file
/// beside the database, and a shared (PostgreSQL) store refuses to start,
/// since every node must hash alike.
fn load_pepper(store: &StoreSettings) -> Result<Pepper, StartError> {
    if let Ok(v) = std::env::var(&store.pepper_env) {
        if !v.is_empty() {
            return Ok(Pepper::new(v.into_bytes()));
        }
    }
    let db = match &store.url {
        StoreUrl::Sqlite(path) => path,
        StoreUrl::Postgres(_) => {
            return Err(StartError::Pepper(format!(
                "{} must be set when the store is shared by several nodes",
                store.pepper_env
            )))
        }
    };
    let mut file = db.clone().into_os_string();
    file.push(".pepper");
    let file = std::path::PathBuf::from(file);
    if let Ok(text) = std::fs::read_to_string(&file) {
        return crate::secrets::from_hex(text.trim())
            .filter(|b| b.len() >= 16)
            .map(Pepper::new)
            .ok_or_else(|| StartError::Pepper(format!("{} is not a hex pepper", file.display())));
    }
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| StartError::Pepper(format!("{}: {e}", dir.display())))?;
    }
    let bytes: Vec<u8> = (0..32).map(|_| rand::random::<u8>()).collect();
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&file)
        .map_err(|e| StartError::Pepper(format!("cannot create {}: {e}", file.display())))?;
    f.write_all(crate::secrets::to_hex(&bytes).as_bytes())
        .map_err(|e| StartError::Pepper(format!("cannot write {}: {e}", file.display())))?;
    tracing::warn!(
        file = %file.display(),
        variable = %store.pepper_env,
        "no pepper in the environment: generated one and stored it beside the database; keep that file with the database"
    );
    Ok(Pepper::new(bytes))
}

/// HTTP/2 limits against floods: streams a client may have open, the
/// decoded header list (the same bound as an HTTP/1 head), and how many
/// streams it may reset or have reset before the connection is closed
/// (rapid reset).
fn h2_limits(config: &Config) -> pingora::protocols::http::v2::server::H2Options {
    let mut options = pingora::protocols::http::v2::server::default_h2_options();
    options
        .max_concurrent_streams(100)
        .max_header_list_size(config.server.max_header_bytes.min(u32::MAX as usize) as u32)
        .max_pending_accept_reset_streams(20)
        .max_local_error_reset_streams(Some(256));
    options
}

/// Each proxy listener's runtime by port, and the TLS acceptors a reload
/// gives new certificates to.
type Listeners = (HashMap<u16, ListenerRuntime>, Vec<Arc<TlsAcceptor>>);

fn tls_listeners(config: &Config, metrics: &Metrics) -> Result<Listeners, StartError> {
    let mut runtimes = HashMap::new();
    let mut acceptors = Vec::new();
    for l in &config.server.listen {
        let name = l.addr.to_string();
        let tls = match &l.tls {
            Some(settings) => {
                let acceptor = TlsAcceptor::new(name.clone(), l.addr.port(), settings, l.http2)
                    .map_err(|e| StartError::Tls(name.clone(), e))?;
                metrics.certificates_served(&name, settings);
                let acceptor = Arc::new(acceptor);
                acceptors.push(acceptor.clone());
                Some(acceptor)
            }
            None => None,
        };
        runtimes.insert(
            l.addr.port(),
            ListenerRuntime {
                name,
                tls,
                http2: l.http2,
            },
        );
    }
    Ok((runtimes, acceptors))
}

pub(crate) fn bind(addr: SocketAddr, what: &'static str) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr).map_err(|source| StartError::Bind { addr, what, source })
}

/// How `tollgate serve` was asked to run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Write the process id here once serving (removed at exit).
    pub pid_file: Option<PathBuf>,
    /// Take the listening sockets over from the process named by the pid
    /// file (graceful upgrade), which then drains and exits.
    pub upgrade: bool,
}

/// Build everything and run until SIGTERM/SIGINT; never returns on success.
pub fn run(config: Config, options: RunOptions) -> Result<(), StartError> {
    let config = Arc::new(config);
    for w in &config.warnings {
        tracing::warn!(warning = %w, "configuration");
    }
    for s in config.services.values() {
        if s.tls.as_ref().is_some_and(|t| !t.verify) {
            tracing::warn!(service = %s.name, "upstream TLS certificates are not verified (tls.verify: false): anyone on the path can pose as this upstream");
        }
    }
    // The old process of an upgrade must still be there: it hands over
    // the proxy sockets only once this one has loaded everything.
    let old_pid = match (&options.pid_file, options.upgrade) {
        (Some(file), true) => Some(upgrade::old_process(file).map_err(StartError::Upgrade)?),
        (None, true) => {
            return Err(StartError::Upgrade(
                "--upgrade needs --pid-file naming the running process".into(),
            ))
        }
        _ => None,
    };
    // Admin and metrics sockets allow a second binder (the new process of
    // a graceful upgrade); outside an upgrade, a plain bind first makes a
    // port held by anyone a clear error.
    let admin_listener = upgrade::bind_shared(config.admin.listen, "admin", old_pid.is_none())?;
    let metrics_listener =
        upgrade::bind_shared(config.metrics.listen, "metrics", old_pid.is_none())?;
    if old_pid.is_none() {
        for l in &config.server.listen {
            // Pingora binds the proxy listeners itself once running; try each
            // first so that a taken or forbidden port is a clear error here.
            drop(bind(l.addr, "proxy")?);
        }
    }

    let token = std::env::var(&config.admin.token_env).unwrap_or_default();
    if token.trim().is_empty() {
        return Err(StartError::AdminToken(config.admin.token_env.clone()));
    }
    let pepper = load_pepper(&config.store)?;
    // The store's pool lives on its own runtime for the life of the process.
    let store_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("tollgate-store")
        .enable_all()
        .build()
        .map_err(StartError::Runtime)?;
    let store = store_rt.block_on(crate::store::open(&config.store.url))?;
    let store_rt_handle = store_rt.handle().clone();
    std::mem::forget(store_rt);

    let metrics = Arc::new(Metrics::new()?);
    // The change feed starts at the store's last change before anything is
    // loaded from the store, so a change committed by another node during
    // start-up (a signing key, a revocation) is delivered, not missed.
    let cache_sync = Arc::new(CacheSync::default());
    let listen_url = match &config.store.url {
        StoreUrl::Postgres(url) => Some(url.clone()),
        StoreUrl::Sqlite(_) => None,
    };
    let feed = store_rt_handle.block_on(ChangeFeed::start(
        store.clone(),
        listen_url,
        cache_sync.clone(),
        metrics.invalidation_lag.clone(),
        CHANGE_POLL,
    ))?;
    let snapshot = Arc::new(ArcSwap::from_pointee(Snapshot::new(config.clone())));
    let usage = Arc::new(UsageRecorder::default());
    let api_keys = ApiKeyAuth::new(
        store.clone(),
        pepper.clone(),
        &config.store.cache,
        usage.clone(),
        &metrics,
    );
    let jwt = Arc::new(JwtAuth::new(&config, metrics.clone()));
    let signing_keys = store_rt_handle.block_on(ensure_signing_key(store.as_ref(), &config))?;
    jwt.set_builtin_keys(&signing_keys);
    let clients = ClientDirectory::new(store.clone(), &config.store.cache, metrics.clone());
    let auth = Arc::new(Authenticator::new(
        api_keys,
        jwt.clone(),
        clients,
        metrics.clone(),
    ));
    let live = Arc::new(LiveConnections::new(auth.clone()));
    let live_listener = Arc::new(LiveListener(live.clone()));
    let limiter = {
        let _rt = store_rt_handle.enter();
        Arc::new(Limiter::new(config.redis.as_ref(), metrics.clone()))
    };
    limiter.announce(&config);
    store_rt_handle.block_on(limiter.load_quota_usage(store.as_ref()))?;
    let oauth = Arc::new(TokenService::new(
        store.clone(),
        pepper.clone(),
        jwt.clone(),
        snapshot.clone(),
        metrics.clone(),
        signing_keys,
        limiter.clone(),
    ));
    for (jti, _) in store_rt_handle.block_on(store.revoked_tokens(crate::store::now()))? {
        store_rt_handle.block_on(jwt.revoke_jti(&jti));
    }
    cache_sync.bind(
        auth.clone(),
        jwt.clone(),
        oauth.clone(),
        live_listener.clone(),
    );
    // caches first, then the connections checked against them
    let accounts = Arc::new(crate::control::accounts::Accounts::new(
        store.clone(),
        pepper.clone(),
        snapshot.clone(),
        jwt.clone(),
        metrics.clone(),
    ));
    let registry = Arc::new(Registry::new(
        store.clone(),
        pepper,
        snapshot.clone(),
        vec![
            auth.clone() as Arc<dyn ChangeListener>,
            live_listener.clone() as Arc<dyn ChangeListener>,
        ],
    ));
    let inflight = Arc::new(InFlight::default());
    let (listener_runtimes, mut tls_acceptors) = tls_listeners(&config, &metrics)?;
    let admin_tls = match &config.admin.tls {
        Some(settings) => {
            let name = config.admin.listen.to_string();
            let acceptor =
                TlsAcceptor::new(name.clone(), config.admin.listen.port(), settings, false)
                    .map_err(|e| StartError::Tls(name.clone(), e))?;
            metrics.certificates_served(&name, settings);
            let acceptor = Arc::new(acceptor);
            tls_acceptors.push(acceptor.clone());
            Some(acceptor)
        }
        None => None,
    };
    let reloader = Arc::new(Reloader::new(
        config.source.clone(),
        snapshot.clone(),
        jwt.clone(),
        limiter.clone(),
        metrics.clone(),
        tls_acceptors,
    ));

    let shutdown_secs = config.server.shutdown_timeout.as_secs_f64().ceil() as u64;
    let conf = ServerConf {
        threads: config.server.threads,
        // one single-threaded runtime per worker thread: a connection stays
        // on the thread that accepted it, with no cross-thread wake-ups
        work_stealing: false,
        // Pingora sleeps this long after SIGTERM; the drain service below
        // exits as soon as the last in-flight request has finished.
        grace_period_seconds: Some(shutdown_secs.max(1)),
        graceful_shutdown_timeout_seconds: Some(1),
        upgrade_sock: upgrade::socket_path(options.pid_file.as_deref(), config.admin.listen),
        ..ServerConf::default()
    };
    let opt = pingora::server::configuration::Opt {
        upgrade: old_pid.is_some(),
        ..Default::default()
    };
    let mut server = Server::new_with_opt_and_conf(Some(opt), conf);
    let draining = Arc::new(std::sync::atomic::AtomicBool::new(false));
    watch_for_drain(server.watch_execution_phase(), draining.clone());
    if let Some(pid) = old_pid {
        // the old process connects to the upgrade socket (retrying) while
        // bootstrap below waits for its listeners
        upgrade::ask_to_hand_over(pid).map_err(StartError::Upgrade)?;
    }
    server.bootstrap();
    if let Some(file) = &options.pid_file {
        upgrade::write_pid_file(file).map_err(StartError::Upgrade)?;
    }

    let portal = crate::portal::router(crate::portal::PortalApi {
        registry: registry.clone(),
        accounts: accounts.clone(),
        snapshot: snapshot.clone(),
    });
    let request_usage = Arc::new(RequestUsage::default());
    let counters = Arc::new(Counters {
        keys: usage.clone(),
        secrets: oauth.secret_usage.clone(),
        requests: request_usage.clone(),
        limiter: limiter.clone(),
        snapshot: snapshot.clone(),
        metrics: metrics.clone(),
    });
    let gateway = Gateway {
        state: snapshot.clone(),
        usage: request_usage,
        auth,
        oauth: oauth.clone(),
        portal,
        metrics: metrics.clone(),
        inflight: inflight.clone(),
        limiter: limiter.clone(),
        live,
        draining,
    };
    let mut proxy = pingora::proxy::http_proxy(&server.configuration, gateway);
    proxy.h2_options = Some(h2_limits(&config));
    let app = GuardedApp {
        inner: Arc::new(proxy),
        limits: HeadLimits {
            max_bytes: config.server.max_header_bytes,
            timeout: config.server.header_timeout,
        },
        listeners: listener_runtimes,
        client_errors: metrics.client_errors.clone(),
        tls_failures: metrics.tls_handshake_failures.clone(),
    };
    let mut proxy_service = Service::new("tollgate proxy".to_string(), app);
    for l in &config.server.listen {
        // TLS is terminated by the guard in front of Pingora
        proxy_service.add_tcp(&l.addr.to_string());
    }
    server.add_service(proxy_service);

    let admin = control::admin_router(AdminState {
        snapshot: snapshot.clone(),
        api: AdminApi {
            registry,
            accounts,
            oauth: oauth.clone(),
            reloader: reloader.clone(),
            token: Arc::new(token),
        },
    });
    let mut admin_service = HttpListenerService::new("admin", admin_listener, admin);
    if let Some(acceptor) = admin_tls {
        admin_service = admin_service.with_tls(acceptor, metrics.tls_handshake_failures.clone());
    }
    server.add_service(background_service("admin", admin_service));
    server.add_service(background_service(
        "metrics",
        HttpListenerService::new(
            "metrics",
            metrics_listener,
            control::metrics_router(metrics),
        ),
    ));
    server.add_service(background_service("jwks", JwksRefresher { jwt }));
    server.add_service(background_service(
        "changes",
        ChangeFollower {
            feed: std::sync::Mutex::new(Some(feed)),
            runtime: store_rt_handle.clone(),
        },
    ));
    server.add_service(background_service(
        "usage",
        UsageFlusher {
            counters: counters.clone(),
            store: store.clone(),
        },
    ));
    server.add_service(background_service(
        "drain",
        Drain {
            inflight,
            timeout: config.server.shutdown_timeout,
            counters,
            store,
            pid_file: options.pid_file.clone(),
        },
    ));

    {
        // SIGHUP reloads; registered here, before serving, so an early
        // SIGHUP cannot kill the process (its default action)
        let _rt = store_rt_handle.enter();
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(mut hup) => {
                store_rt_handle.spawn(async move {
                    while hup.recv().await.is_some() {
                        let _ = reloader.reload("SIGHUP").await;
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot handle SIGHUP; reload with POST /admin/v1/reload")
            }
        }
    }
    tracing::info!(
        config = %config.source.display(),
        summary = %config.summary(),
        store = config.store.url.kind(),
        shared_limits = config.redis.is_some(),
        proxy = %config
            .server
            .listen
            .iter()
            .map(|l| format!("{}{}", l.addr, if l.tls.is_some() { " (tls)" } else { "" }))
            .collect::<Vec<_>>()
            .join(", "),
        admin = %config.admin.listen,
        metrics = %config.metrics.listen,
        pid = std::process::id(),
        upgraded_from = ?old_pid,
        "tollgate serving"
    );
    server.run_forever()
}

/// After SIGTERM, waits for in-flight requests (listeners are already
/// closed by Pingora) and exits as soon as there are none.
struct Drain {
    inflight: Arc<InFlight>,
    timeout: Duration,
    counters: Arc<Counters>,
    store: Arc<dyn Store>,
    pid_file: Option<PathBuf>,
}

/// What is counted in memory and written in batches: API-key and secret
/// use, request usage over time, quota usage.
struct Counters {
    keys: Arc<UsageRecorder>,
    secrets: Arc<UsageRecorder>,
    requests: Arc<RequestUsage>,
    limiter: Arc<Limiter>,
    snapshot: Arc<ArcSwap<Snapshot>>,
    metrics: Arc<Metrics>,
}

/// The window of `tollgate_api_keys_expiring`.
const EXPIRING_WITHIN: Duration = Duration::from_secs(7 * 86_400);

impl Counters {
    /// `tollgate_api_keys_expiring{within="7d"}`, from the store.
    async fn refresh_expiring(&self, store: &dyn Store) {
        let at = crate::store::now();
        match store
            .count_expiring_api_keys(at, at + EXPIRING_WITHIN.as_secs() as i64)
            .await
        {
            Ok(count) => self
                .metrics
                .api_keys_expiring
                .with_label_values(&["7d"])
                .set(count),
            Err(e) => tracing::warn!(error = %e, "cannot count the keys about to expire"),
        }
    }

    async fn flush(&self, store: &dyn Store) {
        self.keys.flush(store).await;
        self.secrets.flush(store).await;
        let retention = self.snapshot.load().config.usage.retention;
        self.requests.flush(store, retention).await;
        self.limiter.flush_quota_usage(store).await;
    }
}

/// Writes the counters every `USAGE_FLUSH`.
struct UsageFlusher {
    counters: Arc<Counters>,
    store: Arc<dyn Store>,
}

const USAGE_FLUSH: Duration = Duration::from_secs(2);

/// Sets `draining` when Pingora starts handing the sockets to a new
/// process (graceful upgrade) or shutting down.
fn watch_for_drain(
    mut phases: tokio::sync::broadcast::Receiver<ExecutionPhase>,
    draining: Arc<std::sync::atomic::AtomicBool>,
) {
    use tokio::sync::broadcast::error::RecvError;
    std::thread::spawn(move || loop {
        match phases.blocking_recv() {
            Ok(
                ExecutionPhase::GracefulUpgradeTransferringFds
                | ExecutionPhase::GracefulUpgradeCloseTimeout
                | ExecutionPhase::GracefulTerminate
                | ExecutionPhase::ShutdownStarted,
            ) => draining.store(true, std::sync::atomic::Ordering::Relaxed),
            Ok(_) | Err(RecvError::Lagged(_)) => {}
            Err(RecvError::Closed) => return,
        }
    });
}

/// How often the change feed is read even without a notification (the
/// only way on SQLite; a safety net on PostgreSQL). Revocations reach every
/// node within this bound plus one read.
const CHANGE_POLL: Duration = Duration::from_secs(1);

/// Applies the changes of every node to this node's caches, on the store's
/// runtime, until shutdown.
struct ChangeFollower {
    feed: std::sync::Mutex<Option<ChangeFeed>>,
    runtime: tokio::runtime::Handle,
}

#[async_trait]
impl BackgroundService for ChangeFollower {
    async fn start(&self, shutdown: ShutdownWatch) {
        let feed = self.feed.lock().ok().and_then(|mut f| f.take());
        if let Some(feed) = feed {
            let _ = self.runtime.spawn(feed.run(shutdown)).await;
        }
    }
}

/// Fetches every external issuer's JWKS at start and every `JWKS_REFRESH`.
struct JwksRefresher {
    jwt: Arc<JwtAuth>,
}

#[async_trait]
impl BackgroundService for JwksRefresher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(crate::auth::jwt::JWKS_REFRESH);
        loop {
            tokio::select! {
                _ = tick.tick() => self.jwt.refresh_all().await,
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// The built-in issuer's keys; on first start, a key of the configured
/// algorithm is generated and stored.
async fn ensure_signing_key(
    store: &dyn Store,
    config: &Config,
) -> Result<Vec<crate::store::SigningKey>, StartError> {
    let want = crate::auth::keys::algorithm_name(config.auth.tokens.algorithm);
    let mut keys = store.list_signing_keys().await?;
    let current = keys
        .iter()
        .any(|k| k.retired_at.is_none() && k.algorithm == want);
    if !current {
        let alg = config.auth.tokens.algorithm;
        let key = tokio::task::spawn_blocking(move || crate::auth::keys::generate(alg))
            .await
            .map_err(|e| StartError::Pepper(format!("key generation failed: {e}")))?
            .map_err(|e| StartError::Pepper(e.to_string()))?;
        store.insert_signing_key(&key).await?;
        tracing::info!(kid = %key.kid, algorithm = want, "generated the token-signing key");
        keys = store.list_signing_keys().await?;
    }
    Ok(keys)
}

#[async_trait]
impl BackgroundService for UsageFlusher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(USAGE_FLUSH);
        let mut ticks: u64 = 0;
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    self.counters.flush(self.store.as_ref()).await;
                    // every 10 s (and at start)
                    if ticks.is_multiple_of(5) {
                        self.counters.refresh_expiring(self.store.as_ref()).await;
                    }
                    ticks += 1;
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}

#[async_trait]
impl BackgroundService for Drain {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        if shutdown.changed().await.is_err() {
            return;
        }
        let started = Instant::now();
        while self.inflight.count() > 0 && started.elapsed() < self.timeout {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let left = self.inflight.count();
        self.counters.flush(self.store.as_ref()).await;
        if let Some(file) = &self.pid_file {
            upgrade::remove_pid_file(file);
        }
        // let the last answers leave the socket buffers
        tokio::time::sleep(Duration::from_millis(100)).await;
        tracing::info!(
            in_flight_left = left,
            waited_ms = started.elapsed().as_millis() as u64,
            "shutdown complete"
        );
        std::process::exit(0);
    }
}
