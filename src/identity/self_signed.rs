//! Self-signed device certificates for individual X.509 enrollments, as in the DPS X.509
//! quickstart (`openssl req -x509 ... -subj "/CN=<registration id>" -days 365 -extensions usr_cert`),
//! but with a P-256 key the station generates instead of RSA-4096.
//!
//! The individual enrollment carries this very certificate, so DPS trusts it by its thumbprint;
//! there is no CA. Such certificates suit small runs and development, not a production line.

use rcgen::{
    CertificateParams, DistinguishedName, DnType, DnValue, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};

use super::issue::{IssueError, IssuedCertificate, random_serial};
use super::profile::Validity;
use super::registration_id::{IdUse, RegistrationId};
use crate::secret::SecretString;

/// A self-signed device certificate and its freshly generated private key.
#[derive(Debug)]
pub struct SelfSignedDevice {
    /// The certificate (CN = registration ID).
    pub certificate: IssuedCertificate,
    /// The device's private key, PKCS#8 PEM: write it to the device or a 0600 file, never log it.
    pub private_key_pem: SecretString,
}

/// Generates a P-256 key and a self-signed certificate for it: CN = `registration_id`,
/// basicConstraints CA:FALSE, keyUsage digitalSignature, extendedKeyUsage clientAuth, key
/// identifiers, a random 16-byte serial and `validity`.
pub fn self_signed_device(
    registration_id: &RegistrationId,
    validity: &Validity,
) -> Result<SelfSignedDevice, IssueError> {
    RegistrationId::parse_for(registration_id.as_str(), IdUse::X509CommonName)?;
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .map_err(|err| IssueError::Encode(err.to_string()))?;
    let mut params = CertificateParams::default();
    params.not_before = validity.not_before;
    params.not_after = validity.not_after;
    params.serial_number = Some(random_serial());
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        DnValue::Utf8String(registration_id.as_str().to_owned()),
    );
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    let cert = params
        .self_signed(&key)
        .map_err(|err| IssueError::Encode(err.to_string()))?;
    let certificate = IssuedCertificate::from_der(cert.der().to_vec())?;
    Ok(SelfSignedDevice {
        certificate,
        private_key_pem: SecretString::new(key.serialize_pem()),
    })
}
