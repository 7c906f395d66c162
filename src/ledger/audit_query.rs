//! Reading the audit log as an officer or an auditor does: filtered pages, newest first, and a
//! CSV export of a time range with both chain hashes, so the chain can be re-checked elsewhere.
//!
//! Pages are keyset pages (`id < before ORDER BY id DESC LIMIT n`): one page costs the rows it
//! reads, never the whole log in memory, however long the log is.
//!
//! # The audit CSV
//!
//! A header row, then one row per audit row in id order (oldest first), with these columns:
//!
//! | column      | what                                                                  |
//! |-------------|-----------------------------------------------------------------------|
//! | `id`        | the row's id; ids are contiguous from 1                               |
//! | `at`        | when, RFC 3339 UTC with milliseconds, as stored                       |
//! | `station`   | the station that wrote the row                                        |
//! | `actor`     | who (operator, officer)                                               |
//! | `action`    | what, e.g. `identity.issued`, `key_session.opened`                    |
//! | `subject`   | about what: a registration ID, `batch:NAME`, `token:LABEL`, `ca:NAME` |
//! | `details`   | JSON text exactly as hashed                                           |
//! | `prev_hash` | hex SHA-256 of the row before (64 zeros for row 1)                    |
//! | `hash`      | hex `SHA-256(prev ‖ canonical(row))`, see [`super::audit`]            |
//!
//! An auditor re-checks a range by recomputing each `hash` from `prev_hash` and the seven fields
//! in the canonical form of [`super::audit`], and checking that each row's `prev_hash` is the
//! `hash` of the row before it.

use std::io::Write;
use std::path::Path;

use rusqlite::Connection;
use rusqlite::types::{Value, ValueRef};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::audit::record_from_row;
use super::error::{LedgerError, classify};
use super::types::{AuditId, AuditRecord, KeySessionId};

/// The header of the audit CSV (see the module docs for each column).
pub const AUDIT_CSV_HEADER: &[&str] = &[
    "id",
    "at",
    "station",
    "actor",
    "action",
    "subject",
    "details",
    "prev_hash",
    "hash",
];

/// Which audit rows to show. Every field that is set must match; text is taken literally
/// (no wildcards), compared without regard to ASCII case.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Rows of one HSM key-injection session (its details carry `"key_session": id`).
    pub key_session: Option<KeySessionId>,
    /// Rows by this officer or operator (the whole name).
    pub actor: Option<String>,
    /// Rows whose action starts with this (`key_session.`, `identity.revoked`).
    pub action: Option<String>,
    /// Rows whose subject starts with this: a registration ID, `token:`, `ca:`, `batch:`.
    pub subject: Option<String>,
    /// Rows written in this time range.
    pub range: TimeRange,
}

/// A half-open time range `[from, to)` in the ledger's timestamp form; `None` is unbounded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TimeRange {
    /// The first instant included.
    pub from: Option<String>,
    /// The first instant no longer included.
    pub to: Option<String>,
}

/// A time the user typed that is none of the forms [`parse_time_bound`] takes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{text:?} is not a time: write a date (2026-12-03), a UTC time (2026-12-03 14:05) or RFC 3339 (2026-12-03T14:05:00+09:00)"
)]
pub struct BadTime {
    /// What was typed.
    pub text: String,
}

/// Which end of a range a typed time is: a bare date means the start of that day as `from` and
/// the end of that day as `to`, so `--from 2026-12-01 --to 2026-12-01` is the whole day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// The range's start (included).
    From,
    /// The range's end (excluded, except that a bare date includes its whole day).
    To,
}

/// Turns a typed time into the ledger's form (`2026-12-03T14:05:00.000Z`, UTC), so that it
/// compares as text with stored timestamps. Takes a date, `YYYY-MM-DD HH:MM[:SS]` (UTC) or
/// RFC 3339 with any offset.
pub fn parse_time_bound(text: &str, bound: Bound) -> Result<String, BadTime> {
    let t = text.trim();
    let bad = || BadTime {
        text: text.to_string(),
    };
    let date_format = time::macros::format_description!("[year]-[month]-[day]");
    let instant = if let Ok(date) = time::Date::parse(t, &date_format) {
        let day = match bound {
            Bound::From => date,
            Bound::To => date.next_day().ok_or_else(bad)?,
        };
        day.midnight().assume_utc()
    } else if let Ok(at) = OffsetDateTime::parse(t, &Rfc3339) {
        at
    } else {
        let minutes = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]");
        let seconds =
            time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
        let spaced = t.replacen('T', " ", 1);
        time::PrimitiveDateTime::parse(&spaced, &seconds)
            .or_else(|_| time::PrimitiveDateTime::parse(&spaced, &minutes))
            .map_err(|_| bad())?
            .assume_utc()
    };
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    instant
        .to_offset(time::UtcOffset::UTC)
        .format(&format)
        .map_err(|_| bad())
}

/// One page of audit rows, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditPage {
    /// The rows, newest first.
    pub rows: Vec<AuditRecord>,
    /// Pass this as `before` for the next (older) page; `None` when this was the last.
    pub older: Option<AuditId>,
}

/// `col` starts with the bound parameter `?n`, literally, ignoring ASCII case.
fn starts_with(col: &str, n: usize) -> String {
    format!("lower(substr({col}, 1, length(?{n}))) = lower(?{n})")
}

/// The `WHERE` conditions and their parameters for `filter`.
fn conditions(filter: &AuditFilter) -> (Vec<String>, Vec<Value>) {
    let mut conds = Vec::new();
    let mut params: Vec<Value> = Vec::new();
    let mut push = |conds: &mut Vec<String>, make: &dyn Fn(usize) -> String, v: Value| {
        params.push(v);
        conds.push(make(params.len()));
    };
    if let Some(session) = filter.key_session {
        // A row whose details are not JSON (someone edited it) is skipped, not an error: CASE
        // evaluates json_extract only on valid JSON.
        push(
            &mut conds,
            &|n| {
                format!(
                    "(CASE WHEN json_valid(details) THEN json_extract(details, '$.key_session') END) = ?{n}"
                )
            },
            Value::Integer(session.0),
        );
    }
    if let Some(actor) = non_blank(&filter.actor) {
        push(
            &mut conds,
            &|n| format!("actor = ?{n} COLLATE NOCASE"),
            Value::Text(actor),
        );
    }
    if let Some(action) = non_blank(&filter.action) {
        push(
            &mut conds,
            &|n| starts_with("action", n),
            Value::Text(action),
        );
    }
    if let Some(subject) = non_blank(&filter.subject) {
        push(
            &mut conds,
            &|n| starts_with("subject", n),
            Value::Text(subject),
        );
    }
    if let Some(from) = &filter.range.from {
        push(
            &mut conds,
            &|n| format!("at >= ?{n}"),
            Value::Text(from.clone()),
        );
    }
    if let Some(to) = &filter.range.to {
        push(
            &mut conds,
            &|n| format!("at < ?{n}"),
            Value::Text(to.clone()),
        );
    }
    (conds, params)
}

fn non_blank(s: &Option<String>) -> Option<String> {
    s.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

const COLUMNS: &str = "id, at, station, actor, action, subject, details, prev_hash, hash";

/// The page of at most `limit` rows matching `filter` that are older than `before` (all rows
/// when `None`), newest first.
pub(crate) fn page(
    conn: &Connection,
    filter: &AuditFilter,
    before: Option<AuditId>,
    limit: u32,
) -> rusqlite::Result<AuditPage> {
    let (mut conds, mut params) = conditions(filter);
    if let Some(before) = before {
        params.push(Value::Integer(before.0));
        conds.push(format!("id < ?{}", params.len()));
    }
    let limit = limit.max(1);
    params.push(Value::Integer(i64::from(limit)));
    let sql = format!(
        "SELECT {COLUMNS} FROM audit_log {} ORDER BY id DESC LIMIT ?{}",
        where_clause(&conds),
        params.len()
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt
        .query_map(rusqlite::params_from_iter(params), record_from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let older = (rows.len() == limit as usize)
        .then(|| rows.last().map(|r| r.id))
        .flatten();
    Ok(AuditPage { rows, older })
}

fn where_clause(conds: &[String]) -> String {
    if conds.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conds.join(" AND "))
    }
}

/// Streams the rows written in `range` as CSV into `out`, oldest first; returns the row count.
/// `progress` is called now and then with the rows written so far.
pub(crate) fn export_csv(
    conn: &Connection,
    path: &Path,
    range: &TimeRange,
    out: impl Write,
    progress: &mut dyn FnMut(u64),
) -> Result<u64, LedgerError> {
    const WHAT: &str = "exporting the audit log";
    let csv_err = |e: csv::Error| LedgerError::Export {
        detail: e.to_string(),
    };
    let filter = AuditFilter {
        range: range.clone(),
        ..AuditFilter::default()
    };
    let (conds, params) = conditions(&filter);
    let sql = format!(
        "SELECT {COLUMNS} FROM audit_log {} ORDER BY id",
        where_clause(&conds)
    );
    let mut w = csv::Writer::from_writer(out);
    w.write_record(AUDIT_CSV_HEADER).map_err(csv_err)?;
    let mut stmt = conn.prepare(&sql).map_err(|e| classify(path, WHAT, e))?;
    let mut rows = stmt
        .query(rusqlite::params_from_iter(params))
        .map_err(|e| classify(path, WHAT, e))?;
    let mut count = 0u64;
    while let Some(r) = rows.next().map_err(|e| classify(path, WHAT, e))? {
        for i in 0..AUDIT_CSV_HEADER.len() {
            match r.get_ref(i).map_err(|e| classify(path, WHAT, e))? {
                ValueRef::Null => w.write_field(b"").map_err(csv_err)?,
                ValueRef::Text(t) | ValueRef::Blob(t) => w.write_field(t).map_err(csv_err)?,
                ValueRef::Integer(n) => w.write_field(n.to_string()).map_err(csv_err)?,
                ValueRef::Real(x) => w.write_field(x.to_string()).map_err(csv_err)?,
            }
        }
        w.write_record(None::<&[u8]>).map_err(csv_err)?;
        count += 1;
        if count.is_multiple_of(4096) {
            progress(count);
        }
    }
    w.flush().map_err(|e| LedgerError::Export {
        detail: e.to_string(),
    })?;
    progress(count);
    Ok(count)
}

/// [`export_csv`] into the file `out`: written beside it under a temporary name, synced, then
/// renamed, so an auditor never finds half a file under the real name.
pub(crate) fn export_csv_file(
    conn: &Connection,
    path: &Path,
    range: &TimeRange,
    out: &Path,
    progress: &mut dyn FnMut(u64),
) -> Result<u64, LedgerError> {
    let io_err = |what: &str, e: std::io::Error| LedgerError::Export {
        detail: format!(
            "{what} {}: {e}; choose a folder you may write to, with free space",
            out.display()
        ),
    };
    let mut partial = out.as_os_str().to_owned();
    partial.push(".partial");
    let partial = std::path::PathBuf::from(partial);
    let file = std::fs::File::create(&partial).map_err(|e| io_err("cannot create", e))?;
    let mut w = std::io::BufWriter::new(file);
    let written = export_csv(conn, path, range, &mut w, progress).and_then(|n| {
        w.into_inner()
            .map_err(|e| e.into_error())
            .and_then(|f| f.sync_all())
            .map_err(|e| io_err("cannot write", e))?;
        std::fs::rename(&partial, out).map_err(|e| io_err("cannot rename the export to", e))?;
        Ok(n)
    });
    if written.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_date_covers_its_whole_day() {
        assert_eq!(
            parse_time_bound("2026-12-01", Bound::From).unwrap(),
            "2026-12-01T00:00:00.000Z"
        );
        assert_eq!(
            parse_time_bound("2026-12-01", Bound::To).unwrap(),
            "2026-12-02T00:00:00.000Z"
        );
    }

    #[test]
    fn times_are_turned_into_utc() {
        assert_eq!(
            parse_time_bound("2026-12-03T14:05:00+09:00", Bound::From).unwrap(),
            "2026-12-03T05:05:00.000Z"
        );
        assert_eq!(
            parse_time_bound(" 2026-12-03 14:05 ", Bound::To).unwrap(),
            "2026-12-03T14:05:00.000Z"
        );
        assert_eq!(
            parse_time_bound("2026-12-03T14:05:07", Bound::To).unwrap(),
            "2026-12-03T14:05:07.000Z"
        );
    }

    #[test]
    fn anything_else_is_refused_with_the_forms_taken() {
        for bad in ["", "yesterday", "2026-13-01", "2026-12-03 25:00", "'; DROP"] {
            let e = parse_time_bound(bad, Bound::From).unwrap_err();
            assert!(e.to_string().contains("2026-12-03 14:05"), "{e}");
        }
    }
}
