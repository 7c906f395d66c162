//! The `station` family: our own line protocol ([`LineClient`]) behind [`DeviceDriver`].
//!
//! The device announces what it can do in `HELLO caps=`; secrets travel inside a `SESSION`; the
//! chain is one item (certificate and CA chain as one PEM text); `READBACK` reports the public
//! key's digest, the chain's, the symmetric key's and the config's; `LOCK` is undone only by the
//! guarded `RESET`.

use std::io::{Read, Write};
use std::time::Duration;

use p256::SecretKey;

use super::client::LineClient;
use super::driver::{
    Bundle, Capabilities, DeviceDriver, DeviceInfo, Digests, Family, GeneratedKey, Held, Holdings,
    Injection, KeyGeneration, LockKind, Stored, TpmEk,
};
use super::error::{DeviceError, Step};
use super::protocol::{caps, sha256_hex};
use super::replies::Hello;

/// What a device that said `hello` can do: its family's capabilities, less what it did not
/// announce.
fn announced(hello: &Hello) -> Capabilities {
    let family = Family::Station.capabilities();
    let encrypted = if hello.has(caps::ENCRYPTED_INJECTION) {
        Injection::Encrypted
    } else {
        Injection::None
    };
    Capabilities {
        key_generation: if hello.has(caps::P256_KEYGEN) && hello.has(caps::CSR) {
            family.key_generation
        } else {
            KeyGeneration::None
        },
        private_key_injection: encrypted,
        symmetric_key: if hello.has(caps::SYMMETRIC_KEY) {
            encrypted
        } else {
            Injection::None
        },
        endorsement_key: hello.has(caps::TPM_EK),
        lock: if hello.has(caps::LOCK) {
            family.lock
        } else {
            LockKind::None
        },
        ..family
    }
}

/// The chain as our protocol stores it: the certificate, then the CA chain, one PEM text.
fn chain_text(bundle: &Bundle<'_>) -> Option<String> {
    match (bundle.certificate_pem, bundle.ca_chain_pem) {
        (None, None) => None,
        (cert, chain) => Some(format!(
            "{}{}",
            cert.unwrap_or_default(),
            chain.unwrap_or_default()
        )),
    }
}

impl<W: Read + Write + Send> DeviceDriver for LineClient<W> {
    fn port(&self) -> &str {
        LineClient::port(self)
    }

    fn family(&self) -> Family {
        Family::Station
    }

    fn identify(&mut self) -> Result<DeviceInfo, DeviceError> {
        let hello = self.hello()?;
        Ok(DeviceInfo {
            family: Family::Station,
            capabilities: announced(&hello),
            model: hello.model,
            serial: hello.serial,
            hardware_id: hello.hardware_id,
            firmware: hello.firmware,
            boot_counter: hello.boot_counter,
            locked: hello.locked,
        })
    }

    fn ping(&mut self) -> Result<Duration, DeviceError> {
        LineClient::ping(self)
    }

    // KEYGEN replaces the key of an unlocked device; a locked one refuses it.
    fn generate_key(
        &mut self,
        _subject_cn: &str,
        _overwrite: bool,
    ) -> Result<GeneratedKey, DeviceError> {
        self.keygen().map(GeneratedKey::Public)
    }

    fn csr(&mut self, subject_cn: &str) -> Result<Vec<u8>, DeviceError> {
        LineClient::csr(self, subject_cn)
    }

    fn endorsement_key(&mut self) -> Result<TpmEk, DeviceError> {
        self.tpm_ek()
    }

    fn secure_element(&mut self) -> Result<super::driver::SecureElementInfo, DeviceError> {
        self.se_info()
    }

    fn store(&mut self, bundle: &Bundle<'_>) -> Result<Stored, DeviceError> {
        // Our protocol refuses writes to a locked device; an unlocked one is rewritten as a whole,
        // so `overwrite` needs nothing here (the station only re-provisions after a reset).
        let digests = self.digests_of(bundle)?;
        if bundle.private_key.is_some() || bundle.symmetric_key.is_some() {
            self.open_session()?;
        }
        if let Some(key) = bundle.private_key {
            self.put_private_key(key)?;
        }
        if let Some(key) = bundle.symmetric_key {
            self.put_symmetric_key(key)?;
        }
        if let Some(chain) = chain_text(bundle) {
            self.put_certificate_chain(chain.as_bytes())?;
        }
        self.config(bundle.config)?;
        Ok(Stored {
            digests,
            config: Family::Station.capabilities().config,
        })
    }

    fn digests_of(&self, bundle: &Bundle<'_>) -> Result<Digests, DeviceError> {
        let mut digests = Digests::new();
        if let Some(key) = bundle.private_key {
            let key = SecretKey::from_slice(key.expose()).map_err(|_| DeviceError::Input {
                port: LineClient::port(self).to_string(),
                step: Step::PutPrivateKey,
                reason: "the private key is not a valid 32-byte P-256 scalar".into(),
            })?;
            digests.insert(
                Held::DeviceKey,
                sha256_hex(&super::session::point(&key.public_key())),
            );
        }
        if let Some(key) = bundle.symmetric_key {
            digests.insert(Held::SymmetricKey, sha256_hex(key.expose()));
        }
        if let Some(chain) = chain_text(bundle) {
            digests.insert(Held::Certificate, sha256_hex(chain.as_bytes()));
        }
        digests.insert(Held::Config, bundle.config.digest_hex());
        Ok(digests)
    }

    fn read_back(&mut self) -> Result<Holdings, DeviceError> {
        let readback = self.readback()?;
        let digests = [
            (Held::DeviceKey, readback.key),
            (Held::Certificate, readback.chain),
            (Held::SymmetricKey, readback.symmetric_key),
            (Held::Config, readback.config),
        ]
        .into_iter()
        .filter_map(|(item, digest)| digest.map(|d| (item, d)))
        .collect();
        Ok(Holdings {
            digests,
            locked: readback.locked,
        })
    }

    fn lock(&mut self) -> Result<(), DeviceError> {
        LineClient::lock(self)
    }

    fn factory_reset(&mut self) -> Result<(), DeviceError> {
        LineClient::factory_reset(self)
    }

    fn wait_for_boot(&mut self, wait: Duration) -> Result<bool, DeviceError> {
        LineClient::wait_for_boot(self, wait)
    }

    fn take_boot_seen(&mut self) -> bool {
        LineClient::take_boot_seen(self)
    }
}
