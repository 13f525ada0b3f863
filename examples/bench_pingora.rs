//! The floor under the gateway, for `benches/profile.sh`: a Pingora proxy
//! with nothing of Tollgate in it. It implements only `upstream_peer` (one
//! upstream, Pingora's keep-alive pool), and runs with the gateway's
//! runtime settings (one worker thread, no work stealing) and allocator,
//! built with the same release profile.
//!
//! With a TLS address, a certificate and its key, it also listens for TLS
//! (HTTP/1.1 and HTTP/2 by ALPN) with Pingora's own rustls listener: the
//! floor of the TLS cases.
//!
//! Usage: `bench_pingora LISTEN UPSTREAM [TLS_LISTEN CERT KEY]`, e.g.
//! `bench_pingora 127.0.0.1:8080 127.0.0.1:9001 127.0.0.1:8443 cert.pem key.pem`.

use async_trait::async_trait;
use pingora::listeners::tls::TlsSettings;
use pingora::proxy::{http_proxy_service, ProxyHttp, Session};
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use pingora::upstreams::peer::HttpPeer;

// the gateway's allocator, as the gateway links it (src/main.rs)
#[cfg(feature = "mimalloc")]
use mimalloc as _;

struct Floor {
    upstream: String,
}

#[async_trait]
impl ProxyHttp for Floor {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        _ctx: &mut (),
    ) -> pingora::Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(
            self.upstream.as_str(),
            false,
            String::new(),
        )))
    }
}

const USAGE: &str = "usage: bench_pingora LISTEN UPSTREAM [TLS_LISTEN CERT KEY]";

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(upstream)) = (args.next(), args.next()) else {
        eprintln!("{USAGE}");
        std::process::exit(2);
    };
    let tls = match (args.next(), args.next(), args.next()) {
        (Some(addr), Some(cert), Some(key)) => Some((addr, cert, key)),
        (None, None, None) => None,
        _ => {
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    };
    let conf = ServerConf {
        threads: 1,
        work_stealing: false,
        // SIGTERM ends it at once, as it ends the gateway: a benchmark
        // stops it between cases with nothing left in flight
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(0),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut proxy = http_proxy_service(&server.configuration, Floor { upstream });
    proxy.add_tcp(&listen);
    if let Some((addr, cert, key)) = tls {
        let mut settings = match TlsSettings::intermediate(&cert, &key) {
            Ok(settings) => settings,
            Err(e) => {
                eprintln!("bench_pingora: TLS settings: {e}");
                std::process::exit(1);
            }
        };
        settings.enable_h2();
        proxy.add_tls_with_settings(&addr, None, settings);
    }
    server.add_service(proxy);
    server.run_forever();
}
