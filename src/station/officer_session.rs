//! The thread behind the officer's HSM screen (`gui::officer::session`): it owns the ledger, the
//! logged-in token and the [`KeyInjectionSession`] for as long as the session is open, so that the
//! screen never waits on either; it knows no screen (replies go through a channel and a `wake`
//! callback). Also what the screen lists before a session: [`hsm_inventory`]. The PIN reaches it once, goes to exactly one login, and is dropped (zeroized) right
//! after; it is never retried. Every operation runs through `station::key_session`, the same
//! code as `dps-station hsm ...`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::identity::profile::{CaProfile, Validity};
use crate::keystore::import::{ImportError, parse_p256_private_key};
use crate::keystore::pkcs11::{self as p11, Pkcs11Config, Pkcs11KeyStore, TokenSelector};
use crate::keystore::{KeyStore, KeyStoreError};

pub use crate::keystore::pkcs11::{PinTries, TokenSummary};
pub use crate::keystore::profile::HsmProfile;
pub use crate::keystore::{KeyKind, TokenDescription};
use crate::ledger::{Ledger, WriterIdentity};
use crate::secret::{SecretBytes, SecretString};
use crate::station::config::officer::OfficerSettings;
use crate::station::key_session::{
    CaHierarchyRequest, KeyInjectionSession, KeySessionError, chain_pem, default_key_id,
};
use crate::station::operator::settings::RolesSection;

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

/// A profile as the officer's screen lists it: where its module is, and what tokens it shows.
#[derive(Debug, Clone)]
pub struct ProfileInventory {
    /// The profile.
    pub profile: HsmProfile,
    /// Its module, if installed here.
    pub module: Option<PathBuf>,
    /// The tokens the module shows, or why they could not be listed.
    pub tokens: Result<Vec<TokenSummary>, String>,
}

/// Every built-in profile with its installed module and that module's tokens (no login). Loads
/// modules: call it on a worker.
pub fn hsm_inventory() -> Vec<ProfileInventory> {
    HsmProfile::all_built_in()
        .unwrap_or_default()
        .into_iter()
        .map(|profile| {
            let module = profile.installed_module().map(Path::to_path_buf);
            let tokens = match &module {
                Some(m) => p11::list_tokens(&profile, Some(m)).map_err(|e| e.to_string()),
                None => Ok(Vec::new()),
            };
            ProfileInventory {
                profile,
                module,
                tokens,
            }
        })
        .collect()
}

/// A verification code as DPS issues it: letters and digits only (DPS shows 48 hexadecimal
/// characters; the CLI's `generate-verification-code` the same), at most 64. Returns it trimmed,
/// or why it cannot be one.
pub fn check_verification_code(code: &str) -> Result<String, &'static str> {
    let code = code.trim();
    if code.is_empty() {
        return Err("paste the verification code DPS shows for the uploaded CA certificate");
    }
    if code.len() > 64 || !code.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(
            "DPS verification codes are letters and digits only (no spaces, dashes or quotes): copy it again from the DPS portal or `az iot dps certificate generate-verification-code`",
        );
    }
    Ok(code.to_owned())
}

/// Starts a session worker; `wake` is called after every reply (the GUI's `request_repaint`).
pub fn spawn(
    request: OpenRequest,
    wake: impl Fn() + Send + 'static,
) -> Result<(Sender<Op>, Receiver<Reply>), std::io::Error> {
    let (op_tx, op_rx) = std::sync::mpsc::channel();
    let (reply_tx, reply_rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("officer-session".into())
        .spawn(move || {
            let send = |r: Reply| {
                let _ = reply_tx.send(r);
                wake();
            };
            run(request, &op_rx, &send);
        })?;
    Ok((op_tx, reply_rx))
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
                    send(Reply::Done { message });
                    send(state(&session, &batches));
                }
                Err(OpError::Session(KeySessionError::KeyStore(
                    e @ KeyStoreError::TokenRemoved { .. },
                ))) => {
                    tracing::warn!(token = %token, error = %e, "token removed during a key-injection session");
                    return removed(session, &token, send);
                }
                Err(e) => {
                    send(Reply::Failed {
                        message: e.to_string(),
                    });
                    send(state(&session, &batches));
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

/// An operation's failure: the session's own error, or a refusal before it ran.
#[derive(Debug, thiserror::Error)]
enum OpError {
    #[error(transparent)]
    Session(#[from] KeySessionError),
    #[error(transparent)]
    DualControl(#[from] crate::station::config::officer::DualControlError),
    #[error("{0}")]
    Refused(String),
}

impl From<KeyStoreError> for OpError {
    fn from(e: KeyStoreError) -> Self {
        OpError::Session(e.into())
    }
}

struct Work<'a> {
    officer: &'a str,
    settings: &'a OfficerSettings,
    roles: &'a RolesSection,
}

impl Work<'_> {
    /// Dual control: the second officer is checked before anything runs, and named in the
    /// session's audit rows while the operation runs.
    fn approve(
        &self,
        session: &mut KeyInjectionSession<'_>,
        second: Option<SecondOfficer>,
    ) -> Result<(), OpError> {
        session.set_second_officer(None);
        if !self.settings.dual_control {
            return Ok(());
        }
        let Some(second) = second else {
            return Err(OpError::Refused(format!(
                "dual control is on for this station: a second officer (not {}) must enter their name and password before a CA key is created or imported",
                self.officer
            )));
        };
        self.settings.check_second_officer(
            self.roles,
            self.officer,
            &second.name,
            &second.password,
        )?;
        tracing::info!(officer = self.officer, second_officer = %second.name, "dual control approved");
        session.set_second_officer(Some(second.name.trim()));
        Ok(())
    }

    fn perform(&self, session: &mut KeyInjectionSession<'_>, op: Op) -> Result<String, OpError> {
        let result = self.perform_inner(session, op);
        session.set_second_officer(None);
        result
    }

    fn perform_inner(
        &self,
        session: &mut KeyInjectionSession<'_>,
        op: Op,
    ) -> Result<String, OpError> {
        match op {
            Op::InitCa { form, second } => {
                let request = ca_request(&form)?;
                self.approve(session, second)?;
                let ca = session.init_ca(&request)?;
                Ok(format!(
                    "created root {} and intermediate {}; both certificates are stored on the token and in the ledger",
                    ca.root_key, ca.intermediate_key
                ))
            }
            Op::ImportCaKey {
                label,
                file,
                passphrase,
                second,
            } => {
                let label = required(&label, "label")?;
                let origin = file.display().to_string();
                let bytes = zeroize::Zeroizing::new(std::fs::read(&file).map_err(|e| {
                    OpError::Refused(format!(
                        "cannot read key file {origin}: {e}; choose the CA key file (PKCS#8 PEM or DER)"
                    ))
                })?);
                let scalar =
                    parse_p256_private_key(&origin, &bytes, passphrase.as_ref()).map_err(|e| {
                        match e {
                            ImportError::NeedsPassphrase { .. } => OpError::Refused(format!(
                                "{origin} is encrypted: enter its passphrase and import again"
                            )),
                            e => OpError::Refused(e.to_string()),
                        }
                    })?;
                self.approve(session, second)?;
                let uri =
                    session.import_ca_key(&label, &default_key_id(&label), &scalar, &origin)?;
                Ok(format!(
                    "imported {uri}; the key file {origin} was read, not copied, and still holds the key: destroy it once the import is verified"
                ))
            }
            Op::CreateGroupKey { label } => {
                let label = required(&label, "label")?;
                let uri = session.generate_group_key(&label, &default_key_id(&label))?;
                Ok(format!("created {uri}"))
            }
            Op::ImportGroupKey { label, key } => {
                let label = required(&label, "label")?;
                let raw = STANDARD
                    .decode(key.expose().trim())
                    .map(SecretBytes::new)
                    .map_err(|_| {
                        OpError::Refused(
                            "the group key is not valid base64 (DPS shows group keys in base64); paste it again".into(),
                        )
                    })?;
                let uri = session.import_group_key(&label, &default_key_id(&label), &raw)?;
                Ok(format!("imported {uri}"))
            }
            Op::Verification {
                ca_label,
                code,
                out,
            } => {
                let ca_label = required(&ca_label, "CA key label")?;
                let code =
                    check_verification_code(&code).map_err(|e| OpError::Refused(e.to_owned()))?;
                let token = session.store().token().label.clone();
                let uri = crate::keystore::Pkcs11Uri {
                    token: Some(token),
                    object: Some(ca_label.clone()),
                    ..Default::default()
                };
                let validity =
                    Validity::days_from_now(30).map_err(|e| OpError::Refused(e.to_string()))?;
                let cert = session.verification_certificate(&uri, &code, &validity)?;
                write_file(&out, cert.pem().as_bytes())?;
                Ok(format!(
                    "verification certificate for code {code} written to {}; upload it with:\naz iot dps certificate verify --dps-name <your-dps> --resource-group <group> --certificate-name {ca_label} --path {} --etag <etag>",
                    out.display(),
                    out.display()
                ))
            }
            Op::ExportChain {
                root_label,
                intermediate_label,
                out,
            } => {
                let text = chain_pem(session.store().as_ref(), &root_label, &intermediate_label)?;
                write_file(&out, text.as_bytes())?;
                Ok(format!(
                    "chain ({intermediate_label}, {root_label}) written to {}",
                    out.display()
                ))
            }
            Op::Close(_) => Ok(String::new()),
        }
    }
}

fn required(value: &str, what: &str) -> Result<String, OpError> {
    let v = value.trim();
    if v.is_empty() {
        Err(OpError::Refused(format!("give the key's {what}")))
    } else {
        Ok(v.to_owned())
    }
}

fn ca_request(form: &CaForm) -> Result<CaHierarchyRequest, OpError> {
    let refused = |e: &dyn std::fmt::Display| OpError::Refused(e.to_string());
    let root_label = required(&form.root_label, "root label")?;
    let intermediate_label = required(&form.intermediate_label, "intermediate label")?;
    let organization = Some(form.organization.trim().to_owned()).filter(|o| !o.is_empty());
    let mut root_profile =
        CaProfile::root(form.root_cn.trim().to_owned()).map_err(|e| refused(&e))?;
    root_profile.validity = Validity::days_from_now(form.root_days).map_err(|e| refused(&e))?;
    root_profile.subject.organization = organization.clone();
    let mut intermediate_profile =
        CaProfile::intermediate(form.intermediate_cn.trim().to_owned()).map_err(|e| refused(&e))?;
    intermediate_profile.validity =
        Validity::days_from_now(form.intermediate_days).map_err(|e| refused(&e))?;
    intermediate_profile.subject.organization = organization;
    Ok(CaHierarchyRequest {
        root_id: default_key_id(&root_label),
        root_label,
        root_profile,
        intermediate_id: default_key_id(&intermediate_label),
        intermediate_label,
        intermediate_profile,
    })
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), OpError> {
    if path.as_os_str().is_empty() {
        return Err(OpError::Refused("choose the file to write".into()));
    }
    if let Some(dir) = path.parent() {
        // The default folder (the station's reports) may not exist yet; a failure shows below.
        let _ = std::fs::create_dir_all(dir);
    }
    std::fs::write(path, bytes).map_err(|e| {
        OpError::Refused(format!(
            "cannot write {}: {e}; choose a folder this user may write",
            path.display()
        ))
    })
}

/// The token's objects and the session's audit rows, for the screen.
fn state(session: &KeyInjectionSession<'_>, batches: &Path) -> Reply {
    let batch_files = batch_texts(batches);
    let token = session.store().token().label.clone();
    let keys = session
        .store()
        .list()
        .unwrap_or_default()
        .into_iter()
        .map(|k| KeyRow {
            uri: k.uri.to_string(),
            batches: batch_files
                .iter()
                .filter(|(_, text)| names_key(text, &token, &k.label))
                .map(|(name, _)| name.clone())
                .collect(),
            label: k.label,
            kind: k.kind,
            sensitive: k.sensitive,
            extractable: k.extractable,
        })
        .collect();
    let audit = session
        .audit_rows()
        .unwrap_or_default()
        .into_iter()
        .map(|r| {
            let second = serde_json::from_str::<serde_json::Value>(&r.details)
                .ok()
                .and_then(|d| {
                    d.get("second_officer")
                        .and_then(|s| s.as_str())
                        .map(str::to_owned)
                });
            AuditLine {
                at: r.at,
                actor: match second {
                    Some(s) => format!("{} + {s}", r.actor),
                    None => r.actor,
                },
                action: r.action,
                subject: r.subject,
            }
        })
        .collect();
    Reply::State { keys, audit }
}

/// The batch files of the batches folder with their text.
fn batch_texts(dir: &Path) -> Vec<(String, String)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<(String, String)> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .filter_map(|p| {
            let text = std::fs::read_to_string(&p).ok()?;
            let name = p.file_name()?.to_string_lossy().into_owned();
            Some((name, text))
        })
        .collect();
    out.sort();
    out
}

/// Whether a batch file's text names the key `label` on `token` by PKCS#11 URI.
fn names_key(text: &str, token: &str, label: &str) -> bool {
    text.lines().filter(|l| l.contains("pkcs11:")).any(|l| {
        let attrs: Vec<&str> = l
            .split(['"', '\''])
            .filter(|s| s.starts_with("pkcs11:"))
            .flat_map(|uri| uri.trim_start_matches("pkcs11:").split(';'))
            .collect();
        attrs.contains(&format!("object={label}").as_str())
            && attrs
                .iter()
                .all(|a| !a.starts_with("token=") || *a == format!("token={token}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_names_a_key_by_label_and_token() {
        let text = "[keys]\nca = \"pkcs11:token=line;object=intermediate-ca;type=private\"\n";
        assert!(names_key(text, "line", "intermediate-ca"));
        assert!(!names_key(text, "other", "intermediate-ca"));
        assert!(!names_key(text, "line", "root-ca"));
        assert!(!names_key(
            "object=intermediate-ca\n",
            "line",
            "intermediate-ca"
        ));
    }

    #[test]
    fn verification_codes_are_letters_and_digits() {
        assert_eq!(
            check_verification_code(" 1B2C3D4E5F60718293A4B5C6D7E8F90112233445566778899 ")
                .as_deref(),
            Ok("1B2C3D4E5F60718293A4B5C6D7E8F90112233445566778899")
        );
        assert!(check_verification_code("").is_err());
        assert!(check_verification_code("1B2C-3D4E").is_err());
        assert!(check_verification_code("code with spaces").is_err());
        assert!(check_verification_code(&"A".repeat(65)).is_err());
    }
}
