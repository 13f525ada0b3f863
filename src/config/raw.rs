//! The serde mirror of the YAML file: every section denies unknown keys and
//! keeps durations, rates and addresses as text, so that the compiler in
//! `compile.rs` can report every bad value with its position at once.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    /// Proxy listeners: `IP:PORT` (plain HTTP/1.1, and HTTP/2 with prior
    /// knowledge), or an object with `address`, `tls` and `http2`.
    #[serde(default)]
    #[schemars(schema_with = "listen_schema")]
    pub listen: Option<Vec<serde_yaml::Value>>,
    /// Largest request head (request line + headers) accepted; larger gets 431.
    #[serde(default)]
    pub max_header_bytes: Option<usize>,
    /// Time a client has to send a whole request head, counted from its
    /// first byte (from the accept for the first head of a connection).
    #[serde(default)]
    pub header_timeout: Option<String>,
    /// How long a kept-alive connection may wait idle for its next request.
    #[serde(default)]
    pub keepalive_timeout: Option<String>,
    /// How long SIGTERM waits for in-flight requests.
    #[serde(default)]
    pub shutdown_timeout: Option<String>,
    /// Peers whose `X-Forwarded-For` / `X-Forwarded-Proto` are trusted (IPs or CIDRs).
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// Worker threads of the proxy service (default: number of cores).
    #[serde(default)]
    pub threads: Option<usize>,
    /// Forward request headers whose names contain `_` (dropped by default:
    /// CGI-style upstreams read `X_Consumer_Id` as `X-Consumer-Id`).
    #[serde(default)]
    pub keep_underscore_headers: bool,
}

/// A proxy listener in its object form.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    /// `IP:PORT` to listen on.
    pub address: String,
    /// Terminate TLS on this listener.
    #[serde(default)]
    pub tls: Option<RawTls>,
    /// Offer HTTP/2 (ALPN `h2`, with `http/1.1`) on a TLS listener, and
    /// accept HTTP/2 with prior knowledge (h2c) on a plain one. Default true.
    #[serde(default)]
    pub http2: Option<bool>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// PEM certificate chains and their keys; the first is the default,
    /// the others are chosen by SNI from their `hosts`.
    pub certificates: Vec<RawCertificate>,
    /// Oldest TLS version accepted: "1.2" (default) or "1.3".
    #[serde(default)]
    pub min_version: Option<String>,
    /// PEM bundle of the CAs whose client certificates are accepted.
    #[serde(default)]
    pub client_ca: Option<String>,
    /// `optional` (default with `client_ca`) or `required`.
    #[serde(default)]
    pub client_auth: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCertificate {
    /// PEM certificate chain, leaf first.
    pub cert: String,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: String,
    /// Server names (SNI) this certificate answers; `*.example.com` matches
    /// one label. Empty on the default certificate.
    #[serde(default)]
    pub hosts: Vec<String>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    #[serde(default)]
    pub listen: Option<String>,
    /// Serve the admin API over TLS.
    #[serde(default)]
    pub tls: Option<RawTls>,
    #[serde(default)]
    pub token_env: Option<String>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    #[serde(default)]
    pub listen: Option<String>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
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

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    #[serde(default)]
    pub ttl: Option<String>,
    #[serde(default)]
    pub negative_ttl: Option<String>,
    #[serde(default)]
    pub max_entries: Option<u64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRedis {
    pub url: String,
    #[serde(default)]
    pub timeout: Option<String>,
    #[serde(default)]
    pub failure_mode: Option<String>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    #[serde(default)]
    pub api_key: RawApiKey,
    #[serde(default)]
    pub tokens: RawTokens,
    #[serde(default)]
    pub issuers: Vec<RawIssuer>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawApiKey {
    #[serde(default)]
    pub header: Option<String>,
    #[serde(default)]
    pub default_ttl: Option<String>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
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

#[derive(Debug, Deserialize, JsonSchema)]
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
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub client_secret_env: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
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

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawService {
    pub upstreams: Vec<String>,
    #[serde(default)]
    pub timeouts: RawTimeouts,
    /// Extra attempts on another target when a connection cannot be made.
    #[serde(default)]
    pub retries: Option<usize>,
    /// Reach the upstreams over TLS.
    #[serde(default)]
    pub tls: Option<RawUpstreamTls>,
    /// `http1` (default) or `http2` (e.g. gRPC upstreams; over TLS by ALPN).
    #[serde(default)]
    pub protocol: Option<String>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawUpstreamTls {
    /// Server name sent and verified (default: the host of the first upstream).
    #[serde(default)]
    pub sni: Option<String>,
    /// PEM bundle of the CAs the upstream's certificate must chain to
    /// (default: the system's roots).
    #[serde(default)]
    pub ca: Option<String>,
    /// Verify the upstream's certificate and name (default true; false is
    /// warned about at every start).
    #[serde(default)]
    pub verify: Option<bool>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTimeouts {
    #[serde(default)]
    pub connect: Option<String>,
    #[serde(default)]
    pub read: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
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
    #[schemars(schema_with = "auth_policy_schema")]
    pub auth: serde_yaml::Value,
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Send the client's `Authorization` header to the upstream.
    #[serde(default)]
    pub forward_authorization: bool,
    /// Remove the route's `path_prefix` from the path the upstream receives.
    #[serde(default)]
    pub strip_prefix: bool,
    /// Claims of the caller's bearer token sent upstream as headers:
    /// dotted claim path -> header name.
    #[serde(default)]
    pub forward_claims: BTreeMap<String, String>,
    /// Overrides `server.keep_underscore_headers` for this route.
    #[serde(default)]
    pub keep_underscore_headers: Option<bool>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
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

#[derive(Debug, Deserialize, JsonSchema)]
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

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawLogging {
    #[serde(default)]
    pub format: Option<String>,
    #[serde(default)]
    pub level: Option<String>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawPortal {
    /// Where the self-service API (`PATH/v1`) and the console (`PATH/`) are
    /// served on the proxy listener (default `/portal`).
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub sign_in: RawSignIn,
    /// `invite` (an admin creates accounts, the default) or `open` (an
    /// issuer's first sign-in creates the account).
    #[serde(default)]
    pub registration: Option<String>,
    /// How long a sign-in lasts (default 12h).
    #[serde(default)]
    pub session_ttl: Option<String>,
    /// The services accounts may subscribe to by themselves.
    #[serde(default)]
    pub services: BTreeMap<String, RawPortalService>,
    /// Keys an account creates expire within this (default 90d).
    #[serde(default)]
    pub max_key_lifetime: Option<String>,
    /// May an account create a key that never expires? (default false)
    #[serde(default)]
    pub allow_never_expiring_keys: bool,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSignIn {
    /// Built-in accounts sign in with username and password (default true).
    #[serde(default)]
    pub password: Option<bool>,
    /// Names of `auth.issuers` whose tokens sign accounts in.
    #[serde(default)]
    pub issuers: Vec<String>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawPortalService {
    /// Plans an account may choose (none: subscriptions without a plan).
    #[serde(default)]
    pub plans: Vec<String>,
    /// `auto` (the default) or `manual` (an admin approves each one).
    #[serde(default)]
    pub approval: Option<String>,
    /// Scopes an account may give its clients for this service.
    #[serde(default)]
    pub scopes: Vec<String>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawUsage {
    /// Count requests per client, key and service (default true).
    #[serde(default)]
    pub enabled: Option<bool>,
    /// How long hourly usage buckets are kept (default 90d).
    #[serde(default)]
    pub retention: Option<String>,
}

/// The whole file. The compiler reads each section on its own (so that one
/// mistake does not hide the next) with the types above; this struct only
/// assembles them for the JSON Schema, and a test keeps its keys equal to
/// the sections the compiler reads.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Tollgate configuration")]
#[allow(dead_code)] // its fields are read by the schema, not by code
pub struct RawConfig {
    /// The proxy listener and its limits.
    #[serde(default)]
    pub server: RawServer,
    /// The admin API listener.
    #[serde(default)]
    pub admin: RawAdmin,
    /// The Prometheus metrics listener.
    #[serde(default)]
    pub metrics: RawMetrics,
    /// Where clients, keys and subscriptions live, and their caches.
    #[serde(default)]
    pub store: RawStore,
    /// Optional: rate-limit counters shared by every node.
    #[serde(default)]
    pub redis: Option<RawRedis>,
    /// API keys, the built-in token issuer and external issuers.
    #[serde(default)]
    pub auth: RawAuth,
    /// Rate limits and quotas by plan name.
    #[serde(default)]
    pub plans: BTreeMap<String, RawPlan>,
    /// Upstream services by name.
    #[serde(default)]
    pub services: BTreeMap<String, RawService>,
    /// Request matchers, in any order (the most specific wins).
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    /// Log format and level.
    #[serde(default)]
    pub logging: RawLogging,
    /// Request counts per client, key and service over time.
    #[serde(default)]
    pub usage: RawUsage,
    /// Optional: accounts, the self-service API and the console.
    #[serde(default)]
    pub portal: Option<RawPortal>,
}

fn listen_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let listener = generator.subschema_for::<RawListener>();
    schemars::json_schema!({
        "type": "array",
        "items": {
            "oneOf": [
                { "type": "string", "description": "IP:PORT, plain HTTP" },
                listener
            ]
        }
    })
}

fn auth_policy_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "description": "`public`, or the credential kinds the route accepts",
        "oneOf": [
            { "enum": ["public", "api_key", "jwt"] },
            {
                "type": "array",
                "items": { "enum": ["api_key", "jwt"] },
                "minItems": 1,
                "uniqueItems": true
            }
        ]
    })
}

/// The JSON Schema of the configuration file, pretty-printed.
pub fn schema_json() -> String {
    let schema = schemars::schema_for!(RawConfig);
    serde_json::to_string_pretty(&schema).unwrap_or_default() + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> serde_json::Value {
        serde_json::from_str(&schema_json()).expect("schema is JSON")
    }

    /// Every object of the schema, with where it is (`routes[].match`).
    fn objects(
        v: &serde_json::Value,
        defs: &serde_json::Value,
        at: &str,
        out: &mut Vec<(String, serde_json::Value)>,
    ) {
        if let Some(r) = v.get("$ref").and_then(|r| r.as_str()) {
            let name = r.trim_start_matches("#/$defs/");
            return objects(&defs[name], defs, at, out);
        }
        for key in ["anyOf", "oneOf", "allOf"] {
            for alt in v.get(key).and_then(|a| a.as_array()).into_iter().flatten() {
                objects(alt, defs, at, out);
            }
        }
        if let Some(items) = v.get("items") {
            objects(items, defs, &format!("{at}[]"), out);
        }
        if let Some(props) = v.get("properties").and_then(|p| p.as_object()) {
            out.push((at.to_string(), v.clone()));
            for (name, prop) in props {
                let path = if at.is_empty() {
                    name.clone()
                } else {
                    format!("{at}.{name}")
                };
                objects(prop, defs, &path, out);
            }
        }
        if let Some(extra) = v.get("additionalProperties").filter(|e| e.is_object()) {
            objects(extra, defs, &format!("{at}.<name>"), out);
        }
    }

    fn all_objects() -> Vec<(String, serde_json::Value)> {
        let s = schema();
        let mut out = Vec::new();
        objects(&s, &s["$defs"], "", &mut out);
        out
    }

    #[test]
    fn the_shipped_schema_file_is_what_the_binary_prints() {
        let file = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/docs/tollgate.schema.json"
        ))
        .expect("docs/tollgate.schema.json");
        assert!(
            file == schema_json(),
            "docs/tollgate.schema.json is stale: run `tollgate config schema > docs/tollgate.schema.json`"
        );
    }

    #[test]
    fn the_schema_has_exactly_the_sections_the_compiler_reads() {
        let s = schema();
        let mut top: Vec<&str> = s["properties"]
            .as_object()
            .expect("properties")
            .keys()
            .map(String::as_str)
            .collect();
        let mut sections = crate::config::compile::SECTIONS.to_vec();
        top.sort_unstable();
        sections.sort_unstable();
        assert_eq!(top, sections);
    }

    #[test]
    fn every_object_of_the_schema_refuses_unknown_keys() {
        let objects = all_objects();
        assert!(objects.len() > 15, "{}", objects.len());
        for (at, obj) in objects {
            assert_eq!(
                obj["additionalProperties"],
                serde_json::Value::Bool(false),
                "`{at}` accepts unknown keys"
            );
        }
    }

    #[test]
    fn every_key_is_documented_in_the_configuration_reference() {
        let doc = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/docs/configuration.md"
        ))
        .expect("docs/configuration.md");
        // `<name>`, `<plan>`, … all stand for a map key
        let placeholder = |text: &str| -> String {
            let mut out = String::new();
            let mut inside = false;
            for c in text.chars() {
                match c {
                    '<' => inside = true,
                    '>' if inside => {
                        inside = false;
                        out.push_str("<>");
                    }
                    _ if inside => {}
                    _ => out.push(c),
                }
            }
            out
        };
        let doc = placeholder(&doc);
        let mut missing = Vec::new();
        for (at, obj) in all_objects() {
            for name in obj["properties"].as_object().expect("properties").keys() {
                let path = if at.is_empty() {
                    name.clone()
                } else {
                    format!("{at}.{name}")
                };
                if !doc.contains(&format!("`{}`", placeholder(&path))) {
                    missing.push(path);
                }
            }
        }
        assert!(
            missing.is_empty(),
            "docs/configuration.md lacks: {missing:?}"
        );
    }
}
