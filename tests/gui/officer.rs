//! The security officer's HSM screen on SoftHSM2 tokens made per test: a session opened with the
//! right PIN, a CA hierarchy whose chain `openssl verify` accepts, keys listed as never
//! extractable, a proof-of-possession certificate with CN = the code, one `C_Login` for a wrong
//! PIN, idle close with logout, dual control, and no PIN in the logs or the ledger.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine;
use dps_station::keystore::pkcs11::shared_context;
use dps_station::ledger::Ledger;
use dps_station::station::config::officer::OfficerSettings;
use dps_station::station::demo::{SOFTHSM_MODULE, USER_PIN, fresh_token};
use dps_station::station::demo_desk::DemoDeskOptions;
use dps_station::station::operator::Role;
use dps_station::station::operator::roles::hash_password;
use dps_station::station::operator::settings::RolesSection;
use egui_kittest::kittest::{By, NodeT, Queryable};

use super::common::{TestDesk, desk};

const OFFICER_PASSWORD: &str = "officer-pass-7";

/// Everything the process logs through `tracing` (the station's crates at TRACE).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The process-wide log capture (installed once; the other desk tests log into it too).
fn captured() -> &'static Captured {
    static C: OnceLock<Captured> = OnceLock::new();
    C.get_or_init(|| {
        let c = Captured::default();
        let writer = c.clone();
        let filter = tracing_subscriber::EnvFilter::new("info,dps_station=trace,cryptoki=trace");
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .try_init()
            .expect("the only subscriber of the gui test binary");
        c
    })
}

/// The spy log: OpenSC's pkcs11-spy, loaded as the module in one test, logs every call into it.
fn spy_log() -> &'static Path {
    static LOG: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &LOG.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("pkcs11-spy.log");
        // SAFETY: set once, before any code of this process loads pkcs11-spy (the only reader).
        unsafe {
            std::env::set_var("PKCS11SPY", SOFTHSM_MODULE);
            std::env::set_var("PKCS11SPY_OUTPUT", &log);
        }
        (dir, log)
    })
    .1
}

struct Officer {
    d: TestDesk,
    token: String,
    reports: PathBuf,
    ledger: PathBuf,
}

/// A desk with officers olga and otto, olga signed in as officer, on the HSM screen, its own
/// fresh token listed and chosen.
fn officer_desk(dual_control: bool, idle_close: Duration) -> Officer {
    captured();
    let token = fresh_token().expect("a SoftHSM2 token");
    let roles = RolesSection {
        officers: vec!["olga".into(), "otto".into()],
        officer_password: Some(hash_password(OFFICER_PASSWORD).unwrap()),
        ..RolesSection::default()
    };
    let officer = OfficerSettings {
        idle_close,
        dual_control,
        ..OfficerSettings::default()
    };
    let mut d = desk(
        DemoDeskOptions {
            roles,
            officer,
            ..DemoDeskOptions::default()
        },
        None,
    );
    // Tall enough that every form of the screen is laid out without scrolling.
    d.harness.set_size(egui::Vec2::new(1280.0, 2600.0));
    let reports = d._workspace.station.reports.clone();
    let ledger = d._workspace.station.ledger.clone();
    d.sign_in("olga");
    d.harness
        .state()
        .station()
        .unlock(Role::Officer, OFFICER_PASSWORD)
        .unwrap();
    d.steps(3);
    d.click("HSM session");
    let line = format!("token \"{token}\"");
    wait_for(&mut d, "the token to be listed", |d| d.shows(&line));
    d.harness
        .query_all_by_label_contains(&line)
        .next()
        .unwrap()
        .click_accesskit();
    d.steps(3);
    Officer {
        d,
        token,
        reports,
        ledger,
    }
}

/// Steps frames until `done` holds (at most 30 s).
fn wait_for(d: &mut TestDesk, what: &str, done: impl Fn(&TestDesk) -> bool) {
    let start = Instant::now();
    while !done(d) {
        let labels: Vec<String> = d
            .harness
            .query_all(By::new())
            .filter_map(|n| n.accesskit_node().label().or(n.accesskit_node().value()))
            .collect();
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}; the desk shows {labels:?}"
        );
        d.harness.step();
        std::thread::sleep(Duration::from_millis(20));
    }
    d.steps(2);
}

fn type_into(d: &mut TestDesk, label: &str, text: &str) {
    d.harness.get_by_label(label).focus();
    d.steps(1);
    d.harness.get_by_label(label).type_text(text);
    d.steps(2);
}

/// Replaces the field's text with `text`, as a screen reader sets a value (a select-all typed
/// over raced the frame under a loaded test run).
fn replace_text(d: &mut TestDesk, label: &str, text: &str) {
    d.set_field(label, text);
}

fn open_session(o: &mut Officer, pin: &str) {
    type_into(&mut o.d, "User PIN", pin);
    o.d.click("Open session");
}

fn wait_open(o: &mut Officer) {
    let banner = format!("HSM session: olga on token \"{}\"", o.token);
    wait_for(&mut o.d, "the session banner", |d| d.shows(&banner));
}

fn openssl(args: &[&str]) -> String {
    let out = Command::new("openssl").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Splits the exported chain into the intermediate and root files.
fn split_chain(chain: &Path, dir: &Path) -> (PathBuf, PathBuf) {
    let text = std::fs::read_to_string(chain).unwrap();
    let certs: Vec<String> = text
        .split_inclusive("-----END CERTIFICATE-----\n")
        .map(str::to_owned)
        .collect();
    assert_eq!(certs.len(), 2, "{text}");
    let (inter, root) = (dir.join("intermediate.pem"), dir.join("root.pem"));
    std::fs::write(&inter, &certs[0]).unwrap();
    std::fs::write(&root, &certs[1]).unwrap();
    (inter, root)
}

#[test]
fn an_officer_creates_a_ca_signs_proof_of_possession_and_the_pin_is_nowhere() {
    let mut o = officer_desk(false, Duration::from_secs(600));
    open_session(&mut o, USER_PIN);
    wait_open(&mut o);
    assert!(o.d.shows("The token holds no keys"));

    o.d.click("Create CA hierarchy");
    wait_for(&mut o.d, "the CA hierarchy", |d| d.shows("created root"));
    // Both private keys are listed, sensitive and never extractable; nothing extractable.
    assert!(o.d.count("sensitive, never extractable") >= 2);
    assert!(!o.d.shows("▲ EXTRACTABLE"));
    assert!(o.d.shows("object=root-ca"));
    // Every operation is in the session's audit list as it happens.
    assert!(o.d.shows("hsm.key.generated"));
    assert!(o.d.shows("hsm.certificate.stored"));

    o.d.click("Export chain");
    wait_for(&mut o.d, "the chain export", |d| {
        d.shows("chain (intermediate-ca")
    });
    let tmp = tempfile::tempdir().unwrap();
    let (inter, root) = split_chain(&o.reports.join("ca-chain.pem"), tmp.path());
    let verified = openssl(&[
        "verify",
        "-CAfile",
        &root.display().to_string(),
        &inter.display().to_string(),
    ]);
    assert!(verified.contains(": OK"), "{verified}");

    // A code with characters DPS never issues is refused before the token is used.
    type_into(&mut o.d, "Verification code", "12AB-34CD");
    assert!(o.d.shows("letters and digits only"));
    o.d.click("Sign verification certificate");
    wait_for(&mut o.d, "the refusal", |d| {
        d.shows("letters and digits only (no spaces")
    });
    assert!(!o.reports.join("verification-certificate.pem").exists());

    let code = "1B2C3D4E5F60718293A4B5C6D7E8F901122334455667788A";
    replace_text(&mut o.d, "Verification code", code);
    o.d.click("Sign verification certificate");
    wait_for(&mut o.d, "the verification certificate", |d| {
        d.shows("az iot dps certificate verify")
    });
    let pop = o.reports.join("verification-certificate.pem");
    let subject = openssl(&[
        "x509",
        "-in",
        &pop.display().to_string(),
        "-noout",
        "-subject",
    ]);
    assert!(subject.contains(&format!("CN = {code}")), "{subject}");
    let verified = openssl(&[
        "verify",
        "-CAfile",
        &root.display().to_string(),
        &pop.display().to_string(),
    ]);
    assert!(verified.contains(": OK"), "{verified}");
    assert!(o.d.shows("hsm.verification_certificate.signed"));

    // The README's screenshot: DPS_STATION_OFFICER_PNG=docs/screenshots/officer-session.png.
    if let Ok(path) = std::env::var("DPS_STATION_OFFICER_PNG") {
        o.d.harness.set_size(egui::Vec2::new(1280.0, 1500.0));
        o.d.steps(3);
        o.d.harness.render().unwrap().save(path).unwrap();
        o.d.harness.set_size(egui::Vec2::new(1280.0, 2600.0));
        o.d.steps(3);
    }

    o.d.click("Close session");
    wait_for(&mut o.d, "the session to close", |d| {
        d.shows("Session closed")
    });
    assert!(!o.d.shows("HSM session: olga"));
    let sessions = Ledger::open_read_only(&o.ledger)
        .unwrap()
        .key_sessions()
        .unwrap();
    let ours = sessions.iter().find(|s| s.token_label == o.token).unwrap();
    assert_eq!(ours.operator, "olga");
    assert!(ours.closed_at.is_some());

    // The PIN, raw, hex or base64, is in no log line and nowhere in the ledger's files.
    let forms = [
        USER_PIN.to_owned(),
        hex::encode(USER_PIN),
        hex::encode_upper(USER_PIN),
        base64::engine::general_purpose::STANDARD.encode(USER_PIN),
    ];
    let log = String::from_utf8_lossy(&captured().0.lock().unwrap()).into_owned();
    assert!(
        log.contains("key-injection session opened"),
        "the capture works"
    );
    for form in &forms {
        assert!(
            !log.contains(form.as_str()),
            "the log holds the PIN as {form}"
        );
    }
    assert!(o.ledger.is_file(), "{} is the ledger", o.ledger.display());
    for file in ["ledger.db", "ledger.db-wal"] {
        let path = o.ledger.with_file_name(file);
        // The WAL may have been checkpointed away; the main file is always there.
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        for form in &forms {
            assert!(
                !bytes.windows(form.len()).any(|w| w == form.as_bytes()),
                "{} holds the PIN as {form}",
                path.display()
            );
        }
    }
}

#[test]
fn a_wrong_pin_is_presented_once_and_says_tokens_lock() {
    let spy = Path::new("/usr/lib/x86_64-linux-gnu/pkcs11-spy.so");
    assert!(
        spy.is_file(),
        "opensc's pkcs11-spy.so is needed for this test"
    );
    let log = spy_log();
    let mut o = officer_desk(false, Duration::from_secs(600));
    // The module field: the only path field on the screen before a session opens.
    let module_field = |n: &egui_kittest::kittest::AccessKitNode<'_>| {
        n.placeholder() == Some("a path, or Browse…")
    };
    o.d.harness.get_by(module_field).focus();
    o.d.steps(1);
    o.d.harness
        .get_by(module_field)
        .type_text(&spy.display().to_string());
    o.d.steps(2);
    open_session(&mut o, "not-the-pin");
    wait_for(&mut o.d, "the refusal", |d| d.shows("wrong user PIN"));
    let shown: Vec<String> =
        o.d.harness
            .query_all_by_label_contains("wrong user PIN")
            .filter_map(|n| n.accesskit_node().label().or(n.accesskit_node().value()))
            .collect();
    let text = shown.join("\n");
    assert!(text.contains(&o.token) && text.contains("lock"), "{text}");
    assert!(!text.contains("not-the-pin"));
    let calls = std::fs::read_to_string(log).unwrap();
    assert_eq!(
        calls.matches("C_Login").count(),
        1,
        "exactly one login:\n{calls}"
    );
    assert!(!o.d.shows("HSM session: olga"));
    // The field was emptied: a second click does not present it again.
    o.d.click("Open session");
    assert!(o.d.shows("Type the token's user PIN"));
    let calls = std::fs::read_to_string(log).unwrap();
    assert_eq!(
        calls.matches("C_Login").count(),
        1,
        "still one login:\n{calls}"
    );
}

#[test]
fn an_idle_session_closes_and_logs_out() {
    let mut o = officer_desk(false, Duration::from_secs(2));
    open_session(&mut o, USER_PIN);
    wait_open(&mut o);
    // The banner is on every screen while open.
    o.d.click("Line");
    assert!(o.d.shows("HSM session: olga"));
    wait_for(&mut o.d, "the idle close", |d| {
        !d.shows("HSM session: olga")
    });
    let sessions = Ledger::open_read_only(&o.ledger)
        .unwrap()
        .key_sessions()
        .unwrap();
    let ours = sessions.iter().find(|s| s.token_label == o.token).unwrap();
    assert!(ours.closed_at.is_some(), "the session record is closed");
    // Logged out: a new session of this process on the token is a public one.
    let ctx = shared_context(Path::new(SOFTHSM_MODULE)).unwrap();
    let slot = ctx
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| {
            ctx.get_token_info(*s)
                .is_ok_and(|t| t.label().trim_end() == o.token)
        })
        .unwrap();
    let session = ctx.open_ro_session(slot).unwrap();
    let state = session.get_session_info().unwrap().session_state();
    assert_eq!(state, cryptoki::session::SessionState::RoPublic);
    o.d.click("HSM session");
    assert!(o.d.shows("Session closed after the idle time"));
}

#[test]
fn dual_control_refuses_a_single_officer() {
    let mut o = officer_desk(true, Duration::from_secs(600));
    open_session(&mut o, USER_PIN);
    wait_open(&mut o);
    o.d.click("Create CA hierarchy");
    wait_for(&mut o.d, "the refusal", |d| d.shows("dual control is on"));
    // Olga cannot be her own second officer.
    type_into(&mut o.d, "Second officer", "olga");
    type_into(&mut o.d, "Second officer's password", OFFICER_PASSWORD);
    o.d.click("Create CA hierarchy");
    wait_for(&mut o.d, "the refusal", |d| {
        d.shows("already runs this session")
    });
    assert!(o.d.shows("The token holds no keys"));
    // Otto, with the password: it runs, and both names are in the audit rows.
    replace_text(&mut o.d, "Second officer", "otto");
    type_into(&mut o.d, "Second officer's password", OFFICER_PASSWORD);
    o.d.click("Create CA hierarchy");
    wait_for(&mut o.d, "the CA hierarchy", |d| d.shows("created root"));
    assert!(o.d.shows("olga + otto"));
}

#[test]
fn an_officer_imports_an_encrypted_ca_key_and_creates_a_group_key() {
    let mut o = officer_desk(false, Duration::from_secs(600));
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("site-ca.key.pem");
    openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-aes256",
        "-pass",
        "pass:site-pass-9",
        "-out",
        &key.display().to_string(),
    ]);
    let before = std::fs::read(&key).unwrap();
    open_session(&mut o, USER_PIN);
    wait_open(&mut o);

    type_into(&mut o.d, "Label for the imported key", "site-ca");
    // The key file field: the only empty path field of the session's forms.
    let key_field = |n: &egui_kittest::kittest::AccessKitNode<'_>| {
        n.placeholder() == Some("a path, or Browse…") && n.value().is_none_or(|v| v.is_empty())
    };
    o.d.harness.get_by(key_field).focus();
    o.d.steps(1);
    o.d.harness
        .get_by(key_field)
        .type_text(&key.display().to_string());
    o.d.steps(2);
    // Without its passphrase, the encrypted key is refused with what to do.
    o.d.click("Import CA key");
    wait_for(&mut o.d, "the refusal", |d| d.shows("enter its passphrase"));
    type_into(&mut o.d, "Key file passphrase", "site-pass-9");
    o.d.click("Import CA key");
    wait_for(&mut o.d, "the import", |d| d.shows("imported pkcs11:"));
    assert!(o.d.shows("hsm.key.imported"));
    assert_eq!(
        std::fs::read(&key).unwrap(),
        before,
        "the key file is untouched"
    );

    type_into(&mut o.d, "Group key label", "line-3-group");
    o.d.click("Create group key");
    wait_for(&mut o.d, "the group key", |d| d.shows("created pkcs11:"));
    assert!(o.d.shows("group key (HMAC)"));
    // The group key was made in the token: never extractable; the imported key is sensitive and
    // not extractable, and said to have been outside the token once.
    assert_eq!(o.d.count("sensitive, never extractable"), 1);
    assert_eq!(o.d.count("sensitive, not extractable (imported"), 1);
    assert!(!o.d.shows("▲ EXTRACTABLE"));
    let log = String::from_utf8_lossy(&captured().0.lock().unwrap()).into_owned();
    assert!(!log.contains("site-pass-9"), "the passphrase is in the log");
}

#[test]
fn closing_the_window_logs_out_and_closes_the_session_record() {
    let mut o = officer_desk(false, Duration::from_secs(600));
    open_session(&mut o, USER_PIN);
    wait_open(&mut o);
    let open = Ledger::open_read_only(&o.ledger)
        .unwrap()
        .key_sessions()
        .unwrap();
    assert!(
        open.iter()
            .any(|s| s.token_label == o.token && s.closed_at.is_none()),
        "the ledger records the open session"
    );
    assert!(!o.d.close_window(), "a desk outside kiosk mode closes");
    // `on_exit` waited for the logout and the record before the window went.
    let sessions = Ledger::open_read_only(&o.ledger)
        .unwrap()
        .key_sessions()
        .unwrap();
    let ours = sessions.iter().find(|s| s.token_label == o.token).unwrap();
    assert!(ours.closed_at.is_some(), "the session record is closed");
}
