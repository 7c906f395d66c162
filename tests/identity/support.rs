//! Helpers shared by the identity tests: a temp dir per test and `openssl` runs that fail loudly.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use dps_station::identity::signer::{CaSigner, SignerError};

/// A fresh temporary directory, removed when the test ends.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// Runs `openssl` with `args` in `dir` and returns its output, whatever the exit status.
pub fn openssl(dir: &Path, args: &[&str]) -> Output {
    Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl binary is installed (installer/deps.sh --test)")
}

/// Runs `openssl` and panics with its stderr unless it succeeds; returns stdout as text.
pub fn openssl_ok(dir: &Path, args: &[&str]) -> String {
    let out = openssl(dir, args);
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Writes `contents` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

/// An in-memory P-256 CA key: the `CaSigner` an HSM would be, without a file or a token.
pub struct MemoryCaKey {
    key: p256::ecdsa::SigningKey,
    public: Vec<u8>,
    name: String,
}

impl MemoryCaKey {
    pub fn new(name: &str) -> Self {
        use p256::elliptic_curve::Generate;
        let key = p256::ecdsa::SigningKey::generate_from_rng(&mut rand::rng());
        let public = key.verifying_key().to_sec1_point(false).as_bytes().to_vec();
        Self {
            key,
            public,
            name: format!("memory:{name}"),
        }
    }

    /// The key as PKCS#8 PEM, so openssl can use it too.
    pub fn pkcs8_pem(&self) -> String {
        use p256::pkcs8::EncodePrivateKey;
        self.key
            .to_pkcs8_pem(p256::pkcs8::LineEnding::LF)
            .unwrap()
            .to_string()
    }
}

impl CaSigner for MemoryCaKey {
    fn public_key_sec1(&self) -> &[u8] {
        &self.public
    }

    fn sign_p256_sha256(&self, message: &[u8]) -> Result<Vec<u8>, SignerError> {
        use p256::ecdsa::signature::Signer;
        let sig: p256::ecdsa::DerSignature = self.key.sign(message);
        Ok(sig.as_bytes().to_vec())
    }

    fn key_name(&self) -> String {
        self.name.clone()
    }
}

/// A key store that always fails, as a locked HSM token would.
pub struct FailingCaKey(pub MemoryCaKey);

impl CaSigner for FailingCaKey {
    fn public_key_sec1(&self) -> &[u8] {
        self.0.public_key_sec1()
    }

    fn sign_p256_sha256(&self, _message: &[u8]) -> Result<Vec<u8>, SignerError> {
        Err(SignerError {
            key: self.key_name(),
            source: "CKR_USER_NOT_LOGGED_IN".into(),
        })
    }

    fn key_name(&self) -> String {
        "pkcs11:token=line1;object=ca".into()
    }
}

/// Makes an openssl CSR with a fresh key of the given `-newkey` kind and options in `dir`;
/// returns the CSR's PEM bytes.
pub fn openssl_csr(dir: &Path, name: &str, newkey: &[&str], subject: &str) -> Vec<u8> {
    let key = format!("{name}.key");
    let csr = format!("{name}.csr");
    let mut args = vec![
        "req", "-new", "-nodes", "-keyout", &key, "-out", &csr, "-subj", subject,
    ];
    args.extend_from_slice(newkey);
    openssl_ok(dir, &args);
    std::fs::read(dir.join(&csr)).unwrap()
}

/// `-newkey` arguments for a P-256 key.
pub const P256: &[&str] = &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"];
