//! PEM text in and out: certificates, CSRs and keys travel between the station, files, devices and
//! DPS as PEM, while everything inside the station works on DER.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// PEM labels the station writes and reads.
pub mod label {
    /// An X.509 certificate.
    pub const CERTIFICATE: &str = "CERTIFICATE";
    /// A PKCS#10 certificate signing request (`openssl req` writes this one).
    pub const CERTIFICATE_REQUEST: &str = "CERTIFICATE REQUEST";
    /// The older CSR label some tools still write.
    pub const NEW_CERTIFICATE_REQUEST: &str = "NEW CERTIFICATE REQUEST";
    /// An unencrypted PKCS#8 private key.
    pub const PRIVATE_KEY: &str = "PRIVATE KEY";
    /// An encrypted PKCS#8 private key.
    pub const ENCRYPTED_PRIVATE_KEY: &str = "ENCRYPTED PRIVATE KEY";
    /// A SEC1 EC private key (`openssl ecparam -genkey` writes this one).
    pub const EC_PRIVATE_KEY: &str = "EC PRIVATE KEY";
}

/// One decoded PEM block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PemBlock {
    /// The label between `BEGIN ` and the dashes, e.g. `CERTIFICATE`.
    pub label: String,
    /// The decoded DER.
    pub der: Vec<u8>,
}

/// Why PEM text could not be read. Line numbers are 1-based.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PemError {
    /// No `-----BEGIN …-----` line at all.
    #[error("no PEM block found (no \"-----BEGIN ...-----\" line); is this a DER file?")]
    NoBlock,
    /// PEM blocks, but none of the kind wanted (a key where a certificate was expected).
    #[error("the PEM text holds {found}, not {wanted}")]
    WrongKind {
        /// The labels found, e.g. `"PRIVATE KEY"`.
        found: String,
        /// The labels wanted.
        wanted: String,
    },
    /// A block that never ends.
    #[error("the PEM block \"{label}\" that starts on line {line} has no matching END line")]
    Unterminated {
        /// The block's label.
        label: String,
        /// The line of its BEGIN.
        line: usize,
    },
    /// A block whose body is not base64.
    #[error("the PEM block \"{label}\" that starts on line {line} is not valid base64")]
    BadBase64 {
        /// The block's label.
        label: String,
        /// The line of its BEGIN.
        line: usize,
    },
}

/// Encodes DER as PEM with 64-character lines and a final newline, as openssl writes it.
pub fn encode(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut out = String::with_capacity(body.len() + body.len() / 64 + 2 * label.len() + 40);
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    let mut rest = body.as_str();
    while !rest.is_empty() {
        let (line, tail) = rest.split_at(rest.len().min(64));
        out.push_str(line);
        out.push('\n');
        rest = tail;
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
    out
}

/// Decodes every PEM block in `text`, ignoring anything between blocks (openssl's comment lines).
pub fn decode_all(text: &str) -> Result<Vec<PemBlock>, PemError> {
    let mut blocks = Vec::new();
    let mut current: Option<(String, usize, String)> = None;
    for (index, raw_line) in text.lines().enumerate() {
        let line = raw_line.trim();
        match &mut current {
            None => {
                if let Some(label) = line
                    .strip_prefix("-----BEGIN ")
                    .and_then(|rest| rest.strip_suffix("-----"))
                {
                    current = Some((label.to_owned(), index + 1, String::new()));
                }
            }
            Some((label, start, body)) => {
                if line.starts_with("-----END ") {
                    let der =
                        STANDARD
                            .decode(body.as_bytes())
                            .map_err(|_| PemError::BadBase64 {
                                label: label.clone(),
                                line: *start,
                            })?;
                    blocks.push(PemBlock {
                        label: std::mem::take(label),
                        der,
                    });
                    current = None;
                } else if !line.contains(':') {
                    // Lines with ':' are RFC 1421 headers (`Proc-Type: 4,ENCRYPTED`), not base64.
                    body.push_str(line);
                }
            }
        }
    }
    if let Some((label, line, _)) = current {
        return Err(PemError::Unterminated { label, line });
    }
    if blocks.is_empty() {
        return Err(PemError::NoBlock);
    }
    Ok(blocks)
}

/// Reads a file's bytes as DER: PEM text is decoded (the first block whose label is one of
/// `labels`), anything else is taken as DER. Lets every command accept either form.
pub fn der_from_pem_or_der(bytes: &[u8], labels: &[&str]) -> Result<Vec<u8>, PemError> {
    let looks_like_pem = bytes.windows(11).any(|w| w == b"-----BEGIN ");
    if !looks_like_pem {
        return Ok(bytes.to_vec());
    }
    let text = String::from_utf8_lossy(bytes);
    let blocks = decode_all(&text)?;
    let found: Vec<String> = blocks.iter().map(|b| format!("\"{}\"", b.label)).collect();
    blocks
        .into_iter()
        .find(|block| labels.contains(&block.label.as_str()))
        .map(|block| block.der)
        .ok_or_else(|| PemError::WrongKind {
            found: found.join(", "),
            wanted: labels
                .iter()
                .map(|l| format!("\"{l}\""))
                .collect::<Vec<_>>()
                .join(" or "),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_comments_between_blocks() {
        let a = encode("CERTIFICATE", &[1u8; 100]);
        let b = encode("CERTIFICATE", &[2u8; 3]);
        let text = format!("subject=CN = x\n{a}\nissuer=y\n{b}");
        let blocks = decode_all(&text).unwrap();
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0].der, vec![1u8; 100]);
        assert_eq!(blocks[1].der, vec![2u8; 3]);
        assert!(a.lines().all(|l| l.len() <= 64 || l.starts_with("-----")));
    }

    #[test]
    fn errors_name_the_block() {
        assert_eq!(decode_all("nothing"), Err(PemError::NoBlock));
        let err = decode_all("\n-----BEGIN CERTIFICATE-----\nAAAA\n").unwrap_err();
        assert_eq!(
            err,
            PemError::Unterminated {
                label: "CERTIFICATE".into(),
                line: 2
            }
        );
        let err = decode_all("-----BEGIN X-----\n*\n-----END X-----\n").unwrap_err();
        assert!(matches!(err, PemError::BadBase64 { .. }));
    }
}
