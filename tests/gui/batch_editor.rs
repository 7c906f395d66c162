//! The batch editor: an invalid registration-ID template is refused with the CLI's message and
//! cannot be saved; a valid edit is saved with the file's comments kept, and the desk's `run`
//! (start batch) accepts the saved file and makes IDs from the new template.

use std::time::Duration;

use dps_station::gui::engineer::batch_editor::BATCH_EDITOR;
use dps_station::station::config::BatchConfig;
use dps_station::station::demo_desk::DemoDeskOptions;
use egui_kittest::kittest::{NodeT, Queryable};

use super::common::{desk, engineer_roles};

#[test]
fn the_editor_refuses_an_invalid_template_and_saves_a_valid_one_that_run_accepts() {
    let mut d = desk(
        DemoDeskOptions {
            roles: engineer_roles("kim", "line-3-engineer"),
            slots: 2,
            devices: 2,
            pace: Duration::ZERO,
            ..DemoDeskOptions::default()
        },
        None,
    );
    // A commented batch file, as an engineer keeps them.
    let dir = d.harness.state().station().config().desk.batches.clone();
    let demo = std::fs::read_to_string(dir.join("demo-x509-csr.toml")).unwrap();
    let text = format!(
        "# Line 3, week 49: sensors for ACME.\n{}",
        demo.replace(
            "name = \"demo-x509-csr\"",
            "name = \"line3\"                 # one batch per work order"
        )
    );
    let path = dir.join("line3.toml");
    std::fs::write(&path, &text).unwrap();

    d.become_engineer("kim", "line-3-engineer");
    d.click("Batches");
    assert_eq!(d.harness.state().current(), BATCH_EDITOR);
    d.wait_shows("line3.toml", Duration::from_secs(20));
    d.click("line3.toml");
    d.wait_shows("Valid: run accepts this batch", Duration::from_secs(20));

    // A misspelt field: the CLI's words, marked on the field, and no Save.
    d.set_field("Registration ID template", "{product}-{serail}");
    d.wait_shows("▲ The batch is not valid", Duration::from_secs(20));
    let config = d.harness.state().station().config().clone();
    let cli = BatchConfig::from_toml(
        &path,
        &text.replace("{product}-x509-csr-{serial}", "{product}-{serail}"),
        &config,
    )
    .unwrap_err()
    .to_string();
    assert!(cli.contains("registration_id"), "{cli}");
    assert!(d.shows(&cli), "the form shows the CLI's own message: {cli}");
    assert!(
        d.harness
            .get_by_label("Save")
            .accesskit_node()
            .is_disabled()
    );

    d.set_field("Registration ID template", "{product}-line3-{serial}");
    d.wait_shows("Valid: run accepts this batch", Duration::from_secs(20));
    assert!(
        d.shows("demo-line3-sn000123"),
        "the preview uses the new template"
    );
    d.click("Save");
    d.wait_shows("comments kept", Duration::from_secs(20));
    let saved = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        saved,
        text.replace(
            "registration_id = \"{product}-x509-csr-{serial}\"",
            "registration_id = \"{product}-line3-{serial}\""
        ),
        "only the template changed; comments kept"
    );

    // `run` takes it: the desk starts it and devices get IDs from the new template.
    d.click("Line");
    d.start_batch("line3");
    d.wait_until("a first pass", Duration::from_secs(60), |a| {
        a.view().passed >= 1
    });
    d.wait_until("the batch to end", Duration::from_secs(60), |a| {
        !a.view().running
    });
    let ledger_path = d.harness.state().station().config().ledger.clone();
    let ledger = dps_station::ledger::Ledger::open_read_only(&ledger_path).unwrap();
    let ids: Vec<String> = ledger
        .list_identities(&dps_station::ledger::IdentityFilter {
            batch: Some("line3".into()),
            ..Default::default()
        })
        .unwrap()
        .into_iter()
        .map(|i| i.registration_id)
        .collect();
    assert!(
        !ids.is_empty() && ids.iter().all(|id| id.starts_with("demo-line3-")),
        "{ids:?}"
    );
}

#[test]
fn a_batch_that_ran_keeps_what_the_ledger_recorded_and_an_odd_file_opens_read_only() {
    let mut d = desk(
        DemoDeskOptions {
            roles: engineer_roles("kim", "line-3-engineer"),
            slots: 2,
            devices: 2,
            pace: Duration::ZERO,
            ..DemoDeskOptions::default()
        },
        None,
    );
    let dir = d.harness.state().station().config().desk.batches.clone();
    let demo = std::fs::read_to_string(dir.join("demo-x509-csr.toml")).unwrap();
    std::fs::write(dir.join("odd.toml"), format!("{demo}\ncolour = \"blue\"\n")).unwrap();
    d.become_engineer("kim", "line-3-engineer");
    d.start_batch("demo-x509-csr");
    d.wait_until("the batch to end", Duration::from_secs(60), |a| {
        !a.view().running && a.view().passed >= 2
    });

    d.click("Batches");
    for _ in 0..500 {
        if d.harness.query_by_label("demo-x509-csr.toml").is_some() {
            break;
        }
        d.steps(1);
        std::thread::sleep(Duration::from_millis(10));
    }
    d.click("demo-x509-csr.toml");
    d.wait_shows("This batch already ran", Duration::from_secs(20));
    // Another product under the same name is what the engine refuses at start.
    d.set_field("Product", "other-product");
    d.wait_shows("already exists in the ledger", Duration::from_secs(20));
    assert!(
        d.harness
            .get_by_label("Save")
            .accesskit_node()
            .is_disabled()
    );

    // Unsaved edits are not dropped silently.
    d.click("odd.toml");
    assert!(d.shows("unsaved changes"));
    assert!(d.shows("This batch already ran"), "still the edited batch");
    d.click("Discard them and open");
    // A key the form does not know: read-only, with the reason, and no form.
    d.wait_shows("Read-only", Duration::from_secs(20));
    assert!(d.shows("unknown key 'keys.colour'"));
    assert!(d.harness.query_by_label("Save").is_none());
}
