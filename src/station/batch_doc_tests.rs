//! The batch document keeps the file's comments, refuses what the CLI refuses with the CLI's
//! words, and says what the form cannot show.

use std::path::Path;

use super::*;

fn station(dir: &Path) -> StationConfig {
    let p = dir.join("station.toml");
    std::fs::write(
        &p,
        "name = \"s1\"\nledger = \"ledger.db\"\n[fixture.slots]\nA1 = \"/dev/serial/by-id/x\"\n[keystore]\nkind = \"software\"\ndir = \"keys\"\n[dps.production]\nconnection_string_env = \"DPS_CS\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("intermediate-and-root.pem"),
        "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    StationConfig::load(&p).unwrap()
}

fn index(key: &str) -> usize {
    FIELDS.iter().position(|s| s.key == key).unwrap()
}

#[test]
fn saving_a_changed_field_keeps_every_comment_and_the_other_lines() {
    let dir = tempfile::tempdir().unwrap();
    let s = station(dir.path());
    let path = dir.path().join("batch.toml");
    std::fs::write(&path, TEMPLATE).unwrap();
    let mut doc = BatchDoc::open(&path).unwrap();
    assert!(
        doc.unrepresentable().is_empty(),
        "{:?}",
        doc.unrepresentable()
    );
    let mut values = doc.fields();
    assert_eq!(values[index("count")], "500");
    assert_eq!(
        values[index("initial_twin.desired")],
        "telemetryInterval = 60"
    );
    values[index("count")] = "20".into();
    values[index("registration_id")] = "{product}-line3-{serial}".into();
    values[index("initial_twin.desired")] = "telemetryInterval = 30\nmode = \"eco\"".into();
    doc.apply(&values).unwrap();
    doc.save().unwrap();

    let saved = std::fs::read_to_string(&path).unwrap();
    // Exactly the changed values differ: every comment, blank line and alignment stays.
    let expected = TEMPLATE
        .replace("count = 500 ", "count = 20 ")
        .replace(
            "registration_id = \"{product}-{serial}\"",
            "registration_id = \"{product}-line3-{serial}\"",
        )
        .replace(
            "telemetryInterval = 60\n",
            "telemetryInterval = 30\nmode = \"eco\"\n",
        );
    assert_eq!(saved, expected);
    // What was saved is what `run` loads.
    let b = BatchConfig::load(&path, &s).unwrap();
    assert_eq!(b.target(), Some(20));
    assert_eq!(b.twin_desired.unwrap()["mode"], "eco");
    assert!(!dir.path().join(".batch.toml.saving").exists());
}

#[test]
fn an_invalid_template_is_refused_with_the_clis_message() {
    let dir = tempfile::tempdir().unwrap();
    let s = station(dir.path());
    let path = dir.path().join("batch.toml");
    let mut doc = BatchDoc::from_text(&path, TEMPLATE).unwrap();
    doc.validate(&s).unwrap();
    let mut values = doc.fields();
    values[index("registration_id")] = "{product}-{serail}".into();
    doc.apply(&values).unwrap();
    let ours = doc.validate(&s).unwrap_err().to_string();
    let cli = BatchConfig::from_toml(&path, &doc.text(), &s)
        .unwrap_err()
        .to_string();
    assert_eq!(ours, cli);
    assert!(ours.contains("registration_id"), "{ours}");
    assert!(matches!(
        doc.validate(&s),
        Err(ConfigError::Invalid { ref key, .. }) if key == "registration_id"
    ));
    // A count that is not a number is the CLI's type error, not a silent 0.
    values[index("registration_id")] = "{product}-{serial}".into();
    values[index("count")] = "many".into();
    doc.apply(&values).unwrap();
    let e = doc.validate(&s).unwrap_err().to_string();
    assert!(e.contains("count") || e.contains("integer"), "{e}");
}

#[test]
fn what_the_form_cannot_show_is_named() {
    let path = Path::new("b.toml");
    let doc = BatchDoc::from_text(
        path,
        "name = \"b\"\ncolour = \"red\"\ncount = \"5\"\n[initial_twin.desired.deep]\na = 1\n",
    )
    .unwrap();
    let why = doc.unrepresentable().join("; ");
    assert!(why.contains("unknown key 'colour'"), "{why}");
    assert!(why.contains("'count' is not a whole number"), "{why}");
    assert!(
        why.contains("'initial_twin.desired.deep' is a nested table"),
        "{why}"
    );
    assert!(matches!(
        BatchDoc::from_text(path, "name = "),
        Err(BatchDocError::Syntax { .. })
    ));
}

#[test]
fn switching_count_to_a_serial_range_writes_the_array() {
    let dir = tempfile::tempdir().unwrap();
    let s = station(dir.path());
    let path = dir.path().join("batch.toml");
    let mut doc = BatchDoc::from_text(&path, TEMPLATE).unwrap();
    let mut values = doc.fields();
    values[index("count")] = String::new();
    let first = FIELDS
        .iter()
        .position(|f| f.kind == FieldKind::Serial(0))
        .unwrap();
    values[first] = "SN000100".into();
    values[first + 1] = "SN000199".into();
    doc.apply(&values).unwrap();
    assert!(
        doc.text()
            .contains("serial_range = [\"SN000100\", \"SN000199\"]")
    );
    let b = doc.validate(&s).unwrap();
    assert!(b.accepts_serial("SN000150") && !b.accepts_serial("SN000200"));
    let ids = sample_ids(&b, &["SN000100"]);
    assert_eq!(ids[0].as_deref(), Ok("sensor-sn000100"));
}

#[test]
fn the_esp32_table_is_edited_and_left_out_when_empty() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("batch.toml");
    std::fs::write(&path, TEMPLATE).unwrap();
    let mut doc = BatchDoc::open(&path).unwrap();
    let mut values = doc.fields();
    assert_eq!(values[index("esp32.flash_baud")], "");
    values[index("esp32.flash_baud")] = "921600".into();
    doc.apply(&values).unwrap();
    doc.save().unwrap();
    let saved = std::fs::read_to_string(&path).unwrap();
    assert!(
        saved.contains("[esp32]") && saved.contains("flash_baud = 921600"),
        "{saved}"
    );
    let mut doc = BatchDoc::open(&path).unwrap();
    assert!(
        doc.unrepresentable().is_empty(),
        "{:?}",
        doc.unrepresentable()
    );
    let mut values = doc.fields();
    assert_eq!(values[index("esp32.flash_baud")], "921600");
    values[index("esp32.flash_baud")] = String::new();
    doc.apply(&values).unwrap();
    doc.save().unwrap();
    assert!(
        !std::fs::read_to_string(&path)
            .unwrap()
            .contains("flash_baud")
    );
}

#[test]
fn the_manifest_switch_is_shown_and_written_in_its_table() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("batch.toml");
    std::fs::write(&path, TEMPLATE).unwrap();
    let mut doc = BatchDoc::open(&path).unwrap();
    let mut values = doc.fields();
    assert_ne!(values[index("manifest.require")], "true");
    values[index("manifest.require")] = "true".into();
    doc.apply(&values).unwrap();
    doc.save().unwrap();
    let saved = std::fs::read_to_string(&path).unwrap();
    assert!(
        saved.contains("[manifest]") && saved.contains("require = true"),
        "{saved}"
    );
    let doc = BatchDoc::open(&path).unwrap();
    assert!(
        doc.unrepresentable().is_empty(),
        "{:?}",
        doc.unrepresentable()
    );
    assert_eq!(doc.fields()[index("manifest.require")], "true");
}
