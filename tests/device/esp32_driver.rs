//! The `esp32` driver against the simulated ROM bootloader over a pseudo-terminal: the MAC as the
//! serial, the `esp_secure_cert` image written, MD5-checked and read back as the firmware reads
//! it, the chip let go out of the bootloader; the eFuse policy; and the bad inputs: a chip that
//! does not sync, a flash write that fails MD5, a partition without room, a partition in use.

use std::path::Path;

use dps_station::device::driver::LockKind;
use dps_station::device::esp32::driver::{Esp32Driver, Esp32Options};
use dps_station::device::esp32::partitions::SecureCertPartition;
use dps_station::device::esp32::secure_cert::{
    SecureCertImage, TYPE_ID_SCOPE, TYPE_PRIV_KEY, TYPE_REGISTRATION_ID,
};
use dps_station::device::simulator::{Esp32Faults, Esp32Sim};
use dps_station::device::{Bundle, DeviceConfig, DeviceDriver, DeviceError, Held};
use dps_station::secret::SecretBytes;
use p256::SecretKey;
use p256::elliptic_curve::Generate;

/// A CA, and a leaf for a fresh station-made key with `sans` DNS names (to make it large).
struct Identity {
    leaf: String,
    chain: String,
    key: SecretKey,
}

fn identity(cn: &str, sans: usize) -> Identity {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "esp32 test CA");
    let issuer = rcgen::CertifiedIssuer::self_signed(ca, ca_key).unwrap();
    let key = SecretKey::generate();
    let pkcs8 = p256::pkcs8::EncodePrivateKey::to_pkcs8_der(&key).unwrap();
    let key_pair = rcgen::KeyPair::try_from(pkcs8.as_bytes()).unwrap();
    let names: Vec<String> = (0..sans)
        .map(|i| format!("device-{i}.a-rather-long-product-domain.example.com"))
        .collect();
    let mut params = rcgen::CertificateParams::new(names).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    let leaf = params.signed_by(&key_pair, &issuer).unwrap().pem();
    Identity {
        leaf,
        chain: issuer.pem(),
        key,
    }
}

fn config(rid: &str) -> DeviceConfig {
    DeviceConfig {
        registration_id: rid.into(),
        id_scope: "0ne00000E32".into(),
        global_endpoint: "global.azure-devices-provisioning.net".into(),
        extra: Default::default(),
    }
}

fn store(
    driver: &mut Esp32Driver,
    id: &Identity,
    config: &DeviceConfig,
    overwrite: bool,
) -> Result<dps_station::device::Stored, DeviceError> {
    let scalar = SecretBytes::new(id.key.to_bytes().to_vec());
    driver.store(&Bundle {
        certificate_pem: Some(&id.leaf),
        ca_chain_pem: Some(&id.chain),
        private_key: Some(&scalar),
        symmetric_key: None,
        config,
        overwrite,
    })
}

fn sim(dir: &Path, index: usize, faults: Esp32Faults) -> Esp32Sim {
    Esp32Sim::on_pty(index, dir, faults).unwrap()
}

#[test]
fn the_identity_is_written_verified_read_back_and_the_chip_let_go() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim(dir.path(), 11, Esp32Faults::default());
    let mut driver = Esp32Driver::open(sim.path(), Esp32Options::default()).unwrap();
    let info = driver.identify().unwrap();
    let mac = sim.with_chip(|c| c.mac());
    assert_eq!(info.serial, hex::encode_upper(mac));
    assert!(!info.locked);
    assert_eq!(
        info.capabilities.lock,
        LockKind::None,
        "no lock unless the batch asks"
    );

    let id = identity("esp32-dev-11", 0);
    let cfg = config("esp32-dev-11");
    let (sent_before, _) = driver.byte_counts();
    let stored = store(&mut driver, &id, &cfg, false).unwrap();
    let (sent_after, received_before) = driver.byte_counts();
    let holdings = driver.read_back().unwrap();
    assert!(holdings.differences(&stored.digests).is_empty());
    // Compressed, the write sends fewer bytes than the entries hold; the read-back reads the
    // entries only (64 bytes and about 26 of framing per READ_FLASH_SLOW), not the partition.
    let flash = sim.with_chip(|c| c.read_flash(0xD000, 0x2000).unwrap());
    let used = flash.iter().rposition(|&b| b != 0xFF).unwrap() + 1;
    assert!(
        sent_after - sent_before < used as u64,
        "{} sent for {used}",
        sent_after - sent_before
    );
    let read = driver.byte_counts().1 - received_before;
    assert!(
        read < (used as u64 / 64 + 4) * 100,
        "{read} bytes read back for {used} written"
    );
    let public = id.key.public_key().to_sec1_bytes();
    assert_eq!(
        holdings.digests.get(&Held::DeviceKey),
        Some(&dps_station::device::protocol::sha256_hex(&public))
    );

    // What the firmware reads at 0xD000 is the identity, the key a P-256 key in plain.
    let image = sim.with_chip(|c| c.read_flash(0xD000, 0x2000).unwrap());
    let parsed = SecureCertImage::parse(&image).unwrap();
    assert_eq!(parsed.text(TYPE_REGISTRATION_ID).unwrap(), "esp32-dev-11");
    assert_eq!(parsed.text(TYPE_ID_SCOPE).unwrap(), "0ne00000E32");
    assert!(
        parsed
            .text(TYPE_PRIV_KEY)
            .unwrap()
            .contains("EC PRIVATE KEY")
    );

    // A second write without re-provisioning is refused: the partition holds an identity.
    let again = store(&mut driver, &id, &cfg, false).unwrap_err();
    assert!(matches!(again, DeviceError::Occupied { .. }), "{again}");
    assert!(again.to_string().contains("esp_secure_cert"), "{again}");

    assert_eq!(sim.with_chip(|c| c.runs()), 0);
    // A slot keeps its port and asks again for the next device: the chip written last is let go
    // first (it runs its application), so it no longer answers while it stays in the slot.
    let next = driver.identify().unwrap_err();
    assert!(matches!(next, DeviceError::NoAnswer { .. }), "{next}");
    assert_eq!(
        sim.with_chip(|c| c.runs()),
        1,
        "FLASH_END run: out of the bootloader"
    );
    assert!(!sim.with_chip(|c| c.in_download_mode()));
    drop(driver);
    assert_eq!(sim.with_chip(|c| c.runs()), 1, "let go once");
}

#[test]
fn a_driver_dropped_after_a_write_lets_the_chip_go() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim(dir.path(), 17, Esp32Faults::default());
    let mut driver = Esp32Driver::open(sim.path(), Esp32Options::default()).unwrap();
    driver.identify().unwrap();
    let id = identity("esp32-dev-17", 0);
    store(&mut driver, &id, &config("esp32-dev-17"), false).unwrap();
    drop(driver);
    assert_eq!(
        sim.with_chip(|c| c.runs()),
        1,
        "FLASH_END run before the port closed"
    );
}

#[test]
fn a_chip_that_does_not_sync_is_named_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Esp32Faults {
        no_sync: true,
        ..Esp32Faults::default()
    };
    let sim = sim(dir.path(), 12, faults);
    let mut driver = Esp32Driver::open(sim.path(), Esp32Options::default()).unwrap();
    let err = driver.identify().unwrap_err().to_string();
    assert!(err.contains(sim.path()) && err.contains("SYNC"), "{err}");
    assert!(err.contains("download mode"), "{err}");
}

#[test]
fn a_flash_write_that_fails_md5_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Esp32Faults {
        bad_flash_write: true,
        ..Esp32Faults::default()
    };
    let sim = sim(dir.path(), 13, faults);
    let mut driver = Esp32Driver::open(sim.path(), Esp32Options::default()).unwrap();
    driver.identify().unwrap();
    let id = identity("esp32-dev-13", 0);
    let err = store(&mut driver, &id, &config("esp32-dev-13"), false).unwrap_err();
    assert!(matches!(err, DeviceError::Mismatch { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains(sim.path()) && text.contains("SPI_FLASH_MD5"),
        "{text}"
    );
}

#[test]
fn a_partition_without_room_is_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim(dir.path(), 14, Esp32Faults::default());
    let options = Esp32Options {
        partition: SecureCertPartition {
            offset: 0x10000,
            size: 0x1000,
        },
        ..Esp32Options::default()
    };
    let mut driver = Esp32Driver::open(sim.path(), options).unwrap();
    driver.identify().unwrap();
    let id = identity("esp32-dev-14", 60);
    let err = store(&mut driver, &id, &config("esp32-dev-14"), false).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, DeviceError::Input { .. }), "{text}");
    assert!(
        text.contains("0x10000") && text.contains("holds 4096") && text.contains("partition table"),
        "{text}"
    );
    let flash = sim.with_chip(|c| c.read_flash(0x10000, 0x1000).unwrap());
    assert!(flash.iter().all(|&b| b == 0xFF), "nothing written");
}

#[test]
fn the_efuse_state_says_locked_and_burning_needs_the_batch_option() {
    let dir = tempfile::tempdir().unwrap();
    let encrypted = sim(
        dir.path(),
        15,
        Esp32Faults {
            flash_encryption: true,
            ..Esp32Faults::default()
        },
    );
    let mut driver = Esp32Driver::open(encrypted.path(), Esp32Options::default()).unwrap();
    assert!(driver.identify().unwrap().locked);
    drop(driver);

    let plain = sim(dir.path(), 16, Esp32Faults::default());
    let mut driver = Esp32Driver::open(plain.path(), Esp32Options::default()).unwrap();
    driver.identify().unwrap();
    assert!(driver.lock().is_err(), "no burn without the option");
    drop(driver);
    assert!(plain.with_chip(|c| c.burns().is_empty()));

    let options = Esp32Options {
        burn_flash_encryption: true,
        ..Esp32Options::default()
    };
    let mut driver = Esp32Driver::open(plain.path(), options).unwrap();
    let info = driver.identify().unwrap();
    assert_eq!(info.capabilities.lock, LockKind::Permanent);
    assert!(!info.locked);
    driver.lock().unwrap();
    assert!(driver.read_back().unwrap().locked);
    assert_eq!(plain.with_chip(|c| c.burns().len()), 1);
}

#[test]
fn a_symmetric_key_is_written_in_user_data_4_and_compared_by_digest() {
    use dps_station::device::esp32::symmetric::{TYPE_SYMMETRIC_KEY, symmetric_key};
    let dir = tempfile::tempdir().unwrap();
    let sim = sim(dir.path(), 18, Esp32Faults::default());
    let mut driver = Esp32Driver::open(sim.path(), Esp32Options::default()).unwrap();
    driver.identify().unwrap();
    let key = SecretBytes::new((0u8..32).collect());
    let cfg = config("esp32-sym-18");
    let bundle = Bundle {
        certificate_pem: None,
        ca_chain_pem: None,
        private_key: None,
        symmetric_key: Some(&key),
        config: &cfg,
        overwrite: false,
    };
    let stored = driver.store(&bundle).unwrap();
    assert!(stored.digests.contains_key(&Held::SymmetricKey));
    let holdings = driver.read_back().unwrap();
    assert!(holdings.differences(&stored.digests).is_empty());
    let image = sim.with_chip(|c| c.read_flash(0xD000, 0x2000).unwrap());
    let parsed = SecureCertImage::parse(&image).unwrap();
    assert_eq!(symmetric_key(&parsed).unwrap().as_slice(), key.expose());
    assert!(parsed.entry(TYPE_PRIV_KEY).is_none() && parsed.entry(TYPE_SYMMETRIC_KEY).is_some());
    assert_eq!(parsed.text(TYPE_REGISTRATION_ID).unwrap(), "esp32-sym-18");

    // The read-back of another key differs (what the pipeline refuses a device for).
    let other = SecretBytes::new(vec![7; 32]);
    let expected = driver
        .digests_of(&Bundle {
            symmetric_key: Some(&other),
            ..bundle
        })
        .unwrap();
    assert!(!holdings.differences(&expected).is_empty());

    // Neither a certificate with its key nor a symmetric key: nothing to write, said so.
    let err = driver
        .store(&Bundle {
            symmetric_key: None,
            overwrite: true,
            ..bundle
        })
        .unwrap_err();
    assert!(matches!(err, DeviceError::Unsupported { .. }), "{err}");
}
