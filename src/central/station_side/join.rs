//! Joining a central service (`dps-station central join URL --token TOKEN`).
//!
//! The token (`dpsc1.<token_id>.<secret>.<ca_sha256_hex>`, printed once by `central token create`)
//! authenticates the request and pins the service's CA: the station connects trusting only a CA
//! whose DER has that SHA-256, found in the chain the server presents. It sends a CSR for a key
//! it made (in its HSM token where it has one, else an owner-only PEM file), and keeps what the
//! service answers: its client certificate, the CA, the receipt signer's certificate. Then
//! `[central]` is written into station.toml with `toml_edit`, keeping the file's comments.
//!
//! The token's secret is never logged or stored: [`JoinToken`]'s `Debug` leaves it out.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::https::HttpsLink;
use super::tls::{Trust, client_config, pem_certificates};
use crate::central::link::LinkError;
use crate::central::signing::SignerCertificate;
use crate::central::wire::{JoinRequest, JoinResponse, paths};
use crate::identity::rcgen_signer::RcgenSigner;
use crate::identity::signer::CaSigner;
use crate::station::config::central::EnrollmentSite;

/// Why joining did not complete. Nothing is written to station.toml unless it did.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error(
        "the join token is not valid ({0}); copy the whole token `dps-station central token create` printed (dpsc1.ID.SECRET.CA-SHA256)"
    )]
    BadToken(String),
    #[error("joining {url} failed: {source}")]
    Link {
        url: String,
        #[source]
        source: LinkError,
    },
    #[error(
        "the service at {url} answered with a CA certificate whose SHA-256 is {found}, not the {expected} the token names; do not use this service, ask its administrator"
    )]
    CaMismatch {
        url: String,
        found: String,
        expected: String,
    },
    #[error("the service's answer cannot be used ({0}); report it to its administrator")]
    BadAnswer(String),
    #[error("cannot make the certificate request for station {station}: {reason}")]
    Csr { station: String, reason: String },
    #[error("cannot write {path}: {reason}")]
    Write { path: PathBuf, reason: String },
}

/// A parsed join token.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// The token's id (safe to show).
    pub token_id: String,
    /// The SHA-256 (lowercase hex) of the service CA's DER.
    pub ca_sha256: String,
    whole: String,
}

impl std::fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        f.debug_struct("JoinToken")
            .field("token_id", &self.token_id)
            .field("ca_sha256", &self.ca_sha256)
            .finish_non_exhaustive()
    }
}

impl JoinToken {
    /// Parses `dpsc1.<token_id>.<secret>.<ca_sha256_hex>`.
    pub fn parse(text: &str) -> Result<Self, JoinError> {
        let text = text.trim();
        let parts: Vec<&str> = text.split('.').collect();
        let [prefix, id, secret, sha] = parts.as_slice() else {
            return Err(JoinError::BadToken(format!(
                "it has {} dot-separated parts, a token has 4",
                parts.len()
            )));
        };
        if *prefix != "dpsc1" {
            return Err(JoinError::BadToken(
                "it does not start with dpsc1.".to_string(),
            ));
        }
        if id.is_empty() || secret.is_empty() {
            return Err(JoinError::BadToken("its id or secret is empty".into()));
        }
        if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(JoinError::BadToken(
                "its last part is not a SHA-256 (64 hex digits)".into(),
            ));
        }
        Ok(Self {
            token_id: id.to_string(),
            ca_sha256: sha.to_ascii_lowercase(),
            whole: text.to_string(),
        })
    }
}

/// Where the station's client key lives, as `[central]` records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyLocation {
    /// An owner-only PEM file.
    File(PathBuf),
    /// A PKCS#11 URI in the station's token (no PIN in it).
    Token(String),
}

/// What a completed join stored, and where.
#[derive(Debug, Clone)]
pub struct Joined {
    pub station_id: String,
    pub url: String,
    pub client_certificate: PathBuf,
    pub ca_certificate: PathBuf,
    pub signer_certificate: PathBuf,
    pub key: KeyLocation,
}

/// Joins the service at `url` with `token` as `station_id`, with `key` (already made), storing the
/// answer's certificates in `dir`.
pub fn join(
    url: &str,
    token: &JoinToken,
    station_id: &str,
    key: Arc<dyn CaSigner>,
    key_location: KeyLocation,
    dir: &Path,
) -> Result<Joined, JoinError> {
    let url = url.trim().trim_end_matches('/').to_string();
    let csr_pem = certificate_request(station_id, key.as_ref())?;
    let tls = client_config(
        Trust::PinnedCa {
            sha256: token.ca_sha256.clone(),
        },
        None,
    )
    .map_err(JoinError::BadAnswer)?;
    let link_err = |source| JoinError::Link {
        url: url.clone(),
        source,
    };
    let link = HttpsLink::with_tls(&url, tls).map_err(link_err)?;
    let answer: JoinResponse = link
        .post(
            paths::JOIN,
            &JoinRequest {
                token: token.whole.clone(),
                station_id: station_id.to_string(),
                csr_pem,
                station_time: crate::ledger::now(),
            },
        )
        .map_err(link_err)?;
    let ca = pem_certificates(&answer.ca_certificate_pem)
        .map_err(|e| JoinError::BadAnswer(format!("its CA certificate {e}")))?;
    let found = hex::encode(Sha256::digest(ca[0].as_ref()));
    if found != token.ca_sha256 {
        return Err(JoinError::CaMismatch {
            url,
            found,
            expected: token.ca_sha256.clone(),
        });
    }
    pem_certificates(&answer.client_certificate_pem)
        .map_err(|e| JoinError::BadAnswer(format!("the client certificate {e}")))?;
    let signer = pem_certificates(&answer.signer_certificate_pem)
        .map_err(|e| JoinError::BadAnswer(format!("the signer certificate {e}")))?;
    SignerCertificate::from_der(signer[0].as_ref())
        .map_err(|e| JoinError::BadAnswer(e.to_string()))?;
    if answer.station_id != station_id {
        return Err(JoinError::BadAnswer(format!(
            "it names station {}, this station asked as {station_id}",
            answer.station_id
        )));
    }
    std::fs::create_dir_all(dir).map_err(|e| JoinError::Write {
        path: dir.to_path_buf(),
        reason: e.to_string(),
    })?;
    let write = |name: &str, text: &str| -> Result<PathBuf, JoinError> {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| JoinError::Write {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        Ok(path)
    };
    let joined = Joined {
        station_id: station_id.to_string(),
        url,
        client_certificate: write("client.pem", &answer.client_certificate_pem)?,
        ca_certificate: write("ca.pem", &answer.ca_certificate_pem)?,
        signer_certificate: write("signer.pem", &answer.signer_certificate_pem)?,
        key: key_location,
    };
    tracing::info!(station = %station_id, url = %joined.url, token = %token.token_id, "joined the central service");
    Ok(joined)
}

/// A PKCS#10 request, PEM, CN = the station id, signed by `key` wherever it lives.
pub fn certificate_request(station_id: &str, key: &dyn CaSigner) -> Result<String, JoinError> {
    let csr_err = |reason: String| JoinError::Csr {
        station: station_id.to_string(),
        reason,
    };
    let mut params =
        rcgen::CertificateParams::new(Vec::<String>::new()).map_err(|e| csr_err(e.to_string()))?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, station_id);
    let signer = RcgenSigner::new(key);
    let csr = params.serialize_request(&signer).map_err(|e| {
        csr_err(match signer.take_error() {
            Some(err) => err.to_string(),
            None => e.to_string(),
        })
    })?;
    csr.pem().map_err(|e| csr_err(e.to_string()))
}

/// Writes (or replaces) `[central]` in station.toml, keeping everything else as it was. Paths
/// under the file's directory are written relative to it.
pub fn write_central_section(
    station_toml: &Path,
    joined: &Joined,
    enrollment: EnrollmentSite,
) -> Result<(), JoinError> {
    let werr = |reason: String| JoinError::Write {
        path: station_toml.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(station_toml).map_err(|e| werr(e.to_string()))?;
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .map_err(|e: toml_edit::TomlError| werr(format!("it is not valid TOML: {e}")))?;
    let base = station_toml.parent().unwrap_or(Path::new("."));
    let rel = |p: &Path| -> String {
        p.strip_prefix(base)
            .unwrap_or(p)
            .to_string_lossy()
            .into_owned()
    };
    let mut table = toml_edit::Table::new();
    table
        .decor_mut()
        .set_prefix("\n# The central ledger this station joined (`dps-station central join`).\n");
    table["url"] = toml_edit::value(&joined.url);
    table["station_id"] = toml_edit::value(&joined.station_id);
    table["client_certificate"] = toml_edit::value(rel(&joined.client_certificate));
    match &joined.key {
        KeyLocation::File(p) => table["client_key"] = toml_edit::value(rel(p)),
        KeyLocation::Token(uri) => table["client_key_uri"] = toml_edit::value(uri),
    }
    table["ca_certificate"] = toml_edit::value(rel(&joined.ca_certificate));
    table["signer_certificate"] = toml_edit::value(rel(&joined.signer_certificate));
    table["enrollment"] = toml_edit::value(enrollment.as_str());
    doc["central"] = toml_edit::Item::Table(table);
    let tmp = station_toml.with_extension("toml.new");
    std::fs::write(&tmp, doc.to_string()).map_err(|e| werr(e.to_string()))?;
    std::fs::rename(&tmp, station_toml).map_err(|e| werr(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_parses_and_its_debug_never_shows_the_secret() {
        let sha = "ab".repeat(32);
        let t = JoinToken::parse(&format!(" dpsc1.t-1.s3cr3t-value.{sha}\n")).unwrap();
        assert_eq!(t.token_id, "t-1");
        assert_eq!(t.ca_sha256, sha);
        assert!(!format!("{t:?}").contains("s3cr3t"));
        for bad in [
            "dpsc1.a.b",
            &format!("dpsc2.a.b.{sha}"),
            "dpsc1.a.b.xyz",
            &format!("dpsc1..b.{sha}"),
        ] {
            assert!(
                matches!(JoinToken::parse(bad), Err(JoinError::BadToken(_))),
                "{bad}"
            );
        }
    }
}
