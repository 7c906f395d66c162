//! The SoftHSM2 harness: one temp token directory and config for the whole test process (SoftHSM2
//! reads SOFTHSM2_CONF once, at C_Initialize, which happens once per process), and a fresh token,
//! with its own label, per test.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use std::sync::atomic::{AtomicUsize, Ordering};

use dps_station::keystore::pkcs11::{Pkcs11Config, Pkcs11KeyStore, TokenSelector, shared_context};
use dps_station::keystore::profile::HsmProfile;
use dps_station::secret::SecretString;

pub const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
pub const SO_PIN: &str = "12345678";
pub const USER_PIN: &str = "4711-user";

struct Harness {
    _dir: tempfile::TempDir,
    conf: PathBuf,
    spy_log: PathBuf,
}

fn harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let tokens = dir.path().join("tokens");
        std::fs::create_dir(&tokens).unwrap();
        let conf = dir.path().join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
                tokens.display()
            ),
        )
        .unwrap();
        let spy_log = dir.path().join("pkcs11-spy.log");
        // SAFETY: set once, inside this OnceLock, which every test passes through before it loads
        // a module or starts a process (the only readers of the environment here), so no thread
        // reads the environment while it changes. SOFTHSM2_CONF is read by SoftHSM2's
        // C_Initialize; PKCS11SPY* only by OpenSC's pkcs11-spy when a test loads it.
        unsafe {
            std::env::set_var("SOFTHSM2_CONF", &conf);
            std::env::set_var("PKCS11SPY", MODULE);
            std::env::set_var("PKCS11SPY_OUTPUT", &spy_log);
        }
        Harness {
            _dir: dir,
            conf,
            spy_log,
        }
    })
}

/// Where OpenSC's pkcs11-spy (loaded by one test in place of SoftHSM2) logs every PKCS#11 call.
pub fn spy_log() -> &'static Path {
    &harness().spy_log
}

/// The config file, for the command-line tools.
pub fn conf() -> &'static Path {
    &harness().conf
}

/// Held while a token is being initialised: SoftHSM2 answers CKR_GENERAL_ERROR to a slot
/// enumeration that meets a token half-way through C_InitToken.
static INIT: Mutex<()> = Mutex::new(());

/// The slot of the token labelled `label` (found while no token is being initialised).
pub fn slot_of(label: &str) -> cryptoki::slot::Slot {
    let _guard = INIT.lock().unwrap_or_else(|e| e.into_inner());
    let ctx = shared_context(Path::new(MODULE)).unwrap();
    find_slot(&ctx, |t| t.label().trim_end() == label)
        .unwrap_or_else(|| panic!("no token labelled {label}"))
}

/// The first slot whose token satisfies `wanted`, through the key store's own bounded rescan.
fn find_slot(
    ctx: &cryptoki::context::Pkcs11,
    wanted: impl Fn(&cryptoki::slot::TokenInfo) -> bool,
) -> Option<cryptoki::slot::Slot> {
    dps_station::keystore::pkcs11::token::find_slot_where(ctx, Path::new(MODULE), 50, wanted)
        .unwrap()
}

/// A new token named after the test, with SO PIN [`SO_PIN`] and user PIN [`USER_PIN`].
///
/// SoftHSM2 2.6 scans its token directory only at C_Initialize: a token that `softhsm2-util` (another
/// process) creates later stays invisible to this process. So tokens are initialised here, through
/// the same module instance, on its free slot (C_InitToken, then C_InitPIN as the SO), which is what
/// `softhsm2-util --init-token` does itself. The token is written to disk at once, so `pkcs11-tool`
/// in a separate process sees it and its objects.
pub fn fresh_token(name: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    harness();
    let label = format!("{name}-{}", N.fetch_add(1, Ordering::SeqCst));
    assert!(label.len() <= 32, "token label too long: {label}");
    // One free slot at a time: two tests must not initialise the same one.
    let _guard = INIT.lock().unwrap_or_else(|e| e.into_inner());
    let ctx = shared_context(Path::new(MODULE)).unwrap();
    let free = find_slot(&ctx, |t| !t.token_initialized())
        .expect("SoftHSM2 always offers one uninitialised slot");
    ctx.init_token(free, &AuthPin::from(SO_PIN.to_owned()), &label)
        .unwrap();
    // Slots are renumbered after C_InitToken: find the new token by its label.
    let slot = find_slot(&ctx, |t| {
        t.token_initialized() && t.label().trim_end() == label
    })
    .unwrap_or_else(|| panic!("the token {label} just initialised is not listed"));
    let session = ctx.open_rw_session(slot).unwrap();
    session
        .login(UserType::So, Some(&AuthPin::from(SO_PIN.to_owned())))
        .unwrap();
    session
        .init_pin(&AuthPin::from(USER_PIN.to_owned()))
        .unwrap();
    session.logout().unwrap();
    label
}

pub fn softhsm_config(label: &str) -> Pkcs11Config {
    harness();
    Pkcs11Config {
        profile: HsmProfile::built_in("softhsm2").unwrap(),
        module: Some(PathBuf::from(MODULE)),
        token: TokenSelector::Label(label.to_owned()),
        sessions: Some(4),
    }
}

/// A fresh token, opened and logged in.
pub fn open_fresh(name: &str) -> (String, std::sync::Arc<Pkcs11KeyStore>) {
    let label = fresh_token(name);
    let store = Pkcs11KeyStore::open(&softhsm_config(&label), SecretString::new(USER_PIN)).unwrap();
    (label, store)
}

/// `pkcs11-tool --list-objects` on the token, logged in, as text.
pub fn pkcs11_tool_list(label: &str) -> String {
    let out = Command::new("pkcs11-tool")
        .env("SOFTHSM2_CONF", conf())
        .args([
            "--module",
            MODULE,
            "--token-label",
            label,
            "--login",
            "--pin",
            USER_PIN,
            "--list-objects",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pkcs11-tool: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
