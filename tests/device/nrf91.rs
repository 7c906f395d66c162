//! The `nrf91` driver against the simulated modem over a pseudo-terminal: identify, `%KEYGEN` with
//! its attestation, `%CMNG` writes read back by digest, and the bad input the issue names.

use std::time::Duration;

use dps_station::device::driver::{Bundle, DeviceConfig, DeviceDriver, GeneratedKey, Held};
use dps_station::device::nrf91::{Nrf91Driver, Nrf91Options};
use dps_station::device::simulator::{ModemFaults, Nrf91Sim};
use dps_station::device::{DeviceError, Family};
use dps_station::secret::SecretBytes;

type Driver = Nrf91Driver<Box<dyn serialport::SerialPort>>;

const TAG: u32 = 4242;

fn modem(faults: ModemFaults) -> (Nrf91Sim, Driver) {
    let sim = Nrf91Sim::on_pty(7, faults).unwrap();
    let options = Nrf91Options {
        sec_tag: TAG,
        reply: Duration::from_secs(2),
        ..Nrf91Options::default()
    };
    let driver = Nrf91Driver::open(sim.path(), options).unwrap();
    (sim, driver)
}

fn device_config(rid: &str) -> DeviceConfig {
    DeviceConfig {
        registration_id: rid.into(),
        id_scope: "0ne00000001".into(),
        global_endpoint: "global.azure-devices-provisioning.net".into(),
        extra: Default::default(),
    }
}

/// Keygen, then a certificate for the CSR's key, written and read back.
fn keygen_and_chain(driver: &mut Driver, rid: &str) -> (String, String) {
    let GeneratedKey::Csr { der, attestation } = driver.generate_key(rid, false).unwrap() else {
        panic!("an nRF91 answers %KEYGEN with the CSR");
    };
    let attestation = attestation.expect("the modem attests its CSR");
    assert!(attestation.device_uuid.is_some());
    let chain = super::common::issue_chain(der);
    let split =
        chain.find("-----END CERTIFICATE-----").unwrap() + "-----END CERTIFICATE-----\n".len();
    (chain[..split].to_string(), chain[split..].to_string())
}

#[test]
fn identify_keygen_store_and_read_back_by_the_modems_digests() {
    let (sim, mut driver) = modem(ModemFaults::default());
    let info = driver.identify().unwrap();
    assert_eq!(info.family, Family::Nrf91);
    assert_eq!(info.serial, sim.with_modem(|m| m.imei().to_string()));
    assert_eq!(info.serial.len(), 15);
    assert_eq!(
        info.hardware_id.len(),
        36,
        "the device UUID from %ATTESTTOKEN"
    );
    assert!(info.firmware.starts_with("mfw_nrf91"));
    assert!(!info.locked);

    let (cert, ca) = keygen_and_chain(&mut driver, "reg-1");
    let config = device_config("reg-1");
    let bundle = Bundle {
        certificate_pem: Some(&cert),
        ca_chain_pem: Some(&ca),
        private_key: None,
        symmetric_key: None,
        config: &config,
        overwrite: false,
    };
    let stored = driver.store(&bundle).unwrap();
    assert_eq!(stored.digests, driver.digests_of(&bundle).unwrap());
    let holdings = driver.read_back().unwrap();
    assert!(
        holdings.differences(&stored.digests).is_empty(),
        "{holdings:?}"
    );
    assert!(
        holdings.digests.contains_key(&Held::DeviceKey),
        "the key is listed"
    );
    // The modem holds the text as sent (without the trailing newline).
    let held = sim.with_modem(|m| m.credential(TAG, 1).map(str::to_string));
    assert_eq!(held.as_deref(), Some(cert.trim_end()));

    // A second write without re-provisioning is refused and changes nothing.
    let err = driver.store(&bundle).unwrap_err();
    assert!(matches!(err, DeviceError::Occupied { .. }), "{err}");
    assert!(err.to_string().contains("--reprovision"), "{err}");
    let err = driver.generate_key("reg-1", false).unwrap_err();
    assert!(matches!(err, DeviceError::Occupied { .. }), "{err}");
    // Re-provisioning replaces them; the factory reset empties the sec_tag.
    keygen_and_chain_overwrite(&mut driver);
    driver.factory_reset().unwrap();
    assert!(driver.read_back().unwrap().digests.is_empty());
    assert!(matches!(
        driver.lock(),
        Err(DeviceError::Unsupported { .. })
    ));
}

fn keygen_and_chain_overwrite(driver: &mut Driver) {
    assert!(matches!(
        driver.generate_key("reg-1", true),
        Ok(GeneratedKey::Csr { .. })
    ));
}

#[test]
fn injected_key_and_psk_are_written_as_the_modem_stores_them() {
    let (_sim, mut driver) = modem(ModemFaults::default());
    driver.identify().unwrap();
    let key = SecretBytes::new(vec![7u8; 32]);
    let psk = SecretBytes::new(vec![0xA5; 32]);
    let config = device_config("reg-2");
    let bundle = Bundle {
        certificate_pem: None,
        ca_chain_pem: None,
        private_key: Some(&key),
        symmetric_key: Some(&psk),
        config: &config,
        overwrite: false,
    };
    let stored = driver.store(&bundle).unwrap();
    assert!(stored.digests.contains_key(&Held::DeviceKey));
    assert!(stored.digests.contains_key(&Held::SymmetricKey));
    let holdings = driver.read_back().unwrap();
    assert!(holdings.differences(&stored.digests).is_empty());
}

#[test]
fn bad_modem_answers_end_in_a_message_never_a_hang() {
    // A bare ERROR.
    let (_sim, mut driver) = modem(ModemFaults {
        error_without_code: Some("AT+CGMR".into()),
        ..ModemFaults::default()
    });
    let err = driver.identify().unwrap_err();
    assert!(
        matches!(err, DeviceError::Modem { code: None, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("without a code"), "{err}");

    // A truncated %KEYGEN answer.
    let (_sim, mut driver) = modem(ModemFaults {
        truncated_keygen: true,
        ..ModemFaults::default()
    });
    driver.identify().unwrap();
    let err = driver.generate_key("reg-3", false).unwrap_err();
    assert!(err.to_string().contains("truncated"), "{err}");

    // An attestation naming another CSR.
    let (_sim, mut driver) = modem(ModemFaults {
        wrong_attestation_digest: true,
        ..ModemFaults::default()
    });
    driver.identify().unwrap();
    let err = driver.generate_key("reg-4", false).unwrap_err();
    assert!(err.to_string().contains("digest"), "{err}");

    // A credential slot already holding something: refused before anything is written.
    let (sim, mut driver) = modem(ModemFaults {
        preloaded_sec_tag: Some(TAG),
        ..ModemFaults::default()
    });
    driver.identify().unwrap();
    let (cert, ca) = keygen_and_chain(&mut driver, "reg-5");
    let config = device_config("reg-5");
    let bundle = Bundle {
        certificate_pem: Some(&cert),
        ca_chain_pem: Some(&ca),
        private_key: None,
        symmetric_key: None,
        config: &config,
        overwrite: false,
    };
    let err = driver.store(&bundle).unwrap_err();
    assert!(
        err.to_string().contains("client certificate in sec_tag"),
        "{err}"
    );
    assert!(
        sim.with_modem(|m| m.credential(TAG, 0).is_none()),
        "nothing written"
    );

    // A chain over the 4 KB AT line: refused before anything is written.
    let (sim, mut driver) = modem(ModemFaults::default());
    driver.identify().unwrap();
    let (cert, ca) = keygen_and_chain(&mut driver, "reg-6");
    let long = ca.repeat(8);
    let bundle = Bundle {
        ca_chain_pem: Some(&long),
        ..bundle
    };
    let bundle = Bundle {
        certificate_pem: Some(&cert),
        ..bundle
    };
    let err = driver.store(&bundle).unwrap_err();
    assert!(err.to_string().contains("4096-byte limit"), "{err}");
    assert!(
        sim.with_modem(|m| m.credential(TAG, 1).is_none()),
        "nothing written"
    );

    // A modem that reboots in the middle of a write: the write is not reported stored.
    let (sim, mut driver) = modem(ModemFaults {
        reboot_on_write: Some(2),
        ..ModemFaults::default()
    });
    driver.identify().unwrap();
    let (cert, ca) = keygen_and_chain(&mut driver, "reg-7");
    let config = device_config("reg-7");
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
    assert!(sim.with_modem(|m| m.credential(TAG, 1).is_none()));
    assert!(driver.take_boot_seen());
}
