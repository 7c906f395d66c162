//! The PKCS#11 key store: CA and group keys inside an HSM, reached through cryptoki.

mod module;
mod objects;
mod pool;
mod signer;
pub mod token;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cryptoki::mechanism::Mechanism;
use cryptoki::object::{
    Attribute, AttributeType, CertificateType, KeyType, ObjectClass, ObjectHandle,
};
use cryptoki::session::Session;
use sha2::Digest;

use self::pool::SessionPool;
pub use self::signer::Pkcs11Signer;
pub use self::token::TokenSelector;
use super::ecdsa::{P256_EC_PARAMS, ec_point_to_sec1, raw_to_der, sec1_to_ec_point};
use super::profile::HsmProfile;
use super::{
    KeyInfo, KeyKind, KeyStore, KeyStoreError, ObjectType, Pkcs11Uri, StoredCertificate,
    TokenDescription,
};
use crate::identity::signer::CaSigner;
use crate::secret::{SecretBytes, SecretString};

/// How to reach the token: which profile, which module (if not the profile's), which token.
#[derive(Debug, Clone)]
pub struct Pkcs11Config {
    /// The HSM family's profile (mechanisms, session limits, keep-alive).
    pub profile: HsmProfile,
    /// An explicit module path, overriding the profile's list.
    pub module: Option<PathBuf>,
    /// Which token.
    pub token: TokenSelector,
    /// How many sessions to pool; `None` = the profile's limit.
    pub sessions: Option<usize>,
}

/// The process-wide initialised cryptoki context for `module` (loading it on first use), for code
/// that needs a PKCS#11 call the key store does not offer (initialising a token in a test or a
/// setup tool). It must never be finalised: other users in the process share it.
pub fn shared_context(module: &Path) -> Result<cryptoki::context::Pkcs11, KeyStoreError> {
    module::module(module)
}

/// A token as `hsm list` shows it before logging in.
#[derive(Debug, Clone)]
pub struct TokenSummary {
    /// Label, trimmed.
    pub label: String,
    /// Serial number.
    pub serial: String,
    /// Model.
    pub model: String,
    /// Manufacturer.
    pub manufacturer: String,
    /// Whether the user PIN is locked.
    pub user_pin_locked: bool,
    /// `CKF_USER_PIN_COUNT_LOW`: a wrong user PIN was entered since the last good login.
    pub user_pin_count_low: bool,
    /// `CKF_USER_PIN_FINAL_TRY`: one more wrong user PIN locks the token.
    pub user_pin_final_try: bool,
    /// Free public and private memory in bytes, where the module tells.
    pub free_memory: Option<(usize, usize)>,
}

impl TokenSummary {
    /// What the token reports about wrong PINs, for an officer about to type (or who just typed
    /// a wrong) PIN: `None` when it reports nothing (many tokens do not count in their flags).
    pub fn pin_tries(&self) -> Option<PinTries> {
        if self.user_pin_locked {
            Some(PinTries::Locked)
        } else if self.user_pin_final_try {
            Some(PinTries::FinalTry)
        } else if self.user_pin_count_low {
            Some(PinTries::CountLow)
        } else {
            None
        }
    }
}

/// What a token's flags say about the tries left for its user PIN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinTries {
    /// Wrong PINs have been entered; fewer tries are left.
    CountLow,
    /// The next wrong PIN locks the token.
    FinalTry,
    /// Locked: no more tries.
    Locked,
}

/// Lists the tokens a profile's module shows (no login).
pub fn list_tokens(
    profile: &HsmProfile,
    module: Option<&Path>,
) -> Result<Vec<TokenSummary>, KeyStoreError> {
    let path = profile.resolve_module(module)?;
    let ctx = module::module(&path)?;
    Ok(token::list_tokens(&ctx, &path)?
        .into_iter()
        .map(|t| TokenSummary {
            label: token::trim_padded(t.label()).to_owned(),
            serial: token::trim_padded(t.serial_number()).to_owned(),
            model: token::trim_padded(t.model()).to_owned(),
            manufacturer: token::trim_padded(t.manufacturer_id()).to_owned(),
            user_pin_locked: t.user_pin_locked(),
            user_pin_count_low: t.user_pin_count_low(),
            user_pin_final_try: t.user_pin_final_try(),
            free_memory: t.free_public_memory().zip(t.free_private_memory()),
        })
        .collect())
}

/// A logged-in PKCS#11 token holding the station's keys.
pub struct Pkcs11KeyStore {
    pool: Arc<SessionPool>,
    profile: HsmProfile,
    module: PathBuf,
    token: TokenDescription,
}

impl std::fmt::Debug for Pkcs11KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11KeyStore")
            .field("module", &self.module)
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

impl Pkcs11KeyStore {
    /// Loads the module (once per process), finds the token, and logs in with `pin` exactly once.
    /// A wrong PIN is an error and is not retried; a locked PIN says so.
    pub fn open(
        config: &Pkcs11Config,
        pin: SecretString,
    ) -> Result<Arc<Pkcs11KeyStore>, KeyStoreError> {
        let path = config.profile.resolve_module(config.module.as_deref())?;
        let ctx = module::module(&path)?;
        let (slot, info) = token::find_token(&ctx, &path, &config.token)?;
        let label = token::trim_padded(info.label()).to_owned();
        if info.user_pin_locked() {
            // Don't even try: a locked PIN would only count another failure on some tokens.
            return Err(KeyStoreError::PinLocked { token: label });
        }
        let description = TokenDescription {
            label: label.clone(),
            serial: token::trim_padded(info.serial_number()).to_owned(),
            model: token::trim_padded(info.model()).to_owned(),
            manufacturer: token::trim_padded(info.manufacturer_id()).to_owned(),
            hardware: config.profile.hardware,
        };
        let max = config
            .sessions
            .unwrap_or(config.profile.sessions.max_sessions)
            .clamp(1, config.profile.sessions.max_sessions.max(1));
        let pool = SessionPool::open(
            ctx,
            path.clone(),
            config.token.clone(),
            label,
            slot,
            max,
            pin,
        )?;
        if config.profile.sessions.keep_alive_secs > 0 {
            pool.start_keep_alive(Duration::from_secs(config.profile.sessions.keep_alive_secs));
        }
        tracing::info!(token = %description.label, serial = %description.serial, module = %path.display(), sessions = max, "token opened");
        Ok(Arc::new(Pkcs11KeyStore {
            pool,
            profile: config.profile.clone(),
            module: path,
            token: description,
        }))
    }

    /// The module this store loaded.
    pub fn module_path(&self) -> &Path {
        &self.module
    }

    /// The profile in use.
    pub fn profile(&self) -> &HsmProfile {
        &self.profile
    }

    /// How many sessions the pool may open.
    pub fn max_sessions(&self) -> usize {
        self.pool.max_sessions()
    }

    /// How many sessions the pool holds open right now (leased or idle).
    pub fn open_sessions(&self) -> usize {
        self.pool.open_count()
    }

    /// One keep-alive round now (the background thread does this on the profile's interval).
    pub fn keep_alive(&self) {
        self.pool.touch_idle();
    }

    fn label(&self) -> &str {
        &self.token.label
    }

    fn check_token(&self, uri: &Pkcs11Uri) -> Result<(), KeyStoreError> {
        let mismatch = |wanted: &str| KeyStoreError::WrongToken {
            uri: uri.to_string(),
            wanted: wanted.to_owned(),
            token: self.token.label.clone(),
        };
        if let Some(t) = &uri.token
            && token::trim_padded(t) != self.token.label
        {
            return Err(mismatch(t));
        }
        if let Some(s) = &uri.serial
            && token::trim_padded(s) != self.token.serial
        {
            return Err(mismatch(&format!("serial {s}")));
        }
        Ok(())
    }

    /// The handle of the one object `uri` names (with `default_type` if the URI has no `type=`).
    pub(crate) fn find_handle(
        &self,
        uri: &Pkcs11Uri,
        default_type: Option<ObjectType>,
        operation: &str,
    ) -> Result<ObjectHandle, KeyStoreError> {
        self.check_token(uri)?;
        let mut template = Vec::new();
        if let Some(label) = &uri.object {
            template.push(Attribute::Label(label.as_bytes().to_vec()));
        }
        if let Some(id) = &uri.id {
            template.push(Attribute::Id(id.clone()));
        }
        if let Some(t) = uri.object_type.or(default_type) {
            template.push(Attribute::Class(objects::class_of(t)));
        }
        if uri.object.is_none() && uri.id.is_none() {
            return Err(KeyStoreError::Invalid(format!(
                "key URI {uri} names no object: add `object=<label>` and/or `id=` (for {operation})"
            )));
        }
        let handles = self
            .pool
            .run(&format!("finding {uri}"), |s| s.find_objects(&template))?;
        match handles.len() {
            1 => Ok(handles[0]),
            0 => Err(KeyStoreError::KeyNotFound {
                uri: uri.to_string(),
                token: self.token.label.clone(),
            }),
            n => Err(KeyStoreError::KeyAmbiguous {
                uri: uri.to_string(),
                token: self.token.label.clone(),
                count: n,
            }),
        }
    }

    /// Refuses a label or id already in use (keys are never overwritten or shadowed).
    fn ensure_free(&self, label: &str, id: &[u8]) -> Result<(), KeyStoreError> {
        if label.is_empty() || id.is_empty() {
            return Err(KeyStoreError::Invalid(format!(
                "a key on token \"{}\" needs a non-empty label and id",
                self.token.label
            )));
        }
        let by_label = [Attribute::Label(label.as_bytes().to_vec())];
        let by_id = [Attribute::Id(id.to_vec())];
        let taken = self.pool.run(&"checking for existing keys", |s| {
            Ok(!s.find_objects(&by_label)?.is_empty() || !s.find_objects(&by_id)?.is_empty())
        })?;
        if taken {
            return Err(KeyStoreError::AlreadyExists {
                token: self.token.label.clone(),
                label: label.to_owned(),
                id: hex::encode(id),
            });
        }
        Ok(())
    }

    fn require(&self, supported: bool, what: &str, advice: &str) -> Result<(), KeyStoreError> {
        if supported {
            return Ok(());
        }
        Err(KeyStoreError::Unsupported {
            token: self.token.label.clone(),
            profile: self.profile.name.clone(),
            what: what.to_owned(),
            advice: advice.to_owned(),
        })
    }

    fn object_info(
        &self,
        session: &Session,
        handle: ObjectHandle,
    ) -> cryptoki::error::Result<KeyInfo> {
        objects::read_info(session, handle, &self.token.label)
    }

    fn expect_kind(
        &self,
        uri: &Pkcs11Uri,
        handle: ObjectHandle,
        want: KeyKind,
        operation: &str,
    ) -> Result<(), KeyStoreError> {
        let info = self
            .pool
            .run(&format!("reading {uri}"), |s| self.object_info(s, handle))?;
        if info.kind != want {
            return Err(KeyStoreError::WrongKeyType {
                uri: uri.to_string(),
                token: self.token.label.clone(),
                found: objects::kind_name(&info.kind),
                expected: objects::kind_name(&want),
                operation: operation.to_owned(),
            });
        }
        Ok(())
    }

    /// One raw `CKM_ECDSA` signature of `digest` with the key `handle` (the token's own rate).
    pub(crate) fn sign_digest_with_handle(
        &self,
        key_name: &str,
        handle: ObjectHandle,
        digest: &[u8; 32],
    ) -> Result<Vec<u8>, KeyStoreError> {
        // `format_args!`: the message is only built if the call fails (this is the hot path).
        self.pool
            .run(&format_args!("signing with {key_name}"), |s| {
                s.sign(&Mechanism::Ecdsa, handle, digest)
            })
    }

    /// Signs `message` with the private key `handle`, honouring the profile's mechanism quirks.
    pub(crate) fn sign_with_handle(
        &self,
        key_name: &str,
        handle: ObjectHandle,
        message: &[u8],
    ) -> Result<Vec<u8>, KeyStoreError> {
        // `format_args!`: the message is only built if the call fails (this is the hot path).
        let raw = if self.profile.mechanisms.ecdsa_sha256 {
            self.pool
                .run(&format_args!("signing with {key_name}"), |s| {
                    s.sign(&Mechanism::EcdsaSha256, handle, message)
                })?
        } else {
            // The token lacks CKM_ECDSA_SHA256 (SoftHSM2): hash here, sign the digest with CKM_ECDSA.
            let digest = sha2::Sha256::digest(message);
            self.pool
                .run(&format_args!("signing with {key_name}"), |s| {
                    s.sign(&Mechanism::Ecdsa, handle, &digest)
                })?
        };
        raw_to_der(&raw).ok_or_else(|| KeyStoreError::Malformed {
            token: self.token.label.clone(),
            what: format!("ECDSA signature ({} bytes)", raw.len()),
            key: key_name.to_owned(),
        })
    }
}

impl KeyStore for Pkcs11KeyStore {
    fn token(&self) -> &TokenDescription {
        &self.token
    }

    fn generate_ec_p256(&self, label: &str, id: &[u8]) -> Result<Pkcs11Uri, KeyStoreError> {
        self.require(
            self.profile.mechanisms.ec_key_pair_gen,
            "P-256 key generation",
            "generate the key with the vendor's tool and name it by URI",
        )?;
        self.ensure_free(label, id)?;
        let public = objects::ec_public_template(label, id);
        let private = objects::ec_private_template(label, id);
        self.pool
            .run_once(&format!("generating P-256 key pair \"{label}\""), |s| {
                s.generate_key_pair(&Mechanism::EccKeyPairGen, &public, &private)
            })?;
        tracing::info!(token = %self.label(), label, id = %hex::encode(id), "P-256 key pair generated");
        Ok(Pkcs11Uri::for_object(
            self.label(),
            label,
            id,
            ObjectType::Private,
        ))
    }

    fn generate_secret(
        &self,
        label: &str,
        id: &[u8],
        len: usize,
    ) -> Result<Pkcs11Uri, KeyStoreError> {
        self.require(
            self.profile.mechanisms.generic_secret_key_gen && self.profile.mechanisms.sha256_hmac,
            "generic-secret keys for HMAC-SHA256",
            "use an HSM profile with HMAC support for symmetric enrollment groups",
        )?;
        if !(16..=128).contains(&len) {
            return Err(KeyStoreError::Invalid(format!(
                "a group key must be 16 to 128 bytes long, not {len} (DPS makes 64-byte keys)"
            )));
        }
        self.ensure_free(label, id)?;
        let mut template = objects::secret_template(label, id);
        template.push(Attribute::ValueLen(
            cryptoki::types::Ulong::try_from(len)
                .map_err(|_| KeyStoreError::Invalid(format!("key length {len} is out of range")))?,
        ));
        self.pool
            .run_once(&format!("generating group key \"{label}\""), |s| {
                s.generate_key(&Mechanism::GenericSecretKeyGen, &template)
            })?;
        tracing::info!(token = %self.label(), label, id = %hex::encode(id), "group key generated");
        Ok(Pkcs11Uri::for_object(
            self.label(),
            label,
            id,
            ObjectType::SecretKey,
        ))
    }

    fn import_ec_p256(
        &self,
        label: &str,
        id: &[u8],
        scalar: &SecretBytes,
    ) -> Result<Pkcs11Uri, KeyStoreError> {
        self.require(
            self.profile.mechanisms.import_private_keys,
            "importing plain private keys",
            "import the key with the vendor's tool (wrapped), then name it by URI",
        )?;
        let secret = p256::SecretKey::from_slice(scalar.expose()).map_err(|_| {
            KeyStoreError::Invalid("the key to import is not a valid P-256 private key".to_owned())
        })?;
        let sec1 = secret.public_key().to_sec1_bytes().to_vec();
        self.ensure_free(label, id)?;
        let mut private = objects::ec_private_template(label, id);
        private.push(Attribute::Class(ObjectClass::PRIVATE_KEY));
        private.push(Attribute::KeyType(KeyType::EC));
        private.push(Attribute::EcParams(P256_EC_PARAMS.to_vec()));
        private.push(Attribute::Value(scalar.expose().to_vec()));
        let mut public = objects::ec_public_template(label, id);
        public.push(Attribute::Class(ObjectClass::PUBLIC_KEY));
        public.push(Attribute::KeyType(KeyType::EC));
        public.push(Attribute::EcPoint(sec1_to_ec_point(&sec1)));
        let result = self
            .pool
            .run_once(&format!("importing P-256 key \"{label}\""), |s| {
                let private_handle = s.create_object(&private)?;
                if let Err(e) = s.create_object(&public) {
                    // Leave no half-imported key behind.
                    let _ = s.destroy_object(private_handle);
                    return Err(e);
                }
                Ok(())
            });
        // The template held the scalar: wipe our copy whatever happened.
        for attr in &mut private {
            if let Attribute::Value(v) = attr {
                zeroize::Zeroize::zeroize(v);
            }
        }
        result?;
        tracing::info!(token = %self.label(), label, id = %hex::encode(id), "P-256 key imported");
        Ok(Pkcs11Uri::for_object(
            self.label(),
            label,
            id,
            ObjectType::Private,
        ))
    }

    fn import_secret(
        &self,
        label: &str,
        id: &[u8],
        value: &SecretBytes,
    ) -> Result<Pkcs11Uri, KeyStoreError> {
        self.require(
            self.profile.mechanisms.import_private_keys && self.profile.mechanisms.sha256_hmac,
            "importing group keys for HMAC-SHA256",
            "use an HSM profile with HMAC support for symmetric enrollment groups",
        )?;
        if !(16..=128).contains(&value.expose().len()) {
            return Err(KeyStoreError::Invalid(format!(
                "a group key must be 16 to 128 bytes long, not {} (DPS makes 64-byte keys)",
                value.expose().len()
            )));
        }
        self.ensure_free(label, id)?;
        let mut template = objects::secret_template(label, id);
        template.push(Attribute::Class(ObjectClass::SECRET_KEY));
        template.push(Attribute::KeyType(KeyType::GENERIC_SECRET));
        template.push(Attribute::Value(value.expose().to_vec()));
        let result = self
            .pool
            .run_once(&format!("importing group key \"{label}\""), |s| {
                s.create_object(&template)
            });
        for attr in &mut template {
            if let Attribute::Value(v) = attr {
                zeroize::Zeroize::zeroize(v);
            }
        }
        result?;
        tracing::info!(token = %self.label(), label, id = %hex::encode(id), "group key imported");
        Ok(Pkcs11Uri::for_object(
            self.label(),
            label,
            id,
            ObjectType::SecretKey,
        ))
    }

    fn find(&self, uri: &Pkcs11Uri) -> Result<KeyInfo, KeyStoreError> {
        let handle = self.find_handle(uri, None, "finding a key")?;
        self.pool
            .run(&format!("reading {uri}"), |s| self.object_info(s, handle))
    }

    fn list(&self) -> Result<Vec<KeyInfo>, KeyStoreError> {
        self.pool.run(&"listing objects", |s| {
            let mut out = Vec::new();
            for class in [
                ObjectClass::PRIVATE_KEY,
                ObjectClass::PUBLIC_KEY,
                ObjectClass::SECRET_KEY,
                ObjectClass::CERTIFICATE,
            ] {
                for handle in s.find_objects(&[Attribute::Class(class)])? {
                    out.push(self.object_info(s, handle)?);
                }
            }
            Ok(out)
        })
    }

    fn public_key_sec1(&self, uri: &Pkcs11Uri) -> Result<Vec<u8>, KeyStoreError> {
        // The public half shares the private key's label and id.
        let public_uri = uri.with_type(ObjectType::Public);
        let handle = self.find_handle(&public_uri, None, "reading a public key")?;
        let attrs = self.pool.run(&format!("reading {public_uri}"), |s| {
            s.get_attributes(handle, &[AttributeType::EcPoint])
        })?;
        let point = attrs.into_iter().find_map(|a| match a {
            Attribute::EcPoint(p) => Some(p),
            _ => None,
        });
        point
            .as_deref()
            .and_then(ec_point_to_sec1)
            .ok_or_else(|| KeyStoreError::Malformed {
                token: self.token.label.clone(),
                what: "P-256 public key (CKA_EC_POINT)".to_owned(),
                key: public_uri.to_string(),
            })
    }

    fn sign_p256_sha256(&self, uri: &Pkcs11Uri, message: &[u8]) -> Result<Vec<u8>, KeyStoreError> {
        let handle = self.find_handle(uri, Some(ObjectType::Private), "signing")?;
        self.expect_kind(uri, handle, KeyKind::EcPrivate, "ECDSA signing")?;
        self.sign_with_handle(&uri.to_string(), handle, message)
    }

    fn hmac_sha256(&self, uri: &Pkcs11Uri, message: &[u8]) -> Result<SecretBytes, KeyStoreError> {
        self.require(
            self.profile.mechanisms.sha256_hmac,
            "HMAC-SHA256",
            "use an HSM profile with HMAC support for symmetric enrollment groups",
        )?;
        let handle = self.find_handle(uri, Some(ObjectType::SecretKey), "HMAC")?;
        self.expect_kind(uri, handle, KeyKind::GenericSecret, "HMAC-SHA256")?;
        let mac = self
            .pool
            .run(&format!("computing HMAC-SHA256 with {uri}"), |s| {
                s.sign(&Mechanism::Sha256Hmac, handle, message)
            })?;
        Ok(SecretBytes::new(mac))
    }

    fn signer(&self, uri: &Pkcs11Uri) -> Result<Arc<dyn CaSigner>, KeyStoreError> {
        Ok(Arc::new(self.p256_signer(uri)?))
    }

    fn store_certificate(
        &self,
        label: &str,
        id: &[u8],
        der: &[u8],
    ) -> Result<Pkcs11Uri, KeyStoreError> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|_| {
            KeyStoreError::Invalid(format!("certificate \"{label}\" is not valid DER X.509"))
        })?;
        let template = vec![
            Attribute::Class(ObjectClass::CERTIFICATE),
            Attribute::CertificateType(CertificateType::X_509),
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Id(id.to_vec()),
            Attribute::Subject(cert.subject().as_raw().to_vec()),
            Attribute::Issuer(cert.issuer().as_raw().to_vec()),
            Attribute::SerialNumber(cert.raw_serial().to_vec()),
            Attribute::Value(der.to_vec()),
        ];
        let cert_uri = Pkcs11Uri::for_object(self.label(), label, id, ObjectType::Cert);
        // One certificate per label/id: a re-run must not pile up copies.
        if self
            .find_handle(&cert_uri, None, "storing a certificate")
            .is_ok()
        {
            return Err(KeyStoreError::AlreadyExists {
                token: self.token.label.clone(),
                label: label.to_owned(),
                id: hex::encode(id),
            });
        }
        self.pool
            .run_once(&format!("storing certificate \"{label}\""), |s| {
                s.create_object(&template)
            })?;
        Ok(cert_uri)
    }

    fn certificates(&self) -> Result<Vec<StoredCertificate>, KeyStoreError> {
        self.pool.run(&"reading certificates", |s| {
            let mut out = Vec::new();
            for handle in s.find_objects(&[Attribute::Class(ObjectClass::CERTIFICATE)])? {
                let info = self.object_info(s, handle)?;
                let der = s
                    .get_attributes(handle, &[AttributeType::Value])?
                    .into_iter()
                    .find_map(|a| match a {
                        Attribute::Value(v) => Some(v),
                        _ => None,
                    })
                    .unwrap_or_default();
                out.push(StoredCertificate {
                    uri: info.uri,
                    label: info.label,
                    id: info.id,
                    der,
                });
            }
            Ok(out)
        })
    }

    fn logout(&self) -> Result<(), KeyStoreError> {
        self.pool.logout()
    }
}

impl Pkcs11KeyStore {
    /// A signer for the P-256 key `uri` names, holding its handle and public key so that each
    /// signature is one PKCS#11 call.
    pub fn p256_signer(
        self: &Pkcs11KeyStore,
        uri: &Pkcs11Uri,
    ) -> Result<Pkcs11Signer, KeyStoreError> {
        let private_uri = if uri.object_type.is_none() {
            uri.with_type(ObjectType::Private)
        } else {
            uri.clone()
        };
        let handle = self.find_handle(&private_uri, None, "signing")?;
        self.expect_kind(&private_uri, handle, KeyKind::EcPrivate, "a CA signer")?;
        let public = self.public_key_sec1(&private_uri)?;
        Ok(Pkcs11Signer::new(
            self.clone_handle(),
            private_uri,
            handle,
            public,
        ))
    }

    fn clone_handle(&self) -> Arc<Pkcs11KeyStore> {
        Arc::new(Pkcs11KeyStore {
            pool: self.pool.clone(),
            profile: self.profile.clone(),
            module: self.module.clone(),
            token: self.token.clone(),
        })
    }
}
