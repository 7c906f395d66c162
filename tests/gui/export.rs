//! The export wizard: for a symmetric-individual batch enrolled offline it warns that the files
//! hold secrets and writes nothing until that is acknowledged; then it writes the enrollment
//! files and says what it wrote where.

use std::time::Duration;

use dps_station::gui::DeskOptions;
use dps_station::gui::i18n::Language;
use dps_station::station::demo::KeyStoreChoice;
use dps_station::station::demo_desk::DemoDeskOptions;
use egui_kittest::kittest::{NodeT, Queryable};

use super::common::{desk_on, engineer_roles};

#[test]
fn the_wizard_warns_of_secrets_and_writes_the_files_once_acknowledged() {
    let mut d = desk_on(
        KeyStoreChoice::Software,
        DemoDeskOptions {
            roles: engineer_roles("kim", "line-3-engineer"),
            slots: 2,
            devices: 2,
            pace: Duration::ZERO,
            ..DemoDeskOptions::default()
        },
        DeskOptions {
            kiosk: false,
            sounds: Some(false),
            language: Some(Language::En),
        },
    );
    // A symmetric-individual batch enrolled offline: its enrollments wait for an export.
    let dir = d.harness.state().station().config().desk.batches.clone();
    let demo = std::fs::read_to_string(dir.join("demo-symmetric-individual.toml")).unwrap();
    let text = demo
        .replace(
            "name = \"demo-symmetric-individual\"",
            "name = \"offline-keys\"",
        )
        .replace("enrollment = \"immediately\"", "enrollment = \"offline\"");
    assert!(text.contains("enrollment = \"offline\""), "{text}");
    std::fs::write(dir.join("offline-keys.toml"), &text).unwrap();

    d.become_engineer("kim", "line-3-engineer");
    d.start_batch("offline-keys");
    d.wait_until("the batch to end", Duration::from_secs(60), |a| {
        !a.view().running && a.view().passed >= 2
    });

    d.click("Export");
    // The batch list comes from a worker (the notice of the batch's report names it too).
    for _ in 0..500 {
        if d.harness.query_by_label("offline-keys").is_some() {
            break;
        }
        d.steps(1);
        std::thread::sleep(Duration::from_millis(10));
    }
    d.click("offline-keys");
    d.wait_shows(
        "These files will hold each device's symmetric key",
        Duration::from_secs(20),
    );
    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("for-site-b");
    d.harness
        .get_by_role(egui::accesskit::Role::TextInput)
        .set_text_value_accesskit(&target.display().to_string());
    d.steps(3);
    assert!(
        d.harness
            .get_by_label("Write the files")
            .accesskit_node()
            .is_disabled(),
        "nothing is written before the warning is acknowledged"
    );
    d.click("I understand the files hold secrets");
    d.click("Write the files");
    d.wait_shows("enrollment(s) written to", Duration::from_secs(30));
    assert!(d.shows("2 enrollment(s) written to"));
    assert!(d.shows("The files hold secrets"));
    for f in ["enrollments.csv", "enroll-with-az.sh", "README.txt"] {
        assert!(target.join(f).is_file(), "{f} written");
        assert!(d.shows(&target.join(f).display().to_string()), "{f} named");
    }
    let csv = std::fs::read_to_string(target.join("enrollments.csv")).unwrap();
    assert!(csv.contains("demo-symmetric-individual-"), "{csv}");
}
