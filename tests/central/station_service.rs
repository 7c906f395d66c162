//! The station against the real service process (`central serve`, mutual TLS, real PostgreSQL):
//! `dps-station central join` through the CLI, then the station's outbox uploaded by the sync
//! worker over `HttpsLink`, a receipt for every row, and `central status` showing it.

use std::sync::Arc;
use std::time::Duration;

use dps_station::central::station_side::start::{open_link, signer_certificate};
use dps_station::central::station_side::sync::{Round, SyncWorker};
use dps_station::ledger::Ledger;
use dps_station::station::config::StationConfig;
use dps_station::station::ledger_thread::LedgerThread;

use crate::pg::PgCluster;
use crate::service::{CentralService, cli};
use crate::station_outbox::{provision, writer};

const STATION: &str = "# line 1\nname = \"line-1\"\nledger = \"ledger.db\"\n[fixture.slots]\nA1 = \"/dev/serial/by-id/x\"\n[keystore]\nkind = \"software\"\ndir = \"keys\"\n";

#[test]
fn a_station_joins_with_the_cli_and_uploads_its_outbox_to_the_service() {
    let pg = PgCluster::start();
    let service = CentralService::start(&pg);
    let dir = tempfile::tempdir().unwrap();
    let toml = dir.path().join("station.toml");
    std::fs::write(&toml, STATION).unwrap();
    // History written before joining is uploaded too.
    let mut ledger = Ledger::open(&dir.path().join("ledger.db"), &writer()).unwrap();
    for n in 1..=3 {
        provision(&mut ledger, &format!("{n:06}"));
    }

    let token = service.token("line-1");
    let out = cli(&[
        "central",
        "join",
        &service.url(),
        "--token",
        &token,
        "--station",
        toml.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "join failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        service.log()
    );
    let secret = token.split('.').nth(2).unwrap();
    assert!(!std::fs::read_to_string(&toml).unwrap().contains(secret));
    assert!(!service.log().contains(secret));
    let config = StationConfig::load(&toml).unwrap();
    let central = config.central.clone().expect("[central] written");

    let (thread, handle) = LedgerThread::start(ledger).unwrap();
    let worker = SyncWorker {
        station_id: central.station_id.clone(),
        link: Arc::new(open_link(&central, None).unwrap()),
        signer: signer_certificate(&central.signer_certificate).unwrap(),
        ledger: handle.clone(),
        idle_poll: Duration::from_millis(10),
        backoff_min: Duration::from_millis(10),
        backoff_max: Duration::from_millis(10),
    };
    let mut rounds = 0;
    while worker
        .round()
        .unwrap_or_else(|e| panic!("{e}\n{}", service.log()))
        != Round::Idle
    {
        rounds += 1;
        assert!(rounds < 10);
    }
    drop(worker);
    drop(handle);
    let ledger = thread.join().unwrap();
    let outbox = ledger.outbox_status().unwrap();
    assert_eq!(outbox.depth, 0, "a receipt for every row");
    let last = outbox.last_seq;
    let held = pg.psql(
        "central",
        "SELECT count(*) || ' ' || count(DISTINCT seq) FROM ingested_rows WHERE station_id = 'line-1'",
    );
    assert_eq!(held, format!("{last} {last}"));
    drop(ledger);

    let out = cli(&["central", "status", "--station", toml.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("outbox: 0 row(s) not yet acknowledged"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("line-1") && l.contains(&last.to_string())),
        "{text}"
    );
}
