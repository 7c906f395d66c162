//! Every write the ledger knows, run inside one transaction opened by
//! [`crate::ledger::Ledger::transaction`]: batches, devices and identities here; the enrollment
//! queue in `writer_enrollment`, key sessions in `writer_keys`, the outbox and receipts in
//! `outbox`, leases in `leases` (more `impl LedgerWriter` blocks). Each state change writes its
//! audit row in the same transaction, so the audit log and the tables can never disagree.

use std::path::Path;

use rusqlite::{Transaction, params};
use serde_json::{Value, json};

use super::audit::{self, AuditContent};
use super::certificate;
use super::error::{LedgerError, classify};
use super::queries;
use super::state;
use super::types::*;

/// Who is writing, resolved to the rows of the `stations` and `operators` tables.
#[derive(Debug, Clone)]
pub(crate) struct WriterContext {
    pub station: String,
    pub operator: String,
    pub station_id: i64,
    pub operator_id: i64,
    /// The schema version of the open file.
    pub schema_version: i64,
}

/// The write side of one open transaction. Dropped without commit (an error), nothing is written.
pub struct LedgerWriter<'t> {
    pub(crate) tx: &'t Transaction<'t>,
    pub(crate) ctx: &'t WriterContext,
    pub(crate) path: &'t Path,
    /// One timestamp for every row of the transaction.
    pub(crate) now: String,
}

impl LedgerWriter<'_> {
    pub(super) fn sql(
        &self,
        operation: &'static str,
    ) -> impl Fn(rusqlite::Error) -> LedgerError + '_ {
        move |e| classify(self.path, operation, e)
    }

    /// Appends an audit row as this station's operator.
    pub(super) fn audit(
        &self,
        action: &str,
        subject: &str,
        details: Value,
    ) -> Result<AuditId, LedgerError> {
        let actor = self.ctx.operator.clone();
        self.audit_as(&actor, action, subject, &details)
    }

    pub(super) fn audit_as(
        &self,
        actor: &str,
        action: &str,
        subject: &str,
        details: &Value,
    ) -> Result<AuditId, LedgerError> {
        let details = details.to_string();
        audit::append(
            self.tx,
            &AuditContent {
                at: &self.now,
                station: &self.ctx.station,
                actor,
                action,
                subject,
                details: &details,
            },
            self.ctx.schema_version >= super::outbox::OUTBOX_VERSION,
        )
        .map_err(self.sql("appending to the audit log"))
    }

    /// Records who did what to which subject, for events the ledger has no table for (an HSM key
    /// generated, a group checked in DPS). `details` is JSON; keys that name a secret (`pin`,
    /// `password`, `private_key`, `primary_key`, `shared_access_key`, ...) are refused.
    pub fn append_audit(
        &self,
        actor: &str,
        action: &str,
        subject: &str,
        details: &Value,
    ) -> Result<AuditId, LedgerError> {
        non_empty("audit actor", actor)?;
        non_empty("audit action", action)?;
        if let Some(field) = secret_field(details) {
            return Err(LedgerError::Refused {
                what: format!("audit row {action} for {subject}"),
                reason: format!(
                    "its details carry a field named {field:?}, which looks like a secret; the ledger never stores PINs or keys"
                ),
            });
        }
        self.audit_as(actor, action, subject, details)
    }

    /// Creates a batch.
    pub fn create_batch(&self, batch: &NewBatch) -> Result<BatchId, LedgerError> {
        non_empty("batch name", &batch.name)?;
        if queries::find_batch(self.tx, &batch.name)
            .map_err(self.sql("looking up a batch"))?
            .is_some()
        {
            return Err(LedgerError::DuplicateBatch {
                path: self.path.to_path_buf(),
                name: batch.name.clone(),
            });
        }
        self.tx
            .prepare_cached(
                "INSERT INTO batches (name, product, attestation, enrollment_kind, dps_target,
                   registration_id_template, station_id, operator_id, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    batch.name,
                    batch.product,
                    batch.attestation.as_str(),
                    batch.enrollment_kind.as_str(),
                    batch.dps_target,
                    batch.registration_id_template,
                    self.ctx.station_id,
                    self.ctx.operator_id,
                    self.now
                ])
            })
            .map_err(self.sql("creating a batch"))?;
        let id = BatchId(self.tx.last_insert_rowid());
        self.audit(
            "batch.created",
            &batch.name,
            json!({
                "product": batch.product,
                "attestation": batch.attestation.as_str(),
                "enrollment_kind": batch.enrollment_kind.as_str(),
                "dps_target": batch.dps_target,
                "registration_id_template": batch.registration_id_template,
            }),
        )?;
        Ok(id)
    }

    /// Records a device (model + serial number), or updates what it reports; returns its id.
    pub fn upsert_device(&self, device: &NewDevice) -> Result<DeviceId, LedgerError> {
        non_empty("device model", &device.model)?;
        non_empty("device serial number", &device.serial_number)?;
        let id: i64 = self
            .tx
            .prepare_cached(
                "INSERT INTO devices (model, serial_number, hardware_id, firmware, batch_id, first_seen)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (model, serial_number) DO UPDATE SET
                   hardware_id = coalesce(excluded.hardware_id, hardware_id),
                   firmware = coalesce(excluded.firmware, firmware),
                   batch_id = coalesce(excluded.batch_id, batch_id)
                 RETURNING id",
            )
            .and_then(|mut s| {
                s.query_row(
                    params![
                        device.model,
                        device.serial_number,
                        device.hardware_id,
                        device.firmware,
                        device.batch.map(|b| b.0),
                        self.now
                    ],
                    |r| r.get(0),
                )
            })
            .map_err(self.sql("recording a device"))?;
        Ok(DeviceId(id))
    }

    /// The write-ahead record: the identity exists in the ledger before the device is touched.
    ///
    /// Refused when the registration ID has a live identity, or had one that was revoked: a
    /// registration ID gets a second identity only through [`Self::reprovision`], the explicit
    /// and audited choice.
    pub fn record_issued(&self, identity: &NewIdentity) -> Result<IdentityId, LedgerError> {
        check_registration_id(&identity.registration_id)?;
        if let Some(existing) = queries::live_or_last_revoked(self.tx, &identity.registration_id)
            .map_err(self.sql("looking up a registration ID"))?
        {
            return Err(LedgerError::DuplicateRegistrationId {
                registration_id: identity.registration_id.clone(),
                existing: existing.registration_id,
                state: existing.state,
            });
        }
        self.insert_issued(identity, json!({}))
    }

    /// Explicit re-provisioning of a device, in this one transaction: its live identity (if it
    /// has one: `written`, `enrolled` or failed at enrollment) becomes `revoked` with a reason
    /// that names re-provisioning, the batch and the operator's reason; an audit row
    /// `reprovision` records the device serial, the old identity, the operator and the reason;
    /// and the new identity is recorded `issued` under the same registration ID.
    ///
    /// A live identity that is still `issued` or failed at write is not re-provisioned (the
    /// device never held it for good: [`Self::reissue`] replaces it). A registration ID with no
    /// identity at all is refused: there is nothing to re-provision.
    pub fn reprovision(
        &self,
        identity: &NewIdentity,
        why: &Reprovisioning,
    ) -> Result<IdentityId, LedgerError> {
        check_registration_id(&identity.registration_id)?;
        non_empty("re-provisioning reason", &why.reason)?;
        non_empty("device serial number", &why.device_serial)?;
        let rid = identity.registration_id.as_str();
        let live = queries::identity_state(self.tx, rid)
            .map_err(self.sql("looking up a registration ID"))?;
        let old = match live {
            Some(current) if state::may_reissue(current.state, current.failed_stage) => {
                return Err(LedgerError::Refused {
                    what: format!("re-provisioning registration ID {rid}"),
                    reason: format!(
                        "its identity is still {} (the device never held it for good); provision the device normally, which replaces it",
                        current.state
                    ),
                });
            }
            Some(current) => {
                refuse_other_device(rid, &current, identity, why)?;
                let reason = format!("re-provisioned in batch {}: {}", why.batch, why.reason);
                self.transition(rid, &Transition::Revoked { reason })?;
                current
            }
            None => queries::last_revoked(self.tx, rid)
                .map_err(self.sql("looking up a registration ID"))?
                .ok_or_else(|| LedgerError::UnknownIdentity {
                    path: self.path.to_path_buf(),
                    registration_id: rid.to_string(),
                })
                .and_then(|old| refuse_other_device(rid, &old, identity, why).map(|()| old))?,
        };
        self.audit(
            "reprovision",
            &old.registration_id,
            json!({
                "device_serial": why.device_serial,
                "old_identity": old.id.0,
                "old_state": old.state.as_str(),
                "operator": self.ctx.operator,
                "reason": why.reason,
                "batch": why.batch,
            }),
        )?;
        self.insert_issued(identity, json!({ "replaces": old.id.0 }))
    }

    fn insert_issued(
        &self,
        identity: &NewIdentity,
        extra: Value,
    ) -> Result<IdentityId, LedgerError> {
        let material = self.material(identity)?;
        // `key_nonce` exists from schema v3 on; tests build older ledgers through this code.
        let sql = if self.ctx.schema_version >= 3 {
            "INSERT INTO identities (registration_id, batch_id, device_id, attestation,
               certificate_der, sha1_thumbprint, sha256_thumbprint, subject, issuer, cert_serial,
               not_before, not_after, key_fingerprint, endorsement_key, state,
               station_id, operator_id, created_at, updated_at, key_nonce)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, 'issued',
               ?15, ?16, ?17, ?17, ?18)"
        } else {
            "INSERT INTO identities (registration_id, batch_id, device_id, attestation,
               certificate_der, sha1_thumbprint, sha256_thumbprint, subject, issuer, cert_serial,
               not_before, not_after, key_fingerprint, endorsement_key, state,
               station_id, operator_id, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, 'issued',
               ?15, ?16, ?17, coalesce(?17, ?18))"
        };
        self.tx
            .prepare_cached(sql)
            .and_then(|mut s| {
                let f = material.facts.as_ref();
                s.execute(params![
                    identity.registration_id,
                    identity.batch.map(|b| b.0),
                    identity.device.map(|d| d.0),
                    identity.attestation.kind().as_str(),
                    material.certificate_der,
                    f.map(|f| &f.sha1_thumbprint),
                    f.map(|f| &f.sha256_thumbprint),
                    f.map(|f| &f.subject),
                    f.map(|f| &f.issuer),
                    f.map(|f| &f.serial),
                    f.map(|f| &f.not_before),
                    f.map(|f| &f.not_after),
                    material.key_fingerprint,
                    material.endorsement_key,
                    self.ctx.station_id,
                    self.ctx.operator_id,
                    self.now,
                    material.key_nonce,
                ])
            })
            .map_err(self.sql("recording an issued identity"))?;
        let id = IdentityId(self.tx.last_insert_rowid());
        let mut details = material.audit_details(identity);
        if let (Value::Object(d), Value::Object(extra)) = (&mut details, extra) {
            d.extend(extra);
        }
        self.audit("identity.issued", &identity.registration_id, details)?;
        Ok(id)
    }

    /// Replaces the certificate or key of an identity that is still `issued` or whose write
    /// failed (the device made a new key), keeping its registration ID; state becomes `issued`.
    pub fn reissue(&self, identity: &NewIdentity) -> Result<IdentityId, LedgerError> {
        let current = self.existing(&identity.registration_id)?;
        if !state::may_reissue(current.state, current.failed_stage) {
            return Err(LedgerError::IllegalTransition {
                registration_id: current.registration_id,
                from: current.state,
                to: "reissue",
            });
        }
        let material = self.material(identity)?;
        let f = material.facts.as_ref();
        // `key_nonce` exists from schema v3 on; tests build older ledgers through this code
        // (there ?18 is bound but unused: `now` is never NULL).
        let nonce = if self.ctx.schema_version >= 3 {
            "key_nonce = ?18"
        } else {
            "updated_at = coalesce(?17, ?18)"
        };
        self.tx
            .prepare_cached(&format!(
                "UPDATE identities SET attestation = ?2, certificate_der = ?3, sha1_thumbprint = ?4,
                   sha256_thumbprint = ?5, subject = ?6, issuer = ?7, cert_serial = ?8,
                   not_before = ?9, not_after = ?10, key_fingerprint = ?11, endorsement_key = ?12,
                   batch_id = coalesce(?13, batch_id), device_id = coalesce(?14, device_id),
                   state = 'issued', failed_stage = NULL, failed_reason = NULL,
                   station_id = ?15, operator_id = ?16, updated_at = ?17, {nonce}
                 WHERE id = ?1",
            ))
            .and_then(|mut s| {
                s.execute(params![
                    current.id.0,
                    identity.attestation.kind().as_str(),
                    material.certificate_der,
                    f.map(|f| &f.sha1_thumbprint),
                    f.map(|f| &f.sha256_thumbprint),
                    f.map(|f| &f.subject),
                    f.map(|f| &f.issuer),
                    f.map(|f| &f.serial),
                    f.map(|f| &f.not_before),
                    f.map(|f| &f.not_after),
                    material.key_fingerprint,
                    material.endorsement_key,
                    identity.batch.map(|b| b.0),
                    identity.device.map(|d| d.0),
                    self.ctx.station_id,
                    self.ctx.operator_id,
                    self.now,
                    material.key_nonce,
                ])
            })
            .map_err(self.sql("reissuing an identity"))?;
        let mut details = material.audit_details(identity);
        details["from"] = json!(current.state.as_str());
        self.audit("identity.reissued", &current.registration_id, details)?;
        Ok(current.id)
    }

    /// What an identity stores; a key nonce on a ledger older than schema v3 (which has no
    /// column for it) is an error, not silently dropped: without it the key cannot be recomputed.
    fn material(&self, identity: &NewIdentity) -> Result<Material, LedgerError> {
        let material = Material::of(&identity.registration_id, &identity.attestation)?;
        if material.key_nonce.is_some() && self.ctx.schema_version < 3 {
            return Err(LedgerError::KeyNonceNeedsSchemaV3 {
                path: self.path.to_path_buf(),
                registration_id: identity.registration_id.clone(),
                schema_version: self.ctx.schema_version,
            });
        }
        Ok(material)
    }

    /// The live identity of a registration ID, or else its newest revoked one (so that a change
    /// of a revoked identity is an illegal transition, not an unknown identity).
    pub(super) fn existing(
        &self,
        registration_id: &str,
    ) -> Result<queries::CurrentState, LedgerError> {
        queries::live_or_last_revoked(self.tx, registration_id)
            .map_err(self.sql("looking up an identity"))?
            .ok_or_else(|| LedgerError::UnknownIdentity {
                path: self.path.to_path_buf(),
                registration_id: registration_id.to_string(),
            })
    }

    /// Moves an identity through the state machine; an illegal change is an error and writes nothing.
    pub fn transition(
        &self,
        registration_id: &str,
        transition: &Transition,
    ) -> Result<IdentityState, LedgerError> {
        let current = self.existing(registration_id)?;
        let Some(next) = state::next_state(current.state, current.failed_stage, transition) else {
            return Err(LedgerError::IllegalTransition {
                registration_id: current.registration_id,
                from: current.state,
                to: state::change_name(transition),
            });
        };
        // Only a `failed` identity carries a stage and reason (a CHECK constraint ties them);
        // leaving `failed` (retry, revoke) clears them, and the audit log keeps the history.
        let (stage, failed_reason, revoked_reason) = match transition {
            Transition::Failed { stage, reason } => (Some(stage.as_str()), Some(reason), None),
            Transition::Revoked { reason } => (None, None, Some(reason)),
            _ => (None, None, None),
        };
        self.tx
            .prepare_cached(
                "UPDATE identities SET state = ?2, failed_stage = ?3, failed_reason = ?4,
                   revoked_reason = coalesce(?5, revoked_reason), updated_at = ?6
                 WHERE id = ?1",
            )
            .and_then(|mut s| {
                s.execute(params![
                    current.id.0,
                    next.as_str(),
                    stage,
                    failed_reason,
                    revoked_reason,
                    self.now
                ])
            })
            .map_err(self.sql("changing an identity's state"))?;
        if next == IdentityState::Revoked {
            // Nothing may enroll a revoked identity: its waiting enrollments end here.
            self.tx
                .execute(
                    "UPDATE enrollments SET state = 'failed', last_error = 'identity revoked',
                       updated_at = ?2 WHERE identity_id = ?1 AND state = 'pending'",
                    params![current.id.0, self.now],
                )
                .map_err(self.sql("cancelling the enrollments of a revoked identity"))?;
        }
        let mut details = json!({ "from": current.state.as_str(), "to": next.as_str() });
        match transition {
            Transition::Failed { stage, reason } => {
                details["stage"] = json!(stage.as_str());
                details["reason"] = json!(reason);
            }
            Transition::Revoked { reason } => details["reason"] = json!(reason),
            _ => {}
        }
        self.audit(
            &format!("identity.{}", state::change_name(transition)),
            &current.registration_id,
            details,
        )?;
        Ok(next)
    }
}

/// Inserts the operator if new; returns its id.
pub(crate) fn upsert_operator(
    conn: &rusqlite::Connection,
    operator: &str,
    now: &str,
) -> rusqlite::Result<i64> {
    conn.query_row(
        "INSERT INTO operators (name, first_seen) VALUES (?1, ?2)
         ON CONFLICT (name) DO UPDATE SET name = excluded.name RETURNING id",
        params![operator, now],
        |r| r.get(0),
    )
}

/// Inserts or refreshes the station row; returns its id.
pub(crate) fn upsert_station(
    conn: &rusqlite::Connection,
    station: &str,
    host: &str,
    now: &str,
) -> rusqlite::Result<i64> {
    conn.query_row(
        "INSERT INTO stations (name, host, first_seen, last_seen) VALUES (?1, ?2, ?3, ?3)
         ON CONFLICT (name) DO UPDATE SET host = excluded.host, last_seen = excluded.last_seen
         RETURNING id",
        params![station, host, now],
        |r| r.get(0),
    )
}

/// The attestation material as columns, checked.
struct Material {
    certificate_der: Option<Vec<u8>>,
    facts: Option<CertificateFacts>,
    key_fingerprint: Option<String>,
    endorsement_key: Option<Vec<u8>>,
    key_nonce: Option<Vec<u8>>,
}

impl Material {
    fn of(registration_id: &str, attestation: &Attestation) -> Result<Self, LedgerError> {
        Ok(match attestation {
            Attestation::X509 { certificate_der } => {
                let facts = certificate::facts(certificate_der).map_err(|detail| {
                    LedgerError::InvalidCertificate {
                        subject: format!("identity {registration_id}"),
                        detail,
                    }
                })?;
                Self {
                    certificate_der: Some(certificate_der.clone()),
                    facts: Some(facts),
                    key_fingerprint: None,
                    endorsement_key: None,
                    key_nonce: None,
                }
            }
            Attestation::SymmetricKey {
                key_fingerprint,
                key_nonce,
            } => Self {
                certificate_der: None,
                facts: None,
                key_fingerprint: Some(key_fingerprint.as_str().to_string()),
                endorsement_key: None,
                key_nonce: key_nonce.map(|n| n.as_bytes().to_vec()),
            },
            Attestation::Tpm { endorsement_key } => {
                if endorsement_key.is_empty() {
                    return Err(LedgerError::Refused {
                        what: format!("identity {registration_id}"),
                        reason: "its TPM endorsement key is empty".into(),
                    });
                }
                Self {
                    certificate_der: None,
                    facts: None,
                    key_fingerprint: None,
                    endorsement_key: Some(endorsement_key.clone()),
                    key_nonce: None,
                }
            }
        })
    }

    fn audit_details(&self, identity: &NewIdentity) -> Value {
        let mut d = json!({ "attestation": identity.attestation.kind().as_str() });
        if let Some(f) = &self.facts {
            d["sha256_thumbprint"] = json!(f.sha256_thumbprint);
            d["issuer"] = json!(f.issuer);
            d["serial"] = json!(f.serial);
        }
        if let Some(fp) = &self.key_fingerprint {
            d["key_fingerprint"] = json!(fp);
        }
        if let Some(nonce) = &self.key_nonce {
            d["key_nonce"] = json!(hex::encode(nonce));
        }
        if let Some(batch) = identity.batch {
            d["batch"] = json!(batch.0);
        }
        if let Some(device) = identity.device {
            d["device"] = json!(device.0);
        }
        d
    }
}

/// Re-provisioning replaces the identity of the same device only: two devices that render one
/// registration ID (a template that collides) must not revoke each other's identities.
fn refuse_other_device(
    rid: &str,
    old: &queries::CurrentState,
    identity: &NewIdentity,
    why: &Reprovisioning,
) -> Result<(), LedgerError> {
    match (old.device, identity.device) {
        (Some(held), Some(new)) if held != new => Err(LedgerError::Refused {
            what: format!("re-provisioning registration ID {rid}"),
            reason: format!(
                "its identity {} belongs to another device (device row {}) than device serial {} (device row {}): registration ID collision; fix the batch's registration_id template",
                old.id.0, held.0, why.device_serial, new.0
            ),
        }),
        _ => Ok(()),
    }
}

pub(super) fn non_empty(what: &str, value: &str) -> Result<(), LedgerError> {
    if value.trim().is_empty() {
        return Err(LedgerError::Refused {
            what: what.to_string(),
            reason: "it is empty".into(),
        });
    }
    Ok(())
}

/// The ledger's own sanity check; the full DPS rules live in `identity` (this module must not
/// import it), so this only keeps out what no DPS registration ID can be.
fn check_registration_id(id: &str) -> Result<(), LedgerError> {
    let refuse = |reason: String| {
        Err(LedgerError::Refused {
            what: format!("registration ID {id:?}"),
            reason,
        })
    };
    if id.is_empty() {
        return refuse("it is empty".into());
    }
    if id.len() > 128 {
        return refuse(format!("it has {} characters; DPS allows 128", id.len()));
    }
    if let Some((pos, c)) = id
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || "-._:".contains(*c)))
    {
        return refuse(format!(
            "character {c:?} at position {} is not allowed by DPS",
            pos + 1
        ));
    }
    Ok(())
}

/// Names of JSON fields that would hold a secret; compared after lowercasing and removing `-`/`_`.
const SECRET_FIELDS: &[&str] = &[
    "pin",
    "userpin",
    "sopin",
    "pinvalue",
    "password",
    "passphrase",
    "secret",
    "privatekey",
    "primarykey",
    "secondarykey",
    "sharedaccesskey",
    "symmetrickey",
    "groupkey",
    "devicekey",
    "derivedkey",
    "key",
    "sastoken",
    "connectionstring",
];

/// The first field name in `value` (at any depth) that names a secret.
fn secret_field(value: &Value) -> Option<String> {
    match value {
        Value::Object(map) => map.iter().find_map(|(k, v)| {
            let norm: String = k
                .chars()
                .filter(|c| *c != '_' && *c != '-')
                .collect::<String>()
                .to_ascii_lowercase();
            if SECRET_FIELDS.contains(&norm.as_str()) {
                Some(k.clone())
            } else {
                secret_field(v)
            }
        }),
        Value::Array(items) => items.iter().find_map(secret_field),
        Value::String(s) if s.contains("SharedAccessKey=") => {
            Some("(a connection string with SharedAccessKey)".into())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_fields_are_found_at_any_depth() {
        assert_eq!(
            secret_field(&json!({"a": {"user_pin": "1"}})),
            Some("user_pin".into())
        );
        assert_eq!(
            secret_field(&json!([{"Primary-Key": "x"}])),
            Some("Primary-Key".into())
        );
        assert!(
            secret_field(&json!({"key_uri": "pkcs11:object=ca", "key_fingerprint": "x"})).is_none()
        );
        assert!(secret_field(&json!({"c": "HostName=x;SharedAccessKey=abc"})).is_some());
    }

    #[test]
    fn registration_id_sanity() {
        assert!(check_registration_id("sensor-000001").is_ok());
        assert!(check_registration_id("").is_err());
        assert!(check_registration_id(&"a".repeat(129)).is_err());
        let err = check_registration_id("bad id").unwrap_err().to_string();
        assert!(err.contains("position 4"), "{err}");
    }
}
