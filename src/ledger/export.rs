//! CSV export of every identity: what a production engineer hands to a customer or a spreadsheet.
//! Public material only (thumbprints, fingerprints, states), never the certificate itself.

use std::io::Write;
use std::path::Path;

use rusqlite::Connection;
use rusqlite::types::ValueRef;

use super::error::{LedgerError, classify};

/// The header row; one column per field, in this order.
pub const CSV_HEADER: &[&str] = &[
    "registration_id",
    "state",
    "failed_stage",
    "failed_reason",
    "attestation",
    "batch",
    "device_model",
    "device_serial_number",
    "hardware_id",
    "subject",
    "issuer",
    "cert_serial",
    "not_before",
    "not_after",
    "sha1_thumbprint",
    "sha256_thumbprint",
    "key_fingerprint",
    "created_at",
    "updated_at",
];

const EXPORT_SELECT: &str =
    "SELECT i.registration_id, i.state, i.failed_stage, i.failed_reason, i.attestation,
        b.name, d.model, d.serial_number, d.hardware_id, i.subject, i.issuer,
        i.cert_serial, i.not_before, i.not_after, i.sha1_thumbprint,
        i.sha256_thumbprint, i.key_fingerprint, i.created_at, i.updated_at
 FROM identities i
 LEFT JOIN batches b ON b.id = i.batch_id
 LEFT JOIN devices d ON d.id = i.device_id";

/// The identities the ledger browser's `query` shows, in its order, as the same CSV as
/// [`identities_csv`] (the browser's "export the selection"); read page by page, so a million
/// rows never sit in memory. Returns the number of data rows.
pub(crate) fn browse_csv(
    conn: &Connection,
    path: &Path,
    query: &super::browse::BrowseQuery,
    out: impl Write,
) -> Result<u64, LedgerError> {
    let csv_err = |e: csv::Error| LedgerError::Export {
        detail: e.to_string(),
    };
    let sql = |e| classify(path, "exporting identities", e);
    let mut w = csv::Writer::from_writer(out);
    w.write_record(CSV_HEADER).map_err(csv_err)?;
    let mut stmt = conn
        .prepare(&format!("{EXPORT_SELECT} WHERE i.id = ?1"))
        .map_err(sql)?;
    let mut after = None;
    let mut count = 0u64;
    loop {
        let page = super::browse::page(conn, query, after.as_ref(), 0, 1000).map_err(sql)?;
        for row in &page {
            let mut rows = stmt.query([row.id.0]).map_err(sql)?;
            while let Some(r) = rows.next().map_err(sql)? {
                write_fields(&mut w, r, path)?;
                count += 1;
            }
        }
        match page.last() {
            Some(last) if page.len() == 1000 => after = Some(last.key()),
            _ => break,
        }
    }
    w.flush().map_err(|e| LedgerError::Export {
        detail: e.to_string(),
    })?;
    Ok(count)
}

fn write_fields<W: Write>(
    w: &mut csv::Writer<W>,
    r: &rusqlite::Row<'_>,
    path: &Path,
) -> Result<(), LedgerError> {
    let csv_err = |e: csv::Error| LedgerError::Export {
        detail: e.to_string(),
    };
    for i in 0..CSV_HEADER.len() {
        let value = r
            .get_ref(i)
            .map_err(|e| classify(path, "exporting identities", e))?;
        match value {
            ValueRef::Null => w.write_field(b"").map_err(csv_err)?,
            ValueRef::Text(t) | ValueRef::Blob(t) => w.write_field(t).map_err(csv_err)?,
            ValueRef::Integer(n) => w.write_field(n.to_string()).map_err(csv_err)?,
            ValueRef::Real(x) => w.write_field(x.to_string()).map_err(csv_err)?,
        }
    }
    w.write_record(None::<&[u8]>).map_err(csv_err)
}

/// Streams the identities (id order) as CSV into `out`; returns the number of data rows.
pub(crate) fn identities_csv(
    conn: &Connection,
    path: &Path,
    out: impl Write,
) -> Result<u64, LedgerError> {
    let csv_err = |e: csv::Error| LedgerError::Export {
        detail: e.to_string(),
    };
    let mut w = csv::Writer::from_writer(out);
    w.write_record(CSV_HEADER).map_err(csv_err)?;
    let mut stmt = conn
        .prepare(&format!("{EXPORT_SELECT} ORDER BY i.id"))
        .map_err(|e| classify(path, "exporting identities", e))?;
    let mut rows = stmt
        .query([])
        .map_err(|e| classify(path, "exporting identities", e))?;
    let mut count = 0u64;
    // Fields go from SQLite's buffers straight into the CSV writer: no String per field, which
    // is most of the cost at a million rows.
    while let Some(r) = rows
        .next()
        .map_err(|e| classify(path, "exporting identities", e))?
    {
        for i in 0..CSV_HEADER.len() {
            let value = r
                .get_ref(i)
                .map_err(|e| classify(path, "exporting identities", e))?;
            match value {
                ValueRef::Null => w.write_field(b"").map_err(csv_err)?,
                ValueRef::Text(t) | ValueRef::Blob(t) => w.write_field(t).map_err(csv_err)?,
                ValueRef::Integer(n) => w.write_field(n.to_string()).map_err(csv_err)?,
                ValueRef::Real(x) => w.write_field(x.to_string()).map_err(csv_err)?,
            }
        }
        w.write_record(None::<&[u8]>).map_err(csv_err)?;
        count += 1;
    }
    w.flush().map_err(|e| LedgerError::Export {
        detail: e.to_string(),
    })?;
    Ok(count)
}
