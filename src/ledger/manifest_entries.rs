//! Identities that came from a Trust&GO manifest (schema v5): the secure element's unique ID, its
//! device key and the manifest's provenance, one row per identity. The ledger knows no manifest
//! format: callers hand in what they verified.

use rusqlite::{OptionalExtension, params};
use serde_json::json;

use super::error::classify;
use super::{
    Attestation, IdentityId, Ledger, LedgerError, LedgerWriter, NewDevice, NewIdentity, Transition,
};

/// One verified manifest entry to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewManifestEntry {
    /// The DPS registration ID (the device certificate's CN, lowercase).
    pub registration_id: String,
    /// The secure element's serial (lowercase hex): also the device's serial number.
    pub unique_id: String,
    /// The part number (`ATECC608B-TNGTLS`): the device's model.
    pub part_number: String,
    /// The device certificate, DER.
    pub certificate_der: Vec<u8>,
    /// The device's public key (uncompressed point).
    pub public_key: Vec<u8>,
    /// The manifest file's name.
    pub manifest_file: String,
    /// Its SHA-256, lowercase hex.
    pub manifest_sha256: String,
    /// The manifest signer certificate's SHA-256 thumbprint.
    pub signer_thumbprint: String,
    /// The ledger batch of the import.
    pub batch: Option<super::BatchId>,
}

/// A recorded manifest entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestEntryRecord {
    /// The identity it gave.
    pub identity_id: IdentityId,
    /// Its registration ID.
    pub registration_id: String,
    /// Its state now (`written`, `enrolled`, ...).
    pub state: String,
    /// The secure element's serial.
    pub unique_id: String,
    /// The device key the line checks.
    pub public_key: Vec<u8>,
    /// The manifest file's name.
    pub manifest_file: String,
    /// Its SHA-256.
    pub manifest_sha256: String,
    /// The signer certificate's thumbprint.
    pub signer_thumbprint: String,
}

impl LedgerWriter<'_> {
    /// Records a secure element provisioned at Microchip: its device, its identity (X.509,
    /// `issued` then at once `written`: the element already holds key and certificate) and the
    /// manifest row, in the caller's transaction. A unique ID or registration ID the ledger
    /// already holds is refused ([`LedgerError::Refused`] / `DuplicateRegistrationId`).
    pub fn record_manifest_entry(
        &self,
        entry: &NewManifestEntry,
    ) -> Result<IdentityId, LedgerError> {
        if let Some(existing) = manifest_entry_by_unique_id(self.tx, &entry.unique_id)
            .map_err(|e| classify(self.path, "looking up a manifest entry", e))?
        {
            return Err(LedgerError::Refused {
                what: format!("secure element {}", entry.unique_id),
                reason: format!(
                    "it is already in the ledger as {} ({}), from manifest {}",
                    existing.registration_id, existing.state, existing.manifest_file
                ),
            });
        }
        let device = self.upsert_device(&NewDevice {
            model: entry.part_number.clone(),
            serial_number: entry.unique_id.clone(),
            hardware_id: Some(entry.unique_id.clone()),
            firmware: None,
            batch: entry.batch,
        })?;
        let id = self.record_issued(&NewIdentity {
            registration_id: entry.registration_id.clone(),
            batch: entry.batch,
            device: Some(device),
            attestation: Attestation::X509 {
                certificate_der: entry.certificate_der.clone(),
            },
        })?;
        self.transition(&entry.registration_id, &Transition::Written)?;
        self.tx
            .prepare_cached(
                "INSERT INTO manifest_entries (identity_id, unique_id, public_key, manifest_file,
                   manifest_sha256, signer_thumbprint, imported_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    id.0,
                    entry.unique_id,
                    entry.public_key,
                    entry.manifest_file,
                    entry.manifest_sha256,
                    entry.signer_thumbprint,
                    self.now
                ])
            })
            .map_err(|e| classify(self.path, "recording a manifest entry", e))?;
        Ok(id)
    }

    /// One audit row for a whole import: the file, its hash, the signer, what was recorded and
    /// what was refused (each identity has its own `identity.issued`/`written` rows).
    pub fn audit_manifest_import(
        &self,
        file: &str,
        sha256: &str,
        signer_thumbprint: &str,
        recorded: usize,
        refused: usize,
    ) -> Result<(), LedgerError> {
        let actor = self.ctx.operator.clone();
        self.append_audit(
            &actor,
            "manifest.imported",
            file,
            &json!({
                "sha256": sha256,
                "signer_thumbprint": signer_thumbprint,
                "recorded": recorded,
                "refused": refused,
            }),
        )
        .map(|_| ())
    }
}

fn manifest_entry_by_unique_id(
    conn: &rusqlite::Connection,
    unique_id: &str,
) -> rusqlite::Result<Option<ManifestEntryRecord>> {
    conn.prepare_cached(
        "SELECT m.identity_id, i.registration_id, i.state, m.unique_id, m.public_key,
           m.manifest_file, m.manifest_sha256, m.signer_thumbprint
         FROM manifest_entries m JOIN identities i ON i.id = m.identity_id
         WHERE m.unique_id = lower(?1)",
    )?
    .query_row([unique_id], |r| {
        Ok(ManifestEntryRecord {
            identity_id: IdentityId(r.get(0)?),
            registration_id: r.get(1)?,
            state: r.get(2)?,
            unique_id: r.get(3)?,
            public_key: r.get(4)?,
            manifest_file: r.get(5)?,
            manifest_sha256: r.get(6)?,
            signer_thumbprint: r.get(7)?,
        })
    })
    .optional()
}

impl Ledger {
    /// The manifest entry of a secure element (by its unique ID / serial), if one was imported.
    pub fn manifest_entry(
        &self,
        unique_id: &str,
    ) -> Result<Option<ManifestEntryRecord>, LedgerError> {
        manifest_entry_by_unique_id(&self.conn, unique_id)
            .map_err(|e| classify(&self.path, "looking up a manifest entry", e))
    }
}
