//! Key-injection sessions: a security officer at a token creates or imports CA and group keys,
//! and signs DPS proof-of-possession certificates. Opening one records who, when and which token
//! in the ledger; every key operation writes an audit row; closing it logs out of the token and
//! ends the record. The CLI runs each key-changing `hsm` command in one; the GUI holds one open
//! across several operations.
//!
//! This is where the ledger and the key store meet (neither knows the other).

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;

use crate::identity::issue::{self, IssuedCertificate, Issuer};
use crate::identity::pem;
use crate::identity::profile::{CaProfile, Validity};
use crate::identity::symmetric::KeyFingerprint;
use crate::keystore::{KeyStore, KeyStoreError, ObjectType, Pkcs11Uri};
use crate::ledger::{
    AuditRecord, CaRole, KeySessionId, Ledger, LedgerError, NewCaCertificate, NewKeySession,
};
use crate::secret::{SecretBytes, SecretString};

/// Why a key-session operation failed. Key-store errors name the token and key; ledger errors
/// the ledger file.
#[derive(Debug, thiserror::Error)]
pub enum KeySessionError {
    /// The token refused or failed.
    #[error(transparent)]
    KeyStore(#[from] KeyStoreError),
    /// The ledger could not record the operation.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// A certificate could not be made.
    #[error("{what}: {error}")]
    Issue {
        /// Which certificate.
        what: String,
        /// Why.
        error: issue::IssueError,
    },
    /// The session was already closed.
    #[error("the key-injection session on token \"{token}\" is closed; open a new one")]
    Closed {
        /// Token label.
        token: String,
    },
}

/// The names and subjects of a new CA hierarchy.
#[derive(Debug, Clone)]
pub struct CaHierarchyRequest {
    /// Token label (`CKA_LABEL`) and ledger name of the root key and certificate.
    pub root_label: String,
    /// `CKA_ID` of the root key pair and certificate.
    pub root_id: Vec<u8>,
    /// The root's certificate profile (subject, validity, path length).
    pub root_profile: CaProfile,
    /// Label and ledger name of the intermediate.
    pub intermediate_label: String,
    /// `CKA_ID` of the intermediate.
    pub intermediate_id: Vec<u8>,
    /// The intermediate's certificate profile.
    pub intermediate_profile: CaProfile,
}

/// What `init_ca` made.
#[derive(Debug)]
pub struct CaHierarchy {
    /// The root key's URI.
    pub root_key: Pkcs11Uri,
    /// The self-signed root certificate.
    pub root: IssuedCertificate,
    /// The intermediate key's URI.
    pub intermediate_key: Pkcs11Uri,
    /// The intermediate certificate, signed by the root key in the token.
    pub intermediate: IssuedCertificate,
}

/// An open key-injection session on one token, recorded in one ledger.
pub struct KeyInjectionSession<'l> {
    ledger: &'l mut Ledger,
    store: Arc<dyn KeyStore>,
    id: KeySessionId,
    operator: String,
    second_officer: Option<String>,
    open: bool,
}

impl std::fmt::Debug for KeyInjectionSession<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyInjectionSession")
            .field("id", &self.id)
            .field("operator", &self.operator)
            .field("token", &self.store.token().label)
            .finish_non_exhaustive()
    }
}

impl<'l> KeyInjectionSession<'l> {
    /// Opens a session: records operator, time and token (label, serial, model) in the ledger.
    /// `store` must already be logged in (the PIN was checked when it was opened).
    pub fn open(
        ledger: &'l mut Ledger,
        store: Arc<dyn KeyStore>,
        operator: &str,
    ) -> Result<Self, KeySessionError> {
        let token = store.token().clone();
        let id = ledger.open_key_session(&NewKeySession {
            operator: operator.to_owned(),
            token_label: token.label.clone(),
            token_serial: token.serial.clone(),
            token_model: token.model.clone(),
        })?;
        tracing::info!(token = %token.label, operator, session = id.0, "key-injection session opened");
        Ok(KeyInjectionSession {
            ledger,
            store,
            id,
            operator: operator.to_owned(),
            second_officer: None,
            open: true,
        })
    }

    /// Names the second officer who approved the next operations (dual control): their name
    /// goes into each audit row until this is called with `None`.
    pub fn set_second_officer(&mut self, name: Option<&str>) {
        self.second_officer = name.map(str::to_owned);
    }

    /// The audit rows this session has written so far, oldest first.
    pub fn audit_rows(&self) -> Result<Vec<AuditRecord>, KeySessionError> {
        Ok(self.ledger.audit_of_key_session(self.id)?)
    }

    /// The ledger's id of this session.
    pub fn id(&self) -> KeySessionId {
        self.id
    }

    /// The key store the session works on.
    pub fn store(&self) -> &Arc<dyn KeyStore> {
        &self.store
    }

    fn check_open(&self) -> Result<(), KeySessionError> {
        if self.open {
            Ok(())
        } else {
            Err(KeySessionError::Closed {
                token: self.store.token().label.clone(),
            })
        }
    }

    /// One audit row for a key operation, naming the session, token and key (never key material).
    fn audit(
        &mut self,
        action: &str,
        key: &str,
        details: serde_json::Value,
    ) -> Result<(), KeySessionError> {
        let token = self.store.token();
        let mut row = json!({
            "key_session": self.id.0,
            "token_label": token.label,
            "token_serial": token.serial,
            "in_hardware": token.hardware,
        });
        if let (Some(row), Some(second)) = (row.as_object_mut(), &self.second_officer) {
            row.insert("second_officer".to_owned(), json!(second));
        }
        if let (Some(row), serde_json::Value::Object(extra)) = (row.as_object_mut(), details) {
            row.extend(extra);
        }
        self.ledger
            .append_audit(&self.operator, action, key, &row)?;
        Ok(())
    }

    /// The full URI of the one object `uri` names (`default_type` when it has no `type=`).
    fn resolve(
        &self,
        uri: &Pkcs11Uri,
        default_type: ObjectType,
    ) -> Result<Pkcs11Uri, KeySessionError> {
        let typed = if uri.object_type.is_some() {
            uri.clone()
        } else {
            uri.with_type(default_type)
        };
        Ok(self.store.find(&typed)?.uri)
    }

    /// Generates a P-256 CA key pair in the token.
    pub fn generate_ca_key(
        &mut self,
        label: &str,
        id: &[u8],
    ) -> Result<Pkcs11Uri, KeySessionError> {
        self.check_open()?;
        let uri = self.store.generate_ec_p256(label, id)?;
        self.audit(
            "hsm.key.generated",
            &uri.to_string(),
            json!({ "kind": "ec-p256" }),
        )?;
        Ok(uri)
    }

    /// Generates a 64-byte enrollment-group key in the token (DPS's own group keys are 64 bytes).
    pub fn generate_group_key(
        &mut self,
        label: &str,
        id: &[u8],
    ) -> Result<Pkcs11Uri, KeySessionError> {
        self.check_open()?;
        let uri = self.store.generate_secret(label, id, 64)?;
        self.audit(
            "hsm.key.generated",
            &uri.to_string(),
            json!({ "kind": "generic-secret", "bytes": 64 }),
        )?;
        Ok(uri)
    }

    /// Imports an existing CA key (its scalar, parsed from the site's key file named `origin`).
    pub fn import_ca_key(
        &mut self,
        label: &str,
        id: &[u8],
        scalar: &SecretBytes,
        origin: &str,
    ) -> Result<Pkcs11Uri, KeySessionError> {
        self.check_open()?;
        let uri = self.store.import_ec_p256(label, id, scalar)?;
        self.audit(
            "hsm.key.imported",
            &uri.to_string(),
            json!({ "kind": "ec-p256", "from": origin }),
        )?;
        Ok(uri)
    }

    /// Imports a group key that DPS or another site made (raw bytes, decoded from its base64);
    /// the audit row keeps its fingerprint so that the two sites can compare without the key.
    pub fn import_group_key(
        &mut self,
        label: &str,
        id: &[u8],
        key: &SecretBytes,
    ) -> Result<Pkcs11Uri, KeySessionError> {
        self.check_open()?;
        let uri = self.store.import_secret(label, id, key)?;
        let fingerprint = KeyFingerprint::of_key_bytes(key);
        self.audit(
            "hsm.key.imported",
            &uri.to_string(),
            json!({ "kind": "generic-secret", "bytes": key.expose().len(), "fingerprint": fingerprint.as_str() }),
        )?;
        Ok(uri)
    }

    /// The device key for `registration_id` in the group whose key `group_key` names, computed
    /// in the token: `base64(HMAC-SHA256(groupKey, registrationId))`.
    pub fn derive_device_key(
        &mut self,
        group_key: &Pkcs11Uri,
        registration_id: &str,
    ) -> Result<SecretString, KeySessionError> {
        self.check_open()?;
        // Audit under the key's full URI, whatever shorthand the caller used.
        let group_key = &self.resolve(group_key, ObjectType::SecretKey)?;
        let mac = self
            .store
            .hmac_sha256(group_key, registration_id.as_bytes())?;
        let fingerprint = KeyFingerprint::of_key_bytes(&mac);
        self.audit(
            "hsm.device_key.derived",
            &group_key.to_string(),
            json!({ "registration_id": registration_id, "device_key_fingerprint": fingerprint.as_str() }),
        )?;
        Ok(SecretString::new(STANDARD.encode(mac.expose())))
    }

    /// Creates a root and an intermediate key pair in the token, the self-signed root and the
    /// intermediate signed by the root key in the token; stores both certificates on the token
    /// (`CKO_CERTIFICATE`, same label and id as the key) and in the ledger.
    pub fn init_ca(
        &mut self,
        request: &CaHierarchyRequest,
    ) -> Result<CaHierarchy, KeySessionError> {
        self.check_open()?;
        let root_key = self.generate_ca_key(&request.root_label, &request.root_id)?;
        let intermediate_key =
            self.generate_ca_key(&request.intermediate_label, &request.intermediate_id)?;
        let root_signer = self.store.signer(&root_key)?;
        let issue_err = |what: &str| {
            let what = what.to_owned();
            move |error| KeySessionError::Issue { what, error }
        };
        let root = issue::make_root_ca(&request.root_profile, root_signer.as_ref())
            .map_err(issue_err(&format!("root certificate for {root_key}")))?;
        let issuer = Issuer::new(root.der.clone(), root_signer.as_ref())
            .map_err(issue_err(&format!("root certificate for {root_key}")))?;
        let intermediate_public = self.store.public_key_sec1(&intermediate_key)?;
        let intermediate = issue::make_intermediate_ca(
            &request.intermediate_profile,
            &intermediate_public,
            &issuer,
        )
        .map_err(issue_err(&format!(
            "intermediate certificate for {intermediate_key}"
        )))?;
        self.store_ca_certificate(
            &request.root_label,
            &request.root_id,
            CaRole::Root,
            &root_key,
            &root.der,
        )?;
        self.store_ca_certificate(
            &request.intermediate_label,
            &request.intermediate_id,
            CaRole::Intermediate,
            &intermediate_key,
            &intermediate.der,
        )?;
        Ok(CaHierarchy {
            root_key,
            root,
            intermediate_key,
            intermediate,
        })
    }

    /// Stores a CA certificate on the token next to its key and records it in the ledger.
    pub fn store_ca_certificate(
        &mut self,
        label: &str,
        id: &[u8],
        role: CaRole,
        key: &Pkcs11Uri,
        der: &[u8],
    ) -> Result<Pkcs11Uri, KeySessionError> {
        self.check_open()?;
        let cert_uri = self.store.store_certificate(label, id, der)?;
        self.ledger.record_ca_certificate(
            &NewCaCertificate {
                name: label.to_owned(),
                role,
                key_uri: key.to_string(),
                certificate_der: der.to_vec(),
            },
            Some(self.id),
        )?;
        self.audit(
            "hsm.certificate.stored",
            &cert_uri.to_string(),
            json!({ "role": role.as_str(), "key_uri": key.to_string() }),
        )?;
        Ok(cert_uri)
    }

    /// The DPS proof-of-possession certificate for the CA whose key `ca_key` names: CN = the
    /// verification code, signed by that key in the token. The CA certificate is the one stored
    /// on the token with the key's label and id.
    pub fn verification_certificate(
        &mut self,
        ca_key: &Pkcs11Uri,
        code: &str,
        validity: &Validity,
    ) -> Result<IssuedCertificate, KeySessionError> {
        self.check_open()?;
        let ca_key = &self.resolve(ca_key, ObjectType::Private)?;
        let ca_cert = certificate_for_key(self.store.as_ref(), ca_key)?;
        let signer = self.store.signer(ca_key)?;
        let what = format!("verification certificate signed by {ca_key}");
        let issuer =
            Issuer::new(ca_cert, signer.as_ref()).map_err(|error| KeySessionError::Issue {
                what: what.clone(),
                error,
            })?;
        let cert = issue::verification_certificate(code, validity, &issuer)
            .map_err(|error| KeySessionError::Issue { what, error })?;
        self.audit(
            "hsm.verification_certificate.signed",
            &ca_key.to_string(),
            json!({ "verification_code": code, "sha256": cert.info.sha256_thumbprint }),
        )?;
        Ok(cert)
    }

    /// Ends the session: logs out of the token and closes the ledger record. The ledger record is
    /// closed even if the logout fails (the token may be gone); the logout error is then returned.
    pub fn close(mut self) -> Result<(), KeySessionError> {
        self.finish()
    }

    fn finish(&mut self) -> Result<(), KeySessionError> {
        if !self.open {
            return Ok(());
        }
        self.open = false;
        let logout = self.store.logout();
        self.ledger.close_key_session(self.id)?;
        tracing::info!(token = %self.store.token().label, session = self.id.0, "key-injection session closed");
        logout.map_err(KeySessionError::from)
    }
}

impl Drop for KeyInjectionSession<'_> {
    /// A session left open by an error path is still closed and logged out.
    fn drop(&mut self) {
        if let Err(e) = self.finish() {
            tracing::warn!(error = %e, "closing the key-injection session failed");
        }
    }
}

/// The certificate stored on the token for the key `key` names (same label, or same id).
pub fn certificate_for_key(
    store: &dyn KeyStore,
    key: &Pkcs11Uri,
) -> Result<Vec<u8>, KeyStoreError> {
    let wanted = Pkcs11Uri {
        object_type: None,
        module_path: None,
        module_name: None,
        ..key.clone()
    };
    let matches: Vec<_> = store
        .certificates()?
        .into_iter()
        .filter(|c| {
            wanted.object.as_deref().is_none_or(|l| l == c.label)
                && wanted.id.as_deref().is_none_or(|i| i == c.id)
        })
        .collect();
    match matches.len() {
        1 => Ok(matches
            .into_iter()
            .next()
            .map(|c| c.der)
            .unwrap_or_default()),
        0 => Err(KeyStoreError::KeyNotFound {
            uri: wanted.with_type(ObjectType::Cert).to_string(),
            token: store.token().label.clone(),
        }),
        n => Err(KeyStoreError::KeyAmbiguous {
            uri: wanted.with_type(ObjectType::Cert).to_string(),
            token: store.token().label.clone(),
            count: n,
        }),
    }
}

/// A key's default `CKA_ID`: the first 8 bytes of SHA-256 of its label (stable, distinct), for
/// callers that name keys by label only (the CLI without `--id`, the officer's screen).
pub fn default_key_id(label: &str) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(label.as_bytes())[..8].to_vec()
}

/// The chain stored on the token as PEM, intermediate first, then root (what DPS and devices
/// are given), from the certificates labelled `intermediate_label` and `root_label`.
pub fn chain_pem(
    store: &dyn KeyStore,
    root_label: &str,
    intermediate_label: &str,
) -> Result<String, KeyStoreError> {
    let label = store.token().label.clone();
    let mut text = String::new();
    for name in [intermediate_label, root_label] {
        let uri = Pkcs11Uri {
            token: Some(label.clone()),
            object: Some(name.to_owned()),
            ..Pkcs11Uri::default()
        };
        let der = certificate_for_key(store, &uri)?;
        text.push_str(&pem::encode(pem::label::CERTIFICATE, &der));
    }
    Ok(text)
}
