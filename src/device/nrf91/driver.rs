//! The `nrf91` family's driver: an nRF91 modem's AT security commands behind [`DeviceDriver`].
//!
//! - identify: `AT+CMEE=1` (numeric errors), `AT+CGSN` (the IMEI, the device's serial),
//!   `AT+CGMM` (model), `AT+CGMR` (modem firmware), `AT%ATTESTTOKEN` (the device UUID, its
//!   hardware id), then `AT+CFUN=4`: credential commands need the modem offline.
//! - key: `AT%KEYGEN=<sec_tag>,2,0,"CN=<registration ID>"` answers the CSR and a COSE_Sign1 over
//!   its digest; the driver checks the digest, the station checks the CSR.
//! - store: `AT%CMNG=0,<sec_tag>,<type>,"<text>"`: 0 the CA chain, 1 the client certificate,
//!   2 an injected private key (PEM), 3 a PSK (hex) with 4 its identity (the registration ID).
//!   Every line is checked against the 4 KB AT limit before the first is sent, and a type the
//!   sec_tag already holds is refused unless overwriting was chosen.
//! - read back: `AT%CMNG=1,<sec_tag>` lists each credential with the SHA-256 of its text as
//!   stored; the driver's digests are over exactly the text it put between the quotes.
//! - no lock: the AT interface has none (the station records the device done once verified);
//!   factory reset deletes the sec_tag's credentials (`AT%CMNG=3`).
//! - the ID scope and global endpoint have no modem command: the product firmware carries them
//!   (the batch report says so), and the registration ID is the certificate's CN.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use p256::SecretKey;
use p256::pkcs8::EncodePrivateKey;
use zeroize::Zeroizing;

use super::at::AtPort;
use super::cose;
use crate::device::driver::{
    Bundle, ConfigStorage, DeviceDriver, DeviceInfo, Digests, Family, GeneratedKey, Held, Holdings,
    KeyAttestation, Stored, TpmEk,
};
use crate::device::error::{DeviceError, Step};
use crate::device::protocol::sha256_hex;

/// The sec_tag the station uses unless told otherwise: one of the application's own range
/// (Nordic reserves 2147483648 and above).
pub const DEFAULT_SEC_TAG: u32 = 16842753;

/// How the driver talks to the modem.
#[derive(Debug, Clone)]
pub struct Nrf91Options {
    /// The sec_tag the credentials go in.
    pub sec_tag: u32,
    /// UART speed.
    pub baud: u32,
    /// Reply timeout of ordinary commands.
    pub reply: Duration,
    /// Reply timeout of `%KEYGEN` (the modem takes a few seconds).
    pub keygen: Duration,
}

impl Default for Nrf91Options {
    fn default() -> Self {
        Self {
            sec_tag: DEFAULT_SEC_TAG,
            baud: 115_200,
            reply: Duration::from_secs(5),
            keygen: Duration::from_secs(30),
        }
    }
}

/// `%CMNG` credential types.
mod cred {
    pub const CA_CHAIN: u8 = 0;
    pub const CLIENT_CERT: u8 = 1;
    pub const PRIVATE_KEY: u8 = 2;
    pub const PSK: u8 = 3;
    pub const PSK_IDENTITY: u8 = 4;
}

fn held_of(kind: u8) -> Option<Held> {
    match kind {
        cred::CA_CHAIN => Some(Held::CaChain),
        cred::CLIENT_CERT => Some(Held::Certificate),
        cred::PRIVATE_KEY => Some(Held::DeviceKey),
        cred::PSK => Some(Held::SymmetricKey),
        _ => None,
    }
}

fn kind_name(kind: u8) -> &'static str {
    match kind {
        cred::CA_CHAIN => "a CA chain",
        cred::CLIENT_CERT => "a client certificate",
        cred::PRIVATE_KEY => "a private key",
        cred::PSK => "a PSK",
        cred::PSK_IDENTITY => "a PSK identity",
        _ => "a credential",
    }
}

/// A credential to write: its type and its text (secret for keys, zeroized on drop).
struct Credential {
    kind: u8,
    text: Zeroizing<String>,
}

/// An nRF91 modem on one port.
pub struct Nrf91Driver<W> {
    at: AtPort<W>,
    options: Nrf91Options,
}

impl Nrf91Driver<Box<dyn serialport::SerialPort>> {
    /// Opens `port` at `options.baud`.
    pub fn open(port: &str, options: Nrf91Options) -> Result<Self, DeviceError> {
        let wire = crate::device::transport::open(port, options.baud)?;
        Ok(Self::new(port, wire, options))
    }
}

impl<W: Read + Write + Send> Nrf91Driver<W> {
    /// A driver over an already open port.
    pub fn new(port: &str, wire: W, options: Nrf91Options) -> Self {
        Self {
            at: AtPort::new(port, wire),
            options,
        }
    }

    /// Bytes (sent, received) on the wire so far.
    pub fn byte_counts(&self) -> (u64, u64) {
        self.at.byte_counts()
    }

    fn cmd(&mut self, name: &'static str, command: &str) -> Result<Vec<String>, DeviceError> {
        let timeout = self.options.reply;
        self.at.command(name, command, timeout)
    }

    fn protocol(&self, name: &'static str, reason: impl Into<String>) -> DeviceError {
        DeviceError::Protocol {
            port: self.at.port().to_string(),
            step: Step::Command(name),
            reason: reason.into(),
        }
    }

    /// The one information line a query answers (the last, as Nordic's tools read it).
    fn query(&mut self, name: &'static str) -> Result<String, DeviceError> {
        self.cmd(name, name)?
            .pop()
            .ok_or_else(|| self.protocol(name, "an answer without a value"))
    }

    /// The quoted value of the `<prefix>: "..."` line among `lines`.
    fn quoted(
        &self,
        name: &'static str,
        lines: &[String],
        prefix: &str,
    ) -> Result<String, DeviceError> {
        lines
            .iter()
            .find_map(|l| l.strip_prefix(prefix))
            .and_then(|rest| rest.split('"').nth(1))
            .map(str::to_string)
            .ok_or_else(|| self.protocol(name, format!("no {prefix} \"...\" line")))
    }

    /// The credentials in our sec_tag: type → SHA-256 (lowercase hex) as the modem reports it.
    fn list(&mut self) -> Result<Vec<(u8, String)>, DeviceError> {
        let name = "AT%CMNG=1";
        let tag = self.options.sec_tag;
        let lines = self.cmd(name, &format!("AT%CMNG=1,{tag}"))?;
        let mut out = Vec::new();
        for line in lines {
            let Some(rest) = line.strip_prefix("%CMNG:") else {
                continue;
            };
            let mut fields = rest.split(',').map(|f| f.trim().trim_matches('"'));
            let (Some(t), Some(k)) = (fields.next(), fields.next()) else {
                return Err(self.protocol(name, format!("a listing line without a type: {line}")));
            };
            let (Ok(t), Ok(k)) = (t.parse::<u32>(), k.parse::<u8>()) else {
                return Err(
                    self.protocol(name, format!("a listing line that is not numbers: {line}"))
                );
            };
            if t == tag {
                out.push((k, fields.next().unwrap_or_default().to_ascii_lowercase()));
            }
        }
        Ok(out)
    }

    fn credentials(&self, bundle: &Bundle<'_>) -> Result<Vec<Credential>, DeviceError> {
        let text = |s: &str| Zeroizing::new(s.trim_end().to_string());
        let mut out = Vec::new();
        if let Some(chain) = bundle.ca_chain_pem {
            out.push(Credential {
                kind: cred::CA_CHAIN,
                text: text(chain),
            });
        }
        if let Some(cert) = bundle.certificate_pem {
            out.push(Credential {
                kind: cred::CLIENT_CERT,
                text: text(cert),
            });
        }
        if let Some(key) = bundle.private_key {
            let key = SecretKey::from_slice(key.expose()).map_err(|_| DeviceError::Input {
                port: self.at.port().to_string(),
                step: Step::Command("AT%CMNG=0"),
                reason: "the private key is not a valid 32-byte P-256 scalar".into(),
            })?;
            let pem =
                key.to_pkcs8_pem(p256::pkcs8::LineEnding::LF)
                    .map_err(|e| DeviceError::Input {
                        port: self.at.port().to_string(),
                        step: Step::Command("AT%CMNG=0"),
                        reason: format!("cannot encode the private key: {e}"),
                    })?;
            out.push(Credential {
                kind: cred::PRIVATE_KEY,
                text: Zeroizing::new(pem.trim_end().to_string()),
            });
        }
        if let Some(key) = bundle.symmetric_key {
            out.push(Credential {
                kind: cred::PSK,
                text: Zeroizing::new(hex::encode(key.expose())),
            });
            out.push(Credential {
                kind: cred::PSK_IDENTITY,
                text: text(&bundle.config.registration_id),
            });
        }
        for c in &out {
            if c.text.contains('"') {
                return Err(DeviceError::Input {
                    port: self.at.port().to_string(),
                    step: Step::Command("AT%CMNG=0"),
                    reason: format!(
                        "{} holds a '\"', which an AT string cannot carry",
                        kind_name(c.kind)
                    ),
                });
            }
        }
        Ok(out)
    }

    fn write_line(&self, c: &Credential) -> Zeroizing<String> {
        Zeroizing::new(format!(
            "AT%CMNG=0,{},{},\"{}\"",
            self.options.sec_tag,
            c.kind,
            c.text.as_str()
        ))
    }
}

fn digests(credentials: &[Credential]) -> Digests {
    credentials
        .iter()
        .filter_map(|c| held_of(c.kind).map(|h| (h, sha256_hex(c.text.as_bytes()))))
        .collect()
}

impl<W: Read + Write + Send> DeviceDriver for Nrf91Driver<W> {
    fn port(&self) -> &str {
        self.at.port()
    }

    fn family(&self) -> Family {
        Family::Nrf91
    }

    fn identify(&mut self) -> Result<DeviceInfo, DeviceError> {
        // A modem just plugged in prints its banner, maybe while this first command crosses.
        let timeout = self.options.reply;
        self.at.first_command("AT+CMEE=1", "AT+CMEE=1", timeout)?;
        let imei = self.query("AT+CGSN")?;
        if imei.len() != 15 || !imei.bytes().all(|b| b.is_ascii_digit()) {
            return Err(self.protocol("AT+CGSN", "the answer is not a 15-digit IMEI"));
        }
        let model = self.query("AT+CGMM")?;
        let firmware = self.query("AT+CGMR")?;
        let name = "AT%ATTESTTOKEN";
        let lines = self.cmd(name, name)?;
        let token = self.quoted(name, &lines, "%ATTESTTOKEN:")?;
        let body = token
            .split('.')
            .next()
            .and_then(cose::b64url_decode)
            .ok_or_else(|| self.protocol(name, "the token is not base64url"))?;
        let uuid =
            cose::token_device_uuid(&body).map_err(|e| self.protocol(name, e.to_string()))?;
        // Offline: the modem refuses credential commands while its radio is on (518).
        self.cmd("AT+CFUN=4", "AT+CFUN=4")?;
        Ok(DeviceInfo {
            family: Family::Nrf91,
            model,
            serial: imei,
            hardware_id: cose::uuid_text(&uuid),
            firmware,
            boot_counter: 0,
            capabilities: Family::Nrf91.capabilities(),
            locked: false,
        })
    }

    fn ping(&mut self) -> Result<Duration, DeviceError> {
        let started = Instant::now();
        self.cmd("AT", "AT")?;
        Ok(started.elapsed())
    }

    fn generate_key(
        &mut self,
        subject_cn: &str,
        overwrite: bool,
    ) -> Result<GeneratedKey, DeviceError> {
        let name = "AT%KEYGEN";
        if subject_cn.contains(['"', ',', '=']) {
            return Err(DeviceError::Input {
                port: self.at.port().to_string(),
                step: Step::Command(name),
                reason: format!("subject CN '{subject_cn}' holds a '\"', ',' or '='"),
            });
        }
        let tag = self.options.sec_tag;
        if !overwrite && self.list()?.iter().any(|(k, _)| *k == cred::PRIVATE_KEY) {
            return Err(DeviceError::Occupied {
                port: self.at.port().to_string(),
                what: format!("a private key in sec_tag {tag}"),
            });
        }
        let timeout = self.options.keygen;
        let lines = self.at.command(
            name,
            &format!("AT%KEYGEN={tag},2,0,\"CN={subject_cn}\""),
            timeout,
        )?;
        let answer = self.quoted(name, &lines, "%KEYGEN:")?;
        let (csr, attestation) = answer.split_once('.').ok_or_else(|| {
            self.protocol(name, "a truncated answer: no attestation after the CSR")
        })?;
        let der = cose::b64url_decode(csr)
            .filter(|d| !d.is_empty())
            .ok_or_else(|| self.protocol(name, "the CSR is not base64url"))?;
        let encoded = cose::b64url_decode(attestation)
            .filter(|d| !d.is_empty())
            .ok_or_else(|| {
                self.protocol(name, "a truncated answer: the attestation is not base64url")
            })?;
        let checked = cose::check_keygen_attestation(&encoded, &der)
            .map_err(|e| self.protocol(name, e.to_string()))?;
        if checked.sec_tag != tag {
            return Err(self.protocol(
                name,
                format!(
                    "the attestation names sec_tag {}, not {tag}",
                    checked.sec_tag
                ),
            ));
        }
        Ok(GeneratedKey::Csr {
            der,
            attestation: Some(KeyAttestation {
                encoded,
                device_uuid: Some(cose::uuid_text(&checked.device_uuid)),
            }),
        })
    }

    fn csr(&mut self, _subject_cn: &str) -> Result<Vec<u8>, DeviceError> {
        Err(DeviceError::Unsupported {
            port: self.at.port().to_string(),
            step: Step::Command("AT%KEYGEN"),
            capability: "a CSR apart from key generation (the modem answers %KEYGEN with it)",
        })
    }

    fn endorsement_key(&mut self) -> Result<TpmEk, DeviceError> {
        Err(DeviceError::Unsupported {
            port: self.at.port().to_string(),
            step: Step::TpmEk,
            capability: "a TPM endorsement key",
        })
    }

    fn store(&mut self, bundle: &Bundle<'_>) -> Result<Stored, DeviceError> {
        let credentials = self.credentials(bundle)?;
        // Every line must fit before the first is written: a chain that does not fit leaves the
        // device as it was.
        for c in &credentials {
            let line = self.write_line(c);
            if line.len() + 2 > super::at::MAX_AT_LINE {
                return Err(DeviceError::Input {
                    port: self.at.port().to_string(),
                    step: Step::Command("AT%CMNG=0"),
                    reason: format!(
                        "{} is {} bytes on the AT line, over the modem's {}-byte limit; nothing was written: shorten the CA chain (write only the issuing CA) or choose another family",
                        kind_name(c.kind),
                        line.len() + 2,
                        super::at::MAX_AT_LINE
                    ),
                });
            }
        }
        if !bundle.overwrite {
            let held = self.list()?;
            if let Some(c) = credentials
                .iter()
                .find(|c| held.iter().any(|(k, _)| *k == c.kind))
            {
                return Err(DeviceError::Occupied {
                    port: self.at.port().to_string(),
                    what: format!("{} in sec_tag {}", kind_name(c.kind), self.options.sec_tag),
                });
            }
        }
        for c in &credentials {
            let line = self.write_line(c);
            self.cmd("AT%CMNG=0", &line)?;
        }
        Ok(Stored {
            digests: digests(&credentials),
            config: ConfigStorage::CarriedByFirmware,
        })
    }

    fn digests_of(&self, bundle: &Bundle<'_>) -> Result<Digests, DeviceError> {
        Ok(digests(&self.credentials(bundle)?))
    }

    fn read_back(&mut self) -> Result<Holdings, DeviceError> {
        let digests = self
            .list()?
            .into_iter()
            .filter_map(|(k, sha)| held_of(k).map(|h| (h, sha)))
            .collect();
        Ok(Holdings {
            digests,
            locked: false,
        })
    }

    fn lock(&mut self) -> Result<(), DeviceError> {
        Err(DeviceError::Unsupported {
            port: self.at.port().to_string(),
            step: Step::Lock,
            capability: "a lock (the nRF91 AT interface has none)",
        })
    }

    fn factory_reset(&mut self) -> Result<(), DeviceError> {
        let tag = self.options.sec_tag;
        for (kind, _) in self.list()? {
            self.cmd("AT%CMNG=3", &format!("AT%CMNG=3,{tag},{kind}"))?;
        }
        Ok(())
    }

    fn wait_for_boot(&mut self, wait: Duration) -> Result<bool, DeviceError> {
        self.at.wait_for_ready(wait)
    }

    fn take_boot_seen(&mut self) -> bool {
        self.at.take_boot_seen()
    }
}
