//! What the engineer's Central panel shows of a station joined to a central ledger (issue 18
//! point 6), read on a worker thread: this station's outbox depth and last receipt, the leases it
//! holds, the conflicts the service reported (quarantined identities), and every station as the
//! service sees it when it can be reached. No screen here: `gui::engineer::central` draws it.

use crate::central::link::CentralLink;
use crate::central::station_side::start::open_link;
use crate::central::wire::StatusReport;
use crate::ledger::audit_query::AuditFilter;
use crate::ledger::leases::HeldLease;
use crate::ledger::outbox::CentralReceiptRecord;
use crate::ledger::{AuditRecord, Ledger};
use crate::station::config::StationConfig;
use crate::station::config::central::ClientKey;

/// The most conflicts listed (newest first); the audit screen has them all.
const CONFLICTS_SHOWN: u32 = 200;

/// Where the station's `[central]` points.
#[derive(Debug, Clone, PartialEq)]
pub struct Joined {
    pub url: String,
    pub station_id: String,
    /// `station` or `central`: who enrolls this station's identities in DPS.
    pub enrollment: &'static str,
}

/// The service's view, or why there is none.
#[derive(Debug, Clone, PartialEq)]
pub enum ServiceView {
    /// The station has not joined a central service.
    NotJoined,
    /// The station's client key is in its HSM token, which the desk does not log in to for a
    /// status read; `dps-station central status` shows it with the PIN.
    KeyInHsm,
    /// Every station as the service reports it.
    Report(StatusReport),
    /// The service could not be asked (the station keeps working; its outbox waits).
    Unreachable(String),
}

/// One read of the panel.
#[derive(Debug, Clone, PartialEq)]
pub struct CentralView {
    pub joined: Option<Joined>,
    /// Outbox rows not yet acknowledged by a receipt, and the last row written.
    pub outbox_depth: u64,
    pub last_seq: i64,
    pub last_receipt: Option<CentralReceiptRecord>,
    /// Leases not yet returned.
    pub leases: Vec<HeldLease>,
    /// `central.quarantined` rows, newest first.
    pub conflicts: Vec<AuditRecord>,
    pub service: ServiceView,
}

impl CentralView {
    /// Reads the ledger (read-only) and, when joined with a key in a file, asks the service.
    pub fn read(config: &StationConfig) -> Result<CentralView, String> {
        let joined = config.central.as_ref().map(|c| Joined {
            url: c.url.clone(),
            station_id: c.station_id.clone(),
            enrollment: c.enrollment.as_str(),
        });
        let (outbox_depth, last_seq, last_receipt, leases, conflicts) = if config.ledger.exists() {
            let ledger = Ledger::open_read_only(&config.ledger).map_err(|e| e.to_string())?;
            let status = ledger.outbox_status().map_err(|e| e.to_string())?;
            let leases = ledger
                .held_leases(None)
                .map_err(|e| e.to_string())?
                .into_iter()
                .filter(|l| l.returned_at.is_none())
                .collect();
            let filter = AuditFilter {
                action: Some("central.quarantined".into()),
                ..AuditFilter::default()
            };
            let conflicts = ledger
                .audit_page(&filter, None, CONFLICTS_SHOWN)
                .map_err(|e| e.to_string())?
                .rows;
            (
                status.depth,
                status.last_seq,
                status.last_receipt,
                leases,
                conflicts,
            )
        } else {
            // No batch has run: nothing written, nothing to upload.
            (0, 0, None, Vec::new(), Vec::new())
        };
        let service = match &config.central {
            None => ServiceView::NotJoined,
            Some(c) if matches!(c.client_key, ClientKey::Token { .. }) => ServiceView::KeyInHsm,
            Some(c) => match open_link(c, None) {
                Ok(link) => match link.status() {
                    Ok(report) => ServiceView::Report(report),
                    Err(e) => ServiceView::Unreachable(e.to_string()),
                },
                Err(e) => ServiceView::Unreachable(e.to_string()),
            },
        };
        Ok(CentralView {
            joined,
            outbox_depth,
            last_seq,
            last_receipt,
            leases,
            conflicts,
            service,
        })
    }
}

/// What a conflict row says, for the panel: serial, who holds it, the service's reason.
pub fn conflict_text(row: &AuditRecord) -> (String, String, String) {
    let details: serde_json::Value = serde_json::from_str(&row.details).unwrap_or_default();
    let field = |k: &str| {
        details
            .get(k)
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string()
    };
    (field("device_serial"), field("held_by"), field("reason"))
}
