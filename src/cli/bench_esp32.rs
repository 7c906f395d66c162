//! `bench serial --family esp32`: one device through the `esp32` driver against the simulated ROM
//! bootloader (sync, chip and MAC, eFuses, flash attach, the `esp_secure_cert` image written
//! compressed and checked by MD5, its entries read back and compared, out of the bootloader). The
//! station's key and certificate are made before the clock starts, as issuing is not the wire's
//! time.

use std::time::{Duration, Instant};

use anyhow::bail;
use dps_station::device::esp32::driver::{Esp32Driver, Esp32Options};
use dps_station::device::simulator::{Esp32Faults, Esp32Sim};
use dps_station::device::{Bundle, DeviceConfig, DeviceDriver};
use dps_station::secret::SecretBytes;
use p256::SecretKey;
use p256::elliptic_curve::Generate;

/// A scratch directory for the simulated chips' flash files (4 MB each), removed when dropped.
pub struct ScratchDir(std::path::PathBuf);

impl ScratchDir {
    /// Makes `$TMPDIR/dps-bench-esp32-<pid>`.
    pub fn new() -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("dps-bench-esp32-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| {
            anyhow::anyhow!("cannot make the scratch directory {}: {e}", dir.display())
        })?;
        Ok(Self(dir))
    }

    /// The directory.
    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Time of one device's exchange and its bytes on the wire (both ways).
pub fn exchange(
    flash_dir: &std::path::Path,
    index: usize,
    baud: Option<u32>,
    client_baud: u32,
    issuer: &rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
) -> anyhow::Result<(Duration, u64)> {
    let sim = Esp32Sim::on_pty(
        index,
        flash_dir,
        Esp32Faults {
            baud,
            ..Esp32Faults::default()
        },
    )?;
    let mut driver = Esp32Driver::open(
        sim.path(),
        Esp32Options {
            baud: client_baud,
            ..Esp32Options::default()
        },
    )?;
    let key = SecretKey::generate();
    let key_pair =
        rcgen::KeyPair::try_from(p256::pkcs8::EncodePrivateKey::to_pkcs8_der(&key)?.as_bytes())?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("bench-esp32-{index}"));
    let leaf = params.signed_by(&key_pair, issuer)?.pem();
    let chain = issuer.pem();
    let scalar = SecretBytes::new(key.to_bytes().to_vec());
    let config = DeviceConfig {
        registration_id: format!("bench-esp32-{index}"),
        id_scope: "0ne00000A0A".into(),
        global_endpoint: "global.azure-devices-provisioning.net".into(),
        extra: Default::default(),
    };
    let started = Instant::now();
    driver.identify()?;
    let stored = driver.store(&Bundle {
        certificate_pem: Some(&leaf),
        ca_chain_pem: Some(&chain),
        private_key: Some(&scalar),
        symmetric_key: None,
        config: &config,
        overwrite: false,
    })?;
    let holdings = driver.read_back()?;
    let differences = holdings.differences(&stored.digests);
    if !differences.is_empty() {
        bail!("read-back differs: {differences:?}");
    }
    let (sent, received) = driver.byte_counts();
    drop(driver);
    Ok((started.elapsed(), sent + received))
}
