//! Where the binary reads HSM profiles: the installed directory (here: one named by
//! `DPS_STATION_HSM_PROFILES`, as `/usr/share/dps-station/hsm-profiles` is found next to
//! `/usr/bin`) or, under cargo, the source tree.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_dps-station");

#[test]
fn hsm_profiles_come_from_the_profile_directory_and_name_it() {
    let out = Command::new(BIN)
        .args(["hsm", "profiles"])
        .env_remove("DPS_STATION_HSM_PROFILES")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let source = concat!(env!("CARGO_MANIFEST_DIR"), "/hsm-profiles");
    assert!(
        text.starts_with(&format!("profiles from {source}")),
        "{text}"
    );

    let dir = tempfile::tempdir().unwrap();
    let site = include_str!("../../hsm-profiles/generic.toml")
        .replace("name = \"generic\"", "name = \"site-hsm\"")
        .replace("display_name = \"", "display_name = \"Our site HSM, was ");
    std::fs::write(dir.path().join("site-hsm.toml"), site).unwrap();
    let out = Command::new(BIN)
        .args(["hsm", "profiles"])
        .env("DPS_STATION_HSM_PROFILES", dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("profiles from {}", dir.path().display())),
        "{text}"
    );
    assert!(
        text.contains("site-hsm") && text.contains("Our site HSM"),
        "{text}"
    );
    // The shipped ones not in that directory still come from the built-in copies.
    assert!(text.contains("yubihsm2"), "{text}");
}
