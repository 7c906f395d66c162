//! Whether a batch's identities can fit the product's `esp_secure_cert` partition at all, checked
//! before the batch's first device: the fewest bytes an identity of the batch's mode can take.
//!
//! The device certificate is issued per device, so its exact size is known only then (and the
//! driver refuses a device whose image does not fit, before writing). What is known at the start
//! is a lower bound: the CA entry exactly (the first certificate of `keys.ca_chain`), the key entry
//! exactly (SEC1 PEM of a P-256 key has one length), the ID scope and endpoint exactly, and the
//! leaf at least its issuer name (the CA's subject), a P-256 public key, a signature of the CA's
//! key size and the fixed fields. A partition smaller than that can hold no identity of the batch,
//! so the batch is refused instead of every device.

use p256::SecretKey;
use p256::pkcs8::der::pem::LineEnding;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::public_key::PublicKey;

use super::secure_cert::{FOOTER_LEN, HEADER_LEN, SecureCertError, certificate_entry, padding};

/// What kind of identity the batch writes.
#[derive(Debug, Clone, Copy)]
pub enum IdentityKind<'a> {
    /// A station-made P-256 key with its certificate, issued by the first certificate of this
    /// chain (PEM).
    X509 {
        /// The batch's CA chain, PEM, issuer first.
        ca_chain_pem: &'a str,
    },
    /// A derived symmetric key (base64 of 32 bytes at least).
    Symmetric,
}

/// The bytes one entry of `data_len` bytes takes in the partition.
fn entry_len(data_len: usize) -> usize {
    HEADER_LEN + data_len + padding(data_len) + FOOTER_LEN
}

/// PEM text of `der_len` DER bytes (64-column lines) plus the NUL the image adds.
fn pem_len(label: &str, der_len: usize) -> usize {
    let b64 = der_len.div_ceil(3) * 4;
    let lines = b64.div_ceil(64);
    let armour = format!("-----BEGIN {label}-----\n-----END {label}-----\n").len();
    armour + b64 + lines + 1
}

/// The fewest bytes a DER certificate issued by `ca_der` for a P-256 key can have: the fixed
/// fields at their smallest (177 bytes: framing, version, a 1-byte serial, the algorithm twice,
/// UTCTime validity, a one-letter subject, the 91-byte P-256 public key), the issuer name and the
/// signature of the CA's key size (an ECDSA signature's two integers at their shortest).
fn least_leaf_der(ca_der: &[u8]) -> Option<usize> {
    let (_, ca) = X509Certificate::from_der(ca_der).ok()?;
    let issuer = ca.tbs_certificate.subject.as_raw().len();
    let signature = match ca.public_key().parsed().ok()? {
        PublicKey::RSA(rsa) => rsa.modulus.iter().skip_while(|&&b| b == 0).count(),
        PublicKey::EC(point) => {
            let coordinate = point.data().len().saturating_sub(1) / 2;
            (2 * coordinate).saturating_sub(4) + 6
        }
        _ => 0,
    };
    Some(177 + issuer + signature)
}

/// The fewest bytes an identity of `kind` takes in the partition, entries and integrity entry
/// included, with this ID scope and endpoint and a registration ID of at least one character.
pub fn least_image_len(
    kind: IdentityKind<'_>,
    id_scope: &str,
    endpoint: &str,
) -> Result<usize, SecureCertError> {
    let user_data = entry_len(id_scope.len()) + entry_len(endpoint.len()) + entry_len(1);
    let integrity = entry_len(32);
    let credential = match kind {
        IdentityKind::Symmetric => entry_len(44),
        IdentityKind::X509 { ca_chain_pem } => {
            const END: &str = "-----END CERTIFICATE-----";
            let first = match ca_chain_pem.find(END) {
                Some(at) => &ca_chain_pem[..at + END.len()],
                None => ca_chain_pem,
            };
            let ca = certificate_entry("CA certificate", first)?;
            let (_, der) =
                p256::pkcs8::der::pem::decode_vec(first.trim().as_bytes()).map_err(|e| {
                    SecureCertError::BadInput {
                        what: "CA certificate",
                        reason: e.to_string(),
                    }
                })?;
            let leaf = least_leaf_der(&der).ok_or_else(|| SecureCertError::BadInput {
                what: "CA certificate",
                reason: "its public key cannot be read".into(),
            })?;
            // Every SEC1 PEM of a P-256 key has the same length: measure one.
            let key = SecretKey::from_slice(&[0x11; 32])
                .ok()
                .and_then(|k| k.to_sec1_pem(LineEnding::LF).ok())
                .map_or(227, |pem| pem.len());
            entry_len(ca.len()) + entry_len(pem_len("CERTIFICATE", leaf)) + entry_len(key + 1)
        }
    };
    Ok(user_data + credential + integrity)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::esp32::secure_cert::{SecureCertImage, SecureCertInputs};
    use crate::secret::SecretString;

    fn ca(cn: &str, units: usize) -> (rcgen::CertifiedIssuer<'static, rcgen::KeyPair>, String) {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        for i in 0..units {
            params.distinguished_name.push(
                rcgen::DnType::CustomDnType(vec![2, 5, 4, 11, i as u64]),
                format!("a rather long organisational unit name number {i} of the factory"),
            );
        }
        let issuer =
            rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap())
                .unwrap();
        let pem = issuer.pem();
        (issuer, pem)
    }

    #[test]
    fn the_bound_is_below_a_real_image_and_above_a_small_partition_for_a_big_ca() {
        let (issuer, ca_pem) = ca("esp32 room CA", 0);
        let key = rcgen::KeyPair::generate().unwrap();
        let mut leaf = rcgen::CertificateParams::new(vec!["d".into()]).unwrap();
        leaf.distinguished_name.push(rcgen::DnType::CommonName, "d");
        let leaf = leaf.signed_by(&key, &issuer).unwrap().pem();
        let inputs = SecureCertInputs {
            ca_pem: ca_pem.clone(),
            device_pem: leaf,
            key_pem: SecretString::new(key.serialize_pem()),
            id_scope: "0ne00000001".into(),
            endpoint: "global.azure-devices-provisioning.net".into(),
            registration_id: "d".into(),
        };
        let image = SecureCertImage::from_inputs(&inputs)
            .unwrap()
            .to_bytes(0x2000)
            .unwrap();
        let used = image.iter().rposition(|&b| b != 0xFF).unwrap() + 1;
        let least = least_image_len(
            IdentityKind::X509 {
                ca_chain_pem: &ca_pem,
            },
            "0ne00000001",
            "global.azure-devices-provisioning.net",
        )
        .unwrap();
        assert!(least <= used && least > used * 3 / 4, "{least} vs {used}");

        let (_, big) = ca("esp32 room CA", 40);
        let least = least_image_len(
            IdentityKind::X509 { ca_chain_pem: &big },
            "0ne00000001",
            "global.azure-devices-provisioning.net",
        )
        .unwrap();
        assert!(least > 0x1000, "{least}");
        let symmetric = least_image_len(IdentityKind::Symmetric, "0ne00000001", "e").unwrap();
        assert!(symmetric < 400, "{symmetric}");
    }
}
