//! The simulated firmware's command logic: what a device running the line protocol v1 does with
//! each frame. Kept apart from the wire (faults, pacing) so it reads like the reference firmware.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use p256::SecretKey;
use p256::elliptic_curve::Generate;
use p256::pkcs8::{EncodePrivateKey, EncodePublicKey};
use zeroize::Zeroizing;

use super::flash::Flash;
use crate::device::frame::{Frame, UNSOLICITED_ID};
use crate::device::protocol::{
    ErrorCode, Item, MAX_CONFIG_EXTRAS, MAX_ITEM, b64_decode, b64_encode, caps, config_digest_hex,
    sha256_hex,
};
use crate::device::session::{self, SessionKey};

/// How long a factory-reset nonce stays valid.
const RESET_WINDOW: Duration = Duration::from_secs(10);
/// How often a busy device says `BUSY`.
const BUSY_EVERY: Duration = Duration::from_millis(500);

/// Behaviour switches of the simulated firmware.
#[derive(Debug, Clone)]
pub struct FirmwareOptions {
    /// Extra time KEYGEN takes (a slow secure element).
    pub keygen_delay: Duration,
    /// Whether the device has a TPM.
    pub tpm: bool,
    /// Whether the factory reset is guarded by a physical input that is *not* asserted.
    pub reset_guarded: bool,
    /// A vendor-provisioned secure element the device carries (Trust&GO), answered by `SE-INFO`.
    pub secure_element: Option<crate::device::driver::SecureElementInfo>,
}

impl Default for FirmwareOptions {
    fn default() -> Self {
        Self {
            keygen_delay: Duration::ZERO,
            tpm: true,
            reset_guarded: false,
            secure_element: None,
        }
    }
}

struct Transfer {
    total: usize,
    data: Vec<u8>,
}

/// RAM state: lost at every reboot.
#[derive(Default)]
struct Ram {
    session: Option<SessionKey>,
    last_secret_id: Option<u32>,
    transfer: Option<Transfer>,
    cache: Option<(Vec<u8>, Frame)>,
    reset_nonce: Option<(String, Instant)>,
}

/// One simulated device's firmware.
pub struct Firmware {
    flash: Arc<Mutex<Flash>>,
    flash_path: Option<PathBuf>,
    options: FirmwareOptions,
    ram: Ram,
}

type Reply = Result<Frame, (ErrorCode, &'static str)>;

impl Firmware {
    /// Boots: increments the boot counter and returns the firmware with its `BOOT` frame.
    pub fn boot(
        flash: Arc<Mutex<Flash>>,
        flash_path: Option<PathBuf>,
        options: FirmwareOptions,
    ) -> (Self, Frame) {
        let mut fw = Self {
            flash,
            flash_path,
            options,
            ram: Ram::default(),
        };
        let frame = fw.reboot();
        (fw, frame)
    }

    /// Loses RAM state, counts a boot, and returns the `BOOT` frame a device prints at start.
    pub fn reboot(&mut self) -> Frame {
        self.ram = Ram::default();
        let boot = self.edit(|f| {
            f.boot_counter += 1;
            f.boot_counter
        });
        Frame::new(UNSOLICITED_ID, "BOOT").with("boot", boot.unwrap_or(0).to_string())
    }

    fn read<T>(&self, f: impl FnOnce(&Flash) -> T) -> T {
        let guard = self.flash.lock().unwrap_or_else(|p| p.into_inner());
        f(&guard)
    }

    /// Changes flash and writes the file; `Err` is a storage failure.
    fn edit<T>(&self, f: impl FnOnce(&mut Flash) -> T) -> Result<T, (ErrorCode, &'static str)> {
        let mut guard = self.flash.lock().unwrap_or_else(|p| p.into_inner());
        let out = f(&mut guard);
        if let Some(path) = &self.flash_path {
            guard
                .save(path)
                .map_err(|_| (ErrorCode::Storage, "flash write failed"))?;
        }
        Ok(out)
    }

    /// Answers one frame. `send` carries frames out at once (`BUSY` while working); the final
    /// reply is returned so the caller can send it. A retransmitted request (same bytes) gets the
    /// cached reply without running again: that is what makes retries idempotent.
    pub fn handle(&mut self, request: &Frame, send: &mut dyn FnMut(&Frame)) -> Frame {
        let key = request.encode().unwrap_or_default();
        if let Some((cached_key, reply)) = &self.ram.cache
            && *cached_key == key
        {
            return reply.clone();
        }
        if request.id == UNSOLICITED_ID {
            return error(
                UNSOLICITED_ID,
                ErrorCode::BadFrame,
                "request id 0 is reserved",
            );
        }
        let id = request.id;
        let reply = match request.verb.as_str() {
            "HELLO" => self.hello(request),
            "PING" => Ok(Frame::new(id, "OK")),
            "KEYGEN" => self.keygen(id, send),
            "CSR" => self.csr(request),
            "SESSION" => self.session(request),
            "PUT" => self.put(request),
            "CONFIG" => self.config(request),
            "READBACK" => Ok(self.readback(id)),
            "TPM-EK" => self.tpm_ek(id),
            "SE-INFO" => match &self.options.secure_element {
                Some(se) => Ok(Frame::new(id, "OK")
                    .with("serial", se.serial.clone())
                    .with("key", b64_encode(&se.public_key))),
                None => Err((ErrorCode::Unsupported, "this device has no secure element")),
            },
            "LOCK" => self.lock(id),
            "RESET" => self.reset(request),
            _ => Err((ErrorCode::UnknownCommand, "unknown command")),
        };
        let reply = reply.unwrap_or_else(|(code, detail)| error(id, code, detail));
        if request.verb != "RESET" {
            self.ram.reset_nonce = None;
        }
        self.ram.cache = Some((key, reply.clone()));
        reply
    }

    fn hello(&self, request: &Frame) -> Reply {
        let offered = request.get("v").unwrap_or("1");
        if !offered.split(',').any(|v| v == "1") {
            return Ok(error(
                request.id,
                ErrorCode::Version,
                "this firmware speaks protocol 1",
            )
            .with("supported", "1"));
        }
        let mut capabilities = vec![
            caps::P256_KEYGEN,
            caps::CSR,
            caps::ENCRYPTED_INJECTION,
            caps::SYMMETRIC_KEY,
            caps::LOCK,
        ];
        if self.options.tpm {
            capabilities.insert(2, caps::TPM_EK);
        }
        if self.options.secure_element.is_some() {
            capabilities.push(caps::SECURE_ELEMENT);
        }
        Ok(self.read(|f| {
            Frame::new(request.id, "OK")
                .with("proto", "1")
                .with("model", f.model.clone())
                .with("serial", f.serial.clone())
                .with("hwid", f.hardware_id.clone())
                .with("fw", f.firmware.clone())
                .with("boot", f.boot_counter.to_string())
                .with("caps", capabilities.join(","))
                .with("max", crate::device::frame::MAX_FRAME.to_string())
                .with("locked", if f.locked { "1" } else { "0" })
        }))
    }

    fn locked(&self) -> Result<(), (ErrorCode, &'static str)> {
        if self.read(|f| f.locked) {
            Err((ErrorCode::Locked, "device is locked"))
        } else {
            Ok(())
        }
    }

    fn keygen(&mut self, id: u32, send: &mut dyn FnMut(&Frame)) -> Reply {
        self.locked()?;
        let until = Instant::now() + self.options.keygen_delay;
        while Instant::now() < until {
            send(&Frame::new(id, "BUSY"));
            std::thread::sleep(BUSY_EVERY.min(until.saturating_duration_since(Instant::now())));
        }
        let key = SecretKey::generate_from_rng(&mut rand::rng());
        let scalar = Zeroizing::new(hex::encode(key.to_bytes()));
        self.edit(|f| f.key = Some(scalar.to_string()))?;
        Ok(Frame::new(id, "OK")
            .with("alg", "p256")
            .with("pub", b64_encode(&session::point(&key.public_key()))))
    }

    fn device_key(&self) -> Option<SecretKey> {
        let hex_key = self.read(|f| f.key.clone())?;
        let bytes = Zeroizing::new(hex::decode(hex_key).ok()?);
        SecretKey::from_slice(&bytes).ok()
    }

    fn csr(&self, request: &Frame) -> Reply {
        let key = self
            .device_key()
            .ok_or((ErrorCode::NoKey, "no device key: run KEYGEN first"))?;
        let cn = request
            .get("cn")
            .and_then(b64_decode)
            .and_then(|b| String::from_utf8(b).ok())
            .filter(|cn| !cn.is_empty() && cn.len() <= 128)
            .ok_or((
                ErrorCode::BadArg,
                "cn= must be base64 of 1-128 bytes of UTF-8",
            ))?;
        let der = key
            .to_pkcs8_der()
            .map_err(|_| (ErrorCode::Internal, "key encoding failed"))?;
        let pair = rcgen::KeyPair::try_from(der.as_bytes())
            .map_err(|_| (ErrorCode::Internal, "key load failed"))?;
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        let csr = params
            .serialize_request(&pair)
            .map_err(|_| (ErrorCode::Internal, "CSR signing failed"))?;
        Ok(Frame::new(request.id, "OK").with("csr", b64_encode(csr.der())))
    }

    fn session(&mut self, request: &Frame) -> Reply {
        let station = request
            .get("pub")
            .and_then(b64_decode)
            .ok_or((ErrorCode::BadArg, "pub= must be base64"))?;
        let (device_pub, key, confirm) = session::device_accept(&station)
            .ok_or((ErrorCode::BadArg, "pub= is not a P-256 point"))?;
        self.ram.session = Some(key);
        self.ram.last_secret_id = None;
        Ok(Frame::new(request.id, "OK")
            .with("pub", b64_encode(&device_pub))
            .with("confirm", b64_encode(&confirm)))
    }

    fn put(&mut self, request: &Frame) -> Reply {
        self.locked()?;
        let id = request.id;
        let item = request
            .get("item")
            .and_then(Item::from_wire)
            .ok_or((ErrorCode::BadArg, "unknown item="))?;
        let number = |k: &str| request.get(k).and_then(|v| v.parse::<usize>().ok());
        let (Some(off), Some(total)) = (number("off"), number("total")) else {
            return Err((ErrorCode::BadArg, "off= and total= must be numbers"));
        };
        let data = request
            .get("data")
            .and_then(b64_decode)
            .ok_or((ErrorCode::BadArg, "data= must be base64"))?;
        if total > MAX_ITEM {
            return Err((ErrorCode::TooLarge, "item larger than 16384 bytes"));
        }
        if item.is_secret() {
            if request.get("enc") != Some("aes256gcm") {
                return Err((
                    ErrorCode::PlaintextRefused,
                    "secrets are accepted only inside a SESSION",
                ));
            }
            let session = self
                .ram
                .session
                .as_ref()
                .ok_or((ErrorCode::NoSession, "open a SESSION first"))?;
            if self.ram.last_secret_id.is_some_and(|last| id <= last) {
                return Err((
                    ErrorCode::Sequence,
                    "request id must increase within a session",
                ));
            }
            if off != 0 || total != data.len() {
                return Err((ErrorCode::BadArg, "a secret item travels in one chunk"));
            }
            let plain = session
                .open(id, item.wire_name(), &data)
                .ok_or((ErrorCode::Decrypt, "ciphertext does not authenticate"))?;
            self.ram.last_secret_id = Some(id);
            let digest = match item {
                Item::PrivateKey => {
                    let key = SecretKey::from_slice(&plain)
                        .map_err(|_| (ErrorCode::BadArg, "not a P-256 scalar"))?;
                    let scalar = Zeroizing::new(hex::encode(plain.as_slice()));
                    self.edit(|f| f.key = Some(scalar.to_string()))?;
                    sha256_hex(&session::point(&key.public_key()))
                }
                _ => {
                    if plain.is_empty() || plain.len() > 64 {
                        return Err((ErrorCode::BadArg, "a symmetric key is 1-64 bytes"));
                    }
                    let hex_key = Zeroizing::new(hex::encode(plain.as_slice()));
                    self.edit(|f| f.symmetric_key = Some(hex_key.to_string()))?;
                    sha256_hex(&plain)
                }
            };
            return Ok(Frame::new(id, "OK")
                .with("stored", item.wire_name())
                .with("sha256", digest));
        }
        if off == 0 {
            self.ram.transfer = Some(Transfer {
                total,
                data: Vec::with_capacity(total),
            });
        }
        let transfer = match self.ram.transfer.as_mut() {
            Some(t) if t.total == total && t.data.len() == off => t,
            _ => {
                return Err((
                    ErrorCode::Sequence,
                    "chunk out of order; restart the item at off=0",
                ));
            }
        };
        if transfer.data.len() + data.len() > total {
            return Err((ErrorCode::BadArg, "chunk runs past total="));
        }
        transfer.data.extend_from_slice(&data);
        if transfer.data.len() < total {
            return Ok(Frame::new(id, "OK").with("next", transfer.data.len().to_string()));
        }
        let done = self.ram.transfer.take().map(|t| t.data).unwrap_or_default();
        let digest = sha256_hex(&done);
        self.edit(|f| f.chain = Some(b64_encode(&done)))?;
        Ok(Frame::new(id, "OK")
            .with("stored", "chain")
            .with("sha256", digest))
    }

    fn config(&mut self, request: &Frame) -> Reply {
        self.locked()?;
        let mut fields = Vec::new();
        for key in ["regid", "scope", "endpoint"] {
            let value = request.get(key).filter(|v| !v.is_empty()).ok_or((
                ErrorCode::BadArg,
                "regid=, scope= and endpoint= are required",
            ))?;
            fields.push((key.to_string(), value.to_string()));
        }
        let mut extras: Vec<(String, String)> = request
            .fields
            .iter()
            .filter(|(k, _)| k.starts_with("x."))
            .cloned()
            .collect();
        if extras.len() > MAX_CONFIG_EXTRAS {
            return Err((ErrorCode::TooLarge, "at most 8 extra key/values"));
        }
        if extras.iter().any(|(_, v)| b64_decode(v).is_none()) {
            return Err((ErrorCode::BadArg, "x.* values must be base64"));
        }
        extras.sort();
        fields.extend(extras);
        let digest = config_digest_hex(&fields);
        self.edit(|f| f.config = Some(fields))?;
        Ok(Frame::new(request.id, "OK").with("sha256", digest))
    }

    fn readback(&self, id: u32) -> Frame {
        let key = self
            .device_key()
            .map(|k| sha256_hex(&session::point(&k.public_key())));
        self.read(|f| {
            let chain = f
                .chain
                .as_deref()
                .and_then(b64_decode)
                .map(|c| sha256_hex(&c));
            let sym = f
                .symmetric_key
                .as_deref()
                .and_then(|h| hex::decode(h).ok())
                .map(|k| sha256_hex(&Zeroizing::new(k)));
            let config = f.config.as_ref().map(|c| config_digest_hex(c));
            let dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
            Frame::new(id, "OK")
                .with("key", dash(key))
                .with("chain", dash(chain))
                .with("symmetric-key", dash(sym))
                .with("config", dash(config))
                .with("locked", if f.locked { "1" } else { "0" })
        })
    }

    fn tpm_ek(&mut self, id: u32) -> Reply {
        if !self.options.tpm {
            return Err((ErrorCode::Unsupported, "this device has no TPM"));
        }
        let existing = self
            .read(|f| f.tpm_ek.clone())
            .and_then(|h| hex::decode(h).ok())
            .and_then(|b| SecretKey::from_slice(&b).ok());
        let ek = match existing {
            Some(k) => k,
            None => {
                let k = SecretKey::generate_from_rng(&mut rand::rng());
                let scalar = Zeroizing::new(hex::encode(k.to_bytes()));
                self.edit(|f| f.tpm_ek = Some(scalar.to_string()))?;
                k
            }
        };
        let der = ek
            .public_key()
            .to_public_key_der()
            .map_err(|_| (ErrorCode::Internal, "EK encoding failed"))?;
        let suggestion = sha256_hex(der.as_bytes())[..32].to_string();
        Ok(Frame::new(id, "OK")
            .with("ek", b64_encode(der.as_bytes()))
            .with("regid", suggestion))
    }

    fn lock(&mut self, id: u32) -> Reply {
        self.edit(|f| f.locked = true)?;
        self.ram.session = None;
        Ok(Frame::new(id, "OK").with("locked", "1"))
    }

    fn reset(&mut self, request: &Frame) -> Reply {
        let id = request.id;
        let Some(nonce) = request.get("nonce") else {
            let nonce = hex::encode(rand::random::<[u8; 16]>());
            self.ram.reset_nonce = Some((nonce.clone(), Instant::now()));
            return Ok(Frame::new(id, "OK").with("nonce", nonce));
        };
        let valid = matches!(&self.ram.reset_nonce, Some((n, at)) if n == nonce && at.elapsed() < RESET_WINDOW);
        self.ram.reset_nonce = None;
        let serial_ok = self.read(|f| request.get("serial") == Some(f.serial.as_str()));
        if !valid || !serial_ok {
            return Err((
                ErrorCode::BadArg,
                "RESET needs the nonce of the previous RESET and the device serial",
            ));
        }
        if self.options.reset_guarded {
            return Err((ErrorCode::Guarded, "the reset input is not asserted"));
        }
        self.edit(|f| {
            f.key = None;
            f.chain = None;
            f.symmetric_key = None;
            f.config = None;
            f.locked = false;
        })?;
        self.ram.session = None;
        self.ram.transfer = None;
        Ok(Frame::new(id, "OK").with("wiped", "1"))
    }
}

fn error(id: u32, code: ErrorCode, detail: &str) -> Frame {
    Frame::new(id, "ERR")
        .with("code", code.as_str())
        .with("detail", b64_encode(detail.as_bytes()))
}

/// The `ERR` frame a device sends (id 0) for a line it could not take as a frame.
pub fn line_error(code: ErrorCode) -> Frame {
    Frame::new(UNSOLICITED_ID, "ERR").with("code", code.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::simulator::FaultRng;

    /// The simulated firmware answers every well-formed frame, however odd its fields, without
    /// panicking: a bounded, seeded run over every verb with random and boundary values
    /// (`LOCK` is left out so that the write paths stay reachable for the whole run).
    #[test]
    fn answers_random_frames_without_panicking() {
        let flash = Arc::new(Mutex::new(Flash::factory(0)));
        let (mut fw, _) = Firmware::boot(flash, None, FirmwareOptions::default());
        let mut rng = FaultRng::new(99);
        let verbs = [
            "HELLO", "PING", "KEYGEN", "CSR", "SESSION", "PUT", "CONFIG", "READBACK", "TPM-EK",
            "RESET", "SE-INFO", "X",
        ];
        let keys = [
            "v", "cn", "pub", "item", "off", "total", "data", "enc", "regid", "scope", "endpoint",
            "x.a", "nonce", "serial",
        ];
        let values = [
            "",
            "0",
            "1",
            "18446744073709551615",
            "16385",
            "chain",
            "private-key",
            "symmetric-key",
            "aes256gcm",
            "AAAA",
            "=",
            "BFFc",
            "-1",
        ];
        for id in 1..3000u32 {
            let mut frame = Frame::new(id, verbs[(rng.next_u64() % verbs.len() as u64) as usize]);
            for _ in 0..(rng.next_u64() % 6) {
                let key = keys[(rng.next_u64() % keys.len() as u64) as usize];
                let value = values[(rng.next_u64() % values.len() as u64) as usize];
                frame = frame.with(key, value);
            }
            let reply = fw.handle(&frame, &mut |_| {});
            assert!(reply.verb == "OK" || reply.verb == "ERR", "{reply}");
            assert!(reply.encode().is_ok(), "every reply fits a frame: {reply}");
        }
    }
}
