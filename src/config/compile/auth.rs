//! The `auth` section: API keys, the built-in token issuer, external issuers.

use super::*;

impl Compiler {
    pub(super) fn auth(
        &mut self,
        v: Option<&Value>,
        path: &NodePath,
        server: Option<&ServerSettings>,
    ) -> Option<AuthSettings> {
        let raw: RawAuth = self.section(v, path)?;
        let kp = path.key("api_key");
        let header_text = raw.api_key.header.as_deref().unwrap_or("X-API-Key");
        let header = match http::HeaderName::from_bytes(header_text.as_bytes()) {
            Ok(h) if h != http::header::AUTHORIZATION && h != http::header::HOST => h,
            _ => {
                self.err(
                    &kp.key("header"),
                    format!("`{header_text}` cannot carry API keys"),
                );
                http::HeaderName::from_static("x-api-key")
            }
        };
        let api_key = ApiKeySettings {
            header,
            default_ttl: self.duration(
                raw.api_key.default_ttl.as_deref(),
                &kp.key("default_ttl"),
                Duration::from_secs(15 * 86_400),
            ),
        };

        let tp = path.key("tokens");
        let default_issuer = server
            .and_then(|s| s.listen.first())
            .map(|l| match l.tls {
                Some(_) => format!("https://{}", l.addr),
                None => format!("http://{}", l.addr),
            })
            .unwrap_or_else(|| "http://127.0.0.1:8080".into());
        let algorithm = match raw.tokens.algorithm.as_deref().unwrap_or("ES256") {
            "ES256" => SigningAlgorithm::Es256,
            "EdDSA" => SigningAlgorithm::EdDsa,
            "RS256" => SigningAlgorithm::Rs256,
            other => {
                self.err(
                    &tp.key("algorithm"),
                    format!(
                        "unsupported signing algorithm `{other}`: expected ES256, EdDSA or RS256"
                    ),
                );
                SigningAlgorithm::Es256
            }
        };
        let leeway_default = Duration::from_secs(30);
        let tokens = TokenSettings {
            issuer: raw.tokens.issuer.unwrap_or(default_issuer),
            audience: raw.tokens.audience.unwrap_or_else(|| "tollgate".into()),
            ttl: self.duration(
                raw.tokens.ttl.as_deref(),
                &tp.key("ttl"),
                Duration::from_secs(3600),
            ),
            algorithm,
            leeway: self.leeway(
                raw.tokens.leeway.as_deref(),
                &tp.key("leeway"),
                leeway_default,
            ),
        };

        let mut issuers = Vec::new();
        let mut names = HashSet::new();
        for (i, iss) in raw.issuers.into_iter().enumerate() {
            let ip = path.key("issuers").index(i);
            if iss.name.is_empty() || !names.insert(iss.name.clone()) {
                self.err(
                    &ip.key("name"),
                    format!("issuer name `{}` is empty or repeated", iss.name),
                );
            }
            if iss.issuer.is_empty() {
                self.err(&ip.key("issuer"), "must not be empty");
            }
            if iss.issuer == tokens.issuer {
                self.err(&ip.key("issuer"), "is the built-in token issuer");
            }
            if !(iss.jwks_url.starts_with("https://") || iss.jwks_url.starts_with("http://")) {
                self.err(&ip.key("jwks_url"), "must be an http:// or https:// URL");
            }
            if iss.audiences.is_empty() {
                self.err(&ip.key("audiences"), "at least one audience is required");
            }
            if iss.algorithms.is_empty() {
                self.err(&ip.key("algorithms"), "at least one algorithm is required");
            }
            let mut algorithms = Vec::new();
            for (j, a) in iss.algorithms.iter().enumerate() {
                match JwtAlgorithm::parse(a) {
                    Some(alg) => algorithms.push(alg),
                    None if a.starts_with("HS") => self.err(
                        &ip.key("algorithms").index(j),
                        format!("`{a}` is refused: HMAC keys are never taken from a JWKS"),
                    ),
                    None => self.err(
                        &ip.key("algorithms").index(j),
                        format!("unsupported algorithm `{a}`"),
                    ),
                }
            }
            let leeway = self.leeway(iss.leeway.as_deref(), &ip.key("leeway"), tokens.leeway);
            if let Some(id) = &iss.client_id {
                // the console's ID tokens are verified like every token of
                // the issuer: their audience is the client id
                if id.is_empty() {
                    self.err(&ip.key("client_id"), "must not be empty");
                } else if !iss.audiences.contains(id) {
                    self.err(
                        &ip.key("client_id"),
                        format!("`{id}` must also be one of `audiences`: it is the audience of the ID tokens"),
                    );
                }
            }
            if iss.client_secret_env.is_some() && iss.client_id.is_none() {
                self.err(&ip.key("client_secret_env"), "needs `client_id`");
            }
            issuers.push(ExternalIssuer {
                name: iss.name,
                issuer: iss.issuer,
                jwks_url: iss.jwks_url,
                audiences: iss.audiences,
                algorithms,
                client_claim: iss.client_claim.unwrap_or_else(|| "azp".into()),
                leeway,
                client_id: iss.client_id,
                client_secret_env: iss.client_secret_env,
            });
        }
        Some(AuthSettings {
            api_key,
            tokens,
            issuers,
        })
    }
    /// A leeway may be zero, unlike other durations.
    pub(super) fn leeway(
        &mut self,
        text: Option<&str>,
        path: &NodePath,
        default: Duration,
    ) -> Duration {
        match text.map(str::trim) {
            Some("0") | Some("0s") => Duration::ZERO,
            other => self.duration(other, path, default),
        }
    }
}
