//! The admin listener (`/healthz`, `/readyz`, the admin API) and the
//! metrics listener, both axum apps run as Pingora background services so
//! they share the gateway's lifecycle and shutdown.

pub mod accounts;
pub mod admin;
pub mod bodies;
pub mod registry;
pub mod reload;
pub mod sync;
pub mod token;

use std::net::TcpListener as StdListener;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use crate::runtime::Snapshot;
use crate::telemetry::Metrics;
use crate::tls::TlsAcceptor;

/// An axum app on a listener bound before start-up (so bind errors are
/// reported by `serve` itself, with exit code 2).
pub struct HttpListenerService {
    pub name: &'static str,
    listener: Mutex<Option<StdListener>>,
    app: Router,
    /// TLS on this listener, and where its failed handshakes are counted.
    tls: Option<(Arc<TlsAcceptor>, prometheus::IntCounterVec)>,
}

impl HttpListenerService {
    pub fn new(name: &'static str, listener: StdListener, app: Router) -> Self {
        HttpListenerService {
            name,
            listener: Mutex::new(Some(listener)),
            app,
            tls: None,
        }
    }

    pub fn with_tls(
        mut self,
        acceptor: Arc<TlsAcceptor>,
        failures: prometheus::IntCounterVec,
    ) -> Self {
        self.tls = Some((acceptor, failures));
        self
    }
}

/// A TCP listener whose connections come out of a TLS handshake. Each
/// handshake runs in a task of its own (bounded in time), so a slow client
/// never holds up the next one.
struct TlsListener {
    local: std::net::SocketAddr,
    ready: tokio::sync::mpsc::Receiver<(TlsStream<TcpStream>, std::net::SocketAddr)>,
}

impl TlsListener {
    fn start(
        tcp: tokio::net::TcpListener,
        acceptor: Arc<TlsAcceptor>,
        failures: prometheus::IntCounterVec,
    ) -> std::io::Result<TlsListener> {
        let local = tcp.local_addr()?;
        let (tx, ready) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let (conn, peer) = match tcp.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::debug!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                        continue;
                    }
                };
                if tx.is_closed() {
                    return;
                }
                let (tx, acceptor, failures) = (tx.clone(), acceptor.clone(), failures.clone());
                tokio::spawn(async move {
                    let handshake =
                        tokio_rustls::TlsAcceptor::from(acceptor.current()).accept(conn);
                    let reason = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                            return;
                        }
                        Ok(Err(e)) => crate::tls::failure_reason(&e),
                        Err(_) => "timeout",
                    };
                    failures
                        .with_label_values(&[acceptor.name.as_str(), reason])
                        .inc();
                });
            }
        });
        Ok(TlsListener { local, ready })
    }
}

/// The peer of an admin or metrics connection, plain or TLS.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub std::net::SocketAddr);

impl
    axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, tokio::net::TcpListener>>
    for Peer
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, tokio::net::TcpListener>) -> Peer {
        Peer(*stream.remote_addr())
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TlsListener>> for Peer {
    fn connect_info(stream: axum::serve::IncomingStream<'_, TlsListener>) -> Peer {
        Peer(*stream.remote_addr())
    }
}

const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // the accept task is gone: nothing will come again
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

#[async_trait]
impl BackgroundService for HttpListenerService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let Some(std_listener) = self.listener.lock().ok().and_then(|mut l| l.take()) else {
            return;
        };
        let listener = match std_listener
            .set_nonblocking(true)
            .and_then(|_| tokio::net::TcpListener::from_std(std_listener))
        {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(listener = self.name, error = %e, "cannot start listener");
                return;
            }
        };
        let app = self
            .app
            .clone()
            .into_make_service_with_connect_info::<Peer>();
        let stop = async move {
            let _ = shutdown.changed().await;
        };
        let served = match &self.tls {
            None => {
                axum::serve(listener, app)
                    .with_graceful_shutdown(stop)
                    .await
            }
            Some((acceptor, failures)) => {
                match TlsListener::start(listener, acceptor.clone(), failures.clone()) {
                    Ok(tls) => axum::serve(tls, app).with_graceful_shutdown(stop).await,
                    Err(e) => Err(e),
                }
            }
        };
        if let Err(e) = served {
            tracing::error!(listener = self.name, error = %e, "listener stopped");
        }
    }
}

#[derive(Clone)]
pub struct AdminState {
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    pub api: admin::AdminApi,
}

pub fn admin_router(state: AdminState) -> Router {
    let api = admin::router(state.api.clone());
    let tls = state.snapshot.load().config.admin.tls.is_some();
    let console = crate::console::operator_router(state.api.clone(), tls);
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
        .merge(api)
        .merge(console)
}

async fn healthz() -> impl IntoResponse {
    Json(serde_json::json!({"status": "ok"}))
}

/// Ready when a configuration is loaded and the store answers.
async fn readyz(State(state): State<AdminState>) -> impl IntoResponse {
    let snap = state.snapshot.load_full();
    let store = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        state.api.registry.store.ping(),
    )
    .await;
    let (status, store_state) = match store {
        Ok(Ok(())) => (StatusCode::OK, "ok"),
        Ok(Err(_)) | Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
    };
    let body = serde_json::json!({
        "status": if status == StatusCode::OK { "ready" } else { "not_ready" },
        "config": snap.config.source.display().to_string(),
        "routes": snap.config.routes.len(),
        "store": store_state,
    });
    (status, Json(body))
}

pub fn metrics_router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/metrics", get(render_metrics))
        .with_state(metrics)
}

async fn render_metrics(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics.render(),
    )
}
