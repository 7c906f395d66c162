//! `dps-station central join` and `central status`: the station's side of the central ledger
//! (issue 18). The service's own commands (`central serve`, `token create`, ...) live beside these
//! in the `central` tree.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use dps_station::central::link::CentralLink;
use dps_station::central::station_side::join::{
    JoinToken, KeyLocation, join, write_central_section,
};
use dps_station::central::station_side::start::open_link;
use dps_station::identity::signer::CaSigner;
use dps_station::keystore::software::SoftwareCaKey;
use dps_station::ledger::Ledger;
use dps_station::station::config::central::{ClientKey, EnrollmentSite};
use dps_station::station::config::{KeyRef, KeyStoreConfig, StationConfig};
use dps_station::station::keys::StationKeys;

pub(crate) use super::line::default_station_path;

/// Who enrolls in DPS after joining.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Enrollment {
    /// The station, with its own DPS connection string.
    Station,
    /// The central service (it holds the connection string).
    Central,
}

/// `central join`.
#[derive(Debug, Args)]
pub struct JoinArgs {
    /// The service's base URL, `https://HOST:PORT`.
    url: String,
    /// The one-time token (`dpsc1.ID.SECRET.CA-SHA256`).
    #[arg(long, env = "DPS_STATION_CENTRAL_TOKEN", hide_env_values = true)]
    token: String,
    /// The station file to join and update.
    #[arg(long, value_name = "PATH", default_value_os_t = default_station_path())]
    station: PathBuf,
    /// The station's id at the service [default: the station's name].
    #[arg(long)]
    station_id: Option<String>,
    /// Who enrolls this station's identities in DPS.
    #[arg(long, value_enum, default_value_t = Enrollment::Station)]
    enrollment: Enrollment,
}

/// The station's view of `central status` (the `central` tree's `Status` without `--database`).
#[derive(Debug)]
pub struct StatusArgs {
    /// The station file.
    pub station: PathBuf,
}

pub fn run_join(args: JoinArgs) -> anyhow::Result<ExitCode> {
    let config = StationConfig::load(&args.station)?;
    let token = JoinToken::parse(&args.token)?;
    let station_id = args.station_id.unwrap_or_else(|| config.name.clone());
    let dir = args
        .station
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."))
        .join("central");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let (key, location): (Arc<dyn CaSigner>, KeyLocation) = match &config.keystore {
        KeyStoreConfig::Pkcs11 { .. } => {
            let keys = StationKeys::open(&config.keystore)?;
            let StationKeys::Hsm(store) = &keys else {
                bail!("the station's key store is not a token");
            };
            let label = format!("central-{station_id}");
            let id: [u8; 8] = rand_id();
            let uri = store
                .generate_ec_p256(&label, &id)
                .with_context(|| format!("making the central key {label} in the token"))?;
            let signer = keys.signer(&KeyRef::Pkcs11(uri.clone()))?;
            (signer, KeyLocation::Token(uri.to_string()))
        }
        KeyStoreConfig::Software { .. } => {
            let path = dir.join("client-key.pem");
            let key = if path.exists() {
                SoftwareCaKey::load(&path)?
            } else {
                SoftwareCaKey::generate(&path)?
            };
            eprintln!(
                "note: this station has no HSM; its central key is the owner-only file {}",
                path.display()
            );
            (Arc::new(key), KeyLocation::File(path))
        }
    };
    let joined = join(&args.url, &token, &station_id, key, location, &dir)?;
    let site = match args.enrollment {
        Enrollment::Station => EnrollmentSite::Station,
        Enrollment::Central => EnrollmentSite::Central,
    };
    write_central_section(&args.station, &joined, site)?;
    println!(
        "station {} joined {}; [central] written to {}",
        joined.station_id,
        joined.url,
        args.station.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn rand_id() -> [u8; 8] {
    use rand::Rng as _;
    let mut id = [0u8; 8];
    rand::rng().fill_bytes(&mut id);
    id
}

pub fn run_status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let config = StationConfig::load(&args.station)?;
    let ledger = Ledger::open_read_only(&config.ledger)?;
    let status = ledger.outbox_status()?;
    println!("station {}", config.name);
    println!(
        "outbox: {} row(s) not yet acknowledged, last row {}",
        status.depth, status.last_seq
    );
    match &status.last_receipt {
        Some(r) => println!(
            "last receipt: rows {}..{}, service holds up to row {} (central position {}), received {}",
            r.first_seq, r.last_seq, r.head_seq, r.central_position, r.received_at
        ),
        None => println!("last receipt: none yet"),
    }
    let Some(central) = &config.central else {
        println!("not joined to a central service (`dps-station central join URL --token ...`)");
        return Ok(ExitCode::SUCCESS);
    };
    let keys = match &central.client_key {
        ClientKey::Token { .. } => Some(StationKeys::open(&config.keystore)?),
        ClientKey::File(_) => None,
    };
    let link = open_link(central, keys.as_ref())?;
    match link.status() {
        Ok(report) => {
            println!("central service {} at {}", central.url, report.service_time);
            println!(
                "{:<20} {:>10} {:>10} {:>10} {:<8} last seen",
                "station", "head row", "lease left", "conflicts", "revoked"
            );
            for s in &report.stations {
                println!(
                    "{:<20} {:>10} {:>10} {:>10} {:<8} {}",
                    s.station_id,
                    s.head_seq,
                    s.lease_left,
                    s.conflicts,
                    if s.revoked { "yes" } else { "no" },
                    s.last_seen.as_deref().unwrap_or("-")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("central service {}: {e}", central.url);
            Ok(ExitCode::from(3))
        }
    }
}
