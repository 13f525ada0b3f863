//! A minimal HTTP upstream for load runs (`benches/load.sh`): answers every
//! request with a small JSON body. Usage: `bench_upstream 127.0.0.1:PORT`.

use axum::routing::any;
use axum::Router;

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".to_string());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&addr).await?;
        let app = Router::new().fallback(any(|| async { "{\"ok\":true}" }));
        axum::serve(listener, app).await
    })
}
