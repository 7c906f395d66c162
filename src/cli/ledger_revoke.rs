//! `dps-station ledger revoke REG_ID --reason …`: the ledger screen's revoke from a shell, over the
//! same library function (DPS individual enrollment deleted, identity revoked, audited).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use dps_station::ledger::WriterIdentity;
use dps_station::station::config::StationConfig;
use dps_station::station::identity_actions::{DpsCleanup, revoke_identity};

/// Revokes `registration_id` with the station of `config` (its DPS targets); `ledger` overrides
/// the station's ledger file.
pub fn revoke(
    config: &Path,
    ledger: Option<PathBuf>,
    registration_id: &str,
    reason: &str,
    operator: Option<String>,
) -> anyhow::Result<ExitCode> {
    let mut station = StationConfig::load(config)
        .with_context(|| format!("reading the station file {}", config.display()))?;
    if let Some(ledger) = ledger {
        station.ledger = ledger;
    }
    let writer = WriterIdentity {
        station: station.name.clone(),
        operator: operator
            .or_else(|| std::env::var("USER").ok())
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| "unknown".into()),
    };
    let outcome = revoke_identity(&station, &writer, registration_id, reason)?;
    if outcome.revoked_now {
        println!("{} revoked", outcome.registration_id);
    } else {
        println!(
            "{} was already revoked; retried its deferred DPS deletes",
            outcome.registration_id
        );
    }
    let mut deferred = false;
    for d in &outcome.dps {
        match d {
            DpsCleanup::Deleted { target } => println!("  DPS {target}: enrollment deleted"),
            DpsCleanup::Deferred { target, error } => {
                deferred = true;
                println!(
                    "  DPS {target}: NOT deleted ({error}); marked for later: run this command again when DPS is reachable"
                );
            }
        }
    }
    Ok(if deferred {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    })
}
