//! TPM endorsement keys in the form DPS wants them.
//!
//! A device's `TPM-EK` reply carries the EK public key as DER SubjectPublicKeyInfo (what a TPM
//! tool exports as PEM). DPS's `attestation.tpm.endorsementKey` is instead the base64 of the
//! TPM's own `TPM2B_PUBLIC` structure, and the service derives the EK's TPM *name* from it (the
//! hash of the whole `TPMT_PUBLIC`, policy and attributes included) when it wraps the
//! registration key with `TPM2_MakeCredential`. So the conversion must rebuild the public area
//! exactly as the TPM created it from its EK template: the TCG EK Credential Profile's default
//! templates L-1 (RSA 2048) and L-2 (ECC NIST P-256). Byte equality with `tpm2_createek` on
//! `swtpm` is asserted by the identity tests (`tests/identity/tpm_ek.rs`).
//!
//! All integers in TPM structures are big-endian; every `TPM2B_*` is a `u16` size then the bytes.

use p256::pkcs8::DecodePublicKey as _;
use x509_parser::oid_registry::{OID_KEY_TYPE_EC_PUBLIC_KEY, OID_PKCS1_RSAENCRYPTION};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey as ParsedKey;
use x509_parser::x509::SubjectPublicKeyInfo;

/// `TPM_ALG_RSA`.
pub const ALG_RSA: u16 = 0x0001;
/// `TPM_ALG_SHA256`.
pub const ALG_SHA256: u16 = 0x000B;
/// `TPM_ALG_AES`.
pub const ALG_AES: u16 = 0x0006;
/// `TPM_ALG_NULL`.
pub const ALG_NULL: u16 = 0x0010;
/// `TPM_ALG_ECC`.
pub const ALG_ECC: u16 = 0x0023;
/// `TPM_ALG_CFB`.
pub const ALG_CFB: u16 = 0x0043;
/// `TPM_ECC_NIST_P256`.
pub const ECC_NIST_P256: u16 = 0x0003;

/// The EK templates' `objectAttributes`: fixedTPM, fixedParent, sensitiveDataOrigin,
/// adminWithPolicy, restricted, decrypt (userWithAuth and noDA clear).
pub const EK_OBJECT_ATTRIBUTES: u32 = 0x0003_00B2;

/// The EK templates' `authPolicy` (SHA-256): `PolicySecret(TPM_RH_ENDORSEMENT)`, the TCG's
/// "PolicyA". Every conformant TPM's default EK carries exactly this digest.
pub const EK_AUTH_POLICY_SHA256: [u8; 32] = [
    0x83, 0x71, 0x97, 0x67, 0x44, 0x84, 0xB3, 0xF8, 0x1A, 0x90, 0xCC, 0x8D, 0x46, 0xA5, 0xD7, 0x24,
    0xFD, 0x52, 0xD7, 0x6E, 0x06, 0x52, 0x0B, 0x64, 0xF2, 0xA1, 0xDA, 0x1B, 0x33, 0x14, 0x69, 0xAA,
];

/// RSA modulus size of template L-1, bytes.
pub const RSA_2048_BYTES: usize = 256;
/// Coordinate size of template L-2, bytes.
const P256_COORD_BYTES: usize = 32;

/// The key inside an endorsement key's public area.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EkKey {
    /// RSA 2048, exponent 65537 (the template's `exponent = 0`).
    Rsa2048 {
        /// The modulus, big-endian; its type holds exactly 256 bytes, so no other size can reach a
        /// TPM2B_PUBLIC built from it.
        modulus: Box<[u8; RSA_2048_BYTES]>,
    },
    /// ECC NIST P-256.
    EccP256 {
        /// X coordinate, 32 bytes big-endian.
        x: [u8; 32],
        /// Y coordinate, 32 bytes big-endian.
        y: [u8; 32],
    },
}

impl EkKey {
    /// The key type's name for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            EkKey::Rsa2048 { .. } => "RSA 2048",
            EkKey::EccP256 { .. } => "ECC NIST P-256",
        }
    }

    /// The uncompressed SEC1 point (`04 || X || Y`) of an ECC key; `None` for RSA.
    pub fn ecc_point(&self) -> Option<[u8; 65]> {
        match self {
            EkKey::EccP256 { x, y } => {
                let mut p = [0u8; 65];
                p[0] = 0x04;
                p[1..33].copy_from_slice(x);
                p[33..].copy_from_slice(y);
                Some(p)
            }
            EkKey::Rsa2048 { .. } => None,
        }
    }
}

/// A parsed `TPM2B_PUBLIC` of an endorsement key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EkPublic {
    /// `nameAlg`.
    pub name_alg: u16,
    /// `objectAttributes`.
    pub object_attributes: u32,
    /// `authPolicy`.
    pub auth_policy: Vec<u8>,
    /// The key.
    pub key: EkKey,
}

impl EkPublic {
    /// Whether the public area is the one TCG default template L-1 or L-2 produces (what a TPM's
    /// default EK looks like); DPS needs that to compute the EK's name as the TPM does.
    pub fn is_default_template(&self) -> bool {
        self.name_alg == ALG_SHA256
            && self.object_attributes == EK_OBJECT_ATTRIBUTES
            && self.auth_policy == EK_AUTH_POLICY_SHA256
    }
}

/// Why an endorsement key cannot be converted or parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TpmEkError {
    /// The SPKI is not DER.
    #[error(
        "the TPM endorsement key is not a DER SubjectPublicKeyInfo ({0}); the device's TPM-EK reply must carry the EK public key as DER"
    )]
    NotSpki(String),
    /// Neither RSA nor ECC.
    #[error(
        "the TPM endorsement key's algorithm {0} is neither RSA nor ECC; only the TCG default EK templates (RSA 2048, ECC P-256) are supported"
    )]
    UnsupportedAlgorithm(String),
    /// An ECC key on another curve.
    #[error(
        "the TPM endorsement key is an ECC key but not on NIST P-256; only the TCG default EK templates (RSA 2048, ECC P-256) are supported"
    )]
    UnsupportedCurve,
    /// An RSA key of another size or exponent.
    #[error(
        "the TPM endorsement key is RSA with a {bits}-bit modulus and exponent {exponent}; the TCG default EK template is RSA 2048 with exponent 65537"
    )]
    UnsupportedRsa {
        /// Modulus size.
        bits: usize,
        /// Exponent, hex.
        exponent: String,
    },
    /// The TPM2B_PUBLIC ended early.
    #[error("the TPM2B_PUBLIC is truncated: {0} needs more bytes than remain")]
    Truncated(&'static str),
    /// The outer size does not match the content.
    #[error("the TPM2B_PUBLIC says its content is {declared} bytes but {actual} follow")]
    SizeMismatch {
        /// The declared size.
        declared: usize,
        /// What follows.
        actual: usize,
    },
    /// A field holds a value this code does not accept.
    #[error("the TPM2B_PUBLIC's {field} is 0x{value:04X}, which is not {expected}")]
    UnexpectedValue {
        /// Which field.
        field: &'static str,
        /// Its value.
        value: u32,
        /// What was expected.
        expected: &'static str,
    },
    /// Bytes after the structure.
    #[error("the TPM2B_PUBLIC has {0} bytes after its public area")]
    TrailingBytes(usize),
}

/// Converts an EK public key (DER SubjectPublicKeyInfo, RSA 2048 or ECC P-256) into the
/// `TPM2B_PUBLIC` its TPM created from the default EK template; base64 of this is what DPS's
/// `tpm.endorsementKey` holds.
pub fn spki_to_tpm2b_public(spki_der: &[u8]) -> Result<Vec<u8>, TpmEkError> {
    let key = key_from_spki(spki_der)?;
    Ok(tpm2b_public(&key))
}

/// Reads the key out of a DER SubjectPublicKeyInfo.
pub fn key_from_spki(spki_der: &[u8]) -> Result<EkKey, TpmEkError> {
    let (rest, spki) =
        SubjectPublicKeyInfo::from_der(spki_der).map_err(|e| TpmEkError::NotSpki(e.to_string()))?;
    if !rest.is_empty() {
        return Err(TpmEkError::NotSpki(format!(
            "{} bytes after the structure",
            rest.len()
        )));
    }
    let alg = &spki.algorithm.algorithm;
    if *alg == OID_KEY_TYPE_EC_PUBLIC_KEY {
        // p256 checks the curve OID and that the point is on the curve.
        let key = p256::PublicKey::from_public_key_der(spki_der)
            .map_err(|_| TpmEkError::UnsupportedCurve)?;
        let sec1 = key.to_sec1_bytes();
        if sec1.len() != 65 {
            return Err(TpmEkError::UnsupportedCurve);
        }
        let mut x = [0u8; 32];
        let mut y = [0u8; 32];
        x.copy_from_slice(&sec1[1..33]);
        y.copy_from_slice(&sec1[33..65]);
        Ok(EkKey::EccP256 { x, y })
    } else if *alg == OID_PKCS1_RSAENCRYPTION {
        let parsed = spki
            .parsed()
            .map_err(|e| TpmEkError::NotSpki(e.to_string()))?;
        let ParsedKey::RSA(rsa) = parsed else {
            return Err(TpmEkError::NotSpki(
                "rsaEncryption without an RSA key".into(),
            ));
        };
        let modulus = strip_zeros(rsa.modulus);
        let exponent = strip_zeros(rsa.exponent);
        let unsupported = || TpmEkError::UnsupportedRsa {
            bits: modulus.len() * 8,
            exponent: hex::encode(exponent),
        };
        if exponent != [0x01, 0x00, 0x01] {
            return Err(unsupported());
        }
        let modulus: [u8; RSA_2048_BYTES] = modulus.try_into().map_err(|_| unsupported())?;
        Ok(EkKey::Rsa2048 {
            modulus: Box::new(modulus),
        })
    } else {
        Err(TpmEkError::UnsupportedAlgorithm(alg.to_id_string()))
    }
}

fn strip_zeros(mut b: &[u8]) -> &[u8] {
    while let [0, rest @ ..] = b {
        b = rest;
    }
    b
}

/// The `TPM2B_PUBLIC` of `key` under the default EK template (L-1 for RSA, L-2 for ECC).
pub fn tpm2b_public(key: &EkKey) -> Vec<u8> {
    let mut area = Vec::with_capacity(320);
    let put16 = |v: &mut Vec<u8>, x: u16| v.extend_from_slice(&x.to_be_bytes());
    put16(
        &mut area,
        match key {
            EkKey::Rsa2048 { .. } => ALG_RSA,
            EkKey::EccP256 { .. } => ALG_ECC,
        },
    );
    put16(&mut area, ALG_SHA256);
    area.extend_from_slice(&EK_OBJECT_ATTRIBUTES.to_be_bytes());
    put16(&mut area, EK_AUTH_POLICY_SHA256.len() as u16);
    area.extend_from_slice(&EK_AUTH_POLICY_SHA256);
    // symmetric: AES-128-CFB (a storage parent's inner wrapping).
    put16(&mut area, ALG_AES);
    put16(&mut area, 128);
    put16(&mut area, ALG_CFB);
    // scheme: NULL (a restricted decryption key has none).
    put16(&mut area, ALG_NULL);
    match key {
        EkKey::Rsa2048 { modulus } => {
            put16(&mut area, 2048);
            // exponent 0 means the default, 2^16 + 1.
            area.extend_from_slice(&0u32.to_be_bytes());
            put16(&mut area, RSA_2048_BYTES as u16);
            area.extend_from_slice(modulus.as_slice());
        }
        EkKey::EccP256 { x, y } => {
            put16(&mut area, ECC_NIST_P256);
            put16(&mut area, ALG_NULL); // kdf
            put16(&mut area, P256_COORD_BYTES as u16);
            area.extend_from_slice(x);
            put16(&mut area, P256_COORD_BYTES as u16);
            area.extend_from_slice(y);
        }
    }
    // Every field above has a fixed size (the keys' by their types), so the area is at most
    // 314 bytes and its length fits the u16 size field.
    let mut out = Vec::with_capacity(area.len() + 2);
    out.extend_from_slice(&(area.len() as u16).to_be_bytes());
    out.extend_from_slice(&area);
    out
}

/// A cursor over untrusted bytes: every read checks the length.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], TpmEkError> {
        if self.bytes.len() < n {
            return Err(TpmEkError::Truncated(what));
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, TpmEkError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, TpmEkError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn sized(&mut self, what: &'static str) -> Result<&'a [u8], TpmEkError> {
        let n = self.u16(what)?;
        self.take(usize::from(n), what)
    }
}

fn expect(
    field: &'static str,
    value: u16,
    want: u16,
    expected: &'static str,
) -> Result<(), TpmEkError> {
    if value == want {
        Ok(())
    } else {
        Err(TpmEkError::UnexpectedValue {
            field,
            value: u32::from(value),
            expected,
        })
    }
}

/// Parses a `TPM2B_PUBLIC` holding an RSA 2048 or ECC P-256 key (DPS's `tpm.endorsementKey`,
/// base64-decoded). Strict about sizes; accepts any `nameAlg`, attributes and policy so that a
/// caller can tell "not the default template" from "not a TPM public area" with
/// [`EkPublic::is_default_template`].
pub fn parse_tpm2b_public(bytes: &[u8]) -> Result<EkPublic, TpmEkError> {
    let mut outer = Reader { bytes };
    let declared = usize::from(outer.u16("the size")?);
    if outer.bytes.len() != declared {
        return Err(TpmEkError::SizeMismatch {
            declared,
            actual: outer.bytes.len(),
        });
    }
    let mut r = outer;
    let kind = r.u16("type")?;
    if kind != ALG_RSA && kind != ALG_ECC {
        return Err(TpmEkError::UnexpectedValue {
            field: "type",
            value: u32::from(kind),
            expected: "TPM_ALG_RSA (0x0001) or TPM_ALG_ECC (0x0023)",
        });
    }
    let name_alg = r.u16("nameAlg")?;
    let object_attributes = r.u32("objectAttributes")?;
    let auth_policy = r.sized("authPolicy")?.to_vec();
    let sym = r.u16("symmetric.algorithm")?;
    if sym != ALG_NULL {
        r.u16("symmetric.keyBits")?;
        r.u16("symmetric.mode")?;
    }
    let scheme = r.u16("scheme")?;
    if scheme != ALG_NULL {
        r.u16("scheme.details.hashAlg")?;
    }
    let key = if kind == ALG_RSA {
        let bits = r.u16("keyBits")?;
        expect("keyBits", bits, 2048, "2048")?;
        let exponent = r.u32("exponent")?;
        if exponent != 0 && exponent != 65_537 {
            return Err(TpmEkError::UnexpectedValue {
                field: "exponent",
                value: exponent,
                expected: "0 (the default, 65537)",
            });
        }
        let modulus = r.sized("unique.rsa")?;
        let modulus: [u8; RSA_2048_BYTES] =
            modulus
                .try_into()
                .map_err(|_| TpmEkError::UnexpectedValue {
                    field: "unique.rsa size",
                    value: u32::try_from(modulus.len()).unwrap_or(u32::MAX),
                    expected: "256",
                })?;
        EkKey::Rsa2048 {
            modulus: Box::new(modulus),
        }
    } else {
        let curve = r.u16("curveID")?;
        expect(
            "curveID",
            curve,
            ECC_NIST_P256,
            "TPM_ECC_NIST_P256 (0x0003)",
        )?;
        let kdf = r.u16("kdf.scheme")?;
        if kdf != ALG_NULL {
            r.u16("kdf.details.hashAlg")?;
        }
        let mut coord = |what: &'static str| -> Result<[u8; 32], TpmEkError> {
            let c = r.sized(what)?;
            <[u8; 32]>::try_from(c).map_err(|_| TpmEkError::UnexpectedValue {
                field: what,
                value: c.len() as u32,
                expected: "32 bytes",
            })
        };
        let x = coord("unique.ecc.x")?;
        let y = coord("unique.ecc.y")?;
        EkKey::EccP256 { x, y }
    };
    if !r.bytes.is_empty() {
        return Err(TpmEkError::TrailingBytes(r.bytes.len()));
    }
    Ok(EkPublic {
        name_alg,
        object_attributes,
        auth_policy,
        key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::pkcs8::EncodePublicKey as _;

    fn ecc_spki(seed: u8) -> Vec<u8> {
        let key = p256::SecretKey::from_slice(&[seed; 32]).unwrap();
        key.public_key()
            .to_public_key_der()
            .unwrap()
            .as_bytes()
            .to_vec()
    }

    #[test]
    fn ecc_round_trip_is_the_l2_template() {
        let spki = ecc_spki(7);
        let tpm = spki_to_tpm2b_public(&spki).unwrap();
        assert_eq!(tpm.len(), 2 + 122, "TPM2B_PUBLIC of an L-2 EK is 124 bytes");
        assert_eq!(
            &tpm[..12],
            &hex::decode("007a0023000b000300b20020").unwrap()[..]
        );
        let parsed = parse_tpm2b_public(&tpm).unwrap();
        assert!(parsed.is_default_template());
        assert_eq!(parsed.key, key_from_spki(&spki).unwrap());
        let point = parsed.key.ecc_point().unwrap();
        assert_eq!(
            p256::PublicKey::from_sec1_bytes(&point).unwrap(),
            p256::PublicKey::from_public_key_der(&spki).unwrap()
        );
    }

    #[test]
    fn rsa_round_trip_is_the_l1_template() {
        // A DER SPKI of an RSA 2048 key: the bytes need not be a real modulus for the encoding.
        let mut modulus = vec![0u8; 257];
        modulus[1] = 0xC5;
        modulus[256] = 0x01;
        let rsa_key = [
            &[0x30, 0x82, 0x01, 0x0A, 0x02, 0x82, 0x01, 0x01][..],
            &modulus,
            &[0x02, 0x03, 0x01, 0x00, 0x01],
        ]
        .concat();
        let spki = [
            &[0x30, 0x82, 0x01, 0x22, 0x30, 0x0D, 0x06, 0x09][..],
            &[
                0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x01, 0x05, 0x00,
            ],
            &[0x03, 0x82, 0x01, 0x0F, 0x00],
            &rsa_key,
        ]
        .concat();
        let tpm = spki_to_tpm2b_public(&spki).unwrap();
        assert_eq!(tpm.len(), 316);
        assert_eq!(&tpm[..4], &[0x01, 0x3A, 0x00, 0x01]);
        let parsed = parse_tpm2b_public(&tpm).unwrap();
        assert!(parsed.is_default_template());
        assert_eq!(
            parsed.key,
            EkKey::Rsa2048 {
                modulus: Box::new(modulus[1..].try_into().unwrap())
            }
        );
    }

    #[test]
    fn not_an_ek_is_refused_with_a_reason() {
        assert!(matches!(
            spki_to_tpm2b_public(b"garbage"),
            Err(TpmEkError::NotSpki(_))
        ));
        let tpm = spki_to_tpm2b_public(&ecc_spki(9)).unwrap();
        let mut longer = tpm.clone();
        longer.push(0);
        assert!(matches!(
            parse_tpm2b_public(&longer),
            Err(TpmEkError::SizeMismatch { .. })
        ));
        let mut other_curve = tpm.clone();
        other_curve[2 + 48] = 0x00;
        other_curve[2 + 49] = 0x04;
        assert!(matches!(
            parse_tpm2b_public(&other_curve),
            Err(TpmEkError::UnexpectedValue {
                field: "curveID",
                ..
            })
        ));
    }

    /// Random and truncated inputs: typed errors, never a panic.
    #[test]
    fn random_and_truncated_bytes_never_panic() {
        use rand::Rng as _;
        let tpm = spki_to_tpm2b_public(&ecc_spki(3)).unwrap();
        for n in 0..tpm.len() {
            assert!(
                parse_tpm2b_public(&tpm[..n]).is_err(),
                "prefix of {n} bytes"
            );
        }
        let spki = ecc_spki(4);
        for n in 0..spki.len() {
            assert!(
                spki_to_tpm2b_public(&spki[..n]).is_err(),
                "prefix of {n} bytes"
            );
        }
        let mut rng = rand::rng();
        for _ in 0..2000 {
            let len = (rng.next_u32() % 400) as usize;
            let mut bytes = vec![0u8; len];
            rng.fill_bytes(&mut bytes);
            let _ = parse_tpm2b_public(&bytes);
            let _ = spki_to_tpm2b_public(&bytes);
            // Random bytes behind a valid header exercise the inner fields.
            let mut framed = tpm[..12].to_vec();
            framed.extend_from_slice(&bytes);
            let size = (framed.len() - 2) as u16;
            framed[..2].copy_from_slice(&size.to_be_bytes());
            let _ = parse_tpm2b_public(&framed);
            // Flip one byte of a valid structure.
            let mut flipped = tpm.clone();
            let i = (rng.next_u32() as usize) % flipped.len();
            flipped[i] ^= (rng.next_u32() as u8) | 1;
            let _ = parse_tpm2b_public(&flipped);
        }
    }
}
