//! Whether an enrollment DPS already holds is the one we meant to create. This is what makes
//! re-sends idempotent: a create that landed before its answer was lost is recognised instead of
//! reported as a conflict, and a different enrollment under the same ID is never taken for ours.
//!
//! DPS does not echo everything back: GET hides symmetric keys (so they are fetched with the
//! attestation-mechanism call), and may return a certificate only as its `info`; then the
//! SHA-256 thumbprint of the PEM we sent is compared with the one DPS computed. When nothing
//! comparable is returned, the answer is "not the same": nothing is confirmed on a guess.

use crate::identity::cert_info;

use super::error::DpsError;
use super::model::{
    AttestationMechanism, AttestationType, X509CertificateWithInfo, X509Certificates,
};

/// Compares what we send with what DPS holds; `fetch_keys` is called only for symmetric keys.
pub(crate) fn same_attestation(
    wanted: &AttestationMechanism,
    found: &AttestationMechanism,
    fetch_keys: impl FnOnce() -> Result<AttestationMechanism, DpsError>,
) -> Result<bool, DpsError> {
    if wanted.kind != found.kind {
        return Ok(false);
    }
    Ok(match wanted.kind {
        AttestationType::None => true,
        AttestationType::Tpm => match (&wanted.tpm, &found.tpm) {
            (Some(w), Some(f)) => w.endorsement_key.trim() == f.endorsement_key.trim(),
            _ => false,
        },
        AttestationType::X509 => {
            let (Some(w), Some(f)) = (&wanted.x509, &found.x509) else {
                return Ok(false);
            };
            same_certs(&w.client_certificates, &f.client_certificates)
                && same_certs(&w.signing_certificates, &f.signing_certificates)
                && match (&w.ca_references, &f.ca_references) {
                    (None, _) => true,
                    (Some(wr), Some(fr)) => {
                        eq_opt_ci(&wr.primary, &fr.primary)
                            && (wr.secondary.is_none() || eq_opt_ci(&wr.secondary, &fr.secondary))
                    }
                    (Some(_), None) => false,
                }
        }
        AttestationType::SymmetricKey => {
            let wanted_keys = wanted.symmetric_key.clone().unwrap_or_default();
            if wanted_keys.primary_key.is_none() && wanted_keys.secondary_key.is_none() {
                // We asked DPS to generate keys: any keys it holds are the ones it made for us.
                return Ok(true);
            }
            let full = fetch_keys()?;
            let found_keys = full.symmetric_key.unwrap_or_default();
            let same = |w: &Option<crate::secret::SecretString>,
                        f: &Option<crate::secret::SecretString>| match (w, f)
            {
                (None, _) => true,
                (Some(w), Some(f)) => w.expose().trim() == f.expose().trim(),
                (Some(_), None) => false,
            };
            same(&wanted_keys.primary_key, &found_keys.primary_key)
                && same(&wanted_keys.secondary_key, &found_keys.secondary_key)
        }
    })
}

fn eq_opt_ci(a: &Option<String>, b: &Option<String>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
        (None, None) => true,
        _ => false,
    }
}

fn same_certs(wanted: &Option<X509Certificates>, found: &Option<X509Certificates>) -> bool {
    let Some(w) = wanted else {
        return true;
    };
    let Some(f) = found else {
        return false;
    };
    same_cert(&w.primary, &f.primary)
        && (w.secondary.is_none() || same_cert(&w.secondary, &f.secondary))
}

fn same_cert(
    wanted: &Option<X509CertificateWithInfo>,
    found: &Option<X509CertificateWithInfo>,
) -> bool {
    let (Some(w), Some(f)) = (wanted, found) else {
        return wanted.is_none() && found.is_none();
    };
    let Some(wanted_thumb) = w.certificate.as_deref().and_then(sha256_thumbprint) else {
        return false;
    };
    if let Some(found_thumb) = f.certificate.as_deref().and_then(sha256_thumbprint) {
        return found_thumb == wanted_thumb;
    }
    f.info
        .as_ref()
        .is_some_and(|info| info.sha256_thumbprint.eq_ignore_ascii_case(&wanted_thumb))
}

/// Upper-case hex SHA-256 of a certificate given as PEM, base64 of PEM, or base64 of DER (the
/// three encodings DPS accepts).
pub fn sha256_thumbprint(certificate: &str) -> Option<String> {
    let der = cert_info::der_from_dps_certificate_field(certificate).ok()?;
    Some(cert_info::sha256_thumbprint(&der))
}
