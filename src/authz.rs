//! Authorization: an authenticated client may use a route when it holds a
//! subscription to the route's service and its credential carries every
//! scope the route requires.

use crate::auth::{Authenticated, Subscribed};
use crate::config::{Route, RouteTarget};
use crate::proxy::forward::Identity;
use crate::proxy::reject::Rejection;

/// What authorization found: the identity headers for the upstream and,
/// for a service route, the subscription (its plan limits the request).
pub struct Authorized<'a> {
    pub identity: Identity,
    pub subscription: Option<&'a Subscribed>,
}

pub fn authorize<'a>(auth: &'a Authenticated, route: &Route) -> Result<Authorized<'a>, Rejection> {
    let p = &auth.principal;
    let subscription = match &route.target {
        RouteTarget::Service(s) => match p.subscriptions.get(&s.name) {
            Some(sub) => Some(sub),
            None => return Err(Rejection::NotSubscribed),
        },
        // a direct answer behind authentication has no service to subscribe to
        RouteTarget::Respond(_) => None,
    };
    if route.scopes.iter().any(|s| !auth.scopes.contains(s)) {
        return Err(Rejection::InsufficientScope(route.scopes.join(" ")));
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
