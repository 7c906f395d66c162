//! What reports read: one row per device a slot took (`device_runs`, schema v5), written by the
//! engine when a device leaves its slot, read per batch or per UTC day. Report data only: these
//! rows are not in the audit chain and say nothing a state change has not already audited.

use rusqlite::{Connection, params};

use super::Ledger;
use super::error::LedgerError;
use super::types::BatchId;
use super::writer::LedgerWriter;

/// How one device left its slot, as the engine saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDeviceRun {
    /// The batch it was taken for.
    pub batch: BatchId,
    /// The slot (fixture position) that held it.
    pub slot: String,
    /// Its serial, once read.
    pub serial_number: Option<String>,
    /// Its registration ID, once derived.
    pub registration_id: Option<String>,
    /// `None` = passed; else the failing stage (`write`, `verify`...) and why.
    pub failure: Option<(String, String)>,
    /// Time spent on it, milliseconds.
    pub elapsed_ms: u64,
}

/// A device run as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRunRecord {
    /// The batch's name.
    pub batch: String,
    /// The slot.
    pub slot: String,
    /// Its serial, if read.
    pub serial_number: Option<String>,
    /// Its registration ID, if derived.
    pub registration_id: Option<String>,
    /// The failing stage, `None` when it passed.
    pub failed_stage: Option<String>,
    /// Why it failed.
    pub failed_reason: Option<String>,
    /// Time spent on it, milliseconds.
    pub elapsed_ms: u64,
    /// When it left the slot (UTC, `2026-12-03T08:45:12.345Z`).
    pub finished_at: String,
}

/// Which device runs a report covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunScope {
    /// Every run of a batch, by name.
    Batch(String),
    /// One UTC day, `2026-12-03`, every batch.
    Day(String),
}

impl LedgerWriter<'_> {
    /// Records how a device left its slot (the engine, once per device taken).
    pub fn record_device_run(&self, run: &NewDeviceRun) -> Result<(), LedgerError> {
        let (stage, reason) = match &run.failure {
            Some((s, r)) => (Some(s.as_str()), Some(r.as_str())),
            None => (None, None),
        };
        self.tx
            .prepare_cached(
                "INSERT INTO device_runs (batch_id, slot, serial_number, registration_id,
                   failed_stage, failed_reason, elapsed_ms, finished_at, station_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    run.batch.0,
                    run.slot,
                    run.serial_number,
                    run.registration_id,
                    stage,
                    reason,
                    i64::try_from(run.elapsed_ms).unwrap_or(i64::MAX),
                    self.now,
                    self.ctx.station_id,
                ])
            })
            .map_err(|e| super::error::classify(self.path, "recording a device run", e))?;
        Ok(())
    }
}

const RUN_SELECT: &str = "SELECT b.name, r.slot, r.serial_number, r.registration_id,
       r.failed_stage, r.failed_reason, r.elapsed_ms, r.finished_at
FROM device_runs r JOIN batches b ON b.id = r.batch_id";

fn device_runs(conn: &Connection, scope: &RunScope) -> rusqlite::Result<Vec<DeviceRunRecord>> {
    let map = |r: &rusqlite::Row<'_>| {
        Ok(DeviceRunRecord {
            batch: r.get(0)?,
            slot: r.get(1)?,
            serial_number: r.get(2)?,
            registration_id: r.get(3)?,
            failed_stage: r.get(4)?,
            failed_reason: r.get(5)?,
            elapsed_ms: u64::try_from(r.get::<_, i64>(6)?).unwrap_or(0),
            finished_at: r.get(7)?,
        })
    };
    match scope {
        RunScope::Batch(name) => {
            let mut stmt = conn.prepare(&format!(
                "{RUN_SELECT} WHERE r.batch_id = (SELECT id FROM batches WHERE name = ?1)
                 ORDER BY r.finished_at, r.id"
            ))?;
            stmt.query_map([name], map)?.collect()
        }
        RunScope::Day(day) => {
            // Every time of that day starts `day` + `T`; `T` < `U`: a range the index answers.
            let mut stmt = conn.prepare(&format!(
                "{RUN_SELECT} WHERE r.finished_at >= ?1 || 'T' AND r.finished_at < ?1 || 'U'
                 ORDER BY r.finished_at, r.id"
            ))?;
            stmt.query_map([day], map)?.collect()
        }
    }
}

fn run_days(conn: &Connection, limit: usize) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare(
        "SELECT DISTINCT substr(finished_at, 1, 10) FROM device_runs ORDER BY 1 DESC LIMIT ?1",
    )?;
    stmt.query_map([i64::try_from(limit).unwrap_or(i64::MAX)], |r| r.get(0))?
        .collect()
}

/// How many enrollments of a DPS target are in a state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueCount {
    /// The DPS target.
    pub dps_target: String,
    /// `pending`, `enrolled` or `failed`.
    pub state: String,
    /// Enrollments.
    pub count: u64,
}

/// One DPS answer to an enrollment, as the audit log recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollmentAnswer {
    /// When (UTC, as the ledger writes times).
    pub at: String,
    /// `enrollment.enrolled`, `enrollment.retry_later` or `enrollment.failed`.
    pub action: String,
    /// The error recorded with it, if any.
    pub error: Option<String>,
}

/// The audit actions that record a DPS answer to an enrollment.
pub const ENROLLMENT_ANSWER_ACTIONS: [&str; 3] = [
    "enrollment.enrolled",
    "enrollment.retry_later",
    "enrollment.failed",
];

fn enrollment_queue(conn: &Connection) -> rusqlite::Result<Vec<QueueCount>> {
    let mut stmt = conn.prepare(
        "SELECT dps_target, state, count(*) FROM enrollments GROUP BY dps_target, state
         ORDER BY dps_target, state",
    )?;
    stmt.query_map([], |r| {
        Ok(QueueCount {
            dps_target: r.get(0)?,
            state: r.get(1)?,
            count: u64::try_from(r.get::<_, i64>(2)?).unwrap_or(0),
        })
    })?
    .collect()
}

fn enrollment_answers(conn: &Connection, since: &str) -> rusqlite::Result<Vec<EnrollmentAnswer>> {
    // One range per action: each is answered from the (action, at) index.
    let mut stmt = conn.prepare(
        "SELECT at, action, json_extract(details, '$.error') FROM audit_log
         WHERE action = ?1 AND at >= ?2 ORDER BY at",
    )?;
    let mut out = Vec::new();
    for action in ENROLLMENT_ANSWER_ACTIONS {
        let rows = stmt.query_map(params![action, since], |r| {
            Ok(EnrollmentAnswer {
                at: r.get(0)?,
                action: r.get(1)?,
                error: r.get(2)?,
            })
        })?;
        for row in rows {
            out.push(row?);
        }
    }
    out.sort_by(|a, b| a.at.cmp(&b.at));
    Ok(out)
}

impl Ledger {
    /// Enrollments by DPS target and state.
    pub fn enrollment_queue(&self) -> Result<Vec<QueueCount>, LedgerError> {
        self.read("counting enrollments by state", enrollment_queue)
    }

    /// DPS answers to enrollments recorded at or after `since` (a ledger time), oldest first.
    pub fn enrollment_answers(&self, since: &str) -> Result<Vec<EnrollmentAnswer>, LedgerError> {
        self.read("reading DPS answers to enrollments", |c| {
            enrollment_answers(c, since)
        })
    }

    /// The device runs of a batch or a day, oldest first.
    pub fn device_runs(&self, scope: &RunScope) -> Result<Vec<DeviceRunRecord>, LedgerError> {
        self.read("reading device runs for a report", |c| {
            device_runs(c, scope)
        })
    }

    /// The UTC days that have device runs, newest first, at most `limit`.
    pub fn run_days(&self, limit: usize) -> Result<Vec<String>, LedgerError> {
        self.read("listing the days with device runs", |c| run_days(c, limit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{AttestationKind, EnrollmentKind, NewBatch, WriterIdentity};

    fn batch(l: &mut Ledger, name: &str) -> BatchId {
        l.create_batch(&NewBatch {
            name: name.into(),
            product: "p".into(),
            attestation: AttestationKind::X509,
            enrollment_kind: EnrollmentKind::Individual,
            dps_target: "dps".into(),
            registration_id_template: "p-{serial}".into(),
        })
        .unwrap()
    }

    fn run(batch: BatchId, slot: &str, failure: Option<(&str, &str)>) -> NewDeviceRun {
        NewDeviceRun {
            batch,
            slot: slot.into(),
            serial_number: Some("SN".into()),
            registration_id: None,
            failure: failure.map(|(s, r)| (s.into(), r.into())),
            elapsed_ms: 812,
        }
    }

    #[test]
    fn runs_are_read_back_per_batch_and_per_day() {
        let dir = tempfile::tempdir().unwrap();
        let writer = WriterIdentity {
            station: "line-1".into(),
            operator: "ann".into(),
        };
        let mut l = Ledger::open(&dir.path().join("l.db"), &writer).unwrap();
        let (a, b) = (batch(&mut l, "a"), batch(&mut l, "b"));
        l.transaction(|w| {
            w.record_device_run(&run(a, "S1", None))?;
            w.record_device_run(&run(a, "S2", Some(("write", "cable"))))?;
            w.record_device_run(&run(b, "S1", None))
        })
        .unwrap();
        let of_a = l.device_runs(&RunScope::Batch("a".into())).unwrap();
        assert_eq!(of_a.len(), 2);
        assert_eq!(of_a[1].failed_stage.as_deref(), Some("write"));
        assert_eq!(of_a[1].failed_reason.as_deref(), Some("cable"));
        assert_eq!(of_a[0].elapsed_ms, 812);
        assert!(
            l.device_runs(&RunScope::Batch("none".into()))
                .unwrap()
                .is_empty()
        );

        let days = l.run_days(10).unwrap();
        assert_eq!(days.len(), 1);
        assert_eq!(days[0], of_a[0].finished_at[..10]);
        let day = l.device_runs(&RunScope::Day(days[0].clone())).unwrap();
        assert_eq!(day.len(), 3, "a day holds every batch");
        assert!(
            l.device_runs(&RunScope::Day("1999-01-01".into()))
                .unwrap()
                .is_empty()
        );
    }
}
