//! The portal's calls: each checks that what it touches belongs to the
//! calling account (anything else answers like an unknown id), applies the
//! limits of `portal`, and then does what the admin call does, with the
//! account as the audit actor.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use super::rules::{
    check_portal_scopes, key_policy, own_client, own_key, own_subscription, subscription_status,
};
use super::{PortalApi, PortalConn, PortalErrorBody, SESSION_COOKIE};
use crate::config::{Approval, PortalSettings};
use crate::control::accounts::{Caller, ChangePassword, NewSession, PortalResult};
use crate::control::admin::{optional_body, AdminJson};
use crate::control::registry::{
    AdminError, ClientDetail, CreateClient, CreateKey, CreateSubscription, CreatedClient,
    CreatedKey, NewClientSecret, PatchClient, RollKey, RotateSecret, UsageQuery, UsageReport,
};
use crate::store::{Account, ApiKey, AuthType, Client, Subscription};

pub fn router(api: PortalApi) -> Router {
    let auth = || middleware::from_fn_with_state(api.clone(), super::authenticate);
    let protected = Router::new()
        .route("/v1/me", get(me))
        .route("/v1/me/password", post(change_password))
        .route("/v1/clients", get(list_clients).post(create_client))
        .route("/v1/clients/{id}", get(get_client).patch(patch_client))
        .route("/v1/clients/{id}/secret", post(rotate_secret))
        .route("/v1/clients/{id}/revoke", post(revoke_client))
        .route("/v1/clients/{id}/keys", get(list_keys).post(create_key))
        .route("/v1/keys/{id}/revoke", post(revoke_key))
        .route("/v1/keys/{id}/renew", post(renew_key))
        .route("/v1/keys/{id}/roll", post(roll_key))
        .route("/v1/clients/{id}/usage", get(client_usage))
        .route("/v1/catalog", get(catalog))
        .route(
            "/v1/subscriptions",
            get(list_subscriptions).post(create_subscription),
        )
        .route("/v1/subscriptions/{id}", delete(delete_subscription))
        .route_layer(auth());
    Router::new()
        .route(
            "/v1/session",
            post(sign_in).merge(delete(sign_out).route_layer(auth())),
        )
        .route("/v1/openapi.json", get(openapi))
        .merge(protected)
        .fallback(|| async { AdminError::NotFound("no such portal endpoint".into()) })
        .method_not_allowed_fallback(|| async {
            (
                StatusCode::METHOD_NOT_ALLOWED,
                Json(PortalErrorBody {
                    error: "method_not_allowed",
                    message: "this endpoint does not take this method".into(),
                }),
            )
        })
        .with_state(api)
}

/// The portal's settings; absent only while a reload removes the portal.
fn settings(api: &PortalApi) -> PortalResult<PortalSettings> {
    api.snapshot
        .load()
        .config
        .portal
        .clone()
        .ok_or_else(|| AdminError::NotFound("the portal is not enabled".into()).into())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignIn {
    /// With `password`: a built-in account.
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    /// Instead: a token of an issuer named in `portal.sign_in.issuers`.
    #[serde(default)]
    token: Option<String>,
}

fn session_cookie(portal: &PortalSettings, value: &str, max_age: i64, tls: bool) -> HeaderValue {
    let secure = if tls { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={value}; Path={}; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}",
        portal.path
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Sign in: returns the session token (shown once) and sets the cookie
/// browsers use.
#[utoipa::path(post, path = "/v1/session", request_body = SignIn,
    responses((status = 200, body = NewSession), (status = 400, body = PortalErrorBody),
              (status = 401, body = PortalErrorBody), (status = 403, body = PortalErrorBody),
              (status = 429, body = PortalErrorBody), (status = 503, body = PortalErrorBody)))]
async fn sign_in(
    State(api): State<PortalApi>,
    conn: Option<Extension<PortalConn>>,
    AdminJson(req): AdminJson<SignIn>,
) -> PortalResult<Response> {
    let portal = settings(&api)?;
    let conn = conn.map(|Extension(c)| c);
    let session = match (req.username, req.password, req.token) {
        (Some(u), Some(p), None) => {
            api.accounts
                .sign_in_password(&u, &p, conn.and_then(|c| c.peer))
                .await?
        }
        (None, None, Some(t)) => api.accounts.sign_in_token(&t).await?,
        _ => {
            return Err(
                AdminError::BadRequest("send `username` and `password`, or `token`".into()).into(),
            )
        }
    };
    let max_age = (session.expires_at - crate::store::now()).max(0);
    let cookie = session_cookie(
        &portal,
        &session.token,
        max_age,
        conn.is_some_and(|c| c.tls),
    );
    let mut resp = Json(session).into_response();
    resp.headers_mut().insert(header::SET_COOKIE, cookie);
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// Sign out: the session ends on every node.
#[utoipa::path(delete, path = "/v1/session",
    responses((status = 204), (status = 401, body = PortalErrorBody)))]
async fn sign_out(
    State(api): State<PortalApi>,
    Extension(caller): Extension<Caller>,
    conn: Option<Extension<PortalConn>>,
    headers: HeaderMap,
) -> PortalResult<Response> {
    let portal = settings(&api)?;
    if let Some(s) = &caller.session {
        api.registry
            .store
            .delete_session(&s.hash)
            .await
            .map_err(|e| AdminError::from_store(e, "session"))?;
    }
    let mut resp = StatusCode::NO_CONTENT.into_response();
    if headers.contains_key(header::COOKIE) {
        let tls = conn.is_some_and(|Extension(c)| c.tls);
        resp.headers_mut()
            .insert(header::SET_COOKIE, session_cookie(&portal, "", 0, tls));
    }
    Ok(resp)
}

#[utoipa::path(get, path = "/v1/me", responses((status = 200, body = Account), (status = 401, body = PortalErrorBody)))]
async fn me(Extension(caller): Extension<Caller>) -> Json<Account> {
    Json(caller.account)
}

/// Change one's password (the first call after a one-time password); every
/// other session of the account ends.
#[utoipa::path(post, path = "/v1/me/password", request_body = ChangePassword,
    responses((status = 204), (status = 400, body = PortalErrorBody), (status = 403, body = PortalErrorBody),
              (status = 429, body = PortalErrorBody)))]
async fn change_password(
    State(api): State<PortalApi>,
    Extension(caller): Extension<Caller>,
    conn: Option<Extension<PortalConn>>,
    AdminJson(req): AdminJson<ChangePassword>,
) -> PortalResult<StatusCode> {
    let peer = conn.and_then(|Extension(c)| c.peer);
    api.accounts.change_password(&caller, req, peer).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
pub struct ClientsQuery {
    status: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ClientList {
    clients: Vec<Client>,
}

#[utoipa::path(get, path = "/v1/clients", params(("status" = Option<String>, Query, description = "active or revoked; both when absent")),
    responses((status = 200, body = ClientList), (status = 400, body = PortalErrorBody)))]
async fn list_clients(
    State(api): State<PortalApi>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<ClientsQuery>,
) -> PortalResult<Json<ClientList>> {
    let clients = api
        .registry
        .list_clients(q.status.as_deref(), Some(&caller.account.id))
        .await?;
    Ok(Json(ClientList { clients }))
}

#[utoipa::path(post, path = "/v1/clients", request_body = CreateClient,
    responses((status = 201, body = CreatedClient), (status = 400, body = PortalErrorBody)))]
async fn create_client(
    State(api): State<PortalApi>,
    Extension(caller): Extension<Caller>,
    AdminJson(mut req): AdminJson<CreateClient>,
) -> PortalResult<impl IntoResponse> {
    let portal = settings(&api)?;
    if req.auth_type == AuthType::External
        || req.issuer.is_some()
        || req.external_id.is_some()
        || req.account_id.is_some()
    {
        return Err(AdminError::BadRequest(
            "accounts create `api_key` or `oauth2` clients only, for themselves".into(),
        )
        .into());
    }
    check_portal_scopes(&portal, req.scopes.as_deref().unwrap_or(&[]))?;
    req.account_id = Some(caller.account.id.clone());
    let created = api
        .registry
        .create_client(&caller.actor(), req, key_policy(&api, &portal))
        .await?;
    Ok((StatusCode::CREATED, Json(created)))
}

#[utoipa::path(get, path = "/v1/clients/{id}", params(("id" = String, Path)),
    responses((status = 200, body = ClientDetail), (status = 404, body = PortalErrorBody)))]
async fn get_client(
    State(api): State<PortalApi>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> PortalResult<Json<ClientDetail>> {
    own_client(&api, &caller, &id).await?;
    Ok(Json(api.registry.get_client(&id).await?))
}

#[utoipa::path(patch, path = "/v1/clients/{id}", params(("id" = String, Path)), request_body = PatchClient,
    responses((status = 200, body = Client), (status = 400, body = PortalErrorBody), (status = 404, body = PortalErrorBody),
              (status = 409, body = PortalErrorBody)))]
async fn patch_client(
    State(api): State<PortalApi>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    AdminJson(req): AdminJson<PatchClient>,
) -> PortalResult<Json<Client>> {
    let portal = settings(&api)?;
    own_client(&api, &caller, &id).await?;
    if let Some(scopes) = &req.scopes {
        check_portal_scopes(&portal, scopes)?;
    }
    Ok(Json(
        api.registry.patch_client(&caller.actor(), &id, req).await?,
    ))
}

#[utoipa::path(post, path = "/v1/clients/{id}/secret", params(("id" = String, Path)), request_body(content = Option<RotateSecret>),
    responses((status = 200, body = NewClientSecret), (status = 400, body = PortalErrorBody), (status = 404, body = PortalErrorBody),
              (status = 409, body = PortalErrorBody)))]
async fn rotate_secret(
    State(api): State<PortalApi>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Bytes,
) -> PortalResult<Json<NewClientSecret>> {
    let req: RotateSecret = optional_body(&body)?;
    own_client(&api, &caller, &id).await?;
    Ok(Json(
        api.registry
            .rotate_secret(&caller.actor(), &id, req)
            .await?,
    ))
}

#[utoipa::path(post, path = "/v1/clients/{id}/revoke", params(("id" = String, Path)),
    responses((status = 200, body = Client), (status = 404, body = PortalErrorBody), (status = 409, body = PortalErrorBody)))]
async fn revoke_client(
    State(api): State<PortalApi>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> PortalResult<Json<Client>> {
    own_client(&api, &caller, &id).await?;
    Ok(Json(
        api.registry.revoke_client(&caller.actor(), &id).await?,
    ))
}

#[derive(Serialize, ToSchema)]
pub struct KeyList {
    keys: Vec<ApiKey>,
}

#[utoipa::path(get, path = "/v1/clients/{id}/keys", params(("id" = String, Path)),
    responses((status = 200, body = KeyList), (status = 404, body = PortalErrorBody)))]
async fn list_keys(
    State(api): State<PortalApi>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> PortalResult<Json<KeyList>> {
    own_client(&api, &caller, &id).await?;
    Ok(Json(KeyList {
        keys: api.registry.list_keys(&id).await?,
    }))
}

/// A new key; it expires after the shorter of `auth.api_key.default_ttl` and
/// `portal.max_key_lifetime`, or never where `allow_never_expiring_keys`.
#[utoipa::path(post, path = "/v1/clients/{id}/keys", params(("id" = String, Path)), request_body(content = Option<CreateKey>),
    responses((status = 201, body = CreatedKey), (status = 400, body = PortalErrorBody), (status = 404, body = PortalErrorBody),
              (status = 409, body = PortalErrorBody)))]
async fn create_key(
    State(api): State<PortalApi>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Bytes,
) -> PortalResult<impl IntoResponse> {
    let portal = settings(&api)?;
    let req: CreateKey = optional_body(&body)?;
    own_client(&api, &caller, &id).await?;
    let key = api
        .registry
        .create_key(&caller.actor(), &id, req, key_policy(&api, &portal))
        .await?;
    Ok((StatusCode::CREATED, Json(key)))
}

#[utoipa::path(post, path = "/v1/keys/{id}/revoke", params(("id" = String, Path)),
    responses((status = 200, body = ApiKey), (status = 404, body = PortalErrorBody), (status = 409, body = PortalErrorBody)))]
async fn revoke_key(
    State(api): State<PortalApi>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> PortalResult<Json<ApiKey>> {
    own_key(&api, &caller, &id).await?;
    Ok(Json(api.registry.revoke_key(&caller.actor(), &id).await?))
}

#[utoipa::path(post, path = "/v1/keys/{id}/renew", params(("id" = String, Path)),
    responses((status = 200, body = ApiKey), (status = 404, body = PortalErrorBody), (status = 409, body = PortalErrorBody)))]
async fn renew_key(
    State(api): State<PortalApi>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> PortalResult<Json<ApiKey>> {
    let portal = settings(&api)?;
    own_key(&api, &caller, &id).await?;
    Ok(Json(
        api.registry
            .renew_key(&caller.actor(), &id, key_policy(&api, &portal))
            .await?,
    ))
}

/// A new key of the same client, name and lifetime policy, shown once;
/// the old key works for the grace period (`expiring`), then `expired`.
#[utoipa::path(post, path = "/v1/keys/{id}/roll", params(("id" = String, Path)), request_body(content = Option<RollKey>),
    responses((status = 201, body = CreatedKey), (status = 400, body = PortalErrorBody), (status = 404, body = PortalErrorBody),
              (status = 409, body = PortalErrorBody)))]
async fn roll_key(
    State(api): State<PortalApi>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Bytes,
) -> PortalResult<impl IntoResponse> {
    let portal = settings(&api)?;
    let req: RollKey = optional_body(&body)?;
    own_key(&api, &caller, &id).await?;
    let key = api
        .registry
        .roll_key(&caller.actor(), &id, req, key_policy(&api, &portal))
        .await?;
    Ok((StatusCode::CREATED, Json(key)))
}

/// Requests of one of the account's clients per hour or day, by service,
/// key and outcome.
#[utoipa::path(get, path = "/v1/clients/{id}/usage", params(("id" = String, Path),
        ("from" = Option<String>, Query, description = "Unix seconds or RFC 3339; default: `to` minus 7 days"),
        ("to" = Option<String>, Query, description = "Unix seconds or RFC 3339; default: now"),
        ("step" = Option<String>, Query, description = "hour (default) or day")),
    responses((status = 200, body = UsageReport), (status = 400, body = PortalErrorBody), (status = 404, body = PortalErrorBody)))]
async fn client_usage(
    State(api): State<PortalApi>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Query(q): Query<UsageQuery>,
) -> PortalResult<Json<UsageReport>> {
    own_client(&api, &caller, &id).await?;
    Ok(Json(api.registry.usage(&id, &q).await?))
}

#[derive(Serialize, ToSchema)]
pub struct CatalogPlan {
    name: String,
    /// Requests per period, such as `10/s`; absent: no rate limit.
    rate: Option<String>,
    /// Requests per day or month, such as `10000/day`; absent: no quota.
    quota: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct CatalogService {
    name: String,
    plans: Vec<CatalogPlan>,
    /// `auto`, or `manual`: a subscription waits for an operator's approval.
    approval: &'static str,
    scopes: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Catalog {
    services: Vec<CatalogService>,
}

/// The services an account may subscribe to, with their plans.
#[utoipa::path(get, path = "/v1/catalog", responses((status = 200, body = Catalog)))]
async fn catalog(State(api): State<PortalApi>) -> PortalResult<Json<Catalog>> {
    let portal = settings(&api)?;
    let snap = api.snapshot.load();
    let services = portal
        .services
        .iter()
        .map(|(name, s)| CatalogService {
            name: name.clone(),
            plans: s
                .plans
                .iter()
                .map(|p| {
                    let plan = snap.config.plans.get(p);
                    CatalogPlan {
                        name: p.clone(),
                        rate: plan.and_then(|p| p.rate).map(|r| {
                            let per = match r.per.as_secs() {
                                1 => "s".to_string(),
                                60 => "min".to_string(),
                                3600 => "h".to_string(),
                                n => format!("{n}s"),
                            };
                            format!("{}/{per}", r.count)
                        }),
                        quota: plan.and_then(|p| p.quota).map(|q| {
                            let per = match q.per {
                                crate::config::QuotaPeriod::Day => "day",
                                crate::config::QuotaPeriod::Month => "month",
                            };
                            format!("{}/{per}", q.count)
                        }),
                    }
                })
                .collect(),
            approval: match s.approval {
                Approval::Auto => "auto",
                Approval::Manual => "manual",
            },
            scopes: s.scopes.clone(),
        })
        .collect();
    Ok(Json(Catalog { services }))
}

#[derive(Deserialize, ToSchema)]
pub struct SubscriptionsQuery {
    client_id: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct SubscriptionList {
    subscriptions: Vec<Subscription>,
}

#[utoipa::path(get, path = "/v1/subscriptions", params(("client_id" = Option<String>, Query)),
    responses((status = 200, body = SubscriptionList), (status = 404, body = PortalErrorBody)))]
async fn list_subscriptions(
    State(api): State<PortalApi>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<SubscriptionsQuery>,
) -> PortalResult<Json<SubscriptionList>> {
    let subscriptions = match q.client_id.as_deref().filter(|c| !c.is_empty()) {
        Some(c) => {
            own_client(&api, &caller, c).await?;
            api.registry.list_subscriptions(Some(c)).await?
        }
        None => {
            let mine: std::collections::HashSet<String> = api
                .registry
                .list_clients(None, Some(&caller.account.id))
                .await?
                .into_iter()
                .map(|c| c.id)
                .collect();
            api.registry
                .list_subscriptions(None)
                .await?
                .into_iter()
                .filter(|s| mine.contains(&s.client_id))
                .collect()
        }
    };
    Ok(Json(SubscriptionList { subscriptions }))
}

/// Subscribe one of the account's clients to a service of the catalog; a
/// service with `approval: manual` answers a `pending` subscription.
#[utoipa::path(post, path = "/v1/subscriptions", request_body = CreateSubscription,
    responses((status = 201, body = Subscription), (status = 400, body = PortalErrorBody), (status = 404, body = PortalErrorBody),
              (status = 409, body = PortalErrorBody)))]
async fn create_subscription(
    State(api): State<PortalApi>,
    Extension(caller): Extension<Caller>,
    AdminJson(req): AdminJson<CreateSubscription>,
) -> PortalResult<impl IntoResponse> {
    let portal = settings(&api)?;
    own_client(&api, &caller, &req.client_id).await?;
    let status = subscription_status(&portal, &req.service, req.plan.as_deref())?;
    let sub = api
        .registry
        .create_subscription(&caller.actor(), req, status)
        .await?;
    Ok((StatusCode::CREATED, Json(sub)))
}

#[utoipa::path(delete, path = "/v1/subscriptions/{id}", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = PortalErrorBody)))]
async fn delete_subscription(
    State(api): State<PortalApi>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> PortalResult<StatusCode> {
    own_subscription(&api, &caller, &id).await?;
    api.registry
        .delete_subscription(&caller.actor(), &id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Tollgate portal API", description = "Self-service for accounts: their consumer clients, API keys and subscriptions."),
    paths(sign_in, sign_out, me, change_password, list_clients, create_client, get_client, patch_client, rotate_secret,
          revoke_client, list_keys, create_key, revoke_key, renew_key, roll_key, client_usage, catalog, list_subscriptions,
          create_subscription, delete_subscription, openapi),
    modifiers(&PortalAuth),
    security(("session" = []), ("session_cookie" = []))
)]
pub struct PortalDoc;

struct PortalAuth;

impl utoipa::Modify for PortalAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            ApiKey as Key, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme,
        };
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "session",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "a session token (tgp_…) or a token of a sign-in issuer",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "session_cookie",
            SecurityScheme::ApiKey(Key::Cookie(ApiKeyValue::with_description(
                SESSION_COOKIE,
                "with X-CSRF-Token on every change",
            ))),
        );
        use utoipa::openapi::{Content, Ref, ResponseBuilder};
        let error = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    Content::new(Some(Ref::from_schema_name("PortalErrorBody"))),
                )
                .build()
        };
        for (path, item) in doc.paths.paths.iter_mut() {
            // signing in and this document need no credential
            if path == "/v1/openapi.json" {
                if let Some(op) = item.get.as_mut() {
                    op.security = Some(Vec::new());
                }
                continue;
            }
            if path == "/v1/session" {
                if let Some(op) = item.post.as_mut() {
                    op.security = Some(Vec::new());
                }
            }
            let signed_in = [
                &mut item.get,
                &mut item.patch,
                &mut item.delete,
                &mut item.post,
            ];
            for op in signed_in.into_iter().flatten() {
                if op.security.as_ref().is_some_and(Vec::is_empty) {
                    continue;
                }
                let r = &mut op.responses.responses;
                r.entry("401".into())
                    .or_insert_with(|| error("no valid session or token").into());
                r.entry("403".into()).or_insert_with(|| {
                    error("a one-time password to change first, a cookie call without its CSRF token, a disabled account or an identity without an account").into()
                });
                r.entry("503".into())
                    .or_insert_with(|| error("the store is unavailable").into());
            }
        }
    }
}

/// This document, with the portal's path as its server.
#[utoipa::path(get, path = "/v1/openapi.json", responses((status = 200, description = "this document")))]
async fn openapi(State(api): State<PortalApi>) -> Json<utoipa::openapi::OpenApi> {
    let mut doc = PortalDoc::openapi();
    let path = api
        .snapshot
        .load()
        .config
        .portal
        .as_ref()
        .map_or_else(|| "/portal".to_string(), |p| p.path.clone());
    doc.servers = Some(vec![utoipa::openapi::Server::new(path)]);
    Json(doc)
}
