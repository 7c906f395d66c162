//! Makes Trust&GO manifests the way Microchip's manifest tools write them: for the tests (which
//! cannot get Microchip's signer key) and for `bench manifest`. A [`ReelSigner`] plays Microchip's
//! manifest signer, a [`DeviceCa`] the "signer" CA that issues the device certificates, and
//! [`signed_entry`] signs one secure element's payload as a flattened JWS.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use p256::ecdsa::SigningKey;
use p256::ecdsa::signature::Signer as _;
use p256::pkcs8::DecodePrivateKey;
use serde_json::{Value, json};

use super::signer::ManifestSigner;

/// Making a test manifest failed (a certificate or key could not be made).
#[derive(Debug, thiserror::Error)]
#[error("making a test manifest: {0}")]
pub struct BuildError(String);

fn err(what: &'static str) -> impl Fn(rcgen::Error) -> BuildError {
    move |e| BuildError(format!("{what}: {e}"))
}

/// A fresh P-256 key as rcgen's key pair and as a p256 signing key (the same key).
fn key_pair() -> Result<(rcgen::KeyPair, SigningKey), BuildError> {
    let pair = rcgen::KeyPair::generate().map_err(err("a P-256 key"))?;
    let key = SigningKey::from_pkcs8_der(&pair.serialize_der())
        .map_err(|e| BuildError(format!("reading back a P-256 key: {e}")))?;
    Ok((pair, key))
}

fn ca_params(cn: &str) -> Result<rcgen::CertificateParams, BuildError> {
    let mut params =
        rcgen::CertificateParams::new(Vec::<String>::new()).map_err(err("CA params"))?;
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "Microchip Technology Inc");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    Ok(params)
}

/// The manifest signer: a self-signed P-256 certificate (with a Subject Key Identifier) and its key.
pub struct ReelSigner {
    key: SigningKey,
    key_pkcs8_der: Vec<u8>,
    cert_der: Vec<u8>,
    signer: ManifestSigner,
}

impl ReelSigner {
    /// A new signer named `cn`.
    pub fn generate(cn: &str) -> Result<Self, BuildError> {
        let (pair, key) = key_pair()?;
        let cert = ca_params(cn)?
            .self_signed(&pair)
            .map_err(err("the signer certificate"))?;
        let cert_der = cert.der().to_vec();
        let signer = ManifestSigner::from_der(&cert_der).map_err(BuildError)?;
        Ok(Self {
            key,
            key_pkcs8_der: pair.serialize_der(),
            cert_der,
            signer,
        })
    }

    /// The certificate, DER (what `--signer` is given).
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The certificate, PEM.
    pub fn cert_pem(&self) -> String {
        crate::identity::pem::encode("CERTIFICATE", &self.cert_der)
    }

    /// Its private key, PKCS#8 PEM (for another JOSE library to sign with, in the tests).
    pub fn key_pkcs8_pem(&self) -> String {
        crate::identity::pem::encode("PRIVATE KEY", &self.key_pkcs8_der)
    }
}

/// The CA that issues device certificates (Microchip's "signer" CA, `x5c[1]` of every entry).
pub struct DeviceCa {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    cert_der: Vec<u8>,
}

impl DeviceCa {
    /// A new CA named `cn`.
    pub fn generate(cn: &str) -> Result<Self, BuildError> {
        let (pair, _) = key_pair()?;
        let params = ca_params(cn)?;
        let cert = params
            .self_signed(&pair)
            .map_err(err("the device CA certificate"))?;
        Ok(Self {
            cert_der: cert.der().to_vec(),
            issuer: rcgen::Issuer::new(params, pair),
        })
    }

    /// Its certificate, DER.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// A device: a fresh key and its certificate with CN `sn<UNIQUE ID>` (Trust&GO's naming).
    pub fn device(&self, unique_id: &str) -> Result<Device, BuildError> {
        let (pair, key) = key_pair()?;
        let mut params =
            rcgen::CertificateParams::new(Vec::<String>::new()).map_err(err("device params"))?;
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Microchip Technology Inc");
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            format!("sn{}", unique_id.to_ascii_uppercase()),
        );
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params
            .signed_by(&pair, &self.issuer)
            .map_err(err("a device certificate"))?;
        Ok(Device {
            unique_id: unique_id.to_ascii_lowercase(),
            key,
            key_pkcs8_der: pair.serialize_der(),
            cert_der: cert.der().to_vec(),
        })
    }
}

impl DeviceCa {
    /// The proof-of-possession certificate DPS asks for to verify this CA: subject CN = the
    /// `verification_code` DPS generated, signed by the CA's key (PEM).
    pub fn proof_of_possession(&self, verification_code: &str) -> Result<String, BuildError> {
        let (pair, _) = key_pair()?;
        let mut params =
            rcgen::CertificateParams::new(Vec::<String>::new()).map_err(err("proof params"))?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, verification_code);
        let cert = params
            .signed_by(&pair, &self.issuer)
            .map_err(err("the proof-of-possession certificate"))?;
        Ok(cert.pem())
    }
}

/// A made secure element: its serial, key and certificate.
pub struct Device {
    /// 18 lowercase hex digits.
    pub unique_id: String,
    /// The device key (stays in the test: what a real ATECC608 never gives out).
    pub key: SigningKey,
    /// The same key, PKCS#8 DER (for a TLS client in the tests).
    pub key_pkcs8_der: Vec<u8>,
    /// The device certificate, DER.
    pub cert_der: Vec<u8>,
}

impl Device {
    /// The public key as an uncompressed point (65 bytes).
    pub fn public_key(&self) -> Vec<u8> {
        self.key
            .verifying_key()
            .to_sec1_point(false)
            .as_bytes()
            .to_vec()
    }
}

/// The unique ID of the `n`th test device: `01 23` (ATECC608's fixed bytes) and 7 more.
pub fn unique_id(n: u64) -> String {
    format!("0123{:012x}ee", n)
}

/// The payload Microchip signs for one secure element (TNGTLS): the device key as JWK `kid` "0"
/// with its chain in `x5c` (standard base64 DER), as in Microchip's `SecureElement`.
pub fn payload(device: &Device, device_ca_der: &[u8]) -> Value {
    let point = device.public_key();
    json!({
        "version": 1,
        "model": "ATECC608B",
        "partNumber": "ATECC608B-TNGTLS",
        "manufacturer": {"organizationName": "Microchip Technology Inc", "organizationalUnitName": "Secure Products Group"},
        "provisioner": {"organizationName": "Microchip Technology Inc", "organizationalUnitName": "Secure Products Group"},
        "distributor": {"organizationName": "Microchip Technology Inc", "organizationalUnitName": "Microchip Direct"},
        "provisioningTimestamp": "2026-11-30T08:00:00.000Z",
        "uniqueId": device.unique_id,
        "publicKeySet": {"keys": [{
            "kid": "0", "kty": "EC", "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
            "x5c": [STANDARD.encode(&device.cert_der), STANDARD.encode(device_ca_der)],
        }]},
    })
}

/// Signs `payload` as one manifest entry (flattened JWS JSON serialization, as Microchip ships it).
pub fn signed_entry(payload: &Value, signer: &ReelSigner) -> Value {
    let protected = json!({
        "typ": "JWT",
        "alg": "ES256",
        "kid": signer.signer.kid(),
        "x5t#S256": signer.signer.x5t_s256(),
    });
    let protected = URL_SAFE_NO_PAD.encode(protected.to_string());
    let body = URL_SAFE_NO_PAD.encode(payload.to_string());
    let signature: p256::ecdsa::Signature =
        signer.key.sign(format!("{protected}.{body}").as_bytes());
    json!({
        "payload": body,
        "protected": protected,
        "header": {"uniqueId": payload.get("uniqueId").cloned().unwrap_or(Value::Null)},
        "signature": URL_SAFE_NO_PAD.encode(signature.to_bytes()),
    })
}
