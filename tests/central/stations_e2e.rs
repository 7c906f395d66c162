//! Three stations, one batch capped at 300 (issue 18 point 7): real `dps-station run --headless`
//! processes, each with its own SoftHSM2 token, DPS emulator, SQLite ledger and 105 simulated
//! devices on pseudo-terminals (315 devices for 300 identities), joined with `central join` to one
//! `central serve` on a throwaway PostgreSQL. Exactly 300 identities reach the central ledger,
//! none twice; the lease sum never passes the cap; every station holds a receipt for every row of
//! its chain when it stops; `central verify` replays all chains, the receipts and the stations' own
//! ledgers end to end.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dps_station::device::simulator::{Fleet, SimOptions};
use dps_station::ledger::Ledger;
use dps_station::station::config::{KeyStoreConfig, Mode};
use dps_station::station::demo::{DemoWorkspace, KeyStoreChoice, RunOptions, USER_PIN};

use crate::pg::PgCluster;
use crate::service::{BIN, CentralService};

const STATIONS: usize = 3;
const DEVICES_PER_STATION: usize = 105;
const CAP: usize = 300;
const BATCH: &str = "capped";

struct Station {
    id: String,
    ws: DemoWorkspace,
    dir: tempfile::TempDir,
    _fleet: Fleet,
}

impl Station {
    fn toml(&self) -> PathBuf {
        self.dir.path().join("station.toml")
    }

    fn ledger(&self) -> PathBuf {
        self.dir.path().join("ledger.db")
    }

    fn log(&self) -> String {
        format!(
            "--- {} stdout\n{}\n--- stderr\n{}",
            self.id,
            std::fs::read_to_string(self.dir.path().join("run.out")).unwrap_or_default(),
            std::fs::read_to_string(self.dir.path().join("run.err")).unwrap_or_default()
        )
    }
}

/// A station with its own token, emulator and devices, joined to the service.
fn joined_station(service: &CentralService, index: usize) -> Station {
    let id = format!("line-{}", index + 1);
    let ws = DemoWorkspace::create(KeyStoreChoice::SoftHsm).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let fleet = Fleet::start(DEVICES_PER_STATION, &SimOptions::default()).unwrap();
    let KeyStoreConfig::Pkcs11 { token_label, .. } = &ws.station.keystore else {
        panic!("SoftHSM2 expected")
    };
    let mut station = format!(
        "name = {id:?}\nledger = \"ledger.db\"\n[keystore]\nkind = \"pkcs11\"\nprofile = \"softhsm2\"\ntoken_label = {token_label:?}\nmodule = \"/usr/lib/softhsm/libsofthsm2.so\"\n[dps.emulator]\nconnection_string_env = \"DPS_STATION_TEST_CS\"\nendpoint = {:?}\nca_file = {:?}\n[fixture.slots]\n",
        ws.emulator.service_url(),
        ws.dir.join("emulator-ca.pem").display().to_string(),
    );
    for (i, path) in fleet.paths().iter().enumerate() {
        station += &format!("S{i} = {path:?}\n");
    }
    std::fs::write(dir.path().join("station.toml"), station).unwrap();
    let options = RunOptions {
        devices: DEVICES_PER_STATION as u64,
        ..RunOptions::default()
    };
    std::fs::write(
        dir.path().join("batch.toml"),
        ws.batch_toml(Mode::X509Csr, BATCH, &options),
    )
    .unwrap();
    let station = Station {
        id,
        ws,
        dir,
        _fleet: fleet,
    };
    // The station's client key is made in its SoftHSM2 token.
    let out = Command::new(BIN)
        .args(["central", "join", &service.url(), "--token"])
        .arg(service.token(&station.id))
        .arg("--station")
        .arg(station.toml())
        .env("DPS_STATION_HSM_PIN", USER_PIN)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{} did not join: {}{}\n{}",
        station.id,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        service.log()
    );
    station
}

fn spawn_run(station: &Station) -> Child {
    let out = std::fs::File::create(station.dir.path().join("run.out")).unwrap();
    let err = std::fs::File::create(station.dir.path().join("run.err")).unwrap();
    Command::new(BIN)
        .args(["run", "--headless", "--config"])
        .arg(station.toml())
        .arg("--batch")
        .arg(station.dir.path().join("batch.toml"))
        .env("DPS_STATION_HSM_PIN", USER_PIN)
        .env(
            "DPS_STATION_TEST_CS",
            station.ws.emulator.connection_string().expose(),
        )
        .env("DPS_STATION_STOP_TIMEOUT", "20")
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .spawn()
        .unwrap()
}

/// The station processes; killed if the test ends early (a failed assertion), so no station
/// outlives its test.
struct Runs(Vec<Child>);

impl Drop for Runs {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn count(pg: &PgCluster, sql: &str) -> usize {
    pg.psql("central", sql).parse().unwrap_or(0)
}

fn wait_exit(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

fn signal(child: &Child, name: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(child.id().to_string())
        .status();
}

#[test]
fn three_stations_share_a_batch_capped_at_300_and_every_chain_verifies() {
    let pg = PgCluster::start();
    let service = CentralService::start(&pg);
    let out = service.central(&["batch", "set", BATCH, "--cap", "300", "--lease-size", "40"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stations: Vec<Station> = (0..STATIONS).map(|i| joined_station(&service, i)).collect();
    let mut runs = Runs(stations.iter().map(spawn_run).collect());

    // Until the cap is spent: 300 live identities of the batch centrally (bounded wait).
    let started = Instant::now();
    let logs = |stations: &[Station]| {
        stations
            .iter()
            .map(Station::log)
            .collect::<Vec<_>>()
            .join("\n")
    };
    loop {
        let held = count(
            &pg,
            &format!("SELECT count(*) FROM identities WHERE batch = '{BATCH}'"),
        );
        assert!(held <= CAP, "{held} identities for a cap of {CAP}");
        let allocated = count(
            &pg,
            &format!("SELECT allocated FROM batches WHERE batch = '{BATCH}'"),
        );
        assert!(allocated <= CAP, "{allocated} allocated for a cap of {CAP}");
        if held == CAP {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "only {held} of {CAP} identities reached the central ledger in 300 s\n{}\n{}",
            logs(&stations),
            service.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }

    // The stations still running wait on a spent cap; they stop on SIGTERM (the batch pauses,
    // unused lease parts go back, the outbox is flushed).
    for run in &mut runs.0 {
        if run.try_wait().unwrap().is_none() {
            signal(run, "TERM");
        }
    }
    for (run, station) in runs.0.iter_mut().zip(&stations) {
        assert!(
            wait_exit(run, Duration::from_secs(90)).is_some(),
            "{} did not stop\n{}",
            station.id,
            station.log()
        );
    }

    // Exactly 300 identities centrally, no registration ID and no device twice, none quarantined.
    assert_eq!(
        pg.psql(
            "central",
            &format!(
                "SELECT count(*), count(DISTINCT registration_id), count(DISTINCT (device_model, device_serial)) FROM identities WHERE batch = '{BATCH}'"
            )
        ),
        format!("{CAP}|{CAP}|{CAP}")
    );
    assert_eq!(count(&pg, "SELECT count(*) FROM quarantine"), 0);
    // The stations' ledgers together hold the same 300, each issued from a lease.
    let mut local = 0;
    for station in &stations {
        let ledger = Ledger::open_read_only(&station.ledger()).unwrap();
        let mine = ledger
            .list_identities(&dps_station::ledger::IdentityFilter {
                batch: Some(BATCH.into()),
                ..Default::default()
            })
            .unwrap();
        local += mine.len();
        // A receipt for every row: the outbox is empty and the service holds the whole chain.
        let outbox = ledger.outbox_status().unwrap();
        assert_eq!(
            outbox.depth,
            0,
            "{} stopped with rows not acknowledged\n{}",
            station.id,
            station.log()
        );
        let held = count(
            &pg,
            &format!(
                "SELECT max(seq) FROM ingested_rows WHERE station_id = '{}'",
                station.id
            ),
        );
        assert_eq!(held as i64, outbox.last_seq, "{}", station.id);
        let covered = count(
            &pg,
            &format!(
                "SELECT max(last_seq) FROM receipts WHERE station_id = '{}'",
                station.id
            ),
        );
        assert_eq!(covered as i64, outbox.last_seq, "{}", station.id);
    }
    assert_eq!(
        local, CAP,
        "the stations' own ledgers hold the cap, no more"
    );
    assert!(
        count(
            &pg,
            "SELECT coalesce(sum(count), 0) FROM leases WHERE returned_at IS NULL"
        ) <= CAP
    );

    // Every chain, every receipt and every station's own ledger, end to end.
    let signer = service.dir().join("signer.pem");
    let mut args: Vec<String> = vec![
        "central".into(),
        "verify".into(),
        "--database".into(),
        service.owner_url().into(),
        "--signer-certificate".into(),
        path(&signer),
    ];
    for station in &stations {
        args.push("--ledger".into());
        args.push(format!("{}={}", station.id, path(&station.ledger())));
    }
    let out = Command::new(BIN).args(&args).output().unwrap();
    assert!(
        out.status.success(),
        "central verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn path(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}
