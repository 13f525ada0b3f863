//! The admin listener (`/healthz`, `/readyz`, the admin API) and the
//! metrics listener, both axum apps run as Pingora background services so
//! they share the gateway's lifecycle and shutdown.

pub mod admin;
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

use crate::runtime::Snapshot;
use crate::telemetry::Metrics;

/// An axum app on a listener bound before start-up (so bind errors are
/// reported by `serve` itself, with exit code 2).
pub struct HttpListenerService {
    pub name: &'static str,
    listener: Mutex<Option<StdListener>>,
    app: Router,
}

impl HttpListenerService {
    pub fn new(name: &'static str, listener: StdListener, app: Router) -> Self {
        HttpListenerService {
            name,
            listener: Mutex::new(Some(listener)),
            app,
        }
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
            .into_make_service_with_connect_info::<std::net::SocketAddr>();
        let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
            let _ = shutdown.changed().await;
        });
        if let Err(e) = serve.await {
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
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
        .merge(api)
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
