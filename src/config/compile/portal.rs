//! The `portal` section: accounts, the self-service API and the console.

use super::*;

/// What an account may give its clients: the scopes the admin API takes.
fn valid_scope(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b":._-/".contains(&b))
}

impl Compiler {
    pub(super) fn portal(
        &mut self,
        v: Option<&Value>,
        path: &NodePath,
        auth: Option<&AuthSettings>,
        plans: &BTreeMap<String, Plan>,
        services: &BTreeMap<String, Arc<Service>>,
        routes: &[Arc<Route>],
    ) -> Option<PortalSettings> {
        let v = v?;
        let raw: RawPortal = self.section(Some(v), path)?;
        let pp = path.key("path");
        let mut portal_path = raw.path.unwrap_or_else(|| "/portal".into());
        while portal_path.len() > 1 && portal_path.ends_with('/') {
            portal_path.pop();
        }
        match normalize_path(portal_path.as_bytes()) {
            Ok(n) if n == portal_path && n != "/" => {}
            _ => self.err(
                &pp,
                format!("`{portal_path}` must be a normalized path below `/`, such as /portal"),
            ),
        }
        if crate::control::token::TokenService::serves(&portal_path)
            || portal_path.starts_with("/oauth2/")
            || portal_path.starts_with("/.well-known/")
        {
            self.err(&pp, "is a path of the token endpoint");
        }
        let signs_in = |p: &str| {
            p == portal_path
                || p.strip_prefix(portal_path.as_str())
                    .is_some_and(|rest| rest.starts_with('/'))
        };
        for (i, r) in routes.iter().enumerate() {
            let (PathMatch::Exact(p) | PathMatch::Prefix(p)) = &r.matcher.path;
            if signs_in(p.trim_end_matches('/')) || signs_in(p) {
                self.err(
                    &NodePath::root().key("routes").index(i).key("match"),
                    format!(
                        "route `{}` is under portal.path `{portal_path}`, which the portal serves",
                        r.name
                    ),
                );
            }
        }

        let sp = path.key("sign_in");
        let issuers = raw.sign_in.issuers;
        for (i, name) in issuers.iter().enumerate() {
            let known = auth.is_some_and(|a| a.issuers.iter().any(|x| &x.name == name));
            if !known {
                self.err(
                    &sp.key("issuers").index(i),
                    format!("`{name}` is not the name of an entry of auth.issuers"),
                );
            }
        }
        let registration = match raw.registration.as_deref() {
            None | Some("invite") => Registration::Invite,
            Some("open") => Registration::Open,
            Some(other) => {
                self.err(
                    &path.key("registration"),
                    format!("unknown registration `{other}`: expected invite or open"),
                );
                Registration::Invite
            }
        };

        let mut portal_services = BTreeMap::new();
        for (name, s) in raw.services {
            let svp = path.key("services").key(name.clone());
            if !services.contains_key(&name) {
                self.err(&svp, format!("`{name}` is not a service of `services`"));
            }
            for (i, plan) in s.plans.iter().enumerate() {
                if !plans.contains_key(plan) {
                    self.err(
                        &svp.key("plans").index(i),
                        format!("`{plan}` is not a plan of `plans`"),
                    );
                }
            }
            for (i, scope) in s.scopes.iter().enumerate() {
                if !valid_scope(scope) {
                    self.err(
                        &svp.key("scopes").index(i),
                        format!("invalid scope `{scope}`: 1 to 64 of A-Z a-z 0-9 : . _ - /"),
                    );
                }
            }
            let approval = match s.approval.as_deref() {
                None | Some("auto") => Approval::Auto,
                Some("manual") => Approval::Manual,
                Some(other) => {
                    self.err(
                        &svp.key("approval"),
                        format!("unknown approval `{other}`: expected auto or manual"),
                    );
                    Approval::Auto
                }
            };
            portal_services.insert(
                name,
                PortalService {
                    plans: s.plans,
                    approval,
                    scopes: s.scopes,
                },
            );
        }
        Some(PortalSettings {
            path: portal_path,
            password: raw.sign_in.password.unwrap_or(true),
            issuers,
            registration,
            session_ttl: self.duration(
                raw.session_ttl.as_deref(),
                &path.key("session_ttl"),
                Duration::from_secs(12 * 3600),
            ),
            services: portal_services,
            max_key_lifetime: self.duration(
                raw.max_key_lifetime.as_deref(),
                &path.key("max_key_lifetime"),
                Duration::from_secs(90 * 86_400),
            ),
            allow_never_expiring_keys: raw.allow_never_expiring_keys,
        })
    }
}
