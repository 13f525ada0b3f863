//! The serde mirror of the YAML file: every section denies unknown keys and
//! keeps durations, rates and addresses as text, so that the compiler in
//! `compile.rs` can report every bad value with its position at once.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    #[serde(default)]
    pub listen: Option<Vec<String>>,
    /// Largest request head (request line + headers) accepted; larger gets 431.
    #[serde(default)]
    pub max_header_bytes: Option<usize>,
    /// Total time a client has to send a request head.
    #[serde(default)]
    pub header_timeout: Option<String>,
    /// How long SIGTERM waits for in-flight requests.
    #[serde(default)]
    pub shutdown_timeout: Option<String>,
    /// Peers whose `X-Forwarded-For` / `X-Forwarded-Proto` are trusted (IPs or CIDRs).
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// Worker threads of the proxy service (default: number of cores).
    #[serde(default)]
    pub threads: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    #[serde(default)]
    pub listen: Option<String>,
    #[serde(default)]
    pub token_env: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    #[serde(default)]
    pub listen: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub cache: RawCache,
    /// Environment variable holding the pepper for key and secret hashes.
    #[serde(default)]
    pub pepper_env: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    #[serde(default)]
    pub ttl: Option<String>,
    #[serde(default)]
    pub negative_ttl: Option<String>,
    #[serde(default)]
    pub max_entries: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRedis {
    pub url: String,
    #[serde(default)]
    pub timeout: Option<String>,
    #[serde(default)]
    pub failure_mode: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    #[serde(default)]
    pub api_key: RawApiKey,
    #[serde(default)]
    pub tokens: RawTokens,
    #[serde(default)]
    pub issuers: Vec<RawIssuer>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApiKey {
    #[serde(default)]
    pub header: Option<String>,
    #[serde(default)]
    pub default_ttl: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTokens {
    #[serde(default)]
    pub issuer: Option<String>,
    #[serde(default)]
    pub audience: Option<String>,
    #[serde(default)]
    pub ttl: Option<String>,
    #[serde(default)]
    pub algorithm: Option<String>,
    #[serde(default)]
    pub leeway: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIssuer {
    pub name: String,
    pub issuer: String,
    pub jwks_url: String,
    #[serde(default)]
    pub audiences: Vec<String>,
    #[serde(default)]
    pub algorithms: Vec<String>,
    #[serde(default)]
    pub client_claim: Option<String>,
    #[serde(default)]
    pub leeway: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPlan {
    #[serde(default)]
    pub rate: Option<String>,
    #[serde(default)]
    pub quota: Option<String>,
    #[serde(default)]
    pub burst: Option<u64>,
    #[serde(default)]
    pub default: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawService {
    pub upstreams: Vec<String>,
    #[serde(default)]
    pub timeouts: RawTimeouts,
    /// Extra attempts on another target when a connection cannot be made.
    #[serde(default)]
    pub retries: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTimeouts {
    #[serde(default)]
    pub connect: Option<String>,
    #[serde(default)]
    pub read: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub name: String,
    #[serde(rename = "match")]
    pub matcher: RawMatch,
    #[serde(default)]
    pub service: Option<String>,
    #[serde(default)]
    pub respond: Option<RawRespond>,
    /// `public`, or a list of credential kinds; interpreted by the compiler.
    pub auth: serde_yaml::Value,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub forward_authorization: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMatch {
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub path_prefix: Option<String>,
    #[serde(default)]
    pub methods: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRespond {
    pub status: u16,
    #[serde(default)]
    pub body: String,
    #[serde(default)]
    pub content_type: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLogging {
    #[serde(default)]
    pub format: Option<String>,
    #[serde(default)]
    pub level: Option<String>,
}
