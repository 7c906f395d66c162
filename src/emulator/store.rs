//! The emulator's data: enrollments, groups, registration states and device-API operations,
//! keyed by lower-cased ID (IDs are case-insensitive) and ordered, so paging is stable.
//! Every rule about create/update/delete, etags and quotas lives here.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::api_error::{ApiError, code};
use super::config::Limits;
use super::enrollment::{self, Context, Kind};
use super::ids;
use crate::secret::SecretString;

/// A device's registration record and the group it came through (for query by group).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegistrationRecord {
    /// `DeviceRegistrationState` as the service API returns it.
    pub state: Value,
    /// The enrollment group the device registered through, if any.
    pub enrollment_group_id: Option<String>,
}

/// A device-API registration operation, polled by `GET .../operations/{operationId}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OperationRecord {
    /// The operation's ID.
    pub operation_id: String,
    /// `RegistrationOperationStatus` body once assigned.
    pub result: Value,
}

/// The registration key the TPM challenge issued to one registration ID: the device proves it
/// recovered it (with its EK) by signing its SAS token with it.
#[derive(Debug, Clone)]
pub struct TpmChallenge {
    /// The key, base64 (the SAS signing key).
    pub key: SecretString,
    /// The blob the device was sent (`authenticationKey`), repeated in the registration result.
    pub blob_b64: String,
    /// Unix seconds after which the key is refused.
    pub expires: i64,
    /// The enrolled endorsement key (TPM2B_PUBLIC bytes) the key was wrapped to: a key issued
    /// for an EK that is no longer the enrolled one proves nothing.
    pub ek: Vec<u8>,
    /// A registration already succeeded with the key: it still signs the polling of that
    /// operation, but a new registration needs a new challenge.
    pub registered: bool,
}

/// Everything the emulator knows; serialised as-is into the state file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct State {
    /// Counts changes, so that the state-file writer never replaces a newer snapshot with an older one.
    #[serde(skip)]
    pub generation: u64,
    /// The ID scope, kept so that a restart serves the same scope.
    #[serde(default)]
    pub id_scope: String,
    /// Generated policy keys, kept so that a restart keeps the same connection string.
    #[serde(default)]
    pub generated_keys: Option<(String, String)>,
    /// Individual enrollments.
    #[serde(default)]
    pub enrollments: BTreeMap<String, Value>,
    /// Enrollment groups.
    #[serde(default)]
    pub groups: BTreeMap<String, Value>,
    /// Device registration states.
    #[serde(default)]
    pub registrations: BTreeMap<String, RegistrationRecord>,
    /// The latest device-API operation of each registration ID (lower-cased), so that the
    /// store does not grow with every re-registration.
    #[serde(default)]
    pub operations: BTreeMap<String, OperationRecord>,
    /// Keys issued by the TPM challenge, by registration ID (lower-cased). Held in memory only:
    /// after a restart a device simply gets a new challenge, as from DPS.
    #[serde(skip)]
    pub tpm_challenges: BTreeMap<String, TpmChallenge>,
    /// The local IoT hub's device identities and twins, by device ID (lower-cased).
    #[serde(default)]
    pub hub_devices: BTreeMap<String, super::hub::HubDevice>,
    /// Uploaded CA certificates by name (lower-cased), for `caReferences` groups.
    #[serde(default)]
    pub ca_certificates: BTreeMap<String, super::ca_registry::CaCertificate>,
}

/// An `If-Match` value without quotes or weak prefix; `*` stays `*`.
pub fn normalize_etag(value: &str) -> String {
    let v = value.trim();
    let v = v.strip_prefix("W/").unwrap_or(v);
    let v = v
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(v);
    v.to_owned()
}

/// Whether `If-Match` allows changing a document whose etag is `current`.
pub fn etag_matches(if_match: &str, current: Option<&str>) -> bool {
    let wanted = normalize_etag(if_match);
    wanted == "*" || current.is_some_and(|c| normalize_etag(c) == wanted)
}

/// What a change is checked against besides the body: the quotas, the linked hubs, the time.
pub struct Rules<'a> {
    /// Quotas.
    pub limits: &'a Limits,
    /// Linked IoT hubs (empty = any).
    pub linked_hubs: &'a [String],
    /// Now, RFC 3339.
    pub now: &'a str,
}

/// The outcome of one bulk item, as `BulkEnrollmentOperationError`.
#[derive(Debug, Clone)]
pub struct ItemError {
    /// The item's ID.
    pub id: String,
    /// Six-digit code.
    pub code: u32,
    /// Text.
    pub status: String,
}

impl State {
    fn map(&self, kind: Kind) -> &BTreeMap<String, Value> {
        match kind {
            Kind::Individual => &self.enrollments,
            Kind::Group => &self.groups,
        }
    }

    fn map_mut(&mut self, kind: Kind) -> &mut BTreeMap<String, Value> {
        match kind {
            Kind::Individual => &mut self.enrollments,
            Kind::Group => &mut self.groups,
        }
    }

    /// A stored document, or the kind's 404.
    pub fn get(&self, kind: Kind, id: &str) -> Result<&Value, ApiError> {
        self.map(kind)
            .get(&ids::key(id))
            .ok_or_else(|| not_found(kind, id))
    }

    fn check_quota(&self, kind: Kind, doc: &Value, limits: &Limits) -> Result<(), ApiError> {
        match kind {
            Kind::Individual => {
                if self.enrollments.len() >= limits.max_individual_enrollments {
                    return Err(ApiError::new(
                        code::QUOTA,
                        format!(
                            "the instance holds its maximum of {} individual enrollments; delete some first",
                            limits.max_individual_enrollments
                        ),
                    ));
                }
            }
            Kind::Group => {
                let ty = enrollment::attestation_type(doc);
                let (max, label) = match ty {
                    "symmetricKey" => (limits.max_symmetric_key_groups, "symmetric-key"),
                    _ => (limits.max_x509_groups, "X.509"),
                };
                let count = self
                    .groups
                    .values()
                    .filter(|g| {
                        (enrollment::attestation_type(g) == "symmetricKey")
                            == (ty == "symmetricKey")
                    })
                    .count();
                if count >= max {
                    return Err(ApiError::new(
                        code::QUOTA,
                        format!(
                            "the instance holds its maximum of {max} {label} enrollment groups"
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// PUT semantics: create, or replace when `If-Match` allows it (REFERENCE.md §4).
    ///
    /// An existing ID without `If-Match` is 409; a wrong etag is 412. `If-Match: *` on a
    /// missing ID creates it; a specific etag on a missing ID is 412.
    pub fn put(
        &mut self,
        kind: Kind,
        body: Value,
        path_id: Option<&str>,
        if_match: Option<&str>,
        rules: &Rules<'_>,
    ) -> Result<Value, ApiError> {
        let id = match path_id {
            Some(p) => p.to_owned(),
            None => enrollment::body_id(kind, &body),
        };
        let key = ids::key(&id);
        let existing = self.map(kind).get(&key);
        match (existing, if_match) {
            (Some(_), None) => {
                return Err(ApiError::new(
                    kind.exists_code(),
                    format!(
                        "{} '{id}' already exists; to replace it send If-Match with its etag (or *)",
                        kind.noun()
                    ),
                ));
            }
            (Some(doc), Some(m)) if !etag_matches(m, doc.get("etag").and_then(Value::as_str)) => {
                return Err(precondition_failed(kind, &id));
            }
            (None, Some(m)) if normalize_etag(m) != "*" => {
                return Err(precondition_failed(kind, &id));
            }
            _ => {}
        }
        let ctx = Context {
            linked_hubs: rules.linked_hubs,
            existing,
            now: rules.now,
        };
        let doc = enrollment::prepare(kind, body, path_id, &ctx)?;
        if existing.is_none() {
            self.check_quota(kind, &doc, rules.limits)?;
        }
        if kind == Kind::Individual {
            // A key issued for the replaced enrollment (another EK, say) must not outlive it.
            self.tpm_challenges.remove(&key);
        }
        self.map_mut(kind).insert(key, doc.clone());
        Ok(doc)
    }

    /// DELETE semantics: 404 when missing, 412 on a wrong etag.
    pub fn delete(&mut self, kind: Kind, id: &str, if_match: Option<&str>) -> Result<(), ApiError> {
        let key = ids::key(id);
        let doc = self
            .map(kind)
            .get(&key)
            .ok_or_else(|| not_found(kind, id))?;
        if let Some(m) = if_match
            && !etag_matches(m, doc.get("etag").and_then(Value::as_str))
        {
            return Err(precondition_failed(kind, id));
        }
        if kind == Kind::Individual {
            self.tpm_challenges.remove(&key);
        }
        self.map_mut(kind).remove(&key);
        Ok(())
    }

    /// One bulk call; items are applied in order, each on its own (a failing item does not undo the others).
    pub fn bulk(
        &mut self,
        kind: Kind,
        items: Vec<Value>,
        mode: BulkMode,
        rules: &Rules<'_>,
    ) -> Vec<ItemError> {
        let mut errors = Vec::new();
        for item in items {
            let id = enrollment::body_id(kind, &item);
            let etag = item.get("etag").and_then(Value::as_str).map(str::to_owned);
            let result = match mode {
                BulkMode::Create => self.put(kind, item, None, None, rules).map(drop),
                BulkMode::Update => self.put(kind, item, None, Some("*"), rules).map(drop),
                BulkMode::UpdateIfMatchEtag => {
                    let exists = self.map(kind).contains_key(&ids::key(&id));
                    match (&etag, exists) {
                        (Some(e), true) => self.put(kind, item, None, Some(e), rules).map(drop),
                        (None, true) => Err(precondition_failed(kind, &id)),
                        (_, false) => self.put(kind, item, None, Some("*"), rules).map(drop),
                    }
                }
                BulkMode::Delete => {
                    if id.is_empty() {
                        Err(ApiError::bad_request(format!(
                            "the {} has no {}",
                            kind.noun(),
                            kind.id_field()
                        )))
                    } else {
                        self.delete(kind, &id, etag.as_deref())
                    }
                }
            };
            if let Err(e) = result {
                errors.push(ItemError {
                    id,
                    code: e.code,
                    status: e.message,
                });
            }
        }
        errors
    }

    /// A page of documents after `after` (a lower-cased ID), at most `size` long.
    pub fn page(
        &self,
        kind: Kind,
        after: Option<&str>,
        size: usize,
    ) -> (Vec<Value>, Option<String>) {
        let range: Box<dyn Iterator<Item = (&String, &Value)>> = match after {
            Some(a) => Box::new(
                self.map(kind)
                    .range::<str, _>((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded)),
            ),
            None => Box::new(self.map(kind).iter()),
        };
        page_of(range.map(|(k, v)| (k.clone(), enrollment::render(v))), size)
    }

    /// A page of the registration states of one group's devices.
    pub fn registrations_page(
        &self,
        group_id: &str,
        after: Option<&str>,
        size: usize,
    ) -> (Vec<Value>, Option<String>) {
        let group = ids::key(group_id);
        let iter = self
            .registrations
            .iter()
            .filter(|(k, _)| after.is_none_or(|a| k.as_str() > a))
            .filter(|(_, r)| {
                r.enrollment_group_id.as_deref().map(ids::key).as_deref() == Some(group.as_str())
            })
            .map(|(k, r)| (k.clone(), r.state.clone()));
        page_of(iter, size)
    }

    /// A device registration state.
    pub fn registration(&self, id: &str) -> Result<&RegistrationRecord, ApiError> {
        self.registrations.get(&ids::key(id)).ok_or_else(|| {
            ApiError::new(
                code::REGISTRATION_NOT_FOUND,
                format!("no device registration state for registration ID '{id}'"),
            )
        })
    }

    /// Deletes a registration state (and the copy inside its individual enrollment).
    pub fn delete_registration(
        &mut self,
        id: &str,
        if_match: Option<&str>,
    ) -> Result<(), ApiError> {
        let key = ids::key(id);
        let record = self.registration(id)?;
        if let Some(m) = if_match
            && !etag_matches(m, record.state.get("etag").and_then(Value::as_str))
        {
            return Err(ApiError::new(
                code::PRECONDITION_FAILED,
                format!("registration state '{id}': If-Match does not match its etag"),
            ));
        }
        self.registrations.remove(&key);
        if let Some(Value::Object(e)) = self.enrollments.get_mut(&key) {
            e.remove("registrationState");
        }
        Ok(())
    }

    /// Records a registration: the registrations API and the individual enrollment both show it.
    pub fn record_registration(
        &mut self,
        registration_id: &str,
        state: Value,
        group: Option<&str>,
        limits: &Limits,
    ) -> Result<(), ApiError> {
        let key = ids::key(registration_id);
        if !self.registrations.contains_key(&key)
            && self.registrations.len() >= limits.max_registrations
        {
            return Err(ApiError::new(
                code::QUOTA,
                format!(
                    "the instance holds its maximum of {} registrations",
                    limits.max_registrations
                ),
            ));
        }
        if group.is_none()
            && let Some(Value::Object(e)) = self.enrollments.get_mut(&key)
        {
            e.insert("registrationState".into(), state.clone());
        }
        self.registrations.insert(
            key,
            RegistrationRecord {
                state,
                enrollment_group_id: group.map(str::to_owned),
            },
        );
        Ok(())
    }
}

fn page_of(
    iter: impl Iterator<Item = (String, Value)>,
    size: usize,
) -> (Vec<Value>, Option<String>) {
    let mut items = Vec::new();
    let mut last = None;
    let mut iter = iter.peekable();
    while items.len() < size {
        let Some((k, v)) = iter.next() else { break };
        items.push(v);
        last = Some(k);
    }
    let more = iter.peek().is_some();
    (items, if more { last } else { None })
}

fn not_found(kind: Kind, id: &str) -> ApiError {
    ApiError::new(
        kind.not_found_code(),
        format!("{} '{id}' not found", kind.noun()),
    )
}

fn precondition_failed(kind: Kind, id: &str) -> ApiError {
    ApiError::new(
        code::PRECONDITION_FAILED,
        format!(
            "{} '{id}': If-Match does not match its current etag; GET it again and retry with the new etag",
            kind.noun()
        ),
    )
}

/// The bulk modes; `updateIfMatchEtag` (the Node SDK's spelling) is accepted too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BulkMode {
    /// Fails per item when the ID exists.
    Create,
    /// Creates or replaces, ignoring etags.
    Update,
    /// Replaces only when the item's etag matches.
    UpdateIfMatchEtag,
    /// Deletes (checking the etag when the item has one).
    Delete,
}

impl BulkMode {
    /// Parses `mode`, case-insensitively.
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "create" => Some(Self::Create),
            "update" => Some(Self::Update),
            "updateifmatchetag" => Some(Self::UpdateIfMatchEtag),
            "delete" => Some(Self::Delete),
            _ => None,
        }
    }
}

/// `BulkEnrollmentOperationResult` (or the group variant) for a list of item errors.
pub fn bulk_result(kind: Kind, errors: &[ItemError]) -> Value {
    if errors.is_empty() {
        return json!({ "isSuccessful": true });
    }
    let errs: Vec<Value> = errors
        .iter()
        .map(|e| json!({ kind.id_field(): e.id, "errorCode": e.code, "errorStatus": e.status }))
        .collect();
    json!({ "isSuccessful": false, "errors": errs })
}
