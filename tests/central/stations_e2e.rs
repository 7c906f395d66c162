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

use dps_station::device::simulator::{Fleet, SimFaults, SimOptions};
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
    joined_station_with(
        service,
        index,
        BATCH,
        DEVICES_PER_STATION,
        DEVICES_PER_STATION,
        &SimOptions::default(),
    )
}

/// [`joined_station`] with `devices` simulated devices (`sim`) and a batch named `batch` of `count`
/// (more than `devices` keeps the run going after the last device, for the outage test).
fn joined_station_with(
    service: &CentralService,
    index: usize,
    batch: &str,
    devices: usize,
    count: usize,
    sim: &SimOptions,
) -> Station {
    let id = format!("line-{}", index + 1);
    let ws = DemoWorkspace::create(KeyStoreChoice::SoftHsm).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let fleet = Fleet::start(devices, sim).unwrap();
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
        devices: count as u64,
        ..RunOptions::default()
    };
    std::fs::write(
        dir.path().join("batch.toml"),
        ws.batch_toml(Mode::X509Csr, batch, &options),
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
    central_verify(&service, &stations.iter().collect::<Vec<_>>());
}

/// `central verify` over the service's database, with each station's own ledger; panics with its
/// words when a chain is broken.
fn central_verify(service: &CentralService, stations: &[&Station]) {
    let signer = service.dir().join("signer.pem");
    let mut args: Vec<String> = vec![
        "central".into(),
        "verify".into(),
        "--database".into(),
        service.owner_url().into(),
        "--signer-certificate".into(),
        path(&signer),
    ];
    for station in stations {
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

/// Identities of `batch` in a station's own ledger, and its outbox depth.
fn local(station: &Station, batch: &str) -> (usize, u64) {
    let Ok(ledger) = Ledger::open_read_only(&station.ledger()) else {
        return (0, 0);
    };
    let n = ledger
        .list_identities(&dps_station::ledger::IdentityFilter {
            batch: Some(batch.into()),
            ..Default::default()
        })
        .map(|l| l.len())
        .unwrap_or(0);
    let depth = ledger.outbox_status().map(|s| s.depth).unwrap_or(0);
    (n, depth)
}

/// The rows the service holds of a station: count and highest seq (equal when there is no gap;
/// the primary key makes a duplicate impossible).
fn held_rows(pg: &PgCluster, station: &str) -> (usize, usize) {
    let text = pg.psql(
        "central",
        &format!("SELECT count(*) || '|' || coalesce(max(seq), 0) FROM ingested_rows WHERE station_id = '{station}'"),
    );
    let mut parts = text.split('|').map(|p| p.parse().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

fn wait_until(
    what: &str,
    limit: Duration,
    mut done: impl FnMut() -> bool,
    context: impl Fn() -> String,
) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < limit,
            "{what}: not within {limit:?}\n{}",
            context()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn postgresql_stopped_mid_batch_the_station_goes_on_from_its_lease_and_drains_after_the_restart() {
    let pg = PgCluster::start();
    let service = CentralService::start(&pg);
    // One lease covers the batch: the outage must not stop the line.
    let out = service.central(&[
        "batch",
        "set",
        "outage",
        "--cap",
        "100",
        "--lease-size",
        "100",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Devices paced like a 4800-baud UART, so the batch is still under way when the database
    // goes; a batch of one more than the devices keeps the run (and its sync worker) going.
    let sim = SimOptions {
        faults: SimFaults {
            baud: Some(4_800),
            ..SimFaults::default()
        },
        ..SimOptions::default()
    };
    let station = joined_station_with(&service, 0, "outage", 40, 41, &sim);
    let mut runs = Runs(vec![spawn_run(&station)]);
    let central_count = || {
        count(
            &pg,
            "SELECT count(*) FROM identities WHERE batch = 'outage'",
        )
    };
    wait_until(
        "the station holds its lease",
        Duration::from_secs(120),
        || count(&pg, "SELECT count(*) FROM leases") >= 1,
        || station.log(),
    );

    // The database goes away mid-batch: the line goes on from its lease, the outbox grows.
    pg.stop();
    let (before, _) = local(&station, "outage");
    wait_until(
        "the station provisions on while PostgreSQL is down",
        Duration::from_secs(120),
        || {
            let (n, depth) = local(&station, "outage");
            n >= before + 5 && depth > 0
        },
        || format!("{:?}\n{}", local(&station, "outage"), station.log()),
    );

    // Back: the outbox drains with no gap, every identity reaches the service.
    pg.start_again();
    wait_until(
        "the outbox drains after the restart",
        Duration::from_secs(180),
        || local(&station, "outage") == (40, 0) && central_count() == 40,
        || {
            format!(
                "{:?}\n{}\n{}",
                local(&station, "outage"),
                station.log(),
                service.log()
            )
        },
    );
    signal(&runs.0[0], "TERM");
    assert!(
        wait_exit(&mut runs.0[0], Duration::from_secs(60)).is_some(),
        "the run did not stop\n{}",
        station.log()
    );
    assert_eq!(local(&station, "outage"), (40, 0));
    let (rows, max_seq) = held_rows(&pg, &station.id);
    assert_eq!(rows, max_seq, "no gap in the rows the service holds");
    central_verify(&service, &[&station]);
}

#[test]
fn a_station_killed_mid_upload_and_restarted_sends_nothing_twice() {
    let pg = PgCluster::start();
    let service = CentralService::start(&pg);
    let out = service.central(&[
        "batch",
        "set",
        "killed",
        "--cap",
        "100",
        "--lease-size",
        "40",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let station = joined_station_with(&service, 0, "killed", 40, 40, &SimOptions::default());
    let central_count = || {
        count(
            &pg,
            "SELECT count(*) FROM identities WHERE batch = 'killed'",
        )
    };
    {
        let mut runs = Runs(vec![spawn_run(&station)]);
        wait_until(
            "identities reach the service",
            Duration::from_secs(120),
            || central_count() >= 8,
            || station.log(),
        );
        // SIGKILL while the line provisions and the sync worker uploads: some rows the service
        // committed may not be acknowledged in the station's ledger.
        signal(&runs.0[0], "KILL");
        let _ = wait_exit(&mut runs.0[0], Duration::from_secs(30));
    }
    let mut runs = Runs(vec![spawn_run(&station)]);
    let status = wait_exit(&mut runs.0[0], Duration::from_secs(240));
    assert!(
        status.is_some(),
        "the resumed run did not finish\n{}",
        station.log()
    );
    let (n, depth) = local(&station, "killed");
    assert_eq!(
        depth,
        0,
        "every row acknowledged after the restart\n{}",
        station.log()
    );
    let held = pg.psql(
        "central",
        "SELECT count(*) || '|' || count(DISTINCT registration_id) FROM identities WHERE batch = 'killed'",
    );
    assert_eq!(held, format!("{n}|{n}"), "each identity once centrally");
    let (rows, max_seq) = held_rows(&pg, &station.id);
    assert_eq!(rows, max_seq, "no row twice, no gap");
    central_verify(&service, &[&station]);
}

fn path(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

#[test]
fn a_revoke_between_runs_reaches_the_service_with_central_sync() {
    let pg = PgCluster::start();
    let service = CentralService::start(&pg);
    let out = service.central(&["batch", "set", "between", "--cap", "10"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let station = joined_station_with(&service, 0, "between", 3, 3, &SimOptions::default());
    let mut runs = Runs(vec![spawn_run(&station)]);
    let status = wait_exit(&mut runs.0[0], Duration::from_secs(180));
    assert!(
        status.is_some_and(|s| s.success()),
        "the run did not finish\n{}",
        station.log()
    );
    assert_eq!(local(&station, "between"), (3, 0), "{}", station.log());

    // Between runs, an engineer revokes one identity: the row waits in the outbox.
    let registration_id = pg.psql(
        "central",
        "SELECT min(registration_id) FROM identities WHERE batch = 'between'",
    );
    let out = Command::new(BIN)
        .args([
            "ledger",
            "revoke",
            &registration_id,
            "--reason",
            "cracked housing",
        ])
        .arg("--config")
        .arg(station.toml())
        .env(
            "DPS_STATION_TEST_CS",
            station.ws.emulator.connection_string().expose(),
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        local(&station, "between").1 > 0,
        "the revoke is in the outbox"
    );
    let live = format!(
        "SELECT state || ':' || live FROM identities WHERE registration_id = '{registration_id}'"
    );
    assert_ne!(pg.psql("central", &live), "revoked:false");

    // `central sync` sends it now (the client key is in the station's SoftHSM2 token).
    let (code, said) = central_sync(&station);
    assert_eq!(code, Some(0), "{said}\n{}", service.log());
    assert!(said.contains("uploaded"), "{said}");
    assert_eq!(local(&station, "between").1, 0, "the outbox is empty");
    assert_eq!(pg.psql("central", &live), "revoked:false");
    let (rows, max_seq) = held_rows(&pg, &station.id);
    assert_eq!(rows, max_seq, "no gap in the rows the service holds");
    central_verify(&service, &[&station]);

    // Again: only its own `ledger.opened` row goes up. With the service away: exit 3, the row kept.
    let (code, said) = central_sync(&station);
    assert_eq!(code, Some(0), "{said}");
    drop(service);
    let (code, said) = central_sync(&station);
    assert_eq!(code, Some(3), "{said}");
    assert!(said.contains("stay in the outbox"), "{said}");
    assert!(
        local(&station, "between").1 > 0,
        "the row waits for the service"
    );

    // While another process writes the ledger (a run, which syncs by itself), it is refused,
    // naming the holder, before any PIN is presented.
    let _writer = Ledger::open(
        &station.ledger(),
        &dps_station::ledger::WriterIdentity {
            station: station.id.clone(),
            operator: "run".into(),
        },
    )
    .unwrap();
    let (code, said) = central_sync(&station);
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("already open for writing"), "{said}");
}

/// `dps-station central sync` for `station`: its exit code, and what it printed.
fn central_sync(station: &Station) -> (Option<i32>, String) {
    let out = Command::new(BIN)
        .args(["central", "sync", "--station"])
        .arg(station.toml())
        .env("DPS_STATION_HSM_PIN", USER_PIN)
        .output()
        .unwrap();
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}
