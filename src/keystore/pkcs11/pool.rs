//! A pool of logged-in sessions on one token. A cryptoki `Session` is `Send` but not `Sync`, so
//! each signing thread leases one for the length of a call; the pool opens up to the profile's
//! limit, re-opens sessions the token invalidated (`CKR_SESSION_HANDLE_INVALID`,
//! `CKR_DEVICE_REMOVED`), and can keep idle sessions alive for tokens that drop them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, Weak};

use sha2::Digest as _;
use std::time::Duration;

use cryptoki::context::Pkcs11;
use cryptoki::error::{Error, RvError};
use cryptoki::session::{Session, SessionState, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;

use super::token::{TokenSelector, find_token};
use crate::keystore::KeyStoreError;
use crate::secret::SecretString;

/// How long a caller waits for a free session before giving up with a clear error.
const LEASE_TIMEOUT: Duration = Duration::from_secs(120);

struct PoolState {
    idle: Vec<Session>,
    open: usize,
}

/// Sessions on one token, all logged in as the user.
pub(crate) struct SessionPool {
    ctx: Pkcs11,
    module: std::path::PathBuf,
    selector: TokenSelector,
    token_label: String,
    slot: Mutex<Slot>,
    max: usize,
    state: Mutex<PoolState>,
    freed: Condvar,
    pin: SecretString,
    /// Set once the token refused the PIN: the pool never presents it again (tokens lock).
    pin_rejected: AtomicBool,
    /// Set by an explicit logout: the pool then logs in no more (a closed key-injection session
    /// must not come back to life through a re-opened session).
    logged_out: AtomicBool,
    /// Dropping this stops the keep-alive thread.
    keep_alive_stop: Mutex<Option<mpsc::Sender<()>>>,
}

/// A session on loan from the pool; it goes back when dropped.
pub(crate) struct Lease<'a> {
    pool: &'a SessionPool,
    session: Option<Session>,
}

impl Lease<'_> {
    pub(crate) fn session(&self) -> &Session {
        // Invariant: `session` is only taken in `discard` and `drop`, which consume the lease.
        self.session
            .as_ref()
            .unwrap_or_else(|| unreachable!("lease used after discard"))
    }

    /// Takes a session out of the pool instead of returning it: a `dead` one (its handle is
    /// invalid) is let go without a call, a live one (logged out under us) is closed.
    fn discard(mut self, dead: bool) {
        if let Some(session) = self.session.take() {
            if dead {
                forget_dead(session);
            } else {
                drop(session);
            }
            let mut state = self.pool.lock_state();
            state.open = state.open.saturating_sub(1);
            self.pool.freed.notify_one();
        }
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            self.pool.lock_state().idle.push(session);
            self.pool.freed.notify_one();
        }
    }
}

/// A salted digest of the PIN that logged this process in to each token (module, label); never
/// the PIN itself. The salt is random per process, so the digests mean nothing outside it.
type LoginKey = (std::path::PathBuf, String);

fn lock_logins() -> MutexGuard<'static, std::collections::HashMap<LoginKey, [u8; 32]>> {
    static LOGINS: OnceLock<Mutex<std::collections::HashMap<LoginKey, [u8; 32]>>> = OnceLock::new();
    LOGINS
        .get_or_init(|| Mutex::new(std::collections::HashMap::new()))
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

fn pin_digest(pin: &SecretString) -> [u8; 32] {
    static SALT: OnceLock<[u8; 32]> = OnceLock::new();
    let salt = SALT.get_or_init(|| {
        let mut salt = [0u8; 32];
        rand::fill(&mut salt[..]);
        salt
    });
    let mut hasher = sha2::Sha256::new();
    sha2::Digest::update(&mut hasher, salt);
    sha2::Digest::update(&mut hasher, pin.expose().as_bytes());
    sha2::Digest::finalize(hasher).into()
}

/// Lets go of a session the token already invalidated without calling `C_CloseSession` on it:
/// cryptoki's drop would, fail with `CKR_SESSION_HANDLE_INVALID` and log an error for a situation
/// the pool has recovered from. What is leaked is a handle number and a reference to the
/// process-wide module context, which lives as long as the process anyway.
fn forget_dead(session: Session) {
    std::mem::forget(session);
}

/// True for return codes after which the session handle itself is invalid.
fn session_dead(err: &Error) -> bool {
    matches!(
        err,
        Error::Pkcs11(
            RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::DeviceRemoved
                | RvError::TokenNotPresent,
            _
        )
    )
}

/// True for return codes after which the session (not the operation) is gone.
fn session_lost(err: &Error) -> bool {
    matches!(
        err,
        Error::Pkcs11(
            RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::DeviceRemoved
                | RvError::TokenNotPresent
                | RvError::UserNotLoggedIn,
            _
        )
    )
}

impl SessionPool {
    /// Opens the first session and logs in, exactly once. A wrong or locked PIN fails here.
    pub(crate) fn open(
        ctx: Pkcs11,
        module: std::path::PathBuf,
        selector: TokenSelector,
        token_label: String,
        slot: Slot,
        max: usize,
        pin: SecretString,
    ) -> Result<Arc<SessionPool>, KeyStoreError> {
        let pool = Arc::new(SessionPool {
            ctx,
            module,
            selector,
            token_label,
            slot: Mutex::new(slot),
            max: max.max(1),
            state: Mutex::new(PoolState {
                idle: Vec::new(),
                open: 0,
            }),
            freed: Condvar::new(),
            pin,
            pin_rejected: AtomicBool::new(false),
            logged_out: AtomicBool::new(false),
            keep_alive_stop: Mutex::new(None),
        });
        let first = pool.open_session()?;
        let mut state = pool.lock_state();
        state.open = 1;
        state.idle.push(first);
        drop(state);
        Ok(pool)
    }

    fn lock_state(&self) -> MutexGuard<'_, PoolState> {
        // Sessions stay valid even if a holder panicked; recover the guard.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The most sessions this pool opens.
    pub(crate) fn max_sessions(&self) -> usize {
        self.max
    }

    /// Opens a read-write session on the token (finding it again if its slot moved) and makes
    /// sure the user is logged in.
    fn open_session(&self) -> Result<Session, KeyStoreError> {
        let slot = *self.slot.lock().unwrap_or_else(|e| e.into_inner());
        let session = match self.ctx.open_rw_session(slot) {
            Ok(s) => s,
            Err(Error::Pkcs11(
                RvError::SlotIdInvalid | RvError::TokenNotPresent | RvError::DeviceRemoved,
                _,
            )) => {
                // Re-plugged tokens often come back in another slot: find it by label/serial.
                let (slot, _) =
                    find_token(&self.ctx, &self.module, &self.selector).map_err(|_| {
                        KeyStoreError::TokenRemoved {
                            token: self.token_label.clone(),
                            operation: "opening a session".to_owned(),
                        }
                    })?;
                *self.slot.lock().unwrap_or_else(|e| e.into_inner()) = slot;
                self.ctx.open_rw_session(slot).map_err(|e| {
                    KeyStoreError::from_cryptoki(&self.token_label, "opening a session", e)
                })?
            }
            Err(e) => {
                return Err(KeyStoreError::from_cryptoki(
                    &self.token_label,
                    "opening a session",
                    e,
                ));
            }
        };
        self.ensure_logged_in(&session)?;
        Ok(session)
    }

    /// Logs in unless the token already has the user logged in (login state is per token and
    /// application, shared by all its sessions). Never presents a PIN the token has refused.
    fn ensure_logged_in(&self, session: &Session) -> Result<(), KeyStoreError> {
        if self.logged_out.load(Ordering::SeqCst) {
            return Err(KeyStoreError::LoggedOut {
                token: self.token_label.clone(),
            });
        }
        let info = session.get_session_info().map_err(|e| {
            KeyStoreError::from_cryptoki(&self.token_label, "reading session state", e)
        })?;
        let digest = pin_digest(&self.pin);
        let key = (self.module.clone(), self.token_label.clone());
        if matches!(
            info.session_state(),
            SessionState::RwUser | SessionState::RoUser
        ) {
            // Already logged in by this process, where C_Login would not check the PIN at all
            // (CKR_USER_ALREADY_LOGGED_IN): compare with the PIN that did log in, so a second
            // store (a key-injection session in the GUI) cannot ride on another's login.
            return match lock_logins().get(&key) {
                Some(known) if *known != digest => Err(KeyStoreError::PinIncorrect {
                    token: self.token_label.clone(),
                }),
                _ => Ok(()),
            };
        }
        if self.pin_rejected.load(Ordering::SeqCst) {
            return Err(KeyStoreError::PinIncorrect {
                token: self.token_label.clone(),
            });
        }
        let pin = AuthPin::from(self.pin.expose().to_owned());
        match session.login(UserType::User, Some(&pin)) {
            Ok(()) => {
                lock_logins().insert(key, digest);
                tracing::info!(token = %self.token_label, "logged in to token");
                Ok(())
            }
            Err(Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(()),
            Err(e) => {
                if matches!(
                    e,
                    Error::Pkcs11(RvError::PinIncorrect | RvError::PinLocked, _)
                ) {
                    self.pin_rejected.store(true, Ordering::SeqCst);
                }
                Err(KeyStoreError::from_cryptoki(
                    &self.token_label,
                    "logging in",
                    e,
                ))
            }
        }
    }

    /// Sessions currently open (leased or idle), for status displays and tests.
    pub(crate) fn open_count(&self) -> usize {
        self.lock_state().open
    }

    /// Leases a session: an idle one, a new one below the limit, or the next one freed.
    pub(crate) fn lease(
        &self,
        operation: &dyn std::fmt::Display,
    ) -> Result<Lease<'_>, KeyStoreError> {
        let mut state = self.lock_state();
        loop {
            if let Some(session) = state.idle.pop() {
                return Ok(Lease {
                    pool: self,
                    session: Some(session),
                });
            }
            if state.open < self.max {
                state.open += 1;
                drop(state);
                return match self.open_session() {
                    Ok(session) => Ok(Lease {
                        pool: self,
                        session: Some(session),
                    }),
                    Err(e) => {
                        let mut state = self.lock_state();
                        state.open = state.open.saturating_sub(1);
                        self.freed.notify_one();
                        Err(e)
                    }
                };
            }
            let (guard, timeout) = self
                .freed
                .wait_timeout(state, LEASE_TIMEOUT)
                .unwrap_or_else(|e| e.into_inner());
            state = guard;
            if timeout.timed_out() && state.idle.is_empty() && state.open >= self.max {
                return Err(KeyStoreError::Pkcs11 {
                    token: self.token_label.clone(),
                    function: "session pool".to_owned(),
                    rv: format!(
                        "all {} sessions busy for {}s",
                        self.max,
                        LEASE_TIMEOUT.as_secs()
                    ),
                    operation: operation.to_string(),
                });
            }
        }
    }

    /// Runs `f` on a leased session. If the token invalidated the session, the session is
    /// discarded and `f` runs once more on a fresh one: only for operations that are safe to
    /// repeat (signing, HMAC, reading), which is why `run_once` exists for key creation.
    pub(crate) fn run<T>(
        &self,
        operation: &dyn std::fmt::Display,
        f: impl Fn(&Session) -> cryptoki::error::Result<T>,
    ) -> Result<T, KeyStoreError> {
        let lease = self.lease(operation)?;
        match f(lease.session()) {
            Ok(v) => Ok(v),
            Err(e) if session_lost(&e) => {
                tracing::warn!(token = %self.token_label, %operation, error = %e, "session lost; re-opening once");
                lease.discard(session_dead(&e));
                // Whatever killed this session (a re-plug, an idle timeout) likely killed the
                // other idle ones too: prune them so the retry gets a live one.
                self.touch_idle();
                let lease = self.lease(operation)?;
                match f(lease.session()) {
                    Ok(v) => Ok(v),
                    Err(e) => {
                        if session_lost(&e) {
                            lease.discard(session_dead(&e));
                        }
                        Err(KeyStoreError::from_cryptoki(
                            &self.token_label,
                            &operation.to_string(),
                            e,
                        ))
                    }
                }
            }
            Err(e) => Err(KeyStoreError::from_cryptoki(
                &self.token_label,
                &operation.to_string(),
                e,
            )),
        }
    }

    /// Runs `f` on a leased session without repeating it: key creation must not happen twice.
    pub(crate) fn run_once<T>(
        &self,
        operation: &dyn std::fmt::Display,
        f: impl FnOnce(&Session) -> cryptoki::error::Result<T>,
    ) -> Result<T, KeyStoreError> {
        let lease = self.lease(operation)?;
        match f(lease.session()) {
            Ok(v) => Ok(v),
            Err(e) => {
                if session_lost(&e) {
                    lease.discard(session_dead(&e));
                }
                Err(KeyStoreError::from_cryptoki(
                    &self.token_label,
                    &operation.to_string(),
                    e,
                ))
            }
        }
    }

    /// Logs the user out (ends the login for every session of this process on the token) and
    /// closes the idle sessions.
    pub(crate) fn logout(&self) -> Result<(), KeyStoreError> {
        self.logged_out.store(true, Ordering::SeqCst);
        lock_logins().remove(&(self.module.clone(), self.token_label.clone()));
        let result = self.run_once(&"logging out", |s| s.logout());
        let mut state = self.lock_state();
        let closed = state.idle.len();
        state.idle.clear();
        state.open = state.open.saturating_sub(closed);
        match result {
            Ok(()) => Ok(()),
            Err(KeyStoreError::Pkcs11 { rv, .. }) if rv == "UserNotLoggedIn" => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Starts a thread that touches idle sessions every `interval`, for tokens that close idle
    /// sessions (YubiHSM 2 after about 30 s); dead ones are dropped and re-opened on next use.
    pub(crate) fn start_keep_alive(self: &Arc<Self>, interval: Duration) {
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let weak: Weak<SessionPool> = Arc::downgrade(self);
        let spawned = std::thread::Builder::new()
            .name("hsm-keep-alive".to_owned())
            .spawn(move || {
                loop {
                    match stop_rx.recv_timeout(interval) {
                        Err(RecvTimeoutError::Timeout) => {}
                        _ => return,
                    }
                    let Some(pool) = weak.upgrade() else { return };
                    pool.touch_idle();
                }
            });
        match spawned {
            Ok(_) => {
                *self
                    .keep_alive_stop
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = Some(stop_tx);
            }
            Err(e) => {
                tracing::warn!(token = %self.token_label, error = %e, "cannot start the session keep-alive thread; idle sessions may be dropped by the token and will be re-opened");
            }
        }
    }

    /// One keep-alive round: a cheap call on every idle session; sessions that fail are closed.
    pub(crate) fn touch_idle(&self) {
        let sessions = std::mem::take(&mut self.lock_state().idle);
        let mut alive = Vec::with_capacity(sessions.len());
        let mut dead = 0usize;
        for session in sessions {
            match session.get_session_info() {
                Ok(_) => alive.push(session),
                Err(e) => {
                    tracing::debug!(token = %self.token_label, error = %e, "idle session dropped by the token");
                    if session_dead(&e) {
                        forget_dead(session);
                    } else {
                        drop(session);
                    }
                    dead += 1;
                }
            }
        }
        let mut state = self.lock_state();
        state.idle.extend(alive);
        state.open = state.open.saturating_sub(dead);
        self.freed.notify_all();
    }
}

impl Drop for SessionPool {
    fn drop(&mut self) {
        // Dropping the sender wakes the keep-alive thread, which then exits.
        self.keep_alive_stop
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
    }
}
