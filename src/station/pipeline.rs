//! One device through the line, ledger written ahead:
//!
//! identify (the slot's source) → check (product line, batch range, the family's capabilities)
//! → registration ID and its ledger history → decide (a pure function: done already, locked,
//! refused, provision, re-provision) → factory reset if re-provisioning a locked device → key +
//! issue (device key + CSR, the station's key, a derived key, the TPM's EK) → record `issued` →
//! store (the driver writes the bundle and reports its digests), verify (read-back), lock (only a
//! family that can) → `written` + queued for enrollment. Drivers only speak their wire.
//!
//! Nothing reaches the device before the ledger holds the identity; a failure after that voids
//! the identity (`failed{write}`), so a restart never finds a half-written identity it trusts.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use p256::SecretKey;
use p256::elliptic_curve::Generate;
use zeroize::Zeroizing;

use super::config::{BatchConfig, Mode};
use super::events::{Event, Stage};
use super::family_fit;
use super::keys::StationKeys;
use super::ledger_thread::{LedgerCallError, LedgerHandle};
use crate::device::DeviceError;
use crate::device::driver::{
    Bundle, ConfigStorage, DeviceConfig, DeviceDriver, DeviceInfo, Digests, Family, GeneratedKey,
    Held, KeyGeneration, LockKind, TpmEk,
};
use crate::device::protocol::ErrorCode;
use crate::device::protocol::sha256_hex;
use crate::identity::issue::{self, Issuer};
use crate::identity::profile::DeviceProfile;
use crate::identity::registration_id::{IdUse, RegistrationId};
use crate::identity::signer::CaSigner;
use crate::identity::template::{Field, TemplateValues};
use crate::identity::tpm_ek;
use crate::ledger::{
    Attestation, BatchId, EnrollmentKind, FailureStage, IdentityRecord, IdentityState, KeyEvidence,
    KeyFingerprint, KeyNonce, LedgerError, NewDevice, NewEnrollment, NewIdentity, Reprovisioning,
    Transition,
};
use crate::secret::SecretBytes;

mod credential;

use credential::{
    RecordPlan, device_config, enrolled_ek, make_credential, new_enrollment, record_issued,
    symmetric_device_key,
};

/// The label mixed into per-device keys of `symmetric-individual` identities recorded before
/// ledger schema v3 (no key nonce): HMAC(master, label || registration ID). Kept so that those
/// identities can still be recomputed and enrolled; no new identity uses it.
pub const DEVICE_KEY_LABEL: &[u8] = b"dps-station/v1 individual device key:";

/// The label of per-device keys with a nonce: HMAC(master, label || registration ID || nonce),
/// the nonce being 16 random bytes recorded with the identity. A different label from v1 keeps
/// the two derivations apart; the fixed-length nonce at the end keeps the message unambiguous.
pub const DEVICE_KEY_LABEL_V2: &[u8] = b"dps-station/v2 individual device key:";

/// The CA a batch issues under: its signer (in the key store) and its chain.
pub struct CaMaterial {
    /// The key.
    pub signer: Arc<dyn CaSigner>,
    /// The issuing CA certificate (first of the chain), DER.
    pub issuer_der: Vec<u8>,
    /// The chain written after each leaf, PEM, issuer first.
    pub chain_pem: String,
}

/// Everything a slot needs to run the batch's pipeline; shared by all slots.
pub struct BatchContext {
    /// The batch.
    pub batch: BatchConfig,
    /// Its ledger row.
    pub batch_id: BatchId,
    /// The key store.
    pub keys: StationKeys,
    /// The CA (X.509 modes).
    pub ca: Option<CaMaterial>,
    /// Device certificate policy.
    pub profile: DeviceProfile,
    /// The ledger writer.
    pub ledger: LedgerHandle,
    /// The lease gate, when the station is joined to a central ledger (`None`: no gate).
    pub leases: Option<Arc<crate::central::station_side::lease_gate::LeaseGate>>,
}

/// How one device ended.
#[derive(Debug, Clone)]
pub struct DeviceOutcome {
    /// Slot.
    pub slot: String,
    /// Serial, if known.
    pub serial: Option<String>,
    /// Registration ID, if derived.
    pub registration_id: Option<String>,
    /// `None` = passed; else the failing stage and reason.
    pub failure: Option<(Stage, String)>,
    /// How a device that did not fail got there.
    pub done: Done,
    /// Time spent on the device.
    pub elapsed: Duration,
    /// The device's family.
    pub family: Family,
    /// Where its registration data went (written, or carried by its firmware), once written.
    pub config: Option<ConfigStorage>,
    /// When it left the pipeline (reports bucket throughput by it).
    pub finished_at: std::time::SystemTime,
}

struct Failure(Stage, String);

/// How a device that did not fail left the slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Done {
    /// Provisioned now.
    Provisioned,
    /// Found locked with exactly the identity an interrupted run recorded: completed, not redone.
    Completed,
    /// Already provisioned and recorded (a device left in its slot across a restart): not counted.
    AlreadyDone,
}

fn fail<E: std::fmt::Display>(stage: Stage) -> impl FnOnce(E) -> Failure {
    move |e| Failure(stage, e.to_string())
}

/// The device key of a `symmetric-individual` identity, computed inside the key store from the
/// batch's master secret, the registration ID and the identity's random nonce (recorded in the
/// ledger): a new random key for every identity, recomputable after a crash and for enrollment.
/// `nonce = None` recomputes a key of an identity recorded before nonces existed.
pub fn individual_device_key(
    keys: &StationKeys,
    batch: &BatchConfig,
    registration_id: &str,
    nonce: Option<&KeyNonce>,
) -> Result<SecretBytes, super::keys::KeysError> {
    let master =
        batch
            .device_key_master
            .as_ref()
            .ok_or_else(|| super::keys::KeysError::WrongKind {
                key: "keys.device_key_master".into(),
                store: "batch",
                expected: "device key master secret",
            })?;
    let mut message = match nonce {
        Some(_) => DEVICE_KEY_LABEL_V2.to_vec(),
        None => DEVICE_KEY_LABEL.to_vec(),
    };
    message.extend_from_slice(registration_id.as_bytes());
    if let Some(nonce) = nonce {
        message.extend_from_slice(nonce.as_bytes());
    }
    keys.hmac(master, &message)
}

/// Runs one device that has answered `HELLO` through the pipeline; `emit` reports stages.
pub fn provision(
    ctx: &BatchContext,
    slot: &str,
    driver: &mut dyn DeviceDriver,
    info: &DeviceInfo,
    emit: &dyn Fn(Event),
) -> DeviceOutcome {
    let started = Instant::now();
    let mut registration_id = None;
    let mut config = None;
    let result = run(
        ctx,
        slot,
        driver,
        info,
        emit,
        &mut registration_id,
        &mut config,
    );
    let (done, failure) = match result {
        Ok(done) => (done, None),
        Err(Failure(s, r)) => (Done::Provisioned, Some((s, r))),
    };
    DeviceOutcome {
        slot: slot.to_string(),
        serial: Some(info.serial.clone()),
        registration_id: registration_id.map(|r: RegistrationId| r.as_str().to_string()),
        failure,
        done,
        elapsed: started.elapsed(),
        family: info.family,
        config,
        finished_at: std::time::SystemTime::now(),
    }
}

/// The pipeline as its stages: check → identify the registration ID and its ledger history →
/// decide → (factory reset) → key + issue → record `issued` → store, verify, lock → `written`.
fn run(
    ctx: &BatchContext,
    slot: &str,
    driver: &mut dyn DeviceDriver,
    info: &DeviceInfo,
    emit: &dyn Fn(Event),
    out_id: &mut Option<RegistrationId>,
    out_config: &mut Option<ConfigStorage>,
) -> Result<Done, Failure> {
    let stage = |s: Stage| {
        emit(Event::StageStarted {
            slot: slot.to_string(),
            stage: s,
        })
    };
    stage(Stage::Check);
    check_device(&ctx.batch, info)?;
    if ctx.batch.manifest_required {
        // Pre-provisioned secure elements: nothing is written, the manifest says who it is.
        use super::manifest_line::LinePass;
        let (rid, done) =
            match super::manifest_line::pass(ctx, driver, info).map_err(|(s, r)| Failure(s, r))? {
                LinePass::Passed(rid) => (rid, Done::Provisioned),
                LinePass::AlreadyPassed(rid) => (rid, Done::AlreadyDone),
            };
        *out_id = RegistrationId::parse(&rid).ok();
        return Ok(done);
    }
    let (registration_id, early_ek) = render_registration_id(&ctx.batch, driver, info)?;
    *out_id = Some(registration_id.clone());
    let rid = registration_id.as_str().to_string();
    let found = look_up(ctx, info, &rid)?;
    let reprovision = match decide(&ctx.batch, info, &rid, &found) {
        Decision::AlreadyDone => return Ok(Done::AlreadyDone),
        Decision::Locked => return locked_device(ctx, driver, info, &rid, found.existing.as_ref()),
        Decision::Refuse(reason) => return Err(Failure(Stage::Check, reason)),
        Decision::Provision => None,
        Decision::Reprovision { old, reason } => {
            if info.locked {
                stage(Stage::Reset);
                factory_reset(driver, info)?;
                record_factory_reset(ctx, info, &rid, &old, &reason)?;
            }
            Some(Reprovisioning {
                reason,
                batch: ctx.batch.name.clone(),
                device_serial: info.serial.clone(),
            })
        }
    };
    let mut plan = RecordPlan {
        evidence: None,
        reissue: reprovision.is_none() && found.existing.is_some(),
        reprovision,
        device: NewDevice {
            model: info.model.clone(),
            serial_number: info.serial.clone(),
            hardware_id: Some(info.hardware_id.clone()),
            firmware: Some(info.firmware.clone()),
            batch: Some(ctx.batch_id),
        },
    };
    // The station may replace what it put there itself (an unfinished earlier write) or what
    // re-provisioning replaces; anything else on the device is not its to overwrite.
    let overwrite = plan.reissue || plan.reprovision.is_some();
    let credential = make_credential(
        ctx,
        driver,
        info,
        &registration_id,
        early_ek,
        &mut plan,
        overwrite,
        &stage,
    )?;
    if let Some(attestation) = credential.attestation {
        stage(Stage::Record);
        record_issued(ctx, &rid, plan, attestation)?;
    }
    match write_verify_lock(driver, info, ctx, &rid, credential.writes, &stage) {
        Ok(config) => *out_config = Some(config),
        Err(Failure(stage, reason)) => {
            void(ctx, &rid, stage, &reason);
            return Err(Failure(stage, reason));
        }
    }
    mark_written(ctx, info, &rid)?;
    Ok(Done::Provisioned)
}

/// The device belongs to this batch: its model, its serial range, and a family that can do the
/// batch's mode (the engine checked the slot's family; this checks what the device announced).
fn check_device(batch: &BatchConfig, info: &DeviceInfo) -> Result<(), Failure> {
    let mode = batch.mode;
    if let Some(model) = &batch.model
        && &info.model != model
    {
        return Err(Failure(
            Stage::Check,
            format!(
                "device {} is a '{}', not a '{model}' of product line {}; take it off this fixture",
                info.serial, info.model, batch.product
            ),
        ));
    }
    if !batch.accepts_serial(&info.serial) {
        return Err(Failure(
            Stage::Check,
            format!(
                "serial {} is outside the batch's serial range; this device belongs to another batch",
                info.serial
            ),
        ));
    }
    family_fit::batch_fits(batch, &info.capabilities).map_err(|missing| {
        Failure(
            Stage::Check,
            format!(
                "device {} ({} family, firmware {}) cannot do what mode {mode} needs: {missing}",
                info.serial, info.family, info.firmware
            ),
        )
    })
}

/// The registration ID the batch's template renders for the device. A TPM batch whose template
/// names {regid} takes the ID the device suggests with its EK; only then is the EK read before
/// the ID is known (config refuses {regid} in other modes), and it is returned for reuse.
fn render_registration_id(
    batch: &BatchConfig,
    driver: &mut dyn DeviceDriver,
    info: &DeviceInfo,
) -> Result<(RegistrationId, Option<TpmEk>), Failure> {
    let usage = if batch.mode.is_x509() {
        IdUse::X509CommonName
    } else {
        IdUse::Any
    };
    let early_ek =
        if batch.mode == Mode::Tpm && batch.template.fields().contains(&Field::DeviceSuggestion) {
            Some(driver.endorsement_key().map_err(fail(Stage::Check))?)
        } else {
            None
        };
    let values = TemplateValues {
        product: Some(&batch.product),
        serial: Some(&info.serial),
        model: Some(&info.model),
        hardware_id: Some(&info.hardware_id),
        device_suggestion: early_ek
            .as_ref()
            .and_then(|ek| ek.suggested_registration_id.as_deref()),
    };
    let rid = batch
        .template
        .render(&values, usage)
        .map_err(fail(Stage::Check))?;
    Ok((rid, early_ek))
}

/// What the ledger holds under a registration ID.
struct Found {
    /// The live identity.
    existing: Option<IdentityRecord>,
    /// Else the newest revoked one (re-provisioning history).
    revoked: Option<IdentityRecord>,
}

/// Looks the registration ID up. An identity of another device under it is a collision (a
/// template that renders one ID for two devices, or two TPMs suggesting the same): never replaced,
/// with or without re-provisioning, or one device would revoke the other's identity.
fn look_up(ctx: &BatchContext, info: &DeviceInfo, rid: &str) -> Result<Found, Failure> {
    let found = {
        let rid = rid.to_string();
        ctx.ledger
            .call(move |l| l.live_or_last_revoked(&rid))
            .map_err(fail(Stage::Check))?
    };
    if let Some(holder) = found.as_ref().and_then(|rec| rec.device.as_ref())
        && (holder.serial_number != info.serial || holder.model != info.model)
    {
        return Err(Failure(
            Stage::Check,
            format!(
                "registration ID collision: device serial {} (model {}) renders registration ID '{rid}', which the ledger already holds for device serial {} (model {}); nothing was changed: fix the batch's registration_id template so that every device renders its own ID",
                info.serial, info.model, holder.serial_number, holder.model
            ),
        ));
    }
    Ok(match found {
        Some(rec) if rec.state == IdentityState::Revoked => Found {
            existing: None,
            revoked: Some(rec),
        },
        live => Found {
            existing: live,
            revoked: None,
        },
    })
}

/// What to do with a device, decided from the batch, the device and its ledger record alone.
enum Decision {
    /// Done by this batch already and still in its slot: not counted again.
    AlreadyDone,
    /// Locked: done, completed from an interrupted run, or refused ([`locked_device`]).
    Locked,
    /// Refused, with the reason.
    Refuse(String),
    /// A new identity (or a reissue of one never written).
    Provision,
    /// Re-provisioning chosen for a device seen before: its old identity is revoked.
    Reprovision {
        /// The identity it had.
        old: Box<IdentityRecord>,
        /// The operator's reason.
        reason: String,
    },
}

fn decide(batch: &BatchConfig, info: &DeviceInfo, rid: &str, found: &Found) -> Decision {
    // Seen before: the registration ID has (or had) an identity the device held for good.
    // Identities still `issued` or failed at write are finished or replaced as before.
    let seen_before: Option<&IdentityRecord> = match &found.existing {
        Some(rec) if matches!(rec.state, IdentityState::Issued) => None,
        Some(rec)
            if rec.state == IdentityState::Failed
                && rec.failed_stage == Some(FailureStage::Write) =>
        {
            None
        }
        Some(rec) => Some(rec),
        None => found.revoked.as_ref(),
    };
    // A device this batch itself finished (left in its slot across a restart) is done, also in
    // a re-provisioning batch: re-provisioning replaces identities of earlier batches.
    let done_here = found.existing.as_ref().is_some_and(|rec| {
        matches!(rec.state, IdentityState::Written | IdentityState::Enrolled)
            && rec.batch.as_deref() == Some(batch.name.as_str())
    });
    if info.locked && (seen_before.is_none() || done_here) {
        return Decision::Locked;
    }
    // A family that cannot lock shows no lock to tell "done" by: the ledger's `written` for this
    // very device (same serial and model, checked by the look-up) in this batch says it.
    if done_here && info.capabilities.lock == LockKind::None {
        return Decision::AlreadyDone;
    }
    match seen_before {
        None => Decision::Provision,
        Some(rec) => match batch.reprovision.as_deref() {
            Some(reason) => Decision::Reprovision {
                old: Box::new(rec.clone()),
                reason: reason.to_string(),
            },
            None => Decision::Refuse(format!(
                "device serial {} was seen before: registration ID '{rid}' is already {} in the ledger (batch {}); the station does not provision a device twice. To give it a new identity (the old one is revoked), run the batch with --reprovision \"<reason>\" (or reprovision = \"<reason>\" in batch.toml)",
                rec.device
                    .as_ref()
                    .map_or(info.serial.as_str(), |d| d.serial_number.as_str()),
                rec.state,
                rec.batch.as_deref().unwrap_or("none")
            )),
        },
    }
}

/// `issued → written` and queued for enrollment, in one commit.
fn mark_written(ctx: &BatchContext, info: &DeviceInfo, rid: &str) -> Result<(), Failure> {
    let enrollment = new_enrollment(&ctx.batch);
    let rid = rid.to_string();
    ctx.ledger
        .call(move |l| {
            l.transaction(|w| {
                w.transition(&rid, &Transition::Written)?;
                w.queue_enrollment(&rid, &enrollment)?;
                Ok(())
            })
        })
        .map_err(|e| {
            // The device holds its identity (and is locked, if its family locks), but the ledger
            // could not say so: the identity stays `issued` (a restart voids it to
            // failed{write}); the next run finds a locked device with exactly the recorded
            // identity and completes it (`locked_device`), or rewrites a device that cannot lock.
            Failure(
                Stage::Record,
                format!(
                    "device {} is written but the ledger refused 'written': {e}",
                    info.serial
                ),
            )
        })
}

/// The guarded factory reset of a locked device being re-provisioned (docs/device-protocol.md
/// §RESET: nonce, then nonce + serial). A device whose physical reset input is not asserted
/// answers GUARDED: the operator must assert it, the station cannot.
fn factory_reset(driver: &mut dyn DeviceDriver, info: &DeviceInfo) -> Result<(), Failure> {
    match driver.factory_reset() {
        Ok(()) => Ok(()),
        Err(DeviceError::Refused {
            code: ErrorCode::Guarded,
            ..
        }) => Err(Failure(
            Stage::Reset,
            format!(
                "device {} refused the factory reset re-provisioning needs (GUARDED): its reset input is not asserted; assert the device's reset input (button, test pad or jumper, see the product's service manual), plug it in again and re-run it; its identity is unchanged",
                info.serial
            ),
        )),
        Err(e) => Err(Failure(Stage::Reset, e.to_string())),
    }
}

/// Audits a factory reset in its own durable commit, right after it succeeded: the device's old
/// identity is gone from it even if the run stops before the write-ahead record.
fn record_factory_reset(
    ctx: &BatchContext,
    info: &DeviceInfo,
    rid: &str,
    old: &IdentityRecord,
    reason: &str,
) -> Result<(), Failure> {
    let rid = rid.to_string();
    let details = serde_json::json!({
        "device_serial": info.serial,
        "old_identity": old.id.0,
        "batch": ctx.batch.name,
        "reason": reason,
    });
    let serial = info.serial.clone();
    ctx.ledger
        .call(move |l| l.append_audit("station", "device.factory_reset", &rid, &details))
        .map(|_| ())
        .map_err(|e| {
            Failure(
                Stage::Reset,
                format!(
                    "device {serial} was factory reset (its old identity is erased from it) but the ledger could not record the reset: {e}; fix the ledger and run the device again with the same re-provisioning reason (it needs no second reset)"
                ),
            )
        })
}

/// A locked device: already done (skip it), or written by a run that was interrupted before the
/// ledger said `written` (complete it if the device holds exactly the recorded identity), or
/// something else (refuse: it needs a factory reset).
fn locked_device(
    ctx: &BatchContext,
    driver: &mut dyn DeviceDriver,
    info: &DeviceInfo,
    rid: &str,
    existing: Option<&crate::ledger::IdentityRecord>,
) -> Result<Done, Failure> {
    let refuse = || {
        Failure(
            Stage::Check,
            format!(
                "device {} is locked (already provisioned) and the ledger has no unfinished identity for it; it needs a factory reset before it can be provisioned again",
                info.serial
            ),
        )
    };
    let Some(rec) = existing else {
        return Err(refuse());
    };
    match rec.state {
        IdentityState::Written | IdentityState::Enrolled => return Ok(Done::AlreadyDone),
        IdentityState::Issued => {}
        IdentityState::Failed if rec.failed_stage == Some(FailureStage::Write) => {}
        _ => return Err(refuse()),
    }
    let holdings = driver.read_back().map_err(fail(Stage::Verify))?;
    let config = device_config(&ctx.batch, rid);
    let mut symmetric = None;
    let mut key_digest = None;
    if let Some(der) = &rec.certificate_der {
        let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(fail(Stage::Verify))?;
        key_digest = Some(sha256_hex(&cert.public_key().subject_public_key.data));
    } else if ctx.batch.mode == Mode::SymmetricGroup || ctx.batch.mode == Mode::SymmetricIndividual
    {
        symmetric = Some(symmetric_device_key(ctx, rid, rec.key_nonce.as_ref())?);
    } else if ctx.batch.mode == Mode::Tpm {
        // Nothing but the config was written: the device must still have the recorded EK.
        let public = enrolled_ek(driver, None, info, Stage::Verify)?;
        if rec.endorsement_key.as_deref() != Some(public.as_slice()) {
            return Err(refuse());
        }
    } else {
        return Err(refuse());
    }
    // The certificate is not compared: the device key and the config identify the identity.
    let bundle = Bundle {
        certificate_pem: None,
        ca_chain_pem: None,
        private_key: None,
        symmetric_key: symmetric.as_ref(),
        config: &config,
        overwrite: false,
    };
    let mut expected: Digests = driver.digests_of(&bundle).map_err(fail(Stage::Verify))?;
    if let Some(key) = key_digest.filter(|_| info.capabilities.reads_back_key) {
        expected.insert(Held::DeviceKey, key);
    }
    if !holdings.locked || !holdings.differences(&expected).is_empty() {
        return Err(refuse());
    }
    let enrollment = new_enrollment(&ctx.batch);
    let (rid, failed) = (rid.to_string(), rec.state == IdentityState::Failed);
    ctx.ledger
        .call(move |l| {
            l.transaction(|w| {
                if failed {
                    w.transition(&rid, &Transition::Retry)?;
                }
                w.transition(&rid, &Transition::Written)?;
                w.queue_enrollment(&rid, &enrollment)?;
                w.append_audit(
                    "station",
                    "identity.completed",
                    &rid,
                    &serde_json::json!({ "reason": "device found locked with the recorded identity after an interrupted run" }),
                )?;
                Ok(())
            })
        })
        .map_err(fail(Stage::Record))?;
    Ok(Done::Completed)
}

/// What the pipeline writes to one device, made by the key + issue stages.
struct Writes {
    /// The device certificate, PEM (the CA chain is the batch's).
    certificate_pem: Option<String>,
    /// A station-made private key.
    private_key: Option<SecretBytes>,
    /// A symmetric key.
    symmetric_key: Option<SecretBytes>,
    /// The device key's digest, where the family reads it back.
    expected_key: Option<String>,
    /// Re-provisioning: what the device holds may be replaced.
    overwrite: bool,
}

/// Store → verify → lock: the driver writes the bundle and reports its digests; the read-back
/// must show exactly them (and the device key the station knows); a family that can lock is
/// locked, one that cannot is done once verified.
fn write_verify_lock(
    driver: &mut dyn DeviceDriver,
    info: &DeviceInfo,
    ctx: &BatchContext,
    rid: &str,
    writes: Writes,
    stage: &dyn Fn(Stage),
) -> Result<ConfigStorage, Failure> {
    stage(Stage::Write);
    let config = device_config(&ctx.batch, rid);
    let ca_chain = ctx.ca.as_ref().map(|ca| ca.chain_pem.as_str());
    let bundle = Bundle {
        certificate_pem: writes.certificate_pem.as_deref(),
        ca_chain_pem: writes.certificate_pem.as_ref().and(ca_chain),
        private_key: writes.private_key.as_ref(),
        symmetric_key: writes.symmetric_key.as_ref(),
        config: &config,
        overwrite: writes.overwrite,
    };
    let stored = driver.store(&bundle).map_err(fail(Stage::Write))?;
    // The secrets (SecretBytes) zeroize their memory as they drop here, right after the write.
    drop(writes.private_key);
    drop(writes.symmetric_key);
    let mut expected = stored.digests.clone();
    if let Some(key) = writes.expected_key {
        expected.insert(Held::DeviceKey, key);
    }

    stage(Stage::Verify);
    let holdings = driver.read_back().map_err(fail(Stage::Verify))?;
    let differences = holdings.differences(&expected);
    if !differences.is_empty() {
        return Err(Failure(
            Stage::Verify,
            format!(
                "the device's read-back differs from what was written: {}; re-seat the device and run it again",
                differences.join(", ")
            ),
        ));
    }
    if info.capabilities.lock != LockKind::None {
        stage(Stage::Lock);
        driver.lock().map_err(fail(Stage::Lock))?;
    }
    Ok(stored.config)
}

/// Voids an identity whose write did not complete: `issued → failed{write}`. A later run of the
/// same device reissues under the same registration ID.
fn void(ctx: &BatchContext, rid: &str, stage: Stage, reason: &str) {
    let (rid, reason) = (rid.to_string(), format!("{stage}: {reason}"));
    if let Err(e) = ctx.ledger.call(move |l| {
        l.transition(
            &rid,
            &Transition::Failed {
                stage: FailureStage::Write,
                reason,
            },
        )
    }) {
        tracing::error!("could not void an unwritten identity: {e}");
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::device::driver::{Capabilities, Family};
    use crate::ledger::{AttestationKind, DeviceId, DeviceRecord, IdentityId};
    use crate::station::config::StationConfig;

    fn batch(dir: &Path, reprovision: bool) -> BatchConfig {
        let station_toml = dir.join("station.toml");
        std::fs::write(
            &station_toml,
            "name = \"s1\"\nledger = \"ledger.db\"\n[fixture.slots]\nA1 = \"/dev/serial/by-id/x\"\n[keystore]\nkind = \"software\"\ndir = \"keys\"\n[dps.main]\nconnection_string_env = \"DPS_CS\"\n",
        )
        .unwrap();
        let station = StationConfig::load(&station_toml).unwrap();
        let reason = if reprovision {
            "reprovision = \"RMA 7\"\n"
        } else {
            ""
        };
        let text = format!(
            "name = \"b1\"\nproduct = \"p\"\ncount = 2\nregistration_id = \"{{product}}-{{serial}}\"\nid_scope = \"0ne1\"\ndps_target = \"main\"\nmode = \"symmetric-individual\"\n{reason}[keys]\ndevice_key_master = \"file:m.secret\"\n"
        );
        BatchConfig::from_toml(Path::new("b.toml"), &text, &station).unwrap()
    }

    fn device(capabilities: Capabilities, locked: bool) -> DeviceInfo {
        DeviceInfo {
            family: Family::Nrf91,
            model: "m".into(),
            serial: "S1".into(),
            hardware_id: String::new(),
            firmware: String::new(),
            boot_counter: 0,
            capabilities,
            locked,
        }
    }

    fn record(state: IdentityState, batch: &str) -> IdentityRecord {
        IdentityRecord {
            id: IdentityId(1),
            registration_id: "p-S1".into(),
            state,
            failed_stage: None,
            failed_reason: None,
            revoked_reason: None,
            attestation: AttestationKind::SymmetricKey,
            batch: Some(batch.into()),
            device: Some(DeviceRecord {
                id: DeviceId(1),
                model: "m".into(),
                serial_number: "S1".into(),
                hardware_id: None,
                firmware: None,
                batch_id: None,
                first_seen: String::new(),
            }),
            certificate_der: None,
            certificate: None,
            key_fingerprint: None,
            endorsement_key: None,
            key_nonce: None,
            station: None,
            operator: None,
            created_at: String::new(),
            updated_at: String::new(),
        }
    }

    fn found(existing: Option<IdentityRecord>) -> Found {
        Found {
            existing,
            revoked: None,
        }
    }

    #[test]
    fn decide_tells_done_locked_refused_and_reprovisioned_apart_for_each_kind_of_family() {
        let dir = tempfile::tempdir().unwrap();
        let (plain, chosen) = (batch(dir.path(), false), batch(dir.path(), true));
        let lockless = device(Family::Nrf91.capabilities(), false);
        let station_unlocked = device(Family::Station.capabilities(), false);
        let station_locked = device(Family::Station.capabilities(), true);
        let written_here = found(Some(record(IdentityState::Written, "b1")));
        let written_before = found(Some(record(IdentityState::Written, "b0")));

        assert!(matches!(
            decide(&plain, &lockless, "p-S1", &found(None)),
            Decision::Provision
        ));
        // A device that cannot lock, written by this batch and still in its slot: done, not
        // refused as seen before (its lack of a lock says nothing).
        assert!(matches!(
            decide(&plain, &lockless, "p-S1", &written_here),
            Decision::AlreadyDone
        ));
        // A device that can lock is judged by its lock (locked: done or completed).
        assert!(matches!(
            decide(&plain, &station_locked, "p-S1", &written_here),
            Decision::Locked
        ));
        // Written by an earlier batch: refused unless re-provisioning was chosen.
        let Decision::Refuse(reason) = decide(&plain, &lockless, "p-S1", &written_before) else {
            panic!("a device seen before is refused");
        };
        assert!(reason.contains("--reprovision"), "{reason}");
        assert!(matches!(
            decide(&chosen, &station_unlocked, "p-S1", &written_before),
            Decision::Reprovision { .. }
        ));
        // An identity recorded but never written (an interrupted run): provisioned again.
        assert!(matches!(
            decide(
                &plain,
                &lockless,
                "p-S1",
                &found(Some(record(IdentityState::Issued, "b1")))
            ),
            Decision::Provision
        ));
    }
}
