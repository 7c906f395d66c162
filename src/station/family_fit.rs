//! Policy: whether a batch's mode fits what a device family can do. Checked for every slot's
//! family before the batch's first device (a misfit is refused with what to change), and again
//! for each device against what it announced.

use super::config::Mode;
use crate::device::driver::{Capabilities, Injection, KeyGeneration};

/// `Ok` when a device with `caps` can be provisioned in `mode`; else what it lacks, worded for the
/// operator. `plain_secrets` is the batch's explicit choice to send secrets in plain over a
/// trusted cable, which families without an encrypted channel need for injected keys.
pub fn mode_fits(mode: Mode, caps: &Capabilities, plain_secrets: bool) -> Result<(), String> {
    let injection = |what: &str, how: Injection| match how {
        Injection::Encrypted => Ok(()),
        Injection::Plain if plain_secrets => Ok(()),
        Injection::Plain => Err(format!(
            "it takes {what} only in plain over the cable; set plaintext_cable = true in batch.toml if the fixture's cable is trusted{}",
            if caps.key_generation == KeyGeneration::None {
                " (this family has no other way to receive a key)"
            } else {
                ", or use mode x509-csr"
            }
        )),
        Injection::None => Err(format!("it cannot take {what}; {}", other_modes(caps))),
    };
    match mode {
        Mode::X509Csr | Mode::X509Group => match caps.key_generation {
            KeyGeneration::None => Err(format!(
                "it cannot make its own key and CSR; {}",
                other_modes(caps)
            )),
            _ => Ok(()),
        },
        Mode::X509Inject => injection("a station-made private key", caps.private_key_injection),
        Mode::SymmetricGroup | Mode::SymmetricIndividual => {
            injection("a symmetric key", caps.symmetric_key)
        }
        Mode::Tpm => {
            if caps.endorsement_key {
                Ok(())
            } else {
                Err("it has no TPM endorsement key; use mode x509-csr".into())
            }
        }
    }
}

/// [`mode_fits`] for a batch: a manifest batch (`[manifest] require = true`) writes nothing to
/// the device, so its mode says only how the identities enroll and every family may come to the
/// line check (which refuses a device that cannot report its secure element).
pub fn batch_fits(batch: &super::config::BatchConfig, caps: &Capabilities) -> Result<(), String> {
    if batch.manifest_required {
        return Ok(());
    }
    mode_fits(batch.mode, caps, batch.plain_secrets)
}

/// The modes a family can do, as advice: an ESP32's ROM makes no key, so "use x509-csr" would
/// send the operator from one refusal to the next.
fn other_modes(caps: &Capabilities) -> String {
    let mut modes = Vec::new();
    if caps.key_generation != KeyGeneration::None {
        modes.push("x509-csr");
    }
    if caps.private_key_injection != Injection::None {
        modes.push("x509-inject");
    }
    if caps.symmetric_key != Injection::None {
        modes.push("a symmetric mode");
    }
    if caps.endorsement_key {
        modes.push("tpm");
    }
    match modes.as_slice() {
        [] => "this family fits no mode".into(),
        [one] => format!("use mode {one}"),
        _ => format!("use one of: {}", modes.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::driver::Family;

    #[test]
    fn each_family_fits_the_modes_it_can_do_and_says_why_not() {
        let station = Family::Station.capabilities();
        let nrf = Family::Nrf91.capabilities();
        for mode in [
            Mode::X509Csr,
            Mode::X509Inject,
            Mode::Tpm,
            Mode::SymmetricGroup,
        ] {
            assert_eq!(mode_fits(mode, &station, false), Ok(()), "{mode}");
        }
        assert_eq!(mode_fits(Mode::X509Csr, &nrf, false), Ok(()));
        let tpm = mode_fits(Mode::Tpm, &nrf, false).unwrap_err();
        assert!(tpm.contains("no TPM"), "{tpm}");
        let plain = mode_fits(Mode::X509Inject, &nrf, false).unwrap_err();
        assert!(plain.contains("plaintext_cable = true"), "{plain}");
        assert_eq!(mode_fits(Mode::SymmetricIndividual, &nrf, true), Ok(()));
        let esp32 = Family::Esp32.capabilities();
        let csr = mode_fits(Mode::X509Csr, &esp32, true).unwrap_err();
        assert!(
            csr.ends_with("use one of: x509-inject, a symmetric mode"),
            "{csr}"
        );
        let tpm = mode_fits(Mode::Tpm, &esp32, true).unwrap_err();
        assert!(tpm.contains("no TPM"), "{tpm}");
        assert_eq!(mode_fits(Mode::SymmetricGroup, &esp32, true), Ok(()));
        assert_eq!(mode_fits(Mode::SymmetricIndividual, &esp32, true), Ok(()));
        let sym = mode_fits(Mode::SymmetricGroup, &esp32, false).unwrap_err();
        assert!(
            sym.contains("plaintext_cable = true") && !sym.contains("x509-csr"),
            "{sym}"
        );
        assert_eq!(mode_fits(Mode::X509Inject, &esp32, true), Ok(()));
    }
}
