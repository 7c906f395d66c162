//! `dps-station central sync`: uploads a joined station's outbox now, between runs (a revoke from
//! the ledger screen, rows a run could not send before it ended), instead of at the next run. The
//! running engine has its own sync worker; while a run holds the ledger this refuses, naming it.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use dps_station::central::link::LinkError;
use dps_station::central::station_side::start::sync_worker;
use dps_station::central::station_side::sync::SyncError;
use dps_station::central::wire::MAX_INGEST_ROWS;
use dps_station::ledger::{Ledger, WriterIdentity};
use dps_station::station::config::StationConfig;
use dps_station::station::config::central::ClientKey;
use dps_station::station::keys::StationKeys;
use dps_station::station::ledger_thread::LedgerThread;

/// Flags of `central sync`.
#[derive(Debug, Args)]
pub struct SyncArgs {
    /// The station file [default: the installed station.toml].
    #[arg(long, value_name = "PATH")]
    station: Option<PathBuf>,
}

/// Uploads until the outbox is empty. Exit 0 when it is, 3 when the service cannot be reached
/// (the rows stay in the outbox), 1 when the service refused (the refusal is in the chain).
pub fn run(args: SyncArgs) -> anyhow::Result<ExitCode> {
    let path = args
        .station
        .unwrap_or_else(super::central_station::default_station_path);
    let config = StationConfig::load(&path)
        .with_context(|| format!("reading the station file {}", path.display()))?;
    let Some(central) = &config.central else {
        anyhow::bail!(
            "station {} is not joined to a central service: join it with `dps-station central join URL --token TOKEN`",
            config.name
        );
    };
    // The writer lock first (so no PIN is presented for nothing): refused, naming the holder,
    // while a run (which syncs by itself) has the ledger.
    let ledger = Ledger::open(
        &config.ledger,
        &WriterIdentity {
            station: config.name.clone(),
            operator: "central-sync".into(),
        },
    )?;
    let keys = match &central.client_key {
        ClientKey::Token { .. } => Some(StationKeys::open(&config.keystore)?),
        ClientKey::File(_) => None,
    };
    let (thread, handle) = LedgerThread::start(ledger).context("starting the ledger thread")?;
    // Counted after opening: the writer's `ledger.opened` row goes up too.
    let depth = handle
        .call(|l| l.outbox_status().map(|s| s.depth))
        .context("reading the outbox")?;
    let worker = sync_worker(central, keys.as_ref(), handle)?;
    // Each round sends up to MAX_INGEST_ROWS rows; receipts add a row per round, acknowledged by
    // the next, so a few rounds more than the depth needs.
    let rounds = usize::try_from(depth).unwrap_or(usize::MAX) / MAX_INGEST_ROWS + 4;
    println!(
        "station {}: {depth} row(s) to upload to {}",
        config.name, central.url
    );
    let outcome = worker.drain(rounds, &|_| {});
    drop(worker);
    let _ = thread.join();
    match outcome {
        Ok(drained) => {
            for q in &drained.quarantined {
                println!(
                    "▲ quarantined: {} ({} {}), held by station {}: {}",
                    q.registration_id, q.device_model, q.device_serial, q.held_by, q.reason
                );
            }
            if let Some(seq) = drained.resent_from {
                println!("the service held less than acknowledged: re-sent from row {seq}");
            }
            match drained.head_seq {
                Some(head) => println!(
                    "uploaded {} row(s); the service holds this station's chain up to row {head}",
                    drained.rows
                ),
                None => println!("nothing to upload"),
            }
            if drained.empty {
                Ok(ExitCode::SUCCESS)
            } else {
                println!("rows are left in the outbox: run `dps-station central sync` again");
                Ok(ExitCode::from(3))
            }
        }
        Err(SyncError::Link(e @ LinkError::Unreachable { .. })) => {
            println!("{e}");
            println!("the rows stay in the outbox; the next run or `central sync` sends them");
            Ok(ExitCode::from(3))
        }
        Err(e) => Err(e).context("central sync stopped"),
    }
}
