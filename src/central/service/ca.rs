//! The service's certificate authority, and the files `central init` writes into the service's
//! directory: the CA (stations' client certificates and the service's own certificates chain to
//! it), the receipt/lease signer certificate, and the TLS server certificate.
//!
//! Every replica of the service reads the same directory (copy it to each host): nothing in it
//! changes after `init`, so replicas never need to agree on anything but the database.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

use crate::central::signing::{ServiceSigner, SigningError};

/// The CA certificate (PEM). Stations pin its SHA-256 (DER) through the join token.
pub const CA_CERT: &str = "ca.pem";
/// The CA's private key (PKCS#8 PEM, 0600): issues stations' client certificates at join.
pub const CA_KEY: &str = "ca.key";
/// The certificate of the key that signs receipts and leases.
pub const SIGNER_CERT: &str = "signer.pem";
/// The receipt/lease signing key (PKCS#8 PEM, 0600).
pub const SIGNER_KEY: &str = "signer.key";
/// The HTTPS server certificate (PEM; its SANs are `init`'s `--dns`/`--ip`).
pub const SERVER_CERT: &str = "server.pem";
/// The HTTPS server key (PKCS#8 PEM, 0600).
pub const SERVER_KEY: &str = "server.key";

/// How long a station's client certificate is valid (a station re-joins to renew it).
pub const CLIENT_CERTIFICATE_DAYS: i64 = 365;

/// Why the service's certificates could not be made, read or used.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error(
        "{} already exists: `central init` never replaces the service's CA (every joined station trusts it); use another --dir",
        path.display()
    )]
    Exists { path: PathBuf },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "cannot read {}: {source}; run `dps-station central init --dir DIR` first, or give the right --dir",
        path.display()
    )]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not a usable {what} ({reason}): restore it from the service's backup", path.display())]
    Bad {
        path: PathBuf,
        what: &'static str,
        reason: String,
    },
    #[error("cannot make the {what} certificate: {reason}")]
    Make { what: &'static str, reason: String },
    #[error(transparent)]
    Signer(#[from] SigningError),
}

/// Why a station's certificate signing request was not accepted at join.
#[derive(Debug, thiserror::Error)]
pub enum CsrError {
    #[error(
        "the certificate signing request cannot be used ({reason}): make it with `dps-station central join` (a P-256 key, no extensions but SAN/key usage)"
    )]
    Unreadable { reason: String },
    #[error("cannot issue the client certificate: {reason}")]
    Issue { reason: String },
}

/// What `central init` made.
#[derive(Debug, Clone)]
pub struct InitReport {
    /// Hex SHA-256 of the CA certificate's DER (the join token's last part).
    pub ca_sha256: String,
    /// The files written.
    pub files: Vec<PathBuf>,
}

/// Makes the CA, the signer and the server certificate in `dir` (created if missing). Refuses if a
/// CA is already there. `dns`/`ips` are the server certificate's SANs (default `localhost` and
/// `127.0.0.1` when both are empty).
pub fn init(dir: &Path, dns: &[String], ips: &[IpAddr]) -> Result<InitReport, CaError> {
    for name in [CA_CERT, CA_KEY] {
        let path = dir.join(name);
        if path.exists() {
            return Err(CaError::Exists { path });
        }
    }
    let now = time::OffsetDateTime::now_utc();
    let make = |what: &'static str| {
        move |e: rcgen::Error| CaError::Make {
            what,
            reason: e.to_string(),
        }
    };

    let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(make("CA"))?;
    let mut ca_params = CertificateParams::default();
    ca_params.distinguished_name = name("dps-station central CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca_params.not_before = now - time::Duration::hours(1);
    ca_params.not_after = now + time::Duration::days(20 * 365);
    ca_params.serial_number = Some(random_serial());
    let ca_cert = ca_params.self_signed(&ca_key).map_err(make("CA"))?;
    let issuer = Issuer::new(ca_params, &ca_key);

    let signer_key =
        KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(make("signer"))?;
    let mut signer_params = CertificateParams::default();
    signer_params.distinguished_name = name("dps-station central receipt and lease signer");
    signer_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    signer_params.not_before = now - time::Duration::hours(1);
    signer_params.not_after = now + time::Duration::days(20 * 365);
    signer_params.serial_number = Some(random_serial());
    let signer_cert = signer_params
        .signed_by(&signer_key, &issuer)
        .map_err(make("signer"))?;

    let server_key =
        KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(make("server"))?;
    let mut sans: Vec<SanType> = Vec::new();
    for host in dns {
        let host = host.as_str().try_into().map_err(make("server"))?;
        sans.push(SanType::DnsName(host));
    }
    sans.extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
    if sans.is_empty() {
        sans.push(SanType::DnsName(
            "localhost".try_into().map_err(make("server"))?,
        ));
        sans.push(SanType::IpAddress(IpAddr::from([127, 0, 0, 1])));
    }
    let mut server_params = CertificateParams::default();
    server_params.distinguished_name = name("dps-station central service");
    server_params.subject_alt_names = sans;
    server_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    server_params.not_before = now - time::Duration::hours(1);
    server_params.not_after = now + time::Duration::days(5 * 365);
    server_params.serial_number = Some(random_serial());
    let server_cert = server_params
        .signed_by(&server_key, &issuer)
        .map_err(make("server"))?;

    std::fs::create_dir_all(dir).map_err(|source| CaError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let files = [
        (CA_KEY, ca_key.serialize_pem(), 0o600),
        (CA_CERT, ca_cert.pem(), 0o644),
        (SIGNER_KEY, signer_key.serialize_pem(), 0o600),
        (SIGNER_CERT, signer_cert.pem(), 0o644),
        (SERVER_KEY, server_key.serialize_pem(), 0o600),
        (SERVER_CERT, server_cert.pem(), 0o644),
    ];
    let mut written = Vec::new();
    for (file, text, mode) in files {
        let path = dir.join(file);
        write_new(&path, text.as_bytes(), mode)?;
        written.push(path);
    }
    Ok(InitReport {
        ca_sha256: hex::encode(Sha256::digest(ca_cert.der())),
        files: written,
    })
}

/// The service's certificates, loaded by `central serve` (and by `central token create` for the
/// CA's fingerprint). Holds the CA key in memory to issue stations' certificates; never printed.
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    ca_pem: String,
    ca_der: CertificateDer<'static>,
    ca_sha256: String,
    signer_pem: String,
    server_chain: Vec<CertificateDer<'static>>,
    server_key: PrivateKeyDer<'static>,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never a key.
        f.debug_struct("Authority")
            .field("ca_sha256", &self.ca_sha256)
            .finish_non_exhaustive()
    }
}

impl Authority {
    /// Reads everything `init` wrote in `dir`.
    pub fn load(dir: &Path) -> Result<Authority, CaError> {
        let ca_pem = read(&dir.join(CA_CERT))?;
        let ca_der = cert_der(&dir.join(CA_CERT), &ca_pem)?;
        let ca_key_pem = read(&dir.join(CA_KEY))?;
        let ca_key = KeyPair::from_pem(&ca_key_pem).map_err(|e| CaError::Bad {
            path: dir.join(CA_KEY),
            what: "CA key",
            reason: e.to_string(),
        })?;
        let issuer = Issuer::from_ca_cert_der(&ca_der, ca_key).map_err(|e| CaError::Bad {
            path: dir.join(CA_CERT),
            what: "CA certificate",
            reason: e.to_string(),
        })?;
        let signer_pem = read(&dir.join(SIGNER_CERT))?;
        cert_der(&dir.join(SIGNER_CERT), &signer_pem)?;
        let server_pem = read(&dir.join(SERVER_CERT))?;
        let server_der = cert_der(&dir.join(SERVER_CERT), &server_pem)?;
        let server_key_pem = read(&dir.join(SERVER_KEY))?;
        let server_key =
            PrivateKeyDer::from_pem_slice(server_key_pem.as_bytes()).map_err(|e| CaError::Bad {
                path: dir.join(SERVER_KEY),
                what: "server key",
                reason: e.to_string(),
            })?;
        Ok(Authority {
            issuer,
            ca_sha256: hex::encode(Sha256::digest(&ca_der)),
            server_chain: vec![server_der, ca_der.clone()],
            ca_pem,
            ca_der,
            signer_pem,
            server_key,
        })
    }

    /// Hex SHA-256 of the CA certificate's DER: what the join token pins.
    pub fn ca_sha256(&self) -> &str {
        &self.ca_sha256
    }

    /// The CA certificate, PEM (stations trust the service through it).
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The CA certificate, DER (the root of the client-certificate check).
    pub fn ca_der(&self) -> &CertificateDer<'static> {
        &self.ca_der
    }

    /// The signer certificate, PEM (sent to stations at join).
    pub fn signer_pem(&self) -> &str {
        &self.signer_pem
    }

    /// The TLS chain the server presents: [server, CA], so a joining station finds the CA in it.
    pub fn server_chain(&self) -> &[CertificateDer<'static>] {
        &self.server_chain
    }

    /// The TLS server key.
    pub fn server_key(&self) -> PrivateKeyDer<'static> {
        self.server_key.clone_key()
    }

    /// Issues a station's client certificate for the key in `csr_pem`: CN forced to `station_id`
    /// (whatever the request asked), clientAuth only, [`CLIENT_CERTIFICATE_DAYS`] days. Returns PEM.
    pub fn issue_client(&self, station_id: &str, csr_pem: &str) -> Result<String, CsrError> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem).map_err(|e| {
            CsrError::Unreadable {
                reason: e.to_string(),
            }
        })?;
        let now = time::OffsetDateTime::now_utc();
        let mut params = CertificateParams::default();
        params.distinguished_name = name(station_id);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.not_before = now - time::Duration::minutes(10);
        params.not_after = now + time::Duration::days(CLIENT_CERTIFICATE_DAYS);
        params.serial_number = Some(random_serial());
        let cert = params
            .signed_by(&csr.public_key, &self.issuer)
            .map_err(|e| CsrError::Issue {
                reason: e.to_string(),
            })?;
        Ok(cert.pem())
    }
}

/// Hex SHA-256 of the CA certificate's DER in `dir` (what a join token pins), from `ca.pem` alone:
/// making a token needs no access to the CA key.
pub fn ca_fingerprint(dir: &Path) -> Result<String, CaError> {
    let path = dir.join(CA_CERT);
    let pem = read(&path)?;
    let der = cert_der(&path, &pem)?;
    Ok(hex::encode(Sha256::digest(&der)))
}

/// The service's receipt/lease signer, from `dir`.
pub fn load_signer(dir: &Path) -> Result<ServiceSigner, CaError> {
    let cert_pem = read(&dir.join(SIGNER_CERT))?;
    let der = cert_der(&dir.join(SIGNER_CERT), &cert_pem)?;
    let key_pem = read(&dir.join(SIGNER_KEY))?;
    Ok(ServiceSigner::from_pkcs8_pem(&key_pem, &der)?)
}

/// The station id a client certificate names (its CN), if it has one.
pub fn certificate_cn(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_string)
}

fn name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    // Positive and never zero-led into a shorter encoding.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    SerialNumber::from_slice(&bytes)
}

fn read(path: &Path) -> Result<String, CaError> {
    std::fs::read_to_string(path).map_err(|source| CaError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn cert_der(path: &Path, pem: &str) -> Result<CertificateDer<'static>, CaError> {
    CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|e| CaError::Bad {
        path: path.to_path_buf(),
        what: "certificate",
        reason: e.to_string(),
    })
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CaError> {
    let fail = |source| CaError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                CaError::Exists {
                    path: path.to_path_buf(),
                }
            } else {
                fail(e)
            }
        })?;
    file.write_all(bytes).map_err(fail)?;
    file.sync_all().map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn init_writes_private_keys_0600_refuses_a_second_time_and_issues_client_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let report = init(dir.path(), &[], &[]).unwrap();
        for key in [CA_KEY, SIGNER_KEY, SERVER_KEY] {
            let mode = std::fs::metadata(dir.path().join(key))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{key}");
        }
        assert!(matches!(
            init(dir.path(), &[], &[]),
            Err(CaError::Exists { .. })
        ));

        let authority = Authority::load(dir.path()).unwrap();
        assert_eq!(authority.ca_sha256(), report.ca_sha256);
        assert_eq!(ca_fingerprint(dir.path()).unwrap(), report.ca_sha256);
        assert_eq!(authority.server_chain().len(), 2);
        load_signer(dir.path()).unwrap();

        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut asked = CertificateParams::default();
        asked.distinguished_name = name("someone-else");
        let csr = asked.serialize_request(&key).unwrap().pem().unwrap();
        let pem = authority.issue_client("st-7", &csr).unwrap();
        let der = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        assert_eq!(certificate_cn(&der).as_deref(), Some("st-7"));

        assert!(matches!(
            authority.issue_client("st-7", "not a csr"),
            Err(CsrError::Unreadable { .. })
        ));
        // The debug form never shows a key.
        assert!(!format!("{authority:?}").contains("PRIVATE"));
    }
}
