//! The operators' console at `/console/` on the admin listener: every
//! account and its clients, pending subscriptions to approve or reject, the
//! audit log. Operators sign in with the admin token.
//!
//! The session is held in this process's memory: a random cookie token,
//! kept only as its HMAC under a key made at start-up, with the CSRF token
//! derived from it under the same key. The admin token never goes into a
//! cookie, signing out really ends a session, and a restart ends them all
//! (the admin listener belongs to one node, so nothing needs sharing).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{middleware, Router};
use hmac::{Hmac, Mac};
use maud::{html, Markup};
use serde::Deserialize;
use sha2::Sha256;

use super::view::{self, Nav};
use super::{cookie, page, same_secret, see_other, set_cookie, Form, OPERATOR_PATH};
use crate::control::admin::AdminApi;
use crate::control::registry::AdminError;
use crate::control::Peer;
use crate::store::{Status, SubscriptionStatus};

const PRODUCT: &str = "Tollgate console";
const SESSION_COOKIE: &str = "tollgate_console";
const SIGN_IN_COOKIE: &str = "tollgate_console_sign_in";
const SESSION_SECS: i64 = 8 * 3600;
/// More concurrent operator sessions than this: the oldest ends.
const MAX_SESSIONS: usize = 256;

/// Wrong admin tokens allowed per window before sign-ins pause.
const FAILURES_PER_WINDOW: usize = 10;
const FAILURE_WINDOW_SECS: i64 = 15 * 60;

/// Operator sessions: HMAC of the cookie token -> expiry.
pub struct Sessions {
    key: [u8; 32],
    live: Mutex<HashMap<String, i64>>,
    /// When recent sign-ins with a wrong token happened (from any address:
    /// there is one admin token, so guessing it is one target).
    failures: Mutex<VecDeque<i64>>,
}

impl Sessions {
    fn new() -> Self {
        use rand::RngCore;
        let mut key = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut key);
        Sessions {
            key,
            live: Mutex::new(HashMap::new()),
            failures: Mutex::new(VecDeque::new()),
        }
    }

    /// Seconds until sign-ins may be tried again, if too many failed.
    fn paused(&self, at: i64) -> Option<i64> {
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        while f.front().is_some_and(|t| *t <= at - FAILURE_WINDOW_SECS) {
            f.pop_front();
        }
        (f.len() >= FAILURES_PER_WINDOW)
            .then(|| f.front().map_or(1, |t| t + FAILURE_WINDOW_SECS - at))
    }

    fn failed(&self, at: i64) {
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        f.push_back(at);
        if f.len() > FAILURES_PER_WINDOW {
            f.pop_front();
        }
    }

    fn mac(&self, purpose: &str, token: &str) -> String {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        m.update(purpose.as_bytes());
        m.update(b":");
        m.update(token.as_bytes());
        m.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn open(&self) -> String {
        let token = super::random_token();
        let at = crate::store::now();
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        live.retain(|_, exp| *exp > at);
        if live.len() >= MAX_SESSIONS {
            if let Some(oldest) = live.iter().min_by_key(|(_, e)| **e).map(|(k, _)| k.clone()) {
                live.remove(&oldest);
            }
        }
        live.insert(self.mac("session", &token), at + SESSION_SECS);
        token
    }

    fn valid(&self, token: &str) -> bool {
        let at = crate::store::now();
        let live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        live.get(&self.mac("session", token))
            .is_some_and(|e| *e > at)
    }

    fn close(&self, token: &str) {
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        live.remove(&self.mac("session", token));
    }

    fn csrf(&self, token: &str) -> String {
        self.mac("csrf", token)
    }
}

#[derive(Clone)]
struct Console {
    api: AdminApi,
    sessions: Arc<Sessions>,
    tls: bool,
}

/// The console's routes, at `/console/…` of the admin listener.
pub fn router(api: AdminApi, tls: bool) -> Router {
    let state = Console {
        api,
        sessions: Arc::new(Sessions::new()),
        tls,
    };
    Router::new()
        .route(
            OPERATOR_PATH,
            get(|| async { see_other("/console/", vec![]) }),
        )
        .route("/console/", get(overview))
        .route("/console/assets/{name}", get(super::asset))
        .route("/console/sign-in", get(sign_in_page).post(sign_in))
        .route("/console/sign-out", post(sign_out))
        .route("/console/accounts/{id}", get(account_page))
        .route("/console/audit", get(audit_page))
        .route("/console/subscriptions/{id}/approve", post(approve))
        .route("/console/subscriptions/{id}/reject", post(reject))
        .layer(middleware::from_fn(super::secure_headers))
        .with_state(state)
}

/// A signed-in operator: its CSRF token.
struct Operator {
    csrf: String,
}

impl Operator {
    fn frame(&self, title: &str, current: &str, body: Markup) -> Markup {
        let nav = Nav {
            links: vec![
                ("Overview", "/console/".into(), current == "overview"),
                ("Audit log", "/console/audit".into(), current == "audit"),
            ],
            sign_out: Some(("/console/sign-out".into(), self.csrf.clone())),
            who: Some("operator".into()),
        };
        view::frame(title, PRODUCT, "/console/assets", &nav, body)
    }

    fn csrf_field(&self) -> Markup {
        html! { input type="hidden" name="csrf" value=(self.csrf); }
    }
}

/// Boxed: a page is large, and the happy path should not carry its size.
fn operator(c: &Console, headers: &HeaderMap) -> Result<Operator, Box<Response>> {
    match cookie(headers, SESSION_COOKIE) {
        Some(t) if c.sessions.valid(t) => Ok(Operator {
            csrf: c.sessions.csrf(t),
        }),
        _ => Err(Box::new(see_other("/console/sign-in", vec![]))),
    }
}

fn operator_change(
    c: &Console,
    headers: &HeaderMap,
    form: &Form,
) -> Result<Operator, Box<Response>> {
    let op = operator(c, headers)?;
    if !same_secret(form.get("csrf").unwrap_or(""), &op.csrf) {
        return Err(Box::new(failure(
            &op,
            StatusCode::FORBIDDEN,
            "The change was not made: the form did not carry this session's security token. Reload the page and try again.",
        )));
    }
    Ok(op)
}

fn failure(op: &Operator, status: StatusCode, text: &str) -> Response {
    page(
        status,
        op.frame(
            "That did not work",
            "",
            html! {
                p.error role="alert" { (text) }
                p { a href="/console/" { "Back to the overview" } }
            },
        ),
    )
}

fn admin_failure(op: &Operator, e: AdminError) -> Response {
    let status = match &e {
        AdminError::BadRequest(_) => StatusCode::BAD_REQUEST,
        AdminError::NotFound(_) => StatusCode::NOT_FOUND,
        AdminError::Conflict(_) => StatusCode::CONFLICT,
        AdminError::Unavailable(detail) => {
            tracing::error!(error = %detail, "store unavailable for the operator console");
            StatusCode::SERVICE_UNAVAILABLE
        }
    };
    failure(op, status, &e.to_string())
}

fn actor(peer: &Peer) -> String {
    format!("admin@{}", peer.0.ip())
}

fn sign_in_answer(
    c: &Console,
    headers: &HeaderMap,
    status: StatusCode,
    error: Option<&str>,
) -> Response {
    // the browser's existing form cookie stays, so two open tabs both work
    let nonce = super::form_nonce(headers, SIGN_IN_COOKIE);
    let nav = Nav {
        links: vec![],
        sign_out: None,
        who: None,
    };
    let markup = view::frame(
        "Operator sign-in",
        PRODUCT,
        "/console/assets",
        &nav,
        html! {
            (view::notice(None, error))
            form.card method="post" action="/console/sign-in" {
                input type="hidden" name="csrf" value=(c.sessions.mac("sign-in", &nonce));
                div.field {
                    label for="token" { "Admin token" }
                    input #token type="password" name="token" autocomplete="current-password" required autofocus;
                }
                button.primary type="submit" { "Sign in" }
            }
        },
    );
    let mut resp = page(status, markup);
    resp.headers_mut().append(
        axum::http::header::SET_COOKIE,
        set_cookie(SIGN_IN_COOKIE, &nonce, OPERATOR_PATH, 3600, c.tls),
    );
    resp
}

async fn sign_in_page(State(c): State<Console>, headers: HeaderMap) -> Response {
    if operator(&c, &headers).is_ok() {
        return see_other("/console/", vec![]);
    }
    sign_in_answer(&c, &headers, StatusCode::OK, None)
}

async fn sign_in(State(c): State<Console>, headers: HeaderMap, body: Bytes) -> Response {
    let form = Form::parse(&body);
    let bound = cookie(&headers, SIGN_IN_COOKIE).is_some_and(|n| {
        same_secret(
            form.get("csrf").unwrap_or(""),
            &c.sessions.mac("sign-in", n),
        )
    });
    if !bound {
        return sign_in_answer(
            &c,
            &headers,
            StatusCode::FORBIDDEN,
            Some("This sign-in form has expired. Please try again."),
        );
    }
    let at = crate::store::now();
    if let Some(wait) = c.sessions.paused(at) {
        return sign_in_answer(
            &c,
            &headers,
            StatusCode::TOO_MANY_REQUESTS,
            Some(&format!(
                "Too many wrong tokens. Try again in {} minutes.",
                (wait + 59) / 60
            )),
        );
    }
    if !same_secret(form.get("token").unwrap_or(""), &c.api.token) {
        tracing::warn!("operator console: sign-in with a wrong admin token");
        c.sessions.failed(at);
        return sign_in_answer(
            &c,
            &headers,
            StatusCode::UNAUTHORIZED,
            Some("Wrong admin token."),
        );
    }
    let token = c.sessions.open();
    see_other(
        "/console/",
        vec![
            set_cookie(SESSION_COOKIE, &token, OPERATOR_PATH, SESSION_SECS, c.tls),
            set_cookie(SIGN_IN_COOKIE, "", OPERATOR_PATH, 0, c.tls),
        ],
    )
}

async fn sign_out(State(c): State<Console>, headers: HeaderMap, body: Bytes) -> Response {
    let form = Form::parse(&body);
    if let Err(resp) = operator_change(&c, &headers, &form) {
        return *resp;
    }
    if let Some(t) = cookie(&headers, SESSION_COOKIE) {
        c.sessions.close(t);
    }
    see_other(
        "/console/sign-in",
        vec![set_cookie(SESSION_COOKIE, "", OPERATOR_PATH, 0, c.tls)],
    )
}

#[derive(Deserialize, Default)]
struct Msg {
    msg: Option<String>,
}

fn message(code: Option<&str>) -> Option<&'static str> {
    Some(match code? {
        "approved" => "The subscription is approved.",
        "rejected" => "The subscription is rejected.",
        _ => return None,
    })
}

fn account_name(a: &crate::store::Account) -> String {
    match (&a.username, &a.issuer, &a.subject) {
        (Some(u), _, _) => u.clone(),
        (None, Some(i), Some(s)) => format!("{s} ({i})"),
        _ => a.id.clone(),
    }
}

async fn overview(State(c): State<Console>, headers: HeaderMap, Query(q): Query<Msg>) -> Response {
    let op = match operator(&c, &headers) {
        Ok(o) => o,
        Err(resp) => return *resp,
    };
    let (subs, accounts, clients) = match (
        c.api.registry.list_subscriptions(None).await,
        c.api.accounts.list().await,
        c.api.registry.list_clients(None, None).await,
    ) {
        (Ok(s), Ok(a), Ok(cl)) => (s, a, cl),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return admin_failure(&op, e),
    };
    let pending: Vec<_> = subs
        .iter()
        .filter(|s| s.status == SubscriptionStatus::Pending)
        .collect();
    let client_name = |id: &str| {
        clients
            .iter()
            .find(|cl| cl.id == id)
            .map_or_else(|| id.to_string(), |cl| cl.name.clone())
    };
    let body = html! {
        (view::notice(message(q.msg.as_deref()), None))
        h2 #pending { "Pending subscriptions" }
        @if pending.is_empty() {
            p { "Nothing waits for approval." }
        } @else {
            div.scroll {
                table aria-labelledby="pending" {
                    thead { tr {
                        th scope="col" { "Client" } th scope="col" { "Service" } th scope="col" { "Plan" }
                        th scope="col" { "Requested" } th scope="col" { span.visually-hidden { "Decision" } }
                    } }
                    tbody {
                        @for s in &pending {
                            @let name = client_name(&s.client_id);
                            tr {
                                td { (name) br; code { (s.client_id) } }
                                td { (s.service) }
                                td { (s.plan.as_deref().unwrap_or("—")) }
                                td { (view::when(Some(s.created_at))) }
                                td {
                                    form.inline method="post" action={ "/console/subscriptions/" (s.id) "/approve" } {
                                        (op.csrf_field())
                                        button.primary type="submit" aria-label={ "Approve " (s.service) " for " (name) } { "Approve" }
                                    }
                                    " "
                                    form.inline method="post" action={ "/console/subscriptions/" (s.id) "/reject" } {
                                        (op.csrf_field())
                                        button.danger type="submit" aria-label={ "Reject " (s.service) " for " (name) } { "Reject" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        h2 #accounts { "Accounts" }
        @if accounts.is_empty() {
            p { "No accounts." }
        } @else {
            div.scroll {
                table aria-labelledby="accounts" {
                    thead { tr {
                        th scope="col" { "Account" } th scope="col" { "Name" } th scope="col" { "Email" }
                        th scope="col" { "Status" } th scope="col" { "Active clients" } th scope="col" { "Created" }
                    } }
                    tbody {
                        @for a in &accounts {
                            @let n = clients.iter().filter(|cl| cl.account_id.as_deref() == Some(a.id.as_str()) && cl.status == Status::Active).count();
                            tr {
                                td { a href={ "/console/accounts/" (a.id) } { (account_name(a)) } }
                                td { (a.display_name) }
                                td { (a.email) }
                                td { (a.status.as_str()) }
                                td { (n) }
                                td { (view::when(Some(a.created_at))) }
                            }
                        }
                    }
                }
            }
        }
    };
    page(StatusCode::OK, op.frame("Overview", "overview", body))
}

async fn account_page(
    State(c): State<Console>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let op = match operator(&c, &headers) {
        Ok(o) => o,
        Err(resp) => return *resp,
    };
    let account = match c.api.accounts.get(&id).await {
        Ok(a) => a,
        Err(e) => return admin_failure(&op, e),
    };
    let clients = match c.api.registry.list_clients(None, Some(&id)).await {
        Ok(v) => v,
        Err(e) => return admin_failure(&op, e),
    };
    let mut rows = Vec::new();
    for cl in clients {
        match c.api.registry.list_subscriptions(Some(&cl.id)).await {
            Ok(subs) => rows.push((cl, subs)),
            Err(e) => return admin_failure(&op, e),
        }
    }
    let body = html! {
        dl.facts {
            dt { "Id" } dd { code { (account.id) } }
            @if let Some(u) = &account.username { dt { "Username" } dd { (u) } }
            @if let Some(i) = &account.issuer { dt { "Issuer" } dd { (i) } }
            @if let Some(s) = &account.subject { dt { "Subject" } dd { (s) } }
            dt { "Name" } dd { (account.display_name) }
            dt { "Email" } dd { (account.email) }
            dt { "Status" } dd { (account.status.as_str()) }
        }
        h2 #clients { "Clients" }
        @if rows.is_empty() { p { "No clients." } } @else {
            div.scroll {
                table aria-labelledby="clients" {
                    thead { tr {
                        th scope="col" { "Name" } th scope="col" { "Type" } th scope="col" { "Client id" }
                        th scope="col" { "Status" } th scope="col" { "Subscriptions" } th scope="col" { "Created" }
                    } }
                    tbody {
                        @for (cl, subs) in &rows {
                            tr {
                                td { (cl.name) }
                                td { (cl.auth_type.as_str()) }
                                td { code { (cl.id) } }
                                td { (cl.status.as_str()) }
                                td {
                                    @if subs.is_empty() { "—" }
                                    @for (i, s) in subs.iter().enumerate() {
                                        @if i > 0 { ", " }
                                        (s.service)
                                        @if let Some(p) = &s.plan { " (" (p) ")" }
                                        @if s.status == SubscriptionStatus::Pending { " — pending" }
                                    }
                                }
                                td { (view::when(Some(cl.created_at))) }
                            }
                        }
                    }
                }
            }
        }
    };
    page(
        StatusCode::OK,
        op.frame(
            &format!("Account {}", account_name(&account)),
            "overview",
            body,
        ),
    )
}

async fn audit_page(State(c): State<Console>, headers: HeaderMap) -> Response {
    let op = match operator(&c, &headers) {
        Ok(o) => o,
        Err(resp) => return *resp,
    };
    let entries = match c.api.registry.audit(Some(200)).await {
        Ok(v) => v,
        Err(e) => return admin_failure(&op, e),
    };
    let body = html! {
        p { "The latest " (entries.len()) " changes, newest first." }
        div.scroll {
            table aria-labelledby="audit-title" {
                caption #audit-title.visually-hidden { "Audit log" }
                thead { tr {
                    th scope="col" { "When" } th scope="col" { "Actor" } th scope="col" { "Action" }
                    th scope="col" { "Target" } th scope="col" { "Detail" }
                } }
                tbody {
                    @for e in &entries {
                        tr {
                            td { (view::when(Some(e.at))) }
                            td { (e.actor) }
                            td { (e.action) }
                            td { code { (e.target) } }
                            td { code.detail { (e.detail.to_string()) } }
                        }
                    }
                }
            }
        }
    };
    page(StatusCode::OK, op.frame("Audit log", "audit", body))
}

async fn decide(
    c: Console,
    headers: HeaderMap,
    peer: Peer,
    id: String,
    body: Bytes,
    approve: bool,
) -> Response {
    let form = Form::parse(&body);
    let op = match operator_change(&c, &headers, &form) {
        Ok(o) => o,
        Err(resp) => return *resp,
    };
    let who = actor(&peer);
    let (done, msg) = if approve {
        (
            c.api.registry.approve_subscription(&who, &id).await,
            "approved",
        )
    } else {
        (
            c.api.registry.reject_subscription(&who, &id).await,
            "rejected",
        )
    };
    match done {
        Ok(_) => see_other(&format!("/console/?msg={msg}"), vec![]),
        Err(e) => admin_failure(&op, e),
    }
}

async fn approve(
    State(c): State<Console>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    decide(c, headers, peer, id, body, true).await
}

async fn reject(
    State(c): State<Console>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    decide(c, headers, peer, id, body, false).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_open_check_and_close() {
        let s = Sessions::new();
        let t = s.open();
        assert!(s.valid(&t));
        assert!(!s.valid("forged"));
        assert_ne!(s.csrf(&t), s.csrf("other"));
        s.close(&t);
        assert!(!s.valid(&t));
    }

    #[test]
    fn wrong_tokens_pause_sign_ins_for_the_window() {
        let s = Sessions::new();
        for i in 0..FAILURES_PER_WINDOW as i64 {
            assert_eq!(s.paused(1000 + i), None);
            s.failed(1000 + i);
        }
        assert_eq!(s.paused(1010), Some(FAILURE_WINDOW_SECS - 10));
        assert_eq!(s.paused(1000 + FAILURE_WINDOW_SECS), None);
    }

    #[test]
    fn sessions_are_bounded() {
        let s = Sessions::new();
        for _ in 0..MAX_SESSIONS + 5 {
            s.open();
        }
        assert!(s.live.lock().unwrap().len() <= MAX_SESSIONS);
    }
}
