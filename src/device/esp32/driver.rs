//! The `esp32` family's driver: a classic ESP32 in its ROM serial bootloader behind
//! [`DeviceDriver`] (`docs/devices/esp32.md`).
//!
//! - identify: `SYNC`, the chip magic (`0x00F01D83`), the base MAC from eFuse words 1-2 (the
//!   serial: 12 hex digits), the eFuse state (flash encryption `FLASH_CRYPT_CNT`, secure boot
//!   `ABS_DONE_0/1`: the chip is "locked" only if one is on), the flash attached, and the baud
//!   raised if the batch asks.
//! - key: the ROM makes none: the station makes it (`x509-inject`), and the certificate is signed
//!   in the HSM as for every mode; or the batch's symmetric key derived for the device
//!   (`symmetric-group` / `-individual`), in user-data entry 54 (`symmetric.rs` says why). The
//!   key crosses the cable in plain (the ROM has no encrypted channel), so the batch must say
//!   `plaintext_cable = true`.
//! - store: the `esp_secure_cert` image (device certificate, CA, key, ID scope, endpoint,
//!   registration ID, integrity) written compressed (`FLASH_DEFL_*`) at the partition's offset,
//!   checked with the ROM's flash MD5 of the whole partition.
//! - read back: the entries walked header by header with `READ_FLASH_SLOW` (only the written
//!   region), parsed as the firmware will parse it; digests of the certificates (DER), the
//!   config, the key's public point or the symmetric key.
//! - lock: burning the flash-encryption eFuse only where the batch asked for it explicitly
//!   (`Esp32Options::burn_flash_encryption`); otherwise the family has no lock.
//! - leaving: `FLASH_END` "run" when the station lets the device go (drop), so the chip boots
//!   its application.

use std::time::{Duration, Instant};

use p256::SecretKey;
use p256::pkcs8::EncodePrivateKey;
use p256::pkcs8::der::pem::LineEnding;
use zeroize::Zeroizing;

use super::loader::Loader;
use super::partitions::SecureCertPartition;
use super::rom::{self, reg};
use super::secure_cert::{
    FOOTER_LEN, HEADER_LEN, SecureCertError, SecureCertImage, SecureCertInputs, TLV_MAGIC,
    TYPE_CA_CERT, TYPE_DEV_CERT, TYPE_ENDPOINT, TYPE_ID_SCOPE, TYPE_PRIV_KEY, TYPE_REGISTRATION_ID,
    padding,
};
use super::symmetric;
use crate::device::driver::{
    Bundle, DeviceConfig, DeviceDriver, DeviceInfo, Digests, Family, GeneratedKey, Held, Holdings,
    LockKind, Stored, TpmEk,
};
use crate::device::error::{DeviceError, Step};
use crate::device::protocol::sha256_hex;
use crate::secret::SecretString;

/// The flash size the station tells the ROM (the common 4 MB module; the partition must lie in it).
pub const FLASH_SIZE: u32 = 4 * 1024 * 1024;

/// How long letting a chip go (`FLASH_END` run) waits for its answer.
const RELEASE_WAIT: Duration = Duration::from_millis(500);

/// How the driver works with one batch.
#[derive(Debug, Clone)]
pub struct Esp32Options {
    /// The speed the port opens at (the ROM's auto-baud: 115200).
    pub baud: u32,
    /// A faster speed to switch to after sync, if any (921600 on good cables).
    pub flash_baud: Option<u32>,
    /// Where `esp_secure_cert` is.
    pub partition: SecureCertPartition,
    /// Burn the flash-encryption eFuse as the lock (permanent). Only from a batch that says so and
    /// confirmed it; off by default.
    pub burn_flash_encryption: bool,
}

impl Default for Esp32Options {
    fn default() -> Self {
        Self {
            baud: rom::ROM_BAUD,
            flash_baud: None,
            partition: SecureCertPartition::default(),
            burn_flash_encryption: false,
        }
    }
}

/// The eFuse state as the station reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EfuseState {
    /// Flash encryption is on.
    pub flash_encryption: bool,
    /// Secure boot is on.
    pub secure_boot: bool,
}

/// An ESP32 on one port.
pub struct Esp32Driver {
    loader: Loader,
    options: Esp32Options,
    synced: bool,
    wrote: bool,
    /// The eFuse state read at identify (or after a burn): eFuses change only when burnt, which
    /// only [`DeviceDriver::lock`] does, and it reads them again; the read-back reuses it.
    efuses: Option<EfuseState>,
}

impl Esp32Driver {
    /// Opens `port` at `options.baud`; the chip must be in download mode (the fixture's reset
    /// lines put it there).
    pub fn open(port: &str, options: Esp32Options) -> Result<Self, DeviceError> {
        let wire = crate::device::transport::open(port, options.baud)?;
        Ok(Self {
            loader: Loader::new(port, wire, options.baud),
            options,
            synced: false,
            wrote: false,
            efuses: None,
        })
    }

    /// Bytes (sent, received) so far.
    pub fn byte_counts(&self) -> (u64, u64) {
        self.loader.byte_counts()
    }

    /// The chip's eFuse state.
    pub fn efuse_state(&mut self) -> Result<EfuseState, DeviceError> {
        let word0 = self.loader.efuse(0)?;
        let word6 = self.loader.efuse(reg::ABS_DONE_WORD as u32)?;
        Ok(EfuseState {
            flash_encryption: rom::flash_encryption_on(word0),
            secure_boot: rom::secure_boot_on(word6),
        })
    }

    fn port_name(&self) -> String {
        self.loader.port_name().to_string()
    }

    fn input(&self, step: Step, reason: String) -> DeviceError {
        DeviceError::Input {
            port: self.port_name(),
            step,
            reason,
        }
    }

    fn unsupported(&self, step: Step, capability: &'static str) -> DeviceError {
        DeviceError::Unsupported {
            port: self.port_name(),
            step,
            capability,
        }
    }

    /// Syncs, checks the chip, attaches the flash and changes baud, once per connection.
    fn connect(&mut self) -> Result<(), DeviceError> {
        if self.synced {
            return Ok(());
        }
        self.loader.sync()?;
        let magic = self.loader.read_reg(reg::CHIP_DETECT_MAGIC)?;
        if magic != reg::ESP32_MAGIC {
            return Err(DeviceError::Protocol {
                port: self.port_name(),
                step: Step::Command("READ_REG (chip detection)"),
                reason: format!(
                    "the chip magic is 0x{magic:08x}, not a classic ESP32's 0x{:08x}; this station drives the classic ESP32 only: set the slot's family to match the product",
                    reg::ESP32_MAGIC
                ),
            });
        }
        self.loader.attach_flash(FLASH_SIZE)?;
        if let Some(baud) = self.options.flash_baud.filter(|b| *b != self.options.baud) {
            self.loader.change_baud(baud)?;
        }
        self.synced = true;
        Ok(())
    }

    /// The base MAC (eFuse block 0 words 1 and 2).
    fn mac(&mut self) -> Result<[u8; 6], DeviceError> {
        let w1 = self.loader.efuse(1)?;
        let w2 = self.loader.efuse(2)?;
        let [_, _, a, b] = w2.to_be_bytes();
        let [c, d, e, f] = w1.to_be_bytes();
        Ok([a, b, c, d, e, f])
    }

    fn check_partition(&self, step: Step) -> Result<SecureCertPartition, DeviceError> {
        let p = self.options.partition;
        if u64::from(p.offset) + u64::from(p.size) > u64::from(FLASH_SIZE) || p.offset < 0x8000 {
            return Err(self.input(
                step,
                format!(
                    "the esp_secure_cert partition at 0x{:X} (0x{:X} bytes) is not inside the application area of a 4 MB flash; fix the batch's partition table",
                    p.offset, p.size
                ),
            ));
        }
        Ok(p)
    }

    /// The image for `bundle`, or why it cannot be made (a partition without room, say).
    fn image(&self, bundle: &Bundle<'_>) -> Result<Zeroizing<Vec<u8>>, DeviceError> {
        let step = Step::Command("FLASH_BEGIN (esp_secure_cert)");
        let partition = self.check_partition(step)?;
        let mut image = match (
            bundle.certificate_pem,
            bundle.ca_chain_pem,
            bundle.private_key,
            bundle.symmetric_key,
        ) {
            (Some(cert), Some(chain), Some(key), None) => {
                let key = SecretKey::from_slice(key.expose()).map_err(|_| {
                    self.input(step, "the station-made key is not a P-256 scalar".into())
                })?;
                let key_pem = key
                    .to_pkcs8_pem(LineEnding::LF)
                    .map_err(|e| self.input(step, format!("cannot encode the key: {e}")))?;
                let inputs = SecureCertInputs {
                    ca_pem: first_pem(chain).to_string(),
                    device_pem: cert.to_string(),
                    key_pem: SecretString::new(key_pem.as_str()),
                    id_scope: bundle.config.id_scope.clone(),
                    endpoint: bundle.config.global_endpoint.clone(),
                    registration_id: bundle.config.registration_id.clone(),
                };
                SecureCertImage::from_inputs(&inputs)
            }
            (None, None, None, Some(key)) => symmetric::symmetric_image(key.expose(), bundle.config),
            _ => {
                return Err(self.unsupported(
                    step,
                    "an identity other than a station-made key with its certificate and CA, or a symmetric key (use mode x509-inject, symmetric-group or symmetric-individual)",
                ));
            }
        }
        .map_err(|e| self.input(step, e.to_string()))?;
        let bytes = image.to_bytes(partition.size as usize);
        symmetric::wipe(&mut image);
        let image = bytes.map_err(|e| match e {
            SecureCertError::NoRoom { needed, size } => self.input(
                step,
                format!(
                    "the identity takes {needed} bytes but the esp_secure_cert partition at 0x{:X} holds {size}; give the batch a partition table with a larger esp_secure_cert partition (and flash the same table to the product)",
                    partition.offset
                ),
            ),
            other => self.input(step, other.to_string()),
        })?;
        Ok(Zeroizing::new(image))
    }
}

/// The first PEM block of a chain (the device certificate's issuer).
fn first_pem(chain: &str) -> &str {
    const END: &str = "-----END CERTIFICATE-----";
    match chain.find(END) {
        Some(at) => &chain[..at + END.len()],
        None => chain,
    }
}

/// SHA-256 of a PEM certificate's DER (the form-independent digest: the image re-encodes PEM).
fn cert_digest(pem: &str) -> Option<String> {
    x509_parser::pem::parse_x509_pem(pem.trim().as_bytes())
        .ok()
        .map(|(_, p)| sha256_hex(&p.contents))
}

fn config_digest(config: &DeviceConfig) -> String {
    DeviceConfig {
        extra: Default::default(),
        ..config.clone()
    }
    .digest_hex()
}

/// The digests of what an image holds (the key as the SHA-256 of its public point, the form the
/// station computes from the key it made).
fn image_digests(image: &SecureCertImage) -> Digests {
    let mut d = Digests::new();
    for (held, t) in [
        (Held::Certificate, TYPE_DEV_CERT),
        (Held::CaChain, TYPE_CA_CERT),
    ] {
        if let Some(digest) = image.text(t).as_deref().and_then(cert_digest) {
            d.insert(held, digest);
        }
    }
    if let Some(key) = image.text(TYPE_PRIV_KEY).map(SecretString::new) {
        let text = key.expose().trim();
        let secret = SecretKey::from_sec1_pem(text).or_else(|_| {
            use p256::pkcs8::DecodePrivateKey;
            SecretKey::from_pkcs8_pem(text)
        });
        if let Ok(secret) = secret {
            d.insert(
                Held::DeviceKey,
                sha256_hex(&secret.public_key().to_sec1_bytes()),
            );
        }
    }
    if let Some(key) = symmetric::symmetric_key(image) {
        d.insert(Held::SymmetricKey, symmetric::key_digest(&key));
    }
    if let (Some(scope), Some(endpoint), Some(rid)) = (
        image.text(TYPE_ID_SCOPE),
        image.text(TYPE_ENDPOINT),
        image.text(TYPE_REGISTRATION_ID),
    ) {
        let config = DeviceConfig {
            registration_id: rid,
            id_scope: scope,
            global_endpoint: endpoint,
            extra: Default::default(),
        };
        d.insert(Held::Config, config_digest(&config));
    }
    d
}

impl DeviceDriver for Esp32Driver {
    fn port(&self) -> &str {
        self.loader.port_name()
    }

    fn family(&self) -> Family {
        Family::Esp32
    }

    fn identify(&mut self) -> Result<DeviceInfo, DeviceError> {
        // Asked again on a kept port: the device written last is let go first (it runs its
        // application, so it no longer answers SYNC while it stays in the slot), and whatever
        // answers now is synced afresh.
        if self.wrote {
            self.wrote = false;
            if self.loader.run_app(RELEASE_WAIT).is_err() {
                tracing::debug!(port = %self.port_name(), "the previous ESP32 had already left the bootloader");
            }
        }
        self.synced = false;
        self.connect()?;
        let mac = self.mac()?;
        self.efuses = None;
        let efuses = self.efuse_state()?;
        self.efuses = Some(efuses);
        let mut capabilities = Family::Esp32.capabilities();
        if self.options.burn_flash_encryption {
            capabilities.lock = LockKind::Permanent;
        }
        tracing::debug!(port = %self.port_name(), ?efuses, "esp32 identified");
        Ok(DeviceInfo {
            family: Family::Esp32,
            model: "ESP32".into(),
            serial: hex::encode_upper(mac),
            hardware_id: mac
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(":"),
            firmware: "rom-bootloader".into(),
            boot_counter: 0,
            capabilities,
            locked: efuses.flash_encryption || efuses.secure_boot,
        })
    }

    fn ping(&mut self) -> Result<Duration, DeviceError> {
        self.connect()?;
        let started = Instant::now();
        self.loader.read_reg(reg::CHIP_DETECT_MAGIC)?;
        Ok(started.elapsed())
    }

    fn generate_key(&mut self, _cn: &str, _overwrite: bool) -> Result<GeneratedKey, DeviceError> {
        Err(self.unsupported(
            Step::Keygen,
            "key generation (the ROM bootloader makes no key: use mode x509-inject)",
        ))
    }

    fn csr(&mut self, _subject_cn: &str) -> Result<Vec<u8>, DeviceError> {
        Err(self.unsupported(Step::Csr, "a CSR (the ROM bootloader makes no key)"))
    }

    fn endorsement_key(&mut self) -> Result<TpmEk, DeviceError> {
        Err(self.unsupported(Step::TpmEk, "a TPM endorsement key"))
    }

    fn store(&mut self, bundle: &Bundle<'_>) -> Result<Stored, DeviceError> {
        self.connect()?;
        let image = self.image(bundle)?;
        let digests = self.digests_of(bundle)?;
        let partition = self.options.partition;
        if !bundle.overwrite {
            let head = self
                .loader
                .read_flash(partition.offset, rom::READ_SLOW_BLOCK)?;
            if head.iter().any(|&b| b != 0xFF) {
                return Err(DeviceError::Occupied {
                    port: self.port_name(),
                    what: format!(
                        "data in its esp_secure_cert partition at 0x{:X}",
                        partition.offset
                    ),
                });
            }
        }
        self.wrote = true;
        // The erase leaves the partition 0xFF: only the entries cross the wire, and the MD5 below
        // covers the whole partition, erased tail included.
        let used = image.iter().rposition(|&b| b != 0xFF).map_or(0, |i| i + 1);
        self.loader
            .write_flash_deflated(partition.offset, partition.size, &image[..used])?;
        let expected = hex::encode(<md5::Md5 as md5::Digest>::digest(&image[..]));
        let reported = self.loader.flash_md5(partition.offset, partition.size)?;
        if reported != expected {
            return Err(DeviceError::Mismatch {
                port: self.port_name(),
                step: Step::Command("SPI_FLASH_MD5 (esp_secure_cert)"),
                reported,
                expected,
            });
        }
        Ok(Stored {
            digests,
            config: Family::Esp32.capabilities().config,
        })
    }

    fn digests_of(&self, bundle: &Bundle<'_>) -> Result<Digests, DeviceError> {
        let mut d = Digests::new();
        if let Some(digest) = bundle.certificate_pem.and_then(cert_digest) {
            d.insert(Held::Certificate, digest);
        }
        if let Some(digest) = bundle.ca_chain_pem.map(first_pem).and_then(cert_digest) {
            d.insert(Held::CaChain, digest);
        }
        if let Some(key) = bundle.symmetric_key {
            d.insert(Held::SymmetricKey, symmetric::key_digest(key.expose()));
        }
        d.insert(Held::Config, config_digest(bundle.config));
        Ok(d)
    }

    fn read_back(&mut self) -> Result<Holdings, DeviceError> {
        self.connect()?;
        let partition = self.options.partition;
        // Walk the entries as the firmware does, each header giving its entry's length, and stop
        // where no header follows (erased flash): only the written region crosses the wire, in
        // the ROM's 64-byte reads. The MD5 at the write covered the whole partition.
        let size = partition.size as usize;
        let mut bytes = Zeroizing::new(Vec::with_capacity(size));
        let mut at = 0usize;
        loop {
            let need = (at + HEADER_LEN).min(size);
            while bytes.len() < need {
                let n = rom::READ_SLOW_BLOCK.min(size - bytes.len());
                let chunk = self
                    .loader
                    .read_flash(partition.offset + bytes.len() as u32, n)?;
                bytes.extend_from_slice(&chunk);
            }
            if need < at + HEADER_LEN || bytes[at..at + 4] != TLV_MAGIC.to_le_bytes() {
                break;
            }
            let len = usize::from(u16::from_le_bytes([bytes[at + 10], bytes[at + 11]]));
            at += HEADER_LEN + len + padding(len) + FOOTER_LEN;
            if at >= size {
                break;
            }
        }
        // What was not read is taken as erased, as the firmware's reader stops at the last entry.
        bytes.resize(size, 0xFF);
        let digests = match SecureCertImage::parse(&bytes) {
            Ok(image) => image_digests(&image),
            Err(_) => Digests::new(),
        };
        let efuses = match self.efuses {
            Some(known) => known,
            None => self.efuse_state()?,
        };
        Ok(Holdings {
            digests,
            locked: efuses.flash_encryption || efuses.secure_boot,
        })
    }

    fn lock(&mut self) -> Result<(), DeviceError> {
        if !self.options.burn_flash_encryption {
            return Err(self.unsupported(
                Step::Lock,
                "a lock without the batch's explicit eFuse option (burn_flash_encryption)",
            ));
        }
        self.connect()?;
        if self.efuse_state()?.flash_encryption {
            return Ok(());
        }
        // Block-0 program sequence: the bit into the write register, EFUSE_CONF 0x5A5A, CMD PGM,
        // then reload (CONF 0x5AA5, CMD READ) so the read registers show it.
        tracing::warn!(port = %self.port_name(), "burning the ESP32 flash-encryption eFuse (permanent)");
        self.loader.write_reg(reg::EFUSE_WDATA_BASE, 1 << 20)?;
        self.loader
            .write_reg(reg::EFUSE_CONF, reg::EFUSE_CONF_WRITE)?;
        self.loader.write_reg(reg::EFUSE_CMD, reg::EFUSE_CMD_PGM)?;
        self.loader.write_reg(reg::EFUSE_CONF, 0x5AA5)?;
        self.loader.write_reg(reg::EFUSE_CMD, 0x1)?;
        self.efuses = None;
        let burnt = self.efuse_state()?;
        self.efuses = Some(burnt);
        if !burnt.flash_encryption {
            return Err(DeviceError::Protocol {
                port: self.port_name(),
                step: Step::Lock,
                reason: "the flash-encryption eFuse does not read back as burnt; take the device off the line and check it with espefuse summary".into(),
            });
        }
        Ok(())
    }

    fn factory_reset(&mut self) -> Result<(), DeviceError> {
        self.connect()?;
        let partition = self.check_partition(Step::Reset)?;
        // An erase with nothing written after it.
        self.loader
            .write_flash(partition.offset, partition.size, &[])?;
        self.wrote = true;
        Ok(())
    }
}

impl Drop for Esp32Driver {
    fn drop(&mut self) {
        // Leave the bootloader so the chip runs what was written; a failure here is only logged:
        // the write was already verified, and the fixture's reset does the same.
        if self.wrote && self.loader.run_app(RELEASE_WAIT).is_err() {
            tracing::warn!(port = %self.port_name(), "could not take the ESP32 out of the bootloader");
        }
    }
}
