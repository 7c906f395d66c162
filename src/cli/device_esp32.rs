//! `dps-station device esp32 ...`: the `esp_secure_cert` partition image from PEM files, and an
//! image read back, for firmware engineers bringing up an ESP32 product.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};

use dps_station::device::esp32::secure_cert::{
    self, DEFAULT_PARTITION_SIZE, SecureCertImage, SecureCertInputs, TYPE_CA_CERT, TYPE_DEV_CERT,
    TYPE_ENDPOINT, TYPE_ID_SCOPE, TYPE_REGISTRATION_ID,
};
use dps_station::device::esp32::symmetric;
use dps_station::secret::SecretString;

/// `device esp32 ...` subcommands.
#[derive(Debug, Subcommand)]
pub enum Esp32Command {
    /// Build the esp_secure_cert partition image (Espressif's TLV format) from PEM files.
    SecureCertImage(ImageArgs),
    /// Show what an esp_secure_cert image holds (never the private key's bytes).
    ParseSecureCert {
        /// The partition image (e.g. read with `esptool read_flash 0xD000 0x2000 image.bin`).
        image: PathBuf,
    },
}

/// `device esp32 secure-cert-image` options.
#[derive(Debug, Args)]
pub struct ImageArgs {
    /// The CA certificate (PEM).
    #[arg(long)]
    pub ca: PathBuf,
    /// The device certificate (PEM).
    #[arg(long)]
    pub cert: PathBuf,
    /// The device's P-256 private key (PEM, PKCS#8 or SEC1; stored as SEC1 as Espressif's tool does).
    #[arg(long)]
    pub key: PathBuf,
    /// The DPS ID scope (user data 1).
    #[arg(long)]
    pub id_scope: String,
    /// The DPS global endpoint host (user data 2).
    #[arg(long, default_value = "global.azure-devices-provisioning.net")]
    pub endpoint: String,
    /// The DPS registration ID (user data 3).
    #[arg(long)]
    pub registration_id: String,
    /// Where to write the image.
    #[arg(long)]
    pub out: PathBuf,
    /// The partition size in bytes, as in the partition table (decimal or 0x...).
    #[arg(long, default_value = "0x2000", value_parser = parse_size)]
    pub size: usize,
}

fn parse_size(text: &str) -> Result<usize, String> {
    let parsed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => usize::from_str_radix(hex, 16),
        None => text.parse(),
    };
    parsed.map_err(|_| format!("'{text}' is not a size in bytes (e.g. 8192 or 0x2000)"))
}

/// Appends a line to the command's output (written at once by [`emit`]).
macro_rules! outln {
    ($out:expr, $($arg:tt)*) => {{
        use std::fmt::Write as _;
        let _ = writeln!($out, $($arg)*);
    }};
}

/// Writes the output; a reader that went away (`| head`) is not an error.
fn emit(text: &str) -> anyhow::Result<ExitCode> {
    use std::io::Write as _;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e).context("writing to stdout"),
        _ => Ok(ExitCode::SUCCESS),
    }
}

/// Runs a `device esp32` command.
pub fn run(cmd: Esp32Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Esp32Command::SecureCertImage(args) => build(&args),
        Esp32Command::ParseSecureCert { image } => parse(&image),
    }
}

fn read_text(what: &str, path: &PathBuf) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading the {what} {}", path.display()))
}

fn build(args: &ImageArgs) -> anyhow::Result<ExitCode> {
    let mut out = String::new();
    let inputs = SecureCertInputs {
        ca_pem: read_text("CA certificate", &args.ca)?,
        device_pem: read_text("device certificate", &args.cert)?,
        key_pem: SecretString::new(read_text("private key", &args.key)?),
        id_scope: args.id_scope.clone(),
        endpoint: args.endpoint.clone(),
        registration_id: args.registration_id.clone(),
    };
    let image = SecureCertImage::from_inputs(&inputs)?;
    let bytes = image.to_bytes(args.size)?;
    std::fs::write(&args.out, &bytes)
        .with_context(|| format!("writing the image {}", args.out.display()))?;
    let written = SecureCertImage::parse(&bytes)?;
    let used: usize = written
        .entries
        .last()
        .map(|e| e.offset + secure_cert::HEADER_LEN + e.data.len().div_ceil(16) * 16 + 4)
        .unwrap_or(0);
    outln!(
        out,
        "wrote {} ({} bytes, {} used by {} entries); flash it at the esp_secure_cert partition's offset (0xD000 in Espressif's tables)",
        args.out.display(),
        bytes.len(),
        used,
        written.entries.len()
    );
    if args.size != DEFAULT_PARTITION_SIZE {
        outln!(
            out,
            "the partition table must give esp_secure_cert {} bytes",
            args.size
        );
    }
    emit(&out)
}

fn parse(path: &PathBuf) -> anyhow::Result<ExitCode> {
    let mut out = String::new();
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let image = SecureCertImage::parse(&bytes)
        .with_context(|| format!("reading {} as an esp_secure_cert image", path.display()))?;
    outln!(
        out,
        "{}: {} bytes, {} entries",
        path.display(),
        bytes.len(),
        image.entries.len()
    );
    for e in &image.entries {
        outln!(
            out,
            "  {:#06x}  type {:>2} subtype {}  {:>5} bytes  {}",
            e.offset,
            e.tlv_type,
            e.subtype,
            e.data.len(),
            secure_cert::type_name(e.tlv_type)
        );
    }
    for (label, t) in [
        ("device certificate", TYPE_DEV_CERT),
        ("CA certificate", TYPE_CA_CERT),
    ] {
        outln!(
            out,
            "{label}: {}",
            cert_summary(image.entry(t).map(|e| e.data.as_slice()))
        );
    }
    outln!(out, "private key: {}", image.key_summary());
    // The DPS symmetric key (user data 4): said to be there, never shown.
    let symmetric = match symmetric::symmetric_key(&image) {
        Some(key) => format!("present, {} bytes (not shown)", key.len()),
        None if image.entry(symmetric::TYPE_SYMMETRIC_KEY).is_some() => {
            "present, not base64".into()
        }
        None => "absent".into(),
    };
    outln!(out, "symmetric key: {symmetric}");
    for (label, t) in [
        ("ID scope", TYPE_ID_SCOPE),
        ("endpoint", TYPE_ENDPOINT),
        ("registration ID", TYPE_REGISTRATION_ID),
    ] {
        let value = match (image.entry(t), image.text(t)) {
            (None, _) => "absent".to_string(),
            (Some(_), Some(text)) => text,
            (Some(e), None) => format!("present, not UTF-8 text ({} bytes)", e.data.len()),
        };
        outln!(out, "{label}: {value}");
    }
    emit(&out)
}

/// Subject and issuer of a PEM (or DER) certificate entry.
fn cert_summary(data: Option<&[u8]>) -> String {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let Some(data) = data else {
        return "absent".into();
    };
    let der = if data.starts_with(b"-----BEGIN") {
        let end = data.iter().position(|&b| b == 0).unwrap_or(data.len());
        match x509_parser::pem::parse_x509_pem(&data[..end]) {
            Ok((_, pem)) => pem.contents,
            Err(_) => return "present, not a PEM certificate".into(),
        }
    } else {
        data.to_vec()
    };
    match X509Certificate::from_der(&der) {
        Ok((_, cert)) => format!(
            "subject \"{}\", issuer \"{}\"",
            cert.subject(),
            cert.issuer()
        ),
        Err(_) => "present, not an X.509 certificate".into(),
    }
}
