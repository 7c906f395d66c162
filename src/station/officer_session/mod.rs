//! The thread behind the officer's HSM screen (`gui::officer::session`): it owns the ledger, the
//! logged-in token and the [`KeyInjectionSession`] for as long as the session is open, so that the
//! screen never waits on either; it knows no screen (replies go through a channel and a `wake`
//! callback). Also what the screen lists before a session: [`hsm_inventory`].
//!
//! The PIN reaches it once, goes to exactly one login, and is dropped (zeroized) right after; it is never retried. Every operation runs through `station::key_session`, the same
//! code as `dps-station hsm ...`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, SystemTime};

use crate::keystore::pkcs11::{self as p11, Pkcs11Config, Pkcs11KeyStore, TokenSelector};
use crate::keystore::{KeyStore, KeyStoreError};
use crate::ledger::{Ledger, WriterIdentity};
use crate::secret::SecretString;
use crate::station::config::officer::OfficerSettings;
use crate::station::key_session::{KeyInjectionSession, KeySessionError};
use crate::station::operator::settings::RolesSection;

mod listing;
mod ops;

pub use crate::keystore::pkcs11::{PinTries, TokenSummary};
pub use crate::keystore::profile::HsmProfile;
pub use crate::keystore::{KeyKind, TokenDescription};
use listing::state;
pub use listing::{ProfileInventory, check_verification_code, hsm_inventory};
use ops::{OpError, Work};

/// How often the worker looks whether the token is still there while the officer is idle.
const PRESENCE_CHECK: Duration = Duration::from_secs(2);

/// Everything needed to open a session. The PIN is moved in and dropped after the one login.
pub struct OpenRequest {
    /// The HSM family.
    pub profile: HsmProfile,
    /// The module, when not the profile's installed one.
    pub module: Option<PathBuf>,
    /// The token's label.
    pub token: String,
    /// The officer running the session (recorded in the ledger).
    pub officer: String,
    /// The user PIN.
    pub pin: SecretString,
    /// The ledger file.
    pub ledger: PathBuf,
    /// The station's name (the ledger's writer).
    pub station: String,
    /// Where batch files are (to say which batches use a key).
    pub batches: PathBuf,
    /// Dual control and its password hashes.
    pub officer_settings: OfficerSettings,
    /// Who holds the officer role.
    pub roles: RolesSection,
}

/// A second officer's approval for a CA key operation under dual control.
pub struct SecondOfficer {
    /// Their name.
    pub name: String,
    /// Their password (checked on the worker, then dropped).
    pub password: SecretString,
}

/// An operation in an open session.
pub enum Op {
    /// Create a root + intermediate hierarchy (the form of `hsm init-ca`).
    InitCa {
        /// Names and subjects.
        form: CaForm,
        /// Required under dual control.
        second: Option<SecondOfficer>,
    },
    /// Import a CA key from a PKCS#8 file (read, never copied).
    ImportCaKey {
        /// Label on the token.
        label: String,
        /// The key file.
        file: PathBuf,
        /// Its passphrase, if encrypted.
        passphrase: Option<SecretString>,
        /// Required under dual control.
        second: Option<SecondOfficer>,
    },
    /// Create a 64-byte group key in the token.
    CreateGroupKey {
        /// Label on the token.
        label: String,
    },
    /// Import a group key given in base64.
    ImportGroupKey {
        /// Label on the token.
        label: String,
        /// The key, base64.
        key: SecretString,
    },
    /// Sign a DPS proof-of-possession certificate and save it as PEM.
    Verification {
        /// Label of the CA key (its certificate is on the token with the same label).
        ca_label: String,
        /// The code DPS showed.
        code: String,
        /// Where to write the PEM.
        out: PathBuf,
    },
    /// Write the chain (intermediate, root) as PEM.
    ExportChain {
        /// Root certificate label.
        root_label: String,
        /// Intermediate certificate label.
        intermediate_label: String,
        /// Where to write it.
        out: PathBuf,
    },
    /// Log out and close the record.
    Close(CloseReason),
}

/// Why a session closed (for the screen's message and the log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The officer asked.
    Requested,
    /// Nobody acted for the idle time.
    Idle,
    /// The window closed.
    WindowClosed,
}

/// The fields of the CA hierarchy form.
#[derive(Debug, Clone, PartialEq)]
pub struct CaForm {
    /// Root label on the token.
    pub root_label: String,
    /// Intermediate label.
    pub intermediate_label: String,
    /// Root subject CN.
    pub root_cn: String,
    /// Intermediate subject CN.
    pub intermediate_cn: String,
    /// Subject O (empty: none).
    pub organization: String,
    /// Root validity, days.
    pub root_days: i64,
    /// Intermediate validity, days.
    pub intermediate_days: i64,
}

impl Default for CaForm {
    fn default() -> Self {
        Self {
            root_label: "root-ca".into(),
            intermediate_label: "intermediate-ca".into(),
            root_cn: "dps-station Root CA".into(),
            intermediate_cn: "dps-station Intermediate CA".into(),
            organization: String::new(),
            root_days: 3652,
            intermediate_days: 1826,
        }
    }
}

/// One object on the token as the screen lists it (never key material).
#[derive(Debug, Clone, PartialEq)]
pub struct KeyRow {
    /// The URI naming exactly it.
    pub uri: String,
    /// `CKA_LABEL`.
    pub label: String,
    /// What it is.
    pub kind: KeyKind,
    /// `CKA_SENSITIVE`.
    pub sensitive: Option<bool>,
    /// `CKA_EXTRACTABLE`.
    pub extractable: Option<bool>,
    /// `CKA_NEVER_EXTRACTABLE` (made in the token, never outside it).
    pub never_extractable: Option<bool>,
    /// Batch files naming it.
    pub batches: Vec<String>,
}

/// One audit row of the session.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditLine {
    /// When (UTC).
    pub at: String,
    /// Who (and the second officer, if any).
    pub actor: String,
    /// What.
    pub action: String,
    /// Which key.
    pub subject: String,
}

/// What the worker tells the screen.
#[derive(Debug)]
pub enum Reply {
    /// The session is open.
    Opened {
        /// The token.
        token: TokenDescription,
        /// Since.
        since: SystemTime,
    },
    /// It could not open; nothing is logged in.
    OpenFailed {
        /// The error (names the token, says what to do; never the PIN).
        message: String,
        /// The PIN was wrong (tried once, not retried).
        wrong_pin: bool,
        /// What the token's flags say about tries left, where it says.
        tries: Option<PinTries>,
    },
    /// The token's objects and the session's audit rows, after every operation.
    State {
        /// Keys and certificates.
        keys: Vec<KeyRow>,
        /// Audit rows of this session.
        audit: Vec<AuditLine>,
    },
    /// An operation finished.
    Done {
        /// What happened (URIs, files, the command to run next).
        message: String,
    },
    /// An operation was refused or failed; the session stays open.
    Failed {
        /// Why, naming the token and key.
        message: String,
    },
    /// The token went away: the session record is closed, operations are refused.
    Removed {
        /// Why.
        message: String,
    },
    /// The session closed and the token was logged out.
    Closed {
        /// Why.
        reason: CloseReason,
        /// A logout or ledger problem while closing, if any.
        problem: Option<String>,
    },
}

/// A running session worker: where to send operations, where replies come, its thread.
pub type SessionWorker = (Sender<Op>, Receiver<Reply>, std::thread::JoinHandle<()>);

/// Starts a session worker; `wake` is called after every reply (the GUI's `request_repaint`).
/// The handle lets the caller wait for the worker to let go of the PKCS#11 module before the
/// process exits (a module finalised by exit while a thread still calls it can crash).
pub fn spawn(
    request: OpenRequest,
    wake: impl Fn() + Send + 'static,
) -> Result<SessionWorker, std::io::Error> {
    let (op_tx, op_rx) = std::sync::mpsc::channel();
    let (reply_tx, reply_rx) = std::sync::mpsc::channel();
    let handle = std::thread::Builder::new()
        .name("officer-session".into())
        .spawn(move || {
            let send = |r: Reply| {
                let _ = reply_tx.send(r);
                wake();
            };
            run(request, &op_rx, &send);
        })?;
    Ok((op_tx, reply_rx, handle))
}

fn run(request: OpenRequest, ops: &Receiver<Op>, send: &dyn Fn(Reply)) {
    let OpenRequest {
        profile,
        module,
        token,
        officer,
        pin,
        ledger,
        station,
        batches,
        officer_settings,
        roles,
    } = request;
    let failed = |message: String| Reply::OpenFailed {
        message,
        wrong_pin: false,
        tries: None,
    };
    // The ledger first: if it cannot be opened, the PIN is never presented.
    let writer = WriterIdentity {
        station,
        operator: officer.clone(),
    };
    let mut ledger = match Ledger::open(&ledger, &writer) {
        Ok(l) => l,
        Err(e) => return send(failed(e.to_string())),
    };
    let config = Pkcs11Config {
        profile: profile.clone(),
        module: module.clone(),
        token: TokenSelector::Label(token.clone()),
        sessions: Some(2),
    };
    // One login; the PIN is moved in and dropped (zeroized) whatever the answer.
    let store = match Pkcs11KeyStore::open(&config, pin) {
        Ok(s) => s,
        Err(e) => {
            let wrong_pin = matches!(e, KeyStoreError::PinIncorrect { .. });
            let tries = if wrong_pin || matches!(e, KeyStoreError::PinLocked { .. }) {
                token_summary(&profile, module.as_deref(), &token).and_then(|t| t.pin_tries())
            } else {
                None
            };
            return send(Reply::OpenFailed {
                message: e.to_string(),
                wrong_pin,
                tries,
            });
        }
    };
    let store: Arc<dyn KeyStore> = store;
    let mut session = match KeyInjectionSession::open(&mut ledger, store.clone(), &officer) {
        Ok(s) => s,
        Err(e) => {
            let _ = store.logout();
            return send(failed(e.to_string()));
        }
    };
    send(Reply::Opened {
        token: store.token().clone(),
        since: SystemTime::now(),
    });
    send(state(&session, &batches));
    let ctx = Work {
        officer: &officer,
        settings: &officer_settings,
        roles: &roles,
    };
    let reason = loop {
        match ops.recv_timeout(PRESENCE_CHECK) {
            Ok(Op::Close(reason)) => break reason,
            Err(RecvTimeoutError::Disconnected) => break CloseReason::WindowClosed,
            Err(RecvTimeoutError::Timeout) => {
                if token_summary(&profile, module.as_deref(), &token).is_none() {
                    return removed(session, &token, send);
                }
            }
            Ok(op) => match ctx.perform(&mut session, op) {
                Ok(message) => {
                    // The list first: when the screen shows the outcome, it shows its effect.
                    send(state(&session, &batches));
                    send(Reply::Done { message });
                }
                Err(OpError::Session(KeySessionError::KeyStore(
                    e @ KeyStoreError::TokenRemoved { .. },
                ))) => {
                    tracing::warn!(token = %token, error = %e, "token removed during a key-injection session");
                    return removed(session, &token, send);
                }
                Err(e) => {
                    send(state(&session, &batches));
                    send(Reply::Failed {
                        message: e.to_string(),
                    });
                }
            },
        }
    };
    let problem = session.close().err().map(|e| e.to_string());
    tracing::info!(token = %token, ?reason, "officer's HSM session closed");
    send(Reply::Closed { reason, problem });
}

/// Closes the record of a session whose token went away (the logout fails; the record closes).
fn removed(session: KeyInjectionSession<'_>, token: &str, send: &dyn Fn(Reply)) {
    let closing = session.close().err();
    let mut message = format!(
        "token \"{token}\" was removed or became unreachable; the session record is closed and no operation runs. Reconnect the token and open a new session."
    );
    if let Some(KeySessionError::Ledger(e)) = closing {
        message.push_str(&format!(" (the ledger could not close the record: {e})"));
    }
    send(Reply::Removed { message });
}

/// The token labelled `token` as the module lists it now; `None` when it is not there.
fn token_summary(
    profile: &HsmProfile,
    module: Option<&Path>,
    token: &str,
) -> Option<p11::TokenSummary> {
    p11::list_tokens(profile, module)
        .ok()?
        .into_iter()
        .find(|t| t.label == token)
}
