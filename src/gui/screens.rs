//! The desk's screens in navigation order. Each screen says which role may open it; the shell
//! shows only those. A new screen is one line here.

use crate::station::operator::StationHandle;

use super::line::LineScreen;
use super::officer::audit::AuditScreen;
use super::screen::Screen;
use super::station_screen::StationScreen;

/// Every screen of the desk, for a line laid out in `columns`.
pub fn all(station: &StationHandle, columns: usize) -> Vec<Box<dyn Screen>> {
    vec![
        Box::new(LineScreen::new(columns)),
        Box::new(StationScreen::new(station.config())),
        // The engineer's.
        Box::new(super::engineer::ledger::LedgerScreen::new()),
        Box::new(super::engineer::batch_editor::BatchEditorScreen::default()),
        Box::new(super::engineer::reports::ReportsScreen::new()),
        Box::new(super::engineer::enrollment::EnrollmentScreen::new()),
        Box::new(super::engineer::manifests::ManifestsScreen::new()),
        Box::new(super::engineer::export::ExportScreen::default()),
        Box::new(super::engineer::central::CentralScreen::new()),
        // The officer's (the audit log is the engineer's too).
        Box::new(super::officer::session::SessionScreen::new(station)),
        Box::new(AuditScreen::new(station)),
    ]
}
