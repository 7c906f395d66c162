//! The `zephyr-smp` driver against the simulated SMP server over a pseudo-terminal: identify, the
//! application's key generation, file uploads checked by SHA-256, settings, read-back, and the bad
//! input the issue names (a bad CRC, a reboot in the middle of a write, an occupied slot).

use std::time::Duration;

use dps_station::device::DeviceError;
use dps_station::device::driver::{Bundle, DeviceConfig, DeviceDriver, Family, GeneratedKey, Held};
use dps_station::device::simulator::{SmpFaults, SmpSim};
use dps_station::device::smp::driver::{CA_FILE, CERT_FILE, SmpOptions, ZephyrSmpDriver};

type Driver = ZephyrSmpDriver<Box<dyn serialport::SerialPort>>;

fn device(faults: SmpFaults) -> (SmpSim, Driver) {
    let sim = SmpSim::on_pty(9, faults).unwrap();
    let options = SmpOptions {
        reply: Duration::from_secs(2),
        ..SmpOptions::default()
    };
    let mut driver = ZephyrSmpDriver::open(sim.path(), options).unwrap();
    assert!(
        driver.wait_for_boot(Duration::from_secs(2)).unwrap(),
        "boot banner"
    );
    (sim, driver)
}

fn device_config(rid: &str) -> DeviceConfig {
    DeviceConfig {
        registration_id: rid.into(),
        id_scope: "0ne00000002".into(),
        global_endpoint: "global.azure-devices-provisioning.net".into(),
        extra: Default::default(),
    }
}

fn keygen_and_chain(driver: &mut Driver, rid: &str, overwrite: bool) -> (String, String) {
    let GeneratedKey::Csr { der, attestation } = driver.generate_key(rid, overwrite).unwrap()
    else {
        panic!("dps keygen answers the CSR");
    };
    assert!(attestation.is_none());
    let chain = super::common::issue_chain(der);
    let split =
        chain.find("-----END CERTIFICATE-----").unwrap() + "-----END CERTIFICATE-----\n".len();
    (chain[..split].to_string(), chain[split..].to_string())
}

#[test]
fn identify_keygen_upload_settings_and_read_back() {
    let (sim, mut driver) = device(SmpFaults::default());
    let info = driver.identify().unwrap();
    assert_eq!(info.family, Family::ZephyrSmp);
    assert_eq!(info.serial, sim.with_device(|d| d.devid()));
    assert_eq!(info.model, "nrf52840dk");
    let (cert, ca) = keygen_and_chain(&mut driver, "zreg-1", false);
    let config = device_config("zreg-1");
    let bundle = Bundle {
        certificate_pem: Some(&cert),
        ca_chain_pem: Some(&ca),
        private_key: None,
        symmetric_key: None,
        config: &config,
        overwrite: false,
    };
    let stored = driver.store(&bundle).unwrap();
    assert!(stored.digests.contains_key(&Held::Config));
    let holdings = driver.read_back().unwrap();
    assert!(
        holdings.differences(&stored.digests).is_empty(),
        "{holdings:?}"
    );
    assert_eq!(
        sim.with_device(|d| d.file(CERT_FILE).map(<[u8]>::to_vec)),
        Some(cert.as_bytes().to_vec())
    );
    assert_eq!(
        sim.with_device(|d| d.saved_setting("dps/scope").map(<[u8]>::to_vec)),
        Some(b"0ne00000002".to_vec()),
        "settings saved"
    );
    // Never overwritten unless chosen; a second key is refused the same way.
    let err = driver.store(&bundle).unwrap_err();
    assert!(matches!(err, DeviceError::Occupied { .. }), "{err}");
    let err = driver.generate_key("zreg-1", false).unwrap_err();
    assert!(matches!(err, DeviceError::Occupied { .. }), "{err}");
    keygen_and_chain(&mut driver, "zreg-1", true);
    driver.factory_reset().unwrap();
    assert!(driver.read_back().unwrap().digests.is_empty());
    assert!(sim.with_device(|d| d.file(CA_FILE).is_none()));
}

#[test]
fn bad_frames_reboots_and_occupied_slots_end_in_a_message() {
    // A reply whose CRC does not match: a protocol error naming the CRC, never a hang.
    let (_sim, mut driver) = device(SmpFaults {
        bad_crc_reply: Some(1),
        ..SmpFaults::default()
    });
    let err = driver.identify().unwrap_err();
    assert!(err.to_string().contains("CRC"), "{err}");

    // A reboot in the middle of an upload: the write is not reported stored.
    let (sim, mut driver) = device(SmpFaults {
        reboot_on_upload: Some(1),
        ..SmpFaults::default()
    });
    driver.identify().unwrap();
    let (cert, ca) = keygen_and_chain(&mut driver, "zreg-2", false);
    let config = device_config("zreg-2");
    let bundle = Bundle {
        certificate_pem: Some(&cert),
        ca_chain_pem: Some(&ca),
        private_key: None,
        symmetric_key: None,
        config: &config,
        overwrite: false,
    };
    let err = driver.store(&bundle).unwrap_err();
    assert!(matches!(err, DeviceError::Restarted { .. }), "{err}");
    assert!(driver.take_boot_seen());
    assert_ne!(
        sim.with_device(|d| d.file(CERT_FILE).map(<[u8]>::to_vec)),
        Some(cert.as_bytes().to_vec()),
        "not stored whole"
    );

    // A certificate already on the device: refused before anything is written.
    let (sim, mut driver) = device(SmpFaults {
        preloaded_certificate: true,
        ..SmpFaults::default()
    });
    driver.identify().unwrap();
    let (cert, ca) = keygen_and_chain(&mut driver, "zreg-3", false);
    let config = device_config("zreg-3");
    let err = driver
        .store(&Bundle {
            certificate_pem: Some(&cert),
            ca_chain_pem: Some(&ca),
            private_key: None,
            symmetric_key: None,
            config: &config,
            overwrite: false,
        })
        .unwrap_err();
    assert!(err.to_string().contains(CERT_FILE), "{err}");
    assert!(
        sim.with_device(|d| d.file(CA_FILE).is_none()),
        "nothing written"
    );
}
