//! The Prometheus registry of one gateway (no global registry, so several
//! gateways can live in one process) and the metric families of SPEC §7.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry,
    TextEncoder,
};

/// `tollgate_cache_lookups_total{cache=…}`, resolved for one cache.
#[derive(Clone)]
pub struct CacheCounters {
    pub hit: IntCounter,
    pub miss: IntCounter,
}

impl CacheCounters {
    pub fn count(&self, hit: bool) {
        if hit {
            self.hit.inc()
        } else {
            self.miss.inc()
        }
    }
}

/// A route's series of `tollgate_requests_total`,
/// `tollgate_request_duration_seconds` and
/// `tollgate_upstream_duration_seconds`, resolved once per route:
/// `with_label_values` hashes every label and takes a lock on each call.
/// The statuses a route answers with are few; the first [`STATUS_SLOTS`]
/// seen are kept, any further one is looked up by its labels each time.
/// Counted through [`Metrics::count_answer`] and
/// [`Metrics::observe_upstream`].
#[derive(Default)]
pub struct RouteMeters(std::sync::OnceLock<RouteSeries>);

const STATUS_SLOTS: usize = 8;

struct RouteSeries {
    /// The address of the registry's `Metrics` the series belong to: a
    /// route compiled once and served by two gateways counts into each
    /// one's own.
    owner: usize,
    request_duration: Histogram,
    upstream_duration: Histogram,
    statuses: [std::sync::OnceLock<(u16, IntCounter)>; STATUS_SLOTS],
}

impl std::fmt::Debug for RouteMeters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteMeters")
            .field("resolved", &self.0.get().is_some())
            .finish()
    }
}

impl Clone for RouteMeters {
    /// A copy resolves its own series (the same ones, by their labels).
    fn clone(&self) -> Self {
        RouteMeters::default()
    }
}

impl RouteMeters {
    /// The route's series in `metrics`; `None` when this route was first
    /// served by another registry.
    fn get(&self, metrics: &Metrics, route: &str, service: &str) -> Option<&RouteSeries> {
        let series = self.0.get_or_init(|| RouteSeries {
            owner: metrics as *const Metrics as usize,
            request_duration: metrics.request_duration.with_label_values(&[route]),
            upstream_duration: metrics.upstream_duration.with_label_values(&[service]),
            statuses: Default::default(),
        });
        (series.owner == metrics as *const Metrics as usize).then_some(series)
    }
}

impl RouteSeries {
    /// Counts one answer of the route with `status`.
    fn count_request(&self, metrics: &Metrics, route: &str, service: &str, status: u16) {
        for slot in &self.statuses {
            // a slot another thread fills at the same moment holds its
            // status, not ours: then the next slot is tried
            let (seen, counter) =
                slot.get_or_init(|| (status, metrics.requests_of(route, service, status)));
            if *seen == status {
                counter.inc();
                return;
            }
        }
        metrics.requests_of(route, service, status).inc();
    }
}

pub struct Metrics {
    pub registry: Registry,
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub upstream_duration: HistogramVec,
    pub auth_failures: IntCounterVec,
    pub cache_lookups: IntCounterVec,
    pub jwks_refresh: IntCounterVec,
    pub tokens_issued: prometheus::IntCounter,
    pub rate_limited: IntCounterVec,
    /// Limit decisions the shared counter store (Redis) could not make,
    /// by what was done instead (`allowed`: fail open, `refused`: fail closed).
    pub rate_limit_backend_errors: IntCounterVec,
    pub config_reloads: IntCounterVec,
    /// From a change committed on any node to its cache eviction on this one.
    pub invalidation_lag: Histogram,
    /// Request headers the gateway did not forward, by reason.
    pub dropped_headers: IntCounterVec,
    /// Requests that ended by the client's fault (closed early, malformed
    /// body or head), by reason: logged at debug level, counted here.
    pub client_errors: IntCounterVec,
    /// TLS handshakes that failed, by listener and reason.
    pub tls_handshake_failures: IntCounterVec,
    /// Each served certificate's notAfter (Unix seconds), by listener and
    /// certificate file.
    pub certificate_expiry: prometheus::IntGaugeVec,
    /// Portal sign-ins by method (`password` or the issuer's name) and
    /// result (`ok`, `failed`, `locked`).
    pub portal_sign_ins: IntCounterVec,
    /// Active API keys that expire within a window (`within="7d"`).
    pub api_keys_expiring: prometheus::IntGaugeVec,
}

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

impl Metrics {
    pub fn new() -> prometheus::Result<Self> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "tollgate_requests_total",
                "Requests answered, by route, service and status",
            ),
            &["route", "service", "status"],
        )?;
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "tollgate_request_duration_seconds",
                "Time from request head to the end of the answer, by route",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["route"],
        )?;
        let upstream_duration = HistogramVec::new(
            HistogramOpts::new(
                "tollgate_upstream_duration_seconds",
                "Time from choosing an upstream to its response head, by service",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["service"],
        )?;
        let auth_failures = IntCounterVec::new(
            Opts::new(
                "tollgate_auth_failures_total",
                "Refused credentials, by reason",
            ),
            &["reason"],
        )?;
        let cache_lookups = IntCounterVec::new(
            Opts::new(
                "tollgate_cache_lookups_total",
                "Credential cache lookups, by cache and result",
            ),
            &["cache", "result"],
        )?;
        let jwks_refresh = IntCounterVec::new(
            Opts::new(
                "tollgate_jwks_refresh_total",
                "JWKS fetches of external issuers, by issuer and result",
            ),
            &["issuer", "result"],
        )?;
        registry.register(Box::new(jwks_refresh.clone()))?;
        let tokens_issued = prometheus::IntCounter::new(
            "tollgate_tokens_issued_total",
            "Access tokens issued by the built-in token endpoint",
        )?;
        registry.register(Box::new(tokens_issued.clone()))?;
        let rate_limited = IntCounterVec::new(
            Opts::new(
                "tollgate_rate_limited_total",
                "Requests refused by a rate limit or quota, by service and plan",
            ),
            &["service", "plan"],
        )?;
        registry.register(Box::new(rate_limited.clone()))?;
        let rate_limit_backend_errors = IntCounterVec::new(
            Opts::new(
                "tollgate_rate_limit_backend_errors_total",
                "Limit decisions the shared counter store could not make, by the action taken",
            ),
            &["action"],
        )?;
        registry.register(Box::new(rate_limit_backend_errors.clone()))?;
        let config_reloads = IntCounterVec::new(
            Opts::new(
                "tollgate_config_reloads_total",
                "Configuration reloads, by result",
            ),
            &["result"],
        )?;
        registry.register(Box::new(config_reloads.clone()))?;
        for result in ["ok", "error"] {
            config_reloads.with_label_values(&[result]);
        }
        let invalidation_lag = Histogram::with_opts(
            HistogramOpts::new(
                "tollgate_invalidation_lag_seconds",
                "Time from a committed change to the eviction of the cache entries it affects on this node",
            )
            .buckets(vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0]),
        )?;
        registry.register(Box::new(invalidation_lag.clone()))?;
        let dropped_headers = IntCounterVec::new(
            Opts::new(
                "tollgate_dropped_headers_total",
                "Request headers not forwarded upstream, by reason",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(dropped_headers.clone()))?;
        let client_errors = IntCounterVec::new(
            Opts::new(
                "tollgate_client_errors_total",
                "Requests ended by the client's fault (closed early, malformed head or body), by reason",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(client_errors.clone()))?;
        let tls_handshake_failures = IntCounterVec::new(
            Opts::new(
                "tollgate_tls_handshake_failures_total",
                "TLS handshakes that failed, by listener and reason",
            ),
            &["listener", "reason"],
        )?;
        registry.register(Box::new(tls_handshake_failures.clone()))?;
        let certificate_expiry = prometheus::IntGaugeVec::new(
            Opts::new(
                "tollgate_certificate_expiry_timestamp_seconds",
                "notAfter of each certificate a TLS listener serves, as a Unix time",
            ),
            &["listener", "certificate"],
        )?;
        registry.register(Box::new(certificate_expiry.clone()))?;
        let portal_sign_ins = IntCounterVec::new(
            Opts::new(
                "tollgate_portal_sign_ins_total",
                "Portal sign-ins by method (password or the issuer's name) and result (ok, failed, locked)",
            ),
            &["method", "result"],
        )?;
        registry.register(Box::new(portal_sign_ins.clone()))?;
        let api_keys_expiring = prometheus::IntGaugeVec::new(
            Opts::new(
                "tollgate_api_keys_expiring",
                "Active API keys that expire within the window, refreshed every 10 s",
            ),
            &["within"],
        )?;
        registry.register(Box::new(api_keys_expiring.clone()))?;
        registry.register(Box::new(auth_failures.clone()))?;
        registry.register(Box::new(cache_lookups.clone()))?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(request_duration.clone()))?;
        registry.register(Box::new(upstream_duration.clone()))?;
        #[cfg(target_os = "linux")]
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        Ok(Metrics {
            registry,
            requests,
            request_duration,
            upstream_duration,
            auth_failures,
            cache_lookups,
            jwks_refresh,
            tokens_issued,
            rate_limited,
            rate_limit_backend_errors,
            config_reloads,
            invalidation_lag,
            dropped_headers,
            client_errors,
            tls_handshake_failures,
            certificate_expiry,
            portal_sign_ins,
            api_keys_expiring,
        })
    }

    pub fn jwks_refresh(&self, issuer: &str, ok: bool) {
        self.jwks_refresh
            .with_label_values(&[issuer, if ok { "ok" } else { "error" }])
            .inc();
    }

    /// `tollgate_requests_total` of one route, service and status, by its
    /// labels.
    fn requests_of(&self, route: &str, service: &str, status: u16) -> IntCounter {
        let status = status.to_string();
        self.requests
            .with_label_values(&[route, service, status.as_str()])
    }

    /// Counts one answer and its time, by the route's kept series when
    /// there is a route (`meters`), else by the labels.
    pub fn count_answer(
        &self,
        meters: Option<&RouteMeters>,
        route: &str,
        service: &str,
        status: u16,
        seconds: f64,
    ) {
        match meters.and_then(|m| m.get(self, route, service)) {
            Some(series) => {
                series.count_request(self, route, service, status);
                series.request_duration.observe(seconds);
            }
            None => {
                self.requests_of(route, service, status).inc();
                self.request_duration
                    .with_label_values(&[route])
                    .observe(seconds);
            }
        }
    }

    /// The time from choosing an upstream to its response head, by the
    /// route's kept series.
    pub fn observe_upstream(&self, meters: &RouteMeters, route: &str, service: &str, seconds: f64) {
        match meters.get(self, route, service) {
            Some(series) => series.upstream_duration.observe(seconds),
            None => self
                .upstream_duration
                .with_label_values(&[service])
                .observe(seconds),
        }
    }

    pub fn auth_failure(&self, reason: &str) {
        self.auth_failures.with_label_values(&[reason]).inc();
    }

    /// The hit and miss series of one cache, looked up once here rather
    /// than by label on every request (and shown at zero from the start).
    pub fn cache_counters(&self, cache: &str) -> CacheCounters {
        CacheCounters {
            hit: self.cache_lookups.with_label_values(&[cache, "hit"]),
            miss: self.cache_lookups.with_label_values(&[cache, "miss"]),
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let encoder = TextEncoder::new();
        if let Err(e) = encoder.encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Metrics {
    /// The expiry gauges of one listener's certificates, as now served.
    pub fn certificates_served(&self, listener: &str, tls: &crate::config::TlsSettings) {
        for c in &tls.certificates {
            self.certificate_expiry
                .with_label_values(&[listener, &c.cert_path.display().to_string()])
                .set(c.not_after);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn requests(m: &Metrics, route: &str, status: &str) -> u64 {
        m.requests.with_label_values(&[route, "svc", status]).get()
    }

    #[test]
    fn a_route_counts_every_status_into_its_own_series() {
        let m = Metrics::new().unwrap();
        let meters = RouteMeters::default();
        // more statuses than slots: the rest are counted by their labels
        let statuses: Vec<u16> = (0..STATUS_SLOTS as u16 + 4).map(|i| 200 + i).collect();
        let mut answers = 0;
        for (n, status) in statuses.iter().enumerate() {
            for _ in 0..=n {
                m.count_answer(Some(&meters), "r", "svc", *status, 0.5);
                answers += 1;
            }
        }
        assert!(meters.get(&m, "r", "svc").is_some(), "the series are kept");
        for (n, status) in statuses.iter().enumerate() {
            assert_eq!(
                requests(&m, "r", &status.to_string()),
                n as u64 + 1,
                "{status}"
            );
        }
        m.observe_upstream(&meters, "r", "svc", 0.25);
        assert_eq!(
            m.request_duration
                .with_label_values(&["r"])
                .get_sample_count(),
            answers
        );
        assert_eq!(
            m.upstream_duration
                .with_label_values(&["svc"])
                .get_sample_count(),
            1
        );
        assert!(m
            .render()
            .contains(r#"tollgate_requests_total{route="r",service="svc",status="211"} 12"#));
    }

    #[test]
    fn a_route_served_by_another_registry_is_counted_there_by_its_labels() {
        let (first, second) = (Metrics::new().unwrap(), Metrics::new().unwrap());
        let meters = RouteMeters::default();
        first.count_answer(Some(&meters), "r", "svc", 200, 0.1);
        assert!(meters.get(&second, "r", "svc").is_none());
        second.count_answer(Some(&meters), "r", "svc", 200, 0.1);
        second.observe_upstream(&meters, "r", "svc", 0.1);
        assert_eq!(requests(&first, "r", "200"), 1);
        assert_eq!(requests(&second, "r", "200"), 1);
        assert_eq!(
            second
                .upstream_duration
                .with_label_values(&["svc"])
                .get_sample_count(),
            1
        );
        assert_eq!(
            first
                .upstream_duration
                .with_label_values(&["svc"])
                .get_sample_count(),
            0
        );
        // a copy of the route resolves afresh
        assert!(meters.clone().get(&second, "r", "svc").is_some());
    }
}
