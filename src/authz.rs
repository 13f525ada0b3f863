//! Authorization: an authenticated client may use a route when it holds a
//! subscription to the route's service and its credential carries every
//! scope the route requires.

use crate::auth::{Authenticated, Subscribed};
use crate::config::{Route, RouteTarget};

/// Why an authenticated client may not use a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    NotSubscribed,
    /// The scopes the route requires, space-separated.
    InsufficientScope(String),
    /// The client's `allowed_cidrs` exclude the request's address.
    AddressNotAllowed,
    /// The client's `allowed_referers` exclude the request's origin.
    RefererNotAllowed,
}

impl Denial {
    /// The `reason` label of `tollgate_auth_failures_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            Denial::NotSubscribed => "not_subscribed",
            Denial::InsufficientScope(_) => "insufficient_scope",
            Denial::AddressNotAllowed => "address_not_allowed",
            Denial::RefererNotAllowed => "referer_not_allowed",
        }
    }
}

/// The identity headers the gateway adds after authentication (values
/// built once per cached principal; a clone shares them).
#[derive(Debug, Clone)]
pub struct Identity {
    pub consumer_id: http::HeaderValue,
    pub consumer_name: http::HeaderValue,
    pub subscription_id: http::HeaderValue,
}

/// What authorization found: the identity headers for the upstream and,
/// for a service route, the subscription (its plan limits the request).
pub struct Authorized<'a> {
    pub identity: Identity,
    pub subscription: Option<Subscribed<'a>>,
}

pub fn authorize<'a>(auth: &'a Authenticated, route: &Route) -> Result<Authorized<'a>, Denial> {
    let p = &auth.principal;
    let subscription = match &route.target {
        RouteTarget::Service(s) => match p.subscription(&s.name) {
            Some(sub) => Some(sub),
            None => return Err(Denial::NotSubscribed),
        },
        // a direct answer behind authentication has no service to subscribe to
        RouteTarget::Respond(_) => None,
    };
    if route.scopes.iter().any(|s| !auth.scopes.contains(s)) {
        return Err(Denial::InsufficientScope(route.scopes.join(" ")));
    }
    Ok(Authorized {
        identity: Identity {
            consumer_id: p.id_header(),
            consumer_name: p.name_header(),
            subscription_id: subscription.map_or_else(
                || http::HeaderValue::from_static(""),
                |sub| p.subscription_header(&sub),
            ),
        },
        subscription,
    })
}

/// Does `text` match `pattern`, where `*` matches any run of characters
/// (ASCII case-insensitive, as scheme and host are)?
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    // iterative matching with one backtrack point: linear in practice,
    // never exponential on hostile input
    let (mut p, mut t) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some(p);
            mark = t;
            p += 1;
        } else if p < pattern.len() && pattern[p].eq_ignore_ascii_case(&text[t]) {
            p += 1;
            t += 1;
        } else if let Some(s) = star {
            p = s + 1;
            mark += 1;
            t = mark;
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Does the request come from where the client's credentials may be used?
/// `address` is the client address (the peer, or the rightmost untrusted
/// `X-Forwarded-For` hop); `referer` and `origin` are the request's headers.
pub fn check_restrictions(
    p: &crate::auth::Principal,
    address: Option<std::net::IpAddr>,
    referer: Option<&[u8]>,
    origin: Option<&[u8]>,
) -> Result<(), Denial> {
    let Some(r) = &p.restrictions else {
        return Ok(());
    };
    if !r.cidrs.is_empty() && !address.is_some_and(|a| r.cidrs.iter().any(|n| n.contains(a))) {
        return Err(Denial::AddressNotAllowed);
    }
    if !r.referers.is_empty() {
        // an Origin has no path: it matches a pattern as ORIGIN/
        let origin_path = origin.map(|o| {
            let mut v = o.to_vec();
            v.push(b'/');
            v
        });
        let candidates = [referer, origin_path.as_deref()];
        let allowed = candidates
            .into_iter()
            .flatten()
            .any(|value| r.referers.iter().any(|pat| glob(pat.as_bytes(), value)));
        if !allowed {
            return Err(Denial::RefererNotAllowed);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Principal;
    use crate::store::Client;

    fn principal(cidrs: &[&str], referers: &[&str]) -> Principal {
        let client = Client {
            allowed_cidrs: cidrs.iter().map(|c| c.to_string()).collect(),
            allowed_referers: referers.iter().map(|c| c.to_string()).collect(),
            ..crate::auth::testing::client("c")
        };
        let mut p = Principal::new(client, None, vec![]);
        if cidrs.is_empty() && referers.is_empty() {
            assert!(p.restrictions.is_none());
            p.restrictions = Some(Box::default());
        }
        p
    }

    #[test]
    fn referer_patterns_match_with_stars() {
        assert!(glob(
            b"https://app.example.com/*",
            b"https://app.example.com/x/y"
        ));
        assert!(glob(
            b"https://*.example.com/*",
            b"https://a.b.example.com/"
        ));
        assert!(glob(
            b"HTTPS://App.Example.com/*",
            b"https://app.example.com/"
        ));
        assert!(!glob(
            b"https://app.example.com/*",
            b"https://app.example.com.evil.test/"
        ));
        assert!(!glob(
            b"https://app.example.com/*",
            b"http://app.example.com/"
        ));
        assert!(glob(b"*", b""));
        // hostile input stays linear
        let long = vec![b'a'; 10_000];
        assert!(!glob(b"*a*a*a*a*a*a*a*b", &long));
    }

    #[test]
    fn addresses_and_origins_are_checked_only_when_listed() {
        let open = principal(&[], &[]);
        assert_eq!(check_restrictions(&open, None, None, None), Ok(()));
        let p = principal(&["203.0.113.0/24", "2001:db8::1"], &[]);
        let ip = |s: &str| Some(s.parse().unwrap());
        assert_eq!(
            check_restrictions(&p, ip("203.0.113.9"), None, None),
            Ok(())
        );
        assert_eq!(
            check_restrictions(&p, ip("2001:db8::1"), None, None),
            Ok(())
        );
        assert_eq!(
            check_restrictions(&p, ip("198.51.100.1"), None, None),
            Err(Denial::AddressNotAllowed)
        );
        assert_eq!(
            check_restrictions(&p, None, None, None),
            Err(Denial::AddressNotAllowed)
        );
        let r = principal(&[], &["https://app.example.com/*"]);
        assert_eq!(
            check_restrictions(&r, None, Some(b"https://app.example.com/page"), None),
            Ok(())
        );
        assert_eq!(
            check_restrictions(&r, None, None, Some(b"https://app.example.com")),
            Ok(())
        );
        assert_eq!(
            check_restrictions(&r, None, Some(b"https://evil.test/"), None),
            Err(Denial::RefererNotAllowed)
        );
        assert_eq!(
            check_restrictions(&r, None, None, None),
            Err(Denial::RefererNotAllowed)
        );
    }
}
