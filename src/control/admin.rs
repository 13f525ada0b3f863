//! The admin API (SPEC §6) on the admin listener: bearer-token protected,
//! JSON in and out, errors as `{"error", "message"}`. The OpenAPI document
//! is generated from these handlers by utoipa.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, FromRequest, Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use utoipa::{OpenApi, ToSchema};

use super::registry::*;
use crate::store::{Account, ApiKey, AuditEntry, Client, Subscription, SubscriptionStatus};

#[derive(Clone)]
pub struct AdminApi {
    pub registry: Arc<Registry>,
    pub accounts: Arc<super::accounts::Accounts>,
    pub oauth: Arc<crate::control::token::TokenService>,
    pub reloader: Arc<crate::control::reload::Reloader>,
    pub token: Arc<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: &'static str,
    pub message: String,
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            AdminError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            AdminError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            AdminError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            AdminError::Unavailable(detail) => {
                tracing::error!(error = %detail, "store unavailable for an admin call");
                (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable")
            }
        };
        (
            status,
            Json(ErrorBody {
                error: code,
                message: self.to_string(),
            }),
        )
            .into_response()
    }
}

/// `Json<T>` whose rejection (malformed JSON, wrong types, unknown
/// fields) is our 400 body instead of axum's plain text.
pub struct AdminJson<T>(pub T);

impl<S, T> FromRequest<S> for AdminJson<T>
where
    Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = AdminError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(AdminJson(v)),
            Err(rejection) => Err(AdminError::BadRequest(rejection.body_text())),
        }
    }
}

/// An optional JSON body: empty or `null` means the default.
pub(crate) fn optional_body<T: Default + for<'de> Deserialize<'de>>(
    body: &Bytes,
) -> Result<T, AdminError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice::<Option<T>>(body)
        .map(Option::unwrap_or_default)
        .map_err(|e| AdminError::BadRequest(format!("invalid JSON body: {e}")))
}

fn actor(addr: &SocketAddr) -> String {
    format!("admin@{}", addr.ip())
}

async fn require_token(
    State(api): State<AdminApi>,
    headers: HeaderMap,
    req: Request,
    next: Next,
) -> Response {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .unwrap_or("");
    let ok = presented.len() == api.token.len()
        && bool::from(presented.as_bytes().ct_eq(api.token.as_bytes()));
    if !ok {
        let body = ErrorBody {
            error: "unauthorized",
            message: "a valid admin bearer token is required".into(),
        };
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer realm=\"tollgate-admin\"")],
            Json(body),
        )
            .into_response();
    }
    next.run(req).await
}

pub fn router(api: AdminApi) -> Router {
    let protected = Router::new()
        .route("/clients", post(create_client).get(list_clients))
        .route("/clients/{id}", get(get_client).patch(patch_client))
        .route("/clients/{id}/secret", post(rotate_secret))
        .route("/clients/{id}/revoke", post(revoke_client))
        .route("/clients/{id}/keys", post(create_key).get(list_keys))
        .route("/keys/{id}/revoke", post(revoke_key))
        .route("/keys/{id}/renew", post(renew_key))
        .route("/keys/{id}/roll", post(roll_key))
        .route("/keys", get(expiring_keys))
        .route("/clients/{id}/usage", get(client_usage))
        .route(
            "/subscriptions",
            post(create_subscription).get(list_subscriptions),
        )
        .route(
            "/subscriptions/{id}",
            axum::routing::delete(delete_subscription),
        )
        .route("/subscriptions/{id}/approve", post(approve_subscription))
        .route("/subscriptions/{id}/reject", post(reject_subscription))
        .route("/accounts", post(create_account).get(list_accounts))
        .route("/accounts/{id}", get(get_account).patch(patch_account))
        .route("/accounts/{id}/password", post(set_account_password))
        .route("/audit", get(audit))
        .route("/signing-keys/rotate", post(rotate_signing_key))
        .route("/reload", post(reload))
        .route("/openapi.json", get(openapi))
        .route_layer(middleware::from_fn_with_state(api.clone(), require_token))
        .fallback(|| async { AdminError::NotFound("no such admin endpoint".into()) })
        .with_state(api);
    Router::new().nest("/admin/v1", protected)
}

/// The `status` filter of a client listing.
#[derive(ToSchema)]
#[schema(as = ClientStatus)]
#[allow(dead_code)]
pub enum ClientStatus {
    #[schema(rename = "active")]
    Active,
    #[schema(rename = "revoked")]
    Revoked,
}

/// How many audit entries to list, in the OpenAPI document.
pub struct AuditLimit;

impl utoipa::PartialSchema for AuditLimit {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::Integer)
            .minimum(Some(1))
            .maximum(Some(1000))
            .into()
    }
}

impl ToSchema for AuditLimit {}

#[derive(Deserialize, ToSchema)]
pub struct ClientsQuery {
    status: Option<String>,
    account_id: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ClientList {
    clients: Vec<Client>,
}

#[derive(Serialize, ToSchema)]
pub struct KeyList {
    keys: Vec<ApiKey>,
}

#[derive(Serialize, ToSchema)]
pub struct SubscriptionList {
    subscriptions: Vec<Subscription>,
}

#[derive(Deserialize, ToSchema)]
pub struct SubscriptionsQuery {
    client_id: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct AuditList {
    entries: Vec<AuditEntry>,
}

#[derive(Deserialize, ToSchema)]
pub struct AuditQuery {
    limit: Option<String>,
}

type Peer = ConnectInfo<super::Peer>;

#[utoipa::path(post, path = "/admin/v1/clients", request_body = CreateClient,
    responses((status = 201, body = CreatedClient), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn create_client(
    State(api): State<AdminApi>,
    ConnectInfo(super::Peer(peer)): Peer,
    AdminJson(req): AdminJson<CreateClient>,
) -> Result<impl IntoResponse, AdminError> {
    let created = api
        .registry
        .create_client(&actor(&peer), req, api.registry.admin_key_policy())
        .await?;
    Ok((StatusCode::CREATED, Json(created)))
}

#[utoipa::path(get, path = "/admin/v1/clients", params(("status" = Option<ClientStatus>, Query, description = "active or revoked; both when absent"),
        ("account_id" = Option<String>, Query, description = "only the clients of this account")),
    responses((status = 200, body = ClientList), (status = 400, body = ErrorBody)))]
async fn list_clients(
    State(api): State<AdminApi>,
    Query(q): Query<ClientsQuery>,
) -> Result<Json<ClientList>, AdminError> {
    let clients = api
        .registry
        .list_clients(q.status.as_deref(), q.account_id.as_deref())
        .await?;
    Ok(Json(ClientList { clients }))
}

#[utoipa::path(get, path = "/admin/v1/clients/{id}", params(("id" = String, Path)),
    responses((status = 200, body = ClientDetail), (status = 404, body = ErrorBody)))]
async fn get_client(
    State(api): State<AdminApi>,
    Path(id): Path<String>,
) -> Result<Json<ClientDetail>, AdminError> {
    Ok(Json(api.registry.get_client(&id).await?))
}

#[utoipa::path(patch, path = "/admin/v1/clients/{id}", params(("id" = String, Path)), request_body = PatchClient,
    responses((status = 200, body = Client), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn patch_client(
    State(api): State<AdminApi>,
    ConnectInfo(super::Peer(peer)): Peer,
    Path(id): Path<String>,
    AdminJson(req): AdminJson<PatchClient>,
) -> Result<Json<Client>, AdminError> {
    Ok(Json(
        api.registry.patch_client(&actor(&peer), &id, req).await?,
    ))
}

#[utoipa::path(post, path = "/admin/v1/clients/{id}/secret", params(("id" = String, Path)), request_body(content = Option<RotateSecret>),
    responses((status = 200, body = NewClientSecret), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn rotate_secret(
    State(api): State<AdminApi>,
    ConnectInfo(super::Peer(peer)): Peer,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<NewClientSecret>, AdminError> {
    let req: RotateSecret = optional_body(&body)?;
    Ok(Json(
        api.registry.rotate_secret(&actor(&peer), &id, req).await?,
    ))
}

#[utoipa::path(post, path = "/admin/v1/clients/{id}/revoke", params(("id" = String, Path)),
    responses((status = 200, body = Client), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn revoke_client(
    State(api): State<AdminApi>,
    ConnectInfo(super::Peer(peer)): Peer,
    Path(id): Path<String>,
) -> Result<Json<Client>, AdminError> {
    Ok(Json(api.registry.revoke_client(&actor(&peer), &id).await?))
}

#[utoipa::path(post, path = "/admin/v1/clients/{id}/keys", params(("id" = String, Path)), request_body(content = Option<CreateKey>),
    responses((status = 201, body = CreatedKey), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn create_key(
    State(api): State<AdminApi>,
    ConnectInfo(super::Peer(peer)): Peer,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<impl IntoResponse, AdminError> {
    let req: CreateKey = optional_body(&body)?;
    let key = api
        .registry
        .create_key(&actor(&peer), &id, req, api.registry.admin_key_policy())
        .await?;
    Ok((StatusCode::CREATED, Json(key)))
}

#[utoipa::path(get, path = "/admin/v1/clients/{id}/keys", params(("id" = String, Path)),
    responses((status = 200, body = KeyList), (status = 404, body = ErrorBody)))]
async fn list_keys(
    State(api): State<AdminApi>,
    Path(id): Path<String>,
) -> Result<Json<KeyList>, AdminError> {
    Ok(Json(KeyList {
        keys: api.registry.list_keys(&id).await?,
    }))
}

#[utoipa::path(post, path = "/admin/v1/keys/{id}/revoke", params(("id" = String, Path)),
    responses((status = 200, body = ApiKey), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn revoke_key(
    State(api): State<AdminApi>,
    ConnectInfo(super::Peer(peer)): Peer,
    Path(id): Path<String>,
) -> Result<Json<ApiKey>, AdminError> {
    Ok(Json(api.registry.revoke_key(&actor(&peer), &id).await?))
}

#[utoipa::path(post, path = "/admin/v1/keys/{id}/renew", params(("id" = String, Path)),
    responses((status = 200, body = ApiKey), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn renew_key(
    State(api): State<AdminApi>,
    ConnectInfo(super::Peer(peer)): Peer,
    Path(id): Path<String>,
) -> Result<Json<ApiKey>, AdminError> {
    Ok(Json(
        api.registry
            .renew_key(&actor(&peer), &id, api.registry.admin_key_policy())
            .await?,
    ))
}

/// A new key of the same client, name and lifetime policy, shown once;
/// the old key works for the grace period (`expiring`), then `expired`.
#[utoipa::path(post, path = "/admin/v1/keys/{id}/roll", params(("id" = String, Path)), request_body(content = Option<RollKey>),
    responses((status = 201, body = CreatedKey), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn roll_key(
    State(api): State<AdminApi>,
    ConnectInfo(super::Peer(peer)): Peer,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<impl IntoResponse, AdminError> {
    let req: RollKey = optional_body(&body)?;
    let key = api
        .registry
        .roll_key(&actor(&peer), &id, req, api.registry.admin_key_policy())
        .await?;
    Ok((StatusCode::CREATED, Json(key)))
}

#[derive(Deserialize, ToSchema)]
pub struct ExpiringQuery {
    expiring_within: Option<String>,
}

/// Keys that expire within a duration (`7d`, `36h`), soonest first; never
/// the keys themselves.
#[utoipa::path(get, path = "/admin/v1/keys", params(("expiring_within" = String, Query, description = "a duration such as 7d")),
    responses((status = 200, body = KeyList), (status = 400, body = ErrorBody)))]
async fn expiring_keys(
    State(api): State<AdminApi>,
    Query(q): Query<ExpiringQuery>,
) -> Result<Json<KeyList>, AdminError> {
    let within = q.expiring_within.ok_or_else(|| {
        AdminError::BadRequest("`expiring_within` is required, such as 7d".into())
    })?;
    Ok(Json(KeyList {
        keys: api.registry.expiring_keys(&within).await?,
    }))
}

/// Requests of a client per hour or day, by service, key and outcome.
#[utoipa::path(get, path = "/admin/v1/clients/{id}/usage", params(("id" = String, Path),
        ("from" = Option<String>, Query, description = "Unix seconds or RFC 3339; default: `to` minus 7 days"),
        ("to" = Option<String>, Query, description = "Unix seconds or RFC 3339; default: now"),
        ("step" = Option<String>, Query, description = "hour (default) or day")),
    responses((status = 200, body = UsageReport), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn client_usage(
    State(api): State<AdminApi>,
    Path(id): Path<String>,
    Query(q): Query<UsageQuery>,
) -> Result<Json<UsageReport>, AdminError> {
    Ok(Json(api.registry.usage(&id, &q).await?))
}

#[utoipa::path(post, path = "/admin/v1/subscriptions", request_body = CreateSubscription,
    responses((status = 201, body = Subscription), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn create_subscription(
    State(api): State<AdminApi>,
    ConnectInfo(super::Peer(peer)): Peer,
    AdminJson(req): AdminJson<CreateSubscription>,
) -> Result<impl IntoResponse, AdminError> {
    let sub = api
        .registry
        .create_subscription(&actor(&peer), req, SubscriptionStatus::Active)
        .await?;
    Ok((StatusCode::CREATED, Json(sub)))
}

#[utoipa::path(get, path = "/admin/v1/subscriptions", params(("client_id" = Option<String>, Query)),
    responses((status = 200, body = SubscriptionList)))]
async fn list_subscriptions(
    State(api): State<AdminApi>,
    Query(q): Query<SubscriptionsQuery>,
) -> Result<Json<SubscriptionList>, AdminError> {
    let subscriptions = api
        .registry
        .list_subscriptions(q.client_id.as_deref())
        .await?;
    Ok(Json(SubscriptionList { subscriptions }))
}

#[utoipa::path(delete, path = "/admin/v1/subscriptions/{id}", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn delete_subscription(
    State(api): State<AdminApi>,
    ConnectInfo(super::Peer(peer)): Peer,
    Path(id): Path<String>,
) -> Result<StatusCode, AdminError> {
    api.registry.delete_subscription(&actor(&peer), &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Approve a pending subscription (of a service with `approval: manual`).
#[utoipa::path(post, path = "/admin/v1/subscriptions/{id}/approve", params(("id" = String, Path)),
    responses((status = 200, body = Subscription), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn approve_subscription(
    State(api): State<AdminApi>,
    ConnectInfo(super::Peer(peer)): Peer,
    Path(id): Path<String>,
) -> Result<Json<Subscription>, AdminError> {
    Ok(Json(
        api.registry
            .approve_subscription(&actor(&peer), &id)
            .await?,
    ))
}

/// Refuse a pending subscription: it is removed.
#[utoipa::path(post, path = "/admin/v1/subscriptions/{id}/reject", params(("id" = String, Path)),
    responses((status = 200, body = Subscription), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn reject_subscription(
    State(api): State<AdminApi>,
    ConnectInfo(super::Peer(peer)): Peer,
    Path(id): Path<String>,
) -> Result<Json<Subscription>, AdminError> {
    Ok(Json(
        api.registry.reject_subscription(&actor(&peer), &id).await?,
    ))
}

/// Account calls fail only for the admin API's reasons.
fn account_error(e: super::accounts::PortalError) -> AdminError {
    match e {
        super::accounts::PortalError::Admin(e) => e,
        other => AdminError::Unavailable(other.to_string()),
    }
}

#[derive(Serialize, ToSchema)]
pub struct AccountList {
    accounts: Vec<Account>,
}

/// A built-in account (`username`, and an optional one-time `password`) or
/// the account of an external issuer's subject.
#[utoipa::path(post, path = "/admin/v1/accounts", request_body = super::accounts::CreateAccount,
    responses((status = 201, body = Account), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn create_account(
    State(api): State<AdminApi>,
    ConnectInfo(super::Peer(peer)): Peer,
    AdminJson(req): AdminJson<super::accounts::CreateAccount>,
) -> Result<impl IntoResponse, AdminError> {
    let account = api
        .accounts
        .create_account(&actor(&peer), req)
        .await
        .map_err(account_error)?;
    Ok((StatusCode::CREATED, Json(account)))
}

#[utoipa::path(get, path = "/admin/v1/accounts", responses((status = 200, body = AccountList)))]
async fn list_accounts(State(api): State<AdminApi>) -> Result<Json<AccountList>, AdminError> {
    Ok(Json(AccountList {
        accounts: api.accounts.list().await?,
    }))
}

#[utoipa::path(get, path = "/admin/v1/accounts/{id}", params(("id" = String, Path)),
    responses((status = 200, body = Account), (status = 404, body = ErrorBody)))]
async fn get_account(
    State(api): State<AdminApi>,
    Path(id): Path<String>,
) -> Result<Json<Account>, AdminError> {
    Ok(Json(api.accounts.get(&id).await?))
}

/// `status: disabled` ends every session of the account at once and refuses
/// its sign-ins; its clients keep working unless revoked.
#[utoipa::path(patch, path = "/admin/v1/accounts/{id}", params(("id" = String, Path)), request_body = super::accounts::PatchAccount,
    responses((status = 200, body = Account), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn patch_account(
    State(api): State<AdminApi>,
    ConnectInfo(super::Peer(peer)): Peer,
    Path(id): Path<String>,
    AdminJson(req): AdminJson<super::accounts::PatchAccount>,
) -> Result<Json<Account>, AdminError> {
    Ok(Json(api.accounts.patch(&actor(&peer), &id, req).await?))
}

/// Set a one-time password: the account's sessions end, and its next
/// sign-in may only change it.
#[utoipa::path(post, path = "/admin/v1/accounts/{id}/password", params(("id" = String, Path)), request_body = super::accounts::OneTimePassword,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn set_account_password(
    State(api): State<AdminApi>,
    ConnectInfo(super::Peer(peer)): Peer,
    Path(id): Path<String>,
    AdminJson(req): AdminJson<super::accounts::OneTimePassword>,
) -> Result<StatusCode, AdminError> {
    api.accounts
        .set_one_time_password(&actor(&peer), &id, req)
        .await
        .map_err(account_error)?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/admin/v1/audit", params(("limit" = Option<AuditLimit>, Query, description = "1 to 1000, default 100")),
    responses((status = 200, body = AuditList), (status = 400, body = ErrorBody)))]
async fn audit(
    State(api): State<AdminApi>,
    Query(q): Query<AuditQuery>,
) -> Result<Json<AuditList>, AdminError> {
    let limit = match q.limit.as_deref() {
        None | Some("") => None,
        Some(l) => Some(
            l.parse::<i64>()
                .map_err(|_| AdminError::BadRequest("limit must be an integer".into()))?,
        ),
    };
    Ok(Json(AuditList {
        entries: api.registry.audit(limit).await?,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct RotatedKey {
    kid: String,
    algorithm: String,
    #[schema(value_type = Object)]
    public_jwk: serde_json::Value,
}

#[utoipa::path(post, path = "/admin/v1/signing-keys/rotate",
    responses((status = 200, body = RotatedKey), (status = 503, body = ErrorBody)))]
async fn rotate_signing_key(
    State(api): State<AdminApi>,
    ConnectInfo(super::Peer(peer)): Peer,
) -> Result<Json<serde_json::Value>, AdminError> {
    api.oauth
        .rotate_signing_key(&actor(&peer))
        .await
        .map(Json)
        .map_err(|e| AdminError::Unavailable(e.to_string()))
}

/// Load the configuration file again; a file that fails to load is refused
/// (400, with every error) and the running configuration stays.
#[utoipa::path(post, path = "/admin/v1/reload",
    responses((status = 200, body = crate::control::reload::Reloaded), (status = 400, body = ErrorBody)))]
async fn reload(
    State(api): State<AdminApi>,
    ConnectInfo(super::Peer(peer)): Peer,
) -> Result<Json<crate::control::reload::Reloaded>, AdminError> {
    api.reloader
        .reload(&actor(&peer))
        .await
        .map(Json)
        .map_err(|errors| AdminError::BadRequest(format!("configuration refused: {errors}")))
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Tollgate admin API", description = "Consumer clients, API keys, subscriptions and the audit log."),
    paths(create_client, list_clients, get_client, patch_client, rotate_secret, revoke_client, create_key, list_keys,
          revoke_key, renew_key, roll_key, expiring_keys, client_usage, create_subscription, list_subscriptions, delete_subscription,
          approve_subscription, reject_subscription, create_account, list_accounts, get_account, patch_account,
          set_account_password, audit,
          rotate_signing_key, reload, openapi),
    modifiers(&BearerAuth),
    security(("admin_token" = []))
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        use utoipa::openapi::{Content, Ref, ResponseBuilder};
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        // Every call answers 401 without the admin token; every call that
        // reads or writes the store answers 503 when it is down.
        let error = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    Content::new(Some(Ref::from_schema_name("ErrorBody"))),
                )
                .build()
        };
        for (path, item) in doc.paths.paths.iter_mut() {
            let store = !path.ends_with("/reload") && !path.ends_with("/openapi.json");
            for op in [
                &mut item.get,
                &mut item.post,
                &mut item.patch,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                op.responses
                    .responses
                    .entry("401".into())
                    .or_insert_with(|| error("no valid admin token").into());
                if store {
                    op.responses
                        .responses
                        .entry("503".into())
                        .or_insert_with(|| error("the store is unavailable").into());
                }
            }
        }
    }
}

#[utoipa::path(get, path = "/admin/v1/openapi.json", responses((status = 200, description = "this document")))]
async fn openapi() -> impl IntoResponse {
    Json(ApiDoc::openapi())
}
