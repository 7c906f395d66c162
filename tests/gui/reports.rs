//! The reports screen over a finished demo batch: its plots are drawn, its figures shown in
//! text, and the report files it writes hold SVG plots that parse and carry the batch's numbers.

use std::path::Path;
use std::time::Duration;

use dps_station::gui::engineer::reports::REPORTS;
use dps_station::station::demo_desk::DemoDeskOptions;
use dps_station::station::operator::roles::hash_password;
use dps_station::station::operator::settings::RolesSection;
use xml::reader::{EventReader, XmlEvent};

use super::common::{TestDesk, desk};

/// Every `data-value` of the marks in `<g id="series-{series}">` of an SVG file, which must
/// parse as XML.
fn series_values(path: &Path, series: &str) -> Vec<f64> {
    let file = std::fs::File::open(path).unwrap();
    let (mut values, mut depth_in) = (Vec::new(), None::<usize>);
    let mut depth = 0;
    let mut found = false;
    for event in EventReader::new(std::io::BufReader::new(file)) {
        match event.unwrap_or_else(|e| panic!("{} is not XML: {e}", path.display())) {
            XmlEvent::StartElement { attributes, .. } => {
                depth += 1;
                let attr = |n: &str| {
                    attributes
                        .iter()
                        .find(|a| a.name.local_name == n)
                        .map(|a| a.value.clone())
                };
                if attr("id").as_deref() == Some(&format!("series-{series}")) {
                    (depth_in, found) = (Some(depth), true);
                } else if depth_in.is_some()
                    && let Some(v) = attr("data-value")
                {
                    values.push(v.parse().unwrap());
                }
            }
            XmlEvent::EndElement { .. } => {
                if depth_in == Some(depth) {
                    depth_in = None;
                }
                depth -= 1;
            }
            _ => {}
        }
    }
    assert!(found, "{} has no series {series}", path.display());
    values
}

/// Steps frames until a widget shows `text` (a worker's answer), for at most 20 s.
fn wait_shows(d: &mut TestDesk, text: &str) {
    let start = std::time::Instant::now();
    while !d.shows(text) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "nothing shows {text:?} after 20 s"
        );
        d.steps(1);
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_finished_demo_batch_has_its_plots_drawn_and_written_as_svg() {
    let mut d = desk(
        DemoDeskOptions {
            devices: 6,
            slots: 3,
            pace: Duration::ZERO,
            faulty_first: true,
            roles: RolesSection {
                engineers: vec!["kim".into()],
                engineer_password: Some(hash_password("line-3-engineer").unwrap()),
                ..RolesSection::default()
            },
            ..DemoDeskOptions::default()
        },
        None,
    );
    d.sign_in("kim");
    d.start_batch("demo-x509-csr");
    d.wait_until("the batch to end", Duration::from_secs(120), |a| {
        !a.view().running
    });
    let (passed, failed) = (
        d.harness.state().view().passed,
        d.harness.state().view().failed,
    );
    assert_eq!(
        (passed, failed),
        (5, 1),
        "the first device of S1 loses its cable"
    );

    d.unlock_engineer("line-3-engineer");
    d.click("Reports");
    assert_eq!(d.harness.state().current(), REPORTS);
    // The ledger is read on the screen's worker.
    wait_shows(&mut d, "demo-x509-csr");
    d.click("demo-x509-csr");
    wait_shows(&mut d, "plot throughput");
    // Every plot is drawn with the batch's data: three slots, one failing stage.
    assert!(
        d.shows("plot slots: 3 points"),
        "the slots plot has the three slots"
    );
    assert!(d.shows("plot stages: 1 points"), "one failing stage");
    assert!(d.shows("plot time:"), "the time histogram");
    // And the figures in text.
    assert!(d.shows("6 devices: 5 passed, 1 failed, yield 83.3%"));
    assert!(d.shows("median"));

    // `DPS_STATION_SCREENSHOTS=docs/screenshots UPDATE_SNAPSHOTS=1` keeps a picture of the
    // screen (README); a render that is not possible here (no wgpu adapter) is not a failure.
    if let Some(dir) = std::env::var_os("DPS_STATION_SCREENSHOTS") {
        let options = egui_kittest::SnapshotOptions::new().output_path(dir);
        if let Err(e) = d.harness.try_snapshot_options("reports", &options) {
            eprintln!("no screenshot: {e}");
        }
    }
    let reports = d.harness.state().station().config().reports.clone();
    d.click("Write report files");
    wait_shows(&mut d, "Written:");
    let md = std::fs::read_to_string(reports.join("batch-demo-x509-csr.md")).unwrap();
    assert!(
        md.contains("![Throughput](batch-demo-x509-csr-throughput.svg)"),
        "{md}"
    );
    let slots = reports.join("batch-demo-x509-csr-slots.svg");
    let by_slot_passed: f64 = series_values(&slots, "passed").iter().sum();
    let by_slot_failed: f64 = series_values(&slots, "failed").iter().sum();
    assert_eq!((by_slot_passed, by_slot_failed), (5.0, 1.0));
    let stages = series_values(&reports.join("batch-demo-x509-csr-stages.svg"), "failed");
    assert_eq!(stages, vec![1.0]);
    let time: f64 = series_values(&reports.join("batch-demo-x509-csr-time.svg"), "devices")
        .iter()
        .sum();
    assert_eq!(time, 5.0, "every passed device is in the histogram");
    let throughput = reports.join("batch-demo-x509-csr-throughput.svg");
    assert!(!series_values(&throughput, "passed").is_empty());

    // `dps-station report` writes the same report from the same ledger (read-only).
    let out = tempfile::tempdir().unwrap();
    let ledger = d.harness.state().station().config().ledger.clone();
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_dps-station"))
        .arg("report")
        .arg("demo-x509-csr")
        .arg("--ledger")
        .arg(&ledger)
        .arg("--output")
        .arg(out.path())
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let cli_slots = out.path().join("batch-demo-x509-csr-slots.svg");
    assert_eq!(series_values(&cli_slots, "failed").iter().sum::<f64>(), 1.0);
    let unknown = std::process::Command::new(env!("CARGO_BIN_EXE_dps-station"))
        .args(["report", "no-such-batch", "--ledger"])
        .arg(&ledger)
        .arg("--output")
        .arg(out.path())
        .output()
        .unwrap();
    assert!(!unknown.status.success());
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("no device runs for batch no-such-batch"),
        "{}",
        String::from_utf8_lossy(&unknown.stderr)
    );
}

#[test]
fn the_enrollment_screen_shows_the_queue_and_dps_answers_of_a_demo_batch() {
    let mut d = desk(
        DemoDeskOptions {
            devices: 4,
            slots: 2,
            pace: Duration::ZERO,
            faulty_first: false,
            roles: RolesSection {
                engineers: vec!["kim".into()],
                engineer_password: Some(hash_password("line-3-engineer").unwrap()),
                ..RolesSection::default()
            },
            ..DemoDeskOptions::default()
        },
        None,
    );
    d.sign_in("kim");
    d.start_batch("demo-x509-csr");
    d.wait_until("4 devices enrolled", Duration::from_secs(120), |a| {
        !a.view().running && a.view().enrolled == 4
    });
    d.unlock_engineer("line-3-engineer");
    d.click("Enrollment");
    wait_shows(&mut d, "plot enrollment answers");
    // Four enrollments confirmed by DPS, none throttled or refused, none left pending.
    assert!(
        d.shows("Answers: enrolled 4 · throttled (429) 0 · server error (5xx) 0 · no answer 0 · refused 0"),
        "the totals in text"
    );
    assert!(d.shows("Queue by DPS target"));
    assert!(d.shows("operations per minute"), "the target's quota");
}

/// The DPS target of the ledger's first queued enrollment.
fn queue_target(d: &TestDesk) -> String {
    let path = d.harness.state().station().config().ledger.clone();
    let ledger = dps_station::ledger::Ledger::open_read_only(&path).unwrap();
    ledger.enrollment_queue().unwrap()[0].dps_target.clone()
}

/// The pending enrollments in the ledger, by reading it.
fn pending(d: &TestDesk) -> u64 {
    let path = d.harness.state().station().config().ledger.clone();
    let ledger = dps_station::ledger::Ledger::open_read_only(&path).unwrap();
    ledger
        .enrollment_queue()
        .unwrap()
        .iter()
        .filter(|q| q.state == "pending")
        .map(|q| q.count)
        .sum()
}

/// The demo desk gets its DPS client from the demo workspace; its station.toml target names an
/// environment variable for the connection string that nobody sets, so DPS cannot be reached
/// from station.toml here: enroll-now must say so and leave the queue as it was. The results
/// the offline site returns (az-results.csv) are then imported from the same screen.
#[test]
fn enroll_now_without_dps_leaves_the_queue_untouched_and_an_offline_sites_results_confirm_it() {
    use dps_station::station::config::Mode;
    use dps_station::station::demo::RunOptions;

    let mut d = desk(
        DemoDeskOptions {
            devices: 3,
            slots: 3,
            pace: Duration::ZERO,
            faulty_first: false,
            roles: RolesSection {
                engineers: vec!["kim".into()],
                engineer_password: Some(hash_password("line-3-engineer").unwrap()),
                ..RolesSection::default()
            },
            ..DemoDeskOptions::default()
        },
        None,
    );
    // A batch enrolled offline: its identities stay queued.
    let ws = d._workspace.clone();
    let toml = ws.batch_toml(
        Mode::X509Csr,
        "offline-x509",
        &RunOptions {
            devices: 3,
            timing: "offline",
            ..RunOptions::default()
        },
    );
    std::fs::write(ws.station.desk.batches.join("offline-x509.toml"), toml).unwrap();
    d.sign_in("kim");
    d.start_batch("offline-x509");
    d.wait_until("the batch to end", Duration::from_secs(120), |a| {
        !a.view().running
    });
    assert_eq!(pending(&d), 3);
    let answers = |d: &TestDesk| {
        let path = d.harness.state().station().config().ledger.clone();
        let l = dps_station::ledger::Ledger::open_read_only(&path).unwrap();
        l.enrollment_answers("1970-01-01T00:00:00Z").unwrap().len()
    };
    let answers_before = answers(&d);

    d.unlock_engineer("line-3-engineer");
    d.click("Enrollment");
    let target = queue_target(&d);
    wait_shows(&mut d, &format!("Enroll now: {target}"));
    d.click(&format!("Enroll now: {target}"));
    wait_shows(&mut d, "▲ the connection string of DPS target");
    assert_eq!(pending(&d), 3, "the queue is untouched");
    assert_eq!(answers(&d), answers_before, "no attempt was recorded");

    // The batch was enrolled at an offline site instead: its az-results.csv comes back and is
    // imported from the same screen, as `dps import-results` would.
    let ids: Vec<String> = {
        let path = d.harness.state().station().config().ledger.clone();
        let l = dps_station::ledger::Ledger::open_read_only(&path).unwrap();
        let filter = dps_station::ledger::IdentityFilter {
            batch: Some("offline-x509".into()),
            ..Default::default()
        };
        l.list_identities(&filter)
            .unwrap()
            .into_iter()
            .map(|i| i.registration_id)
            .collect()
    };
    assert_eq!(ids.len(), 3);
    let csv = ws.dir.join("az-results.csv");
    let mut text = String::from("registration_id,status\n");
    for id in &ids {
        text += &format!("{id},enrolled\n");
    }
    std::fs::write(&csv, text).unwrap();
    d.set_field("Results file or folder", &csv.display().to_string());
    d.click("Import the results");
    wait_shows(&mut d, "3 marked enrolled");
    assert_eq!(pending(&d), 0, "the imported results confirmed the queue");
}
