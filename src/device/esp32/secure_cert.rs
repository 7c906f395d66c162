//! The `esp_secure_cert` partition image, in Espressif's TLV format (as `esp_secure_cert_mgr`
//! reads it on the chip and `esp-secure-cert-tool` writes it on the host).
//!
//! Each entry is a 12-byte header (magic `0xBA5EBA11` LE, flags, 3 reserved bytes, type, subtype,
//! length LE u16), the data, zero padding to a multiple of 16 bytes (the flash-encryption write
//! alignment), and a CRC32 footer over header, data and padding. Entries follow each other from
//! offset 0; the rest of the partition is erased flash (`0xFF`), which is where a reader stops.

use p256::SecretKey;
use p256::pkcs8::DecodePrivateKey;
use p256::pkcs8::der::pem::{self, LineEnding};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::secret::SecretString;
use x509_parser::prelude::{FromDer, X509Certificate};

/// The magic every TLV header starts with (little-endian on flash).
pub const TLV_MAGIC: u32 = 0xBA5E_BA11;
/// Header bytes before an entry's data.
pub const HEADER_LEN: usize = 12;
/// Footer bytes (the CRC32) after an entry's padding.
pub const FOOTER_LEN: usize = 4;
/// Data is padded to this: the smallest write to an encrypted flash partition.
pub const ALIGNMENT: usize = 16;
/// The partition size of Espressif's partition tables and tool (8 KiB).
pub const DEFAULT_PARTITION_SIZE: usize = 0x2000;

/// TLV type of the CA certificate (PEM, NUL-terminated).
pub const TYPE_CA_CERT: u8 = 0;
/// TLV type of the device certificate (PEM, NUL-terminated).
pub const TYPE_DEV_CERT: u8 = 1;
/// TLV type of the private key (SEC1 PEM, NUL-terminated, when stored in plain).
pub const TYPE_PRIV_KEY: u8 = 2;
/// TLV type of the integrity entry: SHA-256 of every byte before it, written last (as
/// Espressif's tool does by default) so that newer `esp_secure_cert_mgr` can check the partition
/// as a whole.
pub const TYPE_INTEGRITY: u8 = 9;
/// TLV type `ESP_SECURE_CERT_USER_DATA_1`: we store the DPS ID scope here.
pub const TYPE_ID_SCOPE: u8 = 51;
/// TLV type `ESP_SECURE_CERT_USER_DATA_2`: the DPS global endpoint host.
pub const TYPE_ENDPOINT: u8 = 52;
/// TLV type `ESP_SECURE_CERT_USER_DATA_3`: the DPS registration ID.
pub const TYPE_REGISTRATION_ID: u8 = 53;

/// Why an image could not be built or read.
#[derive(Debug, Error)]
pub enum SecureCertError {
    /// A PEM input is not what its flag says.
    #[error("{what}: {reason}; give a PEM file (-----BEGIN ...-----)")]
    BadInput { what: &'static str, reason: String },
    /// An entry is larger than the u16 length field can say.
    #[error("{what} is {len} bytes; an esp_secure_cert entry holds at most 65535")]
    TooLong { what: &'static str, len: usize },
    /// The entries do not fit the partition.
    #[error(
        "the entries take {needed} bytes but the partition is {size}; give a larger --size (a multiple of 4096) and the same size in the partition table"
    )]
    NoRoom { needed: usize, size: usize },
    /// A partition size flash cannot hold.
    #[error("partition size {0} is not a non-zero multiple of 4096 (the flash sector)")]
    BadSize(usize),
    /// The partition holds nothing: erased flash (or an empty file).
    #[error(
        "the image is erased flash (all 0xFF) or empty: nothing was ever written to this partition"
    )]
    Erased,
    /// The image does not start with a TLV entry.
    #[error(
        "not an esp_secure_cert TLV image: no magic 0xBA5EBA11 at offset 0 (found {found:#010x})"
    )]
    NotTlv { found: u32 },
    /// An entry runs past the end of the image.
    #[error(
        "entry at offset {offset:#x} (type {tlv_type}) runs past the end of the image; the image is truncated"
    )]
    Truncated { offset: usize, tlv_type: u8 },
    /// An entry's CRC32 does not match.
    #[error(
        "entry at offset {offset:#x} (type {tlv_type}) fails its CRC32 (stored {stored:#010x}, computed {computed:#010x}); the image is corrupt: rebuild and rewrite it"
    )]
    Crc {
        offset: usize,
        tlv_type: u8,
        stored: u32,
        computed: u32,
    },
    /// Something that is neither an entry nor erased flash follows the entries.
    #[error(
        "bytes at offset {offset:#x} are neither a TLV entry nor erased flash (0xFF); the image is corrupt"
    )]
    Garbage { offset: usize },
    /// The integrity entry's SHA-256 does not match the entries before it.
    #[error(
        "the integrity entry at offset {offset:#x} does not match the SHA-256 of the entries before it; the image is corrupt: rebuild and rewrite it"
    )]
    Integrity { offset: usize },
    /// Two entries of the same type and subtype, which the chip's reader cannot tell apart.
    #[error("two entries of type {tlv_type} subtype {subtype}; the device reads only the first")]
    Duplicate { tlv_type: u8, subtype: u8 },
}

/// One TLV entry as found in an image. Its `Debug` shows the data's length, never the bytes:
/// an entry may be the private key.
#[derive(Clone, PartialEq, Eq)]
pub struct TlvEntry {
    /// Offset of the header in the image.
    pub offset: usize,
    /// Header flags (bit 7 HMAC-encrypted key, bit 6 HMAC-derived key, bit 3 ECDSA peripheral).
    pub flags: u8,
    /// TLV type (`TYPE_*`).
    pub tlv_type: u8,
    /// TLV subtype (0 for a single identity).
    pub subtype: u8,
    /// The data, without padding.
    pub data: Vec<u8>,
}

impl std::fmt::Debug for TlvEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlvEntry")
            .field("offset", &self.offset)
            .field("flags", &self.flags)
            .field("tlv_type", &self.tlv_type)
            .field("subtype", &self.subtype)
            .field("len", &self.data.len())
            .finish()
    }
}

/// What the station puts in a device's partition.
#[derive(Debug, Clone)]
pub struct SecureCertInputs {
    /// The CA certificate, PEM (the chain's issuer the device presents with its certificate).
    pub ca_pem: String,
    /// The device certificate, PEM.
    pub device_pem: String,
    /// The device's P-256 private key, PEM (PKCS#8 or SEC1).
    pub key_pem: SecretString,
    /// The DPS ID scope.
    pub id_scope: String,
    /// The DPS global endpoint host, e.g. `global.azure-devices-provisioning.net`.
    pub endpoint: String,
    /// The DPS registration ID.
    pub registration_id: String,
}

/// A parsed or built partition image.
#[derive(Debug, Clone)]
pub struct SecureCertImage {
    /// The entries in image order.
    pub entries: Vec<TlvEntry>,
}

/// CRC-32 as `esp_crc32_le(UINT32_MAX, ...)` on the chip and `zlib.crc32(data, 0xffffffff)` in
/// Espressif's tool compute it: the reflected 0xEDB88320 polynomial with the register starting at
/// 0 (the seed is inverted on entry) and a final inversion. It is *not* the common CRC-32 (whose
/// register starts at 0xFFFFFFFF): a footer made with that one fails on the device.
pub fn crc32_esp(bytes: &[u8]) -> u32 {
    let mut crc: u32 = 0;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

pub(super) fn padding(len: usize) -> usize {
    (ALIGNMENT - len % ALIGNMENT) % ALIGNMENT
}

/// Encodes one entry: header, data, padding, CRC32 footer.
pub fn encode_entry(
    what: &'static str,
    tlv_type: u8,
    subtype: u8,
    flags: u8,
    data: &[u8],
) -> Result<Vec<u8>, SecureCertError> {
    let len = u16::try_from(data.len()).map_err(|_| SecureCertError::TooLong {
        what,
        len: data.len(),
    })?;
    let mut out = Vec::with_capacity(HEADER_LEN + data.len() + ALIGNMENT + FOOTER_LEN);
    out.extend_from_slice(&TLV_MAGIC.to_le_bytes());
    out.extend_from_slice(&[flags, 0, 0, 0, tlv_type, subtype]);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(data);
    out.resize(out.len() + padding(data.len()), 0);
    let crc = crc32_esp(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// A certificate as Espressif's tool stores it: re-encoded PEM (64-column lines, LF) + NUL, so
/// that mbedtls on the chip, which wants the terminator, parses it in place.
pub(super) fn certificate_entry(
    what: &'static str,
    text: &str,
) -> Result<Vec<u8>, SecureCertError> {
    let bad = |reason: String| SecureCertError::BadInput { what, reason };
    let (label, der) = pem::decode_vec(text.trim().as_bytes()).map_err(|e| bad(e.to_string()))?;
    if label != "CERTIFICATE" {
        return Err(bad(format!("holds a {label}, not a CERTIFICATE")));
    }
    X509Certificate::from_der(&der).map_err(|e| bad(format!("not an X.509 certificate: {e}")))?;
    let mut out = pem::encode_string("CERTIFICATE", LineEnding::LF, &der)
        .map_err(|e| bad(e.to_string()))?
        .into_bytes();
    out.push(0);
    Ok(out)
}

/// The key as Espressif's tool stores it: SEC1 ("EC PRIVATE KEY") PEM + NUL, whichever PEM form
/// it came in. Only P-256: the curve the station's certificates are made for.
fn key_entry(text: &str) -> Result<Vec<u8>, SecureCertError> {
    let bad = |reason: String| SecureCertError::BadInput {
        what: "private key",
        reason,
    };
    let text = text.trim();
    let key = SecretKey::from_pkcs8_pem(text)
        .or_else(|_| SecretKey::from_sec1_pem(text))
        .map_err(|_| bad("not a P-256 private key in PKCS#8 or SEC1 PEM".into()))?;
    let pem = key
        .to_sec1_pem(LineEnding::LF)
        .map_err(|e| bad(e.to_string()))?;
    let mut out = pem.as_bytes().to_vec();
    out.push(0);
    Ok(out)
}

impl SecureCertImage {
    /// The entries for one device, in the order Espressif's tool writes them (device certificate,
    /// CA certificate, private key) followed by the DPS user data (UTF-8, no terminator: the
    /// device reads them with their length).
    /// The integrity entry is added by [`Self::to_bytes`], over the bytes as laid out.
    pub fn from_inputs(inputs: &SecureCertInputs) -> Result<Self, SecureCertError> {
        let text = |what: &'static str, value: &str| -> Result<Vec<u8>, SecureCertError> {
            if value.is_empty() || value.chars().any(char::is_control) {
                return Err(SecureCertError::BadInput {
                    what,
                    reason: "is empty or holds control characters".into(),
                });
            }
            Ok(value.as_bytes().to_vec())
        };
        let data = [
            (
                TYPE_DEV_CERT,
                certificate_entry("device certificate", &inputs.device_pem)?,
            ),
            (
                TYPE_CA_CERT,
                certificate_entry("CA certificate", &inputs.ca_pem)?,
            ),
            (TYPE_PRIV_KEY, key_entry(inputs.key_pem.expose())?),
            (TYPE_ID_SCOPE, text("ID scope", &inputs.id_scope)?),
            (TYPE_ENDPOINT, text("endpoint", &inputs.endpoint)?),
            (
                TYPE_REGISTRATION_ID,
                text("registration ID", &inputs.registration_id)?,
            ),
        ];
        Ok(Self {
            entries: data
                .into_iter()
                .map(|(tlv_type, data)| TlvEntry {
                    offset: 0,
                    flags: 0,
                    tlv_type,
                    subtype: 0,
                    data,
                })
                .collect(),
        })
    }

    /// The partition image of `size` bytes (a multiple of the 4 KiB flash sector): the entries
    /// from offset 0, the integrity entry over them, then erased flash.
    pub fn to_bytes(&self, size: usize) -> Result<Vec<u8>, SecureCertError> {
        if size == 0 || !size.is_multiple_of(4096) {
            return Err(SecureCertError::BadSize(size));
        }
        let mut out = Vec::with_capacity(size);
        for e in self.entries.iter().filter(|e| e.tlv_type != TYPE_INTEGRITY) {
            out.extend(encode_entry(
                type_name(e.tlv_type),
                e.tlv_type,
                e.subtype,
                e.flags,
                &e.data,
            )?);
        }
        let digest = Sha256::digest(&out);
        out.extend(encode_entry("integrity", TYPE_INTEGRITY, 0, 0, &digest)?);
        if out.len() > size {
            return Err(SecureCertError::NoRoom {
                needed: out.len(),
                size,
            });
        }
        out.resize(size, 0xFF);
        Ok(out)
    }

    /// Reads an image: every entry's CRC checked, stopping at erased flash as the chip does.
    /// Never panics, whatever the bytes.
    pub fn parse(image: &[u8]) -> Result<Self, SecureCertError> {
        let word = |at: usize| -> Option<u32> {
            let b = image.get(at..at.checked_add(4)?)?;
            Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        };
        if image.iter().all(|&b| b == 0xFF) {
            return Err(SecureCertError::Erased);
        }
        let first = word(0).unwrap_or(0);
        if first != TLV_MAGIC {
            return Err(SecureCertError::NotTlv { found: first });
        }
        let mut entries: Vec<TlvEntry> = Vec::new();
        let mut at = 0usize;
        while at < image.len() {
            match word(at) {
                Some(TLV_MAGIC) => {}
                _ => {
                    // The end of the entries: the rest must be erased flash.
                    if image[at..].iter().all(|&b| b == 0xFF) {
                        break;
                    }
                    return Err(SecureCertError::Garbage { offset: at });
                }
            }
            let header = image
                .get(at..at + HEADER_LEN)
                .ok_or(SecureCertError::Truncated {
                    offset: at,
                    tlv_type: 0xFF,
                })?;
            let (flags, tlv_type, subtype) = (header[4], header[8], header[9]);
            let len = usize::from(u16::from_le_bytes([header[10], header[11]]));
            let body = HEADER_LEN + len + padding(len);
            let end = at + body + FOOTER_LEN;
            let whole = image.get(at..end).ok_or(SecureCertError::Truncated {
                offset: at,
                tlv_type,
            })?;
            let stored = u32::from_le_bytes([
                whole[body],
                whole[body + 1],
                whole[body + 2],
                whole[body + 3],
            ]);
            let computed = crc32_esp(&whole[..body]);
            if stored != computed {
                return Err(SecureCertError::Crc {
                    offset: at,
                    tlv_type,
                    stored,
                    computed,
                });
            }
            if tlv_type == TYPE_INTEGRITY
                && whole[HEADER_LEN..HEADER_LEN + len] != Sha256::digest(&image[..at])[..]
            {
                return Err(SecureCertError::Integrity { offset: at });
            }
            if entries
                .iter()
                .any(|e| e.tlv_type == tlv_type && e.subtype == subtype)
            {
                return Err(SecureCertError::Duplicate { tlv_type, subtype });
            }
            entries.push(TlvEntry {
                offset: at,
                flags,
                tlv_type,
                subtype,
                data: whole[HEADER_LEN..HEADER_LEN + len].to_vec(),
            });
            at = end;
        }
        Ok(Self { entries })
    }

    /// The entry of `tlv_type`, subtype 0.
    pub fn entry(&self, tlv_type: u8) -> Option<&TlvEntry> {
        self.entries
            .iter()
            .find(|e| e.tlv_type == tlv_type && e.subtype == 0)
    }

    /// A text entry (certificate PEM or user data) without its NUL terminator.
    pub fn text(&self, tlv_type: u8) -> Option<String> {
        let data = &self.entry(tlv_type)?.data;
        let end = data.iter().position(|&b| b == 0).unwrap_or(data.len());
        String::from_utf8(data[..end].to_vec()).ok()
    }

    /// What the key entry holds, said without its bytes: "P-256, present", or why not.
    pub fn key_summary(&self) -> String {
        match self.entry(TYPE_PRIV_KEY) {
            None => "absent".into(),
            Some(e) if e.flags & 0x80 != 0 => "HMAC-encrypted (eFuse key), present".into(),
            Some(e) if e.flags & 0x40 != 0 => "HMAC-derived ECDSA (eFuse key)".into(),
            Some(e) if e.flags & 0x08 != 0 => "ECDSA peripheral (eFuse key)".into(),
            Some(_) => match self.text(TYPE_PRIV_KEY) {
                Some(t) if SecretKey::from_sec1_pem(&t).is_ok() => "P-256, present".into(),
                Some(t) if SecretKey::from_pkcs8_pem(&t).is_ok() => "P-256, present".into(),
                _ => "present, not a P-256 key in PEM".into(),
            },
        }
    }
}

/// The name of a TLV type, as Espressif's headers call it.
pub fn type_name(tlv_type: u8) -> &'static str {
    match tlv_type {
        0 => "CA certificate",
        1 => "device certificate",
        2 => "private key",
        3 => "DS data",
        4 => "DS context",
        5 => "HMAC-ECDSA key salt",
        6 => "security config",
        7 => "TEE secure storage key",
        8 => "signature block",
        9 => "integrity",
        51 => "user data 1 (ID scope)",
        52 => "user data 2 (endpoint)",
        53 => "user data 3 (registration ID)",
        54 => "user data 4 (DPS symmetric key)",
        55 => "user data 5",
        _ => "unknown type",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> SecureCertInputs {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(vec![]).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let dev = rcgen::CertificateParams::new(vec!["dev-1".into()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        SecureCertInputs {
            ca_pem: ca.pem(),
            device_pem: dev.pem(),
            key_pem: SecretString::new(key.serialize_pem()),
            id_scope: "0ne00000001".into(),
            endpoint: "global.azure-devices-provisioning.net".into(),
            registration_id: "dev-1".into(),
        }
    }

    #[test]
    fn crc_matches_zlib_with_espressifs_seed() {
        // zlib.crc32(b"123456789", 0xffffffff), as the tool and esp_crc32_le compute it.
        assert_eq!(crc32_esp(b"123456789"), 0xD202_D277);
    }

    #[test]
    fn an_image_reads_back_what_was_written() {
        let inputs = inputs();
        let image = SecureCertImage::from_inputs(&inputs)
            .unwrap()
            .to_bytes(DEFAULT_PARTITION_SIZE)
            .unwrap();
        assert_eq!(image.len(), DEFAULT_PARTITION_SIZE);
        assert_eq!(&image[..4], &[0x11, 0xBA, 0x5E, 0xBA]);
        let back = SecureCertImage::parse(&image).unwrap();
        assert_eq!(back.entries.len(), 7);
        assert_eq!(back.entries[6].tlv_type, TYPE_INTEGRITY);
        for e in &back.entries {
            assert_eq!(e.offset % ALIGNMENT, 0, "entries start 16-aligned");
        }
        assert_eq!(back.text(TYPE_ID_SCOPE).unwrap(), "0ne00000001");
        assert_eq!(back.text(TYPE_REGISTRATION_ID).unwrap(), "dev-1");
        assert_eq!(
            back.text(TYPE_DEV_CERT).unwrap().trim(),
            inputs.device_pem.trim()
        );
        assert_eq!(back.key_summary(), "P-256, present");
        assert!(!format!("{back:?}").contains("PRIVATE KEY"));
        assert!(
            back.text(TYPE_PRIV_KEY)
                .unwrap()
                .starts_with("-----BEGIN EC PRIVATE KEY-----")
        );
    }

    #[test]
    fn a_flipped_bit_is_a_crc_error_naming_the_entry() {
        let mut image = SecureCertImage::from_inputs(&inputs())
            .unwrap()
            .to_bytes(DEFAULT_PARTITION_SIZE)
            .unwrap();
        image[40] ^= 1;
        match SecureCertImage::parse(&image) {
            Err(SecureCertError::Crc {
                offset: 0,
                tlv_type: TYPE_DEV_CERT,
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_entry_swapped_with_a_valid_crc_fails_the_integrity_check() {
        let mut image = SecureCertImage::from_inputs(&inputs())
            .unwrap()
            .to_bytes(DEFAULT_PARTITION_SIZE)
            .unwrap();
        let parsed = SecureCertImage::parse(&image).unwrap();
        let at = parsed.entry(TYPE_REGISTRATION_ID).unwrap().offset;
        let forged = encode_entry("registration ID", TYPE_REGISTRATION_ID, 0, 0, b"dev-2").unwrap();
        image[at..at + forged.len()].copy_from_slice(&forged);
        assert!(matches!(
            SecureCertImage::parse(&image),
            Err(SecureCertError::Integrity { .. })
        ));
        // Re-serialising a parsed image keeps one integrity entry, recomputed.
        let again = parsed.to_bytes(DEFAULT_PARTITION_SIZE).unwrap();
        assert_eq!(SecureCertImage::parse(&again).unwrap().entries.len(), 7);
    }

    #[test]
    fn a_partition_too_small_says_how_much_is_needed() {
        let mut big = inputs();
        big.endpoint = "e".repeat(4000);
        let built = SecureCertImage::from_inputs(&big).unwrap();
        assert!(built.to_bytes(8192).is_ok());
        assert!(matches!(
            built.to_bytes(4096),
            Err(SecureCertError::NoRoom { size: 4096, .. })
        ));
        assert!(matches!(
            built.to_bytes(5000),
            Err(SecureCertError::BadSize(5000))
        ));
    }

    #[test]
    fn an_erased_or_foreign_partition_says_so() {
        assert!(matches!(
            SecureCertImage::parse(&[0xFF; 8192]),
            Err(SecureCertError::Erased)
        ));
        assert!(matches!(
            SecureCertImage::parse(&[]),
            Err(SecureCertError::Erased)
        ));
        assert!(matches!(
            SecureCertImage::parse(b"\x78\x56\x34\x12 legacy cust_flash"),
            Err(SecureCertError::NotTlv { found: 0x1234_5678 })
        ));
    }

    #[test]
    fn a_key_that_is_not_p256_pem_is_refused() {
        let mut bad = inputs();
        bad.key_pem = SecretString::new(bad.ca_pem.clone());
        let err = SecureCertImage::from_inputs(&bad).unwrap_err();
        assert!(err.to_string().contains("private key"), "{err}");
    }

    #[test]
    fn random_and_mutated_bytes_never_panic() {
        use rand::{RngExt as _, SeedableRng};
        let good = SecureCertImage::from_inputs(&inputs())
            .unwrap()
            .to_bytes(DEFAULT_PARTITION_SIZE)
            .unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(16);
        for round in 0..2000 {
            let bytes: Vec<u8> = if round % 2 == 0 {
                let mut b = good.clone();
                b.truncate(rng.random_range(0..=good.len()));
                for _ in 0..rng.random_range(1..8) {
                    if b.is_empty() {
                        break;
                    }
                    let i = rng.random_range(0..b.len());
                    b[i] = rng.random();
                }
                b
            } else {
                let mut b = TLV_MAGIC.to_le_bytes().to_vec();
                b.extend((0..rng.random_range(0..64)).map(|_| rng.random::<u8>()));
                b
            };
            let _ = SecureCertImage::parse(&bytes);
        }
    }
}
