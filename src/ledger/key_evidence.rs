//! What a device said about a key it made (schema v4): the CSR and the device's attestation of
//! it (an nRF91's COSE_Sign1), one row per identity, recorded with the identity.

use rusqlite::{OptionalExtension, params};

use super::error::classify;
use super::{IdentityId, Ledger, LedgerError, LedgerWriter};

/// The CSR a device made with its key, and the device's signed statement about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyEvidence {
    /// The PKCS#10 request, DER.
    pub csr_der: Vec<u8>,
    /// The device's attestation of the CSR (encoded as the device sent it), if it gives one.
    pub attestation: Option<Vec<u8>>,
}

impl LedgerWriter<'_> {
    /// Keeps `evidence` with identity `identity` (in the transaction that records it), replacing
    /// what an earlier issue of the same identity kept (a reissue).
    pub fn record_key_evidence(
        &self,
        identity: IdentityId,
        evidence: &KeyEvidence,
    ) -> Result<(), LedgerError> {
        self.tx
            .execute(
                // A reissue keeps the identity's row and replaces its key: the evidence of the new
                // key replaces the old one's.
                "INSERT INTO key_evidence (identity_id, csr_der, attestation, created_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (identity_id) DO UPDATE SET csr_der = excluded.csr_der,
                 attestation = excluded.attestation, created_at = excluded.created_at",
                params![identity.0, evidence.csr_der, evidence.attestation, self.now],
            )
            .map(|_| ())
            .map_err(|e| classify(self.path, "recording a device's key evidence", e))
    }
}

impl Ledger {
    /// The key evidence kept with identity `identity`, if its device gave any.
    pub fn key_evidence(&self, identity: IdentityId) -> Result<Option<KeyEvidence>, LedgerError> {
        self.conn
            .query_row(
                "SELECT csr_der, attestation FROM key_evidence WHERE identity_id = ?1",
                [identity.0],
                |r| {
                    Ok(KeyEvidence {
                        csr_der: r.get(0)?,
                        attestation: r.get(1)?,
                    })
                },
            )
            .optional()
            .map_err(|e| classify(&self.path, "reading a device's key evidence", e))
    }
}
