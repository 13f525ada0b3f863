//! Accounts: built-in ones (username and an Argon2id password) and those of
//! external issuers (`iss` + `sub` of a verified token); signing in, with
//! limits on failed tries checked before any hash is computed; sessions;
//! and the operator's management of accounts. The portal and admin APIs are
//! thin HTTP layers over this.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::{OnceCell, Semaphore};
use utoipa::ToSchema;

use super::registry::{check_issuer, check_text, AdminError, AdminResult, MAX_NAME};
use crate::auth::jwt::{ClientRef, JwtAuth};
use crate::config::Registration;
use crate::runtime::Snapshot;
use crate::secrets::{self, Pepper};
use crate::store::{
    now, Account, AccountPatch, AccountStatus, Audit, PortalSession, Store, StoreError,
};
use crate::telemetry::Metrics;

/// Failed sign-ins counted per username and per address over this window.
const FAILURE_WINDOW_SECS: u64 = 15 * 60;
const FAILURES_PER_USERNAME: usize = 10;
const FAILURES_PER_ADDRESS: usize = 50;
/// Beyond this many tracked usernames or addresses, the oldest go first.
const MAX_TRACKED: usize = 100_000;
pub const MIN_PASSWORD: usize = 12;
const MAX_PASSWORD: usize = 1024;
const MAX_USERNAME: usize = 64;
const MAX_EMAIL: usize = 254;
/// A sign-in waits at most this long for a free hashing thread.
const HASH_QUEUE_WAIT: Duration = Duration::from_secs(10);

/// Why a portal call failed, beyond the admin API's reasons.
#[derive(Debug, thiserror::Error)]
pub enum PortalError {
    #[error(transparent)]
    Admin(#[from] AdminError),
    /// 401: no valid credential (a wrong password and an unknown username
    /// alike).
    #[error("{0}")]
    Unauthorized(String),
    /// 403 with its own error code.
    #[error("{1}")]
    Forbidden(&'static str, String),
    /// 429: too many failed sign-ins; retry after this many seconds.
    #[error("too many failed sign-ins: try again later")]
    Locked(u64),
}

impl PortalError {
    fn store(e: StoreError, what: &str) -> Self {
        PortalError::Admin(AdminError::from_store(e, what))
    }
}

pub type PortalResult<T> = Result<T, PortalError>;

/// Argon2id with the OWASP parameters (19 MiB, 2 passes, 1 lane), run on
/// threads of its own at the lowest CPU priority (SCHED_IDLE on Linux),
/// with a bounded queue: sign-ins never occupy the threads that proxy
/// requests, and when the CPU is short the proxy's threads run first.
struct PasswordPool {
    jobs: std::sync::mpsc::Sender<Job>,
    /// Sign-ins in progress; one waits at most `HASH_QUEUE_WAIT` for a turn.
    permits: Semaphore,
    /// The hash an unknown username is checked against, so that it costs
    /// the time a wrong password costs.
    decoy: OnceCell<String>,
}

type Job = Box<dyn FnOnce() + Send>;

fn argon2() -> argon2::Argon2<'static> {
    let params = argon2::Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
}

/// SCHED_IDLE where the OS has it (the thread runs only on CPU time nothing
/// else wants), else the lowest niceness; lowering one's own priority needs
/// no privilege. Failure leaves the thread as it was.
fn lower_priority() {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use thread_priority::unix::{
            set_thread_priority_and_policy, thread_native_id, NormalThreadSchedulePolicy,
            ThreadSchedulePolicy,
        };
        let idle = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);
        if set_thread_priority_and_policy(
            thread_native_id(),
            thread_priority::ThreadPriority::Min,
            idle,
        )
        .is_ok()
        {
            return;
        }
    }
    let _ = thread_priority::set_current_thread_priority(thread_priority::ThreadPriority::Min);
}

impl PasswordPool {
    fn new() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = cores.div_ceil(2).max(1);
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..threads {
            let queue = queue.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("tollgate-argon2-{i}"))
                .spawn(move || {
                    lower_priority();
                    loop {
                        let job = match queue.lock() {
                            Ok(q) => q.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a password hashing thread");
            }
        }
        PasswordPool {
            jobs,
            permits: Semaphore::new(threads * 4),
            decoy: OnceCell::new(),
        }
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> PortalResult<T> {
        let busy = || AdminError::Unavailable("password hashing is saturated".into());
        let _permit = tokio::time::timeout(HASH_QUEUE_WAIT, self.permits.acquire())
            .await
            .map_err(|_| busy())?
            .map_err(|_| busy())?;
        let (done, answer) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move || {
                let _ = done.send(work());
            }))
            .map_err(|_| busy())?;
        answer.await.map_err(|_| PortalError::Admin(busy()))
    }

    async fn hash(&self, password: String) -> PortalResult<String> {
        self.run(move || {
            let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
            argon2()
                .hash_password(password.as_bytes(), &salt)
                .map(|h| h.to_string())
        })
        .await?
        .map_err(|e| PortalError::Admin(AdminError::Unavailable(format!("hashing failed: {e}"))))
    }

    /// Does `password` match `hash`? With no hash (an unknown username or
    /// an account without a password), the decoy is checked instead and
    /// the answer is no.
    async fn verify(&self, hash: Option<String>, password: String) -> PortalResult<bool> {
        let (stored, real) = match hash {
            Some(h) => (h, true),
            None => {
                let decoy = self
                    .decoy
                    .get_or_try_init(|| self.hash(secrets::new_id("decoy")))
                    .await?;
                (decoy.clone(), false)
            }
        };
        let matches = self
            .run(move || {
                PasswordHash::new(&stored)
                    .is_ok_and(|h| argon2().verify_password(password.as_bytes(), &h).is_ok())
            })
            .await?;
        Ok(matches && real)
    }
}

/// Failed sign-ins in the last window, per username and per address.
#[derive(Default)]
struct SignInLimiter {
    state: Mutex<LimiterState>,
}

#[derive(Default)]
struct LimiterState {
    users: HashMap<String, VecDeque<u64>>,
    addresses: HashMap<IpAddr, VecDeque<u64>>,
}

fn recent(entries: Option<&VecDeque<u64>>, at: u64) -> (usize, Option<u64>) {
    let Some(e) = entries else { return (0, None) };
    let live: Vec<u64> = e
        .iter()
        .copied()
        .filter(|t| t + FAILURE_WINDOW_SECS > at)
        .collect();
    (
        live.len(),
        live.first().map(|t| t + FAILURE_WINDOW_SECS - at),
    )
}

fn record<K: std::hash::Hash + Eq + Clone>(
    map: &mut HashMap<K, VecDeque<u64>>,
    key: &K,
    at: u64,
    keep: usize,
) {
    if map.len() >= MAX_TRACKED && !map.contains_key(key) {
        map.retain(|_, v| v.back().is_some_and(|t| t + FAILURE_WINDOW_SECS > at));
        if map.len() >= MAX_TRACKED {
            map.clear();
        }
    }
    let e = map.entry(key.clone()).or_default();
    e.retain(|t| t + FAILURE_WINDOW_SECS > at);
    e.push_back(at);
    while e.len() > keep {
        e.pop_front();
    }
}

impl SignInLimiter {
    /// `Some(seconds)` when further tries are locked for that long.
    fn locked(&self, username: &str, address: Option<IpAddr>, at: u64) -> Option<u64> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (n, wait) = recent(state.users.get(username), at);
        if n >= FAILURES_PER_USERNAME {
            return Some(wait.unwrap_or(FAILURE_WINDOW_SECS).max(1));
        }
        if let Some(a) = address {
            let (n, wait) = recent(state.addresses.get(&a), at);
            if n >= FAILURES_PER_ADDRESS {
                return Some(wait.unwrap_or(FAILURE_WINDOW_SECS).max(1));
            }
        }
        None
    }

    fn failed(&self, username: &str, address: Option<IpAddr>, at: u64) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        record(
            &mut state.users,
            &username.to_string(),
            at,
            FAILURES_PER_USERNAME,
        );
        if let Some(a) = address {
            record(&mut state.addresses, &a, at, FAILURES_PER_ADDRESS);
        }
    }

    fn succeeded(&self, username: &str) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.users.remove(username);
    }
}

/// A new session: the token is shown once.
#[derive(Debug, Serialize, ToSchema)]
pub struct NewSession {
    pub token: String,
    pub expires_at: i64,
    /// Send it as `X-CSRF-Token` with every change made with the cookie.
    pub csrf_token: String,
    /// Signed in with a one-time password: only `POST /me/password` is allowed.
    pub password_change_required: bool,
}

/// Who is calling the portal.
#[derive(Debug, Clone)]
pub struct Caller {
    pub account: Account,
    /// The session, when signed in with one (not with an issuer's token).
    pub session: Option<PortalSession>,
}

impl Caller {
    pub fn actor(&self) -> String {
        format!("account:{}", self.account.id)
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAccount {
    /// A built-in account's username: 1 to 64 of a-z 0-9 . _ @ - (stored
    /// lower case).
    #[serde(default)]
    pub username: Option<String>,
    /// A one-time password (at least 12 characters) to change at first sign-in.
    #[serde(default)]
    pub password: Option<String>,
    /// An account of an external issuer: the `name` of an entry of `auth.issuers`.
    #[serde(default)]
    pub issuer: Option<String>,
    /// ... and the `sub` of its tokens.
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchAccount {
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    /// `disabled` ends every session of the account and refuses its sign-ins.
    #[serde(default)]
    pub status: Option<AccountStatus>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OneTimePassword {
    /// At least 12 characters; the account must change it at its next sign-in.
    pub password: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePassword {
    pub current_password: String,
    /// At least 12 characters.
    pub new_password: String,
}

pub struct Accounts {
    store: Arc<dyn Store>,
    pepper: Pepper,
    snapshot: Arc<ArcSwap<Snapshot>>,
    jwt: Arc<JwtAuth>,
    metrics: Arc<Metrics>,
    passwords: PasswordPool,
    limiter: SignInLimiter,
}

fn check_username(text: &str) -> AdminResult<String> {
    let u = text.trim().to_lowercase();
    let ok = !u.is_empty()
        && u.chars().count() <= MAX_USERNAME
        && u.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._@-".contains(&b));
    if !ok {
        return Err(AdminError::BadRequest(
            "username: 1 to 64 of a-z 0-9 . _ @ -".into(),
        ));
    }
    Ok(u)
}

fn check_password(field: &str, p: &str) -> AdminResult<()> {
    let n = p.chars().count();
    if !(MIN_PASSWORD..=MAX_PASSWORD).contains(&n) {
        return Err(AdminError::BadRequest(format!(
            "{field} must have {MIN_PASSWORD} to {MAX_PASSWORD} characters"
        )));
    }
    Ok(())
}

fn check_email(e: &str) -> AdminResult<String> {
    let e = check_text("email", e, MAX_EMAIL, true)?;
    if !e.is_empty() && (!e.contains('@') || e.contains(char::is_whitespace)) {
        return Err(AdminError::BadRequest("email is not an address".into()));
    }
    Ok(e)
}

impl Accounts {
    pub fn new(
        store: Arc<dyn Store>,
        pepper: Pepper,
        snapshot: Arc<ArcSwap<Snapshot>>,
        jwt: Arc<JwtAuth>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Accounts {
            store,
            pepper,
            snapshot,
            jwt,
            metrics,
            passwords: PasswordPool::new(),
            limiter: SignInLimiter::default(),
        }
    }

    fn count(&self, method: &str, result: &str) {
        self.metrics
            .portal_sign_ins
            .with_label_values(&[method, result])
            .inc();
    }

    /// The value a browser must echo in `X-CSRF-Token` for this session:
    /// derived from the token, so nothing more is stored.
    pub fn csrf_token(&self, session_token: &str) -> String {
        let mut h = self.pepper.hash(&format!("csrf:{session_token}"));
        h.truncate(32);
        h
    }

    async fn open_session(
        &self,
        account: &Account,
        password_change: bool,
    ) -> PortalResult<NewSession> {
        let ttl = self
            .snapshot
            .load()
            .config
            .portal
            .as_ref()
            .map_or(12 * 3600, |p| p.session_ttl.as_secs() as i64);
        let token = secrets::generate_session_token();
        let at = now();
        let session = PortalSession {
            id: secrets::new_id("ses"),
            hash: self.pepper.hash(token.expose()),
            account_id: account.id.clone(),
            created_at: at,
            expires_at: at + ttl,
            password_change,
        };
        self.store
            .insert_session(&session)
            .await
            .map_err(|e| PortalError::store(e, "session"))?;
        Ok(NewSession {
            token: token.expose().to_string(),
            expires_at: session.expires_at,
            csrf_token: self.csrf_token(token.expose()),
            password_change_required: password_change,
        })
    }

    /// Username and password. A wrong password, an unknown username and an
    /// account without a password get the same answer after the same work;
    /// locked tries compute no hash at all.
    pub async fn sign_in_password(
        &self,
        username: &str,
        password: &str,
        address: Option<IpAddr>,
    ) -> PortalResult<NewSession> {
        let enabled = self
            .snapshot
            .load()
            .config
            .portal
            .as_ref()
            .is_some_and(|p| p.password);
        if !enabled {
            return Err(PortalError::Forbidden(
                "password_sign_in_disabled",
                "signing in with a password is not enabled".into(),
            ));
        }
        let key = username.trim().to_lowercase();
        let at = now().max(0) as u64;
        if let Some(wait) = self.limiter.locked(&key, address, at) {
            self.count("password", "locked");
            return Err(PortalError::Locked(wait));
        }
        let invalid = || PortalError::Unauthorized("invalid username or password".into());
        // Oversized input is refused like a wrong password, before any work.
        let plausible = password.len() <= MAX_PASSWORD * 4 && key.len() <= MAX_USERNAME * 4;
        let found = if plausible {
            self.store
                .find_account_by_username(&key)
                .await
                .map_err(|e| PortalError::store(e, "account"))?
        } else {
            None
        };
        let (account, hash) = match found {
            Some((a, h)) => (Some(a), h),
            None => (None, None),
        };
        let matches = plausible && self.passwords.verify(hash, password.to_string()).await?;
        let account = match account {
            Some(a) if matches => a,
            _ => {
                self.limiter.failed(&key, address, at);
                self.count("password", "failed");
                return Err(invalid());
            }
        };
        if account.status != AccountStatus::Active {
            self.count("password", "failed");
            return Err(PortalError::Forbidden(
                "account_disabled",
                "this account is disabled".into(),
            ));
        }
        self.limiter.succeeded(&key);
        self.count("password", "ok");
        self.open_session(&account, account.password_change_required)
            .await
    }

    /// A verified token of a sign-in issuer, exchanged for a session.
    pub async fn sign_in_token(&self, token: &str) -> PortalResult<NewSession> {
        let (account, method) = match self.account_of_token(token).await {
            Ok(found) => found,
            Err(e) => {
                self.count("token", "failed");
                return Err(e);
            }
        };
        self.count(&method, "ok");
        self.open_session(&account, false).await
    }

    /// The account behind a bearer token of a sign-in issuer, and the
    /// issuer's name; with `registration: open` its first token creates it.
    pub async fn account_of_token(&self, token: &str) -> PortalResult<(Account, String)> {
        let verified = self
            .jwt
            .verify(token.as_bytes())
            .await
            .map_err(|e| PortalError::Unauthorized(e.description().into()))?;
        let (registration, allowed) = {
            let snap = self.snapshot.load();
            let portal = snap.config.portal.as_ref();
            (
                portal.map_or(Registration::Invite, |p| p.registration),
                portal.map(|p| p.issuers.clone()).unwrap_or_default(),
            )
        };
        let ClientRef::External(issuer, _) = &verified.client else {
            return Err(PortalError::Unauthorized(
                "tokens of the built-in issuer belong to clients, not accounts".into(),
            ));
        };
        if !allowed.contains(issuer) {
            return Err(PortalError::Unauthorized(
                "tokens of this issuer do not sign in to the portal".into(),
            ));
        }
        let subject = verified
            .subject
            .clone()
            .ok_or_else(|| PortalError::Unauthorized("the token has no `sub`".into()))?;
        let found = self
            .store
            .find_account_by_identity(issuer, &subject)
            .await
            .map_err(|e| PortalError::store(e, "account"))?;
        let account = match found {
            Some(a) => a,
            None if registration == Registration::Open => self.register(issuer, &subject).await?,
            None => {
                return Err(PortalError::Forbidden(
                    "no_account",
                    "no account for this identity: ask an operator for an invitation".into(),
                ))
            }
        };
        if account.status != AccountStatus::Active {
            return Err(PortalError::Forbidden(
                "account_disabled",
                "this account is disabled".into(),
            ));
        }
        Ok((account, issuer.clone()))
    }

    async fn register(&self, issuer: &str, subject: &str) -> PortalResult<Account> {
        let account = Account {
            id: secrets::new_id("acc"),
            username: None,
            issuer: Some(issuer.into()),
            subject: Some(subject.chars().take(256).collect()),
            display_name: String::new(),
            email: String::new(),
            status: AccountStatus::Active,
            password_change_required: false,
            created_at: now(),
        };
        let audit = Audit {
            actor: format!("account:{}", account.id),
            action: "account.register",
            target: account.id.clone(),
            detail: json!({"issuer": issuer}),
        };
        match self.store.insert_account(&account, None, audit).await {
            Ok(()) => Ok(account),
            // registered by a concurrent first call
            Err(StoreError::Conflict(_)) => self
                .store
                .find_account_by_identity(issuer, subject)
                .await
                .map_err(|e| PortalError::store(e, "account"))?
                .ok_or_else(|| PortalError::Unauthorized("no account".into())),
            Err(e) => Err(PortalError::store(e, "account")),
        }
    }

    /// The session of a `tgp_…` token.
    pub async fn session(&self, token: &str) -> PortalResult<Caller> {
        let unknown = || PortalError::Unauthorized("the session is unknown or has ended".into());
        if !secrets::well_formed(token, secrets::SESSION_PREFIX) {
            return Err(unknown());
        }
        let (session, account) = self
            .store
            .find_session(&self.pepper.hash(token), now())
            .await
            .map_err(|e| PortalError::store(e, "session"))?
            .ok_or_else(unknown)?;
        Ok(Caller {
            account,
            session: Some(session),
        })
    }

    pub async fn sign_out(&self, token: &str) -> PortalResult<()> {
        self.store
            .delete_session(&self.pepper.hash(token))
            .await
            .map_err(|e| PortalError::store(e, "session"))
    }

    /// Change one's own password; every other session of the account ends.
    pub async fn change_password(
        &self,
        caller: &Caller,
        req: ChangePassword,
        address: Option<IpAddr>,
    ) -> PortalResult<()> {
        let Some(username) = caller.account.username.clone() else {
            return Err(AdminError::BadRequest(
                "this account signs in through its identity provider and has no password".into(),
            )
            .into());
        };
        check_password("new_password", &req.new_password)?;
        let at = now().max(0) as u64;
        if let Some(wait) = self.limiter.locked(&username, address, at) {
            return Err(PortalError::Locked(wait));
        }
        let hash = self
            .store
            .find_account_by_username(&username)
            .await
            .map_err(|e| PortalError::store(e, "account"))?
            .and_then(|(_, h)| h);
        if !self
            .passwords
            .verify(hash, req.current_password.clone())
            .await?
        {
            self.limiter.failed(&username, address, at);
            return Err(PortalError::Forbidden(
                "wrong_password",
                "the current password is wrong".into(),
            ));
        }
        if req.new_password == req.current_password {
            return Err(AdminError::BadRequest(
                "the new password must differ from the current one".into(),
            )
            .into());
        }
        let new_hash = self.passwords.hash(req.new_password).await?;
        let audit = Audit {
            actor: caller.actor(),
            action: "account.change_password",
            target: caller.account.id.clone(),
            detail: json!({}),
        };
        self.store
            .set_account_password(
                &caller.account.id,
                &new_hash,
                false,
                caller.session.as_ref().map(|s| s.id.as_str()),
                audit,
            )
            .await
            .map_err(|e| PortalError::store(e, "account"))
    }

    pub async fn create_account(&self, actor: &str, req: CreateAccount) -> PortalResult<Account> {
        let username = req.username.as_deref().map(check_username).transpose()?;
        let (issuer, subject) = match (req.issuer, req.subject) {
            (None, None) => (None, None),
            (Some(i), Some(s)) => {
                check_issuer(&self.snapshot.load(), &i)?;
                (Some(i), Some(check_text("subject", &s, 256, false)?))
            }
            _ => {
                return Err(
                    AdminError::BadRequest("`issuer` and `subject` go together".into()).into(),
                )
            }
        };
        if username.is_some() == issuer.is_some() {
            return Err(AdminError::BadRequest(
                "an account has either a `username` or an `issuer` and `subject`".into(),
            )
            .into());
        }
        if req.password.is_some() && username.is_none() {
            return Err(AdminError::BadRequest(
                "only accounts with a username have a password".into(),
            )
            .into());
        }
        let hash = match req.password {
            Some(p) => {
                check_password("password", &p)?;
                Some(self.passwords.hash(p).await?)
            }
            None => None,
        };
        let account = Account {
            id: secrets::new_id("acc"),
            username,
            issuer,
            subject,
            display_name: check_text(
                "display_name",
                req.display_name.as_deref().unwrap_or(""),
                MAX_NAME,
                true,
            )?,
            email: check_email(req.email.as_deref().unwrap_or(""))?,
            status: AccountStatus::Active,
            password_change_required: hash.is_some(),
            created_at: now(),
        };
        let audit = Audit {
            actor: actor.into(),
            action: "account.create",
            target: account.id.clone(),
            detail: json!({"username": account.username, "issuer": account.issuer}),
        };
        self.store
            .insert_account(&account, hash.as_deref(), audit)
            .await
            .map_err(|e| PortalError::store(e, "account"))?;
        Ok(account)
    }

    pub async fn list(&self) -> AdminResult<Vec<Account>> {
        self.store
            .list_accounts()
            .await
            .map_err(|e| AdminError::from_store(e, "account"))
    }

    pub async fn get(&self, id: &str) -> AdminResult<Account> {
        self.store
            .get_account(id)
            .await
            .map_err(|e| AdminError::from_store(e, "account"))
    }

    pub async fn patch(&self, actor: &str, id: &str, req: PatchAccount) -> AdminResult<Account> {
        let patch = AccountPatch {
            display_name: req
                .display_name
                .map(|d| check_text("display_name", &d, MAX_NAME, true))
                .transpose()?,
            email: req.email.map(|e| check_email(&e)).transpose()?,
            status: req.status,
        };
        let audit = Audit {
            actor: actor.into(),
            action: "account.update",
            target: id.into(),
            detail: json!({"status": patch.status, "display_name": patch.display_name}),
        };
        self.store
            .update_account(id, patch, audit)
            .await
            .map_err(|e| AdminError::from_store(e, "account"))
    }

    /// A one-time password: every session ends, and the next sign-in can
    /// only change it.
    pub async fn set_one_time_password(
        &self,
        actor: &str,
        id: &str,
        req: OneTimePassword,
    ) -> PortalResult<()> {
        check_password("password", &req.password)?;
        self.get(id).await?;
        let hash = self.passwords.hash(req.password).await?;
        let audit = Audit {
            actor: actor.into(),
            action: "account.set_password",
            target: id.into(),
            detail: json!({"one_time": true}),
        };
        self.store
            .set_account_password(id, &hash, true, None, audit)
            .await
            .map_err(|e| PortalError::store(e, "account"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_lock_a_username_then_expire() {
        let l = SignInLimiter::default();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        for i in 0..FAILURES_PER_USERNAME as u64 {
            assert_eq!(l.locked("ann", Some(a), 1000 + i), None);
            l.failed("ann", Some(a), 1000 + i);
        }
        let wait = l.locked("ann", Some(a), 1010).expect("locked");
        assert_eq!(wait, 1000 + FAILURE_WINDOW_SECS - 1010);
        // another username from another address is not locked
        assert_eq!(
            l.locked("bob", Some("192.0.2.2".parse().unwrap()), 1010),
            None
        );
        // after the window the oldest failure no longer counts
        assert_eq!(l.locked("ann", Some(a), 1000 + FAILURE_WINDOW_SECS), None);
    }

    #[test]
    fn failures_lock_an_address_across_usernames() {
        let l = SignInLimiter::default();
        let a: IpAddr = "192.0.2.9".parse().unwrap();
        for i in 0..FAILURES_PER_ADDRESS {
            l.failed(&format!("user{i}"), Some(a), 5000);
        }
        assert!(l.locked("fresh", Some(a), 5001).is_some());
        assert!(l.locked("fresh", None, 5001).is_none());
    }

    #[test]
    fn a_success_clears_the_username_failures() {
        let l = SignInLimiter::default();
        for _ in 0..FAILURES_PER_USERNAME - 1 {
            l.failed("ann", None, 10);
        }
        l.succeeded("ann");
        l.failed("ann", None, 11);
        assert!(l.locked("ann", None, 12).is_none());
    }

    #[test]
    fn usernames_and_passwords_are_checked() {
        assert_eq!(
            check_username(" Ann.Lee@example ").unwrap(),
            "ann.lee@example"
        );
        assert!(check_username("ann lee").is_err());
        assert!(check_username("").is_err());
        assert!(check_password("p", "short").is_err());
        assert!(check_password("p", "twelve chars").is_ok());
        assert!(check_email("not an address").is_err());
        assert!(check_email("").is_ok());
    }

    /// Hashing threads run under SCHED_IDLE (policy 5: the 41st field of
    /// /proc's stat of each thread).
    #[tokio::test]
    async fn hashing_runs_on_threads_of_the_lowest_priority() {
        let pool = PasswordPool::new();
        pool.hash("correct horse battery".into()).await.unwrap();
        let mut seen = 0;
        for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            if !comm.starts_with("tollgate-argon2") {
                continue;
            }
            let stat = std::fs::read_to_string(task.path().join("stat")).unwrap();
            let after_name = &stat[stat.rfind(')').unwrap() + 2..];
            let policy: i32 = after_name.split(' ').nth(38).unwrap().parse().unwrap();
            assert_eq!(policy, 5, "{comm}: SCHED_IDLE");
            seen += 1;
        }
        assert!(seen >= 1, "no hashing thread");
    }

    #[tokio::test]
    async fn passwords_hash_with_argon2id_and_verify() {
        let pool = PasswordPool::new();
        let h = pool.hash("correct horse battery".into()).await.unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(pool
            .verify(Some(h.clone()), "correct horse battery".into())
            .await
            .unwrap());
        assert!(!pool.verify(Some(h), "wrong horse".into()).await.unwrap());
        assert!(!pool.verify(None, "anything".into()).await.unwrap());
        assert!(!pool
            .verify(Some("not a hash".into()), "x".into())
            .await
            .unwrap());
    }
}
