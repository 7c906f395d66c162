//! The role lock: an operator sees only the line; an engineer's screen needs the engineer's
//! password and the person listed as engineer.

use dps_station::gui::station_screen::STATION;
use dps_station::station::demo_desk::DemoDeskOptions;
use dps_station::station::operator::roles::hash_password;
use dps_station::station::operator::settings::RolesSection;

use dps_station::gui::DeskOptions;

use super::common::{desk, desk_with};

fn try_unlock(d: &mut super::common::TestDesk, password: &str) {
    super::common::take_role(d, "engineer", password);
}

#[test]
fn an_operator_cannot_reach_the_engineer_screen_and_a_wrong_password_is_refused() {
    let roles = RolesSection {
        engineers: vec!["kim".into()],
        engineer_password: Some(hash_password("line-3-engineer").unwrap()),
        ..RolesSection::default()
    };
    let mut d = desk(
        DemoDeskOptions {
            roles,
            ..DemoDeskOptions::default()
        },
        None,
    );
    d.sign_in("ann");
    assert!(
        !d.shows("Station"),
        "an operator sees no navigation to the station screen"
    );
    assert_eq!(d.harness.state().allowed(), vec!["line"]);
    // Ann is not an engineer, whatever the password.
    try_unlock(&mut d, "line-3-engineer");
    let n = d.harness.state().notice().unwrap().clone();
    assert!(
        n.error && n.text.contains("not listed as engineer"),
        "{n:?}"
    );

    d.click("Sign out");
    d.sign_in("kim");
    try_unlock(&mut d, "wrong");
    let n = d.harness.state().notice().unwrap().clone();
    assert!(
        n.error && n.text.contains("wrong engineer password"),
        "{n:?}"
    );
    assert!(!d.harness.state().allowed().contains(&STATION));

    try_unlock(&mut d, "line-3-engineer");
    assert!(!d.harness.state().notice().unwrap().error);
    d.click("Station");
    assert_eq!(d.harness.state().current(), STATION);
    // Signing out drops the role and the screen.
    d.click("Sign out");
    d.steps(2);
    assert_eq!(d.harness.state().current(), "line");
}

#[test]
fn leaving_kiosk_mode_needs_an_engineer() {
    let roles = RolesSection {
        engineers: vec!["kim".into()],
        engineer_password: Some(hash_password("line-3-engineer").unwrap()),
        ..RolesSection::default()
    };
    let mut d = desk_with(
        DemoDeskOptions {
            roles,
            ..DemoDeskOptions::default()
        },
        DeskOptions {
            kiosk: true,
            sounds: Some(false),
            language: Some(dps_station::gui::i18n::Language::En),
        },
    );
    d.sign_in("kim");
    assert!(d.close_window(), "an operator cannot close the kiosk");
    assert!(
        d.harness
            .state()
            .notice()
            .unwrap()
            .text
            .contains("needs an engineer")
    );
    try_unlock(&mut d, "line-3-engineer");
    assert!(!d.close_window(), "an engineer can");
}
