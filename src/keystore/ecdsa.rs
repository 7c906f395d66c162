//! The byte-level glue between PKCS#11 and X.509 for ECDSA P-256: PKCS#11 returns a raw `r‖s`
//! signature and (on most tokens, SoftHSM2 included) a DER-wrapped EC point; X.509 wants a DER
//! signature and rcgen a bare SEC1 point.

/// `CKA_EC_PARAMS` for P-256: the DER of OID 1.2.840.10045.3.1.7 (prime256v1).
pub const P256_EC_PARAMS: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

/// Turns a raw `r‖s` (64 bytes) into a DER `SEQUENCE { r, s }`; `None` if it is not a valid signature.
pub fn raw_to_der(raw: &[u8]) -> Option<Vec<u8>> {
    let sig = p256::ecdsa::Signature::from_slice(raw).ok()?;
    Some(sig.to_der().as_bytes().to_vec())
}

/// Reads `CKA_EC_POINT` as an uncompressed SEC1 point (65 bytes, `04 || X || Y`).
///
/// PKCS#11 says the attribute is a DER OCTET STRING (`04 41 04 …`); some tokens return the bare
/// point. Both are accepted; anything else is `None`.
pub fn ec_point_to_sec1(attr: &[u8]) -> Option<Vec<u8>> {
    let point = match attr {
        [0x04, 0x41, rest @ ..] if rest.len() == 65 => rest,
        bare if bare.len() == 65 => bare,
        _ => return None,
    };
    if point[0] != 0x04 {
        return None;
    }
    // Reject points that are not on the curve: a broken token must not produce a CA certificate.
    p256::PublicKey::from_sec1_bytes(point).ok()?;
    Some(point.to_vec())
}

/// Wraps a SEC1 point as the DER OCTET STRING PKCS#11 wants in `CKA_EC_POINT`.
pub fn sec1_to_ec_point(sec1: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(sec1.len() + 2);
    out.push(0x04);
    out.push(sec1.len() as u8);
    out.extend_from_slice(sec1);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Verifier;

    #[test]
    fn raw_signature_becomes_der_that_verifies() {
        let key = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap();
        let sig: p256::ecdsa::Signature = p256::ecdsa::signature::Signer::sign(&key, b"msg");
        let der = raw_to_der(&sig.to_bytes()).unwrap();
        assert_eq!(der[0], 0x30);
        let parsed = p256::ecdsa::Signature::from_der(&der).unwrap();
        key.verifying_key().verify(b"msg", &parsed).unwrap();
        assert!(raw_to_der(&[0u8; 64]).is_none());
        assert!(raw_to_der(&[1u8; 10]).is_none());
    }

    #[test]
    fn ec_point_is_unwrapped_both_ways() {
        let key = p256::SecretKey::from_slice(&[9u8; 32]).unwrap();
        let sec1 = key.public_key().to_sec1_bytes().to_vec();
        assert_eq!(ec_point_to_sec1(&sec1_to_ec_point(&sec1)).unwrap(), sec1);
        assert_eq!(ec_point_to_sec1(&sec1).unwrap(), sec1);
        assert!(ec_point_to_sec1(&[0x04, 0x41, 0x04]).is_none());
        let mut off_curve = sec1.clone();
        off_curve[64] ^= 1;
        assert!(ec_point_to_sec1(&off_curve).is_none());
    }
}
