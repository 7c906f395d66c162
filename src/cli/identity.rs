//! Identity commands: a software CA for development, issuing and inspecting certificates, and
//! symmetric keys. Everything here that signs with a file-backed key says that the key is NOT in
//! an HSM.
//!
//! A CA directory made by `ca create` holds `root.cert.pem` + `root.key.pem`, and with
//! `--intermediate` also `intermediate.cert.pem` + `intermediate.key.pem` and `chain.pem`
//! (intermediate, then root). `cert issue --ca DIR` signs with the intermediate when there is one,
//! else with the root.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use dps_station::identity::cert_info::X509CertificateInfo;
use dps_station::identity::csr;
use dps_station::identity::issue::{
    IssuedCertificate, Issuer, issue_device_certificate_for_key, make_intermediate_ca,
    make_root_ca, verification_certificate,
};
use dps_station::identity::pem;
use dps_station::identity::profile::{CaProfile, CaSubject, DeviceProfile, Validity};
use dps_station::identity::registration_id::{self, IdUse, RegistrationId};
use dps_station::identity::self_signed::self_signed_device;
use dps_station::identity::signer::CaSigner;
use dps_station::identity::symmetric::{self, KeyFingerprint, KeyLength};
use dps_station::keystore::software::{NOT_IN_HSM_NOTICE, SoftwareCaKey};
use dps_station::secret::SecretString;
use serde_json::json;

const ROOT_CERT: &str = "root.cert.pem";
const ROOT_KEY: &str = "root.key.pem";
const INTERMEDIATE_CERT: &str = "intermediate.cert.pem";
const INTERMEDIATE_KEY: &str = "intermediate.key.pem";
const CHAIN: &str = "chain.pem";

/// Identity commands, flattened into the top level.
#[derive(Debug, Subcommand)]
pub enum Commands {
    /// Certificate authorities for development (software keys, NOT in an HSM).
    #[command(subcommand)]
    Ca(CaCommand),
    /// Issue, self-sign and inspect X.509 device certificates.
    #[command(subcommand)]
    Cert(CertCommand),
    /// Symmetric keys for symmetric-key attestation: derive device keys, generate random keys.
    #[command(subcommand)]
    Key(KeyCommand),
}

/// `ca …`
#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Create a software CA for development in a directory: a root, and with --intermediate an
    /// intermediate under it (added to an existing root if the directory has one).
    ///
    /// The private keys are PKCS#8 PEM files (mode 0600), NOT in an HSM: use this for development
    /// and tests, and an HSM CA for production devices.
    Create(CaCreateArgs),
    /// Make the DPS proof-of-possession certificate for a CA of this directory: CN = the
    /// verification code DPS shows for the uploaded CA certificate, signed by that CA's key.
    Verify(CaVerifyArgs),
}

/// Arguments of `ca create`.
#[derive(Debug, Args)]
pub struct CaCreateArgs {
    /// Directory for the CA's files (created if missing; existing keys are never overwritten).
    #[arg(long, value_name = "DIR")]
    pub out_dir: PathBuf,
    /// Also create an intermediate CA (path length 0) that signs the device certificates.
    #[arg(long)]
    pub intermediate: bool,
    /// Common name of the root CA.
    #[arg(long, default_value = "dps-station development root CA")]
    pub root_name: String,
    /// Common name of the intermediate CA.
    #[arg(long, default_value = "dps-station development intermediate CA")]
    pub intermediate_name: String,
    /// Organization (O) of the CA subjects.
    #[arg(long)]
    pub organization: Option<String>,
    /// Two-letter country code (C) of the CA subjects.
    #[arg(long)]
    pub country: Option<String>,
    /// Root validity in days (the intermediate gets half, at most).
    #[arg(long, default_value_t = 3652)]
    pub days: i64,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `ca verify`.
#[derive(Debug, Args)]
pub struct CaVerifyArgs {
    /// The CA directory made by `ca create`.
    #[arg(long, value_name = "DIR")]
    pub ca: PathBuf,
    /// The verification code DPS showed for the uploaded CA certificate.
    #[arg(long)]
    pub code: String,
    /// Sign with the intermediate instead of the root (when the intermediate was uploaded).
    #[arg(long)]
    pub intermediate: bool,
    /// Where to write the verification certificate (PEM); stdout if not given.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// `cert …`
#[derive(Debug, Subcommand)]
pub enum CertCommand {
    /// Issue a device certificate for a device's CSR, signed by a CA directory from `ca create`.
    ///
    /// The CSR's signature is verified and its key must be ECDSA P-256. The certificate's subject
    /// is CN = the registration ID; CA flag, key usages (digitalSignature, clientAuth), serial and
    /// validity come from the station's profile, never from the CSR. The registration ID is
    /// --registration-id, or else the CSR's CN once it passes the DPS rules; either way it is
    /// written lowercase.
    Issue(CertIssueArgs),
    /// Create a self-signed device certificate and its P-256 key for an individual enrollment,
    /// as in the DPS X.509 quickstart (CN = registration ID).
    SelfSigned(CertSelfSignedArgs),
    /// Show a certificate as DPS reports it (X509CertificateInfo: subject, thumbprints, issuer,
    /// validity, serial, version).
    Info(CertInfoArgs),
}

/// Arguments of `cert issue`.
#[derive(Debug, Args)]
pub struct CertIssueArgs {
    /// The device's CSR (PEM or DER).
    #[arg(long, value_name = "FILE")]
    pub csr: PathBuf,
    /// The CA directory made by `ca create`.
    #[arg(long, value_name = "DIR")]
    pub ca: PathBuf,
    /// The registration ID (the certificate's CN); defaults to the CSR's CN.
    #[arg(long, value_name = "ID")]
    pub registration_id: Option<String>,
    /// Validity of the device certificate in days.
    #[arg(long, default_value_t = 365)]
    pub validity_days: i64,
    /// Where to write the certificate (PEM); stdout if not given.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Append the intermediate CA certificate after the device certificate (the chain a device
    /// presents to DPS), when the CA directory has one.
    #[arg(long)]
    pub with_chain: bool,
    /// Print the certificate's info as JSON (the PEM then goes to --out only).
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `cert self-signed`.
#[derive(Debug, Args)]
pub struct CertSelfSignedArgs {
    /// The registration ID (becomes the CN; at most 64 characters; written lowercase).
    #[arg(long, value_name = "ID")]
    pub registration_id: String,
    /// Directory for `<id>.cert.pem` and `<id>.key.pem` (key mode 0600; never overwritten).
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub out_dir: PathBuf,
    /// Validity in days (the quickstart uses 365).
    #[arg(long, default_value_t = 365)]
    pub days: i64,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `cert info`.
#[derive(Debug, Args)]
pub struct CertInfoArgs {
    /// The certificate (PEM or DER; the first certificate of a chain file).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Print the X509CertificateInfo as JSON, exactly as DPS returns it.
    #[arg(long)]
    pub json: bool,
}

/// `key …`
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Derive a device's key from its enrollment group's key, exactly as
    /// `az iot dps compute-device-key` does: base64(HMAC-SHA256(base64decode(groupKey), registrationId)).
    ///
    /// Give the group key in the environment (DPS_GROUP_KEY) or a file (--group-key-file) rather
    /// than --group-key: command-line arguments are visible to every user in `ps`.
    Derive(KeyDeriveArgs),
    /// Generate a random symmetric key (base64) for an individual enrollment or a group.
    Generate(KeyGenerateArgs),
}

/// Arguments of `key derive`.
#[derive(Debug, Args)]
pub struct KeyDeriveArgs {
    /// The registration ID the device will present (hashed exactly as given, after the DPS checks).
    #[arg(long, value_name = "ID")]
    pub registration_id: String,
    /// The group key, base64 (visible in `ps`: prefer DPS_GROUP_KEY or --group-key-file).
    #[arg(
        long,
        env = "DPS_GROUP_KEY",
        hide_env_values = true,
        value_name = "BASE64"
    )]
    pub group_key: Option<String>,
    /// A file holding the group key (base64, surrounding whitespace ignored); takes precedence
    /// over --group-key and DPS_GROUP_KEY.
    #[arg(long, value_name = "FILE")]
    pub group_key_file: Option<PathBuf>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `key generate`.
#[derive(Debug, Args)]
pub struct KeyGenerateArgs {
    /// Key length in bytes: 32 or 64.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(32..=64))]
    pub bytes: u16,
    /// Print the key and its fingerprint (safe to store) as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs one identity command.
pub fn run(cmd: Commands) -> anyhow::Result<ExitCode> {
    match cmd {
        Commands::Ca(CaCommand::Create(args)) => ca_create(&args),
        Commands::Ca(CaCommand::Verify(args)) => ca_verify(&args),
        Commands::Cert(CertCommand::Issue(args)) => cert_issue(&args),
        Commands::Cert(CertCommand::SelfSigned(args)) => cert_self_signed(&args),
        Commands::Cert(CertCommand::Info(args)) => cert_info(&args),
        Commands::Key(KeyCommand::Derive(args)) => key_derive(&args),
        Commands::Key(KeyCommand::Generate(args)) => key_generate(&args),
    }
}

/// Writes a file that must not exist yet, with `mode` (0600 for keys).
fn write_new(path: &Path, contents: &[u8], mode: u32) -> anyhow::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| {
            format!(
                "cannot create {} (it must not exist yet; remove it or choose another directory)",
                path.display()
            )
        })?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

fn read_file(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read the {what} {}", path.display()))
}

fn read_certificate(path: &Path) -> anyhow::Result<Vec<u8>> {
    let bytes = read_file(path, "certificate")?;
    pem::der_from_pem_or_der(&bytes, &[pem::label::CERTIFICATE])
        .with_context(|| format!("certificate {}", path.display()))
}

fn subject(args: &CaCreateArgs, common_name: &str) -> CaSubject {
    CaSubject {
        common_name: common_name.to_owned(),
        organization: args.organization.clone(),
        organizational_unit: None,
        country: args.country.clone(),
    }
}

fn describe(role: &str, cert: &Path, key: &Path, info: &X509CertificateInfo) -> String {
    format!(
        "  {role:<13}{}  (key {})\n               {}\n               SHA-1 {}  valid until {}\n",
        cert.display(),
        key.display(),
        info.subject_name,
        info.sha1_thumbprint,
        info.not_after_utc
    )
}

fn ca_create(args: &CaCreateArgs) -> anyhow::Result<ExitCode> {
    let dir = &args.out_dir;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the CA directory {}", dir.display()))?;
    let root_cert_path = dir.join(ROOT_CERT);
    let root_key_path = dir.join(ROOT_KEY);
    let mut report = json!({ "softwareCa": true, "notice": NOT_IN_HSM_NOTICE });
    let mut text = String::new();

    let root_exists = root_key_path.exists() || root_cert_path.exists();
    if root_exists && !args.intermediate {
        bail!(
            "{} already holds a CA ({}); choose another --out-dir, or add --intermediate to create an intermediate under it",
            dir.display(),
            ROOT_CERT
        );
    }
    let (root_key, root_der) = if root_exists {
        let key = SoftwareCaKey::load(&root_key_path)?;
        let der = read_certificate(&root_cert_path)?;
        text.push_str(&format!(
            "Using the existing root CA in {}\n",
            dir.display()
        ));
        (key, der)
    } else {
        let profile = CaProfile {
            subject: subject(args, &args.root_name),
            validity: Validity::days_from_now(args.days)?,
            path_len: Some(1),
        };
        let key = SoftwareCaKey::generate(&root_key_path)?;
        let root = make_root_ca(&profile, &key)?;
        write_new(&root_cert_path, root.pem().as_bytes(), 0o644)?;
        text.push_str(&describe(
            "root",
            &root_cert_path,
            &root_key_path,
            &root.info,
        ));
        report["root"] = json!({
            "certificate": root_cert_path,
            "key": root_key_path,
            "keyName": key.key_name(),
            "info": root.info,
        });
        (key, root.der)
    };

    if args.intermediate {
        let cert_path = dir.join(INTERMEDIATE_CERT);
        let key_path = dir.join(INTERMEDIATE_KEY);
        if cert_path.exists() || key_path.exists() {
            bail!(
                "{} already holds an intermediate CA ({INTERMEDIATE_CERT}); choose another --out-dir",
                dir.display()
            );
        }
        let issuer = Issuer::new(root_der.clone(), &root_key)
            .with_context(|| format!("the root CA in {}", dir.display()))?;
        // Half the root's validity at most, and never beyond the root.
        let days = (args.days / 2).max(1);
        let mut validity = Validity::days_from_now(days)?;
        if validity.not_after > issuer.not_after() {
            validity = Validity::between(validity.not_before, issuer.not_after())?;
        }
        let profile = CaProfile {
            subject: subject(args, &args.intermediate_name),
            validity,
            path_len: Some(0),
        };
        let key = SoftwareCaKey::generate(&key_path)?;
        let inter = make_intermediate_ca(&profile, key.public_key_sec1(), &issuer)?;
        write_new(&cert_path, inter.pem().as_bytes(), 0o644)?;
        let chain = format!(
            "{}{}",
            inter.pem(),
            pem::encode(pem::label::CERTIFICATE, &root_der)
        );
        let chain_path = dir.join(CHAIN);
        write_new(&chain_path, chain.as_bytes(), 0o644)?;
        text.push_str(&describe(
            "intermediate",
            &cert_path,
            &key_path,
            &inter.info,
        ));
        text.push_str(&format!("  {:<13}{}\n", "chain", chain_path.display()));
        report["intermediate"] = json!({
            "certificate": cert_path,
            "key": key_path,
            "keyName": key.key_name(),
            "chain": chain_path,
            "info": inter.info,
        });
    }

    if args.json {
        println!("{report:#}");
    } else {
        println!("Software CA for development in {}", dir.display());
        println!("NOTE: {NOT_IN_HSM_NOTICE}.");
        print!("{text}");
    }
    Ok(ExitCode::SUCCESS)
}

/// The CA directory's signing CA: the intermediate if present, else the root.
struct CaDirectory {
    key: SoftwareCaKey,
    cert_der: Vec<u8>,
    intermediate: bool,
}

impl CaDirectory {
    fn open(dir: &Path, prefer_root: bool) -> anyhow::Result<Self> {
        let inter_cert = dir.join(INTERMEDIATE_CERT);
        let use_intermediate = !prefer_root && inter_cert.exists();
        let (cert, key) = if use_intermediate {
            (inter_cert, dir.join(INTERMEDIATE_KEY))
        } else {
            (dir.join(ROOT_CERT), dir.join(ROOT_KEY))
        };
        if !cert.exists() {
            bail!(
                "{} is not a CA directory ({} is missing); create one with `dps-station ca create --out-dir {}`",
                dir.display(),
                cert.display(),
                dir.display()
            );
        }
        Ok(Self {
            key: SoftwareCaKey::load(&key)?,
            cert_der: read_certificate(&cert)?,
            intermediate: use_intermediate,
        })
    }

    fn issuer(&self) -> anyhow::Result<Issuer<'_>> {
        Ok(Issuer::new(self.cert_der.clone(), &self.key)?)
    }
}

fn write_or_print(out: Option<&Path>, text: &str) -> anyhow::Result<()> {
    match out {
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
        }
        None => {
            print!("{text}");
            Ok(())
        }
    }
}

fn ca_verify(args: &CaVerifyArgs) -> anyhow::Result<ExitCode> {
    let ca = CaDirectory::open(&args.ca, !args.intermediate)?;
    if args.intermediate && !ca.intermediate {
        bail!("{} has no intermediate CA", args.ca.display());
    }
    let issuer = ca.issuer()?;
    let cert = verification_certificate(&args.code, &Validity::days_from_now(30)?, &issuer)?;
    eprintln!("NOTE: {NOT_IN_HSM_NOTICE}.");
    write_or_print(args.out.as_deref(), &cert.pem())?;
    if let Some(out) = &args.out {
        eprintln!(
            "Verification certificate for code {} written to {}: upload it to DPS to verify the CA.",
            args.code.trim(),
            out.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn cert_issue(args: &CertIssueArgs) -> anyhow::Result<ExitCode> {
    let csr_bytes = read_file(&args.csr, "CSR")?;
    let csr = csr::verify_csr_pem_or_der(&csr_bytes)
        .with_context(|| format!("CSR {}", args.csr.display()))?;
    let registration_id = match (&args.registration_id, &csr.common_name) {
        (Some(id), _) => {
            RegistrationId::parse_for(id, IdUse::X509CommonName).context("--registration-id")?
        }
        (None, Some(cn)) => {
            RegistrationId::parse_for(cn, IdUse::X509CommonName).with_context(|| {
                format!("the CSR's CN {cn:?} cannot be the registration ID; give --registration-id")
            })?
        }
        (None, None) => bail!(
            "the CSR {} has no CN to take the registration ID from; give --registration-id",
            args.csr.display()
        ),
    };
    if args.registration_id.is_none()
        && let Some(cn) = &csr.common_name
        && cn != registration_id.as_str()
    {
        eprintln!(
            "Registration ID {registration_id}: the CSR's CN {cn:?}, lowercased (the station writes lowercase IDs)."
        );
    }
    let ca = CaDirectory::open(&args.ca, false)?;
    let issuer = ca.issuer()?;
    let profile = DeviceProfile::valid_for_days(args.validity_days)?;
    let cert: IssuedCertificate = issue_device_certificate_for_key(
        &csr.public_key_sec1,
        &registration_id,
        &profile,
        &issuer,
    )?;
    let mut text = cert.pem();
    if args.with_chain && ca.intermediate {
        text.push_str(&pem::encode(pem::label::CERTIFICATE, &ca.cert_der));
    }
    if args.json {
        if let Some(out) = &args.out {
            std::fs::write(out, &text)
                .with_context(|| format!("cannot write {}", out.display()))?;
        }
        let report = json!({
            "registrationId": registration_id,
            "certificate": args.out,
            "pem": if args.out.is_none() { Some(&text) } else { None },
            "info": cert.info,
            "issuerKey": issuer.key_name(),
            "notice": NOT_IN_HSM_NOTICE,
        });
        println!("{report:#}");
    } else {
        write_or_print(args.out.as_deref(), &text)?;
        eprintln!("NOTE: signed with a {NOT_IN_HSM_NOTICE}.");
        eprintln!(
            "Issued {} for registration ID {} (SHA-1 {}), valid until {}{}",
            cert.info.subject_name,
            registration_id,
            cert.info.sha1_thumbprint,
            cert.info.not_after_utc,
            args.out
                .as_ref()
                .map(|p| format!(", written to {}", p.display()))
                .unwrap_or_default()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn cert_self_signed(args: &CertSelfSignedArgs) -> anyhow::Result<ExitCode> {
    let id = RegistrationId::parse_for(&args.registration_id, IdUse::X509CommonName)
        .context("--registration-id")?;
    let device = self_signed_device(&id, &Validity::days_from_now(args.days)?)?;
    std::fs::create_dir_all(&args.out_dir)
        .with_context(|| format!("cannot create {}", args.out_dir.display()))?;
    let cert_path = args.out_dir.join(format!("{id}.cert.pem"));
    let key_path = args.out_dir.join(format!("{id}.key.pem"));
    if cert_path.exists() {
        bail!(
            "{} already exists; remove it or choose another --out-dir",
            cert_path.display()
        );
    }
    write_new(&key_path, device.private_key_pem.expose().as_bytes(), 0o600)?;
    write_new(&cert_path, device.certificate.pem().as_bytes(), 0o644)?;
    if args.json {
        let report = json!({
            "registrationId": id,
            "certificate": cert_path,
            "key": key_path,
            "info": device.certificate.info,
        });
        println!("{report:#}");
    } else {
        println!("Self-signed device certificate for registration ID {id}");
        println!("  certificate  {}", cert_path.display());
        println!(
            "  key          {} (mode 0600; the device's private key)",
            key_path.display()
        );
        println!("  SHA-1        {}", device.certificate.info.sha1_thumbprint);
        println!("  valid until  {}", device.certificate.info.not_after_utc);
        println!(
            "Create an individual enrollment with attestation X.509 and this certificate as primary certificate."
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn cert_info(args: &CertInfoArgs) -> anyhow::Result<ExitCode> {
    let bytes = read_file(&args.file, "certificate")?;
    let info = X509CertificateInfo::from_pem_or_der(&bytes)
        .with_context(|| format!("certificate {}", args.file.display()))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&info)?);
    } else {
        println!("subjectName       {}", info.subject_name);
        println!("issuerName        {}", info.issuer_name);
        println!("sha1Thumbprint    {}", info.sha1_thumbprint);
        println!("sha256Thumbprint  {}", info.sha256_thumbprint);
        println!("notBeforeUtc      {}", info.not_before_utc);
        println!("notAfterUtc       {}", info.not_after_utc);
        println!("serialNumber      {}", info.serial_number);
        println!("version           {}", info.version);
    }
    Ok(ExitCode::SUCCESS)
}

fn key_derive(args: &KeyDeriveArgs) -> anyhow::Result<ExitCode> {
    let group_key = match (&args.group_key, &args.group_key_file) {
        (_, Some(path)) => {
            let bytes = zeroize::Zeroizing::new(read_file(path, "group key file")?);
            let text = std::str::from_utf8(&bytes)
                .with_context(|| format!("the group key file {} is not text", path.display()))?;
            SecretString::new(text.trim())
        }
        (Some(key), None) => SecretString::new(key.trim()),
        (None, None) => bail!(
            "no group key: set DPS_GROUP_KEY, or give --group-key-file FILE (or --group-key, visible in `ps`)"
        ),
    };
    registration_id::validate(&args.registration_id, IdUse::Any).context("--registration-id")?;
    let key = symmetric::derive_device_key(&group_key, &args.registration_id)?;
    if args.json {
        let report = json!({
            "registrationId": args.registration_id,
            "derivedKey": key.expose(),
            "fingerprint": KeyFingerprint::of_base64_key(&key)?,
        });
        println!("{report:#}");
    } else {
        // The one place the key is shown: it is what the user asked for, on stdout only.
        println!("{}", key.expose());
    }
    Ok(ExitCode::SUCCESS)
}

fn key_generate(args: &KeyGenerateArgs) -> anyhow::Result<ExitCode> {
    let length = KeyLength::from_bytes(usize::from(args.bytes))?;
    let key = symmetric::generate_key(length);
    if args.json {
        let report = json!({
            "key": key.expose(),
            "bytes": length.bytes(),
            "fingerprint": KeyFingerprint::of_base64_key(&key)?,
        });
        println!("{report:#}");
    } else {
        println!("{}", key.expose());
    }
    Ok(ExitCode::SUCCESS)
}
