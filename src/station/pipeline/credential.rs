//! The key + issue stage and the identity's write-ahead record: the credential a device of the
//! batch's mode gets (its own key with a CSR, a station-made key, a derived symmetric key, or its
//! TPM's endorsement key) and the `issued` row recorded before anything reaches the device.

use super::*;

/// What the key + issue stage made: what to write, and what the ledger records (`None` once the
/// identity is already recorded: the key-then-CSR families record it while the CSR crosses).
pub(super) struct Credential {
    pub(super) writes: Writes,
    pub(super) attestation: Option<Attestation>,
}

/// Key + issue for the batch's mode: the device's own key (with its CSR), a station-made key, a
/// derived symmetric key, or the TPM's endorsement key.
#[allow(clippy::too_many_arguments)]
pub(super) fn make_credential(
    ctx: &BatchContext,
    driver: &mut dyn DeviceDriver,
    info: &DeviceInfo,
    registration_id: &RegistrationId,
    early_ek: Option<TpmEk>,
    plan: &mut RecordPlan,
    overwrite: bool,
    stage: &dyn Fn(Stage),
) -> Result<Credential, Failure> {
    let mode = ctx.batch.mode;
    let rid = registration_id.as_str();
    let reads_back_key = info.capabilities.reads_back_key;
    let mut writes = Writes {
        certificate_pem: None,
        private_key: None,
        symmetric_key: None,
        expected_key: None,
        overwrite,
    };
    let attestation = match mode {
        Mode::X509Csr | Mode::X509Group => {
            stage(Stage::Key);
            match driver
                .generate_key(rid, overwrite)
                .map_err(fail(Stage::Key))?
            {
                GeneratedKey::Public(public)
                    if info.capabilities.key_generation == KeyGeneration::KeyThenCsr =>
                {
                    writes.expected_key = reads_back_key.then(|| sha256_hex(&public));
                    writes.certificate_pem = Some(issue_and_record_during_csr(
                        ctx,
                        driver,
                        registration_id,
                        &public,
                        plan.clone(),
                        stage,
                    )?);
                    None
                }
                // The key came with its CSR (and the device's attestation of it, already checked
                // by the driver to name this CSR): check the CSR as every CSR is, issue for the
                // key it proves, and keep both with the identity in its `issued` commit.
                GeneratedKey::Csr { der, attestation } => {
                    let verified =
                        crate::identity::csr::verify_csr(&der).map_err(fail(Stage::Key))?;
                    let public = verified.public_key_sec1;
                    writes.expected_key = reads_back_key.then(|| sha256_hex(&public));
                    stage(Stage::Issue);
                    let (cert, record) = issue_for_key(ctx, &public, registration_id)?;
                    writes.certificate_pem = Some(cert);
                    plan.evidence = Some(KeyEvidence {
                        csr_der: der,
                        attestation: attestation.map(|a| a.encoded),
                    });
                    Some(record)
                }
                GeneratedKey::Public(_) => {
                    return Err(Failure(
                        Stage::Key,
                        format!(
                            "device {}: the {} driver answered key generation with a bare public key but its family makes the CSR with the key; the driver is faulty",
                            info.serial, info.family
                        ),
                    ));
                }
            }
        }
        Mode::X509Inject => {
            stage(Stage::Key);
            let key = SecretKey::generate();
            let public = key.public_key().to_sec1_bytes().to_vec();
            let scalar = Zeroizing::new(key.to_bytes());
            writes.private_key = Some(SecretBytes::new(scalar.to_vec()));
            writes.expected_key = reads_back_key.then(|| sha256_hex(&public));
            stage(Stage::Issue);
            let (cert, record) = issue_for_key(ctx, &public, registration_id)?;
            writes.certificate_pem = Some(cert);
            Some(record)
        }
        Mode::SymmetricGroup | Mode::SymmetricIndividual => {
            stage(Stage::Issue);
            // symmetric-individual: a fresh random nonce for every identity (and every
            // re-provisioning or reissue): a new key each time, recomputable in the HSM from the
            // ledger's nonce.
            let key_nonce = (mode == Mode::SymmetricIndividual).then(KeyNonce::random);
            let key = symmetric_device_key(ctx, rid, key_nonce.as_ref())?;
            let fingerprint = KeyFingerprint::of_key(key.expose());
            writes.symmetric_key = Some(key);
            Some(Attestation::SymmetricKey {
                key_fingerprint: fingerprint,
                key_nonce,
            })
        }
        Mode::Tpm => {
            stage(Stage::Key);
            let public = enrolled_ek(driver, early_ek, info, Stage::Key)?;
            Some(Attestation::Tpm {
                endorsement_key: public,
            })
        }
    };
    Ok(Credential {
        writes,
        attestation,
    })
}

/// How this device's identity is recorded: as new, as a reissue of its voided one, or as the
/// re-provisioning that revokes its live one.
#[derive(Clone)]
pub(super) struct RecordPlan {
    pub(super) device: NewDevice,
    /// What the device said about the key it made (CSR + attestation), kept with the identity.
    pub(super) evidence: Option<KeyEvidence>,
    pub(super) reissue: bool,
    pub(super) reprovision: Option<Reprovisioning>,
}

/// Records the identity `issued` (with its device row) in one durable commit: the write-ahead
/// record nothing may reach the device before.
pub(super) fn record_issued(
    ctx: &BatchContext,
    rid: &str,
    plan: RecordPlan,
    attestation: Attestation,
) -> Result<(), Failure> {
    let (rid_record, batch_id) = (rid.to_string(), ctx.batch_id);
    let RecordPlan {
        device,
        evidence,
        reissue,
        reprovision,
    } = plan;
    let gate = ctx.leases.clone();
    let spend_gate = gate.clone();
    let recorded = ctx.ledger.call(move |l| {
        l.transaction(|w| {
            let device_id = w.upsert_device(&device)?;
            let identity = NewIdentity {
                registration_id: rid_record,
                batch: Some(batch_id),
                device: Some(device_id),
                attestation,
            };
            let id = match (&reprovision, reissue) {
                // Revoke the old identity, audit the choice, record the new one: one commit.
                (Some(why), _) => w.reprovision(&identity, why)?,
                (None, true) => w.reissue(&identity)?,
                (None, false) => w.record_issued(&identity)?,
            };
            if let Some(evidence) = &evidence {
                w.record_key_evidence(id, evidence)?;
            }
            // A joined station spends its lease unit in this same commit.
            crate::station::lease_gate::spend(w, spend_gate.as_deref(), id)
        })
    });
    match recorded {
        Ok(lease) => {
            if let (Some(gate), Some(lease)) = (gate, lease) {
                gate.spent(&lease);
            }
            Ok(())
        }
        // No unit after all (the lease expired while the device was keyed): nothing was recorded
        // or written; the device fails its check and the slot waits for a lease.
        Err(LedgerCallError::Ledger(e @ LedgerError::LeaseUnavailable { .. })) => {
            Err(Failure(Stage::Check, e.to_string()))
        }
        Err(e) => Err(Failure(Stage::Record, e.to_string())),
    }
}

/// The device-key X.509 modes: the certificate is for the key KEYGEN reported, and the CSR only
/// proves the device holds that key. So the station signs the certificate and records the
/// identity `issued` (one HSM signature and one durable commit, several milliseconds) on a helper
/// thread while the CSR crosses the wire, instead of leaving the slot's wire idle for them
/// afterwards. Nothing is written to the device before both are done and the CSR is verified; an
/// identity recorded for a device whose CSR then fails is voided, as any unwritten one is.
/// Returns the chain to write.
pub(super) fn issue_and_record_during_csr(
    ctx: &BatchContext,
    driver: &mut dyn DeviceDriver,
    registration_id: &RegistrationId,
    public: &[u8],
    plan: RecordPlan,
    stage: &dyn Fn(Stage),
) -> Result<String, Failure> {
    let rid = registration_id.as_str();
    let serial = plan.device.serial_number.clone();
    // Set by the helper once the `issued` commit happened, so that the identity is voided exactly
    // when it was recorded (also if the helper panics afterwards), and never when recording
    // failed: a failure like a duplicate registration ID names another slot's live identity.
    let recorded = AtomicBool::new(false);
    let issue_and_record = || -> Result<String, Failure> {
        let (chain, attestation) = issue_for_key(ctx, public, registration_id)?;
        record_issued(ctx, rid, plan, attestation)?;
        recorded.store(true, Ordering::SeqCst);
        Ok(chain)
    };
    let (csr, issued) = std::thread::scope(|s| {
        let helper = std::thread::Builder::new()
            .name("issue".into())
            .spawn_scoped(s, issue_and_record);
        let csr = driver.csr(rid);
        let issued = match helper {
            Ok(h) => h.join().unwrap_or_else(|_| {
                Err(Failure(
                    Stage::Issue,
                    "the issuing thread panicked; the identity may have been recorded; the next run reissues it".into(),
                ))
            }),
            Err(e) => Err(Failure(
                Stage::Issue,
                format!("cannot start the issuing thread: {e}"),
            )),
        };
        (csr, issued)
    });
    stage(Stage::Issue);
    stage(Stage::Record);
    let checked = csr.map_err(fail(Stage::Key)).and_then(|csr| {
        let verified = crate::identity::csr::verify_csr(&csr).map_err(fail(Stage::Key))?;
        if verified.public_key_sec1 != public {
            return Err(Failure(
                Stage::Key,
                format!(
                    "device {serial}: the CSR's key is not the key KEYGEN reported; the firmware is faulty"
                ),
            ));
        }
        Ok(())
    });
    match checked {
        Ok(()) => issued,
        Err(Failure(stage, reason)) => {
            if recorded.load(Ordering::SeqCst) {
                // Recorded but never written: void it, so a later run reissues under the same ID.
                void(ctx, rid, stage, &reason);
            }
            Err(Failure(stage, reason))
        }
    }
}

/// Signs the device certificate for `public` with the batch's CA: the certificate (PEM) to write
/// before the batch's CA chain, and what the ledger records. One path for the station-made key and the device-made key.
pub(super) fn issue_for_key(
    ctx: &BatchContext,
    public: &[u8],
    registration_id: &RegistrationId,
) -> Result<(String, Attestation), Failure> {
    let ca = ctx
        .ca
        .as_ref()
        .ok_or_else(|| Failure(Stage::Issue, "the batch has no CA".into()))?;
    let issuer =
        Issuer::new(ca.issuer_der.clone(), ca.signer.as_ref()).map_err(fail(Stage::Issue))?;
    let cert =
        issue::issue_device_certificate_for_key(public, registration_id, &ctx.profile, &issuer)
            .map_err(fail(Stage::Issue))?;
    Ok((
        cert.pem(),
        Attestation::X509 {
            certificate_der: cert.der,
        },
    ))
}

/// The config a device of this batch is given (and whose digest its read-back must show).
pub(super) fn device_config(batch: &BatchConfig, rid: &str) -> DeviceConfig {
    DeviceConfig {
        registration_id: rid.to_string(),
        id_scope: batch.id_scope.clone(),
        global_endpoint: batch.global_endpoint.clone(),
        extra: Default::default(),
    }
}

/// The enrollment a written identity of this batch is queued for.
pub(super) fn new_enrollment(batch: &BatchConfig) -> NewEnrollment {
    NewEnrollment {
        dps_target: batch.dps_target.clone(),
        kind: if batch.mode.is_group() {
            EnrollmentKind::Group
        } else {
            EnrollmentKind::Individual
        },
        group_name: batch.enrollment_group.clone(),
    }
}

/// The symmetric device key of `rid`: derived from the group key (`symmetric-group`) or from the
/// master secret and the identity's nonce (`symmetric-individual`), inside the key store.
pub(super) fn symmetric_device_key(
    ctx: &BatchContext,
    rid: &str,
    nonce: Option<&KeyNonce>,
) -> Result<SecretBytes, Failure> {
    if ctx.batch.mode == Mode::SymmetricGroup {
        let group = ctx
            .batch
            .group_key
            .as_ref()
            .ok_or_else(|| Failure(Stage::Issue, "the batch has no group key".into()))?;
        ctx.keys
            .hmac(group, rid.as_bytes())
            .map_err(fail(Stage::Issue))
    } else {
        individual_device_key(&ctx.keys, &ctx.batch, rid, nonce).map_err(fail(Stage::Issue))
    }
}

/// The device's endorsement key as DPS holds it: the TPM's TPM2B_PUBLIC, not the SPKI the device
/// reports (the ledger keeps exactly what is enrolled). Reads it unless `read` already has it.
pub(super) fn enrolled_ek(
    driver: &mut dyn DeviceDriver,
    read: Option<TpmEk>,
    info: &DeviceInfo,
    stage: Stage,
) -> Result<Vec<u8>, Failure> {
    let ek = match read {
        Some(ek) => ek,
        None => driver.endorsement_key().map_err(fail(stage))?,
    };
    tpm_ek::spki_to_tpm2b_public(&ek.public_der)
        .map_err(|e| Failure(stage, format!("device {}: {e}", info.serial)))
}
