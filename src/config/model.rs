//! The compiled, typed configuration: what the rest of the gateway reads.
//! Every value here has been checked; nothing downstream re-parses text.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::Method;

#[derive(Debug, Clone)]
pub struct Config {
    pub source: PathBuf,
    pub server: ServerSettings,
    pub admin: AdminSettings,
    pub metrics: MetricsSettings,
    pub store: StoreSettings,
    pub redis: Option<RedisSettings>,
    pub auth: AuthSettings,
    pub plans: BTreeMap<String, Plan>,
    pub services: BTreeMap<String, Arc<Service>>,
    pub routes: Vec<Arc<Route>>,
    pub logging: LoggingSettings,
    pub usage: UsageSettings,
    /// Accounts and self-service; absent: no portal is served.
    pub portal: Option<PortalSettings>,
    /// What deserves a look but does not stop the gateway (a certificate
    /// about to expire), as `PATH:LINE:COL: message`.
    pub warnings: Vec<super::ConfigError>,
}

impl Config {
    /// The one-line summary `check-config` prints.
    pub fn summary(&self) -> String {
        format!(
            "{}: ok ({} routes, {} services, {} plans, {} external issuers; proxy on {}, admin on {}, metrics on {})",
            self.source.display(),
            self.routes.len(),
            self.services.len(),
            self.plans.len(),
            self.auth.issuers.len(),
            self.server
                .listen
                .iter()
                .map(|l| match l.tls {
                    Some(_) => format!("{} (tls)", l.addr),
                    None => l.addr.to_string(),
                })
                .collect::<Vec<_>>()
                .join(","),
            self.admin.listen,
            self.metrics.listen,
        )
    }
}

/// A proxy listener.
#[derive(Debug, Clone)]
pub struct Listener {
    pub addr: SocketAddr,
    pub tls: Option<Arc<TlsSettings>>,
    /// ALPN `h2` on TLS, prior-knowledge HTTP/2 (h2c) on plain.
    pub http2: bool,
}

/// TLS of one listener, its certificates already read and checked.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    pub certificates: Vec<Certificate>,
    pub min_version: TlsVersion,
    /// Client certificates: the CAs they must chain to, and whether one is
    /// required.
    pub client_auth: Option<ClientAuth>,
}

#[derive(Debug, Clone)]
pub struct Certificate {
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    /// SNI names (lower case; `*.` prefix matches one label); empty on the default.
    pub hosts: Vec<String>,
    pub key: Arc<rustls::sign::CertifiedKey>,
    /// The leaf's notAfter, Unix seconds.
    pub not_after: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    V1_2,
    V1_3,
}

#[derive(Debug, Clone)]
pub struct ClientAuth {
    pub ca_path: PathBuf,
    pub roots: Arc<rustls::RootCertStore>,
    pub required: bool,
}

#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub listen: Vec<Listener>,
    pub max_header_bytes: usize,
    pub header_timeout: Duration,
    /// How long a kept-alive connection may wait idle for its next request.
    pub keepalive_timeout: Duration,
    pub shutdown_timeout: Duration,
    pub trusted_proxies: Vec<IpNet>,
    pub threads: usize,
    /// Forward request headers whose names contain `_` (routes may override).
    pub keep_underscore_headers: bool,
}

/// An address block, `10.0.0.0/8` or a single address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl IpNet {
    /// `ADDRESS` or `ADDRESS/PREFIX`.
    pub fn parse(t: &str) -> Option<IpNet> {
        let (addr, prefix) = match t.split_once('/') {
            Some((a, p)) => (a.parse::<IpAddr>().ok()?, Some(p.parse::<u8>().ok()?)),
            None => (t.parse::<IpAddr>().ok()?, None),
        };
        let width = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(width);
        (prefix <= width).then_some(IpNet { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        fn masked(bits: u128, prefix: u8, width: u8) -> u128 {
            if prefix == 0 {
                0
            } else {
                bits >> (width - prefix)
            }
        }
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                masked(u32::from(net) as u128, self.prefix, 32)
                    == masked(u32::from(ip) as u128, self.prefix, 32)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                masked(u128::from(net), self.prefix, 128)
                    == masked(u128::from(ip), self.prefix, 128)
            }
            (IpAddr::V4(_), IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                Some(v4) => self.contains(IpAddr::V4(v4)),
                None => false,
            },
            (IpAddr::V6(_), IpAddr::V4(_)) => false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct AdminSettings {
    pub listen: SocketAddr,
    pub tls: Option<Arc<TlsSettings>>,
    pub token_env: String,
}

#[derive(Debug, Clone)]
pub struct MetricsSettings {
    pub listen: SocketAddr,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    Sqlite(PathBuf),
    Postgres(String),
}

impl StoreUrl {
    /// `sqlite` or `postgres`, for logs (a URL may hold a password).
    pub fn kind(&self) -> &'static str {
        match self {
            StoreUrl::Sqlite(_) => "sqlite",
            StoreUrl::Postgres(_) => "postgres",
        }
    }
}

#[derive(Debug, Clone)]
pub struct StoreSettings {
    pub url: StoreUrl,
    pub cache: CacheSettings,
    pub pepper_env: String,
}

#[derive(Debug, Clone)]
pub struct CacheSettings {
    pub ttl: Duration,
    pub negative_ttl: Duration,
    pub max_entries: u64,
}

#[derive(Debug, Clone)]
pub struct RedisSettings {
    pub url: String,
    /// Longest wait for one limit decision before the failure mode applies.
    pub timeout: Duration,
    pub failure_mode: FailureMode,
}

/// What a limited route does when the shared counters cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureMode {
    /// Let the request through (authentication still applies).
    Open,
    /// Refuse it with 429.
    Closed,
}

#[derive(Debug, Clone)]
pub struct AuthSettings {
    pub api_key: ApiKeySettings,
    pub tokens: TokenSettings,
    pub issuers: Vec<ExternalIssuer>,
}

#[derive(Debug, Clone)]
pub struct ApiKeySettings {
    /// Lower-case header name.
    pub header: http::HeaderName,
    pub default_ttl: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningAlgorithm {
    Es256,
    EdDsa,
    Rs256,
}

#[derive(Debug, Clone)]
pub struct TokenSettings {
    pub issuer: String,
    pub audience: String,
    pub ttl: Duration,
    pub algorithm: SigningAlgorithm,
    pub leeway: Duration,
}

/// Algorithms an external issuer may use; HMAC is not among them, since a
/// JWKS only publishes public keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtAlgorithm {
    Rs256,
    Rs384,
    Rs512,
    Ps256,
    Ps384,
    Ps512,
    Es256,
    Es384,
    EdDsa,
}

impl JwtAlgorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rs256 => "RS256",
            Self::Rs384 => "RS384",
            Self::Rs512 => "RS512",
            Self::Ps256 => "PS256",
            Self::Ps384 => "PS384",
            Self::Ps512 => "PS512",
            Self::Es256 => "ES256",
            Self::Es384 => "ES384",
            Self::EdDsa => "EdDSA",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "RS256" => Self::Rs256,
            "RS384" => Self::Rs384,
            "RS512" => Self::Rs512,
            "PS256" => Self::Ps256,
            "PS384" => Self::Ps384,
            "PS512" => Self::Ps512,
            "ES256" => Self::Es256,
            "ES384" => Self::Es384,
            "EdDSA" => Self::EdDsa,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone)]
pub struct ExternalIssuer {
    pub name: String,
    pub issuer: String,
    pub jwks_url: String,
    pub audiences: Vec<String>,
    pub algorithms: Vec<JwtAlgorithm>,
    pub client_claim: String,
    pub leeway: Duration,
    /// The console's OpenID Connect client at this issuer ("Sign in with").
    pub client_id: Option<String>,
    /// The environment variable holding that client's secret; none: a
    /// public client (PKCE only).
    pub client_secret_env: Option<String>,
}

/// Requests allowed per period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u64,
    pub per: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaPeriod {
    Day,
    Month,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub count: u64,
    pub per: QuotaPeriod,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub name: String,
    pub rate: Option<Rate>,
    /// Requests that may pass at once after a quiet spell (GCRA burst);
    /// the rate's count unless set.
    pub burst: u64,
    pub quota: Option<Quota>,
    /// Applies to subscriptions that name no plan.
    pub default: bool,
}

impl Plan {
    pub fn is_unlimited(&self) -> bool {
        self.rate.is_none() && self.quota.is_none()
    }
}

#[derive(Debug, Clone)]
pub struct Service {
    pub name: String,
    pub upstreams: Vec<SocketAddr>,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub retries: usize,
    pub tls: Option<UpstreamTls>,
    /// Speak HTTP/2 to the upstreams.
    pub http2: bool,
    /// Keeps this service's pooled upstream connections apart from
    /// another's (a hash of its name).
    pub pool_key: u64,
}

/// How the gateway reaches a service's upstreams over TLS.
#[derive(Debug, Clone)]
pub struct UpstreamTls {
    pub sni: String,
    /// The CAs to trust (None: the system roots).
    pub ca: Option<Arc<pingora::protocols::tls::CaType>>,
    pub verify: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialKind {
    Jwt,
    ApiKey,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthPolicy {
    Public,
    /// Accepted credential kinds, in the order they are tried.
    Required(Vec<CredentialKind>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    Exact(String),
    Prefix(String),
}

#[derive(Debug, Clone)]
pub struct RouteMatch {
    /// Lower-case host without port.
    pub host: Option<String>,
    pub path: PathMatch,
    /// Empty means every method.
    pub methods: Vec<Method>,
}

#[derive(Debug, Clone)]
pub struct DirectResponse {
    pub status: http::StatusCode,
    pub body: bytes::Bytes,
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
}

#[derive(Debug, Clone)]
pub enum RouteTarget {
    Service(Arc<Service>),
    Respond(DirectResponse),
}

#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    pub matcher: RouteMatch,
    pub target: RouteTarget,
    pub auth: AuthPolicy,
    pub scopes: Vec<String>,
    pub forward_authorization: bool,
    /// The path prefix removed before the path goes upstream.
    pub strip_prefix: Option<String>,
    /// Overrides `server.keep_underscore_headers` for this route.
    pub keep_underscore_headers: Option<bool>,
    /// Claims of a bearer token sent upstream: (claim path, header).
    pub forward_claims: Vec<(Vec<String>, http::HeaderName)>,
    /// The route's metric series, resolved on its first request.
    pub meters: crate::telemetry::RouteMeters,
}

impl Route {
    pub fn service_name(&self) -> &str {
        match &self.target {
            RouteTarget::Service(s) => &s.name,
            RouteTarget::Respond(_) => "none",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone)]
pub struct LoggingSettings {
    pub format: LogFormat,
    pub level: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registration {
    /// An admin creates every account.
    Invite,
    /// A verified token of a sign-in issuer creates its account.
    Open,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Approval {
    Auto,
    Manual,
}

#[derive(Debug, Clone)]
pub struct PortalService {
    pub plans: Vec<String>,
    pub approval: Approval,
    pub scopes: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct PortalSettings {
    /// Normalized, no trailing slash: `/portal`.
    pub path: String,
    pub password: bool,
    /// Names of `auth.issuers` whose tokens sign accounts in.
    pub issuers: Vec<String>,
    pub registration: Registration,
    pub session_ttl: Duration,
    pub services: BTreeMap<String, PortalService>,
    pub max_key_lifetime: Duration,
    pub allow_never_expiring_keys: bool,
}

impl PortalSettings {
    /// Does the portal serve this (normalized) path?
    pub fn serves(&self, path: &str) -> bool {
        path.strip_prefix(self.path.as_str())
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    }

    /// Every scope an account may give its clients.
    pub fn allowed_scopes(&self) -> impl Iterator<Item = &String> {
        self.services.values().flat_map(|s| s.scopes.iter())
    }
}

#[derive(Debug, Clone)]
pub struct UsageSettings {
    pub enabled: bool,
    pub retention: Duration,
}
