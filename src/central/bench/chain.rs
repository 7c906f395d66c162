//! The rows a benchmark station sends: a chain hashed exactly as a station's ledger hashes its
//! audit rows, so the service checks and stores them as it would a real station's.

use crate::central::wire::{IdentitySnapshot, OutboxRow};
use crate::ledger::audit::{AuditContent, GENESIS, row_hash};

/// A station's chain as its ledger would write it: for each identity an `identity.issued` row and
/// an `identity.written` row, each with its snapshot (an X.509 certificate of typical size).
pub(super) struct BenchChain {
    station: String,
    seq: i64,
    prev: [u8; 32],
}

/// About the size of a real device certificate in PEM.
const CERTIFICATE_BODY_BYTES: usize = 560;

impl BenchChain {
    pub(super) fn new(station: &str) -> BenchChain {
        BenchChain {
            station: station.to_string(),
            seq: 0,
            prev: GENESIS,
        }
    }

    pub(super) fn next_row(&mut self) -> OutboxRow {
        self.seq += 1;
        let device = (self.seq + 1) / 2;
        let written = self.seq % 2 == 0;
        let registration_id = format!("{}-dev-{device}", self.station);
        let (action, state) = if written {
            ("identity.written", "written")
        } else {
            ("identity.issued", "issued")
        };
        let at = crate::ledger::now();
        let details =
            format!("{{\"registration_id\":\"{registration_id}\",\"state\":\"{state}\"}}");
        let content = AuditContent {
            at: &at,
            station: &self.station,
            actor: "operator",
            action,
            subject: &registration_id,
            details: &details,
        };
        let hash = row_hash(&self.prev, self.seq, &content);
        let identity = Some(IdentitySnapshot {
            registration_id: registration_id.clone(),
            device_model: "bench-model".into(),
            device_serial: format!("{}-SN{device:08}", self.station),
            batch: "bench".into(),
            state: state.into(),
            attestation: "x509".into(),
            certificate_pem: Some(format!(
                "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
                "A".repeat(CERTIFICATE_BODY_BYTES)
            )),
            endorsement_key: None,
            lease_id: None,
            central_enrollment: false,
        });
        let row = OutboxRow {
            seq: self.seq,
            prev_hash: hex::encode(self.prev),
            hash: hex::encode(hash),
            at,
            station: self.station.clone(),
            actor: "operator".into(),
            action: action.into(),
            subject: registration_id,
            details,
            identity,
        };
        self.prev = hash;
        row
    }
}
