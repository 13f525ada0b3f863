//! Raw YAML -> typed `Config`. Each section, each route and each service is
//! deserialized on its own so that one mistake does not hide the next; every
//! value is then checked here, and all errors are returned together.

use std::collections::{BTreeMap, HashSet};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_yaml::Value;

mod auth;
mod listeners;
mod plans;
mod portal;
mod routes;
mod store;

use super::locate::{NodePath, Pos, PositionIndex, Seg};
use super::model::*;
use super::raw::*;
use super::{ConfigError, ConfigErrors};
use crate::path::normalize_path;

pub(super) const SECTIONS: &[&str] = &[
    "server", "admin", "metrics", "store", "redis", "auth", "plans", "services", "routes",
    "logging", "usage", "portal",
];

/// Pingora refuses request heads above 1 MiB on its own.
const MAX_HEADER_BYTES_LIMIT: usize = 1024 * 1024 - 1;

pub(super) fn compile(text: &str, source: &Path) -> Result<Config, ConfigErrors> {
    let mut c = Compiler {
        file: source.to_path_buf(),
        index: PositionIndex::build(text),
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    let doc: Value = match serde_yaml::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            let (line, col) = e
                .location()
                .map(|l| (l.line(), l.column()))
                .unwrap_or((1, 1));
            c.errors.push(ConfigError {
                file: c.file.clone(),
                line,
                col,
                message: format!("invalid YAML: {}", strip_location(&e.to_string())),
            });
            return Err(ConfigErrors(c.errors));
        }
    };
    let config = c.document(&doc);
    if c.errors.is_empty() {
        if let Some(mut config) = config {
            config.warnings = c.warnings;
            return Ok(config);
        }
    }
    c.errors.sort_by_key(|e| (e.line, e.col));
    c.errors.dedup();
    Err(ConfigErrors(c.errors))
}

/// serde_yaml appends " at line L column C" to some messages; we print the
/// position in front instead.
fn strip_location(msg: &str) -> String {
    match msg.find(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

struct Compiler {
    file: PathBuf,
    index: PositionIndex,
    errors: Vec<ConfigError>,
    warnings: Vec<ConfigError>,
}

impl Compiler {
    fn push(&mut self, pos: Pos, message: String) {
        self.errors.push(ConfigError {
            file: self.file.clone(),
            line: pos.line,
            col: pos.col,
            message,
        });
    }

    /// An error about the value at `path`.
    fn err(&mut self, path: &NodePath, message: impl Into<String>) {
        let pos = self.index.locate_value(path);
        self.push(pos, format!("{path}: {}", message.into()));
    }

    /// A warning about the value at `path`: reported, not refused.
    fn warn(&mut self, path: &NodePath, message: impl Into<String>) {
        let pos = self.index.locate_value(path);
        self.warnings.push(ConfigError {
            file: self.file.clone(),
            line: pos.line,
            col: pos.col,
            message: format!("warning: {path}: {}", message.into()),
        });
    }

    /// An error about the key at `path` (unknown or misplaced keys).
    fn err_key(&mut self, path: &NodePath, message: impl Into<String>) {
        let pos = self.index.locate(path);
        self.push(pos, format!("{path}: {}", message.into()));
    }

    /// Deserialize one node into its raw struct, recording every error with
    /// where it is: after an error, the offending key is dropped and the
    /// node tried again, so one unknown key does not hide the next mistake.
    fn node<T: DeserializeOwned>(&mut self, value: &Value, path: &NodePath) -> Option<T> {
        let mut value = value.clone();
        let mut dropped: Vec<String> = Vec::new();
        for _ in 0..64 {
            let e = match serde_path_to_error::deserialize::<_, T>(&value) {
                Ok(v) => return Some(v),
                Err(e) => e,
            };
            let mut rel: Vec<Seg> = Vec::new();
            for seg in e.path().iter() {
                match seg {
                    serde_path_to_error::Segment::Seq { index } => rel.push(Seg::Index(*index)),
                    serde_path_to_error::Segment::Map { key } => rel.push(Seg::Key(key.clone())),
                    serde_path_to_error::Segment::Enum { .. }
                    | serde_path_to_error::Segment::Unknown => {}
                }
            }
            let msg = strip_location(&e.inner().to_string());
            if let Some(field) = missing_field(&msg) {
                if dropped.contains(&field) {
                    // a required key we dropped ourselves: already reported
                    return None;
                }
            }
            if let Some(field) = unknown_field(&msg) {
                if rel.last() != Some(&Seg::Key(field.clone())) {
                    rel.push(Seg::Key(field));
                }
            }
            let mut at = path.clone();
            at.0.extend(rel.iter().cloned());
            if unknown_field(&msg).is_some() {
                self.err_key(&at, msg);
            } else {
                self.err(&at, msg);
            }
            match rel.last() {
                Some(Seg::Key(k)) if remove_key(&mut value, &rel) => dropped.push(k.clone()),
                _ => return None,
            }
        }
        None
    }

    /// A section that may be absent or empty (`server:` with nothing under it).
    fn section<T: DeserializeOwned + Default>(
        &mut self,
        value: Option<&Value>,
        path: &NodePath,
    ) -> Option<T> {
        match value {
            None | Some(Value::Null) => Some(T::default()),
            Some(v) => self.node(v, path),
        }
    }

    fn duration(&mut self, text: Option<&str>, path: &NodePath, default: Duration) -> Duration {
        let Some(text) = text else { return default };
        match humantime::parse_duration(text.trim()) {
            Ok(d) if !d.is_zero() => d,
            Ok(_) => {
                self.err(path, "duration must be greater than zero");
                default
            }
            Err(e) => {
                self.err(
                    path,
                    format!("invalid duration `{text}`: {e} (use e.g. `500ms`, `30s`, `15d`)"),
                );
                default
            }
        }
    }

    fn listen_addr(&mut self, text: &str, path: &NodePath) -> Option<SocketAddr> {
        match text.trim().parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.err(
                    path,
                    format!(
                        "invalid listen address `{text}`: expected IP:PORT such as 127.0.0.1:8080"
                    ),
                );
                None
            }
        }
    }

    fn document(&mut self, doc: &Value) -> Option<Config> {
        let root = NodePath::root();
        let empty = serde_yaml::Mapping::new();
        let map = match doc {
            Value::Mapping(m) => m,
            Value::Null => &empty,
            _ => {
                self.err(&root, "the configuration must be a mapping of sections");
                return None;
            }
        };
        let mut sections: BTreeMap<&str, &Value> = BTreeMap::new();
        for (k, v) in map {
            match k.as_str() {
                Some(name) if SECTIONS.contains(&name) => {
                    sections.insert(name, v);
                }
                Some(name) => self.err_key(
                    &root.key(name),
                    format!(
                        "unknown section `{name}`, expected one of {}",
                        SECTIONS.join(", ")
                    ),
                ),
                None => self.err(&root, "section names must be strings"),
            }
        }
        let get = |name: &str| sections.get(name).copied();

        let server = self.server(get("server"), &root.key("server"));
        let admin = self.admin(get("admin"), &root.key("admin"));
        let metrics = self.metrics(get("metrics"), &root.key("metrics"));
        let store = self.store(get("store"), &root.key("store"));
        let redis = self.redis(get("redis"), &root.key("redis"));
        let auth = self.auth(get("auth"), &root.key("auth"), server.as_ref());
        let plans = self.plans(get("plans"), &root.key("plans"));
        let services = self.services(get("services"), &root.key("services"));
        let routes = self.routes(get("routes"), &root.key("routes"), &services);
        let logging = self.logging(get("logging"), &root.key("logging"));
        let usage = self.usage(get("usage"), &root.key("usage"));
        let portal = self.portal(
            get("portal"),
            &root.key("portal"),
            auth.as_ref(),
            &plans,
            &services,
            &routes,
        );

        if let (Some(server), Some(admin), Some(metrics)) = (&server, &admin, &metrics) {
            let mut seen = HashSet::new();
            let all = server
                .listen
                .iter()
                .map(|l| (l.addr, root.key("server").key("listen")))
                .chain([
                    (admin.listen, root.key("admin").key("listen")),
                    (metrics.listen, root.key("metrics").key("listen")),
                ]);
            for (addr, path) in all {
                if addr.port() != 0 && !seen.insert(addr) {
                    self.err(&path, format!("address {addr} is used by two listeners"));
                }
            }
        }

        Some(Config {
            source: self.file.clone(),
            server: server?,
            admin: admin?,
            metrics: metrics?,
            store: store?,
            redis: redis?,
            auth: auth?,
            plans,
            services,
            routes,
            logging: logging?,
            usage: usage?,
            portal,
            warnings: Vec::new(),
        })
    }
}

/// Remove the mapping entry at `rel` (relative to `value`).
fn remove_key(value: &mut Value, rel: &[Seg]) -> bool {
    let Some((Seg::Key(last), parents)) = rel.split_last() else {
        return false;
    };
    let mut cur = value;
    for seg in parents {
        cur = match (seg, cur) {
            (Seg::Key(k), Value::Mapping(m)) => match m.get_mut(k.as_str()) {
                Some(v) => v,
                None => return false,
            },
            (Seg::Index(i), Value::Sequence(s)) => match s.get_mut(*i) {
                Some(v) => v,
                None => return false,
            },
            _ => return false,
        };
    }
    match cur {
        Value::Mapping(m) => m.remove(last.as_str()).is_some(),
        _ => false,
    }
}

fn missing_field(msg: &str) -> Option<String> {
    let rest = msg.strip_prefix("missing field `")?;
    Some(rest[..rest.find('`')?].to_string())
}

fn unknown_field(msg: &str) -> Option<String> {
    let rest = msg.strip_prefix("unknown field `")?;
    Some(rest[..rest.find('`')?].to_string())
}

#[cfg(test)]
mod tests {
    use super::listeners::parse_ipnet;
    use super::plans::{parse_quota, parse_rate};
    use super::*;

    fn errors(text: &str) -> Vec<String> {
        match compile(text, Path::new("t.yaml")) {
            Ok(_) => Vec::new(),
            Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn minimal_config_compiles_with_defaults() {
        let c = compile("routes: []\n", Path::new("t.yaml")).expect("compiles");
        let listen: Vec<SocketAddr> = c.server.listen.iter().map(|l| l.addr).collect();
        assert_eq!(
            listen,
            vec!["127.0.0.1:8080".parse::<SocketAddr>().unwrap()]
        );
        assert!(c.server.listen[0].tls.is_none() && c.server.listen[0].http2);
        assert_eq!(c.auth.api_key.default_ttl, Duration::from_secs(15 * 86400));
        assert_eq!(
            c.store.url,
            StoreUrl::Sqlite(PathBuf::from("data/tollgate.db"))
        );
    }

    #[test]
    fn reports_every_error_with_position() {
        let text = "\
server:
  listen: [\"nope\"]
  bogus: 1
services:
  a:
    upstreams: [\"127.0.0.1:1\"]
    timeouts: { connect: fast }
routes:
  - name: r1
    match: { path_prefix: /x }
    service: missing
    auth: public
  - name: r2
    match: { path: /y }
    respond: { status: 200 }
    auth: [jwt, magic]
plans:
  p: { rate: 10/fortnight }
";
        let errs = errors(text);
        let want = [
            "t.yaml:2:12: server.listen[0]: invalid listen address",
            "t.yaml:3:3: server.bogus: unknown field `bogus`",
            "t.yaml:7:26: services.a.timeouts.connect: invalid duration `fast`",
            "t.yaml:11:14: routes[0].service: route `r1` names service `missing`",
            "t.yaml:16:17: routes[1].auth[1]: unknown credential kind",
            "t.yaml:18:14: plans.p.rate: invalid rate `10/fortnight`",
        ];
        assert_eq!(errs.len(), want.len(), "{errs:#?}");
        for (e, w) in errs.iter().zip(want) {
            assert!(e.starts_with(w), "{e} does not start with {w}");
        }
    }

    #[test]
    fn yaml_syntax_error_has_position() {
        let errs = errors("routes:\n  - name: [unclosed\n");
        assert_eq!(errs.len(), 1);
        assert!(errs[0].starts_with("t.yaml:"), "{}", errs[0]);
        assert!(errs[0].contains("invalid YAML"), "{}", errs[0]);
    }

    #[test]
    fn wrong_types_and_unknown_sections() {
        let errs = errors("metrics: 5\nfrobnicate: {}\nserver: { max_header_bytes: lots }\n");
        assert_eq!(errs.len(), 3, "{errs:#?}");
        assert!(
            errs[0].starts_with("t.yaml:1:10: metrics: invalid type"),
            "{}",
            errs[0]
        );
        assert!(
            errs[1].starts_with("t.yaml:2:1: frobnicate: unknown section"),
            "{}",
            errs[1]
        );
        assert!(
            errs[2].contains("server.max_header_bytes: invalid type"),
            "{}",
            errs[2]
        );
    }

    #[test]
    fn route_paths_must_be_normalized() {
        let errs = errors(
            "routes:\n  - { name: a, match: { path_prefix: /a/../b }, respond: { status: 200 }, auth: public }\n",
        );
        assert_eq!(errs.len(), 1, "{errs:#?}");
        assert!(errs[0].contains("not in normalized form"), "{}", errs[0]);
    }

    #[test]
    fn hmac_is_refused_for_external_issuers() {
        let errs = errors(
            "auth:\n  issuers:\n    - { name: k, issuer: https://i, jwks_url: https://i/j, audiences: [a], algorithms: [HS256] }\n",
        );
        assert_eq!(errs.len(), 1, "{errs:#?}");
        assert!(errs[0].contains("HMAC"), "{}", errs[0]);
    }

    #[test]
    fn rates_quotas_and_cidrs() {
        assert_eq!(
            parse_rate("10/s"),
            Some(Rate {
                count: 10,
                per: Duration::from_secs(1)
            })
        );
        assert_eq!(
            parse_rate("5/min").map(|r| r.per),
            Some(Duration::from_secs(60))
        );
        assert_eq!(parse_rate("0/s"), None);
        assert_eq!(
            parse_quota("10000/day").map(|q| q.per),
            Some(QuotaPeriod::Day)
        );
        assert_eq!(parse_quota("7/month").map(|q| q.count), Some(7));
        let net = parse_ipnet("10.0.0.0/8").unwrap();
        assert!(net.contains("10.1.2.3".parse().unwrap()));
        assert!(!net.contains("11.1.2.3".parse().unwrap()));
        assert!(parse_ipnet("10.0.0.0/33").is_none());
        assert!(parse_ipnet("::1").unwrap().contains("::1".parse().unwrap()));
    }
}
