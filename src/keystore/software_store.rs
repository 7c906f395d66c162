//! A [`KeyStore`] in a directory of files, for development and the demo: the same interface as an
//! HSM, so everything above runs unchanged, but the keys are files on disk. It is only ever used
//! when asked for by name (`--software-dir`), and every command that uses it says so.
//!
//! Layout, one set of files per key label (labels are restricted to `[A-Za-z0-9._-]`):
//! `<label>.key.pem` (P-256 PKCS#8, 0600), `<label>.secret` (group key, base64, 0600),
//! `<label>.cert.der`, and `<label>.id` (the key's id in hex, which PKCS#11 URIs carry).

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use p256::pkcs8::{EncodePrivateKey, LineEnding};
use sha2::Sha256;

use super::software::{NOT_IN_HSM_NOTICE, SoftwareCaKey};
use super::{
    KeyInfo, KeyKind, KeyStore, KeyStoreError, ObjectType, Pkcs11Uri, StoredCertificate,
    TokenDescription,
};
use crate::identity::signer::CaSigner;
use crate::secret::SecretBytes;

/// The token label software keys carry in their URIs.
pub const SOFTWARE_TOKEN_LABEL: &str = "software";

const KEY_EXT: &str = ".key.pem";
const SECRET_EXT: &str = ".secret";
const CERT_EXT: &str = ".cert.der";
const ID_EXT: &str = ".id";

/// Keys in a directory. Not an HSM: see [`NOT_IN_HSM_NOTICE`].
#[derive(Debug)]
pub struct SoftwareKeyStore {
    dir: PathBuf,
    token: TokenDescription,
}

impl SoftwareKeyStore {
    /// Opens (creating, mode 0700) the key directory and logs the not-in-an-HSM warning.
    pub fn open(dir: &Path) -> Result<Arc<SoftwareKeyStore>, KeyStoreError> {
        if !dir.is_dir() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| software(dir, format!("cannot create the key directory: {e}")))?;
        }
        tracing::info!(dir = %dir.display(), "{NOT_IN_HSM_NOTICE}");
        Ok(Arc::new(SoftwareKeyStore {
            dir: dir.to_owned(),
            token: TokenDescription {
                label: SOFTWARE_TOKEN_LABEL.to_owned(),
                serial: dir.display().to_string(),
                model: "software key store".to_owned(),
                manufacturer: "dps-station".to_owned(),
                hardware: false,
            },
        }))
    }

    /// The directory holding the keys.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, label: &str, ext: &str) -> PathBuf {
        self.dir.join(format!("{label}{ext}"))
    }

    fn check_label(&self, label: &str, id: &[u8]) -> Result<(), KeyStoreError> {
        let ok = !label.is_empty()
            && label.len() <= 64
            && !label.starts_with('.')
            && label
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !ok {
            return Err(KeyStoreError::Invalid(format!(
                "software key label \"{label}\" must be 1-64 characters of A-Z a-z 0-9 . _ - (it becomes a file name)"
            )));
        }
        if id.is_empty() {
            return Err(KeyStoreError::Invalid(format!(
                "software key \"{label}\" needs a non-empty id"
            )));
        }
        let taken_label = [KEY_EXT, SECRET_EXT]
            .iter()
            .any(|ext| self.path(label, ext).exists());
        let taken_id = self
            .labels()?
            .iter()
            .any(|l| self.id_of(l).as_deref() == Some(id));
        if taken_label || taken_id {
            return Err(KeyStoreError::AlreadyExists {
                token: self.token.label.clone(),
                label: label.to_owned(),
                id: hex::encode(id),
            });
        }
        Ok(())
    }

    /// Writes a new file (never overwriting), 0600 when it holds a secret.
    fn write_new(&self, path: &Path, bytes: &[u8], secret: bool) -> Result<(), KeyStoreError> {
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        if secret {
            options.mode(0o600);
        }
        let mut file = options
            .open(path)
            .map_err(|e| software(path, format!("cannot create: {e}")))?;
        file.write_all(bytes)
            .and_then(|()| file.sync_all())
            .map_err(|e| software(path, format!("cannot write: {e}")))
    }

    /// Every label with a key or certificate file.
    fn labels(&self) -> Result<Vec<String>, KeyStoreError> {
        let entries = std::fs::read_dir(&self.dir)
            .map_err(|e| software(&self.dir, format!("cannot list: {e}")))?;
        let mut labels: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter_map(|name| {
                [KEY_EXT, SECRET_EXT, CERT_EXT]
                    .iter()
                    .find_map(|ext| name.strip_suffix(ext).map(str::to_owned))
            })
            .collect();
        labels.sort();
        labels.dedup();
        Ok(labels)
    }

    fn id_of(&self, label: &str) -> Option<Vec<u8>> {
        std::fs::read_to_string(self.path(label, ID_EXT))
            .ok()
            .and_then(|t| hex::decode(t.trim()).ok())
    }

    fn uri(&self, label: &str, id: &[u8], t: ObjectType) -> Pkcs11Uri {
        Pkcs11Uri::for_object(&self.token.label, label, id, t)
    }

    /// Every object, as PKCS#11 would show them (a key pair is a private and a public object).
    fn objects(&self) -> Result<Vec<KeyInfo>, KeyStoreError> {
        let mut out = Vec::new();
        for label in self.labels()? {
            let id = self.id_of(&label).unwrap_or_default();
            let mut add = |kind: KeyKind, t: ObjectType, secret: bool| {
                out.push(KeyInfo {
                    uri: self.uri(&label, &id, t),
                    label: label.clone(),
                    id: id.clone(),
                    kind,
                    // Files are readable by whoever owns them: the very thing an HSM prevents.
                    sensitive: secret.then_some(false),
                    extractable: secret.then_some(true),
                    never_extractable: secret.then_some(false),
                });
            };
            if self.path(&label, KEY_EXT).exists() {
                add(KeyKind::EcPrivate, ObjectType::Private, true);
                add(KeyKind::EcPublic, ObjectType::Public, false);
            }
            if self.path(&label, SECRET_EXT).exists() {
                add(KeyKind::GenericSecret, ObjectType::SecretKey, true);
            }
            if self.path(&label, CERT_EXT).exists() {
                add(KeyKind::Certificate, ObjectType::Cert, false);
            }
        }
        Ok(out)
    }

    fn load_ca_key(&self, uri: &Pkcs11Uri) -> Result<SoftwareCaKey, KeyStoreError> {
        let info = self.find_typed(uri, ObjectType::Private)?;
        if info.kind != KeyKind::EcPrivate {
            return Err(self.wrong_type(uri, &info.kind, "an EC private key", "ECDSA signing"));
        }
        let path = self.path(&info.label, KEY_EXT);
        SoftwareCaKey::load(&path).map_err(|e| software(&path, e.to_string()))
    }

    fn find_typed(
        &self,
        uri: &Pkcs11Uri,
        default_type: ObjectType,
    ) -> Result<KeyInfo, KeyStoreError> {
        if uri.object_type.is_some() {
            self.find(uri)
        } else {
            self.find(&uri.with_type(default_type))
        }
    }

    fn wrong_type(
        &self,
        uri: &Pkcs11Uri,
        found: &KeyKind,
        expected: &str,
        operation: &str,
    ) -> KeyStoreError {
        KeyStoreError::WrongKeyType {
            uri: uri.to_string(),
            token: self.token.label.clone(),
            found: format!("{found:?}"),
            expected: expected.to_owned(),
            operation: operation.to_owned(),
        }
    }
}

fn software(path: &Path, reason: String) -> KeyStoreError {
    KeyStoreError::Software {
        path: path.to_owned(),
        reason,
    }
}

impl KeyStore for SoftwareKeyStore {
    fn token(&self) -> &TokenDescription {
        &self.token
    }

    fn generate_ec_p256(&self, label: &str, id: &[u8]) -> Result<Pkcs11Uri, KeyStoreError> {
        self.check_label(label, id)?;
        let path = self.path(label, KEY_EXT);
        SoftwareCaKey::generate(&path).map_err(|e| software(&path, e.to_string()))?;
        self.write_new(&self.path(label, ID_EXT), hex::encode(id).as_bytes(), false)?;
        Ok(self.uri(label, id, ObjectType::Private))
    }

    fn generate_secret(
        &self,
        label: &str,
        id: &[u8],
        len: usize,
    ) -> Result<Pkcs11Uri, KeyStoreError> {
        if !(16..=128).contains(&len) {
            return Err(KeyStoreError::Invalid(format!(
                "a group key must be 16 to 128 bytes long, not {len}"
            )));
        }
        let mut bytes = vec![0u8; len];
        rand::fill(&mut bytes[..]);
        self.import_secret(label, id, &SecretBytes::new(bytes))
    }

    fn import_ec_p256(
        &self,
        label: &str,
        id: &[u8],
        scalar: &SecretBytes,
    ) -> Result<Pkcs11Uri, KeyStoreError> {
        self.check_label(label, id)?;
        let key = p256::SecretKey::from_slice(scalar.expose()).map_err(|_| {
            KeyStoreError::Invalid("the key to import is not a valid P-256 private key".to_owned())
        })?;
        let pem_text = key.to_pkcs8_pem(LineEnding::LF).map_err(|_| {
            KeyStoreError::Invalid("the key cannot be encoded as PKCS#8".to_owned())
        })?;
        self.write_new(&self.path(label, KEY_EXT), pem_text.as_bytes(), true)?;
        self.write_new(&self.path(label, ID_EXT), hex::encode(id).as_bytes(), false)?;
        Ok(self.uri(label, id, ObjectType::Private))
    }

    fn import_secret(
        &self,
        label: &str,
        id: &[u8],
        value: &SecretBytes,
    ) -> Result<Pkcs11Uri, KeyStoreError> {
        self.check_label(label, id)?;
        if !(16..=128).contains(&value.expose().len()) {
            return Err(KeyStoreError::Invalid(format!(
                "a group key must be 16 to 128 bytes long, not {}",
                value.expose().len()
            )));
        }
        let encoded = zeroize::Zeroizing::new(STANDARD.encode(value.expose()));
        self.write_new(&self.path(label, SECRET_EXT), encoded.as_bytes(), true)?;
        self.write_new(&self.path(label, ID_EXT), hex::encode(id).as_bytes(), false)?;
        Ok(self.uri(label, id, ObjectType::SecretKey))
    }

    fn find(&self, uri: &Pkcs11Uri) -> Result<KeyInfo, KeyStoreError> {
        if let Some(t) = &uri.token
            && t != SOFTWARE_TOKEN_LABEL
        {
            return Err(KeyStoreError::WrongToken {
                uri: uri.to_string(),
                wanted: t.clone(),
                token: self.token.label.clone(),
            });
        }
        if uri.object.is_none() && uri.id.is_none() {
            return Err(KeyStoreError::Invalid(format!(
                "key URI {uri} names no object: add `object=<label>` and/or `id=`"
            )));
        }
        let mut matches: Vec<KeyInfo> = self
            .objects()?
            .into_iter()
            .filter(|o| {
                uri.object.as_deref().is_none_or(|l| l == o.label)
                    && uri.id.as_deref().is_none_or(|i| i == o.id)
                    && uri.object_type.is_none_or(|t| Some(t) == o.uri.object_type)
            })
            .collect();
        match matches.len() {
            1 => Ok(matches.remove(0)),
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

    fn list(&self) -> Result<Vec<KeyInfo>, KeyStoreError> {
        self.objects()
    }

    fn public_key_sec1(&self, uri: &Pkcs11Uri) -> Result<Vec<u8>, KeyStoreError> {
        Ok(self
            .load_ca_key(&uri.with_type(ObjectType::Private))?
            .public_key_sec1()
            .to_vec())
    }

    fn sign_p256_sha256(&self, uri: &Pkcs11Uri, message: &[u8]) -> Result<Vec<u8>, KeyStoreError> {
        let key = self.load_ca_key(uri)?;
        key.sign_p256_sha256(message)
            .map_err(|e| software(&self.dir, e.to_string()))
    }

    fn hmac_sha256(&self, uri: &Pkcs11Uri, message: &[u8]) -> Result<SecretBytes, KeyStoreError> {
        let info = self.find_typed(uri, ObjectType::SecretKey)?;
        if info.kind != KeyKind::GenericSecret {
            return Err(self.wrong_type(uri, &info.kind, "a group key", "HMAC-SHA256"));
        }
        let path = self.path(&info.label, SECRET_EXT);
        let text = zeroize::Zeroizing::new(
            std::fs::read_to_string(&path)
                .map_err(|e| software(&path, format!("cannot read: {e}")))?,
        );
        let key = SecretBytes::new(
            STANDARD
                .decode(text.trim())
                .map_err(|_| software(&path, "is not base64".to_owned()))?,
        );
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key.expose())
            .map_err(|_| software(&path, "holds an empty key".to_owned()))?;
        mac.update(message);
        Ok(SecretBytes::new(mac.finalize().into_bytes().to_vec()))
    }

    fn signer(&self, uri: &Pkcs11Uri) -> Result<Arc<dyn CaSigner>, KeyStoreError> {
        Ok(Arc::new(self.load_ca_key(uri)?))
    }

    fn store_certificate(
        &self,
        label: &str,
        id: &[u8],
        der: &[u8],
    ) -> Result<Pkcs11Uri, KeyStoreError> {
        let path = self.path(label, CERT_EXT);
        if self.path(label, ID_EXT).exists() {
            if self.id_of(label).as_deref() != Some(id) {
                return Err(KeyStoreError::Invalid(format!(
                    "certificate \"{label}\" must carry the id of its key ({})",
                    self.id_of(label).map(hex::encode).unwrap_or_default()
                )));
            }
        } else {
            self.check_label(label, id)?;
            self.write_new(&self.path(label, ID_EXT), hex::encode(id).as_bytes(), false)?;
        }
        if x509_parser::parse_x509_certificate(der).is_err() {
            return Err(KeyStoreError::Invalid(format!(
                "certificate \"{label}\" is not valid DER X.509"
            )));
        }
        self.write_new(&path, der, false)?;
        Ok(self.uri(label, id, ObjectType::Cert))
    }

    fn certificates(&self) -> Result<Vec<StoredCertificate>, KeyStoreError> {
        let mut out = Vec::new();
        for label in self.labels()? {
            let path = self.path(&label, CERT_EXT);
            if !path.exists() {
                continue;
            }
            let der =
                std::fs::read(&path).map_err(|e| software(&path, format!("cannot read: {e}")))?;
            let id = self.id_of(&label).unwrap_or_default();
            out.push(StoredCertificate {
                uri: self.uri(&label, &id, ObjectType::Cert),
                label,
                id,
                der,
            });
        }
        Ok(out)
    }

    fn logout(&self) -> Result<(), KeyStoreError> {
        Ok(())
    }
}
