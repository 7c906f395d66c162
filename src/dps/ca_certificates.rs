//! CA certificates of a DPS instance, for X.509 enrollment groups that name their CA by
//! `caReferences` (a *verified* CA) instead of carrying it as a signing certificate.
//!
//! DPS manages these on its Azure Resource Manager API (`az iot dps certificate create | show |
//! generate-verification-code | verify`), not on the service API this client otherwise speaks;
//! the calls here are the project's DPS emulator's model of them (`/certificates/{name}` on the
//! service endpoint, same SAS: docs/dps-emulator.md, "CA certificates"). Against a real DPS the
//! endpoints do not exist (404): upload and verify the CA with the Azure CLI or portal, then name
//! it with `--ca-name` so that only the group refers to it.

use reqwest::Method;
use serde::Deserialize;

use super::client::{DpsClient, Op, to_body};
use super::enrollments::request;
use super::error::DpsError;
use super::sas::percent_encode;

fn path(name: &str) -> String {
    format!("/certificates/{}", percent_encode(name))
}

fn target(name: &str) -> String {
    format!("CA certificate '{name}'")
}

/// A CA certificate as the instance holds it.
#[derive(Debug, Clone, Deserialize)]
pub struct CaCertificate {
    /// Its name (what `caReferences` name).
    pub name: String,
    /// Changes with every change.
    pub etag: String,
    /// What the instance says about it.
    pub properties: CaCertificateProperties,
}

/// The properties of a [`CaCertificate`].
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CaCertificateProperties {
    /// Subject DN.
    #[serde(default)]
    pub subject: String,
    /// SHA-256 thumbprint, hex.
    #[serde(default)]
    pub thumbprint: String,
    /// Whether the instance uses it (possession proven, or uploaded verified).
    #[serde(default)]
    pub is_verified: bool,
    /// The code a proof-of-possession certificate must carry as its CN, once generated.
    #[serde(default)]
    pub verification_code: Option<String>,
}

impl DpsClient {
    /// Uploads (or replaces) the CA certificate `name` (PEM). `verified` uploads it already
    /// verified: for a CA whose key the owner does not hold but vouches for (Microchip's
    /// Trust&GO signer, checked against the manifest's signer first); otherwise possession is
    /// proven with [`Self::ca_verification_code`] and [`Self::verify_ca_certificate`].
    pub fn upload_ca_certificate(
        &self,
        name: &str,
        certificate_pem: &str,
        verified: bool,
    ) -> Result<CaCertificate, DpsError> {
        let target = target(name);
        let op = Op {
            operation: "upload",
            target: &target,
        };
        let body = to_body(
            &op,
            &serde_json::json!({ "certificate": certificate_pem, "isVerified": verified }),
        )?;
        self.execute_json(&op, &request(Method::PUT, path(name), None, Some(body)))
    }

    /// Reads the CA certificate `name`, `None` when the instance holds none by that name.
    pub fn find_ca_certificate(&self, name: &str) -> Result<Option<CaCertificate>, DpsError> {
        let target = target(name);
        let op = Op {
            operation: "read",
            target: &target,
        };
        match self.execute_json(&op, &request(Method::GET, path(name), None, None)) {
            Ok(c) => Ok(Some(c)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Asks for a verification code: the CN of the certificate that proves possession.
    pub fn ca_verification_code(&self, name: &str) -> Result<String, DpsError> {
        let target = target(name);
        let op = Op {
            operation: "generate a verification code for",
            target: &target,
        };
        let answer: CaCertificate = self.execute_json(
            &op,
            &request(
                Method::POST,
                format!("{}/generateVerificationCode", path(name)),
                None,
                None,
            ),
        )?;
        answer
            .properties
            .verification_code
            .ok_or_else(|| DpsError::UnexpectedAnswer {
                operation: op.operation.to_string(),
                target: target.clone(),
                status: 200,
                detail: "the answer carries no verificationCode".into(),
            })
    }

    /// Proves possession of the CA's key: `verification_pem` has the verification code as its
    /// CN and was signed by the CA's key.
    pub fn verify_ca_certificate(
        &self,
        name: &str,
        verification_pem: &str,
    ) -> Result<CaCertificate, DpsError> {
        let target = target(name);
        let op = Op {
            operation: "verify",
            target: &target,
        };
        let body = to_body(&op, &serde_json::json!({ "certificate": verification_pem }))?;
        self.execute_json(
            &op,
            &request(
                Method::POST,
                format!("{}/verify", path(name)),
                None,
                Some(body),
            ),
        )
    }
}
