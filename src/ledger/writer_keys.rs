//! The security officer's writes: HSM key-injection sessions opened and closed, and the CA
//! certificates made or imported in them, each with its audit row in the same transaction.

use rusqlite::{OptionalExtension, params};
use serde_json::json;

use super::certificate;
use super::error::LedgerError;
use super::queries;
use super::types::*;
use super::writer::{LedgerWriter, non_empty, upsert_operator};

impl LedgerWriter<'_> {
    /// Opens an HSM key-injection session (audited under the session's operator).
    pub fn open_key_session(&self, session: &NewKeySession) -> Result<KeySessionId, LedgerError> {
        non_empty("key session operator", &session.operator)?;
        non_empty("token label", &session.token_label)?;
        self.tx
            .execute(
                "INSERT INTO key_sessions (operator, token_label, token_serial, token_model,
                   station_id, opened_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    session.operator,
                    session.token_label,
                    session.token_serial,
                    session.token_model,
                    self.ctx.station_id,
                    self.now
                ],
            )
            .map_err(self.sql("opening a key session"))?;
        let id = self.tx.last_insert_rowid();
        self.audit_as(
            &session.operator,
            "key_session.opened",
            &format!("token:{}", session.token_label),
            &json!({
                "key_session": id,
                "token_label": session.token_label,
                "token_serial": session.token_serial,
                "token_model": session.token_model,
            }),
        )?;
        Ok(KeySessionId(id))
    }

    /// Closes a key-injection session.
    pub fn close_key_session(&self, id: KeySessionId) -> Result<(), LedgerError> {
        let row: Option<(String, String, Option<String>)> = self
            .tx
            .query_row(
                "SELECT operator, token_label, closed_at FROM key_sessions WHERE id = ?1",
                [id.0],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(self.sql("looking up a key session"))?;
        let Some((operator, token_label, closed_at)) = row else {
            return Err(LedgerError::UnknownRecord {
                path: self.path.to_path_buf(),
                what: "key session",
                id: id.0,
            });
        };
        if let Some(at) = closed_at {
            return Err(LedgerError::AlreadyFinished {
                what: "key session",
                id: id.0,
                state: format!("closed (at {at})"),
            });
        }
        self.tx
            .execute(
                "UPDATE key_sessions SET closed_at = ?2 WHERE id = ?1",
                params![id.0, self.now],
            )
            .map_err(self.sql("closing a key session"))?;
        self.audit_as(
            &operator,
            "key_session.closed",
            &format!("token:{token_label}"),
            &json!({ "key_session": id.0 }),
        )?;
        Ok(())
    }

    /// Records a CA certificate whose key lives in an HSM (or, for development, in software).
    pub fn record_ca_certificate(
        &self,
        ca: &NewCaCertificate,
        session: Option<KeySessionId>,
    ) -> Result<CaCertificateId, LedgerError> {
        non_empty("CA certificate name", &ca.name)?;
        let lower_uri = ca.key_uri.to_ascii_lowercase();
        if lower_uri.contains("pin-value") {
            return Err(LedgerError::Refused {
                what: format!("CA certificate {}", ca.name),
                reason: "its key URI carries a PIN (pin-value); record the URI without it".into(),
            });
        }
        if queries::find_ca_certificate(self.tx, &ca.name)
            .map_err(self.sql("looking up a CA certificate"))?
            .is_some()
        {
            return Err(LedgerError::DuplicateCaCertificate {
                path: self.path.to_path_buf(),
                name: ca.name.clone(),
            });
        }
        let facts = certificate::facts(&ca.certificate_der).map_err(|detail| {
            LedgerError::InvalidCertificate {
                subject: format!("CA {}", ca.name),
                detail,
            }
        })?;
        self.tx
            .execute(
                "INSERT INTO ca_certificates (name, role, key_uri, certificate_der, sha1_thumbprint,
                   sha256_thumbprint, subject, issuer, cert_serial, not_before, not_after,
                   key_session_id, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                params![
                    ca.name,
                    ca.role.as_str(),
                    ca.key_uri,
                    ca.certificate_der,
                    facts.sha1_thumbprint,
                    facts.sha256_thumbprint,
                    facts.subject,
                    facts.issuer,
                    facts.serial,
                    facts.not_before,
                    facts.not_after,
                    session.map(|s| s.0),
                    self.now
                ],
            )
            .map_err(self.sql("recording a CA certificate"))?;
        let id = self.tx.last_insert_rowid();
        self.audit(
            "ca_certificate.recorded",
            &format!("ca:{}", ca.name),
            json!({
                "role": ca.role.as_str(),
                "key_uri": ca.key_uri,
                "sha256_thumbprint": facts.sha256_thumbprint,
                "subject": facts.subject,
                "key_session": session.map(|s| s.0),
            }),
        )?;
        Ok(CaCertificateId(id))
    }

    /// Notes an operator change at a running station (a new shift).
    pub(crate) fn record_operator(&self, operator: &str) -> Result<i64, LedgerError> {
        upsert_operator(self.tx, operator, &self.now).map_err(self.sql("recording an operator"))
    }
}
