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
}

impl Denial {
    /// The `reason` label of `tollgate_auth_failures_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            Denial::NotSubscribed => "not_subscribed",
            Denial::InsufficientScope(_) => "insufficient_scope",
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
    pub subscription: Option<&'a Subscribed>,
}

pub fn authorize<'a>(auth: &'a Authenticated, route: &Route) -> Result<Authorized<'a>, Denial> {
    let p = &auth.principal;
    let subscription = match &route.target {
        RouteTarget::Service(s) => match p.subscriptions.get(&s.name) {
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
            consumer_id: p.id_header.clone(),
            consumer_name: p.name_header.clone(),
            subscription_id: subscription.map_or_else(
                || http::HeaderValue::from_static(""),
                |sub| sub.header.clone(),
            ),
        },
        subscription,
    })
}
