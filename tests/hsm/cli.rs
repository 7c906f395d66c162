//! The `hsm` commands as an operator runs them: PIN from the environment, a chain openssl accepts,
//! keys listed as non-extractable, clear errors for a missing module and a wrong PIN.

use std::path::Path;
use std::process::{Command, Output};

use crate::common::*;

fn station(args: &[&str], ledger: &Path, pin: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dps-station"))
        .args(args)
        .env("SOFTHSM2_CONF", conf())
        .env("DPS_STATION_HSM_PIN", pin)
        .env("DPS_STATION_LEDGER", ledger)
        .env("DPS_STATION_OPERATOR", "officer-cli")
        .env_remove("DPS_STATION_HSM_PROFILE")
        .env_remove("DPS_STATION_HSM_TOKEN")
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn init_ca_export_chain_and_list_from_the_command_line() {
    let label = fresh_token("cli");
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.db");
    let hsm = ["hsm", "--profile", "softhsm2", "--token", label.as_str()];
    let run = |extra: &[&str]| {
        let args: Vec<&str> = hsm.iter().chain(extra).copied().collect();
        station(&args, &ledger, USER_PIN)
    };

    let out = run(&["init-ca", "--organization", "Contoso"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("NOT in a hardware HSM"),
        "SoftHSM2 must be flagged: {}",
        text(&out)
    );
    let chain = dir.path().join("chain.pem");
    let out = run(&["export-chain", "--out", chain.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let pem = std::fs::read_to_string(&chain).unwrap();
    let blocks: Vec<&str> = pem.split_inclusive("-----END CERTIFICATE-----\n").collect();
    assert_eq!(blocks.len(), 2);
    std::fs::write(dir.path().join("int.pem"), blocks[0]).unwrap();
    std::fs::write(dir.path().join("root.pem"), blocks[1]).unwrap();
    let verify = Command::new("openssl")
        .current_dir(dir.path())
        .args(["verify", "-CAfile", "root.pem", "int.pem"])
        .output()
        .unwrap();
    assert!(verify.status.success(), "{}", text(&verify));

    let out = run(&["list"]);
    assert!(out.status.success(), "{}", text(&out));
    let listing = text(&out);
    assert_eq!(
        listing.matches("[sensitive, not extractable]").count(),
        2,
        "{listing}"
    );
    assert!(
        listing.contains("object=root-ca") && listing.contains("certificate \"intermediate-ca\""),
        "{listing}"
    );

    let out = run(&[
        "poe-cert",
        "--ca",
        &format!("pkcs11:token={label};object=root-ca"),
        "--code",
        "0A1B2C",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("-----BEGIN CERTIFICATE-----"));

    // A wrong PIN: a clear message, exit code 1, the PIN nowhere in the output.
    let out = station(
        &["hsm", "--profile", "softhsm2", "--token", &label, "list"],
        &ledger,
        "0000-wrong",
    );
    assert!(!out.status.success());
    let msg = text(&out);
    assert!(
        msg.contains("wrong user PIN") && msg.contains(&label),
        "{msg}"
    );
    assert!(
        !msg.contains("0000-wrong") && !msg.contains(USER_PIN),
        "{msg}"
    );
}

#[test]
fn profiles_say_which_modules_are_present_and_a_missing_one_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.db");
    let out = station(&["hsm", "profiles"], &ledger, USER_PIN);
    assert!(out.status.success());
    let listing = text(&out);
    assert!(
        listing.contains(&format!("installed: {MODULE}")),
        "{listing}"
    );
    for name in [
        "softhsm2",
        "yubihsm2",
        "nitrokey-hsm2",
        "thales-luna",
        "aws-cloudhsm",
        "utimaco",
        "generic",
    ] {
        assert!(listing.contains(name), "{name} missing from:\n{listing}");
    }
    let out = station(
        &["hsm", "--profile", "thales-luna", "--token", "x", "list"],
        &ledger,
        USER_PIN,
    );
    assert!(!out.status.success());
    let msg = text(&out);
    assert!(
        msg.contains("/usr/safenet/lunaclient/lib/libCryptoki2_64.so") && msg.contains("--module"),
        "{msg}"
    );
}

#[test]
fn group_key_import_and_derive_never_print_a_key() {
    let label = fresh_token("cli-group");
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.db");
    let group_key =
        "8isrFI1sGsIlvvFSSFRiMfCNzv21fjbE/+ah/lSh3lF8e2YG1Te7w1KpZhJFFXJrqYKi9yegxkqIChbqOS9Egw==";
    let key_file = dir.path().join("group.b64");
    std::fs::write(&key_file, format!("{group_key}\n")).unwrap();
    let hsm = [
        "hsm",
        "--profile",
        "softhsm2",
        "--token",
        label.as_str(),
        "group-key",
    ];
    let run = |extra: &[&str]| {
        let args: Vec<&str> = hsm.iter().chain(extra).copied().collect();
        station(&args, &ledger, USER_PIN)
    };
    let out = run(&[
        "import",
        "--label",
        "dps-group",
        "--key-file",
        key_file.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let device_key = dir.path().join("device.key");
    let out = run(&[
        "derive",
        "--key",
        "pkcs11:object=dps-group",
        "--registration-id",
        "sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6",
        "--out",
        device_key.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let derived = "Jsm0lyGpjaVYVP2g3FnmnmG9dI/9qU24wNoykUmermc=";
    assert_eq!(
        std::fs::read_to_string(&device_key).unwrap().trim(),
        derived
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&device_key).unwrap().permissions().mode() & 0o077,
        0
    );
    let all = text(&out);
    assert!(!all.contains(derived) && !all.contains(group_key), "{all}");
    assert!(all.contains("sha256:"), "the fingerprint is shown: {all}");
    // Without --out only the fingerprint is shown.
    let out = run(&[
        "derive",
        "--key",
        "pkcs11:object=dps-group",
        "--registration-id",
        "sn-0002",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("fingerprint sha256:"), "{}", text(&out));
}
