//! What a station does with a receipt: checks it answers the batch it sent, then, in one ledger
//! transaction, stores it, marks the rows uploaded, appends it to the chain (`central.receipt`),
//! records each quarantined identity (`central.quarantined`) and applies central enrollment results
//! (`enrolled` / `failed`), which become outbox rows in turn.

use serde_json::json;

use crate::central::signing::{Signed, SignerCertificate, SigningError};
use crate::central::wire::{EnrollmentOutcome, Receipt};
use crate::ledger::{
    FailureStage, IdentityState, Ledger, LedgerError, NewCentralReceipt, Transition,
};

/// Why a receipt was not taken.
#[derive(Debug, thiserror::Error)]
pub enum ReceiptError {
    /// Signature, signer or payload (see [`SigningError`]).
    #[error("the receipt from the central service was refused: {0}")]
    Signature(#[from] SigningError),
    /// A valid signature over a receipt that does not answer what was sent.
    #[error(
        "the receipt from the central service does not answer what station {station} sent ({what}); report it to the central service's administrator"
    )]
    Mismatch { station: String, what: String },
}

/// Verifies `signed` and checks that it answers rows `first..=last` of `station`.
pub fn verify_receipt(
    signer: &SignerCertificate,
    signed: &Signed<Receipt>,
    station: &str,
    first: i64,
    last: i64,
) -> Result<Receipt, ReceiptError> {
    let receipt = signer.verify(signed)?;
    let mismatch = |what: String| ReceiptError::Mismatch {
        station: station.to_string(),
        what,
    };
    if receipt.station_id != station {
        return Err(mismatch(format!(
            "it is for station {}",
            receipt.station_id
        )));
    }
    if receipt.first_seq != first || receipt.last_seq != last {
        return Err(mismatch(format!(
            "it covers rows {}..{}, the batch was {first}..{last}",
            receipt.first_seq, receipt.last_seq
        )));
    }
    if receipt.head_seq < last {
        return Err(mismatch(format!(
            "the service says it holds the chain up to row {}, below the batch's last row {last}",
            receipt.head_seq
        )));
    }
    Ok(receipt)
}

/// Applies a verified receipt to the ledger in one transaction. Returns the receipt's row id.
pub fn apply_receipt(
    ledger: &mut Ledger,
    receipt: &Receipt,
    signed: &Signed<Receipt>,
) -> Result<i64, LedgerError> {
    let signed_json = serde_json::to_string(signed).map_err(|e| LedgerError::Refused {
        what: format!("storing the receipt for rows {}", receipt.first_seq),
        reason: e.to_string(),
    })?;
    // Which enrollment outcomes still change something (a re-sent receipt may repeat them).
    let mut outcomes = Vec::new();
    for outcome in &receipt.enrollments {
        let state = ledger
            .find_identity(&outcome.registration_id)?
            .map(|i| i.state);
        if state == Some(IdentityState::Written) {
            outcomes.push(outcome.clone());
        } else {
            tracing::info!(
                registration_id = %outcome.registration_id,
                state = ?state,
                "central enrollment result for an identity that is not written: recorded only"
            );
        }
    }
    let station = ledger_station(receipt);
    ledger.transaction(|w| {
        let id = w.record_central_receipt(&NewCentralReceipt {
            first_seq: receipt.first_seq,
            last_seq: receipt.last_seq,
            head_seq: receipt.head_seq,
            head_hash: receipt.head_hash.clone(),
            central_position: receipt.central_position,
            signed: signed_json.clone(),
        })?;
        for q in &receipt.quarantined {
            w.append_audit(
                &station,
                "central.quarantined",
                &q.registration_id,
                &json!({
                    "seq": q.seq,
                    "device_model": q.device_model,
                    "device_serial": q.device_serial,
                    "held_by": q.held_by,
                    "reason": q.reason,
                    "receipt": id,
                }),
            )?;
        }
        for outcome in &outcomes {
            apply_enrollment(w, &station, outcome, id)?;
        }
        Ok(id)
    })
}

fn ledger_station(receipt: &Receipt) -> String {
    format!("central:{}", receipt.station_id)
}

fn apply_enrollment(
    w: &crate::ledger::LedgerWriter<'_>,
    actor: &str,
    outcome: &EnrollmentOutcome,
    receipt: i64,
) -> Result<(), LedgerError> {
    w.append_audit(
        actor,
        "central.enrollment",
        &outcome.registration_id,
        &json!({
            "status": outcome.status,
            "etag": outcome.etag,
            "error": outcome.error,
            "at": outcome.at,
            "receipt": receipt,
        }),
    )?;
    let transition = if outcome.status == "enrolled" {
        Transition::Enrolled
    } else {
        Transition::Failed {
            stage: FailureStage::Enroll,
            reason: outcome
                .error
                .clone()
                .unwrap_or_else(|| format!("central enrollment {}", outcome.status)),
        }
    };
    w.transition(&outcome.registration_id, &transition)?;
    Ok(())
}
