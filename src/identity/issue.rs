//! Issuing certificates through a [`CaSigner`]: device leaves (from a CSR or a public key), root and
//! intermediate CAs, and the DPS proof-of-possession ("verification") certificate.
//!
//! What goes into a certificate is decided here and in [`super::profile`], never by rcgen's defaults
//! or by the CSR. Device leaves get: CN = registration ID, basicConstraints CA:FALSE, keyUsage
//! digitalSignature (critical), extendedKeyUsage clientAuth, a random positive 16-byte serial,
//! subject and authority key identifiers, and the batch's validity.

use rand::Rng as _;
use rcgen::string::PrintableString;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, DnValue,
    ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
    PublicKeyData, SerialNumber, SignatureAlgorithm,
};
use time::OffsetDateTime;
use x509_parser::prelude::X509Certificate;

use super::cert_info::{self, CertInfoError, X509CertificateInfo};
use super::csr::{self, CsrError};
use super::pem;
use super::profile::{CaProfile, CaSubject, DeviceProfile, Validity};
use super::rcgen_signer::RcgenSigner;
use super::registration_id::{IdUse, RegistrationId, RegistrationIdError};
use super::signer::{CaSigner, SignerError};

/// Why a certificate was not issued.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// The device's CSR was refused.
    #[error(transparent)]
    Csr(#[from] CsrError),
    /// The key store failed to sign.
    #[error(transparent)]
    Signer(#[from] SignerError),
    /// The registration ID cannot be the certificate's CN.
    #[error(transparent)]
    RegistrationId(#[from] RegistrationIdError),
    /// The CA certificate given as issuer is unusable.
    #[error("the issuer certificate cannot sign: {0}")]
    IssuerCertificate(String),
    /// The CA certificate does not belong to the CA key.
    #[error(
        "the issuer certificate's public key is not the public key of CA key {key}: the certificate and the key do not belong together; give the certificate made for this key"
    )]
    KeyMismatch {
        /// The key's name.
        key: String,
    },
    /// The public key to certify is not an uncompressed P-256 point.
    #[error("the public key to certify is not an uncompressed P-256 point ({0} bytes)")]
    BadPublicKey(usize),
    /// The certificate would outlive its issuer.
    #[error(
        "the certificate would be valid until {not_after} but its issuer expires {issuer_not_after}; shorten the validity or renew the CA"
    )]
    OutlivesIssuer {
        /// Requested end.
        not_after: OffsetDateTime,
        /// The issuer's end.
        issuer_not_after: OffsetDateTime,
    },
    /// A subject attribute rcgen cannot encode (e.g. a country that is not two printable letters).
    #[error("invalid subject: {0}")]
    Subject(String),
    /// The DPS verification code cannot be a CN.
    #[error(
        "the verification code {code:?} is not what DPS issues (1 to 64 letters and digits); copy it again from the portal or the API"
    )]
    VerificationCode {
        /// The code as given.
        code: String,
    },
    /// rcgen refused to encode the certificate.
    #[error("encoding the certificate failed: {0}")]
    Encode(String),
}

/// A certificate just issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCertificate {
    /// The certificate, DER.
    pub der: Vec<u8>,
    /// Its facts as DPS will report them (thumbprints, serial, validity) for the ledger.
    pub info: X509CertificateInfo,
}

impl IssuedCertificate {
    pub(crate) fn from_der(der: Vec<u8>) -> Result<Self, IssueError> {
        let info = X509CertificateInfo::from_der(&der)
            .map_err(|err| IssueError::Encode(err.to_string()))?;
        Ok(Self { der, info })
    }

    /// The certificate as PEM.
    pub fn pem(&self) -> String {
        pem::encode(pem::label::CERTIFICATE, &self.der)
    }
}

/// A CA that can issue: its certificate and the key that signs for it, checked to belong together.
pub struct Issuer<'a> {
    cert_der: Vec<u8>,
    signer: &'a dyn CaSigner,
    subject: DistinguishedName,
    key_id: Vec<u8>,
    not_after: OffsetDateTime,
    /// basicConstraints pathLenConstraint; `None` when unconstrained.
    path_len: Option<u32>,
}

impl std::fmt::Debug for Issuer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer")
            .field("key", &self.signer.key_name())
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl<'a> Issuer<'a> {
    /// Checks that `cert_der` is a CA certificate allowed to sign certificates and that its public
    /// key is `signer`'s, once, so each issuance does not re-parse it.
    pub fn new(cert_der: Vec<u8>, signer: &'a dyn CaSigner) -> Result<Self, IssueError> {
        let cert = cert_info::parse_certificate(&cert_der)
            .map_err(|err| IssueError::IssuerCertificate(err.to_string()))?;
        if cert.public_key().subject_public_key.data.as_ref() != signer.public_key_sec1() {
            return Err(IssueError::KeyMismatch {
                key: signer.key_name(),
            });
        }
        let constraints = cert
            .basic_constraints()
            .map_err(|err| IssueError::IssuerCertificate(err.to_string()))?
            .filter(|bc| bc.value.ca);
        let Some(constraints) = constraints else {
            return Err(IssueError::IssuerCertificate(
                "it is not a CA certificate (basicConstraints CA:TRUE is missing)".into(),
            ));
        };
        let path_len = constraints.value.path_len_constraint;
        let may_sign = cert
            .key_usage()
            .map_err(|err| IssueError::IssuerCertificate(err.to_string()))?
            .is_none_or(|ku| ku.value.key_cert_sign());
        if !may_sign {
            return Err(IssueError::IssuerCertificate(
                "its key usage does not include keyCertSign".into(),
            ));
        }
        let subject = distinguished_name(&cert)?;
        let key_id = cert
            .iter_extensions()
            .find_map(|ext| match ext.parsed_extension() {
                x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(id) => {
                    Some(id.0.to_vec())
                }
                _ => None,
            })
            .unwrap_or_else(|| key_identifier(signer.public_key_sec1()));
        let not_after = cert.validity().not_after.to_datetime();
        Ok(Self {
            cert_der,
            signer,
            subject,
            key_id,
            not_after,
            path_len,
        })
    }

    /// The CA certificate, DER (the next link of the chain written to devices).
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The signing key's name, for the ledger and audit log.
    pub fn key_name(&self) -> String {
        self.signer.key_name()
    }

    /// The end of the CA's validity.
    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }

    fn sign(
        &self,
        params: &CertificateParams,
        subject_key: &impl PublicKeyData,
    ) -> Result<Vec<u8>, IssueError> {
        if params.not_after > self.not_after {
            return Err(IssueError::OutlivesIssuer {
                not_after: params.not_after,
                issuer_not_after: self.not_after,
            });
        }
        let mut issuer_params = CertificateParams::default();
        issuer_params.distinguished_name = self.subject.clone();
        issuer_params.key_identifier_method = KeyIdMethod::PreSpecified(self.key_id.clone());
        let key = RcgenSigner::new(self.signer);
        let issuer = rcgen::Issuer::new(issuer_params, &key);
        sign_with(&key, || params.signed_by(subject_key, &issuer))
    }
}

/// Runs an rcgen signing call, turning its key error back into the key store's own error.
fn sign_with(
    key: &RcgenSigner<'_>,
    f: impl FnOnce() -> Result<rcgen::Certificate, rcgen::Error>,
) -> Result<Vec<u8>, IssueError> {
    match f() {
        Ok(cert) => Ok(cert.der().to_vec()),
        Err(rcgen::Error::RemoteKeyError) => Err(match key.take_error() {
            Some(err) => IssueError::Signer(err),
            None => IssueError::Encode("the CA key failed to sign".into()),
        }),
        Err(err) => Err(IssueError::Encode(err.to_string())),
    }
}

/// The issuer's subject as rcgen needs it, copied attribute by attribute with its string type so
/// that the issuer name of what we sign matches the CA's subject byte for byte (chain builders
/// compare them). Names rcgen cannot hold (multi-valued or empty RDNs, a type twice) are refused.
fn distinguished_name(cert: &X509Certificate<'_>) -> Result<DistinguishedName, IssueError> {
    let mut dn = DistinguishedName::new();
    for rdn in cert.subject().iter() {
        let mut attrs = rdn.iter();
        let (Some(attr), None) = (attrs.next(), attrs.next()) else {
            return Err(IssueError::IssuerCertificate(
                "its subject has an empty or multi-valued RDN, which the station cannot copy as issuer name".into(),
            ));
        };
        let oid: Vec<u64> = attr
            .attr_type()
            .iter()
            .ok_or_else(|| IssueError::IssuerCertificate("an attribute OID is too large".into()))?
            .collect();
        let ty = DnType::from_oid(&oid);
        if dn.get(&ty).is_some() {
            return Err(IssueError::IssuerCertificate(format!(
                "its subject has the attribute {} twice, which the station cannot copy as issuer name",
                attr.attr_type().to_id_string()
            )));
        }
        dn.push(ty, dn_value(attr)?);
    }
    Ok(dn)
}

fn dn_value(attr: &x509_parser::x509::AttributeTypeAndValue<'_>) -> Result<DnValue, IssueError> {
    use x509_parser::der_parser::asn1_rs::Tag;
    let data = attr.attr_value().data;
    let text = || {
        std::str::from_utf8(data).map_err(|_| {
            IssueError::IssuerCertificate("a subject attribute is not valid text".into())
        })
    };
    let bad = |err: rcgen::Error| IssueError::IssuerCertificate(err.to_string());
    Ok(match attr.attr_value().header.tag() {
        Tag::PrintableString => DnValue::PrintableString(text()?.try_into().map_err(bad)?),
        Tag::Utf8String => DnValue::Utf8String(text()?.to_owned()),
        Tag::Ia5String => DnValue::Ia5String(text()?.try_into().map_err(bad)?),
        Tag::T61String => DnValue::TeletexString(text()?.try_into().map_err(bad)?),
        other => {
            return Err(IssueError::IssuerCertificate(format!(
                "a subject attribute has string type {other}, which the station does not copy"
            )));
        }
    })
}

/// A raw P-256 public key to certify.
struct P256PublicKey<'k>(&'k [u8]);

impl<'k> P256PublicKey<'k> {
    fn new(sec1: &'k [u8]) -> Result<Self, IssueError> {
        if sec1.len() != 65 || sec1[0] != 0x04 {
            return Err(IssueError::BadPublicKey(sec1.len()));
        }
        Ok(Self(sec1))
    }
}

impl PublicKeyData for P256PublicKey<'_> {
    fn der_bytes(&self) -> &[u8] {
        self.0
    }
    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &PKCS_ECDSA_P256_SHA256
    }
}

/// The key identifier used for a CA certificate that carries none: the first 20 bytes of SHA-256
/// over the SubjectPublicKeyInfo (RFC 7093 method 1), as rcgen computes subject key identifiers.
fn key_identifier(sec1: &[u8]) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let spki = P256PublicKey(sec1).subject_public_key_info();
    Sha256::digest(spki)[..20].to_vec()
}

/// A random positive serial of exactly 16 bytes (126 random bits): the top bit is cleared so the
/// INTEGER is positive, the next one set so DER keeps all 16 bytes.
pub fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    SerialNumber::from_slice(&bytes)
}

fn base_params(validity: &Validity) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.not_before = validity.not_before;
    params.not_after = validity.not_after;
    params.serial_number = Some(random_serial());
    params.key_identifier_method = KeyIdMethod::Sha256;
    params
}

fn device_params(
    registration_id: &RegistrationId,
    profile: &DeviceProfile,
) -> Result<CertificateParams, IssueError> {
    // The CN is the registration ID, so it must fit a CN (64 characters).
    RegistrationId::parse_for(registration_id.as_str(), IdUse::X509CommonName)?;
    let mut params = base_params(&profile.validity);
    let mut dn = DistinguishedName::new();
    if let Some(org) = &profile.organization {
        dn.push(DnType::OrganizationName, DnValue::Utf8String(org.clone()));
    }
    dn.push(
        DnType::CommonName,
        DnValue::Utf8String(registration_id.as_str().to_owned()),
    );
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

fn ca_params(profile: &CaProfile) -> Result<CertificateParams, IssueError> {
    let mut params = base_params(&profile.validity);
    params.distinguished_name = ca_subject(&profile.subject)?;
    params.is_ca = IsCa::Ca(match profile.path_len {
        Some(len) => BasicConstraints::Constrained(len),
        None => BasicConstraints::Unconstrained,
    });
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
    ];
    Ok(params)
}

/// Most general first in DER (C, O, OU, CN), as openssl and DPS samples order it.
fn ca_subject(subject: &CaSubject) -> Result<DistinguishedName, IssueError> {
    if subject.common_name.trim().is_empty() {
        return Err(IssueError::Subject(
            "a CA certificate needs a common name".into(),
        ));
    }
    let mut dn = DistinguishedName::new();
    if let Some(country) = &subject.country {
        if country.len() != 2 || !country.chars().all(|c| c.is_ascii_alphabetic()) {
            return Err(IssueError::Subject(format!(
                "country {country:?} is not a two-letter code such as US or DE"
            )));
        }
        let value = PrintableString::try_from(country.to_ascii_uppercase())
            .map_err(|err| IssueError::Subject(err.to_string()))?;
        dn.push(DnType::CountryName, DnValue::PrintableString(value));
    }
    if let Some(org) = &subject.organization {
        dn.push(DnType::OrganizationName, DnValue::Utf8String(org.clone()));
    }
    if let Some(unit) = &subject.organizational_unit {
        dn.push(
            DnType::OrganizationalUnitName,
            DnValue::Utf8String(unit.clone()),
        );
    }
    dn.push(
        DnType::CommonName,
        DnValue::Utf8String(subject.common_name.clone()),
    );
    Ok(dn)
}

/// Issues a device certificate for a device's CSR: verifies the CSR (signature, P-256), then signs
/// a leaf for its public key with CN = `registration_id` and everything else from `profile`.
pub fn issue_device_certificate(
    csr_der: &[u8],
    registration_id: &RegistrationId,
    profile: &DeviceProfile,
    issuer: &Issuer<'_>,
) -> Result<IssuedCertificate, IssueError> {
    let csr = csr::verify_csr(csr_der)?;
    issue_device_certificate_for_key(&csr.public_key_sec1, registration_id, profile, issuer)
}

/// Issues a device certificate for a public key the station already trusts (a key it generated, or
/// one a device reported over an authenticated channel): no CSR to check.
pub fn issue_device_certificate_for_key(
    public_key_sec1: &[u8],
    registration_id: &RegistrationId,
    profile: &DeviceProfile,
    issuer: &Issuer<'_>,
) -> Result<IssuedCertificate, IssueError> {
    let key = P256PublicKey::new(public_key_sec1)?;
    let params = device_params(registration_id, profile)?;
    IssuedCertificate::from_der(issuer.sign(&params, &key)?)
}

/// A self-signed root CA certificate for `signer`'s key.
pub fn make_root_ca(
    profile: &CaProfile,
    signer: &dyn CaSigner,
) -> Result<IssuedCertificate, IssueError> {
    let params = ca_params(profile)?;
    let key = RcgenSigner::new(signer);
    let der = sign_with(&key, || params.self_signed(&key))?;
    IssuedCertificate::from_der(der)
}

/// An intermediate CA certificate for the key whose public point is `subject_key_sec1` (usually
/// another HSM key), signed by `issuer`.
pub fn make_intermediate_ca(
    profile: &CaProfile,
    subject_key_sec1: &[u8],
    issuer: &Issuer<'_>,
) -> Result<IssuedCertificate, IssueError> {
    let key = P256PublicKey::new(subject_key_sec1)?;
    // A chain whose path lengths contradict each other fails validation on every verifier.
    if let Some(issuer_len) = issuer.path_len {
        if issuer_len == 0 {
            return Err(IssueError::IssuerCertificate(
                "its path length is 0: it may sign device certificates but no intermediate CA"
                    .into(),
            ));
        }
        if profile
            .path_len
            .is_none_or(|len| u32::from(len) >= issuer_len)
        {
            return Err(IssueError::Subject(format!(
                "the intermediate's path length must be below its issuer's ({issuer_len})"
            )));
        }
    }
    let mut params = ca_params(profile)?;
    params.use_authority_key_identifier_extension = true;
    IssuedCertificate::from_der(issuer.sign(&params, &key)?)
}

/// The DPS proof-of-possession certificate: CN = the verification code DPS showed for an uploaded
/// CA certificate, signed by that CA's key. Its own key pair is generated and thrown away: DPS only
/// checks the signature and the CN.
pub fn verification_certificate(
    verification_code: &str,
    validity: &Validity,
    issuer: &Issuer<'_>,
) -> Result<IssuedCertificate, IssueError> {
    let code = verification_code.trim();
    if code.is_empty() || code.len() > 64 || !code.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(IssueError::VerificationCode {
            code: verification_code.to_owned(),
        });
    }
    let throwaway = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .map_err(|err| IssueError::Encode(err.to_string()))?;
    let mut params = base_params(validity);
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, DnValue::Utf8String(code.to_owned()));
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    IssuedCertificate::from_der(issuer.sign(&params, &throwaway)?)
}

/// Whether `cert_der` carries a valid signature by the key in `issuer_cert_der`: a cheap check a
/// caller can make after signing with a new key store, before writing anything to a device.
pub fn verify_issued_by(cert_der: &[u8], issuer_cert_der: &[u8]) -> Result<(), CertInfoError> {
    let cert = cert_info::parse_certificate(cert_der)?;
    let issuer = cert_info::parse_certificate(issuer_cert_der)?;
    cert.verify_signature(Some(issuer.public_key()))
        .map_err(|err| CertInfoError::NotACertificate(format!("signature does not verify: {err}")))
}
