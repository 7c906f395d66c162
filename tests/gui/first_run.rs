//! The first run in the window: a station with no station.toml gets the form, and what the
//! form writes is a station file the desk (and `run`) loads.

use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;

use dps_station::gui::first_run::{FirstRunApp, Outcome};
use dps_station::station::config::{KeyStoreConfig, SecretSource, StationConfig};
use dps_station::station::setup::first_run::{StationState, station_state};

use dps_station::gui::i18n::Language;

use super::common;

fn click(h: &mut Harness<'static, FirstRunApp>, label: &str) {
    h.get_by_label(label).click_accesskit();
    h.run_steps(4);
}

/// Replaces the text of the `index`-th text field (in the form's order) with `text`.
fn fill(h: &mut Harness<'static, FirstRunApp>, index: usize, text: &str) {
    h.query_all_by_role(egui::accesskit::Role::TextInput)
        .nth(index)
        .unwrap_or_else(|| panic!("no text field {index}"))
        .focus();
    h.run_steps(1);
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::A);
    h.run_steps(1);
    h.query_all_by_role(egui::accesskit::Role::TextInput)
        .nth(index)
        .unwrap_or_else(|| panic!("no text field {index}"))
        .type_text(text);
    h.run_steps(2);
}

#[test]
fn a_missing_station_file_is_written_from_the_form_and_the_desk_opens_on_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("station.toml");
    let ledger = dir.path().join("ledger.db");
    let mut h = common::first_run(&path, None);
    assert!(h.query_by_label("Set up this station").is_some());

    // Nothing typed yet: refused, by name, and nothing written.
    click(&mut h, "Write station.toml");
    assert_eq!(
        h.state().outcome(),
        Some(&Outcome::Refused("Give the station a name.".into()))
    );
    assert!(!path.exists());

    // Fields in order: name, ledger, token label, (slot, port)..., DPS target, variable.
    fill(&mut h, 0, "line-7");
    fill(&mut h, 1, &ledger.display().to_string());
    fill(&mut h, 2, "line7-ca");
    click(&mut h, "Add a slot");
    click(&mut h, "Add a slot");
    fill(&mut h, 6, "/dev/ttyUSB9");
    assert_eq!(h.state().form().name, "line-7");
    assert_eq!(h.state().form().slots[1].1, "/dev/ttyUSB9");
    // The loader's own check, shown on the form: a ttyUSB name moves when cables are re-plugged.
    click(&mut h, "Write station.toml");
    match h.state().outcome() {
        Some(Outcome::Refused(m)) => assert!(m.contains("A2") && m.contains("by-id"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(!path.exists());
    fill(&mut h, 6, "/dev/serial/by-id/usb-FTDI_A2-if00-port0");
    click(&mut h, "Write station.toml");
    assert!(
        h.state().desk().is_some(),
        "the desk did not open: {:?}",
        h.state().outcome()
    );

    let config = StationConfig::load(&path).expect("the written file loads");
    assert_eq!(config.name, "line-7");
    assert_eq!(config.ledger, ledger);
    let slots: Vec<(String, String)> = config
        .fixture
        .slots
        .iter()
        .map(|(s, p)| (s.clone(), p.display().to_string()))
        .collect();
    assert_eq!(
        slots,
        [
            ("A1".to_owned(), "/dev/dps-fixture/A1".to_owned()),
            (
                "A2".to_owned(),
                "/dev/serial/by-id/usb-FTDI_A2-if00-port0".to_owned()
            )
        ]
    );
    match &config.keystore {
        KeyStoreConfig::Pkcs11 {
            profile,
            token_label,
            ..
        } => assert_eq!(
            (profile.as_str(), token_label.as_str()),
            ("softhsm2", "line7-ca")
        ),
        other => panic!("key store {other:?}"),
    }
    let target = config.dps.values().next().expect("a DPS target");
    assert_eq!(target.name, "production");
    assert_eq!(
        target.connection_string,
        SecretSource::Env("DPS_PRODUCTION_CONNECTION_STRING".into())
    );
    // The same window is now the desk over that station.
    h.run_steps(3);
    assert!(h.query_by_label("line-7").is_some());
}

#[test]
fn without_slots_the_file_is_written_and_the_form_says_how_to_add_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("station.toml");
    std::fs::write(&path, include_str!("../../installer/debian/station.toml")).unwrap();
    assert!(matches!(station_state(&path), StationState::Unconfigured));
    let mut h = common::first_run(&path, None);
    fill(&mut h, 0, "line-8");
    click(&mut h, "Write station.toml");
    assert!(h.state().desk().is_none());
    match h.state().outcome() {
        Some(Outcome::Partial(m)) => assert!(m.contains("fixture detect"), "{m}"),
        other => panic!("{other:?}"),
    }
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("line-8"), "{text}");
    // The template was kept next to it.
    assert!(dir.path().join("station.toml.bak").exists());
}

#[test]
fn the_form_speaks_korean_and_refuses_in_korean() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("station.toml");
    let mut h = common::first_run(&path, Some(Language::Ko));
    assert!(h.query_by_label("스테이션 설정").is_some());
    click(&mut h, "station.toml 저장");
    assert_eq!(
        h.state().outcome(),
        Some(&Outcome::Refused("스테이션 이름을 입력하세요.".into()))
    );
    assert!(!path.exists());
}
