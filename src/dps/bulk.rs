//! Bulk enrollment operations: at most 10 items per call (the documented limit no SDK enforces),
//! every per-item error mapped back to its registration ID, and `create` conflicts checked so that
//! an enrollment that landed in an earlier (lost) answer is confirmed rather than reported failed.
//!
//! A bulk call is one operation of the quota, so 10 per call is ten times the throughput of one
//! PUT per device.

use std::collections::HashSet;
use std::fmt;

use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::client::{DpsClient, Op, to_body};
use super::enrollments::{max_len_for, request};
use super::error::{DpsError, ServiceErrorKind, enrollment_target, group_target};
use super::model::{
    BulkEnrollmentGroupOperationResult, BulkEnrollmentOperationResult, BulkMode, EnrollmentGroup,
    IndividualEnrollment,
};
use super::registration_id::{RegistrationIdError, validate_group_id, validate_registration_id};

/// Most items DPS takes in one bulk call.
pub const MAX_BULK_ITEMS: usize = 10;

/// What happened to one item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemOutcome {
    /// Created now.
    Created,
    /// Already there with the same attestation; confirmed, unchanged.
    AlreadyPresent,
    /// Replaced (`update` modes).
    Updated,
    /// Deleted.
    Deleted,
}

/// Why one item failed; names the enrollment and carries the DPS code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemFailure {
    /// The registration (or group) ID.
    pub id: String,
    /// DPS per-item `errorCode` (e.g. 409201), or the HTTP-level one if the whole call failed.
    pub error_code: Option<i64>,
    /// What DPS or the client said, and what to do.
    pub message: String,
    /// True when DPS did not judge this item (the call failed, was not sent, or the check of an
    /// existing enrollment failed): it may succeed later. False when DPS or the ID rules refused it.
    pub retry_later: bool,
}

impl fmt::Display for ItemFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "'{}': ", self.id)?;
        if let Some(code) = self.error_code {
            write!(f, "errorCode {code}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// The outcome of one item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemResult {
    /// The registration (or group) ID.
    pub id: String,
    /// Success or the reason.
    pub result: Result<ItemOutcome, ItemFailure>,
}

/// All items of a bulk run, in input order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BulkReport {
    /// One per input item.
    pub items: Vec<ItemResult>,
}

impl BulkReport {
    /// Items DPS confirmed.
    pub fn succeeded(&self) -> impl Iterator<Item = &ItemResult> {
        self.items.iter().filter(|i| i.result.is_ok())
    }

    /// Items that failed.
    pub fn failed(&self) -> impl Iterator<Item = &ItemFailure> {
        self.items.iter().filter_map(|i| i.result.as_ref().err())
    }

    /// True if every item succeeded.
    pub fn all_succeeded(&self) -> bool {
        self.items.iter().all(|i| i.result.is_ok())
    }
}

/// What differs between individual enrollments and groups in a bulk call.
trait BulkKind: Serialize + Clone {
    type Answer: DeserializeOwned;
    const PATH: &'static str;
    const ITEMS_FIELD: &'static str;
    fn id(&self) -> &str;
    fn validate(&self) -> Result<(), RegistrationIdError>;
    fn target(id: &str) -> String;
    fn answer_items(answer: Self::Answer) -> Vec<(String, i64, String)>;
    fn holds_same(&self, client: &DpsClient) -> Result<bool, DpsError>;
}

impl BulkKind for IndividualEnrollment {
    type Answer = BulkEnrollmentOperationResult;
    const PATH: &'static str = "/enrollments";
    const ITEMS_FIELD: &'static str = "enrollments";
    fn id(&self) -> &str {
        &self.registration_id
    }
    fn validate(&self) -> Result<(), RegistrationIdError> {
        validate_registration_id(&self.registration_id, max_len_for(self))
    }
    fn target(id: &str) -> String {
        enrollment_target(id)
    }
    fn answer_items(answer: Self::Answer) -> Vec<(String, i64, String)> {
        answer
            .errors
            .into_iter()
            .map(|e| (e.registration_id, e.error_code, e.error_status))
            .collect()
    }
    fn holds_same(&self, client: &DpsClient) -> Result<bool, DpsError> {
        client.holds_same_enrollment(self)
    }
}

impl BulkKind for EnrollmentGroup {
    type Answer = BulkEnrollmentGroupOperationResult;
    const PATH: &'static str = "/enrollmentGroups";
    const ITEMS_FIELD: &'static str = "enrollmentGroups";
    fn id(&self) -> &str {
        &self.enrollment_group_id
    }
    fn validate(&self) -> Result<(), RegistrationIdError> {
        validate_group_id(&self.enrollment_group_id)
    }
    fn target(id: &str) -> String {
        group_target(id)
    }
    fn answer_items(answer: Self::Answer) -> Vec<(String, i64, String)> {
        answer
            .errors
            .into_iter()
            .map(|e| (e.enrollment_group_id, e.error_code, e.error_status))
            .collect()
    }
    fn holds_same(&self, client: &DpsClient) -> Result<bool, DpsError> {
        client.holds_same_group(self)
    }
}

/// Splits a batch into bulk-call sized chunks.
pub fn chunks<T>(items: &[T]) -> std::slice::Chunks<'_, T> {
    items.chunks(MAX_BULK_ITEMS)
}

impl DpsClient {
    /// Runs a bulk operation over any number of enrollments, 10 per call. `BulkMode::Create`
    /// never overwrites; use `Update` only when the user chose re-provisioning.
    ///
    /// Keeps going after per-item errors. Stops sending (and reports the rest as not sent) when
    /// DPS refuses the credentials or stays unreachable or throttled after the retries.
    pub fn bulk_enrollments(
        &self,
        enrollments: &[IndividualEnrollment],
        mode: BulkMode,
    ) -> BulkReport {
        self.bulk_all(enrollments, mode, |_| {})
    }

    /// Like [`Self::bulk_enrollments`], calling `progress` after each chunk with its results.
    pub fn bulk_enrollments_with_progress(
        &self,
        enrollments: &[IndividualEnrollment],
        mode: BulkMode,
        progress: impl FnMut(&[ItemResult]),
    ) -> BulkReport {
        self.bulk_all(enrollments, mode, progress)
    }

    /// Runs a bulk operation over enrollment groups, 10 per call.
    pub fn bulk_groups(&self, groups: &[EnrollmentGroup], mode: BulkMode) -> BulkReport {
        self.bulk_all(groups, mode, |_| {})
    }

    fn bulk_all<T: BulkKind>(
        &self,
        items: &[T],
        mode: BulkMode,
        mut progress: impl FnMut(&[ItemResult]),
    ) -> BulkReport {
        let mut report = BulkReport::default();
        let mut seen = HashSet::new();
        let mut stop: Option<String> = None;
        for chunk in chunks(items) {
            let mut results: Vec<Option<ItemResult>> = vec![None; chunk.len()];
            let mut to_send = Vec::new();
            for (i, item) in chunk.iter().enumerate() {
                let id = item.id().to_string();
                // (message, retry_later): an item not sent may go later; a bad ID never will.
                let failure = if let Some(reason) = &stop {
                    Some((format!("not sent: {reason}"), true))
                } else if let Err(e) = item.validate() {
                    Some((e.to_string(), false))
                } else if !seen.insert(id.to_ascii_lowercase()) {
                    Some((
                        "appears twice in this batch (DPS IDs are case-insensitive); sent once"
                            .to_string(),
                        false,
                    ))
                } else {
                    None
                };
                match failure {
                    Some((message, retry_later)) => {
                        results[i] = Some(ItemResult {
                            id: id.clone(),
                            result: Err(ItemFailure {
                                id,
                                error_code: None,
                                message,
                                retry_later,
                            }),
                        });
                    }
                    None => to_send.push(i),
                }
            }
            if !to_send.is_empty() {
                let sent: Vec<&T> = to_send.iter().map(|&i| &chunk[i]).collect();
                match self.bulk_call(&sent, mode) {
                    Ok(outcomes) => {
                        for (&i, outcome) in to_send.iter().zip(outcomes) {
                            results[i] = Some(outcome);
                        }
                    }
                    Err(err) => {
                        let fatal = matches!(
                            err.kind(),
                            Some(
                                ServiceErrorKind::Unauthorized
                                    | ServiceErrorKind::Forbidden
                                    | ServiceErrorKind::Throttled
                                    | ServiceErrorKind::Server
                            )
                        ) || matches!(err, DpsError::Transport { .. });
                        let code = err.service().and_then(|s| s.error_code);
                        let message = err.to_string();
                        for &i in &to_send {
                            let id = chunk[i].id().to_string();
                            results[i] = Some(ItemResult {
                                id: id.clone(),
                                result: Err(ItemFailure {
                                    id,
                                    error_code: code,
                                    message: message.clone(),
                                    // DPS did not judge the item: the whole call failed.
                                    retry_later: true,
                                }),
                            });
                        }
                        if fatal {
                            stop = Some(message);
                        }
                    }
                }
            }
            let results: Vec<ItemResult> = results.into_iter().flatten().collect();
            progress(&results);
            report.items.extend(results);
        }
        report
    }

    /// One bulk call of at most 10 items; per-item results in the order given.
    fn bulk_call<T: BulkKind>(
        &self,
        items: &[&T],
        mode: BulkMode,
    ) -> Result<Vec<ItemResult>, DpsError> {
        let first = items.first().map(|i| i.id()).unwrap_or_default();
        let target = format!("a bulk of {} ({} first)", items.len(), T::target(first));
        let op = Op {
            operation: bulk_verb(mode),
            target: &target,
        };
        let mut body = serde_json::Map::new();
        body.insert(
            T::ITEMS_FIELD.into(),
            serde_json::to_value(items).map_err(|e| DpsError::UnexpectedAnswer {
                operation: op.operation.into(),
                target: target.clone(),
                status: 0,
                detail: format!("cannot encode the request: {e}"),
            })?,
        );
        body.insert(
            "mode".into(),
            serde_json::to_value(mode).unwrap_or(serde_json::Value::Null),
        );
        let req = request(
            Method::POST,
            T::PATH.into(),
            None,
            Some(to_body(&op, &body)?),
        );
        let answer: T::Answer = self.execute_json(&op, &req)?;
        let per_item = T::answer_items(answer);
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            let id = item.id();
            let reported = per_item
                .iter()
                .find(|(rid, _, _)| rid.eq_ignore_ascii_case(id))
                .filter(|(_, code, _)| !(200..300).contains(code));
            let result = match reported {
                None => Ok(success_for(mode)),
                Some((_, code, status)) if mode == BulkMode::Create && code / 1000 == 409 => {
                    // Already there: ours (an earlier send or run landed) or someone else's.
                    match item.holds_same(self) {
                        Ok(true) => Ok(ItemOutcome::AlreadyPresent),
                        Ok(false) => Err(ItemFailure {
                            id: id.to_string(),
                            error_code: Some(*code),
                            message: format!(
                                "{status}: it already exists in DPS with a different attestation \
                                 and was left untouched; choose re-provisioning to replace it"
                            ),
                            retry_later: false,
                        }),
                        Err(e) => Err(ItemFailure {
                            id: id.to_string(),
                            error_code: Some(*code),
                            message: format!("{status}; checking the existing one failed: {e}"),
                            retry_later: true,
                        }),
                    }
                }
                Some((_, code, status)) => Err(ItemFailure {
                    id: id.to_string(),
                    error_code: Some(*code),
                    message: status.clone(),
                    // A per-item 429 or 5xx is DPS saying "not now", not "no".
                    retry_later: *code / 1000 == 429 || *code / 1000 >= 500,
                }),
            };
            if let Err(f) = &result {
                tracing::warn!(id = %f.id, error_code = ?f.error_code, "DPS refused a bulk item");
            }
            out.push(ItemResult {
                id: id.to_string(),
                result,
            });
        }
        Ok(out)
    }
}

fn bulk_verb(mode: BulkMode) -> &'static str {
    match mode {
        BulkMode::Create => "bulk-create",
        BulkMode::Update => "bulk-update",
        BulkMode::UpdateIfMatchETag => "bulk-update (if etag matches)",
        BulkMode::Delete => "bulk-delete",
    }
}

fn success_for(mode: BulkMode) -> ItemOutcome {
    match mode {
        BulkMode::Create => ItemOutcome::Created,
        BulkMode::Update | BulkMode::UpdateIfMatchETag => ItemOutcome::Updated,
        BulkMode::Delete => ItemOutcome::Deleted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_hold_at_most_ten() {
        let items: Vec<u32> = (0..25).collect();
        let sizes: Vec<usize> = chunks(&items).map(<[u32]>::len).collect();
        assert_eq!(sizes, vec![10, 10, 5]);
        assert_eq!(chunks::<u32>(&[]).count(), 0);
        let ten: Vec<u32> = (0..10).collect();
        assert_eq!(chunks(&ten).count(), 1);
    }
}
