//! `dps-station hsm …`: HSM profiles, tokens and keys. Every command that creates, imports or uses a
//! key runs inside a key-injection session recorded in the ledger (operator from `--operator` or
//! `$USER`). The PIN comes from `DPS_STATION_HSM_PIN`, `--pin-file` or a prompt, never from argv.

/// `println!` that does not panic when stdout is closed early (`dps-station hsm profiles | head`):
/// there is nobody left to tell, so the write error is dropped.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use clap::{Args, Subcommand};

use dps_station::identity::pem;
use dps_station::identity::profile::{CaProfile, Validity};
use dps_station::identity::symmetric::KeyFingerprint;
use dps_station::keystore::import::parse_p256_private_key;
use dps_station::keystore::pin::{self, obtain_pin};
use dps_station::keystore::pkcs11::{self as p11, Pkcs11Config, Pkcs11KeyStore, TokenSelector};
use dps_station::keystore::profile::HsmProfile;
use dps_station::keystore::software::NOT_IN_HSM_NOTICE;
use dps_station::keystore::software_store::SoftwareKeyStore;
use dps_station::keystore::{KeyKind, KeyStore, Pkcs11Uri};
use dps_station::ledger::{self, CaRole, Ledger, WriterIdentity};
use dps_station::secret::{SecretBytes, SecretString};
use dps_station::station::key_session::{
    CaHierarchyRequest, KeyInjectionSession, chain_pem, default_key_id,
};

/// The `hsm` command group.
#[derive(Debug, Subcommand)]
pub enum Commands {
    /// HSM key store: profiles, tokens, CA keys and group keys (key-injection sessions).
    Hsm(Box<HsmArgs>),
}

/// Which HSM, which token, and the `hsm` subcommand.
#[derive(Debug, Args)]
pub struct HsmArgs {
    #[command(flatten)]
    token: TokenArgs,
    #[command(flatten)]
    session: SessionArgs,
    #[command(subcommand)]
    command: HsmCommand,
}

/// How to reach the token.
#[derive(Debug, Args)]
struct TokenArgs {
    /// HSM profile (`hsm profiles` lists them): softhsm2, yubihsm2, nitrokey-hsm2, thales-luna, aws-cloudhsm, utimaco, generic.
    #[arg(long, env = "DPS_STATION_HSM_PROFILE", global = true)]
    profile: Option<String>,
    /// A site's own profile file instead of a built-in one.
    #[arg(
        long,
        env = "DPS_STATION_HSM_PROFILE_FILE",
        global = true,
        value_name = "PATH"
    )]
    profile_file: Option<PathBuf>,
    /// The PKCS#11 module, overriding the profile's list of paths.
    #[arg(
        long,
        env = "DPS_STATION_HSM_MODULE",
        global = true,
        value_name = "PATH"
    )]
    module: Option<PathBuf>,
    /// The token's label.
    #[arg(
        long,
        env = "DPS_STATION_HSM_TOKEN",
        global = true,
        value_name = "LABEL"
    )]
    token: Option<String>,
    /// The token's serial number (when several tokens share a label).
    #[arg(long, global = true, value_name = "SERIAL")]
    token_serial: Option<String>,
    /// A file holding the user PIN (else $DPS_STATION_HSM_PIN, else a prompt).
    #[arg(
        long,
        env = "DPS_STATION_HSM_PIN_FILE",
        global = true,
        value_name = "PATH"
    )]
    pin_file: Option<PathBuf>,
    /// Development only: keep keys as files in this directory instead of an HSM. Never implied:
    /// it must be given explicitly, and cannot be combined with --profile/--token.
    #[arg(long, global = true, value_name = "DIR", conflicts_with_all = ["profile", "profile_file", "module", "token", "token_serial"])]
    software_dir: Option<PathBuf>,
}

/// Who runs a key-injection session, and where it is recorded.
#[derive(Debug, Args)]
struct SessionArgs {
    /// The security officer running the session [default: $USER].
    #[arg(long, env = "DPS_STATION_OPERATOR", global = true)]
    operator: Option<String>,
    /// The ledger file [default: $XDG_DATA_HOME/dps-station/ledger.db].
    #[arg(long, env = "DPS_STATION_LEDGER", global = true, value_name = "PATH")]
    ledger: Option<PathBuf>,
    /// The station name recorded as the writer [default: the host name].
    #[arg(long, env = "DPS_STATION_NAME", global = true)]
    station: Option<String>,
}

#[derive(Debug, Subcommand)]
enum HsmCommand {
    /// List the HSM profiles and whether each one's PKCS#11 module is installed here.
    Profiles,
    /// List the tokens of the profile's module, and the keys and certificates on the selected token.
    List,
    /// Create a root and an intermediate CA in the token: key pairs, self-signed root, intermediate
    /// signed in the HSM; certificates stored on the token and in the ledger.
    InitCa {
        /// Label of the root key pair and certificate on the token (and its name in the ledger).
        #[arg(long, default_value = "root-ca")]
        root_label: String,
        /// Label of the intermediate.
        #[arg(long, default_value = "intermediate-ca")]
        intermediate_label: String,
        /// Subject CN of the root certificate.
        #[arg(long, default_value = "dps-station Root CA")]
        root_cn: String,
        /// Subject CN of the intermediate certificate.
        #[arg(long, default_value = "dps-station Intermediate CA")]
        intermediate_cn: String,
        /// Subject O of both certificates.
        #[arg(long)]
        organization: Option<String>,
        /// Root validity in days.
        #[arg(long, default_value_t = 3652)]
        root_days: i64,
        /// Intermediate validity in days.
        #[arg(long, default_value_t = 1826)]
        intermediate_days: i64,
    },
    /// Write the certificate chain stored on the token as PEM (intermediate first, then root).
    ExportChain {
        /// Label of the root certificate on the token.
        #[arg(long, default_value = "root-ca")]
        root_label: String,
        /// Label of the intermediate certificate on the token.
        #[arg(long, default_value = "intermediate-ca")]
        intermediate_label: String,
        /// Output file [default: stdout].
        #[arg(long, short, value_name = "PATH")]
        out: Option<PathBuf>,
    },
    /// Make the DPS proof-of-possession certificate: CN = the verification code, signed by the CA key.
    PoeCert {
        /// The CA key's PKCS#11 URI (its certificate must be on the token with the same label/id).
        #[arg(long, value_name = "URI")]
        ca: Pkcs11Uri,
        /// The verification code DPS shows for the uploaded CA certificate.
        #[arg(long)]
        code: String,
        /// Output file (PEM) [default: stdout].
        #[arg(long, short, value_name = "PATH")]
        out: Option<PathBuf>,
        /// Validity in days.
        #[arg(long, default_value_t = 30)]
        days: i64,
    },
    /// Symmetric enrollment-group keys: create, import, derive device keys (all inside the token).
    GroupKey {
        #[command(subcommand)]
        command: GroupKeyCommand,
    },
    /// Import an existing CA private key (PKCS#8 PEM/DER, encrypted PKCS#8 accepted, or SEC1 PEM).
    ImportKey {
        /// Label for the key on the token.
        #[arg(long)]
        label: String,
        /// CKA_ID in hex [default: derived from the label].
        #[arg(long)]
        id: Option<String>,
        /// The key file. A passphrase comes from DPS_STATION_KEY_PASSPHRASE or a prompt.
        #[arg(long, value_name = "PATH")]
        key_file: PathBuf,
        /// The key's CA certificate, to store on the token and in the ledger with it.
        #[arg(long, value_name = "PATH")]
        certificate: Option<PathBuf>,
        /// The certificate's place in the chain.
        #[arg(long, default_value = "intermediate", requires = "certificate")]
        role: CaRole,
    },
}

#[derive(Debug, Subcommand)]
enum GroupKeyCommand {
    /// Generate a 64-byte group key inside the token (it never leaves it).
    Create {
        /// Label for the key on the token.
        #[arg(long)]
        label: String,
        /// CKA_ID in hex [default: derived from the label].
        #[arg(long)]
        id: Option<String>,
    },
    /// Import a group key that DPS or another site made (base64). It ends non-extractable.
    Import {
        /// Label for the key on the token.
        #[arg(long)]
        label: String,
        /// CKA_ID in hex [default: derived from the label].
        #[arg(long)]
        id: Option<String>,
        /// A file holding the base64 group key [default: $DPS_STATION_GROUP_KEY, else a prompt].
        #[arg(long, value_name = "PATH")]
        key_file: Option<PathBuf>,
    },
    /// Compute a device's key from the group key inside the token:
    /// base64(HMAC-SHA256(groupKey, registrationId)). Prints its fingerprint, never the key.
    Derive {
        /// The group key's PKCS#11 URI.
        #[arg(long, value_name = "URI")]
        key: Pkcs11Uri,
        /// The device's registration ID.
        #[arg(long)]
        registration_id: String,
        /// Write the derived device key (base64) to this file, mode 0600, for injection.
        #[arg(long, value_name = "PATH")]
        out: Option<PathBuf>,
    },
}

/// Runs an `hsm` command.
pub fn run(cmd: Commands) -> anyhow::Result<ExitCode> {
    let Commands::Hsm(args) = cmd;
    let args = *args;
    match args.command {
        HsmCommand::Profiles => profiles(),
        HsmCommand::List => list(&args.token),
        HsmCommand::ExportChain {
            root_label,
            intermediate_label,
            out,
        } => export_chain(
            &args.token,
            &root_label,
            &intermediate_label,
            out.as_deref(),
        ),
        HsmCommand::InitCa {
            root_label,
            intermediate_label,
            root_cn,
            intermediate_cn,
            organization,
            root_days,
            intermediate_days,
        } => {
            let mut root_profile = CaProfile::root(root_cn)?;
            root_profile.validity = Validity::days_from_now(root_days)?;
            root_profile.subject.organization = organization.clone();
            let mut intermediate_profile = CaProfile::intermediate(intermediate_cn)?;
            intermediate_profile.validity = Validity::days_from_now(intermediate_days)?;
            intermediate_profile.subject.organization = organization;
            let request = CaHierarchyRequest {
                root_id: default_id(&root_label),
                root_label,
                root_profile,
                intermediate_id: default_id(&intermediate_label),
                intermediate_label,
                intermediate_profile,
            };
            in_session(&args.token, &args.session, |s| {
                let ca = s.init_ca(&request)?;
                say!("root key          {}", ca.root_key);
                say!(
                    "root certificate  {} (sha256 {})",
                    ca.root.info.subject_name,
                    ca.root.info.sha256_thumbprint
                );
                say!("intermediate key  {}", ca.intermediate_key);
                say!(
                    "intermediate cert {} (sha256 {})",
                    ca.intermediate.info.subject_name,
                    ca.intermediate.info.sha256_thumbprint
                );
                say!(
                    "both certificates are stored on the token and in the ledger; `dps-station hsm export-chain` writes them as PEM"
                );
                Ok(())
            })
        }
        HsmCommand::PoeCert {
            ca,
            code,
            out,
            days,
        } => {
            let validity = Validity::days_from_now(days)?;
            in_session(&args.token, &args.session, |s| {
                let cert = s.verification_certificate(&ca, &code, &validity)?;
                write_output(out.as_deref(), cert.pem().as_bytes(), false)?;
                eprintln!(
                    "verification certificate for code {} signed by {ca}",
                    code.trim()
                );
                Ok(())
            })
        }
        HsmCommand::ImportKey {
            label,
            id,
            key_file,
            certificate,
            role,
        } => {
            let id = parse_id(id.as_deref(), &label)?;
            let bytes = zeroize::Zeroizing::new(
                std::fs::read(&key_file)
                    .with_context(|| format!("cannot read key file {}", key_file.display()))?,
            );
            let origin = key_file.display().to_string();
            let scalar = match parse_p256_private_key(&origin, &bytes, None) {
                Ok(s) => s,
                Err(dps_station::keystore::import::ImportError::NeedsPassphrase { .. }) => {
                    let pass = match std::env::var("DPS_STATION_KEY_PASSPHRASE") {
                        Ok(p) => SecretString::new(p),
                        Err(_) => pin::prompt_hidden(&format!("passphrase for {origin}: "))?,
                    };
                    parse_p256_private_key(&origin, &bytes, Some(&pass))?
                }
                Err(e) => return Err(e.into()),
            };
            let cert_der = match &certificate {
                Some(path) => Some(read_certificate(path)?),
                None => None,
            };
            in_session(&args.token, &args.session, |s| {
                let uri = s.import_ca_key(&label, &id, &scalar, &origin)?;
                say!("imported {uri}");
                if let Some(der) = &cert_der {
                    let cert_uri = s.store_ca_certificate(&label, &id, role, &uri, der)?;
                    say!("certificate stored as {cert_uri} and in the ledger");
                }
                say!(
                    "the key file {origin} still holds the key: destroy it once the import is verified"
                );
                Ok(())
            })
        }
        HsmCommand::GroupKey { command } => group_key(&args.token, &args.session, command),
    }
}

fn group_key(
    token: &TokenArgs,
    session: &SessionArgs,
    command: GroupKeyCommand,
) -> anyhow::Result<ExitCode> {
    match command {
        GroupKeyCommand::Create { label, id } => {
            let id = parse_id(id.as_deref(), &label)?;
            in_session(token, session, |s| {
                let uri = s.generate_group_key(&label, &id)?;
                say!("created {uri}");
                Ok(())
            })
        }
        GroupKeyCommand::Import {
            label,
            id,
            key_file,
        } => {
            let id = parse_id(id.as_deref(), &label)?;
            let text = match &key_file {
                Some(path) => {
                    SecretString::new(std::fs::read_to_string(path).with_context(|| {
                        format!("cannot read group key file {}", path.display())
                    })?)
                }
                None => match std::env::var("DPS_STATION_GROUP_KEY") {
                    Ok(v) => SecretString::new(v),
                    Err(_) => pin::prompt_hidden("group key (base64): ")?,
                },
            };
            let raw = STANDARD
                .decode(text.expose().trim())
                .map(SecretBytes::new)
                .map_err(|_| {
                    anyhow::anyhow!(
                        "the group key is not valid base64 (DPS shows group keys in base64)"
                    )
                })?;
            in_session(token, session, |s| {
                let uri = s.import_group_key(&label, &id, &raw)?;
                say!(
                    "imported {uri} (fingerprint {})",
                    KeyFingerprint::of_key_bytes(&raw).as_str()
                );
                Ok(())
            })
        }
        GroupKeyCommand::Derive {
            key,
            registration_id,
            out,
        } => {
            dps_station::identity::registration_id::validate(
                &registration_id,
                dps_station::identity::registration_id::IdUse::Any,
            )?;
            in_session(token, session, |s| {
                let device_key = s.derive_device_key(&key, &registration_id)?;
                let fingerprint = KeyFingerprint::of_base64_key(&device_key)?;
                if let Some(path) = &out {
                    write_output(
                        Some(path),
                        format!("{}\n", device_key.expose()).as_bytes(),
                        true,
                    )?;
                    say!(
                        "device key for {registration_id} written to {} (fingerprint {})",
                        path.display(),
                        fingerprint.as_str()
                    );
                } else {
                    say!(
                        "device key for {registration_id}: fingerprint {} (use --out to write the key for injection)",
                        fingerprint.as_str()
                    );
                }
                Ok(())
            })
        }
    }
}

/// A key's CKA_ID: the given hex, or the first 8 bytes of SHA-256 of its label (stable, distinct).
fn default_id(label: &str) -> Vec<u8> {
    default_key_id(label)
}

fn parse_id(id: Option<&str>, label: &str) -> anyhow::Result<Vec<u8>> {
    match id {
        Some(hex_id) => {
            let bytes = hex::decode(hex_id.trim_start_matches("0x"))
                .with_context(|| format!("--id {hex_id} is not hex (e.g. --id 01a2)"))?;
            if bytes.is_empty() {
                bail!("--id must not be empty");
            }
            Ok(bytes)
        }
        None => Ok(default_id(label)),
    }
}

fn read_certificate(path: &Path) -> anyhow::Result<Vec<u8>> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read certificate {}", path.display()))?;
    pem::der_from_pem_or_der(&bytes, &[pem::label::CERTIFICATE])
        .with_context(|| format!("{} is not a PEM or DER certificate", path.display()))
}

fn write_output(out: Option<&Path>, bytes: &[u8], secret: bool) -> anyhow::Result<()> {
    match out {
        None => {
            std::io::stdout()
                .write_all(bytes)
                .context("cannot write to stdout")?;
        }
        Some(path) => {
            use std::os::unix::fs::OpenOptionsExt;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            if secret {
                options.mode(0o600);
            }
            let mut file = options
                .open(path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            file.write_all(bytes)
                .with_context(|| format!("cannot write {}", path.display()))?;
            file.sync_all()
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
    }
    Ok(())
}

fn load_profile(token: &TokenArgs) -> anyhow::Result<HsmProfile> {
    Ok(match (&token.profile_file, &token.profile) {
        (Some(path), _) => HsmProfile::from_file(path)?,
        (None, Some(name)) => HsmProfile::built_in(name)?,
        (None, None) => bail!(
            "no HSM profile given: pass --profile <name> or set DPS_STATION_HSM_PROFILE (`dps-station hsm profiles` lists them)"
        ),
    })
}

fn selector(token: &TokenArgs) -> anyhow::Result<TokenSelector> {
    Ok(match (&token.token, &token.token_serial) {
        (_, Some(serial)) => TokenSelector::Serial(serial.clone()),
        (Some(label), None) => TokenSelector::Label(label.clone()),
        (None, None) => bail!(
            "no token given: pass --token <label> (or --token-serial), or set DPS_STATION_HSM_TOKEN; `dps-station hsm list` shows the tokens"
        ),
    })
}

/// Opens the key store the arguments name: the software directory if (and only if) one was
/// given, else the PKCS#11 token.
fn open_any(token: &TokenArgs) -> anyhow::Result<Arc<dyn KeyStore>> {
    if let Some(dir) = &token.software_dir {
        let store = SoftwareKeyStore::open(dir)?;
        eprintln!("note: {NOT_IN_HSM_NOTICE} (keys in {})", dir.display());
        return Ok(store);
    }
    Ok(open_store(token)?)
}

/// Opens the token and logs in (the PIN is asked for once, and presented once).
fn open_store(token: &TokenArgs) -> anyhow::Result<Arc<Pkcs11KeyStore>> {
    let profile = load_profile(token)?;
    let config = Pkcs11Config {
        token: selector(token)?,
        module: token.module.clone(),
        sessions: None,
        profile,
    };
    let label = match &config.token {
        TokenSelector::Label(l) => l.clone(),
        TokenSelector::Serial(s) => format!("serial {s}"),
    };
    let pin = obtain_pin(
        token.pin_file.as_deref(),
        &format!(
            "user PIN for token {label} ({}): ",
            config.profile.login.pin_hint
        ),
    )?;
    let store = Pkcs11KeyStore::open(&config, pin)?;
    if !store.token().hardware {
        eprintln!(
            "note: token \"{}\" is a software token ({}): its keys are NOT in a hardware HSM; use it for development only",
            store.token().label,
            config.profile.display_name
        );
    }
    Ok(store)
}

/// Opens the token and the ledger, runs `f` in a key-injection session, and closes the session
/// (logout + ledger record) whatever `f` returned.
fn in_session(
    token: &TokenArgs,
    session: &SessionArgs,
    f: impl FnOnce(&mut KeyInjectionSession<'_>) -> anyhow::Result<()>,
) -> anyhow::Result<ExitCode> {
    let operator = session
        .operator
        .clone()
        .or_else(|| std::env::var("USER").ok())
        .filter(|o| !o.trim().is_empty())
        .context("no operator: pass --operator <name> (or set $USER); key-injection sessions record who ran them")?;
    let path = match &session.ledger {
        Some(p) => p.clone(),
        None => ledger::default_path()
            .context("no ledger path: pass --ledger <path> or set DPS_STATION_LEDGER")?,
    };
    let writer = WriterIdentity {
        station: session
            .station
            .clone()
            .unwrap_or_else(ledger::lock::host_name),
        operator: operator.clone(),
    };
    let mut ledger = Ledger::open(&path, &writer)?;
    let store = open_any(token)?;
    let mut s = KeyInjectionSession::open(&mut ledger, store, &operator)?;
    let result = f(&mut s);
    let closed = s.close();
    result?;
    closed?;
    Ok(ExitCode::SUCCESS)
}

fn profiles() -> anyhow::Result<ExitCode> {
    match dps_station::keystore::profile::profile_dir() {
        Some(dir) => say!("profiles from {}\n", dir.display()),
        None => say!("profiles built into this binary (no profile directory found)\n"),
    }
    for p in HsmProfile::all_built_in()? {
        let status = match p.installed_module() {
            Some(path) => format!("installed: {}", path.display()),
            None if p.module_candidates().is_empty() => "no default path: pass --module".to_owned(),
            None => format!(
                "not installed (looked for {})",
                p.module_candidates()
                    .iter()
                    .map(|m| m.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        say!("{:<14} {}", p.name, p.display_name);
        say!("  module      {status}");
        say!(
            "  mechanisms  ECDSA-SHA256 in token: {}; HMAC group keys: {}; key import: {}",
            yes_no(p.mechanisms.ecdsa_sha256),
            yes_no(p.mechanisms.sha256_hmac && p.mechanisms.generic_secret_key_gen),
            yes_no(p.mechanisms.import_private_keys)
        );
        let keep_alive = if p.sessions.keep_alive_secs > 0 {
            format!("every {} s", p.sessions.keep_alive_secs)
        } else {
            "not needed".to_owned()
        };
        say!(
            "  sessions    up to {}; keep-alive {keep_alive}",
            p.sessions.max_sessions
        );
        say!("  PIN         {}", p.login.pin_hint);
        for line in p.operator.notes.lines().filter(|l| !l.trim().is_empty()) {
            say!("  note        {}", line.trim());
        }
        if !p.hardware {
            say!("  note        software token: keys are NOT in a hardware HSM");
        }
        say!();
    }
    Ok(ExitCode::SUCCESS)
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

fn list(token: &TokenArgs) -> anyhow::Result<ExitCode> {
    if token.software_dir.is_some() {
        let store = open_any(token)?;
        print_objects(store.as_ref())?;
        return Ok(ExitCode::SUCCESS);
    }
    let profile = load_profile(token)?;
    let tokens = p11::list_tokens(&profile, token.module.as_deref())?;
    say!("tokens ({}):", profile.display_name);
    if tokens.is_empty() {
        say!("  none initialised");
    }
    for t in &tokens {
        say!(
            "  \"{}\"  serial {}  model {}  {}{}",
            t.label,
            t.serial,
            t.model,
            t.manufacturer,
            if t.user_pin_locked {
                "  USER PIN LOCKED"
            } else {
                ""
            }
        );
    }
    if token.token.is_none() && token.token_serial.is_none() {
        say!("(pass --token <label> to list its keys and certificates)");
        return Ok(ExitCode::SUCCESS);
    }
    let store = open_store(token)?;
    print_objects(store.as_ref())?;
    Ok(ExitCode::SUCCESS)
}

fn print_objects(store: &dyn KeyStore) -> anyhow::Result<()> {
    let objects = store.list()?;
    say!("objects on \"{}\":", store.token().label);
    for o in &objects {
        let kind = match &o.kind {
            KeyKind::EcPrivate => "EC private key".to_owned(),
            KeyKind::EcPublic => "EC public key".to_owned(),
            KeyKind::GenericSecret => "group key (generic secret)".to_owned(),
            KeyKind::Certificate => "certificate".to_owned(),
            KeyKind::Other(s) => s.clone(),
        };
        let protection = match (o.sensitive, o.extractable) {
            (Some(true), Some(false)) => "  [sensitive, not extractable]",
            (_, Some(true)) => "  [EXTRACTABLE]",
            _ => "",
        };
        say!("  {kind:<28} {}{protection}", o.uri);
    }
    for c in store.certificates()? {
        if let Ok(info) = dps_station::identity::cert_info::X509CertificateInfo::from_der(&c.der) {
            say!(
                "  certificate \"{}\": {} issued by {}, until {}",
                c.label,
                info.subject_name,
                info.issuer_name,
                info.not_after_utc
            );
        }
    }
    Ok(())
}

fn export_chain(
    token: &TokenArgs,
    root_label: &str,
    intermediate_label: &str,
    out: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let store = open_any(token)?;
    let pem_text = chain_pem(store.as_ref(), root_label, intermediate_label)?;
    write_output(out, pem_text.as_bytes(), false)?;
    if let Some(path) = out {
        eprintln!(
            "chain ({intermediate_label}, {root_label}) written to {}",
            path.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
