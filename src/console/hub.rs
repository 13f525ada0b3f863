//! "My Hub": the console of an account, under `portal.path` on the proxy
//! listener. The session is the portal's own (`tollgate_session` cookie,
//! a `tgp_…` token); each change carries the session's CSRF token as a form
//! field. What an account may do and see is exactly what the portal API
//! lets it: same ownership checks (another account's id is "not found"),
//! same limits of `portal`, same `Registry` calls and audit actor.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{middleware, Extension, Router};
use maud::{html, Markup};
use serde::Deserialize;

use super::view::{self, Nav};
use super::{cookie, page, same_secret, see_other, set_cookie, Form};
use crate::config::{Approval, PortalSettings};
use crate::control::accounts::{Caller, ChangePassword, NewSession, PortalError};
use crate::control::registry::{
    AdminError, CreateClient, CreateKey, CreateSubscription, PatchClient, RollKey, RotateSecret,
    UsageQuery,
};
use crate::portal::rules::{
    check_portal_scopes, key_policy, own_client, own_key, own_subscription, subscription_status,
};
use crate::portal::{PortalApi, PortalConn, SESSION_COOKIE};
use crate::store::{ApiKey, AuthType, Client, Status, Subscription, SubscriptionStatus};

const PRODUCT: &str = "My Hub";
/// The cookie that ties a sign-in form to the browser that loaded it.
const SIGN_IN_COOKIE: &str = "tollgate_sign_in";
/// The lifetime of a key made with "15 days".
const SHORT_KEY_SECS: i64 = 15 * 86_400;
/// The days the usage chart of a client page shows.
const USAGE_DAYS: i64 = 14;
/// Keys expiring within this are marked (as `GET /admin/v1/keys?expiring_within=7d` lists them).
const EXPIRING_SECS: i64 = 7 * 86_400;

#[derive(Clone)]
pub struct Hub {
    pub api: PortalApi,
    pub oidc: Arc<super::oidc::Flows>,
}

/// The console's routes, for paths with `portal.path` removed; they never
/// overlap the API's `/v1/…`.
pub fn router(api: PortalApi) -> Router {
    let hub = Hub {
        api,
        oidc: Arc::new(super::oidc::Flows::new()),
    };
    Router::new()
        .route("/", get(clients_page))
        .route("/assets/{name}", get(super::asset))
        .route("/sign-in", get(sign_in_page).post(sign_in))
        .route("/sign-in/{issuer}", get(super::oidc::start))
        .route("/callback", get(super::oidc::callback))
        .route("/sign-out", post(sign_out))
        .route("/password", get(password_page).post(change_password))
        .route("/clients", post(create_client))
        .route("/clients/new", get(new_client_page))
        .route("/clients/{id}", get(client_page))
        .route("/clients/{id}/edit", get(edit_page).post(edit_client))
        .route("/clients/{id}/secret", post(new_credential))
        .route("/clients/{id}/revoke", get(revoke_page).post(revoke_client))
        .route("/clients/{id}/keys", post(create_key))
        .route("/clients/{id}/subscriptions", post(add_subscription))
        .route("/keys/{id}/revoke", post(revoke_key))
        .route("/keys/{id}/renew", post(renew_key))
        .route("/keys/{id}/roll", post(roll_key))
        .route("/subscriptions/{id}/remove", post(remove_subscription))
        .layer(middleware::from_fn(super::secure_headers))
        .with_state(hub)
}

pub(super) fn settings(api: &PortalApi) -> Option<PortalSettings> {
    api.snapshot.load().config.portal.clone()
}

/// The answer when the portal is off: a reload can remove it between the
/// proxy handing a request to the console and the handler reading it.
pub(super) fn portal_off() -> Response {
    (StatusCode::NOT_FOUND, "the portal is not enabled").into_response()
}

/// A signed-in browser.
struct Signed {
    caller: Caller,
    csrf: String,
    portal: PortalSettings,
}

impl Signed {
    fn base(&self) -> &str {
        &self.portal.path
    }

    fn who(&self) -> String {
        let a = &self.caller.account;
        if !a.display_name.is_empty() {
            a.display_name.clone()
        } else if let Some(u) = &a.username {
            u.clone()
        } else {
            a.subject.clone().unwrap_or_else(|| a.id.clone())
        }
    }

    fn nav(&self, current: &str) -> Nav<'static> {
        Nav {
            links: vec![("Clients", format!("{}/", self.base()), current == "clients")],
            sign_out: Some((format!("{}/sign-out", self.base()), self.csrf.clone())),
            who: Some(self.who()),
        }
    }

    fn frame(&self, title: &str, current: &str, body: Markup) -> Markup {
        view::frame(
            title,
            PRODUCT,
            &format!("{}/assets", self.base()),
            &self.nav(current),
            body,
        )
    }

    fn csrf_field(&self) -> Markup {
        html! { input type="hidden" name="csrf" value=(self.csrf); }
    }

    /// A failed call as a page that says why, with a way back.
    fn failure(&self, e: impl Into<PortalError>) -> Response {
        failure(self.base(), e.into())
    }

    /// The account's own client, key or subscription: another account's
    /// is "not found", as in the portal API.
    async fn client(&self, api: &PortalApi, id: &str) -> Result<Client, Response> {
        own_client(api, &self.caller, id)
            .await
            .map_err(|e| self.failure(e))
    }

    async fn key(&self, api: &PortalApi, id: &str) -> Result<ApiKey, Response> {
        own_key(api, &self.caller, id)
            .await
            .map_err(|e| self.failure(e))
    }

    async fn subscription(&self, api: &PortalApi, id: &str) -> Result<Subscription, Response> {
        own_subscription(api, &self.caller, id)
            .await
            .map_err(|e| self.failure(e))
    }
}

/// The session of the request's cookie, or the answer to give instead: the
/// sign-in page, or the password page while a one-time password is in use.
async fn signed_in(
    api: &PortalApi,
    headers: &HeaderMap,
    changing: bool,
) -> Result<Signed, Response> {
    let Some(portal) = settings(api) else {
        return Err(portal_off());
    };
    let to_sign_in = || see_other(&format!("{}/sign-in", portal.path), vec![]);
    let Some(token) = cookie(headers, SESSION_COOKIE) else {
        return Err(to_sign_in());
    };
    let caller = match api.accounts.session(token).await {
        Ok(c) => c,
        Err(PortalError::Unauthorized(_)) => return Err(to_sign_in()),
        Err(e) => return Err(failure(&portal.path, e)),
    };
    let must_change = caller.session.as_ref().is_some_and(|s| s.password_change);
    if must_change && !changing {
        return Err(see_other(&format!("{}/password", portal.path), vec![]));
    }
    Ok(Signed {
        csrf: api.accounts.csrf_token(token),
        caller,
        portal,
    })
}

/// A signed-in change: the session, and its CSRF token in the submitted
/// form.
async fn change(
    api: &PortalApi,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<(Signed, Form), Response> {
    let form = Form::parse(body);
    let s = signed_in(api, headers, false).await?;
    check_csrf(&s, &form).map_err(|r| *r)?;
    Ok((s, form))
}

/// Boxed: a page is large, and the happy path should not carry its size.
fn check_csrf(s: &Signed, form: &Form) -> Result<(), Box<Response>> {
    if same_secret(form.get("csrf").unwrap_or(""), &s.csrf) {
        return Ok(());
    }
    Err(Box::new(message_page(
        StatusCode::FORBIDDEN,
        &s.portal.path,
        "This form has expired",
        "The change was not made: the form did not carry this session's security token. Reload the page and try again.",
    )))
}

fn status_of(e: &PortalError) -> StatusCode {
    match e {
        PortalError::Admin(AdminError::BadRequest(_)) => StatusCode::BAD_REQUEST,
        PortalError::Admin(AdminError::NotFound(_)) => StatusCode::NOT_FOUND,
        PortalError::Admin(AdminError::Conflict(_)) => StatusCode::CONFLICT,
        PortalError::Admin(AdminError::Unavailable(_)) => StatusCode::SERVICE_UNAVAILABLE,
        PortalError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
        PortalError::Forbidden(..) => StatusCode::FORBIDDEN,
        PortalError::Locked(_) => StatusCode::TOO_MANY_REQUESTS,
    }
}

/// A failed call as a page that says why, with a way back.
fn failure(base: &str, e: PortalError) -> Response {
    if let PortalError::Admin(AdminError::Unavailable(detail)) = &e {
        tracing::error!(error = %detail, "store unavailable for a console page");
    }
    message_page(status_of(&e), base, "That did not work", &e.to_string())
}

fn message_page(status: StatusCode, base: &str, title: &str, text: &str) -> Response {
    let nav = Nav {
        links: vec![("Clients", format!("{base}/"), false)],
        sign_out: None,
        who: None,
    };
    page(
        status,
        view::frame(
            title,
            PRODUCT,
            &format!("{base}/assets"),
            &nav,
            html! {
                p.error role="alert" { (text) }
                p { a href={ (base) "/" } { "Back to your clients" } }
            },
        ),
    )
}

/// The scopes `portal.services` offer, once each.
fn offered_scopes(portal: &PortalSettings) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in portal.allowed_scopes() {
        if !out.contains(s) {
            out.push(s.clone());
        }
    }
    out
}

fn type_label(t: AuthType) -> &'static str {
    match t {
        AuthType::ApiKey => "API key",
        AuthType::Oauth2 => "OAuth2",
        AuthType::External => "External",
    }
}

fn sub_label(s: &Subscription) -> String {
    let mut out = s.service.clone();
    if let Some(p) = &s.plan {
        out.push_str(&format!(" ({p})"));
    }
    if s.status == SubscriptionStatus::Pending {
        out.push_str(" — pending approval");
    }
    out
}

#[derive(Deserialize, Default)]
struct Msg {
    msg: Option<String>,
}

/// Messages after a redirect: a fixed set, so no text comes from the URL.
fn message(code: Option<&str>) -> Option<&'static str> {
    Some(match code? {
        "changed" => "Your password is changed.",
        "revoked" => "The client is revoked.",
        "saved" => "Saved.",
        "key_revoked" => "The key is revoked.",
        "key_renewed" => "The key is active again.",
        "subscribed" => "Subscribed.",
        "pending" => "Subscription requested: an operator must approve it before it grants access.",
        "unsubscribed" => "The subscription is removed.",
        _ => return None,
    })
}

// ---- signing in ----------------------------------------------------------

fn sign_in_markup(
    portal: &PortalSettings,
    form_token: &str,
    username: &str,
    error: Option<&str>,
    issuers: &[String],
) -> Markup {
    let base = &portal.path;
    let nav = Nav {
        links: vec![],
        sign_out: None,
        who: None,
    };
    view::frame(
        "Sign in",
        PRODUCT,
        &format!("{base}/assets"),
        &nav,
        html! {
            (view::notice(None, error))
            @if portal.password {
                form.card method="post" action={ (base) "/sign-in" } {
                    input type="hidden" name="csrf" value=(form_token);
                    div.field {
                        label for="username" { "Username" }
                        input #username type="text" name="username" value=(username) autocomplete="username" required autofocus;
                    }
                    div.field {
                        label for="password" { "Password" }
                        input #password type="password" name="password" autocomplete="current-password" required;
                    }
                    button.primary type="submit" { "Sign in" }
                }
            }
            @if !issuers.is_empty() {
                div.card {
                    @for name in issuers {
                        p { a.button href={ (base) "/sign-in/" (name) } { "Sign in with " (name) } }
                    }
                }
            }
        },
    )
}

/// The issuers of `portal.sign_in.issuers` with a `client_id`: those the
/// browser can sign in with.
pub(super) fn browser_issuers(api: &PortalApi, portal: &PortalSettings) -> Vec<String> {
    let snap = api.snapshot.load();
    portal
        .issuers
        .iter()
        .filter(|name| {
            snap.config
                .auth
                .issuers
                .iter()
                .any(|i| &i.name == *name && i.client_id.is_some())
        })
        .cloned()
        .collect()
}

/// The sign-in form, tied to this browser by a cookie so that another site
/// cannot sign it in to an account of its choosing.
fn sign_in_answer(
    api: &PortalApi,
    portal: &PortalSettings,
    (headers, tls): (&HeaderMap, bool),
    status: StatusCode,
    username: &str,
    error: Option<&str>,
) -> Response {
    // the browser's existing form cookie stays, so two open tabs both work
    let nonce = super::form_nonce(headers, SIGN_IN_COOKIE);
    let form_token = api.accounts.csrf_token(&format!("sign-in:{nonce}"));
    let issuers = browser_issuers(api, portal);
    let mut resp = page(
        status,
        sign_in_markup(portal, &form_token, username, error, &issuers),
    );
    resp.headers_mut().append(
        axum::http::header::SET_COOKIE,
        set_cookie(SIGN_IN_COOKIE, &nonce, &portal.path, 3600, tls),
    );
    resp
}

fn tls_of(conn: &Option<Extension<PortalConn>>) -> bool {
    conn.as_ref().is_some_and(|Extension(c)| c.tls)
}

async fn sign_in_page(
    State(hub): State<Hub>,
    conn: Option<Extension<PortalConn>>,
    headers: HeaderMap,
) -> Response {
    let Some(portal) = settings(&hub.api) else {
        return portal_off();
    };
    if let Some(token) = cookie(&headers, SESSION_COOKIE) {
        if hub.api.accounts.session(token).await.is_ok() {
            return see_other(&format!("{}/", portal.path), vec![]);
        }
    }
    sign_in_answer(
        &hub.api,
        &portal,
        (&headers, tls_of(&conn)),
        StatusCode::OK,
        "",
        None,
    )
}

/// The session cookie of a new session.
pub(super) fn session_cookie(
    portal: &PortalSettings,
    session: &NewSession,
    tls: bool,
) -> axum::http::HeaderValue {
    let max_age = (session.expires_at - crate::store::now()).max(0);
    set_cookie(SESSION_COOKIE, &session.token, &portal.path, max_age, tls)
}

async fn sign_in(
    State(hub): State<Hub>,
    conn: Option<Extension<PortalConn>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let api = &hub.api;
    let Some(portal) = settings(api) else {
        return portal_off();
    };
    let tls = tls_of(&conn);
    let form = Form::parse(&body);
    let username = form.text("username");
    let bound = cookie(&headers, SIGN_IN_COOKIE)
        .map(|n| api.accounts.csrf_token(&format!("sign-in:{n}")))
        .is_some_and(|want| same_secret(form.get("csrf").unwrap_or(""), &want));
    if !bound {
        return sign_in_answer(
            api,
            &portal,
            (&headers, tls),
            StatusCode::FORBIDDEN,
            &username,
            Some("This sign-in form has expired. Please try again."),
        );
    }
    let peer = conn.as_ref().and_then(|Extension(c)| c.peer);
    let session = match api
        .accounts
        .sign_in_password(&username, &form.text("password"), peer)
        .await
    {
        Ok(s) => s,
        Err(e) => {
            let text = match &e {
                PortalError::Unauthorized(_) => "Invalid username or password.".to_string(),
                PortalError::Locked(wait) => format!(
                    "Too many failed sign-ins. Try again in {} minutes.",
                    wait.div_ceil(60).max(1)
                ),
                other => other.to_string(),
            };
            return sign_in_answer(
                api,
                &portal,
                (&headers, tls),
                status_of(&e),
                &username,
                Some(&text),
            );
        }
    };
    let next = if session.password_change_required {
        "/password"
    } else {
        "/"
    };
    see_other(
        &format!("{}{next}", portal.path),
        vec![
            session_cookie(&portal, &session, tls),
            set_cookie(SIGN_IN_COOKIE, "", &portal.path, 0, tls),
        ],
    )
}

async fn sign_out(
    State(hub): State<Hub>,
    conn: Option<Extension<PortalConn>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Response> {
    // signing out works while a one-time password is in use
    let form = Form::parse(&body);
    let s = signed_in(&hub.api, &headers, true).await?;
    check_csrf(&s, &form).map_err(|r| *r)?;
    if let Some(token) = cookie(&headers, SESSION_COOKIE) {
        hub.api
            .accounts
            .sign_out(token)
            .await
            .map_err(|e| s.failure(e))?;
    }
    Ok(see_other(
        &format!("{}/sign-in", s.base()),
        vec![set_cookie(SESSION_COOKIE, "", s.base(), 0, tls_of(&conn))],
    ))
}

fn password_markup(s: &Signed, error: Option<&str>) -> Markup {
    let forced = s.caller.session.as_ref().is_some_and(|x| x.password_change);
    s.frame(
        "Change your password",
        "",
        html! {
            @if forced {
                p.notice role="status" { "You signed in with a one-time password. Choose your own password to continue." }
            }
            (view::notice(None, error))
            form.card method="post" action={ (s.base()) "/password" } {
                (s.csrf_field())
                div.field {
                    label for="current" { "Current password" }
                    input #current type="password" name="current_password" autocomplete="current-password" required;
                }
                div.field {
                    label for="new" { "New password" }
                    input #new type="password" name="new_password" autocomplete="new-password" minlength="12" required aria-describedby="new-help";
                    small #new-help { "At least 12 characters." }
                }
                div.field {
                    label for="again" { "New password, again" }
                    input #again type="password" name="again" autocomplete="new-password" minlength="12" required;
                }
                button.primary type="submit" { "Change password" }
            }
        },
    )
}

async fn password_page(State(hub): State<Hub>, headers: HeaderMap) -> Result<Response, Response> {
    let s = signed_in(&hub.api, &headers, true).await?;
    Ok(page(StatusCode::OK, password_markup(&s, None)))
}

async fn change_password(
    State(hub): State<Hub>,
    conn: Option<Extension<PortalConn>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Response> {
    // the change that a one-time password asks for
    let form = Form::parse(&body);
    let s = signed_in(&hub.api, &headers, true).await?;
    check_csrf(&s, &form).map_err(|r| *r)?;
    let new_password = form.text("new_password");
    if new_password != form.text("again") {
        return Err(page(
            StatusCode::BAD_REQUEST,
            password_markup(&s, Some("The two new passwords differ.")),
        ));
    }
    let req = ChangePassword {
        current_password: form.text("current_password"),
        new_password,
    };
    let peer = conn.as_ref().and_then(|Extension(c)| c.peer);
    hub.api
        .accounts
        .change_password(&s.caller, req, peer)
        .await
        .map_err(|e| page(status_of(&e), password_markup(&s, Some(&e.to_string()))))?;
    Ok(see_other(&format!("{}/?msg=changed", s.base()), vec![]))
}

// ---- clients ---------------------------------------------------------------

struct ClientRow {
    client: Client,
    subscriptions: Vec<Subscription>,
    last_used: Option<i64>,
}

async fn client_rows(api: &PortalApi, caller: &Caller) -> Result<Vec<ClientRow>, PortalError> {
    let clients = api
        .registry
        .list_clients(None, Some(&caller.account.id))
        .await?;
    let mut rows = Vec::with_capacity(clients.len());
    for client in clients {
        let (subscriptions, last_used) = if client.status == Status::Active {
            let subs = api.registry.list_subscriptions(Some(&client.id)).await?;
            // an API key client's keys, or an oauth2 client's secrets
            let last_used = match client.auth_type {
                AuthType::Oauth2 => api
                    .registry
                    .store
                    .list_secrets(&client.id)
                    .await
                    .map_err(|e| AdminError::from_store(e, "client"))?
                    .iter()
                    .filter_map(|s| s.last_used_at)
                    .max(),
                _ => api
                    .registry
                    .list_keys(&client.id)
                    .await?
                    .iter()
                    .filter_map(|k| k.last_used_at)
                    .max(),
            };
            (subs, last_used)
        } else {
            (Vec::new(), None)
        };
        rows.push(ClientRow {
            client,
            subscriptions,
            last_used,
        });
    }
    Ok(rows)
}

/// The fields of a new client; `values`: what was typed before an error.
fn create_form(s: &Signed, values: Option<&Form>, error: Option<&str>) -> Markup {
    let name = values.map(|f| f.text("name")).unwrap_or_default();
    let description = values.map(|f| f.text("description")).unwrap_or_default();
    let chosen = values.map(|f| f.all("scopes")).unwrap_or_default();
    let oauth = values.and_then(|f| f.get("auth_type")) == Some("oauth2");
    html! {
        form method="post" action={ (s.base()) "/clients" } {
            (s.csrf_field())
            (view::notice(None, error))
            div.field {
                label for="new-name" { "Name" }
                input #new-name type="text" name="name" value=(name) maxlength="128" required;
            }
            div.field {
                label for="new-description" { "Description" }
                textarea #new-description name="description" rows="2" maxlength="1024" { (description) }
            }
            fieldset {
                legend { "Type (cannot be changed later)" }
                label.choice {
                    input type="radio" name="auth_type" value="api_key" checked[!oauth];
                    " API key"
                }
                label.choice {
                    input type="radio" name="auth_type" value="oauth2" checked[oauth];
                    " OAuth2 (client id and secret)"
                }
            }
            @let scopes = offered_scopes(&s.portal);
            @if !scopes.is_empty() {
                fieldset {
                    legend { "Scopes" }
                    @for scope in &scopes {
                        label.choice {
                            input type="checkbox" name="scopes" value=(scope) checked[chosen.contains(scope)];
                            " " (scope)
                        }
                    }
                }
            }
            div.actions {
                button.primary type="submit" { "Create client" }
                a.button data-close href={ (s.base()) "/" } { "Cancel" }
            }
        }
    }
}

async fn clients_page(
    State(hub): State<Hub>,
    headers: HeaderMap,
    Query(q): Query<Msg>,
) -> Result<Response, Response> {
    let s = signed_in(&hub.api, &headers, false).await?;
    let rows = client_rows(&hub.api, &s.caller)
        .await
        .map_err(|e| s.failure(e))?;
    let base = s.base().to_string();
    let (active, revoked): (Vec<&ClientRow>, Vec<&ClientRow>) =
        rows.iter().partition(|r| r.client.status == Status::Active);
    let body = html! {
        (view::notice(message(q.msg.as_deref()), None))
        p {
            a.button.primary href={ (base) "/clients/new" } data-dialog="create-dialog" { "Create new client" }
        }
        dialog #create-dialog aria-labelledby="create-title" {
            h2 #create-title { "Create new client" }
            (create_form(&s, None, None))
        }
        h2 #active { "Active clients" }
        @if active.is_empty() {
            p { "No active clients yet." }
        } @else {
            div.scroll {
                table aria-labelledby="active" {
                    thead { tr {
                        th scope="col" { "Name" } th scope="col" { "Type" } th scope="col" { "Client id" }
                        th scope="col" { "Created" } th scope="col" { "Subscriptions" } th scope="col" { "Last used" }
                        th scope="col" { span.visually-hidden { "Actions" } }
                    } }
                    tbody {
                        @for r in &active {
                            @let c = &r.client;
                            tr {
                                td { a href={ (base) "/clients/" (c.id) } { (c.name) } }
                                td { (type_label(c.auth_type)) }
                                td { code { (c.id) } }
                                td { (view::when(Some(c.created_at))) }
                                td {
                                    @if r.subscriptions.is_empty() { "—" }
                                    @for (i, sub) in r.subscriptions.iter().enumerate() {
                                        @if i > 0 { ", " }
                                        (sub_label(sub))
                                    }
                                }
                                td { (view::when(r.last_used)) }
                                td {
                                    details.menu {
                                        summary aria-label={ "Actions for " (c.name) } { "Actions" }
                                        ul {
                                            li { a href={ (base) "/clients/" (c.id) "/edit" } { "Edit" } }
                                            li {
                                                form method="post" action={ (base) "/clients/" (c.id) "/secret" } {
                                                    (s.csrf_field())
                                                    button.link type="submit" {
                                                        @if c.auth_type == AuthType::Oauth2 { "New secret" } @else { "New key" }
                                                    }
                                                }
                                            }
                                            li { a href={ (base) "/clients/" (c.id) "/revoke" } { "Revoke" } }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        h2 #revoked { "Revoked clients" }
        @if revoked.is_empty() {
            p { "No revoked clients." }
        } @else {
            div.scroll {
                table aria-labelledby="revoked" {
                    thead { tr { th scope="col" { "Name" } th scope="col" { "Type" } th scope="col" { "Revoked at" } } }
                    tbody {
                        @for r in &revoked {
                            tr {
                                td { (r.client.name) }
                                td { (type_label(r.client.auth_type)) }
                                td { (view::when(r.client.revoked_at)) }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(page(
        StatusCode::OK,
        s.frame("Your clients", "clients", body),
    ))
}

async fn new_client_page(State(hub): State<Hub>, headers: HeaderMap) -> Result<Response, Response> {
    let s = signed_in(&hub.api, &headers, false).await?;
    Ok(page(
        StatusCode::OK,
        s.frame("Create new client", "clients", create_form(&s, None, None)),
    ))
}

/// The page that shows a new credential, once. It is the answer to the
/// POST itself (never stored: `no-store`), so nothing can fetch it again.
fn shown_once_page(s: &Signed, title: &str, client: &Client, fields: Markup) -> Response {
    let base = s.base();
    page(
        StatusCode::OK,
        s.frame(
            title,
            "clients",
            html! {
                section.card.reveal aria-labelledby="reveal-title" {
                    h2 #reveal-title { (client.name) }
                    (view::shown_once())
                    (fields)
                    p.actions {
                        a.button.primary data-replace href={ (base) "/clients/" (client.id) } { "Done" }
                    }
                }
            },
        ),
    )
}

async fn create_client(
    State(hub): State<Hub>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Response> {
    let (s, form) = change(&hub.api, &headers, &body).await?;
    let api = &hub.api;
    let auth_type = match form.get("auth_type") {
        Some("oauth2") => AuthType::Oauth2,
        _ => AuthType::ApiKey,
    };
    let scopes = form.all("scopes");
    let retry = |e: PortalError| {
        page(
            status_of(&e),
            s.frame(
                "Create new client",
                "clients",
                create_form(&s, Some(&form), Some(&e.to_string())),
            ),
        )
    };
    check_portal_scopes(&s.portal, &scopes).map_err(&retry)?;
    let req = CreateClient {
        name: form.text("name"),
        description: Some(form.text("description")),
        auth_type,
        scopes: Some(scopes),
        issuer: None,
        external_id: None,
        account_id: Some(s.caller.account.id.clone()),
    };
    let created = api
        .registry
        .create_client(&s.caller.actor(), req, key_policy(api, &s.portal))
        .await
        .map_err(|e| retry(e.into()))?;
    let fields = html! {
        @if let Some(key) = &created.api_key {
            (view::copy_field("secret", "API key", &key.key))
            p { "Expires: " (view::when(key.expires_at)) }
        }
        @if let Some(secret) = &created.client_secret {
            (view::copy_field("client-id", "Client id", &created.client.id))
            (view::copy_field("secret", "Client secret", secret))
        }
    };
    Ok(shown_once_page(
        &s,
        "Client created",
        &created.client,
        fields,
    ))
}

/// A new key (API key clients) or a new secret (OAuth2 clients), from the
/// row menu; shown once.
async fn new_credential(
    State(hub): State<Hub>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, Response> {
    let (s, _) = change(&hub.api, &headers, &body).await?;
    let api = &hub.api;
    let client = s.client(api, &id).await?;
    let actor = s.caller.actor();
    let fields = if client.auth_type == AuthType::Oauth2 {
        let n = api
            .registry
            .rotate_secret(&actor, &id, RotateSecret::default())
            .await
            .map_err(|e| s.failure(e))?;
        html! {
            p { "The previous secret no longer works." }
            (view::copy_field("client-id", "Client id", &n.client_id))
            (view::copy_field("secret", "Client secret", &n.client_secret))
        }
    } else {
        let req = CreateKey {
            name: Some("default".into()),
            never_expires: None,
        };
        let k = api
            .registry
            .create_key(&actor, &id, req, key_policy(api, &s.portal))
            .await
            .map_err(|e| s.failure(e))?;
        html! {
            p { "The client's other keys keep working until you revoke them." }
            (view::copy_field("secret", "API key", &k.key))
            p { "Expires: " (view::when(k.expires_at)) }
        }
    };
    let title = if client.auth_type == AuthType::Oauth2 {
        "New client secret"
    } else {
        "New API key"
    };
    Ok(shown_once_page(&s, title, &client, fields))
}

fn edit_markup(
    s: &Signed,
    client: &Client,
    name: &str,
    description: &str,
    error: Option<&str>,
) -> Markup {
    let base = s.base();
    s.frame(
        "Edit client",
        "clients",
        html! {
            (view::notice(None, error))
            form.card method="post" action={ (base) "/clients/" (client.id) "/edit" } {
                (s.csrf_field())
                div.field {
                    label for="edit-name" { "Name" }
                    input #edit-name type="text" name="name" value=(name) maxlength="128" required;
                }
                div.field {
                    label for="edit-description" { "Description" }
                    textarea #edit-description name="description" rows="3" maxlength="1024" { (description) }
                }
                div.actions {
                    button.primary type="submit" { "Save" }
                    a.button href={ (base) "/clients/" (client.id) } { "Cancel" }
                }
            }
        },
    )
}

async fn edit_page(
    State(hub): State<Hub>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, Response> {
    let s = signed_in(&hub.api, &headers, false).await?;
    let c = s.client(&hub.api, &id).await?;
    Ok(page(
        StatusCode::OK,
        edit_markup(&s, &c, &c.name, &c.description, None),
    ))
}

async fn edit_client(
    State(hub): State<Hub>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, Response> {
    let (s, form) = change(&hub.api, &headers, &body).await?;
    let client = s.client(&hub.api, &id).await?;
    let req = PatchClient {
        name: Some(form.text("name")),
        description: Some(form.text("description")),
        scopes: None,
        allowed_cidrs: None,
        allowed_referers: None,
        auth_type: None,
    };
    hub.api
        .registry
        .patch_client(&s.caller.actor(), &id, req)
        .await
        .map_err(|e| {
            let e = PortalError::from(e);
            page(
                status_of(&e),
                edit_markup(
                    &s,
                    &client,
                    &form.text("name"),
                    &form.text("description"),
                    Some(&e.to_string()),
                ),
            )
        })?;
    Ok(see_other(
        &format!("{}/clients/{id}?msg=saved", s.base()),
        vec![],
    ))
}

async fn revoke_page(
    State(hub): State<Hub>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, Response> {
    let s = signed_in(&hub.api, &headers, false).await?;
    let api = &hub.api;
    let client = s.client(api, &id).await?;
    let subs = api
        .registry
        .list_subscriptions(Some(&id))
        .await
        .map_err(|e| s.failure(e))?;
    let base = s.base();
    Ok(page(
        StatusCode::OK,
        s.frame(
            "Revoke client",
            "clients",
            html! {
                section.card.danger aria-labelledby="confirm-title" {
                    h2 #confirm-title { "Revoke " (client.name) "?" }
                    p { strong { "Revoking is final." } " Its keys and secrets stop working at once and cannot be restored." }
                    @if subs.is_empty() {
                        p { "It has no subscriptions." }
                    } @else {
                        p { "It will be unassigned from these subscriptions:" }
                        ul.subs { @for sub in &subs { li { (sub_label(sub)) } } }
                    }
                    form method="post" action={ (base) "/clients/" (client.id) "/revoke" } {
                        (s.csrf_field())
                        div.actions {
                            button.danger type="submit" { "Revoke client" }
                            a.button href={ (base) "/" } { "Cancel" }
                        }
                    }
                }
            },
        ),
    ))
}

async fn revoke_client(
    State(hub): State<Hub>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, Response> {
    let (s, _) = change(&hub.api, &headers, &body).await?;
    // only the account's own client
    s.client(&hub.api, &id).await?;
    hub.api
        .registry
        .revoke_client(&s.caller.actor(), &id)
        .await
        .map_err(|e| s.failure(e))?;
    Ok(see_other(&format!("{}/?msg=revoked", s.base()), vec![]))
}

// ---- one client ----------------------------------------------------------------

async fn client_page(
    State(hub): State<Hub>,
    conn: Option<Extension<PortalConn>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<Msg>,
) -> Result<Response, Response> {
    let s = signed_in(&hub.api, &headers, false).await?;
    let api = &hub.api;
    let client = s.client(api, &id).await?;
    let (keys, subs) = match (
        api.registry.list_keys(&id).await,
        api.registry.list_subscriptions(Some(&id)).await,
    ) {
        (Ok(k), Ok(v)) => (k, v),
        (Err(e), _) | (_, Err(e)) => return Err(s.failure(e)),
    };
    let usage = UsageQuery {
        from: Some((crate::store::now() - (USAGE_DAYS - 1) * 86_400).to_string()),
        to: None,
        step: Some("day".into()),
    };
    let report = api
        .registry
        .usage(&id, &usage)
        .await
        .map_err(|e| s.failure(e))?;
    let days = per_day(&report.buckets, crate::store::now());
    let base = s.base().to_string();
    let active = client.status == Status::Active;
    let policy = key_policy(api, &s.portal);
    let now = crate::store::now();
    let short_days = (SHORT_KEY_SECS.min(policy.ttl_secs) / 86_400).max(1);
    let token_url = format!(
        "{}{}",
        super::origin(&headers, tls_of(&conn)),
        crate::control::token::TOKEN_PATH
    );
    let body = html! {
        (view::notice(message(q.msg.as_deref()), None))
        dl.facts {
            dt { "Type" } dd { (type_label(client.auth_type)) }
            dt { "Client id" } dd { code { (client.id) } }
            dt { "Status" } dd { (client.status.as_str()) }
            @if !client.description.is_empty() { dt { "Description" } dd { (client.description) } }
            @if !client.scopes.is_empty() { dt { "Scopes" } dd { (client.scopes.join(" ")) } }
            dt { "Created" } dd { (view::when(Some(client.created_at))) }
        }
        @if active {
            p.actions {
                a.button href={ (base) "/clients/" (client.id) "/edit" } { "Edit" }
                a.button.danger href={ (base) "/clients/" (client.id) "/revoke" } { "Revoke" }
            }
        }
        (usage_chart(&days))
        @if client.auth_type == AuthType::Oauth2 {
            h2 { "Getting a token" }
            (view::copy_field("token-url", "Token URL", &token_url))
            (view::copy_block("curl", "Example", &format!(
                "curl -u '{}:YOUR_CLIENT_SECRET' \\\n  -d grant_type=client_credentials \\\n  {}",
                client.id, token_url)))
            @if active {
                form method="post" action={ (base) "/clients/" (client.id) "/secret" } {
                    (s.csrf_field())
                    button type="submit" { "New secret" }
                }
            }
        }
        @if client.auth_type == AuthType::ApiKey {
            h2 #keys { "Keys" }
            @if keys.is_empty() { p { "No keys." } } @else {
                div.scroll {
                    table aria-labelledby="keys" {
                        thead { tr {
                            th scope="col" { "Name" } th scope="col" { "Prefix" } th scope="col" { "Status" }
                            th scope="col" { "Created" } th scope="col" { "Expires" } th scope="col" { "Last used" }
                            th scope="col" { "Uses" } th scope="col" { span.visually-hidden { "Actions" } }
                        } }
                        tbody {
                            @for k in &keys {
                                tr {
                                    td { (k.name) }
                                    td { code { (k.prefix) "…" } }
                                    td { (k.status) }
                                    td { (view::when(Some(k.created_at))) }
                                    td {
                                        @if k.expires_at.is_none() { "never" } @else { (view::when(k.expires_at)) }
                                        @if k.status == "active" && k.expires_at.is_some_and(|e| e - now < EXPIRING_SECS) {
                                            " " strong.soon { "expires soon" }
                                        }
                                    }
                                    td { (view::when(k.last_used_at)) }
                                    td { (k.use_count) }
                                    td {
                                        @if active {
                                            @if k.status == "active" {
                                                details.menu {
                                                    summary aria-label={ "Roll key " (k.name) " " (k.prefix) } { "Roll" }
                                                    form method="post" action={ (base) "/keys/" (k.id) "/roll" } {
                                                        (s.csrf_field())
                                                        label for={ "grace-" (k.id) } { "The old key keeps working" }
                                                        select id={ "grace-" (k.id) } name="grace" {
                                                            option value="0" { "not at all" }
                                                            option value="3600" { "for 1 hour" }
                                                            option value="86400" { "for 1 day" }
                                                            option value="604800" { "for 7 days" }
                                                        }
                                                        button type="submit" { "Roll to a new key" }
                                                    }
                                                }
                                                " "
                                            }
                                            @if k.status == "active" || k.status == "expiring" {
                                                form.inline method="post" action={ (base) "/keys/" (k.id) "/revoke" } {
                                                    (s.csrf_field())
                                                    button type="submit" aria-label={ "Revoke key " (k.name) " " (k.prefix) } { "Revoke" }
                                                }
                                            } @else {
                                                form.inline method="post" action={ (base) "/keys/" (k.id) "/renew" } {
                                                    (s.csrf_field())
                                                    button type="submit" aria-label={ "Renew key " (k.name) " " (k.prefix) } { "Renew" }
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if active {
                form.card method="post" action={ (base) "/clients/" (client.id) "/keys" } {
                    h3 { "Create a key" }
                    (s.csrf_field())
                    div.field {
                        label for="key-name" { "Name" }
                        input #key-name type="text" name="name" value="default" maxlength="128" required;
                    }
                    div.field {
                        label for="key-expiry" { "Expires" }
                        select #key-expiry name="expiry" {
                            option value="short" { "in " (short_days) " days" }
                            @if policy.allow_never { option value="never" { "never" } }
                        }
                    }
                    button.primary type="submit" { "Create key" }
                }
            }
        }
        h2 #subs { "Subscriptions" }
        @if subs.is_empty() { p { "No subscriptions." } } @else {
            div.scroll {
                table aria-labelledby="subs" {
                    thead { tr {
                        th scope="col" { "Service" } th scope="col" { "Plan" } th scope="col" { "Status" }
                        th scope="col" { "Since" } th scope="col" { span.visually-hidden { "Actions" } }
                    } }
                    tbody {
                        @for sub in &subs {
                            tr {
                                td { (sub.service) }
                                td { (sub.plan.as_deref().unwrap_or("—")) }
                                td { (sub.status.as_str()) }
                                td { (view::when(Some(sub.created_at))) }
                                td {
                                    form.inline method="post" action={ (base) "/subscriptions/" (sub.id) "/remove" } {
                                        (s.csrf_field())
                                        button type="submit" aria-label={ "Remove subscription to " (sub.service) } { "Remove" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if active && !s.portal.services.is_empty() {
            form.card method="post" action={ (base) "/clients/" (client.id) "/subscriptions" } {
                h3 { "Add a subscription" }
                (s.csrf_field())
                div.field {
                    label for="offer" { "Service and plan" }
                    select #offer name="offer" {
                        @for (name, svc) in &s.portal.services {
                            @let note = if svc.approval == Approval::Manual { " (needs approval)" } else { "" };
                            @if svc.plans.is_empty() {
                                option value={ (name) "|" } { (name) (note) }
                            }
                            @for plan in &svc.plans {
                                option value={ (name) "|" (plan) } { (name) " — " (plan) (note) }
                            }
                        }
                    }
                }
                button.primary type="submit" { "Subscribe" }
            }
        }
    };
    Ok(page(StatusCode::OK, s.frame(&client.name, "clients", body)))
}

async fn create_key(
    State(hub): State<Hub>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, Response> {
    let (s, form) = change(&hub.api, &headers, &body).await?;
    let api = &hub.api;
    let client = s.client(api, &id).await?;
    let mut policy = key_policy(api, &s.portal);
    policy.ttl_secs = policy.ttl_secs.min(SHORT_KEY_SECS);
    let req = CreateKey {
        name: Some(form.text("name")),
        never_expires: Some(form.get("expiry") == Some("never")),
    };
    let k = api
        .registry
        .create_key(&s.caller.actor(), &id, req, policy)
        .await
        .map_err(|e| s.failure(e))?;
    Ok(shown_once_page(
        &s,
        "New API key",
        &client,
        html! {
            (view::copy_field("secret", "API key", &k.key))
            p { "Name: " (k.name) ". Expires: " @if k.expires_at.is_none() { "never" } @else { (view::when(k.expires_at)) } "." }
        },
    ))
}

async fn key_change(
    hub: Hub,
    headers: HeaderMap,
    id: String,
    body: Bytes,
    renew: bool,
) -> Result<Response, Response> {
    let (s, _) = change(&hub.api, &headers, &body).await?;
    let api = &hub.api;
    let key = s.key(api, &id).await?;
    let actor = s.caller.actor();
    let (done, msg) = if renew {
        (
            api.registry
                .renew_key(&actor, &id, key_policy(api, &s.portal))
                .await,
            "key_renewed",
        )
    } else {
        (api.registry.revoke_key(&actor, &id).await, "key_revoked")
    };
    done.map_err(|e| s.failure(e))?;
    Ok(see_other(
        &format!("{}/clients/{}?msg={msg}#keys", s.base(), key.client_id),
        vec![],
    ))
}

async fn revoke_key(
    State(hub): State<Hub>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, Response> {
    key_change(hub, headers, id, body, false).await
}

async fn renew_key(
    State(hub): State<Hub>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, Response> {
    key_change(hub, headers, id, body, true).await
}

async fn add_subscription(
    State(hub): State<Hub>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, Response> {
    let (s, form) = change(&hub.api, &headers, &body).await?;
    let api = &hub.api;
    // only to the account's own client
    s.client(api, &id).await?;
    let offer = form.text("offer");
    let (service, plan) = offer.split_once('|').unwrap_or((offer.as_str(), ""));
    let plan = (!plan.is_empty()).then(|| plan.to_string());
    // only what the catalog offers, as the portal API allows
    let status =
        subscription_status(&s.portal, service, plan.as_deref()).map_err(|e| s.failure(e))?;
    let req = CreateSubscription {
        client_id: id.clone(),
        service: service.to_string(),
        plan,
    };
    let sub = api
        .registry
        .create_subscription(&s.caller.actor(), req, status)
        .await
        .map_err(|e| s.failure(e))?;
    let msg = if sub.status == SubscriptionStatus::Pending {
        "pending"
    } else {
        "subscribed"
    };
    Ok(see_other(
        &format!("{}/clients/{id}?msg={msg}#subs", s.base()),
        vec![],
    ))
}

async fn remove_subscription(
    State(hub): State<Hub>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, Response> {
    let (s, _) = change(&hub.api, &headers, &body).await?;
    let sub = s.subscription(&hub.api, &id).await?;
    hub.api
        .registry
        .delete_subscription(&s.caller.actor(), &id)
        .await
        .map_err(|e| s.failure(e))?;
    Ok(see_other(
        &format!(
            "{}/clients/{}?msg=unsubscribed#subs",
            s.base(),
            sub.client_id
        ),
        vec![],
    ))
}

/// Requests of one day: (day start, successful (2xx and 3xx), refused
/// (4xx and 429), failed (5xx)).
type Day = (i64, i64, i64, i64);

/// The last `USAGE_DAYS` days, oldest first, each summed over services
/// and keys; a day without requests is a zero, not a gap.
fn per_day(buckets: &[crate::store::UsageBucket], now: i64) -> Vec<Day> {
    let today = now - now.rem_euclid(86_400);
    (0..USAGE_DAYS)
        .rev()
        .map(|back| {
            let day = today - back * 86_400;
            buckets
                .iter()
                .filter(|b| b.start - b.start.rem_euclid(86_400) == day)
                .fold((day, 0, 0, 0), |(d, ok, refused, failed), b| {
                    (
                        d,
                        ok + b.c2xx + b.c3xx,
                        refused + b.c4xx + b.c429,
                        failed + b.c5xx,
                    )
                })
        })
        .collect()
}

/// Requests per day as stacked bars (an SVG drawn here: no script), with
/// the same numbers in a table for screen readers and for reading exactly.
fn usage_chart(days: &[Day]) -> Markup {
    const W: i64 = 700;
    const H: i64 = 140;
    let sum = |(_, a, b, c): &Day| a + b + c;
    let max = days.iter().map(sum).max().unwrap_or(0).max(1);
    let total: i64 = days.iter().map(sum).sum();
    let slot = W / (days.len().max(1) as i64);
    let height = |n: i64| n * H / max;
    let date = |d: i64| {
        time::OffsetDateTime::from_unix_timestamp(d)
            .map(|t| format!("{:02}-{:02}", u8::from(t.month()), t.day()))
            .unwrap_or_default()
    };
    html! {
        h2 #usage { "Requests per day" }
        figure.usage {
            svg viewBox={ "0 0 " (W) " " (H + 20) } role="img" aria-labelledby="usage-caption" preserveAspectRatio="none" {
                @for (i, (d, ok, refused, failed)) in days.iter().enumerate() {
                    @let x = i as i64 * slot + 4;
                    @let (h_ok, h_ref, h_fail) = (height(*ok), height(*refused), height(*failed));
                    g {
                        title { (date(*d)) ": " (ok) " successful, " (refused) " refused, " (failed) " failed" }
                        rect.ok x=(x) y=(H - h_ok) width=(slot - 8) height=(h_ok) {}
                        rect.refused x=(x) y=(H - h_ok - h_ref) width=(slot - 8) height=(h_ref) {}
                        rect.failed x=(x) y=(H - h_ok - h_ref - h_fail) width=(slot - 8) height=(h_fail) {}
                        text x=(x + (slot - 8) / 2) y=(H + 15) text-anchor="middle" { (date(*d)) }
                    }
                }
            }
            figcaption #usage-caption {
                (total) " requests in the last " (USAGE_DAYS) " days: "
                span.key-ok { "successful" } ", " span.key-refused { "refused (4xx, 429)" } ", "
                span.key-failed { "failed (5xx)" } "."
            }
        }
        details {
            summary { "Requests per day as a table" }
            div.scroll {
                table {
                    thead { tr {
                        th scope="col" { "Day" } th scope="col" { "Successful" }
                        th scope="col" { "Refused" } th scope="col" { "Failed" }
                    } }
                    tbody {
                        @for (d, ok, refused, failed) in days.iter().rev() {
                            tr { td { (date(*d)) } td { (ok) } td { (refused) } td { (failed) } }
                        }
                    }
                }
            }
        }
    }
}

/// A new key replacing an active one; the old one works for the chosen
/// grace period, then stops. Shown once.
async fn roll_key(
    State(hub): State<Hub>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, Response> {
    let (s, form) = change(&hub.api, &headers, &body).await?;
    let api = &hub.api;
    let key = s.key(api, &id).await?;
    let client = s.client(api, &key.client_id).await?;
    let req = RollKey {
        grace_period_seconds: form.get("grace").and_then(|g| g.parse().ok()),
    };
    let now = crate::store::now();
    let k = api
        .registry
        .roll_key(&s.caller.actor(), &id, req, key_policy(api, &s.portal))
        .await
        .map_err(|e| s.failure(e))?;
    Ok(shown_once_page(
        &s,
        "New API key",
        &client,
        html! {
            (view::copy_field("secret", "API key", &k.key))
            p {
                "It replaces " code { (key.prefix) "…" } ", which "
                @match k.previous_valid_until {
                    Some(until) if until > now => { "keeps working until " (view::when(Some(until))) "." }
                    _ => { "has stopped working." }
                }
            }
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_is_summed_per_day_with_empty_days_as_zero() {
        let day = 20_000 * 86_400;
        let bucket = |start, c2xx, c429, c5xx| crate::store::UsageBucket {
            start,
            c2xx,
            c429,
            c5xx,
            ..Default::default()
        };
        let days = per_day(
            &[
                bucket(day + 3600, 5, 1, 0),
                bucket(day + 7200, 2, 0, 1),
                bucket(day - 86_400, 1, 0, 0),
            ],
            day + 10_000,
        );
        assert_eq!(days.len(), USAGE_DAYS as usize);
        assert_eq!(days[USAGE_DAYS as usize - 1], (day, 7, 1, 1));
        assert_eq!(days[USAGE_DAYS as usize - 2], (day - 86_400, 1, 0, 0));
        assert_eq!(days[0].1, 0);
    }

    #[test]
    fn redirect_messages_are_a_fixed_set() {
        assert_eq!(message(Some("revoked")), Some("The client is revoked."));
        assert_eq!(message(Some("<script>")), None);
        assert_eq!(message(None), None);
    }
}
